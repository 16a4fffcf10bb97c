//! Consumers of the platform events the inquiry checks rely on: `flags.changed`
//! (不開示該当フラグ) and `department.changed` (部署). (`code.linked` (符号) is kept by
//! `chukan_runtime::code_linked::SealedCopy`.)
//!
//! Each effect is an upsert guarded by time or revision, so applying a message twice, or an
//! older one after a newer one, leaves the same state: no inbox is needed.

use chukan_mq::{Delivery, HandleError, Handler, reject, retry};
use chukan_proto::{DepartmentChanged, FlagsChanged};
use futures_util::future::BoxFuture;

use crate::{InquiryState, store};

/// 対象外事務手続 per department: at most this many (admin's rule).
const MAX_EXCLUDED: usize = 480;

macro_rules! handler {
    ($name:ident, $apply:ident) => {
        pub struct $name {
            state: InquiryState,
        }

        impl $name {
            pub fn new(state: InquiryState) -> Self {
                Self { state }
            }
        }

        impl Handler for $name {
            fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
                let state = self.state.clone();
                Box::pin(async move { $apply(&state, delivery).await })
            }
        }
    };
}

handler!(Flags, apply_flags);
handler!(Departments, apply_department);

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply_flags(state: &InquiryState, delivery: Delivery) -> Result<(), HandleError> {
    let event = delivery.decode::<FlagsChanged>()?;
    delivery.check_tenant(&event.tenant)?;
    if chukan_core::ids::AddresseeNo::parse(&event.addressee).is_err() {
        return Err(reject("FlagsChanged without a valid addressee"));
    }
    let tenant = event.tenant.as_str();
    let (mut client, keys) = chukan_runtime::client_with_keys(&state.db, &state.vault, tenant)
        .await
        .map_err(retry("keys"))?;
    let bidx = keys.blind_index(&event.addressee);
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .map_err(retry("begin"))?;
    store::upsert_flags(&tx, tenant, &bidx, event.non_disclosure, event.revision)
        .await
        .map_err(retry("flags"))?;
    tx.commit().await.map_err(retry("commit"))?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply_department(state: &InquiryState, delivery: Delivery) -> Result<(), HandleError> {
    let event = delivery.decode::<DepartmentChanged>()?;
    delivery.check_tenant(&event.tenant)?;
    if event.code.is_empty() || event.excluded_procedures.len() > MAX_EXCLUDED {
        return Err(reject(
            "DepartmentChanged without a code or with too many exclusions",
        ));
    }
    // The validity history, checked whole before anything is stored.
    let mut periods = Vec::with_capacity(event.periods.len());
    for p in &event.periods {
        let valid_from = p.valid_from.parse::<chrono::NaiveDate>();
        let valid_to = (!p.valid_to.is_empty())
            .then(|| p.valid_to.parse::<chrono::NaiveDate>())
            .transpose();
        let (Ok(valid_from), Ok(valid_to)) = (valid_from, valid_to) else {
            return Err(reject("DepartmentChanged with a period that is not a date"));
        };
        if p.excluded_procedures.len() > MAX_EXCLUDED {
            return Err(reject("DepartmentChanged period with too many exclusions"));
        }
        periods.push(serde_json::json!({
            "valid_from": valid_from,
            "valid_to": valid_to,
            "excluded": p.excluded_procedures,
        }));
    }
    let tenant = event.tenant.as_str();
    let mut client = state.db.get().await.map_err(retry("pool"))?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .map_err(retry("begin"))?;
    store::upsert_department(
        &tx,
        tenant,
        &event.code,
        &event.name,
        &event.excluded_procedures,
        &serde_json::Value::Array(periods),
        event.revision,
    )
    .await
    .map_err(retry("department"))?;
    tx.commit().await.map_err(retry("commit"))?;
    Ok(())
}
