//! The streaming runtime every analysis call runs on: admission (a slot and
//! the memory the run is estimated to need), the job on the blocking pool
//! against one snapshot, progress and heartbeats, rows in batches through a
//! bounded channel, and the ways a run ends: done, failed, cancelled by the
//! client, stalled (a client that stopped reading), past its deadline, or
//! stopped by a shutdown. Dropping the response stream raises the job's
//! cancel flag, which the algorithms check between units of work. A handler
//! only validates its request and says what the job computes.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Status};

use super::admission::{Admission, AnalysisLimits};
use crate::service::{metrics::Metrics, pb};
use crate::{
    analysis::{footprint::Footprint, Control},
    error::{Error, Result},
};

/// Rows per streamed message.
pub const ROWS_PER_MESSAGE: usize = 1000;
/// How often a long run reports progress.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// The longest a running analysis stays silent.
const HEARTBEAT: Duration = Duration::from_millis(400);

/// An analysis's streamed message. Every RPC's response is a oneof of
/// progress, result batches and a summary; `From` for each part lets a job
/// send the part itself.
pub trait AnalysisEvent: From<pb::Progress> + Send + 'static {}

macro_rules! analysis_responses {
    ($($response:ident => $module:ident { $($variant:ident($part:ident)),* $(,)? }),* $(,)?) => {
        $(
            impl AnalysisEvent for pb::$response {}
            $(impl From<pb::$part> for pb::$response {
                fn from(part: pb::$part) -> Self {
                    pb::$response {
                        event: Some(pb::$module::Event::$variant(part)),
                    }
                }
            })*
        )*
    };
}

analysis_responses!(
    CentralityResponse => centrality_response {
        Progress(Progress), Rows(CentralityRows), Summary(AnalysisSummary)
    },
    CommunitiesResponse => communities_response {
        Progress(Progress), Rows(CommunityRows), Summary(CommunitiesSummary)
    },
    InterClusterNetworkResponse => inter_cluster_network_response {
        Progress(Progress), Nodes(InterClusterNodes), Edges(InterClusterEdges), Summary(AnalysisSummary)
    },
    ClusterOverlapResponse => cluster_overlap_response {
        Progress(Progress), Rows(ClusterOverlapRows), Summary(AnalysisSummary)
    },
    CrossingsResponse => crossings_response {
        Progress(Progress), Rows(ClusterPairCrossings), Clusters(ClusterCrossingIndexes), Summary(AnalysisSummary)
    },
    SubstitutesResponse => substitutes_response {
        Progress(Progress), Rows(SubstituteRows), Summary(AnalysisSummary)
    },
    SubstitutionGapsResponse => substitution_gaps_response {
        Progress(Progress), Rows(SubstitutionGapRows), Summary(AnalysisSummary)
    },
    FusionLinksResponse => fusion_links_response {
        Progress(Progress), Rows(FusionLinkRows), Pairs(ClusterPairFusions), Summary(FusionLinksSummary)
    },
    AssessStageResponse => assess_stage_response {
        Progress(Progress), Rows(StageAssessments), Summary(AnalysisSummary)
    },
    DetectVirtualIntegrationResponse => detect_virtual_integration_response {
        Progress(Progress), Rows(VirtualIntegrationPatterns), Summary(AnalysisSummary)
    },
    CoreFirmsResponse => core_firms_response {
        Progress(Progress), Rows(CoreFirms), Summary(CoreFirmsSummary)
    },
    UpgradingResponse => upgrading_response {
        Progress(Progress), Rows(UpgradingReports), Summary(AnalysisSummary)
    },
    RelatednessResponse => relatedness_response {
        Progress(Progress), Pairs(RelatednessRows), Clusters(ClusterComplexities), Industries(IndustryComplexities),
        Summary(RelatednessSummary)
    },
    IndustrySpaceResponse => industry_space_response {
        Progress(Progress), Rows(IndustryProximities), Summary(RelatednessSummary)
    },
    UpgradePathsResponse => upgrade_paths_response {
        Progress(Progress), Rows(UpgradePaths), Summary(UpgradePathsSummary)
    },
    ExportNetworkResponse => export_network_response {
        Progress(Progress), Clusters(ExportClusters), Actors(ExportActors), Profiles(ExportProfiles),
        Links(ExportLinks), ClusterLinks(ExportClusterLinks), Edges(ExportEdges), Results(NodeResultRows),
        Summary(AnalysisSummary)
    },
);

/// Runs analysis jobs and streams their events.
pub struct Runner {
    admission: Admission,
    metrics: Arc<Metrics>,
    stall_timeout: Duration,
    /// Turns true when the server shuts down: running analyses are cancelled.
    shutdown: watch::Receiver<bool>,
}

impl Runner {
    /// `limits`: slots, queue and memory budget of the analyses.
    /// `stall_timeout`: how long a result waits for a client that stopped
    /// reading before the analysis is cancelled and frees its slot.
    pub fn new(
        limits: AnalysisLimits,
        metrics: Arc<Metrics>,
        stall_timeout: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Runner {
        Runner {
            admission: Admission::new(limits, metrics.clone()),
            metrics,
            stall_timeout,
            shutdown,
        }
    }

    /// Waits for a slot and the memory of `footprint` (see [`Admission`]),
    /// then runs `job` on the blocking pool; returns the
    /// stream of its events.
    pub async fn spawn<E: AnalysisEvent>(
        &self,
        client: &str,
        kind: &'static str,
        footprint: Footprint,
        deadline: Option<Instant>,
        job: impl FnOnce(&Control, &Sink<E>) -> Result<()> + Send + 'static,
    ) -> Result<EventStream<E>, Status> {
        let permit = self
            .admission
            .admit(client, kind, footprint, deadline, self.shutdown.clone())
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
                let _ = progress.try_send(Ok(E::from(event)));
            };
            let control = Control::new(&flag, &report, PROGRESS_INTERVAL).with_deadline(deadline);
            let sink = Sink {
                sender: sender.clone(),
                stall_timeout,
                stalled: stalled_flag,
                runtime: tokio::runtime::Handle::current(),
                started: Instant::now(),
                rows: AtomicU64::new(0),
                last: last.clone(),
            };
            let finished = AtomicBool::new(false);
            std::thread::scope(|scope| {
                let beating = scope.spawn(|| heartbeat(&finished, &flag, &last, &sender));
                let outcome = job(&control, &sink);
                finished.store(true, Ordering::Relaxed);
                // Wake the heartbeat from its wait, so the scope ends now and
                // not up to a wait later (a floor of 50 ms on every analysis).
                beating.thread().unpark();
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
                        let _ = sink.deliver(Err(crate::service::status::stopping(
                            "the server is shutting down; the analysis was cancelled: call again once it is back",
                        )));
                    }
                    Err(Error::Cancelled) if control.expired() => {
                        tracing::info!("analysis stopped at its deadline");
                        let _ = sink.deliver(Err(Error::DeadlineExceeded {
                            message: "the analysis did not finish before the call's deadline (grpc-timeout)".into(),
                        }
                        .into()));
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

/// Repeats the last progress event whenever HEARTBEAT passes without one, so
/// a client always hears from a long run at least that often.
fn heartbeat<E: AnalysisEvent>(
    finished: &AtomicBool,
    cancelled: &AtomicBool,
    last: &std::sync::Mutex<(Instant, Option<pb::Progress>)>,
    sender: &mpsc::Sender<Result<E, Status>>,
) {
    while !finished.load(Ordering::Relaxed) && !cancelled.load(Ordering::Relaxed) {
        // Woken early when the job ends; a spurious wake only loops once more.
        std::thread::park_timeout(Duration::from_millis(50));
        let Ok(mut last) = last.lock() else { return };
        if last.0.elapsed() >= HEARTBEAT && !finished.load(Ordering::Relaxed) {
            let event = last.1.clone().unwrap_or(pb::Progress {
                phase: "starting".into(),
                done: 0,
                total: 0,
            });
            last.0 = Instant::now();
            let _ = sender.try_send(Ok(E::from(event)));
        }
    }
}

/// Where a job sends its events; a failed send means the client is gone,
/// or stopped reading for longer than the stall timeout.
pub struct Sink<E> {
    sender: mpsc::Sender<Result<E, Status>>,
    stall_timeout: Duration,
    stalled: Arc<AtomicBool>,
    /// Taken on the blocking pool, so `deliver` can wait from any thread
    /// (rayon's too) without a runtime context of its own.
    runtime: tokio::runtime::Handle,
    /// When the job started: a one-pass analysis's elapsed time.
    started: Instant,
    /// Result rows sent so far, for the summary.
    rows: AtomicU64,
    /// When the last message went out (shared with the heartbeat), so the
    /// heartbeat stays quiet after the summary: the summary is last.
    last: Arc<std::sync::Mutex<(Instant, Option<pb::Progress>)>>,
}

impl<E> Sink<E> {
    /// Sends one part of the response (a batch, the summary).
    pub fn send(&self, part: impl Into<E>) -> Result<()> {
        self.deliver(Ok(part.into()))
    }

    /// When the job started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Result rows sent so far (by `send_rows`).
    pub fn rows_sent(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Waits at most the stall timeout for room in the stream: a client that
    /// never reads must not hold an analysis slot (and a blocking thread)
    /// forever.
    fn deliver(&self, item: Result<E, Status>) -> Result<()> {
        // The heartbeat sends under this lock too, so its messages and the
        // job's are ordered; stamped when the send is done, the heartbeat
        // keeps quiet until the job has ended, so the summary stays last.
        let mut last = self.last.lock().ok();
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(self.stall_timeout, self.sender.send(item)));
        if let Some(last) = last.as_mut() {
            last.0 = Instant::now();
        }
        drop(last);
        match sent {
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

    /// Sends `rows` in batches of at most ROWS_PER_MESSAGE, each made by
    /// `batch` (e.g. `|rows| pb::CentralityRows { rows }`).
    pub fn send_rows<R, B: Into<E>>(
        &self,
        rows: impl IntoIterator<Item = R>,
        batch: impl Fn(Vec<R>) -> B,
    ) -> Result<()> {
        let mut pending = Vec::with_capacity(ROWS_PER_MESSAGE);
        for row in rows {
            pending.push(row);
            if pending.len() == ROWS_PER_MESSAGE {
                self.send_batch(std::mem::take(&mut pending), &batch)?;
            }
        }
        if pending.is_empty() {
            Ok(())
        } else {
            self.send_batch(pending, &batch)
        }
    }

    fn send_batch<R, B: Into<E>>(&self, rows: Vec<R>, batch: &impl Fn(Vec<R>) -> B) -> Result<()> {
        self.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
        self.send(batch(rows))
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
                Poll::Ready(Some(Err(Error::Aborted {
                    message: format!(
                        "the client read nothing for {} s, so the analysis was cancelled and its results are \
                         incomplete; read the stream as it comes, or call again",
                        self.stall_timeout.as_secs()
                    ),
                }
                .into())))
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
pub fn deadline_of<T>(request: &Request<T>) -> Option<Instant> {
    let timeout = grpc_timeout(request.metadata().get("grpc-timeout")?.to_str().ok()?)?;
    Instant::now().checked_add(timeout)
}

/// A `grpc-timeout` header's value (`<digits><unit>`, unit one of H M S m
/// u n) as a duration.
pub fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}
