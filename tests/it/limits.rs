//! Limits on every axis, over a real socket: the analysis queue and memory
//! budget, watches, connections and streams per connection; the rich error
//! details a program reads instead of the message; and the metrics that
//! count all of it.

use std::time::Duration;

use clusternet::service::{
    metrics::{serve_metrics, Metrics},
    pb::analysis_service_client::AnalysisServiceClient,
    runtime::{admission::AnalysisLimits, connections::ConnectionLimits},
    server::ServerConfig,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    analysis::{degree_request, load_large, slow_request},
    common::*,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyses_past_the_slots_wait_in_a_bounded_queue_until_their_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        analyses: AnalysisLimits {
            max_running: 1,
            max_queued: 1,
            ..AnalysisLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(dir.path(), Default::default(), config).await;
    load_large(&server).await;
    let mut client = AnalysisServiceClient::new(server.channel().await);
    // The one slot is taken...
    let running = client.centrality(slow_request()).await.unwrap().into_inner();

    // ...so the next call waits, here until its deadline.
    let mut queued = client.clone();
    let waiting = tokio::spawn(async move {
        let mut request = tonic::Request::new(degree_request());
        request.set_timeout(Duration::from_millis(1_500));
        queued.centrality(request).await.map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The queue holds one: the third call is refused with a retry delay.
    let refused = client.centrality(degree_request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    assert!(refused.message().contains("--analysis-queue"), "{refused}");
    let retry = refused.get_details_retry_info().expect("RetryInfo");
    assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO));

    let expired = waiting.await.unwrap().unwrap_err();
    assert!(
        matches!(expired.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{expired}"
    );

    // The server drops the expired call a moment after the client gives up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A queued call with time to wait runs once the slot frees.
    let mut queued = client.clone();
    let waiting = tokio::spawn(async move { queued.centrality(degree_request()).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(running);
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the queued call ran")
        .unwrap()
        .expect("and succeeded");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysis_estimated_past_the_memory_budget_is_refused_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        analyses: AnalysisLimits {
            memory_bytes: 2 << 20,
            ..AnalysisLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(dir.path(), Default::default(), config).await;
    let mut client = AnalysisServiceClient::new(server.channel().await);
    // An empty store fits.
    client
        .centrality(degree_request())
        .await
        .expect("a small analysis runs");
    load_large(&server).await;
    for request in [degree_request(), slow_request()] {
        let refused = client.centrality(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
        assert!(refused.message().contains("--analysis-memory-mb"), "{refused}");
        assert!(refused.message().contains("MiB"), "{refused}");
    }
    let refused = client
        .assess_stage(pb::AssessStageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_past_the_limit_are_refused_and_a_closed_one_frees_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        max_subscribers: 2,
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(dir.path(), Default::default(), config).await;
    let mut client = server.client().await;
    let first = client
        .watch_changes(pb::WatchChangesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let _second = client.watch_changes(pb::WatchChangesRequest::default()).await.unwrap();
    let refused = client
        .watch_changes(pb::WatchChangesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    assert!(refused.message().contains("--max-subscribers"), "{refused}");
    assert!(refused.get_details_retry_info().is_some());

    drop(first);
    let mut tries = 0;
    while client.watch_changes(pb::WatchChangesRequest::default()).await.is_err() {
        tries += 1;
        assert!(tries < 100, "the closed watch kept its place");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_the_limit_is_closed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = std::sync::Arc::new(Metrics::new());
    let config = ServerConfig {
        connections: ConnectionLimits {
            max: 2,
            ..ConnectionLimits::default()
        },
        metrics: metrics.clone(),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(dir.path(), Default::default(), config).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = server.client().await;
        client.list_actors(pb::ListActorsRequest::default()).await.unwrap();
        held.push(client);
    }
    let third = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await;
    let refused = match third {
        Err(_) => true,
        Ok(channel) => pb::network_service_client::NetworkServiceClient::new(channel)
            .list_actors(pb::ListActorsRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a third connection was served");
    let text = metrics.render(server.store(), None);
    assert!(text.contains("clusternet_connections 2"), "{text}");
    let refused: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("clusternet_connections_refused_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // The client may have tried more than once.
    assert!(refused >= 1, "{text}");

    // A closed connection frees its place.
    held.pop();
    let mut tries = 0;
    loop {
        let mut client = server.client().await;
        if client.list_actors(pb::ListActorsRequest::default()).await.is_ok() {
            break;
        }
        tries += 1;
        assert!(tries < 100, "the closed connection kept its place");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_streams_per_connection_wait_for_one_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        max_streams_per_connection: 2,
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(dir.path(), Default::default(), config).await;
    let client = server.client().await;
    // Settle the connection's settings first.
    client
        .clone()
        .list_actors(pb::ListActorsRequest::default())
        .await
        .unwrap();
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(
            client
                .clone()
                .watch_changes(pb::WatchChangesRequest::default())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let mut third = client.clone();
    let call = tokio::spawn(async move { third.list_actors(pb::ListActorsRequest::default()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "a third stream ran beside two on one connection");
    open.pop();
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the waiting call ran once a stream ended")
        .unwrap()
        .expect("and succeeded");
    server.stop().await;
}

#[tokio::test]
async fn errors_carry_rich_details_a_program_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;

    let bad = client
        .apply_changes(batch(vec![upsert_link(pb::Link {
            weight: -1.0,
            ..link("a", "b", pb::LinkKind::Supply)
        })]))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let violations = bad.get_details_bad_request().expect("BadRequest").field_violations;
    assert_eq!(violations[0].field, "changes[0].upsert_link.weight");
    assert!(violations[0].description.contains("finite number"), "{violations:?}");

    let missing = client
        .get_actor(pb::GetActorRequest { id: "nobody".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let resource = missing.get_details_resource_info().expect("ResourceInfo");
    assert_eq!(
        (resource.resource_type.as_str(), resource.resource_name.as_str()),
        ("actor", "nobody")
    );

    let dangling = client
        .apply_changes(batch(vec![upsert_link(link("a", "b", pb::LinkKind::Supply))]))
        .await
        .unwrap_err();
    assert_eq!(dangling.code(), Code::FailedPrecondition);
    let failure = dangling
        .get_details_precondition_failure()
        .expect("PreconditionFailure");
    assert!(
        failure.violations[0].subject.starts_with("changes[0].upsert_link"),
        "{failure:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_metrics_endpoint_counts_calls_by_method_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = std::sync::Arc::new(Metrics::new());
    let config = ServerConfig {
        metrics: metrics.clone(),
        ..ServerConfig::default()
    };
    let server = TestServer::start_demo(dir.path(), config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let exposing = tokio::spawn(serve_metrics(listener, metrics.clone(), server.shared_store(), None));

    let mut client = server.client().await;
    client.list_actors(pb::ListActorsRequest::default()).await.unwrap();
    let _ = client.get_actor(pb::GetActorRequest { id: "nobody".into() }).await;
    let mut analysis = AnalysisServiceClient::new(server.channel().await);
    let mut stream = analysis.centrality(degree_request()).await.unwrap().into_inner();
    while stream.message().await.unwrap().is_some() {}
    // The last call is recorded when its stream ends, just after the client
    // has read it.
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Paths nobody serves are counted under one label, however many a
    // client makes up.
    for n in 0..3 {
        let mut grpc = tonic::client::Grpc::new(server.channel().await);
        grpc.ready().await.unwrap();
        let path = format!("/made.Up/Method{n}").parse().unwrap();
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let answer = grpc.unary(tonic::Request::new(()), path, codec).await;
        assert_eq!(answer.unwrap_err().code(), Code::Unimplemented);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = http_get(address, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(!text.contains("made.Up"), "{text}");
    for expected in [
        r#"clusternet_calls_total{code="Ok",method="clusternet.v1.NetworkService/ListActors"} 1"#,
        r#"clusternet_calls_total{code="NotFound",method="clusternet.v1.NetworkService/GetActor"} 1"#,
        r#"clusternet_calls_total{code="Ok",method="clusternet.v1.AnalysisService/Centrality"} 1"#,
        r#"clusternet_analyses_total{kind="Centrality",outcome="ok"} 1"#,
        r#"clusternet_calls_total{code="Unimplemented",method="unknown"} 3"#,
        "clusternet_call_duration_seconds_bucket",
        "clusternet_write_group_batches_count",
        "clusternet_flush_duration_seconds_count",
        "clusternet_revision ",
        "clusternet_resident_memory_bytes ",
        "clusternet_connections ",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(http_get(address, "/other").await.starts_with("HTTP/1.1 404"));
    exposing.abort();
    server.stop().await;
}

pub async fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    socket.read_to_string(&mut reply).await.unwrap();
    reply
}

/// A server whose connections must begin their handshake within 1 s, and
/// are pinged every second.
async fn guarded(dir: &std::path::Path, metrics: std::sync::Arc<Metrics>) -> TestServer {
    let config = ServerConfig {
        connections: ConnectionLimits {
            handshake: Duration::from_secs(1),
            idle: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(1),
            ..ConnectionLimits::default()
        },
        metrics,
        ..ServerConfig::default()
    };
    TestServer::start_configured(dir, Default::default(), config).await
}

fn closed_for(metrics: &Metrics, server: &TestServer, reason: &str) -> u64 {
    let text = metrics.render(server.store(), None);
    let line = format!("clusternet_connections_closed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_silent_connections_lock_no_one_out_for_longer_than_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = std::sync::Arc::new(Metrics::new());
    let server = guarded(dir.path(), metrics.clone()).await;
    let address = server.url().trim_start_matches("http://").to_string();
    let mut silent = Vec::new();
    for _ in 0..1_100 {
        silent.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    // A real client, retrying as clients do, gets in once the silent
    // sockets' second is up: they send nothing, so they are closed.
    let started = std::time::Instant::now();
    let served = loop {
        let attempt = async {
            let channel = tonic::transport::Channel::from_shared(server.url())
                .ok()?
                .connect()
                .await
                .ok()?;
            pb::network_service_client::NetworkServiceClient::new(channel)
                .list_clusters(pb::ListClustersRequest::default())
                .await
                .ok()
        };
        if attempt.await.is_some() {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no call served while silent sockets were open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(served < Duration::from_secs(10), "{served:?}");
    // Each silent socket was refused at once (its address's share was
    // full) or let in and closed for saying nothing. The real client can
    // get in while the last of them are still being closed, so their count
    // is awaited (within a handshake timeout and some) rather than read once.
    let counted = || {
        (
            closed_for(&metrics, &server, "peer_limit"),
            closed_for(&metrics, &server, "handshake_timeout"),
        )
    };
    let settled = std::time::Instant::now();
    while counted().0 + counted().1 < 1_000 && settled.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (refused, timed_out) = counted();
    assert!(refused > 0 && timed_out > 0, "{refused} refused, {timed_out} timed out");
    assert!(refused + timed_out >= 1_000, "{refused} refused, {timed_out} timed out");
    drop(silent);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stuck_half_way_through_its_header_block_is_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let metrics = std::sync::Arc::new(Metrics::new());
    let server = guarded(dir.path(), metrics.clone()).await;
    let address = server.url().trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    // The preface, an empty SETTINGS frame, and a HEADERS frame on stream 1
    // announcing 64 bytes without END_HEADERS, of which 5 are sent.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    hello.extend([0, 0, 64, 1, 0, 0, 0, 0, 1]);
    hello.extend([0x82, 0x86, 0x84, 0x41, 0x8a]);
    socket.write_all(&hello).await.unwrap();
    // The server's settings and pings come; this client answers nothing,
    // and the server closes the connection.
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stuck connection was not closed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_bad_field_name_and_ids_no_entity_can_have_are_invalid_arguments_with_small_details() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut analysis = AnalysisServiceClient::new(server.channel().await);
    // A 3 MB overrides key: INVALID_ARGUMENT, its details small enough for
    // any client's metadata limit.
    let key = "k".repeat(3 << 20);
    let bad = analysis
        .assess_stage(pb::AssessStageRequest {
            overrides: [(key, 0.5)].into_iter().collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{}", bad.message());
    assert!(bad.details().len() < 2_048, "{} bytes of details", bad.details().len());
    assert!(bad.message().len() < 1_100);
    let violation = &bad.get_details_bad_request().expect("BadRequest").field_violations[0];
    assert!(violation.field.starts_with("overrides[kkk") && violation.field.len() < 300);
    // Ids holding NUL, newlines or too many bytes name no entity: reads say
    // so as INVALID_ARGUMENT naming the field, not NOT_FOUND.
    let mut client = server.client().await;
    for id in ["a\0b", "line\nbreak", &"x".repeat(300)] {
        let listed = client
            .list_actors(pb::ListActorsRequest {
                cluster_id: id.to_string(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(listed.code(), Code::InvalidArgument, "{id:?}: {}", listed.message());
        assert!(listed.message().starts_with("cluster_id:"), "{}", listed.message());
        let analysed = analysis
            .assess_stage(pb::AssessStageRequest {
                filter: Some(pb::NetworkFilter {
                    cluster_ids: vec![id.to_string()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(analysed.code(), Code::InvalidArgument, "{id:?}: {}", analysed.message());
        assert!(
            analysed.message().starts_with("filter.cluster_ids[0]:"),
            "{}",
            analysed.message()
        );
    }
    server.stop().await;
}
