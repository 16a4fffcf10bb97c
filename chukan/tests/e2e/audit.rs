//! The provision-record log (情報提供等記録) through the real binaries: exchanges are recorded,
//! a disclosure change is a new record, `chukan audit verify` checks the whole log and names
//! a row altered behind the service's back, and `chukan audit purge` cuts without breaking it.

use std::process::{Output, Stdio};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Stack, chukan};
use crate::inquiry::{
    NHI_AFFAIR, NHI_BENEFIT, answered, inquiry, poll, recorded_events, send,
    two_municipalities_with,
};
use crate::{ORG_A, ORG_B};

fn audit_cli(stack: &Stack, args: &[&str]) -> Output {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    chukan(&stack.env, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Runs `sql` on the database directly, as its owner (who may bypass row-level security, so
/// the statement names the tenant itself).
async fn owner_sql(stack: &Stack, tenant: &str, sql: &str) {
    let (client, conn) =
        tokio_postgres::connect(&stack.settings.database.url, tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "SELECT set_config('chukan.tenant', '{tenant}', false); {sql}"
        ))
        .await
        .unwrap();
}

async fn tree_size(stack: &Stack, staff: &str) -> Option<i64> {
    let (status, head) = stack
        .call(Method::GET, staff, "/v1/records/tree-head", None)
        .await;
    (status == 200)
        .then(|| head["tree_size"].as_i64())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_the_whole_log_and_names_the_row_altered_in_the_database() {
    let (stack, token_a, _) =
        two_municipalities_with(&[("CHUKAN__AUDIT__TREE_HEAD_INTERVAL_SECS", "1")]).await;
    for as_of in ["2017-02-28", "2017-02-27"] {
        let sent = send(&stack, &token_a, inquiry((NHI_AFFAIR, NHI_BENEFIT), as_of)).await;
        let result = answered(&stack, &token_a, sent["id"].as_str().unwrap()).await;
        assert_eq!(result["status"], "provided", "{result}");
    }
    recorded_events(&stack, ORG_A, 4).await;
    recorded_events(&stack, ORG_B, 2).await;

    // B's staff hides one of B's records from the resident portal: a new record, not an edit.
    let staff_b = stack.staff_token(ORG_B).await;
    let (_, page) = stack.call(Method::GET, &staff_b, "/v1/records", None).await;
    let target = page["items"][0]["record_id"].as_str().unwrap().to_owned();
    let (status, changed) = stack
        .call(
            Method::POST,
            &staff_b,
            &format!("/v1/records/{target}/disclosure"),
            Some(json!({"non_disclosure": true})),
        )
        .await;
    assert_eq!(status, 201, "{changed}");
    assert_eq!(changed["reason"], "不開示設定変更");
    let events = recorded_events(&stack, ORG_B, 3).await;
    assert_eq!(
        events,
        ["disclosure.changed", "provision.made", "provision.made"]
    );

    let staff_a = stack.staff_token(ORG_A).await;
    poll(30, "tree heads over both logs", || async {
        match (
            tree_size(&stack, &staff_a).await,
            tree_size(&stack, &staff_b).await,
        ) {
            (Some(4), Some(3)) => Ok(()),
            seen => Err(json!(format!("{seen:?}"))),
        }
    })
    .await;
    for org in [ORG_A, ORG_B] {
        let out = audit_cli(&stack, &["verify", "--tenant", org]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("OK"), "{stdout}");
    }

    // Someone with database access rewrites A's third record (seq 2) behind the service.
    let (_, page) = stack
        .call(
            Method::POST,
            &staff_a,
            "/v1/records/search",
            Some(serde_json::json!({"limit": 10})),
        )
        .await;
    let third = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["seq"] == 2)
        .unwrap()["record_id"]
        .as_str()
        .unwrap()
        .to_owned();
    owner_sql(
        &stack,
        ORG_A,
        &format!(
            "UPDATE audit.records SET \
             leaf_enc = (SELECT leaf_enc FROM audit.records WHERE tenant_id = '{ORG_A}' AND seq = 0), \
             leaf_hash = (SELECT leaf_hash FROM audit.records WHERE tenant_id = '{ORG_A}' AND seq = 0) \
             WHERE tenant_id = '{ORG_A}' AND seq = 2"
        ),
    )
    .await;
    let out = audit_cli(&stack, &["verify", "--tenant", ORG_A]);
    assert!(!out.status.success(), "verify must fail on a tampered log");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("seq 2") && stderr.contains(&third),
        "names the first record that does not match: {stderr}"
    );
    let out = audit_cli(&stack, &["verify", "--tenant", ORG_A, "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["first_mismatch"]["seq"], 2, "{report}");
    assert_eq!(report["first_mismatch"]["record_id"], third.as_str());
    // B's log is untouched and still verifies.
    assert!(
        audit_cli(&stack, &["verify", "--tenant", ORG_B])
            .status
            .success()
    );

    // Retention: cutting all of B's records (a cutoff in the future) keeps B's log verifiable.
    let out = audit_cli(
        &stack,
        &[
            "purge",
            "--tenant",
            ORG_B,
            "--before",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = audit_cli(&stack, &["verify", "--tenant", ORG_B, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 0);
    assert_eq!(report["log_size"], 3);
    assert_eq!(report["checkpoint"]["size"], 3);
}
