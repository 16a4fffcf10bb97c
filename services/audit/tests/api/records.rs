//! Appending exactly once, search, signed tree heads, proofs (checked by the independent
//! verifier in helpers), tamper detection and tenant isolation.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chukan_audit::verify_tenant;
use chukan_auth::Role;
use chukan_crypto::Vault;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};

use crate::helpers::*;

const PROC_1: &str = "JT00000000000001";
const PROC_2: &str = "JT00000000000002";

#[actix_rt::test]
async fn each_record_is_appended_once_whatever_the_bus_repeats() {
    let app = spawn_app().await;
    let before = chukan_audit::metrics::appended_counted("duplicate-record");
    let first = record(ORG_A, "123456789012345", PEER_1, PROC_1);
    let msg = app.publish(&first).await;
    // The same bus message again (a redelivery) and the same record under a new bus id.
    app.publish_msg(&msg).await;
    app.publish(&first).await;
    let others = [
        record(ORG_A, "123456789012345", PEER_1, PROC_1),
        record(ORG_A, "123456789012346", PEER_2, PROC_1),
    ];
    for r in &others {
        app.publish(r).await;
    }
    // Three distinct bus ids were applied (claimed) and the re-published record was skipped.
    wait_until("every distinct bus message claimed", || async {
        app.scalar_i64(ORG_A, "SELECT count(*) FROM audit.inbox")
            .await
            == 4
    })
    .await;
    wait_until("the re-published record skipped", || async {
        chukan_audit::metrics::appended_counted("duplicate-record") > before
    })
    .await;
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM audit.records")
            .await,
        3
    );
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT size FROM audit.logs").await,
        3
    );
    // Leaf indexes are gap-free from 0.
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT sum(seq)::bigint FROM audit.records")
            .await,
        3
    );
    let first_id = uuid::Uuid::parse_str(&first.record_id).unwrap();
    let mut client = app.env.ctx.db.get().await.unwrap();
    let tx = chukan_db::tenant_tx(&mut client, ORG_A).await.unwrap();
    let n: i64 = tx
        .query_one(
            "SELECT count(*) FROM audit.records WHERE record_id = $1",
            &[&first_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // The addressee never sits in the table in the clear.
    let raw: i64 = tx
        .query_one(
            "SELECT count(*) FROM audit.records WHERE position('123456789012345'::bytea in leaf_enc) > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw, 0);
}

#[actix_rt::test]
async fn records_are_found_by_addressee_and_by_counterpart_newest_first() {
    let app = spawn_app().await;
    let x = "100000000000001";
    let y = "100000000000002";
    let rs = [
        record(ORG_A, x, PEER_1, PROC_1),
        record(ORG_A, y, PEER_1, PROC_2),
        record(ORG_A, x, PEER_2, PROC_2),
    ];
    // Published one by one so the leaf order is known.
    for (i, r) in rs.iter().enumerate() {
        app.append_all(std::slice::from_ref(r), i as i64 + 1).await;
    }
    let ids = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["record_id"].as_str().unwrap().to_owned())
            .collect()
    };
    // The filters travel in the body: no resident's number in a URL.
    let search = |filters: Value| {
        let app = &app;
        async move { app.post(ORG_A, "/v1/records/search", &filters).await }
    };
    let (status, body) = search(json!({ "addressee": x })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids(&body),
        vec![rs[2].record_id.clone(), rs[0].record_id.clone()]
    );
    assert!(!body.to_string().contains(x), "no addressee in the answer");
    // The deprecated query form answers the same for one more release.
    let (status, old) = app.get(ORG_A, &format!("/v1/records?addressee={x}")).await;
    assert_eq!((status, ids(&old)), (200, ids(&body)));

    let (_, body) = search(json!({ "counterpart": PEER_1 })).await;
    assert_eq!(
        ids(&body),
        vec![rs[1].record_id.clone(), rs[0].record_id.clone()]
    );

    let (_, body) = search(json!({ "counterpart": PEER_1, "procedure_code": PROC_2 })).await;
    assert_eq!(ids(&body), vec![rs[1].record_id.clone()]);

    // Paging: newest first, then older below the cursor.
    let (_, page1) = search(json!({ "limit": 2 })).await;
    assert_eq!(
        ids(&page1),
        vec![rs[2].record_id.clone(), rs[1].record_id.clone()]
    );
    let after = page1["next_after"].as_i64().unwrap();
    let (_, page2) = search(json!({ "limit": 2, "after": after })).await;
    assert_eq!(ids(&page2), vec![rs[0].record_id.clone()]);

    let (status, body) = search(json!({ "addressee": "abc" })).await;
    assert_eq!(status, 400, "{body}");
    // Business systems are not among the readers.
    let client = app.env.token(ORG_A, &[Role::SystemClient]);
    let (status, _) = app.get_with(&client, "/v1/records").await;
    assert_eq!(status, 403);
    let admin = app.env.token(ORG_A, &[Role::SystemAdmin]);
    let (status, _) = app.get_with(&admin, "/v1/records").await;
    assert_eq!(status, 200);
}

fn check_signature(app: &TestApp, tenant: &str, head: &Value) -> bool {
    let signer = chukan_audit::signer(&app.env.settings.audit).unwrap();
    let key = VerifyingKey::from_bytes(&signer.verifying_key_bytes()).unwrap();
    let msg = format!(
        "chukan-audit-sth/v1|{tenant}|{}|{}|{}",
        head["tree_size"].as_i64().unwrap(),
        head["root_hash"].as_str().unwrap(),
        head["signed_at_ms"].as_i64().unwrap()
    );
    let sig: [u8; 64] = STANDARD
        .decode(head["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    key.verify_strict(msg.as_bytes(), &Signature::from_bytes(&sig))
        .is_ok()
}

fn hashes(v: &Value) -> Vec<[u8; 32]> {
    v.as_array().unwrap().iter().map(unhex).collect()
}

#[actix_rt::test]
async fn signed_tree_heads_inclusion_and_consistency_proofs_verify_independently() {
    let app = spawn_app().await;
    let (status, body) = app.get(ORG_A, "/v1/records/tree-head").await;
    assert_eq!(status, 409, "no head before anything is signed: {body}");

    let first: Vec<_> = (0..5)
        .map(|i| record(ORG_A, &format!("20000000000000{i}"), PEER_1, PROC_1))
        .collect();
    app.append_all(&first, 5).await;
    app.sign().await;
    let (status, head5) = app.get(ORG_A, "/v1/records/tree-head").await;
    assert_eq!(status, 200, "{head5}");
    assert_eq!(head5["tree_size"], 5);
    assert!(check_signature(&app, ORG_A, &head5));
    // A head presented as another tenant's does not verify.
    assert!(!check_signature(&app, ORG_B, &head5));
    let root5 = unhex(&head5["root_hash"]);

    for r in &first {
        let (status, proof) = app
            .get(ORG_A, &format!("/v1/records/{}/proof", r.record_id))
            .await;
        assert_eq!(status, 200, "{proof}");
        let leaf = unhex(&proof["leaf_hash"]);
        // The documented leaf encoding recomputes the stored leaf hash.
        assert_eq!(leaf, independent_leaf_hash(r));
        let index = proof["leaf_index"].as_u64().unwrap();
        let path = hashes(&proof["path"]);
        assert_eq!(proof["tree_head"]["root_hash"], head5["root_hash"]);
        assert!(independent_inclusion(index, 5, &leaf, &path, &root5));
        assert!(!independent_inclusion(
            (index + 1) % 5,
            5,
            &leaf,
            &path,
            &root5
        ));
    }

    let more: Vec<_> = (0..4)
        .map(|i| record(ORG_A, &format!("30000000000000{i}"), PEER_2, PROC_2))
        .collect();
    app.append_all(&more, 9).await;
    // Appended after the newest head: no head proves them yet, and the answer says so.
    let (status, early) = app
        .get(ORG_A, &format!("/v1/records/{}/proof", more[0].record_id))
        .await;
    assert_eq!(status, 409, "{early}");
    assert_eq!(early["code"], "record-not-yet-signed");
    app.sign().await;
    let (_, head9) = app.get(ORG_A, "/v1/records/tree-head").await;
    assert_eq!(head9["tree_size"], 9);
    assert!(check_signature(&app, ORG_A, &head9));
    let root9 = unhex(&head9["root_hash"]);

    let (status, c) = app.get(ORG_A, "/v1/records/consistency?from=5&to=9").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["from_tree_head"]["root_hash"], head5["root_hash"]);
    let proof = hashes(&c["proof"]);
    assert!(independent_consistency(5, 9, &root5, &root9, &proof));
    let mut forged = root5;
    forged[0] ^= 1;
    assert!(!independent_consistency(5, 9, &forged, &root9, &proof));

    // An old record proven against the newer head, and a new one against the old size fails.
    let (_, p) = app
        .get(ORG_A, &format!("/v1/records/{}/proof", first[1].record_id))
        .await;
    assert_eq!(p["tree_size"], 9);
    let index = p["leaf_index"].as_u64().unwrap();
    assert!(index < 5, "published before the first head");
    assert!(independent_inclusion(
        index,
        9,
        &unhex(&p["leaf_hash"]),
        &hashes(&p["path"]),
        &root9
    ));
    let (status, _) = app
        .get(
            ORG_A,
            &format!("/v1/records/{}/proof?tree_size=5", more[0].record_id),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = app.get(ORG_A, "/v1/records/consistency?from=5&to=10").await;
    assert_eq!(status, 422);

    // Nothing grew: no new head.
    app.sign().await;
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM audit.tree_heads")
            .await,
        2
    );
}

#[actix_rt::test]
async fn the_signer_signs_by_itself_when_a_log_grew_by_the_configured_count() {
    let app = spawn_app_with(|s| s.audit.tree_head_every_records = 3).await;
    let rs: Vec<_> = (0..3)
        .map(|i| record(ORG_A, &format!("40000000000000{i}"), PEER_1, PROC_1))
        .collect();
    for r in &rs {
        app.publish(r).await;
    }
    wait_until("a head of size 3 signed without a tick", || async {
        app.scalar_i64(ORG_A, "SELECT coalesce(max(size), 0) FROM audit.tree_heads")
            .await
            == 3
    })
    .await;
    let (_, head) = app.get(ORG_A, "/v1/records/tree-head").await;
    assert!(check_signature(&app, ORG_A, &head));
}

#[actix_rt::test]
async fn verify_tenant_names_the_first_tampered_record() {
    let app = spawn_app().await;
    let rs: Vec<_> = (0..6)
        .map(|i| record(ORG_A, &format!("50000000000000{i}"), PEER_1, PROC_1))
        .collect();
    app.append_all(&rs[..4], 4).await;
    app.sign().await;
    app.append_all(&rs[4..], 6).await;
    app.sign().await;
    let vault = Vault::new(app.env.ctx.kek.clone(), chukan_audit::SCHEMA);
    let verifiers = chukan_audit::verifiers(&app.env.settings.audit).unwrap();
    let verify = || async {
        let mut client = app.env.ctx.db.get().await.unwrap();
        verify_tenant(&mut client, &vault, &verifiers, ORG_A)
            .await
            .unwrap()
    };
    let report = verify().await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 6);
    assert_eq!(report.tree_heads, 2);

    let owner = app.env.owner_pool().unwrap();
    let mut oc = owner.get().await.unwrap();
    let tx = chukan_db::tenant_tx(&mut oc, ORG_A).await.unwrap();
    tx.execute(
        "UPDATE audit.records SET leaf_hash = sha256(leaf_hash) WHERE seq = 4",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let report = verify().await;
    let bad = report.first_mismatch.clone().unwrap();
    assert_eq!((bad.seq, bad.reason), (4, "leaf-hash-differs"));
    assert_eq!(bad.record_id.to_string(), rs[4].record_id);

    // Sealed bytes swapped in from another row do not open: an earlier record is now first.
    let tx = chukan_db::tenant_tx(&mut oc, ORG_A).await.unwrap();
    tx.execute(
        "UPDATE audit.records SET leaf_enc = (SELECT leaf_enc FROM audit.records WHERE seq = 0) \
         WHERE seq = 2",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let report = verify().await;
    let bad = report.first_mismatch.clone().unwrap();
    assert_eq!((bad.seq, bad.reason), (2, "leaf-does-not-open"));
    assert!(!report.is_ok());

    // A rewritten tree head root is caught by its signature.
    let tx = chukan_db::tenant_tx(&mut oc, ORG_A).await.unwrap();
    tx.execute(
        "UPDATE audit.tree_heads SET root = sha256(root) WHERE size = 4",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let report = verify().await;
    assert!(
        report
            .bad_tree_heads
            .iter()
            .any(|h| h.size == 4 && h.reason == "signature-invalid"),
        "{report:?}"
    );
}

#[actix_rt::test]
async fn another_tenant_sees_none_of_the_records_or_proofs() {
    let app = spawn_app().await;
    let r = record(ORG_A, "600000000000001", PEER_1, PROC_1);
    app.append_all(std::slice::from_ref(&r), 1).await;
    app.sign().await;
    let (status, _) = app
        .get(ORG_A, &format!("/v1/records/{}/proof", r.record_id))
        .await;
    assert_eq!(status, 200);

    let (status, body) = app.get(ORG_B, "/v1/records").await;
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 0);
    let (status, _) = app
        .get(ORG_B, &format!("/v1/records/{}/proof", r.record_id))
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.get(ORG_B, "/v1/records/tree-head").await;
    assert_eq!(status, 409);
    let (status, _) = app.get(ORG_B, "/v1/records/consistency?from=1&to=1").await;
    assert_eq!(status, 422);

    // A record whose body names another tenant than its header is refused, not stored.
    let mut forged = record(ORG_A, "600000000000002", PEER_1, PROC_1);
    forged.tenant = ORG_B.into();
    let msg = chukan_mq::OutgoingMessage::new(
        ORG_A,
        chukan_proto::AUDIT_RECORD,
        chukan_proto::Message::encode_to_vec(&forged),
    );
    app.publish_msg(&msg).await;
    let last = record(ORG_A, "600000000000003", PEER_1, PROC_1);
    app.append_all(std::slice::from_ref(&last), 2).await;
    assert_eq!(
        app.scalar_i64(ORG_B, "SELECT count(*) FROM audit.records")
            .await,
        0
    );
}

#[test]
fn the_openapi_document_describes_every_route() {
    let doc = serde_json::to_value(chukan_audit::openapi()).unwrap();
    for path in [
        "/v1/records",
        "/v1/records/{record_id}/proof",
        "/v1/records/tree-head",
        "/v1/records/consistency",
    ] {
        let op = &doc["paths"][path]["get"];
        assert!(op["description"].is_string(), "{path} undocumented");
        assert!(op["responses"]["200"].is_object(), "{path} has no 200");
    }
}

#[actix_rt::test]
async fn concurrent_appends_leave_a_gap_free_log_that_verifies() {
    let app = spawn_app().await;
    let a: Vec<_> = (0..40)
        .map(|i| record(ORG_A, &format!("7000000000000{i:02}"), PEER_1, PROC_1))
        .collect();
    let b: Vec<_> = (0..10)
        .map(|i| record(ORG_B, &format!("8000000000000{i:02}"), PEER_2, PROC_2))
        .collect();
    for r in a.iter().chain(&b) {
        app.publish(r).await;
    }
    for (tenant, n) in [(ORG_A, 40), (ORG_B, 10)] {
        wait_until("all appended", || async {
            app.scalar_i64(tenant, "SELECT count(*) FROM audit.records")
                .await
                == n
        })
        .await;
        assert_eq!(
            app.scalar_i64(tenant, "SELECT max(seq) + 1 FROM audit.records")
                .await,
            n
        );
    }
    app.sign().await;
    let vault = Vault::new(app.env.ctx.kek.clone(), chukan_audit::SCHEMA);
    let verifiers = chukan_audit::verifiers(&app.env.settings.audit).unwrap();
    for tenant in [ORG_A, ORG_B] {
        let mut client = app.env.ctx.db.get().await.unwrap();
        let report = verify_tenant(&mut client, &vault, &verifiers, tenant)
            .await
            .unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.tree_heads, 1);
    }
}
