//! Alert evaluation: what a round of applied batches changed that matters.
//!
//! Two sorts of alert, evaluated differently:
//!
//! * **State alerts** compare figures kept per cluster ([`ClusterState`]:
//!   stage verdict and scores, virtual-integration pattern, PageRank top-k,
//!   components of its own network, member overlaps) with the same figures
//!   computed now. Only the clusters the round can have changed are
//!   recomputed ([`Round::affected`]); the kept figures are persisted with
//!   the alerts, so a restart resumes from them.
//! * **Event alerts** (FUSION_LINK_ADDED, CROSS_INVESTMENT_ADDED,
//!   SUBSTITUTE_LOST) look at the round's changes themselves and compare the
//!   network before the round with the network after it.
//!
//! Every figure is cluster-local or actor-local, so a small batch costs
//! milliseconds even on a million links; `docs/alerts.md` gives the rules.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::atomic::AtomicBool,
    time::Duration,
};

use petgraph::unionfind::UnionFind;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::{
    components::{keep_labels, Components},
    Alert, AlertKind, AlertRules, Figure, Severity,
};
use crate::{
    analysis::{
        algo::centrality::{pagerank, PageRankConfig},
        rank_order,
        relatedness::{of_member_mixes, MixMatrix},
        relations::crossing::capital_ties_by_other,
        relations::fusion::{cross_industry_ties_by_other, IndustryLevel},
        relations::overlap::member_jaccards,
        relations::substitution::{substitute_scores, SubstituteConfig},
        stages::stage::{assess_and_detect_with, Stage},
        stages::stage_config::StageConfig,
        stages::StageContext,
        Cancelled, Control,
    },
    graph::{AnalysisGraph, GraphFilter},
    model::{Change, Id},
    network::{ties::Ties, EdgeKey, Ix, Network},
};

/// `alerts` with every kind raised more than [`MAX_ALERTS_PER_KIND`] times
/// replaced by one alert of that kind ([`summary_of`]). Kinds keep their
/// first order.
fn summarised(alerts: Vec<Alert>) -> Vec<Alert> {
    let mut counts: HashMap<AlertKind, usize> = HashMap::new();
    for alert in &alerts {
        *counts.entry(alert.kind).or_default() += 1;
    }
    if counts.values().all(|n| *n <= MAX_ALERTS_PER_KIND) {
        return alerts;
    }
    let mut out: Vec<Option<Alert>> = Vec::new();
    // Each summarised kind: where its summary goes, and its alerts.
    let mut floods: HashMap<AlertKind, (usize, Vec<Alert>)> = HashMap::new();
    for alert in alerts {
        if counts[&alert.kind] <= MAX_ALERTS_PER_KIND {
            out.push(Some(alert));
            continue;
        }
        let flood = floods.entry(alert.kind).or_insert_with(|| {
            out.push(None);
            (out.len() - 1, Vec::new())
        });
        flood.1.push(alert);
    }
    for (kind, (at, flood)) in floods {
        out[at] = summary_of(counts[&kind], flood);
    }
    out.into_iter().flatten().collect()
}

/// One alert for `count` alerts of one kind: the most severe of `alerts`,
/// its count (`alerts`), and the clusters, actors and messages of the first
/// [`SUMMARY_LISTS`]. None without alerts.
fn summary_of(count: usize, alerts: impl IntoIterator<Item = Alert>) -> Option<Alert> {
    let mut alerts = alerts.into_iter();
    let first = alerts.next()?;
    let mut summary = Alert {
        figures: vec![Figure::new("alerts", 0.0, count as f64)],
        message: format!(
            "{count} {} alerts in one evaluation, more than {MAX_ALERTS_PER_KIND}: summarised; the first {SUMMARY_LISTS}: {}",
            first.kind.as_str(),
            first.message
        ),
        ..first
    };
    for (listed, alert) in (1..).zip(alerts) {
        summary.severity = summary.severity.max(alert.severity);
        if listed >= SUMMARY_LISTS {
            continue;
        }
        summary.message.push_str(" | ");
        summary.message.push_str(&alert.message);
        for c in alert.clusters {
            if !summary.clusters.contains(&c) {
                summary.clusters.push(c);
            }
        }
        for a in alert.actors {
            if !summary.actors.contains(&a) {
                summary.actors.push(a);
            }
        }
    }
    Some(summary)
}

/// Actors with a score, best first.
type Ranked = Vec<(Id, f64)>;

/// The figures kept per cluster between evaluations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub stage: Stage,
    /// REGIONAL, GLOBAL, VIRTUAL scores and whether each passed.
    pub scores: [f64; 3],
    pub passed: [bool; 3],
    /// The most confident virtual-integration pattern: confidence and parts.
    pub pattern: Option<(f64, u32)>,
    /// PageRank top-k of the cluster's own network, best first, and the k
    /// it was taken with (a top-k taken with another k is not compared).
    pub top: Vec<(Id, f64)>,
    pub top_k: u32,
    /// Each member with the label of its component in the cluster's own
    /// network, sorted by member; labels carried over from the figures
    /// kept before ([`keep_labels`]), so a step stores only what changed.
    pub components: Components,
    /// Member Jaccard with every cluster sharing a member.
    pub overlaps: Vec<(Id, f64)>,
    /// The whole across clusters the cluster is virtual through. Last, so
    /// figures kept before it existed still read ([`ClusterState::decode`]).
    pub whole: Option<WholeState>,
}

/// A whole across clusters as kept: its id, its clusters, its size and confidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WholeState {
    pub id: Id,
    pub clusters: Vec<Id>,
    pub parts: u32,
    pub confidence: f64,
}

/// [`ClusterState`] as kept before wholes across clusters.
#[derive(Deserialize)]
struct ClusterStateBeforeWholes {
    stage: Stage,
    scores: [f64; 3],
    passed: [bool; 3],
    pattern: Option<(f64, u32)>,
    top: Vec<(Id, f64)>,
    top_k: u32,
    components: Vec<(Id, u32)>,
    overlaps: Vec<(Id, f64)>,
}

impl ClusterState {
    /// Reads kept figures, those written before wholes across clusters too
    /// (they read as in no whole; the next round of the cluster fills it).
    pub fn decode(bytes: &[u8]) -> Result<ClusterState, bincode::Error> {
        bincode::deserialize(bytes).or_else(|error| {
            let old: ClusterStateBeforeWholes = bincode::deserialize(bytes).map_err(|_| error)?;
            Ok(ClusterState {
                stage: old.stage,
                scores: old.scores,
                passed: old.passed,
                pattern: old.pattern,
                top: old.top,
                top_k: old.top_k,
                components: old.components,
                overlaps: old.overlaps,
                whole: None,
            })
        })
    }
}

#[cfg(test)]
impl ClusterState {
    /// A regional cluster with the given member overlaps and nothing else.
    pub(crate) fn with_overlaps(overlaps: &[(&str, f64)]) -> ClusterState {
        ClusterState {
            stage: Stage::RegionalIntegration,
            scores: [0.5; 3],
            passed: [true, false, false],
            pattern: None,
            top: Vec::new(),
            top_k: 5,
            components: Vec::new(),
            overlaps: overlaps.iter().map(|(c, j)| (Id::from(*c), *j)).collect(),
            whole: None,
        }
    }
}

/// What one evaluation found: alerts (not yet numbered) and the new figures
/// of the clusters it recomputed (`None`: the cluster is gone).
#[derive(Default)]
pub struct Outcome {
    pub alerts: Vec<Alert>,
    pub states: Vec<(Id, Option<ClusterState>)>,
}

pub struct Evaluator<'a> {
    pub stage: &'a StageConfig,
    pub rules: &'a AlertRules,
    pub revision: u64,
    pub now_unix_ms: i64,
    /// Set at shutdown: the round stops between clusters, unstored (the next
    /// start evaluates its batches again from the log).
    pub stop: &'a AtomicBool,
}

const STAGE_NAMES: [&str; 3] = ["REGIONAL_INTEGRATION", "GLOBAL_VALUE_CHAIN", "VIRTUAL_INTEGRATION"];
/// Alerts of one kind one evaluation raises at most; past it they are
/// summarised in one (a legal batch once raised 32,640 at once, which no
/// subscriber reads and every replica stores).
pub const MAX_ALERTS_PER_KIND: usize = 100;
/// The alerts a summary names, with their clusters and actors.
const SUMMARY_LISTS: usize = 20;
/// Actors named in one fragmentation alert, at most.
const CUT_OFF_LISTED: usize = 20;
/// Actors named in one link alert, at most.
const ACTORS_LISTED: usize = 20;
/// Members whose links a round reads at once: about 50 MB of ties on the
/// national network.
const MEMBERS_READ_AT_ONCE: usize = 100_000;

impl Evaluator<'_> {
    /// Figures of every cluster: the baseline when nothing is kept yet.
    pub fn baseline(&self, network: &Network) -> Result<Vec<(Id, ClusterState)>, Cancelled> {
        let all: Vec<Id> = network.clusters.keys().cloned().collect();
        self.states(network, &all)
    }

    /// Evaluates a round: `changes` took `before` to `after`. Without
    /// `before` (a restart after a crash left batches unevaluated) every
    /// cluster is recomputed and the event alerts of those batches are
    /// skipped: whether a link was new cannot be told any more. The engine
    /// runs the two halves, [`Evaluator::events`] and
    /// [`Evaluator::state_changes`], apart; this is both at once.
    pub fn evaluate<'c>(
        &self,
        before: Option<&Network>,
        after: &Network,
        changes: impl Iterator<Item = &'c Change>,
        kept: &HashMap<Id, ClusterState>,
    ) -> Result<Outcome, Cancelled> {
        let Some(before) = before else {
            return self.state_changes(after, &every_cluster(after, kept), kept);
        };
        // One batch: a cluster made by `changes` is new to all of them.
        let mut round = Round::new(before, after, kept);
        for change in changes {
            round.take(0, change);
        }
        let mut outcome = self.state_changes(after, &round.affected(), kept)?;
        outcome.alerts.extend(self.round_events(&round));
        Ok(outcome)
    }

    /// The state alerts of `clusters` (figures recomputed on `after` and
    /// compared with those kept) and their new figures (`None`: gone).
    pub fn state_changes(
        &self,
        after: &Network,
        clusters: &[Id],
        kept: &HashMap<Id, ClusterState>,
    ) -> Result<Outcome, Cancelled> {
        let mut outcome = Outcome::default();
        let (live, gone): (Vec<Id>, Vec<Id>) = clusters.iter().cloned().partition(|c| after.clusters.contains_key(c));
        outcome.states.extend(gone.into_iter().map(|c| (c, None)));
        let mut fresh = self.states(after, &live)?;
        // A whole's clusters are recomputed together: a batch that touches
        // one of them can make or break the whole for all.
        let recomputed: HashSet<&Id> = clusters.iter().collect();
        let mut partners: BTreeSet<Id> = BTreeSet::new();
        for (cluster, new) in &fresh {
            let old = kept.get(cluster).and_then(|s| s.whole.as_ref());
            for whole in old.into_iter().chain(new.whole.as_ref()) {
                partners.extend(whole.clusters.iter().filter(|c| !recomputed.contains(c)).cloned());
            }
        }
        partners.retain(|c| after.clusters.contains_key(c));
        let partners: Vec<Id> = partners.into_iter().collect();
        fresh.extend(self.states(after, &partners)?);
        for (cluster, new) in fresh.iter_mut() {
            if let Some(old) = kept.get(cluster) {
                keep_labels(&old.components, &mut new.components);
            }
        }
        let mut pairs_seen: HashSet<(Id, Id)> = HashSet::new();
        for (cluster, new) in &fresh {
            if let Some(old) = kept.get(cluster) {
                self.compare(cluster, old, new, &mut pairs_seen, &mut outcome.alerts);
            }
        }
        let old_wholes = fresh.iter().filter_map(|(c, _)| kept.get(c)?.whole.as_ref());
        let new_wholes = fresh.iter().filter_map(|(_, s)| s.whole.as_ref());
        self.wholes(old_wholes, new_wholes, &mut outcome.alerts);
        outcome.states.extend(fresh.into_iter().map(|(c, s)| (c, Some(s))));
        outcome.alerts.retain(|a| self.rules.enabled(a.kind));
        outcome.alerts = summarised(std::mem::take(&mut outcome.alerts));
        Ok(outcome)
    }

    /// The event alerts of `changes`, which took `before` to `after`: new
    /// links across clusters and lost substitutes. They need no cluster's
    /// figures, so the engine raises them before it recomputes any. Each
    /// change comes with the position of its batch in the round: what a
    /// link raises depends on the batches before its own, not on how many
    /// batches the engine happened to take in together.
    pub fn events<'c>(
        &self,
        before: &Network,
        after: &Network,
        changes: impl Iterator<Item = (usize, &'c Change)>,
        kept: &HashMap<Id, ClusterState>,
    ) -> Vec<Alert> {
        let mut round = Round::new(before, after, kept);
        for (batch, change) in changes {
            round.take(batch as u64, change);
        }
        self.round_events(&round)
    }

    /// The event alerts of a round whose changes were all taken.
    pub fn round_events(&self, round: &Round) -> Vec<Alert> {
        let mut alerts = Vec::new();
        self.link_events(round, &mut alerts);
        if self.rules.enabled(AlertKind::SubstituteLost) {
            self.lost_substitutes(round.before, round.after, &round.profiles, &mut alerts);
        }
        if [
            AlertKind::SpecialisationGained,
            AlertKind::SpecialisationLost,
            AlertKind::ComplexityShift,
        ]
        .iter()
        .any(|kind| self.rules.enabled(*kind))
        {
            self.complexity_events(round, &mut alerts);
        }
        alerts.retain(|a| self.rules.enabled(a.kind));
        summarised(alerts)
    }

    fn alert(
        &self,
        kind: AlertKind,
        severity: Severity,
        clusters: Vec<Id>,
        actors: Vec<Id>,
        figures: Vec<Figure>,
        message: String,
    ) -> Alert {
        Alert {
            sequence: 0,
            revision: self.revision,
            kind,
            severity,
            clusters,
            actors,
            figures,
            message,
            raised_at_unix_ms: self.now_unix_ms,
        }
    }

    /// The figures of the named clusters, a part at a time: each part's
    /// members' links are read once (see [`Ties`]) and serve its stage
    /// assessment, its places, its core firms and its own network.
    fn states(&self, network: &Network, clusters: &[Id]) -> Result<Vec<(Id, ClusterState)>, Cancelled> {
        let mut states = Vec::with_capacity(clusters.len());
        let mut rest = clusters;
        while !rest.is_empty() {
            // Parts of about MEMBERS_READ_AT_ONCE members bound the links
            // held at once (a bulk round covers every cluster).
            let mut members = 0;
            let take = rest
                .iter()
                .position(|c| {
                    members += network.members.get(c).map_or(0, |m| m.len());
                    members > MEMBERS_READ_AT_ONCE
                })
                .map_or(rest.len(), |at| at + 1);
            let (part, after) = rest.split_at(take);
            states.extend(self.states_of(network, part)?);
            rest = after;
        }
        Ok(states)
    }

    fn states_of(&self, network: &Network, clusters: &[Id]) -> Result<Vec<(Id, ClusterState)>, Cancelled> {
        let control = Control::new(self.stop, &|_, _, _| {}, Duration::from_secs(3600));
        // Members are looked up by id: in parallel for a large round.
        let members: Vec<Ix> = clusters
            .par_iter()
            .flat_map_iter(|c| network.member_indexes(c))
            .collect();
        let ties = Ties::read(network, members);
        let filter = GraphFilter {
            clusters: clusters.to_vec(),
            ..GraphFilter::default()
        };
        let assessed: HashMap<Id, _> = assess_and_detect_with(
            StageContext {
                network,
                filter: &filter,
                config: self.stage,
                control: &control,
            },
            Some(&ties),
        )?
        .into_iter()
        .map(|(a, patterns)| (a.cluster.clone(), (a, patterns)))
        .collect();
        // Each cluster's own figures are its own: they run in parallel (the
        // thread's low priority leaves the cores to the writer and the
        // gRPC threads when they are busy).
        clusters
            .par_iter()
            .map(|cluster| {
                let (stage, scores, passed, pattern, whole) = match assessed.get(cluster) {
                    Some((a, patterns)) => {
                        let mut scores = [0.0; 3];
                        let mut passed = [false; 3];
                        for (i, s) in a.scores.iter().take(3).enumerate() {
                            scores[i] = s.score;
                            passed[i] = s.passed();
                        }
                        let pattern = patterns.first().map(|p| (p.confidence, p.parts.len() as u32));
                        let whole = a.pattern.as_ref().filter(|p| p.clusters.len() > 1).map(|p| WholeState {
                            id: p.id.clone(),
                            clusters: p.clusters.clone(),
                            parts: p.parts.len() as u32,
                            confidence: p.confidence,
                        });
                        (a.stage, scores, passed, pattern, whole)
                    }
                    None => (Stage::Unclassified, [0.0; 3], [false; 3], None, None),
                };
                let (top, components) = own_network(network, &ties, cluster, self.rules.centrality_top_k as usize);
                let state = ClusterState {
                    stage,
                    scores,
                    passed,
                    pattern,
                    top,
                    top_k: self.rules.centrality_top_k,
                    components,
                    overlaps: member_jaccards(network, cluster),
                    whole,
                };
                Ok((cluster.clone(), state))
            })
            .collect()
    }

    fn compare(
        &self,
        cluster: &Id,
        old: &ClusterState,
        new: &ClusterState,
        pairs_seen: &mut HashSet<(Id, Id)>,
        alerts: &mut Vec<Alert>,
    ) {
        let one = || vec![cluster.clone()];
        // STAGE_CHANGED: the verdict, or a score crossing its threshold.
        if old.stage != new.stage || old.passed != new.passed {
            let mut figures = vec![Figure::new("stage", stage_number(old.stage), stage_number(new.stage))];
            for (i, name) in STAGE_NAMES.iter().enumerate() {
                figures.push(Figure::new(format!("score.{name}"), old.scores[i], new.scores[i]));
            }
            let (severity, message) = if old.stage != new.stage {
                (
                    Severity::Warning,
                    format!(
                        "cluster {cluster} moved from {} to {}",
                        old.stage.as_str(),
                        new.stage.as_str()
                    ),
                )
            } else {
                let crossed: Vec<String> = (0..3)
                    .filter(|&i| old.passed[i] != new.passed[i])
                    .map(|i| {
                        let way = if new.passed[i] { "now reaches" } else { "fell below" };
                        format!(
                            "the {} score ({:.3}) {way} its threshold",
                            STAGE_NAMES[i], new.scores[i]
                        )
                    })
                    .collect();
                (
                    Severity::Info,
                    format!(
                        "cluster {cluster}: {}; the verdict stays {}",
                        crossed.join(", "),
                        new.stage.as_str()
                    ),
                )
            };
            alerts.push(self.alert(AlertKind::StageChanged, severity, one(), Vec::new(), figures, message));
        }
        // VIRTUAL_INTEGRATION_DETECTED / _LOST.
        match (old.pattern, new.pattern) {
            (None, Some((confidence, parts))) => alerts.push(self.alert(
                AlertKind::VirtualIntegrationDetected,
                Severity::Info,
                one(),
                Vec::new(),
                vec![
                    Figure::new("confidence", 0.0, confidence),
                    Figure::new("parts", 0.0, parts as f64),
                ],
                format!("cluster {cluster}: {parts} places now form a virtual-integration pattern (confidence {confidence:.3})"),
            )),
            (Some((confidence, parts)), None) => alerts.push(self.alert(
                AlertKind::VirtualIntegrationLost,
                Severity::Warning,
                one(),
                Vec::new(),
                vec![
                    Figure::new("confidence", confidence, 0.0),
                    Figure::new("parts", parts as f64, 0.0),
                ],
                format!("cluster {cluster}: its places no longer form a virtual-integration pattern (it had {parts} parts, confidence {confidence:.3})"),
            )),
            _ => {}
        }
        self.centrality_shift(cluster, old, new, alerts);
        self.fragmentation(cluster, old, new, alerts);
        // OVERLAP_CROSSED: each pair once, with the figures kept for it.
        let threshold = self.rules.overlap_threshold;
        let jaccard = |list: &[(Id, f64)], other: &Id| list.iter().find(|(c, _)| c == other).map_or(0.0, |(_, j)| *j);
        let others: BTreeSet<&Id> = old.overlaps.iter().chain(&new.overlaps).map(|(c, _)| c).collect();
        for other in others {
            let pair = if cluster < other {
                (cluster.clone(), other.clone())
            } else {
                (other.clone(), cluster.clone())
            };
            if !pairs_seen.insert(pair.clone()) {
                continue;
            }
            let (before, after) = (jaccard(&old.overlaps, other), jaccard(&new.overlaps, other));
            if (before >= threshold) != (after >= threshold) {
                let way = if after >= threshold { "rose to" } else { "fell to" };
                alerts.push(self.alert(
                    AlertKind::OverlapCrossed,
                    Severity::Info,
                    vec![pair.0, pair.1],
                    Vec::new(),
                    vec![Figure::new("member_jaccard", before, after)],
                    format!("the member overlap of {cluster} and {other} {way} {after:.3} (threshold {threshold})"),
                ));
            }
        }
    }

    /// WHOLE_FORMED, _GREW, _SHRANK, _DISSOLVED: the wholes across
    /// clusters kept for the round's clusters against those found now, each
    /// whole once. A new whole sharing a cluster with an old one grew or
    /// shrank from it (by parts); one sharing none formed; an old whole
    /// sharing a cluster with no new one dissolved.
    fn wholes<'w>(
        &self,
        old: impl Iterator<Item = &'w WholeState>,
        new: impl Iterator<Item = &'w WholeState>,
        alerts: &mut Vec<Alert>,
    ) {
        let old: BTreeMap<&Id, &WholeState> = old.map(|w| (&w.id, w)).collect();
        let new: BTreeMap<&Id, &WholeState> = new.map(|w| (&w.id, w)).collect();
        let shares = |a: &WholeState, b: &WholeState| a.clusters.iter().any(|c| b.clusters.contains(c));
        let figures = |before: Option<&WholeState>, after: Option<&WholeState>| {
            let of = |w: Option<&WholeState>, f: fn(&WholeState) -> f64| w.map_or(0.0, f);
            vec![
                Figure::new("parts", of(before, |w| w.parts as f64), of(after, |w| w.parts as f64)),
                Figure::new(
                    "clusters",
                    of(before, |w| w.clusters.len() as f64),
                    of(after, |w| w.clusters.len() as f64),
                ),
                Figure::new("confidence", of(before, |w| w.confidence), of(after, |w| w.confidence)),
            ]
        };
        let named = |w: &WholeState| w.clusters.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ");
        for (id, after) in &new {
            if old.contains_key(id) {
                continue; // the same parts: no change of the whole
            }
            // The old whole it most overlaps, by shared clusters then id.
            let from = old
                .values()
                .filter(|o| shares(o, after))
                .max_by_key(|o| (o.clusters.iter().filter(|c| after.clusters.contains(c)).count(), &o.id));
            let mut clusters: BTreeSet<Id> = after.clusters.iter().cloned().collect();
            let (kind, severity, message) = match from {
                None => (
                    AlertKind::WholeFormed,
                    Severity::Info,
                    format!(
                        "{} places of {} now form the virtual whole {id} (confidence {:.3})",
                        after.parts,
                        named(after),
                        after.confidence
                    ),
                ),
                Some(before) => {
                    clusters.extend(before.clusters.iter().cloned());
                    let grew = after.parts >= before.parts;
                    (
                        if grew {
                            AlertKind::WholeGrew
                        } else {
                            AlertKind::WholeShrank
                        },
                        Severity::Info,
                        format!(
                            "the virtual whole {} {} from {} to {} places and is now {id} across {} (confidence {:.3})",
                            before.id,
                            if grew { "grew" } else { "shrank" },
                            before.parts,
                            after.parts,
                            named(after),
                            after.confidence
                        ),
                    )
                }
            };
            alerts.push(self.alert(
                kind,
                severity,
                clusters.into_iter().collect(),
                Vec::new(),
                figures(from.copied(), Some(after)),
                message,
            ));
        }
        for (id, before) in &old {
            if new.contains_key(id) || new.values().any(|n| shares(n, before)) {
                continue;
            }
            alerts.push(self.alert(
                AlertKind::WholeDissolved,
                Severity::Warning,
                before.clusters.clone(),
                Vec::new(),
                figures(Some(before), None),
                format!(
                    "the virtual whole {id} across {} no longer holds (it had {} places, confidence {:.3})",
                    named(before),
                    before.parts,
                    before.confidence
                ),
            ));
        }
    }

    /// CENTRALITY_SHIFT: a member that stayed in the cluster entered or left
    /// its top-k, or moved `centrality_rank_move` places within it.
    fn centrality_shift(&self, cluster: &Id, old: &ClusterState, new: &ClusterState, alerts: &mut Vec<Alert>) {
        if old.top_k != new.top_k {
            return;
        }
        let k = new.top_k as usize;
        let rank = |top: &[(Id, f64)], id: &Id| top.iter().take(k).position(|(a, _)| a == id).map(|r| r + 1);
        let value = |top: &[(Id, f64)], id: &Id| top.iter().find(|(a, _)| a == id).map_or(0.0, |(_, v)| *v);
        let was_member: HashSet<&Id> = old.components.iter().map(|(a, _)| a).collect();
        let is_member: HashSet<&Id> = new.components.iter().map(|(a, _)| a).collect();
        let mut named: Vec<Id> = Vec::new();
        let mut figures = Vec::new();
        let mut stayer_moved = false;
        let candidates: BTreeSet<&Id> = old
            .top
            .iter()
            .take(k)
            .chain(new.top.iter().take(k))
            .map(|(a, _)| a)
            .collect();
        for id in candidates {
            let (before, after) = (rank(&old.top, id), rank(&new.top, id));
            let moved = match (before, after) {
                (Some(b), Some(a)) => b.abs_diff(a) >= self.rules.centrality_rank_move as usize,
                (None, None) => false,
                _ => true,
            };
            if !moved {
                continue;
            }
            stayer_moved |= was_member.contains(id) && is_member.contains(id);
            named.push(id.clone());
            figures.push(Figure::new(
                format!("rank.{id}"),
                before.unwrap_or(0) as f64,
                after.unwrap_or(0) as f64,
            ));
            figures.push(Figure::new(
                format!("pagerank.{id}"),
                value(&old.top, id),
                value(&new.top, id),
            ));
        }
        if !stayer_moved {
            // Only members joining or leaving: a membership change, not a shift.
            return;
        }
        let leader_changed = old.top.first().map(|(a, _)| a) != new.top.first().map(|(a, _)| a);
        let severity = if leader_changed {
            Severity::Warning
        } else {
            Severity::Info
        };
        let message = format!(
            "cluster {cluster}: the PageRank top {k} changed for {}{}",
            named.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
            if leader_changed {
                format!(
                    "; the most central member is now {}",
                    new.top.first().map_or("none".to_string(), |(a, _)| a.to_string())
                )
            } else {
                String::new()
            }
        );
        alerts.push(self.alert(
            AlertKind::CentralityShift,
            severity,
            vec![cluster.clone()],
            named,
            figures,
            message,
        ));
    }

    /// CLUSTER_FRAGMENTED: members that were in one component (and still
    /// are members) are now in several.
    fn fragmentation(&self, cluster: &Id, old: &ClusterState, new: &ClusterState, alerts: &mut Vec<Alert>) {
        let now: HashMap<&Id, u32> = new.components.iter().map(|(a, c)| (a, *c)).collect();
        // Old component -> new component -> the members that went there.
        let mut split: BTreeMap<u32, BTreeMap<u32, Vec<&Id>>> = BTreeMap::new();
        for (actor, was) in &old.components {
            if let Some(&is) = now.get(actor) {
                split.entry(*was).or_default().entry(is).or_default().push(actor);
            }
        }
        let mut cut_off: Vec<Id> = Vec::new();
        for parts in split.values().filter(|parts| parts.len() > 1) {
            let largest = parts
                .iter()
                .max_by_key(|(label, members)| (members.len(), std::cmp::Reverse(**label)));
            let largest = largest.map(|(label, _)| *label);
            for (label, members) in parts {
                if Some(*label) != largest {
                    cut_off.extend(members.iter().map(|a| (*a).clone()));
                }
            }
        }
        if cut_off.is_empty() {
            return;
        }
        let (components_before, largest_before) = component_sizes(&old.components);
        let (components_after, largest_after) = component_sizes(&new.components);
        let message = format!(
            "cluster {cluster}'s network split: {} members are cut off from the rest (components: {components_before} before, {components_after} now)",
            cut_off.len()
        );
        cut_off.sort();
        cut_off.truncate(CUT_OFF_LISTED);
        alerts.push(self.alert(
            AlertKind::ClusterFragmented,
            Severity::Warning,
            vec![cluster.clone()],
            cut_off,
            vec![
                Figure::new("components", components_before as f64, components_after as f64),
                Figure::new("largest_component", largest_before as f64, largest_after as f64),
            ],
            message,
        ));
    }

    /// FUSION_LINK_ADDED and CROSS_INVESTMENT_ADDED: links new this round,
    /// one alert per pair of clusters (a burst of new ties between two
    /// clusters is one event, not hundreds). A pair of clusters both unknown
    /// before the link's batch (a bulk load, clusters and ties in one
    /// batch) sets its baseline quietly; a cluster made by an earlier batch
    /// is known, whether or not the engine took that batch in first.
    /// SPECIALISATION_GAINED / _LOST and COMPLEXITY_SHIFT of the clusters
    /// whose members the changes touched, in the matrix of every cluster by
    /// ISIC class, members counted (`relatedness::of_member_mixes`), before
    /// and after the round. A cluster with no member before is new: its
    /// first specialisations are its baseline, not news. Writes of links
    /// alone change no member and cost nothing here.
    fn complexity_events(&self, round: &Round, alerts: &mut Vec<Alert>) {
        let (before, after, touched, actors_of) = (round.before, round.after, &round.touched, &round.actors_of);
        if touched.is_empty() {
            return;
        }
        // ECI only when its alert is on and the eigenvectors are cheap
        // enough for every write (`MAX_INDUSTRIES_FOR_ALERTS`): the flips
        // of M need RCA alone.
        let matrices = |eci: bool| Some((of_member_mixes(before, eci)?, of_member_mixes(after, eci)?));
        let with_eci = if self.rules.enabled(AlertKind::ComplexityShift) {
            matrices(true)
        } else {
            None
        };
        let Some((old, new)) = with_eci.or_else(|| matrices(false)) else {
            return; // more industries than even M is computed for
        };
        for cluster in touched {
            let (Some(b), Some(a)) = (old.cluster_index(cluster), new.cluster_index(cluster)) else {
                continue;
            };
            if old.cluster_total(b) <= 0.0 {
                continue;
            }
            fn held(m: &MixMatrix, c: usize) -> BTreeMap<&str, f64> {
                let k = m.figures.cols;
                (0..k)
                    .filter(|p| m.figures.mcp[c * k + p])
                    .map(|p| (m.industries[p].as_str(), m.figures.rca[c * k + p]))
                    .collect()
            }
            let rca = |m: &MixMatrix, c: usize, industry: &str| -> f64 {
                m.industry_index(industry)
                    .map(|p| m.figures.rca[c * m.figures.cols + p])
                    .filter(|r| !r.is_nan())
                    .unwrap_or(0.0)
            };
            let (was, is) = (held(&old, b), held(&new, a));
            let actors = actors_of.get(cluster).cloned().unwrap_or_default();
            for (kind, severity, these, verb) in [
                (
                    AlertKind::SpecialisationGained,
                    Severity::Info,
                    is.keys().filter(|i| !was.contains_key(*i)).copied().collect::<Vec<_>>(),
                    "is now specialised in",
                ),
                (
                    AlertKind::SpecialisationLost,
                    Severity::Warning,
                    was.keys().filter(|i| !is.contains_key(*i)).copied().collect(),
                    "is no longer specialised in",
                ),
            ] {
                if these.is_empty() {
                    continue;
                }
                let figures = these
                    .iter()
                    .map(|i| Figure::new(format!("rca.{i}"), rca(&old, b, i), rca(&new, a, i)))
                    .collect();
                let listed: Vec<&str> = these.iter().take(ACTORS_LISTED).copied().collect();
                alerts.push(self.alert(
                    kind,
                    severity,
                    vec![cluster.clone()],
                    actors.clone(),
                    figures,
                    format!("cluster {cluster} {verb} {}", listed.join(", ")),
                ));
            }
            let (eci_before, eci_after) = (old.figures.eci[b], new.figures.eci[a]);
            if !eci_before.is_nan() && !eci_after.is_nan() && (eci_after - eci_before).abs() >= self.rules.eci_shift {
                alerts.push(self.alert(
                    AlertKind::ComplexityShift,
                    Severity::Info,
                    vec![cluster.clone()],
                    actors,
                    vec![
                        Figure::new("eci", eci_before, eci_after),
                        Figure::new("diversity", old.figures.diversity[b], new.figures.diversity[a]),
                    ],
                    format!(
                        "cluster {cluster}: economic complexity {} from {eci_before:.3} to {eci_after:.3}",
                        if eci_after > eci_before { "rose" } else { "fell" }
                    ),
                ));
            }
        }
    }

    fn link_events(&self, round: &Round, alerts: &mut Vec<Alert>) {
        let (before, after) = (round.before, round.after);
        let named = |links: &NewTies| -> Vec<Id> {
            let mut actors: Vec<Id> = links.first.iter().flat_map(|(s, t)| [s.clone(), t.clone()]).collect();
            actors.dedup();
            actors.truncate(ACTORS_LISTED);
            actors
        };
        let listed = |links: &NewTies| -> String {
            let shown: Vec<String> = links.first.iter().take(3).map(|(s, t)| format!("{s} to {t}")).collect();
            let more = links.count.saturating_sub(3);
            if more > 0 {
                format!("{} and {more} more", shown.join(", "))
            } else {
                shown.join(", ")
            }
        };
        /// Each cluster pair's new links.
        type Pairs<'r> = &'r [(&'r (Id, Id), &'r NewTies)];
        /// A cluster's ties of one kind to each other cluster.
        type Count = fn(&Network, &Id) -> HashMap<Id, u64>;
        let (fusion, capital) = (sorted(&round.fusion), sorted(&round.capital));
        let kinds: [(AlertKind, Pairs, Count, &str, &str); 2] = [
            (
                AlertKind::FusionLinkAdded,
                &fusion,
                |network, cluster| cross_industry_ties_by_other(network, cluster, IndustryLevel::Division),
                "cross_industry_ties",
                "cross-industry",
            ),
            (
                AlertKind::CrossInvestmentAdded,
                &capital,
                capital_ties_by_other,
                "capital_ties",
                "investment or ownership",
            ),
        ];
        // Tie counts per cluster, each walked once per network and kind
        // however many pairs it is in, the walks in parallel: they are most
        // of a batch's events. Not for a kind with more pairs than are
        // raised one by one: those alerts are summarised, with their
        // messages and not their figures (a bulk load ties every cluster to
        // every other, and the walks read the whole network twice a round).
        let networks = [before, after];
        let shown = |kind: AlertKind, pairs: Pairs| self.rules.enabled(kind) && pairs.len() <= MAX_ALERTS_PER_KIND;
        let mut needed: Vec<(usize, usize, &Id)> = kinds
            .iter()
            .enumerate()
            .filter(|(_, (kind, pairs, ..))| shown(*kind, pairs))
            .flat_map(|(k, (_, pairs, ..))| pairs.iter().flat_map(move |((a, _), _)| [(k, 0, a), (k, 1, a)]))
            .collect();
        needed.sort_unstable();
        needed.dedup();
        let counts: HashMap<(usize, usize, &Id), HashMap<Id, u64>> = needed
            .into_par_iter()
            .map(|(k, which, a)| ((k, which, a), (kinds[k].2)(networks[which], a)))
            .collect();
        let between = |k: usize, which: usize, a: &Id, b: &Id| -> u64 {
            counts
                .get(&(k, which, a))
                .and_then(|by_other| by_other.get(b))
                .copied()
                .unwrap_or(0)
        };
        for (k, (kind, pairs, _, figure, what)) in kinds.iter().enumerate() {
            if !self.rules.enabled(*kind) {
                continue;
            }
            let one_by_one = shown(*kind, pairs);
            let raised = pairs.iter().map(|&((a, b), links)| {
                let clusters: Vec<Id> = [a, b].into_iter().filter(|c| !c.is_empty()).cloned().collect();
                let other = if b.is_empty() {
                    "actors outside any cluster".to_string()
                } else {
                    b.to_string()
                };
                let mut figures = vec![Figure::new("new_links", 0.0, links.count as f64)];
                if one_by_one {
                    figures.push(Figure::new(
                        *figure,
                        between(k, 0, a, b) as f64,
                        between(k, 1, a, b) as f64,
                    ));
                }
                self.alert(
                    *kind,
                    Severity::Info,
                    clusters,
                    named(links),
                    figures,
                    format!(
                        "{} new {what} tie(s) between {a} and {other}: {}",
                        links.count,
                        listed(links)
                    ),
                )
            });
            if one_by_one {
                alerts.extend(raised);
            } else {
                // Only the summary's first are made, not one alert a pair.
                alerts.extend(summary_of(pairs.len(), raised.take(SUMMARY_LISTS)));
            }
        }
    }

    /// SUBSTITUTE_LOST. Substitution scores are symmetric and depend on the
    /// two actors' ties and attributes only, so an enterprise can lose a
    /// substitute only when its own ties or attributes change, or those of
    /// the substitute do. For each actor whose ties were cut or whose
    /// attributes changed (or that was deleted), the substitutes it had
    /// before and has now tell who lost whom; only those are checked.
    fn lost_substitutes(&self, before: &Network, after: &Network, changed: &BTreeSet<Id>, alerts: &mut Vec<Alert>) {
        let config = SubstituteConfig {
            min_score: self.rules.min_substitute_score,
            ..SubstituteConfig::default()
        };
        let all = GraphFilter::default();
        // Each actor's substitutes, before (0) and after (1), computed once:
        // an actor can come up for several changed partners and again when
        // its alert is written.
        let mut memo: HashMap<(usize, Id), Vec<(Id, f64)>> = HashMap::new();
        let mut substitutes_in = |which: usize, id: &Id| -> Vec<(Id, f64)> {
            let network = if which == 0 { before } else { after };
            memo.entry((which, id.clone()))
                .or_insert_with(|| match network.ix_of(id) {
                    Some(ix) => substitute_scores(network, &all, ix, &config)
                        .into_iter()
                        .filter_map(|(ix, score)| network.actor(ix).map(|a| (a.id.clone(), score)))
                        .collect(),
                    None => Vec::new(),
                })
                .clone()
        };
        // Actor left without substitutes -> the substitutes it lost.
        let mut stranded: BTreeMap<Id, BTreeSet<Id>> = BTreeMap::new();
        for id in changed {
            let had = substitutes_in(0, id);
            let has = substitutes_in(1, id);
            if after.ix_of(id).is_some() && !had.is_empty() && has.is_empty() {
                stranded
                    .entry(id.clone())
                    .or_default()
                    .extend(had.iter().map(|(a, _)| a.clone()));
            }
            for (lost, _) in had.iter().filter(|(a, _)| !has.iter().any(|(b, _)| a == b)) {
                if changed.contains(lost) || after.ix_of(lost).is_none() {
                    continue; // judged in its own right, or gone
                }
                if substitutes_in(1, lost).is_empty() {
                    stranded.entry(lost.clone()).or_default().insert(id.clone());
                }
            }
        }
        for (id, lost) in stranded {
            let Some(actor) = after.ix_of(&id).and_then(|ix| after.actor(ix)) else {
                continue;
            };
            if !actor.kind.is_enterprise() {
                continue;
            }
            let had = substitutes_in(0, &id);
            let best = had.first().map_or(0.0, |(_, s)| *s);
            let mut actors = vec![id.clone()];
            actors.extend(lost.iter().cloned());
            alerts.push(self.alert(
                AlertKind::SubstituteLost,
                Severity::Critical,
                actor.cluster_ids.clone(),
                actors,
                vec![
                    Figure::new("substitutes", had.len() as f64, 0.0),
                    Figure::new("best_score", best, 0.0),
                ],
                format!(
                    "{id} has no substitute any more: it lost {}",
                    lost.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
}

/// The number the proto's Stage enum gives a stage.
fn stage_number(stage: Stage) -> f64 {
    match stage {
        Stage::Unclassified => 1.0,
        Stage::RegionalIntegration => 2.0,
        Stage::GlobalValueChain => 3.0,
        Stage::VirtualIntegration => 4.0,
    }
}

fn component_sizes(components: &[(Id, u32)]) -> (usize, usize) {
    let mut sizes: HashMap<u32, usize> = HashMap::new();
    for (_, label) in components {
        *sizes.entry(*label).or_default() += 1;
    }
    (sizes.len(), sizes.values().copied().max().unwrap_or(0))
}

/// Every cluster, kept or present: what a round whose network before is
/// unknown can have changed ([`Round::affected`] when it is known).
pub fn every_cluster(after: &Network, kept: &HashMap<Id, ClusterState>) -> Vec<Id> {
    let every: BTreeSet<Id> = kept.keys().chain(after.clusters.keys()).cloned().collect();
    every.into_iter().collect()
}

/// New links of one kind between one pair of clusters: how many, and the
/// first ones (as many as an alert names).
#[derive(Default)]
pub struct NewTies {
    pub count: usize,
    pub first: Vec<(Id, Id)>,
}

/// What a round's changes say for its event alerts and the clusters it
/// owes, taken one change at a time: an engine behind a bulk import reads
/// its backlog from the log in parts, so neither the backlog nor every new
/// link's ends are ever held whole.
pub struct Round<'n> {
    before: &'n Network,
    after: &'n Network,
    kept: &'n HashMap<Id, ClusterState>,
    /// Clusters new this round, with the first batch that made them.
    made_in: HashMap<Id, u64>,
    /// New links already counted (a link upserted twice in a round is new once).
    seen: FxHashSet<EdgeKey>,
    /// (cluster, other cluster or "" for none) -> new cross-industry ties.
    fusion: FxHashMap<(Id, Id), NewTies>,
    /// (cluster, other cluster) -> new investment or ownership ties.
    capital: FxHashMap<(Id, Id), NewTies>,
    /// Actors whose substitution profile changed: deleted actors, ends of
    /// removed links (also those a deleted actor took with it), and actors
    /// whose industry or segments changed.
    profiles: BTreeSet<Id>,
    /// Clusters whose members the round touched, with the first actors named.
    touched: BTreeSet<Id>,
    actors_of: BTreeMap<Id, Vec<Id>>,
    /// Clusters changed directly, actors whose clusters and partners'
    /// clusters are, and link ends whose clusters are: each actor looked
    /// up once however many changes name it (a bulk load names every actor
    /// ten times or more).
    clusters: BTreeSet<Id>,
    with_partners: FxHashSet<Id>,
    ends: FxHashSet<Id>,
}

impl<'n> Round<'n> {
    /// A round that took `before` to `after`; `kept` are the engine's
    /// figures (a cluster it keeps is known even if its figures are owed).
    pub fn new(before: &'n Network, after: &'n Network, kept: &'n HashMap<Id, ClusterState>) -> Self {
        Round {
            before,
            after,
            kept,
            made_in: HashMap::new(),
            seen: FxHashSet::default(),
            fusion: FxHashMap::default(),
            capital: FxHashMap::default(),
            profiles: BTreeSet::new(),
            touched: BTreeSet::new(),
            actors_of: BTreeMap::new(),
            clusters: BTreeSet::new(),
            with_partners: FxHashSet::default(),
            ends: FxHashSet::default(),
        }
    }

    /// Takes one change of the round's `batch`-th batch (batches in order).
    pub fn take(&mut self, batch: u64, change: &Change) {
        self.affects(change);
        self.profile(change);
        self.membership(change);
        match change {
            Change::UpsertCluster(cluster) if !self.before.clusters.contains_key(&cluster.id) => {
                self.made_in.entry(cluster.id.clone()).or_insert(batch);
            }
            Change::UpsertLink(link) => self.new_link(batch, link),
            _ => {}
        }
    }

    /// The clusters whose figures the round can have changed: those of
    /// every actor, link end, cluster link end and cluster it touched,
    /// before and after, and for an actor whose attributes changed also
    /// those of its partners (their stage figures count its country,
    /// industry and segments).
    pub fn affected(&self) -> Vec<Id> {
        let mut out = self.clusters.clone();
        let of_actor = |id: &str, partners: bool, out: &mut BTreeSet<Id>| {
            for network in [self.before, self.after] {
                let Some(ix) = network.ix_of(id) else { continue };
                let Some(actor) = network.actor(ix) else { continue };
                out.extend(actor.cluster_ids.iter().cloned());
                if partners {
                    for key in network.incident(ix) {
                        let other = if key.source == ix { key.target } else { key.source };
                        if let Some(other) = network.actor(other) {
                            out.extend(other.cluster_ids.iter().cloned());
                        }
                    }
                }
            }
        };
        for id in &self.with_partners {
            of_actor(id, true, &mut out);
        }
        for id in self.ends.iter().filter(|id| !self.with_partners.contains(*id)) {
            of_actor(id, false, &mut out);
        }
        out.into_iter().collect()
    }

    fn affects(&mut self, change: &Change) {
        let (before, after) = (self.before, self.after);
        let cluster_of = |end: &Id| -> Option<Id> {
            [before, after].iter().find_map(|n| {
                n.clusters
                    .contains_key(end)
                    .then(|| end.clone())
                    .or_else(|| n.sites.get(end).cloned())
            })
        };
        match change {
            Change::UpsertCluster(c) => {
                self.clusters.insert(c.id.clone());
            }
            Change::DeleteCluster { id, .. } => {
                self.clusters.insert(id.clone());
            }
            Change::UpsertActor(a) => {
                self.with_partners.insert(a.id.clone());
            }
            Change::DeleteActor { id, .. } => {
                self.with_partners.insert(id.clone());
            }
            Change::UpsertActorProfile(p) => {
                self.with_partners.insert(p.actor_id.clone());
            }
            Change::DeleteActorProfile { actor_id, .. } => {
                self.with_partners.insert(actor_id.clone());
            }
            Change::UpsertLink(l) => self.ends.extend([l.source.clone(), l.target.clone()]),
            Change::DeleteLink(k) => self.ends.extend([k.source.clone(), k.target.clone()]),
            Change::UpsertClusterLink(l) => self
                .clusters
                .extend([&l.source, &l.target].into_iter().filter_map(cluster_of)),
            Change::DeleteClusterLink(k) => self
                .clusters
                .extend([&k.source, &k.target].into_iter().filter_map(cluster_of)),
        }
    }

    fn profile(&mut self, change: &Change) {
        let (before, after) = (self.before, self.after);
        let removed_link = |key: EdgeKey, out: &mut BTreeSet<Id>| {
            let present = before
                .actor(key.source)
                .zip(before.actor(key.target))
                .and_then(|(s, t)| {
                    after.edge_key(&crate::model::LinkKey {
                        source: s.id.clone(),
                        target: t.id.clone(),
                        kind: key.kind,
                    })
                })
                .is_some_and(|e| after.links.contains_key(&e));
            if !present {
                for ix in [key.source, key.target] {
                    if let Some(actor) = before.actor(ix) {
                        out.insert(actor.id.clone());
                    }
                }
            }
        };
        let out = &mut self.profiles;
        match change {
            Change::DeleteLink(key) => {
                if let Some(edge) = before
                    .edge_key(&key.clone().canonical())
                    .filter(|e| before.links.contains_key(e))
                {
                    removed_link(edge, out);
                }
            }
            Change::DeleteActor { id, .. } => {
                if let Some(ix) = before.ix_of(id) {
                    out.insert(id.clone());
                    for key in before.incident(ix) {
                        removed_link(key, out);
                    }
                }
            }
            Change::UpsertActor(actor) => {
                let was = before.ix_of(&actor.id).and_then(|ix| before.actor(ix));
                if was.is_some_and(|was| was.industry != actor.industry || was.segments != actor.segments) {
                    out.insert(actor.id.clone());
                }
            }
            _ => {}
        }
    }

    fn membership(&mut self, change: &Change) {
        let id = match change {
            Change::UpsertActor(actor) => &actor.id,
            Change::DeleteActor { id, .. } => id,
            _ => return,
        };
        let was = self.before.ix_of(id).and_then(|ix| self.before.actor(ix));
        let is = self.after.ix_of(id).and_then(|ix| self.after.actor(ix));
        for cluster in was.into_iter().chain(is).flat_map(|a| a.cluster_ids.iter()) {
            self.touched.insert(cluster.clone());
            let named = self.actors_of.entry(cluster.clone()).or_default();
            if named.len() < ACTORS_LISTED && !named.contains(id) {
                named.push(id.clone());
            }
        }
    }

    fn new_link(&mut self, batch: u64, link: &crate::model::Link) {
        let (before, after) = (self.before, self.after);
        let key = link.key().canonical();
        let Some(edge) = after.edge_key(&key).filter(|e| after.links.contains_key(e)) else {
            return;
        };
        // The same indexes in the older network, if it had them.
        let existed =
            before.has_index(edge.source) && before.has_index(edge.target) && before.links.contains_key(&edge);
        if existed || !self.seen.insert(edge) {
            return;
        }
        let (Some(source), Some(target)) = (after.actor(edge.source), after.actor(edge.target)) else {
            return;
        };
        if source.cluster_ids.iter().any(|c| target.cluster_ids.contains(c)) {
            return; // inside a cluster
        }
        // Known: kept, there before the round (its figures may still be
        // owed when the engine raises events ahead of them), or made by an
        // earlier batch of it.
        let (kept, made_in) = (self.kept, &self.made_in);
        let known = |c: &Id| {
            kept.contains_key(c) || before.clusters.contains_key(c) || made_in.get(c).is_some_and(|b| *b < batch)
        };
        let outside = [Id::from("")];
        let sides = |clusters: &'n [Id]| clusters.iter().chain(outside.iter().filter(|_| clusters.is_empty()));
        let division = |code| IndustryLevel::Division.key(code);
        let (from, to) = (division(&source.industry), division(&target.industry));
        let cross_industry =
            source.kind.is_enterprise() && target.kind.is_enterprise() && from.is_some() && to.is_some() && from != to;
        for a in sides(&source.cluster_ids) {
            for b in sides(&target.cluster_ids) {
                if !(known(a) || known(b)) {
                    continue;
                }
                // The cluster first; "" (no cluster) second.
                let pair = if b.is_empty() || (!a.is_empty() && a < b) {
                    (a.clone(), b.clone())
                } else {
                    (b.clone(), a.clone())
                };
                let ends = || (source.id.clone(), target.id.clone());
                if cross_industry {
                    self.fusion.entry(pair.clone()).or_default().push(ends());
                }
                let both_clustered = !a.is_empty() && !b.is_empty();
                if both_clustered && key.kind.is_capital() {
                    self.capital.entry(pair).or_default().push(ends());
                }
            }
        }
    }
}

impl NewTies {
    /// Links kept: enough for the actors an alert names (each link two).
    const KEPT: usize = ACTORS_LISTED / 2;

    fn push(&mut self, ends: (Id, Id)) {
        self.count += 1;
        if self.first.len() < Self::KEPT {
            self.first.push(ends);
        }
    }
}

/// A round's cluster pairs in order, whatever order their links came in.
fn sorted(pairs: &FxHashMap<(Id, Id), NewTies>) -> Vec<(&(Id, Id), &NewTies)> {
    let mut sorted: Vec<_> = pairs.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    sorted
}

/// The cluster's own network (links with both ends members): its PageRank
/// top-k and each member's component.
fn own_network(network: &Network, ties: &Ties, cluster: &Id, k: usize) -> (Ranked, Components) {
    let members: Vec<Ix> = network.member_indexes(cluster).collect();
    // FxHash: this runs for every cluster of a round, most of them small.
    let local: FxHashMap<Ix, u32> = members.iter().enumerate().map(|(i, ix)| (*ix, i as u32)).collect();
    let mut edges = Vec::new();
    for &ix in &members {
        for (key, data) in ties.out(ix) {
            let (Some(&u), Some(&v)) = (local.get(&key.source), local.get(&key.target)) else {
                continue;
            };
            let weight = data.weight;
            edges.push((u, v, weight));
            if !key.kind.is_directed() {
                edges.push((v, u, weight));
            }
        }
    }
    let ids: Vec<Id> = members
        .iter()
        .filter_map(|ix| network.actor(*ix).map(|a| a.id.clone()))
        .collect();
    let mut joined: UnionFind<u32> = UnionFind::new(members.len());
    for &(u, v, _) in &edges {
        joined.union(u, v);
    }
    // Label each component by its first member, so labels are stable.
    let mut label_of_root: FxHashMap<u32, u32> = FxHashMap::default();
    let mut components: Components = (0..members.len() as u32)
        .map(|i| {
            let root = joined.find_mut(i);
            let label = *label_of_root.entry(root).or_insert(i);
            (ids[i as usize].clone(), label)
        })
        .collect();
    components.sort_unstable();
    let graph = AnalysisGraph::from_edges(ids.clone(), vec![String::new(); ids.len()], &edges, true, true);
    let top = match pagerank(&graph, &PageRankConfig::default(), &Control::none()) {
        Ok(scores) => rank_order(&scores.values, &ids, true, k)
            .into_iter()
            .take(k)
            .map(|i| (ids[i].clone(), scores.values[i]))
            .collect(),
        Err(_) => Vec::new(),
    };
    (top, components)
}

#[cfg(test)]
mod tests {
    //! Each link rule on networks of four firms in two clusters, with the
    //! near misses that must stay silent.

    use super::*;
    use crate::{
        model::{Actor, Change, Link, LinkKind, Segment},
        testing::{actor, cluster, link, network},
    };

    /// Clusters A (firms a1, a2) and B (b1, b2), each a chain; `industries`
    /// of a1 and b1.
    fn two_clusters(a1_industry: &str, b1_industry: &str) -> Vec<Change> {
        let firm = |id: &str, c: &str, industry: &str| {
            Change::UpsertActor(Actor {
                industry: industry.into(),
                ..actor(id, &[c])
            })
        };
        vec![
            Change::UpsertCluster(cluster("A")),
            Change::UpsertCluster(cluster("B")),
            firm("a1", "A", a1_industry),
            firm("a2", "A", "C2620"),
            firm("b1", "B", b1_industry),
            firm("b2", "B", "M7410"),
            Change::UpsertLink(link("a1", "a2", LinkKind::Supply)),
            Change::UpsertLink(link("b1", "b2", LinkKind::Supply)),
        ]
    }

    /// The kinds of alert that adding `new` to `base` raises.
    fn raised(base: Vec<Change>, new: Link) -> Vec<AlertKind> {
        raised_by(base, vec![Change::UpsertLink(new)])
    }

    /// The kinds of alert that applying `added` to `base` raises, and the
    /// actors they name.
    fn raised_by(base: Vec<Change>, added: Vec<Change>) -> Vec<AlertKind> {
        alerts_of(base, added).into_iter().map(|a| a.kind).collect()
    }

    fn alerts_of(base: Vec<Change>, added: Vec<Change>) -> Vec<Alert> {
        alerts_under(&AlertRules::default(), base, added)
    }

    fn alerts_under(rules: &AlertRules, base: Vec<Change>, added: Vec<Change>) -> Vec<Alert> {
        let stage = StageConfig::default();
        let evaluator = Evaluator {
            stage: &stage,
            rules,
            revision: 2,
            now_unix_ms: 0,
            stop: &AtomicBool::new(false),
        };
        let before = network(base.clone());
        let kept: HashMap<Id, ClusterState> = evaluator.baseline(&before).unwrap().into_iter().collect();
        let mut after = before.clone();
        after.apply(&added).unwrap();
        evaluator
            .evaluate(Some(&before), &after, added.iter(), &kept)
            .unwrap()
            .alerts
    }

    #[test]
    fn an_investment_across_clusters_and_industries_is_a_cross_investment_and_a_fusion_link() {
        let kinds = raised(two_clusters("C2620", "M7410"), link("a1", "b1", LinkKind::Investment));
        assert!(kinds.contains(&AlertKind::CrossInvestmentAdded), "{kinds:?}");
        assert!(kinds.contains(&AlertKind::FusionLinkAdded), "{kinds:?}");
    }

    #[test]
    fn many_new_ties_between_two_clusters_are_counted_whole_and_their_first_named() {
        let mut base = two_clusters("C2620", "M7410");
        let mut added = Vec::new();
        for i in 0..500 {
            let (a, b) = (format!("a-{i:03}"), format!("b-{i:03}"));
            base.push(Change::UpsertActor(Actor {
                industry: "C2620".into(),
                ..actor(&a, &["A"])
            }));
            base.push(Change::UpsertActor(Actor {
                industry: "M7410".into(),
                ..actor(&b, &["B"])
            }));
            added.push(Change::UpsertLink(link(&a, &b, LinkKind::Supply)));
        }
        let alerts = alerts_of(base, added);
        let fusion: Vec<&Alert> = alerts.iter().filter(|a| a.kind == AlertKind::FusionLinkAdded).collect();
        assert_eq!(fusion.len(), 1, "{alerts:?}");
        let new_links = fusion[0].figures.iter().find(|f| f.name == "new_links").unwrap();
        assert_eq!(new_links.after, 500.0);
        assert_eq!(fusion[0].actors.len(), ACTORS_LISTED);
        assert_eq!(fusion[0].actors[..2], [Id::from("a-000"), Id::from("b-000")]);
        assert!(fusion[0].message.contains("and 497 more"), "{}", fusion[0].message);
    }

    #[test]
    fn new_ties_to_more_clusters_than_are_raised_one_by_one_are_one_summary() {
        let firm = |id: &str, c: &str, industry: &str| {
            Change::UpsertActor(Actor {
                industry: industry.into(),
                ..actor(id, &[c])
            })
        };
        let mut base = vec![Change::UpsertCluster(cluster("hub")), firm("h", "hub", "C2620")];
        let mut added = Vec::new();
        let pairs = MAX_ALERTS_PER_KIND + 20;
        for i in 0..pairs {
            let (c, f) = (format!("c{i:03}"), format!("f{i:03}"));
            base.extend([Change::UpsertCluster(cluster(&c)), firm(&f, &c, "M7410")]);
            added.push(Change::UpsertLink(link("h", &f, LinkKind::Supply)));
        }
        let alerts = alerts_of(base, added);
        let fusion: Vec<&Alert> = alerts.iter().filter(|a| a.kind == AlertKind::FusionLinkAdded).collect();
        assert_eq!(fusion.len(), 1, "{alerts:?}");
        assert_eq!(fusion[0].figures, vec![Figure::new("alerts", 0.0, pairs as f64)]);
        assert!(
            fusion[0]
                .message
                .starts_with(&format!("{pairs} FUSION_LINK_ADDED alerts")),
            "{}",
            fusion[0].message
        );
        assert!(
            fusion[0].message.contains("between c000 and hub"),
            "{}",
            fusion[0].message
        );
        assert_eq!(
            fusion[0].clusters.len(),
            SUMMARY_LISTS + 1,
            "the hub and the first twenty"
        );
    }

    /// Clusters made and tied in one batch are a bulk load: quiet. Made by
    /// one batch and tied by the next, the tie is news, even when the
    /// engine takes both batches in together (as it does when it falls
    /// behind): what is raised does not depend on its timing.
    #[test]
    fn a_tie_between_clusters_made_by_an_earlier_batch_of_the_round_is_raised() {
        let stage = StageConfig::default();
        let rules = AlertRules::default();
        let evaluator = Evaluator {
            stage: &stage,
            rules: &rules,
            revision: 2,
            now_unix_ms: 0,
            stop: &AtomicBool::new(false),
        };
        let before = network(Vec::new());
        let made = two_clusters("C2620", "M7410");
        let tie = vec![Change::UpsertLink(link("a1", "b1", LinkKind::Investment))];
        let after = network(made.iter().chain(&tie).cloned());
        let kinds = |numbered: Vec<(usize, &Change)>| -> Vec<AlertKind> {
            let alerts = evaluator.events(&before, &after, numbered.into_iter(), &HashMap::new());
            alerts.into_iter().map(|a| a.kind).collect()
        };
        let one_batch: Vec<(usize, &Change)> = made.iter().chain(&tie).map(|c| (0, c)).collect();
        assert_eq!(kinds(one_batch), Vec::<AlertKind>::new());
        let two_batches: Vec<(usize, &Change)> =
            made.iter().map(|c| (0, c)).chain(tie.iter().map(|c| (1, c))).collect();
        let raised = kinds(two_batches);
        assert!(raised.contains(&AlertKind::CrossInvestmentAdded), "{raised:?}");
        assert!(raised.contains(&AlertKind::FusionLinkAdded), "{raised:?}");
    }

    /// Clusters P1..P3 make parts (C2930) and electrics (C2710), K makes
    /// parts, and B1, B2 software (J6201). K taking on two electrics firms
    /// becomes specialised in C2710; its parts firms leaving ends C2930.
    #[test]
    fn members_entering_a_cluster_make_it_specialised_and_leaving_ends_it() {
        let stage = StageConfig::default();
        let rules = AlertRules::default();
        let evaluator = Evaluator {
            stage: &stage,
            rules: &rules,
            revision: 2,
            now_unix_ms: 0,
            stop: &AtomicBool::new(false),
        };
        let firm = |id: &str, cluster: &str, industry: &str| {
            Change::UpsertActor(Actor {
                industry: industry.into(),
                ..actor(id, &[cluster])
            })
        };
        let mut base = vec![
            Change::UpsertCluster(cluster("K")),
            firm("k1", "K", "C2930"),
            firm("k2", "K", "C2930"),
        ];
        for c in ["P1", "P2", "P3"] {
            base.push(Change::UpsertCluster(cluster(c)));
            base.push(firm(&format!("{c}-parts"), c, "C2930"));
            base.push(firm(&format!("{c}-electrics"), c, "C2710"));
        }
        for c in ["B1", "B2"] {
            base.push(Change::UpsertCluster(cluster(c)));
            base.push(firm(&format!("{c}-software"), c, "J6201"));
        }
        let raised = |before: &Network, added: &[Change]| -> Vec<Alert> {
            let mut after = before.clone();
            after.apply(added).unwrap();
            evaluator.events(before, &after, added.iter().map(|c| (0, c)), &HashMap::new())
        };
        let before = network(base.clone());
        let entering = [
            firm("k3", "K", "C2710"),
            firm("k4", "K", "C2710"),
            firm("k5", "K", "C2710"),
        ];
        let alerts = raised(&before, &entering);
        let gained: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::SpecialisationGained)
            .collect();
        assert_eq!(gained.len(), 1, "{alerts:#?}");
        assert_eq!(gained[0].clusters, [Id::from("K")]);
        assert_eq!(gained[0].figures[0].name, "rca.C2710");
        assert_eq!(gained[0].figures[0].before, 0.0);
        assert!(gained[0].figures[0].after >= 1.0);
        assert!(gained[0].actors.contains(&Id::from("k3")));
        // Only K's members moved: the others' specialisations are not news.
        assert!(alerts.iter().all(|a| a.clusters == [Id::from("K")]), "{alerts:#?}");

        let mut grown = before.clone();
        grown.apply(&entering).unwrap();
        let leaving = [
            Change::DeleteActor {
                id: "k1".into(),
                cascade: true,
            },
            Change::DeleteActor {
                id: "k2".into(),
                cascade: true,
            },
        ];
        let alerts = raised(&grown, &leaving);
        let lost: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::SpecialisationLost)
            .collect();
        assert_eq!(lost.len(), 1, "{alerts:#?}");
        assert_eq!(lost[0].figures[0].name, "rca.C2930");
        // A write of links alone raises none of these.
        let tie = [Change::UpsertLink(link("k3", "P1-parts", LinkKind::Supply))];
        assert!(raised(&grown, &tie).iter().all(|a| !matches!(
            a.kind,
            AlertKind::SpecialisationGained | AlertKind::SpecialisationLost | AlertKind::ComplexityShift
        )));
    }

    #[test]
    fn a_tie_within_one_industry_division_is_no_fusion_link() {
        // C2620 and C2610: both division 26, computers and electronics.
        let kinds = raised(two_clusters("C2620", "C2610"), link("a1", "b1", LinkKind::Investment));
        assert!(kinds.contains(&AlertKind::CrossInvestmentAdded), "{kinds:?}");
        assert!(!kinds.contains(&AlertKind::FusionLinkAdded), "{kinds:?}");
    }

    #[test]
    fn a_supply_tie_across_clusters_is_no_cross_investment() {
        let kinds = raised(two_clusters("C2620", "M7410"), link("a1", "b1", LinkKind::Supply));
        assert!(!kinds.contains(&AlertKind::CrossInvestmentAdded), "{kinds:?}");
        assert!(kinds.contains(&AlertKind::FusionLinkAdded), "{kinds:?}");
    }

    #[test]
    fn losing_the_only_tie_to_a_member_fragments_its_cluster_and_names_who_is_cut_off() {
        let mut base = two_clusters("C2620", "M7410");
        base.push(Change::UpsertActor(actor("a3", &["A"])));
        base.push(Change::UpsertLink(link("a2", "a3", LinkKind::Supply)));
        let cut = Change::DeleteLink(link("a2", "a3", LinkKind::Supply).key());
        let alerts = alerts_of(base.clone(), vec![cut]);
        let fragmented: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::ClusterFragmented)
            .collect();
        assert_eq!(fragmented.len(), 1, "{alerts:?}");
        assert_eq!(fragmented[0].clusters, vec![Id::from("A")]);
        assert_eq!(fragmented[0].actors, vec![Id::from("a3")]);

        // A second path keeps the cluster whole: no alert.
        base.push(Change::UpsertLink(link("a1", "a3", LinkKind::Cooperation)));
        let cut = Change::DeleteLink(link("a2", "a3", LinkKind::Supply).key());
        let kinds = raised_by(base, vec![cut]);
        assert!(!kinds.contains(&AlertKind::ClusterFragmented), "{kinds:?}");
    }

    /// Cluster A: a customer `c` and `suppliers` firms that each supply it
    /// alone (structurally equivalent: substitutes of each other).
    fn suppliers_of_one_customer(suppliers: usize) -> Vec<Change> {
        let mut changes = vec![
            Change::UpsertCluster(cluster("A")),
            Change::UpsertActor(actor("c", &["A"])),
        ];
        for i in 1..=suppliers {
            let id = format!("s{i}");
            changes.push(Change::UpsertActor(actor(&id, &["A"])));
            changes.push(Change::UpsertLink(link(&id, "c", LinkKind::Supply)));
        }
        changes
    }

    fn delete_supplier(id: &str) -> Vec<Change> {
        vec![
            Change::DeleteLink(link(id, "c", LinkKind::Supply).key()),
            Change::DeleteActor {
                id: id.into(),
                cascade: false,
            },
        ]
    }

    #[test]
    fn a_supplier_whose_only_substitute_leaves_has_lost_its_substitute() {
        let alerts = alerts_of(suppliers_of_one_customer(2), delete_supplier("s2"));
        let lost: Vec<&Alert> = alerts.iter().filter(|a| a.kind == AlertKind::SubstituteLost).collect();
        assert_eq!(lost.len(), 1, "{alerts:?}");
        assert!(lost[0].actors.contains(&Id::from("s1")), "{:?}", lost[0]);
        // With a third supplier, s1 still has one: silent.
        let kinds = raised_by(suppliers_of_one_customer(3), delete_supplier("s2"));
        assert!(!kinds.contains(&AlertKind::SubstituteLost), "{kinds:?}");
    }

    #[test]
    fn sharing_a_member_crosses_the_overlap_threshold_only_when_the_share_is_large_enough() {
        // A {a1, a2} and B {b1, b2}: a1 joining B makes the member Jaccard
        // 1/4, over the default threshold of 0.2.
        let join_b = |id: &str| {
            vec![Change::UpsertActor(Actor {
                cluster_ids: vec![Id::from("A"), Id::from("B")],
                ..actor(id, &[])
            })]
        };
        let kinds = raised_by(two_clusters("C2620", "M7410"), join_b("a1"));
        assert!(kinds.contains(&AlertKind::OverlapCrossed), "{kinds:?}");
        assert!(AlertRules::default().overlap_threshold > 1.0 / 6.0);
        // Two more members in B: 1/6, under it.
        let mut bigger = two_clusters("C2620", "M7410");
        bigger.push(Change::UpsertActor(actor("b3", &["B"])));
        bigger.push(Change::UpsertActor(actor("b4", &["B"])));
        let kinds = raised_by(bigger, join_b("a1"));
        assert!(!kinds.contains(&AlertKind::OverlapCrossed), "{kinds:?}");
    }

    /// Cluster A: four firms, one in each of four segments (half the chain),
    /// supplying one another in a line.
    fn regional_line() -> Vec<Change> {
        let mut changes = vec![Change::UpsertCluster(cluster("A"))];
        let segments = [
            Segment::Design,
            Segment::Manufacturing,
            Segment::Marketing,
            Segment::Sales,
        ];
        for (i, segment) in segments.into_iter().enumerate() {
            changes.push(Change::UpsertActor(Actor {
                segments: [segment].into_iter().collect(),
                ..actor(&format!("m{i}"), &["A"])
            }));
        }
        for i in 0..3 {
            changes.push(Change::UpsertLink(link(
                &format!("m{i}"),
                &format!("m{}", i + 1),
                LinkKind::Supply,
            )));
        }
        changes
    }

    #[test]
    fn a_cluster_that_loses_its_ties_changes_stage_and_one_more_tie_changes_nothing() {
        let before = network(regional_line());
        let assessed = crate::testing::assess_all(&before, &GraphFilter::default());
        assert_eq!(
            assessed[0].stage,
            Stage::RegionalIntegration,
            "{:?}",
            assessed[0].scores
        );
        let cut: Vec<Change> = (0..3)
            .map(|i| Change::DeleteLink(link(&format!("m{i}"), &format!("m{}", i + 1), LinkKind::Supply).key()))
            .collect();
        let changed: Vec<Alert> = alerts_of(regional_line(), cut)
            .into_iter()
            .filter(|a| a.kind == AlertKind::StageChanged)
            .collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].severity, Severity::Warning);
        assert!(changed[0].message.contains("UNCLASSIFIED"), "{}", changed[0].message);

        let kinds = raised(regional_line(), link("m3", "m0", LinkKind::Cooperation));
        assert!(!kinds.contains(&AlertKind::StageChanged), "{kinds:?}");
    }

    #[test]
    fn a_virtual_cluster_whose_platform_goes_loses_its_pattern_and_gets_it_back_when_it_returns() {
        use crate::synthetic::{districts, specialised_districts, Districts};
        // A built district (specialised parks, ties between them, a
        // platform) that forms a pattern: the first of the calibration's.
        let (base, cluster) = specialised_districts(20)
            .map(|config| Districts { clusters: 1, ..config })
            .find_map(|config| {
                let changes = districts(&config);
                let patterns = crate::testing::detect_all(&network(changes.clone()), &GraphFilter::default());
                patterns.first().map(|p| (changes, p.clusters[0].clone()))
            })
            .expect("a built district forms a pattern");
        let platform = base
            .iter()
            .find_map(|c| match c {
                Change::UpsertActor(a) if a.kind == crate::model::ActorKind::Platform => Some(a.id.clone()),
                _ => None,
            })
            .expect("the district has a platform");
        let gone = vec![Change::DeleteActor {
            id: platform.clone(),
            cascade: true,
        }];
        let lost: Vec<Alert> = alerts_of(base.clone(), gone.clone())
            .into_iter()
            .filter(|a| a.kind == AlertKind::VirtualIntegrationLost)
            .collect();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(lost[0].clusters, vec![cluster.clone()]);

        // Back again: the platform and its links, onto the district without them.
        let is_platforms = |c: &Change| match c {
            Change::UpsertActor(a) => a.id == platform,
            Change::UpsertLink(l) => l.source == platform || l.target == platform,
            _ => false,
        };
        let returning: Vec<Change> = base.iter().filter(|c| is_platforms(c)).cloned().collect();
        let without: Vec<Change> = base.iter().filter(|c| !is_platforms(c)).cloned().collect();
        let detected = alerts_of(without, returning);
        assert!(
            detected
                .iter()
                .any(|a| a.kind == AlertKind::VirtualIntegrationDetected && a.clusters == vec![cluster.clone()]),
            "{detected:?}"
        );
    }

    #[test]
    fn a_flood_of_one_kind_is_one_summary_naming_the_count_and_the_first_twenty() {
        let alert = |i: usize, kind: AlertKind| Alert {
            sequence: 0,
            revision: 2,
            kind,
            severity: if i == 150 { Severity::Critical } else { Severity::Info },
            clusters: vec![Id::from(format!("c{i}"))],
            actors: Vec::new(),
            figures: Vec::new(),
            message: format!("alert {i}"),
            raised_at_unix_ms: 0,
        };
        let mut alerts: Vec<Alert> = (0..=150).map(|i| alert(i, AlertKind::OverlapCrossed)).collect();
        alerts.push(alert(0, AlertKind::StageChanged));
        let out = summarised(alerts);
        assert_eq!(out.len(), 2);
        let summary = &out[0];
        assert_eq!(summary.kind, AlertKind::OverlapCrossed);
        assert_eq!(summary.figures, vec![Figure::new("alerts", 0.0, 151.0)]);
        assert_eq!(summary.clusters.len(), SUMMARY_LISTS);
        assert_eq!(summary.severity, Severity::Critical, "the most severe of them");
        assert!(
            summary.message.starts_with("151 OVERLAP_CROSSED alerts"),
            "{}",
            summary.message
        );
        assert_eq!(out[1].kind, AlertKind::StageChanged, "other kinds stay as they are");
        // At the bound nothing is summarised.
        let few: Vec<Alert> = (0..MAX_ALERTS_PER_KIND)
            .map(|i| alert(i, AlertKind::OverlapCrossed))
            .collect();
        assert_eq!(summarised(few.clone()), few);
    }

    #[test]
    fn figures_kept_before_wholes_across_clusters_still_read() {
        // bincode writes a struct as its fields in order: this tuple is how
        // a ClusterState was written before it had `whole`.
        let state = ClusterState::with_overlaps(&[("B", 0.25)]);
        let old = bincode::serialize(&(
            state.stage,
            state.scores,
            state.passed,
            state.pattern,
            &state.top,
            state.top_k,
            &state.components,
            &state.overlaps,
        ))
        .unwrap();
        assert_eq!(ClusterState::decode(&old).unwrap(), state);
        let now = bincode::serialize(&state).unwrap();
        assert_eq!(ClusterState::decode(&now).unwrap(), state);
    }

    /// The three cities (issue 30) with a fourth, Ningbo, tied to them by
    /// `ningbo` ties per pair, and the links of Ningbo to the other three.
    fn cities_and_ningbo(ningbo: usize) -> (Vec<Change>, Vec<Change>) {
        use crate::synthetic::{three_cities, ThreeCities, NINGBO};
        let changes = three_cities(&ThreeCities {
            ningbo_ties: Some(ningbo),
            ..ThreeCities::default()
        });
        let network = network(changes.clone());
        let ningbo_ties: Vec<Change> = changes
            .iter()
            .filter_map(|c| match c {
                Change::UpsertLink(l) => {
                    let in_ningbo = |id: &Id| {
                        network
                            .actors
                            .get(id)
                            .is_some_and(|a| a.cluster_ids.contains(&NINGBO.into()))
                    };
                    let is_platform = |id: &Id| network.actors.get(id).is_some_and(|a| a.cluster_ids.is_empty());
                    (in_ningbo(&l.source) != in_ningbo(&l.target) && !is_platform(&l.source) && !is_platform(&l.target))
                        .then(|| c.clone())
                }
                _ => None,
            })
            .collect();
        (changes, ningbo_ties)
    }

    /// An alert's kind, clusters and figures (name, before, after).
    type Raised = (AlertKind, Vec<Id>, Vec<(String, f64, f64)>);

    fn whole_alerts(alerts: &[Alert]) -> Vec<Raised> {
        alerts
            .iter()
            .filter(|a| a.kind.as_str().starts_with("WHOLE_"))
            .map(|a| {
                let figures = a.figures.iter().filter(|f| f.name != "confidence");
                (
                    a.kind,
                    a.clusters.clone(),
                    figures.map(|f| (f.name.clone(), f.before, f.after)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_whole_across_clusters_forms_grows_shrinks_and_dissolves_once_each_naming_its_clusters() {
        use crate::synthetic::{three_cities, ThreeCities, NINGBO, THREE_CITIES};
        let three: Vec<Id> = {
            let mut ids: Vec<Id> = THREE_CITIES.iter().map(|c| Id::from(*c)).collect();
            ids.sort();
            ids
        };
        let mut four = three.clone();
        four.push(NINGBO.into());
        four.sort();
        let figures = |before: (f64, f64), after: (f64, f64)| {
            vec![
                ("parts".to_string(), before.0, after.0),
                ("clusters".to_string(), before.1, after.1),
            ]
        };

        // Formed: three barely tied clusters get forty ties per pair.
        let sparse = three_cities(&ThreeCities {
            ties_per_pair: 2,
            ..ThreeCities::default()
        });
        let dense = three_cities(&ThreeCities::default());
        let more_ties: Vec<Change> = dense.iter().filter(|c| !sparse.contains(c)).cloned().collect();
        assert_eq!(
            whole_alerts(&alerts_of(sparse, more_ties)),
            [(AlertKind::WholeFormed, three.clone(), figures((0.0, 0.0), (3.0, 3.0)))]
        );

        // Grew: Ningbo, barely tied, gets as many ties as the others have.
        let (weak, _) = cities_and_ningbo(2);
        let (strong, ningbo_links) = cities_and_ningbo(40);
        let added: Vec<Change> = strong.iter().filter(|c| !weak.contains(c)).cloned().collect();
        assert_eq!(
            whole_alerts(&alerts_of(weak, added)),
            [(AlertKind::WholeGrew, four.clone(), figures((3.0, 3.0), (4.0, 4.0)))]
        );

        // Shrank: Ningbo's ties to the others go.
        let cut: Vec<Change> = ningbo_links
            .iter()
            .map(|c| match c {
                Change::UpsertLink(l) => Change::DeleteLink(l.key()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            whole_alerts(&alerts_of(strong, cut)),
            [(AlertKind::WholeShrank, four, figures((4.0, 4.0), (3.0, 3.0)))]
        );

        // Dissolved: Suzhou's members turn to design, so no part reaches
        // final customers and the parts are no longer distinct.
        let dense = three_cities(&ThreeCities::default());
        let redesigned: Vec<Change> = dense
            .iter()
            .filter_map(|c| match c {
                Change::UpsertActor(a) if a.cluster_ids.contains(&THREE_CITIES[2].into()) => {
                    Some(Change::UpsertActor(crate::model::Actor {
                        segments: [crate::model::Segment::Design].into_iter().collect(),
                        ..a.clone()
                    }))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            whole_alerts(&alerts_of(dense, redesigned)),
            [(AlertKind::WholeDissolved, three, figures((3.0, 3.0), (0.0, 0.0)))]
        );
    }

    /// Cluster A of six firms, all supplying `h`.
    fn star() -> Vec<Change> {
        let mut changes = vec![Change::UpsertCluster(cluster("A"))];
        for id in ["h", "p", "q", "r", "s", "t"] {
            changes.push(Change::UpsertActor(actor(id, &["A"])));
        }
        for id in ["p", "q", "r", "s", "t"] {
            changes.push(Change::UpsertLink(link(id, "h", LinkKind::Supply)));
        }
        changes
    }

    #[test]
    fn a_member_rising_into_the_pagerank_top_is_a_centrality_shift_and_more_of_the_same_is_not() {
        let rules = AlertRules {
            centrality_top_k: 3,
            centrality_rank_move: 2,
            ..AlertRules::default()
        };
        // Everyone but h starts supplying t as well: t rises to the top.
        let to_t: Vec<Change> = ["h", "p", "q", "r", "s"]
            .into_iter()
            .map(|id| Change::UpsertLink(link(id, "t", LinkKind::Cooperation)))
            .collect();
        let alerts = alerts_under(&rules, star(), to_t);
        let shift: Vec<&Alert> = alerts.iter().filter(|a| a.kind == AlertKind::CentralityShift).collect();
        assert_eq!(shift.len(), 1, "{alerts:?}");
        assert!(shift[0].actors.contains(&Id::from("t")), "{:?}", shift[0]);
        // One more supplier of h, who leads already: the order stays.
        let mut base = star();
        base.push(Change::UpsertActor(actor("u", &["A"])));
        let alerts = alerts_under(&rules, base, vec![Change::UpsertLink(link("u", "h", LinkKind::Supply))]);
        assert!(
            !alerts.iter().any(|a| a.kind == AlertKind::CentralityShift),
            "{alerts:?}"
        );
    }

    #[test]
    fn a_tie_inside_one_cluster_raises_no_link_alert() {
        let kinds = raised(two_clusters("C2620", "M7410"), link("b2", "b1", LinkKind::Investment));
        assert!(!kinds.contains(&AlertKind::CrossInvestmentAdded), "{kinds:?}");
        assert!(!kinds.contains(&AlertKind::FusionLinkAdded), "{kinds:?}");
    }
}
