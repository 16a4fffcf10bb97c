//! Daily quotas: what does not fit tonight is carried to the next night, never lost.

use chrono::Duration;
use chukan_provision::replica::jobs::Job;
use chukan_replica_list::{Limits, ListReader};

use crate::helpers::*;

/// Byte length of each entry of a list whose entries all have the same size.
async fn entry_bytes(list: &[u8]) -> i64 {
    let mut reader = ListReader::new(list, Limits::default());
    let first = reader.next_entry().await.unwrap().unwrap().byte_len;
    while let Some(e) = reader.next_entry().await.unwrap() {
        assert_eq!(
            e.byte_len, first,
            "entries must have one size for this test"
        );
    }
    first as i64
}

#[actix_rt::test]
async fn what_exceeds_the_byte_quota_is_carried_night_after_night_until_all_is_in() {
    let app = spawn_app().await;
    // A village of 1: byte cap = 1 × 100 % × 10 KB = 10,240 bytes a day.
    app.set_org(ORG_A, 1, Some('A'), false).await;
    let first = medical_list(0..40);
    let second = medical_list(40..45);
    let size = entry_bytes(&first).await;
    let per_night = 10_240 / size;
    assert!((2..40).contains(&per_night), "entry size {size}");

    let id1 = app.upload_ok(ORG_A, first).await;
    let id2 = app.upload_ok(ORG_A, second).await;
    let mut nights = 0;
    loop {
        nights += 1;
        app.run(Job::ReplicaUploads).await;
        let r1 = app.report(ORG_A, &id1).await;
        let r2 = app.report(ORG_A, &id2).await;
        let (_, quota) = app.get(ORG_A, "/v1/replica-quota").await;
        let applied = r1["registered"].as_i64().unwrap() + r2["registered"].as_i64().unwrap();
        // Each night applies exactly what fits and keeps the rest.
        assert_eq!(
            applied,
            (per_night * nights).min(45),
            "night {nights}: {r1} {r2}"
        );
        assert!(quota["used_bytes"].as_i64().unwrap() <= 10_240, "{quota}");
        assert_eq!(
            r1["carried"].as_i64().unwrap() + r2["carried"].as_i64().unwrap(),
            45 - applied,
            "night {nights}"
        );
        if applied == 45 {
            assert_eq!(r1["state"], "done");
            assert_eq!(r2["state"], "done");
            break;
        }
        // Order is kept: the later upload waits while the earlier one is unfinished.
        if r1["state"] == "carried" {
            assert_eq!(r2["registered"], 0);
            assert_eq!(r2["state"], "carried");
        }
        // Running again the same night adds nothing: tonight's quota is spent.
        app.run(Job::ReplicaUploads).await;
        assert_eq!(
            app.report(ORG_A, &id1).await["registered"],
            r1["registered"]
        );
        app.clock.advance(Duration::days(1));
        assert!(nights < 30, "never finished");
    }
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 45);
    let r1 = app.report(ORG_A, &id1).await;
    assert_eq!(r1["overwritten"], 0);
    assert!(r1["carried_nights"].as_i64().unwrap() >= 1);
}

#[actix_rt::test]
async fn quota_status_shows_caps_and_use() {
    let app = spawn_app().await;
    let (status, q) = app.get(ORG_A, "/v1/replica-quota").await;
    assert_eq!(status, 200);
    // 200,000 residents: 2,000,000 records and 2,000,000 KB a day (DOMAIN §5).
    assert_eq!(q["quota"]["records"], 2_000_000);
    assert_eq!(q["quota"]["bytes"], 2_000_000i64 * 1024);
    assert_eq!(q["used_records"], 0);
    app.upload_ok(ORG_A, medical_list(0..10)).await;
    app.run(Job::ReplicaUploads).await;
    let (_, q) = app.get(ORG_A, "/v1/replica-quota").await;
    assert_eq!(q["used_records"], 10);
    assert_eq!(q["remaining"]["records"], 2_000_000 - 10);
}

#[actix_rt::test]
async fn a_later_upload_waits_behind_a_carried_one_even_if_it_would_fit() {
    let app = spawn_app().await;
    let big = |n: u32| {
        let mut r = Rec::medical(n);
        r.key = format!("K{n:09}-{}", "x".repeat(50));
        r.payload.push(item("I0004", "12345678"));
        r.payload.push(item("I0005", "ABCDEFGHIJKLMNOPQRST"));
        r
    };
    let first = list(&(0..60).map(big).collect::<Vec<_>>());
    let second = medical_list(100..101);
    let (big_size, small_size) = (entry_bytes(&first).await, entry_bytes(&second).await);
    assert!(big_size > small_size);
    // A population whose byte cap leaves room for a small entry but not for a big one.
    let population = (1..200)
        .find(|p| {
            let cap = p * 10_240;
            cap / big_size < 60 && cap % big_size >= small_size
        })
        .expect("some population fits the case");
    app.set_org(ORG_A, population, Some('A'), false).await;
    let id1 = app.upload_ok(ORG_A, first).await;
    let id2 = app.upload_ok(ORG_A, second).await;
    app.run(Job::ReplicaUploads).await;
    let r1 = app.report(ORG_A, &id1).await;
    let r2 = app.report(ORG_A, &id2).await;
    assert_eq!(r1["state"], "carried", "{r1}");
    assert_eq!(r2["state"], "carried", "{r2}");
    assert_eq!(r2["registered"], 0);
    assert_eq!(r2["carried"], 1);
}

#[actix_rt::test]
async fn an_entry_no_empty_day_could_take_is_refused_with_its_reason_not_carried_for_ever() {
    let app = spawn_app().await;
    // A union (一部事務組合) of 1: 1 × 30 % × 10 KB = 3,072 bytes a day. Before the fix the
    // share was rounded down before multiplying: a cap of 0, and uploads carried for ever.
    app.set_org_of_kind(ORG_A, "union", 1, Some('A'), false)
        .await;
    let (_, q) = app.get(ORG_A, "/v1/replica-quota").await;
    assert_eq!(q["quota"]["bytes"], 3_072, "{q}");

    // The first entry is padded (whitespace inside its payload) past the whole day's cap.
    let list = String::from_utf8(medical_list(0..3)).unwrap().replacen(
        "<DuplicateCopyData><![CDATA[",
        &format!("<DuplicateCopyData><![CDATA[{}", " ".repeat(4_000)),
        1,
    );
    let list = list.into_bytes();
    let id = app.upload_ok(ORG_A, list).await;
    app.run(Job::ReplicaUploads).await;
    let report = app.report(ORG_A, &id).await;
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(report["rejected"], 1, "{report}");
    assert_eq!(report["registered"], 2, "{report}");
    assert_eq!(report["carried"], 0, "{report}");
    let (status, rejections) = app
        .get(ORG_A, &format!("/v1/replica-uploads/{id}/rejections"))
        .await;
    assert_eq!(status, 200);
    let rejections = rejections.as_array().unwrap();
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert_eq!(rejections[0]["code"], "exceeds-daily-quota");
    assert_eq!(rejections[0]["ordinal"], 1);
    let detail = rejections[0]["detail"].as_str().unwrap();
    assert!(detail.contains("3072"), "names the cap: {detail}");
    assert_eq!(app.count_rows(ORG_A, "replicas").await, 2);
}
