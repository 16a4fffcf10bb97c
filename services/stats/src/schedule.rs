//! 登録計画 (registration schedule, seed §2.5): an organisation records the replica counts it
//! plans to hold per item by a date, and sees them next to what it holds now. The platform's
//! view of who is far behind is in [`crate::platform`].

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use chukan_auth::Caller;
use chukan_core::{Problem, ids::InfoCode, problem::ProtectedRouteProblems};
use chukan_db::OrProblem as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{StatsState, store};

/// Most plans one request records.
const MAX_PLANS: usize = 1000;
/// Room for [`MAX_PLANS`] plans and well beyond (more than the server-wide JSON limit), so a
/// list that is too long is told so (400) rather than cut off as too large (413).
pub const PLANS_JSON_LIMIT: usize = 1024 * 1024;

/// 登録計画の登録: planned replica counts per item and date.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlansRequest {
    #[schema(min_items = 1, max_items = 1000)]
    pub plans: Vec<PlanInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    /// 特定個人情報名コード.
    pub info_code: InfoCode,
    /// The Japan date by which the count is planned (YYYY-MM-DD).
    #[schema(value_type = String, format = Date, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub date: String,
    /// 計画件数.
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "chukan_core::json_int::i64")]
    pub planned_count: i64,
}

/// A plan next to the replicas held now.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// 機関コード.
    pub org_code: String,
    pub info_code: String,
    pub date: NaiveDate,
    pub planned_count: i64,
    /// Replicas of the item held now (every version and dataset).
    pub actual_count: i64,
    /// `(planned − actual) / planned`, 0 when none are planned or the plan is met.
    pub shortfall: f64,
}

impl From<store::PlanVsActual> for PlanView {
    fn from(p: store::PlanVsActual) -> Self {
        let shortfall = p.shortfall();
        PlanView {
            org_code: p.tenant,
            info_code: p.info_code,
            date: p.plan_date,
            planned_count: p.planned_count,
            actual_count: p.actual_count,
            shortfall,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanList {
    pub plans: Vec<PlanView>,
}

/// The checked plans of a request, or what is wrong with the first bad one.
// Problem is what every handler answers with; boxing it for a helper buys nothing.
#[allow(clippy::result_large_err)]
fn checked(body: PlansRequest) -> Result<Vec<store::Plan>, Problem> {
    if body.plans.is_empty() || body.plans.len() > MAX_PLANS {
        return Err(Problem::invalid(
            format!("項目「plans」は1件以上{MAX_PLANS}件以内で指定してください。"),
            "計画を分けて登録してください。",
        ));
    }
    body.plans
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let n = i + 1;
            let plan_date = NaiveDate::parse_from_str(&p.date, "%Y-%m-%d").map_err(|_| {
                Problem::invalid(
                    format!("{n}件目の項目「date」は YYYY-MM-DD 形式の日付で指定してください。"),
                    "日付を確認して再度登録してください。",
                )
            })?;
            if p.planned_count < 0 {
                return Err(Problem::invalid(
                    format!("{n}件目の項目「planned_count」は0以上で指定してください。"),
                    "件数を確認して再度登録してください。",
                ));
            }
            Ok(store::Plan {
                info_code: p.info_code.as_str().to_owned(),
                plan_date,
                planned_count: p.planned_count,
            })
        })
        .collect()
}

/// `PUT /v1/statistics/schedule`: records (or replaces) planned counts; answers every plan.
#[utoipa::path(
    put, path = "/v1/statistics/schedule", tag = "statistics", operation_id = "putRegistrationSchedule",
    summary = "副本の登録計画の登録 (record planned replica counts per item and date)",
    request_body(content = PlansRequest, content_type = "application/json"),
    responses(
        (status = 200, body = PlanList),
        (status = 400, description = "invalid-field, malformed-json", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload-too-large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported-media-type", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
pub(crate) async fn put_schedule(
    caller: Caller,
    state: web::Data<StatsState>,
    body: web::Json<PlansRequest>,
) -> Result<HttpResponse, Problem> {
    let plans = checked(body.into_inner())?;
    let tenant = caller.tenant();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    store::upsert_plans(&tx, tenant, &plans, &caller.claims().sub, state.clock.now())
        .await
        .or_problem("plans")?;
    let all = store::plans_of(&tx, tenant).await.or_problem("plans")?;
    tx.commit().await.or_problem("commit")?;
    Ok(HttpResponse::Ok().json(PlanList {
        plans: all.into_iter().map(PlanView::from).collect(),
    }))
}

/// `GET /v1/statistics/schedule`: the organisation's plans next to what it holds now.
#[utoipa::path(
    get, path = "/v1/statistics/schedule", tag = "statistics", operation_id = "getRegistrationSchedule",
    summary = "副本の登録計画と実績 (planned vs held replica counts)",
    responses(
        (status = 200, body = PlanList),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
pub(crate) async fn get_schedule(
    caller: Caller,
    state: web::Data<StatsState>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let all = store::plans_of(&tx, tenant).await.or_problem("plans")?;
    tx.commit().await.or_problem("commit")?;
    Ok(HttpResponse::Ok().json(PlanList {
        plans: all.into_iter().map(PlanView::from).collect(),
    }))
}
