//! Uploads of registration lists: their chunks, progress, the daily quota they count against and the reports read back.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;
use uuid::Uuid;

use super::replicas::Rejection;

chukan_db::text_enum! {
    /// Where an upload is in the batch (`provision.uploads.state`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum UploadState {
        /// Accepted; waits for the night's batch or the immediate worker.
        Queued = "queued",
        /// The batch is applying it.
        Processing = "processing",
        /// The daily quota ran out: the rest waits for the next night (繰越).
        Carried = "carried",
        /// Applied to its end.
        Done = "done",
    }
}

chukan_db::text_enum! {
    /// How a registration list arrived (`provision.uploads.source`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum UploadSource {
        /// A file (ファイル連携), uploaded whole.
        File = "file",
        /// Entries posted to the REST route (オンライン連携).
        Rest = "rest",
    }
}

pub async fn insert_upload(
    tx: &impl GenericClient,
    tenant: &str,
    id: Uuid,
    source: UploadSource,
    file_name: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO provision.uploads (tenant_id, id, source, file_name, bytes, entries, state, created_at)
         VALUES ($1, $2, $3, $4, 0, 0, $5, $6)",
        &[&tenant, &id, &source, &file_name, &UploadState::Queued, &now],
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
    pub state: UploadState,
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
             WHERE tenant_id = $1 AND state <> $3 AND ($2::uuid IS NULL OR id = $2)
             ORDER BY created_at, id",
            &[&tenant, &only, &UploadState::Done],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(PendingUpload {
                id: r.get(0),
                entries: r.get(1),
                state: r.try_get(2)?,
            })
        })
        .collect()
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
        "UPDATE provision.uploads SET state = $3, started_at = coalesce(started_at, $2)
         WHERE id = $1",
        &[&id, &now, &UploadState::Processing],
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
        "UPDATE provision.uploads SET state = $3, carried = 0, finished_at = $2 WHERE id = $1",
        &[&id, &now, &UploadState::Done],
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
        "UPDATE provision.uploads SET state = $3, carried = $2,
             carried_nights = carried_nights + 1
         WHERE id = $1",
        &[&id, &carried, &UploadState::Carried],
    )
    .await?;
    Ok(())
}

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

/// 処理結果 (the result report of one upload).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UploadReport {
    pub id: Uuid,
    pub source: UploadSource,
    pub file_name: Option<String>,
    pub state: UploadState,
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

fn report_from(r: &tokio_postgres::Row) -> Result<UploadReport, Error> {
    Ok(UploadReport {
        id: r.get("id"),
        source: r.try_get("source")?,
        file_name: r.get("file_name"),
        state: r.try_get("state")?,
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
    })
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
    tx.query_opt(
        &format!(
            "SELECT {REPORT_COLUMNS} FROM provision.uploads u WHERE tenant_id = $1 AND id = $2"
        ),
        &[&tenant, &id],
    )
    .await?
    .map(|r| report_from(&r))
    .transpose()
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
    rows.iter().map(report_from).collect()
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
