//! Virtual wholes across clusters: places of different clusters joined over
//! platforms into one chain (the article's third stage at the scale of a
//! region: a Shanghai design cluster, a Hangzhou product-development cluster
//! and a Suzhou manufacturing cluster serving final customers as one).
//!
//! A whole across clusters is measured exactly as one cluster's places are
//! ([`super::virtual_integration`]): the same gates, factors, permutation test and
//! confidence, from the members at its places and their ties alone. What is
//! new is finding the candidates without trying every set of places:
//!
//! 1. **Reading.** From the places of the clusters asked about, the places
//!    their members tie to are read (their members' ties, segment mix,
//!    platforms), and so on outwards, but only across *candidate pairs*:
//!    two places of different clusters that are **joined** (a platform
//!    actor tied to at least `detection.min_platform_members` members at
//!    each, or a PLATFORM cluster link between them) and whose members tie
//!    to each other **above chance**: at least `detection.min_pair_ties`
//!    ties between them, and those against the configuration model on the
//!    pair's own ties reach `virtual.min_interaction`. At most `detection.max_search_places`
//!    places are read for one component; the search says when it stopped
//!    there (`bounded`).
//! 2. **Growing.** Every place starts alone. The candidate pairs, strongest
//!    first (interaction ratio, then ids), merge the groups of their two
//!    places when the merged group keeps the structural gates (interaction,
//!    online share of the joining ties, distinctness) and its *growth
//!    score*, the confidence with coverage counted without the
//!    final-customer rule (so a design cluster and a development cluster
//!    can meet before the manufacturer that reaches customers joins),
//!    stays at `thresholds.virtual` or above, and does not fall below
//!    either group's while those are under it, with at most
//!    `detection.max_parts` places. Passes repeat until no pair merges. A national platform tied
//!    to members everywhere joins every pair, but random places of one mix
//!    are not distinct, so they do not merge: the country does not become
//!    one whole.
//! 3. **Judging.** Each group of two places or more spanning two clusters or
//!    more is measured exactly, and reported when it holds.
//!
//! The work is that of the places read: each once, its members' links once;
//! the merges are computed from per-place sums (O(parts²) each).
//! Deadlines and cancellation are checked at every place read and every
//! merge tried.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::unionfind::UnionFind;

use crate::analysis::{
    stages::measures::{distinctness, segment_mix},
    stages::places::{places, Place},
    stages::stage_config::StageConfig,
    stages::virtual_integration::{detect_with, most_confident_first, Pattern, PlaceSet},
    stages::StageContext,
    Cancelled, Control,
};
use crate::{
    graph::GraphFilter,
    model::{ActorKind, Channel, ClusterLinkKind, Id, LinkKind, Segment},
    network::{ties::Ties, Ix, Network},
};

/// What the search did, for the response and the docs' cost figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchCost {
    /// Places whose members' ties were read.
    pub places_read: u64,
    /// Clusters whose places were made (their members placed).
    pub clusters_laid_out: u64,
    /// Pairs of places of different clusters that are joined and tie above chance.
    pub candidate_pairs: u64,
    /// Merges of two groups tried.
    pub merges_tried: u64,
    /// A component reached `detection.max_search_places` and was not read to its end.
    pub bounded: bool,
}

/// The wholes across clusters found, most confident first, and the search's cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wholes {
    pub patterns: Vec<Pattern>,
    pub cost: SearchCost,
}

impl Wholes {
    /// The most confident whole with a place of `cluster`.
    pub fn of(&self, cluster: &Id) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.spans(cluster))
    }
}

/// DetectVirtualIntegration: the patterns among each cluster's own places
/// ([`detect_with`]) and the wholes across clusters with a place of one of
/// the filter's clusters (all when it names none), most confident first.
pub fn detect(ctx: StageContext) -> Result<Vec<Pattern>, Cancelled> {
    let mut patterns = detect_with(ctx, None)?;
    let named = (!ctx.filter.clusters.is_empty()).then_some(&ctx.filter.clusters[..]);
    patterns.extend(find(ctx, named)?.patterns);
    most_confident_first(&mut patterns);
    Ok(patterns)
}

/// The wholes across clusters with a place of one of `clusters` (every
/// cluster of the network when None).
pub fn find(ctx: StageContext, clusters: Option<&[Id]>) -> Result<Wholes, Cancelled> {
    let (network, control) = (ctx.network, ctx.control);
    let mut search = Search::new(ctx.network, ctx.filter, ctx.config);
    let seeds: Vec<Id> = match clusters {
        Some(named) => named.to_vec(),
        None => network.clusters.keys().cloned().collect(),
    };
    let mut groups = Vec::new();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    for cluster in &seeds {
        for place in 0..search.layout(cluster).places.len() {
            let Some(start) = search.node(cluster, place) else {
                continue;
            };
            if done.contains(&start) {
                continue;
            }
            let component = search.read_component(start, control)?;
            done.extend(component.iter().copied());
            groups.extend(search.grow(&component, control)?);
        }
    }
    let mut patterns = Vec::new();
    for group in groups {
        control.check()?;
        let places: Vec<Place> = group.iter().map(|&n| search.nodes[n].place.clone()).collect();
        let members = places.iter().flat_map(|p| p.members.iter().copied());
        let ties = Ties::read(network, members);
        let set = PlaceSet::of_places(ctx, places, &ties);
        if let Some(pattern) = set.measure_whole(ctx, &ties)? {
            let wanted = clusters.is_none_or(|named| named.iter().any(|c| pattern.spans(c)));
            if pattern.holds() && pattern.clusters.len() >= 2 && wanted {
                patterns.push(pattern);
            }
        }
    }
    most_confident_first(&mut patterns);
    patterns.dedup_by(|a, b| a.id == b.id);
    let cost = &search.cost;
    if cost.bounded {
        tracing::warn!(
            places_read = cost.places_read,
            max_search_places = ctx.config.detection.max_search_places,
            "the search for wholes across clusters stopped at detection.max_search_places"
        );
    }
    tracing::debug!(
        places_read = cost.places_read,
        candidate_pairs = cost.candidate_pairs,
        merges_tried = cost.merges_tried,
        wholes = patterns.len(),
        "wholes across clusters searched"
    );
    Ok(Wholes {
        patterns,
        cost: search.cost,
    })
}

/// A cluster's places and where to find a member among them.
struct Layout {
    places: Vec<Place>,
    /// Site id to place index; empty for a cluster without sites (one place).
    at_site: HashMap<Id, usize>,
    /// The node of each place, once it has one.
    node: Vec<Option<usize>>,
}

/// Ties of a place's members to one platform actor.
#[derive(Clone, Copy, Default)]
struct PlatformTies {
    members: u64,
    ties: u64,
    virtual_ties: u64,
    /// The member counted last, so a member with two links counts once.
    last: Option<Ix>,
}

/// A place and the sums of its members' ties that the growth needs.
struct Node {
    place: Place,
    read: bool,
    mix: [f64; 8],
    /// Ties between two of its members, platforms left out.
    internal: u64,
    /// Ties from its members to members of other clusters (or of its own
    /// at other sites), by the partner's (cluster, site): (ties, online
    /// ties). Kept unresolved: a place read only to judge one pair must not
    /// make the places of all its partners' clusters.
    ties_to: BTreeMap<(Id, Option<Id>), (u64, u64)>,
    /// The places it ties to, once it is expanded.
    neighbours: Vec<usize>,
    platforms: BTreeMap<Ix, PlatformTies>,
}

struct Search<'n, 'a> {
    network: &'n Network,
    filter: &'a GraphFilter,
    config: &'a StageConfig,
    layouts: HashMap<Id, Layout>,
    nodes: Vec<Node>,
    /// PLATFORM cluster links as pairs of ends (site or cluster ids), both ways.
    platform_links: BTreeSet<(Id, Id)>,
    /// Each platform asked about: the members it is tied to, by their
    /// (cluster, site), read from the platform's side once.
    reach: HashMap<Ix, BTreeMap<(Id, Option<Id>), u64>>,
    cost: SearchCost,
}

impl<'n, 'a> Search<'n, 'a> {
    fn new(network: &'n Network, filter: &'a GraphFilter, config: &'a StageConfig) -> Self {
        let platform_links = network
            .cluster_links
            .values()
            .filter(|l| l.kind == ClusterLinkKind::Platform)
            .flat_map(|l| {
                [
                    (l.source.clone(), l.target.clone()),
                    (l.target.clone(), l.source.clone()),
                ]
            })
            .collect();
        Search {
            network,
            filter,
            config,
            layouts: HashMap::new(),
            nodes: Vec::new(),
            platform_links,
            reach: HashMap::new(),
            cost: SearchCost::default(),
        }
    }

    fn layout(&mut self, cluster: &Id) -> &mut Layout {
        let (network, filter, km) = (self.network, self.filter, self.config.places.colocation_km);
        let laid_out = &mut self.cost.clusters_laid_out;
        self.layouts.entry(cluster.clone()).or_insert_with(|| {
            *laid_out += 1;
            let places = places(network, &filter.for_cluster(cluster), km);
            let at_site = places
                .iter()
                .enumerate()
                .flat_map(|(p, place)| place.sites.iter().map(move |s| (s.clone(), p)))
                .collect();
            let node = vec![None; places.len()];
            Layout { places, at_site, node }
        })
    }

    /// The node of a cluster's place, made when first asked; None for a
    /// place without members.
    fn node(&mut self, cluster: &Id, place: usize) -> Option<usize> {
        let next = self.nodes.len();
        let layout = self.layout(cluster);
        if layout.places[place].members.is_empty() {
            return None;
        }
        if let Some(n) = layout.node[place] {
            return Some(n);
        }
        layout.node[place] = Some(next);
        let place = layout.places[place].clone();
        self.nodes.push(Node {
            place,
            read: false,
            mix: [0.0; 8],
            internal: 0,
            ties_to: BTreeMap::new(),
            neighbours: Vec::new(),
            platforms: BTreeMap::new(),
        });
        Some(next)
    }

    /// The node of the place a partner key (cluster, site) stands for.
    fn node_at(&mut self, cluster: &Id, site: Option<&Id>) -> Option<usize> {
        let layout = self.layout(cluster);
        let place = if layout.at_site.is_empty() {
            (!layout.places.is_empty()).then_some(0)
        } else {
            site.and_then(|s| layout.at_site.get(s).copied())
        };
        place.and_then(|p| self.node(cluster, p))
    }

    /// Resolves a read place's partners into nodes (making their clusters' places).
    fn expand(&mut self, n: usize) -> Vec<usize> {
        // Clusters with fewer ties than a candidate pair needs are not
        // looked at: their places are not made.
        let floor = self.config.detection.min_pair_ties;
        // Nor are clusters no platform or PLATFORM cluster link can join
        // to this place: their places could never be a candidate pair with
        // it, and making them read the partner clusters' members (with no
        // platform in the network, every cluster's, once per search).
        let joinable = self.joinable_clusters(n);
        let mut per_cluster: BTreeMap<&Id, u64> = BTreeMap::new();
        for ((cluster, _), (ties, _)) in &self.nodes[n].ties_to {
            *per_cluster.entry(cluster).or_default() += ties;
        }
        let keys: Vec<(Id, Option<Id>)> = self.nodes[n]
            .ties_to
            .keys()
            .filter(|(cluster, _)| per_cluster[cluster] as f64 >= floor && joinable.contains(cluster))
            .cloned()
            .collect();
        let mut found: BTreeSet<usize> = BTreeSet::new();
        for (cluster, site) in keys {
            if let Some(q) = self.node_at(&cluster, site.as_ref()) {
                if q != n {
                    found.insert(q);
                }
            }
        }
        self.nodes[n].neighbours = found.iter().copied().collect();
        self.nodes[n].neighbours.clone()
    }

    /// Reads a place's members' ties into its node.
    fn read(&mut self, n: usize) {
        if self.nodes[n].read {
            return;
        }
        self.cost.places_read += 1;
        let (network, filter) = (self.network, self.filter);
        let members: Vec<Ix> = self.nodes[n].place.members.clone();
        let own: std::collections::HashSet<Ix> = members.iter().copied().collect();
        let ties = Ties::none(network);
        let (mut internal, mut ties_to, mut platforms) = (0u64, BTreeMap::new(), BTreeMap::<Ix, PlatformTies>::new());
        for &me in &members {
            let Some(mine) = filter.actor(network, me) else {
                continue;
            };
            if mine.kind == ActorKind::Platform {
                continue; // a platform's ties are the join, not the place's
            }
            for (key, data, partner) in ties.partners(me) {
                let other = if key.source == me { key.target } else { key.source };
                if other == me || !filter.keeps_link(key.kind, data) {
                    continue;
                }
                let Some(theirs) = partner.filter(|a| filter.keeps_actor(a)) else {
                    continue;
                };
                let online = u64::from(data.channel == Channel::Virtual || key.kind == LinkKind::Platform);
                if theirs.kind == ActorKind::Platform {
                    let entry: &mut PlatformTies = platforms.entry(other).or_default();
                    entry.ties += 1;
                    entry.virtual_ties += online;
                    if entry.last != Some(me) {
                        entry.members += 1;
                        entry.last = Some(me);
                    }
                    continue;
                }
                if own.contains(&other) {
                    internal += u64::from(other > me);
                    continue;
                }
                for cluster in &theirs.cluster_ids {
                    let e: &mut (u64, u64) = ties_to.entry((cluster.clone(), theirs.site_id.clone())).or_default();
                    e.0 += 1;
                    e.1 += online;
                }
            }
        }
        let node = &mut self.nodes[n];
        node.mix = segment_mix(network, members.iter().copied(), filter.as_of);
        node.internal = internal;
        node.ties_to = ties_to;
        node.platforms = platforms;
        node.read = true;
    }

    /// Ties between two read places, from the first one's side: its ties
    /// to members of the second's cluster at the second's sites (at any
    /// site, for a cluster without sites).
    fn ties_between(&self, p: usize, q: usize) -> (u64, u64) {
        let (from, to) = (&self.nodes[p], &self.nodes[q].place);
        let mut sum = (0, 0);
        let start = (to.cluster.clone(), None);
        for ((cluster, site), (t, o)) in from.ties_to.range(start..) {
            if *cluster != to.cluster {
                break;
            }
            let here = to.sites.is_empty() || site.as_ref().is_some_and(|s| to.sites.contains(s));
            // One's own members at the same place are internal, not between.
            if here && p != q {
                sum.0 += t;
                sum.1 += o;
            }
        }
        sum
    }

    /// Whether a read place and one not read yet can be joined, from the
    /// platforms' side and the cluster links: a place that cannot is not
    /// read to judge the pair.
    fn may_join(&mut self, p: usize, q: usize) -> bool {
        let k = self.config.detection.min_platform_members;
        if self.linked(p, q) {
            return true;
        }
        let platforms = self.joining_platforms(p);
        let (cluster, sites) = (self.nodes[q].place.cluster.clone(), self.nodes[q].place.sites.clone());
        platforms.into_iter().any(|ix| {
            let reach = self.reach_of(ix);
            let start = (cluster.clone(), None);
            let at: u64 = reach
                .range(start..)
                .take_while(|((c, _), _)| *c == cluster)
                .filter(|((_, site), _)| sites.is_empty() || site.as_ref().is_some_and(|s| sites.contains(s)))
                .map(|(_, n)| n)
                .sum();
            at as f64 >= k
        })
    }

    /// The platforms tied to enough of a read place's members to join it.
    fn joining_platforms(&self, n: usize) -> Vec<Ix> {
        let k = self.config.detection.min_platform_members;
        self.nodes[n]
            .platforms
            .iter()
            .filter(|(_, t)| t.members as f64 >= k)
            .map(|(ix, _)| *ix)
            .collect()
    }

    /// The clusters a read place may be joined to: those a platform tied
    /// to enough of its members reaches at all, and those a PLATFORM
    /// cluster link from its sites or cluster ends in. A superset of the
    /// clusters of every place [`Self::may_join`] or [`Self::joined`]
    /// accepts with it.
    fn joinable_clusters(&mut self, n: usize) -> BTreeSet<Id> {
        let mut joinable: BTreeSet<Id> = BTreeSet::new();
        for ix in self.joining_platforms(n) {
            joinable.extend(self.reach_of(ix).keys().map(|(cluster, _)| cluster.clone()));
        }
        let place = &self.nodes[n].place;
        for end in place.sites.iter().chain([&place.cluster]) {
            let linked = self
                .platform_links
                .range((end.clone(), Id::from(""))..)
                .take_while(|(from, _)| from == end);
            for (_, to) in linked {
                let network = self.network;
                let cluster = if network.clusters.contains_key(to) {
                    Some(to.clone())
                } else {
                    network.sites.get(to).cloned()
                };
                joinable.extend(cluster);
            }
        }
        joinable
    }

    /// The members a platform is tied to, by (cluster, site).
    fn reach_of(&mut self, platform: Ix) -> &BTreeMap<(Id, Option<Id>), u64> {
        let (network, filter) = (self.network, self.filter);
        self.reach.entry(platform).or_insert_with(|| {
            let mut partners: BTreeSet<Ix> = BTreeSet::new();
            let mut reach = BTreeMap::new();
            for (key, data, partner) in Ties::none(network).partners(platform) {
                let other = if key.source == platform { key.target } else { key.source };
                let Some(member) = partner.filter(|a| filter.keeps_actor(a) && a.kind != ActorKind::Platform) else {
                    continue;
                };
                if !filter.keeps_link(key.kind, data) || !partners.insert(other) {
                    continue;
                }
                for cluster in &member.cluster_ids {
                    *reach.entry((cluster.clone(), member.site_id.clone())).or_default() += 1;
                }
            }
            reach
        })
    }

    /// A PLATFORM cluster link between the two places' sites or clusters.
    fn linked(&self, p: usize, q: usize) -> bool {
        let ends = |place: &Place| -> Vec<Id> {
            let mut ends = place.sites.clone();
            ends.push(place.cluster.clone());
            ends
        };
        let (a, b) = (&self.nodes[p].place, &self.nodes[q].place);
        ends(a).iter().any(|x| {
            ends(b)
                .into_iter()
                .any(|y| self.platform_links.contains(&(x.clone(), y)))
        })
    }

    fn joined(&self, p: usize, q: usize) -> bool {
        let k = self.config.detection.min_platform_members;
        let (a, b) = (&self.nodes[p], &self.nodes[q]);
        let by_platform = a
            .platforms
            .iter()
            .any(|(ix, t)| t.members as f64 >= k && b.platforms.get(ix).is_some_and(|u| u.members as f64 >= k));
        by_platform || self.linked(p, q)
    }

    /// The pair's interaction ratio when it is a candidate pair: places of
    /// different clusters, joined, tied above chance.
    fn candidate(&self, p: usize, q: usize) -> Option<f64> {
        // Counted from the lower place's side, so the pair is the same pair
        // whichever end the search came from.
        let key = |n: usize| (&self.nodes[n].place.cluster, &self.nodes[n].place.id);
        let (p, q) = if key(p) <= key(q) { (p, q) } else { (q, p) };
        let (a, b) = (&self.nodes[p], &self.nodes[q]);
        if a.place.cluster == b.place.cluster || !a.read || !b.read {
            return None;
        }
        let (between, _) = self.ties_between(p, q);
        if between == 0 || (between as f64) < self.config.detection.min_pair_ties {
            return None;
        }
        let ratio = interaction(&[a.internal, b.internal], &[vec![0, between], vec![between, 0]]);
        (ratio >= self.config.virtual_integration.min_interaction && self.joined(p, q)).then_some(ratio)
    }

    /// Reads the places reachable from `start` over candidate pairs, within
    /// the budget; returns them.
    fn read_component(&mut self, start: usize, control: &Control) -> Result<Vec<usize>, Cancelled> {
        let budget = self.config.detection.max_search_places.max(2.0) as u64;
        let mut component = vec![start];
        let mut seen: BTreeSet<usize> = BTreeSet::from([start]);
        let mut next = 0;
        let mut read = 0u64;
        while next < component.len() {
            control.check()?;
            let p = component[next];
            next += 1;
            self.read(p);
            read += 1;
            let neighbours = self.expand(p);
            let floor = self.config.detection.min_pair_ties;
            for q in neighbours {
                // Too few ties between them: not a candidate, not read.
                if seen.contains(&q) || (self.ties_between(p, q).0 as f64) < floor || !self.may_join(p, q) {
                    continue;
                }
                if read >= budget {
                    self.cost.bounded = true;
                    break;
                }
                control.check()?;
                self.read(q);
                read += 1;
                if self.candidate(p, q).is_some() {
                    seen.insert(q);
                    component.push(q);
                }
            }
        }
        Ok(component)
    }

    /// Merges the component's places along candidate pairs while the growth
    /// score does not fall; returns the groups of two places or more that
    /// span two clusters or more.
    fn grow(&mut self, component: &[usize], control: &Control) -> Result<Vec<Vec<usize>>, Cancelled> {
        let key = |n: usize| (&self.nodes[n].place.cluster, &self.nodes[n].place.id);
        let local: HashMap<usize, usize> = component.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for &p in component {
            for &q in &self.nodes[p].neighbours {
                if key(p) < key(q) && local.contains_key(&q) {
                    if let Some(ratio) = self.candidate(p, q) {
                        pairs.push((ratio, p, q));
                    }
                }
            }
        }
        self.cost.candidate_pairs += pairs.len() as u64;
        // Strongest first; ties broken by the places' ids, never by when
        // they were read.
        pairs.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| key(a.1).cmp(&key(b.1)))
                .then_with(|| key(a.2).cmp(&key(b.2)))
        });
        let mut groups: UnionFind<usize> = UnionFind::new(component.len());
        let mut members: Vec<Vec<usize>> = component.iter().map(|&n| vec![n]).collect();
        let mut score: Vec<f64> = vec![0.0; component.len()];
        let max_parts = self.config.detection.max_parts.max(2.0) as usize;
        let threshold = self.config.thresholds.virtual_integration;
        loop {
            let mut merged = false;
            for &(_, p, q) in &pairs {
                let (a, b) = (groups.find_mut(local[&p]), groups.find_mut(local[&q]));
                if a == b || members[a].len() + members[b].len() > max_parts {
                    continue;
                }
                control.check()?;
                self.cost.merges_tried += 1;
                let union: Vec<usize> = members[a].iter().chain(&members[b]).copied().collect();
                let Some(grown) = self.growth_score(&union) else {
                    continue;
                };
                // A whole may grow while it stays a whole: its score may
                // fall as far as the threshold, never below it, nor below
                // either group's while those are under it.
                if grown >= score[a].max(score[b]).min(threshold) {
                    groups.union(a, b);
                    let root = groups.find_mut(a);
                    members[a].clear();
                    members[b].clear();
                    members[root] = union;
                    score[root] = grown;
                    merged = true;
                }
            }
            if !merged {
                break;
            }
        }
        Ok(members
            .into_iter()
            .filter(|g| g.len() >= 2)
            .filter(|g| {
                let clusters: BTreeSet<&Id> = g.iter().map(|&n| &self.nodes[n].place.cluster).collect();
                clusters.len() >= 2
            })
            .collect())
    }

    /// A group's growth score from its places' sums, or None when it fails a
    /// structural gate (interaction, online share, distinctness).
    fn growth_score(&self, group: &[usize]) -> Option<f64> {
        let v = &self.config.virtual_integration;
        let k = self.config.detection.min_platform_members;
        let between: Vec<Vec<u64>> = group
            .iter()
            .map(|&p| {
                group
                    .iter()
                    .map(|&q| if p == q { 0 } else { self.ties_between(p, q).0 })
                    .collect()
            })
            .collect();
        let internal: Vec<u64> = group.iter().map(|&p| self.nodes[p].internal).collect();
        let ratio = interaction(&internal, &between);
        // Ties between the places (each from its lower end's side) and the
        // joining platforms' ties to members.
        let (mut joining, mut online) = (0u64, 0u64);
        for (i, &p) in group.iter().enumerate() {
            for &q in &group[i + 1..] {
                let (t, o) = self.ties_between(p, q);
                joining += t;
                online += o;
            }
        }
        let mut reach: BTreeMap<Ix, (usize, u64, u64)> = BTreeMap::new();
        for &p in group {
            for (ix, t) in &self.nodes[p].platforms {
                let e = reach.entry(*ix).or_default();
                e.0 += usize::from(t.members as f64 >= k);
                e.1 += t.ties;
                e.2 += t.virtual_ties;
            }
        }
        for (places, ties, virtual_ties) in reach.values() {
            if *places >= 2 {
                joining += ties;
                online += virtual_ties;
            }
        }
        let share = if joining == 0 {
            0.0
        } else {
            online as f64 / joining as f64
        };
        let mixes: Vec<[f64; 8]> = group.iter().map(|&p| self.nodes[p].mix).collect();
        let distinct = distinctness(&mixes);
        if ratio < v.min_interaction || share < v.min_virtual_share || distinct < v.min_distinctness {
            return None;
        }
        let covered = (0..Segment::ALL.len())
            .filter(|s| mixes.iter().any(|m| m[*s] > 0.0))
            .count();
        let coverage = covered as f64 / Segment::ALL.len() as f64;
        let online_factor = (share / v.virtual_saturation).min(1.0);
        Some((online_factor * distinct * ratio.min(1.0) * coverage).powf(0.25))
    }
}

/// Ties between places over what the configuration model on the places'
/// own ties gives (see [`super::virtual_integration::Interaction`]): `internal[p]`
/// ties inside place p, `between[p][q]` ties between p and q.
fn interaction(internal: &[u64], between: &[Vec<u64>]) -> f64 {
    let mut m = 0.0;
    let mut observed = 0.0;
    let mut squares = 0.0;
    for (p, row) in between.iter().enumerate() {
        let out: u64 = row.iter().sum();
        let d = (2 * internal[p] + out) as f64;
        squares += d * d;
        m += internal[p] as f64;
        observed += row[p + 1..].iter().sum::<u64>() as f64;
    }
    m += observed;
    if m == 0.0 {
        return 0.0;
    }
    let expected = (4.0 * m * m - squares) / (4.0 * m);
    if expected > 0.0 {
        observed / expected
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::stages::stage::Stage,
        synthetic::{three_cities, ThreeCities, THREE_CITIES},
        testing::{assess_all, detect_all, network},
    };

    fn cities(config: ThreeCities) -> Network {
        network(three_cities(&config))
    }

    #[test]
    fn three_single_site_clusters_in_three_cities_form_one_whole() {
        let network = cities(ThreeCities::default());
        let found = detect_all(&network, &GraphFilter::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        let whole = &found[0];
        let mut clusters: Vec<&str> = whole.clusters.iter().map(|c| &**c).collect();
        clusters.sort();
        let mut expected = THREE_CITIES.to_vec();
        expected.sort();
        assert_eq!(clusters, expected);
        assert_eq!(whole.parts.len(), 3);
        assert!(whole.holds());
        assert_eq!(whole.platforms[0].0, crate::synthetic::THREE_CITIES_PLATFORM.into());
        // Each cluster is at the third stage, through that whole.
        for a in assess_all(&network, &GraphFilter::default()) {
            assert_eq!(a.stage, Stage::VirtualIntegration, "{}", a.explanation());
            assert_eq!(a.pattern.as_ref().map(|p| &p.id), Some(&whole.id));
            assert_eq!(a.evidence.whole_relations.len(), 2, "{:?}", a.evidence.whole_relations);
            assert!(a
                .evidence
                .whole_relations
                .iter()
                .all(|r| r.ties > 0 && r.virtual_ties > 0));
        }
    }

    #[test]
    fn the_whole_is_found_and_named_alike_from_each_of_its_clusters() {
        let network = cities(ThreeCities::default());
        let all = detect_all(&network, &GraphFilter::default());
        for cluster in THREE_CITIES {
            let filter = GraphFilter {
                clusters: vec![cluster.into()],
                ..GraphFilter::default()
            };
            assert_eq!(detect_all(&network, &filter), all, "from {cluster}");
            let alone = assess_all(&network, &filter);
            assert_eq!(alone[0].pattern.as_ref(), all.first(), "from {cluster}");
        }
    }

    #[test]
    fn the_same_firms_as_one_cluster_of_three_sites_give_the_same_figures() {
        // The verdict depends on the network, not on where the user drew
        // the clusters' borders.
        let three = detect_all(&cities(ThreeCities::default()), &GraphFilter::default());
        let one = detect_all(
            &cities(ThreeCities {
                one_cluster: true,
                ..ThreeCities::default()
            }),
            &GraphFilter::default(),
        );
        assert_eq!((three.len(), one.len()), (1, 1));
        let (a, b) = (&three[0], &one[0]);
        assert_eq!(b.clusters, [crate::synthetic::THREE_CITIES_AS_ONE.into()]);
        assert_eq!(a.factors, b.factors);
        assert_eq!(a.interaction, b.interaction);
        assert_eq!(
            (a.joining_ties, a.virtual_joining_ties),
            (b.joining_ties, b.virtual_joining_ties)
        );
        assert_eq!(a.platforms, b.platforms);
        assert_eq!(a.specialisation.distinctness, b.specialisation.distinctness);
        // Both at the smallest p-value 999 reassignments can give.
        assert_eq!(a.specialisation.p_value, b.specialisation.p_value);
        assert_eq!(a.confidence, b.confidence);
    }

    #[test]
    fn two_ties_per_pair_are_no_whole() {
        let network = cities(ThreeCities {
            ties_per_pair: 2,
            ..ThreeCities::default()
        });
        assert!(detect_all(&network, &GraphFilter::default()).is_empty());
        for a in assess_all(&network, &GraphFilter::default()) {
            assert_ne!(a.stage, Stage::VirtualIntegration, "{}", a.explanation());
        }
    }

    #[test]
    fn one_segment_mix_for_all_three_is_no_whole() {
        let network = cities(ThreeCities {
            one_mix: true,
            ..ThreeCities::default()
        });
        assert!(detect_all(&network, &GraphFilter::default()).is_empty());
        for a in assess_all(&network, &GraphFilter::default()) {
            assert_ne!(a.stage, Stage::VirtualIntegration, "{}", a.explanation());
        }
    }

    /// `n` single-site clusters in a chain, each tied densely to the next,
    /// all drawing one segment mix, all tied to one national platform:
    /// every neighbouring pair is a candidate, so the chain is one component.
    fn chain(n: usize) -> Network {
        use crate::{
            model::{Actor, ActorKind, Change, Cluster, Link, Site},
            testing::{actor, cluster, link},
        };
        let mut changes = vec![Change::UpsertActor(Actor {
            kind: ActorKind::Platform,
            ..actor("national", &[])
        })];
        let member = |c: usize, i: usize| format!("c{c:03}-{i}");
        for c in 0..n {
            let id = format!("c{c:03}");
            changes.push(Change::UpsertCluster(Cluster {
                sites: vec![Site {
                    id: format!("{id}-site").into(),
                    name: id.clone(),
                    lat: 20.0 + 0.2 * c as f64,
                    lon: 110.0,
                }],
                ..cluster(&id)
            }));
            for i in 0..6 {
                changes.push(Change::UpsertActor(Actor {
                    segments: [Segment::ALL[i % 2], Segment::Sales].into_iter().collect(),
                    site_id: Some(format!("{id}-site").into()),
                    ..actor(&member(c, i), &[&id])
                }));
                changes.push(Change::UpsertLink(Link {
                    channel: Channel::Virtual,
                    ..link("national", &member(c, i), LinkKind::Platform)
                }));
                changes.push(Change::UpsertLink(link(
                    &member(c, i),
                    &member(c, (i + 1) % 6),
                    LinkKind::Supply,
                )));
                if c + 1 < n {
                    changes.push(Change::UpsertLink(link(
                        &member(c, i),
                        &member(c + 1, i),
                        LinkKind::Cooperation,
                    )));
                }
            }
        }
        network(changes)
    }

    #[test]
    fn clusters_no_platform_can_join_are_not_laid_out() {
        let joined = chain(40);
        let mut unjoined = joined.clone();
        let national = joined.ix_of("national").and_then(|ix| joined.actor(ix)).unwrap();
        let demoted = crate::model::Actor {
            kind: ActorKind::Firm,
            ..(**national).clone()
        };
        unjoined.apply(&[crate::model::Change::UpsertActor(demoted)]).unwrap();
        let (config, control, filter) = (StageConfig::default(), Control::none(), GraphFilter::default());
        let search = |network: &Network| {
            let ctx = StageContext {
                network,
                filter: &filter,
                config: &config,
                control: &control,
            };
            find(ctx, Some(&["c020".into()])).unwrap().cost
        };
        // Tied densely to both neighbours, but nothing joins them: only
        // the cluster asked about is laid out.
        let alone = search(&unjoined);
        assert_eq!((alone.clusters_laid_out, alone.places_read), (1, 1), "{alone:?}");
        // With the platform, its neighbours are.
        let along = search(&joined);
        assert!(along.clusters_laid_out >= 3, "{along:?}");
    }

    #[test]
    fn a_national_chain_of_alike_clusters_is_no_whole_and_the_search_stops_at_its_budget() {
        let network = chain(40);
        let config = StageConfig::default();
        let (control, filter) = (Control::none(), GraphFilter::default());
        let ctx = |config| StageContext {
            network: &network,
            filter: &filter,
            config,
            control: &control,
        };
        let all = find(ctx(&config), None).unwrap();
        assert!(
            all.patterns.is_empty(),
            "{:?}",
            all.patterns.iter().map(|p| &p.clusters).collect::<Vec<_>>()
        );
        assert!(all.cost.candidate_pairs >= 39, "{:?}", all.cost);
        assert!(!all.cost.bounded);
        let small = StageConfig {
            detection: crate::analysis::stages::stage_config::DetectionSettings {
                max_search_places: 10.0,
                ..config.detection.clone()
            },
            ..config.clone()
        };
        let bounded = find(ctx(&small), Some(&["c020".into()])).unwrap();
        assert!(bounded.cost.bounded, "{:?}", bounded.cost);
        assert!(bounded.cost.places_read <= 12, "{:?}", bounded.cost);
    }

    #[test]
    fn a_cancelled_search_stops() {
        let network = chain(10);
        let cancel = std::sync::atomic::AtomicBool::new(true);
        let control = Control::new(&cancel, &|_, _, _| {}, std::time::Duration::from_secs(1));
        let ctx = StageContext {
            network: &network,
            filter: &GraphFilter::default(),
            config: &StageConfig::default(),
            control: &control,
        };
        assert!(find(ctx, None).is_err());
    }

    #[test]
    fn the_interaction_of_two_places_by_hand() {
        // 100 ties inside each, 2 between: m = 202, d = 202 each, expected
        // between = (4·202² − 2·202²) / (4·202) = 101; 2 / 101.
        let r = interaction(&[100, 100], &[vec![0, 2], vec![2, 0]]);
        assert!((r - 2.0 / 101.0).abs() < 1e-12, "{r}");
    }
}
