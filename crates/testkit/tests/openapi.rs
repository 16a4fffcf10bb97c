#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The merged OpenAPI document on the real HTTP server.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use chukan_runtime::Parts;
use chukan_testkit::TestEnv;
use serde_json::Value;
use utoipa::openapi::{
    HttpMethod, OpenApiBuilder, PathItem, PathsBuilder, ResponseBuilder, path::OperationBuilder,
};

/// A part serving `GET {path}` and documenting it.
fn documented_part(name: &'static str, path: &'static str) -> Parts {
    let op = OperationBuilder::new()
        .operation_id(Some(name))
        .response("200", ResponseBuilder::new().description("ok").build())
        .build();
    let doc = OpenApiBuilder::new()
        .paths(
            PathsBuilder::new()
                .path(path, PathItem::new(HttpMethod::Get, op))
                .build(),
        )
        .build();
    Parts {
        name,
        routes: Some(Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.route(
                path,
                web::get().to(|| async { HttpResponse::Ok().body("ok") }),
            );
        })),
        workers: vec![],
        openapi: Some(doc),
    }
}

#[actix_web::test]
async fn every_parts_document_is_merged_and_served_without_a_token() {
    let env = TestEnv::new(&[]).await.unwrap();
    let api = env
        .spawn_api(vec![
            documented_part("one", "/v1/one"),
            documented_part("two", "/v1/two"),
            // A part without a document (like relay) adds nothing and breaks nothing.
            Parts {
                name: "silent",
                routes: None,
                workers: vec![],
                openapi: None,
            },
        ])
        .await
        .unwrap();
    let res = api.http.get(api.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "application/json"
    );
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["title"], "chukan API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["paths"]["/v1/one"]["get"]["operationId"], "one");
    assert_eq!(doc["paths"]["/v1/two"]["get"]["operationId"], "two");
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(bearer["bearerFormat"], "JWT");

    // The documented routes themselves are still served.
    let one = api.http.get(api.url("/v1/one")).send().await.unwrap();
    assert_eq!(one.status(), 200);
    api.shutdown().await;
}
