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
    pub next_ordinal: i64,
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
            "SELECT id, entries, next_ordinal, state FROM provision.uploads
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
            next_ordinal: r.get(2),
            state: r.get(3),
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

/// Counters a committed batch of entries adds to its upload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Applied {
    pub registered: i64,
    pub overwritten: i64,
    pub deleted: i64,
    pub rejected: i64,
}

pub async fn advance_upload(
    tx: &impl GenericClient,
    id: Uuid,
    applied: Applied,
    next_ordinal: i64,
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "UPDATE provision.uploads SET registered = registered + $2, overwritten = overwritten + $3,
                 deleted = deleted + $4, rejected = rejected + $5, next_ordinal = $6
             WHERE id = $1",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &id,
            &applied.registered,
            &applied.overwritten,
            &applied.deleted,
            &applied.rejected,
            &next_ordinal,
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

/// Tonight's quota is used up: what is left of the upload waits for the next night.
pub async fn carry_upload(tx: &impl GenericClient, id: Uuid) -> Result<(), Error> {
    tx.execute(
        "UPDATE provision.uploads SET state = 'carried', carried = entries - next_ordinal + 1,
             carried_nights = carried_nights + 1
         WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

// ---- quota ----------------------------------------------------------------------------

pub async fn daily_usage(
    tx: &impl GenericClient,
    tenant: &str,
    day: NaiveDate,
) -> Result<(i64, i64), Error> {
    let row = tx
        .query_opt(
            "SELECT records, bytes FROM provision.daily_usage WHERE tenant_id = $1 AND day = $2",
            &[&tenant, &day],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))).unwrap_or((0, 0)))
}

pub async fn add_usage(
    tx: &impl GenericClient,
    tenant: &str,
    day: NaiveDate,
    records: i64,
    bytes: i64,
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO provision.daily_usage (tenant_id, day, records, bytes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, day) DO UPDATE
             SET records = provision.daily_usage.records + EXCLUDED.records,
                 bytes = provision.daily_usage.bytes + EXCLUDED.bytes",
        )
        .await?;
    tx.execute(&stmt, &[&tenant, &day, &records, &bytes])
        .await?;
    Ok(())
}

// ---- replicas -------------------------------------------------------------------------

/// Record ids among `ids` that a replica already carries.
pub async fn existing_record_ids(
    tx: &impl GenericClient,
    tenant: &str,
    ids: &[&str],
) -> Result<HashSet<String>, Error> {
    let stmt = tx
        .prepare_cached(
            "SELECT record_id FROM provision.replicas WHERE tenant_id = $1 AND record_id = ANY($2)",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenant, &ids]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Rows to register, as parallel columns (one array parameter each).
#[derive(Debug, Default)]
pub struct ReplicaRows<'a> {
    pub info_code: Vec<&'a str>,
    pub major_version: Vec<&'a str>,
    pub dataset: Vec<&'a str>,
    pub key_bidx: Vec<&'a [u8]>,
    pub record_id: Vec<&'a str>,
    pub addressee_bidx: Vec<&'a [u8]>,
    pub public_start: Vec<Option<NaiveDate>>,
    pub public_end: Vec<Option<NaiveDate>>,
    pub sealed: Vec<&'a [u8]>,
    pub bytes: Vec<i32>,
}

/// Per record kind: how many rows were new and how many overwritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindCount {
    pub kind: RecordKind,
    pub inserted: i64,
    pub updated: i64,
}

/// Registers or overwrites (上書き) rows, keyed by item, version, dataset and record key.
/// The keys must be distinct within one call.
pub async fn upsert_replicas(
    tx: &impl GenericClient,
    tenant: &str,
    upload: Uuid,
    now: DateTime<Utc>,
    rows: &ReplicaRows<'_>,
) -> Result<Vec<KindCount>, Error> {
    let stmt = tx
        .prepare_cached(
            "WITH up AS (
                 INSERT INTO provision.replicas AS r (tenant_id, info_code, major_version, dataset, key_bidx,
                     record_id, addressee_bidx, public_start, public_end, sealed, bytes, upload_id, registered_at)
                 SELECT $1, x.info, x.major, x.ds, x.k, x.rid, x.a, x.ps, x.pe, x.s, x.b, $2, $3
                 FROM unnest($4::text[], $5::text[], $6::text[], $7::bytea[], $8::text[], $9::bytea[],
                             $10::date[], $11::date[], $12::bytea[], $13::int4[])
                      AS x(info, major, ds, k, rid, a, ps, pe, s, b)
                 ON CONFLICT (tenant_id, info_code, major_version, dataset, key_bidx) DO UPDATE
                 SET record_id = EXCLUDED.record_id, addressee_bidx = EXCLUDED.addressee_bidx,
                     public_start = EXCLUDED.public_start, public_end = EXCLUDED.public_end,
                     sealed = EXCLUDED.sealed, bytes = EXCLUDED.bytes, upload_id = EXCLUDED.upload_id,
                     registered_at = EXCLUDED.registered_at
                 RETURNING (r.xmax = 0) AS inserted, r.info_code, r.major_version, r.dataset)
             SELECT info_code, major_version, dataset,
                    count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
             FROM up GROUP BY 1, 2, 3",
        )
        .await?;
    let result = tx
        .query(
            &stmt,
            &[
                &tenant,
                &upload,
                &now,
                &rows.info_code,
                &rows.major_version,
                &rows.dataset,
                &rows.key_bidx,
                &rows.record_id,
                &rows.addressee_bidx,
                &rows.public_start,
                &rows.public_end,
                &rows.sealed,
                &rows.bytes,
            ],
        )
        .await?;
    Ok(result.iter().map(kind_count).collect())
}

fn kind_count(r: &tokio_postgres::Row) -> KindCount {
    KindCount {
        kind: RecordKind {
            info_code: r.get(0),
            major_version: r.get(1),
            dataset: r.get(2),
        },
        inserted: r.get(3),
        updated: r.get(4),
    }
}

/// Deletes the rows with these keys; returns the keys that existed (as ordinals given back).
pub async fn delete_replicas(
    tx: &impl GenericClient,
    tenant: &str,
    info_code: &[&str],
    major_version: &[&str],
    dataset: &[&str],
    key_bidx: &[&[u8]],
    ordinal: &[i64],
) -> Result<Vec<(i64, RecordKind)>, Error> {
    let stmt = tx
        .prepare_cached(
            "DELETE FROM provision.replicas r
             USING unnest($2::text[], $3::text[], $4::text[], $5::bytea[], $6::int8[])
                   AS x(info, major, ds, k, ord)
             WHERE r.tenant_id = $1 AND r.info_code = x.info AND r.major_version = x.major
               AND r.dataset = x.ds AND r.key_bidx = x.k
             RETURNING x.ord, r.info_code, r.major_version, r.dataset",
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
                &key_bidx,
                &ordinal,
            ],
        )
        .await?;
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

/// Adds `delta` to the replica counts of each kind; returns the counts now.
pub async fn bump_counts(
    tx: &impl GenericClient,
    tenant: &str,
    deltas: &[(RecordKind, i64)],
) -> Result<Vec<(RecordKind, i64, i64)>, Error> {
    if deltas.is_empty() {
        return Ok(Vec::new());
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
            "INSERT INTO provision.replica_counts AS c (tenant_id, info_code, major_version, dataset, replicas)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[])
             ON CONFLICT (tenant_id, info_code, major_version, dataset)
             DO UPDATE SET replicas = c.replicas + EXCLUDED.replicas
             RETURNING info_code, major_version, dataset, replicas",
        )
        .await?;
    let rows = tx.query(&stmt, &[&tenant, &info, &major, &ds, &d]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let kind = RecordKind {
                info_code: r.get(0),
                major_version: r.get(1),
                dataset: r.get(2),
            };
            let delta = deltas
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, d)| *d)
                .unwrap_or(0);
            (kind, r.get::<_, i64>(3), delta)
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
             WHERE tenant_id = $1 AND addressee_bidx = $2 AND info_code = $3
               AND ($4::text IS NULL OR dataset = $4)
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
            "SELECT coalesce(sum(replicas), 0)::int8 FROM provision.replica_counts
             WHERE tenant_id = $1 AND info_code = $2
               AND ($3::text IS NULL OR major_version = $3) AND ($4::text IS NULL OR dataset = $4)",
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
             WHERE tenant_id = $1 AND info_code = $2
               AND ($3::text IS NULL OR major_version = $3) AND ($4::text IS NULL OR dataset = $4)
               AND record_id > $5
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
    registered, overwritten, deleted, carried, rejected, carried_nights, created_at, started_at,
    finished_at";

pub async fn upload_report(
    tx: &impl GenericClient,
    tenant: &str,
    id: Uuid,
) -> Result<Option<UploadReport>, Error> {
    Ok(tx
        .query_opt(
            &format!(
                "SELECT {REPORT_COLUMNS} FROM provision.uploads WHERE tenant_id = $1 AND id = $2"
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
                "SELECT {REPORT_COLUMNS} FROM provision.uploads WHERE tenant_id = $1
                 ORDER BY created_at DESC LIMIT $2"
            ),
            &[&tenant, &limit],
        )
        .await?;
    Ok(rows.iter().map(report_from).collect())
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
