//! Consumer of the code service's `code.linked`: keeps provision's own sealed copy of each
//! code (符号) → 団体内統合宛名番号 link, so a permit's provider-side code finds its resident.

use chrono::{DateTime, Utc};
use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::CodeLinked;
use futures_util::future::BoxFuture;

use crate::{ProvisionState, seal, store};

const CONSUMER: &str = "provision.code-links";

pub struct CodeLinks {
    state: ProvisionState,
}

impl CodeLinks {
    pub fn new(state: ProvisionState) -> Self {
        Self { state }
    }
}

impl Handler for CodeLinks {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let state = self.state.clone();
        Box::pin(async move { apply(&state, delivery).await })
    }
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(state: &ProvisionState, delivery: Delivery) -> Result<(), HandleError> {
    let event = delivery.decode::<CodeLinked>()?;
    delivery.check_tenant(&event.tenant)?;
    if chukan_core::ids::AddresseeNo::parse(&event.addressee).is_err() || event.code.is_empty() {
        return Err(reject("CodeLinked without a valid addressee or code"));
    }
    let tenant = delivery.tenant.as_str();
    let linked_at = DateTime::<Utc>::from_timestamp_millis(event.linked_at_ms)
        .unwrap_or_else(|| state.clock.now());
    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .map_err(retry("keys"))?;
    if let Some(tx) = delivery.claim(&mut client, crate::SCHEMA, CONSUMER).await? {
        store::upsert_code_link(
            &tx,
            tenant,
            &seal::code_index(&keys, &event.code),
            &seal::addressee_index(&keys, &event.addressee),
            &seal::seal_addressee(&keys, tenant, "code_links", &event.addressee),
            linked_at,
        )
        .await
        .map_err(retry("code link"))?;
        tx.commit().await.map_err(retry("commit"))?;
    }
    Ok(())
}
