-- 登録計画 (registration schedule, seed §2.5): the replica counts an organisation plans to
-- hold per item by a date; compared with what it holds to find organisations far behind.
CREATE TABLE stats.replica_plans (
    tenant_id     text COLLATE "C" NOT NULL,
    info_code     text COLLATE "C" NOT NULL,
    plan_date     date        NOT NULL,
    planned_count bigint      NOT NULL CHECK (planned_count >= 0),
    recorded_at   timestamptz NOT NULL,
    -- User or client id of who recorded it (never a name).
    recorded_by   text        NOT NULL,
    PRIMARY KEY (tenant_id, info_code, plan_date)
);

ALTER TABLE stats.replica_plans ENABLE ROW LEVEL SECURITY;
ALTER TABLE stats.replica_plans FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON stats.replica_plans
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));

-- The platform realm (J-LIS, the ministry) reads every organisation's counts, never writes:
-- a read-only transaction that set chukan.platform (chukan_db::platform_tx, opened only by
-- platform routes) sees all rows. Policies add up, so the tenant wall is unchanged for
-- everything else. This schema holds counts by code only.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['replica_counts', 'replica_snapshots', 'exchange_days', 'replica_plans']
    LOOP
        EXECUTE format(
            'CREATE POLICY platform_read ON stats.%I FOR SELECT
                 USING (current_setting(''chukan.platform'', true) = ''on'')', t);
    END LOOP;
END
$$;
