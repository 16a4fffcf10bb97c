//! Layered settings for chukan: embedded defaults → optional file → `CHUKAN__…` environment.
//!
//! The defaults file (`defaults.toml`) is the documentation: every key carries a comment,
//! and `chukan config --print-defaults` prints it as it is.

use std::{path::Path, time::Duration};

use secrecy::SecretString;
use serde::Deserialize;

/// The embedded defaults, with a comment on every key.
pub const DEFAULTS_TOML: &str = include_str!("../defaults.toml");

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings could not be read: {0}")]
    Load(#[from] config::ConfigError),
    #[error("setting {key} is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Everything a chukan process can be told.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The cell this process belongs to (east or west; ADR 0006).
    pub region: String,
    pub server: ServerSettings,
    pub metrics: MetricsSettings,
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub crypto: CryptoSettings,
    pub auth: AuthSettings,
    pub relay: RelaySettings,
    pub nws_sim: NwsSimSettings,
    pub telemetry: TelemetrySettings,
    pub calendar: CalendarSettings,
    pub shutdown: ShutdownSettings,
    pub lease: LeaseSettings,
    pub provision: ProvisionSettings,
    pub inquiry: InquirySettings,
    pub audit: AuditSettings,
    pub selfinfo: SelfInfoSettings,
    pub stats: StatsSettings,
    pub console: ConsoleSettings,
    pub cells: CellsSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Address the public REST API listens on.
    pub host: String,
    /// Port of the public REST API; 0 picks a free port.
    pub port: u16,
    /// Largest JSON body accepted, in bytes.
    pub json_limit_bytes: usize,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// PEM certificate chain the API serves HTTPS with (with `tls_key_file`); empty = HTTP.
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    /// Address of the operations listener (/metrics, /livez, /readyz).
    pub host: String,
    /// Port of the operations listener; 0 picks a free port.
    pub port: u16,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// Owner connection URL, used by migrations only.
    pub url: String,
    /// Application role (no superuser, no BYPASSRLS).
    pub app_user: String,
    /// Password of the application role.
    pub app_password: SecretString,
    /// Largest number of pooled connections per process.
    pub pool_max_size: usize,
    /// Longest wait for a pooled connection, then 503 with `Retry-After` (key
    /// `pool_wait_timeout_ms`).
    #[serde(rename = "pool_wait_timeout_ms", deserialize_with = "duration::millis")]
    pub pool_wait_timeout: Duration,
    /// TLS towards PostgreSQL, for every connection (pool, migrations, nws-sim's database).
    pub tls_mode: TlsMode,
    /// PEM CA bundle the server's certificate must chain to; empty = the system's roots.
    pub ca_file: String,
    /// PEM client certificate chain presented to the server (with `client_key_file`).
    pub client_cert_file: String,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AmqpSettings {
    /// RabbitMQ URL including the vhost.
    pub url: String,
    /// Prefix of every exchange and queue name.
    pub namespace: String,
    /// Unacknowledged deliveries a consumer may hold.
    pub prefetch: u16,
    /// Delays before each redelivery attempt, in milliseconds.
    pub retry_delays_ms: Vec<u64>,
    /// Outbox polling interval when not woken (key `outbox_poll_ms`).
    #[serde(rename = "outbox_poll_ms", deserialize_with = "duration::millis")]
    pub outbox_poll: Duration,
    /// How long a published outbox row is kept for a replay after a failover (key
    /// `outbox_replay_window_secs`); None (0) = deleted once confirmed.
    #[serde(
        rename = "outbox_replay_window_secs",
        deserialize_with = "duration::secs_or_never"
    )]
    pub outbox_replay_window: Option<Duration>,
    /// How often the backlog gauges (queue depths, outbox and inbox rows) are refreshed
    /// (key `backlog_sample_ms`).
    #[serde(rename = "backlog_sample_ms", deserialize_with = "duration::millis")]
    pub backlog_sample: Duration,
    /// Type of the work and dead-letter queues.
    pub queue_type: QueueType,
    /// Idle queue expiry (key `queue_expires_ms`); None (0) = never.
    #[serde(
        rename = "queue_expires_ms",
        deserialize_with = "duration::millis_or_never"
    )]
    pub queue_expires: Option<Duration>,
    /// TLS towards RabbitMQ; `verify-full` needs an `amqps://` URL.
    pub tls_mode: TlsMode,
    /// PEM CA bundle the broker's certificate must chain to; empty = the system's roots.
    pub ca_file: String,
    /// PEM client certificate chain presented to the broker (with `client_key_file`).
    pub client_cert_file: String,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: String,
}

/// The `[cells]` settings: the peer cell's doors and the replication to its standby of this
/// cell's cluster (ADR 0006).
#[derive(Debug, Clone, Deserialize)]
pub struct CellsSettings {
    /// The peer cell's API base URLs, tried in order; empty = nothing is forwarded.
    pub peer_api_urls: Vec<String>,
    /// PEM CA bundle for https peer doors; empty = the system's roots.
    pub peer_ca_file: String,
    /// Longest a forwarded request may take (key `forward_timeout_ms`).
    #[serde(rename = "forward_timeout_ms", deserialize_with = "duration::millis")]
    pub forward_timeout: Duration,
    /// How often the homed organisations are re-read (key `homed_refresh_ms`).
    #[serde(rename = "homed_refresh_ms", deserialize_with = "duration::millis")]
    pub homed_refresh: Duration,
    /// How often replication is sampled (key `replication_sample_ms`).
    #[serde(
        rename = "replication_sample_ms",
        deserialize_with = "duration::millis"
    )]
    pub replication_sample: Duration,
    /// The standby's application_name for synchronous commit; empty = asynchronous.
    pub synchronous_standby_names: String,
    /// Longest commits wait on a silent synchronous standby before the cell degrades to
    /// asynchronous commit (key `sync_degrade_after_ms`).
    #[serde(
        rename = "sync_degrade_after_ms",
        deserialize_with = "duration::millis"
    )]
    pub sync_degrade_after: Duration,
}

/// Whether a link to PostgreSQL or RabbitMQ is encrypted, and how the server is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsMode {
    /// Plaintext (development, the test suite's shared servers).
    #[serde(rename = "disable")]
    Disable,
    /// TLS required; the server's certificate must chain to the configured CA and name the
    /// host the URL names (libpq's `sslmode=verify-full`). A server without TLS is refused.
    #[serde(rename = "verify-full")]
    VerifyFull,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CryptoSettings {
    /// Key-encryption key, base64 of 32 bytes.
    pub kek: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// `iss` of issued tokens and the only issuer accepted.
    pub issuer: String,
    /// `aud` of issued tokens and the only audience accepted.
    pub audience: String,
    /// Access-token lifetime in seconds.
    pub token_ttl_secs: u64,
    /// Ed25519 seed (base64) admin signs tokens with.
    pub signing_key: SecretString,
    /// Key id of `signing_key`.
    pub signing_kid: String,
    /// Admin's JWKS URL for processes that do not run admin; empty = use `signing_key`.
    pub jwks_url: String,
    /// PEM CA bundle admin's certificate must chain to (https `jwks_url`); empty = system roots.
    pub jwks_ca_file: String,
    /// Failed logins in a row that lock an account for sources it has not logged in from.
    pub max_failed_logins: u32,
    /// How long such a lock lasts, in minutes (an administrator may lift it sooner).
    pub lock_minutes: u64,
    /// First delay, in seconds, a source must wait after `max_failed_logins` failures of
    /// its own for one account; doubled with every further failure.
    pub throttle_base_secs: u64,
    /// Longest such delay, in seconds.
    pub throttle_max_secs: u64,
    /// A source that logged in to the account within this many days is not held by the
    /// account's lock (its own failures still slow it down).
    pub trusted_source_days: u64,
    /// Header carrying the client address, set by a trusted ingress that overwrites it;
    /// empty = the TCP peer address.
    pub client_address_header: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RelaySettings {
    /// Base URL of the NWS.
    pub nws_url: String,
    /// Address of the inbound listener.
    pub inbound_host: String,
    /// Port of the inbound listener; 0 picks a free port.
    pub inbound_port: u16,
    /// URL the NWS delivers to.
    pub inbound_public_url: String,
    /// PEM certificate chain the inbound listener serves HTTPS with; empty = plain HTTP.
    pub inbound_tls_cert_file: String,
    /// PEM private key of `inbound_tls_cert_file`.
    pub inbound_tls_key_file: String,
    /// PEM CA bundle the NWS's client certificate must chain to; set = mutual TLS required.
    pub inbound_client_ca_file: String,
    /// PEM CA bundle the NWS's server certificate must chain to; empty = system roots.
    pub nws_ca_file: String,
    /// PEM client certificate chain presented to the NWS (with `nws_client_key_file`).
    pub nws_client_cert_file: String,
    /// PEM private key of `nws_client_cert_file`.
    pub nws_client_key_file: String,
    /// Ed25519 seed (base64) for outbound signatures.
    pub signing_key: SecretString,
    /// Key id of the relay signing key.
    pub signing_kid: String,
    /// Accepted NWS public keys, "kid=base64".
    pub nws_public_keys: Vec<String>,
    /// Largest accepted clock difference on inbound messages, in seconds.
    pub max_clock_skew_secs: i64,
    /// Timeout of one send to the NWS (key `send_timeout_ms`).
    #[serde(rename = "send_timeout_ms", deserialize_with = "duration::millis")]
    pub send_timeout: Duration,
    /// Outbound sends in flight at once.
    pub send_concurrency: usize,
    /// Messages held in the send/receive stop window released per second once open.
    pub release_per_second: u32,
    /// How often the NWS readiness check is repeated while it fails (key `readiness_poll_ms`).
    #[serde(rename = "readiness_poll_ms", deserialize_with = "duration::millis")]
    pub readiness_poll: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NwsSimSettings {
    /// Address the simulator listens on.
    pub host: String,
    /// Port of the simulator.
    pub port: u16,
    /// The simulator's own database URL.
    pub database_url: String,
    /// Ed25519 seed (base64) of the simulator.
    pub signing_key: SecretString,
    /// Key id of the simulator's key.
    pub signing_kid: String,
    /// Secret (base64) per-organisation codes are derived from.
    pub code_secret: SecretString,
    /// Deliveries in flight at once.
    pub delivery_concurrency: usize,
    /// PEM certificate chain the simulator serves HTTPS with (with `tls_key_file`); empty = HTTP.
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
    /// PEM CA bundle a relay's client certificate must chain to; set = mutual TLS required.
    pub client_ca_file: String,
    /// PEM CA bundle the relays' inbound certificates must chain to; empty = system roots.
    pub delivery_ca_file: String,
    /// PEM client certificate chain presented to relays on delivery.
    pub delivery_client_cert_file: String,
    /// PEM private key of `delivery_client_cert_file`.
    pub delivery_client_key_file: String,
    /// Delivery retry delays in milliseconds.
    pub delivery_retry_ms: Vec<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// Log lines as JSON (production) or pretty text (a terminal).
    pub log_format: LogFormat,
    /// EnvFilter directive.
    pub log_level: String,
    /// OTLP/HTTP endpoint; empty = no export.
    pub otlp_endpoint: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CalendarSettings {
    /// Planned outage dates, YYYY-MM-DD.
    pub planned_outages: Vec<chrono_like::Date>,
    /// Reject API calls outside service hours.
    pub enforce_service_hours: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShutdownSettings {
    /// Longest drain on SIGTERM (key `grace_secs`).
    #[serde(rename = "grace_secs", deserialize_with = "duration::secs")]
    pub grace: Duration,
}

/// The `[lease]` settings: work that must run once per cell (schedulers, the tree-head
/// signer, the relay releaser) is done by the one process holding its lease, a PostgreSQL
/// session advisory lock (ADR 0005, `chukan_runtime::lease`).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "LeaseKeys")]
pub struct LeaseSettings {
    /// How often a process without a lease tries to take it (key `retry_secs`).
    pub retry: Duration,
    /// How often the holder checks that its lease is still held, and how long one check may
    /// take before the lease counts as lost (key `check_secs`).
    pub check: Duration,
    /// How soon the database server drops the session of a holder that vanished without
    /// closing its connection (a lost node), freeing the lease (key `abandon_secs`).
    pub abandon: Duration,
}

/// `[lease]` as written, checked into [`LeaseSettings`].
#[derive(Deserialize)]
struct LeaseKeys {
    #[serde(deserialize_with = "duration::secs")]
    retry_secs: Duration,
    #[serde(deserialize_with = "duration::secs")]
    check_secs: Duration,
    #[serde(deserialize_with = "duration::secs")]
    abandon_secs: Duration,
}

impl TryFrom<LeaseKeys> for LeaseSettings {
    type Error = String;

    fn try_from(k: LeaseKeys) -> Result<Self, String> {
        // A holder cut off from the database stops its work within two checks (one to
        // notice, one timed out); the server must not free the lease for another process
        // before that, or both would work at once for a while.
        if k.check_secs * 2 >= k.abandon_secs {
            return Err(format!(
                "lease.check_secs ({}) must be less than half of lease.abandon_secs ({})",
                k.check_secs.as_secs(),
                k.abandon_secs.as_secs()
            ));
        }
        Ok(LeaseSettings {
            retry: k.retry_secs,
            check: k.check_secs,
            abandon: k.abandon_secs,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProvisionSettings {
    /// Japan time (HH:MM) of the nightly batch.
    pub nightly_batch_at: String,
    /// Scheduler clock check interval (key `scheduler_poll_secs`).
    #[serde(rename = "scheduler_poll_secs", deserialize_with = "duration::secs")]
    pub scheduler_poll: Duration,
    /// Layout catalogue directory; empty = built-in catalogue.
    pub layout_dir: String,
    /// Entries per batch transaction.
    pub batch_chunk_entries: usize,
    /// Largest entry in a registration list, bytes.
    pub max_entry_bytes: usize,
    /// Largest REST batch, records.
    pub rest_max_records: usize,
    /// Reconciliation files up to this size are made at once.
    pub reconciliation_immediate_max: u64,
    /// Items restricted to upload slots.
    pub slot_items: Vec<String>,
    /// "GROUP:DAY:HH:MM-HH:MM" slot definitions.
    pub upload_slots: Vec<String>,
    /// Extra days without uploads, YYYY-MM-DD.
    pub blocked_days: Vec<chrono_like::Date>,
    /// Grace days before an abolished dataset's replicas are deleted.
    pub abolished_grace_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InquirySettings {
    /// Largest bulk inquiry file, in lines.
    pub bulk_max_lines: usize,
    /// Character encoding of bulk inquiry files.
    pub bulk_encoding: BulkEncoding,
    /// How often requests past their 30-day validity are marked expired (key
    /// `expiry_sweep_secs`).
    #[serde(rename = "expiry_sweep_secs", deserialize_with = "duration::secs")]
    pub expiry_sweep: Duration,
    /// Largest number of results confirmed by one bulk confirmation.
    pub confirm_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    /// Ed25519 seed (base64 of 32 bytes) the audit service signs tree heads with.
    pub signing_key: SecretString,
    /// Key id of signing_key, stored beside every signed tree head.
    pub signing_kid: String,
    /// How often tree heads are signed for tenants whose log grew (key
    /// `tree_head_interval_secs`).
    #[serde(
        rename = "tree_head_interval_secs",
        deserialize_with = "duration::secs"
    )]
    pub tree_head_interval: Duration,
    /// Sign a tree head as soon as a tenant's log grew by this many records.
    pub tree_head_every_records: u64,
    /// Most records appended in one transaction (one tenant's share of a consumer batch).
    pub append_batch_max: usize,
    /// Unacknowledged audit.record deliveries the consumer holds at once; bounds a batch.
    pub prefetch: u16,
    /// Records older than this many years are purged (番号法 §23: period set by cabinet order).
    pub retention_years: u32,
    /// How often the retention purge runs in the service (key `purge_interval_secs`); None
    /// (0) = only by the CLI.
    #[serde(
        rename = "purge_interval_secs",
        deserialize_with = "duration::secs_or_never"
    )]
    pub purge_interval: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SelfInfoSettings {
    /// Longest wait for provision's or audit's reply before a round is given up (key
    /// `rpc_timeout_ms`).
    #[serde(rename = "rpc_timeout_ms", deserialize_with = "duration::millis")]
    pub rpc_timeout: Duration,
    /// How often waiting requests are looked for when nothing woke the worker (`poll_ms`).
    #[serde(rename = "poll_ms", deserialize_with = "duration::millis")]
    pub poll: Duration,
    /// How long a taken request is left to its worker before another may take it
    /// (`lease_secs`).
    #[serde(rename = "lease_secs", deserialize_with = "duration::secs")]
    pub lease: Duration,
    /// First pause before a request whose round failed is tried again (`retry_first_ms`).
    #[serde(rename = "retry_first_ms", deserialize_with = "duration::millis")]
    pub retry_first: Duration,
    /// Longest such pause (`retry_max_secs`).
    #[serde(rename = "retry_max_secs", deserialize_with = "duration::secs")]
    pub retry_max: Duration,
    /// Requests taken per round.
    pub batch: u16,
    /// Largest attachment accepted, in bytes.
    pub max_attachment_bytes: usize,
}

/// Type of the work and dead-letter queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    /// Replicated (production).
    Quorum,
    /// Single-node, cheap (tests, development).
    Classic,
}

impl QueueType {
    /// The `x-queue-type` argument RabbitMQ takes.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Character encoding of bulk inquiry files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BulkEncoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "shift_jis")]
    ShiftJis,
}

/// Durations from the whole numbers the keys name (`…_ms`, `…_secs`), checked once at load:
/// a zero wait is a mistake (a busy loop, or a timeout nothing meets) unless the key says
/// 0 means never.
/// The `[stats]` settings: when replica statistics are taken.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsoleSettings {
    /// Address the staff console (接続端末の画面, `--target=console`) listens on.
    pub host: String,
    /// Port of the staff console; 0 picks a free port.
    pub port: u16,
    /// Base URL of the API the console calls with each staff member's own token.
    pub api_url: String,
    /// PEM CA bundle the API's certificate must chain to (https `api_url`); empty = system roots.
    pub api_ca_file: String,
    /// Base URL for `POST /v1/auth/token`; empty = `api_url` (admin's Service in a cluster, so
    /// no ingress hop is added to the client-address header the login lockout counts).
    pub login_url: String,
    /// Key sealing the session cookie (base64 of 64 bytes): every console replica needs the
    /// same one, and changing it signs everybody out.
    pub cookie_key: SecretString,
    /// Minutes without a request after which a session ends (never later than its token).
    pub idle_minutes: u64,
    /// Public keys the console checks signed tree heads (情報提供等記録) against,
    /// "kid=base64"; empty trusts the public half of `audit.signing_key` (one deployment).
    pub tree_head_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatsSettings {
    /// Japan time (HH:MM) a scheduled snapshot is taken on its day: after the night's batch,
    /// so the counts include it.
    #[serde(deserialize_with = "japan_time")]
    pub snapshot_at: chrono::NaiveTime,
    /// How often the scheduler looks whether a snapshot is due (key `scheduler_poll_secs`).
    #[serde(rename = "scheduler_poll_secs", deserialize_with = "duration::secs")]
    pub scheduler_poll: Duration,
    /// Replica migration windows (移行期間): a snapshot every Saturday inside them, besides
    /// the monthly one on the first Saturday.
    #[serde(default)]
    pub migration_windows: Vec<MigrationWindow>,
    /// An organisation is listed as behind its registration schedule when its replicas fall
    /// short of the plan due by more than this share of it (0.2 = more than 20 % short).
    pub behind_plan_share: f64,
    /// Unacknowledged `stats.exchange` deliveries the statistics service holds at once: what
    /// one counting transaction is made of under a backlog.
    pub prefetch: u16,
}

/// A replica migration window, its first and last Japan dates included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct MigrationWindow {
    pub from: chrono::NaiveDate,
    pub to: chrono::NaiveDate,
}

/// A Japan time of day written `HH:MM`.
fn japan_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono::NaiveTime, D::Error> {
    use serde::de::Error as _;
    let text = String::deserialize(d)?;
    chrono::NaiveTime::parse_from_str(&text, "%H:%M")
        .map_err(|_| D::Error::custom(format!("{text:?} is not a time written HH:MM")))
}

mod duration {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, de::Error as _};

    fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match u64::deserialize(d)? {
            0 => Err(D::Error::custom("must be at least 1")),
            n => Ok(n),
        }
    }

    pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        positive(d).map(Duration::from_millis)
    }

    pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        positive(d).map(Duration::from_secs)
    }

    pub fn millis_or_never<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let n = u64::deserialize(d)?;
        Ok((n > 0).then(|| Duration::from_millis(n)))
    }

    pub fn secs_or_never<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let n = u64::deserialize(d)?;
        Ok((n > 0).then(|| Duration::from_secs(n)))
    }
}

/// Dates stay strings here so this crate needs no date library; `chukan-core` parses them.
pub mod chrono_like {
    pub type Date = String;
}

/// Secrets as files: for each secret key `K`, a sibling `K_file` names a file (a mounted
/// Kubernetes Secret) whose content becomes `K`, so no secret has to travel in the
/// environment, where `/proc/<pid>/environ`, crash reports and `kubectl describe` show it.
mod secret_files {
    use config::{ConfigBuilder, builder::DefaultState};

    use super::{DEFAULTS_TOML, SettingsError};

    /// Each secret key and its `_file` sibling (both spelled out: errors name them).
    pub(super) const SECRET_KEYS: [(&str, &str); 11] = [
        ("database.url", "database.url_file"),
        ("database.app_password", "database.app_password_file"),
        ("amqp.url", "amqp.url_file"),
        ("crypto.kek", "crypto.kek_file"),
        ("auth.signing_key", "auth.signing_key_file"),
        ("relay.signing_key", "relay.signing_key_file"),
        ("audit.signing_key", "audit.signing_key_file"),
        ("console.cookie_key", "console.cookie_key_file"),
        ("nws_sim.signing_key", "nws_sim.signing_key_file"),
        ("nws_sim.code_secret", "nws_sim.code_secret_file"),
        ("nws_sim.database_url", "nws_sim.database_url_file"),
    ];

    /// Reads every `K_file` that is set and overrides `K` with its content. Errors name the
    /// keys and the path, never a value or the file's content.
    pub(super) fn apply(
        builder: ConfigBuilder<DefaultState>,
    ) -> Result<ConfigBuilder<DefaultState>, SettingsError> {
        let layered = builder.clone().build()?;
        let defaults = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULTS_TOML,
                config::FileFormat::Toml,
            ))
            .build()?;
        let mut builder = builder;
        for (key, file_key) in SECRET_KEYS {
            let path = match layered.get_string(file_key) {
                Ok(path) if !path.is_empty() => path,
                Ok(_) | Err(config::ConfigError::NotFound(_)) => continue,
                Err(error) => return Err(error.into()),
            };
            // Two sources for one secret: which one wins would be a guess, so neither does.
            if layered.get_string(key).ok() != defaults.get_string(key).ok() {
                return Err(SettingsError::Invalid {
                    key: file_key,
                    reason: format!("{key} is set as well; set only one of them"),
                });
            }
            let content = std::fs::read_to_string(&path).map_err(|error| {
                // The io error says what went wrong (missing, permission, not UTF-8); it
                // never carries the file's bytes.
                SettingsError::Invalid {
                    key: file_key,
                    reason: format!("cannot read {path}: {error}"),
                }
            })?;
            // Secrets written by `echo` or `kubectl create secret --from-file` end in a newline
            // that is not part of the secret.
            let secret = content.trim_end_matches(['\n', '\r']);
            if secret.is_empty() {
                return Err(SettingsError::Invalid {
                    key: file_key,
                    reason: format!("{path} is empty"),
                });
            }
            builder = builder.set_override(key, secret)?;
        }
        Ok(builder)
    }
}

impl Settings {
    /// Defaults, then `file` if given, then `CHUKAN__…` from the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_with(file, std::env::vars())
    }

    /// As [`Settings::load`] with an explicit environment (tests).
    pub fn load_with(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULTS_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("CHUKAN__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("CHUKAN")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("amqp.retry_delays_ms")
                .with_list_parse_key("relay.nws_public_keys")
                .with_list_parse_key("console.tree_head_keys")
                .with_list_parse_key("cells.peer_api_urls")
                .with_list_parse_key("nws_sim.delivery_retry_ms")
                .with_list_parse_key("calendar.planned_outages")
                .with_list_parse_key("provision.slot_items")
                .with_list_parse_key("provision.upload_slots")
                .with_list_parse_key("provision.blocked_days")
                .try_parsing(true)
                .source(Some(env)),
        );
        let builder = secret_files::apply(builder)?;
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The TLS keys of the data links agree with each other and with the URLs. Messages name
    /// keys only: the URLs may carry passwords.
    fn validate_tls(&self) -> Result<(), SettingsError> {
        let amqps = self.amqp.url.to_ascii_lowercase().starts_with("amqps://");
        match (self.amqp.tls_mode, amqps) {
            (TlsMode::VerifyFull, false) => {
                return Err(SettingsError::Invalid {
                    key: "amqp.tls_mode",
                    reason: "verify-full needs an amqps:// amqp.url".into(),
                });
            }
            // lapin would otherwise pick its own trust store for an amqps:// URL; the mode
            // decides how the broker is checked, so it has to say so.
            (TlsMode::Disable, true) => {
                return Err(SettingsError::Invalid {
                    key: "amqp.tls_mode",
                    reason: "an amqps:// amqp.url needs tls_mode = \"verify-full\"".into(),
                });
            }
            _ => {}
        }
        for (cert_key, cert, key_key, key) in [
            (
                "database.client_cert_file",
                &self.database.client_cert_file,
                "database.client_key_file",
                &self.database.client_key_file,
            ),
            (
                "amqp.client_cert_file",
                &self.amqp.client_cert_file,
                "amqp.client_key_file",
                &self.amqp.client_key_file,
            ),
        ] {
            if cert.is_empty() != key.is_empty() {
                let missing = if cert.is_empty() { cert_key } else { key_key };
                return Err(SettingsError::Invalid {
                    key: missing,
                    reason: "a client certificate needs both its certificate and key file".into(),
                });
            }
        }
        Ok(())
    }

    /// Checks what types alone cannot, so a bad setting stops the process at start.
    /// The cell's name, its peer doors and the replay window (ADR 0006).
    fn validate_cells(&self) -> Result<(), SettingsError> {
        if !matches!(self.region.as_str(), "east" | "west") {
            return Err(SettingsError::Invalid {
                key: "region",
                reason: format!("must be east or west, not {:?}", self.region),
            });
        }
        if let Some(url) = self
            .cells
            .peer_api_urls
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(SettingsError::Invalid {
                key: "cells.peer_api_urls",
                reason: format!("{url:?} is not an http:// or https:// URL"),
            });
        }
        if let Some(window) = self.amqp.outbox_replay_window {
            let chain_ms: u64 = self.amqp.retry_delays_ms.iter().sum();
            if window.as_millis() <= u128::from(chain_ms) {
                return Err(SettingsError::Invalid {
                    key: "amqp.outbox_replay_window_secs",
                    reason: format!(
                        "must exceed the retry chain (amqp.retry_delays_ms sums to {} s), or be 0",
                        chain_ms.div_ceil(1000)
                    ),
                });
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), SettingsError> {
        self.validate_tls()?;
        self.validate_cells()?;
        if self.amqp.retry_delays_ms.is_empty() {
            return Err(SettingsError::Invalid {
                key: "amqp.retry_delays_ms",
                reason: "at least one delay is needed".into(),
            });
        }
        // Counts that size a pool, a batch, a window or a pace: zero would stall the work.
        // Checked here once, so no use site needs a guard of its own.
        let counts: [(&'static str, u64); 13] = [
            ("database.pool_max_size", self.database.pool_max_size as u64),
            ("amqp.prefetch", self.amqp.prefetch.into()),
            ("audit.prefetch", self.audit.prefetch.into()),
            ("stats.prefetch", self.stats.prefetch.into()),
            ("audit.append_batch_max", self.audit.append_batch_max as u64),
            (
                "audit.tree_head_every_records",
                self.audit.tree_head_every_records,
            ),
            ("audit.retention_years", self.audit.retention_years.into()),
            (
                "provision.batch_chunk_entries",
                self.provision.batch_chunk_entries as u64,
            ),
            ("relay.send_concurrency", self.relay.send_concurrency as u64),
            (
                "relay.release_per_second",
                self.relay.release_per_second.into(),
            ),
            (
                "nws_sim.delivery_concurrency",
                self.nws_sim.delivery_concurrency as u64,
            ),
            ("selfinfo.batch", self.selfinfo.batch.into()),
            ("inquiry.bulk_max_lines", self.inquiry.bulk_max_lines as u64),
        ];
        if !(self.stats.behind_plan_share > 0.0 && self.stats.behind_plan_share < 1.0) {
            return Err(SettingsError::Invalid {
                key: "stats.behind_plan_share",
                reason: "must be between 0 and 1 (exclusive)".into(),
            });
        }
        if let Some(w) = self.stats.migration_windows.iter().find(|w| w.from > w.to) {
            return Err(SettingsError::Invalid {
                key: "stats.migration_windows",
                reason: format!("window {} – {} ends before it starts", w.from, w.to),
            });
        }
        if let Some((key, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(SettingsError::Invalid {
                key,
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::load_with(None, env(&[])).unwrap();
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.auth.max_failed_logins, 5);
        assert_eq!(s.amqp.retry_delays_ms.len(), 5);
    }

    #[test]
    fn environment_overrides_nested_keys_and_lists() {
        let s = Settings::load_with(
            None,
            env(&[
                ("CHUKAN__SERVER__PORT", "0"),
                ("CHUKAN__DATABASE__APP_PASSWORD", "s3cret"),
                ("CHUKAN__AMQP__RETRY_DELAYS_MS", "10,20"),
                ("CHUKAN__CALENDAR__PLANNED_OUTAGES", "2026-06-17,2026-06-30"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 0);
        assert_eq!(s.database.app_password.expose_secret(), "s3cret");
        assert_eq!(s.amqp.retry_delays_ms, vec![10, 20]);
        assert_eq!(s.calendar.planned_outages.len(), 2);
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = std::env::temp_dir().join(format!("chukan-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("site.toml");
        std::fs::write(&file, "region = \"west\"\n[server]\nport = 1234\n").unwrap();
        let s = Settings::load_with(Some(&file), env(&[("CHUKAN__SERVER__PORT", "4321")])).unwrap();
        assert_eq!(s.region, "west");
        assert_eq!(s.server.port, 4321);
    }

    #[test]
    fn bad_values_stop_the_load() {
        let err = Settings::load_with(None, env(&[("CHUKAN__TELEMETRY__LOG_FORMAT", "xml")]))
            .unwrap_err();
        assert!(err.to_string().contains("telemetry.log_format"));
        assert!(Settings::load_with(None, env(&[("CHUKAN__SERVER__PORT", "many")])).is_err());
        // Each mistake is named by its key, at load, not found later at a use site.
        for (var, value, key) in [
            ("CHUKAN__AMQP__OUTBOX_POLL_MS", "0", "outbox_poll_ms"),
            ("CHUKAN__AMQP__BACKLOG_SAMPLE_MS", "0", "backlog_sample_ms"),
            ("CHUKAN__AMQP__QUEUE_TYPE", "fast", "queue_type"),
            ("CHUKAN__INQUIRY__BULK_ENCODING", "latin-1", "bulk_encoding"),
            ("CHUKAN__SELFINFO__BATCH", "0", "selfinfo.batch"),
            (
                "CHUKAN__RELAY__SEND_CONCURRENCY",
                "0",
                "relay.send_concurrency",
            ),
        ] {
            let err = Settings::load_with(None, env(&[(var, value)])).unwrap_err();
            assert!(err.to_string().contains(key), "{var}={value}: {err}");
        }
    }

    #[test]
    fn durations_and_choices_are_typed_at_load() {
        let s = Settings::load_with(
            None,
            env(&[
                ("CHUKAN__AMQP__OUTBOX_POLL_MS", "250"),
                ("CHUKAN__AMQP__QUEUE_EXPIRES_MS", "0"),
                ("CHUKAN__AMQP__QUEUE_TYPE", "classic"),
                ("CHUKAN__SELFINFO__LEASE_SECS", "90"),
            ]),
        )
        .unwrap();
        assert_eq!(s.amqp.outbox_poll, Duration::from_millis(250));
        assert_eq!(s.amqp.backlog_sample, Duration::from_secs(15));
        assert_eq!(s.amqp.queue_expires, None, "0 means never");
        assert_eq!(s.amqp.queue_type, QueueType::Classic);
        assert_eq!(s.selfinfo.lease, Duration::from_secs(90));
        assert_eq!(s.inquiry.bulk_encoding, BulkEncoding::Utf8);
    }

    /// A fresh directory for one test's secret files.
    fn secret_dir(test: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "chukan-config-secrets-{}-{test}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_secret_file_wins_over_the_default_and_loses_its_trailing_newline() {
        let dir = secret_dir("wins");
        let password = dir.join("app-password");
        std::fs::write(&password, "from-the-file\n").unwrap();
        let kek = dir.join("kek");
        std::fs::write(&kek, "a2VrLWZyb20tYS1maWxl\r\n").unwrap();
        let settings_file = dir.join("chukan.toml");
        std::fs::write(
            &settings_file,
            format!("[crypto]\nkek_file = {:?}\n", kek.display().to_string()),
        )
        .unwrap();
        let s = Settings::load_with(
            Some(&settings_file),
            env(&[(
                "CHUKAN__DATABASE__APP_PASSWORD_FILE",
                password.to_str().unwrap(),
            )]),
        )
        .unwrap();
        assert_eq!(s.database.app_password.expose_secret(), "from-the-file");
        assert_eq!(s.crypto.kek.expose_secret(), "a2VrLWZyb20tYS1maWxl");
        // Keys whose _file is empty keep their value.
        assert_eq!(s.auth.signing_kid, "admin-dev-1");
        assert!(s.database.url.starts_with("postgres://"));
    }

    #[test]
    fn every_listed_secret_can_come_from_a_file() {
        let dir = secret_dir("every");
        let mut vars = Vec::new();
        for (key, _) in secret_files::SECRET_KEYS {
            let path = dir.join(key);
            std::fs::write(&path, format!("file-{key}\n")).unwrap();
            let var = format!("CHUKAN__{}_FILE", key.replace('.', "__").to_uppercase());
            vars.push((var, path.display().to_string()));
        }
        let s = Settings::load_with(None, vars).unwrap();
        assert_eq!(s.database.url, "file-database.url");
        assert_eq!(s.amqp.url, "file-amqp.url");
        assert_eq!(s.nws_sim.database_url, "file-nws_sim.database_url");
        for (got, key) in [
            (&s.database.app_password, "database.app_password"),
            (&s.crypto.kek, "crypto.kek"),
            (&s.auth.signing_key, "auth.signing_key"),
            (&s.relay.signing_key, "relay.signing_key"),
            (&s.audit.signing_key, "audit.signing_key"),
            (&s.console.cookie_key, "console.cookie_key"),
            (&s.nws_sim.signing_key, "nws_sim.signing_key"),
            (&s.nws_sim.code_secret, "nws_sim.code_secret"),
        ] {
            assert_eq!(got.expose_secret(), format!("file-{key}"));
        }
    }

    #[test]
    fn a_secret_set_twice_is_refused_without_showing_it() {
        let dir = secret_dir("twice");
        let path = dir.join("cookie");
        std::fs::write(&path, "cookie-from-file").unwrap();
        let err = Settings::load_with(
            None,
            env(&[
                ("CHUKAN__CONSOLE__COOKIE_KEY", "cookie-from-env"),
                ("CHUKAN__CONSOLE__COOKIE_KEY_FILE", path.to_str().unwrap()),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("console.cookie_key_file"), "{err}");
        assert!(err.contains("console.cookie_key is set as well"), "{err}");
        assert!(!err.contains("cookie-from-"), "a secret leaked: {err}");
    }

    #[test]
    fn a_missing_or_empty_secret_file_is_named_by_its_key() {
        let dir = secret_dir("missing");
        let missing = dir.join("no-such-file");
        let err = Settings::load_with(
            None,
            env(&[("CHUKAN__AMQP__URL_FILE", missing.to_str().unwrap())]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("amqp.url_file"), "{err}");
        assert!(
            err.contains("no-such-file"),
            "the path helps the operator: {err}"
        );

        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = Settings::load_with(
            None,
            env(&[("CHUKAN__AUDIT__SIGNING_KEY_FILE", empty.to_str().unwrap())]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("audit.signing_key_file"), "{err}");
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn an_unreadable_secret_file_never_shows_its_content() {
        // Not UTF-8: the read fails after the bytes were read; the message must not carry them.
        let dir = secret_dir("binary");
        let path = dir.join("binary");
        std::fs::write(&path, b"very-secret-\xff\xfe-bytes").unwrap();
        let err = Settings::load_with(
            None,
            env(&[("CHUKAN__RELAY__SIGNING_KEY_FILE", path.to_str().unwrap())]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("relay.signing_key_file"), "{err}");
        assert!(!err.contains("very-secret"), "content leaked: {err}");
    }

    #[test]
    fn tls_modes_agree_with_the_urls() {
        let s = Settings::load_with(None, env(&[])).unwrap();
        assert_eq!(s.database.tls_mode, TlsMode::Disable);
        assert_eq!(s.amqp.tls_mode, TlsMode::Disable);

        let s = Settings::load_with(
            None,
            env(&[
                ("CHUKAN__DATABASE__TLS_MODE", "verify-full"),
                ("CHUKAN__DATABASE__CA_FILE", "/etc/chukan/tls/db-ca.pem"),
                ("CHUKAN__AMQP__TLS_MODE", "verify-full"),
                ("CHUKAN__AMQP__URL", "amqps://u:p@rabbitmq.chukan:5671/east"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database.tls_mode, TlsMode::VerifyFull);
        assert_eq!(s.database.ca_file, "/etc/chukan/tls/db-ca.pem");
        assert_eq!(s.amqp.tls_mode, TlsMode::VerifyFull);

        for (pairs, key) in [
            (
                vec![
                    ("CHUKAN__AMQP__TLS_MODE", "verify-full"),
                    ("CHUKAN__AMQP__URL", "amqp://u:hunter2@rabbitmq:5672/east"),
                ],
                "amqp.tls_mode",
            ),
            (
                vec![("CHUKAN__AMQP__URL", "amqps://u:hunter2@rabbitmq:5671/east")],
                "amqp.tls_mode",
            ),
            (
                vec![("CHUKAN__DATABASE__TLS_MODE", "verify-ca")],
                "database.tls_mode",
            ),
            (
                vec![("CHUKAN__DATABASE__CLIENT_CERT_FILE", "/tls/client.pem")],
                "database.client_key_file",
            ),
            (
                vec![("CHUKAN__AMQP__CLIENT_KEY_FILE", "/tls/client.key")],
                "amqp.client_cert_file",
            ),
        ] {
            let err = Settings::load_with(None, env(&pairs))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{pairs:?}: {err}");
            assert!(!err.contains("hunter2"), "a password leaked: {err}");
        }
    }

    #[test]
    fn a_lease_check_must_fit_twice_in_the_abandon_time() {
        let s = Settings::load_with(None, env(&[])).unwrap();
        assert_eq!(s.lease.retry, Duration::from_secs(5));
        assert!(s.lease.check * 2 < s.lease.abandon);
        let err = Settings::load_with(
            None,
            env(&[
                ("CHUKAN__LEASE__CHECK_SECS", "10"),
                ("CHUKAN__LEASE__ABANDON_SECS", "20"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("lease.check_secs"), "{err}");
        assert!(Settings::load_with(None, env(&[("CHUKAN__LEASE__RETRY_SECS", "0")])).is_err());
    }

    #[test]
    fn every_default_key_is_documented() {
        // A key line must follow a comment line (or another documented key's comment block).
        let mut previous_was_comment = false;
        for line in DEFAULTS_TOML.lines() {
            let t = line.trim();
            if t.starts_with('#') {
                previous_was_comment = true;
            } else if t.starts_with('"') || t.starts_with(']') {
                // Continuation of a multi-line array: part of the key above it.
            } else if t.is_empty() || t.starts_with('[') {
                previous_was_comment = t.starts_with('[') && previous_was_comment;
            } else {
                assert!(previous_was_comment, "undocumented key: {t}");
                previous_was_comment = false;
            }
        }
    }
}
