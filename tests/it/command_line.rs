//! The command line's analysis and read subcommands as a user runs them:
//! tables people can read, JSON and CSV with the server's exact figures, and
//! exit codes that mean something.

use std::process::{Command, Stdio};

use clusternet::service::server::ServerConfig;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_clusternet");

async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().expect("the binary runs"))
        .await
        .unwrap()
}

fn args(server: &TestServer, rest: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
    all.push("--server".into());
    all.push(server.url());
    all
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centrality_prints_a_rounded_table_and_exact_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let base = [
        "centrality",
        "--measure",
        "pagerank",
        "--cluster",
        "kunshan-electronics",
        "--top",
        "10",
    ];
    let table = stdout(&run(args(&server, &base)).await);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 11, "a header and ten rows:\n{table}");
    assert!(lines[0].starts_with("RANK  NODE_ID"), "{table}");
    // Columns line up: every row is as wide as its widest cell allows.
    let value_end = lines[0].len();
    for line in &lines[1..] {
        assert_eq!(line.len(), value_end, "right-aligned numbers end together:\n{table}");
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.len() <= 8, "rounded: {value}");
    }
    let json = stdout(&run(args(&server, &[&base[..], &["--json"]].concat())).await);
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 10);
    // Exact values: the same as the gRPC answer.
    let mut client =
        clusternet::service::pb::analysis_service_client::AnalysisServiceClient::new(server.channel().await);
    let mut stream = client
        .centrality(pb::CentralityRequest {
            measure: pb::CentralityMeasure::Pagerank as i32,
            filter: Some(pb::NetworkFilter {
                cluster_ids: vec!["kunshan-electronics".into()],
                ..Default::default()
            }),
            top_k: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut expected = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        if let Some(pb::centrality_response::Event::Rows(b)) = m.event {
            expected.extend(b.rows);
        }
    }
    for (row, want) in rows.iter().zip(&expected) {
        assert_eq!(row["node_id"], want.node_id.as_str());
        assert_eq!(row["value"].as_f64().unwrap(), want.value);
    }
    let csv = stdout(&run(args(&server, &[&base[..], &["--csv"]].concat())).await);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(reader.headers().unwrap(), vec!["rank", "node_id", "name", "value"]);
    let values: Vec<f64> = reader.records().map(|r| r.unwrap()[3].parse().unwrap()).collect();
    assert_eq!(values, expected.iter().map(|r| r.value).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_shows_one_verdict_a_cluster_and_reads_list_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let table = stdout(&run(args(&server, &["stage"])).await);
    assert_eq!(table.lines().count(), 5, "{table}");
    let changning = table.lines().find(|l| l.starts_with("changning-creative")).unwrap();
    assert!(changning.contains("VIRTUAL_INTEGRATION"), "{changning}");
    let actors = stdout(&run(args(&server, &["actors", "--json"])).await);
    let network = server.store().snapshot().network.clone();
    assert_eq!(actors.lines().count(), network.actors.len());
    let links = stdout(&run(args(&server, &["links", "--csv"])).await);
    assert_eq!(links.lines().count(), network.links.len() + 1);
    for command in [
        &["communities", "--algorithm", "leiden"][..],
        &["inter-cluster", "--layer", "site", "--nodes"],
        &["overlap"],
        &["crossings", "--by-cluster"],
        &["substitutes", "--actor", "ks-firm-10"],
        &["gaps"],
        &["fusion", "--pairs"],
        &["virtual"],
        &["core-firms", "--of", "changchun-auto"],
        &[
            "upgrading",
            "--of",
            "kunshan-electronics",
            "--from",
            "2010-01-01",
            "--to",
            "2020-01-01",
        ],
        &["clusters"],
        &["cluster", "changning-creative"],
        &["actor", "faw"],
        &["cluster-links"],
        &["neighborhood", "faw"],
        &["alert-rules"],
    ] {
        let out = run(args(&server, command)).await;
        let text = stdout(&out);
        assert!(
            text.lines().count() >= 2,
            "{command:?} printed a header and rows:\n{text}"
        );
    }
    // The demo raises no alerts: an empty listing says so and succeeds.
    assert_eq!(stdout(&run(args(&server, &["alerts"])).await), "(no rows)\n");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_bad_usage_or_a_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let out = run(args(&server, &["centrality", "--measure", "fame"])).await;
    assert_eq!(out.status.code(), Some(2));
    let out = run(args(&server, &["cluster", "nowhere"])).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NotFound") && stderr.contains("nowhere"), "{stderr}");
    let out = run(args(
        &server,
        &[
            "upgrading",
            "--of",
            "kunshan-electronics",
            "--from",
            "2020",
            "--to",
            "2021-01-01",
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidArgument"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_changes_prints_the_history_as_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let url = server.url();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut child = Command::new(BIN)
            .args(["watch", "changes", "--from", "1", "--server", &url])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let lines: Vec<String> = reader.lines().take(3).map(|l| l.unwrap()).collect();
        child.kill().unwrap();
        child.wait().unwrap();
        lines
    })
    .await
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["revision"], 1);
    assert_eq!(first["change"], "upsert_cluster");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relatedness_and_upgrade_paths_print_the_rows_with_the_wire_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let json = stdout(&run(args(&server, &["relatedness", "--level", "section", "--json"])).await);
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 4 * 5, "four clusters by five ISIC sections");
    let keys: Vec<&str> = rows[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "cluster_id",
            "industry",
            "value",
            "rca",
            "mcp",
            "density",
            "cog",
            "pci",
            "eci",
            "coi"
        ]
    );
    let clusters = stdout(&run(args(&server, &["relatedness", "--clusters", "--json"])).await);
    let first: serde_json::Value = serde_json::from_str(clusters.lines().next().unwrap()).unwrap();
    for key in ["eci", "coi", "diversity", "krugman", "herfindahl", "entropy"] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
    let space = stdout(&run(args(&server, &["relatedness", "--space", "--csv"])).await);
    assert!(space.starts_with("industry_a,industry_b,proximity"), "{space}");
    let table = stdout(
        &run(args(
            &server,
            &["upgrade-paths", "--cluster", "changning-creative", "--top", "2"],
        ))
        .await,
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two paths:\n{table}");
    assert!(
        lines[0].starts_with("INDUSTRY") && lines[0].ends_with("PARTNERS"),
        "{table}"
    );
    // Bad input: the server's refusal, exit code 1, naming the field.
    let out = run(args(&server, &["upgrade-paths", "--cluster", "nowhere"])).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster_id"));
}
