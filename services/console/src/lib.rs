//! 接続端末の画面 (the staff console): server-rendered Japanese pages for municipal staff.
//!
//! The console holds no data and opens no database: every page calls the same HTTP API as a
//! business system, with the signed-in staff member's own token, so there is exactly one
//! authorization path. The token lives only inside a sealed session cookie.

mod api;
mod assets;
mod form;
mod pages;
mod security;
mod session;
mod view;

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{App, HttpServer, dev::Server, middleware, web};
use anyhow::Context as _;
use chukan_config::Settings;
use secrecy::ExposeSecret;

pub use api::Api;

/// What every request handler shares.
pub struct Console {
    pub api: Api,
    pub sessions: session::Sealer,
    /// Where the browser's address comes from, and the header the API reads it from
    /// (`auth.client_address_header`): the API's login lockout must see the staff member's
    /// terminal, not the console.
    pub address_header: Option<actix_web::http::header::HeaderName>,
    /// Public keys signed tree heads are checked against: the console verifies a record's
    /// inclusion proof itself instead of trusting the API's word.
    pub tree_head_keys: chukan_crypto::Verifiers,
    /// The operating status, fetched at most every few seconds for everybody.
    pub(crate) status: pages::home::StatusCache,
}

impl Console {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Console> {
        let c = &settings.console;
        let idle = Duration::from_secs(c.idle_minutes.saturating_mul(60));
        if idle.is_zero() {
            anyhow::bail!("setting console.idle_minutes must be positive");
        }
        let header = settings.auth.client_address_header.trim();
        let address_header = (!header.is_empty())
            .then(|| actix_web::http::header::HeaderName::from_bytes(header.as_bytes()))
            .transpose()
            .map_err(|_| anyhow::anyhow!("setting auth.client_address_header is no header name"))?;
        Ok(Console {
            api: Api::new(c, address_header.clone())?,
            sessions: session::Sealer::from_base64(c.cookie_key.expose_secret(), idle)
                .context("setting console.cookie_key")?,
            address_header,
            status: Default::default(),
            tree_head_keys: tree_head_keys(settings)?,
        })
    }
}

/// `console.tree_head_keys`, or else the public half of the audit service's own key (as the
/// token verifier trusts `auth.signing_key` when no JWKS is configured).
fn tree_head_keys(settings: &Settings) -> anyhow::Result<chukan_crypto::Verifiers> {
    let entries = &settings.console.tree_head_keys;
    if !entries.is_empty() {
        return chukan_crypto::Verifiers::parse_entries(entries)
            .context("setting console.tree_head_keys");
    }
    let audit = &settings.audit;
    let signer = chukan_crypto::Signer::from_seed_base64(
        &audit.signing_kid,
        audit.signing_key.expose_secret(),
    )
    .context("setting audit.signing_key")?;
    let mut keys = chukan_crypto::Verifiers::default();
    keys.add_bytes(signer.kid(), &signer.verifying_key_bytes())
        .context("setting audit.signing_key")?;
    Ok(keys)
}

/// The console's HTTP server on `listener`.
pub fn server(console: Console, listener: TcpListener, workers: usize) -> std::io::Result<Server> {
    let console = web::Data::new(console);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(security::headers())
            .wrap(chukan_telemetry::http_metrics("console"))
            .wrap(middleware::from_fn(chukan_telemetry::boundary))
            .app_data(console.clone())
            .app_data(form::config())
            .configure(assets::routes)
            .configure(pages::routes)
            .default_service(web::to(pages::not_found))
    })
    .workers(workers)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// A readiness check: the API answers.
pub fn api_check(console: &Console) -> chukan_telemetry::ReadinessCheck {
    let api = console.api.clone();
    Arc::new(move || {
        let api = api.clone();
        Box::pin(async move { api.is_up().await })
    })
}
