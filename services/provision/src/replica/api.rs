//! REST routes of the provision service (business systems and staff), and their OpenAPI
//! description ([`ApiDoc`]).

use std::sync::Arc;

use actix_web::{HttpResponse, http::header, web};
use chrono::{DateTime, NaiveDate, Utc};
use chukan_auth::Caller;
use chukan_core::{
    Problem, edge,
    ids::{AddresseeNo, InfoCode},
    problem::ProtectedRouteProblems,
};
use chukan_db::OrProblem as _;
use chukan_layout::{ItemValue, RecordKind};
use chukan_replica_list::{EntrySpec, ListError, ListWriter, Operation, is_item_name, is_xml_char};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::{
    ProvisionState,
    history::PointInTime,
    replica::apply::{RunInfo, quota_day},
    replica::intake::{self, CheckContext, IntakeError, Precheck},
    replica::jobs,
    replica::quota::{DailyQuota, OrgKind, Remaining},
    replica::reconcile,
    replica::slots::{UploadRefusal, UploadSchedule},
    seal,
    store::{self, Org, Reconciliation, Rejection, ReplicaCount, UploadReport},
};

// The deprecated forms (the number in the URL) are still described, marked deprecated.
#[allow(deprecated)]
#[derive(OpenApi)]
#[openapi(
    paths(
        upload, list_uploads, get_upload, get_rejections, register_records, query_replicas,
        bulk_delete, request_reconciliation, get_reconciliation, download_reconciliation,
        get_quota, get_slots, get_counts,
        crate::exchange::api::query_flags, crate::exchange::api::put_resident_flags,
        crate::exchange::api::get_flags, crate::exchange::api::put_flags,
        crate::exchange::api::list_provisions, crate::exchange::api::get_provision,
        crate::exchange::api::answer_provision
    ),
    components(schemas(
        UploadAccepted, UploadReport, Rejection, RecordsRequest, RecordInput, ItemInput,
        RecordOperation, ReplicaQuery, ReplicaQueryBody, ReplicaAnswer, ReplicaEntry, BulkDeleteRequest,
        BulkDeleteResult, ReconciliationRequest, Reconciliation, QuotaStatus, DailyQuota,
        Remaining, SlotStatus, SlotView, ReplicaCount, Problem,
        crate::exchange::api::FlagsView, crate::exchange::api::FlagsUpdate,
        crate::exchange::api::FlagsQuery, crate::exchange::api::ResidentFlagsUpdate,
        crate::exchange::api::ProhibitionInput, crate::exchange::flags::Prohibition,
        crate::exchange::api::ProvisionView, crate::exchange::api::AnswerRequest,
        crate::exchange::api::DecisionKind, crate::exchange::api::AnswerBody,
        crate::store::AnswerState, crate::store::AnswerStatus, crate::store::UploadState,
        crate::store::UploadSource, crate::store::ReconciliationState
    )),
    tags((
        name = "provision",
        description = "情報提供データベース管理・副本登録: 副本の登録・上書き・削除、登録リストのアップロードと夜間バッチ、日次上限、一括登録スケジュール、突合用ファイル、時点指定の参照。"
    ))
)]
pub struct ApiDoc;

// Who may call what is each operation's `security` (enforced by chukan-auth's gate):
// replicas are registered by staff and business systems; bulk deletion by staff only (a
// person, not an unattended system); administrators see quotas, slots and counts (no
// personal data), not uploads or replicas (separation of duties).

pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<ProvisionState>) {
    cfg.app_data(state)
        .route("/v1/replica-uploads", web::post().to(upload))
        .route("/v1/replica-uploads", web::get().to(list_uploads))
        .route("/v1/replica-uploads/{id}", web::get().to(get_upload))
        .route(
            "/v1/replica-uploads/{id}/rejections",
            web::get().to(get_rejections),
        )
        .service(
            web::resource("/v1/replicas")
                // Up to provision.rest_max_records records: more than the server-wide JSON limit.
                .app_data(chukan_core::problem::json_config(REPLICAS_JSON_LIMIT))
                .route(web::post().to(register_records)),
        )
        .route("/v1/replica-queries", web::post().to(query_replicas))
        .route("/v1/replica-bulk-deletions", web::post().to(bulk_delete))
        .route(
            "/v1/reconciliations",
            web::post().to(request_reconciliation),
        )
        .route(
            "/v1/reconciliations/{id}",
            web::get().to(get_reconciliation),
        )
        .route(
            "/v1/reconciliations/{id}/file",
            web::get().to(download_reconciliation),
        )
        .route("/v1/replica-quota", web::get().to(get_quota))
        .route("/v1/replica-upload-slots", web::get().to(get_slots))
        .route("/v1/replica-counts", web::get().to(get_counts))
        .configure(crate::exchange::api::routes);
}

fn japan(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn refusal_problem(r: &UploadRefusal) -> Problem {
    match r {
        UploadRefusal::BlockedDay { next_open_day } => Problem::new(
            409,
            "upload-day-blocked",
            "Uploads closed today",
            format!("本日は計画停止日等のため副本登録を受け付けていません。次に受け付ける日は {next_open_day} です。"),
            format!("{next_open_day} 以降に再度登録してください。"),
        )
        .with_retry_after(3600, Some(next_open_day.to_string())),
        UploadRefusal::OutsideSlot {
            info_code,
            group,
            next_slot,
        } => {
            let next = next_slot.map(japan).unwrap_or_else(|| "未定".into());
            Problem::new(
                409,
                "upload-slot-closed",
                "Outside the upload slot",
                format!("特定個人情報名「{info_code}」の一括登録は、グループ{group}の登録枠内でのみ受け付けます。次の登録枠は {next} からです。"),
                format!("{next} 以降の登録枠内に再度アップロードしてください。"),
            )
            .with_retry_after(
                next_slot
                    .map(|t| (t - Utc::now()).num_seconds().max(60) as u64)
                    .unwrap_or(3600),
                next_slot.map(|t| t.to_rfc3339()),
            )
        }
        UploadRefusal::NoGroup { info_code } => Problem::new(
            409,
            "upload-group-unassigned",
            "No upload group",
            format!("特定個人情報名「{info_code}」の一括登録には登録グループ (A〜H) の割当てが必要です。"),
            "システム管理者に登録グループの割当てを依頼してください。",
        ),
    }
}

fn intake_problem(e: IntakeError) -> Problem {
    crate::metrics::record_upload(match &e {
        IntakeError::List(l) => l.code(),
        IntakeError::Refused(_) => "refused",
        IntakeError::Empty => "empty",
        IntakeError::Body(_) => "body",
        IntakeError::Internal(_) => "internal",
    });
    match e {
        IntakeError::List(l) => {
            let (code, title) = match &l {
                ListError::Malformed { .. } => {
                    ("malformed-registration-list", "Malformed registration list")
                }
                ListError::Truncated { .. } => {
                    ("truncated-registration-list", "Truncated registration list")
                }
                ListError::NotARegistrationList => {
                    ("not-a-registration-list", "Not a registration list")
                }
                ListError::EntryTooLarge { .. } => ("entry-too-large", "Entry too large"),
                ListError::Io(_) => ("upload-read-failed", "Upload could not be read"),
            };
            Problem::new(
                422,
                code,
                title,
                format!(
                    "登録リストを受け付けられませんでした: {l}。ファイルのどのレコードも登録されていません。"
                ),
                "登録リストを作り直して、再度アップロードしてください。",
            )
        }
        IntakeError::Refused(r) => refusal_problem(&r),
        IntakeError::Empty => Problem::new(
            422,
            "empty-registration-list",
            "Empty registration list",
            "登録リストにレコードがありません。ファイルは登録されていません。",
            "登録するレコードを含めて再度アップロードしてください。",
        ),
        IntakeError::Body(e) => {
            tracing::warn!(error = %e, "upload body broke off");
            Problem::new(
                400,
                "upload-interrupted",
                "Upload interrupted",
                "アップロードが途中で途切れました。ファイルのどのレコードも登録されていません。",
                "再度アップロードしてください。",
            )
        }
        IntakeError::Internal(e) => Problem::internal_because("intake", e),
    }
}

fn org_not_configured() -> Problem {
    Problem::new(
        409,
        "organisation-not-configured",
        "Organisation not configured",
        "この団体の副本登録の設定 (人口・種別) がまだ登録されていません。",
        "システム管理者に団体設定の登録を依頼してください。",
    )
}

async fn org_of(state: &ProvisionState, tenant: &str) -> Result<Org, Problem> {
    let client = state.db.get().await.or_problem("pool")?;
    store::org(&client, tenant)
        .await
        .or_problem("org")?
        .ok_or_else(org_not_configured)
}

/// 202 answer to an upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadAccepted {
    pub upload_id: Uuid,
    /// Always `queued` on acceptance; `processing` says whether the batch or the immediate
    /// worker takes it (follow `href` for the result).
    pub state: store::UploadState,
    /// Entries in the list.
    pub entries: i64,
    /// Entries the upload-time check already found broken (reported after processing).
    pub precheck_rejected: i64,
    pub bytes: i64,
    /// nightly | immediate
    pub processing: String,
    /// Where the result report will be.
    pub href: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadParams {
    /// Original file name, for the operator's list (no personal data, please).
    pub file_name: Option<String>,
}

/// `POST /v1/replica-uploads`: a registration list file, streamed.
#[utoipa::path(
    post,
    path = "/v1/replica-uploads",
    tag = "provision",
    operation_id = "uploadRegistrationList",
    summary = "副本登録リストのアップロード (upload a registration list)",
    description = "DOMAIN 付録の形式の登録リスト (XML) をストリームで受け取り、暗号化して保存し、夜間バッチ（即時処理の団体は直ちに）で登録します。\
整形式でないファイル・途中で切れたファイルは全体を受け付けません（何も登録されません）。個々のレコードの不備は処理結果で報告されます。\
重い特定個人情報は登録グループの登録枠内でのみ受け付け、計画停止日は受け付けません。",
    params(UploadParams),
    request_body(content = String, content_type = "application/xml", description = "SPIRegistrationDeleteList"),
    responses(
        (status = 202, description = "受け付けました", body = UploadAccepted),
        (status = 409, description = "登録枠外・計画停止日・団体設定なし (upload-slot-closed, upload-day-blocked, upload-group-unassigned, organisation-not-configured)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "登録リストが不正 (malformed-registration-list, truncated-registration-list, not-a-registration-list, entry-too-large, empty-registration-list)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn upload(
    caller: Caller,
    state: web::Data<ProvisionState>,
    params: web::Query<UploadParams>,
    body: web::Payload,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant().to_owned();
    let org = org_of(&state, &tenant).await?;
    let now = state.clock.now();
    state
        .schedule
        .check_day(now)
        .map_err(|r| refusal_problem(&r))?;
    let file_name = params
        .file_name
        .as_deref()
        .map(|n| n.chars().take(200).collect::<String>());
    let (id, pre) = store_list(
        &state,
        &tenant,
        &org,
        state.schedule.clone(),
        store::UploadSource::File,
        file_name.as_deref(),
        Box::pin(body),
    )
    .await?;
    crate::metrics::record_upload("accepted");
    if org.immediate {
        let _ = state.immediate.send(tenant.clone());
    }
    let href = format!("/v1/replica-uploads/{id}");
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, href.clone()))
        .json(UploadAccepted {
            upload_id: id,
            state: store::UploadState::Queued,
            entries: pre.entries,
            precheck_rejected: pre.rejected,
            bytes: pre.bytes,
            processing: if org.immediate {
                "immediate"
            } else {
                "nightly"
            }
            .into(),
            href,
        }))
}

/// Stores a registration list as a queued upload, in one transaction.
async fn store_list<S, E>(
    state: &ProvisionState,
    tenant: &str,
    org: &Org,
    schedule: Arc<UploadSchedule>,
    source: store::UploadSource,
    file_name: Option<&str>,
    body: std::pin::Pin<Box<S>>,
) -> Result<(Uuid, Precheck), Problem>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + ?Sized,
    E: std::fmt::Display,
{
    let now = state.clock.now();
    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .or_problem("keys")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let id = Uuid::now_v7();
    store::insert_upload(&tx, tenant, id, source, file_name, now)
        .await
        .or_problem("insert upload")?;
    let ctx = CheckContext {
        catalogue: state.catalogue.clone(),
        keys,
        tenant: tenant.to_string(),
        schedule,
        group: org.upload_group,
        now,
        day: quota_day(now),
        limits: state.applier.limits,
    };
    let pre = intake::receive(&tx, ctx, id, body)
        .await
        .map_err(intake_problem)?;
    store::set_upload_received(&tx, id, pre.bytes, pre.entries, pre.rejected)
        .await
        .or_problem("upload received")?;
    tx.commit().await.or_problem("commit")?;
    Ok((id, pre))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<i64>,
}

/// `GET /v1/replica-uploads`: the organisation's uploads, newest first.
#[utoipa::path(
    get, path = "/v1/replica-uploads", tag = "provision", operation_id = "listUploads",
    summary = "アップロード一覧 (uploads and their results)",
    params(ListParams),
    responses((status = 200, body = [UploadReport]), ProtectedRouteProblems),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn list_uploads(
    caller: Caller,
    state: web::Data<ProvisionState>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let limit = params.limit.unwrap_or(50).clamp(1, 500);
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let list = store::upload_reports(&tx, tenant, limit)
        .await
        .or_problem("uploads")?;
    Ok(HttpResponse::Ok().json(list))
}

/// `GET /v1/replica-uploads/{id}`: the result report (処理結果).
#[utoipa::path(
    get, path = "/v1/replica-uploads/{id}", tag = "provision", operation_id = "getUpload",
    summary = "処理結果 (result report of an upload)",
    description = "登録・上書き・削除・繰越・エラーの件数と状態を返します。エラーの明細は /rejections で取得します。",
    params(("id" = Uuid, Path, description = "upload id")),
    responses(
        (status = 200, body = UploadReport),
        (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn get_upload(
    caller: Caller,
    state: web::Data<ProvisionState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let report = store::upload_report(&tx, tenant, *id)
        .await
        .or_problem("report")?
        .ok_or_else(|| Problem::not_found("アップロード"))?;
    Ok(HttpResponse::Ok().json(report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// Entries after this ordinal (paging; default 0).
    pub after: Option<i64>,
    /// At most this many (default 1000, at most 10000).
    pub limit: Option<i64>,
}

/// `GET /v1/replica-uploads/{id}/rejections`: refused entries with reason and next action.
#[utoipa::path(
    get, path = "/v1/replica-uploads/{id}/rejections", tag = "provision", operation_id = "getRejections",
    summary = "エラー明細 (refused entries)",
    params(("id" = Uuid, Path, description = "upload id"), PageParams),
    responses(
        (status = 200, body = [Rejection]),
        (status = 404, description = "アップロードがありません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn get_rejections(
    caller: Caller,
    state: web::Data<ProvisionState>,
    id: web::Path<Uuid>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    // What lies under an upload the caller cannot see is as unseen as the upload itself.
    if !store::upload_exists(&tx, *id).await.or_problem("upload")? {
        return Err(Problem::not_found("アップロード"));
    }
    let list = store::rejections(
        &tx,
        tenant,
        *id,
        page.after.unwrap_or(0),
        page.limit.unwrap_or(1000).clamp(1, 10_000),
    )
    .await
    .or_problem("rejections")?;
    Ok(HttpResponse::Ok().json(list))
}

/// register | delete
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RecordOperation {
    Register,
    Delete,
}

/// One data item of a payload.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ItemInput {
    /// Item code, e.g. `I0001`: an XML element name.
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_.-]*$")]
    pub code: String,
    /// The value; omit (or null) for an empty item and give `null_reason`. Text XML can carry
    /// (no control characters but tab and line ends).
    #[serde(default)]
    #[schema(pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]*$")]
    pub value: Option<String>,
    /// Version of the repeating group (`Version`).
    #[serde(default)]
    #[schema(pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]*$")]
    pub version: Option<String>,
    /// Update date of the repeating group (`TimeAndDateOfUpdate`).
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub updated: Option<NaiveDate>,
    /// Reason for null (`ReasonOfNull`).
    #[serde(default)]
    #[schema(pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF]*$")]
    pub null_reason: Option<String>,
}

impl From<&ItemInput> for ItemValue {
    fn from(i: &ItemInput) -> Self {
        ItemValue {
            code: i.code.clone(),
            value: i.value.clone(),
            version: i.version.clone(),
            updated: i.updated,
            null_reason: i.null_reason.clone(),
        }
    }
}

impl From<&ItemValue> for ItemInput {
    fn from(v: &ItemValue) -> Self {
        ItemInput {
            code: v.code.clone(),
            value: v.value.clone(),
            version: v.version.clone(),
            updated: v.updated,
            null_reason: v.null_reason.clone(),
        }
    }
}

/// One record of a daily change (the fields of a registration-list entry).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RecordInput {
    pub operation: RecordOperation,
    /// レコード識別番号 (unique). The identifiers carry no control characters (422 for the
    /// whole request); what else is wrong with a record is reported for that record.
    #[schema(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub record_id: String,
    /// 団体内統合宛名番号.
    #[schema(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub integrated_addressee_number: String,
    #[schema(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub info_code: String,
    /// データセット識別項目コード.
    #[schema(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub dataset: String,
    /// データセットレコードキー (same key again = overwrite).
    #[schema(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub record_key: String,
    #[schema(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub major_version: String,
    #[serde(default)]
    #[schema(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub parent_record_key: Option<String>,
    /// 公開開始日.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub public_start: Option<NaiveDate>,
    /// 公開終了日.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub public_end: Option<NaiveDate>,
    #[serde(default)]
    pub items: Vec<ItemInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RecordsRequest {
    /// 1 to `provision.rest_max_records` (default 1000) records.
    #[schema(min_items = 1, max_items = 1000)]
    pub records: Vec<RecordInput>,
}

/// Largest `POST /v1/replicas` body: 1,000 records of about 1 KiB with room to spare (the
/// edge screens JSON bodies up to the same size).
pub const REPLICAS_JSON_LIMIT: usize = chukan_runtime::LARGEST_JSON_BODY;

/// `POST /v1/replicas`: daily changes (register / overwrite / delete), applied now.
#[utoipa::path(
    post, path = "/v1/replicas", tag = "provision", operation_id = "registerRecords",
    summary = "副本の登録・上書き・削除 (daily changes)",
    description = "1件又は複数件 (上限 provision.rest_max_records) の副本を直ちに登録・上書き・削除し、処理結果を返します。\
日次上限を超えた分は繰越となり、次の夜間バッチで登録されます (202)。重複したレコード識別番号は「「レコード識別番号」が既に存在しています。」で拒否されます。",
    request_body(content = RecordsRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "処理しました", body = UploadReport),
        (status = 202, description = "一部を繰越しました", body = UploadReport),
        (status = 400, description = "too-many-records / no-records / malformed-json", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "upload-day-blocked / organisation-not-configured", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "登録リストにできない値です (invalid-record: records[i] と項目名を示します)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn register_records(
    caller: Caller,
    state: web::Data<ProvisionState>,
    body: web::Json<RecordsRequest>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant().to_owned();
    let records = body.into_inner().records;
    let max = state.settings.provision.rest_max_records;
    if records.is_empty() {
        return Err(Problem::new(
            400,
            "no-records",
            "No records",
            "登録するレコードがありません。",
            "records に1件以上指定してください。",
        ));
    }
    if records.len() > max {
        return Err(Problem::new(
            400,
            "too-many-records",
            "Too many records",
            format!("一度に登録できるのは {max} 件までです。"),
            "分割して送るか、登録リストのアップロード (/v1/replica-uploads) を使ってください。",
        ));
    }
    check_records(&records)?;
    let org = org_of(&state, &tenant).await?;
    state
        .schedule
        .check_day(state.clock.now())
        .map_err(|r| refusal_problem(&r))?;
    let xml = to_registration_list(&records).or_problem("serialise")?;
    // Daily changes are small: they are not held to the heavy items' slots.
    let exempt = Arc::new(UploadSchedule::default());
    let body =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(web::Bytes::from(xml)) });
    let (id, _) = store_list(
        &state,
        &tenant,
        &org,
        exempt,
        store::UploadSource::Rest,
        None,
        Box::pin(body),
    )
    .await?;
    let run = RunInfo::new("replica-uploads", state.clock.now());
    state
        .applier
        .run_tenant(&run, &tenant, Some(id))
        .await
        .or_problem("apply")?;
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, &tenant)
        .await
        .or_problem("begin")?;
    let report = store::upload_report(&tx, &tenant, id)
        .await
        .or_problem("report")?
        .ok_or_else(|| Problem::internal_because("report", anyhow::anyhow!("upload vanished")))?;
    let mut res = if report.state == store::UploadState::Done {
        HttpResponse::Ok()
    } else {
        HttpResponse::Accepted()
    };
    Ok(res
        .insert_header((header::LOCATION, format!("/v1/replica-uploads/{id}")))
        .json(report))
}

/// Refuses, before anything is written or stored, what a registration list cannot carry:
/// an item code that is not an element name, a control character in an identifier, a
/// character XML forbids in a value. 422 naming the record (by position) and the field;
/// what the layout says of the values is checked later, per record, as for files.
// A Problem is what every handler returns; boxing it here alone would buy nothing.
#[allow(clippy::result_large_err)]
fn check_records(records: &[RecordInput]) -> Result<(), Problem> {
    let identifier = |s: &str| !s.chars().any(char::is_control);
    let text = |s: &Option<String>| s.as_deref().is_none_or(|s| s.chars().all(is_xml_char));
    let invalid = |i: usize, field: String| {
        Problem::new(
            422,
            "invalid-record",
            "Invalid record",
            format!("records[{i}].{field} に使用できない文字が含まれているか、形式が不正です。"),
            "項目コードはXMLの要素名にできる値（例: I0001）、識別子は制御文字を含まない値、\
             値は制御文字（タブ・改行を除く）を含まない文字列で指定し、再度送信してください。",
        )
    };
    for (i, r) in records.iter().enumerate() {
        let identifiers = [
            ("record_id", r.record_id.as_str()),
            (
                "integrated_addressee_number",
                &r.integrated_addressee_number,
            ),
            ("info_code", &r.info_code),
            ("dataset", &r.dataset),
            ("record_key", &r.record_key),
            ("major_version", &r.major_version),
            (
                "parent_record_key",
                r.parent_record_key.as_deref().unwrap_or(""),
            ),
        ];
        if let Some((field, _)) = identifiers.iter().find(|(_, v)| !identifier(v)) {
            return Err(invalid(i, (*field).to_owned()));
        }
        for (j, item) in r.items.iter().enumerate() {
            if !is_item_name(&item.code) {
                return Err(invalid(i, format!("items[{j}].code")));
            }
            let values = [
                ("value", &item.value),
                ("version", &item.version),
                ("null_reason", &item.null_reason),
            ];
            if let Some((field, _)) = values.iter().find(|(_, v)| !text(v)) {
                return Err(invalid(i, format!("items[{j}].{field}")));
            }
        }
    }
    Ok(())
}

/// Daily changes travel the same path as files: written as a registration list.
fn to_registration_list(records: &[RecordInput]) -> std::io::Result<Vec<u8>> {
    let mut w = ListWriter::new(Vec::with_capacity(records.len() * 512))?;
    for r in records {
        let payload: Vec<ItemValue> = r.items.iter().map(ItemValue::from).collect();
        w.write(&EntrySpec {
            operation: match r.operation {
                RecordOperation::Register => Operation::Register,
                RecordOperation::Delete => Operation::Delete,
            },
            record_id: &r.record_id,
            addressee: &r.integrated_addressee_number,
            info_code: &r.info_code,
            dataset: &r.dataset,
            record_key: &r.record_key,
            major_version: &r.major_version,
            parent_record_key: r.parent_record_key.as_deref(),
            public_start: r.public_start,
            public_end: r.public_end,
            payload: &payload,
        })?;
    }
    w.finish()
}

/// A point-in-time read (時点指定).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReplicaQuery {
    pub integrated_addressee_number: AddresseeNo,
    pub info_code: InfoCode,
    #[serde(default)]
    pub dataset: Option<String>,
    /// A date: the entries valid that day (latest of each group on a same-day switch).
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub on: Option<NaiveDate>,
    /// A period: every entry valid on some day of it (with `to`, not before `from`).
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub from: Option<NaiveDate>,
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub to: Option<NaiveDate>,
}

chukan_core::body_schema!(
    /// The body of `POST /v1/replica-queries`: today (none of `on`, `from`, `to`), a date
    /// (`on` alone) or a period (`from` and `to` together).
    ReplicaQueryBody = "ReplicaQuery" + serde_json::json!({
        "oneOf": [
            {"type": "object", "properties": {
                "on": {"type": "null"}, "from": {"type": "null"}, "to": {"type": "null"}}},
            {"type": "object", "required": ["on"], "properties": {
                "on": {"type": "string"}, "from": {"type": "null"}, "to": {"type": "null"}}},
            {"type": "object", "required": ["from", "to"], "properties": {
                "on": {"type": "null"}, "from": {"type": "string"}, "to": {"type": "string"}}}
        ]
    })
);

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaEntry {
    pub info_code: String,
    pub major_version: String,
    pub dataset: String,
    pub record_id: String,
    pub record_key: String,
    pub parent_record_key: Option<String>,
    pub public_start: Option<NaiveDate>,
    pub public_end: Option<NaiveDate>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub items: Vec<ItemInput>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaAnswer {
    pub entries: Vec<ReplicaEntry>,
}

/// `POST /v1/replica-queries`: what an automatic answer would give.
#[utoipa::path(
    post, path = "/v1/replica-queries", tag = "provision", operation_id = "queryReplicas",
    summary = "副本の時点指定参照 (point-in-time read)",
    description = "宛名番号・特定個人情報名 (・データセット) と日付又は期間を指定し、その時点で有効な副本を返します。\
同日に履歴が切り替わる場合は各グループの最新の履歴を返します。公開開始日前・公開終了日後の副本は返しません。",
    request_body(content = ReplicaQueryBody, content_type = "application/json"),
    responses(
        (status = 200, body = ReplicaAnswer),
        (status = 400, description = "invalid-field / invalid-period", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn query_replicas(
    caller: Caller,
    state: web::Data<ProvisionState>,
    body: web::Json<ReplicaQuery>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let q = body.into_inner();
    let when = match (q.on, q.from, q.to) {
        (None, None, None) => PointInTime::Current,
        (Some(d), None, None) => PointInTime::On(d),
        (None, Some(from), Some(to)) if from <= to => PointInTime::Period { from, to },
        _ => {
            return Err(Problem::new(
                400,
                "invalid-period",
                "Invalid point in time",
                "時点は on (日付) か from と to (期間, from ≦ to) のどちらかで指定してください。",
                "指定を見直して再度照会してください。",
            ));
        }
    };
    let today = quota_day(state.clock.now());
    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .or_problem("keys")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let bidx = seal::addressee_index(&keys, q.integrated_addressee_number.as_str());
    let rows = store::replicas_of(
        &tx,
        tenant,
        &bidx,
        q.info_code.as_str(),
        q.dataset.as_deref(),
    )
    .await
    .or_problem("replicas")?;
    // Only what is public today (公開開始日 ≦ today ≦ 公開終了日) may be answered.
    let chosen =
        crate::exchange::answer::select_at(&keys, tenant, rows, when, today).or_problem("open")?;
    let entries = chosen
        .iter()
        .map(|(row, s)| ReplicaEntry {
            info_code: row.kind.info_code.clone(),
            major_version: row.kind.major_version.clone(),
            dataset: row.kind.dataset.clone(),
            record_id: row.record_id.clone(),
            record_key: s.record_key.clone(),
            parent_record_key: s.parent_record_key.clone(),
            public_start: row.public_start,
            public_end: row.public_end,
            valid_from: s.valid_from,
            valid_to: s.valid_to,
            items: s.payload.iter().map(ItemInput::from).collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(ReplicaAnswer { entries }))
}

/// Which replicas to delete in bulk.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BulkDeleteRequest {
    pub info_code: InfoCode,
    /// 4 digits.
    #[schema(pattern = "^[0-9]{4}$", example = "0002")]
    pub major_version: String,
    /// データセット識別項目コード, 4 digits.
    #[schema(pattern = "^[0-9]{4}$", example = "0101")]
    pub dataset: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkDeleteResult {
    pub deleted: i64,
}

fn four_digits(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `POST /v1/replica-bulk-deletions`: 一括削除 by item, version and dataset.
#[utoipa::path(
    post, path = "/v1/replica-bulk-deletions", tag = "provision", operation_id = "bulkDelete",
    summary = "副本の一括削除 (bulk delete by item / version / dataset)",
    request_body(content = BulkDeleteRequest, content_type = "application/json"),
    responses(
        (status = 200, body = BulkDeleteResult),
        (status = 400, description = "invalid-field", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn bulk_delete(
    caller: Caller,
    state: web::Data<ProvisionState>,
    body: web::Json<BulkDeleteRequest>,
) -> Result<HttpResponse, Problem> {
    let req = body.into_inner();
    if !four_digits(&req.major_version) || !four_digits(&req.dataset) {
        return Err(Problem::new(
            400,
            "invalid-field",
            "Invalid field",
            "メジャーバージョンとデータセット識別項目コードは4桁の数字で指定してください。",
            "指定を見直して再度実行してください。",
        ));
    }
    let kind = RecordKind {
        info_code: req.info_code.as_str().to_string(),
        major_version: req.major_version,
        dataset: req.dataset,
    };
    let deleted = jobs::bulk_delete(&state, caller.tenant(), &kind)
        .await
        .or_problem("bulk delete")?;
    Ok(HttpResponse::Ok().json(BulkDeleteResult { deleted }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReconciliationRequest {
    pub info_code: InfoCode,
    /// 4 digits; null = every version.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}$")]
    pub major_version: Option<String>,
    /// 4 digits; null = every dataset.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}$")]
    pub dataset: Option<String>,
}

/// `POST /v1/reconciliations`: a reconciliation file (突合用ファイル).
#[utoipa::path(
    post, path = "/v1/reconciliations", tag = "provision", operation_id = "requestReconciliation",
    summary = "突合用ファイルの作成 (request a reconciliation file)",
    description = "登録されている副本の一覧 (CSV) を作ります。30,000件以下は直ちに (201)、それを超えると夜間バッチで作成します (202)。",
    request_body(content = ReconciliationRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "作成しました", body = Reconciliation),
        (status = 202, description = "夜間バッチで作成します", body = Reconciliation),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn request_reconciliation(
    caller: Caller,
    state: web::Data<ProvisionState>,
    body: web::Json<ReconciliationRequest>,
) -> Result<HttpResponse, Problem> {
    let req = body.into_inner();
    if req
        .major_version
        .as_deref()
        .is_some_and(|v| !four_digits(v))
        || req.dataset.as_deref().is_some_and(|d| !four_digits(d))
    {
        return Err(Problem::new(
            400,
            "invalid-field",
            "Invalid field",
            "メジャーバージョンとデータセット識別項目コードは4桁の数字で指定してください。",
            "指定を見直して再度実行してください。",
        ));
    }
    let r = reconcile::request(
        &state,
        caller.tenant(),
        req.info_code.as_str(),
        req.major_version.as_deref(),
        req.dataset.as_deref(),
    )
    .await
    .or_problem("reconciliation")?;
    let mut res = if r.state == store::ReconciliationState::Ready {
        HttpResponse::Created()
    } else {
        HttpResponse::Accepted()
    };
    Ok(res
        .insert_header((header::LOCATION, format!("/v1/reconciliations/{}", r.id)))
        .json(r))
}

async fn reconciliation_of(
    state: &ProvisionState,
    tenant: &str,
    id: Uuid,
) -> Result<Reconciliation, Problem> {
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    store::reconciliation(&tx, tenant, id)
        .await
        .or_problem("reconciliation")?
        .ok_or_else(|| Problem::not_found("突合用ファイル"))
}

/// `GET /v1/reconciliations/{id}`.
#[utoipa::path(
    get, path = "/v1/reconciliations/{id}", tag = "provision", operation_id = "getReconciliation",
    summary = "突合用ファイルの状態",
    params(("id" = Uuid, Path, description = "reconciliation id")),
    responses((status = 200, body = Reconciliation), (status = 404, body = Problem, content_type = "application/problem+json"), ProtectedRouteProblems),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn get_reconciliation(
    caller: Caller,
    state: web::Data<ProvisionState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    Ok(HttpResponse::Ok().json(reconciliation_of(&state, caller.tenant(), *id).await?))
}

/// `GET /v1/reconciliations/{id}/file`: the CSV, streamed.
#[utoipa::path(
    get, path = "/v1/reconciliations/{id}/file", tag = "provision", operation_id = "downloadReconciliation",
    summary = "突合用ファイルのダウンロード (CSV, UTF-8)",
    params(("id" = Uuid, Path, description = "reconciliation id")),
    responses(
        (status = 200, content_type = "text/csv", body = String),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "reconciliation-not-ready", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn download_reconciliation(
    caller: Caller,
    state: web::Data<ProvisionState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant().to_owned();
    let r = reconciliation_of(&state, &tenant, *id).await?;
    if r.state != store::ReconciliationState::Ready {
        return Err(Problem::new(
            409,
            "reconciliation-not-ready",
            "Not ready",
            "突合用ファイルは夜間バッチで作成中です。",
            "夜間バッチの後に再度ダウンロードしてください。",
        ));
    }
    let (client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, &tenant)
        .await
        .or_problem("keys")?;
    drop(client);
    let db = state.db.clone();
    let rid = r.id;
    let chunks = futures_util::stream::try_unfold(0i32, move |seq| {
        let db = db.clone();
        let keys = keys.clone();
        let tenant = tenant.clone();
        async move {
            let mut client = db
                .get()
                .await
                .or_problem("pool")
                .map_err(actix_web::Error::from)?;
            let tx = chukan_db::tenant_tx(&mut client, &tenant)
                .await
                .or_problem("begin")
                .map_err(actix_web::Error::from)?;
            let sealed = store::reconciliation_chunk(&tx, rid, seq)
                .await
                .or_problem("chunk")
                .map_err(actix_web::Error::from)?;
            match sealed {
                None => Ok::<_, actix_web::Error>(None),
                Some(s) => {
                    let plain = keys
                        .decrypt(&s, &seal::chunk_aad("reconciliation", &rid, seq))
                        .or_problem("decrypt")
                        .map_err(actix_web::Error::from)?;
                    Ok(Some((web::Bytes::from(plain), seq + 1)))
                }
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            edge::attachment_disposition(&format!("reconciliation-{rid}.csv")),
        ))
        .streaming(chunks.boxed_local()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaStatus {
    /// Japan date the use is counted on.
    pub day: NaiveDate,
    pub quota: DailyQuota,
    pub used_records: i64,
    pub used_bytes: i64,
    pub remaining: Remaining,
}

/// `GET /v1/replica-quota`: today's daily quota and its use.
#[utoipa::path(
    get, path = "/v1/replica-quota", tag = "provision", operation_id = "getQuota",
    summary = "日次上限と使用量 (today's quota)",
    responses((status = 200, body = QuotaStatus), (status = 409, body = Problem, content_type = "application/problem+json"), ProtectedRouteProblems),
    security(("bearer" = ["system_admin", "business_staff", "system_client"]))
)]
async fn get_quota(
    caller: Caller,
    state: web::Data<ProvisionState>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let org = org_of(&state, tenant).await?;
    let kind = OrgKind::parse(&org.kind).ok_or_else(org_not_configured)?;
    let quota = DailyQuota::for_org(kind, org.population);
    let day = quota_day(state.clock.now());
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let (records, bytes) = store::daily_usage(&tx, tenant, day)
        .await
        .or_problem("usage")?;
    Ok(HttpResponse::Ok().json(QuotaStatus {
        day,
        quota,
        used_records: records,
        used_bytes: bytes,
        remaining: Remaining::of(quota, records, bytes),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SlotView {
    /// mon..sun
    pub day: String,
    pub start: String,
    pub end: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SlotStatus {
    /// 登録グループ A–H (null when unassigned).
    pub group: Option<String>,
    /// Items restricted to the slots.
    pub slot_items: Vec<String>,
    pub slots: Vec<SlotView>,
    /// Start of the next slot (RFC 3339).
    pub next_slot: Option<DateTime<Utc>>,
}

/// `GET /v1/replica-upload-slots`: the organisation's upload slots.
#[utoipa::path(
    get, path = "/v1/replica-upload-slots", tag = "provision", operation_id = "getSlots",
    summary = "一括登録スケジュール (upload slots)",
    responses((status = 200, body = SlotStatus), ProtectedRouteProblems),
    security(("bearer" = ["system_admin", "business_staff", "system_client"]))
)]
async fn get_slots(
    caller: Caller,
    state: web::Data<ProvisionState>,
) -> Result<HttpResponse, Problem> {
    let org = org_of(&state, caller.tenant()).await?;
    let (slots, next) = match org.upload_group {
        Some(g) => (
            state
                .schedule
                .slots_of(g)
                .map(|s| SlotView {
                    day: s.day.to_string().to_lowercase(),
                    start: s.start.format("%H:%M").to_string(),
                    end: s.end.format("%H:%M").to_string(),
                })
                .collect(),
            state.schedule.next_slot(g, state.clock.now()),
        ),
        None => (Vec::new(), None),
    };
    let mut items: Vec<String> = state.settings.provision.slot_items.clone();
    items.sort();
    Ok(HttpResponse::Ok().json(SlotStatus {
        group: org.upload_group.map(|g| g.to_string()),
        slot_items: items,
        slots,
        next_slot: next,
    }))
}

/// `GET /v1/replica-counts`: replicas held by item × version × dataset (seed §2.5).
#[utoipa::path(
    get, path = "/v1/replica-counts", tag = "provision", operation_id = "getReplicaCounts",
    summary = "副本件数 (replica counts by item, version and dataset)",
    responses((status = 200, body = [ReplicaCount]), ProtectedRouteProblems),
    security(("bearer" = ["system_admin", "business_staff", "system_client"]))
)]
async fn get_counts(
    caller: Caller,
    state: web::Data<ProvisionState>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let counts = store::replica_counts(&tx, tenant)
        .await
        .or_problem("counts")?;
    Ok(HttpResponse::Ok().json(counts))
}
