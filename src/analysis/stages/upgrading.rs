//! Upgrading over time (产业升级) between two dates, the four kinds the
//! article names. A cluster's members on a date are its actors valid then,
//! with their attributes on that date (`ActorProfile` history).
//!
//! * **Functional**: the mean smile-curve value of the segments the members
//!   perform rises by at least `upgrading.min_value_gain` (moving towards
//!   design, development, marketing and service), *and* firms moved up:
//!   members whose own segments gained value, or entrants performing
//!   segments above the cluster's mean before. A mix that rose only because
//!   members left is a *shrinking chain*, reported, not upgrading. Evidence:
//!   members per segment before and after, the members whose segments
//!   changed, entries and exits.
//! * **Chain**: the cluster gains ties into, or members in, an industry
//!   (ISIC group, three digits) it had neither among its members nor among
//!   its partners before; *related* when the industry space says so: its
//!   proximity to one of the cluster's industries before, among every
//!   cluster's specialisations on the first date (ISIC groups, firms
//!   counted), is at least `upgrading.min_proximity` (docs/relatedness.md).
//!   Where the space cannot say (an industry no cluster had then, or the
//!   cluster's own industries had no specialist), the ISIC tree does: the
//!   same division as one of the cluster's industries before (a carmaker's
//!   new parts line, C293 beside C291, is related; a spinning mill, C131,
//!   is not). Detected when a related new industry appears.
//! * **Product**: members that moved to another industry class within their
//!   division (a new product line in the same trade), where the data carry
//!   industry codes at both dates.
//! * **Process**: the median growth of revenue per employee reaches
//!   `upgrading.min_productivity_growth`, over the members that carry revenue
//!   and employees at both dates.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::analysis::{
    relatedness::{relatedness, MatrixConfig, Measure, Relatedness},
    relations::fusion::IndustryLevel,
    stages::measures::segment_mix,
    stages::stage_config::StageConfig,
    stages::StageContext,
    Cancelled,
};
use crate::graph::GraphFilter;
use crate::{
    model::{Date, Id, Segment, SegmentSet},
    network::{Attributes, Ix, Network},
};

/// A segment and the members performing it at the two dates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentChange {
    pub segment: Segment,
    pub members_before: u64,
    pub members_after: u64,
}

/// A member whose segments or industry changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Move {
    pub actor: Id,
    pub segments_before: SegmentSet,
    pub segments_after: SegmentSet,
    pub industry_before: String,
    pub industry_after: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Functional {
    pub detected: bool,
    pub value_before: f64,
    pub value_after: f64,
    /// Every segment performed at either date.
    pub segments: Vec<SegmentChange>,
    pub moved: Vec<Move>,
    pub entered: u64,
    pub exited: u64,
    /// Members whose own segments gained smile value.
    pub moved_up: u64,
    /// Entrants whose segments are worth more than the cluster's mean before.
    pub entered_higher: u64,
    /// The mean value rose by the gain, but only because members left.
    pub shrinking_chain: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chain {
    pub detected: bool,
    /// Industries the cluster's partners are in now and nobody was before.
    pub new_partner_industries: Vec<NewIndustry>,
    /// Industries new among the members (`ties` is 0).
    pub new_member_industries: Vec<NewIndustry>,
}

/// An industry (ISIC group) new to a cluster over the period.
#[derive(Clone, Debug, PartialEq)]
pub struct NewIndustry {
    pub group: String,
    /// Ties from the members into it, after.
    pub ties: u64,
    pub related: bool,
    /// Its largest proximity to one of the cluster's industries before;
    /// None when the industry space cannot say, and the ISIC division
    /// decided `related`.
    pub proximity: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Product {
    pub detected: bool,
    pub actors_with_data: u64,
    pub new_product_lines: Vec<Move>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Process {
    pub detected: bool,
    pub actors_with_data: u64,
    pub median_productivity_growth: f64,
    pub improved: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Upgrading {
    pub members_before: u64,
    pub members_after: u64,
    pub functional: Functional,
    pub chain: Chain,
    pub product: Product,
    pub process: Process,
}

/// Upgrading of `cluster` from `from` to `to`; the filter's link kinds and
/// channels select the ties.
pub fn upgrading(ctx: StageContext, cluster: &Id, from: Date, to: Date) -> Result<Upgrading, Cancelled> {
    let control = ctx.control;
    control.check()?;
    control.progress("functional", 0, 4);
    let members = TwoDates::new(ctx.network, cluster, from, to);
    let moves = members.moves();
    let functional = functional(ctx.config, &members, &moves);
    control.check()?;
    control.progress("chain", 1, 4);
    let chain = chain(ctx, &members)?;
    control.check()?;
    control.progress("product and process", 2, 4);
    let product = product(&members, &moves);
    let process = process(ctx.config, &members);
    Ok(Upgrading {
        members_before: members.before.len() as u64,
        members_after: members.after.len() as u64,
        functional,
        chain,
        product,
        process,
    })
}

/// A cluster's members on two dates.
struct TwoDates<'n> {
    network: &'n Network,
    from: Date,
    to: Date,
    before: Vec<Ix>,
    after: Vec<Ix>,
    /// Membership tests on sets: a national cluster has many thousand members.
    before_set: HashSet<Ix>,
    after_set: HashSet<Ix>,
    /// Members on both dates.
    both: Vec<Ix>,
}

impl<'n> TwoDates<'n> {
    fn new(network: &'n Network, cluster: &Id, from: Date, to: Date) -> TwoDates<'n> {
        let members: Vec<Ix> = network.member_indexes(cluster).collect();
        let valid_on = |ix: Ix, date: Date| network.actor(ix).is_some_and(|a| a.validity.contains(date));
        let before: Vec<Ix> = members.iter().copied().filter(|ix| valid_on(*ix, from)).collect();
        let after: Vec<Ix> = members.iter().copied().filter(|ix| valid_on(*ix, to)).collect();
        let (before_set, after_set): (HashSet<Ix>, HashSet<Ix>) =
            (before.iter().copied().collect(), after.iter().copied().collect());
        let both = before.iter().copied().filter(|ix| after_set.contains(ix)).collect();
        TwoDates {
            network,
            from,
            to,
            before,
            after,
            before_set,
            after_set,
            both,
        }
    }

    fn valid_on(&self, ix: Ix, date: Date) -> bool {
        self.network.actor(ix).is_some_and(|a| a.validity.contains(date))
    }

    fn at(&self, ix: Ix, date: Date) -> Option<Attributes<'n>> {
        self.network
            .actor(ix)
            .map(|a| self.network.attributes_at(a, Some(date)))
    }

    /// Members on both dates whose segments or industry changed.
    fn moves(&self) -> Vec<Move> {
        self.both
            .iter()
            .filter_map(|&ix| {
                let (a, b) = (self.at(ix, self.from)?, self.at(ix, self.to)?);
                (a.segments != b.segments || a.industry != b.industry).then(|| Move {
                    actor: self.network.actor(ix).map(|x| x.id.clone()).unwrap_or_default(),
                    segments_before: *a.segments,
                    segments_after: *b.segments,
                    industry_before: a.industry.to_string(),
                    industry_after: b.industry.to_string(),
                })
            })
            .collect()
    }
}

/// Functional: the segment mix and its smile value, and who moved it.
fn functional(config: &StageConfig, m: &TwoDates, moves: &[Move]) -> Functional {
    let mix_before = segment_mix(m.network, m.before.iter().copied(), Some(m.from));
    let mix_after = segment_mix(m.network, m.after.iter().copied(), Some(m.to));
    let (value_before, value_after) = (
        config.smile.mean_value(&mix_before),
        config.smile.mean_value(&mix_after),
    );
    let own_value = |segments: &SegmentSet| {
        let mut mix = [0.0; 8];
        for s in segments.iter() {
            mix[s as usize] += 1.0;
        }
        config.smile.mean_value(&mix)
    };
    let moved_up = moves
        .iter()
        .filter(|m| own_value(&m.segments_after) > own_value(&m.segments_before))
        .count() as u64;
    let entered: Vec<Ix> = m
        .after
        .iter()
        .copied()
        .filter(|ix| !m.before_set.contains(ix))
        .collect();
    let entered_higher = entered
        .iter()
        .filter_map(|&ix| m.at(ix, m.to))
        .filter(|a| !a.segments.is_empty() && own_value(a.segments) > value_before)
        .count() as u64;
    let value_rose = value_after - value_before >= config.upgrading.min_value_gain;
    let exited = m.before.iter().filter(|ix| !m.after_set.contains(ix)).count() as u64;
    Functional {
        detected: value_rose && moved_up + entered_higher > 0,
        moved_up,
        entered_higher,
        shrinking_chain: value_rose && moved_up + entered_higher == 0 && exited > 0,
        value_before,
        value_after,
        segments: Segment::ALL
            .iter()
            .map(|s| SegmentChange {
                segment: *s,
                members_before: mix_before[*s as usize] as u64,
                members_after: mix_after[*s as usize] as u64,
            })
            .filter(|c| c.members_before + c.members_after > 0)
            .collect(),
        moved: moves
            .iter()
            .filter(|m| m.segments_before != m.segments_after)
            .cloned()
            .collect(),
        entered: entered.len() as u64,
        exited,
    }
}

/// Chain: industries (ISIC groups) new to the cluster, among members or
/// partners, related by the industry space on the first date, else by the
/// ISIC division.
fn chain(ctx: StageContext, m: &TwoDates) -> Result<Chain, Cancelled> {
    let member_groups = |set: &[Ix], date: Date| -> BTreeSet<String> {
        set.iter()
            .filter_map(|ix| m.at(*ix, date))
            .filter_map(|a| IndustryLevel::Group.key(a.industry).map(str::to_string))
            .collect()
    };
    let (groups_before, groups_after) = (member_groups(&m.before, m.from), member_groups(&m.after, m.to));
    let inside_before: BTreeSet<Ix> = m.before.iter().copied().collect();
    let inside_after: BTreeSet<Ix> = m.after.iter().copied().collect();
    let (partners_before, partners_after) = (
        partner_groups(ctx, m, &inside_before, m.from),
        partner_groups(ctx, m, &inside_after, m.to),
    );
    let division = |group: &str| IndustryLevel::Division.key(group).map(str::to_string);
    let own_divisions: BTreeSet<String> = groups_before.iter().filter_map(|g| division(g)).collect();
    let space = industry_space(ctx, m.from)?;
    let proximity = |g: &str| -> Option<f64> {
        let space = space.as_ref()?;
        let p = space.industry_index(g)?;
        let k = space.figures.cols;
        groups_before
            .iter()
            .filter_map(|h| space.industry_index(h))
            .map(|q| space.figures.proximity[p * k + q])
            .filter(|phi| !phi.is_nan())
            .reduce(f64::max)
    };
    let min_proximity = ctx.config.upgrading.min_proximity;
    let new_industry = |g: &str, ties: u64| {
        let proximity = proximity(g);
        NewIndustry {
            group: g.to_string(),
            ties,
            related: match proximity {
                Some(phi) => phi >= min_proximity,
                None => division(g).is_some_and(|d| own_divisions.contains(&d)),
            },
            proximity,
        }
    };
    let known = |d: &str| groups_before.contains(d) || partners_before.contains_key(d);
    let new_partner_industries: Vec<NewIndustry> = partners_after
        .iter()
        .filter(|(d, _)| !known(d))
        .map(|(d, n)| new_industry(d, *n))
        .collect();
    let new_member_industries: Vec<NewIndustry> = groups_after
        .iter()
        .filter(|d| !known(d))
        .map(|d| new_industry(d, 0))
        .collect();
    Ok(Chain {
        detected: new_partner_industries
            .iter()
            .chain(&new_member_industries)
            .any(|n| n.related),
        new_partner_industries,
        new_member_industries,
    })
}

/// The industry space on `date`: every cluster's members then, at the ISIC
/// group level, firms counted (head counts are often missing, and a group a
/// cluster has firms in is one it can produce in).
/// None when the space has too many industries to compute
/// (`relatedness::MAX_INDUSTRIES`): the ISIC tree decides then.
fn industry_space(ctx: StageContext, date: Date) -> Result<Option<Relatedness>, Cancelled> {
    let filter = GraphFilter {
        as_of: Some(date),
        ..GraphFilter::default()
    };
    let config = MatrixConfig {
        level: IndustryLevel::Group,
        measure: Measure::Firms,
        ..MatrixConfig::default()
    };
    match relatedness(ctx.network, &filter, &config, ctx.control) {
        Ok(space) => Ok(Some(space)),
        Err(crate::error::Error::Cancelled) => Err(Cancelled),
        Err(_) => Ok(None),
    }
}

/// The partners' industry groups on a date, with the number of ties into each.
fn partner_groups(ctx: StageContext, m: &TwoDates, inside: &BTreeSet<Ix>, date: Date) -> BTreeMap<String, u64> {
    let network = ctx.network;
    let mut out = BTreeMap::new();
    for &ix in inside {
        for key in network.incident(ix) {
            let Some(data) = network.links.get(&key) else { continue };
            if !ctx.filter.keeps_link(key.kind, data) || !data.validity.contains(date) {
                continue;
            }
            let other = if key.source == ix { key.target } else { key.source };
            if inside.contains(&other) || !m.valid_on(other, date) {
                continue;
            }
            if let Some(d) = m.at(other, date).and_then(|a| IndustryLevel::Group.key(a.industry)) {
                *out.entry(d.to_string()).or_default() += 1;
            }
        }
    }
    out
}

/// Product: a member moved to another industry class within its division.
fn product(m: &TwoDates, moves: &[Move]) -> Product {
    let coded = |ix: Ix, date: Date| m.at(ix, date).is_some_and(|a| !a.industry.is_empty());
    let with_codes = m
        .both
        .iter()
        .filter(|ix| coded(**ix, m.from) && coded(**ix, m.to))
        .count() as u64;
    let new_product_lines: Vec<Move> = moves
        .iter()
        .filter(|m| {
            m.industry_before != m.industry_after
                && IndustryLevel::Division.key(&m.industry_before) == IndustryLevel::Division.key(&m.industry_after)
        })
        .cloned()
        .collect();
    Product {
        detected: !new_product_lines.is_empty(),
        actors_with_data: with_codes,
        new_product_lines,
    }
}

/// Process: the median growth of revenue per employee.
fn process(config: &StageConfig, m: &TwoDates) -> Process {
    let productivity = |ix: Ix, date: Date| {
        let a = m.at(ix, date)?;
        match (a.revenue, a.employees) {
            (Some(r), Some(e)) if e > 0 && r > 0.0 => Some(r / e as f64),
            _ => None,
        }
    };
    let mut growth: Vec<f64> = m
        .both
        .iter()
        .filter_map(|&ix| Some(productivity(ix, m.to)? / productivity(ix, m.from)? - 1.0))
        .collect();
    growth.sort_by(f64::total_cmp);
    let median = match growth.len() {
        0 => 0.0,
        n if n % 2 == 1 => growth[n / 2],
        n => (growth[n / 2 - 1] + growth[n / 2]) / 2.0,
    };
    Process {
        detected: !growth.is_empty() && median >= config.upgrading.min_productivity_growth,
        actors_with_data: growth.len() as u64,
        median_productivity_growth: median,
        improved: growth.iter().filter(|g| **g > 0.0).count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Actor, ActorProfile, Change, LinkKind, Segment::*},
        testing::{actor, cluster, context, link, network},
    };

    fn date(text: &str) -> Date {
        text.parse().unwrap()
    }

    #[test]
    fn firms_moving_from_manufacturing_into_design_is_functional_upgrading() {
        // Cluster K: f1 and f2 manufactured until 2015 and design since; f3
        // still manufactures. Smile values: manufacturing 0.2, design 1.0.
        // 2010: three manufacturers, mean 0.2. 2020: two designers and one
        // manufacturer, (1.0 + 1.0 + 0.2) / 3 = 0.733. Gain 0.533 ≥ 0.05.
        let firm = |id: &str, segment| {
            Change::UpsertActor(Actor {
                segments: [segment].into_iter().collect(),
                employees: Some(10),
                revenue: Some(100.0),
                ..actor(id, &["K"])
            })
        };
        let past = |id: &str| {
            Change::UpsertActorProfile(ActorProfile {
                actor_id: id.into(),
                until: date("2015-01-01"),
                industry: "C2930".into(),
                segments: [Manufacturing].into_iter().collect(),
                employees: Some(10),
                revenue: Some(50.0),
            })
        };
        let network = network([
            Change::UpsertCluster(cluster("K")),
            firm("f1", Design),
            firm("f2", Design),
            firm("f3", Manufacturing),
            past("f1"),
            past("f2"),
        ]);
        let result = upgrading(context(&network), &"K".into(), date("2010-06-01"), date("2020-06-01")).unwrap();
        let f = &result.functional;
        assert!(f.detected && !f.shrinking_chain);
        assert_eq!(f.moved_up, 2);
        assert!((f.value_before - 0.2).abs() < 1e-12);
        assert!((f.value_after - 2.2 / 3.0).abs() < 1e-12);
        assert_eq!(f.moved.len(), 2);
        let change = |segment, members_before, members_after| SegmentChange {
            segment,
            members_before,
            members_after,
        };
        assert!(f.segments.contains(&change(Manufacturing, 3, 1)));
        assert!(f.segments.contains(&change(Design, 0, 2)));
        // Revenue per employee of f1 and f2 doubled (5 → 10), f3 has no past
        // profile so it is unchanged: growths 0, 1, 1; median 1 ≥ 0.1.
        assert!(result.process.detected);
        assert_eq!(result.process.median_productivity_growth, 1.0);
        // Same code C2930 before and after: no new product line.
        assert!(!result.product.detected);
    }

    #[test]
    fn ties_into_a_new_related_industry_are_chain_upgrading() {
        // K makes car parts (C2930, division C29). By 2020 it also supplies
        // a maker of car bodies (C292: the same division, related), a maker
        // of electrical equipment (C271: manufacturing too, but another
        // division, not related) and cooperates with a software firm (J620).
        let dated = |l: crate::model::Link, year: &str| {
            Change::UpsertLink(crate::model::Link {
                validity: crate::model::Validity {
                    from: Some(date(year)),
                    to: None,
                },
                ..l
            })
        };
        let outside = |id: &str, industry: &str| {
            Change::UpsertActor(Actor {
                industry: industry.into(),
                ..actor(id, &[])
            })
        };
        let network = network([
            Change::UpsertCluster(cluster("K")),
            Change::UpsertActor(actor("k1", &["K"])),
            outside("carmaker", "C2910"),
            outside("bodies", "C2920"),
            outside("electrics", "C2710"),
            outside("software", "J6201"),
            dated(link("k1", "carmaker", LinkKind::Supply), "2005-01-01"),
            dated(link("k1", "bodies", LinkKind::Supply), "2018-01-01"),
            dated(link("k1", "electrics", LinkKind::Supply), "2018-01-01"),
            dated(link("k1", "software", LinkKind::Cooperation), "2018-01-01"),
        ]);
        let result = upgrading(context(&network), &"K".into(), date("2010-01-01"), date("2020-01-01")).unwrap();
        assert!(result.chain.detected);
        let new: Vec<(&str, u64, bool)> = result
            .chain
            .new_partner_industries
            .iter()
            .map(|n| (n.group.as_str(), n.ties, n.related))
            .collect();
        assert_eq!(new, [("C271", 1, false), ("C292", 1, true), ("J620", 1, false)]);
        assert!(!result.functional.detected);
    }

    #[test]
    fn the_industry_space_not_the_isic_tree_says_what_is_related() {
        // Elsewhere, clusters making car parts (C293) also make electrical
        // equipment (C271) and none makes bodies (C292) beside parts: in
        // the space C271 is near C293, C292 far, though C292 shares the
        // division. K (parts) gains ties into both by 2020.
        let dated = |l: crate::model::Link, year: &str| {
            Change::UpsertLink(crate::model::Link {
                validity: crate::model::Validity {
                    from: Some(date(year)),
                    to: None,
                },
                ..l
            })
        };
        let firm = |id: &str, clusters: &[&str], industry: &str| {
            Change::UpsertActor(Actor {
                industry: industry.into(),
                ..actor(id, clusters)
            })
        };
        let mut changes = vec![Change::UpsertCluster(cluster("K")), firm("k1", &["K"], "C2930")];
        for c in ["P1", "P2", "P3"] {
            changes.push(Change::UpsertCluster(cluster(c)));
            changes.push(firm(&format!("{c}-parts"), &[c], "C2930"));
            changes.push(firm(&format!("{c}-electrics"), &[c], "C2710"));
        }
        for c in ["B1", "B2"] {
            changes.push(Change::UpsertCluster(cluster(c)));
            changes.push(firm(&format!("{c}-bodies"), &[c], "C2920"));
            changes.push(firm(&format!("{c}-software"), &[c], "J6201"));
        }
        changes.push(dated(link("k1", "P1-electrics", LinkKind::Supply), "2018-01-01"));
        changes.push(dated(link("k1", "B1-bodies", LinkKind::Supply), "2018-01-01"));
        let network = network(changes);
        let result = upgrading(context(&network), &"K".into(), date("2010-01-01"), date("2020-01-01")).unwrap();
        let new: Vec<(&str, bool, Option<f64>)> = result
            .chain
            .new_partner_industries
            .iter()
            .map(|n| (n.group.as_str(), n.related, n.proximity))
            .collect();
        // C293 is held by K and P1..P3 (4), C271 by P1..P3 (3, all beside
        // C293): φ = 3 / max(4, 3); C292 never beside C293: φ = 0.
        assert_eq!(new, [("C271", true, Some(0.75)), ("C292", false, Some(0.0))]);
        assert!(result.chain.detected);
    }

    #[test]
    fn exits_alone_are_a_shrinking_chain_not_functional_upgrading() {
        // Ten manufacturers close in 2015, two designers stay unchanged: the
        // mean value rises from (10·0.2 + 2·1.0)/12 = 0.33 to 1.0, but no
        // firm moved up and none entered.
        let mut changes = vec![Change::UpsertCluster(cluster("K"))];
        for i in 0..12 {
            changes.push(Change::UpsertActor(Actor {
                segments: [if i < 10 { Manufacturing } else { Design }].into_iter().collect(),
                validity: crate::model::Validity {
                    from: None,
                    to: (i < 10).then(|| date("2015-01-01")),
                },
                ..actor(&format!("f{i}"), &["K"])
            }));
        }
        let network = network(changes);
        let result = upgrading(context(&network), &"K".into(), date("2010-01-01"), date("2020-01-01")).unwrap();
        let f = &result.functional;
        assert!(f.value_after - f.value_before > 0.6);
        assert_eq!((f.exited, f.moved_up, f.entered_higher), (10, 0, 0));
        assert!(!f.detected && f.shrinking_chain);
    }
}
