//! Simulator of the national Information Provision Network System (情報提供ネットワークシステム,
//! "NWS") for tests and demos.
//!
//! It is a separate party, not a chukan service: it has its own database (migrated by itself,
//! as its owner), its own signing key and its own HTTP listener. Organisations register
//! their relay endpoint and public keys; their relays POST signed envelopes to
//! `/v1/messages`; the simulator answers by delivering signed envelopes back to
//! `{endpoint_url}/nws/v1/messages`, retrying until the organisation takes them. An
//! organisation may register a second door (`standby_endpoint_url`, ADR 0006), tried in the
//! same attempt when the first does not answer or answers 421.

pub mod api;
pub mod beppyo2;
pub mod codes;
mod delivery;
pub mod faults;
mod inquiry;
pub mod metrics;
mod portal_notice;
mod portal_selfinfo;
pub mod store;

use std::{net::TcpListener, sync::Arc};

use actix_web::{App, HttpServer, dev::Server, web};
use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use chukan_config::{DatabaseSettings, NwsSimSettings};
use chukan_core::{Clock, SystemClock, edge, problem};
use chukan_crypto::Signer;
use chukan_db::PgTls;
use secrecy::ExposeSecret as _;
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};

pub use actix_web::dev::ServerHandle;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Largest number of pooled connections to the simulator's database.
const POOL_SIZE: usize = 16;
/// Largest JSON body on the registry and conversion routes.
const JSON_LIMIT_BYTES: usize = 64 * 1024;
/// Advisory-lock key so two simulators never migrate the same database at once.
const MIGRATION_LOCK_KEY: i64 = 0x6368_756b_616e_0e75;

/// A built simulator: listening, delivery worker running, not yet serving until
/// [`NwsSim::run_until_stopped`] is awaited.
pub struct NwsSim {
    port: u16,
    server: Server,
    worker: JoinHandle<()>,
    stop_worker: watch::Sender<bool>,
}

impl NwsSim {
    /// Migrates the simulator's database (creating it if missing), binds `host:port`
    /// (0 = a free port) and starts the delivery worker.
    pub async fn build(settings: &NwsSimSettings) -> anyhow::Result<NwsSim> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`NwsSim::build`], with the clock message timestamps are checked against.
    pub async fn build_with_clock(
        settings: &NwsSimSettings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<NwsSim> {
        Self::build_with(settings, clock, &PgTls::disabled()).await
    }

    /// As [`NwsSim::build_with_clock`], its database reached with `database_tls` (the
    /// binary's `database.tls_mode`, shared with chukan's own database connections).
    pub async fn build_with(
        settings: &NwsSimSettings,
        clock: Arc<dyn Clock>,
        database_tls: &PgTls,
    ) -> anyhow::Result<NwsSim> {
        let signer =
            Signer::from_seed_base64(&settings.signing_kid, settings.signing_key.expose_secret())
                .context("setting nws_sim.signing_key")?;
        let secret = STANDARD
            .decode(settings.code_secret.expose_secret().trim())
            .ok()
            .and_then(|raw| codes::CodeSecret::new(raw).ok())
            .context("setting nws_sim.code_secret must be base64 of at least 16 bytes")?;
        anyhow::ensure!(
            !settings.delivery_retry_ms.is_empty(),
            "setting nws_sim.delivery_retry_ms needs at least one delay"
        );

        let beppyo2 = beppyo2::Beppyo2::embedded().context("the embedded 別表第二 table")?;

        migrate(&settings.database_url, database_tls).await?;
        let pool = chukan_db::pool_with_tls(&settings.database_url, database_tls, POOL_SIZE)
            .context("setting nws_sim.database_url")?;

        let listener =
            TcpListener::bind((settings.host.as_str(), settings.port)).with_context(|| {
                format!(
                    "binding the NWS simulator to {}:{}",
                    settings.host, settings.port
                )
            })?;
        let port = listener.local_addr()?.port();
        // HTTPS (and relays' client certificates) when configured, as the real NWS.
        let tls =
            chukan_tls::server::server_config(&chukan_tls::server::ServerFiles::nws_sim(settings))?;

        let wake = Arc::new(Notify::new());
        let state = web::Data::new(api::SimState {
            pool: pool.clone(),
            signer,
            secret,
            wake: wake.clone(),
            clock,
            faults: Default::default(),
            beppyo2: Arc::new(beppyo2),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(edge::screen))
                .wrap(edge::security_headers())
                .wrap(actix_web::middleware::from_fn(chukan_telemetry::boundary))
                .app_data(state.clone())
                .app_data(problem::json_config(JSON_LIMIT_BYTES))
                .app_data(problem::path_config())
                .configure(api::routes)
                .default_service(web::to(problem::not_found_route))
        })
        // A test and demo peer: two workers are plenty and keep many simulators cheap.
        .workers(2);
        let server = match tls {
            Some(tls) => server.listen_rustls_0_23(listener, tls)?,
            None => server.listen(listener)?,
        }
        .run();

        let (stop_worker, stop_rx) = watch::channel(false);
        let worker = delivery::DeliveryWorker {
            pool,
            http: delivery::http_client(settings)?,
            wake,
            concurrency: settings.delivery_concurrency,
            retry_ms: settings.delivery_retry_ms.clone(),
        };
        let worker = tokio::spawn(worker.run(stop_rx));
        tracing::info!(port, "NWS simulator listening");
        Ok(NwsSim {
            port,
            server,
            worker,
            stop_worker,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the simulator from elsewhere (tests): the server stops and
    /// [`NwsSim::run_until_stopped`] returns once the delivery worker has stopped too.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server stops (SIGINT/SIGTERM or [`ServerHandle::stop`]), then stops
    /// the delivery worker.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.server.await;
        let _ = self.stop_worker.send(true);
        if let Err(error) = self.worker.await {
            tracing::warn!(%error, "delivery worker ended abnormally");
        }
        result.context("NWS simulator HTTP server")
    }
}

/// `chukan nws-sim`: build and serve until stopped.
/// Its database connections follow `database.tls_mode` and its files.
pub async fn run(settings: &NwsSimSettings, database: &DatabaseSettings) -> anyhow::Result<()> {
    let database_tls = PgTls::from_settings(database)?;
    let expiry = chukan_tls::expiry::spawn_refresher(chukan_tls::expiry::nws_sim_files(settings));
    let result = NwsSim::build_with(settings, Arc::new(SystemClock), &database_tls)
        .await?
        .run_until_stopped()
        .await;
    if let Some(task) = expiry {
        task.abort();
    }
    result
}

/// Creates the simulator's database if missing and applies its migrations, as the owner.
pub async fn migrate(database_url: &str, tls: &PgTls) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = database_url
        .parse()
        .context("setting nws_sim.database_url is not a PostgreSQL connection string")?;
    let dbname = config
        .get_dbname()
        .context("setting nws_sim.database_url names no database")?
        .to_owned();
    ensure_database(&config, tls, &dbname).await?;

    let mut client = tls
        .connect(&config, "the NWS simulator's migrations")
        .await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .context("running the NWS simulator migrations");
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    result.map(|_| ())
}

async fn ensure_database(
    config: &tokio_postgres::Config,
    tls: &PgTls,
    dbname: &str,
) -> anyhow::Result<()> {
    let mut admin_config = config.clone();
    admin_config.dbname("postgres");
    let admin = tls
        .connect(
            &admin_config,
            "the postgres database, to create the simulator's",
        )
        .await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await?
        .is_some();
    if !exists {
        let created = admin
            .batch_execute(&format!(
                "CREATE DATABASE {}",
                chukan_db::quote_ident(dbname)
            ))
            .await;
        match created {
            Ok(()) => tracing::info!(dbname, "NWS simulator database created"),
            // Someone else created it between the check and now: just as good.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e).with_context(|| format!("creating database {dbname}")),
        }
    }
    Ok(())
}
