//! Centrality: who is the core, who brokers.
//!
//! Definitions follow NetworkX 3 (the fixtures in `tests/fixtures` come from
//! it), so figures can be checked against a trusted tool:
//!
//! * degree: neighbours (or summed weights, "strength"); in, out or both;
//!   optionally divided by n − 1 (`nx.degree_centrality`).
//! * PageRank: the stationary distribution of a walk that follows an out-edge
//!   with probability `damping` (in proportion to weight) and otherwise jumps to
//!   a node drawn from the personalisation vector (uniform by default);
//!   dangling nodes jump the same way (`nx.pagerank`).
//! * betweenness: Brandes (2001); on weighted graphs an edge's length is
//!   1 / weight, so strong ties are short. Normalised by 1/((n−1)(n−2)),
//!   doubled on undirected graphs; the approximation sums over `samples`
//!   random pivots and scales by n / samples (`nx.betweenness_centrality`).
//! * edge betweenness: the same pass credits each arc on a shortest path
//!   (`nx.edge_betweenness_centrality`).
//! * closeness: Wasserman and Faust's form for disconnected graphs,
//!   ((r−1)/(n−1)) · ((r−1)/Σd), with r the nodes that reach v and d the
//!   distances from them (incoming distances on directed graphs, as NetworkX).
//! * harmonic: Σ 1/d(u, v) over the nodes u that reach v.
//! * eigenvector: the principal eigenvector of the in-edge adjacency, unit
//!   L2 norm, by power iteration on A + I (`nx.eigenvector_centrality`).
//! * k-core: the largest k such that v is in a subgraph where every node has
//!   at least k neighbours (Batagelj and Zaversnik 2003; `nx.core_number`).

use std::{cmp::Ordering, collections::BinaryHeap, collections::VecDeque};

use rand::{seq::index::sample, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::components::{peel, Peeled};
use crate::analysis::{Cancelled, Control, Scores};
use crate::graph::AnalysisGraph;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    Total,
}

/// Degree or strength of every node.
pub fn degree(graph: &AnalysisGraph, direction: Direction, weighted: bool, normalized: bool) -> Scores {
    let n = graph.node_count();
    let side = |neighbors: &[u32], weights: &[f64]| -> f64 {
        if weighted {
            weights.iter().sum()
        } else {
            neighbors.len() as f64
        }
    };
    let values = (0..n)
        .map(|v| {
            let out = side(graph.out_neighbors(v), graph.out_weights(v));
            let inn = side(graph.in_neighbors(v), graph.in_weights(v));
            let value = match (graph.directed, direction) {
                (false, _) => out,
                (true, Direction::Out) => out,
                (true, Direction::In) => inn,
                (true, Direction::Total) => out + inn,
            };
            if normalized && n > 1 {
                value / (n - 1) as f64
            } else {
                value
            }
        })
        .collect();
    Scores::exact(values)
}

#[derive(Clone, Debug, PartialEq)]
pub struct PageRankConfig {
    /// Probability of following a link rather than jumping, in (0, 1).
    pub damping: f64,
    /// Stop iterating a strongly connected component when the L1 change of
    /// its scores in one sweep falls below this times its share of the nodes.
    pub tolerance: f64,
    pub max_iterations: u32,
    /// Follow links in proportion to weight (else uniformly).
    pub weighted: bool,
    /// Jump distribution, one non-negative entry per node (normalised here);
    /// `None` for uniform.
    pub personalization: Option<Vec<f64>>,
}

impl Default for PageRankConfig {
    fn default() -> Self {
        PageRankConfig {
            damping: 0.85,
            tolerance: 1e-9,
            max_iterations: 1000,
            weighted: true,
            personalization: None,
        }
    }
}

/// Nodes solved between cancellation checks and progress reports.
const CHECK_EVERY: usize = 65_536;
/// Cores with at least this many nodes are swept in parallel.
const PARALLEL_NODES: usize = 8_192;
/// Nodes per chunk of a parallel sweep (partial sums are added in chunk
/// order, so results do not depend on the number of threads).
const SWEEP_CHUNK: usize = 4_096;

/// PageRank, solved in the order the links run.
///
/// With the jump vector v, the ranks are x = y / Σy where y solves
/// y = d·Pᵀy + v (P the link-following walk, dangling rows empty): the
/// dangling nodes' mass and the jump both return along v, so they only scale
/// y (Gleich et al. 2010; igraph's PRPACK solves the same system). The
/// acyclic ends of the graph are peeled off ([`peel`]):
///
/// * upstream of every cycle and downstream of every cycle, each node's
///   in-links are final when its turn comes, so its equation is solved in
///   one step. A supply network, which mostly runs one way, is solved in
///   about one pass over its links, where power iteration needs dozens;
/// * the core between them (the cycles) is solved as a PageRank of its own:
///   its input b (jump plus what flows in from upstream) is the jump vector,
///   and what leaves the core returns along b. That iteration keeps a
///   probability vector z and converges at the rate of its second
///   eigenvalue, as power iteration on the whole graph does; then
///   y = z·Σb/κ, κ being the share of z that re-enters along b. (Iterating y
///   directly would converge at d·ρ(P), near d when few links leave the
///   core.) A graph with no acyclic ends is plain power iteration.
///
/// `tolerance` bounds the L1 change of z in one sweep; `iterations` counts
/// the core's sweeps (1 when there is no core).
pub fn pagerank(graph: &AnalysisGraph, config: &PageRankConfig, control: &Control) -> Result<Scores, Cancelled> {
    let mut scores = pagerank_unscaled(graph, config, control)?;
    let total: f64 = scores.values.iter().sum();
    if total > 0.0 {
        scores.values.iter_mut().for_each(|x| *x /= total);
    }
    Ok(scores)
}

/// y of [`pagerank`], before it is scaled to sum to one: what
/// `rank_update` carries from one revision to the next.
pub(super) fn pagerank_unscaled(
    graph: &AnalysisGraph,
    config: &PageRankConfig,
    control: &Control,
) -> Result<Scores, Cancelled> {
    let n = graph.node_count();
    if n == 0 {
        return Ok(Scores::exact(Vec::new()));
    }
    let jump: Vec<f64> = match &config.personalization {
        Some(p) => {
            let total: f64 = p.iter().sum();
            p.iter().map(|x| x / total).collect()
        }
        None => vec![1.0 / n as f64; n],
    };
    let pass: Vec<f64> = (0..n)
        .map(|v| pass_of(graph, v, config.damping, config.weighted))
        .collect();
    let inflow = |v: usize, from: &[f64]| -> f64 {
        let sources = graph.in_neighbors(v);
        if config.weighted {
            sources
                .iter()
                .zip(graph.in_weights(v))
                .map(|(&u, w)| from[u as usize] * w)
                .sum()
        } else {
            sources.iter().map(|&u| from[u as usize]).sum()
        }
    };
    let Peeled {
        upstream,
        core,
        downstream,
    } = peel(graph);
    let mut y = vec![0.0; n];
    // share[u] = y[u]·pass[u], what a solved node passes per unit of link
    // weight; 0 until it is solved.
    let mut share = vec![0.0; n];
    let mut solved = 0;
    let mut solve_in_order = |nodes: &[u32], y: &mut [f64], share: &mut [f64]| -> Result<(), Cancelled> {
        for chunk in nodes.chunks(CHECK_EVERY) {
            control.check()?;
            for &v in chunk {
                let v = v as usize;
                y[v] = jump[v] + inflow(v, share);
                share[v] = y[v] * pass[v];
            }
            solved += chunk.len();
            control.progress("pagerank", solved as u64, n as u64);
        }
        Ok(())
    };
    solve_in_order(&upstream, &mut y, &mut share)?;
    let (mut sweeps, mut converged) = (1, true);
    if !core.is_empty() {
        let input: Vec<f64> = core
            .iter()
            .map(|&v| jump[v as usize] + inflow(v as usize, &share))
            .collect();
        let total: f64 = input.iter().sum();
        // When nothing reaches the core its ranks stay 0.
        if total > 0.0 {
            let input: Vec<f64> = input.iter().map(|b| b / total).collect();
            let core_rank = core_rank(&core, &input, &pass, &inflow, config, control)?;
            sweeps = core_rank.sweeps;
            converged = core_rank.converged;
            let scale = total / core_rank.kappa;
            for (&v, z) in core.iter().zip(core_rank.z) {
                y[v as usize] = z * scale;
                share[v as usize] = y[v as usize] * pass[v as usize];
            }
        }
    }
    solve_in_order(&downstream, &mut y, &mut share)?;
    Ok(Scores {
        values: y,
        iterations: sweeps,
        converged,
    })
}

/// d / v's out-weight (its out-degree unweighted): what v passes along a
/// link per unit of weight and of rank; 0 for a dangling node.
pub(super) fn pass_of(graph: &AnalysisGraph, v: usize, damping: f64, weighted: bool) -> f64 {
    let out = if weighted {
        graph.out_weights(v).iter().sum()
    } else {
        graph.out_neighbors(v).len() as f64
    };
    if out > 0.0 {
        damping / out
    } else {
        0.0
    }
}

/// The core's own PageRank: z, κ (the share of z re-entering along the
/// input) and the sweeps taken.
struct CoreRank {
    z: Vec<f64>,
    kappa: f64,
    sweeps: u32,
    converged: bool,
}

/// Power iteration on the `core` nodes (ascending) with `input` as the jump
/// vector (it sums to one) and the mass that leaves the core returning along
/// it.
fn core_rank<F: Fn(usize, &[f64]) -> f64 + Sync>(
    core: &[u32],
    input: &[f64],
    pass: &[f64],
    inflow: &F,
    config: &PageRankConfig,
    control: &Control,
) -> Result<CoreRank, Cancelled> {
    let parallel = core.len() >= PARALLEL_NODES;
    // inner[u] = z[u]·pass[u] for the core's nodes, by node; 0 elsewhere, so
    // links from outside the core (already counted in the input) add nothing.
    let mut inner = vec![0.0; pass.len()];
    let mut z = input.to_vec();
    for (&v, z) in core.iter().zip(&z) {
        inner[v as usize] = z * pass[v as usize];
    }
    let mut next = vec![0.0; core.len()];
    for sweep in 1..=config.max_iterations {
        control.check()?;
        control.progress("pagerank", sweep as u64, config.max_iterations as u64);
        // What flows along the core's own links; the rest of z (1 − Σ)
        // re-enters along the input.
        let pull = |i: usize, slot: &mut f64| -> f64 {
            *slot = inflow(core[i] as usize, &inner);
            *slot
        };
        let flowed: f64 = if parallel {
            let sums: Vec<f64> = next
                .par_chunks_mut(SWEEP_CHUNK)
                .enumerate()
                .map(|(c, chunk)| {
                    let first = c * SWEEP_CHUNK;
                    chunk
                        .iter_mut()
                        .enumerate()
                        .map(|(i, slot)| pull(first + i, slot))
                        .sum::<f64>()
                })
                .collect();
            sums.iter().sum()
        } else {
            next.iter_mut().enumerate().map(|(i, slot)| pull(i, slot)).sum()
        };
        let kappa = 1.0 - flowed;
        // Finish z, measure the change and pass z on, chunk by chunk; each
        // chunk's nodes own a disjoint stretch of `inner` (the core is
        // ascending), so the chunks can run in parallel.
        let finish = |first: usize, next: &mut [f64], inner: &mut [f64], offset: usize| -> f64 {
            let mut change = 0.0;
            for (i, slot) in next.iter_mut().enumerate() {
                let k = first + i;
                *slot += kappa * input[k];
                change += (*slot - z[k]).abs();
                let v = core[k] as usize;
                inner[v - offset] = *slot * pass[v];
            }
            change
        };
        let change: f64 = if parallel {
            let mut stretches = Vec::with_capacity(core.len() / SWEEP_CHUNK + 1);
            let mut rest: &mut [f64] = &mut inner;
            let mut offset = 0;
            for (c, chunk) in next.chunks_mut(SWEEP_CHUNK).enumerate() {
                let first = c * SWEEP_CHUNK;
                let end = core[first + chunk.len() - 1] as usize + 1;
                let (stretch, tail) = std::mem::take(&mut rest).split_at_mut(end - offset);
                stretches.push((first, chunk, stretch, offset));
                rest = tail;
                offset = end;
            }
            let sums: Vec<f64> = stretches
                .into_par_iter()
                .map(|(first, chunk, stretch, offset)| finish(first, chunk, stretch, offset))
                .collect();
            sums.iter().sum()
        } else {
            finish(0, &mut next, &mut inner, 0)
        };
        std::mem::swap(&mut z, &mut next);
        if change < config.tolerance {
            return Ok(CoreRank {
                z,
                kappa,
                sweeps: sweep,
                converged: true,
            });
        }
    }
    // κ of the last z, for the scale.
    let flowed: f64 = (0..core.len()).map(|i| inflow(core[i] as usize, &inner)).sum();
    Ok(CoreRank {
        z,
        kappa: 1.0 - flowed,
        sweeps: config.max_iterations,
        converged: false,
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct BetweennessConfig {
    pub normalized: bool,
    /// Edge length 1/weight instead of 1.
    pub weighted: bool,
    /// Number of random pivots for the approximation; `None` for exact.
    pub samples: Option<usize>,
    pub seed: u64,
}

impl Default for BetweennessConfig {
    fn default() -> Self {
        BetweennessConfig {
            normalized: true,
            weighted: false,
            samples: None,
            seed: 0,
        }
    }
}

/// Sources per unit of parallel work. Partial sums are added in chunk order,
/// so results do not depend on the number of threads.
const SOURCE_CHUNK: usize = 32;
/// Chunks whose partial sums are held at once.
const CHUNKS_PER_WAVE: usize = 8;

/// Brandes' betweenness, exact or from sampled pivots.
pub fn betweenness(graph: &AnalysisGraph, config: &BetweennessConfig, control: &Control) -> Result<Scores, Cancelled> {
    let n = graph.node_count();
    let (mut values, _) = brandes(graph, config, false, control)?;
    // Each pair is counted from both ends on an undirected graph.
    let mut scale = if graph.directed { 1.0 } else { 0.5 };
    if let Some(k) = config.samples.filter(|k| *k < n && *k > 0) {
        scale *= n as f64 / k as f64;
    }
    if config.normalized && n > 2 {
        let pairs = ((n - 1) * (n - 2)) as f64;
        scale *= if graph.directed { 1.0 / pairs } else { 2.0 / pairs };
    }
    values.iter_mut().for_each(|v| *v *= scale);
    Ok(Scores::exact(values))
}

/// Edge betweenness (Girvan and Newman 2002): for each arc, the share of
/// shortest paths that use it, indexed by arc number (see
/// [`AnalysisGraph::arc`]). On an undirected graph both arcs of an edge hold
/// the edge's value. Scaled as `nx.edge_betweenness_centrality`: normalised
/// by 1/(n(n−1)), otherwise halved on undirected graphs; by n / samples
/// when sampled.
pub fn edge_betweenness(
    graph: &AnalysisGraph,
    config: &BetweennessConfig,
    control: &Control,
) -> Result<Vec<f64>, Cancelled> {
    let n = graph.node_count();
    let (_, mut arcs) = brandes(graph, config, true, control)?;
    if !graph.directed {
        // Paths from either end use the edge by one arc or the other.
        for u in 0..n {
            for (i, &v) in graph.out_neighbors(u).iter().enumerate() {
                let v = v as usize;
                if u < v {
                    if let Some(back) = graph.arc(v, u) {
                        let forth = graph.out_arc(u) + i;
                        let total = arcs[forth] + arcs[back];
                        arcs[forth] = total;
                        arcs[back] = total;
                    }
                }
            }
        }
    }
    let mut scale = match (config.normalized, graph.directed) {
        (true, _) if n > 1 => 1.0 / (n * (n - 1)) as f64,
        (false, false) => 0.5,
        _ => 1.0,
    };
    if let Some(k) = config.samples.filter(|k| *k < n && *k > 0) {
        scale *= n as f64 / k as f64;
    }
    arcs.iter_mut().for_each(|v| *v *= scale);
    Ok(arcs)
}

/// Betweenness sums per node and per arc.
type Sums = (Vec<f64>, Vec<f64>);

/// Unscaled Brandes sums over all sources or sampled pivots: per node, and
/// per arc when `with_arcs` (otherwise the arc sums are empty).
fn brandes(
    graph: &AnalysisGraph,
    config: &BetweennessConfig,
    with_arcs: bool,
    control: &Control,
) -> Result<Sums, Cancelled> {
    let n = graph.node_count();
    let arc_count = if with_arcs { graph.out_arc(n) } else { 0 };
    let sources: Vec<usize> = match config.samples {
        Some(k) if k < n => {
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
            let mut picked = sample(&mut rng, n, k).into_vec();
            picked.sort_unstable();
            picked
        }
        _ => (0..n).collect(),
    };
    let total = sources.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let mut values = vec![0.0; n];
    let mut arcs = vec![0.0; arc_count];
    // Chunks run in waves and are added in chunk order after each wave, so
    // memory holds one wave of partial sums, not one per chunk.
    for wave in sources.chunks(SOURCE_CHUNK * CHUNKS_PER_WAVE) {
        let partials: Vec<Result<Sums, Cancelled>> = wave
            .par_chunks(SOURCE_CHUNK)
            .map(|chunk| {
                let mut state = BrandesState::new(n);
                let mut sums = vec![0.0; n];
                let mut arc_sums = vec![0.0; arc_count];
                for &s in chunk {
                    control.check()?;
                    let arcs = with_arcs.then_some(&mut arc_sums[..]);
                    state.accumulate(graph, s, config.weighted, &mut sums, arcs);
                    let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    control.progress("betweenness", finished, total);
                }
                Ok((sums, arc_sums))
            })
            .collect();
        for partial in partials {
            let (sums, arc_sums) = partial?;
            values.iter_mut().zip(sums).for_each(|(v, x)| *v += x);
            arcs.iter_mut().zip(arc_sums).for_each(|(v, x)| *v += x);
        }
    }
    Ok((values, arcs))
}

/// Reusable buffers for one Brandes pass.
struct BrandesState {
    sigma: Vec<f64>,
    dist: Vec<f64>,
    delta: Vec<f64>,
    /// For each node its predecessors on shortest paths, as (node, arc into it).
    preds: Vec<Vec<(u32, u32)>>,
    settled: Vec<bool>,
    order: Vec<u32>,
}

#[derive(PartialEq)]
struct Queued(f64, u32);

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// A min-heap on distance, ties by node.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then_with(|| other.1.cmp(&self.1))
    }
}

impl BrandesState {
    fn new(n: usize) -> Self {
        BrandesState {
            sigma: vec![0.0; n],
            dist: vec![f64::INFINITY; n],
            delta: vec![0.0; n],
            preds: vec![Vec::new(); n],
            settled: vec![false; n],
            order: Vec::with_capacity(n),
        }
    }

    /// Adds the dependencies of source `s` to node sums and, if given, arc sums.
    fn accumulate(
        &mut self,
        graph: &AnalysisGraph,
        s: usize,
        weighted: bool,
        sums: &mut [f64],
        mut arc_sums: Option<&mut [f64]>,
    ) {
        for &v in &self.order {
            let v = v as usize;
            self.sigma[v] = 0.0;
            self.dist[v] = f64::INFINITY;
            self.delta[v] = 0.0;
            self.preds[v].clear();
            self.settled[v] = false;
        }
        self.order.clear();
        self.sigma[s] = 1.0;
        self.dist[s] = 0.0;
        if weighted {
            self.dijkstra(graph, s);
        } else {
            self.bfs(graph, s);
        }
        for &w in self.order.iter().rev() {
            let w = w as usize;
            for &(v, arc) in &self.preds[w] {
                let v = v as usize;
                let share = self.sigma[v] / self.sigma[w] * (1.0 + self.delta[w]);
                self.delta[v] += share;
                if let Some(arc_sums) = arc_sums.as_deref_mut() {
                    arc_sums[arc as usize] += share;
                }
            }
            if w != s {
                sums[w] += self.delta[w];
            }
        }
    }

    fn bfs(&mut self, graph: &AnalysisGraph, s: usize) {
        let mut queue = VecDeque::from([s as u32]);
        while let Some(v) = queue.pop_front() {
            self.order.push(v);
            let v = v as usize;
            let first_arc = graph.out_arc(v);
            for (i, &w) in graph.out_neighbors(v).iter().enumerate() {
                let wi = w as usize;
                if self.dist[wi].is_infinite() {
                    self.dist[wi] = self.dist[v] + 1.0;
                    queue.push_back(w);
                }
                if self.dist[wi] == self.dist[v] + 1.0 {
                    self.sigma[wi] += self.sigma[v];
                    self.preds[wi].push((v as u32, (first_arc + i) as u32));
                }
            }
        }
    }

    fn dijkstra(&mut self, graph: &AnalysisGraph, s: usize) {
        let mut heap = BinaryHeap::from([Queued(0.0, s as u32)]);
        while let Some(Queued(d, v)) = heap.pop() {
            let vi = v as usize;
            if self.settled[vi] {
                continue;
            }
            self.settled[vi] = true;
            self.order.push(v);
            let first_arc = graph.out_arc(vi);
            for (i, (&w, &weight)) in graph.out_neighbors(vi).iter().zip(graph.out_weights(vi)).enumerate() {
                let arc = (first_arc + i) as u32;
                let wi = w as usize;
                if self.settled[wi] {
                    continue;
                }
                // Exact comparison, as NetworkX: equal lengths reached by the
                // same additions compare equal.
                let candidate = d + 1.0 / weight;
                if candidate < self.dist[wi] {
                    self.dist[wi] = candidate;
                    self.sigma[wi] = self.sigma[vi];
                    self.preds[wi].clear();
                    self.preds[wi].push((v, arc));
                    heap.push(Queued(candidate, w));
                } else if candidate == self.dist[wi] {
                    self.sigma[wi] += self.sigma[vi];
                    self.preds[wi].push((v, arc));
                }
            }
        }
    }
}

/// Distances to `v` from every node that reaches it (following edges forward,
/// so walking in-edges backwards from v), by BFS or by Dijkstra on 1/weight.
/// Calls `visit(distance)` for each such node other than v.
fn incoming_distances(graph: &AnalysisGraph, v: usize, weighted: bool, mut visit: impl FnMut(f64)) {
    let n = graph.node_count();
    let mut dist = vec![f64::INFINITY; n];
    dist[v] = 0.0;
    if !weighted {
        let mut queue = VecDeque::from([v]);
        while let Some(u) = queue.pop_front() {
            for &w in graph.in_neighbors(u) {
                let w = w as usize;
                if dist[w].is_infinite() {
                    dist[w] = dist[u] + 1.0;
                    visit(dist[w]);
                    queue.push_back(w);
                }
            }
        }
        return;
    }
    let mut heap = BinaryHeap::from([Queued(0.0, v as u32)]);
    let mut done = vec![false; n];
    while let Some(Queued(d, u)) = heap.pop() {
        let u = u as usize;
        if done[u] {
            continue;
        }
        done[u] = true;
        if u != v {
            visit(d);
        }
        for (&w, &weight) in graph.in_neighbors(u).iter().zip(graph.in_weights(u)) {
            let w = w as usize;
            let candidate = d + 1.0 / weight;
            if candidate < dist[w] {
                dist[w] = candidate;
                heap.push(Queued(candidate, w as u32));
            }
        }
    }
}

fn per_node(
    graph: &AnalysisGraph,
    phase: &str,
    control: &Control,
    score: impl Fn(usize) -> f64 + Sync,
) -> Result<Scores, Cancelled> {
    let n = graph.node_count();
    let done = std::sync::atomic::AtomicU64::new(0);
    let values: Result<Vec<f64>, Cancelled> = (0..n)
        .into_par_iter()
        .map(|v| {
            control.check()?;
            let value = score(v);
            let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            control.progress(phase, finished, n as u64);
            Ok(value)
        })
        .collect();
    Ok(Scores::exact(values?))
}

/// Closeness in Wasserman and Faust's form (NetworkX's `wf_improved=True`).
pub fn closeness(graph: &AnalysisGraph, weighted: bool, control: &Control) -> Result<Scores, Cancelled> {
    let n = graph.node_count();
    per_node(graph, "closeness", control, |v| {
        let (mut reached, mut total) = (0usize, 0.0);
        incoming_distances(graph, v, weighted, |d| {
            reached += 1;
            total += d;
        });
        if total <= 0.0 || n <= 1 {
            return 0.0;
        }
        let r = reached as f64;
        (r / total) * (r / (n - 1) as f64)
    })
}

/// Harmonic centrality: Σ 1/d over the nodes that reach v.
pub fn harmonic(graph: &AnalysisGraph, weighted: bool, control: &Control) -> Result<Scores, Cancelled> {
    per_node(graph, "harmonic", control, |v| {
        let mut total = 0.0;
        incoming_distances(graph, v, weighted, |d| total += 1.0 / d);
        total
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct EigenvectorConfig {
    pub tolerance: f64,
    pub max_iterations: u32,
    pub weighted: bool,
}

impl Default for EigenvectorConfig {
    fn default() -> Self {
        EigenvectorConfig {
            tolerance: 1e-12,
            max_iterations: 1000,
            weighted: true,
        }
    }
}

/// Eigenvector centrality by power iteration on A + I (the shift keeps the
/// iteration from oscillating on bipartite graphs without moving the vector).
pub fn eigenvector(graph: &AnalysisGraph, config: &EigenvectorConfig, control: &Control) -> Result<Scores, Cancelled> {
    let n = graph.node_count();
    if n == 0 {
        return Ok(Scores::exact(Vec::new()));
    }
    let mut x = vec![1.0 / n as f64; n];
    let mut next = vec![0.0; n];
    for iteration in 1..=config.max_iterations {
        control.check()?;
        control.progress("eigenvector", iteration as u64, config.max_iterations as u64);
        next.par_iter_mut().enumerate().for_each(|(v, slot)| {
            let incoming: f64 = if config.weighted {
                graph
                    .in_neighbors(v)
                    .iter()
                    .zip(graph.in_weights(v))
                    .map(|(&u, w)| x[u as usize] * w)
                    .sum()
            } else {
                graph.in_neighbors(v).iter().map(|&u| x[u as usize]).sum()
            };
            *slot = x[v] + incoming;
        });
        let norm = next.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm == 0.0 {
            return Ok(Scores::exact(next));
        }
        next.iter_mut().for_each(|a| *a /= norm);
        let change: f64 = x.iter().zip(&next).map(|(a, b)| (a - b).abs()).sum();
        std::mem::swap(&mut x, &mut next);
        if change < n as f64 * config.tolerance {
            return Ok(Scores {
                values: x,
                iterations: iteration,
                converged: true,
            });
        }
    }
    Ok(Scores {
        values: x,
        iterations: config.max_iterations,
        converged: false,
    })
}

/// Core numbers on the undirected simple graph underneath (neighbours either way).
pub fn k_core(graph: &AnalysisGraph) -> Scores {
    let n = graph.node_count();
    let neighbors: Vec<Vec<u32>> = (0..n)
        .map(|v| {
            let mut all: Vec<u32> = graph
                .out_neighbors(v)
                .iter()
                .chain(graph.in_neighbors(v))
                .copied()
                .collect();
            all.sort_unstable();
            all.dedup();
            all
        })
        .collect();
    // Batagelj-Zaversnik: bucket nodes by degree, peel in increasing order.
    let mut degree: Vec<usize> = neighbors.iter().map(Vec::len).collect();
    let max_degree = degree.iter().copied().max().unwrap_or(0);
    let mut bins = vec![0usize; max_degree + 1];
    for &d in &degree {
        bins[d] += 1;
    }
    let mut start = 0;
    for bin in bins.iter_mut() {
        let count = *bin;
        *bin = start;
        start += count;
    }
    let mut position = vec![0usize; n];
    let mut sorted = vec![0usize; n];
    for v in 0..n {
        position[v] = bins[degree[v]];
        sorted[position[v]] = v;
        bins[degree[v]] += 1;
    }
    for d in (1..=max_degree).rev() {
        bins[d] = bins[d - 1];
    }
    if !bins.is_empty() {
        bins[0] = 0;
    }
    for i in 0..n {
        let v = sorted[i];
        for &u in &neighbors[v] {
            let u = u as usize;
            if degree[u] > degree[v] {
                let du = degree[u];
                let pu = position[u];
                let pw = bins[du];
                let w = sorted[pw];
                if u != w {
                    position[u] = pw;
                    position[w] = pu;
                    sorted[pu] = w;
                    sorted[pw] = u;
                }
                bins[du] += 1;
                degree[u] -= 1;
            }
        }
    }
    Scores::exact(degree.into_iter().map(|d| d as f64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Id;
    use proptest::prelude::*;

    fn graph(n: usize, arcs: &[(u32, u32, f64)]) -> AnalysisGraph {
        let ids: Vec<Id> = (0..n).map(|i| Id::from(format!("n{i}"))).collect();
        AnalysisGraph::from_edges(ids, vec![String::new(); n], arcs, true, true)
    }

    /// PageRank as NetworkX defines it, by plain power iteration on the arc
    /// list: the specification the component-wise solver is held to.
    fn power_iteration(n: usize, arcs: &[(u32, u32, f64)], weighted: bool, jump: &[f64]) -> Vec<f64> {
        let weight = |w: f64| if weighted { w } else { 1.0 };
        let mut out = vec![0.0; n];
        for &(u, _, w) in arcs {
            out[u as usize] += weight(w);
        }
        let mut x = jump.to_vec();
        for _ in 0..10_000 {
            let dangling: f64 = (0..n).filter(|&u| out[u] == 0.0).map(|u| x[u]).sum();
            let mut next: Vec<f64> = jump.iter().map(|j| 0.15 * j + 0.85 * dangling * j).collect();
            for &(u, v, w) in arcs {
                next[v as usize] += 0.85 * x[u as usize] * weight(w) / out[u as usize];
            }
            let change: f64 = next.iter().zip(&x).map(|(a, b)| (a - b).abs()).sum();
            x = next;
            if change < 1e-15 {
                break;
            }
        }
        x
    }

    /// Arcs without repeats or self-loops (the graph merges the one and drops
    /// the other).
    fn arcs(n: usize, raw: Vec<(u32, u32, u8)>) -> Vec<(u32, u32, f64)> {
        let mut seen = std::collections::HashSet::new();
        raw.into_iter()
            .filter(|(u, v, _)| u != v && (*u as usize) < n && (*v as usize) < n && seen.insert((*u, *v)))
            .map(|(u, v, w)| (u, v, 1.0 + w as f64))
            .collect()
    }

    #[test]
    fn a_network_without_cycles_is_solved_in_one_pass() {
        // A supply chain: 0 -> 1 -> 2, 0 -> 2, 3 -> 2.
        let g = graph(4, &[(0, 1, 1.0), (1, 2, 1.0), (0, 2, 1.0), (3, 2, 1.0)]);
        let scores = pagerank(&g, &PageRankConfig::default(), &Control::none()).unwrap();
        assert_eq!(scores.iterations, 1);
        assert!(scores.converged);
        let jump = vec![0.25; 4];
        let expected = power_iteration(4, &[(0, 1, 1.0), (1, 2, 1.0), (0, 2, 1.0), (3, 2, 1.0)], true, &jump);
        for (a, b) in scores.values.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-12, "{a} against {b}");
        }
    }

    #[test]
    fn a_component_that_cannot_converge_in_the_sweeps_allowed_says_so() {
        let cycle = [(0, 1, 1.0), (1, 2, 1.0), (2, 0, 1.0), (2, 1, 1.0)];
        let config = PageRankConfig {
            max_iterations: 1,
            tolerance: 1e-12,
            ..PageRankConfig::default()
        };
        let scores = pagerank(&graph(3, &cycle), &config, &Control::none()).unwrap();
        assert!(!scores.converged);
        assert_eq!(scores.iterations, 1);
    }

    proptest! {
        #[test]
        fn matches_power_iteration_with_cycles_dangling_nodes_weights_and_a_personal_jump(
            n in 1usize..30,
            raw in proptest::collection::vec((0u32..30, 0u32..30, 0u8..4), 0..90),
            weighted: bool,
            personal in proptest::option::of(proptest::collection::vec(0u8..5, 30)),
        ) {
            let arcs = arcs(n, raw);
            let personalization = personal
                .map(|p| p[..n].iter().map(|&x| x as f64).collect::<Vec<f64>>())
                .filter(|p| p.iter().sum::<f64>() > 0.0);
            let jump: Vec<f64> = match &personalization {
                Some(p) => p.iter().map(|x| x / p.iter().sum::<f64>()).collect(),
                None => vec![1.0 / n as f64; n],
            };
            let config = PageRankConfig {
                weighted,
                tolerance: 1e-14,
                personalization,
                ..PageRankConfig::default()
            };
            let scores = pagerank(&graph(n, &arcs), &config, &Control::none()).unwrap();
            prop_assert!(scores.converged);
            let expected = power_iteration(n, &arcs, weighted, &jump);
            for (v, (a, b)) in scores.values.iter().zip(&expected).enumerate() {
                prop_assert!((a - b).abs() < 1e-10, "node {}: {} against {}", v, a, b);
            }
        }
    }
}
