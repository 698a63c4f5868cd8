//! Replicas on NATS JetStream (`serve --nats URL`; design in
//! docs/scale-out.md).
//!
//! The log is one JetStream stream: each accepted batch is one message, and
//! its stream sequence is its revision on every node. A node appends with
//! `Nats-Expected-Last-Sequence`, so JetStream's own Raft decides the one
//! order and two nodes can never both write revision r + 1. Every node,
//! the writing one included, consumes the stream in order into its store
//! ([`Store::submit_at`]); the local sled store is the checkpoint a restart
//! resumes the stream from.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
    context::PublishErrorKind,
    message::PublishMessage,
    stream::{Config as StreamConfig, StorageType},
};
use futures_util::StreamExt;

pub mod alerts;

use crate::{
    error::Error,
    store::{decode_batch, PublishRefused, ReplicationFigures, Sequencer, Store},
};

/// How long making the consumer may take before it is asked again.
const CONSUMER_WAIT: Duration = Duration::from_secs(2);

/// How long a starting replica waits for JetStream to hold its stream.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// The NATS servers of a `--nats` value: one URL or several, comma-separated.
fn servers(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// Where the shared log is and how it is kept.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// The NATS server(s), e.g. `nats://127.0.0.1:4222` (comma-separated).
    pub url: String,
    /// The JetStream stream holding the batches.
    pub stream: String,
    /// Copies JetStream keeps of each batch (3 in production, 1 in a test).
    pub replicas: usize,
    /// Times a batch is checked again and re-proposed after another node
    /// wrote first, before the caller gets ABORTED.
    pub retries: u32,
    /// Batches this node may trail the stream by and still say SERVING.
    pub max_lag: u64,
    /// How long the alert lease lasts unrenewed: how long alerts wait for
    /// a new producer after the holder dies.
    pub alert_lease_ttl: Duration,
}

/// A node's link to the shared log: appends for the store, and the consumer
/// that applies the log to it.
pub struct Replica {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    subject: String,
    stream: String,
    /// Set when this node cannot go on applying the log (it diverged, or
    /// the consumer failed): it then never says SERVING again.
    broken: AtomicBool,
    /// Connections made to NATS so far: a new one means the consumer (kept
    /// by the NATS server, which may have restarted) is made again.
    connections: Arc<AtomicU64>,
    /// The highest sequence the stream is known to hold (from this node's
    /// acks and the lag check; a consumer that stays behind it without
    /// delivering anything is made again), and the conflicts, for metrics.
    figures: Arc<ReplicationFigures>,
}

impl Replica {
    /// Connects, makes sure the stream exists, checks that `store` is a
    /// prefix of it, and starts consuming it into `store` from the store's
    /// revision on; from then on the store's writes go through the stream.
    pub async fn start(config: &NatsConfig, store: Arc<Store>) -> Result<Arc<Replica>, String> {
        let connections = Arc::new(AtomicU64::new(0));
        let counted = connections.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("clusternet {}", std::process::id()))
            // Back within a second of NATS: a replica is NOT_SERVING meanwhile.
            .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(1_000)))
            .event_callback(move |event| {
                let counted = counted.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            counted.fetch_add(1, Ordering::AcqRel);
                            tracing::info!("connected to NATS");
                        }
                        async_nats::Event::Disconnected => tracing::warn!("lost NATS; reconnecting"),
                        other => tracing::debug!(event = %other, "NATS"),
                    }
                }
            })
            .retry_on_initial_connect()
            .connect(servers(&config.url))
            .await
            .map_err(|e| format!("cannot connect to NATS at {}: {e}", config.url))?;
        let jetstream = jetstream::new(client.clone());
        let subject = format!("{}.batches", config.stream);
        let mut stream = open_stream(&jetstream, log_stream(&config.stream, &subject, config), &config.url).await?;
        let state = stream
            .info()
            .await
            .map_err(|e| format!("cannot read stream {}: {e}", config.stream))?
            .state
            .clone();
        let local = store.snapshot().revision;
        if local > state.last_sequence {
            return Err(format!(
                "the data directory is at revision {local}, past the end of stream {} ({}): it was not made from this \
                 stream; start on an empty directory",
                config.stream, state.last_sequence
            ));
        }
        if state.messages > 0 && state.first_sequence > local + 1 {
            return Err(format!(
                "stream {} begins at revision {}, after this node's {local}: the batches between are gone; start on \
                 an empty directory only if the stream holds them all",
                config.stream, state.first_sequence
            ));
        }
        let replica = Arc::new(Replica {
            client,
            jetstream,
            subject,
            stream: config.stream.clone(),
            broken: AtomicBool::new(false),
            connections,
            figures: Arc::new(ReplicationFigures {
                log_last: AtomicU64::new(state.last_sequence),
                ..Default::default()
            }),
        });
        store.set_ready(local + config.max_lag >= state.last_sequence);
        tokio::spawn(consume(replica.clone(), stream, Arc::downgrade(&store)));
        tokio::spawn(watch_lag(replica.clone(), Arc::downgrade(&store), config.max_lag));
        store.replicate(replica.clone(), config.retries, replica.figures.clone());
        tracing::info!(
            stream = %config.stream,
            local_revision = local,
            stream_last = state.last_sequence,
            "replica of the JetStream log"
        );
        Ok(replica)
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn stop_serving(&self, store: &Store) {
        self.broken.store(true, Ordering::Release);
        store.set_ready(false);
    }

    /// The stream's last sequence, as JetStream says now.
    pub async fn last_sequence(&self) -> Result<u64, String> {
        let stream = self
            .jetstream
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let info = stream.get_info().await.map_err(|e| e.to_string())?;
        Ok(info.state.last_sequence)
    }
}

impl Sequencer for Replica {
    fn last(&self) -> Pin<Box<dyn Future<Output = Result<u64, Error>> + Send + '_>> {
        Box::pin(async move {
            let last = self.last_sequence().await.map_err(|message| Error::Unavailable {
                message: format!("cannot read where the shared log ends: {message}"),
            })?;
            self.figures.log_last.fetch_max(last, Ordering::AcqRel);
            Ok(last)
        })
    }

    fn append(
        &self,
        expected: u64,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<u64, PublishRefused>> + Send + '_>> {
        Box::pin(async move {
            // Sent while disconnected, a publish waits in the client's
            // buffer and may land after the caller was told it failed.
            if !self.connected() {
                return Err(PublishRefused::Failed(Error::Unavailable {
                    message: "this replica is not connected to the shared log (NATS); nothing was written: send \
                              the batch again"
                        .into(),
                }));
            }
            let message = PublishMessage::build()
                .payload(payload.into())
                .expected_last_sequence(expected);
            let failed = |e: &dyn std::fmt::Display| {
                tracing::warn!(error = %e, expected, "the shared log did not take a batch");
                PublishRefused::Failed(Error::Unavailable {
                    message: format!("the shared log did not take the batch: {e}; send it again"),
                })
            };
            let ack = self
                .jetstream
                .send_publish(self.subject.clone(), message)
                .await
                .map_err(|e| match e.kind() {
                    PublishErrorKind::MaxPayloadExceeded => PublishRefused::Failed(Error::ResourceExhausted {
                        message: format!("changes: the batch is too large for the NATS server's max_payload: {e}"),
                    }),
                    _ => failed(&e),
                })?;
            match ack.await {
                Ok(ack) => Ok(ack.sequence),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(PublishRefused::Conflict),
                Err(e) if e.kind() == PublishErrorKind::TimedOut => Err(PublishRefused::Failed(Error::Unavailable {
                    message: format!(
                        "the shared log did not answer in time: the batch may still land as revision {}; read it \
                         (clusternet-min-revision) before sending the batch again",
                        expected + 1
                    ),
                })),
                Err(e) => Err(failed(&e)),
            }
        })
    }
}

/// A stream holding one of the shared logs: every message kept, on file,
/// in as many copies as the operator asked.
fn log_stream(name: &str, subject: &str, config: &NatsConfig) -> StreamConfig {
    StreamConfig {
        name: name.into(),
        subjects: vec![subject.into()],
        num_replicas: config.replicas.max(1),
        storage: StorageType::File,
        ..Default::default()
    }
}

/// The messages of `stream` from `start` on, in order, through an
/// ephemeral pull consumer that acknowledges nothing (what an ordered
/// consumer is, but with the size of each pull bounded: the ordered
/// consumer of async-nats asks for 500 messages of any size at once, and
/// 500 batches of about 1 MB overflow what the NATS server holds for a
/// client, so it drops the replica as a slow consumer, again and again,
/// and a replica catching up with a national network never did). A
/// message lost with a connection shows as a gap in the sequence: the
/// reader then asks again from where it is (see [`Sequenced`]).
///
/// Asked briefly: a request sent while the NATS cluster has no leader (one
/// of its servers just died) may never be answered; the caller asks again.
async fn read_from<I>(
    replica: &Replica,
    stream: &jetstream::stream::Stream<I>,
    start: u64,
) -> Result<jetstream::consumer::pull::Stream, String> {
    let made = tokio::time::timeout(
        CONSUMER_WAIT,
        stream.create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
            ack_policy: AckPolicy::None,
            max_deliver: 1,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        }),
    )
    .await;
    let consumer = match made {
        Ok(Ok(consumer)) => consumer,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => return Err(format!("no answer in {} s", CONSUMER_WAIT.as_secs())),
    };
    // Room for the largest message twice over, well under the 64 MB the
    // server holds for a client by default.
    let max_payload = replica.client.server_info().max_payload;
    consumer
        .stream()
        .max_messages_per_batch(256)
        .max_bytes_per_batch((2 * max_payload).clamp(8 << 20, 24 << 20))
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| e.to_string())
}

/// Where a reader of a stream is: the sequence it wants next.
struct Sequenced {
    next: u64,
}

/// What to do with a message at `sequence`.
enum InOrder {
    /// The next one: take it.
    Take,
    /// Had already: skip it.
    Again,
    /// Past a gap (a message lost with a connection): read again from
    /// `next`.
    Gap,
}

impl Sequenced {
    fn place(&mut self, sequence: u64) -> InOrder {
        match sequence.cmp(&self.next) {
            std::cmp::Ordering::Equal => {
                self.next += 1;
                InOrder::Take
            }
            std::cmp::Ordering::Less => InOrder::Again,
            std::cmp::Ordering::Greater => InOrder::Gap,
        }
    }
}

/// Opens a stream, making it if it is not there. A JetStream cluster that
/// is starting too answers "temporarily unavailable" until it has elected
/// its leaders: try for a while.
async fn open_stream(
    jetstream: &jetstream::Context,
    config: StreamConfig,
    url: &str,
) -> Result<jetstream::stream::Stream, String> {
    let started = std::time::Instant::now();
    loop {
        match jetstream.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(error) if started.elapsed() < STREAM_WAIT => {
                tracing::info!(%error, stream = %config.name, "JetStream not ready; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => {
                return Err(format!(
                    "cannot open JetStream stream {} at {url} within {} s: {error}",
                    config.name,
                    STREAM_WAIT.as_secs()
                ))
            }
        }
    }
}

/// Applies the stream to `store` in order from the store's revision on,
/// until the store closes. The consumer lives on the NATS server: after a
/// reconnection or an error it is made again from the revision reached.
async fn consume(replica: Arc<Replica>, stream: jetstream::stream::Stream, store: Weak<Store>) {
    let Some(revisions) = store.upgrade().map(|s| s.revisions()) else {
        return;
    };
    let mut writer_gone = std::pin::pin!(writer_stopped(revisions.clone()));
    loop {
        let generation = replica.connections.load(Ordering::Acquire);
        let from = *revisions.borrow() + 1;
        let outcome = match read_from(&replica, &stream, from).await {
            Ok(messages) => follow(&replica, &store, messages, generation, writer_gone.as_mut()).await,
            Err(error) => {
                tracing::warn!(%error, from, "cannot read the shared log; trying again");
                Followed::Again
            }
        };
        match outcome {
            Followed::Stop => return,
            Followed::Again => tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = writer_gone.as_mut() => return,
            },
        }
    }
}

enum Followed {
    /// The store closed or cannot apply the log.
    Stop,
    /// The consumer failed or NATS came back: make it again.
    Again,
}

/// Applies what one consumer delivers, several batches queued at the writer
/// at a time; every batch queued is settled before it returns.
async fn follow(
    replica: &Replica,
    store: &Weak<Store>,
    mut messages: jetstream::consumer::pull::Stream,
    generation: u64,
    mut writer_gone: Pin<&mut impl Future<Output = ()>>,
) -> Followed {
    const IN_FLIGHT: usize = 32;
    let mut in_flight: std::collections::VecDeque<(u64, crate::store::PendingBatch)> = Default::default();
    /// A consumer this long behind the stream without delivering is made
    /// again: after the stream's leader moves, the old one is gone and says
    /// so only when its heartbeats are missed.
    const STALLED: Duration = Duration::from_secs(1);
    let mut check = tokio::time::interval(Duration::from_millis(250));
    let mut delivered = tokio::time::Instant::now();
    let mut outcome = None;
    let mut order = match store.upgrade() {
        Some(store) => Sequenced {
            next: store.snapshot().revision + 1,
        },
        None => return Followed::Stop,
    };
    while outcome.is_none() || !in_flight.is_empty() {
        let Some(store) = store.upgrade() else {
            return Followed::Stop;
        };
        let next = if outcome.is_some() || in_flight.len() >= IN_FLIGHT {
            None
        } else if in_flight.is_empty() {
            tokio::select! {
                next = messages.next() => Some(next),
                _ = check.tick() => {
                    let behind = replica.figures.log_last.load(Ordering::Acquire) > store.snapshot().revision;
                    if replica.connections.load(Ordering::Acquire) != generation
                        || (behind && delivered.elapsed() > STALLED)
                    {
                        outcome = Some(Followed::Again);
                    }
                    continue;
                }
                _ = writer_gone.as_mut() => return Followed::Stop,
            }
        } else {
            // Take what has arrived; if nothing, settle the oldest first.
            tokio::time::timeout(Duration::from_millis(1), messages.next())
                .await
                .ok()
        };
        match next {
            None => {
                let Some((revision, pending)) = in_flight.pop_front() else {
                    continue;
                };
                if let Err(error) = pending.outcome().await {
                    tracing::error!(%error, revision, "this replica cannot apply the shared log");
                    replica.stop_serving(&store);
                    return Followed::Stop;
                }
            }
            Some(None) => outcome = Some(Followed::Again),
            Some(Some(Err(error))) => {
                tracing::warn!(%error, "reading the shared log; reading it again");
                outcome = Some(Followed::Again);
            }
            Some(Some(Ok(message))) => {
                delivered = tokio::time::Instant::now();
                let sequence = message.info().map(|info| info.stream_sequence);
                match sequence.as_ref().map(|s| order.place(*s)) {
                    Ok(InOrder::Take) | Err(_) => {}
                    Ok(InOrder::Again) => continue,
                    Ok(InOrder::Gap) => {
                        tracing::warn!(
                            next = order.next,
                            "a gap in the shared log's delivery; reading it again"
                        );
                        outcome = Some(Followed::Again);
                        continue;
                    }
                }
                let decoded = sequence
                    .map_err(|e| e.to_string())
                    .and_then(|revision| Ok((revision, decode_batch(&message.payload).map_err(|e| e.to_string())?)));
                let (revision, changes) = match decoded {
                    Ok(decoded) => decoded,
                    Err(error) => {
                        tracing::error!(%error, "a log message that is not a batch; this replica stops serving");
                        replica.stop_serving(&store);
                        return Followed::Stop;
                    }
                };
                match store.submit_at(revision, changes).await {
                    Ok(pending) => in_flight.push_back((revision, pending)),
                    Err(_) => return Followed::Stop, // shutting down
                }
            }
        }
    }
    outcome.unwrap_or(Followed::Again)
}

/// Resolves once the store's writer has stopped (its revision sender gone).
async fn writer_stopped(mut revisions: tokio::sync::watch::Receiver<u64>) {
    while revisions.changed().await.is_ok() {}
}

/// Health follows the link to NATS and how far this node trails the stream.
async fn watch_lag(replica: Arc<Replica>, store: Weak<Store>, max_lag: u64) {
    let Some(revisions) = store.upgrade().map(|s| s.revisions()) else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if revisions.has_changed().is_err() {
            return; // the writer stopped
        }
        let caught_up = replica.connected()
            && match replica.last_sequence().await {
                Ok(last) => {
                    replica.figures.log_last.fetch_max(last, Ordering::AcqRel);
                    *revisions.borrow() + max_lag >= last
                }
                Err(_) => false,
            };
        let Some(store) = store.upgrade() else { return };
        store.set_ready(caught_up && !replica.broken.load(Ordering::Acquire));
    }
}
