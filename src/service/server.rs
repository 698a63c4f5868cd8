//! Server wiring: the services, health and reflection on one listener, with a
//! graceful shutdown.

use std::{future::Future, sync::Arc};

use tokio::net::TcpListener;
use tonic::transport::Server;

use super::{
    layers::{auth::Auth, call_log::CallLogLayer, gate::GateLayer, min_revision::MinRevision, wire_status},
    metrics::Metrics,
    pb::{
        self, alert_service_server::AlertServiceServer, analysis_service_server::AnalysisServiceServer,
        network_service_server::NetworkServiceServer,
    },
    runtime::{admission::AnalysisLimits, connections, feed::Watchers},
    AlertApi, AnalysisApi, NetworkApi,
};
use crate::{
    alert::engine::AlertEngine,
    analysis::stages::stage_config::StageConfig,
    graph::warm::{Graphs, GraphsConfig, MadeCounter},
    store::Store,
};

/// Settings of the gRPC layer.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request or reply message, in bytes. Bulk-import batches are the
    /// large ones: 10,000 links encode to about 1 MiB.
    pub max_message_bytes: usize,
    /// Analyses running at once, waiting for a slot, and the memory they may
    /// take together by their estimates.
    pub analyses: AnalysisLimits,
    /// Client connections: how many, how many from one address, and how
    /// soon a silent or unanswering one is closed.
    pub connections: connections::ConnectionLimits,
    /// Concurrent calls (HTTP/2 streams) on one connection; a client past it
    /// waits for one of its calls to end.
    pub max_streams_per_connection: u32,
    /// Open watches (WatchChanges and WatchAlerts together).
    pub max_subscribers: usize,
    /// Open watches of one client (a token's name, or a peer address).
    pub max_subscribers_per_client: usize,
    /// With every watch taken, one idle this long (nothing sent) of a
    /// client holding more than the asker is closed to make room.
    pub watch_idle_close_after: std::time::Duration,
    /// Where the Prometheus metrics are kept; `serve_metrics` exposes them.
    pub metrics: Arc<Metrics>,
    /// How long an analysis waits for a client that stopped reading before
    /// it is cancelled and frees its slot.
    pub stall_timeout: std::time::Duration,
    /// How long a shutdown waits for open calls before it cuts them.
    pub shutdown_grace: std::time::Duration,
    /// The bearer tokens accepted, with their roles; None serves without
    /// tokens (loopback, or `--insecure`).
    pub tokens: Option<Arc<crate::auth::Tokens>>,
    /// TLS (rustls): the server's certificate and key, and for mutual TLS
    /// the CA its clients' certificates must chain to. None serves plaintext.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Weights, thresholds and smile curve of the stage analyses.
    pub stage: StageConfig,
    /// Analysis graphs kept for the latest revision, and their warming.
    pub graphs: GraphsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_bytes: 64 << 20,
            analyses: AnalysisLimits::default(),
            connections: connections::ConnectionLimits::default(),
            max_streams_per_connection: 256,
            max_subscribers: 1_024,
            max_subscribers_per_client: 256,
            watch_idle_close_after: std::time::Duration::from_secs(60),
            metrics: Arc::new(Metrics::new()),
            stall_timeout: std::time::Duration::from_secs(30),
            shutdown_grace: std::time::Duration::from_secs(10),
            tokens: None,
            tls: None,
            stage: StageConfig::default(),
            graphs: GraphsConfig::default(),
        }
    }
}

/// Serves every service on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight calls finish, and returns. The caller closes the
/// store afterwards, which syncs it, and then the alert engine, which
/// evaluates the last batches. Without an alert engine the AlertService is
/// not served.
pub async fn serve(
    store: Arc<Store>,
    alerts: Option<Arc<AlertEngine>>,
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<NetworkServiceServer<NetworkApi>>().await;
    health.set_serving::<AnalysisServiceServer<AnalysisApi>>().await;
    if alerts.is_some() {
        health.set_serving::<AlertServiceServer<AlertApi>>().await;
    }

    let reflection_v1 = reflection(alerts.is_some(), "grpc.reflection.v1.ServerReflection")
        .build_v1()
        .expect("the compiled descriptor sets are valid");
    let reflection_v1alpha = reflection(alerts.is_some(), "grpc.reflection.v1alpha.ServerReflection")
        .build_v1alpha()
        .expect("the compiled descriptor sets are valid");

    // A replica that trails its log (or lost it) says NOT_SERVING until it
    // is back; a single server is always ready.
    let mut ready = store.ready();
    let following = health.clone();
    let alerts_served = alerts.is_some();
    tokio::spawn(async move {
        // The first value is SERVING, as set above: wait for a change.
        while ready.changed().await.is_ok() {
            if *ready.borrow_and_update() {
                following.set_serving::<NetworkServiceServer<NetworkApi>>().await;
                following.set_serving::<AnalysisServiceServer<AnalysisApi>>().await;
                if alerts_served {
                    following.set_serving::<AlertServiceServer<AlertApi>>().await;
                }
            } else {
                following.set_not_serving::<NetworkServiceServer<NetworkApi>>().await;
                following.set_not_serving::<AnalysisServiceServer<AnalysisApi>>().await;
                following.set_not_serving::<AlertServiceServer<AlertApi>>().await;
            }
        }
    });
    let min_revision = GateLayer(MinRevision::new(store.clone()));
    store.observe(Box::new(config.metrics.clone()));
    let watchers = Arc::new(Watchers::new(
        config.max_subscribers,
        config.max_subscribers_per_client,
        config.watch_idle_close_after,
        config.metrics.clone(),
    ));
    let (stop_feeds, feeds_stop) = tokio::sync::watch::channel(false);
    let graphs = Graphs::start(
        store.clone(),
        made_counter(&config.metrics),
        config.graphs,
        feeds_stop.clone(),
    );
    let analysis = AnalysisServiceServer::new(AnalysisApi::new(
        store.clone(),
        config.analyses,
        config.metrics.clone(),
        config.stall_timeout,
        feeds_stop.clone(),
        config.stage,
        graphs.clone(),
    ))
    .max_encoding_message_size(config.max_message_bytes);
    let alert =
        alerts.map(|alerts| AlertServiceServer::new(AlertApi::new(alerts, feeds_stop.clone(), watchers.clone())));
    let network = NetworkServiceServer::new(NetworkApi::new(store, feeds_stop, watchers))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);

    let (signalled, mut grace_starts) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: no new calls, finishing those in flight");
        let _ = signalled.send(true);
        // Feeds, imports and analyses would otherwise run on: they end with
        // UNAVAILABLE (analyses are cancelled).
        let _ = stop_feeds.send(true);
        health.set_not_serving::<NetworkServiceServer<NetworkApi>>().await;
        health.set_not_serving::<AnalysisServiceServer<AnalysisApi>>().await;
        health.set_not_serving::<AlertServiceServer<AlertApi>>().await;
    };
    let limits = config.connections.clone();
    let mut builder = Server::builder()
        .max_concurrent_streams(config.max_streams_per_connection.max(1))
        // Pings keep a live client's connection read from (the idle timeout
        // counts reads); an unanswered one closes the connection.
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout));
    if let Some(tls) = config.tls.clone() {
        builder = builder.tls_config(tls)?;
    }
    let incoming = connections::accept(listener, limits, config.metrics.clone());
    let serving = builder
        // Outermost, so refused calls are logged and counted too.
        .layer(CallLogLayer::new(config.metrics.clone()))
        .layer(GateLayer(Auth::new(config.tokens.clone(), config.metrics.clone())))
        .layer(min_revision)
        .layer(wire_status::layer())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(network)
        .add_service(analysis)
        .add_optional_service(alert)
        .serve_with_incoming_shutdown(incoming, shutdown);
    let grace = config.shutdown_grace;
    let served = tokio::select! {
        served = serving => served,
        // A client that reads nothing can keep its call open: after the
        // grace its connection is dropped, so shutdown has a bound.
        _ = async move {
            let _ = grace_starts.wait_for(|started| *started).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_seconds = grace.as_secs_f64(), "calls still open after the shutdown grace; cutting them");
            Ok(())
        }
    };
    // The next start reads back (or warms) the graphs this run kept.
    let keeping = graphs.clone();
    let _ = tokio::task::spawn_blocking(move || keeping.keep_for_restart()).await;
    served
}

/// Reflection over the services this server runs: without alerts
/// (`--no-alerts`) the AlertService is not listed, as it is not served;
/// the rest are named, `itself` (the reflection service of this version)
/// too, as it is listed when every service is.
/// The graphs' way of counting how each was made, on the server's metrics.
fn made_counter(metrics: &Arc<Metrics>) -> MadeCounter {
    let metrics = metrics.clone();
    Arc::new(move |how: &str| metrics.graph_made(how))
}

fn reflection(alerts_served: bool, itself: &'static str) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc's detail messages, so grpcurl can print a status's details.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
    if alerts_served {
        return builder;
    }
    use tonic::server::NamedService;
    builder
        .with_service_name(NetworkServiceServer::<NetworkApi>::NAME)
        .with_service_name(AnalysisServiceServer::<AnalysisApi>::NAME)
        .with_service_name(tonic_health::pb::health_server::HealthServer::<tonic_health::server::HealthService>::NAME)
        .with_service_name(itself)
}
