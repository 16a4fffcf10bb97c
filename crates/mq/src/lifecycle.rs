//! Stop signal and completion report shared by the relay and consumer actors and their
//! [`Worker`] handles.

use chukan_core::worker::{StopStage, Worker};
use tokio::sync::watch;

/// `None` while running; `Some(Err(reason))` if the actor died.
pub(crate) type Done = Option<Result<(), String>>;

pub(crate) fn channels() -> (
    watch::Sender<bool>,
    watch::Receiver<bool>,
    watch::Sender<Done>,
    watch::Receiver<Done>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(None);
    (stop_tx, stop_rx, done_tx, done_rx)
}

/// Resolves when the actor has finished.
pub(crate) async fn finished(mut done: watch::Receiver<Done>) -> anyhow::Result<()> {
    let outcome = done.wait_for(Option::is_some).await.map(|d| d.clone());
    match outcome {
        Ok(Some(Ok(()))) => Ok(()),
        Ok(Some(Err(reason))) => Err(anyhow::anyhow!(reason)),
        // The sender went away without a report: the actor's system was torn down.
        Ok(None) | Err(_) => Err(anyhow::anyhow!("the actor ended without reporting")),
    }
}

pub(crate) fn worker(
    name: &str,
    stage: StopStage,
    stop: std::sync::Arc<watch::Sender<bool>>,
    done: watch::Receiver<Done>,
) -> Worker {
    let done_for_stop = done.clone();
    Worker {
        name: name.to_owned(),
        stage,
        finished: Box::pin(finished(done)),
        stop: Box::new(move || {
            Box::pin(async move {
                let _ = stop.send(true);
                let _ = finished(done_for_stop).await;
            })
        }),
    }
}

/// Resolves once a stop was requested (or the requester is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
