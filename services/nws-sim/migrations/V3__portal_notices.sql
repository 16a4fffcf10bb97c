-- The resident portal (マイナポータル) simulator's notices (お知らせ, F12): what organisations
-- sent to residents through the network, and what each resident did with them. The portal
-- is the resident's own inbox, another party than chukan: the content is kept as delivered.
CREATE TABLE portal_notices (
    org_code      text        NOT NULL REFERENCES organisations (org_code),
    -- The organisation's notice id (the notice.send's correlation id).
    notice_id     text        NOT NULL,
    -- The resident (keyed person id); NULL when the code named nobody (undeliverable).
    person_id     bytea,
    -- NoticeContent as sent (title, body, attachments, reply choices); NULL when undeliverable.
    content       bytea,
    reply_choices text[]      NOT NULL DEFAULT '{}',
    -- Why the notice could not be delivered (stable code), else NULL.
    undeliverable text,
    received_at   timestamptz NOT NULL,
    read_at       timestamptz,
    reply_choice  text,
    replied_at    timestamptz,
    PRIMARY KEY (org_code, notice_id)
);
CREATE INDEX portal_notices_by_person ON portal_notices (person_id, received_at)
    WHERE person_id IS NOT NULL;
