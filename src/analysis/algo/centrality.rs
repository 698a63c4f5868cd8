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
    /// Stop when the L1 change of the vector in one iteration falls below this.
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

/// Graphs with fewer edges than this are iterated on the calling thread.
const PARALLEL_EDGES: usize = 50_000;
/// Nodes per chunk of PageRank's parallel pass (its partial sums are added in
/// chunk order).
const CHANGE_CHUNK: usize = 4_096;

/// PageRank by power iteration, pulling along in-edges (each node's new score
/// is computed independently, in parallel, and deterministically).
pub fn pagerank(graph: &AnalysisGraph, config: &PageRankConfig, control: &Control) -> Result<Scores, Cancelled> {
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
    let out_weight: Vec<f64> = (0..n)
        .map(|v| {
            if config.weighted {
                graph.out_weights(v).iter().sum()
            } else {
                graph.out_neighbors(v).len() as f64
            }
        })
        .collect();
    // 1 / out-weight, 0 for a dangling node (whose rank is spread by `jump`).
    let inverse: Vec<f64> = out_weight
        .iter()
        .map(|w| if *w > 0.0 { 1.0 / w } else { 0.0 })
        .collect();
    let dangling_nodes: Vec<u32> = (0..n as u32).filter(|v| out_weight[*v as usize] == 0.0).collect();
    let mut x = jump.clone();
    let mut next = vec![0.0; n];
    // share[u]: what u passes per unit of edge weight.
    let mut share = vec![0.0; n];
    let d = config.damping;
    // Each node's sum is the same either way; a small graph is done before
    // the thread pool would have woken up (the alert engine runs PageRank
    // on every affected cluster's own network).
    let parallel = graph.edge_count() >= PARALLEL_EDGES;
    for iteration in 1..=config.max_iterations {
        control.check()?;
        control.progress("pagerank", iteration as u64, config.max_iterations as u64);
        let dangling: f64 = dangling_nodes.iter().map(|&v| x[v as usize]).sum();
        let spread = |(u, slot): (usize, &mut f64)| *slot = x[u] * inverse[u];
        if parallel {
            share.par_iter_mut().enumerate().for_each(spread);
        } else {
            share.iter_mut().enumerate().for_each(spread);
        }
        // One pass computes every node's new rank and how far it moved.
        let pull = |(v, slot): (usize, &mut f64)| -> f64 {
            let sources = graph.in_neighbors(v);
            let incoming: f64 = if config.weighted {
                sources
                    .iter()
                    .zip(graph.in_weights(v))
                    .map(|(&u, w)| share[u as usize] * w)
                    .sum()
            } else {
                sources.iter().map(|&u| share[u as usize]).sum()
            };
            *slot = d * (incoming + dangling * jump[v]) + (1.0 - d) * jump[v];
            (*slot - x[v]).abs()
        };
        let change: f64 = if parallel {
            // Summed in fixed chunks, so the total does not depend on the
            // number of threads.
            let moved: Vec<f64> = next
                .par_chunks_mut(CHANGE_CHUNK)
                .enumerate()
                .map(|(c, chunk)| {
                    chunk
                        .iter_mut()
                        .enumerate()
                        .map(|(i, slot)| pull((c * CHANGE_CHUNK + i, slot)))
                        .sum::<f64>()
                })
                .collect();
            moved.iter().sum()
        } else {
            next.iter_mut().enumerate().map(pull).sum()
        };
        std::mem::swap(&mut x, &mut next);
        if change < config.tolerance {
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
