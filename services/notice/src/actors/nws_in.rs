//! Consumer of the NWS's notice answers (`nws.in.notice`, kind `notice.status`, 状況確認結果):
//! moves each named notice forward (delivered → read → replied, or undeliverable), seals the
//! resident's reply, marks the status check answered and records a `notice.status-received`
//! audit event per notice that changed — all in one transaction with the inbox claim, so a
//! redelivered message is applied once.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::{Message, NoticeState, NoticeStatusReport, NwsInbound};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::{
    NoticeService,
    domain::{NoticeStatus, aad},
    metrics, outgoing, store,
};

/// Consumer name in the inbox: a message id is applied once per consumer.
const CONSUMER: &str = "notice.nws-in";

pub struct StatusReports {
    state: NoticeService,
}

impl StatusReports {
    pub fn new(state: NoticeService) -> Self {
        Self { state }
    }
}

impl Handler for StatusReports {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let state = self.state.clone();
        Box::pin(async move { apply(&state, delivery).await })
    }
}

fn time(ms: i64) -> Option<DateTime<Utc>> {
    (ms > 0)
        .then(|| Utc.timestamp_millis_opt(ms).single())
        .flatten()
}

/// The state a report names, if it is one a notice can move to.
fn reported_state(s: &str) -> Option<NoticeStatus> {
    NoticeStatus::parse(s).filter(|s| {
        matches!(
            s,
            NoticeStatus::Delivered
                | NoticeStatus::Read
                | NoticeStatus::Replied
                | NoticeStatus::Undeliverable
        )
    })
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(state: &NoticeService, delivery: Delivery) -> Result<(), HandleError> {
    let inbound = delivery.decode::<NwsInbound>()?;
    if inbound.kind != "notice.status" {
        return Err(reject(format!("unexpected kind {}", inbound.kind)));
    }
    // Relay set the header and the recipient from one verified envelope.
    delivery.check_tenant(&inbound.recipient_org)?;
    let report = NoticeStatusReport::decode(inbound.body.as_slice())
        .map_err(|e| reject(format!("undecodable NoticeStatusReport: {e}")))?;
    let tenant = delivery.tenant.as_str();
    // The last word on a notice within one report wins; ids that are not ours cannot match.
    let items: HashMap<Uuid, &NoticeState> = report
        .notices
        .iter()
        .filter_map(|n| Uuid::parse_str(&n.notice_id).ok().map(|id| (id, n)))
        .collect();
    let ids: Vec<Uuid> = items.keys().copied().collect();
    let check_id = Uuid::parse_str(&report.check_id).ok();

    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .map_err(retry("keys"))?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .map_err(retry("begin"))?;
    // The inbox claim and the row locks travel in one pipelined round trip.
    let (claimed, locked) = futures_util::join!(
        chukan_mq::inbox::claim(&tx, crate::SCHEMA, CONSUMER, delivery.id),
        store::lock_notices(&tx, &ids),
    );
    if !claimed.map_err(retry("inbox"))? {
        metrics::status("duplicate");
        return Ok(());
    }
    let locked = locked.map_err(retry("lock"))?;
    let now = state.clock.now();
    let status_at = time(report.reported_at_ms).unwrap_or(now);
    // Named notices this tenant does not have (another's, or never sent) change nothing.
    let mut outcomes = vec!["unknown-notice"; items.len().saturating_sub(locked.len())];
    let mut changed = 0;
    for notice in &locked {
        let Some(item) = items.get(&notice.id) else {
            continue;
        };
        let Some(next) = reported_state(&item.state) else {
            outcomes.push("unknown");
            continue;
        };
        if !notice.state.advances_to(next) {
            outcomes.push("unchanged");
            continue;
        }
        let row = notice.id.as_bytes();
        let reply_enc = (next == NoticeStatus::Replied && !item.reply_choice.is_empty())
            .then(|| keys.encrypt(item.reply_choice.as_bytes(), &aad(tenant, "reply", row)));
        let reason_code = match (next, item.reason_code.as_str()) {
            (NoticeStatus::Undeliverable, "") => Some("undeliverable"),
            (NoticeStatus::Undeliverable, code) => Some(code),
            _ => None,
        };
        store::apply_status(
            &tx,
            &store::StatusUpdate {
                id: notice.id,
                state: next,
                read_at: time(item.read_at_ms),
                reply_enc: reply_enc.as_deref(),
                replied_at: time(item.replied_at_ms),
                reason_code,
                status_at,
            },
        )
        .await
        .map_err(retry("apply status"))?;
        let addressee = keys
            .decrypt(&notice.addressee_enc, &aad(tenant, "addressee", row))
            .map_err(|e| reject(format!("sealed addressee does not open: {e}")))?;
        let audit = outgoing::audit(
            tenant,
            "notice.status-received",
            &String::from_utf8_lossy(&addressee),
            notice.accepted_at,
            next.as_str(),
            now,
        );
        chukan_mq::outbox::enqueue_all(&tx, crate::SCHEMA, &audit)
            .await
            .map_err(retry("outbox"))?;
        outcomes.push(next.as_str());
        changed += 1;
    }
    if let Some(check_id) = check_id {
        let reported = i32::try_from(report.notices.len()).unwrap_or(i32::MAX);
        if store::mark_check_answered(&tx, check_id, now, reported)
            .await
            .map_err(retry("check"))?
        {
            metrics::check("answered");
        }
    }
    tx.commit().await.map_err(retry("commit"))?;
    if changed > 0 {
        state.outbox.wake();
    }
    for outcome in outcomes {
        metrics::status(outcome);
    }
    Ok(())
}
