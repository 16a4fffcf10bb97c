//! 情報照会 routing: 別表第二, permits, provision answers, readiness.

use chukan_proto::Envelope;

use crate::{ORG_A, ORG_B, RESIDENT, helpers::*};

const ORG_C: &str = "0000000000000003";
/// 児童手当 / 児童手当の認定請求 / 地方税関係情報: permitted.
const CHILD_ALLOWANCE_TAX: (&str, &str, &str) =
    ("JM00000000000001", "JT00000000000101", "TM00000000000002");
/// 児童手当 / 児童手当の認定請求 / 医療保険給付関係情報: not in 別表第二.
const CHILD_ALLOWANCE_MEDICAL: (&str, &str, &str) =
    ("JM00000000000001", "JT00000000000101", "TM00000000000031");

/// A simulator with inquirer A and provider B registered, and A's code for RESIDENT.
struct Setup {
    sim: TestSim,
    recv_a: Receiver,
    recv_b: Receiver,
    a: TestOrg,
    b: TestOrg,
    code_a: String,
}

impl Setup {
    async fn new() -> Setup {
        let sim = TestSim::spawn().await;
        let (recv_a, recv_b) = (Receiver::start(), Receiver::start());
        let (a, b) = (
            TestOrg::new(ORG_A, recv_a.port),
            TestOrg::new(ORG_B, recv_b.port),
        );
        assert_eq!(sim.register(&a).await.status(), 201);
        assert_eq!(sim.register(&b).await.status(), 201);
        assert_eq!(sim.send(&a.acquire(RESIDENT)).await.status(), 202);
        wait_until("A has its code", || async { recv_a.count() == 1 }).await;
        let code_a = open_result(&recv_a.all()[0], &sim.verifiers().await).code;
        Setup {
            sim,
            recv_a,
            recv_b,
            a,
            b,
            code_a,
        }
    }

    async fn finish(self) {
        self.sim.finish().await;
        self.recv_a.stop().await;
        self.recv_b.stop().await;
    }

    /// Deliveries owed to `org`, as committed with each 202 (so counting them needs no wait).
    async fn deliveries_to(&self, org: &str) -> i64 {
        self.sim
            .count(&format!(
                "SELECT count(*) FROM deliveries WHERE recipient = '{org}'"
            ))
            .await
    }

    /// Sends `inquiry` from A and waits for A's next delivery: the inquiry.result.
    async fn refused_result(&self, inquiry: &Envelope) -> chukan_proto::InquiryResult {
        let before = self.recv_a.count();
        assert_eq!(self.sim.send(inquiry).await.status(), 202);
        wait_until("A gets an inquiry.result", || async {
            self.recv_a.count() == before + 1
        })
        .await;
        let delivered = self.recv_a.all()[before].clone();
        assert_eq!(delivered.correlation_id, inquiry.correlation_id);
        assert_eq!(delivered.recipient, ORG_A);
        open_inquiry_result(&delivered, &self.sim.verifiers().await)
    }
}

#[tokio::test]
async fn a_permitted_inquiry_reaches_the_provider_with_a_signed_permit_and_its_answer_comes_back_once()
 {
    let s = Setup::new().await;
    let nws = s.sim.verifiers().await;
    let inquiry = s.a.inquiry(&s.code_a, ORG_B, CHILD_ALLOWANCE_TAX);
    let before_ms = chrono::Utc::now().timestamp_millis();
    assert_eq!(s.sim.send(&inquiry).await.status(), 202);
    wait_until("B gets the provision.request", || async {
        s.recv_b.count() == 1
    })
    .await;
    let forwarded = s.recv_b.all()[0].clone();
    assert_eq!(forwarded.recipient, ORG_B);
    assert_eq!(forwarded.traceparent, inquiry.traceparent);
    let (request, permit) = open_provision_request(&forwarded, &nws);
    assert_eq!(forwarded.correlation_id, permit.permit_id);
    assert_eq!(
        uuid::Uuid::parse_str(&permit.permit_id)
            .unwrap()
            .get_version_num(),
        7
    );
    assert_eq!(permit.inquirer_org, ORG_A);
    assert_eq!(permit.provider_org, ORG_B);
    assert_eq!(
        (
            permit.affair_code.as_str(),
            permit.procedure_code.as_str(),
            permit.info_code.as_str()
        ),
        CHILD_ALLOWANCE_TAX
    );
    assert_eq!((permit.serial_no.as_str(), permit.branch_no), ("S0001", 2));
    assert!(permit.issued_at_ms >= before_ms);
    assert!(permit.issued_at_ms <= chrono::Utc::now().timestamp_millis());
    assert_eq!(
        permit.expires_at_ms - permit.issued_at_ms,
        30 * 24 * 60 * 60 * 1000
    );
    // The provider's code is the converted one, not the inquirer's.
    let converted: serde_json::Value = s
        .sim
        .convert(ORG_A, &s.code_a, ORG_B)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(converted["code"], permit.provider_code.as_str());
    assert_ne!(permit.provider_code, s.code_a);
    assert!(request.inquirer_non_disclosure);
    assert_eq!(request.condition.as_ref().unwrap().from, "2026-04-01");
    assert_eq!(s.sim.count("SELECT count(*) FROM permits").await, 1);

    // 情報提供: B answers; A gets the result under its own inquiry id.
    assert_eq!(
        s.sim.send(&s.b.answer(&permit.permit_id)).await.status(),
        202
    );
    wait_until("A gets the inquiry.result", || async {
        s.recv_a.count() == 2
    })
    .await;
    let delivered = s.recv_a.all()[1].clone();
    assert_eq!(delivered.correlation_id, inquiry.correlation_id);
    let result = open_inquiry_result(&delivered, &nws);
    assert_eq!(result.status, "provided");
    assert_eq!(result.permit_id, permit.permit_id);
    assert_eq!(result.records.len(), 1);
    assert_eq!(result.records[0].dataset, "D01");
    assert!(result.provider_non_disclosure);
    assert_eq!(result.provided_at_ms, 1_790_000_000_000);
    assert_eq!(
        s.sim
            .count("SELECT count(*) FROM permits WHERE answered_at IS NOT NULL")
            .await,
        1
    );

    // A second answer (a new message) is taken, and forwarded to nobody.
    let deliveries_before = s.deliveries_to(ORG_A).await;
    assert_eq!(deliveries_before, 2);
    assert_eq!(
        s.sim.send(&s.b.answer(&permit.permit_id)).await.status(),
        202
    );
    assert_eq!(s.deliveries_to(ORG_A).await, deliveries_before);
    // The same answer again is a replay.
    let answer = s.b.answer(&permit.permit_id);
    assert_eq!(s.sim.send(&answer).await.status(), 202);
    assert_eq!(
        problem_code(s.sim.send(&answer).await).await,
        (409, "replayed".into())
    );
    assert_eq!(s.deliveries_to(ORG_A).await, deliveries_before);
    assert_eq!(s.recv_a.count(), 2);
    s.finish().await;
}

#[tokio::test]
async fn an_answer_from_another_organisation_or_for_no_permit_is_refused() {
    let s = Setup::new().await;
    let c = TestOrg::new(ORG_C, s.recv_b.port);
    s.sim.register(&c).await;
    assert_eq!(
        s.sim
            .send(&s.a.inquiry(&s.code_a, ORG_B, CHILD_ALLOWANCE_TAX))
            .await
            .status(),
        202
    );
    wait_until("B gets the provision.request", || async {
        s.recv_b.count() == 1
    })
    .await;
    let permit_id = s.recv_b.all()[0].correlation_id.clone();

    // C is not the permit's provider, and neither is the inquirer.
    assert_eq!(
        problem_code(s.sim.send(&c.answer(&permit_id)).await).await,
        (403, "not-provider".into())
    );
    assert_eq!(
        problem_code(s.sim.send(&s.a.answer(&permit_id)).await).await,
        (403, "not-provider".into())
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        problem_code(s.sim.send(&s.b.answer(&unknown)).await).await,
        (400, "unknown-permit".into())
    );
    assert_eq!(
        problem_code(s.sim.send(&s.b.answer("not-a-permit")).await).await,
        (400, "unknown-permit".into())
    );
    let mut mismatch = s.b.answer(&permit_id);
    mismatch.correlation_id = unknown;
    s.b.sign(&mut mismatch);
    assert_eq!(
        problem_code(s.sim.send(&mismatch).await).await,
        (400, "permit-mismatch".into())
    );
    let mut garbage = s.b.answer(&permit_id);
    garbage.body = vec![0xff, 0xff];
    s.b.sign(&mut garbage);
    assert_eq!(
        problem_code(s.sim.send(&garbage).await).await,
        (400, "malformed-body".into())
    );
    // Nothing was forwarded and the permit is still open for its provider.
    assert_eq!(
        s.sim
            .count("SELECT count(*) FROM permits WHERE answered_at IS NOT NULL")
            .await,
        0
    );
    assert_eq!(s.deliveries_to(ORG_A).await, 1);
    assert_eq!(s.sim.send(&s.b.answer(&permit_id)).await.status(), 202);
    assert_eq!(s.deliveries_to(ORG_A).await, 2);
    s.finish().await;
}

#[tokio::test]
async fn an_inquiry_not_in_beppyo2_is_answered_not_permitted_with_the_published_message() {
    let s = Setup::new().await;
    let result = s
        .refused_result(&s.a.inquiry(&s.code_a, ORG_B, CHILD_ALLOWANCE_MEDICAL))
        .await;
    assert_eq!(result.status, "not-permitted");
    assert_eq!(result.reason_code, "not-permitted");
    assert_eq!(
        result.reason,
        "指定された特定個人情報名「医療保険給付関係情報」の照会は許可されていません。"
    );
    assert!(result.permit_id.is_empty());

    // A listed procedure/item pair under another affair is not permitted either.
    let wrong_affair = s
        .refused_result(&s.a.inquiry(
            &s.code_a,
            ORG_B,
            ("JM00000000000002", "JT00000000000101", "TM00000000000002"),
        ))
        .await;
    assert_eq!(wrong_affair.status, "not-permitted");
    assert_eq!(
        wrong_affair.reason,
        "指定された特定個人情報名「地方税関係情報」の照会は許可されていません。"
    );
    // An item the table does not know is named by its code.
    let unknown_item = s
        .refused_result(&s.a.inquiry(
            &s.code_a,
            ORG_B,
            ("JM00000000000001", "JT00000000000101", "TM00000000009999"),
        ))
        .await;
    assert_eq!(
        unknown_item.reason,
        "指定された特定個人情報名「TM00000000009999」の照会は許可されていません。"
    );
    assert_eq!(s.sim.count("SELECT count(*) FROM permits").await, 0);
    assert_eq!(s.deliveries_to(ORG_B).await, 0);
    s.finish().await;
}

#[tokio::test]
async fn an_unknown_code_or_provider_is_answered_without_a_permit() {
    let s = Setup::new().await;
    let unknown_code = s
        .refused_result(&s.a.inquiry("NOSUCHCODE", ORG_B, CHILD_ALLOWANCE_TAX))
        .await;
    assert_eq!(unknown_code.status, "unknown-code");
    assert_eq!(unknown_code.reason_code, "unknown-code");
    assert!(unknown_code.reason.contains("機関別符号"));
    // B's code is B's, not A's: A cannot use it.
    let converted: serde_json::Value = s
        .sim
        .convert(ORG_A, &s.code_a, ORG_B)
        .await
        .json()
        .await
        .unwrap();
    let not_a_code = s
        .refused_result(&s.a.inquiry(
            converted["code"].as_str().unwrap(),
            ORG_B,
            CHILD_ALLOWANCE_TAX,
        ))
        .await;
    assert_eq!(not_a_code.status, "unknown-code");

    let unknown_provider = s
        .refused_result(&s.a.inquiry(&s.code_a, "0000000000000099", CHILD_ALLOWANCE_TAX))
        .await;
    assert_eq!(unknown_provider.status, "unknown-provider");
    assert!(unknown_provider.reason.contains("提供者機関"));
    assert_eq!(s.sim.count("SELECT count(*) FROM permits").await, 0);
    assert_eq!(s.deliveries_to(ORG_B).await, 0);

    // A replayed inquiry is refused and answered once.
    let once = s.a.inquiry("NOSUCHCODE", ORG_B, CHILD_ALLOWANCE_TAX);
    let before = s.deliveries_to(ORG_A).await;
    assert_eq!(s.sim.send(&once).await.status(), 202);
    assert_eq!(
        problem_code(s.sim.send(&once).await).await,
        (409, "replayed".into())
    );
    assert_eq!(s.deliveries_to(ORG_A).await, before + 1);
    let mut garbage = s.a.inquiry(&s.code_a, ORG_B, CHILD_ALLOWANCE_TAX);
    garbage.body = vec![0xff, 0xff];
    s.a.sign(&mut garbage);
    assert_eq!(
        problem_code(s.sim.send(&garbage).await).await,
        (400, "malformed-body".into())
    );
    s.finish().await;
}

#[tokio::test]
async fn beppyo2_is_published_with_names() {
    let sim = TestSim::spawn().await;
    let table: serde_json::Value = sim
        .http
        .get(format!("{}/v1/beppyo2", sim.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let procedures = table["procedures"].as_array().unwrap();
    assert!(procedures.len() >= 8);
    assert!(table["items"].as_array().unwrap().len() >= 6);
    let first = procedures
        .iter()
        .find(|p| p["code"] == "JT00000000000101")
        .unwrap();
    assert_eq!(first["name"], "児童手当の認定請求");
    assert_eq!(first["affair"]["code"], "JM00000000000001");
    assert_eq!(first["affair"]["name"], "児童手当");
    assert_eq!(
        first["items"],
        serde_json::json!([{"code": "TM00000000000002", "name": "地方税関係情報"}])
    );
    let insurance = procedures
        .iter()
        .find(|p| p["code"] == "JT00000000000201")
        .unwrap();
    let items: Vec<&str> = insurance["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(items, ["TM00000000000031", "TM00000000000002"]);
    sim.finish().await;
}

#[tokio::test]
async fn readiness_can_be_faulted_and_restored() {
    let sim = TestSim::spawn().await;
    let ready = |sim: &TestSim| {
        let url = format!("{}/v1/ready", sim.base);
        let http = sim.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let ok = ready(&sim).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"ready": true})
    );
    let set = sim
        .http
        .post(format!("{}/v1/faults/not-ready", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    assert_eq!(
        problem_code(ready(&sim).await).await,
        (503, "not-ready".into())
    );
    // Not ready only answers the readiness check: messages are still processed.
    let recv = Receiver::start();
    let a = TestOrg::new(ORG_A, recv.port);
    sim.register(&a).await;
    assert_eq!(sim.send(&a.acquire(RESIDENT)).await.status(), 202);
    let cleared = sim
        .http
        .delete(format!("{}/v1/faults/not-ready", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert_eq!(ready(&sim).await.status(), 200);
    // DELETE /v1/faults clears it too.
    sim.http
        .post(format!("{}/v1/faults/not-ready", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready(&sim).await.status(), 503);
    sim.http
        .delete(format!("{}/v1/faults", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready(&sim).await.status(), 200);
    sim.finish().await;
    recv.stop().await;
}
