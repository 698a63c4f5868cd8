//! ExportNetwork over a real socket and `clusternet export` as a user runs
//! it: every part of the network arrives with the summary last, the files
//! load in NetworkX and igraph with the server's own figures, and the CSV
//! directory survives a round trip through an empty server.

use std::{collections::BTreeMap, process::Command};

use clusternet::service::{pb::analysis_service_client::AnalysisServiceClient, server::ServerConfig};
use tonic::{transport::Channel, Code};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_clusternet");

type Analysis = AnalysisServiceClient<Channel>;

async fn analysis(server: &TestServer) -> Analysis {
    AnalysisServiceClient::new(server.channel().await)
}

/// Runs the CLI off the async runtime (it talks to the server on this one).
async fn run(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().expect("the binary runs"))
        .await
        .unwrap()
}

fn assert_ran(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The stream's events in order.
async fn export(client: &mut Analysis, request: pb::ExportNetworkRequest) -> Vec<pb::export_network_response::Event> {
    let mut stream = client.export_network(request).await.unwrap().into_inner();
    let mut events = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        events.push(message.event.unwrap());
    }
    events
}

async fn pagerank(client: &mut Analysis) -> BTreeMap<String, f64> {
    let request = pb::CentralityRequest {
        layer: pb::Layer::Firm as i32,
        measure: pb::CentralityMeasure::Pagerank as i32,
        weighted: true,
        ..Default::default()
    };
    let mut stream = client.centrality(request).await.unwrap().into_inner();
    let mut scores = BTreeMap::new();
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(pb::centrality_response::Event::Rows(rows)) = message.event {
            scores.extend(rows.rows.into_iter().map(|r| (r.node_id, r.value)));
        }
    }
    scores
}

async fn stages(client: &mut Analysis) -> BTreeMap<String, String> {
    let mut stream = client
        .assess_stage(pb::AssessStageRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut stages = BTreeMap::new();
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(pb::assess_stage_response::Event::Rows(rows)) = message.event {
            for row in rows.rows {
                let stage = row.stage().as_str_name().trim_start_matches("STAGE_").to_string();
                stages.insert(row.cluster_id, stage);
            }
        }
    }
    stages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firm_layer_arrives_whole_with_results_for_every_actor_and_the_summary_last() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let mut client = analysis(&server).await;
    let mut network = server.client().await;
    let actors = all_actors(&mut network, pb::ListActorsRequest::default()).await;
    let links = all_links(&mut network, pb::ListLinksRequest::default()).await;
    let events = export(
        &mut client,
        pb::ExportNetworkRequest {
            results: vec![
                pb::NodeResult::Pagerank as i32,
                pb::NodeResult::Community as i32,
                pb::NodeResult::Stage as i32,
            ],
            ..Default::default()
        },
    )
    .await;
    use pb::export_network_response::Event;
    let (mut clusters, mut got_actors, mut got_links, mut results) = (0, Vec::new(), 0, Vec::new());
    for event in &events[..events.len() - 1] {
        match event {
            Event::Clusters(b) => clusters += b.clusters.len(),
            Event::Actors(b) => got_actors.extend(b.actors.iter().map(|a| a.id.clone())),
            Event::Links(b) => got_links += b.links.len(),
            Event::Results(b) => results.extend(b.rows.iter().cloned()),
            Event::Summary(_) => panic!("a summary before the end"),
            _ => {}
        }
    }
    let Some(Event::Summary(summary)) = events.last() else {
        panic!("the stream ends with its summary")
    };
    assert_eq!(clusters, 4);
    assert_eq!(got_actors, actors.iter().map(|a| a.id.clone()).collect::<Vec<_>>());
    assert_eq!(got_links, links.len());
    assert_eq!(
        (summary.nodes, summary.edges),
        (actors.len() as u64, links.len() as u64)
    );
    assert_eq!(results.len(), actors.len());
    let pagerank = pagerank(&mut client).await;
    let stages = stages(&mut client).await;
    for row in &results {
        assert_eq!(row.pagerank, Some(pagerank[&row.node_id]), "{}", row.node_id);
        assert!(row.community.is_some());
        let actor = actors.iter().find(|a| a.id == row.node_id).unwrap();
        match actor.cluster_ids.first() {
            Some(c) => assert_eq!(
                row.stage().as_str_name().trim_start_matches("STAGE_"),
                stages[c],
                "{}",
                row.node_id
            ),
            None => assert_eq!(row.stage, None),
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_layer_is_the_inter_cluster_network_and_a_filter_narrows_the_firm_layer() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let mut client = analysis(&server).await;
    let events = export(
        &mut client,
        pb::ExportNetworkRequest {
            layer: pb::Layer::Cluster as i32,
            ..Default::default()
        },
    )
    .await;
    use pb::export_network_response::Event;
    let edges: Vec<pb::InterClusterEdge> = events
        .iter()
        .filter_map(|e| match e {
            Event::Edges(b) => Some(b.edges.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut stream = client
        .inter_cluster_network(pb::InterClusterNetworkRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut expected = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(pb::inter_cluster_network_response::Event::Edges(b)) = message.event {
            expected.extend(b.edges);
        }
    }
    assert_eq!(edges, expected);

    // One cluster's firms: every actor is in it, and every link joins two of them.
    let events = export(
        &mut client,
        pb::ExportNetworkRequest {
            filter: Some(pb::NetworkFilter {
                cluster_ids: vec!["kunshan-electronics".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let actors: Vec<pb::Actor> = events
        .iter()
        .filter_map(|e| match e {
            Event::Actors(b) => Some(b.actors.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(!actors.is_empty());
    assert!(actors
        .iter()
        .all(|a| a.cluster_ids.iter().any(|c| c == "kunshan-electronics")));
    let ids: std::collections::HashSet<&str> = actors.iter().map(|a| a.id.as_str()).collect();
    for event in &events {
        if let Event::Links(b) = event {
            assert!(b
                .links
                .iter()
                .all(|l| ids.contains(l.source.as_str()) && ids.contains(l.target.as_str())));
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_export_requests_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let mut client = analysis(&server).await;
    for (request, field) in [
        (
            pb::ExportNetworkRequest {
                results: vec![pb::NodeResult::Pagerank as i32, 9],
                ..Default::default()
            },
            "results[1]",
        ),
        (
            pb::ExportNetworkRequest {
                results: vec![pb::NodeResult::Unspecified as i32],
                ..Default::default()
            },
            "results[0]",
        ),
        (
            pb::ExportNetworkRequest {
                layer: 7,
                ..Default::default()
            },
            "layer",
        ),
        (
            pb::ExportNetworkRequest {
                filter: Some(pb::NetworkFilter {
                    as_of: "2020-13-01".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "filter.as_of",
        ),
    ] {
        assert_status(client.export_network(request).await, Code::InvalidArgument, field);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_export_imported_into_an_empty_server_exports_the_same_files() {
    let demo_dir = tempfile::tempdir().unwrap();
    let empty_dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let demo = TestServer::start_demo(demo_dir.path(), ServerConfig::default()).await;
    // A profile too, so that every file of the format holds rows.
    let mut network = demo.client().await;
    network
        .apply_changes(batch(vec![pb::Change {
            change: Some(pb::change::Change::UpsertActorProfile(pb::ActorProfile {
                actor_id: "ks-firm-10".into(),
                until: "2016-01-01".into(),
                industry: "C2620".into(),
                segments: vec![pb::Segment::Manufacturing as i32],
                employees: Some(1200),
                revenue: Some(3.5e8),
            })),
        }]))
        .await
        .unwrap();
    let empty = TestServer::start(empty_dir.path()).await;
    let first = files.path().join("first");
    let second = files.path().join("second");
    let (first_s, second_s) = (first.display().to_string(), second.display().to_string());
    assert_ran(&run(&["export", "--server", &demo.url(), "--format", "csv", "--out", &first_s]).await);
    assert_ran(&run(&["import", "--server", &empty.url(), &first_s]).await);
    assert_ran(
        &run(&[
            "export",
            "--server",
            &empty.url(),
            "--format",
            "csv",
            "--out",
            &second_s,
        ])
        .await,
    );
    for file in clusternet::import::FILES {
        let a = std::fs::read_to_string(first.join(file)).unwrap();
        let b = std::fs::read_to_string(second.join(file)).unwrap();
        assert!(a.lines().count() > 1, "{file} holds rows");
        assert_eq!(a, b, "{file} differs after the round trip");
    }
    demo.stop().await;
    empty.stop().await;
}

/// The Python that has NetworkX and igraph: CLUSTERNET_PYTHON (as `.ci/run`
/// sets it), else `python3`.
fn python() -> String {
    std::env::var("CLUSTERNET_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_load_in_networkx_and_igraph_with_the_servers_figures() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let url = server.url();
    for (format, layer, file) in [
        ("graphml", "firm", "firm.graphml"),
        ("gexf", "firm", "firm.gexf"),
        ("json", "firm", "firm.json"),
        ("graphml", "cluster", "cluster.graphml"),
    ] {
        let out = files.path().join(file).display().to_string();
        let with = "pagerank,community,stage";
        let args = [
            "export", "--server", &url, "--format", format, "--layer", layer, "--out", &out, "--with", with,
        ];
        assert_ran(&run(&args).await);
    }
    // What the server says, by its own calls.
    let mut client = analysis(&server).await;
    let mut network = server.client().await;
    let actors = all_actors(&mut network, pb::ListActorsRequest::default()).await;
    let links = all_links(&mut network, pb::ListLinksRequest::default()).await;
    let pagerank = pagerank(&mut client).await;
    let stages = stages(&mut client).await;
    let sites: BTreeMap<String, f64> = server
        .store()
        .snapshot()
        .network
        .clusters
        .values()
        .flat_map(|c| c.sites.iter().map(|s| (s.id.to_string(), s.lat)))
        .collect();
    let mut firm_actors = serde_json::Map::new();
    for actor in &actors {
        let mut a = serde_json::json!({
            "kind": actor.kind().as_str_name().trim_start_matches("ACTOR_KIND_"),
            "pagerank": pagerank[&actor.id],
            "stage": actor.cluster_ids.first().map(|c| stages[c].clone()),
        });
        if let Some(lat) = sites.get(&actor.site_id) {
            a["lat"] = serde_json::json!(lat);
        }
        firm_actors.insert(actor.id.clone(), a);
    }
    let mut stream = client
        .inter_cluster_network(pb::InterClusterNetworkRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (mut nodes, mut weights) = (0, serde_json::Map::new());
    while let Some(message) = stream.message().await.unwrap() {
        match message.event {
            Some(pb::inter_cluster_network_response::Event::Nodes(b)) => nodes += b.nodes.len(),
            Some(pb::inter_cluster_network_response::Event::Edges(b)) => {
                for e in b.edges {
                    let mut ends = [e.source, e.target];
                    ends.sort();
                    weights.insert(ends.join("|"), serde_json::json!(e.total_weight));
                }
            }
            _ => {}
        }
    }
    let expected = serde_json::json!({
        "firm": {"nodes": actors.len(), "edges": links.len(), "actors": firm_actors},
        "cluster": {"nodes": nodes, "edges": weights.len(), "stages": stages, "weights": weights},
    });
    let expected_path = files.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/check_export.py");
    let folder = files.path().display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .args([script, &expected_path.display().to_string(), &folder])
            .output()
    })
    .await
    .unwrap()
    .expect("python runs (set CLUSTERNET_PYTHON to one with networkx and python-igraph)");
    assert_ran(&out);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(report.lines().count(), 5, "{report}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_names_the_common_slips_and_exits_with_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let address = server.url().trim_start_matches("http://").to_string();
    let out = run(&["export", "--server", &address, "--format", "dot", "--out", "/tmp/x.dot"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give the scheme"));
    let out = run(&[
        "export",
        "--server",
        &server.url(),
        "--format",
        "dot",
        "--out",
        "/no/such/dir/x.dot",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the directory /no/such/dir does not exist"));
    let out = run(&["import", "--server", &server.url(), "/no/such/dir"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = run(&["export", "--format", "svg", "--out", "/tmp/x"]).await;
    assert_eq!(out.status.code(), Some(2), "bad usage");
    let files = tempfile::tempdir().unwrap();
    let out = files.path().join("x.graphml").display().to_string();
    let result = run(&[
        "export",
        "--server",
        &server.url(),
        "--format",
        "graphml",
        "--out",
        &out,
        "--as-of",
        "2020-13-01",
    ])
    .await;
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("filter.as_of"),
        "{stderr}"
    );
    server.stop().await;
}
