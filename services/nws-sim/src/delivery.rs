//! The delivery worker: sends the envelopes the network owes organisations to their relays,
//! retrying on failure with the configured delays and keeping every row (delivered or failed).

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use futures_util::StreamExt as _;
use tokio::sync::{Notify, watch};

use crate::store::{self, DueDelivery};

/// How often the worker looks for due deliveries when nothing woke it.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a taken delivery stays hidden from other takers (longer than one send).
const LEASE_SECS: f64 = 60.0;
/// Timeout of one POST to an organisation.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

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
        let delivered: Vec<uuid::Uuid> = futures_util::stream::iter(due)
            .map(|d| self.deliver_one(d))
            .buffer_unordered(self.concurrency.max(1))
            .filter_map(|id| async move { id })
            .collect()
            .await;
        if !delivered.is_empty() {
            // If this fails the leases run out and the messages are sent again; the
            // receiver's replay check answers 409, which counts as delivered.
            let client = self.pool.get().await?;
            store::mark_delivered(&client, &delivered).await?;
        }
        Ok(n)
    }

    /// Sends one delivery; its id when it arrived (recorded with the rest of the pass).
    #[tracing::instrument(skip_all, fields(delivery_id = %d.id, attempt = d.attempts + 1))]
    async fn deliver_one(&self, d: DueDelivery) -> Option<uuid::Uuid> {
        let url = format!("{}/nws/v1/messages", d.endpoint_url.trim_end_matches('/'));
        let outcome = self
            .http
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(d.envelope)
            .send()
            .await;
        let error = match outcome {
            // 409: the organisation already has this message id (an earlier attempt arrived).
            Ok(res) if res.status().is_success() || res.status().as_u16() == 409 => None,
            Ok(res) => Some(format!("HTTP {}", res.status().as_u16())),
            Err(e) if e.is_timeout() => Some("timeout".to_owned()),
            Err(e) if e.is_connect() => Some("connection failed".to_owned()),
            Err(_) => Some("request failed".to_owned()),
        };
        let Some(error) = error else {
            return Some(d.id);
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
