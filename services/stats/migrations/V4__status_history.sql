-- 稼動状態の履歴: every change of the operating status admin published (`status.changed`),
-- for availability statistics and the platform's record. No organisation data: no RLS.
CREATE TABLE stats.status_history (
    message_id uuid        PRIMARY KEY,
    at         timestamptz NOT NULL,
    state      text        NOT NULL,
    reason     text        NOT NULL,
    degraded   text[]      NOT NULL
);
CREATE INDEX status_history_at ON stats.status_history (at);
