-- Cells (ADR 0006). Both tables live in the cell's own cluster, so its standby in the other
-- region carries them: a promoted cell knows whether it was committing asynchronously when
-- its primary was lost, and keeps the record of every failover it went through.

-- A span of time in which the primary committed without waiting for its synchronous standby
-- (the standby did not answer within cells.sync_degrade_after_ms). Acknowledged writes inside
-- an open window may be missing from the standby; ended_at is set once it is back and caught up.
CREATE TABLE admin.async_windows (
    id          bigserial PRIMARY KEY,
    standby     text NOT NULL,
    reason      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
-- At most one open window.
CREATE UNIQUE INDEX async_windows_one_open ON admin.async_windows ((true)) WHERE ended_at IS NULL;

-- One row per promotion of this cell's standby (chukan region failover / failback), written
-- into the promoted cluster right after it became the primary.
CREATE TABLE admin.failovers (
    id                  bigserial PRIMARY KEY,
    cell                text NOT NULL CHECK (cell IN ('east', 'west')),
    to_region           text NOT NULL CHECK (to_region IN ('east', 'west')),
    kind                text NOT NULL CHECK (kind IN ('planned', 'forced')),
    promoted_at         timestamptz NOT NULL DEFAULT now(),
    -- The standby's positions when it was promoted; for a planned switchover the old
    -- primary's last position equals replay_lsn (nothing lost).
    receive_lsn         pg_lsn,
    replay_lsn          pg_lsn,
    -- The last commit the standby replayed, and the async window open then (if any): what a
    -- forced failover could have lost lies after the later of the two.
    last_replay_at      timestamptz,
    async_window_since  timestamptz,
    replayed_outbox     bigint NOT NULL DEFAULT 0
);
