//! The store: the network in memory, kept durable by a [`Backend`].
//!
//! One writer thread owns every write. It takes the queued batches, applies
//! each to a clone of the current network (a bad batch is dropped whole),
//! writes each good one to the backend, makes the whole group durable with a
//! single sync (group commit), and only then publishes the new snapshot and
//! answers the callers. Readers load the published snapshot without a lock, so
//! they never wait for writers and never see a batch that is half applied or
//! not yet durable.
//!
//! A repacker thread rebuilds the network's big maps once many changes have
//! been written and the writes have paused (see [`Network::repacked`]), and
//! hands the result to the writer, which applies to it again the batches
//! committed meanwhile and publishes it: batches leave the maps' nodes part
//! empty, and a bulk import leaves them half empty.

mod replicated;
mod sled_backend;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use replicated::{PublishRefused, ReplicationFigures, Sequencer};
pub use sled_backend::{decode_batch, encode_batch, open_db, SledBackend, SledConfig};

use crate::{
    error::{Error, Result},
    model::Change,
    network::{ChangeCounts, Network},
};

/// Where the network is made durable. The sled backend is the one in use; the
/// trait is the seam for another.
pub trait Backend: Send + 'static {
    /// Reads the stored network and the revision it is at.
    fn load(&self) -> Result<Loaded>;
    /// Records one applied batch atomically (all of it or none after a crash),
    /// not yet durably; returns the bytes it logged.
    fn append(&mut self, revision: u64, changes: &[Change]) -> Result<u64>;
    /// Stores the whole network as of `revision`, durably, so loading need
    /// not replay the changes before it; returns the checkpoint's bytes.
    fn checkpoint(&mut self, revision: u64, network: &Network) -> Result<u64>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> Result<()>;
    /// A reader of the change log that other threads can use.
    fn log_reader(&self) -> Arc<dyn LogReader>;
    /// Drops the log records of revisions before `before` (all of them
    /// covered by a checkpoint); returns how many.
    fn compact_log(&mut self, before: u64) -> Result<u64>;
}

/// Reads the change log: the batches applied, by revision.
pub trait LogReader: Send + Sync {
    /// Up to `limit` batches from revision `from` on, in order.
    fn read(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<Change>)>>;
    /// The oldest revision still in the log.
    fn oldest(&self) -> Result<Option<u64>>;
}

/// Told of every group of batches the writer makes durable (for metrics).
pub trait CommitObserver: Send + Sync {
    /// `batches` were made durable by one sync that took `sync`.
    fn group_committed(&self, batches: usize, sync: Duration);
    /// The network's maps were rebuilt compact in `took` and published.
    fn repacked(&self, _took: Duration) {}
}

/// A batch as committed, for live watchers.
#[derive(Debug)]
pub struct Committed {
    pub revision: u64,
    pub changes: Vec<Change>,
}

/// What a backend holds.
pub struct Loaded {
    pub revision: u64,
    pub network: Network,
    /// Changes replayed from the log after the last checkpoint.
    pub changes_since_checkpoint: u64,
    /// Their bytes in the log, and the last checkpoint's (0 without one).
    pub log_bytes_since_checkpoint: u64,
    pub checkpoint_bytes: u64,
}

/// Limits and tuning of the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// A batch with more changes than this is refused whole.
    pub max_batch_changes: usize,
    /// At most this many queued batches share one sync.
    pub max_group: usize,
    /// A checkpoint is taken once the log since the last one holds at least
    /// this many changes and either at least as many as the network has
    /// entities or as many bytes as the last checkpoint: checkpoint work
    /// stays proportional to what is written, and a stream of small batches
    /// (whose log records cost more than their changes) cannot make the
    /// log since the checkpoint, which must be kept, outgrow the network.
    pub checkpoint_min_changes: u64,
    /// Batches kept in the change log for watchers, counting back from the
    /// latest; older ones are dropped at checkpoints (the log after the last
    /// checkpoint is always kept). None keeps every batch.
    pub history_revisions: Option<u64>,
    /// The history kept also weighs at most as much as the last checkpoint,
    /// but it may always keep this many bytes (a small network keeps its
    /// `history_revisions` whatever they weigh).
    pub history_min_bytes: u64,
    /// The network's maps are rebuilt compact (repacked) once this many
    /// changes, and at least a sixteenth as many as the network has
    /// entities, were written since they last were; None never repacks.
    pub repack_min_changes: Option<u64>,
    /// How long writes must pause before a repack starts (the batches that
    /// come while it runs are applied to it again before it is published).
    pub repack_quiet: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_batch_changes: 10_000,
            max_group: 64,
            checkpoint_min_changes: 100_000,
            history_revisions: Some(100_000),
            history_min_bytes: 64 << 20,
            repack_min_changes: Some(100_000),
            repack_quiet: Duration::from_secs(1),
        }
    }
}

/// The network as of one revision. Cheap to hold: it shares structure with
/// the live network.
pub struct Snapshot {
    pub revision: u64,
    pub network: Network,
}

/// The result of an applied batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub revision: u64,
    pub counts: ChangeCounts,
}

struct WriteRequest {
    changes: Vec<Change>,
    sequence: Option<Sequence>,
    /// Replicated: the revision the shared log gave this batch. It must be
    /// the next one; one already applied (delivered again) is skipped.
    at: Option<u64>,
    reply: oneshot::Sender<Result<Applied>>,
    /// Counts the batch as being written until the writer lets it go.
    _in_flight: InFlight,
}

/// Batches queued or being written, and since when there were none.
#[derive(Default)]
struct WriteActivity {
    in_flight: usize,
    idle_since: Option<std::time::Instant>,
}

/// One batch counted in [`WriteActivity`] while it lives.
struct InFlight(Arc<std::sync::Mutex<WriteActivity>>);

impl InFlight {
    fn begin(activity: &Arc<std::sync::Mutex<WriteActivity>>) -> Self {
        activity.lock().unwrap_or_else(|p| p.into_inner()).in_flight += 1;
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut activity = self.0.lock().unwrap_or_else(|p| p.into_inner());
        activity.in_flight -= 1;
        if activity.in_flight == 0 {
            activity.idle_since = Some(std::time::Instant::now());
        }
    }
}

/// What the writer's queue carries.
enum Request {
    Write(WriteRequest),
    /// The network at `snapshot.revision`, repacked; `accepted` is told
    /// whether it was published (caught up with the batches since).
    Repacked {
        snapshot: Box<Snapshot>,
        took: Duration,
        accepted: std::sync::mpsc::SyncSender<bool>,
    },
    /// The log's hold moved on: records kept only for it can go.
    Released,
}

/// Ties queued batches together: once one fails, the later ones of the same
/// sequence are refused rather than applied, so a bulk import stops exactly at
/// its first bad batch even though later batches were already queued.
#[derive(Clone, Default)]
pub struct Sequence {
    failed: Arc<AtomicBool>,
}

impl Sequence {
    fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }
}

/// A batch in the writer's queue; await it for the outcome.
pub struct PendingBatch {
    answer: oneshot::Receiver<Result<Applied>>,
}

impl PendingBatch {
    pub async fn outcome(self) -> Result<Applied> {
        self.answer.await.map_err(|_| shutting_down())?
    }
}

pub struct Store {
    current: Arc<ArcSwap<Snapshot>>,
    log: Arc<dyn LogReader>,
    committed: broadcast::Sender<Arc<Committed>>,
    queue: std::sync::Mutex<Option<mpsc::Sender<Request>>>,
    writer: std::sync::Mutex<Option<thread::JoinHandle<()>>>,
    config: StoreConfig,
    observer: Arc<arc_swap::ArcSwapOption<Box<dyn CommitObserver>>>,
    /// Set while enough was written for a repack and it has not landed.
    repack_pending: Arc<AtomicBool>,
    /// The oldest revision a follower (the alert engine) has still to read
    /// from the log; compaction keeps it. `u64::MAX`: none held.
    held_from: Arc<AtomicU64>,
    /// Set while the log keeps records only for the hold.
    held_back: Arc<AtomicBool>,
    /// The published revision, for waiting until one is reached.
    revision: tokio::sync::watch::Receiver<u64>,
    /// Replicated: where this node's batches go to be ordered (the
    /// writer then applies only what the shared log delivers).
    proposals: std::sync::OnceLock<mpsc::Sender<replicated::Proposal>>,
    /// Replicated: what the replica reports about its log.
    replication: std::sync::OnceLock<Arc<ReplicationFigures>>,
    /// Whether the store should be serving (a replica that trails its log
    /// or lost it says no).
    ready: tokio::sync::watch::Sender<bool>,
    /// Batches queued or being written. An import's next batch waits while
    /// the writer is busy with a checkpoint and nothing commits, so this,
    /// not the last commit, tells when writes pause.
    activity: Arc<std::sync::Mutex<WriteActivity>>,
}

impl Store {
    /// Opens (or creates) a sled store in `path` and loads it into memory.
    pub fn open_sled(path: &Path, sled: &SledConfig, config: StoreConfig) -> Result<Store> {
        Store::open(Box::new(SledBackend::open(path, sled)?), config)
    }

    pub fn open(backend: Box<dyn Backend>, config: StoreConfig) -> Result<Store> {
        let Loaded {
            revision,
            network,
            changes_since_checkpoint,
            log_bytes_since_checkpoint,
            checkpoint_bytes,
        } = backend.load()?;
        let current = Arc::new(ArcSwap::from_pointee(Snapshot { revision, network }));
        let (sender, receiver) = mpsc::channel(1024);
        let log = backend.log_reader();
        // Live watchers that fall more than this many batches behind catch up
        // from the log instead; the writer never waits for them.
        let (committed, _) = broadcast::channel(WATCH_BUFFER);
        let observer = Arc::new(arc_swap::ArcSwapOption::empty());
        let repack_pending = Arc::new(AtomicBool::new(false));
        let held_from = Arc::new(AtomicU64::new(u64::MAX));
        let held_back = Arc::new(AtomicBool::new(false));
        let (revision_out, revision_in) = tokio::sync::watch::channel(revision);
        let repack_due = match config.repack_min_changes {
            Some(_) => Some(Repacker::start(
                current.clone(),
                sender.downgrade(),
                config.repack_quiet,
            )?),
            None => None,
        };
        let writer = Writer {
            observer: observer.clone(),
            backend,
            current: current.clone(),
            committed: committed.clone(),
            history_revisions: config.history_revisions,
            history_min_bytes: config.history_min_bytes,
            failure: None,
            max_group: config.max_group.max(1),
            checkpoint_min_changes: config.checkpoint_min_changes,
            since_checkpoint: changes_since_checkpoint,
            bytes_since_checkpoint: log_bytes_since_checkpoint,
            checkpoint_bytes,
            logged: std::collections::VecDeque::new(),
            repack_due,
            log: log.clone(),
            repack_min_changes: config.repack_min_changes.unwrap_or(u64::MAX),
            since_repack: changes_since_checkpoint,
            repack_pending: repack_pending.clone(),
            revision: revision_out,
            held_from: held_from.clone(),
            last_checkpoint: None,
            held_back: held_back.clone(),
        };
        let handle = thread::Builder::new()
            .name("clusternet-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| Error::Unavailable {
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Store {
            current,
            log,
            committed,
            queue: std::sync::Mutex::new(Some(sender)),
            writer: std::sync::Mutex::new(Some(handle)),
            config,
            observer,
            repack_pending,
            held_from,
            held_back,
            revision: revision_in,
            proposals: std::sync::OnceLock::new(),
            replication: std::sync::OnceLock::new(),
            ready: tokio::sync::watch::channel(true).0,
            activity: Arc::new(std::sync::Mutex::new(WriteActivity {
                in_flight: 0,
                idle_since: Some(std::time::Instant::now()),
            })),
        })
    }

    /// Keeps the log from `revision` on through compactions until a later
    /// call moves the hold (`u64::MAX` lets go): a follower reading batches
    /// back from the log must find them. Records kept only for the hold go
    /// once it moves past them.
    pub fn hold_log_from(&self, revision: u64) {
        let before = self.held_from.swap(revision, Ordering::AcqRel);
        if revision > before && self.held_back.load(Ordering::Acquire) {
            let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone();
            // A full queue: the next checkpoint compacts them.
            if let Some(queue) = queue {
                let _ = queue.try_send(Request::Released);
            }
        }
    }

    /// How long no batch has been queued or written (zero while one is).
    pub fn writes_idle_for(&self) -> std::time::Duration {
        let activity = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        match activity.idle_since {
            Some(since) if activity.in_flight == 0 => since.elapsed(),
            _ => std::time::Duration::ZERO,
        }
    }

    /// Waits until the published revision is at least `revision`; false if
    /// the writer stopped first.
    pub async fn reached(&self, revision: u64) -> bool {
        let mut published = self.revision.clone();
        let reached = published.wait_for(|r| *r >= revision).await.is_ok();
        reached
    }

    /// The published revision as it moves.
    pub fn revisions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision.clone()
    }

    /// Whether this store should be serving; health follows it.
    pub fn ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready
            .send_if_modified(|now| std::mem::replace(now, ready) != ready);
    }

    /// Whether a repack is due or under way: the network's maps are about to
    /// be rebuilt, so work that walks them all (warming a graph) is better
    /// done after.
    pub fn repack_pending(&self) -> bool {
        self.repack_pending.load(Ordering::Acquire)
    }

    /// Tells `observer` of every group of batches made durable from now on.
    pub fn observe(&self, observer: Box<dyn CommitObserver>) {
        self.observer.store(Some(Arc::new(observer)));
    }

    /// Batches validated and waiting for the writer.
    pub fn queued_batches(&self) -> usize {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.as_ref().map_or(0, |q| q.max_capacity() - q.capacity())
    }

    /// The latest durable network.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The batches applied from now on, as they are published. A receiver
    /// that falls behind gets `Lagged` and should read the log.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.committed.subscribe()
    }

    /// The change log, for catching up.
    pub fn log(&self) -> &Arc<dyn LogReader> {
        &self.log
    }

    /// The changes of the batches after revision `after` up to `upto`, in
    /// order; `None` when there are more than `most` of them or the log no
    /// longer holds them all (what wants them then starts afresh).
    pub fn changes_between(&self, after: u64, upto: u64, most: usize) -> Option<Vec<Change>> {
        // Batches are read a few at a time, so a bulk load is given up
        // after decoding a few of its batches, not hundreds.
        const CHUNK: usize = 8;
        if upto.saturating_sub(after) > most as u64 {
            return None; // more batches than changes wanted: each holds one at least
        }
        let mut changes = Vec::new();
        let mut next = after + 1;
        while next <= upto {
            let read = self.log.read(next, CHUNK).ok()?;
            if read.is_empty() {
                return None;
            }
            for (revision, batch) in read.into_iter().take_while(|(r, _)| *r <= upto) {
                if revision != next || changes.len() + batch.len() > most {
                    return None;
                }
                changes.extend(batch);
                next += 1;
            }
        }
        Some(changes)
    }

    /// Validates and applies one batch atomically; returns once it is durable.
    pub async fn apply(&self, changes: Vec<Change>) -> Result<Applied> {
        self.submit(changes, None).await?.outcome().await
    }

    /// Validates a batch and queues it behind those already queued; the
    /// returned handle resolves once it is applied and durable. Lets a caller
    /// prepare its next batch while this one is written.
    pub async fn submit(&self, changes: Vec<Change>, sequence: Option<Sequence>) -> Result<PendingBatch> {
        if changes.is_empty() {
            // A revision records a change; an empty batch would make one that records nothing.
            return Err(Error::invalid(
                "changes",
                "the batch is empty: send at least one change",
            ));
        }
        if changes.len() > self.config.max_batch_changes {
            return Err(Error::ResourceExhausted {
                message: format!(
                    "changes: the batch has {} changes; at most {} are allowed per batch",
                    changes.len(),
                    self.config.max_batch_changes
                ),
            });
        }
        // Off the runtime's workers: a batch of a few megabytes takes
        // milliseconds to check, and health checks must not wait for it.
        let changes = tokio::task::spawn_blocking(move || {
            changes
                .into_iter()
                .enumerate()
                .map(|(i, change)| {
                    let at = format!("changes[{i}].{}", change.field_name());
                    change.validated().map_err(|e| e.within(&at))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|_| Error::Unavailable {
            message: "the batch's validation was interrupted".into(),
        })??;
        let (reply, answer) = oneshot::channel();
        if let Some(proposals) = self.proposals.get() {
            // Replicated: ordered by the shared log, applied as it delivers.
            proposals
                .send(replicated::Proposal {
                    changes,
                    sequence,
                    reply,
                })
                .await
                .map_err(|_| shutting_down())?;
            return Ok(PendingBatch { answer });
        }
        self.queue_write(WriteRequest {
            changes,
            sequence,
            at: None,
            reply,
            _in_flight: InFlight::begin(&self.activity),
        })
        .await?;
        Ok(PendingBatch { answer })
    }

    /// Queues a batch the shared log ordered at `revision` (a replica's
    /// consumer): checked where it was proposed, applied here as it is.
    pub async fn submit_at(&self, revision: u64, changes: Vec<Change>) -> Result<PendingBatch> {
        let (reply, answer) = oneshot::channel();
        self.queue_write(WriteRequest {
            changes,
            sequence: None,
            at: Some(revision),
            reply,
            _in_flight: InFlight::begin(&self.activity),
        })
        .await?;
        Ok(PendingBatch { answer })
    }

    async fn queue_write(&self, request: WriteRequest) -> Result<()> {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(queue) = queue else {
            return Err(shutting_down());
        };
        queue.send(Request::Write(request)).await.map_err(|_| shutting_down())
    }

    /// Makes this store a replica of a shared log: from now on its batches
    /// are proposed to `sequencer`, which orders them, and are applied only
    /// as the log delivers them back (through [`Store::submit_at`]). Needs a
    /// tokio runtime; `figures` is what the replica reports about its log.
    /// Returns false if it already was one.
    pub fn replicate(
        self: &Arc<Self>,
        sequencer: Arc<dyn Sequencer>,
        retries: u32,
        figures: Arc<ReplicationFigures>,
    ) -> bool {
        let (sender, receiver) = mpsc::channel(64);
        if self.proposals.set(sender).is_err() {
            return false;
        }
        let _ = self.replication.set(figures.clone());
        tokio::spawn(replicated::propose(
            Arc::downgrade(self),
            sequencer,
            retries,
            figures,
            receiver,
        ));
        true
    }

    /// Replicated: what the replica reports about its log.
    pub fn replication(&self) -> Option<&ReplicationFigures> {
        self.replication.get().map(|f| &**f)
    }

    /// Stops taking writes, lets queued batches finish, syncs and stops the
    /// writer. Idempotent.
    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the writer thread panicked");
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn shutting_down() -> Error {
    Error::Unavailable {
        message: "the store is shutting down".into(),
    }
}

/// Batches a live watcher may fall behind before it catches up from the
/// log. The channel holds this many batches for its slowest receiver,
/// whatever their size: at 1,024, an alert engine behind a bulk import kept
/// a gigabyte of 5,000-change batches alive here.
const WATCH_BUFFER: usize = 128;

struct Writer {
    observer: Arc<arc_swap::ArcSwapOption<Box<dyn CommitObserver>>>,
    backend: Box<dyn Backend>,
    current: Arc<ArcSwap<Snapshot>>,
    committed: broadcast::Sender<Arc<Committed>>,
    history_revisions: Option<u64>,
    history_min_bytes: u64,
    /// Set by a failed write or sync: after that, what is durable is unknown,
    /// so the writer refuses further batches until restarted.
    failure: Option<String>,
    max_group: usize,
    checkpoint_min_changes: u64,
    /// Changes logged since the last checkpoint, and their bytes.
    since_checkpoint: u64,
    bytes_since_checkpoint: u64,
    /// The last checkpoint's size (0 before the first).
    checkpoint_bytes: u64,
    /// The bytes each batch logged since this start, oldest first (16
    /// bytes a batch): the history kept is bounded by them too.
    logged: std::collections::VecDeque<(u64, u64)>,
    /// Told after each commit while a repack is due.
    repack_due: Option<std::sync::mpsc::Sender<()>>,
    /// The change log, to catch a repacked network up.
    log: Arc<dyn LogReader>,
    repack_min_changes: u64,
    /// Changes written since the network was last loaded or repacked.
    since_repack: u64,
    repack_pending: Arc<AtomicBool>,
    revision: tokio::sync::watch::Sender<u64>,
    /// See [`Store::hold_log_from`].
    held_from: Arc<AtomicU64>,
    /// The revision of the last checkpoint written since this start.
    last_checkpoint: Option<u64>,
    /// The last compaction kept records only for the hold.
    held_back: Arc<AtomicBool>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        while let Some(first) = queue.blocking_recv() {
            let first = match first {
                Request::Write(first) => first,
                Request::Repacked {
                    snapshot,
                    took,
                    accepted,
                } => {
                    let _ = accepted.send(self.publish_repacked(snapshot, took));
                    continue;
                }
                Request::Released => {
                    self.compact_released();
                    continue;
                }
            };
            let mut group = vec![first];
            let mut repacked = None;
            let mut released = false;
            while group.len() < self.max_group {
                match queue.try_recv() {
                    Ok(Request::Write(request)) => group.push(request),
                    // Published once this group is in: it catches up with it.
                    Ok(Request::Repacked {
                        snapshot,
                        took,
                        accepted,
                    }) => {
                        repacked = Some((snapshot, took, accepted));
                        break;
                    }
                    Ok(Request::Released) => released = true,
                    Err(_) => break,
                }
            }
            self.commit_group(group);
            if released {
                self.compact_released();
            }
            if let Some((snapshot, took, accepted)) = repacked {
                let _ = accepted.send(self.publish_repacked(snapshot, took));
            }
        }
        if self.failure.is_none() {
            // A checkpoint at shutdown makes the next start a plain read.
            let published = self.current.load_full();
            let result = if self.since_checkpoint > 0 {
                self.backend
                    .checkpoint(published.revision, &published.network)
                    .map(|_| ())
            } else {
                self.backend.sync()
            };
            if let Err(error) = result {
                tracing::error!(%error, "final checkpoint failed; the next start replays the log");
            }
        }
    }

    /// `published` with the group's batches in `applied` applied again. Each
    /// applied once to the same network already, so each applies again; if
    /// one did not, the writer stops rather than publish a guess.
    fn rebuild(&mut self, published: &Network, group: &[WriteRequest], applied: &[(usize, u64)]) -> Network {
        let mut network = published.clone();
        for &(index, _) in applied {
            if let Err(error) = network.apply(&group[index].changes) {
                tracing::error!(%error, "a batch applied before failed on replay; refusing further writes");
                self.failure = Some(format!("a batch did not apply again: {error}"));
            }
        }
        network
    }

    /// Publishes a repacked network. The batches committed while it was
    /// made are applied to it again from the log, as they were applied
    /// before (so readers see no change); when there are many of them, or
    /// the log no longer holds them, it is thrown away.
    fn publish_repacked(&mut self, snapshot: Box<Snapshot>, took: Duration) -> bool {
        /// Changes replayed at most; past this the repack is thrown away
        /// (the writer replays them, and writes wait meanwhile).
        const REPLAY_MOST: usize = 50_000;
        // Landed or thrown away, it is no longer pending; the next commit
        // says so again if it is still due.
        self.repack_pending.store(false, Ordering::Release);
        let revision = self.current.load().revision;
        if self.failure.is_some() {
            return false;
        }
        let Snapshot {
            revision: from,
            mut network,
        } = *snapshot;
        let mut replayed = 0;
        let mut next = from + 1;
        while next <= revision {
            let read = match self.log.read(next, 64) {
                Ok(read) if !read.is_empty() => read,
                Ok(_) => return false, // compacted away: the pause after the next write repacks again
                Err(error) => {
                    tracing::warn!(%error, "a repack could not read the batches since it began; thrown away");
                    return false;
                }
            };
            for (logged, changes) in read.into_iter().take_while(|(r, _)| *r <= revision) {
                replayed += changes.len();
                if logged != next || replayed > REPLAY_MOST {
                    return false;
                }
                if let Err(error) = network.apply(&changes) {
                    // Each applied once to the same network already; not
                    // publishing is the safe side.
                    tracing::warn!(%error, revision = logged, "a batch did not apply again to a repack; thrown away");
                    return false;
                }
                next += 1;
            }
        }
        tracing::info!(
            revision,
            changes = self.since_repack,
            replayed,
            took_ms = took.as_millis() as u64,
            "network repacked"
        );
        self.current.store(Arc::new(Snapshot { revision, network }));
        self.since_repack = replayed as u64;
        if let Some(observer) = self.observer.load().as_ref() {
            observer.repacked(took);
        }
        true
    }

    fn maybe_repack(&mut self) {
        let Some(due) = &self.repack_due else { return };
        let entities = Self::entities(&self.current.load().network);
        if self.since_repack < self.repack_min_changes.max(entities / 16) {
            return;
        }
        let told = due.send(()).is_ok();
        self.repack_pending.store(told, Ordering::Release);
        if !told {
            tracing::warn!("the repacker stopped; the network's maps are no longer repacked");
            self.repack_due = None;
        }
    }

    fn entities(network: &Network) -> u64 {
        (network.clusters.len() + network.actors.len() + network.links.len() + network.cluster_links.len()) as u64
    }

    fn maybe_checkpoint(&mut self) {
        let published = self.current.load_full();
        let due = self.since_checkpoint >= self.checkpoint_min_changes
            && (self.since_checkpoint >= Self::entities(&published.network)
                || self.bytes_since_checkpoint >= self.checkpoint_bytes);
        if self.failure.is_some() || !due {
            return;
        }
        let _span = tracing::info_span!("checkpoint", revision = published.revision).entered();
        let started = std::time::Instant::now();
        match self.backend.checkpoint(published.revision, &published.network) {
            Ok(bytes) => {
                self.since_checkpoint = 0;
                self.bytes_since_checkpoint = 0;
                self.checkpoint_bytes = bytes;
                self.last_checkpoint = Some(published.revision);
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "checkpoint written");
                self.compact(published.revision);
            }
            // The log still holds everything, so a failed checkpoint costs
            // only a longer replay at the next start.
            Err(error) => tracing::warn!(%error, "checkpoint failed"),
        }
    }

    /// Drops log records older than the history kept; the checkpoint at
    /// `checkpoint` covers them. The history is `history_revisions`
    /// revisions, and at most as many bytes as the checkpoint: after a bulk
    /// import (2,000 batches of 5,000 changes is well within 100,000
    /// revisions) the whole import stayed in the log beside the checkpoint
    /// that holds it, 959 MB for 10M links, 2.4 times the CSV. A history
    /// that outweighs the network is no use to anyone: a graph is patched
    /// from 5% of the nodes at most, and a watch that far behind is better
    /// served by reading the network again.
    /// The hold moved on: compacts again what the last compaction kept
    /// only for it.
    fn compact_released(&mut self) {
        if let Some(checkpoint) = self.last_checkpoint.filter(|_| self.held_back.load(Ordering::Acquire)) {
            self.compact(checkpoint);
        }
    }

    fn compact(&mut self, checkpoint: u64) {
        let Some(keep) = self.history_revisions else { return };
        let latest = self.current.load().revision;
        let mut before = (checkpoint + 1).min(latest.saturating_sub(keep) + 1);
        let mut kept_bytes = 0u64;
        let mut by_bytes = None;
        for &(revision, bytes) in self.logged.iter().rev() {
            kept_bytes += bytes;
            if kept_bytes > self.checkpoint_bytes.max(self.history_min_bytes) {
                by_bytes = Some(revision + 1);
                break;
            }
        }
        if let Some(by_bytes) = by_bytes {
            before = before.max(by_bytes.min(checkpoint + 1));
        }
        // Nor what the alert engine has still to read: it waits for a bulk
        // import to pause before it reads the import's batches back.
        let held = self.held_from.load(Ordering::Acquire);
        self.held_back.store(held < before, Ordering::Release);
        before = before.min(held);
        self.logged.retain(|(revision, _)| *revision >= before);
        match self.backend.compact_log(before) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, oldest_kept = before, "change log compacted"),
            Err(error) => tracing::warn!(%error, "change log compaction failed"),
        }
    }

    /// Applies a group of batches to one copy of the published network, logs
    /// each, syncs once and publishes. Batches share the copy: copying per
    /// batch made every batch copy each persistent-map node it touched, the
    /// main cost of a bulk import. A batch that fails halfway leaves part of
    /// itself in the copy, so the copy is then rebuilt from the published
    /// network and the batches before it (rare: a refused batch).
    fn commit_group(&mut self, mut group: Vec<WriteRequest>) {
        let _span = tracing::debug_span!("commit_group", batches = group.len()).entered();
        let published = self.current.load_full();
        let mut network = published.network.clone();
        let mut revision = published.revision;
        let mut results = Vec::with_capacity(group.len());
        // The batches in `network`, in order, with their revisions.
        let mut applied: Vec<(usize, u64)> = Vec::new();
        for index in 0..group.len() {
            let request = &group[index];
            if let Some(failure) = &self.failure {
                results.push(Err(Error::Unavailable {
                    message: format!("the store stopped writing after a storage failure: {failure}"),
                }));
                continue;
            }
            if let Some(at) = request.at {
                if at <= revision {
                    // Delivered again (a consumer that restarted): in already.
                    results.push(Ok(Applied {
                        revision: at,
                        counts: ChangeCounts::default(),
                    }));
                    continue;
                }
                if at != revision + 1 {
                    self.failure = Some(format!("the shared log skipped from revision {revision} to {at}"));
                    results.push(Err(Error::Unavailable {
                        message: format!("replica out of order: revision {at} delivered after {revision}"),
                    }));
                    continue;
                }
            }
            if request.sequence.as_ref().is_some_and(Sequence::has_failed) {
                results.push(Err(Error::precondition(
                    "",
                    "not applied: an earlier batch of the same stream failed",
                )));
                continue;
            }
            let counts = match network.apply(&request.changes) {
                Ok(counts) => counts,
                Err(error) => {
                    if let Some(sequence) = &request.sequence {
                        sequence.fail();
                    }
                    if request.at.is_some() {
                        // The log holds it, so every replica must apply it:
                        // this one has diverged, and stops rather than guess.
                        tracing::error!(%error, revision = revision + 1, "a batch of the shared log does not apply here");
                        self.failure = Some(format!(
                            "revision {} of the shared log does not apply: {error}",
                            revision + 1
                        ));
                    }
                    results.push(Err(error));
                    network = self.rebuild(&published.network, &group, &applied);
                    continue;
                }
            };
            match self.backend.append(revision + 1, &request.changes) {
                Ok(bytes) => {
                    revision += 1;
                    self.since_checkpoint += request.changes.len() as u64;
                    self.bytes_since_checkpoint += bytes;
                    if self.history_revisions.is_some() {
                        self.logged.push_back((revision, bytes));
                    }
                    self.since_repack += request.changes.len() as u64;
                    applied.push((index, revision));
                    results.push(Ok(Applied { revision, counts }));
                }
                Err(error) => {
                    self.failure = Some(error.to_string());
                    results.push(Err(error));
                    network = self.rebuild(&published.network, &group, &applied);
                }
            }
        }
        let mut committed = Vec::new();
        if self.committed.receiver_count() > 0 {
            for &(index, revision) in &applied {
                // The batch is durable and needed no more here: hand it on.
                committed.push(Arc::new(Committed {
                    revision,
                    changes: std::mem::take(&mut group[index].changes),
                }));
            }
        }
        if revision != published.revision {
            let syncing = std::time::Instant::now();
            let synced = self.backend.sync();
            if let Some(observer) = self.observer.load().as_ref() {
                observer.group_committed(group.len(), syncing.elapsed());
            }
            if let Err(error) = synced {
                tracing::error!(%error, "sync failed; refusing further writes");
                self.failure = Some(error.to_string());
                for result in &mut results {
                    if result.is_ok() {
                        *result = Err(Error::Unavailable {
                            message: format!("the batch could not be made durable: {error}"),
                        });
                    }
                }
            } else {
                self.current.store(Arc::new(Snapshot { revision, network }));
                self.revision.send_replace(revision);
                // Published and durable: tell the watchers (no receivers is fine).
                for batch in committed {
                    let _ = self.committed.send(batch);
                }
            }
        }
        for (request, result) in group.into_iter().zip(results) {
            // A caller that went away no longer needs its answer.
            let _ = request.reply.send(result);
        }
        self.maybe_checkpoint();
        self.maybe_repack();
    }
}

/// The thread that repacks the network: told when a repack is due, it waits
/// for the writes to pause, repacks the published network at low priority,
/// hands it to the writer (which catches it up and publishes it) and, once
/// published, gives the old maps' memory back to the system.
struct Repacker {
    current: Arc<ArcSwap<Snapshot>>,
    /// Weak, so the repacker does not keep the writer running at shutdown.
    queue: mpsc::WeakSender<Request>,
    quiet: Duration,
}

impl Repacker {
    fn start(
        current: Arc<ArcSwap<Snapshot>>,
        queue: mpsc::WeakSender<Request>,
        quiet: Duration,
    ) -> Result<std::sync::mpsc::Sender<()>> {
        let (due, told) = std::sync::mpsc::channel();
        let repacker = Repacker { current, queue, quiet };
        thread::Builder::new()
            .name("clusternet-repacker".into())
            .spawn(move || repacker.run(told))
            .map_err(|e| Error::Unavailable {
                message: format!("cannot start the repacker thread: {e}"),
            })?;
        Ok(due)
    }

    fn run(self, told: std::sync::mpsc::Receiver<()>) {
        use std::sync::mpsc::RecvTimeoutError;
        crate::background::lower_priority("repacker thread");
        // Ends when the writer does (it holds the other end).
        while told.recv().is_ok() {
            // Each commit while due tells again: wait until one quiet spell
            // passes with no word, so a repack is not overtaken at once.
            loop {
                match told.recv_timeout(self.quiet) {
                    Ok(()) => continue,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            let published = self.current.load_full();
            let started = Instant::now();
            let snapshot = Box::new(Snapshot {
                revision: published.revision,
                network: published.network.repacked(),
            });
            drop(published);
            let (accepted, answer) = std::sync::mpsc::sync_channel(1);
            let request = Request::Repacked {
                snapshot,
                took: started.elapsed(),
                accepted,
            };
            let Some(queue) = self.queue.upgrade() else { return };
            if queue.blocking_send(request).is_err() {
                return;
            }
            drop(queue);
            if answer.recv() == Ok(true) {
                crate::background::return_freed_memory();
            }
        }
    }
}

impl<T: CommitObserver + ?Sized> CommitObserver for Arc<T> {
    fn group_committed(&self, batches: usize, sync: Duration) {
        (**self).group_committed(batches, sync)
    }

    fn repacked(&self, took: Duration) {
        (**self).repacked(took)
    }
}
