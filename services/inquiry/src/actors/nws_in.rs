//! Consumer of the NWS's results (`nws.in.inquiry`, kind `inquiry.result`, 情報提供受領):
//! stores each inquiry's result sealed, exactly once.

use chrono::{TimeZone, Utc};
use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::{InquiryResult, Message, NwsInbound};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::{
    InquiryState,
    domain::{InquiryStatus, aad},
    metrics, outgoing, store,
};

/// Consumer name in the inbox: a message id is applied once per consumer.
const CONSUMER: &str = "inquiry.nws-in";

pub struct Results {
    state: InquiryState,
}

impl Results {
    pub fn new(state: InquiryState) -> Self {
        Self { state }
    }
}

impl Handler for Results {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let state = self.state.clone();
        Box::pin(async move { apply(&state, delivery).await })
    }
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(state: &InquiryState, delivery: Delivery) -> Result<(), HandleError> {
    let inbound = delivery.decode::<NwsInbound>()?;
    if inbound.kind != "inquiry.result" {
        return Err(reject(format!("unexpected kind {}", inbound.kind)));
    }
    // Relay set the header and the recipient from one verified envelope.
    delivery.check_tenant(&inbound.recipient_org)?;
    let id = Uuid::parse_str(&inbound.correlation_id)
        .map_err(|_| reject("correlation id is not a uuid"))?;
    let result = InquiryResult::decode(inbound.body.as_slice())
        .map_err(|e| reject(format!("undecodable InquiryResult: {e}")))?;
    let status = InquiryStatus::parse(&result.status)
        .filter(|s| *s != InquiryStatus::Sent)
        .ok_or_else(|| reject(format!("unknown result status {:?}", result.status)))?;
    let tenant = delivery.tenant.as_str();

    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .map_err(retry("keys"))?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .map_err(retry("begin"))?;
    // The inbox claim and the row lock travel in one pipelined round trip.
    let (claimed, awaiting) = futures_util::join!(
        chukan_mq::inbox::claim(&tx, crate::SCHEMA, CONSUMER, delivery.id),
        store::lock_for_result(&tx, id),
    );
    if !claimed.map_err(retry("inbox"))? {
        metrics::result("duplicate");
        return Ok(());
    }
    let Some(row) = awaiting.map_err(retry("lock"))? else {
        // Unknown here (or another tenant's): record the message as seen and move on.
        tx.commit().await.map_err(retry("commit"))?;
        metrics::result("unknown-inquiry");
        return Ok(());
    };
    if row.answered {
        // A second result for the same inquiry (a new NWS message): the first one stands.
        tx.commit().await.map_err(retry("commit"))?;
        metrics::result("duplicate");
        return Ok(());
    }
    let now = state.clock.now();
    let late = row.status == InquiryStatus::Expired || row.expires_at < now;
    let stored_status = if late { InquiryStatus::Expired } else { status };
    let provided_at = (result.provided_at_ms > 0)
        .then(|| Utc.timestamp_millis_opt(result.provided_at_ms).single())
        .flatten();
    let id_bytes = id.as_bytes();
    let result_enc = keys.encrypt(&result.encode_to_vec(), &aad(tenant, "result", id_bytes));
    let addressee = keys
        .decrypt(&row.addressee_enc, &aad(tenant, "addressee", id_bytes))
        .map_err(|e| reject(format!("sealed addressee does not open: {e}")))?;
    let addressee = String::from_utf8_lossy(&addressee);
    let reason = if result.reason.is_empty() {
        status.default_reason().map(str::to_owned)
    } else {
        Some(result.reason.clone())
    };
    let reason_code = (!result.reason_code.is_empty()).then_some(result.reason_code.as_str());
    let permit_id = (!result.permit_id.is_empty()).then_some(result.permit_id.as_str());
    let stored = store::StoredResult {
        status: stored_status,
        permit_id,
        provider_non_disclosure: result.provider_non_disclosure,
        manual: result.manual,
        record_count: i32::try_from(result.records.len()).unwrap_or(i32::MAX),
        reason_code,
        reason: reason.as_deref(),
        result_enc: &result_enc,
        provided_at,
        result_at: now,
        late,
    };
    let event = if status.is_permit_refusal() {
        "permit.refused"
    } else {
        "result.received"
    };
    let audit = outgoing::audit(&outgoing::AuditFacts {
        tenant,
        event,
        provider_org: &row.provider_org,
        affair_code: &row.affair_code,
        procedure_code: &row.procedure_code,
        info_code: &row.info_code,
        serial_no: &row.serial_no,
        branch_no: row.branch_no,
        permit_id: permit_id.unwrap_or_default(),
        addressee: &addressee,
        requested_at: row.requested_at,
        provided_at,
        non_disclosure: row.inquirer_non_disclosure || result.provider_non_disclosure,
        outcome: status.as_str(),
        at: now,
    });
    let (updated, queued) = futures_util::join!(
        store::store_result(&tx, id, &stored),
        chukan_mq::outbox::enqueue_all(&tx, crate::SCHEMA, &audit),
    );
    updated.map_err(retry("store result"))?;
    queued.map_err(retry("outbox"))?;
    tx.commit().await.map_err(retry("commit"))?;
    state.outbox.wake();
    metrics::result(if late { "late" } else { status.as_str() });
    metrics::roundtrip(
        (now - row.requested_at).as_seconds_f64(),
        result.manual,
        !state.calendar.open_throughout(row.requested_at, now),
    );
    Ok(())
}
