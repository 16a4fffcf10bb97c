//! Hashing and the right edge of the tree.

use sha2::{Digest, Sha256};

use crate::Hash;

/// A perfect (complete, aligned) subtree: the 2^`level` leaves starting at `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

impl NodeId {
    /// First leaf covered.
    pub fn start(self) -> u64 {
        self.index << self.level
    }

    /// Leaves covered.
    pub fn width(self) -> u64 {
        1 << self.level
    }
}

/// Root of the empty tree: SHA-256 of nothing (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Hash of a leaf: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The perfect subtrees that make up the leaves `[start, end)`, left to right, largest first —
/// the shape in which RFC 6962's recursion splits a range (`None` if the range is not one
/// that recursion produces, i.e. a part would not be aligned).
pub fn perfect_nodes(start: u64, end: u64) -> Option<Vec<NodeId>> {
    let mut nodes = Vec::new();
    let mut at = start;
    while at < end {
        let len = end - at;
        // Largest power of two not above what is left.
        let level = 63 - len.leading_zeros();
        if !at.is_multiple_of(1u64 << level) {
            return None;
        }
        nodes.push(NodeId {
            level,
            index: at >> level,
        });
        at += 1 << level;
    }
    Some(nodes)
}

/// The right edge of an append-only tree: the roots of its perfect subtrees, largest first.
/// Holds O(log n) hashes whatever the size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash), strictly decreasing levels.
    edge: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds the edge of a tree of `size` leaves from its stored perfect nodes
    /// (`perfect_nodes(0, size)`), e.g. after a restart.
    pub fn from_nodes(size: u64, lookup: impl Fn(NodeId) -> Option<Hash>) -> Option<Frontier> {
        let edge = perfect_nodes(0, size)?
            .into_iter()
            .map(|id| lookup(id).map(|h| (id.level, h)))
            .collect::<Option<Vec<_>>>()?;
        Some(Frontier { size, edge })
    }

    /// Leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns every node that became complete (the leaf itself first),
    /// for the caller to store.
    pub fn append(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        let mut done = vec![(NodeId { level: 0, index }, leaf)];
        let mut carry = (0u32, leaf);
        while let Some(&(level, left)) = self.edge.last() {
            if level != carry.0 {
                break;
            }
            self.edge.pop();
            let parent = node_hash(&left, &carry.1);
            let level = level + 1;
            done.push((
                NodeId {
                    level,
                    index: index >> level,
                },
                parent,
            ));
            carry = (level, parent);
        }
        self.edge.push(carry);
        self.size += 1;
        done
    }

    /// The tree head's root hash (RFC 6962 MTH) at the current size.
    pub fn root(&self) -> Hash {
        let mut parts = self.edge.iter().rev();
        let Some(&(_, last)) = parts.next() else {
            return empty_root();
        };
        parts.fold(last, |right, (_, left)| node_hash(left, &right))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// RFC 6962 §2.1 MTH written as the RFC states it: the reference the rest is checked against.
    pub fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    pub fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("record {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn the_frontier_root_is_the_rfc_root_at_every_size_and_stored_nodes_are_right() {
        let all = leaves(300);
        let mut f = Frontier::new();
        let mut stored = std::collections::HashMap::new();
        assert_eq!(f.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            for (id, h) in f.append(*leaf) {
                let (s, w) = (id.start() as usize, id.width() as usize);
                assert_eq!(h, mth(&all[s..s + w]), "node {id:?}");
                stored.insert(id, h);
            }
            assert_eq!(f.root(), mth(&all[..=i]), "size {}", i + 1);
            let rebuilt = Frontier::from_nodes(f.size(), |id| stored.get(&id).copied()).unwrap();
            assert_eq!(rebuilt, f);
        }
    }

    #[test]
    fn leaves_and_nodes_are_domain_separated() {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b);
        assert_ne!(leaf_hash(&joined), node_hash(&a, &b));
        // The RFC 6962 test vector for the empty tree.
        assert_eq!(
            empty_root()[..4],
            [0xe3, 0xb0, 0xc4, 0x42],
            "SHA-256 of the empty string"
        );
    }

    #[test]
    fn ranges_split_as_the_recursion_does() {
        assert_eq!(
            perfect_nodes(4, 7).unwrap(),
            vec![NodeId { level: 1, index: 2 }, NodeId { level: 0, index: 6 }]
        );
        assert_eq!(
            perfect_nodes(0, 8).unwrap(),
            vec![NodeId { level: 3, index: 0 }]
        );
        assert!(perfect_nodes(3, 7).is_none(), "[3,7) is no subtree range");
        assert!(perfect_nodes(5, 5).unwrap().is_empty());
    }
}
