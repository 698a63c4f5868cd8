//! Hub and spoke (the Changchun case): a cluster's core firms and their
//! supporting systems.
//!
//! Within a cluster, the supply network is its members and the SUPPLY links
//! between them. A member's **reach** is the share of the other members that
//! supply it, directly or through others: where supply converges. A **core
//! firm** reaches at least `core_firms.min_reach` of the cluster (default 0.3:
//! a third of the cluster works towards it; a carmaker's tier-1 supplier
//! reaches a tenth) and is not itself supplied by another such firm (its
//! dealers, downstream, see all of its supply too). Its **supporting
//! systems** are the groups of its upstream suppliers that
//! are connected to each other by supply without passing through a core:
//! the weakly connected components of the upstream supply network with the
//! cores taken out. Each lists the members that supply the core directly
//! (tier 1).

use std::{
    collections::{BTreeMap, VecDeque},
    hash::BuildHasher,
};

// FxHash: the supply walks run from every member of every assessed cluster.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::analysis::{stages::StageContext, Cancelled};
use crate::{
    graph::GraphFilter,
    model::{ActorKind, Id, LinkKind, Segment},
    network::{ties::Ties, Ix, Network},
};

/// The supply arcs between a set of actors, both ways, over dense local
/// indexes: the walks below run from every member of every assessed cluster,
/// so they step through plain vectors rather than hash maps.
struct SupplyNetwork {
    ixs: Vec<Ix>,
    local: HashMap<Ix, u32>,
    down: Vec<Vec<u32>>,
    up: Vec<Vec<u32>>,
}

impl SupplyNetwork {
    fn new<S: BuildHasher>(
        filter: &GraphFilter,
        members: &std::collections::HashSet<Ix, S>,
        ties: &Ties,
    ) -> SupplyNetwork {
        let mut ixs: Vec<Ix> = members.iter().copied().collect();
        ixs.sort_unstable();
        let local: HashMap<Ix, u32> = ixs.iter().enumerate().map(|(i, ix)| (*ix, i as u32)).collect();
        let mut down = vec![Vec::new(); ixs.len()];
        let mut up = vec![Vec::new(); ixs.len()];
        for (i, &ix) in ixs.iter().enumerate() {
            for (key, data) in ties.out(ix) {
                if key.kind != LinkKind::Supply {
                    continue;
                }
                let Some(&j) = local.get(&key.target) else { continue };
                if filter.keeps_link(key.kind, data) {
                    down[i].push(j);
                    up[j as usize].push(i as u32);
                }
            }
        }
        SupplyNetwork { ixs, local, down, up }
    }

    /// The members reached from local node `start` along `arcs`, without
    /// it, as local nodes.
    fn reached(&self, start: u32, arcs: &[Vec<u32>]) -> Vec<u32> {
        let mut seen = vec![false; self.ixs.len()];
        seen[start as usize] = true;
        let mut reached = Vec::new();
        let mut next = 0;
        let mut at = start;
        loop {
            for &w in &arcs[at as usize] {
                if !seen[w as usize] {
                    seen[w as usize] = true;
                    reached.push(w);
                }
            }
            // The reached list is the breadth-first queue.
            let Some(&v) = reached.get(next) else { break };
            next += 1;
            at = v;
        }
        reached
    }

    /// The actors upstream of `ix` (those that supply it, directly or not).
    fn upstream(&self, ix: Ix) -> HashSet<Ix> {
        let Some(&start) = self.local.get(&ix) else {
            return HashSet::default();
        };
        self.reached(start, &self.up)
            .into_iter()
            .map(|i| self.ixs[i as usize])
            .collect()
    }

    /// The direct suppliers (`up`) or customers (`down`) of an actor.
    fn next<'a>(&'a self, ix: Ix, arcs: &'a [Vec<u32>]) -> impl Iterator<Item = Ix> + 'a {
        self.local
            .get(&ix)
            .into_iter()
            .flat_map(move |&i| arcs[i as usize].iter().map(|&j| self.ixs[j as usize]))
    }
}

/// A member of the supply network: its reach and its upstream and
/// downstream counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reach {
    pub actor: Ix,
    pub reach: f64,
    pub upstream: usize,
    pub downstream: usize,
}

/// The core firms among `members`, most reach first, and the best reach of
/// any member not supplied by a core.
fn find_cores<S: BuildHasher>(
    network: &Network,
    supply: &SupplyNetwork,
    members: &std::collections::HashSet<Ix, S>,
    min_reach: f64,
) -> (Vec<Reach>, f64) {
    let others = members.len().saturating_sub(1).max(1) as f64;
    // Each member with suppliers, its reach and its upstream (local nodes).
    let mut all: Vec<(Reach, Vec<u32>, Option<&Id>)> = members
        .iter()
        .filter_map(|&ix| {
            let &start = supply.local.get(&ix)?;
            if supply.up[start as usize].is_empty() {
                return None;
            }
            let upstream = supply.reached(start, &supply.up);
            let reach = Reach {
                actor: ix,
                reach: upstream.len() as f64 / others,
                upstream: upstream.len(),
                downstream: supply.reached(start, &supply.down).len(),
            };
            Some((reach, upstream, network.actor(ix).map(|a| &a.id)))
        })
        .collect();
    // Equal reach is ordered by actor id, not index: an actor's index
    // depends on when it was stored, and the answer must not.
    all.sort_by(|a, b| b.0.reach.total_cmp(&a.0.reach).then_with(|| a.2.cmp(&b.2)));
    let mut candidate = vec![false; supply.ixs.len()];
    for (r, _, _) in all.iter().filter(|(r, _, _)| r.reach >= min_reach) {
        if let Some(&i) = supply.local.get(&r.actor) {
            candidate[i as usize] = true;
        }
    }
    let is_candidate = |ix: Ix| supply.local.get(&ix).is_some_and(|&i| candidate[i as usize]);
    let supplied_by_candidate = |upstream: &[u32]| upstream.iter().any(|&u| candidate[u as usize]);
    let cores: Vec<Reach> = all
        .iter()
        .filter(|(r, upstream, _)| is_candidate(r.actor) && !supplied_by_candidate(upstream))
        .map(|(r, _, _)| *r)
        .collect();
    let best = all
        .iter()
        .filter(|(_, upstream, _)| !supplied_by_candidate(upstream))
        .map(|(r, _, _)| r.reach)
        .fold(0.0, f64::max);
    (cores, best)
}

/// The core firms of a set of members (a cluster), most reach first, and the
/// best reach of any member not supplied by a core: AssessStage's
/// hub-and-spoke figure.
pub fn cores_of<S: BuildHasher>(
    network: &Network,
    filter: &GraphFilter,
    members: &std::collections::HashSet<Ix, S>,
    ties: &Ties,
    min_reach: f64,
) -> (Vec<Reach>, f64) {
    find_cores(network, &SupplyNetwork::new(filter, members, ties), members, min_reach)
}

#[derive(Clone, Debug, PartialEq)]
pub struct SupportingSystem {
    pub members: Vec<Id>,
    /// Members supplying the core directly.
    pub tier1: Vec<Id>,
    /// Segments by how many members perform them, most first.
    pub segments: Vec<(Segment, u64)>,
    pub industries: Vec<(String, u64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CoreFirm {
    pub actor: Id,
    pub name: String,
    pub kind: ActorKind,
    pub reach: f64,
    pub upstream: u64,
    pub downstream: u64,
    /// Largest first.
    pub systems: Vec<SupportingSystem>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CoreStructure {
    pub members: u64,
    /// Most reach first; empty when no member reaches `min_reach`.
    pub cores: Vec<CoreFirm>,
    /// The best reach of any member (the hub-and-spoke figure of AssessStage).
    pub best_reach: f64,
}

fn counted<T: Ord + Clone>(items: impl Iterator<Item = T>) -> Vec<(T, u64)> {
    let mut counts: BTreeMap<T, u64> = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    let mut out: Vec<(T, u64)> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// The core firms of a cluster and their supporting systems. The control
/// is checked after the search for cores and between the cores.
pub fn core_firms(ctx: StageContext, cluster: &Id) -> Result<CoreStructure, Cancelled> {
    let (network, filter, control) = (ctx.network, ctx.filter, ctx.control);
    control.check()?;
    control.progress("supply network", 0, 0);
    let members: HashSet<Ix> = network
        .member_indexes(cluster)
        .filter(|ix| filter.actor(network, *ix).is_some())
        .collect();
    let supply = SupplyNetwork::new(filter, &members, &Ties::none(network));
    let (cores, best_reach) = find_cores(network, &supply, &members, ctx.config.core_firms.min_reach);
    control.check()?;
    let core_set: HashSet<Ix> = cores.iter().map(|r| r.actor).collect();
    let total = cores.len() as u64;
    let cores = cores
        .iter()
        .enumerate()
        .map(|(done, r)| {
            control.check()?;
            control.progress("supporting systems", done as u64, total);
            let actor = network.actor(r.actor);
            Ok(CoreFirm {
                actor: actor.map(|a| a.id.clone()).unwrap_or_default(),
                name: actor.map(|a| a.name.clone()).unwrap_or_default(),
                kind: actor.map_or(ActorKind::Firm, |a| a.kind),
                reach: r.reach,
                upstream: r.upstream as u64,
                downstream: r.downstream as u64,
                systems: supporting_systems(network, &supply, r.actor, &core_set),
            })
        })
        .collect::<Result<_, Cancelled>>()?;
    Ok(CoreStructure {
        members: members.len() as u64,
        cores,
        best_reach,
    })
}

/// A core's supporting systems: the connected groups of its suppliers once
/// the cores are taken out, largest first, each with its tier-1 members.
fn supporting_systems(
    network: &Network,
    supply: &SupplyNetwork,
    core: Ix,
    cores: &HashSet<Ix>,
) -> Vec<SupportingSystem> {
    let id_of = |ix: Ix| network.actor(ix).map(|a| a.id.clone()).unwrap_or_default();
    let suppliers: HashSet<Ix> = supply.upstream(core).difference(cores).copied().collect();
    let direct: HashSet<Ix> = supply.next(core, &supply.up).collect();
    let mut systems: Vec<SupportingSystem> = supplier_groups(supply, &suppliers)
        .into_iter()
        .map(|group| {
            let actors: Vec<_> = group.iter().filter_map(|ix| network.actor(*ix)).collect();
            let mut members: Vec<Id> = actors.iter().map(|a| a.id.clone()).collect();
            members.sort();
            let mut tier1: Vec<Id> = group
                .iter()
                .filter(|ix| direct.contains(ix))
                .map(|ix| id_of(*ix))
                .collect();
            tier1.sort();
            SupportingSystem {
                members,
                tier1,
                segments: counted(actors.iter().flat_map(|a| a.segments.iter())),
                industries: counted(
                    actors
                        .iter()
                        .filter(|a| !a.industry.is_empty())
                        .map(|a| a.industry.clone()),
                ),
            }
        })
        .collect();
    systems.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then_with(|| a.members.cmp(&b.members))
    });
    systems
}

/// The components of the suppliers' supply network (breadth first from
/// each supplier in index order).
fn supplier_groups(supply: &SupplyNetwork, suppliers: &HashSet<Ix>) -> Vec<Vec<Ix>> {
    let mut system_of: HashMap<Ix, usize> = HashMap::default();
    let mut systems: Vec<Vec<Ix>> = Vec::new();
    let mut start: Vec<Ix> = suppliers.iter().copied().collect();
    start.sort_unstable();
    for s in start {
        if system_of.contains_key(&s) {
            continue;
        }
        let n = systems.len();
        let mut queue = VecDeque::from([s]);
        system_of.insert(s, n);
        let mut group = Vec::new();
        while let Some(v) = queue.pop_front() {
            group.push(v);
            let next = supply.next(v, &supply.down).chain(supply.next(v, &supply.up));
            for w in next {
                if suppliers.contains(&w) && !system_of.contains_key(&w) {
                    system_of.insert(w, n);
                    queue.push_back(w);
                }
            }
        }
        systems.push(group);
    }
    systems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::Change,
        testing::{actor, cluster, context, link, network},
    };

    #[test]
    fn a_hub_with_two_supplier_groups_by_hand() {
        // In cluster K: s1 → hub and s2 → hub (tier 1), t1 → s1, t2 → s2
        // (tier 2), hub → d (a dealer). Four of the five others supply hub:
        // reach 0.8. d is supplied by all five (1.0) but by hub too, so it is
        // no core; s1 is supplied by t1 only (0.2). Hub's systems: {s1, t1}
        // and {s2, t2}, each with one tier-1 member.
        let supply = |a: &str, b: &str| Change::UpsertLink(link(a, b, LinkKind::Supply));
        let member = |id: &str| Change::UpsertActor(actor(id, &["K"]));
        let network = network([
            Change::UpsertCluster(cluster("K")),
            member("hub"),
            member("s1"),
            member("s2"),
            member("t1"),
            member("t2"),
            member("d"),
            supply("s1", "hub"),
            supply("s2", "hub"),
            supply("t1", "s1"),
            supply("t2", "s2"),
            supply("hub", "d"),
        ]);
        let structure = core_firms(context(&network), &"K".into()).unwrap();
        assert_eq!(structure.cores.len(), 1);
        let hub = &structure.cores[0];
        assert_eq!(
            (&*hub.actor, hub.reach, hub.upstream, hub.downstream),
            ("hub", 0.8, 4, 1)
        );
        let systems: Vec<(Vec<&str>, Vec<&str>)> = hub
            .systems
            .iter()
            .map(|s| {
                (
                    s.members.iter().map(|m| &**m).collect(),
                    s.tier1.iter().map(|m| &**m).collect(),
                )
            })
            .collect();
        assert_eq!(
            systems,
            [(vec!["s1", "t1"], vec!["s1"]), (vec!["s2", "t2"], vec!["s2"])]
        );
    }

    #[test]
    fn faw_is_the_core_of_changchun_with_seven_supporting_systems() {
        let network = network(crate::demo::demo_changes());
        let structure = core_firms(context(&network), &crate::demo::CHANGCHUN.into()).unwrap();
        assert_eq!(
            structure.cores.len(),
            1,
            "{:?}",
            structure.cores.iter().map(|c| (&c.actor, c.reach)).collect::<Vec<_>>()
        );
        let faw = &structure.cores[0];
        assert_eq!(&*faw.actor, crate::demo::FAW);
        assert_eq!(faw.systems.len(), crate::demo::SUPPORTING_SYSTEMS.len());
        for system in &faw.systems {
            assert_eq!(system.tier1.len(), 2, "{system:?}");
        }
    }
}
