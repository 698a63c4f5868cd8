//! The alert log: alerts by sequence number, the figures kept per cluster,
//! the revision evaluated, and the rules, in a sled database of their own.
//!
//! * `a/<sequence>` holds an alert;
//! * `c/<cluster id>` the figures kept for a cluster ([`ClusterState`]),
//!   but for its member components, which are
//! * `k/<cluster id>\0<member id>`, one key per member holding its
//!   component's label: a step writes only the members whose label changed
//!   ([`StateChange`]), not the whole list (2.4 MB for a 110k-member
//!   cluster, once written for every one-actor batch);
//! * `o/<cluster id>` a cluster whose figures are owed, with the revision
//!   that first changed it since its figures were last recomputed;
//! * `m/evaluated` the latest revision taken in (its event alerts raised,
//!   the clusters it changed owed), `m/sequence` the latest sequence
//!   number, `m/rules` the rules, `m/step` the last step of a log shared
//!   by replicas recorded here, `m/member-keys` that components are kept
//!   in member keys.
//!
//! Each step of the engine (taking batches in, recomputing owed figures) is
//! one `apply_batch` followed by a flush, so after a crash a step is there
//! entirely or not at all, and an alert is durable before anyone is sent it.
//!
//! Why a database of its own: the store's writer flushes its database after
//! every group of batches, and concurrent flushes of one sled 0.34 database
//! can deadlock. Here too only one flush runs at a time (`flushing`).

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Mutex,
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{components::ComponentsChange, evaluate::ClusterState, Alert, AlertRules};
use crate::{
    error::{Error, Result},
    model::Id,
    store::open_db,
};

const ALERT_PREFIX: &[u8] = b"a/";
const STATE_PREFIX: &[u8] = b"c/";
const OWED_PREFIX: &[u8] = b"o/";
const MEMBER_PREFIX: &[u8] = b"k/";
const META_EVALUATED: &[u8] = b"m/evaluated";
const META_SEQUENCE: &[u8] = b"m/sequence";
const META_RULES: &[u8] = b"m/rules";
const META_STEP: &[u8] = b"m/step";
/// Present once member components are kept one key per member.
const META_MEMBER_KEYS: &[u8] = b"m/member-keys";

/// One step of the engine, made durable as a whole: the unit a replicated
/// engine shares with the other replicas (`crate::replica`), in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Figures of every cluster at `evaluated`; nothing is owed after it.
    Baseline {
        evaluated: u64,
        alerts: Vec<Alert>,
        states: Vec<(Id, Option<ClusterState>)>,
    },
    /// Batches taken in up to `evaluated`: their event alerts (numbered)
    /// and the clusters they made owed.
    TakeIn {
        evaluated: u64,
        alerts: Vec<Alert>,
        owed: Vec<Id>,
    },
    /// Owed figures paid, each cluster's figures whole: what servers before
    /// [`Step::Settled`] shared, still read from their step logs.
    Settle {
        alerts: Vec<Alert>,
        states: Vec<(Id, Option<ClusterState>)>,
    },
    /// New rules for later rounds.
    Rules(AlertRules),
    /// Owed figures paid: the state alerts (numbered) and what changed in
    /// the figures (`None` removes a cluster's), which are owed no more.
    Settled {
        alerts: Vec<Alert>,
        states: Vec<(Id, Option<StateChange>)>,
    },
}

/// A cluster's new figures as a step carries them: all but the member
/// components in full, and of those only what changed since the figures
/// kept (all of them when none were).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    /// The figures, `components` left empty.
    pub figures: ClusterState,
    pub components: ComponentsChange,
}

impl StateChange {
    pub fn between(old: Option<&ClusterState>, new: &ClusterState) -> StateChange {
        let components = match old {
            Some(old) => ComponentsChange::between(&old.components, &new.components),
            None => ComponentsChange::whole(&new.components),
        };
        StateChange {
            figures: ClusterState {
                components: Vec::new(),
                ..new.clone()
            },
            components,
        }
    }
}

impl Step {
    pub fn alerts(&self) -> &[Alert] {
        match self {
            Step::Baseline { alerts, .. }
            | Step::TakeIn { alerts, .. }
            | Step::Settle { alerts, .. }
            | Step::Settled { alerts, .. } => alerts,
            Step::Rules(_) => &[],
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Step> {
        decode(bytes)
    }
}

/// What the log holds, as loaded at start.
pub struct Loaded {
    /// None when nothing was ever evaluated.
    pub evaluated: Option<u64>,
    pub last_sequence: u64,
    pub rules: AlertRules,
    pub states: HashMap<Id, ClusterState>,
    /// Owed clusters, each with the revision that first changed it.
    pub owed: BTreeMap<Id, u64>,
    /// The last shared step recorded (0: none, or a single server).
    pub step: u64,
}

impl Loaded {
    /// The latest revision whose alerts are all raised.
    pub fn settled(&self) -> u64 {
        settled(self.evaluated.unwrap_or(0), &self.owed)
    }
}

/// The latest revision whose alerts are all raised, events and figures:
/// the one before the oldest owed, or `evaluated` when nothing is owed.
pub fn settled(evaluated: u64, owed: &BTreeMap<Id, u64>) -> u64 {
    owed.values()
        .min()
        .map_or(evaluated, |first| first.saturating_sub(1).min(evaluated))
}

pub struct AlertLog {
    db: sled::Db,
    flushing: Mutex<()>,
    /// One step recorded at a time, so a shared step's position check and
    /// its write are one.
    recording: Mutex<()>,
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising plain in-memory structs to a Vec cannot fail.
    bincode::serialize(value).expect("bincode serialises alert types")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| Error::Corrupt(format!("alert log: {e}")))
}

fn alert_key(sequence: u64) -> Vec<u8> {
    [ALERT_PREFIX, &sequence.to_be_bytes()].concat()
}

fn state_key(cluster: &str) -> Vec<u8> {
    [STATE_PREFIX, cluster.as_bytes()].concat()
}

fn owed_key(cluster: &str) -> Vec<u8> {
    [OWED_PREFIX, cluster.as_bytes()].concat()
}

/// The prefix of a cluster's member keys. Ids hold no control characters,
/// so the NUL ends the cluster's id.
fn members_prefix(cluster: &str) -> Vec<u8> {
    [MEMBER_PREFIX, cluster.as_bytes(), b"\0"].concat()
}

fn member_key(cluster: &str, member: &str) -> Vec<u8> {
    [members_prefix(cluster), member.as_bytes().to_vec()].concat()
}

/// The cluster and member of a member key.
fn member_of(key: &[u8]) -> Result<(Id, Id)> {
    let corrupt = || Error::Corrupt("alert log: a member key is not <cluster>\\0<member> in UTF-8".into());
    let rest = std::str::from_utf8(&key[MEMBER_PREFIX.len()..]).map_err(|_| corrupt())?;
    let (cluster, member) = rest.split_once('\0').ok_or_else(corrupt)?;
    Ok((Id::from(cluster), Id::from(member)))
}

/// The cluster id after `prefix` in a key.
fn cluster_of(key: &[u8], prefix: &[u8]) -> Result<Id> {
    std::str::from_utf8(&key[prefix.len()..])
        .map(Id::from)
        .map_err(|_| Error::Corrupt("alert log: a cluster id is not UTF-8".into()))
}

impl AlertLog {
    pub fn open(path: &Path) -> Result<AlertLog> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(16 << 20)
            // Rounds flush themselves; sled's timer would be a second flusher.
            .flush_every_ms(None);
        let db = open_db(&config)?;
        let log = AlertLog {
            db,
            flushing: Mutex::new(()),
            recording: Mutex::new(()),
        };
        log.split_kept_components()?;
        Ok(log)
    }

    /// Figures kept before members had keys of their own hold their
    /// components inline: moved to member keys once, in one batch, which
    /// also marks the log as moved so later starts do not read every
    /// cluster's figures an extra time.
    fn split_kept_components(&self) -> Result<()> {
        if self.db.contains_key(META_MEMBER_KEYS)? {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        batch.insert(META_MEMBER_KEYS, &[1u8][..]);
        let mut split = 0usize;
        for entry in self.db.scan_prefix(STATE_PREFIX) {
            let (key, bytes) = entry?;
            let state = ClusterState::decode(&bytes).map_err(|e| Error::Corrupt(format!("alert log: {e}")))?;
            if state.components.is_empty() {
                continue;
            }
            let cluster = cluster_of(&key, STATE_PREFIX)?;
            Self::add_state(&mut batch, &cluster, &StateChange::between(None, &state));
            split += 1;
        }
        self.db.apply_batch(batch)?;
        self.flush()?;
        if split > 0 {
            tracing::info!(
                clusters = split,
                "alert log: member components moved to keys of their own"
            );
        }
        Ok(())
    }

    pub fn load(&self) -> Result<Loaded> {
        let counter = |key: &[u8]| -> Result<Option<u64>> { self.db.get(key)?.map(|b| decode(&b)).transpose() };
        let rules = match self.db.get(META_RULES)? {
            Some(bytes) => AlertRules::decode(&bytes).map_err(|e| Error::Corrupt(format!("alert log: {e}")))?,
            None => AlertRules::default(),
        };
        let mut states = HashMap::new();
        for entry in self.db.scan_prefix(STATE_PREFIX) {
            let (key, bytes) = entry?;
            let state = ClusterState::decode(&bytes).map_err(|e| Error::Corrupt(format!("alert log: {e}")))?;
            states.insert(cluster_of(&key, STATE_PREFIX)?, state);
        }
        // Keys sort by cluster, then member: each list comes sorted.
        for entry in self.db.scan_prefix(MEMBER_PREFIX) {
            let (key, label) = entry?;
            let (cluster, member) = member_of(&key)?;
            let label = <[u8; 4]>::try_from(&label[..])
                .map_err(|_| Error::Corrupt("alert log: a component label is not 4 bytes".into()))?;
            if let Some(state) = states.get_mut(&cluster) {
                state.components.push((member, u32::from_be_bytes(label)));
            }
        }
        let mut owed = BTreeMap::new();
        for entry in self.db.scan_prefix(OWED_PREFIX) {
            let (key, bytes) = entry?;
            owed.insert(cluster_of(&key, OWED_PREFIX)?, decode(&bytes)?);
        }
        Ok(Loaded {
            evaluated: counter(META_EVALUATED)?,
            last_sequence: counter(META_SEQUENCE)?.unwrap_or(0),
            rules,
            states,
            owed,
            step: counter(META_STEP)?.unwrap_or(0),
        })
    }

    /// Makes one engine step durable: one `apply_batch` and a flush.
    ///
    /// `position` is the step's place in a log shared by replicas (`None`
    /// on a single server). A shared step is recorded only if it is the one
    /// after the last recorded (the producer and the node's consumer of the
    /// shared log may both hand it in); returns whether it was recorded.
    pub fn record(&self, position: Option<u64>, step: &Step) -> Result<bool> {
        let _one_at_a_time = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        if let Some(position) = position {
            if position <= self.step()? {
                return Ok(false);
            }
            batch.insert(META_STEP, encode(&position));
        }
        match step {
            Step::Baseline {
                evaluated,
                alerts,
                states,
            } => {
                Self::add_alerts(&mut batch, alerts);
                // Figures of every cluster: none kept before stay.
                for prefix in [STATE_PREFIX, MEMBER_PREFIX, OWED_PREFIX] {
                    for entry in self.db.scan_prefix(prefix) {
                        batch.remove(entry?.0);
                    }
                }
                for (cluster, state) in states {
                    if let Some(state) = state {
                        Self::add_state(&mut batch, cluster, &StateChange::between(None, state));
                    }
                }
                batch.insert(META_EVALUATED, encode(evaluated));
            }
            Step::TakeIn {
                evaluated,
                alerts,
                owed,
            } => {
                Self::add_alerts(&mut batch, alerts);
                for cluster in owed {
                    batch.insert(owed_key(cluster), encode(evaluated));
                }
                batch.insert(META_EVALUATED, encode(evaluated));
            }
            Step::Settle { alerts, states } => {
                Self::add_alerts(&mut batch, alerts);
                for (cluster, state) in states {
                    self.remove_members(&mut batch, cluster)?;
                    match state {
                        Some(state) => Self::add_state(&mut batch, cluster, &StateChange::between(None, state)),
                        None => batch.remove(state_key(cluster)),
                    }
                    batch.remove(owed_key(cluster));
                }
            }
            Step::Settled { alerts, states } => {
                Self::add_alerts(&mut batch, alerts);
                for (cluster, change) in states {
                    match change {
                        Some(change) => Self::add_state(&mut batch, cluster, change),
                        None => {
                            self.remove_members(&mut batch, cluster)?;
                            batch.remove(state_key(cluster));
                        }
                    }
                    batch.remove(owed_key(cluster));
                }
            }
            Step::Rules(rules) => {
                batch.insert(META_RULES, encode(rules));
            }
        }
        self.db.apply_batch(batch)?;
        self.flush()?;
        Ok(true)
    }

    /// The last shared step recorded (0: none).
    pub fn step(&self) -> Result<u64> {
        Ok(self.db.get(META_STEP)?.map(|b| decode(&b)).transpose()?.unwrap_or(0))
    }

    /// The latest revision whose alerts are all raised, as recorded.
    pub fn settled(&self) -> Result<u64> {
        let evaluated: u64 = self
            .db
            .get(META_EVALUATED)?
            .map(|b| decode(&b))
            .transpose()?
            .unwrap_or(0);
        let mut oldest: Option<u64> = None;
        for entry in self.db.scan_prefix(OWED_PREFIX) {
            let revision: u64 = decode(&entry?.1)?;
            oldest = Some(oldest.map_or(revision, |o| o.min(revision)));
        }
        Ok(oldest.map_or(evaluated, |first| first.saturating_sub(1).min(evaluated)))
    }

    /// A cluster's figures and the member keys that changed.
    fn add_state(batch: &mut sled::Batch, cluster: &str, change: &StateChange) {
        debug_assert!(change.figures.components.is_empty(), "components go in member keys");
        batch.insert(state_key(cluster), encode(&change.figures));
        for member in &change.components.left {
            batch.remove(member_key(cluster, member));
        }
        for (member, label) in &change.components.set {
            batch.insert(member_key(cluster, member), &label.to_be_bytes()[..]);
        }
    }

    /// Removes every member key of a cluster (added to `batch`).
    fn remove_members(&self, batch: &mut sled::Batch, cluster: &str) -> Result<()> {
        for entry in self.db.scan_prefix(members_prefix(cluster)) {
            batch.remove(entry?.0);
        }
        Ok(())
    }

    fn add_alerts(batch: &mut sled::Batch, alerts: &[Alert]) {
        for alert in alerts {
            batch.insert(alert_key(alert.sequence), encode(alert));
        }
        if let Some(last) = alerts.last() {
            batch.insert(META_SEQUENCE, encode(&last.sequence));
        }
    }

    fn flush(&self) -> Result<()> {
        let _one_at_a_time = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        self.db.flush()?;
        Ok(())
    }

    /// What the log takes on disk (None if sled cannot say).
    pub fn bytes_on_disk(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }

    /// Up to `limit` alerts from sequence `from` on, in order.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<Alert>> {
        self.db
            .range(alert_key(from)..alert_key(u64::MAX))
            .take(limit)
            .map(|entry| decode(&entry?.1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(overlaps: &[(&str, f64)]) -> ClusterState {
        ClusterState::with_overlaps(overlaps)
    }

    fn baseline(evaluated: u64, states: &[(Id, Option<ClusterState>)]) -> Step {
        Step::Baseline {
            evaluated,
            alerts: Vec::new(),
            states: states.to_vec(),
        }
    }

    fn take_in(evaluated: u64, owed: &[&str]) -> Step {
        Step::TakeIn {
            evaluated,
            alerts: Vec::new(),
            owed: owed.iter().map(|c| Id::from(*c)).collect(),
        }
    }

    fn settle(states: &[(Id, Option<ClusterState>)]) -> Step {
        Step::Settle {
            alerts: Vec::new(),
            states: states.to_vec(),
        }
    }

    /// A cluster of `members` members in one component (label 0), and one
    /// outside member `z...` on its own.
    fn big(members: usize) -> ClusterState {
        let mut state = state(&[]);
        state.components = (0..members)
            .map(|i| (Id::from(format!("m{i:06}").as_str()), 0))
            .collect();
        state.components.push((Id::from("z"), 1));
        state
    }

    /// A member joining a cluster of 10,000 is one member key in the step
    /// (and in the store), not the cluster's whole list; the figures read
    /// back whole.
    #[test]
    fn a_member_joining_a_big_cluster_is_stored_as_one_member() {
        let dir = tempfile::tempdir().unwrap();
        let log = AlertLog::open(dir.path()).unwrap();
        let a = Id::from("A");
        let before = big(10_000);
        log.record(None, &baseline(1, &[(a.clone(), Some(before.clone()))]))
            .unwrap();
        let mut after = before.clone();
        after.components.push((Id::from("m999999"), 0));
        after.components.retain(|(m, _)| &**m != "z");
        after.components.sort();
        let step = Step::Settled {
            alerts: Vec::new(),
            states: vec![(a.clone(), Some(StateChange::between(Some(&before), &after)))],
        };
        let whole = settle(&[(a.clone(), Some(after.clone()))]);
        assert!(step.encode().len() < 300, "{} bytes", step.encode().len());
        assert!(whole.encode().len() > 100_000, "{} bytes", whole.encode().len());
        log.record(None, &step).unwrap();
        assert_eq!(log.load().unwrap().states[&a], after);
        drop(log);
        let log = AlertLog::open(dir.path()).unwrap();
        assert_eq!(log.load().unwrap().states[&a], after, "after reopening");
        // A cluster gone takes its members with it.
        log.record(
            None,
            &Step::Settled {
                alerts: Vec::new(),
                states: vec![(a.clone(), None)],
            },
        )
        .unwrap();
        assert!(log.load().unwrap().states.is_empty());
        assert_eq!(log.db.scan_prefix(MEMBER_PREFIX).count(), 0);
    }

    /// Figures kept whole by an older server (components inline), and
    /// whole steps from an older producer's shared log, read as before.
    #[test]
    fn figures_and_steps_kept_whole_by_older_servers_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = Id::from("A");
        let mut unsorted = big(3);
        unsorted.components.reverse();
        {
            // As an older server left it: figures inline, no marker.
            let log = AlertLog::open(dir.path()).unwrap();
            log.db.insert(state_key("A"), encode(&unsorted)).unwrap();
            log.db.remove(META_MEMBER_KEYS).unwrap();
            log.flush().unwrap();
        }
        let log = AlertLog::open(dir.path()).unwrap();
        assert_eq!(log.load().unwrap().states[&a], big(3), "read back sorted");
        let header = ClusterState::decode(&log.db.get(state_key("A")).unwrap().unwrap()).unwrap();
        assert!(header.components.is_empty(), "moved to member keys");
        let mut smaller = big(2);
        smaller.overlaps = vec![(Id::from("B"), 0.5)];
        log.record(None, &settle(&[(a.clone(), Some(smaller.clone()))]))
            .unwrap();
        assert_eq!(log.load().unwrap().states[&a], smaller);
    }

    /// A shared step is recorded once, in order: the producer and the
    /// node's consumer of the shared log may both hand it in.
    #[test]
    fn a_shared_step_is_recorded_once_and_only_after_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let log = AlertLog::open(dir.path()).unwrap();
        assert!(log.record(Some(1), &baseline(3, &[])).unwrap());
        assert!(
            !log.record(Some(1), &take_in(4, &["B"])).unwrap(),
            "position 1 is taken"
        );
        assert!(
            log.record(Some(3), &take_in(4, &["B"])).unwrap(),
            "a part-written step may leave a gap"
        );
        assert!(!log.record(Some(2), &Step::Rules(AlertRules::default())).unwrap());
        let loaded = log.load().unwrap();
        assert_eq!((loaded.step, loaded.evaluated), (3, Some(4)));
        assert_eq!(loaded.owed.len(), 1);
        let step = take_in(5, &["A"]);
        assert_eq!(Step::decode(&step.encode()).unwrap(), step);
    }

    /// Figures owed at a stop are owed at the next start, and the settled
    /// revision is the one before the oldest owed.
    #[test]
    fn owed_figures_survive_a_restart_and_settle_once_paid() {
        let dir = tempfile::tempdir().unwrap();
        let owed =
            |pairs: &[(&str, u64)]| -> BTreeMap<Id, u64> { pairs.iter().map(|(c, r)| (Id::from(*c), *r)).collect() };
        {
            let log = AlertLog::open(dir.path()).unwrap();
            log.record(None, &baseline(3, &[(Id::from("A"), Some(state(&[])))]))
                .unwrap();
            log.record(None, &take_in(4, &["B"])).unwrap();
            log.record(None, &take_in(5, &["A"])).unwrap();
        }
        let log = AlertLog::open(dir.path()).unwrap();
        let loaded = log.load().unwrap();
        assert_eq!(loaded.evaluated, Some(5));
        assert_eq!(loaded.owed, owed(&[("A", 5), ("B", 4)]));
        assert_eq!(loaded.settled(), 3, "batch 4 still owes B's figures");

        log.record(None, &settle(&[(Id::from("B"), Some(state(&[("A", 0.5)])))]))
            .unwrap();
        let loaded = log.load().unwrap();
        assert_eq!(loaded.owed, owed(&[("A", 5)]));
        assert_eq!(loaded.settled(), 4);
        log.record(None, &settle(&[(Id::from("A"), None)])).unwrap();
        let loaded = log.load().unwrap();
        assert!(loaded.owed.is_empty());
        assert_eq!(loaded.settled(), 5);
        assert_eq!(loaded.states.keys().collect::<Vec<_>>(), [&Id::from("B")]);

        // A baseline clears what is owed.
        log.record(None, &take_in(7, &["C"])).unwrap();
        assert_eq!(log.load().unwrap().settled(), 6);
        assert_eq!(log.settled().unwrap(), 6, "the log says what a load says");
        log.record(None, &baseline(7, &[])).unwrap();
        let loaded = log.load().unwrap();
        assert!(loaded.owed.is_empty());
        assert_eq!(loaded.settled(), 7);
    }
}
