//! REST routes of the statistics service for an organisation's own staff: its replica
//! statistics by snapshot date, compared between two dates, as JSON or as CSV for Excel.
//! Everything here is counts by code; there is no personal data to show.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use chukan_auth::Caller;
use chukan_core::{Problem, problem::ProtectedRouteProblems};
use chukan_db::OrProblem as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::{
    StatsState,
    calendar::SnapshotReason,
    export::{self, CsvEncoding},
    store,
};

/// Longest span of days one business statistics answer covers.
const MAX_DAYS: i64 = 366;

/// The service's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    paths(
        get_replica_statistics,
        list_snapshots,
        get_exchange_statistics,
        crate::schedule::put_schedule,
        crate::schedule::get_schedule,
        crate::platform::get_replicas,
        crate::platform::get_behind,
        crate::platform::take_snapshot
    ),
    components(schemas(
        crate::schedule::PlansRequest,
        crate::schedule::PlanInput,
        crate::schedule::PlanView,
        crate::schedule::PlanList,
        crate::platform::PlatformReplicaStatistics,
        crate::platform::PlatformReplicaRow,
        crate::platform::SnapshotRequest,
        crate::platform::SnapshotTaken,
        ExchangeStatistics,
        ExchangeStatisticsRow,
        ReplicaStatistics,
        ReplicaStatisticsRow,
        SnapshotList,
        SnapshotView,
        SnapshotReason,
        Problem
    )),
    tags((
        name = "platform",
        description = "プラットフォーム運用者（地方公共団体情報システム機構・所管省庁）向け: 全団体の副本統計、登録計画に対して遅れている団体、副本統計の臨時作成。団体のトークンでは呼び出せません。"
    ), (
        name = "statistics",
        description = "統計: 業務統計（情報照会・情報提供・符号取得・お知らせ・自己情報提供の日別件数と所要時間）と副本統計（副本件数の版・データセット別スナップショット。毎月第1土曜日、移行期間中は毎週土曜日）を日付ごとに参照・比較し、CSV（Excel 向け UTF-8 BOM 付き、または Shift_JIS）で出力します。"
    ))
)]
pub struct ApiDoc;

// Who may call what is each operation's `security` (enforced by chukan-auth's gate):
// statistics are counts without personal data, read by administrators and business staff.

/// Most snapshot dates one list answer holds.
const MAX_SNAPSHOTS: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<StatsState>) {
    cfg.app_data(state)
        .route(
            "/v1/statistics/replicas",
            web::get().to(get_replica_statistics),
        )
        .route(
            "/v1/statistics/replicas/snapshots",
            web::get().to(list_snapshots),
        )
        .route(
            "/v1/statistics/exchanges",
            web::get().to(get_exchange_statistics),
        )
        .service(
            web::resource("/v1/statistics/schedule")
                .app_data(chukan_core::problem::json_config(
                    crate::schedule::PLANS_JSON_LIMIT,
                ))
                .route(web::put().to(crate::schedule::put_schedule))
                .route(web::get().to(crate::schedule::get_schedule)),
        )
        .route(
            "/v1/platform/statistics/replicas",
            web::get().to(crate::platform::get_replicas),
        )
        .route(
            "/v1/platform/statistics/schedule",
            web::get().to(crate::platform::get_behind),
        )
        .route(
            "/v1/platform/statistics/replicas/snapshots",
            web::post().to(crate::platform::take_snapshot),
        );
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ReplicaStatisticsParams {
    /// Snapshot date (YYYY-MM-DD, Japan date); default: the newest snapshot.
    #[param(value_type = Option<String>, format = Date)]
    pub date: Option<String>,
    /// A second snapshot date to compare with (its count and the difference per row).
    #[param(value_type = Option<String>, format = Date)]
    pub compare: Option<String>,
    /// `json` (default) or `csv`.
    #[param(value_type = Option<Format>)]
    pub format: Option<String>,
    /// CSV character set: `utf-8` (default, with BOM) or `shift_jis`.
    #[param(value_type = Option<Encoding>)]
    pub encoding: Option<String>,
}

/// Output format of a statistics route.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // documents the `format` parameter, read as text for a Japanese refusal
pub(crate) enum Format {
    Json,
    Csv,
}

/// Character set of a CSV answer.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the `encoding` parameter, read as text for a Japanese refusal
pub(crate) enum Encoding {
    #[schema(rename = "utf-8")]
    Utf8,
    #[schema(rename = "shift_jis")]
    ShiftJis,
}

/// 副本統計: an organisation's replica counts by item, major version and dataset on a date.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaStatistics {
    pub date: NaiveDate,
    pub reason: SnapshotReason,
    pub taken_at: Option<DateTime<Utc>>,
    /// The date compared with, when asked.
    pub compare: Option<NaiveDate>,
    pub rows: Vec<ReplicaStatisticsRow>,
    /// Sum of `count` over the rows.
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaStatisticsRow {
    /// 特定個人情報名コード.
    pub info_code: String,
    /// メジャーバージョン.
    pub major_version: String,
    /// データセット.
    pub dataset: String,
    /// 件数 on `date` (0 when the kind was held only on the compared date).
    pub count: i64,
    /// 件数 on `compare` (only when comparing).
    pub compare_count: Option<i64>,
    /// `count - compare_count` (only when comparing).
    pub difference: Option<i64>,
}

// Problem is what every handler answers with; boxing it for a helper buys nothing.
#[allow(clippy::result_large_err)]
pub(crate) fn parse_date(field: &str, raw: Option<&str>) -> Result<Option<NaiveDate>, Problem> {
    raw.map(|raw| NaiveDate::parse_from_str(raw, "%Y-%m-%d"))
        .transpose()
        .map_err(|_| {
            Problem::invalid(
                format!("項目「{field}」は YYYY-MM-DD 形式の日付で指定してください。"),
                "日付を確認して再度照会してください。",
            )
        })
}

/// The output asked for: JSON, or CSV in a character set.
pub(crate) enum Output {
    Json,
    Csv(CsvEncoding),
}

// Problem is what every handler answers with; boxing it for a helper buys nothing.
#[allow(clippy::result_large_err)]
pub(crate) fn output(format: Option<&str>, encoding: Option<&str>) -> Result<Output, Problem> {
    let encoding = match encoding {
        None => CsvEncoding::default(),
        Some(e) => CsvEncoding::parse(e).ok_or_else(|| {
            Problem::invalid(
                "項目「encoding」は utf-8 または shift_jis を指定してください。",
                "文字コードを確認して再度照会してください。",
            )
        })?,
    };
    match format {
        None | Some("json") => Ok(Output::Json),
        Some("csv") => Ok(Output::Csv(encoding)),
        Some(_) => Err(Problem::invalid(
            "項目「format」は json または csv を指定してください。",
            "出力形式を確認して再度照会してください。",
        )),
    }
}

/// The finished snapshot of `asked`, or the newest one. Which snapshots exist is
/// platform-level (no organisation data), read outside any tenant wall.
pub(crate) async fn finished_run(
    client: &chukan_db::PooledClient,
    asked: Option<NaiveDate>,
) -> Result<store::SnapshotRun, Problem> {
    let run = match asked {
        Some(d) => store::snapshot_run(client, d)
            .await
            .or_problem("snapshot")?,
        None => store::finished_runs(client, 1)
            .await
            .or_problem("snapshot")?
            .into_iter()
            .next(),
    };
    run.filter(|r| r.finished_at.is_some())
        .ok_or_else(|| no_snapshot(asked))
}

fn no_snapshot(date: Option<NaiveDate>) -> Problem {
    let detail = match date {
        Some(d) => format!("{d} の副本統計はありません。"),
        None => "副本統計はまだ作成されていません。".into(),
    };
    Problem::new(
        404,
        "snapshot-not-found",
        "No snapshot",
        detail,
        "副本統計は毎月第1土曜日（移行期間中は毎週土曜日）に作成されます。作成済みの日付は /v1/statistics/replicas/snapshots で確認してください。",
    )
}

/// `GET /v1/statistics/replicas`: the organisation's replica statistics of a snapshot date.
#[utoipa::path(
    get, path = "/v1/statistics/replicas", tag = "statistics", operation_id = "getReplicaStatistics",
    summary = "副本統計の参照・比較・CSV出力 (replica statistics of a snapshot date)",
    params(ReplicaStatisticsParams),
    responses(
        (status = 200, description = "JSON, or CSV (Japanese headers) with `format=csv`", content(
            (ReplicaStatistics = "application/json"),
            (String = "text/csv")
        )),
        (status = 400, description = "invalid-field", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "snapshot-not-found", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
pub(crate) async fn get_replica_statistics(
    caller: Caller,
    state: web::Data<StatsState>,
    params: web::Query<ReplicaStatisticsParams>,
) -> Result<HttpResponse, Problem> {
    let asked = parse_date("date", params.date.as_deref())?;
    let compare = parse_date("compare", params.compare.as_deref())?;
    let output = output(params.format.as_deref(), params.encoding.as_deref())?;
    let tenant = caller.tenant();
    let mut client = state.db.get().await.or_problem("pool")?;
    let run = finished_run(&client, asked).await?;
    if let Some(c) = compare {
        finished_run(&client, Some(c)).await?;
    }
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let rows = store::snapshot_rows(&tx, tenant, run.date, compare)
        .await
        .or_problem("statistics")?;
    tx.commit().await.or_problem("commit")?;
    let rows: Vec<ReplicaStatisticsRow> = rows
        .into_iter()
        .map(|r| {
            let count = r.count.unwrap_or(0);
            ReplicaStatisticsRow {
                info_code: r.info_code,
                major_version: r.major_version,
                dataset: r.dataset,
                count,
                compare_count: compare.map(|_| r.compare_count.unwrap_or(0)),
                difference: compare.map(|_| count - r.compare_count.unwrap_or(0)),
            }
        })
        .collect();
    match output {
        Output::Csv(encoding) => Ok(csv(run.date, compare, &rows, encoding)),
        Output::Json => Ok(HttpResponse::Ok().json(ReplicaStatistics {
            date: run.date,
            reason: run.reason,
            taken_at: run.finished_at,
            compare,
            total: rows.iter().map(|r| r.count).sum(),
            rows,
        })),
    }
}

fn csv(
    date: NaiveDate,
    compare: Option<NaiveDate>,
    rows: &[ReplicaStatisticsRow],
    encoding: CsvEncoding,
) -> HttpResponse {
    let count_header = format!("件数（{date}）");
    let compare_header = compare.map(|c| format!("件数（{c}）"));
    let mut headers = vec![
        "特定個人情報名コード",
        "メジャーバージョン",
        "データセット",
        count_header.as_str(),
    ];
    if let Some(h) = &compare_header {
        headers.extend([h.as_str(), "差分"]);
    }
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut line = vec![
                r.info_code.clone(),
                r.major_version.clone(),
                r.dataset.clone(),
                r.count.to_string(),
            ];
            if let (Some(c), Some(d)) = (r.compare_count, r.difference) {
                line.extend([c.to_string(), d.to_string()]);
            }
            line
        })
        .collect();
    let name = match compare {
        Some(c) => format!("replica-statistics-{date}-vs-{c}.csv"),
        None => format!("replica-statistics-{date}.csv"),
    };
    export::response(&name, &headers, &lines, encoding)
}

/// 副本統計の作成日: the snapshots taken.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotView {
    pub date: NaiveDate,
    pub reason: SnapshotReason,
    pub taken_at: Option<DateTime<Utc>>,
}

/// `GET /v1/statistics/replicas/snapshots`: the snapshot dates, newest first.
#[utoipa::path(
    get, path = "/v1/statistics/replicas/snapshots", tag = "statistics", operation_id = "listReplicaSnapshots",
    summary = "副本統計の作成日一覧 (replica statistics snapshots, newest first)",
    responses(
        (status = 200, body = SnapshotList),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
pub(crate) async fn list_snapshots(
    _caller: Caller,
    state: web::Data<StatsState>,
) -> Result<HttpResponse, Problem> {
    let client = state.db.get().await.or_problem("pool")?;
    let runs = store::finished_runs(&client, MAX_SNAPSHOTS)
        .await
        .or_problem("snapshots")?;
    Ok(HttpResponse::Ok().json(SnapshotList {
        snapshots: runs
            .into_iter()
            .map(|r| SnapshotView {
                date: r.date,
                reason: r.reason,
                taken_at: r.finished_at,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ExchangeStatisticsParams {
    /// First Japan date (YYYY-MM-DD); default six days before `to`.
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<String>,
    /// Last Japan date (YYYY-MM-DD), included; default today.
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<String>,
    /// Only this event (e.g. `inquiry.sent`, `provision.made`, `code.acquired`).
    #[param(pattern = "^[a-z0-9._-]{1,40}$")]
    pub event: Option<String>,
    /// `json` (default) or `csv`.
    #[param(value_type = Option<Format>)]
    pub format: Option<String>,
    /// CSV character set: `utf-8` (default, with BOM) or `shift_jis`.
    #[param(value_type = Option<Encoding>)]
    pub encoding: Option<String>,
}

/// 業務統計: an organisation's exchanges per Japan day.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExchangeStatistics {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub rows: Vec<ExchangeStatisticsRow>,
}

/// One day × event × affair × procedure × item × outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExchangeStatisticsRow {
    pub day: NaiveDate,
    /// `inquiry.sent`, `result.received`, `permit.refused`, `provision.made`,
    /// `provision.manual`, `provision.refused`, `code.acquired`, `code.failed`,
    /// `notice.sent`, `notice.status-received`, `selfinfo.answered`, `selfinfo.refused`.
    pub event: String,
    /// 事務コード, 事務手続コード, 特定個人情報名コード (empty where the event has none).
    pub affair_code: String,
    pub procedure_code: String,
    pub info_code: String,
    pub outcome: String,
    pub count: i64,
    /// Events whose duration is known (asked → this event), and its statistics in
    /// milliseconds: p50 and p95 read from a histogram (exact to its bucket), max exact.
    pub timed: i64,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

/// `GET /v1/statistics/exchanges`: the organisation's business statistics per day.
#[utoipa::path(
    get, path = "/v1/statistics/exchanges", tag = "statistics", operation_id = "getExchangeStatistics",
    summary = "業務統計の参照・CSV出力 (exchanges per day with durations)",
    params(ExchangeStatisticsParams),
    responses(
        (status = 200, description = "JSON, or CSV (Japanese headers) with `format=csv`", content(
            (ExchangeStatistics = "application/json"),
            (String = "text/csv")
        )),
        (status = 400, description = "invalid-field", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["system_admin", "business_staff"]))
)]
pub(crate) async fn get_exchange_statistics(
    caller: Caller,
    state: web::Data<StatsState>,
    params: web::Query<ExchangeStatisticsParams>,
) -> Result<HttpResponse, Problem> {
    let today = chukan_core::calendar::japan_date(state.clock.now());
    let to = parse_date("to", params.to.as_deref())?.unwrap_or(today);
    let from = parse_date("from", params.from.as_deref())?.unwrap_or(to - chrono::Days::new(6));
    if from > to || (to - from).num_days() >= MAX_DAYS {
        return Err(Problem::invalid(
            format!("項目「from」「to」は from ≦ to、{MAX_DAYS} 日以内の期間で指定してください。"),
            "期間を見直して再度照会してください。",
        ));
    }
    let event = params.event.as_deref();
    if event.is_some_and(|e| !crate::exchanges::is_word(e)) {
        return Err(Problem::invalid(
            "項目「event」は inquiry.sent などのイベント名で指定してください。",
            "イベント名を確認して再度照会してください。",
        ));
    }
    let output = output(params.format.as_deref(), params.encoding.as_deref())?;
    let tenant = caller.tenant();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let days = store::exchange_days(&tx, tenant, from, to, event)
        .await
        .or_problem("statistics")?;
    tx.commit().await.or_problem("commit")?;
    let rows: Vec<ExchangeStatisticsRow> = days
        .into_iter()
        .map(|d| ExchangeStatisticsRow {
            p50_ms: d.quantile_ms(0.5),
            p95_ms: d.quantile_ms(0.95),
            max_ms: d.max_ms(),
            day: d.day,
            event: d.event,
            affair_code: d.affair_code,
            procedure_code: d.procedure_code,
            info_code: d.info_code,
            outcome: d.outcome,
            count: d.count,
            timed: d.timed,
        })
        .collect();
    match output {
        Output::Json => Ok(HttpResponse::Ok().json(ExchangeStatistics { from, to, rows })),
        Output::Csv(encoding) => {
            let headers = [
                "日付",
                "イベント",
                "事務コード",
                "事務手続コード",
                "特定個人情報名コード",
                "結果",
                "件数",
                "所要時間の件数",
                "所要時間中央値（ミリ秒）",
                "所要時間95パーセンタイル（ミリ秒）",
                "所要時間最大（ミリ秒）",
            ];
            let ms = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
            let lines: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.day.to_string(),
                        r.event.clone(),
                        r.affair_code.clone(),
                        r.procedure_code.clone(),
                        r.info_code.clone(),
                        r.outcome.clone(),
                        r.count.to_string(),
                        r.timed.to_string(),
                        ms(r.p50_ms),
                        ms(r.p95_ms),
                        ms(r.max_ms),
                    ]
                })
                .collect();
            Ok(export::response(
                &format!("exchange-statistics-{from}-{to}.csv"),
                &headers,
                &lines,
                encoding,
            ))
        }
    }
}
