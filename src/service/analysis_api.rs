//! `clusternet.v1.AnalysisService`: each call validates its request, takes an
//! analysis slot, and runs the job on the blocking pool against one snapshot.
//! The job streams progress, rows in batches and a summary through a bounded
//! channel. Dropping the response stream (the client cancelled or its
//! deadline passed) raises the job's cancel flag, which the algorithms check
//! between units of work.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status};

use super::{
    admission::{Admission, AnalysisLimits},
    analysis_params::{self, layer_to_pb, stage_to_pb, SubstituteTarget},
    convert::{text_of, wire},
    metrics::Metrics,
    pb::{self, analysis_service_server::AnalysisService},
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
        stages::stage::{assess, Assessment, Gate},
        stages::stage_config::StageConfig,
        stages::upgrading::{upgrading, Move},
        stages::virtual_integration::{detect, Pattern},
        Control,
    },
    error::{Error, Result},
    graph::{inter_cluster, Layer},
    model::{ActorKind, Channel, ClusterLinkKind, LinkKind, Segment},
    network::Network,
    store::Store,
};

/// Rows per streamed message.
const ROWS_PER_MESSAGE: usize = 1000;
/// How often a long run reports progress.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// The longest a running analysis stays silent.
const HEARTBEAT: Duration = Duration::from_millis(400);

pub struct AnalysisApi {
    store: Arc<Store>,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    stall_timeout: Duration,
    /// Turns true when the server shuts down: running analyses are cancelled.
    shutdown: watch::Receiver<bool>,
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
            admission: Arc::new(Admission::new(limits, metrics.clone())),
            metrics,
            stall_timeout,
            shutdown,
            stage_config: Arc::new(stage_config),
        }
    }

    /// Waits for a slot and the memory of `footprint` (see [`Admission`]),
    /// then runs `job` on the blocking pool; returns the
    /// stream of its events.
    async fn spawn<E: Send + 'static>(
        &self,
        kind: &'static str,
        footprint: Footprint,
        deadline: Option<Instant>,
        progress_event: fn(pb::Progress) -> E,
        job: impl FnOnce(&Control, &Sink<E>) -> Result<()> + Send + 'static,
    ) -> Result<EventStream<E>, Status> {
        let permit = self
            .admission
            .admit(kind, footprint, deadline, self.shutdown.clone())
            .await?;
        let metrics = self.metrics.clone();
        let (sender, receiver) = mpsc::channel(16);
        let stall_timeout = self.stall_timeout;
        let stalled = Arc::new(AtomicBool::new(false));
        let stalled_flag = stalled.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        // At shutdown the job is cancelled and its client told to call again.
        let shutting_down = Arc::new(AtomicBool::new(false));
        let (finished_tx, finished_rx) = tokio::sync::oneshot::channel::<()>();
        {
            let (cancel, shutting_down, mut shutdown) = (cancel.clone(), shutting_down.clone(), self.shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => {
                        shutting_down.store(true, Ordering::Relaxed);
                        cancel.store(true, Ordering::Relaxed);
                    }
                    _ = finished_rx => {}
                }
            });
        }
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            // The last progress sent, so a heartbeat can repeat it through
            // phases that report nothing (sorting edges, aggregating).
            let last = Arc::new(std::sync::Mutex::new((Instant::now(), None::<pb::Progress>)));
            let progress = sender.clone();
            let remember = last.clone();
            let report = move |phase: &str, done: u64, total: u64| {
                let event = pb::Progress {
                    phase: phase.to_string(),
                    done,
                    total,
                };
                if let Ok(mut last) = remember.lock() {
                    *last = (Instant::now(), Some(event.clone()));
                }
                // A full channel means a slow reader: skip this report.
                let _ = progress.try_send(Ok(progress_event(event)));
            };
            let control = Control::new(&flag, &report, PROGRESS_INTERVAL).with_deadline(deadline);
            let sink = Sink {
                sender: sender.clone(),
                stall_timeout,
                stalled: stalled_flag,
                runtime: tokio::runtime::Handle::current(),
            };
            let finished = AtomicBool::new(false);
            std::thread::scope(|scope| {
                scope.spawn(|| heartbeat(&finished, &flag, &last, &sender, progress_event));
                let outcome = job(&control, &sink);
                finished.store(true, Ordering::Relaxed);
                metrics.analysis_ended(
                    kind,
                    match &outcome {
                        Ok(()) => "ok",
                        Err(Error::Cancelled) if control.expired() => "deadline",
                        Err(Error::Cancelled) => "cancelled",
                        Err(_) => "error",
                    },
                );
                match outcome {
                    Ok(()) => {}
                    Err(Error::Cancelled) if shutting_down.load(Ordering::Relaxed) => {
                        tracing::info!("analysis cancelled at shutdown");
                        let _ = sink.deliver(Err(super::status::stopping(
                            "the server is shutting down; the analysis was cancelled: call again once it is back",
                        )));
                    }
                    Err(Error::Cancelled) if control.expired() => {
                        tracing::info!("analysis stopped at its deadline");
                        let _ = sink.deliver(Err(Status::deadline_exceeded(
                            "the analysis did not finish before the call's deadline (grpc-timeout)",
                        )));
                    }
                    Err(Error::Cancelled) => tracing::info!("analysis cancelled"),
                    Err(error) => {
                        let _ = sink.deliver(Err(error.into()));
                    }
                }
            });
            // Free the slot before the senders drop and the client sees the
            // stream end, so a client that calls again at once finds it free.
            drop(permit);
            let _ = finished_tx.send(());
        });
        Ok(EventStream {
            inner: ReceiverStream::new(receiver),
            cancel,
            stalled,
            stall_timeout,
        })
    }
}

/// The memory an analysis of `workload` needs on `network`, with the
/// worker threads it may use.
fn footprint_of(workload: Workload, network: &Network) -> Footprint {
    footprint::estimate(workload, network, rayon::current_num_threads())
}

/// Repeats the last progress event whenever HEARTBEAT passes without one, so
/// a client always hears from a long run at least that often.
fn heartbeat<E>(
    finished: &AtomicBool,
    cancelled: &AtomicBool,
    last: &std::sync::Mutex<(Instant, Option<pb::Progress>)>,
    sender: &mpsc::Sender<Result<E, Status>>,
    progress_event: fn(pb::Progress) -> E,
) {
    while !finished.load(Ordering::Relaxed) && !cancelled.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let Ok(mut last) = last.lock() else { return };
        if last.0.elapsed() >= HEARTBEAT {
            let event = last.1.clone().unwrap_or(pb::Progress {
                phase: "starting".into(),
                done: 0,
                total: 0,
            });
            last.0 = Instant::now();
            let _ = sender.try_send(Ok(progress_event(event)));
        }
    }
}

/// Where a job sends its events; a failed send means the client is gone,
/// or stopped reading for longer than the stall timeout.
struct Sink<E> {
    sender: mpsc::Sender<Result<E, Status>>,
    stall_timeout: Duration,
    stalled: Arc<AtomicBool>,
    /// Taken on the blocking pool, so `deliver` can wait from any thread
    /// (rayon's too) without a runtime context of its own.
    runtime: tokio::runtime::Handle,
}

impl<E> Sink<E> {
    fn send(&self, event: E) -> Result<()> {
        self.deliver(Ok(event))
    }

    /// Waits at most the stall timeout for room in the stream: a client that
    /// never reads must not hold an analysis slot (and a blocking thread)
    /// forever.
    fn deliver(&self, item: Result<E, Status>) -> Result<()> {
        match self
            .runtime
            .block_on(tokio::time::timeout(self.stall_timeout, self.sender.send(item)))
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Cancelled),
            Err(_) => {
                self.stalled.store(true, Ordering::Relaxed);
                tracing::warn!(
                    stall_seconds = self.stall_timeout.as_secs_f64(),
                    "the client stopped reading; analysis cancelled"
                );
                Err(Error::Cancelled)
            }
        }
    }

    /// Sends `rows` in messages of at most ROWS_PER_MESSAGE, each made by `event`.
    fn send_rows<R>(&self, rows: impl IntoIterator<Item = R>, event: impl Fn(Vec<R>) -> E) -> Result<()> {
        let mut batch = Vec::with_capacity(ROWS_PER_MESSAGE);
        for row in rows {
            batch.push(row);
            if batch.len() == ROWS_PER_MESSAGE {
                self.send(event(std::mem::take(&mut batch)))?;
            }
        }
        if batch.is_empty() {
            Ok(())
        } else {
            self.send(event(batch))
        }
    }
}

/// The response stream; dropping it cancels the job.
pub struct EventStream<E> {
    inner: ReceiverStream<Result<E, Status>>,
    cancel: Arc<AtomicBool>,
    /// Set when the job gave up on a client that stopped reading: the
    /// stream then ends with ABORTED, not as if the results were complete.
    stalled: Arc<AtomicBool>,
    stall_timeout: Duration,
}

impl<E> Stream for EventStream<E> {
    type Item = Result<E, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(None) if self.stalled.swap(false, Ordering::Relaxed) => {
                Poll::Ready(Some(Err(Status::aborted(format!(
                    "the client read nothing for {} s, so the analysis was cancelled and its results are \
                     incomplete; read the stream as it comes, or call again",
                    self.stall_timeout.as_secs()
                )))))
            }
            other => other,
        }
    }
}

impl<E> Drop for EventStream<E> {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// The call's deadline from its `grpc-timeout` header. tonic applies the
/// header to the response headers only, not to a stream's body, so analyses
/// enforce it themselves.
fn deadline_of<T>(request: &Request<T>) -> Option<Instant> {
    let header = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = header.split_at(header.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}

fn move_to_pb(m: &Move) -> pb::ActorMove {
    pb::ActorMove {
        actor_id: m.actor.to_string(),
        segments_before: m.segments_before.iter().map(|s| wire(Segment::ALL, s)).collect(),
        segments_after: m.segments_after.iter().map(|s| wire(Segment::ALL, s)).collect(),
        industry_before: m.industry_before.clone(),
        industry_after: m.industry_after.clone(),
    }
}

fn segments_to_pb(segments: &[Segment]) -> Vec<i32> {
    segments.iter().map(|s| wire(Segment::ALL, *s)).collect()
}

fn assessment_to_pb(a: &Assessment) -> pb::StageAssessment {
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

fn gate_to_pb(g: &Gate) -> pb::StageGate {
    pb::StageGate {
        name: g.name.to_string(),
        value: g.value,
        limit: g.limit,
        at_most: g.at_most,
        met: g.met,
        meaning: g.meaning.to_string(),
    }
}

fn pattern_to_pb(p: &Pattern) -> pb::VirtualIntegrationPattern {
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

fn summary(revision: u64, layer: Layer, run: &RunSummary) -> pb::AnalysisSummary {
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
        let progress = |p| pb::UpgradingEvent {
            event: Some(pb::upgrading_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "Upgrading",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                progress,
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
                                .map(|(industry, ties, related)| pb::NewIndustry {
                                    industry: industry.clone(),
                                    ties: *ties,
                                    related: *related,
                                })
                                .collect(),
                            new_member_industries: u
                                .chain
                                .new_member_industries
                                .iter()
                                .map(|(industry, related)| pb::NewIndustry {
                                    industry: industry.clone(),
                                    ties: 0,
                                    related: *related,
                                })
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
        let progress = |p| pb::AssessStageEvent {
            event: Some(pb::assess_stage_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "AssessStage",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                progress,
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
        let progress = |p| pb::DetectVirtualIntegrationEvent {
            event: Some(pb::detect_virtual_integration_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "DetectVirtualIntegration",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                progress,
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
        let progress = |p| pb::CoreFirmsEvent {
            event: Some(pb::core_firms_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "CoreFirms",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                progress,
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
        let progress = |p| pb::FusionLinksEvent {
            event: Some(pb::fusion_links_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "FusionLinks",
                footprint_of(Workload::EdgeSweeps, &snapshot.network),
                deadline,
                progress,
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
        let progress = |p| pb::SubstitutionGapsEvent {
            event: Some(pb::substitution_gaps_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "SubstitutionGaps",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                progress,
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
        let progress = |p| pb::SubstitutesEvent {
            event: Some(pb::substitutes_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "Substitutes",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                progress,
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
                            shared_segments: r
                                .shared_segments
                                .iter()
                                .filter_map(|s| pb::Segment::from_str_name(&format!("SEGMENT_{s}")).map(|s| s as i32))
                                .collect(),
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
        let progress = |p| pb::CrossingsEvent {
            event: Some(pb::crossings_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "Crossings",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                progress,
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
        let progress = |p| pb::ClusterOverlapEvent {
            event: Some(pb::cluster_overlap_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "ClusterOverlap",
                footprint_of(Workload::Relations, &snapshot.network),
                deadline,
                progress,
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
        let progress = |p| pb::CentralityEvent {
            event: Some(pb::centrality_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "Centrality",
                footprint_of(job.workload(), &snapshot.network),
                deadline,
                progress,
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
        let progress = |p| pb::CommunityEvent {
            event: Some(pb::community_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "Communities",
                footprint_of(Workload::Communities, &snapshot.network),
                deadline,
                progress,
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
        let progress = |p| pb::InterClusterEvent {
            event: Some(pb::inter_cluster_event::Event::Progress(p)),
        };
        let stream = self
            .spawn(
                "InterClusterNetwork",
                footprint_of(Workload::Projection, &snapshot.network),
                deadline,
                progress,
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
