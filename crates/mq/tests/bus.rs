#![allow(clippy::unwrap_used, clippy::expect_used)]
//! chukan-mq against the machine's RabbitMQ and PostgreSQL. Each test has its own database
//! and its own AMQP namespace, so tests run in parallel.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chukan_config::{AmqpSettings, DatabaseSettings, Settings};
use chukan_crypto::OutboxSeal;
use chukan_db::{Migrations, Pool};
use chukan_mq::{
    Bus, Delivery, HandleError, Handler, OutgoingMessage, PublishError, QueueSpec, consumer,
    metrics, outbox,
};
use futures_util::{FutureExt as _, future::BoxFuture};
use lapin::{
    options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use uuid::Uuid;

mod embedded {
    refinery::embed_migrations!("tests/mq_migrations");
}

const SCHEMA: &str = "mqtest";

struct TestEnv {
    amqp: AmqpSettings,
    /// The bus's outbox seal, as a service's is (from `crypto.kek`).
    seal: OutboxSeal,
    bus: Bus,
    pool: Pool,
    dbname: String,
    queues: Vec<QueueSpec>,
}

impl TestEnv {
    async fn new() -> TestEnv {
        let defaults = Settings::load_with(None, Vec::new()).unwrap();
        let mut amqp = defaults.amqp;
        amqp.namespace = format!("t{}.", Uuid::new_v4().simple());
        amqp.retry_delays_ms = vec![50, 50];
        // Backlog gauges refresh quickly, so a test waits on them, not on a 15 s period.
        amqp.backlog_sample = Duration::from_millis(100);
        // The per-run test vhost when scripts/test provides one. Queues stay quorum here:
        // these tests exercise the production topology (and delete what they declare).
        if let Ok(url) = std::env::var("CHUKAN_TEST_AMQP") {
            amqp.url = url;
        }
        let mut database: DatabaseSettings = defaults.database;
        let dbname = format!("t_{}", Uuid::new_v4().simple());
        database.url = format!("postgres://postgres@127.0.0.1:5432/{dbname}");
        chukan_db::migrate(
            &database,
            &[Migrations {
                schema: SCHEMA,
                runner: embedded::migrations::runner,
            }],
        )
        .await
        .unwrap();
        let pool = chukan_db::app_pool(&database).unwrap();
        let seal = OutboxSeal::from_settings(&defaults.crypto).unwrap();
        let bus = Bus::connect(&amqp)
            .await
            .unwrap()
            .with_outbox_seal(seal.clone());
        bus.declare_topology().await.unwrap();
        TestEnv {
            amqp,
            seal,
            bus,
            pool,
            dbname,
            queues: Vec::new(),
        }
    }

    async fn queue(&mut self, name: &str, binding: &str) -> QueueSpec {
        let spec = QueueSpec::new(name, &[binding]);
        self.bus.declare_queue(&spec).await.unwrap();
        self.queues.push(spec.clone());
        spec
    }

    fn qualified(&self, spec: &QueueSpec) -> String {
        spec.queue_name(self.bus.namespace())
    }

    /// Ready messages in a queue (unacked ones are not counted).
    async fn depth(&self, queue: &str) -> u32 {
        let channel = self.bus.channel().await.unwrap();
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = channel.close(200, "".into()).await;
        declared.message_count()
    }

    async fn counter(&self, name: &str) -> i32 {
        let client = self.pool.get().await.unwrap();
        client
            .query_opt(
                "SELECT value FROM mqtest.counters WHERE name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .map_or(0, |row| row.get(0))
    }

    async fn inbox_rows(&self, consumer: &str) -> i64 {
        let client = self.pool.get().await.unwrap();
        client
            .query_one(
                "SELECT count(*) FROM mqtest.inbox WHERE consumer = $1",
                &[&consumer],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn cleanup(self) {
        let channel = self.bus.channel().await.unwrap();
        let ns = self.bus.namespace().to_owned();
        for spec in &self.queues {
            let mut names = vec![spec.queue_name(&ns), spec.dead_queue_name(&ns)];
            names.extend(
                (0..self.amqp.retry_delays_ms.len()).map(|i| spec.retry_queue_name(&ns, i)),
            );
            for name in names {
                let _ = channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for exchange in [self.bus.exchange(), self.bus.dead_letter_exchange()] {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), Default::default())
                .await;
        }
        self.bus.close().await;
        self.pool.close();
        let (admin, conn) = tokio_postgres::connect(
            "postgres://postgres@127.0.0.1:5432/postgres",
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.dbname
            ))
            .await;
    }
}

/// Polls `condition` until it holds or `timeout` passes.
async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const WAIT: Duration = Duration::from_secs(20);

/// Applies the effect "increment counter `name`" exactly once per message id.
struct CountOnce {
    pool: Pool,
    consumer: &'static str,
    counter: &'static str,
    calls: Arc<AtomicUsize>,
    /// When set, the first call commits and then never returns (a consumer that dies
    /// between its commit and its ack).
    hang_first: bool,
}

impl Handler for CountOnce {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let pool = self.pool.clone();
        let consumer = self.consumer;
        let counter = self.counter;
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let hang = self.hang_first && call == 0;
        async move {
            let mut client = pool.get().await.map_err(|e| HandleError::Retry(e.into()))?;
            // The opening every consumer uses: tenant transaction + inbox claim.
            if let Some(tx) = delivery.claim(&mut client, SCHEMA, consumer).await? {
                tx.execute(
                    "INSERT INTO mqtest.counters (name, value) VALUES ($1, 1)
                     ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
                    &[&counter],
                )
                .await
                .map_err(|e| HandleError::Retry(e.into()))?;
                tx.commit()
                    .await
                    .map_err(|e| HandleError::Retry(e.into()))?;
            }
            if hang {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
        .boxed()
    }
}

#[actix_rt::test]
async fn duplicate_delivery_has_one_effect() {
    let mut env = TestEnv::new().await;
    let spec = env.queue("dup.in", "dup.event").await;
    let queue = env.qualified(&spec);
    let calls = Arc::new(AtomicUsize::new(0));
    let handle = consumer::start(
        &env.bus,
        &spec,
        "dup-test",
        env.amqp.prefetch,
        Arc::new(CountOnce {
            pool: env.pool.clone(),
            consumer: "dup",
            counter: "effect",
            calls: calls.clone(),
            hang_first: false,
        }),
    );

    let publisher = env.bus.publisher().await.unwrap();
    let message = OutgoingMessage::new("tenant-a", "dup.event", b"hello".to_vec());
    publisher.publish(&message).await.unwrap();
    publisher.publish(&message).await.unwrap();

    wait_until(WAIT, "both deliveries acked", || async {
        metrics::consumed(&queue, "ok") == 2
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(env.counter("effect").await, 1);
    assert_eq!(env.inbox_rows("dup").await, 1);
    assert_eq!(env.depth(&queue).await, 0);

    handle.stop().await;
    env.cleanup().await;
}

#[actix_rt::test]
async fn consumer_killed_between_effect_and_ack_is_redelivered_without_a_second_effect() {
    let mut env = TestEnv::new().await;
    let spec = env.queue("crash.in", "crash.event").await;
    let queue = env.qualified(&spec);
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = |hang_first| {
        Arc::new(CountOnce {
            pool: env.pool.clone(),
            consumer: "crash",
            counter: "effect",
            calls: calls.clone(),
            hang_first,
        })
    };

    // The doomed consumer has its own connection, as a separate process would.
    let doomed_bus = Bus::connect(&env.amqp).await.unwrap();
    let _doomed = consumer::start(&doomed_bus, &spec, "doomed", 1, handler(true));

    let message = OutgoingMessage::new("tenant-a", "crash.event", b"once".to_vec());
    env.bus
        .publisher()
        .await
        .unwrap()
        .publish(&message)
        .await
        .unwrap();

    wait_until(WAIT, "the effect committed", || async {
        env.counter("effect").await == 1
    })
    .await;
    assert_eq!(
        metrics::consumed(&queue, "ok"),
        0,
        "the first delivery must not be acked"
    );
    // The crash: the process's connection goes away with the delivery unacked.
    doomed_bus.close().await;

    let survivor = consumer::start(&env.bus, &spec, "survivor", 1, handler(false));
    wait_until(WAIT, "the redelivery acked", || async {
        metrics::consumed(&queue, "ok") == 1
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "delivered twice");
    assert_eq!(env.counter("effect").await, 1, "applied once");
    assert_eq!(env.inbox_rows("crash").await, 1);
    assert_eq!(env.depth(&queue).await, 0);

    survivor.stop().await;
    env.cleanup().await;
}

#[actix_rt::test]
async fn publisher_crash_between_commit_and_publish_still_publishes() {
    let mut env = TestEnv::new().await;
    let spec = env.queue("outbox.in", "outbox.event").await;
    let queue = env.qualified(&spec);

    // The service commits its change and its message, then "crashes": no relay is running.
    let message = OutgoingMessage::new("tenant-a", "outbox.event", b"state changed".to_vec());
    {
        let mut client = env.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.execute(
            "INSERT INTO mqtest.counters (name, value) VALUES ('state', 1)",
            &[],
        )
        .await
        .unwrap();
        outbox::enqueue(&tx, SCHEMA, &message).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(env.depth(&queue).await, 0);

    // After the restart a fresh relay finds the row and publishes it.
    let relay = outbox::start(
        env.pool.clone(),
        SCHEMA,
        env.bus.clone(),
        Duration::from_millis(100),
    );
    let channel = env.bus.channel().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let got = loop {
        if let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            break message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the message"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(got.delivery.data, b"state changed");
    let envelope = chukan_mq::Envelope::from_properties(&got.delivery.properties).unwrap();
    assert_eq!(envelope.id, message.id);
    assert_eq!(envelope.tenant, "tenant-a");
    assert_eq!(envelope.attempt, 0);
    assert_eq!(got.delivery.properties.delivery_mode(), &Some(2));

    let pool = env.pool.clone();
    wait_until(WAIT, "an empty outbox", || {
        let pool = pool.clone();
        async move {
            let client = pool.get().await.unwrap();
            let n: i64 = client
                .query_one("SELECT count(*) FROM mqtest.outbox", &[])
                .await
                .unwrap()
                .get(0);
            n == 0
        }
    })
    .await;

    // Flush and stop publish what is written later, without waiting for a poll.
    let later = OutgoingMessage::new("tenant-a", "outbox.event", b"later".to_vec());
    {
        let client = env.pool.get().await.unwrap();
        outbox::enqueue(&client, SCHEMA, &later).await.unwrap();
    }
    relay.flush().await.unwrap();
    assert_eq!(env.depth(&queue).await, 1);
    let worker = relay.into_worker("outbox-mqtest");
    (worker.stop)().await;
    worker.finished.await.unwrap();

    env.cleanup().await;
}

/// Always fails; records the attempt header of every delivery.
fn failing(attempts: Arc<Mutex<Vec<u32>>>, reject: bool) -> Arc<dyn Handler> {
    Arc::new(move |delivery: Delivery| {
        attempts.lock().unwrap().push(delivery.attempt);
        async move {
            let error = anyhow::anyhow!("always fails");
            Err(if reject {
                HandleError::Reject(error)
            } else {
                HandleError::Retry(error)
            })
        }
        .boxed()
    })
}

#[actix_rt::test]
async fn retries_then_dead_letters_and_reject_goes_straight_to_dead() {
    let mut env = TestEnv::new().await;
    let retry_spec = env.queue("retry.in", "retry.event").await;
    let reject_spec = env.queue("reject.in", "reject.event").await;
    let retry_attempts = Arc::new(Mutex::new(Vec::new()));
    let reject_attempts = Arc::new(Mutex::new(Vec::new()));
    let retrying = consumer::start(
        &env.bus,
        &retry_spec,
        "retry",
        4,
        failing(retry_attempts.clone(), false),
    );
    let rejecting = consumer::start(
        &env.bus,
        &reject_spec,
        "reject",
        4,
        failing(reject_attempts.clone(), true),
    );

    let publisher = env.bus.publisher().await.unwrap();
    publisher
        .publish(&OutgoingMessage::new(
            "tenant-a",
            "retry.event",
            b"r".to_vec(),
        ))
        .await
        .unwrap();
    publisher
        .publish(&OutgoingMessage::new(
            "tenant-a",
            "reject.event",
            b"x".to_vec(),
        ))
        .await
        .unwrap();

    let ns = env.bus.namespace().to_owned();
    let retry_dead = retry_spec.dead_queue_name(&ns);
    let reject_dead = reject_spec.dead_queue_name(&ns);
    wait_until(WAIT, "the retried message dead-lettered", || async {
        env.depth(&retry_dead).await == 1
    })
    .await;
    wait_until(WAIT, "the rejected message dead-lettered", || async {
        env.depth(&reject_dead).await == 1
    })
    .await;

    assert_eq!(*retry_attempts.lock().unwrap(), vec![0, 1, 2]);
    assert_eq!(*reject_attempts.lock().unwrap(), vec![0]);
    let retry_queue = retry_spec.queue_name(&ns);
    let reject_queue = reject_spec.queue_name(&ns);
    assert_eq!(metrics::consumed(&retry_queue, "retried"), 2);
    assert_eq!(metrics::dead_lettered(&retry_queue), 1);
    assert_eq!(metrics::dead_lettered(&reject_queue), 1);
    assert_eq!(env.depth(&retry_queue).await, 0);

    // The dead letter keeps its id and its last attempt number.
    let channel = env.bus.channel().await.unwrap();
    let dead = channel
        .basic_get(retry_dead.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    let envelope = chukan_mq::Envelope::from_properties(&dead.delivery.properties).unwrap();
    assert_eq!(envelope.attempt, 2);

    retrying.stop().await;
    rejecting.stop().await;
    env.cleanup().await;
}

/// Panics on every delivery; records the attempt header of each.
fn panicking(attempts: Arc<Mutex<Vec<u32>>>) -> Arc<dyn Handler> {
    Arc::new(move |delivery: Delivery| {
        attempts.lock().unwrap().push(delivery.attempt);
        async move { panic!("a defect in the handler") }.boxed()
    })
}

#[actix_rt::test]
async fn a_panicking_handler_leaves_no_delivery_unacknowledged() {
    let mut env = TestEnv::new().await;
    let spec = env.queue("panic.in", "panic.event").await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let consuming = consumer::start(&env.bus, &spec, "panic", 4, panicking(attempts.clone()));
    let publisher = env.bus.publisher().await.unwrap();
    publisher
        .publish(&OutgoingMessage::new(
            "tenant-a",
            "panic.event",
            b"p".to_vec(),
        ))
        .await
        .unwrap();

    // Settled every time (retried through each delay, then dead-lettered), never held.
    let ns = env.bus.namespace().to_owned();
    let dead = spec.dead_queue_name(&ns);
    wait_until(WAIT, "the panicking delivery dead-lettered", || async {
        env.depth(&dead).await == 1
    })
    .await;
    assert_eq!(*attempts.lock().unwrap(), vec![0, 1, 2]);
    let queue = spec.queue_name(&ns);
    assert_eq!(metrics::handler_panics(&queue), 3);
    assert_eq!(metrics::dead_lettered(&queue), 1);
    assert_eq!(env.depth(&queue).await, 0);

    // The consumer survived its handler's panics: a second message is handled too.
    publisher
        .publish(&OutgoingMessage::new(
            "tenant-a",
            "panic.event",
            b"q".to_vec(),
        ))
        .await
        .unwrap();
    wait_until(WAIT, "the second delivery dead-lettered too", || async {
        env.depth(&dead).await == 2
    })
    .await;
    consuming.stop().await;
    env.cleanup().await;
}

#[actix_rt::test]
async fn unroutable_publish_is_an_error_not_a_silent_loss() {
    let mut env = TestEnv::new().await;
    env.queue("routed.in", "routed.event").await;
    let publisher = env.bus.publisher().await.unwrap();

    publisher
        .publish(&OutgoingMessage::new(
            "tenant-a",
            "routed.event",
            b"ok".to_vec(),
        ))
        .await
        .unwrap();
    let error = publisher
        .publish(&OutgoingMessage::new(
            "tenant-a",
            "nobody.listens",
            b"lost?".to_vec(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PublishError::Unroutable {
                reply_code: 312,
                ..
            }
        ),
        "{error:?}"
    );

    // The channel stays usable after a return.
    publisher
        .publish(&OutgoingMessage::new(
            "tenant-a",
            "routed.event",
            b"ok".to_vec(),
        ))
        .await
        .unwrap();
    assert!(env.bus.is_healthy().await);
    env.cleanup().await;
}

/// Known gap (see the report): with lapin 4.12 the consumer stream does not end when the
/// broker cancels the subscription (queue deleted), so the actor never notices. Connection
/// and channel loss take the reconnect path; this case does not yet.
#[ignore = "lapin 4.12 consumer stream does not end on a broker-initiated basic.cancel"]
#[actix_rt::test]
async fn consumer_resumes_after_losing_its_subscription() {
    let mut env = TestEnv::new().await;
    let spec = env.queue("resume.in", "resume.event").await;
    let queue = env.qualified(&spec);
    let calls = Arc::new(AtomicUsize::new(0));
    let handle = consumer::start(
        &env.bus,
        &spec,
        "resume",
        4,
        Arc::new(CountOnce {
            pool: env.pool.clone(),
            consumer: "resume",
            counter: "effect",
            calls: calls.clone(),
            hang_first: false,
        }),
    );
    let publisher = env.bus.publisher().await.unwrap();
    publisher
        .publish(&OutgoingMessage::new("t", "resume.event", b"1".to_vec()))
        .await
        .unwrap();
    wait_until(WAIT, "the first message", || async {
        metrics::consumed(&queue, "ok") == 1
    })
    .await;

    // Deleting the queue makes the broker cancel the subscription, as a lost node would.
    let channel = env.bus.channel().await.unwrap();
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    env.bus.declare_queue(&spec).await.unwrap();
    publisher
        .publish(&OutgoingMessage::new("t", "resume.event", b"2".to_vec()))
        .await
        .unwrap();
    wait_until(WAIT, "the message after resuming", || async {
        metrics::consumed(&queue, "ok") == 2
    })
    .await;
    assert_eq!(env.counter("effect").await, 2);

    handle.stop().await;
    env.cleanup().await;
}

#[actix_rt::test]
async fn the_relay_reports_its_outbox_backlog_and_age_and_the_inbox_size() {
    let mut env = TestEnv::new().await;
    // Nothing is bound to this key yet: the relay cannot publish the row, which stays.
    let stuck = OutgoingMessage::new("tenant-a", "gauges.event", b"stuck".to_vec());
    {
        let mut client = env.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        outbox::enqueue(&tx, SCHEMA, &stuck).await.unwrap();
        // As if written a minute ago.
        tx.execute(
            "UPDATE mqtest.outbox SET created_at = now() - interval '60 seconds'",
            &[],
        )
        .await
        .unwrap();
        for _ in 0..3 {
            chukan_mq::inbox::claim(&tx, SCHEMA, "gauges", Uuid::now_v7())
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let relay = outbox::start(
        env.pool.clone(),
        SCHEMA,
        env.bus.clone(),
        Duration::from_millis(100),
    );
    wait_until(WAIT, "the relay's sample of a waiting row", || async {
        metrics::outbox_backlog(SCHEMA) == 1
            && metrics::outbox_oldest_age_seconds(SCHEMA) >= 60.0
            && metrics::inbox_rows(SCHEMA) == 3
    })
    .await;

    // Once a queue is bound the row goes out, and the sample shows an empty outbox.
    env.queue("gauges.in", "gauges.event").await;
    wait_until(WAIT, "the relay's sample of an empty outbox", || async {
        metrics::outbox_backlog(SCHEMA) == 0 && metrics::outbox_oldest_age_seconds(SCHEMA) == 0.0
    })
    .await;
    assert_eq!(metrics::inbox_rows(SCHEMA), 3);

    // With statistics the inbox is estimated from them instead of counted.
    let (owner, conn) = tokio_postgres::connect(
        &format!("postgres://postgres@127.0.0.1:5432/{}", env.dbname),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    owner.batch_execute("ANALYZE mqtest.inbox").await.unwrap();
    outbox::sample(&env.pool, SCHEMA).await.unwrap();
    assert_eq!(metrics::inbox_rows(SCHEMA), 3);

    let worker = relay.into_worker("outbox-mqtest");
    (worker.stop)().await;
    env.cleanup().await;
}

#[actix_rt::test]
async fn a_schema_without_a_relay_reports_its_inbox_through_a_sampler() {
    let env = TestEnv::new().await;
    {
        let client = env.pool.get().await.unwrap();
        for _ in 0..2 {
            chukan_mq::inbox::claim(&client, SCHEMA, "sampled", Uuid::now_v7())
                .await
                .unwrap();
        }
    }
    let worker = outbox::sample_worker(
        "backlog-mqtest",
        env.pool.clone(),
        SCHEMA,
        Duration::from_millis(100),
    );
    wait_until(WAIT, "the sampler's report", || async {
        metrics::inbox_rows(SCHEMA) == 2 && metrics::outbox_backlog(SCHEMA) == 0
    })
    .await;
    (worker.stop)().await;
    worker.finished.await.unwrap();
    env.cleanup().await;
}

#[actix_rt::test]
async fn consumers_report_their_queue_and_dead_letter_depths() {
    let mut env = TestEnv::new().await;
    let held_spec = env.queue("depth.held", "depth.held").await;
    let rejected_spec = env.queue("depth.rejected", "depth.rejected").await;
    // One delivery at a time, each held until the gate closes: the rest wait in the queue.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let holding = consumer::start(&env.bus, &held_spec, "depth", 1, {
        let gate = gate.clone();
        Arc::new(move |_: Delivery| {
            let gate = gate.clone();
            async move {
                // Err once closed: the handler is let go.
                let _ = gate.acquire().await;
                Ok(())
            }
            .boxed()
        })
    });
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let rejecting = consumer::start(
        &env.bus,
        &rejected_spec,
        "depth",
        4,
        failing(attempts.clone(), true),
    );

    let publisher = env.bus.publisher().await.unwrap();
    for key in [
        "depth.held",
        "depth.held",
        "depth.held",
        "depth.rejected",
        "depth.rejected",
    ] {
        publisher
            .publish(&OutgoingMessage::new("tenant-a", key, b"d".to_vec()))
            .await
            .unwrap();
    }
    // Labelled with the work queue's unqualified name.
    wait_until(WAIT, "two held-back messages reported waiting", || async {
        metrics::queue_messages("depth.held") == 2
    })
    .await;
    wait_until(WAIT, "two rejected messages reported dead", || async {
        metrics::dead_letter_messages("depth.rejected") == 2
            && metrics::queue_messages("depth.rejected") == 0
    })
    .await;
    assert_eq!(metrics::dead_letter_messages("depth.held"), 0);

    gate.close();
    wait_until(WAIT, "the drained queue reported empty", || async {
        metrics::queue_messages("depth.held") == 0
    })
    .await;

    holding.stop().await;
    rejecting.stop().await;
    env.cleanup().await;
}

/// Rows in `mqtest.{table}`.
async fn rows(pool: &Pool, table: &str) -> i64 {
    let client = pool.get().await.unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM mqtest.{table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// The ids in `mqtest.outbox_sent`, sorted.
async fn kept_ids(pool: &Pool) -> Vec<Uuid> {
    let client = pool.get().await.unwrap();
    client
        .query("SELECT id FROM mqtest.outbox_sent ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Commits `msgs` to the outbox in one transaction.
async fn enqueue_committed(pool: &Pool, msgs: &[OutgoingMessage]) {
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    outbox::enqueue_all(&tx, SCHEMA, msgs).await.unwrap();
    tx.commit().await.unwrap();
}

/// Takes `n` messages off `queue` (acknowledged as taken) and returns their message ids, sorted.
async fn take_ids(bus: &Bus, queue: &str, n: usize) -> Vec<Uuid> {
    take(bus, queue, n)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Takes `n` messages off `queue` (acknowledged as taken): (message id, body), sorted by id.
async fn take(bus: &Bus, queue: &str, n: usize) -> Vec<(Uuid, Vec<u8>)> {
    let channel = bus.channel().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut taken = Vec::new();
    while taken.len() < n {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(got) => taken.push((
                chukan_mq::Envelope::from_properties(&got.delivery.properties)
                    .unwrap()
                    .id,
                got.delivery.data,
            )),
            None => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out waiting for {n} messages on {queue}, got {}",
                    taken.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let _ = channel.close(200, "".into()).await;
    taken.sort();
    taken
}

/// The bodies kept in `mqtest.outbox_sent`, by id.
async fn kept_bodies(pool: &Pool) -> Vec<(Uuid, Vec<u8>)> {
    let client = pool.get().await.unwrap();
    client
        .query("SELECT id, body FROM mqtest.outbox_sent ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn sorted_ids(msgs: &[OutgoingMessage]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = msgs.iter().map(|m| m.id).collect();
    ids.sort();
    ids
}

async fn stop_relay(relay: outbox::OutboxHandle) {
    let worker = relay.into_worker("outbox-mqtest");
    (worker.stop)().await;
    worker.finished.await.unwrap();
}

#[actix_rt::test]
async fn with_a_replay_window_a_confirmed_row_is_kept_in_outbox_sent() {
    let mut env = TestEnv::new().await;
    assert!(
        env.amqp.outbox_replay_window.is_some(),
        "the default keeps rows"
    );
    let spec = env.queue("kept.in", "kept.event").await;
    let queue = env.qualified(&spec);
    let message = OutgoingMessage::new("tenant-a", "kept.event", b"kept".to_vec());
    enqueue_committed(&env.pool, std::slice::from_ref(&message)).await;

    let relay = outbox::start(
        env.pool.clone(),
        SCHEMA,
        env.bus.clone(),
        Duration::from_millis(100),
    );
    assert_eq!(take_ids(&env.bus, &queue, 1).await, vec![message.id]);
    let pool = env.pool.clone();
    wait_until(WAIT, "the row to move from outbox to outbox_sent", || {
        let pool = pool.clone();
        async move { rows(&pool, "outbox").await == 0 && rows(&pool, "outbox_sent").await == 1 }
    })
    .await;
    let client = env.pool.get().await.unwrap();
    let kept = client
        .query_one(
            "SELECT id, tenant_id, routing_key, body, sent_at >= created_at
               FROM mqtest.outbox_sent",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(kept.get::<_, Uuid>(0), message.id);
    assert_eq!(kept.get::<_, String>(1), "tenant-a");
    assert_eq!(kept.get::<_, String>(2), "kept.event");
    // Kept sealed (the body may carry personal data), never as published.
    let body = kept.get::<_, Vec<u8>>(3);
    assert!(body.len() > b"kept".len());
    assert!(!body.windows(4).any(|w| w == b"kept"));
    assert!(kept.get::<_, bool>(4));
    drop(client);
    // The relay's sample counts what it keeps.
    wait_until(
        WAIT,
        "chukan_outbox_sent_rows to show the kept row",
        || async { metrics::outbox_sent_rows(SCHEMA) == 1 },
    )
    .await;

    stop_relay(relay).await;
    env.cleanup().await;
}

#[actix_rt::test]
async fn without_a_replay_window_a_confirmed_row_is_deleted() {
    let mut env = TestEnv::new().await;
    let spec = env.queue("gone.in", "gone.event").await;
    let queue = env.qualified(&spec);
    let mut amqp = env.amqp.clone();
    amqp.outbox_replay_window = None;
    let bus = Bus::connect(&amqp).await.unwrap();
    let message = OutgoingMessage::new("tenant-a", "gone.event", b"gone".to_vec());
    enqueue_committed(&env.pool, std::slice::from_ref(&message)).await;

    let relay = outbox::start(
        env.pool.clone(),
        SCHEMA,
        bus.clone(),
        Duration::from_secs(3600),
    );
    assert_eq!(relay.flush().await.unwrap(), 1);
    assert_eq!(take_ids(&env.bus, &queue, 1).await, vec![message.id]);
    assert_eq!(rows(&env.pool, "outbox").await, 0);
    assert_eq!(rows(&env.pool, "outbox_sent").await, 0);

    stop_relay(relay).await;
    bus.close().await;
    env.cleanup().await;
}

#[actix_rt::test]
async fn a_bus_without_an_outbox_seal_keeps_nothing_even_with_a_window() {
    let mut env = TestEnv::new().await;
    assert!(env.amqp.outbox_replay_window.is_some());
    let spec = env.queue("unsealed.in", "unsealed.event").await;
    let queue = env.qualified(&spec);
    // No seal: a published body must not be kept in the clear, so it is not kept at all.
    let bus = Bus::connect(&env.amqp).await.unwrap();
    assert!(bus.outbox_seal().is_none());
    let message = OutgoingMessage::new("tenant-a", "unsealed.event", b"unsealed".to_vec());
    enqueue_committed(&env.pool, std::slice::from_ref(&message)).await;

    let relay = outbox::start(
        env.pool.clone(),
        SCHEMA,
        bus.clone(),
        Duration::from_secs(3600),
    );
    assert_eq!(relay.flush().await.unwrap(), 1);
    assert_eq!(take_ids(&env.bus, &queue, 1).await, vec![message.id]);
    assert_eq!(rows(&env.pool, "outbox").await, 0);
    assert_eq!(rows(&env.pool, "outbox_sent").await, 0);

    stop_relay(relay).await;
    bus.close().await;
    env.cleanup().await;
}

#[actix_rt::test]
async fn kept_bodies_are_sealed_and_only_the_cells_kek_replays_them() {
    let mut env = TestEnv::new().await;
    let spec = env.queue("sealed.in", "sealed.event").await;
    let queue = env.qualified(&spec);
    // Bodies as personal as the services' (an addressee number, a resident-record code).
    let messages: Vec<OutgoingMessage> = ["123456789012", "987654321098"]
        .iter()
        .map(|number| {
            OutgoingMessage::new(
                "tenant-a",
                "sealed.event",
                format!(r#"{{"addressee":"{number}"}}"#).into_bytes(),
            )
        })
        .collect();
    let mut published: Vec<(Uuid, Vec<u8>)> =
        messages.iter().map(|m| (m.id, m.body.clone())).collect();
    published.sort();
    enqueue_committed(&env.pool, &messages).await;
    let relay = outbox::start(
        env.pool.clone(),
        SCHEMA,
        env.bus.clone(),
        Duration::from_secs(3600),
    );
    assert_eq!(relay.flush().await.unwrap(), 2);
    assert_eq!(take(&env.bus, &queue, 2).await, published);

    // Kept under the same ids, neither body in the clear.
    let kept = kept_bodies(&env.pool).await;
    assert_eq!(
        kept.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        sorted_ids(&messages)
    );
    for (_, body) in &kept {
        for number in ["123456789012", "987654321098"] {
            assert!(
                !body.windows(number.len()).any(|w| w == number.as_bytes()),
                "a kept body holds an addressee number in the clear"
            );
        }
    }

    // Another cell's KEK opens nothing, names the row (never its content), moves nothing.
    let stranger = OutboxSeal::from_base64(&chukan_crypto::generate_key_base64()).unwrap();
    let client = env.pool.get().await.unwrap();
    let refused = outbox::replay_sent(&client, SCHEMA, &stranger)
        .await
        .unwrap_err();
    match &refused {
        outbox::ReplayError::Unopenable { schema, id } => {
            assert_eq!(schema, SCHEMA);
            assert!(kept.iter().any(|(kept_id, _)| kept_id == id));
        }
        other => panic!("expected an unopenable row, got {other:?}"),
    }
    let said = refused.to_string();
    assert!(
        said.contains(SCHEMA) && !said.contains("addressee"),
        "{said}"
    );
    assert_eq!(rows(&env.pool, "outbox").await, 0);
    assert_eq!(
        kept_bodies(&env.pool).await,
        kept,
        "nothing moved or altered"
    );
    // The session is usable again (the chunk's transaction was rolled back).
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    // The cell's own KEK (the standby slot holds it in escrow) re-publishes the originals.
    assert_eq!(
        outbox::replay_sent(&client, SCHEMA, &env.seal)
            .await
            .unwrap(),
        2
    );
    drop(client);
    assert_eq!(rows(&env.pool, "outbox_sent").await, 0);
    let client = env.pool.get().await.unwrap();
    let replayed: Vec<Vec<u8>> = client
        .query("SELECT body FROM mqtest.outbox ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    drop(client);
    assert_eq!(
        replayed,
        published.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
        "the outbox holds the original bodies again"
    );
    assert_eq!(relay.flush().await.unwrap(), 2);
    assert_eq!(
        take(&env.bus, &queue, 2).await,
        published,
        "same ids, same bodies"
    );
    assert_eq!(env.depth(&queue).await, 0, "and nothing else");

    stop_relay(relay).await;
    env.cleanup().await;
}

#[actix_rt::test]
async fn replayed_rows_are_published_again_under_their_own_ids() {
    let mut env = TestEnv::new().await;
    let spec = env.queue("replay.in", "replay.event").await;
    let queue = env.qualified(&spec);
    let messages: Vec<OutgoingMessage> = (0..3)
        .map(|i| OutgoingMessage::new("tenant-a", "replay.event", format!("m{i}").into_bytes()))
        .collect();
    enqueue_committed(&env.pool, &messages).await;
    let relay = outbox::start(
        env.pool.clone(),
        SCHEMA,
        env.bus.clone(),
        Duration::from_secs(3600),
    );
    assert_eq!(relay.flush().await.unwrap(), 3);
    let first = take_ids(&env.bus, &queue, 3).await;
    assert_eq!(first, sorted_ids(&messages));
    assert_eq!(kept_ids(&env.pool).await, first);

    // As the failover does on the promoted cluster.
    let client = env.pool.get().await.unwrap();
    assert_eq!(
        outbox::replay_sent(&client, SCHEMA, &env.seal)
            .await
            .unwrap(),
        3
    );
    drop(client);
    assert_eq!(rows(&env.pool, "outbox").await, 3);
    assert_eq!(rows(&env.pool, "outbox_sent").await, 0);

    assert_eq!(relay.flush().await.unwrap(), 3);
    let again = take_ids(&env.bus, &queue, 3).await;
    assert_eq!(again, first, "the replay re-publishes the same message ids");
    assert_eq!(env.depth(&queue).await, 0, "and nothing else");
    // Published again, so kept again for the next window.
    assert_eq!(kept_ids(&env.pool).await, first);

    // Nothing kept: nothing to replay.
    let client = env.pool.get().await.unwrap();
    client
        .batch_execute("DELETE FROM mqtest.outbox_sent")
        .await
        .unwrap();
    assert_eq!(
        outbox::replay_sent(&client, SCHEMA, &env.seal)
            .await
            .unwrap(),
        0
    );
    drop(client);

    stop_relay(relay).await;
    env.cleanup().await;
}

#[actix_rt::test]
async fn the_relay_purges_kept_rows_older_than_the_window() {
    let mut env = TestEnv::new().await;
    env.queue("purge.in", "purge.event").await;
    let window = env.amqp.outbox_replay_window.unwrap();
    let old = OutgoingMessage::new("tenant-a", "purge.event", b"old".to_vec());
    let recent = OutgoingMessage::new("tenant-a", "purge.event", b"recent".to_vec());
    enqueue_committed(&env.pool, &[old.clone(), recent.clone()]).await;
    let relay = outbox::start(
        env.pool.clone(),
        SCHEMA,
        env.bus.clone(),
        Duration::from_secs(3600),
    );
    assert_eq!(relay.flush().await.unwrap(), 2);
    assert_eq!(rows(&env.pool, "outbox_sent").await, 2);

    // One row sent a minute before the window began, the other just now.
    let client = env.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE mqtest.outbox_sent
                SET sent_at = now() - make_interval(secs => $1) - interval '60 seconds'
              WHERE id = $2",
            &[&window.as_secs_f64(), &old.id],
        )
        .await
        .unwrap();
    drop(client);

    let pool = env.pool.clone();
    wait_until(WAIT, "the relay to purge the row past the window", || {
        let pool = pool.clone();
        async move { kept_ids(&pool).await == vec![recent.id] }
    })
    .await;

    // The purge itself, called directly: nothing else is past the window.
    let client = env.pool.get().await.unwrap();
    assert_eq!(
        outbox::purge_sent(&**client, SCHEMA, window).await.unwrap(),
        0
    );
    assert_eq!(
        outbox::purge_sent(&**client, SCHEMA, Duration::ZERO)
            .await
            .unwrap(),
        1,
        "a zero window purges what was sent before now"
    );
    drop(client);
    assert_eq!(rows(&env.pool, "outbox_sent").await, 0);

    stop_relay(relay).await;
    env.cleanup().await;
}
