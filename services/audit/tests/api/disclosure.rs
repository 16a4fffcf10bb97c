//! Disclosure changes (enhancement #9): appended, never updated in place; what the resident may
//! see follows the latest change. Also the batched append under a burst.

use chukan_crypto::Vault;
use serde_json::json;

use crate::helpers::*;

const PROC: &str = "JT00000000000001";
const RESIDENT: &str = "000000000012345";

pub async fn disclosable_ids(app: &TestApp, tenant: &str, addressee: &str) -> Vec<String> {
    let vault = Vault::new(app.env.ctx.kek.clone(), chukan_audit::SCHEMA);
    let mut client = app.env.ctx.db.get().await.unwrap();
    let tx = chukan_db::tenant_tx(&mut client, tenant).await.unwrap();
    let found = chukan_audit::disclosure::disclosable_records(&tx, &vault, tenant, addressee)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        found.iter().all(|r| r.addressee.is_empty()),
        "no addressee leaves"
    );
    found.into_iter().map(|r| r.record_id).collect()
}

#[actix_rt::test]
async fn a_disclosure_change_is_a_new_record_and_the_latest_change_wins() {
    let app = spawn_app().await;
    let open = record(ORG_A, RESIDENT, PEER_1, PROC);
    let mut hidden = record(ORG_A, RESIDENT, PEER_2, PROC);
    hidden.non_disclosure = true;
    let other = record(ORG_A, "000000000099999", PEER_1, PROC);
    app.append_all(&[open.clone(), hidden.clone(), other.clone()], 3)
        .await;
    assert_eq!(
        disclosable_ids(&app, ORG_A, RESIDENT).await,
        vec![open.record_id.clone()],
        "the non-disclosed record and the other resident's are left out"
    );
    let leaf_before = app
        .scalar_i64(
            ORG_A,
            &format!(
                "SELECT count(*) FROM audit.records WHERE record_id = '{}' AND non_disclosure",
                hidden.record_id
            ),
        )
        .await;
    assert_eq!(leaf_before, 1);

    let path = format!("/v1/records/{}/disclosure", hidden.record_id);
    let (status, body) = app
        .post(ORG_A, &path, &json!({"non_disclosure": false}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["reason"], "不開示設定変更");
    assert_eq!(body["seq"], 3);
    let change_id = body["change_record_id"].as_str().unwrap().to_owned();

    // Disclosed now; the original row still says what was recorded.
    let mut ids = disclosable_ids(&app, ORG_A, RESIDENT).await;
    ids.sort();
    let mut want = vec![open.record_id.clone(), hidden.record_id.clone()];
    want.sort();
    assert_eq!(ids, want);
    let (status, page) = app
        .post(
            ORG_A,
            "/v1/records/search",
            &json!({ "addressee": RESIDENT }),
        )
        .await;
    assert_eq!(status, 200);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "two exchanges and the change: {page}");
    let change = &items[0];
    assert_eq!(change["event"], "disclosure.changed");
    assert_eq!(change["record_id"], change_id.as_str());
    assert_eq!(change["target_record_id"], hidden.record_id.as_str());
    assert_eq!(change["reason"], "不開示設定変更");
    assert_eq!(
        change["inquirer_org"], PEER_2,
        "the change carries the exchange's fields"
    );
    let original = items
        .iter()
        .find(|i| i["record_id"] == hidden.record_id.as_str())
        .unwrap();
    assert_eq!(original["non_disclosure"], true);
    assert_eq!(original["non_disclosure_now"], false);

    // The same setting again changes nothing; a change record cannot be the target.
    let (status, body) = app
        .post(ORG_A, &path, &json!({"non_disclosure": false}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("disclosure-unchanged"))
    );
    let (status, body) = app
        .post(
            ORG_A,
            &format!("/v1/records/{change_id}/disclosure"),
            &json!({"non_disclosure": true}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("not-an-exchange-record"))
    );
    let (status, body) = app
        .post(
            ORG_A,
            &format!("/v1/records/{}/disclosure", uuid::Uuid::now_v7()),
            &json!({"non_disclosure": true}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not-found")));
    // Another tenant cannot see, let alone change, the record.
    let (status, _) = app
        .post(ORG_B, &path, &json!({"non_disclosure": true}))
        .await;
    assert_eq!(status, 404);
    let (status, body) = app.post(ORG_A, &path, &json!({"hidden": 1})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM audit.records")
            .await,
        4,
        "refused changes append nothing"
    );

    // And back: hidden again, by a second change record.
    let (status, _) = app
        .post(ORG_A, &path, &json!({"non_disclosure": true}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        disclosable_ids(&app, ORG_A, RESIDENT).await,
        vec![open.record_id.clone()]
    );
    assert_eq!(
        app.scalar_i64(
            ORG_A,
            "SELECT count(*) FROM audit.records WHERE event = 'disclosure.changed'"
        )
        .await,
        2
    );
    app.sign().await;
    let report = app.verify(ORG_A).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 5);
}

#[actix_rt::test]
async fn a_backlog_is_appended_in_batches_exactly_once() {
    let records: Vec<_> = (0..1500)
        .map(|i| {
            record(
                if i % 3 == 0 { ORG_B } else { ORG_A },
                &format!("{:015}", 700_000 + i),
                PEER_1,
                PROC,
            )
        })
        .collect();
    // The first 50 twice, under new bus ids: recognised by record id.
    let backlog: Vec<_> = records.iter().chain(&records[..50]).cloned().collect();
    let app = spawn_app_with_backlog(&backlog).await;
    wait_until("the backlog appended", || async {
        app.scalar_i64(ORG_A, "SELECT count(*) FROM audit.records")
            .await
            == 1000
            && app
                .scalar_i64(ORG_B, "SELECT count(*) FROM audit.records")
                .await
                == 500
    })
    .await;
    wait_until("duplicates settled", || async {
        chukan_audit::metrics::appended_counted("duplicate-record") >= 50
    })
    .await;
    let (transactions, records_in_them) = chukan_audit::metrics::batches_observed();
    assert!(
        transactions > 0 && records_in_them / (transactions as f64) > 10.0,
        "a backlog shares transactions: {transactions} transactions for {records_in_them} records"
    );
    app.sign().await;
    for tenant in [ORG_A, ORG_B] {
        let report = app.verify(tenant).await;
        assert!(report.is_ok(), "{report:?}");
    }
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT max(seq) + 1 - count(*) FROM audit.records")
            .await,
        0,
        "leaf indexes are gap-free"
    );
}
