//! How much memory an analysis will need, estimated before it runs, so the
//! server can refuse one that would not fit instead of aborting on an
//! allocation (as Neo4j GDS estimates a procedure's memory before running
//! it).
//!
//! An estimate is an upper bound from the whole store's size, not the
//! filtered graph's: the filter is applied while projecting, after the
//! decision. The figures per node and per edge follow the data structures:
//!
//! * projecting a graph (every graph analysis): the edge list and its
//!   reverse (16 B an edge each), the two CSR directions built side by side
//!   (each sorts its rows in a copy and merges into another, 32 B an arc,
//!   and keeps offsets 8 B a node, target 4 B and weight 8 B an arc), ids
//!   and names (about 70 B a node);
//! * iterative scores (PageRank, eigenvector): up to ten vectors of 8 B a
//!   node (PageRank's solution, its core's iterates) and PageRank's peeling
//!   (about 8 B a node);
//! * shortest-path sweeps (betweenness, closeness, harmonic, edge
//!   betweenness): per worker thread, distances, counts, dependencies, the
//!   queue and the stack (about 48 B a node) and predecessor lists (4 B an
//!   arc);
//! * community detection: the aggregated graphs of each level, at most the
//!   projection again, twice;
//! * domain relations and stages: per-cluster member sets and profiles
//!   (about 128 B an actor) and tie lists (48 B a link).
//!
//! Every total is multiplied by [`SAFETY`] for the allocator's slack.

use crate::network::Network;

/// Slack over the counted bytes.
const SAFETY: f64 = 1.5;

/// What an analysis does, as far as its memory goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Projects a graph and computes one value a node in one pass (degree,
    /// k-core, the inter-cluster aggregate).
    Projection,
    /// Projection plus a few score vectors (PageRank, eigenvector).
    Iterative,
    /// Projection plus a shortest-path sweep on every worker thread.
    Sweeps,
    /// Projection plus the aggregated graphs of community levels.
    Communities,
    /// Sweeps on the projection, plus tie lists (fusion links).
    EdgeSweeps,
    /// Member sets, profiles and ties of clusters (overlap, crossing,
    /// substitution, stages, core firms, upgrading).
    Relations,
    /// Relations plus a table of every actor's ties (SubstitutionGaps).
    TieTable,
    /// Dense cluster × industry matrices (relatedness): a dozen of them,
    /// and industry × industry ones, sized by the industry codes members
    /// hold now (at most that many at any level or date).
    Matrix,
}

/// An estimate, with the sizes it came from (for the refusal's message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    pub bytes: u64,
    pub nodes: u64,
    pub edges: u64,
}

/// The memory `workload` needs on `network` with `threads` worker threads.
pub fn estimate(workload: Workload, network: &Network, threads: usize) -> Footprint {
    let nodes = (network.actors.len() + network.clusters.len()) as u64;
    let edges = (network.links.len() + network.cluster_links.len()) as u64;
    let threads = threads.max(1) as u64;
    let projection = 100 * nodes + 120 * edges;
    let sweep = 48 * nodes + 4 * edges;
    let relations = 128 * nodes + 48 * edges;
    let counted = match workload {
        Workload::Projection => projection,
        Workload::Iterative => projection + 88 * nodes,
        Workload::Sweeps => projection + threads * sweep,
        Workload::Communities => 3 * projection,
        Workload::EdgeSweeps => projection + threads * sweep + 16 * edges + relations,
        Workload::Relations => relations,
        // Two ties a link (role, other, weight) and role norms per actor.
        Workload::TieTable => relations + 88 * nodes + 32 * edges,
        Workload::Matrix => {
            let industries = network
                .mixes
                .values()
                .flat_map(|mix| mix.industries.keys())
                .collect::<std::collections::HashSet<_>>()
                .len() as u64;
            let clusters = network.clusters.len() as u64;
            12 * 8 * clusters * industries + 4 * 8 * industries * industries + 64 * nodes
        }
    };
    Footprint {
        bytes: (counted as f64 * SAFETY) as u64,
        nodes,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{generate, SyntheticConfig};

    #[test]
    fn estimates_grow_with_the_network_and_with_the_work() {
        let small = crate::testing::network(generate(&SyntheticConfig {
            clusters: 5,
            actors: 200,
            links: 800,
            ..SyntheticConfig::default()
        }));
        let large = crate::testing::network(generate(&SyntheticConfig {
            clusters: 5,
            actors: 400,
            links: 1_600,
            ..SyntheticConfig::default()
        }));
        for workload in [
            Workload::Projection,
            Workload::Iterative,
            Workload::Sweeps,
            Workload::Communities,
            Workload::EdgeSweeps,
            Workload::Relations,
            Workload::Matrix,
        ] {
            assert!(estimate(workload, &large, 2).bytes > estimate(workload, &small, 2).bytes);
        }
        assert!(estimate(Workload::Sweeps, &large, 8).bytes > estimate(Workload::Sweeps, &large, 2).bytes);
        assert!(estimate(Workload::Iterative, &large, 2).bytes > estimate(Workload::Projection, &large, 2).bytes);
        let f = estimate(Workload::Projection, &large, 1);
        assert_eq!((f.nodes, f.edges), (405, large.links.len() as u64));
    }
}
