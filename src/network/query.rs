//! Reads over a snapshot: filtered listings that resume after a cursor, and
//! neighbourhoods. Listings walk the ordered maps from the cursor, so a page
//! costs its size (plus the rows its filter skips), not the network's size.

use std::{
    collections::{HashMap, VecDeque},
    ops::Bound,
    sync::Arc,
};

use crate::model::{Actor, ActorKind, Channel, Cluster, ClusterLink, ClusterLinkKey, Id, Link, LinkKind, Segment};

use super::{source_range, EdgeKey, Ix, LinkData, Network};

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
    /// Links with this actor at either end.
    pub actor: Option<Ix>,
    pub kind: Option<LinkKind>,
    pub channel: Option<Channel>,
}

/// Links in key order: by source index, target index and kind (indexes are
/// given in the order ids first appear, so roughly creation order). Returns
/// each link with its key, the cursor of the next page.
pub fn links(
    network: &Network,
    filter: &LinkFilter,
    cursor: Option<&EdgeKey>,
    limit: usize,
) -> (Vec<(EdgeKey, Link)>, bool) {
    let keep = |data: &LinkData, key: &EdgeKey| {
        filter.kind.is_none_or(|kind| key.kind == kind) && filter.channel.is_none_or(|channel| data.channel == channel)
    };
    let rows: Box<dyn Iterator<Item = (&EdgeKey, &LinkData)>> = match filter.actor {
        // An actor's links are its out-links, then its in-links; the cursor
        // says which of the two the previous page ended in.
        Some(actor) => {
            let starts = move |key: &&EdgeKey| key.source == actor;
            let from = |cursor: Option<EdgeKey>| match cursor {
                Some(key) => (Bound::Excluded(key), Bound::Unbounded),
                None => source_range(actor),
            };
            let in_cursor = cursor.filter(|key| key.source != actor).map(EdgeKey::swapped);
            let outs: Box<dyn Iterator<Item = EdgeKey>> = if in_cursor.is_some() {
                Box::new(std::iter::empty())
            } else {
                Box::new(
                    network
                        .links
                        .range(from(cursor.copied()))
                        .map(|(key, _)| key)
                        .take_while(starts)
                        .copied(),
                )
            };
            let ins = network
                .reverse
                .range(from(in_cursor))
                .take_while(starts)
                .map(EdgeKey::swapped);
            Box::new(outs.chain(ins).filter_map(|key| network.links.get_key_value(&key)))
        }
        None => Box::new(network.links.range(after(cursor))),
    };
    let mut page = Vec::new();
    for (key, data) in rows {
        if !keep(data, key) {
            continue;
        }
        if page.len() == limit {
            return (page, true);
        }
        page.push((*key, network.link_from(key, data)));
    }
    (page, false)
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
    pub links: Vec<Link>,
    /// True when `max_actors` cut the walk short.
    pub truncated: bool,
}

/// Breadth-first walk from `centre` over links of `kinds` (all when empty),
/// following links in both directions. Returns `None` if the centre does not
/// exist.
pub fn neighborhood(
    network: &Network,
    centre: &str,
    depth: u32,
    kinds: &[LinkKind],
    max_actors: usize,
) -> Option<Neighborhood> {
    let centre = network.ix_of(centre)?;
    let follows = |kind: LinkKind| kinds.is_empty() || kinds.contains(&kind);
    let mut hops: HashMap<Ix, u32> = HashMap::from([(centre, 0)]);
    let mut frontier = VecDeque::from([centre]);
    let mut truncated = false;
    'walk: while let Some(ix) = frontier.pop_front() {
        let distance = hops[&ix];
        if distance == depth {
            continue;
        }
        for key in network.incident(ix) {
            if !follows(key.kind) {
                continue;
            }
            let other = if key.source == ix { key.target } else { key.source };
            if hops.contains_key(&other) {
                continue;
            }
            if hops.len() == max_actors {
                truncated = true;
                break 'walk;
            }
            hops.insert(other, distance + 1);
            frontier.push_back(other);
        }
    }
    let mut actors: Vec<(Arc<Actor>, u32)> = hops
        .iter()
        .filter_map(|(ix, distance)| network.actor(*ix).map(|a| (a.clone(), *distance)))
        .collect();
    // The centre first (distance 0), then by distance and id.
    actors.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
    let mut links: Vec<Link> = Vec::new();
    for ix in hops.keys() {
        for key in network.out_links(*ix) {
            if follows(key.kind) && hops.contains_key(&key.target) {
                if let Some(link) = network.link(&key) {
                    links.push(link);
                }
            }
        }
    }
    links.sort_by(|a, b| (&a.source, &a.target, a.kind).cmp(&(&b.source, &b.target, b.kind)));
    Some(Neighborhood {
        actors,
        links,
        truncated,
    })
}
