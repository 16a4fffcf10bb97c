//! The operations listener: `/metrics`, `/livez`, `/readyz` on a port of their own, so
//! probes and scrapes never queue behind API traffic and are never exposed with the API.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{App, HttpResponse, HttpServer, dev::Server, http::header, web};
use anyhow::Context as _;
use futures_util::future::{BoxFuture, join_all};
use prometheus::{Encoder, TextEncoder};

/// One readiness condition (database reachable, bus connected…); `true` when ready.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// A check that has not answered by then counts as failed: a probe must not hang.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Checks(Arc<Vec<(&'static str, ReadinessCheck)>>);

/// The bound, not yet running operations listener.
pub struct OpsServer {
    port: u16,
    start: Box<dyn FnOnce() -> Server>,
}

impl OpsServer {
    /// Binds `s.host:s.port` (port 0 picks a free one) and prepares the routes.
    pub fn bind(
        s: &chukan_config::MetricsSettings,
        checks: Vec<(&'static str, ReadinessCheck)>,
    ) -> anyhow::Result<OpsServer> {
        let listener = TcpListener::bind((s.host.as_str(), s.port))
            .with_context(|| format!("binding the operations listener {}:{}", s.host, s.port))?;
        let port = listener.local_addr()?.port();
        let checks = Checks(Arc::new(checks));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(checks.clone()))
                .route("/metrics", web::get().to(metrics))
                .route("/livez", web::get().to(livez))
                .route("/readyz", web::get().to(readyz))
        })
        // Probes and scrapes are light; one worker keeps the process small.
        .workers(1)
        // The binary owns SIGTERM and stops this server in its shutdown order.
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .context("starting the operations listener")?;
        Ok(OpsServer {
            port,
            start: Box::new(move || server.run()),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server future; spawn or await it, stop it through `Server::handle()`.
    pub fn run(self) -> Server {
        (self.start)()
    }
}

async fn metrics() -> HttpResponse {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&prometheus::gather(), &mut body) {
        Ok(()) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, encoder.format_type()))
            .body(body),
        Err(err) => {
            tracing::error!(error = %err, "metrics could not be encoded");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// Alive while the process can answer at all; restarts are for hangs, not for outages of
/// dependencies (that is what readiness is for).
async fn livez() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"alive"}"#)
}

async fn readyz(checks: web::Data<Checks>) -> HttpResponse {
    let results = join_all(checks.0.iter().map(|(name, check)| {
        let pending = check();
        async move {
            let ready = tokio::time::timeout(CHECK_TIMEOUT, pending)
                .await
                .unwrap_or(false);
            (*name, ready)
        }
    }))
    .await;
    let failed: Vec<&str> = results
        .into_iter()
        .filter_map(|(name, ready)| (!ready).then_some(name))
        .collect();
    if failed.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        tracing::warn!(failed = ?failed, "not ready");
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "not_ready", "failed": failed }))
    }
}
