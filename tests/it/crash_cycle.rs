//! The kill -9 cycle, shared by `crash.rs` (a few cycles, in CI) and
//! `benches/storage.rs` (a hundred): several clients write batches to the real
//! server binary while it is killed at a random moment; after every restart,
//! every acknowledged batch must be there and no batch may be there in part.
//! At the end the data directory is compared with one written by an
//! uninterrupted server from the same batches.

// The storage bench includes this file for `run` alone.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clusternet::service::pb::{
    self, change::Change as Kind, network_service_client::NetworkServiceClient, ActorKind, ApplyChangesRequest,
    LinkKind,
};
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_clusternet");
/// Actors per batch; each batch also links them in a chain.
const ACTORS_PER_BATCH: usize = 50;
/// A checkpoint every this many changes, so kills also land in checkpoints.
const CHECKPOINT_CHANGES: &str = "20000";

pub struct Report {
    pub acknowledged: usize,
    pub crashed_dir_bytes: u64,
    pub uninterrupted_dir_bytes: u64,
}

pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (32768-60999 on Linux), and each
    // handed out once per test process: a port that bind(0) gave another
    // test's server, or that a client socket took (one test opens 1,100),
    // can never be one of these, so a child server never finds its port
    // taken or answered by someone else.
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % SPAN;
    loop {
        let port = (FIRST + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn start(dir: &Path, port: u16) -> Child {
    server(dir, port)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the server starts")
}

/// The `serve` command, its output not yet directed.
pub fn server(dir: &Path, port: u16) -> Command {
    let mut command = Command::new(BIN);
    command
        .args([
            "serve",
            "--no-alerts",
            "--checkpoint-changes",
            CHECKPOINT_CHANGES,
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null());
    command
}

pub async fn connect(port: u16) -> NetworkServiceClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(client) = NetworkServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
            return client;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each writer rewrites the same slots over and over (batch `b` goes to slot
/// `b % SLOTS`), so the network stays bounded however long the run.
const SLOTS: usize = 1_000;

fn actor_name(client: usize, slot: usize, k: usize) -> String {
    format!("crash-{client}-{slot:04}-{k:02}")
}

/// Batch `b` of writer `client`: the actors of its slot, named after `b`,
/// linked in a chain.
pub fn batch(client: usize, b: usize) -> ApplyChangesRequest {
    let slot = b % SLOTS;
    let mut changes = Vec::with_capacity(2 * ACTORS_PER_BATCH);
    for k in 0..ACTORS_PER_BATCH {
        changes.push(pb::Change {
            change: Some(Kind::UpsertActor(pb::Actor {
                id: actor_name(client, slot, k),
                name: format!("batch {b}: firm {k} from writer {client}"),
                kind: ActorKind::Firm as i32,
                industry: "C2620".into(),
                ..Default::default()
            })),
        });
        if k > 0 {
            changes.push(pb::Change {
                change: Some(Kind::UpsertLink(pb::Link {
                    source: actor_name(client, slot, k - 1),
                    target: actor_name(client, slot, k),
                    kind: LinkKind::Supply as i32,
                    channel: pb::Channel::Physical as i32,
                    weight: 1.0 + b as f64,
                    ..Default::default()
                })),
            });
        }
    }
    ApplyChangesRequest { changes }
}

/// The batch number in an actor's name.
fn batch_of(name: &str) -> usize {
    name.strip_prefix("batch ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|b| b.parse().ok())
        .expect("an actor written by a crash writer")
}

/// Every actor's name, by id.
async fn actor_names(client: &mut NetworkServiceClient<Channel>) -> HashMap<String, String> {
    let mut names = HashMap::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_actors(pb::ListActorsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .expect("ListActors answers")
            .into_inner();
        names.extend(page.actors.into_iter().map(|a| (a.id, a.name)));
        if page.next_page_token.is_empty() {
            return names;
        }
        page_token = page.next_page_token;
    }
}

/// What each writer sent: per batch, whether it was acknowledged.
type Sent = Vec<Vec<bool>>;

/// Each slot holds one whole batch (all its actors carry one batch number),
/// no older than the slot's last acknowledged batch and no newer than the
/// last one sent to it.
fn check(names: &HashMap<String, String>, sent: &Sent) {
    for (client, batches) in sent.iter().enumerate() {
        for slot in 0..SLOTS.min(batches.len()) {
            // The slot's batches are slot, slot + SLOTS, ...
            let last_sent = slot + (batches.len() - 1 - slot) / SLOTS * SLOTS;
            let last_acknowledged = (slot..batches.len()).step_by(SLOTS).rev().find(|b| batches[*b]);
            let held: Vec<Option<usize>> = (0..ACTORS_PER_BATCH)
                .map(|k| names.get(&actor_name(client, slot, k)).map(|name| batch_of(name)))
                .collect();
            assert!(
                held.iter().all(|b| *b == held[0]),
                "writer {client}'s slot {slot} holds parts of different batches: {held:?}"
            );
            match (held[0], last_acknowledged) {
                (None, Some(b)) => panic!("writer {client}'s batch {b} was acknowledged and lost"),
                (Some(b), Some(acknowledged)) => assert!(
                    (acknowledged..=last_sent).contains(&b),
                    "writer {client}'s slot {slot} holds batch {b}; batch {acknowledged} was acknowledged after it"
                ),
                (Some(b), None) => assert!(b <= last_sent),
                (None, None) => {}
            }
        }
    }
}

/// Writes batches until the server goes away; marks each acknowledged one.
async fn write_until_killed(port: u16, client_no: usize, sent: Arc<Mutex<Sent>>) {
    let mut client = connect(port).await;
    loop {
        let b = {
            let mut sent = sent.lock().unwrap();
            sent[client_no].push(false);
            sent[client_no].len() - 1
        };
        match client.apply_changes(batch(client_no, b)).await {
            Ok(_) => sent.lock().unwrap()[client_no][b] = true,
            // The server was killed: the connection fails.
            Err(status) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown) => return,
            Err(status) => panic!("writer {client_no}'s batch {b} was refused: {status:?}"),
        }
    }
}

/// Runs `cycles` kill -9 cycles with `clients` writers, checking after each
/// restart; then writes the acknowledged batches to a fresh server without
/// interruption and compares the two data directories.
pub fn run(cycles: usize, clients: usize, verbose: bool) -> Report {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let sent: Arc<Mutex<Sent>> = Arc::new(Mutex::new(vec![Vec::new(); clients]));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let started = Instant::now();
        for cycle in 0..cycles {
            let port = free_port();
            let mut server = start(dir.path(), port);
            let mut client = connect(port).await;
            check(&actor_names(&mut client).await, &sent.lock().unwrap());
            let writers: Vec<_> = (0..clients)
                .map(|c| tokio::spawn(write_until_killed(port, c, sent.clone())))
                .collect();
            tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
            server.kill().expect("kill -9");
            server.wait().unwrap();
            for writer in writers {
                writer.await.unwrap();
            }
            if verbose {
                let acknowledged: usize = sent.lock().unwrap().iter().flatten().filter(|a| **a).count();
                eprintln!(
                    "cycle {}: {acknowledged} batches acknowledged so far, data directory {:.1} MB, {:.0} s",
                    cycle + 1,
                    dir_size(dir.path()) as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        // One last start: everything acknowledged is there, nothing in part.
        let port = free_port();
        let mut server = start(dir.path(), port);
        let mut client = connect(port).await;
        let sent = sent.lock().unwrap().clone();
        check(&actor_names(&mut client).await, &sent);
        server.kill().unwrap();
        server.wait().unwrap();
        let crashed_dir_bytes = dir_size(dir.path());

        // The same acknowledged batches, written without interruption.
        let clean = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut server = start(clean.path(), port);
        let writers: Vec<_> = sent
            .iter()
            .enumerate()
            .map(|(c, batches)| {
                let acknowledged: Vec<usize> = (0..batches.len()).filter(|b| batches[*b]).collect();
                tokio::spawn(async move {
                    let mut client = connect(port).await;
                    for b in &acknowledged {
                        client.apply_changes(batch(c, *b)).await.expect("a clean write");
                    }
                    acknowledged.len()
                })
            })
            .collect();
        let mut acknowledged = 0;
        for writer in writers {
            acknowledged += writer.await.unwrap();
        }
        server.kill().unwrap();
        server.wait().unwrap();
        Report {
            acknowledged,
            crashed_dir_bytes,
            uninterrupted_dir_bytes: dir_size(clean.path()),
        }
    })
}
