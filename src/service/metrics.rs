//! Prometheus metrics (`--metrics-listen`). The access log and the
//! observation of each call are taken by a layer in front of the routes
//! ([`crate::service::layers::call_log`]).
//!
//! What is counted where: calls and their latency by method and code, and the
//! bytes each way, here; analyses by kind and outcome, and the ones running
//! or queued, by the analysis service; connections by the listener; watchers
//! by the feeds; the store's group size and flush time by a
//! [`CommitObserver`]; revision, write queue, alert lag and resident memory
//! are read when scraped.

use std::{sync::Arc, time::Duration};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tonic::Code;

use crate::{
    alert::engine::AlertEngine,
    store::{CommitObserver, Store},
};

/// Every metric the server keeps, in one registry of its own (so servers in
/// one process, as in the tests, do not mix).
pub struct Metrics {
    registry: Registry,
    /// The methods served, as `package.Service/Method`: a call to any other
    /// path is counted as "unknown", so a client cannot grow the registry
    /// with made-up paths.
    known_methods: std::collections::HashSet<String>,
    calls: IntCounterVec,
    latency: HistogramVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    analyses: IntCounterVec,
    graphs_made: IntCounterVec,
    pageranks: IntCounterVec,
    pub analyses_running: IntGauge,
    pub analyses_queued: IntGauge,
    revision: IntGauge,
    write_queue: IntGauge,
    group_size: Histogram,
    flush_seconds: Histogram,
    repack_seconds: Histogram,
    alert_lag: IntGauge,
    log_last: IntGauge,
    replica_lag: IntGauge,
    publish_conflicts: IntCounter,
    alert_producer: IntGauge,
    alert_store_bytes: IntGauge,
    subscribers: IntGaugeVec,
    connections: IntGauge,
    connections_refused: IntCounter,
    connections_closed: IntCounterVec,
    auth_failures: IntCounterVec,
    resident_memory: IntGauge,
}

/// Lowers a gauge when dropped: held for as long as what it counts is open.
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    /// Takes over one already counted in `gauge`.
    pub fn new(gauge: IntGauge) -> GaugeGuard {
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn registered<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new_custom(Some("clusternet".into()), None).expect("a valid prefix");
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        Metrics {
            calls: registered(
                &r,
                IntCounterVec::new(
                    Opts::new("calls_total", "Calls ended, by method and status code"),
                    &["method", "code"],
                )
                .unwrap(),
            ),
            latency: registered(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "call_duration_seconds",
                        "Call duration to the last byte, by method and code",
                    )
                    .buckets(latency_buckets.clone()),
                    &["method", "code"],
                )
                .unwrap(),
            ),
            request_bytes: registered(
                &r,
                IntCounterVec::new(
                    Opts::new("request_bytes_total", "Request body bytes, by method"),
                    &["method"],
                )
                .unwrap(),
            ),
            response_bytes: registered(
                &r,
                IntCounterVec::new(
                    Opts::new("response_bytes_total", "Response body bytes, by method"),
                    &["method"],
                )
                .unwrap(),
            ),
            analyses: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "analyses_total",
                        "Analyses ended, by kind and outcome (ok, error, cancelled, refused)",
                    ),
                    &["kind", "outcome"],
                )
                .unwrap(),
            ),
            graphs_made: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "graphs_made_total",
                        "Analysis graphs made for a new revision, by how (built from the whole network, patched from the last one, or read back at a start)",
                    ),
                    &["how"],
                )
                .unwrap(),
            ),
            pageranks: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "pageranks_total",
                        "PageRanks of a kept graph with a uniform jump, by how (solved on the whole graph, updated from the ranks kept for the last revision, or reused for the same graph)",
                    ),
                    &["how"],
                )
                .unwrap(),
            ),
            analyses_running: registered(
                &r,
                IntGauge::new("analyses_running", "Analyses holding a slot").unwrap(),
            ),
            analyses_queued: registered(
                &r,
                IntGauge::new("analyses_queued", "Analyses waiting for a slot").unwrap(),
            ),
            revision: registered(&r, IntGauge::new("revision", "The latest durable revision").unwrap()),
            write_queue: registered(
                &r,
                IntGauge::new("write_queue_batches", "Batches validated and waiting for the writer").unwrap(),
            ),
            group_size: registered(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("write_group_batches", "Batches made durable by one sync (group commit)")
                        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
                )
                .unwrap(),
            ),
            flush_seconds: registered(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("flush_duration_seconds", "Time to make one group of batches durable")
                        .buckets(latency_buckets),
                )
                .unwrap(),
            ),
            repack_seconds: registered(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "repack_duration_seconds",
                        "Time to rebuild the network's maps compact after many writes (published ones only)",
                    )
                    .buckets(vec![0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
                )
                .unwrap(),
            ),
            alert_lag: registered(
                &r,
                IntGauge::new(
                    "alert_lag_revisions",
                    "Revisions committed but not yet evaluated for alerts",
                )
                .unwrap(),
            ),
            log_last: registered(
                &r,
                IntGauge::new(
                    "log_last_revision",
                    "With --nats: the last revision the shared log is known to hold",
                )
                .unwrap(),
            ),
            replica_lag: registered(
                &r,
                IntGauge::new(
                    "replica_lag_revisions",
                    "With --nats: revisions the shared log holds that this replica has not applied",
                )
                .unwrap(),
            ),
            publish_conflicts: registered(
                &r,
                IntCounter::new(
                    "publish_conflicts_total",
                    "With --nats: writes checked again because another replica wrote first",
                )
                .unwrap(),
            ),
            alert_producer: registered(
                &r,
                IntGauge::new(
                    "alert_producer",
                    "1 while this node produces alerts (always alone; with --nats, while it holds the alert lease)",
                )
                .unwrap(),
            ),
            alert_store_bytes: registered(
                &r,
                IntGauge::new(
                    "alert_store_bytes",
                    "Bytes the alert log takes on disk (DATA_DIR/alerts), as sled counts them",
                )
                .unwrap(),
            ),
            subscribers: registered(
                &r,
                IntGaugeVec::new(
                    Opts::new("subscribers", "Open watches, by feed (changes, alerts)"),
                    &["feed"],
                )
                .unwrap(),
            ),
            connections: registered(&r, IntGauge::new("connections", "Open client connections").unwrap()),
            connections_refused: registered(
                &r,
                IntCounter::new(
                    "connections_refused_total",
                    "Connections closed at once: --max-connections reached",
                )
                .unwrap(),
            ),
            connections_closed: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "connections_closed_total",
                        "Connections the server closed, by reason: peer_limit (--max-connections-per-peer), handshake_timeout (--handshake-timeout), idle_timeout (--idle-timeout)",
                    ),
                    &["reason"],
                )
                .unwrap(),
            ),
            auth_failures: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "auth_failures_total",
                        "Calls refused for their token: unauthenticated (missing or unknown token), throttled (the address failed too often)",
                    ),
                    &["outcome"],
                )
                .unwrap(),
            ),
            resident_memory: registered(
                &r,
                IntGauge::new("resident_memory_bytes", "Resident memory of the process").unwrap(),
            ),
            registry: r,
            known_methods: known_methods(),
        }
    }

    /// The method label of a call to `path`.
    pub(crate) fn method_label(&self, path: &str) -> String {
        let method = path.trim_start_matches('/');
        if self.known_methods.contains(method) {
            method.to_string()
        } else {
            "unknown".to_string()
        }
    }

    pub fn connection_opened(&self) -> GaugeGuard {
        self.connections.inc();
        GaugeGuard(self.connections.clone())
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A call refused for its token: `outcome` unauthenticated or throttled.
    pub fn auth_failure(&self, outcome: &str) {
        self.auth_failures.with_label_values(&[outcome]).inc();
    }

    /// The server closed a connection: `reason` peer_limit, handshake_timeout or idle_timeout.
    pub fn connection_closed(&self, reason: &str) {
        self.connections_closed.with_label_values(&[reason]).inc();
    }

    pub fn subscriber(&self, feed: &str) -> GaugeGuard {
        let gauge = self.subscribers.with_label_values(&[feed]);
        gauge.inc();
        GaugeGuard(gauge)
    }

    /// An analysis graph was made (`how`: built or patched).
    pub fn graph_made(&self, how: &str) {
        self.graphs_made.with_label_values(&[how]).inc();
    }

    /// A PageRank was found (`how`: solved or updated).
    pub fn pagerank_found(&self, how: &str) {
        self.pageranks.with_label_values(&[how]).inc();
    }

    pub fn analysis_ended(&self, kind: &str, outcome: &str) {
        self.analyses.with_label_values(&[kind, outcome]).inc();
    }

    /// A call to the method labelled `label` ended with `code` after
    /// `took`, having read and sent these bytes.
    pub(crate) fn call_ended(&self, label: &str, code: Code, took: Duration, request_bytes: u64, response_bytes: u64) {
        let code = format!("{code:?}");
        let labels = [label, code.as_str()];
        self.calls.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(took.as_secs_f64());
        self.request_bytes.with_label_values(&[label]).inc_by(request_bytes);
        self.response_bytes.with_label_values(&[label]).inc_by(response_bytes);
    }

    /// The text exposition, with the figures read at scrape time brought up
    /// to date first.
    pub fn render(&self, store: &Store, alerts: Option<&AlertEngine>) -> String {
        let revision = store.snapshot().revision;
        self.revision.set(revision as i64);
        self.write_queue.set(store.queued_batches() as i64);
        if let Some(alerts) = alerts {
            self.alert_lag
                .set(revision.saturating_sub(alerts.evaluated_revision()) as i64);
            self.alert_producer.set(alerts.producing() as i64);
            if let Some(bytes) = alerts.bytes_on_disk() {
                self.alert_store_bytes.set(bytes as i64);
            }
        }
        if let Some(replication) = store.replication() {
            let last = replication
                .log_last
                .load(std::sync::atomic::Ordering::Acquire)
                .max(revision);
            self.log_last.set(last as i64);
            self.replica_lag.set((last - revision) as i64);
            let conflicts = replication.conflicts.load(std::sync::atomic::Ordering::Relaxed);
            self.publish_conflicts
                .inc_by(conflicts.saturating_sub(self.publish_conflicts.get()));
        }
        self.resident_memory.set(resident_memory_bytes() as i64);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("the text encoder writes to memory");
        String::from_utf8(out).unwrap_or_default()
    }
}

impl CommitObserver for Metrics {
    fn group_committed(&self, batches: usize, sync: Duration) {
        self.group_size.observe(batches as f64);
        self.flush_seconds.observe(sync.as_secs_f64());
    }

    fn repacked(&self, took: Duration) {
        self.repack_seconds.observe(took.as_secs_f64());
    }
}

/// Every method of the services, health and reflection, from their
/// descriptor sets.
fn known_methods() -> std::collections::HashSet<String> {
    use prost::Message;
    let mut known: std::collections::HashSet<String> = [
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for set in [super::pb::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    known.insert(format!("{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
    }
    known
}

/// Resident set size from /proc (0 where there is none).
fn resident_memory_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Serves `GET /metrics` on `listener` until the process ends: a plain
/// HTTP/1.1 responder, one request per connection, enough for a scraper.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    alerts: Option<Arc<AlertEngine>>,
) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (metrics, store, alerts) = (metrics.clone(), store.clone(), alerts.clone());
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // The request line and headers, up to 8 KiB, within 5 s.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
            });
            if read.await.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(&request);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if line.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
                let text = tokio::task::spawn_blocking(move || metrics.render(&store, alerts.as_deref()))
                    .await
                    .unwrap_or_default();
                ("200 OK", text)
            } else {
                ("404 Not Found", "only GET /metrics is served here\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
