-- audit: 情報提供等記録 (provision records), one append-only Merkle log per tenant (RFC 9162).
-- Rows are only ever inserted; the log row and signed_size move forward.

-- The tenant's log: its size and right edge (the perfect-subtree hashes of [0, size), largest
-- first, 32 bytes each). Locked FOR UPDATE per append so leaf indexes are gap-free.
CREATE TABLE audit.logs (
    tenant_id   text   PRIMARY KEY,
    size        bigint NOT NULL,
    frontier    bytea  NOT NULL,
    -- Size of the latest signed tree head (the signer compares it with size).
    signed_size bigint NOT NULL DEFAULT 0
);

-- One row per leaf. The leaf bytes (what is hashed) are sealed under the tenant key; the
-- other columns are the searchable copy. The addressee is only a blind index here.
CREATE TABLE audit.records (
    tenant_id      text        NOT NULL,
    seq            bigint      NOT NULL,
    record_id      uuid        NOT NULL UNIQUE,
    event          text        NOT NULL,
    inquirer_org   text        COLLATE "C" NOT NULL,
    provider_org   text        COLLATE "C" NOT NULL,
    affair_code    text        COLLATE "C" NOT NULL,
    procedure_code text        COLLATE "C" NOT NULL,
    info_code      text        COLLATE "C" NOT NULL,
    serial_no      text        COLLATE "C" NOT NULL,
    branch_no      int         NOT NULL,
    permit_id      text        NOT NULL,
    addressee_bidx bytea,
    leaf_enc       bytea       NOT NULL,
    requested_at   timestamptz,
    provided_at    timestamptz,
    non_disclosure boolean     NOT NULL,
    outcome        text        NOT NULL,
    at             timestamptz NOT NULL,
    leaf_hash      bytea       NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX records_addressee ON audit.records (tenant_id, addressee_bidx, seq);
CREATE INDEX records_inquirer ON audit.records (tenant_id, inquirer_org, seq);
CREATE INDEX records_provider ON audit.records (tenant_id, provider_org, seq);

-- Every perfect subtree hash, stored once when it becomes complete (level 0 = leaves).
CREATE TABLE audit.nodes (
    tenant_id text   NOT NULL,
    level     int    NOT NULL,
    idx       bigint NOT NULL,
    hash      bytea  NOT NULL,
    PRIMARY KEY (tenant_id, level, idx)
);

-- Signed tree heads (STH).
CREATE TABLE audit.tree_heads (
    tenant_id text        NOT NULL,
    size      bigint      NOT NULL,
    root      bytea       NOT NULL,
    signed_at timestamptz NOT NULL,
    kid       text        NOT NULL,
    signature bytea       NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

-- Platform-level work list without personal data, read across tenants by the signer: no RLS.
CREATE TABLE audit.tenants (
    tenant_id text PRIMARY KEY
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['logs', 'records', 'nodes', 'tree_heads']
    LOOP
        EXECUTE format('ALTER TABLE audit.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE audit.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_wall ON audit.%I
            USING (tenant_id = current_setting('chukan.tenant', true))
            WITH CHECK (tenant_id = current_setting('chukan.tenant', true))$p$, t);
    END LOOP;
END $$;
