//! `clusternet draw` checked in a real browser: headless Chromium opens each
//! SVG, parses it without error, shows the expected elements, and paints a
//! picture that is not blank.

use std::{path::Path, process::Command};

use clusternet::service::server::ServerConfig;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_clusternet");

/// Debian's `chromium`, or the browser CLUSTERNET_CHROMIUM names.
fn chromium() -> String {
    std::env::var("CLUSTERNET_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

fn browser(args: &[String]) -> std::process::Output {
    let mut all = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--hide-scrollbars".into(),
        "--window-size=1200,900".into(),
    ];
    all.extend_from_slice(args);
    Command::new(chromium())
        .args(all)
        .output()
        .expect("chromium runs (install Debian's chromium, or set CLUSTERNET_CHROMIUM)")
}

/// What the browser made of the file: its DOM, and the share of the
/// screenshot's pixels that are not white.
fn open_in_chromium(svg: &Path) -> (String, f64) {
    let url = format!("file://{}", svg.display());
    let dom = browser(&["--dump-dom".into(), url.clone()]);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let png = svg.with_extension("png");
    let shot = browser(&[format!("--screenshot={}", png.display()), url]);
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let decoder = png::Decoder::new(std::fs::File::open(&png).expect("a screenshot"));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let painted = pixels[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| p.iter().take(3).any(|&c| c < 240))
        .count();
    let share = painted as f64 / (info.width * info.height) as f64;
    (String::from_utf8(dom.stdout).unwrap(), share)
}

async fn draw(server: &TestServer, out: &Path, what: &[&str]) {
    let mut args: Vec<String> = vec!["draw".into(), "--server".into(), server.url(), "--out".into()];
    args.push(out.display().to_string());
    args.extend(what.iter().map(|s| s.to_string()));
    let result = tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().unwrap())
        .await
        .unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pictures_render_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let network = server.store().snapshot().network.clone();

    // A cluster's firm network: one shape per member, the platform as a
    // square, virtual ties dashed, and a legend.
    let firms = files.path().join("changning.svg");
    draw(
        &server,
        &firms,
        &["--cluster", "changning-creative", "--colour-by", "place"],
    )
    .await;
    let members = network.members[&clusternet::model::Id::from("changning-creative")].len();
    let (dom, painted) = tokio::task::spawn_blocking({
        let firms = firms.clone();
        move || open_in_chromium(&firms)
    })
    .await
    .unwrap();
    assert!(!dom.contains("parsererror") && !dom.contains("error on line"), "{dom}");
    let shapes = dom.matches("class=\"actor\"").count() + dom.matches("class=\"platform\"").count();
    assert_eq!(shapes, members, "every member drawn");
    assert_eq!(
        dom.matches("class=\"platform\"").count(),
        1,
        "the information platform is marked"
    );
    assert!(dom.contains("stroke-dasharray"), "virtual ties dashed");
    assert!(
        dom.contains("id=\"legend\"") && dom.contains("changning-east"),
        "a legend of places"
    );
    assert!(painted > 0.01, "the picture is not blank: {painted}");

    // Past --max-nodes the largest are drawn and the caption says how many were left out.
    let top = files.path().join("top.svg");
    draw(&server, &top, &["--cluster", "changchun-auto", "--max-nodes", "40"]).await;
    let text = std::fs::read_to_string(&top).unwrap();
    assert_eq!(
        text.matches("class=\"actor\"").count() + text.matches("class=\"platform\"").count(),
        40
    );
    assert!(text.contains("left out"), "the caption says what was left out");

    // The map: every site, coloured by stage, transport solid, platform dashed.
    let map = files.path().join("map.svg");
    draw(&server, &map, &["--map"]).await;
    let sites: usize = network.clusters.values().map(|c| c.sites.len()).sum();
    let (dom, painted) = tokio::task::spawn_blocking({
        let map = map.clone();
        move || open_in_chromium(&map)
    })
    .await
    .unwrap();
    assert!(!dom.contains("parsererror"), "{dom}");
    assert_eq!(dom.matches("class=\"site\"").count(), sites);
    assert!(dom.contains("class=\"transport\"") && dom.contains("class=\"platform\""));
    assert!(dom.contains("virtual integration"), "a legend of stages");
    assert!(painted > 0.005, "the map is not blank: {painted}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_industry_space_renders_with_a_cluster_s_industries_ringed() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    load_synthetic(
        &server,
        clusternet::synthetic::SyntheticConfig {
            clusters: 30,
            actors: 3_000,
            links: 6_000,
            industries: 16,
            ..Default::default()
        },
    )
    .await;
    let space = files.path().join("space.svg");
    draw(&server, &space, &["--space", "--cluster", "cluster-0003"]).await;
    let (dom, painted) = tokio::task::spawn_blocking({
        let space = space.clone();
        move || open_in_chromium(&space)
    })
    .await
    .unwrap();
    assert!(!dom.contains("parsererror") && !dom.contains("error on line"), "{dom}");
    let snapshot = server.store().snapshot();
    let matrix = clusternet::analysis::relatedness::relatedness(
        &snapshot.network,
        &Default::default(),
        &Default::default(),
        &clusternet::analysis::Control::none(),
    )
    .unwrap();
    let c = matrix.cluster_index(&"cluster-0003".into()).unwrap();
    let held = (0..matrix.figures.cols)
        .filter(|p| matrix.figures.mcp[c * matrix.figures.cols + p])
        .count();
    assert_eq!(
        dom.matches("class=\"industry").count(),
        matrix.industries.len(),
        "every industry drawn"
    );
    assert_eq!(
        dom.matches("class=\"industry held\"").count(),
        held,
        "the cluster's ringed"
    );
    assert!(
        dom.matches("class=\"tie\"").count() >= matrix.industries.len() - 1,
        "at least a spanning tree"
    );
    assert!(dom.contains("PCI +2 (complex)"), "a legend of PCI");
    assert!(painted > 0.01, "the picture is not blank: {painted}");
    server.stop().await;
}
