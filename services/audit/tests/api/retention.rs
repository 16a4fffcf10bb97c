//! Retention: records past the period are purged, the tree is checkpointed at the cut, and the
//! log still verifies — by the service's full check and by independent proof verification.

use chrono::{Duration, Months, Utc};

use crate::helpers::*;

const PROC: &str = "JT00000000000001";

fn aged(i: usize, years: u32) -> chukan_proto::AuditRecord {
    let mut r = record(ORG_A, &format!("{:015}", 800_000 + i), PEER_1, PROC);
    let at = Utc::now()
        .checked_sub_months(Months::new(years * 12))
        .unwrap()
        + Duration::seconds(i as i64);
    r.at_ms = at.timestamp_millis();
    r.requested_at_ms = r.at_ms;
    r.provided_at_ms = r.at_ms;
    r
}

#[actix_rt::test]
async fn a_purge_keeps_the_log_verifiable_and_later_proofs_valid() {
    let app = spawn_app().await;
    // 11 records older than 7 years, then 6 recent ones; heads before, at and after the cut.
    let old: Vec<_> = (0..11).map(|i| aged(i, 8)).collect();
    let new: Vec<_> = (0..6).map(|i| aged(100 + i, 0)).collect();
    app.append_all(&old[..5], 5).await;
    app.sign().await;
    app.append_all(&old[5..], 11).await;
    app.append_all(&new[..3], 14).await;
    app.sign().await;
    let (_, head_before) = app.get(ORG_A, "/v1/records/tree-head").await;

    let cutoff = chukan_audit::retention::cutoff(&app.state).unwrap();
    let report = chukan_audit::retention::purge_tenant(&app.state, ORG_A, cutoff)
        .await
        .unwrap();
    assert_eq!((report.purged, report.checkpoint_size), (11, Some(11)));
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM audit.records")
            .await,
        3
    );
    assert_eq!(
        app.scalar_i64(
            ORG_A,
            "SELECT count(*) FROM audit.nodes WHERE (idx + 1) * (1::bigint << level) <= 11"
        )
        .await,
        3,
        "only the cut's right edge ([0,8), [8,10), [10,11)) is kept inside the cut"
    );
    // Purging again finds nothing more to cut.
    let again = chukan_audit::retention::purge_tenant(&app.state, ORG_A, cutoff)
        .await
        .unwrap();
    assert_eq!(again.purged, 0);

    let report = app.verify(ORG_A).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 3);
    assert_eq!(report.checkpoint.as_ref().map(|c| c.size), Some(11));
    assert_eq!(report.tree_heads_before_checkpoint, 1, "the head at 5");

    // The log grows on from the cut; proofs for remaining records verify independently.
    app.append_all(&new[3..], 6).await;
    app.sign().await;
    let (_, head) = app.get(ORG_A, "/v1/records/tree-head").await;
    assert_eq!(head["tree_size"], 17);
    let root = unhex(&head["root_hash"]);
    for r in &new {
        let (status, p) = app
            .get(ORG_A, &format!("/v1/records/{}/proof", r.record_id))
            .await;
        assert_eq!(status, 200, "{p}");
        let path: Vec<[u8; 32]> = p["path"].as_array().unwrap().iter().map(unhex).collect();
        let leaf = independent_leaf_hash(r);
        assert!(independent_inclusion(
            p["leaf_index"].as_u64().unwrap(),
            17,
            &leaf,
            &path,
            &root
        ));
    }
    // Consistency from the head signed before the purge (size 14 ≥ cut) still proves.
    let (status, c) = app
        .get(ORG_A, "/v1/records/consistency?from=14&to=17")
        .await;
    assert_eq!(status, 200, "{c}");
    let proof: Vec<[u8; 32]> = c["proof"].as_array().unwrap().iter().map(unhex).collect();
    assert!(independent_consistency(
        14,
        17,
        &unhex(&head_before["root_hash"]),
        &root,
        &proof
    ));
    // A purged record has no proof; a size before the cut has no consistency proof.
    let (status, _) = app
        .get(ORG_A, &format!("/v1/records/{}/proof", old[0].record_id))
        .await;
    assert_eq!(status, 404);
    let (status, c) = app.get(ORG_A, "/v1/records/consistency?from=5&to=17").await;
    assert_eq!(
        (status, c["code"].as_str()),
        (422, Some("before-checkpoint"))
    );

    let report = app.verify(ORG_A).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 6);

    // A forged checkpoint edge is caught. Its first byte's bits are flipped: overwriting it
    // with a constant left it as it was once in 256 runs (a CI failure).
    app.tamper(
        ORG_A,
        "UPDATE audit.checkpoints SET frontier = set_byte(frontier, 0, get_byte(frontier, 0) # 255)",
    )
    .await;
    let report = app.verify(ORG_A).await;
    assert!(!report.is_ok());
    assert!(
        report.checkpoint.as_ref().and_then(|c| c.problem).is_some(),
        "{report:?}"
    );
}

#[actix_rt::test]
async fn nothing_within_the_period_is_purged_and_other_tenants_are_untouched() {
    let app = spawn_app().await;
    let recent: Vec<_> = (0..4).map(|i| aged(i, 6)).collect();
    app.append_all(&recent, 4).await;
    let mut b = aged(50, 9);
    b.tenant = ORG_B.into();
    app.append_all(&[b], 1).await;
    let cutoff = chukan_audit::retention::cutoff(&app.state).unwrap();
    let report = chukan_audit::retention::purge_tenant(&app.state, ORG_A, cutoff)
        .await
        .unwrap();
    assert_eq!((report.purged, report.checkpoint_size), (0, None));
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM audit.records")
            .await,
        4
    );
    assert_eq!(
        app.scalar_i64(ORG_B, "SELECT count(*) FROM audit.records")
            .await,
        1,
        "a purge of one tenant leaves another's overdue records alone"
    );
    let all = chukan_audit::retention::purge_all(&app.state, cutoff)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|r| r.purged).sum::<u64>(), 1);
    let report = app.verify(ORG_B).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.records, report.log_size), (0, 1));
}

#[actix_rt::test]
async fn a_row_deleted_behind_the_service_is_named_as_a_gap() {
    let app = spawn_app().await;
    let rs: Vec<_> = (0..5).map(|i| aged(i, 0)).collect();
    app.append_all(&rs, 5).await;
    app.sign().await;
    assert!(app.verify(ORG_A).await.is_ok());
    app.tamper(ORG_A, "DELETE FROM audit.records WHERE seq = 3")
        .await;
    let report = app.verify(ORG_A).await;
    assert!(!report.is_ok());
    assert_eq!(report.records, 4);
    let gap = report.first_mismatch.unwrap();
    assert_eq!((gap.seq, gap.reason), (3, "seq-gap"));
}
