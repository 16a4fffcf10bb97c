//! SQL of the simulator's own database, one function per question.

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Error;
use uuid::Uuid;

/// An organisation's registration as the API shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct OrganisationKey {
    pub kid: String,
    pub public_key: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Organisation {
    pub org_code: String,
    pub name: String,
    pub endpoint_url: String,
    /// The relay slot of the organisation's cell in the other region (ADR 0006), tried when
    /// `endpoint_url` does not answer or answers 421; `None` = no standby door.
    pub standby_endpoint_url: Option<String>,
    pub keys: Vec<OrganisationKey>,
}

/// Inserts or replaces an organisation and its keys; true when it is new.
pub async fn upsert_organisation(tx: &Transaction<'_>, org: &Organisation) -> Result<bool, Error> {
    let row = tx
        .query_one(
            &tx.prepare_cached(
                "INSERT INTO organisations (org_code, name, endpoint_url, standby_endpoint_url)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_code) DO UPDATE
                SET name = EXCLUDED.name, endpoint_url = EXCLUDED.endpoint_url,
                    standby_endpoint_url = EXCLUDED.standby_endpoint_url, updated_at = now()
             RETURNING (xmax = 0) AS inserted",
            )
            .await?,
            &[
                &org.org_code,
                &org.name,
                &org.endpoint_url,
                &org.standby_endpoint_url,
            ],
        )
        .await?;
    tx.execute(
        &tx.prepare_cached("DELETE FROM organisation_keys WHERE org_code = $1")
            .await?,
        &[&org.org_code],
    )
    .await?;
    for key in &org.keys {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO organisation_keys (org_code, kid, public_key) VALUES ($1, $2, $3)",
            )
            .await?,
            &[&org.org_code, &key.kid, &key.public_key],
        )
        .await?;
    }
    Ok(row.get("inserted"))
}

pub async fn organisation(
    client: &impl GenericClient,
    org_code: &str,
) -> Result<Option<Organisation>, Error> {
    let Some(row) = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT org_code, name, endpoint_url, standby_endpoint_url
                       FROM organisations WHERE org_code = $1",
                )
                .await?,
            &[&org_code],
        )
        .await?
    else {
        return Ok(None);
    };
    let keys = organisation_keys(client, org_code).await?;
    Ok(Some(Organisation {
        org_code: row.get(0),
        name: row.get(1),
        endpoint_url: row.get(2),
        standby_endpoint_url: row.get(3),
        keys,
    }))
}

pub async fn organisation_exists(
    client: &impl GenericClient,
    org_code: &str,
) -> Result<bool, Error> {
    Ok(client
        .query_opt(
            &client
                .prepare_cached("SELECT 1 FROM organisations WHERE org_code = $1")
                .await?,
            &[&org_code],
        )
        .await?
        .is_some())
}

pub async fn organisation_keys(
    client: &impl GenericClient,
    org_code: &str,
) -> Result<Vec<OrganisationKey>, Error> {
    let rows = client
        .query(
            &client.prepare_cached("SELECT kid, public_key FROM organisation_keys WHERE org_code = $1 ORDER BY kid").await?,
            &[&org_code],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OrganisationKey {
            kid: r.get(0),
            public_key: r.get(1),
        })
        .collect())
}

/// Records an accepted message id; false when it was already there (a replay).
pub async fn claim_message(
    tx: &Transaction<'_>,
    message_id: &str,
    sender: &str,
    kind: &str,
) -> Result<bool, Error> {
    let n = tx
        .execute(
            &tx.prepare_cached(
                "INSERT INTO received (message_id, sender, kind) VALUES ($1, $2, $3)
             ON CONFLICT (message_id) DO NOTHING",
            )
            .await?,
            &[&message_id, &sender, &kind],
        )
        .await?;
    Ok(n == 1)
}

/// Stores a code (idempotent: the same person always gets the same code per organisation).
pub async fn record_code(
    tx: &impl GenericClient,
    org_code: &str,
    code: &str,
    person_id: &[u8],
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO codes (org_code, code, person_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        )
        .await?,
        &[&org_code, &code, &person_id],
    )
    .await?;
    Ok(())
}

/// The person behind `code` at `org_code`, if the network issued it.
pub async fn person_of_code(
    client: &impl GenericClient,
    org_code: &str,
    code: &str,
) -> Result<Option<Vec<u8>>, Error> {
    Ok(client
        .query_opt(
            &client
                .prepare_cached("SELECT person_id FROM codes WHERE org_code = $1 AND code = $2")
                .await?,
            &[&org_code, &code],
        )
        .await?
        .map(|r| r.get(0)))
}

pub async fn insert_delivery(
    tx: &Transaction<'_>,
    id: Uuid,
    recipient: &str,
    envelope: &[u8],
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached("INSERT INTO deliveries (id, recipient, envelope) VALUES ($1, $2, $3)")
            .await?,
        &[&id, &recipient, &envelope],
    )
    .await?;
    Ok(())
}

/// A delivery taken by the worker.
#[derive(Debug)]
pub struct DueDelivery {
    pub id: Uuid,
    pub envelope: Vec<u8>,
    pub endpoint_url: String,
    pub standby_endpoint_url: Option<String>,
    pub attempts: i32,
}

/// Takes up to `limit` due deliveries and leases them for `lease_secs` (so a crash mid-send
/// only delays them; two workers never send the same one at once).
pub async fn lease_due_deliveries(
    client: &impl GenericClient,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<DueDelivery>, Error> {
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "WITH due AS (
                SELECT id FROM deliveries
                 WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
                 ORDER BY next_attempt_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE deliveries d
                SET next_attempt_at = now() + make_interval(secs => $2)
               FROM due, organisations o
              WHERE d.id = due.id AND o.org_code = d.recipient
             RETURNING d.id, d.envelope, o.endpoint_url, o.standby_endpoint_url, d.attempts",
                )
                .await?,
            &[&limit, &lease_secs],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DueDelivery {
            id: r.get(0),
            envelope: r.get(1),
            endpoint_url: r.get(2),
            standby_endpoint_url: r.get(3),
            attempts: r.get(4),
        })
        .collect())
}

/// Marks a pass's successful deliveries at once (one statement per pass, not per message):
/// `ids` all of them, `via_standby` those the standby door took (the rest went to the primary).
pub async fn mark_delivered(
    client: &impl GenericClient,
    ids: &[Uuid],
    via_standby: &[Uuid],
) -> Result<(), Error> {
    client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE deliveries SET delivered_at = now(), attempts = attempts + 1,
                     last_error = NULL,
                     delivered_via = CASE WHEN id = ANY($2) THEN 'standby' ELSE 'primary' END
                     WHERE id = ANY($1)",
                )
                .await?,
            &[&ids, &via_standby],
        )
        .await?;
    Ok(())
}

/// A failed attempt: try again after `retry_in_ms`, or give up (failed_at) when `None`.
pub async fn mark_attempt_failed(
    client: &impl GenericClient,
    id: Uuid,
    error: &str,
    retry_in_ms: Option<i64>,
) -> Result<(), Error> {
    match retry_in_ms {
        Some(ms) => {
            client
                .execute(
                    &client
                        .prepare_cached(
                            "UPDATE deliveries
                        SET attempts = attempts + 1, last_error = $2,
                            next_attempt_at = now() + $3::float8 * interval '1 millisecond'
                      WHERE id = $1",
                        )
                        .await?,
                    &[&id, &error, &(ms as f64)],
                )
                .await?
        }
        None => {
            client
                .execute(
                    &client
                        .prepare_cached(
                            "UPDATE deliveries
                        SET attempts = attempts + 1, last_error = $2, failed_at = now()
                      WHERE id = $1",
                        )
                        .await?,
                    &[&id, &error],
                )
                .await?
        }
    };
    Ok(())
}

/// A provision permit (情報提供許可証) as stored.
#[derive(Debug)]
pub struct PermitRow {
    pub permit_id: Uuid,
    pub inquirer_org: String,
    pub inquiry_id: String,
    pub provider_org: String,
    pub info_code: String,
    pub issued_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

pub async fn insert_permit(tx: &Transaction<'_>, p: &PermitRow) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO permits (permit_id, inquirer_org, inquiry_id, provider_org, info_code,
                                  issued_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?,
        &[
            &p.permit_id,
            &p.inquirer_org,
            &p.inquiry_id,
            &p.provider_org,
            &p.info_code,
            &p.issued_at,
            &p.expires_at,
        ],
    )
    .await?;
    Ok(())
}

/// A permit as an answer sees it.
#[derive(Debug)]
pub struct PermitForAnswer {
    pub inquirer_org: String,
    pub inquiry_id: String,
    pub provider_org: String,
    pub answered: bool,
}

/// The permit, locked for the rest of the transaction so two answers racing for the same
/// permit are taken one after the other (only the first finds it unanswered).
pub async fn permit_for_answer(
    tx: &Transaction<'_>,
    permit_id: Uuid,
) -> Result<Option<PermitForAnswer>, Error> {
    Ok(tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT inquirer_org, inquiry_id, provider_org, answered_at IS NOT NULL
                   FROM permits WHERE permit_id = $1 FOR UPDATE",
            )
            .await?,
            &[&permit_id],
        )
        .await?
        .map(|r| PermitForAnswer {
            inquirer_org: r.get(0),
            inquiry_id: r.get(1),
            provider_org: r.get(2),
            answered: r.get(3),
        }))
}

pub async fn mark_permit_answered(
    tx: &Transaction<'_>,
    permit_id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    tx.execute(
        &tx.prepare_cached(
            "UPDATE permits SET answered_at = $2 WHERE permit_id = $1 AND answered_at IS NULL",
        )
        .await?,
        &[&permit_id, &at],
    )
    .await?;
    Ok(())
}
