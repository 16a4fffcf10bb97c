//! RabbitMQ topology, publisher confirms, transactional outbox, inbox and consumer actors.
//!
//! Every exchange and queue name carries `amqp.namespace` as a prefix, so tests (and
//! co-hosted regions) never see each other's traffic. See docs/internals.md § Bus.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use chukan_config::{AmqpSettings, TlsMode};
use futures_util::future::BoxFuture;
use lapin::{
    AsyncTcpStream, BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    tcp::RustlsConnector,
    types::{AMQPValue, FieldTable, LongString, ShortString},
    uri::AMQPUri,
};
use uuid::Uuid;

pub mod batch;
pub mod broadcast;
pub mod consumer;
mod depth;
mod handling;
pub mod inbox;
mod lifecycle;
pub mod metrics;
pub mod outbox;
pub mod rpc;
pub mod trace;

pub use handling::{reject, retry};

/// Header names carried by every message (docs/internals.md § Bus).
pub mod header {
    pub const MESSAGE_ID: &str = "message-id";
    pub const TENANT: &str = "tenant";
    pub const ATTEMPT: &str = "attempt";
    pub const TRACEPARENT: &str = "traceparent";
}

/// How long [`Bus::connect`] keeps trying before giving up at start.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// A shared connection to RabbitMQ plus the namespace every name is prefixed with.
///
/// Cloning is cheap. A lost connection is re-opened on the next channel request, so
/// publishers and consumers recover by asking for a new channel.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
    /// Seals the bodies the outbox keeps for a failover's replay; without it nothing is kept.
    outbox_seal: Option<chukan_crypto::OutboxSeal>,
}

struct BusInner {
    settings: AmqpSettings,
    /// `amqp.tls_mode = "verify-full"`: the verifying TLS config, built once at start.
    tls: Option<RustlsConnector>,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("namespace", &self.inner.settings.namespace)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Connects, retrying with backoff for up to 30 s so a process may start before RabbitMQ.
    pub async fn connect(settings: &AmqpSettings) -> anyhow::Result<Bus> {
        Self::connect_within(settings, CONNECT_DEADLINE).await
    }

    /// As [`Bus::connect`], trying for at most `patience` (tests of refused connections).
    /// A broker whose certificate fails verification is refused at once: waiting does not
    /// make it trustworthy.
    pub async fn connect_within(
        settings: &AmqpSettings,
        patience: Duration,
    ) -> anyhow::Result<Bus> {
        let tls = connector(settings)?;
        let deadline = tokio::time::Instant::now() + patience;
        let mut delay = Duration::from_millis(100);
        let connection = loop {
            match open_connection(&settings.url, tls.as_ref()).await {
                Ok(connection) => break connection,
                Err(error) if is_tls_failure(&error) => {
                    return Err(anyhow::Error::new(error)
                        .context("connecting to RabbitMQ: the TLS handshake failed"));
                }
                Err(error) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "RabbitMQ not reachable yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(error) => {
                    return Err(anyhow::Error::new(error).context("connecting to RabbitMQ"));
                }
            }
        };
        Ok(Bus {
            inner: Arc::new(BusInner {
                settings: settings.clone(),
                tls,
                connection: tokio::sync::Mutex::new(Some(Arc::new(connection))),
                closed: AtomicBool::new(false),
            }),
            outbox_seal: None,
        })
    }

    /// This bus with the seal its outbox relays put on the bodies they keep in
    /// `{schema}.outbox_sent` (`amqp.outbox_replay_window`): personal data in a message must
    /// not stay in the clear after it was published.
    pub fn with_outbox_seal(mut self, seal: chukan_crypto::OutboxSeal) -> Bus {
        self.outbox_seal = Some(seal);
        self
    }

    /// The seal given by [`Bus::with_outbox_seal`], if any.
    pub fn outbox_seal(&self) -> Option<&chukan_crypto::OutboxSeal> {
        self.outbox_seal.as_ref()
    }

    pub fn settings(&self) -> &AmqpSettings {
        &self.inner.settings
    }

    pub fn namespace(&self) -> &str {
        &self.inner.settings.namespace
    }

    /// `{ns}chukan`: the topic exchange events are published to.
    pub fn exchange(&self) -> String {
        format!("{}chukan", self.namespace())
    }

    /// `{ns}chukan.dlx`: the topic exchange dead letters go to.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}chukan.dlx", self.namespace())
    }

    /// The namespaced name of `name` (a queue or exchange).
    pub fn qualify(&self, name: &str) -> String {
        format!("{}{}", self.namespace(), name)
    }

    /// True once [`Bus::close`] was called; consumers then stop instead of reconnecting.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// The live connection, re-opened once if it was lost.
    async fn connection(&self) -> anyhow::Result<Arc<Connection>> {
        let mut guard = self.inner.connection.lock().await;
        if self.is_closed() {
            anyhow::bail!("the bus is closed");
        }
        if let Some(connection) = guard.as_ref()
            && connection.status().connected()
        {
            return Ok(connection.clone());
        }
        let connection = Arc::new(
            open_connection(&self.inner.settings.url, self.inner.tls.as_ref())
                .await
                .context("reconnecting to RabbitMQ")?,
        );
        tracing::info!("reconnected to RabbitMQ");
        *guard = Some(connection.clone());
        Ok(connection)
    }

    /// A fresh channel on the live connection.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let connection = self.connection().await?;
        connection
            .create_channel()
            .await
            .context("opening an AMQP channel")
    }

    /// Declares `{ns}chukan` and `{ns}chukan.dlx` (both topic, durable).
    pub async fn declare_topology(&self) -> anyhow::Result<()> {
        let channel = self.channel().await?;
        for exchange in [self.exchange(), self.dead_letter_exchange()] {
            channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Topic,
                    // Durable: bindings must survive a broker restart with the quorum queues.
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .context("declaring exchange")?;
        }
        let _ = channel.close(200, "topology declared".into()).await;
        Ok(())
    }

    /// Declares the queue of `spec`, its dead queue and its retry queues, and binds them.
    pub async fn declare_queue(&self, spec: &QueueSpec) -> anyhow::Result<()> {
        let channel = self.channel().await?;
        let ns = self.namespace();
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };

        let main = spec.queue_name(ns);
        channel
            .queue_declare(
                main.as_str().into(),
                durable,
                main_queue_arguments(&self.inner.settings, ns, &spec.name),
            )
            .await
            .with_context(|| format!("declaring queue {main}"))?;
        for key in &spec.bindings {
            channel
                .queue_bind(
                    main.as_str().into(),
                    self.exchange().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("binding {main} to {key}"))?;
        }

        let dead = spec.dead_queue_name(ns);
        channel
            .queue_declare(
                dead.as_str().into(),
                durable,
                base_arguments(&self.inner.settings),
            )
            .await
            .with_context(|| format!("declaring queue {dead}"))?;
        channel
            .queue_bind(
                dead.as_str().into(),
                self.dead_letter_exchange().into(),
                spec.name.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding {dead}"))?;

        for (index, delay) in self.inner.settings.retry_delays_ms.iter().enumerate() {
            let retry = spec.retry_queue_name(ns, index);
            channel
                .queue_declare(
                    retry.as_str().into(),
                    durable,
                    retry_queue_arguments(&self.inner.settings, &main, *delay),
                )
                .await
                .with_context(|| format!("declaring queue {retry}"))?;
        }
        let _ = channel.close(200, "queue declared".into()).await;
        Ok(())
    }

    /// A publisher on its own channel in confirm mode.
    pub async fn publisher(&self) -> anyhow::Result<Publisher> {
        let channel = self.confirm_channel().await?;
        Ok(Publisher {
            bus: self.clone(),
            channel: Arc::new(tokio::sync::Mutex::new(channel)),
        })
    }

    async fn confirm_channel(&self) -> anyhow::Result<Channel> {
        let channel = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        Ok(channel)
    }

    /// For /readyz: the connection is up (re-opening it if it was lost).
    pub async fn is_healthy(&self) -> bool {
        let probe = async { self.connection().await.is_ok() };
        tokio::time::timeout(Duration::from_secs(2), probe)
            .await
            .unwrap_or(false)
    }

    /// Closes the connection; channels on it end and consumers stop instead of reconnecting.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let connection = self.inner.connection.lock().await.take();
        if let Some(connection) = connection
            && let Err(error) = connection.close(200, "closing".into()).await
        {
            tracing::debug!(%error, "closing the RabbitMQ connection");
        }
    }
}

/// The verifying TLS connector for `amqp.tls_mode = "verify-full"` (settings validation has
/// made sure the URL is `amqps://` then, and `amqp://` otherwise).
fn connector(settings: &AmqpSettings) -> anyhow::Result<Option<RustlsConnector>> {
    match settings.tls_mode {
        TlsMode::Disable => Ok(None),
        TlsMode::VerifyFull => {
            let config =
                chukan_tls::client::client_config(&chukan_tls::client::ClientTls::amqp(settings))?;
            Ok(Some(RustlsConnector::from(Arc::new(config))))
        }
    }
}

/// Longest a TCP connect plus TLS handshake may take when the URL sets no
/// `connection_timeout`: a silent peer must not hold the start-up retry loop.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn open_connection(url: &str, tls: Option<&RustlsConnector>) -> lapin::Result<Connection> {
    // No lapin auto-recovery: Bus re-opens the connection itself and consumers re-create
    // their channels, which keeps one recovery path we can test.
    let properties =
        ConnectionProperties::default().with_connection_name(LongString::from("chukan"));
    let Some(tls) = tls else {
        return Connection::connect(url, properties).await;
    };
    // lapin's own amqps path trusts its built-in store as well as a given CA; chukan's
    // connector trusts exactly `amqp.ca_file`, so the socket is opened here and handed over.
    let uri: AMQPUri = url
        .parse()
        .map_err(|_| std::io::Error::other("amqp.url is not a valid AMQP URI"))?;
    let connector = tls.clone();
    Connection::connector(
        uri,
        lapin::runtime::default_runtime()?,
        async move |uri: AMQPUri, runtime| {
            let host = uri.authority.host.clone();
            let limit = uri
                .query
                .connection_timeout
                .map_or(HANDSHAKE_TIMEOUT, Duration::from_millis);
            let handshake = async {
                let addresses: Vec<std::net::SocketAddr> =
                    tokio::net::lookup_host((host.as_str(), uri.authority.port))
                        .await?
                        .collect();
                AsyncTcpStream::connect(&runtime, addresses)
                    .await?
                    // Verifies the chain and that the certificate names `host`.
                    .into_rustls(&connector, &host)
                    .await
            };
            let stream = tokio::time::timeout(limit, handshake)
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            Ok(stream)
        },
        properties,
    )
    .await
}

/// A TLS handshake that failed (an unknown issuer, a wrong name, a plaintext peer): rustls's
/// errors reach lapin as I/O errors of kind `InvalidData`.
fn is_tls_failure(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::InvalidData)
}

/// Queue type (quorum in production) and, for tests' throw-away namespaces, idle expiry.
fn base_arguments(settings: &AmqpSettings) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        long_string(settings.queue_type.as_str()),
    );
    add_expiry(&mut args, settings);
    args
}

fn add_expiry(args: &mut FieldTable, settings: &AmqpSettings) {
    if let Some(expires) = settings.queue_expires {
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(i64::try_from(expires.as_millis()).unwrap_or(i64::MAX)),
        );
    }
}

fn main_queue_arguments(settings: &AmqpSettings, ns: &str, name: &str) -> FieldTable {
    let mut args = base_arguments(settings);
    // Rejected messages and the last failed retry go to `{ns}{name}.dead` through the DLX.
    args.insert(
        "x-dead-letter-exchange".into(),
        long_string(&format!("{ns}chukan.dlx")),
    );
    args.insert("x-dead-letter-routing-key".into(), long_string(name));
    args
}

fn retry_queue_arguments(settings: &AmqpSettings, main_queue: &str, delay_ms: u64) -> FieldTable {
    let mut args = FieldTable::default();
    add_expiry(&mut args, settings);
    // Classic queue: every message in it has the same TTL, so expiry order is arrival order.
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
    );
    // On expiry, back to the main queue through the default exchange.
    args.insert("x-dead-letter-exchange".into(), long_string(""));
    args.insert("x-dead-letter-routing-key".into(), long_string(main_queue));
    args
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// A queue a service consumes: `name` like `code.nws-in`, `bindings` are routing keys on
/// `{ns}chukan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub bindings: Vec<String>,
}

impl QueueSpec {
    pub fn new(name: impl Into<String>, bindings: &[&str]) -> Self {
        QueueSpec {
            name: name.into(),
            bindings: bindings.iter().map(|b| (*b).to_owned()).collect(),
        }
    }

    pub fn queue_name(&self, ns: &str) -> String {
        format!("{ns}{}", self.name)
    }

    pub fn dead_queue_name(&self, ns: &str) -> String {
        format!("{ns}{}.dead", self.name)
    }

    pub fn retry_queue_name(&self, ns: &str, index: usize) -> String {
        format!("{ns}{}.retry.{index}", self.name)
    }
}

/// A message to publish on `{ns}chukan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// UUIDv7; also the AMQP message_id and the consumers' dedupe key.
    pub id: Uuid,
    pub tenant: String,
    pub routing_key: String,
    pub body: Vec<u8>,
}

impl OutgoingMessage {
    pub fn new(tenant: impl Into<String>, routing_key: impl Into<String>, body: Vec<u8>) -> Self {
        OutgoingMessage {
            id: Uuid::now_v7(),
            tenant: tenant.into(),
            routing_key: routing_key.into(),
            body,
        }
    }
}

/// The headers every message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: Uuid,
    pub tenant: String,
    pub attempt: u32,
    pub traceparent: Option<String>,
}

impl Envelope {
    pub fn to_field_table(&self) -> FieldTable {
        let mut headers = FieldTable::default();
        headers.insert(header::MESSAGE_ID.into(), long_string(&self.id.to_string()));
        headers.insert(header::TENANT.into(), long_string(&self.tenant));
        headers.insert(
            header::ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(self.attempt)),
        );
        if let Some(traceparent) = &self.traceparent {
            headers.insert(header::TRACEPARENT.into(), long_string(traceparent));
        }
        headers
    }

    /// AMQP properties: persistent, message_id = id, the headers above.
    pub fn properties(&self) -> BasicProperties {
        BasicProperties::default()
            // 2 = persistent: written to disk before the confirm, survives a broker restart.
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(self.id.to_string()))
            .with_headers(self.to_field_table())
    }

    /// Reads the envelope back; the id falls back to the AMQP message_id property.
    pub fn from_properties(properties: &BasicProperties) -> Option<Envelope> {
        let headers = properties.headers().clone().unwrap_or_default();
        let get = |key: &str| headers.inner().get(key);
        let text = |key: &str| get(key).and_then(value_text);
        let id = text(header::MESSAGE_ID)
            .or_else(|| {
                properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned())
            })
            .and_then(|id| Uuid::parse_str(&id).ok())?;
        let attempt = get(header::ATTEMPT).and_then(value_u32).unwrap_or(0);
        Some(Envelope {
            id,
            tenant: text(header::TENANT).unwrap_or_default(),
            attempt,
            traceparent: text(header::TRACEPARENT),
        })
    }

    /// The headers as JSON, as the outbox stores them.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert(header::MESSAGE_ID.into(), self.id.to_string().into());
        map.insert(header::TENANT.into(), self.tenant.clone().into());
        map.insert(header::ATTEMPT.into(), self.attempt.into());
        if let Some(traceparent) = &self.traceparent {
            map.insert(header::TRACEPARENT.into(), traceparent.clone().into());
        }
        serde_json::Value::Object(map)
    }
}

fn value_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn value_u32(value: &AMQPValue) -> Option<u32> {
    let wide: i64 = match value {
        AMQPValue::ShortShortInt(v) => i64::from(*v),
        AMQPValue::ShortShortUInt(v) => i64::from(*v),
        AMQPValue::ShortInt(v) => i64::from(*v),
        AMQPValue::ShortUInt(v) => i64::from(*v),
        AMQPValue::LongInt(v) => i64::from(*v),
        AMQPValue::LongUInt(v) => i64::from(*v),
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    };
    u32::try_from(wide).ok()
}

/// Why a publish was not confirmed. The message may or may not have reached the broker, so
/// callers retry (the outbox does) and consumers dedupe by message id.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the bus is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error("AMQP error while publishing: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for the message (returned {reply_code} {reply_text})")]
    Unroutable { reply_code: u16, reply_text: String },
}

/// Publishes with publisher confirms on one channel, re-opened if it dies. Clones share it.
#[derive(Clone)]
pub struct Publisher {
    bus: Bus,
    channel: Arc<tokio::sync::Mutex<Channel>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// Publishes `msg` on `{ns}chukan` and waits for the broker's confirm.
    ///
    /// The traceparent comes from the current tracing span, when it has an OpenTelemetry
    /// context.
    pub async fn publish(&self, msg: &OutgoingMessage) -> Result<(), PublishError> {
        let envelope = Envelope {
            id: msg.id,
            tenant: msg.tenant.clone(),
            attempt: 0,
            traceparent: trace::current_traceparent(),
        };
        self.publish_envelope(&self.bus.exchange(), &msg.routing_key, &envelope, &msg.body)
            .await
    }

    /// Publishes with explicit headers to any exchange (`""` is the default exchange);
    /// mandatory, persistent, awaiting the confirm.
    pub async fn publish_envelope(
        &self,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<(), PublishError> {
        let channel = self.live_channel().await?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                // Mandatory: an unroutable message comes back instead of vanishing.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                envelope.properties(),
            )
            .await?
            .await?;
        if confirm.is_nack() {
            return Err(PublishError::Nacked);
        }
        if let Some(returned) = confirm.take_message() {
            return Err(PublishError::Unroutable {
                reply_code: returned.reply_code,
                reply_text: returned.reply_text.as_str().to_owned(),
            });
        }
        Ok(())
    }

    async fn live_channel(&self) -> Result<Channel, PublishError> {
        let mut guard = self.channel.lock().await;
        if !guard.status().connected() {
            *guard = self
                .bus
                .confirm_channel()
                .await
                .map_err(PublishError::Unavailable)?;
        }
        Ok(guard.clone())
    }
}

/// A message as a consumer's handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: Uuid,
    pub tenant: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    /// 0 on first delivery, +1 per retry.
    pub attempt: u32,
    pub traceparent: Option<String>,
}

/// How a handler failed.
#[derive(Debug)]
pub enum HandleError {
    /// Transient: try again after the next retry delay (dead-lettered after the last).
    Retry(anyhow::Error),
    /// Permanent: dead-letter now.
    Reject(anyhow::Error),
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandleError::Retry(e) => write!(f, "retry: {e:#}"),
            HandleError::Reject(e) => write!(f, "reject: {e:#}"),
        }
    }
}

/// What a consumer runs for each delivery. Acked when it returns `Ok`, which must be after
/// its transaction committed.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>>;
}

/// Handy for tests and small consumers: any suitable closure is a handler.
impl<F> Handler for F
where
    F: Fn(Delivery) -> BoxFuture<'static, Result<(), HandleError>> + Send + Sync + 'static,
{
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        self(delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_namespace() {
        let spec = QueueSpec::new("code.nws-in", &["nws.in.code"]);
        assert_eq!(spec.queue_name("t1."), "t1.code.nws-in");
        assert_eq!(spec.dead_queue_name("t1."), "t1.code.nws-in.dead");
        assert_eq!(spec.retry_queue_name("t1.", 2), "t1.code.nws-in.retry.2");
        assert_eq!(spec.retry_queue_name("", 0), "code.nws-in.retry.0");
    }

    fn test_amqp_settings() -> AmqpSettings {
        chukan_config::Settings::load_with(None, Vec::new())
            .unwrap()
            .amqp
    }

    #[test]
    fn queue_arguments_point_where_the_contract_says() {
        let mut settings = test_amqp_settings();
        let main = main_queue_arguments(&settings, "t1.", "code.nws-in");
        let get = |t: &FieldTable, k: &str| t.inner().get(k).and_then(value_text);
        assert_eq!(get(&main, "x-queue-type").as_deref(), Some("quorum"));
        assert_eq!(
            get(&main, "x-dead-letter-exchange").as_deref(),
            Some("t1.chukan.dlx")
        );
        assert_eq!(
            get(&main, "x-dead-letter-routing-key").as_deref(),
            Some("code.nws-in")
        );
        assert!(
            main.inner().get("x-expires").is_none(),
            "production queues never expire"
        );
        settings.queue_type = chukan_config::QueueType::Classic;
        settings.queue_expires = Some(std::time::Duration::from_secs(60));
        let throwaway = main_queue_arguments(&settings, "t1.", "code.nws-in");
        assert_eq!(get(&throwaway, "x-queue-type").as_deref(), Some("classic"));
        assert_eq!(
            throwaway.inner().get("x-expires"),
            Some(&AMQPValue::LongLongInt(60_000))
        );
        let retry = retry_queue_arguments(&settings, "t1.code.nws-in", 1500);
        assert_eq!(get(&retry, "x-dead-letter-exchange").as_deref(), Some(""));
        assert_eq!(
            get(&retry, "x-dead-letter-routing-key").as_deref(),
            Some("t1.code.nws-in")
        );
        assert_eq!(
            retry.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(1500))
        );
    }

    #[test]
    fn envelope_round_trips_through_properties_and_json() {
        let envelope = Envelope {
            id: Uuid::now_v7(),
            tenant: "011002".into(),
            attempt: 3,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let properties = envelope.properties();
        assert_eq!(properties.delivery_mode(), &Some(2));
        assert_eq!(
            properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str().to_owned()),
            Some(envelope.id.to_string())
        );
        assert_eq!(
            Envelope::from_properties(&properties),
            Some(envelope.clone())
        );
        let json = envelope.to_json();
        assert_eq!(json["attempt"], 3);
        assert_eq!(json["tenant"], "011002");
    }

    #[test]
    fn envelope_without_headers_uses_message_id_and_defaults() {
        let id = Uuid::now_v7();
        let properties = BasicProperties::default().with_message_id(id.to_string().into());
        let envelope = Envelope::from_properties(&properties).unwrap();
        assert_eq!(envelope.id, id);
        assert_eq!(envelope.attempt, 0);
        assert_eq!(envelope.traceparent, None);
        assert!(Envelope::from_properties(&BasicProperties::default()).is_none());
    }
}
