//! Relatedness on the national network (issue 32): the Barabási–Albert firm
//! network of `benches/national.rs` (BENCH_NODES 1,000,000 actors,
//! BENCH_PER_NODE 10 SUPPLY links each: 10M links, BENCH_CLUSTERS 1,000
//! clusters), its members mixing BENCH_INDUSTRIES 50 industry classes, loaded
//! through `clusternet import` into the real server. Once the alert engine
//! has caught up, a separate client times, as a calling service sees them
//! (connected, each stream read to its end), BENCH_REPEATS (5) times each:
//!
//! * Relatedness, every (cluster, industry) pair with every figure
//!   (1,000 × 50 = 50,000 rows): the goal is under a second;
//! * Relatedness per cluster (ECI, COI and the indices), IndustrySpace, and
//!   UpgradePaths of one cluster;
//!
//! then `ecomplexity` (when the Python at BENCH_PYTHON, default python3,
//! has it) on the same matrix, in process, timed the same number of times,
//! and every figure it gives compared with the server's.
//!
//!     cargo bench --bench relatedness
//!     BENCH_NODES=100000 cargo bench --bench relatedness     # a tenth of it
//!     BENCH_ALERTS=0 cargo bench --bench relatedness         # the server without alerts (no wait for them)

use std::{
    io::Write,
    process::Command,
    time::{Duration, Instant},
};

use clusternet::{import::write_dir, service::pb, synthetic::barabasi_albert};
use tonic::transport::Channel;

#[path = "support/mod.rs"]
mod support;

use support::{env_or, free_port, median, national_network, start_with, terminate, wait_serving, BIN};

const ECOMPLEXITY: &str = r#"
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from ecomplexity import ecomplexity
import ecomplexity as package
path, repeats = sys.argv[1], int(sys.argv[2])
ours = pd.read_csv(path, dtype={"loc": str, "prod": str})
df = ours[["loc", "prod", "val"]].copy()
df["year"] = 2026
cols = {"time": "year", "loc": "loc", "prod": "prod", "val": "val"}
times = []
for _ in range(repeats):
    t = time.perf_counter()
    out = ecomplexity(df, cols, verbose=False, check_logsupermodularity=False)
    times.append(time.perf_counter() - t)
times.sort()
worst = {}
ours = ours.set_index(["loc", "prod"])
out = out.set_index(["loc", "prod"]).loc[ours.index]
for figure in ["rca", "density", "cog", "pci", "eci", "coi"]:
    a, b = ours[figure].to_numpy(), out[figure].to_numpy()
    both = ~(pd.isna(a) | pd.isna(b))
    mismatched_nan = int((pd.isna(a) != pd.isna(b)).sum())
    scale = abs(b[both]).clip(min=1.0)
    worst[figure] = {"max_relative": float((abs(a[both] - b[both]) / scale).max()) if both.any() else 0.0,
                     "nan_mismatches": mismatched_nan}
print(json.dumps({"median_seconds": times[len(times) // 2], "worst": worst,
                  "version": getattr(package, "__version__", "0.5.3")}))
"#;

async fn client(port: u16) -> pb::analysis_service_client::AnalysisServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("valid URL")
        .timeout(Duration::from_secs(600))
        .connect()
        .await
        .expect("the server is up");
    pb::analysis_service_client::AnalysisServiceClient::new(channel).max_decoding_message_size(64 << 20)
}

/// The seconds a call takes to its last message, and what it sent.
async fn timed<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>>,
) -> (f64, Vec<T>) {
    let started = Instant::now();
    let mut stream = call.await.expect("the analysis starts").into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await.expect("the analysis runs to its end") {
        messages.push(message);
    }
    (started.elapsed().as_secs_f64(), messages)
}

fn pairs_of(messages: Vec<pb::RelatednessResponse>) -> Vec<pb::RelatednessRow> {
    messages
        .into_iter()
        .filter_map(|m| match m.event {
            Some(pb::relatedness_response::Event::Pairs(b)) => Some(b.rows),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::main]
async fn main() {
    let nodes = env_or("BENCH_NODES", 1_000_000);
    let per_node = env_or("BENCH_PER_NODE", 10);
    let clusters = env_or("BENCH_CLUSTERS", 1_000);
    let repeats = env_or("BENCH_REPEATS", 5);
    let work = tempfile::tempdir().unwrap();
    let (csv, data) = (work.path().join("csv"), work.path().join("data"));

    eprintln!("generating a BA network: {nodes} actors, {per_node} links each, {clusters} clusters");
    let edges = barabasi_albert(nodes, per_node, 7);
    std::fs::create_dir_all(&csv).unwrap();
    write_dir(&csv, &national_network(nodes, clusters, &edges)).unwrap();
    let links = edges.len();
    drop(edges);

    let port = free_port();
    let alerts_on = env_or("BENCH_ALERTS", 1) != 0;
    let server = start_with(&data, port, if alerts_on { &[] } else { &["--no-alerts"] });
    wait_serving(port, Instant::now()).await;
    eprintln!("importing {links} links through `clusternet import`");
    let started = Instant::now();
    let status = Command::new(BIN)
        .args(["import", "--server", &format!("http://127.0.0.1:{port}")])
        .arg(&csv)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the import succeeds");
    eprintln!("import: {:.1} s", started.elapsed().as_secs_f64());
    // The alert engine evaluates the import in the background; time the
    // calls once it has, as a quiet server answers them.
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(channel.clone());
    let mut network = pb::network_service_client::NetworkServiceClient::new(channel);
    let revision = network
        .list_clusters(pb::ListClustersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    let waited = Instant::now();
    loop {
        if !alerts_on {
            break;
        }
        let evaluated = alerts
            .list_alerts(pb::ListAlertsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .evaluated_revision;
        if evaluated >= revision || waited.elapsed() > Duration::from_secs(1800) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if alerts_on {
        eprintln!(
            "alerts evaluated {:.1} s after the import",
            waited.elapsed().as_secs_f64()
        );
    }

    let mut client = client(port).await;
    let (mut pairs_times, mut cluster_times, mut space_times, mut path_times) = (vec![], vec![], vec![], vec![]);
    let mut pairs = Vec::new();
    for _ in 0..repeats {
        let (seconds, messages) = timed(client.relatedness(pb::RelatednessRequest::default())).await;
        pairs_times.push(seconds);
        pairs = pairs_of(messages);
        let (seconds, _) = timed(client.relatedness(pb::RelatednessRequest {
            view: pb::RelatednessView::Clusters as i32,
            ..Default::default()
        }))
        .await;
        cluster_times.push(seconds);
        let (seconds, _) = timed(client.industry_space(pb::IndustrySpaceRequest::default())).await;
        space_times.push(seconds);
        let (seconds, _) = timed(client.upgrade_paths(pb::UpgradePathsRequest {
            cluster_id: "cluster-0000".into(),
            ..Default::default()
        }))
        .await;
        path_times.push(seconds);
    }
    let industries = pairs
        .iter()
        .map(|p| p.industry.as_str())
        .collect::<std::collections::BTreeSet<_>>();
    let defined = pairs.iter().filter(|p| p.eci.is_some()).count();
    println!(
        "machine: {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "network: {nodes} actors, {links} links; matrix {clusters} clusters x {} industries = {} pairs ({defined} with ECI)",
        industries.len(),
        pairs.len()
    );
    println!("medians of {repeats}, end to end over gRPC, each stream read to its end:");
    println!(
        "  Relatedness, every pair and figure: {:.3} s",
        median(&mut pairs_times)
    );
    println!(
        "  Relatedness per cluster:             {:.3} s",
        median(&mut cluster_times)
    );
    println!(
        "  IndustrySpace:                       {:.3} s",
        median(&mut space_times)
    );
    println!(
        "  UpgradePaths of one cluster:         {:.3} s",
        median(&mut path_times)
    );

    // ecomplexity on the same matrix, and every figure compared.
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let matrix = work.path().join("matrix.csv");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&matrix).unwrap());
        writeln!(out, "loc,prod,val,rca,density,cog,pci,eci,coi").unwrap();
        let cell = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:e}"));
        for p in &pairs {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{}",
                p.cluster_id,
                p.industry,
                p.value,
                cell(p.rca),
                cell(p.density),
                cell(p.cog),
                cell(p.pci),
                cell(p.eci),
                cell(p.coi)
            )
            .unwrap();
        }
    }
    let out = Command::new(&python)
        .args(["-c", ECOMPLEXITY])
        .arg(&matrix)
        .arg(repeats.to_string())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let report: serde_json::Value = serde_json::from_slice(
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .lines()
                    .last()
                    .unwrap()
                    .as_bytes(),
            )
            .unwrap();
            let theirs = report["median_seconds"].as_f64().unwrap();
            println!(
                "  ecomplexity {} in process, the same matrix (median of {repeats}): {theirs:.3} s; \
                 clusternet over gRPC is {:.1}x that",
                report["version"],
                median(&mut pairs_times) / theirs
            );
            println!(
                "  largest difference from ecomplexity (relative, absolute below 1): {}",
                report["worst"]
            );
        }
        Ok(out) => eprintln!(
            "ecomplexity skipped: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ),
        Err(error) => eprintln!("ecomplexity skipped: {error}"),
    }
    terminate(server);
}
