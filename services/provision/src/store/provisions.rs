//! Provisions (情報提供): one row per permit, its settlement and its deadlines.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;

chukan_db::text_enum! {
    /// Where a provision request is (`provision.provisions.state`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum AnswerState {
        /// Answered (provided, or nothing on record).
        Answered = "answered",
        /// 自動応答不可: waits for staff to answer by hand within its validity.
        Waiting = "waiting",
        /// Refused: by the permit check, an unreadable condition, or staff.
        Refused = "refused",
        /// Its validity ended while it waited.
        Expired = "expired",
    }
}

chukan_db::text_enum! {
    /// What the answer sent to the inquirer said (`provision.provisions.status`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum AnswerStatus {
        Provided = "provided",
        Refused = "refused",
        Expired = "expired",
    }
}

/// A provision request as kept (情報提供等記録 of the provider side).
#[derive(Debug, Clone)]
pub struct ProvisionRow {
    pub permit_id: String,
    pub state: AnswerState,
    pub status: Option<AnswerStatus>,
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

fn provision_from(r: &tokio_postgres::Row) -> Result<ProvisionRow, Error> {
    Ok(ProvisionRow {
        permit_id: r.get("permit_id"),
        state: r.try_get("state")?,
        status: r.try_get("status")?,
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
    })
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
    tx.query_opt(&stmt, &[&tenant, &permit_id])
        .await?
        .map(|r| provision_from(&r))
        .transpose()
}

/// Provisions newest first, optionally of one state, after the one named by `before`.
pub async fn provisions_page(
    tx: &impl GenericClient,
    tenant: &str,
    state: Option<AnswerState>,
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
    rows.iter().map(provision_from).collect()
}

/// How a waiting provision was settled.
#[derive(Debug, Clone)]
pub struct Settlement<'a> {
    pub state: AnswerState,
    pub status: AnswerStatus,
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
