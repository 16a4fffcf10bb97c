//! The answer worker: takes waiting requests off the work list (a lease, so two processes never
//! work on one at once and a dead worker's requests come back), asks provision and audit over
//! RabbitMQ request/reply, and settles each request in one transaction: the sealed answer, the
//! `selfinfo.answer` towards the NWS and the answer's `audit.record`, both through the outbox.
//!
//! When provision or audit cannot be asked (no reply in time, no server), the request keeps
//! waiting and is tried again after a growing pause: it is never dropped.

use std::time::Duration;

use chukan_mq::rpc::RpcError;
use chukan_proto::{
    DisclosableRecord, DisclosableRecordsReply, DisclosableRecordsRequest, Message as _,
    ReplicasForCodeReply, ReplicasForCodeRequest, SelfInfoAnswer, SelfInfoAttachment, SelfInfoItem,
};
use chukan_runtime::Worker;
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    AUDIT_RPC, PROVISION_RPC, SelfInfoState,
    consumer::{answer_aad, code_aad},
    metrics, outgoing, store,
};

/// Refusal codes and their Japanese reasons (shown to the resident on the portal).
pub const NO_SUCH_RESIDENT: &str = "no-such-resident";
pub const PROHIBITED: &str = "self-info-prohibited";
const NO_SUCH_RESIDENT_REASON: &str = "ご本人の符号に対応する情報はこの機関に登録されていません。";
const PROHIBITED_REASON: &str = "この機関では、ご本人の情報を自己情報提供として表示しない設定になっています。詳しくは機関の窓口にお問い合わせください。";

pub fn start(state: SelfInfoState) -> Worker {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let full = match round(&state).await {
                Ok(taken) => taken >= usize::from(state.config.batch),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "self-information round failed");
                    false
                }
            };
            if full {
                // More may be waiting: take the next batch at once.
                continue;
            }
            tokio::select! {
                _ = stop_rx.changed() => return,
                () = state.wake.notified() => {}
                () = tokio::time::sleep(state.config.poll) => {}
            }
        }
    });
    // Aborting is safe: each request is settled in one transaction, and the calls are reads.
    chukan_runtime::periodic_worker(
        "selfinfo.answers",
        chukan_runtime::StopStage::Intake,
        task,
        stop_tx,
    )
}

/// Takes the due requests and works on them together; returns how many were taken.
pub async fn round(state: &SelfInfoState) -> anyhow::Result<usize> {
    let now = state.clock.now();
    let lease = chrono::Duration::from_std(state.config.lease)?;
    let taken = {
        let client = state.db.get().await?;
        store::lease_due(&client, now, now + lease, i64::from(state.config.batch)).await?
    };
    let results = futures_util::future::join_all(
        taken
            .iter()
            .map(|(id, tenant)| answer_one(state, *id, tenant)),
    )
    .await;
    for r in results {
        if let Err(e) = r {
            // The lease runs out and the request is taken again.
            tracing::warn!(error = %format!("{e:#}"), "self-information request not settled");
        }
    }
    Ok(taken.len())
}

/// Why the round for a request was put off.
struct Deferred {
    target: &'static str,
    reason: &'static str,
}

impl Deferred {
    fn rpc(target: &'static str) -> impl FnOnce(RpcError) -> Deferred {
        move |e| Deferred {
            target,
            reason: e.outcome(),
        }
    }
}

/// What provision and audit said.
enum Gathered {
    Refused {
        code: &'static str,
        reason: &'static str,
        addressee: String,
    },
    Answered {
        addressee: String,
        items: Vec<SelfInfoItem>,
        records: Vec<DisclosableRecord>,
    },
}

async fn gather(
    state: &SelfInfoState,
    tenant: &str,
    code: &str,
    info_codes: &[String],
) -> Result<Gathered, Deferred> {
    let timeout = state.config.rpc_timeout;
    let asked = ReplicasForCodeRequest {
        code: code.to_owned(),
        info_codes: info_codes.to_vec(),
    };
    let reply = state
        .rpc
        .call(PROVISION_RPC, tenant, &asked.encode_to_vec(), timeout)
        .await
        .map_err(Deferred::rpc("provision"))?;
    let replicas = ReplicasForCodeReply::decode(reply.as_slice()).map_err(|_| Deferred {
        target: "provision",
        reason: "malformed",
    })?;
    if !replicas.known {
        return Ok(Gathered::Refused {
            code: NO_SUCH_RESIDENT,
            reason: NO_SUCH_RESIDENT_REASON,
            addressee: String::new(),
        });
    }
    if replicas.self_info_prohibited {
        return Ok(Gathered::Refused {
            code: PROHIBITED,
            reason: PROHIBITED_REASON,
            addressee: replicas.addressee,
        });
    }
    let asked = DisclosableRecordsRequest {
        addressee: replicas.addressee.clone(),
    };
    let reply = state
        .rpc
        .call(AUDIT_RPC, tenant, &asked.encode_to_vec(), timeout)
        .await
        .map_err(Deferred::rpc("audit"))?;
    let records = DisclosableRecordsReply::decode(reply.as_slice()).map_err(|_| Deferred {
        target: "audit",
        reason: "malformed",
    })?;
    Ok(Gathered::Answered {
        addressee: replicas.addressee,
        items: replicas.items,
        records: records.records,
    })
}

/// The pause before round `attempts` + 1: doubling from `retry_first`, at most `retry_max`.
pub fn backoff(first: Duration, max: Duration, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    first.saturating_mul(2u32.saturating_pow(exp)).min(max)
}

/// Works on one request; `true` when it was answered by this call.
#[tracing::instrument(skip_all, fields(tenant = %tenant, id = %id))]
async fn answer_one(state: &SelfInfoState, id: Uuid, tenant: &str) -> anyhow::Result<bool> {
    // No connection is held while provision and audit are asked: in one process they share
    // this pool, and their answers need connections of their own.
    let (keys, waiting) = {
        let (mut client, keys) =
            chukan_runtime::client_with_keys(&state.db, &state.vault, tenant).await?;
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        let w = store::waiting_request(&tx, id, false).await?;
        tx.commit().await?;
        let Some(w) = w.filter(|w| w.state == "received") else {
            // Answered already (or gone): nothing is owed.
            store::delete_pending(&client, id).await?;
            return Ok(false);
        };
        (keys, w)
    };
    let code = String::from_utf8(keys.decrypt(&waiting.code_enc, &code_aad(tenant, id))?)?;

    let gathered = match gather(state, tenant, &code, &waiting.info_codes).await {
        Ok(g) => g,
        Err(Deferred { target, reason }) => {
            metrics::deferred(target, reason);
            let mut client = state.db.get().await?;
            let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
            let attempts = store::count_attempt(&tx, id).await?;
            tx.commit().await?;
            let pause = backoff(state.config.retry_first, state.config.retry_max, attempts);
            let due = state.clock.now() + chrono::Duration::from_std(pause)?;
            store::reschedule(&client, id, due).await?;
            tracing::warn!(
                target,
                reason,
                attempts,
                "self-information answer put off; the request keeps waiting"
            );
            return Ok(false);
        }
    };

    let now = state.clock.now();
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    let locked = store::waiting_request(&tx, id, true).await?;
    if locked.is_none_or(|w| w.state != "received") {
        // Another worker answered it while this one was asking (its lease ran out).
        store::delete_pending(&tx, id).await?;
        tx.commit().await?;
        return Ok(false);
    }
    let (answer, addressee, outcome) = match gathered {
        Gathered::Refused {
            code,
            reason,
            addressee,
        } => (
            SelfInfoAnswer {
                request_id: waiting.request_id.clone(),
                status: "refused".into(),
                reason_code: code.into(),
                reason: reason.into(),
                answered_at_ms: now.timestamp_millis(),
                ..SelfInfoAnswer::default()
            },
            addressee,
            code,
        ),
        Gathered::Answered {
            addressee,
            items,
            records,
        } => {
            // The organisation's files for every item asked for or answered.
            let mut codes: Vec<String> = waiting.info_codes.clone();
            codes.extend(items.iter().map(|i| i.info_code.clone()));
            codes.sort();
            codes.dedup();
            let attachments = store::attachments_of(&tx, &codes)
                .await?
                .into_iter()
                .map(|(meta, content)| SelfInfoAttachment {
                    info_code: meta.info_code,
                    file_name: meta.file_name,
                    media_type: meta.media_type,
                    content,
                })
                .collect();
            (
                SelfInfoAnswer {
                    request_id: waiting.request_id.clone(),
                    status: "answered".into(),
                    items,
                    records,
                    attachments,
                    answered_at_ms: now.timestamp_millis(),
                    ..SelfInfoAnswer::default()
                },
                addressee,
                "answered",
            )
        }
    };
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let answer_enc = keys.encrypt(&answer.encode_to_vec(), &answer_aad(tenant, id));
    let refused = answer.status == "refused";
    let stored = store::StoredAnswer {
        status: &answer.status,
        reason_code: refused.then_some(answer.reason_code.as_str()),
        reason: refused.then_some(answer.reason.as_str()),
        item_count: count(answer.items.len()),
        record_count: count(answer.records.len()),
        attachment_count: count(answer.attachments.len()),
        answer_enc: &answer_enc,
        answered_at: now,
    };
    let single_item = match waiting.info_codes.as_slice() {
        [one] => one.as_str(),
        _ => "",
    };
    let audit = outgoing::audit(&outgoing::AuditFacts {
        tenant,
        event: if refused {
            "selfinfo.refused"
        } else {
            "selfinfo.answered"
        },
        info_code: single_item,
        addressee: &addressee,
        requested_at: waiting.requested_at,
        outcome,
        at: now,
    });
    let to_nws = outgoing::answer(tenant, &waiting.request_id, &answer);
    let (a, b, c, d) = futures_util::join!(
        store::store_answer(&tx, id, &stored),
        store::delete_pending(&tx, id),
        chukan_mq::outbox::enqueue(&tx, crate::SCHEMA, &to_nws),
        chukan_mq::outbox::enqueue_all(&tx, crate::SCHEMA, &audit),
    );
    a?;
    b?;
    c?;
    d?;
    tx.commit().await?;
    state.outbox.wake();
    metrics::answer(&answer.status, if refused { outcome } else { "" });
    tracing::info!(status = %answer.status, "self-information request answered");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(2), s(60), 1), s(2));
        assert_eq!(backoff(s(2), s(60), 2), s(4));
        assert_eq!(backoff(s(2), s(60), 4), s(16));
        assert_eq!(backoff(s(2), s(60), 10), s(60));
        assert_eq!(backoff(s(2), s(60), i32::MAX), s(60));
        assert_eq!(backoff(s(2), s(60), 0), s(2));
    }
}
