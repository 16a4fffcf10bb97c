//! REST routes of residents' flags (不開示該当フラグ, 自己情報提供不可フラグ, 自動応答不可) and
//! of the manual-answer queue (情報提供の手動応答).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use chukan_auth::Caller;
use chukan_core::{
    Problem, edge,
    ids::{AddresseeNo, InfoCode},
    problem::ProtectedRouteProblems,
};
use chukan_db::OrProblem as _;
use chukan_mq::OutgoingMessage;
use chukan_proto::{AutoResponseProhibition, FLAGS_CHANGED, FlagsChanged, Message};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    ProvisionState,
    exchange::flags::{Flags, Prohibition, four_digits},
    exchange::manual::{self, Decision, ManualError},
    seal,
    store::{self, AnswerState, AnswerStatus, ProvisionRow},
};

// Who may call what is each operation's `security` (enforced by chukan-auth's gate).
// Provisions are answered by hand by staff only; flags are read and set by staff and by
// business systems too (enhancement #1: the resident registry or the welfare system sets the
// non-disclosure flag of a DV victim as soon as it is decided). Administrators manage
// accounts and settings, not residents (separation of duties).
/// Most 自動応答不可 settings one resident may carry.
const MAX_PROHIBITIONS: usize = 1000;

// The deprecated forms (the number in the URL) are still served for one release.
#[allow(deprecated)]
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(edge::resource("/v1/flags").route(web::put().to(put_resident_flags)))
        .service(edge::resource("/v1/flags/query").route(web::post().to(query_flags)))
        .route("/v1/flags/{addressee}", web::get().to(get_flags))
        .route("/v1/flags/{addressee}", web::put().to(put_flags))
        .route("/v1/provisions", web::get().to(list_provisions))
        .route("/v1/provisions/{permit_id}", web::get().to(get_provision))
        .route(
            "/v1/provisions/{permit_id}/answer",
            web::post().to(answer_provision),
        );
}

// Problem is the house error every handler returns; boxing it here would only add a hop.
#[allow(clippy::result_large_err)]
fn addressee_param(raw: &str) -> Result<AddresseeNo, Problem> {
    AddresseeNo::parse(raw).map_err(|e| Problem::invalid_field(&e))
}

/// A resident's flags as they are now.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlagsView {
    /// 団体内統合宛名番号.
    pub addressee: String,
    /// 不開示該当フラグ.
    pub non_disclosure: bool,
    /// 自己情報提供不可フラグ.
    pub self_info_prohibited: bool,
    /// 自動応答不可: whole items (dataset null) or single datasets.
    pub auto_response_prohibited: Vec<Prohibition>,
    /// 0 when never set.
    pub revision: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

/// One 自動応答不可 setting as sent.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProhibitionInput {
    pub info_code: InfoCode,
    /// 4 digits; null = the whole item.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{4}$")]
    pub dataset: Option<String>,
}

/// The flags to set (replaces what is set).
#[derive(Debug, Deserialize, ToSchema)]
pub struct FlagsUpdate {
    pub non_disclosure: bool,
    pub self_info_prohibited: bool,
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub auto_response_prohibited: Vec<ProhibitionInput>,
}

/// Which resident, in the body: the number never travels in a URL (proxies, ingresses and
/// access logs on the LGWAN record URLs).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagsQuery {
    /// 団体内統合宛名番号.
    pub integrated_addressee_number: AddresseeNo,
}

/// A resident's flags to set (replaces what is set), the resident named in the body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResidentFlagsUpdate {
    /// 団体内統合宛名番号.
    pub integrated_addressee_number: AddresseeNo,
    pub non_disclosure: bool,
    pub self_info_prohibited: bool,
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub auto_response_prohibited: Vec<ProhibitionInput>,
}

/// `POST /v1/flags/query`.
#[utoipa::path(
    post, path = "/v1/flags/query", tag = "provision", operation_id = "queryResidentFlags",
    summary = "住民のフラグ参照 (non-disclosure, self-information prohibited, auto-response prohibited)",
    description = "不開示該当フラグ・自己情報提供不可フラグ・自動応答不可（特定個人情報名単位・データセット単位）の現在の状態を返します。未設定の住民はすべて false / 空です。\
宛名番号は本文で送ります（URLに個人の番号を載せないため）。",
    request_body(content = FlagsQuery, content_type = "application/json"),
    responses(
        (status = 200, body = FlagsView),
        (status = 400, description = "invalid-field, malformed-json, invalid-character", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
pub(crate) async fn query_flags(
    caller: Caller,
    state: web::Data<ProvisionState>,
    body: web::Json<FlagsQuery>,
) -> Result<HttpResponse, Problem> {
    flags_view(&caller, &state, &body.integrated_addressee_number).await
}

/// `PUT /v1/flags`.
#[utoipa::path(
    put, path = "/v1/flags", tag = "provision", operation_id = "putResidentFlagsByBody",
    summary = "住民のフラグ設定 (replace a resident's flags)",
    description = "フラグを置き換えます。自動情報提供には直ちに反映され、flags.changed を発行します。自動応答不可の dataset を省略（null）すると特定個人情報名全体が対象です。\
宛名番号は本文で送ります（URLに個人の番号を載せないため）。",
    request_body(content = ResidentFlagsUpdate, content_type = "application/json"),
    responses(
        (status = 200, body = FlagsView),
        (status = 400, description = "invalid-field / too-many-prohibitions / malformed-json / invalid-character", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
pub(crate) async fn put_resident_flags(
    caller: Caller,
    state: web::Data<ProvisionState>,
    body: web::Json<ResidentFlagsUpdate>,
) -> Result<HttpResponse, Problem> {
    let body = body.into_inner();
    let update = FlagsUpdate {
        non_disclosure: body.non_disclosure,
        self_info_prohibited: body.self_info_prohibited,
        auto_response_prohibited: body.auto_response_prohibited,
    };
    set_flags(&caller, &state, &body.integrated_addressee_number, update).await
}

/// `GET /v1/flags/{addressee}` (deprecated: the number is in the URL).
#[utoipa::path(
    get, path = "/v1/flags/{addressee}", tag = "provision", operation_id = "getResidentFlags",
    summary = "住民のフラグ参照 (deprecated: POST /v1/flags/query)",
    description = "非推奨: 宛名番号がURLに載り、プロキシやアクセスログに記録されます。POST /v1/flags/query を使ってください。次のリリースで削除します。",
    params(("addressee" = AddresseeNo, Path, description = "団体内統合宛名番号")),
    responses(
        (status = 200, body = FlagsView),
        (status = 400, description = "invalid-field", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[deprecated = "the addressee travels in the URL: use POST /v1/flags/query"]
pub(crate) async fn get_flags(
    caller: Caller,
    state: web::Data<ProvisionState>,
    addressee: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let addressee = addressee_param(&addressee)?;
    flags_view(&caller, &state, &addressee).await
}

/// A resident's flags as they are now.
async fn flags_view(
    caller: &Caller,
    state: &ProvisionState,
    addressee: &AddresseeNo,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .or_problem("keys")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let bidx = seal::addressee_index(&keys, addressee.as_str());
    let stored = store::flags_of(&tx, tenant, &bidx)
        .await
        .or_problem("flags")?;
    let view = match stored {
        Some(s) => FlagsView {
            addressee: addressee.as_str().into(),
            non_disclosure: s.flags.non_disclosure,
            self_info_prohibited: s.flags.self_info_prohibited,
            auto_response_prohibited: s.flags.auto_response_prohibited,
            revision: s.revision,
            updated_at: Some(s.updated_at),
        },
        None => FlagsView {
            addressee: addressee.as_str().into(),
            non_disclosure: false,
            self_info_prohibited: false,
            auto_response_prohibited: Vec::new(),
            revision: 0,
            updated_at: None,
        },
    };
    Ok(HttpResponse::Ok().json(view))
}

/// `PUT /v1/flags/{addressee}` (deprecated: the number is in the URL).
#[utoipa::path(
    put, path = "/v1/flags/{addressee}", tag = "provision", operation_id = "putResidentFlags",
    summary = "住民のフラグ設定 (deprecated: PUT /v1/flags)",
    description = "非推奨: 宛名番号がURLに載り、プロキシやアクセスログに記録されます。PUT /v1/flags を使ってください。次のリリースで削除します。",
    params(("addressee" = AddresseeNo, Path, description = "団体内統合宛名番号")),
    request_body(content = FlagsUpdate, content_type = "application/json"),
    responses(
        (status = 200, body = FlagsView),
        (status = 400, description = "invalid-field / too-many-prohibitions", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
#[deprecated = "the addressee travels in the URL: use PUT /v1/flags"]
pub(crate) async fn put_flags(
    caller: Caller,
    state: web::Data<ProvisionState>,
    addressee: web::Path<String>,
    body: web::Json<FlagsUpdate>,
) -> Result<HttpResponse, Problem> {
    let addressee = addressee_param(&addressee)?;
    set_flags(&caller, &state, &addressee, body.into_inner()).await
}

/// Replaces a resident's flags and announces them (flags.changed) in one transaction.
async fn set_flags(
    caller: &Caller,
    state: &ProvisionState,
    addressee: &AddresseeNo,
    update: FlagsUpdate,
) -> Result<HttpResponse, Problem> {
    if update.auto_response_prohibited.len() > MAX_PROHIBITIONS {
        return Err(Problem::new(
            400,
            "too-many-prohibitions",
            "Too many settings",
            format!("自動応答不可の設定は1人 {MAX_PROHIBITIONS} 件までです。"),
            "特定個人情報名単位の設定にまとめて再度送信してください。",
        ));
    }
    let mut prohibited = Vec::with_capacity(update.auto_response_prohibited.len());
    for p in update.auto_response_prohibited {
        if p.dataset.as_deref().is_some_and(|d| !four_digits(d)) {
            return Err(Problem::new(
                400,
                "invalid-field",
                "Invalid field",
                "データセット識別項目コードは4桁の数字で指定してください（特定個人情報名全体は null）。",
                "指定を見直して再度送信してください。",
            ));
        }
        prohibited.push(Prohibition {
            info_code: p.info_code.as_str().into(),
            dataset: p.dataset,
        });
    }
    prohibited.sort();
    prohibited.dedup();
    let flags = Flags {
        non_disclosure: update.non_disclosure,
        self_info_prohibited: update.self_info_prohibited,
        auto_response_prohibited: prohibited,
    };
    let tenant = caller.tenant();
    let now = state.clock.now();
    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .or_problem("keys")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let revision = store::put_flags(
        &tx,
        tenant,
        &seal::addressee_index(&keys, addressee.as_str()),
        &seal::seal_addressee(&keys, tenant, "resident_flags", addressee.as_str()),
        &flags,
        now,
        &caller.claims().sub,
    )
    .await
    .or_problem("put flags")?;
    let event = FlagsChanged {
        tenant: tenant.into(),
        addressee: addressee.as_str().into(),
        non_disclosure: flags.non_disclosure,
        self_info_prohibited: flags.self_info_prohibited,
        auto_response_prohibited: flags
            .auto_response_prohibited
            .iter()
            .map(|p| AutoResponseProhibition {
                info_code: p.info_code.clone(),
                dataset: p.dataset.clone().unwrap_or_default(),
            })
            .collect(),
        revision,
        changed_at_ms: now.timestamp_millis(),
    };
    chukan_mq::outbox::enqueue(
        &tx,
        crate::SCHEMA,
        &OutgoingMessage::new(tenant, FLAGS_CHANGED, event.encode_to_vec()),
    )
    .await
    .or_problem("outbox")?;
    tx.commit().await.or_problem("commit")?;
    state.outbox.wake();
    Ok(HttpResponse::Ok().json(FlagsView {
        addressee: addressee.as_str().into(),
        non_disclosure: flags.non_disclosure,
        self_info_prohibited: flags.self_info_prohibited,
        auto_response_prohibited: flags.auto_response_prohibited,
        revision,
        updated_at: Some(now),
    }))
}

/// A provision request and how it was settled (情報提供等記録).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvisionView {
    pub permit_id: String,
    pub state: AnswerState,
    /// What the answer said (null while waiting).
    pub status: Option<AnswerStatus>,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    /// 特定個人情報名コード.
    pub info_code: String,
    /// 照会者機関コード.
    pub inquirer_org: String,
    /// 事務コード, 事務手続コード.
    pub affair_code: String,
    pub procedure_code: String,
    /// 処理通番, 枝番.
    pub serial_no: String,
    pub branch_no: i32,
    /// 照会条件 (kind "1" as of `from`, "2" from..to).
    #[schema(value_type = Object)]
    pub condition: serde_json::Value,
    /// 団体内統合宛名番号 (null when the code was unknown or the permit refused).
    pub addressee: Option<String>,
    pub requested_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    /// End of the request's validity: answer before it.
    pub expires_at: DateTime<Utc>,
    /// Answered by staff.
    pub manual: bool,
    /// 提供側不開示.
    pub non_disclosure: bool,
    pub inquirer_non_disclosure: bool,
    pub answered_by: Option<String>,
    /// Records provided.
    pub records: i32,
}

// Problem is the house error every handler returns; boxing it here would only add a hop.
#[allow(clippy::result_large_err)]
fn view(
    keys: &chukan_crypto::TenantKeys,
    tenant: &str,
    r: ProvisionRow,
) -> Result<ProvisionView, Problem> {
    let addressee = match &r.addressee_sealed {
        Some(s) => {
            Some(seal::open_addressee(keys, tenant, "provisions", s).or_problem("open addressee")?)
        }
        None => None,
    };
    Ok(ProvisionView {
        permit_id: r.permit_id,
        state: r.state,
        status: r.status,
        reason_code: r.reason_code,
        reason: r.reason,
        info_code: r.info_code,
        inquirer_org: r.inquirer_org,
        affair_code: r.affair_code,
        procedure_code: r.procedure_code,
        serial_no: r.serial_no,
        branch_no: r.branch_no,
        condition: r.condition,
        addressee,
        requested_at: r.requested_at,
        received_at: r.received_at,
        answered_at: r.answered_at,
        expires_at: r.expires_at,
        manual: r.manual,
        non_disclosure: r.non_disclosure,
        inquirer_non_disclosure: r.inquirer_non_disclosure,
        answered_by: r.answered_by,
        records: r.records,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ProvisionListParams {
    /// Only provisions in this state (default: every state).
    #[param(value_type = Option<AnswerState>)]
    pub state: Option<String>,
    /// Paging: the permit id of the last provision of the previous page.
    pub before: Option<String>,
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<i64>,
}

/// `GET /v1/provisions`: the provision requests, newest first (the manual-answer queue with
/// `state=waiting`).
#[utoipa::path(
    get, path = "/v1/provisions", tag = "provision", operation_id = "listProvisions",
    summary = "情報提供の一覧・手動応答待ち (provisions; state=waiting for the manual-answer queue)",
    params(ProvisionListParams),
    responses(
        (status = 200, body = [ProvisionView]),
        (status = 400, description = "invalid-field", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff"]))
)]
pub(crate) async fn list_provisions(
    caller: Caller,
    state: web::Data<ProvisionState>,
    params: web::Query<ProvisionListParams>,
) -> Result<HttpResponse, Problem> {
    // Read as text and parsed here, so an unknown state gets the house's Japanese answer
    // rather than the query extractor's.
    let only = match params.state.as_deref() {
        None => None,
        Some(s) => Some(AnswerState::parse(s).ok_or_else(|| {
            Problem::new(
                400,
                "invalid-field",
                "Invalid field",
                "state は answered / waiting / refused / expired のいずれかで指定してください。",
                "指定を見直して再度照会してください。",
            )
        })?),
    };
    let tenant = caller.tenant();
    let limit = params.limit.unwrap_or(50).clamp(1, 500);
    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .or_problem("keys")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let rows = store::provisions_page(&tx, tenant, only, params.before.as_deref(), limit)
        .await
        .or_problem("provisions")?;
    let mut list = Vec::with_capacity(rows.len());
    for r in rows {
        list.push(view(&keys, tenant, r)?);
    }
    Ok(HttpResponse::Ok().json(list))
}

/// `GET /v1/provisions/{permit_id}`.
#[utoipa::path(
    get, path = "/v1/provisions/{permit_id}", tag = "provision", operation_id = "getProvision",
    summary = "情報提供の状態 (one provision)",
    params(("permit_id" = String, Path, description = "情報提供許可証番号")),
    responses(
        (status = 200, body = ProvisionView),
        (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff"]))
)]
pub(crate) async fn get_provision(
    caller: Caller,
    state: web::Data<ProvisionState>,
    permit_id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .or_problem("keys")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let row = store::provision(&tx, tenant, &permit_id, false)
        .await
        .or_problem("provision")?
        .ok_or_else(|| Problem::not_found("情報提供"))?;
    Ok(HttpResponse::Ok().json(view(&keys, tenant, row)?))
}

/// provide | refuse
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Provide,
    Refuse,
}

/// Staff's answer to a waiting provision.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AnswerRequest {
    pub decision: DecisionKind,
    /// Required when refusing: the reason sent to the inquirer (Japanese, no personal data),
    /// 1–400 characters, not blank.
    #[serde(default)]
    pub reason: Option<String>,
}

chukan_core::body_schema!(
    /// The body of `POST /v1/provisions/{permit_id}/answer`: `provide`, or `refuse` with a
    /// reason.
    AnswerBody = "AnswerRequest" + serde_json::json!({
        "oneOf": [
            {"type": "object", "properties": {"decision": {"const": "provide"}}},
            {"type": "object", "required": ["reason"], "properties": {
                "decision": {"const": "refuse"},
                "reason": {"type": "string", "maxLength": 400, "pattern": "\\S"}}}
        ]
    })
);

/// `POST /v1/provisions/{permit_id}/answer`: answer a waiting provision by hand.
#[utoipa::path(
    post, path = "/v1/provisions/{permit_id}/answer", tag = "provision", operation_id = "answerProvision",
    summary = "手動応答 (provide or refuse a waiting provision)",
    description = "自動応答不可で待機中の情報提供に応答します。provide は現時点の副本から照会条件の時点で提供し、refuse は理由を付けて提供しません。\
有効期限を過ぎたものは期限切れとして NWS に通知され、409 を返します。",
    params(("permit_id" = String, Path, description = "情報提供許可証番号")),
    request_body(content = AnswerBody, content_type = "application/json"),
    responses(
        (status = 200, body = ProvisionView),
        (status = 400, description = "reason-required / invalid-field", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "provision-not-waiting / provision-expired", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems
    ),
    security(("bearer" = ["business_staff"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
pub(crate) async fn answer_provision(
    caller: Caller,
    state: web::Data<ProvisionState>,
    permit_id: web::Path<String>,
    body: web::Json<AnswerRequest>,
) -> Result<HttpResponse, Problem> {
    let req = body.into_inner();
    let decision = match req.decision {
        DecisionKind::Provide => Decision::Provide,
        DecisionKind::Refuse => {
            let reason = req.reason.as_deref().map(str::trim).unwrap_or_default();
            if reason.is_empty() || reason.chars().count() > 400 {
                return Err(Problem::new(
                    400,
                    "reason-required",
                    "Reason required",
                    "提供しない場合は理由（400文字以内）を指定してください。",
                    "reason に理由を入れて再度送信してください。",
                ));
            }
            Decision::Refuse {
                reason: reason.to_owned(),
            }
        }
    };
    let tenant = caller.tenant();
    let row = match manual::answer(&state, tenant, &permit_id, decision, &caller.claims().sub).await
    {
        Ok(row) => row,
        Err(ManualError::NotFound) => return Err(Problem::not_found("情報提供")),
        Err(ManualError::NotWaiting { state }) => {
            return Err(Problem::new(
                409,
                "provision-not-waiting",
                "Not waiting",
                format!("この情報提供は応答待ちではありません（状態: {state}）。"),
                "一覧を再読込して状態を確認してください。",
            ));
        }
        Err(ManualError::Expired) => {
            return Err(Problem::new(
                409,
                "provision-expired",
                "Request expired",
                "照会要求の有効期限が過ぎたため応答できません。期限切れとして NWS に通知しました。",
                "照会者に再照会を依頼してください。",
            ));
        }
        Err(ManualError::Internal(e)) => return Err(Problem::internal_because("manual answer", e)),
    };
    let (_, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .or_problem("keys")?;
    Ok(HttpResponse::Ok().json(view(&keys, tenant, row)?))
}
