//! 部署 (departments) and their excluded procedure codes; announced as department.changed.

use std::time::Duration;

use chukan_core::ids::OrgCode;
use chukan_proto::{DepartmentChanged, Message as _};
use serde_json::{Value, json};

use crate::helpers::{TENANT_A, TENANT_B, assert_problem, claims, japan_today, spawn_app};

fn codes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("JT{:014}", i + 1)).collect()
}

#[actix_rt::test]
async fn a_department_is_saved_with_up_to_480_codes_and_announced_with_each_revision() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;

    let res = app
        .put(
            &admin,
            "/v1/departments/ZEIMU",
            &json!({ "name": "税務課", "excluded_procedures": codes(480) }),
        )
        .await;
    assert_eq!(res.status(), 200);
    let saved: Value = res.json().await.unwrap();
    assert_eq!(saved["revision"], 1);
    assert_eq!(saved["excluded_procedures"].as_array().unwrap().len(), 480);

    let res = app
        .put(
            &admin,
            "/v1/departments/ZEIMU",
            &json!({ "name": "税務課", "excluded_procedures": ["JT00000000000101"] }),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["revision"], 2);

    chukan_testkit::wait_until(Duration::from_secs(10), "department.changed", || async {
        app.department_events.lock().unwrap().len() >= 2
    })
    .await
    .unwrap();
    let events: Vec<(String, DepartmentChanged)> = app
        .department_events
        .lock()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d.tenant.clone(),
                DepartmentChanged::decode(d.body.as_slice()).unwrap(),
            )
        })
        .collect();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|(t, e)| t == TENANT_A && e.tenant == TENANT_A)
    );
    let last = events.iter().max_by_key(|(_, e)| e.revision).unwrap();
    assert_eq!(last.1.revision, 2);
    assert_eq!(last.1.excluded_procedures, ["JT00000000000101"]);

    let one: Value = app
        .get(&admin, "/v1/departments/ZEIMU")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["name"], "税務課");
    // Another tenant sees none of it.
    let admin_b = app.token(TENANT_B, "admin1").await;
    assert_eq!(
        app.get(&admin_b, "/v1/departments/ZEIMU").await.status(),
        404
    );
    let list_b: Value = app
        .get(&admin_b, "/v1/departments")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list_b, json!([]));
}

#[actix_rt::test]
async fn bad_departments_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    for (path, body) in [
        (
            "/v1/departments/ZEIMU",
            json!({ "name": "税務課", "excluded_procedures": codes(481) }),
        ),
        (
            "/v1/departments/ZEIMU",
            json!({ "name": "税務課", "excluded_procedures": ["JM00000000000001"] }),
        ),
        ("/v1/departments/ZEIMU", json!({ "name": " " })),
        (
            "/v1/departments/ABCDEFGHIJKLMNOPQRSTU",
            json!({ "name": "税務課" }),
        ),
    ] {
        let problem =
            assert_problem(app.put(&admin, path, &body).await, 400, "invalid-field").await;
        assert!(problem["action"].as_str().is_some_and(|a| !a.is_empty()));
    }
    let list: Value = app
        .get(&admin, "/v1/departments")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]));
    assert!(app.department_events.lock().unwrap().is_empty());
}

#[actix_rt::test]
async fn a_system_client_of_a_department_gets_tokens_carrying_it() {
    let app = spawn_app().await;
    let (id, secret) = chukan_admin::create_client(
        &app.env.ctx.db,
        &OrgCode::parse(TENANT_A).unwrap(),
        "児童手当システム",
        Some("KODOMO"),
    )
    .await
    .unwrap();
    let token: Value = app
        .api
        .http
        .post(app.url("/v1/auth/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c = claims(token["access_token"].as_str().unwrap());
    assert_eq!(c["dept"], "KODOMO");
}

#[actix_rt::test]
async fn a_department_keeps_its_validity_history_and_nothing_is_changed_retroactively() {
    let app = spawn_app().await;
    let admin = app.token(TENANT_A, "admin1").await;
    let today = japan_today(&app);
    let day = |n: i64| (today + chrono::Duration::days(n)).to_string();
    let put = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move { app.put(&admin, "/v1/departments/ZEIMU", &body).await }
    };
    let saved: Value =
        put(json!({ "name": "税務課", "excluded_procedures": ["JT00000000000101"] }))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(saved["valid_from"], day(0));
    assert_eq!(saved["valid_today"], true);

    // A version planned for next month: today's stays in force, the history has both.
    let res = put(json!({
        "name": "市民税課", "excluded_procedures": [], "valid_from": day(30)
    }))
    .await;
    assert_eq!(res.status(), 200);
    let planned: Value = res.json().await.unwrap();
    assert_eq!(planned["name"], "税務課", "today's version is shown");
    let history = planned["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["valid_to"], day(29));
    assert_eq!(history[1]["valid_from"], day(30));
    assert_eq!(history[1]["recorded_by"], claims(&admin)["sub"]);

    // Nothing may start in the past, end before it starts, or end in the past.
    let retro = put(json!({ "name": "税務課", "valid_from": day(-1) })).await;
    assert_problem(retro, 400, "retroactive-change").await;
    let backwards =
        put(json!({ "name": "税務課", "valid_from": day(2), "valid_to": day(1) })).await;
    assert_problem(backwards, 400, "invalid-period").await;
    let end = |to: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.post(
                &admin,
                "/v1/departments/ZEIMU/valid-to",
                &json!({ "valid_to": to }),
            )
            .await
        }
    };
    assert_problem(end(day(-1)).await, 400, "retroactive-change").await;

    // Ending it in ten days cancels the planned version.
    let res = end(day(10)).await;
    assert_eq!(res.status(), 200);
    let ended: Value = res.json().await.unwrap();
    let history = ended["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{ended}");
    assert_eq!(history[0]["valid_to"], day(10));

    // Eleven days on, the department is shown as no longer valid; its history stays.
    app.clock.advance(chrono::Duration::days(11));
    let now: Value = app
        .get(&admin, "/v1/departments/ZEIMU")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["valid_today"], false);
    assert_eq!(now["valid_to"], day(10));
    assert_problem(end(day(20)).await, 400, "retroactive-change").await;
    assert_eq!(
        app.post(
            &admin,
            "/v1/departments/NONE/valid-to",
            &json!({ "valid_to": day(20) })
        )
        .await
        .status(),
        404
    );

    // The inquiry service is told the whole history with every revision.
    chukan_testkit::wait_until(Duration::from_secs(10), "department.changed", || async {
        app.department_events.lock().unwrap().len() >= 3
    })
    .await
    .unwrap();
    let last = app
        .department_events
        .lock()
        .unwrap()
        .iter()
        .map(|d| DepartmentChanged::decode(d.body.as_slice()).unwrap())
        .max_by_key(|e| e.revision)
        .unwrap();
    assert_eq!(last.periods.len(), 1);
    assert_eq!(last.periods[0].valid_to, day(10));
}
