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

/// A site named after its id.
pub fn site(id: &str, lat: f64, lon: f64) -> crate::model::Site {
    crate::model::Site {
        id: id.into(),
        name: id.into(),
        lat,
        lon,
    }
}

/// The network holding `changes`, validated and applied as one batch.
pub fn network(changes: impl IntoIterator<Item = Change>) -> Network {
    let changes: Vec<Change> = changes.into_iter().map(|c| c.validated().unwrap()).collect();
    let mut network = Network::default();
    network.apply(&changes).unwrap();
    network
}

/// The whole network with the default settings, never cancelled.
pub fn context(network: &Network) -> crate::analysis::stages::StageContext<'_> {
    use crate::analysis::{stages::stage_config::StageConfig, Control};
    use std::sync::LazyLock;
    static FILTER: LazyLock<crate::graph::GraphFilter> = LazyLock::new(Default::default);
    static CONFIG: LazyLock<StageConfig> = LazyLock::new(StageConfig::default);
    static CONTROL: LazyLock<Control<'static>> = LazyLock::new(Control::none);
    crate::analysis::stages::StageContext {
        network,
        filter: &FILTER,
        config: &CONFIG,
        control: &CONTROL,
    }
}

/// AssessStage with the default settings, never cancelled.
pub fn assess_all(
    network: &Network,
    filter: &crate::graph::GraphFilter,
) -> Vec<crate::analysis::stages::stage::Assessment> {
    use crate::analysis::{stages::stage::assess, stages::stage_config::StageConfig, stages::StageContext, Control};
    let (config, control) = (StageConfig::default(), Control::none());
    assess(StageContext {
        network,
        filter,
        config: &config,
        control: &control,
    })
    .expect("Control::none never cancels")
}

/// DetectVirtualIntegration with the default settings, never cancelled.
pub fn detect_all(
    network: &Network,
    filter: &crate::graph::GraphFilter,
) -> Vec<crate::analysis::stages::virtual_integration::Pattern> {
    use crate::analysis::{stages::stage_config::StageConfig, stages::wholes::detect, stages::StageContext, Control};
    let (config, control) = (StageConfig::default(), Control::none());
    detect(StageContext {
        network,
        filter,
        config: &config,
        control: &control,
    })
    .expect("Control::none never cancels")
}

/// A random network for property tests: ten actors (firms, core firms and
/// a university), each in none, one or (unless `single`) two of the
/// clusters A, B and C, with industries in three divisions, and up to 30
/// links of every kind.
pub fn arbitrary_clustered_network(single: bool) -> impl proptest::strategy::Strategy<Value = Vec<Change>> {
    use proptest::prelude::*;
    const CLUSTERS: [&str; 3] = ["A", "B", "C"];
    let actors = prop::collection::vec((0usize..4, 0usize..4, 0usize..4, 0usize..5), 10);
    let links = prop::collection::vec((0usize..10, 0usize..10, 0usize..LinkKind::ALL.len()), 0..30);
    (actors, links).prop_map(move |(actors, links)| {
        let industries = ["C2930", "C2910", "M7410", "J6201"];
        let kinds = [
            ActorKind::Firm,
            ActorKind::CoreFirm,
            ActorKind::Firm,
            ActorKind::University,
        ];
        let mut changes: Vec<Change> = CLUSTERS.iter().map(|c| Change::UpsertCluster(cluster(c))).collect();
        for (i, (industry, kind, first, second)) in actors.into_iter().enumerate() {
            // first == 3: in no cluster; second < 3 (and not single): a second one.
            let mut clusters: Vec<&str> = CLUSTERS.get(first).into_iter().copied().collect();
            if !single && first < 3 && second < 3 && second != first {
                clusters.push(CLUSTERS[second]);
            }
            changes.push(Change::UpsertActor(Actor {
                kind: kinds[kind],
                industry: industries[industry].into(),
                ..actor(&format!("a{i}"), &clusters)
            }));
        }
        for (s, t, kind) in links.into_iter().filter(|(s, t, _)| s != t) {
            changes.push(Change::UpsertLink(link(
                &format!("a{s}"),
                &format!("a{t}"),
                LinkKind::ALL[kind],
            )));
        }
        changes
    })
}
