//! Analysis graphs: compact, immutable projections of a network snapshot, built
//! for one analysis from a layer and a filter.
//!
//! * The FIRM layer has one node per actor and one edge per pair of actors that
//!   some selected link joins. Links of several kinds between the same pair
//!   become one edge whose weight is the sum of theirs (or 1 when unweighted).
//! * The CLUSTER (or SITE) layer has one node per cluster (or site). Firm links
//!   whose ends lie in different clusters are aggregated into edges between
//!   them, and the explicit cluster links are added (see `inter_cluster`).
//!
//! A directed graph follows SUPPLY, INVESTMENT and OWNERSHIP from source to
//! target and the undirected kinds both ways; an undirected graph follows
//! every link both ways. Adjacency is held in compressed sparse rows
//! ([`Rows`]), out-arcs and in-arcs both, so analyses walk plain slices.
//!
//! A FIRM graph can also be patched from the graph of an earlier revision
//! and the batches since ([`AnalysisGraph::patched`]): the rows of the nodes
//! they touched are made again and the rest are copied, so the first
//! analysis after a small write does not project the whole network.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

pub mod cache;
mod patch;
mod rows;
pub mod stored;
pub mod warm;

pub use rows::Rows;

use serde::{Deserialize, Serialize};

use crate::{
    model::{Actor, Change, Channel, ClusterLinkKind, Date, Id, LinkKind},
    network::{EdgeKey, Ix, LinkData, Network},
};

/// Which network an analysis runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Layer {
    Firm,
    Cluster,
    Site,
}

/// Which part of the network an analysis sees. Empty lists mean "all".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GraphFilter {
    pub link_kinds: Vec<LinkKind>,
    pub channels: Vec<Channel>,
    /// Only actors in these clusters (FIRM layer), or only these clusters and
    /// their sites (CLUSTER and SITE layers).
    pub clusters: Vec<Id>,
    /// Only actors and links valid on this date.
    pub as_of: Option<Date>,
}

/// Named clusters past which a filter's cluster test uses a hash set.
const CLUSTER_SET_FROM: usize = 16;

impl GraphFilter {
    /// A test of whether the filter wants a cluster (every cluster when it
    /// names none). Built once per analysis: a filter may name thousands of
    /// clusters (an alert round over a bulk import), and searching the list
    /// for every cluster made such a round quadratic.
    pub fn wants_cluster(&self) -> impl Fn(&Id) -> bool + '_ {
        let set: Option<std::collections::HashSet<&Id>> =
            (self.clusters.len() >= CLUSTER_SET_FROM).then(|| self.clusters.iter().collect());
        move |cluster: &Id| match &set {
            Some(set) => set.contains(cluster),
            None => self.clusters.is_empty() || self.clusters.contains(cluster),
        }
    }

    /// The same filter narrowed to one cluster. Copies all but the cluster
    /// list: per-cluster work under a filter naming thousands of clusters
    /// must not copy the thousands for each.
    pub fn for_cluster(&self, cluster: &Id) -> GraphFilter {
        GraphFilter {
            link_kinds: self.link_kinds.clone(),
            channels: self.channels.clone(),
            clusters: vec![cluster.clone()],
            as_of: self.as_of,
        }
    }

    /// Whether the filter keeps a link: its kind, its channel, and its
    /// validity at `as_of`.
    pub fn keeps_link(&self, kind: LinkKind, data: &LinkData) -> bool {
        (self.link_kinds.is_empty() || self.link_kinds.contains(&kind))
            && (self.channels.is_empty() || self.channels.contains(&data.channel))
            && self.as_of.is_none_or(|d| data.validity.contains(d))
    }

    /// Whether the filter keeps an actor: valid at `as_of`.
    pub fn keeps_actor(&self, actor: &Actor) -> bool {
        self.as_of.is_none_or(|d| actor.validity.contains(d))
    }

    /// The links the filter keeps whose two ends it keeps, with both actors.
    pub fn links<'n>(
        &'n self,
        network: &'n Network,
    ) -> impl Iterator<Item = (&'n EdgeKey, &'n LinkData, &'n Arc<Actor>, &'n Arc<Actor>)> + 'n {
        network.links.iter().filter_map(move |(key, data)| {
            if !self.keeps_link(key.kind, data) {
                return None;
            }
            Some((
                key,
                data,
                self.actor(network, key.source)?,
                self.actor(network, key.target)?,
            ))
        })
    }

    /// The firm network the filter leaves: its actors and its links (both
    /// ends kept). Counted only when the filter cuts anything.
    pub fn firm_network_size(&self, network: &Network) -> (usize, usize) {
        if self.link_kinds.is_empty() && self.channels.is_empty() && self.as_of.is_none() {
            return (network.actors.len(), network.links.len());
        }
        let actors = network.actors.values().filter(|a| self.keeps_actor(a)).count();
        (actors, self.links(network).count())
    }

    /// The actor at an index, if it exists and the filter keeps it.
    pub fn actor<'n>(&self, network: &'n Network, ix: Ix) -> Option<&'n Arc<Actor>> {
        network.actor(ix).filter(|a| self.keeps_actor(a))
    }
}

/// What an analysis graph is built from.
/// What a graph is made of; kept specs are remembered across restarts, so
/// it is serialisable.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GraphSpec {
    pub layer: Layer,
    pub filter: GraphFilter,
    /// Follow every link both ways (FIRM layer; the others are undirected).
    pub undirected: bool,
    pub weighted: bool,
}

impl GraphSpec {
    /// Projects the network into the graph this spec describes.
    pub fn build(&self, network: &Network) -> AnalysisGraph {
        match self.layer {
            Layer::Firm => firm_graph(
                network,
                &self.filter,
                EdgeMode {
                    undirected: self.undirected,
                    weighted: self.weighted,
                },
            ),
            layer => cluster_graph(network, &self.filter, layer, self.weighted),
        }
    }

    /// The graph on `network`: patched from `base` (this spec's graph of an
    /// earlier revision) when `batches` gives the changes since (at most as
    /// many as it is told) and they touch little of it; built otherwise.
    pub fn make(
        &self,
        network: &Network,
        base: cache::Base<'_>,
        batches: impl FnOnce(u64, usize) -> Option<Vec<Change>>,
    ) -> (AnalysisGraph, Made) {
        if let (Layer::Firm, Some((revision, graph))) = (self.layer, base) {
            let mode = EdgeMode {
                undirected: self.undirected,
                weighted: self.weighted,
            };
            let started = std::time::Instant::now();
            let most = patch::most_nodes(graph);
            let patched =
                batches(revision, most).and_then(|changes| graph.patched(network, &self.filter, mode, &changes));
            if let Some(patched) = patched {
                tracing::debug!(
                    from = revision,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "analysis graph patched"
                );
                return (patched, Made::Patched);
            }
        }
        (self.build(network), Made::Built)
    }
}

/// How a graph was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Made {
    /// Projected from the whole network.
    Built,
    /// From an earlier revision's graph and the batches since.
    Patched,
}

impl Made {
    pub fn as_str(self) -> &'static str {
        match self {
            Made::Built => "built",
            Made::Patched => "patched",
        }
    }
}

/// How edges are formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EdgeMode {
    /// Follow every link both ways.
    pub undirected: bool,
    /// Sum link weights; otherwise every edge weighs 1.
    pub weighted: bool,
}

/// A graph ready for analysis: nodes 0..n with ids and names, and adjacency
/// both ways. For an undirected graph `incoming` is `outgoing`.
pub struct AnalysisGraph {
    /// Shared with the graphs patched from this one while they stay the same.
    pub ids: Arc<Vec<Id>>,
    pub names: Arc<Vec<String>>,
    pub directed: bool,
    outgoing: Arc<Rows>,
    incoming: Arc<Rows>,
    /// FIRM layer: each node's actor index, ascending (a patch looks nodes
    /// up in it); empty on the other layers.
    actors: Arc<Vec<Ix>>,
}

impl AnalysisGraph {
    /// Builds a graph from an edge list over nodes `0..ids.len()`. Parallel
    /// edges are merged, their weights summed when `weighted` (otherwise every
    /// edge weighs 1); self-loops are dropped. When `directed` is false each
    /// edge is followed both ways.
    pub fn from_edges(
        ids: Vec<Id>,
        names: Vec<String>,
        edges: &[(u32, u32, f64)],
        directed: bool,
        weighted: bool,
    ) -> AnalysisGraph {
        AnalysisGraph::from_edge_list(ids, names, edges.to_vec(), directed, weighted)
    }

    /// `from_edges` taking the list: a directed graph builds from it in
    /// place, without a copy of every arc (160 MB at 10M links).
    fn from_edge_list(
        ids: Vec<Id>,
        names: Vec<String>,
        mut edges: Vec<(u32, u32, f64)>,
        directed: bool,
        weighted: bool,
    ) -> AnalysisGraph {
        let n = ids.len();
        let forward = if directed {
            edges.retain(|&(u, v, _)| u != v);
            edges
        } else {
            // Each edge's two arcs side by side, as `patch::firm_rows`
            // expects them.
            let mut forward = Vec::with_capacity(edges.len() * 2);
            for (u, v, w) in edges {
                if u != v {
                    forward.push((u, v, w));
                    forward.push((v, u, w));
                }
            }
            forward
        };
        let (outgoing, incoming) = if directed {
            // Both directions at once, each from the arcs as given: a row
            // sums parallel arcs in the order they came, so an arc's weight
            // is the same sum both ways.
            let backward: Vec<(u32, u32, f64)> = forward.iter().map(|&(u, v, w)| (v, u, w)).collect();
            let (outgoing, incoming) = rayon::join(
                || Rows::build(n, &forward, weighted),
                || Rows::build(n, &backward, weighted),
            );
            (Arc::new(outgoing), Arc::new(incoming))
        } else {
            let rows = Arc::new(Rows::build(n, &forward, weighted));
            (rows.clone(), rows)
        };
        AnalysisGraph {
            ids: Arc::new(ids),
            names: Arc::new(names),
            directed,
            outgoing,
            incoming,
            actors: Arc::default(),
        }
    }

    pub fn node_count(&self) -> usize {
        self.ids.len()
    }

    /// Edges as the analysis sees them: for an undirected graph each pair once.
    pub fn edge_count(&self) -> usize {
        let arcs = self.outgoing.arc_count();
        if self.directed {
            arcs
        } else {
            arcs / 2
        }
    }

    pub fn out_neighbors(&self, v: usize) -> &[u32] {
        self.outgoing.targets(v)
    }

    pub fn out_weights(&self, v: usize) -> &[f64] {
        self.outgoing.weights(v)
    }

    /// The number of v's first out-arc; its i-th out-arc is `out_arc(v) + i`.
    /// `out_arc(node_count())` is the number of arcs.
    pub fn out_arc(&self, v: usize) -> usize {
        self.outgoing.first_arc(v)
    }

    /// The number of the arc u → v, if there is one (out-neighbours are sorted).
    pub fn arc(&self, u: usize, v: usize) -> Option<usize> {
        let position = self.out_neighbors(u).binary_search(&(v as u32)).ok()?;
        Some(self.out_arc(u) + position)
    }

    pub fn in_neighbors(&self, v: usize) -> &[u32] {
        self.incoming.targets(v)
    }

    pub fn in_weights(&self, v: usize) -> &[f64] {
        self.incoming.weights(v)
    }

    /// Whether this graph's first nodes are `older`'s, in the same order
    /// (a patch keeps them and adds new ones after the last), so a result
    /// of `older` can be carried over node by node.
    pub fn extends(&self, older: &AnalysisGraph) -> bool {
        if self.directed != older.directed || self.node_count() < older.node_count() {
            return false;
        }
        let n = older.node_count();
        if !self.actors.is_empty() || !older.actors.is_empty() {
            return Arc::ptr_eq(&self.actors, &older.actors)
                || (self.actors.len() >= older.actors.len() && self.actors[..older.actors.len()] == older.actors[..]);
        }
        Arc::ptr_eq(&self.ids, &older.ids) || self.ids[..n] == older.ids[..]
    }

    /// The nodes whose out-arcs and whose in-arcs differ from `older`'s
    /// (which this graph [`extends`](Self::extends)), new nodes included;
    /// None when more than `most` of either changed.
    pub fn changed_since(&self, older: &AnalysisGraph, most: usize) -> Option<(Vec<u32>, Vec<u32>)> {
        let out = self.outgoing.changed_since(&older.outgoing, most)?;
        let into = if self.directed {
            self.incoming.changed_since(&older.incoming, most)?
        } else {
            out.clone()
        };
        Some((out, into))
    }

    /// The node of an id, by linear search: for tests and small lookups.
    pub fn node_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|i| &**i == id)
    }
}

/// The FIRM layer: actors and the selected links between them.
pub fn firm_graph(network: &Network, filter: &GraphFilter, mode: EdgeMode) -> AnalysisGraph {
    let nodes = FirmNodes::of(network, filter);
    let node = |ix: Ix| nodes.node(ix);
    let mut edges = Vec::new();
    let mut undirected_pairs = Vec::new();
    for (key, data) in network.links.iter() {
        if !filter.keeps_link(key.kind, data) {
            continue;
        }
        let (Some(u), Some(v)) = (node(key.source), node(key.target)) else {
            continue;
        };
        let w = if mode.weighted { data.weight } else { 1.0 };
        if mode.undirected || !key.kind.is_directed() {
            undirected_pairs.push((u, v, w));
        } else {
            edges.push((u, v, w));
        }
    }
    // `patch::firm_rows` makes a node's rows from its links in the order
    // this loop and `from_edges` meet them; the two must stay in step.
    let graph = if mode.undirected {
        edges.append(&mut undirected_pairs);
        AnalysisGraph::from_edge_list(nodes.ids, nodes.names, edges, false, mode.weighted)
    } else {
        for (u, v, w) in undirected_pairs {
            edges.push((u, v, w));
            edges.push((v, u, w));
        }
        AnalysisGraph::from_edge_list(nodes.ids, nodes.names, edges, true, mode.weighted)
    };
    AnalysisGraph {
        actors: Arc::new(nodes.actors),
        ..graph
    }
}

/// The FIRM layer's nodes: the actors a filter keeps, in index order.
struct FirmNodes {
    ids: Vec<Id>,
    names: Vec<String>,
    /// Each node's actor index, ascending.
    actors: Vec<Ix>,
    /// Actor index to node, `NONE` for an actor left out: a plain array, as
    /// every link looks up both its ends.
    node_of: Vec<u32>,
}

const NONE: u32 = u32::MAX;

/// Whether an actor is a node of the FIRM layer under a filter.
struct KeepsActor<'f> {
    filter: &'f GraphFilter,
    clusters: BTreeSet<&'f Id>,
}

impl<'f> KeepsActor<'f> {
    fn new(filter: &'f GraphFilter) -> Self {
        KeepsActor {
            filter,
            clusters: filter.clusters.iter().collect(),
        }
    }

    fn keeps(&self, actor: &Actor) -> bool {
        self.filter.keeps_actor(actor)
            && (self.clusters.is_empty() || actor.cluster_ids.iter().any(|c| self.clusters.contains(c)))
    }
}

impl FirmNodes {
    fn of(network: &Network, filter: &GraphFilter) -> FirmNodes {
        let keeps = KeepsActor::new(filter);
        let mut nodes = FirmNodes {
            ids: Vec::new(),
            names: Vec::new(),
            actors: Vec::new(),
            node_of: vec![NONE; network.actor_at.len()],
        };
        for (ix, actor) in network.actor_at.iter().enumerate() {
            let Some(actor) = actor.as_ref().filter(|a| keeps.keeps(a)) else {
                continue;
            };
            nodes.node_of[ix] = nodes.ids.len() as u32;
            nodes.ids.push(actor.id.clone());
            nodes.names.push(actor.name.clone());
            nodes.actors.push(ix as Ix);
        }
        nodes
    }

    fn node(&self, ix: Ix) -> Option<u32> {
        self.node_of.get(ix as usize).copied().filter(|v| *v != NONE)
    }
}

/// One aggregated tie between two clusters (or sites) of the inter-cluster network.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InterClusterEdge {
    pub source: Id,
    pub target: Id,
    /// Firm links crossing between the two, by kind and channel: (count, summed weight).
    pub firm_links: BTreeMap<(LinkKind, Channel), (u64, f64)>,
    /// Explicit cluster links between the two.
    pub cluster_links: Vec<(ClusterLinkKind, Channel, f64)>,
}

impl InterClusterEdge {
    pub fn total_weight(&self) -> f64 {
        self.firm_links.values().map(|(_, w)| w).sum::<f64>()
            + self.cluster_links.iter().map(|(_, _, w)| w).sum::<f64>()
    }

    pub fn firm_link_count(&self) -> u64 {
        self.firm_links.values().map(|(c, _)| c).sum()
    }
}

/// A node of the inter-cluster network.
#[derive(Clone, Debug, PartialEq)]
pub struct InterClusterNode {
    pub id: Id,
    pub name: String,
    /// The cluster a site belongs to (the cluster itself on the CLUSTER layer).
    pub cluster: Id,
    /// Member actors placed here (valid at `as_of`).
    pub actors: u64,
    /// Latitude and longitude: a site's own, a cluster's the mean of its
    /// sites'; `None` for a cluster without sites.
    pub at: Option<(f64, f64)>,
}

/// The inter-cluster network: nodes, and undirected aggregated edges keyed by
/// their ordered ends. A firm link between actors of several clusters counts
/// once for every pair of distinct clusters (sites) it joins.
pub struct InterClusterNetwork {
    pub nodes: Vec<InterClusterNode>,
    pub edges: Vec<InterClusterEdge>,
}

/// Builds the CLUSTER or SITE layer. On the SITE layer an actor's place is its
/// site; actors without a site do not take part.
pub fn inter_cluster(network: &Network, filter: &GraphFilter, layer: Layer) -> InterClusterNetwork {
    let wanted = filter.wants_cluster();
    let mut nodes = Vec::new();
    let mut node_ids: BTreeSet<Id> = BTreeSet::new();
    for cluster in network.clusters.values().filter(|c| wanted(&c.id)) {
        if layer == Layer::Site {
            for site in &cluster.sites {
                nodes.push(InterClusterNode {
                    id: site.id.clone(),
                    name: site.name.clone(),
                    cluster: cluster.id.clone(),
                    actors: 0,
                    at: Some((site.lat, site.lon)),
                });
                node_ids.insert(site.id.clone());
            }
        } else {
            nodes.push(InterClusterNode {
                id: cluster.id.clone(),
                name: cluster.name.clone(),
                cluster: cluster.id.clone(),
                actors: 0,
                at: cluster.centre(),
            });
            node_ids.insert(cluster.id.clone());
        }
    }
    // Where each actor is: its clusters, or its site.
    let places = |ix: u32| -> Vec<Id> {
        let Some(actor) = filter.actor(network, ix) else {
            return Vec::new();
        };
        match layer {
            Layer::Site => actor
                .site_id
                .iter()
                .filter(|s| node_ids.contains(*s))
                .cloned()
                .collect(),
            _ => actor
                .cluster_ids
                .iter()
                .filter(|c| node_ids.contains(*c))
                .cloned()
                .collect(),
        }
    };
    let position: HashMap<Id, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.clone(), i)).collect();
    for ix in 0..network.actor_at.len() as u32 {
        for place in places(ix) {
            nodes[position[&place]].actors += 1;
        }
    }
    let mut edges: BTreeMap<(Id, Id), InterClusterEdge> = BTreeMap::new();
    fn edge<'e>(edges: &'e mut BTreeMap<(Id, Id), InterClusterEdge>, a: &Id, b: &Id) -> &'e mut InterClusterEdge {
        let (s, t) = if a <= b {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        edges.entry((s.clone(), t.clone())).or_insert_with(|| InterClusterEdge {
            source: s,
            target: t,
            ..InterClusterEdge::default()
        })
    }
    for (key, data) in network.links.iter() {
        if !filter.keeps_link(key.kind, data) {
            continue;
        }
        let (from, to) = (places(key.source), places(key.target));
        let mut pairs = BTreeSet::new();
        for a in &from {
            for b in &to {
                if a != b {
                    pairs.insert(if a <= b { (a, b) } else { (b, a) });
                }
            }
        }
        for (a, b) in pairs {
            let entry = edge(&mut edges, a, b)
                .firm_links
                .entry((key.kind, data.channel))
                .or_default();
            entry.0 += 1;
            entry.1 += data.weight;
        }
    }
    // Explicit cluster links, placed on this layer: a site-to-site link joins
    // the two clusters on the CLUSTER layer (unless both sites are in one).
    let lift = |end: &Id| -> Option<Id> {
        if node_ids.contains(end) {
            return Some(end.clone());
        }
        match layer {
            Layer::Site => None,
            _ => network.sites.get(end).filter(|c| node_ids.contains(*c)).cloned(),
        }
    };
    for link in network.cluster_links.values() {
        if !filter.channels.is_empty() && !filter.channels.contains(&link.channel) {
            continue;
        }
        let (Some(a), Some(b)) = (lift(&link.source), lift(&link.target)) else {
            continue;
        };
        if a != b {
            edge(&mut edges, &a, &b)
                .cluster_links
                .push((link.kind, link.channel, link.weight));
        }
    }
    InterClusterNetwork {
        nodes,
        edges: edges.into_values().collect(),
    }
}

/// The CLUSTER or SITE layer as an (undirected) analysis graph: edge weight is
/// the summed weight of the crossing firm links and explicit links (1 per
/// edge when unweighted).
pub fn cluster_graph(network: &Network, filter: &GraphFilter, layer: Layer, weighted: bool) -> AnalysisGraph {
    let inter = inter_cluster(network, filter, layer);
    let position: HashMap<&Id, u32> = inter.nodes.iter().enumerate().map(|(i, n)| (&n.id, i as u32)).collect();
    let edges: Vec<(u32, u32, f64)> = inter
        .edges
        .iter()
        .map(|e| {
            let w = if weighted { e.total_weight() } else { 1.0 };
            (position[&e.source], position[&e.target], w)
        })
        .collect();
    AnalysisGraph::from_edges(
        inter.nodes.iter().map(|n| n.id.clone()).collect(),
        inter.nodes.iter().map(|n| n.name.clone()).collect(),
        &edges,
        false,
        weighted,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_arcs_weigh_the_same_sum_out_of_their_source_and_into_their_target() {
        // Weights whose sum depends on the order they are added in.
        let arcs = [
            (2, 0, 0.1),
            (0, 1, 1e16),
            (2, 0, 0.2),
            (0, 1, 1.0),
            (1, 2, 5.0),
            (2, 0, 0.3),
            (0, 1, -1e16),
            (0, 2, 4.0),
        ];
        let ids: Vec<Id> = ["a", "b", "c"].into_iter().map(Id::from).collect();
        let g = AnalysisGraph::from_edges(ids, vec![String::new(); 3], &arcs, true, true);
        for u in 0..3 {
            for (&v, &w) in g.out_neighbors(u).iter().zip(g.out_weights(u)) {
                let back = g
                    .in_neighbors(v as usize)
                    .iter()
                    .position(|&x| x as usize == u)
                    .unwrap();
                assert_eq!(g.in_weights(v as usize)[back].to_bits(), w.to_bits(), "{u} -> {v}");
            }
        }
        assert_eq!(g.out_weights(2), &[0.1 + 0.2 + 0.3]);
        assert_eq!(g.edge_count(), 4);
    }
}
