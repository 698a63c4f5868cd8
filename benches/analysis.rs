//! Analysis benchmark driver, run by `benches/compare.py` (which also times
//! python-igraph on the same graphs, side by side).
//!
//! `cargo bench --bench analysis -- generate NODES EDGES_PER_NODE SEED FILE`
//!     writes a Barabási–Albert graph (preferential attachment, each new node
//!     linking to EDGES_PER_NODE earlier ones) as a text edge list "u v".
//! `cargo bench --bench analysis -- run ALGORITHM FILE`
//!     loads the graph, runs one of pagerank | betweenness | betweenness256 |
//!     louvain, and prints one JSON line: seconds for the algorithm alone,
//!     seconds to build the graph, and the process's peak RSS.
//! `cargo bench --bench analysis -- overlap CLUSTERS ACTORS LINKS`
//!     times all-pairs ClusterOverlap (all four dimensions) on a generated
//!     network (`clusternet::synthetic`).
//! `cargo bench --bench analysis -- substitutes CLUSTERS ACTORS LINKS`
//!     times Substitutes for 100 random actors and the busiest one, and for
//!     one cluster.
//! `cargo bench --bench analysis -- stages CLUSTERS ACTORS LINKS`
//!     times AssessStage for all clusters and DetectVirtualIntegration over
//!     the whole network, three runs each, on a generated network whose
//!     clusters have three sites and a platform actor each.
//! `cargo bench --bench analysis -- gaps CLUSTERS ACTORS LINKS`
//!     times SubstitutionGaps for one cluster (three different ones) and for
//!     the whole network.
//! `cargo bench --bench analysis -- fusion-pivots CLUSTERS ACTORS LINKS`
//!     how far FusionLinks' default 256-pivot ranking agrees with exact edge
//!     betweenness: the share of the exact top 100 and top 1000 that the
//!     sampled ranking also puts there.
//! `cargo bench --bench analysis -- alert-round CLUSTERS ACTORS LINKS`
//!     times the alert engine's baseline over every cluster (the median of
//!     BENCH_BASELINES runs, default 3), then 50 rounds
//!     (BENCH_ROUNDS; BENCH_ROUND_LINKS links per round)
//!     of one new OWNERSHIP link between two clusters (what a small batch
//!     costs the engine before its alerts can be sent), in process.
//! `cargo bench --bench analysis -- alert-parts CLUSTERS ACTORS LINKS`
//!     what each part of a cluster's alert figures costs (walking its
//!     members' links, the stage assessment, virtual-integration detection,
//!     member overlaps, tie counts), per cluster, in process.
//! `cargo bench --bench analysis -- calibration [NETWORKS]`
//!     the stage figures on null models (`synthetic::null_models`, 200
//!     networks by default) and on specialised districts built to be virtual:
//!     quantiles of every gate figure and score, the share of clusters each
//!     gate lets through, and how many are judged VIRTUAL (docs/stages.md,
//!     Calibration).
//! `cargo bench --bench analysis -- moonshot ACTORS PER_ACTOR [STOP_GIB]`
//!     how far the in-memory network goes (issue 14's 10M actors / 100M
//!     links): restores ACTORS actors in 1,000 clusters and a BA network of
//!     PER_ACTOR links each, in parts of 10M links as a restart restores a
//!     checkpoint, printing RSS after each; stops adding past STOP_GIB of
//!     RSS (default 20); then builds the FIRM graph and runs PageRank.
//! `cargo bench --bench analysis -- fusion CLUSTERS ACTORS LINKS [PIVOTS]`
//!     times FusionLinks over the whole network with its defaults (Leiden,
//!     sampled edge betweenness) or PIVOTS pivots, three runs.

use std::{
    io::{BufRead, BufWriter, Write},
    time::Instant,
};

use clusternet::{
    analysis::{
        algo::centrality::{betweenness, pagerank, BetweennessConfig, PageRankConfig},
        algo::community::{louvain, LouvainConfig},
        stages::StageContext,
        Control,
    },
    graph::{AnalysisGraph, GraphFilter},
    model::Id,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "support/mod.rs"]
mod support;

/// This process's peak RSS, in MiB.
fn peak_rss_mib() -> f64 {
    support::memory_mib(std::process::id()).0
}

fn generate(nodes: usize, per_node: usize, seed: u64, path: &str) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    for (u, v) in clusternet::synthetic::barabasi_albert(nodes, per_node, seed) {
        writeln!(out, "{u} {v}").unwrap();
    }
    out.flush().unwrap();
}

fn load(path: &str) -> Vec<(u32, u32, f64)> {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    file.lines()
        .map(|line| {
            let line = line.unwrap();
            let mut parts = line.split_whitespace().map(|p| p.parse::<u32>().unwrap());
            (parts.next().unwrap(), parts.next().unwrap(), 1.0)
        })
        .collect()
}

fn run(algorithm: &str, path: &str) {
    let edges = load(path);
    let n = edges.iter().map(|(u, v, _)| u.max(v) + 1).max().unwrap_or(0) as usize;
    let ids: Vec<Id> = (0..n).map(|i| Id::from(i.to_string())).collect();
    let names = vec![String::new(); n];
    let directed = algorithm == "pagerank";
    let started = Instant::now();
    let graph = AnalysisGraph::from_edges(ids, names, &edges, directed, false);
    drop(edges);
    let build_seconds = started.elapsed().as_secs_f64();
    let control = Control::none();
    let started = Instant::now();
    let (checksum, detail) = match algorithm {
        "pagerank" => {
            let config = PageRankConfig {
                weighted: false,
                ..PageRankConfig::default()
            };
            let scores = pagerank(&graph, &config, &control).unwrap();
            (
                scores.values.iter().sum::<f64>(),
                format!("iterations {}", scores.iterations),
            )
        }
        "betweenness" | "betweenness256" => {
            let config = BetweennessConfig {
                samples: (algorithm == "betweenness256").then_some(256),
                seed: 1,
                ..BetweennessConfig::default()
            };
            let scores = betweenness(&graph, &config, &control).unwrap();
            (scores.values.iter().sum::<f64>(), String::new())
        }
        "louvain" => {
            let config = LouvainConfig {
                seed: std::env::var("BENCH_SEED").map_or(0, |s| s.parse().unwrap()),
                ..LouvainConfig::default()
            };
            let p = louvain(&graph, &config, &control).unwrap();
            (p.modularity, format!("communities {}", p.sizes.len()))
        }
        other => panic!("unknown algorithm {other}"),
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"tool\": \"clusternet\", \"algorithm\": \"{algorithm}\", \"nodes\": {n}, \"arcs\": {}, \"seconds\": {seconds:.4}, \"build_seconds\": {build_seconds:.4}, \"peak_rss_mib\": {:.1}, \"checksum\": {checksum}, \"detail\": \"{detail}\"}}",
        graph.out_arc(graph.node_count()),
        peak_rss_mib()
    );
}

/// This process's RSS, in MiB.
fn rss_mib() -> f64 {
    support::memory_mib(std::process::id()).1
}

fn moonshot(actors: usize, per_actor: usize, stop_gib: f64) {
    use clusternet::{
        graph::{firm_graph, EdgeMode, GraphFilter},
        model::{Actor, ActorKind, Change, Channel, Cluster, LinkKind, SegmentSet, Validity},
        network::{EdgeKey, LinkData, Network},
    };
    let clusters = 1_000;
    let started = Instant::now();
    let cluster_id = |c: usize| Id::from(format!("cluster-{c:04}"));
    let mut network = Network::default();
    let mut changes = Vec::new();
    for c in 0..clusters {
        changes.push(Change::UpsertCluster(Cluster {
            id: cluster_id(c),
            name: format!("Cluster {c}"),
            region: format!("Region {}", c % 30),
            country: None,
            industry: "C2930".into(),
            sites: Vec::new(),
        }));
    }
    network.apply(&changes).unwrap();
    for ix in 0..actors {
        network.actor_at.push_back(None);
        network.actor_ix.insert(Id::from(format!("a{ix}")), ix as u32);
    }
    for lo in (0..actors).step_by(1_000_000) {
        let part: Vec<Actor> = (lo..(lo + 1_000_000).min(actors))
            .map(|a| Actor {
                id: Id::from(format!("a{a}")),
                name: format!("Firm {a}"),
                kind: ActorKind::Firm,
                industry: "C2930".into(),
                segments: SegmentSet::default(),
                cluster_ids: vec![cluster_id(a * clusters / actors)],
                site_id: None,
                country: None,
                employees: None,
                revenue: None,
                validity: Validity::default(),
            })
            .collect();
        network.restore_actors(part).unwrap();
    }
    eprintln!(
        "{actors} actors: RSS {:.0} MiB, {:.1} s",
        rss_mib(),
        started.elapsed().as_secs_f64()
    );
    let edges = clusternet::synthetic::barabasi_albert(actors, per_actor, 7);
    let data = LinkData {
        channel: Channel::Physical,
        weight: 1.0,
        validity: Validity::default(),
    };
    let mut held = 0usize;
    for part in edges.chunks(10_000_000) {
        if rss_mib() > stop_gib * 1024.0 {
            eprintln!("stopped: RSS past {stop_gib} GiB");
            break;
        }
        let rows: Vec<(EdgeKey, LinkData)> = part
            .iter()
            .map(|&(u, v)| {
                (
                    EdgeKey {
                        source: u,
                        target: v,
                        kind: LinkKind::Supply,
                    },
                    data,
                )
            })
            .collect();
        // In key order, as a checkpoint holds them.
        let mut rows = rows;
        rows.sort_unstable_by_key(|(key, _)| *key);
        network.restore_links(&rows).unwrap();
        held += part.len();
        eprintln!(
            "{held} links: RSS {:.0} MiB, {:.1} s",
            rss_mib(),
            started.elapsed().as_secs_f64()
        );
    }
    let network_mib = rss_mib();
    drop(edges);
    let built = Instant::now();
    let graph = firm_graph(
        &network,
        &GraphFilter::default(),
        EdgeMode {
            undirected: false,
            weighted: false,
        },
    );
    let build_seconds = built.elapsed().as_secs_f64();
    let graph_mib = rss_mib();
    let ranked = Instant::now();
    let scores = pagerank(&graph, &PageRankConfig::default(), &Control::none()).unwrap();
    println!(
        "{{\"tool\": \"clusternet\", \"algorithm\": \"moonshot\", \"actors\": {actors}, \"links\": {held}, \"rss_network_mib\": {network_mib:.0}, \"graph_build_seconds\": {build_seconds:.2}, \"rss_with_graph_mib\": {graph_mib:.0}, \"pagerank_seconds\": {:.2}, \"iterations\": {}, \"peak_rss_mib\": {:.0}}}",
        ranked.elapsed().as_secs_f64(),
        scores.iterations,
        peak_rss_mib()
    );
}

fn synthetic_network(clusters: usize, actors: usize, links: usize) -> clusternet::network::Network {
    synthetic_with_sites(clusters, actors, links, 1)
}

fn synthetic_with_sites(clusters: usize, actors: usize, links: usize, sites: usize) -> clusternet::network::Network {
    use clusternet::synthetic::{generate, SyntheticConfig};
    network_of(generate(&SyntheticConfig {
        clusters,
        actors,
        links,
        sites_per_cluster: sites,
        ..SyntheticConfig::default()
    }))
}

fn network_of(changes: Vec<clusternet::model::Change>) -> clusternet::network::Network {
    let changes: Vec<_> = changes.into_iter().map(|c| c.validated().unwrap()).collect();
    let mut network = clusternet::network::Network::default();
    network.apply(&changes).unwrap();
    network
}

/// Substitutes for 100 actors drawn at random (seeded), plus the busiest one.
fn substitutes_per_actor(clusters: usize, actors: usize, links: usize) {
    use clusternet::analysis::relations::substitution::{cluster_substitutes, substitutes, SubstituteConfig};
    let network = synthetic_network(clusters, actors, links);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut targets: Vec<u32> = (0..100).map(|_| rng.gen_range(0..actors as u32)).collect();
    let busiest = (0..actors as u32)
        .max_by_key(|ix| network.incident(*ix).count())
        .unwrap();
    targets.push(busiest);
    let mut times = Vec::new();
    for &ix in &targets {
        let started = Instant::now();
        let rows = substitutes(
            &network,
            &Default::default(),
            ix,
            &SubstituteConfig::default(),
            &Control::none(),
        )
        .unwrap();
        times.push((started.elapsed().as_secs_f64() * 1000.0, rows.len(), ix == busiest));
    }
    let busiest_ms = times.iter().find(|t| t.2).map_or(f64::NAN, |t| t.0);
    let mut ms: Vec<f64> = times.iter().map(|t| t.0).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{{\"tool\": \"clusternet\", \"algorithm\": \"substitutes\", \"actors_timed\": {}, \"median_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}, \"busiest_actor_ms\": {busiest_ms:.2}, \"busiest_actor_links\": {}}}",
        ms.len(),
        ms[ms.len() / 2],
        ms[ms.len() * 99 / 100],
        ms[ms.len() - 1],
        network.incident(busiest).count()
    );
    let cluster = network.clusters.keys().next().unwrap().clone();
    let started = Instant::now();
    let rows = cluster_substitutes(
        &network,
        &Default::default(),
        &cluster,
        &SubstituteConfig::default(),
        &Control::none(),
    )
    .unwrap();
    println!(
        "{{\"tool\": \"clusternet\", \"algorithm\": \"cluster_substitutes\", \"seconds\": {:.4}, \"rows\": {}}}",
        started.elapsed().as_secs_f64(),
        rows.len()
    );
}

/// AssessStage for every cluster and DetectVirtualIntegration, three runs each.
fn stages(clusters: usize, actors: usize, links: usize) {
    use clusternet::analysis::{stages::stage::assess, stages::stage_config::StageConfig, stages::wholes::detect};
    let network = synthetic_with_sites(clusters, actors, links, 3);
    let config = StageConfig::default();
    for run in 0..3 {
        let started = Instant::now();
        let assessments = assess(stage_context(&network, &GraphFilter::default(), &config)).unwrap();
        let assess_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let patterns = detect(stage_context(&network, &GraphFilter::default(), &config)).unwrap();
        let detect_seconds = started.elapsed().as_secs_f64();
        let one = clusternet::graph::GraphFilter {
            clusters: vec![clusternet::synthetic::cluster_id(run)],
            ..Default::default()
        };
        let started = Instant::now();
        let single = assess(stage_context(&network, &one, &config)).unwrap();
        let one_cluster_ms = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(single.len(), 1);
        let mut counts = std::collections::BTreeMap::new();
        for a in &assessments {
            *counts.entry(a.stage.as_str()).or_insert(0) += 1;
        }
        let stages: Vec<String> = counts.iter().map(|(s, n)| format!("{s}={n}")).collect();
        let stages = stages.join(" ");
        println!(
            "{{\"tool\": \"clusternet\", \"algorithm\": \"stages\", \"run\": {run}, \"assess_seconds\": {assess_seconds:.4}, \"detect_seconds\": {detect_seconds:.4}, \"one_cluster_ms\": {one_cluster_ms:.1}, \"clusters\": {}, \"stages\": \"{stages}\", \"patterns\": {}, \"peak_rss_mib\": {:.1}}}",
            assessments.len(),
            patterns.len(),
            peak_rss_mib()
        );
    }
}

/// SubstitutionGaps for single clusters and for the whole network.
fn gaps(clusters: usize, actors: usize, links: usize) {
    use clusternet::analysis::relations::gaps::{substitution_gaps, GapConfig};
    let network = synthetic_network(clusters, actors, links);
    let config = GapConfig::default();
    for c in 0..3 {
        let filter = clusternet::graph::GraphFilter {
            clusters: vec![clusternet::synthetic::cluster_id(c * 300)],
            ..Default::default()
        };
        let started = Instant::now();
        let found = substitution_gaps(&network, &filter, &config, &Control::none()).unwrap();
        println!(
            "{{\"tool\": \"clusternet\", \"algorithm\": \"gaps_one_cluster\", \"cluster\": {}, \"seconds\": {:.3}, \"gaps\": {}}}",
            c * 300,
            started.elapsed().as_secs_f64(),
            found.len()
        );
    }
    let started = Instant::now();
    let found = substitution_gaps(&network, &Default::default(), &config, &Control::none()).unwrap();
    println!(
        "{{\"tool\": \"clusternet\", \"algorithm\": \"gaps_whole_network\", \"seconds\": {:.3}, \"gaps\": {}, \"peak_rss_mib\": {:.1}}}",
        started.elapsed().as_secs_f64(),
        found.len(),
        peak_rss_mib()
    );
}

/// Exact against sampled edge betweenness for the fusion-link ranking.
fn fusion_pivots(clusters: usize, actors: usize, links: usize) {
    use clusternet::analysis::relations::fusion::{fusion_links, FusionConfig, Pivots};
    let network = synthetic_network(clusters, actors, links);
    let run = |pivots| {
        let config = FusionConfig {
            pivots,
            top_k: 0,
            ..FusionConfig::default()
        };
        let started = Instant::now();
        let found = fusion_links(&network, &Default::default(), &config, &Control::none()).unwrap();
        let keys: Vec<((String, String), f64)> = found
            .links
            .iter()
            .map(|l| ((l.source.actor.to_string(), l.target.actor.to_string()), l.betweenness))
            .collect();
        (keys, started.elapsed().as_secs_f64())
    };
    let (exact, exact_seconds) = run(Pivots::Exact);
    for pivots in [256, 1024, 4096] {
        let (sampled, sampled_seconds) = run(Pivots::Sampled(pivots));
        let exact_value: std::collections::HashMap<&(String, String), f64> =
            exact.iter().map(|(key, b)| (key, *b)).collect();
        // Share of the exact top k found, and the exact betweenness the
        // sampled top k carries against the exact top k's.
        let agreement = |k: usize| {
            let top: std::collections::HashSet<&(String, String)> = exact.iter().take(k).map(|(key, _)| key).collect();
            let found = sampled.iter().take(k).filter(|(key, _)| top.contains(key)).count() as f64;
            let best: f64 = exact.iter().take(k).map(|(_, b)| b).sum();
            let got: f64 = sampled.iter().take(k).map(|(key, _)| exact_value[key]).sum();
            (found / k.min(exact.len()).max(1) as f64, got / best)
        };
        let ((set100, mass100), (set1000, mass1000)) = (agreement(100), agreement(1000));
        println!(
            "{{\"tool\": \"clusternet\", \"algorithm\": \"fusion_pivots\", \"pivots\": {pivots}, \"fusion_links\": {}, \"exact_seconds\": {exact_seconds:.2}, \"sampled_seconds\": {sampled_seconds:.2}, \"top100_found\": {set100:.3}, \"top100_mass\": {mass100:.3}, \"top1000_found\": {set1000:.3}, \"top1000_mass\": {mass1000:.3}}}",
            exact.len(),
        );
    }
}

/// FusionLinks over the whole generated network, three runs, with its
/// default pivots or `pivots`.
fn fusion(clusters: usize, actors: usize, links: usize, pivots: Option<usize>) {
    use clusternet::analysis::relations::fusion::{fusion_links, FusionConfig, Pivots};
    let network = synthetic_network(clusters, actors, links);
    let config = FusionConfig {
        pivots: pivots.map_or(Pivots::Auto, Pivots::Sampled),
        ..FusionConfig::default()
    };
    for run in 0..3 {
        let started = Instant::now();
        let found = fusion_links(&network, &Default::default(), &config, &Control::none()).unwrap();
        println!(
            "{{\"tool\": \"clusternet\", \"algorithm\": \"fusion_links\", \"run\": {run}, \"seconds\": {:.4}, \"nodes\": {}, \"edges\": {}, \"communities\": {}, \"fusion_links\": {}, \"pivots\": {:?}, \"peak_rss_mib\": {:.1}}}",
            started.elapsed().as_secs_f64(),
            found.nodes,
            found.edges,
            found.communities,
            found.total_fusion_links,
            found.pivots,
            peak_rss_mib()
        );
    }
}

/// All-pairs ClusterOverlap on a generated network (clusters, actors, links).
fn overlap_all_pairs(clusters: usize, actors: usize, links: usize) {
    use clusternet::analysis::relations::overlap::{for_each_pair, Dimension, OverlapJob, Pairs};
    let network = synthetic_network(clusters, actors, links);
    let job = OverlapJob {
        pairs: Pairs::All,
        dimensions: Dimension::ALL.to_vec(),
        filter: Default::default(),
        shared_limit: 10,
    };
    let started = Instant::now();
    let mut shared = 0usize;
    let pairs = for_each_pair(&network, &job, &Control::none(), |pair| {
        shared += pair.dimensions.iter().map(|d| d.shared_count).sum::<usize>();
        Ok(())
    })
    .unwrap();
    println!(
        "{{\"tool\": \"clusternet\", \"algorithm\": \"overlap_all_pairs\", \"pairs\": {pairs}, \"seconds\": {:.4}, \"peak_rss_mib\": {:.1}, \"checksum\": {shared}}}",
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
}

fn alert_round(clusters: usize, actors: usize, links: usize) {
    use clusternet::{
        alert::{evaluate::Evaluator, AlertRules},
        analysis::stages::stage_config::StageConfig,
        model::{Change, Channel, Link, LinkKind},
        synthetic::actor_id,
    };
    let network = synthetic_network(clusters, actors, links);
    let (stage, rules) = (StageConfig::default(), AlertRules::default());
    let evaluator = Evaluator {
        stage: &stage,
        rules: &rules,
        revision: 1,
        now_unix_ms: 0,
        stop: &std::sync::atomic::AtomicBool::new(false),
    };
    // BENCH_BASELINES runs of the baseline (default 3), their median: one
    // run moves by a tenth from run to run on this machine.
    let mut baselines = Vec::new();
    let mut kept = std::collections::HashMap::new();
    for _ in 0..support::env_or("BENCH_BASELINES", 3).max(1) {
        drop(std::mem::take(&mut kept));
        let started = Instant::now();
        let states = evaluator.baseline(&network).unwrap();
        baselines.push(started.elapsed().as_secs_f64());
        kept = states.into_iter().collect();
    }
    baselines.sort_by(f64::total_cmp);
    let baseline_seconds = baselines[baselines.len() / 2];
    let block = (actors * 9 / 10 / clusters).max(1);
    let mut rounds_ms = Vec::new();
    let mut alerts = 0;
    let rounds = support::env_or("BENCH_ROUNDS", 50);
    // BENCH_ROUND_LINKS new links per round (default 1), as a burst of
    // batches evaluated together would bring.
    let per_round = support::env_or("BENCH_ROUND_LINKS", 1);
    for p in 0..rounds {
        let changes: Vec<Change> = (0..per_round)
            .map(|i| {
                let n = p * per_round + i;
                let (a, b) = (n * 7 % clusters, (n * 7 + 1) % clusters);
                Change::UpsertLink(Link {
                    source: actor_id(a * block + 2),
                    target: actor_id(b * block + 3),
                    kind: LinkKind::Ownership,
                    channel: Channel::Physical,
                    weight: 1.0,
                    validity: Default::default(),
                })
            })
            .collect();
        let mut after = network.clone();
        after.apply(&changes).unwrap();
        let started = Instant::now();
        let outcome = evaluator
            .evaluate(Some(&network), &after, changes.iter(), &kept)
            .unwrap();
        rounds_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        alerts += outcome.alerts.len();
    }
    rounds_ms.sort_by(f64::total_cmp);
    println!(
        "{{\"tool\": \"clusternet\", \"algorithm\": \"alert_round\", \"baseline_seconds\": {baseline_seconds:.3}, \"round_ms_p50\": {:.1}, \"round_ms_p90\": {:.1}, \"round_ms_max\": {:.1}, \"alerts\": {alerts}}}",
        rounds_ms[rounds_ms.len() / 2],
        rounds_ms[rounds_ms.len() * 9 / 10],
        rounds_ms[rounds_ms.len() - 1]
    );
}

/// Quantiles of `values`: p50, p90, p95, p99, max.
fn quantiles(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return "-".into();
    }
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!(
        "{:.3} | {:.3} | {:.3} | {:.3} | {:.3}",
        at(0.5),
        at(0.9),
        at(0.95),
        at(0.99),
        at(1.0)
    )
}

/// Prints the calibration tables for a set of generated networks.
fn calibrate(title: &str, models: Vec<clusternet::synthetic::Districts>) {
    use clusternet::analysis::{
        stages::stage::{assess, Stage},
        stages::stage_config::StageConfig,
        stages::wholes::detect,
    };
    let config = StageConfig::default();
    let mut figures: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut passes: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut clusters, mut judged_virtual, mut networks, mut with_patterns) = (0, 0, 0, 0);
    let mut stages: std::collections::BTreeMap<&str, usize> = Default::default();
    for model in &models {
        let network = network_of(clusternet::synthetic::districts(model));
        networks += 1;
        with_patterns += usize::from(
            !detect(stage_context(&network, &GraphFilter::default(), &config))
                .unwrap()
                .is_empty(),
        );
        for a in assess(stage_context(&network, &GraphFilter::default(), &config)).unwrap() {
            if a.evidence.places.len() < 2 {
                continue;
            }
            clusters += 1;
            judged_virtual += usize::from(a.stage == Stage::VirtualIntegration);
            *stages.entry(a.stage.as_str()).or_default() += 1;
            for s in &a.scores {
                figures
                    .entry(format!("score {}", s.stage.as_str()))
                    .or_default()
                    .push(s.score);
                for g in &s.gates {
                    let name = format!("{} gate {}", s.stage.as_str(), g.name);
                    figures.entry(name.clone()).or_default().push(g.value);
                    *passes.entry(name).or_default() += usize::from(g.met);
                }
            }
        }
    }
    println!("\n{title}: {networks} networks, {clusters} clusters with two places or more");
    println!(
        "judged VIRTUAL: {judged_virtual} ({:.2}%); networks with a pattern: {with_patterns} ({:.2}%)",
        100.0 * judged_virtual as f64 / clusters.max(1) as f64,
        100.0 * with_patterns as f64 / networks.max(1) as f64
    );
    println!("verdicts: {stages:?}");
    println!("| figure | p50 | p90 | p95 | p99 | max | gate met |");
    println!("|---|---|---|---|---|---|---|");
    for (name, values) in figures {
        let met = passes
            .get(&name)
            .map(|n| format!("{:.1}%", 100.0 * *n as f64 / values.len() as f64))
            .unwrap_or_default();
        println!("| {name} | {} | {met} |", quantiles(values));
    }
}

fn calibration(count: u64) {
    use clusternet::synthetic::{null_models, specialised_districts, Districts};
    let started = Instant::now();
    calibrate("Null models", null_models(count).collect());
    let built: Vec<Districts> = specialised_districts(count / 4).collect();
    calibrate("Specialised, interacting parks joined by a platform", built);
    eprintln!("{:.1} s", started.elapsed().as_secs_f64());
}

/// Wholes across clusters at national scale: `clusters` single-site
/// clusters of 20-60 members, a national platform and three regional ones
/// tied to half of all members, 30% of every cluster's ties to random
/// other clusters, and `wholes` built wholes of three clusters among them.
/// Prints the search's time and cost, what it found, and how many of the
/// built wholes it found whole.
fn wholes(clusters: usize, wholes: usize) {
    use clusternet::{
        analysis::stages::{stage::assess, stage_config::StageConfig, wholes::find},
        synthetic::{regions, Regions},
    };
    let model = Regions {
        prefix: "nation".into(),
        clusters,
        members: 20..=60,
        degree: 6.0,
        cross_share: 0.3,
        online_share: 0.35,
        platform_reach: 0.5,
        own_mixes: true,
        paired: false,
        wholes,
        whole_size: 3,
        whole_share: 0.4,
        seed: 2026,
    };
    let started = Instant::now();
    let changes = regions(&model);
    let mut network = clusternet::network::Network::default();
    let changes: Vec<_> = changes.into_iter().map(|c| c.validated().unwrap()).collect();
    network.apply(&changes).unwrap();
    eprintln!(
        "generated {} actors, {} links in {:.1} s",
        network.actors.len(),
        network.links.len(),
        started.elapsed().as_secs_f64()
    );
    let config = StageConfig::default();
    let built: Vec<Vec<clusternet::model::Id>> = (0..wholes)
        .map(|w| {
            (0..3)
                .map(|i| format!("nation-cluster-{:03}", w * 3 + i).into())
                .collect()
        })
        .collect();
    for run in 0..3 {
        let started = Instant::now();
        let found = find(stage_context(&network, &GraphFilter::default(), &config), None).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let whole_found = built
            .iter()
            .filter(|b| found.patterns.iter().any(|p| p.clusters == **b))
            .count();
        let largest = found.patterns.iter().map(|p| p.clusters.len()).max().unwrap_or(0);
        let started = Instant::now();
        let assessed = assess(stage_context(&network, &GraphFilter::default(), &config)).unwrap();
        let assess_seconds = started.elapsed().as_secs_f64();
        let virtual_ones = assessed
            .iter()
            .filter(|a| a.stage == clusternet::analysis::stages::stage::Stage::VirtualIntegration)
            .count();
        let one = clusternet::graph::GraphFilter {
            clusters: vec![format!("nation-cluster-{:03}", clusters - 1 - run).into()],
            ..Default::default()
        };
        let started = Instant::now();
        assess(stage_context(&network, &one, &config)).unwrap();
        let one_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        find(stage_context(&network, &one, &config), Some(&one.clusters)).unwrap();
        let search_one_ms = started.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{{\"tool\": \"clusternet\", \"algorithm\": \"wholes\", \"run\": {run}, \"clusters\": {clusters}, \"actors\": {}, \"links\": {}, \"search_seconds\": {seconds:.3}, \"places_read\": {}, \"candidate_pairs\": {}, \"merges_tried\": {}, \"bounded\": {}, \"wholes\": {}, \"largest_whole_clusters\": {largest}, \"built\": {wholes}, \"built_found\": {whole_found}, \"assess_all_seconds\": {assess_seconds:.3}, \"virtual_clusters\": {virtual_ones}, \"assess_one_ms\": {one_ms:.1}, \"search_one_ms\": {search_one_ms:.1}, \"peak_rss_mib\": {:.1}}}",
            network.actors.len(),
            network.links.len(),
            found.cost.places_read,
            found.cost.candidate_pairs,
            found.cost.merges_tried,
            found.cost.bounded,
            found.patterns.len(),
            peak_rss_mib()
        );
    }
}

/// The calibration of wholes across clusters: regional null models (half
/// with one national segment mix and many random ties between clusters,
/// half with a mix of each cluster's own and few) and built multi-city
/// wholes among padding. Prints, for each family, the clusters judged
/// VIRTUAL_INTEGRATION and the networks with a whole across clusters.
fn calibration_regions(count: u64) {
    use clusternet::{
        analysis::stages::{
            stage::{assess, Stage},
            stage_config::StageConfig,
            wholes::detect,
        },
        synthetic::{regional_null_models, regional_wholes, regions, Regions},
    };
    let started = Instant::now();
    let config = StageConfig::default();
    let judge = |name: &str, models: Vec<Regions>| {
        let (mut clusters, mut virtual_ones, mut networks, mut with_wholes, mut built_found) = (0, 0, 0, 0, 0);
        let mut candidate_pairs = 0;
        for model in &models {
            let changes: Vec<_> = regions(model).into_iter().map(|c| c.validated().unwrap()).collect();
            let mut network = clusternet::network::Network::default();
            network.apply(&changes).unwrap();
            let assessed = assess(stage_context(&network, &GraphFilter::default(), &config)).unwrap();
            clusters += assessed.len();
            virtual_ones += assessed.iter().filter(|a| a.stage == Stage::VirtualIntegration).count();
            let found = detect(stage_context(&network, &GraphFilter::default(), &config)).unwrap();
            let search = clusternet::analysis::stages::wholes::find(
                stage_context(&network, &GraphFilter::default(), &config),
                None,
            );
            candidate_pairs += search.unwrap().cost.candidate_pairs;
            let across: Vec<_> = found.iter().filter(|p| p.clusters.len() > 1).collect();
            networks += 1;
            with_wholes += usize::from(!across.is_empty());
            let built: Vec<clusternet::model::Id> = (0..model.whole_size * model.wholes)
                .map(|c| format!("{}-cluster-{c:03}", model.prefix).into())
                .collect();
            built_found += usize::from(model.wholes > 0 && across.iter().any(|p| p.clusters == built));
        }
        println!(
            "| {name} | {networks} | {clusters} | {candidate_pairs} | {virtual_ones} ({:.2}%) | {with_wholes} ({:.1}%) | {built_found} |",
            100.0 * virtual_ones as f64 / clusters.max(1) as f64,
            100.0 * with_wholes as f64 / networks.max(1) as f64
        );
    };
    println!("| family | networks | clusters | candidate pairs | judged VIRTUAL | networks with a whole | built wholes found whole |");
    println!("|---|---|---|---|---|---|---|");
    let nulls: Vec<Regions> = regional_null_models(count).collect();
    let (own, one): (Vec<Regions>, Vec<Regions>) = nulls.into_iter().partition(|m| m.own_mixes);
    let (paired, random): (Vec<Regions>, Vec<Regions>) = one.into_iter().partition(|m| m.paired);
    judge("null: each cluster its own mix, 2-10% of ties to random clusters", own);
    judge("null: one national mix, 10-50% of ties to random clusters", random);
    judge("null: one national mix, 10-50% of ties to one partner cluster", paired);
    judge(
        "built: one whole of 2-4 clusters among 12",
        regional_wholes(count / 4).collect(),
    );
    eprintln!("{:.1} s", started.elapsed().as_secs_f64());
}

/// The stage analyses' context for a benchmark: never cancelled.
fn stage_context<'a>(
    network: &'a clusternet::network::Network,
    filter: &'a GraphFilter,
    config: &'a clusternet::analysis::stages::stage_config::StageConfig,
) -> StageContext<'a> {
    static NEVER: std::sync::LazyLock<Control<'static>> = std::sync::LazyLock::new(Control::none);
    StageContext {
        network,
        filter,
        config,
        control: &NEVER,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("generate") => generate(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
            &args[4],
        ),
        Some("run") => run(&args[1], &args[2]),
        Some("substitutes") => substitutes_per_actor(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        ),
        Some("stages") => stages(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        ),
        Some("gaps") => gaps(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        ),
        Some("fusion-pivots") => fusion_pivots(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        ),
        Some("fusion") => fusion(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
            args.get(4).map(|p| p.parse().unwrap()),
        ),
        Some("calibration") => calibration(args.get(1).map_or(200, |n| n.parse().unwrap())),
        Some("calibration-regions") => calibration_regions(args.get(1).map_or(200, |n| n.parse().unwrap())),
        Some("wholes") => wholes(args[1].parse().unwrap(), args[2].parse().unwrap()),
        Some("alert-round") => alert_round(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        ),
        Some("alert-parts") => alert_parts(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        ),
        Some("moonshot") => moonshot(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args.get(3).map_or(20.0, |g| g.parse().unwrap()),
        ),
        Some("overlap") => overlap_all_pairs(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        ),
        _ => eprintln!("usage: see benches/compare.py (generate NODES M SEED FILE | run ALGORITHM FILE)"),
    }
}

/// What each part of a cluster's alert figures costs, per cluster, on the
/// first 50 clusters.
fn alert_parts(clusters: usize, actors: usize, links: usize) {
    use clusternet::{
        analysis::relations::{
            crossing::capital_ties_by_other,
            fusion::{cross_industry_ties_by_other, IndustryLevel},
            overlap::member_jaccards,
        },
        analysis::stages::{stage::assess, stage_config::StageConfig, wholes::detect},
        graph::GraphFilter,
    };
    let network = synthetic_network(clusters, actors, links);
    let stage = StageConfig::default();
    let ids: Vec<Id> = network.clusters.keys().take(50).cloned().collect();
    let incident: usize = ids
        .iter()
        .map(|c| {
            network
                .member_indexes(c)
                .map(|ix| network.incident(ix).count())
                .sum::<usize>()
        })
        .sum();
    println!("incident links per cluster {}", incident / ids.len());
    let time = |name: &str, f: &dyn Fn(&Id)| {
        let started = Instant::now();
        for c in &ids {
            f(c);
        }
        println!(
            "{name}: {:.3} ms per cluster",
            started.elapsed().as_secs_f64() * 1000.0 / ids.len() as f64
        );
    };
    let control = Control::none();
    time("the members' links, with their data", &|c| {
        let n: usize = network
            .member_indexes(c)
            .map(|ix| network.incident(ix).filter(|k| network.links.get(k).is_some()).count())
            .sum();
        std::hint::black_box(n);
    });
    time("the members' links, keys only", &|c| {
        let n: usize = network.member_indexes(c).map(|ix| network.incident(ix).count()).sum();
        std::hint::black_box(n);
    });
    time("assess", &|c| {
        let f = GraphFilter {
            clusters: vec![c.clone()],
            ..GraphFilter::default()
        };
        std::hint::black_box(
            assess(StageContext {
                network: &network,
                filter: &f,
                config: &stage,
                control: &control,
            })
            .unwrap(),
        );
    });
    time("detect", &|c| {
        let f = GraphFilter {
            clusters: vec![c.clone()],
            ..GraphFilter::default()
        };
        std::hint::black_box(
            detect(StageContext {
                network: &network,
                filter: &f,
                config: &stage,
                control: &control,
            })
            .unwrap(),
        );
    });
    time("jaccards", &|c| {
        std::hint::black_box(member_jaccards(&network, c));
    });
    time("cross industry ties", &|c| {
        std::hint::black_box(cross_industry_ties_by_other(&network, c, IndustryLevel::Division));
    });
    time("capital ties", &|c| {
        std::hint::black_box(capital_ties_by_other(&network, c));
    });
}
