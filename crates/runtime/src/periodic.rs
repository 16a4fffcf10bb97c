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

/// Starts `batch`'s batcher ([`chukan_mq::batch`]) for a consumer with `in_flight` (its
/// prefetch) deliveries at once and at most `max` per transaction; returns the consumer's
/// handler and the batcher as a worker named `name`. The binary watches the worker because a
/// batcher that died would leave every delivery to be retried and dead-lettered behind a
/// consumer that looks healthy: its end stops the process instead. It is stopped after the
/// consumers, with nothing left in flight.
pub fn batched<B: chukan_mq::batch::Batch>(
    name: &str,
    batch: B,
    in_flight: u16,
    max: usize,
) -> (chukan_mq::batch::Batched<B>, Worker) {
    let (handler, task) =
        chukan_mq::batch::start(std::sync::Arc::new(batch), usize::from(in_flight), max);
    let (stop, _) = watch::channel(false);
    let worker = periodic_worker(name, StopStage::Outbox, task, stop);
    (handler, worker)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_is_a_worker_that_died_and_a_stopped_one_ended_cleanly() {
        let (stop, _) = watch::channel(false);
        let died = periodic_worker(
            "dies",
            StopStage::Consumers,
            tokio::spawn(async {
                if std::hint::black_box(true) {
                    panic!("a defect in the loop");
                }
            }),
            stop,
        );
        let end = tokio::time::timeout(Duration::from_secs(5), died.finished)
            .await
            .expect("the end of a panicked task is seen");
        let why = end.expect_err("a panic is the worker dying, for the binary to exit on");
        assert!(why.to_string().contains("dies"), "{why}");

        let (stop, mut stopped) = watch::channel(false);
        let runs = periodic_worker(
            "runs",
            StopStage::Consumers,
            tokio::spawn(async move {
                let _ = stopped.wait_for(|s| *s).await;
                std::future::pending::<()>().await;
            }),
            stop,
        );
        (runs.stop)().await;
        let end = tokio::time::timeout(Duration::from_secs(5), runs.finished)
            .await
            .expect("a stopped task ends");
        assert!(end.is_ok(), "stopping is a clean end: {end:?}");
    }
}
