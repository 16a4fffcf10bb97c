//! Spawns the code service on the real HTTP server with a fresh database and namespace.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chukan_auth::Role;
use chukan_core::worker::Worker;
use chukan_mq::{Delivery, OutgoingMessage, QueueSpec};
use chukan_proto::{CodeAcquireResult, Message, NwsInbound, NwsOutbound};
use chukan_testkit::{TestApi, TestEnv};
use futures_util::FutureExt;

pub const ORG_A: &str = "1310010000000001";
pub const ORG_B: &str = "2710000000000002";

pub struct TestApp {
    pub env: TestEnv,
    pub api: TestApi,
    /// Everything the service sent towards the NWS (a queue bound to nws.out).
    pub sent: Arc<Mutex<Vec<Delivery>>>,
    /// Every code.linked event the service published.
    pub linked: Arc<Mutex<Vec<Delivery>>>,
    /// Every stats.exchange event (an acquisition counted for the statistics).
    pub stats: Arc<Mutex<Vec<Delivery>>>,
}

/// Collects every delivery on a test queue bound to `key`.
async fn capture(env: &TestEnv, name: &str, key: &str) -> (Arc<Mutex<Vec<Delivery>>>, Worker) {
    let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let spec = QueueSpec::new(name, &[key]);
    env.ctx.bus.declare_queue(&spec).await.unwrap();
    let sink = seen.clone();
    let consumer = chukan_mq::consumer::start(
        &env.ctx.bus,
        &spec,
        "test",
        16,
        Arc::new(move |d: Delivery| {
            sink.lock().unwrap().push(d);
            async { Ok(()) }.boxed()
        }),
    );
    (seen, consumer.into_worker(name))
}

pub async fn spawn_app() -> TestApp {
    let env = TestEnv::new(&[chukan_code::migrations()]).await.unwrap();
    let parts = chukan_code::start(&env.ctx).await.unwrap();
    let (sent, sent_worker) = capture(&env, "test.nws-out", chukan_proto::NWS_OUT).await;
    let (linked, linked_worker) =
        capture(&env, "test.code-linked", chukan_proto::CODE_LINKED).await;
    let (stats, stats_worker) =
        capture(&env, "test.stats-exchange", chukan_proto::STATS_EXCHANGE).await;
    let mut api = env.spawn_api(vec![parts]).await.unwrap();
    api.workers.push(sent_worker);
    api.workers.push(linked_worker);
    api.workers.push(stats_worker);
    TestApp {
        env,
        api,
        sent,
        linked,
        stats,
    }
}

impl TestApp {
    pub fn token(&self, tenant: &str) -> String {
        self.env.token(tenant, &[Role::SystemClient])
    }

    pub async fn post_acquisition(
        &self,
        token: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.api
            .http
            .post(self.api.url("/v1/codes/acquisitions"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Whether a code is held for `addressee` (the number in the body, never in the URL).
    pub async fn holding(&self, token: &str, addressee: &str) -> reqwest::Response {
        self.api
            .http
            .post(self.api.url("/v1/codes/holdings/query"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "integrated_addressee_number": addressee }))
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.api.get_response(token, path).await
    }

    /// Waits until `n` messages went out towards the NWS.
    pub async fn wait_sent(&self, n: usize) -> Vec<Delivery> {
        chukan_testkit::wait_until(Duration::from_secs(10), "outbound messages", || async {
            self.sent.lock().unwrap().len() >= n
        })
        .await
        .unwrap();
        self.sent.lock().unwrap().clone()
    }

    /// Publishes the NWS's answer as relay would, with a chosen message id.
    pub async fn answer(
        &self,
        tenant: &str,
        correlation: &str,
        result: CodeAcquireResult,
        id: uuid::Uuid,
    ) {
        let inbound = NwsInbound {
            kind: "code.acquired".into(),
            recipient_org: tenant.into(),
            correlation_id: correlation.into(),
            body: result.encode_to_vec(),
            nws_message_id: id.to_string(),
        };
        let mut msg = OutgoingMessage::new(tenant, "nws.in.code", inbound.encode_to_vec());
        msg.id = id;
        self.env
            .ctx
            .bus
            .publisher()
            .await
            .unwrap()
            .publish(&msg)
            .await
            .unwrap();
    }

    pub async fn status(&self, token: &str, id: &str) -> serde_json::Value {
        self.get(token, &format!("/v1/codes/acquisitions/{id}"))
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn wait_status(&self, token: &str, id: &str, want: &str) -> serde_json::Value {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let last = self.status(token, id).await;
            if last["status"] == want {
                return last;
            }
            assert!(
                std::time::Instant::now() < until,
                "waiting for {want}: last {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rows in a code table for a tenant, counted as that tenant.
    pub async fn count(&self, tenant: &str, table: &str) -> i64 {
        let mut client = self.env.ctx.db.get().await.unwrap();
        let tx = chukan_db::tenant_tx(&mut client, tenant).await.unwrap();
        tx.query_one(&format!("SELECT count(*) FROM code.{table}"), &[])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn outbox_len(&self) -> i64 {
        let client = self.env.ctx.db.get().await.unwrap();
        client
            .query_one("SELECT count(*) FROM code.outbox", &[])
            .await
            .unwrap()
            .get(0)
    }
}

pub fn decode_outbound(d: &Delivery) -> NwsOutbound {
    NwsOutbound::decode(d.body.as_slice()).unwrap()
}
