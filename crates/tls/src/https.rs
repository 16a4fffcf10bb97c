//! HTTP clients that verify whom they talk to: every `reqwest` client chukan makes towards
//! the NWS, admin's JWKS, the API (the console) and the relays (nws-sim) starts from
//! [`client_builder`], so the CA and client certificate settings apply to all of them alike.
//!
//! A configured CA replaces the system's roots (a private CA should not be joined by every
//! public one); the server's name is always checked against the URL's host.

use std::sync::Arc;

/// Which files one HTTPS client trusts and presents, under their settings keys (every error
/// names the key). An empty path is "not set".
#[derive(Debug, Clone, Copy)]
pub struct ClientTls<'a> {
    /// `(settings key, path)` of the PEM CA bundle; empty = the system's roots.
    pub ca: (&'static str, &'a str),
    /// `(settings key, path)` of the PEM client certificate chain; empty = none presented.
    pub client_cert: (&'static str, &'a str),
    /// `(settings key, path)` of the client certificate's PEM private key.
    pub client_key: (&'static str, &'a str),
}

impl<'a> ClientTls<'a> {
    /// Only a CA (clients that present no certificate of their own).
    pub fn ca_only(key: &'static str, path: &'a str) -> ClientTls<'a> {
        ClientTls {
            ca: (key, path),
            client_cert: ("", ""),
            client_key: ("", ""),
        }
    }

    /// Towards the NWS: `relay.nws_ca_file`, `relay.nws_client_cert_file`/`_key_file`.
    pub fn nws(s: &'a chukan_config::RelaySettings) -> ClientTls<'a> {
        ClientTls {
            ca: ("relay.nws_ca_file", &s.nws_ca_file),
            client_cert: ("relay.nws_client_cert_file", &s.nws_client_cert_file),
            client_key: ("relay.nws_client_key_file", &s.nws_client_key_file),
        }
    }

    /// Towards admin's JWKS: `auth.jwks_ca_file`.
    pub fn jwks(s: &'a chukan_config::AuthSettings) -> ClientTls<'a> {
        ClientTls::ca_only("auth.jwks_ca_file", &s.jwks_ca_file)
    }

    /// The console towards the API: `console.api_ca_file`.
    pub fn console_api(s: &'a chukan_config::ConsoleSettings) -> ClientTls<'a> {
        ClientTls::ca_only("console.api_ca_file", &s.api_ca_file)
    }

    /// nws-sim's deliveries to relays: `nws_sim.delivery_*`.
    pub fn nws_sim_delivery(s: &'a chukan_config::NwsSimSettings) -> ClientTls<'a> {
        ClientTls {
            ca: ("nws_sim.delivery_ca_file", &s.delivery_ca_file),
            client_cert: (
                "nws_sim.delivery_client_cert_file",
                &s.delivery_client_cert_file,
            ),
            client_key: (
                "nws_sim.delivery_client_key_file",
                &s.delivery_client_key_file,
            ),
        }
    }
}

/// A `reqwest` client builder with `tls` applied; the caller adds its timeouts and builds.
///
/// With nothing configured it is reqwest's own (the system's roots). Otherwise the
/// connections use the rustls config of [`crate::client::client_config`] (the CA file's
/// roots only, the server's name checked), and a client certificate is read again when its
/// files change, as a server's is: cert-manager renews client certificates in place too.
pub fn client_builder(tls: &ClientTls<'_>) -> anyhow::Result<reqwest::ClientBuilder> {
    let builder = reqwest::Client::builder();
    let (cert_key, cert_path) = tls.client_cert;
    let (key_key, key_path) = tls.client_key;
    if tls.ca.1.is_empty() && cert_path.is_empty() && key_path.is_empty() {
        return Ok(builder);
    }
    let roots_only = ClientTls {
        ca: tls.ca,
        client_cert: ("", ""),
        client_key: ("", ""),
    };
    let mut config = crate::client::client_config(&roots_only)?;
    match (cert_path.is_empty(), key_path.is_empty()) {
        (true, true) => {}
        (false, true) => anyhow::bail!("setting {cert_key} is set but {key_key} is not"),
        (true, false) => anyhow::bail!("setting {key_key} is set but {cert_key} is not"),
        (false, false) => {
            config.client_auth_cert_resolver = Arc::new(crate::server::ReloadingCert::load(
                (cert_key, cert_path.to_owned()),
                (key_key, key_path.to_owned()),
                config.crypto_provider().clone(),
            )?);
        }
    }
    // reqwest is built without HTTP/2 here: say so in the handshake.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(builder.tls_backend_preconfigured(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls<'a>(ca: &'a str, cert: &'a str, key: &'a str) -> ClientTls<'a> {
        ClientTls {
            ca: ("t.ca", ca),
            client_cert: ("t.cert", cert),
            client_key: ("t.key", key),
        }
    }

    #[test]
    fn nothing_configured_is_reqwests_own_client_and_mistakes_name_their_key() {
        assert!(client_builder(&tls("", "", "")).unwrap().build().is_ok());
        for (case, key) in [
            (tls("/nonexistent/ca.pem", "", ""), "t.ca"),
            (tls("", "/c.pem", ""), "t.key"),
            (tls("", "", "/k.pem"), "t.cert"),
            (
                tls("", "/nonexistent/c.pem", "/nonexistent/k.pem"),
                "t.cert",
            ),
        ] {
            let err = client_builder(&case).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{err:#}");
        }
    }
}
