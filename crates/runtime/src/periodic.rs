//! A spawned background loop (a sweep, a scheduler, a signer) as a [`Worker`].

use futures_util::FutureExt as _;
use tokio::{sync::watch, task::JoinHandle};

use crate::{StopStage, Worker};

/// How a background task ends: `()` or an `anyhow::Result<()>`.
pub trait TaskEnd: Send + 'static {
    fn into_result(self) -> anyhow::Result<()>;
}

impl TaskEnd for () {
    fn into_result(self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl TaskEnd for anyhow::Result<()> {
    fn into_result(self) -> anyhow::Result<()> {
        self
    }
}

/// Wraps `task` as a worker stopped at `stage`: stopping sends `true` on `stop` and aborts the
/// task (so use it only for loops whose work in flight is a transaction that either commits or
/// rolls back); an abort is a clean end, a panic or an `Err` is reported as the worker dying.
pub fn periodic_worker<T: TaskEnd>(
    name: &str,
    stage: StopStage,
    task: JoinHandle<T>,
    stop: watch::Sender<bool>,
) -> Worker {
    let abort = task.abort_handle();
    let label = name.to_owned();
    Worker {
        name: name.into(),
        stage,
        finished: async move {
            match task.await {
                Ok(end) => end.into_result(),
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
