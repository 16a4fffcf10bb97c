//! The provision routes are described in the served OpenAPI document.

use crate::helpers::*;

#[actix_rt::test]
async fn every_provision_route_is_in_the_openapi_document() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .api
        .http
        .get(app.api.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/replica-uploads",
        "/v1/replica-uploads/{id}",
        "/v1/replica-uploads/{id}/rejections",
        "/v1/replicas",
        "/v1/replica-queries",
        "/v1/replica-bulk-deletions",
        "/v1/reconciliations",
        "/v1/reconciliations/{id}",
        "/v1/reconciliations/{id}/file",
        "/v1/replica-quota",
        "/v1/replica-upload-slots",
        "/v1/replica-counts",
        "/v1/flags/{addressee}",
        "/v1/provisions",
        "/v1/provisions/{permit_id}",
        "/v1/provisions/{permit_id}/answer",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let upload = &doc["paths"]["/v1/replica-uploads"]["post"];
    assert!(upload["responses"]["409"].is_object());
    assert!(upload["responses"]["422"].is_object());
    assert!(upload["requestBody"]["content"]["application/xml"].is_object());
    let flags = &doc["paths"]["/v1/flags/{addressee}"];
    assert!(flags["get"].is_object() && flags["put"].is_object());
    let answer = &doc["paths"]["/v1/provisions/{permit_id}/answer"]["post"];
    assert!(answer["responses"]["409"].is_object());
}
