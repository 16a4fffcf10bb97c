//! The manual-answer queue (自動応答不可 → staff answer by hand): staff provide or refuse a
//! waiting provision within its validity; the sweep expires what nobody answered in time.

use chrono::{DateTime, Utc};
use chukan_proto::ProvisionAnswer;

use crate::{
    ProvisionState,
    exchange::answer::{self, Outgoing},
    metrics,
    replica::apply::quota_day,
    seal,
    store::{self, AnswerState, AnswerStatus, ProvisionRow, Settlement},
};

/// What staff decided.
#[derive(Debug, Clone)]
pub enum Decision {
    Provide,
    Refuse { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error("no such provision")]
    NotFound,
    #[error("provision is not waiting")]
    NotWaiting { state: AnswerState },
    /// Its validity ended: it has now been expired and the NWS told so.
    #[error("provision expired")]
    Expired,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for ManualError {
    fn from(e: tokio_postgres::Error) -> Self {
        ManualError::Internal(e.into())
    }
}

async fn enqueue(tx: &impl deadpool_postgres::GenericClient, out: &Outgoing) -> anyhow::Result<()> {
    chukan_mq::outbox::enqueue(tx, crate::SCHEMA, &out.answer).await?;
    chukan_mq::outbox::enqueue_all(tx, crate::SCHEMA, &out.audit).await?;
    Ok(())
}

fn addressee_of(
    keys: &chukan_crypto::TenantKeys,
    tenant: &str,
    row: &ProvisionRow,
) -> anyhow::Result<String> {
    match &row.addressee_sealed {
        Some(s) => seal::open_addressee(keys, tenant, "provisions", s),
        None => Ok(String::new()),
    }
}

/// Expires a waiting provision in `tx`: state expired, status "expired" sent to the NWS.
async fn expire(
    tx: &impl deadpool_postgres::GenericClient,
    keys: &chukan_crypto::TenantKeys,
    tenant: &str,
    row: &ProvisionRow,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let answer = answer::expired_answer(&row.permit_id, now);
    store::settle_provision(
        tx,
        tenant,
        &row.permit_id,
        &Settlement {
            state: AnswerState::Expired,
            status: AnswerStatus::Expired,
            reason_code: Some(&answer.reason_code),
            reason: Some(&answer.reason),
            answered_at: now,
            manual: false,
            non_disclosure: row.non_disclosure,
            answered_by: None,
            records: 0,
        },
    )
    .await?;
    let addressee = addressee_of(keys, tenant, row)?;
    let out = answer::outgoing(
        tenant,
        row,
        &answer,
        "provision.refused",
        "expired",
        &addressee,
        now,
    );
    enqueue(tx, &out).await
}

/// Settles a waiting provision by staff's decision; returns the row as it is now.
pub async fn answer(
    state: &ProvisionState,
    tenant: &str,
    permit_id: &str,
    decision: Decision,
    by: &str,
) -> Result<ProvisionRow, ManualError> {
    let now = state.clock.now();
    let (mut client, keys) =
        chukan_runtime::client_with_keys(&state.db, &state.vault, tenant).await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    let row = store::provision(&tx, tenant, permit_id, true)
        .await?
        .ok_or(ManualError::NotFound)?;
    if row.state != AnswerState::Waiting {
        return Err(ManualError::NotWaiting { state: row.state });
    }
    if row.expires_at <= now {
        expire(&tx, &keys, tenant, &row, now).await?;
        tx.commit().await?;
        state.outbox.wake();
        metrics::record_answer("expired");
        return Err(ManualError::Expired);
    }
    let addressee = addressee_of(&keys, tenant, &row)?;
    let (answer, settlement_records, event, outcome, non_disclosure) = match &decision {
        Decision::Provide => {
            let when = answer::when_of(answer::condition_from_json(&row.condition).as_ref())
                .unwrap_or(crate::history::PointInTime::Current);
            let bidx = row.addressee_bidx.clone().unwrap_or_default();
            let (flags, rows) = futures_util::join!(
                store::flags_of(&tx, tenant, &bidx),
                store::replicas_of(&tx, tenant, &bidx, &row.info_code, None),
            );
            let non_disclosure = flags?.is_some_and(|f| f.flags.non_disclosure);
            let selected = answer::select_at(&keys, tenant, rows?, when, quota_day(now))?;
            let records = answer::provided_records(&selected);
            let empty = records.is_empty();
            let n = i32::try_from(records.len()).unwrap_or(i32::MAX);
            (
                ProvisionAnswer {
                    permit_id: row.permit_id.clone(),
                    status: "provided".into(),
                    records,
                    reason_code: if empty {
                        "no-record".into()
                    } else {
                        String::new()
                    },
                    reason: if empty {
                        "指定された時点に該当する副本がありません。".into()
                    } else {
                        String::new()
                    },
                    provider_non_disclosure: non_disclosure,
                    manual: true,
                    provided_at_ms: now.timestamp_millis(),
                },
                n,
                "provision.manual",
                if empty { "no-record" } else { "provided" },
                non_disclosure,
            )
        }
        Decision::Refuse { reason } => (
            ProvisionAnswer {
                permit_id: row.permit_id.clone(),
                status: AnswerStatus::Refused.as_str().into(),
                records: Vec::new(),
                reason_code: "refused-by-staff".into(),
                reason: reason.clone(),
                provider_non_disclosure: row.non_disclosure,
                manual: true,
                provided_at_ms: now.timestamp_millis(),
            },
            0,
            "provision.refused",
            "refused",
            row.non_disclosure,
        ),
    };
    let (state_now, status) = match decision {
        Decision::Provide => (AnswerState::Answered, AnswerStatus::Provided),
        Decision::Refuse { .. } => (AnswerState::Refused, AnswerStatus::Refused),
    };
    store::settle_provision(
        &tx,
        tenant,
        &row.permit_id,
        &Settlement {
            state: state_now,
            status,
            reason_code: (!answer.reason_code.is_empty()).then_some(answer.reason_code.as_str()),
            reason: (!answer.reason.is_empty()).then_some(answer.reason.as_str()),
            answered_at: now,
            manual: true,
            non_disclosure,
            answered_by: Some(by),
            records: settlement_records,
        },
    )
    .await?;
    let out = answer::outgoing(tenant, &row, &answer, event, outcome, &addressee, now);
    enqueue(&tx, &out).await?;
    let after = store::provision(&tx, tenant, permit_id, false)
        .await?
        .ok_or(ManualError::NotFound)?;
    tx.commit().await?;
    state.outbox.wake();
    metrics::record_answer(outcome);
    Ok(after)
}

/// Expires every waiting provision whose validity has ended; returns how many.
pub async fn expire_due(state: &ProvisionState) -> anyhow::Result<usize> {
    let now = state.clock.now();
    let due = {
        let client = state.db.get().await?;
        store::due_deadlines(&client, now, 500).await?
    };
    let mut expired = 0;
    for (tenant, permit_id) in due {
        let (mut client, keys) =
            chukan_runtime::client_with_keys(&state.db, &state.vault, &tenant).await?;
        let tx = chukan_db::tenant_tx(&mut client, &tenant).await?;
        match store::provision(&tx, &tenant, &permit_id, true).await? {
            Some(row) if row.state == AnswerState::Waiting && row.expires_at <= now => {
                expire(&tx, &keys, &tenant, &row, now).await?;
                expired += 1;
                metrics::record_answer("expired");
            }
            // Answered meanwhile (or gone): only the stale deadline remains.
            _ => {
                tx.execute(
                    "DELETE FROM provision.waiting_deadlines WHERE tenant_id = $1 AND permit_id = $2",
                    &[&tenant, &permit_id],
                )
                .await?;
            }
        }
        tx.commit().await?;
    }
    if expired > 0 {
        state.outbox.wake();
    }
    Ok(expired)
}
