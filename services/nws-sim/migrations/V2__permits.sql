-- 情報提供許可証 (provision permits) the network issued for permitted inquiries. A permit is
-- answered exactly once: answered_at is set by the first provision.answer; later answers for
-- the same permit are accepted and forwarded to nobody.
CREATE TABLE permits (
    permit_id uuid PRIMARY KEY,
    inquirer_org text NOT NULL REFERENCES organisations (org_code),
    -- The inquirer's own inquiry id (the inquiry.request's correlation_id), echoed back on
    -- the inquiry.result.
    inquiry_id text NOT NULL,
    provider_org text NOT NULL REFERENCES organisations (org_code),
    info_code text NOT NULL,
    issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    answered_at timestamptz
);
