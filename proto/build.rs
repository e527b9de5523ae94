//! Compiles every `.proto` under `proto/r1/v1` with protox (no system `protoc` needed).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from("proto");
    let dir = root.join("r1/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    // Weight chunks as `Bytes`: the publisher hands out slices of the published buffer and
    // the client reads the received buffer, with no copy per chunk on either side.
    tonic_prost_build::configure().bytes(".r1.v1.WeightChunk.data").compile_fds(fds)?;
    Ok(())
}
