//! The Python example client (examples/python), generated from proto/, run
//! against a demo server as a user would: it lists the clusters, streams a
//! PageRank and follows the alerts.

use std::process::Command;

use clusternet::service::server::ServerConfig;

use crate::{
    alerts::{alerts_client, apply, settle},
    common::*,
};

fn python() -> String {
    std::env::var("CLUSTERNET_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_lists_streams_and_follows_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    // An investment from Changchun's core firm into a Kunshan firm: a
    // cross-investment alert for the client to find.
    let mut alerts = alerts_client(&server).await;
    // The demo's round first: a round that also took in the demo's load
    // would see the investment's clusters as new, and a new cluster's ties
    // are its baseline, not an alert.
    settle(&mut alerts, server.store().snapshot().revision).await;
    let revision = apply(
        &server,
        vec![upsert_link(link("faw", "ks-firm-10", pb::LinkKind::Investment))],
    )
    .await;
    settle(&mut alerts, revision).await;
    let address = server.url().trim_start_matches("http://").to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python/client.py");
    // The follow's deadline covers the call's log read too: two seconds ran
    // out once under the whole suite on two cores.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .args([script, "--server", &address, "--follow-seconds", "5"])
            .output()
    })
    .await
    .unwrap()
    .expect("python runs (set CLUSTERNET_PYTHON to one with grpcio and grpcio-tools)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("cluster ")).count(),
        4,
        "{stdout}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("pagerank ")).count(),
        5,
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("pagerank 1 kunshan-gov")),
        "{stdout}"
    );
    assert!(lines.iter().any(|l| l.starts_with("summary revision")), "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("alert ") && l.contains("CROSS_INVESTMENT_ADDED")),
        "{stdout}"
    );
    server.stop().await;
}
