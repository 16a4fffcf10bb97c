//! Consumer of `batch.progress` (F10 バッチ状況): keeps the newest report of every batch run
//! in `admin.batch_runs`, once per message id.

use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::BatchProgress;
use futures_util::future::BoxFuture;

use crate::{domain::BatchReport, store};

/// Consumer name in the inbox: a message id is applied once per consumer.
const CONSUMER: &str = "admin.batches";

/// Stores batch progress reports for `GET /v1/batches`.
pub struct BatchStatus {
    db: chukan_db::Pool,
}

impl BatchStatus {
    pub fn new(db: chukan_db::Pool) -> Self {
        Self { db }
    }
}

impl Handler for BatchStatus {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let db = self.db.clone();
        Box::pin(async move { apply(&db, delivery).await })
    }
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(db: &chukan_db::Pool, delivery: Delivery) -> Result<(), HandleError> {
    let event = delivery.decode::<BatchProgress>()?;
    // The header chose the tenant the publisher wrote for; the body must agree, or the
    // report could land behind another tenant's wall.
    delivery.check_tenant(&event.tenant)?;
    let report = BatchReport::from_event(&event)
        .map_err(|why| reject(format!("BatchProgress refused: {why}")))?;
    let mut client = db.get().await.map_err(retry("pool"))?;
    let Some(tx) = delivery.claim(&mut client, crate::SCHEMA, CONSUMER).await? else {
        return Ok(());
    };
    let written = store::upsert_batch_run(&tx, &report)
        .await
        .map_err(retry("batch run"))?;
    tx.commit().await.map_err(retry("commit"))?;
    if !written {
        tracing::debug!(run = %report.run.run_id, "older batch progress ignored");
    }
    Ok(())
}
