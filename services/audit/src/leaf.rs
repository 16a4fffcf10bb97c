//! The exact bytes that are hashed: leaves (情報提供等記録 as a canonical, versioned encoding),
//! tree-head signing input and the stored right edge of the tree. docs/audit.md describes
//! them for independent verifiers; changing any of them is a new version, never an edit.

use chukan_merkle::{Frontier, Hash, NodeId, perfect_nodes};
use chukan_proto::{AuditRecord, Message};

/// First byte of every leaf: the encoding's version.
pub const LEAF_VERSION: u8 = 1;

/// Leaf bytes v1: `0x01 || protobuf(AuditRecord)` as prost encodes it (fields in tag order,
/// fields at their default value omitted, no unknown fields). The record is re-encoded from
/// the decoded message, so unknown fields a producer may add never reach the leaf.
pub fn leaf_bytes(record: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.encoded_len() + 1);
    out.push(LEAF_VERSION);
    record.encode(&mut out).unwrap_or_default();
    out
}

/// The record inside leaf bytes, if they are of a known version.
pub fn decode_leaf(bytes: &[u8]) -> Option<AuditRecord> {
    match bytes.split_first() {
        Some((&LEAF_VERSION, body)) => AuditRecord::decode(body).ok(),
        _ => None,
    }
}

/// Associated data the sealed leaf is bound to: tenant and record id, so sealed bytes
/// copied to another row or tenant do not open.
pub fn leaf_aad(tenant: &str, record_id: &uuid::Uuid) -> Vec<u8> {
    let mut out = format!("audit|leaf|{tenant}|").into_bytes();
    out.extend_from_slice(record_id.as_bytes());
    out
}

/// What a signed tree head (STH) signs, v1, as UTF-8 text:
/// `chukan-audit-sth/v1|{tenant}|{size}|{root hex, lower case}|{signed_at Unix ms}`.
pub fn tree_head_message(tenant: &str, size: u64, root: &Hash, signed_at_ms: i64) -> Vec<u8> {
    format!(
        "chukan-audit-sth/v1|{tenant}|{size}|{}|{signed_at_ms}",
        hex::encode(root)
    )
    .into_bytes()
}

/// The right edge of a tree of `size` leaves, serialised as the hashes of
/// `perfect_nodes(0, size)` concatenated (largest subtree first).
pub fn frontier_bytes(size: u64, lookup: impl Fn(NodeId) -> Option<Hash>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for id in perfect_nodes(0, size)? {
        out.extend_from_slice(&lookup(id)?);
    }
    Some(out)
}

/// The edge ids and hashes of a serialised frontier, or `None` when it does not fit `size`.
pub fn frontier_edge(size: u64, bytes: &[u8]) -> Option<Vec<(NodeId, Hash)>> {
    let ids = perfect_nodes(0, size)?;
    if bytes.len() != ids.len() * 32 {
        return None;
    }
    ids.into_iter()
        .zip(bytes.chunks_exact(32))
        .map(|(id, h)| Some((id, Hash::try_from(h).ok()?)))
        .collect()
}

/// Rebuilds the frontier from its serialised edge.
pub fn frontier_from_bytes(size: u64, bytes: &[u8]) -> Option<Frontier> {
    let edge = frontier_edge(size, bytes)?;
    Frontier::from_nodes(size, |id| {
        edge.iter().find(|(e, _)| *e == id).map(|(_, h)| *h)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frontier_round_trips_through_its_bytes_at_every_size() {
        let mut f = Frontier::new();
        let mut edge: Vec<(NodeId, Hash)> = Vec::new();
        for i in 0u64..70 {
            let done = f.append(chukan_merkle::leaf_hash(&i.to_be_bytes()));
            let all: Vec<_> = edge.iter().copied().chain(done).collect();
            let bytes = frontier_bytes(f.size(), |id| {
                all.iter().find(|(e, _)| *e == id).map(|(_, h)| *h)
            })
            .unwrap();
            let rebuilt = frontier_from_bytes(f.size(), &bytes).unwrap();
            assert_eq!(rebuilt, f);
            assert_eq!(rebuilt.root(), f.root());
            edge = frontier_edge(f.size(), &bytes).unwrap();
        }
        assert!(
            frontier_from_bytes(3, &[0u8; 32]).is_none(),
            "size 3 has two edge nodes"
        );
    }

    #[test]
    fn leaf_bytes_are_versioned_and_decode_back() {
        let r = AuditRecord {
            record_id: "x".into(),
            tenant: "t".into(),
            branch_no: 3,
            ..Default::default()
        };
        let b = leaf_bytes(&r);
        assert_eq!(b[0], LEAF_VERSION);
        assert_eq!(decode_leaf(&b).unwrap(), r);
        let mut other = b.clone();
        other[0] = 2;
        assert!(decode_leaf(&other).is_none());
    }
}
