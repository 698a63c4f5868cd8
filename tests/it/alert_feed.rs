//! `WatchAlerts` over a real socket: resuming by sequence after a disconnect
//! and after a restart, a hundred subscribers with their own filters, a
//! subscriber that never reads, and the status that ends a stream at
//! shutdown.

use std::time::Duration;

use tonic::{Code, Streaming};

use crate::{
    alerts::{alerts_client, apply, listed, settle, Alerts},
    common::*,
};

/// `n` clusters `k0`, `k1`, ... of four firms each, chained by cooperation.
fn clusters(n: usize) -> Vec<pb::Change> {
    let mut changes = Vec::new();
    for c in 0..n {
        changes.push(upsert_cluster(cluster(&format!("k{c}"), vec![])));
        for i in 1..=4 {
            changes.push(upsert_actor(actor(&format!("k{c}-{i}"), &[&format!("k{c}")])));
        }
        for i in 1..4 {
            changes.push(upsert_link(link(
                &format!("k{c}-{i}"),
                &format!("k{c}-{}", i + 1),
                pb::LinkKind::Cooperation,
            )));
        }
    }
    changes
}

/// An investment from cluster `a`'s first firm to cluster `b`'s: one
/// CROSS_INVESTMENT_ADDED alert about the pair, however batches coalesce.
fn invest(a: usize, b: usize) -> pb::Change {
    upsert_link(link(&format!("k{a}-1"), &format!("k{b}-1"), pb::LinkKind::Investment))
}

async fn start(n: usize) -> (tempfile::TempDir, TestServer, Alerts) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = alerts_client(&server).await;
    let revision = apply(&server, clusters(n)).await;
    settle(&mut client, revision).await;
    (dir, server, client)
}

async fn watch(client: &mut Alerts, request: pb::WatchAlertsRequest) -> Streaming<pb::WatchAlertsResponse> {
    client.watch_alerts(request).await.unwrap().into_inner()
}

/// The next `n` alerts of a stream.
async fn take(stream: &mut Streaming<pb::WatchAlertsResponse>, n: usize) -> Vec<pb::Alert> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("an alert within 30 s")
            .unwrap()
            .expect("the stream is open");
        out.push(next.alert.expect("every response carries an alert"));
    }
    out
}

/// Nothing more arrives for a while.
async fn nothing_more(stream: &mut Streaming<pb::WatchAlertsResponse>) {
    if let Ok(next) = tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
        panic!("unexpected: {next:?}");
    }
}

async fn everything(client: &mut Alerts) -> Vec<pb::Alert> {
    listed(client, pb::ListAlertsRequest::default()).await
}

fn sequences(alerts: &[pb::Alert]) -> Vec<u64> {
    alerts.iter().map(|a| a.sequence).collect()
}

#[tokio::test]
async fn resuming_by_sequence_after_a_disconnect_and_a_restart_misses_and_repeats_nothing() {
    let (dir, server, mut client) = start(6).await;
    let mut stream = watch(&mut client, pb::WatchAlertsRequest::default()).await;
    let mut seen = Vec::new();
    for b in 1..6 {
        apply(&server, vec![invest(0, b)]).await;
    }
    seen.extend(take(&mut stream, 3).await);
    drop(stream);

    // Disconnected: alerts keep coming.
    for b in 0..6 {
        if b != 1 {
            apply(&server, vec![invest(1, b)]).await;
        }
    }
    let resume = seen.last().unwrap().sequence + 1;
    let mut stream = watch(
        &mut client,
        pb::WatchAlertsRequest {
            from_sequence: resume,
            ..Default::default()
        },
    )
    .await;
    seen.extend(take(&mut stream, 4).await);
    drop(stream);

    // Restarted in between.
    for b in [0, 1, 3] {
        apply(&server, vec![invest(2, b)]).await;
    }
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let mut client = alerts_client(&server).await;
    let revision = apply(&server, vec![invest(2, 4), invest(2, 5)]).await;
    settle(&mut client, revision).await;
    let all = everything(&mut client).await;
    let resume = seen.last().unwrap().sequence + 1;
    let mut stream = watch(
        &mut client,
        pb::WatchAlertsRequest {
            from_sequence: resume,
            ..Default::default()
        },
    )
    .await;
    let rest = all.len() - seen.len();
    seen.extend(take(&mut stream, rest).await);
    nothing_more(&mut stream).await;

    assert_eq!(sequences(&seen), (1..=all.len() as u64).collect::<Vec<_>>());
    assert_eq!(seen, all, "the stream and the listing agree");
    let invested = all
        .iter()
        .filter(|a| a.kind == pb::AlertKind::CrossInvestmentAdded as i32)
        .count();
    assert_eq!(invested, 5 + 5 + 5, "one per new pair: {all:?}");
    server.stop().await;
}

#[tokio::test]
async fn resuming_past_the_next_sequence_is_out_of_range_and_shutdown_names_where_to_resume() {
    let (_dir, server, mut client) = start(3).await;
    let revision = apply(&server, vec![invest(0, 1)]).await;
    settle(&mut client, revision).await;
    let latest = everything(&mut client).await.len() as u64;
    let ahead = client
        .watch_alerts(pb::WatchAlertsRequest {
            from_sequence: latest + 2,
            ..Default::default()
        })
        .await;
    assert_status(ahead, Code::OutOfRange, "from_sequence");
    let bad = client
        .watch_alerts(pb::WatchAlertsRequest {
            kinds: vec![0],
            ..Default::default()
        })
        .await;
    assert_status(bad, Code::InvalidArgument, "kinds[0]");

    let mut stream = watch(
        &mut client,
        pb::WatchAlertsRequest {
            from_sequence: 1,
            ..Default::default()
        },
    )
    .await;
    take(&mut stream, latest as usize).await;
    server.stop().await;
    let status = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ends")
        .expect_err("with a status");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains(&format!("from_sequence {}", latest + 1)),
        "{}",
        status.message()
    );
}

/// The test's own reading of a subscription, to check the server's.
fn wants(request: &pb::WatchAlertsRequest, alert: &pb::Alert) -> bool {
    (request.kinds.is_empty() || request.kinds.contains(&alert.kind))
        && (request.cluster_ids.is_empty() || alert.cluster_ids.iter().any(|c| request.cluster_ids.contains(c)))
        && (request.actor_ids.is_empty() || alert.actor_ids.iter().any(|a| request.actor_ids.contains(a)))
        && alert.severity >= request.min_severity
}

#[tokio::test]
async fn a_hundred_subscribers_with_their_own_filters_each_get_exactly_their_alerts() {
    let (_dir, server, mut client) = start(10).await;
    let requests: Vec<pb::WatchAlertsRequest> = (0..100)
        .map(|i| pb::WatchAlertsRequest {
            kinds: match i % 3 {
                0 => vec![pb::AlertKind::CrossInvestmentAdded as i32],
                1 => vec![
                    pb::AlertKind::ClusterFragmented as i32,
                    pb::AlertKind::StageChanged as i32,
                ],
                _ => vec![],
            },
            cluster_ids: if i % 2 == 0 {
                vec![format!("k{}", i % 10)]
            } else {
                vec![]
            },
            actor_ids: if i % 7 == 0 {
                vec![format!("k{}-1", (i + 1) % 10)]
            } else {
                vec![]
            },
            min_severity: if i % 5 == 0 { pb::Severity::Warning as i32 } else { 0 },
            // Half follow live from before the batches, half replay after.
            from_sequence: 0,
        })
        .collect();
    let first = everything(&mut client).await.len() as u64 + 1;
    let mut live = Vec::new();
    for request in requests.iter().step_by(2) {
        live.push((request.clone(), watch(&mut client, request.clone()).await));
    }

    // Investments around the ring and cuts in every other chain: kinds,
    // clusters, actors and severities vary.
    let mut revision = 0;
    for c in 0..10 {
        revision = apply(&server, vec![invest(c, (c + 1) % 10), invest(c, (c + 3) % 10)]).await;
        if c % 2 == 0 {
            let cut = pb::Change {
                change: Some(pb::change::Change::DeleteLink(pb::LinkKey {
                    source: format!("k{c}-2"),
                    target: format!("k{c}-3"),
                    kind: pb::LinkKind::Cooperation as i32,
                })),
            };
            revision = apply(&server, vec![cut]).await;
        }
    }
    settle(&mut client, revision).await;
    let all: Vec<pb::Alert> = everything(&mut client)
        .await
        .into_iter()
        .filter(|a| a.sequence >= first)
        .collect();
    assert!(
        all.iter().any(|a| a.kind == pb::AlertKind::ClusterFragmented as i32)
            && all.iter().any(|a| a.kind == pb::AlertKind::CrossInvestmentAdded as i32),
        "{all:?}"
    );
    let mut replaying = Vec::new();
    for request in requests.iter().skip(1).step_by(2) {
        let from_start = pb::WatchAlertsRequest {
            from_sequence: first,
            ..request.clone()
        };
        replaying.push((request.clone(), watch(&mut client, from_start).await));
    }

    let checks = live.into_iter().chain(replaying).map(|(request, mut stream)| {
        let expected: Vec<pb::Alert> = all.iter().filter(|a| wants(&request, a)).cloned().collect();
        tokio::spawn(async move {
            let got = take(&mut stream, expected.len()).await;
            assert_eq!(sequences(&got), sequences(&expected), "{request:?}");
            nothing_more(&mut stream).await;
            expected.len()
        })
    });
    let mut delivered = 0;
    let mut empty = 0;
    for check in checks.collect::<Vec<_>>() {
        let n = check.await.unwrap();
        delivered += n;
        empty += usize::from(n == 0);
    }
    assert!(delivered > 100, "the filters let a fair number through: {delivered}");
    assert!(empty < 50, "most subscribers get something: {empty} got nothing");
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_hold_up_writes_and_later_gets_every_alert() {
    let (_dir, server, mut client) = start(30).await;
    let first = everything(&mut client).await.len() as u64 + 1;
    let mut stalled = watch(
        &mut client,
        pb::WatchAlertsRequest {
            kinds: vec![pb::AlertKind::CrossInvestmentAdded as i32],
            ..Default::default()
        },
    )
    .await;
    // One new pair per batch: 435 alerts, far more than the stream's buffers
    // hold while nobody reads.
    let mut revision = 0;
    let mut pairs = 0;
    for a in 0..30 {
        for b in (a + 1)..30 {
            revision = apply(&server, vec![invest(a, b)]).await;
            pairs += 1;
        }
    }
    // Every write above was acknowledged while the subscriber read nothing.
    settle(&mut client, revision).await;
    let expected: Vec<u64> = sequences(
        &listed(
            &mut client,
            pb::ListAlertsRequest {
                kinds: vec![pb::AlertKind::CrossInvestmentAdded as i32],
                from_sequence: first,
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(expected.len(), pairs);
    let got = take(&mut stalled, pairs).await;
    assert_eq!(sequences(&got), expected, "no gap and no duplicate");
    nothing_more(&mut stalled).await;
    server.stop().await;
}
