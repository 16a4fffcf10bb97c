//! Transactional outbox: a service writes its state change and the message announcing it in
//! one transaction ([`enqueue`]); the [`OutboxRelay`] actor publishes with confirms and
//! deletes what the broker confirmed. A crash between commit and publish only delays.

use std::{sync::Arc, time::Duration};

use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, AsyncContext as _, Context, WrapFuture as _,
};
use anyhow::Context as _;
use chukan_core::worker::{StopStage, Worker};
use futures_util::future::join_all;
use tokio::sync::{Mutex, Notify, watch};
use uuid::Uuid;

use crate::{Bus, Envelope, OutgoingMessage, Publisher, header, lifecycle, metrics, trace};

/// Rows taken per round; each round is one transaction holding their row locks.
const BATCH: i64 = 256;

/// Writes `msg` to `{schema}.outbox`; the caller commits it with its own change.
///
/// The statement is prepared once per connection (this is every request's hot path). The current span's traceparent is kept so the
/// trace continues when the relay publishes.
pub async fn enqueue(
    tx: &impl deadpool_postgres::GenericClient,
    schema: &str,
    msg: &OutgoingMessage,
) -> Result<(), tokio_postgres::Error> {
    let envelope = Envelope {
        id: msg.id,
        tenant: msg.tenant.clone(),
        attempt: 0,
        traceparent: trace::current_traceparent(),
    };
    let sql = format!(
        "INSERT INTO {}.outbox (id, tenant_id, routing_key, headers, body) VALUES ($1, $2, $3, $4, $5)",
        chukan_db::quote_ident(schema)
    );
    let statement = tx.prepare_cached(&sql).await?;
    tx.execute(
        &statement,
        &[
            &msg.id,
            &msg.tenant,
            &msg.routing_key,
            &envelope.to_json(),
            &msg.body,
        ],
    )
    .await?;
    Ok(())
}

/// Writes every message of `msgs` as [`enqueue`] does, pipelined: one round trip for all.
pub async fn enqueue_all(
    tx: &impl deadpool_postgres::GenericClient,
    schema: &str,
    msgs: &[OutgoingMessage],
) -> Result<(), tokio_postgres::Error> {
    futures_util::future::try_join_all(msgs.iter().map(|m| enqueue(tx, schema, m))).await?;
    Ok(())
}

/// Sets `chukan_outbox_backlog`, `chukan_outbox_oldest_age_seconds` and `chukan_inbox_rows`
/// for `schema` from one statement. Each relay calls it every `amqp.backlog_sample_ms`.
///
/// The age is measured by the database's clock against `created_at` (indexed, so the oldest
/// row is one index probe). The inbox only grows, so it is not counted once the planner has
/// statistics for it: its size is estimated from them as the planner does (rows per page ×
/// the pages it has now); a table never analysed yet is small enough to count.
pub async fn sample(pool: &chukan_db::Pool, schema: &str) -> anyhow::Result<()> {
    let quoted = chukan_db::quote_ident(schema);
    let client = pool.get().await.context("backlog sample: no connection")?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT
               (SELECT count(*) FROM {quoted}.outbox),
               (SELECT GREATEST(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
                  FROM {quoted}.outbox),
               (SELECT CASE WHEN c.reltuples >= 0 AND c.relpages > 0
                         THEN (c.reltuples::float8 / c.relpages
                               * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint
                         ELSE (SELECT count(*) FROM {quoted}.inbox)
                       END
                  FROM pg_class c WHERE c.oid = to_regclass($1))"
        ))
        .await?;
    let row = client
        .query_one(&statement, &[&format!("{quoted}.inbox")])
        .await?;
    let backlog: i64 = row.try_get(0)?;
    let oldest_age: Option<f64> = row.try_get(1)?;
    let inbox: Option<i64> = row.try_get(2)?;
    metrics::OUTBOX_BACKLOG
        .with_label_values(&[schema])
        .set(backlog);
    metrics::OUTBOX_OLDEST_AGE
        .with_label_values(&[schema])
        .set(oldest_age.unwrap_or(0.0));
    metrics::INBOX_ROWS
        .with_label_values(&[schema])
        .set(inbox.unwrap_or(0));
    Ok(())
}

/// What one relay round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Round {
    taken: usize,
    published: usize,
}

/// The relay's state, shared by the actor and its handle (for `flush`).
struct RelayCore {
    pool: chukan_db::Pool,
    schema: &'static str,
    bus: Bus,
    publisher: Mutex<Option<Publisher>>,
    /// One round at a time in this process, so `flush` never races the poll loop past rows
    /// it has locked; other processes are kept apart by SKIP LOCKED.
    round_lock: Mutex<()>,
}

impl RelayCore {
    async fn publisher(&self) -> anyhow::Result<Publisher> {
        let mut guard = self.publisher.lock().await;
        if let Some(publisher) = guard.as_ref() {
            return Ok(publisher.clone());
        }
        let publisher = self.bus.publisher().await?;
        *guard = Some(publisher.clone());
        Ok(publisher)
    }

    async fn round(&self) -> anyhow::Result<Round> {
        let schema = chukan_db::quote_ident(self.schema);
        let mut client = self.pool.get().await.context("outbox: no connection")?;
        let tx = client.transaction().await?;
        // SKIP LOCKED: relays in other processes take other rows instead of waiting.
        let take = tx
            .prepare_cached(&format!(
                "SELECT id, tenant_id, exchange, routing_key, headers, body FROM {schema}.outbox
                 ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED"
            ))
            .await?;
        let rows = tx.query(&take, &[&BATCH]).await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Round::default());
        }
        let publisher = self.publisher().await?;
        let sends = rows.iter().map(|row| {
            let publisher = publisher.clone();
            let id: Uuid = row.get(0);
            let tenant: String = row.get(1);
            let exchange: String = row.get(2);
            let routing_key: String = row.get(3);
            let headers: serde_json::Value = row.get(4);
            let body: Vec<u8> = row.get(5);
            // Stored names are logical; the namespace is this process's.
            let exchange = if exchange.is_empty() {
                self.bus.exchange()
            } else {
                self.bus.qualify(&exchange)
            };
            let envelope = Envelope {
                id,
                tenant,
                attempt: headers[header::ATTEMPT]
                    .as_u64()
                    .and_then(|a| u32::try_from(a).ok())
                    .unwrap_or(0),
                traceparent: headers[header::TRACEPARENT].as_str().map(str::to_owned),
            };
            async move {
                let result = publisher
                    .publish_envelope(&exchange, &routing_key, &envelope, &body)
                    .await;
                (id, result)
            }
        });
        let results = join_all(sends).await;
        let mut confirmed = Vec::new();
        let mut failed = Vec::new();
        for (id, result) in results {
            match result {
                Ok(()) => confirmed.push(id),
                Err(error) => {
                    tracing::warn!(schema = self.schema, message_id = %id, %error, "outbox publish failed; will retry");
                    failed.push(id);
                }
            }
        }
        let delete = tx
            .prepare_cached(&format!("DELETE FROM {schema}.outbox WHERE id = ANY($1)"))
            .await?;
        tx.execute(&delete, &[&confirmed]).await?;
        if !failed.is_empty() {
            tx.execute(
                &format!("UPDATE {schema}.outbox SET attempts = attempts + 1 WHERE id = ANY($1)"),
                &[&failed],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Round {
            taken: rows.len(),
            published: confirmed.len(),
        })
    }

    /// Rounds until the outbox is empty (of rows this process can lock) or a publish fails.
    async fn drain(&self) -> anyhow::Result<usize> {
        let _only_one = self.round_lock.lock().await;
        let mut total = 0;
        loop {
            let round = self.round().await?;
            total += round.published;
            if round.taken == 0 {
                return Ok(total);
            }
            if round.published < round.taken {
                anyhow::bail!(
                    "{} outbox messages in {} could not be published",
                    round.taken - round.published,
                    self.schema
                );
            }
        }
    }
}

/// The actor publishing one schema's outbox: on wake, or every `poll` when nothing woke it.
pub struct OutboxRelay {
    core: Arc<RelayCore>,
    wake: Arc<Notify>,
    poll: Duration,
    stop: watch::Receiver<bool>,
    done: Option<watch::Sender<lifecycle::Done>>,
}

impl Actor for OutboxRelay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let core = self.core.clone();
        let wake = self.wake.clone();
        let poll = self.poll;
        let mut stop = self.stop.clone();
        let run = async move {
            loop {
                if let Err(error) = core.drain().await {
                    tracing::warn!(
                        schema = core.schema,
                        error = format!("{error:#}"),
                        "outbox round failed"
                    );
                }
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                    () = lifecycle::stopped(&mut stop) => break,
                }
            }
            // Last flush on the way out, so what the consumers wrote while draining is sent.
            core.drain().await.map(|_| ()).map_err(|e| format!("{e:#}"))
        };
        ctx.spawn(run.into_actor(self).map(|result, actor, ctx| {
            if let Some(done) = actor.done.take() {
                let _ = done.send(Some(result));
            }
            ctx.stop();
        }));

        // The backlog gauges on a clock of their own: a relay stuck on the broker is exactly
        // when they must keep moving.
        let sampler = sample_until_stopped(
            self.core.pool.clone(),
            self.core.schema,
            self.core.bus.settings().backlog_sample,
            self.stop.clone(),
        );
        ctx.spawn(sampler.into_actor(self));
    }
}

/// [`sample`] every `every` until a stop is requested.
async fn sample_until_stopped(
    pool: chukan_db::Pool,
    schema: &'static str,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(error) = sample(&pool, schema).await {
            tracing::warn!(
                schema,
                error = format!("{error:#}"),
                "outbox backlog could not be sampled"
            );
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = lifecycle::stopped(&mut stop) => break,
        }
    }
}

/// The backlog gauges of a schema that runs no relay (its consumers fill an inbox, it
/// publishes nothing): [`sample`] every `every` as a worker of its own.
pub fn sample_worker(
    name: &str,
    pool: chukan_db::Pool,
    schema: &'static str,
    every: Duration,
) -> Worker {
    let (stop_tx, stop_rx, done_tx, done_rx) = lifecycle::channels();
    tokio::spawn(async move {
        sample_until_stopped(pool, schema, every, stop_rx).await;
        let _ = done_tx.send(Some(Ok(())));
    });
    lifecycle::worker(name, StopStage::Outbox, Arc::new(stop_tx), done_rx)
}

/// Starts an [`OutboxRelay`] for `schema` (inside an actix system).
pub fn start(
    pool: chukan_db::Pool,
    schema: &'static str,
    bus: Bus,
    poll: Duration,
) -> OutboxHandle {
    let (stop_tx, stop_rx, done_tx, done_rx) = lifecycle::channels();
    let core = Arc::new(RelayCore {
        pool,
        schema,
        bus,
        publisher: Mutex::new(None),
        round_lock: Mutex::new(()),
    });
    let wake = Arc::new(Notify::new());
    OutboxRelay {
        core: core.clone(),
        wake: wake.clone(),
        poll,
        stop: stop_rx,
        done: Some(done_tx),
    }
    .start();
    OutboxHandle {
        core,
        wake,
        stop: Arc::new(stop_tx),
        done: done_rx,
    }
}

/// Wakes, flushes and stops an [`OutboxRelay`].
#[derive(Clone)]
pub struct OutboxHandle {
    core: Arc<RelayCore>,
    wake: Arc<Notify>,
    stop: Arc<watch::Sender<bool>>,
    done: watch::Receiver<lifecycle::Done>,
}

impl std::fmt::Debug for OutboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxHandle")
            .field("schema", &self.core.schema)
            .finish_non_exhaustive()
    }
}

impl OutboxHandle {
    /// Call after committing outbox rows: the relay publishes now instead of at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes everything pending now; returns how many messages were confirmed.
    pub async fn flush(&self) -> anyhow::Result<usize> {
        self.core.drain().await
    }

    /// The relay as a worker stopped in the last stage (after consumers), flushing first.
    pub fn into_worker(self, name: &str) -> Worker {
        lifecycle::worker(name, StopStage::Outbox, self.stop, self.done)
    }
}
