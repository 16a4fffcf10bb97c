//! 計画停止日 announced at runtime (the calendar): platform operators add or withdraw a planned
//! outage through `/v1/calendar/outages/{date}`; each change is written with the whole list
//! and a new revision to admin's outbox (`calendar.changed`) in the same transaction, and
//! every process applies it to its [`chukan_core::ServiceCalendar`] (see
//! `chukan_runtime::calendar_sync`). Admin also answers the current list on
//! `admin.calendar-rpc`, which a process asks at start and now and then, so one that missed an
//! announcement converges anyway.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use chukan_auth::Caller;
use chukan_core::{Problem, problem::ProtectedRouteProblems};
use chukan_db::OrProblem as _;
use chukan_mq::{OutgoingMessage, rpc::RpcHandler};
use chukan_proto::{CALENDAR_CHANGED, CalendarChanged, Message as _, PLATFORM_TENANT};
use deadpool_postgres::GenericClient;
use futures_util::{FutureExt as _, future::BoxFuture};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AdminState, SCHEMA};

/// A planned outage as announced.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlannedOutage {
    /// The Japan date the platform is closed all day.
    pub date: NaiveDate,
    /// 停止理由.
    pub reason: String,
    /// Platform client that announced it.
    pub set_by: String,
    pub set_at: DateTime<Utc>,
}

/// 計画停止日の一覧.
#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarView {
    /// Announced at runtime, oldest date first.
    pub planned_outages: Vec<PlannedOutage>,
    /// Also closed, from the settings (`calendar.planned_outages`) of this process.
    pub configured_outages: Vec<NaiveDate>,
    pub revision: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutageRequest {
    /// 停止理由 (1–200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub reason: String,
}

async fn outages(client: &impl GenericClient) -> Result<Vec<PlannedOutage>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT outage_date, reason, set_by, set_at FROM admin.planned_outages
             ORDER BY outage_date",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PlannedOutage {
            date: r.get(0),
            reason: r.get(1),
            set_by: r.get(2),
            set_at: r.get(3),
        })
        .collect())
}

async fn revision(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT revision FROM admin.calendar_revision WHERE id = 1",
            &[],
        )
        .await?
        .get(0))
}

/// The announcement of the calendar as it is in `client`'s view.
async fn current(client: &impl GenericClient) -> Result<CalendarChanged, tokio_postgres::Error> {
    let (list, revision) = futures_util::try_join!(outages(client), revision(client))?;
    Ok(CalendarChanged {
        planned_outages: list.iter().map(|o| o.date.to_string()).collect(),
        revision,
    })
}

/// Bumps the revision and writes the whole list to the outbox, in the change's transaction.
async fn announce(tx: &chukan_db::Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "UPDATE admin.calendar_revision SET revision = revision + 1 WHERE id = 1",
        &[],
    )
    .await?;
    let event = current(tx).await?;
    chukan_mq::outbox::enqueue(
        tx,
        SCHEMA,
        // The platform's announcement, not a tenant's: the header names the realm.
        &OutgoingMessage::new(PLATFORM_TENANT, CALENDAR_CHANGED, event.encode_to_vec()),
    )
    .await
}

// Problem is what every handler answers with; boxing it for a helper buys nothing.
#[allow(clippy::result_large_err)]
fn outage_date(raw: &str) -> Result<NaiveDate, Problem> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        Problem::invalid(
            "日付は YYYY-MM-DD 形式で指定してください。",
            "日付を確認して再度指定してください。",
        )
    })
}

async fn view(state: &AdminState) -> Result<CalendarView, Problem> {
    let client = state.db.get().await.or_problem("pool")?;
    let (list, revision) =
        futures_util::try_join!(outages(&client), revision(&client)).or_problem("calendar")?;
    Ok(CalendarView {
        planned_outages: list,
        configured_outages: state.configured_outages.clone(),
        revision,
    })
}

#[utoipa::path(
    get, path = "/v1/calendar", tag = "calendar", operation_id = "getCalendar",
    summary = "計画停止日の一覧 (planned outages)",
    description = "プラットフォーム運用者が登録した計画停止日と、設定による計画停止日を返します。",
    responses(
        (status = 200, body = CalendarView),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["system_admin", "business_staff", "system_client", "platform_operator"]))
)]
pub async fn get_calendar(
    _caller: Caller,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, Problem> {
    Ok(HttpResponse::Ok().json(view(&state).await?))
}

#[utoipa::path(
    put, path = "/v1/calendar/outages/{date}", tag = "calendar", operation_id = "putPlannedOutage",
    summary = "計画停止日の登録 (announce a planned outage)",
    description = "計画停止日を登録し、全サービスに通知します (プラットフォーム運用者のみ)。その日は終日サービスを停止します。当日以前の日付は登録できません。",
    params(("date" = String, Path, description = "計画停止日 (YYYY-MM-DD)")),
    request_body(content = OutageRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "登録しました", body = CalendarView),
        (status = 400, description = "invalid-field, malformed-json", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported-media-type", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["platform_operator"]))
)]
#[tracing::instrument(skip_all)]
pub async fn put_outage(
    caller: Caller,
    state: web::Data<AdminState>,
    date: web::Path<String>,
    body: web::Json<OutageRequest>,
) -> Result<HttpResponse, Problem> {
    let date = outage_date(&date)?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(Problem::invalid(
            "項目「reason」は制御文字を含まない1〜200文字で指定してください。",
            "停止理由を確認して再度指定してください。",
        ));
    }
    let today = crate::domain::japan_today(&*state.clock);
    if date <= today {
        // A day already begun cannot be closed after the fact: callers were told it was open.
        return Err(Problem::invalid(
            "計画停止日は明日以降の日付を指定してください。",
            "当日の停止は運用手順に従って周知してください。",
        ));
    }
    let now = state.clock.now();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = client.transaction().await.or_problem("begin")?;
    tx.execute(
        "INSERT INTO admin.planned_outages (outage_date, reason, set_by, set_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (outage_date) DO UPDATE
             SET reason = EXCLUDED.reason, set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at",
        &[&date, &reason, &caller.claims().sub, &now],
    )
    .await
    .or_problem("outage")?;
    announce(&tx).await.or_problem("announce")?;
    tx.commit().await.or_problem("commit")?;
    tracing::info!(%date, by = %caller.claims().sub, "planned outage announced");
    Ok(HttpResponse::Ok().json(view(&state).await?))
}

#[utoipa::path(
    delete, path = "/v1/calendar/outages/{date}", tag = "calendar", operation_id = "deletePlannedOutage",
    summary = "計画停止日の取消し (withdraw a planned outage)",
    description = "登録した計画停止日を取り消し、全サービスに通知します (プラットフォーム運用者のみ)。",
    params(("date" = String, Path, description = "計画停止日 (YYYY-MM-DD)")),
    responses(
        (status = 200, description = "取り消しました", body = CalendarView),
        (status = 400, description = "invalid-field", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["platform_operator"]))
)]
#[tracing::instrument(skip_all)]
pub async fn delete_outage(
    caller: Caller,
    state: web::Data<AdminState>,
    date: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let date = outage_date(&date)?;
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = client.transaction().await.or_problem("begin")?;
    let removed = tx
        .execute(
            "DELETE FROM admin.planned_outages WHERE outage_date = $1",
            &[&date],
        )
        .await
        .or_problem("outage")?;
    if removed == 0 {
        return Err(Problem::not_found("計画停止日"));
    }
    announce(&tx).await.or_problem("announce")?;
    tx.commit().await.or_problem("commit")?;
    tracing::info!(%date, by = %caller.claims().sub, "planned outage withdrawn");
    Ok(HttpResponse::Ok().json(view(&state).await?))
}

/// `admin.calendar-rpc`: the calendar as it is now, for a process that starts or checks.
pub fn rpc_handler(db: chukan_db::Pool) -> Arc<dyn RpcHandler> {
    Arc::new(
        move |_tenant: String, _body: Vec<u8>| -> BoxFuture<'static, anyhow::Result<Vec<u8>>> {
            let db = db.clone();
            async move {
                let client = db.get().await?;
                Ok(current(&client).await?.encode_to_vec())
            }
            .boxed()
        },
    )
}
