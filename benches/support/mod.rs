//! What the benchmarks that drive the real server binary share.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_clusternet");

/// A size or count from the environment, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[allow(dead_code)] // not every bench starts a server
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `clusternet serve` on `port` with its store in `dir`; logs at
/// BENCH_SERVER_LOG (default warn) go to this process's stderr.
#[allow(dead_code)] // each bench includes this file; not every one starts a plain server
pub fn start(dir: &Path, port: u16) -> Child {
    start_with(dir, port, &[])
}

/// `start` with more `serve` flags.
pub fn start_with(dir: &Path, port: u16, flags: &[&str]) -> Child {
    Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--max-batch-changes",
            "100000",
            "--data-dir",
        ])
        .arg(dir)
        .args(flags)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the server starts")
}
