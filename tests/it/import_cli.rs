//! The command line as a user runs it: `clusternet import`, `demo-csv`, `config` and `serve --config`.

use std::process::Command;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_clusternet");

/// Runs the CLI off the async runtime (it talks to the server on this one).
async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().expect("the binary runs"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_csv_imports_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let out = run(vec!["demo-csv".into(), csv.path().display().to_string()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(vec![
        "import".into(),
        "--server".into(),
        server.url(),
        "--batch-size".into(),
        "100".into(),
        csv.path().display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = clusternet::demo::demo_changes();
    let network = server.store().snapshot().network.clone();
    let actors = expected
        .iter()
        .filter(|c| matches!(c, clusternet::model::Change::UpsertActor(_)))
        .count();
    assert_eq!(network.actors.len(), actors);
    assert_eq!(network.clusters.len(), 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_is_reported_as_file_and_line_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    std::fs::write(
        csv.path().join("clusters.csv"),
        "id,name,region,industry\nc1,One,Jilin,C2910\n",
    )
    .unwrap();
    std::fs::write(
        csv.path().join("actors.csv"),
        "id,name,kind,clusters\na1,A1,firm,c1\na2,A2,core_firm,c1\na3,A3,firm,c1\n",
    )
    .unwrap();
    std::fs::write(
        csv.path().join("links.csv"),
        "source,target,kind,channel,weight\na1,a2,supply,physical,2\na2,a3,supply,physical,NaN\n",
    )
    .unwrap();
    let server = TestServer::start(dir.path()).await;
    let out = run(vec![
        "import".into(),
        "--server".into(),
        server.url(),
        csv.path().display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("links.csv:3: weight: NaN"), "{stderr}");
    assert_eq!(server.store().snapshot().revision, 0, "nothing was imported");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_server_refuses_is_traced_back_to_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    std::fs::write(csv.path().join("actors.csv"), "id,kind\na1,firm\na2,firm\n").unwrap();
    std::fs::write(
        csv.path().join("links.csv"),
        "source,target,kind\na1,a2,supply\na2,missing,supply\n",
    )
    .unwrap();
    let server = TestServer::start(dir.path()).await;
    let out = run(vec![
        "import".into(),
        "--server".into(),
        server.url(),
        "--batch-size".into(),
        "2".into(),
        csv.path().display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("links.csv:3: FailedPrecondition"), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
    server.stop().await;
}

/// A file large enough to be read in parts while it uploads: a refusal deep
/// in it is traced to its line, the batches before it are in, none after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_deep_in_a_large_file_names_its_line_and_keeps_the_batches_before() {
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    let actors = 2_000;
    let mut text = String::from("id,kind\n");
    for i in 0..actors {
        text.push_str(&format!("actor-{i},firm\n"));
    }
    std::fs::write(csv.path().join("actors.csv"), text).unwrap();
    let (links, bad) = (40_000, 31_234);
    let mut text = String::from("source,target,kind\n");
    for i in 0..links {
        let target = if i == bad {
            "nobody".to_string()
        } else {
            // Each pair once: the source, and 1 to 20 actors on.
            format!("actor-{}", (i % actors + 1 + i / actors) % actors)
        };
        text.push_str(&format!("actor-{},{target},supply\n", i % actors));
    }
    assert!(text.len() > 1 << 20, "large enough to be read in parts");
    std::fs::write(csv.path().join("links.csv"), text).unwrap();
    let server = TestServer::start(dir.path()).await;
    let batch = 1_000;
    let out = run(vec![
        "import".into(),
        "--server".into(),
        server.url(),
        "--batch-size".into(),
        batch.to_string(),
        csv.path().display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The header is line 1, link 0 line 2.
    assert!(
        stderr.contains(&format!("links.csv:{}: FailedPrecondition", bad + 2)),
        "{stderr}"
    );
    assert!(stderr.contains("nobody"), "{stderr}");
    let network = server.store().snapshot().network.clone();
    let before = (actors + bad) / batch * batch - actors;
    assert_eq!(network.actors.len(), actors);
    assert_eq!(
        network.links.len(),
        before,
        "the batches before the refused one, and no more"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_its_stage_settings_from_a_config_file() {
    // `clusternet config` prints the defaults, a file to start from.
    let out = run(vec!["config".into()]).await;
    assert!(out.status.success());
    let defaults = String::from_utf8(out.stdout).unwrap();
    assert!(
        defaults.contains("[thresholds]") && defaults.contains("[smile]"),
        "{defaults}"
    );

    // A bad value stops the server before it listens, naming the setting.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stages.toml");
    std::fs::write(&config, "[thresholds]\nvirtual = 1.5\n").unwrap();
    let data = dir.path().join("data");
    let out = run(vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--config".into(),
        config.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("thresholds.virtual: 1.5 is outside [0, 1]"), "{stderr}");

    // A good one is used: AssessStage reports its threshold.
    std::fs::write(&config, "[thresholds]\nvirtual = 0.7\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let mut client = loop {
        match pb::analysis_service_client::AnalysisServiceClient::connect(url.clone()).await {
            Ok(client) => break client,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(20) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("the server did not start: {e}"),
        }
    };
    let mut stream = client
        .assess_stage(pb::AssessStageRequest {
            filter: Some(pb::NetworkFilter {
                cluster_ids: vec![clusternet::demo::CHANGNING.into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut threshold = None;
    while let Some(event) = stream.message().await.unwrap() {
        if let Some(pb::assess_stage_response::Event::Rows(batch)) = event.event {
            let scores = &batch.rows[0].scores;
            threshold = scores
                .iter()
                .find(|s| s.stage == pb::Stage::VirtualIntegration as i32)
                .map(|s| s.threshold);
        }
    }
    assert_eq!(threshold, Some(0.7));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn serve_logs_one_json_object_a_line_with_log_format_json() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(entry["level"], "INFO", "{line}");
    assert!(entry["fields"]["message"].as_str().is_some(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_the_clusters_whose_country_came_from_their_sites_and_assessment_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let write = |name: &str, text: &str| std::fs::write(csv.path().join(name), text).unwrap();
    write("clusters.csv", "id,name,country\nsz,Suzhou,\nsplit,Split,\n");
    write(
        "sites.csv",
        "id,cluster_id,lat,lon\nsz-1,sz,31.30,120.58\nsplit-1,split,22.54,114.06\nsplit-2,split,34.69,135.50\n",
    );
    let out = run(vec![
        "import".into(),
        "--server".into(),
        server.url(),
        csv.path().display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("clusters.csv: 1 clusters without a country take it from their sites: sz CN"),
        "{stdout}"
    );
    assert!(stdout.contains("split (sites in CN and JP)"), "{stdout}");
    // The assessment over the API says the same.
    let mut client =
        clusternet::service::pb::analysis_service_client::AnalysisServiceClient::new(server.channel().await);
    let mut stream = client
        .assess_stage(pb::AssessStageRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut rows = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        if let Some(pb::assess_stage_response::Event::Rows(batch)) = event.event {
            rows.extend(batch.rows);
        }
    }
    let evidence = |id: &str| {
        rows.iter()
            .find(|a| a.cluster_id == id)
            .unwrap()
            .evidence
            .clone()
            .unwrap()
    };
    let sz = evidence("sz");
    assert_eq!(sz.home_country, "CN");
    assert_eq!(sz.home_country_source, pb::HomeCountrySource::Sites as i32);
    let split = evidence("split");
    assert_eq!(split.home_country, "");
    assert_eq!(split.home_country_source, pb::HomeCountrySource::Unknown as i32);
    assert_eq!(split.home_country_unknown_reason, "sites in CN and JP");
    server.stop().await;
}

/// The server killed mid-import: the CLI says the connection was lost (not
/// that the server refused anything) and which batch was acknowledged
/// last, through which row; after a restart the server holds at least that
/// revision, and every acknowledged link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_import_is_said_as_a_lost_connection_with_the_last_batch_acknowledged() {
    use std::process::Stdio;

    use crate::crash_cycle::{connect, free_port, server};
    async fn revision_of(client: &mut Client) -> u64 {
        let page = pb::ListActorsRequest {
            page_size: 1,
            ..Default::default()
        };
        client.list_actors(page).await.unwrap().into_inner().revision
    }
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    let actors = 5_000;
    let mut text = String::from("id,kind\n");
    for i in 0..actors {
        text.push_str(&format!("actor-{i},firm\n"));
    }
    std::fs::write(csv.path().join("actors.csv"), text).unwrap();
    let links = 400_000;
    let mut text = String::from("source,target,kind\n");
    for i in 0..links {
        text.push_str(&format!(
            "actor-{},actor-{},supply\n",
            i % actors,
            (i % actors + 1 + i / actors) % actors
        ));
    }
    std::fs::write(csv.path().join("links.csv"), text).unwrap();
    let serve = |port: u16| server(dir.path(), port).stderr(Stdio::null()).spawn().unwrap();
    let port = free_port();
    let mut server = serve(port);
    let mut client = connect(port).await;
    let importer = Command::new(BIN)
        .args([
            "import",
            "--batch-size",
            "500",
            "--server",
            &format!("http://127.0.0.1:{port}"),
        ])
        .arg(csv.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once a few batches are in.
    let started = std::time::Instant::now();
    loop {
        if revision_of(&mut client).await >= 20 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the import never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let out = tokio::task::spawn_blocking(move || importer.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the connection to the server was lost during the import"),
        "{stderr}"
    );
    assert!(!stderr.contains("refused"), "{stderr}");
    // "N batches were acknowledged as applied, through links.csv:L (revision R)".
    let number_after = |marker: &str| -> u64 {
        let rest = &stderr[stderr
            .find(marker)
            .unwrap_or_else(|| panic!("no {marker:?} in {stderr}"))
            + marker.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let line = number_after("through links.csv:");
    let revision = number_after("(revision ");
    assert!(revision >= 1);

    // What was acknowledged is there after a restart: the revision, and
    // the link on the last row acknowledged (line L is link L - 2).
    let port = free_port();
    let mut server = serve(port);
    let mut client = connect(port).await;
    let now = revision_of(&mut client).await;
    assert!(now >= revision, "{now} < {revision}");
    let i = (line - 2) as usize;
    let (source, target) = (
        format!("actor-{}", i % actors),
        format!("actor-{}", (i % actors + 1 + i / actors) % actors),
    );
    let found = client
        .list_links(pb::ListLinksRequest {
            actor_id: source.clone(),
            page_size: 1_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        found.links.iter().any(|l| l.source == source && l.target == target),
        "{source} -> {target} (line {line}) was acknowledged"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

/// ImportBatches acknowledges each batch once durable; a refused batch ends
/// the stream with a status naming it and what was applied before it, in
/// the message and in the rich details' own message (which grpcurl shows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_batches_acknowledges_each_batch_and_names_the_refused_one_everywhere() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_configured(dir.path(), Default::default(), Default::default()).await;
    let mut client = server.client().await;
    let firm = |id: &str| pb::Change {
        change: Some(pb::change::Change::UpsertActor(pb::Actor {
            id: id.into(),
            kind: pb::ActorKind::Firm as i32,
            ..Default::default()
        })),
    };
    let batches = vec![
        pb::ImportBatchesRequest {
            changes: vec![firm("a"), firm("b")],
        },
        pb::ImportBatchesRequest {
            changes: vec![upsert_link(link("a", "nobody", pb::LinkKind::Supply))],
        },
    ];
    let mut events = client
        .import_batches(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let first = events.message().await.unwrap().unwrap();
    let Some(pb::import_batches_response::Event::Applied(applied)) = first.event else {
        panic!("the first batch is acknowledged: {first:?}")
    };
    assert_eq!((applied.batch, applied.revision), (1, 1));
    let status = events.message().await.expect_err("the second batch is refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let prefix = "batch 2 (after 1 applied batches, revision 1): ";
    assert!(status.message().starts_with(prefix), "{}", status.message());
    let rich = tonic_types::Status::decode(status.details()).unwrap();
    assert_eq!(rich.message, status.message(), "the details say the same");
    server.stop().await;
}
