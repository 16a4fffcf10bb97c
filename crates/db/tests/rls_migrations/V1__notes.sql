-- A tenant-owned table guarded exactly as docs/internals.md prescribes.
CREATE TABLE notes (
    tenant_id text NOT NULL,
    id uuid PRIMARY KEY,
    body text NOT NULL
);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON notes
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));
