//! The change feed behind `WatchChanges`: applied batches by revision, read
//! from the store's change log, then live as the writer publishes them (see
//! [`feed`](crate::service::runtime::feed) for the guarantees).

use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tonic::Status;

use crate::service::{
    convert::change_to_pb,
    pb,
    runtime::feed::{self, Events, Source},
};
use crate::store::{Committed, Store};

struct Changes {
    store: Arc<Store>,
}

impl Source for Changes {
    type Item = Committed;
    type Event = pb::WatchChangesResponse;
    const FIELD: &'static str = "from_revision";
    const NOUN: &'static str = "revision";

    fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.store.subscribe()
    }

    fn published(&self) -> u64 {
        self.store.snapshot().revision
    }

    fn may_trail(&self) -> bool {
        self.store.replication().is_some()
    }

    fn span(item: &Committed) -> (u64, u64) {
        (item.revision, item.revision)
    }

    fn read(&self, from: u64, limit: usize) -> crate::Result<Vec<Arc<Committed>>> {
        Ok(self
            .store
            .log()
            .read(from, limit)?
            .into_iter()
            .map(|(revision, changes)| Arc::new(Committed { revision, changes }))
            .collect())
    }

    fn oldest(&self) -> crate::Result<Option<u64>> {
        self.store.log().oldest()
    }

    fn events(&self, item: &Committed, _from: u64) -> Vec<(u64, pb::WatchChangesResponse)> {
        let event = pb::WatchChangesResponse {
            revision: item.revision,
            changes: item.changes.iter().map(change_to_pb).collect(),
        };
        vec![(item.revision, event)]
    }
}

/// Starts a watcher from `from_revision` (0: from the next revision).
pub async fn watch_changes(
    store: Arc<Store>,
    from_revision: u64,
    shutdown: watch::Receiver<bool>,
    watching: feed::Watching,
) -> Result<Events<pb::WatchChangesResponse>, Status> {
    feed::start(Arc::new(Changes { store }), from_revision, shutdown, watching).await
}
