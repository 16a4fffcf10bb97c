//! Consumer of self-information requests (自己情報提供要求, `nws.in.selfinfo`): stores each
//! request once (inbox claim, request row and work-list row in one transaction) and wakes the
//! answer worker. The answer itself needs provision and audit, so it is made by the worker,
//! not here: a slow or absent peer never holds a delivery unacked.

use chrono::{DateTime, Utc};
use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::{Message as _, NwsInbound, SelfInfoRequest};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::{SelfInfoState, metrics, store};

/// Consumer name in the inbox.
const CONSUMER: &str = "selfinfo.nws-in";
/// Longest portal request id kept (it is an id, not free text).
const MAX_REQUEST_ID: usize = 64;
/// Most info codes one request may name.
const MAX_INFO_CODES: usize = 100;

pub struct Requests {
    state: SelfInfoState,
}

impl Requests {
    pub fn new(state: SelfInfoState) -> Self {
        Self { state }
    }
}

impl Handler for Requests {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let state = self.state.clone();
        Box::pin(async move { apply(&state, delivery).await })
    }
}

/// The associated data of a sealed code: the tenant and the request row.
pub fn code_aad(tenant: &str, id: Uuid) -> Vec<u8> {
    format!("selfinfo.requests.code|{tenant}|{id}").into_bytes()
}

/// The associated data of a sealed answer.
pub fn answer_aad(tenant: &str, id: Uuid) -> Vec<u8> {
    format!("selfinfo.requests.answer|{tenant}|{id}").into_bytes()
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(state: &SelfInfoState, delivery: Delivery) -> Result<(), HandleError> {
    let inbound = delivery.decode::<NwsInbound>()?;
    if inbound.kind != crate::REQUEST_KIND {
        return Err(reject(format!("unexpected kind {}", inbound.kind)));
    }
    // Relay set both from one verified envelope: a mismatch is a defect, not a guess.
    delivery.check_tenant(&inbound.recipient_org)?;
    let request = SelfInfoRequest::decode(inbound.body.as_slice())
        .map_err(|e| reject(format!("undecodable SelfInfoRequest: {e}")))?;
    // The correlation id is what the answer goes back under; the body's copy must agree.
    let request_id = if inbound.correlation_id.is_empty() {
        request.request_id.clone()
    } else {
        inbound.correlation_id.clone()
    };
    if request_id.is_empty()
        || request_id.len() > MAX_REQUEST_ID
        || (!request.request_id.is_empty() && request.request_id != request_id)
    {
        return Err(reject("missing or inconsistent request id"));
    }
    if request.code.is_empty() {
        return Err(reject("request without a code"));
    }
    let mut info_codes = request.info_codes.clone();
    if info_codes.len() > MAX_INFO_CODES
        || info_codes
            .iter()
            .any(|c| chukan_core::ids::InfoCode::parse(c).is_err())
    {
        return Err(reject("invalid info codes"));
    }
    info_codes.sort();
    info_codes.dedup();
    let tenant = delivery.tenant.as_str();
    let now = state.clock.now();
    let requested_at = (request.requested_at_ms > 0)
        .then(|| DateTime::<Utc>::from_timestamp_millis(request.requested_at_ms))
        .flatten();

    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .map_err(retry("keys"))?;
    let Some(tx) = delivery.claim(&mut client, crate::SCHEMA, CONSUMER).await? else {
        metrics::request("duplicate");
        return Ok(());
    };
    let id = Uuid::now_v7();
    let code_enc = keys.encrypt(request.code.as_bytes(), &code_aad(tenant, id));
    let inserted = store::insert_request(
        &tx,
        &store::NewRequest {
            tenant,
            id,
            request_id: &request_id,
            code_enc: &code_enc,
            info_codes: &info_codes,
            requested_at,
            received_at: now,
        },
    )
    .await
    .map_err(retry("request"))?;
    if inserted {
        store::insert_pending(&tx, id, tenant, now)
            .await
            .map_err(retry("pending"))?;
    }
    tx.commit().await.map_err(retry("commit"))?;
    if inserted {
        state.wake.notify_one();
        metrics::request("received");
    } else {
        metrics::request("duplicate");
    }
    Ok(())
}
