//! Virtual-integration patterns (价值链虚拟整合), like the Changning creative
//! parks: places (sites, or whole clusters without sites) that form one
//! virtual whole.
//!
//! 1. Places are **joined** by a virtual tie: a PLATFORM cluster link between
//!    them, or a PLATFORM actor tied to at least `min_platform_members`
//!    members at each. Places joined directly or through others are one
//!    candidate; a candidate needs two places or more.
//! 2. A candidate is scored on four factors in [0, 1]:
//!    * *virtual*: the share of ties between its places (and of the joining
//!      platforms' ties to its members) that are VIRTUAL or PLATFORM, over
//!      `virtual.virtual_saturation`, at most 1;
//!    * *distinctness*: 1 − the mean cosine of the places' segment mixes
//!      (each place specialised differently);
//!    * *interaction*: the ties between its places over those their sizes
//!      alone would give (each place's outside ties spread over all actors in
//!      proportion to their number): (lift − 1) / (target_lift − 1), clamped;
//!    * *coverage*: the share of value-chain segments the union performs, 0
//!      unless it reaches final customers (SALES, CONSUMPTION or
//!      AFTER_SALES_SERVICE).
//! 3. Confidence is their geometric mean: a pattern needs all four. Patterns
//!    below `detection.min_confidence` are not reported.
//!
//! A physical corridor (TRANSPORT cluster links between the places, like
//! Metro Line 2) is reported as evidence; it strengthens the case in the
//! article but is not required.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use petgraph::unionfind::UnionFind;

use super::{
    places::{places, Place},
    stage::{distinctness, interaction_lift, segment_mix},
    stage_config::StageConfig,
};
use crate::{
    graph::GraphFilter,
    model::{ActorKind, Channel, ClusterLinkKind, Date, Id, LinkKind, Segment},
    store::{EdgeKey, LinkData, Network},
};

/// One place of a pattern and what it specialises in.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub place: Id,
    pub cluster: Id,
    pub sites: Vec<Id>,
    pub members: u64,
    /// Segments by the share of the place's segment performances, largest first.
    pub segments: Vec<(Segment, f64)>,
    /// Industry codes by the share of members, largest first (five at most).
    pub industries: Vec<(String, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    pub parts: Vec<Part>,
    /// Platform actors joining the parts, with the members they are tied to.
    pub platforms: Vec<(Id, u64)>,
    /// PLATFORM cluster links between the parts (source, target).
    pub platform_links: Vec<(Id, Id)>,
    /// TRANSPORT cluster links between the parts: the physical corridor.
    pub corridors: Vec<(Id, Id)>,
    pub ties_between_parts: u64,
    pub virtual_ties_between_parts: u64,
    pub interaction_lift: f64,
    pub distinctness: f64,
    pub segments_covered: Vec<Segment>,
    pub reaches_final_customers: bool,
    /// virtual, distinctness, interaction, coverage.
    pub factors: [f64; 4],
    pub confidence: f64,
}

const FINAL_CUSTOMER_SEGMENTS: [Segment; 3] = [Segment::Sales, Segment::Consumption, Segment::AfterSalesService];

/// The actors that may be joining platforms, in index order: every platform
/// actor, or with clusters named, those among the places' members and their
/// partners (a platform joins places only through ties to their members).
fn platform_candidates(network: &Network, filter: &GraphFilter, place_of: &HashMap<u32, usize>) -> Vec<u32> {
    if filter.clusters.is_empty() {
        return network
            .actor_at
            .iter()
            .enumerate()
            .filter(|(_, a)| a.as_ref().is_some_and(|a| a.kind == ActorKind::Platform))
            .map(|(ix, _)| ix as u32)
            .collect();
    }
    let mut near: BTreeSet<u32> = BTreeSet::new();
    for &ix in place_of.keys() {
        near.insert(ix);
        for key in network.incident(ix) {
            let other = if key.source == ix { key.target } else { key.source };
            if network.actor(other).is_some_and(|a| a.kind == ActorKind::Platform) {
                near.insert(other);
            }
        }
    }
    near.into_iter().collect()
}

/// The links the filter keeps (both ends kept) that have an end at a place:
/// the only ones the scoring counts. With clusters named, their members'
/// own links are walked instead of every link in the network, so scoring one
/// cluster costs its neighbourhood, not the whole network.
fn links_at_places<'n>(
    network: &'n Network,
    filter: &'n GraphFilter,
    place_of: &HashMap<u32, usize>,
) -> Box<dyn Iterator<Item = (EdgeKey, &'n LinkData)> + 'n> {
    if filter.clusters.is_empty() {
        return Box::new(filter.links(network).map(|(key, data, _, _)| (*key, data)));
    }
    let mut keys: Vec<EdgeKey> = place_of.keys().flat_map(|&ix| network.incident(ix)).collect();
    keys.sort_unstable();
    keys.dedup();
    Box::new(keys.into_iter().filter_map(move |key| {
        let data = network.links.get(&key)?;
        let kept = filter.keeps_link(key.kind, data)
            && filter.actor(network, key.source).is_some()
            && filter.actor(network, key.target).is_some();
        kept.then_some((key, data))
    }))
}

/// Finds the virtual-integration patterns among the places of the clusters
/// in the filter (all when it names none), most confident first.
pub fn detect(network: &Network, filter: &GraphFilter, config: &StageConfig) -> Vec<Pattern> {
    let (mut all, _) = places(network, filter, config.places.colocation_km);
    all.retain(|p| !p.members.is_empty());
    let mut place_of: HashMap<u32, usize> = HashMap::new();
    for (p, place) in all.iter().enumerate() {
        for &ix in &place.members {
            // An actor in several clusters is taken at its first place.
            place_of.entry(ix).or_insert(p);
        }
    }
    let mut joins: UnionFind<usize> = UnionFind::new(all.len());

    // Joined by PLATFORM cluster links (between sites, or whole clusters).
    let places_named = |end: &Id| -> Vec<usize> {
        all.iter()
            .enumerate()
            .filter(|(_, p)| p.sites.contains(end) || (p.cluster == *end))
            .map(|(i, _)| i)
            .collect()
    };
    let mut platform_links = Vec::new();
    let mut corridor_links = Vec::new();
    for link in network.cluster_links.values() {
        let (from, to) = (places_named(&link.source), places_named(&link.target));
        match link.kind {
            ClusterLinkKind::Platform => {
                for &a in &from {
                    for &b in &to {
                        if a != b {
                            joins.union(a, b);
                        }
                    }
                }
                platform_links.push((link.source.clone(), link.target.clone(), from, to));
            }
            ClusterLinkKind::Transport => corridor_links.push((link.source.clone(), link.target.clone(), from, to)),
            _ => {}
        }
    }
    // Joined by platform actors with enough members at two places or more.
    let mut platform_reach: Vec<(u32, BTreeMap<usize, u64>)> = Vec::new();
    for ix in platform_candidates(network, filter, &place_of) {
        let Some(actor) = network.actor(ix) else { continue };
        if actor.kind != ActorKind::Platform || !filter.keeps_actor(actor) {
            continue;
        }
        let mut tied: BTreeMap<usize, HashSet<u32>> = BTreeMap::new();
        for key in network.incident(ix) {
            let Some(data) = network.links.get(&key) else { continue };
            if !filter.keeps_link(key.kind, data) {
                continue;
            }
            let other = if key.source == ix { key.target } else { key.source };
            if let Some(&p) = place_of.get(&other) {
                tied.entry(p).or_default().insert(other);
            }
        }
        let joined: BTreeMap<usize, u64> = tied
            .into_iter()
            .map(|(p, members)| (p, members.len() as u64))
            .filter(|(_, n)| *n as f64 >= config.detection.min_platform_members)
            .collect();
        let parts: Vec<usize> = joined.keys().copied().collect();
        for pair in parts.windows(2) {
            joins.union(pair[0], pair[1]);
        }
        if parts.len() >= 2 {
            platform_reach.push((ix, joined));
        }
    }

    let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for p in 0..all.len() {
        let root = joins.find_mut(p);
        components.entry(root).or_default().push(p);
    }
    components.retain(|_, parts| parts.len() >= 2);
    if components.is_empty() {
        return Vec::new();
    }
    let component_of: HashMap<usize, usize> = components
        .iter()
        .flat_map(|(root, parts)| parts.iter().map(move |p| (*p, *root)))
        .collect();

    // One pass over the links: ties between the parts of each candidate, and
    // each part's ties to actors elsewhere.
    let platform_ix: HashSet<u32> = platform_reach.iter().map(|(ix, _)| *ix).collect();
    let mut between: HashMap<usize, (u64, u64)> = HashMap::new();
    let mut pairs: HashMap<usize, HashMap<(usize, usize), u64>> = HashMap::new();
    let mut outside = vec![0u64; all.len()];
    let kept_actors = match filter.as_of {
        None => network.actors.len() as u64,
        Some(_) => network
            .actor_at
            .iter()
            .flatten()
            .filter(|a| filter.keeps_actor(a))
            .count() as u64,
    };
    for (key, data) in links_at_places(network, filter, &place_of) {
        let (ps, pt) = (place_of.get(&key.source).copied(), place_of.get(&key.target).copied());
        for (mine, theirs) in [(ps, pt), (pt, ps)] {
            if let Some(p) = mine {
                if theirs != Some(p) {
                    outside[p] += 1;
                }
            }
        }
        let is_virtual = data.channel == Channel::Virtual || key.kind == LinkKind::Platform;
        let candidate = match (ps, pt) {
            (Some(a), Some(b))
                if a != b && component_of.contains_key(&a) && component_of.get(&a) == component_of.get(&b) =>
            {
                let root = component_of[&a];
                *pairs.entry(root).or_default().entry((a.min(b), a.max(b))).or_default() += 1;
                Some(root)
            }
            // A joining platform outside the parts, tied to a member.
            (Some(a), None) if platform_ix.contains(&key.target) => component_of.get(&a).copied(),
            (None, Some(b)) if platform_ix.contains(&key.source) => component_of.get(&b).copied(),
            _ => None,
        };
        if let Some(root) = candidate {
            let entry = between.entry(root).or_default();
            entry.0 += 1;
            entry.1 += u64::from(is_virtual);
        }
    }

    let v = &config.virtual_integration;
    let mut patterns: Vec<Pattern> = components
        .iter()
        .map(|(root, members)| {
            let parts: Vec<&Place> = members.iter().map(|p| &all[*p]).collect();
            let mixes: Vec<[f64; 8]> = parts
                .iter()
                .map(|p| segment_mix(network, p.members.iter().copied(), filter.as_of))
                .collect();
            let (ties, virtual_ties) = between.get(root).copied().unwrap_or_default();
            let sizes: Vec<u64> = parts.iter().map(|p| p.members.len() as u64).collect();
            let outs: Vec<u64> = members.iter().map(|p| outside[*p]).collect();
            let empty = HashMap::new();
            let lift = interaction_lift(pairs.get(root).unwrap_or(&empty), &outs, &sizes, kept_actors).unwrap_or(0.0);
            let mut union_mix = [0.0; 8];
            for mix in &mixes {
                for (u, x) in union_mix.iter_mut().zip(mix) {
                    *u += x;
                }
            }
            let segments_covered: Vec<Segment> = Segment::ALL
                .iter()
                .copied()
                .filter(|s| union_mix[*s as usize] > 0.0)
                .collect();
            let reaches_final_customers = FINAL_CUSTOMER_SEGMENTS.iter().any(|s| segments_covered.contains(s));
            let virtual_factor = if ties == 0 {
                0.0
            } else {
                (virtual_ties as f64 / ties as f64 / v.virtual_saturation).min(1.0)
            };
            let distinct = distinctness(&mixes);
            let interaction = ((lift - 1.0) / (v.target_lift - 1.0)).clamp(0.0, 1.0);
            let coverage = if reaches_final_customers {
                segments_covered.len() as f64 / Segment::ALL.len() as f64
            } else {
                0.0
            };
            let factors = [virtual_factor, distinct, interaction, coverage];
            let confidence = factors.iter().product::<f64>().powf(0.25);
            let in_pattern = |ends: &[usize]| ends.iter().any(|p| members.contains(p));
            Pattern {
                parts: parts
                    .iter()
                    .zip(&mixes)
                    .map(|(place, mix)| describe(network, place, mix, filter.as_of))
                    .collect(),
                platforms: platform_reach
                    .iter()
                    .filter(|(_, joined)| joined.keys().filter(|p| members.contains(p)).count() >= 2)
                    .filter_map(|(ix, joined)| {
                        let tied = joined.iter().filter(|(p, _)| members.contains(p)).map(|(_, n)| n).sum();
                        network.actor(*ix).map(|a| (a.id.clone(), tied))
                    })
                    .collect(),
                platform_links: platform_links
                    .iter()
                    .filter(|(_, _, from, to)| in_pattern(from) && in_pattern(to))
                    .map(|(s, t, _, _)| (s.clone(), t.clone()))
                    .collect(),
                corridors: corridor_links
                    .iter()
                    .filter(|(_, _, from, to)| in_pattern(from) && in_pattern(to))
                    .map(|(s, t, _, _)| (s.clone(), t.clone()))
                    .collect(),
                ties_between_parts: ties,
                virtual_ties_between_parts: virtual_ties,
                interaction_lift: lift,
                distinctness: distinct,
                segments_covered,
                reaches_final_customers,
                factors,
                confidence,
            }
        })
        .filter(|p| p.confidence >= config.detection.min_confidence)
        .collect();
    patterns.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.parts[0].place.cmp(&b.parts[0].place))
    });
    patterns
}

/// A place's specialisation: its segment and industry shares.
fn describe(network: &Network, place: &Place, mix: &[f64; 8], as_of: Option<Date>) -> Part {
    let total: f64 = mix.iter().sum();
    let mut segments: Vec<(Segment, f64)> = Segment::ALL
        .iter()
        .filter(|s| mix[**s as usize] > 0.0)
        .map(|s| (*s, mix[*s as usize] / total))
        .collect();
    segments.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut industries: HashMap<&str, f64> = HashMap::new();
    let actors: Vec<_> = place.members.iter().filter_map(|m| network.actor(*m)).collect();
    for actor in &actors {
        let industry = network.attributes_at(actor, as_of).industry;
        if !industry.is_empty() {
            *industries.entry(industry).or_default() += 1.0;
        }
    }
    let mut industries: Vec<(String, f64)> = industries
        .into_iter()
        .map(|(code, n)| (code.to_string(), n / actors.len().max(1) as f64))
        .collect();
    industries.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    industries.truncate(5);
    Part {
        place: place.id.clone(),
        cluster: place.cluster.clone(),
        sites: place.sites.clone(),
        members: place.members.len() as u64,
        segments,
        industries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{demo, testing::network};

    #[test]
    fn the_three_changning_parks_are_one_pattern_on_the_demo() {
        let network = network(demo::demo_changes());
        let patterns = detect(&network, &GraphFilter::default(), &StageConfig::default());
        assert_eq!(patterns.len(), 1);
        let places: Vec<&str> = patterns[0].parts.iter().map(|p| &*p.place).collect();
        assert_eq!(places, demo::CHANGNING_SITES);
        assert_eq!(patterns[0].platforms[0].0, demo::CHANGNING_PLATFORM.into());
        assert_eq!(patterns[0].corridors.len(), 2);
    }
}
