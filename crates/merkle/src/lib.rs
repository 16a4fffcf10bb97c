//! The maths of an append-only Merkle log as RFC 6962 / RFC 9162 define it, independent of
//! where the nodes are kept. The audit service (情報提供等記録) stores every *perfect* subtree
//! hash as it becomes complete ([`Frontier::append`] says which), and answers proofs by asking
//! for the few stored nodes a proof needs ([`Proof::nodes`]) in one query, then assembling.
//!
//! - [`leaf_hash`] / [`node_hash`]: SHA-256 with the 0x00 / 0x01 domain prefixes, so a leaf can
//!   never pass for an interior node.
//! - [`Frontier`]: the right edge of the tree; appending a leaf yields the newly complete nodes
//!   and the new root in O(log n).
//! - [`Proof::inclusion`] / [`Proof::consistency`]: which subtree ranges make up an audit path
//!   or a consistency proof (RFC 6962 §2.1.1, §2.1.2), and [`Proof::assemble`] to hash them.
//! - [`verify_inclusion`] / [`verify_consistency`]: the RFC 9162 §2.1.3.2 / §2.1.4.2 checks.

mod proof;
mod tree;
mod verify;

pub use proof::{Proof, ProofError};
pub use tree::{Frontier, NodeId, empty_root, leaf_hash, node_hash, perfect_nodes};
pub use verify::{verify_consistency, verify_inclusion};

/// A SHA-256 digest.
pub type Hash = [u8; 32];
