//! Consumer of `stats.exchange` (業務統計): each exchange event of every service, counted once
//! (inbox) into its organisation's Japan day — the event's own day, however late it arrives —
//! by event × affair × procedure × item × outcome, with its duration.

use chrono::{DateTime, Utc};
use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::ExchangeStat;
use futures_util::future::BoxFuture;

use crate::{StatsState, durations, metrics, store};

/// Consumer name in the inbox.
const CONSUMER: &str = "stats.exchanges";

pub struct Exchanges {
    state: StatsState,
}

impl Exchanges {
    pub fn new(state: StatsState) -> Self {
        Self { state }
    }
}

impl Handler for Exchanges {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let state = self.state.clone();
        Box::pin(async move { apply(&state, delivery).await })
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

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(state: &StatsState, delivery: Delivery) -> Result<(), HandleError> {
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
    let now = state.clock.now();
    let mut client = state.db.get().await.map_err(retry("pool"))?;
    let Some(tx) = delivery.claim(&mut client, crate::SCHEMA, CONSUMER).await? else {
        metrics::applied("exchange", false, at, now);
        return Ok(());
    };
    store::count_exchange(
        &tx,
        &delivery.tenant,
        &store::Exchange {
            day: chukan_core::calendar::japan_date(at),
            event: &event.event,
            affair_code: &event.affair_code,
            procedure_code: &event.procedure_code,
            info_code: &event.info_code,
            outcome: &event.outcome,
            duration_ms,
            buckets: durations::one(duration_ms),
        },
    )
    .await
    .map_err(retry("exchange"))?;
    tx.commit().await.map_err(retry("commit"))?;
    metrics::applied("exchange", true, at, now);
    Ok(())
}
