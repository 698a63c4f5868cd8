//! The alert engine: a thread that follows the store's committed batches,
//! evaluates them in rounds, makes each round's alerts durable and then
//! hands them to live subscribers.
//!
//! * **Events first, then figures.** The engine takes in every batch
//!   committed since it last looked: it raises their event alerts (new links
//!   across clusters, lost substitutes: cheap, from the batches themselves)
//!   and marks the clusters they changed as owed. It then recomputes owed
//!   clusters' figures a slice at a time (about [`PAY_FOR`] of work), looking
//!   for new batches between slices, so an event alert waits for at most one
//!   slice, not for every figure a backlog owes.
//! * **Coalescing.** Owed figures are recomputed once however many batches
//!   changed the cluster meanwhile, on the latest network taken in; the
//!   writer never waits for the engine.
//! * **Lower priority.** The thread runs at nice 10: when the machine is
//!   busy, the writer and the gRPC threads come first (a bulk load costs the
//!   writer little), and when it is not, alerts go out as soon as they are
//!   evaluated. A rest after each long round was tried first; it held every
//!   batch that arrived during the rest for seconds.
//! * **Catching up.** Batches the live broadcast dropped (the engine fell
//!   behind) are read back from the change log, a few at a time.
//! * **Bulk writes.** Batches of thousands of changes back to back (an
//!   import) are taken in once the writes pause, read back from the log,
//!   which the engine holds from its first batch not taken in
//!   ([`Store::hold_log_from`]): taken in as they came, they took a core
//!   from the writer and had the engine hold older networks.
//! * **Restart.** The log holds the revision taken in, the clusters owed and
//!   the figures kept, so a restart resumes where the engine stopped. Batches a crash left
//!   unevaluated are evaluated against the kept figures (see
//!   [`Evaluator::evaluate`] for what that cannot tell).
//! * **Replicated** (`serve --nats`, [`SharedSteps`]): only the replica
//!   holding the lease runs the rounds, and each step is made durable in
//!   the shared step log first; every replica records those steps into its
//!   own log, so each serves the same alerts, and the next holder resumes
//!   from the last step.

use std::{
    collections::{btree_map::Entry, BTreeMap, BTreeSet, HashMap},
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch};

use super::{
    evaluate::{every_cluster, ClusterState, Evaluator, Round},
    log::{settled, AlertLog, StateChange, Step},
    Alert, AlertRules,
};
use crate::{
    analysis::stages::stage_config::StageConfig,
    error::{Error, Result},
    model::{Change, Id},
    store::{Committed, PublishRefused, Snapshot, Store},
};

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The engine's steps shared by replicas (`serve --nats`; kept in
/// JetStream by `crate::replica::alerts`), and the lease that says which
/// replica produces them.
///
/// Alerts are produced once: only the lease holder evaluates, and it
/// appends each step on the condition that the shared log still ends where
/// its own state does, so a holder that lost the lease unawares cannot
/// extend it. Every replica records the shared steps into its own alert
/// log in order (`AlertEngine::record_shared`), the producer its own steps
/// too, read back: nothing reaches a replica's log or its watchers but what
/// the shared log holds, in its order. So ListAlerts and WatchAlerts give
/// the same alerts under the same sequence numbers on any replica, and a
/// replica taking the lease over resumes from exactly the figures and owed
/// clusters the last holder recorded.
pub trait SharedSteps: Send + Sync + 'static {
    /// Whether this replica holds the lease now.
    fn holds_lease(&self) -> bool;

    /// Appends an encoded step if the shared log still ends at `expected`;
    /// the position it got.
    fn append(&self, expected: u64, step: Vec<u8>) -> Pending<'_, std::result::Result<u64, PublishRefused>>;

    /// Waits until this replica has recorded every step the shared log
    /// holds now; where the log ends.
    fn caught_up(&self) -> Pending<'_, Result<u64>>;

    /// Waits until this replica has read the shared log up to `position`,
    /// recording each step in order.
    fn recorded(&self, position: u64) -> Pending<'_, Result<()>>;

    /// The last alert sequence the outside record (the ALERTS stream)
    /// holds.
    fn alerts_last(&self) -> Pending<'_, Result<u64>>;

    /// Adds durable alerts to the outside record, each at its sequence.
    fn publish_alerts(&self, alerts: Vec<Alert>) -> Pending<'_, Result<()>>;
}

/// Rounds a live subscriber may fall behind before it reads the log instead.
/// A round's alerts go out as one message, so a bulk round of thousands of
/// alerts does not push every subscriber into the log at once.
const LIVE_BUFFER: usize = 256;
/// Batches read from the change log at once when catching up.
const LOG_CHUNK: usize = 256;
/// Batches of a backlog read from the log at once (a bulk import's are
/// 5,000 changes each or more: 16 of them are some 15 MB).
const BACKLOG_READ: usize = 16;
/// How long to wait before retrying a round whose alerts could not be stored.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Replicated: how often a replica not producing looks whether it holds
/// the lease, and a producer with nothing to do whether it still does.
const LEASE_LOOK: Duration = Duration::from_millis(250);
/// Alone and idle: how often the engine looks whether the store republished
/// its revision (a repack), to let go of the copy it holds.
const REPACK_LOOK: Duration = Duration::from_secs(1);
/// Replicated: how long a new producer waits for its network to reach the
/// revision the shared alert log was evaluated at.
const TAKE_OVER_WAIT: Duration = Duration::from_secs(5);
/// Batches of this many changes or more coming between two take-ins mark
/// a bulk write (an import): the engine waits until the writes pause.
const BULK_CHANGES: usize = 5_000;
/// How long the writes must pause before a bulk write is taken in.
const BULK_QUIET: Duration = Duration::from_millis(200);
/// A bulk write that never pauses is still taken in, and a slice of its
/// figures worked on, this often.
const BULK_DEFERS_AT_MOST: Duration = Duration::from_secs(30);
/// Work on owed figures between two looks for new batches.
pub const PAY_FOR: Duration = Duration::from_millis(40);
/// Owed clusters recomputed together (in parallel) within a slice.
const PAY_AT_ONCE: usize = 4;

/// The alerts of one round, in sequence order; never empty.
pub struct Raised {
    pub alerts: Vec<Alert>,
}

impl Raised {
    /// The first and last sequence numbers.
    pub fn span(&self) -> (u64, u64) {
        let first = self.alerts.first().map_or(0, |a| a.sequence);
        let last = self.alerts.last().map_or(0, |a| a.sequence);
        (first, last)
    }
}

/// The engine as the service layer sees it.
pub struct AlertEngine {
    log: Arc<AlertLog>,
    rules: ArcSwap<AlertRules>,
    /// The latest sequence number that is durable (and so may be sent).
    latest: AtomicU64,
    /// The latest revision whose alerts are all raised (events and figures).
    evaluated: AtomicU64,
    live: broadcast::Sender<Arc<Raised>>,
    /// Replicated: the shared steps and lease; None on a single server.
    shared: Option<Arc<dyn SharedSteps>>,
    /// Whether this engine evaluates and records steps (always, on a
    /// single server; while it holds the lease, replicated).
    producing: AtomicBool,
    stop: watch::Sender<bool>,
    /// The same signal for the round under way, which checks it between
    /// clusters (a round over a large burst takes seconds).
    stopping: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<thread::JoinHandle<()>>>,
}

impl AlertEngine {
    /// Loads the log and starts evaluating `store`'s batches: at once on a
    /// single server (`shared` None), while holding the lease when the
    /// steps are shared by replicas.
    pub fn start(
        store: Arc<Store>,
        log: AlertLog,
        stage: StageConfig,
        shared: Option<Arc<dyn SharedSteps>>,
    ) -> Result<Arc<AlertEngine>> {
        let loaded = log.load()?;
        let settled_at_start = loaded.settled();
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let (stop, stopped) = watch::channel(false);
        let engine = Arc::new(AlertEngine {
            log: Arc::new(log),
            rules: ArcSwap::from_pointee(loaded.rules),
            latest: AtomicU64::new(loaded.last_sequence),
            evaluated: AtomicU64::new(settled_at_start),
            live,
            producing: AtomicBool::new(shared.is_none()),
            shared: shared.clone(),
            stop,
            stopping: Arc::new(AtomicBool::new(false)),
            thread: std::sync::Mutex::new(None),
        });
        // Subscribed before anything is read, so no batch falls in between.
        let committed = store.subscribe();
        // The network as the engine starts, taken here rather than when its
        // (low-priority) thread gets to it: a batch written in between would
        // otherwise fall into the baseline and raise nothing. A replica
        // takes the network as it is when it takes the lease.
        let at_start = shared.is_none().then(|| store.snapshot());
        let worker = Worker {
            engine: engine.clone(),
            at_start,
            store,
            stage,
            evaluated: loaded.evaluated,
            states: loaded.states,
            owed: loaded.owed,
            before: None,
            bulk_since: None,
            last_batch_seen: Instant::now(),
            changes_seen: 0,
            stopping: engine.stopping.clone(),
            shared,
            leading: false,
            position: 0,
            outside: None,
            runtime: None,
        };
        let handle = thread::Builder::new()
            .name("clusternet-alerts".into())
            .spawn(move || worker.run(committed, stopped))
            .map_err(|e| Error::Unavailable {
                message: format!("cannot start the alert thread: {e}"),
            })?;
        *engine.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(engine)
    }

    /// Alerts as they are made durable, from now on, a round at a time. A
    /// receiver that falls behind gets `Lagged` and should read the log.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Raised>> {
        self.live.subscribe()
    }

    /// The latest durable sequence number (0: no alert yet).
    pub fn latest_sequence(&self) -> u64 {
        self.latest.load(Ordering::Acquire)
    }

    /// What the alert log takes on disk (None if sled cannot say).
    pub fn bytes_on_disk(&self) -> Option<u64> {
        self.log.bytes_on_disk()
    }

    pub fn evaluated_revision(&self) -> u64 {
        self.evaluated.load(Ordering::Acquire)
    }

    /// Up to `limit` alerts from sequence `from` on, from the log.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<Alert>> {
        self.log.read(from, limit)
    }

    pub fn rules(&self) -> AlertRules {
        AlertRules::clone(&self.rules.load())
    }

    /// Validates, stores durably (in the shared log when replicated, so
    /// every replica takes them), then applies the rules to later rounds.
    /// Replicated, it blocks on the runtime it is called from: call it from
    /// a blocking task.
    pub fn set_rules(&self, rules: AlertRules) -> Result<AlertRules> {
        let rules = rules.validated()?;
        let step = Step::Rules(rules.clone());
        let Some(shared) = &self.shared else {
            self.record(None, &step)?;
            return Ok(rules);
        };
        let encoded = step.encode();
        tokio::runtime::Handle::current().block_on(async {
            const ATTEMPTS: usize = 8;
            for _ in 0..ATTEMPTS {
                let expected = shared.caught_up().await?;
                match shared.append(expected, encoded.clone()).await {
                    Ok(position) => {
                        self.record_shared(position, &step)?;
                        return Ok(rules.clone());
                    }
                    // The producer appended first: catch up and go again.
                    Err(PublishRefused::Conflict) => continue,
                    Err(PublishRefused::Failed(error)) => return Err(error),
                }
            }
            Err(Error::Aborted {
                message: format!("rules: the shared alert log moved on {ATTEMPTS} times; send them again"),
            })
        })
    }

    /// The last shared step this replica's alert log holds (0: none).
    pub fn recorded_step(&self) -> Result<u64> {
        self.log.step()
    }

    /// Whether the alerts are shared by replicas (`serve --nats`): this
    /// node's log may trail the one producing them.
    pub fn replicated(&self) -> bool {
        self.shared.is_some()
    }

    /// Whether this engine produces alerts now (replicated: holds the lease).
    pub fn producing(&self) -> bool {
        self.producing.load(Ordering::Acquire)
    }

    /// Records a step of the shared log at `position` (each replica's
    /// consumer hands in every step, the producer's own included); false if
    /// it was recorded already.
    pub fn record_shared(&self, position: u64, step: &Step) -> Result<bool> {
        let recorded = self.record(Some(position), step)?;
        if recorded {
            self.evaluated.store(self.log.settled()?, Ordering::Release);
        }
        Ok(recorded)
    }

    /// Makes a step durable, then publishes it: the new rules, or the
    /// alerts' sequence and the alerts to live subscribers. Whoever records
    /// a step sends its alerts, so they go out once on each replica.
    fn record(&self, position: Option<u64>, step: &Step) -> Result<bool> {
        if !self.log.record(position, step)? {
            return Ok(false);
        }
        if let Step::Rules(rules) = step {
            self.rules.store(Arc::new(rules.clone()));
        }
        let alerts = step.alerts();
        if let Some(last) = alerts.last() {
            self.latest.store(last.sequence, Ordering::Release);
            // No subscriber is fine.
            let _ = self.live.send(Arc::new(Raised {
                alerts: alerts.to_vec(),
            }));
        }
        Ok(true)
    }

    /// Stops the thread: the round under way stops between clusters,
    /// unstored; the batches not yet evaluated are evaluated at the next
    /// start, from the log. Idempotent.
    pub fn close(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the alert thread panicked");
            }
        }
    }
}

impl Drop for AlertEngine {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }
}

struct Worker {
    engine: Arc<AlertEngine>,
    /// The store's snapshot when the engine started, for the first round.
    at_start: Option<Arc<Snapshot>>,
    store: Arc<Store>,
    stage: StageConfig,
    /// The latest revision taken in (None: nothing evaluated yet).
    evaluated: Option<u64>,
    states: HashMap<Id, ClusterState>,
    /// Clusters whose figures batches taken in changed and that are not yet
    /// recomputed, each with the revision that first changed it: the
    /// oldest are paid first.
    owed: BTreeMap<Id, u64>,
    /// The network as of `evaluated`, when known (not after a restart).
    before: Option<Arc<Snapshot>>,
    /// Since when batches come in bulk (see [`BULK_CHANGES`]), when the
    /// last was seen, and the changes seen since the last take-in.
    bulk_since: Option<Instant>,
    last_batch_seen: Instant,
    changes_seen: usize,
    /// Set at shutdown; the round under way checks it between clusters.
    stopping: Arc<AtomicBool>,
    /// Replicated: the shared steps; whether this worker produces them
    /// now, and the position its state is at in their log.
    shared: Option<Arc<dyn SharedSteps>>,
    leading: bool,
    position: u64,
    /// The last alert sequence known to be in the outside record (None:
    /// ask it).
    outside: Option<u64>,
    /// The thread's runtime, for the shared log's calls.
    runtime: Option<Arc<tokio::runtime::Runtime>>,
}

impl Worker {
    fn run(mut self, mut committed: broadcast::Receiver<Arc<Committed>>, mut stopped: watch::Receiver<bool>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => Arc::new(runtime),
            Err(error) => {
                tracing::error!(%error, "the alert thread cannot start; no alerts will be raised");
                return;
            }
        };
        self.runtime = Some(runtime.clone());
        crate::background::lower_priority("alert thread");
        let pool = evaluation_pool();
        let on_pool = |work: &mut (dyn FnMut() -> bool + Send)| match &pool {
            Some(pool) => pool.install(work),
            None => work(),
        };
        let mut pending: BTreeMap<u64, Arc<Committed>> = BTreeMap::new();
        self.hold_log();
        if self.shared.is_none() {
            on_pool(&mut || {
                self.start_up();
                true
            });
        }
        loop {
            // Replicated and not producing: batches are the producer's to
            // evaluate; look for the lease now and then.
            if self.shared.is_some() && !self.leading {
                pending.clear();
                while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = committed.try_recv() {}
                let took_over = self.holds_lease() && on_pool(&mut || self.take_over());
                if !took_over {
                    if stops_within(&runtime, &mut stopped, LEASE_LOOK) {
                        return;
                    }
                    continue;
                }
            }
            // With figures owed, only a look: they are worked on at once.
            // Replicated, the wait ends now and then to look at the lease.
            let deferring = self.deferring();
            let stopping = if self.owed.is_empty() || deferring {
                let wait = if deferring {
                    BULK_QUIET
                } else if self.shared.is_some() {
                    LEASE_LOOK
                } else {
                    REPACK_LOOK
                };
                let (stopping, received) = runtime.block_on(async {
                    tokio::select! {
                        received = committed.recv() => (false, Some(received)),
                        _ = stopped.wait_for(|stop| *stop) => (true, None),
                        _ = tokio::time::sleep(wait) => (false, None),
                    }
                });
                match received {
                    Some(Ok(batch)) => {
                        self.seen(Some(batch.changes.len()));
                        pending.insert(batch.revision, batch);
                    }
                    // Lagged: the log has what was dropped.
                    Some(Err(broadcast::error::RecvError::Lagged(_))) => self.seen(None),
                    _ => {}
                }
                stopping
            } else {
                self.stopping.load(Ordering::Relaxed)
            };
            // Take the rest of the burst.
            loop {
                match committed.try_recv() {
                    Ok(batch) => {
                        self.seen(Some(batch.changes.len()));
                        pending.insert(batch.revision, batch);
                    }
                    Err(broadcast::error::TryRecvError::Lagged(_)) => self.seen(None),
                    Err(_) => break,
                }
            }
            // Stopping ends the thread between steps, backlog or not: what
            // was taken in and what is owed are durable, so the next start
            // goes on from there.
            if stopping {
                return;
            }
            if self.shared.is_some() && !self.holds_lease() {
                self.step_down("the lease lapsed");
                continue;
            }
            self.follow_repack();
            if self.deferring() {
                // Taken in from the log once the writes pause.
                pending.clear();
                continue;
            }
            let stored = on_pool(&mut || self.catch_up(&mut pending) && self.pay_owed());
            if !stored && self.leading_or_alone() && stops_within(&runtime, &mut stopped, RETRY_AFTER) {
                return;
            }
        }
    }

    fn holds_lease(&self) -> bool {
        self.shared.as_ref().is_some_and(|shared| shared.holds_lease())
    }

    fn leading_or_alone(&self) -> bool {
        self.shared.is_none() || self.leading
    }

    /// Replicated, with the lease just taken: resumes from the figures and
    /// owed clusters the shared log ends with (every step of it recorded
    /// here first), on a network that has reached the revision they are
    /// at. False if it cannot yet.
    fn take_over(&mut self) -> bool {
        let (Some(shared), Some(runtime)) = (self.shared.clone(), self.runtime.clone()) else {
            return false;
        };
        let position = match runtime.block_on(shared.caught_up()) {
            Ok(position) => position,
            Err(error) => {
                tracing::warn!(%error, "holding the alert lease, but the shared alert log is not read up to its end");
                return false;
            }
        };
        let loaded = match self.engine.log.load() {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(%error, "cannot read the alert log to take over producing alerts");
                return false;
            }
        };
        if let Some(evaluated) = loaded.evaluated {
            // Made inside the runtime: a timer needs one.
            let reached =
                runtime.block_on(async { tokio::time::timeout(TAKE_OVER_WAIT, self.store.reached(evaluated)).await });
            if !matches!(reached, Ok(true)) {
                tracing::warn!(
                    evaluated,
                    "the alert log is ahead of this replica's network; waiting to take over"
                );
                return false;
            }
        }
        self.evaluated = loaded.evaluated;
        self.states = loaded.states;
        self.owed = loaded.owed;
        self.position = position;
        self.outside = None;
        self.before = self.before.take().filter(|b| Some(b.revision) == self.evaluated);
        self.leading = true;
        tracing::info!(
            position,
            evaluated = ?self.evaluated,
            owed = self.owed.len(),
            "took the alert lease: producing alerts"
        );
        self.share_outside();
        self.start_up();
        // Said once it has resumed (a new log's baseline recorded).
        self.engine.producing.store(self.leading, Ordering::Release);
        true
    }

    fn step_down(&mut self, why: &str) {
        if self.leading {
            tracing::info!(why, "no longer producing alerts");
        }
        self.leading = false;
        self.engine.producing.store(false, Ordering::Release);
        self.hold_log();
        // `before` is kept: the network at a revision is the same whoever
        // evaluated it, so a take-over that resumes there can use it.
        self.states.clear();
        self.owed.clear();
    }

    /// Makes a step durable: on a single server in the alert log; when
    /// replicated, first in the shared log, on the condition that it still
    /// ends where this worker's state does. False if it was not.
    fn record(&mut self, step: &Step) -> bool {
        let (shared, runtime) = match (self.shared.clone(), self.runtime.clone()) {
            (None, _) => {
                if let Err(error) = self.engine.record(None, step) {
                    tracing::error!(%error, "cannot store alerts; retrying");
                    return false;
                }
                return true;
            }
            (Some(_), None) => return false,
            (Some(shared), Some(runtime)) => (shared, runtime),
        };
        if !self.leading {
            return false;
        }
        let position = match runtime.block_on(shared.append(self.position, step.encode())) {
            Ok(position) => position,
            Err(PublishRefused::Conflict) => {
                // Another replica extended the log: this one's state is no
                // longer its end.
                self.step_down("another replica recorded an alert step first");
                return false;
            }
            Err(PublishRefused::Failed(error)) => {
                tracing::error!(%error, "cannot share an alert step; retrying");
                return false;
            }
        };
        // Recorded here by this replica's reader, in the shared log's order
        // as on every replica, not written straight from memory: what the
        // watchers here are sent is what the log holds at that place,
        // whatever happened to the lease or to NATS meanwhile.
        if let Err(error) = runtime.block_on(shared.recorded(position)) {
            tracing::warn!(%error, position, "an alert step shared but not read back");
            self.step_down("its step was not read back from the shared log");
            return false;
        }
        if let Some(last) = step.alerts().last() {
            let held = self.engine.read(last.sequence, 1);
            if !matches!(&held, Ok(read) if read.first() == Some(last)) {
                tracing::error!(
                    position,
                    sequence = last.sequence,
                    "the shared alert log holds other alerts than this step's at its place"
                );
                self.step_down("the shared log holds another step at this one's place");
                return false;
            }
        }
        self.position = position;
        self.share_outside();
        true
    }

    /// Replicated: adds the alerts recorded here and not yet in the outside
    /// record (the ALERTS stream) to it, in order. A failure is retried
    /// after the next step.
    fn share_outside(&mut self) {
        let (Some(shared), Some(runtime)) = (self.shared.clone(), self.runtime.clone()) else {
            return;
        };
        let latest = self.engine.latest_sequence();
        let mut last = match self.outside {
            Some(last) => last,
            None => match runtime.block_on(shared.alerts_last()) {
                Ok(last) => last,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the ALERTS stream's end; trying again after the next step");
                    return;
                }
            },
        };
        while last < latest {
            let alerts = match self.engine.read(last + 1, LOG_CHUNK) {
                Ok(alerts) if !alerts.is_empty() => alerts,
                Ok(_) => break,
                Err(error) => {
                    tracing::error!(%error, "cannot read the alert log");
                    self.outside = None;
                    return;
                }
            };
            let next = alerts.last().map_or(last, |a| a.sequence);
            if let Err(error) = runtime.block_on(shared.publish_alerts(alerts)) {
                tracing::warn!(%error, "cannot add alerts to the ALERTS stream; trying again after the next step");
                self.outside = None;
                return;
            }
            last = next;
        }
        self.outside = Some(last);
    }

    /// The first round after start (or after taking the lease): a
    /// baseline when nothing was kept, or the batches committed since the
    /// last round.
    fn start_up(&mut self) {
        let now = self.at_start.take().unwrap_or_else(|| self.store.snapshot());
        match self.evaluated {
            None => {
                let rules = self.engine.rules();
                let Ok(baseline) = self.evaluator(&rules, now.revision).baseline(&now.network) else {
                    tracing::info!("alert baseline stopped by the shutdown");
                    return;
                };
                let states: Vec<(Id, Option<ClusterState>)> = baseline.into_iter().map(|(c, s)| (c, Some(s))).collect();
                let step = Step::Baseline {
                    evaluated: now.revision,
                    alerts: Vec::new(),
                    states,
                };
                if self.record(&step) {
                    let Step::Baseline { states, .. } = step else {
                        unreachable!()
                    };
                    self.states = states.into_iter().filter_map(|(c, s)| Some((c, s?))).collect();
                    self.owed.clear();
                    self.taken_in(now);
                    tracing::info!(clusters = self.states.len(), "alert baseline taken");
                } else {
                    tracing::error!("cannot store the alert baseline; retrying with the next batch");
                }
            }
            Some(evaluated) if evaluated == now.revision => self.before = Some(now),
            Some(evaluated) if evaluated > now.revision => {
                tracing::warn!(
                    evaluated,
                    revision = now.revision,
                    "the alert log is ahead of the store (restored from an older copy?); taking a new baseline"
                );
                self.evaluated = None;
                self.states.clear();
                self.owed.clear();
                self.start_up();
            }
            Some(_) => {
                self.catch_up(&mut BTreeMap::new());
            }
        }
    }

    /// Takes in every batch from the one after `evaluated` to the latest
    /// published, raising their event alerts and owing the figures of the
    /// clusters they changed (every cluster when a batch can no longer be
    /// read, whose events are then skipped). Batches not received are read
    /// from the log [`BACKLOG_READ`] at a time and let go once taken: an
    /// engine behind a bulk import never holds its backlog whole. Returns
    /// false if the step could not be stored.
    fn catch_up(&mut self, pending: &mut BTreeMap<u64, Arc<Committed>>) -> bool {
        let Some(evaluated) = self.evaluated else {
            self.start_up();
            return self.evaluated.is_some();
        };
        let next = self.store.snapshot();
        pending.retain(|revision, _| *revision > evaluated);
        if next.revision <= evaluated {
            return true;
        }
        let _span = tracing::debug_span!(
            "alert_take_in",
            revision = next.revision,
            batches = next.revision - evaluated
        )
        .entered();
        let started = Instant::now();
        let rules = self.engine.rules();
        let evaluator = self.evaluator(&rules, next.revision);
        let before = self.before.clone();
        let mut round = before
            .as_ref()
            .map(|b| Round::new(&b.network, &next.network, &self.states));
        let mut taken = 0usize;
        let mut revision = evaluated + 1;
        let mut take = |round: &mut Option<Round>, revision: u64, changes: &[Change]| {
            taken += changes.len();
            if let Some(round) = round {
                for change in changes {
                    round.take(revision, change);
                }
            }
        };
        while revision <= next.revision {
            if let Some(batch) = pending.remove(&revision) {
                take(&mut round, revision, &batch.changes);
                revision += 1;
                continue;
            }
            match self.store.log().read(revision, BACKLOG_READ) {
                Ok(read) if read.first().map(|(r, _)| *r) == Some(revision) => {
                    for (r, changes) in read.into_iter().take_while(|(r, _)| *r <= next.revision) {
                        if r != revision {
                            break;
                        }
                        take(&mut round, r, &changes);
                        revision += 1;
                    }
                }
                Ok(_) => {
                    tracing::warn!(
                        revision,
                        "batches to evaluate were compacted away; re-evaluating every cluster"
                    );
                    round = None;
                    break;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the change log; re-evaluating every cluster");
                    round = None;
                    break;
                }
            }
        }
        pending.retain(|r, _| *r > next.revision);
        let (mut alerts, affected) = match &round {
            Some(round) => (evaluator.round_events(round), round.affected()),
            None => (Vec::new(), every_cluster(&next.network, &self.states)),
        };
        drop(round);
        self.number(&mut alerts);
        let owed: Vec<Id> = affected.into_iter().filter(|c| !self.owed.contains_key(c)).collect();
        let step = Step::TakeIn {
            evaluated: next.revision,
            alerts,
            owed,
        };
        if !self.record(&step) {
            // Nothing was sent; the same batches are taken in again.
            return false;
        }
        let Step::TakeIn { alerts, owed, .. } = step else {
            unreachable!()
        };
        self.owed.extend(owed.into_iter().map(|c| (c, next.revision)));
        self.changes_seen = 0;
        if taken > 0 {
            // Measured from the end of the take-in: a long one is no pause.
            self.last_batch_seen = Instant::now();
            if taken >= BULK_CHANGES {
                self.bulk_since.get_or_insert(self.last_batch_seen);
            }
        }
        tracing::debug!(
            alerts = alerts.len(),
            changes = taken,
            owed = self.owed.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batches taken in"
        );
        self.taken_in(next);
        if taken >= BULK_CHANGES {
            // The round's sets and maps of a bulk write are many small
            // allocations; glibc keeps their pages resident unless told.
            crate::background::return_freed_memory();
        }
        true
    }

    /// Recomputes owed figures on the network last taken in, the oldest
    /// owed first, a few clusters at a time, until [`PAY_FOR`] has passed or
    /// a batch waits; raises their state alerts. Returns false if they could
    /// not be stored.
    fn pay_owed(&mut self) -> bool {
        // Nothing owed: nothing to store (an empty step would still flush).
        let Some(at) = self.before.clone().filter(|_| !self.owed.is_empty()) else {
            return true;
        };
        let _span = tracing::debug_span!("alert_figures", revision = at.revision, owed = self.owed.len()).entered();
        let started = Instant::now();
        let rules = self.engine.rules();
        let evaluator = self.evaluator(&rules, at.revision);
        let mut alerts = Vec::new();
        let mut states: Vec<(Id, Option<ClusterState>)> = Vec::new();
        let mut paid: BTreeSet<Id> = BTreeSet::new();
        let mut oldest_first: Vec<(u64, &Id)> = self.owed.iter().map(|(c, r)| (*r, c)).collect();
        oldest_first.sort_unstable();
        let mut oldest_first = oldest_first.into_iter().map(|(_, c)| c.clone());
        loop {
            let part: Vec<Id> = oldest_first.by_ref().take(PAY_AT_ONCE).collect();
            if part.is_empty() {
                break;
            }
            let Ok(outcome) = evaluator.state_changes(&at.network, &part, &self.states) else {
                // Stopped by the shutdown: what is owed stays owed.
                tracing::info!(revision = at.revision, "alert figures stopped by the shutdown");
                return false;
            };
            paid.extend(part);
            alerts.extend(outcome.alerts);
            states.extend(outcome.states);
            if started.elapsed() >= PAY_FOR || self.store.snapshot().revision > at.revision {
                break;
            }
        }
        // A cluster's member overlap with one not recomputed here is that
        // one's too (it is symmetric): kept on both sides, a crossing is
        // raised once, not again when the other is recomputed.
        let mirrored = mirror_overlaps(&states, &paid, &self.states);
        states.extend(mirrored.into_iter().map(|(c, s)| (c, Some(s))));
        self.number(&mut alerts);
        // Stored and shared as changes to the figures kept: a member joining
        // a big cluster writes one member's label, not the whole list.
        let changes = states
            .iter()
            .map(|(cluster, state)| {
                let change = state
                    .as_ref()
                    .map(|state| StateChange::between(self.states.get(cluster), state));
                (cluster.clone(), change)
            })
            .collect();
        let step = Step::Settled {
            alerts,
            states: changes,
        };
        if !self.record(&step) {
            return false;
        }
        let Step::Settled { alerts, .. } = step else {
            unreachable!()
        };
        for (cluster, state) in states {
            match state {
                Some(state) => self.states.insert(cluster, state),
                None => self.states.remove(&cluster),
            };
        }
        self.owed.retain(|c, _| !paid.contains(c));
        tracing::debug!(
            alerts = alerts.len(),
            paid = paid.len(),
            owed = self.owed.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "figures recomputed and stored"
        );
        self.publish_settled();
        true
    }

    /// The latest revision whose alerts are all raised, for ListAlerts.
    fn publish_settled(&self) {
        let settled = settled(self.evaluated.unwrap_or(0), &self.owed);
        self.engine.evaluated.store(settled, Ordering::Release);
    }

    fn evaluator<'a>(&'a self, rules: &'a AlertRules, revision: u64) -> Evaluator<'a> {
        Evaluator {
            stage: &self.stage,
            rules,
            revision,
            now_unix_ms: unix_ms(),
            stop: &self.stopping,
        }
    }

    /// Numbers alerts on from the latest sequence.
    fn number(&self, alerts: &mut [Alert]) {
        let mut sequence = self.engine.latest_sequence();
        for alert in alerts {
            sequence += 1;
            alert.sequence = sequence;
        }
    }

    /// A batch came from the writer (`changes` long; None: the channel
    /// dropped batches for this slow receiver, which only a burst does).
    fn seen(&mut self, changes: Option<usize>) {
        self.last_batch_seen = Instant::now();
        self.changes_seen = self.changes_seen.saturating_add(changes.unwrap_or(BULK_CHANGES));
        if self.changes_seen >= BULK_CHANGES {
            self.bulk_since.get_or_insert(self.last_batch_seen);
        }
    }

    /// Whether the engine waits for a bulk write to pause, both to take it
    /// in and to recompute figures. Taken in while the import runs, its
    /// batches took a core from it (115k links/s on 10M links, against 248k
    /// without alerts) and had the engine hold older networks while the
    /// writer copied them; recomputed, each cluster's figures would be
    /// computed again every few batches. They are taken in once the writes
    /// pause (read from the log in parts), or every [`BULK_DEFERS_AT_MOST`]
    /// if they never do. Event alerts of a bulk write come that much later.
    fn deferring(&mut self) -> bool {
        let Some(since) = self.bulk_since else {
            return false;
        };
        // Paused: nothing committed, queued or being written (a checkpoint
        // holds the writer for seconds on 10M links, the import's next
        // batch waiting).
        if self.last_batch_seen.elapsed() >= BULK_QUIET && self.store.writes_idle_for() >= BULK_QUIET {
            self.bulk_since = None;
            return false;
        }
        if since.elapsed() >= BULK_DEFERS_AT_MOST {
            self.bulk_since = Some(Instant::now());
            return false;
        }
        true
    }

    /// Takes the store's snapshot in place of the one held when it is of
    /// the same revision but another copy: the repacker rebuilt the maps
    /// after a bulk write. Holding the old copy kept two networks alive
    /// (5.0 GiB, where one is 1.9, after a 10M-link import).
    fn follow_repack(&mut self) {
        let Some(before) = &self.before else {
            return;
        };
        let now = self.store.snapshot();
        if now.revision == before.revision && !Arc::ptr_eq(&now, before) {
            tracing::debug!(revision = now.revision, "the alert engine follows the repacked network");
            self.before = Some(now);
        }
    }

    /// Durable (its alerts sent): `next` is taken in.
    fn taken_in(&mut self, next: Arc<Snapshot>) {
        self.evaluated = Some(next.revision);
        self.publish_settled();
        self.before = Some(next);
        self.hold_log();
    }

    /// Keeps the store's log from the first batch not taken in while this
    /// worker evaluates (alone, or producing for the replicas): deferred
    /// behind a bulk write, it reads those batches back from the log, and a
    /// compaction meanwhile would lose their event alerts. A replica that
    /// does not produce holds nothing.
    fn hold_log(&self) {
        let from = match self.evaluated {
            Some(evaluated) if self.leading_or_alone() => evaluated + 1,
            _ => u64::MAX,
        };
        self.store.hold_log_from(from);
    }
}

/// Rests for `rest` unless told to stop first; whether it was.
fn stops_within(runtime: &tokio::runtime::Runtime, stopped: &mut watch::Receiver<bool>, rest: Duration) -> bool {
    runtime.block_on(async { tokio::time::timeout(rest, stopped.wait_for(|stop| *stop)).await.is_ok() })
}

/// The overlaps of clusters not in `paid`, brought up to date with the
/// figures just computed for those in it (gone clusters aside).
fn mirror_overlaps(
    states: &[(Id, Option<ClusterState>)],
    paid: &BTreeSet<Id>,
    kept: &HashMap<Id, ClusterState>,
) -> BTreeMap<Id, ClusterState> {
    let mut mirrored: BTreeMap<Id, ClusterState> = BTreeMap::new();
    for (cluster, state) in states {
        let Some(state) = state else { continue };
        let was = kept.get(cluster).map_or(&[][..], |s| &s.overlaps[..]);
        let others: BTreeSet<&Id> = was
            .iter()
            .chain(&state.overlaps)
            .map(|(c, _)| c)
            .filter(|c| !paid.contains(*c))
            .collect();
        for other in others {
            let theirs = match mirrored.entry(other.clone()) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => match kept.get(other) {
                    Some(kept) => entry.insert(kept.clone()),
                    None => continue,
                },
            };
            theirs.overlaps.retain(|(c, _)| c != cluster);
            if let Some((_, j)) = state.overlaps.iter().find(|(c, _)| c == other) {
                theirs.overlaps.push((cluster.clone(), *j));
                theirs.overlaps.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
    }
    mirrored
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Threads of the engine's own, at its lower priority, for the evaluator's
/// parallel parts. On the shared pool they ran at the writer's priority: an
/// import with alerts on ran at 61% of its speed without (81% while the
/// stage tallies ran on the alert thread alone). None (and the shared pool)
/// when the threads cannot be started.
fn evaluation_pool() -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(|i| format!("alert-eval-{i}"))
        .start_handler(|_| crate::background::lower_priority("alert evaluation thread"))
        .build()
        .inspect_err(|error| tracing::warn!(%error, "alert evaluation shares the analysis threads"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(overlaps: &[(&str, f64)]) -> ClusterState {
        ClusterState::with_overlaps(overlaps)
    }

    /// A's overlaps recomputed without B's: B's kept overlap with A follows
    /// A's (so B, recomputed later, does not raise the same crossing again);
    /// clusters recomputed with A and clusters gone are left alone.
    #[test]
    fn overlaps_recomputed_on_one_side_are_mirrored_on_the_other() {
        let kept: HashMap<Id, ClusterState> = [
            ("A", state(&[("B", 0.1), ("D", 0.3)])),
            ("B", state(&[("A", 0.1), ("C", 0.2)])),
            ("C", state(&[("B", 0.2)])),
            ("D", state(&[("A", 0.3)])),
            ("E", state(&[])),
        ]
        .into_iter()
        .map(|(c, s)| (Id::from(c), s))
        .collect();
        // A now shares more with B, nothing with D, and something with E; C
        // is recomputed beside it.
        let states = vec![
            (Id::from("A"), Some(state(&[("B", 0.6), ("E", 0.05)]))),
            (Id::from("C"), Some(state(&[("B", 0.2)]))),
            (Id::from("F"), None),
        ];
        let paid: BTreeSet<Id> = ["A", "C", "F"].into_iter().map(Id::from).collect();
        let mirrored = mirror_overlaps(&states, &paid, &kept);
        assert_eq!(mirrored.keys().map(|c| &**c).collect::<Vec<_>>(), ["B", "D", "E"]);
        assert_eq!(
            mirrored[&Id::from("B")].overlaps,
            state(&[("A", 0.6), ("C", 0.2)]).overlaps
        );
        assert!(mirrored[&Id::from("D")].overlaps.is_empty());
        assert_eq!(mirrored[&Id::from("E")].overlaps, state(&[("A", 0.05)]).overlaps);
    }
}
