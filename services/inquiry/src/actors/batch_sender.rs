//! The batch sender: puts the accepted lines of bulk files (一括照会) into the outbox in chunks,
//! one transaction per chunk. A line is marked dispatched in the same transaction as its
//! outbox rows, so a crash mid-batch neither loses nor repeats a line; the batch resumes at the
//! first line not yet dispatched.

use std::time::Duration;

use chukan_proto::InquiryCondition;
use chukan_runtime::Worker;
use tokio::sync::watch;
use uuid::Uuid;

use crate::{InquiryState, domain::aad, outgoing, store};

/// Lines per transaction.
pub const CHUNK_LINES: i64 = 500;

/// How often pending batches are looked for when nothing woke the sender (another process
/// may have accepted them, or a round failed).
const POLL: Duration = Duration::from_secs(2);

pub fn start(state: InquiryState) -> Worker {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = send_pending(&state).await {
                tracing::warn!(error = %format!("{e:#}"), "batch sender round failed");
            }
            tokio::select! {
                _ = stop_rx.changed() => return,
                () = state.batches.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    });
    chukan_runtime::periodic_worker(
        "inquiry.batch-sender",
        chukan_runtime::StopStage::Intake,
        task,
        stop_tx,
    )
}

/// Sends every pending batch's waiting lines; returns how many lines went to the outbox.
pub async fn send_pending(state: &InquiryState) -> anyhow::Result<usize> {
    let pending = {
        let client = state.db.get().await?;
        store::pending_batches(&client).await?
    };
    let mut sent = 0;
    for (batch_id, tenant) in pending {
        loop {
            let n = send_chunk(state, &tenant, batch_id).await?;
            sent += n;
            if n == 0 {
                break;
            }
        }
    }
    Ok(sent)
}

/// One chunk of one batch in one transaction; 0 when nothing of the batch was left to take.
async fn send_chunk(state: &InquiryState, tenant: &str, batch_id: Uuid) -> anyhow::Result<usize> {
    let (mut client, keys) =
        chukan_runtime::client_with_keys(&state.db, &state.vault, tenant).await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    let lines = store::undispatched(&tx, batch_id, CHUNK_LINES).await?;
    let now = state.clock.now();
    if lines.is_empty() {
        store::finish_batch(&tx, batch_id, now).await?;
        tx.commit().await?;
        return Ok(0);
    }
    let mut messages = Vec::with_capacity(lines.len() * 2);
    let mut dispatched = Vec::with_capacity(lines.len());
    for l in &lines {
        let id_bytes = l.id.as_bytes();
        let code = l
            .code_enc
            .as_deref()
            .map(|c| keys.decrypt(c, &aad(tenant, "code", &l.addressee_bidx)))
            .transpose()?;
        let Some(code) = code else {
            // The code was there when the file was accepted; links are never removed, so
            // this is a defect: answer the line locally instead of sending a codeless request.
            store::fail_undispatched(&tx, l.id, now).await?;
            continue;
        };
        let code = String::from_utf8_lossy(&code).into_owned();
        let addressee = keys.decrypt(&l.addressee_enc, &aad(tenant, "addressee", id_bytes))?;
        let addressee = String::from_utf8_lossy(&addressee).into_owned();
        let condition = InquiryCondition {
            kind: l.condition_kind.clone(),
            year_kind: l.year_kind.clone(),
            from: l.date_from.format("%Y-%m-%d").to_string(),
            to: l
                .date_to
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
        };
        messages.push(outgoing::inquiry_request(&outgoing::Request {
            tenant,
            id: l.id,
            serial_no: &l.serial_no,
            branch_no: l.branch_no,
            code: &code,
            affair_code: &l.affair_code,
            procedure_code: &l.procedure_code,
            info_code: &l.info_code,
            provider_org: &l.provider_org,
            condition,
            non_disclosure: l.inquirer_non_disclosure,
            requested_at: l.requested_at,
            expires_at: l.expires_at,
        }));
        messages.extend(outgoing::audit(&outgoing::AuditFacts {
            tenant,
            event: "inquiry.sent",
            provider_org: &l.provider_org,
            affair_code: &l.affair_code,
            procedure_code: &l.procedure_code,
            info_code: &l.info_code,
            serial_no: &l.serial_no,
            branch_no: l.branch_no,
            permit_id: "",
            addressee: &addressee,
            requested_at: l.requested_at,
            provided_at: None,
            non_disclosure: l.inquirer_non_disclosure,
            outcome: "sent",
            at: now,
        }));
        dispatched.push(l.id);
    }
    // Pipelined: the outbox rows go out together, then the lines are marked.
    chukan_mq::outbox::enqueue_all(&tx, crate::SCHEMA, &messages).await?;
    store::mark_dispatched(&tx, &dispatched, now).await?;
    tx.commit().await?;
    state.outbox.wake();
    Ok(lines.len())
}
