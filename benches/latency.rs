//! The transport's floor, as a warm client sees it: the release server with
//! the demo networks, one connection kept open, then BENCH_CALLS (500) calls
//! of each kind one after another: a 100-row ListLinks page, a 5-row one, and
//! a demo PageRank (top 10, read to the end of its stream). Prints p50 and
//! p99. Before TCP_NODELAY was set on accepted sockets, small replies waited
//! ~44 ms for the client's delayed ACK.

use std::time::{Duration, Instant};

use clusternet::service::pb::{
    self, analysis_service_client::AnalysisServiceClient, network_service_client::NetworkServiceClient,
};

#[path = "support/mod.rs"]
mod support;

use support::{env_or, free_port, start_with};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "| {name} | {} | {:.2} | {:.2} |",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99)
    );
}

#[tokio::main]
async fn main() {
    let calls = env_or("BENCH_CALLS", 500);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_with(dir.path(), port, &["--demo", "--no-alerts"]);
    let channel = loop {
        match tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => break channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut network = NetworkServiceClient::new(channel.clone());
    let mut analysis = AnalysisServiceClient::new(channel);
    // Wait for the demo load, then warm up.
    while network
        .list_links(pb::ListLinksRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .map_or(true, |r| r.into_inner().links.len() < 100)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "machine: {} CPUs; {calls} calls each on one warm connection\n\n| call | calls | p50 ms | p99 ms |\n|---|---|---|---|",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for page_size in [100, 5] {
        let mut ms = Vec::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            let page = network
                .list_links(pb::ListLinksRequest {
                    page_size,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            ms.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(page.links.len(), page_size as usize);
        }
        report(&format!("ListLinks, {page_size} rows"), ms);
    }
    let mut ms = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let mut stream = analysis
            .centrality(pb::CentralityRequest {
                measure: pb::CentralityMeasure::Pagerank as i32,
                top_k: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        while stream.message().await.unwrap().is_some() {}
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    report("Centrality, demo PageRank top 10", ms);
    let _ = server.kill();
    let _ = server.wait();
}
