//! The alert log: alerts by sequence number, the figures kept per cluster,
//! the revision evaluated, and the rules, in a sled database of their own.
//!
//! * `a/<sequence>` holds an alert;
//! * `c/<cluster id>` the figures kept for a cluster ([`ClusterState`]);
//! * `m/evaluated` the latest revision evaluated, `m/sequence` the latest
//!   sequence number, `m/rules` the rules.
//!
//! One evaluation round is one `apply_batch` (its alerts, the figures it
//! changed and the revision it reached) followed by a flush, so after a
//! crash a round is there entirely or not at all, and an alert is durable
//! before anyone is sent it.
//!
//! Why a database of its own: the store's writer flushes its database after
//! every group of batches, and concurrent flushes of one sled 0.34 database
//! can deadlock. Here too only one flush runs at a time (`flushing`).

use std::{collections::HashMap, path::Path, sync::Mutex};

use serde::{de::DeserializeOwned, Serialize};

use super::{evaluate::ClusterState, Alert, AlertRules};
use crate::{
    error::{Error, Result},
    model::Id,
    store::open_db,
};

const ALERT_PREFIX: &[u8] = b"a/";
const STATE_PREFIX: &[u8] = b"c/";
const META_EVALUATED: &[u8] = b"m/evaluated";
const META_SEQUENCE: &[u8] = b"m/sequence";
const META_RULES: &[u8] = b"m/rules";

/// What the log holds, as loaded at start.
pub struct Loaded {
    /// None when nothing was ever evaluated.
    pub evaluated: Option<u64>,
    pub last_sequence: u64,
    pub rules: AlertRules,
    pub states: HashMap<Id, ClusterState>,
}

pub struct AlertLog {
    db: sled::Db,
    flushing: Mutex<()>,
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
            let cluster = std::str::from_utf8(&key[STATE_PREFIX.len()..])
                .map_err(|_| Error::Corrupt("alert log: a cluster id is not UTF-8".into()))?;
            states.insert(Id::from(cluster), decode(&bytes)?);
        }
        Ok(Loaded {
            evaluated: counter(META_EVALUATED)?,
            last_sequence: counter(META_SEQUENCE)?.unwrap_or(0),
            rules,
            states,
        })
    }

    /// Records one round durably: its alerts (already numbered), the figures
    /// it changed (`None` removes a cluster's), and the revision it reached.
    pub fn commit(&self, evaluated: u64, alerts: &[Alert], states: &[(Id, Option<ClusterState>)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for alert in alerts {
            batch.insert(alert_key(alert.sequence), encode(alert));
        }
        if let Some(last) = alerts.last() {
            batch.insert(META_SEQUENCE, encode(&last.sequence));
        }
        for (cluster, state) in states {
            match state {
                Some(state) => batch.insert(state_key(cluster), encode(state)),
                None => batch.remove(state_key(cluster)),
            }
        }
        batch.insert(META_EVALUATED, encode(&evaluated));
        self.db.apply_batch(batch)?;
        self.flush()
    }

    pub fn set_rules(&self, rules: &AlertRules) -> Result<()> {
        self.db.insert(META_RULES, encode(rules))?;
        self.flush()
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
