//! Layered settings for chukan: embedded defaults → optional file → `CHUKAN__…` environment.
//!
//! The defaults file (`defaults.toml`) is the documentation: every key carries a comment,
//! and `chukan config --print-defaults` prints it as it is.

use std::path::Path;

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
    /// Longest wait for a pooled connection (then 503 with `Retry-After`), in milliseconds.
    pub pool_wait_timeout_ms: u64,
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
    /// Outbox polling interval when not woken, in milliseconds.
    pub outbox_poll_ms: u64,
    /// "quorum" or "classic" for work and dead-letter queues.
    pub queue_type: String,
    /// Idle queue expiry in milliseconds; 0 = never.
    pub queue_expires_ms: u64,
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
    /// Timeout of one send to the NWS, in milliseconds.
    pub send_timeout_ms: u64,
    /// Outbound sends in flight at once.
    pub send_concurrency: usize,
    /// Messages held in the send/receive stop window released per second once open.
    pub release_per_second: u32,
    /// How often the NWS readiness check is repeated while it fails, in milliseconds.
    pub readiness_poll_ms: u64,
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
    /// "json" or "pretty".
    pub log_format: String,
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
    /// Longest drain on SIGTERM, in seconds.
    pub grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProvisionSettings {
    /// Japan time (HH:MM) of the nightly batch.
    pub nightly_batch_at: String,
    /// Scheduler clock check interval, seconds.
    pub scheduler_poll_secs: u64,
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
    /// Character encoding of bulk inquiry files: "utf-8" or "shift_jis".
    pub bulk_encoding: String,
    /// How often requests past their 30-day validity are marked expired, in seconds.
    pub expiry_sweep_secs: u64,
    /// Largest number of results confirmed by one bulk confirmation.
    pub confirm_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    /// Ed25519 seed (base64 of 32 bytes) the audit service signs tree heads with.
    pub signing_key: SecretString,
    /// Key id of signing_key, stored beside every signed tree head.
    pub signing_kid: String,
    /// How often tree heads are signed for tenants whose log grew, in seconds.
    pub tree_head_interval_secs: u64,
    /// Sign a tree head as soon as a tenant's log grew by this many records.
    pub tree_head_every_records: u64,
    /// Most records appended in one transaction (one tenant's share of a consumer batch).
    pub append_batch_max: usize,
    /// Unacknowledged audit.record deliveries the consumer holds at once; bounds a batch.
    pub prefetch: u16,
    /// Records older than this many years are purged (番号法 §23: period set by cabinet order).
    pub retention_years: u32,
    /// How often the retention purge runs in the service, in seconds (0 = only by the CLI).
    pub purge_interval_secs: u64,
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
        if !matches!(self.telemetry.log_format.as_str(), "json" | "pretty") {
            return Err(SettingsError::Invalid {
                key: "telemetry.log_format",
                reason: format!(
                    "expected json or pretty, got {:?}",
                    self.telemetry.log_format
                ),
            });
        }
        if self.amqp.retry_delays_ms.is_empty() {
            return Err(SettingsError::Invalid {
                key: "amqp.retry_delays_ms",
                reason: "at least one delay is needed".into(),
            });
        }
        if !matches!(self.amqp.queue_type.as_str(), "quorum" | "classic") {
            return Err(SettingsError::Invalid {
                key: "amqp.queue_type",
                reason: format!("expected quorum or classic, got {:?}", self.amqp.queue_type),
            });
        }
        if !matches!(self.inquiry.bulk_encoding.as_str(), "utf-8" | "shift_jis") {
            return Err(SettingsError::Invalid {
                key: "inquiry.bulk_encoding",
                reason: format!(
                    "expected utf-8 or shift_jis, got {:?}",
                    self.inquiry.bulk_encoding
                ),
            });
        }
        if self.relay.release_per_second == 0 {
            return Err(SettingsError::Invalid {
                key: "relay.release_per_second",
                reason: "must be at least 1".into(),
            });
        }
        if self.audit.prefetch == 0 || self.audit.append_batch_max == 0 {
            return Err(SettingsError::Invalid {
                key: "audit.prefetch",
                reason: "audit.prefetch and audit.append_batch_max must be at least 1".into(),
            });
        }
        if self.audit.retention_years == 0 {
            return Err(SettingsError::Invalid {
                key: "audit.retention_years",
                reason: "must be at least 1".into(),
            });
        }
        if self.amqp.prefetch == 0 {
            return Err(SettingsError::Invalid {
                key: "amqp.prefetch",
                reason: "must be at least 1".into(),
            });
        }
        if self.provision.batch_chunk_entries == 0 {
            return Err(SettingsError::Invalid {
                key: "provision.batch_chunk_entries",
                reason: "must be at least 1".into(),
            });
        }
        if self.database.pool_max_size == 0 {
            return Err(SettingsError::Invalid {
                key: "database.pool_max_size",
                reason: "must be at least 1".into(),
            });
        }
        if self.database.pool_wait_timeout_ms == 0 {
            return Err(SettingsError::Invalid {
                key: "database.pool_wait_timeout_ms",
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
