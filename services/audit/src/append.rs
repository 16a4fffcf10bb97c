//! Appending records to a tenant's log, many per transaction: the inbox claims, the log lock,
//! the rows, the newly complete nodes and the log's new size commit together, so a batch is
//! recorded whole or not at all. One transaction per batch (instead of per record) is what
//! lets the log keep up with the bus: the lock, the commit and the round trips are shared.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use chukan_merkle::{Hash, NodeId};
use chukan_proto::AuditRecord;
use uuid::Uuid;

use crate::{AuditState, leaf, metrics, searchable::SearchableCopy, store};

/// Consumer name in the inbox: a bus message id is applied once per consumer.
pub const CONSUMER: &str = "audit.records";

/// One record to append.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The bus message id it arrived under (None for records the service makes itself).
    pub message_id: Option<Uuid>,
    pub record_id: Uuid,
    pub at: DateTime<Utc>,
    pub record: AuditRecord,
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Appended {
        seq: i64,
    },
    /// The bus message was applied before (a redelivery).
    DuplicateMessage,
    /// The same record arrived before under another bus id (or twice in this batch).
    DuplicateRecord,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Appended { .. } => "appended",
            Outcome::DuplicateMessage => "duplicate-message",
            Outcome::DuplicateRecord => "duplicate-record",
        }
    }
}

pub fn time(ms: i64) -> Option<DateTime<Utc>> {
    (ms > 0)
        .then(|| Utc.timestamp_millis_opt(ms).single())
        .flatten()
}

/// Checks what the log relies on; the reason when the record can never be appended.
pub fn validate(
    record: AuditRecord,
    message_id: Option<Uuid>,
    tenant: &str,
) -> Result<Incoming, &'static str> {
    // The header and the body's tenant come from one producer: a mismatch is a defect.
    if record.tenant != tenant || chukan_core::ids::OrgCode::parse(&record.tenant).is_err() {
        return Err("tenant mismatch or malformed tenant");
    }
    let record_id = Uuid::parse_str(&record.record_id).map_err(|_| "record_id is not a uuid")?;
    if record.event.is_empty() {
        return Err("AuditRecord without an event");
    }
    if !record.target_record_id.is_empty() && Uuid::parse_str(&record.target_record_id).is_err() {
        return Err("target_record_id is not a uuid");
    }
    let at = time(record.at_ms).ok_or("AuditRecord without at_ms")?;
    Ok(Incoming {
        message_id,
        record_id,
        at,
        record,
    })
}

/// Appends `batch` (all of one tenant) in one transaction. Outcomes are in batch order.
pub async fn append(
    state: &AuditState,
    tenant: &str,
    batch: &[Incoming],
) -> anyhow::Result<Vec<Outcome>> {
    let (mut client, keys) =
        chukan_runtime::client_with_keys(&state.db, &state.vault, tenant).await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;

    let mut outcomes = vec![Outcome::DuplicateMessage; batch.len()];
    let ids: Vec<Uuid> = batch.iter().filter_map(|i| i.message_id).collect();
    let mut claimed = store::claim_messages(&tx, CONSUMER, &ids).await?;
    // The log lock serialises appends of this tenant, so the existence check below cannot
    // race another batch holding the same record.
    let (size, frontier, signed_size) = store::lock_log(&tx, tenant).await?;
    let record_ids: Vec<Uuid> = batch.iter().map(|i| i.record_id).collect();
    let mut known: HashSet<Uuid> = store::existing_records(&tx, &record_ids)
        .await?
        .into_iter()
        .collect();

    let size_u = u64::try_from(size)?;
    let edge = leaf::frontier_edge(size_u, &frontier)
        .ok_or_else(|| anyhow::anyhow!("stored frontier does not fit its size"))?;
    let mut tree = leaf::frontier_from_bytes(size_u, &frontier)
        .ok_or_else(|| anyhow::anyhow!("stored frontier does not fit its size"))?;
    let mut complete: HashMap<NodeId, Hash> = edge.into_iter().collect();
    let mut new_nodes: Vec<(NodeId, Hash)> = Vec::new();
    let mut rows = store::RecordRows::with_capacity(batch.len());
    for (i, item) in batch.iter().enumerate() {
        // `remove` makes a message id count once even if it appears twice in the batch.
        if let Some(id) = item.message_id
            && !claimed.remove(&id)
        {
            continue;
        }
        if !known.insert(item.record_id) {
            outcomes[i] = Outcome::DuplicateRecord;
            continue;
        }
        let seq = size + i64::try_from(rows.len())?;
        let bytes = leaf::leaf_bytes(&item.record);
        let leaf_hash = chukan_merkle::leaf_hash(&bytes);
        for (id, hash) in tree.append(leaf_hash) {
            complete.insert(id, hash);
            new_nodes.push((id, hash));
        }
        let copy = SearchableCopy::of(&keys, &item.record)
            .ok_or_else(|| anyhow::anyhow!("record without a time"))?;
        rows.push(store::RecordRow {
            seq,
            record_id: item.record_id,
            leaf_enc: keys.encrypt(&bytes, &leaf::leaf_aad(tenant, &item.record_id)),
            leaf_hash: leaf_hash.to_vec(),
            copy,
        });
        outcomes[i] = Outcome::Appended { seq };
    }

    if rows.is_empty() {
        tx.commit().await?;
        return Ok(outcomes);
    }
    let new_size = size + i64::try_from(rows.len())?;
    let new_frontier = leaf::frontier_bytes(tree.size(), |id| complete.get(&id).copied())
        .ok_or_else(|| anyhow::anyhow!("new frontier incomplete"))?;
    store::insert_records(&tx, tenant, &rows).await?;
    store::insert_nodes(&tx, tenant, &new_nodes).await?;
    store::update_log(&tx, tenant, new_size, &new_frontier).await?;
    tx.commit().await?;
    metrics::records_appended();

    let every = i64::try_from(state.settings.tree_head_every_records).unwrap_or(i64::MAX);
    if new_size - signed_size >= every {
        state.heads.notify_one();
    }
    Ok(outcomes)
}
