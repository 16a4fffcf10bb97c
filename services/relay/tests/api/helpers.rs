//! A relay on a fresh database and bus namespace, a key standing for the NWS's, a queue
//! capturing what relay publishes, and an HTTP stand-in for the NWS's intake.

use std::{net::TcpListener, sync::Arc, time::Duration};

use chukan_config::Settings;
use chukan_core::{SystemClock, worker::Worker};
use chukan_crypto::{Signer, generate_key_base64};
use chukan_proto::{Envelope, Message as _, signing_bytes};
pub use chukan_testkit::Captured;
use chukan_testkit::TestEnv;

pub const DEADLINE: Duration = Duration::from_secs(20);
pub const NWS_KID: &str = "nws-test-1";
/// The organisation the tests deliver to: registered (homed in this cell) by every
/// [`TestRelay`], since the relay refuses deliveries for organisations it does not hold.
pub const HOMED_ORG: &str = "0000000000000001";

pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    chukan_testkit::wait_until(DEADLINE, what, check)
        .await
        .unwrap();
}

pub struct TestRelay {
    pub env: TestEnv,
    pub inbound_url: String,
    pub http: reqwest::Client,
    /// Stands for the NWS's signing key; its public half is in relay.nws_public_keys.
    pub nws: Signer,
    /// The NWS link's health as relay announced it (`status.component`, admin's queue).
    pub link_status: Captured,
    workers: Vec<Worker>,
}

impl TestRelay {
    pub async fn start(configure: impl FnOnce(&mut Settings)) -> TestRelay {
        Self::start_with(configure, Arc::new(SystemClock)).await
    }

    /// As [`TestRelay::start`], with the clock the calendar and timestamps are read from.
    pub async fn start_with(
        configure: impl FnOnce(&mut Settings),
        clock: Arc<dyn chukan_core::Clock>,
    ) -> TestRelay {
        let nws = Signer::from_seed_base64(NWS_KID, &generate_key_base64()).unwrap();
        let nws_public = format!("{NWS_KID}={}", nws.public_key_base64());
        let env = TestEnv::new_with(
            &[chukan_admin::migrations(), chukan_relay::migrations()],
            |s| {
                s.relay.nws_public_keys = vec![nws_public];
                configure(s);
            },
            clock,
        )
        .await
        .unwrap();
        // Bound before relay starts: its outbox publishes mandatory.
        let link_status = Captured::start(
            &env.ctx.bus,
            "link-status",
            &[chukan_proto::STATUS_COMPONENT],
        )
        .await
        .unwrap();
        let (parts, port) = chukan_relay::start_with_port(&env.ctx).await.unwrap();
        assert!(parts.routes.is_none());
        let scheme = match env.settings.relay.inbound_tls_cert_file.is_empty() {
            true => "http",
            false => "https",
        };
        home(&env, HOMED_ORG).await;
        TestRelay {
            env,
            inbound_url: format!("{scheme}://127.0.0.1:{port}/nws/v1/messages"),
            http: reqwest::Client::new(),
            nws,
            link_status,
            workers: parts.workers,
        }
    }

    /// Registers `org` as a tenant of this cell (admin.tenants), as
    /// `chukan admin create-tenant` does.
    pub async fn home(&self, org: &str) {
        home(&self.env, org).await;
    }

    /// A fresh envelope from the NWS to `recipient`, signed with the NWS key.
    pub fn envelope(&self, kind: &str, recipient: &str, body: Vec<u8>) -> Envelope {
        let mut env = Envelope {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_owned(),
            sender: "NWS".to_owned(),
            recipient: recipient.to_owned(),
            timestamp_ms: chrono::Utc::now().timestamp_millis(),
            correlation_id: uuid::Uuid::now_v7().to_string(),
            body,
            traceparent: String::new(),
            kid: String::new(),
            signature: Vec::new(),
        };
        self.sign(&mut env);
        env
    }

    pub fn sign(&self, env: &mut Envelope) {
        env.kid = self.nws.kid().to_owned();
        env.signature = self.nws.sign(&signing_bytes(env)).to_vec();
    }

    pub async fn post(&self, env: &Envelope) -> reqwest::Response {
        self.post_raw(env.encode_to_vec()).await
    }

    pub async fn post_raw(&self, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(&self.inbound_url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// The namespaced name of relay's outbound queue (the consumer metrics' label).
    pub fn outbound_queue(&self) -> String {
        self.env.ctx.bus.qualify(chukan_relay::OUTBOUND_QUEUE)
    }

    pub async fn received_rows(&self) -> i64 {
        let client = self.env.owner_pool().unwrap().get().await.unwrap();
        client
            .query_one("SELECT count(*) FROM relay.received", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// A count from relay's own tables.
    pub async fn count(&self, sql: &str) -> i64 {
        let client = self.env.owner_pool().unwrap().get().await.unwrap();
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// Stops the workers stage by stage, as the binary does.
    pub async fn shutdown(mut self) {
        self.workers.sort_by_key(|w| w.stage);
        for w in self.workers {
            (w.stop)().await;
        }
    }
}

/// Registers `org` in `env`'s admin.tenants, homed in the cell's region.
async fn home(env: &TestEnv, org: &str) {
    let tenant = chukan_admin::NewTenant {
        org_code: chukan_core::ids::OrgCode::parse(org).unwrap(),
        name: "試験団体".into(),
        kind: chukan_admin::TenantKind::Municipality,
        population: 1000,
        home_region: env.settings.region.clone(),
        upload_group: None,
        immediate_replica_processing: false,
    };
    chukan_admin::create_tenant(&env.ctx.db, &tenant)
        .await
        .unwrap();
}

/// A free port, released again (for an NWS that comes up later).
pub fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real NWS simulator on its own database and port, reading `clock`.
pub struct TestNws {
    pub base: String,
    pub http: reqwest::Client,
    pub settings: chukan_config::NwsSimSettings,
    handle: chukan_nws_sim::ServerHandle,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestNws {
    pub async fn spawn(clock: Arc<dyn chukan_core::Clock>) -> TestNws {
        Self::spawn_with(clock, |_| {}, reqwest::Client::new()).await
    }

    /// As [`TestNws::spawn`] with changed settings, called (registration, faults) by `http`.
    pub async fn spawn_with(
        clock: Arc<dyn chukan_core::Clock>,
        configure: impl FnOnce(&mut chukan_config::NwsSimSettings),
        http: reqwest::Client,
    ) -> TestNws {
        let mut settings = chukan_testkit::test_settings().nws_sim;
        configure(&mut settings);
        let sim = chukan_nws_sim::NwsSim::build_with_clock(&settings, clock)
            .await
            .unwrap();
        let scheme = match settings.tls_cert_file.is_empty() {
            true => "http",
            false => "https",
        };
        let base = format!("{scheme}://127.0.0.1:{}", sim.port());
        let handle = sim.handle();
        let task = tokio::spawn(sim.run_until_stopped());
        TestNws {
            base,
            http,
            settings,
            handle,
            task,
        }
    }

    /// `relay.nws_public_keys` entry for the simulator's key.
    pub fn public_key_entry(&self) -> String {
        let signer = Signer::from_seed_base64(
            &self.settings.signing_kid,
            secrecy::ExposeSecret::expose_secret(&self.settings.signing_key),
        )
        .unwrap();
        format!("{}={}", signer.kid(), signer.public_key_base64())
    }

    /// Registers `org` with the relay's signing key and inbound endpoint.
    pub async fn register(&self, org: &str, relay: &TestRelay) {
        let settings = &relay.env.settings.relay;
        let signer = Signer::from_seed_base64(
            &settings.signing_kid,
            secrecy::ExposeSecret::expose_secret(&settings.signing_key),
        )
        .unwrap();
        let endpoint = relay.inbound_url.trim_end_matches("/nws/v1/messages");
        let res = self
            .http
            .post(format!("{}/v1/organizations", self.base))
            .json(&serde_json::json!({
                "org_code": org, "name": "試験団体", "endpoint_url": endpoint,
                "keys": [{"kid": signer.kid(), "public_key": signer.public_key_base64()}],
            }))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "register: {}", res.status());
    }

    pub async fn set_ready(&self, ready: bool) {
        let url = format!("{}/v1/faults/not-ready", self.base);
        let res = if ready {
            self.http.delete(url).send().await.unwrap()
        } else {
            self.http.post(url).send().await.unwrap()
        };
        assert_eq!(res.status(), 204);
    }

    async fn db(&self) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.settings.database_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        client
    }

    /// Message ids the simulator accepted, with when (its own clock: the database's).
    pub async fn received(&self, kind: &str) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
        self.db()
            .await
            .query(
                "SELECT message_id, received_at FROM received WHERE kind = $1 ORDER BY received_at",
                &[&kind],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// Stops the simulator and drops its database.
    pub async fn finish(self) {
        self.handle.stop(true).await;
        self.task.await.unwrap().unwrap();
        let name = self.settings.database_url.rsplit('/').next().unwrap();
        let admin = format!("{}/postgres", chukan_testkit::pg_server_url());
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }
}
