//! Strongly connected components in topological order.
//!
//! Tarjan's algorithm (1972) with an explicit stack: a supply chain a
//! million firms deep is a path a million calls deep, which a recursive
//! search (petgraph's `tarjan_scc`) would take off the thread's stack.

use crate::graph::AnalysisGraph;

/// The nodes grouped by strongly connected component, components in
/// topological order: every arc runs from a component to itself or to a later
/// one, so a pass in this order meets each node after all that point to it
/// from other components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrongComponents {
    /// Every node once, component by component, ascending within each.
    pub order: Vec<u32>,
    /// Where each component starts in `order`, plus `order.len()` at the end.
    pub starts: Vec<u32>,
}

impl StrongComponents {
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The nodes of component `c`.
    pub fn component(&self, c: usize) -> &[u32] {
        &self.order[self.starts[c] as usize..self.starts[c + 1] as usize]
    }

    /// The components in topological order.
    pub fn iter(&self) -> impl Iterator<Item = &[u32]> {
        (0..self.len()).map(|c| self.component(c))
    }
}

const UNSEEN: u32 = u32::MAX;

/// The strongly connected components of `graph`, following out-arcs (on an
/// undirected graph these are its connected components).
pub fn strong_components(graph: &AnalysisGraph) -> StrongComponents {
    let n = graph.node_count();
    // Tarjan's discovery index and low link, side by side so that looking
    // at a neighbour costs one cache miss; a finished node's low link is
    // UNSEEN so that it no longer lowers anyone's.
    let mut mark = vec![[UNSEEN, UNSEEN]; n];
    let mut next_index = 0u32;
    // Nodes of components not yet closed, and the search path with the
    // position reached in each node's out-arcs.
    let mut open: Vec<u32> = Vec::new();
    let mut path: Vec<(u32, u32)> = Vec::new();
    // Tarjan closes components sinks first, so they are written from the
    // back of `order` and come out in topological order.
    let mut order = vec![0u32; n];
    let mut end = n;
    let mut ends: Vec<u32> = vec![n as u32];
    for root in 0..n as u32 {
        if mark[root as usize][0] != UNSEEN {
            continue;
        }
        mark[root as usize] = [next_index, next_index];
        next_index += 1;
        open.push(root);
        path.push((root, 0));
        while let Some(&mut (v, ref mut at)) = path.last_mut() {
            let v = v as usize;
            let arcs = graph.out_neighbors(v);
            // Scan v's arcs up to the first node not yet seen.
            let mut descend = None;
            while let Some(&w) = arcs.get(*at as usize) {
                *at += 1;
                let [index, low] = mark[w as usize];
                if index == UNSEEN {
                    descend = Some(w);
                    break;
                }
                if low != UNSEEN {
                    // w is still open: on the path or in a component the
                    // path has not closed.
                    mark[v][1] = mark[v][1].min(index);
                }
            }
            if let Some(w) = descend {
                mark[w as usize] = [next_index, next_index];
                next_index += 1;
                open.push(w);
                path.push((w, 0));
                continue;
            }
            path.pop();
            let [index, low] = mark[v];
            if let Some(&(parent, _)) = path.last() {
                let parent = parent as usize;
                mark[parent][1] = mark[parent][1].min(low);
            }
            if low == index {
                loop {
                    let w = open.pop().expect("v is open until its component closes");
                    mark[w as usize][1] = UNSEEN;
                    end -= 1;
                    order[end] = w;
                    if w as usize == v {
                        break;
                    }
                }
                ends.push(end as u32);
            }
        }
    }
    ends.reverse();
    // Ascending within a component, so a pass over one reads its nodes'
    // arrays in memory order.
    for pair in ends.windows(2) {
        order[pair[0] as usize..pair[1] as usize].sort_unstable();
    }
    StrongComponents { order, starts: ends }
}

/// A peeled node's count in [`kahn`].
const PEELED: u32 = u32::MAX;

/// Kahn's algorithm: takes the nodes of `queue` in turn, marks each peeled
/// and counts it off each node of `next(v)` not yet peeled, queueing those
/// whose count reaches 0.
fn kahn<'g>(queue: &mut Vec<u32>, left: &mut [u32], next: impl Fn(usize) -> &'g [u32]) {
    let mut at = 0;
    while let Some(&v) = queue.get(at) {
        at += 1;
        left[v as usize] = PEELED;
        for &w in next(v as usize) {
            let count = &mut left[w as usize];
            if *count != PEELED {
                *count -= 1;
                if *count == 0 {
                    queue.push(w);
                }
            }
        }
    }
}

/// The nodes split into the acyclic part upstream of every cycle, the rest
/// (the cycles and what lies between them) and the acyclic part downstream
/// of every cycle, both acyclic parts in topological order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peeled {
    /// Nodes that no cycle reaches, each after all that point to it.
    pub upstream: Vec<u32>,
    /// The remaining nodes, ascending.
    pub core: Vec<u32>,
    /// Nodes that reach no cycle, each after all that point to it.
    pub downstream: Vec<u32>,
}

/// Peels the acyclic ends off `graph` (Kahn's algorithm from the sources,
/// then from the sinks). Cheaper than the strongly connected components (no
/// depth-first search, and it stops where the cycles begin), and enough to
/// solve a network that mostly runs one way in one pass.
pub fn peel(graph: &AnalysisGraph) -> Peeled {
    let n = graph.node_count();
    let mut waiting: Vec<u32> = (0..n).map(|v| graph.in_neighbors(v).len() as u32).collect();
    let mut upstream: Vec<u32> = (0..n as u32).filter(|&v| waiting[v as usize] == 0).collect();
    kahn(&mut upstream, &mut waiting, |v| graph.out_neighbors(v));
    // No arc runs from the rest into `upstream`, so out-degrees among the
    // rest are plain out-degrees.
    let mut rest: Vec<u32> = waiting;
    let mut downstream: Vec<u32> = Vec::new();
    for (v, left) in rest.iter_mut().enumerate() {
        if *left != PEELED {
            *left = graph.out_neighbors(v).len() as u32;
            if *left == 0 {
                downstream.push(v as u32);
            }
        }
    }
    kahn(&mut downstream, &mut rest, |v| graph.in_neighbors(v));
    // Peeled from the sinks, so reversed it runs with the arcs.
    downstream.reverse();
    let core = (0..n as u32).filter(|&v| rest[v as usize] != PEELED).collect();
    Peeled {
        upstream,
        core,
        downstream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Id;
    use proptest::prelude::*;

    fn graph(n: usize, arcs: &[(u32, u32)], directed: bool) -> AnalysisGraph {
        let ids: Vec<Id> = (0..n).map(|i| Id::from(format!("n{i}"))).collect();
        let names = vec![String::new(); n];
        let edges: Vec<(u32, u32, f64)> = arcs.iter().map(|&(u, v)| (u, v, 1.0)).collect();
        AnalysisGraph::from_edges(ids, names, &edges, directed, false)
    }

    /// Whether v can be reached from u along arcs (a plain search, as the
    /// specification the components are checked against).
    fn reaches(g: &AnalysisGraph, u: usize, v: usize) -> bool {
        let mut seen = vec![false; g.node_count()];
        let mut stack = vec![u];
        seen[u] = true;
        while let Some(x) = stack.pop() {
            if x == v {
                return true;
            }
            for &y in g.out_neighbors(x) {
                if !seen[y as usize] {
                    seen[y as usize] = true;
                    stack.push(y as usize);
                }
            }
        }
        false
    }

    #[test]
    fn a_cycle_is_one_component_and_comes_before_what_it_feeds() {
        // 0 -> 1 -> 2 -> 0, 2 -> 3, 4 -> 0.
        let g = graph(5, &[(0, 1), (1, 2), (2, 0), (2, 3), (4, 0)], true);
        let c = strong_components(&g);
        let parts: Vec<Vec<u32>> = c.iter().map(|p| p.to_vec()).collect();
        assert_eq!(parts, vec![vec![4], vec![0, 1, 2], vec![3]]);
    }

    #[test]
    fn a_path_a_million_nodes_deep_does_not_overflow_the_stack() {
        let n = 1_000_000u32;
        let arcs: Vec<(u32, u32)> = (1..n).map(|v| (v, v - 1)).collect();
        let c = strong_components(&graph(n as usize, &arcs, true));
        assert_eq!(c.len(), n as usize);
        // Topological: the head of the chain first.
        assert_eq!(c.component(0), &[n - 1]);
        assert_eq!(c.component(n as usize - 1), &[0]);
    }

    proptest! {
        #[test]
        fn components_are_the_mutual_reach_classes_in_topological_order(
            n in 1usize..24,
            arcs in proptest::collection::vec((0u32..24, 0u32..24), 0..60),
            directed: bool,
        ) {
            let arcs: Vec<(u32, u32)> = arcs.into_iter().filter(|(u, v)| (*u as usize) < n && (*v as usize) < n).collect();
            let g = graph(n, &arcs, directed);
            let c = strong_components(&g);
            let mut component = vec![usize::MAX; n];
            for (k, part) in c.iter().enumerate() {
                prop_assert!(!part.is_empty());
                for &v in part {
                    prop_assert_eq!(component[v as usize], usize::MAX, "node {} twice", v);
                    component[v as usize] = k;
                }
            }
            for u in 0..n {
                prop_assert!(component[u] != usize::MAX, "node {} missing", u);
                for v in 0..n {
                    let same = reaches(&g, u, v) && reaches(&g, v, u);
                    prop_assert_eq!(component[u] == component[v], same, "nodes {} and {}", u, v);
                }
                for &v in g.out_neighbors(u) {
                    prop_assert!(component[u] <= component[v as usize], "arc {} -> {} runs backwards", u, v);
                }
            }
        }
    }

    #[test]
    fn peeling_leaves_the_cycle_and_orders_both_ends() {
        // 5 -> 0 -> 1 -> 2 -> 0 (a cycle), 2 -> 3 -> 4, 6 alone.
        let g = graph(7, &[(5, 0), (0, 1), (1, 2), (2, 0), (2, 3), (3, 4)], true);
        let p = peel(&g);
        assert_eq!(p.core, vec![0, 1, 2]);
        assert_eq!(p.upstream, vec![5, 6]);
        assert_eq!(p.downstream, vec![3, 4]);
    }

    proptest! {
        #[test]
        fn peeling_keeps_every_cycle_in_the_core_and_every_arc_running_forwards(
            n in 1usize..24,
            arcs in proptest::collection::vec((0u32..24, 0u32..24), 0..60),
        ) {
            let arcs: Vec<(u32, u32)> = arcs.into_iter().filter(|(u, v)| (*u as usize) < n && (*v as usize) < n).collect();
            let g = graph(n, &arcs, true);
            let p = peel(&g);
            // Position in the solving order: upstream, core, downstream.
            let mut position = vec![usize::MAX; n];
            for (i, &v) in p.upstream.iter().chain(&p.core).chain(&p.downstream).enumerate() {
                prop_assert_eq!(position[v as usize], usize::MAX, "node {} twice", v);
                position[v as usize] = i;
            }
            prop_assert!(position.iter().all(|&i| i != usize::MAX));
            let in_core = |v: usize| p.core.contains(&(v as u32));
            for u in 0..n {
                for &v in g.out_neighbors(u) {
                    let v = v as usize;
                    // Inside the core the order is free; elsewhere arcs run forwards.
                    prop_assert!((in_core(u) && in_core(v)) || position[u] < position[v], "arc {} -> {}", u, v);
                }
                // A node on a cycle is in the core.
                let on_cycle = g.out_neighbors(u).iter().any(|&v| reaches(&g, v as usize, u));
                prop_assert!(!on_cycle || in_core(u), "node {} is on a cycle", u);
            }
        }
    }
}
