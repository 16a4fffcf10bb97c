//! Planned outages announced at runtime: only platform operators change them, every change
//! is announced with the whole list, and a process's calendar follows without a restart.

use std::{sync::Arc, time::Duration};

use chrono::Days;
use chukan_auth::Role;
use chukan_core::{ServiceCalendar, ServiceState};
use chukan_proto::{CalendarChanged, Message as _};
use serde_json::{Value, json};

use crate::helpers::{TENANT_A, assert_problem, spawn_app};

#[actix_rt::test]
async fn platform_operators_announce_outages_and_every_process_follows() {
    let app = spawn_app().await;
    // A process's calendar, following admin as every `chukan` process does.
    let calendar = Arc::new(ServiceCalendar::default());
    let mut followers = chukan_runtime::calendar_sync::start(&app.env.ctx.bus, calendar.clone());
    let platform = app.env.token("", &[Role::PlatformOperator]);
    let today = chukan_core::calendar::japan_date(chrono::Utc::now());
    let tomorrow = today + Days::new(1);
    let path = format!("/v1/calendar/outages/{tomorrow}");

    let res = app
        .put(&platform, &path, &json!({"reason": "システム更改のため"}))
        .await;
    assert_eq!(res.status(), 200);
    let view: Value = res.json().await.unwrap();
    assert_eq!(view["planned_outages"][0]["date"], tomorrow.to_string());
    assert_eq!(view["planned_outages"][0]["reason"], "システム更改のため");
    assert_eq!(view["revision"], 1);

    // The announcement reaches the process: tomorrow is closed all day there.
    chukan_testkit::wait_until(Duration::from_secs(20), "calendar followed", || async {
        calendar.planned_outages() == [tomorrow]
    })
    .await
    .unwrap();
    // Noon in Japan (UTC+9, no daylight saving time).
    let noon = tomorrow.and_hms_opt(3, 0, 0).unwrap().and_utc();
    assert!(matches!(calendar.state_at(noon), ServiceState::Closed(_)));
    chukan_testkit::wait_until(
        Duration::from_secs(20),
        "calendar.changed captured",
        || async { !app.calendar_events.lock().unwrap().is_empty() },
    )
    .await
    .unwrap();
    let events = app.calendar_events.lock().unwrap().clone();
    let last = CalendarChanged::decode(events.last().unwrap().body.as_slice()).unwrap();
    assert_eq!(last.planned_outages, [tomorrow.to_string()]);

    // A process that starts later asks admin and gets the same list.
    let late = Arc::new(ServiceCalendar::default());
    followers.extend(chukan_runtime::calendar_sync::start(
        &app.env.ctx.bus,
        late.clone(),
    ));
    chukan_testkit::wait_until(Duration::from_secs(20), "late process asked", || async {
        late.planned_outages() == [tomorrow]
    })
    .await
    .unwrap();

    // Organisations may read the calendar, not change it; a day begun cannot be closed.
    let admin = app.token(TENANT_A, "admin1").await;
    let read: Value = app.get(&admin, "/v1/calendar").await.json().await.unwrap();
    assert_eq!(read["revision"], 1);
    assert_problem(
        app.put(&admin, &path, &json!({"reason": "x"})).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        app.put(
            &platform,
            &format!("/v1/calendar/outages/{today}"),
            &json!({"reason": "当日"}),
        )
        .await,
        400,
        "invalid-field",
    )
    .await;
    assert_problem(
        app.put(
            &platform,
            "/v1/calendar/outages/2026-13-01",
            &json!({"reason": "x"}),
        )
        .await,
        400,
        "invalid-field",
    )
    .await;
    assert_problem(
        app.put(&platform, &path, &json!({"reason": ""})).await,
        400,
        "invalid-field",
    )
    .await;

    // Withdrawn: every process opens the day again.
    let delete = |token: String| {
        let req = app.api.http.delete(app.url(&path)).bearer_auth(token);
        async move { req.send().await.unwrap() }
    };
    let res = delete(platform.clone()).await;
    assert_eq!(res.status(), 200);
    chukan_testkit::wait_until(Duration::from_secs(20), "withdrawal followed", || async {
        calendar.planned_outages().is_empty() && late.planned_outages().is_empty()
    })
    .await
    .unwrap();
    assert_problem(delete(platform.clone()).await, 404, "not-found").await;
    for w in followers {
        (w.stop)().await;
    }
}
