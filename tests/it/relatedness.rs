//! Relatedness, IndustrySpace and UpgradePaths over a real socket: every
//! pair of the matrix, figures equal to the domain's on the same network,
//! upgrade paths naming the tied partner, the command line's rows, and bad
//! input refused naming the field.

use clusternet::{
    analysis::{
        relatedness::{relatedness, MatrixConfig},
        Control,
    },
    graph::GraphFilter,
    service::pb::analysis_service_client::AnalysisServiceClient,
    synthetic::SyntheticConfig,
};
use tonic::{transport::Channel, Code};

use crate::common::*;

type Analysis = AnalysisServiceClient<Channel>;

/// A generated network whose clusters mix twelve industries.
fn mixed() -> SyntheticConfig {
    SyntheticConfig {
        clusters: 30,
        actors: 3_000,
        links: 6_000,
        industries: 12,
        seed: 5,
        ..SyntheticConfig::default()
    }
}

async fn relatedness_rows(
    client: &mut Analysis,
    request: pb::RelatednessRequest,
) -> (Vec<pb::relatedness_response::Event>, pb::RelatednessSummary) {
    let mut stream = client.relatedness(request).await.unwrap().into_inner();
    let (mut events, mut summary) = (Vec::new(), None);
    while let Some(message) = stream.message().await.unwrap() {
        match message.event {
            Some(pb::relatedness_response::Event::Summary(s)) => summary = Some(s),
            Some(pb::relatedness_response::Event::Progress(_)) | None => {}
            Some(event) => events.push(event),
        }
    }
    (events, summary.expect("a summary closes the stream"))
}

/// Every row a streamed call sends, as `pick` finds them in its messages.
async fn collect<M, R>(
    call: impl std::future::Future<Output = Result<tonic::Response<tonic::Streaming<M>>, tonic::Status>>,
    pick: impl Fn(M) -> Option<Vec<R>>,
) -> Vec<R> {
    let mut stream = call.await.unwrap().into_inner();
    let mut rows = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        rows.extend(pick(message).into_iter().flatten());
    }
    rows
}

fn assessments(m: pb::AssessStageResponse) -> Option<Vec<pb::StageAssessment>> {
    match m.event {
        Some(pb::assess_stage_response::Event::Rows(b)) => Some(b.rows),
        _ => None,
    }
}

fn close(a: Option<f64>, b: f64) -> bool {
    match a {
        Some(a) => (a - b).abs() <= 1e-12 * b.abs().max(1.0),
        None => b.is_nan(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pair_is_streamed_with_the_figures_of_the_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    load_synthetic(&server, mixed()).await;
    let mut client = Analysis::new(server.channel().await);
    let (events, summary) = relatedness_rows(&mut client, pb::RelatednessRequest::default()).await;
    let pairs: Vec<pb::RelatednessRow> = events
        .into_iter()
        .flat_map(|e| match e {
            pb::relatedness_response::Event::Pairs(b) => b.rows,
            other => panic!("pairs only: {other:?}"),
        })
        .collect();
    assert_eq!((summary.clusters, summary.industries), (30, 12));
    assert!(
        summary.complexity_defined,
        "twelve mixed industries have a second eigenvector"
    );
    assert_eq!(pairs.len(), 30 * 12, "absent industries included");
    assert!(pairs.iter().any(|p| p.value == 0.0 && p.density.is_some()));

    // The same figures as the domain computes on the store's own snapshot.
    let snapshot = server.store().snapshot();
    let expected = relatedness(
        &snapshot.network,
        &GraphFilter::default(),
        &MatrixConfig::default(),
        &Control::none(),
    )
    .unwrap();
    let f = &expected.figures;
    for row in &pairs {
        let c = expected.cluster_index(&row.cluster_id.as_str().into()).unwrap();
        let p = expected.industry_index(&row.industry).unwrap();
        let at = c * f.cols + p;
        assert_eq!(row.value, expected.values.at(c, p));
        assert_eq!(row.mcp, f.mcp[at]);
        assert!(close(row.rca, f.rca[at]) && close(row.density, f.density[at]) && close(row.cog, f.cog[at]));
        assert!(close(row.pci, f.pci[p]) && close(row.eci, f.eci[c]) && close(row.coi, f.coi[c]));
    }

    // Per cluster: ECI standardised over the clusters, as ecomplexity does.
    let (events, _) = relatedness_rows(
        &mut client,
        pb::RelatednessRequest {
            view: pb::RelatednessView::Clusters as i32,
            ..Default::default()
        },
    )
    .await;
    let clusters: Vec<pb::ClusterComplexity> = events
        .into_iter()
        .flat_map(|e| match e {
            pb::relatedness_response::Event::Clusters(b) => b.rows,
            other => panic!("clusters only: {other:?}"),
        })
        .collect();
    assert_eq!(clusters.len(), 30);
    let eci: Vec<f64> = clusters.iter().map(|c| c.eci.unwrap()).collect();
    let mean = eci.iter().sum::<f64>() / 30.0;
    let variance = eci.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / 30.0;
    assert!(
        mean.abs() < 1e-9 && (variance - 1.0).abs() < 1e-9,
        "mean {mean}, variance {variance}"
    );
    for c in &clusters {
        assert!(c.diversity.unwrap() >= 1 && c.herfindahl.unwrap() <= 1.0 && c.entropy.unwrap() >= 0.0);
    }

    // The industry space: pairs once, a < b, proximities in (0, 1].
    let space = collect(
        client.industry_space(pb::IndustrySpaceRequest::default()),
        |m| match m.event {
            Some(pb::industry_space_response::Event::Rows(b)) => Some(b.rows),
            _ => None,
        },
    )
    .await;
    assert!(!space.is_empty());
    for pair in &space {
        assert!(pair.industry_a < pair.industry_b && pair.proximity > 0.0 && pair.proximity <= 1.0);
        let (a, b) = (
            expected.industry_index(&pair.industry_a).unwrap(),
            expected.industry_index(&pair.industry_b).unwrap(),
        );
        assert_eq!(pair.proximity, f.proximity[a * f.cols + b]);
    }
    server.stop().await;
}

/// Clusters H1..H4 hold A, B and X; K1..K4 hold C and D; T holds A and B.
/// H1 supplies T.
fn built_case() -> Vec<pb::Change> {
    let mut changes = Vec::new();
    for c in ["H1", "H2", "H3", "H4", "K1", "K2", "K3", "K4", "T"] {
        changes.push(upsert_cluster(cluster(c, vec![])));
    }
    let mut firm = |id: String, cluster: &str, industry: &str| {
        changes.push(upsert_actor(pb::Actor {
            industry: industry.into(),
            employees: Some(50),
            ..actor(&id, &[cluster])
        }));
    };
    for h in ["H1", "H2", "H3", "H4"] {
        for industry in ["A", "B", "X"] {
            firm(format!("{h}-{industry}"), h, industry);
        }
    }
    for k in ["K1", "K2", "K3", "K4"] {
        for industry in ["C", "D"] {
            firm(format!("{k}-{industry}"), k, industry);
        }
    }
    for industry in ["A", "B"] {
        firm(format!("T-{industry}"), "T", industry);
    }
    changes.push(upsert_link(link("H1-X", "T-A", pb::LinkKind::Supply)));
    changes
}

async fn paths(
    client: &mut Analysis,
    request: pb::UpgradePathsRequest,
) -> Result<(Vec<pb::UpgradePath>, pb::UpgradePathsSummary), tonic::Status> {
    let mut stream = client.upgrade_paths(request).await?.into_inner();
    let (mut rows, mut summary) = (Vec::new(), None);
    while let Some(message) = stream.message().await? {
        match message.event {
            Some(pb::upgrade_paths_response::Event::Rows(b)) => rows.extend(b.rows),
            Some(pb::upgrade_paths_response::Event::Summary(s)) => summary = Some(s),
            _ => {}
        }
    }
    Ok((rows, summary.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_paths_rank_the_near_industry_first_and_name_the_partner_that_supplies() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut network = server.client().await;
    network.apply_changes(batch(built_case())).await.unwrap();
    let mut client = Analysis::new(server.channel().await);
    let (rows, summary) = paths(
        &mut client,
        pb::UpgradePathsRequest {
            cluster_id: "T".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(rows[0].industry, "X", "{rows:#?}");
    assert_eq!(rows[0].holders, 4);
    let first = &rows[0].partners[0];
    assert_eq!(
        (first.cluster_id.as_str(), first.supplies_you, first.firm_links),
        ("H1", 1, 1)
    );
    assert_eq!(summary.candidates, 3, "X, C and D");
    assert_eq!(summary.cluster.unwrap().cluster_id, "T");

    // Partners per path and paths are cut where asked.
    let (rows, _) = paths(
        &mut client,
        pb::UpgradePathsRequest {
            cluster_id: "T".into(),
            top: 1,
            partners: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((rows.len(), rows[0].partners.len(), rows[0].holders), (1, 2, 4));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_relatedness_requests_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut network = server.client().await;
    network.apply_changes(batch(built_case())).await.unwrap();
    let mut client = Analysis::new(server.channel().await);
    let matrix = |m: pb::RelatednessMatrix| pb::RelatednessRequest {
        matrix: Some(m),
        ..Default::default()
    };
    let cases = [
        (
            matrix(pb::RelatednessMatrix {
                rca_threshold: -1.0,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "matrix.rca_threshold",
        ),
        (
            matrix(pb::RelatednessMatrix {
                industry_level: 42,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "matrix.industry_level",
        ),
        (
            matrix(pb::RelatednessMatrix {
                value: 9,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "matrix.value",
        ),
        (
            matrix(pb::RelatednessMatrix {
                filter: Some(pb::NetworkFilter {
                    cluster_ids: vec!["nowhere".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            Code::NotFound,
            "matrix.filter.cluster_ids[0]",
        ),
        (
            pb::RelatednessRequest {
                view: 77,
                ..Default::default()
            },
            Code::InvalidArgument,
            "view",
        ),
    ];
    for (request, code, field) in cases {
        assert_status(client.relatedness(request).await, code, field);
    }
    assert_status(
        client
            .industry_space(pb::IndustrySpaceRequest {
                min_proximity: 2.0,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "min_proximity",
    );
    let path_cases = [
        (
            pb::UpgradePathsRequest {
                cluster_id: "nowhere".into(),
                ..Default::default()
            },
            Code::NotFound,
            "cluster_id",
        ),
        (
            pb::UpgradePathsRequest {
                cluster_id: "T".into(),
                ranking: Some(pb::UpgradeRanking::default()),
                ..Default::default()
            },
            Code::InvalidArgument,
            "ranking",
        ),
        (
            pb::UpgradePathsRequest {
                cluster_id: "T".into(),
                ranking: Some(pb::UpgradeRanking {
                    cog_weight: f64::NAN,
                    density_weight: 1.0,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
            "ranking.cog_weight",
        ),
        (
            pb::UpgradePathsRequest {
                cluster_id: "T".into(),
                matrix: Some(pb::RelatednessMatrix {
                    filter: Some(pb::NetworkFilter {
                        cluster_ids: vec!["H1".into(), "H2".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
            "matrix.filter.cluster_ids",
        ),
    ];
    for (request, code, field) in path_cases {
        assert_status(paths(&mut client, request).await, code, field);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_carries_each_cluster_s_eci_and_coi() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    load_synthetic(&server, mixed()).await;
    let mut client = Analysis::new(server.channel().await);
    let (events, _) = relatedness_rows(
        &mut client,
        pb::RelatednessRequest {
            view: pb::RelatednessView::Clusters as i32,
            ..Default::default()
        },
    )
    .await;
    let expected: std::collections::BTreeMap<String, (Option<f64>, Option<f64>)> = events
        .into_iter()
        .flat_map(|e| match e {
            pb::relatedness_response::Event::Clusters(b) => b.rows,
            _ => vec![],
        })
        .map(|c| (c.cluster_id, (c.eci, c.coi)))
        .collect();
    let exported: std::collections::BTreeMap<String, (Option<f64>, Option<f64>)> = collect(
        client.export_network(pb::ExportNetworkRequest {
            layer: pb::Layer::Cluster as i32,
            results: vec![pb::NodeResult::Complexity as i32],
            ..Default::default()
        }),
        |m| match m.event {
            Some(pb::export_network_response::Event::Results(b)) => Some(b.rows),
            _ => None,
        },
    )
    .await
    .into_iter()
    .map(|r| (r.node_id, (r.eci, r.coi)))
    .collect();
    assert_eq!(exported.len(), 30);
    assert!(exported.values().all(|(eci, coi)| eci.is_some() && coi.is_some()));
    assert_eq!(exported, expected);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_assessment_gives_the_cluster_s_eci_and_its_three_nearest_paths() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    load_synthetic(&server, mixed()).await;
    let mut client = Analysis::new(server.channel().await);
    let cluster = clusternet::synthetic::cluster_id(3).to_string();
    // Assessed alone, still compared with every cluster.
    let rows = collect(
        client.assess_stage(pb::AssessStageRequest {
            filter: Some(pb::NetworkFilter {
                cluster_ids: vec![cluster.clone()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        assessments,
    )
    .await;
    let evidence = rows[0].evidence.clone().unwrap();
    let (paths, summary) = paths(
        &mut client,
        pb::UpgradePathsRequest {
            cluster_id: cluster.clone(),
            top: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(evidence.eci, summary.cluster.unwrap().eci);
    assert!(evidence.eci.is_some());
    let industries = |p: &[pb::UpgradePath]| p.iter().map(|p| p.industry.clone()).collect::<Vec<_>>();
    assert_eq!(industries(&evidence.upgrade_paths), industries(&paths));
    assert_eq!(evidence.upgrade_paths.len(), 3);
    assert!(evidence.upgrade_paths.iter().all(|p| p.partners.is_empty()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_with_more_industries_than_can_be_computed_asks_for_a_coarser_level() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut network = server.client().await;
    let mut changes = vec![
        upsert_cluster(cluster("A", vec![])),
        upsert_cluster(cluster("B", vec![])),
    ];
    for i in 0..2_001 {
        changes.push(upsert_actor(pb::Actor {
            industry: format!("C{i:04}"),
            employees: Some(10),
            ..actor(&format!("f{i}"), &[if i % 2 == 0 { "A" } else { "B" }])
        }));
    }
    network.apply_changes(batch(changes)).await.unwrap();
    let mut client = Analysis::new(server.channel().await);
    let mut stream = client
        .relatedness(pb::RelatednessRequest::default())
        .await
        .unwrap()
        .into_inner();
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream should end with an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{}", status.message());
    assert!(
        status.message().contains("matrix.industry_level"),
        "{}",
        status.message()
    );
    // Divisions: C00 .. C20.
    let (_, summary) = relatedness_rows(
        &mut client,
        pb::RelatednessRequest {
            matrix: Some(pb::RelatednessMatrix {
                industry_level: pb::IndustryLevel::Division as i32,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(summary.industries, 21);
    // The stage assessment goes on without the evidence it cannot compute.
    let rows = collect(client.assess_stage(pb::AssessStageRequest::default()), assessments).await;
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r.evidence.as_ref().unwrap().upgrade_paths.is_empty()));
    server.stop().await;
}
