//! The delivery worker: sends the envelopes the network owes organisations to their relays,
//! retrying on failure with the configured delays and keeping every row (delivered or failed).
//!
//! An organisation has one or two doors (ADR 0006): its cell's relay in its home region
//! (`endpoint_url`) and the relay slot of that cell in the other region
//! (`standby_endpoint_url`). Each attempt tries the first; when it does not answer (refused
//! or reset connection, timeout, 502/503/504) or answers 421 (`not-homed-here`: the cell
//! moved), the second, in the same attempt. The first door that takes it ends the attempt,
//! so a message is never sent on after a door took it.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use futures_util::StreamExt as _;
use tokio::sync::{Notify, watch};

use crate::{
    metrics::{self, Door},
    store::{self, DueDelivery},
};

/// How often the worker looks for due deliveries when nothing woke it.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a taken delivery stays hidden from other takers (longer than one attempt: two
/// sends, one per door, of at most `SEND_TIMEOUT` each).
const LEASE_SECS: f64 = 60.0;
/// Timeout of one POST to an organisation.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How one door answered a send.
enum DoorAnswer {
    /// 2xx, or 409: the organisation has the message.
    Took,
    /// No answer, 502/503/504 or 421: the other door may take it in the same attempt.
    TryOther(String),
    /// Any other status: the door answered and refused; the attempt failed (retried later).
    Refused(String),
}

pub struct DeliveryWorker {
    pub pool: Pool,
    pub http: reqwest::Client,
    pub wake: Arc<Notify>,
    pub concurrency: usize,
    pub retry_ms: Vec<u64>,
}

/// The client deliveries go out with: `nws_sim.delivery_ca_file` checks the relays'
/// certificates, `nws_sim.delivery_client_cert_file` is presented to them (mutual TLS).
pub fn http_client(settings: &chukan_config::NwsSimSettings) -> anyhow::Result<reqwest::Client> {
    let tls = chukan_tls::https::ClientTls::nws_sim_delivery(settings);
    Ok(chukan_tls::https::client_builder(&tls)?
        .timeout(SEND_TIMEOUT)
        .build()?)
}

impl DeliveryWorker {
    /// Runs until `stop` turns true; a database outage is logged and retried, never fatal.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            loop {
                match self.deliver_due().await {
                    // A full batch: there may be more due right now.
                    Ok(n) if n >= self.batch_size() => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "delivery pass failed");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    fn batch_size(&self) -> usize {
        (self.concurrency * 2).clamp(8, 256)
    }

    /// One pass: lease what is due, send it with bounded concurrency, record the outcomes.
    async fn deliver_due(&self) -> anyhow::Result<usize> {
        let client = self.pool.get().await?;
        let due =
            store::lease_due_deliveries(&client, self.batch_size() as i64, LEASE_SECS).await?;
        drop(client);
        let n = due.len();
        let delivered: Vec<(uuid::Uuid, Door)> = futures_util::stream::iter(due)
            .map(|d| self.deliver_one(d))
            .buffer_unordered(self.concurrency.max(1))
            .filter_map(|taken| async move { taken })
            .collect()
            .await;
        if !delivered.is_empty() {
            let ids: Vec<uuid::Uuid> = delivered.iter().map(|(id, _)| *id).collect();
            let via_standby: Vec<uuid::Uuid> = delivered
                .iter()
                .filter(|(_, door)| *door == Door::Standby)
                .map(|(id, _)| *id)
                .collect();
            // If this fails the leases run out and the messages are sent again; the
            // receiver's replay check answers 409, which counts as delivered.
            let client = self.pool.get().await?;
            store::mark_delivered(&client, &ids, &via_standby).await?;
        }
        Ok(n)
    }

    /// POSTs an envelope to one door and sorts its answer.
    async fn send_to(&self, door: Door, base_url: &str, envelope: &[u8]) -> DoorAnswer {
        let url = format!("{}/nws/v1/messages", base_url.trim_end_matches('/'));
        let outcome = self
            .http
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(envelope.to_vec())
            .send()
            .await;
        let (answer, result) = match outcome {
            Ok(res) => match res.status().as_u16() {
                200..=299 => (DoorAnswer::Took, "delivered"),
                // The organisation already has this message id (an earlier attempt arrived).
                409 => (DoorAnswer::Took, "duplicate"),
                // A relay of a cell the organisation is not homed in (not-homed-here).
                421 => (DoorAnswer::TryOther("HTTP 421".to_owned()), "misdirected"),
                // A gateway in front of a relay that is down.
                status @ (502..=504) => {
                    (DoorAnswer::TryOther(format!("HTTP {status}")), "unanswered")
                }
                status => (DoorAnswer::Refused(format!("HTTP {status}")), "refused"),
            },
            Err(e) => {
                // No answer at all: refused, reset or timed out; the other door may be up.
                let error = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                (DoorAnswer::TryOther(error.to_owned()), "unanswered")
            }
        };
        metrics::count_delivery(door, result);
        answer
    }

    /// Sends one delivery, through the standby door when the primary cannot take it; its id
    /// and the door that took it when it arrived (recorded with the rest of the pass).
    #[tracing::instrument(skip_all, fields(delivery_id = %d.id, attempt = d.attempts + 1))]
    async fn deliver_one(&self, d: DueDelivery) -> Option<(uuid::Uuid, Door)> {
        let primary = self
            .send_to(Door::Primary, &d.endpoint_url, &d.envelope)
            .await;
        let error = match (primary, d.standby_endpoint_url.as_deref()) {
            (DoorAnswer::Took, _) => return Some((d.id, Door::Primary)),
            (DoorAnswer::TryOther(primary), Some(standby_url)) => {
                match self.send_to(Door::Standby, standby_url, &d.envelope).await {
                    DoorAnswer::Took => {
                        tracing::info!(primary = %primary, "delivered through the standby door");
                        return Some((d.id, Door::Standby));
                    }
                    DoorAnswer::TryOther(standby) | DoorAnswer::Refused(standby) => {
                        format!("primary: {primary}; standby: {standby}")
                    }
                }
            }
            (DoorAnswer::TryOther(error) | DoorAnswer::Refused(error), _) => error,
        };
        let retry_in = self
            .retry_ms
            .get(d.attempts as usize)
            .map(|ms| i64::try_from(*ms).unwrap_or(i64::MAX));
        if retry_in.is_none() {
            tracing::warn!(%error, "delivery failed for good");
        } else {
            tracing::info!(%error, "delivery attempt failed; will retry");
        }
        let result = async {
            let client = self.pool.get().await?;
            store::mark_attempt_failed(&client, d.id, &error, retry_in).await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = result {
            // The lease runs out and the delivery is taken again: late, not lost.
            tracing::warn!(error = %format!("{error:#}"), "could not record a delivery outcome");
        }
        None
    }
}
