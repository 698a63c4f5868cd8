//! What each cluster's members add up to now: how many there are, their
//! value-chain segments and their industries.
//!
//! Kept by every batch rather than counted when asked, because the stage
//! assessment compares a cluster with every cluster it is tied to. In an
//! alert round over one link that is most of the network's clusters, and
//! counting their members again made a one-link round cost a pass over most
//! actors. Current attributes only: a question about a past date counts the
//! members' profiles itself.

use std::{collections::BTreeMap, sync::Arc};

use imbl::OrdMap;

use crate::model::{Actor, Id};

/// The sums over a cluster's members, by their current attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberMix {
    pub members: u64,
    /// Members in each segment, by `Segment as usize`.
    pub segments: [u64; 8],
    /// Members in each industry code (members without one are not counted).
    pub industries: BTreeMap<String, u64>,
}

impl MemberMix {
    fn add(&mut self, actor: &Actor) {
        self.members += 1;
        for segment in actor.segments.iter() {
            self.segments[segment as usize] += 1;
        }
        if !actor.industry.is_empty() {
            *self.industries.entry(actor.industry.clone()).or_default() += 1;
        }
    }

    fn remove(&mut self, actor: &Actor) {
        self.members -= 1;
        for segment in actor.segments.iter() {
            self.segments[segment as usize] -= 1;
        }
        if let Some(count) = self.industries.get_mut(&actor.industry) {
            *count -= 1;
            if *count == 0 {
                self.industries.remove(&actor.industry);
            }
        }
    }
}

/// Cluster id to its members' mix; a cluster without members has no entry.
pub type Mixes = OrdMap<Id, Arc<MemberMix>>;

/// Counts `actor` into each of its clusters.
pub(super) fn add_actor(mixes: &mut Mixes, actor: &Actor) {
    for cluster in &actor.cluster_ids {
        Arc::make_mut(mixes.entry(cluster.clone()).or_default()).add(actor);
    }
}

/// Takes `actor` out of each of its clusters.
pub(super) fn remove_actor(mixes: &mut Mixes, actor: &Actor) {
    for cluster in &actor.cluster_ids {
        let Some(mix) = mixes.get_mut(cluster) else {
            continue;
        };
        let mix = Arc::make_mut(mix);
        mix.remove(actor);
        if mix.members == 0 {
            mixes.remove(cluster);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        model::{Change, Cluster, Segment, SegmentSet},
        network::Network,
        testing,
    };

    /// The mixes counted from scratch, as the stage assessment counted them.
    fn recounted(network: &Network) -> Mixes {
        let mut mixes = Mixes::default();
        for actor in network.actors.values() {
            add_actor(&mut mixes, actor);
        }
        mixes
    }

    fn cluster(id: &str) -> Change {
        Change::UpsertCluster(Cluster {
            id: id.into(),
            name: id.into(),
            region: "Shanghai".into(),
            country: None,
            industry: "C".into(),
            sites: Vec::new(),
        })
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// Actor, its clusters (a bit each of 4), its industry (0: none), its segments.
        Upsert(u8, u8, u8, u8),
        DeleteActor(u8),
        /// Deletes a cluster with its memberships, then creates it again.
        DeleteCluster(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..12u8, 0..16u8, 0..4u8, any::<u8>()).prop_map(|(a, c, i, s)| Step::Upsert(a, c, i, s)),
            1 => (0..12u8).prop_map(Step::DeleteActor),
            1 => (0..4u8).prop_map(Step::DeleteCluster),
        ]
    }

    proptest! {
        /// Whatever batches run, the kept mixes equal a count from scratch.
        #[test]
        fn kept_mixes_equal_a_recount(steps in proptest::collection::vec(step(), 1..60)) {
            let mut network = Network::default();
            network.apply(&(0..4).map(|c| cluster(&format!("c{c}"))).collect::<Vec<_>>()).unwrap();
            for step in steps {
                let changes = match step {
                    Step::Upsert(a, clusters, industry, segments) => {
                        let names: Vec<String> = (0..4).filter(|c| clusters & (1 << c) != 0).map(|c| format!("c{c}")).collect();
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        let mut actor = testing::actor(&format!("a{a}"), &names);
                        actor.industry = if industry == 0 { String::new() } else { format!("C{industry}") };
                        actor.segments = Segment::ALL.iter().enumerate().filter(|(i, _)| segments & (1 << i) != 0).map(|(_, s)| *s).collect::<SegmentSet>();
                        vec![Change::UpsertActor(actor)]
                    }
                    Step::DeleteActor(a) => vec![Change::DeleteActor { id: format!("a{a}").into(), cascade: true }],
                    Step::DeleteCluster(c) => vec![
                        Change::DeleteCluster { id: format!("c{c}").into(), cascade: true },
                        cluster(&format!("c{c}")),
                    ],
                };
                // A refused batch (an actor that does not exist) leaves the network as it was.
                let mut next = network.clone();
                if next.apply(&changes).is_ok() {
                    network = next;
                }
                prop_assert_eq!(&network.mixes, &recounted(&network));
            }
        }
    }
}
