//! Consumer of provision requests (情報提供要求, `nws.in.provision`): the automatic answer
//! (自動応答). Each request is settled exactly once, in one transaction: inbox claim, the
//! `provisions` row (unique per permit id, so a redelivery under a new bus message id is
//! recognised too), the answer to the NWS and the audit record, both through the outbox.

use std::time::Instant;

use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::{Message, NwsInbound, ProvisionAnswer, ProvisionRequest};
use futures_util::future::BoxFuture;

use crate::{
    ProvisionState,
    exchange::answer::{self, PermitRefusal},
    metrics,
    replica::apply::quota_day,
    seal,
    store::{self, AnswerState, AnswerStatus, ProvisionRow},
};

/// Consumer name in the inbox.
const CONSUMER: &str = "provision.nws-in";
/// Kind relay hands over.
pub const REQUEST_KIND: &str = "provision.request";

pub struct ProvisionRequests {
    state: ProvisionState,
}

impl ProvisionRequests {
    pub fn new(state: ProvisionState) -> Self {
        Self { state }
    }
}

impl Handler for ProvisionRequests {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let state = self.state.clone();
        Box::pin(async move { apply(&state, delivery).await })
    }
}

/// The row of a request before it is settled; the permit's own fields when it has one.
fn base_row(
    inbound: &NwsInbound,
    req: &ProvisionRequest,
    permit: Option<&chukan_proto::ProvisionPermit>,
    now: chrono::DateTime<chrono::Utc>,
) -> ProvisionRow {
    let p = permit.cloned().unwrap_or_default();
    ProvisionRow {
        // The permit id is the correlation id (checked for valid permits): a refused one is
        // recorded under the id the NWS will look its answer up by.
        permit_id: inbound.correlation_id.clone(),
        // Unsettled until the caller decides; every path sets the state it ends in.
        state: AnswerState::Waiting,
        status: None,
        reason_code: None,
        reason: None,
        info_code: p.info_code,
        addressee_bidx: None,
        addressee_sealed: None,
        inquirer_org: p.inquirer_org,
        affair_code: p.affair_code,
        procedure_code: p.procedure_code,
        serial_no: p.serial_no,
        branch_no: p.branch_no,
        condition: answer::condition_json(req.condition.as_ref()),
        inquirer_non_disclosure: req.inquirer_non_disclosure,
        requested_at: answer::at_ms(req.requested_at_ms),
        received_at: now,
        answered_at: None,
        expires_at: answer::at_ms(p.expires_at_ms).unwrap_or(now),
        manual: false,
        non_disclosure: false,
        answered_by: None,
        records: 0,
        signed_permit: req
            .permit
            .as_ref()
            .map(|s| s.encode_to_vec())
            .unwrap_or_default(),
    }
}

fn refused_answer(permit_id: &str, code: &str, reason: &str, now_ms: i64) -> ProvisionAnswer {
    ProvisionAnswer {
        permit_id: permit_id.into(),
        status: AnswerStatus::Refused.as_str().into(),
        records: Vec::new(),
        reason_code: code.into(),
        reason: reason.into(),
        provider_non_disclosure: false,
        manual: false,
        provided_at_ms: now_ms,
    }
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(state: &ProvisionState, delivery: Delivery) -> Result<(), HandleError> {
    let inbound = delivery.decode::<NwsInbound>()?;
    if inbound.kind != REQUEST_KIND {
        return Err(reject(format!("unexpected kind {}", inbound.kind)));
    }
    // Relay set both from one verified envelope: a mismatch is a defect, not a guess.
    delivery.check_tenant(&inbound.recipient_org)?;
    let req = ProvisionRequest::decode(inbound.body.as_slice())
        .map_err(|e| reject(format!("undecodable ProvisionRequest: {e}")))?;
    let tenant = delivery.tenant.as_str();
    let now = state.clock.now();
    let now_ms = now.timestamp_millis();
    let checked = answer::verify_permit(
        &state.verifiers,
        req.permit.as_ref(),
        tenant,
        &inbound.correlation_id,
        now_ms,
    );

    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .map_err(retry("keys"))?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .map_err(retry("begin"))?;

    let permit = match checked {
        Ok(p) => p,
        Err(PermitRefusal {
            code,
            reason,
            permit,
        }) => {
            if !chukan_mq::inbox::claim(&tx, crate::SCHEMA, CONSUMER, delivery.id)
                .await
                .map_err(retry("inbox"))?
            {
                return Ok(());
            }
            let mut row = base_row(&inbound, &req, permit.as_deref(), now);
            row.state = AnswerState::Refused;
            row.status = Some(AnswerStatus::Refused);
            row.reason_code = Some(code.into());
            row.reason = Some(reason.into());
            row.answered_at = Some(now);
            let answer = refused_answer(&row.permit_id, code, reason, now_ms);
            let out = answer::outgoing(tenant, &row, &answer, "provision.refused", code, "", now);
            let (inserted, a, b) = futures_util::join!(
                store::insert_provision(&tx, tenant, &row),
                chukan_mq::outbox::enqueue(&tx, crate::SCHEMA, &out.answer),
                chukan_mq::outbox::enqueue_all(&tx, crate::SCHEMA, &out.audit),
            );
            a.map_err(retry("outbox"))?;
            b.map_err(retry("outbox"))?;
            if !inserted.map_err(retry("provision"))? {
                // This permit id was already settled: answer nothing twice.
                return Ok(());
            }
            tx.commit().await.map_err(retry("commit"))?;
            state.outbox.wake();
            metrics::record_answer("refused");
            tracing::info!(reason_code = code, "provision request refused");
            return Ok(());
        }
    };

    let Some(when) = answer::when_of(req.condition.as_ref()) else {
        // The NWS forwards the inquirer's condition as entered; one we cannot read is refused
        // rather than answered for some other time.
        let mut row = base_row(&inbound, &req, Some(&permit), now);
        row.state = AnswerState::Refused;
        row.status = Some(AnswerStatus::Refused);
        row.reason_code = Some("invalid-condition".into());
        let reason = "照会条件（時点・期間）を解釈できません。";
        row.reason = Some(reason.into());
        row.answered_at = Some(now);
        if !chukan_mq::inbox::claim(&tx, crate::SCHEMA, CONSUMER, delivery.id)
            .await
            .map_err(retry("inbox"))?
        {
            return Ok(());
        }
        let answer = refused_answer(&row.permit_id, "invalid-condition", reason, now_ms);
        let out = answer::outgoing(
            tenant,
            &row,
            &answer,
            "provision.refused",
            "invalid-condition",
            "",
            now,
        );
        if !store::insert_provision(&tx, tenant, &row)
            .await
            .map_err(retry("provision"))?
        {
            return Ok(());
        }
        chukan_mq::outbox::enqueue(&tx, crate::SCHEMA, &out.answer)
            .await
            .map_err(retry("outbox"))?;
        chukan_mq::outbox::enqueue_all(&tx, crate::SCHEMA, &out.audit)
            .await
            .map_err(retry("outbox"))?;
        tx.commit().await.map_err(retry("commit"))?;
        state.outbox.wake();
        metrics::record_answer("refused");
        return Ok(());
    };

    let lookup = Instant::now();
    let code_bidx = seal::code_index(&keys, &permit.provider_code);
    // One pipelined round trip: inbox claim, code → addressee, flags, replicas. Flags are read
    // in this transaction, so a change committed before it takes effect at once.
    let (claimed, link, flags, rows) = futures_util::join!(
        chukan_mq::inbox::claim(&tx, crate::SCHEMA, CONSUMER, delivery.id),
        store::code_link(&tx, tenant, &code_bidx),
        store::flags_by_code(&tx, tenant, &code_bidx),
        store::replicas_by_code(&tx, tenant, &code_bidx, &permit.info_code),
    );
    if !claimed.map_err(retry("inbox"))? {
        return Ok(());
    }
    let link = link.map_err(retry("code link"))?;
    let flags = flags
        .map_err(retry("flags"))?
        .map(|f| f.flags)
        .unwrap_or_default();
    let rows = rows.map_err(retry("replicas"))?;

    let mut row = base_row(&inbound, &req, Some(&permit), now);
    let (answer, outcome, addressee) = match link {
        None => {
            row.state = AnswerState::Answered;
            row.status = Some(AnswerStatus::Provided);
            row.reason_code = Some("no-record".into());
            (
                Some(ProvisionAnswer {
                    permit_id: row.permit_id.clone(),
                    status: AnswerStatus::Provided.as_str().into(),
                    records: Vec::new(),
                    reason_code: "no-record".into(),
                    reason: "該当する副本がありません。".into(),
                    provider_non_disclosure: false,
                    manual: false,
                    provided_at_ms: now_ms,
                }),
                "no-record",
                String::new(),
            )
        }
        Some((addressee_bidx, addressee_sealed)) => {
            let addressee = seal::open_addressee(&keys, tenant, "code_links", &addressee_sealed)
                .map_err(|e| HandleError::Retry(e.context("open addressee")))?;
            row.addressee_bidx = Some(addressee_bidx);
            row.addressee_sealed = Some(seal::seal_addressee(
                &keys,
                tenant,
                "provisions",
                &addressee,
            ));
            row.non_disclosure = flags.non_disclosure;
            let selected = answer::select_at(&keys, tenant, rows, when, quota_day(now))
                .map_err(|e| HandleError::Retry(e.context("open replica")))?;
            if flags.blocks_auto_answer(
                &permit.info_code,
                selected.iter().map(|(r, _)| r.kind.dataset.as_str()),
            ) {
                // 自動応答不可: staff answer it by hand within the validity period.
                row.state = AnswerState::Waiting;
                (None, "waiting", addressee)
            } else {
                let records = answer::provided_records(&selected);
                row.state = AnswerState::Answered;
                row.status = Some(AnswerStatus::Provided);
                row.records = i32::try_from(records.len()).unwrap_or(i32::MAX);
                let empty = records.is_empty();
                if empty {
                    row.reason_code = Some("no-record".into());
                }
                (
                    Some(ProvisionAnswer {
                        permit_id: row.permit_id.clone(),
                        status: AnswerStatus::Provided.as_str().into(),
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
                        provider_non_disclosure: flags.non_disclosure,
                        manual: false,
                        provided_at_ms: now_ms,
                    }),
                    if empty { "no-record" } else { "provided" },
                    addressee,
                )
            }
        }
    };
    metrics::LOOKUP.observe(lookup.elapsed().as_secs_f64());

    match answer {
        None => {
            let (inserted, deadline) = futures_util::join!(
                store::insert_provision(&tx, tenant, &row),
                store::add_deadline(&tx, tenant, &row.permit_id, row.expires_at),
            );
            deadline.map_err(retry("deadline"))?;
            if !inserted.map_err(retry("provision"))? {
                return Ok(());
            }
        }
        Some(answer) => {
            row.answered_at = Some(now);
            let out = answer::outgoing(
                tenant,
                &row,
                &answer,
                "provision.made",
                outcome,
                &addressee,
                now,
            );
            let (inserted, a, b) = futures_util::join!(
                store::insert_provision(&tx, tenant, &row),
                chukan_mq::outbox::enqueue(&tx, crate::SCHEMA, &out.answer),
                chukan_mq::outbox::enqueue_all(&tx, crate::SCHEMA, &out.audit),
            );
            a.map_err(retry("outbox"))?;
            b.map_err(retry("outbox"))?;
            if !inserted.map_err(retry("provision"))? {
                // Same permit under another bus message id: dropping the transaction rolls
                // the answer back, so the NWS gets exactly one.
                return Ok(());
            }
        }
    }
    tx.commit().await.map_err(retry("commit"))?;
    state.outbox.wake();
    metrics::record_answer(outcome);
    Ok(())
}
