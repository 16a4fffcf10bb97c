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
    /// Region this process serves (east or west).
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
    pub provision: ProvisionSettings,
    pub inquiry: InquirySettings,
    pub audit: AuditSettings,
    pub selfinfo: SelfInfoSettings,
    pub stats: StatsSettings,
    pub console: ConsoleSettings,
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
                .with_list_parse_key("nws_sim.delivery_retry_ms")
                .with_list_parse_key("calendar.planned_outages")
                .with_list_parse_key("provision.slot_items")
                .with_list_parse_key("provision.upload_slots")
                .with_list_parse_key("provision.blocked_days")
                .try_parsing(true)
                .source(Some(env)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot, so a bad setting stops the process at start.
    fn validate(&self) -> Result<(), SettingsError> {
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
