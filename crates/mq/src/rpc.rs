//! Request/reply over RabbitMQ, for a service that needs another's answer now (self-information
//! asks provision and audit, ARCHITECTURE §3). Requests are read-only, so at-least-once is
//! enough: a request handled twice answers twice, and the second reply finds nobody waiting.
//!
//! Client: requests go through the default exchange to the server's queue (`{ns}<name>`) with
//! `reply_to = amq.rabbitmq.reply-to` and a fresh `correlation_id`; replies come back on that
//! one channel and are matched to their caller through a correlation id → oneshot map.
//! Direct reply-to rather than an exclusive reply queue: nothing to declare or delete, no queue
//! churn on the broker when processes come and go, and the broker drops a reply whose channel
//! is gone, which is exactly what a caller that gave up wants. Its one rule — the client
//! consumes `amq.rabbitmq.reply-to` with no-ack on the channel it publishes on — is kept by
//! [`RpcClient`] owning one such channel per process, re-opened when lost.
//!
//! Server: consumes a queue declared like any other ([`Bus::declare_queue`]), calls the
//! handler with the `tenant` header and the body, publishes the reply to `reply_to` with the
//! correlation id, then acks. A request whose caller's deadline has passed is acked unanswered:
//! nobody is waiting and the work would be wasted.

use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chukan_core::worker::{StopStage, Worker};
use futures_util::{StreamExt as _, future::BoxFuture};
use lapin::{
    BasicProperties, Channel,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions,
        BasicQosOptions, ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use prometheus::{IntCounterVec, Opts};
use tokio::{
    sync::{oneshot, watch},
    task::JoinSet,
};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{Bus, Envelope, QueueSpec, lifecycle, trace};

/// The broker's pseudo-queue for direct reply-to.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Headers only request/reply messages carry.
pub mod header {
    /// On a reply: `ok`, or `error` with a short reason as the body.
    pub const STATUS: &str = "rpc-status";
    /// On a request: Unix milliseconds after which the caller no longer waits.
    pub const DEADLINE: &str = "rpc-deadline-ms";
}

/// Longest wait for in-flight handlers when a server stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between a server's reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("the bus is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error("AMQP error during the call: {0}")]
    Amqp(#[from] lapin::Error),
    /// No queue of that name exists: the server was never deployed or declared.
    #[error("no queue {0} takes requests")]
    NoServer(String),
    /// Nobody answered in time (no server running, or it is slow); safe to try again later.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The server's handler failed; the text is the server's short reason.
    #[error("the server could not answer: {0}")]
    Remote(String),
    /// The reply channel closed while waiting.
    #[error("the reply channel was lost before the reply arrived")]
    Lost,
}

impl RpcError {
    /// A word for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            RpcError::Unavailable(_) | RpcError::Amqp(_) | RpcError::Lost => "unavailable",
            RpcError::NoServer(_) => "no_server",
            RpcError::Timeout(_) => "timeout",
            RpcError::Remote(_) => "remote_error",
        }
    }
}

static CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chukan_mq_rpc_calls_total",
        "Request/reply calls made, by server queue and outcome (ok, timeout, remote_error, no_server, unavailable).",
    )
});

static SERVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chukan_mq_rpc_served_total",
        "Requests a server handled, by queue and outcome (ok, error, expired, malformed).",
    )
});

fn counter(name: &str, help: &str) -> IntCounterVec {
    // Constant names and labels: this cannot fail.
    #[allow(clippy::expect_used)]
    let vec = IntCounterVec::new(Opts::new(name, help), &["queue", "outcome"])
        .expect("valid metric definition");
    // Registering twice (another copy of the crate in a test binary) is harmless.
    let _ = prometheus::default_registry().register(Box::new(vec.clone()));
    vec
}

/// `chukan_mq_rpc_calls_total{queue,outcome}` (tests, diagnostics); `queue` is qualified.
pub fn calls(queue: &str, outcome: &str) -> u64 {
    CALLS.with_label_values(&[queue, outcome]).get()
}

/// `chukan_mq_rpc_served_total{queue,outcome}`; `queue` is qualified.
pub fn served(queue: &str, outcome: &str) -> u64 {
    SERVED.with_label_values(&[queue, outcome]).get()
}

struct Reply {
    ok: bool,
    body: Vec<u8>,
}

/// Callers waiting, by correlation id, with the reply channel generation they were sent on.
type Pending = Arc<Mutex<HashMap<String, (u64, oneshot::Sender<Reply>)>>>;

fn lock(
    pending: &Pending,
) -> std::sync::MutexGuard<'_, HashMap<String, (u64, oneshot::Sender<Reply>)>> {
    // A panic while holding this lock leaves the map consistent (inserts and removes only).
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Makes calls to request/reply servers. Clones share one reply channel.
#[derive(Clone)]
pub struct RpcClient {
    bus: Bus,
    channel: Arc<tokio::sync::Mutex<Option<(Channel, u64)>>>,
    pending: Pending,
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient").finish_non_exhaustive()
    }
}

/// Removes a caller's entry however its call ends (reply, timeout, error, cancellation).
struct PendingGuard {
    pending: Pending,
    id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.id);
    }
}

impl RpcClient {
    /// A client on `bus`; the reply channel opens with the first call.
    pub fn new(bus: &Bus) -> Self {
        RpcClient {
            bus: bus.clone(),
            channel: Arc::new(tokio::sync::Mutex::new(None)),
            pending: Arc::new(Mutex::new(HashMap::new())),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sends `body` for `tenant` to the server consuming `queue` (unqualified, e.g.
    /// `provision.selfinfo-rpc`) and waits up to `timeout` for its reply.
    pub async fn call(
        &self,
        queue: &str,
        tenant: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let qualified = self.bus.qualify(queue);
        let result = self.call_inner(&qualified, tenant, body, timeout).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        CALLS.with_label_values(&[&qualified, outcome]).inc();
        result
    }

    async fn call_inner(
        &self,
        qualified: &str,
        tenant: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        // Both clocks start here: the wall-clock deadline the server checks must not be later
        // than the one this caller gives up at (opening the reply channel can take a while).
        let deadline = tokio::time::Instant::now() + timeout;
        let deadline_ms = now_ms().saturating_add(millis(timeout));
        let (channel, generation) = self.live_channel().await?;
        let correlation_id = Uuid::now_v7().to_string();
        let (tx, rx) = oneshot::channel();
        // Registered before publishing: a fast reply must find its caller.
        lock(&self.pending).insert(correlation_id.clone(), (generation, tx));
        let _guard = PendingGuard {
            pending: self.pending.clone(),
            id: correlation_id.clone(),
        };
        let envelope = Envelope {
            id: Uuid::now_v7(),
            tenant: tenant.to_owned(),
            attempt: 0,
            traceparent: trace::current_traceparent(),
        };
        let mut headers = envelope.to_field_table();
        headers.insert(header::DEADLINE.into(), AMQPValue::LongLongInt(deadline_ms));
        let properties = BasicProperties::default()
            // 1 = transient: a request is worth nothing after its caller gave up.
            .with_delivery_mode(1)
            .with_message_id(ShortString::from(envelope.id.to_string()))
            .with_correlation_id(ShortString::from(correlation_id.as_str()))
            .with_reply_to(ShortString::from(DIRECT_REPLY_TO))
            .with_headers(headers);
        let published = tokio::time::timeout_at(deadline, async {
            channel
                .basic_publish(
                    "".into(),
                    qualified.into(),
                    // Mandatory: a missing server queue comes back at once instead of a timeout.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    properties,
                )
                .await?
                .await
        })
        .await;
        let confirm = match published {
            Err(_) => return Err(RpcError::Timeout(timeout)),
            Ok(confirm) => confirm?,
        };
        if confirm.is_nack() {
            return Err(RpcError::Unavailable(anyhow::anyhow!(
                "the broker refused the request"
            )));
        }
        if confirm.take_message().is_some() {
            return Err(RpcError::NoServer(qualified.to_owned()));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => Err(RpcError::Timeout(timeout)),
            Ok(Err(_)) => Err(RpcError::Lost),
            Ok(Ok(reply)) if reply.ok => Ok(reply.body),
            Ok(Ok(reply)) => Err(RpcError::Remote(
                String::from_utf8_lossy(&reply.body).into_owned(),
            )),
        }
    }

    /// The reply channel, opened (confirm mode, consuming direct reply-to) when missing or lost.
    async fn live_channel(&self) -> Result<(Channel, u64), RpcError> {
        let mut guard = self.channel.lock().await;
        if let Some((channel, generation)) = guard.as_ref()
            && channel.status().connected()
        {
            return Ok((channel.clone(), *generation));
        }
        let channel = self.bus.channel().await.map_err(RpcError::Unavailable)?;
        // Confirms let a mandatory publish report an unroutable request (no server queue).
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let tag = format!("rpc-client.{}", Uuid::new_v4().simple());
        let mut replies = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                tag.as_str().into(),
                // Direct reply-to requires no-ack; a lost reply is a caller's timeout.
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let pending = self.pending.clone();
        let reply_channel = channel.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                let Some(id) = delivery.properties.correlation_id().as_ref() else {
                    continue;
                };
                let waiting = lock(&pending).remove(id.as_str());
                match waiting {
                    Some((_, tx)) => {
                        let ok = header_text(&delivery.properties, header::STATUS).as_deref()
                            != Some("error");
                        let _ = tx.send(Reply {
                            ok,
                            body: delivery.data,
                        });
                    }
                    None => tracing::debug!("reply for a caller that stopped waiting"),
                }
            }
            // Replies can no longer arrive here: tell the waiting callers now, and close the
            // channel (if the broker only cancelled the consumer) so the next call opens anew.
            lock(&pending).retain(|_, (g, _)| *g != generation);
            let _ = reply_channel
                .close(200, "rpc reply consumer ended".into())
                .await;
        });
        *guard = Some((channel.clone(), generation));
        Ok((channel, generation))
    }

    /// Closes the reply channel (callers still waiting get [`RpcError::Lost`]).
    pub async fn close(&self) {
        if let Some((channel, _)) = self.channel.lock().await.take() {
            let _ = channel.close(200, "rpc client closed".into()).await;
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

fn header_value<'a>(properties: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(key))
}

fn header_text(properties: &BasicProperties, key: &str) -> Option<String> {
    match header_value(properties, key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn header_i64(properties: &BasicProperties, key: &str) -> Option<i64> {
    match header_value(properties, key)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

/// What a server runs for each request: the `tenant` header and the body in, the reply out.
/// An `Err` is answered as an error (its text, which must hold no personal data).
pub trait RpcHandler: Send + Sync + 'static {
    fn call(&self, tenant: String, body: Vec<u8>) -> BoxFuture<'static, anyhow::Result<Vec<u8>>>;
}

impl<F> RpcHandler for F
where
    F: Fn(String, Vec<u8>) -> BoxFuture<'static, anyhow::Result<Vec<u8>>> + Send + Sync + 'static,
{
    fn call(&self, tenant: String, body: Vec<u8>) -> BoxFuture<'static, anyhow::Result<Vec<u8>>> {
        self(tenant, body)
    }
}

struct ServerConfig {
    bus: Bus,
    queue: String,
    tag_prefix: String,
    prefetch: u16,
    handler: Arc<dyn RpcHandler>,
}

/// Stops a server started with [`serve`] or waits for it to end.
#[derive(Debug, Clone)]
pub struct RpcServerHandle {
    stop: Arc<watch::Sender<bool>>,
    done: watch::Receiver<lifecycle::Done>,
}

impl RpcServerHandle {
    /// Cancels consuming, waits for in-flight requests (bounded), closes the channel.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let _ = lifecycle::finished(self.done.clone()).await;
    }

    /// The server as a worker stopped with the consumers.
    pub fn into_worker(self, name: &str) -> Worker {
        lifecycle::worker(name, StopStage::Consumers, self.stop, self.done)
    }
}

/// Serves requests on `spec`'s queue (declared beforehand with [`Bus::declare_queue`]); at most
/// `prefetch` are handled at once. Re-opens its channel when it is lost.
pub fn serve(
    bus: &Bus,
    spec: &QueueSpec,
    consumer_tag_prefix: &str,
    prefetch: u16,
    handler: Arc<dyn RpcHandler>,
) -> RpcServerHandle {
    let (stop_tx, stop_rx, done_tx, done_rx) = lifecycle::channels();
    let config = Arc::new(ServerConfig {
        bus: bus.clone(),
        queue: spec.queue_name(bus.namespace()),
        tag_prefix: consumer_tag_prefix.to_owned(),
        prefetch,
        handler,
    });
    tokio::spawn(crate::depth::sample_until_stopped(
        bus.clone(),
        spec.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(async move {
        let result = run(config, stop_rx).await;
        let _ = done_tx.send(Some(result.map_err(|e| format!("{e:#}"))));
    });
    RpcServerHandle {
        stop: Arc::new(stop_tx),
        done: done_rx,
    }
}

async fn run(config: Arc<ServerConfig>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        match session(&config, &mut stop).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                if config.bus.is_closed() {
                    return Ok(());
                }
                tracing::warn!(queue = %config.queue, error = format!("{error:#}"), "rpc server lost its channel; reconnecting");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = lifecycle::stopped(&mut stop) => return Ok(()),
        }
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

/// One channel's life: `Ok` when stopped, `Err` when the channel died.
async fn session(
    config: &Arc<ServerConfig>,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let channel = config.bus.channel().await?;
    // Prefetch bounds the requests handled at once.
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    let tag = format!("{}.{}", config.tag_prefix, Uuid::new_v4().simple());
    let mut consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            tag.as_str().into(),
            // Manual acks: a request taken by a server that dies goes to another one.
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %config.queue, consumer_tag = %tag, "serving requests");
    let mut in_flight = JoinSet::new();
    let end = loop {
        tokio::select! {
            () = lifecycle::stopped(stop) => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    in_flight.spawn(process(config.clone(), channel.clone(), delivery));
                }
                Some(Err(error)) => break Err(anyhow::Error::new(error)),
                None => break Err(anyhow::anyhow!("consumer cancelled by the broker")),
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    };
    if end.is_ok() {
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
    } else {
        // Unacked requests go back to the queue and are answered again (read-only).
        in_flight.detach_all();
    }
    let _ = channel.close(200, "rpc server stopped".into()).await;
    end
}

async fn process(config: Arc<ServerConfig>, channel: Channel, raw: lapin::message::Delivery) {
    let queue = config.queue.as_str();
    let properties = &raw.properties;
    let reply_to = properties
        .reply_to()
        .as_ref()
        .map(|s| s.as_str().to_owned());
    let correlation_id = properties
        .correlation_id()
        .as_ref()
        .map(|s| s.as_str().to_owned());
    let (Some(reply_to), Some(correlation_id)) = (reply_to, correlation_id) else {
        // Nowhere to answer: a defect of the sender, not worth a dead letter.
        tracing::warn!(queue, "request without reply_to or correlation_id; dropped");
        let _ = raw.acker.ack(BasicAckOptions::default()).await;
        SERVED.with_label_values(&[queue, "malformed"]).inc();
        return;
    };
    if header_i64(properties, header::DEADLINE).is_some_and(|d| d <= now_ms()) {
        let _ = raw.acker.ack(BasicAckOptions::default()).await;
        SERVED.with_label_values(&[queue, "expired"]).inc();
        return;
    }
    let envelope = Envelope::from_properties(properties);
    let tenant = envelope
        .as_ref()
        .map(|e| e.tenant.clone())
        .unwrap_or_default();
    let traceparent = envelope.as_ref().and_then(|e| e.traceparent.clone());
    let span = tracing::info_span!("rpc", queue, correlation_id = %correlation_id);
    trace::set_remote_parent(&span, traceparent.as_deref());
    let (status, body, outcome) = if tenant.is_empty() {
        (
            "error",
            b"the request names no tenant".to_vec(),
            "malformed",
        )
    } else {
        match config
            .handler
            .call(tenant.clone(), raw.data.clone())
            .instrument(span.clone())
            .await
        {
            Ok(body) => ("ok", body, "ok"),
            Err(error) => {
                let _entered = span.enter();
                tracing::warn!(error = format!("{error:#}"), "rpc handler failed");
                ("error", format!("{error:#}").into_bytes(), "error")
            }
        }
    };
    let mut headers = FieldTable::default();
    headers.insert(
        crate::header::TENANT.into(),
        AMQPValue::LongString(LongString::from(tenant.as_str())),
    );
    if let Some(traceparent) = &traceparent {
        headers.insert(
            crate::header::TRACEPARENT.into(),
            AMQPValue::LongString(LongString::from(traceparent.as_str())),
        );
    }
    headers.insert(
        header::STATUS.into(),
        AMQPValue::LongString(LongString::from(status)),
    );
    let reply = BasicProperties::default()
        .with_delivery_mode(1)
        .with_correlation_id(ShortString::from(correlation_id.as_str()))
        .with_headers(headers);
    let sent = channel
        .basic_publish(
            "".into(),
            reply_to.as_str().into(),
            // Not mandatory: a caller that is gone simply never gets its reply.
            BasicPublishOptions::default(),
            &body,
            reply,
        )
        .await;
    if let Err(error) = sent {
        // Not acked: the channel is failing, so the request returns to the queue.
        tracing::warn!(queue, %error, "rpc reply could not be published");
        return;
    }
    if raw.acker.ack(BasicAckOptions::default()).await.is_ok() {
        SERVED.with_label_values(&[queue, outcome]).inc();
    }
}
