//! Virtual-integration patterns (价值链虚拟整合), like the Changning creative
//! parks: places of one cluster, each specialised differently, joined by a
//! platform, interacting, and together serving final customers.
//!
//! A pattern is judged on its cluster's own network only: the members at its
//! places, their ties, and the actors at the other ends of those ties. No
//! figure depends on how many other actors or clusters the store holds.
//!
//! 1. Places are **joined** by a PLATFORM cluster link between two of the
//!    cluster's sites, or by a PLATFORM actor tied to at least
//!    `detection.min_platform_members` members at each. Places joined
//!    directly or through others are one candidate.
//! 2. Every necessary condition is a **gate** with a documented floor; a
//!    candidate is a pattern only when all hold and its confidence reaches
//!    `thresholds.virtual`:
//!    * *places*: two or more;
//!    * *joined*: every place joined to the others by a platform;
//!    * *virtual_share*: the share of the ties that hold the places together
//!      (ties between places, and the joining platforms' ties to members)
//!      that run over the VIRTUAL channel or are PLATFORM ties;
//!    * *place_interaction*: ties between places over what the configuration
//!      model on the places' own internal ties would give by chance (see
//!      [`Interaction`]);
//!    * *distinctness*: 1 − the mean cosine of the places' segment mixes;
//!    * *specialisation_p*: the share of random reassignments of the members
//!      to the places (sizes kept) that look at least as distinct, a
//!      permutation test (see [`Specialisation`]);
//!    * *coverage*: the share of the value chain the places perform together,
//!      0 unless it reaches final customers (SALES, CONSUMPTION or
//!      AFTER_SALES_SERVICE).
//! 3. Confidence is the geometric mean of four factors, each above its gate:
//!    virtual (the share over `virtual.virtual_saturation`, at most 1),
//!    distinctness, interaction (the ratio, at most 1) and coverage.
//!
//! AssessStage measures the same figures over all of a cluster's places:
//! a cluster is VIRTUAL_INTEGRATION exactly when one pattern covers all its
//! places, so the two RPCs cannot disagree.
//!
//! A physical corridor (TRANSPORT cluster links between the places, like
//! Metro Line 2) is reported as evidence; it strengthens the case in the
//! article but is not required.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::unionfind::UnionFind;
use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::analysis::{
    stages::measures::{distinctness, segment_mix, share, Gate},
    stages::places::{places, Place},
    stages::stage_config::StageConfig,
    stages::StageContext,
    Cancelled, Control,
};
use crate::{
    model::{ActorKind, Channel, ClusterLinkKey, ClusterLinkKind, Date, Id, LinkKind, Segment},
    network::{ties::Ties, Ix, Network},
};

/// Random reassignments in the specialisation test: with 999, the smallest
/// p-value is 1/1000, so the default floor of 0.001 asks that no
/// reassignment look as distinct as the real places.
pub const PERMUTATIONS: usize = 999;

/// One place of a pattern and what it specialises in.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub place: Id,
    pub cluster: Id,
    pub sites: Vec<Id>,
    pub members: u64,
    /// Segments by the share of the place's segment performances, largest first.
    pub segments: Vec<(Segment, f64)>,
    /// Industry codes by the share of members, largest first (five at most).
    pub industries: Vec<(String, f64)>,
}

/// How much the places tie to each other, against chance.
///
/// The null model is the configuration model on the places' internal ties
/// (between members at the places, platforms left out, since a platform's
/// ties are what joins the places, measured by `virtual_share`): each place
/// keeps its own tie volume d_p (the ends of internal ties at it), and ends
/// are paired at random. Then the ties expected between places are
/// Σ_{p<q} d_p·d_q / 2m = (4m² − Σ_p d_p²) / 4m for m internal ties, and
/// `ratio` = observed / expected: about 1 when the places tie to each other
/// as freely as if place did not matter (a well-mixed district), near 0 for
/// parks that keep to themselves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interaction {
    /// Ties between members at the places, platforms left out.
    pub internal_ties: u64,
    /// Of those, ties between two different places.
    pub between_places: u64,
    /// What the configuration model gives between places.
    pub expected_between_places: f64,
    /// between_places / expected_between_places (0 when nothing is expected).
    pub ratio: f64,
}

/// Whether the places are specialised beyond chance: the distinctness of
/// their segment mixes against the same members dealt to the places at
/// random, sizes kept ([`PERMUTATIONS`] times, seeded by the cluster and its
/// places, so the answer is reproducible).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Specialisation {
    /// 1 − the mean pairwise cosine of the places' segment mixes.
    pub distinctness: f64,
    /// The mean distinctness of the random reassignments.
    pub null_mean: f64,
    /// (1 + reassignments at least as distinct) / (1 + PERMUTATIONS).
    pub p_value: f64,
}

/// The four factors of a pattern's confidence, each in [0, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PatternFactors {
    pub virtual_share: f64,
    pub distinctness: f64,
    pub interaction: f64,
    pub coverage: f64,
}

impl PatternFactors {
    /// Their geometric mean: each one is necessary.
    pub fn confidence(&self) -> f64 {
        (self.virtual_share * self.distinctness * self.interaction * self.coverage).powf(0.25)
    }

    pub fn named(&self) -> [(&'static str, f64); 4] {
        [
            ("virtual", self.virtual_share),
            ("place_distinctness", self.distinctness),
            ("place_interaction", self.interaction),
            ("coverage", self.coverage),
        ]
    }
}

/// Places measured as a virtual whole: one cluster's (the Changning parks)
/// or places of several clusters (see [`super::wholes`]). A detected
/// pattern when [`Pattern::holds`]; AssessStage also measures clusters that
/// are not.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    /// The whole's id, from its parts alone (see [`whole_id`]): the same on
    /// every call and whatever order the data was stored in.
    pub id: Id,
    /// The clusters the parts belong to, by id.
    pub clusters: Vec<Id>,
    pub parts: Vec<Part>,
    /// Platform actors joining the parts, with the members at the parts they are tied to.
    pub platforms: Vec<(Id, u64)>,
    /// PLATFORM cluster links between the parts (source, target).
    pub platform_links: Vec<(Id, Id)>,
    /// TRANSPORT cluster links between the parts: the physical corridor.
    pub corridors: Vec<(Id, Id)>,
    /// Ties between the parts and the joining platforms' ties to members.
    pub joining_ties: u64,
    /// Of those, VIRTUAL-channel or PLATFORM ties.
    pub virtual_joining_ties: u64,
    pub interaction: Interaction,
    pub specialisation: Specialisation,
    pub segments_covered: Vec<Segment>,
    pub reaches_final_customers: bool,
    pub factors: PatternFactors,
    pub confidence: f64,
    /// `thresholds.virtual`.
    pub threshold: f64,
    pub gates: Vec<Gate>,
}

impl Pattern {
    /// Every gate met and the confidence at its threshold.
    pub fn holds(&self) -> bool {
        self.gates.iter().all(|g| g.met) && self.confidence >= self.threshold
    }

    /// The one cluster whose places these are; None for a whole across clusters.
    pub fn single_cluster(&self) -> Option<&Id> {
        match self.clusters.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Whether one of the parts is a place of `cluster`.
    pub fn spans(&self, cluster: &Id) -> bool {
        self.clusters.binary_search(cluster).is_ok()
    }
}

/// A whole's id: "W" and 16 hex digits of FNV-1a over its parts' (cluster,
/// place) pairs in order, so it names the same parts on every call.
pub fn whole_id<'a>(parts: impl IntoIterator<Item = (&'a Id, &'a Id)>) -> Id {
    let mut keys: Vec<(&Id, &Id)> = parts.into_iter().collect();
    keys.sort();
    let mut hash = Fnv::new();
    for (cluster, place) in keys {
        hash.write(cluster.as_bytes());
        hash.write(place.as_bytes());
    }
    Id::from(format!("W{:016x}", hash.0))
}

/// FNV-1a, each written string ended by a zero byte: a hash of the data
/// alone, the same on every platform and run.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes.iter().chain(&[0u8]) {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

const FINAL_CUSTOMER_SEGMENTS: [Segment; 3] = [Segment::Sales, Segment::Consumption, Segment::AfterSalesService];

/// [`detect`], reading the members' links from `ties` when given (the alert
/// engine reads each cluster's once for all its figures).
pub fn detect_with(ctx: StageContext, ties: Option<&Ties>) -> Result<Vec<Pattern>, Cancelled> {
    let (network, filter) = (ctx.network, ctx.filter);
    let clusters: Vec<&Id> = if filter.clusters.is_empty() {
        network.clusters.keys().collect()
    } else {
        filter.clusters.iter().collect()
    };
    let found: Vec<Vec<Pattern>> = clusters
        .par_iter()
        .map(|cluster| {
            ctx.control.check()?;
            // Unread, a cluster whose places are not joined walks its
            // members' link keys once, as before there were ties to read.
            let unread = Ties::none(network);
            let ties = ties.unwrap_or(&unread);
            PlaceSet::of_cluster(ctx, cluster, ties).patterns(ctx, ties)
        })
        .collect::<Result<_, Cancelled>>()?;
    let mut patterns: Vec<Pattern> = found.into_iter().flatten().collect();
    most_confident_first(&mut patterns);
    Ok(patterns)
}

pub(super) fn most_confident_first(patterns: &mut [Pattern]) {
    patterns.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.parts[0].place.cmp(&b.parts[0].place))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// All of a cluster's places (those with members the filter keeps) measured
/// as one whole, whether or not it holds; None when no member is at a place.
pub fn measure_cluster(ctx: StageContext, cluster: &Id) -> Result<Option<Pattern>, Cancelled> {
    let ties = Ties::read(ctx.network, ctx.network.member_indexes(cluster));
    measure_cluster_with(ctx, cluster, &ties)
}

/// [`measure_cluster`] reading the members' links from `ties`.
pub fn measure_cluster_with(ctx: StageContext, cluster: &Id, ties: &Ties) -> Result<Option<Pattern>, Cancelled> {
    PlaceSet::of_cluster(ctx, cluster, ties).measure_whole(ctx, ties)
}

/// [`measure_cluster_with`] and the patterns [`detect_with`] finds in the
/// one cluster, from one reading of its places (the alert engine wants both
/// for every cluster it recomputes; the places were a fifth of its work).
pub fn measure_and_detect_with(
    ctx: StageContext,
    cluster: &Id,
    ties: &Ties,
) -> Result<(Option<Pattern>, Vec<Pattern>), Cancelled> {
    let layout = PlaceSet::of_cluster(ctx, cluster, ties);
    let whole = layout.measure_whole(ctx, ties)?;
    let mut patterns = layout.patterns(ctx, ties)?;
    most_confident_first(&mut patterns);
    Ok((whole, patterns))
}

/// Cluster links between two places: (source, target, place, place).
type PlaceLinks = Vec<(Id, Id, usize, usize)>;

/// Places, one cluster's or several, and what joins them.
pub(super) struct PlaceSet {
    /// The clusters of the places, by id.
    clusters: Vec<Id>,
    /// Places with at least one member the filter keeps: one cluster's in
    /// its site order, or several clusters' by (cluster, place).
    places: Vec<Place>,
    place_of: HashMap<Ix, usize>,
    /// Platform actors joining two places or more: the places, with the members tied at each.
    platform_reach: BTreeMap<Ix, BTreeMap<usize, u64>>,
    /// PLATFORM cluster links between two places.
    platform_links: PlaceLinks,
    corridors: PlaceLinks,
}

/// What one walk over a whole's members' ties counts.
#[derive(Default)]
struct TieWalk {
    interaction: Interaction,
    /// Ties between the parts and the joining platforms' ties to members.
    joining_ties: u64,
    virtual_joining_ties: u64,
}

/// The figures a whole's gates test.
struct GateFigures {
    places: usize,
    joined_share: f64,
    virtual_share: f64,
    interaction: f64,
    distinctness: f64,
    specialisation_p: f64,
    coverage: f64,
}

impl PlaceSet {
    /// Every place measured as one whole; None when no member is at a place.
    pub(super) fn measure_whole(&self, ctx: StageContext, ties: &Ties) -> Result<Option<Pattern>, Cancelled> {
        if self.places.is_empty() {
            return Ok(None);
        }
        let all: Vec<usize> = (0..self.places.len()).collect();
        self.measure(ctx, &all, ties).map(Some)
    }

    /// The groups of two places or more that are joined and hold as a pattern.
    fn patterns(&self, ctx: StageContext, ties: &Ties) -> Result<Vec<Pattern>, Cancelled> {
        let mut found = Vec::new();
        for group in self.joined_groups().into_iter().filter(|group| group.len() >= 2) {
            let pattern = self.measure(ctx, &group, ties)?;
            if pattern.holds() {
                found.push(pattern);
            }
        }
        Ok(found)
    }

    fn of_cluster(ctx: StageContext, cluster: &Id, ties: &Ties) -> PlaceSet {
        let own = ctx.filter.for_cluster(cluster);
        let places = places(ctx.network, &own, ctx.config.places.colocation_km);
        PlaceSet::new(ctx, places, ties)
    }

    /// Places of several clusters, as one set. A member of two clusters
    /// whose places are both in the set is at the first of them in
    /// (cluster, place) order, so every member counts once.
    pub(super) fn of_places(ctx: StageContext, mut places: Vec<Place>, ties: &Ties) -> PlaceSet {
        places.sort_by(|a, b| (&a.cluster, &a.id).cmp(&(&b.cluster, &b.id)));
        PlaceSet::new(ctx, places, ties)
    }

    fn new(ctx: StageContext, mut places: Vec<Place>, ties: &Ties) -> PlaceSet {
        places.retain(|p| !p.members.is_empty());
        let mut clusters: Vec<Id> = places.iter().map(|p| p.cluster.clone()).collect();
        clusters.sort();
        clusters.dedup();
        let mut place_of: HashMap<Ix, usize> = HashMap::new();
        for (p, place) in places.iter().enumerate() {
            for &ix in &place.members {
                place_of.entry(ix).or_insert(p);
            }
        }
        let (platform_links, corridors) = cluster_links_between(ctx.network, &places, clusters.len() > 1);
        let platform_reach = platform_reach(ctx, &place_of, ties);
        PlaceSet {
            clusters,
            places,
            place_of,
            platform_reach,
            platform_links,
            corridors,
        }
    }

    /// The places joined by platforms, as groups (singletons included).
    fn joined_groups(&self) -> Vec<Vec<usize>> {
        let mut joins: UnionFind<usize> = UnionFind::new(self.places.len());
        for (_, _, a, b) in &self.platform_links {
            joins.union(*a, *b);
        }
        for joined in self.platform_reach.values() {
            let parts: Vec<usize> = joined.keys().copied().collect();
            for pair in parts.windows(2) {
                joins.union(pair[0], pair[1]);
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for p in 0..self.places.len() {
            groups.entry(joins.find_mut(p)).or_default().push(p);
        }
        groups.into_values().collect()
    }

    /// The figures and gates of a set of the places as one whole.
    fn measure(&self, ctx: StageContext, set: &[usize], ties: &Ties) -> Result<Pattern, Cancelled> {
        let (network, filter, config) = (ctx.network, ctx.filter, ctx.config);
        let in_set = |p: usize| set.contains(&p);
        let joining = self.joining_platforms(set);
        let links_between = |links: &[(Id, Id, usize, usize)]| -> Vec<(Id, Id)> {
            links
                .iter()
                .filter(|(_, _, a, b)| in_set(*a) && in_set(*b))
                .map(|(s, t, _, _)| (s.clone(), t.clone()))
                .collect()
        };
        let members: Vec<(Ix, usize)> = self
            .place_of
            .iter()
            .filter_map(|(&ix, &p)| set.iter().position(|q| *q == p).map(|l| (ix, l)))
            .collect();
        let walk = walk_ties(ctx, &members, set.len(), &joining, ties);
        let parts: Vec<&Place> = set.iter().map(|p| &self.places[*p]).collect();
        let (specialisation, mixes) = self.specialisation(ctx, &parts, &members)?;
        let (segments_covered, reaches_final_customers, coverage) = coverage(&mixes);
        let share = share(walk.virtual_joining_ties, walk.joining_ties);
        let factors = PatternFactors {
            virtual_share: (share / config.virtual_integration.virtual_saturation).min(1.0),
            distinctness: specialisation.distinctness,
            interaction: walk.interaction.ratio.min(1.0),
            coverage,
        };
        let joined_places = self
            .joined_groups()
            .iter()
            .map(|g| g.iter().filter(|p| in_set(**p)).count())
            .filter(|n| *n >= 2)
            .max()
            .unwrap_or(0);
        let gates = gates(
            &GateFigures {
                places: set.len(),
                joined_share: if set.len() < 2 {
                    0.0
                } else {
                    joined_places as f64 / set.len() as f64
                },
                virtual_share: share,
                interaction: walk.interaction.ratio,
                distinctness: specialisation.distinctness,
                specialisation_p: specialisation.p_value,
                coverage,
            },
            config,
        );
        // By id: an actor's index depends on when it was stored.
        let mut platforms: Vec<(Id, u64)> = joining
            .iter()
            .filter_map(|(ix, tied)| network.actor(*ix).map(|a| (a.id.clone(), *tied)))
            .collect();
        platforms.sort();
        let mut clusters: Vec<Id> = parts.iter().map(|p| p.cluster.clone()).collect();
        clusters.dedup();
        Ok(Pattern {
            id: whole_id(parts.iter().map(|p| (&p.cluster, &p.id))),
            clusters,
            parts: parts
                .iter()
                .zip(&mixes)
                .map(|(place, mix)| describe(network, place, mix, filter.as_of))
                .collect(),
            platforms,
            platform_links: links_between(&self.platform_links),
            corridors: links_between(&self.corridors),
            joining_ties: walk.joining_ties,
            virtual_joining_ties: walk.virtual_joining_ties,
            interaction: walk.interaction,
            specialisation,
            segments_covered,
            reaches_final_customers,
            confidence: factors.confidence(),
            factors,
            threshold: config.thresholds.virtual_integration,
            gates,
        })
    }

    /// Platforms join the set when tied to enough members at two of its
    /// places: each with the members it is tied to there.
    fn joining_platforms(&self, set: &[usize]) -> BTreeMap<Ix, u64> {
        self.platform_reach
            .iter()
            .filter_map(|(ix, joined)| {
                let here: Vec<u64> = joined
                    .iter()
                    .filter(|(p, _)| set.contains(p))
                    .map(|(_, n)| *n)
                    .collect();
                (here.len() >= 2).then(|| (*ix, here.iter().sum()))
            })
            .collect()
    }

    /// The places' segment mixes and the permutation test of their
    /// distinctness. `members` are (member, index in the set).
    fn specialisation(
        &self,
        ctx: StageContext,
        parts: &[&Place],
        members: &[(Ix, usize)],
    ) -> Result<(Specialisation, Vec<[f64; 8]>), Cancelled> {
        let network = ctx.network;
        let mut ordered: Vec<(&Id, usize, [f64; 8])> = members
            .iter()
            .filter_map(|&(ix, l)| {
                let actor = network.actor(ix)?;
                Some((
                    &actor.id,
                    l,
                    segment_mix(network, std::iter::once(ix), ctx.filter.as_of),
                ))
            })
            .collect();
        ordered.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let specialisation = specialisation_test(&self.clusters, parts, &ordered, ctx.control)?;
        let mixes = mixes_of(parts.len(), ordered.iter().map(|(_, l, mix)| (*l, mix)));
        Ok((specialisation, mixes))
    }
}

/// The segments the places perform together, whether they reach final
/// customers, and the coverage: the share of the chain covered, 0 unless
/// it reaches final customers.
fn coverage(mixes: &[[f64; 8]]) -> (Vec<Segment>, bool, f64) {
    let covered: Vec<Segment> = Segment::ALL
        .iter()
        .copied()
        .filter(|s| mixes.iter().any(|m| m[*s as usize] > 0.0))
        .collect();
    let reaches = FINAL_CUSTOMER_SEGMENTS.iter().any(|s| covered.contains(s));
    let coverage = if reaches {
        covered.len() as f64 / Segment::ALL.len() as f64
    } else {
        0.0
    };
    (covered, reaches, coverage)
}

/// One walk over the members' links (`members`: member, index of its
/// place in the set): internal ties by place, and the ties that join the
/// places (between places, and the joining platforms' ties to members).
fn walk_ties(
    ctx: StageContext,
    members: &[(Ix, usize)],
    places: usize,
    joining: &BTreeMap<Ix, u64>,
    ties: &Ties,
) -> TieWalk {
    let (network, filter) = (ctx.network, ctx.filter);
    let mut volume = vec![0u64; places];
    let mut walk = TieWalk::default();
    let member_at: HashMap<Ix, usize> = members.iter().copied().collect();
    for &(me, my_place) in members {
        let Some(mine) = filter.actor(network, me) else {
            continue;
        };
        for (key, data, partner) in ties.partners(me) {
            let other = if key.source == me { key.target } else { key.source };
            if other == me || (member_at.contains_key(&other) && other < me) {
                continue; // a tie between two members is taken once, from its lower end
            }
            if !filter.keeps_link(key.kind, data) {
                continue;
            }
            let Some(theirs) = partner.filter(|a| filter.keeps_actor(a)) else {
                continue;
            };
            let is_virtual = data.channel == Channel::Virtual || key.kind == LinkKind::Platform;
            let platform_end = mine.kind == ActorKind::Platform || theirs.kind == ActorKind::Platform;
            if platform_end {
                let joiner = if mine.kind == ActorKind::Platform { me } else { other };
                if joining.contains_key(&joiner) {
                    walk.joining_ties += 1;
                    walk.virtual_joining_ties += u64::from(is_virtual);
                }
                continue;
            }
            let Some(&their_place) = member_at.get(&other) else {
                continue;
            };
            walk.interaction.internal_ties += 1;
            volume[my_place] += 1;
            volume[their_place] += 1;
            if my_place != their_place {
                walk.interaction.between_places += 1;
                walk.joining_ties += 1;
                walk.virtual_joining_ties += u64::from(is_virtual);
            }
        }
    }
    let m = walk.interaction.internal_ties as f64;
    if m > 0.0 {
        let squares: f64 = volume.iter().map(|d| (*d as f64).powi(2)).sum();
        walk.interaction.expected_between_places = (4.0 * m * m - squares) / (4.0 * m);
    }
    if walk.interaction.expected_between_places > 0.0 {
        walk.interaction.ratio = walk.interaction.between_places as f64 / walk.interaction.expected_between_places;
    }
    walk
}

/// The seven gates of a whole; with one place only the first, since the
/// others have nothing to measure.
fn gates(f: &GateFigures, config: &StageConfig) -> Vec<Gate> {
    let v = &config.virtual_integration;
    let places = Gate::at_least(
        "places",
        f.places as f64,
        2.0,
        "separate places, sites further apart than places.colocation_km",
    );
    if f.places < 2 {
        return vec![places];
    }
    vec![
        places,
        Gate::at_least(
            "joined",
            f.joined_share,
            1.0,
            "share of the places in the largest group joined by a platform actor or PLATFORM links",
        ),
        Gate::at_least(
            "virtual_share",
            f.virtual_share,
            v.min_virtual_share,
            "online (VIRTUAL or PLATFORM) share of the ties joining the places",
        ),
        Gate::at_least(
            "place_interaction",
            f.interaction,
            v.min_interaction,
            "ties between places over what the configuration model on the places' own ties gives",
        ),
        Gate::at_least(
            "place_distinctness",
            f.distinctness,
            v.min_distinctness,
            "1 - mean cosine of the places' segment mixes",
        ),
        Gate::at_most(
            "specialisation_p",
            f.specialisation_p,
            v.max_specialisation_p,
            "share of random reassignments of the members to the places that are as distinct",
        ),
        Gate::at_least(
            "coverage",
            f.coverage,
            v.min_coverage,
            "share of the value chain the places perform together, 0 without final customers",
        ),
    ]
}

/// PLATFORM and TRANSPORT cluster links between two of the places:
/// (source, target, place, place). `across`: the places are of several
/// clusters, so links between two clusters by id count too.
fn cluster_links_between(network: &Network, places: &[Place], across: bool) -> (PlaceLinks, PlaceLinks) {
    let mut place_of_site: HashMap<&Id, usize> = places
        .iter()
        .enumerate()
        .flat_map(|(p, place)| place.sites.iter().map(move |s| (s, p)))
        .collect();
    // Across clusters a PLATFORM link may join two clusters by id (each
    // of one place, as the three cities): it stands for their first
    // places. One cluster's places are joined by links between its
    // sites only, as they always were.
    let mut ends: Vec<&Id> = places.iter().flat_map(|p| p.sites.iter()).collect();
    if across {
        for (p, place) in places.iter().enumerate() {
            if !place_of_site.contains_key(&place.cluster) {
                place_of_site.insert(&place.cluster, p);
                ends.push(&place.cluster);
            }
        }
    }
    let (mut platform_links, mut corridors) = (Vec::new(), Vec::new());
    // Links between two of the cluster's sites: TRANSPORT and PLATFORM
    // are undirected, stored from their lower end, so each is found in
    // the key range of one of its sites (not by scanning every link).
    let from_sites = ends.into_iter().flat_map(|site| {
        let start = ClusterLinkKey {
            source: site.clone(),
            target: Id::from(""),
            kind: ClusterLinkKind::Transport,
        };
        network
            .cluster_links
            .range(start..)
            .take_while(move |(key, _)| key.source == *site)
            .map(|(_, link)| link)
    });
    for link in from_sites {
        let (Some(&a), Some(&b)) = (place_of_site.get(&link.source), place_of_site.get(&link.target)) else {
            continue;
        };
        let cluster_end = |end: &Id| places.iter().any(|p| p.cluster == *end);
        let by_cluster = cluster_end(&link.source) || cluster_end(&link.target);
        if a == b || (by_cluster && places[a].cluster == places[b].cluster) {
            continue;
        }
        let entry = (link.source.clone(), link.target.clone(), a, b);
        match link.kind {
            ClusterLinkKind::Platform => platform_links.push(entry),
            ClusterLinkKind::Transport => corridors.push(entry),
            _ => {}
        }
    }
    (platform_links, corridors)
}

/// Platform actors among the members and their partners, tied to at least
/// `detection.min_platform_members` members at each of two places or more:
/// the places, with the members tied at each.
fn platform_reach(ctx: StageContext, place_of: &HashMap<Ix, usize>, ties: &Ties) -> BTreeMap<Ix, BTreeMap<usize, u64>> {
    let (network, filter, config) = (ctx.network, ctx.filter, ctx.config);
    // Platform actors among the members and their partners, with the
    // members they are tied to at each place.
    let mut tied: BTreeMap<Ix, BTreeMap<usize, BTreeSet<Ix>>> = BTreeMap::new();
    for (&member, &p) in place_of {
        for (key, partner) in ties.keys_and_partners(member) {
            let other = if key.source == member { key.target } else { key.source };
            // Most partners are not platforms: the link's data is read
            // for those that are.
            let is_platform =
                other != member && partner.is_some_and(|a| filter.keeps_actor(a) && a.kind == ActorKind::Platform);
            if is_platform && network.links.get(&key).is_some_and(|d| filter.keeps_link(key.kind, d)) {
                tied.entry(other).or_default().entry(p).or_default().insert(member);
            }
        }
    }
    tied.into_iter()
        .filter_map(|(ix, at)| {
            let joined: BTreeMap<usize, u64> = at
                .into_iter()
                .map(|(p, members)| (p, members.len() as u64))
                .filter(|(_, n)| *n as f64 >= config.detection.min_platform_members)
                .collect();
            (joined.len() >= 2).then_some((ix, joined))
        })
        .collect()
}

/// The segment mix of each of `places` places from (place, member mix) pairs.
fn mixes_of<'a>(places: usize, members: impl Iterator<Item = (usize, &'a [f64; 8])>) -> Vec<[f64; 8]> {
    let mut mixes = vec![[0.0; 8]; places];
    for (p, mix) in members {
        for (m, x) in mixes[p].iter_mut().zip(mix) {
            *m += x;
        }
    }
    mixes
}

/// The permutation test of the places' distinctness. `members` are sorted
/// by id, so the test does not depend on the order actors were stored in.
fn specialisation_test(
    clusters: &[Id],
    parts: &[&Place],
    members: &[(&Id, usize, [f64; 8])],
    control: &Control,
) -> Result<Specialisation, Cancelled> {
    let observed = distinctness(&mixes_of(parts.len(), members.iter().map(|(_, l, m)| (*l, m))));
    if parts.len() < 2 {
        return Ok(Specialisation {
            distinctness: observed,
            null_mean: observed,
            p_value: 1.0,
        });
    }
    // FNV-1a over the cluster and place ids: a seed of the data alone.
    // One cluster's places hash as they always did; across clusters each
    // place with its cluster.
    let mut seed = Fnv::new();
    match clusters {
        [one] => {
            seed.write(one.as_bytes());
            parts.iter().for_each(|p| seed.write(p.id.as_bytes()));
        }
        _ => parts.iter().for_each(|p| {
            seed.write(p.cluster.as_bytes());
            seed.write(p.id.as_bytes());
        }),
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed.0);
    let mut labels: Vec<usize> = members.iter().map(|(_, l, _)| *l).collect();
    let (mut as_distinct, mut sum) = (0usize, 0.0);
    let mut mixes = vec![[0.0; 8]; parts.len()];
    for round in 0..PERMUTATIONS {
        // A cluster of a million members takes seconds: the call's deadline
        // and cancellation are honoured within it.
        if round % 64 == 0 {
            control.check()?;
        }
        labels.shuffle(&mut rng);
        // The mixes are refilled in place: this loop is most of a cluster's cost.
        mixes.iter_mut().for_each(|m| *m = [0.0; 8]);
        for (l, (_, _, mix)) in labels.iter().zip(members) {
            for (m, x) in mixes[*l].iter_mut().zip(mix) {
                *m += x;
            }
        }
        let d = distinctness(&mixes);
        sum += d;
        // A tolerance for sums of the same terms in another order.
        if d >= observed - 1e-12 {
            as_distinct += 1;
        }
    }
    Ok(Specialisation {
        distinctness: observed,
        null_mean: sum / PERMUTATIONS as f64,
        p_value: (1 + as_distinct) as f64 / (1 + PERMUTATIONS) as f64,
    })
}

/// A place's specialisation: its segment and industry shares.
fn describe(network: &Network, place: &Place, mix: &[f64; 8], as_of: Option<Date>) -> Part {
    let total: f64 = mix.iter().sum();
    let mut segments: Vec<(Segment, f64)> = Segment::ALL
        .iter()
        .filter(|s| mix[**s as usize] > 0.0)
        .map(|s| (*s, mix[*s as usize] / total))
        .collect();
    segments.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut industries: HashMap<&str, f64> = HashMap::new();
    let actors: Vec<_> = place.members.iter().filter_map(|m| network.actor(*m)).collect();
    for actor in &actors {
        let industry = network.attributes_at(actor, as_of).industry;
        if !industry.is_empty() {
            *industries.entry(industry).or_default() += 1.0;
        }
    }
    let mut industries: Vec<(String, f64)> = industries
        .into_iter()
        .map(|(code, n)| (code.to_string(), n / actors.len().max(1) as f64))
        .collect();
    industries.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    industries.truncate(5);
    Part {
        place: place.id.clone(),
        cluster: place.cluster.clone(),
        sites: place.sites.clone(),
        members: place.members.len() as u64,
        segments,
        industries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        demo,
        graph::GraphFilter,
        testing::{detect_all, network},
    };

    use crate::{
        analysis::stages::stage_config::StageConfig,
        model::{Actor, Change, Cluster, Link, Site},
        testing::{actor, cluster, link},
    };

    /// Cluster K at two sites 95 km apart: designers e1 and e2 in the east,
    /// sellers w1 and w2 in the west, a cooperation tie inside each place and
    /// one between them (over `between`), and platform P (in no cluster)
    /// tied to all four when `platform` is set.
    fn two_parks(between: Channel, platform: bool) -> Vec<Change> {
        let site = |id: &str, lon: f64| Site {
            id: id.into(),
            name: id.into(),
            lat: 31.0,
            lon,
        };
        let member = |id: &str, site: &str, segment: Segment| {
            Change::UpsertActor(Actor {
                segments: [segment].into_iter().collect(),
                site_id: Some(site.into()),
                ..actor(id, &["K"])
            })
        };
        let tie = |a: &str, b: &str, channel| {
            Change::UpsertLink(Link {
                channel,
                ..link(a, b, LinkKind::Cooperation)
            })
        };
        let mut changes = vec![
            Change::UpsertCluster(Cluster {
                sites: vec![site("east", 121.0), site("west", 122.0)],
                ..cluster("K")
            }),
            member("e1", "east", Segment::Design),
            member("e2", "east", Segment::Design),
            member("w1", "west", Segment::Sales),
            member("w2", "west", Segment::Sales),
            tie("e1", "e2", Channel::Physical),
            tie("w1", "w2", Channel::Physical),
            tie("e1", "w1", between),
        ];
        if platform {
            changes.push(Change::UpsertActor(Actor {
                kind: ActorKind::Platform,
                ..actor("P", &[])
            }));
            for m in ["e1", "e2", "w1", "w2"] {
                changes.push(Change::UpsertLink(link("P", m, LinkKind::Platform)));
            }
        }
        changes
    }

    fn measured(changes: Vec<Change>) -> Pattern {
        let network = network(changes);
        measure_cluster(
            StageContext {
                network: &network,
                filter: &GraphFilter::default(),
                config: &StageConfig::default(),
                control: &Control::none(),
            },
            &"K".into(),
        )
        .unwrap()
        .expect("K has members at places")
    }

    fn gate<'p>(pattern: &'p Pattern, name: &str) -> &'p Gate {
        pattern.gates.iter().find(|g| g.name == name).unwrap()
    }

    #[test]
    fn each_virtual_factor_on_five_actors_by_hand() {
        let p = measured(two_parks(Channel::Virtual, true));
        // Joining ties: e1-w1 and P's four, all online: share 1, saturated.
        assert_eq!((p.joining_ties, p.virtual_joining_ties), (5, 5));
        assert_eq!(p.factors.virtual_share, 1.0);
        assert_eq!(p.platforms, [("P".into(), 4)]);
        // Member ties m = 3 (platform left out), place volumes 3 and 3:
        // expected between = (4·9 − 18) / 12 = 1.5; one tie between: 2/3.
        assert_eq!(p.interaction.internal_ties, 3);
        assert_eq!(p.interaction.between_places, 1);
        assert!((p.interaction.expected_between_places - 1.5).abs() < 1e-12);
        assert!((p.factors.interaction - 2.0 / 3.0).abs() < 1e-12);
        // Design against Sales: cosine 0, distinctness 1.
        assert_eq!(p.factors.distinctness, 1.0);
        // Design and Sales of eight segments; Sales reaches final customers.
        assert!(p.reaches_final_customers);
        assert_eq!(p.factors.coverage, 0.25);
        assert!((p.confidence - (2.0f64 / 3.0 * 0.25).powf(0.25)).abs() < 1e-12);
        // A near miss: four members cannot show specialisation beyond chance
        // (a third of the ways to deal them out are as distinct), and two
        // segments are not half the chain. No pattern.
        assert!(p.specialisation.p_value > 0.2, "{:?}", p.specialisation);
        assert!(!gate(&p, "specialisation_p").met && !gate(&p, "coverage").met);
        assert!(gate(&p, "joined").met && gate(&p, "virtual_share").met && gate(&p, "place_interaction").met);
        assert!(!p.holds());
        assert!(detect_all(&network(two_parks(Channel::Virtual, true)), &GraphFilter::default()).is_empty());
    }

    #[test]
    fn places_tied_only_physically_and_joined_by_nothing_score_no_virtual_share() {
        let p = measured(two_parks(Channel::Physical, false));
        assert_eq!((p.joining_ties, p.virtual_joining_ties), (1, 0));
        assert_eq!(p.factors.virtual_share, 0.0);
        assert_eq!(p.confidence, 0.0, "a geometric mean: every factor is needed");
        assert!(!gate(&p, "joined").met && !gate(&p, "virtual_share").met);
        // The other factors do not depend on the channel.
        assert!((p.factors.interaction - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(p.factors.distinctness, 1.0);
    }

    #[test]
    fn the_three_changning_parks_are_one_pattern_on_the_demo() {
        let network = network(demo::demo_changes());
        let patterns = detect_all(&network, &GraphFilter::default());
        assert_eq!(patterns.len(), 1, "{patterns:#?}");
        let places: Vec<&str> = patterns[0].parts.iter().map(|p| &*p.place).collect();
        assert_eq!(places, demo::CHANGNING_SITES);
        assert_eq!(patterns[0].platforms[0].0, demo::CHANGNING_PLATFORM.into());
        assert_eq!(patterns[0].corridors.len(), 2);
    }
}
