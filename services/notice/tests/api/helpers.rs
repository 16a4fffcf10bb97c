//! Spawns the notice service on the real HTTP server with a fresh database and namespace, a
//! manual clock, and queues capturing what it sends towards the NWS and the audit service.
//! The tests play the NWS: they read `nws.out` and publish answers on `nws.in.notice`.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use chukan_auth::Role;
use chukan_core::ManualClock;
use chukan_mq::{Delivery, OutgoingMessage};
use chukan_proto::{
    AuditRecord, CodeLinked, Message, NoticeSend, NoticeState, NoticeStatusCheck,
    NoticeStatusReport, NwsInbound, NwsOutbound,
};
use chukan_testkit::{Captured, TestApi, TestEnv};
use serde_json::{Value, json};

pub const ORG_A: &str = "1310010000000001";
pub const ORG_B: &str = "2710000000000002";
pub const ADDRESSEE: &str = "000000000012345";
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
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let env = TestEnv::new_with(&[chukan_notice::migrations()], |_| {}, clock.clone())
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
    let parts = chukan_notice::start(&env.ctx).await.unwrap();
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

/// A notice with two reply choices and one small attachment.
pub fn notice_body(addressee: &str) -> Value {
    json!({
        "addressee": addressee,
        "title": "児童手当の現況届について",
        "body": "現況届の提出をお願いします。SECRET-BODY",
        "attachments": [{
            "file_name": "案内.pdf",
            "media_type": "application/pdf",
            // "%PDF-1.4 test"
            "content_base64": "JVBERi0xLjQgdGVzdA=="
        }],
        "reply_choices": ["提出します", "提出しません"]
    })
}

impl TestApp {
    pub fn token(&self, tenant: &str) -> String {
        self.env.token(tenant, &[Role::SystemClient])
    }

    pub async fn publish_msg(&self, msg: &OutgoingMessage) {
        self.env.publish(msg).await;
    }

    /// One value from the service's tables, read as `tenant` (RLS applies).
    pub async fn scalar_i64(&self, tenant: &str, sql: &str) -> i64 {
        self.env.scalar_i64(tenant, sql).await
    }

    /// Publishes code.linked for the residents and waits until the service holds them.
    pub async fn link_codes(&self, tenant: &str, addressees: &[&str]) {
        let before = self
            .scalar_i64(tenant, "SELECT count(*) FROM notice.code_links")
            .await;
        for a in addressees {
            let event = CodeLinked {
                tenant: tenant.into(),
                addressee: (*a).into(),
                code: format!("CODE-{a}"),
                linked_at_ms: Utc::now().timestamp_millis(),
            };
            let msg =
                OutgoingMessage::new(tenant, chukan_proto::CODE_LINKED, event.encode_to_vec());
            self.publish_msg(&msg).await;
        }
        let want = before + addressees.len() as i64;
        wait_until("code links stored", || async {
            self.scalar_i64(tenant, "SELECT count(*) FROM notice.code_links")
                .await
                >= want
        })
        .await;
    }

    pub async fn post_json(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.api.post_response(token, path, body).await
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.api.get_response(token, path).await
    }

    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let res = self.get(token, path).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    /// Sends a notice and returns its id.
    pub async fn send_notice(&self, token: &str, body: &Value) -> String {
        let res = self.post_json(token, "/v1/notices", body).await;
        assert_eq!(res.status(), 202);
        let v: Value = res.json().await.unwrap();
        v["notice_id"].as_str().unwrap().to_string()
    }

    /// Polls the notice until its state is `want`.
    pub async fn wait_state(&self, token: &str, id: &str, want: &str) -> Value {
        let path = format!("/v1/notices/{id}");
        let until = std::time::Instant::now() + DEADLINE;
        loop {
            let last = self.get_json(token, &path).await;
            if last["state"] == want {
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

    /// Publishes the NWS's `notice.status` as relay would, with a chosen bus message id.
    pub async fn report(
        &self,
        tenant: &str,
        correlation_id: &str,
        report: &NoticeStatusReport,
        id: uuid::Uuid,
    ) {
        let inbound = NwsInbound {
            kind: "notice.status".into(),
            recipient_org: tenant.into(),
            correlation_id: correlation_id.into(),
            body: report.encode_to_vec(),
            nws_message_id: id.to_string(),
        };
        let mut msg = OutgoingMessage::new(tenant, "nws.in.notice", inbound.encode_to_vec());
        msg.id = id;
        self.publish_msg(&msg).await;
    }

    /// Waits until the status consumer has claimed `n` messages.
    pub async fn wait_reports_consumed(&self, n: i64) {
        wait_until("status reports consumed", || async {
            let client = self.env.ctx.db.get().await.unwrap();
            let seen: i64 = client
                .query_one("SELECT count(*) FROM notice.inbox", &[])
                .await
                .unwrap()
                .get(0);
            seen >= n
        })
        .await;
    }

    pub fn audits(&self) -> Vec<AuditRecord> {
        self.audit
            .all()
            .iter()
            .map(|d| AuditRecord::decode(d.body.as_slice()).unwrap())
            .collect()
    }

    pub fn audits_of(&self, event: &str) -> Vec<AuditRecord> {
        self.audits()
            .into_iter()
            .filter(|a| a.event == event)
            .collect()
    }

    pub async fn outbox_len(&self) -> i64 {
        let client = self.env.ctx.db.get().await.unwrap();
        client
            .query_one("SELECT count(*) FROM notice.outbox", &[])
            .await
            .unwrap()
            .get(0)
    }
}

pub fn decode_send(d: &Delivery) -> (NwsOutbound, NoticeSend) {
    let out = NwsOutbound::decode(d.body.as_slice()).unwrap();
    let send = NoticeSend::decode(out.body.as_slice()).unwrap();
    (out, send)
}

pub fn decode_check(d: &Delivery) -> (NwsOutbound, NoticeStatusCheck) {
    let out = NwsOutbound::decode(d.body.as_slice()).unwrap();
    let check = NoticeStatusCheck::decode(out.body.as_slice()).unwrap();
    (out, check)
}

pub fn state(notice_id: &str, state: &str) -> NoticeState {
    NoticeState {
        notice_id: notice_id.into(),
        state: state.into(),
        ..Default::default()
    }
}
