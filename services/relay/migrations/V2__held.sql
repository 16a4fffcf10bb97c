-- Outbound messages held while data send/receive with the NWS is stopped (weekday 21:00–24:00,
-- nights, short-day evenings, planned outages: DOMAIN §7), released paced once both ends are
-- open. A row is never deleted: released_at or dead_at records how it ended.
--
-- body is the NwsOutbound as it came off the bus — which may carry a resident's code or a
-- resident-record code (番号法 §21-2: never kept beyond its use) — sealed under the tenant's
-- key, and emptied when the row is released or dead.
CREATE TABLE held (
    -- The bus delivery id: also the envelope's message id when sent, so a resend after a lost
    -- answer is a 409 duplicate at the NWS.
    message_id uuid PRIMARY KEY,
    -- Release order: oldest first, ties impossible.
    seq bigint GENERATED ALWAYS AS IDENTITY,
    tenant text NOT NULL,
    routing_key text NOT NULL,
    kind text NOT NULL,
    body bytea NOT NULL,
    traceparent text,
    held_at timestamptz NOT NULL DEFAULT now(),
    attempts int NOT NULL DEFAULT 0,
    last_error text,
    -- A releaser has taken the row until then (two relay processes never send it at once).
    leased_until timestamptz,
    released_at timestamptz,
    dead_at timestamptz
);

CREATE INDEX held_pending_idx ON held (seq) WHERE released_at IS NULL AND dead_at IS NULL;
