//! Each configured certificate's expiry as a metric:
//! `chukan_tls_certificate_expiry_timestamp_seconds{certificate="<settings key>"}`, the Unix
//! time of the earliest notAfter among the certificates in that file (a chain is only as
//! good as its first member to expire; for a CA bundle, the first CA to go). Files rotate in
//! place, so the gauge is refreshed every [`REFRESH_EVERY`]. A file that exists but cannot
//! be read as certificates reads 0 (expired), so the alert fires instead of the series
//! silently vanishing; a file that is not there is not reported (a pod mounts only what its
//! target uses, and a target that needs it fails at start).
//!
//! The alert `ChukanCertificateExpiringSoon` is in `monitoring/rules/`; what to do is in
//! `docs/runbooks/certificate-expiry.md`.

use std::{
    path::{Path, PathBuf},
    sync::LazyLock,
    time::Duration,
};

use anyhow::Context as _;
use prometheus::{GaugeVec, Opts};

/// How often the gauge is refreshed from the files.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// Name of the gauge.
pub const METRIC: &str = "chukan_tls_certificate_expiry_timestamp_seconds";

static EXPIRY: LazyLock<Option<GaugeVec>> = LazyLock::new(|| {
    let gauge = GaugeVec::new(
        Opts::new(
            METRIC,
            "Unix time at which the earliest-expiring certificate in a configured PEM file \
             (by settings key) stops being valid; 0 when the file cannot be read.",
        ),
        &["certificate"],
    )
    .ok()?;
    // Registering twice (two copies of the crate in one test binary) is harmless.
    let _ = prometheus::default_registry().register(Box::new(gauge.clone()));
    Some(gauge)
});

/// One certificate-holding file to watch, under its settings key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub key: &'static str,
    pub path: PathBuf,
}

fn configured(pairs: impl IntoIterator<Item = (&'static str, String)>) -> Vec<Watched> {
    pairs
        .into_iter()
        .filter(|(_, path)| !path.is_empty())
        .map(|(key, path)| Watched {
            key,
            path: PathBuf::from(path),
        })
        .collect()
}

/// The certificate files a chukan process (any `--target`) is configured with: the API's,
/// the relay's, the HTTPS clients' CAs and client certificates, PostgreSQL's and RabbitMQ's.
pub fn chukan_files(s: &chukan_config::Settings) -> Vec<Watched> {
    configured([
        ("server.tls_cert_file", s.server.tls_cert_file.clone()),
        (
            "relay.inbound_tls_cert_file",
            s.relay.inbound_tls_cert_file.clone(),
        ),
        (
            "relay.inbound_client_ca_file",
            s.relay.inbound_client_ca_file.clone(),
        ),
        ("relay.nws_ca_file", s.relay.nws_ca_file.clone()),
        (
            "relay.nws_client_cert_file",
            s.relay.nws_client_cert_file.clone(),
        ),
        ("auth.jwks_ca_file", s.auth.jwks_ca_file.clone()),
        ("console.api_ca_file", s.console.api_ca_file.clone()),
        ("database.ca_file", s.database.ca_file.clone()),
        (
            "database.client_cert_file",
            s.database.client_cert_file.clone(),
        ),
        ("amqp.ca_file", s.amqp.ca_file.clone()),
        ("amqp.client_cert_file", s.amqp.client_cert_file.clone()),
    ])
}

/// The certificate files the NWS simulator (`chukan nws-sim`) is configured with.
pub fn nws_sim_files(s: &chukan_config::NwsSimSettings) -> Vec<Watched> {
    configured([
        ("nws_sim.tls_cert_file", s.tls_cert_file.clone()),
        ("nws_sim.client_ca_file", s.client_ca_file.clone()),
        ("nws_sim.delivery_ca_file", s.delivery_ca_file.clone()),
        (
            "nws_sim.delivery_client_cert_file",
            s.delivery_client_cert_file.clone(),
        ),
    ])
}

/// The earliest notAfter (Unix seconds) among the PEM certificates in `path`.
pub fn earliest_not_after(path: &Path) -> anyhow::Result<i64> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut earliest: Option<i64> = None;
    for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let block = block.with_context(|| format!("{} is not PEM", path.display()))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block
            .parse_x509()
            .with_context(|| format!("a certificate in {} does not parse", path.display()))?;
        let not_after = cert.validity().not_after.timestamp();
        earliest = Some(earliest.map_or(not_after, |e| e.min(not_after)));
    }
    earliest.with_context(|| format!("{} holds no PEM certificate", path.display()))
}

/// Reads every watched file once and sets its gauge.
pub fn refresh(files: &[Watched]) {
    let Some(gauge) = EXPIRY.as_ref() else {
        return;
    };
    for file in files {
        if !file.path.exists() {
            let _ = gauge.remove_label_values(&[file.key]);
            continue;
        }
        let value = match earliest_not_after(&file.path) {
            Ok(t) => t as f64,
            Err(e) => {
                tracing::error!(certificate = file.key, error = %format!("{e:#}"), "certificate expiry unreadable");
                0.0
            }
        };
        gauge.with_label_values(&[file.key]).set(value);
    }
}

/// The gauge's value for `key` (tests, diagnostics); `None` when not reported.
pub fn reported(key: &str) -> Option<f64> {
    use prometheus::core::Collector as _;
    let families = EXPIRY.as_ref()?.collect();
    families
        .iter()
        .flat_map(|f| f.get_metric())
        .find(|m| m.get_label().iter().any(|l| l.value() == key))
        .map(|m| m.get_gauge().value())
}

/// Refreshes the gauge now and then every [`REFRESH_EVERY`] on the current tokio runtime,
/// until the returned task is aborted (or the runtime ends). Nothing configured: no task.
pub fn spawn_refresher(files: Vec<Watched>) -> Option<tokio::task::JoinHandle<()>> {
    if files.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut every = tokio::time::interval(REFRESH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let batch = files.clone();
            // File reads off the async threads; a failure is logged and retried next tick.
            let _ = tokio::task::spawn_blocking(move || refresh(&batch)).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_not_after_in_a_bundle_is_reported_and_an_unreadable_file_reads_zero() {
        let dir = std::env::temp_dir().join(format!("chukan-tls-expiry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = |year: i32| {
            let k = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(vec!["x.test".to_owned()]).unwrap();
            p.not_after = rcgen::date_time_ymd(year, 3, 4);
            p.self_signed(&k).unwrap().pem()
        };
        let bundle = dir.join("ca.pem");
        std::fs::write(&bundle, format!("{}{}", cert(2031), cert(2029))).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let files = vec![
            Watched {
                key: "test.bundle",
                path: bundle,
            },
            Watched {
                key: "test.garbage",
                path: garbage,
            },
            Watched {
                key: "test.absent",
                path: dir.join("absent.pem"),
            },
        ];
        refresh(&files);
        // 2029-03-04T00:00:00Z
        assert_eq!(reported("test.bundle"), Some(1_867_276_800.0));
        assert_eq!(reported("test.garbage"), Some(0.0));
        assert_eq!(reported("test.absent"), None);
        std::fs::remove_dir_all(&dir).ok();
    }
}
