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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_an_alert_backlog_ends_at_a_round_boundary_and_the_next_start_catches_up() {
    use clusternet::{
        service::convert::change_to_pb,
        synthetic::{generate, SyntheticConfig},
    };
    let dir = tempfile::tempdir().unwrap();
    let start = |port: u16, metrics: u16| {
        std::process::Command::new(env!("CARGO_BIN_EXE_clusternet"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (port, metrics) = (free_port(), free_port());
    let mut child = start(port, metrics);
    let mut client = connect(port).await;
    // Many small batches, each a round of work for the alert thread.
    let changes = generate(&SyntheticConfig {
        clusters: 300,
        actors: 6_000,
        links: 20_000,
        ..SyntheticConfig::default()
    });
    for chunk in changes.chunks(200) {
        client
            .apply_changes(super::common::pb::ApplyChangesRequest {
                changes: chunk.iter().map(change_to_pb).collect(),
            })
            .await
            .unwrap();
    }
    let stopping = Instant::now();
    // SAFETY: kill(2) with a child's pid and SIGTERM.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(stopping.elapsed() < Duration::from_secs(20), "the server did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The next start evaluates what the last one left, from the log.
    let (port, metrics) = (free_port(), free_port());
    let mut child = start(port, metrics);
    connect(port).await;
    let caught_up = Instant::now();
    loop {
        let text = super::limits::http_get(format!("127.0.0.1:{metrics}").parse().unwrap(), "/metrics").await;
        if text.lines().any(|l| l == "clusternet_alert_lag_revisions 0") {
            break;
        }
        assert!(
            caught_up.elapsed() < Duration::from_secs(60),
            "the alerts never caught up:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
