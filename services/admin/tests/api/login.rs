//! POST /v1/auth/token: passwords, lockout, validity, and what a refusal does not reveal.

use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TENANT_A, TENANT_B, assert_problem, claims, japan_today, spawn_app,
};

#[actix_rt::test]
async fn a_good_password_gives_a_token_carrying_tenant_roles_and_department() {
    let app = spawn_app().await;
    let res = app.login(TENANT_A, "admin1", PASSWORD).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["tenant"], TENANT_A);
    assert_eq!(c["sub"], app.admin_a.to_string());
    assert_eq!(c["roles"], json!(["system_admin"]));
    assert_eq!(c["dept"], "情報政策課");
}

#[actix_rt::test]
async fn five_failed_logins_lock_the_account_until_an_administrator_unlocks_it() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    let staff = app.create_user(&admin, "staff1", &["business_staff"]).await;

    for _ in 0..5 {
        let res = app.login(TENANT_A, "staff1", "wrong password 123").await;
        assert_problem(res, 401, "invalid-credentials").await;
    }
    // The sixth attempt, with the right password, meets the lock.
    let body = assert_problem(
        app.login(TENANT_A, "staff1", PASSWORD).await,
        423,
        "account-locked",
    )
    .await;
    assert_eq!(body["detail"], "アカウントがロックされています。");
    assert_eq!(
        body["action"],
        "ロックが解けるのを待つか、システム管理者にロック解除を依頼してください。"
    );

    let user: Value = app
        .get(&admin, &format!("/v1/users/{staff}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["locked"], true);
    assert_eq!(user["failed_logins"], 5);

    let res = app
        .post(&admin, &format!("/v1/users/{staff}/unlock"), &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let unlocked: Value = res.json().await.unwrap();
    assert_eq!(unlocked["locked"], false);
    assert_eq!(unlocked["failed_logins"], 0);

    let token = app.token(TENANT_A, "staff1").await;
    assert_eq!(claims(&token)["roles"], json!(["business_staff"]));
}

#[actix_rt::test]
async fn a_successful_login_resets_the_failure_count() {
    let app = spawn_app().await;
    for _ in 0..4 {
        assert_eq!(
            app.login(TENANT_A, "admin2", "wrong password 123")
                .await
                .status(),
            401
        );
    }
    app.token(TENANT_A, "admin2").await;
    // Four more failures: eight in all, but never five in a row.
    for _ in 0..4 {
        assert_eq!(
            app.login(TENANT_A, "admin2", "wrong password 123")
                .await
                .status(),
            401
        );
    }
    app.token(TENANT_A, "admin2").await;
}

#[actix_rt::test]
async fn concurrent_wrong_passwords_each_count_toward_the_lock() {
    let app = spawn_app().await;
    let attempts = (0..5).map(|_| app.login(TENANT_A, "admin2", "wrong password 123"));
    for res in futures_util::future::join_all(attempts).await {
        assert_eq!(res.status(), 401);
    }
    assert_problem(
        app.login(TENANT_A, "admin2", PASSWORD).await,
        423,
        "account-locked",
    )
    .await;
}

#[actix_rt::test]
async fn unknown_tenant_unknown_user_and_wrong_password_are_one_and_the_same_refusal() {
    let app = spawn_app().await;
    let unknown_tenant = assert_problem(
        app.login("9999999999999999", "admin1", PASSWORD).await,
        401,
        "invalid-credentials",
    )
    .await;
    assert_eq!(
        unknown_tenant["detail"],
        "団体コード、ユーザーID又はパスワードが正しくありません。"
    );
    let unknown_user = assert_problem(
        app.login(TENANT_A, "nobody", PASSWORD).await,
        401,
        "invalid-credentials",
    )
    .await;
    let wrong_password = assert_problem(
        app.login(TENANT_A, "admin1", "wrong password 123").await,
        401,
        "invalid-credentials",
    )
    .await;
    // Tenant B's password for tenant A's user: the tenant is part of the credentials.
    let other_tenant = assert_problem(
        app.login(TENANT_B, "admin1", "wrong password 123").await,
        401,
        "invalid-credentials",
    )
    .await;
    assert_eq!(unknown_tenant, unknown_user);
    assert_eq!(unknown_user, wrong_password);
    assert_eq!(wrong_password, other_tenant);
    assert!(!wrong_password.to_string().contains("wrong password"));
    // Failures below the limit do not stop the right password.
    app.token(TENANT_B, "admin1").await;
}

#[actix_rt::test]
async fn a_user_whose_validity_has_ended_cannot_log_in() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    let today = japan_today(&app);
    let res = app
        .post(
            &admin,
            "/v1/users",
            &json!({
                "login_id": "temp1",
                "display_name": "臨時職員",
                "password": PASSWORD,
                "roles": ["business_staff"],
                "valid_to": today,
            }),
        )
        .await;
    assert_eq!(res.status(), 201);
    // Valid through its last day…
    app.token(TENANT_A, "temp1").await;
    // …and not after it, even with the right password.
    app.clock.advance(chrono::Duration::days(2));
    let body = assert_problem(
        app.login(TENANT_A, "temp1", PASSWORD).await,
        401,
        "account-not-valid",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("有効期間"));
    // The refusal is not a failed password: it does not count toward a lock.
    let user: Value = app
        .get(&app.token(TENANT_A, "admin1").await, "/v1/users")
        .await
        .json()
        .await
        .unwrap();
    let temp = user
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["login_id"] == "temp1")
        .unwrap();
    assert_eq!(temp["failed_logins"], 0);
}

#[actix_rt::test]
async fn malformed_or_incomplete_token_requests_are_problems() {
    let app = spawn_app().await;
    let res = app
        .api
        .http
        .post(app.url("/v1/auth/token"))
        .header("content-type", "application/json")
        .body("{\"grant_type\": \"password\", ")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "malformed-json").await;

    let res = app
        .api
        .http
        .post(app.url("/v1/auth/token"))
        .json(&json!({"grant_type": "password", "tenant": TENANT_A, "username": "admin1"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 400, "missing-field").await;
    assert!(body["detail"].as_str().unwrap().contains("password"));

    let res = app
        .api
        .http
        .post(app.url("/v1/auth/token"))
        .json(&json!({"grant_type": "implicit"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "unsupported-grant-type").await;
}

#[actix_rt::test]
async fn jwks_is_public_and_names_the_signing_key() {
    let app = spawn_app().await;
    let a: Value = app
        .api
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = app
        .api
        .http
        .get(app.url("/v1/auth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a["keys"][0]["kid"],
        app.env.settings.auth.signing_kid.as_str()
    );
    assert_eq!(a["keys"][0]["alg"], "EdDSA");
    assert!(a["keys"][0].get("d").is_none(), "no private key material");
}

/// The attack of issue 11: five wrong passwords each for admin1 and admin2, from outside,
/// with nothing but the org code and guessable login ids. Nobody must be left out for good.
#[actix_rt::test]
async fn nobody_outside_can_lock_every_administrator_out_for_good() {
    let app = spawn_app().await;
    const ATTACKER: &str = "203.0.113.9";
    // Each administrator works from their own terminal.
    for (terminal, login) in [("10.0.0.1", "admin1"), ("10.0.0.2", "admin2")] {
        assert_eq!(
            app.login_from(terminal, TENANT_A, login, PASSWORD)
                .await
                .status(),
            200
        );
    }
    for login in ["admin1", "admin2"] {
        for _ in 0..5 {
            let res = app
                .login_from(ATTACKER, TENANT_A, login, "wrong password 123")
                .await;
            assert_problem(res, 401, "invalid-credentials").await;
        }
        // Locked for strangers: the attacker's next try is refused without a password check.
        let body = assert_problem(
            app.login_from(ATTACKER, TENANT_A, login, PASSWORD).await,
            423,
            "account-locked",
        )
        .await;
        assert!(body["available_at"].is_string(), "{body}");
    }
    // Both administrators still get in from their own terminals.
    for (terminal, login) in [("10.0.0.1", "admin1"), ("10.0.0.2", "admin2")] {
        let res = app.login_from(terminal, TENANT_A, login, PASSWORD).await;
        assert_eq!(res.status(), 200, "{login} from {terminal}");
    }
    // From a new terminal admin2 meets the lock, told when it ends…
    let res = app
        .login_from("10.0.0.99", TENANT_A, "admin2", PASSWORD)
        .await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((800..=900).contains(&retry), "{retry}");
    assert_problem(res, 423, "account-locked").await;
    // …and it ends by itself.
    app.clock.advance(chrono::Duration::minutes(16));
    assert_eq!(
        app.login_from("10.0.0.99", TENANT_A, "admin2", PASSWORD)
            .await
            .status(),
        200
    );

    // A guesser on a trusted terminal is slowed down on its own, the wait doubling.
    for _ in 0..5 {
        let res = app
            .login_from("10.0.0.1", TENANT_A, "admin1", "wrong password 123")
            .await;
        assert_eq!(res.status(), 401);
    }
    let retry_after = |res: &reqwest::Response| -> u64 {
        res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let res = app
        .login_from("10.0.0.1", TENANT_A, "admin1", PASSWORD)
        .await;
    // The clock runs on while the test does: a second may have passed.
    assert!((29..=30).contains(&retry_after(&res)), "{res:?}");
    assert_problem(res, 429, "login-throttled").await;
    app.clock.advance(chrono::Duration::seconds(31));
    let res = app
        .login_from("10.0.0.1", TENANT_A, "admin1", "wrong password 123")
        .await;
    assert_eq!(res.status(), 401);
    let res = app
        .login_from("10.0.0.1", TENANT_A, "admin1", PASSWORD)
        .await;
    assert!((59..=60).contains(&retry_after(&res)), "{res:?}");
    assert_problem(res, 429, "login-throttled").await;

    // A platform operator unlocks at once, and the trail says who and why.
    let org = chukan_core::ids::OrgCode::parse(TENANT_A).unwrap();
    let id = chukan_admin::unlock_user_as_operator(
        &app.env.ctx.db,
        &org,
        "admin1",
        "山田",
        "ヘルプデスク #1234",
    )
    .await
    .unwrap();
    assert_eq!(id, app.admin_a);
    assert_eq!(
        app.login_from("10.0.0.1", TENANT_A, "admin1", PASSWORD)
            .await
            .status(),
        200
    );
    let mut client = app.env.ctx.db.get().await.unwrap();
    let tx = chukan_db::tenant_tx(&mut client, TENANT_A).await.unwrap();
    let trail = chukan_admin::store::account_events(&tx, app.admin_a)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let events: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|(e, a, r, _)| (e.as_str(), a.as_str(), r.as_str()))
        .collect();
    // Locked by the attacker, again by the guesses on the trusted terminal (after the first
    // lock had expired), then unlocked by the operator.
    assert_eq!(
        events,
        [
            ("locked", "login-failures", ""),
            ("locked", "login-failures", ""),
            ("unlocked", "operator:山田", "ヘルプデスク #1234")
        ]
    );
    // An operator unlock needs a name and a reason.
    assert!(
        chukan_admin::unlock_user_as_operator(&app.env.ctx.db, &org, "admin1", "山田", " ")
            .await
            .is_err()
    );
}
