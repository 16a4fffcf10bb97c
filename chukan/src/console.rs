//! `--target=console`: the staff console alone. It opens no database and no bus: it is a
//! client of the API (console.api_url), so it scales and fails apart from the services.

use std::net::TcpListener;

use anyhow::Context as _;
use chukan_config::Settings;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let _telemetry = chukan_telemetry::init("console", &settings.telemetry)?;
    let console = chukan_console::Console::from_settings(&settings)?;
    // The expiry of the certificates it trusts (console.api_ca_file) on its own /metrics.
    let expiry = chukan_tls::expiry::spawn_refresher(chukan_tls::expiry::chukan_files(&settings));
    let api_check = chukan_console::api_check(&console);
    let c = &settings.console;
    let listener = TcpListener::bind((c.host.as_str(), c.port))
        .with_context(|| format!("bind console on {}:{}", c.host, c.port))?;
    let addr = listener.local_addr()?;
    let workers = match settings.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let server = chukan_console::server(console, listener, workers)?;
    let handle = server.handle();
    let ops = chukan_telemetry::OpsServer::bind(&settings.metrics, vec![("api", api_check)])?;
    tracing::info!(console = %addr, ops_port = ops.port(), api = %c.api_url, "chukan console serving");
    let ops_server = ops.run();
    let ops_handle = ops_server.handle();
    tokio::spawn(ops_server);
    let served = tokio::spawn(server);
    tokio::select! {
        _ = crate::serve::shutdown_signal() => tracing::info!("shutdown requested"),
        r = served => match r {
            Ok(Ok(())) => tracing::warn!("console server stopped by itself"),
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(e.into()),
        },
    }
    handle.stop(true).await;
    ops_handle.stop(true).await;
    if let Some(task) = expiry {
        task.abort();
    }
    tracing::info!("stopped");
    Ok(())
}
