//! Consumer of `status.changed`: the history of the operating status (稼動状態), one row per
//! change admin published, kept for availability statistics. The message id is the key, so a
//! redelivery adds nothing.

use chrono::{DateTime, Utc};
use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::StatusChanged;
use futures_util::future::BoxFuture;

pub struct StatusHistory {
    db: chukan_db::Pool,
}

impl StatusHistory {
    pub fn new(db: chukan_db::Pool) -> Self {
        Self { db }
    }
}

impl Handler for StatusHistory {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let db = self.db.clone();
        Box::pin(async move {
            let event = delivery.decode::<StatusChanged>()?;
            let at = DateTime::<Utc>::from_timestamp_millis(event.at_ms)
                .ok_or_else(|| reject("StatusChanged without a time"))?;
            let client = db.get().await.map_err(retry("pool"))?;
            client
                .execute(
                    "INSERT INTO stats.status_history (message_id, at, state, reason, degraded)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[
                        &delivery.id,
                        &at,
                        &event.state,
                        &event.reason,
                        &event.degraded,
                    ],
                )
                .await
                .map_err(retry("status history"))?;
            Ok(())
        })
    }
}
