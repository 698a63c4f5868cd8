//! Foundation benchmark: durable bulk import, restart and memory of the real
//! server binary on a generated network (100k actors, 1M links, 1,000
//! clusters by default; override with BENCH_ACTORS, BENCH_LINKS,
//! BENCH_CLUSTERS, BENCH_RUNS).
//!
//! For each run: start `clusternet serve` on an empty directory, stream the
//! network through `ImportChanges` in batches of 10,000 changes (BENCH_BATCH; each reply
//! means durable), read the server's peak RSS, stop it with SIGTERM, then
//! start it again on the same directory and time until health says SERVING.
//! Prints the median and the spread of each figure.

use std::time::Instant;

use clusternet::service::pb::network_service_client::NetworkServiceClient;

#[path = "support/mod.rs"]
mod support;

use support::{env_or, free_port, import_batches, median, memory_mib, start, terminate, wait_serving};

fn summary(values: &mut [f64]) -> String {
    let m = median(values);
    format!(
        "median {m:>10.1}   (min {:.1}, max {:.1}, n={})",
        values[0],
        values[values.len() - 1],
        values.len()
    )
}

#[tokio::main]
async fn main() {
    let runs = env_or("BENCH_RUNS", 3);
    let batch_size = env_or("BENCH_BATCH", 10_000);
    let (config, batches) = import_batches(batch_size);

    let (mut throughput, mut import_secs, mut peak_import, mut rss_loaded) = (vec![], vec![], vec![], vec![]);
    let (mut restart_secs, mut peak_restart) = (vec![], vec![]);
    for run in 1..=runs {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = start(dir.path(), port);
        wait_serving(port, Instant::now()).await;
        let mut client = NetworkServiceClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap()
            .max_encoding_message_size(64 << 20);
        let started = Instant::now();
        let reply = client
            .import_changes(tokio_stream::iter(batches.clone()))
            .await
            .expect("import succeeds")
            .into_inner();
        let elapsed = started.elapsed().as_secs_f64();
        let links = reply.counts.unwrap_or_default().links_upserted as f64;
        let (hwm, rss) = memory_mib(server.id());
        eprintln!(
            "run {run}: imported {links} links in {elapsed:.2} s ({:.0} links/s), peak RSS {hwm:.0} MiB",
            links / elapsed
        );
        throughput.push(links / elapsed);
        import_secs.push(elapsed);
        peak_import.push(hwm);
        rss_loaded.push(rss);
        terminate(server);

        let started = Instant::now();
        let server = start(dir.path(), port);
        let took = wait_serving(port, started).await.as_secs_f64();
        let (hwm, _) = memory_mib(server.id());
        eprintln!("run {run}: restart to SERVING in {took:.2} s, peak RSS {hwm:.0} MiB");
        restart_secs.push(took);
        peak_restart.push(hwm);
        terminate(server);
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nclusternet foundation benchmark: {} actors, {} links, {} clusters; batches of {batch_size} changes; {cpus} CPUs",
        config.actors, config.links, config.clusters
    );
    println!(
        "ImportChanges throughput (links/s, durable): {}",
        summary(&mut throughput)
    );
    println!(
        "ImportChanges wall time (s):                 {}",
        summary(&mut import_secs)
    );
    println!(
        "peak RSS after import (MiB):                 {}",
        summary(&mut peak_import)
    );
    println!(
        "RSS with the network loaded (MiB):           {}",
        summary(&mut rss_loaded)
    );
    println!(
        "restart to SERVING (s):                      {}",
        summary(&mut restart_secs)
    );
    println!(
        "peak RSS after restart (MiB):                {}",
        summary(&mut peak_restart)
    );
}
