//! The links at a set of actors, read from the persistent maps once.
//!
//! A cluster's figures walk its members' links several times: the stage
//! tallies, its places, the ties that join them, its core firms, its own
//! network. Each walk descends the link maps again, and an in-link's data is
//! a lookup of its own (about 0.65 µs at a million links, most of a walk).
//! [`Ties`] reads each member's links and their data once; the analyses read
//! them from it. An actor that was not read is read from the network when
//! asked, so a `Ties` can only make a walk cheaper, never change it.

use rayon::prelude::*;
use std::sync::Arc;

use super::{EdgeKey, Ix, LinkData, Network};
use crate::model::Actor;

/// A link at an actor, with its data.
pub type Tie<'n> = (EdgeKey, &'n LinkData);

/// A link at an actor, with its data and the actor at its other end (None:
/// not stored; a loop's other end is the actor itself).
pub type Partner<'n> = (EdgeKey, &'n LinkData, Option<&'n Arc<Actor>>);

/// Where an actor's links are in its part's list: start, end of its
/// out-links, end.
type Span = (u32, u32, u32);

/// Actors below which reading in parallel costs more than it saves.
const PARALLEL_FROM: usize = 64;

pub struct Ties<'n> {
    network: &'n Network,
    /// The actors read, ascending, each with the span of its links in its
    /// part. The parts stay as read (a copy into one list was a serial
    /// tenth of a 10,000-cluster alert round).
    actors: Vec<Ix>,
    spans: Vec<Span>,
    /// Actors per part: actor `i` is in part `i / chunk`.
    chunk: usize,
    parts: Vec<Vec<Partner<'n>>>,
}

impl<'n> Ties<'n> {
    /// Nothing read: every walk goes to the network.
    pub fn none(network: &'n Network) -> Ties<'n> {
        Ties {
            network,
            actors: Vec::new(),
            spans: Vec::new(),
            chunk: 1,
            parts: Vec::new(),
        }
    }

    /// The links of `actors` (each once, however often named), read in
    /// parallel when there are many.
    pub fn read(network: &'n Network, actors: impl IntoIterator<Item = Ix>) -> Ties<'n> {
        let mut actors: Vec<Ix> = actors.into_iter().collect();
        if actors.len() < PARALLEL_FROM {
            actors.sort_unstable();
        } else {
            actors.par_sort_unstable();
        }
        actors.dedup();
        // First every actor's out-links: their data comes with the range.
        // Each part's in one list, with each actor's end in it (a list per
        // actor was an allocation per actor).
        let small = actors.len() < PARALLEL_FROM;
        let chunk = if small {
            actors.len().max(1)
        } else {
            actors.len().div_ceil(rayon::current_num_threads() * 4).max(1)
        };
        let read_out = |part: &[Ix]| -> (Vec<u32>, Vec<Tie<'n>>) {
            let mut ends = Vec::with_capacity(part.len());
            let mut ties = Vec::new();
            for &ix in part {
                ties.extend(network.out_links_with_data(ix));
                ends.push(ties.len() as u32);
            }
            (ends, ties)
        };
        let outs: Vec<(Vec<u32>, Vec<Tie<'n>>)> = if small {
            vec![read_out(&actors)]
        } else {
            actors.par_chunks(chunk).map(read_out).collect()
        };
        // The out-links of the actor at `at` in `actors`.
        let out_of = |at: usize| -> &[Tie<'n>] {
            let (ends, ties) = &outs[at / chunk];
            let local = at % chunk;
            let start = if local == 0 { 0 } else { ends[local - 1] as usize };
            &ties[start..ends[local] as usize]
        };
        // Then the in-links. One whose source was read takes its data from
        // that source's out-links (sorted by key, found by bisection), not
        // from a descent of the link map: reading whole clusters, most are.
        let data_of = |key: &EdgeKey| -> Option<&'n LinkData> {
            let read = actors.binary_search(&key.source).ok().and_then(|at| {
                let out = out_of(at);
                out.binary_search_by(|(k, _)| k.cmp(key)).ok().map(|i| out[i].1)
            });
            read.or_else(|| network.links.get(key))
        };
        let read_part = |(first, part): (usize, &[Ix])| -> (Vec<Span>, Vec<Partner<'n>>) {
            let mut spans = Vec::with_capacity(part.len());
            let mut links = Vec::new();
            for (at, &ix) in (first..).zip(part) {
                let start = links.len() as u32;
                links.extend(out_of(at).iter().map(|&tie| with_partner(network, ix, tie)));
                let out_end = links.len() as u32;
                let ins = network.in_links(ix).filter_map(|key| Some((key, data_of(&key)?)));
                links.extend(ins.map(|tie| with_partner(network, ix, tie)));
                spans.push((start, out_end, links.len() as u32));
            }
            (spans, links)
        };
        let (spans, parts): (Vec<Vec<Span>>, Vec<Vec<Partner<'n>>>) = if small {
            let (spans, links) = read_part((0, &actors));
            (vec![spans], vec![links])
        } else {
            actors
                .par_chunks(chunk)
                .enumerate()
                .map(|(i, part)| read_part((i * chunk, part)))
                .unzip()
        };
        Ties {
            network,
            spans: spans.concat(),
            actors,
            chunk,
            parts,
        }
    }

    /// Every link at `ix`, out-links then in-links, in the order
    /// [`Network::incident`] gives them.
    pub fn incident(&self, ix: Ix) -> impl Iterator<Item = Tie<'n>> + '_ {
        self.partners(ix).map(|(key, data, _)| (key, data))
    }

    /// [`Ties::incident`] with the actor at each link's other end.
    pub fn partners(&self, ix: Ix) -> impl Iterator<Item = Partner<'n>> + '_ {
        let network = self.network;
        let kept = self.read_for(ix, |&(start, _, end)| start..end);
        let unread = kept.is_none().then(|| {
            network
                .out_links_with_data(ix)
                .chain(network.in_links_with_data(ix))
                .map(move |tie| with_partner(network, ix, tie))
        });
        kept.into_iter().flatten().copied().chain(unread.into_iter().flatten())
    }

    /// The keys of every link at `ix` with the actor at the other end, as
    /// [`Ties::incident`] orders them; unread, no data is looked up.
    pub fn keys_and_partners(&self, ix: Ix) -> impl Iterator<Item = (EdgeKey, Option<&'n Arc<Actor>>)> + '_ {
        let network = self.network;
        let kept = self.read_for(ix, |&(start, _, end)| start..end);
        let unread = kept.is_none().then(|| {
            network
                .incident(ix)
                .map(move |key| (key, partner_of(network, ix, &key)))
        });
        let kept = kept.into_iter().flatten().map(|(key, _, actor)| (*key, *actor));
        kept.chain(unread.into_iter().flatten())
    }

    /// The links out of `ix`, by target.
    pub fn out(&self, ix: Ix) -> impl Iterator<Item = Tie<'n>> + '_ {
        let kept = self.read_for(ix, |&(start, out_end, _)| start..out_end);
        let unread = kept.is_none().then(|| self.network.out_links_with_data(ix));
        let kept = kept.into_iter().flatten().map(|(key, data, _)| (*key, *data));
        kept.chain(unread.into_iter().flatten())
    }

    /// The part of `links` read for `ix` (None: not read).
    fn read_for(&self, ix: Ix, part: impl Fn(&Span) -> std::ops::Range<u32>) -> Option<&[Partner<'n>]> {
        let at = self.actors.binary_search(&ix).ok()?;
        let range = part(&self.spans[at]);
        Some(&self.parts[at / self.chunk][range.start as usize..range.end as usize])
    }
}

/// A link at `ix` with the actor at its other end.
fn with_partner<'n>(network: &'n Network, ix: Ix, (key, data): Tie<'n>) -> Partner<'n> {
    (key, data, partner_of(network, ix, &key))
}

/// The actor at the end of `key` that is not `ix` (`ix` itself for a loop).
fn partner_of<'n>(network: &'n Network, ix: Ix, key: &EdgeKey) -> Option<&'n Arc<Actor>> {
    network.actor(if key.source == ix { key.target } else { key.source })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        synthetic::{generate, SyntheticConfig},
        testing::{arbitrary_clustered_network, network},
    };

    /// Every actor's ties, read or not, are its links in the network's order.
    fn assert_ties_are_the_links(network: &Network, read_every: usize) {
        let all: Vec<Ix> = (0..network.actor_at.len() as Ix).collect();
        let read: Vec<Ix> = all.iter().copied().step_by(read_every).collect();
        // Named twice: still read once.
        let ties = Ties::read(network, read.iter().chain(&read).copied());
        let with_data = |key: EdgeKey| (key, network.links.get(&key).expect("a link's key has data"));
        for ix in all {
            let incident: Vec<Tie> = network.incident(ix).map(with_data).collect();
            assert_eq!(ties.incident(ix).collect::<Vec<_>>(), incident, "actor {ix}");
            // The same actors (by identity) at the other ends.
            let ids = |actors: Vec<Option<&Arc<Actor>>>| -> Vec<Option<*const Actor>> {
                actors.into_iter().map(|a| a.map(Arc::as_ptr)).collect()
            };
            let others = ids(network
                .incident(ix)
                .map(|key| network.actor(if key.source == ix { key.target } else { key.source }))
                .collect());
            assert_eq!(
                ids(ties.partners(ix).map(|(_, _, actor)| actor).collect()),
                others,
                "actor {ix}"
            );
            let (keys, partners): (Vec<EdgeKey>, Vec<Option<&Arc<Actor>>>) = ties.keys_and_partners(ix).unzip();
            assert_eq!(keys, network.incident(ix).collect::<Vec<_>>(), "actor {ix}");
            assert_eq!(ids(partners), others, "actor {ix}");
            let out: Vec<Tie> = network.out_links(ix).map(with_data).collect();
            assert_eq!(ties.out(ix).collect::<Vec<_>>(), out, "actor {ix}");
        }
    }

    proptest! {
        #[test]
        fn ties_are_the_links_of_small_networks(changes in arbitrary_clustered_network(false), read_every in 1usize..4) {
            assert_ties_are_the_links(&network(changes), read_every);
        }
    }

    #[test]
    fn ties_read_in_parallel_are_the_links() {
        let changes = generate(&SyntheticConfig {
            clusters: 5,
            actors: 600,
            links: 3_000,
            ..SyntheticConfig::default()
        });
        let network = network(changes);
        for read_every in [1, 3] {
            assert_ties_are_the_links(&network, read_every);
        }
        let ties = Ties::read(&network, 0..600);
        assert!(ties.parts.len() > 1, "read in parts");
        assert!(
            ties.parts.iter().map(Vec::len).sum::<usize>() >= 6_000,
            "every link is read from both ends"
        );
    }
}
