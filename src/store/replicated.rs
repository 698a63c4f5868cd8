//! A store as one replica of a shared, ordered log (issue 16; the NATS
//! JetStream log is in `crate::replica`).
//!
//! Validation depends on the state (a link needs its actors), so a node
//! checks a batch against its latest snapshot at revision r and proposes it
//! to the log on the condition that the log still ends at r. If another node
//! wrote first, the condition fails: the node waits until its own replica has
//! the other write, checks again and proposes again, a bounded number of
//! times. Whatever the log accepts comes back to every node, this one too,
//! through [`Store::submit_at`]; the caller is answered once this node has
//! applied its batch, so it reads its own write here.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

use super::{encode_batch, Applied, Sequence, Snapshot, Store};
use crate::{
    error::{Error, Result},
    model::Change,
};

/// What a replica reports about its log, for metrics.
#[derive(Debug, Default)]
pub struct ReplicationFigures {
    /// The highest revision the log is known to hold.
    pub log_last: AtomicU64,
    /// Proposals that lost to another node's write and were checked again.
    pub conflicts: AtomicU64,
}

/// Orders batches for every replica: a shared log.
pub trait Sequencer: Send + Sync + 'static {
    /// Appends `payload` (one encoded batch) if the log still ends at
    /// `expected`; the revision it got.
    fn append(
        &self,
        expected: u64,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<u64, PublishRefused>> + Send + '_>>;

    /// The last revision the log holds now.
    fn last(&self) -> Pin<Box<dyn Future<Output = Result<u64>> + Send + '_>>;
}

/// Why the log did not take a batch.
#[derive(Debug)]
pub enum PublishRefused {
    /// The log no longer ends at the revision the batch was checked at.
    Conflict,
    /// The log cannot be reached or refused it for another reason.
    Failed(Error),
}

pub(super) struct Proposal {
    pub changes: Vec<Change>,
    pub sequence: Option<Sequence>,
    pub reply: oneshot::Sender<Result<Applied>>,
}

/// How long a node waits for the write it lost to before it tries again
/// anyway (the log's own delivery is usually milliseconds behind).
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// How long a node waits to apply its own accepted batch before it answers
/// that it has not (it trails the log, or cannot apply it).
const APPLY_WAIT: Duration = Duration::from_secs(30);

/// Proposes this node's batches one at a time, in the order they came: a
/// batch is checked against the state its predecessor left.
///
/// That state is kept from one batch to the next: once the log has taken a
/// batch at r + 1, the network it was checked into is the log's state at
/// r + 1, so the next batch is checked on it and proposed at once, while
/// this node applies the first one from the log (its caller is answered
/// then, by a task of its own). Only a lost race, a refusal, or another
/// node's write applied here sends the check back to the local snapshot.
/// An import through one node so costs a check and a round trip per batch,
/// not also the local apply.
pub(super) async fn propose(
    store: Weak<Store>,
    sequencer: Arc<dyn Sequencer>,
    retries: u32,
    figures: Arc<ReplicationFigures>,
    mut proposals: mpsc::Receiver<Proposal>,
) {
    let mut ahead: Option<Arc<Snapshot>> = None;
    while let Some(proposal) = proposals.recv().await {
        let Some(store) = store.upgrade() else { return };
        let Proposal {
            changes,
            sequence,
            reply,
        } = proposal;
        if sequence.as_ref().is_some_and(Sequence::has_failed) {
            let _ = reply.send(Err(Error::precondition(
                "",
                "not applied: an earlier batch of the same stream failed",
            )));
            continue;
        }
        let outcome = propose_one(&store, sequencer.as_ref(), retries, &figures, changes, &mut ahead).await;
        match outcome {
            Ok((revision, counts)) => {
                // In the log, so on every replica in time; the caller is
                // answered once it is readable here.
                let store = store.clone();
                tokio::spawn(async move {
                    let applied = match tokio::time::timeout(APPLY_WAIT, store.reached(revision)).await {
                        Ok(true) => Ok(Applied { revision, counts }),
                        _ => {
                            if let Some(sequence) = &sequence {
                                sequence.fail();
                            }
                            Err(Error::Unavailable {
                                message: format!(
                                    "the batch is revision {revision} of the shared log, but this node has not applied \
                                     it (it is at {}): read it on another replica",
                                    store.snapshot().revision
                                ),
                            })
                        }
                    };
                    let _ = reply.send(applied);
                });
            }
            Err(error) => {
                if let Some(sequence) = &sequence {
                    sequence.fail();
                }
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// The state to check the next batch against: the network the last batch
/// this node got into the log left (`ahead`), unless this node's own copy
/// has reached or passed it.
fn base(store: &Store, ahead: &Option<Arc<Snapshot>>) -> Arc<Snapshot> {
    let snapshot = store.snapshot();
    match ahead {
        Some(ahead) if ahead.revision > snapshot.revision => ahead.clone(),
        _ => snapshot,
    }
}

async fn propose_one(
    store: &Store,
    sequencer: &dyn Sequencer,
    retries: u32,
    figures: &ReplicationFigures,
    changes: Vec<Change>,
    ahead: &mut Option<Arc<Snapshot>>,
) -> Result<(u64, crate::network::ChangeCounts)> {
    let changes = Arc::new(changes);
    let mut lost_to = Vec::new();
    for attempt in 0..=retries {
        let base = base(store, ahead);
        // The batch against the log's latest state as this node knows it,
        // as the embedded writer would check it: the same errors for the
        // same input.
        let checking = (base.clone(), changes.clone());
        let checked = tokio::task::spawn_blocking(move || {
            let (base, changes) = checking;
            let mut network = base.network.clone();
            network.apply(&changes).map(|counts| (network, counts))
        })
        .await
        .map_err(|_| Error::Unavailable {
            message: "the batch's check was interrupted".into(),
        })?;
        let (network, counts) = match checked {
            Ok(checked) => checked,
            // Refused against this node's copy: refused for good only if the
            // copy is the log's latest (another node's write this one has
            // not applied yet may be what the batch needs).
            Err(error) => match sequencer.last().await {
                Ok(last) if last > base.revision && attempt < retries => {
                    *ahead = None;
                    let _ = tokio::time::timeout(CATCH_UP_WAIT, store.reached(last)).await;
                    continue;
                }
                Ok(_) => return Err(error),
                // Whether the refusal holds at the log's end cannot be
                // known: say that, not the stale copy's verdict.
                Err(unreachable) => return Err(unreachable),
            },
        };
        match sequencer.append(base.revision, encode_batch(&changes)).await {
            Ok(revision) => {
                figures.log_last.fetch_max(revision, Ordering::AcqRel);
                *ahead = Some(Arc::new(Snapshot { revision, network }));
                return Ok((revision, counts));
            }
            Err(PublishRefused::Conflict) => {
                figures.conflicts.fetch_add(1, Ordering::Relaxed);
                lost_to.push(base.revision + 1);
                *ahead = None;
                // Wait for the write that came first, then check again;
                // a little jitter so two nodes do not collide in step.
                let _ = tokio::time::timeout(CATCH_UP_WAIT, store.reached(base.revision + 1)).await;
                let jitter = (std::process::id() as u64 + attempt as u64 * 7) % 5;
                tokio::time::sleep(Duration::from_millis(jitter * (attempt as u64 + 1))).await;
            }
            Err(PublishRefused::Failed(error)) => {
                // It may still land (an ack that timed out): check the next
                // batch against this node's copy once it knows.
                *ahead = None;
                return Err(error);
            }
        }
    }
    Err(Error::Aborted {
        message: format!(
            "another node wrote first {} times (revisions {lost_to:?}); send the batch again",
            lost_to.len()
        ),
    })
}
