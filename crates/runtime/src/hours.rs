//! Service-hour gate (DOMAIN.md §7): outside service hours the API answers 503 with
//! `Retry-After` and the next opening time instead of accepting work it cannot pass on.

use std::sync::Arc;

use actix_web::{
    Error, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web,
};
use chrono_tz_free::format_jst;
use chukan_core::{Clock, Problem, ServiceCalendar};

/// What the gate needs; registered as app data by [`crate::http_server`].
#[derive(Clone)]
pub struct HoursGate {
    pub calendar: Arc<ServiceCalendar>,
    pub clock: Arc<dyn Clock>,
    pub enforce: bool,
}

/// Paths that stay open at any hour: key distribution must work for every party, the API
/// description costs nothing and is what a caller reads to prepare for opening time, and
/// the operating status is how a caller learns when that is.
fn always_open(path: &str) -> bool {
    path == "/v1/auth/jwks"
        || path.starts_with("/.well-known/")
        || path == crate::OPENAPI_PATH
        || path == crate::ENTRY_OPENAPI_PATH
        || path == "/v1/status"
}

pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let closed = req
        .app_data::<web::Data<HoursGate>>()
        .filter(|g| g.enforce && !always_open(req.path()))
        .and_then(|g| {
            let now = g.clock.now();
            (!g.calendar.api_open(now)).then(|| (now, g.calendar.next_opening(now)))
        });
    match closed {
        None => Ok(next.call(req).await?.map_into_left_body()),
        Some((now, opens)) => {
            let wait = (opens - now).num_seconds().max(1) as u64;
            let problem = Problem::new(
                503,
                "outside-service-hours",
                "Outside service hours",
                format!(
                    "サービス時間外です。次のサービス開始は {} です。",
                    format_jst(opens)
                ),
                "サービス開始時刻以降に再度実行してください（平日 8:00〜21:00、土日祝日・年末年始 8:00〜17:00）。",
            )
            .with_retry_after(wait, Some(opens.to_rfc3339()));
            let mut res = problem.error_response();
            res.extensions_mut()
                .insert(chukan_telemetry::OutsideServiceHours);
            Ok(req.into_response(res).map_into_right_body())
        }
    }
}

mod chrono_tz_free {
    use chrono::{DateTime, FixedOffset, Utc};

    /// "2026-11-26 08:00 (JST)": Japan has no DST, so a fixed +09:00 is exact.
    pub fn format_jst(at: DateTime<Utc>) -> String {
        #[allow(clippy::unwrap_used)] // 9 h is always a valid offset
        let jst = FixedOffset::east_opt(9 * 3600).unwrap();
        at.with_timezone(&jst)
            .format("%Y-%m-%d %H:%M (JST)")
            .to_string()
    }
}
