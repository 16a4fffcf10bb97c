#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The service-hour gate on the real HTTP server, with an injected clock.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use chrono::{TimeZone, Utc};
use chukan_core::ManualClock;
use chukan_runtime::Parts;
use chukan_testkit::TestEnv;

fn hello_parts() -> Parts {
    Parts {
        name: "hello",
        routes: Some(Arc::new(|cfg: &mut web::ServiceConfig| {
            cfg.route(
                "/v1/hello",
                web::get().to(|| async { HttpResponse::Ok().body("ok") }),
            );
        })),
        workers: vec![],
        openapi: None,
    }
}

#[actix_web::test]
async fn outside_hours_the_api_answers_503_with_the_next_opening() {
    // Saturday 2026-11-28 18:00 JST (09:00 UTC): closed since 17:00.
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap(),
    ));
    let env = TestEnv::new_with(
        &[],
        |s| s.calendar.enforce_service_hours = true,
        clock.clone(),
    )
    .await
    .unwrap();
    let api = env.spawn_api(vec![hello_parts()]).await.unwrap();
    let res = api.http.get(api.url("/v1/hello")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    // Sunday 08:00 JST is 14 hours away.
    assert_eq!(res.headers().get("retry-after").unwrap(), "50400");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "outside-service-hours");
    assert_eq!(body["available_at"], "2026-11-28T23:00:00+00:00");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("2026-11-29 08:00 (JST)")
    );

    // Counted as closed, not as a 5xx the availability SLO would charge.
    let families = prometheus::gather();
    let family = |name: &str| families.iter().find(|f| f.name() == name);
    let closed = family("chukan_http_outside_hours_total").expect("outside-hours counter");
    assert_eq!(closed.get_metric()[0].get_counter().value(), 1.0);
    let answered_503 = family("chukan_http_requests_total").is_some_and(|f| {
        f.get_metric().iter().any(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "status" && l.value() == "503")
        })
    });
    assert!(
        !answered_503,
        "a closed-hours 503 reached the SLO's counter"
    );

    // Keys stay reachable at any hour.
    let jwks = api.http.get(api.url("/v1/auth/jwks")).send().await.unwrap();
    assert_ne!(jwks.status(), 503);
    // So does the API description.
    let doc = api.http.get(api.url("/openapi.json")).send().await.unwrap();
    assert_eq!(doc.status(), 200);

    // Sunday 08:00 JST: open.
    clock.set(Utc.with_ymd_and_hms(2026, 11, 28, 23, 0, 0).unwrap());
    let res = api.http.get(api.url("/v1/hello")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn the_send_receive_stop_window_still_serves_the_api() {
    // Wednesday 2026-11-25 21:30 JST: NWS traffic is held, the API answers.
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 30, 0).unwrap(),
    ));
    let env = TestEnv::new_with(&[], |s| s.calendar.enforce_service_hours = true, clock)
        .await
        .unwrap();
    let api = env.spawn_api(vec![hello_parts()]).await.unwrap();
    assert_eq!(
        api.http
            .get(api.url("/v1/hello"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[actix_web::test]
async fn a_planned_outage_day_is_closed_all_day_like_a_night() {
    // Thursday 2026-12-10 10:00 JST, announced as a planned outage (計画停止日); Friday is not.
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 12, 10, 1, 0, 0).unwrap(),
    ));
    let env = TestEnv::new_with(
        &[],
        |s| {
            s.calendar.enforce_service_hours = true;
            s.calendar.planned_outages = vec!["2026-12-10".into()];
        },
        clock.clone(),
    )
    .await
    .unwrap();
    let api = env.spawn_api(vec![hello_parts()]).await.unwrap();
    let res = api.http.get(api.url("/v1/hello")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "outside-service-hours");
    // Friday 08:00 JST.
    assert_eq!(body["available_at"], "2026-12-10T23:00:00+00:00");

    clock.set(Utc.with_ymd_and_hms(2026, 12, 10, 23, 0, 0).unwrap());
    let res = api.http.get(api.url("/v1/hello")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
