-- admin: the organisation settings provision needs, announced as tenant.changed, and the
-- batch status (F10 バッチ状況) other services report on batch.progress.

-- 即時処理 (immediate replica processing): this tenant's replica uploads are applied as
-- they arrive instead of by the nightly batch.
ALTER TABLE admin.tenants
    ADD COLUMN immediate_replica_processing boolean NOT NULL DEFAULT false;
-- Bumped by every change and carried by tenant.changed, so a consumer that receives two
-- announcements out of order keeps the newer one.
ALTER TABLE admin.tenants
    ADD COLUMN revision bigint NOT NULL DEFAULT 1 CHECK (revision > 0);

-- One row per batch run of a tenant, as its latest batch.progress reported it. No foreign
-- key to admin.tenants: progress may arrive before this region knows the tenant, and a
-- platform-wide run is kept under the empty tenant (visible to no tenant's staff).
CREATE TABLE admin.batch_runs (
    tenant_id  text NOT NULL,
    run_id     uuid NOT NULL,
    job        text NOT NULL CHECK (job <> ''),
    state      text NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    processed  bigint NOT NULL CHECK (processed >= 0),
    total      bigint NOT NULL CHECK (total >= 0),
    carried    bigint NOT NULL CHECK (carried >= 0),
    rejected   bigint NOT NULL CHECK (rejected >= 0),
    started_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    summary    text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, run_id)
);

-- GET /v1/batches lists newest first, optionally for one job.
CREATE INDEX batch_runs_newest_idx ON admin.batch_runs (tenant_id, started_at DESC, run_id DESC);
CREATE INDEX batch_runs_job_idx ON admin.batch_runs (tenant_id, job, started_at DESC, run_id DESC);

ALTER TABLE admin.batch_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE admin.batch_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON admin.batch_runs
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));
