//! Consumer of `stats.exchange` (業務統計): each exchange event of every service, counted once
//! (inbox) into its organisation's Japan day — the event's own day, however late it arrives —
//! by event × affair × procedure × item × outcome, with its duration.
//!
//! The firehose is as fast as the audit log's (every audit record has a counting twin), so
//! events are applied in batches ([`chukan_mq::batch`]): one transaction per tenant claims
//! every message id of the batch in the inbox at once, adds the new events up per row, and
//! writes each row once, in key order (so concurrent batches lock rows in the same order).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chukan_mq::{Delivery, HandleError, batch::Batch, reject};
use chukan_proto::ExchangeStat;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::{
    StatsState, metrics,
    store::{self, ExchangeCounts, ExchangeKey},
};

/// Consumer name in the inbox.
const CONSUMER: &str = "stats.exchanges";

/// Events a batch can hold at most (one transaction).
pub const BATCH_MAX: usize = 1000;

pub struct Exchanges {
    state: StatsState,
}

impl Exchanges {
    pub fn new(state: StatsState) -> Self {
        Self { state }
    }
}

/// One event, checked: its message id, its row and its duration.
pub struct Counted {
    id: Uuid,
    at: DateTime<Utc>,
    key: ExchangeKey,
    duration_ms: Option<i64>,
}

/// Whether an event changed the counts (new) or was a redelivery, and when it happened.
pub struct Applied {
    changed: bool,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
}

impl Batch for Exchanges {
    type Item = Counted;
    type Done = Applied;

    fn prepare(&self, delivery: &Delivery) -> Result<Counted, HandleError> {
        let _span = tracing::debug_span!("stats.exchange", message_id = %delivery.id).entered();
        check(delivery)
    }

    fn apply<'a>(
        &'a self,
        tenant: &'a str,
        items: Vec<Counted>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<Applied>>> {
        Box::pin(apply(&self.state, tenant, items))
    }

    fn settled(&self, done: &Applied) {
        metrics::applied("exchange", done.changed, done.at, done.now);
    }
}

/// An event name or outcome as the services write them: short, lower-case ASCII.
pub(crate) fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

/// A code field: empty (not every event has one) or printable ASCII.
fn is_code(s: &str) -> bool {
    s.len() <= 32 && s.bytes().all(|b| b.is_ascii_graphic())
}

fn check(delivery: &Delivery) -> Result<Counted, HandleError> {
    let event = delivery.decode::<ExchangeStat>()?;
    delivery.check_tenant(&event.tenant)?;
    if !is_word(&event.event)
        || !is_word(&event.outcome)
        || ![&event.affair_code, &event.procedure_code, &event.info_code]
            .iter()
            .all(|c| is_code(c))
    {
        return Err(reject("ExchangeStat out of range"));
    }
    let at = DateTime::<Utc>::from_timestamp_millis(event.at_ms)
        .filter(|_| event.at_ms > 0)
        .ok_or_else(|| reject("ExchangeStat without a time"))?;
    // Both times from the producer's clock; a request "after" its answer is no duration.
    let duration_ms = (event.requested_at_ms > 0 && event.requested_at_ms <= event.at_ms)
        .then(|| event.at_ms - event.requested_at_ms);
    Ok(Counted {
        id: delivery.id,
        at,
        key: ExchangeKey {
            day: chukan_core::calendar::japan_date(at),
            event: event.event,
            affair_code: event.affair_code,
            procedure_code: event.procedure_code,
            info_code: event.info_code,
            outcome: event.outcome,
        },
        duration_ms,
    })
}

/// Counts one tenant's batch in one transaction; answers, per event, whether it was new.
async fn apply(
    state: &StatsState,
    tenant: &str,
    items: Vec<Counted>,
) -> anyhow::Result<Vec<Applied>> {
    let now = state.clock.now();
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    let ids: Vec<Uuid> = items.iter().map(|c| c.id).collect();
    let mut new = chukan_mq::inbox::claim_many(&tx, crate::SCHEMA, CONSUMER, &ids).await?;
    let mut rows: BTreeMap<&ExchangeKey, ExchangeCounts> = BTreeMap::new();
    let applied = items
        .iter()
        .map(|c| {
            // An id listed twice in one batch (a redelivery overtaking its first delivery)
            // counts once.
            let changed = new.remove(&c.id);
            if changed {
                rows.entry(&c.key).or_default().add(c.duration_ms);
            }
            Applied {
                changed,
                at: c.at,
                now,
            }
        })
        .collect();
    for (key, counts) in &rows {
        store::count_exchanges(&tx, tenant, key, counts).await?;
    }
    tx.commit().await?;
    metrics::exchange_batch(items.len());
    Ok(applied)
}
