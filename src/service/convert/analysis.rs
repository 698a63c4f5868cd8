//! Analysis results (domain types) as proto messages, and the enums the
//! analyses share with the wire.

use crate::{
    analysis::{
        relations::{
            crossing::{ClusterCrossing, PairCrossing, Tally},
            fusion::{FusionLink, LinkEnd, PairFusion},
            gaps::Gap,
            overlap::{Dimension, PairOverlap, SharedItems},
            substitution::{Role, Substitute},
        },
        run::{CommunityRow, RankedRow, RunSummary},
        stages::{
            core_firms::CoreFirm,
            measures::Gate,
            stage::{Assessment, Stage},
            upgrading::{Move, NewIndustry, Upgrading},
            virtual_integration::Pattern,
        },
    },
    geo::HomeCountry,
    graph::{InterClusterEdge, InterClusterNode, Layer},
    model::{ActorKind, Channel, ClusterLinkKind, Date, Id, LinkKind, Segment},
};

use super::super::pb;
use super::{text_of, wire};

pub fn layer_to_pb(layer: Layer) -> pb::Layer {
    match layer {
        Layer::Firm => pb::Layer::Firm,
        Layer::Cluster => pb::Layer::Cluster,
        Layer::Site => pb::Layer::Site,
    }
}

pub fn stage_to_pb(stage: Stage) -> pb::Stage {
    match stage {
        Stage::Unclassified => pb::Stage::Unclassified,
        Stage::RegionalIntegration => pb::Stage::RegionalIntegration,
        Stage::GlobalValueChain => pb::Stage::GlobalValueChain,
        Stage::VirtualIntegration => pb::Stage::VirtualIntegration,
    }
}

pub fn dimension_to_pb(dimension: Dimension) -> pb::OverlapDimension {
    match dimension {
        Dimension::Members => pb::OverlapDimension::Members,
        Dimension::Segments => pb::OverlapDimension::Segments,
        Dimension::Industries => pb::OverlapDimension::Industries,
        Dimension::Partners => pb::OverlapDimension::Partners,
    }
}

pub fn role_to_pb(role: Role) -> pb::NeighborRole {
    match role {
        Role::Supplier => pb::NeighborRole::Supplier,
        Role::Customer => pb::NeighborRole::Customer,
        Role::Investor => pb::NeighborRole::Investor,
        Role::Investee => pb::NeighborRole::Investee,
        Role::Partner => pb::NeighborRole::Partner,
    }
}

/// The closing summary of every analysis: `rows` is what the stream sent.
pub fn summary(revision: u64, layer: Layer, run: &RunSummary, rows: u64) -> pb::AnalysisSummary {
    pb::AnalysisSummary {
        revision,
        layer: layer_to_pb(layer) as i32,
        nodes: run.nodes as u64,
        edges: run.edges as u64,
        directed: run.directed,
        iterations: run.iterations,
        converged: run.converged,
        elapsed: prost_types::Duration::try_from(run.elapsed).ok(),
        rows,
    }
}

fn ids(ids: &[Id]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

fn id_or_empty(id: Option<&Id>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

pub fn centrality_row_to_pb(row: &RankedRow) -> pb::CentralityRow {
    pb::CentralityRow {
        node_id: row.node.to_string(),
        name: row.name.clone(),
        value: row.value,
        rank: row.rank,
    }
}

pub fn community_row_to_pb(row: &CommunityRow) -> pb::CommunityRow {
    pb::CommunityRow {
        node_id: row.node.to_string(),
        name: row.name.clone(),
        community: row.community,
    }
}

pub fn inter_cluster_node_to_pb(node: &InterClusterNode) -> pb::InterClusterNode {
    pb::InterClusterNode {
        id: node.id.to_string(),
        name: node.name.clone(),
        cluster_id: node.cluster.to_string(),
        actors: node.actors,
        lat: node.at.map(|(lat, _)| lat),
        lon: node.at.map(|(_, lon)| lon),
    }
}

pub fn inter_cluster_edge_to_pb(edge: &InterClusterEdge) -> pb::InterClusterEdge {
    pb::InterClusterEdge {
        source: edge.source.to_string(),
        target: edge.target.to_string(),
        firm_links: edge
            .firm_links
            .iter()
            .map(|((kind, channel), (count, weight))| pb::FirmLinkAggregate {
                kind: wire(LinkKind::ALL, *kind),
                channel: wire(Channel::ALL, *channel),
                count: *count,
                weight: *weight,
            })
            .collect(),
        cluster_links: edge
            .cluster_links
            .iter()
            .map(|(kind, channel, weight)| pb::ExplicitClusterLink {
                kind: wire(ClusterLinkKind::ALL, *kind),
                channel: wire(Channel::ALL, *channel),
                weight: *weight,
            })
            .collect(),
        firm_link_count: edge.firm_link_count(),
        total_weight: edge.total_weight(),
    }
}

pub fn pair_overlap_to_pb(pair: PairOverlap) -> pb::ClusterOverlapRow {
    pb::ClusterOverlapRow {
        cluster_a: pair.a.to_string(),
        cluster_b: pair.b.to_string(),
        dimensions: pair
            .dimensions
            .into_iter()
            .map(|d| {
                let mut row = pb::DimensionOverlap {
                    dimension: dimension_to_pb(d.dimension) as i32,
                    jaccard: d.jaccard,
                    overlap_coefficient: d.overlap_coefficient,
                    cosine: d.cosine,
                    size_a: d.size_a as u64,
                    size_b: d.size_b as u64,
                    shared_count: d.shared_count as u64,
                    ..Default::default()
                };
                match d.shared {
                    SharedItems::Actors(actors) => row.shared_actor_ids = ids(&actors),
                    SharedItems::Segments(segments) => row.shared_segments = segments_to_pb(&segments),
                    SharedItems::Industries(industries) => row.shared_industries = industries,
                }
                row
            })
            .collect(),
    }
}

fn tally_to_pb(t: &Tally) -> pb::LinkTally {
    pb::LinkTally {
        count: t.count,
        weight: t.weight,
    }
}

pub fn pair_crossing_to_pb(p: &PairCrossing) -> pb::ClusterPairCrossing {
    pb::ClusterPairCrossing {
        cluster_a: p.a.to_string(),
        cluster_b: p.b.to_string(),
        by_kind: p
            .by_kind
            .iter()
            .map(|((kind, channel), t)| pb::FirmLinkAggregate {
                kind: wire(LinkKind::ALL, *kind),
                channel: wire(Channel::ALL, *channel),
                count: t.count,
                weight: t.weight,
            })
            .collect(),
        capital_a_to_b: Some(tally_to_pb(&p.capital_a_to_b)),
        capital_b_to_a: Some(tally_to_pb(&p.capital_b_to_a)),
        mutual: p.mutual,
        reciprocity: p.reciprocity,
        capital_share: p.capital_share,
    }
}

pub fn crossing_index_to_pb(c: &ClusterCrossing) -> pb::ClusterCrossingIndex {
    pb::ClusterCrossingIndex {
        cluster_id: c.cluster.to_string(),
        capital_ties: c.capital_ties,
        crossing_capital_ties: c.crossing_capital_ties,
        cross_investment_index: c.cross_investment_index,
        crossing_ties: c.crossing_ties,
    }
}

/// A substitute ranked `rank`; `of_cluster` when the target was a cluster
/// (the row then names a cluster, not an actor).
pub fn substitute_to_pb(s: Substitute, rank: usize, of_cluster: bool) -> pb::SubstituteRow {
    let (actor_id, cluster_id) = if of_cluster {
        (String::new(), s.id.to_string())
    } else {
        (s.id.to_string(), String::new())
    };
    pb::SubstituteRow {
        actor_id,
        cluster_id,
        name: s.name,
        score: s.score,
        structural: s.structural,
        segments: s.segments,
        industry: s.industry,
        shared_neighbor_count: s.shared_neighbor_count as u64,
        shared_neighbors: s
            .shared_neighbors
            .into_iter()
            .map(|(role, id)| pb::SharedNeighbor {
                role: role_to_pb(role) as i32,
                actor_id: id.to_string(),
            })
            .collect(),
        shared_segments: segments_to_pb(&s.shared_segments),
        rank: rank as u32,
    }
}

pub fn gap_to_pb(g: &Gap) -> pb::SubstitutionGapRow {
    pb::SubstitutionGapRow {
        actor_id: g.actor.to_string(),
        name: g.name.clone(),
        downstream_lost: g.downstream_lost as u64,
        lost: ids(&g.lost),
        articulation_point: g.articulation_point,
        best_substitute_id: id_or_empty(g.best_substitute.as_ref().map(|b| &b.id)),
        best_substitute_score: g.best_substitute.as_ref().map_or(0.0, |b| b.score),
    }
}

fn link_end_to_pb(e: &LinkEnd) -> pb::FusionLinkEnd {
    pb::FusionLinkEnd {
        actor_id: e.actor.to_string(),
        industry: e.industry.clone(),
        community: e.community,
        cluster_ids: ids(&e.clusters),
        site_id: id_or_empty(e.site.as_ref()),
    }
}

pub fn fusion_link_to_pb(l: &FusionLink, rank: usize) -> pb::FusionLinkRow {
    pb::FusionLinkRow {
        source: Some(link_end_to_pb(&l.source)),
        target: Some(link_end_to_pb(&l.target)),
        kind: wire(LinkKind::ALL, l.kind),
        channel: wire(Channel::ALL, l.channel),
        weight: l.weight,
        valid_from: text_of(l.valid_from),
        betweenness: l.betweenness,
        new: l.new,
        rank: rank as u32,
    }
}

pub fn pair_fusion_to_pb(p: &PairFusion) -> pb::ClusterPairFusion {
    pb::ClusterPairFusion {
        cluster_a: p.a.to_string(),
        cluster_b: p.b.to_string(),
        ties: p.ties,
        cross_industry_ties: p.cross_industry_ties,
        fusion_index: p.fusion_index,
        fusion_links: p.fusion_links,
        new_fusion_links: p.new_fusion_links,
        industry_pairs: p
            .industry_pairs
            .iter()
            .map(|pair| pb::IndustryPairTies {
                industry_a: pair.a.clone(),
                industry_b: pair.b.clone(),
                ties: pair.ties,
            })
            .collect(),
    }
}

pub fn core_firm_to_pb(c: &CoreFirm) -> pb::CoreFirm {
    pb::CoreFirm {
        actor_id: c.actor.to_string(),
        name: c.name.clone(),
        kind: wire(ActorKind::ALL, c.kind),
        reach: c.reach,
        upstream: c.upstream,
        downstream: c.downstream,
        systems: c
            .systems
            .iter()
            .map(|s| pb::SupportingSystem {
                member_ids: ids(&s.members),
                tier1_ids: ids(&s.tier1),
                segments: s
                    .segments
                    .iter()
                    .map(|(segment, members)| pb::SegmentCount {
                        segment: wire(Segment::ALL, *segment),
                        members: *members,
                    })
                    .collect(),
                industries: s
                    .industries
                    .iter()
                    .map(|(industry, members)| pb::IndustryCount {
                        industry: industry.clone(),
                        members: *members,
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub fn upgrading_to_pb(cluster: &Id, from: Date, to: Date, u: &Upgrading) -> pb::UpgradingReport {
    pb::UpgradingReport {
        cluster_id: cluster.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        members_before: u.members_before,
        members_after: u.members_after,
        functional: Some(pb::FunctionalUpgrading {
            detected: u.functional.detected,
            value_before: u.functional.value_before,
            value_after: u.functional.value_after,
            segments: u
                .functional
                .segments
                .iter()
                .map(|c| pb::SegmentChange {
                    segment: wire(Segment::ALL, c.segment),
                    members_before: c.members_before,
                    members_after: c.members_after,
                })
                .collect(),
            moved: u.functional.moved.iter().map(move_to_pb).collect(),
            entered: u.functional.entered,
            exited: u.functional.exited,
            moved_up: u.functional.moved_up,
            entered_higher: u.functional.entered_higher,
            shrinking_chain: u.functional.shrinking_chain,
        }),
        chain: Some(pb::ChainUpgrading {
            detected: u.chain.detected,
            new_partner_industries: u.chain.new_partner_industries.iter().map(new_industry_to_pb).collect(),
            new_member_industries: u.chain.new_member_industries.iter().map(new_industry_to_pb).collect(),
        }),
        product: Some(pb::ProductUpgrading {
            detected: u.product.detected,
            actors_with_data: u.product.actors_with_data,
            new_product_lines: u.product.new_product_lines.iter().map(move_to_pb).collect(),
        }),
        process: Some(pb::ProcessUpgrading {
            detected: u.process.detected,
            actors_with_data: u.process.actors_with_data,
            median_productivity_growth: u.process.median_productivity_growth,
            improved: u.process.improved,
        }),
    }
}

pub fn move_to_pb(m: &Move) -> pb::ActorMove {
    pb::ActorMove {
        actor_id: m.actor.to_string(),
        segments_before: m.segments_before.iter().map(|s| wire(Segment::ALL, s)).collect(),
        segments_after: m.segments_after.iter().map(|s| wire(Segment::ALL, s)).collect(),
        industry_before: m.industry_before.clone(),
        industry_after: m.industry_after.clone(),
    }
}

pub fn segments_to_pb(segments: &[Segment]) -> Vec<i32> {
    segments.iter().map(|s| wire(Segment::ALL, *s)).collect()
}

pub fn assessment_to_pb(a: &Assessment) -> pb::StageAssessment {
    let e = &a.evidence;
    pb::StageAssessment {
        cluster_id: a.cluster.to_string(),
        name: a.name.clone(),
        stage: stage_to_pb(a.stage) as i32,
        scores: a
            .scores
            .iter()
            .map(|s| pb::StageScore {
                stage: stage_to_pb(s.stage) as i32,
                score: s.score,
                threshold: s.threshold,
                passed: s.passed(),
                factors: s
                    .factors
                    .iter()
                    .map(|f| pb::StageFactor {
                        name: f.name.to_string(),
                        value: f.value,
                        weight: f.weight,
                    })
                    .collect(),
                unmet: s.unmet().join("; "),
                gates: s.gates.iter().map(gate_to_pb).collect(),
            })
            .collect(),
        evidence: Some(pb::StageEvidence {
            // Filled in by AssessStage from the relatedness matrix.
            eci: None,
            upgrade_paths: Vec::new(),
            members: e.members,
            enterprises: e.enterprises,
            home_country: e.home.country().map(|c| c.as_str().to_string()).unwrap_or_default(),
            home_country_source: match e.home {
                HomeCountry::Given(_) => pb::HomeCountrySource::Given,
                HomeCountry::FromSites(_) => pb::HomeCountrySource::Sites,
                HomeCountry::Unknown(_) => pb::HomeCountrySource::Unknown,
            } as i32,
            home_country_unknown_reason: match &e.home {
                HomeCountry::Unknown(why) => why.clone(),
                _ => String::new(),
            },
            ties: e.ties,
            internal_ties: e.internal_ties,
            domestic_external_ties: e.domestic_external_ties,
            other_region_ties: e.other_region_ties,
            foreign_ties: e.foreign_ties,
            unknown_country_ties: e.unknown_country_ties,
            virtual_ties: e.virtual_ties,
            segments_covered: segments_to_pb(&e.segments_covered),
            segments_per_enterprise: e.segments_per_enterprise,
            mean_segment_value: e.mean_segment_value,
            foreign_capital_enterprises: e.foreign_capital_enterprises,
            core_firm: e.core_firm.as_ref().map(|c| c.to_string()).unwrap_or_default(),
            core_reach: e.core_reach,
            places: e.places.iter().map(|p| p.to_string()).collect(),
            cross_place_ties: e.cross_place_ties,
            expected_cross_place_ties: e.expected_cross_place_ties,
            place_interaction: e.place_interaction,
            place_distinctness: e.place_distinctness,
            specialisation_p: e.specialisation_p,
            platforms: e.platforms.iter().map(|p| p.to_string()).collect(),
            corridors: e.corridors,
            overlap: e.overlap.value,
            overlap_with: e.overlap.with.as_ref().map(|c| c.to_string()).unwrap_or_default(),
            substitution: e.substitution.value,
            substitution_with: e.substitution.with.as_ref().map(|c| c.to_string()).unwrap_or_default(),
            cross_investment_index: e.cross_investment_index,
            fusion_index: e.fusion_index,
            whole_relations: e
                .whole_relations
                .iter()
                .map(|r| pb::WholeRelation {
                    cluster_id: r.cluster.to_string(),
                    overlap: r.overlap,
                    substitution: r.substitution,
                    ties: r.ties,
                    capital_ties: r.capital_ties,
                    cross_industry_ties: r.cross_industry_ties,
                    virtual_ties: r.virtual_ties,
                })
                .collect(),
        }),
        explanation: a.explanation(),
        pattern: a.pattern.as_ref().map(pattern_to_pb),
    }
}

pub fn gate_to_pb(g: &Gate) -> pb::StageGate {
    pb::StageGate {
        name: g.name.to_string(),
        value: g.value,
        limit: g.limit,
        at_most: g.at_most,
        met: g.met,
        meaning: g.meaning.to_string(),
    }
}

pub fn pattern_to_pb(p: &Pattern) -> pb::VirtualIntegrationPattern {
    let links = |links: &[(crate::model::Id, crate::model::Id)]| {
        links
            .iter()
            .map(|(s, t)| pb::PlaceLink {
                source: s.to_string(),
                target: t.to_string(),
            })
            .collect()
    };
    pb::VirtualIntegrationPattern {
        whole_id: p.id.to_string(),
        cluster_id: p.single_cluster().map(|c| c.to_string()).unwrap_or_default(),
        cluster_ids: p.clusters.iter().map(|c| c.to_string()).collect(),
        parts: p
            .parts
            .iter()
            .map(|part| pb::PatternPart {
                place_id: part.place.to_string(),
                cluster_id: part.cluster.to_string(),
                site_ids: part.sites.iter().map(|s| s.to_string()).collect(),
                members: part.members,
                segments: part
                    .segments
                    .iter()
                    .map(|(segment, share)| pb::SegmentShare {
                        segment: wire(Segment::ALL, *segment),
                        share: *share,
                    })
                    .collect(),
                industries: part
                    .industries
                    .iter()
                    .map(|(industry, share)| pb::IndustryShare {
                        industry: industry.clone(),
                        share: *share,
                    })
                    .collect(),
            })
            .collect(),
        platforms: p
            .platforms
            .iter()
            .map(|(id, tied)| pb::PlatformActor {
                actor_id: id.to_string(),
                members_tied: *tied,
            })
            .collect(),
        platform_links: links(&p.platform_links),
        corridors: links(&p.corridors),
        joining_ties: p.joining_ties,
        virtual_joining_ties: p.virtual_joining_ties,
        cross_place_ties: p.interaction.between_places,
        expected_cross_place_ties: p.interaction.expected_between_places,
        interaction_ratio: p.interaction.ratio,
        distinctness: p.specialisation.distinctness,
        distinctness_null_mean: p.specialisation.null_mean,
        specialisation_p: p.specialisation.p_value,
        segments_covered: segments_to_pb(&p.segments_covered),
        reaches_final_customers: p.reaches_final_customers,
        gates: p.gates.iter().map(gate_to_pb).collect(),
        virtual_factor: p.factors.virtual_share,
        distinctness_factor: p.factors.distinctness,
        interaction_factor: p.factors.interaction,
        coverage_factor: p.factors.coverage,
        confidence: p.confidence,
    }
}

pub fn new_industry_to_pb(n: &NewIndustry) -> pb::NewIndustry {
    pb::NewIndustry {
        industry: n.group.clone(),
        ties: n.ties,
        related: n.related,
        proximity: n.proximity,
    }
}
