//! Analysis graphs kept for a revision, so concurrent and successive
//! analyses of one snapshot share one projection instead of each building
//! its own (on 10M links the projection costs as much as a PageRank).
//!
//! A graph is keyed by the revision it was built from and what it was built
//! of (layer, filter, edge mode). Concurrent requests for one key wait for a
//! single build. After a write, the first request of a spec is handed that
//! spec's graph of the older revision as a base to patch (see
//! `AnalysisGraph::patched`), and the new graph takes its place: one graph a
//! spec, the newest. At most `capacity` graphs are kept, the least recently
//! used going first.

use std::sync::{Arc, Mutex, OnceLock};

use super::{AnalysisGraph, GraphSpec};

type Slot = Arc<OnceLock<Arc<AnalysisGraph>>>;

/// A graph of an earlier revision to make the new one from: (its revision, it).
pub type Base<'a> = Option<(u64, &'a AnalysisGraph)>;

pub struct GraphCache {
    capacity: usize,
    /// (revision, spec, graph), most recently used last; one entry a spec.
    entries: Mutex<Vec<(u64, GraphSpec, Slot)>>,
}

impl GraphCache {
    /// A cache of at most `capacity` graphs (0 keeps none).
    pub fn new(capacity: usize) -> GraphCache {
        GraphCache {
            capacity,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The graph of `spec` at `revision`: kept, being made by another
    /// request (then this one waits for it), or made now by `make`, which
    /// is given the spec's graph of an earlier revision when one is kept.
    pub fn get_or_build(
        &self,
        revision: u64,
        spec: &GraphSpec,
        make: impl FnOnce(Base<'_>) -> AnalysisGraph,
    ) -> Arc<AnalysisGraph> {
        if self.capacity == 0 {
            return Arc::new(make(None));
        }
        let (slot, base) = self.slot(revision, spec);
        slot.get_or_init(|| Arc::new(make(base.as_ref().map(|(r, g)| (*r, &**g)))))
            .clone()
    }

    /// How many graphs it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The specs of the graphs kept, least recently used first.
    pub fn specs(&self) -> Vec<GraphSpec> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.iter().map(|(_, spec, _)| spec.clone()).collect()
    }

    /// The graphs kept and built: (revision, spec, graph), least recently
    /// used first.
    pub fn built(&self) -> Vec<(u64, GraphSpec, Arc<AnalysisGraph>)> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .iter()
            .filter_map(|(revision, spec, slot)| Some((*revision, spec.clone(), slot.get()?.clone())))
            .collect()
    }

    /// The graphs kept (built or being built).
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot of (`revision`, `spec`), and the base to make it from.
    fn slot(&self, revision: u64, spec: &GraphSpec) -> (Slot, Option<(u64, Arc<AnalysisGraph>)>) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(i) = entries.iter().position(|e| &e.1 == spec) else {
            let slot = Slot::default();
            entries.push((revision, spec.clone(), slot.clone()));
            if entries.len() > self.capacity {
                entries.remove(0);
            }
            return (slot, None);
        };
        let (kept, _, slot) = entries.remove(i);
        if kept == revision {
            entries.push((revision, spec.clone(), slot.clone()));
            return (slot, None);
        }
        if revision < kept {
            // An analysis of an older snapshot: made for it alone.
            entries.insert(i, (kept, spec.clone(), slot));
            return (Slot::default(), None);
        }
        // Newer: the kept graph (if it is built by now) is the base, and
        // the new graph replaces it.
        let base = slot.get().map(|graph| (kept, graph.clone()));
        let fresh = Slot::default();
        entries.push((revision, spec.clone(), fresh.clone()));
        (fresh, base)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::graph::{GraphFilter, Layer};

    fn spec(weighted: bool) -> GraphSpec {
        GraphSpec {
            layer: Layer::Firm,
            filter: GraphFilter::default(),
            undirected: false,
            weighted,
        }
    }

    fn empty() -> AnalysisGraph {
        AnalysisGraph::from_edges(vec![], vec![], &[], true, false)
    }

    #[test]
    fn one_revision_and_spec_is_built_once_and_shared() {
        let cache = GraphCache::new(4);
        let builds = AtomicUsize::new(0);
        let build = |_: Base<'_>| {
            builds.fetch_add(1, Ordering::Relaxed);
            empty()
        };
        let a = cache.get_or_build(7, &spec(false), build);
        let b = cache.get_or_build(7, &spec(false), |_| unreachable!("kept"));
        assert!(Arc::ptr_eq(&a, &b));
        cache.get_or_build(7, &spec(true), build);
        assert_eq!(builds.load(Ordering::Relaxed), 2, "another spec is another graph");
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn concurrent_requests_wait_for_one_build() {
        let cache = GraphCache::new(4);
        let builds = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    cache.get_or_build(1, &spec(false), |_| {
                        builds.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        empty()
                    })
                });
            }
        });
        assert_eq!(builds.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_newer_revision_is_made_from_the_older_graph_which_it_replaces_and_an_older_one_is_not_kept() {
        let cache = GraphCache::new(4);
        let first = cache.get_or_build(1, &spec(false), |_| empty());
        cache.get_or_build(1, &spec(true), |_| empty());
        cache.get_or_build(2, &spec(false), |base| {
            let (revision, graph) = base.expect("revision 1's graph is the base");
            assert_eq!(revision, 1);
            assert!(std::ptr::eq(graph, &*first));
            empty()
        });
        assert_eq!(cache.len(), 2, "one graph a spec");
        let builds = AtomicUsize::new(0);
        for _ in 0..2 {
            cache.get_or_build(1, &spec(false), |_| {
                builds.fetch_add(1, Ordering::Relaxed);
                empty()
            });
        }
        assert_eq!(
            builds.load(Ordering::Relaxed),
            2,
            "an old snapshot's graph is built for its call alone"
        );
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_least_recently_used_graph_goes_first() {
        let cache = GraphCache::new(2);
        cache.get_or_build(1, &spec(false), |_| empty());
        cache.get_or_build(1, &spec(true), |_| empty());
        cache.get_or_build(1, &spec(false), |_| unreachable!("kept"));
        let third = GraphSpec {
            undirected: true,
            ..spec(false)
        };
        cache.get_or_build(1, &third, |_| empty());
        assert_eq!(cache.len(), 2);
        cache.get_or_build(1, &spec(false), |_| unreachable!("used last, so kept"));
    }
}
