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

use tokio::sync::{mpsc, Semaphore};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status};

use super::{
    analysis_params::{self, layer_to_pb, SubstituteTarget},
    convert::{text_of, wire},
    pb::{self, analysis_service_server::AnalysisService},
};
use crate::{
    analysis::{
        crossing::crossings,
        fusion::fusion_links,
        gaps::{substitution_gaps, GapConfig},
        overlap::for_each_pair,
        run::{run_centrality, run_communities, RunSummary},
        substitution::{cluster_substitutes, substitutes},
        Control,
    },
    error::{Error, Result},
    graph::{inter_cluster, Layer},
    model::{Channel, ClusterLinkKind, LinkKind},
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
    slots: Arc<Semaphore>,
    max_running: usize,
}

impl AnalysisApi {
    /// `max_running`: heavy analyses allowed at once; more get RESOURCE_EXHAUSTED.
    pub fn new(store: Arc<Store>, max_running: usize) -> Self {
        let max_running = max_running.max(1);
        AnalysisApi {
            store,
            slots: Arc::new(Semaphore::new(max_running)),
            max_running,
        }
    }

    /// Runs `job` on the blocking pool; returns the stream of its events.
    fn spawn<E: Send + 'static>(
        &self,
        deadline: Option<Instant>,
        progress_event: fn(pb::Progress) -> E,
        job: impl FnOnce(&Control, &Sink<E>) -> Result<()> + Send + 'static,
    ) -> Result<EventStream<E>, Status> {
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} analyses are already running, the most this server runs at once; retry later",
                self.max_running
            ))
        })?;
        let (sender, receiver) = mpsc::channel(16);
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
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
            let sink = Sink { sender: sender.clone() };
            let finished = AtomicBool::new(false);
            std::thread::scope(|scope| {
                scope.spawn(|| heartbeat(&finished, &flag, &last, &sender, progress_event));
                let outcome = job(&control, &sink);
                finished.store(true, Ordering::Relaxed);
                match outcome {
                    Ok(()) => {}
                    Err(Error::Cancelled) if control.expired() => {
                        tracing::info!("analysis stopped at its deadline");
                        let _ = sender.blocking_send(Err(Status::deadline_exceeded(
                            "the analysis did not finish before the call's deadline (grpc-timeout)",
                        )));
                    }
                    Err(Error::Cancelled) => tracing::info!("analysis cancelled"),
                    Err(error) => {
                        let _ = sender.blocking_send(Err(error.into()));
                    }
                }
            });
            // Free the slot before the senders drop and the client sees the
            // stream end, so a client that calls again at once finds it free.
            drop(permit);
        });
        Ok(EventStream {
            inner: ReceiverStream::new(receiver),
            cancel,
        })
    }
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

/// Where a job sends its events; a failed send means the client is gone.
struct Sink<E> {
    sender: mpsc::Sender<Result<E, Status>>,
}

impl<E> Sink<E> {
    fn send(&self, event: E) -> Result<()> {
        self.sender.blocking_send(Ok(event)).map_err(|_| Error::Cancelled)
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
}

impl<E> Stream for EventStream<E> {
    type Item = Result<E, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
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
        let stream = self.spawn(deadline, progress, move |control, sink| {
            let started = Instant::now();
            let fusion = fusion_links(&snapshot.network, &filter, &config, control)?;
            let end = |e: &crate::analysis::fusion::LinkEnd| pb::FusionLinkEnd {
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
        })?;
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
        let stream = self.spawn(deadline, progress, move |control, sink| {
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
        })?;
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
        let stream = self.spawn(deadline, progress, move |control, sink| {
            let started = Instant::now();
            control.progress("substitutes", 0, 1);
            let (rows, layer) = match &target {
                SubstituteTarget::Actor(ix) => (substitutes(&snapshot.network, &filter, *ix, &config), Layer::Firm),
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
        })?;
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
        let stream = self.spawn(deadline, progress, move |control, sink| {
            let started = Instant::now();
            control.progress("crossings", 0, 1);
            let (pairs, clusters) = crossings(&snapshot.network, &filter);
            control.check()?;
            let tally = |t: &crate::analysis::crossing::Tally| pb::LinkTally {
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
        })?;
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
        let stream = self.spawn(deadline, progress, move |control, sink| {
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
        })?;
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
        let stream = self.spawn(deadline, progress, move |control, sink| {
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
        })?;
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
        let stream = self.spawn(deadline, progress, move |control, sink| {
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
        })?;
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
        let stream = self.spawn(deadline, progress, move |control, sink| {
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
        })?;
        Ok(Response::new(stream))
    }
}
