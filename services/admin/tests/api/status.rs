//! 稼動状態: open to anyone at any hour, what is open now and next, degraded components, and
//! `status.changed` once per change.

use std::time::Duration;

use chrono::TimeZone as _;
use chukan_mq::OutgoingMessage;
use chukan_proto::{ComponentStatus, Message as _, StatusChanged};
use serde_json::Value;

use crate::helpers::spawn_app;

fn jst(y: i32, m: u32, d: u32, h: u32) -> chrono::DateTime<chrono::Utc> {
    chrono_tz::Asia::Tokyo
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .unwrap()
        .with_timezone(&chrono::Utc)
}

async fn status(app: &crate::helpers::TestApp) -> (u16, Value) {
    let res = app
        .api
        .http
        .get(app.url("/v1/status"))
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap())
}

#[actix_rt::test]
async fn the_status_says_what_is_open_now_and_next_without_a_token() {
    let app = spawn_app().await;
    // Wednesday 2026-12-09 10:00 JST.
    app.clock.set(jst(2026, 12, 9, 10));
    let (code, s) = status(&app).await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["state"], "open");
    assert_eq!(s["api_open"], true);
    assert_eq!(s["nws_exchange_open"], true);
    assert_eq!(s["next_state"], "send-receive-stopped");
    assert_eq!(s["next_change_at"], "2026-12-09T12:00:00Z");
    assert_eq!(s["message"], "サービス提供中です。");
    assert_eq!(s["degraded"], false);

    // 22:00: the stop window; the API answers, the NWS link waits for the morning.
    app.clock.set(jst(2026, 12, 9, 22));
    let (_, s) = status(&app).await;
    assert_eq!(s["state"], "send-receive-stopped");
    assert_eq!(s["api_open"], true);
    assert_eq!(s["nws_exchange_open"], false);
    assert_eq!(s["next_opening"], "2026-12-09T23:00:00Z");
    assert!(s["message"].as_str().unwrap().contains("送受信を停止"));

    // Relay reports the NWS link degraded: the status says so, with its Japanese detail.
    let report = |status: &str, at_ms: i64| ComponentStatus {
        component: "nws-link".into(),
        status: status.into(),
        detail: "情報提供ネットワークシステムに送信できません（再送を続けています）。".into(),
        at_ms,
    };
    let at = jst(2026, 12, 9, 22).timestamp_millis();
    app.env
        .publish(&OutgoingMessage::new(
            "platform",
            chukan_proto::STATUS_COMPONENT,
            report("degraded", at).encode_to_vec(),
        ))
        .await;
    // An older report arriving late changes nothing.
    app.env
        .publish(&OutgoingMessage::new(
            "platform",
            chukan_proto::STATUS_COMPONENT,
            report("ok", at - 60_000).encode_to_vec(),
        ))
        .await;
    chukan_testkit::wait_until(Duration::from_secs(20), "degraded link shown", || async {
        status(&app).await.1["degraded"] == true
    })
    .await
    .unwrap();
    let (_, s) = status(&app).await;
    assert_eq!(s["components"][0]["component"], "nws-link");
    assert_eq!(s["components"][0]["status"], "degraded");

    // The change is published once, however often it is checked (by the watcher, or here).
    let calendar = chukan_core::ServiceCalendar::default();
    let now = jst(2026, 12, 9, 22);
    chukan_admin::status::publish_if_changed(&app.env.ctx.db, &calendar, now)
        .await
        .unwrap();
    assert!(
        !chukan_admin::status::publish_if_changed(&app.env.ctx.db, &calendar, now)
            .await
            .unwrap()
    );
    let published = || {
        app.status_events
            .lock()
            .unwrap()
            .iter()
            .map(|d| StatusChanged::decode(d.body.as_slice()).unwrap())
            .filter(|e| e.state == "send-receive-stopped" && e.degraded == ["nws-link:degraded"])
            .count()
    };
    chukan_testkit::wait_until(Duration::from_secs(20), "status.changed", || async {
        published() >= 1
    })
    .await
    .unwrap();
    assert_eq!(published(), 1);
}

#[actix_rt::test]
async fn a_flood_of_status_requests_is_refused_with_429_not_served() {
    let app = spawn_app().await;
    let mut limited = 0;
    for _ in 0..80 {
        let (code, body) = status(&app).await;
        if code == 429 {
            assert_eq!(body["code"], "rate-limited");
            limited += 1;
        }
    }
    assert!(limited > 0, "80 requests in a burst were all served");
}
