//! Network-change alerts: what is watched, what an alert says, and who wants
//! which alerts. The evaluation lives in [`evaluate`], the persisted alert
//! log and state in [`log`], the thread that drives both in [`engine`].
//!
//! Like the rest of the core this knows nothing of gRPC.

pub mod components;
pub mod engine;
pub mod evaluate;
pub mod log;

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    model::Id,
};

/// The kinds of alert. New kinds go last: stored alerts name kinds by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlertKind {
    StageChanged,
    VirtualIntegrationDetected,
    VirtualIntegrationLost,
    FusionLinkAdded,
    CrossInvestmentAdded,
    CentralityShift,
    SubstituteLost,
    OverlapCrossed,
    ClusterFragmented,
    WholeFormed,
    WholeGrew,
    WholeShrank,
    WholeDissolved,
    SpecialisationGained,
    SpecialisationLost,
    ComplexityShift,
}

impl AlertKind {
    pub const ALL: [AlertKind; 16] = [
        AlertKind::StageChanged,
        AlertKind::VirtualIntegrationDetected,
        AlertKind::VirtualIntegrationLost,
        AlertKind::FusionLinkAdded,
        AlertKind::CrossInvestmentAdded,
        AlertKind::CentralityShift,
        AlertKind::SubstituteLost,
        AlertKind::OverlapCrossed,
        AlertKind::ClusterFragmented,
        AlertKind::WholeFormed,
        AlertKind::WholeGrew,
        AlertKind::WholeShrank,
        AlertKind::WholeDissolved,
        AlertKind::SpecialisationGained,
        AlertKind::SpecialisationLost,
        AlertKind::ComplexityShift,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::StageChanged => "STAGE_CHANGED",
            AlertKind::VirtualIntegrationDetected => "VIRTUAL_INTEGRATION_DETECTED",
            AlertKind::VirtualIntegrationLost => "VIRTUAL_INTEGRATION_LOST",
            AlertKind::FusionLinkAdded => "FUSION_LINK_ADDED",
            AlertKind::CrossInvestmentAdded => "CROSS_INVESTMENT_ADDED",
            AlertKind::CentralityShift => "CENTRALITY_SHIFT",
            AlertKind::SubstituteLost => "SUBSTITUTE_LOST",
            AlertKind::OverlapCrossed => "OVERLAP_CROSSED",
            AlertKind::ClusterFragmented => "CLUSTER_FRAGMENTED",
            AlertKind::WholeFormed => "WHOLE_FORMED",
            AlertKind::WholeGrew => "WHOLE_GREW",
            AlertKind::WholeShrank => "WHOLE_SHRANK",
            AlertKind::WholeDissolved => "WHOLE_DISSOLVED",
            AlertKind::SpecialisationGained => "SPECIALISATION_GAINED",
            AlertKind::SpecialisationLost => "SPECIALISATION_LOST",
            AlertKind::ComplexityShift => "COMPLEXITY_SHIFT",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];
}

/// A figure before and after the change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub before: f64,
    pub after: f64,
}

impl Figure {
    pub fn new(name: impl Into<String>, before: f64, after: f64) -> Figure {
        Figure {
            name: name.into(),
            before,
            after,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// 1, 2, 3, ... in the order raised; assigned when persisted.
    pub sequence: u64,
    /// The revision evaluated when it was raised.
    pub revision: u64,
    pub kind: AlertKind,
    pub severity: Severity,
    pub clusters: Vec<Id>,
    pub actors: Vec<Id>,
    pub figures: Vec<Figure>,
    pub message: String,
    pub raised_at_unix_ms: i64,
}

/// Which alerts a subscriber or a listing wants. Each list that is not empty
/// must match (any of its entries); all of them together must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertFilter {
    pub kinds: Vec<AlertKind>,
    pub clusters: Vec<Id>,
    pub actors: Vec<Id>,
    pub min_severity: Option<Severity>,
}

impl AlertFilter {
    pub fn matches(&self, alert: &Alert) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&alert.kind))
            && (self.clusters.is_empty() || alert.clusters.iter().any(|c| self.clusters.contains(c)))
            && (self.actors.is_empty() || alert.actors.iter().any(|a| self.actors.contains(a)))
            && self.min_severity.is_none_or(|min| alert.severity >= min)
    }

    /// A stable text of the filter, for page tokens.
    pub fn fingerprint_text(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{:?}",
            self.kinds, self.clusters, self.actors, self.min_severity
        )
    }
}

/// What raises an alert; persisted, changed with SetAlertRules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRules {
    pub centrality_top_k: u32,
    pub centrality_rank_move: u32,
    pub overlap_threshold: f64,
    pub min_substitute_score: f64,
    pub disabled_kinds: Vec<AlertKind>,
    /// COMPLEXITY_SHIFT: a cluster's ECI moves by at least this (ECI is
    /// standardised: in standard deviations over the clusters). Last, so
    /// rules kept before it existed still read ([`AlertRules::decode`]).
    pub eci_shift: f64,
}

/// [`AlertRules`] as kept before `eci_shift`.
#[derive(Deserialize)]
struct AlertRulesBeforeComplexity {
    centrality_top_k: u32,
    centrality_rank_move: u32,
    overlap_threshold: f64,
    min_substitute_score: f64,
    disabled_kinds: Vec<AlertKind>,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            // The few actors an analyst would name as a cluster's centre.
            centrality_top_k: 10,
            // Half the watched list: smaller moves are churn among near-equals.
            centrality_rank_move: 5,
            // A fifth of the two clusters' members in common: the clusters
            // begin to occupy the same space (重叠).
            overlap_threshold: 0.2,
            // Any actor with a tie profile in common counts as a substitute,
            // as in the Substitutes analysis; raise it to ignore weak ones.
            min_substitute_score: 0.0,
            disabled_kinds: Vec::new(),
            // Half a standard deviation of the clusters' ECI.
            eci_shift: 0.5,
        }
    }
}

/// The most actors a top-k list may watch per cluster.
pub const MAX_TOP_K: u32 = 1000;

impl AlertRules {
    /// Checks every value, naming the field of the first bad one.
    pub fn validated(self) -> Result<AlertRules> {
        if self.centrality_top_k == 0 || self.centrality_top_k > MAX_TOP_K {
            return Err(Error::invalid(
                "rules.centrality_top_k",
                format!("{} is not in 1..={MAX_TOP_K}", self.centrality_top_k),
            ));
        }
        if self.centrality_rank_move == 0 {
            return Err(Error::invalid("rules.centrality_rank_move", "must be at least 1"));
        }
        if !(self.overlap_threshold > 0.0 && self.overlap_threshold <= 1.0) {
            return Err(Error::invalid(
                "rules.overlap_threshold",
                format!("{} is not in (0, 1]", self.overlap_threshold),
            ));
        }
        if !(self.min_substitute_score >= 0.0 && self.min_substitute_score < 1.0) {
            return Err(Error::invalid(
                "rules.min_substitute_score",
                format!("{} is not in [0, 1)", self.min_substitute_score),
            ));
        }
        if !(self.eci_shift.is_finite() && self.eci_shift > 0.0) {
            return Err(Error::invalid(
                "rules.eci_shift",
                format!("{} is not a finite number above 0", self.eci_shift),
            ));
        }
        Ok(self)
    }

    /// Reads kept rules, those written before `eci_shift` too.
    pub fn decode(bytes: &[u8]) -> std::result::Result<AlertRules, bincode::Error> {
        bincode::deserialize(bytes).or_else(|error| {
            let old: AlertRulesBeforeComplexity = bincode::deserialize(bytes).map_err(|_| error)?;
            Ok(AlertRules {
                centrality_top_k: old.centrality_top_k,
                centrality_rank_move: old.centrality_rank_move,
                overlap_threshold: old.overlap_threshold,
                min_substitute_score: old.min_substitute_score,
                disabled_kinds: old.disabled_kinds,
                eci_shift: AlertRules::default().eci_shift,
            })
        })
    }

    pub fn enabled(&self, kind: AlertKind) -> bool {
        !self.disabled_kinds.contains(&kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: AlertKind, severity: Severity, clusters: &[&str], actors: &[&str]) -> Alert {
        Alert {
            sequence: 1,
            revision: 1,
            kind,
            severity,
            clusters: clusters.iter().map(|c| Id::from(*c)).collect(),
            actors: actors.iter().map(|a| Id::from(*a)).collect(),
            figures: Vec::new(),
            message: String::new(),
            raised_at_unix_ms: 0,
        }
    }

    #[test]
    fn a_filter_needs_every_non_empty_list_to_match() {
        let a = alert(AlertKind::SubstituteLost, Severity::Critical, &["c1"], &["x"]);
        assert!(AlertFilter::default().matches(&a));
        let by_kind = AlertFilter {
            kinds: vec![AlertKind::StageChanged],
            ..AlertFilter::default()
        };
        assert!(!by_kind.matches(&a));
        let by_cluster_and_actor = AlertFilter {
            clusters: vec!["c0".into(), "c1".into()],
            actors: vec!["y".into()],
            ..AlertFilter::default()
        };
        assert!(!by_cluster_and_actor.matches(&a), "the actor list does not match");
        let severe = AlertFilter {
            min_severity: Some(Severity::Warning),
            ..AlertFilter::default()
        };
        assert!(severe.matches(&a));
        assert!(!severe.matches(&alert(AlertKind::OverlapCrossed, Severity::Info, &[], &[])));
    }

    #[test]
    fn rules_out_of_range_are_refused_by_field() {
        let bad = AlertRules {
            overlap_threshold: 0.0,
            ..AlertRules::default()
        };
        let error = bad.validated().unwrap_err().to_string();
        assert!(error.starts_with("rules.overlap_threshold:"), "{error}");
        let nan = AlertRules {
            min_substitute_score: f64::NAN,
            ..AlertRules::default()
        };
        assert!(nan.validated().is_err());
        assert!(AlertRules::default().validated().is_ok());
    }

    #[test]
    fn rules_kept_before_the_eci_shift_still_read() {
        let rules = AlertRules {
            overlap_threshold: 0.3,
            ..AlertRules::default()
        };
        let old = bincode::serialize(&(
            rules.centrality_top_k,
            rules.centrality_rank_move,
            rules.overlap_threshold,
            rules.min_substitute_score,
            &rules.disabled_kinds,
        ))
        .unwrap();
        assert_eq!(AlertRules::decode(&old).unwrap(), rules);
        assert_eq!(AlertRules::decode(&bincode::serialize(&rules).unwrap()).unwrap(), rules);
    }
}
