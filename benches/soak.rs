//! Load and soak: BENCH_CLIENTS (50) clients, each on its own connection,
//! mixing reads, writes, analyses and watches against the release server for
//! BENCH_SECONDS (600), on a generated network (BENCH_ACTORS 20k, BENCH_LINKS
//! 200k, BENCH_CLUSTERS 200) loaded first. Alerts are on.
//!
//! Of every ten clients: six read (ListActors, GetActor, ListLinks,
//! GetNeighborhood), two write (ApplyChanges of five new links, every
//! 100 ms each), one analyses (PageRank top 10, label propagation,
//! AssessStage of one cluster, ClusterOverlap of one pair, with a 30 s
//! deadline), one watches (WatchChanges or WatchAlerts, live).
//!
//! Prints p50/p99 per call kind, the codes each ended with, the events the
//! watchers got, and the server's RSS every 30 s; then what its Prometheus
//! endpoint says of the calls.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use clusternet::{
    model::Change,
    service::{
        convert::change_to_pb,
        pb::{
            self, alert_service_client::AlertServiceClient, analysis_service_client::AnalysisServiceClient,
            network_service_client::NetworkServiceClient,
        },
    },
    synthetic::{actor_id, cluster_id, generate, SyntheticConfig},
};
use tonic::{transport::Channel, Code};

#[path = "support/mod.rs"]
mod support;

use support::{env_or, free_port, get_metrics, start_with};

#[derive(Default)]
struct Record {
    latencies: HashMap<&'static str, Vec<f64>>,
    codes: BTreeMap<(&'static str, String), u64>,
}

type Shared = Arc<Mutex<Record>>;

fn note<T>(record: &Shared, kind: &'static str, started: Instant, result: &Result<T, tonic::Status>) {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let code = match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    let mut record = record.lock().unwrap();
    record.latencies.entry(kind).or_default().push(ms);
    *record.codes.entry((kind, format!("{code:?}"))).or_default() += 1;
}

fn rss_mib(pid: u32) -> f64 {
    support::memory_mib(pid).1
}

async fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .expect("connects")
}

/// Reads a server stream to its end.
async fn drain<T>(stream: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>) -> Result<(), tonic::Status> {
    let mut stream = stream?.into_inner();
    while stream.message().await?.is_some() {}
    Ok(())
}

async fn reader(port: u16, n: usize, actors: usize, record: Shared, stop: Arc<AtomicBool>) {
    let mut client = NetworkServiceClient::new(channel(port).await);
    let mut i = n * 7919;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let started = Instant::now();
        match i % 4 {
            0 => {
                let r = client
                    .list_actors(pb::ListActorsRequest {
                        page_size: 100,
                        ..Default::default()
                    })
                    .await;
                note(&record, "ListActors (100)", started, &r);
            }
            1 => {
                let r = client
                    .get_actor(pb::GetActorRequest {
                        id: actor_id(i % actors).to_string(),
                    })
                    .await;
                note(&record, "GetActor", started, &r);
            }
            2 => {
                let r = client
                    .list_links(pb::ListLinksRequest {
                        page_size: 100,
                        ..Default::default()
                    })
                    .await;
                note(&record, "ListLinks (100)", started, &r);
            }
            _ => {
                let r = client
                    .get_neighborhood(pb::GetNeighborhoodRequest {
                        actor_id: actor_id(i % actors).to_string(),
                        depth: 2,
                        max_actors: 500,
                        ..Default::default()
                    })
                    .await;
                note(&record, "GetNeighborhood (2 hops)", started, &r);
            }
        }
    }
}

async fn writer(port: u16, n: usize, actors: usize, record: Shared, stop: Arc<AtomicBool>) {
    let mut client = NetworkServiceClient::new(channel(port).await);
    let mut b = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        b += 1;
        let changes = (0..5)
            .map(|k| {
                let x = (n * 1_000_003 + b * 5 + k) * 7919;
                let source = x % actors;
                // Never a link from an actor to itself (INVALID_ARGUMENT).
                let target = (source + 1 + (x / 7) % (actors - 1)) % actors;
                change_to_pb(&Change::UpsertLink(clusternet::model::Link {
                    source: actor_id(source),
                    target: actor_id(target),
                    kind: clusternet::model::LinkKind::Informal,
                    channel: clusternet::model::Channel::Virtual,
                    weight: 1.0 + k as f64,
                    validity: Default::default(),
                }))
            })
            .collect();
        let started = Instant::now();
        let r = client.apply_changes(pb::ApplyChangesRequest { changes }).await;
        note(&record, "ApplyChanges (5 links)", started, &r);
    }
}

async fn analyst(port: u16, n: usize, clusters: usize, record: Shared, stop: Arc<AtomicBool>) {
    let mut client = AnalysisServiceClient::new(channel(port).await);
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let started = Instant::now();
        let deadline = Duration::from_secs(30);
        let (kind, result) = match i % 4 {
            0 => {
                let mut request = tonic::Request::new(pb::CentralityRequest {
                    measure: pb::CentralityMeasure::Pagerank as i32,
                    top_k: 10,
                    ..Default::default()
                });
                request.set_timeout(deadline);
                (
                    "Centrality (PageRank, top 10)",
                    drain(client.centrality(request).await).await,
                )
            }
            1 => {
                let mut request = tonic::Request::new(pb::CommunitiesRequest {
                    algorithm: pb::CommunityAlgorithm::LabelPropagation as i32,
                    ..Default::default()
                });
                request.set_timeout(deadline);
                (
                    "Communities (label propagation)",
                    drain(client.communities(request).await).await,
                )
            }
            2 => {
                let mut request = tonic::Request::new(pb::AssessStageRequest {
                    filter: Some(pb::NetworkFilter {
                        cluster_ids: vec![cluster_id(i % clusters).to_string()],
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                request.set_timeout(deadline);
                (
                    "AssessStage (one cluster)",
                    drain(client.assess_stage(request).await).await,
                )
            }
            _ => {
                let mut request = tonic::Request::new(pb::ClusterOverlapRequest {
                    cluster_a: cluster_id(i % clusters).to_string(),
                    cluster_b: cluster_id((i + 1) % clusters).to_string(),
                    ..Default::default()
                });
                request.set_timeout(deadline);
                (
                    "ClusterOverlap (one pair)",
                    drain(client.cluster_overlap(request).await).await,
                )
            }
        };
        note(&record, kind, started, &result);
        if matches!(&result, Err(s) if s.code() == Code::ResourceExhausted) {
            // As RetryInfo says.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn watcher(port: u16, n: usize, events: Arc<AtomicU64>, record: Shared, stop: Arc<AtomicBool>) {
    let channel = channel(port).await;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let ended = if n.is_multiple_of(2) {
            let mut client = NetworkServiceClient::new(channel.clone());
            follow(
                client.watch_changes(pb::WatchChangesRequest::default()).await,
                &stop,
                &events,
            )
            .await
        } else {
            let mut client = AlertServiceClient::new(channel.clone());
            follow(
                client.watch_alerts(pb::WatchAlertsRequest::default()).await,
                &stop,
                &events,
            )
            .await
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        note(&record, "watch ended", started, &ended);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Counts a watch's events until it ends or the run stops.
async fn follow<T>(
    stream: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
    stop: &AtomicBool,
    events: &AtomicU64,
) -> Result<(), tonic::Status> {
    let mut stream = stream?.into_inner();
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_secs(1), stream.message()).await {
            Err(_) => continue,
            Ok(message) => match message? {
                Some(_) => events.fetch_add(1, Ordering::Relaxed),
                None => return Ok(()),
            },
        };
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let clients = env_or("BENCH_CLIENTS", 50);
    let seconds = env_or("BENCH_SECONDS", 600) as u64;
    let config = SyntheticConfig {
        clusters: env_or("BENCH_CLUSTERS", 200),
        actors: env_or("BENCH_ACTORS", 20_000),
        links: env_or("BENCH_LINKS", 200_000),
        ..SyntheticConfig::default()
    };
    println!(
        "machine: {} CPUs; {clients} clients for {seconds} s on {} actors, {} links, {} clusters",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        config.actors,
        config.links,
        config.clusters
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics_port = free_port();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let mut server = start_with(dir.path(), port, &["--metrics-listen", &metrics_address]);
    let mut loader = loop {
        match NetworkServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
            Ok(client) => break client.max_encoding_message_size(64 << 20),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let batches: Vec<pb::ImportChangesRequest> = generate(&config)
        .chunks(10_000)
        .map(|chunk| pb::ImportChangesRequest {
            changes: chunk.iter().map(change_to_pb).collect(),
        })
        .collect();
    loader
        .import_changes(tokio_stream::iter(batches))
        .await
        .expect("the load");
    println!("loaded; RSS {:.0} MiB", rss_mib(server.id()));

    let record: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for n in 0..clients {
        let (record, stop) = (record.clone(), stop.clone());
        tasks.push(match n % 10 {
            0..=5 => tokio::spawn(reader(port, n, config.actors, record, stop)),
            6 | 7 => tokio::spawn(writer(port, n, config.actors, record, stop)),
            8 => tokio::spawn(analyst(port, n, config.clusters, record, stop)),
            _ => tokio::spawn(watcher(port, n, events.clone(), record, stop)),
        });
    }
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(seconds.min(30))).await;
        let now = rss_mib(server.id());
        println!("{:>4.0} s: RSS {now:.0} MiB", started.elapsed().as_secs_f64());
        rss.push(now);
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(40), task).await;
    }
    let record = std::mem::take(&mut *record.lock().unwrap());
    println!("\n| call | calls | p50 ms | p99 ms |\n|---|---|---|---|");
    let mut kinds: Vec<_> = record.latencies.iter().collect();
    kinds.sort_by_key(|(k, _)| *k);
    for (kind, values) in kinds {
        if *kind == "watch ended" {
            continue;
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "| {kind} | {} | {:.2} | {:.2} |",
            sorted.len(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99)
        );
    }
    println!("\nended with:");
    for ((kind, code), count) in &record.codes {
        println!("  {kind}: {code} x{count}");
    }
    println!("watch events received: {}", events.load(Ordering::Relaxed));
    println!(
        "RSS over the run: first {:.0} MiB, max {:.0} MiB, last {:.0} MiB",
        rss.first().copied().unwrap_or(f64::NAN),
        rss.iter().copied().fold(f64::NAN, f64::max),
        rss.last().copied().unwrap_or(f64::NAN)
    );
    let scrape = get_metrics(&metrics_address).await;
    let lines: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("clusternet_calls_total") || l.starts_with("clusternet_analyses_total"))
        .collect();
    println!("\nthe server's own count (/metrics):\n{}", lines.join("\n"));
    let _ = server.kill();
    let _ = server.wait();
}
