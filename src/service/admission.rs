//! Who may start an analysis: at most `max_running` at once, at most
//! `max_queued` waiting for a slot (each no longer than its deadline), and
//! only what fits the memory budget by its [`Footprint`] estimate. Beyond
//! the queue a call gets RESOURCE_EXHAUSTED with a retry delay; an analysis
//! that alone would not fit gets RESOURCE_EXHAUSTED at once, naming its
//! estimate and the budget.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::{
    metrics::{GaugeGuard, Metrics},
    status,
};
use crate::analysis::footprint::Footprint;

const MIB: u64 = 1 << 20;

/// The limits on analyses, as configured.
#[derive(Clone, Copy, Debug)]
pub struct AnalysisLimits {
    /// Analyses running at once.
    pub max_running: usize,
    /// Analyses waiting for a slot; more get RESOURCE_EXHAUSTED.
    pub max_queued: usize,
    /// Memory the running analyses may take together, by their estimates.
    pub memory_bytes: u64,
}

impl Default for AnalysisLimits {
    fn default() -> Self {
        AnalysisLimits {
            max_running: 2,
            max_queued: 16,
            memory_bytes: u64::MAX,
        }
    }
}

pub struct Admission {
    limits: AnalysisLimits,
    slots: Arc<Semaphore>,
    /// The budget in MiB, as permits.
    memory: Arc<Semaphore>,
    memory_mib: u64,
    queued: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// A running analysis's slot and memory; both return when it is dropped.
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _memory: OwnedSemaphorePermit,
    _running: GaugeGuard,
}

/// Counts a waiting call out of the queue however its wait ends.
struct Waiting<'a> {
    queued: &'a AtomicUsize,
    _gauge: GaugeGuard,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(limits: AnalysisLimits, metrics: Arc<Metrics>) -> Admission {
        let max_running = limits.max_running.max(1);
        // A semaphore holds at most usize::MAX >> 3 permits.
        let memory_mib = (limits.memory_bytes / MIB).clamp(1, (u32::MAX >> 1) as u64);
        Admission {
            limits: AnalysisLimits { max_running, ..limits },
            slots: Arc::new(Semaphore::new(max_running)),
            memory: Arc::new(Semaphore::new(memory_mib as usize)),
            memory_mib,
            queued: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Waits for a slot and for `footprint`'s memory, or says why not.
    pub async fn admit(
        &self,
        kind: &'static str,
        footprint: Footprint,
        deadline: Option<Instant>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Admitted, Status> {
        let needed = footprint.bytes.div_ceil(MIB).max(1);
        if needed > self.memory_mib {
            self.metrics.analysis_ended(kind, "refused");
            return Err(status::too_large(format!(
                "{kind} would need about {needed} MiB ({} nodes and {} edges in the store), more than the {} MiB \
                 this server gives analyses (--analysis-memory-mb): narrow the filter or raise the limit",
                footprint.nodes, footprint.edges, self.memory_mib
            )));
        }
        let permits = needed as u32;
        if let (Ok(slot), Ok(memory)) = (
            self.slots.clone().try_acquire_owned(),
            self.memory.clone().try_acquire_many_owned(permits),
        ) {
            return Ok(self.admitted(slot, memory));
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limits.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.metrics.analysis_ended(kind, "refused");
            return Err(status::busy(format!(
                "{} analyses are running and {} are waiting, the most this server queues (--max-analyses, \
                 --analysis-queue); retry later",
                self.limits.max_running, self.limits.max_queued
            )));
        }
        self.metrics.analyses_queued.inc();
        let _waiting = Waiting {
            queued: &self.queued,
            _gauge: GaugeGuard::new(self.metrics.analyses_queued.clone()),
        };
        let acquire = async {
            let slot = self.slots.clone().acquire_owned().await;
            let memory = self.memory.clone().acquire_many_owned(permits).await;
            (slot, memory)
        };
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            (Ok(slot), Ok(memory)) = acquire => Ok(self.admitted(slot, memory)),
            _ = expired => {
                self.metrics.analysis_ended(kind, "deadline");
                Err(crate::Error::DeadlineExceeded {
                    message: "the call's deadline passed while it waited for an analysis slot".into(),
                }
                .into())
            }
            _ = shutdown.wait_for(|stop| *stop) => Err(status::stopping(
                "the server is shutting down; the analysis did not start: call again once it is back",
            )),
        }
    }

    fn admitted(&self, slot: OwnedSemaphorePermit, memory: OwnedSemaphorePermit) -> Admitted {
        self.metrics.analyses_running.inc();
        Admitted {
            _slot: slot,
            _memory: memory,
            _running: GaugeGuard::new(self.metrics.analyses_running.clone()),
        }
    }
}
