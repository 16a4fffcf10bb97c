#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The inquiry service against real PostgreSQL and RabbitMQ; the tests play the NWS.

mod bulk;
mod helpers;
mod procedures;

use chrono::{DateTime, Duration, Utc};
use chukan_proto::{InquiryResult, Message as _};
use helpers::{
    AFFAIR, INFO, ORG_A, ORG_B, PROCEDURE, PROVIDER, decode_request, inquiry_body, provided,
    spawn_app, wait_until,
};
use serde_json::{Value, json};

fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[actix_web::test]
async fn an_inquiry_goes_out_once_and_its_result_is_stored_sealed_exactly_once() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &["000000000012345"]).await;

    let res = app
        .post_json(&token, "/v1/inquiries", &inquiry_body("000000000012345"))
        .await;
    assert_eq!(res.status(), 202);
    assert!(res.headers().get("location").is_some());
    let accepted: Value = res.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_string();
    assert_eq!(accepted["serial_no"], "0000000000000001");
    assert_eq!(accepted["branch_no"], 1);
    assert_eq!(accepted["status"], "sent");
    assert_eq!(accepted["inquirer_non_disclosure"], false);
    let requested_at = ts(&accepted["requested_at"]);
    assert_eq!(requested_at, chukan_core::Clock::now(&*app.clock));
    assert_eq!(
        ts(&accepted["expires_at"]) - requested_at,
        Duration::days(30)
    );

    // The second inquiry of the tenant gets the next serial number.
    let second: Value = app
        .post_json(&token, "/v1/inquiries", &{
            let mut b = inquiry_body("000000000012345");
            b.as_object_mut().unwrap().remove("as_of");
            b["period"] = json!({"from": "2025-04-01", "to": "2026-03-31"});
            b["year_kind"] = json!("1");
            b
        })
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["serial_no"], "0000000000000002");

    let sent = app.wait_nws_out(2).await;
    let (out, req) = decode_request(&sent[0]);
    assert_eq!(out.kind, "inquiry.request");
    assert_eq!(out.sender_org, ORG_A);
    assert_eq!(out.recipient, "NWS");
    assert_eq!(out.correlation_id, id);
    assert_eq!(sent[0].tenant, ORG_A);
    assert_eq!(req.inquirer_code, "CODE-000000000012345");
    assert_eq!(req.serial_no, "0000000000000001");
    assert_eq!(req.branch_no, 1);
    assert_eq!(
        (req.affair_code.as_str(), req.procedure_code.as_str()),
        (AFFAIR, PROCEDURE)
    );
    assert_eq!(
        (req.info_code.as_str(), req.provider_org.as_str()),
        (INFO, PROVIDER)
    );
    let cond = req.condition.unwrap();
    assert_eq!(
        (cond.kind.as_str(), cond.from.as_str(), cond.to.as_str()),
        ("1", "2026-04-01", "")
    );
    assert_eq!(req.requested_at_ms, requested_at.timestamp_millis());
    assert_eq!(
        req.expires_at_ms - req.requested_at_ms,
        chukan_proto::REQUEST_VALIDITY_MS
    );
    let (_, req2) = decode_request(&sent[1]);
    let cond2 = req2.condition.unwrap();
    assert_eq!(
        (
            cond2.kind.as_str(),
            cond2.year_kind.as_str(),
            cond2.from.as_str(),
            cond2.to.as_str()
        ),
        ("2", "1", "2025-04-01", "2026-03-31")
    );

    wait_until("audit of the sent inquiries", || async {
        app.audit.count() >= 2
    })
    .await;
    let audit = &app.audits()[0];
    assert_eq!(audit.event, "inquiry.sent");
    assert_eq!(audit.tenant, ORG_A);
    assert_eq!(audit.serial_no, "0000000000000001");
    assert_eq!(audit.addressee, "000000000012345");
    // Its counting twin for the statistics: the same codes and times, no resident.
    wait_until("the stats twins", || async { app.stats.count() >= 2 }).await;
    let twin = chukan_proto::ExchangeStat::decode(app.stats.all()[0].body.as_slice()).unwrap();
    assert_eq!(twin, chukan_proto::ExchangeStat::of(audit));

    // The NWS's result, delivered twice with one message id and once more with another.
    let msg_id = uuid::Uuid::now_v7();
    app.answer(ORG_A, &id, &provided(2), msg_id).await;
    app.answer(ORG_A, &id, &provided(2), msg_id).await;
    let done = app.wait_status(&token, &id, "provided").await;
    let result_at = done["result_at"].clone();
    let mut other = provided(0);
    other.status = "refused".into();
    app.answer(ORG_A, &id, &other, uuid::Uuid::now_v7()).await;
    app.wait_results_consumed(2).await;
    wait_until("all three deliveries handled", || async {
        chukan_mq::metrics::consumed(
            &format!("{}inquiry.nws-in", app.env.ctx.bus.namespace()),
            "ok",
        ) >= 3
    })
    .await;
    let after: Value = app.get_json(&token, &format!("/v1/inquiries/{id}")).await;
    assert_eq!(
        after["status"], "provided",
        "a second result changes nothing"
    );
    assert_eq!(after["result_at"], result_at);
    assert_eq!(after["permit_id"], "PERMIT-1");
    assert_eq!(after["provider_non_disclosure"], true);
    assert_eq!(after["record_count"], 2);
    let records = after["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["dataset"], "0101");
    assert_eq!(records[0]["payload_xml"], "<I0001>SECRET-PAYLOAD-0</I0001>");
    assert_eq!(records[0]["valid_from"], "2025-04-01");
    assert!(records[0].get("valid_to").is_none());

    // At rest the result is ciphertext: the payload text is nowhere in the row.
    let mut client = app.env.owner_pool().unwrap().get().await.unwrap();
    let tx = chukan_db::tenant_tx(&mut client, ORG_A).await.unwrap();
    let row = tx
        .query_one(
            "SELECT result_enc, addressee_enc FROM inquiry.inquiries WHERE id = $1",
            &[&uuid::Uuid::parse_str(&id).unwrap()],
        )
        .await
        .unwrap();
    let sealed: Vec<u8> = row.get(0);
    assert!(!sealed.is_empty());
    assert!(!sealed.windows(14).any(|w| w == b"SECRET-PAYLOAD"));
    let addressee: Vec<u8> = row.get(1);
    assert!(!addressee.windows(5).any(|w| w == b"12345"));

    wait_until("audit of the result", || async {
        app.audits().iter().any(|a| a.event == "result.received")
    })
    .await;
    let received: Vec<_> = app
        .audits()
        .into_iter()
        .filter(|a| a.event == "result.received")
        .collect();
    assert_eq!(received.len(), 1, "one audit event for one result");
    assert_eq!(received[0].permit_id, "PERMIT-1");
    assert_eq!(received[0].outcome, "provided");

    // The list shows both, without payloads.
    let list = app
        .get_json(&token, "/v1/inquiries?serial_no=0000000000000001")
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0].get("records").is_none());
    let sent_only = app.get_json(&token, "/v1/inquiries?status=sent").await;
    assert_eq!(sent_only["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.outbox_len().await, 0, "outbox drained");
}

#[actix_web::test]
async fn a_refusal_by_the_nws_is_recorded_with_its_reason_and_a_permit_refused_audit() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &["77"]).await;
    let id = app
        .post_json(&token, "/v1/inquiries", &inquiry_body("77"))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refusal = InquiryResult {
        status: "not-permitted".into(),
        reason_code: "not-permitted".into(),
        ..Default::default()
    };
    app.answer(ORG_A, &id, &refusal, uuid::Uuid::now_v7()).await;
    let shown = app.wait_status(&token, &id, "not-permitted").await;
    assert_eq!(shown["reason_code"], "not-permitted");
    assert!(
        shown["reason"]
            .as_str()
            .unwrap()
            .contains("許可されていません")
    );
    assert!(shown.get("records").is_none());
    wait_until("permit.refused audit", || async {
        app.audits().iter().any(|a| a.event == "permit.refused")
    })
    .await;
}

#[actix_web::test]
async fn a_resident_with_the_non_disclosure_flag_gets_the_inquirer_code_set() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &["4242"]).await;
    app.set_non_disclosure(ORG_A, "4242", 3).await;
    let res = app
        .post_json(&token, "/v1/inquiries", &inquiry_body("4242"))
        .await;
    assert_eq!(res.status(), 202);
    let accepted: Value = res.json().await.unwrap();
    assert_eq!(accepted["inquirer_non_disclosure"], true);
    let sent = app.wait_nws_out(1).await;
    assert!(decode_request(&sent[0]).1.inquirer_non_disclosure);
    let shown = app
        .get_json(
            &token,
            &format!("/v1/inquiries/{}", accepted["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(shown["inquirer_non_disclosure"], true);
}

#[actix_web::test]
async fn no_code_is_refused_with_the_masked_number_and_nothing_is_stored_or_sent() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    let res = app
        .post_json(&token, "/v1/inquiries", &inquiry_body("000000000012345"))
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "application/problem+json"
    );
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "no-code");
    assert_eq!(
        problem["detail"],
        "指定された団体内統合宛名番号「***********2345」は符号が未取得です。"
    );
    assert!(problem["action"].as_str().is_some_and(|a| !a.is_empty()));
    assert!(!problem.to_string().contains("000000000012345"));
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM inquiry.inquiries")
            .await,
        0
    );
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM inquiry.serials")
            .await,
        0
    );
    assert_eq!(app.outbox_len().await, 0);
}

#[actix_web::test]
async fn a_department_is_held_to_the_period_valid_on_the_day_of_the_inquiry() {
    use chukan_core::Clock as _;
    let app = spawn_app().await;
    app.link_codes(ORG_A, &["5"]).await;
    let today = chukan_core::calendar::japan_date(app.clock.now());
    let day = |n: i64| (today + chrono::Duration::days(n)).to_string();
    // Excluded until yesterday, free today, excluded again from tomorrow.
    app.set_department_periods(
        ORG_A,
        "D-TAX",
        &[
            (&day(-30), &day(-1), &[PROCEDURE]),
            (&day(0), &day(0), &[]),
            (&day(1), "", &[PROCEDURE]),
        ],
        1,
    )
    .await;
    let staff = app.staff_token(ORG_A, "D-TAX");
    let res = app
        .post_json(&staff, "/v1/inquiries", &inquiry_body("5"))
        .await;
    assert_eq!(res.status(), 202, "today's period excludes nothing");
    app.clock.advance(chrono::Duration::days(1));
    let res = app
        .post_json(&staff, "/v1/inquiries", &inquiry_body("5"))
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "excluded-procedure"
    );
    // The department ended yesterday (as seen from the day after tomorrow): nothing goes out.
    app.set_department_periods(ORG_A, "D-TAX", &[(&day(-30), &day(1), &[])], 2)
        .await;
    app.clock.advance(chrono::Duration::days(1));
    let res = app
        .post_json(&staff, "/v1/inquiries", &inquiry_body("5"))
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "department-not-valid"
    );
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM inquiry.inquiries")
            .await,
        1
    );
}

#[actix_web::test]
async fn a_department_cannot_inquire_for_its_excluded_procedures() {
    let app = spawn_app().await;
    app.link_codes(ORG_A, &["5"]).await;
    app.set_department(ORG_A, "D-WELFARE", &[PROCEDURE]).await;
    let staff = app.staff_token(ORG_A, "D-WELFARE");
    let res = app
        .post_json(&staff, "/v1/inquiries", &inquiry_body("5"))
        .await;
    assert_eq!(res.status(), 403);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "excluded-procedure");
    assert_eq!(
        problem["detail"],
        format!("所属部署では事務手続「{PROCEDURE}」の照会は行えません。")
    );
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM inquiry.inquiries")
            .await,
        0
    );
    // Another procedure is allowed for the same department; another department is not bound.
    let mut other = inquiry_body("5");
    other["procedure_code"] = json!("JT00000000000099");
    assert_eq!(
        app.post_json(&staff, "/v1/inquiries", &other)
            .await
            .status(),
        202
    );
    let elsewhere = app.staff_token(ORG_A, "D-TAX");
    assert_eq!(
        app.post_json(&elsewhere, "/v1/inquiries", &inquiry_body("5"))
            .await
            .status(),
        202
    );
}

#[actix_web::test]
async fn bad_fields_get_problem_json_and_store_nothing() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &["12345678901"]).await;
    let base = inquiry_body("12345678901");
    let with = |key: &str, v: Value| {
        let mut b = base.clone();
        b[key] = v;
        b
    };
    let without = |key: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(key);
        b
    };
    let cases: Vec<(&str, Value)> = vec![
        (
            "affair prefix",
            with("affair_code", json!("JT00000000000001")),
        ),
        ("procedure length", with("procedure_code", json!("JT0001"))),
        ("info code", with("info_code", json!("TMxx000000000002"))),
        (
            "addressee 16 digits",
            with("integrated_addressee_number", json!("1234567890123456")),
        ),
        (
            "provider 15 digits",
            with("provider_org", json!("401000000000000")),
        ),
        ("date", with("as_of", json!("2026-02-30"))),
        (
            "both conditions",
            with("period", json!({"from": "2026-01-01", "to": "2026-02-01"})),
        ),
        ("no condition", without("as_of")),
        ("reversed period", {
            let mut b = without("as_of");
            b["period"] = json!({"from": "2026-02-01", "to": "2026-01-01"});
            b
        }),
        ("year kind", with("year_kind", json!("3"))),
        ("unknown field", with("my_number", json!("123456789012"))),
    ];
    for (what, body) in cases {
        let res = app.post_json(&token, "/v1/inquiries", &body).await;
        assert_eq!(res.status(), 400, "{what}");
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            "application/problem+json",
            "{what}"
        );
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "invalid-field", "{what}: {problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(problem["action"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(
            !problem.to_string().contains("12345678901"),
            "{what}: echoed a value"
        );
    }
    assert_eq!(
        app.get(&token, "/v1/inquiries/not-a-uuid").await.status(),
        400
    );
    assert_eq!(
        app.get(&token, "/v1/inquiries?status=bogus").await.status(),
        400
    );
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM inquiry.inquiries")
            .await,
        0
    );
    assert_eq!(app.outbox_len().await, 0);
}

#[actix_web::test]
async fn an_inquiry_expires_after_30_days_and_a_late_result_keeps_it_expired() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &["31"]).await;
    let id = app
        .post_json(&token, "/v1/inquiries", &inquiry_body("31"))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    app.clock.advance(Duration::days(29));
    assert_eq!(
        app.get_json(&token, &format!("/v1/inquiries/{id}")).await["status"],
        "sent"
    );
    app.clock.advance(Duration::days(2));
    // Shown expired at once, whether or not the sweep ran yet.
    let shown = app.get_json(&token, &format!("/v1/inquiries/{id}")).await;
    assert_eq!(shown["status"], "expired");
    assert_eq!(shown["reason_code"], "expired");
    let stored_status = || async {
        let mut client = app.env.ctx.db.get().await.unwrap();
        let tx = chukan_db::tenant_tx(&mut client, ORG_A).await.unwrap();
        tx.query_one(
            "SELECT status FROM inquiry.inquiries WHERE id = $1",
            &[&uuid],
        )
        .await
        .unwrap()
        .get::<_, String>(0)
    };
    wait_until("the sweep expires the inquiry", || async {
        stored_status().await == "expired"
    })
    .await;
    app.answer(ORG_A, &id, &provided(1), uuid::Uuid::now_v7())
        .await;
    app.wait_results_consumed(1).await;
    let late = app.get_json(&token, &format!("/v1/inquiries/{id}")).await;
    assert_eq!(late["status"], "expired");
    assert_eq!(late["late"], true);
    assert!(late["result_at"].is_string(), "the late result is kept");
    assert!(late.get("records").is_none());
    let expired = app.get_json(&token, "/v1/inquiries?status=expired").await;
    assert_eq!(expired["items"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn another_tenant_can_neither_read_nor_confirm_an_inquiry() {
    let app = spawn_app().await;
    let token_a = app.token(ORG_A);
    let token_b = app.token(ORG_B);
    app.link_codes(ORG_A, &["8"]).await;
    let id = app
        .post_json(&token_a, "/v1/inquiries", &inquiry_body("8"))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.answer(ORG_A, &id, &provided(1), uuid::Uuid::now_v7())
        .await;
    app.wait_status(&token_a, &id, "provided").await;

    let res = app.get(&token_b, &format!("/v1/inquiries/{id}")).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "not-found");
    let listed = app.get_json(&token_b, "/v1/inquiries").await;
    assert!(listed["items"].as_array().unwrap().is_empty());
    let confirm = app
        .post_json(&token_b, "/v1/inquiry-confirmations", &json!({"ids": [id]}))
        .await;
    assert_eq!(confirm.status(), 200);
    let outcome: Value = confirm.json().await.unwrap();
    assert_eq!(outcome["confirmed"], 0);
    assert_eq!(outcome["not_found"], 1);
    assert!(app.get_json(&token_a, &format!("/v1/inquiries/{id}")).await["confirmed_at"].is_null());
    // A result addressed to B cannot complete A's inquiry either.
    let id2 = app
        .post_json(&token_a, "/v1/inquiries", &inquiry_body("8"))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.answer(ORG_B, &id2, &provided(1), uuid::Uuid::now_v7())
        .await;
    app.wait_results_consumed(2).await;
    assert_eq!(
        app.get_json(&token_a, &format!("/v1/inquiries/{id2}"))
            .await["status"],
        "sent"
    );
    // A confirms its own.
    let mine: Value = app
        .post_json(
            &token_a,
            "/v1/inquiry-confirmations",
            &json!({"ids": [id, id2]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["confirmed"], 1);
    assert_eq!(mine["not_answered"], 1);
}

#[actix_web::test]
async fn callers_need_a_token_and_a_business_role() {
    let app = spawn_app().await;
    let none = app
        .api
        .http
        .post(app.api.url("/v1/inquiries"))
        .json(&inquiry_body("1"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let admin = app.env.token(ORG_A, &[chukan_auth::Role::SystemAdmin]);
    let res = app
        .post_json(&admin, "/v1/inquiries", &inquiry_body("1"))
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "forbidden");
}

#[actix_web::test]
async fn the_openapi_document_describes_every_inquiry_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .api
        .http
        .get(app.api.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/v1/inquiries", "post"),
        ("/v1/inquiries", "get"),
        ("/v1/inquiries/{id}", "get"),
        ("/v1/inquiry-confirmations", "post"),
        ("/v1/inquiry-batches", "post"),
        ("/v1/inquiry-batches/{id}", "get"),
        ("/v1/inquiry-batches/{id}/errors", "get"),
        ("/v1/inquiry-batches/{id}/results", "get"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} undocumented");
        assert_eq!(op["tags"][0], "inquiry");
        assert_eq!(
            op["security"][0]["bearer"],
            json!(["business_staff", "system_client"])
        );
    }
    let post = &paths["/v1/inquiries"]["post"];
    for code in ["202", "400", "401", "403", "422", "503"] {
        assert!(post["responses"][code].is_object(), "POST {code}");
    }
    let schema = &doc["components"]["schemas"]["InquiryInput"];
    assert!(schema["properties"]["integrated_addressee_number"].is_object());
}
