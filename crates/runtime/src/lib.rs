//! What every chukan service is given ([`Context`]) and what it gives back ([`Parts`]),
//! and the one HTTP server their routes are mounted on.
//!
//! The binary builds one `Context` per process, calls each selected service's
//! `start(&ctx)`, mounts every service's routes with [`http_server`] and runs the workers;
//! on SIGTERM it stops them stage by stage (see [`StopStage`]). Tests use the same path
//! through `chukan-testkit`, so what is tested is what runs.
//!
//! Each service also hands back its part of the OpenAPI document; [`http_server`] merges
//! them into one and serves it at `GET /openapi.json` (public, at any hour).

mod audit;
pub mod calendar_sync;
pub mod code_linked;
mod component;
mod document;
pub mod door;
pub mod homed;
mod hours;
pub mod lease;
mod periodic;
pub mod replication;

use std::{net::TcpListener, sync::Arc};

use actix_web::{
    App, HttpResponse, HttpServer, dev::Server, http::header, middleware, web, web::ServiceConfig,
};
use anyhow::Context as _;
use chukan_config::Settings;
use chukan_core::{Clock, ServiceCalendar, edge, problem};
use secrecy::ExposeSecret;
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder,
    security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

pub use audit::audit_messages;
pub use chukan_core::worker::{StopStage, Worker};
pub use component::component_status;
pub use hours::HoursGate;
pub use periodic::{TaskEnd, batched, periodic_worker};

/// Shared by every service in the process. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    /// Pool of the application role (row-level security applies).
    pub db: chukan_db::Pool,
    pub bus: chukan_mq::Bus,
    pub kek: chukan_crypto::Kek,
    pub clock: Arc<dyn Clock>,
    pub calendar: Arc<ServiceCalendar>,
    pub tokens: Arc<chukan_auth::TokenVerifier>,
    /// Which organisations this cell holds (ADR 0006): asked by the API door and the relay.
    pub homed: Arc<homed::HomedTenants>,
}

/// Routes a service mounts on the shared HTTP server (called once per HTTP worker).
pub type Routes = Arc<dyn Fn(&mut ServiceConfig) + Send + Sync>;

/// What a started service hands back to the binary.
pub struct Parts {
    pub name: &'static str,
    pub routes: Option<Routes>,
    pub workers: Vec<Worker>,
    /// The routes' part of the OpenAPI document; merged with the others at `/openapi.json`.
    pub openapi: Option<OpenApi>,
}

/// The largest JSON body any route takes (`POST /v1/replicas`).
pub const LARGEST_JSON_BODY: usize = 4 * 1024 * 1024;

/// Path of the merged OpenAPI document on the public API server.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Path of the whole API's document, served by every target (the binary serves it in
/// `chukan::openapi`). Behind one entry (the chart's Ingress) consumers reach many
/// Deployments, each of whose [`OPENAPI_PATH`] covers only its own target; the entry routes
/// this path to one of them.
pub const ENTRY_OPENAPI_PATH: &str = "/v1/openapi.json";

/// Name of the security scheme protected operations refer to (`security(("bearer" = []))`).
pub const BEARER_SCHEME: &str = "bearer";

/// One OpenAPI document from the services' parts: title "chukan API", this build's version,
/// and the bearer-JWT scheme their protected operations name.
pub fn openapi_document(parts: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let info = InfoBuilder::new()
        .title("chukan API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "中間サーバー (municipal intermediate server) の REST API。エラーは \
             application/problem+json（日本語の detail と次の操作 action）で返します。",
        ))
        .build();
    let components = ComponentsBuilder::new()
        .security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "POST /v1/auth/token で取得したアクセストークン (EdDSA-signed JWT)",
                    ))
                    .build(),
            ),
        )
        .build();
    let mut doc = OpenApiBuilder::new()
        .info(info)
        .components(Some(components))
        .build();
    for part in parts {
        doc.merge(part);
    }
    doc
}

/// The merged document as published: the services' parts, completed with what the shared
/// edge answers on every operation (see [`document`]).
pub fn openapi_json(parts: impl IntoIterator<Item = OpenApi>) -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi_document(parts)).unwrap_or_default();
    document::complete(&mut doc);
    doc
}

/// The merged document, serialised once at start.
struct OpenApiJson(web::Bytes);

async fn serve_openapi(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(doc.0.clone())
}

/// A pooled connection and `tenant`'s keys: the opening of every handler and consumer that
/// seals or opens a tenant's data. The keys are fetched before any transaction opens, so a
/// key made here for a new tenant never rolls back with the caller's transaction. A pool that
/// cannot lend a connection stays visible in the error's chain (`OrProblem` answers 503).
pub async fn client_with_keys(
    pool: &chukan_db::Pool,
    vault: &chukan_crypto::Vault,
    tenant: &str,
) -> anyhow::Result<(chukan_db::PooledClient, Arc<chukan_crypto::TenantKeys>)> {
    let client = pool.get().await.context("pool")?;
    let keys = vault.keys(&**client, tenant).await.context("keys")?;
    Ok((client, keys))
}

/// Connects everything a service needs; fails fast with the setting that is wrong.
pub async fn build_context(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Context> {
    let db = chukan_db::app_pool(&settings.database).context("database pool")?;
    // Scrape-time saturation gauges, labelled with what the process runs as (`--target`).
    chukan_db::observe_pool(chukan_telemetry::service_name(), &db);
    // The outbox relays keep published bodies for a failover's replay only sealed (ADR 0006).
    let outbox_seal =
        chukan_crypto::OutboxSeal::from_settings(&settings.crypto).context("setting crypto.kek")?;
    let bus = chukan_mq::Bus::connect(&settings.amqp)
        .await
        .context("RabbitMQ connection")?
        .with_outbox_seal(outbox_seal);
    bus.declare_topology().await.context("RabbitMQ topology")?;
    let kek = chukan_crypto::Kek::from_base64(settings.crypto.kek.expose_secret())
        .context("setting crypto.kek")?;
    let calendar = ServiceCalendar::from_strings(&settings.calendar.planned_outages)
        .context("setting calendar.planned_outages")?;
    let tokens =
        chukan_auth::TokenVerifier::from_settings(&settings.auth).context("settings auth.*")?;
    // Read on first use: a process that never asks (or whose database has no admin schema,
    // as some services' tests) never queries admin.tenants.
    let homed = Arc::new(homed::HomedTenants::new(
        db.clone(),
        settings.cells.homed_refresh,
    ));
    Ok(Context {
        settings: Arc::new(settings),
        homed,
        db,
        bus,
        kek,
        clock,
        calendar: Arc::new(calendar),
        tokens: Arc::new(tokens),
    })
}

/// The public API server: every service's routes behind one listener, with RED metrics,
/// problem+json for bad JSON, paths and queries, the token verifier for `Caller`, the
/// service-hour gate, and the services' OpenAPI documents merged at [`OPENAPI_PATH`].
pub fn http_server(
    ctx: &Context,
    routes: Vec<Routes>,
    openapi: Vec<OpenApi>,
    listener: TcpListener,
    metrics_label: &'static str,
) -> std::io::Result<Server> {
    let doc = openapi_json(openapi);
    let mut known = chukan_core::edge::KnownRoutes::from_openapi_json(&doc);
    known.extend([(OPENAPI_PATH, actix_web::http::Method::GET)]);
    let known = web::Data::new(known);
    let openapi = serde_json::to_vec(&doc).map_err(std::io::Error::other)?;
    let openapi = web::Data::new(OpenApiJson(web::Bytes::from(openapi)));
    let tokens = web::Data::from(ctx.tokens.clone());
    let json_limit = ctx.settings.server.json_limit_bytes;
    // The screen reads a JSON body whole up to the largest any route takes (registration
    // lists over REST: 4 MiB), so that a NUL is refused there too; each route's own limit
    // still applies after it.
    let screen_limit = web::Data::new(edge::ScreenLimit(json_limit.max(LARGEST_JSON_BODY)));
    let hours = web::Data::new(HoursGate {
        calendar: ctx.calendar.clone(),
        clock: ctx.clock.clone(),
        enforce: ctx.settings.calendar.enforce_service_hours,
    });
    // HTTPS when `server.tls_cert_file` is set; otherwise TLS ends at the ingress.
    let tls = chukan_tls::server::server_config(&chukan_tls::server::ServerFiles::api(
        &ctx.settings.server,
    ))
    .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    // Any door (ADR 0006): only when peer doors are configured; without the app data the
    // middleware passes every request through.
    let door = door::Door::from_settings(&ctx.settings, ctx.homed.clone())
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?
        .map(web::Data::new);
    let workers = match ctx.settings.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .wrap(middleware::from_fn(hours::gate))
            .wrap(middleware::from_fn(chukan_auth::gate))
            // Outside the auth gate (a peer cell's token is not valid here), inside the
            // boundary (the forwarded request continues the request's trace).
            .wrap(middleware::from_fn(door::door))
            .wrap(middleware::from_fn(edge::screen))
            .wrap(chukan_telemetry::http_metrics(metrics_label))
            .wrap(edge::security_headers())
            // Outermost: the request's span, its support id and its one log line.
            .wrap(middleware::from_fn(chukan_telemetry::boundary))
            .app_data(screen_limit.clone())
            .app_data(known.clone())
            .app_data(hours.clone())
            .app_data(problem::json_config(json_limit))
            .app_data(problem::path_config())
            .app_data(problem::query_config())
            .app_data(tokens.clone())
            .app_data(openapi.clone())
            .route(OPENAPI_PATH, web::get().to(serve_openapi));
        if let Some(door) = &door {
            app = app.app_data(door.clone());
        }
        for r in &routes {
            let r = r.clone();
            app = app.configure(move |cfg| r(cfg));
        }
        app.default_service(web::to(edge::unmatched))
    })
    .workers(workers)
    // The binary drives shutdown itself (stage by stage), not actix's signal handler.
    .disable_signals();
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::{
        HttpMethod, PathItem, PathsBuilder, ResponseBuilder, path::OperationBuilder,
    };

    use super::*;

    fn part(path: &str) -> OpenApi {
        let op = OperationBuilder::new()
            .response("200", ResponseBuilder::new().description("ok").build())
            .build();
        OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path(path, PathItem::new(HttpMethod::Get, op))
                    .build(),
            )
            .build()
    }

    #[test]
    fn the_document_joins_every_part_under_one_title_with_the_bearer_scheme() {
        let doc = openapi_document([part("/v1/a"), part("/v1/b")]);
        assert_eq!(doc.info.title, "chukan API");
        assert_eq!(doc.info.version, env!("CARGO_PKG_VERSION"));
        assert!(doc.paths.paths.contains_key("/v1/a"));
        assert!(doc.paths.paths.contains_key("/v1/b"));
        let components = doc.components.as_ref().map(|c| &c.security_schemes);
        assert!(components.is_some_and(|s| s.contains_key(BEARER_SCHEME)));
    }
}
