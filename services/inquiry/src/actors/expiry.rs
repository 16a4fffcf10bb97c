//! The expiry sweep: inquiries still waiting after their 30-day validity (有効期限) become
//! `expired`. Reads already show them expired before the sweep; this makes it durable, for
//! lists and counts.

use std::time::Duration;

use chukan_runtime::Worker;
use tokio::sync::watch;

use crate::{InquiryState, store};

pub fn start(state: InquiryState, every: Duration) -> Worker {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop_rx.changed() => return,
                _ = tick.tick() => {
                    if let Err(e) = sweep(&state).await {
                        tracing::warn!(error = %format!("{e:#}"), "expiry sweep failed");
                    }
                }
            }
        }
    });
    chukan_runtime::periodic_worker(
        "inquiry.expiry",
        chukan_runtime::StopStage::Intake,
        task,
        stop_tx,
    )
}

/// Expires overdue inquiries of every tenant, one tenant per transaction; returns how many.
pub async fn sweep(state: &InquiryState) -> anyhow::Result<u64> {
    let mut client = state.db.get().await?;
    let tenants = store::active_tenants(&client).await?;
    let now = state.clock.now();
    let mut expired = 0;
    for tenant in tenants {
        let tx = chukan_db::tenant_tx(&mut client, &tenant).await?;
        expired += store::expire_overdue(&tx, now).await?;
        tx.commit().await?;
    }
    if expired > 0 {
        tracing::info!(expired, "inquiries past their validity marked expired");
    }
    Ok(expired)
}
