//! Which subtree hashes make up a proof, and assembling them from stored nodes.

use crate::{
    Hash,
    tree::{NodeId, node_hash, perfect_nodes},
};

/// Why a proof cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// Inclusion: the leaf is not in a tree of that size. Consistency: not 0 < old ≤ new.
    OutOfRange,
    /// A node the proof needs was not given (the store is incomplete or damaged).
    MissingNode(NodeId),
}

impl std::fmt::Display for ProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProofError::OutOfRange => f.write_str("index or tree size out of range"),
            ProofError::MissingNode(id) => {
                write!(f, "node level {} index {} is missing", id.level, id.index)
            }
        }
    }
}

impl std::error::Error for ProofError {}

/// A proof as leaf ranges `[start, end)`, in proof order; each element is the RFC 6962 hash of
/// that range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    ranges: Vec<(u64, u64)>,
}

/// Largest power of two strictly below `n` (n ≥ 2): where RFC 6962 splits a range.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

impl Proof {
    /// The audit path of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1 PATH),
    /// leaf level first.
    pub fn inclusion(index: u64, size: u64) -> Result<Proof, ProofError> {
        if index >= size {
            return Err(ProofError::OutOfRange);
        }
        let mut ranges = Vec::new();
        // Walk down from the root; the siblings come out root first, so reverse at the end.
        let (mut lo, mut hi, mut m) = (0u64, size, index);
        while hi - lo > 1 {
            let k = split(hi - lo);
            if m < k {
                ranges.push((lo + k, hi));
                hi = lo + k;
            } else {
                ranges.push((lo, lo + k));
                lo += k;
                m -= k;
            }
        }
        ranges.reverse();
        Ok(Proof { ranges })
    }

    /// The consistency proof between the tree heads of sizes `old` and `new` (RFC 6962 §2.1.2
    /// PROOF); empty when they are equal.
    pub fn consistency(old: u64, new: u64) -> Result<Proof, ProofError> {
        if old == 0 || old > new {
            return Err(ProofError::OutOfRange);
        }
        let mut ranges = Vec::new();
        let (mut lo, mut hi, mut m, mut whole) = (0u64, new, old, true);
        while m != hi - lo {
            let k = split(hi - lo);
            if m <= k {
                ranges.push((lo + k, hi));
                hi = lo + k;
            } else {
                ranges.push((lo, lo + k));
                lo += k;
                m -= k;
                whole = false;
            }
        }
        if !whole {
            ranges.push((lo, hi));
        }
        ranges.reverse();
        Ok(Proof { ranges })
    }

    /// Number of hashes in the proof.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Every stored node the proof is made of (fetch them in one query, then [`Proof::assemble`]).
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .ranges
            .iter()
            .flat_map(|&(s, e)| perfect_nodes(s, e).unwrap_or_default())
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// The proof's hashes from the stored perfect-subtree nodes.
    pub fn assemble(
        &self,
        lookup: impl Fn(NodeId) -> Option<Hash>,
    ) -> Result<Vec<Hash>, ProofError> {
        self.ranges
            .iter()
            .map(|&(s, e)| {
                // Proof ranges come from the RFC's own recursion, so they always decompose.
                let parts = perfect_nodes(s, e).ok_or(ProofError::OutOfRange)?;
                let mut hashes = parts
                    .iter()
                    .rev()
                    .map(|&id| lookup(id).ok_or(ProofError::MissingNode(id)));
                let last = hashes.next().ok_or(ProofError::OutOfRange)??;
                hashes.try_fold(last, |right, left| Ok(node_hash(&left?, &right)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::{leaves, mth};

    /// RFC 6962 PATH, recursively, as the RFC writes it.
    fn rfc_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return vec![];
        }
        let k = 1usize << (usize::BITS - 1 - (d.len() - 1).leading_zeros());
        if m < k {
            let mut p = rfc_path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = rfc_path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    /// RFC 6962 SUBPROOF.
    fn rfc_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        if m == d.len() {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = 1usize << (usize::BITS - 1 - (d.len() - 1).leading_zeros());
        if m <= k {
            let mut p = rfc_subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = rfc_subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn store(all: &[Hash]) -> std::collections::HashMap<NodeId, Hash> {
        let mut f = crate::Frontier::new();
        all.iter().flat_map(|l| f.append(*l)).collect()
    }

    #[test]
    fn proofs_match_the_rfc_recursion_for_every_index_and_size() {
        let all = leaves(70);
        let nodes = store(&all);
        for size in 1..=all.len() {
            for index in 0..size {
                let proof = Proof::inclusion(index as u64, size as u64).unwrap();
                let got = proof.assemble(|id| nodes.get(&id).copied()).unwrap();
                assert_eq!(got, rfc_path(index, &all[..size]), "PATH({index}, {size})");
            }
            for old in 1..=size {
                let proof = Proof::consistency(old as u64, size as u64).unwrap();
                let got = proof.assemble(|id| nodes.get(&id).copied()).unwrap();
                assert_eq!(
                    got,
                    rfc_subproof(old, &all[..size], true),
                    "PROOF({old}, {size})"
                );
            }
        }
    }

    #[test]
    fn bad_arguments_and_missing_nodes_are_errors() {
        assert_eq!(Proof::inclusion(5, 5), Err(ProofError::OutOfRange));
        assert_eq!(Proof::consistency(0, 5), Err(ProofError::OutOfRange));
        assert_eq!(Proof::consistency(6, 5), Err(ProofError::OutOfRange));
        let proof = Proof::inclusion(0, 8).unwrap();
        assert_eq!(proof.len(), 3);
        assert!(matches!(
            proof.assemble(|_| None),
            Err(ProofError::MissingNode(_))
        ));
        // An inclusion proof in a tree of a million leaves needs few stored nodes.
        assert!(Proof::inclusion(123_456, 1_000_000).unwrap().nodes().len() <= 40);
    }
}
