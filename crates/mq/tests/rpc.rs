#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Request/reply (`chukan_mq::rpc`) against the machine's RabbitMQ. Each test has its own
//! AMQP namespace (throw-away classic queues), so tests run in parallel.

use std::{sync::Arc, time::Duration};

use chukan_config::{AmqpSettings, Settings};
use chukan_mq::{
    Bus, QueueSpec,
    rpc::{self, RpcClient, RpcError, RpcHandler},
};
use futures_util::{FutureExt as _, future::BoxFuture};
use uuid::Uuid;

struct Env {
    bus: Bus,
    amqp: AmqpSettings,
}

impl Env {
    async fn new() -> Env {
        let mut amqp = Settings::load_with(None, Vec::new()).unwrap().amqp;
        amqp.namespace = format!("t{}.", Uuid::new_v4().simple());
        if let Ok(url) = std::env::var("CHUKAN_TEST_AMQP") {
            amqp.url = url;
        }
        // Throw-away namespace: cheap classic queues that delete themselves when idle.
        amqp.queue_type = chukan_config::QueueType::Classic;
        amqp.queue_expires = Some(std::time::Duration::from_secs(60));
        let bus = Bus::connect(&amqp).await.unwrap();
        bus.declare_topology().await.unwrap();
        Env { bus, amqp }
    }

    /// Ready messages in a queue.
    async fn depth(&self, queue: &str) -> u32 {
        let channel = self.bus.channel().await.unwrap();
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = channel.close(200, "".into()).await;
        declared.message_count()
    }

    async fn queue(&self, name: &str) -> QueueSpec {
        let spec = QueueSpec::new(name, &[]);
        self.bus.declare_queue(&spec).await.unwrap();
        spec
    }
}

/// Echoes `tenant|body`, after waiting the number of milliseconds the body's first byte says.
fn echo() -> Arc<dyn RpcHandler> {
    Arc::new(
        |tenant: String, body: Vec<u8>| -> BoxFuture<'static, anyhow::Result<Vec<u8>>> {
            async move {
                let wait = u64::from(body.first().copied().unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let mut out = format!("{tenant}|").into_bytes();
                out.extend_from_slice(&body);
                Ok(out)
            }
            .boxed()
        },
    )
}

const CALL: Duration = Duration::from_secs(10);

/// Polls `check` until it holds, failing after 10 s.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_call_gets_its_reply_with_the_tenant_the_caller_named() {
    let env = Env::new().await;
    let spec = env.queue("echo.rpc").await;
    let server = rpc::serve(&env.bus, &spec, "echo", env.amqp.prefetch, echo());
    let client = RpcClient::new(&env.bus);

    let reply = client
        .call("echo.rpc", "1310010000000001", &[0, b'h', b'i'], CALL)
        .await
        .unwrap();
    assert_eq!(reply, b"1310010000000001|\0hi");
    // A second tenant on the same client: the header travels per call.
    let reply = client
        .call("echo.rpc", "2710000000000002", &[0], CALL)
        .await
        .unwrap();
    assert_eq!(reply, b"2710000000000002|\0");
    // A lost reply channel is opened again by the next call.
    client.close().await;
    let reply = client
        .call("echo.rpc", "2710000000000002", &[0, b'!'], CALL)
        .await
        .unwrap();
    assert_eq!(reply, b"2710000000000002|\0!");
    let queue = spec.queue_name(env.bus.namespace());
    assert_eq!(rpc::calls(&queue, "ok"), 3);
    // The server counts a request after acking it, which may be just after the reply arrived.
    wait_until("every request counted as served", || {
        rpc::served(&queue, "ok") == 3
    })
    .await;

    server.stop().await;
    client.close().await;
    env.bus.close().await;
}

#[tokio::test]
async fn a_call_times_out_when_no_server_consumes_the_queue() {
    let env = Env::new().await;
    let spec = env.queue("idle.rpc").await;
    let client = RpcClient::new(&env.bus);

    let started = std::time::Instant::now();
    let err = client
        .call(
            "idle.rpc",
            "1310010000000001",
            b"x",
            Duration::from_millis(1000),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Timeout(_)), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert!(started.elapsed() < Duration::from_secs(5));
    let queue = spec.queue_name(env.bus.namespace());
    assert_eq!(rpc::calls(&queue, "timeout"), 1);
    // The unanswered request waits in the queue.
    assert_eq!(env.depth(&queue).await, 1);

    // A server that starts later skips the stale request (its caller's deadline passed) and
    // answers new ones.
    let server = rpc::serve(&env.bus, &spec, "late", 4, echo());
    let reply = client
        .call("idle.rpc", "1310010000000001", &[0], CALL)
        .await
        .unwrap();
    assert_eq!(reply, b"1310010000000001|\0");
    wait_until("the stale request skipped", || {
        rpc::served(&queue, "expired") == 1
    })
    .await;

    server.stop().await;
    client.close().await;
    env.bus.close().await;
}

#[tokio::test]
async fn a_missing_server_queue_fails_fast() {
    let env = Env::new().await;
    let client = RpcClient::new(&env.bus);
    let started = std::time::Instant::now();
    let err = client
        .call("nobody.rpc", "1310010000000001", b"x", CALL)
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::NoServer(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    client.close().await;
    env.bus.close().await;
}

#[tokio::test]
async fn concurrent_calls_are_matched_by_correlation_id() {
    let env = Env::new().await;
    let spec = env.queue("mixed.rpc").await;
    let server = rpc::serve(&env.bus, &spec, "mixed", 8, echo());
    let client = RpcClient::new(&env.bus);

    // The first call's reply is held back longer, so replies arrive in the other order.
    let slow = client.call("mixed.rpc", "1310010000000001", &[200, b's'], CALL);
    let fast = client.call("mixed.rpc", "2710000000000002", &[0, b'f'], CALL);
    let (slow, fast) = futures_util::join!(slow, fast);
    assert_eq!(slow.unwrap(), b"1310010000000001|\xc8s");
    assert_eq!(fast.unwrap(), b"2710000000000002|\0f");

    // Many at once, each with its own answer.
    let calls = (0u8..20).map(|i| {
        let client = client.clone();
        async move {
            let body = [20 - i, i];
            (
                i,
                client
                    .call("mixed.rpc", "1310010000000001", &body, CALL)
                    .await,
            )
        }
    });
    for (i, reply) in futures_util::future::join_all(calls).await {
        assert_eq!(
            reply.unwrap(),
            [b"1310010000000001|".as_slice(), &[20 - i, i]].concat()
        );
    }

    server.stop().await;
    client.close().await;
    env.bus.close().await;
}

#[tokio::test]
async fn a_failing_handler_is_answered_as_an_error_at_once() {
    let env = Env::new().await;
    let spec = env.queue("broken.rpc").await;
    let handler: Arc<dyn RpcHandler> = Arc::new(
        |_tenant: String, _body: Vec<u8>| -> BoxFuture<'static, anyhow::Result<Vec<u8>>> {
            async { Err(anyhow::anyhow!("store unavailable")) }.boxed()
        },
    );
    let server = rpc::serve(&env.bus, &spec, "broken", 4, handler);
    let client = RpcClient::new(&env.bus);
    let started = std::time::Instant::now();
    let err = client
        .call("broken.rpc", "1310010000000001", b"x", CALL)
        .await
        .unwrap_err();
    match err {
        RpcError::Remote(reason) => assert!(reason.contains("store unavailable"), "{reason}"),
        other => panic!("expected a remote error, got {other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    server.stop().await;
    client.close().await;
    env.bus.close().await;
}
