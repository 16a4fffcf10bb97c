#![allow(clippy::unwrap_used, clippy::expect_used)]

mod doors;
mod helpers;
mod inquiry;
mod portal_notice;
mod portal_selfinfo;

use helpers::*;

pub const ORG_A: &str = "0000000000000001";
pub const ORG_B: &str = "0000000000000002";
pub const RESIDENT: &str = "12345678901";

#[tokio::test]
async fn organisations_register_update_and_read_back() {
    let sim = TestSim::spawn().await;
    let org = TestOrg::new(ORG_A, 1);
    assert_eq!(sim.register(&org).await.status(), 201);
    assert_eq!(sim.register(&org).await.status(), 200);
    let got: serde_json::Value = sim
        .http
        .get(format!("{}/v1/organizations/{ORG_A}", sim.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["org_code"], ORG_A);
    assert_eq!(got["keys"][0]["kid"], org.signer.kid());

    let missing = sim
        .http
        .get(format!("{}/v1/organizations/{ORG_B}", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(problem_code(missing).await, (404, "not-found".into()));

    let bad_key = sim
        .http
        .post(format!("{}/v1/organizations", sim.base))
        .json(&serde_json::json!({
            "org_code": ORG_B, "name": "x", "endpoint_url": "http://127.0.0.1:1",
            "keys": [{"kid": "k", "public_key": "bm90IGEga2V5"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem_code(bad_key).await, (400, "invalid-key".into()));
    let bad_org = sim
        .http
        .post(format!("{}/v1/organizations", sim.base))
        .json(&serde_json::json!({
            "org_code": "123", "name": "x", "endpoint_url": "http://127.0.0.1:1", "keys": [],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem_code(bad_org).await, (400, "invalid-field".into()));
    sim.finish().await;
}

#[tokio::test]
async fn codes_differ_per_organisation_are_stable_and_convert() {
    let sim = TestSim::spawn().await;
    let (recv_a, recv_b) = (Receiver::start(), Receiver::start());
    let (a, b) = (
        TestOrg::new(ORG_A, recv_a.port),
        TestOrg::new(ORG_B, recv_b.port),
    );
    sim.register(&a).await;
    sim.register(&b).await;
    let nws = sim.verifiers().await;

    let req_a = a.acquire(RESIDENT);
    assert_eq!(sim.send(&req_a).await.status(), 202);
    assert_eq!(sim.send(&b.acquire(RESIDENT)).await.status(), 202);
    wait_until("both organisations have their code", || async {
        recv_a.count() == 1 && recv_b.count() == 1
    })
    .await;
    let delivered_a = &recv_a.all()[0];
    assert_eq!(delivered_a.recipient, ORG_A);
    assert_eq!(delivered_a.correlation_id, req_a.correlation_id);
    assert_eq!(delivered_a.traceparent, req_a.traceparent);
    let code_a = open_result(delivered_a, &nws);
    let code_b = open_result(&recv_b.all()[0], &nws);
    assert!(code_a.ok && code_b.ok);
    assert_ne!(code_a.code, code_b.code);

    // Acquiring again (a new message) gives the same code.
    assert_eq!(sim.send(&a.acquire(RESIDENT)).await.status(), 202);
    wait_until("the second answer arrives", || async {
        recv_a.count() == 2
    })
    .await;
    assert_eq!(open_result(&recv_a.all()[1], &nws).code, code_a.code);
    // A different resident gets a different code.
    assert_eq!(sim.send(&a.acquire("98765432109")).await.status(), 202);
    wait_until("the third answer arrives", || async { recv_a.count() == 3 }).await;
    assert_ne!(open_result(&recv_a.all()[2], &nws).code, code_a.code);

    // 符号変換: A's code converts to B's code for the same person.
    let converted: serde_json::Value = sim
        .convert(ORG_A, &code_a.code, ORG_B)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(converted["code"], code_b.code.as_str());
    let unknown = sim.convert(ORG_A, "NOSUCHCODE", ORG_B).await;
    assert_eq!(problem_code(unknown).await.0, 404);
    let unknown_org = sim.convert(ORG_A, &code_a.code, "0000000000000099").await;
    assert_eq!(problem_code(unknown_org).await.0, 404);

    // The resident-record code is stored nowhere.
    let db = sim.db().await;
    for table in ["codes", "received", "deliveries"] {
        let rows = db
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .unwrap();
        for row in rows {
            let text: String = row.get(0);
            assert!(
                !text.contains(RESIDENT),
                "{table} holds the resident-record code"
            );
        }
    }
    sim.finish().await;
    recv_a.stop().await;
    recv_b.stop().await;
}

#[tokio::test]
async fn an_invalid_resident_record_code_is_answered_not_ok() {
    let sim = TestSim::spawn().await;
    let recv = Receiver::start();
    let a = TestOrg::new(ORG_A, recv.port);
    sim.register(&a).await;
    assert_eq!(sim.send(&a.acquire("12345")).await.status(), 202);
    wait_until("the answer arrives", || async { recv.count() == 1 }).await;
    let result = open_result(&recv.all()[0], &sim.verifiers().await);
    assert!(!result.ok);
    assert_eq!(result.reason_code, "invalid-resident-record-code");
    assert_eq!(sim.count("SELECT count(*) FROM codes").await, 0);
    sim.finish().await;
    recv.stop().await;
}

#[tokio::test]
async fn refused_messages_are_not_answered() {
    let sim = TestSim::spawn().await;
    let recv = Receiver::start();
    let a = TestOrg::new(ORG_A, recv.port);
    sim.register(&a).await;

    let mut tampered = a.acquire(RESIDENT);
    tampered.correlation_id.push('x');
    assert_eq!(
        problem_code(sim.send(&tampered).await).await,
        (401, "bad-signature".into())
    );

    let stranger = TestOrg::new(ORG_A, recv.port); // same org code, unregistered key id
    let mut unknown_key = stranger.acquire(RESIDENT);
    unknown_key.kid = "org-unknown".into();
    assert_eq!(
        problem_code(sim.send(&unknown_key).await).await,
        (401, "unknown-key".into())
    );

    let unregistered = TestOrg::new("0000000000000042", recv.port);
    assert_eq!(
        problem_code(sim.send(&unregistered.acquire(RESIDENT)).await).await,
        (403, "unknown-sender".into())
    );

    let mut stale = a.acquire(RESIDENT);
    stale.timestamp_ms -= 301_000;
    a.sign(&mut stale);
    assert_eq!(
        problem_code(sim.send(&stale).await).await,
        (400, "stale-message".into())
    );

    let mut elsewhere = a.acquire(RESIDENT);
    elsewhere.recipient = ORG_B.into();
    a.sign(&mut elsewhere);
    assert_eq!(
        problem_code(sim.send(&elsewhere).await).await,
        (400, "wrong-recipient".into())
    );

    let odd = a.envelope("weather.report", vec![]);
    assert_eq!(
        problem_code(sim.send(&odd).await).await,
        (400, "unknown-kind".into())
    );

    let garbage = sim
        .http
        .post(format!("{}/v1/messages", sim.base))
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem_code(garbage).await,
        (400, "malformed-envelope".into())
    );

    assert_eq!(sim.count("SELECT count(*) FROM deliveries").await, 0);
    assert_eq!(sim.count("SELECT count(*) FROM received").await, 0);

    // A replayed message id is refused and answered only once.
    let once = a.acquire(RESIDENT);
    assert_eq!(sim.send(&once).await.status(), 202);
    assert_eq!(
        problem_code(sim.send(&once).await).await,
        (409, "replayed".into())
    );
    wait_until("the one answer arrives", || async { recv.count() == 1 }).await;
    assert_eq!(sim.count("SELECT count(*) FROM deliveries").await, 1);
    sim.finish().await;
    recv.stop().await;
}

#[tokio::test]
async fn deliveries_to_a_down_endpoint_are_retried_until_it_comes_up() {
    let sim = TestSim::spawn().await;
    let port = unused_port();
    let a = TestOrg::new(ORG_A, port);
    sim.register(&a).await;
    assert_eq!(sim.send(&a.acquire(RESIDENT)).await.status(), 202);
    wait_until("two attempts have failed", || async {
        sim.count(
            "SELECT coalesce(max(attempts), 0)::int8 FROM deliveries WHERE delivered_at IS NULL",
        )
        .await
            >= 2
    })
    .await;

    let recv = Receiver::start_on(port);
    wait_until("the answer arrives", || async { recv.count() == 1 }).await;
    wait_until("the delivery is marked delivered", || async {
        sim.count(
            "SELECT count(*) FROM deliveries WHERE delivered_at IS NOT NULL AND failed_at IS NULL",
        )
        .await
            == 1
    })
    .await;
    assert!(open_result(&recv.all()[0], &sim.verifiers().await).ok);
    sim.finish().await;
    recv.stop().await;
}

#[tokio::test]
async fn a_delivery_fails_for_good_after_the_last_delay_and_is_kept() {
    let mut settings = settings(&fresh_database_url());
    settings.delivery_retry_ms = vec![20, 20];
    let sim = TestSim::spawn_with(settings).await;
    let a = TestOrg::new(ORG_A, unused_port());
    sim.register(&a).await;
    assert_eq!(sim.send(&a.acquire(RESIDENT)).await.status(), 202);
    wait_until("the delivery has failed for good", || async {
        sim.count("SELECT count(*) FROM deliveries WHERE failed_at IS NOT NULL AND attempts = 3")
            .await
            == 1
    })
    .await;
    sim.finish().await;
}

#[tokio::test]
async fn codes_survive_a_restart() {
    let sim = TestSim::spawn().await;
    let (recv_a, recv_b) = (Receiver::start(), Receiver::start());
    let (a, b) = (
        TestOrg::new(ORG_A, recv_a.port),
        TestOrg::new(ORG_B, recv_b.port),
    );
    sim.register(&a).await;
    sim.register(&b).await;
    let replayed = a.acquire(RESIDENT);
    sim.send(&replayed).await;
    sim.send(&b.acquire(RESIDENT)).await;
    wait_until("both answers arrive", || async {
        recv_a.count() == 1 && recv_b.count() == 1
    })
    .await;
    let nws = sim.verifiers().await;
    let code_a = open_result(&recv_a.all()[0], &nws).code;
    let code_b = open_result(&recv_b.all()[0], &nws).code;

    let settings = sim.stop().await;
    let sim = TestSim::spawn_with(settings).await;
    let converted: serde_json::Value = sim
        .convert(ORG_A, &code_a, ORG_B)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(converted["code"], code_b.as_str());
    // The replay record survived too.
    assert_eq!(sim.send(&replayed).await.status(), 409);
    assert_eq!(sim.count("SELECT count(*) FROM codes").await, 2);
    sim.finish().await;
    recv_a.stop().await;
    recv_b.stop().await;
}
