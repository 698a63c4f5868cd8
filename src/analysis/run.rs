//! Analysis jobs: a request in model terms (layer, filter, algorithm and its
//! parameters), run against a network snapshot into result rows and a
//! summary. The service layer only translates and streams.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    algo::{
        centrality::{self, BetweennessConfig, Direction, EigenvectorConfig, PageRankConfig},
        community::{self, LabelPropagationConfig, LouvainConfig, Partition},
        rank_update::Update,
    },
    kept_ranks::KeptRanks,
    rank_order, Control, Scores,
};
use crate::{
    error::{Error, Result},
    graph::{AnalysisGraph, GraphFilter, GraphSpec},
    model::Id,
    network::Network,
};

/// How a run went, for the summary: the size of the graph it ran on, and
/// how its iteration ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub nodes: usize,
    pub edges: usize,
    pub directed: bool,
    pub iterations: u32,
    pub converged: bool,
    pub elapsed: Duration,
}

impl RunSummary {
    /// A one-pass run on a graph of `nodes` and `edges`.
    pub fn one_pass(nodes: usize, edges: usize, directed: bool, started: Instant) -> RunSummary {
        RunSummary {
            nodes,
            edges,
            directed,
            iterations: 0,
            converged: true,
            elapsed: started.elapsed(),
        }
    }

    /// A one-pass run of a relation or stage analysis, which reads the firm
    /// network the filter leaves (a directed graph: links have a source
    /// and a target).
    pub fn firm_network(network: &Network, filter: &GraphFilter, started: Instant) -> RunSummary {
        let (actors, links) = filter.firm_network_size(network);
        RunSummary::one_pass(actors, links, true, started)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Measure {
    Degree { direction: Direction, normalized: bool },
    PageRank(PageRankConfig),
    Betweenness(BetweennessConfig),
    Closeness,
    Harmonic,
    Eigenvector(EigenvectorConfig),
    KCore,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CentralityJob {
    pub graph: GraphSpec,
    pub measure: Measure,
    /// PageRank jump weights by node id (the config's vector is filled from it).
    pub personalization: HashMap<Id, f64>,
    /// 0 for every node.
    pub top_k: usize,
    pub ascending: bool,
}

impl CentralityJob {
    /// What the measure does, as far as its memory goes.
    pub fn workload(&self) -> super::footprint::Workload {
        use super::footprint::Workload;
        match self.measure {
            Measure::Degree { .. } | Measure::KCore => Workload::Projection,
            Measure::PageRank(_) | Measure::Eigenvector(_) => Workload::Iterative,
            Measure::Betweenness(_) | Measure::Closeness | Measure::Harmonic => Workload::Sweeps,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RankedRow {
    pub node: Id,
    pub name: String,
    pub value: f64,
    pub rank: u32,
}

/// Builds a job's graph, reporting it as the first phase.
pub fn build_graph(network: &Network, spec: &GraphSpec, control: &Control) -> Result<AnalysisGraph> {
    control.progress("build_graph", 0, 1);
    let graph = spec.build(network);
    control.check()?;
    Ok(graph)
}

/// Runs a centrality job: builds its graph, scores every node, ranks them,
/// keeps the top k.
pub fn run_centrality(
    network: &Network,
    job: &CentralityJob,
    control: &Control,
) -> Result<(Vec<RankedRow>, RunSummary)> {
    let started = Instant::now();
    let graph = Arc::new(build_graph(network, &job.graph, control)?);
    let (rows, summary) = centrality_on(&graph, job, None, control)?;
    Ok((
        rows,
        RunSummary {
            elapsed: started.elapsed(),
            ..summary
        },
    ))
}

/// Ranks kept between revisions, and the revision of the graph asked about.
pub type Kept<'a> = Option<(&'a KeptRanks, u64)>;

/// Runs a centrality job on its graph, built already (or kept in a
/// [`crate::graph::cache::GraphCache`]); a PageRank with a uniform jump
/// is brought up to date from the ranks `kept` holds for the job's graph
/// when it can be.
pub fn centrality_on(
    graph: &Arc<AnalysisGraph>,
    job: &CentralityJob,
    kept: Kept<'_>,
    control: &Control,
) -> Result<(Vec<RankedRow>, RunSummary)> {
    let started = Instant::now();
    let weighted = job.graph.weighted;
    let scores: Scores = match &job.measure {
        Measure::Degree { direction, normalized } => centrality::degree(graph, *direction, weighted, *normalized),
        Measure::PageRank(config) => {
            let mut config = PageRankConfig {
                weighted,
                ..config.clone()
            };
            if !job.personalization.is_empty() {
                let mut jump = vec![0.0; graph.node_count()];
                for (v, id) in graph.ids.iter().enumerate() {
                    jump[v] = job.personalization.get(id).copied().unwrap_or(0.0);
                }
                if jump.iter().sum::<f64>() <= 0.0 {
                    return Err(Error::invalid(
                        "pagerank.personalization",
                        "gives no weight to any node of the analysed graph",
                    ));
                }
                config.personalization = Some(jump);
            }
            match kept.filter(|_| config.personalization.is_none()) {
                Some((ranks, revision)) => {
                    let (scores, how) = ranks.pagerank(&job.graph, revision, graph, &config, control)?;
                    if let Update::Frontier { changed, pushes } = how {
                        tracing::debug!(
                            revision,
                            changed,
                            pushes,
                            "PageRank brought up to date from the kept ranks"
                        );
                    }
                    scores
                }
                None => centrality::pagerank(graph, &config, control)?,
            }
        }
        Measure::Betweenness(config) => {
            let config = BetweennessConfig {
                weighted,
                ..config.clone()
            };
            centrality::betweenness(graph, &config, control)?
        }
        Measure::Closeness => centrality::closeness(graph, weighted, control)?,
        Measure::Harmonic => centrality::harmonic(graph, weighted, control)?,
        Measure::Eigenvector(config) => {
            let config = EigenvectorConfig {
                weighted,
                ..config.clone()
            };
            centrality::eigenvector(graph, &config, control)?
        }
        Measure::KCore => centrality::k_core(graph),
    };
    let order = rank_order(&scores.values, &graph.ids, !job.ascending, job.top_k);
    let rows = order
        .iter()
        .enumerate()
        .map(|(i, &v)| RankedRow {
            node: graph.ids[v].clone(),
            name: graph.names[v].clone(),
            value: scores.values[v],
            rank: i as u32 + 1,
        })
        .collect();
    let summary = RunSummary {
        nodes: graph.node_count(),
        edges: graph.edge_count(),
        directed: graph.directed,
        iterations: scores.iterations,
        converged: scores.converged,
        elapsed: started.elapsed(),
    };
    Ok((rows, summary))
}

#[derive(Clone, Debug, PartialEq)]
pub enum CommunityAlgorithm {
    Louvain(LouvainConfig),
    Leiden(LouvainConfig),
    LabelPropagation(LabelPropagationConfig),
    ConnectedComponents,
    StronglyConnectedComponents,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CommunityJob {
    pub graph: GraphSpec,
    pub algorithm: CommunityAlgorithm,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CommunityRow {
    pub node: Id,
    pub name: String,
    pub community: u32,
}

/// Runs a community job: builds its graph and partitions it; rows come by
/// community, then by node id.
pub fn run_communities(
    network: &Network,
    job: &CommunityJob,
    control: &Control,
) -> Result<(Vec<CommunityRow>, Partition, RunSummary)> {
    let started = Instant::now();
    let graph = build_graph(network, &job.graph, control)?;
    let (rows, partition, summary) = communities_on(&graph, job, control)?;
    Ok((
        rows,
        partition,
        RunSummary {
            elapsed: started.elapsed(),
            ..summary
        },
    ))
}

/// Runs a community job on its graph, built already.
pub fn communities_on(
    graph: &AnalysisGraph,
    job: &CommunityJob,
    control: &Control,
) -> Result<(Vec<CommunityRow>, Partition, RunSummary)> {
    let started = Instant::now();
    let partition = match &job.algorithm {
        CommunityAlgorithm::Louvain(config) => community::louvain(graph, config, control)?,
        CommunityAlgorithm::Leiden(config) => community::leiden(graph, config, control)?,
        CommunityAlgorithm::LabelPropagation(config) => community::label_propagation(graph, config, control)?,
        CommunityAlgorithm::ConnectedComponents => community::connected_components(graph),
        CommunityAlgorithm::StronglyConnectedComponents => community::strongly_connected_components(graph),
    };
    let mut order: Vec<usize> = (0..graph.node_count()).collect();
    order.sort_by(|&a, &b| {
        partition.community[a]
            .cmp(&partition.community[b])
            .then_with(|| graph.ids[a].cmp(&graph.ids[b]))
    });
    let rows = order
        .into_iter()
        .map(|v| CommunityRow {
            node: graph.ids[v].clone(),
            name: graph.names[v].clone(),
            community: partition.community[v],
        })
        .collect();
    let summary = RunSummary {
        nodes: graph.node_count(),
        edges: graph.edge_count(),
        directed: graph.directed,
        iterations: partition.iterations,
        converged: partition.converged,
        elapsed: started.elapsed(),
    };
    Ok((rows, partition, summary))
}
