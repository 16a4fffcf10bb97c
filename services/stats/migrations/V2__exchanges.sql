-- 業務統計 (business statistics): exchanges per organisation per Japan day, by event × affair ×
-- procedure × item × outcome, from the services' `stats.exchange` events (codes, outcomes and
-- times; never a resident). Durations (requested → this event) are kept as a count, a sum, a
-- maximum and a histogram over the fixed bounds of `durations::BOUNDS_MS` (the last bucket
-- holds what is above them), from which the API reads p50 and p95.
CREATE TABLE stats.exchange_days (
    tenant_id       text COLLATE "C" NOT NULL,
    day             date        NOT NULL,
    event           text COLLATE "C" NOT NULL,
    affair_code     text COLLATE "C" NOT NULL,
    procedure_code  text COLLATE "C" NOT NULL,
    info_code       text COLLATE "C" NOT NULL,
    outcome         text COLLATE "C" NOT NULL,
    count           bigint      NOT NULL CHECK (count > 0),
    -- Events with a duration (both times known), and their durations' sum and maximum.
    timed           bigint      NOT NULL CHECK (timed >= 0),
    duration_sum_ms bigint      NOT NULL,
    duration_max_ms bigint      NOT NULL,
    buckets         bigint[]    NOT NULL,
    PRIMARY KEY (tenant_id, day, event, affair_code, procedure_code, info_code, outcome)
);

ALTER TABLE stats.exchange_days ENABLE ROW LEVEL SECURITY;
ALTER TABLE stats.exchange_days FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON stats.exchange_days
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));
