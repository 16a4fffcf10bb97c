//! The expiry sweep: a waiting provision (自動応答不可, not answered by staff) whose request
//! validity (30 days) has ended is expired and the NWS is told so with status "expired".

use std::time::Duration;

use chukan_runtime::{StopStage, Worker};
use futures_util::FutureExt;
use tokio::sync::watch;

use crate::{ProvisionState, manual};

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
    let abort = task.abort_handle();
    Worker {
        name: "provision.expiry".into(),
        // Each expiry is its own transaction: stopping between two loses nothing.
        stage: StopStage::Intake,
        finished: async move {
            match task.await {
                Ok(r) => r,
                Err(e) if e.is_cancelled() => Ok(()),
                Err(e) => Err(anyhow::anyhow!("expiry sweep: {e}")),
            }
        }
        .boxed(),
        stop: Box::new(move || {
            async move {
                let _ = stop_tx.send(true);
                abort.abort();
            }
            .boxed()
        }),
    }
}
