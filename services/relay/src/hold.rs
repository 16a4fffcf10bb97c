//! Holding outbound traffic while data send/receive with the NWS is stopped (送受信停止,
//! DOMAIN §7), and releasing it paced once both ends are open.
//!
//! The failure this prevents: inquiries queued in the weekday 21:00–24:00 window were fired
//! all at once at next morning's start, before the peer was up, and failed. Here:
//! - the outbound consumer asks the [`Gate`]; outside [`ServiceState::Open`], or while a held
//!   backlog is still being released (so the backlog keeps its order and its pace), the
//!   message goes into `relay.held` (once per bus message id) and is acked;
//! - the [`Releaser`] waits until the calendar says open, then until the NWS answers
//!   `GET /v1/ready` with 2xx, then sends held rows oldest first at
//!   `relay.release_per_second`, with the live path's own signing and sending code. A refusal
//!   (4xx) marks the row dead; a transient failure stops the pass and the readiness check
//!   starts again.
//!
//! Holding applies only when `calendar.enforce_service_hours` is on (as the API's own
//! service-hours gate): development and test setups that switch it off send at any hour.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use chukan_core::{Clock, ServiceCalendar, ServiceState};
use chukan_crypto::Vault;
use chukan_mq::{Delivery, HandleError};
use chukan_runtime::{StopStage, Worker};
use tokio::sync::watch;

use crate::{
    metrics,
    outbound::{Outcome, SenderInner, valid_outbound},
    store::{self, Held, Release, ToHold},
};

/// How often the releaser looks again while nothing is held or the link is stopped.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How long a taken batch stays hidden from other relay processes (far longer than a batch
/// takes; a crash only delays its rows by this much).
const LEASE_SECS: f64 = 120.0;
/// Largest batch taken at once (one second's worth at most).
const MAX_BATCH: u32 = 100;

/// Whether outbound messages go out now or are held.
pub struct Gate {
    pool: chukan_db::Pool,
    /// Seals held bodies under the tenant's key (relay's own `tenant_keys`).
    vault: Vault,
    calendar: Arc<ServiceCalendar>,
    clock: Arc<dyn Clock>,
    enforce: bool,
    /// Held rows are (or may be) still pending: set when this process holds one or sees one,
    /// cleared by the releaser when it counts none.
    backlog: AtomicBool,
}

impl Gate {
    pub fn new(
        pool: chukan_db::Pool,
        vault: Vault,
        calendar: Arc<ServiceCalendar>,
        clock: Arc<dyn Clock>,
        enforce: bool,
    ) -> Gate {
        Gate {
            pool,
            vault,
            calendar,
            clock,
            enforce,
            // Until the releaser has counted, assume a backlog from before a restart: holding
            // one message too many is harmless, overtaking the backlog is not.
            backlog: AtomicBool::new(enforce),
        }
    }

    /// Data send/receive with the NWS runs now.
    pub fn link_open(&self) -> bool {
        !self.enforce || self.calendar.state_at(self.clock.now()) == ServiceState::Open
    }

    pub fn should_hold(&self) -> bool {
        !self.link_open() || self.backlog.load(Ordering::Acquire)
    }

    /// Holds the delivery durably and acks it; a failure to store is retried through the bus.
    #[tracing::instrument(skip_all, fields(message_id = %delivery.id, kind))]
    pub(crate) async fn hold(&self, delivery: &Delivery, kind: &str) -> Result<(), HandleError> {
        tracing::Span::current().record("kind", kind);
        let stored = async {
            let (client, keys) =
                chukan_runtime::client_with_keys(&self.pool, &self.vault, &delivery.tenant).await?;
            let sealed = keys.encrypt(&delivery.body, &held_aad(delivery.id));
            let held = store::hold(
                &client,
                &ToHold {
                    message_id: delivery.id,
                    tenant: &delivery.tenant,
                    routing_key: &delivery.routing_key,
                    kind,
                    body: &sealed,
                    traceparent: delivery.traceparent.as_deref(),
                },
            )
            .await?;
            anyhow::Ok(held)
        }
        .await;
        match stored {
            Ok(inserted) => {
                self.backlog.store(true, Ordering::Release);
                if inserted {
                    metrics::HELD.inc();
                    metrics::HELD_TOTAL.inc();
                    tracing::info!("NWS send/receive stopped: message held");
                } else {
                    tracing::info!("message already held");
                }
                Ok(())
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "could not hold the message; will retry");
                Err(HandleError::Retry(error))
            }
        }
    }
}

/// Associated data of a held body: bound to its row, so a body cannot be moved to another.
fn held_aad(message_id: uuid::Uuid) -> Vec<u8> {
    format!("relay.held|{message_id}").into_bytes()
}

/// Counts the pending held rows, sets `chukan_relay_held` and
/// `chukan_relay_held_oldest_age_seconds` from them, and the gate's backlog flag: cleared
/// when none is pending, so this process's consumer sends live again.
async fn count_held(pool: &chukan_db::Pool, gate: &Gate) -> anyhow::Result<i64> {
    let backlog = {
        let client = pool.get().await?;
        store::held_pending(&client).await?
    };
    metrics::HELD.set(backlog.pending);
    metrics::HELD_OLDEST_AGE.set(backlog.oldest_age_seconds);
    gate.backlog.store(backlog.pending > 0, Ordering::Release);
    Ok(backlog.pending)
}

/// What one look at the held rows ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing pending.
    Idle,
    /// Rows pending, the link is stopped.
    Closed,
    /// Rows pending, the NWS is not ready (or failed mid-release): look again after the poll.
    NotReady,
    /// Everything leasable was sent; count again at once.
    Drained,
    /// Asked to stop.
    Stopped,
}

/// The worker releasing held messages.
#[derive(Clone)]
pub struct Releaser {
    pub(crate) pool: chukan_db::Pool,
    pub(crate) gate: Arc<Gate>,
    pub(crate) sender: Arc<SenderInner>,
    /// `{relay.nws_url}/v1/ready`.
    pub ready_url: String,
    pub http: reqwest::Client,
    /// Messages per second once open (`relay.release_per_second`, at least 1 by the settings' check).
    pub per_second: u32,
    /// `relay.readiness_poll_ms`.
    pub readiness_poll: Duration,
}

/// The releaser's name, and its lease's (ADR 0005).
pub const RELEASER: &str = "relay-releaser";

impl Releaser {
    /// The releaser as the binary runs it, once per cell: the pace is the cell's, so only
    /// the replica holding the `relay-releaser` lease sends held messages. Every replica
    /// keeps its own [`Gate`]'s backlog flag (and the held gauges) from the database, since
    /// its outbound consumer must hold behind a backlog another replica releases.
    pub fn once_per_cell(self, ctx: &chukan_runtime::Context) -> Worker {
        let (pool, gate) = (self.pool.clone(), self.gate.clone());
        let releaser = self;
        let leased =
            chukan_runtime::lease::once_per_cell(ctx, RELEASER, StopStage::Consumers, move || {
                releaser.clone().into_worker(RELEASER)
            });
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let watch = tokio::spawn(async move {
            loop {
                if let Err(error) = count_held(&pool, &gate).await {
                    tracing::warn!(error = %format!("{error:#}"), "counting held messages failed");
                }
                tokio::select! {
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop_rx.changed() => return,
                }
            }
        });
        let watch_end = watch.abort_handle();
        let (leased_finished, leased_stop) = (leased.finished, leased.stop);
        Worker {
            name: RELEASER.to_owned(),
            stage: StopStage::Consumers,
            // Either loop ending by itself ends this worker (an Err stops the process); the
            // counting loop otherwise ends only when stopped.
            finished: Box::pin(async move {
                tokio::select! {
                    end = leased_finished => end,
                    end = watch => match end {
                        Err(e) if !e.is_cancelled() => {
                            Err(anyhow::anyhow!("relay held-row count: {e}"))
                        }
                        _ => Ok(()),
                    },
                }
            }),
            stop: Box::new(move || {
                Box::pin(async move {
                    leased_stop().await;
                    let _ = stop_tx.send(true);
                    watch_end.abort();
                })
            }),
        }
    }

    /// Runs the releaser as a worker stopped with the consumers (in every process that
    /// runs it: [`Releaser::once_per_cell`] is the binary's).
    pub fn into_worker(self, name: &str) -> Worker {
        let (stop_tx, stop_rx) = watch::channel(false);
        // Set by the task itself when it ends, so `stop` never depends on `finished` being
        // polled (tests stop workers without awaiting them).
        let (done_tx, mut done_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            self.run(stop_rx).await;
            let _ = done_tx.send(true);
        });
        Worker {
            name: name.to_owned(),
            stage: StopStage::Consumers,
            finished: Box::pin(async move { task.await.context("relay releaser task") }),
            stop: Box::new(move || {
                Box::pin(async move {
                    let _ = stop_tx.send(true);
                    // Err only when the task is gone already: stopped either way.
                    let _ = done_rx.wait_for(|done| *done).await;
                })
            }),
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.step(&mut stop).await {
                Ok(Step::Stopped) => return,
                Ok(Step::Drained) => continue,
                Ok(Step::Idle | Step::Closed) => IDLE_POLL,
                Ok(Step::NotReady) => self.readiness_poll,
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "release pass failed; will retry");
                    self.readiness_poll.max(IDLE_POLL)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn step(&self, stop: &mut watch::Receiver<bool>) -> anyhow::Result<Step> {
        let pending = count_held(&self.pool, &self.gate).await?;
        if pending == 0 {
            return Ok(Step::Idle);
        }
        if !self.gate.link_open() {
            return Ok(Step::Closed);
        }
        if !self.nws_ready().await {
            tracing::info!(pending, "NWS not ready; held messages wait");
            return Ok(Step::NotReady);
        }
        tracing::info!(
            pending,
            per_second = self.per_second,
            "releasing held messages"
        );
        self.release(stop).await
    }

    /// `GET {nws_url}/v1/ready` answered 2xx.
    async fn nws_ready(&self) -> bool {
        let ready = match self.http.get(&self.ready_url).send().await {
            Ok(res) => res.status().is_success(),
            Err(_) => false,
        };
        metrics::READINESS_CHECKS
            .with_label_values(&[if ready { "ready" } else { "not-ready" }])
            .inc();
        ready
    }

    /// Sends leased batches, one message per tick, until nothing is left or a send fails.
    async fn release(&self, stop: &mut watch::Receiver<bool>) -> anyhow::Result<Step> {
        let interval = Duration::from_secs(1) / self.per_second;
        let mut ticker = tokio::time::interval(interval);
        // After a slow send, keep the spacing rather than catching up in a burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let batch = i64::from(self.per_second.clamp(1, MAX_BATCH));
        loop {
            // A long release keeps the gauges current (one count per batch, about a second);
            // counted before leasing, so a failure here leaves no row leased.
            count_held(&self.pool, &self.gate).await?;
            let leased = {
                let client = self.pool.get().await?;
                store::lease_held(&client, batch, LEASE_SECS).await?
            };
            if leased.is_empty() {
                return Ok(Step::Drained);
            }
            let mut rest: VecDeque<Held> = leased.into();
            while let Some(held) = rest.pop_front() {
                let stopping = tokio::select! {
                    _ = ticker.tick() => false,
                    _ = stop.changed() => true,
                };
                if stopping || !self.gate.link_open() {
                    rest.push_front(held);
                    self.give_back(&rest).await?;
                    return Ok(if stopping {
                        Step::Stopped
                    } else {
                        Step::Closed
                    });
                }
                if !self.send_one(held).await? {
                    self.give_back(&rest).await?;
                    return Ok(Step::NotReady);
                }
            }
        }
    }

    async fn give_back(&self, rest: &VecDeque<Held>) -> anyhow::Result<()> {
        let ids: Vec<uuid::Uuid> = rest.iter().map(|h| h.message_id).collect();
        let client = self.pool.get().await?;
        store::release_leases(&client, &ids).await?;
        Ok(())
    }

    /// Sends one held message and records how it ended; false on a transient failure.
    #[tracing::instrument(skip_all, fields(message_id = %held.message_id, kind, outcome))]
    async fn send_one(&self, held: Held) -> anyhow::Result<bool> {
        let span = tracing::Span::current();
        let body = {
            let (_, keys) =
                chukan_runtime::client_with_keys(&self.pool, &self.gate.vault, &held.tenant)
                    .await?;
            // Unreadable = not a message we can send: refused like an invalid one below.
            keys.decrypt(&held.body, &held_aad(held.message_id))
                .unwrap_or_default()
        };
        let (outcome, detail) = match valid_outbound(&body) {
            Some(out) => {
                span.record("kind", out.kind.as_str());
                self.sender
                    .post(held.message_id, held.traceparent, out)
                    .await
            }
            // Checked when held; kept for a row written by hand or by an older version.
            None => (Outcome::Rejected, "not a valid NwsOutbound".to_owned()),
        };
        span.record("outcome", outcome.label());
        let client = self.pool.get().await?;
        match outcome {
            Outcome::Sent | Outcome::Duplicate => {
                store::record_release(&client, held.message_id, Release::Released).await?;
                metrics::RELEASED.inc();
                metrics::HELD.dec();
                tracing::info!("held message sent to the NWS");
                Ok(true)
            }
            Outcome::Rejected => {
                store::record_release(&client, held.message_id, Release::Dead(&detail)).await?;
                metrics::HELD_DEAD.inc();
                metrics::HELD.dec();
                tracing::error!(%detail, "the NWS refused a held message; marked dead");
                Ok(true)
            }
            Outcome::Retry => {
                store::record_release(&client, held.message_id, Release::Failed(&detail)).await?;
                tracing::warn!(%detail, "sending a held message failed; checking readiness again");
                Ok(false)
            }
        }
    }
}
