//! What every deployment relies on: health, reflection, restarts.

use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

use crate::common::*;

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_network_service() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "clusternet.v1.NetworkService"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "service '{service}'");
    }
    server.stop().await;
}

/// The services reflection lists at `channel`.
async fn listed_services(channel: tonic::transport::Channel) -> Vec<String> {
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reply {reply:?}");
    };
    list.service.into_iter().map(|s| s.name).collect()
}

#[tokio::test]
async fn reflection_lists_the_services() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let names = listed_services(server.channel().await).await;
    for expected in [
        "clusternet.v1.NetworkService",
        "clusternet.v1.AnalysisService",
        "clusternet.v1.AlertService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    server.stop().await;
}

/// `serve --no-alerts` does not serve the AlertService, so reflection does
/// not offer it (grpcurl `list` would, and each call be UNIMPLEMENTED).
#[tokio::test]
async fn reflection_lists_no_alert_service_without_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_clusternet"))
        .args([
            "serve",
            "--no-alerts",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let channel = loop {
        match tonic::transport::Channel::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => break channel,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(20) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(error) => panic!("the server did not start: {error}"),
        }
    };
    let names = listed_services(channel).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(names.iter().any(|n| n == "clusternet.v1.NetworkService"), "{names:?}");
    assert!(names.iter().any(|n| n == "grpc.health.v1.Health"), "{names:?}");
    assert!(
        names.iter().any(|n| n == "grpc.reflection.v1.ServerReflection"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n == "clusternet.v1.AlertService"), "{names:?}");
}

#[tokio::test]
async fn data_and_revision_survive_a_restart_on_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    client
        .apply_changes(batch(vec![upsert_cluster(cluster(
            "c",
            vec![site("park", 31.0, 121.0)],
        ))]))
        .await
        .unwrap();
    let reply = client
        .apply_changes(batch(vec![
            upsert_actor(actor("a", &["c"])),
            upsert_actor(actor("b", &[])),
            upsert_link(link("a", "b", pb::LinkKind::Supply)),
            pb::Change {
                change: Some(pb::change::Change::UpsertActorProfile(pb::ActorProfile {
                    actor_id: "a".into(),
                    until: "2016-01-01".into(),
                    segments: vec![pb::Segment::Manufacturing as i32],
                    ..Default::default()
                })),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.revision, 2);
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let actor = client
        .get_actor(pb::GetActorRequest { id: "a".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(actor.revision, 2);
    assert_eq!(actor.actor.unwrap().cluster_ids, vec!["c".to_string()]);
    assert_eq!(actor.profiles.len(), 1, "profiles come back from the checkpoint");
    let links = client
        .list_links(pb::ListLinksRequest {
            actor_id: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(links.links.len(), 1);
    let next = client
        .apply_changes(batch(vec![upsert_actor(actor_named("d"))]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.revision, 3, "revisions go on from where they were");
    server.stop().await;
}

fn actor_named(id: &str) -> pb::Actor {
    actor(id, &[])
}

/// A shutdown ends every kind of open call within the grace: an idle import
/// and a running analysis are told UNAVAILABLE at once, and a client that
/// reads nothing is cut when the grace has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_idle_imports_running_analyses_and_silent_clients_within_the_grace() {
    use clusternet::service::{pb::analysis_service_client::AnalysisServiceClient, server::ServerConfig};
    use std::time::Duration;
    use tonic::Code;

    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        shutdown_grace: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(dir.path(), Default::default(), config).await;
    crate::analysis::load_large(&server).await;
    // An import that sent one batch and then nothing, its stream left open.
    let (batches, receiver) = tokio::sync::mpsc::channel(1);
    batches
        .send(pb::ImportChangesRequest {
            changes: vec![upsert_actor(actor("imported", &[]))],
        })
        .await
        .unwrap();
    let mut importer = server.client().await;
    let import = tokio::spawn(async move {
        importer
            .import_changes(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
    });
    // A long analysis, read as it comes.
    let mut analysis = AnalysisServiceClient::new(server.channel().await);
    let mut running = analysis
        .centrality(pb::CentralityRequest {
            measure: pb::CentralityMeasure::Betweenness as i32,
            weighted: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    running.message().await.unwrap();
    // A watch whose client never reads.
    let mut silent = server.client().await;
    let _unread = silent
        .watch_changes(pb::WatchChangesRequest { from_revision: 1 })
        .await
        .unwrap();

    let stopping = tokio::spawn(server.stop());
    let ended = loop {
        match running.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the analysis cannot have finished"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::Unavailable, "{ended}");
    assert!(ended.message().contains("shutting down"), "{ended}");
    let imported = import.await.unwrap().expect_err("the import is cut short");
    assert_eq!(imported.code(), Code::Unavailable, "{imported}");
    assert!(imported.message().contains("1 batches were applied"), "{imported}");
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("the server stops within its grace")
        .unwrap();
    drop(batches);
}
