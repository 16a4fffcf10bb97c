-- Message ids of NWS messages relay has accepted, for replay refusal. Platform-level: no
-- personal data (ids, kinds and organisation codes only), so no tenant wall.
CREATE TABLE received (
    message_id text PRIMARY KEY,
    sender text NOT NULL,
    kind text NOT NULL,
    recipient text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX received_received_at_idx ON received (received_at);
