//! Consumer of the NWS's answers (`nws.in.code`): stores the code exactly once.

use std::sync::LazyLock;

use chrono::Utc;
use chukan_mq::OutgoingMessage;
use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::{
    CODE_LINKED, CodeAcquireResult, CodeLinked, ExchangeStat, Message, NwsInbound, STATS_EXCHANGE,
};
use futures_util::future::BoxFuture;
use prometheus::{IntCounterVec, register_int_counter_vec};
use uuid::Uuid;

use crate::{
    CodeState,
    domain::{AcquisitionStatus, aad},
    store,
};

/// Consumer name in the inbox: a message id is applied once per consumer.
const CONSUMER: &str = "code.nws-in";

static RESULTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_code_acquisition_results_total",
        "Answers of the NWS to code acquisitions, by outcome",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub struct CodeResults {
    state: CodeState,
}

impl CodeResults {
    pub fn new(state: CodeState) -> Self {
        Self { state }
    }
}

impl Handler for CodeResults {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let state = self.state.clone();
        Box::pin(async move { apply(&state, delivery).await })
    }
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(state: &CodeState, delivery: Delivery) -> Result<(), HandleError> {
    let inbound = delivery.decode::<NwsInbound>()?;
    if inbound.kind != "code.acquired" {
        return Err(reject(format!("unexpected kind {}", inbound.kind)));
    }
    // The tenant header and the envelope's recipient must agree: relay set both from one
    // verified envelope, so a mismatch is a defect, not something to guess around.
    delivery.check_tenant(&inbound.recipient_org)?;
    let acquisition_id = Uuid::parse_str(&inbound.correlation_id)
        .map_err(|_| reject("correlation id is not a uuid"))?;
    let result = CodeAcquireResult::decode(inbound.body.as_slice())
        .map_err(|e| reject(format!("undecodable result: {e}")))?;
    let tenant = delivery.tenant.as_str();

    let mut client = state.db.get().await.map_err(retry("pool"))?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .map_err(retry("begin"))?;
    // The inbox claim and the row lock travel in one pipelined round trip.
    let (claimed, pending) = futures_util::join!(
        chukan_mq::inbox::claim(&tx, crate::SCHEMA, CONSUMER, delivery.id),
        store::lock_pending(&tx, acquisition_id),
    );
    if !claimed.map_err(retry("inbox"))? {
        RESULTS.with_label_values(&["duplicate"]).inc();
        return Ok(());
    }
    let Some(store::Pending {
        addressee_bidx: bidx,
        addressee_enc,
        requested_at,
    }) = pending.map_err(retry("lock"))?
    else {
        // Unknown or already answered: record the message as seen and move on.
        tx.commit().await.map_err(retry("commit"))?;
        RESULTS.with_label_values(&["no_pending_request"]).inc();
        return Ok(());
    };
    let now = Utc::now();
    if result.ok && !result.code.is_empty() {
        let keys = state
            .vault
            .keys(&*tx, tenant)
            .await
            .map_err(|e| HandleError::Retry(anyhow::Error::new(e).context("keys")))?;
        let code_enc = keys.encrypt(result.code.as_bytes(), &aad(tenant, "code"));
        let addressee = keys
            .decrypt(&addressee_enc, &aad(tenant, "addressee"))
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .ok_or_else(|| reject("sealed addressee unreadable"))?;
        // Inquiry and provision keep their own sealed copy of the link (a service never reads
        // another's tables); the event commits with the link or not at all.
        let linked = CodeLinked {
            tenant: tenant.to_owned(),
            addressee,
            code: result.code.clone(),
            linked_at_ms: now.timestamp_millis(),
        };
        let event = OutgoingMessage::new(tenant, CODE_LINKED, linked.encode_to_vec());
        chukan_mq::outbox::enqueue(&tx, crate::SCHEMA, &event)
            .await
            .map_err(retry("outbox"))?;
        store::store_link(
            &tx,
            tenant,
            &bidx,
            &addressee_enc,
            &code_enc,
            acquisition_id,
            now,
        )
        .await
        .map_err(retry("link"))?;
        store::complete(
            &tx,
            acquisition_id,
            AcquisitionStatus::Done,
            None,
            None,
            now,
        )
        .await
        .map_err(retry("complete"))?;
        RESULTS.with_label_values(&["done"]).inc();
    } else {
        let reason = if result.reason.is_empty() {
            "符号を取得できませんでした。".to_string()
        } else {
            result.reason.clone()
        };
        store::complete(
            &tx,
            acquisition_id,
            AcquisitionStatus::Failed,
            Some(result.reason_code.as_str()),
            Some(reason.as_str()),
            now,
        )
        .await
        .map_err(retry("complete"))?;
        RESULTS.with_label_values(&["failed"]).inc();
    }
    // Counted by the statistics service (符号取得 per organisation per day), without the
    // resident or the code.
    let (event, outcome) = if result.ok && !result.code.is_empty() {
        ("code.acquired", "done")
    } else {
        ("code.failed", result.reason_code.as_str())
    };
    let stat = ExchangeStat {
        tenant: tenant.to_owned(),
        event: event.into(),
        outcome: outcome.into(),
        requested_at_ms: requested_at.timestamp_millis(),
        at_ms: now.timestamp_millis(),
        ..ExchangeStat::default()
    };
    chukan_mq::outbox::enqueue(
        &tx,
        crate::SCHEMA,
        &OutgoingMessage::new(tenant, STATS_EXCHANGE, stat.encode_to_vec()),
    )
    .await
    .map_err(retry("outbox"))?;
    tx.commit().await.map_err(retry("commit"))?;
    state.outbox.wake();
    Ok(())
}
