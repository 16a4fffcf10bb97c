//! Full verification of a tenant's log (監査): every sealed leaf is opened and re-hashed, the
//! tree is rebuilt from the leaves alone, and each stored leaf hash, stored node and signed
//! tree head is compared with what the rebuild says. The first record that does not match is
//! named by seq and record id (never by content).

use std::collections::{HashMap, HashSet};

use chukan_crypto::{Vault, Verifiers};
use chukan_merkle::{Frontier, Hash, NodeId};
use futures_util::TryStreamExt as _;
use serde::Serialize;
use uuid::Uuid;

use crate::{leaf, retention, store};

/// The first record that does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub seq: i64,
    pub record_id: Uuid,
    /// What differed: "leaf-does-not-open", "leaf-undecodable", "record-id-differs",
    /// "leaf-hash-differs", "node-differs", "node-missing", "seq-gap".
    pub reason: &'static str,
}

/// A tree head that failed its check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadTreeHead {
    pub size: i64,
    /// "signature-invalid", "root-differs" or "beyond-log".
    pub reason: &'static str,
}

/// The retention checkpoint the log starts from, and whether it holds.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointCheck {
    pub size: i64,
    pub cutoff: chrono::DateTime<chrono::Utc>,
    /// None when it holds; else "signature-invalid" or "edge-does-not-rebuild-root".
    pub problem: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub tenant: String,
    /// Records present (after any retention cut) and checked.
    pub records: u64,
    pub log_size: i64,
    pub tree_heads: usize,
    /// Tree heads older than the checkpoint: their signatures are checked, their roots can no
    /// longer be recomputed (their leaves were purged).
    pub tree_heads_before_checkpoint: usize,
    pub checkpoint: Option<CheckpointCheck>,
    pub first_mismatch: Option<Mismatch>,
    pub bad_tree_heads: Vec<BadTreeHead>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        let start = self.checkpoint.as_ref().map_or(0, |c| c.size);
        self.first_mismatch.is_none()
            && self.bad_tree_heads.is_empty()
            && self.checkpoint.as_ref().is_none_or(|c| c.problem.is_none())
            && i64::try_from(self.records).ok().map(|r| r + start) == Some(self.log_size)
    }
}

/// Verifies `tenant`'s whole log. Reads in one REPEATABLE READ snapshot so a concurrent
/// append cannot make a consistent log look broken. Leaves are streamed, not loaded at once.
pub async fn verify_tenant(
    client: &mut chukan_db::PooledClient,
    vault: &Vault,
    verifiers: &Verifiers,
    tenant: &str,
) -> anyhow::Result<VerifyReport> {
    let keys = vault.keys(&***client, tenant).await?;
    // As chukan_db::tenant_tx, but the snapshot level must be set before any statement.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let set_tenant = tx
        .prepare_cached("SELECT set_config('chukan.tenant', $1, true)")
        .await?;
    tx.execute(&set_tenant, &[&tenant]).await?;
    let log_size = store::log_size(&tx).await?;
    let nodes = store::all_nodes(&tx).await?;
    let heads = store::all_tree_heads(&tx).await?;
    let checkpoint = store::checkpoint(&tx).await?;

    // Start from the checkpoint's edge (or an empty tree), checked before it is trusted.
    let mut tree = Frontier::new();
    let mut checkpoint_check = None;
    let mut start = 0i64;
    if let Some(c) = &checkpoint {
        start = c.size;
        let size = u64::try_from(c.size).unwrap_or_default();
        let root = Hash::try_from(c.root.as_slice()).unwrap_or_default();
        let msg = retention::checkpoint_message(
            tenant,
            size,
            &root,
            c.cutoff.timestamp_millis(),
            c.purged_at.timestamp_millis(),
        );
        let mut problem = None;
        if verifiers.verify(&c.kid, &msg, &c.signature).is_err() {
            problem = Some("signature-invalid");
        }
        match leaf::frontier_from_bytes(size, &c.frontier) {
            Some(edge) if edge.root() == root => tree = edge,
            _ => problem = problem.or(Some("edge-does-not-rebuild-root")),
        }
        checkpoint_check = Some(CheckpointCheck {
            size: c.size,
            cutoff: c.cutoff,
            problem,
        });
    }

    // Only the roots at signed sizes are kept.
    let wanted: HashSet<i64> = heads.iter().map(|h| h.size).collect();
    let mut roots: HashMap<i64, Hash> = HashMap::new();
    if wanted.contains(&start) && start > 0 {
        roots.insert(start, tree.root());
    }
    let mut first_mismatch = None;
    let mut records = 0u64;
    {
        let leaves = store::stream_leaves(&tx).await?;
        futures_util::pin_mut!(leaves);
        while let Some(stored) = leaves.try_next().await? {
            let stored = stored?;
            let expected = start + i64::try_from(records).unwrap_or(i64::MAX);
            records += 1;
            let fail = |reason| Mismatch {
                seq: stored.seq,
                record_id: stored.record_id,
                reason,
            };
            if first_mismatch.is_some() {
                // Counted, not checked: everything after the first mismatch is suspect anyway.
                continue;
            }
            if let Some(reason) = check_leaf(&keys, tenant, expected, &stored, &mut tree, &nodes) {
                first_mismatch = Some(fail(reason));
                continue;
            }
            if wanted.contains(&(stored.seq + 1)) {
                roots.insert(stored.seq + 1, tree.root());
            }
        }
    }
    tx.commit().await?;

    let mut bad_tree_heads = Vec::new();
    let mut before_checkpoint = 0;
    for head in &heads {
        let bad = |reason| BadTreeHead {
            size: head.size,
            reason,
        };
        let root = Hash::try_from(head.root.as_slice()).unwrap_or_default();
        let msg = leaf::tree_head_message(
            tenant,
            u64::try_from(head.size).unwrap_or_default(),
            &root,
            head.signed_at.timestamp_millis(),
        );
        if verifiers.verify(&head.kid, &msg, &head.signature).is_err() {
            bad_tree_heads.push(bad("signature-invalid"));
            continue;
        }
        if head.size < start {
            before_checkpoint += 1;
            continue;
        }
        match roots.get(&head.size) {
            Some(r) if *r == root => {}
            Some(_) => bad_tree_heads.push(bad("root-differs")),
            // Not reached: either beyond the log or past the first mismatch.
            None if first_mismatch.is_none() => bad_tree_heads.push(bad("beyond-log")),
            None => {}
        }
    }
    Ok(VerifyReport {
        tenant: tenant.to_owned(),
        records,
        log_size,
        tree_heads: heads.len(),
        tree_heads_before_checkpoint: before_checkpoint,
        checkpoint: checkpoint_check,
        first_mismatch,
        bad_tree_heads,
    })
}

/// Checks one stored leaf against the rebuild and appends it; the reason if it does not match.
fn check_leaf(
    keys: &chukan_crypto::TenantKeys,
    tenant: &str,
    expected_seq: i64,
    stored: &store::StoredLeaf,
    tree: &mut Frontier,
    nodes: &HashMap<NodeId, Hash>,
) -> Option<&'static str> {
    if stored.seq != expected_seq {
        return Some("seq-gap");
    }
    let Ok(bytes) = keys.decrypt(&stored.leaf_enc, &leaf::leaf_aad(tenant, &stored.record_id))
    else {
        return Some("leaf-does-not-open");
    };
    let Some(record) = leaf::decode_leaf(&bytes) else {
        return Some("leaf-undecodable");
    };
    if Uuid::parse_str(&record.record_id).ok() != Some(stored.record_id) || record.tenant != tenant
    {
        return Some("record-id-differs");
    }
    let hash = chukan_merkle::leaf_hash(&bytes);
    if stored.leaf_hash != hash {
        return Some("leaf-hash-differs");
    }
    for (id, h) in tree.append(hash) {
        match nodes.get(&id) {
            None => return Some("node-missing"),
            Some(s) if *s != h => return Some("node-differs"),
            Some(_) => {}
        }
    }
    None
}
