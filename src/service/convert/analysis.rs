//! Analysis results (domain types) as proto messages.

use crate::{
    analysis::{
        run::RunSummary,
        stages::{
            stage::{Assessment, Gate},
            upgrading::{Move, NewIndustry},
            virtual_integration::Pattern,
        },
    },
    graph::Layer,
    model::Segment,
};

use super::super::{
    analysis_params::{layer_to_pb, stage_to_pb},
    pb,
};
use super::wire;

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
            members: e.members,
            enterprises: e.enterprises,
            home_country: e.home_country.clone(),
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
        cluster_id: p.cluster.to_string(),
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

pub fn summary(revision: u64, layer: Layer, run: &RunSummary) -> pb::AnalysisSummary {
    pb::AnalysisSummary {
        revision,
        layer: layer_to_pb(layer) as i32,
        nodes: run.nodes as u64,
        edges: run.edges as u64,
        directed: run.directed,
        iterations: run.iterations,
        converged: run.converged,
        elapsed_seconds: run.elapsed_seconds,
    }
}

pub fn new_industry_to_pb(n: &NewIndustry) -> pb::NewIndustry {
    pb::NewIndustry {
        industry: n.group.clone(),
        ties: n.ties,
        related: n.related,
    }
}
