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

/// 1,000 firms and 6,000 links in 8 clusters, in one batch.
async fn load_thousand_firms(server: &TestServer) {
    let config = SyntheticConfig {
        clusters: 8,
        actors: 1_000,
        links: 6_000,
        ..SyntheticConfig::default()
    };
    load_synthetic(server, config).await;
}

/// Graphs made so far one way (`built`, `patched`, `read` back from a file).
fn made_by(metrics: &Metrics, server: &TestServer, how: &str) -> u64 {
    counted(metrics, server, "graphs_made_total", how)
}

/// A counter of the server's metrics, by how.
fn counted(metrics: &Metrics, server: &TestServer, counter: &str, how: &str) -> u64 {
    let name = format!("clusternet_{counter}{{how=\"{how}\"}} ");
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

    load_thousand_firms(&server).await;
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
    // Solved again here, where the ranks before the stop were updated from
    // the ones kept: equal within what two runs at the tolerance may differ.
    assert_close(&ranks(&server, true).await.0, &weighted_after);
    assert_close(&ranks(&server, false).await.0, &directed_after);
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

/// The same nodes, ranked within 4·tolerance/(1 − d) in L1 (the default
/// tolerance 1e-9, damping 0.85): two runs each within half of it of the
/// exact ranks.
fn assert_close(a: &[(String, f64)], b: &[(String, f64)]) {
    assert_eq!(a.len(), b.len());
    let off: f64 = a
        .iter()
        .zip(b)
        .map(|((i, x), (j, y))| {
            assert_eq!(i, j);
            (x - y).abs()
        })
        .sum();
    assert!(off <= 4.0 * 1e-9 / 0.15, "the ranks differ by {off:e} in L1");
}

/// PageRanks found so far one way (`solved`, `updated`).
fn pageranks(metrics: &Metrics, server: &TestServer, how: &str) -> u64 {
    counted(metrics, server, "pageranks_total", how)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_small_writes_pagerank_is_updated_from_the_kept_ranks_and_stays_as_exact_as_a_full_run() {
    use clusternet::analysis::{
        algo::centrality::{pagerank as solve, PageRankConfig},
        Control,
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let server = TestServer::start_configured(dir.path(), Default::default(), warming(dir.path(), &metrics)).await;
    load_thousand_firms(&server).await;
    ranks(&server, false).await;
    assert_eq!(pageranks(&metrics, &server, "solved"), 1);
    let actor = |i: usize| clusternet::synthetic::actor_id(i).to_string();
    let mut writer = server.client().await;
    for round in 0..6usize {
        // Twenty new links and one gone: a write to the ranks of a few
        // nodes and, through them, of everything downstream.
        let mut changes: Vec<pb::Change> = (0..20)
            .map(|i| {
                let (u, v) = ((round * 131 + i * 37) % 1_000, (round * 71 + i * 53 + 1) % 1_000);
                upsert_link(link(&actor(u), &actor(v), pb::LinkKind::Supply))
            })
            .collect();
        let gone = all_links(&mut writer, Default::default()).await[round * 10].clone();
        changes.push(delete_link(
            &gone.source,
            &gone.target,
            pb::LinkKind::try_from(gone.kind).unwrap(),
        ));
        writer.apply_changes(batch(changes)).await.unwrap();
        let (served, revision) = ranks(&server, false).await;
        assert_eq!(revision, server.store().snapshot().revision);
        assert_eq!(
            pageranks(&metrics, &server, "updated"),
            round as u64 + 1,
            "updated, not solved again"
        );

        // The exact ranks of the graph now, and what a full run at the
        // served tolerance may be off by: the update must be within it.
        let spec = GraphSpec {
            layer: clusternet::graph::Layer::Firm,
            filter: Default::default(),
            undirected: false,
            weighted: false,
        };
        let graph = spec.build(&server.store().snapshot().network);
        let config = PageRankConfig {
            weighted: false,
            ..PageRankConfig::default()
        };
        let exact = PageRankConfig {
            tolerance: 1e-15,
            max_iterations: 100_000,
            ..config.clone()
        };
        let bound = 2.0 * config.tolerance / (1.0 - config.damping);
        let truth = solve(&graph, &exact, &Control::none()).unwrap().values;
        let full = solve(&graph, &config, &Control::none()).unwrap().values;
        let off = |values: &dyn Fn(usize) -> f64| {
            (0..graph.node_count())
                .map(|v| (values(v) - truth[v]).abs())
                .sum::<f64>()
        };
        let by_id: std::collections::HashMap<&str, f64> = served.iter().map(|(id, x)| (id.as_str(), *x)).collect();
        assert_eq!(by_id.len(), graph.node_count());
        let served_off = off(&|v| by_id[&*graph.ids[v]]);
        assert!(off(&|v| full[v]) <= bound);
        assert!(
            served_off <= bound,
            "round {round}: the update is off by {served_off:e} (bound {bound:e})"
        );
    }
    server.stop().await;
}
