//! Consumer of audit events (`audit.record`), batched ([`chukan_mq::batch`]): each delivery
//! is checked on its own, then appended with whatever has arrived meanwhile, in one
//! transaction per tenant ([`append::append`]); the delivery is acked only after its batch
//! committed. With up to `audit.prefetch` deliveries in flight, a busy queue is drained in
//! batches of hundreds while a quiet one still appends each record at once.

use chukan_mq::{Delivery, HandleError, batch::Batch, reject};
use chukan_proto::AuditRecord;
use futures_util::future::BoxFuture;

use crate::append::{self, Incoming, Outcome};
use crate::{AuditState, metrics};

pub struct Records {
    state: AuditState,
}

impl Records {
    /// Starts the batcher; returns the handler and the batcher as a worker the binary
    /// watches: a batcher that died would leave every record to be retried and
    /// dead-lettered behind a consumer that looks healthy, so its end stops the process
    /// instead (ADR 0002). It is stopped after the consumers, with nothing left in flight.
    pub fn start(
        state: AuditState,
    ) -> (chukan_mq::batch::Batched<Records>, chukan_runtime::Worker) {
        let in_flight = state.settings.prefetch;
        let max = state.settings.append_batch_max;
        chukan_runtime::batched("audit.batcher", Self { state }, in_flight, max)
    }
}

impl Batch for Records {
    type Item = Incoming;
    type Done = Outcome;

    fn prepare(&self, delivery: &Delivery) -> Result<Incoming, HandleError> {
        let _span = tracing::debug_span!("audit.record", message_id = %delivery.id).entered();
        let record = delivery.decode::<AuditRecord>()?;
        append::validate(record, Some(delivery.id), &delivery.tenant).map_err(reject)
    }

    fn apply<'a>(
        &'a self,
        tenant: &'a str,
        items: Vec<Incoming>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<Outcome>>> {
        Box::pin(async move {
            metrics::batch_size(items.len());
            append::append(&self.state, tenant, &items).await
        })
    }

    fn settled(&self, outcome: &Outcome) {
        metrics::appended(outcome.label());
    }
}
