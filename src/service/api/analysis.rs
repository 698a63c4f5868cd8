//! `clusternet.v1.AnalysisService`: each handler validates its request
//! (`analysis_params`), says what its job computes and how the results
//! become messages (`convert::analysis`), and hands it to the streaming
//! runtime (`streaming`), which admits it, runs it and streams its events.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::analysis_params::{self, SubstituteTarget};
use crate::graph::warm::Graphs;
use crate::service::{
    convert::{self, analysis::*},
    metrics::Metrics,
    pb::{self, analysis_service_server::AnalysisService},
    runtime::{
        admission::AnalysisLimits,
        streaming::{deadline_of, AnalysisEvent, EventStream, Runner, Sink, ROWS_PER_MESSAGE},
    },
};
use crate::{
    analysis::{
        footprint::{self, Workload},
        kept_ranks::KeptRanks,
        relatedness::{
            paths::{upgrade_paths, PathsConfig, Ranking},
            relatedness, MatrixConfig,
        },
        relations::crossing::crossings,
        relations::fusion::fusion_links,
        relations::gaps::substitution_gaps,
        relations::overlap::for_each_pair,
        relations::substitution::{cluster_substitutes, substitutes},
        run::{centrality_on, communities_on, RunSummary},
        stages::core_firms::core_firms,
        stages::stage::assess,
        stages::stage_config::StageConfig,
        stages::upgrading::upgrading,
        stages::wholes::detect,
        stages::StageContext,
        Control,
    },
    error::{Error, Result},
    export::{node_results, select, ResultKind},
    graph::{inter_cluster, AnalysisGraph, GraphFilter, GraphSpec, Layer},
    store::{Snapshot, Store},
};

pub struct AnalysisApi {
    store: Arc<Store>,
    runner: Runner,
    /// Weights, thresholds and smile curve of the stage analyses.
    stage_config: Arc<StageConfig>,
    /// The graphs of the latest revision, shared by its analyses.
    graphs: Arc<Graphs>,
    /// PageRank vectors of the kept graphs, brought up to date after writes.
    ranks: Arc<KeptRanks>,
}

/// What an analysis call starts from: the snapshot it reads, taken when the
/// call arrives, and the call's deadline.
struct Call {
    snapshot: Arc<Snapshot>,
    deadline: Option<std::time::Instant>,
    /// Who calls, for the fair shares (see `admission`).
    client: String,
}

impl AnalysisApi {
    /// `limits`: slots, queue and memory budget of the analyses.
    /// `stall_timeout`: how long a result waits for a client that stopped
    /// reading before the analysis is cancelled and frees its slot.
    pub(in crate::service) fn new(
        store: Arc<Store>,
        limits: AnalysisLimits,
        metrics: Arc<Metrics>,
        stall_timeout: Duration,
        shutdown: watch::Receiver<bool>,
        stage_config: StageConfig,
        graphs: Arc<Graphs>,
    ) -> Self {
        let counted = metrics.clone();
        let ranks = KeptRanks::new(
            graphs.capacity(),
            Arc::new(move |how: &str| counted.pagerank_found(how)),
        );
        AnalysisApi {
            store: store.clone(),
            runner: Runner::new(limits, metrics, stall_timeout, shutdown),
            stage_config: Arc::new(stage_config),
            ranks: Arc::new(ranks),
            graphs,
        }
    }

    fn open<T>(&self, request: Request<T>) -> (Call, T) {
        let call = Call {
            deadline: deadline_of(&request),
            client: crate::service::layers::auth::client_of(&request),
            snapshot: self.store.snapshot(),
        };
        (call, request.into_inner())
    }

    /// Admits the job (a slot and the memory `workload` needs on this
    /// snapshot, with the worker threads it may use) and streams its events.
    async fn run<E: AnalysisEvent>(
        &self,
        call: Call,
        kind: &'static str,
        workload: Workload,
        job: impl FnOnce(&Snapshot, &Control, &Sink<E>) -> Result<()> + Send + 'static,
    ) -> Result<Response<EventStream<E>>, Status> {
        let footprint = footprint::estimate(workload, &call.snapshot.network, rayon::current_num_threads());
        let snapshot = call.snapshot;
        let stream = self
            .runner
            .spawn(&call.client, kind, footprint, call.deadline, move |control, sink| {
                job(&snapshot, control, sink)
            })
            .await?;
        Ok(Response::new(stream))
    }
}

/// The graph of `spec` on this snapshot: kept from an earlier analysis of
/// the same revision, or built now (and kept).
fn graph_of(graphs: &Graphs, snapshot: &Snapshot, spec: &GraphSpec, control: &Control) -> Result<Arc<AnalysisGraph>> {
    control.progress("build_graph", 0, 1);
    let graph = graphs.of(snapshot, spec);
    control.check()?;
    Ok(graph)
}

/// The closing summary of a run on `layer`.
fn closing<E>(snapshot: &Snapshot, layer: Layer, run: &RunSummary, sink: &Sink<E>) -> pb::AnalysisSummary {
    summary(snapshot.revision, layer, run, sink.rows_sent())
}

/// The closing summary of a relation or stage analysis: one pass over the
/// firm network the filter leaves.
fn firm_closing<E>(snapshot: &Snapshot, filter: &GraphFilter, sink: &Sink<E>) -> pb::AnalysisSummary {
    let run = RunSummary::firm_network(&snapshot.network, filter, sink.started());
    closing(snapshot, Layer::Firm, &run, sink)
}

#[tonic::async_trait]
impl AnalysisService for AnalysisApi {
    type CentralityStream = EventStream<pb::CentralityResponse>;
    type CommunitiesStream = EventStream<pb::CommunitiesResponse>;
    type InterClusterNetworkStream = EventStream<pb::InterClusterNetworkResponse>;
    type ClusterOverlapStream = EventStream<pb::ClusterOverlapResponse>;
    type CrossingsStream = EventStream<pb::CrossingsResponse>;
    type SubstitutesStream = EventStream<pb::SubstitutesResponse>;
    type SubstitutionGapsStream = EventStream<pb::SubstitutionGapsResponse>;
    type FusionLinksStream = EventStream<pb::FusionLinksResponse>;
    type AssessStageStream = EventStream<pb::AssessStageResponse>;
    type DetectVirtualIntegrationStream = EventStream<pb::DetectVirtualIntegrationResponse>;
    type CoreFirmsStream = EventStream<pb::CoreFirmsResponse>;
    type UpgradingStream = EventStream<pb::UpgradingResponse>;
    type RelatednessStream = EventStream<pb::RelatednessResponse>;
    type IndustrySpaceStream = EventStream<pb::IndustrySpaceResponse>;
    type UpgradePathsStream = EventStream<pb::UpgradePathsResponse>;
    type ExportNetworkStream = EventStream<pb::ExportNetworkResponse>;

    #[tracing::instrument(skip_all, fields(measure = request.get_ref().measure, layer = request.get_ref().layer))]
    async fn centrality(
        &self,
        request: Request<pb::CentralityRequest>,
    ) -> Result<Response<Self::CentralityStream>, Status> {
        let (call, request) = self.open(request);
        let job = analysis_params::centrality_job(request, &call.snapshot.network)?;
        let (graphs, ranks) = (self.graphs.clone(), self.ranks.clone());
        self.run(call, "Centrality", job.workload(), move |snapshot, control, sink| {
            let graph = graph_of(&graphs, snapshot, &job.graph, control)?;
            let (rows, run) = centrality_on(&graph, &job, Some((&ranks, snapshot.revision)), control)?;
            let run = RunSummary {
                elapsed: sink.started().elapsed(),
                ..run
            };
            sink.send_rows(rows.iter().map(centrality_row_to_pb), |rows| pb::CentralityRows {
                rows,
            })?;
            sink.send(closing(snapshot, job.graph.layer, &run, sink))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(algorithm = request.get_ref().algorithm, layer = request.get_ref().layer))]
    async fn communities(
        &self,
        request: Request<pb::CommunitiesRequest>,
    ) -> Result<Response<Self::CommunitiesStream>, Status> {
        let (call, request) = self.open(request);
        let job = analysis_params::community_job(request, &call.snapshot.network)?;
        let graphs = self.graphs.clone();
        self.run(
            call,
            "Communities",
            Workload::Communities,
            move |snapshot, control, sink| {
                let graph = graph_of(&graphs, snapshot, &job.graph, control)?;
                let (rows, partition, run) = communities_on(&graph, &job, control)?;
                let run = RunSummary {
                    elapsed: sink.started().elapsed(),
                    ..run
                };
                sink.send_rows(rows.iter().map(community_row_to_pb), |rows| pb::CommunityRows { rows })?;
                sink.send(pb::CommunitiesSummary {
                    analysis: Some(closing(snapshot, job.graph.layer, &run, sink)),
                    modularity: partition.modularity,
                    communities: partition.sizes.len() as u32,
                    sizes: partition.sizes.iter().map(|s| *s as u64).collect(),
                })
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(layer = request.get_ref().layer))]
    async fn inter_cluster_network(
        &self,
        request: Request<pb::InterClusterNetworkRequest>,
    ) -> Result<Response<Self::InterClusterNetworkStream>, Status> {
        let (call, request) = self.open(request);
        let layer = analysis_params::inter_cluster_layer(request.layer)?;
        let filter = analysis_params::filter(request.filter, &call.snapshot.network)?;
        self.run(
            call,
            "InterClusterNetwork",
            Workload::Projection,
            move |snapshot, control, sink| {
                control.progress("aggregate", 0, 1);
                let network = inter_cluster(&snapshot.network, &filter, layer);
                control.check()?;
                sink.send_rows(network.nodes.iter().map(inter_cluster_node_to_pb), |nodes| {
                    pb::InterClusterNodes { nodes }
                })?;
                sink.send_rows(network.edges.iter().map(inter_cluster_edge_to_pb), |edges| {
                    pb::InterClusterEdges { edges }
                })?;
                let run = RunSummary::one_pass(network.nodes.len(), network.edges.len(), false, sink.started());
                sink.send(closing(snapshot, layer, &run, sink))
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(a = %request.get_ref().cluster_a, b = %request.get_ref().cluster_b))]
    async fn cluster_overlap(
        &self,
        request: Request<pb::ClusterOverlapRequest>,
    ) -> Result<Response<Self::ClusterOverlapStream>, Status> {
        let (call, request) = self.open(request);
        let job = analysis_params::overlap_job(request, &call.snapshot.network)?;
        self.run(
            call,
            "ClusterOverlap",
            Workload::Relations,
            move |snapshot, control, sink| {
                // Pairs come a chunk at a time (all pairs of 50,000 clusters would
                // not fit in memory), so they are batched here as they come.
                let mut batch = Vec::with_capacity(ROWS_PER_MESSAGE);
                for_each_pair(&snapshot.network, &job, control, |pair| {
                    batch.push(pair_overlap_to_pb(pair));
                    if batch.len() == ROWS_PER_MESSAGE {
                        sink.send_rows(std::mem::take(&mut batch), |rows| pb::ClusterOverlapRows { rows })?;
                    }
                    Ok(())
                })?;
                sink.send_rows(batch, |rows| pb::ClusterOverlapRows { rows })?;
                sink.send(firm_closing(snapshot, &job.filter, sink))
            },
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn crossings(
        &self,
        request: Request<pb::CrossingsRequest>,
    ) -> Result<Response<Self::CrossingsStream>, Status> {
        let (call, request) = self.open(request);
        let filter = analysis_params::filter(request.filter, &call.snapshot.network)?;
        self.run(
            call,
            "Crossings",
            Workload::Relations,
            move |snapshot, control, sink| {
                let found = crossings(&snapshot.network, &filter, control)?;
                sink.send_rows(found.pairs.iter().map(pair_crossing_to_pb), |rows| {
                    pb::ClusterPairCrossings { rows }
                })?;
                sink.send_rows(found.clusters.iter().map(crossing_index_to_pb), |clusters| {
                    pb::ClusterCrossingIndexes { clusters }
                })?;
                sink.send(firm_closing(snapshot, &filter, sink))
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(actor = %request.get_ref().actor_id, cluster = %request.get_ref().cluster_id))]
    async fn substitutes(
        &self,
        request: Request<pb::SubstitutesRequest>,
    ) -> Result<Response<Self::SubstitutesStream>, Status> {
        let (call, request) = self.open(request);
        let (target, filter, config) = analysis_params::substitutes_job(&request, &call.snapshot.network)?;
        self.run(
            call,
            "Substitutes",
            Workload::Relations,
            move |snapshot, control, sink| {
                let network = &snapshot.network;
                let (found, of_cluster) = match &target {
                    SubstituteTarget::Actor(ix) => (substitutes(network, &filter, *ix, &config, control)?, false),
                    SubstituteTarget::Cluster(id) => {
                        (cluster_substitutes(network, &filter, id, &config, control)?, true)
                    }
                };
                let rows = found
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| substitute_to_pb(s, i + 1, of_cluster));
                sink.send_rows(rows, |rows| pb::SubstituteRows { rows })?;
                sink.send(firm_closing(snapshot, &filter, sink))
            },
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn substitution_gaps(
        &self,
        request: Request<pb::SubstitutionGapsRequest>,
    ) -> Result<Response<Self::SubstitutionGapsStream>, Status> {
        let (call, request) = self.open(request);
        let (filter, config) = analysis_params::gaps_job(request, &call.snapshot.network)?;
        self.run(
            call,
            "SubstitutionGaps",
            Workload::TieTable,
            move |snapshot, control, sink| {
                let gaps = substitution_gaps(&snapshot.network, &filter, &config, control)?;
                sink.send_rows(gaps.iter().map(gap_to_pb), |rows| pb::SubstitutionGapRows { rows })?;
                sink.send(firm_closing(snapshot, &filter, sink))
            },
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn fusion_links(
        &self,
        request: Request<pb::FusionLinksRequest>,
    ) -> Result<Response<Self::FusionLinksStream>, Status> {
        let (call, request) = self.open(request);
        let (filter, config) = analysis_params::fusion_job(request, &call.snapshot.network)?;
        self.run(
            call,
            "FusionLinks",
            Workload::EdgeSweeps,
            move |snapshot, control, sink| {
                let fusion = fusion_links(&snapshot.network, &filter, &config, control)?;
                let links = fusion
                    .links
                    .iter()
                    .enumerate()
                    .map(|(i, l)| fusion_link_to_pb(l, i + 1));
                sink.send_rows(links, |rows| pb::FusionLinkRows { rows })?;
                sink.send_rows(fusion.pairs.iter().map(pair_fusion_to_pb), |pairs| {
                    pb::ClusterPairFusions { pairs }
                })?;
                // The graph searched is the undirected firm graph of the filter.
                let run = RunSummary::one_pass(fusion.nodes, fusion.edges, false, sink.started());
                sink.send(pb::FusionLinksSummary {
                    analysis: Some(closing(snapshot, Layer::Firm, &run, sink)),
                    communities: fusion.communities as u32,
                    modularity: fusion.modularity,
                    betweenness_pivots: fusion.pivots.unwrap_or(0) as u32,
                    fusion_links: fusion.total_fusion_links as u64,
                })
            },
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn assess_stage(
        &self,
        request: Request<pb::AssessStageRequest>,
    ) -> Result<Response<Self::AssessStageStream>, Status> {
        let (call, request) = self.open(request);
        let filter = analysis_params::filter(request.filter, &call.snapshot.network)?;
        let config = analysis_params::stage_config(&self.stage_config, &request.overrides)?;
        self.run(
            call,
            "AssessStage",
            Workload::Relations,
            move |snapshot, control, sink| {
                let assessments = assess(StageContext {
                    network: &snapshot.network,
                    filter: &filter,
                    config: &config,
                    control,
                })?;
                // Where each cluster can go next, in the matrix of every
                // cluster (the filter names the clusters assessed, not the
                // economy they are compared with).
                let world = GraphFilter {
                    clusters: Vec::new(),
                    ..filter.clone()
                };
                // Too many industries for the figures: the evidence goes without.
                let matrix = match relatedness(&snapshot.network, &world, &MatrixConfig::default(), control) {
                    Ok(matrix) => Some(matrix),
                    Err(Error::FailedPrecondition { .. }) => None,
                    Err(error) => return Err(error),
                };
                let nearest = PathsConfig {
                    ranking: Ranking::default(),
                    top: 3,
                    partners: None,
                };
                let mut rows = Vec::with_capacity(assessments.len());
                for a in &assessments {
                    let mut row = assessment_to_pb(a);
                    let found = matrix.as_ref().and_then(|m| Some((m, m.cluster_index(&a.cluster)?)));
                    if let (Some(evidence), Some((matrix, c))) = (row.evidence.as_mut(), found) {
                        let paths = upgrade_paths(&snapshot.network, &world, matrix, c, &nearest, control)?;
                        evidence.eci = convert::relatedness::defined(matrix.figures.eci[c]);
                        evidence.upgrade_paths = paths.iter().map(convert::relatedness::path).collect();
                    }
                    rows.push(row);
                }
                sink.send_rows(rows, |rows| pb::StageAssessments { rows })?;
                sink.send(firm_closing(snapshot, &filter, sink))
            },
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn detect_virtual_integration(
        &self,
        request: Request<pb::DetectVirtualIntegrationRequest>,
    ) -> Result<Response<Self::DetectVirtualIntegrationStream>, Status> {
        let (call, request) = self.open(request);
        let filter = analysis_params::filter(request.filter, &call.snapshot.network)?;
        let config = analysis_params::stage_config(&self.stage_config, &request.overrides)?;
        self.run(
            call,
            "DetectVirtualIntegration",
            Workload::Relations,
            move |snapshot, control, sink| {
                let patterns = detect(StageContext {
                    network: &snapshot.network,
                    filter: &filter,
                    config: &config,
                    control,
                })?;
                sink.send_rows(patterns.iter().map(pattern_to_pb), |rows| {
                    pb::VirtualIntegrationPatterns { rows }
                })?;
                sink.send(firm_closing(snapshot, &filter, sink))
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(cluster = %request.get_ref().cluster_id))]
    async fn core_firms(
        &self,
        request: Request<pb::CoreFirmsRequest>,
    ) -> Result<Response<Self::CoreFirmsStream>, Status> {
        let (call, request) = self.open(request);
        let cluster = analysis_params::cluster_id(&request.cluster_id, &call.snapshot.network)?;
        let filter = analysis_params::filter(request.filter, &call.snapshot.network)?;
        let config = analysis_params::stage_config(&self.stage_config, &request.overrides)?;
        self.run(
            call,
            "CoreFirms",
            Workload::Relations,
            move |snapshot, control, sink| {
                let ctx = StageContext {
                    network: &snapshot.network,
                    filter: &filter,
                    config: &config,
                    control,
                };
                let structure = core_firms(ctx, &cluster)?;
                sink.send_rows(structure.cores.iter().map(core_firm_to_pb), |rows| pb::CoreFirms {
                    rows,
                })?;
                sink.send(pb::CoreFirmsSummary {
                    analysis: Some(firm_closing(snapshot, &filter, sink)),
                    members: structure.members,
                    best_reach: structure.best_reach,
                })
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(cluster = %request.get_ref().cluster_id))]
    async fn upgrading(
        &self,
        request: Request<pb::UpgradingRequest>,
    ) -> Result<Response<Self::UpgradingStream>, Status> {
        let (call, request) = self.open(request);
        let cluster = analysis_params::cluster_id(&request.cluster_id, &call.snapshot.network)?;
        let (from, to) = analysis_params::date_range(&request.from, &request.to)?;
        let filter = analysis_params::filter(request.filter, &call.snapshot.network)?;
        let config = analysis_params::stage_config(&self.stage_config, &request.overrides)?;
        self.run(
            call,
            "Upgrading",
            Workload::Relations,
            move |snapshot, control, sink| {
                let ctx = StageContext {
                    network: &snapshot.network,
                    filter: &filter,
                    config: &config,
                    control,
                };
                let report = upgrading(ctx, &cluster, from, to)?;
                sink.send_rows([upgrading_to_pb(&cluster, from, to, &report)], |rows| {
                    pb::UpgradingReports { rows }
                })?;
                sink.send(firm_closing(snapshot, &filter, sink))
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(view = request.get_ref().view))]
    async fn relatedness(
        &self,
        request: Request<pb::RelatednessRequest>,
    ) -> Result<Response<Self::RelatednessStream>, Status> {
        let (call, request) = self.open(request);
        let (filter, config) = analysis_params::relatedness_matrix(request.matrix, &call.snapshot.network)?;
        let view = analysis_params::relatedness_view(request.view)?;
        self.run(call, "Relatedness", Workload::Matrix, move |snapshot, control, sink| {
            let rel = relatedness(&snapshot.network, &filter, &config, control)?;
            match view {
                pb::RelatednessView::Clusters => sink.send_rows(
                    (0..rel.clusters.len()).map(|c| convert::relatedness::cluster(&rel, c)),
                    |rows| pb::ClusterComplexities { rows },
                )?,
                pb::RelatednessView::Industries => sink.send_rows(
                    (0..rel.industries.len()).map(|p| convert::relatedness::industry(&rel, p)),
                    |rows| pb::IndustryComplexities { rows },
                )?,
                _ => sink.send_rows(convert::relatedness::pairs(&rel), |rows| pb::RelatednessRows { rows })?,
            }
            sink.send(convert::relatedness::summary(
                &rel,
                firm_closing(snapshot, &filter, sink),
            ))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn industry_space(
        &self,
        request: Request<pb::IndustrySpaceRequest>,
    ) -> Result<Response<Self::IndustrySpaceStream>, Status> {
        let (call, request) = self.open(request);
        let (filter, config) = analysis_params::relatedness_matrix(request.matrix, &call.snapshot.network)?;
        let min = analysis_params::min_proximity(request.min_proximity)?;
        self.run(
            call,
            "IndustrySpace",
            Workload::Matrix,
            move |snapshot, control, sink| {
                let rel = relatedness(&snapshot.network, &filter, &config, control)?;
                sink.send_rows(convert::relatedness::proximities(&rel, min), |rows| {
                    pb::IndustryProximities { rows }
                })?;
                sink.send(convert::relatedness::summary(
                    &rel,
                    firm_closing(snapshot, &filter, sink),
                ))
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(cluster = %request.get_ref().cluster_id))]
    async fn upgrade_paths(
        &self,
        request: Request<pb::UpgradePathsRequest>,
    ) -> Result<Response<Self::UpgradePathsStream>, Status> {
        let (call, request) = self.open(request);
        let cluster = analysis_params::cluster_id(&request.cluster_id, &call.snapshot.network)?;
        let paths = analysis_params::paths_config(&request)?;
        let (filter, config) = analysis_params::relatedness_matrix(request.matrix, &call.snapshot.network)?;
        if !filter.wants_cluster()(&cluster) {
            return Err(Error::invalid(
                "matrix.filter.cluster_ids",
                format!("the matrix's clusters leave out '{cluster}', the cluster asked about"),
            )
            .into());
        }
        self.run(
            call,
            "UpgradePaths",
            Workload::Matrix,
            move |snapshot, control, sink| {
                let rel = relatedness(&snapshot.network, &filter, &config, control)?;
                let c = rel
                    .cluster_index(&cluster)
                    .ok_or_else(|| Error::not_found("cluster_id", "cluster", cluster.to_string()))?;
                control.progress("paths", 0, 1);
                let found = upgrade_paths(&snapshot.network, &filter, &rel, c, &paths, control)?;
                sink.send_rows(found.iter().map(convert::relatedness::path), |rows| pb::UpgradePaths {
                    rows,
                })?;
                let k = rel.figures.cols;
                let candidates = (0..k)
                    .filter(|&p| !rel.figures.mcp[c * k + p] && !rel.figures.ubiquity[p].is_nan())
                    .count() as u32;
                sink.send(pb::UpgradePathsSummary {
                    matrix: Some(convert::relatedness::summary(
                        &rel,
                        firm_closing(snapshot, &filter, sink),
                    )),
                    cluster: Some(convert::relatedness::cluster(&rel, c)),
                    candidates,
                })
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(layer = request.get_ref().layer))]
    async fn export_network(
        &self,
        request: Request<pb::ExportNetworkRequest>,
    ) -> Result<Response<Self::ExportNetworkStream>, Status> {
        let (call, request) = self.open(request);
        let layer = analysis_params::layer(request.layer, Layer::Firm)?;
        let filter = analysis_params::filter(request.filter, &call.snapshot.network)?;
        let kinds = convert::export::result_kinds(&request.results)?;
        // The results' memory: Louvain's levels, or PageRank's vectors (the
        // stage analysis takes less than either).
        let workload = if kinds.contains(&ResultKind::Community) {
            Workload::Communities
        } else if kinds.is_empty() {
            Workload::Projection
        } else {
            Workload::Iterative
        };
        let graphs = self.graphs.clone();
        let stage_config = self.stage_config.clone();
        self.run(call, "ExportNetwork", workload, move |snapshot, control, sink| {
            use convert::export::*;
            let network = &snapshot.network;
            let mut selection = select(network, &filter, layer, control)?;
            if !kinds.is_empty() {
                let graph_of = |spec: &GraphSpec| graphs.of(snapshot, spec);
                selection.results = node_results(
                    network,
                    &filter,
                    layer,
                    &selection,
                    &kinds,
                    &stage_config,
                    &graph_of,
                    control,
                )?;
            }
            sink.send_rows(clusters_to_pb(&selection), |clusters| pb::ExportClusters { clusters })?;
            sink.send_rows(actors_to_pb(&selection), |actors| pb::ExportActors { actors })?;
            sink.send_rows(profiles_to_pb(&selection), |profiles| pb::ExportProfiles { profiles })?;
            sink.send_rows(links_to_pb(&selection), |links| pb::ExportLinks { links })?;
            sink.send_rows(cluster_links_to_pb(&selection), |cluster_links| {
                pb::ExportClusterLinks { cluster_links }
            })?;
            sink.send_rows(selection.edges.iter().map(inter_cluster_edge_to_pb), |edges| {
                pb::ExportEdges { edges }
            })?;
            sink.send_rows(
                selection.results.iter().map(|(id, r)| node_result_to_pb(id, r)),
                |rows| pb::NodeResultRows { rows },
            )?;
            let (nodes, edges) = match layer {
                Layer::Firm => (selection.actors.len(), selection.links.len()),
                Layer::Cluster => (selection.clusters.len(), selection.edges.len()),
                Layer::Site => (
                    selection.clusters.iter().map(|c| c.sites.len()).sum(),
                    selection.edges.len(),
                ),
            };
            let run = RunSummary::one_pass(nodes, edges, layer == Layer::Firm, sink.started());
            sink.send(closing(snapshot, layer, &run, sink))
        })
        .await
    }
}
