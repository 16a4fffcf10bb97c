//! Verifying client configs for the data links: PostgreSQL (`verify-full`) and RabbitMQ
//! (`amqps`), and any other rustls client.
//!
//! The server's certificate must chain to the configured CA — only that CA: a private CA is
//! not joined by the public ones — or to the system's roots when none is configured, and must
//! name the host the client dialled. A client certificate is presented when one is set.
//!
//! The crypto provider (aws-lc-rs) is given explicitly, so nothing depends on a
//! process-wide default having been installed first.

use std::sync::Arc;

use anyhow::Context as _;
use rustls::{ClientConfig, RootCertStore};

pub use crate::https::ClientTls;
use crate::pem;

impl<'a> ClientTls<'a> {
    /// Towards PostgreSQL: `database.ca_file`, `database.client_cert_file`/`_key_file`.
    pub fn database(s: &'a chukan_config::DatabaseSettings) -> ClientTls<'a> {
        ClientTls {
            ca: ("database.ca_file", &s.ca_file),
            client_cert: ("database.client_cert_file", &s.client_cert_file),
            client_key: ("database.client_key_file", &s.client_key_file),
        }
    }

    /// Towards RabbitMQ: `amqp.ca_file`, `amqp.client_cert_file`/`_key_file`.
    pub fn amqp(s: &'a chukan_config::AmqpSettings) -> ClientTls<'a> {
        ClientTls {
            ca: ("amqp.ca_file", &s.ca_file),
            client_cert: ("amqp.client_cert_file", &s.client_cert_file),
            client_key: ("amqp.client_key_file", &s.client_key_file),
        }
    }
}

/// A rustls client config for `tls`: the chain checked up to the CA file (or the system's
/// roots when it is empty), the server name checked against the host the caller connects to,
/// the client certificate presented when set. Errors name the settings keys.
pub fn client_config(tls: &ClientTls<'_>) -> anyhow::Result<ClientConfig> {
    let roots = trusted_roots(tls.ca)?;
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("the TLS crypto provider supports no protocol version")?
    .with_root_certificates(roots);
    let (cert_key, cert_path) = tls.client_cert;
    let (key_key, key_path) = tls.client_key;
    match (cert_path.is_empty(), key_path.is_empty()) {
        (true, true) => Ok(builder.with_no_client_auth()),
        (false, true) => anyhow::bail!("setting {cert_key} is set but {key_key} is not"),
        (true, false) => anyhow::bail!("setting {key_key} is set but {cert_key} is not"),
        (false, false) => {
            let chain = pem::certificates(cert_key, cert_path)?;
            let key = pem::private_key(key_key, key_path)?;
            builder.with_client_auth_cert(chain, key).with_context(|| {
                format!("settings {cert_key} and {key_key}: the key does not fit the certificate")
            })
        }
    }
}

/// The CA file's certificates, or the system's roots when the path is empty.
fn trusted_roots((key, path): (&'static str, &str)) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if path.is_empty() {
        // Unreadable entries in the system store are skipped, as every TLS client does; an
        // empty result is not (it would refuse every server with an unhelpful message).
        let system = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(system.certs);
        anyhow::ensure!(
            added > 0,
            "setting {key} is empty and the system has no CA certificates (install \
             ca-certificates or set {key})"
        );
    } else {
        for cert in pem::certificates(key, path)? {
            roots.add(cert).with_context(|| {
                format!("setting {key}: {path} holds an invalid CA certificate")
            })?;
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(test: &str, name: &str, content: &str) -> String {
        let dir =
            std::env::temp_dir().join(format!("chukan-tls-client-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    fn ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
    }

    #[test]
    fn a_ca_file_and_a_client_certificate_make_a_config() {
        let ca = ca();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client = rcgen::CertificateParams::new(vec!["chukan".into()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();
        let tls = ClientTls {
            ca: ("amqp.ca_file", &write("ok", "ca.pem", &ca.pem())),
            client_cert: (
                "amqp.client_cert_file",
                &write("ok", "c.pem", &client.pem()),
            ),
            client_key: (
                "amqp.client_key_file",
                &write("ok", "k.pem", &client_key.serialize_pem()),
            ),
        };
        let config = client_config(&tls).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn half_an_identity_or_a_mismatched_key_is_refused_by_key_name() {
        let ca = ca();
        let ca_path = write("half", "ca.pem", &ca.pem());
        let other_key = rcgen::KeyPair::generate().unwrap();
        let cert_path = write("half", "c.pem", &ca.pem());
        let key_path = write("half", "k.pem", &other_key.serialize_pem());
        let err = client_config(&ClientTls {
            ca: ("database.ca_file", &ca_path),
            client_cert: ("database.client_cert_file", &cert_path),
            client_key: ("database.client_key_file", ""),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("database.client_key_file"), "{err}");

        let err = format!(
            "{:#}",
            client_config(&ClientTls {
                ca: ("database.ca_file", &ca_path),
                client_cert: ("database.client_cert_file", &cert_path),
                client_key: ("database.client_key_file", &key_path),
            })
            .unwrap_err()
        );
        assert!(err.contains("does not fit"), "{err}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let err = client_config(&ClientTls::ca_only(
            "database.ca_file",
            &write("none", "ca.pem", "not a certificate\n"),
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("database.ca_file"), "{err}");
    }
}
