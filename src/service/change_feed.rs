//! The change feed behind `WatchChanges`: the batches of a revision range
//! read from the change log, then the live ones as the writer publishes them.
//!
//! A watcher subscribes to the live broadcast before it reads the log, so no
//! batch falls between the two. The writer never waits for a watcher: one
//! that falls behind the broadcast (or sees a gap) goes back to the log,
//! which holds every durable batch, and catches up from there. Each watcher
//! has a small buffer towards its client; a slow client only slows its own
//! watcher.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{convert::change_to_pb, pb};
use crate::{
    model::Change,
    store::{LogReader, Store},
};

/// Events buffered towards one client.
const CLIENT_BUFFER: usize = 64;
/// How long the closing status waits for room in a full client buffer.
const FINAL_STATUS_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// Batches read from the log at once.
const LOG_CHUNK: usize = 256;

type Events = ReceiverStream<Result<pb::ChangeEvent, Status>>;

fn out_of_range(asked: u64, oldest: u64) -> Status {
    Status::out_of_range(format!(
        "from_revision: revision {asked} is no longer kept; the oldest kept is {oldest}"
    ))
}

async fn read_log(log: &Arc<dyn LogReader>, from: u64) -> Result<Vec<(u64, Vec<Change>)>, Status> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || log.read(from, LOG_CHUNK))
        .await
        .map_err(|e| Status::internal(format!("reading the change log: {e}")))?
        .map_err(Status::from)
}

async fn oldest(log: &Arc<dyn LogReader>) -> Result<Option<u64>, Status> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || log.oldest())
        .await
        .map_err(|e| Status::internal(format!("reading the change log: {e}")))?
        .map_err(Status::from)
}

/// Starts a watcher from `from_revision` (0: from the next revision).
pub async fn watch_changes(
    store: Arc<Store>,
    from_revision: u64,
    shutdown: watch::Receiver<bool>,
) -> Result<Events, Status> {
    let live = store.subscribe();
    let current = store.snapshot().revision;
    let start = if from_revision == 0 { current + 1 } else { from_revision };
    if start > current + 1 {
        // Waiting would skip the revisions in between without a word; a client
        // this far ahead resumes against a store that lost history (a restore).
        return Err(Status::out_of_range(format!(
            "from_revision: revision {start} is beyond the next one, {}; the latest is {current}",
            current + 1
        )));
    }
    if start <= current {
        match oldest(store.log()).await? {
            Some(oldest) if oldest <= start => {}
            Some(oldest) => return Err(out_of_range(start, oldest)),
            None => return Err(out_of_range(start, current + 1)),
        }
    }
    let (sender, receiver) = mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(
        Feed {
            store,
            sender,
            shutdown,
        }
        .run(start, live),
    );
    Ok(ReceiverStream::new(receiver))
}

struct Feed {
    store: Arc<Store>,
    sender: mpsc::Sender<Result<pb::ChangeEvent, Status>>,
    shutdown: watch::Receiver<bool>,
}

/// Why a feed stops.
enum Stop {
    /// The client went away.
    Gone,
    /// End the stream with this status.
    With(Status),
}

impl Feed {
    async fn run(mut self, start: u64, mut live: broadcast::Receiver<Arc<crate::store::Committed>>) {
        let mut next = start;
        let stop = loop {
            if let Err(stop) = self.catch_up(&mut next).await {
                break stop;
            }
            let shutting_down = async {
                let _ = self.shutdown.wait_for(|stop| *stop).await;
            };
            tokio::select! {
                _ = shutting_down => break Stop::With(Self::unavailable(next)),
                _ = self.sender.closed() => break Stop::Gone,
                received = live.recv() => match received {
                    Ok(batch) if batch.revision < next => {}
                    Ok(batch) if batch.revision == next => {
                        if let Err(stop) = self.send(batch.revision, &batch.changes).await {
                            break stop;
                        }
                        next += 1;
                    }
                    // A gap or a lag: the log has what was missed.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break Stop::With(Self::unavailable(next)),
                },
            }
        };
        if let Stop::With(status) = stop {
            // A client that stopped reading gets a short grace, not a hold on shutdown.
            let _ = tokio::time::timeout(FINAL_STATUS_GRACE, self.sender.send(Err(status))).await;
        }
    }

    fn unavailable(next: u64) -> Status {
        Status::unavailable(format!(
            "the server is shutting down; reconnect with from_revision {next}"
        ))
    }

    /// Sends every durable batch from `next` on, from the log.
    async fn catch_up(&mut self, next: &mut u64) -> Result<(), Stop> {
        loop {
            let published = self.store.snapshot().revision;
            if *next > published {
                return Ok(());
            }
            let batches = read_log(self.store.log(), *next).await.map_err(Stop::With)?;
            if batches.first().map(|(revision, _)| *revision) != Some(*next) {
                // Compacted while this watcher was behind.
                let oldest = batches.first().map_or(published + 1, |(revision, _)| *revision);
                return Err(Stop::With(out_of_range(*next, oldest)));
            }
            for (revision, changes) in batches.into_iter().take_while(|(r, _)| *r <= published) {
                self.send(revision, &changes).await?;
                *next = revision + 1;
            }
        }
    }

    async fn send(&mut self, revision: u64, changes: &[Change]) -> Result<(), Stop> {
        let event = pb::ChangeEvent {
            revision,
            changes: changes.iter().map(change_to_pb).collect(),
        };
        tokio::select! {
            sent = self.sender.send(Ok(event)) => sent.map_err(|_| Stop::Gone),
            _ = self.shutdown.wait_for(|stop| *stop) => Err(Stop::With(Self::unavailable(revision))),
        }
    }
}
