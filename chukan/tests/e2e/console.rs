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
