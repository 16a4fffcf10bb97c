//! Running services: build the context, start the selected services, serve, and shut down
//! stage by stage on SIGTERM (stop intake → drain consumers → flush outboxes).

use std::{net::TcpListener, sync::Arc};

use anyhow::Context as _;
use chukan_config::Settings;
use chukan_core::SystemClock;
use chukan_runtime::{Context, Parts, Worker};
use futures_util::{FutureExt, future::select_all};

use crate::{cli::Target, services::SERVICES};

pub use crate::services::{all_migrations, all_queues};

/// Declares [`all_queues`] (with their dead and retry queues) on `bus`.
pub async fn declare_all_queues(bus: &chukan_mq::Bus) -> anyhow::Result<()> {
    for spec in all_queues() {
        bus.declare_queue(&spec)
            .await
            .with_context(|| format!("declaring queue {}", spec.name))?;
    }
    Ok(())
}

/// For `chukan migrate` (a Helm pre-upgrade Job): the exchanges and every queue, so nothing
/// published between the migration and the last Deployment coming up is lost.
pub async fn declare_bus(settings: &chukan_config::AmqpSettings) -> anyhow::Result<()> {
    let bus = chukan_mq::Bus::connect(settings)
        .await
        .context("RabbitMQ connection")?;
    let declared = async {
        bus.declare_topology().await.context("RabbitMQ topology")?;
        declare_all_queues(&bus).await
    }
    .await;
    bus.close().await;
    declared
}

async fn start_services(ctx: &Context, target: Target) -> anyhow::Result<Vec<Parts>> {
    let mut parts = Vec::new();
    for service in SERVICES.iter().filter(|s| target.includes(s.target)) {
        let started = (service.start)(ctx)
            .await
            .with_context(|| format!("start {}", service.target.label()))?;
        parts.push(started);
    }
    Ok(parts)
}

pub async fn run(settings: Settings, target: Target) -> anyhow::Result<()> {
    let _telemetry = chukan_telemetry::init(target.label(), &settings.telemetry)?;
    let ctx = chukan_runtime::build_context(settings, Arc::new(SystemClock)).await?;
    // Each configured certificate's expiry on /metrics, re-read as the files rotate.
    let expiry =
        chukan_tls::expiry::spawn_refresher(chukan_tls::expiry::chukan_files(&ctx.settings));
    declare_all_queues(&ctx.bus).await?;
    let parts = start_services(&ctx, target).await?;

    // Every process follows the planned outages platform operators announce.
    let mut workers: Vec<Worker> =
        chukan_runtime::calendar_sync::start(&ctx.bus, ctx.calendar.clone());
    // Every target also serves the whole API's document, for the one entry in front of them.
    let mut routes = vec![crate::openapi::entry_routes()?];
    let mut docs = Vec::new();
    for p in parts {
        tracing::info!(service = p.name, "service started");
        routes.extend(p.routes);
        docs.extend(p.openapi);
        workers.extend(p.workers);
    }

    let s = &ctx.settings;
    let listener = TcpListener::bind((s.server.host.as_str(), s.server.port))
        .with_context(|| format!("bind API on {}:{}", s.server.host, s.server.port))?;
    let api_addr = listener.local_addr()?;
    let server = chukan_runtime::http_server(&ctx, routes, docs, listener, target.label())?;
    let server_handle = server.handle();
    let server_task = tokio::spawn(server);

    let db = ctx.db.clone();
    let bus = ctx.bus.clone();
    let ops = chukan_telemetry::OpsServer::bind(
        &s.metrics,
        vec![
            (
                "postgres",
                Arc::new(move || {
                    let db = db.clone();
                    async move { chukan_db::ping(&db).await }.boxed()
                }),
            ),
            (
                "rabbitmq",
                Arc::new(move || {
                    let bus = bus.clone();
                    async move { bus.is_healthy().await }.boxed()
                }),
            ),
        ],
    )?;
    tracing::info!(api = %api_addr, ops_port = ops.port(), target = target.label(), "chukan serving");
    let ops_server = ops.run();
    let ops_handle = ops_server.handle();
    tokio::spawn(ops_server);

    // Wait for a signal, or for any worker or the API server to stop by itself.
    let mut finished: Vec<_> = workers
        .iter_mut()
        .map(|w| {
            let name = w.name.clone();
            std::mem::replace(&mut w.finished, futures_util::future::pending().boxed())
                .map(move |r| (name, r))
                .boxed()
        })
        .collect();
    finished.push(
        async move {
            let r = match server_task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::Error::new(e)),
                Err(e) => Err(anyhow::Error::new(e)),
            };
            ("http".to_string(), r)
        }
        .boxed(),
    );
    let exit: anyhow::Result<()> = tokio::select! {
        _ = shutdown_signal() => { tracing::info!("shutdown requested"); Ok(()) }
        ((name, result), _, _) = select_all(finished) => {
            match result {
                Ok(()) => { tracing::warn!(worker = %name, "worker stopped by itself"); Ok(()) }
                Err(e) => { tracing::error!(worker = %name, error = %format!("{e:#}"), "worker died"); Err(e.context(name)) }
            }
        }
    };

    let grace = ctx.settings.shutdown.grace;
    // Stop intake first so no new work arrives while the rest drains.
    server_handle.stop(true).await;
    workers.sort_by_key(|w| w.stage);
    for w in workers {
        let name = w.name.clone();
        if tokio::time::timeout(grace, (w.stop)()).await.is_err() {
            tracing::warn!(worker = %name, "did not drain within the grace period");
        }
    }
    ops_handle.stop(true).await;
    if let Some(task) = expiry {
        task.abort();
    }
    ctx.bus.close().await;
    tracing::info!("stopped");
    exit
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
