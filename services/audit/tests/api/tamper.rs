//! An insider with database access edits the searchable copy of a record (the columns beside
//! the sealed leaf) and leaves the leaf alone. Verify names the record and the column; the
//! resident's disclosable view and staff search go by the leaf, never by the edited column.

use serde_json::json;

use crate::{disclosure::disclosable_ids, helpers::*};

const PROC: &str = "JT00000000000001";
const RESIDENT: &str = "000000000012345";
const OTHER: &str = "000000000099999";

/// Every searchable column of `audit.records`, with an edit that changes its value.
const EDITS: [(&str, &str); 18] = [
    ("event", "'provision.refused'"),
    ("inquirer_org", "'9999999999999999'"),
    ("provider_org", "'9999999999999999'"),
    ("affair_code", "'JM99999999999999'"),
    ("procedure_code", "'JT99999999999999'"),
    ("info_code", "'TM00000000000031'"),
    ("serial_no", "serial_no || '9'"),
    ("branch_no", "branch_no + 1"),
    ("permit_id", "permit_id || 'x'"),
    ("addressee_bidx", "sha256(addressee_bidx)"),
    ("requested_at", "requested_at + interval '1 second'"),
    ("provided_at", "provided_at + interval '1 second'"),
    ("non_disclosure", "NOT non_disclosure"),
    ("outcome", "'refused'"),
    ("at", "at + interval '1 millisecond'"),
    ("target_record_id", "gen_random_uuid()"),
    ("reason", "reason || 'x'"),
    ("actor", "actor || 'x'"),
];

/// The record `id` as staff search shows it (the resident's records, by body).
async fn staff_sees(app: &TestApp, id: &str) -> serde_json::Value {
    let (status, page) = app
        .post(
            ORG_A,
            "/v1/records/search",
            &json!({ "addressee": RESIDENT }),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["record_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} in {page}"))
}

#[actix_rt::test]
async fn verify_names_the_record_and_the_column_for_every_searchable_column_edited() {
    let app = spawn_app().await;
    let rs: Vec<_> = (0..4)
        .map(|_| record(ORG_A, RESIDENT, PEER_1, PROC))
        .collect();
    app.append_all(&rs, 4).await;
    app.sign().await;
    assert!(app.verify(ORG_A).await.is_ok());
    let target = &rs[2];
    // The row as it was, kept aside to put each column back after its edit.
    app.tamper(
        ORG_A,
        "CREATE TABLE public.kept AS SELECT * FROM audit.records WHERE seq = 2",
    )
    .await;
    let columns: Vec<&str> = EDITS.iter().map(|(c, _)| *c).collect();
    assert_eq!(columns, chukan_audit::searchable::COLUMNS, "every column");
    for (column, edit) in EDITS {
        app.tamper(
            ORG_A,
            &format!("UPDATE audit.records SET {column} = {edit} WHERE seq = 2"),
        )
        .await;
        let report = app.verify(ORG_A).await;
        assert!(!report.is_ok(), "{column}: {report:?}");
        let bad = report.first_mismatch.clone().expect(column);
        assert_eq!(
            (bad.seq, bad.reason, bad.column),
            (2, "column-differs", Some(column)),
            "{column}"
        );
        assert_eq!(bad.record_id.to_string(), target.record_id);
        app.tamper(
            ORG_A,
            &format!(
                "UPDATE audit.records r SET {column} = k.{column} FROM public.kept k \
                 WHERE r.seq = k.seq"
            ),
        )
        .await;
        let report = app.verify(ORG_A).await;
        assert!(report.is_ok(), "{column} put back: {report:?}");
    }
}

#[actix_rt::test]
async fn the_residents_view_and_staff_search_go_by_the_leaf_not_by_edited_columns() {
    let app = spawn_app().await;
    let shown = record(ORG_A, RESIDENT, PEER_1, PROC);
    let mut hidden = record(ORG_A, RESIDENT, PEER_2, PROC);
    hidden.non_disclosure = true;
    let others = record(ORG_A, OTHER, PEER_1, PROC);
    let unreadable = record(ORG_A, RESIDENT, PEER_2, PROC);
    app.append_all(
        &[
            shown.clone(),
            hidden.clone(),
            others.clone(),
            unreadable.clone(),
        ],
        4,
    )
    .await;
    let mut before = disclosable_ids(&app, ORG_A, RESIDENT).await;
    before.sort();
    let mut want = vec![shown.record_id.clone(), unreadable.record_id.clone()];
    want.sort();
    assert_eq!(before, want);

    // Hide a disclosed record, reveal a hidden one, re-file another resident's record under
    // this resident, and make one leaf unreadable (swapped in from another row).
    let edits = [
        format!(
            "UPDATE audit.records SET non_disclosure = true WHERE record_id = '{}'",
            shown.record_id
        ),
        format!(
            "UPDATE audit.records SET non_disclosure = false, info_code = 'TM00000000000031' \
             WHERE record_id = '{}'",
            hidden.record_id
        ),
        format!(
            "UPDATE audit.records SET addressee_bidx = \
             (SELECT addressee_bidx FROM audit.records WHERE record_id = '{}') \
             WHERE record_id = '{}'",
            shown.record_id, others.record_id
        ),
        format!(
            "UPDATE audit.records SET leaf_enc = \
             (SELECT leaf_enc FROM audit.records WHERE record_id = '{}') \
             WHERE record_id = '{}'",
            shown.record_id, unreadable.record_id
        ),
    ];
    for sql in &edits {
        app.tamper(ORG_A, sql).await;
    }
    // The resident still sees exactly what the leaves say may be shown: the disclosed record
    // (not hidden by the edit), not the hidden one, not someone else's, and not a record
    // whose leaf cannot be read.
    assert_eq!(
        disclosable_ids(&app, ORG_A, RESIDENT).await,
        vec![shown.record_id.clone()]
    );

    // Staff see the leaf's values, and which rows were edited.
    let item = |id: String| {
        let app = &app;
        async move { staff_sees(app, &id).await }
    };
    let s = item(shown.record_id.clone()).await;
    assert_eq!(s["integrity"], "column-differs:non_disclosure");
    assert_eq!(s["non_disclosure"], false, "as the leaf says");
    assert_eq!(s["non_disclosure_now"], false);
    let h = item(hidden.record_id.clone()).await;
    assert_eq!(h["integrity"], "column-differs:info_code");
    assert_eq!(h["info_code"], "TM00000000000002", "as the leaf says");
    assert_eq!(h["non_disclosure"], true);
    let o = item(others.record_id.clone()).await;
    assert_eq!(o["integrity"], "column-differs:addressee_bidx");
    assert_eq!(
        item(unreadable.record_id.clone()).await["integrity"],
        "leaf-does-not-open"
    );
    // A change cannot be made on top of an edited row.
    let (status, body) = app
        .post(
            ORG_A,
            &format!("/v1/records/{}/disclosure", hidden.record_id),
            &json!({"non_disclosure": false}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("record-does-not-verify")),
        "{body}"
    );
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM audit.records")
            .await,
        4,
        "nothing appended"
    );
}

#[actix_rt::test]
async fn an_edited_change_record_does_not_change_what_the_resident_sees() {
    let app = spawn_app().await;
    let mut hidden = record(ORG_A, RESIDENT, PEER_1, PROC);
    hidden.non_disclosure = true;
    app.append_all(std::slice::from_ref(&hidden), 1).await;
    let (status, body) = app
        .post(
            ORG_A,
            &format!("/v1/records/{}/disclosure", hidden.record_id),
            &json!({"non_disclosure": false}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        disclosable_ids(&app, ORG_A, RESIDENT).await,
        vec![hidden.record_id.clone()]
    );
    // The change record's column flipped back to "hidden": the leaf still says "disclosed".
    app.tamper(
        ORG_A,
        "UPDATE audit.records SET non_disclosure = true WHERE event = 'disclosure.changed'",
    )
    .await;
    assert_eq!(
        disclosable_ids(&app, ORG_A, RESIDENT).await,
        vec![hidden.record_id.clone()]
    );
    let original = staff_sees(&app, &hidden.record_id).await;
    assert_eq!(original["non_disclosure_now"], false, "{original}");
    assert_eq!(original["integrity"], "change-column-differs");
    let report = app.verify(ORG_A).await;
    let bad = report.first_mismatch.unwrap();
    assert_eq!(
        (bad.seq, bad.reason, bad.column),
        (1, "column-differs", Some("non_disclosure"))
    );
}
