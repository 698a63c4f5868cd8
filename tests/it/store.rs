//! The store against a plain model: whatever sequence of batches, checkpoints
//! and reopenings, it holds exactly what a BTreeMap model says. And a server
//! killed mid-write recovers every acknowledged batch, each whole.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use clusternet::{
    model::{Actor, ActorKind, Change, Channel, Id, Link, LinkKey, LinkKind, SegmentSet, Validity},
    store::{Applied, SledConfig, Store, StoreConfig},
};
use proptest::prelude::*;

use crate::common::*;

#[derive(Clone, Debug)]
enum Op {
    UpsertActor(u8),
    DeleteActor(u8),
    UpsertLink(u8, u8, u8, u8),
    DeleteLink(u8, u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..12u8).prop_map(Op::UpsertActor),
        1 => (0..12u8).prop_map(Op::DeleteActor),
        4 => (0..12u8, 0..12u8, 0..3u8, 1..5u8).prop_map(|(a, b, k, w)| Op::UpsertLink(a, b, k, w)),
        1 => (0..12u8, 0..12u8, 0..3u8).prop_map(|(a, b, k)| Op::DeleteLink(a, b, k)),
    ]
}

const KINDS: [LinkKind; 3] = [LinkKind::Supply, LinkKind::Cooperation, LinkKind::Investment];

fn actor(n: u8) -> Actor {
    Actor {
        id: Id::from(format!("a{n}")),
        name: format!("Actor {n}"),
        kind: ActorKind::Firm,
        industry: String::new(),
        segments: SegmentSet::default(),
        cluster_ids: vec![],
        site_id: None,
        country: None,
        employees: Some(n as u64),
        revenue: None,
        validity: Validity::default(),
    }
}

/// The model: actors by id, links by their stored key (undirected kinds with
/// ordered ends), with weights. A batch applies whole or not at all.
#[derive(Clone, Default, PartialEq, Debug)]
struct Model {
    actors: BTreeSet<String>,
    links: BTreeMap<(String, String, LinkKind), f64>,
}

impl Model {
    fn key(a: u8, b: u8, kind: LinkKind) -> (String, String, LinkKind) {
        let (mut s, mut t) = (format!("a{a}"), format!("a{b}"));
        if !kind.is_directed() && t < s {
            std::mem::swap(&mut s, &mut t);
        }
        (s, t, kind)
    }

    /// Applies a batch; None if the store must refuse it.
    fn apply(&self, ops: &[Op]) -> Option<Model> {
        let mut next = self.clone();
        for op in ops {
            match *op {
                Op::UpsertActor(n) => {
                    next.actors.insert(format!("a{n}"));
                }
                Op::DeleteActor(n) => {
                    let id = format!("a{n}");
                    if !next.actors.remove(&id) {
                        return None;
                    }
                    next.links.retain(|(s, t, _), _| *s != id && *t != id);
                }
                Op::UpsertLink(a, b, k, w) => {
                    if a == b {
                        return None;
                    }
                    next.links.insert(Model::key(a, b, KINDS[k as usize]), w as f64);
                }
                Op::DeleteLink(a, b, k) => {
                    next.links.remove(&Model::key(a, b, KINDS[k as usize]))?;
                }
            }
        }
        // References are checked at the end of the batch.
        let dangling = next
            .links
            .keys()
            .any(|(s, t, _)| !next.actors.contains(s) || !next.actors.contains(t));
        (!dangling).then_some(next)
    }
}

fn change(op: &Op) -> Change {
    match *op {
        Op::UpsertActor(n) => Change::UpsertActor(actor(n)),
        Op::DeleteActor(n) => Change::DeleteActor {
            id: Id::from(format!("a{n}")),
            cascade: true,
        },
        Op::UpsertLink(a, b, k, w) => Change::UpsertLink(Link {
            source: Id::from(format!("a{a}")),
            target: Id::from(format!("a{b}")),
            kind: KINDS[k as usize],
            channel: Channel::Physical,
            weight: w as f64,
            validity: Validity::default(),
        }),
        Op::DeleteLink(a, b, k) => Change::DeleteLink(LinkKey {
            source: Id::from(format!("a{a}")),
            target: Id::from(format!("a{b}")),
            kind: KINDS[k as usize],
        }),
    }
}

fn contents(store: &Store) -> Model {
    let snapshot = store.snapshot();
    let network = &snapshot.network;
    // The reverse index holds every link's key swapped, and nothing else.
    let swapped: Vec<_> = network
        .links
        .keys()
        .map(|key| key.swapped())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(network.reverse.iter().copied().collect::<Vec<_>>(), swapped);
    Model {
        actors: network.actors.keys().map(|id| id.to_string()).collect(),
        links: network
            .links
            .iter()
            .map(|(key, data)| {
                let link = network.link_from(key, data);
                (
                    (link.source.to_string(), link.target.to_string(), link.kind),
                    link.weight,
                )
            })
            .collect(),
    }
}

fn open(dir: &std::path::Path) -> Store {
    let config = StoreConfig {
        // Checkpoint often, so reopening mixes checkpoints and log replay.
        checkpoint_min_changes: 7,
        // Repack after every few changes, so repacks race the batches.
        repack_min_changes: Some(3),
        repack_quiet: Duration::from_millis(1),
        ..StoreConfig::default()
    };
    Store::open_sled(dir, &SledConfig::default(), config).unwrap()
}

/// Checks the store's answer to a batch against the model and moves the
/// model on: a batch the model accepts gets the next revision, one it
/// refuses is refused.
fn follow(
    model: &mut Model,
    revision: &mut u64,
    ops: &[Op],
    result: clusternet::error::Result<Applied>,
) -> Result<(), TestCaseError> {
    match model.apply(ops) {
        Some(next) => {
            let applied = result.expect("the model accepts this batch");
            *revision += 1;
            prop_assert_eq!(applied.revision, *revision);
            *model = next;
        }
        None => prop_assert!(result.is_err(), "the model refuses {:?}", ops),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_store_holds_what_the_model_says_across_checkpoints_and_reopening(
        batches in prop::collection::vec((prop::collection::vec(op(), 1..6), any::<bool>()), 1..25)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let mut model = Model::default();
        let mut revision = 0;
        for (ops, reopen) in batches {
            let result = runtime.block_on(store.apply(ops.iter().map(change).collect()));
            follow(&mut model, &mut revision, &ops, result)?;
            if reopen {
                store.close();
                drop(store);
                store = open(dir.path());
                prop_assert_eq!(store.snapshot().revision, revision);
            }
            prop_assert_eq!(&contents(&store), &model);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Batches queued together are committed in groups that share one copy
    /// of the network: a refused batch among them leaves nothing of itself,
    /// and the batches around it land as if each came alone.
    #[test]
    fn queued_batches_land_as_if_each_came_alone(
        rounds in prop::collection::vec(prop::collection::vec(prop::collection::vec(op(), 1..6), 1..12), 1..5)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut model = Model::default();
        let mut revision = 0;
        for batches in rounds {
            let outcomes = runtime.block_on(async {
                let mut pending = Vec::new();
                for ops in &batches {
                    pending.push(store.submit(ops.iter().map(change).collect(), None).await);
                }
                let mut outcomes = Vec::new();
                for submitted in pending {
                    outcomes.push(match submitted {
                        Ok(batch) => batch.outcome().await,
                        Err(error) => Err(error),
                    });
                }
                outcomes
            });
            for (ops, result) in batches.iter().zip(outcomes) {
                follow(&mut model, &mut revision, ops, result)?;
            }
            prop_assert_eq!(&contents(&store), &model);
        }
    }
}

/// Counts the repacks the store publishes.
#[derive(Default)]
struct Repacks(std::sync::atomic::AtomicUsize);

impl clusternet::store::CommitObserver for Repacks {
    fn group_committed(&self, _: usize, _: Duration) {}

    fn repacked(&self, _: Duration) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Once enough changes are written and the writes pause, the store publishes
/// its network rebuilt compact: the same revision and the same content, in
/// new maps. Fewer changes than the threshold never repack.
#[tokio::test]
async fn after_many_writes_and_a_pause_the_store_repacks_without_changing_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        repack_min_changes: Some(40),
        repack_quiet: Duration::from_millis(300),
        ..StoreConfig::default()
    };
    let store = Store::open_sled(dir.path(), &SledConfig::default(), config).unwrap();
    let repacks = std::sync::Arc::new(Repacks::default());
    store.observe(Box::new(repacks.clone()));
    let write = |ops: Vec<Op>| store.apply(ops.iter().map(change).collect());
    write((0..12).map(Op::UpsertActor).collect()).await.unwrap();
    for a in 0..12u8 {
        write(vec![Op::UpsertLink(a, (a + 1) % 12, 0, 1)]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        repacks.0.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "24 changes are below the 40 asked for"
    );
    assert!(!store.repack_pending());

    for a in 0..12u8 {
        write(vec![
            Op::UpsertLink(a, (a + 5) % 12, 1, 2),
            Op::UpsertLink(a, (a + 3) % 12, 2, 3),
        ])
        .await
        .unwrap();
    }
    assert!(store.repack_pending(), "due, and waiting for the writes to pause");
    let before = store.snapshot();
    let held = contents(&store);
    let waited = Instant::now();
    while repacks.0.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(waited.elapsed() < Duration::from_secs(20), "no repack was published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!store.repack_pending(), "landed");
    let after = store.snapshot();
    assert_eq!(after.revision, before.revision, "a repack is not a revision");
    assert!(
        !std::sync::Arc::ptr_eq(&before, &after),
        "the repacked network is published"
    );
    assert!(!before.network.links.ptr_eq(&after.network.links), "in new maps");
    assert_eq!(contents(&store), held);
    // Writes go on from the repacked network.
    write(vec![Op::DeleteLink(0, 1, 0)]).await.unwrap();
    assert_eq!(contents(&store).links.len(), held.links.len() - 1);
}

/// A repack races the writes that come while it runs: the writer applies
/// them to it again before it publishes it, so it never takes them back.
/// With repacks due at every commit and no pause asked for, the writes below
/// overtake most of them.
#[tokio::test]
async fn a_repack_overtaken_by_writes_catches_up_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        repack_min_changes: Some(1),
        repack_quiet: Duration::ZERO,
        ..StoreConfig::default()
    };
    let store = Store::open_sled(dir.path(), &SledConfig::default(), config).unwrap();
    let repacks = std::sync::Arc::new(Repacks::default());
    store.observe(Box::new(repacks.clone()));
    let mut model = Model::default();
    let mut revision = 0;
    let actors: Vec<Op> = (0..60).map(Op::UpsertActor).collect();
    let mut batches = vec![actors];
    for a in 0..60u8 {
        for b in (0..60u8).filter(|&b| b != a) {
            batches.push(vec![Op::UpsertLink(a, b, 0, 1 + (a % 4))]);
        }
    }
    for chunk in batches.chunks(500) {
        let mut pending = Vec::new();
        for ops in chunk {
            pending.push(store.submit(ops.iter().map(change).collect(), None).await.unwrap());
        }
        for (ops, batch) in chunk.iter().zip(pending) {
            follow(&mut model, &mut revision, ops, batch.outcome().await).unwrap();
        }
    }
    assert_eq!(store.snapshot().revision, revision);
    assert_eq!(contents(&store), model);
    assert!(
        repacks.0.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "repacks were published"
    );
}

const BIN: &str = env!("CARGO_BIN_EXE_clusternet");

/// Batch n creates two actors and a link between them: after any crash, a
/// batch is either entirely there or entirely absent.
fn crash_batch(n: u64) -> pb::ApplyChangesRequest {
    let x = format!("b{n}-x");
    let y = format!("b{n}-y");
    batch(vec![
        upsert_actor(pb::Actor {
            id: x.clone(),
            kind: pb::ActorKind::Firm as i32,
            ..Default::default()
        }),
        upsert_actor(pb::Actor {
            id: y.clone(),
            kind: pb::ActorKind::Firm as i32,
            ..Default::default()
        }),
        upsert_link(link(&x, &y, pb::LinkKind::Supply)),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_recovers_every_acknowledged_batch_whole() {
    let dir = tempfile::tempdir().unwrap();
    const ROUNDS: u64 = 3;
    let mut acknowledged_before = 0;
    for round in 0..=ROUNDS {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let mut client = loop {
            match pb::network_service_client::NetworkServiceClient::connect(url.clone()).await {
                Ok(client) => break client,
                Err(_) if started.elapsed() < Duration::from_secs(20) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("the server did not start: {e}"),
            }
        };
        // What the previous rounds acknowledged must all be here, whole.
        let actors: BTreeSet<String> = all_actors(
            &mut client,
            pb::ListActorsRequest {
                page_size: 1000,
                ..Default::default()
            },
        )
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
        let present: BTreeSet<u64> = actors
            .iter()
            .filter_map(|id| id.strip_suffix("-x")?.strip_prefix('b')?.parse().ok())
            .collect();
        for n in &present {
            assert!(actors.contains(&format!("b{n}-y")), "batch {n} is half there");
        }
        let first = present.iter().max().map_or(0, |n| n + 1);
        assert!(
            first >= acknowledged_before,
            "acknowledged batches were lost: {first} < {acknowledged_before}"
        );
        for n in 0..first {
            assert!(present.contains(&n), "acknowledged batch {n} was lost");
        }
        if round == ROUNDS {
            child.kill().unwrap();
            child.wait().unwrap();
            break;
        }
        // Write for a while, then kill without warning while writes are in flight.
        let writer = tokio::spawn(async move {
            let mut acknowledged = first;
            loop {
                match client.apply_changes(crash_batch(acknowledged)).await {
                    Ok(_) => acknowledged += 1,
                    Err(_) => return acknowledged,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(150 + 100 * round)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let acknowledged = writer.await.unwrap();
        assert!(acknowledged > first, "round {round} wrote nothing");
        acknowledged_before = acknowledged;
    }
}

/// The revision of the checkpoint on disk, from its file's name.
fn checkpoint_revision(dir: &std::path::Path) -> Option<u64> {
    std::fs::read_dir(dir.join("checkpoints"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".checkpoint")?.parse().ok())
        .max()
}

/// A stream of one-change batches on a large network: each batch's log
/// record costs more than its one change, so counting changes against the
/// network's entities would let the log since the checkpoint (which must be
/// kept) grow past the network's own size before the next checkpoint.
/// Counting its bytes against the checkpoint's takes one much sooner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_batches_take_a_checkpoint_once_their_log_outweighs_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        checkpoint_min_changes: 1_000,
        history_revisions: Some(100),
        ..StoreConfig::default()
    };
    let store = Store::open_sled(dir.path(), &SledConfig::default(), config.clone()).unwrap();
    let changes = clusternet::synthetic::generate(&clusternet::synthetic::SyntheticConfig {
        clusters: 10,
        actors: 2_000,
        links: 20_000,
        ..Default::default()
    });
    let entities = changes.len() as u64;
    for chunk in changes.chunks(5_000) {
        store.apply(chunk.to_vec()).await.unwrap();
    }
    // Closing takes a checkpoint of the whole network: the stream starts
    // from there with nothing logged since.
    store.close();
    drop(store);
    let store = Store::open_sled(dir.path(), &SledConfig::default(), config).unwrap();
    let first = checkpoint_revision(dir.path()).expect("closing took a checkpoint");
    let (a, b) = (
        clusternet::synthetic::actor_id(0),
        clusternet::synthetic::actor_id(1_999),
    );
    let tie = Link {
        source: a.clone(),
        target: b.clone(),
        kind: LinkKind::Informal,
        channel: Channel::Physical,
        weight: 1.0,
        validity: Validity::default(),
    };
    let mut written = 0u64;
    while checkpoint_revision(dir.path()) == Some(first) {
        let change = if written.is_multiple_of(2) {
            Change::UpsertLink(tie.clone())
        } else {
            Change::DeleteLink(LinkKey {
                source: a.clone().min(b.clone()),
                target: a.clone().max(b.clone()),
                kind: LinkKind::Informal,
            })
        };
        store.apply(vec![change]).await.unwrap();
        written += 1;
        assert!(
            written < entities * 3 / 4,
            "{written} one-change batches and still no checkpoint ({entities} entities)"
        );
    }
    assert!(written >= 1_000, "not before the least asked for: {written}");
    eprintln!("a checkpoint after {written} one-change batches on {entities} entities");
}

/// The alert engine holds the network it last evaluated, to tell what the
/// next batches changed. Once the store republishes that revision repacked,
/// the engine takes the new copy and lets the old one go: two copies of a
/// national network do not fit beside each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_repack_the_alert_engine_lets_the_old_copy_of_the_network_go() {
    use clusternet::{
        alert::{engine::AlertEngine, log::AlertLog},
        analysis::stages::stage_config::StageConfig,
    };
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        repack_min_changes: Some(40),
        repack_quiet: Duration::from_millis(300),
        ..StoreConfig::default()
    };
    let store = std::sync::Arc::new(Store::open_sled(dir.path(), &SledConfig::default(), config).unwrap());
    let repacks = std::sync::Arc::new(Repacks::default());
    store.observe(Box::new(repacks.clone()));
    let log = AlertLog::open(&dir.path().join("alerts")).unwrap();
    let engine = AlertEngine::start(store.clone(), log, StageConfig::default(), None).unwrap();
    let write = |ops: Vec<Op>| store.apply(ops.iter().map(change).collect());
    write((0..12).map(Op::UpsertActor).collect()).await.unwrap();
    for a in 0..12u8 {
        write(vec![
            Op::UpsertLink(a, (a + 5) % 12, 1, 2),
            Op::UpsertLink(a, (a + 3) % 12, 2, 3),
            Op::UpsertLink(a, (a + 1) % 12, 0, 1),
        ])
        .await
        .unwrap();
    }
    let last = store.snapshot().revision;
    let old = std::sync::Arc::downgrade(&store.snapshot());
    let waited = Instant::now();
    while repacks.0.load(std::sync::atomic::Ordering::SeqCst) == 0 || engine.evaluated_revision() < last {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "no repack, or the engine is behind"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.snapshot().revision, last, "no write since");
    while old.upgrade().is_some() {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the copy before the repack is still held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A store that takes a checkpoint every 1,000 changes and keeps
/// `history_revisions` of history whatever it weighs, and a load of 10
/// clusters, 2,000 actors and 20,000 links to write into it.
fn checkpointing_store(dir: &std::path::Path, history_revisions: u64) -> (Store, Vec<Change>) {
    let config = StoreConfig {
        checkpoint_min_changes: 1_000,
        history_revisions: Some(history_revisions),
        history_min_bytes: 0,
        ..StoreConfig::default()
    };
    let store = Store::open_sled(dir, &SledConfig::default(), config).unwrap();
    let changes = clusternet::synthetic::generate(&clusternet::synthetic::SyntheticConfig {
        clusters: 10,
        actors: 2_000,
        links: 20_000,
        ..Default::default()
    });
    (store, changes)
}

/// A bulk load of many batches stays in the change log only as far back as
/// the checkpoint outweighs it: kept whole beside the checkpoint that holds
/// it, it made the data directory more than twice the CSV it came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_kept_after_a_checkpoint_weighs_no_more_than_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (store, changes) = checkpointing_store(dir.path(), 100_000);
    let batches = changes.chunks(250).count() as u64;
    for chunk in changes.chunks(250) {
        store.apply(chunk.to_vec()).await.unwrap();
    }
    let checkpoint = checkpoint_revision(dir.path()).expect("the load took a checkpoint");
    let oldest = store.log().oldest().unwrap().expect("a history is kept");
    let kept: Vec<(u64, Vec<Change>)> = store.log().read(oldest, usize::MAX).unwrap();
    assert!(oldest > 1, "the whole load is still logged ({batches} batches)");
    assert!(oldest <= checkpoint + 1, "the log after the checkpoint is kept");
    assert_eq!(kept.last().map(|(r, _)| *r), Some(batches));
    // Its size, as the kept batches encode, against the checkpoint's file
    // (a batch of slack at the boundary): up to the checkpoint, no more
    // than the checkpoint; after it, less, or another would be due.
    let bytes = |up_to: bool| -> usize {
        kept.iter()
            .filter(|(r, _)| (*r <= checkpoint) == up_to)
            .map(|(_, c)| clusternet::store::encode_batch(c).len())
            .sum()
    };
    let file = std::fs::metadata(
        dir.path()
            .join("checkpoints")
            .join(format!("{checkpoint:020}.checkpoint")),
    )
    .unwrap()
    .len() as usize;
    let batch = (bytes(true) + bytes(false)) / kept.len();
    assert!(
        bytes(true) <= file + batch,
        "{} bytes of history before a {file}-byte checkpoint",
        bytes(true)
    );
    assert!(bytes(false) <= file + batch, "{} bytes logged since it", bytes(false));
}

/// The log a follower holds (the alert engine waits for a bulk write to
/// pause before it reads the write's batches back) outlives checkpoints
/// until the hold moves; then what was kept only for it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_a_follower_holds_survives_compaction_until_it_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let (store, changes) = checkpointing_store(dir.path(), 10);
    store.hold_log_from(3);
    for chunk in changes.chunks(250) {
        store.apply(chunk.to_vec()).await.unwrap();
    }
    let checkpoint = checkpoint_revision(dir.path()).expect("the load took a checkpoint");
    assert!(checkpoint > 13, "checkpoint at {checkpoint}");
    assert_eq!(store.log().oldest().unwrap(), Some(3), "held from 3");
    // Let go: compacted at once, without another write or checkpoint.
    store.hold_log_from(u64::MAX);
    let waited = std::time::Instant::now();
    loop {
        let oldest = store.log().oldest().unwrap().unwrap();
        if oldest > 3 {
            assert!(oldest <= checkpoint + 1, "oldest {oldest}, checkpoint {checkpoint}");
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(10), "still held from {oldest}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
