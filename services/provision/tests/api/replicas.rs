//! Daily changes over REST, point-in-time reads, public dates, bulk delete, slots, events.

use chukan_proto::{Message, ReplicaCountChanged};
use chukan_provision::replica::jobs::Job;
use serde_json::json;

use crate::helpers::*;

fn record(op: &str, rid: &str, key: &str, items: serde_json::Value) -> serde_json::Value {
    json!({
        "operation": op, "record_id": rid, "integrated_addressee_number": "000000000012345",
        "info_code": MEDICAL, "dataset": "0101", "record_key": key, "major_version": "0002",
        "items": items
    })
}

fn member(m: &str, from: &str, to: Option<&str>) -> serde_json::Value {
    let mut items = vec![
        json!({"code": "I0001", "value": m, "version": "0002", "updated": "2017-03-01"}),
        json!({"code": "I0002", "value": from}),
    ];
    match to {
        Some(t) => items.push(json!({"code": "I0003", "value": t})),
        None => items.push(json!({"code": "I0003", "null_reason": "NotAcceptable"})),
    }
    json!(items)
}

#[actix_rt::test]
async fn rest_changes_are_applied_at_once_and_reported() {
    let app = spawn_app().await;
    let (status, r) = app
        .post(
            ORG_A,
            "/v1/replicas",
            json!({"records": [
                record("register", "R1", "K1", member("11111", "2010-04-01", Some("2017-02-28"))),
                record("register", "R2", "K2", member("2222", "2017-02-28", None)),
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "done");
    assert_eq!(r["registered"], 2);
    // Overwrite K2 and delete K1 and something never registered.
    let (status, r) = app
        .post(
            ORG_A,
            "/v1/replicas",
            json!({"records": [
                record("register", "R3", "K2", member("3333", "2017-02-28", None)),
                record("delete", "R4", "K1", json!([])),
                record("delete", "R5", "K9", json!([])),
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["overwritten"], 1, "{r}");
    assert_eq!(r["deleted"], 1, "{r}");
    assert_eq!(r["rejected"], 1, "{r}");
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 1);
}

#[actix_rt::test]
async fn rest_refuses_empty_and_oversized_batches_and_changes_nothing() {
    let app = spawn_app_with(tuesday_10(), |s| s.provision.rest_max_records = 2).await;
    let (status, p) = app
        .post(ORG_A, "/v1/replicas", json!({"records": []}))
        .await;
    assert_eq!((status, p["code"].as_str()), (400, Some("no-records")));
    let three: Vec<_> = (0..3)
        .map(|i| {
            record(
                "register",
                &format!("R{i}"),
                &format!("K{i}"),
                member("1", "2010-04-01", None),
            )
        })
        .collect();
    let (status, p) = app
        .post(ORG_A, "/v1/replicas", json!({"records": three}))
        .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (400, Some("too-many-records"))
    );
    let (status, p) = app
        .post(ORG_A, "/v1/replicas", json!({"records": "nope"}))
        .await;
    assert_eq!(status, 400, "{p}");
    assert_eq!(app.count_rows(ORG_A, "uploads").await, 0);
}

#[actix_rt::test]
async fn what_a_registration_list_cannot_carry_is_refused_whole_naming_record_and_field() {
    let app = spawn_app().await;
    let good = record("register", "R1", "K1", member("1", "2010-04-01", None));
    let with_items = |items: serde_json::Value| record("register", "R2", "K2", items);
    // (second record, the field named) — each was a 500 ("serialise") or a stored NUL.
    let cases = [
        (
            with_items(json!([{"code": "1tem", "value": "x"}])),
            "records[1].items[0].code",
        ),
        (
            with_items(json!([{"code": "I0001", "value": "x"}, {"code": "I 2", "value": "x"}])),
            "records[1].items[1].code",
        ),
        (
            with_items(json!([{"code": "I0001\u{7}", "value": "x"}])),
            "records[1].items[0].code",
        ),
        (
            with_items(json!([{"code": "I0001", "value": "a\u{1}b"}])),
            "records[1].items[0].value",
        ),
        (
            with_items(json!([{"code": "I0001", "value": "x", "version": "\u{1b}"}])),
            "records[1].items[0].version",
        ),
        (
            record("register", "R\t2", "K2", member("1", "2010-04-01", None)),
            "records[1].record_id",
        ),
        (
            record(
                "register",
                "R2",
                "K\u{85}2",
                member("1", "2010-04-01", None),
            ),
            "records[1].record_key",
        ),
    ];
    for (bad, field) in cases {
        let (status, p) = app
            .post(ORG_A, "/v1/replicas", json!({"records": [good, bad]}))
            .await;
        assert_eq!(
            (status, p["code"].as_str()),
            (422, Some("invalid-record")),
            "{p}"
        );
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{field}: {detail}");
    }
    // A NUL anywhere in the body is refused at the edge, before the handler.
    let (status, p) = app
        .post(
            ORG_A,
            "/v1/replicas",
            json!({"records": [with_items(json!([{"code": "I0001", "value": "a\u{0}b"}]))]}),
        )
        .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (400, Some("invalid-character")),
        "{p}"
    );
    assert_eq!(app.count_rows(ORG_A, "uploads").await, 0, "nothing stored");
    // Tabs and new lines are text: a value may hold them.
    let (status, r) = app
        .post(
            ORG_A,
            "/v1/replicas",
            json!({"records": [good, with_items(json!([{"code": "I0001", "value": "a\tb\nc"}]))]}),
        )
        .await;
    assert!(status == 200 || status == 202, "{r}");
}

#[actix_rt::test]
async fn a_date_on_a_same_day_switch_answers_the_latest_entry_only() {
    let app = spawn_app().await;
    // Enhancement #14: 11111 lost on 2017-02-28, 2222 acquired on 2017-02-28.
    let (status, _) = app
        .post(
            ORG_A,
            "/v1/replicas",
            json!({"records": [
                record("register", "R1", "K1", member("11111", "2010-04-01", Some("2017-02-28"))),
                record("register", "R2", "K2", member("2222", "2017-02-28", None)),
            ]}),
        )
        .await;
    assert_eq!(status, 200);
    let ask = |body: serde_json::Value| app.query(ORG_A, body);
    let base = json!({"integrated_addressee_number": "000000000012345", "info_code": MEDICAL, "dataset": "0101"});
    let with = |k: &str, v: &str| {
        let mut b = base.clone();
        b[k] = json!(v);
        b
    };
    let members = |entries: Vec<serde_json::Value>| -> Vec<String> {
        entries
            .iter()
            .map(|e| e["items"][0]["value"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(members(ask(with("on", "2017-02-28")).await), vec!["2222"]);
    assert_eq!(members(ask(with("on", "2017-02-27")).await), vec!["11111"]);
    assert_eq!(
        members(ask(with("on", "2009-01-01")).await),
        Vec::<String>::new()
    );
    let mut period = base.clone();
    period["from"] = json!("2017-01-01");
    period["to"] = json!("2017-12-31");
    assert_eq!(members(ask(period).await), vec!["11111", "2222"]);
    assert_eq!(members(ask(base.clone()).await), vec!["2222"]);
    // The valid-from/valid-to of each history entry are kept.
    let e = ask(with("on", "2017-02-27")).await;
    assert_eq!(e[0]["valid_from"], "2010-04-01");
    assert_eq!(e[0]["valid_to"], "2017-02-28");
    // A bad period is a clear 400.
    let mut bad = base.clone();
    bad["from"] = json!("2018-01-01");
    bad["to"] = json!("2017-01-01");
    let (status, p) = app.post(ORG_A, "/v1/replica-queries", bad).await;
    assert_eq!((status, p["code"].as_str()), (400, Some("invalid-period")));
}

#[actix_rt::test]
async fn replicas_are_answered_only_between_their_public_start_and_end() {
    let app = spawn_app().await; // today: 2026-11-24
    let mut future = record("register", "R1", "K1", member("1001", "2020-04-01", None));
    future["public_start"] = json!("2026-12-01");
    let mut ended = record("register", "R2", "K2", member("1002", "2020-04-01", None));
    ended["public_end"] = json!("2026-11-01");
    let mut open = record("register", "R3", "K3", member("1003", "2020-04-01", None));
    open["public_start"] = json!("2026-11-24");
    let (status, _) = app
        .post(
            ORG_A,
            "/v1/replicas",
            json!({"records": [future, ended, open]}),
        )
        .await;
    assert_eq!(status, 200);
    // A period query answers every entry valid in it, so only public dates filter here.
    let base = json!({"integrated_addressee_number": "000000000012345", "info_code": MEDICAL,
                      "from": "2000-01-01", "to": "2030-12-31"});
    let values = |e: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        e.iter().map(|x| x["items"][0]["value"].clone()).collect()
    };
    assert_eq!(
        values(app.query(ORG_A, base.clone()).await),
        vec![json!("1003")]
    );
    app.clock.advance(chrono::Duration::days(7));
    assert_eq!(
        values(app.query(ORG_A, base).await),
        vec![json!("1001"), json!("1003")]
    );
}

#[actix_rt::test]
async fn bulk_delete_removes_one_item_version_and_dataset_only() {
    let app = spawn_app().await;
    app.upload_ok(ORG_A, medical_list(0..7)).await;
    app.upload_ok(ORG_B, medical_list(0..3)).await;
    app.run(Job::ReplicaUploads).await;
    let (status, r) = app
        .post(
            ORG_A,
            "/v1/replica-bulk-deletions",
            json!({"info_code": MEDICAL, "major_version": "0002", "dataset": "0101"}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["deleted"], 7);
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 0);
    assert_eq!(app.count_rows(ORG_B, "replicas").await, 3);
    let (status, p) = app
        .post(
            ORG_A,
            "/v1/replica-bulk-deletions",
            json!({"info_code": MEDICAL, "major_version": "2", "dataset": "0101"}),
        )
        .await;
    assert_eq!((status, p["code"].as_str()), (400, Some("invalid-field")));
    // A business system (system_client only) may not delete in bulk.
    let res = app
        .api
        .http
        .post(app.api.url("/v1/replica-bulk-deletions"))
        .bearer_auth(app.env.token(ORG_B, &[chukan_auth::Role::SystemClient]))
        .json(&json!({"info_code": MEDICAL, "major_version": "0002", "dataset": "0101"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(app.count_rows(ORG_B, "replicas").await, 3);
}

#[actix_rt::test]
async fn replica_counts_are_published_by_item_version_and_dataset() {
    let app = spawn_app().await;
    app.upload_ok(ORG_A, medical_list(0..12)).await;
    app.run(Job::ReplicaUploads).await;
    app.post(
        ORG_A,
        "/v1/replica-bulk-deletions",
        json!({"info_code": MEDICAL, "major_version": "0002", "dataset": "0101"}),
    )
    .await;
    chukan_testkit::wait_until(
        std::time::Duration::from_secs(15),
        "count events",
        || async {
            app.counts.lock().unwrap().iter().any(|d| {
                ReplicaCountChanged::decode(d.body.as_slice())
                    .is_ok_and(|e| e.count == 0 && e.delta == -12)
            })
        },
    )
    .await
    .unwrap();
    let events: Vec<ReplicaCountChanged> = app
        .counts
        .lock()
        .unwrap()
        .iter()
        .map(|d| ReplicaCountChanged::decode(d.body.as_slice()).unwrap())
        .collect();
    let last_up = events.iter().filter(|e| e.delta > 0).map(|e| e.count).max();
    assert_eq!(last_up, Some(12));
    assert!(events.iter().all(|e| e.tenant == ORG_A
        && e.info_code == MEDICAL
        && e.major_version == "0002"
        && e.dataset == "0101"));
}

#[actix_rt::test]
async fn heavy_items_are_refused_outside_the_group_slot_with_the_next_slot() {
    let app = spawn_app().await; // Tuesday 10:00; group A slots: Mon 08–12, Thu 17–22
    let tax = Rec {
        info_code: LOCAL_TAX.into(),
        version: "0002".into(),
        payload: vec![
            item("I0001", "2026"),
            item("I0002", "120000"),
            item("I0003", "5000"),
            item("I0006", "1"),
        ],
        ..Rec::medical(1)
    };
    let res = app
        .upload(ORG_A, list(&[Rec::medical(0), tax.clone()]))
        .await;
    assert_eq!(res.status(), 409);
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["code"], "upload-slot-closed", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("2026-11-26 17:00"),
        "{p}"
    );
    assert_eq!(p["available_at"], "2026-11-26T08:00:00+00:00");
    assert_eq!(app.count_rows(ORG_A, "uploads").await, 0);
    // Light items are not held to the slot.
    app.upload_ok(ORG_A, medical_list(0..2)).await;
    // Inside the slot the heavy item is accepted.
    app.clock.set(japan(2026, 11, 26, 18, 0));
    app.upload_ok(ORG_A, list(&[tax])).await;
    let (_, slots) = app.get(ORG_A, "/v1/replica-upload-slots").await;
    assert_eq!(slots["group"], "A");
    assert_eq!(slots["slots"].as_array().unwrap().len(), 2);
}

#[actix_rt::test]
async fn planned_outage_days_block_every_upload() {
    let app = spawn_app_with(tuesday_10(), |s| {
        s.calendar.planned_outages = vec!["2026-11-24".into()];
    })
    .await;
    let res = app.upload(ORG_A, medical_list(0..2)).await;
    assert_eq!(res.status(), 409);
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["code"], "upload-day-blocked");
    assert!(p["detail"].as_str().unwrap().contains("2026-11-25"));
    assert_eq!(app.count_rows(ORG_A, "uploads").await, 0);
}

#[actix_rt::test]
async fn an_organisation_without_settings_gets_a_clear_answer() {
    let app = spawn_app().await;
    let res = app.upload("4010000000000004", medical_list(0..1)).await;
    assert_eq!(res.status(), 409);
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["code"], "organisation-not-configured");
}
