//! SQL of the inquiry service: one function per question, inside a tenant transaction so
//! row-level security decides what is visible (except the two platform work lists).
//! Statements are prepared once per connection (`prepare_cached`).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::{Error, Row};
use uuid::Uuid;

use crate::domain::{Inquiry, InquiryStatus, LineError, NewInquiry};

// ---- state kept from events ----

/// Stores a resident's 不開示該当フラグ unless a later revision is already held.
pub async fn upsert_flags(
    tx: &impl GenericClient,
    tenant: &str,
    bidx: &[u8],
    non_disclosure: bool,
    revision: i64,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO inquiry.flags (tenant_id, addressee_bidx, non_disclosure, revision)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, addressee_bidx) DO UPDATE
             SET non_disclosure = EXCLUDED.non_disclosure, revision = EXCLUDED.revision
             WHERE inquiry.flags.revision < EXCLUDED.revision",
        )
        .await?,
        &[&tenant, &bidx, &non_disclosure, &revision],
    )
    .await?;
    Ok(())
}

pub async fn upsert_department(
    tx: &impl GenericClient,
    tenant: &str,
    code: &str,
    name: &str,
    excluded: &[String],
    periods: &serde_json::Value,
    revision: i64,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO inquiry.departments
                 (tenant_id, code, name, excluded_procedures, periods, revision)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, code) DO UPDATE
             SET name = EXCLUDED.name, excluded_procedures = EXCLUDED.excluded_procedures,
                 periods = EXCLUDED.periods, revision = EXCLUDED.revision
             WHERE inquiry.departments.revision < EXCLUDED.revision",
        )
        .await?,
        &[&tenant, &code, &name, &excluded, &periods, &revision],
    )
    .await?;
    Ok(())
}

/// What a department's validity history says of one Japan date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepartmentOn {
    /// Not announced (yet): nothing is excluded.
    Unknown,
    /// Announced, but no period covers the day (ended, or not yet started).
    NotValid,
    /// The procedures it may not inquire for that day.
    Excludes(Vec<String>),
}

#[derive(serde::Deserialize)]
struct StoredPeriod {
    valid_from: NaiveDate,
    valid_to: Option<NaiveDate>,
    excluded: Vec<String>,
}

/// A department on `day`, from its announced periods (or, announced without a history, its
/// one list for every day).
pub async fn department_on(
    tx: &impl GenericClient,
    department: &str,
    day: NaiveDate,
) -> Result<DepartmentOn, Error> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT excluded_procedures, periods FROM inquiry.departments WHERE code = $1",
            )
            .await?,
            &[&department],
        )
        .await?;
    let Some(row) = row else {
        return Ok(DepartmentOn::Unknown);
    };
    let excluded: Vec<String> = row.try_get(0)?;
    let periods: serde_json::Value = row.try_get(1)?;
    let periods: Vec<StoredPeriod> = serde_json::from_value(periods).unwrap_or_default();
    if periods.is_empty() {
        return Ok(DepartmentOn::Excludes(excluded));
    }
    Ok(periods
        .into_iter()
        .find(|p| p.valid_from <= day && p.valid_to.is_none_or(|to| day <= to))
        .map_or(DepartmentOn::NotValid, |p| {
            DepartmentOn::Excludes(p.excluded)
        }))
}

/// The sealed code (if held) and the non-disclosure flag of each resident, by blind index.
pub async fn codes_and_flags(
    tx: &impl GenericClient,
    bidxs: &[Vec<u8>],
) -> Result<HashMap<Vec<u8>, (Option<Vec<u8>>, bool)>, Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT b.bidx, c.code_enc, coalesce(f.non_disclosure, false)
                 FROM unnest($1::bytea[]) AS b(bidx)
                 LEFT JOIN inquiry.code_links c ON c.addressee_bidx = b.bidx
                 LEFT JOIN inquiry.flags f ON f.addressee_bidx = b.bidx",
            )
            .await?,
            &[&bidxs],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}

// ---- inquiries ----

/// The next 処理通番 of the tenant. The counter row stays locked until the transaction ends,
/// so serial numbers are handed out in commit order without gaps from concurrent callers.
pub async fn next_serial(tx: &impl GenericClient, tenant: &str) -> Result<i64, Error> {
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "INSERT INTO inquiry.serials (tenant_id, last_serial) VALUES ($1, 1)
                 ON CONFLICT (tenant_id) DO UPDATE SET last_serial = inquiry.serials.last_serial + 1
                 RETURNING last_serial",
            )
            .await?,
            &[&tenant],
        )
        .await?;
    Ok(row.get(0))
}

/// Records that the tenant has inquiries, for the cross-tenant expiry sweep.
pub async fn mark_tenant_active(tx: &impl GenericClient, tenant: &str) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO inquiry.active_tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING",
        )
        .await?,
        &[&tenant],
    )
    .await?;
    Ok(())
}

pub async fn active_tenants(client: &impl GenericClient) -> Result<Vec<String>, Error> {
    let rows = client
        .query(
            &client
                .prepare_cached("SELECT tenant_id FROM inquiry.active_tenants ORDER BY 1")
                .await?,
            &[],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// A new inquiry row.
pub struct NewRow<'a> {
    pub tenant: &'a str,
    pub id: Uuid,
    pub serial_no: &'a str,
    pub branch_no: i32,
    pub batch_id: Option<Uuid>,
    pub bidx: &'a [u8],
    pub addressee_enc: &'a [u8],
    pub inquiry: &'a NewInquiry,
    pub department: Option<&'a str>,
    pub non_disclosure: bool,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
}

pub async fn insert_inquiry(tx: &impl GenericClient, r: &NewRow<'_>) -> Result<(), Error> {
    let c = &r.inquiry.condition;
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO inquiry.inquiries
             (tenant_id, id, serial_no, branch_no, batch_id, addressee_bidx, addressee_enc,
              affair_code, procedure_code, info_code, provider_org, condition_kind, year_kind,
              date_from, date_to, department, inquirer_non_disclosure, status, requested_at,
              expires_at, dispatched_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     'sent', $18, $19, $20)",
        )
        .await?,
        &[
            &r.tenant,
            &r.id,
            &r.serial_no,
            &r.branch_no,
            &r.batch_id,
            &r.bidx,
            &r.addressee_enc,
            &r.inquiry.affair_code,
            &r.inquiry.procedure_code,
            &r.inquiry.info_code,
            &r.inquiry.provider_org,
            &c.kind,
            &c.year_kind,
            &c.from,
            &c.to,
            &r.department,
            &r.non_disclosure,
            &r.requested_at,
            &r.expires_at,
            &r.dispatched_at,
        ],
    )
    .await?;
    Ok(())
}

const INQUIRY_COLUMNS: &str = "id, serial_no, branch_no, batch_id, status, affair_code,
    procedure_code, info_code, provider_org, inquirer_non_disclosure, provider_non_disclosure,
    manual, requested_at, expires_at, permit_id, provided_at, result_at, late, record_count,
    reason_code, reason, confirmed_at";

fn inquiry_of(r: &Row, now: DateTime<Utc>) -> Result<Inquiry, Error> {
    let stored = r.try_get::<_, InquiryStatus>(4)?;
    let expires_at: DateTime<Utc> = r.get(13);
    let status = crate::domain::shown_status(stored, expires_at, now);
    let reason: Option<String> = r.get(20);
    Ok(Inquiry {
        id: r.get(0),
        serial_no: r.get(1),
        branch_no: r.get(2),
        batch_id: r.get(3),
        status,
        affair_code: r.get(5),
        procedure_code: r.get(6),
        info_code: r.get(7),
        provider_org: r.get(8),
        inquirer_non_disclosure: r.get(9),
        provider_non_disclosure: r.get(10),
        manual: r.get(11),
        requested_at: r.get(12),
        expires_at,
        permit_id: r.get(14),
        provided_at: r.get(15),
        result_at: r.get(16),
        late: r.get(17),
        record_count: r.get(18),
        reason_code: r
            .get::<_, Option<String>>(19)
            .or_else(|| (status == InquiryStatus::Expired).then(|| "expired".to_owned())),
        reason: reason.or_else(|| status.default_reason().map(str::to_owned)),
        confirmed_at: r.get(21),
        records: None,
    })
}

/// An inquiry and its sealed result.
pub async fn inquiry(
    tx: &impl GenericClient,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<(Inquiry, Option<Vec<u8>>)>, Error> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(&format!(
                "SELECT {INQUIRY_COLUMNS}, result_enc FROM inquiry.inquiries WHERE id = $1"
            ))
            .await?,
            &[&id],
        )
        .await?;
    row.map(|r| Ok((inquiry_of(&r, now)?, r.get(22))))
        .transpose()
}

/// A page of inquiries in id order (UUIDv7: request order).
pub async fn list(
    tx: &impl GenericClient,
    serial_no: Option<&str>,
    status: Option<&str>,
    confirmed: Option<bool>,
    after: Option<Uuid>,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Inquiry>, Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(&format!(
                "SELECT {INQUIRY_COLUMNS} FROM inquiry.inquiries
                 WHERE ($1::text IS NULL OR serial_no = $1)
                   AND ($2::text IS NULL OR
                        (CASE WHEN status = 'sent' AND expires_at < $6 THEN 'expired'
                              ELSE status END) = $2)
                   AND ($3::bool IS NULL OR (confirmed_at IS NOT NULL) = $3)
                   AND ($4::uuid IS NULL OR id > $4)
                 ORDER BY id LIMIT $5"
            ))
            .await?,
            &[&serial_no, &status, &confirmed, &after, &limit, &now],
        )
        .await?;
    rows.iter().map(|r| inquiry_of(r, now)).collect()
}

/// What the results consumer needs of an inquiry, locked for the update.
pub struct Awaiting {
    pub status: InquiryStatus,
    pub answered: bool,
    pub serial_no: String,
    pub branch_no: i32,
    pub addressee_enc: Vec<u8>,
    pub affair_code: String,
    pub procedure_code: String,
    pub info_code: String,
    pub provider_org: String,
    pub inquirer_non_disclosure: bool,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn lock_for_result(tx: &impl GenericClient, id: Uuid) -> Result<Option<Awaiting>, Error> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT status, result_at IS NOT NULL, serial_no, branch_no, addressee_enc,
                        affair_code, procedure_code, info_code, provider_org,
                        inquirer_non_disclosure, requested_at, expires_at
                 FROM inquiry.inquiries WHERE id = $1 FOR UPDATE",
            )
            .await?,
            &[&id],
        )
        .await?;
    row.map(|r| {
        Ok(Awaiting {
            status: r.try_get::<_, InquiryStatus>(0)?,
            answered: r.get(1),
            serial_no: r.get(2),
            branch_no: r.get(3),
            addressee_enc: r.get(4),
            affair_code: r.get(5),
            procedure_code: r.get(6),
            info_code: r.get(7),
            provider_org: r.get(8),
            inquirer_non_disclosure: r.get(9),
            requested_at: r.get(10),
            expires_at: r.get(11),
        })
    })
    .transpose()
}

/// A result as stored.
pub struct StoredResult<'a> {
    pub status: InquiryStatus,
    pub permit_id: Option<&'a str>,
    pub provider_non_disclosure: bool,
    pub manual: bool,
    pub record_count: i32,
    pub reason_code: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub result_enc: &'a [u8],
    pub provided_at: Option<DateTime<Utc>>,
    pub result_at: DateTime<Utc>,
    pub late: bool,
}

pub async fn store_result(
    tx: &impl GenericClient,
    id: Uuid,
    r: &StoredResult<'_>,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "UPDATE inquiry.inquiries
             SET status = $2, permit_id = $3, provider_non_disclosure = $4, manual = $5,
                 record_count = $6, reason_code = $7, reason = $8, result_enc = $9,
                 provided_at = $10, result_at = $11, late = $12
             WHERE id = $1",
        )
        .await?,
        &[
            &id,
            &r.status,
            &r.permit_id,
            &r.provider_non_disclosure,
            &r.manual,
            &r.record_count,
            &r.reason_code,
            &r.reason,
            &r.result_enc,
            &r.provided_at,
            &r.result_at,
            &r.late,
        ],
    )
    .await?;
    Ok(())
}

/// Marks the tenant's `sent` inquiries past their validity as expired; returns how many.
pub async fn expire_overdue(tx: &impl GenericClient, now: DateTime<Utc>) -> Result<u64, Error> {
    tx.execute(
        &tx.prepare_cached(
            "UPDATE inquiry.inquiries SET status = 'expired'
             WHERE status = 'sent' AND expires_at < $1",
        )
        .await?,
        &[&now],
    )
    .await
}

/// Counts of a confirmation (一括確認), done in one statement.
pub struct Confirmed {
    pub matched: i64,
    pub confirmed: i64,
    pub already_confirmed: i64,
    pub not_answered: i64,
}

pub async fn confirm(
    tx: &impl GenericClient,
    ids: &[Uuid],
    serial_no: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Confirmed, Error> {
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "WITH target AS (
                     SELECT id, result_at, confirmed_at FROM inquiry.inquiries
                     WHERE id = ANY($1) OR serial_no = $2 FOR UPDATE),
                 done AS (
                     UPDATE inquiry.inquiries i SET confirmed_at = $3 FROM target t
                     WHERE i.id = t.id AND t.result_at IS NOT NULL AND t.confirmed_at IS NULL
                     RETURNING i.id)
                 SELECT (SELECT count(*) FROM target),
                        (SELECT count(*) FROM done),
                        (SELECT count(*) FROM target WHERE confirmed_at IS NOT NULL),
                        (SELECT count(*) FROM target WHERE result_at IS NULL)",
            )
            .await?,
            &[&ids, &serial_no, &now],
        )
        .await?;
    Ok(Confirmed {
        matched: row.get(0),
        confirmed: row.get(1),
        already_confirmed: row.get(2),
        not_answered: row.get(3),
    })
}

pub async fn count_serial(tx: &impl GenericClient, serial_no: &str) -> Result<i64, Error> {
    let row = tx
        .query_one(
            &tx.prepare_cached("SELECT count(*) FROM inquiry.inquiries WHERE serial_no = $1")
                .await?,
            &[&serial_no],
        )
        .await?;
    Ok(row.get(0))
}

// ---- bulk files ----

/// A bulk file's header row.
pub struct NewBatch<'a> {
    pub tenant: &'a str,
    pub id: Uuid,
    pub serial_no: &'a str,
    pub lines: i32,
    pub accepted: i32,
    pub rejected: i32,
    pub now: DateTime<Utc>,
}

pub async fn insert_batch(tx: &impl GenericClient, b: &NewBatch<'_>) -> Result<(), Error> {
    let NewBatch {
        tenant,
        id,
        serial_no,
        lines,
        accepted,
        rejected,
        now,
    } = *b;
    let dispatched_at = (accepted == 0).then_some(now);
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO inquiry.batches
             (tenant_id, id, serial_no, lines, accepted, rejected, created_at, dispatched_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?,
        &[
            &tenant,
            &id,
            &serial_no,
            &lines,
            &accepted,
            &rejected,
            &now,
            &dispatched_at,
        ],
    )
    .await?;
    Ok(())
}

pub async fn insert_line_errors(
    tx: &impl GenericClient,
    tenant: &str,
    batch_id: Uuid,
    errors: &[LineError],
) -> Result<(), Error> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO inquiry.batch_errors (tenant_id, batch_id, line, seq, field, code, detail)
             SELECT $1, $2, e.line, e.seq, e.field, e.code, e.detail
             FROM unnest($3::int[], $4::int[], $5::text[], $6::text[], $7::text[])
                  AS e(line, seq, field, code, detail)",
        )
        .await?;
    // Errors come sorted by line; `seq` numbers the errors of one line from 0.
    let mut seqs = Vec::with_capacity(errors.len());
    let mut last = (0, 0);
    for e in errors {
        last = if last.0 == e.line {
            (e.line, last.1 + 1)
        } else {
            (e.line, 0)
        };
        seqs.push(last.1);
    }
    for (chunk, seq) in errors.chunks(1000).zip(seqs.chunks(1000)) {
        let lines: Vec<i32> = chunk.iter().map(|e| e.line).collect();
        let fields: Vec<&str> = chunk.iter().map(|e| e.field.as_str()).collect();
        let codes: Vec<&str> = chunk.iter().map(|e| e.code.as_str()).collect();
        let details: Vec<&str> = chunk.iter().map(|e| e.detail.as_str()).collect();
        tx.execute(
            &statement,
            &[&tenant, &batch_id, &lines, &seq, &fields, &codes, &details],
        )
        .await?;
    }
    Ok(())
}

pub async fn queue_batch(
    tx: &impl GenericClient,
    tenant: &str,
    batch_id: Uuid,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO inquiry.pending_batches (batch_id, tenant_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .await?,
        &[&batch_id, &tenant],
    )
    .await?;
    Ok(())
}

pub async fn pending_batches(client: &impl GenericClient) -> Result<Vec<(Uuid, String)>, Error> {
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT batch_id, tenant_id FROM inquiry.pending_batches ORDER BY queued_at",
                )
                .await?,
            &[],
        )
        .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A bulk line waiting to be sent, with the resident's sealed code.
pub struct Undispatched {
    pub id: Uuid,
    pub serial_no: String,
    pub branch_no: i32,
    pub addressee_bidx: Vec<u8>,
    pub addressee_enc: Vec<u8>,
    pub affair_code: String,
    pub procedure_code: String,
    pub info_code: String,
    pub provider_org: String,
    pub condition_kind: String,
    pub year_kind: String,
    pub date_from: NaiveDate,
    pub date_to: Option<NaiveDate>,
    pub inquirer_non_disclosure: bool,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub code_enc: Option<Vec<u8>>,
}

/// The next lines of a batch to send, locked; another sender skips them.
pub async fn undispatched(
    tx: &impl GenericClient,
    batch_id: Uuid,
    limit: i64,
) -> Result<Vec<Undispatched>, Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT i.id, i.serial_no, i.branch_no, i.addressee_bidx, i.addressee_enc,
                        i.affair_code, i.procedure_code, i.info_code, i.provider_org,
                        i.condition_kind, i.year_kind, i.date_from, i.date_to,
                        i.inquirer_non_disclosure, i.requested_at, i.expires_at, c.code_enc
                 FROM inquiry.inquiries i
                 LEFT JOIN inquiry.code_links c
                        ON c.tenant_id = i.tenant_id AND c.addressee_bidx = i.addressee_bidx
                 WHERE i.batch_id = $1 AND i.dispatched_at IS NULL
                 ORDER BY i.branch_no LIMIT $2
                 FOR UPDATE OF i SKIP LOCKED",
            )
            .await?,
            &[&batch_id, &limit],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Undispatched {
            id: r.get(0),
            serial_no: r.get(1),
            branch_no: r.get(2),
            addressee_bidx: r.get(3),
            addressee_enc: r.get(4),
            affair_code: r.get(5),
            procedure_code: r.get(6),
            info_code: r.get(7),
            provider_org: r.get(8),
            condition_kind: r.get(9),
            year_kind: r.get(10),
            date_from: r.get(11),
            date_to: r.get(12),
            inquirer_non_disclosure: r.get(13),
            requested_at: r.get(14),
            expires_at: r.get(15),
            code_enc: r.get(16),
        })
        .collect())
}

pub async fn mark_dispatched(
    tx: &impl GenericClient,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached("UPDATE inquiry.inquiries SET dispatched_at = $2 WHERE id = ANY($1)")
            .await?,
        &[&ids, &now],
    )
    .await?;
    Ok(())
}

/// A bulk line whose code vanished before it was sent: answered locally, never sent.
pub async fn fail_undispatched(
    tx: &impl GenericClient,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "UPDATE inquiry.inquiries SET dispatched_at = $2, status = 'unknown-code',
                 reason_code = 'no-code', reason = '符号が未取得です。', result_at = $2
             WHERE id = $1",
        )
        .await?,
        &[&id, &now],
    )
    .await?;
    Ok(())
}

/// Closes a batch once none of its lines waits any more; `false` while some still do.
pub async fn finish_batch(
    tx: &impl GenericClient,
    batch_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "SELECT count(*) FROM inquiry.inquiries
                 WHERE batch_id = $1 AND dispatched_at IS NULL",
            )
            .await?,
            &[&batch_id],
        )
        .await?;
    if row.get::<_, i64>(0) > 0 {
        return Ok(false);
    }
    tx.execute(
        &tx.prepare_cached(
            "UPDATE inquiry.batches SET dispatched_at = coalesce(dispatched_at, $2) WHERE id = $1",
        )
        .await?,
        &[&batch_id, &now],
    )
    .await?;
    tx.execute(
        &tx.prepare_cached("DELETE FROM inquiry.pending_batches WHERE batch_id = $1")
            .await?,
        &[&batch_id],
    )
    .await?;
    Ok(true)
}

/// A batch's header row: (serial, lines, accepted, rejected, created_at, dispatched_at).
pub type BatchHeader = (String, i32, i32, i32, DateTime<Utc>, Option<DateTime<Utc>>);

pub async fn batch(tx: &impl GenericClient, id: Uuid) -> Result<Option<BatchHeader>, Error> {
    let row = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT serial_no, lines, accepted, rejected, created_at, dispatched_at
                 FROM inquiry.batches WHERE id = $1",
            )
            .await?,
            &[&id],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))))
}

/// (shown status, lines, confirmed lines, lines not yet dispatched) of a batch.
pub async fn batch_counts(
    tx: &impl GenericClient,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<(String, i64, i64, i64)>, Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT CASE WHEN status = 'sent' AND expires_at < $2 THEN 'expired' ELSE status END
                            AS shown,
                        count(*), count(confirmed_at), count(*) FILTER (WHERE dispatched_at IS NULL)
                 FROM inquiry.inquiries WHERE batch_id = $1 GROUP BY shown ORDER BY shown",
            )
            .await?,
            &[&id, &now],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

pub async fn line_errors(
    tx: &impl GenericClient,
    batch_id: Uuid,
    after_line: i32,
    limit: i64,
) -> Result<Vec<LineError>, Error> {
    // Whole lines per page: a line's errors never straddle two pages.
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT line, field, code, detail FROM inquiry.batch_errors
                 WHERE batch_id = $1 AND line IN (
                     SELECT DISTINCT line FROM inquiry.batch_errors
                     WHERE batch_id = $1 AND line > $2 ORDER BY line LIMIT $3)
                 ORDER BY line, seq",
            )
            .await?,
            &[&batch_id, &after_line, &limit],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| LineError {
            line: r.get(0),
            field: r.get(1),
            code: r.get(2),
            detail: r.get(3),
        })
        .collect())
}

/// One line of a batch's result file.
pub struct ResultLine {
    pub line: i32,
    pub status: String,
    pub provided_at: Option<DateTime<Utc>>,
    pub inquirer_non_disclosure: bool,
    pub provider_non_disclosure: bool,
    pub record_count: i32,
    pub reason_code: Option<String>,
}

/// Every input line of a batch: accepted ones with their state, refused ones with their
/// first error code.
pub async fn result_lines(
    tx: &impl GenericClient,
    batch_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<ResultLine>, Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT branch_no,
                        CASE WHEN status = 'sent' AND expires_at < $2 THEN 'expired' ELSE status END,
                        provided_at, inquirer_non_disclosure, provider_non_disclosure,
                        record_count,
                        CASE WHEN status = 'sent' AND expires_at < $2 THEN 'expired'
                             ELSE reason_code END
                 FROM inquiry.inquiries WHERE batch_id = $1
                 UNION ALL
                 SELECT line, 'rejected', NULL, false, false, 0, code
                 FROM inquiry.batch_errors WHERE batch_id = $1 AND seq = 0
                 ORDER BY 1",
            )
            .await?,
            &[&batch_id, &now],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| ResultLine {
            line: r.get(0),
            status: r.get(1),
            provided_at: r.get(2),
            inquirer_non_disclosure: r.get(3),
            provider_non_disclosure: r.get(4),
            record_count: r.get(5),
            reason_code: r.get(6),
        })
        .collect())
}
