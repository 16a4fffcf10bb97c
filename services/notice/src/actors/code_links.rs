//! Consumer of `code.linked` (符号): the notice service's own sealed copy of each resident's
//! code, so a notice can name the resident to the NWS without reading the code service's
//! tables. The upsert is guarded by time, so a repeat or an older link changes nothing: no
//! inbox is needed.

use chrono::{TimeZone, Utc};
use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::CodeLinked;
use futures_util::future::BoxFuture;

use crate::{NoticeService, domain::aad, store};

pub struct CodeLinks {
    state: NoticeService,
}

impl CodeLinks {
    pub fn new(state: NoticeService) -> Self {
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
async fn apply(state: &NoticeService, delivery: Delivery) -> Result<(), HandleError> {
    let event = delivery.decode::<CodeLinked>()?;
    // The header and the body's tenant come from one producer: a mismatch is a defect.
    delivery.check_tenant(&event.tenant)?;
    if chukan_core::ids::AddresseeNo::parse(&event.addressee).is_err() || event.code.is_empty() {
        return Err(reject("CodeLinked without a valid addressee or code"));
    }
    let tenant = event.tenant.as_str();
    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .map_err(retry("keys"))?;
    let bidx = keys.blind_index(&event.addressee);
    let code_enc = keys.encrypt(event.code.as_bytes(), &aad(tenant, "code", &bidx));
    let linked_at = Utc
        .timestamp_millis_opt(event.linked_at_ms)
        .single()
        .unwrap_or_else(|| state.clock.now());
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .map_err(retry("begin"))?;
    store::upsert_code_link(&tx, tenant, &bidx, &code_enc, linked_at)
        .await
        .map_err(retry("code link"))?;
    tx.commit().await.map_err(retry("commit"))?;
    Ok(())
}
