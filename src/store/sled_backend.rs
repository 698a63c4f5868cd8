//! The sled backend: a change log plus periodic checkpoints, in one tree.
//!
//! * `r/<revision>` holds the changes of each applied batch (the change log).
//!   Writing a batch is one `apply_batch` of that record and the revision
//!   counter, which sled recovers atomically: after a crash a revision is
//!   there entirely or not at all.
//! * `s/<revision>/<chunk>` holds a checkpoint: the whole network at that
//!   revision, in chunks, written in one `apply_batch` together with the
//!   `m/checkpoint` pointer, so a checkpoint is also all or nothing.
//! * Loading reads the latest checkpoint and replays the log after it.
//!
//! Why not one sled key per entity: sled 0.34 takes about 20 s and 4 GiB of
//! memory to absorb a million random-key inserts (measured here), while the
//! same data as a few large values takes a fraction of a second. Entities are
//! read from memory, never from sled, so keys per entity would buy nothing.

use std::{path::Path, sync::Arc};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{
    network::{Ix, Network},
    Backend, Loaded, LogReader,
};
use crate::{
    error::{Error, Result},
    model::{Actor, ActorProfile, Change, Cluster, ClusterLink, Id, Link},
};

const META_REVISION: &[u8] = b"m/revision";
const META_CHECKPOINT: &[u8] = b"m/checkpoint";
const META_FORMAT: &[u8] = b"m/format";
const LOG_PREFIX: &[u8] = b"r/";
const CHECKPOINT_PREFIX: &[u8] = b"s/";
/// Bumped whenever the stored encoding changes incompatibly.
// 3: clusters carry a country.
const FORMAT_VERSION: u64 = 3;
/// Records per checkpoint chunk: large enough for sled to store each chunk as
/// one blob, small enough to keep encode buffers modest.
const CHUNK_RECORDS: usize = 65_536;

/// One record of a checkpoint.
#[derive(Serialize, Deserialize)]
enum Record {
    /// Every interned actor id with its index (including deleted actors', so
    /// indexes survive a restart).
    Ids(Vec<(Id, Ix)>),
    Cluster(Cluster),
    Actor(Actor),
    Link(Link),
    ClusterLink(ClusterLink),
    // New variants go last: stored checkpoints name variants by position.
    Profile(ActorProfile),
}

/// The borrowed twin of [`Record`], for writing without copying the network.
/// Same variants in the same order, so bincode encodes both alike.
#[derive(Serialize)]
enum RecordRef<'a> {
    Ids(&'a [(Id, Ix)]),
    Cluster(&'a Cluster),
    Actor(&'a Actor),
    Link(&'a Link),
    ClusterLink(&'a ClusterLink),
    Profile(&'a ActorProfile),
}

pub struct SledBackend {
    db: sled::Db,
}

/// Reads the change log while the writer owns the backend (sled trees are
/// safe to share between threads).
struct SledLog {
    db: sled::Db,
}

impl LogReader for SledLog {
    fn read(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<Change>)>> {
        let mut out = Vec::new();
        for entry in self.db.range(log_key(from)..log_key(u64::MAX)).take(limit) {
            let (key, bytes) = entry?;
            out.push((revision_of(&key)?, decode(&bytes)?));
        }
        Ok(out)
    }

    fn oldest(&self) -> Result<Option<u64>> {
        match self.db.scan_prefix(LOG_PREFIX).next() {
            Some(entry) => Ok(Some(revision_of(&entry?.0)?)),
            None => Ok(None),
        }
    }
}

/// The revision in a log key.
fn revision_of(key: &[u8]) -> Result<u64> {
    decode_u64(key.get(LOG_PREFIX.len()..).unwrap_or_default())
}

/// Settings of the sled store.
#[derive(Clone, Debug)]
pub struct SledConfig {
    /// sled's page cache, in bytes. Reads are served from the in-memory
    /// network, so the cache only needs to absorb writes.
    pub cache_capacity: u64,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            cache_capacity: 64 << 20,
        }
    }
}

impl SledBackend {
    pub fn open(path: &Path, config: &SledConfig) -> Result<SledBackend> {
        let sled_config = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_capacity)
            // The store's writer flushes after each group of batches; sled's own
            // timer would add a second, concurrent flusher (concurrent flushes
            // can deadlock in sled 0.34.7).
            .flush_every_ms(None);
        let db = open_db(&sled_config)?;
        match db.get(META_FORMAT)? {
            None => {
                db.insert(META_FORMAT, &FORMAT_VERSION.to_be_bytes())?;
                db.flush()?;
            }
            Some(bytes) if decode_u64(&bytes)? == FORMAT_VERSION => {}
            Some(bytes) => {
                return Err(Error::Corrupt(format!(
                    "the data directory uses storage format {}, this server reads format {FORMAT_VERSION}",
                    decode_u64(&bytes)?
                )))
            }
        }
        Ok(SledBackend { db })
    }

    fn counter(&self, key: &[u8]) -> Result<Option<u64>> {
        self.db.get(key)?.map(|bytes| decode_u64(&bytes)).transpose()
    }
}

/// Opens a sled database. sled's background I/O threads let go of the
/// directory's lock a little after the previous owner closed it; a quick
/// reopen waits for that.
pub fn open_db(config: &sled::Config) -> Result<sled::Db> {
    let mut attempts = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(error)) if attempts < 100 && error.to_string().contains("could not acquire lock") => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::Corrupt("a counter is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(array))
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising plain in-memory structs to a Vec cannot fail.
    bincode::serialize(value).expect("bincode serialises model types")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| Error::Corrupt(e.to_string()))
}

fn log_key(revision: u64) -> Vec<u8> {
    [LOG_PREFIX, &revision.to_be_bytes()].concat()
}

fn checkpoint_prefix(revision: u64) -> Vec<u8> {
    [CHECKPOINT_PREFIX, &revision.to_be_bytes(), b"/"].concat()
}

/// Replays changes into the network in chunks, as stored data: a failure
/// means the data directory is damaged, not that a client erred.
fn replay(network: &mut Network, changes: &[Change]) -> Result<()> {
    network
        .apply(changes)
        .map(|_| ())
        .map_err(|e| Error::Corrupt(format!("stored data does not replay: {e}")))
}

impl SledBackend {
    fn load_checkpoint(&self, revision: u64) -> Result<Network> {
        let mut network = Network::default();
        let mut pending: Vec<Change> = Vec::with_capacity(CHUNK_RECORDS);
        for entry in self.db.scan_prefix(checkpoint_prefix(revision)) {
            let (_, bytes) = entry?;
            for record in decode::<Vec<Record>>(&bytes)? {
                match record {
                    Record::Ids(ids) => {
                        let len = ids.iter().map(|(_, ix)| *ix as usize + 1).max().unwrap_or(0);
                        while network.actor_at.len() < len {
                            network.actor_at.push_back(None);
                        }
                        for (id, ix) in ids {
                            network.actor_ix.insert(id, ix);
                        }
                    }
                    Record::Cluster(c) => pending.push(Change::UpsertCluster(c)),
                    Record::Actor(a) => pending.push(Change::UpsertActor(a)),
                    Record::Link(l) => pending.push(Change::UpsertLink(l)),
                    Record::ClusterLink(l) => pending.push(Change::UpsertClusterLink(l)),
                    Record::Profile(p) => pending.push(Change::UpsertActorProfile(p)),
                }
            }
            // Chunks hold one kind of record each, in dependency order, so each
            // replays against what came before it.
            replay(&mut network, &pending)?;
            pending.clear();
        }
        Ok(network)
    }
}

impl Backend for SledBackend {
    fn load(&self) -> Result<Loaded> {
        let revision = self.counter(META_REVISION)?.unwrap_or(0);
        let checkpoint = self.counter(META_CHECKPOINT)?;
        let mut network = match checkpoint {
            Some(at) => self.load_checkpoint(at)?,
            None => Network::default(),
        };
        let mut replayed = 0u64;
        let first = checkpoint.map_or(1, |at| at + 1);
        for entry in self.db.range(log_key(first)..=log_key(revision)) {
            let (_, bytes) = entry?;
            let changes: Vec<Change> = decode(&bytes)?;
            replay(&mut network, &changes)?;
            replayed += changes.len() as u64;
        }
        Ok(Loaded {
            revision,
            network,
            changes_since_checkpoint: replayed,
        })
    }

    fn append(&mut self, revision: u64, changes: &[Change]) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(log_key(revision), encode(changes));
        batch.insert(META_REVISION, &revision.to_be_bytes());
        self.db.apply_batch(batch)?;
        Ok(())
    }

    fn checkpoint(&mut self, revision: u64, network: &Network) -> Result<()> {
        let previous = self.counter(META_CHECKPOINT)?;
        let prefix = checkpoint_prefix(revision);
        let mut batch = sled::Batch::default();
        let mut chunk_no = 0u32;
        // Each kind is encoded chunk by chunk, so no copy of the network is made.
        let mut put = |records: &mut dyn Iterator<Item = RecordRef>| loop {
            let chunk: Vec<RecordRef> = records.take(CHUNK_RECORDS).collect();
            if chunk.is_empty() {
                break;
            }
            let key = [prefix.as_slice(), &chunk_no.to_be_bytes()].concat();
            batch.insert(key, encode(&chunk));
            chunk_no += 1;
        };
        let mut ids: Vec<(Id, Ix)> = network.actor_ix.iter().map(|(id, ix)| (id.clone(), *ix)).collect();
        ids.sort_unstable_by_key(|(_, ix)| *ix);
        put(&mut ids.chunks(CHUNK_RECORDS).map(RecordRef::Ids));
        put(&mut network.clusters.values().map(|c| RecordRef::Cluster(c)));
        put(&mut network.actors.values().map(|a| RecordRef::Actor(a)));
        // Links are stored by index; they are written with their ids.
        let mut links = network.links.iter().map(|(key, data)| network.link_from(key, data));
        loop {
            let chunk: Vec<Link> = links.by_ref().take(CHUNK_RECORDS).collect();
            if chunk.is_empty() {
                break;
            }
            put(&mut chunk.iter().map(RecordRef::Link));
        }
        put(&mut network.cluster_links.values().map(|l| RecordRef::ClusterLink(l)));
        put(&mut network.profiles.values().flat_map(|p| p.iter()).map(RecordRef::Profile));
        batch.insert(META_CHECKPOINT, &revision.to_be_bytes());
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        // The new checkpoint is durable; the old one is no longer needed.
        if let Some(old) = previous.filter(|old| *old != revision) {
            let mut batch = sled::Batch::default();
            for key in self.db.scan_prefix(checkpoint_prefix(old)).keys() {
                batch.remove(key?);
            }
            self.db.apply_batch(batch)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn log_reader(&self) -> Arc<dyn LogReader> {
        Arc::new(SledLog { db: self.db.clone() })
    }

    fn compact_log(&mut self, before: u64) -> Result<u64> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for key in self.db.range(log_key(0)..log_key(before)).keys() {
            batch.remove(key?);
            removed += 1;
        }
        if removed > 0 {
            self.db.apply_batch(batch)?;
        }
        Ok(removed)
    }
}
