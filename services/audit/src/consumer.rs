//! Consumer of audit events (`audit.record`). Each delivery is checked, then handed to one
//! batcher task that appends whatever has arrived meanwhile in one transaction per tenant
//! ([`append::append`]); the delivery is acked only after its batch committed. With up to
//! `audit.prefetch` deliveries in flight, a busy queue is drained in batches of hundreds while
//! a quiet one still appends each record at once (a batch of one never waits for company).

use std::collections::HashMap;

use chukan_mq::{Delivery, HandleError, Handler, reject};
use chukan_proto::AuditRecord;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::append::{self, Incoming, Outcome};
use crate::{AuditState, metrics};

struct Job {
    tenant: String,
    item: Incoming,
    done: oneshot::Sender<Result<Outcome, String>>,
}

pub struct Records {
    jobs: mpsc::Sender<Job>,
}

impl Records {
    /// Starts the batcher; returns the handler and the batcher as a worker the binary
    /// watches: a batcher that died would leave every record to be retried and
    /// dead-lettered behind a consumer that looks healthy, so its end stops the process
    /// instead (ADR 0002). It is stopped after the consumers, with nothing left in flight.
    pub fn start(state: AuditState) -> (Self, chukan_runtime::Worker) {
        let capacity = usize::from(state.settings.prefetch);
        let (jobs, rx) = mpsc::channel(capacity);
        let (stop, _) = tokio::sync::watch::channel(false);
        let worker = chukan_runtime::periodic_worker(
            "audit.batcher",
            chukan_runtime::StopStage::Outbox,
            tokio::spawn(batcher(state, rx)),
            stop,
        );
        (Self { jobs }, worker)
    }
}

impl Handler for Records {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let jobs = self.jobs.clone();
        Box::pin(async move { apply(jobs, delivery).await })
    }
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(jobs: mpsc::Sender<Job>, delivery: Delivery) -> Result<(), HandleError> {
    let record = delivery.decode::<AuditRecord>()?;
    let item = append::validate(record, Some(delivery.id), &delivery.tenant).map_err(reject)?;
    let (done, outcome) = oneshot::channel();
    let job = Job {
        tenant: delivery.tenant.clone(),
        item,
        done,
    };
    let gone = || HandleError::Retry(anyhow::anyhow!("audit batcher stopped"));
    jobs.send(job).await.map_err(|_| gone())?;
    match outcome.await.map_err(|_| gone())? {
        Ok(outcome) => {
            metrics::appended(outcome.label());
            Ok(())
        }
        Err(error) => Err(HandleError::Retry(anyhow::anyhow!("append: {error}"))),
    }
}

/// Takes what is waiting (at least one job), groups it by tenant and appends each tenant's
/// share in one transaction, the tenants side by side.
async fn batcher(state: AuditState, mut rx: mpsc::Receiver<Job>) {
    let max = state.settings.append_batch_max;
    while let Some(first) = rx.recv().await {
        let mut by_tenant: HashMap<String, Vec<Job>> = HashMap::new();
        by_tenant
            .entry(first.tenant.clone())
            .or_default()
            .push(first);
        let mut taken = 1;
        while taken < usize::from(state.settings.prefetch) {
            let Ok(job) = rx.try_recv() else { break };
            by_tenant.entry(job.tenant.clone()).or_default().push(job);
            taken += 1;
        }
        let rounds = by_tenant.into_iter().flat_map(|(tenant, jobs)| {
            let mut chunks = Vec::new();
            let mut jobs = jobs.into_iter().peekable();
            while jobs.peek().is_some() {
                chunks.push((tenant.clone(), jobs.by_ref().take(max).collect::<Vec<_>>()));
            }
            chunks
        });
        // Chunks of one tenant queue on its log lock; different tenants run in parallel.
        futures_util::future::join_all(rounds.map(|(tenant, jobs)| {
            let state = state.clone();
            async move { run_chunk(&state, &tenant, jobs).await }
        }))
        .await;
    }
}

async fn run_chunk(state: &AuditState, tenant: &str, jobs: Vec<Job>) {
    let (items, waiting): (Vec<Incoming>, Vec<_>) =
        jobs.into_iter().map(|j| (j.item, j.done)).unzip();
    metrics::batch_size(items.len());
    match append::append(state, tenant, &items).await {
        Ok(outcomes) => {
            for (done, outcome) in waiting.into_iter().zip(outcomes) {
                let _ = done.send(Ok(outcome));
            }
        }
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                records = items.len(),
                "audit append failed; the batch will be retried"
            );
            let error = format!("{error:#}");
            for done in waiting {
                let _ = done.send(Err(error.clone()));
            }
        }
    }
}
