//! Generic graph algorithms on an [`AnalysisGraph`](crate::graph::AnalysisGraph):
//! they know nothing of clusters, actors or segments, only nodes, arcs and
//! weights. Each takes a graph, a config and a [`Control`](crate::analysis::Control),
//! and checks the control between units of work.

pub mod centrality;
pub mod community;
pub mod components;
pub mod rank_update;
