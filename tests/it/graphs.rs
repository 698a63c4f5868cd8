//! Warm analysis graphs: once the writes pause, the server makes the graphs
//! it keeps again for the latest revision, so an analysis finds its graph
//! ready; the specs kept are remembered across a restart.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use clusternet::{
    graph::{
        warm::{GraphsConfig, WarmGraphs},
        GraphSpec,
    },
    service::{metrics::Metrics, pb::analysis_service_client::AnalysisServiceClient, server::ServerConfig},
    synthetic::SyntheticConfig,
};

use crate::common::*;

fn warming(dir: &Path, metrics: &Arc<Metrics>) -> ServerConfig {
    ServerConfig {
        metrics: metrics.clone(),
        graphs: GraphsConfig {
            kept: 4,
            warm: Some(WarmGraphs {
                quiet: Duration::from_millis(50),
                kept_in: Some(dir.join("graphs")),
            }),
        },
        ..ServerConfig::default()
    }
}

/// Graphs made so far one way (`built`, `patched`, `read` back from a file).
fn made_by(metrics: &Metrics, server: &TestServer, how: &str) -> u64 {
    let name = format!("clusternet_graphs_made_total{{how=\"{how}\"}} ");
    metrics
        .render(server.store(), None)
        .lines()
        .find_map(|line| line.strip_prefix(&name).map(|value| value.trim().parse().unwrap()))
        .unwrap_or(0)
}

/// Graphs made so far: (built, patched).
fn made(metrics: &Metrics, server: &TestServer) -> (u64, u64) {
    (made_by(metrics, server, "built"), made_by(metrics, server, "patched"))
}

/// Waits (at most 20 s) until `counted` (read from the metrics) is `want`.
async fn wait_for<T: PartialEq + std::fmt::Debug>(counted: impl Fn() -> T, want: T) {
    let started = Instant::now();
    while counted() != want {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "graphs made: {:?}, waiting for {want:?}",
            counted()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the graphs made are `want`: (built, patched).
async fn wait_made(metrics: &Metrics, server: &TestServer, want: (u64, u64)) {
    wait_for(|| made(metrics, server), want).await;
}

/// Waits until `want` graphs were read back.
async fn wait_read(metrics: &Metrics, server: &TestServer, want: u64) {
    wait_for(|| made_by(metrics, server, "read"), want).await;
}

fn pagerank(weighted: bool) -> pb::CentralityRequest {
    pb::CentralityRequest {
        measure: pb::CentralityMeasure::Pagerank as i32,
        weighted,
        ..Default::default()
    }
}

async fn ranks(server: &TestServer, weighted: bool) -> (Vec<(String, f64)>, u64) {
    let mut client = AnalysisServiceClient::new(server.channel().await);
    let mut stream = client.centrality(pagerank(weighted)).await.unwrap().into_inner();
    let (mut rows, mut revision) = (Vec::new(), None);
    while let Some(event) = stream.message().await.unwrap() {
        match event.event.unwrap() {
            pb::centrality_response::Event::Rows(batch) => {
                rows.extend(batch.rows.into_iter().map(|r| (r.node_id, r.value)));
            }
            pb::centrality_response::Event::Summary(summary) => revision = Some(summary.revision),
            pb::centrality_response::Event::Progress(_) => {}
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    (rows, revision.expect("a summary closes the stream"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphs_kept_are_made_again_once_writes_pause_so_an_analysis_finds_them_ready() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let server = TestServer::start_configured(dir.path(), Default::default(), warming(dir.path(), &metrics)).await;
    // Before any analysis the default FIRM graph is warmed, here of the
    // empty network.
    wait_made(&metrics, &server, (1, 0)).await;

    load_synthetic(
        &server,
        SyntheticConfig {
            clusters: 8,
            actors: 1_000,
            links: 6_000,
            ..SyntheticConfig::default()
        },
    )
    .await;
    // One batch (a pause inside the load could warm between two) that
    // touches every node: built again, not patched.
    wait_made(&metrics, &server, (2, 0)).await;
    let (directed, revision) = ranks(&server, false).await;
    assert_eq!(revision, server.store().snapshot().revision);
    assert_eq!(made(&metrics, &server), (2, 0), "the call found its graph warm");

    let (weighted, _) = ranks(&server, true).await;
    assert_eq!(made(&metrics, &server), (3, 0), "a new spec is built by its first call");

    // A small write: both kept graphs are patched before anyone asks.
    let actor = |i: usize| clusternet::synthetic::actor_id(i).to_string();
    server
        .client()
        .await
        .apply_changes(batch(vec![upsert_link(link(
            &actor(3),
            &actor(900),
            pb::LinkKind::Supply,
        ))]))
        .await
        .unwrap();
    wait_made(&metrics, &server, (3, 2)).await;
    let (directed_after, revision_after) = ranks(&server, false).await;
    let (weighted_after, _) = ranks(&server, true).await;
    assert_eq!(revision_after, revision + 1);
    assert_eq!(made(&metrics, &server), (3, 2), "both calls found their graphs warm");
    assert_ne!(directed_after, directed, "the write moves the ranks");
    assert_ne!(weighted_after, weighted);
    server.stop().await;

    // The specs kept are remembered, the one used last at the end, and
    // both graphs (made of the last revision) are kept beside them.
    let kept = dir.path().join("graphs");
    let remembered: Vec<GraphSpec> =
        serde_json::from_str(&std::fs::read_to_string(kept.join("specs.json")).unwrap()).unwrap();
    assert_eq!(remembered.len(), 2);
    assert!(remembered[1].weighted && !remembered[0].weighted);
    assert!(kept.join("0.graph").exists() && kept.join("1.graph").exists());

    // A restart reads both back before any call, and they answer as before.
    let metrics = Arc::new(Metrics::new());
    let server = TestServer::start_configured(dir.path(), Default::default(), warming(dir.path(), &metrics)).await;
    wait_read(&metrics, &server, 2).await;
    assert_eq!(ranks(&server, true).await.0, weighted_after);
    assert_eq!(ranks(&server, false).await.0, directed_after);
    assert_eq!(made(&metrics, &server), (0, 0), "nothing was built or patched");
    server.stop().await;

    // A write the graphs have not caught up with when the server stops: the
    // stale graphs are not kept, and the next start makes them again.
    let metrics = Arc::new(Metrics::new());
    let config = ServerConfig {
        graphs: GraphsConfig {
            kept: 4,
            warm: Some(WarmGraphs {
                quiet: Duration::from_secs(60),
                kept_in: Some(kept.clone()),
            }),
        },
        ..warming(dir.path(), &metrics)
    };
    let server = TestServer::start_configured(dir.path(), Default::default(), config).await;
    wait_read(&metrics, &server, 2).await;
    server
        .client()
        .await
        .apply_changes(batch(vec![upsert_link(link(
            &actor(4),
            &actor(901),
            pb::LinkKind::Supply,
        ))]))
        .await
        .unwrap();
    server.stop().await;
    assert!(!kept.join("0.graph").exists() && !kept.join("1.graph").exists());
    let metrics = Arc::new(Metrics::new());
    let server = TestServer::start_configured(dir.path(), Default::default(), warming(dir.path(), &metrics)).await;
    wait_made(&metrics, &server, (2, 0)).await;
    assert_eq!(made_by(&metrics, &server, "read"), 0);
    let (moved, _) = ranks(&server, false).await;
    assert_ne!(moved, directed_after, "the last write is in the graph");
    server.stop().await;
}

/// A graph file that is damaged or made of another network is never used:
/// the graph is built, and the answers are the network's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_graph_file_is_refused_and_the_graph_built() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let server = TestServer::start_configured(dir.path(), Default::default(), warming(dir.path(), &metrics)).await;
    // The empty network's graph first: built after the load instead (a slow
    // start), it would be the only one, and (2, 0) never come.
    wait_made(&metrics, &server, (1, 0)).await;
    load_synthetic(
        &server,
        SyntheticConfig {
            clusters: 4,
            actors: 500,
            links: 3_000,
            ..SyntheticConfig::default()
        },
    )
    .await;
    wait_made(&metrics, &server, (2, 0)).await;
    let (ranked, _) = ranks(&server, false).await;
    server.stop().await;
    let file = dir.path().join("graphs").join("0.graph");
    // Cut short, as a full disk would leave it (were it not renamed into
    // place only once written).
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 100]).unwrap();

    let metrics = Arc::new(Metrics::new());
    let server = TestServer::start_configured(dir.path(), Default::default(), warming(dir.path(), &metrics)).await;
    wait_made(&metrics, &server, (1, 0)).await;
    assert_eq!(made_by(&metrics, &server, "read"), 0);
    assert_eq!(ranks(&server, false).await.0, ranked);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_list_of_graphs_is_ignored_and_the_default_graph_is_warmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("graphs")).unwrap();
    std::fs::write(dir.path().join("graphs").join("specs.json"), "[{\"layer\": \"Nowhere\"").unwrap();
    let metrics = Arc::new(Metrics::new());
    let server = TestServer::start_configured(dir.path(), Default::default(), warming(dir.path(), &metrics)).await;
    wait_made(&metrics, &server, (1, 0)).await;
    ranks(&server, false).await;
    assert_eq!(made(&metrics, &server), (1, 0));
    server.stop().await;
    let remembered: Vec<GraphSpec> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("graphs").join("specs.json")).unwrap()).unwrap();
    assert_eq!(remembered.len(), 1, "the broken list was written over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_warming_nothing_is_made_before_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let config = ServerConfig {
        metrics: metrics.clone(),
        ..ServerConfig::default()
    };
    let server = TestServer::start_demo(dir.path(), config).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(made(&metrics, &server), (0, 0));
    ranks(&server, false).await;
    assert_eq!(made(&metrics, &server), (1, 0));
    server.stop().await;
    assert!(!dir.path().join("graphs").exists());
}
