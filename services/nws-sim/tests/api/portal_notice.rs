//! お知らせ: notice.send into the resident portal, reading and replying there, and
//! notice.status-check answered with each notice's state.

use chukan_proto::{
    Envelope, Message as _, NoticeAttachment, NoticeContent, NoticeSend, NoticeStatusCheck,
    NoticeStatusReport,
};
use serde_json::{Value, json};

use crate::{ORG_A, RESIDENT, helpers::*};

/// Someone else, with no notices.
const OTHER_RESIDENT: &str = "98765432109";

fn notice(org: &TestOrg, code: &str) -> Envelope {
    org.envelope(
        "notice.send",
        NoticeSend {
            code: code.to_owned(),
            content: Some(NoticeContent {
                title: "健診のお知らせ".into(),
                body: "受診してください。".into(),
                attachments: vec![NoticeAttachment {
                    file_name: "案内.pdf".into(),
                    media_type: "application/pdf".into(),
                    content: b"%PDF-1.4".to_vec(),
                }],
                reply_choices: vec!["はい".into(), "いいえ".into()],
            }),
            sent_at_ms: chrono::Utc::now().timestamp_millis(),
        }
        .encode_to_vec(),
    )
}

fn status_check(org: &TestOrg, ids: &[&str]) -> Envelope {
    org.envelope(
        "notice.status-check",
        NoticeStatusCheck {
            notice_ids: ids.iter().map(|s| s.to_string()).collect(),
        }
        .encode_to_vec(),
    )
}

struct Portal {
    sim: TestSim,
    recv: Receiver,
    org: TestOrg,
    code: String,
}

impl Portal {
    async fn new() -> Portal {
        let sim = TestSim::spawn().await;
        let recv = Receiver::start();
        let org = TestOrg::new(ORG_A, recv.port);
        assert_eq!(sim.register(&org).await.status(), 201);
        assert_eq!(sim.send(&org.acquire(RESIDENT)).await.status(), 202);
        wait_until("the org has its code", || async { recv.count() == 1 }).await;
        let code = open_result(&recv.all()[0], &sim.verifiers().await).code;
        Portal {
            sim,
            recv,
            org,
            code,
        }
    }

    /// Sends `env` and returns the next envelope delivered to the organisation.
    async fn answer_to(&self, env: &Envelope) -> (Envelope, NoticeStatusReport) {
        let before = self.recv.count();
        assert_eq!(self.sim.send(env).await.status(), 202);
        wait_until("the org gets notice.status", || async {
            self.recv.count() == before + 1
        })
        .await;
        let got = self.recv.all()[before].clone();
        check_from_nws(&got, "notice.status", &self.sim.verifiers().await);
        assert_eq!(got.correlation_id, env.correlation_id);
        assert_eq!(got.recipient, ORG_A);
        let report = NoticeStatusReport::decode(got.body.as_slice()).unwrap();
        (got, report)
    }

    fn url(&self, rrc: &str, rest: &str) -> String {
        format!("{}/v1/portal/residents/{rrc}/notices{rest}", self.sim.base)
    }

    async fn inbox(&self, rrc: &str) -> Vec<Value> {
        let res = self.sim.http.get(self.url(rrc, "")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        v["items"].as_array().unwrap().clone()
    }

    async fn post(&self, rrc: &str, rest: &str, body: Option<Value>) -> reqwest::Response {
        let mut req = self.sim.http.post(self.url(rrc, rest));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    async fn finish(self) {
        self.sim.finish().await;
        self.recv.stop().await;
    }
}

#[tokio::test]
async fn a_resident_reads_and_replies_and_a_status_check_reports_it() {
    let p = Portal::new().await;
    let send = notice(&p.org, &p.code);
    let id = send.correlation_id.clone();
    assert_eq!(p.sim.send(&send).await.status(), 202);
    // The same message again is a replay; the inbox holds the notice once.
    assert_eq!(problem_code(p.sim.send(&send).await).await.0, 409);

    let inbox = p.inbox(RESIDENT).await;
    assert_eq!(inbox.len(), 1);
    let n = &inbox[0];
    assert_eq!(n["notice_id"], id.as_str());
    assert_eq!(n["org_code"], ORG_A);
    assert_eq!(n["state"], "delivered");
    assert_eq!(n["title"], "健診のお知らせ");
    assert_eq!(n["attachments"][0]["file_name"], "案内.pdf");
    assert_eq!(n["attachments"][0]["content_base64"], "JVBERi0xLjQ=");
    assert_eq!(n["reply_choices"], json!(["はい", "いいえ"]));
    assert!(p.inbox(OTHER_RESIDENT).await.is_empty());
    // Nobody else can act on it.
    let res = p.post(OTHER_RESIDENT, &format!("/{id}/read"), None).await;
    assert_eq!(problem_code(res).await, (404, "not-found".into()));

    let (_, first) = p.answer_to(&status_check(&p.org, &[&id])).await;
    assert_eq!(first.notices.len(), 1);
    assert_eq!(first.notices[0].state, "delivered");
    assert_eq!(first.notices[0].read_at_ms, 0);

    let read = p.post(RESIDENT, &format!("/{id}/read"), None).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap()["state"], "read");
    let wrong = p
        .post(
            RESIDENT,
            &format!("/{id}/reply"),
            Some(json!({"choice": "たぶん"})),
        )
        .await;
    assert_eq!(problem_code(wrong).await, (422, "invalid-choice".into()));
    let ok = p
        .post(
            RESIDENT,
            &format!("/{id}/reply"),
            Some(json!({"choice": "はい"})),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let again = p
        .post(
            RESIDENT,
            &format!("/{id}/reply"),
            Some(json!({"choice": "いいえ"})),
        )
        .await;
    assert_eq!(problem_code(again).await, (409, "already-replied".into()));

    let stranger = uuid::Uuid::now_v7().to_string();
    let check = status_check(&p.org, &[&id, &stranger]);
    let (_, report) = p.answer_to(&check).await;
    assert_eq!(report.check_id, check.correlation_id);
    assert!(report.reported_at_ms > 0);
    let mine = &report.notices[0];
    assert_eq!(mine.notice_id, id);
    assert_eq!(mine.state, "replied");
    assert_eq!(mine.reply_choice, "はい");
    assert!(mine.read_at_ms > 0 && mine.replied_at_ms >= mine.read_at_ms);
    assert_eq!(report.notices[1].state, "unknown");
    assert_eq!(p.inbox(RESIDENT).await[0]["state"], "replied");

    let bad = p.sim.http.get(p.url("123", "")).send().await.unwrap();
    assert_eq!(problem_code(bad).await, (400, "invalid-field".into()));
    p.finish().await;
}

#[tokio::test]
async fn a_notice_for_an_unknown_code_is_answered_undeliverable() {
    let p = Portal::new().await;
    let send = notice(&p.org, "NO-SUCH-CODE");
    let id = send.correlation_id.clone();
    let (_, report) = p.answer_to(&send).await;
    assert_eq!(report.check_id, "");
    assert_eq!(report.notices.len(), 1);
    assert_eq!(report.notices[0].notice_id, id);
    assert_eq!(report.notices[0].state, "undeliverable");
    assert_eq!(report.notices[0].reason_code, "unknown-code");
    assert!(p.inbox(RESIDENT).await.is_empty());

    let (_, later) = p.answer_to(&status_check(&p.org, &[&id])).await;
    assert_eq!(later.notices[0].state, "undeliverable");
    p.finish().await;
}
