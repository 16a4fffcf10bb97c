//! SQL of the provision service, one function per question. Tenant-owned tables are only
//! touched inside `chukan_db::tenant_tx`; every statement also names the tenant so the indexes
//! lead with it.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;
use uuid::Uuid;

use chukan_layout::RecordKind;

/// What provision keeps of an organisation (from admin's tenant.changed).
#[derive(Debug, Clone)]
pub struct Org {
    pub org_code: String,
    pub kind: String,
    pub population: i64,
    pub upload_group: Option<char>,
    pub immediate: bool,
}

fn org_from(row: &tokio_postgres::Row) -> Org {
    let group: Option<String> = row.get("upload_group");
    Org {
        org_code: row.get("org_code"),
        kind: row.get("kind"),
        population: row.get("population"),
        upload_group: group.and_then(|g| g.chars().next()),
        immediate: row.get("immediate"),
    }
}

/// Keeps the newest revision of an organisation's settings; an older event changes nothing.
pub async fn upsert_org(
    client: &impl GenericClient,
    org: &Org,
    revision: i64,
) -> Result<bool, Error> {
    let group = org.upload_group.map(|g| g.to_string());
    let n = client
        .execute(
            "INSERT INTO provision.orgs (org_code, kind, population, upload_group, immediate, revision)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (org_code) DO UPDATE SET kind = EXCLUDED.kind,
                 population = EXCLUDED.population, upload_group = EXCLUDED.upload_group,
                 immediate = EXCLUDED.immediate, revision = EXCLUDED.revision, updated_at = now()
             WHERE provision.orgs.revision < EXCLUDED.revision",
            &[
                &org.org_code,
                &org.kind,
                &org.population,
                &group,
                &org.immediate,
                &revision,
            ],
        )
        .await?;
    Ok(n == 1)
}

pub async fn org(client: &impl GenericClient, org_code: &str) -> Result<Option<Org>, Error> {
    let stmt = client
        .prepare_cached(
            "SELECT org_code, kind, population, upload_group::text AS upload_group, immediate
             FROM provision.orgs WHERE org_code = $1",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&org_code])
        .await?
        .map(|r| org_from(&r)))
}

pub async fn all_orgs(client: &impl GenericClient) -> Result<Vec<Org>, Error> {
    let rows = client
        .query(
            "SELECT org_code, kind, population, upload_group::text AS upload_group, immediate
             FROM provision.orgs ORDER BY org_code",
            &[],
        )
        .await?;
    Ok(rows.iter().map(org_from).collect())
}

// ---- uploads --------------------------------------------------------------------------

pub async fn insert_upload(
    tx: &impl GenericClient,
    tenant: &str,
    id: Uuid,
    source: &str,
    file_name: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO provision.uploads (tenant_id, id, source, file_name, bytes, entries, state, created_at)
         VALUES ($1, $2, $3, $4, 0, 0, 'queued', $5)",
        &[&tenant, &id, &source, &file_name, &now],
    )
    .await?;
    Ok(())
}

pub async fn insert_chunk(
    tx: &impl GenericClient,
    tenant: &str,
    upload: Uuid,
    seq: i32,
    sealed: &[u8],
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.upload_chunks (tenant_id, upload_id, seq, sealed) VALUES ($1, $2, $3, $4)",
        )
        .await?;
    tx.execute(&stmt, &[&tenant, &upload, &seq, &sealed])
        .await?;
    Ok(())
}

pub async fn set_upload_received(
    tx: &impl GenericClient,
    id: Uuid,
    bytes: i64,
    entries: i64,
    precheck_rejected: i64,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE provision.uploads SET bytes = $2, entries = $3, precheck_rejected = $4 WHERE id = $1",
        &[&id, &bytes, &entries, &precheck_rejected],
    )
    .await?;
    Ok(())
}

/// An upload the batch still has work on.
#[derive(Debug, Clone)]
pub struct PendingUpload {
    pub id: Uuid,
    pub entries: i64,
    pub state: String,
}

/// Uploads not yet done, oldest first (they are applied in the order they arrived).
pub async fn pending_uploads(
    tx: &impl GenericClient,
    tenant: &str,
    only: Option<Uuid>,
) -> Result<Vec<PendingUpload>, Error> {
    let rows = tx
        .query(
            "SELECT id, entries, state FROM provision.uploads
             WHERE tenant_id = $1 AND state <> 'done' AND ($2::uuid IS NULL OR id = $2)
             ORDER BY created_at, id",
            &[&tenant, &only],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PendingUpload {
            id: r.get(0),
            entries: r.get(1),
            state: r.get(2),
        })
        .collect())
}

pub async fn upload_chunk(
    client: &impl GenericClient,
    upload: Uuid,
    seq: i32,
) -> Result<Option<Vec<u8>>, Error> {
    let stmt = client
        .prepare_cached(
            "SELECT sealed FROM provision.upload_chunks WHERE upload_id = $1 AND seq = $2",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&upload, &seq])
        .await?
        .map(|r| r.get(0)))
}

pub async fn mark_processing(
    tx: &impl GenericClient,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE provision.uploads SET state = 'processing', started_at = coalesce(started_at, $2)
         WHERE id = $1",
        &[&id, &now],
    )
    .await?;
    Ok(())
}

/// Ranges of entries already settled by committed chunks, in order.
pub async fn settled_ranges(
    tx: &impl GenericClient,
    upload: Uuid,
) -> Result<Vec<(i64, i64)>, Error> {
    let rows = tx
        .query(
            "SELECT first_ordinal, last_ordinal FROM provision.upload_progress
             WHERE upload_id = $1 ORDER BY first_ordinal",
            &[&upload],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What one committed chunk did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Applied {
    pub registered: i64,
    pub overwritten: i64,
    pub deleted: i64,
    pub rejected: i64,
    /// Quota use: records applied and their bytes.
    pub records: i64,
    pub bytes: i64,
}

pub async fn insert_progress(
    tx: &impl GenericClient,
    tenant: &str,
    upload: Uuid,
    range: (i64, i64),
    applied: &Applied,
    day: NaiveDate,
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.upload_progress (tenant_id, upload_id, first_ordinal, last_ordinal,
                 registered, overwritten, deleted, rejected, records, bytes, day)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &tenant,
            &upload,
            &range.0,
            &range.1,
            &applied.registered,
            &applied.overwritten,
            &applied.deleted,
            &applied.rejected,
            &applied.records,
            &applied.bytes,
            &day,
        ],
    )
    .await?;
    Ok(())
}

/// The file is applied to its end: done, and its stored copy is no longer needed.
pub async fn finish_upload(
    tx: &impl GenericClient,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE provision.uploads SET state = 'done', carried = 0, finished_at = $2 WHERE id = $1",
        &[&id, &now],
    )
    .await?;
    tx.execute(
        "DELETE FROM provision.upload_chunks WHERE upload_id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Tonight's quota is used up: `carried` entries of the upload wait for the next night.
pub async fn carry_upload(tx: &impl GenericClient, id: Uuid, carried: i64) -> Result<(), Error> {
    tx.execute(
        "UPDATE provision.uploads SET state = 'carried', carried = $2,
             carried_nights = carried_nights + 1
         WHERE id = $1",
        &[&id, &carried],
    )
    .await?;
    Ok(())
}

// ---- quota ----------------------------------------------------------------------------

/// Records and bytes applied for the tenant on a Japan date (日次上限 use).
pub async fn daily_usage(
    tx: &impl GenericClient,
    tenant: &str,
    day: NaiveDate,
) -> Result<(i64, i64), Error> {
    let row = tx
        .query_one(
            "SELECT coalesce(sum(records), 0)::int8, coalesce(sum(bytes), 0)::int8
             FROM provision.upload_progress WHERE tenant_id = $1 AND day = $2",
            &[&tenant, &day],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

// ---- replicas -------------------------------------------------------------------------

/// Of the given keys and record ids, those already in the replica DB.
pub async fn existing(
    tx: &impl GenericClient,
    tenant: &str,
    keys: &[&[u8]],
    record_ids: &[&str],
) -> Result<(HashSet<Vec<u8>>, HashSet<String>), Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT key_bidx, record_id, key_bidx = ANY($2) AS by_key FROM provision.replicas
             WHERE tenant_id = $1 AND (key_bidx = ANY($2) OR record_id = ANY($3))",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenant, &keys, &record_ids]).await?;
    let mut found_keys = HashSet::new();
    let mut found_ids = HashSet::new();
    for r in rows {
        if r.get::<_, bool>(2) {
            found_keys.insert(r.get::<_, Vec<u8>>(0));
        }
        found_ids.insert(r.get::<_, String>(1));
    }
    Ok((found_keys, found_ids))
}

/// Rows to write, as parallel columns (one array parameter each).
#[derive(Debug, Default)]
pub struct ReplicaRows<'a> {
    pub key_bidx: Vec<&'a [u8]>,
    pub info_code: Vec<&'a str>,
    pub major_version: Vec<&'a str>,
    pub dataset: Vec<&'a str>,
    pub record_id: Vec<&'a str>,
    pub addressee_bidx: Vec<&'a [u8]>,
    pub public_start: Vec<Option<NaiveDate>>,
    pub public_end: Vec<Option<NaiveDate>>,
    pub sealed: Vec<&'a [u8]>,
    pub bytes: Vec<i32>,
}

impl ReplicaRows<'_> {
    pub fn len(&self) -> usize {
        self.key_bidx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.key_bidx.is_empty()
    }
}

/// Registers new rows (keys known not to exist: the caller holds the tenant's apply lock).
pub async fn insert_replicas(
    tx: &impl GenericClient,
    tenant: &str,
    upload: Uuid,
    now: DateTime<Utc>,
    rows: &ReplicaRows<'_>,
) -> Result<u64, Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.replicas (tenant_id, key_bidx, info_code, major_version, dataset,
                 record_id, addressee_bidx, public_start, public_end, sealed, bytes, upload_id, registered_at)
             SELECT $1, x.*, $2, $3
             FROM unnest($4::bytea[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[],
                         $10::date[], $11::date[], $12::bytea[], $13::int4[]) AS x",
        )
        .await?;
    tx.execute(&stmt, &replica_params(&tenant, &upload, &now, rows))
        .await
}

/// Overwrites (上書き) existing rows by key.
pub async fn update_replicas(
    tx: &impl GenericClient,
    tenant: &str,
    upload: Uuid,
    now: DateTime<Utc>,
    rows: &ReplicaRows<'_>,
) -> Result<u64, Error> {
    let stmt = tx
        .prepare_cached(
            "UPDATE provision.replicas r SET record_id = x.rid, addressee_bidx = x.a,
                 public_start = x.ps, public_end = x.pe, sealed = x.s, bytes = x.b,
                 upload_id = $2, registered_at = $3
             FROM unnest($4::bytea[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[],
                         $10::date[], $11::date[], $12::bytea[], $13::int4[])
                  AS x(k, info, major, ds, rid, a, ps, pe, s, b)
             WHERE r.tenant_id = $1 AND r.key_bidx = x.k",
        )
        .await?;
    tx.execute(&stmt, &replica_params(&tenant, &upload, &now, rows))
        .await
}

fn replica_params<'a>(
    tenant: &'a &str,
    upload: &'a Uuid,
    now: &'a DateTime<Utc>,
    rows: &'a ReplicaRows<'_>,
) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 13] {
    [
        tenant,
        upload,
        now,
        &rows.key_bidx,
        &rows.info_code,
        &rows.major_version,
        &rows.dataset,
        &rows.record_id,
        &rows.addressee_bidx,
        &rows.public_start,
        &rows.public_end,
        &rows.sealed,
        &rows.bytes,
    ]
}

/// Deletes the rows with these keys; returns the keys that existed, with their kind.
pub async fn delete_replicas(
    tx: &impl GenericClient,
    tenant: &str,
    keys: &[&[u8]],
) -> Result<Vec<(Vec<u8>, RecordKind)>, Error> {
    let stmt = tx
        .prepare_cached(
            "DELETE FROM provision.replicas WHERE tenant_id = $1 AND key_bidx = ANY($2)
             RETURNING key_bidx, info_code, major_version, dataset",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenant, &keys]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                RecordKind {
                    info_code: r.get(1),
                    major_version: r.get(2),
                    dataset: r.get(3),
                },
            )
        })
        .collect())
}

/// A refused entry of an upload (no values: only ids, a code and Japanese text).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// Position of the entry in the file (1-based).
    pub ordinal: i64,
    /// レコード識別番号 of the refused entry.
    pub record_id: String,
    /// Stable reason code.
    pub code: String,
    /// 理由 (Japanese).
    pub detail: String,
    /// 次にすべきこと.
    pub action: String,
}

pub async fn insert_rejections(
    tx: &impl GenericClient,
    tenant: &str,
    upload: Uuid,
    rejections: &[Rejection],
) -> Result<(), Error> {
    if rejections.is_empty() {
        return Ok(());
    }
    let ordinal: Vec<i64> = rejections.iter().map(|r| r.ordinal).collect();
    let record_id: Vec<&str> = rejections.iter().map(|r| r.record_id.as_str()).collect();
    let code: Vec<&str> = rejections.iter().map(|r| r.code.as_str()).collect();
    let detail: Vec<&str> = rejections.iter().map(|r| r.detail.as_str()).collect();
    let action: Vec<&str> = rejections.iter().map(|r| r.action.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.upload_rejections (tenant_id, upload_id, ordinal, record_id, code, detail, action)
             SELECT $1, $2, * FROM unnest($3::int8[], $4::text[], $5::text[], $6::text[], $7::text[])
             ON CONFLICT (upload_id, ordinal) DO NOTHING",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &tenant, &upload, &ordinal, &record_id, &code, &detail, &action,
        ],
    )
    .await?;
    Ok(())
}

/// Records count changes of a chunk (insert-only; folded by [`fold_counts`]).
pub async fn insert_count_deltas(
    tx: &impl GenericClient,
    tenant: &str,
    deltas: &[(RecordKind, i64)],
) -> Result<(), Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let info: Vec<&str> = deltas.iter().map(|(k, _)| k.info_code.as_str()).collect();
    let major: Vec<&str> = deltas
        .iter()
        .map(|(k, _)| k.major_version.as_str())
        .collect();
    let ds: Vec<&str> = deltas.iter().map(|(k, _)| k.dataset.as_str()).collect();
    let d: Vec<i64> = deltas.iter().map(|(_, d)| *d).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.replica_count_deltas (tenant_id, info_code, major_version, dataset, delta)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[])",
        )
        .await?;
    tx.execute(&stmt, &[&tenant, &info, &major, &ds, &d])
        .await?;
    Ok(())
}

/// Folds the tenant's pending count changes into the counts; returns (kind, count now, change)
/// for every kind that changed.
pub async fn fold_counts(
    tx: &impl GenericClient,
    tenant: &str,
) -> Result<Vec<(RecordKind, i64, i64)>, Error> {
    let rows = tx
        .query(
            "WITH gone AS (
                 DELETE FROM provision.replica_count_deltas WHERE tenant_id = $1
                 RETURNING info_code, major_version, dataset, delta),
             sums AS (
                 SELECT info_code, major_version, dataset, sum(delta)::int8 AS delta
                 FROM gone GROUP BY 1, 2, 3 HAVING sum(delta) <> 0),
             folded AS (
                 INSERT INTO provision.replica_counts AS c (tenant_id, info_code, major_version, dataset, replicas)
                 SELECT $1, info_code, major_version, dataset, delta FROM sums
                 ON CONFLICT (tenant_id, info_code, major_version, dataset)
                 DO UPDATE SET replicas = c.replicas + EXCLUDED.replicas
                 RETURNING info_code, major_version, dataset, replicas)
             SELECT f.info_code, f.major_version, f.dataset, f.replicas, s.delta
             FROM folded f JOIN sums s USING (info_code, major_version, dataset)",
            &[&tenant],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                RecordKind {
                    info_code: r.get(0),
                    major_version: r.get(1),
                    dataset: r.get(2),
                },
                r.get(3),
                r.get(4),
            )
        })
        .collect())
}

/// One stored replica, still sealed.
#[derive(Debug, Clone)]
pub struct StoredReplica {
    pub kind: RecordKind,
    pub key_bidx: Vec<u8>,
    pub record_id: String,
    pub public_start: Option<NaiveDate>,
    pub public_end: Option<NaiveDate>,
    pub sealed: Vec<u8>,
    pub registered_at: DateTime<Utc>,
}

fn stored_from(r: &tokio_postgres::Row) -> StoredReplica {
    StoredReplica {
        kind: RecordKind {
            info_code: r.get("info_code"),
            major_version: r.get("major_version"),
            dataset: r.get("dataset"),
        },
        key_bidx: r.get("key_bidx"),
        record_id: r.get("record_id"),
        public_start: r.get("public_start"),
        public_end: r.get("public_end"),
        sealed: r.get("sealed"),
        registered_at: r.get("registered_at"),
    }
}

/// A resident's replicas of one item (optionally one dataset).
pub async fn replicas_of(
    tx: &impl GenericClient,
    tenant: &str,
    addressee_bidx: &[u8],
    info_code: &str,
    dataset: Option<&str>,
) -> Result<Vec<StoredReplica>, Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT info_code, major_version, dataset, key_bidx, record_id, public_start, public_end,
                    sealed, registered_at
             FROM provision.replicas
             WHERE tenant_id = $1 AND addressee_bidx = $2 AND info_code = $3::text
               AND ($4::text IS NULL OR dataset = $4::text)
             ORDER BY registered_at, record_id",
        )
        .await?;
    let rows = tx
        .query(&stmt, &[&tenant, &addressee_bidx, &info_code, &dataset])
        .await?;
    Ok(rows.iter().map(stored_from).collect())
}

/// Number of replicas registered for an item, optionally one version and one dataset.
pub async fn count_replicas(
    tx: &impl GenericClient,
    tenant: &str,
    info_code: &str,
    major_version: Option<&str>,
    dataset: Option<&str>,
) -> Result<i64, Error> {
    let row = tx
        .query_one(
            "SELECT coalesce(sum(n), 0)::int8 FROM (
                 SELECT replicas AS n, info_code, major_version, dataset
                 FROM provision.replica_counts WHERE tenant_id = $1
                 UNION ALL
                 SELECT delta, info_code, major_version, dataset
                 FROM provision.replica_count_deltas WHERE tenant_id = $1) c
             WHERE info_code = $2::text
               AND ($3::text IS NULL OR major_version = $3::text)
               AND ($4::text IS NULL OR dataset = $4::text)",
            &[&tenant, &info_code, &major_version, &dataset],
        )
        .await?;
    Ok(row.get(0))
}

/// Replicas of an item (version, dataset) ordered by record id, one page after `after`.
pub async fn replicas_page(
    tx: &impl GenericClient,
    tenant: &str,
    info_code: &str,
    major_version: Option<&str>,
    dataset: Option<&str>,
    after: &str,
    limit: i64,
) -> Result<Vec<StoredReplica>, Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT info_code, major_version, dataset, key_bidx, record_id, public_start, public_end,
                    sealed, registered_at
             FROM provision.replicas
             WHERE tenant_id = $1 AND info_code = $2::text
               AND ($3::text IS NULL OR major_version = $3::text)
               AND ($4::text IS NULL OR dataset = $4::text)
               AND record_id > $5::text
             ORDER BY record_id LIMIT $6",
        )
        .await?;
    let rows = tx
        .query(
            &stmt,
            &[
                &tenant,
                &info_code,
                &major_version,
                &dataset,
                &after,
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(stored_from).collect())
}

/// 一括削除 (bulk delete) of an item's version and dataset; returns how many went.
pub async fn bulk_delete(
    tx: &impl GenericClient,
    tenant: &str,
    kind: &RecordKind,
) -> Result<i64, Error> {
    let n = tx
        .execute(
            "DELETE FROM provision.replicas
             WHERE tenant_id = $1 AND info_code = $2 AND major_version = $3 AND dataset = $4",
            &[&tenant, &kind.info_code, &kind.major_version, &kind.dataset],
        )
        .await?;
    Ok(n as i64)
}

// ---- reconciliation files ---------------------------------------------------------------

/// A reconciliation file request and its state.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub id: Uuid,
    /// 特定個人情報名コード.
    pub info_code: String,
    pub major_version: Option<String>,
    pub dataset: Option<String>,
    /// queued (made by the nightly batch) | ready (downloadable).
    pub state: String,
    /// Records in the file (when ready).
    pub records: i64,
    pub created_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
}

fn reconciliation_from(r: &tokio_postgres::Row) -> Reconciliation {
    Reconciliation {
        id: r.get("id"),
        info_code: r.get("info_code"),
        major_version: r.get("major_version"),
        dataset: r.get("dataset"),
        state: r.get("state"),
        records: r.get("records"),
        created_at: r.get("created_at"),
        ready_at: r.get("ready_at"),
    }
}

pub async fn insert_reconciliation(
    tx: &impl GenericClient,
    tenant: &str,
    r: &Reconciliation,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO provision.reconciliations (tenant_id, id, info_code, major_version, dataset, state, created_at)
         VALUES ($1, $2, $3, $4, $5, 'queued', $6)",
        &[&tenant, &r.id, &r.info_code, &r.major_version, &r.dataset, &r.created_at],
    )
    .await?;
    Ok(())
}

pub async fn reconciliation(
    tx: &impl GenericClient,
    tenant: &str,
    id: Uuid,
) -> Result<Option<Reconciliation>, Error> {
    Ok(tx
        .query_opt(
            "SELECT id, info_code, major_version, dataset, state, records, created_at, ready_at
             FROM provision.reconciliations WHERE tenant_id = $1 AND id = $2",
            &[&tenant, &id],
        )
        .await?
        .map(|r| reconciliation_from(&r)))
}

pub async fn queued_reconciliations(
    tx: &impl GenericClient,
    tenant: &str,
) -> Result<Vec<Reconciliation>, Error> {
    let rows = tx
        .query(
            "SELECT id, info_code, major_version, dataset, state, records, created_at, ready_at
             FROM provision.reconciliations WHERE tenant_id = $1 AND state = 'queued'
             ORDER BY created_at",
            &[&tenant],
        )
        .await?;
    Ok(rows.iter().map(reconciliation_from).collect())
}

pub async fn insert_reconciliation_chunk(
    tx: &impl GenericClient,
    tenant: &str,
    id: Uuid,
    seq: i32,
    sealed: &[u8],
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO provision.reconciliation_chunks (tenant_id, reconciliation_id, seq, sealed)
         VALUES ($1, $2, $3, $4)",
        &[&tenant, &id, &seq, &sealed],
    )
    .await?;
    Ok(())
}

pub async fn reconciliation_ready(
    tx: &impl GenericClient,
    id: Uuid,
    records: i64,
    bytes: i64,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE provision.reconciliations SET state = 'ready', records = $2, bytes = $3, ready_at = $4
         WHERE id = $1",
        &[&id, &records, &bytes, &now],
    )
    .await?;
    Ok(())
}

pub async fn reconciliation_chunk(
    tx: &impl GenericClient,
    id: Uuid,
    seq: i32,
) -> Result<Option<Vec<u8>>, Error> {
    Ok(tx
        .query_opt(
            "SELECT sealed FROM provision.reconciliation_chunks WHERE reconciliation_id = $1 AND seq = $2",
            &[&id, &seq],
        )
        .await?
        .map(|r| r.get(0)))
}

// ---- upload reports -----------------------------------------------------------------------

/// 処理結果 (the result report of one upload).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UploadReport {
    pub id: Uuid,
    /// file | rest
    pub source: String,
    pub file_name: Option<String>,
    /// queued | processing | carried | done
    pub state: String,
    pub bytes: i64,
    /// Entries in the list.
    pub entries: i64,
    /// Entries the upload-time check (事前確認) found broken.
    pub precheck_rejected: i64,
    /// 登録 (new replicas).
    pub registered: i64,
    /// 上書き (replaced replicas).
    pub overwritten: i64,
    /// 削除.
    pub deleted: i64,
    /// 繰越 (waiting for the next night because of the daily quota).
    pub carried: i64,
    /// エラー (refused entries; see `rejections`).
    pub rejected: i64,
    /// Nights the upload has been carried over.
    pub carried_nights: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn report_from(r: &tokio_postgres::Row) -> UploadReport {
    UploadReport {
        id: r.get("id"),
        source: r.get("source"),
        file_name: r.get("file_name"),
        state: r.get("state"),
        bytes: r.get("bytes"),
        entries: r.get("entries"),
        precheck_rejected: r.get("precheck_rejected"),
        registered: r.get("registered"),
        overwritten: r.get("overwritten"),
        deleted: r.get("deleted"),
        carried: r.get("carried"),
        rejected: r.get("rejected"),
        carried_nights: r.get("carried_nights"),
        created_at: r.get("created_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
    }
}

const REPORT_COLUMNS: &str = "id, source, file_name, state, bytes, entries, precheck_rejected,
    carried, carried_nights, created_at, started_at, finished_at,
    (SELECT coalesce(sum(registered), 0)::int8 FROM provision.upload_progress p WHERE p.upload_id = u.id) AS registered,
    (SELECT coalesce(sum(overwritten), 0)::int8 FROM provision.upload_progress p WHERE p.upload_id = u.id) AS overwritten,
    (SELECT coalesce(sum(deleted), 0)::int8 FROM provision.upload_progress p WHERE p.upload_id = u.id) AS deleted,
    (SELECT coalesce(sum(rejected), 0)::int8 FROM provision.upload_progress p WHERE p.upload_id = u.id) AS rejected";

pub async fn upload_report(
    tx: &impl GenericClient,
    tenant: &str,
    id: Uuid,
) -> Result<Option<UploadReport>, Error> {
    Ok(tx
        .query_opt(
            &format!(
                "SELECT {REPORT_COLUMNS} FROM provision.uploads u WHERE tenant_id = $1 AND id = $2"
            ),
            &[&tenant, &id],
        )
        .await?
        .map(|r| report_from(&r)))
}

pub async fn upload_reports(
    tx: &impl GenericClient,
    tenant: &str,
    limit: i64,
) -> Result<Vec<UploadReport>, Error> {
    let rows = tx
        .query(
            &format!(
                "SELECT {REPORT_COLUMNS} FROM provision.uploads u WHERE tenant_id = $1
                 ORDER BY created_at DESC LIMIT $2"
            ),
            &[&tenant, &limit],
        )
        .await?;
    Ok(rows.iter().map(report_from).collect())
}

/// Whether the tenant has an upload of this id (row-level security hides the others').
pub async fn upload_exists(tx: &impl GenericClient, upload: Uuid) -> Result<bool, Error> {
    let st = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM provision.uploads WHERE id = $1)")
        .await?;
    tx.query_one(&st, &[&upload]).await?.try_get(0)
}

pub async fn rejections(
    tx: &impl GenericClient,
    tenant: &str,
    upload: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<Rejection>, Error> {
    let rows = tx
        .query(
            "SELECT ordinal, record_id, code, detail, action FROM provision.upload_rejections
             WHERE tenant_id = $1 AND upload_id = $2 AND ordinal > $3 ORDER BY ordinal LIMIT $4",
            &[&tenant, &upload, &after, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Rejection {
            ordinal: r.get(0),
            record_id: r.get(1),
            code: r.get(2),
            detail: r.get(3),
            action: r.get(4),
        })
        .collect())
}

/// 副本件数 (replica counts) by item × version × dataset.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ReplicaCount {
    pub info_code: String,
    pub major_version: String,
    pub dataset: String,
    pub replicas: i64,
}

pub async fn replica_counts(
    tx: &impl GenericClient,
    tenant: &str,
) -> Result<Vec<ReplicaCount>, Error> {
    let rows = tx
        .query(
            "SELECT info_code, major_version, dataset, replicas FROM provision.replica_counts
             WHERE tenant_id = $1 AND replicas <> 0 ORDER BY 1, 2, 3",
            &[&tenant],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ReplicaCount {
            info_code: r.get(0),
            major_version: r.get(1),
            dataset: r.get(2),
            replicas: r.get(3),
        })
        .collect())
}

// ---- code links, residents' flags, provisions (情報提供) -------------------------------------

/// Keeps the newest link of a code (符号) to its addressee; an older event changes nothing.
pub async fn upsert_code_link(
    tx: &impl GenericClient,
    tenant: &str,
    code_bidx: &[u8],
    addressee_bidx: &[u8],
    addressee_sealed: &[u8],
    linked_at: DateTime<Utc>,
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.code_links (tenant_id, code_bidx, addressee_bidx, addressee_sealed, linked_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, code_bidx) DO UPDATE SET addressee_bidx = EXCLUDED.addressee_bidx,
                 addressee_sealed = EXCLUDED.addressee_sealed, linked_at = EXCLUDED.linked_at
             WHERE provision.code_links.linked_at <= EXCLUDED.linked_at",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &tenant,
            &code_bidx,
            &addressee_bidx,
            &addressee_sealed,
            &linked_at,
        ],
    )
    .await?;
    Ok(())
}

/// The addressee a code belongs to: (blind index, sealed number).
pub async fn code_link(
    tx: &impl GenericClient,
    tenant: &str,
    code_bidx: &[u8],
) -> Result<Option<(Vec<u8>, Vec<u8>)>, Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT addressee_bidx, addressee_sealed FROM provision.code_links
             WHERE tenant_id = $1 AND code_bidx = $2",
        )
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&tenant, &code_bidx])
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// A resident's flags row.
#[derive(Debug, Clone)]
pub struct StoredFlags {
    pub flags: crate::flags::Flags,
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

fn flags_from(r: &tokio_postgres::Row) -> StoredFlags {
    let prohibited: serde_json::Value = r.get("auto_response_prohibited");
    StoredFlags {
        flags: crate::flags::Flags {
            non_disclosure: r.get("non_disclosure"),
            self_info_prohibited: r.get("self_info_prohibited"),
            // Written only by put_flags from validated input, so it always parses.
            auto_response_prohibited: serde_json::from_value(prohibited).unwrap_or_default(),
        },
        revision: r.get("revision"),
        updated_at: r.get("updated_at"),
        updated_by: r.get("updated_by"),
    }
}

const FLAG_COLUMNS: &str = "f.non_disclosure, f.self_info_prohibited, f.auto_response_prohibited, f.revision, f.updated_at, f.updated_by";

pub async fn flags_of(
    tx: &impl GenericClient,
    tenant: &str,
    addressee_bidx: &[u8],
) -> Result<Option<StoredFlags>, Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {FLAG_COLUMNS} FROM provision.resident_flags f
             WHERE f.tenant_id = $1 AND f.addressee_bidx = $2"
        ))
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&tenant, &addressee_bidx])
        .await?
        .map(|r| flags_from(&r)))
}

/// The flags of the resident a code belongs to (one round trip with the other look-ups).
pub async fn flags_by_code(
    tx: &impl GenericClient,
    tenant: &str,
    code_bidx: &[u8],
) -> Result<Option<StoredFlags>, Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {FLAG_COLUMNS} FROM provision.code_links c
             JOIN provision.resident_flags f
               ON f.tenant_id = c.tenant_id AND f.addressee_bidx = c.addressee_bidx
             WHERE c.tenant_id = $1 AND c.code_bidx = $2"
        ))
        .await?;
    Ok(tx
        .query_opt(&stmt, &[&tenant, &code_bidx])
        .await?
        .map(|r| flags_from(&r)))
}

/// The replicas of one item of the resident a code belongs to.
pub async fn replicas_by_code(
    tx: &impl GenericClient,
    tenant: &str,
    code_bidx: &[u8],
    info_code: &str,
) -> Result<Vec<StoredReplica>, Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT r.info_code, r.major_version, r.dataset, r.key_bidx, r.record_id, r.public_start,
                    r.public_end, r.sealed, r.registered_at
             FROM provision.code_links c
             JOIN provision.replicas r
               ON r.tenant_id = c.tenant_id AND r.addressee_bidx = c.addressee_bidx
             WHERE c.tenant_id = $1 AND c.code_bidx = $2 AND r.info_code = $3::text
             ORDER BY r.registered_at, r.record_id",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenant, &code_bidx, &info_code]).await?;
    Ok(rows.iter().map(stored_from).collect())
}

/// Replaces a resident's flags; returns the new revision.
pub async fn put_flags(
    tx: &impl GenericClient,
    tenant: &str,
    addressee_bidx: &[u8],
    addressee_sealed: &[u8],
    flags: &crate::flags::Flags,
    now: DateTime<Utc>,
    by: &str,
) -> Result<i64, Error> {
    let prohibited = serde_json::to_value(&flags.auto_response_prohibited)
        .unwrap_or_else(|_| serde_json::Value::Array(Vec::new()));
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.resident_flags AS f (tenant_id, addressee_bidx, addressee_sealed,
                 non_disclosure, self_info_prohibited, auto_response_prohibited, revision, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8)
             ON CONFLICT (tenant_id, addressee_bidx) DO UPDATE SET
                 addressee_sealed = EXCLUDED.addressee_sealed,
                 non_disclosure = EXCLUDED.non_disclosure,
                 self_info_prohibited = EXCLUDED.self_info_prohibited,
                 auto_response_prohibited = EXCLUDED.auto_response_prohibited,
                 revision = f.revision + 1, updated_at = EXCLUDED.updated_at,
                 updated_by = EXCLUDED.updated_by
             RETURNING revision",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &tenant,
                &addressee_bidx,
                &addressee_sealed,
                &flags.non_disclosure,
                &flags.self_info_prohibited,
                &prohibited,
                &now,
                &by,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// A provision request as kept (情報提供等記録 of the provider side).
#[derive(Debug, Clone)]
pub struct ProvisionRow {
    pub permit_id: String,
    pub state: String,
    pub status: Option<String>,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub info_code: String,
    pub addressee_bidx: Option<Vec<u8>>,
    pub addressee_sealed: Option<Vec<u8>>,
    pub inquirer_org: String,
    pub affair_code: String,
    pub procedure_code: String,
    pub serial_no: String,
    pub branch_no: i32,
    pub condition: serde_json::Value,
    pub inquirer_non_disclosure: bool,
    pub requested_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub manual: bool,
    pub non_disclosure: bool,
    pub answered_by: Option<String>,
    pub records: i32,
    pub signed_permit: Vec<u8>,
}

const PROVISION_COLUMNS: &str = "permit_id, state, status, reason_code, reason, info_code,
    addressee_bidx, addressee_sealed, inquirer_org, affair_code, procedure_code, serial_no,
    branch_no, condition, inquirer_non_disclosure, requested_at, received_at, answered_at,
    expires_at, manual, non_disclosure, answered_by, records, signed_permit";

fn provision_from(r: &tokio_postgres::Row) -> ProvisionRow {
    ProvisionRow {
        permit_id: r.get("permit_id"),
        state: r.get("state"),
        status: r.get("status"),
        reason_code: r.get("reason_code"),
        reason: r.get("reason"),
        info_code: r.get("info_code"),
        addressee_bidx: r.get("addressee_bidx"),
        addressee_sealed: r.get("addressee_sealed"),
        inquirer_org: r.get("inquirer_org"),
        affair_code: r.get("affair_code"),
        procedure_code: r.get("procedure_code"),
        serial_no: r.get("serial_no"),
        branch_no: r.get("branch_no"),
        condition: r.get("condition"),
        inquirer_non_disclosure: r.get("inquirer_non_disclosure"),
        requested_at: r.get("requested_at"),
        received_at: r.get("received_at"),
        answered_at: r.get("answered_at"),
        expires_at: r.get("expires_at"),
        manual: r.get("manual"),
        non_disclosure: r.get("non_disclosure"),
        answered_by: r.get("answered_by"),
        records: r.get("records"),
        signed_permit: r.get("signed_permit"),
    }
}

/// Records a provision request; `false` when its permit id is already recorded (redelivery).
pub async fn insert_provision(
    tx: &impl GenericClient,
    tenant: &str,
    p: &ProvisionRow,
) -> Result<bool, Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO provision.provisions (tenant_id, {PROVISION_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, $19, $20, $21, $22, $23, $24, $25)
             ON CONFLICT (tenant_id, permit_id) DO NOTHING"
        ))
        .await?;
    let n = tx
        .execute(
            &stmt,
            &[
                &tenant,
                &p.permit_id,
                &p.state,
                &p.status,
                &p.reason_code,
                &p.reason,
                &p.info_code,
                &p.addressee_bidx,
                &p.addressee_sealed,
                &p.inquirer_org,
                &p.affair_code,
                &p.procedure_code,
                &p.serial_no,
                &p.branch_no,
                &p.condition,
                &p.inquirer_non_disclosure,
                &p.requested_at,
                &p.received_at,
                &p.answered_at,
                &p.expires_at,
                &p.manual,
                &p.non_disclosure,
                &p.answered_by,
                &p.records,
                &p.signed_permit,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// One provision, locked for an answer when `lock`.
pub async fn provision(
    tx: &impl GenericClient,
    tenant: &str,
    permit_id: &str,
    lock: bool,
) -> Result<Option<ProvisionRow>, Error> {
    let sql = format!(
        "SELECT {PROVISION_COLUMNS} FROM provision.provisions WHERE tenant_id = $1 AND permit_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let stmt = tx.prepare_cached(&sql).await?;
    Ok(tx
        .query_opt(&stmt, &[&tenant, &permit_id])
        .await?
        .map(|r| provision_from(&r)))
}

/// Provisions newest first, optionally of one state, after the one named by `before`.
pub async fn provisions_page(
    tx: &impl GenericClient,
    tenant: &str,
    state: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<ProvisionRow>, Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {PROVISION_COLUMNS} FROM provision.provisions p
             WHERE tenant_id = $1 AND ($2::text IS NULL OR state = $2::text)
               AND ($3::text IS NULL OR (received_at, permit_id) < (
                   SELECT received_at, permit_id FROM provision.provisions
                   WHERE tenant_id = $1 AND permit_id = $3::text))
             ORDER BY received_at DESC, permit_id DESC LIMIT $4"
        ))
        .await?;
    let rows = tx.query(&stmt, &[&tenant, &state, &before, &limit]).await?;
    Ok(rows.iter().map(provision_from).collect())
}

/// How a waiting provision was settled.
#[derive(Debug, Clone)]
pub struct Settlement<'a> {
    pub state: &'a str,
    pub status: &'a str,
    pub reason_code: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub answered_at: DateTime<Utc>,
    pub manual: bool,
    pub non_disclosure: bool,
    pub answered_by: Option<&'a str>,
    pub records: i32,
}

pub async fn settle_provision(
    tx: &impl GenericClient,
    tenant: &str,
    permit_id: &str,
    s: &Settlement<'_>,
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "UPDATE provision.provisions SET state = $3, status = $4, reason_code = $5, reason = $6,
                 answered_at = $7, manual = $8, non_disclosure = $9, answered_by = $10, records = $11
             WHERE tenant_id = $1 AND permit_id = $2",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &tenant,
            &permit_id,
            &s.state,
            &s.status,
            &s.reason_code,
            &s.reason,
            &s.answered_at,
            &s.manual,
            &s.non_disclosure,
            &s.answered_by,
            &s.records,
        ],
    )
    .await?;
    let stmt = tx
        .prepare_cached(
            "DELETE FROM provision.waiting_deadlines WHERE tenant_id = $1 AND permit_id = $2",
        )
        .await?;
    tx.execute(&stmt, &[&tenant, &permit_id]).await?;
    Ok(())
}

pub async fn add_deadline(
    tx: &impl GenericClient,
    tenant: &str,
    permit_id: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.waiting_deadlines (tenant_id, permit_id, expires_at)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&stmt, &[&tenant, &permit_id, &expires_at])
        .await?;
    Ok(())
}

/// Waiting provisions whose validity ended before `now`, across tenants.
pub async fn due_deadlines(
    client: &impl GenericClient,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(String, String)>, Error> {
    let rows = client
        .query(
            "SELECT tenant_id, permit_id FROM provision.waiting_deadlines
             WHERE expires_at < $1 ORDER BY expires_at LIMIT $2",
            &[&now, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
