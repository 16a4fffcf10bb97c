-- The resident portal (マイナポータル) simulator's self-information requests (自己情報提供,
-- F11): what a resident asked an organisation for through the network, and the answer as
-- delivered. The portal is the resident's own view, another party than chukan: the answer is
-- kept as it arrived.
CREATE TABLE portal_selfinfo_requests (
    -- Also the correlation id of the selfinfo.request and its selfinfo.answer.
    id           uuid        PRIMARY KEY,
    -- The resident (keyed person id; the 住民票コード itself is never stored).
    person_id    bytea       NOT NULL,
    org_code     text        NOT NULL REFERENCES organisations (org_code),
    info_codes   text[]      NOT NULL DEFAULT '{}',
    state        text        NOT NULL CHECK (state IN ('sent', 'answered')),
    requested_at timestamptz NOT NULL,
    -- SelfInfoAnswer as delivered.
    answer       bytea,
    answered_at  timestamptz
);
CREATE INDEX portal_selfinfo_requests_by_person ON portal_selfinfo_requests (person_id, requested_at);
