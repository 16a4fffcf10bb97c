//! Certificates and private keys read from PEM files (mounted Secrets), never from values.
//!
//! Every error names the settings key and the path, which tell the operator what to fix, and
//! never the file's content: a key file's bytes are the secret itself, and even a malformed
//! line of it is part of that secret.

use anyhow::Context as _;
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer,
    pem::{self, PemObject as _},
};

/// The certificates in the PEM file at `path` (a chain leaf first, or a CA bundle), for the
/// setting `key`. A file without a certificate is an error: an empty trust store refuses
/// every server, which is not what anybody means.
pub fn certificates(key: &str, path: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| malformed(key, path, &error))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "setting {key}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    );
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`, for the
/// setting `key`.
pub fn private_key(key: &str, path: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        pem::Error::NoItemsFound => anyhow::anyhow!(
            "setting {key}: {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"
        ),
        other => malformed(key, path, &other),
    })
}

fn read(key: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(!path.is_empty(), "setting {key} is empty");
    std::fs::read(path).with_context(|| format!("setting {key}: cannot read {path}"))
}

/// What is wrong with the PEM, in words that carry none of its bytes: the parser's own
/// messages quote the offending line, which may be part of a key.
fn malformed(key: &str, path: &str, error: &pem::Error) -> anyhow::Error {
    let what = match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        pem::Error::NoItemsFound => "nothing of the expected kind",
        _ => "unreadable PEM",
    };
    anyhow::anyhow!("setting {key}: {path} is not valid PEM: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(test: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("chukan-tls-pem-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(dir: &std::path::Path, name: &str, content: &[u8]) -> String {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    #[test]
    fn certificates_and_keys_are_read() {
        let dir = dir("read");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let bundle = format!("{}{}", cert.pem(), cert.pem());
        let certs = certificates("x.ca_file", &write(&dir, "ca.pem", bundle.as_bytes())).unwrap();
        assert_eq!(certs.len(), 2);
        let read = private_key(
            "x.key_file",
            &write(&dir, "key.pem", key.serialize_pem().as_bytes()),
        )
        .unwrap();
        assert_eq!(read.secret_der(), key.serialized_der());
    }

    #[test]
    fn errors_name_the_key_and_path_but_never_the_content() {
        let dir = dir("errors");
        let err = certificates("database.ca_file", "/no/such/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("database.ca_file") && err.contains("/no/such/ca.pem"),
            "{err}"
        );

        let err = certificates("amqp.ca_file", &write(&dir, "empty.pem", b""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("amqp.ca_file") && err.contains("no PEM certificate"),
            "{err}"
        );

        let err = private_key("amqp.client_key_file", "")
            .unwrap_err()
            .to_string();
        assert!(err.contains("amqp.client_key_file is empty"), "{err}");

        // A key file with a broken section: its base64 is the secret and must not show.
        let broken = b"-----BEGIN PRIVATE KEY-----\nU2VjcmV0S2V5TWF0ZXJpYWw=\n";
        let err = format!(
            "{:#}",
            private_key(
                "database.client_key_file",
                &write(&dir, "broken.pem", broken)
            )
            .unwrap_err()
        );
        assert!(err.contains("database.client_key_file"), "{err}");
        assert!(!err.contains("U2VjcmV0"), "content leaked: {err}");

        let bad_start = b"-----BEGIN PRIVATE KEY U2VjcmV0S2V5TWF0ZXJpYWw=\n";
        let err = format!(
            "{:#}",
            private_key("k", &write(&dir, "bad-start.pem", bad_start)).unwrap_err()
        );
        assert!(!err.contains("U2VjcmV0"), "content leaked: {err}");

        let err = private_key("k", &write(&dir, "cert-only.pem", b""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM private key"), "{err}");
    }
}
