//! Bearer tokens with roles, over a real socket: who may call what, made
//! with `clusternet token new` as a user makes them.

use std::{process::Command, sync::Arc};

use clusternet::{
    auth::Tokens,
    service::{
        pb::{alert_service_client::AlertServiceClient, analysis_service_client::AnalysisServiceClient},
        server::ServerConfig,
    },
};
use tonic::{
    metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel, Code, Request, Status,
};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_clusternet");

type Bearer = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;

fn bearer(token: &str) -> Bearer {
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    Box::new(move |mut request: Request<()>| {
        request.metadata_mut().insert("authorization", value.clone());
        Ok(request)
    })
}

fn network(
    channel: &Channel,
    token: &str,
) -> pb::network_service_client::NetworkServiceClient<InterceptedService<Channel, Bearer>> {
    pb::network_service_client::NetworkServiceClient::with_interceptor(channel.clone(), bearer(token))
}

/// Makes a token with the CLI, as a user would; returns it.
fn new_token(file: &std::path::Path, role: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "new", "--role", role, "--tokens"])
        .arg(file)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn delete_cluster(id: &str, cascade: bool) -> pb::Change {
    pb::Change {
        change: Some(pb::change::Change::DeleteCluster(pb::DeleteCluster {
            id: id.into(),
            cascade,
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_is_given_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let (reader, writer, admin) = (
        new_token(&file, "reader"),
        new_token(&file, "writer"),
        new_token(&file, "admin"),
    );
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(
        !stored.contains(&reader) && !stored.contains(&writer) && !stored.contains(&admin),
        "only hashes are stored"
    );
    let config = ServerConfig {
        tokens: Some(Arc::new(Tokens::load(&file).unwrap())),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(&dir.path().join("data"), Default::default(), config).await;
    let channel = server.channel().await;

    // Health stays open.
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await;
    assert!(health.is_ok(), "{health:?}");
    // No token, a malformed header, an unknown token: UNAUTHENTICATED.
    let anonymous = server
        .client()
        .await
        .list_clusters(pb::ListClustersRequest::default())
        .await;
    assert_status(anonymous, Code::Unauthenticated, "authorization: Bearer");
    let unknown = network(&channel, "cn_not-a-token")
        .list_clusters(pb::ListClustersRequest::default())
        .await;
    assert_status(unknown, Code::Unauthenticated, "unknown token");

    // A reader reads and analyses, but may not write.
    network(&channel, &reader)
        .list_clusters(pb::ListClustersRequest::default())
        .await
        .unwrap();
    AnalysisServiceClient::with_interceptor(channel.clone(), bearer(&reader))
        .centrality(pb::CentralityRequest {
            measure: pb::CentralityMeasure::Degree as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let written = network(&channel, &reader)
        .apply_changes(batch(vec![upsert_cluster(cluster("c", vec![]))]))
        .await;
    assert_status(
        written,
        Code::PermissionDenied,
        "a reader token may not call ApplyChanges: it needs writer",
    );

    // A writer writes, but may not delete with cascade or set alert rules.
    network(&channel, &writer)
        .apply_changes(batch(vec![
            upsert_cluster(cluster("c", vec![])),
            upsert_actor(actor("a", &["c"])),
        ]))
        .await
        .unwrap();
    let cascade = network(&channel, &writer)
        .apply_changes(batch(vec![delete_cluster("c", true)]))
        .await;
    assert_status(cascade, Code::PermissionDenied, "changes[0].delete_cluster.cascade");
    let rules = AlertServiceClient::with_interceptor(channel.clone(), bearer(&writer))
        .set_alert_rules(pb::SetAlertRulesRequest::default())
        .await;
    assert_status(rules, Code::PermissionDenied, "it needs admin");

    // An admin may do both.
    network(&channel, &admin)
        .apply_changes(batch(vec![delete_cluster("c", true)]))
        .await
        .unwrap();
    let rules = AlertServiceClient::with_interceptor(channel.clone(), bearer(&admin))
        .get_alert_rules(pb::GetAlertRulesRequest {})
        .await
        .unwrap()
        .into_inner();
    AlertServiceClient::with_interceptor(channel.clone(), bearer(&admin))
        .set_alert_rules(pb::SetAlertRulesRequest {
            rules: rules.rules,
            update_mask: None,
        })
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_with_a_writer_token_and_not_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let writer = new_token(&file, "writer");
    let config = ServerConfig {
        tokens: Some(Arc::new(Tokens::load(&file).unwrap())),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(&dir.path().join("data"), Default::default(), config).await;
    std::fs::write(csv.path().join("clusters.csv"), "id,name\nc1,One\n").unwrap();
    let import = |token: Option<String>| {
        let mut command = Command::new(BIN);
        command.args(["import", "--server", &server.url()]).arg(csv.path());
        command.env_remove("CLUSTERNET_TOKEN");
        if let Some(token) = token {
            command.env("CLUSTERNET_TOKEN", token);
        }
        tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
    };
    let refused = import(None).await.unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("missing token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let imported = import(Some(writer)).await.unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(server.store().snapshot().network.clusters.contains_key("c1"));
    server.stop().await;
}

#[tokio::test]
async fn serve_refuses_a_public_address_without_tls_unless_told_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not loopback") && stderr.contains("--insecure"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_never_read_analyses_waits_behind_its_own_calls_and_others_are_served() {
    use crate::analysis::{degree_request, load_large, slow_request};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let (flood, honest) = (new_token(&file, "reader"), new_token(&file, "reader"));
    let config = ServerConfig {
        tokens: Some(Arc::new(Tokens::load(&file).unwrap())),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(&dir.path().join("data"), Default::default(), config).await;
    load_large(&server).await;
    let channel = server.channel().await;
    // Eighteen slow analyses with no deadline, none ever read.
    let flooding = || AnalysisServiceClient::with_interceptor(channel.clone(), bearer(&flood));
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..18 {
        let mut client = flooding();
        let call = tokio::spawn(async move { client.centrality(slow_request()).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        held.push(call);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for call in held.iter_mut().filter(|c| c.is_finished()) {
        if let Ok(Err(status)) = call.await {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
            assert!(status.message().contains("its share"), "{status}");
            refused += 1;
        }
    }
    // One runs and four wait: the rest are the flooder's to retry.
    assert_eq!(refused, 13);
    // The honest client's analyses all complete meanwhile.
    let mut served = AnalysisServiceClient::with_interceptor(channel.clone(), bearer(&honest));
    for _ in 0..5 {
        let mut request = Request::new(degree_request());
        request.set_timeout(std::time::Duration::from_secs(20));
        let mut stream = served.centrality(request).await.unwrap().into_inner();
        while stream.message().await.unwrap().is_some() {}
    }
    for call in held {
        call.abort();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_opening_a_thousand_watches_leaves_others_room_to_watch() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let (greedy, other) = (new_token(&file, "reader"), new_token(&file, "reader"));
    let config = ServerConfig {
        tokens: Some(Arc::new(Tokens::load(&file).unwrap())),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(&dir.path().join("data"), Default::default(), config).await;
    // Four connections of 256 watches each, from one client.
    let mut opened = Vec::new();
    let (mut kept, mut refused) = (0, 0);
    for _ in 0..4 {
        let channel = server.channel().await;
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..256 {
            let mut client =
                pb::network_service_client::NetworkServiceClient::with_interceptor(channel.clone(), bearer(&greedy));
            calls.spawn(async move { client.watch_changes(pb::WatchChangesRequest::default()).await });
        }
        while let Some(result) = calls.join_next().await {
            let result = result.unwrap();
            match result {
                Ok(stream) => {
                    kept += 1;
                    opened.push(stream);
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
                    refused += 1;
                }
            }
        }
    }
    assert_eq!((kept, refused), (256, 768));
    // Another client still gets its watch.
    let mut watching =
        pb::network_service_client::NetworkServiceClient::with_interceptor(server.channel().await, bearer(&other));
    watching
        .watch_changes(pb::WatchChangesRequest::default())
        .await
        .expect("another client's watch is served");
    drop(opened);
    server.stop().await;
}

/// With every watch taken, a client holding fewer than another gets a place
/// once one of the other's watches has sent nothing for `idle`: that watch
/// ends with UNAVAILABLE and the revision to resume from, and resuming
/// there misses nothing. A busy watch, or one of a client holding no more
/// than the asker, is never closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_watch_taken_an_idle_one_of_the_client_holding_most_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let (greedy, other, writer) = (
        new_token(&file, "reader"),
        new_token(&file, "reader"),
        new_token(&file, "writer"),
    );
    let idle = std::time::Duration::from_millis(1_500);
    let config = ServerConfig {
        tokens: Some(Arc::new(Tokens::load(&file).unwrap())),
        max_subscribers: 4,
        watch_idle_close_after: idle,
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(&dir.path().join("data"), Default::default(), config).await;
    let channel = server.channel().await;
    let watch = |token: &str| {
        let mut client = network(&channel, token);
        async move { client.watch_changes(pb::WatchChangesRequest::default()).await }
    };
    let mut greedy_watches = Vec::new();
    for _ in 0..4 {
        greedy_watches.push(watch(&greedy).await.expect("room for four").into_inner());
    }
    // Not idle yet: the asker waits its turn.
    let refused = watch(&other).await.expect_err("every watch is taken and none idle");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    assert!(refused.message().contains("idle"), "{refused}");

    tokio::time::sleep(idle + std::time::Duration::from_millis(200)).await;
    let mut served = watch(&other).await.expect("an idle watch made room").into_inner();
    // Exactly one of the greedy client's watches was closed, saying where to resume.
    let mut closed = Vec::new();
    for (i, stream) in greedy_watches.iter_mut().enumerate() {
        if let Ok(ended) = tokio::time::timeout(std::time::Duration::from_millis(300), stream.message()).await {
            closed.push((i, ended));
        }
    }
    assert_eq!(closed.len(), 1, "{closed:?}");
    let (index, ended) = closed.pop().unwrap();
    let status = ended.expect_err("closed with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert!(status.message().contains("from_revision 1"), "{status}");
    greedy_watches.remove(index);

    // Resuming where it says, after a write, misses nothing.
    let written = network(&channel, &writer)
        .apply_changes(batch(vec![upsert_cluster(cluster("after", vec![]))]))
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert_eq!(written, 1);
    let first = served.message().await.unwrap().unwrap();
    assert_eq!(first.revision, 1);
    // The place is now the other client's: with the same number of
    // watches, the greedy client cannot take it back, idle or not.
    tokio::time::sleep(idle + std::time::Duration::from_millis(200)).await;
    let refused = watch(&greedy)
        .await
        .expect_err("the greedy client holds no more than the other");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    // Closed by the client: the server frees the places once it sees the
    // streams reset.
    drop(greedy_watches);
    let started = std::time::Instant::now();
    let mut resumed = loop {
        match network(&channel, &greedy)
            .watch_changes(pb::WatchChangesRequest { from_revision: 1 })
            .await
        {
            Ok(stream) => break stream.into_inner(),
            Err(status) if started.elapsed() < std::time::Duration::from_secs(5) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(status) => panic!("no place freed within 5 s: {status}"),
        }
    };
    assert_eq!(resumed.message().await.unwrap().unwrap().revision, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_guessing_tokens_is_throttled_counted_and_logged_with_its_peer() {
    use clusternet::service::{
        layers::auth::{FAILURE_WINDOW, MAX_FAILURES},
        metrics::Metrics,
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let reader = new_token(&file, "reader");
    let metrics = Arc::new(Metrics::new());
    let config = ServerConfig {
        tokens: Some(Arc::new(Tokens::load(&file).unwrap())),
        metrics: metrics.clone(),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(&dir.path().join("data"), Default::default(), config).await;
    let channel = server.channel().await;
    for guess in 0..MAX_FAILURES {
        let refused = network(&channel, &format!("guess-{guess}"))
            .list_clusters(pb::ListClustersRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    // Past the limit even the right token waits for the window to end.
    let throttled = network(&channel, &reader)
        .list_clusters(pb::ListClustersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(throttled.code(), Code::ResourceExhausted, "{throttled}");
    assert!(throttled.message().contains("failed authentications"), "{throttled}");
    // Health checks stay open.
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await;
    assert!(health.is_ok());
    let text = metrics.render(server.store(), None);
    let count = |outcome: &str| -> u64 {
        let prefix = format!("clusternet_auth_failures_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        (count("unauthenticated"), count("throttled")),
        (u64::from(MAX_FAILURES), 1)
    );
    tokio::time::sleep(FAILURE_WINDOW).await;
    network(&channel, &reader)
        .list_clusters(pb::ListClustersRequest::default())
        .await
        .expect("the window has passed");
    server.stop().await;
}
