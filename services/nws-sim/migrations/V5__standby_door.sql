-- ADR 0006 "The NWS knows both doors": an organisation's relay slot in its cell's other
-- region, tried in the same attempt when its home door does not answer or answers 421
-- (not-homed-here). NULL = no standby door.
ALTER TABLE organisations ADD COLUMN standby_endpoint_url text;

-- Which door took a delivery: 'primary' (endpoint_url) or 'standby' (standby_endpoint_url).
-- NULL while undelivered, and for deliveries made before doors were recorded.
ALTER TABLE deliveries ADD COLUMN delivered_via text
    CHECK (delivered_via IN ('primary', 'standby'));
