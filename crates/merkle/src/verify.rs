//! Proof verification as RFC 9162 §2.1.3.2 and §2.1.4.2 state it (what a resident's or an
//! auditor's independent verifier does).

use crate::{Hash, tree::node_hash};

/// Whether `proof` shows the leaf `leaf` at `index` in the tree of `size` leaves with `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Whether `proof` shows that the tree of `new_size` leaves with `new_root` extends the tree of
/// `old_size` leaves with `old_root` (nothing of the old tree changed, only leaves appended).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *old_root && sr == *new_root && snode == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Frontier, Proof,
        tree::tests::{leaves, mth},
    };

    #[test]
    fn every_proof_verifies_and_any_changed_hash_fails() {
        let all = leaves(40);
        let mut f = Frontier::new();
        let nodes: std::collections::HashMap<_, _> =
            all.iter().flat_map(|l| f.append(*l)).collect();
        let get = |id| nodes.get(&id).copied();
        for size in 1..=all.len() as u64 {
            let root = mth(&all[..size as usize]);
            for index in 0..size {
                let proof = Proof::inclusion(index, size)
                    .unwrap()
                    .assemble(get)
                    .unwrap();
                let leaf = all[index as usize];
                assert!(verify_inclusion(index, size, &leaf, &proof, &root));
                // A changed record, a wrong position or a tampered path all fail.
                assert!(!verify_inclusion(
                    index,
                    size,
                    &crate::leaf_hash(b"x"),
                    &proof,
                    &root
                ));
                if size > 1 {
                    assert!(!verify_inclusion(
                        (index + 1) % size,
                        size,
                        &leaf,
                        &proof,
                        &root
                    ));
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(index, size, &leaf, &bad, &root));
                }
            }
            for old in 1..=size {
                let old_root = mth(&all[..old as usize]);
                let proof = Proof::consistency(old, size)
                    .unwrap()
                    .assemble(get)
                    .unwrap();
                assert!(
                    verify_consistency(old, size, &old_root, &root, &proof),
                    "{old}→{size}"
                );
                if old < size {
                    // A rewritten history (another old root) is caught.
                    let forged = mth(&leaves(old as usize + 1)[1..]);
                    assert!(!verify_consistency(old, size, &forged, &root, &proof));
                    let mut bad = proof.clone();
                    if let Some(h) = bad.last_mut() {
                        h[31] ^= 1;
                    }
                    assert!(!verify_consistency(old, size, &old_root, &root, &bad));
                }
            }
        }
    }

    #[test]
    fn random_large_trees_verify() {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let all = leaves(5_000);
        let mut f = Frontier::new();
        let mut roots = Vec::new();
        let mut nodes = std::collections::HashMap::new();
        for l in &all {
            nodes.extend(f.append(*l));
            roots.push(f.root());
        }
        let get = |id| nodes.get(&id).copied();
        for _ in 0..500 {
            let size = rng.gen_range(1..=all.len() as u64);
            let index = rng.gen_range(0..size);
            let root = roots[size as usize - 1];
            let proof = Proof::inclusion(index, size)
                .unwrap()
                .assemble(get)
                .unwrap();
            assert!(verify_inclusion(
                index,
                size,
                &all[index as usize],
                &proof,
                &root
            ));
            let old = rng.gen_range(1..=size);
            let proof = Proof::consistency(old, size)
                .unwrap()
                .assemble(get)
                .unwrap();
            assert!(verify_consistency(
                old,
                size,
                &roots[old as usize - 1],
                &root,
                &proof
            ));
        }
    }
}
