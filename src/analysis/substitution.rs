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
//! score combines it with segment similarity (Jaccard of value-chain
//! segments) and industry similarity (1 for the same code, 0.5 for the same
//! ISIC division, its first three characters, else 0):
//!
//! score = w_s · structural + w_g · segments + w_i · industry, weights
//! normalised to sum 1. Defaults 0.6 / 0.25 / 0.15: ties say most about what
//! an actor does for the network; segments and industry say whether it could.
//! These defaults are ours.

use std::collections::HashMap;

use crate::{
    graph::GraphFilter,
    model::{Actor, Id, LinkKind},
    store::{Ix, Network},
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
    pub min_similarity: f64,
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
            min_similarity: 0.0,
            top_k: 10,
            shared_limit: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Substitute {
    pub actor: Id,
    pub name: String,
    pub score: f64,
    pub structural: f64,
    pub segments: f64,
    pub industry: f64,
    /// Shared (role, neighbour id) entries, strongest first.
    pub shared_neighbors: Vec<(Role, Id)>,
    pub shared_neighbor_count: usize,
    pub shared_segments: Vec<&'static str>,
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
        let role = match (key.kind, outgoing) {
            (LinkKind::Supply, true) => Role::Customer,
            (LinkKind::Supply, false) => Role::Supplier,
            (LinkKind::Investment | LinkKind::Ownership, true) => Role::Investee,
            (LinkKind::Investment | LinkKind::Ownership, false) => Role::Investor,
            _ => Role::Partner,
        };
        Some((role, other, data.weight))
    })
}

/// The typed neighbour profile of an actor, as (role, neighbour) → weight.
fn profile(network: &Network, filter: &GraphFilter, ix: Ix) -> HashMap<(Role, Ix), f64> {
    let mut out = HashMap::new();
    for (role, other, weight) in ties(network, filter, ix) {
        *out.entry((role, other)).or_default() += weight;
    }
    out
}

/// Per role, an actor's squared norm and number of distinct neighbours.
fn role_norms(network: &Network, filter: &GraphFilter, ix: Ix) -> [(f64, usize); 5] {
    let mut entries: Vec<(Role, Ix, f64)> = ties(network, filter, ix).collect();
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
    } else if a.industry.get(..3).is_some() && a.industry.get(..3) == b.industry.get(..3) {
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

/// The actors most able to replace `target`, best first. Candidates share at
/// least one (role, neighbour) with the target: walking each neighbour's ties
/// finds them and accumulates the dot products, so the work is the target's
/// neighbourhood two hops out, not the whole network.
pub fn substitutes(network: &Network, filter: &GraphFilter, target: Ix, config: &SubstituteConfig) -> Vec<Substitute> {
    let Some(actor) = network.actor(target) else {
        return Vec::new();
    };
    let mine = profile(network, filter, target);
    let mut my_norms = [(0.0, 0usize); 5];
    for ((role, _), w) in &mine {
        my_norms[*role as usize].0 += w * w;
        my_norms[*role as usize].1 += 1;
    }
    // (candidate, role) -> (dot product, shared neighbours).
    let mut dots: HashMap<(Ix, Role), (f64, usize)> = HashMap::new();
    for (&(role, neighbor), &w) in &mine {
        // Consecutive ties to one candidate (several kinds) make one entry.
        let mut last: Option<(Ix, Role)> = None;
        for (role_of_candidate, candidate, weight) in ties(network, filter, neighbor) {
            if candidate == target || mirrored(role_of_candidate) != role {
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
    let mut by_candidate: HashMap<Ix, [(f64, usize); 5]> = HashMap::new();
    for ((candidate, role), (dot, shared)) in dots {
        by_candidate.entry(candidate).or_insert([(0.0, 0); 5])[role as usize] = (dot, shared);
    }
    let total = config.structural_weight + config.segment_weight + config.industry_weight;
    let total = if total > 0.0 { total } else { 1.0 };
    let mut scored: Vec<(f64, f64, f64, f64, Ix)> = by_candidate
        .into_iter()
        .filter_map(|(candidate, dot_by_role)| {
            let other = network.actor(candidate)?;
            if !filter.clusters.is_empty() && !other.cluster_ids.iter().any(|id| filter.clusters.contains(id)) {
                return None;
            }
            let theirs = role_norms(network, filter, candidate);
            // Role-balanced cosine: each role's cosine weighted by the distinct
            // neighbours it has in the two profiles together.
            let (mut weighted, mut entries) = (0.0, 0usize);
            for role in 0..5 {
                let (dot, shared) = dot_by_role[role];
                let count = my_norms[role].1 + theirs[role].1 - shared;
                let norms = (my_norms[role].0 * theirs[role].0).sqrt();
                let cosine = if norms == 0.0 { 0.0 } else { (dot / norms).min(1.0) };
                weighted += cosine * count as f64;
                entries += count;
            }
            let structural = if entries == 0 { 0.0 } else { weighted / entries as f64 };
            let segments = segment_similarity(actor, other);
            let industry = industry_similarity(actor, other);
            let score = (config.structural_weight * structural
                + config.segment_weight * segments
                + config.industry_weight * industry)
                / total;
            (score >= config.min_similarity).then_some((score, structural, segments, industry, candidate))
        })
        .collect();
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then_with(|| {
            network
                .actor(a.4)
                .map(|x| &x.id)
                .cmp(&network.actor(b.4).map(|x| &x.id))
        })
    });
    scored.truncate(config.top_k);
    scored
        .into_iter()
        .filter_map(|(score, structural, segments, industry, candidate)| {
            let other = network.actor(candidate)?;
            // The evidence, for the rows kept: the shared neighbours, strongest first.
            let theirs = profile(network, filter, candidate);
            let mut shared: Vec<((Role, Ix), f64)> = mine
                .iter()
                .filter_map(|(k, w)| theirs.get(k).map(|v| (*k, w * v)))
                .collect();
            shared.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            Some(Substitute {
                actor: other.id.clone(),
                name: other.name.clone(),
                score,
                structural,
                segments,
                industry,
                shared_neighbor_count: shared.len(),
                shared_neighbors: shared
                    .iter()
                    .take(config.shared_limit)
                    .filter_map(|((role, ix), _)| network.actor(*ix).map(|a| (*role, a.id.clone())))
                    .collect(),
                shared_segments: actor
                    .segments
                    .iter()
                    .filter(|s| other.segments.contains(*s))
                    .map(|s| s.as_str())
                    .collect(),
            })
        })
        .collect()
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
        let rows = substitutes(&network, &GraphFilter::default(), s1, &SubstituteConfig::default());
        let ids: Vec<&str> = rows.iter().map(|r| &*r.actor).collect();
        assert_eq!(ids, ["s2", "s3"], "customers c1, c2 are not substitutes of a supplier");
        // s2: structural 1, segments 1, industry 1 → score 1.
        assert!((rows[0].score - 1.0).abs() < 1e-12);
        assert_eq!(rows[0].shared_neighbor_count, 2);
        // s3: structural 1/(√2·1) = 0.707107 → 0.6·0.707107 + 0.25 + 0.15 = 0.824264.
        assert!((rows[1].structural - 1.0 / 2f64.sqrt()).abs() < 1e-12);
        assert!((rows[1].score - (0.6 / 2f64.sqrt() + 0.4)).abs() < 1e-12);
    }
}
