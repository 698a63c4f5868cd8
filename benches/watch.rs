//! Change-feed benchmark: the release server with a generated network loaded
//! (100k actors, 1M links by default; BENCH_ACTORS, BENCH_LINKS,
//! BENCH_CLUSTERS), then small batches applied one after another (BENCH_BATCHES,
//! default 500, of 10 links each), first with no watchers and then with
//! BENCH_WATCHERS (default 100) following `WatchChanges` live, alternately
//! (BENCH_RUNS rounds of each, default 2). Prints ApplyChanges throughput in
//! both cases and the delay from an ApplyChanges reply to the batch's
//! arrival at each watcher (p50, p99, max), and checks that every watcher got
//! every batch once, in order.

use std::{
    collections::HashMap,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clusternet::{
    model::Change,
    service::{
        convert::change_to_pb,
        pb::{self, network_service_client::NetworkServiceClient},
    },
    synthetic::{actor_id, generate, SyntheticConfig},
};

#[path = "support/mod.rs"]
mod support;

use support::{env_or, free_port, start};

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<f64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// `count` batches of 10 new cooperation links each, numbered from `first`.
fn small_batches(first: usize, count: usize, actors: usize) -> Vec<pb::ApplyChangesRequest> {
    (first..first + count)
        .map(|b| pb::ApplyChangesRequest {
            changes: (0..10)
                .map(|i| {
                    let n = b * 10 + i;
                    change_to_pb(&Change::UpsertLink(clusternet::model::Link {
                        source: actor_id((n * 7919) % actors),
                        target: actor_id((n * 104_729 + 1) % actors),
                        kind: clusternet::model::LinkKind::Informal,
                        channel: clusternet::model::Channel::Virtual,
                        weight: 1.0,
                        validity: Default::default(),
                    }))
                })
                .collect(),
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let config = SyntheticConfig {
        clusters: env_or("BENCH_CLUSTERS", 1_000),
        actors: env_or("BENCH_ACTORS", 100_000),
        links: env_or("BENCH_LINKS", 1_000_000),
        ..SyntheticConfig::default()
    };
    let (watchers, count, runs) = (
        env_or("BENCH_WATCHERS", 100),
        env_or("BENCH_BATCHES", 500),
        env_or("BENCH_RUNS", 2),
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(dir.path(), port);
    let url = format!("http://127.0.0.1:{port}");
    let mut client = loop {
        match NetworkServiceClient::connect(url.clone()).await {
            Ok(client) => break client.max_encoding_message_size(64 << 20),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    eprintln!("loading {} actors, {} links", config.actors, config.links);
    let load: Vec<pb::ImportChangesRequest> = generate(&config)
        .chunks(10_000)
        .map(|chunk| pb::ImportChangesRequest {
            changes: chunk.iter().map(change_to_pb).collect(),
        })
        .collect();
    client.import_changes(tokio_stream::iter(load)).await.unwrap();

    let (mut without, mut with, mut delays) = (Vec::new(), Vec::new(), Vec::new());
    let mut next_batch = 0;
    for round in 0..runs * 2 {
        let watching = round % 2 == 1;
        // Reply times by revision, for the watchers to measure against.
        let replied: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let mut tasks = Vec::new();
        let first_revision = client
            .get_cluster(pb::GetClusterRequest {
                id: "cluster-0000".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .revision
            + 1;
        if watching {
            for _ in 0..watchers {
                let mut watcher = NetworkServiceClient::connect(url.clone()).await.unwrap();
                let mut stream = watcher
                    .watch_changes(pb::WatchChangesRequest {
                        from_revision: first_revision,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let replied = replied.clone();
                tasks.push(tokio::spawn(async move {
                    let mut arrivals = Vec::with_capacity(count);
                    while arrivals.len() < count {
                        let event = stream.message().await.unwrap().unwrap();
                        arrivals.push((event.revision, Instant::now()));
                    }
                    // In order, once each.
                    for (i, (revision, _)) in arrivals.iter().enumerate() {
                        assert_eq!(*revision, first_revision + i as u64);
                    }
                    // Wait until every reply time is recorded, then measure.
                    loop {
                        if replied.lock().unwrap().len() == count {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let replied = replied.lock().unwrap();
                    arrivals
                        .into_iter()
                        .map(|(revision, at)| at.saturating_duration_since(replied[&revision]).as_secs_f64() * 1000.0)
                        .collect::<Vec<f64>>()
                }));
            }
        }
        let batches = small_batches(next_batch, count, config.actors);
        next_batch += count;
        let server_pid = server.id().to_string();
        let (server_cpu, own_cpu) = (cpu_seconds(&server_pid), cpu_seconds("self"));
        let started = Instant::now();
        for batch in batches {
            let reply = client.apply_changes(batch).await.unwrap().into_inner();
            replied.lock().unwrap().insert(reply.revision, Instant::now());
        }
        let rate = count as f64 / started.elapsed().as_secs_f64();
        eprintln!(
            "round {round}: {rate:.0} batches/s with {} watchers; CPU s: server {:.2}, this process (client, watchers) {:.2}",
            if watching { watchers } else { 0 },
            cpu_seconds(&server_pid) - server_cpu,
            cpu_seconds("self") - own_cpu,
        );
        if watching {
            with.push(rate);
            for task in tasks {
                delays.extend(task.await.unwrap());
            }
        } else {
            without.push(rate);
        }
    }
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let _ = server.wait();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    delays.sort_by(f64::total_cmp);
    let (a, b) = (median(&mut without), median(&mut with));
    println!(
        "\nchange feed: {} actors, {} links; {count} batches of 10 links per round, {runs} rounds each way, {} CPUs",
        config.actors,
        config.links,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("ApplyChanges without watchers: median {a:.0} batches/s {without:?}");
    println!(
        "ApplyChanges with {watchers} watchers:   median {b:.0} batches/s {with:?}  ({:.0}% of without)",
        100.0 * b / a
    );
    println!(
        "reply -> arrival at a watcher (ms), {} deliveries: p50 {:.2}, p99 {:.2}, max {:.2}",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays[delays.len() - 1]
    );
}
