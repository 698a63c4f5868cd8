//! Communities: groups of nodes tied more densely among themselves than to
//! the rest (the supporting systems around a core firm, the parks of a
//! creative cluster).
//!
//! Community detection treats the graph as undirected: the weight between u
//! and v is the sum of the arcs u→v and v→u. Modularity (Newman 2004, with
//! resolution γ as in Reichardt and Bornholdt 2006) is
//! Q = Σ_c [ W_c / 2m − γ (K_c / 2m)² ], with W_c the weight inside c counted
//! from both ends, K_c the summed degree of c and 2m the summed degree of all
//! (`nx.community.modularity` on undirected graphs).

use std::collections::{HashMap, VecDeque};

use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::analysis::{Cancelled, Control};
use crate::graph::AnalysisGraph;

/// A community per node, numbered 0.. by decreasing size (ties by smallest
/// member), so labels are stable for a given partition.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    pub community: Vec<u32>,
    pub sizes: Vec<usize>,
    pub modularity: f64,
    /// Sweeps (label propagation) or levels (Louvain) run.
    pub iterations: u32,
    pub converged: bool,
}

/// The undirected, weighted view used by community detection.
struct Symmetric {
    neighbors: Vec<Vec<(u32, f64)>>,
}

impl Symmetric {
    fn new(graph: &AnalysisGraph) -> Symmetric {
        let n = graph.node_count();
        let neighbors = (0..n)
            .map(|v| {
                let mut all: Vec<(u32, f64)> = graph
                    .out_neighbors(v)
                    .iter()
                    .copied()
                    .zip(graph.out_weights(v).iter().copied())
                    .collect();
                if graph.directed {
                    all.extend(
                        graph
                            .in_neighbors(v)
                            .iter()
                            .copied()
                            .zip(graph.in_weights(v).iter().copied()),
                    );
                    all.sort_unstable_by_key(|(u, _)| *u);
                    all.dedup_by(|b, a| {
                        if a.0 == b.0 {
                            a.1 += b.1;
                            true
                        } else {
                            false
                        }
                    });
                }
                all
            })
            .collect();
        Symmetric { neighbors }
    }
}

/// Renumbers communities by decreasing size, ties by smallest member.
fn canonical(labels: &[u32]) -> (Vec<u32>, Vec<usize>) {
    let mut first_and_size: HashMap<u32, (usize, usize)> = HashMap::new();
    for (v, &c) in labels.iter().enumerate() {
        let entry = first_and_size.entry(c).or_insert((v, 0));
        entry.1 += 1;
    }
    let mut order: Vec<(u32, usize, usize)> = first_and_size.into_iter().map(|(c, (f, s))| (c, f, s)).collect();
    order.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)));
    let renumber: HashMap<u32, u32> = order.iter().enumerate().map(|(i, (c, _, _))| (*c, i as u32)).collect();
    let sizes = order.iter().map(|(_, _, s)| *s).collect();
    (labels.iter().map(|c| renumber[c]).collect(), sizes)
}

fn modularity_of(sym: &Symmetric, labels: &[u32], resolution: f64) -> f64 {
    let communities = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut inside = vec![0.0; communities];
    let mut degree = vec![0.0; communities];
    let mut two_m = 0.0;
    for (v, list) in sym.neighbors.iter().enumerate() {
        let c = labels[v] as usize;
        for &(u, w) in list {
            two_m += w;
            degree[c] += w;
            if labels[u as usize] as usize == c {
                inside[c] += w;
            }
        }
    }
    if two_m == 0.0 {
        return 0.0;
    }
    inside
        .iter()
        .zip(&degree)
        .map(|(w_in, k)| w_in / two_m - resolution * (k / two_m).powi(2))
        .sum()
}

/// Modularity of any labelling of the graph's nodes.
pub fn modularity(graph: &AnalysisGraph, labels: &[u32], resolution: f64) -> f64 {
    modularity_of(&Symmetric::new(graph), labels, resolution)
}

fn finish(sym: &Symmetric, labels: &[u32], resolution: f64, iterations: u32, converged: bool) -> Partition {
    let (community, sizes) = canonical(labels);
    let modularity = modularity_of(sym, &community, resolution);
    Partition {
        community,
        sizes,
        modularity,
        iterations,
        converged,
    }
}

/// Weakly connected components (links followed either way).
pub fn connected_components(graph: &AnalysisGraph) -> Partition {
    let n = graph.node_count();
    // petgraph's union-find, as places and virtual integration use.
    let mut joined = petgraph::unionfind::UnionFind::<u32>::new(n);
    for v in 0..n {
        for &u in graph.out_neighbors(v) {
            joined.union(v as u32, u);
        }
    }
    // `finish` numbers the components canonically, so the representative
    // each happens to get does not matter.
    let labels: Vec<u32> = joined.into_labeling();
    finish(&Symmetric::new(graph), &labels, 1.0, 1, true)
}

/// Strongly connected components (Tarjan's algorithm without recursion, so
/// a deep supply chain cannot overflow the stack).
pub fn strongly_connected_components(graph: &AnalysisGraph) -> Partition {
    let mut labels = vec![0u32; graph.node_count()];
    for (c, component) in super::components::strong_components(graph).iter().enumerate() {
        for &v in component {
            labels[v as usize] = c as u32;
        }
    }
    finish(&Symmetric::new(graph), &labels, 1.0, 1, true)
}

#[derive(Clone, Debug, PartialEq)]
pub struct LabelPropagationConfig {
    pub seed: u64,
    pub max_iterations: u32,
}

impl Default for LabelPropagationConfig {
    fn default() -> Self {
        LabelPropagationConfig {
            seed: 0,
            max_iterations: 100,
        }
    }
}

/// Asynchronous label propagation (Raghavan, Albert and Kumara 2007): in a
/// seeded random order each node takes the label with the most weight among
/// its neighbours (ties to the smallest label), until no label changes.
pub fn label_propagation(
    graph: &AnalysisGraph,
    config: &LabelPropagationConfig,
    control: &Control,
) -> Result<Partition, Cancelled> {
    let sym = Symmetric::new(graph);
    let n = graph.node_count();
    let mut labels: Vec<u32> = (0..n as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut weight_of = vec![0.0f64; n];
    let mut touched: Vec<u32> = Vec::new();
    for sweep in 1..=config.max_iterations {
        control.check()?;
        control.progress("label_propagation", sweep as u64, config.max_iterations as u64);
        order.shuffle(&mut rng);
        let mut changed = false;
        for &v in &order {
            if sym.neighbors[v].is_empty() {
                continue;
            }
            for &(u, w) in &sym.neighbors[v] {
                let label = labels[u as usize];
                if weight_of[label as usize] == 0.0 {
                    touched.push(label);
                }
                weight_of[label as usize] += w;
            }
            let mut best = labels[v];
            let mut best_weight = weight_of[best as usize];
            for &label in &touched {
                let w = weight_of[label as usize];
                if w > best_weight || (w == best_weight && label < best) {
                    best = label;
                    best_weight = w;
                }
            }
            for &label in &touched {
                weight_of[label as usize] = 0.0;
            }
            touched.clear();
            if best != labels[v] {
                labels[v] = best;
                changed = true;
            }
        }
        if !changed {
            return Ok(finish(&sym, &labels, 1.0, sweep, true));
        }
    }
    Ok(finish(&sym, &labels, 1.0, config.max_iterations, false))
}

#[derive(Clone, Debug, PartialEq)]
pub struct LouvainConfig {
    /// γ: above 1 favours smaller communities, below 1 larger ones.
    pub resolution: f64,
    pub seed: u64,
    /// Stop climbing the hierarchy again when a pass over the original nodes
    /// gains less modularity than this.
    pub min_gain: f64,
    pub max_levels: u32,
}

impl Default for LouvainConfig {
    fn default() -> Self {
        LouvainConfig {
            resolution: 1.0,
            seed: 0,
            min_gain: 1e-7,
            max_levels: 50,
        }
    }
}

/// A level of the Louvain hierarchy: a weighted undirected graph whose
/// diagonal holds the weight inside each (aggregated) node.
struct Level {
    neighbors: Vec<Vec<(u32, f64)>>,
    self_weight: Vec<f64>,
}

/// Louvain (Blondel, Guillaume, Lambiotte and Lefebvre 2008): move nodes to
/// the neighbouring community with the best modularity gain until none
/// improves, aggregate communities into nodes, repeat. Node order is shuffled
/// with `seed`, so a seed gives one result.
pub fn louvain(graph: &AnalysisGraph, config: &LouvainConfig, control: &Control) -> Result<Partition, Cancelled> {
    let sym = Symmetric::new(graph);
    let n = graph.node_count();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    // membership[v]: v's node in the current level.
    let mut membership: Vec<u32> = (0..n as u32).collect();
    let mut level = Level {
        neighbors: sym.neighbors.clone(),
        self_weight: vec![0.0; n],
    };
    let two_m: f64 = level.neighbors.iter().flatten().map(|(_, w)| w).sum();
    if two_m == 0.0 {
        return Ok(finish(&sym, &membership, config.resolution, 0, true));
    }
    let base = Level {
        neighbors: sym.neighbors.clone(),
        self_weight: vec![0.0; n],
    };
    let mut levels = 0;
    let mut best = f64::NEG_INFINITY;
    loop {
        loop {
            control.check()?;
            levels += 1;
            control.progress("louvain", levels as u64, config.max_levels as u64);
            let singletons: Vec<u32> = (0..level.neighbors.len() as u32).collect();
            let (community, moved) = local_moving(&level, singletons, two_m, config, &mut rng, control)?;
            if !moved {
                break;
            }
            let (renumbered, count) = compact(&community);
            for m in membership.iter_mut() {
                *m = renumbered[*m as usize];
            }
            level = aggregate(&level, &renumbered, count);
            if levels >= config.max_levels {
                return Ok(finish(&sym, &membership, config.resolution, levels, false));
            }
        }
        // A sweep over the original nodes, starting from the partition found:
        // a node that joined a community early, before it grew, can still
        // leave. If that helps, climb the hierarchy again from there.
        let (refined, moved) = local_moving(&base, membership.clone(), two_m, config, &mut rng, control)?;
        let quality = modularity_of(&sym, &refined, config.resolution);
        if !moved || quality <= best + config.min_gain {
            let keep = if quality > best { refined } else { membership };
            return Ok(finish(&sym, &keep, config.resolution, levels, true));
        }
        best = quality;
        let (renumbered, count) = compact(&refined);
        membership = renumbered.clone();
        level = aggregate(&base, &renumbered, count);
    }
}

/// Leiden (Traag, Waltman and van Eck 2019): Louvain's moving phase, then a
/// refinement that splits each community into well-connected parts, merging
/// singletons only into sub-communities of their own community that stay
/// well connected; the refined parts are aggregated, the unrefined
/// communities seed the next level. This guarantees connected communities.
/// The refinement here takes the best merge (Leiden's randomness parameter
/// θ → 0), so a seed gives one result.
pub fn leiden(graph: &AnalysisGraph, config: &LouvainConfig, control: &Control) -> Result<Partition, Cancelled> {
    let sym = Symmetric::new(graph);
    let n = graph.node_count();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut level = Level {
        neighbors: sym.neighbors.clone(),
        self_weight: vec![0.0; n],
    };
    let two_m: f64 = level.neighbors.iter().flatten().map(|(_, w)| w).sum();
    // membership[v]: v's node in the current level; start: the partition of
    // the current level's nodes that moving starts from.
    let mut membership: Vec<u32> = (0..n as u32).collect();
    let mut start: Vec<u32> = (0..n as u32).collect();
    if two_m == 0.0 {
        return Ok(finish(&sym, &membership, config.resolution, 0, true));
    }
    let mut levels = 0;
    loop {
        control.check()?;
        levels += 1;
        control.progress("leiden", levels as u64, config.max_levels as u64);
        let (community, moved) = local_moving(&level, start.clone(), two_m, config, &mut rng, control)?;
        let refined = refine(&level, &community, two_m, config.resolution, &mut rng);
        let (refined, count) = compact(&refined);
        let done = !moved || count == level.neighbors.len() || levels >= config.max_levels;
        if done {
            let labels: Vec<u32> = membership.iter().map(|&m| community[m as usize]).collect();
            return Ok(finish(
                &sym,
                &labels,
                config.resolution,
                levels,
                levels < config.max_levels,
            ));
        }
        // Each refined part starts the next level inside its unrefined community.
        let mut next_start = vec![0u32; count];
        for (v, &r) in refined.iter().enumerate() {
            next_start[r as usize] = community[v];
        }
        let (next_start, _) = compact(&next_start);
        for m in membership.iter_mut() {
            *m = refined[*m as usize];
        }
        level = aggregate(&level, &refined, count);
        start = next_start;
    }
}

/// Leiden's refinement of one level's partition: returns sub-community labels.
fn refine(level: &Level, community: &[u32], two_m: f64, gamma: f64, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let n = level.neighbors.len();
    let degree: Vec<f64> = (0..n)
        .map(|v| level.neighbors[v].iter().map(|(_, w)| w).sum::<f64>() + level.self_weight[v])
        .collect();
    let mut community_total = vec![0.0; n];
    for v in 0..n {
        community_total[community[v] as usize] += degree[v];
    }
    // Weight from each node to the rest of its community.
    let inside: Vec<f64> = (0..n)
        .map(|v| {
            level.neighbors[v]
                .iter()
                .filter(|(u, _)| community[*u as usize] == community[v])
                .map(|(_, w)| w)
                .sum()
        })
        .collect();
    let mut sub: Vec<u32> = (0..n as u32).collect();
    let mut sub_total = degree.clone();
    // Weight from each sub-community to the rest of its community.
    let mut sub_external = inside.clone();
    let mut singleton = vec![true; n];
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut weight_to = vec![0.0f64; n];
    let mut touched: Vec<u32> = Vec::new();
    for &v in &order {
        if !singleton[v] {
            continue;
        }
        let c = community[v];
        let k = degree[v];
        let total_c = community_total[c as usize];
        // Only a node well connected to its community may join a part of it.
        if inside[v] < gamma * k * (total_c - k) / two_m {
            continue;
        }
        for &(u, w) in &level.neighbors[v] {
            if community[u as usize] != c {
                continue;
            }
            let s = sub[u as usize];
            if weight_to[s as usize] == 0.0 {
                touched.push(s);
            }
            weight_to[s as usize] += w;
        }
        let mut best: Option<(u32, f64)> = None;
        for &s in &touched {
            if s == sub[v] {
                continue;
            }
            let total_s = sub_total[s as usize];
            let well_connected = sub_external[s as usize] >= gamma * total_s * (total_c - total_s) / two_m;
            let gain = weight_to[s as usize] - gamma * total_s * k / two_m;
            if well_connected && gain >= 0.0 && best.is_none_or(|(b, g)| gain > g || (gain == g && s < b)) {
                best = Some((s, gain));
            }
        }
        if let Some((s, _)) = best {
            let own = sub[v];
            sub[v] = s;
            sub_total[own as usize] -= k;
            sub_total[s as usize] += k;
            sub_external[s as usize] += inside[v] - 2.0 * weight_to[s as usize];
            sub_external[own as usize] = 0.0;
            singleton[v] = false;
            // The part v joined is no longer a singleton either.
            for &(u, _) in &level.neighbors[v] {
                if sub[u as usize] == s {
                    singleton[u as usize] = false;
                }
            }
        }
        for &s in &touched {
            weight_to[s as usize] = 0.0;
        }
        touched.clear();
    }
    sub
}

fn compact(community: &[u32]) -> (Vec<u32>, usize) {
    let mut map: HashMap<u32, u32> = HashMap::new();
    let renumbered = community
        .iter()
        .map(|c| {
            let next = map.len() as u32;
            *map.entry(*c).or_insert(next)
        })
        .collect();
    (renumbered, map.len())
}

/// How many node visits pass between checks of the deadline.
const CHECK_EVERY: u64 = 1 << 16;

/// A bound on one phase's work, in visits per node: far above what real
/// networks need (a few), it only stops moves that gain by rounding alone
/// from going round for ever.
const MAX_VISITS_PER_NODE: u64 = 64;

/// One level's local moving phase. Returns each node's community and whether
/// any node moved.
///
/// Nodes wait in a queue (the fast local move of Traag, Waltman and van Eck
/// 2019): all of them, shuffled, to begin with; afterwards only the
/// neighbours of a node that moved, outside its new community, are queued
/// again. Visiting every node in every sweep made some seeds crawl on large
/// networks: hundreds of sweeps over 1M nodes, each moving a few thousand.
/// The phase ends when nothing is queued: no node can gain by moving. Every
/// move raises modularity, so it does end; on the 1M-actor bench network it
/// took 19–24 s in all, where whole sweeps took 60 s to over 600 s.
fn local_moving(
    level: &Level,
    start: Vec<u32>,
    two_m: f64,
    config: &LouvainConfig,
    rng: &mut ChaCha8Rng,
    control: &Control,
) -> Result<(Vec<u32>, bool), Cancelled> {
    let n = level.neighbors.len();
    let degree: Vec<f64> = (0..n)
        .map(|v| level.neighbors[v].iter().map(|(_, w)| w).sum::<f64>() + level.self_weight[v])
        .collect();
    let mut community = start;
    let mut total: Vec<f64> = vec![0.0; n];
    for (v, &c) in community.iter().enumerate() {
        total[c as usize] += degree[v];
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(rng);
    let mut queue: VecDeque<u32> = order.into();
    let mut queued = vec![true; n];
    let mut link_to = vec![0.0f64; n];
    let mut touched: Vec<u32> = Vec::new();
    let mut moved_any = false;
    let gamma = config.resolution;
    let most_visits = MAX_VISITS_PER_NODE * n as u64;
    let mut visits = 0u64;
    while let Some(v) = queue.pop_front() {
        visits += 1;
        if visits.is_multiple_of(CHECK_EVERY) {
            control.check()?;
        }
        if visits > most_visits {
            break;
        }
        let v = v as usize;
        queued[v] = false;
        let own = community[v];
        let k = degree[v];
        for &(u, w) in &level.neighbors[v] {
            let c = community[u as usize];
            if link_to[c as usize] == 0.0 {
                touched.push(c);
            }
            link_to[c as usize] += w;
        }
        total[own as usize] -= k;
        // Gain of joining c, up to a constant factor 1/m: k_{v,c} − γ·tot_c·k_v/2m.
        let gain = |c: u32, link: f64| link - gamma * total[c as usize] * k / two_m;
        let stay = gain(own, link_to[own as usize]);
        let (mut best, mut best_gain) = (own, stay);
        for &c in &touched {
            let g = gain(c, link_to[c as usize]);
            if g > best_gain || (g == best_gain && c < best && best != own) {
                best = c;
                best_gain = g;
            }
        }
        total[best as usize] += k;
        if best != own {
            community[v] = best;
            moved_any = true;
            for &(u, _) in &level.neighbors[v] {
                let u = u as usize;
                if !queued[u] && community[u] != best {
                    queued[u] = true;
                    queue.push_back(u as u32);
                }
            }
        }
        for &c in &touched {
            link_to[c as usize] = 0.0;
        }
        touched.clear();
    }
    Ok((community, moved_any))
}

/// Collapses each community into one node; weights between communities add
/// up, weights inside become the node's self weight.
fn aggregate(level: &Level, community: &[u32], count: usize) -> Level {
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); count];
    for (v, &c) in community.iter().enumerate() {
        members[c as usize].push(v as u32);
    }
    let mut neighbors = Vec::with_capacity(count);
    let mut self_weight = vec![0.0; count];
    let mut weight_to = vec![0.0f64; count];
    let mut touched: Vec<u32> = Vec::new();
    for (c, group) in members.iter().enumerate() {
        for &v in group {
            self_weight[c] += level.self_weight[v as usize];
            for &(u, w) in &level.neighbors[v as usize] {
                let d = community[u as usize];
                if d as usize == c {
                    self_weight[c] += w;
                    continue;
                }
                if weight_to[d as usize] == 0.0 {
                    touched.push(d);
                }
                weight_to[d as usize] += w;
            }
        }
        touched.sort_unstable();
        neighbors.push(touched.iter().map(|&d| (d, weight_to[d as usize])).collect());
        for &d in &touched {
            weight_to[d as usize] = 0.0;
        }
        touched.clear();
    }
    Level { neighbors, self_weight }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Id;

    fn graph(n: usize, edges: &[(u32, u32)]) -> AnalysisGraph {
        let ids: Vec<Id> = (0..n).map(|i| Id::from(format!("n{i}"))).collect();
        let names = ids.iter().map(|i| i.to_string()).collect();
        let edges: Vec<(u32, u32, f64)> = edges.iter().map(|&(u, v)| (u, v, 1.0)).collect();
        AnalysisGraph::from_edges(ids, names, &edges, false, true)
    }

    /// Two triangles joined by one edge.
    fn barbell() -> AnalysisGraph {
        graph(6, &[(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)])
    }

    #[test]
    fn modularity_of_two_joined_triangles_by_hand() {
        // m = 7. Each triangle: inside weight 6 (3 edges, both ends), degree 7.
        // Q = 2 · (6/14 − (7/14)²) = 2 · (0.428571 − 0.25) = 0.357143.
        let q = modularity(&barbell(), &[0, 0, 0, 1, 1, 1], 1.0);
        assert!((q - 5.0 / 14.0).abs() < 1e-12, "{q}");
    }

    #[test]
    fn louvain_finds_the_two_triangles() {
        let p = louvain(&barbell(), &LouvainConfig::default(), &Control::none()).unwrap();
        assert_eq!(p.community, vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(p.sizes, vec![3, 3]);
    }

    #[test]
    fn label_propagation_separates_disconnected_groups() {
        let g = graph(6, &[(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)]);
        let p = label_propagation(&g, &LabelPropagationConfig::default(), &Control::none()).unwrap();
        assert_eq!(p.community, vec![0, 0, 0, 1, 1, 1]);
    }

    #[test]
    fn components_weak_and_strong() {
        let ids: Vec<Id> = (0..5).map(|i| Id::from(format!("n{i}"))).collect();
        let names = ids.iter().map(|i| i.to_string()).collect();
        // 0 -> 1 -> 2 -> 0 is a cycle; 3 -> 4 hangs off nothing.
        let g = AnalysisGraph::from_edges(
            ids,
            names,
            &[(0, 1, 1.0), (1, 2, 1.0), (2, 0, 1.0), (3, 4, 1.0)],
            true,
            true,
        );
        assert_eq!(connected_components(&g).sizes, vec![3, 2]);
        assert_eq!(strongly_connected_components(&g).sizes, vec![3, 1, 1]);
    }
}
