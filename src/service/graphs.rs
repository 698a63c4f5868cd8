//! The graphs analyses run on: kept for the latest revision, patched after a
//! write from the older graph and the batches the log holds, and *warmed*:
//! made again in the background once the writes pause, so the first analysis
//! after a bulk import or a restart finds its graph ready instead of
//! projecting 10M links while the caller waits.
//!
//! What is warmed is what was used: the specs the cache keeps, remembered in
//! a file across restarts; before any analysis, the default FIRM graph
//! (directed, unweighted, no filter), which every analysis with default
//! fields runs on. A call that arrives while its graph is being warmed waits
//! for that one build rather than starting its own (`GraphCache`).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{
    broadcast::{
        self,
        error::{RecvError, TryRecvError},
    },
    watch,
};

use super::metrics::Metrics;
use crate::{
    graph::{cache::GraphCache, AnalysisGraph, GraphFilter, GraphSpec, Layer},
    store::{Committed, Snapshot, Store},
};

/// How many graphs are kept, and whether they are warmed.
#[derive(Clone, Debug)]
pub struct GraphsConfig {
    /// Graphs kept, the newest of each spec (0 builds one per call).
    pub kept: usize,
    /// Made again in the background once the writes pause (none: made by
    /// the calls that need them).
    pub warm: Option<WarmGraphs>,
}

impl Default for GraphsConfig {
    fn default() -> Self {
        GraphsConfig { kept: 4, warm: None }
    }
}

/// When to warm, and where the specs are remembered.
#[derive(Clone, Debug)]
pub struct WarmGraphs {
    /// How long the writes must pause before the graphs are made again.
    pub quiet: Duration,
    /// Where the specs kept are remembered across restarts (none: forgotten).
    pub remembered: Option<PathBuf>,
}

pub(super) struct Graphs {
    cache: GraphCache,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    /// Where the specs kept are remembered, and what the file holds.
    remembered: Option<(PathBuf, Mutex<Vec<GraphSpec>>)>,
}

impl Graphs {
    /// The graphs of `store`'s snapshots; warming (when configured) starts
    /// on the runtime and ends when `shutdown` turns true, after
    /// remembering the specs kept.
    pub(super) fn start(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        config: GraphsConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Graphs> {
        let warming = config.warm.filter(|_| config.kept > 0);
        let remembered = warming.as_ref().and_then(|w| w.remembered.clone()).map(|path| {
            let specs = read_specs(&path);
            (path, Mutex::new(specs))
        });
        let graphs = Arc::new(Graphs {
            cache: GraphCache::new(config.kept),
            store,
            metrics,
            remembered,
        });
        if let Some(warming) = warming {
            tokio::spawn(warm(graphs.clone(), warming.quiet, shutdown));
        }
        graphs
    }

    /// Writes the specs kept to the file, when they changed since it was
    /// written; also called as the server stops.
    pub(super) fn remember(&self) {
        let Some((path, written)) = &self.remembered else {
            return;
        };
        let mut written = written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let kept = self.cache.specs();
        if kept.is_empty() || *written == kept {
            return;
        }
        match write_specs(path, &kept) {
            Ok(()) => *written = kept,
            Err(error) => tracing::warn!(%error, path = %path.display(), "cannot remember the analysis graphs kept"),
        }
    }

    /// The specs remembered from the last run.
    fn remembered(&self) -> Vec<GraphSpec> {
        self.remembered.as_ref().map_or_else(Vec::new, |(_, written)| {
            written.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
        })
    }

    /// The graph of `spec` on this snapshot: kept from an earlier analysis
    /// of the same revision, patched from an older one, or built now.
    pub(super) fn of(&self, snapshot: &Snapshot, spec: &GraphSpec) -> Arc<AnalysisGraph> {
        self.cache.get_or_build(snapshot.revision, spec, |base| {
            let (graph, made) = spec.make(&snapshot.network, base, |after, most| {
                self.store.changes_between(after, snapshot.revision, most)
            });
            self.metrics.graph_made(made.as_str());
            graph
        })
    }

    /// The specs to keep warm, least recently used first.
    fn wanted(&self) -> Vec<GraphSpec> {
        let kept = self.cache.specs();
        if kept.is_empty() {
            vec![default_spec()]
        } else {
            kept
        }
    }

    /// Makes the graphs of `specs` for the latest snapshot, in order.
    fn make_all(&self, specs: &[GraphSpec]) {
        let snapshot = self.store.snapshot();
        let skip = specs.len().saturating_sub(self.cache.capacity());
        for spec in &specs[skip..] {
            let started = Instant::now();
            let graph = self.of(&snapshot, spec);
            tracing::debug!(
                revision = snapshot.revision,
                nodes = graph.node_count(),
                edges = graph.edge_count(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                ?spec,
                "analysis graph warm"
            );
        }
    }
}

/// What an analysis with every field left at its default runs on.
fn default_spec() -> GraphSpec {
    GraphSpec {
        layer: Layer::Firm,
        filter: GraphFilter::default(),
        undirected: false,
        weighted: false,
    }
}

async fn warm(graphs: Arc<Graphs>, quiet: Duration, mut shutdown: watch::Receiver<bool>) {
    // Subscribed first, so a batch committed while the first graphs are
    // made is waited for, not missed.
    let mut committed = graphs.store.subscribe();
    let mut wanted = graphs.remembered();
    if wanted.is_empty() {
        wanted.push(default_spec());
    }
    loop {
        let making = graphs.clone();
        if tokio::task::spawn_blocking(move || making.make_all(&wanted))
            .await
            .is_err()
        {
            tracing::warn!("warming the analysis graphs failed");
        }
        graphs.remember();
        if !wait_for_pause(&graphs, &mut committed, &mut shutdown, quiet).await {
            return;
        }
        wanted = graphs.wanted();
    }
}

/// Waits for a batch, then for the writes to pause for `quiet` and any
/// repack due to land. False when the server shuts down (or the store
/// closes) first.
async fn wait_for_pause(
    graphs: &Graphs,
    committed: &mut broadcast::Receiver<Arc<Committed>>,
    shutdown: &mut watch::Receiver<bool>,
    quiet: Duration,
) -> bool {
    tokio::select! {
        received = committed.recv() => {
            if matches!(received, Err(RecvError::Closed)) {
                return false;
            }
        }
        _ = shutdown.wait_for(|stop| *stop) => return false,
    }
    loop {
        let seen = graphs.store.snapshot().revision;
        tokio::select! {
            _ = tokio::time::sleep(quiet) => {}
            _ = shutdown.wait_for(|stop| *stop) => return false,
        }
        // What came meanwhile is covered by the snapshot read next.
        while !matches!(committed.try_recv(), Err(TryRecvError::Empty | TryRecvError::Closed)) {}
        // A repack due rebuilds the maps the graph would walk, holding both
        // versions meanwhile: the graph is made after it, faster and
        // without a third copy of the memory in flight.
        if graphs.store.snapshot().revision == seen && !graphs.store.repack_pending() {
            return true;
        }
    }
}

/// The specs in the file; none when it is missing or unreadable (a warning:
/// the graphs are then made at the first analyses, as without the file).
fn read_specs(path: &Path) -> Vec<GraphSpec> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "cannot read the analysis graphs to warm");
            return Vec::new();
        }
    };
    serde_json::from_str(&text).unwrap_or_else(|error| {
        tracing::warn!(%error, path = %path.display(), "cannot read the analysis graphs to warm");
        Vec::new()
    })
}

/// Written whole to a temporary file and renamed over the old one, so a
/// crash leaves either list, never half of one.
fn write_specs(path: &Path, specs: &[GraphSpec]) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(specs).map_err(std::io::Error::other)?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}
