//! Alerts produced once across replicas (`serve --nats` with alerts on).
//!
//! * **The lease.** A key in the JetStream key-value bucket
//!   `<stream>_ALERT_LEASE`, whose entries age out after the lease TTL. A
//!   replica takes it with `create` (only if no live entry is there) and
//!   keeps it with `update` at the revision it holds, a compare-and-set,
//!   every third of the TTL (`--alert-lease-ttl-ms`, 3 s). A holder that
//!   dies stops renewing; its entry ages out and another replica's
//!   `create` succeeds. A holder stopped by its operator deletes the entry,
//!   so another takes over at once.
//! * **The steps.** The engine's durable steps ([`Step`]) go to the stream
//!   `<stream>_ALERT_STEPS`, each published on the condition that the
//!   stream still ends where the producer's state does
//!   (`Nats-Expected-Last-Sequence`): a holder that lost the lease unawares
//!   cannot extend it. A step larger than the server's `max_payload` is
//!   split into parts published back to back; a reader records a step when
//!   its last part arrives and drops the parts of a step left unfinished.
//!   Every replica reads the stream in order into its own alert log, the
//!   holder too (its own steps read back, never written from memory), so
//!   alert sequence numbers, ListAlerts and WatchAlerts are the same on
//!   every replica, and a new holder resumes from the last holder's figures.
//! * **The outside record.** The holder also adds each alert, as a
//!   `clusternet.v1.Alert` message, to the stream `<stream>_ALERTS`, whose
//!   sequence is the alert sequence: other services can follow alerts from
//!   NATS itself. A new holder first adds what its predecessor recorded
//!   but did not get there.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Weak,
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    context::PublishErrorKind,
    kv,
    message::PublishMessage,
    stream::{Config as StreamConfig, DiscardPolicy, StorageType},
};
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};

use super::{log_stream, open_stream, read_from, InOrder, NatsConfig, Replica, Sequenced};
use crate::{
    alert::{
        engine::{AlertEngine, SharedSteps},
        log::Step,
        Alert,
    },
    error::{Error, Result},
    store::PublishRefused,
};

/// The key holding the lease.
const LEASE_KEY: &str = "producer";
/// The header naming a step's part: `i/n`.
const PART_HEADER: &str = "Clusternet-Step-Part";
/// How long a new producer waits to have read the whole step log.
const READ_WAIT: Duration = Duration::from_secs(10);

/// A replica's share in producing alerts: the lease, the shared step log
/// and the ALERTS stream.
pub struct AlertShare {
    replica: Arc<Replica>,
    steps_stream: String,
    steps_subject: String,
    alerts_stream: String,
    alerts_subject: String,
    lease: kv::Store,
    /// What this replica writes in the lease: who holds it.
    node: String,
    /// When the lease was last taken or renewed, in ms since `epoch` (0:
    /// not held). The revision it is held at lives in the lease task.
    renewed_ms: AtomicU64,
    epoch: Instant,
    /// The highest position of the step log this replica has read.
    read: watch::Sender<u64>,
    /// Asks the reader to make its consumer again.
    reread: Notify,
    /// The largest part of a step, under the server's max payload.
    max_part: usize,
    /// How long the lease lasts unrenewed.
    lease_ttl: Duration,
    closing: AtomicBool,
    /// An alert as the ALERTS stream carries it (the API's message; the
    /// service layer, which knows it, hands this in).
    encode: AlertEncoder,
    /// Whether this replica is ready (caught up with the batches, NATS
    /// reachable): only then does it take the lease, so a replica still
    /// catching up leaves it to one that can produce at once.
    ready: watch::Receiver<bool>,
}

/// Encodes an alert for the ALERTS stream.
pub type AlertEncoder = fn(&Alert) -> Vec<u8>;

impl AlertShare {
    /// Opens (or makes) the lease bucket and both streams next to the
    /// replica's batch stream.
    pub async fn open(
        replica: Arc<Replica>,
        config: &NatsConfig,
        node: String,
        encode: AlertEncoder,
        ready: watch::Receiver<bool>,
    ) -> std::result::Result<Arc<AlertShare>, String> {
        let steps_stream = format!("{}_ALERT_STEPS", config.stream);
        let steps_subject = format!("{}.alert-steps", config.stream);
        let alerts_stream = format!("{}_ALERTS", config.stream);
        let alerts_subject = format!("{}.alerts", config.stream);
        for (name, subject) in [(&steps_stream, &steps_subject), (&alerts_stream, &alerts_subject)] {
            open_stream(&replica.jetstream, log_stream(name, subject, config), &config.url).await?;
        }
        // The bucket's stream made as async-nats would make it (its own
        // `create_key_value` cannot read the account info of Debian's
        // nats-server 2.9), then opened as a bucket.
        let bucket = format!("{}_ALERT_LEASE", config.stream);
        let lease_ttl = config.alert_lease_ttl;
        let bucket_config = StreamConfig {
            name: format!("KV_{bucket}"),
            description: Some("which clusternet replica produces alerts".into()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age: lease_ttl,
            storage: StorageType::File,
            num_replicas: config.replicas.max(1),
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: DiscardPolicy::New,
            ..Default::default()
        };
        let opened = open_stream(&replica.jetstream, bucket_config.clone(), &config.url).await?;
        if opened.cached_info().config.max_age != lease_ttl {
            // Made with another TTL: entries must age out at the one this
            // replica renews by.
            replica
                .jetstream
                .update_stream(bucket_config)
                .await
                .map_err(|e| format!("cannot set the alert lease bucket {bucket}'s TTL: {e}"))?;
        }
        let lease = replica
            .jetstream
            .get_key_value(&bucket)
            .await
            .map_err(|e| format!("cannot open the alert lease bucket {bucket}: {e}"))?;
        let max_payload = replica.client.server_info().max_payload;
        Ok(Arc::new(AlertShare {
            replica,
            steps_stream,
            steps_subject,
            alerts_stream,
            alerts_subject,
            lease,
            node,
            renewed_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            read: watch::channel(0).0,
            reread: Notify::new(),
            // Room for the headers: a quarter of the limit, at most 64 KB
            // (a fixed 64 KB left nothing under a limit that small).
            max_part: max_payload.saturating_sub((max_payload / 4).min(64 << 10)).max(1 << 10),
            lease_ttl,
            closing: AtomicBool::new(false),
            encode,
            ready,
        }))
    }

    /// Starts reading the step log from the one after `recorded` (the last
    /// step this replica's alert log holds) into `engine`, and looking
    /// for the lease. An alert log past the step log's end was not made
    /// from it: refused, as a data directory past the batches' stream is.
    pub async fn run(self: &Arc<Self>, engine: &Arc<AlertEngine>, recorded: u64) -> std::result::Result<(), String> {
        let last = self.stream_last(&self.steps_stream).await.map_err(|e| e.to_string())?;
        if recorded > last {
            return Err(format!(
                "the alert log is at step {recorded}, past the end of stream {} ({last}): it was not made from this \
                 stream; start on an empty directory",
                self.steps_stream
            ));
        }
        self.read.send_replace(recorded);
        tokio::spawn(read_steps(self.clone(), Arc::downgrade(engine), recorded));
        tokio::spawn(keep_lease(self.clone()));
        Ok(())
    }

    /// At shutdown, after the engine stopped: gives the lease up so another
    /// replica takes over at once rather than after it ages out.
    pub async fn release(&self) {
        self.closing.store(true, Ordering::Release);
        if self.renewed_ms.swap(0, Ordering::AcqRel) != 0 {
            match self.lease.delete(LEASE_KEY).await {
                Ok(()) => tracing::info!("gave the alert lease up"),
                Err(error) => tracing::warn!(%error, "cannot give the alert lease up; it ages out"),
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    async fn stream_last(&self, stream: &str) -> Result<u64> {
        let unavailable = |e: &dyn std::fmt::Display| Error::Unavailable {
            message: format!("cannot read stream {stream}: {e}"),
        };
        let stream = self
            .replica
            .jetstream
            .get_stream_no_info(stream)
            .await
            .map_err(|e| unavailable(&e))?;
        let info = stream.get_info().await.map_err(|e| unavailable(&e))?;
        Ok(info.state.last_sequence)
    }
}

impl SharedSteps for AlertShare {
    fn holds_lease(&self) -> bool {
        // Held while renewed within two thirds of the TTL: a holder cut off
        // from NATS stops producing before its entry can age out.
        let renewed = self.renewed_ms.load(Ordering::Acquire);
        renewed != 0 && self.now_ms().saturating_sub(renewed) < (self.lease_ttl * 2 / 3).as_millis() as u64
    }

    fn append(
        &self,
        expected: u64,
        step: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<u64, PublishRefused>> + Send + '_>> {
        Box::pin(async move {
            if !self.replica.connected() {
                return Err(PublishRefused::Failed(Error::Unavailable {
                    message: "not connected to NATS".into(),
                }));
            }
            let parts: Vec<&[u8]> = step.chunks(self.max_part).collect();
            let count = parts.len();
            let mut acks = Vec::with_capacity(count);
            for (i, part) in parts.into_iter().enumerate() {
                let message = PublishMessage::build()
                    .payload(bytes::Bytes::copy_from_slice(part))
                    .header(PART_HEADER, format!("{}/{count}", i + 1).as_str())
                    .expected_last_sequence(expected + i as u64);
                let ack = self
                    .replica
                    .jetstream
                    .send_publish(self.steps_subject.clone(), message)
                    .await
                    .map_err(|e| refused(&e, e.kind()))?;
                acks.push(ack);
            }
            let mut last = expected;
            for ack in acks {
                last = ack.await.map_err(|e| refused(&e, e.kind()))?.sequence;
            }
            Ok(last)
        })
    }

    fn caught_up(&self) -> Pin<Box<dyn Future<Output = Result<u64>> + Send + '_>> {
        Box::pin(async move {
            let last = self.stream_last(&self.steps_stream).await?;
            self.recorded(last).await?;
            Ok(last)
        })
    }

    fn recorded(&self, position: u64) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            let mut read = self.read.subscribe();
            let reached = tokio::time::timeout(READ_WAIT, read.wait_for(|r| *r >= position))
                .await
                .is_ok_and(|waited| waited.is_ok());
            if reached {
                return Ok(());
            }
            self.reread.notify_one();
            Err(Error::Unavailable {
                message: format!(
                    "this replica has read the alert steps to {}, not yet to {position}",
                    *self.read.borrow()
                ),
            })
        })
    }

    fn alerts_last(&self) -> Pin<Box<dyn Future<Output = Result<u64>> + Send + '_>> {
        Box::pin(self.stream_last(&self.alerts_stream))
    }

    fn publish_alerts(&self, alerts: Vec<Alert>) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            let unavailable = |e: &dyn std::fmt::Display| Error::Unavailable {
                message: format!("stream {}: {e}", self.alerts_stream),
            };
            let mut acks = Vec::with_capacity(alerts.len());
            for alert in &alerts {
                let payload = (self.encode)(alert);
                let message = PublishMessage::build()
                    .payload(payload.into())
                    .header("Content-Type", "application/protobuf; messageType=clusternet.v1.Alert")
                    .expected_last_sequence(alert.sequence.saturating_sub(1));
                let ack = self
                    .replica
                    .jetstream
                    .send_publish(self.alerts_subject.clone(), message)
                    .await
                    .map_err(|e| unavailable(&e))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await.map_err(|e| unavailable(&e))?;
            }
            Ok(())
        })
    }
}

fn refused(error: &dyn std::fmt::Display, kind: PublishErrorKind) -> PublishRefused {
    match kind {
        PublishErrorKind::WrongLastSequence => PublishRefused::Conflict,
        _ => PublishRefused::Failed(Error::Unavailable {
            message: format!("the shared alert log did not take a step: {error}"),
        }),
    }
}

/// Takes the lease when it is free and keeps it while this replica runs.
async fn keep_lease(share: Arc<AlertShare>) {
    let mut held: Option<u64> = None;
    let mut tick = tokio::time::interval(share.lease_ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if share.closing.load(Ordering::Acquire) {
            return;
        }
        if held.is_none() && !*share.ready.borrow() {
            continue;
        }
        let attempt = async {
            match held {
                Some(revision) => share
                    .lease
                    .update(LEASE_KEY, share.node.clone().into(), revision)
                    .await
                    .map_err(|e| e.to_string()),
                None => share
                    .lease
                    .create(LEASE_KEY, share.node.clone().into())
                    .await
                    .map_err(|e| e.to_string()),
            }
        };
        let was_held = held.is_some();
        match tokio::time::timeout(share.lease_ttl / 3, attempt).await {
            Ok(Ok(revision)) => {
                if !was_held {
                    tracing::info!(node = %share.node, "took the alert lease");
                }
                held = Some(revision);
                share.renewed_ms.store(share.now_ms(), Ordering::Release);
            }
            outcome => {
                if was_held {
                    let error = match outcome {
                        Ok(Err(error)) => error,
                        _ => "no answer".into(),
                    };
                    tracing::warn!(%error, "lost the alert lease");
                }
                held = None;
                share.renewed_ms.store(0, Ordering::Release);
            }
        }
    }
}

/// Reads the step log in order from the one after `recorded` into the
/// engine's alert log, on every replica: the producer's own steps too,
/// which it waits to see recorded here rather than writing them itself.
async fn read_steps(share: Arc<AlertShare>, engine: Weak<AlertEngine>, recorded: u64) {
    let mut next = recorded + 1;
    let mut parts: Vec<bytes::Bytes> = Vec::new();
    loop {
        if share.closing.load(Ordering::Acquire) {
            return;
        }
        let stream = match share.replica.jetstream.get_stream_no_info(&share.steps_stream).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot open the alert step log; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let generation = share.replica.connections.load(Ordering::Acquire);
        let mut messages = match read_from(&share.replica, &stream, next).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "cannot read the alert step log; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = share.reread.notified() => break,
                _ = check.tick() => {
                    if share.replica.connections.load(Ordering::Acquire) != generation
                        || share.closing.load(Ordering::Acquire)
                    {
                        break;
                    }
                    continue;
                }
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(%error, "reading the alert step log; reading it again");
                    break;
                }
                None => break,
            };
            let Ok(info) = message.info() else { break };
            let position = info.stream_sequence;
            match (Sequenced { next }).place(position) {
                InOrder::Take => {}
                InOrder::Again => continue,
                InOrder::Gap => {
                    tracing::warn!(next, "a gap in the alert step log's delivery; reading it again");
                    break;
                }
            }
            let (part, of) = message
                .headers
                .as_ref()
                .and_then(|h| h.get(PART_HEADER))
                .and_then(|v| {
                    let (i, n) = v.as_str().split_once('/')?;
                    Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?))
                })
                .unwrap_or((1, 1));
            if part == 1 {
                parts.clear();
            }
            if part == parts.len() + 1 {
                parts.push(message.payload.clone());
            } else {
                // A part of a step its producer never finished.
                parts.clear();
            }
            if part == of && parts.len() == of {
                let Some(engine) = engine.upgrade() else { return };
                let bytes: Vec<u8> = parts.concat();
                let recorded = tokio::task::spawn_blocking(move || match Step::decode(&bytes) {
                    Ok(step) => engine.record_shared(position, &step).map(|_| ()),
                    Err(error) => {
                        tracing::error!(%error, position, "an alert step this replica cannot read; skipped");
                        Ok(())
                    }
                })
                .await;
                match recorded {
                    Ok(Ok(())) => parts.clear(),
                    outcome => {
                        if let Ok(Err(error)) = outcome {
                            tracing::error!(%error, position, "cannot record an alert step; trying again");
                        }
                        // Read again from this part.
                        parts.pop();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
            next = position + 1;
            share.read.send_replace(position);
        }
    }
}
