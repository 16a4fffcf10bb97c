//! Full verification of a tenant's log (監査): every sealed leaf is opened and re-hashed, the
//! tree is rebuilt from the leaves alone, and each stored leaf hash, stored node and signed
//! tree head is compared with what the rebuild says. The first record that does not match is
//! named by seq and record id (never by content).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use chukan_crypto::{TenantKeys, Vault, Verifiers};
use chukan_merkle::{Frontier, Hash, NodeId};
use futures_util::stream::FuturesOrdered;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use uuid::Uuid;

use crate::copy_binary::CopyReader;
use crate::searchable::{self, SearchableCopy, Untrusted};
use crate::{leaf, retention, store};

/// The first record that does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub seq: i64,
    pub record_id: Uuid,
    /// What differed: "leaf-does-not-open", "leaf-undecodable", "record-id-differs",
    /// "leaf-hash-differs", "column-differs", "node-differs", "node-missing", "seq-gap".
    pub reason: &'static str,
    /// For "column-differs": the searchable column whose value is not the leaf's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<&'static str>,
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

/// Stored nodes by level, dense by index (a million-record log holds two million): a look-up
/// is two array indexes, not a hash.
#[derive(Default)]
struct StoredNodes(Vec<Vec<Option<Hash>>>);

impl StoredNodes {
    fn insert(&mut self, level: usize, idx: usize, hash: Hash) {
        if self.0.len() <= level {
            self.0.resize_with(level + 1, Vec::new);
        }
        let row = &mut self.0[level];
        if row.len() <= idx {
            row.resize(idx + 1, None);
        }
        row[idx] = Some(hash);
    }

    fn get(&self, id: NodeId) -> Option<&Hash> {
        let level = usize::try_from(id.level).ok()?;
        let idx = usize::try_from(id.index).ok()?;
        self.0.get(level)?.get(idx)?.as_ref()
    }
}

/// One row as COPY delivers it: the leaf and the searchable copy beside it.
struct RawLeaf {
    seq: i64,
    record_id: Uuid,
    leaf_enc: Bytes,
    leaf_hash: Bytes,
    copy: SearchableCopy,
}

/// A leaf after the checks that need no tree: its hash, or why it does not match.
struct Checked {
    seq: i64,
    record_id: Uuid,
    hash: Result<Hash, Untrusted>,
}

/// Leaves checked per blocking task; two tasks run while the next batch streams in.
const BATCH: usize = 4096;

fn be_i64(b: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(b.try_into().ok()?))
}

fn be_i32(b: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(b.try_into().ok()?))
}

async fn load_nodes(tx: &deadpool_postgres::Transaction<'_>) -> anyhow::Result<StoredNodes> {
    let stream = tx
        .copy_out("COPY (SELECT level, idx, hash FROM audit.nodes) TO STDOUT (FORMAT binary)")
        .await?;
    futures_util::pin_mut!(stream);
    let mut reader = CopyReader::default();
    let mut nodes = StoredNodes::default();
    while let Some(chunk) = stream.try_next().await? {
        reader.push(&chunk);
        while let Some(t) = reader.next_tuple()? {
            let (Some(Some(level)), Some(Some(idx)), Some(Some(hash))) =
                (t.first(), t.get(1), t.get(2))
            else {
                anyhow::bail!("a stored node without level, index or hash");
            };
            let level = be_i32(level).and_then(|l| usize::try_from(l).ok());
            let idx = be_i64(idx).and_then(|i| usize::try_from(i).ok());
            let (Some(level), Some(idx)) = (level, idx) else {
                anyhow::bail!("a stored node with a bad level or index");
            };
            // A stored hash of the wrong length can never match: kept as all zeros.
            nodes.insert(
                level,
                idx,
                Hash::try_from(hash.as_ref()).unwrap_or_default(),
            );
        }
    }
    Ok(nodes)
}

/// Binary COPY values of the searchable columns (PostgreSQL's send formats).
mod binary {
    use bytes::Bytes;
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    pub fn text(v: Option<Bytes>) -> anyhow::Result<String> {
        let v = v.ok_or_else(|| anyhow::anyhow!("a NOT NULL text column is null"))?;
        Ok(String::from_utf8(v.to_vec())?)
    }

    pub fn int4(v: Option<Bytes>) -> anyhow::Result<i32> {
        let v = v.ok_or_else(|| anyhow::anyhow!("a NOT NULL int column is null"))?;
        Ok(i32::from_be_bytes(v.as_ref().try_into()?))
    }

    pub fn boolean(v: Option<Bytes>) -> anyhow::Result<bool> {
        match v.as_deref() {
            Some([b]) => Ok(*b != 0),
            _ => anyhow::bail!("a NOT NULL bool column is null or malformed"),
        }
    }

    /// timestamptz: microseconds since 2000-01-01 00:00 UTC.
    pub fn timestamp(v: Option<Bytes>) -> anyhow::Result<Option<DateTime<Utc>>> {
        const PG_EPOCH_US: i64 = 946_684_800_000_000;
        let Some(v) = v else { return Ok(None) };
        let us = i64::from_be_bytes(v.as_ref().try_into()?);
        DateTime::from_timestamp_micros(us.saturating_add(PG_EPOCH_US))
            .map(Some)
            .ok_or_else(|| anyhow::anyhow!("timestamp out of range"))
    }

    pub fn uuid(v: Option<Bytes>) -> anyhow::Result<Option<Uuid>> {
        v.map(|v| Uuid::from_slice(&v))
            .transpose()
            .map_err(Into::into)
    }
}

/// The columns verify reads, in the order [`raw_leaf`] takes them.
const VERIFY_COPY: &str = "COPY (SELECT r.seq, r.record_id, r.leaf_enc, r.leaf_hash, {copy} \
     FROM audit.records r) TO STDOUT (FORMAT binary)";

fn raw_leaf(t: Vec<Option<Bytes>>) -> anyhow::Result<RawLeaf> {
    let mut t = t.into_iter();
    let (Some(Some(seq)), Some(Some(id)), Some(Some(leaf_enc)), Some(Some(leaf_hash))) =
        (t.next(), t.next(), t.next(), t.next())
    else {
        anyhow::bail!("a stored record without seq, id, leaf or hash");
    };
    let mut next = || t.next().flatten();
    let copy = SearchableCopy {
        event: binary::text(next())?,
        inquirer_org: binary::text(next())?,
        provider_org: binary::text(next())?,
        affair_code: binary::text(next())?,
        procedure_code: binary::text(next())?,
        info_code: binary::text(next())?,
        serial_no: binary::text(next())?,
        branch_no: binary::int4(next())?,
        permit_id: binary::text(next())?,
        addressee_bidx: next().map(|b| b.to_vec()),
        requested_at: binary::timestamp(next())?,
        provided_at: binary::timestamp(next())?,
        non_disclosure: binary::boolean(next())?,
        outcome: binary::text(next())?,
        at: binary::timestamp(next())?
            .ok_or_else(|| anyhow::anyhow!("a stored record without its time"))?,
        target_record_id: binary::uuid(next())?,
        reason: binary::text(next())?,
        actor: binary::text(next())?,
    };
    Ok(RawLeaf {
        seq: be_i64(&seq).ok_or_else(|| anyhow::anyhow!("bad seq"))?,
        record_id: Uuid::from_slice(&id)?,
        leaf_enc,
        leaf_hash,
        copy,
    })
}

/// The checks of one leaf that need no tree (run on a blocking thread): it opens, names its
/// row, hashes to the stored hash, and every searchable column says what it says.
fn check_leaf(keys: &TenantKeys, tenant: &str, raw: &RawLeaf) -> Result<Hash, Untrusted> {
    let opened = searchable::open(
        keys,
        tenant,
        &raw.record_id,
        &raw.leaf_enc,
        &raw.leaf_hash,
        &raw.copy,
    )?;
    opened.trusted()?;
    Ok(opened.hash)
}

fn check_batch(keys: Arc<TenantKeys>, tenant: Arc<str>, batch: Vec<RawLeaf>) -> Vec<Checked> {
    batch
        .iter()
        .map(|raw| Checked {
            seq: raw.seq,
            record_id: raw.record_id,
            hash: check_leaf(&keys, &tenant, raw),
        })
        .collect()
}

/// Where the rebuild stands.
struct Rebuild {
    tree: Frontier,
    next_seq: i64,
    wanted: HashSet<i64>,
    roots: HashMap<i64, Hash>,
    first_mismatch: Option<Mismatch>,
}

impl Rebuild {
    /// Appends the next checked leaf, comparing every node it completes with the stored one.
    fn absorb(&mut self, c: Checked, nodes: &StoredNodes) {
        if self.first_mismatch.is_some() {
            // Not checked: everything after the first mismatch is suspect anyway.
            return;
        }
        let fail = |reason| Mismatch {
            seq: c.seq,
            record_id: c.record_id,
            reason,
            column: None,
        };
        if c.seq != self.next_seq {
            self.first_mismatch = Some(fail("seq-gap"));
            return;
        }
        self.next_seq += 1;
        let hash = match c.hash {
            Ok(h) => h,
            Err(why) => {
                self.first_mismatch = Some(Mismatch {
                    column: why.column(),
                    ..fail(why.reason())
                });
                return;
            }
        };
        for (id, h) in self.tree.append(hash) {
            match nodes.get(id) {
                None => self.first_mismatch = Some(fail("node-missing")),
                Some(s) if *s != h => self.first_mismatch = Some(fail("node-differs")),
                Some(_) => continue,
            }
            break;
        }
        if self.wanted.contains(&self.next_seq) {
            self.roots.insert(self.next_seq, self.tree.root());
        }
    }
}

/// Verifies `tenant`'s whole log. Reads in one REPEATABLE READ snapshot so a concurrent
/// append cannot make a consistent log look broken. Leaves and nodes arrive by binary COPY;
/// leaves are opened and hashed on blocking threads while the next batch streams in, put in
/// their places by seq, then appended to the rebuild in order.
pub async fn verify_tenant(
    client: &mut chukan_db::PooledClient,
    vault: &Vault,
    verifiers: &Verifiers,
    tenant: &str,
) -> anyhow::Result<VerifyReport> {
    let keys = vault.keys(&***client, tenant).await?;
    // One snapshot for the whole check: what is verified is the log at one instant.
    let tx = chukan_db::tenant_snapshot_tx(client, tenant, chukan_db::Snapshot::ReadOnly).await?;
    let log_size = store::log_size(&tx).await?;
    let heads = store::all_tree_heads(&tx).await?;
    let checkpoint = store::checkpoint(&tx).await?;
    let nodes = load_nodes(&tx).await?;

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
    let mut roots = HashMap::new();
    if start > 0 && wanted.contains(&start) {
        roots.insert(start, tree.root());
    }
    // Physical order, not ORDER BY: a sequential scan is what PostgreSQL sends fastest, and
    // the checked leaves are put in their places by seq before the ordered rebuild.
    let expected = usize::try_from(log_size - start).unwrap_or(0);
    let mut slots: Vec<Option<Checked>> = Vec::new();
    slots.resize_with(expected, || None);
    let mut misplaced: Option<Checked> = None;
    let mut rows = 0u64;
    let mut place = |checked: Vec<Checked>| {
        for c in checked {
            rows += 1;
            let slot = usize::try_from(c.seq - start)
                .ok()
                .and_then(|i| slots.get_mut(i))
                .filter(|s| s.is_none());
            match slot {
                Some(slot) => *slot = Some(c),
                // Outside the log, or a second row with a seq already seen.
                None => {
                    if misplaced.as_ref().is_none_or(|m| c.seq < m.seq) {
                        misplaced = Some(c);
                    }
                }
            }
        }
    };
    {
        let stream = tx
            .copy_out(&VERIFY_COPY.replace("{copy}", &searchable::select_list("r")))
            .await?;
        futures_util::pin_mut!(stream);
        let tenant_arc: Arc<str> = Arc::from(tenant);
        let mut reader = CopyReader::default();
        let mut batch = Vec::with_capacity(BATCH);
        let mut in_flight = FuturesOrdered::new();
        let spawn = |batch: Vec<RawLeaf>| {
            let (keys, tenant) = (keys.clone(), tenant_arc.clone());
            tokio::task::spawn_blocking(move || check_batch(keys, tenant, batch))
        };
        while let Some(chunk) = stream.try_next().await? {
            reader.push(&chunk);
            while let Some(t) = reader.next_tuple()? {
                batch.push(raw_leaf(t)?);
                if batch.len() == BATCH {
                    in_flight.push_back(spawn(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(BATCH),
                    )));
                    // Two batches being checked at once is all two cores can use.
                    while in_flight.len() >= 2 {
                        if let Some(done) = in_flight.next().await {
                            place(done?);
                        }
                    }
                }
            }
        }
        if !batch.is_empty() {
            in_flight.push_back(spawn(batch));
        }
        while let Some(done) = in_flight.next().await {
            place(done?);
        }
    }
    let mut rebuild = Rebuild {
        tree,
        next_seq: start,
        wanted,
        roots,
        first_mismatch: None,
    };
    for (i, slot) in slots.into_iter().enumerate() {
        let seq = start + i64::try_from(i).unwrap_or(i64::MAX);
        if let Some(m) = misplaced.as_ref().filter(|m| m.seq <= seq)
            && rebuild.first_mismatch.is_none()
        {
            rebuild.first_mismatch = Some(Mismatch {
                seq: m.seq,
                record_id: m.record_id,
                reason: "seq-gap",
                column: None,
            });
        }
        match slot {
            Some(c) => rebuild.absorb(c, &nodes),
            None if rebuild.first_mismatch.is_none() => {
                rebuild.first_mismatch = Some(Mismatch {
                    seq,
                    record_id: Uuid::nil(),
                    reason: "seq-gap",
                    column: None,
                });
            }
            None => {}
        }
    }
    if let Some(m) = misplaced
        && rebuild.first_mismatch.is_none()
    {
        rebuild.first_mismatch = Some(Mismatch {
            seq: m.seq,
            record_id: m.record_id,
            reason: "seq-gap",
            column: None,
        });
    }
    tx.commit().await?;
    let records = rows;
    let Rebuild {
        roots,
        first_mismatch,
        ..
    } = rebuild;

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
