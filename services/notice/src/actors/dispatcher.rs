//! The dispatcher: sends scheduled notices (配信日時 given) once their time has come. Taking a
//! notice off the work list, its outbox rows and its dispatched mark share one transaction,
//! so a crash neither loses nor repeats a notice, and two processes never both send it.

use std::time::Duration;

use chukan_proto::{Message as _, NoticeContent};
use chukan_runtime::Worker;
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    NoticeService,
    dispatch::{Dispatch, dispatch},
    domain::{NoticeStatus, aad},
    metrics, store,
};

/// How often due notices are looked for when nothing woke the dispatcher.
const POLL: Duration = Duration::from_secs(1);
/// Notices taken per round.
const ROUND: i64 = 200;

pub fn start(state: NoticeService) -> Worker {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = dispatch_due(&state).await {
                tracing::warn!(error = %format!("{e:#}"), "notice dispatcher round failed");
            }
            tokio::select! {
                _ = stop_rx.changed() => return,
                () = state.scheduled.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    });
    chukan_runtime::periodic_worker(
        "notice.dispatcher",
        chukan_runtime::StopStage::Intake,
        task,
        stop_tx,
    )
}

/// Sends every scheduled notice due now; returns how many went to the outbox.
pub async fn dispatch_due(state: &NoticeService) -> anyhow::Result<usize> {
    let mut sent = 0;
    loop {
        let due = {
            let client = state.db.get().await?;
            store::due_scheduled(&client, state.clock.now(), ROUND).await?
        };
        let n = due.len();
        for (id, tenant) in due {
            if send_one(state, &tenant, id).await? {
                sent += 1;
            }
        }
        if n < usize::try_from(ROUND).unwrap_or(usize::MAX) {
            break;
        }
    }
    if sent > 0 {
        state.outbox.wake();
    }
    Ok(sent)
}

async fn send_one(state: &NoticeService, tenant: &str, id: Uuid) -> anyhow::Result<bool> {
    let (mut client, keys) =
        chukan_runtime::client_with_keys(&state.db, &state.vault, tenant).await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    if !store::take_scheduled(&tx, id).await? {
        // Another dispatcher took it first.
        tx.commit().await?;
        return Ok(false);
    }
    let Some(store::Undispatched {
        bidx,
        addressee_enc,
        content_enc,
        accepted_at,
    }) = store::undispatched(&tx, id).await?
    else {
        tx.commit().await?;
        return Ok(false);
    };
    let row = id.as_bytes();
    let addressee = keys.decrypt(&addressee_enc, &aad(tenant, "addressee", row))?;
    let addressee = String::from_utf8_lossy(&addressee).into_owned();
    let content = NoticeContent::decode(
        keys.decrypt(&content_enc, &aad(tenant, "content", row))?
            .as_slice(),
    )?;
    let now = state.clock.now();
    let Some(code_enc) = store::code_of(&tx, &bidx).await? else {
        // The code was held when the notice was accepted; without it nothing can be sent.
        store::apply_status(
            &tx,
            &store::StatusUpdate {
                id,
                state: NoticeStatus::Undeliverable,
                read_at: None,
                reply_enc: None,
                replied_at: None,
                reason_code: Some("no-code"),
                status_at: now,
            },
        )
        .await?;
        tx.commit().await?;
        metrics::status("no-code");
        return Ok(false);
    };
    let code = keys.decrypt(&code_enc, &aad(tenant, "code", &bidx))?;
    let code = String::from_utf8_lossy(&code).into_owned();
    dispatch(
        &tx,
        Dispatch {
            tenant,
            notice_id: id,
            code: &code,
            addressee: &addressee,
            content,
            accepted_at,
            now,
        },
    )
    .await?;
    tx.commit().await?;
    metrics::dispatched("scheduled");
    Ok(true)
}
