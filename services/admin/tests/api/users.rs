//! /v1/users: roles, the tenant wall, the password policy, validity and the
//! two-administrator rule.

use chukan_admin::NewUser;
use chukan_auth::Role;
use chukan_core::ids::OrgCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TENANT_A, TENANT_B, assert_problem, japan_today, spawn_app};

#[actix_rt::test]
async fn business_staff_cannot_create_users() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    app.create_user(&admin, "staff1", &["business_staff"]).await;
    let staff = app.token(TENANT_A, "staff1").await;

    let res = app
        .post(
            &staff,
            "/v1/users",
            &json!({"login_id": "sneaky", "display_name": "x", "password": PASSWORD, "roles": ["system_admin"]}),
        )
        .await;
    assert_problem(res, 403, "forbidden").await;
    assert!(!app.login_ids(&admin).await.contains(&"sneaky".to_string()));
    // Nor list them.
    assert_problem(app.get(&staff, "/v1/users").await, 403, "forbidden").await;
}

#[actix_rt::test]
async fn calls_without_a_token_are_refused() {
    let app = spawn_app().await;
    let res = app.api.http.get(app.url("/v1/users")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .api
        .http
        .get(app.url("/v1/users"))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[actix_rt::test]
async fn an_administrator_cannot_see_list_or_unlock_another_tenants_users() {
    let app = spawn_app().await;
    let admin_a = app.token(TENANT_A, "admin1").await;
    let admin_b = app.token(TENANT_B, "admin1").await;
    let b_user = app
        .create_user(&admin_b, "b-staff", &["business_staff"])
        .await;
    for _ in 0..5 {
        assert_eq!(
            app.login(TENANT_B, "b-staff", "wrong password 123")
                .await
                .status(),
            401
        );
    }

    assert!(
        !app.login_ids(&admin_a)
            .await
            .contains(&"b-staff".to_string())
    );
    assert_eq!(
        app.login_ids(&admin_b).await,
        vec!["admin1", "admin2", "b-staff"]
    );
    assert_problem(
        app.get(&admin_a, &format!("/v1/users/{b_user}")).await,
        404,
        "not-found",
    )
    .await;
    assert_problem(
        app.post(&admin_a, &format!("/v1/users/{b_user}/unlock"), &json!({}))
            .await,
        404,
        "not-found",
    )
    .await;
    assert_problem(
        app.post(
            &admin_a,
            &format!("/v1/users/{}/valid-to", app.admin_b),
            &json!({"valid_to": japan_today(&app)}),
        )
        .await,
        404,
        "not-found",
    )
    .await;
    // Tenant A's unlock changed nothing in tenant B.
    assert_problem(
        app.login(TENANT_B, "b-staff", PASSWORD).await,
        423,
        "account-locked",
    )
    .await;
}

#[actix_rt::test]
async fn a_weak_password_is_refused_and_no_user_is_stored() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    let res = app
        .post(
            &admin,
            "/v1/users",
            &json!({"login_id": "weak1", "display_name": "弱い", "password": "short-pw-11", "roles": ["business_staff"]}),
        )
        .await;
    let body = assert_problem(res, 400, "weak-password").await;
    assert!(!body.to_string().contains("short-pw-11"), "password echoed");
    assert!(!app.login_ids(&admin).await.contains(&"weak1".to_string()));
}

#[actix_rt::test]
async fn malformed_json_is_a_problem_and_stores_nothing() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    let before = app.login_ids(&admin).await;
    let res = app
        .api
        .http
        .post(app.url("/v1/users"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"login_id\": \"half\", \"password\": \"{PASSWORD}\""
        ))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 400, "malformed-json").await;
    assert!(!body.to_string().contains(PASSWORD));
    // Unknown roles and fields are refused too.
    let res = app
        .post(
            &admin,
            "/v1/users",
            &json!({"login_id": "half", "display_name": "x", "password": PASSWORD, "roles": ["root"]}),
        )
        .await;
    assert_problem(res, 400, "invalid-roles").await;
    assert_eq!(app.login_ids(&admin).await, before);
}

#[actix_rt::test]
async fn a_login_id_is_unique_within_a_tenant_only() {
    let app = spawn_app().await;
    let admin_a = app.token(TENANT_A, "admin1").await;
    let admin_b = app.token(TENANT_B, "admin1").await;
    let first = app
        .create_user(&admin_a, "suzuki", &["business_staff"])
        .await;
    let res = app
        .post(
            &admin_a,
            "/v1/users",
            &json!({"login_id": "suzuki", "display_name": "別人", "password": PASSWORD, "roles": ["business_staff"]}),
        )
        .await;
    assert_problem(res, 409, "duplicate-login-id").await;
    let other = app
        .create_user(&admin_b, "suzuki", &["business_staff"])
        .await;
    assert_ne!(first, other);

    let user: Value = app
        .get(&admin_a, &format!("/v1/users/{first}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["login_id"], "suzuki");
    assert_eq!(user["roles"], json!(["business_staff"]));
    assert!(user.get("password_hash").is_none());
    assert!(!user.to_string().contains("argon2"));
}

#[actix_rt::test]
async fn validity_cannot_be_changed_retroactively() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    let staff = app.create_user(&admin, "staff1", &["business_staff"]).await;
    let yesterday = japan_today(&app).pred_opt().unwrap();

    let res = app
        .post(
            &admin,
            &format!("/v1/users/{staff}/valid-to"),
            &json!({"valid_to": yesterday}),
        )
        .await;
    assert_problem(res, 400, "retroactive-change").await;
    let user: Value = app
        .get(&admin, &format!("/v1/users/{staff}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["valid_to"], Value::Null);

    // Creating a user valid from the past is a retroactive edit too.
    let res = app
        .post(
            &admin,
            "/v1/users",
            &json!({"login_id": "past", "display_name": "x", "password": PASSWORD,
                    "roles": ["business_staff"], "valid_from": yesterday}),
        )
        .await;
    assert_problem(res, 400, "retroactive-change").await;

    // Today and later are accepted.
    let next_month = japan_today(&app) + chrono::Duration::days(30);
    let res = app
        .post(
            &admin,
            &format!("/v1/users/{staff}/valid-to"),
            &json!({"valid_to": next_month}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["valid_to"], next_month.to_string());

    // Once the validity has ended, it cannot be reopened.
    app.clock.advance(chrono::Duration::days(40));
    let later = japan_today(&app) + chrono::Duration::days(30);
    let res = app
        .post(
            &admin,
            &format!("/v1/users/{staff}/valid-to"),
            &json!({"valid_to": later}),
        )
        .await;
    assert_problem(res, 400, "retroactive-change").await;
}

#[actix_rt::test]
async fn ending_an_administrator_below_two_valid_administrators_is_refused() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    let today = japan_today(&app);

    let res = app
        .post(
            &admin,
            &format!("/v1/users/{}/valid-to", app.admin_a2),
            &json!({"valid_to": today}),
        )
        .await;
    let body = assert_problem(res, 409, "too-few-administrators").await;
    assert!(
        body["action"]
            .as_str()
            .unwrap()
            .contains("システム管理者を登録")
    );
    let user: Value = app
        .get(&admin, &format!("/v1/users/{}", app.admin_a2))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["valid_to"], Value::Null);

    // Ending a business staff member is not limited.
    let staff = app.create_user(&admin, "staff1", &["business_staff"]).await;
    let res = app
        .post(
            &admin,
            &format!("/v1/users/{staff}/valid-to"),
            &json!({"valid_to": today}),
        )
        .await;
    assert_eq!(res.status(), 200);

    // With a third administrator, one of them may go.
    app.create_user(&admin, "admin3", &["system_admin", "business_staff"])
        .await;
    let res = app
        .post(
            &admin,
            &format!("/v1/users/{}/valid-to", app.admin_a2),
            &json!({"valid_to": today}),
        )
        .await;
    assert_eq!(res.status(), 200);
    // …but then not a second one.
    let res = app
        .post(
            &admin,
            &format!("/v1/users/{}/valid-to", app.admin_a),
            &json!({"valid_to": today}),
        )
        .await;
    assert_problem(res, 409, "too-few-administrators").await;
}

#[actix_rt::test]
async fn roles_change_keeps_two_administrators_and_leaves_a_trail() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    let staff = app.create_user(&admin, "staff1", &["business_staff"]).await;
    let roles_of = |id: uuid::Uuid| format!("/v1/users/{id}/roles");

    // Taking administrator rights from one of the only two is refused, and nothing changes.
    let res = app
        .put(
            &admin,
            &roles_of(app.admin_a2),
            &json!({"roles": ["business_staff"]}),
        )
        .await;
    assert_problem(res, 409, "too-few-administrators").await;
    let user: Value = app
        .get(&admin, &format!("/v1/users/{}", app.admin_a2))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["roles"], json!(["system_admin"]));

    // Only staff roles, at least one.
    for bad in [json!({"roles": []}), json!({"roles": ["system_client"]})] {
        let res = app.put(&admin, &roles_of(staff), &bad).await;
        assert_problem(res, 400, "invalid-roles").await;
    }
    // A business staff member may not change roles, not even their own.
    let staff_token = app.token(TENANT_A, "staff1").await;
    let res = app
        .put(
            &staff_token,
            &roles_of(staff),
            &json!({"roles": ["system_admin"]}),
        )
        .await;
    assert_problem(res, 403, "forbidden").await;
    // Another tenant's user is not found.
    let res = app
        .put(
            &admin,
            &roles_of(app.admin_b),
            &json!({"roles": ["business_staff"]}),
        )
        .await;
    assert_problem(res, 404, "not-found").await;

    // Promoting staff1 makes a third administrator; then admin2 may step down.
    let res = app
        .put(
            &admin,
            &roles_of(staff),
            &json!({"roles": ["business_staff", "system_admin", "system_admin"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["roles"], json!(["business_staff", "system_admin"]));
    // The new role counts from the next login.
    let promoted = app.token(TENANT_A, "staff1").await;
    assert_eq!(app.get(&promoted, "/v1/users").await.status(), 200);

    let res = app
        .put(
            &admin,
            &roles_of(app.admin_a2),
            &json!({"roles": ["business_staff"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    // …but not a second one.
    let res = app
        .put(
            &admin,
            &roles_of(app.admin_a),
            &json!({"roles": ["business_staff"]}),
        )
        .await;
    assert_problem(res, 409, "too-few-administrators").await;
    // Sending the roles a user already has changes nothing and records nothing.
    let res = app
        .put(
            &admin,
            &roles_of(app.admin_a2),
            &json!({"roles": ["business_staff"]}),
        )
        .await;
    assert_eq!(res.status(), 200);

    let mut client = app.env.ctx.db.get().await.unwrap();
    let tx = chukan_db::tenant_tx(&mut client, TENANT_A).await.unwrap();
    let trail = chukan_admin::store::account_events(&tx, app.admin_a2)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let admin_id = app.admin_a.to_string();
    let events: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|(e, a, r, _)| (e.as_str(), a.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        events,
        [(
            "roles-changed",
            admin_id.as_str(),
            "system_admin → business_staff"
        )]
    );
}

#[actix_rt::test]
async fn seeding_a_user_twice_keeps_the_first_password() {
    let app = spawn_app().await;
    let tenant = OrgCode::parse(TENANT_A).unwrap();
    let mut user = NewUser {
        login_id: "admin1".into(),
        display_name: "管理者".into(),
        password: "a different password".into(),
        roles: vec![Role::SystemAdmin],
        department: None,
    };
    let id = chukan_admin::create_user(&app.env.ctx.db, &tenant, &user)
        .await
        .unwrap();
    assert_eq!(id, app.admin_a);
    assert_eq!(
        app.login(TENANT_A, "admin1", "a different password")
            .await
            .status(),
        401
    );
    app.token(TENANT_A, "admin1").await;

    user.password = "too short".into();
    user.login_id = "new-one".into();
    assert!(
        chukan_admin::create_user(&app.env.ctx.db, &tenant, &user)
            .await
            .is_err()
    );
    // A tenant that is not registered cannot get users.
    user.password = PASSWORD.into();
    let unknown = OrgCode::parse("0999999999999999").unwrap();
    assert!(
        chukan_admin::create_user(&app.env.ctx.db, &unknown, &user)
            .await
            .is_err()
    );
}
