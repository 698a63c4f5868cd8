//! The sled backend: one tree, keys prefixed by entity type.
//!
//! Everything a batch writes (its entities, the change-log record and the
//! revision counter) goes into one `sled::Batch` applied to one tree, which
//! sled recovers atomically: after a crash the store holds a revision's batch
//! entirely or not at all. A single tree with `apply_batch` gives the same
//! atomicity as a multi-tree transaction at a fraction of the cost.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use super::{
    network::{BatchOutcome, EntityKey, Network},
    Backend,
};
use crate::{
    error::{Error, Result},
    model::{Actor, Change, Cluster, ClusterLink, ClusterLinkKey, Link, LinkKey},
};

const CLUSTER: u8 = b'c';
const ACTOR: u8 = b'a';
const LINK: u8 = b'l';
const CLUSTER_LINK: u8 = b'k';
/// The change log: the changes of each revision, for the change feed.
const CHANGE_LOG: u8 = b'r';
const META_REVISION: &[u8] = b"m/revision";
const META_FORMAT: &[u8] = b"m/format";
/// Bumped whenever the stored encoding changes incompatibly.
const FORMAT_VERSION: u64 = 1;

pub struct SledBackend {
    db: sled::Db,
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
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_capacity)
            // The store's writer flushes after each group of batches; sled's own
            // timer would add a second, concurrent flusher (concurrent flushes
            // can deadlock in sled 0.34.7).
            .flush_every_ms(None)
            .open()?;
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
}

fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::Corrupt("a counter is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(array))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain in-memory structs to a Vec cannot fail.
    bincode::serialize(value).expect("bincode serialises model types")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| Error::Corrupt(e.to_string()))
}

fn prefixed(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = vec![prefix, b'/'];
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // Ids never contain control characters, so NUL separates them.
            key.push(0);
        }
        key.extend_from_slice(part);
    }
    key
}

fn storage_key(key: &EntityKey) -> Vec<u8> {
    match key {
        EntityKey::Cluster(id) => prefixed(CLUSTER, &[id.as_bytes()]),
        EntityKey::Actor(id) => prefixed(ACTOR, &[id.as_bytes()]),
        EntityKey::Link(LinkKey { source, target, kind }) => {
            prefixed(LINK, &[source.as_bytes(), target.as_bytes(), &[*kind as u8]])
        }
        EntityKey::ClusterLink(ClusterLinkKey { source, target, kind }) => {
            prefixed(CLUSTER_LINK, &[source.as_bytes(), target.as_bytes(), &[*kind as u8]])
        }
    }
}

fn stored_value(network: &Network, key: &EntityKey) -> Option<Vec<u8>> {
    match key {
        EntityKey::Cluster(id) => network.clusters.get(id).map(|c| encode(&**c)),
        EntityKey::Actor(id) => network.actors.get(id).map(|a| encode(&**a)),
        EntityKey::Link(key) => network.links.get(key).map(|l| encode(&**l)),
        EntityKey::ClusterLink(key) => network.cluster_links.get(key).map(|l| encode(&**l)),
    }
}

impl SledBackend {
    fn scan<T: DeserializeOwned>(&self, prefix: u8) -> impl Iterator<Item = Result<T>> + '_ {
        self.db
            .scan_prefix([prefix, b'/'])
            .map(|entry| entry.map_err(Error::from).and_then(|(_, value)| decode(&value)))
    }
}

const LOAD_CHUNK: usize = 16_384;

fn flush_chunk(chunk: &mut Vec<Change>, network: &mut Network) -> Result<()> {
    network
        .apply(chunk)
        .map_err(|e| Error::Corrupt(format!("stored entities are inconsistent: {e}")))?;
    chunk.clear();
    Ok(())
}

impl Backend for SledBackend {
    fn load(&self) -> Result<(u64, Network)> {
        let revision = match self.db.get(META_REVISION)? {
            Some(bytes) => decode_u64(&bytes)?,
            None => 0,
        };
        let mut network = Network::default();
        // Replaying the stored entities through `apply` rebuilds every index
        // and re-checks every reference, so a damaged store is caught at start.
        // Clusters come before the actors that name them and actors before
        // links; chunks keep the replay's memory small.
        let mut chunk = Vec::with_capacity(LOAD_CHUNK);
        let replay = |change: Result<Change>, chunk: &mut Vec<Change>, network: &mut Network| -> Result<()> {
            chunk.push(change?);
            if chunk.len() == LOAD_CHUNK {
                flush_chunk(chunk, network)?;
            }
            Ok(())
        };
        for cluster in self.scan::<Cluster>(CLUSTER) {
            replay(cluster.map(Change::UpsertCluster), &mut chunk, &mut network)?;
        }
        flush_chunk(&mut chunk, &mut network)?;
        for actor in self.scan::<Actor>(ACTOR) {
            replay(actor.map(Change::UpsertActor), &mut chunk, &mut network)?;
        }
        flush_chunk(&mut chunk, &mut network)?;
        for link in self.scan::<Link>(LINK) {
            replay(link.map(Change::UpsertLink), &mut chunk, &mut network)?;
        }
        for link in self.scan::<ClusterLink>(CLUSTER_LINK) {
            replay(link.map(Change::UpsertClusterLink), &mut chunk, &mut network)?;
        }
        flush_chunk(&mut chunk, &mut network)?;
        Ok((revision, network))
    }

    fn write_batch(
        &mut self,
        revision: u64,
        network: &Network,
        outcome: &BatchOutcome,
        changes: &[Change],
    ) -> Result<()> {
        let mut batch = sled::Batch::default();
        for key in &outcome.dirty {
            match stored_value(network, key) {
                Some(value) => batch.insert(storage_key(key), value),
                None => batch.remove(storage_key(key)),
            }
        }
        batch.insert(prefixed(CHANGE_LOG, &[&revision.to_be_bytes()]), encode(&changes));
        batch.insert(META_REVISION, &revision.to_be_bytes());
        self.db.apply_batch(batch)?;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
