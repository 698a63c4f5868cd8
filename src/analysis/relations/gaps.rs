//! Substitution gaps: a cluster's single points of failure.
//!
//! In the supply network (SUPPLY links, supplier → customer), an actor v cuts
//! supply to every actor it dominates: every supply path from the network's
//! sources (actors with no supplier) to them passes through v, so without v
//! they lose all supply. Dominators come from petgraph's Cooper–Harvey–Kennedy
//! algorithm on the supply graph with a virtual root feeding every source.
//! v is also flagged when it is an articulation point of the undirected supply
//! network (its removal splits it). A gap is an actor that cuts supply (or is
//! an articulation point) and has no substitute scoring at least the
//! threshold.

use std::collections::HashMap;

use petgraph::{algo::dominators::simple_fast, graph::NodeIndex, Graph};

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::analysis::{
    relations::substitution::{best_substitute, substitute_scores, SubstituteConfig, TieTable},
    Cancelled, Control,
};
use crate::{
    graph::GraphFilter,
    model::{Id, LinkKind},
    network::{Ix, Network},
};

/// Candidates from which a [`TieTable`] pays for itself.
const TABLE_FROM_CANDIDATES: usize = 256;

#[derive(Clone, Debug, PartialEq)]
pub struct GapConfig {
    /// A substitute at or above this score closes the gap.
    pub min_substitute_score: f64,
    /// Lost actors listed per row.
    pub lost_limit: usize,
    pub substitutes: SubstituteConfig,
}

impl Default for GapConfig {
    fn default() -> Self {
        GapConfig {
            // Our threshold: above half the combined similarity, a candidate
            // does most of what the actor does.
            min_substitute_score: 0.5,
            lost_limit: 10,
            substitutes: SubstituteConfig {
                top_k: 1,
                ..SubstituteConfig::default()
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gap {
    pub actor: Id,
    pub name: String,
    /// Actors that lose all supply without this one.
    pub downstream_lost: usize,
    pub lost: Vec<Id>,
    pub articulation_point: bool,
    /// The best substitute found, below the threshold, if any.
    pub best_substitute: Option<BestSubstitute>,
}

/// The best substitute of a gap, scoring below the threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct BestSubstitute {
    pub id: Id,
    pub score: f64,
}

/// The gaps among the actors of the filter's clusters (all actors when
/// none), most downstream loss first. The supply network itself is the whole
/// filtered network, so supply from outside a cluster counts.
/// The control is checked between the supply graph's passes and between the
/// candidate gaps (each one a substitute search).
pub fn substitution_gaps(
    network: &Network,
    filter: &GraphFilter,
    config: &GapConfig,
    control: &Control,
) -> Result<Vec<Gap>, Cancelled> {
    control.check()?;
    control.progress("supply graph", 0, 0);
    let supply_filter = GraphFilter {
        link_kinds: vec![LinkKind::Supply],
        ..filter.clone()
    };
    let valid = |ix: Ix| filter.actor(network, ix).is_some();
    // Nodes: every valid actor touched by a kept supply link; node 0 is the root.
    let mut graph: Graph<Ix, ()> = Graph::new();
    let root = graph.add_node(Ix::MAX);
    let mut node_of: HashMap<Ix, NodeIndex> = HashMap::new();
    let mut node = |graph: &mut Graph<Ix, ()>, ix: Ix| *node_of.entry(ix).or_insert_with(|| graph.add_node(ix));
    let mut arcs = Vec::new();
    for (key, data) in network.links.iter() {
        let keep = supply_filter.keeps_link(key.kind, data) && valid(key.source) && valid(key.target);
        if keep {
            let (u, v) = (node(&mut graph, key.source), node(&mut graph, key.target));
            graph.add_edge(u, v, ());
            arcs.push((u, v));
        }
    }
    let has_supplier: Vec<bool> = {
        let mut seen = vec![false; graph.node_count()];
        for (_, v) in &arcs {
            seen[v.index()] = true;
        }
        seen
    };
    let sources: Vec<NodeIndex> = graph
        .node_indices()
        .filter(|n| *n != root && !has_supplier[n.index()])
        .collect();
    for s in sources {
        graph.add_edge(root, s, ());
    }
    control.check()?;
    control.progress("dominators", 0, 0);
    let dominators = simple_fast(&graph, root);
    // Dominator-tree children, then subtree sizes: what each node dominates.
    let mut children: Vec<Vec<NodeIndex>> = vec![Vec::new(); graph.node_count()];
    for n in graph.node_indices() {
        if let Some(parent) = dominators.immediate_dominator(n) {
            children[parent.index()].push(n);
        }
    }
    let articulation = articulation_points(&graph, root);
    let in_scope = |ix: Ix| {
        filter.clusters.is_empty()
            || network
                .actor(ix)
                .is_some_and(|a| a.cluster_ids.iter().any(|c| filter.clusters.contains(c)))
    };
    control.check()?;
    // Only actors that cut supply or split the network can be gaps; each is
    // looked at on its own, in parallel, against one table of ties.
    let candidates: Vec<NodeIndex> = graph
        .node_indices()
        .filter(|n| *n != root && in_scope(graph[*n]))
        .filter(|n| !children[n.index()].is_empty() || articulation[n.index()])
        .collect();
    // The table costs a pass over the whole network: worth it for many
    // candidates (the whole network: 28x faster), not for one cluster's few.
    let table = if candidates.len() >= TABLE_FROM_CANDIDATES {
        Some(TieTable::new(network, filter, control)?)
    } else {
        None
    };
    let total = candidates.len() as u64;
    let done = AtomicU64::new(0);
    let found: Vec<Option<Gap>> = candidates
        .par_iter()
        .map(|&n| -> Result<Option<Gap>, Cancelled> {
            control.check()?;
            control.progress("candidates", done.fetch_add(1, Ordering::Relaxed), total);
            let ix = graph[n];
            let best = match &table {
                Some(table) => best_substitute(table, network, filter, ix, &config.substitutes),
                None => substitute_scores(network, filter, ix, &config.substitutes)
                    .first()
                    .copied(),
            };
            let best = best.and_then(|(b, score)| {
                network.actor(b).map(|a| BestSubstitute {
                    id: a.id.clone(),
                    score,
                })
            });
            if best.as_ref().is_some_and(|b| b.score >= config.min_substitute_score) {
                return Ok(None);
            }
            let mut lost = Vec::new();
            let mut stack = children[n.index()].clone();
            while let Some(m) = stack.pop() {
                lost.push(graph[m]);
                stack.extend(children[m.index()].iter().copied());
            }
            let mut lost_ids: Vec<Id> = lost
                .iter()
                .filter_map(|m| network.actor(*m).map(|a| a.id.clone()))
                .collect();
            lost_ids.sort();
            // Graph nodes are live actors (links never outlive their ends); a
            // request must not be able to panic here even if that changed.
            let Some(actor) = network.actor(ix) else {
                return Ok(None);
            };
            Ok(Some(Gap {
                actor: actor.id.clone(),
                name: actor.name.clone(),
                downstream_lost: lost_ids.len(),
                lost: lost_ids.into_iter().take(config.lost_limit).collect(),
                articulation_point: articulation[n.index()],
                best_substitute: best,
            }))
        })
        .collect::<Result<_, Cancelled>>()?;
    let mut gaps: Vec<Gap> = found.into_iter().flatten().collect();
    gaps.sort_by(|a, b| {
        b.downstream_lost
            .cmp(&a.downstream_lost)
            .then(b.articulation_point.cmp(&a.articulation_point))
            .then_with(|| a.actor.cmp(&b.actor))
    });
    Ok(gaps)
}

/// Articulation points of the undirected graph underneath, ignoring the
/// root (iterative Hopcroft–Tarjan, so deep supply chains cannot overflow
/// the stack).
fn articulation_points(graph: &Graph<Ix, ()>, root: NodeIndex) -> Vec<bool> {
    let n = graph.node_count();
    let mut neighbors: Vec<Vec<usize>> = vec![Vec::new(); n];
    for edge in graph.raw_edges() {
        let (u, v) = (edge.source().index(), edge.target().index());
        if u != root.index() && v != root.index() {
            neighbors[u].push(v);
            neighbors[v].push(u);
        }
    }
    let mut order = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut is_cut = vec![false; n];
    let mut counter = 0;
    for start in 0..n {
        if start == root.index() || order[start] != usize::MAX {
            continue;
        }
        order[start] = counter;
        low[start] = counter;
        counter += 1;
        let mut root_children = 0;
        // (node, parent, next neighbour position)
        let mut stack = vec![(start, usize::MAX, 0usize)];
        while let Some(&mut (v, parent, ref mut next)) = stack.last_mut() {
            if *next < neighbors[v].len() {
                let w = neighbors[v][*next];
                *next += 1;
                if order[w] == usize::MAX {
                    order[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    if v == start {
                        root_children += 1;
                    }
                    stack.push((w, v, 0));
                } else if w != parent {
                    low[v] = low[v].min(order[w]);
                }
            } else {
                stack.pop();
                if parent != usize::MAX {
                    low[parent] = low[parent].min(low[v]);
                    if parent != start && low[v] >= order[parent] {
                        is_cut[parent] = true;
                    }
                }
            }
        }
        is_cut[start] = root_children > 1;
    }
    is_cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Actor, ActorKind, Change, Channel, Link, SegmentSet, Validity};
    use proptest::prelude::*;

    fn network(actors: usize, supplies: &[(usize, usize)]) -> Network {
        let changes: Vec<Change> = (0..actors)
            .map(|i| {
                Change::UpsertActor(Actor {
                    id: Id::from(format!("a{i}")),
                    name: format!("a{i}"),
                    kind: ActorKind::Firm,
                    industry: String::new(),
                    segments: SegmentSet::default(),
                    cluster_ids: vec![],
                    site_id: None,
                    country: None,
                    employees: None,
                    revenue: None,
                    validity: Validity::default(),
                })
            })
            .chain(supplies.iter().map(|&(s, t)| {
                Change::UpsertLink(Link {
                    source: Id::from(format!("a{s}")),
                    target: Id::from(format!("a{t}")),
                    kind: LinkKind::Supply,
                    channel: Channel::Physical,
                    weight: 1.0,
                    validity: Validity::default(),
                })
            }))
            .map(|c| c.validated().unwrap())
            .collect();
        let mut network = Network::default();
        network.apply(&changes).unwrap();
        network
    }

    /// Substitutes never close a gap here.
    fn strict() -> GapConfig {
        GapConfig {
            min_substitute_score: 1.1,
            ..GapConfig::default()
        }
    }

    #[test]
    fn a_hub_between_suppliers_and_customers_is_a_gap() {
        // a0, a1 supply a2; a2 supplies a3 and a4. Without a2, a3 and a4 have
        // no supply: a2 dominates them and is an articulation point.
        let net = network(5, &[(0, 2), (1, 2), (2, 3), (2, 4)]);
        let gaps = substitution_gaps(&net, &GraphFilter::default(), &strict(), &Control::none()).unwrap();
        assert_eq!(&*gaps[0].actor, "a2");
        assert_eq!(gaps[0].downstream_lost, 2);
        assert!(gaps[0].articulation_point);
        // a0 is not: a2 still has a1.
        assert!(gaps.iter().all(|g| &*g.actor != "a0"));
    }

    proptest! {
        #[test]
        fn the_only_supplier_of_a_firm_is_a_gap(arcs in prop::collection::vec((0usize..8, 0usize..8), 1..16)) {
            // Supply only flows from lower to higher numbers: no cycles.
            let arcs: Vec<(usize, usize)> = arcs.into_iter().filter(|(s, t)| s < t).collect();
            let net = network(8, &arcs);
            let gaps = substitution_gaps(
                &net,
                &GraphFilter::default(),
                &GapConfig { lost_limit: 100, ..strict() },
                &Control::none(),
            )
            .unwrap();
            for t in 0..8 {
                let suppliers: std::collections::BTreeSet<usize> =
                    arcs.iter().filter(|(_, x)| *x == t).map(|(s, _)| *s).collect();
                if suppliers.len() == 1 {
                    let s = *suppliers.iter().next().unwrap();
                    let supplier = format!("a{s}");
                    let gap = gaps.iter().find(|g| *g.actor == *supplier);
                    prop_assert!(gap.is_some(), "a{} is the only supplier of a{} but no gap", s, t);
                    let customer = format!("a{t}");
                    prop_assert!(gap.unwrap().lost.iter().any(|id| **id == *customer));
                }
            }
        }
    }
}
