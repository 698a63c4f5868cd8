//! Analysis graphs kept for a revision, so concurrent and successive
//! analyses of one snapshot share one projection instead of each building
//! its own (on 10M links the projection costs as much as a PageRank).
//!
//! A graph is keyed by the revision it was built from and what it was built
//! of (layer, filter, edge mode). Concurrent requests for one key wait for a
//! single build. Only the newest revision's graphs are kept: a write makes
//! the next request build afresh, and the older graphs go as soon as the
//! analyses holding them finish. At most `capacity` graphs are kept, the
//! least recently used going first.

use std::sync::{Arc, Mutex, OnceLock};

use super::{AnalysisGraph, GraphSpec};

type Slot = Arc<OnceLock<Arc<AnalysisGraph>>>;

pub struct GraphCache {
    capacity: usize,
    /// (revision, spec, graph), most recently used last.
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

    /// The graph of `spec` at `revision`: kept, being built by another
    /// request (then this one waits for it), or built now by `build`.
    pub fn get_or_build(
        &self,
        revision: u64,
        spec: &GraphSpec,
        build: impl FnOnce() -> AnalysisGraph,
    ) -> Arc<AnalysisGraph> {
        if self.capacity == 0 {
            return Arc::new(build());
        }
        let slot = self.slot(revision, spec);
        slot.get_or_init(|| Arc::new(build())).clone()
    }

    /// The graphs kept (built or being built).
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, revision: u64, spec: &GraphSpec) -> Slot {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let newest = entries.iter().map(|e| e.0).max().unwrap_or(0);
        if revision < newest {
            // An analysis of an older snapshot: build for it alone.
            return Slot::default();
        }
        // A newer revision makes every graph kept stale.
        entries.retain(|e| e.0 == revision);
        let slot = match entries.iter().position(|e| &e.1 == spec) {
            Some(i) => entries.remove(i).2,
            None => Slot::default(),
        };
        entries.push((revision, spec.clone(), slot.clone()));
        if entries.len() > self.capacity {
            entries.remove(0);
        }
        slot
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
        let build = || {
            builds.fetch_add(1, Ordering::Relaxed);
            empty()
        };
        let a = cache.get_or_build(7, &spec(false), build);
        let b = cache.get_or_build(7, &spec(false), || unreachable!("kept"));
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
                    cache.get_or_build(1, &spec(false), || {
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
    fn a_newer_revision_drops_the_older_graphs_and_an_older_one_is_not_kept() {
        let cache = GraphCache::new(4);
        cache.get_or_build(1, &spec(false), empty);
        cache.get_or_build(1, &spec(true), empty);
        cache.get_or_build(2, &spec(false), empty);
        assert_eq!(cache.len(), 1, "revision 1's graphs are stale");
        let builds = AtomicUsize::new(0);
        for _ in 0..2 {
            cache.get_or_build(1, &spec(false), || {
                builds.fetch_add(1, Ordering::Relaxed);
                empty()
            });
        }
        assert_eq!(
            builds.load(Ordering::Relaxed),
            2,
            "an old snapshot's graph is built for its call alone"
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_least_recently_used_graph_goes_first() {
        let cache = GraphCache::new(2);
        cache.get_or_build(1, &spec(false), empty);
        cache.get_or_build(1, &spec(true), empty);
        cache.get_or_build(1, &spec(false), || unreachable!("kept"));
        let third = GraphSpec {
            undirected: true,
            ..spec(false)
        };
        cache.get_or_build(1, &third, empty);
        assert_eq!(cache.len(), 2);
        cache.get_or_build(1, &spec(false), || unreachable!("used last, so kept"));
    }
}
