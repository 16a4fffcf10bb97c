//! spawn_app() and the calls every admin test makes.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use chukan_admin::{NewTenant, NewUser, TenantKind};
use chukan_auth::Role;
use chukan_core::{ManualClock, ids::OrgCode, worker::Worker};
use chukan_mq::{Delivery, OutgoingMessage, QueueSpec};
use chukan_proto::{Message as _, TenantChanged};
use chukan_testkit::{TestApi, TestEnv};
use futures_util::FutureExt as _;
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

pub const TENANT_A: &str = "0113000000000001";
pub const TENANT_B: &str = "0113000000000002";
/// Every seeded account shares this password (≥ 12 characters).
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub env: TestEnv,
    pub api: TestApi,
    /// The clock admin reads validity dates from; tests move it.
    pub clock: Arc<ManualClock>,
    /// Two administrators per tenant (DOMAIN §8), seeded through the operator functions.
    pub admin_a: Uuid,
    pub admin_a2: Uuid,
    pub admin_b: Uuid,
    /// Every `tenant.changed` admin published (a queue bound as provision's is).
    pub tenant_events: Arc<Mutex<Vec<Delivery>>>,
    /// Every `department.changed` admin published (bound as inquiry's queue is).
    pub department_events: Arc<Mutex<Vec<Delivery>>>,
    /// Every `calendar.changed` admin published (bound as every process's subscription is).
    pub calendar_events: Arc<Mutex<Vec<Delivery>>>,
    /// Every `status.changed` admin published (bound as the statistics service's queue is).
    pub status_events: Arc<Mutex<Vec<Delivery>>>,
}

/// Collects every delivery on a test queue bound to `key`.
async fn capture(env: &TestEnv, name: &str, key: &str) -> (Arc<Mutex<Vec<Delivery>>>, Worker) {
    let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let spec = QueueSpec::new(name, &[key]);
    env.ctx.bus.declare_queue(&spec).await.expect("test queue");
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

/// Fresh database and namespace, tenants A and B each with administrators `admin1` and
/// `admin2`, admin's routes served on port 0.
pub async fn spawn_app() -> TestApp {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let env = TestEnv::new_with(
        &[chukan_admin::migrations()],
        |s| {
            s.calendar.enforce_service_hours = false;
            // Tests play several client addresses through this header.
            s.auth.client_address_header = "x-forwarded-for".into();
        },
        clock.clone(),
    )
    .await
    .expect("test environment");
    let parts = chukan_admin::start(&env.ctx).await.expect("admin starts");
    let mut api = env.spawn_api(vec![parts]).await.expect("api");

    // Bound before the first tenant is registered, as `chukan migrate` and the server
    // declare provision's queue before anything is published.
    let (tenant_events, tenants_worker) =
        capture(&env, "test.tenants", chukan_admin::TENANT_CHANGED).await;
    let (department_events, departments_worker) =
        capture(&env, "test.departments", chukan_proto::DEPARTMENT_CHANGED).await;
    let (calendar_events, calendar_worker) =
        capture(&env, "test.calendar", chukan_proto::CALENDAR_CHANGED).await;
    let (status_events, status_worker) =
        capture(&env, "test.status", chukan_proto::STATUS_CHANGED).await;
    api.workers.push(tenants_worker);
    api.workers.push(departments_worker);
    api.workers.push(calendar_worker);
    api.workers.push(status_worker);

    let mut admins = Vec::new();
    for (tenant, name) in [(TENANT_A, "テスト市"), (TENANT_B, "サンプル町")] {
        let created = chukan_admin::create_tenant(&env.ctx.db, &new_tenant(tenant, name))
            .await
            .expect("tenant");
        assert!(created);
        for login in ["admin1", "admin2"] {
            let id = chukan_admin::create_user(
                &env.ctx.db,
                &OrgCode::parse(tenant).unwrap(),
                &NewUser {
                    login_id: login.into(),
                    display_name: format!("管理者 {login}"),
                    password: PASSWORD.into(),
                    roles: vec![Role::SystemAdmin],
                    department: Some("情報政策課".into()),
                },
            )
            .await
            .expect("administrator");
            admins.push(id);
        }
    }
    TestApp {
        env,
        api,
        clock,
        admin_a: admins[0],
        admin_a2: admins[1],
        admin_b: admins[2],
        tenant_events,
        department_events,
        calendar_events,
        status_events,
    }
}

pub fn new_tenant(org: &str, name: &str) -> NewTenant {
    NewTenant {
        org_code: OrgCode::parse(org).unwrap(),
        name: name.into(),
        kind: TenantKind::Municipality,
        population: 120_000,
        home_region: "east".into(),
        upload_group: Some('C'),
        immediate_replica_processing: false,
    }
}

/// The claims part of a JWT, decoded without checking (the API checks; tests only read).
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json claims")
}

/// Today in Japan as admin sees it through the test clock.
pub fn japan_today(app: &TestApp) -> chrono::NaiveDate {
    use chukan_core::Clock as _;
    app.clock
        .now()
        .with_timezone(&chrono_tz_offset())
        .date_naive()
}

/// Japan has no daylight saving time: UTC+9 all year.
fn chrono_tz_offset() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(9 * 3600).unwrap()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        self.api.url(path)
    }

    /// Waits until admin published `n` `tenant.changed` events; returns them decoded, with
    /// the tenant header each carried, in arrival order.
    pub async fn wait_tenant_events(&self, n: usize) -> Vec<(String, TenantChanged)> {
        chukan_testkit::wait_until(Duration::from_secs(10), "tenant.changed events", || async {
            self.tenant_events.lock().unwrap().len() >= n
        })
        .await
        .unwrap();
        self.tenant_events
            .lock()
            .unwrap()
            .iter()
            .map(|d| {
                assert_eq!(d.routing_key, chukan_admin::TENANT_CHANGED);
                let event = TenantChanged::decode(d.body.as_slice()).expect("TenantChanged");
                (d.tenant.clone(), event)
            })
            .collect()
    }

    /// The namespaced name of admin's batch queue (the consumer metrics' label).
    pub fn batch_queue(&self) -> String {
        self.env.ctx.bus.qualify(&chukan_admin::batch_queue().name)
    }

    /// Publishes `msg` on the bus, as another service's outbox would.
    pub async fn publish(&self, msg: &OutgoingMessage) {
        self.env.publish(msg).await;
    }

    /// Publishes `msg` and waits until admin's batch consumer handled it (acked or
    /// dead-lettered), so what follows sees its effect.
    pub async fn deliver_progress(&self, msg: &OutgoingMessage) {
        let queue = self.batch_queue();
        let settled =
            |q: &str| chukan_mq::metrics::consumed(q, "ok") + chukan_mq::metrics::dead_lettered(q);
        let before = settled(&queue);
        self.publish(msg).await;
        chukan_testkit::wait_until(Duration::from_secs(10), "batch.progress handled", || {
            let done = settled(&queue) > before;
            async move { done }
        })
        .await
        .unwrap();
    }

    /// A login from the client address `source`.
    pub async fn login_from(
        &self,
        source: &str,
        tenant: &str,
        username: &str,
        password: &str,
    ) -> Response {
        self.login_via(Some(source), tenant, username, password)
            .await
    }

    pub async fn login(&self, tenant: &str, username: &str, password: &str) -> Response {
        self.login_via(None, tenant, username, password).await
    }

    async fn login_via(
        &self,
        source: Option<&str>,
        tenant: &str,
        username: &str,
        password: &str,
    ) -> Response {
        let mut req = self.api.http.post(self.url("/v1/auth/token"));
        if let Some(source) = source {
            req = req.header("x-forwarded-for", source);
        }
        req.json(&json!({
            "grant_type": "password",
            "tenant": tenant,
            "username": username,
            "password": password,
        }))
        .send()
        .await
        .unwrap()
    }

    /// A token from a successful login; panics with the problem if it fails.
    pub async fn token(&self, tenant: &str, username: &str) -> String {
        let res = self.login(tenant, username, PASSWORD).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "login of {username}: {body}");
        assert_eq!(body["token_type"], "Bearer");
        body["access_token"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        self.api.get_response(token, path).await
    }

    pub async fn put(&self, token: &str, path: &str, body: &Value) -> Response {
        self.api
            .http
            .put(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> Response {
        self.api.post_response(token, path, body).await
    }

    /// Creates a user through the API as `admin_token`; returns its id.
    pub async fn create_user(&self, admin_token: &str, login_id: &str, roles: &[&str]) -> Uuid {
        let res = self
            .post(
                admin_token,
                "/v1/users",
                &json!({
                    "login_id": login_id,
                    "display_name": "利用者",
                    "password": PASSWORD,
                    "roles": roles,
                }),
            )
            .await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Login ids of the users `admin_token`'s tenant has.
    pub async fn login_ids(&self, admin_token: &str) -> Vec<String> {
        let res = self.get(admin_token, "/v1/users").await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body.as_array()
            .unwrap()
            .iter()
            .map(|u| u["login_id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Asserts a problem+json response with `status` and `code`, a Japanese detail, an action and
/// a support id; returns its body without the support id.
pub async fn assert_problem(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status);
    let content_type = res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let mut body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty());
    assert!(!body["action"].as_str().unwrap().is_empty());
    // Every problem names the request for the help desk; the id is the request's own, so it
    // is taken off here and two refusals compare as what they say.
    let support_id = body
        .as_object_mut()
        .unwrap()
        .remove("support_id")
        .unwrap_or_default();
    assert_eq!(support_id.as_str().map(str::len), Some(32), "{body}");
    body
}
