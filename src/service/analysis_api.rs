//! `clusternet.v1.AnalysisService`: each handler validates its request
//! (`analysis_params`), says what its job computes and how the results
//! become messages (`convert::analysis`), and hands it to the streaming
//! runtime (`streaming`), which admits it, runs it and streams its events.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::{
    admission::AnalysisLimits,
    analysis_params::{self, SubstituteTarget},
    convert::{analysis::*, text_of, wire},
    metrics::Metrics,
    pb::{self, analysis_service_server::AnalysisService},
    streaming::{deadline_of, EventStream, Runner, ROWS_PER_MESSAGE},
};
use crate::{
    analysis::{
        footprint::{self, Footprint, Workload},
        relations::crossing::crossings,
        relations::fusion::fusion_links,
        relations::gaps::{substitution_gaps, GapConfig},
        relations::overlap::for_each_pair,
        relations::substitution::{cluster_substitutes, substitutes},
        run::{run_centrality, run_communities, RunSummary},
        stages::core_firms::core_firms,
        stages::stage::assess,
        stages::stage_config::StageConfig,
        stages::upgrading::upgrading,
        stages::virtual_integration::detect,
    },
    error::{Error, Result},
    graph::{inter_cluster, Layer},
    model::{ActorKind, Channel, ClusterLinkKind, LinkKind, Segment},
    network::Network,
    store::Store,
};

pub struct AnalysisApi {
    store: Arc<Store>,
    runner: Runner,
    /// Weights, thresholds and smile curve of the stage analyses.
    stage_config: Arc<StageConfig>,
}

impl AnalysisApi {
    /// `limits`: slots, queue and memory budget of the analyses.
    /// `stall_timeout`: how long a result waits for a client that stopped
    /// reading before the analysis is cancelled and frees its slot.
    pub fn new(
        store: Arc<Store>,
        limits: AnalysisLimits,
        metrics: Arc<Metrics>,
        stall_timeout: Duration,
        shutdown: watch::Receiver<bool>,
        stage_config: StageConfig,
    ) -> Self {
        AnalysisApi {
            store,
            runner: Runner::new(limits, metrics, stall_timeout, shutdown),
            stage_config: Arc::new(stage_config),
        }
    }
}

/// The memory an analysis of `workload` needs on `network`, with the
/// worker threads it may use.
fn footprint_of(workload: Workload, network: &Network) -> Footprint {
    footprint::estimate(workload, network, rayon::current_num_threads())
}

#[tonic::async_trait]
impl AnalysisService for AnalysisApi {
    type CentralityStream = EventStream<pb::CentralityEvent>;
    type CommunitiesStream = EventStream<pb::CommunityEvent>;
    type InterClusterNetworkStream = EventStream<pb::InterClusterEvent>;
    type ClusterOverlapStream = EventStream<pb::ClusterOverlapEvent>;
    type CrossingsStream = EventStream<pb::CrossingsEvent>;
    type SubstitutesStream = EventStream<pb::SubstitutesEvent>;
    type SubstitutionGapsStream = EventStream<pb::SubstitutionGapsEvent>;
    type FusionLinksStream = EventStream<pb::FusionLinksEvent>;
    type AssessStageStream = EventStream<pb::AssessStageEvent>;
    type DetectVirtualIntegrationStream = EventStream<pb::DetectVirtualIntegrationEvent>;
    type CoreFirmsStream = EventStream<pb::CoreFirmsEvent>;
    type UpgradingStream = EventStream<pb::UpgradingEvent>;

    #[tracing::instrument(skip_all, fields(cluster = %request.get_ref().cluster_id))]
    async fn upgrading(
        &self,
        request: Request<pb::UpgradingRequest>,
    ) -> Result<Response<Self::UpgradingStream>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let snapshot = self.store.snapshot();
        let cluster = analysis_params::cluster_id(&request.cluster_id, &snapshot.network)?;
        let (from, to) = analysis_params::date_range(&request.from, &request.to)?;
        let filter = analysis_params::filter(request.filter, &snapshot.network)?;
        let config = analysis_params::stage_config(&self.stage_config, &request.overrides)?;
        let stream = self
            .runner
            .spawn(
                "Upgrading",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                move |control, sink| {
                    let started = Instant::now();
                    control.progress("upgrading", 0, 1);
                    let u = upgrading(&snapshot.network, &filter, &cluster, from, to, &config);
                    control.check()?;
                    let report = pb::UpgradingReport {
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
                                .map(|(segment, before, after)| pb::SegmentChange {
                                    segment: wire(Segment::ALL, *segment),
                                    members_before: *before,
                                    members_after: *after,
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
                            new_partner_industries: u
                                .chain
                                .new_partner_industries
                                .iter()
                                .map(new_industry_to_pb)
                                .collect(),
                            new_member_industries: u
                                .chain
                                .new_member_industries
                                .iter()
                                .map(new_industry_to_pb)
                                .collect(),
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
                    };
                    sink.send(pb::UpgradingEvent {
                        event: Some(pb::upgrading_event::Event::Report(report)),
                    })?;
                    let run = RunSummary::counted(u.members_after as usize, 0, true, started);
                    sink.send(pb::UpgradingEvent {
                        event: Some(pb::upgrading_event::Event::Summary(summary(
                            snapshot.revision,
                            Layer::Firm,
                            &run,
                        ))),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all)]
    async fn assess_stage(
        &self,
        request: Request<pb::AssessStageRequest>,
    ) -> Result<Response<Self::AssessStageStream>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let snapshot = self.store.snapshot();
        let filter = analysis_params::filter(request.filter, &snapshot.network)?;
        let config = analysis_params::stage_config(&self.stage_config, &request.overrides)?;
        let stream = self
            .runner
            .spawn(
                "AssessStage",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                move |control, sink| {
                    let started = Instant::now();
                    control.progress("assess_stage", 0, 1);
                    let assessments = assess(&snapshot.network, &filter, &config, control)?;
                    let count = assessments.len();
                    sink.send_rows(assessments.iter().map(assessment_to_pb), |clusters| {
                        pb::AssessStageEvent {
                            event: Some(pb::assess_stage_event::Event::Assessments(pb::StageAssessments {
                                clusters,
                            })),
                        }
                    })?;
                    let run = RunSummary::counted(count, 0, false, started);
                    sink.send(pb::AssessStageEvent {
                        event: Some(pb::assess_stage_event::Event::Summary(summary(
                            snapshot.revision,
                            Layer::Cluster,
                            &run,
                        ))),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all)]
    async fn detect_virtual_integration(
        &self,
        request: Request<pb::DetectVirtualIntegrationRequest>,
    ) -> Result<Response<Self::DetectVirtualIntegrationStream>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let snapshot = self.store.snapshot();
        let filter = analysis_params::filter(request.filter, &snapshot.network)?;
        let config = analysis_params::stage_config(&self.stage_config, &request.overrides)?;
        let stream = self
            .runner
            .spawn(
                "DetectVirtualIntegration",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                move |control, sink| {
                    let started = Instant::now();
                    control.progress("detect_virtual_integration", 0, 1);
                    let patterns = detect(&snapshot.network, &filter, &config, control)?;
                    let count = patterns.len();
                    sink.send_rows(patterns.iter().map(pattern_to_pb), |patterns| {
                        pb::DetectVirtualIntegrationEvent {
                            event: Some(pb::detect_virtual_integration_event::Event::Patterns(
                                pb::VirtualIntegrationPatterns { patterns },
                            )),
                        }
                    })?;
                    let run = RunSummary::counted(count, 0, false, started);
                    sink.send(pb::DetectVirtualIntegrationEvent {
                        event: Some(pb::detect_virtual_integration_event::Event::Summary(summary(
                            snapshot.revision,
                            Layer::Site,
                            &run,
                        ))),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(cluster = %request.get_ref().cluster_id))]
    async fn core_firms(
        &self,
        request: Request<pb::CoreFirmsRequest>,
    ) -> Result<Response<Self::CoreFirmsStream>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let snapshot = self.store.snapshot();
        let cluster = analysis_params::cluster_id(&request.cluster_id, &snapshot.network)?;
        let filter = analysis_params::filter(request.filter, &snapshot.network)?;
        let config = analysis_params::stage_config(&self.stage_config, &request.overrides)?;
        let stream = self
            .runner
            .spawn(
                "CoreFirms",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                move |control, sink| {
                    let started = Instant::now();
                    control.progress("core_firms", 0, 1);
                    let structure = core_firms(&snapshot.network, &filter, &cluster, &config);
                    control.check()?;
                    let cores = structure
                        .cores
                        .iter()
                        .map(|c| pb::CoreFirm {
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
                                    member_ids: s.members.iter().map(|m| m.to_string()).collect(),
                                    tier1_ids: s.tier1.iter().map(|m| m.to_string()).collect(),
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
                        })
                        .collect();
                    sink.send(pb::CoreFirmsEvent {
                        event: Some(pb::core_firms_event::Event::Cores(pb::CoreFirmList {
                            members: structure.members,
                            cores,
                            best_reach: structure.best_reach,
                        })),
                    })?;
                    let run = RunSummary::counted(structure.members as usize, 0, true, started);
                    sink.send(pb::CoreFirmsEvent {
                        event: Some(pb::core_firms_event::Event::Summary(summary(
                            snapshot.revision,
                            Layer::Firm,
                            &run,
                        ))),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all)]
    async fn fusion_links(
        &self,
        request: Request<pb::FusionLinksRequest>,
    ) -> Result<Response<Self::FusionLinksStream>, Status> {
        let deadline = deadline_of(&request);
        let snapshot = self.store.snapshot();
        let (filter, config) = analysis_params::fusion_job(request.into_inner(), &snapshot.network)?;
        let stream = self
            .runner
            .spawn(
                "FusionLinks",
                footprint_of(Workload::EdgeSweeps, &snapshot.network),
                deadline,
                move |control, sink| {
                    let started = Instant::now();
                    let fusion = fusion_links(&snapshot.network, &filter, &config, control)?;
                    let end = |e: &crate::analysis::relations::fusion::LinkEnd| pb::FusionLinkEnd {
                        actor_id: e.actor.to_string(),
                        industry: e.industry.clone(),
                        community: e.community,
                        cluster_ids: e.clusters.iter().map(|c| c.to_string()).collect(),
                        site_id: e.site.as_ref().map(|s| s.to_string()).unwrap_or_default(),
                    };
                    let links = fusion.links.iter().enumerate().map(|(i, l)| pb::FusionLinkRow {
                        source: Some(end(&l.source)),
                        target: Some(end(&l.target)),
                        kind: wire(LinkKind::ALL, l.kind),
                        channel: wire(Channel::ALL, l.channel),
                        weight: l.weight,
                        valid_from: text_of(l.valid_from),
                        betweenness: l.betweenness,
                        new: l.new,
                        rank: i as u32 + 1,
                    });
                    sink.send_rows(links, |links| pb::FusionLinksEvent {
                        event: Some(pb::fusion_links_event::Event::Links(pb::FusionLinkRows { links })),
                    })?;
                    let pairs = fusion.pairs.iter().map(|p| pb::ClusterPairFusion {
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
                            .map(|(a, b, ties)| pb::IndustryPairTies {
                                industry_a: a.clone(),
                                industry_b: b.clone(),
                                ties: *ties,
                            })
                            .collect(),
                    });
                    sink.send_rows(pairs, |pairs| pb::FusionLinksEvent {
                        event: Some(pb::fusion_links_event::Event::Pairs(pb::ClusterPairFusions { pairs })),
                    })?;
                    let run = RunSummary::counted(fusion.nodes, fusion.edges, false, started);
                    sink.send(pb::FusionLinksEvent {
                        event: Some(pb::fusion_links_event::Event::Summary(pb::FusionLinksSummary {
                            analysis: Some(summary(snapshot.revision, Layer::Firm, &run)),
                            communities: fusion.communities as u32,
                            modularity: fusion.modularity,
                            betweenness_pivots: fusion.pivots.unwrap_or(0) as u32,
                            fusion_links: fusion.total_fusion_links as u64,
                        })),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all)]
    async fn substitution_gaps(
        &self,
        request: Request<pb::SubstitutionGapsRequest>,
    ) -> Result<Response<Self::SubstitutionGapsStream>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let snapshot = self.store.snapshot();
        let mut config = GapConfig::default();
        match request.min_substitute_score {
            0.0 => {}
            s if s > 0.0 && s <= 1.0 => config.min_substitute_score = s,
            s => return Err(Error::invalid("min_substitute_score", format!("{s} is outside (0, 1]")).into()),
        }
        match request.lost_limit {
            0 => {}
            n @ 1..=1000 => config.lost_limit = n as usize,
            n => return Err(Error::invalid("lost_limit", format!("{n} is outside 0..1000")).into()),
        }
        let filter = analysis_params::filter(request.filter, &snapshot.network)?;
        let stream = self
            .runner
            .spawn(
                "SubstitutionGaps",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                move |control, sink| {
                    let started = Instant::now();
                    control.progress("substitution_gaps", 0, 1);
                    let gaps = substitution_gaps(&snapshot.network, &filter, &config);
                    control.check()?;
                    sink.send_rows(
                        gaps.iter().map(|g| pb::SubstitutionGapRow {
                            actor_id: g.actor.to_string(),
                            name: g.name.clone(),
                            downstream_lost: g.downstream_lost as u64,
                            lost: g.lost.iter().map(|id| id.to_string()).collect(),
                            articulation_point: g.articulation_point,
                            best_substitute_id: g
                                .best_substitute
                                .as_ref()
                                .map(|(id, _)| id.to_string())
                                .unwrap_or_default(),
                            best_substitute_score: g.best_substitute.as_ref().map_or(0.0, |(_, s)| *s),
                        }),
                        |rows| pb::SubstitutionGapsEvent {
                            event: Some(pb::substitution_gaps_event::Event::Rows(pb::SubstitutionGapRows {
                                rows,
                            })),
                        },
                    )?;
                    let run = RunSummary::counted(gaps.len(), 0, true, started);
                    sink.send(pb::SubstitutionGapsEvent {
                        event: Some(pb::substitution_gaps_event::Event::Summary(summary(
                            snapshot.revision,
                            Layer::Firm,
                            &run,
                        ))),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(actor = %request.get_ref().actor_id, cluster = %request.get_ref().cluster_id))]
    async fn substitutes(
        &self,
        request: Request<pb::SubstitutesRequest>,
    ) -> Result<Response<Self::SubstitutesStream>, Status> {
        let deadline = deadline_of(&request);
        let snapshot = self.store.snapshot();
        let (target, filter, config) = analysis_params::substitutes_job(request.get_ref(), &snapshot.network)?;
        let stream = self
            .runner
            .spawn(
                "Substitutes",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                move |control, sink| {
                    let started = Instant::now();
                    control.progress("substitutes", 0, 1);
                    let (rows, layer) = match &target {
                        SubstituteTarget::Actor(ix) => {
                            (substitutes(&snapshot.network, &filter, *ix, &config), Layer::Firm)
                        }
                        SubstituteTarget::Cluster(id) => (
                            cluster_substitutes(&snapshot.network, &filter, id, &config),
                            Layer::Cluster,
                        ),
                    };
                    control.check()?;
                    let rows: Vec<pb::SubstituteRow> = rows
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| pb::SubstituteRow {
                            actor_id: if layer == Layer::Firm {
                                r.id.to_string()
                            } else {
                                String::new()
                            },
                            cluster_id: if layer == Layer::Cluster {
                                r.id.to_string()
                            } else {
                                String::new()
                            },
                            name: r.name,
                            score: r.score,
                            structural: r.structural,
                            segments: r.segments,
                            industry: r.industry,
                            shared_neighbor_count: r.shared_neighbor_count as u64,
                            shared_neighbors: r
                                .shared_neighbors
                                .into_iter()
                                .map(|(role, id)| pb::SharedNeighbor {
                                    role: role.as_str().to_string(),
                                    actor_id: id.to_string(),
                                })
                                .collect(),
                            shared_segments: segments_to_pb(&r.shared_segments),
                            rank: i as u32 + 1,
                        })
                        .collect();
                    let run = RunSummary::counted(rows.len(), 0, true, started);
                    sink.send(pb::SubstitutesEvent {
                        event: Some(pb::substitutes_event::Event::Rows(pb::SubstituteRows { rows })),
                    })?;
                    sink.send(pb::SubstitutesEvent {
                        event: Some(pb::substitutes_event::Event::Summary(summary(
                            snapshot.revision,
                            layer,
                            &run,
                        ))),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all)]
    async fn crossings(
        &self,
        request: Request<pb::CrossingsRequest>,
    ) -> Result<Response<Self::CrossingsStream>, Status> {
        let deadline = deadline_of(&request);
        let snapshot = self.store.snapshot();
        let filter = analysis_params::filter(request.into_inner().filter, &snapshot.network)?;
        let stream = self
            .runner
            .spawn(
                "Crossings",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                move |control, sink| {
                    let started = Instant::now();
                    control.progress("crossings", 0, 1);
                    let (pairs, clusters) = crossings(&snapshot.network, &filter);
                    control.check()?;
                    let tally = |t: &crate::analysis::relations::crossing::Tally| pb::LinkTally {
                        count: t.count,
                        weight: t.weight,
                    };
                    sink.send_rows(
                        pairs.iter().map(|p| pb::ClusterPairCrossing {
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
                            capital_a_to_b: Some(tally(&p.capital_a_to_b)),
                            capital_b_to_a: Some(tally(&p.capital_b_to_a)),
                            mutual: p.mutual,
                            reciprocity: p.reciprocity,
                            capital_share: p.capital_share,
                        }),
                        |pairs| pb::CrossingsEvent {
                            event: Some(pb::crossings_event::Event::Pairs(pb::CrossingPairs { pairs })),
                        },
                    )?;
                    sink.send_rows(
                        clusters.iter().map(|c| pb::ClusterCrossingIndex {
                            cluster_id: c.cluster.to_string(),
                            capital_ties: c.capital_ties,
                            crossing_capital_ties: c.crossing_capital_ties,
                            cross_investment_index: c.cross_investment_index,
                            crossing_ties: c.crossing_ties,
                        }),
                        |clusters| pb::CrossingsEvent {
                            event: Some(pb::crossings_event::Event::Clusters(pb::CrossingIndexes { clusters })),
                        },
                    )?;
                    let run = RunSummary::counted(clusters.len(), pairs.len(), true, started);
                    sink.send(pb::CrossingsEvent {
                        event: Some(pb::crossings_event::Event::Summary(summary(
                            snapshot.revision,
                            Layer::Cluster,
                            &run,
                        ))),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(a = %request.get_ref().cluster_a, b = %request.get_ref().cluster_b))]
    async fn cluster_overlap(
        &self,
        request: Request<pb::ClusterOverlapRequest>,
    ) -> Result<Response<Self::ClusterOverlapStream>, Status> {
        let deadline = deadline_of(&request);
        let snapshot = self.store.snapshot();
        let job = analysis_params::overlap_job(request.into_inner(), &snapshot.network)?;
        let stream = self
            .runner
            .spawn(
                "ClusterOverlap",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                move |control, sink| {
                    let started = Instant::now();
                    let mut batch = Vec::with_capacity(ROWS_PER_MESSAGE);
                    let send = |rows: Vec<pb::ClusterOverlapRow>| {
                        sink.send(pb::ClusterOverlapEvent {
                            event: Some(pb::cluster_overlap_event::Event::Rows(pb::ClusterOverlapRows { rows })),
                        })
                    };
                    let pairs = for_each_pair(&snapshot.network, &job, control, |pair| {
                        batch.push(pb::ClusterOverlapRow {
                            cluster_a: pair.a.to_string(),
                            cluster_b: pair.b.to_string(),
                            dimensions: pair
                                .dimensions
                                .into_iter()
                                .map(|d| pb::DimensionOverlap {
                                    dimension: analysis_params::dimension_to_pb(d.dimension) as i32,
                                    jaccard: d.jaccard,
                                    overlap_coefficient: d.overlap_coefficient,
                                    cosine: d.cosine,
                                    size_a: d.size_a as u64,
                                    size_b: d.size_b as u64,
                                    shared_count: d.shared_count as u64,
                                    shared: d.shared,
                                })
                                .collect(),
                        });
                        if batch.len() == ROWS_PER_MESSAGE {
                            send(std::mem::take(&mut batch))?;
                        }
                        Ok(())
                    })?;
                    if !batch.is_empty() {
                        send(batch)?;
                    }
                    let run = RunSummary::counted(snapshot.network.clusters.len(), pairs, false, started);
                    sink.send(pb::ClusterOverlapEvent {
                        event: Some(pb::cluster_overlap_event::Event::Summary(summary(
                            snapshot.revision,
                            Layer::Cluster,
                            &run,
                        ))),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(measure = request.get_ref().measure, layer = request.get_ref().layer))]
    async fn centrality(
        &self,
        request: Request<pb::CentralityRequest>,
    ) -> Result<Response<Self::CentralityStream>, Status> {
        let deadline = deadline_of(&request);
        let snapshot = self.store.snapshot();
        let job = analysis_params::centrality_job(request.into_inner(), &snapshot.network)?;
        let stream = self
            .runner
            .spawn(
                "Centrality",
                footprint_of(job.workload(), &snapshot.network),
                deadline,
                move |control, sink| {
                    let (rows, run) = run_centrality(&snapshot.network, &job, control)?;
                    sink.send_rows(
                        rows.iter().map(|row| pb::CentralityRow {
                            node_id: row.node.to_string(),
                            name: row.name.clone(),
                            value: row.value,
                            rank: row.rank,
                        }),
                        |rows| pb::CentralityEvent {
                            event: Some(pb::centrality_event::Event::Rows(pb::CentralityRows { rows })),
                        },
                    )?;
                    sink.send(pb::CentralityEvent {
                        event: Some(pb::centrality_event::Event::Summary(summary(
                            snapshot.revision,
                            job.graph.layer,
                            &run,
                        ))),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(algorithm = request.get_ref().algorithm, layer = request.get_ref().layer))]
    async fn communities(
        &self,
        request: Request<pb::CommunitiesRequest>,
    ) -> Result<Response<Self::CommunitiesStream>, Status> {
        let deadline = deadline_of(&request);
        let snapshot = self.store.snapshot();
        let job = analysis_params::community_job(request.into_inner(), &snapshot.network)?;
        let stream = self
            .runner
            .spawn(
                "Communities",
                footprint_of(Workload::Communities, &snapshot.network),
                deadline,
                move |control, sink| {
                    let (rows, partition, run) = run_communities(&snapshot.network, &job, control)?;
                    sink.send_rows(
                        rows.iter().map(|row| pb::CommunityRow {
                            node_id: row.node.to_string(),
                            name: row.name.clone(),
                            community: row.community,
                        }),
                        |rows| pb::CommunityEvent {
                            event: Some(pb::community_event::Event::Rows(pb::CommunityRows { rows })),
                        },
                    )?;
                    sink.send(pb::CommunityEvent {
                        event: Some(pb::community_event::Event::Summary(pb::CommunitiesSummary {
                            analysis: Some(summary(snapshot.revision, job.graph.layer, &run)),
                            modularity: partition.modularity,
                            communities: partition.sizes.len() as u32,
                            sizes: partition.sizes.iter().map(|s| *s as u64).collect(),
                        })),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(layer = request.get_ref().layer))]
    async fn inter_cluster_network(
        &self,
        request: Request<pb::InterClusterNetworkRequest>,
    ) -> Result<Response<Self::InterClusterNetworkStream>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let snapshot = self.store.snapshot();
        let layer = match analysis_params::layer(request.layer, Layer::Cluster)? {
            Layer::Firm => {
                return Err(Error::invalid("layer", "must be LAYER_CLUSTER or LAYER_SITE").into());
            }
            layer => layer,
        };
        let filter = analysis_params::filter(request.filter, &snapshot.network)?;
        let stream = self
            .runner
            .spawn(
                "InterClusterNetwork",
                footprint_of(Workload::Projection, &snapshot.network),
                deadline,
                move |control, sink| {
                    let started = Instant::now();
                    control.progress("aggregate", 0, 1);
                    let network = inter_cluster(&snapshot.network, &filter, layer);
                    control.check()?;
                    sink.send_rows(
                        network.nodes.iter().map(|n| pb::InterClusterNode {
                            id: n.id.to_string(),
                            name: n.name.clone(),
                            cluster_id: n.cluster.to_string(),
                            actors: n.actors,
                        }),
                        |nodes| pb::InterClusterEvent {
                            event: Some(pb::inter_cluster_event::Event::Nodes(pb::InterClusterNodes { nodes })),
                        },
                    )?;
                    sink.send_rows(
                        network.edges.iter().map(|e| pb::InterClusterEdge {
                            source: e.source.to_string(),
                            target: e.target.to_string(),
                            firm_links: e
                                .firm_links
                                .iter()
                                .map(|((kind, channel), (count, weight))| pb::FirmLinkAggregate {
                                    kind: wire(LinkKind::ALL, *kind),
                                    channel: wire(Channel::ALL, *channel),
                                    count: *count,
                                    weight: *weight,
                                })
                                .collect(),
                            cluster_links: e
                                .cluster_links
                                .iter()
                                .map(|(kind, channel, weight)| pb::ExplicitClusterLink {
                                    kind: wire(ClusterLinkKind::ALL, *kind),
                                    channel: wire(Channel::ALL, *channel),
                                    weight: *weight,
                                })
                                .collect(),
                            firm_link_count: e.firm_link_count(),
                            total_weight: e.total_weight(),
                        }),
                        |edges| pb::InterClusterEvent {
                            event: Some(pb::inter_cluster_event::Event::Edges(pb::InterClusterEdges { edges })),
                        },
                    )?;
                    let run = RunSummary::counted(network.nodes.len(), network.edges.len(), false, started);
                    sink.send(pb::InterClusterEvent {
                        event: Some(pb::inter_cluster_event::Event::Summary(summary(
                            snapshot.revision,
                            layer,
                            &run,
                        ))),
                    })
                },
            )
            .await?;
        Ok(Response::new(stream))
    }
}
