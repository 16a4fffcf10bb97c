//! Server configs for the listeners chukan serves itself: the public API (when TLS does not
//! end at the ingress), the relay's inbound door for the NWS (mutual TLS, ARCHITECTURE §3)
//! and nws-sim's own door.
//!
//! The certificate and key are re-read when their files change: cert-manager renews a
//! mounted Secret in place, and a listener must pick the new certificate up without a
//! restart. The client CA (who may call) is read once at start; changing it is a rollout.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
pub use rustls::ServerConfig;
use rustls::{
    RootCertStore, SignatureScheme,
    client::ResolvesClientCert,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};

/// How often, at most, a handshake looks whether the certificate files changed. Renewal
/// happens weeks before expiry, so a minute's delay costs nothing; the look is two `stat`s.
const RELOAD_CHECK: Duration = Duration::from_secs(60);

/// A listener's TLS settings as written: paths (empty = not set) under their settings keys,
/// which every error names.
#[derive(Debug, Clone, Copy)]
pub struct ServerFiles<'a> {
    /// `(settings key, path)` of the PEM certificate chain, leaf first.
    pub cert: (&'static str, &'a str),
    /// `(settings key, path)` of the PEM private key.
    pub key: (&'static str, &'a str),
    /// `(settings key, path)` of the PEM CA bundle client certificates must chain to;
    /// empty path = no client certificate asked for.
    pub client_ca: (&'static str, &'a str),
}

impl ServerFiles<'_> {
    /// The public API: `server.tls_cert_file`, `server.tls_key_file`, no client certificates.
    pub fn api(s: &chukan_config::ServerSettings) -> ServerFiles<'_> {
        ServerFiles {
            cert: ("server.tls_cert_file", &s.tls_cert_file),
            key: ("server.tls_key_file", &s.tls_key_file),
            client_ca: ("", ""),
        }
    }

    /// The relay's inbound door: `relay.inbound_tls_*`, the NWS's client certificate checked
    /// against `relay.inbound_client_ca_file` when it is set.
    pub fn relay_inbound(s: &chukan_config::RelaySettings) -> ServerFiles<'_> {
        ServerFiles {
            cert: ("relay.inbound_tls_cert_file", &s.inbound_tls_cert_file),
            key: ("relay.inbound_tls_key_file", &s.inbound_tls_key_file),
            client_ca: ("relay.inbound_client_ca_file", &s.inbound_client_ca_file),
        }
    }

    /// The NWS simulator's door: `nws_sim.tls_*`, relays' client certificates checked against
    /// `nws_sim.client_ca_file` when it is set.
    pub fn nws_sim(s: &chukan_config::NwsSimSettings) -> ServerFiles<'_> {
        ServerFiles {
            cert: ("nws_sim.tls_cert_file", &s.tls_cert_file),
            key: ("nws_sim.tls_key_file", &s.tls_key_file),
            client_ca: ("nws_sim.client_ca_file", &s.client_ca_file),
        }
    }
}

/// The rustls config a listener serves with, or `None` when no certificate is configured
/// (plain HTTP): `HttpServer::listen_rustls_0_23` with it, `listen` without. A certificate without its key (or the reverse), a client CA without a
/// certificate, or a file that cannot be read is an error naming the settings key.
pub fn server_config(files: &ServerFiles<'_>) -> anyhow::Result<Option<ServerConfig>> {
    let (cert_key, cert_path) = files.cert;
    let (key_key, key_path) = files.key;
    let (ca_key, ca_path) = files.client_ca;
    match (cert_path.is_empty(), key_path.is_empty()) {
        (true, true) if ca_path.is_empty() => return Ok(None),
        (true, true) => {
            anyhow::bail!(
                "setting {ca_key} needs {cert_key} and {key_key}: a client certificate can only be asked for over TLS"
            )
        }
        (false, true) => anyhow::bail!("setting {cert_key} is set but {key_key} is not"),
        (true, false) => anyhow::bail!("setting {key_key} is set but {cert_key} is not"),
        (false, false) => {}
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = ReloadingCert::load(
        (cert_key, cert_path.to_owned()),
        (key_key, key_path.to_owned()),
        provider.clone(),
    )?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if ca_path.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for cert in crate::pem::certificates(ca_key, ca_path)? {
            roots
                .add(cert)
                .with_context(|| format!("setting {ca_key}: a certificate is not a usable CA"))?;
        }
        // A client without a certificate is refused in the handshake (no anonymous
        // fallback): on this door only the holder of such a certificate may speak.
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .with_context(|| format!("setting {ca_key}: client certificate verifier"))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(config))
}

/// A certificate and key from files, re-read when their modification times change: the
/// serving certificate of a listener, and the client certificate of an HTTPS client
/// ([`crate::https`]).
#[derive(Debug)]
pub(crate) struct ReloadingCert {
    cert: (&'static str, String),
    key: (&'static str, String),
    provider: Arc<CryptoProvider>,
    current: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    certified: Arc<CertifiedKey>,
    stamps: [Option<SystemTime>; 2],
    checked: Instant,
}

impl ReloadingCert {
    pub(crate) fn load(
        cert: (&'static str, String),
        key: (&'static str, String),
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<ReloadingCert> {
        let stamps = stamps(&cert.1, &key.1);
        let certified = Arc::new(certified_key(&cert, &key, &provider)?);
        Ok(ReloadingCert {
            current: Mutex::new(Loaded {
                certified,
                stamps,
                checked: Instant::now(),
            }),
            cert,
            key,
            provider,
        })
    }

    /// The certificate to serve: the one loaded, or a newer one if the files changed since.
    /// A half-rotated pair (new certificate, old key) is not served: the loaded one stays
    /// until both files agree again.
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let mut loaded = self.current.lock().ok()?;
        if loaded.checked.elapsed() >= RELOAD_CHECK {
            loaded.checked = Instant::now();
            let now = stamps(&self.cert.1, &self.key.1);
            if now != loaded.stamps {
                match certified_key(&self.cert, &self.key, &self.provider) {
                    Ok(fresh) => {
                        tracing::info!(certificate = self.cert.0, "TLS certificate reloaded");
                        loaded.certified = Arc::new(fresh);
                        loaded.stamps = now;
                    }
                    Err(e) => tracing::warn!(
                        certificate = self.cert.0,
                        error = %format!("{e:#}"),
                        "TLS certificate files changed but could not be loaded; serving the previous one"
                    ),
                }
            }
        }
        Some(loaded.certified.clone())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn stamps(cert: &str, key: &str) -> [Option<SystemTime>; 2] {
    // metadata() follows symlinks: a Secret volume swaps its `..data` link on update, and
    // the files it points to are new.
    [cert, key].map(|p| {
        std::fs::metadata(Path::new(p))
            .and_then(|m| m.modified())
            .ok()
    })
}

fn certified_key(
    cert: &(&'static str, String),
    key: &(&'static str, String),
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = crate::pem::certificates(cert.0, &cert.1)?;
    let private = crate::pem::private_key(key.0, &key.1)?;
    CertifiedKey::from_der(chain, private, provider)
        .with_context(|| format!("settings {} and {}: key and certificate", cert.0, key.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files<'a>(cert: &'a str, key: &'a str, ca: &'a str) -> ServerFiles<'a> {
        ServerFiles {
            cert: ("t.cert", cert),
            key: ("t.key", key),
            client_ca: ("t.ca", ca),
        }
    }

    #[test]
    fn nothing_configured_is_plain_http() {
        assert!(server_config(&files("", "", "")).unwrap().is_none());
    }

    #[test]
    fn half_a_pair_or_a_client_ca_alone_is_an_error_naming_the_key() {
        let e = server_config(&files("/c.pem", "", "")).unwrap_err();
        assert!(e.to_string().contains("t.key"), "{e}");
        let e = server_config(&files("", "/k.pem", "")).unwrap_err();
        assert!(e.to_string().contains("t.cert"), "{e}");
        let e = server_config(&files("", "", "/ca.pem")).unwrap_err();
        assert!(e.to_string().contains("t.ca"), "{e}");
        let e = server_config(&files("/nonexistent/c.pem", "/nonexistent/k.pem", "")).unwrap_err();
        assert!(format!("{e:#}").contains("t.cert"), "{e:#}");
    }

    #[test]
    fn a_renewed_certificate_is_served_after_the_files_change() {
        let dir = std::env::temp_dir().join(format!("chukan-tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let write = |name: &str| {
            let k = rcgen::KeyPair::generate().unwrap();
            let c = rcgen::CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .self_signed(&k)
                .unwrap();
            std::fs::write(&cert, c.pem()).unwrap();
            std::fs::write(&key, k.serialize_pem()).unwrap();
            c.der().to_vec()
        };
        let first = write("first.test");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let resolver = ReloadingCert::load(
            ("c", cert.display().to_string()),
            ("k", key.display().to_string()),
            provider,
        )
        .unwrap();
        assert_eq!(resolver.current().unwrap().cert[0].as_ref(), first);

        // Files rewritten with a later modification time; the check interval is past.
        let second = write("second.test");
        let later = SystemTime::now() + Duration::from_secs(5);
        for p in [&cert, &key] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        resolver.current.lock().unwrap().checked = Instant::now() - RELOAD_CHECK;
        assert_eq!(resolver.current().unwrap().cert[0].as_ref(), second);

        // A half-rotated pair (a key that does not match) keeps the loaded certificate.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key, other.serialize_pem()).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&key)
            .unwrap()
            .set_modified(later + Duration::from_secs(5))
            .unwrap();
        resolver.current.lock().unwrap().checked = Instant::now() - RELOAD_CHECK;
        assert_eq!(resolver.current().unwrap().cert[0].as_ref(), second);
        std::fs::remove_dir_all(&dir).ok();
    }
}
