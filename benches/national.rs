//! National scale, end to end, beside igraph in the same run: a
//! Barabási–Albert firm network (BENCH_NODES 1,000,000 actors, BENCH_PER_NODE
//! 10 SUPPLY links each: 10M links) in BENCH_CLUSTERS 1,000 clusters (members
//! mixing 50 industry classes, with head counts: `support::national_network`), written
//! as a CSV directory and loaded through `clusternet import` into the real
//! server; then a separate client times the calls as a calling service sees
//! them (connected and warm, each stream read to its end):
//!
//! * PageRank, top 10, directed, unweighted: the first call after the import
//!   and BENCH_REPEATS (5) more;
//! * Louvain (unweighted, the FIRM layer undirected) and betweenness from 256
//!   pivots, BENCH_REPEATS_SLOW (1) times each (igraph: once; its Louvain
//!   takes minutes here);
//! * PageRank after each of BENCH_REPEATS one-link writes (the graph patched);
//! * a restart to SERVING, and the first PageRank after it;
//!
//! and python-igraph (when installed) on the same edge list, in process,
//! graph loading excluded: PageRank (PRPACK), community_multilevel, and
//! betweenness from 256 evenly spaced sources. RSS of the server after the
//! import, during the analyses (peak) and after the restart.
//!
//!     cargo bench --bench national
//!     BENCH_NODES=100000 cargo bench --bench national     # a tenth of it
//!     BENCH_SLOW=0 cargo bench --bench national           # no Louvain, no betweenness
//!     BENCH_ALERTS=0 cargo bench --bench national         # the server without alerts
//!     BENCH_DIR=/tmp/national cargo bench --bench national  # keep the CSV and the data directory (emptied first)

use std::{
    io::{BufWriter, Write},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use clusternet::{
    import::write_dir,
    model::{Change, Channel, Link, LinkKind, Validity},
    service::{
        convert::change_to_pb,
        pb::{self, analysis_service_client::AnalysisServiceClient, network_service_client::NetworkServiceClient},
    },
    synthetic::barabasi_albert,
};
use tonic::transport::Channel as GrpcChannel;

#[path = "support/mod.rs"]
mod support;

use support::{
    actor_id, env_or, free_port, get_metrics, median, memory_mib, metric, national_network, start_with, terminate,
    wait_serving, BIN,
};

const IGRAPH: &str = r#"
import json, sys, time
import igraph as ig
path, repeats, slow = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "true"
out = {"version": ig.__version__}
g = ig.Graph.Read_Edgelist(path, directed=True)
def timed(f, n):
    times = []
    for _ in range(n):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]
out["pagerank"] = timed(lambda: g.pagerank(directed=True, damping=0.85), repeats)
changed = ig.Graph.Read_Edgelist(sys.argv[4], directed=True)
ranks = changed.pagerank(directed=True, damping=0.85)
out["changed_top"] = sorted(range(len(ranks)), key=lambda v: -ranks[v])[:10]
out["changed_values"] = [ranks[v] for v in out["changed_top"]]
if not slow:
    print(json.dumps(out)); sys.exit()
u = g.as_undirected(mode="collapse")
import random
for seed in (0, 1, 2):
    random.seed(seed)
    t = time.perf_counter(); parts = u.community_multilevel(); out[f"louvain{seed}"] = time.perf_counter() - t
    out[f"modularity{seed}"] = parts.modularity
out["louvain"] = out["louvain1"]
n = u.vcount()
pivots = list(range(0, n, n // 256))[:256]
out["betweenness256"] = timed(lambda: u.betweenness(directed=False, sources=pivots), 1)
print(json.dumps(out))
"#;

/// Seconds until the stream of one analysis call ends (printed as it goes).
async fn timed<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>>,
) -> f64 {
    let started = Instant::now();
    let mut stream = call.await.expect("the analysis starts").into_inner();
    while stream.message().await.expect("the analysis runs to its end").is_some() {}
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("{what}: {seconds:.2} s");
    seconds
}

fn pagerank() -> pb::CentralityRequest {
    pb::CentralityRequest {
        measure: pb::CentralityMeasure::Pagerank as i32,
        top_k: 10,
        ..Default::default()
    }
}

fn louvain(seed: u64) -> pb::CommunitiesRequest {
    pb::CommunitiesRequest {
        algorithm: pb::CommunityAlgorithm::Louvain as i32,
        seed,
        ..Default::default()
    }
}

fn betweenness256() -> pb::CentralityRequest {
    pb::CentralityRequest {
        measure: pb::CentralityMeasure::Betweenness as i32,
        undirected: true,
        betweenness: Some(pb::BetweennessParams {
            samples: 256,
            seed: 1,
            ..Default::default()
        }),
        top_k: 10,
        ..Default::default()
    }
}

async fn channel(port: u16) -> GrpcChannel {
    GrpcChannel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("valid URL")
        .timeout(Duration::from_secs(3600))
        .connect()
        .await
        .expect("the server is up")
}

async fn client(port: u16) -> AnalysisServiceClient<GrpcChannel> {
    AnalysisServiceClient::new(channel(port).await).max_decoding_message_size(64 << 20)
}

/// A new SUPPLY link from a younger actor to an older one, as the BA links run.
fn one_link(i: usize, nodes: usize) -> pb::ApplyChangesRequest {
    let source = nodes / 2 + (i * 7_919) % (nodes / 2);
    let target = (i * 104_729 + 13) % (nodes / 2);
    let link = Link {
        source: actor_id(source as u32),
        target: actor_id(target as u32),
        kind: LinkKind::Supply,
        channel: Channel::Physical,
        weight: 1.0,
        validity: Validity::default(),
    };
    pb::ApplyChangesRequest {
        changes: vec![change_to_pb(&Change::UpsertLink(link))],
    }
}

/// A hundred new SUPPLY links, younger to older as the BA links run: the
/// request and the (source, target) pairs.
fn hundred_links(round: usize, nodes: usize) -> (pb::ApplyChangesRequest, Vec<(usize, usize)>) {
    let pairs: Vec<(usize, usize)> = (0..100)
        .map(|i| {
            let k = round * 100 + i;
            (
                nodes / 4 + (k * 48_271) % (nodes * 3 / 4),
                (k * 16_807 + 101) % (nodes / 4),
            )
        })
        .collect();
    let changes = pairs
        .iter()
        .map(|&(u, v)| {
            change_to_pb(&Change::UpsertLink(Link {
                source: actor_id(u as u32),
                target: actor_id(v as u32),
                kind: LinkKind::Supply,
                channel: Channel::Physical,
                weight: 1.0,
                validity: Validity::default(),
            }))
        })
        .collect();
    (pb::ApplyChangesRequest { changes }, pairs)
}

/// The top 10 of a PageRank call: (actor number, value).
async fn top_ten(analysis: &mut AnalysisServiceClient<GrpcChannel>) -> Vec<(usize, f64)> {
    let mut stream = analysis.centrality(pagerank()).await.unwrap().into_inner();
    let mut top = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        if let Some(pb::centrality_response::Event::Rows(rows)) = event.event {
            for row in rows.rows {
                let number: usize = row
                    .node_id
                    .trim_start_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap();
                top.push((number, row.value));
            }
        }
    }
    top
}

/// Seconds of a Louvain call and the modularity it reports.
async fn louvain_timed(analysis: &mut AnalysisServiceClient<GrpcChannel>, seed: u64) -> (f64, f64) {
    let started = Instant::now();
    let mut stream = analysis.communities(louvain(seed)).await.unwrap().into_inner();
    let mut modularity = f64::NAN;
    while let Some(event) = stream.message().await.unwrap() {
        if let Some(pb::communities_response::Event::Summary(summary)) = event.event {
            modularity = summary.modularity;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("Louvain seed {seed}: {seconds:.2} s, modularity {modularity:.4}");
    (seconds, modularity)
}

fn igraph(edge_file: &Path, changed_file: &Path, repeats: usize, slow: bool) -> Option<serde_json::Value> {
    let out = Command::new("python3")
        .args(["-c", IGRAPH])
        .arg(edge_file)
        .arg(repeats.to_string())
        .arg(slow.to_string())
        .arg(changed_file)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "igraph skipped: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
        return None;
    }
    serde_json::from_slice(String::from_utf8_lossy(&out.stdout).trim().lines().last()?.as_bytes()).ok()
}

/// Bytes of the files directly in `dir`.
fn files_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let nodes = env_or("BENCH_NODES", 1_000_000);
    let per_node = env_or("BENCH_PER_NODE", 10);
    let clusters = env_or("BENCH_CLUSTERS", 1_000);
    let repeats = env_or("BENCH_REPEATS", 5);
    let slow_repeats = if env_or("BENCH_SLOW", 1) == 0 {
        0
    } else {
        env_or("BENCH_REPEATS_SLOW", 1)
    };
    let flags: Vec<&str> = if env_or("BENCH_ALERTS", 1) == 0 {
        vec!["--no-alerts"]
    } else {
        vec![]
    };
    let work = tempfile::tempdir().unwrap();
    let root = std::env::var("BENCH_DIR").map_or(work.path().to_path_buf(), std::path::PathBuf::from);
    let (csv, data, edge_file) = (root.join("csv"), root.join("data"), root.join("edges.txt"));
    let changed_file = root.join("edges-changed.txt");

    eprintln!("generating a BA network: {nodes} actors, {per_node} links each, {clusters} clusters");
    let edges = barabasi_albert(nodes, per_node, 7);
    {
        let mut out = BufWriter::new(std::fs::File::create(&edge_file).unwrap());
        for (u, v) in &edges {
            writeln!(out, "{u} {v}").unwrap();
        }
        out.flush().unwrap();
    }
    std::fs::create_dir_all(&csv).unwrap();
    write_dir(&csv, &national_network(nodes, clusters, &edges)).unwrap();
    let links = edges.len();
    drop(edges);

    // The import is timed into an empty store: a data directory kept from an
    // earlier run (BENCH_DIR) would make it a re-import of the same links.
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port();
    let metrics_address = format!("127.0.0.1:{}", free_port());
    let mut import_flags = flags.clone();
    import_flags.extend(["--metrics-listen", &metrics_address]);
    let server = start_with(&data, port, &import_flags);
    wait_serving(port, Instant::now()).await;
    eprintln!("importing {links} links through `clusternet import`");
    let started = Instant::now();
    let mut importer = Command::new(BIN)
        .args(["import", "--server", &format!("http://127.0.0.1:{port}")])
        .arg(&csv)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The client's own peak, read from /proc while it runs (its high-water
    // mark is gone once it has exited): it should hold a few batches, not
    // the file.
    let mut client_peak = 0f64;
    let status = loop {
        let (hwm, _) = memory_mib(importer.id());
        if hwm.is_finite() {
            client_peak = client_peak.max(hwm);
        }
        if let Some(status) = importer.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "the import succeeds");
    let import_seconds = started.elapsed().as_secs_f64();
    let (hwm_import, rss_after_import) = memory_mib(server.id());
    let du = |dir: &Path| -> f64 {
        let out = Command::new("du").arg("-sb").arg(dir).output().unwrap();
        let bytes: f64 = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0.0);
        bytes / (1 << 20) as f64
    };
    eprintln!("data directory {:.0} MiB for {:.0} MiB of CSV", du(&data), du(&csv));
    eprintln!(
        "import: {import_seconds:.1} s ({:.0} links/s), RSS {rss_after_import:.0} MiB; the import client's peak RSS \
         {client_peak:.0} MiB for {:.0} MiB of CSV",
        links as f64 / import_seconds,
        files_bytes(&csv) as f64 / (1 << 20) as f64
    );
    // Once the writes pause, the server repacks the maps the import left
    // half empty; the steady RSS is after that.
    let waited = Instant::now();
    let repack_seconds = loop {
        let page = get_metrics(&metrics_address).await;
        if metric(&page, "clusternet_repack_duration_seconds_count").unwrap_or(0.0) >= 1.0 {
            break metric(&page, "clusternet_repack_duration_seconds_sum").unwrap_or(f64::NAN);
        }
        if waited.elapsed() > Duration::from_secs(120) {
            break f64::NAN;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The old maps go back to the system just after the repack is
    // published: wait for the RSS to settle.
    let mut rss_after_repack = memory_mib(server.id()).1;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = memory_mib(server.id()).1;
        let settled = (rss_after_repack - now).abs() < 0.01 * now;
        rss_after_repack = now;
        if settled {
            break;
        }
    }
    eprintln!(
        "repacked {:.1} s after the import (the repack took {repack_seconds:.1} s): RSS {rss_after_repack:.0} MiB",
        waited.elapsed().as_secs_f64()
    );

    let mut analysis = client(port).await;
    let first_pagerank = timed("PageRank, first", analysis.centrality(pagerank())).await;
    let mut pageranks: Vec<f64> = Vec::new();
    for _ in 0..repeats {
        pageranks.push(timed("PageRank, warm", analysis.centrality(pagerank())).await);
    }
    // After a one-link write the next PageRank patches the graph it kept.
    let mut writer = NetworkServiceClient::new(channel(port).await);
    let mut after_writes: Vec<f64> = Vec::new();
    for i in 0..repeats {
        writer
            .apply_changes(one_link(i, nodes))
            .await
            .expect("the write is applied");
        after_writes.push(timed("PageRank after a one-link write", analysis.centrality(pagerank())).await);
    }
    // After writes of a hundred links: the ranks brought up to date, not
    // solved again; the last top 10 is checked against igraph below.
    let mut written: Vec<(usize, usize)> = (0..repeats)
        .map(|i| {
            let link = &one_link(i, nodes).changes[0];
            let Some(pb::change::Change::UpsertLink(link)) = &link.change else {
                unreachable!()
            };
            let number = |id: &str| {
                id.trim_start_matches(|c: char| !c.is_ascii_digit())
                    .parse::<usize>()
                    .unwrap()
            };
            (number(&link.source), number(&link.target))
        })
        .collect();
    let mut after_hundreds: Vec<f64> = Vec::new();
    for round in 0..3 {
        let (request, pairs) = hundred_links(round, nodes);
        writer.apply_changes(request).await.expect("the write is applied");
        written.extend(pairs);
        after_hundreds.push(timed("PageRank after a 100-link write", analysis.centrality(pagerank())).await);
    }
    let served_top = top_ten(&mut analysis).await;
    let page = get_metrics(&metrics_address).await;
    let updated = metric(&page, "clusternet_pageranks_total{how=\"updated\"}").unwrap_or(0.0);
    let solved = metric(&page, "clusternet_pageranks_total{how=\"solved\"}").unwrap_or(0.0);
    eprintln!("PageRanks updated {updated}, solved {solved}");
    {
        let mut out = BufWriter::new(std::fs::File::create(&changed_file).unwrap());
        std::io::copy(&mut std::fs::File::open(&edge_file).unwrap(), &mut out).unwrap();
        for (u, v) in &written {
            writeln!(out, "{u} {v}").unwrap();
        }
        out.flush().unwrap();
    }
    let mut louvains: Vec<(u64, f64, f64)> = Vec::new();
    let mut betweennesses: Vec<f64> = Vec::new();
    for _ in 0..slow_repeats {
        betweennesses.push(timed("betweenness 256", analysis.centrality(betweenness256())).await);
        for seed in 0..3 {
            let (seconds, modularity) = louvain_timed(&mut analysis, seed).await;
            louvains.push((seed, seconds, modularity));
        }
    }
    let (peak_analyses, rss_after_analyses) = memory_mib(server.id());
    // With alerts on, a bulk import is taken in once it ends, then every
    // cluster's figures are recomputed: how long after the import that is
    // done, and the data directory once the log the engine held is let go.
    let import_ended = started + Duration::from_secs_f64(import_seconds);
    let mut alerts_settled = f64::NAN;
    if env_or("BENCH_ALERTS", 1) != 0 {
        let waited = Instant::now();
        while waited.elapsed() < Duration::from_secs(900) {
            let page = get_metrics(&metrics_address).await;
            if metric(&page, "clusternet_alert_lag_revisions").is_some_and(|lag| lag <= 0.0) {
                alerts_settled = import_ended.elapsed().as_secs_f64();
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let (peak_settled, rss_settled) = memory_mib(server.id());
    let du_settled = du(&data);
    eprintln!(
        "alerts settled {alerts_settled:.1} s after the import: RSS {rss_settled:.0} MiB (peak {peak_settled:.0}); \
         data directory {du_settled:.0} MiB"
    );
    terminate(server);

    let started = Instant::now();
    let server = start_with(&data, port, &flags);
    let restart_seconds = wait_serving(port, started).await.as_secs_f64();
    let (_, rss_after_restart) = memory_mib(server.id());
    eprintln!("restart: {restart_seconds:.1} s, RSS {rss_after_restart:.0} MiB");
    let mut analysis = client(port).await;
    let pagerank_after_restart = timed("PageRank after the restart", analysis.centrality(pagerank())).await;
    terminate(server);

    eprintln!("python-igraph on the same edges");
    let theirs = igraph(&edge_file, &changed_file, repeats, slow_repeats > 0);
    let their = |key: &str| theirs.as_ref().and_then(|t| t[key].as_f64());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nnational scale: BA {nodes} actors / {links} SUPPLY links, {clusters} clusters; {cpus} CPUs; alerts {}; igraph {}",
        if flags.is_empty() { "on" } else { "off" },
        theirs
            .as_ref()
            .map_or("not installed".into(), |t| t["version"].to_string())
    );
    println!("\n| figure | clusternet over gRPC | igraph in process | igraph / clusternet |\n|---|---|---|---|");
    let row = |name: &str, ours: f64, theirs: Option<f64>| {
        let (t, ratio) = theirs.map_or(("—".to_string(), "—".to_string()), |t| {
            (format!("{t:.2} s"), format!("{:.2}", t / ours))
        });
        println!("| {name} | {ours:.2} s | {t} | {ratio} |");
    };
    row(
        "PageRank top 10, first call after the import",
        first_pagerank,
        their("pagerank"),
    );
    row(
        &format!("PageRank top 10, warm (median of {repeats})"),
        median(&mut pageranks),
        their("pagerank"),
    );
    row(
        &format!("PageRank top 10, first call after a one-link write (median of {repeats})"),
        median(&mut after_writes),
        their("pagerank"),
    );
    row(
        "PageRank top 10, first call after a restart",
        pagerank_after_restart,
        their("pagerank"),
    );
    row(
        "PageRank top 10, first call after a 100-link write (median of 3)",
        median(&mut after_hundreds),
        their("pagerank"),
    );
    if let Some(theirs) = &theirs {
        let top: Vec<usize> = serde_json::from_value(theirs["changed_top"].clone()).unwrap_or_default();
        let values: Vec<f64> = serde_json::from_value(theirs["changed_values"].clone()).unwrap_or_default();
        let same_order = top == served_top.iter().map(|(v, _)| *v).collect::<Vec<_>>();
        let off = served_top
            .iter()
            .zip(&values)
            .map(|((_, ours), theirs)| (ours - theirs).abs())
            .fold(0.0, f64::max);
        println!(
            "\nAfter the writes ({} links added; PageRanks updated {updated}, solved {solved}): the top 10 {} igraph's on the changed graph, values within {off:.1e}",
            written.len(),
            if same_order { "equals" } else { "DIFFERS from" }
        );
    }
    if slow_repeats > 0 {
        for (seed, seconds, modularity) in &louvains {
            row(
                &format!(
                    "Louvain seed {seed} (modularity {modularity:.4}, igraph {:.4})",
                    their(&format!("modularity{seed}")).unwrap_or(f64::NAN)
                ),
                *seconds,
                their(&format!("louvain{seed}")),
            );
        }
        row(
            &format!("betweenness, 256 pivots (median of {slow_repeats})"),
            median(&mut betweennesses),
            their("betweenness256"),
        );
    }
    println!(
        "\n| figure | value |\n|---|---|\n| `clusternet import` (CSV) | {import_seconds:.1} s, {:.0} links/s |\n| RSS after the import (high-water mark through it) | {rss_after_import:.0} MiB ({hwm_import:.0} MiB) |\n| RSS once repacked (the repack took) | {rss_after_repack:.0} MiB ({repack_seconds:.1} s) |\n| RSS after the analyses (peak during them) | {rss_after_analyses:.0} MiB ({peak_analyses:.0} MiB) |\n| alerts settled after the import end (RSS then; peak so far) | {alerts_settled:.1} s ({rss_settled:.0} MiB; {peak_settled:.0} MiB) |\n| data directory then | {du_settled:.0} MiB |\n| restart to SERVING | {restart_seconds:.1} s |\n| RSS after the restart | {rss_after_restart:.0} MiB |",
        links as f64 / import_seconds
    );
}
