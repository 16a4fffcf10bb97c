//! Reconciliation files (突合用ファイル) and their chunks.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Error;
use uuid::Uuid;

chukan_db::text_enum! {
    /// Where a reconciliation file is (`provision.reconciliations.state`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ReconciliationState {
        /// Asked for; the nightly batch makes it.
        Queued = "queued",
        /// Made: downloadable.
        Ready = "ready",
    }
}

/// A reconciliation file request and its state.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub id: Uuid,
    /// 特定個人情報名コード.
    pub info_code: String,
    pub major_version: Option<String>,
    pub dataset: Option<String>,
    pub state: ReconciliationState,
    /// Records in the file (when ready).
    pub records: i64,
    pub created_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
}

fn reconciliation_from(r: &tokio_postgres::Row) -> Result<Reconciliation, Error> {
    Ok(Reconciliation {
        id: r.get("id"),
        info_code: r.get("info_code"),
        major_version: r.get("major_version"),
        dataset: r.get("dataset"),
        state: r.try_get("state")?,
        records: r.get("records"),
        created_at: r.get("created_at"),
        ready_at: r.get("ready_at"),
    })
}

pub async fn insert_reconciliation(
    tx: &impl GenericClient,
    tenant: &str,
    r: &Reconciliation,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO provision.reconciliations (tenant_id, id, info_code, major_version, dataset, state, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &tenant,
            &r.id,
            &r.info_code,
            &r.major_version,
            &r.dataset,
            &ReconciliationState::Queued,
            &r.created_at,
        ],
    )
    .await?;
    Ok(())
}

pub async fn reconciliation(
    tx: &impl GenericClient,
    tenant: &str,
    id: Uuid,
) -> Result<Option<Reconciliation>, Error> {
    tx.query_opt(
        "SELECT id, info_code, major_version, dataset, state, records, created_at, ready_at
             FROM provision.reconciliations WHERE tenant_id = $1 AND id = $2",
        &[&tenant, &id],
    )
    .await?
    .map(|r| reconciliation_from(&r))
    .transpose()
}

pub async fn queued_reconciliations(
    tx: &impl GenericClient,
    tenant: &str,
) -> Result<Vec<Reconciliation>, Error> {
    let rows = tx
        .query(
            "SELECT id, info_code, major_version, dataset, state, records, created_at, ready_at
             FROM provision.reconciliations WHERE tenant_id = $1 AND state = $2
             ORDER BY created_at",
            &[&tenant, &ReconciliationState::Queued],
        )
        .await?;
    rows.iter().map(reconciliation_from).collect()
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
        "UPDATE provision.reconciliations SET state = $5, records = $2, bytes = $3, ready_at = $4
         WHERE id = $1",
        &[&id, &records, &bytes, &now, &ReconciliationState::Ready],
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
