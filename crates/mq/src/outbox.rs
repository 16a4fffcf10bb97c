//! Transactional outbox: a service writes its state change and the message announcing it in
//! one transaction ([`enqueue`]); the [`OutboxRelay`] actor publishes with confirms and
//! settles what the broker confirmed. A crash between commit and publish only delays.
//!
//! Settling moves a confirmed row to `{schema}.outbox_sent` while `amqp.outbox_replay_window`
//! is set (ADR 0006): a failover can then put it back with [`replay_sent`], because the lost
//! broker may still have held the message; consumers' inboxes make the re-publish harmless.
//! The kept body is sealed with the bus's [`OutboxSeal`] (a KEK-derived key), because a
//! message may carry personal data that must not outlive its publication in the clear; a bus
//! without a seal keeps nothing. Kept rows older than the window are purged by the relay in
//! bounded chunks, off the publish path. Without a window the row is deleted at once.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, AsyncContext as _, Context, WrapFuture as _,
};
use anyhow::Context as _;
use chukan_core::worker::{StopStage, Worker};
use chukan_crypto::OutboxSeal;
use futures_util::future::join_all;
use tokio::sync::{Mutex, Notify, watch};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::{Bus, Envelope, OutgoingMessage, Publisher, header, lifecycle, metrics, trace};

/// Rows taken per round; each round is one transaction holding their row locks.
const BATCH: i64 = 256;
/// How often a relay purges `outbox_sent` of rows past the replay window: often enough to
/// keep the table near its window's size, rarely enough to cost nothing between.
const PURGE_EVERY: Duration = Duration::from_secs(5);
/// Rows deleted per purge statement, so one purge never holds a long transaction.
const PURGE_CHUNK: i64 = 10_000;
/// Kept rows moved back per transaction by [`replay_sent`]: each chunk's bodies are opened
/// in memory and its row locks held only for that chunk.
const REPLAY_CHUNK: i64 = 1000;
/// The outbox's columns, in the order `outbox` and `outbox_sent` share.
const OUTBOX_COLUMNS: &str =
    "id, tenant_id, exchange, routing_key, headers, body, created_at, attempts";
/// Rows of [`OUTBOX_COLUMNS`] from one array per column, for a whole batch in one statement.
const OUTBOX_UNNEST: &str = "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], \
     $4::text[], $5::jsonb[], $6::bytea[], $7::timestamptz[], $8::int4[])";

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

/// Sets `chukan_outbox_backlog`, `chukan_outbox_oldest_age_seconds`, `chukan_inbox_rows` and
/// `chukan_outbox_sent_rows` for `schema` from one statement. Each relay calls it every
/// `amqp.backlog_sample_ms`.
///
/// The age is measured by the database's clock against `created_at` (indexed, so the oldest
/// row is one index probe). The inbox only grows, and the kept rows are a whole replay
/// window of traffic (millions under load), so neither is counted once it is large: its size
/// is estimated from the planner's statistics as the planner does (rows per page × the pages
/// it has now). A table never analysed yet, or (kept rows) estimated below
/// [`EXACT_KEPT_BELOW`], is counted.
pub async fn sample(pool: &chukan_db::Pool, schema: &str) -> anyhow::Result<()> {
    let quoted = chukan_db::quote_ident(schema);
    let client = pool.get().await.context("backlog sample: no connection")?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT
               (SELECT count(*) FROM {quoted}.outbox),
               {kept},
               (SELECT GREATEST(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
                  FROM {quoted}.outbox),
               {inbox}",
            kept = rows_of(&quoted, "outbox_sent", "$2", EXACT_KEPT_BELOW),
            inbox = rows_of(&quoted, "inbox", "$1", 0),
        ))
        .await?;
    let row = client
        .query_one(
            &statement,
            &[&format!("{quoted}.inbox"), &format!("{quoted}.outbox_sent")],
        )
        .await?;
    let backlog: i64 = row.try_get(0)?;
    let kept: Option<i64> = row.try_get(1)?;
    let oldest_age: Option<f64> = row.try_get(2)?;
    let inbox: Option<i64> = row.try_get(3)?;
    metrics::OUTBOX_BACKLOG
        .with_label_values(&[schema])
        .set(backlog);
    metrics::OUTBOX_OLDEST_AGE
        .with_label_values(&[schema])
        .set(oldest_age.unwrap_or(0.0));
    metrics::INBOX_ROWS
        .with_label_values(&[schema])
        .set(inbox.unwrap_or(0));
    metrics::OUTBOX_SENT_ROWS
        .with_label_values(&[schema])
        .set(kept.unwrap_or(0));
    Ok(())
}

/// Kept rows estimated below this are counted exactly: small enough to be cheap, and a gauge
/// an operator reads row by row after a failover's replay.
const EXACT_KEPT_BELOW: i64 = 10_000;

/// A scalar subquery for the rows of `{quoted}.{table}` (whose qualified name is the text
/// parameter `param`): the planner's estimate, or `count(*)` when there is none or it is
/// below `exact_below`.
fn rows_of(quoted: &str, table: &str, param: &str, exact_below: i64) -> String {
    format!(
        "(SELECT CASE WHEN e.n IS NULL OR e.n < {exact_below}
                 THEN (SELECT count(*) FROM {quoted}.{table}) ELSE e.n END
            FROM (SELECT CASE WHEN c.reltuples >= 0 AND c.relpages > 0
                         THEN (c.reltuples::float8 / c.relpages
                               * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint
                         END AS n
                    FROM pg_class c WHERE c.oid = to_regclass({param})) e)"
    )
}

/// What a kept body is sealed to: its schema and message id, so a sealed body copied to
/// another row or another schema's table does not open. (The id has a fixed length, so the
/// pair is unambiguous.)
fn kept_body_aad(schema: &str, id: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(schema.len() + 16);
    aad.extend_from_slice(schema.as_bytes());
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// Why [`replay_sent`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    /// Sealed under another KEK, or altered. Its chunk was left where it was.
    #[error(
        "kept outbox message {id} of schema {schema} does not open with this cell's KEK \
         (crypto.kek): sealed under another key or altered; its chunk was not replayed"
    )]
    Unopenable { schema: String, id: Uuid },
}

/// Moves every row kept in `{schema}.outbox_sent` back into `{schema}.outbox` (same id,
/// routing key, headers, exchange, tenant, `created_at` and attempts, the body opened with
/// `seal`), so the relays publish them again; returns how many rows were moved. The failover
/// calls it for each schema on the promoted cluster: the messages the lost broker held are
/// sent again under their own ids, and every consumer's inbox makes a second arrival a no-op.
///
/// Works in transactions of [`REPLAY_CHUNK`] rows, oldest first, opened on `client` itself
/// (which must not be inside a transaction). A body that does not open stops the replay with
/// [`ReplayError::Unopenable`]: its chunk stays kept, earlier chunks stay moved. A row whose
/// id is already in the outbox is not duplicated (and not counted). Rows kept after the
/// replay began (re-published by a relay running meanwhile) are left for the next window.
pub async fn replay_sent(
    client: &tokio_postgres::Client,
    schema: &str,
    seal: &OutboxSeal,
) -> Result<u64, ReplayError> {
    let quoted = chukan_db::quote_ident(schema);
    let take = client
        .prepare(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM {quoted}.outbox_sent WHERE sent_at <= $1
              ORDER BY sent_at, id LIMIT $2 FOR UPDATE"
        ))
        .await?;
    let put_back = client
        .prepare(&format!(
            "INSERT INTO {quoted}.outbox ({OUTBOX_COLUMNS}) {OUTBOX_UNNEST}
             ON CONFLICT (id) DO NOTHING"
        ))
        .await?;
    let forget = client
        .prepare(&format!(
            "DELETE FROM {quoted}.outbox_sent WHERE id = ANY($1)"
        ))
        .await?;
    let began: SystemTime = client
        .query_one("SELECT clock_timestamp()", &[])
        .await?
        .try_get(0)?;
    let mut moved = 0;
    loop {
        client.batch_execute("BEGIN").await?;
        let chunk = async {
            let rows = client.query(&take, &[&began, &REPLAY_CHUNK]).await?;
            if rows.is_empty() {
                return Ok((0, 0));
            }
            let mut kept = KeptRows::with_capacity(rows.len());
            for row in &rows {
                let id: Uuid = row.try_get(0)?;
                let body = seal
                    .open(row.try_get(5)?, &kept_body_aad(schema, id))
                    .map_err(|_| ReplayError::Unopenable {
                        schema: schema.to_owned(),
                        id,
                    })?;
                kept.push(row, body)?;
            }
            let put_back_params = kept.params();
            let forget_params: [&(dyn ToSql + Sync); 1] = [&kept.ids];
            let (inserted, _) = futures_util::try_join!(
                client.execute(&put_back, &put_back_params),
                client.execute(&forget, &forget_params),
            )?;
            Ok::<_, ReplayError>((rows.len(), inserted))
        }
        .await;
        match chunk {
            Ok((taken, inserted)) => {
                client.batch_execute("COMMIT").await?;
                moved += inserted;
                if (taken as i64) < REPLAY_CHUNK {
                    return Ok(moved);
                }
            }
            Err(error) => {
                // The chunk's error is the one to report; a failed rollback only means the
                // connection is gone, which ends the transaction just the same.
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(error);
            }
        }
    }
}

/// Outbox rows as one array per column, the parameters of [`OUTBOX_UNNEST`].
#[derive(Default)]
struct KeptRows {
    ids: Vec<Uuid>,
    tenants: Vec<String>,
    exchanges: Vec<String>,
    routing_keys: Vec<String>,
    headers: Vec<serde_json::Value>,
    bodies: Vec<Vec<u8>>,
    created_at: Vec<SystemTime>,
    attempts: Vec<i32>,
}

impl KeptRows {
    fn with_capacity(n: usize) -> KeptRows {
        KeptRows {
            ids: Vec::with_capacity(n),
            tenants: Vec::with_capacity(n),
            exchanges: Vec::with_capacity(n),
            routing_keys: Vec::with_capacity(n),
            headers: Vec::with_capacity(n),
            bodies: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
            attempts: Vec::with_capacity(n),
        }
    }

    /// Adds a row read as [`OUTBOX_COLUMNS`], with `body` in place of the stored one.
    fn push(
        &mut self,
        row: &tokio_postgres::Row,
        body: Vec<u8>,
    ) -> Result<(), tokio_postgres::Error> {
        self.ids.push(row.try_get(0)?);
        self.tenants.push(row.try_get(1)?);
        self.exchanges.push(row.try_get(2)?);
        self.routing_keys.push(row.try_get(3)?);
        self.headers.push(row.try_get(4)?);
        self.bodies.push(body);
        self.created_at.push(row.try_get(6)?);
        self.attempts.push(row.try_get(7)?);
        Ok(())
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.ids,
            &self.tenants,
            &self.exchanges,
            &self.routing_keys,
            &self.headers,
            &self.bodies,
            &self.created_at,
            &self.attempts,
        ]
    }
}

/// Deletes the rows of `{schema}.outbox_sent` sent more than `window` ago, [`PURGE_CHUNK`]
/// at a time (each chunk its own statement, so no long transaction and no long lock);
/// returns how many went. Rows another purger holds are skipped, not waited for.
pub async fn purge_sent(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
    window: Duration,
) -> Result<u64, tokio_postgres::Error> {
    let schema = chukan_db::quote_ident(schema);
    let statement = client
        .prepare(&format!(
            "DELETE FROM {schema}.outbox_sent WHERE id IN (
                SELECT id FROM {schema}.outbox_sent
                 WHERE sent_at < now() - make_interval(secs => $1)
                 ORDER BY sent_at LIMIT $2
                 FOR UPDATE SKIP LOCKED)"
        ))
        .await?;
    let window_secs = window.as_secs_f64();
    let mut total = 0;
    loop {
        let n = client
            .execute(&statement, &[&window_secs, &PURGE_CHUNK])
            .await?;
        total += n;
        if n < PURGE_CHUNK as u64 {
            return Ok(total);
        }
    }
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
                "SELECT {OUTBOX_COLUMNS} FROM {schema}.outbox
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
        // Kept for a replay after a failover only under a seal: the body may carry personal
        // data, which must not stay in the clear once published.
        let keep = self
            .bus
            .settings()
            .outbox_replay_window
            .and(self.bus.outbox_seal());
        let mut confirmed = Vec::new();
        let mut kept = KeptRows::default();
        let mut failed = Vec::new();
        // join_all keeps the order of `rows`.
        for (row, (id, result)) in rows.iter().zip(results) {
            match result {
                Ok(()) => {
                    confirmed.push(id);
                    if let Some(seal) = keep {
                        let body = seal.seal(row.try_get(5)?, &kept_body_aad(self.schema, id));
                        kept.push(row, body)?;
                    }
                }
                Err(error) => {
                    tracing::warn!(schema = self.schema, message_id = %id, %error, "outbox publish failed; will retry");
                    failed.push(id);
                }
            }
        }
        let delete = tx
            .prepare_cached(&format!("DELETE FROM {schema}.outbox WHERE id = ANY($1)"))
            .await?;
        // ON CONFLICT: an id already kept (a replayed message confirmed a second time) must
        // never fail the round.
        let keep = if kept.ids.is_empty() {
            None
        } else {
            Some(
                tx.prepare_cached(&format!(
                    "INSERT INTO {schema}.outbox_sent ({OUTBOX_COLUMNS}) {OUTBOX_UNNEST}
                     ON CONFLICT (id) DO NOTHING"
                ))
                .await?,
            )
        };
        let delete_params: [&(dyn ToSql + Sync); 1] = [&confirmed];
        // One pipelined exchange for all three: they touch disjoint rows.
        futures_util::try_join!(
            tx.execute(&delete, &delete_params),
            async {
                match &keep {
                    Some(keep) => tx.execute(keep, &kept.params()).await,
                    None => Ok(0),
                }
            },
            async {
                if failed.is_empty() {
                    return Ok(0);
                }
                tx.execute(
                    &format!(
                        "UPDATE {schema}.outbox SET attempts = attempts + 1 WHERE id = ANY($1)"
                    ),
                    &[&failed],
                )
                .await
            },
        )?;
        tx.commit().await?;
        Ok(Round {
            taken: rows.len(),
            published: confirmed.len(),
        })
    }

    /// Rounds until the outbox is empty (of rows this process can lock) or a publish fails.
    ///
    /// `Until::Short` ends after a round that took less than a full batch: the outbox held no
    /// more than that when the round looked, and whatever is committed after it comes with a
    /// wake of its own (or is found by the poll), so a confirming empty round would only cost
    /// a transaction per wake. `Until::Empty` confirms with that round (a flush, a stop).
    async fn drain(&self, until: Until) -> anyhow::Result<usize> {
        let _only_one = self.round_lock.lock().await;
        let mut total = 0;
        loop {
            let round = self.round().await?;
            total += round.published;
            let short = round.taken < BATCH as usize;
            if round.taken == 0
                || (until == Until::Short && short && round.published == round.taken)
            {
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

/// How far [`RelayCore::drain`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Until a round takes less than a full batch.
    Short,
    /// Until a round finds nothing.
    Empty,
}

/// Longest idle poll, as a multiple of `poll`: the relay's own process wakes it on every
/// commit, so the poll only finds rows written by other processes (the CLI, batch jobs,
/// another replica's relay that died). An idle cell then costs a quarter of the empty
/// transactions, and such rows wait at most this long.
const IDLE_POLL_FACTOR: u32 = 4;

/// The actor publishing one schema's outbox: on wake, or every `poll` when nothing woke it
/// (backing off to `poll` × [`IDLE_POLL_FACTOR`] while rounds find nothing).
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
            let mut idle_poll = poll;
            loop {
                match core.drain(Until::Short).await {
                    Ok(0) => idle_poll = (idle_poll * 2).min(poll * IDLE_POLL_FACTOR),
                    Ok(_) => idle_poll = poll,
                    Err(error) => {
                        idle_poll = poll;
                        tracing::warn!(
                            schema = core.schema,
                            error = format!("{error:#}"),
                            "outbox round failed"
                        );
                    }
                }
                tokio::select! {
                    () = wake.notified() => idle_poll = poll,
                    () = tokio::time::sleep(idle_poll) => {}
                    () = lifecycle::stopped(&mut stop) => break,
                }
            }
            // Last flush on the way out, so what the consumers wrote while draining is sent.
            core.drain(Until::Empty)
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
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

        if let Some(window) = self.core.bus.settings().outbox_replay_window {
            let purger = purge_until_stopped(
                self.core.pool.clone(),
                self.core.schema,
                window,
                self.stop.clone(),
            );
            ctx.spawn(purger.into_actor(self));
        }
    }
}

/// [`purge_sent`] every [`PURGE_EVERY`] until a stop is requested; on a clock of its own so
/// the publish rounds never wait for it.
async fn purge_until_stopped(
    pool: chukan_db::Pool,
    schema: &'static str,
    window: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let purged = async {
            let client = pool.get().await.context("outbox purge: no connection")?;
            anyhow::Ok(purge_sent(&**client, schema, window).await?)
        }
        .await;
        match purged {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(schema, rows, "kept outbox rows purged"),
            Err(error) => tracing::warn!(
                schema,
                error = format!("{error:#}"),
                "kept outbox rows could not be purged"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(PURGE_EVERY) => {}
            () = lifecycle::stopped(&mut stop) => break,
        }
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
    if bus.settings().outbox_replay_window.is_some() && bus.outbox_seal().is_none() {
        tracing::warn!(
            schema,
            "amqp.outbox_replay_window is set but the bus has no outbox seal (built from \
             crypto.kek): published messages are deleted at once, and a failover cannot \
             replay them"
        );
    }
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
        self.core.drain(Until::Empty).await
    }

    /// The relay as a worker stopped in the last stage (after consumers), flushing first.
    pub fn into_worker(self, name: &str) -> Worker {
        lifecycle::worker(name, StopStage::Outbox, self.stop, self.done)
    }
}
