//! The attachments API: upload, replace, list, download, delete; bad input changes nothing.

use chukan_auth::Role;
use serde_json::Value;

use crate::helpers::{INFO, INFO_OTHER, ORG_A, ORG_B, spawn_app};

#[actix_web::test]
async fn attachments_are_uploaded_replaced_listed_downloaded_and_deleted() {
    let app = spawn_app().await;
    let staff = app.token(ORG_A, Role::BusinessStaff);
    let admin = app.token(ORG_A, Role::SystemAdmin);
    let path = format!("/v1/selfinfo/attachments/{INFO}/案内.pdf");

    let res = app
        .put_file(&staff, &path, "application/pdf", b"first".to_vec())
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["file_name"], "案内.pdf");
    assert_eq!(body["size_bytes"], 5);
    assert_eq!(body["uploaded_by"], "test-user");

    // Administrators manage accounts and settings, not self-information (separation of
    // duties): refused before anything is read.
    let res = app
        .put_file(&admin, &path, "application/pdf", b"x".to_vec())
        .await;
    assert_eq!(res.status(), 403);
    // Same name again: replaced.
    let res = app
        .put_file(
            &staff,
            &path,
            "application/pdf; version=2",
            b"second!".to_vec(),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .put_file(
            &staff,
            &format!("/v1/selfinfo/attachments/{INFO_OTHER}/b.txt"),
            "text/plain",
            b"b".to_vec(),
        )
        .await;
    assert_eq!(res.status(), 201);

    let list = app.get_json(&staff, "/v1/selfinfo/attachments").await;
    let all = list["attachments"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["info_code"], INFO);
    assert_eq!(all[0]["media_type"], "application/pdf; version=2");
    assert_eq!(all[0]["size_bytes"], 7);
    let one = app
        .get_json(
            &staff,
            &format!("/v1/selfinfo/attachments?info_code={INFO_OTHER}"),
        )
        .await;
    assert_eq!(one["attachments"].as_array().unwrap().len(), 1);

    let res = app.get(&staff, &path).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/pdf; version=2"
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"second!");

    // Another tenant sees and deletes nothing of A's.
    let other = app.token(ORG_B, Role::BusinessStaff);
    let theirs = app.get_json(&other, "/v1/selfinfo/attachments").await;
    assert!(theirs["attachments"].as_array().unwrap().is_empty());
    assert_eq!(app.delete(&other, &path).await.status(), 404);

    assert_eq!(app.delete(&staff, &path).await.status(), 204);
    assert_eq!(app.delete(&staff, &path).await.status(), 404);
    assert_eq!(app.get(&staff, &path).await.status(), 404);
    let list = app.get_json(&staff, "/v1/selfinfo/attachments").await;
    assert_eq!(list["attachments"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn bad_uploads_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let staff = app.token(ORG_A, Role::BusinessStaff);
    let cases: Vec<(String, &str, Vec<u8>, u16, &str)> = vec![
        (
            "/v1/selfinfo/attachments/TM123/a.pdf".into(),
            "application/pdf",
            b"x".to_vec(),
            400,
            "invalid-field",
        ),
        (
            format!("/v1/selfinfo/attachments/{INFO}/a%01b.pdf"),
            "application/pdf",
            b"x".to_vec(),
            400,
            "invalid-field",
        ),
        (
            format!("/v1/selfinfo/attachments/{INFO}/a%5Cb.pdf"),
            "application/pdf",
            b"x".to_vec(),
            400,
            "invalid-field",
        ),
        (
            format!("/v1/selfinfo/attachments/{INFO}/empty.pdf"),
            "application/pdf",
            Vec::new(),
            400,
            "invalid-field",
        ),
        (
            // Well-formed, but not an item of the data standard layout.
            "/v1/selfinfo/attachments/TM99999999999999/a.pdf".into(),
            "application/pdf",
            b"x".to_vec(),
            422,
            "unknown-info-code",
        ),
        (
            format!("/v1/selfinfo/attachments/{INFO}/huge.pdf"),
            "application/pdf",
            vec![0u8; 64 * 1024 + 1],
            413,
            "payload-too-large",
        ),
    ];
    for (path, media, body, status, code) in cases {
        let res = app.put_file(&staff, &path, media, body).await;
        assert_eq!(res.status(), status, "{path}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], code, "{path}");
        assert!(!problem["detail"].as_str().unwrap().is_empty());
        assert!(!problem["action"].as_str().unwrap().is_empty());
    }
    // Business systems may not manage attachments.
    let res = app
        .put_file(
            &app.token(ORG_A, Role::SystemClient),
            &format!("/v1/selfinfo/attachments/{INFO}/a.pdf"),
            "application/pdf",
            b"x".to_vec(),
        )
        .await;
    assert_eq!(res.status(), 403);
    let list = app.get_json(&staff, "/v1/selfinfo/attachments").await;
    assert!(list["attachments"].as_array().unwrap().is_empty());
}

#[actix_web::test]
async fn every_route_is_in_the_openapi_document() {
    let app = spawn_app().await;
    let doc: Value = app
        .api
        .http
        .get(app.api.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let one = "/v1/selfinfo/attachments/{info_code}/{file_name}";
    for (path, methods) in [
        ("/v1/selfinfo/attachments", &["get"][..]),
        (one, &["put", "get", "delete"][..]),
        ("/v1/selfinfo/requests", &["get"][..]),
        ("/v1/selfinfo/requests/{id}", &["get"][..]),
    ] {
        for m in methods {
            assert!(doc["paths"][path][m].is_object(), "{m} {path} missing");
        }
    }
    let put = &doc["paths"][one]["put"];
    assert!(put["responses"]["201"].is_object());
    assert!(put["responses"]["413"].is_object());
    assert_eq!(
        put["security"][0]["bearer"],
        serde_json::json!(["business_staff"])
    );
}

#[actix_web::test]
async fn a_stored_file_is_served_back_as_a_download_never_as_a_page() {
    let app = spawn_app().await;
    let staff = app.token(ORG_A, Role::BusinessStaff);
    let path = format!("/v1/selfinfo/attachments/{INFO}/%E6%A1%88%E5%86%85.html");
    let page = b"<script>alert(document.cookie)</script>\0binary\0".to_vec();
    let res = app.put_file(&staff, &path, "text/html", page.clone()).await;
    assert_eq!(
        res.status(),
        201,
        "binary content (NUL bytes too) is taken as it is"
    );
    let res = app.get(&staff, &path).await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(
        h["content-disposition"].to_str().unwrap(),
        "attachment; filename=\"__.html\"; filename*=UTF-8''%E6%A1%88%E5%86%85.html"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("sandbox") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), page.as_slice());
}
