//! Platform routes (the platform realm: J-LIS, the ministry; role `platform_operator`, no
//! tenant): statistics across organisations — every organisation's replica statistics of a
//! snapshot date, the organisations far behind their registration schedule (seed §2.5) —
//! and taking a snapshot on demand. Aggregates by code only: this schema holds no personal
//! data. Reads go through `chukan_db::platform_tx` (read-only, every organisation's rows).

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use chukan_auth::Caller;
use chukan_core::{Problem, problem::ProtectedRouteProblems};
use chukan_db::OrProblem as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    StatsState,
    api::{self, Output},
    calendar::SnapshotReason,
    export,
    schedule::{PlanList, PlanView},
    snapshots, store,
};

/// Most rows of the behind-schedule list.
const MAX_BEHIND: i64 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
pub struct PlatformReplicaParams {
    /// Snapshot date (YYYY-MM-DD); default the newest snapshot.
    #[param(value_type = Option<String>, format = Date)]
    pub date: Option<String>,
    /// `json` (default) or `csv`.
    #[param(value_type = Option<crate::api::Format>)]
    pub format: Option<String>,
    /// CSV character set: `utf-8` (default, with BOM) or `shift_jis`.
    #[param(value_type = Option<crate::api::Encoding>)]
    pub encoding: Option<String>,
}

/// 副本統計 of every organisation on a snapshot date.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformReplicaStatistics {
    pub date: NaiveDate,
    pub reason: SnapshotReason,
    pub rows: Vec<PlatformReplicaRow>,
    /// Organisations with rows.
    pub organisations: usize,
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformReplicaRow {
    /// 機関コード.
    pub org_code: String,
    pub info_code: String,
    pub major_version: String,
    pub dataset: String,
    pub count: i64,
}

/// `GET /v1/platform/statistics/replicas`: every organisation's replica statistics.
#[utoipa::path(
    get, path = "/v1/platform/statistics/replicas", tag = "platform", operation_id = "getPlatformReplicaStatistics",
    summary = "全団体の副本統計 (every organisation's replica statistics of a snapshot date)",
    params(PlatformReplicaParams),
    responses(
        (status = 200, description = "JSON, or CSV (Japanese headers) with `format=csv`", content(
            (PlatformReplicaStatistics = "application/json"),
            (String = "text/csv")
        )),
        (status = 400, description = "invalid-field", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "snapshot-not-found", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["platform_operator"]))
)]
pub(crate) async fn get_replicas(
    _caller: Caller,
    state: web::Data<StatsState>,
    params: web::Query<PlatformReplicaParams>,
) -> Result<HttpResponse, Problem> {
    let asked = api::parse_date("date", params.date.as_deref())?;
    let output = api::output(params.format.as_deref(), params.encoding.as_deref())?;
    let mut client = state.db.get().await.or_problem("pool")?;
    let run = api::finished_run(&client, asked).await?;
    let tx = chukan_db::platform_tx(&mut client)
        .await
        .or_problem("begin")?;
    let rows = store::snapshot_all(&tx, run.date)
        .await
        .or_problem("statistics")?;
    tx.commit().await.or_problem("commit")?;
    if let Output::Csv(encoding) = output {
        let lines: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.tenant.clone(),
                    r.info_code.clone(),
                    r.major_version.clone(),
                    r.dataset.clone(),
                    r.count.to_string(),
                ]
            })
            .collect();
        let count_header = format!("件数（{}）", run.date);
        return Ok(export::response(
            &format!("platform-replica-statistics-{}.csv", run.date),
            &[
                "機関コード",
                "特定個人情報名コード",
                "メジャーバージョン",
                "データセット",
                &count_header,
            ],
            &lines,
            encoding,
        ));
    }
    let mut organisations: Vec<&str> = rows.iter().map(|r| r.tenant.as_str()).collect();
    organisations.dedup();
    Ok(HttpResponse::Ok().json(PlatformReplicaStatistics {
        date: run.date,
        reason: run.reason,
        organisations: organisations.len(),
        total: rows.iter().map(|r| r.count).sum(),
        rows: rows
            .into_iter()
            .map(|r| PlatformReplicaRow {
                org_code: r.tenant,
                info_code: r.info_code,
                major_version: r.major_version,
                dataset: r.dataset,
                count: r.count,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct BehindParams {
    /// List organisations short of their plan by more than this share (0–1, exclusive);
    /// default `stats.behind_plan_share`.
    #[param(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub share: Option<f64>,
}

/// `GET /v1/platform/statistics/schedule`: organisations far behind their registration
/// schedule — for each organisation × item, the newest plan due by today whose replicas fall
/// short by more than the share — newest plan first.
#[utoipa::path(
    get, path = "/v1/platform/statistics/schedule", tag = "platform", operation_id = "getBehindSchedule",
    summary = "登録計画に対して遅れている団体 (organisations far behind their registration schedule)",
    params(BehindParams),
    responses(
        (status = 200, body = PlanList),
        (status = 400, description = "invalid-field", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["platform_operator"]))
)]
pub(crate) async fn get_behind(
    _caller: Caller,
    state: web::Data<StatsState>,
    params: web::Query<BehindParams>,
) -> Result<HttpResponse, Problem> {
    let share = params.share.unwrap_or(state.settings.behind_plan_share);
    if !(share > 0.0 && share < 1.0) {
        return Err(Problem::invalid(
            "項目「share」は0より大きく1より小さい割合で指定してください。",
            "割合を確認して再度照会してください。",
        ));
    }
    let today = chukan_core::calendar::japan_date(state.clock.now());
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::platform_tx(&mut client)
        .await
        .or_problem("begin")?;
    let behind = store::behind_plan(&tx, today, share, MAX_BEHIND)
        .await
        .or_problem("schedule")?;
    tx.commit().await.or_problem("commit")?;
    Ok(HttpResponse::Ok().json(PlanList {
        plans: behind.into_iter().map(PlanView::from).collect(),
    }))
}

/// 副本統計の臨時作成 (an on-demand snapshot).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// Snapshot date (YYYY-MM-DD); default today in Japan.
    #[schema(value_type = Option<String>, format = Date)]
    pub date: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotTaken {
    pub date: NaiveDate,
    pub reason: SnapshotReason,
    /// Organisations copied, and rows.
    pub organisations: i32,
    pub rows: u64,
}

/// `POST /v1/platform/statistics/replicas/snapshots`: takes a snapshot now (replacing one of
/// the same date).
#[utoipa::path(
    post, path = "/v1/platform/statistics/replicas/snapshots", tag = "platform", operation_id = "takeReplicaSnapshot",
    summary = "副本統計の臨時作成 (take a replica statistics snapshot now)",
    request_body(content = SnapshotRequest, content_type = "application/json"),
    responses(
        (status = 201, body = SnapshotTaken),
        (status = 400, description = "invalid-field, malformed-json", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported-media-type", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["platform_operator"]))
)]
pub(crate) async fn take_snapshot(
    caller: Caller,
    state: web::Data<StatsState>,
    body: web::Json<SnapshotRequest>,
) -> Result<HttpResponse, Problem> {
    let date = api::parse_date("date", body.date.as_deref())?
        .unwrap_or_else(|| chukan_core::calendar::japan_date(state.clock.now()));
    let taken = snapshots::take(&state, date, SnapshotReason::OnDemand)
        .await
        .map_err(|e| chukan_db::problem_of("snapshot", e))?;
    tracing::info!(%date, by = %caller.claims().sub, "replica statistics snapshot taken on demand");
    Ok(HttpResponse::Created().json(SnapshotTaken {
        date: taken.date,
        reason: taken.reason,
        organisations: taken.tenants,
        rows: taken.rows,
    }))
}
