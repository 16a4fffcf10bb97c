//! The staff console (接続端末の画面) in a real browser: headless Chromium over WebDriver,
//! against the real binary (API and console as separate processes), PostgreSQL, RabbitMQ
//! and nws-sim. Each screen's screenshot is saved (docs/screens/ holds the current set).

use fantoccini::Locator;

use crate::{ADDRESSEE, ORG_A, ORG_B, RESIDENT, browser::Console, helpers::*};

const PASSWORD: &str = "console-e2e-password";

/// A staff user of `org` with `role`, by the operator's CLI.
fn user(stack: &Stack, org: &str, login: &str, role: &str) {
    let mut env = stack.env.clone();
    env.push(("CHUKAN_NEW_PASSWORD".into(), PASSWORD.into()));
    run_json(
        &env,
        &[
            "admin",
            "create-user",
            "--tenant",
            org,
            "--login",
            login,
            "--name",
            "画面試験",
            "--role",
            role,
        ],
    );
}

/// The API token of a user made by [`user`].
async fn token_of(stack: &Stack, org: &str, login: &str) -> String {
    let (status, body) = stack
        .call(
            reqwest::Method::POST,
            "",
            "/v1/auth/token",
            Some(serde_json::json!({
                "grant_type": "password", "tenant": org, "username": login, "password": PASSWORD
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_work_through_the_console_in_a_browser() {
    // The console forwards the browser's address in this header, so the API's lockout
    // counts the staff member's terminal, not the console.
    let stack =
        Stack::start_with(&[("CHUKAN__AUTH__CLIENT_ADDRESS_HEADER", "x-forwarded-for")]).await;
    stack.tenant(ORG_A, "画面市").await;
    let token_b = stack.tenant(ORG_B, "他市").await;
    user(&stack, ORG_A, "staff1", "business_staff");
    user(&stack, ORG_A, "guessed", "business_staff");
    let console = Console::start(&stack).await;

    // ログイン: the session cookie is sealed, HttpOnly, Secure and SameSite=Strict.
    console.go("/login").await;
    console.screenshot("01-login").await;
    console.login(ORG_A, "staff1", PASSWORD).await;
    console.wait_text("h1", "ホーム").await;
    console.screenshot("02-home").await;
    let cookie = console.session_cookie().await;
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert!(!cookie.value().contains(ORG_A), "sealed, not readable");

    // 符号取得: a wrong number is refused beside its field, in the API's words…
    console.go("/codes").await;
    console.fill("#acq-addressee", "12x").await;
    console.fill("#acq-rrc", RESIDENT).await;
    console
        .click("form[action='/codes/acquisitions'] button")
        .await;
    let err = console
        .wait_for("#acq-addressee-err")
        .await
        .text()
        .await
        .unwrap();
    let field = console.find("#acq-addressee").await;
    assert_eq!(
        field.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    assert!(
        err.contains("不正") && err.contains("再度送信"),
        "the API's detail and action beside the field: {err}"
    );
    console.screenshot("03-codes-error").await;
    // …a right one is acquired, followed on the page as htmx polls it.
    console.fill("#acq-addressee", ADDRESSEE).await;
    console.fill("#acq-rrc", RESIDENT).await;
    console
        .click("form[action='/codes/acquisitions'] button")
        .await;
    console.wait_text("#acq-status", "取得済み").await;
    let url = console.browser.current_url().await.unwrap();
    assert!(
        !url.as_str().contains(ADDRESSEE) && !url.as_str().contains(RESIDENT),
        "no personal number in a URL: {url}"
    );
    console.screenshot("04-code-acquired").await;
    console.go("/codes").await;
    console.fill("#hold-addressee", ADDRESSEE).await;
    console.click("form[action='/codes/holdings'] button").await;
    console.wait_text("#holding-result", "取得済み").await;

    // フラグ: all three read together, then set.
    console.go("/flags").await;
    console.fill("#flags-addressee", ADDRESSEE).await;
    console.click("form[action='/flags/query'] button").await;
    console.wait_text("#flags-view", "設定なし").await;
    console.click("input[name=non_disclosure]").await;
    console
        .fill("#flags-prohibitions", "TM00000000000031 0001")
        .await;
    console.click("form[action='/flags'] button").await;
    console.wait_text("#flags-saved", "更新しました").await;
    let view = console.find("#flags-view").await.text().await.unwrap();
    assert!(view.contains("設定あり") && view.contains("0001"), "{view}");
    console.screenshot("05-flags").await;

    // Another organisation's resource is simply not found.
    let theirs = crate::submit(&stack, &token_b).await;
    console.go(&format!("/codes/acquisitions/{theirs}")).await;
    console.wait_text("h1", "見つかりません").await;

    // CSRF: the same session from outside the page, without the form's secret, changes
    // nothing.
    let outside = reqwest::Client::new()
        .post(format!("{}/flags", console.url))
        .header(
            "cookie",
            format!("__Host-chukan-session={}", cookie.value()),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "integrated_addressee_number={ADDRESSEE}&prohibitions="
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), 403);
    let (_, flags) = stack
        .call(
            reqwest::Method::POST,
            &token_of(&stack, ORG_A, "staff1").await,
            "/v1/flags/query",
            Some(serde_json::json!({ "integrated_addressee_number": ADDRESSEE })),
        )
        .await;
    assert_eq!(
        flags["non_disclosure"], true,
        "the forged post changed nothing"
    );

    // ログアウト: back at the login page, and the old page asks for a login again.
    console.go("/").await;
    console.click("header form button").await;
    console.wait_text("main", "ログアウトしました").await;
    console.go("/codes").await;
    assert!(console.browser.current_url().await.unwrap().path() == "/login");

    // Five wrong passwords lock the account; the sixth try meets the API's lock message.
    for _ in 0..5 {
        console.login(ORG_A, "guessed", "wrong-password").await;
        console.wait_text("main", "正しくありません").await;
    }
    console.login(ORG_A, "guessed", PASSWORD).await;
    console
        .wait_text("main", "アカウントがロックされています")
        .await;
    console.screenshot("06-login-locked").await;
    assert!(
        console
            .browser
            .find(Locator::Css("#password"))
            .await
            .is_ok(),
        "still on the login form"
    );
}

/// The items the entry form offers once `procedure` is chosen (htmx swaps them in).
async fn offered_items(console: &Console, procedure: &str) -> Vec<String> {
    console
        .find("#inq-procedure")
        .await
        .select_by_value(procedure)
        .await
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        // Elements read while htmx swaps the list go stale: read again.
        if let Ok(Some(values)) = items_for(console, procedure).await {
            return values;
        }
        assert!(
            std::time::Instant::now() < until,
            "no items offered for {procedure}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The offered items, once the swapped-in list is the one for `procedure`.
async fn items_for(
    console: &Console,
    procedure: &str,
) -> Result<Option<Vec<String>>, fantoccini::error::CmdError> {
    let list = console.browser.find(Locator::Css("#info-items")).await?;
    if list.attr("data-procedure").await?.as_deref() != Some(procedure) {
        return Ok(None);
    }
    let mut values = Vec::new();
    for o in list.find_all(Locator::Css("#inq-info option")).await? {
        if let Some(v) = o.attr("value").await?.filter(|v| !v.is_empty()) {
            values.push(v);
        }
    }
    Ok((!values.is_empty()).then_some(values))
}

/// Sets a date field as a user would pick it (typing into a date input depends on the locale).
async fn set_date(console: &Console, id: &str, date: &str) {
    console
        .browser
        .execute(
            "document.getElementById(arguments[0]).value = arguments[1];",
            vec![id.into(), date.into()],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inquiry_answered_by_hand_is_recorded_counted_and_uploads_show_progress() {
    use crate::inquiry::{MEDICAL, NHI_BENEFIT};
    // Tree heads signed every second, so a record's proof is soon available.
    let (stack, _token_a, token_b) =
        crate::inquiry::two_municipalities_with(&[("CHUKAN__AUDIT__TREE_HEAD_INTERVAL_SECS", "1")])
            .await;
    // B answers No. 31 only by hand.
    let (status, body) = stack
        .call(
            reqwest::Method::PUT,
            &token_b,
            "/v1/flags",
            Some(serde_json::json!({
                "integrated_addressee_number": ADDRESSEE, "non_disclosure": false,
                "self_info_prohibited": false, "auto_response_prohibited": [{"info_code": MEDICAL}]
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    user(&stack, ORG_A, "staffa", "business_staff");
    user(&stack, ORG_B, "staffb", "business_staff");
    let console = Console::start(&stack).await;

    // 情報照会: the procedure decides which items may be asked (別表第二).
    console.login(ORG_A, "staffa", PASSWORD).await;
    console.wait_text("h1", "ホーム").await;
    console.go("/inquiries/new").await;
    let child = offered_items(&console, "JT00000000000101").await;
    assert!(
        !child.contains(&MEDICAL.to_string()),
        "児童手当 may not ask No. 31: {child:?}"
    );
    let nhi = offered_items(&console, NHI_BENEFIT).await;
    assert!(nhi.contains(&MEDICAL.to_string()), "{nhi:?}");
    console
        .find("#inq-info")
        .await
        .select_by_value(MEDICAL)
        .await
        .unwrap();
    console.fill("#inq-addressee", ADDRESSEE).await;
    console.fill("#inq-provider", ORG_B).await;
    set_date(&console, "inq-asof", "2017-02-28").await;
    console.screenshot("07-inquiry-entry").await;
    console
        .click("form[action='/inquiries'] button[type=submit]")
        .await;
    console.wait_text("#inq-status", "回答待ち").await;
    let inquiry_url = console.browser.current_url().await.unwrap();
    assert!(!inquiry_url.as_str().contains(ADDRESSEE), "{inquiry_url}");
    console.go("/").await;
    console.click("header form button").await;
    console.wait_for("#password").await;

    // 情報提供: B's staff answer it from the manual-answer queue.
    console.login(ORG_B, "staffb", PASSWORD).await;
    console.wait_text("h1", "ホーム").await;
    console.go("/provisions").await;
    let answer = console.wait_for("a[href$='#answer']").await;
    console.screenshot("08-provisions-waiting").await;
    answer.click().await.unwrap();
    console
        .wait_for("#ans-provide")
        .await
        .click()
        .await
        .unwrap();
    console.click("form[action$='/answer'] button").await;
    console.wait_text("main", "提供した").await;
    console.go("/").await;
    console.click("header form button").await;
    console.wait_for("#password").await;

    // A sees the answer on the inquiry's page.
    console.login(ORG_A, "staffa", PASSWORD).await;
    console.wait_text("h1", "ホーム").await;
    console.browser.goto(inquiry_url.as_str()).await.unwrap();
    console.wait_text("#inq-status", "提供あり").await;
    console.screenshot("09-inquiry-result").await;

    // 情報提供等記録: A's record of the exchange, made non-disclosable, its proof verified.
    // The log is appended from the bus: search again until the exchange is there.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let found = loop {
        console.go("/records").await;
        console.click("form[action='/records/search'] button").await;
        console.wait_text("main", "検索結果").await;
        if let Ok(link) = console
            .browser
            .find(Locator::Css("a[href^='/records/']"))
            .await
        {
            break link;
        }
        assert!(
            std::time::Instant::now() < until,
            "no record: {}",
            console.main_text().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    console.screenshot("10-records").await;
    found.click().await.unwrap();
    console
        .wait_for("#disc-closed")
        .await
        .click()
        .await
        .unwrap();
    console.click("form[action$='/disclosure'] button").await;
    console.wait_text("main", "開示設定を変更しました").await;
    // The change is a record of its own, appended from the bus: the record shows it once
    // it is in the log.
    let record = console.browser.current_url().await.unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if console.find("#disclosure-now").await.text().await.unwrap() == "不開示" {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the record still shows its old disclosure"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        console.browser.goto(record.as_str()).await.unwrap();
    }
    console.screenshot("11-record-disclosure").await;
    // Until the next tree head is signed the page says so; staff would reload.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        console.go(&format!("{}/proof", record.path())).await;
        if console.main_text().await.contains("検証成功") {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "proof not verified: {}",
            console.main_text().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    console.screenshot("12-record-proof").await;

    // 統計: the day's exchanges, and their CSV as the browser would download it.
    // Counted from the bus: reload until the answer is counted.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        console.go("/statistics").await;
        let cells = console
            .browser
            .find_all(Locator::Css("td .mono"))
            .await
            .unwrap();
        let mut counted = false;
        for c in cells {
            counted |= c.text().await.unwrap() == "result.received";
        }
        if counted {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "result.received never counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(
        console
            .browser
            .find(Locator::Css("svg.chart"))
            .await
            .is_ok(),
        "a chart"
    );
    console.screenshot("13-statistics").await;
    let cookie = console.session_cookie().await;
    let csv = reqwest::Client::new()
        .get(format!("{}/statistics/exchanges.csv", console.url))
        .header(
            "cookie",
            format!("__Host-chukan-session={}", cookie.value()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let kind = csv.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/csv"), "{kind}");
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    assert!(csv.text().await.unwrap().contains("result.received"));

    // 副本: an upload followed to its end as htmx polls it.
    run_json(
        &stack.env,
        &[
            "admin",
            "update-tenant",
            "--org",
            ORG_A,
            "--immediate",
            "true",
        ],
    );
    crate::replica::provision_processes(&stack, ORG_A, true).await;
    let list = crate::replica::Scratch(crate::replica::scratch_file("console-list.xml"));
    crate::replica::write_list(&list.0, 50);
    console.go("/replicas").await;
    console
        .find("#up-file")
        .await
        .send_keys(list.0.to_str().unwrap())
        .await
        .unwrap();
    console
        .click("form[action='/replicas/uploads'] button")
        .await;
    // The state cell names the upload's state (its class too); htmx swaps it as it moves.
    console.wait_for("#upload-status .status-done").await;
    let progress = console.find("#upload-progress").await;
    assert_eq!(
        progress.attr("value").await.unwrap().as_deref(),
        Some("100")
    );
    console.screenshot("14-replica-upload").await;

    // お知らせ: composed with reply choices, then shown with its state.
    console.go("/notices/new").await;
    console.fill("#n-addressee", ADDRESSEE).await;
    console.fill("#n-title", "健診のご案内").await;
    console.fill("#n-body", "受診日を選んでください。").await;
    console.fill("#n-choices", "はい\nいいえ").await;
    console.screenshot("15-notice-compose").await;
    console
        .click("form[action='/notices'] button[type=submit]")
        .await;
    console.wait_text("main", "健診のご案内").await;
    let notice = console.browser.current_url().await.unwrap();
    assert!(notice.path().starts_with("/notices/"), "{notice}");
    console.screenshot("16-notice").await;

    // 一括照会: a file with a bad line; the page lists that line's error and sends the rest.
    let bulk = crate::replica::Scratch(crate::replica::scratch_file("console-bulk.txt"));
    let lines = [
        crate::inquiry::bulk_line(ADDRESSEE, (crate::inquiry::NHI_AFFAIR, NHI_BENEFIT), ORG_A),
        crate::inquiry::bulk_line(
            "00000000000A777",
            (crate::inquiry::NHI_AFFAIR, NHI_BENEFIT),
            ORG_A,
        ),
    ];
    std::fs::write(&bulk.0, lines.join("\r\n") + "\r\n").unwrap();
    console.go("/inquiries/batches").await;
    console
        .find("#batch-file")
        .await
        .send_keys(bulk.0.to_str().unwrap())
        .await
        .unwrap();
    console
        .click("form[enctype='multipart/form-data'] button[type=submit]")
        .await;
    let errors = console.wait_for("#line-errors").await;
    assert!(errors.text().await.unwrap().contains("不備"));
    let progress = console.find("#batch-progress").await.text().await.unwrap();
    assert!(progress.contains('2'), "two lines read: {progress}");
    console.screenshot("17-inquiry-batch").await;
}
