-- stats: 統計 (F10 業務統計情報の集計, seed §2.5 副本統計). Fed by the bus only, from events that
-- carry no resident fields: codes, counts, outcomes and timestamps. Nothing in this schema
-- is personal data (the e2e scan checks it like every other schema).
-- Identifier columns are ASCII codes: collation "C" keeps comparisons byte-wise.

-- 副本件数 as last reported, per organisation × item × major version × dataset. Events carry
-- absolute counts with their own time: the newest report wins, so redelivery and reordering
-- cannot skew a count.
CREATE TABLE stats.replica_counts (
    tenant_id     text COLLATE "C" NOT NULL,
    info_code     text COLLATE "C" NOT NULL,
    major_version text COLLATE "C" NOT NULL,
    dataset       text COLLATE "C" NOT NULL,
    count         bigint      NOT NULL CHECK (count >= 0),
    -- When provision counted (the event's own time), not when it arrived here.
    counted_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, info_code, major_version, dataset)
);

-- 副本統計: the counts as they stood when a snapshot was taken, kept per snapshot date.
CREATE TABLE stats.replica_snapshots (
    tenant_id     text COLLATE "C" NOT NULL,
    snapshot_date date        NOT NULL,
    info_code     text COLLATE "C" NOT NULL,
    major_version text COLLATE "C" NOT NULL,
    dataset       text COLLATE "C" NOT NULL,
    count         bigint      NOT NULL CHECK (count >= 0),
    PRIMARY KEY (tenant_id, snapshot_date, info_code, major_version, dataset)
);

-- Platform-level rows without organisation data, read across tenants by the snapshot job:
-- no RLS. Which organisations have reported, and which snapshots were taken (a run without
-- finished_at was cut short and is taken again).
CREATE TABLE stats.tenants (
    tenant_id  text COLLATE "C" PRIMARY KEY,
    first_seen timestamptz NOT NULL
);

CREATE TABLE stats.snapshot_runs (
    snapshot_date date        PRIMARY KEY,
    -- monthly (first Saturday), weekly (Saturdays in a migration window), on-demand.
    reason        text        NOT NULL CHECK (reason IN ('monthly', 'weekly', 'on-demand')),
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NULL,
    tenants       integer     NOT NULL DEFAULT 0
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['replica_counts', 'replica_snapshots']
    LOOP
        EXECUTE format('ALTER TABLE stats.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE stats.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_wall ON stats.%I
                 USING (tenant_id = current_setting(''chukan.tenant'', true))
                 WITH CHECK (tenant_id = current_setting(''chukan.tenant'', true))', t);
    END LOOP;
END
$$;
