#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The operations listener and the HTTP metrics middleware, over real sockets.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use actix_web::{App, HttpResponse, test, web};
use chukan_config::MetricsSettings;
use chukan_telemetry::{OpsServer, ReadinessCheck, http_metrics};

fn settings() -> MetricsSettings {
    MetricsSettings {
        host: "127.0.0.1".into(),
        port: 0,
    }
}

fn flag_check(flag: Arc<AtomicBool>) -> ReadinessCheck {
    Arc::new(move || {
        let flag = flag.clone();
        Box::pin(async move { flag.load(Ordering::SeqCst) })
    })
}

async fn get(port: u16, path: &str) -> (u16, String) {
    let res = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

#[actix_rt::test]
async fn livez_and_readyz_follow_the_checks() {
    chukan_telemetry::init_for_tests();
    let database = Arc::new(AtomicBool::new(true));
    let bus = Arc::new(AtomicBool::new(false));
    let ops = OpsServer::bind(
        &settings(),
        vec![
            ("database", flag_check(database.clone())),
            ("bus", flag_check(bus.clone())),
        ],
    )
    .unwrap();
    let port = ops.port();
    assert_ne!(port, 0);
    let server = ops.run();
    let handle = server.handle();
    actix_rt::spawn(server);

    assert_eq!(get(port, "/livez").await.0, 200);

    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["failed"], serde_json::json!(["bus"]));

    bus.store(true, Ordering::SeqCst);
    let (status, _) = get(port, "/readyz").await;
    assert_eq!(status, 200);

    database.store(false, Ordering::SeqCst);
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("database"));

    // Liveness does not depend on readiness.
    assert_eq!(get(port, "/livez").await.0, 200);
    handle.stop(true).await;
}

#[actix_rt::test]
async fn a_hanging_check_fails_readiness_instead_of_hanging_the_probe() {
    let hang: ReadinessCheck = Arc::new(|| Box::pin(futures_util::future::pending::<bool>()));
    let ops = OpsServer::bind(&settings(), vec![("stuck", hang)]).unwrap();
    let port = ops.port();
    let server = ops.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("stuck"));
    handle.stop(true).await;
}

#[actix_rt::test]
async fn metrics_are_labelled_by_route_pattern_not_path() {
    let app = test::init_service(App::new().wrap(http_metrics("testsvc")).route(
        "/v1/things/{id}",
        web::get().to(|| async { HttpResponse::Ok().finish() }),
    ))
    .await;
    for id in ["4711", "4712"] {
        let req = test::TestRequest::get()
            .uri(&format!("/v1/things/{id}"))
            .to_request();
        assert_eq!(test::call_service(&app, req).await.status(), 200);
    }
    let req = test::TestRequest::get().uri("/nowhere/99").to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 404);

    let ops = OpsServer::bind(&settings(), vec![]).unwrap();
    let port = ops.port();
    let server = ops.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let (status, text) = get(port, "/metrics").await;
    assert_eq!(status, 200);

    let line = text
        .lines()
        .find(|l| {
            l.starts_with("chukan_http_requests_total{")
                && l.contains(r#"service="testsvc""#)
                && l.contains(r#"status="200""#)
        })
        .expect("request counter for testsvc");
    assert!(line.contains(r#"route="/v1/things/{id}""#), "{line}");
    assert!(line.contains(r#"method="GET""#), "{line}");
    assert!(line.ends_with(" 2"), "{line}");
    assert!(text.contains(r#"route="unmatched""#));
    assert!(text.contains("chukan_http_request_duration_seconds_bucket{"));
    assert!(!text.contains("4711"));
    assert!(!text.contains("nowhere"));
    handle.stop(true).await;
}
