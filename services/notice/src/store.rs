//! SQL of the notice service: one function per question, inside a tenant transaction so
//! row-level security decides what is visible (except the dispatcher's platform work list).
//! Statements are prepared once per connection (`prepare_cached`).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

use crate::domain::NoticeStatus;

/// The state the API shows: an accepted notice is `sent` once dispatched and its outbox row
/// is gone (the broker confirmed it onto relay's queue).
const SHOWN_STATE: &str = "CASE WHEN n.state = 'accepted' AND n.dispatched_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM notice.outbox o WHERE o.id = n.outbox_id)
     THEN 'sent' ELSE n.state END";

// ---- codes, from code.linked ----

/// The sealed code of a resident, by blind index.
pub async fn code_of(tx: &impl GenericClient, bidx: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    Ok(tx
        .query_opt(
            &tx.prepare_cached("SELECT code_enc FROM notice.code_links WHERE addressee_bidx = $1")
                .await?,
            &[&bidx],
        )
        .await?
        .map(|r| r.get(0)))
}

// ---- notices ----

pub struct NewNotice<'a> {
    pub tenant: &'a str,
    pub id: Uuid,
    pub bidx: &'a [u8],
    pub addressee_enc: &'a [u8],
    pub title_enc: &'a [u8],
    pub content_enc: &'a [u8],
    pub attachment_count: i32,
    pub attachment_bytes: i32,
    pub reply_choice_count: i32,
    pub accepted_at: DateTime<Utc>,
    pub deliver_at: Option<DateTime<Utc>>,
}

pub async fn insert_notice(tx: &impl GenericClient, n: &NewNotice<'_>) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO notice.notices
             (tenant_id, id, addressee_bidx, addressee_enc, title_enc, content_enc,
              attachment_count, attachment_bytes, reply_choice_count, state, accepted_at,
              deliver_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'accepted', $10, $11)",
        )
        .await?,
        &[
            &n.tenant,
            &n.id,
            &n.bidx,
            &n.addressee_enc,
            &n.title_enc,
            &n.content_enc,
            &n.attachment_count,
            &n.attachment_bytes,
            &n.reply_choice_count,
            &n.accepted_at,
            &n.deliver_at,
        ],
    )
    .await?;
    Ok(())
}

/// Records that the notice.send went into the outbox as `outbox_id`.
pub async fn mark_dispatched(
    tx: &impl GenericClient,
    id: Uuid,
    at: DateTime<Utc>,
    outbox_id: Uuid,
) -> Result<u64, Error> {
    tx.execute(
        &tx.prepare_cached(
            "UPDATE notice.notices SET dispatched_at = $2, outbox_id = $3
             WHERE id = $1 AND dispatched_at IS NULL",
        )
        .await?,
        &[&id, &at, &outbox_id],
    )
    .await
}

/// Puts a notice on the dispatcher's list for its deliver_at.
pub async fn schedule(
    tx: &impl GenericClient,
    id: Uuid,
    tenant: &str,
    deliver_at: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO notice.scheduled (notice_id, tenant_id, deliver_at) VALUES ($1, $2, $3)",
        )
        .await?,
        &[&id, &tenant, &deliver_at],
    )
    .await?;
    Ok(())
}

/// Scheduled notices due at `now`, oldest first (platform list, no personal data).
pub async fn due_scheduled(
    client: &impl GenericClient,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, Error> {
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT notice_id, tenant_id FROM notice.scheduled WHERE deliver_at <= $1
                     ORDER BY deliver_at LIMIT $2",
                )
                .await?,
            &[&now, &limit],
        )
        .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Takes a scheduled notice off the list; false when another dispatcher already took it
/// (the delete waits for and then sees that one's commit).
pub async fn take_scheduled(tx: &impl GenericClient, id: Uuid) -> Result<bool, Error> {
    Ok(tx
        .execute(
            &tx.prepare_cached("DELETE FROM notice.scheduled WHERE notice_id = $1")
                .await?,
            &[&id],
        )
        .await?
        == 1)
}

/// What dispatching a scheduled notice needs, sealed columns still sealed.
pub struct Undispatched {
    pub bidx: Vec<u8>,
    pub addressee_enc: Vec<u8>,
    pub content_enc: Vec<u8>,
    pub accepted_at: DateTime<Utc>,
}

/// The notice, locked, when it is visible and not dispatched yet.
pub async fn undispatched(
    tx: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Undispatched>, Error> {
    Ok(tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT addressee_bidx, addressee_enc, content_enc, accepted_at FROM notice.notices
                 WHERE id = $1 AND dispatched_at IS NULL FOR UPDATE",
            )
            .await?,
            &[&id],
        )
        .await?
        .map(|r| Undispatched {
            bidx: r.get(0),
            addressee_enc: r.get(1),
            content_enc: r.get(2),
            accepted_at: r.get(3),
        }))
}

/// A notice row as read, sealed columns still sealed.
pub struct NoticeRow {
    pub id: Uuid,
    pub state: NoticeStatus,
    pub addressee_enc: Vec<u8>,
    pub title_enc: Vec<u8>,
    pub content_enc: Option<Vec<u8>>,
    pub attachment_count: i32,
    pub reply_choice_count: i32,
    pub accepted_at: DateTime<Utc>,
    pub deliver_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub reply_enc: Option<Vec<u8>>,
    pub replied_at: Option<DateTime<Utc>>,
    pub reason_code: Option<String>,
    pub status_at: Option<DateTime<Utc>>,
}

fn notice_columns(with_content: bool) -> String {
    format!(
        "n.id, {SHOWN_STATE}, n.addressee_enc, n.title_enc, {}, n.attachment_count,
         n.reply_choice_count, n.accepted_at, n.deliver_at, n.dispatched_at, n.read_at,
         n.reply_enc, n.replied_at, n.reason_code, n.status_at",
        if with_content {
            "n.content_enc"
        } else {
            "NULL::bytea"
        }
    )
}

fn notice_row(r: &Row) -> Result<NoticeRow, Error> {
    Ok(NoticeRow {
        id: r.get(0),
        // SHOWN_STATE is text: the stored state, or `sent` in its place.
        state: r.try_get::<_, NoticeStatus>(1)?,
        addressee_enc: r.get(2),
        title_enc: r.get(3),
        content_enc: r.get(4),
        attachment_count: r.get(5),
        reply_choice_count: r.get(6),
        accepted_at: r.get(7),
        deliver_at: r.get(8),
        dispatched_at: r.get(9),
        read_at: r.get(10),
        reply_enc: r.get(11),
        replied_at: r.get(12),
        reason_code: r.get(13),
        status_at: r.get(14),
    })
}

/// One notice with its content, if visible to the tenant.
pub async fn notice(tx: &impl GenericClient, id: Uuid) -> Result<Option<NoticeRow>, Error> {
    let sql = format!(
        "SELECT {} FROM notice.notices n WHERE n.id = $1",
        notice_columns(true)
    );
    tx.query_opt(&tx.prepare_cached(&sql).await?, &[&id])
        .await?
        .as_ref()
        .map(notice_row)
        .transpose()
}

/// A page of notices without content, in id (acceptance) order.
pub async fn list(
    tx: &impl GenericClient,
    bidx: Option<&[u8]>,
    state: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<NoticeRow>, Error> {
    let sql = format!(
        "SELECT {} FROM notice.notices n
         WHERE ($1::bytea IS NULL OR n.addressee_bidx = $1)
           AND ($2::text IS NULL OR ({SHOWN_STATE}) = $2)
           AND ($3::uuid IS NULL OR n.id > $3)
         ORDER BY n.id LIMIT $4",
        notice_columns(false)
    );
    let rows = tx
        .query(
            &tx.prepare_cached(&sql).await?,
            &[&bidx, &state, &after, &limit],
        )
        .await?;
    rows.iter().map(notice_row).collect()
}

/// Of `ids`, those the tenant has, with whether each was dispatched.
pub async fn known_notices(
    tx: &impl GenericClient,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, bool)>, Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT id, dispatched_at IS NOT NULL FROM notice.notices WHERE id = ANY($1)",
            )
            .await?,
            &[&ids],
        )
        .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Dispatched notices still open (not replied, not undeliverable), oldest first.
pub async fn open_notices(tx: &impl GenericClient, limit: i64) -> Result<Vec<Uuid>, Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT id FROM notice.notices
                 WHERE dispatched_at IS NOT NULL AND state IN ('accepted', 'delivered', 'read')
                 ORDER BY id LIMIT $1",
            )
            .await?,
            &[&limit],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// A notice locked for a status update.
pub struct LockedNotice {
    pub id: Uuid,
    pub state: NoticeStatus,
    pub addressee_enc: Vec<u8>,
    pub accepted_at: DateTime<Utc>,
}

/// The named notices the tenant has, locked until the transaction ends (so two reports on the
/// same notice apply one after the other).
pub async fn lock_notices(
    tx: &impl GenericClient,
    ids: &[Uuid],
) -> Result<Vec<LockedNotice>, Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT id, state, addressee_enc, accepted_at FROM notice.notices
                 WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .await?,
            &[&ids],
        )
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(LockedNotice {
                id: r.get(0),
                state: r.try_get::<_, NoticeStatus>(1)?,
                addressee_enc: r.get(2),
                accepted_at: r.get(3),
            })
        })
        .collect()
}

/// A reported state, to store.
pub struct StatusUpdate<'a> {
    pub id: Uuid,
    pub state: NoticeStatus,
    pub read_at: Option<DateTime<Utc>>,
    pub reply_enc: Option<&'a [u8]>,
    pub replied_at: Option<DateTime<Utc>>,
    pub reason_code: Option<&'a str>,
    pub status_at: DateTime<Utc>,
}

pub async fn apply_status(tx: &impl GenericClient, u: &StatusUpdate<'_>) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "UPDATE notice.notices
             SET state = $2, read_at = coalesce($3, read_at), reply_enc = coalesce($4, reply_enc),
                 replied_at = coalesce($5, replied_at), reason_code = $6, status_at = $7
             WHERE id = $1",
        )
        .await?,
        &[
            &u.id,
            &u.state,
            &u.read_at,
            &u.reply_enc,
            &u.replied_at,
            &u.reason_code,
            &u.status_at,
        ],
    )
    .await?;
    Ok(())
}

// ---- status checks ----

pub async fn insert_check(
    tx: &impl GenericClient,
    tenant: &str,
    id: Uuid,
    notice_ids: &[Uuid],
    at: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO notice.status_checks (tenant_id, id, notice_ids, requested_at)
             VALUES ($1, $2, $3, $4)",
        )
        .await?,
        &[&tenant, &id, &notice_ids, &at],
    )
    .await?;
    Ok(())
}

pub struct CheckRow {
    pub notice_ids: Vec<Uuid>,
    pub requested_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub reported: i32,
}

pub async fn check(tx: &impl GenericClient, id: Uuid) -> Result<Option<CheckRow>, Error> {
    Ok(tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT notice_ids, requested_at, answered_at, reported
                 FROM notice.status_checks WHERE id = $1",
            )
            .await?,
            &[&id],
        )
        .await?
        .map(|r| CheckRow {
            notice_ids: r.get(0),
            requested_at: r.get(1),
            answered_at: r.get(2),
            reported: r.get(3),
        }))
}

/// Marks a check answered (the first answer stands); false when unknown or answered.
pub async fn mark_check_answered(
    tx: &impl GenericClient,
    id: Uuid,
    at: DateTime<Utc>,
    reported: i32,
) -> Result<bool, Error> {
    Ok(tx
        .execute(
            &tx.prepare_cached(
                "UPDATE notice.status_checks SET answered_at = $2, reported = $3
                 WHERE id = $1 AND answered_at IS NULL",
            )
            .await?,
            &[&id, &at, &reported],
        )
        .await?
        == 1)
}

/// The current state of the named notices, for a check's view.
pub async fn checked(tx: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<NoticeRow>, Error> {
    let sql = format!(
        "SELECT {} FROM notice.notices n WHERE n.id = ANY($1) ORDER BY n.id",
        notice_columns(false)
    );
    let rows = tx.query(&tx.prepare_cached(&sql).await?, &[&ids]).await?;
    rows.iter().map(notice_row).collect()
}
