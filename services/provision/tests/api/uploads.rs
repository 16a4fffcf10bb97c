//! Registration lists: upload, nightly batch, result report, refusals that leave nothing.

use std::time::Duration;

use chukan_core::Clock as _;
use chukan_proto::Message as _;
use chukan_provision::replica::jobs::Job;
use chukan_replica_list::Operation;

use crate::helpers::*;

#[actix_rt::test]
async fn an_upload_waits_for_the_nightly_batch_then_every_entry_is_registered() {
    let app = spawn_app().await;
    let res = app.upload(ORG_A, medical_list(0..120)).await;
    assert_eq!(res.status(), 202);
    let accepted: serde_json::Value = res.json().await.unwrap();
    assert_eq!(accepted["entries"], 120);
    assert_eq!(accepted["precheck_rejected"], 0);
    assert_eq!(accepted["processing"], "nightly");
    let id = accepted["upload_id"].as_str().unwrap();

    // Queued, not applied, until the batch runs.
    assert_eq!(app.report(ORG_A, id).await["state"], "queued");
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 0);

    let report = app.run(Job::ReplicaUploads).await;
    assert_eq!(report.uploads.len(), 1);
    let r = app.report(ORG_A, id).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["registered"], 120);
    assert_eq!(r["overwritten"], 0);
    assert_eq!(r["rejected"], 0);
    assert_eq!(r["carried"], 0);
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 120);
    // The stored file is not kept once applied.
    assert_eq!(app.count_rows(ORG_A, "upload_chunks").await, 0);

    // Running the batch again changes nothing.
    app.run(Job::ReplicaUploads).await;
    assert_eq!(app.report(ORG_A, id).await["registered"], 120);
}

#[actix_rt::test]
async fn the_last_successful_night_is_exported_at_its_end_and_again_after_a_restart() {
    use chukan_provision::{metrics, replica::scheduler};
    let gauge = || metrics::batch_last_success(metrics::REPLICA_NIGHT);
    // Tuesday 10:00: tonight's run is not due.
    let app = spawn_app().await;

    // Last night's run, finished by an earlier process.
    let last_night = japan(2026, 11, 23, 23, 10);
    app.env
        .ctx
        .db
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO provision.job_runs (job, day, started_at, finished_at)
             VALUES ('nightly', '2026-11-23', $1, $2)",
            &[&japan(2026, 11, 23, 22, 0), &last_night],
        )
        .await
        .unwrap();
    // A scheduler starting now (a restarted process) exports it before any run of its own.
    let restarted = scheduler::start(app.state.clone(), Duration::from_secs(3600));
    chukan_testkit::wait_until(Duration::from_secs(20), "the recorded night", || async {
        gauge() == last_night.timestamp() as f64
    })
    .await
    .unwrap();
    (restarted.stop)().await;

    // Tonight's run: exported when it ends (whichever scheduler of the process ran it).
    let tonight = japan(2026, 11, 24, 22, 30);
    app.clock.set(tonight);
    scheduler::nightly_if_due(&app.state).await.unwrap();
    chukan_testkit::wait_until(Duration::from_secs(60), "tonight's run", || async {
        gauge() == tonight.timestamp() as f64
    })
    .await
    .unwrap();
}

#[actix_rt::test]
async fn a_night_not_finished_by_eight_is_announced_degraded_for_the_operating_status() {
    use chukan_provision::replica::batch_health;
    let app = spawn_app().await;
    let db = app.env.ctx.db.get().await.unwrap();
    // A new installation: no night has run, nothing to judge.
    app.clock.set(japan(2026, 11, 24, 9, 0));
    assert_eq!(
        batch_health::healthy(&app.state, app.clock.now())
            .await
            .unwrap(),
        None
    );
    // The night of the 22nd finished; the night of the 23rd was never run.
    db.execute(
        "INSERT INTO provision.job_runs (job, day, started_at, finished_at)
         VALUES ('nightly', '2026-11-22', $1, $1)",
        &[&japan(2026, 11, 22, 23, 0)],
    )
    .await
    .unwrap();
    // Before 08:00 nothing is late yet; at 09:00 it is.
    app.clock.set(japan(2026, 11, 24, 7, 59));
    assert_eq!(
        batch_health::healthy(&app.state, app.clock.now())
            .await
            .unwrap(),
        None
    );
    app.clock.set(japan(2026, 11, 24, 9, 0));
    assert_eq!(
        batch_health::healthy(&app.state, app.clock.now())
            .await
            .unwrap(),
        Some(false)
    );
    // It ran late and finished: healthy again.
    db.execute(
        "INSERT INTO provision.job_runs (job, day, started_at, finished_at)
         VALUES ('nightly', '2026-11-23', $1, $2)",
        &[&japan(2026, 11, 24, 8, 30), &japan(2026, 11, 24, 9, 30)],
    )
    .await
    .unwrap();
    assert_eq!(
        batch_health::healthy(&app.state, app.clock.now())
            .await
            .unwrap(),
        Some(true)
    );
    // An announcement goes out through the outbox, for admin's operating status.
    batch_health::announce(&app.state, false).await.unwrap();
    chukan_testkit::wait_until(Duration::from_secs(20), "status.component", || async {
        app.out.lock().unwrap().iter().any(|d| {
            d.routing_key.ends_with(chukan_proto::STATUS_COMPONENT)
                && chukan_proto::ComponentStatus::decode(d.body.as_slice())
                    .is_ok_and(|s| s.component == "replica-batch" && s.status == "degraded")
        })
    })
    .await
    .unwrap();
}

#[actix_rt::test]
async fn an_immediate_organisation_is_processed_without_waiting_for_the_night() {
    let app = spawn_app().await;
    app.set_org(ORG_A, 200_000, Some('A'), true).await;
    let id = app.upload_ok(ORG_A, medical_list(0..30)).await;
    chukan_testkit::wait_until(Duration::from_secs(20), "immediate processing", || async {
        app.report(ORG_A, &id).await["state"] == "done"
    })
    .await
    .unwrap();
    assert_eq!(app.report(ORG_A, &id).await["registered"], 30);
}

async fn assert_refused_and_nothing_stored(app: &TestApp, body: Vec<u8>, code: &str) {
    let res = app.upload(ORG_A, body).await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["code"], code, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("登録されていません"),
        "{p}"
    );
    assert!(!p["action"].as_str().unwrap().is_empty());
    assert_eq!(app.count_rows(ORG_A, "uploads").await, 0);
    assert_eq!(app.count_rows(ORG_A, "upload_chunks").await, 0);
}

#[actix_rt::test]
async fn broken_files_are_refused_whole_and_leave_nothing_behind() {
    let app = spawn_app().await;
    let good = medical_list(0..20);
    // Truncated in the middle of an entry.
    let truncated = good[..good.len() * 2 / 3].to_vec();
    assert_refused_and_nothing_stored(&app, truncated, "truncated-registration-list").await;
    // Not well-formed: a closing tag that does not match.
    let text = String::from_utf8(good.clone()).unwrap();
    let broken = text.replacen("</DataSetRecordKey>", "</DataSetRecordKeyX>", 1);
    assert_refused_and_nothing_stored(&app, broken.into_bytes(), "malformed-registration-list")
        .await;
    // Something else entirely.
    assert_refused_and_nothing_stored(
        &app,
        b"<?xml version=\"1.0\"?><Invoice><Total>1</Total></Invoice>".to_vec(),
        "not-a-registration-list",
    )
    .await;
    // No entries at all.
    assert_refused_and_nothing_stored(&app, medical_list(0..0), "empty-registration-list").await;
    // And a proper file still goes through.
    app.upload_ok(ORG_A, good).await;
}

#[actix_rt::test]
async fn broken_records_are_reported_and_the_rest_of_the_file_is_applied() {
    let app = spawn_app().await;
    let mut recs: Vec<Rec> = (0..6).map(Rec::medical).collect();
    // Wrong major version.
    recs[1].version = "0009".into();
    // Unknown item code in the payload.
    recs[2].payload.push(item("I0099", "x"));
    // Oversized item (I0001 is at most 20 characters).
    recs[3].payload[0] = group_item("I0001", "123456789012345678901234567890");
    // Unknown info code.
    recs[4].info_code = "TM00000000000999".into();
    let id = app.upload_ok(ORG_A, list(&recs)).await;
    app.run(Job::ReplicaUploads).await;
    let r = app.report(ORG_A, &id).await;
    assert_eq!(r["registered"], 2, "{r}");
    assert_eq!(r["rejected"], 4, "{r}");
    assert_eq!(r["precheck_rejected"], 4, "{r}");
    let (_, rejections) = app
        .get(ORG_A, &format!("/v1/replica-uploads/{id}/rejections"))
        .await;
    let rejections = rejections.as_array().unwrap();
    let codes: Vec<(i64, &str, &str)> = rejections
        .iter()
        .map(|r| {
            (
                r["ordinal"].as_i64().unwrap(),
                r["record_id"].as_str().unwrap(),
                r["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (2, "R000000000000001", "unknown-major-version"),
            (3, "R000000000000002", "unknown-item"),
            (4, "R000000000000003", "too-long"),
            (5, "R000000000000004", "unknown-info-code"),
        ]
    );
    for r in rejections {
        assert!(!r["action"].as_str().unwrap().is_empty());
        // The refused value never comes back.
        assert!(!r.to_string().contains("123456789012345678901234567890"));
    }
    // Nothing of a refused record was half-applied.
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 2);
}

#[actix_rt::test]
async fn a_duplicate_record_id_is_refused_with_the_published_message_and_a_key_overwrites() {
    let app = spawn_app().await;
    let id = app.upload_ok(ORG_A, medical_list(0..3)).await;
    app.run(Job::ReplicaUploads).await;
    assert_eq!(app.report(ORG_A, &id).await["registered"], 3);

    // Same record id again (new key): refused. Same key with a new record id: overwritten.
    let mut dup = Rec::medical(1);
    dup.key = "K-other".into();
    let mut over = Rec::medical(2);
    over.record_id = "R900000000000002".into();
    over.payload = medical("M-NEW", "2016-04-01", None);
    // Within one file, the same record id twice: the second is a duplicate.
    let mut first = Rec::medical(10);
    first.key = "K-first".into();
    let mut again = Rec::medical(10);
    again.key = "K-again".into();
    let id2 = app.upload_ok(ORG_A, list(&[dup, over, first, again])).await;
    app.run(Job::ReplicaUploads).await;
    let r = app.report(ORG_A, &id2).await;
    assert_eq!(r["registered"], 1, "{r}");
    assert_eq!(r["overwritten"], 1, "{r}");
    assert_eq!(r["rejected"], 2, "{r}");
    let (_, rej) = app
        .get(ORG_A, &format!("/v1/replica-uploads/{id2}/rejections"))
        .await;
    for r in rej.as_array().unwrap() {
        assert_eq!(r["code"], "duplicate-record-id");
        assert_eq!(r["detail"], "「レコード識別番号」が既に存在しています。");
    }
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 4);
    let entries = app
        .query(
            ORG_A,
            serde_json::json!({"integrated_addressee_number": format!("{:015}", 100_002), "info_code": MEDICAL}),
        )
        .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["items"][0]["value"], "M-NEW");
    assert_eq!(entries[0]["record_id"], "R900000000000002");
}

/// An organisation's first list goes into an empty replica DB, where only what the list
/// itself repeats can be registered already (and only that is looked up): repeats far apart
/// and close together are refused, overwritten and deleted as in any other list.
#[actix_rt::test]
async fn a_first_load_that_repeats_itself_is_applied_as_any_other_list() {
    let app = spawn_app().await;
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 0);
    // 400 entries: eight chunks of 50.
    let mut recs: Vec<Rec> = (0..400).map(Rec::medical).collect();
    // The record id of entry 15 with a new key, in the same chunk: a duplicate.
    recs[20] = Rec::medical(15);
    recs[20].key = "K-near".into();
    // Entry 3 deleted, then registered again under a new record id.
    recs[200] = Rec::medical(3);
    recs[200].op = Operation::Delete;
    recs[200].record_id = "D000000000000003".into();
    recs[200].payload = vec![];
    recs[390] = Rec::medical(3);
    recs[390].record_id = "R800000000000003".into();
    // The record id of entry 5 with a new key, chunks later: a duplicate.
    recs[300] = Rec::medical(5);
    recs[300].key = "K-far".into();
    // The key of entry 6 with a new record id, chunks later: an overwrite.
    recs[310] = Rec::medical(6);
    recs[310].record_id = "R900000000000006".into();
    recs[310].payload = medical("M-NEW", "2016-04-01", None);
    let id = app.upload_ok(ORG_A, list(&recs)).await;
    app.run(Job::ReplicaUploads).await;
    let r = app.report(ORG_A, &id).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["registered"], 396, "{r}");
    assert_eq!(r["overwritten"], 1, "{r}");
    assert_eq!(r["deleted"], 1, "{r}");
    assert_eq!(r["rejected"], 2, "{r}");
    let (_, rej) = app
        .get(ORG_A, &format!("/v1/replica-uploads/{id}/rejections"))
        .await;
    let refused: Vec<(i64, &str)> = rej
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["ordinal"].as_i64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        vec![(21, "duplicate-record-id"), (301, "duplicate-record-id")]
    );
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 395);
    let entries = app
        .query(
            ORG_A,
            serde_json::json!({"integrated_addressee_number": format!("{:015}", 100_006), "info_code": MEDICAL}),
        )
        .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["items"][0]["value"], "M-NEW");
    assert_eq!(entries[0]["record_id"], "R900000000000006");
}

#[actix_rt::test]
async fn deletions_in_a_list_remove_replicas_and_unknown_ones_are_reported() {
    let app = spawn_app().await;
    app.upload_ok(ORG_A, medical_list(0..5)).await;
    app.run(Job::ReplicaUploads).await;
    let mut del = Rec::medical(3);
    del.op = Operation::Delete;
    del.record_id = "D000000000000003".into();
    del.payload = vec![];
    let mut missing = Rec::medical(77);
    missing.op = Operation::Delete;
    missing.payload = vec![];
    let id = app.upload_ok(ORG_A, list(&[del, missing])).await;
    app.run(Job::ReplicaUploads).await;
    let r = app.report(ORG_A, &id).await;
    assert_eq!(r["deleted"], 1, "{r}");
    assert_eq!(r["rejected"], 1, "{r}");
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 4);
}

#[actix_rt::test]
async fn another_organisation_sees_neither_uploads_nor_replicas() {
    let app = spawn_app().await;
    let id = app.upload_ok(ORG_A, medical_list(0..3)).await;
    app.run(Job::ReplicaUploads).await;
    let (status, _) = app.get(ORG_B, &format!("/v1/replica-uploads/{id}")).await;
    assert_eq!(status, 404);
    // What lies under the upload is as unseen as the upload itself (it was 200 []).
    let rejections = format!("/v1/replica-uploads/{id}/rejections");
    let (status, body) = app.get(ORG_B, &rejections).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not-found")));
    let (status, _) = app.get(ORG_A, &rejections).await;
    assert_eq!(status, 200);
    let (status, _) = app
        .get(
            ORG_A,
            &format!("/v1/replica-uploads/{}/rejections", uuid::Uuid::now_v7()),
        )
        .await;
    assert_eq!(status, 404);
    let (_, list) = app.get(ORG_B, "/v1/replica-uploads").await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    let entries = app
        .query(
            ORG_B,
            serde_json::json!({"integrated_addressee_number": format!("{:015}", 100_001), "info_code": MEDICAL}),
        )
        .await;
    assert!(entries.is_empty());
    assert_eq!(app.count_rows(ORG_B, "replicas").await, 0);
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 3);
}

#[actix_rt::test]
async fn no_payload_value_is_visible_in_any_table() {
    let app = spawn_app().await;
    let mut r = Rec::medical(1);
    r.addressee = "000000000912345".into();
    r.key = "KEY-SECRET-4711".into();
    r.payload = medical("MEMBER-987654321", "2013-05-17", Some("2019-11-30"));
    // Keep one copy queued (stored file) and one applied (replica).
    app.upload_ok(ORG_A, list(std::slice::from_ref(&r))).await;
    app.run(Job::ReplicaUploads).await;
    let mut r2 = r.clone();
    r2.record_id = "R999".into();
    app.upload_ok(ORG_A, list(&[r2])).await;

    let pool = app.env.owner_pool().unwrap();
    let client = pool.get().await.unwrap();
    let tx = &client;
    let tables: Vec<String> = tx
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'provision'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.contains(&"replicas".to_string()));
    let mut dump = String::new();
    for t in &tables {
        for row in tx
            .query(&format!("SELECT t::text FROM provision.{t} t"), &[])
            .await
            .unwrap()
        {
            dump.push_str(&row.get::<_, String>(0));
        }
    }
    // The owner (a superuser) sees every row; the applied replica's record id is plain.
    assert!(
        dump.contains("R000000000000001"),
        "the dump should see the replica rows"
    );
    assert!(
        dump.contains("queued"),
        "the dump should see the queued upload"
    );
    for secret in [
        "912345",
        "KEY-SECRET",
        "987654321",
        "2013-05-17",
        "2019-11-30",
        "MEMBER",
    ] {
        assert!(!dump.contains(secret), "{secret} is visible in the tables");
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!dump.contains(&hex), "{secret} is visible as bytes");
    }
}
