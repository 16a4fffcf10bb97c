//! Test harness shared by every service's integration tests (zero2prod style).
//!
//! Each [`TestEnv`] gets its own database (`t_<uuid>`) and its own RabbitMQ namespace, so
//! tests run in parallel against the machine's real PostgreSQL and RabbitMQ. Set
//! `CHUKAN_TEST_PG` (server URL without database) or `CHUKAN_TEST_AMQP` to point elsewhere.

mod captured;
pub mod pki;
pub mod replication;
pub mod server_files;
pub mod tls_servers;

pub use captured::Captured;

use std::{future::Future, net::TcpListener, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use chukan_config::Settings;
use chukan_core::{Clock, SystemClock, worker::Worker};
use chukan_runtime::{Context, Parts};

/// PostgreSQL server URL (no database) used by tests.
pub fn pg_server_url() -> String {
    std::env::var("CHUKAN_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// RabbitMQ URL (with vhost) used by tests.
pub fn amqp_url() -> String {
    std::env::var("CHUKAN_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Settings for one test: fresh database name and AMQP namespace, every port 0, quick retries.
pub fn test_settings() -> Settings {
    let id = short_id();
    let env = [
        (
            "CHUKAN__DATABASE__URL",
            format!("{}/t_{id}", pg_server_url()),
        ),
        ("CHUKAN__DATABASE__POOL_MAX_SIZE", "8".into()),
        ("CHUKAN__AMQP__URL", amqp_url()),
        ("CHUKAN__AMQP__NAMESPACE", format!("t{id}.")),
        ("CHUKAN__AMQP__RETRY_DELAYS_MS", "100,200,400".into()),
        ("CHUKAN__AMQP__OUTBOX_POLL_MS", "100".into()),
        // Throw-away namespaces: cheap classic queues that delete themselves when idle.
        ("CHUKAN__AMQP__QUEUE_TYPE", "classic".into()),
        ("CHUKAN__AMQP__QUEUE_EXPIRES_MS", "300000".into()),
        ("CHUKAN__SERVER__PORT", "0".into()),
        ("CHUKAN__SERVER__WORKERS", "1".into()),
        ("CHUKAN__METRICS__PORT", "0".into()),
        ("CHUKAN__RELAY__INBOUND_PORT", "0".into()),
        ("CHUKAN__NWS_SIM__PORT", "0".into()),
        (
            "CHUKAN__NWS_SIM__DATABASE_URL",
            format!("{}/t_{id}_nws", pg_server_url()),
        ),
        ("CHUKAN__NWS_SIM__DELIVERY_RETRY_MS", "100,200,400".into()),
        ("CHUKAN__CALENDAR__ENFORCE_SERVICE_HOURS", "false".into()),
    ];
    let env = env.into_iter().map(|(k, v)| (k.to_string(), v));
    #[allow(clippy::expect_used)]
    Settings::load_with(None, env).expect("test settings")
}

/// One isolated environment: a migrated database, a namespace on the bus, a [`Context`].
pub struct TestEnv {
    pub settings: Settings,
    pub ctx: Context,
}

impl TestEnv {
    pub async fn new(migrations: &[chukan_db::Migrations]) -> anyhow::Result<Self> {
        Self::new_with(migrations, |_| {}, Arc::new(SystemClock)).await
    }

    /// As [`TestEnv::new`], with changed settings and a chosen clock.
    pub async fn new_with(
        migrations: &[chukan_db::Migrations],
        configure: impl FnOnce(&mut Settings),
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        chukan_telemetry::init_for_tests();
        let mut settings = test_settings();
        configure(&mut settings);
        chukan_db::migrate(&settings.database, migrations)
            .await
            .context("migrate test database")?;
        let ctx = chukan_runtime::build_context(settings.clone(), clock).await?;
        Ok(Self { settings, ctx })
    }

    /// Serves the parts' routes and their OpenAPI document on the real HTTP server (port 0)
    /// and keeps their workers.
    pub async fn spawn_api(&self, parts: Vec<Parts>) -> anyhow::Result<TestApi> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let mut routes = Vec::new();
        let mut docs = Vec::new();
        let mut workers = Vec::new();
        for p in parts {
            routes.extend(p.routes);
            docs.extend(p.openapi);
            workers.extend(p.workers);
        }
        let server = chukan_runtime::http_server(&self.ctx, routes, docs, listener, "test")?;
        let handle = server.handle();
        tokio::spawn(server);
        let scheme = match self.settings.server.tls_cert_file.is_empty() {
            true => "http",
            false => "https",
        };
        Ok(TestApi {
            base_url: format!("{scheme}://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            workers,
            server: handle,
        })
    }

    /// A signed token for `tenant` with `roles`, as admin would issue it.
    pub fn token(&self, tenant: &str, roles: &[chukan_auth::Role]) -> String {
        #[allow(clippy::expect_used)]
        let issuer = chukan_auth::TokenIssuer::from_settings(&self.settings.auth).expect("issuer");
        #[allow(clippy::expect_used)]
        let token = issuer
            .issue("test-user", tenant, roles, None)
            .expect("token");
        token.access_token
    }

    /// Publishes `message` on this environment's bus (as another service would).
    pub async fn publish(&self, message: &chukan_mq::OutgoingMessage) {
        #[allow(clippy::expect_used)]
        let publisher = self.ctx.bus.publisher().await.expect("publisher");
        #[allow(clippy::expect_used)]
        publisher.publish(message).await.expect("publish");
    }

    /// One value from the service's tables, read as `tenant` (row-level security applies).
    pub async fn scalar_i64(&self, tenant: &str, sql: &str) -> i64 {
        #[allow(clippy::expect_used)]
        let mut client = self.ctx.db.get().await.expect("pooled connection");
        #[allow(clippy::expect_used)]
        let tx = chukan_db::tenant_tx(&mut client, tenant)
            .await
            .expect("tenant transaction");
        #[allow(clippy::expect_used)]
        tx.query_one(sql, &[]).await.expect("query").get(0)
    }

    /// A second connection pool as the database owner (bypasses nothing: tables are FORCEd;
    /// used to look at raw rows, e.g. to prove a column is ciphertext).
    pub fn owner_pool(&self) -> anyhow::Result<chukan_db::Pool> {
        chukan_db::pool_from_url(&self.settings.database.url, 2)
    }
}

/// A running API with its workers; stops them when dropped is not needed: the test ends.
pub struct TestApi {
    pub base_url: String,
    pub http: reqwest::Client,
    pub workers: Vec<Worker>,
    pub server: actix_web::dev::ServerHandle,
}

impl TestApi {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `method path` with `token` (and a JSON body): the status and the JSON answer (Null
    /// when the answer is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(body);
        }
        #[allow(clippy::expect_used)]
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `GET path` with `token`: status and JSON answer.
    pub async fn get(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, token, path, None).await
    }

    /// `POST path` with `token` and a JSON body: status and JSON answer.
    pub async fn post(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, token, path, Some(body))
            .await
    }

    /// `GET path` with `token`, the raw response (headers, bodies that are not JSON).
    pub async fn get_response(&self, token: &str, path: &str) -> reqwest::Response {
        #[allow(clippy::expect_used)]
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST path` with `token` and a JSON body, the raw response.
    pub async fn post_response(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        #[allow(clippy::expect_used)]
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Stops every worker stage by stage, as the binary does on SIGTERM.
    pub async fn shutdown(mut self) {
        self.server.stop(true).await;
        self.workers.sort_by_key(|w| w.stage);
        for w in self.workers {
            (w.stop)().await;
        }
    }
}

/// Polls `check` until it is true or `deadline` passes; the error names what was awaited.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates an empty database and returns its owner URL.
pub async fn fresh_database_url() -> anyhow::Result<String> {
    let name = format!("t_{}", short_id());
    let (client, conn) = tokio_postgres::connect(
        &format!("{}/postgres", pg_server_url()),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    Ok(format!("{}/{name}", pg_server_url()))
}
