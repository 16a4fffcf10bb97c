//! 情報照会・情報提供 end to end: municipality A inquires of municipality B through relay and
//! nws-sim (its own process), B answers from its replicas — automatically, or by hand when a
//! flag says so — and A reads the result.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{ADDRESSEE, ORG_A, ORG_B, acquire, helpers::Stack};

/// No. 31 医療保険給付関係情報 and a procedure 別表第二 allows to ask for it
/// (国民健康保険 / 保険給付).
pub(crate) const MEDICAL: &str = "TM00000000000031";
pub(crate) const NHI_AFFAIR: &str = "JM00000000000002";
pub(crate) const NHI_BENEFIT: &str = "JT00000000000201";
/// 児童手当の認定請求: may ask for local tax (No. 2) but not for No. 31.
const CHILD_AFFAIR: &str = "JM00000000000001";
const CHILD_CLAIM: &str = "JT00000000000101";

/// Both municipalities hold a code for the resident; B holds two history entries of No. 31
/// that switch on 2017-02-28 (11111 lost that day, 2222 acquired that day).
pub(crate) async fn two_municipalities() -> (Stack, String, String) {
    two_municipalities_with(&[]).await
}

/// As [`two_municipalities`], with extra `CHUKAN__…` settings for both processes.
pub(crate) async fn two_municipalities_with(extra: &[(&str, &str)]) -> (Stack, String, String) {
    let stack = Stack::start_with(extra).await;
    let token_a = stack.tenant(ORG_A, "照会市").await;
    let token_b = stack.tenant(ORG_B, "提供市").await;
    let (_, a) = acquire(&stack, &token_a).await;
    let (_, b) = acquire(&stack, &token_b).await;
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("done"), Some("done"))
    );
    let record = |rid: &str, key: &str, member: &str, from: &str, to: Option<&str>| {
        let mut items = vec![
            json!({"code": "I0001", "value": member, "version": "0002", "updated": "2017-03-01"}),
            json!({"code": "I0002", "value": from}),
        ];
        items.push(match to {
            Some(t) => json!({"code": "I0003", "value": t}),
            None => json!({"code": "I0003", "null_reason": "NotAcceptable"}),
        });
        json!({
            "operation": "register", "record_id": rid, "integrated_addressee_number": ADDRESSEE,
            "info_code": MEDICAL, "dataset": "0101", "record_key": key, "major_version": "0002",
            "items": items
        })
    };
    let (status, body) = stack
        .call(
            Method::POST,
            &token_b,
            "/v1/replicas",
            Some(json!({"records": [
                record("R1", "K1", "11111", "2010-04-01", Some("2017-02-28")),
                record("R2", "K2", "2222", "2017-02-28", None),
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Both services learnt the codes (code.linked) before anyone inquires.
    wait_consumed(&stack, "inquiry.code-links", 2.0).await;
    wait_consumed(&stack, "provision.code-links", 2.0).await;
    (stack, token_a, token_b)
}

/// Polls `check` until it gives `Ok`; panics with the last `Err` (what was seen) after `secs`.
pub(crate) async fn poll<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Value>>,
{
    let until = std::time::Instant::now() + Duration::from_secs(secs);
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

async fn wait_consumed(stack: &Stack, queue: &str, n: f64) {
    chukan_testkit::wait_until(Duration::from_secs(30), queue, || async {
        stack.consumed(queue).await >= n
    })
    .await
    .unwrap();
}

pub(crate) fn inquiry(procedure: (&str, &str), as_of: &str) -> Value {
    json!({
        "affair_code": procedure.0, "procedure_code": procedure.1, "info_code": MEDICAL,
        "integrated_addressee_number": ADDRESSEE, "provider_org": ORG_B, "as_of": as_of
    })
}

pub(crate) async fn send(stack: &Stack, token: &str, body: Value) -> Value {
    let (status, accepted) = stack
        .call(Method::POST, token, "/v1/inquiries", Some(body))
        .await;
    assert_eq!(status, 202, "{accepted}");
    accepted
}

/// Waits until the inquiry has left `sent` and returns it.
pub(crate) async fn answered(stack: &Stack, token: &str, id: &str) -> Value {
    let path = format!("/v1/inquiries/{id}");
    poll(30, "an answer", || async {
        let (_, v) = stack.call(Method::GET, token, &path, None).await;
        if v["status"] != "sent" { Ok(v) } else { Err(v) }
    })
    .await
}

/// Waits until B's manual-answer queue holds an inquiry; returns its permit id.
async fn waiting_permit(stack: &Stack, token_b: &str) -> String {
    poll(30, "a waiting provision", || async {
        let (_, list) = stack
            .call(Method::GET, token_b, "/v1/provisions?state=waiting", None)
            .await;
        let items = list.as_array().cloned().unwrap_or_default();
        match items.as_slice() {
            [one] => Ok(one["permit_id"].as_str().unwrap().to_string()),
            _ => Err(list),
        }
    })
    .await
}

/// The events in `org`'s provision-record log once it holds `want` of them, sorted.
pub(crate) async fn recorded_events(stack: &Stack, org: &str, want: usize) -> Vec<String> {
    let staff = stack.staff_token(org).await;
    recorded_events_as(stack, &staff, want).await
}

/// The events of the caller's organisation's provision-record log, sorted.
async fn recorded_events_as(stack: &Stack, staff: &str, want: usize) -> Vec<String> {
    poll(30, "the provision records", || async {
        let (_, page) = stack
            .call(
                Method::POST,
                staff,
                "/v1/records/search",
                Some(serde_json::json!({"limit": 100})),
            )
            .await;
        let mut events: Vec<String> = page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|r| r["event"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        events.sort();
        if events.len() >= want {
            Ok(events)
        } else {
            Err(page)
        }
    })
    .await
}

/// The events the statistics service counted for the caller's organisation around today
/// (one name per event counted), sorted, once `want` of them are exchanges (not `code.*`).
async fn counted_events(stack: &Stack, staff: &str, want: usize) -> Vec<String> {
    let today = chukan_core::calendar::japan_date(chrono::Utc::now());
    let path = format!(
        "/v1/statistics/exchanges?from={}&to={}",
        today - chrono::Days::new(1),
        today + chrono::Days::new(1)
    );
    poll(30, "the business statistics", || async {
        let (_, body) = stack.call(Method::GET, staff, &path, None).await;
        let mut events: Vec<String> = body["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .flat_map(|r| {
                        let n = r["count"].as_u64().unwrap_or(0) as usize;
                        std::iter::repeat_n(r["event"].as_str().unwrap_or("").to_string(), n)
                    })
                    .collect()
            })
            .unwrap_or_default();
        events.sort();
        if events.iter().filter(|e| !e.starts_with("code.")).count() >= want {
            Ok(events)
        } else {
            Err(body)
        }
    })
    .await
}

fn members(result: &Value) -> Vec<String> {
    result["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let xml = r["payload_xml"].as_str().unwrap();
            let start = xml.find("<I0001").unwrap();
            let open_end = start + xml[start..].find('>').unwrap() + 1;
            let close = open_end + xml[open_end..].find('<').unwrap();
            xml[open_end..close].to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_inquires_of_b_and_gets_the_automatic_answer_as_of_the_date_asked() {
    let (stack, token_a, token_b) = two_municipalities().await;

    let first = send(
        &stack,
        &token_a,
        inquiry((NHI_AFFAIR, NHI_BENEFIT), "2017-02-28"),
    )
    .await;
    assert_eq!(first["status"], "sent");
    assert_eq!(first["branch_no"], 1);
    let id = first["id"].as_str().unwrap();
    let result = answered(&stack, &token_a, id).await;
    assert_eq!(result["status"], "provided", "{result}");
    // The same-day switch (enhancement #14): on 2017-02-28 only the entry acquired that day.
    assert_eq!(members(&result), ["2222"]);
    assert_eq!(result["manual"], false);
    assert_eq!(result["provider_non_disclosure"], false);

    let before = send(
        &stack,
        &token_a,
        inquiry((NHI_AFFAIR, NHI_BENEFIT), "2017-02-27"),
    )
    .await;
    assert!(
        before["serial_no"].as_str().unwrap() > first["serial_no"].as_str().unwrap(),
        "処理通番 increases: {before} after {first}"
    );
    let result = answered(&stack, &token_a, before["id"].as_str().unwrap()).await;
    assert_eq!(members(&result), ["11111"]);

    // Results belong to the inquirer: B cannot read A's, even with the id.
    let (status, _) = stack
        .call(Method::GET, &token_b, &format!("/v1/inquiries/{id}"), None)
        .await;
    assert_eq!(status, 404);

    // Every exchange is recorded once in both parties' provision-record logs (情報提供等記録):
    // A has "inquiry sent" and "result received" for each inquiry, B "provision made". The
    // business statistics (業務統計) count exactly what each log holds.
    let staff_a = stack.staff_token(ORG_A).await;
    let staff_b = stack.staff_token(ORG_B).await;
    let logged_a = recorded_events_as(&stack, &staff_a, 4).await;
    assert_eq!(
        logged_a,
        [
            "inquiry.sent",
            "inquiry.sent",
            "result.received",
            "result.received"
        ]
    );
    let logged_b = recorded_events_as(&stack, &staff_b, 2).await;
    assert_eq!(logged_b, ["provision.made", "provision.made"]);
    // Code acquisitions are counted too, though they are no provision record.
    let counted_a = counted_events(&stack, &staff_a, 4).await;
    let (codes, exchanges): (Vec<String>, Vec<String>) =
        counted_a.into_iter().partition(|e| e.starts_with("code."));
    assert_eq!(exchanges, logged_a);
    assert_eq!(codes, ["code.acquired"]);
    let counted_b = counted_events(&stack, &staff_b, 2).await;
    let exchanges_b: Vec<String> = counted_b
        .into_iter()
        .filter(|e| !e.starts_with("code."))
        .collect();
    assert_eq!(exchanges_b, logged_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_send_inquiries_to_staff_and_mark_non_disclosure_on_both_sides() {
    let (stack, token_a, token_b) = two_municipalities().await;
    let flags = |non_disclosure: bool, prohibited: Value| {
        json!({
            "non_disclosure": non_disclosure, "self_info_prohibited": false,
            "auto_response_prohibited": prohibited
        })
    };
    // A's resident is a DV victim: A's own inquiries about them carry the non-disclosure code.
    let (status, body) = stack
        .call(
            Method::PUT,
            &token_a,
            &format!("/v1/flags/{ADDRESSEE}"),
            Some(flags(true, json!([]))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // B: no automatic answer for No. 31, and non-disclosure.
    let (status, body) = stack
        .call(
            Method::PUT,
            &token_b,
            &format!("/v1/flags/{ADDRESSEE}"),
            Some(flags(true, json!([{"info_code": MEDICAL}]))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_consumed(&stack, "inquiry.flags", 2.0).await;

    let sent = send(
        &stack,
        &token_a,
        inquiry((NHI_AFFAIR, NHI_BENEFIT), "2017-02-28"),
    )
    .await;
    assert_eq!(sent["inquirer_non_disclosure"], true, "{sent}");
    let id = sent["id"].as_str().unwrap().to_string();
    // B's staff (業務担当者) work the manual-answer queue.
    let staff_b = stack.staff_token(ORG_B).await;

    // It waits in B's manual-answer queue; staff answer it.
    let permit = waiting_permit(&stack, &staff_b).await;
    let (_, still) = stack
        .call(Method::GET, &token_a, &format!("/v1/inquiries/{id}"), None)
        .await;
    assert_eq!(still["status"], "sent", "no answer before staff decide");
    let (status, body) = stack
        .call(
            Method::POST,
            &staff_b,
            &format!("/v1/provisions/{permit}/answer"),
            Some(json!({"decision": "provide"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let result = answered(&stack, &token_a, &id).await;
    assert_eq!(result["status"], "provided", "{result}");
    assert_eq!(result["manual"], true);
    assert_eq!(result["provider_non_disclosure"], true);
    assert_eq!(members(&result), ["2222"]);
    // Answering twice is refused: the permit is answered.
    let (status, _) = stack
        .call(
            Method::POST,
            &staff_b,
            &format!("/v1/provisions/{permit}/answer"),
            Some(json!({"decision": "provide"})),
        )
        .await;
    assert_eq!(status, 409);

    // Per dataset (enhancement #3): only dataset 0101 prohibited → waiting; staff refuse.
    let (status, _) = stack
        .call(
            Method::PUT,
            &token_b,
            &format!("/v1/flags/{ADDRESSEE}"),
            Some(flags(
                false,
                json!([{"info_code": MEDICAL, "dataset": "0101"}]),
            )),
        )
        .await;
    assert_eq!(status, 200);
    let sent = send(
        &stack,
        &token_a,
        inquiry((NHI_AFFAIR, NHI_BENEFIT), "2017-02-28"),
    )
    .await;
    let id = sent["id"].as_str().unwrap().to_string();
    let permit = waiting_permit(&stack, &staff_b).await;
    let (status, body) = stack
        .call(
            Method::POST,
            &staff_b,
            &format!("/v1/provisions/{permit}/answer"),
            Some(json!({"decision": "refuse", "reason": "本人確認中のため"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let result = answered(&stack, &token_a, &id).await;
    assert_eq!(result["status"], "refused", "{result}");
    assert!(result["records"].as_array().is_none_or(|r| r.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inquiries_the_law_or_the_platform_does_not_allow_are_refused_with_the_published_wording() {
    let (stack, token_a, _) = two_municipalities().await;

    // 別表第二 does not let 児童手当 ask for No. 31: the NWS refuses, the result says why.
    let sent = send(
        &stack,
        &token_a,
        inquiry((CHILD_AFFAIR, CHILD_CLAIM), "2017-02-28"),
    )
    .await;
    let result = answered(&stack, &token_a, sent["id"].as_str().unwrap()).await;
    assert_eq!(result["status"], "not-permitted", "{result}");
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("指定された特定個人情報名「")
            && reason.ends_with("」の照会は許可されていません。"),
        "{reason}"
    );

    // No code held for this resident at A: refused at once, nothing sent.
    let mut no_code = inquiry((NHI_AFFAIR, NHI_BENEFIT), "2017-02-28");
    no_code["integrated_addressee_number"] = json!("000000000099999");
    let (status, problem) = stack
        .call(Method::POST, &token_a, "/v1/inquiries", Some(no_code))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "no-code");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("指定された団体内統合宛名番号「")
            && detail.ends_with("」は符号が未取得です。"),
        "{detail}"
    );
    assert!(
        !detail.contains("000000000099999"),
        "the number is masked: {detail}"
    );

    // A department excluded from the procedure (対象外事務手続コード) may not inquire for it.
    crate::helpers::run_json(
        &stack.env,
        &[
            "admin",
            "put-department",
            "--tenant",
            ORG_A,
            "--code",
            "KODOMO",
            "--name",
            "こども課",
            "--excluded",
            NHI_BENEFIT,
        ],
    );
    let kodomo = stack.department_token(ORG_A, "KODOMO").await;
    wait_consumed(&stack, "inquiry.departments", 1.0).await;
    let (status, problem) = stack
        .call(
            Method::POST,
            &kodomo,
            "/v1/inquiries",
            Some(inquiry((NHI_AFFAIR, NHI_BENEFIT), "2017-02-28")),
        )
        .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["code"], "excluded-procedure");
    assert!(problem["action"].as_str().is_some_and(|a| !a.is_empty()));
}

/// One line of the bulk inquiry file (DOMAIN §6: 18 fixed-width fields, 220 characters).
pub(crate) fn bulk_line(addressee: &str, procedure: (&str, &str), inquirer: &str) -> String {
    let fields: [(&str, usize); 18] = [
        ("01", 2),
        ("", 15),
        (addressee, 15),
        ("20261126100000000", 17),
        ("", 20),
        ("e2e", 20),
        (inquirer, 16),
        ("0", 1),
        (procedure.0, 16),
        (procedure.1, 16),
        ("", 16),
        ("", 16),
        (ORG_B, 16),
        (MEDICAL, 16),
        ("1", 1),
        ("0", 1),
        ("20170228", 8),
        ("", 8),
    ];
    fields
        .iter()
        .map(|(v, w)| format!("{v:<w$}"))
        .collect::<String>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_file_is_answered_line_by_line_exactly_once_though_the_server_is_killed() {
    // The simulated NWS must keep retrying its deliveries for longer than the server takes
    // to come back: the e2e chain (1.5 s) gives up on them while a loaded machine is still
    // restarting it, and a delivery the NWS gave up on never arrives. ~100 s here.
    let (mut stack, token_a, token_b) = two_municipalities_with(&[(
        "CHUKAN__NWS_SIM__DELIVERY_RETRY_MS",
        "100,200,400,800,1600,3200,6400,12800,25600,50000",
    )])
    .await;
    const LINES: usize = 1000;
    let bad = [17usize, 500, 999];
    let file: String = (1..=LINES)
        .map(|n| {
            let line = match n {
                17 => bulk_line("00000000000A777", (NHI_AFFAIR, NHI_BENEFIT), ORG_A),
                500 => bulk_line(ADDRESSEE, (NHI_AFFAIR, "JX00000000000201"), ORG_A),
                999 => bulk_line(ADDRESSEE, (NHI_AFFAIR, NHI_BENEFIT), ORG_B),
                _ => bulk_line(ADDRESSEE, (NHI_AFFAIR, NHI_BENEFIT), ORG_A),
            };
            line + "\r\n"
        })
        .collect();
    let res = stack
        .http
        .post(format!("{}/v1/inquiry-batches", stack.api))
        .bearer_auth(&token_a)
        .header("content-type", "text/plain")
        .body(file)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let batch: Value = res.json().await.unwrap();
    assert_eq!(batch["lines"], LINES);
    assert_eq!(batch["accepted"], LINES - bad.len());
    assert_eq!(batch["rejected"], bad.len());
    let lines: Vec<u64> = batch["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["field"].as_str().is_some_and(|f| !f.is_empty()), "{e}");
            e["line"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(lines, bad.map(|n| n as u64));
    let batch_path = format!(
        "/v1/inquiry-batches/{}",
        batch["batch_id"].as_str().unwrap()
    );

    // Kill the whole server (B's provision among it) while answers are flowing.
    let provided = |v: &Value| v["by_status"]["provided"].as_u64().unwrap_or(0);
    let want = (LINES - bad.len()) as u64;
    let at_kill = poll(60, "the first answers", || async {
        let (_, v) = stack.call(Method::GET, &token_a, &batch_path, None).await;
        if provided(&v) >= 50 { Ok(v) } else { Err(v) }
    })
    .await;
    stack.chukan.child.kill().unwrap();
    stack.chukan.child.wait().unwrap();
    assert!(
        provided(&at_kill) < want,
        "killed after the last answer, not mid-flow: {at_kill}"
    );
    stack.restart_chukan().await;

    // A delivery the NWS tried while the server was down or starting waits for its next
    // attempt (at most 50 s apart, see above). One it gave up on would never arrive: that is
    // reported at once rather than waited out.
    let nws = chukan_db::pool_from_url(&stack.settings.nws_sim.database_url, 1).unwrap();
    let last = poll(180, "every answer", || async {
        let given_up: i64 = nws
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM deliveries WHERE failed_at IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            given_up, 0,
            "the NWS gave up on deliveries: the restart outlasted its retries"
        );
        let (_, v) = stack.call(Method::GET, &token_a, &batch_path, None).await;
        if provided(&v) >= want { Ok(v) } else { Err(v) }
    })
    .await;
    assert_eq!(provided(&last), want, "{last}");

    // B answered each permit exactly once: the NWS received one provision.answer per line.
    let answers: i64 = nws
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM received WHERE kind = 'provision.answer'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(answers, want as i64);
    // Each result is B's data as of 2017-02-28, and only A sees them.
    let (_, list) = stack
        .call(
            Method::GET,
            &token_a,
            &format!(
                "/v1/inquiries?serial_no={}&limit=5",
                batch["serial_no"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let first = list["items"][0].clone();
    let result = answered(&stack, &token_a, first["id"].as_str().unwrap()).await;
    assert_eq!(members(&result), ["2222"]);
    let (status, _) = stack.call(Method::GET, &token_b, &batch_path, None).await;
    assert_eq!(status, 404);
}
