//! Consumer of `stats.replica-count` (provision announces each count it changed): keeps the
//! newest count per organisation × item × major version × dataset. Counts are absolute and
//! carry the time provision counted them, so a redelivered or overtaken event is a no-op
//! without an inbox.

use chrono::{DateTime, Utc};
use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::ReplicaCountChanged;
use futures_util::future::BoxFuture;

use crate::{StatsState, metrics, store};

pub struct ReplicaCounts {
    state: StatsState,
}

impl ReplicaCounts {
    pub fn new(state: StatsState) -> Self {
        Self { state }
    }
}

impl Handler for ReplicaCounts {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let state = self.state.clone();
        Box::pin(async move { apply(&state, delivery).await })
    }
}

/// A version or dataset code as the layout writes them: short, printable ASCII.
fn is_code(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic())
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(state: &StatsState, delivery: Delivery) -> Result<(), HandleError> {
    let event = delivery.decode::<ReplicaCountChanged>()?;
    delivery.check_tenant(&event.tenant)?;
    if chukan_core::ids::InfoCode::parse(&event.info_code).is_err()
        || !is_code(&event.major_version)
        || !is_code(&event.dataset)
        || event.count < 0
    {
        return Err(reject("ReplicaCountChanged out of range"));
    }
    let counted_at = DateTime::<Utc>::from_timestamp_millis(event.at_ms)
        .ok_or_else(|| reject("ReplicaCountChanged without a time"))?;
    let now = state.clock.now();
    let mut client = state.db.get().await.map_err(retry("pool"))?;
    let tx = chukan_db::tenant_tx(&mut client, &delivery.tenant)
        .await
        .map_err(retry("begin"))?;
    let changed = store::record_count(
        &tx,
        &delivery.tenant,
        &store::ReplicaCount {
            info_code: &event.info_code,
            major_version: &event.major_version,
            dataset: &event.dataset,
            count: event.count,
            counted_at,
        },
        now,
    )
    .await
    .map_err(retry("replica count"))?;
    tx.commit().await.map_err(retry("commit"))?;
    metrics::applied("replica-count", changed, counted_at, now);
    Ok(())
}
