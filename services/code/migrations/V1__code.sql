-- 符号取得要求 (code acquisition requests). The resident-record code is never stored here:
-- it travels once, in the outbox message to the NWS (番号法 §21-2).
CREATE TABLE code.acquisitions (
    tenant_id      text        NOT NULL,
    id             uuid        PRIMARY KEY,
    -- HMAC of the integrated addressee number under the tenant's index key.
    addressee_bidx bytea       NOT NULL,
    addressee_enc  bytea       NOT NULL,
    status         text        NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    reason_code    text,
    reason         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz
);
-- One request in flight per resident: a repeated request joins the pending one.
CREATE UNIQUE INDEX acquisitions_one_pending
    ON code.acquisitions (tenant_id, addressee_bidx) WHERE status = 'pending';

-- 符号 ↔ 団体内統合宛名番号 (the code held for a resident), sealed with the tenant's key.
CREATE TABLE code.links (
    tenant_id      text        NOT NULL,
    addressee_bidx bytea       NOT NULL,
    addressee_enc  bytea       NOT NULL,
    code_enc       bytea       NOT NULL,
    acquisition_id uuid        NOT NULL,
    obtained_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, addressee_bidx)
);

ALTER TABLE code.acquisitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE code.acquisitions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON code.acquisitions
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));

ALTER TABLE code.links ENABLE ROW LEVEL SECURITY;
ALTER TABLE code.links FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON code.links
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));
