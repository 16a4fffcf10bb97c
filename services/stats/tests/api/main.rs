#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The statistics service against real PostgreSQL and RabbitMQ; the tests play provision,
//! publishing `stats.replica-count` events as it does.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use chukan_auth::Role;
use chukan_core::ManualClock;
use chukan_mq::OutgoingMessage;
use chukan_proto::{ExchangeStat, Message as _, ReplicaCountChanged};
use chukan_stats::{StatsState, calendar::SnapshotReason, snapshots};
use chukan_testkit::{TestApi, TestEnv};
use serde_json::{Value, json};

const ORG_A: &str = "1310010000000001";
const ORG_B: &str = "2710000000000002";
const INFO: &str = "TM00000000000002";
const INFO_OTHER: &str = "TM00000000000031";
const DEADLINE: Duration = Duration::from_secs(30);

struct App {
    env: TestEnv,
    api: TestApi,
    clock: Arc<ManualClock>,
    state: StatsState,
}

/// 2026-12-05 07:00 JST: the first Saturday of December, after `snapshot_at`.
fn first_saturday_morning() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 22, 0, 0).unwrap()
}

async fn spawn_app() -> App {
    let clock = Arc::new(ManualClock::new(first_saturday_morning()));
    let env = TestEnv::new_with(
        &[chukan_stats::migrations()],
        |s| {
            // The scheduler is driven by the tests through `take_if_due`.
            s.stats.scheduler_poll = Duration::from_secs(3600);
        },
        clock.clone(),
    )
    .await
    .unwrap();
    let parts = chukan_stats::start(&env.ctx).await.unwrap();
    let state = StatsState::new(&env.ctx);
    let api = env.spawn_api(vec![parts]).await.unwrap();
    App {
        env,
        api,
        clock,
        state,
    }
}

impl App {
    fn token(&self, tenant: &str) -> String {
        self.env.token(tenant, &[Role::BusinessStaff])
    }

    async fn report(&self, tenant: &str, info: &str, dataset: &str, count: i64, at_ms: i64) {
        let event = ReplicaCountChanged {
            tenant: tenant.into(),
            info_code: info.into(),
            major_version: "0002".into(),
            dataset: dataset.into(),
            count,
            delta: 0,
            at_ms,
        };
        self.env
            .publish(&OutgoingMessage::new(
                tenant,
                chukan_proto::STATS_REPLICA_COUNT,
                event.encode_to_vec(),
            ))
            .await;
    }

    /// The count kept for a kind, read as its tenant.
    async fn count(&self, tenant: &str, info: &str, dataset: &str) -> i64 {
        self.env
            .scalar_i64(
                tenant,
                &format!(
                    "SELECT coalesce(max(count), -1) FROM stats.replica_counts
                     WHERE info_code = '{info}' AND dataset = '{dataset}'"
                ),
            )
            .await
    }

    async fn wait_count(&self, tenant: &str, info: &str, dataset: &str, want: i64) {
        chukan_testkit::wait_until(DEADLINE, "replica count applied", || async {
            self.count(tenant, info, dataset).await == want
        })
        .await
        .unwrap();
    }

    /// Publishes one exchange event as a service's outbox would; returns its message.
    async fn exchange(&self, stat: ExchangeStat) -> OutgoingMessage {
        let msg = OutgoingMessage::new(
            stat.tenant.clone(),
            chukan_proto::STATS_EXCHANGE,
            stat.encode_to_vec(),
        );
        self.env.publish(&msg).await;
        msg
    }

    /// Exchange events counted for `tenant` (all days).
    async fn exchanges_counted(&self, tenant: &str) -> i64 {
        self.env
            .scalar_i64(
                tenant,
                "SELECT coalesce(sum(count), 0)::int8 FROM stats.exchange_days",
            )
            .await
    }

    async fn get(&self, tenant: &str, path: &str) -> (u16, Value) {
        self.api.get(&self.token(tenant), path).await
    }
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[actix_rt::test]
async fn the_newest_count_wins_whatever_order_the_events_arrive_in() {
    let app = spawn_app().await;
    let t0 = first_saturday_morning().timestamp_millis();
    // The newer report first, then an older one overtaken on the way, then a repeat.
    app.report(ORG_A, INFO, "D01", 120, t0 + 2_000).await;
    app.wait_count(ORG_A, INFO, "D01", 120).await;
    app.report(ORG_A, INFO, "D01", 90, t0 + 1_000).await;
    app.report(ORG_A, INFO, "D01", 120, t0 + 2_000).await;
    // A marker published after both: once it is applied, so are they (one queue, in order).
    app.report(ORG_A, INFO, "D99", 1, t0).await;
    app.wait_count(ORG_A, INFO, "D99", 1).await;
    assert_eq!(app.count(ORG_A, INFO, "D01").await, 120);
    // Behind the tenant wall: the other organisation sees nothing of it.
    assert_eq!(app.count(ORG_B, INFO, "D01").await, -1);
}

#[actix_rt::test]
async fn a_snapshot_keeps_the_counts_of_its_date_and_two_dates_compare() {
    let app = spawn_app().await;
    let t0 = first_saturday_morning().timestamp_millis();
    app.report(ORG_A, INFO, "D01", 100, t0).await;
    app.report(ORG_A, INFO_OTHER, "D01", 7, t0).await;
    app.report(ORG_B, INFO, "D01", 555, t0).await;
    app.wait_count(ORG_A, INFO_OTHER, "D01", 7).await;
    app.wait_count(ORG_B, INFO, "D01", 555).await;

    // The first Saturday after snapshot_at: the scheduled (monthly) snapshot is due once.
    let taken = snapshots::take_if_due(&app.state).await.unwrap().unwrap();
    assert_eq!(taken.date, date("2026-12-05"));
    assert_eq!(taken.reason, SnapshotReason::Monthly);
    assert_eq!(taken.tenants, 2);
    assert!(snapshots::take_if_due(&app.state).await.unwrap().is_none());

    // Counts change; a week later (no migration window) nothing is scheduled, an operator
    // takes one on demand.
    app.report(ORG_A, INFO, "D01", 130, t0 + 1_000).await;
    app.report(ORG_A, INFO, "D02", 5, t0 + 1_000).await;
    app.wait_count(ORG_A, INFO, "D02", 5).await;
    app.clock.advance(chrono::TimeDelta::days(7));
    assert!(snapshots::take_if_due(&app.state).await.unwrap().is_none());
    snapshots::take(&app.state, date("2026-12-12"), SnapshotReason::OnDemand)
        .await
        .unwrap();

    let (status, first) = app
        .get(ORG_A, "/v1/statistics/replicas?date=2026-12-05")
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["reason"], "monthly");
    assert_eq!(first["total"], 107);
    assert_eq!(
        first["rows"],
        json!([
            {"info_code": INFO, "major_version": "0002", "dataset": "D01", "count": 100,
             "compare_count": null, "difference": null},
            {"info_code": INFO_OTHER, "major_version": "0002", "dataset": "D01", "count": 7,
             "compare_count": null, "difference": null},
        ])
    );

    // Without a date: the newest snapshot; compared with the first one.
    let (status, cmp) = app
        .get(ORG_A, "/v1/statistics/replicas?compare=2026-12-05")
        .await;
    assert_eq!(status, 200, "{cmp}");
    assert_eq!(cmp["date"], "2026-12-12");
    assert_eq!(cmp["reason"], "on-demand");
    let rows = cmp["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["count"], 130);
    assert_eq!(rows[0]["compare_count"], 100);
    assert_eq!(rows[0]["difference"], 30);
    assert_eq!(rows[1]["dataset"], "D02");
    assert_eq!(rows[1]["compare_count"], 0);
    assert_eq!(rows[1]["difference"], 5);

    // Organisation B sees its own counts only.
    let (_, b) = app
        .get(ORG_B, "/v1/statistics/replicas?date=2026-12-05")
        .await;
    assert_eq!(b["total"], 555);
    assert_eq!(b["rows"].as_array().unwrap().len(), 1);

    let (status, list) = app.get(ORG_A, "/v1/statistics/replicas/snapshots").await;
    assert_eq!(status, 200);
    assert_eq!(list["snapshots"][0]["date"], "2026-12-12");
    assert_eq!(list["snapshots"][1]["date"], "2026-12-05");
}

#[actix_rt::test]
async fn csv_opens_in_excel_in_utf8_with_a_bom_or_in_shift_jis() {
    let app = spawn_app().await;
    app.report(
        ORG_A,
        INFO,
        "D01",
        42,
        first_saturday_morning().timestamp_millis(),
    )
    .await;
    app.wait_count(ORG_A, INFO, "D01", 42).await;
    snapshots::take(&app.state, date("2026-12-05"), SnapshotReason::OnDemand)
        .await
        .unwrap();
    let token = app.token(ORG_A);

    let res = app
        .api
        .get_response(&token, "/v1/statistics/replicas?date=2026-12-05&format=csv")
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("replica-statistics-2026-12-05.csv")
    );
    let body = res.bytes().await.unwrap();
    assert_eq!(&body[..3], b"\xEF\xBB\xBF");
    let text = std::str::from_utf8(&body[3..]).unwrap();
    assert_eq!(
        text,
        format!(
            "特定個人情報名コード,メジャーバージョン,データセット,件数（2026-12-05）\r\n{INFO},0002,D01,42\r\n"
        )
    );

    let res = app
        .api
        .get_response(
            &token,
            "/v1/statistics/replicas?date=2026-12-05&format=csv&encoding=shift_jis",
        )
        .await;
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=Shift_JIS"
    );
    let body = res.bytes().await.unwrap();
    // 「特定個人情報名コード」 in Shift_JIS (JIS X 0208), as Excel on a Japanese PC reads it.
    let header =
        b"\x93\xc1\x92\xe8\x8c\xc2\x90\x6c\x8f\xee\x95\xf1\x96\xbc\x83\x52\x81\x5b\x83\x68";
    assert!(body.starts_with(header));
}

#[actix_rt::test]
async fn bad_queries_are_refused_and_a_missing_snapshot_says_when_they_are_made() {
    let app = spawn_app().await;
    let (status, p) = app.get(ORG_A, "/v1/statistics/replicas").await;
    assert_eq!(status, 404);
    assert_eq!(p["code"], "snapshot-not-found");
    for (query, field) in [
        ("date=2026-13-01", "date"),
        ("date=05/12/2026", "date"),
        ("compare=yesterday", "compare"),
        ("format=xlsx", "format"),
        ("format=csv&encoding=latin1", "encoding"),
    ] {
        let (status, p) = app
            .get(ORG_A, &format!("/v1/statistics/replicas?{query}"))
            .await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(p["code"], "invalid-field", "{query}");
        assert!(
            p["detail"].as_str().unwrap().contains(field),
            "{query}: {p}"
        );
    }
    snapshots::take(&app.state, date("2026-12-05"), SnapshotReason::OnDemand)
        .await
        .unwrap();
    let (status, p) = app
        .get(
            ORG_A,
            "/v1/statistics/replicas?date=2026-12-05&compare=2026-11-07",
        )
        .await;
    assert_eq!(status, 404);
    assert!(p["detail"].as_str().unwrap().contains("2026-11-07"));
    // A system client (an unattended business system) does not read statistics.
    let client = app.env.token(ORG_A, &[Role::SystemClient]);
    let (status, _) = app.api.get(&client, "/v1/statistics/replicas").await;
    assert_eq!(status, 403);
}

#[actix_rt::test]
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
    for path in [
        "/v1/statistics/replicas",
        "/v1/statistics/replicas/snapshots",
    ] {
        let get = &doc["paths"][path]["get"];
        assert!(get.is_object(), "{path}");
        assert_eq!(
            get["security"][0]["bearer"],
            json!(["system_admin", "business_staff"])
        );
    }
}

/// An inquiry result received by `tenant` at `at` (JST), `ms` after it was asked.
fn result_received(tenant: &str, at: DateTime<Utc>, ms: i64, outcome: &str) -> ExchangeStat {
    ExchangeStat {
        tenant: tenant.into(),
        event: "result.received".into(),
        inquirer_org: tenant.into(),
        provider_org: ORG_B.into(),
        affair_code: "JM00000000000001".into(),
        procedure_code: "JT00000000000001".into(),
        info_code: INFO.into(),
        outcome: outcome.into(),
        requested_at_ms: at.timestamp_millis() - ms,
        at_ms: at.timestamp_millis(),
    }
}

#[actix_rt::test]
async fn exchanges_are_counted_once_per_day_of_their_own_with_durations() {
    let app = spawn_app().await;
    // 2026-12-04 23:50 JST and 2026-12-05 00:10 JST: two Japan days, though one UTC day.
    let late_evening = Utc.with_ymd_and_hms(2026, 12, 4, 14, 50, 0).unwrap();
    let after_midnight = Utc.with_ymd_and_hms(2026, 12, 4, 15, 10, 0).unwrap();
    for ms in [800, 1_200, 1_500, 2_000] {
        app.exchange(result_received(ORG_A, after_midnight, ms, "provided"))
            .await;
    }
    // A redelivery (the same message again) is not counted twice.
    let once = app
        .exchange(result_received(ORG_A, after_midnight, 45_000, "refused"))
        .await;
    app.env.publish(&once).await;
    // A late event of the previous day, arriving last, lands in its own day.
    app.exchange(result_received(ORG_A, late_evening, 300, "provided"))
        .await;
    app.exchange(result_received(ORG_B, after_midnight, 100, "provided"))
        .await;
    chukan_testkit::wait_until(DEADLINE, "exchanges counted", || async {
        app.exchanges_counted(ORG_A).await == 6 && app.exchanges_counted(ORG_B).await == 1
    })
    .await
    .unwrap();

    let (status, body) = app
        .get(
            ORG_A,
            "/v1/statistics/exchanges?from=2026-12-04&to=2026-12-05",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{body}");
    assert_eq!(rows[0]["day"], "2026-12-04");
    assert_eq!(rows[0]["count"], 1);
    assert_eq!(rows[0]["max_ms"], 300);
    let provided = &rows[1];
    assert_eq!(
        (provided["day"].as_str(), provided["outcome"].as_str()),
        (Some("2026-12-05"), Some("provided"))
    );
    assert_eq!(provided["event"], "result.received");
    assert_eq!(provided["info_code"], INFO);
    assert_eq!(provided["count"], 4);
    assert_eq!(provided["timed"], 4);
    assert_eq!(provided["max_ms"], 2_000);
    let p50 = provided["p50_ms"].as_i64().unwrap();
    assert!((1_000..=2_000).contains(&p50), "{p50}");
    assert_eq!(rows[2]["outcome"], "refused");
    assert_eq!(rows[2]["count"], 1, "a redelivery counted twice");
    // One duration of 45 s: its quantiles lie in its bucket (30 s, 60 s], capped by the max.
    let p95 = rows[2]["p95_ms"].as_i64().unwrap();
    assert!((30_000..=45_000).contains(&p95), "{p95}");
    assert_eq!(rows[2]["max_ms"], 45_000);

    // One event filter, and CSV with Japanese headers.
    let (_, only) = app
        .get(
            ORG_A,
            "/v1/statistics/exchanges?from=2026-12-04&to=2026-12-05&event=inquiry.sent",
        )
        .await;
    assert_eq!(only["rows"], json!([]));
    let res = app
        .api
        .get_response(
            &app.token(ORG_A),
            "/v1/statistics/exchanges?from=2026-12-05&to=2026-12-05&format=csv",
        )
        .await;
    let body = res.bytes().await.unwrap();
    let text = std::str::from_utf8(&body[3..]).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("日付,イベント,事務コード")
    );
    assert!(lines.next().unwrap().starts_with(&format!(
        "2026-12-05,result.received,JM00000000000001,JT00000000000001,{INFO},provided,4,4,"
    )));

    // A span the API does not answer.
    let (status, p) = app
        .get(
            ORG_A,
            "/v1/statistics/exchanges?from=2026-12-05&to=2026-12-01",
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(p["code"], "invalid-field");
}

#[actix_rt::test]
async fn an_exchange_event_that_names_another_tenant_is_dead_lettered_not_counted() {
    let app = spawn_app().await;
    let at = first_saturday_morning();
    // The header says A, the body says B: a producer defect, never counted for either.
    let stat = result_received(ORG_B, at, 10, "provided");
    let msg = OutgoingMessage::new(ORG_A, chukan_proto::STATS_EXCHANGE, stat.encode_to_vec());
    app.env.publish(&msg).await;
    app.exchange(result_received(ORG_A, at, 10, "provided"))
        .await;
    chukan_testkit::wait_until(DEADLINE, "the good event counted", || async {
        app.exchanges_counted(ORG_A).await == 1
    })
    .await
    .unwrap();
    chukan_testkit::wait_until(DEADLINE, "the bad event dead-lettered", || async {
        let queue = app
            .env
            .ctx
            .bus
            .qualify(&chukan_stats::exchanges_queue().name);
        chukan_mq::metrics::dead_lettered(&queue) >= 1
    })
    .await
    .unwrap();
    assert_eq!(app.exchanges_counted(ORG_A).await, 1);
    assert_eq!(app.exchanges_counted(ORG_B).await, 0);
}

#[actix_rt::test]
async fn platform_operators_see_every_organisation_and_organisations_only_their_own() {
    let app = spawn_app().await;
    let t0 = first_saturday_morning().timestamp_millis();
    app.report(ORG_A, INFO, "D01", 10, t0).await;
    app.report(ORG_B, INFO, "D01", 20, t0).await;
    app.wait_count(ORG_A, INFO, "D01", 10).await;
    app.wait_count(ORG_B, INFO, "D01", 20).await;
    let platform = app.env.token("", &[Role::PlatformOperator]);

    // An operator takes a snapshot on demand and reads every organisation's rows.
    let (status, taken) = app
        .api
        .post(
            &platform,
            "/v1/platform/statistics/replicas/snapshots",
            &json!({"date": "2026-12-05"}),
        )
        .await;
    assert_eq!(status, 201, "{taken}");
    assert_eq!(taken["organisations"], 2);
    let (status, all) = app
        .api
        .get(&platform, "/v1/platform/statistics/replicas")
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["organisations"], 2);
    assert_eq!(all["total"], 30);
    assert_eq!(all["rows"][0]["org_code"], ORG_A);
    assert_eq!(all["rows"][1]["org_code"], ORG_B);

    // The platform realm is refused by organisation routes, and organisations (even their
    // administrators) by platform routes.
    let (status, _) = app.api.get(&platform, "/v1/statistics/replicas").await;
    assert_eq!(status, 403);
    let (status, _) = app.api.get(&platform, "/v1/statistics/schedule").await;
    assert_eq!(status, 403);
    let admin = app.env.token(ORG_A, &[Role::SystemAdmin]);
    for path in [
        "/v1/platform/statistics/replicas",
        "/v1/platform/statistics/schedule",
    ] {
        let (status, _) = app.api.get(&admin, path).await;
        assert_eq!(status, 403, "{path}");
    }
    let (status, _) = app
        .api
        .post(
            &admin,
            "/v1/platform/statistics/replicas/snapshots",
            &json!({}),
        )
        .await;
    assert_eq!(status, 403);
    // A token mixing the realms is never issued.
    let issuer = chukan_auth::TokenIssuer::from_settings(&app.env.settings.auth).unwrap();
    assert!(
        issuer
            .issue("x", ORG_A, &[Role::PlatformOperator], None)
            .is_err()
    );
    assert!(issuer.issue("x", "", &[Role::BusinessStaff], None).is_err());
}

#[actix_rt::test]
async fn organisations_far_behind_their_registration_schedule_are_listed_newest_first() {
    let app = spawn_app().await;
    let t0 = first_saturday_morning().timestamp_millis();
    // A holds 50 of item INFO and 95 of INFO_OTHER; B holds 100 of INFO.
    app.report(ORG_A, INFO, "D01", 30, t0).await;
    app.report(ORG_A, INFO, "D02", 20, t0).await;
    app.report(ORG_A, INFO_OTHER, "D01", 95, t0).await;
    app.report(ORG_B, INFO, "D01", 100, t0).await;
    app.wait_count(ORG_A, INFO_OTHER, "D01", 95).await;
    app.wait_count(ORG_A, INFO, "D02", 20).await;
    app.wait_count(ORG_B, INFO, "D01", 100).await;

    // A planned 200 of INFO by December (far behind: 75 % short) and 1,000 by next year
    // (not due yet), 100 of INFO_OTHER (5 % short: within the share); B planned 100 (met).
    let (status, a) = app
        .api
        .call(
            reqwest::Method::PUT,
            &app.token(ORG_A),
            "/v1/statistics/schedule",
            Some(&json!({"plans": [
                {"info_code": INFO, "date": "2026-12-01", "planned_count": 200},
                {"info_code": INFO, "date": "2027-06-01", "planned_count": 1000},
                {"info_code": INFO_OTHER, "date": "2026-11-01", "planned_count": 100},
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    let plans = a["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 3);
    assert_eq!(plans[1]["info_code"], INFO);
    assert_eq!(plans[1]["actual_count"], 50);
    assert_eq!(plans[1]["shortfall"], 0.75);
    let (status, _) = app
        .api
        .call(
            reqwest::Method::PUT,
            &app.token(ORG_B),
            "/v1/statistics/schedule",
            Some(&json!({"plans": [{"info_code": INFO, "date": "2026-10-01", "planned_count": 100}]})),
        )
        .await;
    assert_eq!(status, 200);

    let platform = app.env.token("", &[Role::PlatformOperator]);
    let (status, behind) = app
        .api
        .get(&platform, "/v1/platform/statistics/schedule")
        .await;
    assert_eq!(status, 200, "{behind}");
    assert_eq!(
        behind["plans"],
        json!([{"org_code": ORG_A, "info_code": INFO, "date": "2026-12-01",
                "planned_count": 200, "actual_count": 50, "shortfall": 0.75}])
    );
    // A smaller share lists INFO_OTHER too, after the newer plan.
    let (_, wider) = app
        .api
        .get(&platform, "/v1/platform/statistics/schedule?share=0.01")
        .await;
    let listed: Vec<&str> = wider["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["info_code"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [INFO, INFO_OTHER]);
    let (status, _) = app
        .api
        .get(&platform, "/v1/platform/statistics/schedule?share=1.5")
        .await;
    assert_eq!(status, 400);

    // B sees its own plan only.
    let (_, b) = app.get(ORG_B, "/v1/statistics/schedule").await;
    assert_eq!(b["plans"].as_array().unwrap().len(), 1);

    // Bad plans are refused whole and change nothing.
    for (plans, field) in [
        (
            json!([{"info_code": "X", "date": "2026-12-01", "planned_count": 1}]),
            "info_code",
        ),
        (
            json!([{"info_code": INFO, "date": "2026/12/01", "planned_count": 1}]),
            "date",
        ),
        (
            json!([{"info_code": INFO, "date": "2026-12-01", "planned_count": -1}]),
            "planned_count",
        ),
        (json!([]), "plans"),
    ] {
        let (status, p) = app
            .api
            .call(
                reqwest::Method::PUT,
                &app.token(ORG_B),
                "/v1/statistics/schedule",
                Some(&json!({ "plans": plans })),
            )
            .await;
        assert_eq!(status, 400, "{field}");
        assert!(p["detail"].as_str().unwrap().contains(field), "{p}");
    }
    let (_, b) = app.get(ORG_B, "/v1/statistics/schedule").await;
    assert_eq!(b["plans"].as_array().unwrap().len(), 1);
}

#[actix_rt::test]
async fn a_backlog_is_counted_in_batches_each_event_once() {
    let clock = Arc::new(ManualClock::new(first_saturday_morning()));
    let env = TestEnv::new_with(&[chukan_stats::migrations()], |_| {}, clock)
        .await
        .unwrap();
    // The backlog waits before the service starts, as after an outage: 600 events of A, 100
    // of them delivered twice, and 300 of B, interleaved.
    env.ctx
        .bus
        .declare_queue(&chukan_stats::exchanges_queue())
        .await
        .unwrap();
    let at = first_saturday_morning();
    for i in 0..600 {
        let msg = OutgoingMessage::new(
            ORG_A,
            chukan_proto::STATS_EXCHANGE,
            result_received(ORG_A, at, 100 + i, "provided").encode_to_vec(),
        );
        env.publish(&msg).await;
        if i % 6 == 0 {
            env.publish(&msg).await;
        }
        if i % 2 == 0 {
            env.publish(&OutgoingMessage::new(
                ORG_B,
                chukan_proto::STATS_EXCHANGE,
                result_received(ORG_B, at, 50, "refused").encode_to_vec(),
            ))
            .await;
        }
    }
    let _parts = chukan_stats::start(&env.ctx).await.unwrap();
    let counted = |tenant: &'static str| {
        let env = &env;
        async move {
            env.scalar_i64(
                tenant,
                "SELECT coalesce(sum(count), 0)::int8 FROM stats.exchange_days",
            )
            .await
        }
    };
    chukan_testkit::wait_until(DEADLINE, "the backlog counted", || async {
        counted(ORG_A).await == 600 && counted(ORG_B).await == 300
    })
    .await
    .unwrap();
    // Every event once: sums and the maximum over exactly the 600 distinct durations.
    let (timed, sum, max) = (
        env.scalar_i64(ORG_A, "SELECT timed FROM stats.exchange_days")
            .await,
        env.scalar_i64(ORG_A, "SELECT duration_sum_ms FROM stats.exchange_days")
            .await,
        env.scalar_i64(ORG_A, "SELECT duration_max_ms FROM stats.exchange_days")
            .await,
    );
    assert_eq!(timed, 600);
    assert_eq!(sum, (100..700).sum::<i64>());
    assert_eq!(max, 699);
    chukan_testkit::wait_until(DEADLINE, "the redeliveries settled", || async {
        let (_, events) = chukan_stats::metrics::exchange_batches();
        events >= 1000.0
    })
    .await
    .unwrap();
    let (transactions, events) = chukan_stats::metrics::exchange_batches();
    assert_eq!(events, 1000.0, "900 events and 100 redeliveries");
    assert!(
        transactions < 1000,
        "a backlog of 1000 deliveries was counted one transaction each"
    );
}
