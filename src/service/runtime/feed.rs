//! A resumable feed, behind `WatchChanges` and `WatchAlerts`: the items of a
//! numbered range read from a durable log, then the live ones as they are
//! published.
//!
//! A feed subscribes to the live broadcast before it reads the log, so no
//! item falls between the two. The publisher never waits for a feed: one
//! that falls behind the broadcast (or sees a gap) goes back to the log,
//! which holds every durable item, and catches up from there. Each feed has a
//! small buffer towards its client; a slow client only slows its own feed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{broadcast, mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::service::metrics::{GaugeGuard, Metrics};

/// Events buffered towards one client.
const CLIENT_BUFFER: usize = 64;
/// How long the closing status waits for room in a full client buffer.
const FINAL_STATUS_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// Items read from the log at once.
const LOG_CHUNK: usize = 256;

/// Where a feed's items come from. What is fed is numbered 1, 2, 3, ...
/// without gaps; an item covers a run of numbers (`span`): one batch is one
/// revision, one round of alerts is several sequence numbers, sent live as
/// one item so a burst is one broadcast message. `published` is the latest
/// number that is durable.
pub trait Source: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Event: Send + 'static;
    /// The request field that picks the first number, for statuses.
    const FIELD: &'static str;
    /// What a number is called, for statuses.
    const NOUN: &'static str;

    fn subscribe(&self) -> broadcast::Receiver<Arc<Self::Item>>;
    fn published(&self) -> u64;
    /// The first and last number an item covers.
    fn span(item: &Self::Item) -> (u64, u64);
    /// Items from number `from` on, in order, covering up to about `limit`
    /// numbers (blocking I/O).
    fn read(&self, from: u64, limit: usize) -> crate::Result<Vec<Arc<Self::Item>>>;
    /// The oldest number still in the log.
    fn oldest(&self) -> crate::Result<Option<u64>>;
    /// What to send for the numbers of an item from `from` on, each with its
    /// number; only those this client wants.
    fn events(&self, item: &Self::Item, from: u64) -> Vec<(u64, Self::Event)>;
    /// Whether this node may trail where the numbers are (a replica of a
    /// shared log): a client resuming past what it holds, having read
    /// further on another replica, is then waited for, not refused.
    fn may_trail(&self) -> bool {
        false
    }
}

/// How long a feed on a replica waits to reach the number a client resumes
/// from before it says the number is out of range.
const TRAIL_WAIT: Duration = Duration::from_secs(10);

pub type Events<E> = ReceiverStream<Result<E, Status>>;

/// The open watches, WatchChanges and WatchAlerts together: at most `max`.
///
/// One client (a token's name, or a peer address) holds at most
/// `per_client` of them, so one client opening watches by the thousand
/// leaves places for everyone else. When all `max` are taken, a client
/// asking for one more takes the place of the watch that has sent nothing
/// for longest (at least `idle_after`) among those of the client holding
/// the most, if that client holds more than the asker will: that watch
/// ends with UNAVAILABLE and the number to resume from. Otherwise the
/// asker gets RESOURCE_EXHAUSTED.
pub struct Watchers {
    slots: Arc<Semaphore>,
    max: usize,
    per_client: usize,
    idle_after: Duration,
    open: Arc<Mutex<Open>>,
    metrics: Arc<Metrics>,
}

/// The open watches, by id, and how many each client holds.
#[derive(Default)]
struct Open {
    next_id: u64,
    watches: HashMap<u64, (String, Arc<Activity>)>,
    per_client: HashMap<String, usize>,
}

/// When a watch last sent an event, and the signal that closes it.
struct Activity {
    last_sent: Mutex<Instant>,
    closed: Notify,
    closing: std::sync::atomic::AtomicBool,
}

/// How long a client asking for a place waits for a closed idle watch to
/// give its place up.
const TAKE_OVER_WAIT: Duration = Duration::from_secs(2);

/// One open watch's place; given back when its feed ends.
pub struct Watching {
    _slot: OwnedSemaphorePermit,
    entry: OpenEntry,
    _gauge: GaugeGuard,
}

/// A watch's entry in [`Open`], removed when it ends.
struct OpenEntry {
    id: u64,
    activity: Arc<Activity>,
    open: Arc<Mutex<Open>>,
}

impl Drop for OpenEntry {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((client, _)) = open.watches.remove(&self.id) {
            if let Some(count) = open.per_client.get_mut(&client) {
                *count -= 1;
                if *count == 0 {
                    open.per_client.remove(&client);
                }
            }
        }
    }
}

impl Watching {
    /// The watch sent an event: it is not idle.
    fn sent(&self) {
        *self.entry.activity.last_sent.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Resolves once the watch is closed to make room for another client.
    async fn closed(&self) {
        self.entry.activity.closed.notified().await
    }
}

impl Watchers {
    pub fn new(max: usize, per_client: usize, idle_after: Duration, metrics: Arc<Metrics>) -> Watchers {
        Watchers {
            slots: Arc::new(Semaphore::new(max.max(1))),
            max: max.max(1),
            per_client: per_client.max(1),
            idle_after,
            open: Arc::default(),
            metrics,
        }
    }

    /// A place for one more watch of `feed` ("changes", "alerts") by `client`.
    pub async fn admit(&self, feed: &str, client: &str) -> Result<Watching, Status> {
        let entry = self.register(client)?;
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let full = || {
                    crate::service::status::busy(format!(
                        "{} watches are open, the most this server serves (--max-subscribers), and none \
                         idle for {:.1} s belongs to a client holding more than this one; retry later",
                        self.max,
                        self.idle_after.as_secs_f64()
                    ))
                };
                if !self.close_one_idle(client) {
                    return Err(full());
                }
                match tokio::time::timeout(TAKE_OVER_WAIT, self.slots.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    _ => return Err(full()),
                }
            }
        };
        Ok(Watching {
            _slot: slot,
            entry,
            _gauge: self.metrics.subscriber(feed),
        })
    }

    /// Counts the watch against its client's share.
    fn register(&self, client: &str) -> Result<OpenEntry, Status> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.per_client.get(client).copied().unwrap_or(0);
        if held >= self.per_client {
            return Err(crate::service::status::busy(format!(
                "this client ({client}) has {} watches open, its share of this server \
                 (--max-subscribers-per-client); close one or retry later",
                self.per_client
            )));
        }
        *open.per_client.entry(client.to_string()).or_default() += 1;
        let id = open.next_id;
        open.next_id += 1;
        let activity = Arc::new(Activity {
            last_sent: Mutex::new(Instant::now()),
            closed: Notify::new(),
            closing: Default::default(),
        });
        open.watches.insert(id, (client.to_string(), activity.clone()));
        Ok(OpenEntry {
            id,
            activity,
            open: self.open.clone(),
        })
    }

    /// Closes the longest-idle watch of the client holding the most, if it
    /// holds more than `asker` (counting the watch asked for) and that
    /// watch has been idle `idle_after`; whether one was closed.
    fn close_one_idle(&self, asker: &str) -> bool {
        use std::sync::atomic::Ordering;
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let asker_holds = open.per_client.get(asker).copied().unwrap_or(0);
        let Some((holder, holds)) = open
            .per_client
            .iter()
            .filter(|(client, _)| client.as_str() != asker)
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(client, holds)| (client.clone(), *holds))
        else {
            return false;
        };
        if holds <= asker_holds {
            return false;
        }
        let now = Instant::now();
        let idlest = open
            .watches
            .values()
            .filter(|(client, activity)| *client == holder && !activity.closing.load(Ordering::Acquire))
            .map(|(_, activity)| {
                let idle = now.duration_since(*activity.last_sent.lock().unwrap_or_else(|e| e.into_inner()));
                (idle, activity)
            })
            .max_by_key(|(idle, _)| *idle);
        match idlest {
            Some((idle, activity)) if idle >= self.idle_after => {
                activity.closing.store(true, Ordering::Release);
                activity.closed.notify_one();
                tracing::info!(
                    holder = %holder,
                    holds,
                    idle_s = idle.as_secs(),
                    asker = %asker,
                    "closed an idle watch to make room for another client"
                );
                true
            }
            _ => false,
        }
    }
}

fn out_of_range<S: Source>(asked: u64, oldest: u64) -> Status {
    crate::Error::OutOfRange {
        field: S::FIELD.into(),
        message: format!("{} {asked} is no longer kept; the oldest kept is {oldest}", S::NOUN),
    }
    .into()
}

fn unavailable<S: Source>(next: u64) -> Status {
    crate::service::status::stopping(format!(
        "the server is shutting down; reconnect with {} {next}",
        S::FIELD
    ))
}

/// The end of a watch closed, idle, so another client gets its place.
fn made_room<S: Source>(next: u64) -> Status {
    crate::service::status::stopping(format!(
        "this watch sent nothing for a while and the server's watches are all taken: it is closed so \
         another client gets a place; reconnect with {} {next}",
        S::FIELD
    ))
}

async fn blocking<S: Source, T: Send + 'static>(
    source: &Arc<S>,
    read: impl FnOnce(&S) -> crate::Result<T> + Send + 'static,
) -> Result<T, Status> {
    let source = source.clone();
    tokio::task::spawn_blocking(move || read(&source))
        .await
        .map_err(|e| crate::service::status::internal(&format!("reading the {} log", S::NOUN), e))?
        .map_err(Status::from)
}

/// Starts a feed from number `from` (0: from the next one published).
pub async fn start<S: Source>(
    source: Arc<S>,
    from: u64,
    shutdown: watch::Receiver<bool>,
    watching: Watching,
) -> Result<Events<S::Event>, Status> {
    let live = source.subscribe();
    let mut current = source.published();
    let start = if from == 0 { current + 1 } else { from };
    if start > current + 1 && source.may_trail() {
        // A client that read further on another replica: this one gets
        // there in a moment.
        let waiting = tokio::time::Instant::now();
        while start > current + 1 && waiting.elapsed() < TRAIL_WAIT {
            tokio::time::sleep(Duration::from_millis(10)).await;
            current = source.published();
        }
    }
    if start > current + 1 {
        // Waiting would skip the numbers in between without a word; a client
        // this far ahead resumes against a server that lost history (a restore).
        return Err(crate::Error::OutOfRange {
            field: S::FIELD.into(),
            message: format!(
                "{} {start} is beyond the next one, {}; the latest is {current}",
                S::NOUN,
                current + 1
            ),
        }
        .into());
    }
    if start <= current {
        match blocking(&source, |s| s.oldest()).await? {
            Some(oldest) if oldest <= start => {}
            Some(oldest) => return Err(out_of_range::<S>(start, oldest)),
            None => return Err(out_of_range::<S>(start, current + 1)),
        }
    }
    let (sender, receiver) = mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(
        Feed {
            source,
            sender,
            shutdown,
            watching,
        }
        .run(start, live),
    );
    Ok(ReceiverStream::new(receiver))
}

struct Feed<S: Source> {
    source: Arc<S>,
    sender: mpsc::Sender<Result<S::Event, Status>>,
    shutdown: watch::Receiver<bool>,
    watching: Watching,
}

/// Why a feed stops.
enum Stop {
    /// The client went away.
    Gone,
    /// End the stream with this status.
    With(Status),
}

impl<S: Source> Feed<S> {
    async fn run(mut self, start: u64, mut live: broadcast::Receiver<Arc<S::Item>>) {
        let mut next = start;
        let stop = loop {
            if let Err(stop) = self.catch_up(&mut next).await {
                break stop;
            }
            let shutting_down = async {
                let _ = self.shutdown.wait_for(|stop| *stop).await;
            };
            tokio::select! {
                _ = shutting_down => break Stop::With(unavailable::<S>(next)),
                _ = self.watching.closed() => break Stop::With(made_room::<S>(next)),
                _ = self.sender.closed() => break Stop::Gone,
                received = live.recv() => match received {
                    Ok(item) if S::span(&item).1 < next => {}
                    Ok(item) if S::span(&item).0 <= next => {
                        if let Err(stop) = self.send(&item, next).await {
                            break stop;
                        }
                        next = S::span(&item).1 + 1;
                    }
                    // A gap or a lag: the log has what was missed.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break Stop::With(unavailable::<S>(next)),
                },
            }
        };
        if let Stop::With(status) = stop {
            // A client that stopped reading gets a short grace, not a hold on shutdown.
            let _ = tokio::time::timeout(FINAL_STATUS_GRACE, self.sender.send(Err(status))).await;
        }
    }

    /// Sends every durable item from `next` on, from the log.
    async fn catch_up(&mut self, next: &mut u64) -> Result<(), Stop> {
        loop {
            let published = self.source.published();
            if *next > published {
                return Ok(());
            }
            let from = *next;
            let items = blocking(&self.source, move |s| s.read(from, LOG_CHUNK))
                .await
                .map_err(Stop::With)?;
            let first = items.first().map(|item| S::span(item));
            if !first.is_some_and(|(a, b)| a <= *next && *next <= b) {
                // Compacted while this feed was behind.
                let oldest = first.map_or(published + 1, |(a, _)| a);
                return Err(Stop::With(out_of_range::<S>(*next, oldest)));
            }
            for item in items.iter().take_while(|item| S::span(item).1 <= published) {
                self.send(item, *next).await?;
                *next = S::span(item).1 + 1;
            }
        }
    }

    /// Sends the numbers of `item` from `from` on.
    async fn send(&mut self, item: &S::Item, from: u64) -> Result<(), Stop> {
        for (number, event) in self.source.events(item, from) {
            tokio::select! {
                sent = self.sender.send(Ok(event)) => sent.map_err(|_| Stop::Gone)?,
                _ = self.shutdown.wait_for(|stop| *stop) => return Err(Stop::With(unavailable::<S>(number))),
                // A client that stopped reading is as idle as a quiet one.
                _ = self.watching.closed() => return Err(Stop::With(made_room::<S>(number))),
            }
            self.watching.sent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Numbers 1, 2, 3, ... each an item of its own, published as `at`
    /// says: a log this node holds up to `at`.
    struct Counting {
        at: AtomicU64,
        trails: bool,
        live: broadcast::Sender<Arc<u64>>,
    }

    impl Source for Counting {
        type Item = u64;
        type Event = u64;
        const FIELD: &'static str = "from";
        const NOUN: &'static str = "number";

        fn subscribe(&self) -> broadcast::Receiver<Arc<u64>> {
            self.live.subscribe()
        }
        fn published(&self) -> u64 {
            self.at.load(Ordering::Acquire)
        }
        fn span(item: &u64) -> (u64, u64) {
            (*item, *item)
        }
        fn read(&self, from: u64, limit: usize) -> crate::Result<Vec<Arc<u64>>> {
            let to = self.published().min(from + limit as u64 - 1);
            Ok((from..=to).map(Arc::new).collect())
        }
        fn oldest(&self) -> crate::Result<Option<u64>> {
            Ok(Some(1))
        }
        fn events(&self, item: &u64, from: u64) -> Vec<(u64, u64)> {
            (*item >= from).then_some((*item, *item)).into_iter().collect()
        }
        fn may_trail(&self) -> bool {
            self.trails
        }
    }

    async fn watching() -> Watching {
        Watchers::new(1, 1, Duration::from_secs(60), Arc::new(Metrics::new()))
            .admit("test", "a client")
            .await
            .unwrap()
    }

    /// A client resuming at 6 on a node that holds 4: a replica, which
    /// gets there in a moment, waits for it and then streams from 6; a
    /// single server, which never will, says the number is out of range.
    #[tokio::test]
    async fn a_resume_past_what_a_replica_holds_waits_for_it() {
        let (stop_tx, stop) = watch::channel(false);
        for trails in [true, false] {
            let source = Arc::new(Counting {
                at: AtomicU64::new(4),
                trails,
                live: broadcast::channel(16).0,
            });
            let catching_up = source.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                catching_up.at.store(7, Ordering::Release);
                for n in 5..=7 {
                    let _ = catching_up.live.send(Arc::new(n));
                }
            });
            let started = start(source, 6, stop.clone(), watching().await).await;
            if trails {
                let mut events = started.expect("a replica waits to reach 6");
                use tokio_stream::StreamExt;
                assert_eq!(events.next().await.unwrap().unwrap(), 6);
                assert_eq!(events.next().await.unwrap().unwrap(), 7);
            } else {
                match started {
                    Err(refused) => assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}"),
                    Ok(_) => panic!("a single server refuses"),
                }
            }
        }
        drop(stop_tx);
    }
}
