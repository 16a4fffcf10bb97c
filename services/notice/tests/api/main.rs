#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The notice service against real PostgreSQL and RabbitMQ; the tests play the NWS.

mod helpers;

use chrono::Utc;
use chukan_proto::{Message as _, NoticeState, NoticeStatusReport};
use helpers::{
    ADDRESSEE, ORG_A, ORG_B, decode_check, decode_send, notice_body, spawn_app, state, wait_until,
};
use serde_json::{Value, json};

#[actix_web::test]
async fn bad_notices_are_refused_with_problem_json_and_nothing_is_stored() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &[ADDRESSEE]).await;

    let mut long_title = notice_body(ADDRESSEE);
    long_title["title"] = json!("あ".repeat(101));
    let mut too_many_choices = notice_body(ADDRESSEE);
    too_many_choices["reply_choices"] = json!((0..11).map(|i| i.to_string()).collect::<Vec<_>>());
    let mut bad_base64 = notice_body(ADDRESSEE);
    bad_base64["attachments"][0]["content_base64"] = json!("not base64!");
    let mut bad_addressee = notice_body(ADDRESSEE);
    bad_addressee["addressee"] = json!("0000000000123456");
    let mut huge = notice_body(ADDRESSEE);
    // 600 KiB decoded: over the 512 KiB total, under the JSON body limit.
    let big = "A".repeat(600 * 1024 / 3 * 4);
    huge["attachments"][0]["content_base64"] = json!(big);
    for (body, status, code) in [
        (long_title, 400, "invalid-field"),
        (too_many_choices, 400, "invalid-field"),
        (bad_base64, 400, "invalid-field"),
        (bad_addressee, 400, "invalid-field"),
        (huge, 413, "attachments-too-large"),
    ] {
        let res = app.post_json(&token, "/v1/notices", &body).await;
        assert_eq!(res.status(), status, "{code}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{code}"
        );
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], code);
        assert!(!problem["action"].as_str().unwrap().is_empty());
        // Nothing of the notice is echoed back.
        assert!(!problem.to_string().contains("SECRET-BODY"));
    }

    // A resident without a code: the published wording, the number masked.
    let res = app
        .post_json(&token, "/v1/notices", &notice_body("000000000099999"))
        .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "no-code");
    assert_eq!(
        problem["detail"],
        "指定された団体内統合宛名番号「***********9999」は符号が未取得です。"
    );

    // Staff of another kind (an administrator) may not send notices.
    let admin = app.env.token(ORG_A, &[chukan_auth::Role::SystemAdmin]);
    let res = app
        .post_json(&admin, "/v1/notices", &notice_body(ADDRESSEE))
        .await;
    assert_eq!(res.status(), 403);

    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM notice.notices")
            .await,
        0
    );
    assert_eq!(app.outbox_len().await, 0);
    assert_eq!(app.nws_out.count(), 0);
}

#[actix_web::test]
async fn a_notice_goes_out_once_sealed_and_is_audited() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &[ADDRESSEE]).await;

    let res = app
        .post_json(&token, "/v1/notices", &notice_body(ADDRESSEE))
        .await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let accepted: Value = res.json().await.unwrap();
    let id = accepted["notice_id"].as_str().unwrap().to_string();
    assert_eq!(accepted["state"], "accepted");
    assert_eq!(location, format!("/v1/notices/{id}"));

    let sent = app.wait_nws_out(1).await;
    let (out, send) = decode_send(&sent[0]);
    assert_eq!(out.kind, "notice.send");
    assert_eq!(out.sender_org, ORG_A);
    assert_eq!(out.recipient, "NWS");
    assert_eq!(out.correlation_id, id);
    assert_eq!(send.code, format!("CODE-{ADDRESSEE}"));
    let content = send.content.unwrap();
    assert_eq!(content.title, "児童手当の現況届について");
    assert_eq!(content.reply_choices, ["提出します", "提出しません"]);
    assert_eq!(content.attachments.len(), 1);
    assert_eq!(content.attachments[0].content, b"%PDF-1.4 test");
    assert_eq!(content.attachments[0].file_name, "案内.pdf");

    let shown = app.wait_state(&token, &id, "sent").await;
    assert_eq!(shown["addressee_masked"], "***********2345");
    assert_eq!(shown["body"], "現況届の提出をお願いします。SECRET-BODY");
    assert_eq!(shown["attachments"][0]["size_bytes"], 13);
    assert_eq!(
        shown["attachments"][0]["content_base64"],
        "JVBERi0xLjQgdGVzdA=="
    );
    assert_eq!(shown["reply_choices"][1], "提出しません");
    assert!(shown.get("reply_choice").is_none());

    wait_until("the notice.sent audit", || async {
        !app.audits_of("notice.sent").is_empty()
    })
    .await;
    let audit = &app.audits_of("notice.sent")[0];
    assert_eq!(audit.tenant, ORG_A);
    assert_eq!(audit.inquirer_org, ORG_A);
    assert_eq!(audit.provider_org, "");
    assert_eq!(audit.addressee, ADDRESSEE);
    assert_eq!(audit.outcome, "sent");
    assert!(uuid::Uuid::parse_str(&audit.record_id).is_ok());
    wait_until("the stats twin", || async { app.stats.count() >= 1 }).await;
    let twin = chukan_proto::ExchangeStat::decode(app.stats.all()[0].body.as_slice()).unwrap();
    assert_eq!(twin, chukan_proto::ExchangeStat::of(audit));

    // At rest the text, attachment and addressee are ciphertext.
    let mut client = app.env.owner_pool().unwrap().get().await.unwrap();
    let tx = chukan_db::tenant_tx(&mut client, ORG_A).await.unwrap();
    let row = tx
        .query_one(
            "SELECT t::text FROM notice.notices t WHERE id = $1",
            &[&uuid::Uuid::parse_str(&id).unwrap()],
        )
        .await
        .unwrap();
    let text: String = row.get(0);
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for secret in ["SECRET-BODY", "12345", "%PDF-1.4"] {
        assert!(!text.contains(secret) && !text.contains(&hex(secret)));
    }

    // Per resident, via the blind index, the number in the body; another resident's list is
    // empty.
    let search = |filters: Value| {
        let (app, token) = (&app, &token);
        async move {
            app.post_json(token, "/v1/notices/search", &filters)
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let mine = search(json!({ "addressee": ADDRESSEE })).await;
    let items = mine["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["title"], "児童手当の現況届について");
    assert!(items[0].get("body").is_none());
    // The deprecated query form answers the same for one more release.
    let old = app
        .get_json(&token, &format!("/v1/notices?addressee={ADDRESSEE}"))
        .await;
    assert_eq!(old, mine);
    let other = search(json!({ "addressee": "77" })).await;
    assert!(other["items"].as_array().unwrap().is_empty());
    let sent_only = search(json!({ "state": "sent" })).await;
    assert_eq!(sent_only["items"].as_array().unwrap().len(), 1);
    let bad = app
        .post_json(&token, "/v1/notices/search", &json!({ "state": "lost" }))
        .await;
    assert_eq!(bad.status(), 400);
    // The literal path is not taken for a notice id: another method is 405.
    let wrong_method = app.get(&token, "/v1/notices/search").await;
    assert_eq!(wrong_method.status(), 405);

    assert_eq!(
        app.nws_out.count(),
        1,
        "exactly one message towards the NWS"
    );
    assert_eq!(app.audits_of("notice.sent").len(), 1);
    assert_eq!(app.outbox_len().await, 0);
}

#[actix_web::test]
async fn a_status_check_answer_moves_notices_forward_once() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &[ADDRESSEE]).await;
    let first = app.send_notice(&token, &notice_body(ADDRESSEE)).await;
    let second = app.send_notice(&token, &notice_body(ADDRESSEE)).await;
    app.wait_state(&token, &second, "sent").await;

    let res = app
        .post_json(
            &token,
            "/v1/notice-status-checks",
            &json!({"all_pending": true}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let accepted: Value = res.json().await.unwrap();
    let check_id = accepted["check_id"].as_str().unwrap().to_string();
    assert_eq!(accepted["notice_count"], 2);
    let out = app.wait_nws_out(3).await;
    let (envelope, check) = decode_check(&out[2]);
    assert_eq!(envelope.kind, "notice.status-check");
    assert_eq!(envelope.correlation_id, check_id);
    let mut asked = check.notice_ids.clone();
    asked.sort();
    assert_eq!(asked, [first.clone(), second.clone()]);
    let pending = app
        .get_json(&token, &format!("/v1/notice-status-checks/{check_id}"))
        .await;
    assert_eq!(pending["state"], "pending");

    let now = Utc::now().timestamp_millis();
    let report = NoticeStatusReport {
        check_id: check_id.clone(),
        notices: vec![
            NoticeState {
                read_at_ms: now - 2000,
                reply_choice: "提出します".into(),
                replied_at_ms: now - 1000,
                ..state(&first, "replied")
            },
            state(&second, "delivered"),
            // Not this tenant's: changes nothing.
            state(&uuid::Uuid::now_v7().to_string(), "read"),
        ],
        reported_at_ms: now,
    };
    // Delivered twice under one message id: applied once.
    let msg_id = uuid::Uuid::now_v7();
    app.report(ORG_A, &check_id, &report, msg_id).await;
    app.report(ORG_A, &check_id, &report, msg_id).await;
    let replied = app.wait_state(&token, &first, "replied").await;
    assert_eq!(replied["reply_choice"], "提出します");
    assert!(replied["read_at"].is_string());
    assert!(replied["replied_at"].is_string());
    app.wait_state(&token, &second, "delivered").await;
    wait_until("both deliveries handled", || async {
        chukan_mq::metrics::consumed(
            &format!("{}notice.nws-in", app.env.ctx.bus.namespace()),
            "ok",
        ) >= 2
    })
    .await;

    let answered = app
        .get_json(&token, &format!("/v1/notice-status-checks/{check_id}"))
        .await;
    assert_eq!(answered["state"], "answered");
    assert_eq!(answered["reported"], 3);
    let notices = answered["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 2);
    let of = |id: &str| notices.iter().find(|n| n["notice_id"] == id).unwrap();
    assert_eq!(of(&first)["reply_choice"], "提出します");
    assert_eq!(of(&second)["state"], "delivered");

    // A later, older report (a new message) never moves a notice back.
    let stale = NoticeStatusReport {
        check_id: String::new(),
        notices: vec![state(&first, "delivered")],
        reported_at_ms: now,
    };
    app.report(ORG_A, &first, &stale, uuid::Uuid::now_v7())
        .await;
    app.wait_reports_consumed(2).await;
    let still = app.get_json(&token, &format!("/v1/notices/{first}")).await;
    assert_eq!(still["state"], "replied");

    wait_until("status audits", || async {
        app.audits_of("notice.status-received").len() >= 2
    })
    .await;
    let mut outcomes: Vec<String> = app
        .audits_of("notice.status-received")
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["delivered", "replied"], "one audit per change");
    assert_eq!(
        app.scalar_i64(
            ORG_A,
            "SELECT count(*) FROM notice.notices WHERE reply_enc IS NOT NULL"
        )
        .await,
        1
    );

    // Named notices may be checked again, whatever their state.
    let again = app
        .post_json(
            &token,
            "/v1/notice-status-checks",
            &json!({"notice_ids": [first]}),
        )
        .await;
    assert_eq!(again.status(), 202);
}

#[actix_web::test]
async fn an_undeliverable_notice_is_marked_so() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &[ADDRESSEE]).await;
    let id = app.send_notice(&token, &notice_body(ADDRESSEE)).await;
    app.wait_nws_out(1).await;
    let report = NoticeStatusReport {
        check_id: String::new(),
        notices: vec![NoticeState {
            reason_code: "unknown-code".into(),
            ..state(&id, "undeliverable")
        }],
        reported_at_ms: Utc::now().timestamp_millis(),
    };
    app.report(ORG_A, &id, &report, uuid::Uuid::now_v7()).await;
    let shown = app.wait_state(&token, &id, "undeliverable").await;
    assert_eq!(shown["reason_code"], "unknown-code");
    // A finished notice is no longer open for all_pending.
    let res = app
        .post_json(
            &token,
            "/v1/notice-status-checks",
            &json!({"all_pending": true}),
        )
        .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "nothing-to-check");
}

#[actix_web::test]
async fn another_tenant_sees_nothing_and_its_reports_change_nothing() {
    let app = spawn_app().await;
    let token_a = app.token(ORG_A);
    let token_b = app.token(ORG_B);
    app.link_codes(ORG_A, &[ADDRESSEE]).await;
    let id = app.send_notice(&token_a, &notice_body(ADDRESSEE)).await;
    app.wait_state(&token_a, &id, "sent").await;

    let res = app.get(&token_b, &format!("/v1/notices/{id}")).await;
    assert_eq!(res.status(), 404);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "not-found");
    let list = app.get_json(&token_b, "/v1/notices").await;
    assert!(list["items"].as_array().unwrap().is_empty());
    let res = app
        .post_json(
            &token_b,
            "/v1/notice-status-checks",
            &json!({"notice_ids": [id]}),
        )
        .await;
    assert_eq!(res.status(), 404);
    // B cannot send to A's resident either: B holds no code for it.
    let res = app
        .post_json(&token_b, "/v1/notices", &notice_body(ADDRESSEE))
        .await;
    assert_eq!(res.status(), 422);

    // A report addressed to B naming A's notice: consumed, and A's notice is untouched.
    let report = NoticeStatusReport {
        check_id: String::new(),
        notices: vec![state(&id, "read")],
        reported_at_ms: Utc::now().timestamp_millis(),
    };
    app.report(ORG_B, &id, &report, uuid::Uuid::now_v7()).await;
    app.wait_reports_consumed(1).await;
    let shown = app.get_json(&token_a, &format!("/v1/notices/{id}")).await;
    assert_eq!(shown["state"], "sent");
    assert!(app.audits_of("notice.status-received").is_empty());
}

#[actix_web::test]
async fn a_scheduled_notice_waits_for_its_time() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &[ADDRESSEE]).await;
    let mut body = notice_body(ADDRESSEE);
    let at = chukan_core::Clock::now(&*app.clock) + chrono::Duration::hours(1);
    body["deliver_at"] = json!(at.to_rfc3339());
    let id = app.send_notice(&token, &body).await;

    // Committed with the answer: the notice waits on the work list, undispatched.
    assert_eq!(
        app.scalar_i64(
            ORG_A,
            "SELECT count(*) FROM notice.notices WHERE dispatched_at IS NULL"
        )
        .await,
        1
    );
    let shown = app.get_json(&token, &format!("/v1/notices/{id}")).await;
    assert_eq!(shown["state"], "accepted");
    let res = app
        .post_json(
            &token,
            "/v1/notice-status-checks",
            &json!({"notice_ids": [id]}),
        )
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "notice-not-sent"
    );

    app.clock.advance(chrono::Duration::hours(2));
    let sent = app.wait_nws_out(1).await;
    let (out, _) = decode_send(&sent[0]);
    assert_eq!(out.correlation_id, id);
    app.wait_state(&token, &id, "sent").await;
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM notice.scheduled")
            .await,
        0
    );

    // Too far ahead is refused.
    let mut far = notice_body(ADDRESSEE);
    far["deliver_at"] = json!((at + chrono::Duration::days(400)).to_rfc3339());
    let res = app.post_json(&token, "/v1/notices", &far).await;
    assert_eq!(res.status(), 400);
}

#[actix_web::test]
async fn the_routes_are_documented_in_openapi() {
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
    for path in [
        "/v1/notices",
        "/v1/notices/{id}",
        "/v1/notice-status-checks",
        "/v1/notice-status-checks/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(doc["components"]["schemas"].get("NoticeInput").is_some());
}
