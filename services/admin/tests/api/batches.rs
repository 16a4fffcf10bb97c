//! Batch status (F10 バッチ状況): batch.progress deliveries and GET /v1/batches.

use chukan_auth::Role;
use chukan_mq::OutgoingMessage;
use chukan_proto::{BatchProgress, Message as _};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{TENANT_A, TENANT_B, TestApp, assert_problem, spawn_app};

/// 2026-04-01T00:00:00Z in Unix milliseconds; tests count seconds from here.
const T0: i64 = 1_775_001_600_000;

fn progress(
    tenant: &str,
    run: Uuid,
    job: &str,
    state: &str,
    processed: i64,
    at_s: i64,
) -> BatchProgress {
    BatchProgress {
        run_id: run.to_string(),
        job: job.into(),
        tenant: tenant.into(),
        state: state.into(),
        processed,
        total: 100,
        carried: 0,
        rejected: 1,
        started_at_ms: T0,
        updated_at_ms: T0 + at_s * 1000,
        summary: format!("副本登録: {processed}/100 件処理"),
    }
}

fn message(p: &BatchProgress) -> OutgoingMessage {
    OutgoingMessage::new(
        p.tenant.as_str(),
        chukan_admin::BATCH_PROGRESS,
        p.encode_to_vec(),
    )
}

async fn runs(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let res = app.get(token, &format!("/v1/batches{query}")).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

#[actix_rt::test]
async fn progress_reports_are_shown_to_their_own_tenant_newest_first() {
    let app = spawn_app().await;
    let run_a = Uuid::now_v7();
    let run_b = Uuid::now_v7();
    app.deliver_progress(&message(&progress(
        TENANT_A,
        run_a,
        "replica-uploads",
        "running",
        10,
        1,
    )))
    .await;
    app.deliver_progress(&message(&progress(
        TENANT_B,
        run_b,
        "replica-uploads",
        "running",
        5,
        1,
    )))
    .await;

    let token_a = app.token(TENANT_A, "admin1").await;
    let list = runs(&app, &token_a, "").await;
    assert_eq!(list.len(), 1, "B's run is behind the wall: {list:?}");
    let run = &list[0];
    assert_eq!(run["run_id"], run_a.to_string());
    assert_eq!(run["job"], "replica-uploads");
    assert_eq!(run["state"], "running");
    assert_eq!(run["processed"], 10);
    assert_eq!(run["total"], 100);
    assert_eq!(run["carried"], 0);
    assert_eq!(run["rejected"], 1);
    assert_eq!(run["summary"], "副本登録: 10/100 件処理");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(run["updated_at"].as_str().unwrap())
            .unwrap()
            .timestamp_millis(),
        T0 + 1000
    );

    let token_b = app.token(TENANT_B, "admin1").await;
    let list = runs(&app, &token_b, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["run_id"], run_b.to_string());

    // The run finishes: the same row moves on.
    let mut done = progress(TENANT_A, run_a, "replica-uploads", "done", 100, 2);
    done.carried = 3;
    app.deliver_progress(&message(&done)).await;
    // A later run of another job comes first; ?job= and ?limit= narrow the list.
    let run_a2 = Uuid::now_v7();
    let mut later = progress(TENANT_A, run_a2, "reconciliations", "failed", 0, 60);
    later.started_at_ms = T0 + 60_000;
    app.deliver_progress(&message(&later)).await;

    let list = runs(&app, &token_a, "").await;
    let ids: Vec<&str> = list.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [run_a2.to_string(), run_a.to_string()]);
    assert_eq!(list[1]["state"], "done");
    assert_eq!(list[1]["processed"], 100);
    assert_eq!(list[1]["carried"], 3);
    assert_eq!(list[0]["state"], "failed");
    let only = runs(&app, &token_a, "?job=replica-uploads").await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["run_id"], run_a.to_string());
    let one = runs(&app, &token_a, "?limit=1").await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["run_id"], run_a2.to_string());
    assert!(runs(&app, &token_a, "?job=no-such-job").await.is_empty());

    // Business staff may look too; system clients and bad queries may not.
    let admin = app.token(TENANT_A, "admin1").await;
    app.create_user(&admin, "staff01", &["business_staff"])
        .await;
    let staff = app.token(TENANT_A, "staff01").await;
    assert_eq!(runs(&app, &staff, "").await.len(), 2);
    let client = app.env.token(TENANT_A, &[Role::SystemClient]);
    assert_problem(app.get(&client, "/v1/batches").await, 403, "forbidden").await;
    assert_problem(
        app.get(&token_a, "/v1/batches?limit=0").await,
        400,
        "invalid-field",
    )
    .await;
    assert_problem(
        app.get(&token_a, "/v1/batches?limit=501").await,
        400,
        "invalid-field",
    )
    .await;
    assert_problem(
        app.get(&token_a, "/v1/batches?limit=x").await,
        400,
        "invalid-query",
    )
    .await;
    let res = app
        .api
        .http
        .get(app.url("/v1/batches"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[actix_rt::test]
async fn an_older_report_arriving_late_does_not_overwrite_a_newer_one() {
    let app = spawn_app().await;
    let run = Uuid::now_v7();
    app.deliver_progress(&message(&progress(
        TENANT_A,
        run,
        "replica-uploads",
        "done",
        100,
        30,
    )))
    .await;
    app.deliver_progress(&message(&progress(
        TENANT_A,
        run,
        "replica-uploads",
        "running",
        40,
        10,
    )))
    .await;

    let token = app.token(TENANT_A, "admin1").await;
    let list = runs(&app, &token, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["state"], "done");
    assert_eq!(list[0]["processed"], 100);

    // Two reports of one millisecond: the finished one stands, whichever came last.
    let tie = Uuid::now_v7();
    app.deliver_progress(&message(&progress(
        TENANT_A,
        tie,
        "replica-uploads",
        "done",
        100,
        5,
    )))
    .await;
    app.deliver_progress(&message(&progress(
        TENANT_A,
        tie,
        "replica-uploads",
        "running",
        99,
        5,
    )))
    .await;
    let list = runs(&app, &token, "").await;
    let tied = list
        .iter()
        .find(|r| r["run_id"] == tie.to_string())
        .unwrap();
    assert_eq!(tied["state"], "done");
    assert_eq!(tied["processed"], 100);
}

#[actix_rt::test]
async fn a_redelivered_message_is_applied_once() {
    let app = spawn_app().await;
    let run = Uuid::now_v7();
    let first = message(&progress(
        TENANT_A,
        run,
        "replica-uploads",
        "running",
        10,
        1,
    ));
    app.deliver_progress(&first).await;
    app.deliver_progress(&message(&progress(
        TENANT_A,
        run,
        "replica-uploads",
        "running",
        20,
        2,
    )))
    .await;
    // The first message again (same id), even claiming to be newer: already applied, skipped.
    let replay = OutgoingMessage {
        body: progress(TENANT_A, run, "replica-uploads", "done", 99, 3).encode_to_vec(),
        ..first.clone()
    };
    app.deliver_progress(&replay).await;

    let token = app.token(TENANT_A, "admin1").await;
    let list = runs(&app, &token, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["state"], "running");
    assert_eq!(list[0]["processed"], 20);
    assert_eq!(chukan_mq::metrics::dead_lettered(&app.batch_queue()), 0);

    let owner = app.env.owner_pool().unwrap();
    let claimed: i64 = owner
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM admin.inbox WHERE consumer = 'admin.batches'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(claimed, 2);
}

#[actix_rt::test]
async fn a_report_for_another_tenant_than_its_header_is_dead_lettered() {
    let app = spawn_app().await;
    let run = Uuid::now_v7();
    // Header says B, body says A: it must not land behind either wall.
    let mut msg = message(&progress(TENANT_A, run, "replica-uploads", "running", 1, 1));
    msg.tenant = TENANT_B.into();
    app.deliver_progress(&msg).await;
    assert_eq!(chukan_mq::metrics::dead_lettered(&app.batch_queue()), 1);
    // So is one that is not a batch run at all.
    let mut bad = progress(TENANT_A, run, "replica-uploads", "paused", 1, 1);
    bad.run_id = "not-a-uuid".into();
    app.deliver_progress(&message(&bad)).await;
    assert_eq!(chukan_mq::metrics::dead_lettered(&app.batch_queue()), 2);

    for tenant in [TENANT_A, TENANT_B] {
        let token = app.token(tenant, "admin1").await;
        assert!(runs(&app, &token, "").await.is_empty());
    }
}

#[actix_rt::test]
async fn a_nul_in_the_query_is_refused_at_the_edge_not_a_500() {
    let app = spawn_app().await;
    let token = app.token(TENANT_A, "admin1").await;
    for path in [
        "/v1/batches?job=a%00b",
        "/v1/batches?job=%00",
        "/v1/users/%00",
    ] {
        let body = assert_problem(app.get(&token, path).await, 400, "invalid-character").await;
        assert!(
            body["detail"].as_str().unwrap().contains("U+0000"),
            "{body}"
        );
    }
    // Every answer carries the security headers, errors included.
    let res = app.get(&token, "/v1/batches?job=x").await;
    assert_eq!(res.status(), 200);
    for (name, want) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(res.headers()[name], want, "{name}");
    }
    assert!(res.headers().contains_key("content-security-policy"));
}
