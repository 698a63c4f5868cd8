//! The alert log: alerts by sequence number, the figures kept per cluster,
//! the revision evaluated, and the rules, in a sled database of their own.
//!
//! * `a/<sequence>` holds an alert;
//! * `c/<cluster id>` the figures kept for a cluster ([`ClusterState`]);
//! * `o/<cluster id>` a cluster whose figures are owed, with the revision
//!   that first changed it since its figures were last recomputed;
//! * `m/evaluated` the latest revision taken in (its event alerts raised,
//!   the clusters it changed owed), `m/sequence` the latest sequence
//!   number, `m/rules` the rules, `m/step` the last step of a log shared
//!   by replicas recorded here.
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

use super::{evaluate::ClusterState, Alert, AlertRules};
use crate::{
    error::{Error, Result},
    model::Id,
    store::open_db,
};

const ALERT_PREFIX: &[u8] = b"a/";
const STATE_PREFIX: &[u8] = b"c/";
const OWED_PREFIX: &[u8] = b"o/";
const META_EVALUATED: &[u8] = b"m/evaluated";
const META_SEQUENCE: &[u8] = b"m/sequence";
const META_RULES: &[u8] = b"m/rules";
const META_STEP: &[u8] = b"m/step";

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
    /// Owed figures paid: the state alerts (numbered) and the new figures
    /// (`None` removes a cluster's), which are owed no more.
    Settle {
        alerts: Vec<Alert>,
        states: Vec<(Id, Option<ClusterState>)>,
    },
    /// New rules for later rounds.
    Rules(AlertRules),
}

impl Step {
    pub fn alerts(&self) -> &[Alert] {
        match self {
            Step::Baseline { alerts, .. } | Step::TakeIn { alerts, .. } | Step::Settle { alerts, .. } => alerts,
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
        Ok(AlertLog {
            db,
            flushing: Mutex::new(()),
            recording: Mutex::new(()),
        })
    }

    pub fn load(&self) -> Result<Loaded> {
        let counter = |key: &[u8]| -> Result<Option<u64>> { self.db.get(key)?.map(|b| decode(&b)).transpose() };
        let rules = match self.db.get(META_RULES)? {
            Some(bytes) => decode(&bytes)?,
            None => AlertRules::default(),
        };
        let mut states = HashMap::new();
        for entry in self.db.scan_prefix(STATE_PREFIX) {
            let (key, bytes) = entry?;
            let state = ClusterState::decode(&bytes).map_err(|e| Error::Corrupt(format!("alert log: {e}")))?;
            states.insert(cluster_of(&key, STATE_PREFIX)?, state);
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
                Self::add_states(&mut batch, states);
                for entry in self.db.scan_prefix(OWED_PREFIX) {
                    batch.remove(entry?.0);
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
                Self::add_states(&mut batch, states);
                for (cluster, _) in states {
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

    fn add_states(batch: &mut sled::Batch, states: &[(Id, Option<ClusterState>)]) {
        for (cluster, state) in states {
            match state {
                Some(state) => batch.insert(state_key(cluster), encode(state)),
                None => batch.remove(state_key(cluster)),
            }
        }
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
