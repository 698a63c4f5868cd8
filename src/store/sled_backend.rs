//! The sled backend: a change log in sled, checkpoints in files beside it.
//!
//! * The `log` tree holds the changes of each applied batch, keyed by
//!   revision and part: a batch's encoding is cut into parts of at most
//!   [`PART_BYTES`]. Writing a batch is one `apply_batch` of its parts and the
//!   revision counter, which sled recovers atomically: after a crash a
//!   revision is there entirely or not at all.
//! * A checkpoint is the whole network at one revision, in one file under
//!   `checkpoints/`: written to a temporary name, synced, renamed, and only
//!   then named by the `m/checkpoint` counter. Loading reads that file and
//!   replays the log after it.
//!
//! Why values are small: sled 0.34 stores a page larger than a quarter of a
//! segment (128 KiB) as a separate blob file, rewrites a whole page when it
//! consolidates one, and loses track of blob files written when the process
//! is killed. With multi-megabyte values a one-actor batch wrote megabytes,
//! and every kill -9 left blob files behind for good. Parts of 6 KiB keep even
//! a full leaf (17 keys) under the blob threshold.
//!
//! Why checkpoints are files: they are written once, read once and replaced
//! whole, which a file does with sequential I/O and no copy in memory; in
//! sled they were the largest values of all.
//!
//! Why not one sled key per entity: sled 0.34 takes about 20 s and 4 GiB of
//! memory to absorb a million random-key inserts (measured here). Entities are
//! read from memory, never from sled, so keys per entity would buy nothing.

use std::{
    fs::File,
    io::{BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{Backend, Loaded, LogReader};
use crate::{
    error::{Error, Result},
    model::{Actor, ActorProfile, Change, Cluster, ClusterLink, Id, Link},
    network::{EdgeKey, Ix, LinkData, Network},
};

const META_CHECKPOINT: &[u8] = b"m/checkpoint";
const META_FORMAT: &[u8] = b"m/format";
const LOG_TREE: &[u8] = b"log";
const CHECKPOINT_DIR: &str = "checkpoints";
const CHECKPOINT_MAGIC: &[u8; 8] = b"CNCKPT\0\x01";
/// Bumped whenever the stored encoding changes incompatibly.
// 3: clusters carry a country. 4: the log in parts, checkpoints in files.
const FORMAT_VERSION: u64 = 4;
/// Largest value written to sled; see the module comment.
const PART_BYTES: usize = 6 * 1024;
/// Records per checkpoint frame: large enough to encode efficiently, small
/// enough to keep the encode buffer modest.
const FRAME_RECORDS: usize = 65_536;

impl From<sled::Error> for Error {
    fn from(error: sled::Error) -> Error {
        Error::Storage(error.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Error {
        Error::Storage(error.to_string())
    }
}

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
    /// Links in index form (ids are in `Ids`), in key order: no strings to
    /// decode and no ids to look up, so a restart restores them fast.
    LinkRows(Vec<(EdgeKey, LinkData)>),
}

/// The borrowed twin of [`Record`], for writing without copying the network.
/// Same variants in the same order, so bincode encodes both alike.
#[derive(Serialize)]
enum RecordRef<'a> {
    Ids(&'a [(Id, Ix)]),
    Cluster(&'a Cluster),
    Actor(&'a Actor),
    // Kept for its position: checkpoints before LinkRows hold links so.
    #[allow(dead_code)]
    Link(&'a Link),
    ClusterLink(&'a ClusterLink),
    Profile(&'a ActorProfile),
    LinkRows(&'a [(EdgeKey, LinkData)]),
}

pub struct SledBackend {
    db: sled::Db,
    log: sled::Tree,
    checkpoints: PathBuf,
}

/// Reads the change log while the writer owns the backend (sled trees are
/// safe to share between threads).
struct SledLog {
    log: sled::Tree,
}

impl LogReader for SledLog {
    fn read(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<Change>)>> {
        let mut out = Vec::new();
        let mut current: Option<(u64, Vec<u8>)> = None;
        for entry in self.log.range(log_key(from, 0)..) {
            let (key, bytes) = entry?;
            let revision = revision_of(&key)?;
            match &mut current {
                Some((at, joined)) if *at == revision => joined.extend_from_slice(&bytes),
                _ => {
                    if let Some((at, joined)) = current.take() {
                        out.push((at, decode(&joined)?));
                        if out.len() == limit {
                            return Ok(out);
                        }
                    }
                    current = Some((revision, bytes.to_vec()));
                }
            }
        }
        if let Some((at, joined)) = current {
            if out.len() < limit {
                out.push((at, decode(&joined)?));
            }
        }
        Ok(out)
    }

    fn oldest(&self) -> Result<Option<u64>> {
        match self.log.first()? {
            Some((key, _)) => Ok(Some(revision_of(&key)?)),
            None => Ok(None),
        }
    }
}

/// The revision in a log key.
fn revision_of(key: &[u8]) -> Result<u64> {
    decode_u64(key.get(..8).unwrap_or_default())
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
        let log = db.open_tree(LOG_TREE)?;
        let checkpoints = path.join(CHECKPOINT_DIR);
        std::fs::create_dir_all(&checkpoints)?;
        let backend = SledBackend { db, log, checkpoints };
        backend.remove_stray_checkpoints()?;
        Ok(backend)
    }

    fn counter(&self, key: &[u8]) -> Result<Option<u64>> {
        self.db.get(key)?.map(|bytes| decode_u64(&bytes)).transpose()
    }

    fn checkpoint_path(&self, revision: u64) -> PathBuf {
        self.checkpoints.join(format!("{revision:020}.checkpoint"))
    }

    /// Removes checkpoint files no counter names: a temporary file or a newer
    /// checkpoint left by a crash before its counter was written, or an old
    /// one whose removal a crash interrupted.
    fn remove_stray_checkpoints(&self) -> Result<()> {
        let keep = self.counter(META_CHECKPOINT)?.map(|at| self.checkpoint_path(at));
        for entry in std::fs::read_dir(&self.checkpoints)? {
            let path = entry?.path();
            if Some(&path) != keep.as_ref() {
                tracing::info!(path = %path.display(), "removing a checkpoint file no longer in use");
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
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

/// One batch as the change log stores it (bincode), for a replicated log.
pub fn encode_batch(changes: &[Change]) -> Vec<u8> {
    encode(changes)
}

pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Change>> {
    decode(bytes)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| Error::Corrupt(e.to_string()))
}

fn log_key(revision: u64, part: u32) -> [u8; 12] {
    let mut key = [0; 12];
    key[..8].copy_from_slice(&revision.to_be_bytes());
    key[8..].copy_from_slice(&part.to_be_bytes());
    key
}

/// Replays changes into the network in chunks, as stored data: a failure
/// means the data directory is damaged, not that a client erred.
fn replay(network: &mut Network, changes: &[Change]) -> Result<()> {
    network
        .apply(changes)
        .map(|_| ())
        .map_err(|e| Error::Corrupt(format!("stored data does not replay: {e}")))
}

/// Writes a checkpoint file: the magic, the format and the revision, then
/// frames (a length and a bincode list of records), then an empty frame and
/// the number of frames, so a file cut short is recognised.
struct CheckpointWriter {
    out: BufWriter<File>,
    frames: u64,
}

impl CheckpointWriter {
    fn create(path: &Path, revision: u64) -> Result<CheckpointWriter> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        out.write_all(CHECKPOINT_MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_be_bytes())?;
        out.write_all(&revision.to_be_bytes())?;
        Ok(CheckpointWriter { out, frames: 0 })
    }

    /// Writes the records in frames of [`FRAME_RECORDS`].
    fn put<'a>(&mut self, records: impl Iterator<Item = RecordRef<'a>>) -> Result<()> {
        let mut records = records.peekable();
        while records.peek().is_some() {
            let frame: Vec<RecordRef> = records.by_ref().take(FRAME_RECORDS).collect();
            let bytes = encode(&frame);
            self.out.write_all(&(bytes.len() as u64).to_be_bytes())?;
            self.out.write_all(&bytes)?;
            self.frames += 1;
        }
        Ok(())
    }

    /// Ends the file and makes it durable.
    fn finish(mut self) -> Result<()> {
        self.out.write_all(&0u64.to_be_bytes())?;
        self.out.write_all(&self.frames.to_be_bytes())?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    }
}

/// Reads a checkpoint file frame by frame.
struct CheckpointReader {
    input: BufReader<File>,
    frames: u64,
    done: bool,
}

impl CheckpointReader {
    fn open(path: &Path, revision: u64) -> Result<CheckpointReader> {
        let file = File::open(path)
            .map_err(|e| Error::Corrupt(format!("the checkpoint {} cannot be read: {e}", path.display())))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut header = [0u8; 24];
        input
            .read_exact(&mut header)
            .map_err(|_| Error::Corrupt(format!("the checkpoint {} is cut short", path.display())))?;
        let format = decode_u64(&header[8..16])?;
        let at = decode_u64(&header[16..24])?;
        if &header[..8] != CHECKPOINT_MAGIC || format != FORMAT_VERSION || at != revision {
            return Err(Error::Corrupt(format!(
                "{} is not a format {FORMAT_VERSION} checkpoint of revision {revision}",
                path.display()
            )));
        }
        Ok(CheckpointReader {
            input,
            frames: 0,
            done: false,
        })
    }

    fn u64(&mut self) -> Result<u64> {
        let mut bytes = [0u8; 8];
        self.input
            .read_exact(&mut bytes)
            .map_err(|_| Error::Corrupt("a checkpoint is cut short".into()))?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// The next frame's records, or None after the last.
    fn next_frame(&mut self) -> Result<Option<Vec<Record>>> {
        if self.done {
            return Ok(None);
        }
        let len = self.u64()?;
        if len == 0 {
            self.done = true;
            let frames = self.u64()?;
            if frames != self.frames {
                return Err(Error::Corrupt(format!(
                    "a checkpoint says it has {frames} frames, {} were read",
                    self.frames
                )));
            }
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| Error::Corrupt("a checkpoint frame is too large".into()))?;
        let mut bytes = vec![0u8; len];
        self.input
            .read_exact(&mut bytes)
            .map_err(|_| Error::Corrupt("a checkpoint is cut short".into()))?;
        self.frames += 1;
        decode(&bytes).map(Some)
    }
}

impl SledBackend {
    fn load_checkpoint(&self, revision: u64) -> Result<Network> {
        let mut network = Network::default();
        let mut pending: Vec<Change> = Vec::with_capacity(FRAME_RECORDS);
        // Link rows are restored at the end, all at once: nothing later in a
        // checkpoint depends on them, and the maps build faster in bulk.
        let mut link_rows: Vec<(EdgeKey, LinkData)> = Vec::new();
        let mut actors: Vec<Actor> = Vec::new();
        let mut reader = CheckpointReader::open(&self.checkpoint_path(revision), revision)?;
        let (mut reading, mut replaying) = (Duration::ZERO, Duration::ZERO);
        loop {
            let started = Instant::now();
            let Some(records) = reader.next_frame()? else { break };
            reading += started.elapsed();
            let started = Instant::now();
            for record in records {
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
                    Record::Actor(a) => actors.push(a),
                    Record::Link(l) => pending.push(Change::UpsertLink(l)),
                    Record::ClusterLink(l) => pending.push(Change::UpsertClusterLink(l)),
                    Record::Profile(p) => pending.push(Change::UpsertActorProfile(p)),
                    Record::LinkRows(rows) => link_rows.extend(rows),
                }
            }
            // Frames hold one kind of record each, in dependency order, so each
            // replays against what came before it.
            if !actors.is_empty() {
                network.restore_actors(std::mem::take(&mut actors))?;
            }
            replay(&mut network, &pending)?;
            pending.clear();
            replaying += started.elapsed();
        }
        let started = Instant::now();
        network.restore_links(&link_rows)?;
        tracing::info!(
            revision,
            links = link_rows.len(),
            read_ms = reading.as_millis() as u64,
            replay_ms = replaying.as_millis() as u64,
            links_ms = started.elapsed().as_millis() as u64,
            "checkpoint loaded"
        );
        Ok(network)
    }

    fn write_checkpoint(&self, path: &Path, revision: u64, network: &Network) -> Result<()> {
        let mut out = CheckpointWriter::create(path, revision)?;
        let mut ids: Vec<(Id, Ix)> = network.actor_ix.iter().map(|(id, ix)| (id.clone(), *ix)).collect();
        ids.sort_unstable_by_key(|(_, ix)| *ix);
        out.put(ids.chunks(FRAME_RECORDS).map(RecordRef::Ids))?;
        drop(ids);
        out.put(network.clusters.values().map(|c| RecordRef::Cluster(c)))?;
        out.put(network.actors.values().map(|a| RecordRef::Actor(a)))?;
        // Links go in index form, a frame at a time so no copy of the
        // network is made.
        let mut links = network.links.iter().map(|(key, data)| (*key, *data));
        loop {
            let frame: Vec<(EdgeKey, LinkData)> = links.by_ref().take(FRAME_RECORDS).collect();
            if frame.is_empty() {
                break;
            }
            out.put(std::iter::once(RecordRef::LinkRows(&frame)))?;
        }
        out.put(network.cluster_links.values().map(|l| RecordRef::ClusterLink(l)))?;
        out.put(network.profiles.values().flat_map(|p| p.iter()).map(RecordRef::Profile))?;
        out.finish()
    }
}

impl Backend for SledBackend {
    fn load(&self) -> Result<Loaded> {
        let checkpoint = self.counter(META_CHECKPOINT)?;
        // The log's last record is the latest revision: a batch is written to
        // the log in one atomic step, with no counter beside it to disagree.
        // A log compacted to nothing ends at the checkpoint.
        let logged = match self.log.last()? {
            Some((key, _)) => Some(revision_of(&key)?),
            None => None,
        };
        let revision = logged.max(checkpoint).unwrap_or(0);
        let mut network = match checkpoint {
            Some(at) => self.load_checkpoint(at)?,
            None => Network::default(),
        };
        let (mut replayed, mut replayed_bytes) = (0u64, 0u64);
        let reader = SledLog { log: self.log.clone() };
        let mut next = checkpoint.map_or(1, |at| at + 1);
        while next <= revision {
            let batches = reader.read(next, 256)?;
            let Some((last, _)) = batches.last() else { break };
            next = last + 1;
            for (at, changes) in batches.into_iter().filter(|(at, _)| *at <= revision) {
                replay(&mut network, &changes).map_err(|e| Error::Corrupt(format!("revision {at}: {e}")))?;
                replayed += changes.len() as u64;
                replayed_bytes += encode(&changes).len() as u64;
            }
        }
        Ok(Loaded {
            revision,
            network,
            changes_since_checkpoint: replayed,
            log_bytes_since_checkpoint: replayed_bytes,
            checkpoint_bytes: match checkpoint {
                Some(at) => std::fs::metadata(self.checkpoint_path(at)).map_or(0, |m| m.len()),
                None => 0,
            },
        })
    }

    fn append(&mut self, revision: u64, changes: &[Change]) -> Result<u64> {
        let bytes = encode(changes);
        let mut batch = sled::Batch::default();
        let mut logged = 0u64;
        for (part, chunk) in bytes.chunks(PART_BYTES).enumerate() {
            let key = log_key(revision, part as u32);
            logged += (key.len() + chunk.len()) as u64;
            batch.insert(&key, chunk);
        }
        self.log.apply_batch(batch)?;
        Ok(logged)
    }

    fn checkpoint(&mut self, revision: u64, network: &Network) -> Result<u64> {
        let previous = self.counter(META_CHECKPOINT)?;
        let path = self.checkpoint_path(revision);
        let temporary = path.with_extension("partial");
        if let Err(error) = self.write_checkpoint(&temporary, revision, network) {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
        std::fs::rename(&temporary, &path)?;
        File::open(&self.checkpoints)?.sync_all()?;
        // One flush makes the counter and the log up to `revision` durable
        // (sled's trees share one log).
        self.db.insert(META_CHECKPOINT, &revision.to_be_bytes())?;
        self.db.flush()?;
        // The new checkpoint is durable and named; the old one is not needed.
        if let Some(old) = previous.filter(|old| *old != revision) {
            std::fs::remove_file(self.checkpoint_path(old))?;
        }
        Ok(std::fs::metadata(&path)?.len())
    }

    fn sync(&mut self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn log_reader(&self) -> Arc<dyn LogReader> {
        Arc::new(SledLog { log: self.log.clone() })
    }

    fn compact_log(&mut self, before: u64) -> Result<u64> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let mut last = None;
        for key in self.log.range(..log_key(before, 0)).keys() {
            let key = key?;
            let revision = revision_of(&key)?;
            if last != Some(revision) {
                removed += 1;
                last = Some(revision);
            }
            batch.remove(key);
        }
        if removed > 0 {
            self.log.apply_batch(batch)?;
        }
        Ok(removed)
    }
}
