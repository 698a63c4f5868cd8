//! Overlap (重叠) between clusters: what two clusters share, on four
//! dimensions, each measured three ways.
//!
//! * members: the actors in both clusters (each actor weighs 1);
//! * segments: value-chain segments, weighted by how many members perform them;
//! * industries: industry codes, weighted by how many members have them;
//! * partners: external actors (in neither cluster) that members of both link
//!   to, weighted by the summed weight of those links.
//!
//! For sets A, B and their weight vectors a, b: Jaccard |A∩B|/|A∪B|; the
//! overlap coefficient |A∩B|/min(|A|,|B|) (0 when either is empty); cosine
//! a·b/(‖a‖‖b‖). All lie in [0, 1], are symmetric, and a cluster compared with
//! itself scores 1 on every non-empty dimension.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    graph::GraphFilter,
    model::{Id, LinkKind},
    store::Network,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Members,
    Segments,
    Industries,
    Partners,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::Members,
        Dimension::Segments,
        Dimension::Industries,
        Dimension::Partners,
    ];
}

/// A sparse weight vector, keyed by item name, sorted.
pub type Vector = BTreeMap<String, f64>;

/// What a cluster is made of, on each dimension.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    pub members: Vector,
    pub segments: Vector,
    pub industries: Vector,
    pub partners: Vector,
}

impl Profile {
    fn get(&self, dimension: Dimension) -> &Vector {
        match dimension {
            Dimension::Members => &self.members,
            Dimension::Segments => &self.segments,
            Dimension::Industries => &self.industries,
            Dimension::Partners => &self.partners,
        }
    }
}

/// The overlap of two clusters on one dimension, with the shared items.
#[derive(Clone, Debug, PartialEq)]
pub struct SetOverlap {
    pub dimension: Dimension,
    pub jaccard: f64,
    pub overlap_coefficient: f64,
    pub cosine: f64,
    pub size_a: usize,
    pub size_b: usize,
    pub shared_count: usize,
    /// The first shared items, by name.
    pub shared: Vec<String>,
}

/// Profiles of the clusters named (all when empty), as the filter sees them:
/// actors valid at `as_of`, links of the selected kinds and channels.
pub fn profiles(network: &Network, filter: &GraphFilter, clusters: &[Id]) -> BTreeMap<Id, Profile> {
    let wanted: Vec<Id> = if clusters.is_empty() {
        network.clusters.keys().cloned().collect()
    } else {
        clusters.to_vec()
    };
    let mut out = BTreeMap::new();
    for cluster in wanted {
        let mut profile = Profile::default();
        let member_ids: BTreeSet<&Id> = network
            .members
            .get(&cluster)
            .into_iter()
            .flatten()
            .filter(|id| {
                network
                    .actors
                    .get(*id)
                    .is_some_and(|a| filter.as_of.is_none_or(|d| a.validity.contains(d)))
            })
            .collect();
        for id in &member_ids {
            let actor = &network.actors[*id];
            profile.members.insert(id.to_string(), 1.0);
            for segment in actor.segments.iter() {
                *profile.segments.entry(segment.as_str().to_string()).or_default() += 1.0;
            }
            if !actor.industry.is_empty() {
                *profile.industries.entry(actor.industry.clone()).or_default() += 1.0;
            }
            let Some(ix) = network.ix_of(id) else { continue };
            for key in network.incident(ix) {
                let Some(data) = network.links.get(&key) else { continue };
                if !keeps(filter, key.kind, data.channel) || filter.as_of.is_some_and(|d| !data.validity.contains(d)) {
                    continue;
                }
                let other = if key.source == ix { key.target } else { key.source };
                let Some(partner) = network.actor(other) else { continue };
                if member_ids.contains(&partner.id) || filter.as_of.is_some_and(|d| !partner.validity.contains(d)) {
                    continue;
                }
                *profile.partners.entry(partner.id.to_string()).or_default() += data.weight;
            }
        }
        out.insert(cluster, profile);
    }
    out
}

fn keeps(filter: &GraphFilter, kind: LinkKind, channel: crate::model::Channel) -> bool {
    (filter.link_kinds.is_empty() || filter.link_kinds.contains(&kind))
        && (filter.channels.is_empty() || filter.channels.contains(&channel))
}

/// Overlap of two clusters on one dimension. Partners that are members of
/// either cluster are not external, so they are left out of both sides.
pub fn overlap(a: &Profile, b: &Profile, dimension: Dimension, shared_limit: usize) -> SetOverlap {
    let (mut va, mut vb) = (a.get(dimension).clone(), b.get(dimension).clone());
    if dimension == Dimension::Partners {
        va.retain(|id, _| !b.members.contains_key(id));
        vb.retain(|id, _| !a.members.contains_key(id));
    }
    measure(&va, &vb, dimension, shared_limit)
}

fn measure(a: &Vector, b: &Vector, dimension: Dimension, shared_limit: usize) -> SetOverlap {
    let mut shared = Vec::new();
    let mut shared_count = 0;
    let mut dot = 0.0;
    for (item, wa) in a {
        if let Some(wb) = b.get(item) {
            shared_count += 1;
            dot += wa * wb;
            if shared.len() < shared_limit {
                shared.push(item.clone());
            }
        }
    }
    let union = a.len() + b.len() - shared_count;
    let smaller = a.len().min(b.len());
    let norm = |v: &Vector| v.values().map(|w| w * w).sum::<f64>().sqrt();
    let norms = norm(a) * norm(b);
    SetOverlap {
        dimension,
        jaccard: if union == 0 {
            0.0
        } else {
            shared_count as f64 / union as f64
        },
        overlap_coefficient: if smaller == 0 {
            0.0
        } else {
            shared_count as f64 / smaller as f64
        },
        // Rounding can push a·b/(‖a‖‖b‖) a hair past 1.
        cosine: if norms == 0.0 { 0.0 } else { (dot / norms).min(1.0) },
        size_a: a.len(),
        size_b: b.len(),
        shared_count,
        shared,
    }
}

/// Which pairs of clusters to compare.
#[derive(Clone, Debug, PartialEq)]
pub enum Pairs {
    One(Id, Id),
    /// One cluster against every other.
    Against(Id),
    /// Every unordered pair of the clusters in the filter (all when empty).
    All,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OverlapJob {
    pub pairs: Pairs,
    pub dimensions: Vec<Dimension>,
    pub filter: GraphFilter,
    pub shared_limit: usize,
}

/// The overlap of one pair of clusters.
#[derive(Clone, Debug, PartialEq)]
pub struct PairOverlap {
    pub a: Id,
    pub b: Id,
    pub dimensions: Vec<SetOverlap>,
}

/// Computes each requested pair and hands it to `emit` as soon as it is done;
/// returns how many pairs were compared.
pub fn for_each_pair(
    network: &Network,
    job: &OverlapJob,
    control: &super::Control,
    mut emit: impl FnMut(PairOverlap) -> crate::Result<()>,
) -> crate::Result<usize> {
    let involved: Vec<Id> = match &job.pairs {
        Pairs::One(a, b) => vec![a.clone(), b.clone()],
        Pairs::Against(_) | Pairs::All if !job.filter.clusters.is_empty() => {
            let mut ids = job.filter.clusters.clone();
            if let Pairs::Against(a) = &job.pairs {
                ids.push(a.clone());
            }
            ids
        }
        _ => Vec::new(),
    };
    control.progress("profiles", 0, 1);
    let profiles = profiles(network, &job.filter, &involved);
    let ids: Vec<&Id> = profiles.keys().collect();
    let pairs: Vec<(&Id, &Id)> = match &job.pairs {
        Pairs::One(a, b) => vec![(a, b)],
        Pairs::Against(a) => ids.iter().filter(|id| **id != a).map(|id| (a, *id)).collect(),
        Pairs::All => (0..ids.len())
            .flat_map(|i| ((i + 1)..ids.len()).map(move |j| (i, j)))
            .map(|(i, j)| (ids[i], ids[j]))
            .collect(),
    };
    let total = pairs.len() as u64;
    for (done, (a, b)) in pairs.iter().enumerate() {
        control.check().map_err(|_| crate::Error::Cancelled)?;
        control.progress("overlap", done as u64, total);
        let (pa, pb) = (&profiles[*a], &profiles[*b]);
        emit(PairOverlap {
            a: (*a).clone(),
            b: (*b).clone(),
            dimensions: job
                .dimensions
                .iter()
                .map(|d| overlap(pa, pb, *d, job.shared_limit))
                .collect(),
        })?;
    }
    Ok(pairs.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vector(items: &[(&str, f64)]) -> Vector {
        items.iter().map(|(k, w)| (k.to_string(), *w)).collect()
    }

    #[test]
    fn overlap_measures_by_hand() {
        // A = {design: 2, manufacturing: 1}, B = {design: 1, sales: 3}.
        // Shared {design}: Jaccard 1/3; overlap coefficient 1/2;
        // cosine = 2·1 / (√5 · √10) = 2/√50 = 0.282843.
        let a = vector(&[("DESIGN", 2.0), ("MANUFACTURING", 1.0)]);
        let b = vector(&[("DESIGN", 1.0), ("SALES", 3.0)]);
        let o = measure(&a, &b, Dimension::Segments, 10);
        assert!((o.jaccard - 1.0 / 3.0).abs() < 1e-12);
        assert!((o.overlap_coefficient - 0.5).abs() < 1e-12);
        assert!((o.cosine - 2.0 / 50f64.sqrt()).abs() < 1e-12);
        assert_eq!((o.shared_count, o.shared), (1, vec!["DESIGN".to_string()]));
    }

    fn arbitrary_vector() -> impl Strategy<Value = Vector> {
        prop::collection::btree_map("[a-f]", 0.1f64..10.0, 0..6)
    }

    proptest! {
        #[test]
        fn scores_are_symmetric_and_in_the_unit_interval(a in arbitrary_vector(), b in arbitrary_vector()) {
            let ab = measure(&a, &b, Dimension::Segments, 3);
            let ba = measure(&b, &a, Dimension::Segments, 3);
            for (x, y) in [(ab.jaccard, ba.jaccard), (ab.overlap_coefficient, ba.overlap_coefficient), (ab.cosine, ba.cosine)] {
                prop_assert!((0.0..=1.0).contains(&x));
                prop_assert!((x - y).abs() < 1e-12);
            }
        }

        #[test]
        fn a_set_compared_with_itself_scores_one(a in arbitrary_vector()) {
            prop_assume!(!a.is_empty());
            let o = measure(&a, &a, Dimension::Members, 3);
            prop_assert!((o.jaccard - 1.0).abs() < 1e-12);
            prop_assert!((o.overlap_coefficient - 1.0).abs() < 1e-12);
            prop_assert!((o.cosine - 1.0).abs() < 1e-9);
        }

        #[test]
        fn adding_a_shared_member_never_lowers_member_overlap(a in arbitrary_vector(), b in arbitrary_vector()) {
            let before = measure(&a, &b, Dimension::Members, 3);
            let (mut a2, mut b2) = (a.clone(), b.clone());
            a2.insert("shared".into(), 1.0);
            b2.insert("shared".into(), 1.0);
            let after = measure(&a2, &b2, Dimension::Members, 3);
            prop_assert!(after.jaccard >= before.jaccard - 1e-12);
            prop_assert!(after.overlap_coefficient >= before.overlap_coefficient - 1e-12);
        }
    }
}
