//! Which of the article's three stages (三步走) a cluster is in, with the
//! evidence for each. Every factor is a figure in [0, 1] computed from the
//! network; each stage's score combines its factors; `docs/stages.md` gives
//! the formulas and the reasons for the defaults (`StageConfig`).
//!
//! * REGIONAL_INTEGRATION (区域一体化整合): ties stay inside, the chain is
//!   fairly complete there, firms specialise (vertical disintegration), ties
//!   are local, often around a core firm (hub and spoke). A weighted mean;
//!   the stage also needs `min_completeness` of the chain inside.
//! * GLOBAL_VALUE_CHAIN (价值链全球整合): many ties abroad, foreign capital,
//!   and weight on the high-value segments of the smile curve. A weighted mean.
//! * VIRTUAL_INTEGRATION (价值链虚拟整合): separate places, each specialised
//!   differently, interacting well above what their sizes give, joined by
//!   virtual ties; plus the four relations with other clusters (overlap,
//!   substitution, crossing, fusion). The first three are all needed, so they
//!   are combined by a geometric mean: (1 − r) · ∛(virtual · distinctness ·
//!   interaction) + r · relations.
//!
//! The verdict is the most advanced stage whose score reaches its threshold
//! (the stages are steps: a cluster in a later one keeps much of the earlier
//! ones, as Changning keeps its local ties), or UNCLASSIFIED.

use rayon::prelude::*;
// FxHash: assess hashes every actor index and industry code of the network.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::analysis::{
    relations::fusion::IndustryLevel,
    stages::core_firms::cores_of,
    stages::measures::{cosine, share, sparse_cosine, Gate},
    stages::stage_config::StageConfig,
    stages::virtual_integration::{measure_and_detect_with, measure_cluster_with, Pattern},
    stages::wholes::{self, Wholes},
    stages::StageContext,
    Cancelled,
};
use crate::{
    geo::{home_country, HomeCountry},
    graph::GraphFilter,
    model::{Actor, ActorKind, Channel, Id, LinkKind, Segment},
    network::{ties::Ties, Attributes, EdgeKey, Ix, LinkData, Network},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Stage {
    Unclassified,
    RegionalIntegration,
    GlobalValueChain,
    VirtualIntegration,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Unclassified => "UNCLASSIFIED",
            Stage::RegionalIntegration => "REGIONAL_INTEGRATION",
            Stage::GlobalValueChain => "GLOBAL_VALUE_CHAIN",
            Stage::VirtualIntegration => "VIRTUAL_INTEGRATION",
        }
    }
}

/// The closest other cluster by one relation, among the clusters the
/// cluster is tied to (through its partners or members it shares).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Relation {
    pub value: f64,
    pub with: Option<Id>,
}

/// The figures behind the factors, as counted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    pub members: u64,
    pub enterprises: u64,
    /// Where the cluster is: its own country, else the one all its sites
    /// lie in, else unknown with the reason.
    pub home: HomeCountry,
    /// Links with an end in the cluster.
    pub ties: u64,
    pub internal_ties: u64,
    /// Ties to actors outside the cluster in the home country.
    pub domestic_external_ties: u64,
    /// Of those, ties to members of clusters in another region (the
    /// clusters' `region` differs); the rest are in the same region or to
    /// actors in no cluster.
    pub other_region_ties: u64,
    /// Ties to actors in another country.
    pub foreign_ties: u64,
    /// Ties to outside actors of unknown country, or of any country when the
    /// cluster's own is unknown: neither domestic nor foreign.
    pub unknown_country_ties: u64,
    /// Ties over the VIRTUAL channel or of kind PLATFORM.
    pub virtual_ties: u64,
    /// Value-chain segments performed inside the cluster.
    pub segments_covered: Vec<Segment>,
    /// Mean segments per enterprise (with any).
    pub segments_per_enterprise: f64,
    /// Mean smile-curve value over the segments members perform.
    pub mean_segment_value: f64,
    /// Enterprises with a foreign investor or owner.
    pub foreign_capital_enterprises: u64,
    /// The core firm with most reach (see `core_firms`), and the best reach
    /// of any member not supplied by a core.
    pub core_firm: Option<Id>,
    pub core_reach: f64,
    pub places: Vec<Id>,
    /// Internal ties between members at different places (platforms left out).
    pub cross_place_ties: u64,
    /// What the configuration model on the places' own ties gives between places.
    pub expected_cross_place_ties: f64,
    /// cross_place_ties / expected_cross_place_ties.
    pub place_interaction: f64,
    /// 1 − mean cosine of the places' segment mixes (0 with one place).
    pub place_distinctness: f64,
    /// The permutation test's p-value for that distinctness.
    pub specialisation_p: f64,
    /// Platform actors tied to members.
    pub platforms: Vec<Id>,
    /// TRANSPORT cluster links between the cluster's places.
    pub corridors: u64,
    /// The relations with other clusters the cluster is tied to: evidence of
    /// the third stage, not part of any score (a verdict must not move with
    /// clusters outside the cluster's own network).
    pub overlap: Relation,
    pub substitution: Relation,
    pub cross_investment_index: f64,
    pub fusion_index: f64,
    /// When the cluster is at the third stage through a whole across
    /// clusters: its relations with each other cluster of the whole.
    pub whole_relations: Vec<WholeRelation>,
}

/// How a cluster relates to another cluster of a whole they form: the
/// article's overlap, substitution, crossing and fusion, counted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WholeRelation {
    pub cluster: Id,
    /// Shared members over the smaller cluster's members.
    pub overlap: f64,
    /// Segment and industry mix similarity, as [`Relation`] substitution.
    pub substitution: f64,
    /// Ties between the two clusters' members.
    pub ties: u64,
    /// Of those, ownership or investment ties (crossing).
    pub capital_ties: u64,
    /// Of those, ties between enterprises of different ISIC divisions (fusion).
    pub cross_industry_ties: u64,
    /// Of those, VIRTUAL-channel or PLATFORM ties.
    pub virtual_ties: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Factor {
    pub name: &'static str,
    pub value: f64,
    pub weight: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StageScore {
    pub stage: Stage,
    pub score: f64,
    pub threshold: f64,
    pub factors: Vec<Factor>,
    /// The stage's necessary conditions.
    pub gates: Vec<Gate>,
}

impl StageScore {
    pub fn passed(&self) -> bool {
        self.score >= self.threshold && self.gates.iter().all(|g| g.met)
    }

    /// The unmet gates, described; empty when all are met.
    pub fn unmet(&self) -> Vec<String> {
        self.gates.iter().filter(|g| !g.met).map(Gate::describe).collect()
    }

    fn describe(&self) -> String {
        format!(
            "{} {:.2} (threshold {:.2})",
            self.stage.as_str(),
            self.score,
            self.threshold
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub cluster: Id,
    pub name: String,
    pub stage: Stage,
    /// REGIONAL, GLOBAL, VIRTUAL in that order.
    pub scores: Vec<StageScore>,
    pub evidence: Evidence,
    /// The virtual whole the cluster is in, exactly when the verdict is
    /// VIRTUAL_INTEGRATION: its own places (as DetectVirtualIntegration
    /// reports them for it) or, when those are no whole, the whole across
    /// clusters with a place of it (see [`super::wholes`]).
    pub pattern: Option<Pattern>,
}

impl Assessment {
    /// The verdict and why it wins, every stage that passed with its score,
    /// and for each stage ruled out its unmet gates (figure and limit) or
    /// its score under the threshold.
    pub fn explanation(&self) -> String {
        let passed: Vec<&StageScore> = self.scores.iter().filter(|s| s.passed()).collect();
        let mut out = match self.scores.iter().find(|s| s.stage == self.stage) {
            Some(chosen) => {
                let mut factors: Vec<&Factor> = chosen.factors.iter().filter(|f| f.weight > 0.0).collect();
                factors.sort_by(|a, b| (b.value * b.weight).total_cmp(&(a.value * a.weight)));
                let strongest: Vec<String> = factors
                    .iter()
                    .take(3)
                    .map(|f| format!("{} {:.2}", f.name, f.value))
                    .collect();
                let others: Vec<String> = passed
                    .iter()
                    .filter(|s| s.stage != self.stage)
                    .map(|s| s.describe())
                    .collect();
                let why = if others.is_empty() {
                    "the only stage that passed".to_string()
                } else {
                    format!(
                        "the most advanced stage that passed (the stages are steps); also passed: {}",
                        others.join(", ")
                    )
                };
                // A whole across clusters is named, with the other clusters in it.
                let across = self
                    .pattern
                    .as_ref()
                    .filter(|p| p.clusters.len() > 1 && chosen.stage == Stage::VirtualIntegration)
                    .map(|p| {
                        let others: Vec<&str> = p
                            .clusters
                            .iter()
                            .filter(|c| **c != self.cluster)
                            .map(|c| &**c)
                            .collect();
                        format!(" as part of the whole {} with {}", p.id, others.join(", "))
                    })
                    .unwrap_or_default();
                format!(
                    "{}{across}: {why}; strongest factors: {}",
                    chosen.describe(),
                    strongest.join(", ")
                )
            }
            None => "UNCLASSIFIED: no stage passed".to_string(),
        };
        for s in self.scores.iter().filter(|s| !s.passed()) {
            let mut reasons = s.unmet();
            if s.score < s.threshold {
                reasons.push(format!(
                    "score {:.2} is below its threshold {:.2}",
                    s.score, s.threshold
                ));
            }
            out.push_str(&format!(". {} ruled out: {}", s.stage.as_str(), reasons.join("; ")));
        }
        out
    }
}

fn weighted_mean(factors: &[Factor]) -> f64 {
    let total: f64 = factors.iter().map(|f| f.weight).sum();
    if total == 0.0 {
        0.0
    } else {
        factors.iter().map(|f| f.weight * f.value).sum::<f64>() / total
    }
}

/// Per-cluster tallies gathered in one pass over the links.
#[derive(Default)]
struct Tally {
    members: HashSet<Ix>,
    ties: u64,
    internal: u64,
    domestic_external: u64,
    other_region: u64,
    foreign: u64,
    unknown_country: u64,
    virtual_ties: u64,
    foreign_capital: HashSet<Ix>,
    platforms: HashSet<Ix>,
    capital: u64,
    crossing_capital: u64,
    crossing_enterprise_ties: u64,
    crossing_cross_industry: u64,
    /// Clusters this one is tied to: its partners' and its members' other clusters.
    related: HashSet<usize>,
}

/// The indexes of an actor's clusters in `index`. An iterator, not a Vec:
/// it runs for every actor of the network.
fn cluster_indexes<'a>(index: &'a HashMap<&Id, usize>, actor: &'a Actor) -> impl Iterator<Item = usize> + 'a {
    actor.cluster_ids.iter().filter_map(move |c| index.get(c).copied())
}

/// In `TieContext::cluster_at`: an actor in no cluster, or in more than one.
const NO_CLUSTER: u32 = u32::MAX;
const MANY_CLUSTERS: u32 = u32::MAX - 1;

/// What a cluster's tally reads of the rest of the network.
struct TieContext<'a, 'n> {
    network: &'n Network,
    filter: &'a GraphFilter,
    /// Each cluster of the network by id, its region and home.
    catalogue: &'a Catalogue<'n>,
    /// When looked up beforehand: each actor's one cluster by index,
    /// [`NO_CLUSTER`] or [`MANY_CLUSTERS`] (then looked up by id).
    cluster_at: Option<&'a [u32]>,
}

impl<'n> TieContext<'_, 'n> {
    fn clusters_of<'s>(&'s self, actor: &'s Actor) -> impl Iterator<Item = usize> + 's {
        self.catalogue.clusters_of(actor)
    }

    /// [`TieContext::clusters_of`] the actor at `ix`, from the table when
    /// there is one.
    fn clusters_at<'s>(&'s self, ix: Ix, actor: &'s Actor) -> impl Iterator<Item = usize> + 's {
        let known = self.cluster_at.and_then(|at| at.get(ix as usize).copied());
        let one = known.filter(|c| *c != NO_CLUSTER && *c != MANY_CLUSTERS);
        let by_id = matches!(known, None | Some(MANY_CLUSTERS)).then(|| self.clusters_of(actor));
        one.map(|c| c as usize).into_iter().chain(by_id.into_iter().flatten())
    }

    /// Tallies every link with an end among cluster `c`'s members, each once
    /// (a link between two members from its lower end).
    fn tally_members(&self, c: usize, t: &mut Tally, ties: &Ties<'n>) {
        let (network, filter) = (self.network, self.filter);
        let members: Vec<Ix> = t.members.iter().copied().collect();
        for ix in members {
            let Some(me) = filter.actor(network, ix) else {
                continue;
            };
            for (key, data, partner) in ties.partners(ix) {
                let other = if key.source == ix { key.target } else { key.source };
                if other < ix && t.members.contains(&other) {
                    continue;
                }
                if !filter.keeps_link(key.kind, data) {
                    continue;
                }
                let Some(partner) = partner.filter(|a| filter.keeps_actor(a)) else {
                    continue;
                };
                let (source, target) = if key.source == ix { (me, partner) } else { (partner, me) };
                self.tally_link(c, t, &key, data, source, target);
            }
        }
    }

    /// Adds one link with an end among cluster `c`'s members to its tally.
    fn tally_link(&self, c: usize, t: &mut Tally, key: &EdgeKey, data: &LinkData, source: &Actor, target: &Actor) {
        let ends = [
            (key.source, source, key.target, target),
            (key.target, target, key.source, source),
        ];
        let capital = key.kind.is_capital();
        let is_virtual = data.channel == Channel::Virtual || key.kind == LinkKind::Platform;
        t.ties += 1;
        t.virtual_ties += u64::from(is_virtual);
        t.capital += u64::from(capital);
        let (inside_s, inside_t) = (t.members.contains(&key.source), t.members.contains(&key.target));
        if inside_s && inside_t {
            t.internal += 1;
        }
        for (me, my_actor, other, other_actor) in ends {
            if !t.members.contains(&me) {
                continue;
            }
            if other_actor.kind == ActorKind::Platform {
                t.platforms.insert(other);
            }
            if t.members.contains(&other) {
                continue;
            }
            // Looked up once for both uses (each lookup hashes an id).
            let mut theirs = [0usize; 4];
            let mut their_count = 0;
            for o in self.clusters_at(other, other_actor) {
                t.related.insert(o);
                if their_count < theirs.len() {
                    theirs[their_count] = o;
                }
                their_count += 1;
            }
            match (self.catalogue.home[c].country(), other_actor.country) {
                (Some(home), Some(theirs)) if theirs != home => {
                    t.foreign += 1;
                    if capital && other == key.source && my_actor.kind.is_enterprise() {
                        t.foreign_capital.insert(me);
                    }
                }
                (Some(_), Some(_)) => {
                    t.domestic_external += 1;
                    let elsewhere = if their_count <= theirs.len() {
                        theirs[..their_count]
                            .iter()
                            .any(|&o| self.catalogue.regions[o] != self.catalogue.regions[c])
                    } else {
                        self.clusters_of(other_actor)
                            .any(|o| self.catalogue.regions[o] != self.catalogue.regions[c])
                    };
                    t.other_region += u64::from(elsewhere);
                }
                _ => t.unknown_country += 1,
            }
            let other_clustered = !other_actor.cluster_ids.is_empty();
            if capital && other_clustered {
                t.crossing_capital += 1;
            }
            if other_clustered && my_actor.kind.is_enterprise() && other_actor.kind.is_enterprise() {
                t.crossing_enterprise_ties += 1;
                let mine = self.network.attributes_at(my_actor, self.filter.as_of).industry;
                let theirs = self.network.attributes_at(other_actor, self.filter.as_of).industry;
                if IndustryLevel::Division.key(mine) != IndustryLevel::Division.key(theirs) {
                    t.crossing_cross_industry += 1;
                }
            }
        }
    }
}

/// Assesses the clusters in the filter (all when it names none). Every
/// figure of a cluster comes from its own network (its members, their ties
/// and the actors at the other ends), so a verdict depends neither on which
/// others are assessed with it nor on what else the store holds.
pub fn assess(ctx: StageContext) -> Result<Vec<Assessment>, Cancelled> {
    assess_with(ctx, None)
}

/// [`assess`], reading the assessed members' links from `ties` when given
/// (the alert engine reads each cluster's once for all its figures).
/// Otherwise they are read here: once for all the named clusters, or for
/// each cluster as it is assessed.
pub fn assess_with(ctx: StageContext, ties: Option<&Ties>) -> Result<Vec<Assessment>, Cancelled> {
    let assessed = assess_clusters(ctx, ties, false)?;
    Ok(assessed.into_iter().map(|(assessment, _)| assessment).collect())
}

/// [`assess_with`], each assessment with the virtual-integration patterns
/// [`detect_with`](crate::analysis::stages::virtual_integration::detect_with)
/// finds in its cluster alone, most confident first: both read the
/// cluster's places, which are then read once.
pub fn assess_and_detect_with(
    ctx: StageContext,
    ties: Option<&Ties>,
) -> Result<Vec<(Assessment, Vec<Pattern>)>, Cancelled> {
    assess_clusters(ctx, ties, true)
}

fn assess_clusters(
    ctx: StageContext,
    ties: Option<&Ties>,
    detect: bool,
) -> Result<Vec<(Assessment, Vec<Pattern>)>, Cancelled> {
    let (network, filter) = (ctx.network, ctx.filter);
    // Gather: the clusters, their members, the ties of the assessed ones,
    // the wholes across clusters, and the mixes they are compared by.
    let catalogue = Catalogue::new(network, filter);
    let mut gathering = Gathering::members(ctx, &catalogue);
    let read_here = gathering.tally_ties(ctx, &catalogue, ties)?;
    let given_ties: Option<&Ties> = ties.or(read_here.as_ref());
    let named: Vec<Id> = catalogue.assessed_ids().cloned().collect();
    let narrow = !filter.clusters.is_empty();
    let wholes = wholes::find(ctx, narrow.then_some(&named[..]))?;
    if narrow {
        gathering.fill_mixes(ctx, &catalogue, &wholes);
    }
    let vectors = IndustryVectors::new(&gathering.industries);
    let survey = Survey {
        catalogue: &catalogue,
        gathering: &gathering,
        vectors: &vectors,
        wholes: &wholes,
    };
    // Relate and judge each cluster: its own, so they run in parallel.
    (0..catalogue.len())
        .into_par_iter()
        .filter(|c| catalogue.assessed[*c])
        .map(|c| {
            let relations = Relations::of(ctx, &survey, c);
            ctx.control.check()?;
            let read;
            let ties = match given_ties {
                Some(ties) => ties,
                None => {
                    read = Ties::read(network, gathering.tallies[c].members.iter().copied());
                    &read
                }
            };
            judge(ctx, &survey, relations, c, ties, detect)
        })
        .collect()
}

/// The clusters of the network in one walk (looking each id up again cost
/// the alert engine's small rounds a string-compared descent per cluster of
/// the network, twice): ids, regions, home countries, which are assessed,
/// and each id's index.
struct Catalogue<'n> {
    ids: Vec<&'n Id>,
    regions: Vec<&'n str>,
    home: Vec<HomeCountry>,
    assessed: Vec<bool>,
    index: HashMap<&'n Id, usize>,
}

impl<'n> Catalogue<'n> {
    fn new(network: &'n Network, filter: &GraphFilter) -> Catalogue<'n> {
        let wanted = filter.wants_cluster();
        let n = network.clusters.len();
        let mut catalogue = Catalogue {
            ids: Vec::with_capacity(n),
            regions: Vec::with_capacity(n),
            home: Vec::with_capacity(n),
            assessed: Vec::with_capacity(n),
            index: HashMap::default(),
        };
        for (id, cluster) in network.clusters.iter() {
            let assessed = wanted(id);
            // Its own country, else the one its sites lie in (offline
            // boundaries): looked up for the assessed clusters only, the
            // only ones whose ties are told foreign or domestic.
            let found = if assessed {
                home_country(cluster)
            } else {
                HomeCountry::default()
            };
            catalogue.index.insert(id, catalogue.ids.len());
            catalogue.ids.push(id);
            catalogue.regions.push(cluster.region.as_str());
            catalogue.home.push(found);
            catalogue.assessed.push(assessed);
        }
        catalogue
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn assessed_ids(&self) -> impl Iterator<Item = &'n Id> + '_ {
        self.ids
            .iter()
            .zip(&self.assessed)
            .filter(|(_, a)| **a)
            .map(|(id, _)| *id)
    }

    fn clusters_of<'s>(&'s self, actor: &'s Actor) -> impl Iterator<Item = usize> + 's {
        cluster_indexes(&self.index, actor)
    }
}

/// What is gathered per cluster: the assessed ones' tallies (members and
/// ties), and the size, segment mix and industries of every cluster they
/// are compared with.
struct Gathering<'n> {
    tallies: Vec<Tally>,
    member_counts: Vec<usize>,
    mixes: Vec<[f64; 8]>,
    industries: Vec<HashMap<&'n str, f64>>,
    /// Actors the filter keeps (all actors when clusters are named).
    kept_actors: u64,
}

impl<'n> Gathering<'n> {
    /// The assessed clusters' members. A filter naming clusters reads those
    /// clusters' member lists only (their counts and mixes come later, with
    /// those of the clusters they are tied to); with none named, one pass
    /// over every actor. The alert engine assesses the few clusters a batch
    /// touched: a pass over every actor made each of its rounds cost the
    /// whole network.
    fn members(ctx: StageContext<'n>, catalogue: &Catalogue<'n>) -> Gathering<'n> {
        let (network, filter) = (ctx.network, ctx.filter);
        let n = catalogue.len();
        let mut g = Gathering {
            tallies: (0..n).map(|_| Tally::default()).collect(),
            member_counts: vec![0; n],
            mixes: vec![[0.0; 8]; n],
            industries: vec![HashMap::default(); n],
            kept_actors: 0,
        };
        if !filter.clusters.is_empty() {
            g.kept_actors = network.actors.len() as u64;
            // Each cluster's own: in parallel (a baseline names every cluster).
            g.tallies
                .par_iter_mut()
                .enumerate()
                .filter(|(c, _)| catalogue.assessed[*c])
                .for_each(|(c, t)| {
                    for ix in network.member_indexes(catalogue.ids[c]) {
                        let Some(actor) = filter.actor(network, ix) else {
                            continue;
                        };
                        t.members.insert(ix);
                        t.related.extend(catalogue.clusters_of(actor).filter(|o| *o != c));
                    }
                });
            return g;
        }
        for (ix, actor) in network.actor_at.iter().enumerate() {
            let Some(actor) = actor.as_ref().filter(|a| filter.keeps_actor(a)) else {
                continue;
            };
            g.kept_actors += 1;
            let attributes = network.attributes_at(actor, filter.as_of);
            for c in catalogue.clusters_of(actor) {
                add_member(c, &attributes, &mut g.member_counts, &mut g.mixes, &mut g.industries);
                // Members are needed for the assessed clusters only; the
                // others are compared by counts and mixes.
                if !catalogue.assessed[c] {
                    continue;
                }
                g.tallies[c].members.insert(ix as Ix);
                let others = catalogue.clusters_of(actor).filter(|o| *o != c);
                g.tallies[c].related.extend(others);
            }
        }
        g
    }

    /// Tallies the links with an end in an assessed cluster: when few
    /// clusters are assessed, their members' own links (read here, once for
    /// all of them, and returned: they serve the places and core firms too,
    /// unless `given`); otherwise one pass over all links.
    fn tally_ties(
        &mut self,
        ctx: StageContext<'n>,
        catalogue: &Catalogue<'n>,
        given: Option<&Ties<'n>>,
    ) -> Result<Option<Ties<'n>>, Cancelled> {
        let (network, filter) = (ctx.network, ctx.filter);
        let assessed = &catalogue.assessed;
        let members_assessed: usize = self
            .tallies
            .iter()
            .zip(assessed)
            .filter(|(_, a)| **a)
            .map(|(t, _)| t.members.len())
            .sum();
        let read_here = (given.is_none() && members_assessed * 4 < self.kept_actors as usize).then(|| {
            let members = self.tallies.iter().zip(assessed).filter(|(_, a)| **a);
            Ties::read(network, members.flat_map(|(t, _)| t.members.iter().copied()))
        });
        // When the assessed clusters hold a good part of the network (a
        // baseline), every actor's cluster is looked up once here rather
        // than at each tie that reaches it: hashing the far ends' cluster
        // ids was a twelfth of a 10,000-cluster round.
        let cluster_at = (members_assessed * 4 >= network.actor_at.len()).then(|| {
            let at: Vec<Option<&std::sync::Arc<Actor>>> = network.actor_at.iter().map(Option::as_ref).collect();
            at.par_iter()
                .map(|actor| {
                    let mut clusters = actor.iter().flat_map(|a| catalogue.clusters_of(a));
                    match (clusters.next(), clusters.next()) {
                        (None, _) => NO_CLUSTER,
                        (Some(c), None) => c as u32,
                        (Some(_), Some(_)) => MANY_CLUSTERS,
                    }
                })
                .collect::<Vec<u32>>()
        });
        let tie_context = TieContext {
            network,
            filter,
            catalogue,
            cluster_at: cluster_at.as_deref(),
        };
        if let Some(ties) = given.or(read_here.as_ref()) {
            // Each cluster tallies its own members' links, so clusters run
            // in parallel: a round over 10,000 new clusters spent half its
            // time here on one core.
            self.tallies
                .par_iter_mut()
                .enumerate()
                .filter(|(c, _)| assessed[*c])
                .try_for_each(|(c, t)| {
                    ctx.control.check()?;
                    tie_context.tally_members(c, t, ties);
                    Ok(())
                })?;
        } else {
            for (key, data, source, target) in filter.links(network) {
                let mut touched: Vec<usize> = catalogue
                    .clusters_of(source)
                    .chain(catalogue.clusters_of(target))
                    .collect();
                touched.retain(|c| assessed[*c]);
                touched.sort_unstable();
                touched.dedup();
                for c in touched {
                    tie_context.tally_link(c, &mut self.tallies[c], key, data, source, target);
                }
            }
        }
        Ok(read_here)
    }

    /// With clusters named: the counts and mixes of the assessed clusters,
    /// the clusters they are tied to, and the other clusters of their wholes.
    fn fill_mixes(&mut self, ctx: StageContext<'n>, catalogue: &Catalogue<'n>, wholes: &Wholes) {
        let (network, filter) = (ctx.network, ctx.filter);
        let mut needed: Vec<usize> = (0..catalogue.len()).filter(|c| catalogue.assessed[*c]).collect();
        for c in needed.clone() {
            needed.extend(self.tallies[c].related.iter().copied());
        }
        needed.extend(
            wholes
                .patterns
                .iter()
                .flat_map(|w| w.clusters.iter())
                .filter_map(|id| catalogue.index.get(id).copied()),
        );
        needed.sort_unstable();
        needed.dedup();
        for c in needed {
            // Today's mixes are kept by every batch; a past date counts the
            // members' profiles.
            if filter.as_of.is_none() {
                if let Some(mix) = network.mixes.get(catalogue.ids[c]) {
                    self.member_counts[c] = mix.members as usize;
                    for (sum, count) in self.mixes[c].iter_mut().zip(mix.segments) {
                        *sum = count as f64;
                    }
                    self.industries[c] = mix
                        .industries
                        .iter()
                        .map(|(code, n)| (code.as_str(), *n as f64))
                        .collect();
                }
                continue;
            }
            for ix in network.member_indexes(catalogue.ids[c]) {
                let Some(actor) = filter.actor(network, ix) else {
                    continue;
                };
                let attributes = network.attributes_at(actor, filter.as_of);
                add_member(
                    c,
                    &attributes,
                    &mut self.member_counts,
                    &mut self.mixes,
                    &mut self.industries,
                );
            }
        }
    }
}

/// Everything gathered for the clusters assessed together.
struct Survey<'a, 'n> {
    catalogue: &'a Catalogue<'n>,
    gathering: &'a Gathering<'n>,
    vectors: &'a IndustryVectors,
    wholes: &'a Wholes,
}

/// Each cluster's industries as a sparse vector over all codes seen, for
/// the substitution similarity.
struct IndustryVectors(Vec<Vec<(usize, f64)>>);

impl IndustryVectors {
    fn new(industries: &[HashMap<&str, f64>]) -> IndustryVectors {
        let mut codes: Vec<&str> = industries.iter().flat_map(|m| m.keys().copied()).collect();
        codes.sort_unstable();
        codes.dedup();
        IndustryVectors(
            industries
                .iter()
                .map(|m| {
                    let mut v: Vec<(usize, f64)> = m
                        .iter()
                        .filter_map(|(code, w)| codes.binary_search(code).ok().map(|i| (i, *w)))
                        .collect();
                    v.sort_unstable_by_key(|(i, _)| *i);
                    v
                })
                .collect(),
        )
    }
}

/// Relate: a cluster against the clusters it is tied to. Members shared
/// with each (the overlap coefficient) and mix similarity (the segment and
/// industry part of cluster substitution), and the closest of each.
struct Relations {
    /// Members shared with each other cluster, by index.
    shared: HashMap<usize, usize>,
    overlap: Relation,
    substitution: Relation,
}

impl Relations {
    fn of(ctx: StageContext, survey: &Survey, c: usize) -> Relations {
        let (catalogue, g) = (survey.catalogue, survey.gathering);
        let t = &g.tallies[c];
        // In one pass over the members (not one per related cluster: a
        // cluster may be tied to most of the network's clusters).
        let mut shared: HashMap<usize, usize> = HashMap::default();
        for actor in t.members.iter().filter_map(|m| ctx.network.actor(*m)) {
            for o in catalogue.clusters_of(actor).filter(|o| *o != c) {
                *shared.entry(o).or_default() += 1;
            }
        }
        let closest = |measure: &dyn Fn(usize) -> f64| -> Relation {
            let mut related: Vec<usize> = t.related.iter().copied().collect();
            related.sort_unstable();
            related.into_iter().fold(Relation::default(), |best, o| {
                let value = measure(o);
                if value > best.value {
                    Relation {
                        value,
                        with: Some(catalogue.ids[o].clone()),
                    }
                } else {
                    best
                }
            })
        };
        let overlap = closest(&|o| overlap_of(&shared, g, c, o));
        let substitution = closest(&|o| substitution_of(survey, c, o));
        Relations {
            shared,
            overlap,
            substitution,
        }
    }
}

/// Shared members over the smaller cluster's members.
fn overlap_of(shared: &HashMap<usize, usize>, g: &Gathering, c: usize, o: usize) -> f64 {
    let shared = shared.get(&o).copied().unwrap_or(0);
    shared as f64 / g.member_counts[c].min(g.member_counts[o]).max(1) as f64
}

/// The Substitutes weights for segments and industry, 0.25 and 0.15, renormalised.
fn substitution_of(survey: &Survey, c: usize, o: usize) -> f64 {
    let (mixes, vectors) = (&survey.gathering.mixes, &survey.vectors.0);
    0.625 * cosine(&mixes[c], &mixes[o]) + 0.375 * sparse_cosine(&vectors[c], &vectors[o])
}

/// Judge one cluster: its own places as a whole (and the patterns in them
/// when `detect`), else the whole across clusters it has a place in, with
/// the relations within that whole; then the evidence, scores and verdict.
fn judge(
    ctx: StageContext,
    survey: &Survey,
    relations: Relations,
    c: usize,
    ties: &Ties,
    detect: bool,
) -> Result<(Assessment, Vec<Pattern>), Cancelled> {
    let (network, filter, config) = (ctx.network, ctx.filter, ctx.config);
    let (catalogue, g, wholes) = (survey.catalogue, survey.gathering, survey.wholes);
    let id = catalogue.ids[c];
    let t = &g.tallies[c];
    let (pattern, found) = if detect {
        measure_and_detect_with(ctx, id, ties)?
    } else {
        (measure_cluster_with(ctx, id, ties)?, Vec::new())
    };
    // Its own places first, as they always were; a whole across clusters
    // when they are none.
    let across = wholes
        .of(id)
        .filter(|_| !pattern.as_ref().is_some_and(Pattern::holds))
        .cloned();
    let whole_relations = across.as_ref().map_or_else(Vec::new, |whole| {
        let others = whole.clusters.iter().filter(|o| *o != id);
        others
            .filter_map(|o| catalogue.index.get(o).map(|&o| (o, catalogue.ids[o])))
            .map(|(o, other)| WholeRelation {
                overlap: overlap_of(&relations.shared, g, c, o),
                substitution: substitution_of(survey, c, o),
                ..ties_between(network, filter, &t.members, ties, other)
            })
            .collect()
    });
    let gathered = Gathered {
        id,
        tally: t,
        ties,
        mix: &g.mixes[c],
        home: catalogue.home[c].clone(),
        own: pattern,
        across,
        overlap: relations.overlap,
        substitution: relations.substitution,
        whole_relations,
    };
    Ok((evaluate(network, filter, config, gathered), found))
}

/// Counts a kept member into its cluster's size, segment mix and industries.
fn add_member<'n>(
    c: usize,
    attributes: &Attributes<'n>,
    member_counts: &mut [usize],
    mixes: &mut [[f64; 8]],
    industries: &mut [HashMap<&'n str, f64>],
) {
    member_counts[c] += 1;
    for segment in attributes.segments.iter() {
        mixes[c][segment as usize] += 1.0;
    }
    if !attributes.industry.is_empty() {
        *industries[c].entry(attributes.industry).or_default() += 1.0;
    }
}

/// What was gathered of one cluster for its assessment.
struct Gathered<'a, 'n> {
    id: &'a Id,
    tally: &'a Tally,
    ties: &'a Ties<'n>,
    mix: &'a [f64; 8],
    home: HomeCountry,
    /// The cluster's own places measured as one whole.
    own: Option<Pattern>,
    /// The whole across clusters with a place of it, when its own places are none.
    across: Option<Pattern>,
    overlap: Relation,
    substitution: Relation,
    whole_relations: Vec<WholeRelation>,
}

/// Ties between `members` and the members of cluster `other` (not among
/// `members`), counted by what they show: crossing, fusion, online.
fn ties_between(
    network: &Network,
    filter: &GraphFilter,
    members: &HashSet<Ix>,
    ties: &Ties,
    other: &Id,
) -> WholeRelation {
    let mut relation = WholeRelation {
        cluster: other.clone(),
        ..WholeRelation::default()
    };
    for &me in members {
        let Some(mine) = filter.actor(network, me) else {
            continue;
        };
        for (key, data, partner) in ties.partners(me) {
            let them = if key.source == me { key.target } else { key.source };
            if members.contains(&them) || !filter.keeps_link(key.kind, data) {
                continue;
            }
            let Some(partner) = partner.filter(|a| filter.keeps_actor(a) && a.cluster_ids.contains(other)) else {
                continue;
            };
            relation.ties += 1;
            relation.capital_ties += u64::from(key.kind.is_capital());
            relation.virtual_ties += u64::from(data.channel == Channel::Virtual || key.kind == LinkKind::Platform);
            if mine.kind.is_enterprise() && partner.kind.is_enterprise() {
                let a = network.attributes_at(mine, filter.as_of).industry;
                let b = network.attributes_at(partner, filter.as_of).industry;
                relation.cross_industry_ties +=
                    u64::from(IndustryLevel::Division.key(a) != IndustryLevel::Division.key(b));
            }
        }
    }
    relation
}

/// The evidence, the three scores and the verdict of one gathered cluster.
fn evaluate(network: &Network, filter: &GraphFilter, config: &StageConfig, mut g: Gathered) -> Assessment {
    let (own, across) = (g.own.take(), g.across.take());
    let evidence = evidence(network, filter, config, own.as_ref(), &mut g);
    // The whole judged: a whole across clusters when the cluster's own
    // places are none (the evidence's place figures stay its own places').
    let whole = across.or(own);
    let scores = score(&evidence, whole.as_ref(), config);
    let stage = scores
        .iter()
        .rev()
        .find(|s| s.passed())
        .map_or(Stage::Unclassified, |s| s.stage);
    Assessment {
        cluster: g.id.clone(),
        name: network.clusters.get(g.id).map(|c| c.name.clone()).unwrap_or_default(),
        stage,
        scores,
        evidence,
        pattern: whole.filter(|_| stage == Stage::VirtualIntegration),
    }
}

/// The counts behind the factors: the tally, the members' segments, the
/// core firms, and the cluster's own places as a whole (`own`).
fn evidence(
    network: &Network,
    filter: &GraphFilter,
    config: &StageConfig,
    own: Option<&Pattern>,
    g: &mut Gathered,
) -> Evidence {
    let t = g.tally;
    let actors: Vec<&std::sync::Arc<Actor>> = t.members.iter().filter_map(|ix| network.actor(*ix)).collect();
    let enterprises: Vec<&&std::sync::Arc<Actor>> = actors.iter().filter(|a| a.kind.is_enterprise()).collect();
    let with_segments: Vec<usize> = enterprises
        .iter()
        .map(|a| network.attributes_at(a, filter.as_of).segments.len())
        .filter(|n| *n > 0)
        .collect();
    let segments_per_enterprise = if with_segments.is_empty() {
        0.0
    } else {
        with_segments.iter().sum::<usize>() as f64 / with_segments.len() as f64
    };
    let (cores, core_reach) = cores_of(network, filter, &t.members, g.ties, config.core_firms.min_reach);
    let (interaction, specialisation) = own
        .map(|p| (p.interaction.clone(), p.specialisation.clone()))
        .unwrap_or_default();
    let mut platforms: Vec<Id> = t
        .platforms
        .iter()
        .filter_map(|ix| network.actor(*ix).map(|a| a.id.clone()))
        .collect();
    platforms.sort();
    Evidence {
        members: t.members.len() as u64,
        enterprises: enterprises.len() as u64,
        home: std::mem::take(&mut g.home),
        ties: t.ties,
        internal_ties: t.internal,
        domestic_external_ties: t.domestic_external,
        other_region_ties: t.other_region,
        foreign_ties: t.foreign,
        unknown_country_ties: t.unknown_country,
        virtual_ties: t.virtual_ties,
        segments_covered: Segment::ALL
            .iter()
            .copied()
            .filter(|s| g.mix[*s as usize] > 0.0)
            .collect(),
        segments_per_enterprise,
        mean_segment_value: config.smile.mean_value(g.mix),
        foreign_capital_enterprises: t.foreign_capital.len() as u64,
        core_firm: cores.first().and_then(|r| network.actor(r.actor).map(|a| a.id.clone())),
        core_reach,
        places: own
            .iter()
            .flat_map(|p| p.parts.iter().map(|part| part.place.clone()))
            .collect(),
        cross_place_ties: interaction.between_places,
        expected_cross_place_ties: interaction.expected_between_places,
        place_interaction: interaction.ratio,
        place_distinctness: specialisation.distinctness,
        specialisation_p: specialisation.p_value,
        platforms,
        corridors: own.map_or(0, |p| p.corridors.len() as u64),
        overlap: std::mem::take(&mut g.overlap),
        substitution: std::mem::take(&mut g.substitution),
        cross_investment_index: share(t.crossing_capital, t.capital),
        fusion_index: share(t.crossing_cross_industry, t.crossing_enterprise_ties),
        whole_relations: std::mem::take(&mut g.whole_relations),
    }
}

/// The three stage scores from the evidence and the whole the cluster is
/// judged on (None when no member is at a place).
pub fn score(e: &Evidence, pattern: Option<&Pattern>, config: &StageConfig) -> Vec<StageScore> {
    vec![
        regional_score(e, config),
        global_score(e, config),
        virtual_score(pattern, config),
    ]
}

fn regional_score(e: &Evidence, config: &StageConfig) -> StageScore {
    let foreign_share = share(e.foreign_ties, e.ties);
    let completeness = e.segments_covered.len() as f64 / Segment::ALL.len() as f64;
    let specialisation = if e.segments_per_enterprise == 0.0 {
        0.0
    } else {
        1.0 - (e.segments_per_enterprise - 1.0) / (Segment::ALL.len() - 1) as f64
    };
    // Without ties nothing is local: locality is evidence of local ties, not
    // the absence of foreign ones.
    let locality = if e.ties == 0 { 0.0 } else { 1.0 - foreign_share };
    let r = &config.regional;
    let factor = |name, value, weight| Factor { name, value, weight };
    let factors = vec![
        factor("internal_share", share(e.internal_ties, e.ties), r.internal_share),
        factor("completeness", completeness, r.completeness),
        factor("specialisation", specialisation, r.specialisation),
        factor("locality", locality, r.locality),
        factor("hub_and_spoke", e.core_reach, r.hub_and_spoke),
    ];
    StageScore {
        stage: Stage::RegionalIntegration,
        score: weighted_mean(&factors),
        threshold: config.thresholds.regional,
        factors,
        gates: vec![
            Gate::at_least("ties", e.ties as f64, 1.0, "links with an end in the cluster"),
            Gate::at_least(
                "completeness",
                completeness,
                r.min_completeness,
                "share of the 8 value-chain segments performed inside the cluster",
            ),
        ],
    }
}

fn global_score(e: &Evidence, config: &StageConfig) -> StageScore {
    let foreign_share = share(e.foreign_ties, e.ties);
    let g = &config.global;
    let factor = |name, value, weight| Factor { name, value, weight };
    let capital = share(e.foreign_capital_enterprises, e.enterprises);
    let factors = vec![
        factor(
            "foreign_embedding",
            (foreign_share / g.foreign_saturation).min(1.0),
            g.foreign_embedding,
        ),
        factor(
            "foreign_capital",
            (capital / g.foreign_capital_saturation).min(1.0),
            g.foreign_capital,
        ),
        factor("high_value", e.mean_segment_value, g.high_value),
    ];
    StageScore {
        stage: Stage::GlobalValueChain,
        score: weighted_mean(&factors),
        threshold: config.thresholds.global,
        factors,
        gates: vec![
            Gate::at_least(
                "home_country",
                if e.home.country().is_some() { 1.0 } else { 0.0 },
                1.0,
                "the cluster's country is known, so foreign ties can be told",
            ),
            Gate::at_least(
                "foreign_share",
                foreign_share,
                g.min_foreign_share,
                "share of the cluster's ties to actors in another country",
            ),
        ],
    }
}

/// The whole's confidence, its four factors and its gates; without a place,
/// nothing but the unmet places gate.
fn virtual_score(pattern: Option<&Pattern>, config: &StageConfig) -> StageScore {
    match pattern {
        Some(p) => StageScore {
            stage: Stage::VirtualIntegration,
            score: p.confidence,
            threshold: p.threshold,
            factors: p
                .factors
                .named()
                .into_iter()
                .map(|(name, value)| Factor {
                    name,
                    value,
                    weight: 0.25,
                })
                .collect(),
            gates: p.gates.clone(),
        },
        None => StageScore {
            stage: Stage::VirtualIntegration,
            score: 0.0,
            threshold: config.thresholds.virtual_integration,
            factors: Vec::new(),
            gates: vec![Gate::at_least(
                "places",
                0.0,
                2.0,
                "separate places, sites further apart than places.colocation_km",
            )],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        demo,
        testing::{assess_all, network},
    };

    fn demo_network() -> Network {
        network(demo::demo_changes())
    }

    /// Cluster A in China: three firms (two manufacturers, one designer) in
    /// a supply chain; outside it a German investor in a1, a Chinese buyer
    /// of a3 and a buyer of a3 of unknown country.
    fn five_ties() -> Vec<crate::model::Change> {
        use crate::{
            model::{Actor, Change, Cluster, LinkKind},
            testing::{actor, cluster, link},
        };
        let firm = |id: &str, segment: Segment| {
            Change::UpsertActor(Actor {
                segments: [segment].into_iter().collect(),
                ..actor(id, &["A"])
            })
        };
        let outsider = |id: &str, country: Option<&str>| {
            Change::UpsertActor(Actor {
                country: country.map(|c| c.parse().unwrap()),
                ..actor(id, &[])
            })
        };
        vec![
            Change::UpsertCluster(Cluster {
                country: Some("CN".parse().unwrap()),
                ..cluster("A")
            }),
            firm("a1", Segment::Manufacturing),
            firm("a2", Segment::Design),
            firm("a3", Segment::Manufacturing),
            outsider("x", Some("DE")),
            outsider("y", Some("CN")),
            outsider("z", None),
            Change::UpsertLink(link("a1", "a2", LinkKind::Supply)),
            Change::UpsertLink(link("a2", "a3", LinkKind::Supply)),
            Change::UpsertLink(link("x", "a1", LinkKind::Investment)),
            Change::UpsertLink(link("a3", "y", LinkKind::Supply)),
            Change::UpsertLink(link("a3", "z", LinkKind::Supply)),
        ]
    }

    fn factor(assessment: &Assessment, stage: Stage, name: &str) -> f64 {
        let score = assessment.scores.iter().find(|s| s.stage == stage).unwrap();
        score.factors.iter().find(|f| f.name == name).unwrap().value
    }

    #[test]
    fn each_regional_and_global_factor_on_six_actors_by_hand() {
        let network = network(five_ties());
        let a = &assess_all(&network, &GraphFilter::default())[0];
        let e = &a.evidence;
        // Five ties: two inside, one foreign (the investor), one domestic,
        // one of unknown country (never counted as foreign).
        assert_eq!(
            (
                e.ties,
                e.internal_ties,
                e.foreign_ties,
                e.domestic_external_ties,
                e.unknown_country_ties
            ),
            (5, 2, 1, 1, 1)
        );
        let close = |x: f64, y: f64| assert!((x - y).abs() < 1e-12, "{x} != {y}");
        close(factor(a, Stage::RegionalIntegration, "internal_share"), 2.0 / 5.0);
        close(factor(a, Stage::RegionalIntegration, "locality"), 1.0 - 1.0 / 5.0);
        // Two of the segments, each firm in one.
        close(
            factor(a, Stage::RegionalIntegration, "completeness"),
            2.0 / Segment::ALL.len() as f64,
        );
        close(factor(a, Stage::RegionalIntegration, "specialisation"), 1.0);
        let global = &StageConfig::default().global;
        // Foreign share 1/5 against a saturation of 0.5.
        close(
            factor(a, Stage::GlobalValueChain, "foreign_embedding"),
            (0.2 / global.foreign_saturation).min(1.0),
        );
        // One of three firms has foreign capital (a1, invested in by x).
        assert_eq!(e.foreign_capital_enterprises, 1);
        close(
            factor(a, Stage::GlobalValueChain, "foreign_capital"),
            (1.0 / 3.0 / global.foreign_capital_saturation).min(1.0),
        );
    }

    #[test]
    fn a_capital_tie_from_inside_out_is_no_foreign_capital() {
        use crate::{model::LinkKind, testing::link};
        // a1 invests in x instead of x in a1: foreign, but not capital into
        // the cluster.
        let changes: Vec<_> = five_ties()
            .into_iter()
            .map(|c| match c {
                crate::model::Change::UpsertLink(l) if l.source.as_ref() == "x" => {
                    crate::model::Change::UpsertLink(link("a1", "x", LinkKind::Investment))
                }
                other => other,
            })
            .collect();
        let network = network(changes);
        let a = &assess_all(&network, &GraphFilter::default())[0];
        assert_eq!(
            (a.evidence.foreign_ties, a.evidence.foreign_capital_enterprises),
            (1, 0)
        );
        assert_eq!(factor(a, Stage::GlobalValueChain, "foreign_capital"), 0.0);
    }

    #[test]
    fn more_foreign_ties_never_lower_foreign_embedding() {
        use crate::{
            model::{Actor, Change, LinkKind},
            testing::{actor, link},
        };
        let mut changes = five_ties();
        let mut last = 0.0;
        for i in 0..6 {
            let network = network(changes.clone());
            let a = &assess_all(&network, &GraphFilter::default())[0];
            let value = factor(a, Stage::GlobalValueChain, "foreign_embedding");
            assert!(value >= last, "{value} after {last} with {i} more foreign buyers");
            last = value;
            let id = format!("f{i}");
            changes.push(Change::UpsertActor(Actor {
                country: Some("JP".parse().unwrap()),
                ..actor(&id, &[])
            }));
            changes.push(Change::UpsertLink(link("a2", &id, LinkKind::Supply)));
        }
        assert_eq!(last, 1.0, "saturates");
    }

    #[test]
    fn the_demo_clusters_are_in_the_articles_stages() {
        let network = demo_network();
        let assessments = assess_all(&network, &GraphFilter::default());
        let stage = |id: &str| assessments.iter().find(|a| &*a.cluster == id).unwrap().stage;
        assert_eq!(stage(demo::CHANGCHUN), Stage::RegionalIntegration);
        assert_eq!(stage(demo::KUNSHAN), Stage::GlobalValueChain);
        assert_eq!(stage(demo::CHANGNING), Stage::VirtualIntegration);
        // Changning's external ties in China go to Zhangjiang, also in Shanghai.
        let changning = &assessments
            .iter()
            .find(|a| &*a.cluster == demo::CHANGNING)
            .unwrap()
            .evidence;
        assert_eq!((changning.domestic_external_ties, changning.other_region_ties), (21, 0));
    }

    #[test]
    fn a_cluster_assessed_alone_gets_the_same_figures_as_with_all_the_others() {
        let network = demo_network();
        let all = assess_all(&network, &GraphFilter::default());
        for cluster in [demo::CHANGNING, demo::KUNSHAN] {
            let filter = GraphFilter {
                clusters: vec![cluster.into()],
                ..GraphFilter::default()
            };
            let alone = assess_all(&network, &filter);
            let together = all.iter().find(|a| &*a.cluster == cluster).unwrap();
            assert_eq!(alone, std::slice::from_ref(together));
        }
    }
}
