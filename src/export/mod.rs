//! Exporting a network for the tools analysts use: what a filter selects on
//! one layer, with every attribute ([`select`]), optionally analysis results
//! per node ([`node_results`]), flattened into one [`table::Table`] of nodes
//! and edges that each format writer ([`formats`]) renders: GraphML, GEXF,
//! DOT, NetworkX's node-link JSON, and the CSV directory of `import`.
//!
//! The server selects and computes; the client writes the format, so the
//! wire carries typed entities and any client can write its own format.

pub mod formats;
pub mod table;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::Arc,
};

use crate::{
    analysis::{
        algo::{
            centrality::{pagerank, PageRankConfig},
            community::{louvain, LouvainConfig},
        },
        relatedness::{relatedness, MatrixConfig},
        stages::{
            stage::{assess, Stage},
            stage_config::StageConfig,
            StageContext,
        },
        Cancelled, Control,
    },
    graph::{inter_cluster, AnalysisGraph, GraphFilter, GraphSpec, InterClusterEdge, Layer},
    model::{Actor, ActorProfile, Change, Cluster, ClusterLink, Id, Link},
    network::Network,
};

/// What an export holds. On the FIRM layer: actors and the links between
/// them, with the clusters, profiles and cluster links they refer to. On the
/// CLUSTER and SITE layers: clusters (with their sites) and the aggregated
/// edges between clusters or sites.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    pub clusters: Vec<Arc<Cluster>>,
    pub actors: Vec<Arc<Actor>>,
    pub profiles: Vec<ActorProfile>,
    pub links: Vec<Link>,
    pub cluster_links: Vec<ClusterLink>,
    pub edges: Vec<InterClusterEdge>,
    /// Analysis results by node id (actor, cluster or site).
    pub results: BTreeMap<Id, NodeResults>,
}

/// An analysis result an export can carry per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResultKind {
    PageRank,
    Community,
    Stage,
    /// The ECI and COI of the node's cluster (docs/relatedness.md).
    Complexity,
}

/// The results of one node; those not asked for (or undefined) are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeResults {
    pub pagerank: Option<f64>,
    pub community: Option<u32>,
    pub stage: Option<Stage>,
    pub eci: Option<f64>,
    pub coi: Option<f64>,
}

/// Links between two checks of the control.
const LINKS_PER_CHECK: usize = 1 << 16;

/// What `filter` selects on `layer`, in id order (so that two exports of
/// the same network are identical).
pub fn select(
    network: &Network,
    filter: &GraphFilter,
    layer: Layer,
    control: &Control,
) -> Result<Selection, Cancelled> {
    let wanted = filter.wants_cluster();
    if layer != Layer::Firm {
        return Ok(Selection {
            clusters: network.clusters.values().filter(|c| wanted(&c.id)).cloned().collect(),
            edges: inter_cluster(network, filter, layer).edges,
            ..Selection::default()
        });
    }
    // The actors the firm graph of the same filter has as nodes, marked by
    // index as well, so each link's ends are tested without hashing ids.
    let keeps = |a: &Actor| filter.keeps_actor(a) && (filter.clusters.is_empty() || a.cluster_ids.iter().any(&wanted));
    let actors: Vec<Arc<Actor>> = network.actors.values().filter(|a| keeps(a)).cloned().collect();
    let kept: Vec<bool> = network
        .actor_at
        .iter()
        .map(|a| a.as_deref().is_some_and(keeps))
        .collect();
    let is_kept = |ix: u32| kept.get(ix as usize).copied().unwrap_or(false);
    let mut links = Vec::new();
    for (done, (key, data)) in network.links.iter().enumerate() {
        if done % LINKS_PER_CHECK == 0 {
            control.check()?;
            control.progress("select", done as u64, network.links.len() as u64);
        }
        if is_kept(key.source) && is_kept(key.target) && filter.keeps_link(key.kind, data) {
            links.push(network.link_from(key, data));
        }
    }
    // The store orders links by actor index, which depends on the order
    // actors arrived in; ids do not.
    links.sort_unstable_by(|a: &Link, b: &Link| (&a.source, &a.target, a.kind).cmp(&(&b.source, &b.target, b.kind)));
    control.check()?;
    // The named clusters and every cluster an exported actor belongs to, so
    // that the export can be imported on its own.
    let mut cluster_ids: BTreeSet<&Id> = network.clusters.keys().filter(|c| wanted(c)).collect();
    cluster_ids.extend(actors.iter().flat_map(|a| &a.cluster_ids));
    let clusters: Vec<Arc<Cluster>> = cluster_ids
        .into_iter()
        .filter_map(|id| network.clusters.get(id).cloned())
        .collect();
    let places: HashSet<&Id> = clusters
        .iter()
        .flat_map(|c| std::iter::once(&c.id).chain(c.sites.iter().map(|s| &s.id)))
        .collect();
    let cluster_links = network
        .cluster_links
        .values()
        .filter(|l| places.contains(&l.source) && places.contains(&l.target))
        .map(|l| (**l).clone())
        .collect();
    let profiles = actors
        .iter()
        .filter_map(|a| network.profiles.get(&a.id))
        .flat_map(|p| p.iter().cloned())
        .collect();
    Ok(Selection {
        actors,
        links,
        clusters,
        cluster_links,
        profiles,
        ..Selection::default()
    })
}

impl Selection {
    /// The selection as import changes, in the order the CSV format lists
    /// them (clusters, actors, profiles, links, cluster links).
    pub fn changes(&self) -> Vec<Change> {
        let clusters = self.clusters.iter().map(|c| Change::UpsertCluster((**c).clone()));
        let actors = self.actors.iter().map(|a| Change::UpsertActor((**a).clone()));
        let profiles = self.profiles.iter().cloned().map(Change::UpsertActorProfile);
        let links = self.links.iter().cloned().map(Change::UpsertLink);
        let cluster_links = self.cluster_links.iter().cloned().map(Change::UpsertClusterLink);
        clusters
            .chain(actors)
            .chain(profiles)
            .chain(links)
            .chain(cluster_links)
            .collect()
    }
}

/// Computes `kinds` for every node of `layer` under `filter`: PageRank on
/// the layer's graph (directed on FIRM, by weight), Louvain communities on
/// it followed both ways (seed 0), and each node's cluster's stage.
/// `graph_of` builds (or finds) the graph of a spec.
#[allow(clippy::too_many_arguments)]
pub fn node_results(
    network: &Network,
    filter: &GraphFilter,
    layer: Layer,
    selection: &Selection,
    kinds: &BTreeSet<ResultKind>,
    stage_config: &StageConfig,
    graph_of: &dyn Fn(&GraphSpec) -> Arc<AnalysisGraph>,
    control: &Control,
) -> Result<BTreeMap<Id, NodeResults>, Cancelled> {
    let mut results: BTreeMap<Id, NodeResults> = BTreeMap::new();
    let spec = |undirected: bool| GraphSpec {
        layer,
        filter: filter.clone(),
        undirected,
        weighted: true,
    };
    if kinds.contains(&ResultKind::PageRank) {
        control.progress("build_graph", 0, 1);
        let graph = graph_of(&spec(false));
        control.check()?;
        let scores = pagerank(&graph, &PageRankConfig::default(), control)?;
        for (id, score) in graph.ids.iter().zip(scores.values) {
            results.entry(id.clone()).or_default().pagerank = Some(score);
        }
    }
    if kinds.contains(&ResultKind::Community) {
        control.progress("build_graph", 0, 1);
        let graph = graph_of(&spec(true));
        control.check()?;
        let partition = louvain(&graph, &LouvainConfig::default(), control)?;
        for (id, community) in graph.ids.iter().zip(partition.community) {
            results.entry(id.clone()).or_default().community = Some(community);
        }
    }
    if kinds.contains(&ResultKind::Stage) {
        // Every cluster the export shows, including an actor's other clusters.
        let assessed = GraphFilter {
            clusters: selection.clusters.iter().map(|c| c.id.clone()).collect(),
            ..filter.clone()
        };
        let stages: BTreeMap<Id, Stage> = assess(StageContext {
            network,
            filter: &assessed,
            config: stage_config,
            control,
        })?
        .into_iter()
        .map(|a| (a.cluster, a.stage))
        .collect();
        each_node_of_a_cluster(selection, layer, |node, cluster| {
            if let Some(stage) = stages.get(cluster) {
                results.entry(node.clone()).or_default().stage = Some(*stage);
            }
        });
    }
    if kinds.contains(&ResultKind::Complexity) {
        // The matrix of the filter's clusters (all when it names none), as
        // Relatedness reads it by default.
        let matrix = match relatedness(network, filter, &MatrixConfig::default(), control) {
            Ok(matrix) => Some(matrix),
            Err(crate::error::Error::Cancelled) => return Err(Cancelled),
            // Too many industries: the attributes stay unset, as undefined.
            Err(error) => {
                tracing::warn!(%error, "no complexity figures for the export");
                None
            }
        };
        let defined = |x: f64| (!x.is_nan()).then_some(x);
        each_node_of_a_cluster(selection, layer, |node, cluster| {
            let Some(matrix) = &matrix else { return };
            if let Some(c) = matrix.cluster_index(cluster) {
                let entry = results.entry(node.clone()).or_default();
                entry.eci = defined(matrix.figures.eci[c]);
                entry.coi = defined(matrix.figures.coi[c]);
            }
        });
    }
    Ok(results)
}

/// Every node of the export with the cluster whose figures it takes: an
/// actor its first cluster's, a cluster its own, a site its cluster's.
fn each_node_of_a_cluster(selection: &Selection, layer: Layer, mut put: impl FnMut(&Id, &Id)) {
    match layer {
        Layer::Firm => {
            for actor in &selection.actors {
                if let Some(cluster) = actor.cluster_ids.first() {
                    put(&actor.id, cluster);
                }
            }
        }
        Layer::Cluster => selection.clusters.iter().for_each(|c| put(&c.id, &c.id)),
        Layer::Site => {
            for cluster in &selection.clusters {
                cluster.sites.iter().for_each(|s| put(&s.id, &cluster.id));
            }
        }
    }
}
