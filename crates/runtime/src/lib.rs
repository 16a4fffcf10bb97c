//! What every chukan service is given ([`Context`]) and what it gives back ([`Parts`]),
//! and the one HTTP server their routes are mounted on.
//!
//! The binary builds one `Context` per process, calls each selected service's
//! `start(&ctx)`, mounts every service's routes with [`http_server`] and runs the workers;
//! on SIGTERM it stops them stage by stage (see [`StopStage`]). Tests use the same path
//! through `chukan-testkit`, so what is tested is what runs.

mod hours;

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, dev::Server, middleware, web, web::ServiceConfig};
use anyhow::Context as _;
use chukan_config::Settings;
use chukan_core::{Clock, ServiceCalendar, problem};
use secrecy::ExposeSecret;

pub use chukan_core::worker::{StopStage, Worker};
pub use hours::HoursGate;

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
}

/// Routes a service mounts on the shared HTTP server (called once per HTTP worker).
pub type Routes = Arc<dyn Fn(&mut ServiceConfig) + Send + Sync>;

/// What a started service hands back to the binary.
pub struct Parts {
    pub name: &'static str,
    pub routes: Option<Routes>,
    pub workers: Vec<Worker>,
}

/// Connects everything a service needs; fails fast with the setting that is wrong.
pub async fn build_context(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Context> {
    let db = chukan_db::app_pool(&settings.database).context("database pool")?;
    let bus = chukan_mq::Bus::connect(&settings.amqp)
        .await
        .context("RabbitMQ connection")?;
    bus.declare_topology().await.context("RabbitMQ topology")?;
    let kek = chukan_crypto::Kek::from_base64(settings.crypto.kek.expose_secret())
        .context("setting crypto.kek")?;
    let calendar = ServiceCalendar::from_strings(&settings.calendar.planned_outages)
        .context("setting calendar.planned_outages")?;
    let tokens =
        chukan_auth::TokenVerifier::from_settings(&settings.auth).context("settings auth.*")?;
    Ok(Context {
        settings: Arc::new(settings),
        db,
        bus,
        kek,
        clock,
        calendar: Arc::new(calendar),
        tokens: Arc::new(tokens),
    })
}

/// The public API server: every service's routes behind one listener, with RED metrics,
/// problem+json for bad JSON, paths and queries, the token verifier for `Caller`, and the
/// service-hour gate.
pub fn http_server(
    ctx: &Context,
    routes: Vec<Routes>,
    listener: TcpListener,
    metrics_label: &'static str,
) -> std::io::Result<Server> {
    let tokens = web::Data::from(ctx.tokens.clone());
    let json_limit = ctx.settings.server.json_limit_bytes;
    let hours = web::Data::new(HoursGate {
        calendar: ctx.calendar.clone(),
        clock: ctx.clock.clone(),
        enforce: ctx.settings.calendar.enforce_service_hours,
    });
    let workers = match ctx.settings.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .wrap(middleware::from_fn(hours::gate))
            .wrap(chukan_telemetry::http_metrics(metrics_label))
            .app_data(hours.clone())
            .app_data(problem::json_config(json_limit))
            .app_data(problem::path_config())
            .app_data(problem::query_config())
            .app_data(tokens.clone());
        for r in &routes {
            let r = r.clone();
            app = app.configure(move |cfg| r(cfg));
        }
        app.default_service(web::to(problem::not_found_route))
    })
    .workers(workers)
    // The binary drives shutdown itself (stage by stage), not actix's signal handler.
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
