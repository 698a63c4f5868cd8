//! Analyses, in three families: [`algo`] (generic graph algorithms on a
//! projected graph), [`relations`] (overlap, crossing, substitution, fusion,
//! gaps between clusters) and [`stages`] (integration stages, virtual
//! integration, core firms, upgrading). They do no I/O; a [`Control`] lets
//! the caller watch progress and stop a run; [`run`] turns a job into ranked
//! rows, and [`footprint`] estimates a run's memory before it starts.

pub mod algo;
pub mod footprint;
pub mod kept_ranks;
pub mod relatedness;
pub mod relations;
pub mod run;
pub mod stages;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

pub use crate::error::Cancelled;

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

/// Ranks nodes by value, highest first, ties by id: returns the indexes of
/// the first `top` nodes in rank order (rank 1 first; all of them when `top`
/// is 0 or at least the node count). The first `top` are picked out before
/// they are sorted: a top 10 of a million nodes, many tied, took a full sort
/// comparing ids (a third of a warm PageRank call at 10M links).
pub fn rank_order(values: &[f64], ids: &[crate::model::Id], descending: bool, top: usize) -> Vec<usize> {
    let ranked = |a: &usize, b: &usize| {
        let by_value = values[*b].total_cmp(&values[*a]);
        let by_value = if descending { by_value } else { by_value.reverse() };
        by_value.then_with(|| ids[*a].cmp(&ids[*b]))
    };
    let mut order: Vec<usize> = (0..values.len()).collect();
    if top > 0 && top < order.len() {
        order.select_nth_unstable_by(top - 1, ranked);
        order.truncate(top);
    }
    order.sort_by(ranked);
    order
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::rank_order;
    use crate::model::Id;

    proptest! {
        /// Picking the top k first gives exactly the first k of the full
        /// ranking, ties (by id) included, either way round.
        #[test]
        fn the_top_k_are_the_first_k_of_the_whole_ranking(
            values in prop::collection::vec(0u8..6, 0..300),
            top in 0usize..320,
            descending: bool,
        ) {
            let values: Vec<f64> = values.into_iter().map(f64::from).collect();
            let ids: Vec<Id> = (0..values.len()).map(|i| format!("n{:03}", (i * 7919) % 1000).into()).collect();
            let whole = rank_order(&values, &ids, descending, 0);
            prop_assert_eq!(whole.len(), values.len());
            let picked = rank_order(&values, &ids, descending, top);
            let expected = if top == 0 { &whole[..] } else { &whole[..top.min(whole.len())] };
            prop_assert_eq!(&picked[..], expected);
        }
    }
}
