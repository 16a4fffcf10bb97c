//! 自己情報提供: a resident asks an organisation through the portal, the network delivers a
//! signed selfinfo.request with the resident's code there, and keeps the organisation's
//! selfinfo.answer for the resident, exactly once.

use chukan_proto::{
    DisclosableRecord, Envelope, Message as _, ProvidedRecord, SelfInfoAnswer, SelfInfoAttachment,
    SelfInfoItem, SelfInfoRequest,
};
use serde_json::{Value, json};

use crate::{ORG_A, ORG_B, RESIDENT, helpers::*};

/// Someone with no code anywhere.
const STRANGER: &str = "98765432109";
const INFO: &str = "TM00000000000002";

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

    async fn ask(&self, rrc: &str, body: Value) -> reqwest::Response {
        self.sim
            .http
            .post(format!(
                "{}/v1/portal/residents/{rrc}/selfinfo-requests",
                self.sim.base
            ))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn read(&self, rrc: &str, id: &str) -> reqwest::Response {
        self.sim
            .http
            .get(format!(
                "{}/v1/portal/residents/{rrc}/selfinfo-requests/{id}",
                self.sim.base
            ))
            .send()
            .await
            .unwrap()
    }

    fn answer(&self, request_id: &str, answer: &SelfInfoAnswer) -> Envelope {
        let mut env = self.org.envelope("selfinfo.answer", answer.encode_to_vec());
        env.correlation_id = request_id.to_owned();
        self.org.sign(&mut env);
        env
    }
}

fn full_answer(request_id: &str) -> SelfInfoAnswer {
    SelfInfoAnswer {
        request_id: request_id.into(),
        status: "answered".into(),
        items: vec![SelfInfoItem {
            info_code: INFO.into(),
            records: vec![ProvidedRecord {
                dataset: "0101".into(),
                major_version: "0002".into(),
                payload_xml: "<I0001>2222</I0001>".into(),
                valid_from: "2025-04-01".into(),
                valid_to: String::new(),
            }],
        }],
        records: vec![DisclosableRecord {
            event: "provision.made".into(),
            inquirer_org: ORG_B.into(),
            provider_org: ORG_A.into(),
            info_code: INFO.into(),
            requested_at_ms: 1_790_000_000_000,
            provided_at_ms: 1_790_000_001_000,
            outcome: "provided".into(),
            ..Default::default()
        }],
        attachments: vec![SelfInfoAttachment {
            info_code: INFO.into(),
            file_name: "案内.pdf".into(),
            media_type: "application/pdf".into(),
            content: b"%PDF-1.4".to_vec(),
        }],
        answered_at_ms: 1_790_000_002_000,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_resident_asks_the_org_gets_a_signed_request_and_the_answer_is_kept_once() {
    let p = Portal::new().await;
    let res = p
        .ask(RESIDENT, json!({ "org": ORG_A, "info_codes": [INFO] }))
        .await;
    assert_eq!(res.status(), 202);
    let accepted: Value = res.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["state"], "sent");

    wait_until("the org gets selfinfo.request", || async {
        p.recv.count() == 2
    })
    .await;
    let delivered = p.recv.all()[1].clone();
    check_from_nws(&delivered, "selfinfo.request", &p.sim.verifiers().await);
    assert_eq!(delivered.recipient, ORG_A);
    assert_eq!(delivered.correlation_id, id);
    let request = SelfInfoRequest::decode(delivered.body.as_slice()).unwrap();
    assert_eq!(request.request_id, id);
    assert_eq!(request.code, p.code, "the resident's code at that org");
    assert_eq!(request.info_codes, [INFO]);
    assert!(
        !delivered
            .body
            .windows(RESIDENT.len())
            .any(|w| w == RESIDENT.as_bytes())
    );

    // Not answered yet.
    let before: Value = p.read(RESIDENT, &id).await.json().await.unwrap();
    assert_eq!(before["state"], "sent");
    assert!(before["answer"].is_null());

    let answer = p.answer(&id, &full_answer(&id));
    assert_eq!(p.sim.send(&answer).await.status(), 202);
    let got: Value = p.read(RESIDENT, &id).await.json().await.unwrap();
    assert_eq!(got["state"], "answered");
    assert_eq!(got["org"], ORG_A);
    let a = &got["answer"];
    assert_eq!(a["status"], "answered");
    assert_eq!(a["items"][0]["info_code"], INFO);
    assert_eq!(
        a["items"][0]["records"][0]["payload_xml"],
        "<I0001>2222</I0001>"
    );
    assert_eq!(a["records"][0]["inquirer_org"], ORG_B);
    assert_eq!(a["attachments"][0]["file_name"], "案内.pdf");
    assert_eq!(a["attachments"][0]["content_base64"], "JVBERi0xLjQ=");

    // The same message again is a replay; a second answer is taken but the first stands.
    assert_eq!(p.sim.send(&answer).await.status(), 409);
    let mut other = full_answer(&id);
    other.status = "refused".into();
    assert_eq!(p.sim.send(&p.answer(&id, &other)).await.status(), 202);
    let again: Value = p.read(RESIDENT, &id).await.json().await.unwrap();
    assert_eq!(again["answer"]["status"], "answered");

    // Another resident cannot read it.
    assert_eq!(
        problem_code(p.read(STRANGER, &id).await).await,
        (404, "not-found".into())
    );
    p.sim.finish().await;
}

#[tokio::test]
async fn a_refusal_is_kept_with_its_reason_code() {
    let p = Portal::new().await;
    let res = p.ask(RESIDENT, json!({ "org": ORG_A })).await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until("the org gets selfinfo.request", || async {
        p.recv.count() == 2
    })
    .await;
    let request = SelfInfoRequest::decode(p.recv.all()[1].body.as_slice()).unwrap();
    assert!(request.info_codes.is_empty(), "no items = everything");
    let refusal = SelfInfoAnswer {
        request_id: id.clone(),
        status: "refused".into(),
        reason_code: "self-info-prohibited".into(),
        reason: "表示できない設定です。".into(),
        ..Default::default()
    };
    assert_eq!(p.sim.send(&p.answer(&id, &refusal)).await.status(), 202);
    let got: Value = p.read(RESIDENT, &id).await.json().await.unwrap();
    assert_eq!(got["answer"]["status"], "refused");
    assert_eq!(got["answer"]["reason_code"], "self-info-prohibited");
    p.sim.finish().await;
}

#[tokio::test]
async fn bad_requests_and_foreign_answers_are_refused_and_change_nothing() {
    let p = Portal::new().await;
    // No code at that organisation (the stranger never moved in anywhere).
    assert_eq!(
        problem_code(p.ask(STRANGER, json!({ "org": ORG_A })).await).await,
        (404, "no-code".into())
    );
    // An organisation the network does not know.
    assert_eq!(
        problem_code(p.ask(RESIDENT, json!({ "org": ORG_B })).await).await,
        (404, "not-found".into())
    );
    assert_eq!(
        problem_code(p.ask("123", json!({ "org": ORG_A })).await).await,
        (400, "invalid-field".into())
    );
    assert_eq!(
        problem_code(
            p.ask(RESIDENT, json!({ "org": ORG_A, "info_codes": ["TM1"] }))
                .await
        )
        .await
        .0,
        400
    );
    assert_eq!(
        p.sim
            .count("SELECT count(*) FROM portal_selfinfo_requests")
            .await,
        0
    );

    // An answer to a request that was never sent to this organisation.
    let never = uuid::Uuid::now_v7().to_string();
    let unknown = p.answer(&never, &full_answer(&never));
    assert_eq!(
        problem_code(p.sim.send(&unknown).await).await,
        (400, "unknown-request".into())
    );
    // Another organisation answering A's request is refused too.
    let id = p
        .ask(RESIDENT, json!({ "org": ORG_A }))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let recv_b = Receiver::start();
    let org_b = TestOrg::new(ORG_B, recv_b.port);
    assert_eq!(p.sim.register(&org_b).await.status(), 201);
    let mut foreign = org_b.envelope("selfinfo.answer", full_answer(&id).encode_to_vec());
    foreign.correlation_id = id.clone();
    org_b.sign(&mut foreign);
    assert_eq!(
        problem_code(p.sim.send(&foreign).await).await,
        (400, "unknown-request".into())
    );
    let got: Value = p.read(RESIDENT, &id).await.json().await.unwrap();
    assert_eq!(got["state"], "sent");
    p.sim.finish().await;
}
