//! The expiry sweep: a waiting provision (自動応答不可, not answered by staff) whose request
//! validity (30 days) has ended is expired and the NWS is told so with status "expired".

use std::time::Duration;

use chukan_runtime::{StopStage, Worker};
use tokio::sync::watch;

use crate::{ProvisionState, exchange::manual};

pub fn start(state: ProvisionState, every: Duration) -> Worker {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop_rx.changed() => return anyhow::Ok(()),
                _ = tick.tick() => {
                    if let Err(e) = manual::expire_due(&state).await {
                        tracing::error!(error = %format!("{e:#}"), "expiry sweep failed");
                    }
                }
            }
        }
    });
    // Each expiry is its own transaction: stopping between two loses nothing.
    chukan_runtime::periodic_worker("provision.expiry", StopStage::Intake, task, stop_tx)
}
