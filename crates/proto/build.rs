//! Compiles proto/chukan/v1/*.proto with protox (pure Rust), so no protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut files = Vec::new();
    // The directory too: a new .proto file changes its mtime, and must rebuild the crate.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("chukan/v1").display()
    );
    for entry in std::fs::read_dir(root.join("chukan/v1"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    files.sort();
    let descriptors = protox::compile(&files, [&root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
