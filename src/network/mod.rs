//! The in-memory network: every entity plus the indexes reads need, in
//! persistent (structurally shared) maps. Cloning a `Network` is O(1), so the
//! writer applies a batch to a clone and either publishes it whole or drops it:
//! that is how a bad item leaves nothing behind, and how readers keep a
//! consistent snapshot while writers go on.
//!
//! Actors are interned: each id gets a dense index ([`Ix`]) the first time it
//! is named, kept for the life of the store (a deleted id keeps its index, so
//! re-creating it restores its place). Links are keyed by index pairs, which
//! makes the large maps compare integers instead of strings and gives the
//! analyses a ready numbering of the firm network.

pub mod mix;
pub mod query;
pub mod ties;

use std::sync::Arc;

use imbl::{shared_ptr::DefaultSharedPtr, GenericHashMap, OrdMap, OrdSet, Vector};
use rayon::slice::ParallelSliceMut;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    model::{
        Actor, ActorProfile, Change, Channel, Cluster, ClusterLink, ClusterLinkKey, Date, Id, Link, LinkKey, LinkKind,
        SegmentSet, Validity,
    },
};

/// The dense index of an actor id.
pub type Ix = u32;

/// A link's identity in index form: (source, target, kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EdgeKey {
    pub source: Ix,
    pub target: Ix,
    pub kind: LinkKind,
}

impl EdgeKey {
    /// The same link seen from its target.
    pub fn swapped(&self) -> EdgeKey {
        EdgeKey {
            source: self.target,
            target: self.source,
            kind: self.kind,
        }
    }
}

/// Every key whose source is `ix`.
pub(crate) fn source_range(ix: Ix) -> (std::ops::Bound<EdgeKey>, std::ops::Bound<EdgeKey>) {
    use std::ops::Bound::*;
    let first = |source| EdgeKey {
        source,
        target: 0,
        kind: LinkKind::ALL[0],
    };
    match ix.checked_add(1) {
        Some(next) => (Included(first(ix)), Excluded(first(next))),
        None => (Included(first(ix)), Unbounded),
    }
}

/// What a link carries besides its key. Plain `Copy` data, so the copy-on-write
/// of map nodes after a snapshot is a memcpy, with no reference counts to touch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkData {
    pub channel: Channel,
    pub weight: f64,
    pub validity: Validity,
}

/// Actor id to index; FxHash because ids are short strings hashed on every
/// link written.
pub type IdIndex = GenericHashMap<Id, Ix, FxBuildHasher, DefaultSharedPtr>;

/// The network at one revision.
#[derive(Clone, Default)]
pub struct Network {
    pub clusters: OrdMap<Id, Arc<Cluster>>,
    /// Site id to the id of the cluster it belongs to.
    pub sites: OrdMap<Id, Id>,
    /// Actors by id, for lookups and listings in id order.
    pub actors: OrdMap<Id, Arc<Actor>>,
    /// Every id ever named by an actor or link, with its index.
    pub actor_ix: IdIndex,
    /// Index to actor; `None` for an index whose actor is deleted.
    pub actor_at: Vector<Option<Arc<Actor>>>,
    /// Cluster id to the ids of its member actors.
    pub members: OrdMap<Id, OrdSet<Id>>,
    /// Cluster id to what its members add up to now (see [`mix`]).
    pub mixes: mix::Mixes,
    pub links: OrdMap<EdgeKey, LinkData>,
    /// Every link key with source and target swapped, so the links into an
    /// actor are a range, as the links out of it are a range of `links`.
    pub reverse: OrdSet<EdgeKey>,
    pub cluster_links: OrdMap<ClusterLinkKey, Arc<ClusterLink>>,
    /// Each actor's earlier profiles, by `until` ascending.
    pub profiles: OrdMap<Id, Arc<Vec<ActorProfile>>>,
}

/// An actor's attributes as they were on a date.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attributes<'a> {
    pub industry: &'a str,
    pub segments: &'a SegmentSet,
    pub employees: Option<u64>,
    pub revenue: Option<f64>,
}

/// How many entities of each kind a batch touched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    pub clusters_upserted: u64,
    pub actors_upserted: u64,
    pub links_upserted: u64,
    pub cluster_links_upserted: u64,
    pub clusters_deleted: u64,
    pub actors_deleted: u64,
    pub links_deleted: u64,
    pub cluster_links_deleted: u64,
    pub actor_profiles_upserted: u64,
    pub actor_profiles_deleted: u64,
}

impl ChangeCounts {
    pub fn add(&mut self, other: &ChangeCounts) {
        self.clusters_upserted += other.clusters_upserted;
        self.actors_upserted += other.actors_upserted;
        self.links_upserted += other.links_upserted;
        self.cluster_links_upserted += other.cluster_links_upserted;
        self.clusters_deleted += other.clusters_deleted;
        self.actors_deleted += other.actors_deleted;
        self.links_deleted += other.links_deleted;
        self.cluster_links_deleted += other.cluster_links_deleted;
        self.actor_profiles_upserted += other.actor_profiles_upserted;
        self.actor_profiles_deleted += other.actor_profiles_deleted;
    }

    pub fn total(&self) -> u64 {
        self.clusters_upserted
            + self.actors_upserted
            + self.links_upserted
            + self.cluster_links_upserted
            + self.clusters_deleted
            + self.actors_deleted
            + self.links_deleted
            + self.cluster_links_deleted
            + self.actor_profiles_upserted
            + self.actor_profiles_deleted
    }
}

/// References to check once the whole batch is applied, with the index of the
/// item that made each one, so the error can name it.
#[derive(Default)]
struct DeferredChecks {
    links: Vec<(usize, EdgeKey)>,
    actors: Vec<(usize, Id)>,
    clusters: Vec<(usize, Id)>,
    cluster_links: Vec<(usize, ClusterLinkKey)>,
    deleted_actors: Vec<(usize, Id)>,
    deleted_clusters: Vec<(usize, Id)>,
    profiles: Vec<(usize, Id)>,
}

fn item(index: usize, change: &Change) -> String {
    format!("changes[{index}].{}", change.field_name())
}

/// Batches from this many changes insert their reverse keys beside.
const REVERSE_BESIDE_FROM: usize = 1_024;
/// Reverse keys handed over at once, and chunks in flight.
const REVERSE_CHUNK: usize = 512;
const REVERSE_CHUNKS_QUEUED: usize = 16;

/// Where a batch puts its new reverse keys: into the set at once, or in
/// chunks to the thread that holds the set meanwhile.
enum ReverseInserts {
    Here,
    Beside {
        chunk: Vec<EdgeKey>,
        to: std::sync::mpsc::SyncSender<Vec<EdgeKey>>,
    },
}

impl ReverseInserts {
    fn insert(&mut self, set: &mut OrdSet<EdgeKey>, key: EdgeKey) {
        match self {
            ReverseInserts::Here => {
                set.insert(key);
            }
            ReverseInserts::Beside { chunk, to } => {
                chunk.push(key);
                if chunk.len() == REVERSE_CHUNK {
                    let full = std::mem::replace(chunk, Vec::with_capacity(REVERSE_CHUNK));
                    // The receiver lives until this sender is dropped.
                    let _ = to.send(full);
                }
            }
        }
    }

    /// Hands over the last chunk and lets the thread beside finish.
    fn finish(self) {
        if let ReverseInserts::Beside { chunk, to } = self {
            if !chunk.is_empty() {
                let _ = to.send(chunk);
            }
        }
    }
}

impl Network {
    /// An actor's attributes on `date` (today's record when None or when no
    /// earlier profile covers the date).
    pub fn attributes_at<'a>(&'a self, actor: &'a Actor, date: Option<Date>) -> Attributes<'a> {
        let earlier = date.and_then(|d| {
            self.profiles
                .get(&actor.id)
                .and_then(|profiles| profiles.iter().find(|p| d < p.until))
        });
        match earlier {
            Some(p) => Attributes {
                industry: &p.industry,
                segments: &p.segments,
                employees: p.employees,
                revenue: p.revenue,
            },
            None => Attributes {
                industry: &actor.industry,
                segments: &actor.segments,
                employees: actor.employees,
                revenue: actor.revenue,
            },
        }
    }

    /// The indexes of a cluster's members.
    pub fn member_indexes<'a>(&'a self, cluster: &Id) -> impl Iterator<Item = Ix> + 'a {
        self.members
            .get(cluster)
            .into_iter()
            .flatten()
            .filter_map(|id| self.ix_of(id))
    }

    /// The actor at an index, if it exists.
    pub fn actor(&self, ix: Ix) -> Option<&Arc<Actor>> {
        self.actor_at.get(ix as usize).and_then(Option::as_ref)
    }

    /// Whether `ix` was given out by this revision. Indexes are never
    /// reused or renumbered, so an index an older revision has names the
    /// same id in every later one.
    pub fn has_index(&self, ix: Ix) -> bool {
        (ix as usize) < self.actor_at.len()
    }

    /// The index of an existing actor.
    pub fn ix_of(&self, id: &str) -> Option<Ix> {
        let ix = *self.actor_ix.get(id)?;
        self.actor(ix).is_some().then_some(ix)
    }

    /// The index form of a link key, if both ends have ever been named.
    pub fn edge_key(&self, key: &LinkKey) -> Option<EdgeKey> {
        Some(EdgeKey {
            source: *self.actor_ix.get(&key.source)?,
            target: *self.actor_ix.get(&key.target)?,
            kind: key.kind,
        })
    }

    /// The keys of the links out of an actor, by target.
    pub fn out_links(&self, ix: Ix) -> impl Iterator<Item = EdgeKey> + '_ {
        self.links.range(source_range(ix)).map(|(key, _)| *key)
    }

    /// The keys of the links into an actor, by source.
    pub fn in_links(&self, ix: Ix) -> impl Iterator<Item = EdgeKey> + '_ {
        self.reverse.range(source_range(ix)).map(EdgeKey::swapped)
    }

    /// The links out of an actor, by target, with their data (read with the
    /// key, where [`Network::out_links`] and a lookup would descend twice).
    pub fn out_links_with_data(&self, ix: Ix) -> impl Iterator<Item = (EdgeKey, &LinkData)> + '_ {
        self.links.range(source_range(ix)).map(|(key, data)| (*key, data))
    }

    /// The links into an actor, by source, with their data.
    pub fn in_links_with_data(&self, ix: Ix) -> impl Iterator<Item = (EdgeKey, &LinkData)> + '_ {
        self.in_links(ix).filter_map(|key| Some((key, self.links.get(&key)?)))
    }

    /// The keys of every link at an actor: out-links, then in-links.
    pub fn incident(&self, ix: Ix) -> impl Iterator<Item = EdgeKey> + '_ {
        self.out_links(ix).chain(self.in_links(ix))
    }

    /// The link at a key, with its actor ids.
    pub fn link(&self, key: &EdgeKey) -> Option<Link> {
        let data = self.links.get(key)?;
        Some(self.link_from(key, data))
    }

    /// Puts a key and its data back together as a model link.
    pub fn link_from(&self, key: &EdgeKey, data: &LinkData) -> Link {
        let id = |ix: Ix| -> Id {
            self.actor(ix)
                .map(|a| a.id.clone())
                // Published networks have no dangling indexes (checked at the
                // end of every batch); this only serves a half-applied batch.
                .unwrap_or_else(|| Id::from(""))
        };
        Link {
            source: id(key.source),
            target: id(key.target),
            kind: key.kind,
            channel: data.channel,
            weight: data.weight,
            validity: data.validity,
        }
    }

    /// The index of `id`, allocating one (with no actor yet) if it is new.
    fn intern(&mut self, id: &Id) -> Ix {
        if let Some(ix) = self.actor_ix.get(id) {
            return *ix;
        }
        let ix = self.actor_at.len() as Ix;
        self.actor_at.push_back(None);
        self.actor_ix.insert(id.clone(), ix);
        ix
    }

    /// Applies `changes` in order and returns what they did. Items must already
    /// be validated one by one (`Change::validated`); references between items
    /// are checked at the end, so a batch may create a link before the actors
    /// it joins.
    ///
    /// On error `self` is left partly changed: callers apply to a clone.
    pub fn apply(&mut self, changes: &[Change]) -> Result<ChangeCounts> {
        let inserts_only = |change: &Change| {
            !matches!(
                change,
                Change::DeleteLink(_) | Change::DeleteActor { .. } | Change::DeleteCluster { .. }
            )
        };
        if changes.len() < REVERSE_BESIDE_FROM || !changes.iter().all(inserts_only) {
            return self.apply_in_order(changes, &mut ReverseInserts::Here);
        }
        // A bulk batch that only adds reverse keys: they go into their set on
        // a thread beside this one (on 10M links those inserts were a third
        // of the writer's time). Nothing in such a batch reads the set.
        let mut reverse = std::mem::take(&mut self.reverse);
        let (to, chunks) = std::sync::mpsc::sync_channel::<Vec<EdgeKey>>(REVERSE_CHUNKS_QUEUED);
        std::thread::scope(|scope| {
            let beside = scope.spawn(move || {
                for chunk in chunks {
                    for key in chunk {
                        reverse.insert(key);
                    }
                }
                reverse
            });
            let mut inserts = ReverseInserts::Beside {
                chunk: Vec::with_capacity(REVERSE_CHUNK),
                to,
            };
            let applied = self.apply_in_order(changes, &mut inserts);
            inserts.finish();
            match beside.join() {
                Ok(reverse) => self.reverse = reverse,
                Err(panic) => std::panic::resume_unwind(panic),
            }
            applied
        })
    }

    fn apply_in_order(&mut self, changes: &[Change], reverse: &mut ReverseInserts) -> Result<ChangeCounts> {
        let mut counts = ChangeCounts::default();
        let mut checks = DeferredChecks::default();
        for (index, change) in changes.iter().enumerate() {
            let at = || item(index, change);
            match change {
                Change::UpsertCluster(cluster) => {
                    self.upsert_cluster(cluster).map_err(|e| e.within(&at()))?;
                    checks.clusters.push((index, cluster.id.clone()));
                    counts.clusters_upserted += 1;
                }
                Change::UpsertActor(actor) => {
                    self.upsert_actor(actor);
                    checks.actors.push((index, actor.id.clone()));
                    counts.actors_upserted += 1;
                }
                Change::UpsertLink(link) => {
                    let key = self.upsert_link(link, reverse);
                    checks.links.push((index, key));
                    counts.links_upserted += 1;
                }
                Change::UpsertClusterLink(link) => {
                    self.cluster_links.insert(link.key(), Arc::new(link.clone()));
                    checks.cluster_links.push((index, link.key()));
                    counts.cluster_links_upserted += 1;
                }
                Change::DeleteCluster { id, cascade } => {
                    let Some(cluster) = self.clusters.remove(id) else {
                        return Err(Error::not_found(format!("{}.id", at()), "cluster", &**id));
                    };
                    for site in &cluster.sites {
                        self.sites.remove(&site.id);
                    }
                    if *cascade {
                        self.cascade_cluster_delete(&cluster, &mut counts);
                    } else {
                        checks.deleted_clusters.push((index, id.clone()));
                    }
                    counts.clusters_deleted += 1;
                }
                Change::DeleteActor { id, cascade } => {
                    let Some(actor) = self.actors.remove(id) else {
                        return Err(Error::not_found(format!("{}.id", at()), "actor", &**id));
                    };
                    let ix = self.actor_ix[id];
                    self.actor_at.set(ix as usize, None);
                    for cluster in &actor.cluster_ids {
                        self.remove_member(cluster, id);
                    }
                    mix::remove_actor(&mut self.mixes, &actor);
                    // Profiles are the actor's own history: they go with it.
                    if let Some(profiles) = self.profiles.remove(id) {
                        counts.actor_profiles_deleted += profiles.len() as u64;
                    }
                    if *cascade {
                        let keys: Vec<EdgeKey> = self.incident(ix).collect();
                        for key in keys {
                            self.remove_link(&key);
                            counts.links_deleted += 1;
                        }
                    } else {
                        checks.deleted_actors.push((index, id.clone()));
                    }
                    counts.actors_deleted += 1;
                }
                Change::DeleteLink(key) => {
                    let removed = self.edge_key(key).and_then(|edge| self.remove_link(&edge));
                    if removed.is_none() {
                        return Err(Error::not_found(
                            at(),
                            "link",
                            format!("{} -> {} ({})", key.source, key.target, key.kind),
                        ));
                    }
                    counts.links_deleted += 1;
                }
                Change::DeleteClusterLink(key) => {
                    if self.cluster_links.remove(key).is_none() {
                        return Err(Error::not_found(
                            at(),
                            "cluster link",
                            format!("{} -> {} ({})", key.source, key.target, key.kind),
                        ));
                    }
                    counts.cluster_links_deleted += 1;
                }
                Change::UpsertActorProfile(profile) => {
                    let mut list: Vec<ActorProfile> = self
                        .profiles
                        .get(&profile.actor_id)
                        .map(|p| p.as_ref().clone())
                        .unwrap_or_default();
                    list.retain(|p| p.until != profile.until);
                    list.push(profile.clone());
                    list.sort_by_key(|p| p.until);
                    self.profiles.insert(profile.actor_id.clone(), Arc::new(list));
                    checks.profiles.push((index, profile.actor_id.clone()));
                    counts.actor_profiles_upserted += 1;
                }
                Change::DeleteActorProfile { actor_id, until } => {
                    let mut list: Vec<ActorProfile> = self
                        .profiles
                        .get(actor_id)
                        .map(|p| p.as_ref().clone())
                        .unwrap_or_default();
                    let before = list.len();
                    list.retain(|p| p.until != *until);
                    if list.len() == before {
                        return Err(Error::not_found(
                            at(),
                            "actor profile",
                            format!("{actor_id} until {until}"),
                        ));
                    }
                    if list.is_empty() {
                        self.profiles.remove(actor_id);
                    } else {
                        self.profiles.insert(actor_id.clone(), Arc::new(list));
                    }
                    counts.actor_profiles_deleted += 1;
                }
            }
        }
        self.check_references(changes, &checks)?;
        Ok(counts)
    }

    fn upsert_cluster(&mut self, cluster: &Cluster) -> Result<()> {
        if self.sites.contains_key(&cluster.id) {
            return Err(Error::precondition(
                "id",
                format!("'{}' is already the id of a site", cluster.id),
            ));
        }
        if let Some(old) = self.clusters.get(&cluster.id).cloned() {
            for site in &old.sites {
                self.sites.remove(&site.id);
            }
        }
        for (i, site) in cluster.sites.iter().enumerate() {
            if self.clusters.contains_key(&site.id) {
                return Err(Error::precondition(
                    format!("sites[{i}].id"),
                    format!("'{}' is already the id of a cluster", site.id),
                ));
            }
            if let Some(owner) = self.sites.get(&site.id) {
                return Err(Error::precondition(
                    format!("sites[{i}].id"),
                    format!("site '{}' already belongs to cluster '{owner}'", site.id),
                ));
            }
            self.sites.insert(site.id.clone(), cluster.id.clone());
        }
        self.clusters.insert(cluster.id.clone(), Arc::new(cluster.clone()));
        Ok(())
    }

    fn upsert_actor(&mut self, actor: &Actor) {
        if let Some(old) = self.actors.get(&actor.id).cloned() {
            for cluster in &old.cluster_ids {
                self.remove_member(cluster, &actor.id);
            }
            mix::remove_actor(&mut self.mixes, &old);
        }
        mix::add_actor(&mut self.mixes, actor);
        for cluster in &actor.cluster_ids {
            self.members
                .entry(cluster.clone())
                .or_default()
                .insert(actor.id.clone());
        }
        let ix = self.intern(&actor.id);
        let actor = Arc::new(actor.clone());
        self.actor_at.set(ix as usize, Some(actor.clone()));
        self.actors.insert(actor.id.clone(), actor);
    }

    fn remove_member(&mut self, cluster: &Id, actor: &Id) {
        if let Some(set) = self.members.get_mut(cluster) {
            set.remove(actor);
            if set.is_empty() {
                self.members.remove(cluster);
            }
        }
    }

    fn upsert_link(&mut self, link: &Link, reverse: &mut ReverseInserts) -> EdgeKey {
        let key = EdgeKey {
            source: self.intern(&link.source),
            target: self.intern(&link.target),
            kind: link.kind,
        };
        reverse.insert(&mut self.reverse, key.swapped());
        self.links.insert(
            key,
            LinkData {
                channel: link.channel,
                weight: link.weight,
                validity: link.validity,
            },
        );
        key
    }

    /// Restores actors (a checkpoint's, after its clusters and id index),
    /// without a batch's bookkeeping: no deferred checks, no counts, no
    /// copy of each actor. What a batch would refuse is corrupt data here:
    /// an unknown cluster, a site outside the actor's clusters, an id the
    /// index does not hold. The actors map and the memberships are built
    /// side by side, in [`packing_order`] (a checkpoint holds the actors in
    /// id order).
    pub fn restore_actors(&mut self, actors: Vec<Actor>) -> Result<()> {
        let mut restored = Vec::with_capacity(actors.len());
        for actor in actors {
            let corrupt = |what: String| Error::Corrupt(format!("stored actor '{}': {what}", actor.id));
            if let Some(cluster) = actor.cluster_ids.iter().find(|c| !self.clusters.contains_key(*c)) {
                return Err(corrupt(format!("cluster '{cluster}' does not exist")));
            }
            if let Some(site) = &actor.site_id {
                if !self
                    .sites
                    .get(site)
                    .is_some_and(|owner| actor.cluster_ids.contains(owner))
                {
                    return Err(corrupt(format!("site '{site}' is not a site of its clusters")));
                }
            }
            let Some(&ix) = self.actor_ix.get(&actor.id) else {
                return Err(corrupt("its id has no index".into()));
            };
            if ix as usize >= self.actor_at.len() {
                return Err(corrupt(format!("index {ix} is past the index's end")));
            }
            restored.push((ix, Arc::new(actor)));
        }
        let (mut actors, mut members) = (std::mem::take(&mut self.actors), std::mem::take(&mut self.members));
        let mut mixes = std::mem::take(&mut self.mixes);
        rayon::join(
            || {
                for (_, actor) in packing_order(&restored) {
                    actors.insert(actor.id.clone(), actor.clone());
                }
            },
            || {
                // A cluster's members come in the same order, so its set
                // fills much as the actors map does.
                for (_, actor) in packing_order(&restored) {
                    for cluster in &actor.cluster_ids {
                        members.entry(cluster.clone()).or_default().insert(actor.id.clone());
                    }
                    mix::add_actor(&mut mixes, actor);
                }
            },
        );
        self.mixes = mixes;
        self.actors = actors;
        self.members = members;
        for (ix, actor) in restored {
            self.actor_at.set(ix as usize, Some(actor));
        }
        Ok(())
    }

    /// Restores links in index form (a checkpoint's, in key order), without
    /// the checks and id lookups of a batch: each must join two live actors,
    /// else the data is corrupt. The two maps are built side by side, and the
    /// reverse keys are sorted first: inserted in random order they missed
    /// the cache at every level of the tree, most of a restart's time. Both
    /// go in [`packing_order`], which halves their memory.
    pub fn restore_links(&mut self, rows: &[(EdgeKey, LinkData)]) -> Result<()> {
        let live: Vec<bool> = self.actor_at.iter().map(Option::is_some).collect();
        let is_live = |ix: Ix| live.get(ix as usize).copied().unwrap_or(false);
        if let Some((key, _)) = rows
            .iter()
            .find(|(key, _)| !is_live(key.source) || !is_live(key.target))
        {
            return Err(Error::Corrupt(format!(
                "a stored link joins actor indexes {} and {}, which are not both live",
                key.source, key.target
            )));
        }
        let (links, reverse) = rayon::join(
            || {
                let mut links = std::mem::take(&mut self.links);
                for (key, data) in packing_order(rows) {
                    links.insert(*key, *data);
                }
                links
            },
            || {
                let mut swapped: Vec<EdgeKey> = rows.iter().map(|(key, _)| key.swapped()).collect();
                swapped.par_sort_unstable();
                let mut reverse = std::mem::take(&mut self.reverse);
                for key in packing_order(&swapped) {
                    reverse.insert(*key);
                }
                reverse
            },
        );
        self.links = links;
        self.reverse = reverse;
        Ok(())
    }

    /// The same network with its big ordered maps built again in
    /// [`packing_order`]: the links, the reverse keys, the actors and each
    /// cluster's members. Batches leave those maps between half and
    /// two-thirds full (a bulk import, in key order, half); rebuilt, they
    /// take the memory a restart gives them. The maps are built side by
    /// side; the result shares nothing with `self` in them, so the old ones
    /// go once no snapshot holds them.
    pub fn repacked(&self) -> Network {
        let ((links, reverse), (actors, members)) = rayon::join(
            || {
                rayon::join(
                    || {
                        packing_order(&self.links)
                            .map(|(k, v)| (*k, *v))
                            .collect::<OrdMap<_, _>>()
                    },
                    || packing_order(&self.reverse).copied().collect::<OrdSet<_>>(),
                )
            },
            || {
                rayon::join(
                    || {
                        packing_order(&self.actors)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<OrdMap<_, _>>()
                    },
                    || {
                        self.members
                            .iter()
                            .map(|(cluster, set)| (cluster.clone(), packing_order(set).cloned().collect::<OrdSet<_>>()))
                            .collect::<OrdMap<_, _>>()
                    },
                )
            },
        );
        Network {
            links,
            reverse,
            actors,
            members,
            ..self.clone()
        }
    }

    fn remove_link(&mut self, key: &EdgeKey) -> Option<LinkData> {
        let removed = self.links.remove(key)?;
        self.reverse.remove(&key.swapped());
        Some(removed)
    }

    /// Detaches a deleted cluster from everything that names it: members leave
    /// it (and its sites), cluster links to it or its sites go.
    fn cascade_cluster_delete(&mut self, cluster: &Cluster, counts: &mut ChangeCounts) {
        self.mixes.remove(&cluster.id);
        let member_ids: Vec<Id> = self
            .members
            .remove(&cluster.id)
            .map(|set| set.into_iter().collect())
            .unwrap_or_default();
        for actor_id in member_ids {
            if let Some(actor) = self.actors.get(&actor_id) {
                let mut actor = (**actor).clone();
                actor.cluster_ids.retain(|c| *c != cluster.id);
                if actor
                    .site_id
                    .as_ref()
                    .is_some_and(|site| cluster.sites.iter().any(|s| s.id == *site))
                {
                    actor.site_id = None;
                }
                let ix = self.actor_ix[&actor_id];
                let actor = Arc::new(actor);
                self.actor_at.set(ix as usize, Some(actor.clone()));
                self.actors.insert(actor_id, actor);
            }
        }
        let names_cluster = |end: &Id| *end == cluster.id || cluster.sites.iter().any(|s| s.id == *end);
        let doomed: Vec<ClusterLinkKey> = self
            .cluster_links
            .keys()
            .filter(|key| names_cluster(&key.source) || names_cluster(&key.target))
            .cloned()
            .collect();
        for key in doomed {
            self.cluster_links.remove(&key);
            counts.cluster_links_deleted += 1;
        }
    }

    fn is_cluster_or_site(&self, id: &Id) -> bool {
        self.clusters.contains_key(id) || self.sites.contains_key(id)
    }

    fn check_references(&self, changes: &[Change], checks: &DeferredChecks) -> Result<()> {
        for (index, id) in &checks.profiles {
            if self.profiles.contains_key(id) && !self.actors.contains_key(id) {
                return Err(Error::precondition(
                    format!("{}.actor_id", item(*index, &changes[*index])),
                    format!("actor '{id}' neither exists nor is created in this batch"),
                ));
            }
        }
        for (index, key) in &checks.links {
            if !self.links.contains_key(key) {
                continue; // deleted again later in the batch
            }
            for (field, ix) in [("source", key.source), ("target", key.target)] {
                if self.actor(ix).is_none() {
                    // Only on error: find the id of the dangling index.
                    let id = self
                        .actor_ix
                        .iter()
                        .find(|(_, i)| **i == ix)
                        .map(|(id, _)| id.clone())
                        .unwrap_or_else(|| Id::from("?"));
                    return Err(Error::precondition(
                        format!("{}.{field}", item(*index, &changes[*index])),
                        format!("actor '{id}' neither exists nor is created in this batch"),
                    ));
                }
            }
        }
        for (index, id) in &checks.actors {
            let Some(actor) = self.actors.get(id) else { continue };
            // Formatted only for an error: this runs for every actor written.
            let at = || item(*index, &changes[*index]);
            for (i, cluster) in actor.cluster_ids.iter().enumerate() {
                if !self.clusters.contains_key(cluster) {
                    return Err(Error::precondition(
                        format!("{}.cluster_ids[{i}]", at()),
                        format!("cluster '{cluster}' neither exists nor is created in this batch"),
                    ));
                }
            }
            if let Some(site) = &actor.site_id {
                match self.sites.get(site) {
                    Some(owner) if actor.cluster_ids.contains(owner) => {}
                    Some(owner) => {
                        return Err(Error::precondition(
                            format!("{}.site_id", at()),
                            format!(
                                "site '{site}' belongs to cluster '{owner}', which is not among the actor's clusters"
                            ),
                        ))
                    }
                    None => {
                        return Err(Error::precondition(
                            format!("{}.site_id", at()),
                            format!("site '{site}' does not exist"),
                        ));
                    }
                }
            }
        }
        for (index, id) in &checks.clusters {
            if !self.clusters.contains_key(id) {
                continue;
            }
            let at = item(*index, &changes[*index]);
            // A replaced cluster may have dropped sites that members still name.
            for actor_id in self.members.get(id).into_iter().flatten() {
                if let Some(site) = self.actors.get(actor_id).and_then(|a| a.site_id.as_ref()) {
                    if !self.sites.contains_key(site) {
                        return Err(Error::precondition(
                            format!("{at}.sites"),
                            format!("site '{site}' is removed but actor '{actor_id}' is still at it"),
                        ));
                    }
                }
            }
        }
        // Cluster links must name clusters or sites; a replaced or deleted
        // cluster may have taken a named site away.
        if !checks.clusters.is_empty() || !checks.cluster_links.is_empty() || !checks.deleted_clusters.is_empty() {
            for key in self.cluster_links.keys() {
                for (field, end) in [("source", &key.source), ("target", &key.target)] {
                    if self.is_cluster_or_site(end) {
                        continue;
                    }
                    let culprit = checks
                        .cluster_links
                        .iter()
                        .find(|(_, k)| k == key)
                        .map(|(i, _)| format!("{}.{field}", item(*i, &changes[*i])))
                        .or_else(|| {
                            checks
                                .deleted_clusters
                                .first()
                                .map(|(i, _)| format!("{}.cascade", item(*i, &changes[*i])))
                        })
                        .or_else(|| {
                            checks
                                .clusters
                                .first()
                                .map(|(i, _)| format!("{}.sites", item(*i, &changes[*i])))
                        })
                        .unwrap_or_default();
                    return Err(Error::precondition(
                        culprit,
                        format!(
                            "cluster link {} -> {} ({}) names '{end}', which is neither a cluster nor a site",
                            key.source, key.target, key.kind
                        ),
                    ));
                }
            }
        }
        for (index, id) in &checks.deleted_actors {
            if self.actors.contains_key(id) {
                continue; // re-created later in the batch
            }
            let links = self.actor_ix.get(id).map_or(0, |ix| self.incident(*ix).count());
            if links > 0 {
                return Err(Error::precondition(
                    format!("{}.cascade", item(*index, &changes[*index])),
                    format!("actor '{id}' still has {links} links; delete them first or set cascade"),
                ));
            }
        }
        for (index, id) in &checks.deleted_clusters {
            if self.clusters.contains_key(id) {
                continue;
            }
            if let Some(members) = self.members.get(id) {
                return Err(Error::precondition(
                    format!("{}.cascade", item(*index, &changes[*index])),
                    format!(
                        "cluster '{id}' still has {} members; remove them first or set cascade",
                        members.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The order in which to insert entries given in ascending key order so that
/// an `imbl` B-tree ends with its leaves full rather than half full: the even
/// places first, then the odd ones.
///
/// Why: a leaf that overflows splits at its middle, and keys that only ever
/// arrive at the right end never return to the left half, so a sorted insert
/// leaves every leaf half full, which for the links of a national network is
/// some 640 MB of empty slots. Inserted by evens, each leaf holds half of its
/// final range; the odd keys then fill each one exactly, splitting nothing.
/// Any order gives the same map; this one only gives a smaller one.
pub(crate) fn packing_order<I: Iterator + Clone>(
    ascending: impl IntoIterator<IntoIter = I>,
) -> impl Iterator<Item = I::Item> {
    let ascending = ascending.into_iter();
    ascending.clone().step_by(2).chain(ascending.skip(1).step_by(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Channel, LinkKind, Site, Validity};

    fn cluster(id: &str, sites: &[&str]) -> Change {
        Change::UpsertCluster(Cluster {
            id: id.into(),
            name: id.to_uppercase(),
            region: "Shanghai".into(),
            country: None,
            industry: "M7410".into(),
            sites: sites
                .iter()
                .map(|s| Site {
                    id: (*s).into(),
                    name: s.to_string(),
                    lat: 31.2,
                    lon: 121.4,
                })
                .collect(),
        })
    }

    fn actor(id: &str, clusters: &[&str]) -> Change {
        Change::UpsertActor(crate::testing::actor(id, clusters))
    }

    fn supply(source: &str, target: &str) -> Change {
        Change::UpsertLink(Link {
            source: source.into(),
            target: target.into(),
            kind: LinkKind::Supply,
            channel: Channel::Physical,
            weight: 1.0,
            validity: Validity::default(),
        })
    }

    fn apply(network: &mut Network, changes: Vec<Change>) -> Result<ChangeCounts> {
        let changes: Vec<Change> = changes.into_iter().map(|c| c.validated().unwrap()).collect();
        network.apply(&changes)
    }

    fn field_of(error: Error) -> String {
        match error {
            Error::FailedPrecondition { field, .. }
            | Error::NotFound { field, .. }
            | Error::InvalidArgument { field, .. } => field,
            other => panic!("unexpected error {other}"),
        }
    }

    /// A bulk batch puts its reverse keys in on a thread beside it: the
    /// network it leaves, and the error of one that fails, are those of
    /// applying it in order.
    #[test]
    fn a_bulk_batch_applies_as_it_does_in_order() {
        let generated = crate::synthetic::generate(&crate::synthetic::SyntheticConfig {
            clusters: 6,
            actors: 600,
            links: 4_000,
            ..Default::default()
        });
        let (first, rest) = generated.split_at(generated.len() / 2);
        // The second batch adds links and upserts again some of the first's.
        let again: Vec<Change> = first
            .iter()
            .filter(|c| matches!(c, Change::UpsertLink(_)))
            .step_by(3)
            .cloned()
            .collect();
        let second: Vec<Change> = rest.iter().cloned().chain(again).collect();
        assert!(first.len() >= REVERSE_BESIDE_FROM && second.len() >= REVERSE_BESIDE_FROM);
        let (mut beside, mut in_order) = (Network::default(), Network::default());
        for batch in [first, &second[..]] {
            let counted = beside.apply(batch).unwrap();
            assert_eq!(
                counted,
                in_order.apply_in_order(batch, &mut ReverseInserts::Here).unwrap()
            );
        }
        assert_eq!(beside.links, in_order.links);
        assert_eq!(beside.reverse, in_order.reverse);
        let swapped: OrdSet<EdgeKey> = beside.links.keys().map(EdgeKey::swapped).collect();
        assert_eq!(beside.reverse, swapped);
        assert_eq!(beside.actor_ix, in_order.actor_ix);

        let mut failing = second.clone();
        failing.push(supply("ghost", &beside.actor_at.iter().flatten().next().unwrap().id));
        let error = beside.clone().apply(&failing).unwrap_err();
        let expected = in_order
            .clone()
            .apply_in_order(&failing, &mut ReverseInserts::Here)
            .unwrap_err();
        assert_eq!(error.to_string(), expected.to_string());
    }

    #[test]
    fn a_link_may_precede_the_actors_it_joins_in_one_batch() {
        let mut network = Network::default();
        let outcome = apply(&mut network, vec![supply("a", "b"), actor("a", &[]), actor("b", &[])]).unwrap();
        assert_eq!(outcome.links_upserted, 1);
        assert_eq!(network.incident(network.ix_of("a").unwrap()).count(), 1);
        assert_eq!(network.in_links(network.ix_of("b").unwrap()).count(), 1);
    }

    #[test]
    fn a_link_to_a_missing_actor_names_the_item_and_endpoint() {
        let mut network = Network::default();
        let error = apply(&mut network, vec![actor("a", &[]), supply("a", "ghost")]).unwrap_err();
        assert_eq!(field_of(error), "changes[1].upsert_link.target");
    }

    #[test]
    fn deleting_an_actor_with_links_needs_cascade() {
        let mut network = Network::default();
        apply(&mut network, vec![actor("a", &[]), actor("b", &[]), supply("a", "b")]).unwrap();
        let mut attempt = network.clone();
        let error = apply(
            &mut attempt,
            vec![Change::DeleteActor {
                id: "a".into(),
                cascade: false,
            }],
        )
        .unwrap_err();
        assert_eq!(field_of(error), "changes[0].delete_actor.cascade");
        let outcome = apply(
            &mut network,
            vec![Change::DeleteActor {
                id: "a".into(),
                cascade: true,
            }],
        )
        .unwrap();
        assert_eq!(outcome.links_deleted, 1);
        assert!(network.links.is_empty());
        assert!(network.reverse.is_empty());
    }

    #[test]
    fn a_cascading_cluster_delete_detaches_members_and_cluster_links() {
        let mut network = Network::default();
        apply(
            &mut network,
            vec![
                cluster("cn", &["east", "west"]),
                cluster("it", &[]),
                actor("a", &["cn", "it"]),
                Change::UpsertClusterLink(ClusterLink {
                    source: "east".into(),
                    target: "west".into(),
                    kind: crate::model::ClusterLinkKind::Transport,
                    channel: Channel::Physical,
                    weight: 1.0,
                }),
            ],
        )
        .unwrap();
        apply(
            &mut network,
            vec![Change::DeleteCluster {
                id: "cn".into(),
                cascade: true,
            }],
        )
        .unwrap();
        assert_eq!(network.actors[&Id::from("a")].cluster_ids, vec![Id::from("it")]);
        assert!(network.cluster_links.is_empty());
        assert!(network.sites.is_empty());
    }

    #[test]
    fn a_site_cannot_belong_to_two_clusters() {
        let mut network = Network::default();
        let error = apply(&mut network, vec![cluster("a", &["park"]), cluster("b", &["park"])]).unwrap_err();
        assert_eq!(field_of(error), "changes[1].upsert_cluster.sites[0].id");
    }

    #[test]
    fn an_actor_site_must_belong_to_one_of_its_clusters() {
        let mut network = Network::default();
        let Change::UpsertActor(mut a) = actor("a", &["b"]) else {
            unreachable!()
        };
        a.site_id = Some("park".into());
        let error = apply(
            &mut network,
            vec![cluster("a", &["park"]), cluster("b", &[]), Change::UpsertActor(a)],
        )
        .unwrap_err();
        assert_eq!(field_of(error), "changes[2].upsert_actor.site_id");
    }

    #[test]
    fn deleting_what_does_not_exist_is_not_found() {
        let mut network = Network::default();
        let error = apply(
            &mut network,
            vec![Change::DeleteActor {
                id: "x".into(),
                cascade: true,
            }],
        )
        .unwrap_err();
        assert!(matches!(error, Error::NotFound { .. }));
    }

    #[test]
    fn restored_actors_give_the_network_their_batch_gives_and_corrupt_ones_are_refused() {
        let world = vec![
            cluster("a", &["a-park"]),
            cluster("b", &[]),
            actor("x", &["a"]),
            actor("y", &["a", "b"]),
            actor("z", &["b"]),
        ];
        let mut applied = Network::default();
        applied.apply(&world).unwrap();
        // As a checkpoint restores: clusters, the id index, then the actors.
        let mut restored = Network::default();
        restored.apply(&world[..2]).unwrap();
        for id in ["x", "y", "z"] {
            restored.intern(&Id::from(id));
        }
        let actors: Vec<Actor> = applied.actors.values().map(|a| (**a).clone()).collect();
        restored.restore_actors(actors.clone()).unwrap();
        assert_eq!(restored.actors, applied.actors);
        assert_eq!(restored.members, applied.members);
        assert_eq!(restored.mixes, applied.mixes);
        assert_eq!(restored.actor_at, applied.actor_at);

        let mut orphan = actors[0].clone();
        orphan.cluster_ids = vec!["nowhere".into()];
        let mut corrupt = Network::default();
        corrupt.apply(&world[..2]).unwrap();
        corrupt.intern(&orphan.id);
        let error = corrupt.restore_actors(vec![orphan]).unwrap_err();
        assert!(matches!(error, Error::Corrupt(_)), "{error:?}");
        let mut unindexed = Network::default();
        unindexed.apply(&world[..2]).unwrap();
        let error = unindexed.restore_actors(vec![actors[1].clone()]).unwrap_err();
        assert!(error.to_string().contains("no index"), "{error}");
    }
}
