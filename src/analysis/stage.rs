//! Which of the article's three stages (三步走) a cluster is in, with the
//! evidence for each. Every factor is a figure in [0, 1] computed from the
//! network; each stage's score combines its factors; `docs/stages.md` gives
//! the formulas and the reasons for the defaults (`StageConfig`).
//!
//! * REGIONAL_INTEGRATION (区域一体化整合): ties stay inside, the chain is
//!   fairly complete there, firms specialise (vertical disintegration), ties
//!   are local, often around a core firm (hub and spoke). A weighted mean;
//!   the stage also needs `min_completeness` of the chain inside.
//! * GLOBAL_VALUE_CHAIN (价值链全球整合): many ties abroad, foreign capital,
//!   and weight on the high-value segments of the smile curve. A weighted mean.
//! * VIRTUAL_INTEGRATION (价值链虚拟整合): separate places, each specialised
//!   differently, interacting well above what their sizes give, joined by
//!   virtual ties; plus the four relations with other clusters (overlap,
//!   substitution, crossing, fusion). The first three are all needed, so they
//!   are combined by a geometric mean: (1 − r) · ∛(virtual · distinctness ·
//!   interaction) + r · relations.
//!
//! The verdict is the most advanced stage whose score reaches its threshold
//! (the stages are steps: a cluster in a later one keeps much of the earlier
//! ones, as Changning keeps its local ties), or UNCLASSIFIED.

// FxHash: assess hashes every actor index and industry code of the network.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::{
    core_firms::cores_of,
    fusion::IndustryLevel,
    places::{places, Place},
    stage_config::StageConfig,
};
use crate::{
    graph::GraphFilter,
    model::{Actor, ActorKind, Channel, Country, Date, Id, LinkKind, Segment},
    store::{Ix, Network},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Stage {
    Unclassified,
    RegionalIntegration,
    GlobalValueChain,
    VirtualIntegration,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Unclassified => "UNCLASSIFIED",
            Stage::RegionalIntegration => "REGIONAL_INTEGRATION",
            Stage::GlobalValueChain => "GLOBAL_VALUE_CHAIN",
            Stage::VirtualIntegration => "VIRTUAL_INTEGRATION",
        }
    }
}

/// The figures behind the factors, as counted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    pub members: u64,
    pub enterprises: u64,
    /// The most common country of the members.
    pub home_country: String,
    /// Links with an end in the cluster.
    pub ties: u64,
    pub internal_ties: u64,
    /// Ties to actors outside the cluster in the home country (or of unknown country).
    pub domestic_external_ties: u64,
    /// Of those, ties to members of clusters in another region (the
    /// clusters' `region` differs); the rest are in the same region or to
    /// actors in no cluster.
    pub other_region_ties: u64,
    /// Ties to actors in another country.
    pub foreign_ties: u64,
    /// Ties over the VIRTUAL channel or of kind PLATFORM.
    pub virtual_ties: u64,
    /// Value-chain segments performed inside the cluster.
    pub segments_covered: Vec<Segment>,
    /// Mean segments per enterprise (with any).
    pub segments_per_enterprise: f64,
    /// Mean smile-curve value over the segments members perform.
    pub mean_segment_value: f64,
    /// Enterprises with a foreign investor or owner.
    pub foreign_capital_enterprises: u64,
    /// The core firm with most reach (see `core_firms`), and the best reach
    /// of any member not supplied by a core.
    pub core_firm: Option<Id>,
    pub core_reach: f64,
    pub places: Vec<Id>,
    /// Internal ties between members at different places.
    pub cross_place_ties: u64,
    /// Observed cross-place ties over those expected from the places' sizes.
    pub interaction_lift: f64,
    /// 1 − mean cosine of the places' segment mixes (0 with one place).
    pub place_distinctness: f64,
    /// Platform actors tied to members.
    pub platforms: Vec<Id>,
    /// TRANSPORT cluster links between the cluster's sites.
    pub corridors: u64,
    /// The relations with other clusters: the strongest of each, and with whom.
    pub overlap: (f64, Option<Id>),
    pub substitution: (f64, Option<Id>),
    pub cross_investment_index: f64,
    pub fusion_index: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Factor {
    pub name: &'static str,
    pub value: f64,
    pub weight: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StageScore {
    pub stage: Stage,
    pub score: f64,
    pub threshold: f64,
    pub factors: Vec<Factor>,
    /// Why the stage cannot be the verdict although its score may reach the threshold.
    pub unmet: Option<String>,
}

impl StageScore {
    pub fn passed(&self) -> bool {
        self.score >= self.threshold && self.unmet.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub cluster: Id,
    pub name: String,
    pub stage: Stage,
    /// REGIONAL, GLOBAL, VIRTUAL in that order.
    pub scores: Vec<StageScore>,
    pub evidence: Evidence,
}

impl Assessment {
    /// The verdict in a sentence, naming the figures behind it.
    pub fn explanation(&self) -> String {
        let describe = |s: &StageScore| format!("{} {:.2} (threshold {:.2})", s.stage.as_str(), s.score, s.threshold);
        match self.scores.iter().find(|s| s.stage == self.stage) {
            Some(chosen) => {
                let mut factors: Vec<&Factor> = chosen.factors.iter().filter(|f| f.weight > 0.0).collect();
                factors.sort_by(|a, b| (b.value * b.weight).total_cmp(&(a.value * a.weight)));
                let strongest: Vec<String> = factors
                    .iter()
                    .take(3)
                    .map(|f| format!("{} {:.2}", f.name, f.value))
                    .collect();
                format!(
                    "{}: the most advanced stage whose score reaches its threshold; strongest factors: {}",
                    describe(chosen),
                    strongest.join(", ")
                )
            }
            None => {
                let parts: Vec<String> = self
                    .scores
                    .iter()
                    .map(|s| match &s.unmet {
                        Some(why) => format!("{}, ruled out: {why}", describe(s)),
                        None => describe(s),
                    })
                    .collect();
                format!("UNCLASSIFIED: no stage qualifies: {}", parts.join("; "))
            }
        }
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn weighted_mean(factors: &[Factor]) -> f64 {
    let total: f64 = factors.iter().map(|f| f.weight).sum();
    if total == 0.0 {
        0.0
    } else {
        factors.iter().map(|f| f.weight * f.value).sum::<f64>() / total
    }
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norms = (a.iter().map(|x| x * x).sum::<f64>() * b.iter().map(|x| x * x).sum::<f64>()).sqrt();
    if norms == 0.0 {
        0.0
    } else {
        (dot / norms).min(1.0)
    }
}

/// Members performing each segment, on `as_of` (today when None).
pub fn segment_mix(network: &Network, members: impl Iterator<Item = Ix>, as_of: Option<Date>) -> [f64; 8] {
    let mut mix = [0.0; 8];
    for actor in members.filter_map(|m| network.actor(m)) {
        for segment in network.attributes_at(actor, as_of).segments.iter() {
            mix[segment as usize] += 1.0;
        }
    }
    mix
}

/// 1 − the mean pairwise cosine of the places' segment mixes; 0 with fewer
/// than two places that perform any segment.
pub fn distinctness(mixes: &[[f64; 8]]) -> f64 {
    let mixes: Vec<&[f64; 8]> = mixes.iter().filter(|m| m.iter().any(|x| *x > 0.0)).collect();
    if mixes.len() < 2 {
        return 0.0;
    }
    let (mut sum, mut pairs) = (0.0, 0usize);
    for i in 0..mixes.len() {
        for j in i + 1..mixes.len() {
            sum += cosine(mixes[i], mixes[j]);
            pairs += 1;
        }
    }
    1.0 - sum / pairs as f64
}

/// Ties between places against what their sizes alone would give: each
/// place's outside ties spread over all other actors in proportion to their
/// number. `observed[p][q]` counts ties between p and q, `outside[p]` the
/// ties of p's members to actors not at p, `sizes[p]` its members; `n` the
/// actors in the network. None with fewer than two places or nothing expected.
pub fn interaction_lift<S: std::hash::BuildHasher>(
    observed: &std::collections::HashMap<(usize, usize), u64, S>,
    outside: &[u64],
    sizes: &[u64],
    n: u64,
) -> Option<f64> {
    let k = sizes.len();
    if k < 2 {
        return None;
    }
    let mut expected = 0.0;
    for p in 0..k {
        for q in p + 1..k {
            let spread = |from: usize, to: usize| {
                let others = n.saturating_sub(sizes[from]);
                if others == 0 {
                    0.0
                } else {
                    outside[from] as f64 * sizes[to] as f64 / others as f64
                }
            };
            expected += (spread(p, q) + spread(q, p)) / 2.0;
        }
    }
    let seen: u64 = observed.values().sum();
    (expected > 0.0).then(|| seen as f64 / expected)
}

/// Per-cluster tallies gathered in one pass over the links.
#[derive(Default)]
struct Tally {
    members: HashSet<Ix>,
    ties: u64,
    internal: u64,
    domestic_external: u64,
    other_region: u64,
    foreign: u64,
    virtual_ties: u64,
    foreign_capital: HashSet<Ix>,
    platforms: HashSet<Ix>,
    capital: u64,
    crossing_capital: u64,
    crossing_enterprise_ties: u64,
    crossing_cross_industry: u64,
    cross_place: HashMap<(usize, usize), u64>,
    outside_of_place: HashMap<usize, u64>,
}

/// Assesses the clusters in the filter (all when it names none). Their
/// relations are measured against every cluster, so a verdict does not
/// depend on which others are assessed with it.
pub fn assess(network: &Network, filter: &GraphFilter, config: &StageConfig) -> Vec<Assessment> {
    // Places of the assessed clusters only (all members, whatever `as_of`:
    // members are filtered below).
    let placed = GraphFilter {
        clusters: filter.clusters.clone(),
        ..GraphFilter::default()
    };
    let (all_places, place_of) = places(network, &placed, config.places.colocation_km);
    let cluster_ids: Vec<Id> = network.clusters.keys().cloned().collect();
    let regions: Vec<&str> = cluster_ids
        .iter()
        .map(|c| network.clusters.get(c).map_or("", |c| c.region.as_str()))
        .collect();
    let assessed: Vec<bool> = cluster_ids
        .iter()
        .map(|c| filter.clusters.is_empty() || filter.clusters.contains(c))
        .collect();
    let index: HashMap<&Id, usize> = cluster_ids.iter().enumerate().map(|(i, c)| (c, i)).collect();
    // An iterator, not a Vec: it runs for every actor of the network.
    fn indexes<'a>(index: &'a HashMap<&Id, usize>, actor: &'a Actor) -> impl Iterator<Item = usize> + 'a {
        actor.cluster_ids.iter().filter_map(move |c| index.get(c).copied())
    }
    let clusters_of = |actor| indexes(&index, actor);
    let mut tallies: Vec<Tally> = (0..cluster_ids.len()).map(|_| Tally::default()).collect();
    let mut mixes = vec![[0.0f64; 8]; cluster_ids.len()];
    let mut industries: Vec<HashMap<&str, f64>> = vec![HashMap::default(); cluster_ids.len()];
    let mut countries: Vec<HashMap<Country, u64>> = vec![HashMap::default(); cluster_ids.len()];
    let mut member_counts = vec![0usize; cluster_ids.len()];
    let mut kept_actors = 0u64;
    for (ix, actor) in network.actor_at.iter().enumerate() {
        let Some(actor) = actor.as_ref().filter(|a| filter.keeps_actor(a)) else {
            continue;
        };
        kept_actors += 1;
        let attributes = network.attributes_at(actor, filter.as_of);
        for c in clusters_of(actor) {
            member_counts[c] += 1;
            for segment in attributes.segments.iter() {
                mixes[c][segment as usize] += 1.0;
            }
            if !attributes.industry.is_empty() {
                *industries[c].entry(attributes.industry).or_default() += 1.0;
            }
            // Members and home countries are needed for the assessed
            // clusters only; the others are compared by counts and mixes.
            if !assessed[c] {
                continue;
            }
            tallies[c].members.insert(ix as Ix);
            if let Some(country) = actor.country {
                *countries[c].entry(country).or_default() += 1;
            }
        }
    }
    let home: Vec<Option<Country>> = countries
        .iter()
        .map(|counts| {
            counts
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.as_str().cmp(a.0.as_str())))
                .map(|(c, _)| *c)
        })
        .collect();
    // The places of each assessed cluster, as indexes into all_places.
    let place_cluster: Vec<Option<usize>> = all_places.iter().map(|p| index.get(&p.cluster).copied()).collect();

    // The links with an end in an assessed cluster: when few clusters are
    // assessed, their members' own links; otherwise one pass over all links.
    let assessed_members: HashSet<Ix> = tallies
        .iter()
        .zip(&assessed)
        .filter(|(_, a)| **a)
        .flat_map(|(t, _)| t.members.iter().copied())
        .collect();
    let members = &assessed_members;
    let links: Box<dyn Iterator<Item = _>> = if members.len() * 4 < kept_actors as usize {
        Box::new(members.iter().flat_map(move |&ix| {
            network.incident(ix).filter_map(move |key| {
                let other = if key.source == ix { key.target } else { key.source };
                // A link between two assessed members is taken from its lower end.
                if members.contains(&other) && other < ix {
                    return None;
                }
                let data = network.links.get(&key)?;
                if !filter.keeps_link(key.kind, data) {
                    return None;
                }
                Some((
                    key,
                    data,
                    filter.actor(network, key.source)?,
                    filter.actor(network, key.target)?,
                ))
            })
        }))
    } else {
        Box::new(filter.links(network).map(|(key, data, s, t)| (*key, data, s, t)))
    };
    for (key, data, source, target) in links {
        let ends = [
            (key.source, source, key.target, target),
            (key.target, target, key.source, source),
        ];
        let mut touched: Vec<usize> = clusters_of(source).chain(clusters_of(target)).collect();
        touched.retain(|c| assessed[*c]);
        touched.sort_unstable();
        touched.dedup();
        let capital = matches!(key.kind, LinkKind::Investment | LinkKind::Ownership);
        let is_virtual = data.channel == Channel::Virtual || key.kind == LinkKind::Platform;
        for c in touched {
            let t = &mut tallies[c];
            t.ties += 1;
            t.virtual_ties += u64::from(is_virtual);
            t.capital += u64::from(capital);
            let (inside_s, inside_t) = (t.members.contains(&key.source), t.members.contains(&key.target));
            if inside_s && inside_t {
                t.internal += 1;
            }
            for (me, my_actor, other, other_actor) in ends {
                if !t.members.contains(&me) {
                    continue;
                }
                if other_actor.kind == ActorKind::Platform {
                    t.platforms.insert(other);
                }
                // Place interaction: ties between this cluster's places, and
                // each place's ties to actors elsewhere.
                let my_place = place_of[me as usize]
                    .iter()
                    .find(|p| place_cluster[**p as usize] == Some(c));
                if let Some(&p) = my_place {
                    let other_place = place_of[other as usize]
                        .iter()
                        .find(|q| place_cluster[**q as usize] == Some(c));
                    if other_place != Some(&p) {
                        *t.outside_of_place.entry(p as usize).or_default() += 1;
                        if let Some(&q) = other_place {
                            if me < other {
                                let pair = (p.min(q) as usize, p.max(q) as usize);
                                *t.cross_place.entry(pair).or_default() += 1;
                            }
                        }
                    }
                }
                if t.members.contains(&other) {
                    continue;
                }
                let foreign = other_actor.country.is_some() && other_actor.country != home[c];
                if foreign {
                    t.foreign += 1;
                    if capital && other == key.source && my_actor.kind.is_enterprise() {
                        t.foreign_capital.insert(me);
                    }
                } else {
                    t.domestic_external += 1;
                    let elsewhere = other_actor
                        .cluster_ids
                        .iter()
                        .any(|o| network.clusters.get(o).is_some_and(|oc| oc.region != regions[c]));
                    t.other_region += u64::from(elsewhere);
                }
                let other_clustered = !other_actor.cluster_ids.is_empty();
                if capital && other_clustered {
                    t.crossing_capital += 1;
                }
                if other_clustered && my_actor.kind.is_enterprise() && other_actor.kind.is_enterprise() {
                    t.crossing_enterprise_ties += 1;
                    let mine = network.attributes_at(my_actor, filter.as_of).industry;
                    let theirs = network.attributes_at(other_actor, filter.as_of).industry;
                    if IndustryLevel::Division.key(mine) != IndustryLevel::Division.key(theirs) {
                        t.crossing_cross_industry += 1;
                    }
                }
            }
        }
    }

    // Relations: shared members (overlap coefficient) and mix similarity
    // (the segment and industry part of cluster substitution) with the
    // closest other cluster.
    let mut shared: HashMap<(usize, usize), u64> = HashMap::default();
    for actor in network.actor_at.iter().flatten().filter(|a| filter.keeps_actor(a)) {
        if actor.cluster_ids.len() < 2 {
            continue;
        }
        let cs: Vec<usize> = clusters_of(actor).collect();
        for i in 0..cs.len() {
            for j in i + 1..cs.len() {
                *shared.entry((cs[i].min(cs[j]), cs[i].max(cs[j]))).or_default() += 1;
            }
        }
    }
    let mut overlap: Vec<(f64, Option<usize>)> = vec![(0.0, None); cluster_ids.len()];
    for (&(a, b), &count) in &shared {
        let smaller = member_counts[a].min(member_counts[b]).max(1);
        let coefficient = count as f64 / smaller as f64;
        for (me, other) in [(a, b), (b, a)] {
            if coefficient > overlap[me].0 {
                overlap[me] = (coefficient, Some(other));
            }
        }
    }
    let industry_codes: Vec<&str> = {
        let mut all: Vec<&str> = industries.iter().flat_map(|m| m.keys().copied()).collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    let industry_vectors: Vec<Vec<(usize, f64)>> = industries
        .iter()
        .map(|m| {
            let mut v: Vec<(usize, f64)> = m
                .iter()
                .filter_map(|(code, w)| industry_codes.binary_search(code).ok().map(|i| (i, *w)))
                .collect();
            v.sort_unstable_by_key(|(i, _)| *i);
            v
        })
        .collect();
    let sparse_cosine = |a: &[(usize, f64)], b: &[(usize, f64)]| {
        let (mut i, mut j, mut dot) = (0, 0, 0.0);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    dot += a[i].1 * b[j].1;
                    i += 1;
                    j += 1;
                }
            }
        }
        let norm = |v: &[(usize, f64)]| v.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
        let norms = norm(a) * norm(b);
        if norms == 0.0 {
            0.0
        } else {
            (dot / norms).min(1.0)
        }
    };
    let mut substitution: Vec<(f64, Option<usize>)> = vec![(0.0, None); cluster_ids.len()];
    for a in 0..cluster_ids.len() {
        for b in a + 1..cluster_ids.len() {
            if !assessed[a] && !assessed[b] {
                continue;
            }
            // The Substitutes weights for segments and industry, 0.25 and 0.15, renormalised.
            let similarity = 0.625 * cosine(&mixes[a], &mixes[b])
                + 0.375 * sparse_cosine(&industry_vectors[a], &industry_vectors[b]);
            for (me, other) in [(a, b), (b, a)] {
                if similarity > substitution[me].0 {
                    substitution[me] = (similarity, Some(other));
                }
            }
        }
    }

    let places_of_cluster: Vec<Vec<usize>> = {
        let mut out = vec![Vec::new(); cluster_ids.len()];
        for (p, c) in place_cluster.iter().enumerate() {
            if let Some(c) = c {
                out[*c].push(p);
            }
        }
        out
    };
    cluster_ids
        .iter()
        .enumerate()
        .filter(|(c, _)| assessed[*c])
        .map(|(c, id)| {
            let t = &tallies[c];
            let cluster_places: Vec<(usize, &Place)> = places_of_cluster[c]
                .iter()
                .map(|p| (*p, &all_places[*p]))
                .filter(|(_, p)| p.members.iter().any(|m| t.members.contains(m)))
                .collect();
            evaluate(
                network,
                filter,
                config,
                id,
                t,
                &mixes[c],
                home[c],
                &cluster_places,
                kept_actors,
                (overlap[c].0, overlap[c].1.map(|o| cluster_ids[o].clone())),
                (substitution[c].0, substitution[c].1.map(|o| cluster_ids[o].clone())),
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    network: &Network,
    filter: &GraphFilter,
    config: &StageConfig,
    id: &Id,
    t: &Tally,
    mix: &[f64; 8],
    home: Option<Country>,
    cluster_places: &[(usize, &Place)],
    kept_actors: u64,
    overlap: (f64, Option<Id>),
    substitution: (f64, Option<Id>),
) -> Assessment {
    let actors: Vec<&std::sync::Arc<Actor>> = t.members.iter().filter_map(|ix| network.actor(*ix)).collect();
    let enterprises: Vec<&&std::sync::Arc<Actor>> = actors.iter().filter(|a| a.kind.is_enterprise()).collect();
    let with_segments: Vec<usize> = enterprises
        .iter()
        .map(|a| network.attributes_at(a, filter.as_of).segments.len())
        .filter(|n| *n > 0)
        .collect();
    let segments_per_enterprise = if with_segments.is_empty() {
        0.0
    } else {
        with_segments.iter().sum::<usize>() as f64 / with_segments.len() as f64
    };
    let mean_segment_value = config.smile.mean_value(mix);
    let segments_covered: Vec<Segment> = Segment::ALL
        .iter()
        .copied()
        .filter(|s| mix[*s as usize] > 0.0)
        .collect();
    let (cores, core_reach) = cores_of(network, filter, &t.members, config.core_firms.min_reach);
    let core_firm = cores.first().and_then(|r| network.actor(r.actor).map(|a| a.id.clone()));

    // Places: distinctness of their segment mixes and their interaction.
    let place_mixes: Vec<[f64; 8]> = cluster_places
        .iter()
        .map(|(_, p)| {
            let here = p.members.iter().filter(|m| t.members.contains(m));
            segment_mix(network, here.copied(), filter.as_of)
        })
        .collect();
    let sizes: Vec<u64> = cluster_places
        .iter()
        .map(|(_, p)| p.members.iter().filter(|m| t.members.contains(m)).count() as u64)
        .collect();
    let outside: Vec<u64> = cluster_places
        .iter()
        .map(|(i, _)| t.outside_of_place.get(i).copied().unwrap_or(0))
        .collect();
    let lift = interaction_lift(&t.cross_place, &outside, &sizes, kept_actors).unwrap_or(0.0);
    let place_distinctness = distinctness(&place_mixes);
    let place_sites: HashSet<&Id> = cluster_places.iter().flat_map(|(_, p)| p.sites.iter()).collect();
    let corridors = network
        .cluster_links
        .values()
        .filter(|l| {
            l.kind == crate::model::ClusterLinkKind::Transport
                && place_sites.contains(&l.source)
                && place_sites.contains(&l.target)
        })
        .count() as u64;

    let evidence = Evidence {
        members: t.members.len() as u64,
        enterprises: enterprises.len() as u64,
        home_country: home.map(|c| c.as_str().to_string()).unwrap_or_default(),
        ties: t.ties,
        internal_ties: t.internal,
        domestic_external_ties: t.domestic_external,
        other_region_ties: t.other_region,
        foreign_ties: t.foreign,
        virtual_ties: t.virtual_ties,
        segments_covered,
        segments_per_enterprise,
        mean_segment_value,
        foreign_capital_enterprises: t.foreign_capital.len() as u64,
        core_firm,
        core_reach,
        places: cluster_places.iter().map(|(_, p)| p.id.clone()).collect(),
        cross_place_ties: t.cross_place.values().sum(),
        interaction_lift: lift,
        place_distinctness,
        platforms: {
            let mut ids: Vec<Id> = t
                .platforms
                .iter()
                .filter_map(|ix| network.actor(*ix).map(|a| a.id.clone()))
                .collect();
            ids.sort();
            ids
        },
        corridors,
        overlap,
        substitution,
        cross_investment_index: share(t.crossing_capital, t.capital),
        fusion_index: share(t.crossing_cross_industry, t.crossing_enterprise_ties),
    };
    let scores = score(&evidence, config);
    let stage = scores
        .iter()
        .rev()
        .find(|s| s.passed())
        .map_or(Stage::Unclassified, |s| s.stage);
    Assessment {
        cluster: id.clone(),
        name: network.clusters.get(id).map(|c| c.name.clone()).unwrap_or_default(),
        stage,
        scores,
        evidence,
    }
}

/// The three stage scores from the evidence.
pub fn score(e: &Evidence, config: &StageConfig) -> Vec<StageScore> {
    let foreign_share = share(e.foreign_ties, e.ties);
    let completeness = e.segments_covered.len() as f64 / Segment::ALL.len() as f64;
    let specialisation = if e.segments_per_enterprise == 0.0 {
        0.0
    } else {
        1.0 - (e.segments_per_enterprise - 1.0) / (Segment::ALL.len() - 1) as f64
    };
    let r = &config.regional;
    let regional = vec![
        Factor {
            name: "internal_share",
            value: share(e.internal_ties, e.ties),
            weight: r.internal_share,
        },
        Factor {
            name: "completeness",
            value: completeness,
            weight: r.completeness,
        },
        Factor {
            name: "specialisation",
            value: specialisation,
            weight: r.specialisation,
        },
        Factor {
            name: "locality",
            value: 1.0 - foreign_share,
            weight: r.locality,
        },
        Factor {
            name: "hub_and_spoke",
            value: e.core_reach,
            weight: r.hub_and_spoke,
        },
    ];
    let g = &config.global;
    let global = vec![
        Factor {
            name: "foreign_embedding",
            value: (foreign_share / g.foreign_saturation).min(1.0),
            weight: g.foreign_embedding,
        },
        Factor {
            name: "foreign_capital",
            value: (share(e.foreign_capital_enterprises, e.enterprises) / g.foreign_capital_saturation).min(1.0),
            weight: g.foreign_capital,
        },
        Factor {
            name: "high_value",
            value: e.mean_segment_value,
            weight: g.high_value,
        },
    ];
    let v = &config.virtual_integration;
    let rw = &config.relations;
    let relations = weighted_mean(&[
        Factor {
            name: "overlap",
            value: e.overlap.0,
            weight: rw.overlap,
        },
        Factor {
            name: "substitution",
            value: e.substitution.0,
            weight: rw.substitution,
        },
        Factor {
            name: "crossing",
            value: e.cross_investment_index,
            weight: rw.crossing,
        },
        Factor {
            name: "fusion",
            value: e.fusion_index,
            weight: rw.fusion,
        },
    ]);
    let virtual_factor = (share(e.virtual_ties, e.ties) / v.virtual_saturation).min(1.0);
    let interaction = ((e.interaction_lift - 1.0) / (v.target_lift - 1.0)).clamp(0.0, 1.0);
    let core = (virtual_factor * e.place_distinctness * interaction).cbrt();
    let virtual_factors = vec![
        Factor {
            name: "virtual",
            value: virtual_factor,
            weight: 1.0 - v.relations,
        },
        Factor {
            name: "place_distinctness",
            value: e.place_distinctness,
            weight: 1.0 - v.relations,
        },
        Factor {
            name: "place_interaction",
            value: interaction,
            weight: 1.0 - v.relations,
        },
        Factor {
            name: "relations",
            value: relations,
            weight: v.relations,
        },
    ];
    let regional_score = weighted_mean(&regional);
    vec![
        StageScore {
            stage: Stage::RegionalIntegration,
            score: regional_score,
            threshold: config.thresholds.regional,
            factors: regional,
            unmet: (completeness < r.min_completeness).then(|| {
                format!(
                    "the cluster covers {} of {} value-chain segments, below regional.min_completeness {}",
                    e.segments_covered.len(),
                    Segment::ALL.len(),
                    r.min_completeness
                )
            }),
        },
        StageScore {
            stage: Stage::GlobalValueChain,
            score: weighted_mean(&global),
            threshold: config.thresholds.global,
            factors: global,
            unmet: None,
        },
        StageScore {
            stage: Stage::VirtualIntegration,
            score: (1.0 - v.relations) * core + v.relations * relations,
            threshold: config.thresholds.virtual_integration,
            factors: virtual_factors,
            unmet: (e.places.len() < 2).then(|| "the cluster's members are at one place".to_string()),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{demo, testing::network};

    fn demo_network() -> Network {
        network(demo::demo_changes())
    }

    #[test]
    fn the_demo_clusters_are_in_the_articles_stages() {
        let network = demo_network();
        let assessments = assess(&network, &GraphFilter::default(), &StageConfig::default());
        let stage = |id: &str| assessments.iter().find(|a| &*a.cluster == id).unwrap().stage;
        assert_eq!(stage(demo::CHANGCHUN), Stage::RegionalIntegration);
        assert_eq!(stage(demo::KUNSHAN), Stage::GlobalValueChain);
        assert_eq!(stage(demo::CHANGNING), Stage::VirtualIntegration);
        // Changning's external ties in China go to Zhangjiang, also in Shanghai.
        let changning = &assessments
            .iter()
            .find(|a| &*a.cluster == demo::CHANGNING)
            .unwrap()
            .evidence;
        assert_eq!((changning.domestic_external_ties, changning.other_region_ties), (21, 0));
    }

    #[test]
    fn a_cluster_assessed_alone_gets_the_same_figures_as_with_all_the_others() {
        let network = demo_network();
        let all = assess(&network, &GraphFilter::default(), &StageConfig::default());
        for cluster in [demo::CHANGNING, demo::KUNSHAN] {
            let filter = GraphFilter {
                clusters: vec![cluster.into()],
                ..GraphFilter::default()
            };
            let alone = assess(&network, &filter, &StageConfig::default());
            let together = all.iter().find(|a| &*a.cluster == cluster).unwrap();
            assert_eq!(alone, std::slice::from_ref(together));
        }
    }
}
