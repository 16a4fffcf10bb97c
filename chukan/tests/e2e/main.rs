#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end through the real binary: two municipalities, relay, and nws-sim as its own
//! process, over the machine's PostgreSQL and RabbitMQ.

mod access;
mod audit;
mod backup;
mod browser;
mod cells;
mod console;
mod edge;
mod helpers;
mod inquiry;
mod lease;
mod notice;
mod replica;
mod selfinfo;
mod tls;
mod traces;

use std::time::Duration;

use helpers::Stack;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const ORG_A: &str = "1310010000000001";
const ORG_B: &str = "2710000000000002";
const RESIDENT: &str = "12345678901";
const ADDRESSEE: &str = "000000000000777";

async fn acquire(stack: &Stack, token: &str) -> (String, Value) {
    let id = submit(stack, token).await;
    (id.clone(), wait_answered(stack, token, &id).await)
}

async fn submit(stack: &Stack, token: &str) -> String {
    let res = stack
        .http
        .post(format!("{}/v1/codes/acquisitions", stack.api))
        .bearer_auth(token)
        .json(
            &json!({ "integrated_addressee_number": ADDRESSEE, "resident_record_code": RESIDENT }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn wait_answered(stack: &Stack, token: &str, id: &str) -> Value {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = stack.acquisition(token, id).await;
        if v["status"] != "pending" {
            return v;
        }
        assert!(
            std::time::Instant::now() < until,
            "acquisition still pending: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The code stored for ADDRESSEE in `org`, decrypted with the platform's keys (the test
/// plays the operator with the KEK), to compare codes across tenants.
async fn stored_code(stack: &Stack, org: &str) -> String {
    let pool = chukan_db::pool_from_url(&stack.settings.database.url, 2).unwrap();
    let mut client = pool.get().await.unwrap();
    let tx = chukan_db::tenant_tx(&mut client, org).await.unwrap();
    let kek = chukan_crypto::Kek::from_base64(stack.settings.crypto.kek.expose_secret()).unwrap();
    let keys = chukan_crypto::Vault::new(kek, "code")
        .keys(&*tx, org)
        .await
        .unwrap();
    let row = tx
        .query_one(
            "SELECT code_enc FROM code.links WHERE addressee_bidx = $1",
            &[&keys.blind_index(ADDRESSEE)],
        )
        .await
        .unwrap();
    let sealed: Vec<u8> = row.get(0);
    String::from_utf8(
        keys.decrypt(&sealed, format!("code|code|{org}").as_bytes())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_municipalities_get_different_codes_for_the_same_resident() {
    let mut stack = Stack::start().await;
    let token_a = stack.tenant(ORG_A, "デモ市A").await;
    let token_b = stack.tenant(ORG_B, "デモ市B").await;

    let (id_a, a) = acquire(&stack, &token_a).await;
    let (_, b) = acquire(&stack, &token_b).await;
    assert_eq!(a["status"], "done", "{a}");
    assert_eq!(b["status"], "done", "{b}");

    let code_a = stored_code(&stack, ORG_A).await;
    let code_b = stored_code(&stack, ORG_B).await;
    assert_ne!(code_a, code_b, "codes must differ per organisation");
    assert!(!code_a.contains(RESIDENT));

    // Repeating the request is idempotent: same id, already done, nothing new sent.
    let again = stack
        .http
        .post(format!("{}/v1/codes/acquisitions", stack.api))
        .bearer_auth(&token_a)
        .json(
            &json!({ "integrated_addressee_number": ADDRESSEE, "resident_record_code": RESIDENT }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id_a.as_str());

    // The holding is visible to its own tenant only.
    let held: Value = stack
        .http
        .get(format!("{}/v1/codes/{ADDRESSEE}", stack.api))
        .bearer_auth(&token_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(held["held"], true);
    let foreign = stack
        .http
        .get(format!("{}/v1/codes/acquisitions/{id_a}", stack.api))
        .bearer_auth(&token_b)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);

    // The NWS converts A's code into B's: the same resident, linked only through the NWS.
    let converted: Value = stack
        .http
        .post(format!("{}/v1/codes/convert", stack.nws))
        .json(&json!({ "from_org": ORG_A, "code": code_a, "to_org": ORG_B }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(converted["code"], code_b.as_str());

    // The exchange is visible in the operations metrics, labelled without personal data.
    let metrics = stack.metrics_text().await;
    assert!(
        metrics.contains("chukan_relay_send_total{outcome=\"sent\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("chukan_code_acquisition_results_total{outcome=\"done\"} 2"));
    assert!(!metrics.contains(RESIDENT) && !metrics.contains(ADDRESSEE));

    // Graceful shutdown: SIGTERM drains and exits 0.
    assert_eq!(stack.chukan.terminate(Duration::from_secs(30)), Some(0));
    let _ = stack.nws_sim.terminate(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_resident_data_is_left_in_the_database() {
    let stack = Stack::start().await;
    let token = stack.tenant(ORG_A, "デモ市A").await;
    let (_, a) = acquire(&stack, &token).await;
    assert_eq!(a["status"], "done");
    // Every row of every chukan schema, as text: neither the resident-record code nor the
    // addressee number may appear in the clear (the outbox row is gone once sent).
    let tables = assert_nothing_in_the_clear(
        &stack,
        &["admin", "code", "relay"],
        ORG_A,
        &[(RESIDENT, "resident-record code"), (ADDRESSEE, "addressee")],
    )
    .await;
    assert!(tables >= 5);
}

/// Reads every row of every table of `schemas` as text (as the owner, looking through
/// `tenant`'s and the platform's rows) and fails if any of `secrets` appears in the clear,
/// as text or as the hex of a bytea. Returns how many tables were read.
pub(crate) async fn assert_nothing_in_the_clear(
    stack: &Stack,
    schemas: &[&str],
    tenant: &str,
    secrets: &[(&str, &str)],
) -> usize {
    let (client, conn) =
        tokio_postgres::connect(&stack.settings.database.url, tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let schemas: Vec<String> = schemas.iter().map(|s| s.to_string()).collect();
    // An outbox row holds its message until the relay has published it, and the request's
    // `done` can be seen before the last event it caused is published: wait for the outboxes
    // to drain, so the scan sees what stays.
    for schema in &schemas {
        let count = format!("SELECT count(*) FROM {schema}.outbox");
        chukan_testkit::wait_until(Duration::from_secs(20), "outboxes drained", || async {
            client
                .query_one(&count, &[])
                .await
                .is_ok_and(|row| row.get::<_, i64>(0) == 0)
        })
        .await
        .unwrap();
    }
    let tables = client
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables
             WHERE table_schema = ANY($1) AND table_type = 'BASE TABLE'",
            &[&schemas],
        )
        .await
        .unwrap();
    for t in &tables {
        let table: String = t.get(0);
        // Owner sessions still obey FORCEd RLS; look through each tenant that exists.
        for tenant in [tenant, ""] {
            client
                .batch_execute(&format!(
                    "SELECT set_config('chukan.tenant', '{tenant}', false)"
                ))
                .await
                .unwrap();
            let rows = client
                .query(&format!("SELECT t::text FROM {table} t"), &[])
                .await
                .unwrap();
            for r in rows {
                let text: String = r.get(0);
                for (secret, what) in secrets {
                    // bytea renders as hex, so look for the hex of the text too.
                    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
                    assert!(
                        !text.contains(secret),
                        "{table} holds the {what} in the clear"
                    );
                    assert!(
                        !text.contains(&hex),
                        "{table} holds the {what} in the clear (bytea)"
                    );
                }
            }
        }
    }
    tables.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_while_the_nws_is_down_arrives_once_it_is_back() {
    let mut stack = Stack::start().await;
    let token = stack.tenant(ORG_A, "デモ市A").await;
    // Cut the link: the NWS is gone (its process stopped).
    let _ = stack.nws_sim.terminate(Duration::from_secs(10));

    let id = submit(&stack, &token).await;
    let retry = "chukan_relay_send_total{outcome=\"retry\"}";
    chukan_testkit::wait_until(Duration::from_secs(20), "relay retrying", || async {
        stack.metric(retry).await >= 1.0
    })
    .await
    .unwrap();
    let pending = stack.acquisition(&token, &id).await;
    assert_eq!(pending["status"], "pending");
    // Anyone can see that the link is degraded, without a token.
    let (http, status_url) = (stack.http.clone(), format!("{}/v1/status", stack.api));
    let link = || async {
        let status: serde_json::Value = http
            .get(&status_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        status["components"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["component"] == "nws-link"))
            .map(|c| c["status"].as_str().unwrap_or("").to_string())
    };
    chukan_testkit::wait_until(Duration::from_secs(30), "link shown degraded", || async {
        link().await.as_deref() == Some("degraded")
    })
    .await
    .unwrap();

    // The NWS comes back: the held message goes through, exactly once.
    stack.restart_nws_sim().await;
    let done = wait_answered(&stack, &token, &id).await;
    assert_eq!(done["status"], "done", "{done}");
    chukan_testkit::wait_until(Duration::from_secs(30), "link shown healthy", || async {
        link().await.as_deref() == Some("ok")
    })
    .await
    .unwrap();
    assert_eq!(
        stack
            .metric("chukan_code_acquisition_results_total{outcome=\"done\"}")
            .await,
        1.0
    );
    let (dead, _) = stack.metric_total("chukan_mq_dead_lettered_total").await;
    assert_eq!(dead, 0.0, "nothing may be dead-lettered");
    let (retried, samples) = stack.metric_total("chukan_relay_send_total").await;
    assert!(
        samples >= 2 && retried >= 2.0,
        "a retry and a send were counted"
    );
}

/// Tells the running nws-sim to refuse its next `count` messages with `status`.
async fn inject_fault(stack: &Stack, status: u16, count: u32) {
    let res = stack
        .http
        .post(format!("{}/v1/faults", stack.nws))
        .json(&json!({ "status": status, "count": count }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_nws_is_retried_with_the_same_message_until_it_accepts() {
    let stack = Stack::start().await;
    let token = stack.tenant(ORG_A, "デモ市A").await;
    inject_fault(&stack, 503, 2).await;

    let id = submit(&stack, &token).await;
    let done = wait_answered(&stack, &token, &id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        stack
            .metric("chukan_relay_send_total{outcome=\"retry\"}")
            .await,
        2.0
    );
    // Every attempt carried the same message id, and that id is the one finally accepted,
    // so the NWS's replay check would have turned a duplicate into a no-op.
    let faults: Value = stack
        .http
        .get(format!("{}/v1/faults", stack.nws))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refused = faults["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0], refused[1]);
    let (nws_db, conn) =
        tokio_postgres::connect(&stack.settings.nws_sim.database_url, tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let accepted: String = nws_db
        .query_one(
            "SELECT message_id FROM received WHERE kind = 'code.acquire'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(refused[0], accepted.as_str());
    assert_eq!(
        stack
            .metric("chukan_relay_send_total{outcome=\"sent\"}")
            .await,
        1.0
    );
    let (dead, _) = stack.metric_total("chukan_mq_dead_lettered_total").await;
    assert_eq!(dead, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_the_nws_is_dead_lettered_counted_and_not_retried() {
    let stack = Stack::start().await;
    let token = stack.tenant(ORG_A, "デモ市A").await;
    inject_fault(&stack, 401, 1).await;

    let id = submit(&stack, &token).await;
    chukan_testkit::wait_until(Duration::from_secs(20), "dead-lettered", || async {
        stack.metric_total("chukan_mq_dead_lettered_total").await.0 >= 1.0
    })
    .await
    .unwrap();
    assert_eq!(
        stack
            .metric("chukan_relay_send_total{outcome=\"rejected\"}")
            .await,
        1.0
    );
    assert_eq!(
        stack
            .metric("chukan_relay_send_total{outcome=\"retry\"}")
            .await,
        0.0
    );
    // Kept for an operator, not lost: the request stays pending and visible.
    let pending = stack.acquisition(&token, &id).await;
    assert_eq!(pending["status"], "pending");
}
