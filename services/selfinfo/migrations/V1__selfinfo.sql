-- selfinfo: 自己情報提供 (F11). Requests arrive from the resident portal through the NWS
-- (nws.in.selfinfo); answers are built from provision's replicas and audit's records (asked
-- over RabbitMQ request/reply) and the organisation's attachments.
-- Identifier columns are ASCII codes: collation "C" keeps comparisons byte-wise.

-- 自己情報提供要求 (self-information requests). The resident's code and the answer are sealed
-- under the tenant's key; their associated data names the row id.
CREATE TABLE selfinfo.requests (
    tenant_id      text        NOT NULL,
    id             uuid        PRIMARY KEY,
    -- The portal's request id (the NWS correlation id): one answer per portal request.
    request_id     text        COLLATE "C" NOT NULL,
    code_enc       bytea       NOT NULL,
    -- 特定個人情報名コード asked for; empty = every item held.
    info_codes     text[]      NOT NULL DEFAULT '{}',
    state          text        NOT NULL CHECK (state IN ('received', 'answered')),
    -- Set when answered: 'answered' or 'refused', with the refusal's code and Japanese reason.
    status         text        CHECK (status IN ('answered', 'refused')),
    reason_code    text,
    reason         text,
    item_count     int         NOT NULL DEFAULT 0,
    record_count   int         NOT NULL DEFAULT 0,
    attachment_count int       NOT NULL DEFAULT 0,
    answer_enc     bytea,
    requested_at   timestamptz,
    received_at    timestamptz NOT NULL,
    answered_at    timestamptz,
    -- Rounds that could not reach provision or audit (RPC timeout); the request waits.
    attempts       int         NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, request_id)
);
CREATE INDEX requests_by_state ON selfinfo.requests (tenant_id, state, received_at);

-- 自己情報提供用添付ファイル: the organisation's files per item (explanations, forms), shown
-- with every answer for that item. Not about any one resident.
CREATE TABLE selfinfo.attachments (
    tenant_id   text        NOT NULL,
    info_code   text        COLLATE "C" NOT NULL,
    file_name   text        NOT NULL,
    media_type  text        NOT NULL,
    size_bytes  int         NOT NULL,
    content     bytea       NOT NULL,
    uploaded_at timestamptz NOT NULL,
    uploaded_by text        NOT NULL,
    PRIMARY KEY (tenant_id, info_code, file_name)
);

-- Platform-level work list without personal data, read across tenants by the answer worker:
-- no RLS. A row exists while its request waits; `due_at` is the lease / retry time.
CREATE TABLE selfinfo.pending (
    id        uuid        PRIMARY KEY,
    tenant_id text        NOT NULL,
    due_at    timestamptz NOT NULL
);
CREATE INDEX pending_due ON selfinfo.pending (due_at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['requests', 'attachments']
    LOOP
        EXECUTE format('ALTER TABLE selfinfo.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE selfinfo.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_wall ON selfinfo.%I
            USING (tenant_id = current_setting('chukan.tenant', true))
            WITH CHECK (tenant_id = current_setting('chukan.tenant', true))$p$, t);
    END LOOP;
END $$;
