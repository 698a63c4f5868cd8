//! Compiles `proto/` with protox (a protobuf compiler in Rust), so a fresh
//! machine builds with cargo alone: no system `protoc`.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTOS: &[&str] = &[
    "clusternet/v1/network.proto",
    "clusternet/v1/analysis.proto",
    "clusternet/v1/algorithms.proto",
    "clusternet/v1/relations.proto",
    "clusternet/v1/relatedness.proto",
    "clusternet/v1/stages.proto",
    "clusternet/v1/export.proto",
    "clusternet/v1/analysis_service.proto",
    "clusternet/v1/alert.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // Served by the reflection service, so grpcurl needs no proto files.
    fs::write(out_dir.join("clusternet_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
