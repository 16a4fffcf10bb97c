//! REST routes of the code service (business systems and staff), and their OpenAPI
//! description ([`ApiDoc`]).

use std::sync::LazyLock;

use actix_web::{HttpResponse, http::header, web};
use chukan_auth::Caller;
use chukan_core::{
    Problem, edge,
    ids::{AddresseeNo, ResidentRecordCode},
    problem::ProtectedRouteProblems,
};
use chukan_db::OrProblem as _;
use chukan_mq::OutgoingMessage;
use chukan_proto::{CodeAcquireRequest, Message, NwsOutbound};
use prometheus::{IntCounterVec, register_int_counter_vec};
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::{
    CodeState,
    domain::{
        Acquisition, AcquisitionAccepted, AcquisitionRequest, AcquisitionStatus, CodeHolding, aad,
    },
    store,
};

/// The code service's part of `/openapi.json`.
// The deprecated GET form is still described (and marked deprecated) for one release.
#[allow(deprecated)]
#[derive(OpenApi)]
#[openapi(
    paths(request_acquisition, get_acquisition, query_holding, get_holding),
    components(schemas(
        HoldingQuery,
        AcquisitionRequest,
        AcquisitionAccepted,
        Acquisition,
        AcquisitionStatus,
        CodeHolding,
        AddresseeNo,
        ResidentRecordCode,
        Problem
    )),
    tags((
        name = "code",
        description = "符号管理 (code management): 住民の符号を情報提供ネットワークシステムから取得し、団体内統合宛名番号との対応を保持します。"
    ))
)]
pub struct ApiDoc;

// Who may call what is each operation's `security` (enforced by chukan-auth's gate): codes
// are business work, for staff at the console and business systems.

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_code_acquisition_requests_total",
        "Code acquisition requests by how they were answered",
        &["outcome"]
    )
    .expect("metric registers once")
});

// The deprecated GET form is still served for one release (docs/api.md).
#[allow(deprecated)]
pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<CodeState>) {
    cfg.app_data(state)
        .service(
            edge::resource("/v1/codes/acquisitions").route(web::post().to(request_acquisition)),
        )
        .route(
            "/v1/codes/acquisitions/{id}",
            web::get().to(get_acquisition),
        )
        .route("/v1/codes/holdings/query", web::post().to(query_holding))
        .route("/v1/codes/{addressee}", web::get().to(get_holding));
}

/// `POST /v1/codes/acquisitions` → 202 with the request's id, or 200 when the code is
/// already held. Repeating a request for the same resident returns the same id.
#[utoipa::path(
    post,
    path = "/v1/codes/acquisitions",
    tag = "code",
    operation_id = "requestCodeAcquisition",
    summary = "符号取得要求 (request a resident's code)",
    description = "住民票コードを情報提供ネットワークシステム (NWS) に送り、団体内統合宛名番号に対応する符号を取得します。\
取得は非同期です: 202 と要求の id を返し、結果は `Location` の URL で確認します。\
同じ住民について繰り返し要求しても同じ id が返り、NWS への送信は1回だけです。\
既に符号を取得済みなら 200 で `done` を返します。住民票コードは保存しません。",
    request_body(content = AcquisitionRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "受け付けました (accepted; follow `Location`)", body = AcquisitionAccepted,
            headers(("Location" = String, description = "/v1/codes/acquisitions/{id}"))),
        (status = 200, description = "符号は取得済みです (the code is already held)", body = AcquisitionAccepted,
            headers(("Location" = String, description = "/v1/codes/acquisitions/{id}"))),
        (status = 400, description = "項目の形式が不正です (invalid-field, malformed-json)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "権限がありません: business_staff 又は system_client が必要です (forbidden)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn request_acquisition(
    caller: Caller,
    state: web::Data<CodeState>,
    body: web::Json<AcquisitionRequest>,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant().to_owned();
    let req = body.into_inner();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, &tenant)
        .await
        .or_problem("begin")?;
    let keys = state.vault.keys(&*tx, &tenant).await.or_problem("keys")?;
    let addressee = req.integrated_addressee_number.as_str();
    let bidx = keys.blind_index(addressee);

    let (held, pending) = store::standing(&tx, &bidx).await.or_problem("standing")?;
    if let Some(id) = held {
        REQUESTS.with_label_values(&["already_held"]).inc();
        return Ok(accepted(id, AcquisitionStatus::Done, false));
    }
    if let Some(id) = pending {
        REQUESTS.with_label_values(&["joined_pending"]).inc();
        return Ok(accepted(id, AcquisitionStatus::Pending, true));
    }

    let id = Uuid::now_v7();
    let sealed = keys.encrypt(addressee.as_bytes(), &aad(&tenant, "addressee"));
    let outbound = NwsOutbound {
        kind: "code.acquire".into(),
        sender_org: tenant.clone(),
        recipient: "NWS".into(),
        correlation_id: id.to_string(),
        body: CodeAcquireRequest {
            resident_record_code: req.resident_record_code.as_str().to_owned(),
        }
        .encode_to_vec(),
    };
    let msg = OutgoingMessage::new(&tenant, chukan_proto::NWS_OUT, outbound.encode_to_vec());
    // Both writes go out in one pipelined round trip; they commit or vanish together.
    let (inserted, queued) = futures_util::join!(
        store::insert_pending(&tx, &tenant, id, &bidx, &sealed),
        chukan_mq::outbox::enqueue(&tx, crate::SCHEMA, &msg),
    );
    queued.or_problem("outbox")?;
    if !inserted.or_problem("insert")? {
        // A concurrent request for the same resident committed first: drop ours (and its
        // outbox row) and join that one.
        drop(tx);
        let tx = chukan_db::tenant_tx(&mut client, &tenant)
            .await
            .or_problem("begin")?;
        let id = store::pending_acquisition(&tx, &bidx)
            .await
            .or_problem("pending")?
            .ok_or_else(|| {
                Problem::internal_because("race", anyhow::anyhow!("pending request vanished"))
            })?;
        REQUESTS.with_label_values(&["joined_pending"]).inc();
        return Ok(accepted(id, AcquisitionStatus::Pending, true));
    }
    tx.commit().await.or_problem("commit")?;
    state.outbox.wake();
    REQUESTS.with_label_values(&["accepted"]).inc();
    Ok(accepted(id, AcquisitionStatus::Pending, true))
}

fn accepted(id: Uuid, status: AcquisitionStatus, is_new_work: bool) -> HttpResponse {
    let location = format!("/v1/codes/acquisitions/{id}");
    let mut res = if is_new_work {
        HttpResponse::Accepted()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::LOCATION, location.clone()))
        .json(AcquisitionAccepted {
            id,
            status,
            href: location,
        })
}

/// `GET /v1/codes/acquisitions/{id}` → pending / done / failed with the reason.
#[utoipa::path(
    get,
    path = "/v1/codes/acquisitions/{id}",
    tag = "code",
    operation_id = "getCodeAcquisition",
    summary = "符号取得要求の状態 (status of a code request)",
    description = "符号取得要求の状態 (pending / done / failed) と、失敗した場合はその理由を返します。他団体の要求は見えません (404)。",
    params(("id" = Uuid, Path, description = "符号取得要求の id (POST の応答の `id`)")),
    responses(
        (status = 200, description = "符号取得要求 (the request)", body = Acquisition),
        (status = 400, description = "id の形式が不正です (invalid-path)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "認証トークンがないか無効です (unauthenticated)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "符号取得要求が見つかりません (not-found)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "サーバ内部エラー (internal-error)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "サービス時間外、又は一時的に利用できません (outside-service-hours, service-unavailable)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn get_acquisition(
    caller: Caller,
    state: web::Data<CodeState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .or_problem("begin")?;
    match store::acquisition(&tx, id.into_inner())
        .await
        .or_problem("select")?
    {
        Some(a) => Ok(HttpResponse::Ok().json(a)),
        None => Err(Problem::not_found("符号取得要求")),
    }
}

/// Which resident: in the body, so the number never travels in a URL (proxies, ingresses
/// and access logs on the LGWAN record URLs).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldingQuery {
    /// 団体内統合宛名番号 (1〜15桁の数字).
    pub integrated_addressee_number: AddresseeNo,
}

/// `POST /v1/codes/holdings/query` → whether a code is held for the resident.
#[utoipa::path(
    post,
    path = "/v1/codes/holdings/query",
    tag = "code",
    operation_id = "queryCodeHolding",
    summary = "符号の取得状況 (whether a resident's code is held)",
    description = "団体内統合宛名番号の住民について、符号を取得済みかどうかと取得日時を返します。符号そのものは返しません。\
宛名番号は本文で送ります（URLに個人の番号を載せないため）。",
    request_body(content = HoldingQuery, content_type = "application/json"),
    responses(
        (status = 200, description = "符号の取得状況 (whether the code is held)", body = CodeHolding),
        (status = 400, description = "団体内統合宛名番号の形式が不正です (invalid-field, malformed-json, invalid-character)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
async fn query_holding(
    caller: Caller,
    state: web::Data<CodeState>,
    body: web::Json<HoldingQuery>,
) -> Result<HttpResponse, Problem> {
    holding(&caller, &state, &body.integrated_addressee_number).await
}

/// `GET /v1/codes/{addressee}` → whether a code is held for the resident (deprecated: the
/// number is in the URL).
#[utoipa::path(
    get,
    path = "/v1/codes/{addressee}",
    tag = "code",
    operation_id = "getCodeHolding",
    summary = "符号の取得状況 (deprecated: POST /v1/codes/holdings/query)",
    description = "非推奨: 宛名番号がURLに載り、プロキシやアクセスログに記録されます。POST /v1/codes/holdings/query を使ってください。次のリリースで削除します。",
    params(("addressee" = AddresseeNo, Path, description = "団体内統合宛名番号 (1〜15桁の数字)")),
    responses(
        (status = 200, description = "符号の取得状況 (whether the code is held)", body = CodeHolding),
        (status = 400, description = "団体内統合宛名番号の形式が不正です (invalid-field)", body = Problem, content_type = "application/problem+json"),
        ProtectedRouteProblems,
    ),
    security(("bearer" = ["business_staff", "system_client"]))
)]
#[deprecated = "the addressee travels in the URL: use POST /v1/codes/holdings/query"]
async fn get_holding(
    caller: Caller,
    state: web::Data<CodeState>,
    addressee: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let addressee = AddresseeNo::parse(&addressee).map_err(|e| Problem::invalid_field(&e))?;
    holding(&caller, &state, &addressee).await
}

/// Whether a code is held for `addressee`, and since when.
async fn holding(
    caller: &Caller,
    state: &CodeState,
    addressee: &AddresseeNo,
) -> Result<HttpResponse, Problem> {
    let tenant = caller.tenant();
    let mut client = state.db.get().await.or_problem("pool")?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .or_problem("begin")?;
    let keys = state.vault.keys(&*tx, tenant).await.or_problem("keys")?;
    let held = store::held_code(&tx, &keys.blind_index(addressee.as_str()))
        .await
        .or_problem("held")?;
    tx.commit().await.or_problem("commit")?;
    Ok(HttpResponse::Ok().json(CodeHolding {
        held: held.is_some(),
        obtained_at: held.map(|(_, at)| at),
    }))
}
