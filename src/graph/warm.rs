//! The graphs analyses run on: kept for the latest revision, patched after a
//! write from the older graph and the batches the log holds, *warmed* (made
//! again in the background once the writes pause), and kept across a
//! restart (written as the server stops, read back as it starts), so the
//! first analysis after a bulk import or a restart finds its graph ready
//! instead of projecting 10M links while the caller waits.
//!
//! What is warmed is what was used: the specs the cache keeps, remembered in
//! `specs.json`; before any analysis, the default FIRM graph (directed,
//! unweighted, no filter), which every analysis with default fields runs
//! on. A call that arrives while its graph is being warmed or read back
//! waits for that one build rather than starting its own (`GraphCache`).

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

use super::{cache::GraphCache, stored, AnalysisGraph, GraphFilter, GraphSpec, Layer, Made};
use crate::store::{Committed, Snapshot, Store};

/// Told how each graph came to be (`read`, `built`, `patched`, ...), for
/// the server's metrics; the graph layer knows nothing of them.
pub type MadeCounter = Arc<dyn Fn(&str) + Send + Sync>;

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

/// When to warm, and where the graphs are kept across restarts.
#[derive(Clone, Debug)]
pub struct WarmGraphs {
    /// How long the writes must pause before the graphs are made again.
    pub quiet: Duration,
    /// A directory for the specs kept (`specs.json`) and, as the server
    /// stops, the FIRM graphs of the last revision (`N.graph`); none:
    /// forgotten at a restart.
    pub kept_in: Option<PathBuf>,
}

pub struct Graphs {
    cache: GraphCache,
    store: Arc<Store>,
    counted: MadeCounter,
    /// The directory the graphs are kept in, and what its specs file holds.
    kept_in: Option<(PathBuf, Mutex<Vec<GraphSpec>>)>,
    /// Graphs the last run kept, of the revision the store is at, not read
    /// back yet: a call that wants one reads it itself rather than wait for
    /// the read-back to reach it.
    unread: Mutex<Vec<(GraphSpec, PathBuf)>>,
}

impl Graphs {
    /// The graphs of `store`'s snapshots; warming (when configured) starts
    /// on the runtime by reading back the graphs the last run kept, and
    /// ends when `shutdown` turns true.
    pub fn start(
        store: Arc<Store>,
        counted: MadeCounter,
        config: GraphsConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Graphs> {
        let warming = config.warm.filter(|_| config.kept > 0);
        let kept_in = warming.as_ref().and_then(|w| w.kept_in.clone()).map(|dir| {
            let specs = read_specs(&dir.join(SPECS));
            (dir, Mutex::new(specs))
        });
        let mut graphs = Graphs {
            cache: GraphCache::new(config.kept),
            store,
            counted,
            kept_in,
            unread: Mutex::new(Vec::new()),
        };
        if warming.is_some() {
            graphs.unread = Mutex::new(graphs.kept_of_this_revision());
        }
        let graphs = Arc::new(graphs);
        if let Some(warming) = warming {
            let reading = graphs.clone();
            let (read, read_back) = tokio::sync::oneshot::channel();
            // A thread of its own, not the blocking pool: it lowers its
            // priority after the first graph, and must not hand a pooled
            // thread on so lowered.
            let started = std::thread::Builder::new()
                .name("clusternet-graphs-read".into())
                .spawn(move || {
                    reading.read_back();
                    let _ = read.send(());
                });
            if let Err(error) = started {
                tracing::warn!(%error, "cannot start reading back the analysis graphs; they are made again");
            }
            tokio::spawn(warm(graphs.clone(), warming.quiet, shutdown, read_back));
        }
        graphs
    }

    /// Writes the specs kept to the file, when they changed since it was
    /// written; also called as the server stops.
    pub fn remember(&self) {
        let Some((dir, written)) = &self.kept_in else {
            return;
        };
        let mut written = written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let kept = self.cache.specs();
        if kept.is_empty() || *written == kept {
            return;
        }
        let path = dir.join(SPECS);
        match std::fs::create_dir_all(dir).and_then(|()| write_specs(&path, &kept)) {
            Ok(()) => *written = kept,
            Err(error) => tracing::warn!(%error, path = %path.display(), "cannot remember the analysis graphs kept"),
        }
    }

    /// The specs remembered from the last run.
    fn remembered(&self) -> Vec<GraphSpec> {
        self.kept_in.as_ref().map_or_else(Vec::new, |(_, written)| {
            written.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
        })
    }

    /// As the server stops: the specs kept, and the FIRM graphs made of the
    /// latest revision, for the next start (`read_back`). A graph not yet made
    /// of it (writes just before the stop) is left to be made again then.
    pub fn keep_for_restart(&self) {
        self.remember();
        let Some((dir, _)) = &self.kept_in else { return };
        let revision = self.store.snapshot().revision;
        let result = (|| -> std::io::Result<usize> {
            std::fs::create_dir_all(dir)?;
            remove_graph_files(dir)?;
            let mut written = 0;
            for (i, (made_of, spec, graph)) in self.cache.built().into_iter().enumerate() {
                if made_of == revision && stored::write(&dir.join(format!("{i}.{GRAPH}")), revision, &spec, &graph)? {
                    written += 1;
                }
            }
            Ok(written)
        })();
        match result {
            Ok(0) => {}
            Ok(written) => tracing::info!(revision, graphs = written, "analysis graphs kept for the next start"),
            Err(error) => {
                tracing::warn!(%error, dir = %dir.display(), "cannot keep the analysis graphs for the next start")
            }
        }
    }

    /// The graphs the last run kept that were made of the revision the
    /// store is at, least recently used first (their headers only are read).
    fn kept_of_this_revision(&self) -> Vec<(GraphSpec, PathBuf)> {
        let Some((dir, _)) = &self.kept_in else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let revision = self.store.snapshot().revision;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == GRAPH))
            .collect();
        // In the order they were kept (least recently used first): by
        // number, so 10.graph comes after 9.graph.
        paths.sort_by_key(|path| {
            let number = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok());
            (number.unwrap_or(u64::MAX), path.clone())
        });
        paths
            .into_iter()
            .filter_map(|path| match stored::header(&path) {
                Ok((made_of, spec)) if made_of == revision => Some((spec, path)),
                Ok(_) => {
                    tracing::info!(path = %path.display(), "a kept analysis graph is of another revision; made again");
                    None
                }
                Err(error) => {
                    tracing::warn!(%error, path = %path.display(), "a kept analysis graph cannot be used; made again");
                    None
                }
            })
            .collect()
    }

    /// The file of `spec`'s kept graph, if no one has read it yet: whoever
    /// takes it reads it.
    fn take_unread(&self, spec: &GraphSpec) -> Option<PathBuf> {
        let mut unread = self.unread.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = unread.iter().position(|(kept, _)| kept == spec)?;
        Some(unread.remove(at).1)
    }

    /// The kept graph at `path`, if it still fits the snapshot.
    fn read_kept(&self, path: &Path, snapshot: &Snapshot) -> Option<AnalysisGraph> {
        let started = Instant::now();
        match stored::read(path, &snapshot.network, snapshot.revision) {
            Ok(Some((_, graph))) => {
                tracing::info!(
                    revision = snapshot.revision,
                    nodes = graph.node_count(),
                    edges = graph.edge_count(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    path = %path.display(),
                    "analysis graph read back"
                );
                (self.counted)("read");
                Some(graph)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "a kept analysis graph cannot be used; made again");
                None
            }
        }
    }

    /// At the start, on a thread of its own at low priority: the graphs the
    /// last run kept, each read into its cache slot unless a call took it
    /// first (and reads it itself, at full speed).
    fn read_back(&self) {
        crate::background::lower_priority("analysis graphs' read-back");
        let snapshot = self.store.snapshot();
        loop {
            let next = {
                let mut unread = self.unread.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                (!unread.is_empty()).then(|| unread.remove(0))
            };
            let Some((spec, path)) = next else { return };
            self.cache.get_or_build(snapshot.revision, &spec, |_| {
                self.read_kept(&path, &snapshot).unwrap_or_else(|| {
                    (self.counted)(Made::Built.as_str());
                    spec.build(&snapshot.network)
                })
            });
        }
    }

    /// How many graphs are kept at most (one a spec).
    pub fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    /// The graph of `spec` on this snapshot: kept from an earlier analysis
    /// of the same revision, patched from an older one, or built now.
    pub fn of(&self, snapshot: &Snapshot, spec: &GraphSpec) -> Arc<AnalysisGraph> {
        self.cache.get_or_build(snapshot.revision, spec, |base| {
            // A kept file of another revision is refused by the read.
            if let Some(graph) = self.take_unread(spec).and_then(|path| self.read_kept(&path, snapshot)) {
                return graph;
            }
            let (graph, made) = spec.make(&snapshot.network, base, |after, most| {
                self.store.changes_between(after, snapshot.revision, most)
            });
            (self.counted)(made.as_str());
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

/// The specs file and the graph files' extension in the directory.
const SPECS: &str = "specs.json";
const GRAPH: &str = "graph";

fn remove_graph_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == GRAPH || e == "tmp") {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
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

async fn warm(
    graphs: Arc<Graphs>,
    quiet: Duration,
    mut shutdown: watch::Receiver<bool>,
    read_back: tokio::sync::oneshot::Receiver<()>,
) {
    // Subscribed first, so a batch committed while the first graphs are
    // made is waited for, not missed.
    let mut committed = graphs.store.subscribe();
    if read_back.await.is_err() {
        tracing::warn!("reading back the analysis graphs stopped early");
    }
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
