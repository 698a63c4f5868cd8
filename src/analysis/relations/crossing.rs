//! Crossing (交叉): ties that cross cluster borders, and cross-investment.
//!
//! A link crosses from cluster A to cluster B when its source is in A and its
//! target in B (A ≠ B); an actor in several clusters makes a link cross for
//! each such pair. Investment and ownership ties are the capital ties. For a
//! pair: the capital ties each way, whether they run both ways (mutual
//! cross-investment), their reciprocity min/max, and their share among all
//! capital ties of A or B (after the crossing-share indicator of
//! domain.md). For a cluster: its cross-investment index, the share of its
//! capital ties whose other end is in another cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::{
    analysis::{Cancelled, Control},
    graph::GraphFilter,
    model::{Channel, Id, LinkKind},
    network::Network,
};

/// Count and summed weight.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    pub count: u64,
    pub weight: f64,
}

impl Tally {
    fn add(&mut self, weight: f64) {
        self.count += 1;
        self.weight += weight;
    }
}

/// Ties crossing between two clusters (a < b).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairCrossing {
    pub a: Id,
    pub b: Id,
    /// Every crossing link, by kind and channel, both directions together.
    pub by_kind: BTreeMap<(LinkKind, Channel), Tally>,
    /// Investment and ownership ties from A's actors to B's, and back.
    pub capital_a_to_b: Tally,
    pub capital_b_to_a: Tally,
    /// Capital ties run both ways.
    pub mutual: bool,
    /// min(a→b, b→a) / max(a→b, b→a) by count; 0 when there are none.
    pub reciprocity: f64,
    /// Capital ties between A and B among all capital ties touching A or B.
    pub capital_share: f64,
}

/// A cluster's capital ties and how many cross into other clusters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterCrossing {
    pub cluster: Id,
    pub capital_ties: u64,
    pub crossing_capital_ties: u64,
    /// crossing_capital_ties / capital_ties (0 without capital ties).
    pub cross_investment_index: f64,
    /// Links of any kind from or to another cluster.
    pub crossing_ties: u64,
}

/// What [`crossings`] finds: the pairs of clusters with ties crossing
/// between them (by id), and every cluster's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Crossings {
    pub pairs: Vec<PairCrossing>,
    pub clusters: Vec<ClusterCrossing>,
}

/// Links between two checks of the control.
const LINKS_PER_CHECK: usize = 1 << 16;

/// Crossings among the clusters in the filter (all when empty).
pub fn crossings(network: &Network, filter: &GraphFilter, control: &Control) -> Result<Crossings, Cancelled> {
    let wanted: BTreeSet<&Id> = if filter.clusters.is_empty() {
        network.clusters.keys().collect()
    } else {
        filter.clusters.iter().collect()
    };
    let places = |ix: u32| -> Vec<&Id> {
        filter
            .actor(network, ix)
            .map(|a| a.cluster_ids.iter().filter(|c| wanted.contains(c)).collect())
            .unwrap_or_default()
    };
    let mut pairs: BTreeMap<(Id, Id), PairCrossing> = BTreeMap::new();
    let mut clusters: BTreeMap<Id, ClusterCrossing> = wanted
        .iter()
        .map(|c| {
            (
                (*c).clone(),
                ClusterCrossing {
                    cluster: (*c).clone(),
                    ..ClusterCrossing::default()
                },
            )
        })
        .collect();
    let total = network.links.len() as u64;
    for (done, (key, data)) in network.links.iter().enumerate() {
        if done % LINKS_PER_CHECK == 0 {
            control.check()?;
            control.progress("crossing links", done as u64, total);
        }
        if !filter.keeps_link(key.kind, data) {
            continue;
        }
        let (from, to) = (places(key.source), places(key.target));
        let capital = key.kind.is_capital();
        // Every cluster at either end counts the tie once.
        let touching: BTreeSet<&Id> = from.iter().chain(&to).copied().collect();
        for c in &touching {
            let entry = clusters.get_mut(*c).expect("wanted clusters are listed");
            let crossing = if from.contains(c) {
                to.iter().any(|t| t != c)
            } else {
                from.iter().any(|f| f != c)
            };
            if capital {
                entry.capital_ties += 1;
                if crossing {
                    entry.crossing_capital_ties += 1;
                }
            }
            if crossing {
                entry.crossing_ties += 1;
            }
        }
        for a in &from {
            for b in &to {
                if a == b {
                    continue;
                }
                let (first, second, forward) = if a < b { (*a, *b, true) } else { (*b, *a, false) };
                let pair = pairs
                    .entry((first.clone(), second.clone()))
                    .or_insert_with(|| PairCrossing {
                        a: first.clone(),
                        b: second.clone(),
                        ..PairCrossing::default()
                    });
                pair.by_kind
                    .entry((key.kind, data.channel))
                    .or_default()
                    .add(data.weight);
                if capital {
                    if forward {
                        pair.capital_a_to_b.add(data.weight);
                    } else {
                        pair.capital_b_to_a.add(data.weight);
                    }
                }
            }
        }
    }
    for pair in pairs.values_mut() {
        let (ab, ba) = (pair.capital_a_to_b.count, pair.capital_b_to_a.count);
        pair.mutual = ab > 0 && ba > 0;
        pair.reciprocity = if ab.max(ba) == 0 {
            0.0
        } else {
            ab.min(ba) as f64 / ab.max(ba) as f64
        };
        let between = ab + ba;
        let touching = clusters[&pair.a].capital_ties + clusters[&pair.b].capital_ties - between;
        pair.capital_share = if touching == 0 {
            0.0
        } else {
            between as f64 / touching as f64
        };
    }
    for cluster in clusters.values_mut() {
        cluster.cross_investment_index = if cluster.capital_ties == 0 {
            0.0
        } else {
            cluster.crossing_capital_ties as f64 / cluster.capital_ties as f64
        };
    }
    Ok(Crossings {
        pairs: pairs.into_values().collect(),
        clusters: clusters.into_values().collect(),
    })
}

/// INVESTMENT and OWNERSHIP links between members of `cluster` and members
/// of each other cluster, either way: a pair's capital ties of
/// [`crossings`] (both directions), from one cluster's members alone, so an
/// incremental evaluation (the alerts) need not scan every link.
pub fn capital_ties_by_other(network: &Network, cluster: &Id) -> HashMap<Id, u64> {
    let mut out: HashMap<Id, u64> = HashMap::new();
    for ix in network.member_indexes(cluster) {
        for key in network.incident(ix) {
            if !key.kind.is_capital() {
                continue;
            }
            let end = if key.source == ix { key.target } else { key.source };
            if let Some(end) = network.actor(end) {
                for other in &end.cluster_ids {
                    *out.entry(other.clone()).or_default() += 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Change, Link},
        testing::{actor, cluster, network},
    };

    fn actor_in(id: &str, clusters: &[&str]) -> Change {
        Change::UpsertActor(actor(id, clusters))
    }

    fn link(source: &str, target: &str, kind: LinkKind) -> Change {
        Change::UpsertLink(Link {
            weight: 2.0,
            ..crate::testing::link(source, target, kind)
        })
    }

    #[test]
    fn cross_investment_by_hand() {
        // a1 in A and b1 in B invest in each other; external x invests in a1;
        // a1 and b1 also cooperate.
        let network = network([
            Change::UpsertCluster(cluster("A")),
            Change::UpsertCluster(cluster("B")),
            actor_in("a1", &["A"]),
            actor_in("b1", &["B"]),
            actor_in("x", &[]),
            link("a1", "b1", LinkKind::Investment),
            link("b1", "a1", LinkKind::Ownership),
            link("x", "a1", LinkKind::Investment),
            link("a1", "b1", LinkKind::Cooperation),
        ]);
        let Crossings { pairs, clusters } = crossings(&network, &GraphFilter::default(), &Control::none()).unwrap();
        assert_eq!(pairs.len(), 1);
        let pair = &pairs[0];
        assert_eq!((pair.capital_a_to_b.count, pair.capital_b_to_a.count), (1, 1));
        assert!(pair.mutual);
        assert_eq!(pair.reciprocity, 1.0);
        // Capital ties touching A: 3 (two with B, one from x); touching B: 2;
        // together 3 + 2 − 2 = 3, of which 2 are between A and B.
        assert!((pair.capital_share - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(pair.by_kind.values().map(|t| t.count).sum::<u64>(), 3);
        // A: 2 of its 3 capital ties cross; B: both of its 2 do.
        assert!((clusters[0].cross_investment_index - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(clusters[1].cross_investment_index, 1.0);
        assert_eq!((clusters[0].crossing_ties, clusters[1].crossing_ties), (3, 3));
    }

    proptest::proptest! {
        /// The alerts' per-cluster capital ties are the pairs' capital ties
        /// (each actor in one cluster at most, where "between A and B" is
        /// unambiguous).
        #[test]
        fn capital_ties_by_other_are_the_pairs_capital_ties(
            changes in crate::testing::arbitrary_clustered_network(true)
        ) {
            let network = crate::testing::network(changes);
            let found = crossings(&network, &GraphFilter::default(), &Control::none()).unwrap();
            for a in network.clusters.keys() {
                let quick = capital_ties_by_other(&network, a);
                for b in network.clusters.keys().filter(|b| *b != a) {
                    let pair = found.pairs.iter().find(|p| (&p.a, &p.b) == (a, b) || (&p.a, &p.b) == (b, a));
                    let expected = pair.map_or(0, |p| p.capital_a_to_b.count + p.capital_b_to_a.count);
                    proptest::prop_assert_eq!(quick.get(b).copied().unwrap_or(0), expected, "{}-{}", a, b);
                }
            }
        }
    }
}
