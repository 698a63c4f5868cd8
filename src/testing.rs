//! Builders for the small hand-made networks of the unit tests. Each returns
//! a plain value with neutral defaults; a test overrides what it is about with
//! struct update syntax: `Actor { industry: "M7410".into(), ..actor("a", &["A"]) }`.

use crate::{
    model::{Actor, ActorKind, Change, Channel, Cluster, Id, Link, LinkKind, SegmentSet, Validity},
    network::Network,
};

/// A firm in `clusters`, industry C2930, no segments, valid always.
pub fn actor(id: &str, clusters: &[&str]) -> Actor {
    Actor {
        id: id.into(),
        name: id.into(),
        kind: ActorKind::Firm,
        industry: "C2930".into(),
        segments: SegmentSet::default(),
        cluster_ids: clusters.iter().map(|c| Id::from(*c)).collect(),
        site_id: None,
        country: None,
        employees: None,
        revenue: None,
        validity: Validity::default(),
    }
}

/// A physical link of weight 1, valid always.
pub fn link(source: &str, target: &str, kind: LinkKind) -> Link {
    Link {
        source: source.into(),
        target: target.into(),
        kind,
        channel: Channel::Physical,
        weight: 1.0,
        validity: Validity::default(),
    }
}

/// A cluster without sites.
pub fn cluster(id: &str) -> Cluster {
    Cluster {
        id: id.into(),
        name: id.into(),
        region: String::new(),
        country: None,
        industry: String::new(),
        sites: vec![],
    }
}

/// The network holding `changes`, validated and applied as one batch.
pub fn network(changes: impl IntoIterator<Item = Change>) -> Network {
    let changes: Vec<Change> = changes.into_iter().map(|c| c.validated().unwrap()).collect();
    let mut network = Network::default();
    network.apply(&changes).unwrap();
    network
}

/// AssessStage with the default settings, never cancelled.
pub fn assess_all(
    network: &Network,
    filter: &crate::graph::GraphFilter,
) -> Vec<crate::analysis::stages::stage::Assessment> {
    use crate::analysis::{stages::stage::assess, stages::stage_config::StageConfig, Control};
    assess(network, filter, &StageConfig::default(), &Control::none()).expect("Control::none never cancels")
}

/// DetectVirtualIntegration with the default settings, never cancelled.
pub fn detect_all(
    network: &Network,
    filter: &crate::graph::GraphFilter,
) -> Vec<crate::analysis::stages::virtual_integration::Pattern> {
    use crate::analysis::{stages::stage_config::StageConfig, stages::virtual_integration::detect, Control};
    detect(network, filter, &StageConfig::default(), &Control::none()).expect("Control::none never cancels")
}
