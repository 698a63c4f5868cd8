//! Storage benchmark: what one small write costs on disk, and how the data
//! directory grows when the server is killed again and again.
//!
//! `cargo bench --bench storage -- amplification` (default part):
//!   loads a generated network (100k actors, 1M links by default; BENCH_ACTORS,
//!   BENCH_LINKS) into a store in process, then applies BENCH_SMALL (300)
//!   one-actor batches and reads the process's write counters
//!   (`/proc/self/io`) around them: bytes written per batch against the
//!   batch's own encoded size.
//!
//! `cargo bench --bench storage -- crash`:
//!   the kill -9 cycle of `tests/it/crash.rs` at full size (BENCH_CYCLES,
//!   default 100), against one uninterrupted import of the same batches.

use std::{path::Path, time::Instant};

use clusternet::{
    model::{Actor, ActorKind, Change},
    store::{SledConfig, Store, StoreConfig},
    synthetic::{actor_id, generate, SyntheticConfig},
};

#[path = "../tests/it/crash_cycle.rs"]
mod crash_cycle;
#[path = "support/mod.rs"]
mod support;

use support::{env_or, median};

/// (bytes handed to write calls, bytes sent to the block device) so far.
fn io_counters() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("wchar:"), field("write_bytes:"))
}

/// Bytes written to whole disks so far, by every process (/proc/diskstats):
/// the page cache, the file system's journal and the device as a whole.
fn disk_written() -> u64 {
    let text = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = fields.get(2)?;
            let whole = (name.starts_with("vd") || name.starts_with("sd") || name.starts_with("xvd"))
                && !name.ends_with(|c: char| c.is_ascii_digit())
                || name.starts_with("nvme") && !name.contains('p');
            whole.then(|| fields.get(9)?.parse::<u64>().ok()).flatten()
        })
        .sum::<u64>()
        * 512
}

/// Writes every dirty page out, so a disk counter read next covers only
/// what comes after.
fn sync_all() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

pub fn dir_size(path: &Path) -> u64 {
    crash_cycle::dir_size(path)
}

fn amplification() {
    let actors = env_or("BENCH_ACTORS", 100_000);
    let links = env_or("BENCH_LINKS", 1_000_000);
    let small = env_or("BENCH_SMALL", 300);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = Store::open_sled(dir.path(), &SledConfig::default(), StoreConfig::default()).unwrap();
    let changes = generate(&SyntheticConfig {
        actors,
        links,
        ..SyntheticConfig::default()
    });
    let started = Instant::now();
    runtime.block_on(async {
        for batch in changes.chunks(10_000) {
            store.apply(batch.to_vec()).await.unwrap();
        }
    });
    println!(
        "loaded {actors} actors, {links} links in {:.1} s; data directory {:.1} MB",
        started.elapsed().as_secs_f64(),
        dir_size(dir.path()) as f64 / 1e6
    );
    // Batches renaming `size` actors (from actor `first` on).
    let rename = |first: usize, size: usize, round: usize| -> Vec<Change> {
        (first..first + size)
            .filter_map(|i| snapshot_actor(&store, i))
            .map(|actor| {
                Change::UpsertActor(Actor {
                    name: format!("renamed {round}"),
                    kind: ActorKind::Firm,
                    ..actor
                })
            })
            .collect()
    };
    // A warm-up: the writer finishes any checkpoint the load started before
    // it takes the next batch.
    for i in 0..10 {
        runtime.block_on(store.apply(rename(1, 1, i))).unwrap();
    }
    // (payload, write calls, whole disk) per batch, for batches of 1, 10 and 100 actors.
    let mut points = Vec::new();
    for size in [1, 10, 100] {
        sync_all();
        let disk0 = disk_written();
        let (wchar0, written0) = io_counters();
        let mut payload = 0u64;
        let mut latencies = Vec::with_capacity(small);
        for i in 0..small {
            let batch = rename(1 + (i * size) % (actors - size), size, i);
            payload += bincode::serialize(&batch).unwrap().len() as u64;
            let started = Instant::now();
            runtime.block_on(store.apply(batch)).unwrap();
            latencies.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let (wchar1, written1) = io_counters();
        sync_all();
        let disk1 = disk_written();
        let n = small as f64;
        let point = (
            payload as f64 / n,
            (wchar1 - wchar0) as f64 / n,
            (disk1 - disk0) as f64 / n,
        );
        println!(
            "batches of {size:>3} actors: {small}; payload {:>7.0} B a batch; written {:>6.1} kB a batch by the \
             server (write calls), {:>6.1} kB (whole disk after sync, any process), {:>6.1} kB (pages dirtied); \
             median latency {:.2} ms",
            point.0,
            point.1 / 1e3,
            point.2 / 1e3,
            (written1 - written0) as f64 / n / 1e3,
            median(&mut latencies)
        );
        points.push(point);
    }
    // Written = slope x payload + constant, from the smallest and largest batches.
    let (first, last) = (points[0], points[points.len() - 1]);
    let slope = (last.1 - first.1) / (last.0 - first.0);
    let constant = first.1 - slope * first.0;
    println!(
        "write calls: {slope:.2} x the payload + {:.1} kB a batch (goal: at most 4x the payload plus a constant)",
        constant / 1e3
    );
}

fn snapshot_actor(store: &Store, index: usize) -> Option<Actor> {
    store
        .snapshot()
        .network
        .actors
        .get(&actor_id(index))
        .map(|a| (**a).clone())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let part = args.first().map(String::as_str).unwrap_or("amplification");
    println!(
        "machine: {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    match part {
        "amplification" => amplification(),
        "crash" => {
            let cycles = env_or("BENCH_CYCLES", 100);
            let report = crash_cycle::run(cycles, env_or("BENCH_CLIENTS", 4), true);
            println!(
                "{cycles} kill -9 cycles: {} batches acknowledged, all present, none in part; data directory {:.1} MB \
                 after the kills, {:.1} MB written without interruption ({:.2}x)",
                report.acknowledged,
                report.crashed_dir_bytes as f64 / 1e6,
                report.uninterrupted_dir_bytes as f64 / 1e6,
                report.crashed_dir_bytes as f64 / report.uninterrupted_dir_bytes as f64
            );
        }
        other => eprintln!("unknown part {other}: amplification or crash"),
    }
}
