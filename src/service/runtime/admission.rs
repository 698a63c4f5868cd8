//! Who may start an analysis: at most `max_running` at once, at most
//! `max_queued` waiting for a slot (each no longer than its deadline, or
//! `queue_wait` without one), and only what fits the memory budget by its
//! [`Footprint`] estimate. Beyond the queue a call gets RESOURCE_EXHAUSTED
//! with a retry delay; an analysis that alone would not fit gets
//! RESOURCE_EXHAUSTED at once, naming its estimate and the budget.
//!
//! Fair shares: one client (a token's name, or a peer address without
//! tokens) runs at most `per_client_running` analyses at once and has at
//! most `per_client_queued` more waiting; past that its calls are refused.
//! So a client that floods the server, or never reads its streams, waits
//! behind its own calls: the other slots stay free for everyone else.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use crate::analysis::footprint::Footprint;
use crate::service::{
    metrics::{GaugeGuard, Metrics},
    status,
};

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
    /// Analyses one client runs at once (0: half the slots, at least one).
    pub per_client_running: usize,
    /// Analyses one client has waiting; more get RESOURCE_EXHAUSTED.
    pub per_client_queued: usize,
    /// How long a call without a deadline waits in the queue.
    pub queue_wait: std::time::Duration,
}

impl Default for AnalysisLimits {
    fn default() -> Self {
        AnalysisLimits {
            max_running: 2,
            max_queued: 16,
            memory_bytes: u64::MAX,
            per_client_running: 0,
            per_client_queued: 4,
            queue_wait: std::time::Duration::from_secs(60),
        }
    }
}

impl AnalysisLimits {
    /// `per_client_running`, with 0 read as half the slots (at least one),
    /// so two clients never wait for each other.
    fn client_running(&self) -> usize {
        match self.per_client_running {
            0 => (self.max_running / 2).max(1),
            n => n.min(self.max_running).max(1),
        }
    }
}

/// A client's analyses: its running slots, and how many it has running or
/// waiting.
struct Share {
    running: Arc<Semaphore>,
    calls: usize,
}

/// One of a client's calls, counted until it ends (waiting or running).
struct ClientCall {
    client: String,
    shares: Arc<Mutex<HashMap<String, Share>>>,
}

impl Drop for ClientCall {
    fn drop(&mut self) {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(share) = shares.get_mut(&self.client) {
            share.calls -= 1;
            if share.calls == 0 {
                shares.remove(&self.client);
            }
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
    shares: Arc<Mutex<HashMap<String, Share>>>,
    metrics: Arc<Metrics>,
}

/// A running analysis's slot, its client's slot and its memory; all return
/// when it is dropped.
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _client_slot: OwnedSemaphorePermit,
    _call: ClientCall,
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
            shares: Arc::default(),
            metrics,
        }
    }

    /// Counts a call in for `client`, with its client's running slots; or
    /// refuses it when the client has its share running and waiting.
    fn enter(&self, client: &str, kind: &'static str) -> Result<(ClientCall, Arc<Semaphore>), Status> {
        let running = self.limits.client_running();
        let most = running + self.limits.per_client_queued;
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        let share = shares.entry(client.to_string()).or_insert_with(|| Share {
            running: Arc::new(Semaphore::new(running)),
            calls: 0,
        });
        if share.calls >= most {
            self.metrics.analysis_ended(kind, "refused");
            return Err(status::busy(format!(
                "this client ({client}) has {running} analyses running and {} waiting, its share of this server \
                 (--analyses-per-client, --analysis-queue-per-client); retry once one ends",
                self.limits.per_client_queued
            )));
        }
        share.calls += 1;
        let slots = share.running.clone();
        drop(shares);
        let call = ClientCall {
            client: client.to_string(),
            shares: self.shares.clone(),
        };
        Ok((call, slots))
    }

    /// Waits for a slot and for `footprint`'s memory, or says why not.
    pub async fn admit(
        &self,
        client: &str,
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
        let (call, client_slots) = self.enter(client, kind)?;
        if let Ok(client_slot) = client_slots.clone().try_acquire_owned() {
            if let (Ok(slot), Ok(memory)) = (
                self.slots.clone().try_acquire_owned(),
                self.memory.clone().try_acquire_many_owned(permits),
            ) {
                return Ok(self.admitted(slot, client_slot, call, memory));
            }
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
        // The client's own slot first: a client waiting behind its own
        // running calls does not hold a server slot meanwhile.
        let acquire = async {
            let client_slot = client_slots.acquire_owned().await;
            let slot = self.slots.clone().acquire_owned().await;
            let memory = self.memory.clone().acquire_many_owned(permits).await;
            (client_slot, slot, memory)
        };
        // A call without a deadline waits no longer than `queue_wait`.
        let deadline = deadline.unwrap_or_else(|| Instant::now() + self.limits.queue_wait);
        let expired = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            (Ok(client_slot), Ok(slot), Ok(memory)) = acquire => Ok(self.admitted(slot, client_slot, call, memory)),
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

    fn admitted(
        &self,
        slot: OwnedSemaphorePermit,
        client_slot: OwnedSemaphorePermit,
        call: ClientCall,
        memory: OwnedSemaphorePermit,
    ) -> Admitted {
        self.metrics.analyses_running.inc();
        Admitted {
            _slot: slot,
            _client_slot: client_slot,
            _call: call,
            _memory: memory,
            _running: GaugeGuard::new(self.metrics.analyses_running.clone()),
        }
    }
}
