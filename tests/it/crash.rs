//! Crashes lose nothing acknowledged, leave nothing in part, and do not make
//! the data directory balloon (the full hundred cycles are `cargo bench
//! --bench storage -- crash`); a failing final checkpoint does not keep the
//! process from exiting.

use std::{
    io::Read,
    process::Stdio,
    time::{Duration, Instant},
};

use super::crash_cycle::{batch, connect, free_port, run, server};

#[test]
fn kill_9_during_writes_loses_nothing_acknowledged_and_keeps_the_directory_bounded() {
    let report = run(8, 3, false);
    assert!(report.acknowledged > 0, "some batches were acknowledged");
    assert!(
        report.crashed_dir_bytes <= 2 * report.uninterrupted_dir_bytes,
        "after 8 kills the data directory holds {} bytes; uninterrupted, {}",
        report.crashed_dir_bytes,
        report.uninterrupted_dir_bytes
    );
}

#[tokio::test]
async fn a_failing_final_checkpoint_is_reported_and_the_server_still_exits_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = server(dir.path(), port)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = connect(port).await;
    for b in 0..5 {
        client.apply_changes(batch(0, b)).await.expect("a write");
    }
    // Where the checkpoint goes is now a file: writing it must fail.
    let checkpoints = dir.path().join("checkpoints");
    std::fs::remove_dir_all(&checkpoints).unwrap();
    std::fs::write(&checkpoints, b"in the way").unwrap();

    let stopping = Instant::now();
    // SAFETY: kill(2) with a child's pid and SIGTERM.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(stopping.elapsed() < Duration::from_secs(20), "the server did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("final checkpoint failed"), "log:\n{log}");

    // The log holds every batch: the next start replays it.
    std::fs::remove_file(&checkpoints).unwrap();
    let port = free_port();
    let mut child = server(dir.path(), port).stderr(Stdio::null()).spawn().unwrap();
    let mut client = connect(port).await;
    let revision = client
        .list_actors(super::common::pb::ListActorsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert_eq!(revision, 5);
    child.kill().unwrap();
    child.wait().unwrap();
}
