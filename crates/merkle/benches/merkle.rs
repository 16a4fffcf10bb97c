//! `cargo bench -p chukan-merkle`: the log maths alone (no database) — appending with every
//! complete node kept, building and verifying inclusion proofs, and recomputing a root from
//! scratch (what `verify` does per record). Prints one line per measure.

use std::{collections::HashMap, hint::black_box, time::Instant};

use chukan_merkle::{Frontier, Proof, leaf_hash, verify_inclusion};

const N: u64 = 1_000_000;

fn main() {
    let records: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("{{\"record\":{i},\"event\":\"provision.made\"}}").into_bytes())
        .collect();

    let started = Instant::now();
    let mut frontier = Frontier::new();
    let mut nodes = HashMap::with_capacity(2 * N as usize);
    for r in &records {
        nodes.extend(frontier.append(leaf_hash(r)));
    }
    let root = frontier.root();
    let append = started.elapsed();
    println!(
        "append (leaf hash + frontier + every complete node kept): {N} records in {append:?} = {:.0} records/s",
        N as f64 / append.as_secs_f64()
    );

    let proofs = 10_000u64;
    let started = Instant::now();
    let mut ok = 0;
    for i in 0..proofs {
        let index = (i * 7_919) % N;
        let proof = Proof::inclusion(index, N)
            .and_then(|p| p.assemble(|id| nodes.get(&id).copied()))
            .unwrap_or_default();
        ok += usize::from(verify_inclusion(
            index,
            N,
            &leaf_hash(&records[index as usize]),
            &proof,
            &root,
        ));
    }
    let each = started.elapsed() / proofs as u32;
    println!("inclusion proof built + verified in a tree of {N}: {each:?} each ({ok} verified)");

    let started = Instant::now();
    let mut again = Frontier::new();
    for r in &records {
        black_box(again.append(leaf_hash(r)));
    }
    let verify = started.elapsed();
    assert_eq!(again.root(), root);
    println!(
        "full recomputation of the root: {N} records in {verify:?} = {:.0} records/s",
        N as f64 / verify.as_secs_f64()
    );
}
