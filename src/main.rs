//! The `clusternet` command: wiring only. `main` reports errors in one place.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Instant};

use clap::{Args, Parser, Subcommand};
use clusternet::{
    alert::{
        engine::{AlertEngine, SharedSteps},
        log::AlertLog,
    },
    analysis::stages::stage_config::StageConfig,
    cli::{
        analyses::AnalysisCommand,
        draw::{self, DrawArgs},
        export::{self, ExportArgs},
        import_client::{upload_dir, UploadError},
        reads::ReadCommand,
        ClientArgs,
    },
    demo,
    graph::warm::{GraphsConfig, WarmGraphs},
    import,
    replica::alerts::AlertShare,
    service::{
        metrics::{serve_metrics, Metrics},
        runtime::{admission::AnalysisLimits, connections::ConnectionLimits},
        server::{serve, ServerConfig},
    },
    store::{SledConfig, Store, StoreConfig},
    synthetic,
};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "clusternet",
    version,
    about = "Graph analytics server for industrial-cluster networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text, or as one JSON object a line for log collectors.
    #[arg(long, global = true, env = "CLUSTERNET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gRPC server.
    Serve(Box<ServeArgs>),
    /// Loads a directory of CSV files into a running server.
    Import(ImportArgs),
    /// Writes a network as GraphML, GEXF, DOT, node-link JSON or a CSV
    /// directory, optionally with PageRank, communities and stages per node.
    Export(ExportArgs),
    /// Draws a cluster's firm network (--cluster) or the inter-cluster map
    /// (--map) as SVG.
    Draw(DrawArgs),
    #[command(flatten)]
    Analysis(AnalysisCommand),
    #[command(flatten)]
    Read(ReadCommand),
    /// Writes the demo networks as a CSV directory (the import format).
    DemoCsv {
        /// Directory to write clusters.csv, sites.csv, actors.csv, links.csv
        /// and cluster_links.csv into.
        dir: PathBuf,
        /// Write instead three single-site clusters in Shanghai, Hangzhou
        /// and Suzhou joined over a platform: a virtual whole across
        /// clusters (docs/stages.md).
        #[arg(long)]
        three_cities: bool,
        /// Write instead a generated region: 60 clusters whose firms mix
        /// this many industry classes (a product space with structure,
        /// for `relatedness` and `upgrade-paths`; docs/relatedness.md).
        #[arg(long, conflicts_with = "three_cities")]
        industries: Option<usize>,
    },
    /// Prints the default stage-analysis settings as TOML, a starting point
    /// for `serve --config`.
    Config,
    /// Bearer tokens for `serve --tokens`.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Makes a token, appends its hash to the tokens file (created if
    /// missing), and prints the token once: it is not stored anywhere.
    New {
        /// reader (reads, analyses, watches), writer (also ApplyChanges and
        /// ImportChanges) or admin (also cascade deletes and SetAlertRules).
        #[arg(long)]
        role: clusternet::auth::Role,
        /// The tokens file `serve --tokens` reads.
        #[arg(long)]
        tokens: PathBuf,
        /// A note kept beside the hash, e.g. who holds the token.
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CLUSTERNET_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Directory of the sled store; created if missing.
    #[arg(long, env = "CLUSTERNET_DATA_DIR", default_value = "./clusternet-data")]
    data_dir: PathBuf,
    /// Load the demo networks if the store is empty.
    #[arg(long)]
    demo: bool,
    /// Largest batch accepted, in changes; larger ones get RESOURCE_EXHAUSTED.
    #[arg(long, env = "CLUSTERNET_MAX_BATCH_CHANGES", default_value_t = 10_000)]
    max_batch_changes: usize,
    /// sled's page cache, in MiB.
    #[arg(long, env = "CLUSTERNET_CACHE_MB", default_value_t = 64)]
    cache_mb: u64,
    /// Analyses run at once; more wait in the queue (--analysis-queue).
    #[arg(long, env = "CLUSTERNET_MAX_ANALYSES", default_value_t = 2)]
    max_analyses: usize,
    /// Analyses waiting for a slot, each until its deadline; more get
    /// RESOURCE_EXHAUSTED with a retry delay.
    #[arg(long, env = "CLUSTERNET_ANALYSIS_QUEUE", default_value_t = 16)]
    analysis_queue: usize,
    /// Memory the running analyses may take together, in MiB, by their
    /// estimates; an analysis estimated above it is refused with
    /// RESOURCE_EXHAUSTED (0: half of the machine's memory).
    #[arg(long, env = "CLUSTERNET_ANALYSIS_MEMORY_MB", default_value_t = 0)]
    analysis_memory_mb: u64,
    /// Client connections open at once; one more is closed at once.
    #[arg(long, env = "CLUSTERNET_MAX_CONNECTIONS", default_value_t = 1_024)]
    max_connections: usize,
    /// Client connections open at once from one address; one more is closed
    /// at once.
    #[arg(long, env = "CLUSTERNET_MAX_CONNECTIONS_PER_PEER", default_value_t = 256)]
    max_connections_per_peer: usize,
    /// Seconds a new connection has to begin its handshake (TLS ClientHello,
    /// or the HTTP/2 preface and settings); then it is closed.
    #[arg(long, env = "CLUSTERNET_HANDSHAKE_TIMEOUT", default_value_t = 5.0)]
    handshake_timeout: f64,
    /// Seconds without a byte from a client before its connection is closed
    /// (live clients answer the keepalive pings well within it).
    #[arg(long, env = "CLUSTERNET_IDLE_TIMEOUT", default_value_t = 120.0)]
    idle_timeout: f64,
    /// Seconds between the HTTP/2 pings sent to every connection.
    #[arg(long, env = "CLUSTERNET_KEEPALIVE_INTERVAL", default_value_t = 30.0)]
    keepalive_interval: f64,
    /// Seconds an HTTP/2 ping may go unanswered before the connection is closed.
    #[arg(long, env = "CLUSTERNET_KEEPALIVE_TIMEOUT", default_value_t = 20.0)]
    keepalive_timeout: f64,
    /// Calls in flight on one connection (HTTP/2 streams); a client past it
    /// waits for one of its calls to end.
    #[arg(long, env = "CLUSTERNET_MAX_STREAMS_PER_CONNECTION", default_value_t = 256)]
    max_streams_per_connection: u32,
    /// Open watches, WatchChanges and WatchAlerts together; one more gets
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "CLUSTERNET_MAX_SUBSCRIBERS", default_value_t = 1_024)]
    max_subscribers: usize,
    /// Open watches of one client (a token's name, or without tokens a peer
    /// address); one more gets RESOURCE_EXHAUSTED.
    #[arg(long, env = "CLUSTERNET_MAX_SUBSCRIBERS_PER_CLIENT", default_value_t = 256)]
    max_subscribers_per_client: usize,
    /// Seconds a watch may send nothing before, with every watch taken
    /// (--max-subscribers), it may be closed (UNAVAILABLE, with the number
    /// to resume from) so a client holding fewer gets a place.
    #[arg(long, env = "CLUSTERNET_WATCH_IDLE_CLOSE_AFTER", default_value_t = 60)]
    watch_idle_close_after: u64,
    /// Analyses one client runs at once (0: half of --max-analyses, at least one).
    #[arg(long, env = "CLUSTERNET_ANALYSES_PER_CLIENT", default_value_t = 0)]
    analyses_per_client: usize,
    /// Analyses one client has waiting for a slot; one more gets RESOURCE_EXHAUSTED.
    #[arg(long, env = "CLUSTERNET_ANALYSIS_QUEUE_PER_CLIENT", default_value_t = 4)]
    analysis_queue_per_client: usize,
    /// Seconds a queued analysis without a deadline waits for a slot before
    /// DEADLINE_EXCEEDED.
    #[arg(long, env = "CLUSTERNET_ANALYSIS_QUEUE_WAIT", default_value_t = 60.0)]
    analysis_queue_wait: f64,
    /// Serve Prometheus metrics on this address (GET /metrics); off when
    /// not given.
    #[arg(long, env = "CLUSTERNET_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Analysis graphs kept (the newest of each layer, filter and edge
    /// mode), so analyses of one snapshot share one projection and the
    /// first after a small write patches it (0 builds one per call).
    #[arg(long, env = "CLUSTERNET_GRAPHS_KEPT", default_value_t = 4)]
    graphs_kept: usize,
    /// Milliseconds the writes must pause before the kept graphs (before any
    /// analysis, the default FIRM graph) are made again in the background,
    /// so the first analysis after a bulk import need not project the
    /// network. They are kept across restarts in graphs/ in the data
    /// directory (0: never; the calls make them).
    #[arg(long, env = "CLUSTERNET_WARM_GRAPHS_AFTER_MS", default_value_t = 500)]
    warm_graphs_after_ms: u64,
    /// Seconds an analysis waits for a client that stopped reading its
    /// stream before it is cancelled and its slot freed.
    #[arg(long, env = "CLUSTERNET_STALL_TIMEOUT", default_value_t = 30)]
    stall_timeout: u64,
    /// Seconds a shutdown (SIGINT, SIGTERM) waits for open calls before it
    /// cuts them; feeds, imports and analyses are told to end at once.
    #[arg(long, env = "CLUSTERNET_SHUTDOWN_GRACE", default_value_t = 10)]
    shutdown_grace: u64,
    /// Applied batches kept for WatchChanges, counting back from the latest
    /// (0 keeps all). Older ones are dropped at checkpoints.
    #[arg(long, env = "CLUSTERNET_HISTORY_REVISIONS", default_value_t = 100_000)]
    history_revisions: u64,
    /// The history kept also weighs no more than the last checkpoint, but
    /// may always keep this many MiB.
    #[arg(long, env = "CLUSTERNET_HISTORY_MIN_MB", default_value_t = 64)]
    history_min_mb: u64,
    /// A checkpoint (the whole network in one file, so a restart need not
    /// replay the log) is written once this many changes were logged since
    /// the last one, and either as many as the network has entities or as
    /// many bytes as the last checkpoint.
    #[arg(long, env = "CLUSTERNET_CHECKPOINT_CHANGES", default_value_t = 100_000)]
    checkpoint_changes: u64,
    /// The network's maps are rebuilt compact in the background once this
    /// many changes, and a sixteenth of its entities, were written since
    /// they last were, and writes then pause for a second (0 never does).
    /// A bulk import leaves them half empty.
    #[arg(long, env = "CLUSTERNET_REPACK_CHANGES", default_value_t = 100_000)]
    repack_changes: u64,
    /// Run without the alert engine (no AlertService): for measuring what
    /// alerts cost, or a read-mostly replica.
    #[arg(long, env = "CLUSTERNET_NO_ALERTS")]
    no_alerts: bool,
    /// Run as one replica of a shared log on NATS JetStream at this URL
    /// (e.g. nats://127.0.0.1:4222; several, comma-separated): every write
    /// is ordered by the stream and applied on every replica. Without it the
    /// server stands alone (docs/scale-out.md).
    #[arg(long, env = "CLUSTERNET_NATS")]
    nats: Option<String>,
    /// The JetStream stream holding the batches (with --nats).
    #[arg(long, env = "CLUSTERNET_NATS_STREAM", default_value = "CLUSTERNET")]
    nats_stream: String,
    /// Copies JetStream keeps of each batch: 3 in production, 1 on one NATS
    /// server (with --nats; used when the stream is made).
    #[arg(long, env = "CLUSTERNET_NATS_REPLICAS", default_value_t = 1)]
    nats_replicas: usize,
    /// Milliseconds the alert lease lasts unrenewed (with --nats): how long
    /// alerts wait for another replica to produce them after the producer
    /// dies. The holder renews every third of it; 300 at least.
    #[arg(long, env = "CLUSTERNET_ALERT_LEASE_TTL_MS", default_value_t = 3_000)]
    alert_lease_ttl_ms: u64,
    /// Times a write is checked and proposed again after another replica
    /// wrote first, before it gets ABORTED (with --nats).
    #[arg(long, env = "CLUSTERNET_NATS_RETRIES", default_value_t = 8)]
    nats_retries: u32,
    /// Batches a replica may trail the stream by and still report SERVING
    /// (with --nats).
    #[arg(long, env = "CLUSTERNET_MAX_LAG", default_value_t = 1_000)]
    max_lag: u64,
    /// TOML file of stage-analysis settings (weights, thresholds, smile
    /// curve); missing values keep their defaults (`clusternet config`).
    #[arg(long, env = "CLUSTERNET_CONFIG")]
    config: Option<PathBuf>,
    /// File of accepted bearer tokens (hashes and roles; `clusternet token
    /// new`). Without it every call is allowed.
    #[arg(long, env = "CLUSTERNET_TOKENS")]
    tokens: Option<PathBuf>,
    /// Serve on an address other than loopback without tokens and TLS.
    #[arg(long, env = "CLUSTERNET_INSECURE")]
    insecure: bool,
    /// The server's certificate chain (PEM): serve TLS, with --tls-key.
    #[arg(long, env = "CLUSTERNET_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, env = "CLUSTERNET_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that clients' certificates must chain to: mutual TLS.
    #[arg(long, env = "CLUSTERNET_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

#[derive(Args)]
struct ImportArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Changes per batch (each batch is applied atomically).
    #[arg(long, default_value_t = 5_000)]
    batch_size: usize,
    /// Directory holding the CSV files.
    dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        // Colour codes only for a person at a terminal, not in log files.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve(args) => run_server(*args).await,
        Command::Import(args) => run_import(args).await,
        Command::Export(args) => export::run(args).await,
        Command::Draw(args) => draw::run(args).await,
        Command::Analysis(command) => command.run().await,
        Command::Read(command) => command.run().await,
        Command::DemoCsv {
            dir,
            three_cities,
            industries,
        } => {
            let changes = if three_cities {
                synthetic::three_cities(&synthetic::ThreeCities::default())
            } else if let Some(industries) = industries {
                synthetic::generate(&synthetic::SyntheticConfig {
                    clusters: 60,
                    actors: 6_000,
                    links: 15_000,
                    industries: industries.max(1),
                    ..Default::default()
                })
            } else {
                demo::demo_changes()
            };
            import::write_dir(&dir, &changes).map_err(|e| format!("error: cannot write {}: {e}", dir.display()))
        }
        Command::Config => {
            print!("{}", StageConfig::default().to_toml());
            Ok(())
        }
        Command::Token(TokenCommand::New { role, tokens, name }) => {
            let (token, line) = clusternet::auth::new_token(role, &name);
            append_token(&tokens, &line).map_err(|e| format!("error: cannot write {}: {e}", tokens.display()))?;
            println!("{token}");
            eprintln!(
                "a {role} token; its hash is in {} (the token itself is shown only now)",
                tokens.display()
            );
            Ok(())
        }
    }
}

/// The TLS settings from --tls-cert, --tls-key and --tls-client-ca.
fn server_tls(args: &ServeArgs) -> Result<Option<tonic::transport::ServerTlsConfig>, String> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("error: cannot read {}: {e}", path.display()));
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &args.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}

/// Appends a line to the tokens file, created readable by its owner only.
fn append_token(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{line}")
}

async fn run_server(args: ServeArgs) -> Result<(), String> {
    let started = Instant::now();
    let tokens = match &args.tokens {
        None => None,
        Some(path) => {
            let tokens = clusternet::auth::Tokens::load(path).map_err(|e| format!("error: tokens: {e}"))?;
            if tokens.is_empty() {
                return Err(format!(
                    "error: {} holds no token; make one with `clusternet token new`",
                    path.display()
                ));
            }
            Some(Arc::new(tokens))
        }
    };
    let tls = server_tls(&args)?;
    // Beyond loopback, without TLS tokens and data cross the network in the
    // clear, and without tokens anyone who reaches the port can write.
    let protected = tls.is_some() && tokens.is_some();
    if !(args.listen.ip().is_loopback() || protected || args.insecure) {
        let missing = match (tls.is_some(), tokens.is_some()) {
            (false, false) => "TLS (--tls-cert, --tls-key) and tokens (--tokens)",
            (false, true) => "TLS (--tls-cert, --tls-key): tokens would cross the network in the clear",
            _ => "tokens (--tokens): anyone who reaches the port could write",
        };
        return Err(format!(
            "error: refusing to listen on {} (not loopback) without {missing}. Listen on 127.0.0.1, add \
             them, or pass --insecure to serve anyway",
            args.listen
        ));
    }
    let stage = match &args.config {
        None => StageConfig::default(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("error: cannot read {}: {e}", path.display()))?;
            StageConfig::from_toml(&text)
                .map_err(|bad| format!("error: {}: {}: {}", path.display(), bad.name, bad.message))?
        }
    };
    let sled = SledConfig {
        cache_capacity: args.cache_mb << 20,
    };
    let config = StoreConfig {
        max_batch_changes: args.max_batch_changes,
        history_revisions: (args.history_revisions > 0).then_some(args.history_revisions),
        history_min_bytes: args.history_min_mb << 20,
        checkpoint_min_changes: args.checkpoint_changes.max(1),
        repack_min_changes: (args.repack_changes > 0).then_some(args.repack_changes),
        ..StoreConfig::default()
    };
    let data_dir = args.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_sled(&data_dir, &sled, config))
        .await
        .map_err(|e| format!("error: {e}"))?
        .map_err(|e| format!("error: cannot open the store in {}: {e}", args.data_dir.display()))?;
    let store = Arc::new(store);
    let replica = if let Some(url) = &args.nats {
        if args.nats_stream.is_empty()
            || !args
                .nats_stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "error: --nats-stream '{}': a stream name is letters, digits, '_' and '-'",
                args.nats_stream
            ));
        }
        let config = clusternet::replica::NatsConfig {
            url: url.clone(),
            stream: args.nats_stream.clone(),
            replicas: args.nats_replicas.max(1),
            retries: args.nats_retries,
            max_lag: args.max_lag,
            alert_lease_ttl: std::time::Duration::from_millis(args.alert_lease_ttl_ms.max(300)),
        };
        let replica = clusternet::replica::Replica::start(&config, store.clone())
            .await
            .map_err(|e| format!("error: {e}"))?;
        Some((replica, config))
    } else {
        None
    };
    let snapshot = store.snapshot();
    tracing::info!(
        revision = snapshot.revision,
        clusters = snapshot.network.clusters.len(),
        actors = snapshot.network.actors.len(),
        links = snapshot.network.links.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store loaded from {}",
        args.data_dir.display()
    );
    if args.demo
        && demo::load_if_empty(&store)
            .await
            .map_err(|e| format!("error: cannot load the demo: {e}"))?
    {
        tracing::info!(revision = store.snapshot().revision, "demo networks loaded");
    }
    let alerts = if args.no_alerts {
        None
    } else {
        let alerts_dir = args.data_dir.join("alerts");
        let opened = alerts_dir.clone();
        let alert_log = tokio::task::spawn_blocking(move || AlertLog::open(&opened))
            .await
            .map_err(|e| format!("error: {e}"))?
            .map_err(|e| format!("error: cannot open the alert log in {}: {e}", alerts_dir.display()))?;
        // Replicated, alerts are produced once, by the replica holding the
        // lease, and every replica records them (docs/scale-out.md).
        let share = match &replica {
            Some((replica, config)) => Some(
                AlertShare::open(
                    replica.clone(),
                    config,
                    node_name(&args.listen),
                    clusternet::service::encode_alert,
                    store.ready(),
                )
                .await
                .map_err(|e| format!("error: {e}"))?,
            ),
            None => None,
        };
        let shared = share.clone().map(|s| s as Arc<dyn SharedSteps>);
        let engine = AlertEngine::start(store.clone(), alert_log, stage.clone(), shared)
            .map_err(|e| format!("error: cannot start the alert engine: {e}"))?;
        if let Some(share) = &share {
            let recorded = engine
                .recorded_step()
                .map_err(|e| format!("error: cannot read the alert log: {e}"))?;
            share.run(&engine, recorded).await.map_err(|e| format!("error: {e}"))?;
        }
        Some((engine, share))
    };
    let (alerts, share) = match alerts {
        Some((engine, share)) => (Some(engine), share),
        None => (None, None),
    };
    // Metrics first: once the gRPC port accepts, /metrics answers too.
    let metrics = Arc::new(Metrics::new());
    if let Some(address) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| format!("error: cannot listen for metrics on {address}: {e}"))?;
        tracing::info!(%address, "metrics on http://{address}/metrics");
        tokio::spawn(serve_metrics(listener, metrics.clone(), store.clone(), alerts.clone()));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("error: cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| format!("error: {e}"))?;
    tracing::info!(%address, "clusternet listening");
    let server_config = ServerConfig {
        analyses: AnalysisLimits {
            max_running: args.max_analyses,
            max_queued: args.analysis_queue,
            memory_bytes: match args.analysis_memory_mb {
                0 => physical_memory_bytes() / 2,
                mb => mb << 20,
            },
            per_client_running: args.analyses_per_client,
            per_client_queued: args.analysis_queue_per_client,
            queue_wait: seconds(args.analysis_queue_wait, "--analysis-queue-wait")?,
        },
        connections: ConnectionLimits {
            max: args.max_connections,
            per_peer: args.max_connections_per_peer,
            handshake: seconds(args.handshake_timeout, "--handshake-timeout")?,
            idle: seconds(args.idle_timeout, "--idle-timeout")?,
            keepalive_interval: seconds(args.keepalive_interval, "--keepalive-interval")?,
            keepalive_timeout: seconds(args.keepalive_timeout, "--keepalive-timeout")?,
        },
        max_streams_per_connection: args.max_streams_per_connection,
        max_subscribers: args.max_subscribers,
        max_subscribers_per_client: args.max_subscribers_per_client,
        watch_idle_close_after: std::time::Duration::from_secs(args.watch_idle_close_after),
        metrics: metrics.clone(),
        stall_timeout: std::time::Duration::from_secs(args.stall_timeout.max(1)),
        graphs: GraphsConfig {
            kept: args.graphs_kept,
            warm: (args.warm_graphs_after_ms > 0).then(|| WarmGraphs {
                quiet: std::time::Duration::from_millis(args.warm_graphs_after_ms),
                kept_in: Some(args.data_dir.join("graphs")),
            }),
        },
        tokens,
        tls,
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace),
        stage,
        ..ServerConfig::default()
    };
    serve(
        store.clone(),
        alerts.clone(),
        server_config,
        listener,
        shutdown_signal(),
    )
    .await
    .map_err(|e| format!("error: the server failed: {e}"))?;
    // The alert thread stops at its next round boundary (what it has not
    // evaluated is evaluated at the next start, from the log); then the store
    // writes its final checkpoint.
    tokio::task::spawn_blocking(move || {
        if let Some(alerts) = alerts {
            alerts.close();
        }
        store.close();
    })
    .await
    .map_err(|e| format!("error: {e}"))?;
    if let Some(share) = share {
        share.release().await;
    }
    tracing::info!("store flushed; bye");
    Ok(())
}

/// Who holds the alert lease, as the lease says: the host, the address
/// served and the process.
fn node_name(listen: &std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{} {listen} pid {}", host.trim(), std::process::id())
}

/// The machine's memory (MemTotal), or 8 GiB where /proc does not say.
fn physical_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(8 << 30, |kib| kib << 10)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// A positive, finite number of seconds from a flag, or an error naming it.
fn seconds(value: f64, flag: &str) -> Result<std::time::Duration, String> {
    if value.is_finite() && value > 0.0 && value < 1e9 {
        Ok(std::time::Duration::from_secs_f64(value))
    } else {
        Err(format!(
            "error: {flag} must be a positive number of seconds, not {value}"
        ))
    }
}

async fn run_import(args: ImportArgs) -> Result<(), String> {
    if !args.dir.is_dir() {
        return Err(format!("error: the directory {} does not exist", args.dir.display()));
    }
    // The first pass checks every row and keeps none: a bad row anywhere
    // imports nothing. The second reads the rows again as they upload.
    let started = Instant::now();
    let checking = args.dir.clone();
    let checked = match tokio::task::spawn_blocking(move || import::check_dir(&checking)).await {
        Ok(Ok(checked)) => checked,
        Ok(Err(errors)) => {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Err(format!(
                "{}\nerror: {} bad rows; nothing was imported",
                lines.join("\n"),
                errors.len()
            ));
        }
        Err(error) => return Err(format!("error: the CSV check stopped: {error}")),
    };
    let total = checked.changes;
    let progress = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} changes ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let bar = progress.clone();
    let connection = args.client.connect().await?;
    let result = upload_dir(&connection, args.dir.clone(), args.batch_size, move |sent| {
        bar.set_position(sent)
    })
    .await;
    progress.finish_and_clear();
    match result {
        Ok(reply) => {
            let counts = reply.counts.unwrap_or_default();
            println!(
                "imported {total} changes in {} batches in {:.1} s: {} clusters, {} actors, {} links, {} cluster links; revision {}",
                reply.batches,
                started.elapsed().as_secs_f64(),
                counts.clusters_upserted,
                counts.actors_upserted,
                counts.links_upserted,
                counts.cluster_links_upserted,
                reply.revision
            );
            for line in checked.home_report() {
                println!("{line}");
            }
            Ok(())
        }
        Err(error @ UploadError::Row { .. }) => Err(format!(
            "{error}\nerror: the import stopped at this row; the batches before it are applied"
        )),
        Err(error) => Err(format!("error: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_is_well_formed() {
        // clap checks names, conflicts and requirements only when a
        // subcommand is parsed; this checks them all at once.
        super::Cli::command().debug_assert();
    }
}
