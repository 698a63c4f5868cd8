//! PageRank brought up to date after a write, from the last revision's
//! ranks, instead of solved again: the Dynamic Frontier approach (Sahu,
//! arXiv 2401.15870) on the residual form of the equations.
//!
//! With every node's jump 1 (uniform; the ranks are y / Σy), y solves
//! y = 1 + d·Pᵀy, P the link-following walk with dangling rows empty (the
//! system [`super::centrality::pagerank`] solves). Kept with y is its
//! residual r = 1 + d·Pᵀy − y, exactly: if r were 0, y would be exact, and
//! ‖y − y*‖₁ ≤ ‖r‖₁ / (1 − d) whatever y is.
//!
//! * **A write changes r only where the graph changed.** A node whose
//!   out-arcs changed passes a different share to its out-neighbours; a node
//!   whose in-arcs changed receives from different nodes. Their residuals
//!   are computed again from the new graph, nothing else moves.
//! * **The frontier.** A node whose residual exceeds ε takes it into y and
//!   passes d·r along its out-arcs, so its out-neighbours join the frontier
//!   only if what they receive lifts them over ε (Gauss–Seidel "push"
//!   updates; Andersen, Chung and Lang 2006). Changes too small to matter stop
//!   spreading on their own, which is what makes the update cheap on a
//!   graph where everything is reachable from everything.
//! * **The same tolerance as a full run.** A full run stops when one
//!   sweep changes the ranks by less than `tolerance` in L1, which is its
//!   residual's norm. The update stops when every |r| ≤ ε = tolerance·Σy/n,
//!   so ‖r‖₁/Σy ≤ tolerance: the same criterion on the same quantity, held
//!   for all nodes, not only the frontier (the residual a full run left is
//!   kept and paid too, so nothing drifts over many updates).
//!
//! Memgraph's online PageRank drifted from a full recompute after updates
//! (memgraph#3690); the property test below holds the two together over
//! random write sequences.

use std::sync::Arc;

use rayon::prelude::*;

use super::centrality::{pagerank_unscaled, pass_of, PageRankConfig};
use crate::{
    analysis::{Control, Scores},
    error::Cancelled,
    graph::AnalysisGraph,
};

/// Past this share of nodes changed, solving again is cheaper.
const UPDATE_AT_MOST: f64 = 0.05;
/// Pushes between cancellation checks.
const CHECK_EVERY: u64 = 1 << 16;
/// Pushes an update may make, per arc of the graph, before it gives up and
/// solves again (far above what a small write needs).
const MOST_PUSHES_PER_ARC: u64 = 8;

/// The ranks of one graph, kept to bring up to date after the next write.
pub struct RankMemo {
    graph: Arc<AnalysisGraph>,
    damping: f64,
    weighted: bool,
    tolerance: f64,
    /// Unscaled ranks, jump 1 a node.
    y: Vec<f64>,
    /// 1 + d·Pᵀy − y, node by node.
    r: Vec<f64>,
    /// d / out-weight (0 for a dangling node).
    pass: Vec<f64>,
    /// The ranks last given out for this graph: a call on the same graph
    /// gets them again, bit for bit.
    x: Vec<f64>,
}

/// How a PageRank was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Solved on the whole graph.
    Full,
    /// Brought up to date from the kept ranks: the nodes whose arcs
    /// changed, and the updates made.
    Frontier { changed: usize, pushes: u64 },
    /// The kept ranks, of this very graph.
    Reused,
}

impl RankMemo {
    /// The ranks last given out, when they are of this very graph with
    /// these settings: a second call on one revision gets them again, bit
    /// for bit, for nothing.
    pub fn ranks_of(&self, graph: &Arc<AnalysisGraph>, config: &PageRankConfig) -> Option<Scores> {
        let same = Arc::ptr_eq(&self.graph, graph) && self.fits(graph, config);
        same.then(|| Scores {
            values: self.x.clone(),
            iterations: 0,
            converged: true,
        })
    }

    /// Whether ranks of `config` (uniform jump only) can be carried over.
    fn fits(&self, graph: &AnalysisGraph, config: &PageRankConfig) -> bool {
        config.personalization.is_none()
            && self.damping == config.damping
            && self.weighted == config.weighted
            && self.tolerance == config.tolerance
            && graph.extends(&self.graph)
    }
}

/// PageRank of `graph` with a uniform jump (`config.personalization` is
/// ignored: a personal jump is not kept), brought up to date from `kept`
/// when it is of an earlier version of this graph with the same settings,
/// else solved; with the ranks to keep for the next time.
pub fn pagerank_kept(
    graph: &Arc<AnalysisGraph>,
    config: &PageRankConfig,
    kept: Option<&RankMemo>,
    control: &Control,
) -> Result<(Scores, RankMemo, Update), Cancelled> {
    let config = PageRankConfig {
        personalization: None,
        ..config.clone()
    };
    if let Some(kept) = kept.filter(|k| k.fits(graph, &config)) {
        if let Some((memo, changed, pushes)) = update(kept, graph, control)? {
            let scores = Scores {
                values: memo.x.clone(),
                iterations: 1,
                converged: true,
            };
            return Ok((scores, memo, Update::Frontier { changed, pushes }));
        }
    }
    let solved = pagerank_unscaled(graph, &config, control)?;
    let n = graph.node_count();
    let y: Vec<f64> = solved.values.iter().map(|y| y * n as f64).collect();
    // Scaled exactly as `pagerank` scales them: a solve here gives what
    // the export and a call without kept ranks give, bit for bit.
    let x = summing_to_one(&solved.values);
    let pass = passes(graph, config.damping, config.weighted);
    let mut memo = RankMemo {
        graph: graph.clone(),
        damping: config.damping,
        weighted: config.weighted,
        tolerance: config.tolerance,
        r: vec![0.0; n],
        y,
        pass,
        x: x.clone(),
    };
    memo.r = (0..n).into_par_iter().map(|w| memo.residual(w)).collect();
    let scores = Scores { values: x, ..solved };
    Ok((scores, memo, Update::Full))
}

/// `values` over their sum (as they are when it is 0).
fn summing_to_one(values: &[f64]) -> Vec<f64> {
    let total: f64 = values.iter().sum();
    if total > 0.0 {
        values.iter().map(|v| v / total).collect()
    } else {
        values.to_vec()
    }
}

fn passes(graph: &AnalysisGraph, damping: f64, weighted: bool) -> Vec<f64> {
    (0..graph.node_count())
        .into_par_iter()
        .map(|v| pass_of(graph, v, damping, weighted))
        .collect()
}

impl RankMemo {
    /// 1 + d·Pᵀy − y at `w`, from w's in-arcs.
    fn residual(&self, w: usize) -> f64 {
        let sources = self.graph.in_neighbors(w);
        let inflow: f64 = if self.weighted {
            sources
                .iter()
                .zip(self.graph.in_weights(w))
                .map(|(&u, a)| self.y[u as usize] * self.pass[u as usize] * a)
                .sum()
        } else {
            sources
                .iter()
                .map(|&u| self.y[u as usize] * self.pass[u as usize])
                .sum()
        };
        1.0 + inflow - self.y[w]
    }

    /// Every node with |r| > ε takes its residual into y and passes it on,
    /// starting from `frontier`; then the nodes a scan finds over ε, until
    /// none is. The pushes made, or None past `most`.
    fn settle(&mut self, frontier: Vec<u32>, most: u64, control: &Control) -> Result<Option<u64>, Cancelled> {
        let n = self.y.len();
        let mut queued = vec![false; n];
        let mut queue: std::collections::VecDeque<u32> = std::collections::VecDeque::new();
        for v in frontier {
            if !queued[v as usize] {
                queued[v as usize] = true;
                queue.push_back(v);
            }
        }
        let mut pushes = 0u64;
        loop {
            let epsilon = self.tolerance * self.y.iter().sum::<f64>() / n as f64;
            while let Some(w) = queue.pop_front() {
                let w = w as usize;
                queued[w] = false;
                let rho = self.r[w];
                if rho.abs() <= epsilon {
                    continue;
                }
                pushes += 1;
                if pushes.is_multiple_of(CHECK_EVERY) {
                    control.check()?;
                }
                if pushes > most {
                    return Ok(None);
                }
                self.y[w] += rho;
                self.r[w] = 0.0;
                let share = rho * self.pass[w];
                if share == 0.0 {
                    continue;
                }
                let (targets, weights) = (self.graph.out_neighbors(w), self.graph.out_weights(w));
                for (i, &x) in targets.iter().enumerate() {
                    let a = if self.weighted { weights[i] } else { 1.0 };
                    let x = x as usize;
                    self.r[x] += share * a;
                    if !queued[x] && self.r[x].abs() > epsilon {
                        queued[x] = true;
                        queue.push_back(x as u32);
                    }
                }
            }
            // Σy moved with the pushes: look again with the final ε; a full
            // run's leftover residual is paid here the first time.
            let epsilon = self.tolerance * self.y.iter().sum::<f64>() / n as f64;
            let over: Vec<u32> = (0..n as u32)
                .into_par_iter()
                .filter(|&v| self.r[v as usize].abs() > epsilon)
                .collect();
            if over.is_empty() {
                return Ok(Some(pushes));
            }
            for &v in &over {
                queued[v as usize] = true;
            }
            queue.extend(over);
        }
    }
}

/// `kept` brought to `graph`: (the new memo, nodes changed, pushes), or
/// None when solving again is cheaper.
fn update(
    kept: &RankMemo,
    graph: &Arc<AnalysisGraph>,
    control: &Control,
) -> Result<Option<(RankMemo, usize, u64)>, Cancelled> {
    let n = graph.node_count();
    let most = ((n as f64 * UPDATE_AT_MOST) as usize).max(64);
    let Some((out_changed, in_changed)) = graph.changed_since(&kept.graph, most) else {
        return Ok(None);
    };
    let changed = out_changed.len().max(in_changed.len());
    let mut memo = RankMemo {
        graph: graph.clone(),
        damping: kept.damping,
        weighted: kept.weighted,
        tolerance: kept.tolerance,
        y: kept.y.clone(),
        r: kept.r.clone(),
        pass: kept.pass.clone(),
        x: Vec::new(),
    };
    // New nodes start at y = 0; their residual is set below with the rest.
    memo.y.resize(n, 0.0);
    memo.r.resize(n, 0.0);
    memo.pass.resize(n, 0.0);
    for &u in &out_changed {
        memo.pass[u as usize] = pass_of(graph, u as usize, memo.damping, memo.weighted);
    }
    // Whose residual the write changed: what they receive changed.
    let mut frontier: Vec<u32> = in_changed;
    for &u in &out_changed {
        frontier.extend_from_slice(graph.out_neighbors(u as usize));
    }
    frontier.sort_unstable();
    frontier.dedup();
    for &w in &frontier {
        memo.r[w as usize] = memo.residual(w as usize);
    }
    let most_pushes = MOST_PUSHES_PER_ARC * (graph.edge_count() as u64).max(n as u64);
    Ok(memo.settle(frontier, most_pushes, control)?.map(|pushes| {
        memo.x = summing_to_one(&memo.y);
        (memo, changed, pushes)
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::analysis::algo::centrality::pagerank;

    fn graph(n: usize, arcs: &[(u32, u32, f64)], directed: bool, weighted: bool) -> Arc<AnalysisGraph> {
        let ids = (0..n).map(|i| format!("n{i}").into()).collect();
        Arc::new(AnalysisGraph::from_edges(
            ids,
            vec![String::new(); n],
            arcs,
            directed,
            weighted,
        ))
    }

    fn l1(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
    }

    /// One write: arcs added (targets may be new nodes), removed, or
    /// weighed again.
    #[derive(Clone, Debug)]
    enum Write {
        Add(u32, u32, u8),
        Remove(usize),
        Reweigh(usize, u8),
        NewNode,
    }

    fn write() -> impl Strategy<Value = Write> {
        prop_oneof![
            4 => (0..40u32, 0..40u32, 1..5u8).prop_map(|(u, v, w)| Write::Add(u, v, w)),
            2 => any::<prop::sample::Index>().prop_map(|i| Write::Remove(i.index(1 << 20))),
            1 => (any::<prop::sample::Index>(), 1..5u8).prop_map(|(i, w)| Write::Reweigh(i.index(1 << 20), w)),
            1 => Just(Write::NewNode),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Over a random sequence of writes, each update from the ranks
        /// kept after the last is as close to the exact ranks as a full run
        /// at the same tolerance is allowed to be (‖·‖₁ ≤ tolerance/(1 − d)
        /// on the scaled ranks, twice for the scaling), and never drifts.
        #[test]
        fn an_update_after_each_write_is_as_exact_as_a_full_run(
            n in 2usize..40,
            start in prop::collection::vec((0..40u32, 0..40u32, 1..5u8), 0..120),
            writes in prop::collection::vec(prop::collection::vec(write(), 1..6), 1..12),
            directed in any::<bool>(),
            weighted in any::<bool>(),
        ) {
            let config = PageRankConfig { tolerance: 1e-10, weighted, ..PageRankConfig::default() };
            let exact = PageRankConfig { tolerance: 1e-15, max_iterations: 100_000, ..config.clone() };
            let bound = 2.0 * config.tolerance / (1.0 - config.damping);
            let mut nodes = n;
            let mut arcs: Vec<(u32, u32, f64)> = start
                .into_iter()
                .map(|(u, v, w)| (u % n as u32, v % n as u32, w as f64))
                .collect();
            let g = graph(nodes, &arcs, directed, weighted);
            let (_, mut memo, how) = pagerank_kept(&g, &config, None, &Control::none()).unwrap();
            prop_assert_eq!(how, Update::Full);
            for batch in writes {
                for w in batch {
                    match w {
                        Write::Add(u, v, weight) => {
                            arcs.push((u % (nodes as u32 + 1), v % (nodes as u32 + 1), weight as f64));
                            nodes = nodes.max(arcs.last().map_or(0, |&(u, v, _)| u.max(v) as usize + 1));
                        }
                        Write::Remove(i) if !arcs.is_empty() => {
                            arcs.swap_remove(i % arcs.len());
                        }
                        Write::Reweigh(i, weight) if !arcs.is_empty() => {
                            let i = i % arcs.len();
                            arcs[i].2 = weight as f64;
                        }
                        Write::NewNode => nodes += 1,
                        _ => {}
                    }
                }
                let g = graph(nodes, &arcs, directed, weighted);
                let (updated, next, _) = pagerank_kept(&g, &config, Some(&memo), &Control::none()).unwrap();
                let full = pagerank(&g, &config, &Control::none()).unwrap();
                let truth = pagerank(&g, &exact, &Control::none()).unwrap();
                prop_assert!(l1(&full.values, &truth.values) <= bound, "the full run itself");
                prop_assert!(
                    l1(&updated.values, &truth.values) <= bound,
                    "update off by {} (full run: {})",
                    l1(&updated.values, &truth.values),
                    l1(&full.values, &truth.values)
                );
                prop_assert!((updated.values.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                memo = next;
            }
        }
    }

    #[test]
    fn one_new_link_is_brought_up_to_date_from_the_frontier_not_solved_again() {
        // A ring of 2,000 nodes with chords: one new chord changes the
        // residuals of a few nodes, and the update reaches far fewer nodes
        // than a sweep would.
        let n = 2_000u32;
        let mut arcs: Vec<(u32, u32, f64)> = (0..n).map(|v| (v, (v + 1) % n, 1.0)).collect();
        arcs.extend((0..n).step_by(7).map(|v| (v, (v * 13 + 5) % n, 1.0)));
        let config = PageRankConfig {
            weighted: false,
            ..PageRankConfig::default()
        };
        let g = graph(n as usize, &arcs, true, false);
        let (_, memo, _) = pagerank_kept(&g, &config, None, &Control::none()).unwrap();
        arcs.push((3, 1_500, 1.0));
        let g = graph(n as usize, &arcs, true, false);
        let (updated, _, how) = pagerank_kept(&g, &config, Some(&memo), &Control::none()).unwrap();
        let Update::Frontier { changed, pushes } = how else {
            panic!("solved again: {how:?}");
        };
        assert_eq!(changed, 1, "node 3's out-arcs and node 1,500's in-arcs");
        let full = pagerank(&g, &config, &Control::none()).unwrap();
        assert!(l1(&updated.values, &full.values) < 1e-8);
        assert!(pushes > 0);
    }

    #[test]
    fn a_personal_jump_or_other_settings_are_solved_again() {
        let g = graph(3, &[(0, 1, 1.0), (1, 2, 1.0), (2, 0, 1.0)], true, true);
        let config = PageRankConfig::default();
        let (_, memo, _) = pagerank_kept(&g, &config, None, &Control::none()).unwrap();
        let other = PageRankConfig {
            damping: 0.5,
            ..config.clone()
        };
        let (_, _, how) = pagerank_kept(&g, &other, Some(&memo), &Control::none()).unwrap();
        assert_eq!(how, Update::Full);
        // Fewer nodes than the kept ranks: not an extension of that graph.
        let smaller = graph(2, &[(0, 1, 1.0)], true, true);
        let (_, _, how) = pagerank_kept(&smaller, &config, Some(&memo), &Control::none()).unwrap();
        assert_eq!(how, Update::Full);
    }
}
