//! 一括照会 (bulk inquiry files): checking every line, sending the good ones, the result file
//! and bulk confirmation.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{
    ORG_A, bulk_fields, bulk_line, decode_request, provided, spawn_app, spawn_app_with, wait_until,
};

#[actix_web::test]
async fn a_file_of_1000_lines_with_3_bad_ones_sends_997_under_one_serial() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    let residents: Vec<String> = (1..=10).map(|i| format!("{:015}", 1000 + i)).collect();
    let refs: Vec<&str> = residents.iter().map(String::as_str).collect();
    app.link_codes(ORG_A, &refs).await;
    // A first single inquiry takes serial 1, so the batch's serial is 2.
    app.post_json(
        &token,
        "/v1/inquiries",
        &crate::helpers::inquiry_body(refs[0]),
    )
    .await;

    let mut file = String::new();
    for n in 1..=1000 {
        let addressee = refs[n % refs.len()];
        let mut f = bulk_fields(ORG_A, addressee);
        match n {
            10 => f[9] = "JX00000000000001",  // 事務手続コード malformed
            500 => f[6] = "9999999999999999", // 照会者機関コード not the caller
            1000 => f[2] = "999999999999999", // 統合宛名番号 without a code
            _ => {}
        }
        file.push_str(&bulk_line(f));
        file.push_str("\r\n");
    }
    let res = app.post_file(&token, file.into_bytes()).await;
    assert_eq!(res.status(), 202);
    let batch: Value = res.json().await.unwrap();
    assert_eq!(batch["lines"], 1000);
    assert_eq!(batch["accepted"], 997);
    assert_eq!(batch["rejected"], 3);
    assert_eq!(batch["serial_no"], "0000000000000002");
    let errors = batch["errors"].as_array().unwrap();
    let named: Vec<(i64, &str, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["line"].as_i64().unwrap(),
                e["field"].as_str().unwrap(),
                e["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            (10, "事務手続コード", "invalid-field"),
            (500, "照会者機関コード", "wrong-inquirer"),
            (1000, "統合宛名番号", "no-code"),
        ]
    );
    assert!(
        errors[2]["detail"]
            .as_str()
            .unwrap()
            .contains("***********9999")
    );
    assert!(!batch.to_string().contains("999999999999999"));

    // 1 single + 997 lines towards the NWS: one serial, 枝番 = line number, nothing twice.
    let sent = app.wait_nws_out(998).await;
    let mut branches = BTreeSet::new();
    for d in &sent {
        let (_, req) = decode_request(d);
        if req.serial_no == "0000000000000002" {
            assert!(
                branches.insert(req.branch_no),
                "branch {} sent twice",
                req.branch_no
            );
            let want = refs[usize::try_from(req.branch_no).unwrap() % refs.len()];
            assert_eq!(req.inquirer_code, format!("CODE-{want}"));
        }
    }
    assert_eq!(branches.len(), 997);
    assert!(!branches.contains(&10) && !branches.contains(&500) && !branches.contains(&1000));
    assert!(branches.contains(&1) && branches.contains(&999));
    wait_until("audit of every line", || async { app.audit.count() >= 998 }).await;

    let id = batch["batch_id"].as_str().unwrap();
    wait_until("batch fully dispatched", || async {
        app.get_json(&token, &format!("/v1/inquiry-batches/{id}"))
            .await["waiting"]
            == 0
    })
    .await;
    let status = app
        .get_json(&token, &format!("/v1/inquiry-batches/{id}"))
        .await;
    assert_eq!(status["by_status"]["sent"], 997);
    assert!(status["dispatched_at"].is_string());

    let all_errors = app
        .get_json(&token, &format!("/v1/inquiry-batches/{id}/errors?limit=2"))
        .await;
    assert_eq!(all_errors["items"].as_array().unwrap().len(), 2);
    assert_eq!(all_errors["next_after_line"], 500);
    let rest = app
        .get_json(
            &token,
            &format!("/v1/inquiry-batches/{id}/errors?after_line=500"),
        )
        .await;
    assert_eq!(rest["items"][0]["line"], 1000);

    // The result file: one line per input line.
    let res = app
        .get(&token, &format!("/v1/inquiry-batches/{id}/results"))
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = res.text().await.unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 1001);
    assert!(rows[0].starts_with("line_no,serial_no,branch_no,status"));
    assert_eq!(rows[1], "1,0000000000000002,1,sent,,0,0,0,");
    assert_eq!(
        rows[10],
        "10,0000000000000002,10,rejected,,0,0,0,invalid-field"
    );
    assert_eq!(
        rows[1000],
        "1000,0000000000000002,1000,rejected,,0,0,0,no-code"
    );
}

#[actix_web::test]
async fn bulk_results_are_confirmed_together_by_serial_number() {
    let app = spawn_app_with(|s| s.inquiry.confirm_max = 5).await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &["21", "22", "23"]).await;
    let file: String = ["21", "22", "23"]
        .iter()
        .map(|a| format!("{}\n", bulk_line(bulk_fields(ORG_A, a))))
        .collect();
    let batch: Value = app
        .post_file(&token, file.into_bytes())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(batch["accepted"], 3);
    let serial = batch["serial_no"].as_str().unwrap().to_string();
    let sent = app.wait_nws_out(3).await;
    // The NWS answers lines 1 and 2.
    for d in &sent {
        let (out, req) = decode_request(d);
        if req.branch_no <= 2 {
            app.answer(
                ORG_A,
                &out.correlation_id,
                &provided(1),
                uuid::Uuid::now_v7(),
            )
            .await;
        }
    }
    app.wait_results_consumed(2).await;
    let listed = app
        .get_json(
            &token,
            &format!("/v1/inquiries?serial_no={serial}&status=provided"),
        )
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    let first: Value = app
        .post_json(
            &token,
            "/v1/inquiry-confirmations",
            &json!({"serial_no": serial}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["matched"], 3);
    assert_eq!(first["confirmed"], 2);
    assert_eq!(first["not_answered"], 1);
    let again: Value = app
        .post_json(
            &token,
            "/v1/inquiry-confirmations",
            &json!({"serial_no": serial}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["confirmed"], 0);
    assert_eq!(again["already_confirmed"], 2);
    let open = app
        .get_json(
            &token,
            &format!("/v1/inquiries?serial_no={serial}&confirmed=false"),
        )
        .await;
    assert_eq!(open["items"].as_array().unwrap().len(), 1);
    assert_eq!(open["items"][0]["branch_no"], 3);
    let status = app
        .get_json(
            &token,
            &format!(
                "/v1/inquiry-batches/{}",
                batch["batch_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(status["confirmed"], 2);
    assert_eq!(status["by_status"]["provided"], 2);

    // Neither or both selectors, and more than confirm_max ids, are refused.
    let bad = app
        .post_json(&token, "/v1/inquiry-confirmations", &json!({}))
        .await;
    assert_eq!(bad.status(), 400);
    let ids: Vec<String> = (0..6).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let too_many = app
        .post_json(&token, "/v1/inquiry-confirmations", &json!({"ids": ids}))
        .await;
    assert_eq!(too_many.status(), 422);
    assert_eq!(
        too_many.json::<Value>().await.unwrap()["code"],
        "too-many-confirmations"
    );
}

#[actix_web::test]
async fn shift_jis_files_are_decoded_and_department_exclusions_apply_per_line() {
    let app =
        spawn_app_with(|s| s.inquiry.bulk_encoding = chukan_config::BulkEncoding::ShiftJis).await;
    app.link_codes(ORG_A, &["61", "62"]).await;
    app.set_department(ORG_A, "福祉課", &["JT00000000000009"])
        .await;
    let staff = app.staff_token(ORG_A, "福祉課");
    let encode_line = |fields: [&str; 18]| -> Vec<u8> {
        let mut out = Vec::new();
        for (v, (_, w)) in fields.iter().zip(chukan_inquiry::bulk_file::FIELDS) {
            let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(v);
            out.extend_from_slice(&bytes);
            out.extend(std::iter::repeat_n(b' ', w - bytes.len()));
        }
        out.extend_from_slice(b"\r\n");
        out
    };
    let mut first = bulk_fields(ORG_A, "61");
    first[4] = "福祉課";
    first[5] = "職員一";
    let mut second = bulk_fields(ORG_A, "62");
    second[4] = "福祉課";
    second[9] = "JT00000000000009";
    let mut third = bulk_fields(ORG_A, "62");
    third[4] = "税務課";
    let mut file = encode_line(first);
    file.extend(encode_line(second));
    file.extend(encode_line(third));
    let res = app.post_file(&staff, file).await;
    assert_eq!(res.status(), 202);
    let batch: Value = res.json().await.unwrap();
    assert_eq!(batch["accepted"], 1, "{batch}");
    let errors = batch["errors"].as_array().unwrap();
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[0]["field"], "事務手続コード");
    assert_eq!(errors[0]["code"], "excluded-procedure");
    assert_eq!(errors[1]["line"], 3);
    assert_eq!(errors[1]["field"], "部署コード");
    assert_eq!(errors[1]["code"], "department-mismatch");
    let sent = app.wait_nws_out(1).await;
    let (_, req) = decode_request(&sent[0]);
    assert_eq!(req.branch_no, 1);
    assert_eq!(req.inquirer_code, "CODE-61");

    // A UTF-8 file where Shift_JIS is configured does not read back: the user id decodes to
    // a control character (UTF-8's 0x80 is U+0080 in Shift_JIS) and is refused as such.
    let utf8 = format!("{}\n", bulk_line(first));
    let res = app.post_file(&staff, utf8.into_bytes()).await;
    let batch: Value = res.json().await.unwrap();
    assert_eq!(batch["accepted"], 0);
    assert_eq!(batch["errors"][0]["field"], "ユーザーID", "{batch}");
    assert_eq!(batch["errors"][0]["code"], "invalid-character", "{batch}");
}

#[actix_web::test]
async fn empty_oversized_and_mistyped_files_are_refused_whole() {
    let app = spawn_app_with(|s| s.inquiry.bulk_max_lines = 2).await;
    let token = app.token(ORG_A);
    let res = app.post_file(&token, Vec::new()).await;
    assert_eq!(res.status(), 422);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "empty-file");
    let line = format!("{}\n", bulk_line(bulk_fields(ORG_A, "1")));
    let res = app.post_file(&token, line.repeat(3).into_bytes()).await;
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "payload-too-large"
    );
    let res = app
        .api
        .http
        .post(app.api.url("/v1/inquiry-batches"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(line)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(
        app.scalar_i64(ORG_A, "SELECT count(*) FROM inquiry.batches")
            .await,
        0
    );
}

#[actix_web::test]
async fn two_batch_senders_racing_send_every_line_exactly_once() {
    let app = spawn_app().await;
    let token = app.token(ORG_A);
    app.link_codes(ORG_A, &["71", "72"]).await;
    // A second process's sender over the same database, as after a failover.
    let ctx = &app.env.ctx;
    let other = chukan_inquiry::InquiryState {
        db: ctx.db.clone(),
        vault: chukan_crypto::Vault::new(ctx.kek.clone(), chukan_inquiry::SCHEMA),
        outbox: chukan_mq::outbox::start(
            ctx.db.clone(),
            chukan_inquiry::SCHEMA,
            ctx.bus.clone(),
            std::time::Duration::from_millis(100),
        ),
        clock: ctx.clock.clone(),
        calendar: ctx.calendar.clone(),
        settings: ctx.settings.inquiry.clone(),
        encoding: chukan_inquiry::bulk_file::FileEncoding::Utf8,
        batches: std::sync::Arc::default(),
    };
    let file: String = (1..=1200)
        .map(|n| {
            format!(
                "{}\n",
                bulk_line(bulk_fields(ORG_A, if n % 2 == 0 { "71" } else { "72" }))
            )
        })
        .collect();
    let batch: Value = app
        .post_file(&token, file.into_bytes())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(batch["accepted"], 1200);
    let (a, b) = futures_util::join!(
        chukan_inquiry::actors::batch_sender::send_pending(&other),
        chukan_inquiry::actors::batch_sender::send_pending(&other),
    );
    a.unwrap();
    b.unwrap();
    let sent = app.wait_nws_out(1200).await;
    let id = batch["batch_id"].as_str().unwrap();
    wait_until("batch closed", || async {
        app.get_json(&token, &format!("/v1/inquiry-batches/{id}"))
            .await["dispatched_at"]
            .is_string()
    })
    .await;
    wait_until("outbox drained", || async { app.outbox_len().await == 0 }).await;
    let branches: BTreeSet<i32> = sent.iter().map(|d| decode_request(d).1.branch_no).collect();
    assert_eq!(branches.len(), 1200);
    assert_eq!(app.nws_out.count(), 1200, "no line sent twice");
    assert_eq!(
        app.scalar_i64(
            ORG_A,
            "SELECT count(*) FROM inquiry.inquiries WHERE dispatched_at IS NULL"
        )
        .await,
        0
    );
}
