//! REST routes of the inquiry service (business staff and business systems), and their
//! OpenAPI description ([`ApiDoc`]).

use std::collections::{HashMap, HashSet};

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use chrono::{DateTime, Utc};
use chukan_auth::Caller;
use chukan_core::{Problem, edge, problem::ProtectedRouteProblems};
use chukan_db::OrProblem as _;
use chukan_proto::{InquiryResult, Message};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::{
    InquiryState,
    bulk_file::{self, LINE_BYTES_WITH_END},
    domain::{
        Batch, BatchAccepted, ConfirmationBody, ConfirmationInput, ConfirmationOutcome, Inquiry,
        InquiryAccepted, InquiryBody, InquiryInput, InquiryPage, InquiryQuery, InquiryStatus,
        LineError, LineErrorPage, LineErrorQuery, NewInquiry, Period, ResultRecord, aad,
        condition_of, format_serial,
    },
    metrics, outgoing,
    procedures::{NamedCode, Procedure, ProcedureList, Procedures},
    store,
};

/// The inquiry service's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    paths(
        create_inquiry,
        get_inquiry,
        list_inquiries,
        confirm_results,
        upload_batch,
        get_batch,
        get_batch_errors,
        get_batch_results,
        list_procedures
    ),
    components(schemas(
        InquiryInput,
        InquiryBody,
        Period,
        InquiryAccepted,
        Inquiry,
        InquiryStatus,
        ResultRecord,
        InquiryPage,
        ConfirmationInput,
        ConfirmationBody,
        ConfirmationOutcome,
        BatchAccepted,
        Batch,
        LineError,
        LineErrorPage,
        ProcedureList,
        Procedure,
        NamedCode,
        Problem
    )),
    tags((
        name = "inquiry",
        description = "情報照会 (inquiry): 他機関への特定個人情報の照会を情報提供ネットワークシステム経由で送り、結果（情報提供）を受け取ります。"
    ))
)]
pub struct ApiDoc;

// Who may call what is each operation's `security` (enforced by chukan-auth's gate):
// inquiries are business work, for staff at the console and business systems.

/// Errors returned inline in a bulk file's answer; the rest are paged.
const INLINE_ERRORS: usize = 100;

pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<InquiryState>) {
    cfg.app_data(state)
        .route("/v1/inquiries", web::post().to(create_inquiry))
        .route("/v1/inquiries", web::get().to(list_inquiries))
        .route("/v1/inquiries/{id}", web::get().to(get_inquiry))
        .service(
            web::resource("/v1/inquiry-confirmations")
                // Up to inquiry.confirm_max (10,000) ids: more than the server-wide JSON limit.
                .app_data(chukan_core::problem::json_config(CONFIRMATIONS_JSON_LIMIT))
                .route(web::post().to(confirm_results)),
        )
        .route("/v1/inquiry-batches", web::post().to(upload_batch))
        .route("/v1/inquiry-batches/{id}", web::get().to(get_batch))
        .route(
            "/v1/inquiry-batches/{id}/errors",
            web::get().to(get_batch_errors),
        )
        .route(
            "/v1/inquiry-batches/{id}/results",
            web::get().to(get_batch_results),
        );
}

/// `GET /v1/procedures`, with the table it serves (kept apart from [`InquiryState`], which
/// only the inquiry work itself needs).
pub fn procedure_routes(cfg: &mut web::ServiceConfig, table: web::Data<Procedures>) {
    cfg.app_data(table)
        .route("/v1/procedures", web::get().to(list_procedures));
}

fn refused(problem: Problem) -> Problem {
    metrics::request(&problem.code);
    problem
}

fn excluded_problem(procedure: &str) -> Problem {
    Problem::new(
        403,
        "excluded-procedure",
        "Procedure excluded for the department",
        format!("所属部署では事務手続「{procedure}」の照会は行えません。"),
        "照会できる事務手続を所属部署の管理者に確認するか、担当部署に照会を依頼してください。",
    )
}

fn department_not_valid_problem() -> Problem {
    Problem::new(
        403,
        "department-not-valid",
        "Department not valid today",
        "所属部署が本日の有効期間外のため、照会できません。",
        "部署の有効期間をシステム管理者に確認してください。",
    )
}

fn no_code_problem(addressee: &str) -> Problem {
    Problem::no_code(
        addressee,
        "符号取得（POST /v1/codes/acquisitions）で符号を取得してから照会してください。",
    )
}

fn expires(requested_at: DateTime<Utc>) -> DateTime<Utc> {
    requested_at + chrono::Duration::milliseconds(chukan_proto::REQUEST_VALIDITY_MS)
}

/// `POST /v1/inquiries` → 202: the inquiry is on its way to the NWS.
#[utoipa::path(
    post,
    path = "/v1/inquiries",
    tag = "inquiry",
    operation_id = "createInquiry",
    summary = "情報照会 (send an inquiry)",
    description = "住民（団体内統合宛名番号）の特定個人情報を提供者機関に照会します。照会条件は as_of（時点）か period（期間）のどちらか一方です。\
受け付けると処理通番・枝番を採番し、NWS への照会要求と監査記録を1トランザクションで登録して 202 を返します。\
住民に不開示該当フラグがあれば照会側不開示コードを自動で設定します。照会は30日間有効です。",
    request_body(content = InquiryBody, content_type = "application/json"),
    responses(
        (status = 202, description = "受け付けました", body = InquiryAccepted,
            headers(("Location" = String, description = "/v1/inquiries/{id}"))),
        (status = 400, description = "項目の形式が不正です (invalid-field, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がない、又は所属部署の対象外事務手続です (forbidden, excluded-procedure, department-not-valid)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "リクエスト本文が大きすぎます (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type が application/json ではありません (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "符号が未取得です (no-code)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn create_inquiry(
    caller: Caller,
    state: web::Data<InquiryState>,
    body: web::Json<InquiryInput>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant().to_owned();
    let input = body.into_inner();
    let condition = condition_of(&input).map_err(|d| {
        refused(Problem::invalid(
            d,
            "照会条件（as_of 又は period、year_kind）を確認して再度送信してください。",
        ))
    })?;
    let inquiry = NewInquiry {
        affair_code: input.affair_code.as_str().to_owned(),
        procedure_code: input.procedure_code.as_str().to_owned(),
        info_code: input.info_code.as_str().to_owned(),
        addressee: input.integrated_addressee_number.as_str().to_owned(),
        provider_org: input.provider_org.as_str().to_owned(),
        condition,
        non_disclosure: false,
    };

    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, &tenant)
        .await
        .or_problem("keys")?;
    let tx = chukan_db::tenant_tx(&mut client, &tenant)
        .await
        .or_problem("begin")?;
    if let Some(dept) = caller.claims().dept.as_deref() {
        let today = chukan_core::calendar::japan_date(state.clock.now());
        match store::department_on(&tx, dept, today)
            .await
            .or_problem("department")?
        {
            store::DepartmentOn::NotValid => {
                return Err(refused(department_not_valid_problem()));
            }
            store::DepartmentOn::Excludes(excluded)
                if excluded.contains(&inquiry.procedure_code) =>
            {
                return Err(refused(excluded_problem(&inquiry.procedure_code)));
            }
            _ => {}
        }
    }
    let bidx = keys.blind_index(&inquiry.addressee);
    let held = store::codes_and_flags(&tx, std::slice::from_ref(&bidx))
        .await
        .or_problem("code")?;
    let Some((Some(code_enc), flagged)) = held.get(&bidx).cloned() else {
        return Err(refused(no_code_problem(&inquiry.addressee)));
    };
    let code = keys
        .decrypt(&code_enc, &aad(&tenant, "code", &bidx))
        .or_problem("code seal")?;
    let code = String::from_utf8_lossy(&code).into_owned();

    let id = Uuid::now_v7();
    let requested_at = state.clock.now();
    let expires_at = expires(requested_at);
    // 照会側不開示コード: enhancement #5 sets it from the resident's flag.
    let non_disclosure = flagged;
    let serial = store::next_serial(&tx, &tenant)
        .await
        .or_problem("serial")?;
    let serial_no = format_serial(serial);
    let addressee_enc = keys.encrypt(
        inquiry.addressee.as_bytes(),
        &aad(&tenant, "addressee", id.as_bytes()),
    );
    let row = store::NewRow {
        tenant: &tenant,
        id,
        serial_no: &serial_no,
        branch_no: 1,
        batch_id: None,
        bidx: &bidx,
        addressee_enc: &addressee_enc,
        inquiry: &inquiry,
        department: caller.claims().dept.as_deref(),
        non_disclosure,
        requested_at,
        expires_at,
        dispatched_at: Some(requested_at),
    };
    let request = outgoing::inquiry_request(&outgoing::Request {
        tenant: &tenant,
        id,
        serial_no: &serial_no,
        branch_no: 1,
        code: &code,
        affair_code: &inquiry.affair_code,
        procedure_code: &inquiry.procedure_code,
        info_code: &inquiry.info_code,
        provider_org: &inquiry.provider_org,
        condition: inquiry.condition.to_proto(),
        non_disclosure,
        requested_at,
        expires_at,
    });
    let audit = outgoing::audit(&outgoing::AuditFacts {
        tenant: &tenant,
        event: "inquiry.sent",
        provider_org: &inquiry.provider_org,
        affair_code: &inquiry.affair_code,
        procedure_code: &inquiry.procedure_code,
        info_code: &inquiry.info_code,
        serial_no: &serial_no,
        branch_no: 1,
        permit_id: "",
        addressee: &inquiry.addressee,
        requested_at,
        provided_at: None,
        non_disclosure,
        outcome: "sent",
        at: requested_at,
    });
    // The row, both messages and the tenant mark commit or vanish together.
    let (inserted, sent, audited, marked) = futures_util::join!(
        store::insert_inquiry(&tx, &row),
        chukan_mq::outbox::enqueue(&tx, crate::SCHEMA, &request),
        chukan_mq::outbox::enqueue_all(&tx, crate::SCHEMA, &audit),
        store::mark_tenant_active(&tx, &tenant),
    );
    inserted.or_problem("insert")?;
    sent.or_problem("outbox")?;
    audited.or_problem("outbox")?;
    marked.or_problem("tenant")?;
    tx.commit().await.or_problem("commit")?;
    state.outbox.wake();
    metrics::request("accepted");
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/inquiries/{id}")))
        .json(InquiryAccepted {
            id,
            serial_no,
            branch_no: 1,
            status: InquiryStatus::Sent,
            inquirer_non_disclosure: non_disclosure,
            requested_at,
            expires_at,
        }))
}

/// `GET /v1/inquiries/{id}` → the inquiry, with its result records once provided.
#[utoipa::path(
    get,
    path = "/v1/inquiries/{id}",
    tag = "inquiry",
    operation_id = "getInquiry",
    summary = "情報照会の状態と結果 (an inquiry and its result)",
    description = "照会の状態（sent / provided / refused / not-permitted / unknown-code / unknown-provider / expired）、処理通番・枝番、照会側・提供側の不開示コード、手動応答か、\
提供された場合は復号した提供内容、提供されなかった場合は理由コードと理由を返します。有効期限を過ぎた照会は期限切れ処理の前でも expired と表示します。他団体の照会は見えません (404)。",
    params(("id" = Uuid, Path, description = "照会の id")),
    responses(
        (status = 200, description = "照会", body = Inquiry),
        (status = 400, description = "id の形式が不正です (invalid-path)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "照会が見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn get_inquiry(
    caller: Caller,
    state: web::Data<InquiryState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let id = id.into_inner();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let Some((mut inquiry, sealed)) = store::inquiry(&tx, id, state.clock.now())
        .await
        .or_problem("select")?
    else {
        return Err(Problem::not_found("照会"));
    };
    tx.commit().await.or_problem("commit")?;
    if let (InquiryStatus::Provided, Some(sealed)) = (inquiry.status, sealed) {
        let keys = state
            .vault
            .keys(&**client, tenant)
            .await
            .or_problem("keys")?;
        let plain = keys
            .decrypt(&sealed, &aad(tenant, "result", id.as_bytes()))
            .or_problem("result seal")?;
        let result = InquiryResult::decode(plain.as_slice()).or_problem("result decode")?;
        let opt = |s: String| (!s.is_empty()).then_some(s);
        inquiry.records = Some(
            result
                .records
                .into_iter()
                .map(|r| ResultRecord {
                    dataset: r.dataset,
                    major_version: r.major_version,
                    payload_xml: r.payload_xml,
                    valid_from: opt(r.valid_from),
                    valid_to: opt(r.valid_to),
                })
                .collect(),
        );
    }
    Ok(HttpResponse::Ok().json(inquiry))
}

/// `GET /v1/inquiries` → a page of inquiries, without result payloads.
#[utoipa::path(
    get,
    path = "/v1/inquiries",
    tag = "inquiry",
    operation_id = "listInquiries",
    summary = "情報照会の一覧 (list inquiries)",
    description = "処理通番・状態・確認済みかで絞り込んだ照会の一覧を照会順に返します（提供内容は含みません）。次のページは `next_after` を `after` に指定します。",
    params(InquiryQuery),
    responses(
        (status = 200, description = "照会の一覧", body = InquiryPage),
        (status = 400, description = "クエリの形式が不正です (invalid-query, invalid-field)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn list_inquiries(
    caller: Caller,
    state: web::Data<InquiryState>,
    query: web::Query<InquiryQuery>,
) -> Result<HttpResponse, Problem> {
    let q = query.into_inner();
    if let Some(s) = q.status.as_deref()
        && InquiryStatus::parse(s).is_none()
    {
        return Err(Problem::invalid(
            "status は sent, provided, refused, not-permitted, unknown-code, unknown-provider, expired のいずれかです。",
            "status の値を確認してください。",
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    let items = store::list(
        &tx,
        q.serial_no.as_deref(),
        q.status.as_deref(),
        q.confirmed,
        q.after,
        limit,
        state.clock.now(),
    )
    .await
    .or_problem("list")?;
    tx.commit().await.or_problem("commit")?;
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| i.id))
        .flatten();
    Ok(HttpResponse::Ok().json(InquiryPage { items, next_after }))
}

/// `POST /v1/inquiry-confirmations` → marks arrived results as confirmed (確認済み).
#[utoipa::path(
    post,
    path = "/v1/inquiry-confirmations",
    tag = "inquiry",
    operation_id = "confirmInquiryResults",
    summary = "照会結果の一括確認 (confirm results)",
    description = "ids で指定した照会、又は処理通番 (serial_no) の全ての照会（一括照会の結果の一括確認）の結果を確認済みにします。\
結果が届いていない照会は確認できず、not_answered に数えます。一度に確認できる件数は設定 inquiry.confirm_max までです。",
    request_body(content = ConfirmationBody, content_type = "application/json"),
    responses(
        (status = 200, description = "確認の結果", body = ConfirmationOutcome),
        (status = 400, description = "ids と serial_no のどちらか一方を指定してください (invalid-field)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "件数が上限を超えています (too-many-confirmations)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn confirm_results(
    caller: Caller,
    state: web::Data<InquiryState>,
    body: web::Json<ConfirmationInput>,
) -> Result<HttpResponse, Problem> {
    let input = body.into_inner();
    let max = state.settings.confirm_max;
    let too_many = || {
        Problem::new(
            422,
            "too-many-confirmations",
            "Too many confirmations",
            format!("一度に確認できるのは{max}件までです。"),
            "対象を分けて複数回に分けて確認してください。",
        )
    };
    let (ids, serial_no) = match (input.ids, input.serial_no) {
        (Some(ids), None) if !ids.is_empty() => {
            if ids.len() > max {
                return Err(too_many());
            }
            let mut ids = ids;
            ids.sort();
            ids.dedup();
            (ids, None)
        }
        (None, Some(s)) if !s.is_empty() => (Vec::new(), Some(s)),
        _ => {
            return Err(Problem::invalid(
                "ids（照会の id の配列）か serial_no（処理通番）のどちらか一方を指定してください。",
                "確認する照会を指定して再度送信してください。",
            ));
        }
    };
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    if let Some(s) = serial_no.as_deref() {
        let n = store::count_serial(&tx, s).await.or_problem("count")?;
        if usize::try_from(n).unwrap_or(usize::MAX) > max {
            return Err(too_many());
        }
    }
    let done = store::confirm(&tx, &ids, serial_no.as_deref(), state.clock.now())
        .await
        .or_problem("confirm")?;
    tx.commit().await.or_problem("commit")?;
    let not_found = if serial_no.is_some() {
        0
    } else {
        i64::try_from(ids.len()).unwrap_or(i64::MAX) - done.matched
    };
    Ok(HttpResponse::Ok().json(ConfirmationOutcome {
        matched: done.matched,
        confirmed: done.confirmed,
        already_confirmed: done.already_confirmed,
        not_answered: done.not_answered,
        not_found,
    }))
}

fn file_too_large(max_lines: usize) -> Problem {
    Problem::new(
        413,
        "payload-too-large",
        "Payload too large",
        format!("一括照会ファイルが大きすぎます（上限{max_lines}行）。"),
        "ファイルを分割して送信してください。",
    )
}

/// Largest `POST /v1/inquiry-confirmations` body: 10,000 ids of 39 bytes with room to spare.
const CONFIRMATIONS_JSON_LIMIT: usize = 1024 * 1024;

/// `POST /v1/inquiry-batches` → 202: the bulk file's good lines will be sent.
#[utoipa::path(
    post,
    path = "/v1/inquiry-batches",
    tag = "inquiry",
    operation_id = "uploadInquiryBatch",
    summary = "一括照会ファイルの登録 (upload a bulk inquiry file)",
    description = "DOMAIN §6 の18項目・1行220バイトの固定長ファイル（文字コードは設定 inquiry.bulk_encoding）を受け取り、各行を単件の照会と同じ規則で検査します。\
不備のある行は行番号と項目名で報告し、他の行は受け付けます。ファイル全体で1つの処理通番を採番し、枝番は行番号です。受け付けた行は順次 NWS へ送信します。",
    request_body(
        content(
            (String = "text/plain"),
            (String = "application/octet-stream"),
        ),
        description = "一括照会ファイル（1行220バイト、1行以上）",
    ),
    responses(
        (status = 202, description = "受け付けました", body = BatchAccepted,
            headers(("Location" = String, description = "/v1/inquiry-batches/{id}"))),
        (status = 400, description = "受信が途中で切れました (incomplete-body)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "ファイルが大きすぎます (payload-too-large)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type が text/plain 又は application/octet-stream ではありません (unsupported-media-type)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "ファイルが空です (empty-file)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn upload_batch(
    caller: Caller,
    state: web::Data<InquiryState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, Problem> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("text/plain")
        && !essence.eq_ignore_ascii_case("application/octet-stream")
    {
        return Err(Problem::new(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "Content-Type が text/plain 又は application/octet-stream ではありません。",
            "Content-Type: text/plain を指定して一括照会ファイルを送信してください。",
        ));
    }
    let tenant = caller.tenant().to_owned();
    let max_lines = state.settings.bulk_max_lines;
    let raw = edge::read_capped(&req, body, max_lines.saturating_mul(LINE_BYTES_WITH_END))
        .await
        .map_err(|refusal| match refusal {
            edge::BodyRefusal::TooLarge => file_too_large(max_lines),
            edge::BodyRefusal::BrokeOff => Problem::new(
                400,
                "incomplete-body",
                "Incomplete body",
                "一括照会ファイルを最後まで受信できませんでした。",
                "ファイルを再度送信してください。",
            ),
        })?;
    let dept = caller.claims().dept.clone();
    let encoding = state.encoding;
    let parse_tenant = tenant.clone();
    // Parsing 100,000 lines is CPU work: keep it off the HTTP worker.
    let parsed = tokio::task::spawn_blocking(move || {
        bulk_file::parse(&raw, encoding, &parse_tenant, dept.as_deref())
    })
    .await
    .or_problem("parse")?;
    if parsed.lines == 0 {
        return Err(Problem::new(
            422,
            "empty-file",
            "Empty file",
            "一括照会ファイルに照会がありません。",
            "1行220バイトの照会を1行以上含むファイルを送信してください。",
        ));
    }
    if usize::try_from(parsed.lines).unwrap_or(usize::MAX) > max_lines {
        return Err(file_too_large(max_lines));
    }
    let mut errors = parsed.errors;

    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, &tenant)
        .await
        .or_problem("keys")?;
    let tx = chukan_db::tenant_tx(&mut client, &tenant)
        .await
        .or_problem("begin")?;

    // 対象外事務手続 of each department named in the file, as its period valid today says
    // (None: the department is not valid today).
    let today = chukan_core::calendar::japan_date(state.clock.now());
    let mut exclusions: HashMap<String, Option<HashSet<String>>> = HashMap::new();
    for dept in parsed.ok.iter().filter_map(|l| l.department.as_deref()) {
        if !exclusions.contains_key(dept) {
            let on = store::department_on(&tx, dept, today)
                .await
                .or_problem("department")?;
            let list = match on {
                store::DepartmentOn::Unknown => Some(HashSet::new()),
                store::DepartmentOn::NotValid => None,
                store::DepartmentOn::Excludes(list) => Some(list.into_iter().collect()),
            };
            exclusions.insert(dept.to_owned(), list);
        }
    }
    let mut lines = Vec::with_capacity(parsed.ok.len());
    for l in parsed.ok {
        let exclusion = l.department.as_deref().and_then(|d| exclusions.get(d));
        if let Some(None) = exclusion {
            let problem = department_not_valid_problem();
            errors.push(LineError {
                line: l.line,
                field: "部署コード".into(),
                code: problem.code.to_string(),
                detail: problem.detail,
            });
            continue;
        }
        let excluded = exclusion
            .and_then(Option::as_ref)
            .is_some_and(|set| set.contains(&l.inquiry.procedure_code));
        if excluded {
            errors.push(LineError {
                line: l.line,
                field: "事務手続コード".into(),
                code: "excluded-procedure".into(),
                detail: excluded_problem(&l.inquiry.procedure_code).detail,
            });
        } else {
            let bidx = keys.blind_index(&l.inquiry.addressee);
            lines.push((l, bidx));
        }
    }
    let mut held = HashMap::new();
    for chunk in lines.chunks(1000) {
        let bidxs: Vec<Vec<u8>> = chunk.iter().map(|(_, b)| b.clone()).collect();
        held.extend(
            store::codes_and_flags(&tx, &bidxs)
                .await
                .or_problem("codes")?,
        );
    }
    let mut accepted = Vec::with_capacity(lines.len());
    for (l, bidx) in lines {
        match held.get(&bidx) {
            Some((Some(_), flagged)) => {
                let flagged = *flagged;
                accepted.push((l, bidx, flagged));
            }
            _ => errors.push(LineError {
                line: l.line,
                field: "統合宛名番号".into(),
                code: "no-code".into(),
                detail: chukan_core::problem::no_code_detail(&l.inquiry.addressee),
            }),
        }
    }
    // Stable: a line's own errors keep the layout's field order.
    errors.sort_by_key(|e| e.line);
    let rejected_lines = {
        let mut seen: Vec<i32> = errors.iter().map(|e| e.line).collect();
        seen.dedup();
        seen.len()
    };

    let batch_id = Uuid::now_v7();
    let now = state.clock.now();
    let expires_at = expires(now);
    let serial = store::next_serial(&tx, &tenant)
        .await
        .or_problem("serial")?;
    let serial_no = format_serial(serial);
    let n_accepted = i32::try_from(accepted.len()).unwrap_or(i32::MAX);
    let n_rejected = i32::try_from(rejected_lines).unwrap_or(i32::MAX);
    store::insert_batch(
        &tx,
        &store::NewBatch {
            tenant: &tenant,
            id: batch_id,
            serial_no: &serial_no,
            lines: parsed.lines,
            accepted: n_accepted,
            rejected: n_rejected,
            now,
        },
    )
    .await
    .or_problem("batch")?;
    store::insert_line_errors(&tx, &tenant, batch_id, &errors)
        .await
        .or_problem("line errors")?;
    let dept = caller.claims().dept.clone();
    let prepared: Vec<(Uuid, Vec<u8>)> = accepted
        .iter()
        .map(|(l, _, _)| {
            let id = Uuid::now_v7();
            let sealed = keys.encrypt(
                l.inquiry.addressee.as_bytes(),
                &aad(&tenant, "addressee", id.as_bytes()),
            );
            (id, sealed)
        })
        .collect();
    let rows: Vec<store::NewRow<'_>> = accepted
        .iter()
        .zip(&prepared)
        .map(|((l, bidx, flagged), (id, sealed))| store::NewRow {
            tenant: &tenant,
            id: *id,
            serial_no: &serial_no,
            branch_no: l.line,
            batch_id: Some(batch_id),
            bidx,
            addressee_enc: sealed,
            inquiry: &l.inquiry,
            department: l.department.as_deref().or(dept.as_deref()),
            // The line's own 照会側不開示コード, or the resident's flag (enhancement #5).
            non_disclosure: l.inquiry.non_disclosure || *flagged,
            requested_at: now,
            expires_at,
            dispatched_at: None,
        })
        .collect();
    // Pipelined inserts, a bounded number in flight on the one connection.
    for chunk in rows.chunks(200) {
        let results =
            futures_util::future::join_all(chunk.iter().map(|r| store::insert_inquiry(&tx, r)))
                .await;
        for r in results {
            r.or_problem("insert")?;
        }
    }
    if n_accepted > 0 {
        store::queue_batch(&tx, &tenant, batch_id)
            .await
            .or_problem("queue")?;
    }
    store::mark_tenant_active(&tx, &tenant)
        .await
        .or_problem("tenant")?;
    tx.commit().await.or_problem("commit")?;
    state.batches.notify_one();
    metrics::requests_n("accepted", u64::try_from(n_accepted).unwrap_or(0));
    // One count per refused line, under its first error's code.
    let mut last_line = 0;
    for e in &errors {
        if e.line != last_line {
            metrics::request(&e.code);
            last_line = e.line;
        }
    }
    errors.truncate(INLINE_ERRORS);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/inquiry-batches/{batch_id}")))
        .json(BatchAccepted {
            batch_id,
            serial_no,
            lines: parsed.lines,
            accepted: n_accepted,
            rejected: n_rejected,
            errors,
        }))
}

/// `GET /v1/inquiry-batches/{id}` → the batch and its lines counted by status.
#[utoipa::path(
    get,
    path = "/v1/inquiry-batches/{id}",
    tag = "inquiry",
    operation_id = "getInquiryBatch",
    summary = "一括照会の状況 (status of a bulk inquiry)",
    description = "一括照会の行数・受付数・不備行数と、受け付けた行の状態別の件数、未送信・確認済みの件数を返します。",
    params(("id" = Uuid, Path, description = "一括照会の id")),
    responses(
        (status = 200, description = "一括照会", body = Batch),
        (status = 400, description = "id の形式が不正です (invalid-path)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "一括照会が見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn get_batch(
    caller: Caller,
    state: web::Data<InquiryState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    let Some((serial_no, lines, accepted, rejected, created_at, dispatched_at)) =
        store::batch(&tx, id).await.or_problem("batch")?
    else {
        return Err(Problem::not_found("一括照会"));
    };
    let counts = store::batch_counts(&tx, id, state.clock.now())
        .await
        .or_problem("counts")?;
    tx.commit().await.or_problem("commit")?;
    let mut by_status = std::collections::BTreeMap::new();
    let (mut confirmed, mut waiting) = (0, 0);
    for (status, n, c, w) in counts {
        by_status.insert(status, n);
        confirmed += c;
        waiting += w;
    }
    Ok(HttpResponse::Ok().json(Batch {
        batch_id: id,
        serial_no,
        lines,
        accepted,
        rejected,
        created_at,
        dispatched_at,
        waiting,
        by_status,
        confirmed,
    }))
}

/// `GET /v1/inquiry-batches/{id}/errors` → every refused line, paged by line number.
#[utoipa::path(
    get,
    path = "/v1/inquiry-batches/{id}/errors",
    tag = "inquiry",
    operation_id = "getInquiryBatchErrors",
    summary = "一括照会の不備行 (refused lines of a bulk inquiry)",
    description = "不備のあった行を行番号順に、行番号・項目名・コード・説明で返します。次のページは `next_after_line` を `after_line` に指定します。",
    params(("id" = Uuid, Path, description = "一括照会の id"), LineErrorQuery),
    responses(
        (status = 200, description = "不備行", body = LineErrorPage),
        (status = 404, description = "一括照会が見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn get_batch_errors(
    caller: Caller,
    state: web::Data<InquiryState>,
    id: web::Path<Uuid>,
    query: web::Query<LineErrorQuery>,
) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    let limit = query.limit.unwrap_or(500).clamp(1, 1000);
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    if store::batch(&tx, id).await.or_problem("batch")?.is_none() {
        return Err(Problem::not_found("一括照会"));
    }
    let items = store::line_errors(&tx, id, query.after_line.unwrap_or(0), limit)
        .await
        .or_problem("errors")?;
    tx.commit().await.or_problem("commit")?;
    let distinct_lines = {
        let mut l: Vec<i32> = items.iter().map(|e| e.line).collect();
        l.dedup();
        l.len()
    };
    let next_after_line = (distinct_lines as i64 == limit)
        .then(|| items.last().map(|e| e.line))
        .flatten();
    Ok(HttpResponse::Ok().json(LineErrorPage {
        items,
        next_after_line,
    }))
}

/// `GET /v1/inquiry-batches/{id}/results` → the result file (CSV, one line per input line).
#[utoipa::path(
    get,
    path = "/v1/inquiry-batches/{id}/results",
    tag = "inquiry",
    operation_id = "getInquiryBatchResults",
    summary = "一括照会の結果ファイル (result file of a bulk inquiry)",
    description = "入力の1行につき1行の CSV (UTF-8, 見出し行つき): line_no, serial_no, branch_no, status, provided_at, inquirer_non_disclosure, provider_non_disclosure, record_count, reason_code。\
不備で受け付けなかった行は status=rejected と最初の不備のコードです。提供内容は含みません（GET /v1/inquiries/{id} で取得します）。",
    params(("id" = Uuid, Path, description = "一括照会の id")),
    responses(
        (status = 200, description = "結果ファイル", body = String, content_type = "text/csv"),
        (status = 404, description = "一括照会が見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn get_batch_results(
    caller: Caller,
    state: web::Data<InquiryState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    let Some((serial_no, ..)) = store::batch(&tx, id).await.or_problem("batch")? else {
        return Err(Problem::not_found("一括照会"));
    };
    let lines = store::result_lines(&tx, id, state.clock.now())
        .await
        .or_problem("results")?;
    tx.commit().await.or_problem("commit")?;
    let mut csv = String::from(
        "line_no,serial_no,branch_no,status,provided_at,inquirer_non_disclosure,provider_non_disclosure,record_count,reason_code\r\n",
    );
    let flag = |b: bool| if b { "1" } else { "0" };
    for l in lines {
        csv.push_str(&format!(
            "{},{serial_no},{},{},{},{},{},{},{}\r\n",
            l.line,
            l.line,
            l.status,
            l.provided_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
            flag(l.inquirer_non_disclosure),
            flag(l.provider_non_disclosure),
            l.record_count,
            l.reason_code.unwrap_or_default(),
        ));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            edge::attachment_disposition(&format!("inquiry-results-{serial_no}.csv")),
        ))
        .body(csv))
}

/// `GET /v1/procedures` → 別表第二: each procedure with its affair and the items it may ask.
#[utoipa::path(
    get,
    path = "/v1/procedures",
    tag = "inquiry",
    operation_id = "listProcedures",
    summary = "事務手続と照会できる特定個人情報 (procedures of 別表第二)",
    description = "番号法別表第二の事務手続を、その事務と照会できる特定個人情報名とともに返します。照会の入力画面が、選んだ事務手続で照会できる項目だけを示すために使います。\
表は情報提供ネットワークシステムから取得し、数分間キャッシュします。取得できない間は直前に取得した表を返し、一度も取得できていなければ 503 (procedures-unavailable) を返します。",
    responses(
        (status = 200, description = "別表第二の事務手続", body = ProcedureList),
        (status = 401, description = "認証トークンがないか無効です (unauthenticated)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "サーバ内部エラー (internal-error)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "別表第二を NWS から取得できません (procedures-unavailable)、又はサービス時間外・一時的に利用できません (outside-service-hours, service-unavailable); `Retry-After` 付き", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn list_procedures(
    _caller: Caller,
    table: web::Data<Procedures>,
) -> Result<HttpResponse, Problem> {
    let list = table.list().await?;
    Ok(HttpResponse::Ok().json(&*list))
}
