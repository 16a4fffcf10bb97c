-- provision: automatic answers to NWS provision requests (情報提供, DOMAIN §6), residents' flags
-- and the manual-answer queue (自動応答不可).

-- 符号 → 団体内統合宛名番号 (code links), copied from the code service's code.linked events.
-- Looked up by the blind index of the provider-side code a permit carries; the addressee is
-- kept as replicas index it (addressee_bidx) and sealed for the staff screens.
CREATE TABLE provision.code_links (
    tenant_id        text COLLATE "C" NOT NULL,
    code_bidx        bytea       NOT NULL,
    addressee_bidx   bytea       NOT NULL,
    addressee_sealed bytea       NOT NULL,
    linked_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, code_bidx)
);

-- Residents' flags: 不開示該当フラグ (non_disclosure), 自己情報提供不可フラグ
-- (self_info_prohibited) and 自動応答不可 per item or per dataset (auto_response_prohibited:
-- a JSON array of {"info_code": "TM…", "dataset": "0101" | null}; codes only, no personal data).
CREATE TABLE provision.resident_flags (
    tenant_id                text COLLATE "C" NOT NULL,
    addressee_bidx           bytea       NOT NULL,
    addressee_sealed         bytea       NOT NULL,
    non_disclosure           boolean     NOT NULL,
    self_info_prohibited     boolean     NOT NULL,
    auto_response_prohibited jsonb       NOT NULL DEFAULT '[]'::jsonb,
    revision                 bigint      NOT NULL,
    updated_at               timestamptz NOT NULL,
    updated_by               text        NOT NULL,
    PRIMARY KEY (tenant_id, addressee_bidx)
);

-- One row per provision request (情報提供要求), keyed by the permit id: the exactly-once guard
-- (a redelivered request finds its row) and the provider's provision record (番号法 §23).
CREATE TABLE provision.provisions (
    tenant_id               text COLLATE "C" NOT NULL,
    permit_id               text COLLATE "C" NOT NULL,
    state                   text        NOT NULL
                            CHECK (state IN ('answered', 'waiting', 'refused', 'expired')),
    -- What the answer said (provided | refused | expired), and its reason code.
    status                  text        NULL,
    reason_code             text        NULL,
    reason                  text        NULL,
    info_code               text COLLATE "C" NOT NULL,
    addressee_bidx          bytea       NULL,
    addressee_sealed        bytea       NULL,
    inquirer_org            text        NOT NULL,
    affair_code             text        NOT NULL,
    procedure_code          text        NOT NULL,
    serial_no               text        NOT NULL,
    branch_no               integer     NOT NULL,
    -- 照会条件: {"kind": "1"|"2"|"", "year_kind": …, "from": …, "to": …}.
    condition               jsonb       NOT NULL,
    inquirer_non_disclosure boolean     NOT NULL DEFAULT false,
    requested_at            timestamptz NULL,
    received_at             timestamptz NOT NULL,
    answered_at             timestamptz NULL,
    expires_at              timestamptz NOT NULL,
    manual                  boolean     NOT NULL DEFAULT false,
    non_disclosure          boolean     NOT NULL DEFAULT false,
    answered_by             text        NULL,
    records                 integer     NOT NULL DEFAULT 0,
    -- The SignedPermit as received (protobuf), kept as evidence of what was permitted.
    signed_permit           bytea       NOT NULL,
    PRIMARY KEY (tenant_id, permit_id)
);
CREATE INDEX provisions_by_state ON provision.provisions (tenant_id, state, received_at DESC);

-- Deadlines of waiting provisions, across tenants, for the expiry sweep (platform-level, no
-- personal data: tenant, permit id and the end of validity only; no RLS so one sweep sees all).
CREATE TABLE provision.waiting_deadlines (
    tenant_id  text COLLATE "C" NOT NULL,
    permit_id  text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, permit_id)
);
CREATE INDEX waiting_deadlines_due ON provision.waiting_deadlines (expires_at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['code_links', 'resident_flags', 'provisions']
    LOOP
        EXECUTE format('ALTER TABLE provision.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE provision.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_wall ON provision.%I
            USING (tenant_id = current_setting('chukan.tenant', true))
            WITH CHECK (tenant_id = current_setting('chukan.tenant', true))$p$, t);
    END LOOP;
END $$;
