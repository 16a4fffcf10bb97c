//! System clients: creation, client-credentials login, secrets never shown twice.

use chukan_core::ids::OrgCode;
use serde_json::{Value, json};

use crate::helpers::{TENANT_A, TENANT_B, assert_problem, claims, spawn_app};

async fn client_token(app: &crate::helpers::TestApp, id: &str, secret: &str) -> reqwest::Response {
    app.api
        .http
        .post(app.url("/v1/auth/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        )
        .send()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn client_credentials_give_a_system_client_token_for_the_tenant() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    let res = app
        .post(&admin, "/v1/clients", &json!({"name": "住民記録システム"}))
        .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let id = created["client_id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();
    assert!(id.starts_with(&format!("{TENANT_A}.")), "{id}");
    assert_eq!(secret.len(), 64);

    let res = client_token(&app, id, secret).await;
    assert_eq!(res.status(), 200);
    let token = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let c = claims(&token);
    assert_eq!(c["tenant"], TENANT_A);
    assert_eq!(c["sub"], id);
    assert_eq!(c["roles"], json!(["system_client"]));

    let me: Value = app
        .get(&token, "/v1/tenants/self")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["org_code"], TENANT_A);
    // A system client is not an administrator.
    assert_problem(app.get(&token, "/v1/users").await, 403, "forbidden").await;

    // The list never shows a secret or its hash.
    let list: Value = app.get(&admin, "/v1/clients").await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["client_id"], id);
    assert!(list[0].get("client_secret").is_none());
    assert!(list[0].get("secret_hash").is_none());
    assert!(!list.to_string().contains(secret));

    // Tenant B's administrator does not see tenant A's clients.
    let admin_b = app.token(TENANT_B, "admin1").await;
    let list_b: Value = app.get(&admin_b, "/v1/clients").await.json().await.unwrap();
    assert_eq!(list_b, json!([]));
}

#[actix_rt::test]
async fn a_wrong_secret_or_unknown_client_is_refused() {
    let app = spawn_app().await;
    let (id, secret) = chukan_admin::create_client(
        &app.env.ctx.db,
        &OrgCode::parse(TENANT_A).unwrap(),
        "税務システム",
        None,
    )
    .await
    .unwrap();
    let wrong = "0".repeat(64);
    let refused =
        assert_problem(client_token(&app, &id, &wrong).await, 401, "invalid-client").await;
    // The same client id under another tenant's prefix is a different (unknown) client.
    let moved = id.replacen(TENANT_A, TENANT_B, 1);
    let unknown = assert_problem(
        client_token(&app, &moved, &secret).await,
        401,
        "invalid-client",
    )
    .await;
    assert_eq!(refused, unknown);
    assert_problem(
        client_token(&app, "no-dot-here", &secret).await,
        401,
        "invalid-client",
    )
    .await;
    // The right secret still works.
    assert_eq!(client_token(&app, &id, &secret).await.status(), 200);
}

#[actix_rt::test]
async fn a_platform_client_gets_a_token_without_a_tenant_that_organisation_routes_refuse() {
    let app = spawn_app().await;
    let (id, secret) = chukan_admin::create_platform_client(&app.env.ctx.db, "J-LIS 運用")
        .await
        .unwrap();
    assert!(id.starts_with("platform."), "{id}");
    let res = client_token(&app, &id, &secret).await;
    assert_eq!(res.status(), 200);
    let token = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let c = claims(&token);
    assert_eq!(c["tenant"], "");
    assert_eq!(c["roles"], json!(["platform_operator"]));
    assert!(c.get("dept").is_none());
    // No organisation route takes it: it has none of their roles and no tenant.
    for path in [
        "/v1/users",
        "/v1/clients",
        "/v1/tenants/self",
        "/v1/departments",
    ] {
        assert_problem(app.get(&token, path).await, 403, "forbidden").await;
    }
    // A wrong secret, or a platform id that does not exist, is refused like any client.
    assert_eq!(client_token(&app, &id, "00").await.status(), 401);
    let unknown = "platform.00000000000000000000000000000000";
    assert_eq!(client_token(&app, unknown, &secret).await.status(), 401);
    // A name is required.
    assert!(
        chukan_admin::create_platform_client(&app.env.ctx.db, " ")
            .await
            .is_err()
    );
}
