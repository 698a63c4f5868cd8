//! What the benchmarks that drive the real server binary share.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};

pub const BIN: &str = env!("CARGO_BIN_EXE_clusternet");

/// A size or count from the environment, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[allow(dead_code)] // not every bench starts a server
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `clusternet serve` on `port` with its store in `dir`; logs at
/// BENCH_SERVER_LOG (default warn) go to this process's stderr.
#[allow(dead_code)] // each bench includes this file; not every one starts a plain server
pub fn start(dir: &Path, port: u16) -> Child {
    start_with(dir, port, &[])
}

/// `start` with more `serve` flags.
pub fn start_with(dir: &Path, port: u16, flags: &[&str]) -> Child {
    Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--max-batch-changes",
            "100000",
            "--data-dir",
        ])
        .arg(dir)
        .args(flags)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the server starts")
}

/// Polls health until SERVING; returns how long that took.
#[allow(dead_code)] // not every bench starts a server
pub async fn wait_serving(port: u16, since: Instant) -> Duration {
    loop {
        let endpoint = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}")).expect("valid URL");
        if let Ok(channel) = endpoint.connect().await {
            let mut health = HealthClient::new(channel);
            if let Ok(reply) = health.check(HealthCheckRequest::default()).await {
                if reply.into_inner().status() == ServingStatus::Serving {
                    return since.elapsed();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// (VmHWM, VmRSS) of a process, in MiB.
#[allow(dead_code)] // not every bench starts a server
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[allow(dead_code)] // not every bench starts a server
pub fn terminate(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

#[allow(dead_code)] // not every bench starts a server
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// GET /metrics without an HTTP client crate; empty when the server is not
/// there.
#[allow(dead_code)] // only the benches that scrape the server use it
pub async fn get_metrics(address: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut socket) = tokio::net::TcpStream::connect(address).await else {
        return String::new();
    };
    let _ = socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await;
    let mut reply = String::new();
    let _ = socket.read_to_string(&mut reply).await;
    reply
}

/// The value of an unlabelled sample in a Prometheus text page.
#[allow(dead_code)] // only the benches that scrape the server use it
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The generated network of the ingest benches (BENCH_CLUSTERS 1,000,
/// BENCH_ACTORS 100k, BENCH_LINKS 1M) as `ImportChanges` messages of
/// BENCH_BATCH (`batch`) changes each.
#[allow(dead_code)] // only the benches that import use it
pub fn import_batches(
    batch: usize,
) -> (
    clusternet::synthetic::SyntheticConfig,
    Vec<clusternet::service::pb::ImportChangesRequest>,
) {
    let config = clusternet::synthetic::SyntheticConfig {
        clusters: env_or("BENCH_CLUSTERS", 1_000),
        actors: env_or("BENCH_ACTORS", 100_000),
        links: env_or("BENCH_LINKS", 1_000_000),
        ..Default::default()
    };
    let batch = env_or("BENCH_BATCH", batch);
    eprintln!(
        "generating {} clusters, {} actors, {} links",
        config.clusters, config.actors, config.links
    );
    let changes = clusternet::synthetic::generate(&config);
    let batches = changes
        .chunks(batch)
        .map(|chunk| clusternet::service::pb::ImportChangesRequest {
            changes: chunk.iter().map(clusternet::service::convert::change_to_pb).collect(),
        })
        .collect();
    (config, batches)
}

/// Actor `a`'s id in the national network.
#[allow(dead_code)] // the benches on the national network
pub fn actor_id(a: u32) -> clusternet::model::Id {
    clusternet::model::Id::from(format!("a{a}"))
}

/// The national benchmark network as clusternet changes: actor i in cluster
/// i·clusters/n, each BA edge (u, v) a SUPPLY link u → v. Members mix
/// BENCH_INDUSTRIES (50) industry classes (`synthetic::industry_code`), each
/// cluster around a home class of its own over a width of its own, with
/// 5 to 5,000 employees: the matrix of the relatedness bench.
#[allow(dead_code)] // the benches on the national network
pub fn national_network(nodes: usize, clusters: usize, edges: &[(u32, u32)]) -> Vec<clusternet::model::Change> {
    use clusternet::model::{
        Actor, ActorKind, Change, Channel, Cluster, Id, Link, LinkKind, SegmentSet, Site, Validity,
    };
    use rand::{Rng, SeedableRng};
    let industries = env_or("BENCH_INDUSTRIES", 50).max(1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mix: Vec<(usize, usize)> = (0..clusters)
        .map(|_| {
            (
                rng.gen_range(0..industries),
                1 + rng.gen_range(0..industries.div_ceil(4)),
            )
        })
        .collect();
    let cluster_id = |c: usize| Id::from(format!("cluster-{c:04}"));
    let mut out = Vec::with_capacity(clusters + nodes + edges.len());
    for c in 0..clusters {
        out.push(Change::UpsertCluster(Cluster {
            id: cluster_id(c),
            name: format!("Cluster {c}"),
            region: format!("Region {}", c % 30),
            country: Some("CN".parse().expect("valid")),
            industry: "C2930".into(),
            sites: vec![Site {
                id: Id::from(format!("site-{c:04}")),
                name: format!("Park {c}"),
                lat: 30.0 + (c % 100) as f64 * 0.1,
                lon: 110.0 + (c / 100) as f64 * 0.1,
            }],
        }));
    }
    for a in 0..nodes {
        let c = a * clusters / nodes;
        let (home, width) = mix[c];
        let offset = (width as f64 * rng.gen::<f64>().powi(2)) as usize;
        out.push(Change::UpsertActor(Actor {
            id: actor_id(a as u32),
            name: format!("Firm {a}"),
            kind: ActorKind::Firm,
            industry: clusternet::synthetic::industry_code((home + offset) % industries),
            segments: SegmentSet::default(),
            cluster_ids: vec![cluster_id(c)],
            site_id: Some(Id::from(format!("site-{c:04}"))),
            country: Some("CN".parse().expect("valid")),
            employees: Some(rng.gen_range(5..5_000)),
            revenue: None,
            validity: Validity::default(),
        }));
    }
    for &(u, v) in edges {
        out.push(Change::UpsertLink(Link {
            source: actor_id(u),
            target: actor_id(v),
            kind: LinkKind::Supply,
            channel: Channel::Physical,
            weight: 1.0,
            validity: Validity::default(),
        }));
    }
    out
}
