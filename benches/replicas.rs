//! Replicas on NATS JetStream (issue 16), end to end as a calling service
//! sees them, on this one machine:
//!
//! * **Durable ingest.** The generated network (BENCH_ACTORS 100k actors,
//!   BENCH_LINKS 1M links, BENCH_CLUSTERS 1,000 clusters) streamed through
//!   `ImportChanges` in batches of BENCH_BATCH (5,000) changes into an empty
//!   server: standing alone (sled), as a replica on one NATS server (R1),
//!   and as a replica on three NATS servers in one JetStream cluster (R3).
//!   BENCH_RUNS (2) runs of each, taken in turn, alerts off (the log is
//!   what is measured).
//! * **Catch-up.** After each replicated import, a new replica started on
//!   an empty directory: the time from its start until a read carrying
//!   `clusternet-min-revision` of the import's last revision is answered.
//! * **Reads.** BENCH_CALLERS (16) callers, each with its own connection,
//!   spread over one, two and three replicas of the R1 log, each reading a
//!   100-row ListLinks page, then a PageRank top 10 of the whole network,
//!   over and over for BENCH_SECONDS (5) seconds: calls per second and the
//!   latency percentiles.
//!
//! ```sh
//! cargo bench --bench replicas
//! BENCH_LINKS=200000 BENCH_ACTORS=20000 cargo bench --bench replicas   # smaller
//! BENCH_PATHS=r1 BENCH_READS=0 cargo bench --bench replicas            # R1 ingest and catch-up only
//! ```
//!
//! Needs `nats-server` (Debian's, /usr/sbin; or CLUSTERNET_NATS_SERVER).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use clusternet::service::pb::{
    self, analysis_service_client::AnalysisServiceClient, network_service_client::NetworkServiceClient,
};
use tonic::{metadata::MetadataValue, transport::Channel, Request};

#[path = "support/mod.rs"]
mod support;

use support::{env_or, free_port, import_batches, median, start_with, terminate, wait_serving};

fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("CLUSTERNET_NATS_SERVER") {
        return path.into();
    }
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .unwrap_or_else(|| "nats-server".into())
}

/// NATS servers in `dir`: one (R1) or three in one JetStream cluster (R3).
struct Nats {
    children: Vec<Child>,
    ports: Vec<u16>,
}

impl Nats {
    fn start(dir: &Path, servers: usize) -> Nats {
        let ports: Vec<u16> = (0..servers).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..servers).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for i in 0..servers {
            let mut config = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{}\nmax_payload: 8MB\njetstream {{ store_dir: \"{}\" }}\n",
                ports[i],
                dir.join(format!("n{i}")).display()
            );
            if servers > 1 {
                let others: Vec<String> = (0..servers)
                    .filter(|j| *j != i)
                    .map(|j| format!("nats-route://127.0.0.1:{}", routes[j]))
                    .collect();
                config.push_str(&format!(
                    "cluster {{ name: bench, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                    routes[i],
                    others.join(", ")
                ));
            }
            let path = dir.join(format!("n{i}.conf"));
            std::fs::write(&path, config).unwrap();
            children.push(
                Command::new(nats_server_binary())
                    .arg("-c")
                    .arg(&path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nats-server runs (apt-get install nats-server)"),
            );
        }
        for port in &ports {
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Nats { children, ports }
    }

    fn urls(&self) -> String {
        let urls: Vec<String> = self.ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
        urls.join(",")
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The serve flags of a replica of `nats` (`copies`: the stream's replicas).
fn replica_flags(nats: &Nats, copies: usize) -> Vec<String> {
    [
        "--no-alerts",
        "--nats",
        &nats.urls(),
        "--nats-stream",
        "BENCH",
        "--nats-replicas",
        &copies.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

async fn connect(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Imports `batches` into the server on `port`: (seconds, links, last revision).
async fn import(port: u16, batches: &[pb::ImportChangesRequest]) -> (f64, f64, u64) {
    let mut client = NetworkServiceClient::new(connect(port).await).max_encoding_message_size(64 << 20);
    let started = Instant::now();
    let reply = client
        .import_changes(tokio_stream::iter(batches.to_vec()))
        .await
        .expect("import succeeds")
        .into_inner();
    let elapsed = started.elapsed().as_secs_f64();
    (
        elapsed,
        reply.counts.unwrap_or_default().links_upserted as f64,
        reply.revision,
    )
}

/// Starts a replica on an empty directory and times it until a read at
/// `revision` is answered.
async fn catch_up(dir: &Path, flags: &[String], revision: u64) -> (Child, u16, f64) {
    let port = free_port();
    let started = Instant::now();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let child = start_with(dir, port, &flags);
    wait_serving(port, started).await;
    let mut client = NetworkServiceClient::new(connect(port).await);
    // A read waits at most 30 s for its revision: ask again until it is
    // there (within 20 minutes).
    loop {
        let mut request = Request::new(pb::ListClustersRequest {
            page_size: 1,
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("clusternet-min-revision", MetadataValue::from(revision));
        request.set_timeout(Duration::from_secs(60));
        match client.list_clusters(request).await {
            Ok(_) => break,
            Err(status) if status.code() == tonic::Code::DeadlineExceeded && started.elapsed().as_secs() < 1200 => {
                eprintln!("catching up: {}", status.message())
            }
            Err(status) => panic!("the replica does not catch up: {status}"),
        }
    }
    (child, port, started.elapsed().as_secs_f64())
}

/// The last R1 log and its replicas (process, port), kept for the reads.
type KeptLog = (tempfile::TempDir, Nats, Vec<(Child, u16)>);

#[derive(Clone, Copy)]
enum Read {
    Page,
    PageRank,
}

impl Read {
    fn name(self) -> &'static str {
        match self {
            Read::Page => "ListLinks 100 rows",
            Read::PageRank => "PageRank top 10",
        }
    }
}

/// `callers` closed-loop callers spread over `ports` for `seconds`:
/// (calls per second, p50 ms, p99 ms).
async fn reads(ports: &[u16], callers: usize, seconds: f64, read: Read) -> (f64, f64, f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let channel = connect(ports[caller % ports.len()]).await;
        tasks.push(tokio::spawn(async move {
            let mut network = NetworkServiceClient::new(channel.clone());
            let mut analysis = AnalysisServiceClient::new(channel);
            let mut took = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                match read {
                    Read::Page => {
                        let page = network
                            .list_links(pb::ListLinksRequest {
                                page_size: 100,
                                ..Default::default()
                            })
                            .await
                            .unwrap()
                            .into_inner();
                        assert_eq!(page.links.len(), 100);
                    }
                    Read::PageRank => {
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
                    }
                }
                took.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            took
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_by(f64::total_cmp);
    let percentile = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / seconds, percentile(0.5), percentile(0.99))
}

/// CPU seconds a process has used (user and system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 14th and 15th of the whole line.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (field(11) + field(12)) / ticks
}

fn summary(values: &mut [f64]) -> String {
    let m = median(values);
    let list: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
    format!("median {m:.2} ({})", list.join(", "))
}

#[tokio::main]
async fn main() {
    let runs = env_or("BENCH_RUNS", 2);
    let batch_size = env_or("BENCH_BATCH", 5_000);
    let callers = env_or("BENCH_CALLERS", 16);
    let seconds = env_or("BENCH_SECONDS", 5) as f64;
    // Which paths to measure (all by default) and whether to read.
    let paths = std::env::var("BENCH_PATHS").unwrap_or_else(|_| "alone,r1,r3".into());
    let measure_reads = env_or("BENCH_READS", 1) == 1;
    let (config, batches) = import_batches(batch_size);

    // Ingest, the three paths in turn; catch-up after each replicated one.
    let (mut alone, mut r1, mut r3) = (Vec::new(), Vec::new(), Vec::new());
    let (mut catch_r1, mut catch_r3) = (Vec::new(), Vec::new());
    // (read, replicas: 0 for the server standing alone, calls/s, p50, p99, CPU ms a call)
    let mut read_rows = Vec::new();
    let mut kept: Option<KeptLog> = None;
    for run in 1..=runs {
        if paths.contains("alone") {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let server = start_with(dir.path(), port, &["--no-alerts"]);
            wait_serving(port, Instant::now()).await;
            let (secs, links, _) = import(port, &batches).await;
            eprintln!("run {run}: alone   {secs:.2} s, {:.0} links/s", links / secs);
            alone.push(links / secs);
            if run == runs && measure_reads {
                // The same reads on the server standing alone, for scale.
                reads(&[port], 1, 0.01, Read::PageRank).await;
                for read in [Read::Page, Read::PageRank] {
                    let cpu_before = cpu_seconds(server.id());
                    let (rate, p50, p99) = reads(&[port], callers, seconds, read).await;
                    let cpu_ms = (cpu_seconds(server.id()) - cpu_before) * 1000.0 / (rate * seconds);
                    eprintln!(
                        "{}, alone: {rate:.0} calls/s, p50 {p50:.2} ms, p99 {p99:.2} ms",
                        read.name()
                    );
                    read_rows.push((read.name(), 0, rate, p50, p99, cpu_ms));
                }
            }
            terminate(server);
        }
        for copies in [1, 3] {
            if !paths.contains(&format!("r{copies}")) {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let nats = Nats::start(dir.path(), copies);
            let flags = replica_flags(&nats, copies);
            let port = free_port();
            let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
            let server = start_with(&dir.path().join("a"), port, &flag_refs);
            wait_serving(port, Instant::now()).await;
            let (secs, links, revision) = import(port, &batches).await;
            eprintln!("run {run}: R{copies}      {secs:.2} s, {:.0} links/s", links / secs);
            let (second, second_port, caught) = catch_up(&dir.path().join("b"), &flags, revision).await;
            eprintln!("run {run}: R{copies} catch-up of a new replica to revision {revision}: {caught:.2} s");
            if copies == 1 {
                r1.push(links / secs);
                catch_r1.push(caught);
            } else {
                r3.push(links / secs);
                catch_r3.push(caught);
            }
            if copies == 1 && run == runs && measure_reads {
                kept = Some((dir, nats, vec![(server, port), (second, second_port)]));
            } else {
                terminate(second);
                terminate(server);
            }
        }
    }

    // Reads over one, two and three replicas of the last R1 log.
    if let Some((dir, nats, mut servers)) = kept {
        let flags = replica_flags(&nats, 1);
        let revision = {
            let mut client = NetworkServiceClient::new(connect(servers[0].1).await);
            client
                .list_clusters(pb::ListClustersRequest::default())
                .await
                .unwrap()
                .into_inner()
                .revision
        };
        let (third, third_port, _) = catch_up(&dir.path().join("c"), &flags, revision).await;
        servers.push((third, third_port));
        let ports: Vec<u16> = servers.iter().map(|(_, p)| *p).collect();
        let pids: Vec<u32> = servers.iter().map(|(c, _)| c.id()).collect();
        // Warm each replica's analysis graph first.
        for port in &ports {
            reads(&[*port], 1, 0.01, Read::PageRank).await;
        }
        for read in [Read::Page, Read::PageRank] {
            for k in 1..=3 {
                let cpu_before: f64 = pids[..k].iter().map(|p| cpu_seconds(*p)).sum();
                let (rate, p50, p99) = reads(&ports[..k], callers, seconds, read).await;
                let cpu: f64 = pids[..k].iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
                // The replicas' own CPU per call: what bounds a replica on a
                // machine of its own (here they share 2 cores with the callers).
                let cpu_ms = cpu * 1000.0 / (rate * seconds);
                let name = read.name();
                eprintln!(
                    "{name}, {k} replica(s): {rate:.0} calls/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {cpu_ms:.3} replica CPU ms/call"
                );
                read_rows.push((name, k, rate, p50, p99, cpu_ms));
            }
        }
        for (child, _) in servers {
            terminate(child);
        }
        drop(nats);
    }

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nclusternet replicas benchmark: {} actors, {} links, {} clusters; batches of {batch_size} changes; {cpus} CPUs",
        config.actors, config.links, config.clusters
    );
    println!("durable ingest, links/s (ImportChanges, alerts off):");
    let base = if alone.is_empty() { f64::NAN } else { median(&mut alone) };
    for (path, values) in [
        ("alone (sled)", &mut alone),
        ("--nats, R1", &mut r1),
        ("--nats, R3", &mut r3),
    ] {
        if !values.is_empty() {
            let ratio = median(values) / base;
            println!("  {path:<18} {}   {ratio:.2}x alone", summary(values));
        }
    }
    println!("a new replica's catch-up to the import's end (s):");
    for (path, values) in [("R1", &mut catch_r1), ("R3", &mut catch_r3)] {
        if !values.is_empty() {
            println!("  {path:<18} {}", summary(values));
        }
    }
    if read_rows.is_empty() {
        return;
    }
    println!("reads, {callers} callers for {seconds} s each, spread over the replicas:");
    for (name, k, rate, p50, p99, cpu_ms) in &read_rows {
        let on = match k {
            0 => "alone       ".to_string(),
            k => format!("{k} replica(s)"),
        };
        println!(
            "  {name:<20} {on}: {rate:>8.0} calls/s   p50 {p50:>7.2} ms   p99 {p99:>7.2} ms   {cpu_ms:.3} server CPU ms/call"
        );
    }
    println!("with a machine of {cpus} cores each (the replicas' CPU per call with one replica; reads need no other replica):");
    for (name, _, _, _, _, cpu_ms) in read_rows.iter().filter(|r| r.1 == 1) {
        let each = cpus as f64 * 1000.0 / cpu_ms;
        println!(
            "  {name:<20} about {each:.0} calls/s a replica: {:.0} with two, {:.0} with three",
            2.0 * each,
            3.0 * each
        );
    }
}
