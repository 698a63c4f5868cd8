//! Graph analyses: pure functions of an [`AnalysisGraph`](crate::graph::AnalysisGraph)
//! and a config. They do no I/O; a [`Control`] lets the caller watch progress
//! and stop a run.

pub mod centrality;
pub mod community;
pub mod core_firms;
pub mod crossing;
pub mod footprint;
pub mod fusion;
pub mod gaps;
pub mod overlap;
pub mod places;
pub mod run;
pub mod stage;
pub mod stage_config;
#[cfg(test)]
mod stage_validity;
pub mod substitution;
pub mod upgrading;
pub mod virtual_integration;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// The run was stopped through its [`Control`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the analysis was cancelled")]
pub struct Cancelled;

/// Progress reports and cancellation for one run. Algorithms call `check`
/// between units of work (a source, an iteration) and `progress` as often as
/// they like: reports are passed on at most every `interval`.
pub struct Control<'a> {
    cancel: &'a AtomicBool,
    report: &'a (dyn Fn(&str, u64, u64) + Sync),
    interval: Duration,
    /// When the last report went out, and its phase.
    last: std::sync::Mutex<(Instant, String)>,
    deadline: Option<Instant>,
}

static NEVER: AtomicBool = AtomicBool::new(false);

impl<'a> Control<'a> {
    pub fn new(cancel: &'a AtomicBool, report: &'a (dyn Fn(&str, u64, u64) + Sync), interval: Duration) -> Self {
        Control {
            cancel,
            report,
            interval,
            last: std::sync::Mutex::new((Instant::now(), String::new())),
            deadline: None,
        }
    }

    /// Also stops the run once `deadline` has passed.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Whether the run stopped because its deadline passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// A control that never cancels and reports nowhere.
    pub fn none() -> Control<'static> {
        Control {
            cancel: &NEVER,
            report: &|_, _, _| {},
            interval: Duration::from_secs(3600),
            last: std::sync::Mutex::new((Instant::now(), String::new())),
            deadline: None,
        }
    }

    pub fn check(&self) -> Result<(), Cancelled> {
        if self.cancel.load(Ordering::Relaxed) || self.expired() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Reports `done` of `total` units of `phase`: at once when a new phase
    /// starts, otherwise if the interval has passed since the last report.
    pub fn progress(&self, phase: &str, done: u64, total: u64) {
        let Ok(mut last) = self.last.try_lock() else {
            return; // another thread is reporting right now
        };
        if last.1 != phase || last.0.elapsed() >= self.interval {
            *last = (Instant::now(), phase.to_string());
            (self.report)(phase, done, total);
        }
    }
}

/// Scores per node and how the iteration that produced them ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    pub values: Vec<f64>,
    pub iterations: u32,
    pub converged: bool,
}

impl Scores {
    fn exact(values: Vec<f64>) -> Scores {
        Scores {
            values,
            iterations: 0,
            converged: true,
        }
    }
}

/// Ranks nodes by value, highest first, ties by id: returns node indexes in
/// rank order (rank 1 first).
pub fn rank_order(values: &[f64], ids: &[crate::model::Id], descending: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| {
        let by_value = values[b].total_cmp(&values[a]);
        let by_value = if descending { by_value } else { by_value.reverse() };
        by_value.then_with(|| ids[a].cmp(&ids[b]))
    });
    order
}
