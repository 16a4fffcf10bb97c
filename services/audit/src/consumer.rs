//! Consumer of audit events (`audit.record`): appends each 情報提供等記録 to its tenant's
//! Merkle log exactly once — the inbox claim, the log lock, the record, the new nodes and the
//! log's new size commit together.

use chrono::{DateTime, TimeZone, Utc};
use chukan_merkle::{Hash, NodeId};
use chukan_mq::{Delivery, HandleError, Handler};
use chukan_proto::{AuditRecord, Message};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::{AuditState, leaf, metrics, store};

/// Consumer name in the inbox: a bus message id is applied once per consumer.
const CONSUMER: &str = "audit.records";

pub struct Records {
    state: AuditState,
}

impl Records {
    pub fn new(state: AuditState) -> Self {
        Self { state }
    }
}

impl Handler for Records {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Result<(), HandleError>> {
        let state = self.state.clone();
        Box::pin(async move { apply(&state, delivery).await })
    }
}

fn retry<E>(context: &'static str) -> impl FnOnce(E) -> HandleError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| HandleError::Retry(anyhow::Error::new(e).context(context))
}

fn reject(what: impl std::fmt::Display) -> HandleError {
    HandleError::Reject(anyhow::anyhow!("{what}"))
}

fn time(ms: i64) -> Option<DateTime<Utc>> {
    (ms > 0)
        .then(|| Utc.timestamp_millis_opt(ms).single())
        .flatten()
}

#[tracing::instrument(skip_all, fields(message_id = %delivery.id, tenant = %delivery.tenant))]
async fn apply(state: &AuditState, delivery: Delivery) -> Result<(), HandleError> {
    let record = AuditRecord::decode(delivery.body.as_slice())
        .map_err(|e| reject(format!("undecodable AuditRecord: {e}")))?;
    // The header and the body's tenant come from one producer: a mismatch is a defect.
    if record.tenant != delivery.tenant || chukan_core::ids::OrgCode::parse(&record.tenant).is_err()
    {
        return Err(reject("tenant mismatch or malformed tenant"));
    }
    let record_id =
        Uuid::parse_str(&record.record_id).map_err(|_| reject("record_id is not a uuid"))?;
    if record.event.is_empty() {
        return Err(reject("AuditRecord without an event"));
    }
    let tenant = record.tenant.as_str();
    let at = time(record.at_ms).ok_or_else(|| reject("AuditRecord without at_ms"))?;

    let mut client = state
        .db
        .get()
        .await
        .map_err(|e| HandleError::Retry(anyhow::anyhow!("pool: {e}")))?;
    // Keys before the transaction: a key row created here must not roll back with it.
    let keys = state
        .vault
        .keys(&**client, tenant)
        .await
        .map_err(retry("keys"))?;
    let tx = chukan_db::tenant_tx(&mut client, tenant)
        .await
        .map_err(retry("begin"))?;
    if !chukan_mq::inbox::claim(&tx, crate::SCHEMA, CONSUMER, delivery.id)
        .await
        .map_err(retry("inbox"))?
    {
        metrics::appended("duplicate-message");
        return Ok(());
    }
    // The log lock serialises appends of this tenant, so the existence check below cannot
    // race another delivery of the same record.
    let (size, frontier, signed_size) = store::lock_log(&tx, tenant)
        .await
        .map_err(retry("lock log"))?;
    if store::record_exists(&tx, record_id)
        .await
        .map_err(retry("exists"))?
    {
        // The same event re-published under a new bus id: recorded once already.
        tx.commit().await.map_err(retry("commit"))?;
        metrics::appended("duplicate-record");
        return Ok(());
    }
    let size_u = u64::try_from(size).map_err(|_| reject("negative log size"))?;
    let edge = leaf::frontier_edge(size_u, &frontier)
        .ok_or_else(|| HandleError::Retry(anyhow::anyhow!("stored frontier does not fit")))?;
    let mut tree = leaf::frontier_from_bytes(size_u, &frontier)
        .ok_or_else(|| HandleError::Retry(anyhow::anyhow!("stored frontier does not fit")))?;

    let bytes = leaf::leaf_bytes(&record);
    let leaf_hash = chukan_merkle::leaf_hash(&bytes);
    let done = tree.append(leaf_hash);
    let lookup = |id: NodeId| -> Option<Hash> {
        done.iter()
            .chain(edge.iter())
            .find(|(e, _)| *e == id)
            .map(|(_, h)| *h)
    };
    let new_frontier = leaf::frontier_bytes(tree.size(), lookup)
        .ok_or_else(|| HandleError::Retry(anyhow::anyhow!("new frontier incomplete")))?;

    let bidx = (!record.addressee.is_empty()).then(|| keys.blind_index(&record.addressee));
    let leaf_enc = keys.encrypt(&bytes, &leaf::leaf_aad(tenant, &record_id));
    let row = store::NewRecord {
        tenant,
        seq: size,
        record_id,
        event: &record.event,
        inquirer_org: &record.inquirer_org,
        provider_org: &record.provider_org,
        affair_code: &record.affair_code,
        procedure_code: &record.procedure_code,
        info_code: &record.info_code,
        serial_no: &record.serial_no,
        branch_no: record.branch_no,
        permit_id: &record.permit_id,
        addressee_bidx: bidx.as_deref(),
        leaf_enc: &leaf_enc,
        requested_at: time(record.requested_at_ms),
        provided_at: time(record.provided_at_ms),
        non_disclosure: record.non_disclosure,
        outcome: &record.outcome,
        at,
        leaf_hash: &leaf_hash,
    };
    store::insert_record(&tx, &row)
        .await
        .map_err(retry("record"))?;
    store::insert_nodes(&tx, tenant, &done)
        .await
        .map_err(retry("nodes"))?;
    let new_size = size + 1;
    store::update_log(&tx, tenant, new_size, &new_frontier)
        .await
        .map_err(retry("log"))?;
    tx.commit().await.map_err(retry("commit"))?;
    metrics::appended("appended");
    let every = i64::try_from(state.settings.tree_head_every_records.max(1)).unwrap_or(i64::MAX);
    if new_size - signed_size >= every {
        state.heads.notify_one();
    }
    Ok(())
}
