-- The simulated NWS's own records. It is another party: its own database, no RLS, no
-- chukan infrastructure tables.

-- 情報保有機関 (information-holding organisations) registered with the network.
CREATE TABLE organisations (
    org_code text PRIMARY KEY,
    name text NOT NULL,
    -- Base URL of the organisation's relay; deliveries go to {endpoint_url}/nws/v1/messages.
    endpoint_url text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Public keys an organisation signs its envelopes with, by key id.
CREATE TABLE organisation_keys (
    org_code text NOT NULL REFERENCES organisations (org_code) ON DELETE CASCADE,
    kid text NOT NULL,
    public_key text NOT NULL,
    PRIMARY KEY (org_code, kid)
);

-- 機関別符号 issued: person_id is a keyed hash; the resident-record code is never stored.
CREATE TABLE codes (
    org_code text NOT NULL REFERENCES organisations (org_code),
    code text NOT NULL,
    person_id bytea NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_code, code),
    UNIQUE (org_code, person_id)
);

-- Message ids accepted, for replay refusal.
CREATE TABLE received (
    message_id text PRIMARY KEY,
    sender text NOT NULL,
    kind text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Signed envelopes owed to organisations; kept after delivery or final failure.
CREATE TABLE deliveries (
    id uuid PRIMARY KEY,
    recipient text NOT NULL REFERENCES organisations (org_code),
    envelope bytea NOT NULL,
    attempts int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    failed_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
