//! WatchChanges over a real socket: history then live, retention, slow
//! watchers, shutdown.

use std::time::Duration;

use clusternet::store::StoreConfig;
use tonic::{Code, Streaming};

use crate::common::*;

/// One batch that adds actor `id` (in no cluster).
fn add(id: &str) -> pb::ApplyChangesRequest {
    batch(vec![upsert_actor(actor(id, &[]))])
}

fn actor_of(event: &pb::WatchChangesResponse) -> &str {
    match &event.changes[0].change {
        Some(pb::change::Change::UpsertActor(a)) => &a.id,
        other => panic!("unexpected change {other:?}"),
    }
}

async fn next(stream: &mut Streaming<pb::WatchChangesResponse>) -> pb::WatchChangesResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .expect("the stream goes on")
}

async fn watch(server: &TestServer, from_revision: u64) -> Result<Streaming<pb::WatchChangesResponse>, tonic::Status> {
    let mut client = server.client().await;
    client
        .watch_changes(pb::WatchChangesRequest { from_revision })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_watcher_gets_the_history_then_the_live_batches_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    for id in ["a", "b", "c"] {
        client.apply_changes(add(id)).await.unwrap();
    }
    let mut from_two = watch(&server, 2).await.unwrap();
    let mut from_now = watch(&server, 0).await.unwrap();
    for (revision, id) in [(2, "b"), (3, "c")] {
        let event = next(&mut from_two).await;
        assert_eq!((event.revision, actor_of(&event)), (revision, id));
    }
    // A revision past the next one would silently skip those in between.
    assert_status(
        watch(&server, 5).await,
        Code::OutOfRange,
        "from_revision: revision 5 is beyond the next one, 4",
    );
    let reply = client.apply_changes(add("d")).await.unwrap().into_inner();
    assert_eq!(reply.revision, 4);
    for stream in [&mut from_two, &mut from_now] {
        let event = next(stream).await;
        assert_eq!(
            (event.revision, actor_of(&event)),
            (4, "d"),
            "live, and only from now on"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_revision_compacted_away_is_out_of_range_naming_the_oldest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        history_revisions: Some(3),
        checkpoint_min_changes: 1,
        ..StoreConfig::default()
    };
    let server = TestServer::start_with(dir.path(), config).await;
    let mut client = server.client().await;
    // One actor renamed twenty times: the log soon outgrows the network, so
    // checkpoints (and compaction with them) come often.
    for n in 0..20 {
        let renamed = pb::Actor {
            name: format!("name {n}"),
            ..actor("a", &[])
        };
        client.apply_changes(batch(vec![upsert_actor(renamed)])).await.unwrap();
    }
    // The writer compacts after it replies. A batch the writer refuses (its
    // actor names a cluster that does not exist) is handled after that
    // compaction and, adding no changes, starts no other: from its reply on,
    // the oldest revision kept stays put.
    let barrier = client
        .apply_changes(batch(vec![upsert_actor(actor("b", &["no-such-cluster"]))]))
        .await;
    assert!(barrier.is_err(), "{barrier:?}");
    let status = watch(&server, 1).await.expect_err("revision 1 is compacted");
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
    let oldest: u64 = status
        .message()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("names the oldest kept: {}", status.message()));
    assert!(oldest > 1 && oldest <= 18, "keeps at least the last 3: {oldest}");
    assert_status(watch(&server, oldest - 1).await, Code::OutOfRange, "from_revision");
    assert!(status.message().contains("from_revision"));
    // From the oldest kept on, every batch arrives, without a gap.
    let mut stream = watch(&server, oldest).await.unwrap();
    for revision in oldest..=20 {
        assert_eq!(next(&mut stream).await.revision, revision);
    }
    // What a kept graph is patched from: not there for compacted batches.
    let store = server.store();
    assert!(store.changes_between(0, 20, 1_000).is_none(), "revision 1 is compacted");
    assert_eq!(
        store.changes_between(oldest - 1, 20, 1_000).map(|c| c.len()),
        Some((21 - oldest) as usize)
    );
    server.stop().await;
}

/// The changes between two revisions come back from the log in order, and
/// not at all past the number asked for (in changes, or in batches).
#[tokio::test]
async fn the_changes_between_two_revisions_are_read_back_in_order_up_to_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    client
        .apply_changes(batch(vec![
            upsert_actor(actor("a", &[])),
            upsert_actor(actor("b", &[])),
        ]))
        .await
        .unwrap();
    client.apply_changes(add("c")).await.unwrap();
    client.apply_changes(add("d")).await.unwrap();
    let store = server.store();
    let ids = |changes: Vec<clusternet::model::Change>| -> Vec<String> {
        changes
            .into_iter()
            .map(|c| match c {
                clusternet::model::Change::UpsertActor(a) => a.id.to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    };
    assert_eq!(
        store.changes_between(0, 3, 4).map(ids),
        Some(vec!["a".into(), "b".into(), "c".into(), "d".into()])
    );
    assert_eq!(store.changes_between(1, 2, 4).map(ids), Some(vec!["c".to_string()]));
    assert!(store.changes_between(0, 3, 3).is_none(), "four changes, three wanted");
    assert!(
        store.changes_between(0, 3, 2).is_none(),
        "three batches, two changes wanted"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_watcher_that_never_reads_does_not_hold_up_writers_and_later_catches_up_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let mut stalled = watch(&server, 0).await.unwrap();
    // More batches than the live buffer and the client buffer together.
    let total = 1500;
    // Every write is acknowledged while the watcher has read nothing. (The
    // timeout only turns a writer stuck behind the watcher into a failure
    // instead of a hang.)
    let writes = async {
        for n in 0..total {
            client.apply_changes(add(&format!("a{n:04}"))).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(300), writes)
        .await
        .expect("writers were held up by a watcher that does not read");
    assert_eq!(server.store().snapshot().revision, total);
    for revision in 1..=total {
        assert_eq!(next(&mut stalled).await.revision, revision, "no gap, no duplicate");
    }
    server.stop().await;
}

#[tokio::test]
async fn watchers_end_with_unavailable_and_the_revision_to_resume_from_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.client().await.apply_changes(add("a")).await.unwrap();
    let mut stream = watch(&server, 1).await.unwrap();
    assert_eq!(next(&mut stream).await.revision, 1);
    let stopping = tokio::spawn(server.stop());
    let status = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ends promptly")
        .expect_err("with a status");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("from_revision 2"), "{}", status.message());
    stopping.await.unwrap();
}

#[tokio::test]
async fn the_history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    for id in ["a", "b", "c"] {
        client.apply_changes(add(id)).await.unwrap();
    }
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let mut stream = watch(&server, 1).await.unwrap();
    for (revision, id) in [(1, "a"), (2, "b"), (3, "c")] {
        let event = next(&mut stream).await;
        assert_eq!((event.revision, actor_of(&event)), (revision, id));
    }
    server.stop().await;
}
