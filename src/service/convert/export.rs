//! ExportNetwork's parts both ways: the server sends a selection as typed
//! batches; the client gathers them back into a selection to write.

use std::{collections::BTreeSet, sync::Arc};

use super::{
    actor_from_pb, actor_to_pb, analysis::stage_to_pb, cluster_from_pb, cluster_link_from_pb, cluster_link_to_pb,
    cluster_to_pb, link_from_pb, link_to_pb, profile_from_pb, profile_to_pb, required_enum,
};
use crate::{
    analysis::stages::stage::Stage,
    error::{Error, Result},
    export::{NodeResults, ResultKind, Selection},
    graph::InterClusterEdge,
    model::{Channel, ClusterLinkKind, Id, LinkKind},
    service::pb,
};

pub use super::analysis::inter_cluster_edge_to_pb;

/// The results a request asks for; `results[i]` names a bad one.
pub fn result_kinds(values: &[i32]) -> Result<BTreeSet<ResultKind>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            required_enum(
                &[
                    ResultKind::PageRank,
                    ResultKind::Community,
                    ResultKind::Stage,
                    ResultKind::Complexity,
                ],
                *v,
                &format!("results[{i}]"),
                "NodeResult",
            )
        })
        .collect()
}

pub fn result_kind_to_pb(kind: ResultKind) -> pb::NodeResult {
    match kind {
        ResultKind::PageRank => pb::NodeResult::Pagerank,
        ResultKind::Community => pb::NodeResult::Community,
        ResultKind::Stage => pb::NodeResult::Stage,
        ResultKind::Complexity => pb::NodeResult::Complexity,
    }
}

pub fn node_result_to_pb(id: &Id, r: &NodeResults) -> pb::NodeResultRow {
    pb::NodeResultRow {
        node_id: id.to_string(),
        pagerank: r.pagerank,
        community: r.community,
        stage: r.stage.map(|s| stage_to_pb(s) as i32),
        eci: r.eci,
        coi: r.coi,
    }
}

fn stage_from_pb(value: i32) -> Result<Stage> {
    match pb::Stage::try_from(value) {
        Ok(pb::Stage::Unclassified) => Ok(Stage::Unclassified),
        Ok(pb::Stage::RegionalIntegration) => Ok(Stage::RegionalIntegration),
        Ok(pb::Stage::GlobalValueChain) => Ok(Stage::GlobalValueChain),
        Ok(pb::Stage::VirtualIntegration) => Ok(Stage::VirtualIntegration),
        _ => Err(Error::invalid(
            "results.stage",
            format!("{value} is not a known Stage value"),
        )),
    }
}

fn edge_from_pb(edge: pb::InterClusterEdge) -> Result<InterClusterEdge> {
    let mut firm_links = std::collections::BTreeMap::new();
    for a in edge.firm_links {
        let kind = required_enum(LinkKind::ALL, a.kind, "edges.firm_links.kind", "LinkKind")?;
        let channel = required_enum(Channel::ALL, a.channel, "edges.firm_links.channel", "Channel")?;
        firm_links.insert((kind, channel), (a.count, a.weight));
    }
    let cluster_links = edge
        .cluster_links
        .into_iter()
        .map(|l| {
            Ok((
                required_enum(
                    ClusterLinkKind::ALL,
                    l.kind,
                    "edges.cluster_links.kind",
                    "ClusterLinkKind",
                )?,
                required_enum(Channel::ALL, l.channel, "edges.cluster_links.channel", "Channel")?,
                l.weight,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(InterClusterEdge {
        source: Id::from(edge.source),
        target: Id::from(edge.target),
        firm_links,
        cluster_links,
    })
}

/// Adds one message of an ExportNetwork stream to `selection`; returns the
/// summary when the message is the last.
pub fn gather(
    selection: &mut Selection,
    event: pb::export_network_response::Event,
) -> Result<Option<pb::AnalysisSummary>> {
    use pb::export_network_response::Event;
    match event {
        Event::Progress(_) => {}
        Event::Clusters(b) => {
            for c in b.clusters {
                selection.clusters.push(Arc::new(cluster_from_pb(c)?));
            }
        }
        Event::Actors(b) => {
            for a in b.actors {
                selection.actors.push(Arc::new(actor_from_pb(a)?));
            }
        }
        Event::Profiles(b) => {
            for p in b.profiles {
                selection.profiles.push(profile_from_pb(p)?);
            }
        }
        Event::Links(b) => {
            for l in b.links {
                selection.links.push(link_from_pb(l)?);
            }
        }
        Event::ClusterLinks(b) => {
            for l in b.cluster_links {
                selection.cluster_links.push(cluster_link_from_pb(l)?);
            }
        }
        Event::Edges(b) => {
            for e in b.edges {
                selection.edges.push(edge_from_pb(e)?);
            }
        }
        Event::Results(b) => {
            for r in b.rows {
                let results = NodeResults {
                    pagerank: r.pagerank,
                    community: r.community,
                    stage: r.stage.map(stage_from_pb).transpose()?,
                    eci: r.eci,
                    coi: r.coi,
                };
                selection.results.insert(Id::from(r.node_id), results);
            }
        }
        Event::Summary(summary) => return Ok(Some(summary)),
    }
    Ok(None)
}

/// The selection's parts as the server sends them, in the stream's order.
pub fn clusters_to_pb(selection: &Selection) -> impl Iterator<Item = pb::Cluster> + '_ {
    selection.clusters.iter().map(|c| cluster_to_pb(c))
}

pub fn actors_to_pb(selection: &Selection) -> impl Iterator<Item = pb::Actor> + '_ {
    selection.actors.iter().map(|a| actor_to_pb(a))
}

pub fn profiles_to_pb(selection: &Selection) -> impl Iterator<Item = pb::ActorProfile> + '_ {
    selection.profiles.iter().map(profile_to_pb)
}

pub fn links_to_pb(selection: &Selection) -> impl Iterator<Item = pb::Link> + '_ {
    selection.links.iter().map(link_to_pb)
}

pub fn cluster_links_to_pb(selection: &Selection) -> impl Iterator<Item = pb::ClusterLink> + '_ {
    selection.cluster_links.iter().map(cluster_link_to_pb)
}
