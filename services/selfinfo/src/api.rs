//! REST routes of the self-information service (business staff and administrators): the
//! organisation's attachments per item, and the requests received with their state. Nothing
//! here shows a resident's identity or data: requests are listed by ids, state and counts.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use chrono::{DateTime, Utc};
use chukan_auth::Caller;
use chukan_core::{
    Problem, edge,
    ids::{FileName, InfoCode},
    problem::ProtectedRouteProblems,
};
use chukan_db::OrProblem as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::{SelfInfoState, store};

/// The service's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    paths(
        put_attachment,
        list_attachments,
        get_attachment,
        delete_attachment,
        list_requests,
        get_request
    ),
    components(schemas(
        SelfInfoFile,
        SelfInfoFileList,
        SelfInfoRequestView,
        SelfInfoRequestList,
        Problem
    )),
    tags((
        name = "selfinfo",
        description = "自己情報提供: マイナポータルから情報提供ネットワークシステム経由で届く本人からの求めに、副本・開示できる情報提供等記録・添付ファイルで回答します。"
    ))
)]
pub struct ApiDoc;

// Who may call what is each operation's `security` (enforced by chukan-auth's gate):
// self-information work is business staff's (administrators manage accounts and settings).

/// Most requests one list answer holds.
const MAX_LIMIT: i64 = 500;

pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<SelfInfoState>) {
    cfg.app_data(state)
        .route("/v1/selfinfo/attachments", web::get().to(list_attachments))
        .route(
            "/v1/selfinfo/attachments/{info_code}/{file_name}",
            web::put().to(put_attachment),
        )
        .route(
            "/v1/selfinfo/attachments/{info_code}/{file_name}",
            web::get().to(get_attachment),
        )
        .route(
            "/v1/selfinfo/attachments/{info_code}/{file_name}",
            web::delete().to(delete_attachment),
        )
        .route("/v1/selfinfo/requests", web::get().to(list_requests))
        .route("/v1/selfinfo/requests/{id}", web::get().to(get_request));
}

/// 自己情報提供用の添付ファイル (an attachment, without its content).
#[derive(Debug, Serialize, ToSchema)]
pub struct SelfInfoFile {
    /// 特定個人情報名コード.
    pub info_code: String,
    pub file_name: String,
    /// The Content-Type it was uploaded with.
    pub media_type: String,
    pub size_bytes: i32,
    pub uploaded_at: DateTime<Utc>,
    /// User or client id of the uploader.
    pub uploaded_by: String,
}

impl From<store::AttachmentMeta> for SelfInfoFile {
    fn from(m: store::AttachmentMeta) -> Self {
        SelfInfoFile {
            info_code: m.info_code,
            file_name: m.file_name,
            media_type: m.media_type,
            size_bytes: m.size_bytes,
            uploaded_at: m.uploaded_at,
            uploaded_by: m.uploaded_by,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SelfInfoFileList {
    pub attachments: Vec<SelfInfoFile>,
}

/// The checked `{info_code}/{file_name}` of an attachment route.
// Problem is what every handler answers with; boxing it for a helper buys nothing.
#[allow(clippy::result_large_err)]
fn attachment_key(path: web::Path<(String, String)>) -> Result<(String, String), Problem> {
    let (info_code, file_name) = path.into_inner();
    Ok((parse_info_code(&info_code)?, parse_file_name(&file_name)?))
}

// Problem is what every handler answers with; boxing it for a helper buys nothing.
#[allow(clippy::result_large_err)]
fn parse_info_code(raw: &str) -> Result<String, Problem> {
    InfoCode::parse(raw)
        .map(|c| c.as_str().to_owned())
        .map_err(|e| Problem::invalid_field(&e))
}

/// A file name safe to hand to a resident's browser (the rule of [`FileName`]).
// Problem is what every handler answers with; boxing it for a helper buys nothing.
#[allow(clippy::result_large_err)]
fn parse_file_name(raw: &str) -> Result<String, Problem> {
    FileName::parse(raw)
        .map(|name| name.as_str().to_owned())
        .map_err(|_| {
            Problem::invalid(
                "項目「file_name」は200文字以内で、/ \\ \" や制御文字を含まないファイル名を指定してください。",
                "ファイル名を確認して再度送信してください。",
            )
        })
}

/// The Content-Type as sent (parameters included), or `application/octet-stream`.
// Problem is what every handler answers with; boxing it for a helper buys nothing.
#[allow(clippy::result_large_err)]
fn media_type(req: &HttpRequest) -> Result<String, Problem> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok("application/octet-stream".into());
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 255 && v.contains('/'))
        .map(str::to_owned)
        .ok_or_else(|| {
            Problem::invalid(
                "Content-Type ヘッダーを解釈できません。",
                "ファイルの種類（例: application/pdf）を Content-Type に指定して再度送信してください。",
            )
        })
}

fn too_large(limit: usize) -> Problem {
    Problem::new(
        413,
        "payload-too-large",
        "Payload too large",
        format!("添付ファイルが大きすぎます（上限 {} KiB）。", limit / 1024),
        "ファイルを小さくするか分割して再度送信してください。",
    )
}

#[utoipa::path(
    put,
    path = "/v1/selfinfo/attachments/{info_code}/{file_name}",
    tag = "selfinfo",
    operation_id = "putSelfInfoAttachment",
    summary = "添付ファイルの登録 (upload an attachment)",
    description = "特定個人情報名ごとの自己情報提供用添付ファイルを登録します。本文がファイルそのもので、Content-Type はそのまま保存され回答に付きます。\
同じ名前のファイルは置き換えます。この項目の自己情報提供の回答すべてに添付されます。",
    params(
        ("info_code" = InfoCode, Path, description = "特定個人情報名コード (TM + 14桁)、データ標準レイアウトにあるもの"),
        ("file_name" = FileName, Path, description = "ファイル名（200文字以内、/ \\ \" と制御文字は不可）"),
    ),
    request_body(content = chukan_core::schema::NonEmptyBinary, content_type = "application/octet-stream", description = "ファイルの内容。Content-Type（例: application/pdf）はそのまま保存され、ダウンロードと回答に付きます。"),
    responses(
        (status = 201, description = "登録しました", body = SelfInfoFile),
        (status = 200, description = "置き換えました", body = SelfInfoFile),
        (status = 400, description = "項目の形式が不正です (invalid-field)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "ファイルが大きすぎます (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "データ標準レイアウトにない特定個人情報名コードです (unknown-info-code)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn put_attachment(
    caller: Caller,
    state: web::Data<SelfInfoState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let (info_code, file_name) = attachment_key(path)?;
    if !state.catalogue.knows_item(&info_code) {
        return Err(Problem::new(
            422,
            "unknown-info-code",
            "Unknown specific personal information",
            format!("特定個人情報名コード「{info_code}」はデータ標準レイアウトにありません。"),
            "データ標準レイアウトにある特定個人情報名コードを指定してください。",
        ));
    }
    let media_type = media_type(&req)?;
    let limit = state.config.max_attachment_bytes;
    let content =
        edge::read_capped(&req, payload, limit)
            .await
            .map_err(|refusal| match refusal {
                edge::BodyRefusal::TooLarge => too_large(limit),
                edge::BodyRefusal::BrokeOff => Problem::new(
                    400,
                    "malformed-body",
                    "Malformed body",
                    "ファイルを受信できませんでした。",
                    "再度送信してください。",
                ),
            })?;
    if content.is_empty() {
        return Err(Problem::invalid(
            "添付ファイルの内容が空です。",
            "ファイルの内容を本文にして再度送信してください。",
        ));
    }
    let meta = store::AttachmentMeta {
        info_code,
        file_name,
        media_type,
        size_bytes: i32::try_from(content.len()).unwrap_or(i32::MAX),
        uploaded_at: state.clock.now(),
        uploaded_by: caller.claims().sub.clone(),
    };
    let tenant = caller.tenant().to_owned();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, &tenant)
        .await
        .or_problem("begin")?;
    let created = store::put_attachment(&tx, &tenant, &meta, &content)
        .await
        .or_problem("attachment")?;
    tx.commit().await.or_problem("commit")?;
    let body = SelfInfoFile::from(meta);
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AttachmentQuery {
    /// Only this item's files.
    #[param(value_type = Option<InfoCode>)]
    pub info_code: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/selfinfo/attachments",
    tag = "selfinfo",
    operation_id = "listSelfInfoAttachments",
    summary = "添付ファイルの一覧 (list attachments)",
    description = "登録されている自己情報提供用添付ファイルを特定個人情報名コード・ファイル名の順に返します（内容は含みません）。",
    params(AttachmentQuery),
    responses(
        (status = 200, description = "添付ファイルの一覧", body = SelfInfoFileList),
        (status = 400, description = "クエリの形式が不正です (invalid-field, invalid-query)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません (forbidden)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff"]))
)]
async fn list_attachments(
    caller: Caller,
    state: web::Data<SelfInfoState>,
    query: web::Query<AttachmentQuery>,
) -> Result<HttpResponse, Problem> {
    let info_code = query
        .info_code
        .as_deref()
        .map(parse_info_code)
        .transpose()?;
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    let found = store::list_attachments(&tx, info_code.as_deref())
        .await
        .or_problem("attachments")?;
    tx.commit().await.or_problem("commit")?;
    Ok(HttpResponse::Ok().json(SelfInfoFileList {
        attachments: found.into_iter().map(SelfInfoFile::from).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/selfinfo/attachments/{info_code}/{file_name}",
    tag = "selfinfo",
    operation_id = "getSelfInfoAttachment",
    summary = "添付ファイルの内容 (download an attachment)",
    description = "登録した添付ファイルの内容を、登録時の Content-Type で、ダウンロード（Content-Disposition: attachment）として返します。",
    params(
        ("info_code" = InfoCode, Path, description = "特定個人情報名コード"),
        ("file_name" = FileName, Path, description = "ファイル名"),
    ),
    responses(
        (status = 200, description = "ファイルの内容（登録時の Content-Type、Content-Disposition: attachment）", body = chukan_core::schema::Binary, content_type = "*/*"),
        (status = 400, description = "項目の形式が不正です (invalid-field)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "添付ファイルがありません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff"]))
)]
async fn get_attachment(
    caller: Caller,
    state: web::Data<SelfInfoState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (info_code, file_name) = attachment_key(path)?;
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    let found = store::attachment(&tx, &info_code, &file_name)
        .await
        .or_problem("attachment")?;
    tx.commit().await.or_problem("commit")?;
    let Some((meta, content)) = found else {
        return Err(Problem::not_found("添付ファイル"));
    };
    // Served as a download, never rendered: an attachment uploaded as text/html must not run
    // as a page of the API's origin (the edge adds nosniff and a sandboxing CSP too).
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, meta.media_type))
        .insert_header((
            header::CONTENT_DISPOSITION,
            edge::attachment_disposition(&meta.file_name),
        ))
        .body(content))
}

#[utoipa::path(
    delete,
    path = "/v1/selfinfo/attachments/{info_code}/{file_name}",
    tag = "selfinfo",
    operation_id = "deleteSelfInfoAttachment",
    summary = "添付ファイルの削除 (delete an attachment)",
    description = "添付ファイルを削除します。以後の回答には添付されません（送信済みの回答は変わりません）。",
    params(
        ("info_code" = InfoCode, Path, description = "特定個人情報名コード"),
        ("file_name" = FileName, Path, description = "ファイル名"),
    ),
    responses(
        (status = 204, description = "削除しました"),
        (status = 400, description = "項目の形式が不正です (invalid-field)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "添付ファイルがありません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff"]))
)]
async fn delete_attachment(
    caller: Caller,
    state: web::Data<SelfInfoState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (info_code, file_name) = attachment_key(path)?;
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    let deleted = store::delete_attachment(&tx, &info_code, &file_name)
        .await
        .or_problem("attachment")?;
    tx.commit().await.or_problem("commit")?;
    if !deleted {
        return Err(Problem::not_found("添付ファイル"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// 自己情報提供要求 as staff see it: ids, state and counts; never the resident or the answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SelfInfoRequestView {
    pub id: Uuid,
    /// The portal's request id.
    pub request_id: String,
    /// received | answered.
    pub state: String,
    /// answered | refused (once answered).
    pub status: Option<String>,
    /// Why it was refused: no-such-resident | self-info-prohibited.
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    /// Items asked for (empty = all).
    pub info_codes: Vec<String>,
    pub item_count: i32,
    pub record_count: i32,
    pub attachment_count: i32,
    /// Rounds put off because provision or audit could not be asked.
    pub attempts: i32,
    pub requested_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
}

impl From<store::RequestSummary> for SelfInfoRequestView {
    fn from(s: store::RequestSummary) -> Self {
        SelfInfoRequestView {
            id: s.id,
            request_id: s.request_id,
            state: s.state,
            status: s.status,
            reason_code: s.reason_code,
            reason: s.reason,
            info_codes: s.info_codes,
            item_count: s.item_count,
            record_count: s.record_count,
            attachment_count: s.attachment_count,
            attempts: s.attempts,
            requested_at: s.requested_at,
            received_at: s.received_at,
            answered_at: s.answered_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SelfInfoRequestList {
    pub requests: Vec<SelfInfoRequestView>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RequestQuery {
    /// received | answered.
    #[param(inline, value_type = Option<RequestStateFilter>)]
    pub state: Option<String>,
    /// 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// 自己情報提供要求の状態 (what `GET /v1/selfinfo/requests?state=` filters by).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStateFilter {
    Received,
    Answered,
}

#[utoipa::path(
    get,
    path = "/v1/selfinfo/requests",
    tag = "selfinfo",
    operation_id = "listSelfInfoRequests",
    summary = "自己情報提供要求の一覧 (list requests)",
    description = "受け付けた自己情報提供要求を新しい順に返します。本人を特定する情報や回答内容は含みません。",
    params(RequestQuery),
    responses(
        (status = 200, description = "要求の一覧", body = SelfInfoRequestList),
        (status = 400, description = "クエリの形式が不正です (invalid-field, invalid-query)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません (forbidden)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff"]))
)]
async fn list_requests(
    caller: Caller,
    state: web::Data<SelfInfoState>,
    query: web::Query<RequestQuery>,
) -> Result<HttpResponse, Problem> {
    let q = query.into_inner();
    if let Some(s) = q.state.as_deref()
        && !matches!(s, "received" | "answered")
    {
        return Err(Problem::invalid(
            "項目「state」は received 又は answered を指定してください。",
            "state を確認して再度送信してください。",
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Problem::invalid(
            "項目「limit」は1から500までの数で指定してください。",
            "limit を確認して再度送信してください。",
        ));
    }
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    let found = store::list_requests(&tx, q.state.as_deref(), limit)
        .await
        .or_problem("requests")?;
    tx.commit().await.or_problem("commit")?;
    Ok(HttpResponse::Ok().json(SelfInfoRequestList {
        requests: found.into_iter().map(SelfInfoRequestView::from).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/selfinfo/requests/{id}",
    tag = "selfinfo",
    operation_id = "getSelfInfoRequest",
    summary = "自己情報提供要求の状態 (a request)",
    description = "要求の状態（received / answered）、回答した場合は answered か refused と理由、回答に含めた件数を返します。他団体の要求は見えません (404)。",
    params(("id" = Uuid, Path, description = "要求の id")),
    responses(
        (status = 200, description = "要求", body = SelfInfoRequestView),
        (status = 400, description = "id の形式が不正です (invalid-path)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません (forbidden)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "要求が見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff"]))
)]
async fn get_request(
    caller: Caller,
    state: web::Data<SelfInfoState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    let found = store::request(&tx, id.into_inner())
        .await
        .or_problem("request")?;
    tx.commit().await.or_problem("commit")?;
    match found {
        Some(s) => Ok(HttpResponse::Ok().json(SelfInfoRequestView::from(s))),
        None => Err(Problem::not_found("自己情報提供要求")),
    }
}
