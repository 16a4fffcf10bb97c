//! SQL of the relay schema.

use chukan_core::ids::OrgCode;
use deadpool_postgres::{GenericClient, Transaction};

/// Records an accepted NWS message id; false when it was already there (a replay).
pub async fn claim_message(
    tx: &Transaction<'_>,
    message_id: &str,
    sender: &str,
    kind: &str,
    recipient: &OrgCode,
) -> Result<bool, tokio_postgres::Error> {
    let inserted = tx
        .execute(
            &tx.prepare_cached(
                "INSERT INTO relay.received (message_id, sender, kind, recipient)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (message_id) DO NOTHING",
            )
            .await?,
            &[&message_id, &sender, &kind, &recipient.as_str()],
        )
        .await?;
    Ok(inserted == 1)
}

/// An outbound message to hold during the stop window.
pub struct ToHold<'a> {
    pub message_id: uuid::Uuid,
    pub tenant: &'a str,
    pub routing_key: &'a str,
    pub kind: &'a str,
    pub body: &'a [u8],
    pub traceparent: Option<&'a str>,
}

/// Holds a message; false when it was already held (a redelivery), so it is held once.
pub async fn hold(
    client: &impl GenericClient,
    m: &ToHold<'_>,
) -> Result<bool, tokio_postgres::Error> {
    let inserted = client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO relay.held (message_id, tenant, routing_key, kind, body, traceparent)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (message_id) DO NOTHING",
                )
                .await?,
            &[
                &m.message_id,
                &m.tenant,
                &m.routing_key,
                &m.kind,
                &m.body,
                &m.traceparent,
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// The held messages neither released nor dead: how many, and how long the oldest has waited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldBacklog {
    pub pending: i64,
    /// By the database's clock since `held_at`; 0 when none is pending.
    pub oldest_age_seconds: f64,
}

/// Held messages neither released nor dead.
pub async fn held_pending(
    client: &impl GenericClient,
) -> Result<HeldBacklog, tokio_postgres::Error> {
    let row = client
        .query_one(
            &client
                .prepare_cached(
                    "SELECT count(*),
                            GREATEST(EXTRACT(EPOCH FROM now() - min(held_at)), 0)::float8
                       FROM relay.held WHERE released_at IS NULL AND dead_at IS NULL",
                )
                .await?,
            &[],
        )
        .await?;
    Ok(HeldBacklog {
        pending: row.try_get(0)?,
        oldest_age_seconds: row.try_get(1)?,
    })
}

/// A held message taken for release.
#[derive(Debug)]
pub struct Held {
    pub message_id: uuid::Uuid,
    pub tenant: String,
    /// Sealed under the tenant's key (see `hold::held_aad`).
    pub body: Vec<u8>,
    pub traceparent: Option<String>,
}

/// Takes up to `limit` pending messages, oldest first, and leases them for `lease_secs`: rows
/// another releaser is sending are skipped, and a crash mid-release only delays its rows.
pub async fn lease_held(
    client: &impl GenericClient,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<Held>, tokio_postgres::Error> {
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "WITH due AS (
                        SELECT message_id FROM relay.held
                         WHERE released_at IS NULL AND dead_at IS NULL
                           AND (leased_until IS NULL OR leased_until < now())
                         ORDER BY seq
                         LIMIT $1
                         FOR UPDATE SKIP LOCKED
                     )
                     UPDATE relay.held h
                        SET leased_until = now() + make_interval(secs => $2)
                       FROM due
                      WHERE h.message_id = due.message_id
                     RETURNING h.message_id, h.body, h.traceparent, h.seq, h.tenant",
                )
                .await?,
            &[&limit, &lease_secs],
        )
        .await?;
    let mut held: Vec<(i64, Held)> = rows
        .iter()
        .map(|r| {
            (
                r.get(3),
                Held {
                    message_id: r.get(0),
                    tenant: r.get(4),
                    body: r.get(1),
                    traceparent: r.get(2),
                },
            )
        })
        .collect();
    // UPDATE … RETURNING does not keep the CTE's order.
    held.sort_by_key(|(seq, _)| *seq);
    Ok(held.into_iter().map(|(_, h)| h).collect())
}

/// How a release attempt ended.
pub enum Release<'a> {
    Released,
    Dead(&'a str),
    /// Transient: the row goes back to pending at once (the lease is dropped).
    Failed(&'a str),
}

pub async fn record_release(
    client: &impl GenericClient,
    message_id: uuid::Uuid,
    outcome: Release<'_>,
) -> Result<(), tokio_postgres::Error> {
    match outcome {
        Release::Released => {
            client
                .execute(
                    &client
                        .prepare_cached(
                            "UPDATE relay.held SET released_at = now(), attempts = attempts + 1,
                                    last_error = NULL, leased_until = NULL, body = ''::bytea
                              WHERE message_id = $1",
                        )
                        .await?,
                    &[&message_id],
                )
                .await?;
        }
        Release::Dead(error) => {
            client
                .execute(
                    &client
                        .prepare_cached(
                            "UPDATE relay.held SET dead_at = now(), attempts = attempts + 1,
                                    last_error = $2, leased_until = NULL, body = ''::bytea
                              WHERE message_id = $1",
                        )
                        .await?,
                    &[&message_id, &error],
                )
                .await?;
        }
        Release::Failed(error) => {
            client
                .execute(
                    &client
                        .prepare_cached(
                            "UPDATE relay.held SET attempts = attempts + 1, last_error = $2,
                                    leased_until = NULL
                              WHERE message_id = $1",
                        )
                        .await?,
                    &[&message_id, &error],
                )
                .await?;
        }
    }
    Ok(())
}

/// Gives leased rows back (a pass stopped before sending them).
pub async fn release_leases(
    client: &impl GenericClient,
    ids: &[uuid::Uuid],
) -> Result<(), tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE relay.held SET leased_until = NULL
                      WHERE message_id = ANY($1) AND released_at IS NULL AND dead_at IS NULL",
                )
                .await?,
            &[&ids],
        )
        .await?;
    Ok(())
}
