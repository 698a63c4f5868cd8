//! Alert benchmark, on the release server with a generated network (100k
//! actors, 1M links, 1,000 clusters by default; BENCH_ACTORS, BENCH_LINKS,
//! BENCH_CLUSTERS) and BENCH_SUBSCRIBERS (default 100) alert subscribers,
//! subscriber s watching the clusters c with c mod 100 = s.
//!
//! 1. **Import throughput, alerts on versus off.** BENCH_RUNS (default 2)
//!    rounds each way, alternately, each into an empty server: the whole
//!    network through ImportChanges in batches of 10,000 changes, with the
//!    subscribers connected when alerts are on, and `serve --no-alerts` when
//!    off. Prints changes/s, and for alerts on how long the engine took to
//!    finish evaluating after the import returned and how many alerts it
//!    raised.
//! 2. **Latency.** On the last loaded server, once the load is evaluated,
//!    BENCH_PROBES (default 300) batches of one
//!    new OWNERSHIP link between two clusters; each raises one
//!    CROSS_INVESTMENT_ADDED alert, delivered to the subscribers of its two
//!    clusters. Twice: paced, one batch every BENCH_PROBE_GAP_MS (default
//!    50, 20 batches/s), and back to back (as fast as ApplyChanges answers).
//!    Prints the delay from each ApplyChanges reply to each delivery of its
//!    alert (p50, p99, max) and checks every expected delivery arrived once;
//!    and the delay until every alert of the batch is raised, its clusters'
//!    figures recomputed too (ListAlerts' evaluated_revision, polled).

use std::{
    collections::HashMap,
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clusternet::{
    model::{Change, Link, LinkKind},
    service::{
        convert::change_to_pb,
        pb::{self, alert_service_client::AlertServiceClient, network_service_client::NetworkServiceClient},
    },
    synthetic::{actor_id, cluster_id, generate, SyntheticConfig},
};
use tonic::transport::Channel;

#[path = "support/mod.rs"]
mod support;

use support::{env_or, free_port, start_with};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn connect(url: &str) -> Channel {
    loop {
        match Channel::from_shared(url.to_string()).unwrap().connect().await {
            Ok(channel) => return channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn stop(mut server: Child) {
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let _ = server.wait();
}

/// Subscriber `s` of `n`: the clusters c with c mod n = s, of `kinds`.
fn subscription(s: usize, n: usize, clusters: usize, kinds: &[pb::AlertKind]) -> pb::WatchAlertsRequest {
    pb::WatchAlertsRequest {
        kinds: kinds.iter().map(|k| *k as i32).collect(),
        cluster_ids: (s..clusters).step_by(n).map(|c| cluster_id(c).to_string()).collect(),
        ..Default::default()
    }
}

/// The latest revision whose alerts are all raised, and the latest sequence.
async fn evaluated(alerts: &mut AlertServiceClient<Channel>) -> (u64, u64) {
    let page = alerts
        .list_alerts(pb::ListAlertsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (page.evaluated_revision, page.latest_sequence)
}

/// Waits until the engine has evaluated `revision`; returns the latest sequence.
async fn settled(alerts: &mut AlertServiceClient<Channel>, revision: u64) -> u64 {
    loop {
        let (evaluated, latest) = evaluated(alerts).await;
        if evaluated >= revision {
            return latest;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

/// Subscribers that record (first actor named, arrival) of every alert.
async fn subscribe(url: &str, requests: Vec<pb::WatchAlertsRequest>) -> Arrivals {
    let arrivals: Arrivals = Arc::default();
    for request in requests {
        let mut client = AlertServiceClient::new(connect(url).await);
        let mut stream = client.watch_alerts(request).await.unwrap().into_inner();
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Ok(Some(pb::WatchAlertsResponse { alert: Some(alert) })) = stream.message().await {
                let first = alert.actor_ids.first().cloned().unwrap_or_default();
                arrivals.lock().unwrap().push((first, Instant::now()));
            }
        });
    }
    arrivals
}

/// Applies one probe per cluster in `firsts` (a new OWNERSHIP link from
/// member 2 of cluster a to member 3 of cluster a + 1), `gap` apart, with
/// fresh subscribers of CROSS_INVESTMENT_ADDED; returns the sorted delays
/// (ms) from each reply to each delivery of the probe's alert.
async fn latency(
    url: &str,
    config: &SyntheticConfig,
    subscribers: usize,
    block: usize,
    firsts: impl Iterator<Item = usize>,
    gap: Duration,
) -> (Vec<f64>, Vec<f64>) {
    let channel = connect(url).await;
    let mut network = NetworkServiceClient::new(channel.clone());
    let requests = (0..subscribers)
        .map(|s| subscription(s, subscribers, config.clusters, &[pb::AlertKind::CrossInvestmentAdded]))
        .collect();
    let arrivals = subscribe(url, requests).await;
    // When every alert of a revision is raised (its figures recomputed too):
    // ListAlerts' evaluated_revision, polled every 5 ms.
    let settled_at: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (settled_at, watching) = (settled_at.clone(), watching.clone());
        let mut alerts = AlertServiceClient::new(channel.clone());
        tokio::spawn(async move {
            let mut last = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let (revision, _) = evaluated(&mut alerts).await;
                if revision > last {
                    last = revision;
                    settled_at.lock().unwrap().push((last, Instant::now()));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut replied_at: Vec<(u64, Instant)> = Vec::new();
    let mut replied: HashMap<String, Instant> = HashMap::new();
    let mut expected = 0;
    let mut last_revision = 0;
    let started = Instant::now();
    // Paced from the start (not a gap after each reply, which made 100 a
    // second 78): a late batch goes at once and the next keeps the schedule.
    let mut pace = (!gap.is_zero()).then(|| {
        let mut pace = tokio::time::interval(gap);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pace
    });
    for a in firsts {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        let b = (a + 1) % config.clusters;
        let source = actor_id(a * block + 2);
        let link = Link {
            source: source.clone(),
            target: actor_id(b * block + 3),
            kind: LinkKind::Ownership,
            channel: clusternet::model::Channel::Physical,
            weight: 1.0,
            validity: Default::default(),
        };
        let batch = pb::ApplyChangesRequest {
            changes: vec![change_to_pb(&Change::UpsertLink(link))],
        };
        let reply = network.apply_changes(batch).await.unwrap().into_inner();
        replied.insert(source.to_string(), Instant::now());
        replied_at.push((reply.revision, Instant::now()));
        last_revision = reply.revision;
        expected += if a % subscribers == b % subscribers { 1 } else { 2 };
    }
    eprintln!(
        "probes: {} batches at {:.0} batches/s",
        replied.len(),
        replied.len() as f64 / started.elapsed().as_secs_f64()
    );
    let mut alerts = AlertServiceClient::new(channel);
    settled(&mut alerts, last_revision).await;
    // Let the last deliveries land.
    for _ in 0..100 {
        if arrivals.lock().unwrap().len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    let mut delays: Vec<f64> = arrivals
        .iter()
        .filter_map(|(first, at)| {
            replied
                .get(first)
                .map(|sent| at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    assert_eq!(delays.len(), expected, "every probe alert reaches its subscribers once");
    delays.sort_by(f64::total_cmp);
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.await;
    let settled_at = settled_at.lock().unwrap().clone();
    let mut settled: Vec<f64> = replied_at
        .iter()
        .filter_map(|(revision, sent)| {
            let (_, at) = settled_at.iter().find(|(r, _)| r >= revision)?;
            Some(at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    settled.sort_by(f64::total_cmp);
    (delays, settled)
}

#[tokio::main]
async fn main() {
    let config = SyntheticConfig {
        clusters: env_or("BENCH_CLUSTERS", 1_000),
        actors: env_or("BENCH_ACTORS", 100_000),
        links: env_or("BENCH_LINKS", 1_000_000),
        ..SyntheticConfig::default()
    };
    let (subscribers, runs, probes) = (
        env_or("BENCH_SUBSCRIBERS", 100),
        env_or("BENCH_RUNS", 2),
        env_or("BENCH_PROBES", 300),
    );
    let changes = generate(&config);
    let total = changes.len();
    let load: Vec<pb::ImportChangesRequest> = changes
        .chunks(10_000)
        .map(|chunk| pb::ImportChangesRequest {
            changes: chunk.iter().map(change_to_pb).collect(),
        })
        .collect();

    let (mut off, mut on, mut catch_up, mut raised) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut kept: Option<(Child, tempfile::TempDir, String)> = None;
    for round in 0..runs * 2 {
        let alerts_on = round % 2 == 1;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = start_with(dir.path(), port, if alerts_on { &[] } else { &["--no-alerts"] });
        let url = format!("http://127.0.0.1:{port}");
        let channel = connect(&url).await;
        let mut network = NetworkServiceClient::new(channel.clone()).max_encoding_message_size(64 << 20);
        if alerts_on {
            let requests = (0..subscribers)
                .map(|s| subscription(s, subscribers, config.clusters, &[]))
                .collect();
            subscribe(&url, requests).await;
        }
        let started = Instant::now();
        let reply = network
            .import_changes(tokio_stream::iter(load.clone()))
            .await
            .unwrap()
            .into_inner();
        let took = started.elapsed().as_secs_f64();
        let rate = total as f64 / took;
        if alerts_on {
            let mut alerts = AlertServiceClient::new(channel.clone());
            let latest = settled(&mut alerts, reply.revision).await;
            let behind = started.elapsed().as_secs_f64() - took;
            eprintln!(
                "round {round}: alerts on, {subscribers} subscribers: {rate:.0} changes/s ({took:.1} s); evaluation done {behind:.1} s after the import returned; {latest} alerts"
            );
            on.push(rate);
            catch_up.push(behind);
            raised.push(latest);
        } else {
            eprintln!("round {round}: alerts off: {rate:.0} changes/s ({took:.1} s)");
            off.push(rate);
        }
        if alerts_on && round + 1 == runs * 2 {
            kept = Some((server, dir, url));
        } else {
            stop(server);
        }
    }

    let (server, _dir, url) = kept.expect("a loaded server with alerts on");
    let gap = Duration::from_millis(env_or("BENCH_PROBE_GAP_MS", 50) as u64);
    let clustered = config.actors * 9 / 10;
    let block = (clustered / config.clusters).max(1);
    let probes = probes.min(config.clusters / 2);
    // Paced over clusters 0, 2, 4, ...; back to back over 1, 3, 5, ...: every
    // probe is its own new link and its own cluster pair.
    let paced = latency(&url, &config, subscribers, block, (0..probes).map(|p| 2 * p), gap).await;
    let burst = latency(
        &url,
        &config,
        subscribers,
        block,
        (0..probes).map(|p| 2 * p + 1),
        Duration::ZERO,
    )
    .await;
    stop(server);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut off), median(&mut on));
    println!(
        "\nalerts: {} actors, {} links, {} clusters; {subscribers} subscribers; {runs} imports each way; {} CPUs",
        config.actors,
        config.links,
        config.clusters,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("import, alerts off: median {a:.0} changes/s {off:?}");
    println!(
        "import, alerts on:  median {b:.0} changes/s {on:?}  ({:.0}% of off); evaluation done {catch_up:?} s after; alerts raised {raised:?}",
        100.0 * b / a
    );
    for (name, (delays, settled)) in [
        (format!("one batch every {} ms", gap.as_millis()), &paced),
        ("back to back".to_string(), &burst),
    ] {
        println!(
            "ApplyChanges reply -> alert delivery (ms), {name}: {} deliveries: p50 {:.1}, p99 {:.1}, max {:.1}",
            delays.len(),
            percentile(delays, 0.5),
            percentile(delays, 0.99),
            delays[delays.len() - 1]
        );
        println!(
            "ApplyChanges reply -> every alert of the batch raised, figures too (ms, polled every 5 ms), {name}: {} batches: p50 {:.1}, p99 {:.1}, max {:.1}",
            settled.len(),
            percentile(settled, 0.5),
            percentile(settled, 0.99),
            settled[settled.len() - 1]
        );
    }
}
