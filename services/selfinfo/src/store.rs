//! SQL of the self-information service, one function per question. Tenant-owned tables are
//! only touched inside `chukan_db::tenant_tx`; `pending` is the cross-tenant work list.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;
use uuid::Uuid;

// ---- requests -------------------------------------------------------------------------------

/// A request as it arrives.
pub struct NewRequest<'a> {
    pub tenant: &'a str,
    pub id: Uuid,
    pub request_id: &'a str,
    pub code_enc: &'a [u8],
    pub info_codes: &'a [String],
    pub requested_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

/// Stores a request; `false` when the portal's request id is already here (a second NWS
/// message for the same request: the first stands).
pub async fn insert_request(tx: &impl GenericClient, r: &NewRequest<'_>) -> Result<bool, Error> {
    let st = tx
        .prepare_cached(
            "INSERT INTO selfinfo.requests (tenant_id, id, request_id, code_enc, info_codes, state,
                 requested_at, received_at)
             VALUES ($1, $2, $3, $4, $5, 'received', $6, $7)
             ON CONFLICT (tenant_id, request_id) DO NOTHING",
        )
        .await?;
    let n = tx
        .execute(
            &st,
            &[
                &r.tenant,
                &r.id,
                &r.request_id,
                &r.code_enc,
                &r.info_codes,
                &r.requested_at,
                &r.received_at,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Puts a request on the work list, due at `due_at`.
pub async fn insert_pending(
    tx: &impl GenericClient,
    id: Uuid,
    tenant: &str,
    due_at: DateTime<Utc>,
) -> Result<(), Error> {
    let st = tx
        .prepare_cached(
            "INSERT INTO selfinfo.pending (id, tenant_id, due_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    tx.execute(&st, &[&id, &tenant, &due_at]).await?;
    Ok(())
}

/// Takes up to `limit` due requests for this worker until `lease_until`: rows another worker is
/// taking right now are skipped, and a worker that dies lets its lease run out.
pub async fn lease_due(
    client: &impl GenericClient,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, Error> {
    let st = client
        .prepare_cached(
            "UPDATE selfinfo.pending p SET due_at = $2
             WHERE p.id IN (SELECT id FROM selfinfo.pending WHERE due_at <= $1
                            ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING p.id, p.tenant_id",
        )
        .await?;
    let rows = client.query(&st, &[&now, &lease_until, &limit]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Sets when a waiting request is tried next.
pub async fn reschedule(
    client: &impl GenericClient,
    id: Uuid,
    due_at: DateTime<Utc>,
) -> Result<(), Error> {
    let st = client
        .prepare_cached("UPDATE selfinfo.pending SET due_at = $2 WHERE id = $1")
        .await?;
    client.execute(&st, &[&id, &due_at]).await?;
    Ok(())
}

pub async fn delete_pending(tx: &impl GenericClient, id: Uuid) -> Result<(), Error> {
    let st = tx
        .prepare_cached("DELETE FROM selfinfo.pending WHERE id = $1")
        .await?;
    tx.execute(&st, &[&id]).await?;
    Ok(())
}

/// What the worker needs of a request.
pub struct WaitingRequest {
    pub request_id: String,
    pub code_enc: Vec<u8>,
    pub info_codes: Vec<String>,
    pub state: String,
    pub requested_at: Option<DateTime<Utc>>,
    pub attempts: i32,
}

/// The request, locked when `lock` (the answering transaction) so two workers cannot both
/// answer it.
pub async fn waiting_request(
    tx: &impl GenericClient,
    id: Uuid,
    lock: bool,
) -> Result<Option<WaitingRequest>, Error> {
    let sql = format!(
        "SELECT request_id, code_enc, info_codes, state, requested_at, attempts
         FROM selfinfo.requests WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let st = tx.prepare_cached(&sql).await?;
    Ok(tx.query_opt(&st, &[&id]).await?.map(|r| WaitingRequest {
        request_id: r.get(0),
        code_enc: r.get(1),
        info_codes: r.get(2),
        state: r.get(3),
        requested_at: r.get(4),
        attempts: r.get(5),
    }))
}

/// Counts a round that could not be completed; returns the attempts so far.
pub async fn count_attempt(tx: &impl GenericClient, id: Uuid) -> Result<i32, Error> {
    let st = tx
        .prepare_cached(
            "UPDATE selfinfo.requests SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts",
        )
        .await?;
    Ok(tx.query_opt(&st, &[&id]).await?.map_or(0, |r| r.get(0)))
}

/// The answer as stored.
pub struct StoredAnswer<'a> {
    pub status: &'a str,
    pub reason_code: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub item_count: i32,
    pub record_count: i32,
    pub attachment_count: i32,
    pub answer_enc: &'a [u8],
    pub answered_at: DateTime<Utc>,
}

pub async fn store_answer(
    tx: &impl GenericClient,
    id: Uuid,
    a: &StoredAnswer<'_>,
) -> Result<(), Error> {
    let st = tx
        .prepare_cached(
            "UPDATE selfinfo.requests SET state = 'answered', status = $2, reason_code = $3,
                 reason = $4, item_count = $5, record_count = $6, attachment_count = $7,
                 answer_enc = $8, answered_at = $9
             WHERE id = $1",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &id,
            &a.status,
            &a.reason_code,
            &a.reason,
            &a.item_count,
            &a.record_count,
            &a.attachment_count,
            &a.answer_enc,
            &a.answered_at,
        ],
    )
    .await?;
    Ok(())
}

/// A request as staff see it: ids, state and counts, no personal data.
#[derive(Debug, Clone)]
pub struct RequestSummary {
    pub id: Uuid,
    pub request_id: String,
    pub state: String,
    pub status: Option<String>,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub info_codes: Vec<String>,
    pub item_count: i32,
    pub record_count: i32,
    pub attachment_count: i32,
    pub attempts: i32,
    pub requested_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
}

const SUMMARY_COLUMNS: &str = "id, request_id, state, status, reason_code, reason, info_codes, \
     item_count, record_count, attachment_count, attempts, requested_at, received_at, answered_at";

fn summary_from(r: &tokio_postgres::Row) -> RequestSummary {
    RequestSummary {
        id: r.get(0),
        request_id: r.get(1),
        state: r.get(2),
        status: r.get(3),
        reason_code: r.get(4),
        reason: r.get(5),
        info_codes: r.get(6),
        item_count: r.get(7),
        record_count: r.get(8),
        attachment_count: r.get(9),
        attempts: r.get(10),
        requested_at: r.get(11),
        received_at: r.get(12),
        answered_at: r.get(13),
    }
}

/// Newest first, optionally of one state.
pub async fn list_requests(
    tx: &impl GenericClient,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<RequestSummary>, Error> {
    let st = tx
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM selfinfo.requests
             WHERE ($1::text IS NULL OR state = $1::text)
             ORDER BY received_at DESC, id DESC LIMIT $2"
        ))
        .await?;
    Ok(tx
        .query(&st, &[&state, &limit])
        .await?
        .iter()
        .map(summary_from)
        .collect())
}

pub async fn request(tx: &impl GenericClient, id: Uuid) -> Result<Option<RequestSummary>, Error> {
    let st = tx
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM selfinfo.requests WHERE id = $1"
        ))
        .await?;
    Ok(tx.query_opt(&st, &[&id]).await?.map(|r| summary_from(&r)))
}

// ---- attachments ----------------------------------------------------------------------------

/// An attachment without its content.
#[derive(Debug, Clone)]
pub struct AttachmentMeta {
    pub info_code: String,
    pub file_name: String,
    pub media_type: String,
    pub size_bytes: i32,
    pub uploaded_at: DateTime<Utc>,
    pub uploaded_by: String,
}

fn meta_from(r: &tokio_postgres::Row) -> AttachmentMeta {
    AttachmentMeta {
        info_code: r.get(0),
        file_name: r.get(1),
        media_type: r.get(2),
        size_bytes: r.get(3),
        uploaded_at: r.get(4),
        uploaded_by: r.get(5),
    }
}

/// Stores or replaces a file; `true` when it is new.
pub async fn put_attachment(
    tx: &impl GenericClient,
    tenant: &str,
    meta: &AttachmentMeta,
    content: &[u8],
) -> Result<bool, Error> {
    let st = tx
        .prepare_cached(
            "INSERT INTO selfinfo.attachments AS a (tenant_id, info_code, file_name, media_type,
                 size_bytes, content, uploaded_at, uploaded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, info_code, file_name) DO UPDATE SET
                 media_type = EXCLUDED.media_type, size_bytes = EXCLUDED.size_bytes,
                 content = EXCLUDED.content, uploaded_at = EXCLUDED.uploaded_at,
                 uploaded_by = EXCLUDED.uploaded_by
             RETURNING (xmax = 0)",
        )
        .await?;
    let row = tx
        .query_one(
            &st,
            &[
                &tenant,
                &meta.info_code,
                &meta.file_name,
                &meta.media_type,
                &meta.size_bytes,
                &content,
                &meta.uploaded_at,
                &meta.uploaded_by,
            ],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn list_attachments(
    tx: &impl GenericClient,
    info_code: Option<&str>,
) -> Result<Vec<AttachmentMeta>, Error> {
    let st = tx
        .prepare_cached(
            "SELECT info_code, file_name, media_type, size_bytes, uploaded_at, uploaded_by
             FROM selfinfo.attachments WHERE ($1::text IS NULL OR info_code = $1::text)
             ORDER BY info_code, file_name",
        )
        .await?;
    Ok(tx
        .query(&st, &[&info_code])
        .await?
        .iter()
        .map(meta_from)
        .collect())
}

/// One file with its content.
pub async fn attachment(
    tx: &impl GenericClient,
    info_code: &str,
    file_name: &str,
) -> Result<Option<(AttachmentMeta, Vec<u8>)>, Error> {
    let st = tx
        .prepare_cached(
            "SELECT info_code, file_name, media_type, size_bytes, uploaded_at, uploaded_by, content
             FROM selfinfo.attachments WHERE info_code = $1::text AND file_name = $2",
        )
        .await?;
    Ok(tx
        .query_opt(&st, &[&info_code, &file_name])
        .await?
        .map(|r| (meta_from(&r), r.get(6))))
}

/// The files of the listed items, with content, for an answer.
pub async fn attachments_of(
    tx: &impl GenericClient,
    info_codes: &[String],
) -> Result<Vec<(AttachmentMeta, Vec<u8>)>, Error> {
    let st = tx
        .prepare_cached(
            "SELECT info_code, file_name, media_type, size_bytes, uploaded_at, uploaded_by, content
             FROM selfinfo.attachments WHERE info_code = ANY($1::text[])
             ORDER BY info_code, file_name",
        )
        .await?;
    Ok(tx
        .query(&st, &[&info_codes])
        .await?
        .iter()
        .map(|r| (meta_from(r), r.get(6)))
        .collect())
}

pub async fn delete_attachment(
    tx: &impl GenericClient,
    info_code: &str,
    file_name: &str,
) -> Result<bool, Error> {
    let st = tx
        .prepare_cached(
            "DELETE FROM selfinfo.attachments WHERE info_code = $1::text AND file_name = $2",
        )
        .await?;
    Ok(tx.execute(&st, &[&info_code, &file_name]).await? == 1)
}
