//! `GET /openapi.json` describes admin's routes, and what they really answer matches it.

use serde_json::Value;

use crate::helpers::{TENANT_A, spawn_app};

/// Every admin route with its method, and whether it needs a bearer token.
const ROUTES: &[(&str, &str, bool)] = &[
    ("/v1/auth/token", "post", false),
    ("/v1/auth/jwks", "get", false),
    ("/.well-known/jwks.json", "get", false),
    ("/v1/tenants/self", "get", true),
    ("/v1/users", "post", true),
    ("/v1/users", "get", true),
    ("/v1/users/{id}", "get", true),
    ("/v1/users/{id}/unlock", "post", true),
    ("/v1/users/{id}/valid-to", "post", true),
    ("/v1/users/{id}/roles", "put", true),
    ("/v1/clients", "post", true),
    ("/v1/clients", "get", true),
    ("/v1/batches", "get", true),
];

/// Asserts that every field of a real response is a documented property of `schema`, and
/// every required property is present.
fn assert_matches_schema(doc: &Value, schema: &str, body: &Value) {
    let s = &doc["components"]["schemas"][schema];
    let props = s["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{schema}: {s}"));
    for key in body.as_object().unwrap().keys() {
        assert!(
            props.contains_key(key),
            "{schema} does not document `{key}`"
        );
    }
    for req in s["required"].as_array().into_iter().flatten() {
        let req = req.as_str().unwrap();
        assert!(
            body.get(req).is_some(),
            "{schema}.{req} is required but missing"
        );
    }
}

#[actix_rt::test]
async fn the_openapi_document_covers_every_admin_route_and_is_public() {
    let app = spawn_app().await;
    let res = app
        .api
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["info"]["title"], "chukan API");

    for (path, method, secured) in ROUTES {
        let op = &doc["paths"][*path][*method];
        assert!(op.is_object(), "{method} {path} undocumented");
        assert_eq!(
            op["security"][0]["bearer"].is_array(),
            *secured,
            "{method} {path} security"
        );
        assert!(op["summary"].is_string(), "{method} {path} summary");
    }
    let token = &doc["paths"]["/v1/auth/token"]["post"];
    assert!(token["summary"].as_str().unwrap().contains("ログイン"));
    for code in ["400", "401", "423"] {
        assert_eq!(
            token["responses"][code]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem",
            "token {code}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["OrgCode"]["pattern"], "^[0-9]{16}$");
    assert_eq!(
        schemas["TokenRequest"]["properties"]["tenant"]["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(
                &schemas["TokenRequest"]["properties"]["tenant"]
            ))
            .filter_map(|s| s["$ref"].as_str())
            .next(),
        Some("#/components/schemas/OrgCode")
    );
    assert!(
        schemas["CreateUserRequest"]["required"]
            .as_array()
            .unwrap()
            .contains(&Value::from("password"))
    );
    assert_eq!(
        doc["paths"]["/v1/users"]["post"]["responses"]["409"]["content"]["application/problem+json"]
            ["schema"]["$ref"],
        "#/components/schemas/Problem"
    );

    // What the routes answer is what the document says they answer.
    let login: Value = app
        .login(TENANT_A, "admin1", crate::helpers::PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_matches_schema(&doc, "TokenResponse", &login);
    let token = login["access_token"].as_str().unwrap();
    let tenant: Value = app
        .get(token, "/v1/tenants/self")
        .await
        .json()
        .await
        .unwrap();
    assert_matches_schema(&doc, "Tenant", &tenant);
    let user: Value = app
        .get(token, &format!("/v1/users/{}", app.admin_a))
        .await
        .json()
        .await
        .unwrap();
    assert_matches_schema(&doc, "User", &user);
    let jwks: Value = app
        .api
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_matches_schema(&doc, "Jwks", &jwks);

    let progress = chukan_proto::BatchProgress {
        run_id: uuid::Uuid::now_v7().to_string(),
        job: "replica-uploads".into(),
        tenant: TENANT_A.into(),
        state: "done".into(),
        processed: 3,
        total: 3,
        started_at_ms: 1_775_001_600_000,
        updated_at_ms: 1_775_001_601_000,
        ..Default::default()
    };
    app.deliver_progress(&chukan_mq::OutgoingMessage::new(
        TENANT_A,
        chukan_admin::BATCH_PROGRESS,
        chukan_proto::Message::encode_to_vec(&progress),
    ))
    .await;
    let runs: Value = app.get(token, "/v1/batches").await.json().await.unwrap();
    assert_matches_schema(&doc, "BatchRun", &runs[0]);
    let params = doc["paths"]["/v1/batches"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "job" && p["in"] == "query")
    );
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "limit" && p["in"] == "query")
    );
    assert_matches_schema(&doc, "Jwk", &jwks["keys"][0]);
}
