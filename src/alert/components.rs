//! The components of a cluster's own network as the alert engine keeps
//! them: each member with a label, labels kept from one evaluation to the
//! next, and what changed between two labellings.
//!
//! Why: the labelling is most of a big cluster's kept figures (2.4 MB for
//! 110k members), and a batch touching one member used to rewrite it whole,
//! on every replica and in the shared step log. With labels carried over
//! (a component keeps the label most of its members had), a batch that adds
//! one member changes one entry, and only changed entries are written.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::Id;

/// Each member with its component's label, sorted by member.
pub type Components = Vec<(Id, u32)>;

/// Relabels `new` (sorted by member) so that each component keeps the
/// label most of its members had in `old`: the largest components choose
/// first, a label goes to one component only, and a component with no
/// label left (new members only, or the smaller half of a split) takes the
/// smallest label not in use. Which members share a component is
/// unchanged.
pub fn keep_labels(old: &[(Id, u32)], new: &mut [(Id, u32)]) {
    let was: HashMap<&Id, u32> = old.iter().map(|(a, l)| (a, *l)).collect();
    // New label -> (its size, the old labels of its members with counts).
    let mut groups: HashMap<u32, (usize, HashMap<u32, usize>)> = HashMap::new();
    for (member, label) in new.iter() {
        let group = groups.entry(*label).or_default();
        group.0 += 1;
        if let Some(old_label) = was.get(member) {
            *group.1.entry(*old_label).or_default() += 1;
        }
    }
    let mut order: Vec<(u32, usize)> = groups.iter().map(|(l, (size, _))| (*l, *size)).collect();
    // Largest first; ties by the label, so the result is deterministic.
    order.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut taken: BTreeSet<u32> = BTreeSet::new();
    let mut relabel: HashMap<u32, u32> = HashMap::new();
    let mut unlabelled = Vec::new();
    for (label, _) in order {
        let mut candidates: Vec<(u32, usize)> = groups[&label].1.iter().map(|(l, n)| (*l, *n)).collect();
        candidates.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        match candidates.into_iter().find(|(l, _)| !taken.contains(l)) {
            Some((kept, _)) => {
                taken.insert(kept);
                relabel.insert(label, kept);
            }
            None => unlabelled.push(label),
        }
    }
    let mut fresh = 0u32;
    for label in unlabelled {
        while taken.contains(&fresh) {
            fresh += 1;
        }
        taken.insert(fresh);
        relabel.insert(label, fresh);
    }
    for (_, label) in new.iter_mut() {
        *label = relabel[label];
    }
}

/// What changed from one labelling to the next: members whose label is new
/// or changed, and members gone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentsChange {
    pub set: Vec<(Id, u32)>,
    pub left: Vec<Id>,
}

impl ComponentsChange {
    /// From `old` to `new`, both sorted by member.
    pub fn between(old: &[(Id, u32)], new: &[(Id, u32)]) -> ComponentsChange {
        let mut change = ComponentsChange::default();
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            match (old.get(i), new.get(j)) {
                (Some((a, la)), Some((b, lb))) if a == b => {
                    if la != lb {
                        change.set.push((b.clone(), *lb));
                    }
                    i += 1;
                    j += 1;
                }
                (Some((a, _)), Some((b, _))) if a < b => {
                    change.left.push(a.clone());
                    i += 1;
                }
                (Some((a, _)), None) => {
                    change.left.push(a.clone());
                    i += 1;
                }
                (_, Some(entry)) => {
                    change.set.push(entry.clone());
                    j += 1;
                }
                (None, None) => unreachable!("the loop runs while one side has entries"),
            }
        }
        change
    }

    /// All of `new`: what a labelling is written as when nothing was kept.
    pub fn whole(new: &[(Id, u32)]) -> ComponentsChange {
        ComponentsChange {
            set: new.to_vec(),
            left: Vec::new(),
        }
    }

    /// `components` (sorted by member) brought to the labelling this change
    /// leads to.
    pub fn apply_to(&self, components: &mut Components) {
        let left: BTreeSet<&Id> = self.left.iter().collect();
        let mut merged: std::collections::BTreeMap<Id, u32> = components
            .drain(..)
            .filter(|(member, _)| !left.contains(member))
            .collect();
        merged.extend(self.set.iter().cloned());
        components.extend(merged);
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.left.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn labelled(entries: &[(&str, u32)]) -> Components {
        let mut components: Components = entries.iter().map(|(a, l)| (Id::from(*a), *l)).collect();
        components.sort();
        components
    }

    /// One member joining the big component changes one entry, whatever
    /// label the new evaluation happened to give it.
    #[test]
    fn a_member_joining_changes_one_entry() {
        let old = labelled(&[("b", 0), ("c", 0), ("d", 0), ("x", 1)]);
        // Recomputed from scratch, labels follow the members' new order.
        let mut new = labelled(&[("a", 0), ("b", 0), ("c", 0), ("d", 0), ("x", 4)]);
        keep_labels(&old, &mut new);
        assert_eq!(new, labelled(&[("a", 0), ("b", 0), ("c", 0), ("d", 0), ("x", 1)]));
        let change = ComponentsChange::between(&old, &new);
        assert_eq!(change.set, labelled(&[("a", 0)]));
        assert!(change.left.is_empty());
    }

    /// A split: the larger part keeps the label, the smaller gets a label
    /// no other component has, and only its members are written.
    #[test]
    fn the_smaller_part_of_a_split_alone_is_relabelled() {
        let old = labelled(&[("a", 3), ("b", 3), ("c", 3), ("d", 3), ("e", 0)]);
        let mut new = labelled(&[("a", 7), ("b", 7), ("c", 7), ("d", 9), ("e", 8)]);
        keep_labels(&old, &mut new);
        assert_eq!(new, labelled(&[("a", 3), ("b", 3), ("c", 3), ("d", 1), ("e", 0)]));
        let change = ComponentsChange::between(&old, &new);
        assert_eq!(change.set, labelled(&[("d", 1)]));
    }

    fn labellings() -> impl Strategy<Value = (Components, Components)> {
        let one = || prop::collection::btree_map(0u8..40, 0u32..6, 0..30);
        (one(), one()).prop_map(|(a, b)| {
            let as_components = |m: std::collections::BTreeMap<u8, u32>| -> Components {
                m.into_iter()
                    .map(|(k, l)| (Id::from(format!("m{k:02}").as_str()), l))
                    .collect()
            };
            (as_components(a), as_components(b))
        })
    }

    /// The groups of members sharing a label.
    fn partition(components: &[(Id, u32)]) -> BTreeSet<BTreeSet<Id>> {
        let mut by_label: HashMap<u32, BTreeSet<Id>> = HashMap::new();
        for (a, l) in components {
            by_label.entry(*l).or_default().insert(a.clone());
        }
        by_label.into_values().collect()
    }

    proptest! {
        /// Keeping labels never changes who is with whom, and applying the
        /// change between two labellings to the first gives the second.
        #[test]
        fn kept_labels_keep_the_components_and_a_change_replays((old, new) in labellings()) {
            let mut relabelled = new.clone();
            keep_labels(&old, &mut relabelled);
            prop_assert_eq!(partition(&relabelled), partition(&new));
            let change = ComponentsChange::between(&old, &relabelled);
            let mut replayed = old.clone();
            change.apply_to(&mut replayed);
            prop_assert_eq!(replayed, relabelled.clone());
            let mut from_nothing = Vec::new();
            ComponentsChange::whole(&relabelled).apply_to(&mut from_nothing);
            prop_assert_eq!(from_nothing, relabelled);
        }

        /// Relabelling the same components again changes nothing.
        #[test]
        fn kept_labels_are_a_fixed_point((old, new) in labellings()) {
            let mut once = new.clone();
            keep_labels(&old, &mut once);
            let mut twice = once.clone();
            keep_labels(&once, &mut twice);
            prop_assert!(ComponentsChange::between(&once, &twice).is_empty());
        }
    }
}
