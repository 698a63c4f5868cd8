//! `clusternet import` and `clusternet demo-csv`, run as a user would run them.

use std::process::Command;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_clusternet");

/// Runs the CLI off the async runtime (it talks to the server on this one).
async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().expect("the binary runs"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_csv_imports_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let out = run(vec!["demo-csv".into(), csv.path().display().to_string()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(vec![
        "import".into(),
        "--server".into(),
        server.url(),
        "--batch-size".into(),
        "100".into(),
        csv.path().display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = clusternet::demo::demo_changes();
    let network = server.store().snapshot().network.clone();
    let actors = expected
        .iter()
        .filter(|c| matches!(c, clusternet::model::Change::UpsertActor(_)))
        .count();
    assert_eq!(network.actors.len(), actors);
    assert_eq!(network.clusters.len(), 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_is_reported_as_file_and_line_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    std::fs::write(
        csv.path().join("clusters.csv"),
        "id,name,region,industry\nc1,One,Jilin,C2910\n",
    )
    .unwrap();
    std::fs::write(
        csv.path().join("actors.csv"),
        "id,name,kind,clusters\na1,A1,firm,c1\na2,A2,core_firm,c1\na3,A3,firm,c1\n",
    )
    .unwrap();
    std::fs::write(
        csv.path().join("links.csv"),
        "source,target,kind,channel,weight\na1,a2,supply,physical,2\na2,a3,supply,physical,NaN\n",
    )
    .unwrap();
    let server = TestServer::start(dir.path()).await;
    let out = run(vec![
        "import".into(),
        "--server".into(),
        server.url(),
        csv.path().display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("links.csv:3: weight: NaN"), "{stderr}");
    assert_eq!(server.store().snapshot().revision, 0, "nothing was imported");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_server_refuses_is_traced_back_to_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    std::fs::write(csv.path().join("actors.csv"), "id,kind\na1,firm\na2,firm\n").unwrap();
    std::fs::write(
        csv.path().join("links.csv"),
        "source,target,kind\na1,a2,supply\na2,missing,supply\n",
    )
    .unwrap();
    let server = TestServer::start(dir.path()).await;
    let out = run(vec![
        "import".into(),
        "--server".into(),
        server.url(),
        "--batch-size".into(),
        "2".into(),
        csv.path().display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("links.csv:3: FailedPrecondition"), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
    server.stop().await;
}
