-- inquiry: 情報照会 (F2). Everything the service decides on arrives as events (code.linked,
-- flags.changed, department.changed); it never reads another service's tables.
-- Identifier columns are ASCII codes: collation "C" keeps comparisons byte-wise.

-- 符号 (the resident's code at this tenant), from code.linked, sealed; found by blind index.
CREATE TABLE inquiry.code_links (
    tenant_id      text        NOT NULL,
    addressee_bidx bytea       NOT NULL,
    code_enc       bytea       NOT NULL,
    linked_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, addressee_bidx)
);

-- 不開示該当フラグ (non-disclosure flag), latest revision wins.
CREATE TABLE inquiry.flags (
    tenant_id      text    NOT NULL,
    addressee_bidx bytea   NOT NULL,
    non_disclosure boolean NOT NULL,
    revision       bigint  NOT NULL,
    PRIMARY KEY (tenant_id, addressee_bidx)
);

-- 部署 (departments) and their 対象外事務手続 (procedures they may not inquire for).
CREATE TABLE inquiry.departments (
    tenant_id           text   NOT NULL,
    code                text   COLLATE "C" NOT NULL,
    name                text   NOT NULL,
    excluded_procedures text[] NOT NULL DEFAULT '{}',
    revision            bigint NOT NULL,
    PRIMARY KEY (tenant_id, code)
);

-- 処理通番 (processing serial number) counter, one row per tenant.
CREATE TABLE inquiry.serials (
    tenant_id   text   PRIMARY KEY,
    last_serial bigint NOT NULL
);

-- 一括照会 (bulk inquiry files): one serial number per file, 枝番 = line number.
CREATE TABLE inquiry.batches (
    tenant_id   text        NOT NULL,
    id          uuid        PRIMARY KEY,
    serial_no   text        COLLATE "C" NOT NULL,
    lines       int         NOT NULL,
    accepted    int         NOT NULL,
    rejected    int         NOT NULL,
    created_at  timestamptz NOT NULL,
    -- Set when the batch sender has put every accepted line in the outbox.
    dispatched_at timestamptz
);

-- Why a line of a bulk file was not accepted (no values: field names and codes only).
CREATE TABLE inquiry.batch_errors (
    tenant_id text NOT NULL,
    batch_id  uuid NOT NULL REFERENCES inquiry.batches (id),
    line      int  NOT NULL,
    seq       int  NOT NULL,
    field     text NOT NULL,
    code      text NOT NULL,
    detail    text NOT NULL,
    PRIMARY KEY (batch_id, line, seq)
);

-- 情報照会 (inquiries) and their results. The addressee and the result are sealed under the
-- tenant's key; the result's associated data names the inquiry id.
CREATE TABLE inquiry.inquiries (
    tenant_id               text        NOT NULL,
    id                      uuid        PRIMARY KEY,
    serial_no               text        COLLATE "C" NOT NULL,
    branch_no               int         NOT NULL,
    batch_id                uuid        REFERENCES inquiry.batches (id),
    addressee_bidx          bytea       NOT NULL,
    addressee_enc           bytea       NOT NULL,
    affair_code             text        COLLATE "C" NOT NULL,
    procedure_code          text        COLLATE "C" NOT NULL,
    info_code               text        COLLATE "C" NOT NULL,
    provider_org            text        COLLATE "C" NOT NULL,
    condition_kind          text        NOT NULL CHECK (condition_kind IN ('1', '2')),
    year_kind               text        NOT NULL DEFAULT '',
    date_from               date        NOT NULL,
    date_to                 date,
    department              text,
    inquirer_non_disclosure boolean     NOT NULL,
    status                  text        NOT NULL CHECK (status IN ('sent', 'provided', 'refused',
                                'not-permitted', 'unknown-code', 'unknown-provider', 'expired')),
    requested_at            timestamptz NOT NULL,
    expires_at              timestamptz NOT NULL,
    -- When the request went into the outbox; NULL while a bulk line waits for the batch sender.
    dispatched_at           timestamptz,
    permit_id               text,
    provider_non_disclosure boolean     NOT NULL DEFAULT false,
    manual                  boolean     NOT NULL DEFAULT false,
    record_count            int         NOT NULL DEFAULT 0,
    reason_code             text,
    reason                  text,
    result_enc              bytea,
    provided_at             timestamptz,
    result_at               timestamptz,
    -- The result arrived after the 30-day validity: kept, but the inquiry stays expired.
    late                    boolean     NOT NULL DEFAULT false,
    -- 確認済み (confirmed by staff or the business system).
    confirmed_at            timestamptz,
    UNIQUE (tenant_id, serial_no, branch_no)
);
CREATE INDEX inquiries_undispatched ON inquiry.inquiries (batch_id, branch_no)
    WHERE dispatched_at IS NULL;
CREATE INDEX inquiries_open ON inquiry.inquiries (tenant_id, expires_at) WHERE status = 'sent';

-- Platform-level work lists without personal data, read across tenants by the workers: no RLS.
-- Tenants that have inquiries (the expiry sweep visits each under its own tenant setting).
CREATE TABLE inquiry.active_tenants (
    tenant_id text PRIMARY KEY
);
-- Bulk files whose accepted lines are not all in the outbox yet.
CREATE TABLE inquiry.pending_batches (
    batch_id  uuid PRIMARY KEY,
    tenant_id text NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now()
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['code_links', 'flags', 'departments', 'serials', 'batches',
                             'batch_errors', 'inquiries']
    LOOP
        EXECUTE format('ALTER TABLE inquiry.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE inquiry.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_wall ON inquiry.%I
            USING (tenant_id = current_setting('chukan.tenant', true))
            WITH CHECK (tenant_id = current_setting('chukan.tenant', true))$p$, t);
    END LOOP;
END $$;
