//! A simulator on a fresh database and port, organisations standing in for relays.

use std::{
    collections::HashSet,
    future::Future,
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, web};
use chukan_config::{NwsSimSettings, Settings};
use chukan_crypto::{Signer, Verifiers, generate_key_base64};
use chukan_nws_sim::NwsSim;
use chukan_proto::{
    CodeAcquireRequest, CodeAcquireResult, Envelope, InquiryCondition, InquiryRequest,
    InquiryResult, Message as _, ProvidedRecord, ProvisionAnswer, ProvisionPermit,
    ProvisionRequest, permit_signing_bytes, signing_bytes,
};
use tokio::task::JoinHandle;

pub const DEADLINE: Duration = Duration::from_secs(15);

/// Waits for `check` to hold, polling; panics with `what` at the deadline.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn fresh_database_url() -> String {
    format!(
        "postgres://postgres@127.0.0.1:5432/nws_sim_test_{}",
        uuid::Uuid::new_v4().simple()
    )
}

pub fn settings(database_url: &str) -> NwsSimSettings {
    let mut s = Settings::load_with(None, Vec::<(String, String)>::new())
        .unwrap()
        .nws_sim;
    s.port = 0;
    s.database_url = database_url.to_owned();
    s.delivery_retry_ms = vec![50, 100, 100, 100, 100, 100, 100, 100, 100, 100];
    s
}

pub struct TestSim {
    pub base: String,
    pub http: reqwest::Client,
    pub settings: NwsSimSettings,
    handle: ServerHandle,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestSim {
    pub async fn spawn() -> TestSim {
        Self::spawn_with(settings(&fresh_database_url())).await
    }

    pub async fn spawn_with(settings: NwsSimSettings) -> TestSim {
        let sim = NwsSim::build(&settings).await.unwrap();
        let base = format!("http://127.0.0.1:{}", sim.port());
        let handle = sim.handle();
        let task = tokio::spawn(sim.run_until_stopped());
        TestSim {
            base,
            http: reqwest::Client::new(),
            settings,
            handle,
            task,
        }
    }

    /// Stops the simulator (server and delivery worker).
    pub async fn stop(self) -> NwsSimSettings {
        self.handle.stop(true).await;
        self.task.await.unwrap().unwrap();
        self.settings
    }

    /// Stops it and drops its database.
    pub async fn finish(self) {
        let settings = self.stop().await;
        drop_database(&settings.database_url).await;
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.settings.database_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        client
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db().await.query_one(sql, &[]).await.unwrap().get(0)
    }

    pub async fn register(&self, org: &TestOrg) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/organizations", self.base))
            .json(&serde_json::json!({
                "org_code": org.code,
                "name": format!("団体 {}", org.code),
                "endpoint_url": org.endpoint_url,
                "keys": [{"kid": org.signer.kid(), "public_key": org.signer.public_key_base64()}],
            }))
            .send()
            .await
            .unwrap()
    }

    pub async fn send(&self, env: &Envelope) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/messages", self.base))
            .header("content-type", "application/x-protobuf")
            .body(env.encode_to_vec())
            .send()
            .await
            .unwrap()
    }

    /// The simulator's keys as published on /v1/keys.
    pub async fn verifiers(&self) -> Verifiers {
        let keys: serde_json::Value = self
            .http
            .get(format!("{}/v1/keys", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut v = Verifiers::default();
        for k in keys["keys"].as_array().unwrap() {
            v.add_base64(
                k["kid"].as_str().unwrap(),
                k["public_key"].as_str().unwrap(),
            )
            .unwrap();
        }
        v
    }

    pub async fn convert(&self, from_org: &str, code: &str, to_org: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/codes/convert", self.base))
            .json(&serde_json::json!({"from_org": from_org, "code": code, "to_org": to_org}))
            .send()
            .await
            .unwrap()
    }
}

pub async fn drop_database(url: &str) {
    let name = url.rsplit('/').next().unwrap().to_owned();
    let (client, conn) = tokio_postgres::connect(
        "postgres://postgres@127.0.0.1:5432/postgres",
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

/// A free port, released again (for an endpoint that comes up later).
pub fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An organisation: its code, signing key and endpoint (a test receiver standing for its relay).
pub struct TestOrg {
    pub code: String,
    pub signer: Signer,
    pub endpoint_url: String,
}

impl TestOrg {
    pub fn new(code: &str, endpoint_port: u16) -> TestOrg {
        TestOrg {
            code: code.to_owned(),
            signer: Signer::from_seed_base64(&format!("org-{code}-1"), &generate_key_base64())
                .unwrap(),
            endpoint_url: format!("http://127.0.0.1:{endpoint_port}"),
        }
    }

    /// A signed envelope to the NWS.
    pub fn envelope(&self, kind: &str, body: Vec<u8>) -> Envelope {
        let mut env = Envelope {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_owned(),
            sender: self.code.clone(),
            recipient: "NWS".to_owned(),
            timestamp_ms: chrono::Utc::now().timestamp_millis(),
            correlation_id: uuid::Uuid::now_v7().to_string(),
            body,
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
            kid: String::new(),
            signature: Vec::new(),
        };
        self.sign(&mut env);
        env
    }

    pub fn sign(&self, env: &mut Envelope) {
        env.kid = self.signer.kid().to_owned();
        env.signature = self.signer.sign(&signing_bytes(env)).to_vec();
    }

    /// An inquiry.request (情報照会要求) to `provider` for `(affair, procedure, info)`.
    pub fn inquiry(
        &self,
        inquirer_code: &str,
        provider: &str,
        (affair, procedure, info): (&str, &str, &str),
    ) -> Envelope {
        let now = chrono::Utc::now().timestamp_millis();
        self.envelope(
            "inquiry.request",
            InquiryRequest {
                serial_no: "S0001".into(),
                branch_no: 2,
                inquirer_code: inquirer_code.to_owned(),
                affair_code: affair.to_owned(),
                procedure_code: procedure.to_owned(),
                info_code: info.to_owned(),
                provider_org: provider.to_owned(),
                condition: Some(InquiryCondition {
                    kind: "1".into(),
                    year_kind: "0".into(),
                    from: "2026-04-01".into(),
                    to: String::new(),
                }),
                inquirer_non_disclosure: true,
                requested_at_ms: now,
                expires_at_ms: now + chukan_proto::REQUEST_VALIDITY_MS,
            }
            .encode_to_vec(),
        )
    }

    /// A provision.answer (情報提供) for `permit_id`, status "provided" with one record.
    pub fn answer(&self, permit_id: &str) -> Envelope {
        let mut env = self.envelope(
            "provision.answer",
            ProvisionAnswer {
                permit_id: permit_id.to_owned(),
                status: "provided".into(),
                records: vec![ProvidedRecord {
                    dataset: "D01".into(),
                    major_version: "01".into(),
                    payload_xml: "<DuplicateCopyData><A>1</A></DuplicateCopyData>".into(),
                    valid_from: "2026-04-01".into(),
                    valid_to: String::new(),
                }],
                reason_code: String::new(),
                reason: String::new(),
                provider_non_disclosure: true,
                manual: false,
                provided_at_ms: 1_790_000_000_000,
            }
            .encode_to_vec(),
        );
        env.correlation_id = permit_id.to_owned();
        self.sign(&mut env);
        env
    }

    pub fn acquire(&self, resident_record_code: &str) -> Envelope {
        self.envelope(
            "code.acquire",
            CodeAcquireRequest {
                resident_record_code: resident_record_code.to_owned(),
            }
            .encode_to_vec(),
        )
    }
}

/// Stands for an organisation's relay inbound endpoint: records what arrives and refuses a
/// message id it already has (409), as relay does.
pub struct Receiver {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Envelope>>>,
    handle: ServerHandle,
}

#[derive(Clone, Default)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Envelope>>>,
    seen: Arc<Mutex<HashSet<String>>>,
}

async fn receive(state: web::Data<ReceiverState>, body: web::Bytes) -> HttpResponse {
    let Ok(env) = Envelope::decode(body.as_ref()) else {
        return HttpResponse::BadRequest().finish();
    };
    if !state.seen.lock().unwrap().insert(env.message_id.clone()) {
        return HttpResponse::Conflict().finish();
    }
    state.received.lock().unwrap().push(env);
    HttpResponse::Accepted().finish()
}

impl Receiver {
    pub fn start() -> Receiver {
        Self::start_on(0)
    }

    pub fn start_on(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = ReceiverState::default();
        let received = state.received.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .route("/nws/v1/messages", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            port,
            received,
            handle,
        }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Envelope> {
        self.received.lock().unwrap().clone()
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// Decodes a delivered code.acquired result after checking the NWS's signature.
pub fn open_result(env: &Envelope, verifiers: &Verifiers) -> CodeAcquireResult {
    assert_eq!(env.kind, "code.acquired");
    assert_eq!(env.sender, "NWS");
    verifiers
        .verify(&env.kid, &signing_bytes(env), &env.signature)
        .unwrap();
    CodeAcquireResult::decode(env.body.as_slice()).unwrap()
}

pub async fn problem_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Checks the NWS's envelope signature and that `env` is of `kind` from the NWS.
pub fn check_from_nws(env: &Envelope, kind: &str, verifiers: &Verifiers) {
    assert_eq!(env.kind, kind);
    assert_eq!(env.sender, "NWS");
    verifiers
        .verify(&env.kid, &signing_bytes(env), &env.signature)
        .unwrap();
}

/// Decodes a delivered inquiry.result after checking the NWS's signature.
pub fn open_inquiry_result(env: &Envelope, verifiers: &Verifiers) -> InquiryResult {
    check_from_nws(env, "inquiry.result", verifiers);
    InquiryResult::decode(env.body.as_slice()).unwrap()
}

/// Decodes a delivered provision.request and its permit, checking both signatures.
pub fn open_provision_request(
    env: &Envelope,
    verifiers: &Verifiers,
) -> (ProvisionRequest, ProvisionPermit) {
    check_from_nws(env, "provision.request", verifiers);
    let request = ProvisionRequest::decode(env.body.as_slice()).unwrap();
    let signed = request.permit.clone().unwrap();
    verifiers
        .verify(
            &signed.kid,
            &permit_signing_bytes(&signed.permit),
            &signed.signature,
        )
        .unwrap();
    let permit = ProvisionPermit::decode(signed.permit.as_slice()).unwrap();
    (request, permit)
}
