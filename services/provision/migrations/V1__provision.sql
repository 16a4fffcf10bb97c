-- provision: the replica DB (情報提供データベース, F6) and replica registration (副本登録).

-- What provision needs to know of each organisation, kept from admin's tenant.changed events.
-- Platform-level settings without personal data, read by the scheduler across tenants: no RLS.
CREATE TABLE provision.orgs (
    org_code     text PRIMARY KEY CHECK (org_code ~ '^[0-9]{16}$'),
    kind         text NOT NULL CHECK (kind IN ('municipality', 'prefecture', 'union')),
    population   bigint NOT NULL CHECK (population > 0),
    upload_group char(1) NULL CHECK (upload_group IN ('A', 'B', 'C', 'D', 'E', 'F', 'G', 'H')),
    immediate    boolean NOT NULL DEFAULT false,
    revision     bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- 副本 (replicas): one row per dataset record key (データセットレコードキー). Registering the same
-- key again overwrites the row (上書き). Everything personal is in `sealed` (AES-256-GCM under
-- the tenant's key: integrated addressee number, record keys, history dates, payload); look-ups
-- use blind indexes. `key_bidx` = HMAC(item | version | dataset | record key), so the primary
-- key is two columns and cheap to compare. Identifier columns are ASCII codes: collation "C"
-- keeps index comparisons byte-wise instead of going through the locale.
CREATE TABLE provision.replicas (
    tenant_id      text COLLATE "C" NOT NULL,
    key_bidx       bytea       NOT NULL,
    info_code      text COLLATE "C" NOT NULL,
    major_version  text COLLATE "C" NOT NULL,
    dataset        text COLLATE "C" NOT NULL,
    -- レコード識別番号 of the registration that wrote the row; unique while the row exists.
    record_id      text COLLATE "C" NOT NULL,
    addressee_bidx bytea       NOT NULL,
    public_start   date        NULL,
    public_end     date        NULL,
    sealed         bytea       NOT NULL,
    -- Size of the registration entry as uploaded (daily byte quota, statistics).
    bytes          integer     NOT NULL,
    upload_id      uuid        NOT NULL,
    registered_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key_bidx)
);
CREATE UNIQUE INDEX replicas_record_id ON provision.replicas (tenant_id, record_id);
CREATE INDEX replicas_addressee ON provision.replicas (tenant_id, addressee_bidx);

-- Replica counts by tenant × item × version × dataset. Batch chunks commit in parallel, so each
-- writes its change to replica_count_deltas (insert-only: no row two chunks would both lock);
-- the deltas are folded into replica_counts when an upload finishes, in one transaction.
CREATE TABLE provision.replica_counts (
    tenant_id     text COLLATE "C" NOT NULL,
    info_code     text COLLATE "C" NOT NULL,
    major_version text COLLATE "C" NOT NULL,
    dataset       text COLLATE "C" NOT NULL,
    -- No CHECK (replicas >= 0): a CHECK is evaluated on the proposed INSERT row of an upsert,
    -- before the conflict turns it into an UPDATE, so it would refuse negative deltas.
    replicas      bigint NOT NULL,
    PRIMARY KEY (tenant_id, info_code, major_version, dataset)
);

CREATE TABLE provision.replica_count_deltas (
    tenant_id     text COLLATE "C" NOT NULL,
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    info_code     text COLLATE "C" NOT NULL,
    major_version text COLLATE "C" NOT NULL,
    dataset       text COLLATE "C" NOT NULL,
    delta         bigint NOT NULL
);
CREATE INDEX replica_count_deltas_tenant ON provision.replica_count_deltas (tenant_id);

-- 副本登録 uploads: a registration list received as a file (or a REST batch, stored in the same
-- form) and queued for the batch. The file itself is kept sealed in upload_chunks until done.
CREATE TABLE provision.uploads (
    tenant_id        text        NOT NULL,
    id               uuid        PRIMARY KEY,
    source           text        NOT NULL CHECK (source IN ('file', 'rest')),
    file_name        text        NULL,
    bytes            bigint      NOT NULL,
    entries          bigint      NOT NULL,
    -- Entries the upload-time check (事前確認) already found broken.
    precheck_rejected bigint     NOT NULL DEFAULT 0,
    state            text        NOT NULL
                     CHECK (state IN ('queued', 'processing', 'carried', 'done')),
    -- Entries waiting for a later night (daily quota), as of the last run.
    carried          bigint      NOT NULL DEFAULT 0,
    -- Nights the upload was carried over because of the daily quota.
    carried_nights   integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz NULL,
    finished_at      timestamptz NULL
);
CREATE INDEX uploads_pending ON provision.uploads (tenant_id, created_at)
    WHERE state <> 'done';

CREATE TABLE provision.upload_chunks (
    tenant_id text    NOT NULL,
    upload_id uuid    NOT NULL REFERENCES provision.uploads (id) ON DELETE CASCADE,
    seq       integer NOT NULL,
    sealed    bytea   NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
-- Sealed bytes do not compress: skip TOAST compression, keep out-of-line storage.
ALTER TABLE provision.upload_chunks ALTER COLUMN sealed SET STORAGE EXTERNAL;

-- Refused entries of an upload, with the reason and the next action (no values in them).
CREATE TABLE provision.upload_rejections (
    tenant_id text   NOT NULL,
    upload_id uuid   NOT NULL REFERENCES provision.uploads (id) ON DELETE CASCADE,
    ordinal   bigint NOT NULL,
    record_id text   NOT NULL,
    code      text   NOT NULL,
    detail    text   NOT NULL,
    action    text   NOT NULL,
    PRIMARY KEY (upload_id, ordinal)
);

-- One row per committed chunk of an upload: the range of entries it settled (applied or
-- refused), what it did, and the quota it used on which Japan date. Chunks commit in parallel
-- and in any order; the batch resumes by skipping the ranges here, the result report and the
-- daily quota use (日次上限) are sums over them. Insert-only: no row is shared between chunks.
CREATE TABLE provision.upload_progress (
    tenant_id     text   COLLATE "C" NOT NULL,
    upload_id     uuid   NOT NULL REFERENCES provision.uploads (id) ON DELETE CASCADE,
    first_ordinal bigint NOT NULL,
    last_ordinal  bigint NOT NULL CHECK (last_ordinal >= first_ordinal - 1),
    registered    bigint NOT NULL,
    overwritten   bigint NOT NULL,
    deleted       bigint NOT NULL,
    rejected      bigint NOT NULL,
    -- Quota use: registrations and deletions applied, and their bytes.
    records       bigint NOT NULL,
    bytes         bigint NOT NULL,
    day           date   NOT NULL,
    PRIMARY KEY (upload_id, first_ordinal)
);
CREATE INDEX upload_progress_day ON provision.upload_progress (tenant_id, day);

-- 突合用ファイル (reconciliation files): what is registered for an item / version / dataset.
CREATE TABLE provision.reconciliations (
    tenant_id     text        NOT NULL,
    id            uuid        PRIMARY KEY,
    info_code     text        NOT NULL,
    major_version text        NULL,
    dataset       text        NULL,
    state         text        NOT NULL CHECK (state IN ('queued', 'ready')),
    records       bigint      NOT NULL DEFAULT 0,
    bytes         bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    ready_at      timestamptz NULL
);

CREATE TABLE provision.reconciliation_chunks (
    tenant_id         text    NOT NULL,
    reconciliation_id uuid    NOT NULL REFERENCES provision.reconciliations (id) ON DELETE CASCADE,
    seq               integer NOT NULL,
    sealed            bytea   NOT NULL,
    PRIMARY KEY (reconciliation_id, seq)
);
ALTER TABLE provision.reconciliation_chunks ALTER COLUMN sealed SET STORAGE EXTERNAL;

-- Runs of scheduled jobs per Japan date, so a night's run happens once and an interrupted run
-- is resumed. Platform-level: no RLS.
CREATE TABLE provision.job_runs (
    job         text        NOT NULL,
    day         date        NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NULL,
    PRIMARY KEY (job, day)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['replicas', 'replica_counts', 'replica_count_deltas', 'uploads',
                             'upload_chunks', 'upload_rejections', 'upload_progress',
                             'reconciliations', 'reconciliation_chunks']
    LOOP
        EXECUTE format('ALTER TABLE provision.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE provision.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_wall ON provision.%I
            USING (tenant_id = current_setting('chukan.tenant', true))
            WITH CHECK (tenant_id = current_setting('chukan.tenant', true))$p$, t);
    END LOOP;
END $$;
