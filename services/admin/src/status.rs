//! 稼動状態の通知 (operating status, DOMAIN §2 F10): `GET /v1/status` tells anyone — no token, at
//! any hour — what is open now and next: the service hours, the weekday send/receive stop
//! window, planned outages (from the settings and announced), and components that are
//! degraded (the NWS link as relay's sends see it, the nightly replica batch), in Japanese and
//! as codes. Components announce their health on `status.component`; a watcher publishes
//! `status.changed` whenever what the status says changes (once, however many admin
//! processes run).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{HttpResponse, http::header, web};
use chrono::{DateTime, DurationRound as _, NaiveDate, Utc};
use chukan_core::{Clock, Problem, ServiceCalendar, ServiceState, calendar::ClosedReason};
use chukan_db::OrProblem as _;
use chukan_mq::{Delivery, HandleError, Handler, OutgoingMessage, reject, retry};
use chukan_proto::{ComponentStatus, Message as _, STATUS_CHANGED, StatusChanged};
use deadpool_postgres::GenericClient;
use futures_util::future::BoxFuture;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{AdminState, SCHEMA};

/// Components a status may name.
const COMPONENTS: [&str; 2] = ["nws-link", "replica-batch"];

/// 稼動状態.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperatingStatus {
    pub at: DateTime<Utc>,
    /// `open` | `send-receive-stopped` | `closed`.
    pub state: &'static str,
    /// Why closed: `outside-hours` | `planned-outage`.
    pub reason: Option<&'static str>,
    /// The state in Japanese, with what it means for a caller.
    pub message: String,
    /// Whether the API takes calls now.
    pub api_open: bool,
    /// Whether messages go to and come from the NWS now.
    pub nws_exchange_open: bool,
    /// The next change of state, and to what.
    pub next_change_at: DateTime<Utc>,
    pub next_state: &'static str,
    /// The next time the service is fully open (now, when it is).
    pub next_opening: DateTime<Utc>,
    /// Planned outages from today on.
    pub planned_outages: Vec<NaiveDate>,
    /// Components with their health (`ok` | `degraded`); a component not heard of is absent.
    pub components: Vec<ComponentView>,
    /// Whether any component is degraded.
    pub degraded: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComponentView {
    /// `nws-link` | `replica-batch`.
    pub component: String,
    /// `ok` | `degraded`.
    pub status: String,
    pub detail: String,
    pub since: DateTime<Utc>,
}

fn state_code(state: ServiceState) -> (&'static str, Option<&'static str>) {
    match state {
        ServiceState::Open => ("open", None),
        ServiceState::SendReceiveStopped => ("send-receive-stopped", None),
        ServiceState::Closed(ClosedReason::OutsideHours) => ("closed", Some("outside-hours")),
        ServiceState::Closed(ClosedReason::PlannedOutage) => ("closed", Some("planned-outage")),
    }
}

fn message(state: ServiceState, next_opening: DateTime<Utc>) -> String {
    let opens = next_opening
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%Y-%m-%d %H:%M");
    match state {
        ServiceState::Open => "サービス提供中です。".into(),
        ServiceState::SendReceiveStopped => format!(
            "情報提供ネットワークシステムとの送受信を停止しています（平日21:00〜24:00）。受け付けた照会等は保持し、{opens} 以降に順次送信します。"
        ),
        ServiceState::Closed(ClosedReason::OutsideHours) => {
            format!("サービス時間外です。次のサービス開始は {opens} です。")
        }
        ServiceState::Closed(ClosedReason::PlannedOutage) => {
            format!("計画停止中です。次のサービス開始は {opens} です。")
        }
    }
}

/// The next instant the state differs from the one at `at`. States change on the hour in
/// Japan, whose offset is whole hours, so the UTC hours after `at` are the only candidates.
fn next_change(calendar: &ServiceCalendar, at: DateTime<Utc>) -> (DateTime<Utc>, ServiceState) {
    let now = calendar.state_at(at);
    let mut t = at.duration_trunc(chrono::Duration::hours(1)).unwrap_or(at);
    // A year of hours bounds the search, however many outages are announced.
    for _ in 0..(366 * 24) {
        t += chrono::Duration::hours(1);
        let state = calendar.state_at(t);
        if state != now {
            return (t, state);
        }
    }
    (t, now)
}

async fn components(
    client: &impl GenericClient,
) -> Result<Vec<ComponentView>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT component, status, detail, since FROM admin.component_status
             ORDER BY component",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ComponentView {
            component: r.get(0),
            status: r.get(1),
            detail: r.get(2),
            since: r.get(3),
        })
        .collect())
}

/// The operating status at `at`.
pub async fn status(
    client: &impl GenericClient,
    calendar: &ServiceCalendar,
    at: DateTime<Utc>,
) -> Result<OperatingStatus, tokio_postgres::Error> {
    let state = calendar.state_at(at);
    let (code, reason) = state_code(state);
    let (next_at, next) = next_change(calendar, at);
    let next_opening = calendar.next_opening(at);
    let today = chukan_core::calendar::japan_date(at);
    let components = components(client).await?;
    Ok(OperatingStatus {
        at,
        state: code,
        reason,
        message: message(state, next_opening),
        api_open: calendar.api_open(at),
        nws_exchange_open: state == ServiceState::Open,
        next_change_at: next_at,
        next_state: state_code(next).0,
        next_opening,
        planned_outages: calendar
            .planned_outages()
            .into_iter()
            .filter(|d| *d >= today)
            .collect(),
        degraded: components.iter().any(|c| c.status != "ok"),
        components,
    })
}

/// What `status.changed` reports of a status: a change of it is a change of status.
fn fingerprint(s: &OperatingStatus) -> StatusChanged {
    StatusChanged {
        state: s.state.into(),
        reason: s.reason.unwrap_or_default().into(),
        degraded: s
            .components
            .iter()
            .filter(|c| c.status != "ok")
            .map(|c| format!("{}:{}", c.component, c.status))
            .collect(),
        at_ms: s.at.timestamp_millis(),
    }
}

/// Publishes `status.changed` if the status differs from the one last published; returns
/// whether it did. Compare-and-set in one transaction: one publication per change.
pub async fn publish_if_changed(
    db: &chukan_db::Pool,
    calendar: &ServiceCalendar,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let now = status(&tx, calendar, at).await?;
    let event = fingerprint(&now);
    let key = format!(
        "{}|{}|{}",
        event.state,
        event.reason,
        event.degraded.join(",")
    );
    let changed = tx
        .execute(
            "INSERT INTO admin.status_published (id, fingerprint, at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, at = EXCLUDED.at
             WHERE admin.status_published.fingerprint <> EXCLUDED.fingerprint",
            &[&key, &at],
        )
        .await?
        == 1;
    if changed {
        chukan_mq::outbox::enqueue(
            &tx,
            SCHEMA,
            &OutgoingMessage::new(
                chukan_proto::PLATFORM_TENANT,
                STATUS_CHANGED,
                event.encode_to_vec(),
            ),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// Looks every `every` whether the status changed (hours pass, outages begin, components
/// report), and publishes it when it did.
pub fn watch(
    db: chukan_db::Pool,
    calendar: Arc<ServiceCalendar>,
    clock: Arc<dyn Clock>,
    outbox: chukan_mq::outbox::OutboxHandle,
    every: Duration,
) -> chukan_runtime::Worker {
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {}
            }
            match publish_if_changed(&db, &calendar, clock.now()).await {
                Ok(true) => outbox.wake(),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "operating status not checked"),
            }
        }
    });
    chukan_runtime::periodic_worker(
        "admin.status",
        chukan_runtime::StopStage::Intake,
        task,
        stop_tx,
    )
}

/// Consumer of `status.component`: keeps the newest health of each component.
pub struct ComponentReports {
    db: chukan_db::Pool,
}

impl ComponentReports {
    pub fn new(db: chukan_db::Pool) -> Self {
        Self { db }
    }
}

impl Handler for ComponentReports {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let db = self.db.clone();
        Box::pin(async move {
            let report = delivery.decode::<ComponentStatus>()?;
            if !COMPONENTS.contains(&report.component.as_str())
                || !matches!(report.status.as_str(), "ok" | "degraded")
                || report.detail.chars().count() > 200
            {
                return Err(reject("ComponentStatus out of range"));
            }
            let since = DateTime::<Utc>::from_timestamp_millis(report.at_ms)
                .ok_or_else(|| reject("ComponentStatus without a time"))?;
            let client = db.get().await.map_err(retry("pool"))?;
            client
                .execute(
                    "INSERT INTO admin.component_status (component, status, detail, since)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (component) DO UPDATE
                         SET status = EXCLUDED.status, detail = EXCLUDED.detail, since = EXCLUDED.since
                         WHERE admin.component_status.since <= EXCLUDED.since",
                    &[&report.component, &report.status, &report.detail, &since],
                )
                .await
                .map_err(retry("component status"))?;
            Ok(())
        })
    }
}

/// Requests `/v1/status` answers per second, per process, beyond which it says 429: it is
/// open to anyone, so a flood must not reach the database.
const RATE_PER_SECOND: f64 = 20.0;
const BURST: f64 = 40.0;

/// A token bucket for `/v1/status`.
pub struct RateLimit(Mutex<(Instant, f64)>);

impl Default for RateLimit {
    fn default() -> Self {
        Self(Mutex::new((Instant::now(), BURST)))
    }
}

impl RateLimit {
    fn admit(&self) -> bool {
        let mut bucket = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.0).as_secs_f64() * RATE_PER_SECOND;
        *bucket = (now, (bucket.1 + refill).min(BURST));
        if bucket.1 >= 1.0 {
            bucket.1 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[utoipa::path(
    get, path = "/v1/status", tag = "status", operation_id = "getStatus",
    summary = "稼動状態 (operating status: what is open now and next)",
    description = "トークン不要・サービス時間外でも応答します。現在のサービス状態（サービス提供中・送受信停止中・サービス時間外・計画停止中）、次の状態変化、計画停止日、縮退しているコンポーネント（情報提供ネットワークシステムとの接続、夜間バッチ）を返します。1秒あたりの要求数を制限しています。",
    responses(
        (status = 200, body = OperatingStatus),
        (status = 429, description = "rate-limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "service-unavailable", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get_status(state: web::Data<AdminState>) -> Result<HttpResponse, Problem> {
    if !state.status_rate.admit() {
        return Err(Problem::new(
            429,
            "rate-limited",
            "Too many requests",
            "稼動状態の照会が集中しています。",
            "1秒以上待ってから再度照会してください。",
        )
        .with_retry_after(1, None));
    }
    let client = state.db.get().await.or_problem("pool")?;
    let now = status(&client, &state.calendar, state.clock.now())
        .await
        .or_problem("status")?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(now))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn jst(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Tokyo
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_next_change_is_the_stop_window_the_night_or_the_morning() {
        let calendar = ServiceCalendar::default();
        // Wednesday 2026-12-09 10:00: open until 21:00, then the stop window.
        let (at, next) = next_change(&calendar, jst(2026, 12, 9, 10));
        assert_eq!(
            (at, state_code(next).0),
            (jst(2026, 12, 9, 21), "send-receive-stopped")
        );
        let (at, next) = next_change(&calendar, jst(2026, 12, 9, 22));
        assert_eq!(
            (at, state_code(next).1),
            (jst(2026, 12, 10, 0), Some("outside-hours"))
        );
        // Saturday 2026-12-12 16:00: closes at 17:00.
        let (at, _) = next_change(&calendar, jst(2026, 12, 12, 16));
        assert_eq!(at, jst(2026, 12, 12, 17));
        // A planned outage on Thursday: closed all day for that reason, then the night
        // before Friday's opening.
        calendar.set_announced([NaiveDate::from_ymd_opt(2026, 12, 10).unwrap()]);
        let (at, next) = next_change(&calendar, jst(2026, 12, 10, 3));
        assert_eq!(
            (at, state_code(next)),
            (jst(2026, 12, 11, 0), ("closed", Some("outside-hours")))
        );
        assert_eq!(
            calendar.next_opening(jst(2026, 12, 10, 3)),
            jst(2026, 12, 11, 8)
        );
        assert!(
            message(
                calendar.state_at(jst(2026, 12, 10, 12)),
                jst(2026, 12, 11, 8)
            )
            .contains("計画停止中")
        );
    }

    #[test]
    fn the_bucket_admits_a_burst_then_refuses() {
        let limit = RateLimit::default();
        let admitted = (0..100).filter(|_| limit.admit()).count();
        assert!((40..=45).contains(&admitted), "{admitted}");
    }
}
