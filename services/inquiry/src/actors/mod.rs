//! Background work of the inquiry service: event consumers, the results consumer, the batch
//! sender and the expiry sweep.

pub mod batch_sender;
pub mod events;
pub mod expiry;
pub mod nws_in;

use chukan_mq::HandleError;

pub(crate) fn retry<E>(context: &'static str) -> impl FnOnce(E) -> HandleError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| HandleError::Retry(anyhow::Error::new(e).context(context))
}

pub(crate) fn reject(what: impl std::fmt::Display) -> HandleError {
    HandleError::Reject(anyhow::anyhow!("{what}"))
}

/// A periodic task as a worker, stopped at the intake stage (work in flight is a transaction
/// that either commits or rolls back).
pub(crate) fn periodic_worker(
    name: &str,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
) -> chukan_runtime::Worker {
    use futures_util::FutureExt;
    let abort = task.abort_handle();
    let label = name.to_owned();
    chukan_runtime::Worker {
        name: name.into(),
        stage: chukan_runtime::StopStage::Intake,
        finished: async move {
            match task.await {
                Ok(()) => Ok(()),
                Err(e) if e.is_cancelled() => Ok(()),
                Err(e) => Err(anyhow::anyhow!("{label}: {e}")),
            }
        }
        .boxed(),
        stop: Box::new(move || {
            async move {
                let _ = stop.send(true);
                abort.abort();
            }
            .boxed()
        }),
    }
}
