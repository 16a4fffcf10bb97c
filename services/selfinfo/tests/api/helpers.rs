//! Spawns the self-information service on the real HTTP server with a fresh database and
//! namespace, queues capturing what it sends towards the NWS and the audit service, and stub
//! request/reply servers on provision's and audit's queue names (the e2e test covers the real
//! ones). The tests play the NWS: they publish requests on `nws.in.selfinfo`.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chukan_auth::Role;
use chukan_mq::{
    OutgoingMessage, QueueSpec,
    rpc::{RpcHandler, RpcServerHandle},
};
use chukan_proto::{
    AuditRecord, DisclosableRecord, DisclosableRecordsReply, DisclosableRecordsRequest, Message,
    NwsInbound, NwsOutbound, ProvidedRecord, ReplicasForCodeReply, ReplicasForCodeRequest,
    SelfInfoAnswer, SelfInfoItem, SelfInfoRequest,
};
use chukan_testkit::{Captured, TestApi, TestEnv};
use futures_util::{FutureExt as _, future::BoxFuture};
use serde_json::Value;

pub const ORG_A: &str = "1310010000000001";
pub const ORG_B: &str = "2710000000000002";
pub const INFO: &str = "TM00000000000002";
pub const INFO_OTHER: &str = "TM00000000000031";
pub const DEADLINE: Duration = Duration::from_secs(30);

pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    chukan_testkit::wait_until(DEADLINE, what, check)
        .await
        .unwrap();
}

/// What the stub provision knows: code → its reply.
#[derive(Default)]
pub struct ProvisionStub {
    pub residents: Mutex<HashMap<String, ReplicasForCodeReply>>,
    pub calls: AtomicUsize,
}

/// What the stub audit knows: addressee → disclosable records.
#[derive(Default)]
pub struct AuditStub {
    pub records: Mutex<HashMap<String, Vec<DisclosableRecord>>>,
    pub calls: AtomicUsize,
    /// Tenants the calls named, to prove the header travels.
    pub tenants: Mutex<Vec<String>>,
}

pub struct TestApp {
    pub env: TestEnv,
    pub api: TestApi,
    pub nws_out: Captured,
    pub audit: Captured,
    /// The audit records\' counting twins (`stats.exchange`).
    pub stats: Captured,
    pub provision_stub: Arc<ProvisionStub>,
    pub audit_stub: Arc<AuditStub>,
    servers: Mutex<Vec<RpcServerHandle>>,
}

/// Short waits so retries happen within a test.
pub fn quick_settings(s: &mut chukan_config::Settings) {
    let q = &mut s.selfinfo;
    q.rpc_timeout = Duration::from_millis(400);
    q.poll = Duration::from_millis(100);
    q.lease = Duration::from_secs(10);
    q.retry_first = Duration::from_millis(100);
    q.retry_max = Duration::from_millis(400);
    q.batch = 8;
    q.max_attachment_bytes = 64 * 1024;
}

/// The app with both stubs serving.
pub async fn spawn_app() -> TestApp {
    let app = spawn_app_without_peers().await;
    app.start_provision_stub().await;
    app.start_audit_stub().await;
    app
}

/// The app with neither provision nor audit answering (their queues exist, nobody consumes).
pub async fn spawn_app_without_peers() -> TestApp {
    let env = TestEnv::new_with(
        &[chukan_selfinfo::migrations()],
        quick_settings,
        Arc::new(chukan_core::SystemClock),
    )
    .await
    .unwrap();
    // Bound before the service starts: its outbox publishes mandatory.
    let nws_out = Captured::start(&env.ctx.bus, "nws-out", &[chukan_proto::NWS_OUT])
        .await
        .unwrap();
    let audit = Captured::start(&env.ctx.bus, "audit", &[chukan_proto::AUDIT_RECORD])
        .await
        .unwrap();
    let stats = Captured::start(&env.ctx.bus, "stats", &[chukan_proto::STATS_EXCHANGE])
        .await
        .unwrap();
    for name in [chukan_selfinfo::PROVISION_RPC, chukan_selfinfo::AUDIT_RPC] {
        env.ctx
            .bus
            .declare_queue(&QueueSpec::new(name, &[]))
            .await
            .unwrap();
    }
    let parts = chukan_selfinfo::start(&env.ctx).await.unwrap();
    let api = env.spawn_api(vec![parts]).await.unwrap();
    TestApp {
        env,
        api,
        nws_out,
        audit,
        stats,
        provision_stub: Arc::default(),
        audit_stub: Arc::default(),
        servers: Mutex::new(Vec::new()),
    }
}

/// A provided record for an item, as provision would answer it.
pub fn replica(dataset: &str, payload: &str) -> ProvidedRecord {
    ProvidedRecord {
        dataset: dataset.into(),
        major_version: "0002".into(),
        payload_xml: payload.into(),
        valid_from: "2025-04-01".into(),
        valid_to: String::new(),
    }
}

impl TestApp {
    pub async fn start_provision_stub(&self) {
        let stub = self.provision_stub.clone();
        let handler: Arc<dyn RpcHandler> = Arc::new(
            move |_tenant: String, body: Vec<u8>| -> BoxFuture<'static, anyhow::Result<Vec<u8>>> {
                let stub = stub.clone();
                async move {
                    stub.calls.fetch_add(1, Ordering::SeqCst);
                    let req = ReplicasForCodeRequest::decode(body.as_slice())?;
                    let mut reply = stub
                        .residents
                        .lock()
                        .unwrap()
                        .get(&req.code)
                        .cloned()
                        .unwrap_or_default();
                    if !req.info_codes.is_empty() {
                        reply
                            .items
                            .retain(|i| req.info_codes.contains(&i.info_code));
                    }
                    Ok(reply.encode_to_vec())
                }
                .boxed()
            },
        );
        self.serve(chukan_selfinfo::PROVISION_RPC, handler);
    }

    pub async fn start_audit_stub(&self) {
        let stub = self.audit_stub.clone();
        let handler: Arc<dyn RpcHandler> = Arc::new(
            move |tenant: String, body: Vec<u8>| -> BoxFuture<'static, anyhow::Result<Vec<u8>>> {
                let stub = stub.clone();
                async move {
                    stub.calls.fetch_add(1, Ordering::SeqCst);
                    stub.tenants.lock().unwrap().push(tenant);
                    let req = DisclosableRecordsRequest::decode(body.as_slice())?;
                    let records = stub
                        .records
                        .lock()
                        .unwrap()
                        .get(&req.addressee)
                        .cloned()
                        .unwrap_or_default();
                    Ok(DisclosableRecordsReply { records }.encode_to_vec())
                }
                .boxed()
            },
        );
        self.serve(chukan_selfinfo::AUDIT_RPC, handler);
    }

    fn serve(&self, queue: &str, handler: Arc<dyn RpcHandler>) {
        let handle = chukan_mq::rpc::serve(
            &self.env.ctx.bus,
            &QueueSpec::new(queue, &[]),
            "stub",
            8,
            handler,
        );
        self.servers.lock().unwrap().push(handle);
    }

    /// Provision knows `code` as `addressee`, with these items.
    pub fn resident(&self, code: &str, addressee: &str, items: Vec<SelfInfoItem>) {
        self.provision_stub.residents.lock().unwrap().insert(
            code.into(),
            ReplicasForCodeReply {
                known: true,
                self_info_prohibited: false,
                addressee: addressee.into(),
                items,
            },
        );
    }

    pub fn prohibited_resident(&self, code: &str, addressee: &str) {
        self.provision_stub.residents.lock().unwrap().insert(
            code.into(),
            ReplicasForCodeReply {
                known: true,
                self_info_prohibited: true,
                addressee: addressee.into(),
                items: Vec::new(),
            },
        );
    }

    pub fn records(&self, addressee: &str, records: Vec<DisclosableRecord>) {
        self.audit_stub
            .records
            .lock()
            .unwrap()
            .insert(addressee.into(), records);
    }

    pub fn token(&self, tenant: &str, role: Role) -> String {
        self.env.token(tenant, &[role])
    }

    /// The NWS's `selfinfo.request` as relay would hand it over.
    pub fn request_message(
        &self,
        tenant: &str,
        request_id: &str,
        code: &str,
        info_codes: &[&str],
    ) -> OutgoingMessage {
        let body = SelfInfoRequest {
            request_id: request_id.into(),
            code: code.into(),
            info_codes: info_codes.iter().map(|s| (*s).to_owned()).collect(),
            requested_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let inbound = NwsInbound {
            kind: "selfinfo.request".into(),
            recipient_org: tenant.into(),
            correlation_id: request_id.into(),
            body: body.encode_to_vec(),
            nws_message_id: uuid::Uuid::now_v7().to_string(),
        };
        OutgoingMessage::new(tenant, "nws.in.selfinfo", inbound.encode_to_vec())
    }

    pub async fn publish(&self, msg: &OutgoingMessage) {
        self.env.publish(msg).await;
    }

    /// The answers sent towards the NWS so far: (sender, correlation id, answer).
    pub fn answers(&self) -> Vec<(String, String, SelfInfoAnswer)> {
        self.nws_out
            .all()
            .into_iter()
            .map(|d| {
                let out = NwsOutbound::decode(d.body.as_slice()).unwrap();
                assert_eq!(out.kind, "selfinfo.answer");
                assert_eq!(out.recipient, "NWS");
                let answer = SelfInfoAnswer::decode(out.body.as_slice()).unwrap();
                (out.sender_org, out.correlation_id, answer)
            })
            .collect()
    }

    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.audit
            .all()
            .into_iter()
            .map(|d| AuditRecord::decode(d.body.as_slice()).unwrap())
            .collect()
    }

    pub async fn wait_answers(&self, n: usize) {
        wait_until("answers sent towards the NWS", || async {
            self.nws_out.count() >= n
        })
        .await;
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.api.get_response(token, path).await
    }

    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let res = self.get(token, path).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    pub async fn put_file(
        &self,
        token: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.api
            .http
            .put(self.api.url(path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, token: &str, path: &str) -> reqwest::Response {
        self.api
            .http
            .delete(self.api.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The service's own view of its requests (as tenant `tenant`).
    pub async fn requests(&self, tenant: &str) -> Vec<Value> {
        let v = self
            .get_json(
                &self.token(tenant, Role::BusinessStaff),
                "/v1/selfinfo/requests",
            )
            .await;
        v["requests"].as_array().unwrap().clone()
    }
}
