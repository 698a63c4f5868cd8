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

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use crate::{
    graph::GraphFilter,
    model::{Id, Segment},
    network::Network,
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

/// A sparse weight vector: (item key, weight), sorted by key. Keys are actor
/// indexes (members, partners), segment numbers or interned industry codes.
pub type Vector = Vec<(u32, f64)>;

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

    fn is_member(&self, key: u32) -> bool {
        self.members.binary_search_by_key(&key, |(k, _)| *k).is_ok()
    }
}

/// Profiles and the names behind their keys.
pub struct Profiles {
    pub by_cluster: BTreeMap<Id, Profile>,
    industries: Vec<String>,
    actor_ids: Vec<Option<Id>>,
}

impl Profiles {
    /// The items behind `keys` of one dimension.
    fn items(&self, dimension: Dimension, keys: impl Iterator<Item = u32>) -> SharedItems {
        match dimension {
            Dimension::Members | Dimension::Partners => SharedItems::Actors(
                keys.filter_map(|k| self.actor_ids.get(k as usize).cloned().flatten())
                    .collect(),
            ),
            Dimension::Segments => SharedItems::Segments(keys.map(|k| Segment::ALL[k as usize]).collect()),
            Dimension::Industries => {
                SharedItems::Industries(keys.map(|k| self.industries[k as usize].clone()).collect())
            }
        }
    }
}

/// Shared items of one dimension: actors (members, partners), segments or
/// industry codes.
#[derive(Clone, Debug, PartialEq)]
pub enum SharedItems {
    Actors(Vec<Id>),
    Segments(Vec<Segment>),
    Industries(Vec<String>),
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
    /// The first shared items, by key order (actor index, segment order,
    /// industry code).
    pub shared: SharedItems,
}

fn sorted(map: HashMap<u32, f64>) -> Vector {
    let mut v: Vector = map.into_iter().collect();
    v.sort_unstable_by_key(|(k, _)| *k);
    v
}

/// Profiles of the clusters named (all when empty), as the filter sees them:
/// actors valid at `as_of`, links of the selected kinds and channels.
pub fn profiles(network: &Network, filter: &GraphFilter, clusters: &[Id]) -> Profiles {
    let wanted: Vec<Id> = if clusters.is_empty() {
        network.clusters.keys().cloned().collect()
    } else {
        clusters.to_vec()
    };
    let valid = |ix: u32| filter.actor(network, ix);
    let mut industry_keys: BTreeMap<String, u32> = BTreeMap::new();
    // Industry keys in code order, so shared industries list alphabetically.
    for actor in network.actors.values() {
        if !actor.industry.is_empty() {
            industry_keys.entry(actor.industry.clone()).or_insert(0);
        }
    }
    for (i, key) in industry_keys.values_mut().enumerate() {
        *key = i as u32;
    }
    let mut by_cluster = BTreeMap::new();
    for cluster in wanted {
        let member_ix: Vec<u32> = network
            .member_indexes(&cluster)
            .filter(|ix| valid(*ix).is_some())
            .collect();
        let is_member: std::collections::HashSet<u32> = member_ix.iter().copied().collect();
        let (mut segments, mut industries, mut partners) = (HashMap::new(), HashMap::new(), HashMap::new());
        for &ix in &member_ix {
            let Some(actor) = valid(ix) else { continue };
            for segment in actor.segments.iter() {
                *segments.entry(segment as u32).or_default() += 1.0;
            }
            if let Some(key) = industry_keys.get(&actor.industry) {
                *industries.entry(*key).or_default() += 1.0;
            }
            for key in network.incident(ix) {
                let Some(data) = network.links.get(&key) else { continue };
                if !filter.keeps_link(key.kind, data) {
                    continue;
                }
                let other = if key.source == ix { key.target } else { key.source };
                if is_member.contains(&other) || valid(other).is_none() {
                    continue;
                }
                *partners.entry(other).or_default() += data.weight;
            }
        }
        let profile = Profile {
            members: sorted(member_ix.iter().map(|ix| (*ix, 1.0)).collect()),
            segments: sorted(segments),
            industries: sorted(industries),
            partners: sorted(partners),
        };
        by_cluster.insert(cluster, profile);
    }
    let mut industries = vec![String::new(); industry_keys.len()];
    for (code, key) in industry_keys {
        industries[key as usize] = code;
    }
    Profiles {
        by_cluster,
        industries,
        actor_ids: network
            .actor_at
            .iter()
            .map(|a| a.as_ref().map(|a| a.id.clone()))
            .collect(),
    }
}

/// The member Jaccard of `cluster` with every cluster sharing a member
/// with it, on the whole network: the MEMBERS dimension of [`overlap`],
/// from the cluster's own members alone, so an incremental evaluation (the
/// alerts) need not build every profile.
pub fn member_jaccards(network: &Network, cluster: &Id) -> Vec<(Id, f64)> {
    let size = |c: &Id| network.members.get(c).map_or(0, |m| m.len());
    let mut shared: BTreeMap<Id, usize> = BTreeMap::new();
    for ix in network.member_indexes(cluster) {
        let Some(actor) = network.actor(ix) else { continue };
        for other in actor.cluster_ids.iter().filter(|c| *c != cluster) {
            *shared.entry(other.clone()).or_default() += 1;
        }
    }
    let mine = size(cluster);
    shared
        .into_iter()
        .map(|(other, n)| {
            let union = (mine + size(&other)).saturating_sub(n).max(1);
            (other, n as f64 / union as f64)
        })
        .collect()
}

/// Overlap of two clusters on one dimension. Partners that are members of
/// the other cluster are not external, so they are left out of both sides.
pub fn overlap(a: &Profile, b: &Profile, dimension: Dimension) -> Measured {
    let (va, vb) = (a.get(dimension), b.get(dimension));
    if dimension == Dimension::Partners {
        measure(va, vb, |k| b.is_member(k), |k| a.is_member(k))
    } else {
        measure(va, vb, |_| false, |_| false)
    }
}

/// The figures of one comparison, with the shared keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub jaccard: f64,
    pub overlap_coefficient: f64,
    pub cosine: f64,
    pub size_a: usize,
    pub size_b: usize,
    pub shared: Vec<u32>,
}

/// Merge-joins two sorted vectors, skipping the items `skip_a` / `skip_b`
/// exclude from each side.
fn measure(a: &[(u32, f64)], b: &[(u32, f64)], skip_a: impl Fn(u32) -> bool, skip_b: impl Fn(u32) -> bool) -> Measured {
    let (mut i, mut j) = (0, 0);
    let (mut size_a, mut size_b, mut dot, mut norm_a, mut norm_b) = (0usize, 0usize, 0.0, 0.0, 0.0);
    let mut shared = Vec::new();
    loop {
        let next_a = a.get(i).copied();
        let next_b = b.get(j).copied();
        match (next_a, next_b) {
            (None, None) => break,
            (Some((ka, wa)), Some((kb, wb))) if ka == kb => {
                i += 1;
                j += 1;
                let (in_a, in_b) = (!skip_a(ka), !skip_b(kb));
                if in_a {
                    size_a += 1;
                    norm_a += wa * wa;
                }
                if in_b {
                    size_b += 1;
                    norm_b += wb * wb;
                }
                if in_a && in_b {
                    dot += wa * wb;
                    shared.push(ka);
                }
            }
            (Some((ka, wa)), Some((kb, _))) if ka < kb => {
                i += 1;
                if !skip_a(ka) {
                    size_a += 1;
                    norm_a += wa * wa;
                }
            }
            (Some((ka, wa)), None) => {
                i += 1;
                if !skip_a(ka) {
                    size_a += 1;
                    norm_a += wa * wa;
                }
            }
            (_, Some((kb, wb))) => {
                j += 1;
                if !skip_b(kb) {
                    size_b += 1;
                    norm_b += wb * wb;
                }
            }
        }
    }
    let count = shared.len();
    let union = size_a + size_b - count;
    let smaller = size_a.min(size_b);
    let norms = (norm_a * norm_b).sqrt();
    Measured {
        jaccard: if union == 0 { 0.0 } else { count as f64 / union as f64 },
        overlap_coefficient: if smaller == 0 {
            0.0
        } else {
            count as f64 / smaller as f64
        },
        // Rounding can push a·b/(‖a‖‖b‖) a hair past 1.
        cosine: if norms == 0.0 { 0.0 } else { (dot / norms).min(1.0) },
        size_a,
        size_b,
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

/// Pairs computed in parallel per chunk, then handed out in order.
const PAIR_CHUNK: usize = 4096;

/// Computes each requested pair and hands it to `emit` in order, chunk by
/// chunk as they are done; returns how many pairs were compared.
pub fn for_each_pair(
    network: &Network,
    job: &OverlapJob,
    control: &crate::analysis::Control,
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
    let ids: Vec<&Id> = profiles.by_cluster.keys().collect();
    // Pairs are made a chunk at a time, never all at once: 50,000 clusters
    // have 1.25 billion pairs, 20 GB as a list.
    let n = ids.len();
    let (mut pairs, total): (Box<dyn Iterator<Item = (&Id, &Id)> + '_>, u64) = match &job.pairs {
        Pairs::One(a, b) => (Box::new(std::iter::once((a, b))), 1),
        Pairs::Against(a) => (
            Box::new(ids.iter().filter(move |id| **id != a).map(move |id| (a, *id))),
            ids.iter().filter(|id| **id != a).count() as u64,
        ),
        Pairs::All => (
            Box::new(
                (0..n)
                    .flat_map(move |i| ((i + 1)..n).map(move |j| (i, j)))
                    .map(|(i, j)| (ids[i], ids[j])),
            ),
            n as u64 * n.saturating_sub(1) as u64 / 2,
        ),
    };
    let compare = |(a, b): &(&Id, &Id)| -> PairOverlap {
        let (pa, pb) = (&profiles.by_cluster[*a], &profiles.by_cluster[*b]);
        let dimensions = job
            .dimensions
            .iter()
            .map(|&dimension| {
                let m = overlap(pa, pb, dimension);
                SetOverlap {
                    dimension,
                    jaccard: m.jaccard,
                    overlap_coefficient: m.overlap_coefficient,
                    cosine: m.cosine,
                    size_a: m.size_a,
                    size_b: m.size_b,
                    shared_count: m.shared.len(),
                    shared: profiles.items(dimension, m.shared.iter().take(job.shared_limit).copied()),
                }
            })
            .collect();
        PairOverlap {
            a: (*a).clone(),
            b: (*b).clone(),
            dimensions,
        }
    };
    let mut compared = 0usize;
    let mut chunk: Vec<(&Id, &Id)> = Vec::with_capacity(PAIR_CHUNK);
    loop {
        chunk.clear();
        chunk.extend(pairs.by_ref().take(PAIR_CHUNK));
        if chunk.is_empty() {
            break;
        }
        control.check().map_err(|_| crate::Error::Cancelled)?;
        control.progress("overlap", compared as u64, total);
        let done: Vec<PairOverlap> = chunk.par_iter().map(compare).collect();
        compared += done.len();
        for pair in done {
            emit(pair)?;
        }
    }
    Ok(compared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain(a: &[(u32, f64)], b: &[(u32, f64)]) -> Measured {
        measure(a, b, |_| false, |_| false)
    }

    #[test]
    fn overlap_measures_by_hand() {
        // A = {0: 2, 2: 1}, B = {0: 1, 4: 3}. Shared {0}: Jaccard 1/3;
        // overlap coefficient 1/2; cosine = 2·1 / (√5 · √10) = 2/√50 = 0.282843.
        let o = plain(&[(0, 2.0), (2, 1.0)], &[(0, 1.0), (4, 3.0)]);
        assert!((o.jaccard - 1.0 / 3.0).abs() < 1e-12);
        assert!((o.overlap_coefficient - 0.5).abs() < 1e-12);
        assert!((o.cosine - 2.0 / 50f64.sqrt()).abs() < 1e-12);
        assert_eq!(o.shared, vec![0]);
    }

    #[test]
    fn excluded_items_count_on_neither_side() {
        // Item 1 is skipped on A's side: A is {0} and B is {0, 1}.
        let o = measure(&[(0, 1.0), (1, 1.0)], &[(0, 1.0), (1, 1.0)], |k| k == 1, |_| false);
        assert_eq!((o.size_a, o.size_b, o.shared.len()), (1, 2, 1));
    }

    fn arbitrary_vector() -> impl Strategy<Value = Vector> {
        prop::collection::btree_map(0u32..6, 0.1f64..10.0, 0..6).prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        /// The alerts' per-cluster member Jaccard is the MEMBERS overlap.
        #[test]
        fn member_jaccards_are_the_members_overlap(
            changes in crate::testing::arbitrary_clustered_network(false)
        ) {
            let network = crate::testing::network(changes);
            let all = profiles(&network, &GraphFilter::default(), &[]);
            for (a, pa) in &all.by_cluster {
                let quick = member_jaccards(&network, a);
                for (b, pb) in all.by_cluster.iter().filter(|(b, _)| *b != a) {
                    let expected = overlap(pa, pb, Dimension::Members).jaccard;
                    let got = quick.iter().find(|(c, _)| c == b).map_or(0.0, |(_, j)| *j);
                    prop_assert!((got - expected).abs() < 1e-12, "{a}-{b}: {got} vs {expected}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn scores_are_symmetric_and_in_the_unit_interval(a in arbitrary_vector(), b in arbitrary_vector()) {
            let ab = plain(&a, &b);
            let ba = plain(&b, &a);
            for (x, y) in [(ab.jaccard, ba.jaccard), (ab.overlap_coefficient, ba.overlap_coefficient), (ab.cosine, ba.cosine)] {
                prop_assert!((0.0..=1.0).contains(&x));
                prop_assert!((x - y).abs() < 1e-12);
            }
        }

        #[test]
        fn a_set_compared_with_itself_scores_one(a in arbitrary_vector()) {
            prop_assume!(!a.is_empty());
            let o = plain(&a, &a);
            prop_assert!((o.jaccard - 1.0).abs() < 1e-12);
            prop_assert!((o.overlap_coefficient - 1.0).abs() < 1e-12);
            prop_assert!((o.cosine - 1.0).abs() < 1e-9);
        }

        #[test]
        fn adding_a_shared_member_never_lowers_member_overlap(a in arbitrary_vector(), b in arbitrary_vector()) {
            let before = plain(&a, &b);
            let (mut a2, mut b2) = (a.clone(), b.clone());
            a2.push((99, 1.0));
            b2.push((99, 1.0));
            let after = plain(&a2, &b2);
            prop_assert!(after.jaccard >= before.jaccard - 1e-12);
            prop_assert!(after.overlap_coefficient >= before.overlap_coefficient - 1e-12);
        }
    }
}
