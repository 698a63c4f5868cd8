//! PageRank vectors kept between revisions, one per graph spec, so the
//! PageRank after a write is brought up to date from the last one
//! (`algo::rank_update`) instead of solved again.
//!
//! A kept vector holds its graph (`Arc`): after a patch the two share every
//! chunk of rows the write did not touch, so that costs the touched chunks.
//! A vector whose graph was built again (a bulk write, a deletion) is
//! replaced by the next call, which solves again.

use std::sync::{Arc, Mutex};

use super::{
    algo::{
        centrality::PageRankConfig,
        rank_update::{pagerank_kept, RankMemo, Update},
    },
    Control, Scores,
};
use crate::{error::Cancelled, graph::AnalysisGraph, graph::GraphSpec};

/// Told how each PageRank was found (`solved`, `updated`, or `reused` on
/// the graph the kept ranks are of), for the server's metrics.
pub type HowCounter = Arc<dyn Fn(&str) + Send + Sync>;

pub struct KeptRanks {
    capacity: usize,
    counted: HowCounter,
    /// (spec, revision, ranks), most recently used last.
    entries: Mutex<Vec<(GraphSpec, u64, Arc<RankMemo>)>>,
}

impl KeptRanks {
    /// Keeps the vectors of at most `capacity` specs (0: none, every call
    /// solves).
    pub fn new(capacity: usize, counted: HowCounter) -> KeptRanks {
        KeptRanks {
            capacity,
            counted,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// PageRank (uniform jump) of `graph`, the graph of `spec` at
    /// `revision`: brought up to date from the vector kept for `spec` when
    /// it can be, else solved; the result is kept unless a newer one is.
    pub fn pagerank(
        &self,
        spec: &GraphSpec,
        revision: u64,
        graph: &Arc<AnalysisGraph>,
        config: &PageRankConfig,
        control: &Control,
    ) -> Result<(Scores, Update), Cancelled> {
        let kept = self.lookup(spec);
        let count = |how: Update| {
            (self.counted)(match how {
                Update::Full => "solved",
                Update::Frontier { .. } => "updated",
                Update::Reused => "reused",
            })
        };
        if let Some(scores) = kept.as_ref().and_then(|k| k.ranks_of(graph, config)) {
            count(Update::Reused);
            return Ok((scores, Update::Reused));
        }
        let (scores, memo, how) = pagerank_kept(graph, config, kept.as_deref(), control)?;
        count(how);
        if self.capacity > 0 {
            let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match entries.iter().position(|(s, _, _)| s == spec) {
                Some(i) if entries[i].1 > revision => {}
                Some(i) => {
                    entries.remove(i);
                    entries.push((spec.clone(), revision, Arc::new(memo)));
                }
                None => {
                    entries.push((spec.clone(), revision, Arc::new(memo)));
                    if entries.len() > self.capacity {
                        entries.remove(0);
                    }
                }
            }
        }
        Ok((scores, how))
    }

    fn lookup(&self, spec: &GraphSpec) -> Option<Arc<RankMemo>> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .iter()
            .find(|(s, _, _)| s == spec)
            .map(|(_, _, memo)| memo.clone())
    }
}
