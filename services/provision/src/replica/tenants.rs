//! Consumer of admin's `tenant.changed`: keeps what provision needs of each organisation
//! (kind, population, upload group, immediate processing) for quotas and slots.

use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::TenantChanged;
use futures_util::future::BoxFuture;

use crate::store::{self, Org};

const CONSUMER: &str = "provision.tenants";

pub struct TenantSettings {
    db: chukan_db::Pool,
}

impl TenantSettings {
    pub fn new(db: chukan_db::Pool) -> Self {
        Self { db }
    }
}

impl Handler for TenantSettings {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let db = self.db.clone();
        Box::pin(async move { apply(&db, delivery).await })
    }
}

/// The event as provision keeps it; `None` when it cannot be kept (a defect upstream).
pub fn org_from_event(e: &TenantChanged) -> Option<Org> {
    if e.population <= 0 || !matches!(e.kind.as_str(), "municipality" | "prefecture" | "union") {
        return None;
    }
    let group = match e.upload_group.as_str() {
        "" => None,
        g => match g.chars().next() {
            Some(c @ 'A'..='H') if g.len() == 1 => Some(c),
            _ => return None,
        },
    };
    Some(Org {
        org_code: e.org_code.clone(),
        kind: e.kind.clone(),
        population: e.population,
        upload_group: group,
        immediate: e.immediate_replica_processing,
    })
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id))]
async fn apply(db: &chukan_db::Pool, delivery: Delivery) -> Result<(), HandleError> {
    let event = delivery.decode::<TenantChanged>()?;
    let org = org_from_event(&event).ok_or_else(|| reject("TenantChanged out of range"))?;
    let mut client = db.get().await.map_err(retry("pool"))?;
    // The organisation registry is the platform's, not behind a tenant wall: a plain
    // transaction, with the same inbox claim as every consumer.
    let tx = client.transaction().await.map_err(retry("begin"))?;
    if chukan_mq::inbox::claim(&tx, crate::SCHEMA, CONSUMER, delivery.id)
        .await
        .map_err(retry("inbox"))?
    {
        store::upsert_org(&tx, &org, event.revision)
            .await
            .map_err(retry("org"))?;
        tx.commit().await.map_err(retry("commit"))?;
    }
    Ok(())
}
