//! REST routes of the code service (business systems and staff).

use std::sync::LazyLock;

use actix_web::{HttpResponse, http::header, web};
use chukan_auth::{Caller, Role};
use chukan_core::{Problem, ids::AddresseeNo};
use chukan_mq::OutgoingMessage;
use chukan_proto::{CodeAcquireRequest, Message, NwsOutbound};
use prometheus::{IntCounterVec, register_int_counter_vec};
use uuid::Uuid;

use crate::{
    CodeState,
    domain::{AcquisitionRequest, AcquisitionStatus, CodeHolding, aad},
    store,
};

/// Who may obtain and look up codes: staff at the console and business systems.
const CODE_ROLES: &[Role] = &[Role::BusinessStaff, Role::SystemClient];

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_code_acquisition_requests_total",
        "Code acquisition requests by how they were answered",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<CodeState>) {
    cfg.app_data(state)
        .route(
            "/v1/codes/acquisitions",
            web::post().to(request_acquisition),
        )
        .route(
            "/v1/codes/acquisitions/{id}",
            web::get().to(get_acquisition),
        )
        .route("/v1/codes/{addressee}", web::get().to(get_holding));
}

fn internal(context: &'static str, err: impl std::fmt::Display) -> Problem {
    // The cause goes to the log (no personal data in it: values are sealed or hashed).
    tracing::error!(%err, context, "code service failure");
    Problem::internal()
}

/// `POST /v1/codes/acquisitions` → 202 with the request's id, or 200 when the code is
/// already held. Repeating a request for the same resident returns the same id.
#[tracing::instrument(skip_all, fields(tenant = %caller.tenant()))]
async fn request_acquisition(
    caller: Caller,
    state: web::Data<CodeState>,
    body: web::Json<AcquisitionRequest>,
) -> Result<HttpResponse, Problem> {
    caller.require_any(CODE_ROLES)?;
    let tenant = caller.tenant().to_owned();
    let req = body.into_inner();
    let mut client = state.db.get().await.map_err(|e| internal("pool", e))?;
    let tx = chukan_db::tenant_tx(&mut client, &tenant)
        .await
        .map_err(|e| internal("begin", e))?;
    let keys = state
        .vault
        .keys(&*tx, &tenant)
        .await
        .map_err(|e| internal("keys", e))?;
    let addressee = req.integrated_addressee_number.as_str();
    let bidx = keys.blind_index(addressee);

    let (held, pending) = store::standing(&tx, &bidx)
        .await
        .map_err(|e| internal("standing", e))?;
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
    queued.map_err(|e| internal("outbox", e))?;
    if !inserted.map_err(|e| internal("insert", e))? {
        // A concurrent request for the same resident committed first: drop ours (and its
        // outbox row) and join that one.
        drop(tx);
        let tx = chukan_db::tenant_tx(&mut client, &tenant)
            .await
            .map_err(|e| internal("begin", e))?;
        let id = store::pending_acquisition(&tx, &bidx)
            .await
            .map_err(|e| internal("pending", e))?
            .ok_or_else(|| internal("race", "pending request vanished"))?;
        REQUESTS.with_label_values(&["joined_pending"]).inc();
        return Ok(accepted(id, AcquisitionStatus::Pending, true));
    }
    tx.commit().await.map_err(|e| internal("commit", e))?;
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
        .json(serde_json::json!({ "id": id, "status": status, "href": location }))
}

/// `GET /v1/codes/acquisitions/{id}` → pending / done / failed with the reason.
async fn get_acquisition(
    caller: Caller,
    state: web::Data<CodeState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    caller.require_any(CODE_ROLES)?;
    let mut client = state.db.get().await.map_err(|e| internal("pool", e))?;
    let tx = chukan_db::tenant_tx(&mut client, caller.tenant())
        .await
        .map_err(|e| internal("begin", e))?;
    match store::acquisition(&tx, id.into_inner())
        .await
        .map_err(|e| internal("select", e))?
    {
        Some(a) => Ok(HttpResponse::Ok().json(a)),
        None => Err(Problem::not_found("符号取得要求")),
    }
}

/// `GET /v1/codes/{addressee}` → whether a code is held for the resident.
async fn get_holding(
    caller: Caller,
    state: web::Data<CodeState>,
    addressee: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    caller.require_any(CODE_ROLES)?;
    let addressee = AddresseeNo::parse(&addressee).map_err(|e| Problem::invalid_field(&e))?;
    let tenant = caller.tenant();
    let mut client = state.db.get().await.map_err(|e| internal("pool", e))?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .map_err(|e| internal("begin", e))?;
    let keys = state
        .vault
        .keys(&*tx, tenant)
        .await
        .map_err(|e| internal("keys", e))?;
    let held = store::held_code(&tx, &keys.blind_index(addressee.as_str()))
        .await
        .map_err(|e| internal("held", e))?;
    tx.commit().await.map_err(|e| internal("commit", e))?;
    Ok(HttpResponse::Ok().json(CodeHolding {
        held: held.is_some(),
        obtained_at: held.map(|(_, at)| at),
    }))
}
