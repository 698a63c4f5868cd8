//! A FIRM graph made from the same spec's graph of an earlier revision and
//! the batches since: the rows of the nodes the batches touched are made
//! again from the network, the others are copied. On 10M links a build
//! walks every link of the persistent map and sorts them into rows (about
//! 1.5 s); a patch for a few links copies the rows (a few tens of ms).
//!
//! A patched graph equals the graph a build gives, bit for bit: each row is
//! made from its links in the order a build meets them, and summed in that
//! order (`firm_rows`). The property test below holds the two together.

use std::{collections::BTreeMap, sync::Arc};

use super::{AnalysisGraph, EdgeMode, GraphFilter, KeepsActor};
use crate::{
    model::Change,
    network::{EdgeKey, Ix, Network},
};

/// Past this share of nodes touched, a build is cheaper than a patch.
const PATCH_AT_MOST: f64 = 0.05;

/// The nodes a patch of `graph` may touch before a build is cheaper; also
/// the changes worth reading from the log to patch it.
pub(super) fn most_nodes(graph: &AnalysisGraph) -> usize {
    ((graph.node_count() as f64 * PATCH_AT_MOST) as usize).max(64)
}

impl AnalysisGraph {
    /// This FIRM graph (of `filter` and `mode`, at an earlier revision)
    /// brought to `network` by `changes`, the batches between; `None` when a
    /// build is needed instead: an actor or cluster deleted (its links go
    /// without a change of their own), actors becoming or ceasing to be
    /// nodes other than new ones at the end, or too much touched.
    ///
    /// Only what the changes name is looked at: a pass over every actor to
    /// list the nodes again cost more than the rest of a patch.
    pub fn patched<'c>(
        &self,
        network: &Network,
        filter: &GraphFilter,
        mode: EdgeMode,
        changes: impl IntoIterator<Item = &'c Change>,
    ) -> Option<AnalysisGraph> {
        if self.actors.len() != self.ids.len() || self.directed == mode.undirected {
            return None; // not a FIRM graph of this mode
        }
        let most = most_nodes(self);
        let mut touched: Vec<Ix> = Vec::new();
        let mut upserted: Vec<Ix> = Vec::new();
        for change in changes {
            let key = match change {
                Change::UpsertLink(link) => link.key(),
                Change::DeleteLink(key) => key.clone(),
                Change::UpsertActor(actor) => {
                    upserted.push(*network.actor_ix.get(&actor.id)?);
                    continue;
                }
                Change::DeleteActor { .. } | Change::DeleteCluster { .. } => return None,
                _ => continue,
            };
            touched.push(*network.actor_ix.get(&key.source)?);
            touched.push(*network.actor_ix.get(&key.target)?);
            if touched.len() + upserted.len() > 2 * most {
                return None;
            }
        }
        // An upserted actor stays what it was (a node, renamed perhaps, or
        // not one), or is a new node after the last.
        upserted.sort_unstable();
        upserted.dedup();
        let keeps = KeepsActor::new(filter);
        let (mut ids, mut names, mut actors) = (self.ids.clone(), self.names.clone(), self.actors.clone());
        let last = self.actors.last().copied();
        for ix in upserted {
            let actor = network.actor(ix)?;
            match (self.actors.binary_search(&ix), keeps.keeps(actor)) {
                (Ok(v), true) => {
                    if names[v] != actor.name {
                        Arc::make_mut(&mut names)[v] = actor.name.clone();
                    }
                }
                (Err(_), false) => {}
                (Err(_), true) if last.is_none_or(|last| ix > last) => {
                    Arc::make_mut(&mut ids).push(actor.id.clone());
                    Arc::make_mut(&mut names).push(actor.name.clone());
                    Arc::make_mut(&mut actors).push(ix);
                    // Its links may predate it (an actor now inside the
                    // filter's clusters): its neighbours' rows change too.
                    touched.push(ix);
                    touched.extend(
                        network
                            .incident(ix)
                            .map(|key| if key.source == ix { key.target } else { key.source }),
                    );
                }
                _ => return None,
            }
        }
        let node = |ix: Ix| actors.binary_search(&ix).ok().map(|v| v as u32);
        let mut outgoing: BTreeMap<u32, Arcs> = BTreeMap::new();
        let mut incoming: BTreeMap<u32, Arcs> = BTreeMap::new();
        for ix in touched {
            let Some(u) = node(ix) else { continue };
            if outgoing.contains_key(&u) {
                continue;
            }
            if outgoing.len() >= most {
                return None;
            }
            let (out_arcs, in_arcs) = firm_rows(network, filter, mode, &node, ix);
            outgoing.insert(u, out_arcs);
            if let Some(in_arcs) = in_arcs {
                incoming.insert(u, in_arcs);
            }
        }
        let n = ids.len();
        let (outgoing, incoming) = if mode.undirected {
            let rows = Arc::new(self.outgoing.patched(n, &mut outgoing, mode.weighted));
            (rows.clone(), rows)
        } else {
            let (out_rows, in_rows) = rayon::join(
                || self.outgoing.patched(n, &mut outgoing, mode.weighted),
                || self.incoming.patched(n, &mut incoming, mode.weighted),
            );
            (Arc::new(out_rows), Arc::new(in_rows))
        };
        Some(AnalysisGraph {
            ids,
            names,
            directed: self.directed,
            outgoing,
            incoming,
            actors,
        })
    }
}

/// A node's arcs: (other end, weight), in the order a build meets them.
type Arcs = Vec<(u32, f64)>;

/// Actor `ix`'s out-arcs and in-arcs (`None` in an undirected graph, where
/// they are the out-arcs) in the order `firm_graph` and `from_edges` put
/// them: the directed links first, by key; then the links followed both
/// ways, by key, each giving its other end.
fn firm_rows(
    network: &Network,
    filter: &GraphFilter,
    mode: EdgeMode,
    node: &dyn Fn(Ix) -> Option<u32>,
    ix: Ix,
) -> (Arcs, Option<Arcs>) {
    let mut keys: Vec<EdgeKey> = network.incident(ix).collect();
    keys.sort_unstable();
    let (mut out_arcs, mut in_arcs, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for key in keys {
        let Some(data) = network.links.get(&key).filter(|d| filter.keeps_link(key.kind, d)) else {
            continue;
        };
        let other = if key.source == ix { key.target } else { key.source };
        if other == ix {
            continue; // self-loops are dropped
        }
        let Some(v) = node(other) else { continue };
        let w = if mode.weighted { data.weight } else { 1.0 };
        if mode.undirected || !key.kind.is_directed() {
            both.push((v, w));
        } else if key.source == ix {
            out_arcs.push((v, w));
        } else {
            in_arcs.push((v, w));
        }
    }
    if mode.undirected {
        return (both, None);
    }
    out_arcs.extend_from_slice(&both);
    in_arcs.extend(both);
    (out_arcs, Some(in_arcs))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        graph::firm_graph,
        model::{Actor, Change, LinkKind, Validity},
        testing,
    };

    #[derive(Clone, Debug)]
    enum Step {
        /// source, target, kind (index into LinkKind::ALL), weight
        Link(u8, u8, u8, u8),
        Unlink(u8, u8, u8),
        /// An actor (new or not) in cluster a, b or both.
        Actor(u8, u8),
        /// Ends the link's validity before the filter's date.
        Expire(u8, u8, u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            // Few actors, so pairs gather several links and their sums depend on order.
            6 => (0..8u8, 0..8u8, 0..8u8, 1..5u8).prop_map(|(s, t, k, w)| Step::Link(s, t, k, w)),
            2 => (0..8u8, 0..8u8, 0..8u8).prop_map(|(s, t, k)| Step::Unlink(s, t, k)),
            1 => (0..9u8, 1..4u8).prop_map(|(a, c)| Step::Actor(a, c)),
            1 => (0..8u8, 0..8u8, 0..8u8).prop_map(|(s, t, k)| Step::Expire(s, t, k)),
        ]
    }

    fn actor(a: u8, clusters: u8) -> Change {
        let names: Vec<&str> = [(1, "a"), (2, "b")]
            .iter()
            .filter(|(bit, _)| clusters & bit != 0)
            .map(|(_, c)| *c)
            .collect();
        // Its name changes with its clusters: a patch renames nodes too.
        Change::UpsertActor(Actor {
            name: format!("x{a} in {names:?}"),
            ..testing::actor(&format!("x{a}"), &names)
        })
    }

    fn kind(k: u8) -> LinkKind {
        LinkKind::ALL[k as usize % LinkKind::ALL.len()]
    }

    proptest! {
        /// Patching a graph through random batches gives, after each, the
        /// graph a build gives: every filter and mode, nodes added at the end
        /// or left out.
        #[test]
        fn a_patched_graph_equals_a_built_one(
            steps in proptest::collection::vec(step(), 1..80),
            undirected in any::<bool>(),
            weighted in any::<bool>(),
            only_a in any::<bool>(),
            dated in any::<bool>(),
        ) {
            let mut network = testing::network(vec![
                Change::UpsertCluster(testing::cluster("a")),
                Change::UpsertCluster(testing::cluster("b")),
            ]);
            // Half the actors exist from the start; the rest come later.
            network.apply(&(0..6).map(|a| actor(a, 1 + a % 3)).collect::<Vec<_>>()).unwrap();
            let filter = GraphFilter {
                clusters: if only_a { vec!["a".into()] } else { Vec::new() },
                as_of: dated.then(|| "2024-06-01".parse().unwrap()),
                ..GraphFilter::default()
            };
            let mode = EdgeMode { undirected, weighted };
            let mut graph = firm_graph(&network, &filter, mode);
            for step in steps {
                let change = match step {
                    Step::Link(s, t, k, w) => {
                        let mut link = testing::link(&format!("x{s}"), &format!("x{t}"), kind(k));
                        // Weights whose sums depend on their order.
                        link.weight = 0.1 * w as f64 + 0.07;
                        Change::UpsertLink(link)
                    }
                    Step::Unlink(s, t, k) => Change::DeleteLink(testing::link(&format!("x{s}"), &format!("x{t}"), kind(k)).key()),
                    Step::Actor(a, c) => actor(a, c),
                    Step::Expire(s, t, k) => {
                        let mut link = testing::link(&format!("x{s}"), &format!("x{t}"), kind(k));
                        link.validity = Validity { from: None, to: Some("2024-01-01".parse().unwrap()) };
                        Change::UpsertLink(link)
                    }
                };
                let mut next = network.clone();
                if next.apply(std::slice::from_ref(&change)).is_err() {
                    continue; // a link to an actor not yet there, a link not there
                }
                network = next;
                let built = firm_graph(&network, &filter, mode);
                match graph.patched(&network, &filter, mode, [&change]) {
                    Some(patched) => {
                        prop_assert_eq!(&patched.ids, &built.ids);
                        prop_assert_eq!(&patched.names, &built.names);
                        prop_assert_eq!(&patched.actors, &built.actors);
                        prop_assert_eq!(&*patched.outgoing, &*built.outgoing);
                        prop_assert_eq!(&*patched.incoming, &*built.incoming);
                        prop_assert_eq!(patched.directed, built.directed);
                    }
                    // Only an actor leaving the filter's clusters may refuse.
                    None => prop_assert!(matches!(change, Change::UpsertActor(_))),
                }
                graph = built;
            }
        }
    }
}
