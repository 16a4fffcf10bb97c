#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The self-information service against real PostgreSQL and RabbitMQ; the tests play the NWS
//! and stand in for provision and audit with request/reply stubs on their queue names.

mod attachments;
mod helpers;

use std::sync::atomic::Ordering;

use chukan_auth::Role;
use chukan_proto::{DisclosableRecord, Message as _, SelfInfoItem};
use helpers::{
    INFO, INFO_OTHER, ORG_A, ORG_B, replica, spawn_app, spawn_app_without_peers, wait_until,
};

const CODE: &str = "A1B2C3D4E5F6A1B2C3D4E5F6A1B2C3D4E5F6A1B2";
const ADDRESSEE: &str = "000000000012345";
const PAYLOAD: &str = "<I0001>2222</I0001>";

fn record(event: &str, inquirer: &str) -> DisclosableRecord {
    DisclosableRecord {
        event: event.into(),
        inquirer_org: inquirer.into(),
        provider_org: ORG_A.into(),
        affair_code: "JM00000000000001".into(),
        procedure_code: "JT00000000000001".into(),
        info_code: INFO.into(),
        requested_at_ms: 1_700_000_000_000,
        provided_at_ms: 1_700_000_001_000,
        outcome: "provided".into(),
    }
}

#[actix_web::test]
async fn a_request_is_answered_once_with_replicas_records_and_attachments() {
    let app = spawn_app().await;
    app.resident(
        CODE,
        ADDRESSEE,
        vec![SelfInfoItem {
            info_code: INFO.into(),
            records: vec![replica("0101", PAYLOAD)],
        }],
    );
    app.records(ADDRESSEE, vec![record("provision.made", ORG_B)]);
    let staff = app.token(ORG_A, Role::BusinessStaff);
    let pdf = b"%PDF-1.4 explanation".to_vec();
    let res = app
        .put_file(
            &staff,
            &format!("/v1/selfinfo/attachments/{INFO}/setsumei.pdf"),
            "application/pdf",
            pdf.clone(),
        )
        .await;
    assert_eq!(res.status(), 201);
    // An attachment of an item the resident has nothing of is not sent.
    let res = app
        .put_file(
            &staff,
            &format!("/v1/selfinfo/attachments/{INFO_OTHER}/other.txt"),
            "text/plain",
            b"other".to_vec(),
        )
        .await;
    assert_eq!(res.status(), 201);

    let msg = app.request_message(ORG_A, "req-0001", CODE, &[]);
    app.publish(&msg).await;
    app.wait_answers(1).await;
    wait_until("the answer's audit record", || async {
        app.audit.count() >= 1
    })
    .await;

    let answers = app.answers();
    let (sender, correlation, answer) = &answers[0];
    assert_eq!(sender, ORG_A);
    assert_eq!(correlation, "req-0001");
    assert_eq!(answer.request_id, "req-0001");
    assert_eq!(answer.status, "answered");
    assert_eq!(answer.reason_code, "");
    assert_eq!(answer.items.len(), 1);
    assert_eq!(answer.items[0].info_code, INFO);
    assert_eq!(answer.items[0].records[0].payload_xml, PAYLOAD);
    assert_eq!(answer.records.len(), 1);
    assert_eq!(answer.records[0].inquirer_org, ORG_B);
    assert_eq!(answer.attachments.len(), 1);
    let attachment = &answer.attachments[0];
    assert_eq!(attachment.info_code, INFO);
    assert_eq!(attachment.file_name, "setsumei.pdf");
    assert_eq!(attachment.media_type, "application/pdf");
    assert_eq!(attachment.content, pdf);
    // The audit stub was asked for this tenant, with the addressee provision resolved.
    // (A round whose call timed out under load asks again: every call names the tenant.)
    let tenants = app.audit_stub.tenants.lock().unwrap().clone();
    assert!(
        !tenants.is_empty() && tenants.iter().all(|t| t == ORG_A),
        "{tenants:?}"
    );

    let audit = app.audit_records();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event, "selfinfo.answered");
    assert_eq!(audit[0].tenant, ORG_A);
    assert_eq!(audit[0].provider_org, ORG_A);
    assert_eq!(audit[0].addressee, ADDRESSEE);
    assert_eq!(audit[0].outcome, "answered");
    let record_id = uuid::Uuid::parse_str(&audit[0].record_id).unwrap();
    assert_eq!(record_id.get_version_num(), 7);
    assert_eq!(app.audit.all()[0].id, record_id, "bus id = record id");
    wait_until("the stats twin", || async { app.stats.count() >= 1 }).await;
    let twin = chukan_proto::ExchangeStat::decode(app.stats.all()[0].body.as_slice()).unwrap();
    assert_eq!(twin, chukan_proto::ExchangeStat::of(&audit[0]));

    // The same NWS message again, and the same portal request under a new NWS message:
    // neither is answered a second time.
    let dup_before = chukan_selfinfo::metrics::requests_counted("duplicate");
    app.publish(&msg).await;
    app.publish(&app.request_message(ORG_A, "req-0001", CODE, &[]))
        .await;
    wait_until("both duplicates consumed", || async {
        chukan_selfinfo::metrics::requests_counted("duplicate") >= dup_before + 2
    })
    .await;
    let requests = app.requests(ORG_A).await;
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r["state"], "answered");
    assert_eq!(r["status"], "answered");
    assert_eq!(r["item_count"], 1);
    assert_eq!(r["record_count"], 1);
    assert_eq!(r["attachment_count"], 1);
    // Staff see ids, state and counts only: never the code or the resident.
    let text = serde_json::to_string(&requests).unwrap();
    assert!(!text.contains(CODE) && !text.contains(ADDRESSEE) && !text.contains(PAYLOAD));
    assert_eq!(app.nws_out.count(), 1);
    assert_eq!(app.audit.count(), 1);

    // The request by id, and nothing of it for another tenant.
    let id = r["id"].as_str().unwrap();
    let one = app
        .get_json(&staff, &format!("/v1/selfinfo/requests/{id}"))
        .await;
    assert_eq!(one["request_id"], "req-0001");
    let foreign = app
        .get(
            &app.token(ORG_B, Role::BusinessStaff),
            &format!("/v1/selfinfo/requests/{id}"),
        )
        .await;
    assert_eq!(foreign.status(), 404);
}

#[actix_web::test]
async fn the_code_and_the_answer_are_stored_sealed() {
    let app = spawn_app().await;
    app.resident(
        CODE,
        ADDRESSEE,
        vec![SelfInfoItem {
            info_code: INFO.into(),
            records: vec![replica("0101", PAYLOAD)],
        }],
    );
    app.publish(&app.request_message(ORG_A, "req-sealed", CODE, &[INFO]))
        .await;
    app.wait_answers(1).await;
    let owner = app.env.owner_pool().unwrap();
    let mut client = owner.get().await.unwrap();
    let tx = chukan_db::tenant_tx(&mut client, ORG_A).await.unwrap();
    let row = tx
        .query_one(
            "SELECT code_enc, answer_enc, t::text FROM selfinfo.requests t",
            &[],
        )
        .await
        .unwrap();
    let code_enc: Vec<u8> = row.get(0);
    let answer_enc: Vec<u8> = row.get(1);
    let text: String = row.get(2);
    assert!(!code_enc.windows(CODE.len()).any(|w| w == CODE.as_bytes()));
    assert!(
        !answer_enc
            .windows(PAYLOAD.len())
            .any(|w| w == PAYLOAD.as_bytes())
    );
    assert!(!text.contains(CODE) && !text.contains(ADDRESSEE));
}

#[actix_web::test]
async fn an_unknown_code_is_refused_with_a_reason_code() {
    let app = spawn_app().await;
    app.publish(&app.request_message(ORG_A, "req-unknown", "NOBODY", &[]))
        .await;
    app.wait_answers(1).await;
    let (_, _, answer) = &app.answers()[0];
    assert_eq!(answer.status, "refused");
    assert_eq!(answer.reason_code, "no-such-resident");
    assert!(!answer.reason.is_empty());
    assert!(answer.items.is_empty() && answer.records.is_empty());
    // Audit was not asked: there is nobody to ask about.
    assert_eq!(app.audit_stub.calls.load(Ordering::SeqCst), 0);
    wait_until("the refusal's audit record", || async {
        app.audit.count() >= 1
    })
    .await;
    let audit = app.audit_records();
    assert_eq!(audit[0].event, "selfinfo.refused");
    assert_eq!(audit[0].outcome, "no-such-resident");
    assert_eq!(audit[0].addressee, "");
    let requests = app.requests(ORG_A).await;
    assert_eq!(requests[0]["status"], "refused");
    assert_eq!(requests[0]["reason_code"], "no-such-resident");
}

#[actix_web::test]
async fn the_self_info_prohibited_flag_refuses_without_reading_records() {
    let app = spawn_app().await;
    app.prohibited_resident(CODE, ADDRESSEE);
    app.records(ADDRESSEE, vec![record("provision.made", ORG_B)]);
    let staff = app.token(ORG_A, Role::BusinessStaff);
    let res = app
        .put_file(
            &staff,
            &format!("/v1/selfinfo/attachments/{INFO}/a.pdf"),
            "application/pdf",
            b"x".to_vec(),
        )
        .await;
    assert_eq!(res.status(), 201);
    app.publish(&app.request_message(ORG_A, "req-prohibited", CODE, &[INFO]))
        .await;
    app.wait_answers(1).await;
    let (_, _, answer) = &app.answers()[0];
    assert_eq!(answer.status, "refused");
    assert_eq!(answer.reason_code, "self-info-prohibited");
    assert!(answer.reason.contains("自己情報提供"));
    assert!(answer.records.is_empty() && answer.attachments.is_empty());
    assert_eq!(app.audit_stub.calls.load(Ordering::SeqCst), 0);
    wait_until("the refusal's audit record", || async {
        app.audit.count() >= 1
    })
    .await;
    let audit = app.audit_records();
    assert_eq!(audit[0].event, "selfinfo.refused");
    assert_eq!(audit[0].outcome, "self-info-prohibited");
    assert_eq!(audit[0].addressee, ADDRESSEE);
    assert_eq!(audit[0].info_code, INFO);
}

#[actix_web::test]
async fn a_request_waits_while_provision_does_not_answer_and_is_answered_once_it_does() {
    let app = spawn_app_without_peers().await;
    app.resident(CODE, ADDRESSEE, Vec::new());
    app.publish(&app.request_message(ORG_A, "req-wait", CODE, &[]))
        .await;
    // Rounds time out and are put off; the request stays received, nothing is sent.
    wait_until("two rounds put off", || async {
        let r = app.requests(ORG_A).await;
        r.first().is_some_and(|r| r["attempts"].as_i64() >= Some(2))
    })
    .await;
    assert!(chukan_selfinfo::metrics::deferred_count("provision", "timeout") >= 2);
    let r = app.requests(ORG_A).await;
    assert_eq!(r[0]["state"], "received");
    assert_eq!(app.nws_out.count(), 0);
    assert_eq!(app.audit.count(), 0);

    // Provision is back, but audit is not: still waiting.
    app.start_provision_stub().await;
    wait_until("a round put off for audit", || async {
        chukan_selfinfo::metrics::deferred_count("audit", "timeout") >= 1
    })
    .await;
    assert_eq!(app.nws_out.count(), 0);

    app.start_audit_stub().await;
    app.wait_answers(1).await;
    let (_, correlation, answer) = &app.answers()[0];
    assert_eq!(correlation, "req-wait");
    assert_eq!(answer.status, "answered");
    wait_until("the request answered", || async {
        app.requests(ORG_A).await[0]["state"] == "answered"
    })
    .await;
    wait_until("the answer's audit record", || async {
        app.audit.count() >= 1
    })
    .await;
    assert_eq!(app.nws_out.count(), 1);
    assert_eq!(app.audit.count(), 1);
}

#[actix_web::test]
async fn listing_filters_by_state_and_refuses_bad_queries() {
    let app = spawn_app().await;
    let staff = app.token(ORG_A, Role::BusinessStaff);
    app.publish(&app.request_message(ORG_A, "req-list", "NOBODY", &[]))
        .await;
    app.wait_answers(1).await;
    wait_until("answered", || async {
        app.requests(ORG_A).await[0]["state"] == "answered"
    })
    .await;
    let received = app
        .get_json(&staff, "/v1/selfinfo/requests?state=received")
        .await;
    assert_eq!(received["requests"].as_array().unwrap().len(), 0);
    let answered = app
        .get_json(&staff, "/v1/selfinfo/requests?state=answered&limit=5")
        .await;
    assert_eq!(answered["requests"].as_array().unwrap().len(), 1);
    for bad in ["state=lost", "limit=0", "limit=501"] {
        let res = app
            .get(&staff, &format!("/v1/selfinfo/requests?{bad}"))
            .await;
        assert_eq!(res.status(), 400, "{bad}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["code"], "invalid-field");
    }
    // Business systems (system clients) have no access to self-information work.
    let res = app
        .get(
            &app.token(ORG_A, Role::SystemClient),
            "/v1/selfinfo/requests",
        )
        .await;
    assert_eq!(res.status(), 403);
    // Another tenant sees none of them, not even by id.
    assert!(app.requests(ORG_B).await.is_empty());
    let id = answered["requests"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/selfinfo/requests/{id}");
    assert_eq!(app.get(&staff, &path).await.status(), 200);
    let other = app.token(ORG_B, Role::BusinessStaff);
    assert_eq!(app.get(&other, &path).await.status(), 404);
}
