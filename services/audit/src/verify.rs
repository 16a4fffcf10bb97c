//! Full verification of a tenant's log (監査): every sealed leaf is opened and re-hashed, the
//! tree is rebuilt from the leaves alone, and each stored leaf hash, stored node and signed
//! tree head is compared with what the rebuild says. The first record that does not match is
//! named by seq and record id (never by content).

use std::collections::HashMap;

use chukan_crypto::{Vault, Verifiers};
use chukan_merkle::{Frontier, Hash};
use serde::Serialize;
use uuid::Uuid;

use crate::{leaf, store};

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

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub tenant: String,
    pub records: u64,
    pub log_size: i64,
    pub tree_heads: usize,
    pub first_mismatch: Option<Mismatch>,
    pub bad_tree_heads: Vec<BadTreeHead>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.first_mismatch.is_none()
            && self.bad_tree_heads.is_empty()
            && i64::try_from(self.records).ok() == Some(self.log_size)
    }
}

/// Verifies `tenant`'s whole log. Reads in one REPEATABLE READ snapshot so a concurrent
/// append cannot make a consistent log look broken.
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
    let leaves = store::all_leaves(&tx).await?;
    let nodes = store::all_nodes(&tx).await?;
    let heads = store::all_tree_heads(&tx).await?;
    tx.commit().await?;

    let mut tree = Frontier::new();
    let mut roots: HashMap<i64, Hash> = HashMap::new();
    let mut first_mismatch = None;
    for (expected, stored) in leaves.iter().enumerate() {
        let fail = |reason| Mismatch {
            seq: stored.seq,
            record_id: stored.record_id,
            reason,
        };
        if stored.seq != i64::try_from(expected).unwrap_or(-1) {
            first_mismatch = Some(fail("seq-gap"));
            break;
        }
        let Ok(bytes) = keys.decrypt(&stored.leaf_enc, &leaf::leaf_aad(tenant, &stored.record_id))
        else {
            first_mismatch = Some(fail("leaf-does-not-open"));
            break;
        };
        let Some(record) = leaf::decode_leaf(&bytes) else {
            first_mismatch = Some(fail("leaf-undecodable"));
            break;
        };
        if Uuid::parse_str(&record.record_id).ok() != Some(stored.record_id)
            || record.tenant != tenant
        {
            first_mismatch = Some(fail("record-id-differs"));
            break;
        }
        let hash = chukan_merkle::leaf_hash(&bytes);
        if stored.leaf_hash != hash {
            first_mismatch = Some(fail("leaf-hash-differs"));
            break;
        }
        let mut node_fail = None;
        for (id, h) in tree.append(hash) {
            match nodes.get(&id) {
                None => node_fail = Some("node-missing"),
                Some(s) if s.as_slice() != h.as_slice() => node_fail = Some("node-differs"),
                Some(_) => {}
            }
            if node_fail.is_some() {
                break;
            }
        }
        if let Some(reason) = node_fail {
            first_mismatch = Some(fail(reason));
            break;
        }
        roots.insert(stored.seq + 1, tree.root());
    }

    let mut bad_tree_heads = Vec::new();
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
        records: leaves.len() as u64,
        log_size,
        tree_heads: heads.len(),
        first_mismatch,
        bad_tree_heads,
    })
}
