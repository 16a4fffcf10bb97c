//! Reconciliation files (突合用ファイル): immediate when small, by the nightly batch otherwise.

use chukan_provision::replica::jobs::Job;
use serde_json::json;

use crate::helpers::*;

async fn download(app: &TestApp, id: &str) -> (u16, String) {
    let res = app
        .api
        .http
        .get(app.api.url(&format!("/v1/reconciliations/{id}/file")))
        .bearer_auth(app.token(ORG_A))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

#[actix_rt::test]
async fn small_files_are_made_at_once_and_large_ones_by_the_nightly_batch() {
    let app = spawn_app_with(tuesday_10(), |s| {
        s.provision.reconciliation_immediate_max = 5
    })
    .await;
    app.upload_ok(ORG_A, medical_list(0..4)).await;
    app.run(Job::ReplicaUploads).await;

    let ask = json!({"info_code": MEDICAL, "major_version": "0002", "dataset": "0101"});
    let (status, r) = app.post(ORG_A, "/v1/reconciliations", ask.clone()).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["state"], "ready");
    assert_eq!(r["records"], 4);
    let (status, csv) = download(&app, r["id"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].starts_with("レコード識別番号,団体内統合宛名番号"));
    assert!(
        lines[1]
            .starts_with("R000000000000000,000000000100000,TM00000000000031,0101,0002,K000000000"),
        "{}",
        lines[1]
    );

    app.upload_ok(ORG_A, medical_list(4..10)).await;
    app.run(Job::ReplicaUploads).await;
    let (status, r) = app.post(ORG_A, "/v1/reconciliations", ask).await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(r["state"], "queued");
    let id = r["id"].as_str().unwrap().to_string();
    let (status, csv) = download(&app, &id).await;
    assert_eq!(status, 409, "{csv}");

    let report = app.run(Job::Reconciliations).await;
    assert_eq!(report.reconciliations_made, 1);
    let (_, r) = app.get(ORG_A, &format!("/v1/reconciliations/{id}")).await;
    assert_eq!(r["state"], "ready");
    assert_eq!(r["records"], 10);
    let (_, csv) = download(&app, &id).await;
    assert_eq!(csv.lines().count(), 11);
    // Another organisation cannot read it.
    let (status, _) = app.get(ORG_B, &format!("/v1/reconciliations/{id}")).await;
    assert_eq!(status, 404);
}
