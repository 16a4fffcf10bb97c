#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The code service against real PostgreSQL and RabbitMQ.

mod helpers;
mod openapi;

use std::time::Duration;

use chukan_auth::Role;
use chukan_proto::{CodeAcquireRequest, CodeAcquireResult, Message};
use helpers::{ORG_A, ORG_B, decode_outbound, spawn_app};
use serde_json::{Value, json};

fn request(addressee: &str) -> Value {
    json!({ "integrated_addressee_number": addressee, "resident_record_code": "12345678901" })
}

#[actix_web::test]
async fn acquisition_goes_out_once_and_a_duplicated_answer_has_one_effect() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    let res = app.post_acquisition(&token, request("42")).await;
    assert_eq!(res.status(), 202);
    assert!(res.headers().get("location").is_some());
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.status(&token, &id).await["status"], "pending");

    let sent = app.wait_sent(1).await;
    let out = decode_outbound(&sent[0]);
    assert_eq!(out.kind, "code.acquire");
    assert_eq!(out.sender_org, ORG_A);
    assert_eq!(out.correlation_id, id);
    assert_eq!(sent[0].tenant, ORG_A);
    let req = CodeAcquireRequest::decode(out.body.as_slice()).unwrap();
    assert_eq!(req.resident_record_code, "12345678901");

    // The same NWS message delivered twice: one link, one completion.
    let msg_id = uuid::Uuid::now_v7();
    let result = CodeAcquireResult {
        ok: true,
        code: "C0DE".into(),
        ..Default::default()
    };
    app.answer(ORG_A, &id, result.clone(), msg_id).await;
    app.answer(ORG_A, &id, result, msg_id).await;
    let done = app.wait_status(&token, &id, "done").await;
    assert!(done["completed_at"].is_string());
    chukan_testkit::wait_until(
        std::time::Duration::from_secs(10),
        "both deliveries consumed",
        || async {
            let client = app.env.ctx.db.get().await.unwrap();
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM code.inbox WHERE message_id = $1",
                    &[&msg_id],
                )
                .await
                .unwrap()
                .get(0);
            n == 1
                && chukan_mq::metrics::consumed(
                    &format!("{}code.nws-in", app.env.ctx.bus.namespace()),
                    "ok",
                ) >= 2
        },
    )
    .await
    .unwrap();
    assert_eq!(app.count(ORG_A, "links").await, 1);
    // Inquiry and provision learn the link from one code.linked event, not two.
    chukan_testkit::wait_until(Duration::from_secs(10), "code.linked", || async {
        !app.linked.lock().unwrap().is_empty()
    })
    .await
    .unwrap();
    // The relay deletes the row once the broker confirmed; that may come after delivery.
    chukan_testkit::wait_until(
        Duration::from_secs(10),
        "outbox drained once published",
        || async { app.outbox_len().await == 0 },
    )
    .await
    .unwrap();
    let linked = app.linked.lock().unwrap().clone();
    assert_eq!(linked.len(), 1, "one event for one link");
    // Counted for the statistics: an acquisition done, with neither the addressee nor the code.
    chukan_testkit::wait_until(Duration::from_secs(10), "stats.exchange", || async {
        !app.stats.lock().unwrap().is_empty()
    })
    .await
    .unwrap();
    let stats = app.stats.lock().unwrap().clone();
    assert_eq!(stats.len(), 1);
    let stat = chukan_proto::ExchangeStat::decode(stats[0].body.as_slice()).unwrap();
    assert_eq!(
        (
            stat.tenant.as_str(),
            stat.event.as_str(),
            stat.outcome.as_str()
        ),
        (ORG_A, "code.acquired", "done")
    );
    assert!(stat.requested_at_ms > 0 && stat.at_ms >= stat.requested_at_ms);
    let event = chukan_proto::CodeLinked::decode(linked[0].body.as_slice()).unwrap();
    assert_eq!(
        (
            event.tenant.as_str(),
            event.addressee.as_str(),
            event.code.as_str()
        ),
        (ORG_A, "42", "C0DE")
    );
    assert_eq!(linked[0].tenant, ORG_A);

    let held: Value = app.holding(&token, "42").await.json().await.unwrap();
    assert_eq!(held["held"], true);
    // The deprecated form (the number in the URL) answers the same for one more release.
    let old: Value = app.get(&token, "/v1/codes/42").await.json().await.unwrap();
    assert_eq!(old, held);
    // Asking again once the code is held: 200, same id, nothing new sent.
    let again = app.post_acquisition(&token, request("42")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id.as_str());
    assert_eq!(app.sent.lock().unwrap().len(), 1);
}

#[actix_web::test]
async fn repeating_a_pending_request_returns_the_same_id() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    let first: Value = app
        .post_acquisition(&token, request("7"))
        .await
        .json()
        .await
        .unwrap();
    let second = app.post_acquisition(&token, request("7")).await;
    assert_eq!(second.status(), 202);
    assert_eq!(second.json::<Value>().await.unwrap()["id"], first["id"]);
    assert_eq!(app.count(ORG_A, "acquisitions").await, 1);
}

#[actix_web::test]
async fn a_refusal_from_the_nws_fails_the_request_with_its_reason() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    let id = app
        .post_acquisition(&token, request("8"))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refusal = CodeAcquireResult {
        ok: false,
        reason_code: "unknown-resident".into(),
        reason: "住民票コードに該当する住民が存在しません。".into(),
        ..Default::default()
    };
    app.answer(ORG_A, &id, refusal, uuid::Uuid::now_v7()).await;
    let failed = app.wait_status(&token, &id, "failed").await;
    assert_eq!(failed["reason_code"], "unknown-resident");
    assert_eq!(app.count(ORG_A, "links").await, 0);
    let held: Value = app.holding(&token, "8").await.json().await.unwrap();
    assert_eq!(held["held"], false);
}

#[actix_web::test]
async fn bad_input_gets_problem_json_and_stores_nothing() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    let big = "9".repeat(70_000);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed", "{\"integrated_addressee_number\":".into(), 400, "malformed-json"),
        ("addressee too long", request("1234567890123456").to_string(), 400, "invalid-field"),
        (
            "resident code 10 digits",
            json!({"integrated_addressee_number":"1","resident_record_code":"1234567890"}).to_string(),
            400,
            "invalid-field",
        ),
        (
            "letters",
            json!({"integrated_addressee_number":"12a","resident_record_code":"12345678901"}).to_string(),
            400,
            "invalid-field",
        ),
        (
            "unknown field",
            json!({"integrated_addressee_number":"1","resident_record_code":"12345678901","my_number":"x"}).to_string(),
            400,
            "invalid-field",
        ),
        ("oversized", json!({"integrated_addressee_number": big}).to_string(), 413, "payload-too-large"),
    ];
    for (what, body, status, code) in cases {
        let res = app
            .api
            .http
            .post(app.api.url("/v1/codes/acquisitions"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{what}");
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            "application/problem+json",
            "{what}"
        );
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], code, "{what}: {problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(problem["action"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(
            !problem.to_string().contains("12345678901"),
            "{what}: echoed a value"
        );
    }
    let bad_path = app.get(&token, "/v1/codes/acquisitions/not-a-uuid").await;
    assert_eq!(bad_path.status(), 400);
    let bad_addressee = app.holding(&token, "12345678901234567").await;
    assert_eq!(bad_addressee.status(), 400);
    let bad_addressee = app.get(&token, "/v1/codes/12345678901234567").await;
    assert_eq!(bad_addressee.status(), 400);
    // The literal path is not taken for an addressee: another method is 405.
    let wrong_method = app.get(&token, "/v1/codes/acquisitions").await;
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    assert_eq!(app.count(ORG_A, "acquisitions").await, 0);
    assert_eq!(app.outbox_len().await, 0);
}

#[actix_web::test]
async fn callers_need_a_token_and_a_business_role() {
    let app = spawn_app().await;
    let none = app
        .api
        .http
        .post(app.api.url("/v1/codes/acquisitions"))
        .json(&request("1"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let admin_only = app.env.token(ORG_A, &[Role::SystemAdmin]);
    let res = app.post_acquisition(&admin_only, request("1")).await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "forbidden");
    let staff = app.env.token(ORG_A, &[Role::BusinessStaff]);
    assert_eq!(
        app.post_acquisition(&staff, request("1")).await.status(),
        202
    );
}

#[actix_web::test]
async fn another_tenant_cannot_see_a_request_even_with_its_id() {
    let app = spawn_app().await;
    let token_a = app.token(ORG_A);
    let token_b = app.token(ORG_B);
    let id = app
        .post_acquisition(&token_a, request("55"))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app
        .get(&token_b, &format!("/v1/codes/acquisitions/{id}"))
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(app.count(ORG_B, "acquisitions").await, 0);
    // B's own request for the same addressee number is a different resident: its own row.
    assert_eq!(
        app.post_acquisition(&token_b, request("55")).await.status(),
        202
    );
    assert_eq!(app.count(ORG_A, "acquisitions").await, 1);
    assert_eq!(app.count(ORG_B, "acquisitions").await, 1);
    // An answer addressed to B cannot complete A's request.
    let result = CodeAcquireResult {
        ok: true,
        code: "X".into(),
        ..Default::default()
    };
    app.answer(ORG_B, &id, result, uuid::Uuid::now_v7()).await;
    let b_consumed = || async {
        let client = app.env.ctx.db.get().await.unwrap();
        let n: i64 = client
            .query_one("SELECT count(*) FROM code.inbox", &[])
            .await
            .unwrap()
            .get(0);
        n >= 1
    };
    chukan_testkit::wait_until(
        std::time::Duration::from_secs(10),
        "answer consumed",
        b_consumed,
    )
    .await
    .unwrap();
    assert_eq!(app.status(&token_a, &id).await["status"], "pending");
}
