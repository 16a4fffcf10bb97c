-- Disclosure changes (enhancement #9) and retention (番号法 §23, 7 years by default).

-- A "disclosure.changed" record names the record it changes; the latest change wins.
-- The original row is never updated.
ALTER TABLE audit.records ADD COLUMN target_record_id uuid;
ALTER TABLE audit.records ADD COLUMN reason text NOT NULL DEFAULT '';
-- Who made a change by hand (token subject: a user id, never a name).
ALTER TABLE audit.records ADD COLUMN actor text NOT NULL DEFAULT '';
CREATE INDEX records_target ON audit.records (tenant_id, target_record_id, seq)
    WHERE target_record_id IS NOT NULL;
CREATE INDEX records_at ON audit.records (tenant_id, at);

-- Retention checkpoints. Records (and the nodes wholly inside them) with seq < size are
-- purged; the right edge of the tree at `size` is kept, so the remaining log still rebuilds
-- and every later signed tree head still verifies. Signed like a tree head:
-- `chukan-audit-checkpoint/v1|{tenant}|{size}|{root hex}|{cutoff ms}|{purged_at ms}`; the root is
-- the one the frontier rebuilds to.
CREATE TABLE audit.checkpoints (
    tenant_id text        NOT NULL,
    size      bigint      NOT NULL,
    frontier  bytea       NOT NULL,
    root      bytea       NOT NULL,
    -- Records at before this instant were due for purging when the cut was made.
    cutoff    timestamptz NOT NULL,
    purged_at timestamptz NOT NULL,
    kid       text        NOT NULL,
    signature bytea       NOT NULL,
    PRIMARY KEY (tenant_id, size)
);
ALTER TABLE audit.checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit.checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON audit.checkpoints
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));
