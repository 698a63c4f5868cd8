//! The in-memory network: every entity plus the indexes reads need, in
//! persistent (structurally shared) maps. Cloning a `Network` is O(1), so the
//! writer applies a batch to a clone and either publishes it whole or drops it:
//! that is how a bad item leaves nothing behind, and how readers keep a
//! consistent snapshot while writers go on.

use std::{collections::BTreeSet, sync::Arc};

use imbl::{OrdMap, OrdSet};

use crate::{
    error::{Error, Result},
    model::{Actor, Change, Cluster, ClusterLink, ClusterLinkKey, Id, Link, LinkKey},
};

/// The network at one revision.
#[derive(Clone, Default)]
pub struct Network {
    pub clusters: OrdMap<Id, Arc<Cluster>>,
    /// Site id to the id of the cluster it belongs to.
    pub sites: OrdMap<Id, Id>,
    pub actors: OrdMap<Id, Arc<Actor>>,
    /// Cluster id to the ids of its member actors.
    pub members: OrdMap<Id, OrdSet<Id>>,
    pub links: OrdMap<LinkKey, Arc<Link>>,
    /// Actor id to the keys of the links with the actor at either end.
    pub incident: OrdMap<Id, OrdSet<LinkKey>>,
    pub cluster_links: OrdMap<ClusterLinkKey, Arc<ClusterLink>>,
}

/// A stored entity, named by its key; what a batch wrote or removed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntityKey {
    Cluster(Id),
    Actor(Id),
    Link(LinkKey),
    ClusterLink(ClusterLinkKey),
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
    }
}

/// What applying a batch did: the counts, and every entity key whose stored
/// value must be rewritten (present in the network) or removed (absent).
#[derive(Debug)]
pub struct BatchOutcome {
    pub counts: ChangeCounts,
    pub dirty: BTreeSet<EntityKey>,
}

/// References to check once the whole batch is applied, with the index of the
/// item that made each one, so the error can name it.
#[derive(Default)]
struct DeferredChecks {
    links: Vec<(usize, LinkKey)>,
    actors: Vec<(usize, Id)>,
    clusters: Vec<(usize, Id)>,
    cluster_links: Vec<(usize, ClusterLinkKey)>,
    deleted_actors: Vec<(usize, Id)>,
    deleted_clusters: Vec<(usize, Id)>,
}

fn item(index: usize, change: &Change) -> String {
    format!("changes[{index}].{}", change.field_name())
}

impl Network {
    /// Applies `changes` in order. Items must already be validated one by one
    /// (`Change::validated`); references between items are checked at the end,
    /// so a batch may create a link before the actors it joins.
    ///
    /// On error `self` is left partly changed: callers apply to a clone.
    pub fn apply(&mut self, changes: &[Change]) -> Result<BatchOutcome> {
        let mut counts = ChangeCounts::default();
        let mut dirty = BTreeSet::new();
        let mut checks = DeferredChecks::default();
        for (index, change) in changes.iter().enumerate() {
            let at = || item(index, change);
            match change {
                Change::UpsertCluster(cluster) => {
                    self.upsert_cluster(cluster).map_err(|e| e.within(&at()))?;
                    dirty.insert(EntityKey::Cluster(cluster.id.clone()));
                    checks.clusters.push((index, cluster.id.clone()));
                    counts.clusters_upserted += 1;
                }
                Change::UpsertActor(actor) => {
                    self.upsert_actor(actor);
                    dirty.insert(EntityKey::Actor(actor.id.clone()));
                    checks.actors.push((index, actor.id.clone()));
                    counts.actors_upserted += 1;
                }
                Change::UpsertLink(link) => {
                    self.upsert_link(link);
                    dirty.insert(EntityKey::Link(link.key()));
                    checks.links.push((index, link.key()));
                    counts.links_upserted += 1;
                }
                Change::UpsertClusterLink(link) => {
                    self.cluster_links.insert(link.key(), Arc::new(link.clone()));
                    dirty.insert(EntityKey::ClusterLink(link.key()));
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
                        self.cascade_cluster_delete(&cluster, &mut dirty, &mut counts);
                    } else {
                        checks.deleted_clusters.push((index, id.clone()));
                    }
                    dirty.insert(EntityKey::Cluster(id.clone()));
                    counts.clusters_deleted += 1;
                }
                Change::DeleteActor { id, cascade } => {
                    let Some(actor) = self.actors.remove(id) else {
                        return Err(Error::not_found(format!("{}.id", at()), "actor", &**id));
                    };
                    for cluster in &actor.cluster_ids {
                        self.remove_member(cluster, id);
                    }
                    if *cascade {
                        let keys: Vec<LinkKey> = self
                            .incident
                            .get(id)
                            .map(|set| set.iter().cloned().collect())
                            .unwrap_or_default();
                        for key in keys {
                            self.remove_link(&key);
                            dirty.insert(EntityKey::Link(key));
                            counts.links_deleted += 1;
                        }
                    } else {
                        checks.deleted_actors.push((index, id.clone()));
                    }
                    dirty.insert(EntityKey::Actor(id.clone()));
                    counts.actors_deleted += 1;
                }
                Change::DeleteLink(key) => {
                    if self.remove_link(key).is_none() {
                        return Err(Error::not_found(
                            at(),
                            "link",
                            format!("{} -> {} ({})", key.source, key.target, key.kind),
                        ));
                    }
                    dirty.insert(EntityKey::Link(key.clone()));
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
                    dirty.insert(EntityKey::ClusterLink(key.clone()));
                    counts.cluster_links_deleted += 1;
                }
            }
        }
        self.check_references(changes, &checks)?;
        Ok(BatchOutcome { counts, dirty })
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
        }
        for cluster in &actor.cluster_ids {
            self.members
                .entry(cluster.clone())
                .or_default()
                .insert(actor.id.clone());
        }
        self.actors.insert(actor.id.clone(), Arc::new(actor.clone()));
    }

    fn remove_member(&mut self, cluster: &Id, actor: &Id) {
        if let Some(set) = self.members.get_mut(cluster) {
            set.remove(actor);
            if set.is_empty() {
                self.members.remove(cluster);
            }
        }
    }

    fn upsert_link(&mut self, link: &Link) {
        let key = link.key();
        for end in [&key.source, &key.target] {
            self.incident.entry(end.clone()).or_default().insert(key.clone());
        }
        self.links.insert(key, Arc::new(link.clone()));
    }

    fn remove_link(&mut self, key: &LinkKey) -> Option<Arc<Link>> {
        let removed = self.links.remove(key)?;
        for end in [&key.source, &key.target] {
            if let Some(set) = self.incident.get_mut(end) {
                set.remove(key);
                if set.is_empty() {
                    self.incident.remove(end);
                }
            }
        }
        Some(removed)
    }

    /// Detaches a deleted cluster from everything that names it: members leave
    /// it (and its sites), cluster links to it or its sites go.
    fn cascade_cluster_delete(
        &mut self,
        cluster: &Cluster,
        dirty: &mut BTreeSet<EntityKey>,
        counts: &mut ChangeCounts,
    ) {
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
                self.actors.insert(actor_id.clone(), Arc::new(actor));
                dirty.insert(EntityKey::Actor(actor_id));
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
            dirty.insert(EntityKey::ClusterLink(key));
            counts.cluster_links_deleted += 1;
        }
    }

    fn is_cluster_or_site(&self, id: &Id) -> bool {
        self.clusters.contains_key(id) || self.sites.contains_key(id)
    }

    fn check_references(&self, changes: &[Change], checks: &DeferredChecks) -> Result<()> {
        for (index, key) in &checks.links {
            if !self.links.contains_key(key) {
                continue; // deleted again later in the batch
            }
            for (field, end) in [("source", &key.source), ("target", &key.target)] {
                if !self.actors.contains_key(end) {
                    return Err(Error::precondition(
                        format!("{}.{field}", item(*index, &changes[*index])),
                        format!("actor '{end}' neither exists nor is created in this batch"),
                    ));
                }
            }
        }
        for (index, id) in &checks.actors {
            let Some(actor) = self.actors.get(id) else { continue };
            let at = item(*index, &changes[*index]);
            for (i, cluster) in actor.cluster_ids.iter().enumerate() {
                if !self.clusters.contains_key(cluster) {
                    return Err(Error::precondition(
                        format!("{at}.cluster_ids[{i}]"),
                        format!("cluster '{cluster}' neither exists nor is created in this batch"),
                    ));
                }
            }
            if let Some(site) = &actor.site_id {
                match self.sites.get(site) {
                    Some(owner) if actor.cluster_ids.contains(owner) => {}
                    Some(owner) => {
                        return Err(Error::precondition(
                            format!("{at}.site_id"),
                            format!(
                                "site '{site}' belongs to cluster '{owner}', which is not among the actor's clusters"
                            ),
                        ))
                    }
                    None => {
                        return Err(Error::precondition(
                            format!("{at}.site_id"),
                            format!("site '{site}' does not exist"),
                        ));
                    }
                }
            }
        }
        for (index, id) in &checks.clusters {
            let Some(cluster) = self.clusters.get(id) else { continue };
            let at = item(*index, &changes[*index]);
            // A replaced cluster may have dropped sites that members still name.
            for actor_id in self.members.get(id).into_iter().flatten() {
                let actor = &self.actors[actor_id];
                if let Some(site) = &actor.site_id {
                    if !self.sites.contains_key(site) {
                        return Err(Error::precondition(
                            format!("{at}.sites"),
                            format!("site '{site}' is removed but actor '{actor_id}' is still at it"),
                        ));
                    }
                }
            }
            let _ = cluster;
        }
        // A replaced cluster may also have dropped sites that cluster links name.
        if !checks.clusters.is_empty() || !checks.cluster_links.is_empty() || !checks.deleted_clusters.is_empty() {
            for (key, _) in self.cluster_links.iter() {
                for (field, end) in [("source", &key.source), ("target", &key.target)] {
                    if !self.is_cluster_or_site(end) {
                        let culprit = checks
                            .cluster_links
                            .iter()
                            .find(|(_, k)| k == key)
                            .map(|(i, _)| format!("{}.{field}", item(*i, &changes[*i])))
                            .or_else(|| {
                                checks
                                    .deleted_clusters
                                    .first()
                                    .map(|(i, _)| format!("{}.id", item(*i, &changes[*i])))
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
        }
        for (index, id) in &checks.deleted_actors {
            if self.actors.contains_key(id) {
                continue; // re-created later in the batch
            }
            if let Some(links) = self.incident.get(id) {
                return Err(Error::precondition(
                    format!("{}.cascade", item(*index, &changes[*index])),
                    format!(
                        "actor '{id}' still has {} links; delete them first or set cascade",
                        links.len()
                    ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActorKind, Channel, LinkKind, SegmentSet, Site, Validity};

    fn cluster(id: &str, sites: &[&str]) -> Change {
        Change::UpsertCluster(Cluster {
            id: id.into(),
            name: id.to_uppercase(),
            region: "Shanghai".into(),
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
        Change::UpsertActor(Actor {
            id: id.into(),
            name: id.into(),
            kind: ActorKind::Firm,
            industry: "C2930".into(),
            segments: SegmentSet::default(),
            cluster_ids: clusters.iter().map(|c| Id::from(*c)).collect(),
            site_id: None,
            country: None,
            employees: None,
            revenue: None,
            validity: Validity::default(),
        })
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

    fn apply(network: &mut Network, changes: Vec<Change>) -> Result<BatchOutcome> {
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

    #[test]
    fn a_link_may_precede_the_actors_it_joins_in_one_batch() {
        let mut network = Network::default();
        let outcome = apply(&mut network, vec![supply("a", "b"), actor("a", &[]), actor("b", &[])]).unwrap();
        assert_eq!(outcome.counts.links_upserted, 1);
        assert_eq!(network.incident[&Id::from("a")].len(), 1);
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
        assert_eq!(outcome.counts.links_deleted, 1);
        assert!(network.links.is_empty());
        assert!(!network.incident.contains_key(&Id::from("b")));
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
}
