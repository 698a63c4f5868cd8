//! The data directory under a steady write stream, alerts on (issue 31).
//!
//! On the release server: a generated network (BENCH_ACTORS 100k,
//! BENCH_LINKS 1M, BENCH_CLUSTERS 100, so clusters of 900 members; with 10
//! clusters of 9,000 the engine's first evaluation of the import takes
//! over ten minutes on 2 cores) is imported and evaluated; its data directory is the
//! clean import. Then one writer sends one-change batches back to back
//! for BENCH_SECONDS (300): a tie between two members of cluster 0, then
//! the same tie deleted, so
//! every batch makes the engine recompute and store that cluster's figures
//! while the network stays the size of the clean import. Every
//! BENCH_SAMPLE_SECONDS (30) it prints the batches so far, the data
//! directory and `alerts/` (bytes of their files), the alert store's own
//! gauge, and the ratio to the clean import; at the end the largest ratio
//! and the alert engine's lag once writes stop.
//!
//! `cargo bench --bench alert_store`

use std::time::{Duration, Instant};

use clusternet::{
    service::{
        convert::change_to_pb,
        pb::{self, alert_service_client::AlertServiceClient, network_service_client::NetworkServiceClient},
    },
    synthetic::{actor_id, generate, SyntheticConfig},
};
use tonic::transport::Channel;

#[path = "../tests/it/crash_cycle.rs"]
mod crash_cycle;
#[path = "support/mod.rs"]
mod support;

use crash_cycle::dir_size;
use support::{env_or, free_port, get_metrics, metric, start_with, terminate, wait_serving};

/// The latest revision whose alerts are all raised.
async fn evaluated(alerts: &mut AlertServiceClient<Channel>) -> u64 {
    alerts
        .list_alerts(pb::ListAlertsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .evaluated_revision
}

async fn settle(alerts: &mut AlertServiceClient<Channel>, revision: u64) -> Duration {
    let started = Instant::now();
    while evaluated(alerts).await < revision {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Batch `i` of the stream: even, a new supply tie between two members of
/// cluster 0; odd, the same tie deleted. The network stays the size it was
/// imported at, so the clean import stays the measure of what the data
/// directory should hold, while every batch changes the cluster's own
/// network and so its kept figures.
fn toggling(i: usize, members: usize) -> pb::ApplyChangesRequest {
    let k = i / 2;
    let (source, target) = (actor_id(k % members), actor_id((k * 7919 + 1) % members));
    let change = if i.is_multiple_of(2) {
        pb::change::Change::UpsertLink(pb::Link {
            source: source.to_string(),
            target: target.to_string(),
            kind: pb::LinkKind::Supply as i32,
            channel: pb::Channel::Physical as i32,
            weight: 1.0,
            ..Default::default()
        })
    } else {
        pb::change::Change::DeleteLink(pb::LinkKey {
            source: source.to_string(),
            target: target.to_string(),
            kind: pb::LinkKind::Supply as i32,
        })
    };
    pb::ApplyChangesRequest {
        changes: vec![pb::Change { change: Some(change) }],
    }
}

#[tokio::main]
async fn main() {
    let config = SyntheticConfig {
        clusters: env_or("BENCH_CLUSTERS", 100),
        actors: env_or("BENCH_ACTORS", 100_000),
        links: env_or("BENCH_LINKS", 1_000_000),
        ..SyntheticConfig::default()
    };
    let seconds = env_or("BENCH_SECONDS", 300) as u64;
    let sample = env_or("BENCH_SAMPLE_SECONDS", 30) as u64;
    let members = config.actors * 9 / 10 / config.clusters.max(1);
    println!(
        "machine: {} CPUs; network: {} actors, {} links, {} clusters ({members} members in cluster 0)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        config.actors,
        config.links,
        config.clusters
    );

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics_address = format!("127.0.0.1:{}", free_port());
    let server = start_with(dir.path(), port, &["--metrics-listen", &metrics_address]);
    wait_serving(port, Instant::now()).await;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut network = NetworkServiceClient::new(channel.clone()).max_encoding_message_size(64 << 20);
    let mut alerts = AlertServiceClient::new(channel);

    let started = Instant::now();
    let load: Vec<pb::ImportChangesRequest> = generate(&config)
        .chunks(10_000)
        .map(|chunk| pb::ImportChangesRequest {
            changes: chunk.iter().map(change_to_pb).collect(),
        })
        .collect();
    let revision = network
        .import_changes(tokio_stream::iter(load))
        .await
        .unwrap()
        .into_inner()
        .revision;
    settle(&mut alerts, revision).await;
    // Let the writer's checkpoint and sled's own background work land.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let clean = dir_size(dir.path());
    let clean_alerts = dir_size(&dir.path().join("alerts"));
    println!(
        "clean import: {:.1} MB, alerts/ {:.1} MB ({:.0} s to import and evaluate)",
        clean as f64 / 1e6,
        clean_alerts as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    println!("   time   batches  batches/s   data dir MB  alerts/ MB  alert gauge MB  x clean");

    let stream_started = Instant::now();
    let mut next_sample = Duration::from_secs(sample);
    let (mut sent, mut last_revision, mut worst) = (0usize, revision, 0f64);
    let mut print = |sent: usize, at: Duration, gauge: Option<f64>| {
        let (size, alerts_size) = (dir_size(dir.path()), dir_size(&dir.path().join("alerts")));
        let ratio = size as f64 / clean as f64;
        worst = worst.max(ratio);
        println!(
            "{:>6.0} s {sent:>9} {:>10.0} {:>13.1} {:>11.1} {:>15.1} {ratio:>8.2}",
            at.as_secs_f64(),
            sent as f64 / at.as_secs_f64(),
            size as f64 / 1e6,
            alerts_size as f64 / 1e6,
            gauge.unwrap_or(f64::NAN) / 1e6,
        );
        worst
    };
    while stream_started.elapsed() < Duration::from_secs(seconds) {
        last_revision = network
            .apply_changes(toggling(sent, members))
            .await
            .unwrap()
            .into_inner()
            .revision;
        sent += 1;
        if stream_started.elapsed() >= next_sample {
            let gauge = metric(&get_metrics(&metrics_address).await, "clusternet_alert_store_bytes");
            print(sent, stream_started.elapsed(), gauge);
            next_sample += Duration::from_secs(sample);
        }
    }
    let lag = settle(&mut alerts, last_revision).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let gauge = metric(&get_metrics(&metrics_address).await, "clusternet_alert_store_bytes");
    let worst = print(sent, stream_started.elapsed(), gauge);
    println!(
        "largest: {worst:.2}x the clean import; alerts evaluated {:.1} s after the last write",
        lag.as_secs_f64()
    );
    terminate(server);
}
