//! Every revision kind of the data standard layout (DOMAIN §4), and abolished datasets deleted
//! from day 31.

use chukan_provision::replica::jobs::Job;

use crate::helpers::*;

fn tax(n: u32, version: &str, extra: bool) -> Rec {
    let mut payload = vec![
        item("I0001", "2019"),
        item("I0002", "120000"),
        item("I0003", "5000"),
        item("I0006", "1"),
    ];
    if extra {
        // ひとり親区分: added by the 2019-07 major revision.
        payload.push(item("I0007", "1"));
    }
    Rec {
        info_code: LOCAL_TAX.into(),
        version: version.into(),
        payload,
        ..Rec::medical(n)
    }
}

async fn apply(app: &TestApp, recs: &[Rec]) -> serde_json::Value {
    // No. 2 is a heavy item: upload inside group A's Monday slot.
    let id = app.upload_ok(ORG_A, list(recs)).await;
    app.run(Job::ReplicaUploads).await;
    app.report(ORG_A, &id).await
}

async fn rejection_codes(app: &TestApp, report: &serde_json::Value) -> Vec<String> {
    let id = report["id"].as_str().unwrap();
    let (_, rej) = app
        .get(ORG_A, &format!("/v1/replica-uploads/{id}/rejections"))
        .await;
    rej.as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

#[actix_rt::test]
async fn a_major_revision_keeps_both_versions_each_checked_against_its_own_layout() {
    // Monday 2026-11-23 09:00: group A may upload the heavy item No. 2.
    let app = spawn_app_with(japan(2026, 11, 23, 9, 0), |_| {}).await;
    let r = apply(
        &app,
        &[
            tax(1, "0001", false), // old version: fine
            tax(2, "0002", true),  // new version with the added item: fine
            tax(3, "0001", true),  // the added item does not exist in the old version
        ],
    )
    .await;
    assert_eq!(r["registered"], 2, "{r}");
    assert_eq!(rejection_codes(&app, &r).await, vec!["unknown-item"]);
    // Old and new versions coexist and are managed apart: the old one can be bulk-deleted.
    let (_, d) = app
        .post(
            ORG_A,
            "/v1/replica-bulk-deletions",
            serde_json::json!({"info_code": LOCAL_TAX, "major_version": "0001", "dataset": "0101"}),
        )
        .await;
    assert_eq!(d["deleted"], 1);
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 1);
    let (_, counts) = app.get(ORG_A, "/v1/replica-counts").await;
    assert_eq!(
        counts,
        serde_json::json!([{"info_code": LOCAL_TAX, "major_version": "0002", "dataset": "0101", "replicas": 1}])
    );
}

#[actix_rt::test]
async fn an_added_dataset_and_an_added_item_are_registered_as_new() {
    let app = spawn_app().await;
    let disability = Rec {
        info_code: "TM00000000000008".into(),
        version: "0001".into(),
        dataset: "0102".into(),
        payload: vec![
            item("I0001", "1234567"),
            item("I0002", "1"),
            item("I0004", "2019-08-01"),
        ],
        ..Rec::medical(1)
    };
    let allowance = Rec {
        info_code: "TM00000000000085".into(),
        version: "0001".into(),
        payload: vec![
            item("I0001", "A-100"),
            item("I0002", "2019-09-01"),
            item("I0003", "1"),
            item("I0004", "1"),
        ],
        ..Rec::medical(2)
    };
    let r = apply(&app, &[disability, allowance]).await;
    assert_eq!(r["registered"], 2, "{r}");
}

fn facility(n: u32) -> Rec {
    Rec {
        info_code: "TM00000000000019".into(),
        version: "0001".into(),
        dataset: "0102".into(),
        payload: vec![item("I0001", "2018-10-01")],
        ..Rec::medical(n)
    }
}

#[actix_rt::test]
async fn an_abolished_dataset_takes_no_new_replicas_and_old_ones_go_on_day_31() {
    // Before abolition (2019-07-01) No. 19 / 0102 takes replicas.
    let app = spawn_app_with(japan(2019, 6, 20, 10, 0), |_| {}).await;
    let r = apply(&app, &[facility(1), facility(2), Rec::medical(3)]).await;
    assert_eq!(r["registered"], 3, "{r}");

    // After abolition it refuses them.
    app.clock.set(japan(2019, 7, 2, 10, 0));
    let r = apply(&app, &[facility(4)]).await;
    assert_eq!(r["registered"], 0);
    assert_eq!(rejection_codes(&app, &r).await, vec!["dataset-abolished"]);

    // Day 30 after abolition: inquiries may still be owed, the replicas stay.
    app.clock.set(japan(2019, 7, 31, 22, 0));
    let report = app.run(Job::AbolishedDatasets).await;
    assert_eq!(report.abolished_deleted, 0);
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 3);
    // Day 31: deleted, and only them.
    app.clock.set(japan(2019, 8, 1, 22, 0));
    let report = app.run(Job::AbolishedDatasets).await;
    assert_eq!(report.abolished_deleted, 2);
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 1);
}
