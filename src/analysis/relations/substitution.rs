//! Substitution (替代): who could replace an actor.
//!
//! Structural equivalence (Lorrain and White 1971) from two actors' typed
//! neighbour profiles: each tie becomes an entry (role, neighbour) weighted by
//! link weight, with roles supplier, customer, investor, investee and partner
//! (the undirected kinds). The structural score is role-balanced: the cosine
//! of the two actors' neighbour weights within each role, averaged over the
//! roles either actor has, each role counting as many times as it has
//! distinct neighbours in the two profiles together. So one heavy customer tie
//! does not drown out a dozen shared suppliers, and a few shared side ties do
//! not outweigh a dozen unshared suppliers; with a single role it is the plain
//! cosine. Two actors that buy from the same suppliers and sell to the same
//! customers score near 1. (Role balancing is our choice.) The
//! score scales it by segment similarity (Jaccard of value-chain segments)
//! and industry similarity (1 for the same code, 0.5 for the same ISIC
//! division, its first three characters, else 0):
//!
//! score = structural · (w_s + w_g · segments + w_i · industry), weights
//! normalised to sum 1. Defaults 0.6 / 0.25 / 0.15: ties say most about what
//! an actor does for the network; segments and industry say whether it could.
//! The product, not a sum, because a substitute needs both: with a sum,
//! sharing one customer of ten (structural 0.32) in the same trade scored
//! 0.59 and cleared SubstitutionGaps' 0.5; now it scores 0.32. These
//! defaults are ours.
//!
//! An actor's own suppliers and customers are never its substitutes: a
//! supply tie between two actors makes them complements in one chain.
//!
//! A cluster's substitutes are found the same way one level up, except that
//! the three similarities are added (weighted mean), not multiplied: two
//! clusters' mixes compare whole trades, which can replace each other in a
//! market before they share a customer. A cluster's
//! neighbour profile holds the actors outside it that its members tie to,
//! each in the role it plays for the cluster (a member's supplier outside
//! the cluster is the cluster's supplier); segment and industry similarity
//! are the cosines of the clusters' segment and industry mixes (members per
//! segment, per industry code), as in [`overlap`](super::overlap).

use std::collections::HashMap;

use crate::analysis::{
    relations::fusion::IndustryLevel,
    relations::overlap::{self, Dimension},
    Cancelled, Control,
};
use crate::{
    graph::GraphFilter,
    model::{Actor, Id, LinkKind, Segment},
    network::{Ix, Network},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Supplier,
    Customer,
    Investor,
    Investee,
    Partner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Supplier => "SUPPLIER",
            Role::Customer => "CUSTOMER",
            Role::Investor => "INVESTOR",
            Role::Investee => "INVESTEE",
            Role::Partner => "PARTNER",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SubstituteConfig {
    pub structural_weight: f64,
    pub segment_weight: f64,
    pub industry_weight: f64,
    pub min_score: f64,
    pub top_k: usize,
    /// Shared neighbours listed per row.
    pub shared_limit: usize,
}

impl Default for SubstituteConfig {
    fn default() -> Self {
        SubstituteConfig {
            structural_weight: 0.6,
            segment_weight: 0.25,
            industry_weight: 0.15,
            min_score: 0.0,
            top_k: 10,
            shared_limit: 10,
        }
    }
}

impl SubstituteConfig {
    /// Clusters' score: the weighted mean of the three similarities. Two
    /// clusters' segment and industry mixes compare whole trades, which can
    /// replace each other in a market without sharing a customer yet.
    fn combine_mixes(&self, structural: f64, segments: f64, industry: f64) -> Similarity {
        let total = self.structural_weight + self.segment_weight + self.industry_weight;
        let total = if total > 0.0 { total } else { 1.0 };
        Similarity {
            score: (self.structural_weight * structural
                + self.segment_weight * segments
                + self.industry_weight * industry)
                / total,
            structural,
            segments,
            industry,
        }
    }

    /// Actors' score: the structural similarity scaled by the weighted
    /// mean of full structural weight and the two attribute similarities.
    fn combine(&self, structural: f64, segments: f64, industry: f64) -> Similarity {
        let total = self.structural_weight + self.segment_weight + self.industry_weight;
        let total = if total > 0.0 { total } else { 1.0 };
        Similarity {
            score: structural
                * (self.structural_weight + self.segment_weight * segments + self.industry_weight * industry)
                / total,
            structural,
            segments,
            industry,
        }
    }
}

/// A candidate's three similarities and their combination.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Similarity {
    score: f64,
    structural: f64,
    segments: f64,
    industry: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Substitute {
    /// The actor, or the cluster when the target is a cluster.
    pub id: Id,
    pub name: String,
    pub score: f64,
    pub structural: f64,
    pub segments: f64,
    pub industry: f64,
    /// Shared (role, neighbour id) entries, strongest first.
    pub shared_neighbors: Vec<(Role, Id)>,
    pub shared_neighbor_count: usize,
    pub shared_segments: Vec<Segment>,
}

/// The ties of an actor the filter keeps, each as (role the other plays for
/// it, other, weight); an actor's ties come out grouped by neighbour.
fn ties<'a>(network: &'a Network, filter: &'a GraphFilter, ix: Ix) -> impl Iterator<Item = (Role, Ix, f64)> + 'a {
    network.incident(ix).filter_map(move |key| {
        let data = network.links.get(&key)?;
        let outgoing = key.source == ix;
        let other = if outgoing { key.target } else { key.source };
        if !filter.keeps_link(key.kind, data) || filter.actor(network, other).is_none() {
            return None;
        }
        Some((role_of_other(key.kind, outgoing), other, data.weight))
    })
}

/// Where the scoring reads ties and role norms from: the network itself
/// (one target: only its neighbourhood is read), or a [`TieTable`] made
/// once for many targets.
trait Ties {
    fn ties(&self, ix: Ix) -> impl Iterator<Item = (Role, Ix, f64)> + '_;
    fn norms(&self, ix: Ix) -> ByRole;
}

/// The network under a filter, read as the scoring goes.
struct Live<'a> {
    network: &'a Network,
    filter: &'a GraphFilter,
}

impl Ties for Live<'_> {
    fn ties(&self, ix: Ix) -> impl Iterator<Item = (Role, Ix, f64)> + '_ {
        ties(self.network, self.filter, ix)
    }

    fn norms(&self, ix: Ix) -> ByRole {
        role_norms(self.network, self.filter, ix)
    }
}

/// Every actor's ties under one filter, and their role norms, read from the
/// network once: for scoring many targets (SubstitutionGaps), where reading
/// the network per tie (a map lookup each) would repeat the same work for
/// every target that shares a neighbour.
pub struct TieTable {
    /// Actor index to the start of its ties; one more entry at the end.
    offsets: Vec<usize>,
    ties: Vec<(Role, Ix, f64)>,
    norms: Vec<ByRole>,
}

impl TieTable {
    pub fn new(network: &Network, filter: &GraphFilter, control: &Control) -> Result<TieTable, Cancelled> {
        let n = network.actor_at.len();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut all = Vec::new();
        let mut norms = Vec::with_capacity(n);
        for ix in 0..n as Ix {
            if ix % 65_536 == 0 {
                control.check()?;
                control.progress("ties", ix as u64, n as u64);
            }
            let start = all.len();
            offsets.push(start);
            all.extend(ties(network, filter, ix));
            norms.push(norms_of_ties(all[start..].to_vec()));
        }
        offsets.push(all.len());
        Ok(TieTable {
            offsets,
            ties: all,
            norms,
        })
    }
}

impl Ties for TieTable {
    fn ties(&self, ix: Ix) -> impl Iterator<Item = (Role, Ix, f64)> + '_ {
        let ix = ix as usize;
        let range = match (self.offsets.get(ix), self.offsets.get(ix + 1)) {
            (Some(&start), Some(&end)) => start..end,
            _ => 0..0,
        };
        self.ties[range].iter().copied()
    }

    fn norms(&self, ix: Ix) -> ByRole {
        self.norms.get(ix as usize).copied().unwrap_or_default()
    }
}

/// The role the other end of a link plays for this end; `outgoing` when this
/// end is the link's source.
fn role_of_other(kind: LinkKind, outgoing: bool) -> Role {
    match (kind, outgoing) {
        (LinkKind::Supply, true) => Role::Customer,
        (LinkKind::Supply, false) => Role::Supplier,
        (LinkKind::Investment | LinkKind::Ownership, true) => Role::Investee,
        (LinkKind::Investment | LinkKind::Ownership, false) => Role::Investor,
        _ => Role::Partner,
    }
}

/// Per role: (squared norm, distinct neighbours) of one profile, or (dot
/// product, shared neighbours) of two.
type ByRole = [(f64, usize); 5];

/// The role-balanced cosine (see the module docs): each role's cosine
/// weighted by the distinct neighbours it has in the two profiles together.
fn role_balanced(dots: &ByRole, mine: &ByRole, theirs: &ByRole) -> f64 {
    let (mut weighted, mut entries) = (0.0, 0usize);
    for role in 0..5 {
        let (dot, shared) = dots[role];
        let count = mine[role].1 + theirs[role].1 - shared;
        let norms = (mine[role].0 * theirs[role].0).sqrt();
        let cosine = if norms == 0.0 { 0.0 } else { (dot / norms).min(1.0) };
        weighted += cosine * count as f64;
        entries += count;
    }
    if entries == 0 {
        0.0
    } else {
        weighted / entries as f64
    }
}

fn norms_of<K>(profile: &HashMap<(Role, K), f64>) -> ByRole {
    let mut norms = [(0.0, 0usize); 5];
    for ((role, _), w) in profile {
        norms[*role as usize].0 += w * w;
        norms[*role as usize].1 += 1;
    }
    norms
}

/// The shared (role, neighbour) entries of two profiles, strongest (largest
/// product of weights) first.
fn shared_entries(mine: &HashMap<(Role, Ix), f64>, theirs: &HashMap<(Role, Ix), f64>) -> Vec<(Role, Ix)> {
    let mut shared: Vec<((Role, Ix), f64)> = mine
        .iter()
        .filter_map(|(k, w)| theirs.get(k).map(|v| (*k, w * v)))
        .collect();
    shared.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    shared.into_iter().map(|(k, _)| k).collect()
}

/// The typed neighbour profile of an actor, as (role, neighbour) → weight.
fn profile(network: &Network, filter: &GraphFilter, ix: Ix) -> HashMap<(Role, Ix), f64> {
    profile_from(&Live { network, filter }, ix)
}

fn profile_from(source: &impl Ties, ix: Ix) -> HashMap<(Role, Ix), f64> {
    let mut out = HashMap::new();
    for (role, other, weight) in source.ties(ix) {
        *out.entry((role, other)).or_default() += weight;
    }
    out
}

/// Per role, an actor's squared norm and number of distinct neighbours.
fn role_norms(network: &Network, filter: &GraphFilter, ix: Ix) -> ByRole {
    norms_of_ties(ties(network, filter, ix).collect())
}

/// Per role, the squared norm and distinct neighbours of one actor's ties.
fn norms_of_ties(mut entries: Vec<(Role, Ix, f64)>) -> ByRole {
    entries.sort_unstable_by_key(|(role, other, _)| (*role, *other));
    let mut norms = [(0.0, 0usize); 5];
    let mut i = 0;
    while i < entries.len() {
        let (role, other, mut weight) = entries[i];
        i += 1;
        while i < entries.len() && entries[i].0 == role && entries[i].1 == other {
            weight += entries[i].2;
            i += 1;
        }
        norms[role as usize].0 += weight * weight;
        norms[role as usize].1 += 1;
    }
    norms
}

/// The role the neighbour plays seen from the other side.
fn mirrored(role: Role) -> Role {
    match role {
        Role::Supplier => Role::Customer,
        Role::Customer => Role::Supplier,
        Role::Investor => Role::Investee,
        Role::Investee => Role::Investor,
        Role::Partner => Role::Partner,
    }
}

fn industry_similarity(a: &Actor, b: &Actor) -> f64 {
    if a.industry.is_empty() || b.industry.is_empty() {
        0.0
    } else if a.industry == b.industry {
        1.0
    } else if IndustryLevel::Division.key(&a.industry) == IndustryLevel::Division.key(&b.industry) {
        0.5
    } else {
        0.0
    }
}

fn segment_similarity(a: &Actor, b: &Actor) -> f64 {
    let shared = a.segments.iter().filter(|s| b.segments.contains(*s)).count();
    let union = a.segments.len() + b.segments.len() - shared;
    if union == 0 {
        0.0
    } else {
        shared as f64 / union as f64
    }
}

/// Every candidate scoring at least `min_score`, best first (ties by
/// id), without the evidence rows. Candidates share at least one (role,
/// neighbour) with the target: walking each neighbour's ties finds them and
/// accumulates the dot products, so the work is the target's neighbourhood
/// two hops out, not the whole network.
fn scored(
    network: &Network,
    filter: &GraphFilter,
    target: Ix,
    mine: &HashMap<(Role, Ix), f64>,
    config: &SubstituteConfig,
) -> Vec<(Similarity, Ix)> {
    scored_from(&Live { network, filter }, network, filter, target, mine, config)
}

fn scored_from(
    source: &impl Ties,
    network: &Network,
    filter: &GraphFilter,
    target: Ix,
    mine: &HashMap<(Role, Ix), f64>,
    config: &SubstituteConfig,
) -> Vec<(Similarity, Ix)> {
    let Some(actor) = network.actor(target) else {
        return Vec::new();
    };
    let my_norms = norms_of(mine);
    // (candidate, role) -> (dot product, shared neighbours).
    let mut dots: HashMap<(Ix, Role), (f64, usize)> = HashMap::new();
    for (&(role, neighbor), &w) in mine {
        // Consecutive ties to one candidate (several kinds) make one entry.
        let mut last: Option<(Ix, Role)> = None;
        for (role_of_candidate, candidate, weight) in source.ties(neighbor) {
            let in_my_chain =
                mine.contains_key(&(Role::Customer, candidate)) || mine.contains_key(&(Role::Supplier, candidate));
            if candidate == target || in_my_chain || mirrored(role_of_candidate) != role {
                continue;
            }
            let entry = dots.entry((candidate, role)).or_default();
            entry.0 += w * weight;
            if last != Some((candidate, role)) {
                entry.1 += 1;
            }
            last = Some((candidate, role));
        }
    }
    let mut by_candidate: HashMap<Ix, ByRole> = HashMap::new();
    for ((candidate, role), (dot, shared)) in dots {
        by_candidate.entry(candidate).or_insert([(0.0, 0); 5])[role as usize] = (dot, shared);
    }
    let mut scored: Vec<(Similarity, Ix)> = by_candidate
        .into_iter()
        .filter_map(|(candidate, dot_by_role)| {
            let other = network.actor(candidate)?;
            if !filter.clusters.is_empty() && !other.cluster_ids.iter().any(|id| filter.clusters.contains(id)) {
                return None;
            }
            let theirs = source.norms(candidate);
            let structural = role_balanced(&dot_by_role, &my_norms, &theirs);
            let similarity = config.combine(
                structural,
                segment_similarity(actor, other),
                industry_similarity(actor, other),
            );
            (similarity.score >= config.min_score).then_some((similarity, candidate))
        })
        .collect();
    scored.sort_by(|a, b| {
        b.0.score.total_cmp(&a.0.score).then_with(|| {
            network
                .actor(a.1)
                .map(|x| &x.id)
                .cmp(&network.actor(b.1).map(|x| &x.id))
        })
    });
    scored
}

/// The best substitute of `target` (scoring at least `config.min_score`),
/// read from a tie table made under `filter`: for scoring many targets.
pub fn best_substitute(
    table: &TieTable,
    network: &Network,
    filter: &GraphFilter,
    target: Ix,
    config: &SubstituteConfig,
) -> Option<(Ix, f64)> {
    let mine = profile_from(table, target);
    scored_from(table, network, filter, target, &mine, config)
        .first()
        .map(|(similarity, ix)| (*ix, similarity.score))
}

/// The ids and scores of every actor that can replace `target` (scoring at
/// least `config.min_score`), best first: `substitutes` without the
/// evidence, for callers that only need to know who.
pub fn substitute_scores(
    network: &Network,
    filter: &GraphFilter,
    target: Ix,
    config: &SubstituteConfig,
) -> Vec<(Ix, f64)> {
    let mine = profile(network, filter, target);
    scored(network, filter, target, &mine, config)
        .into_iter()
        .map(|(similarity, ix)| (ix, similarity.score))
        .collect()
}

/// The actors most able to replace `target`, best first, with the evidence.
/// The scoring is one unit of work (the target's neighbourhood two hops
/// out); the control is checked before it and between the evidence rows.
pub fn substitutes(
    network: &Network,
    filter: &GraphFilter,
    target: Ix,
    config: &SubstituteConfig,
    control: &Control,
) -> Result<Vec<Substitute>, Cancelled> {
    control.check()?;
    let Some(actor) = network.actor(target) else {
        return Ok(Vec::new());
    };
    let mine = profile(network, filter, target);
    let mut scored = scored(network, filter, target, &mine, config);
    scored.truncate(config.top_k);
    control.check()?;
    Ok(scored
        .into_iter()
        .filter_map(|(similarity, candidate)| {
            let other = network.actor(candidate)?;
            // The evidence, for the rows kept: the shared neighbours, strongest first.
            let shared = shared_entries(&mine, &profile(network, filter, candidate));
            let shared_segments = actor.segments.iter().filter(|s| other.segments.contains(*s));
            Some(substitute(
                network,
                (&other.id, &other.name),
                similarity,
                &shared,
                config.shared_limit,
                shared_segments,
            ))
        })
        .collect())
}

/// A result row: the substitute, its scores and the evidence.
fn substitute(
    network: &Network,
    (id, name): (&Id, &String),
    similarity: Similarity,
    shared: &[(Role, Ix)],
    shared_limit: usize,
    shared_segments: impl Iterator<Item = Segment>,
) -> Substitute {
    Substitute {
        id: id.clone(),
        name: name.clone(),
        score: similarity.score,
        structural: similarity.structural,
        segments: similarity.segments,
        industry: similarity.industry,
        shared_neighbor_count: shared.len(),
        shared_neighbors: shared
            .iter()
            .take(shared_limit)
            .filter_map(|(role, ix)| network.actor(*ix).map(|a| (*role, a.id.clone())))
            .collect(),
        shared_segments: shared_segments.collect(),
    }
}

/// Every cluster's neighbour profile: (role, actor outside it) → summed
/// link weight.
fn cluster_profiles(network: &Network, filter: &GraphFilter) -> HashMap<Id, HashMap<(Role, Ix), f64>> {
    let mut out: HashMap<Id, HashMap<(Role, Ix), f64>> = HashMap::new();
    for (key, data, source, target) in filter.links(network) {
        for (this, other, other_ix, outgoing) in
            [(source, target, key.target, true), (target, source, key.source, false)]
        {
            for cluster in this.cluster_ids.iter().filter(|c| !other.cluster_ids.contains(c)) {
                *out.entry(cluster.clone())
                    .or_default()
                    .entry((role_of_other(key.kind, outgoing), other_ix))
                    .or_default() += data.weight;
            }
        }
    }
    out
}

/// The clusters most able to replace cluster `target`, best first: every
/// other cluster (those in `filter.clusters`, if any) is scored.
pub fn cluster_substitutes(
    network: &Network,
    filter: &GraphFilter,
    target: &Id,
    config: &SubstituteConfig,
    control: &Control,
) -> Result<Vec<Substitute>, Cancelled> {
    control.check()?;
    control.progress("cluster profiles", 0, 2);
    let role_profiles = cluster_profiles(network, filter);
    control.check()?;
    control.progress("cluster profiles", 1, 2);
    let mix = overlap::profiles(network, filter, &[]);
    control.check()?;
    let empty = HashMap::new();
    let mine = role_profiles.get(target).unwrap_or(&empty);
    let my_norms = norms_of(mine);
    let Some(my_mix) = mix.by_cluster.get(target) else {
        return Ok(Vec::new());
    };
    let wanted = filter.wants_cluster();
    let mut scored: Vec<(Similarity, &Id)> = mix
        .by_cluster
        .iter()
        .filter(|(id, _)| *id != target && wanted(id))
        .map(|(id, their_mix)| {
            let theirs = role_profiles.get(id).unwrap_or(&empty);
            let mut dots = [(0.0, 0usize); 5];
            let (small, large) = if mine.len() <= theirs.len() {
                (mine, theirs)
            } else {
                (theirs, mine)
            };
            for (key, w) in small {
                if let Some(v) = large.get(key) {
                    dots[key.0 as usize].0 += w * v;
                    dots[key.0 as usize].1 += 1;
                }
            }
            let similarity = config.combine_mixes(
                role_balanced(&dots, &my_norms, &norms_of(theirs)),
                overlap::overlap(my_mix, their_mix, Dimension::Segments).cosine,
                overlap::overlap(my_mix, their_mix, Dimension::Industries).cosine,
            );
            (similarity, id)
        })
        .filter(|row| row.0.score >= config.min_score)
        .collect();
    scored.sort_by(|a, b| b.0.score.total_cmp(&a.0.score).then_with(|| a.1.cmp(b.1)));
    scored.truncate(config.top_k);
    Ok(scored
        .into_iter()
        .map(|(similarity, id)| {
            let shared = shared_entries(mine, role_profiles.get(id).unwrap_or(&empty));
            let their_segments = &mix.by_cluster[id].segments;
            let shared_segments = my_mix
                .segments
                .iter()
                .filter(|(k, _)| their_segments.iter().any(|(j, _)| j == k))
                .map(|(k, _)| Segment::ALL[*k as usize]);
            let name = network.clusters.get(id).map(|c| c.name.clone()).unwrap_or_default();
            substitute(
                network,
                (id, &name),
                similarity,
                &shared,
                config.shared_limit,
                shared_segments,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Change, Segment},
        testing::{actor, link, network},
    };

    fn firm(id: &str) -> Change {
        Change::UpsertActor(Actor {
            segments: [Segment::Manufacturing].into_iter().collect(),
            ..actor(id, &[])
        })
    }

    fn supply(source: &str, target: &str) -> Change {
        Change::UpsertLink(link(source, target, LinkKind::Supply))
    }

    #[test]
    fn a_supplier_with_the_same_customers_is_the_best_substitute() {
        // s1 and s2 both supply c1 and c2; s3 supplies c1 only. All three make
        // the same thing in the same industry.
        let network = network(["s1", "s2", "s3", "c1", "c2"].into_iter().map(firm).chain([
            supply("s1", "c1"),
            supply("s1", "c2"),
            supply("s2", "c1"),
            supply("s2", "c2"),
            supply("s3", "c1"),
        ]));
        let s1 = network.ix_of("s1").unwrap();
        let rows = substitutes(
            &network,
            &GraphFilter::default(),
            s1,
            &SubstituteConfig::default(),
            &Control::none(),
        )
        .unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| &*r.id).collect();
        assert_eq!(ids, ["s2", "s3"], "customers c1, c2 are not substitutes of a supplier");
        // s2: structural 1, segments 1, industry 1 → score 1.
        assert!((rows[0].score - 1.0).abs() < 1e-12);
        assert_eq!(rows[0].shared_neighbor_count, 2);
        // s3: structural 1/(√2·1) = 0.707107, times (0.6 + 0.25 + 0.15) = 0.707107.
        assert!((rows[1].structural - 1.0 / 2f64.sqrt()).abs() < 1e-12);
        assert!((rows[1].score - 1.0 / 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn a_firms_own_customer_is_not_its_substitute() {
        // s supplies c; both supply x. Sharing x would make c a candidate,
        // but c buys from s: they are links of one chain.
        let network = network(["s", "c", "x", "t"].into_iter().map(firm).chain([
            supply("s", "c"),
            supply("s", "x"),
            supply("c", "x"),
            supply("t", "x"),
        ]));
        let s = network.ix_of("s").unwrap();
        let rows = substitutes(
            &network,
            &GraphFilter::default(),
            s,
            &SubstituteConfig::default(),
            &Control::none(),
        )
        .unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| &*r.id).collect();
        assert_eq!(ids, ["t"]);
    }

    #[test]
    fn sharing_one_customer_among_ten_does_not_clear_the_gap_threshold() {
        // s sells to ten customers, t to one of them; same segments and
        // industry. Structural 1/√10 = 0.316, score 0.316 < 0.5.
        let customers: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        let mut changes: Vec<Change> = ["s", "t"].into_iter().map(firm).collect();
        changes.extend(customers.iter().map(|c| firm(c)));
        changes.extend(customers.iter().map(|c| supply("s", c)));
        changes.push(supply("t", "c0"));
        let network = network(changes);
        let s = network.ix_of("s").unwrap();
        let rows = substitutes(
            &network,
            &GraphFilter::default(),
            s,
            &SubstituteConfig::default(),
            &Control::none(),
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert!((rows[0].score - 1.0 / 10f64.sqrt()).abs() < 1e-12, "{}", rows[0].score);
        assert!(rows[0].score < crate::analysis::relations::gaps::GapConfig::default().min_substitute_score);
    }

    #[test]
    fn a_cluster_selling_the_same_things_to_the_same_customer_is_the_best_substitute() {
        use crate::{model::Segment::*, testing::cluster};
        // A: a1 (manufacturing, C2930) supplies x. B: b1 (manufacturing,
        // C2930) supplies x, and b2 (design, M7410). C: c1 (design, M7410)
        // supplies y. x and y belong to no cluster.
        let member = |id: &str, c: &str, segment, industry: &str| {
            Change::UpsertActor(Actor {
                segments: [segment].into_iter().collect(),
                industry: industry.into(),
                ..actor(id, &[c])
            })
        };
        let network = network([
            Change::UpsertCluster(cluster("A")),
            Change::UpsertCluster(cluster("B")),
            Change::UpsertCluster(cluster("C")),
            member("a1", "A", Manufacturing, "C2930"),
            member("b1", "B", Manufacturing, "C2930"),
            member("b2", "B", Design, "M7410"),
            member("c1", "C", Design, "M7410"),
            firm("x"),
            firm("y"),
            supply("a1", "x"),
            supply("b1", "x"),
            supply("c1", "y"),
        ]);
        let rows = cluster_substitutes(
            &network,
            &GraphFilter::default(),
            &"A".into(),
            &SubstituteConfig::default(),
            &Control::none(),
        )
        .unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| &*r.id).collect();
        assert_eq!(ids, ["B", "C"]);
        // B: x is a customer of both, structural 1. Segment mix (1 manufacturing)
        // against (1 manufacturing, 1 design): cosine 1/√2; the same for the
        // industry mix. 0.6 · 1 + 0.25/√2 + 0.15/√2 = 0.882843.
        assert!((rows[0].structural - 1.0).abs() < 1e-12);
        assert!((rows[0].segments - 1.0 / 2f64.sqrt()).abs() < 1e-12);
        assert!((rows[0].score - (0.6 + 0.4 / 2f64.sqrt())).abs() < 1e-12);
        assert_eq!(rows[0].shared_neighbors, [(Role::Customer, "x".into())]);
        assert_eq!(rows[0].shared_segments, [Segment::Manufacturing]);
        // C: another customer, another segment, another industry: 0.
        assert_eq!(rows[1].score, 0.0);
    }

    /// The changes making a random network of 8 actors in two clusters, with
    /// random segments, industries and links of every kind.
    fn arbitrary_network() -> impl proptest::strategy::Strategy<Value = Vec<Change>> {
        use crate::{model::Segment, testing::cluster};
        use proptest::prelude::*;
        let actors = prop::collection::vec((0usize..3, 0usize..4, any::<bool>()), 8);
        let links = prop::collection::vec((0usize..8, 0usize..8, 0usize..LinkKind::ALL.len(), 1u8..4), 0..24);
        (actors, links).prop_map(|(actors, links)| {
            let industries = ["C2930", "C2910", "M7410"];
            let mut changes = vec![Change::UpsertCluster(cluster("A")), Change::UpsertCluster(cluster("B"))];
            for (i, (industry, segment, in_a)) in actors.into_iter().enumerate() {
                changes.push(Change::UpsertActor(Actor {
                    industry: industries[industry].into(),
                    segments: [Segment::ALL[segment], Segment::ALL[segment + 1]].into_iter().collect(),
                    ..actor(&format!("a{i}"), &[if in_a { "A" } else { "B" }])
                }));
            }
            for (s, t, kind, weight) in links.into_iter().filter(|(s, t, _, _)| s != t) {
                changes.push(Change::UpsertLink(crate::model::Link {
                    weight: f64::from(weight),
                    ..link(&format!("a{s}"), &format!("a{t}"), LinkKind::ALL[kind])
                }));
            }
            changes
        })
    }

    proptest::proptest! {
        /// The tie table (many targets) scores exactly as reading the
        /// network (one target) does.
        #[test]
        fn the_tie_table_scores_as_the_network_does(changes in crate::testing::arbitrary_clustered_network(false)) {
            let net = network(changes);
            let filter = GraphFilter::default();
            let config = SubstituteConfig::default();
            let table = TieTable::new(&net, &filter, &Control::none()).unwrap();
            for ix in 0..net.actor_at.len() as Ix {
                let live = substitute_scores(&net, &filter, ix, &config).first().copied();
                proptest::prop_assert_eq!(best_substitute(&table, &net, &filter, ix, &config), live);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn actor_substitution_is_symmetric_and_in_the_unit_interval(changes in arbitrary_network()) {
            let net = network(changes);
            let config = SubstituteConfig { top_k: 100, ..SubstituteConfig::default() };
            let filter = GraphFilter::default();
            for a in 0..8u32 {
                let Some(ix) = net.ix_of(&format!("a{a}")) else { continue };
                for row in substitutes(&net, &filter, ix, &config, &Control::none()).unwrap() {
                    for x in [row.score, row.structural, row.segments, row.industry] {
                        proptest::prop_assert!((0.0..=1.0 + 1e-12).contains(&x), "{row:?}");
                    }
                    let back = substitutes(&net, &filter, net.ix_of(&row.id).unwrap(), &config, &Control::none()).unwrap();
                    let mirror = back.iter().find(|r| *r.id == *format!("a{a}"));
                    proptest::prop_assert!(mirror.is_some(), "a{a} lists {} but not back", row.id);
                    proptest::prop_assert!((mirror.unwrap().score - row.score).abs() < 1e-9);
                }
            }
        }

        #[test]
        fn cluster_substitution_is_symmetric_and_in_the_unit_interval(changes in arbitrary_network()) {
            let net = network(changes);
            let filter = GraphFilter::default();
            let config = SubstituteConfig::default();
            let ab = cluster_substitutes(&net, &filter, &"A".into(), &config, &Control::none()).unwrap();
            let ba = cluster_substitutes(&net, &filter, &"B".into(), &config, &Control::none()).unwrap();
            proptest::prop_assert_eq!(ab.len(), 1);
            proptest::prop_assert_eq!(ba.len(), 1);
            proptest::prop_assert!((0.0..=1.0 + 1e-12).contains(&ab[0].score));
            proptest::prop_assert!((ab[0].score - ba[0].score).abs() < 1e-9);
        }
    }
}
