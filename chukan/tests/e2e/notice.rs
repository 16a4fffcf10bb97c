//! お知らせ end to end: municipality A sends a notice with reply choices and an attachment
//! through relay and nws-sim (its own process) to the resident's portal; the resident reads
//! and replies there; A's status check (状況確認要求) brings the reply back.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{ADDRESSEE, ORG_A, RESIDENT, acquire, helpers::Stack};

/// Polls `check` until it gives `Ok`; panics with the last `Err` (what was seen) after 30 s.
async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Value>>,
{
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match check().await {
            Ok(done) => return done,
            Err(seen) if std::time::Instant::now() >= until => {
                panic!("timed out waiting for {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn portal(stack: &Stack, rest: &str) -> String {
    format!("{}/v1/portal/residents/{RESIDENT}/notices{rest}", stack.nws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_reaches_the_portal_and_the_residents_reply_comes_back() {
    let stack = Stack::start().await;
    let token = stack.tenant(ORG_A, "お知らせ市").await;
    let (_, acquired) = acquire(&stack, &token).await;
    assert_eq!(acquired["status"], "done", "{acquired}");
    chukan_testkit::wait_until(
        Duration::from_secs(30),
        "notice learns the code",
        || async { stack.consumed("notice.code-links").await >= 1.0 },
    )
    .await
    .unwrap();

    let (status, accepted) = stack
        .call(
            Method::POST,
            &token,
            "/v1/notices",
            Some(json!({
                "addressee": ADDRESSEE,
                "title": "説明会のご案内",
                "body": "説明会に出席されますか。",
                "attachments": [{
                    "file_name": "案内.pdf", "media_type": "application/pdf",
                    "content_base64": "JVBERi0xLjQ="
                }],
                "reply_choices": ["出席", "欠席"]
            })),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["notice_id"].as_str().unwrap().to_string();

    // The resident finds it in the portal, reads it and replies.
    let inbox = poll("the notice in the portal", || async {
        let v: Value = stack
            .http
            .get(portal(&stack, ""))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match v["items"].as_array() {
            Some(items) if !items.is_empty() => Ok(items.clone()),
            _ => Err(v),
        }
    })
    .await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["notice_id"], id.as_str());
    assert_eq!(inbox[0]["org_code"], ORG_A);
    assert_eq!(inbox[0]["title"], "説明会のご案内");
    assert_eq!(inbox[0]["attachments"][0]["content_base64"], "JVBERi0xLjQ=");
    let read = stack
        .http
        .post(portal(&stack, &format!("/{id}/read")))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let replied = stack
        .http
        .post(portal(&stack, &format!("/{id}/reply")))
        .json(&json!({"choice": "出席"}))
        .send()
        .await
        .unwrap();
    assert_eq!(replied.status(), 200);

    // 状況確認要求: the answer brings the reply into A's notice.
    let (status, check) = stack
        .call(
            Method::POST,
            &token,
            "/v1/notice-status-checks",
            Some(json!({"notice_ids": [id]})),
        )
        .await;
    assert_eq!(status, 202, "{check}");
    let check_id = check["check_id"].as_str().unwrap().to_string();
    let shown = poll("the reply at A", || async {
        let (_, v) = stack
            .call(Method::GET, &token, &format!("/v1/notices/{id}"), None)
            .await;
        if v["state"] == "replied" {
            Ok(v)
        } else {
            Err(v)
        }
    })
    .await;
    assert_eq!(shown["reply_choice"], "出席");
    assert!(shown["read_at"].is_string());
    assert_eq!(shown["addressee_masked"], "***********0777");
    let (_, answered) = stack
        .call(
            Method::GET,
            &token,
            &format!("/v1/notice-status-checks/{check_id}"),
            None,
        )
        .await;
    assert_eq!(answered["state"], "answered", "{answered}");
    assert_eq!(answered["notices"][0]["reply_choice"], "出席");

    // A's provision-record log holds the send exactly once and the status received.
    let staff = stack.staff_token(ORG_A).await;
    let events = poll("the notice records", || async {
        let (_, page) = stack
            .call(
                Method::POST,
                &staff,
                "/v1/records/search",
                Some(serde_json::json!({"limit": 100})),
            )
            .await;
        let events: Vec<String> = page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|r| r["event"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        let has = |name: &str| events.iter().any(|e| e == name);
        if has("notice.status-received") && has("notice.sent") {
            Ok(events)
        } else {
            Err(page)
        }
    })
    .await;
    assert_eq!(
        events.iter().filter(|e| *e == "notice.sent").count(),
        1,
        "{events:?}"
    );

    // Text, attachments and the reply are sealed at rest, as are the resident's numbers.
    let tables = crate::assert_nothing_in_the_clear(
        &stack,
        &["notice", "audit"],
        ORG_A,
        &[
            (ADDRESSEE, "addressee"),
            ("説明会のご案内", "notice title"),
            ("説明会に出席されますか", "notice body"),
            ("%PDF-1.4", "attachment"),
        ],
    )
    .await;
    assert!(tables >= 4);
}
