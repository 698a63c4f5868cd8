//! Fusion (融合): ties that join different industries and bridge communities,
//! as creative design joins IT in the article's Changning case.
//!
//! A link is a **fusion link** when
//! 1. its two ends have different industry codes at the chosen level (ISIC
//!    section = first character, division = first three, group = first four,
//!    class = the whole code; actors without a code never count), and
//! 2. its two ends lie in different communities of the firm network, found by
//!    Leiden (connected communities) on the undirected graph of the links the
//!    filter keeps.
//!
//! Fusion links are ranked by edge betweenness on the same undirected graph:
//! the share of shortest paths between actors that run over the tie, so the
//! first rows are the ties that carry most between the communities they join.
//! Exact Brandes costs O(n·m); past `EXACT_BETWEENNESS_MAX_NODES` nodes the
//! default is `DEFAULT_PIVOTS` random pivots (Brandes and Pich 2007): about
//! 35 s at 100k actors / 1M links, within the minute the whole-network run
//! may take. Pivots rank approximately (docs/relations.md gives the measured
//! agreement with exact values); a request can ask for exact values or
//! another pivot count.
//!
//! Only ties between enterprises (FIRM, CORE_FIRM) are judged by default: a
//! government office or an industry association has an industry code, but a
//! firm's tie to it does not join two industries. The communities and the
//! betweenness still see every actor, since institutions do bridge.
//!
//! Per pair of clusters (a cluster with itself for the ties inside it) the
//! **fusion index** is the share of cross-industry ties among all ties between
//! them, with the industry pairs behind it. A link between actors of several
//! clusters counts once for each cluster pair it joins.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::analysis::{
    algo::centrality::{edge_betweenness, BetweennessConfig},
    algo::community::{leiden, LouvainConfig},
    Cancelled, Control,
};
use crate::{
    graph::{firm_graph, EdgeMode, GraphFilter},
    model::{Channel, Date, Id, LinkKind},
    network::Network,
};

/// Below this many nodes betweenness is exact by default.
pub const EXACT_BETWEENNESS_MAX_NODES: usize = 5_000;
/// Pivots used by default on larger graphs.
pub const DEFAULT_PIVOTS: usize = 1024;
/// Industry pairs listed per cluster pair.
const INDUSTRY_PAIRS_LISTED: usize = 10;

/// How much of an industry code two actors must share to count as one industry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IndustryLevel {
    /// The ISIC section letter ("C").
    Section,
    /// The section and two-digit division ("C29").
    Division,
    /// The three-digit group ("C293").
    Group,
    /// The whole code ("C2930").
    Class,
}

impl IndustryLevel {
    /// The part of `code` compared at this level; a code shorter than the
    /// level is compared whole. None for an empty code.
    pub fn key(self, code: &str) -> Option<&str> {
        let length = match self {
            IndustryLevel::Section => 1,
            IndustryLevel::Division => 3,
            IndustryLevel::Group => 4,
            IndustryLevel::Class => usize::MAX,
        };
        if code.is_empty() {
            None
        } else {
            Some(code.get(..length).unwrap_or(code))
        }
    }
}

/// How betweenness is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pivots {
    /// Exact up to `EXACT_BETWEENNESS_MAX_NODES` nodes, else `DEFAULT_PIVOTS`.
    Auto,
    Exact,
    Sampled(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FusionConfig {
    pub level: IndustryLevel,
    pub communities: LouvainConfig,
    /// Use link weights: summed for communities, length 1/weight for betweenness.
    pub weighted: bool,
    pub pivots: Pivots,
    /// Fusion links valid from this date on count as new.
    pub since: Option<Date>,
    /// Only list fusion links valid from `since` on.
    pub only_new: bool,
    /// Links listed, best first; 0 for all.
    pub top_k: usize,
    /// Also judge ties with institutions (universities, government, platforms...).
    pub include_institutions: bool,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            level: IndustryLevel::Division,
            communities: LouvainConfig::default(),
            weighted: false,
            pivots: Pivots::Auto,
            since: None,
            only_new: false,
            top_k: 100,
            include_institutions: false,
        }
    }
}

/// One end of a fusion link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkEnd {
    pub actor: Id,
    /// The industry code at the chosen level.
    pub industry: String,
    pub community: u32,
    pub clusters: Vec<Id>,
    pub site: Option<Id>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FusionLink {
    pub source: LinkEnd,
    pub target: LinkEnd,
    pub kind: LinkKind,
    pub channel: Channel,
    pub weight: f64,
    pub valid_from: Option<Date>,
    pub betweenness: f64,
    /// Valid from `since` on.
    pub new: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairFusion {
    pub a: Id,
    pub b: Id,
    pub ties: u64,
    pub cross_industry_ties: u64,
    /// cross_industry_ties / ties.
    pub fusion_index: f64,
    /// Cross-industry ties that also bridge communities.
    pub fusion_links: u64,
    /// Of those, the ones valid from `since` on.
    pub new_fusion_links: u64,
    /// The industry pairs (ordered) of the cross-industry ties, most ties first.
    pub industry_pairs: Vec<IndustryPair>,
}

/// Two industries (a < b) and the cross-industry ties between them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndustryPair {
    pub a: String,
    pub b: String,
    pub ties: u64,
}

pub struct Fusion {
    pub links: Vec<FusionLink>,
    /// Fusion links found, before `top_k`.
    pub total_fusion_links: usize,
    pub pairs: Vec<PairFusion>,
    pub communities: usize,
    pub modularity: f64,
    /// Pivots used for betweenness; None when exact.
    pub pivots: Option<usize>,
    pub nodes: usize,
    pub edges: usize,
}

/// Finds the fusion links of the network the filter keeps and the fusion
/// index of every cluster pair.
pub fn fusion_links(
    network: &Network,
    filter: &GraphFilter,
    config: &FusionConfig,
    control: &Control,
) -> Result<Fusion, Cancelled> {
    control.progress("graph", 0, 1);
    let mode = EdgeMode {
        undirected: true,
        weighted: config.weighted,
    };
    let graph = firm_graph(network, filter, mode);
    control.check()?;
    let partition = leiden(&graph, &config.communities, control)?;
    let mut node_of: Vec<Option<u32>> = vec![None; network.actor_at.len()];
    for (node, id) in graph.ids.iter().enumerate() {
        if let Some(ix) = network.ix_of(id) {
            node_of[ix as usize] = Some(node as u32);
        }
    }
    let wanted = filter.wants_cluster();
    let is_new = |from: Option<Date>| config.since.is_some_and(|since| from.is_some_and(|from| from >= since));

    control.progress("links", 0, 1);
    // Fusion links as (source ix, target ix, key, new); betweenness comes later.
    let mut found = Vec::new();
    // Per cluster pair, its figures and its cross-industry ties by industry pair.
    type Tally = (PairFusion, HashMap<(String, String), u64>);
    let mut pairs: BTreeMap<(Id, Id), Tally> = BTreeMap::new();
    for (key, data) in network.links.iter() {
        if !filter.keeps_link(key.kind, data) {
            continue;
        }
        let (Some(u), Some(v)) = (node_of[key.source as usize], node_of[key.target as usize]) else {
            continue;
        };
        let (Some(source), Some(target)) = (network.actor(key.source), network.actor(key.target)) else {
            continue;
        };
        let enterprises = source.kind.is_enterprise() && target.kind.is_enterprise();
        if !(config.include_institutions || enterprises) {
            continue;
        }
        let industries = config
            .level
            .key(&source.industry)
            .zip(config.level.key(&target.industry));
        let cross_industry = industries.is_some_and(|(a, b)| a != b);
        let bridging = partition.community[u as usize] != partition.community[v as usize];
        let fusion = cross_industry && bridging;
        let new = is_new(data.validity.from);
        if fusion && (!config.only_new || new) {
            found.push((key, data, new));
        }
        let mut joined = BTreeSet::new();
        for a in source.cluster_ids.iter().filter(|c| wanted(c)) {
            for b in target.cluster_ids.iter().filter(|c| wanted(c)) {
                joined.insert(if a <= b { (a, b) } else { (b, a) });
            }
        }
        for (a, b) in joined {
            let (pair, industry_pairs) = pairs.entry((a.clone(), b.clone())).or_insert_with(|| {
                (
                    PairFusion {
                        a: a.clone(),
                        b: b.clone(),
                        ..PairFusion::default()
                    },
                    HashMap::new(),
                )
            });
            pair.ties += 1;
            if let (true, Some((x, y))) = (cross_industry, industries) {
                pair.cross_industry_ties += 1;
                let key = if x <= y { (x, y) } else { (y, x) };
                *industry_pairs
                    .entry((key.0.to_string(), key.1.to_string()))
                    .or_default() += 1;
                if bridging {
                    pair.fusion_links += 1;
                    pair.new_fusion_links += u64::from(new);
                }
            }
        }
    }
    control.check()?;

    let n = graph.node_count();
    let samples = match config.pivots {
        Pivots::Exact => None,
        Pivots::Sampled(k) => Some(k).filter(|k| *k < n),
        Pivots::Auto => Some(DEFAULT_PIVOTS).filter(|_| n > EXACT_BETWEENNESS_MAX_NODES),
    };
    let arcs = if found.is_empty() {
        Vec::new()
    } else {
        let betweenness = BetweennessConfig {
            normalized: true,
            weighted: config.weighted,
            samples,
            seed: config.communities.seed,
        };
        edge_betweenness(&graph, &betweenness, control)?
    };

    let end = |ix: u32| -> Option<LinkEnd> {
        let actor = network.actor(ix)?;
        Some(LinkEnd {
            actor: actor.id.clone(),
            industry: config.level.key(&actor.industry).unwrap_or_default().to_string(),
            community: partition.community[node_of[ix as usize]? as usize],
            clusters: actor.cluster_ids.clone(),
            site: actor.site_id.clone(),
        })
    };
    let mut links: Vec<FusionLink> = found
        .into_iter()
        .filter_map(|(key, data, new)| {
            let (u, v) = (node_of[key.source as usize]?, node_of[key.target as usize]?);
            Some(FusionLink {
                source: end(key.source)?,
                target: end(key.target)?,
                kind: key.kind,
                channel: data.channel,
                weight: data.weight,
                valid_from: data.validity.from,
                betweenness: graph.arc(u as usize, v as usize).map_or(0.0, |arc| arcs[arc]),
                new,
            })
        })
        .collect();
    links.sort_by(|a, b| {
        b.betweenness
            .total_cmp(&a.betweenness)
            .then_with(|| (&a.source.actor, &a.target.actor, a.kind).cmp(&(&b.source.actor, &b.target.actor, b.kind)))
    });
    let total_fusion_links = links.len();
    if config.top_k > 0 {
        links.truncate(config.top_k);
    }
    let pairs = pairs
        .into_values()
        .map(|(mut pair, industry_pairs)| {
            pair.fusion_index = pair.cross_industry_ties as f64 / pair.ties as f64;
            let mut listed: Vec<IndustryPair> = industry_pairs
                .into_iter()
                .map(|((a, b), ties)| IndustryPair { a, b, ties })
                .collect();
            listed.sort_by(|x, y| y.ties.cmp(&x.ties).then_with(|| (&x.a, &x.b).cmp(&(&y.a, &y.b))));
            listed.truncate(INDUSTRY_PAIRS_LISTED);
            pair.industry_pairs = listed;
            pair
        })
        .collect();
    Ok(Fusion {
        links,
        total_fusion_links,
        pairs,
        communities: partition.sizes.len(),
        modularity: partition.modularity,
        pivots: samples,
        nodes: n,
        edges: graph.edge_count(),
    })
}

/// Ties from enterprise members of `cluster` to enterprises of another
/// industry (at `level`), by the other end's cluster ("" for none; an end in
/// `cluster` too is not counted): a cluster pair's `cross_industry_ties` of
/// [`fusion_links`] (enterprises only, the whole network), from one
/// cluster's members alone, so an incremental evaluation (the alerts) need
/// not scan every link.
pub fn cross_industry_ties_by_other(network: &Network, cluster: &Id, level: IndustryLevel) -> HashMap<Id, u64> {
    let mut out: HashMap<Id, u64> = HashMap::new();
    let none = Id::from("");
    for ix in network.member_indexes(cluster) {
        let Some(member) = network.actor(ix).filter(|a| a.kind.is_enterprise()) else {
            continue;
        };
        let Some(mine) = level.key(&member.industry) else {
            continue;
        };
        for key in network.incident(ix) {
            let end = if key.source == ix { key.target } else { key.source };
            let Some(end) = network.actor(end) else { continue };
            let theirs = level.key(&end.industry);
            if !end.kind.is_enterprise()
                || theirs.is_none()
                || theirs == Some(mine)
                || end.cluster_ids.contains(cluster)
            {
                continue;
            }
            if end.cluster_ids.is_empty() {
                *out.entry(none.clone()).or_default() += 1;
            }
            for other in &end.cluster_ids {
                *out.entry(other.clone()).or_default() += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Actor, Change, Link, Validity},
        testing::{actor, cluster, link, network},
    };

    /// Two triangles, a1 a2 a3 in cluster A (design, M7410, except a3 in IT,
    /// J6201) and b1 b2 b3 in cluster B (IT, J6201), joined by a1 — b1, a
    /// cooperation tie valid from 2020.
    fn two_triangles() -> Network {
        let firm = |id: &str, industry: &str, cluster: &str| {
            Change::UpsertActor(Actor {
                industry: industry.into(),
                ..actor(id, &[cluster])
            })
        };
        let tie = |a: &str, b: &str| Change::UpsertLink(link(a, b, LinkKind::Cooperation));
        network([
            Change::UpsertCluster(cluster("A")),
            Change::UpsertCluster(cluster("B")),
            firm("a1", "M7410", "A"),
            firm("a2", "M7410", "A"),
            firm("a3", "J6201", "A"),
            firm("b1", "J6201", "B"),
            firm("b2", "J6201", "B"),
            firm("b3", "J6201", "B"),
            tie("a1", "a2"),
            tie("a1", "a3"),
            tie("a2", "a3"),
            tie("b1", "b2"),
            tie("b1", "b3"),
            tie("b2", "b3"),
            Change::UpsertLink(Link {
                validity: Validity {
                    from: Some("2020-01-01".parse().unwrap()),
                    to: None,
                },
                ..link("a1", "b1", LinkKind::Cooperation)
            }),
        ])
    }

    #[test]
    fn only_the_cross_industry_bridge_between_communities_is_a_fusion_link() {
        let config = FusionConfig {
            since: Some("2019-06-01".parse().unwrap()),
            ..FusionConfig::default()
        };
        let fusion = fusion_links(&two_triangles(), &GraphFilter::default(), &config, &Control::none()).unwrap();
        // a1–a3 and a2–a3 cross industries but stay inside one community.
        assert_eq!(fusion.communities, 2);
        assert_eq!(fusion.links.len(), 1);
        let bridge = &fusion.links[0];
        assert_eq!((&*bridge.source.actor, &*bridge.target.actor), ("a1", "b1"));
        assert_eq!(
            (bridge.source.industry.as_str(), bridge.target.industry.as_str()),
            ("M74", "J62")
        );
        // All 3 × 3 pairs across the bridge use it, of 15 pairs: 9 / 15 = 0.6.
        assert!((bridge.betweenness - 0.6).abs() < 1e-12);
        assert!(bridge.new, "valid from 2020, after `since`");
        assert_eq!(fusion.pivots, None, "a small graph gets exact betweenness");
    }

    #[test]
    fn fusion_index_per_cluster_pair_by_hand() {
        let fusion = fusion_links(
            &two_triangles(),
            &GraphFilter::default(),
            &FusionConfig::default(),
            &Control::none(),
        )
        .unwrap();
        let by_pair: HashMap<(&str, &str), &PairFusion> = fusion.pairs.iter().map(|p| ((&*p.a, &*p.b), p)).collect();
        // Inside A: 3 ties, a1–a3 and a2–a3 cross industries: 2/3, none bridges.
        let a = by_pair[&("A", "A")];
        assert_eq!((a.ties, a.cross_industry_ties, a.fusion_links), (3, 2, 0));
        assert!((a.fusion_index - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            a.industry_pairs,
            [IndustryPair {
                a: "J62".into(),
                b: "M74".into(),
                ties: 2
            }]
        );
        // Between A and B: the one bridge, cross-industry: 1.
        let ab = by_pair[&("A", "B")];
        assert_eq!((ab.ties, ab.cross_industry_ties, ab.fusion_links), (1, 1, 1));
        assert_eq!(ab.fusion_index, 1.0);
        assert_eq!(ab.new_fusion_links, 0, "no `since` given");
        // Inside B: one industry.
        assert_eq!(by_pair[&("B", "B")].fusion_index, 0.0);
    }

    #[test]
    fn industry_codes_are_compared_at_the_chosen_level() {
        assert_eq!(IndustryLevel::Section.key("M7410"), Some("M"));
        assert_eq!(IndustryLevel::Division.key("J5820"), Some("J58"));
        assert_eq!(IndustryLevel::Group.key("J5820"), Some("J582"));
        assert_eq!(IndustryLevel::Class.key("J5820"), Some("J5820"));
        assert_eq!(
            IndustryLevel::Group.key("J58"),
            Some("J58"),
            "a short code is compared whole"
        );
        assert_eq!(IndustryLevel::Division.key(""), None);
    }

    #[test]
    fn only_new_lists_just_the_links_valid_from_since() {
        let config = FusionConfig {
            since: Some("2021-01-01".parse().unwrap()),
            only_new: true,
            ..FusionConfig::default()
        };
        let fusion = fusion_links(&two_triangles(), &GraphFilter::default(), &config, &Control::none()).unwrap();
        assert!(fusion.links.is_empty(), "the bridge dates from 2020");
    }

    proptest::proptest! {
        /// The alerts' per-cluster cross-industry ties are the pairs'
        /// cross_industry_ties (enterprises only, each actor in one cluster
        /// at most).
        #[test]
        fn cross_industry_ties_by_other_are_the_pairs_cross_industry_ties(
            changes in crate::testing::arbitrary_clustered_network(true)
        ) {
            let network = crate::testing::network(changes);
            let config = FusionConfig { top_k: 0, ..FusionConfig::default() };
            let fusion = fusion_links(&network, &GraphFilter::default(), &config, &Control::none()).unwrap();
            for a in network.clusters.keys() {
                let quick = cross_industry_ties_by_other(&network, a, IndustryLevel::Division);
                for b in network.clusters.keys().filter(|b| *b != a) {
                    let pair = fusion.pairs.iter().find(|p| (&p.a, &p.b) == (a, b) || (&p.a, &p.b) == (b, a));
                    let expected = pair.map_or(0, |p| p.cross_industry_ties);
                    proptest::prop_assert_eq!(quick.get(b).copied().unwrap_or(0), expected, "{}-{}", a, b);
                }
            }
        }
    }
}
