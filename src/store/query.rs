//! Reads over a snapshot: filtered listings that resume after a cursor, and
//! neighbourhoods. Listings walk the ordered maps from the cursor, so a page
//! costs its size (plus the rows its filter skips), not the network's size.

use std::{
    collections::{BTreeMap, VecDeque},
    ops::Bound,
    sync::Arc,
};

use crate::model::{
    Actor, ActorKind, Channel, Cluster, ClusterLink, ClusterLinkKey, Id, Link, LinkKey, LinkKind, Segment,
};

use super::Network;

/// One page of rows and whether more follow the last one.
pub struct Page<T> {
    pub rows: Vec<Arc<T>>,
    pub more: bool,
}

fn take_page<'a, K: 'a, T: 'a>(
    rows: impl Iterator<Item = (&'a K, &'a Arc<T>)>,
    limit: usize,
    keep: impl Fn(&T) -> bool,
) -> Page<T> {
    let mut page = Page {
        rows: Vec::new(),
        more: false,
    };
    for (_, row) in rows {
        if !keep(row) {
            continue;
        }
        if page.rows.len() == limit {
            page.more = true;
            break;
        }
        page.rows.push(row.clone());
    }
    page
}

fn after<K: Ord + Clone>(cursor: Option<&K>) -> (Bound<K>, Bound<K>) {
    match cursor {
        Some(key) => (Bound::Excluded(key.clone()), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    }
}

pub fn clusters(network: &Network, cursor: Option<&Id>, limit: usize) -> Page<Cluster> {
    take_page(network.clusters.range(after(cursor)), limit, |_| true)
}

#[derive(Clone, Debug, Default)]
pub struct ActorFilter {
    pub cluster: Option<Id>,
    pub kind: Option<ActorKind>,
    pub segment: Option<Segment>,
}

pub fn actors(network: &Network, filter: &ActorFilter, cursor: Option<&Id>, limit: usize) -> Page<Actor> {
    let keep = |actor: &Actor| {
        filter.kind.is_none_or(|kind| actor.kind == kind)
            && filter.segment.is_none_or(|segment| actor.segments.contains(segment))
    };
    match &filter.cluster {
        // Walk the cluster's member index rather than every actor.
        Some(cluster) => {
            let Some(members) = network.members.get(cluster) else {
                return Page {
                    rows: Vec::new(),
                    more: false,
                };
            };
            let rows = members
                .range(after(cursor))
                .filter_map(|id| network.actors.get_key_value(id));
            take_page(rows, limit, keep)
        }
        None => take_page(network.actors.range(after(cursor)), limit, keep),
    }
}

#[derive(Clone, Debug, Default)]
pub struct LinkFilter {
    pub actor: Option<Id>,
    pub kind: Option<LinkKind>,
    pub channel: Option<Channel>,
}

pub fn links(network: &Network, filter: &LinkFilter, cursor: Option<&LinkKey>, limit: usize) -> Page<Link> {
    let keep = |link: &Link| {
        filter.kind.is_none_or(|kind| link.kind == kind) && filter.channel.is_none_or(|channel| link.channel == channel)
    };
    match &filter.actor {
        Some(actor) => {
            let Some(incident) = network.incident.get(actor) else {
                return Page {
                    rows: Vec::new(),
                    more: false,
                };
            };
            let rows = incident
                .range(after(cursor))
                .filter_map(|key| network.links.get_key_value(key));
            take_page(rows, limit, keep)
        }
        None => take_page(network.links.range(after(cursor)), limit, keep),
    }
}

pub fn cluster_links(
    network: &Network,
    endpoint: Option<&Id>,
    cursor: Option<&ClusterLinkKey>,
    limit: usize,
) -> Page<ClusterLink> {
    take_page(network.cluster_links.range(after(cursor)), limit, |link| {
        endpoint.is_none_or(|end| link.source == *end || link.target == *end)
    })
}

/// The actors within `depth` hops of a centre and the links among them.
pub struct Neighborhood {
    /// The centre first, then by hop distance and id, with each actor's hops.
    pub actors: Vec<(Arc<Actor>, u32)>,
    pub links: Vec<Arc<Link>>,
    /// True when `max_actors` cut the walk short.
    pub truncated: bool,
}

/// Breadth-first walk from `centre` over links of `kinds` (all when empty),
/// following links in both directions. Returns `None` if the centre does not
/// exist.
pub fn neighborhood(
    network: &Network,
    centre: &Id,
    depth: u32,
    kinds: &[LinkKind],
    max_actors: usize,
) -> Option<Neighborhood> {
    let centre_actor = network.actors.get(centre)?.clone();
    let follows = |kind: LinkKind| kinds.is_empty() || kinds.contains(&kind);
    // Hop distance by id; BTreeMap so ties at one distance come out in id order.
    let mut hops: BTreeMap<Id, u32> = BTreeMap::from([(centre.clone(), 0)]);
    let mut frontier = VecDeque::from([centre.clone()]);
    let mut truncated = false;
    'walk: while let Some(id) = frontier.pop_front() {
        let distance = hops[&id];
        if distance == depth {
            continue;
        }
        for key in network.incident.get(&id).into_iter().flatten() {
            if !follows(key.kind) {
                continue;
            }
            let other = if key.source == id { &key.target } else { &key.source };
            if hops.contains_key(other) {
                continue;
            }
            if hops.len() == max_actors {
                truncated = true;
                break 'walk;
            }
            hops.insert(other.clone(), distance + 1);
            frontier.push_back(other.clone());
        }
    }
    let mut actors: Vec<(Arc<Actor>, u32)> = hops
        .iter()
        .filter(|(id, _)| *id != centre)
        .filter_map(|(id, distance)| network.actors.get(id).map(|a| (a.clone(), *distance)))
        .collect();
    actors.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
    actors.insert(0, (centre_actor, 0));
    let mut links: Vec<Arc<Link>> = Vec::new();
    for id in hops.keys() {
        for key in network.incident.get(id).into_iter().flatten() {
            // Each link is seen from both ends; keep it once, from its source.
            if key.source == *id && follows(key.kind) && hops.contains_key(&key.target) {
                if let Some(link) = network.links.get(key) {
                    links.push(link.clone());
                }
            }
        }
    }
    Some(Neighborhood {
        actors,
        links,
        truncated,
    })
}
