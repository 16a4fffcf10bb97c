//! Consumers that apply deliveries in batches: each delivery is checked on its own, then
//! handed to one batcher task that applies whatever has arrived meanwhile, one transaction
//! per tenant, and acks each delivery only after its batch committed. With a prefetch of
//! hundreds, a busy queue drains in batches of hundreds (one round trip for many events)
//! while a quiet one still applies each event at once: a batch of one never waits for
//! company. Used where a per-event transaction cannot keep up with the firehose (the audit
//! log's appends, the statistics' counts).

use std::{collections::HashMap, sync::Arc};

use futures_util::future::BoxFuture;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{Delivery, HandleError, Handler};

/// What a batched consumer does with its deliveries.
pub trait Batch: Send + Sync + 'static {
    /// A delivery checked and decoded, ready to be applied with others.
    type Item: Send + 'static;
    /// What applying one item came to (for metrics).
    type Done: Send + 'static;

    /// Checks and decodes one delivery; an error settles only that delivery.
    fn prepare(&self, delivery: &Delivery) -> Result<Self::Item, HandleError>;

    /// Applies one tenant's items in one transaction, answering one result per item in their
    /// order. An error retries every delivery of the batch (nothing of it was committed).
    fn apply<'a>(
        &'a self,
        tenant: &'a str,
        items: Vec<Self::Item>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<Self::Done>>>;

    /// Called once per delivery whose batch committed.
    fn settled(&self, _done: &Self::Done) {}
}

struct Job<B: Batch> {
    tenant: String,
    item: B::Item,
    done: oneshot::Sender<Result<B::Done, String>>,
}

/// The [`Handler`] side: hands each checked delivery to the batcher and waits for its batch.
pub struct Batched<B: Batch> {
    batch: Arc<B>,
    jobs: mpsc::Sender<Job<B>>,
}

/// Starts the batcher task. `in_flight` is the consumer's prefetch (what a batch can be made
/// of); `max` caps one transaction. The task ends when every handler is dropped; the caller
/// watches it as a worker, since a dead batcher would leave every delivery to be retried
/// behind a consumer that looks healthy.
pub fn start<B: Batch>(
    batch: Arc<B>,
    in_flight: usize,
    max: usize,
) -> (Batched<B>, JoinHandle<()>) {
    let (jobs, rx) = mpsc::channel(in_flight.max(1));
    let task = tokio::spawn(batcher(
        Arc::clone(&batch),
        rx,
        in_flight.max(1),
        max.max(1),
    ));
    (Batched { batch, jobs }, task)
}

impl<B: Batch> Handler for Batched<B> {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let batch = Arc::clone(&self.batch);
        let jobs = self.jobs.clone();
        Box::pin(async move {
            let item = batch.prepare(&delivery)?;
            let (done, outcome) = oneshot::channel();
            let job = Job {
                tenant: delivery.tenant,
                item,
                done,
            };
            let gone = || HandleError::Retry(anyhow::anyhow!("batcher stopped"));
            jobs.send(job).await.map_err(|_| gone())?;
            match outcome.await.map_err(|_| gone())? {
                Ok(done) => {
                    batch.settled(&done);
                    Ok(())
                }
                Err(error) => Err(HandleError::Retry(anyhow::anyhow!("batch: {error}"))),
            }
        })
    }
}

/// Takes what is waiting (at least one job), groups it by tenant and applies each tenant's
/// share in chunks of at most `max`, the tenants side by side.
async fn batcher<B: Batch>(
    batch: Arc<B>,
    mut rx: mpsc::Receiver<Job<B>>,
    in_flight: usize,
    max: usize,
) {
    while let Some(first) = rx.recv().await {
        let mut by_tenant: HashMap<String, Vec<Job<B>>> = HashMap::new();
        by_tenant
            .entry(first.tenant.clone())
            .or_default()
            .push(first);
        let mut taken = 1;
        while taken < in_flight {
            let Ok(job) = rx.try_recv() else { break };
            by_tenant.entry(job.tenant.clone()).or_default().push(job);
            taken += 1;
        }
        let chunks = by_tenant.into_iter().flat_map(|(tenant, jobs)| {
            let mut chunks = Vec::new();
            let mut jobs = jobs.into_iter().peekable();
            while jobs.peek().is_some() {
                chunks.push((tenant.clone(), jobs.by_ref().take(max).collect::<Vec<_>>()));
            }
            chunks
        });
        futures_util::future::join_all(chunks.map(|(tenant, jobs)| {
            let batch = Arc::clone(&batch);
            async move { run_chunk(&*batch, &tenant, jobs).await }
        }))
        .await;
    }
}

async fn run_chunk<B: Batch>(batch: &B, tenant: &str, jobs: Vec<Job<B>>) {
    let (items, waiting): (Vec<B::Item>, Vec<_>) =
        jobs.into_iter().map(|j| (j.item, j.done)).unzip();
    let count = items.len();
    match batch.apply(tenant, items).await {
        Ok(outcomes) if outcomes.len() == count => {
            for (done, outcome) in waiting.into_iter().zip(outcomes) {
                let _ = done.send(Ok(outcome));
            }
        }
        Ok(outcomes) => {
            // A defect in `apply`; the transaction has committed, so the retries are
            // redeliveries the inbox recognises.
            let error = format!(
                "batch answered {} results for {count} items",
                outcomes.len()
            );
            tracing::error!(error, "batched consumer");
            for done in waiting {
                let _ = done.send(Err(error.clone()));
            }
        }
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                items = count,
                "batch failed; its deliveries will be retried"
            );
            let error = format!("{error:#}");
            for done in waiting {
                let _ = done.send(Err(error.clone()));
            }
        }
    }
}
