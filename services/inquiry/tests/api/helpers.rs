//! Spawns the inquiry service on the real HTTP server with a fresh database and namespace, a
//! manual clock, and queues capturing what it sends towards the NWS and the audit service.
//! The tests play the NWS: they read `nws.out` and publish results on `nws.in.inquiry`.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use chukan_auth::{Role, TokenIssuer};
use chukan_config::Settings;
use chukan_core::ManualClock;
use chukan_mq::{Delivery, OutgoingMessage};
use chukan_proto::{
    AuditRecord, CodeLinked, DepartmentChanged, FlagsChanged, InquiryRequest, InquiryResult,
    Message, NwsInbound, NwsOutbound,
};
use chukan_testkit::{Captured, TestApi, TestEnv};
use serde_json::{Value, json};

pub const ORG_A: &str = "1310010000000001";
pub const ORG_B: &str = "2710000000000002";
pub const PROVIDER: &str = "4010000000000004";
pub const AFFAIR: &str = "JM00000000000001";
pub const PROCEDURE: &str = "JT00000000000001";
pub const INFO: &str = "TM00000000000002";
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

pub struct TestApp {
    pub env: TestEnv,
    pub api: TestApi,
    pub clock: Arc<ManualClock>,
    /// What went towards the NWS (`nws.out`).
    pub nws_out: Captured,
    /// Audit events (`audit.record`).
    pub audit: Captured,
    /// The audit records\' counting twins (`stats.exchange`).
    pub stats: Captured,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let env = TestEnv::new_with(
        &[chukan_inquiry::migrations()],
        |s| {
            s.inquiry.expiry_sweep = Duration::from_secs(1);
            configure(s);
        },
        clock.clone(),
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
    let parts = chukan_inquiry::start(&env.ctx).await.unwrap();
    let api = env.spawn_api(vec![parts]).await.unwrap();
    TestApp {
        env,
        api,
        clock,
        nws_out,
        audit,
        stats,
    }
}

pub fn inquiry_body(addressee: &str) -> Value {
    json!({
        "affair_code": AFFAIR,
        "procedure_code": PROCEDURE,
        "info_code": INFO,
        "integrated_addressee_number": addressee,
        "provider_org": PROVIDER,
        "as_of": "2026-04-01",
    })
}

impl TestApp {
    pub fn token(&self, tenant: &str) -> String {
        self.env.token(tenant, &[Role::SystemClient])
    }

    /// A staff member's token carrying a department (JWT claim `dept`).
    pub fn staff_token(&self, tenant: &str, dept: &str) -> String {
        TokenIssuer::from_settings(&self.env.settings.auth)
            .unwrap()
            .issue("staff-1", tenant, &[Role::BusinessStaff], Some(dept))
            .unwrap()
            .access_token
    }

    pub async fn publish(&self, tenant: &str, key: &str, body: Vec<u8>) {
        let msg = OutgoingMessage::new(tenant, key, body);
        self.publish_msg(&msg).await;
    }

    async fn publish_msg(&self, msg: &OutgoingMessage) {
        self.env.publish(msg).await;
    }

    /// One value from the service's tables, read as `tenant` (RLS applies).
    pub async fn scalar_i64(&self, tenant: &str, sql: &str) -> i64 {
        self.env.scalar_i64(tenant, sql).await
    }

    /// Publishes code.linked for the residents and waits until the service holds them.
    pub async fn link_codes(&self, tenant: &str, addressees: &[&str]) {
        let before = self
            .scalar_i64(tenant, "SELECT count(*) FROM inquiry.code_links")
            .await;
        for a in addressees {
            let event = CodeLinked {
                tenant: tenant.into(),
                addressee: (*a).into(),
                code: format!("CODE-{a}"),
                linked_at_ms: Utc::now().timestamp_millis(),
            };
            self.publish(tenant, chukan_proto::CODE_LINKED, event.encode_to_vec())
                .await;
        }
        let want = before + addressees.len() as i64;
        wait_until("code links stored", || async {
            self.scalar_i64(tenant, "SELECT count(*) FROM inquiry.code_links")
                .await
                >= want
        })
        .await;
    }

    pub async fn set_non_disclosure(&self, tenant: &str, addressee: &str, revision: i64) {
        let event = FlagsChanged {
            tenant: tenant.into(),
            addressee: addressee.into(),
            non_disclosure: true,
            revision,
            ..Default::default()
        };
        self.publish(tenant, chukan_proto::FLAGS_CHANGED, event.encode_to_vec())
            .await;
        let sql = format!("SELECT count(*) FROM inquiry.flags WHERE revision = {revision}");
        wait_until("flags stored", || async {
            self.scalar_i64(tenant, &sql).await == 1
        })
        .await;
    }

    /// As admin announces a department with its validity history: `(valid_from, valid_to,
    /// excluded)` per period, dates as YYYY-MM-DD ("" for open-ended).
    pub async fn set_department_periods(
        &self,
        tenant: &str,
        code: &str,
        periods: &[(&str, &str, &[&str])],
        revision: i64,
    ) {
        let event = DepartmentChanged {
            tenant: tenant.into(),
            code: code.into(),
            name: "部署".into(),
            revision,
            periods: periods
                .iter()
                .map(|(from, to, excluded)| chukan_proto::DepartmentPeriod {
                    valid_from: (*from).into(),
                    valid_to: (*to).into(),
                    name: "部署".into(),
                    excluded_procedures: excluded.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            ..Default::default()
        };
        self.publish(
            tenant,
            chukan_proto::DEPARTMENT_CHANGED,
            event.encode_to_vec(),
        )
        .await;
        let sql = format!(
            "SELECT count(*) FROM inquiry.departments WHERE code = '{code}' AND revision = {revision}"
        );
        wait_until("department stored", || async {
            self.scalar_i64(tenant, &sql).await == 1
        })
        .await;
    }

    pub async fn set_department(&self, tenant: &str, code: &str, excluded: &[&str]) {
        let event = DepartmentChanged {
            tenant: tenant.into(),
            code: code.into(),
            name: "部署".into(),
            excluded_procedures: excluded.iter().map(|s| s.to_string()).collect(),
            revision: 1,
            periods: vec![],
        };
        self.publish(
            tenant,
            chukan_proto::DEPARTMENT_CHANGED,
            event.encode_to_vec(),
        )
        .await;
        wait_until("department stored", || async {
            self.scalar_i64(tenant, "SELECT count(*) FROM inquiry.departments")
                .await
                >= 1
        })
        .await;
    }

    pub async fn post_json(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.api.post_response(token, path, body).await
    }

    pub async fn post_file(&self, token: &str, body: Vec<u8>) -> reqwest::Response {
        self.api
            .http
            .post(self.api.url("/v1/inquiry-batches"))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.api.get_response(token, path).await
    }

    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let res = self.get(token, path).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    /// Publishes the NWS's result as relay would, with a chosen bus message id.
    pub async fn answer(
        &self,
        tenant: &str,
        inquiry_id: &str,
        result: &InquiryResult,
        id: uuid::Uuid,
    ) {
        let inbound = NwsInbound {
            kind: "inquiry.result".into(),
            recipient_org: tenant.into(),
            correlation_id: inquiry_id.into(),
            body: result.encode_to_vec(),
            nws_message_id: id.to_string(),
        };
        let mut msg = OutgoingMessage::new(tenant, "nws.in.inquiry", inbound.encode_to_vec());
        msg.id = id;
        self.publish_msg(&msg).await;
    }

    /// Waits until `n` results were applied or skipped by the results consumer.
    pub async fn wait_results_consumed(&self, n: i64) {
        wait_until("results consumed", || async {
            let client = self.env.ctx.db.get().await.unwrap();
            let seen: i64 = client
                .query_one("SELECT count(*) FROM inquiry.inbox", &[])
                .await
                .unwrap()
                .get(0);
            seen >= n
        })
        .await;
    }

    pub async fn wait_status(&self, token: &str, id: &str, want: &str) -> Value {
        let path = format!("/v1/inquiries/{id}");
        let until = std::time::Instant::now() + DEADLINE;
        loop {
            let last = self.get_json(token, &path).await;
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

    pub async fn wait_nws_out(&self, n: usize) -> Vec<Delivery> {
        wait_until("messages towards the NWS", || async {
            self.nws_out.count() >= n
        })
        .await;
        self.nws_out.all()
    }

    pub async fn outbox_len(&self) -> i64 {
        let client = self.env.ctx.db.get().await.unwrap();
        client
            .query_one("SELECT count(*) FROM inquiry.outbox", &[])
            .await
            .unwrap()
            .get(0)
    }

    pub fn audits(&self) -> Vec<AuditRecord> {
        self.audit
            .all()
            .iter()
            .map(|d| AuditRecord::decode(d.body.as_slice()).unwrap())
            .collect()
    }
}

pub fn decode_request(d: &Delivery) -> (NwsOutbound, InquiryRequest) {
    let out = NwsOutbound::decode(d.body.as_slice()).unwrap();
    let req = InquiryRequest::decode(out.body.as_slice()).unwrap();
    (out, req)
}

pub fn provided(records: usize) -> InquiryResult {
    InquiryResult {
        status: "provided".into(),
        permit_id: "PERMIT-1".into(),
        records: (0..records)
            .map(|i| chukan_proto::ProvidedRecord {
                dataset: "0101".into(),
                major_version: "0002".into(),
                payload_xml: format!("<I0001>SECRET-PAYLOAD-{i}</I0001>"),
                valid_from: "2025-04-01".into(),
                valid_to: String::new(),
            })
            .collect(),
        provider_non_disclosure: true,
        manual: false,
        provided_at_ms: Utc::now().timestamp_millis(),
        ..Default::default()
    }
}

/// One line of a bulk file from its 18 field values (space-padded to the layout's widths).
pub fn bulk_line(fields: [&str; 18]) -> String {
    fields
        .iter()
        .zip(chukan_inquiry::bulk_file::FIELDS)
        .map(|(v, (_, w))| chukan_inquiry::bulk_file::pad(v, w))
        .collect()
}

/// The fields of a good bulk line for `tenant`, asking about `addressee` as of 2026-04-01.
pub fn bulk_fields<'a>(tenant: &'a str, addressee: &'a str) -> [&'a str; 18] {
    [
        "01",
        "",
        addressee,
        "20260401093000000",
        "",
        "",
        tenant,
        "0",
        AFFAIR,
        PROCEDURE,
        "",
        "",
        PROVIDER,
        INFO,
        "1",
        "0",
        "20260401",
        "",
    ]
}
