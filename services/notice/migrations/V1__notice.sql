-- notice: お知らせ (F12). Notices to residents' portals through the NWS, status checks
-- (状況確認要求) and their answers. Codes arrive as events (code.linked); the service never
-- reads another service's tables. Text, attachments, replies and addressees are sealed under
-- the tenant's key; residents are found by blind index.

-- 符号 (the resident's code at this tenant), from code.linked, sealed; found by blind index.
CREATE TABLE notice.code_links (
    tenant_id      text        NOT NULL,
    addressee_bidx bytea       NOT NULL,
    code_enc       bytea       NOT NULL,
    linked_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, addressee_bidx)
);

-- お知らせ (notices). `state` is what is known for sure; the API shows `sent` for an
-- `accepted` notice once dispatched and its outbox row is gone (the broker confirmed it to
-- relay's queue), so no extra write is needed per notice.
CREATE TABLE notice.notices (
    tenant_id          text        NOT NULL,
    id                 uuid        PRIMARY KEY,
    addressee_bidx     bytea       NOT NULL,
    addressee_enc      bytea       NOT NULL,
    -- The title alone, for lists; the whole NoticeContent (title, body, attachments,
    -- reply choices) for the single view and the send.
    title_enc          bytea       NOT NULL,
    content_enc        bytea       NOT NULL,
    attachment_count   int         NOT NULL,
    attachment_bytes   int         NOT NULL,
    reply_choice_count int         NOT NULL,
    state              text        NOT NULL CHECK (state IN ('accepted', 'delivered', 'read',
                                       'replied', 'undeliverable')),
    accepted_at        timestamptz NOT NULL,
    -- 配信日時 as asked; NULL = at once.
    deliver_at         timestamptz,
    -- When the notice.send went into the outbox, and that outbox row's id.
    dispatched_at      timestamptz,
    outbox_id          uuid,
    read_at            timestamptz,
    -- The resident's answer (one of the reply choices), sealed.
    reply_enc          bytea,
    replied_at         timestamptz,
    reason_code        text,
    -- When the NWS last reported on this notice.
    status_at          timestamptz
);
CREATE INDEX notices_by_addressee ON notice.notices (tenant_id, addressee_bidx, id);
CREATE INDEX notices_by_tenant ON notice.notices (tenant_id, id);

-- 状況確認要求 (status checks) and when their answer came.
CREATE TABLE notice.status_checks (
    tenant_id    text        NOT NULL,
    id           uuid        PRIMARY KEY,
    notice_ids   uuid[]      NOT NULL,
    requested_at timestamptz NOT NULL,
    answered_at  timestamptz,
    -- Notices the answer named.
    reported     int         NOT NULL DEFAULT 0
);

-- Platform-level work list without personal data, read across tenants by the dispatcher:
-- no RLS. Notices waiting for their deliver_at.
CREATE TABLE notice.scheduled (
    notice_id  uuid PRIMARY KEY,
    tenant_id  text        NOT NULL,
    deliver_at timestamptz NOT NULL
);
CREATE INDEX scheduled_due ON notice.scheduled (deliver_at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['code_links', 'notices', 'status_checks']
    LOOP
        EXECUTE format('ALTER TABLE notice.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE notice.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_wall ON notice.%I
            USING (tenant_id = current_setting('chukan.tenant', true))
            WITH CHECK (tenant_id = current_setting('chukan.tenant', true))$p$, t);
    END LOOP;
END $$;
