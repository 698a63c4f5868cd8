//! The stage analyses over a real socket: the demo's verdicts, and variants
//! of the demo, changed through the API, whose verdicts move the way the
//! article says they should, with the evidence saying why.

use clusternet::{
    demo,
    service::{pb::analysis_service_client::AnalysisServiceClient, server::ServerConfig},
};
use tonic::{transport::Channel, Code};

use crate::common::*;

type Analysis = AnalysisServiceClient<Channel>;

async fn assess(client: &mut Analysis, request: pb::AssessStageRequest) -> Vec<pb::StageAssessment> {
    let mut stream = client.assess_stage(request).await.unwrap().into_inner();
    let mut rows = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        if let Some(pb::assess_stage_response::Event::Rows(batch)) = event.event {
            rows.extend(batch.rows);
        }
    }
    rows
}

async fn assessment(client: &mut Analysis, cluster: &str) -> pb::StageAssessment {
    let rows = assess(
        client,
        pb::AssessStageRequest {
            filter: Some(pb::NetworkFilter {
                cluster_ids: vec![cluster.into()],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows.len(), 1);
    rows.into_iter().next().unwrap()
}

async fn patterns(client: &mut Analysis) -> Vec<pb::VirtualIntegrationPattern> {
    let mut stream = client
        .detect_virtual_integration(pb::DetectVirtualIntegrationRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut rows = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        if let Some(pb::detect_virtual_integration_response::Event::Rows(batch)) = event.event {
            rows.extend(batch.rows);
        }
    }
    rows
}

/// A CoreFirms answer: the rows and the closing figures.
#[derive(Debug)]
struct CoreFirms {
    cores: Vec<pb::CoreFirm>,
    members: u64,
    best_reach: f64,
}

async fn core_firms(client: &mut Analysis, cluster: &str) -> CoreFirms {
    let request = pb::CoreFirmsRequest {
        cluster_id: cluster.into(),
        ..Default::default()
    };
    let mut stream = client.core_firms(request).await.unwrap().into_inner();
    let mut cores = Vec::new();
    let mut summary = None;
    while let Some(event) = stream.message().await.unwrap() {
        match event.event {
            Some(pb::core_firms_response::Event::Rows(batch)) => cores.extend(batch.rows),
            Some(pb::core_firms_response::Event::Summary(s)) => summary = Some(s),
            _ => {}
        }
    }
    let summary = summary.expect("a closing summary");
    CoreFirms {
        cores,
        members: summary.members,
        best_reach: summary.best_reach,
    }
}

fn stage(a: &pb::StageAssessment) -> pb::Stage {
    pb::Stage::try_from(a.stage).unwrap()
}

fn score(a: &pb::StageAssessment, stage: pb::Stage) -> &pb::StageScore {
    a.scores.iter().find(|s| s.stage == stage as i32).unwrap()
}

fn factor(score: &pb::StageScore, name: &str) -> f64 {
    score.factors.iter().find(|f| f.name == name).unwrap().value
}

/// The names of a stage's unmet gates.
fn unmet_gates(score: &pb::StageScore) -> Vec<&str> {
    score.gates.iter().filter(|g| !g.met).map(|g| g.name.as_str()).collect()
}

async fn start() -> (tempfile::TempDir, TestServer, Analysis) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let client = AnalysisServiceClient::new(server.channel().await);
    (dir, server, client)
}

#[tokio::test]
async fn the_demo_clusters_are_in_the_articles_three_stages() {
    let (_dir, server, mut client) = start().await;
    let all = assess(&mut client, pb::AssessStageRequest::default()).await;
    assert_eq!(all.len(), 4);
    let of = |id: &str| all.iter().find(|a| a.cluster_id == id).unwrap();

    let changchun = of(demo::CHANGCHUN);
    assert_eq!(
        stage(changchun),
        pb::Stage::RegionalIntegration,
        "{}",
        changchun.explanation
    );
    let evidence = changchun.evidence.as_ref().unwrap();
    assert_eq!(evidence.core_firm, demo::FAW, "hub and spoke around FAW");
    assert!(evidence.internal_ties as f64 > 0.9 * evidence.ties as f64);

    let kunshan = of(demo::KUNSHAN);
    assert_eq!(stage(kunshan), pb::Stage::GlobalValueChain, "{}", kunshan.explanation);
    let evidence = kunshan.evidence.as_ref().unwrap();
    assert!(evidence.foreign_ties as f64 > 0.5 * evidence.ties as f64);
    assert!(evidence.foreign_capital_enterprises > 0);

    let changning = of(demo::CHANGNING);
    assert_eq!(
        stage(changning),
        pb::Stage::VirtualIntegration,
        "{}",
        changning.explanation
    );
    let evidence = changning.evidence.as_ref().unwrap();
    assert_eq!(evidence.places, demo::CHANGNING_SITES);
    assert_eq!(evidence.platforms, [demo::CHANGNING_PLATFORM]);
    assert!(
        evidence.place_interaction > 0.3 && evidence.place_distinctness > 0.5 && evidence.specialisation_p <= 0.001,
        "{evidence:?}"
    );
    assert!(changning.explanation.starts_with("VIRTUAL_INTEGRATION"));
    // Every score is traceable: a weighted mean of its factors (regional).
    let regional = score(changning, pb::Stage::RegionalIntegration);
    let mean = regional.factors.iter().map(|f| f.value * f.weight).sum::<f64>()
        / regional.factors.iter().map(|f| f.weight).sum::<f64>();
    assert!((mean - regional.score).abs() < 1e-12);

    // The Changning parks are one virtual whole, with the platform and the metro.
    let found = patterns(&mut client).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let pattern = &found[0];
    let parts: Vec<&str> = pattern.parts.iter().map(|p| p.place_id.as_str()).collect();
    assert_eq!(parts, demo::CHANGNING_SITES);
    assert_eq!(pattern.platforms[0].actor_id, demo::CHANGNING_PLATFORM);
    assert_eq!(pattern.platform_links.len(), 3);
    assert_eq!(pattern.corridors.len(), 2, "Metro Line 2: east–central, central–west");
    assert!(pattern.reaches_final_customers);
    // Each park has its own character: design, digital media, advertising and sales.
    let mixes: Vec<Vec<i32>> = pattern
        .parts
        .iter()
        .map(|p| {
            let mut segments: Vec<i32> = p.segments.iter().map(|s| s.segment).collect();
            segments.sort();
            segments
        })
        .collect();
    assert!(
        mixes[0] != mixes[1] && mixes[1] != mixes[2] && mixes[0] != mixes[2],
        "{mixes:?}"
    );
    assert!(pattern.confidence >= 0.5);
    assert!(pattern.gates.iter().all(|g| g.met), "{:?}", pattern.gates);
    // One truth: the assessment names the pattern that detection reports.
    assert_eq!(changning.pattern.as_ref(), Some(pattern));

    // Overrides per request: a stricter virtual threshold moves Changning back a step.
    let strict = assess(
        &mut client,
        pb::AssessStageRequest {
            overrides: [("thresholds.virtual".to_string(), 0.95)].into(),
            ..Default::default()
        },
    )
    .await;
    let changning = strict.iter().find(|a| a.cluster_id == demo::CHANGNING).unwrap();
    assert_eq!(stage(changning), pb::Stage::RegionalIntegration);
    server.stop().await;
}

#[tokio::test]
async fn faw_is_the_core_firm_with_seven_supporting_systems() {
    let (_dir, server, mut client) = start().await;
    let list = core_firms(&mut client, demo::CHANGCHUN).await;
    assert_eq!(list.cores.len(), 1);
    let faw = &list.cores[0];
    assert_eq!(faw.actor_id, demo::FAW);
    assert_eq!(faw.systems.len(), demo::SUPPORTING_SYSTEMS.len());
    for (system, name) in faw.systems.iter().zip(demo::SUPPORTING_SYSTEMS) {
        assert_eq!(system.tier1_ids.len(), 2, "{name}: {system:?}");
        let prefix = system.tier1_ids[0].split("-t1-").next().unwrap().to_string();
        assert!(
            system.member_ids.iter().all(|m| m.starts_with(&prefix)),
            "one system's suppliers all belong to it"
        );
    }
    // Kunshan's manufacturers supply foreign buyers, not a local core.
    // The summary says why: no member reaches the default 0.3 of the others.
    let kunshan = core_firms(&mut client, demo::KUNSHAN).await;
    assert!(kunshan.cores.is_empty(), "{kunshan:?}");
    assert!(kunshan.members > 0 && kunshan.best_reach < 0.3, "{kunshan:?}");
    assert_status(
        client
            .core_firms(pb::CoreFirmsRequest {
                cluster_id: "atlantis".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "cluster_id",
    );
    assert_status(
        client.core_firms(pb::CoreFirmsRequest::default()).await,
        Code::InvalidArgument,
        "cluster_id",
    );
    assert_status(
        client
            .assess_stage(pb::AssessStageRequest {
                overrides: [("thresholds.teleportation".to_string(), 0.5)].into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "overrides[thresholds.teleportation]",
    );
    assert_status(
        client
            .detect_virtual_integration(pb::DetectVirtualIntegrationRequest {
                overrides: [("virtual.max_specialisation_p".to_string(), 2.0)].into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "overrides[virtual.max_specialisation_p]",
    );
    server.stop().await;
}

/// Applies `changes` through ApplyChanges.
async fn apply(server: &TestServer, changes: Vec<pb::Change>) {
    server.client().await.apply_changes(batch(changes)).await.unwrap();
}

fn delete_link(l: &pb::Link) -> pb::Change {
    pb::Change {
        change: Some(pb::change::Change::DeleteLink(pb::LinkKey {
            source: l.source.clone(),
            target: l.target.clone(),
            kind: l.kind,
        })),
    }
}

async fn members(server: &TestServer, cluster: &str) -> Vec<pb::Actor> {
    all_actors(
        &mut server.client().await,
        pb::ListActorsRequest {
            cluster_id: cluster.into(),
            page_size: 1000,
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn without_the_platform_and_its_virtual_ties_changning_is_no_longer_virtual() {
    let (_dir, server, mut client) = start().await;
    let ids: Vec<String> = members(&server, demo::CHANGNING)
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
    let links = all_links(&mut server.client().await, pb::ListLinksRequest::default()).await;
    let mut changes: Vec<pb::Change> = links
        .iter()
        .filter(|l| {
            l.channel == pb::Channel::Virtual as i32
                && (ids.contains(&l.source) || ids.contains(&l.target))
                && l.source != demo::CHANGNING_PLATFORM
                && l.target != demo::CHANGNING_PLATFORM
        })
        .map(delete_link)
        .collect();
    changes.push(pb::Change {
        change: Some(pb::change::Change::DeleteActor(pb::DeleteActor {
            id: demo::CHANGNING_PLATFORM.into(),
            cascade: true,
        })),
    });
    let [east, central, west] = demo::CHANGNING_SITES;
    for (a, b) in [(east, central), (central, west), (east, west)] {
        changes.push(pb::Change {
            change: Some(pb::change::Change::DeleteClusterLink(pb::ClusterLinkKey {
                source: a.into(),
                target: b.into(),
                kind: pb::ClusterLinkKind::Platform as i32,
            })),
        });
    }
    apply(&server, changes).await;

    let changning = assessment(&mut client, demo::CHANGNING).await;
    assert_eq!(
        stage(&changning),
        pb::Stage::RegionalIntegration,
        "{}",
        changning.explanation
    );
    let evidence = changning.evidence.as_ref().unwrap();
    assert_eq!(evidence.virtual_ties, 0);
    assert!(evidence.platforms.is_empty());
    let virtual_score = score(&changning, pb::Stage::VirtualIntegration);
    assert_eq!(
        factor(virtual_score, "virtual"),
        0.0,
        "the evidence names the missing virtual ties"
    );
    assert!(!virtual_score.passed);
    // Nothing joins the parks, and with their online ties gone (all the
    // cross-park ties ran online) nothing ties them to each other either.
    assert_eq!(
        unmet_gates(virtual_score),
        ["joined", "virtual_share", "place_interaction"]
    );
    assert!(
        patterns(&mut client).await.is_empty(),
        "nothing joins the parks virtually"
    );
    server.stop().await;
}

#[tokio::test]
async fn with_the_three_parks_in_one_place_changning_is_a_regional_cluster() {
    let (_dir, server, mut client) = start().await;
    let mut network = server.client().await;
    let mut cluster = network
        .get_cluster(pb::GetClusterRequest {
            id: demo::CHANGNING.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    let (lat, lon) = (cluster.sites[0].lat, cluster.sites[0].lon);
    for site in &mut cluster.sites {
        (site.lat, site.lon) = (lat, lon);
    }
    apply(&server, vec![upsert_cluster(cluster)]).await;

    let changning = assessment(&mut client, demo::CHANGNING).await;
    assert_eq!(
        stage(&changning),
        pb::Stage::RegionalIntegration,
        "{}",
        changning.explanation
    );
    let evidence = changning.evidence.as_ref().unwrap();
    assert_eq!(
        evidence.places.len(),
        1,
        "co-located parks are one place: {:?}",
        evidence.places
    );
    let virtual_score = score(&changning, pb::Stage::VirtualIntegration);
    let places = virtual_score.gates.iter().find(|g| g.name == "places").unwrap();
    assert_eq!((places.value, places.limit, places.met), (1.0, 2.0, false));
    assert!(
        changning.explanation.contains("places 1.00 is below its floor 2.00"),
        "the explanation names the unmet gate: {}",
        changning.explanation
    );
    assert!(patterns(&mut client).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn with_one_specialisation_for_all_three_parks_changning_is_no_virtual_whole() {
    let (_dir, server, mut client) = start().await;
    let every_segment = vec![
        pb::Segment::Design as i32,
        pb::Segment::ProductDevelopment as i32,
        pb::Segment::Marketing as i32,
        pb::Segment::Sales as i32,
        pb::Segment::Consumption as i32,
        pb::Segment::AfterSalesService as i32,
    ];
    let changes: Vec<pb::Change> = members(&server, demo::CHANGNING)
        .await
        .into_iter()
        .filter(|a| a.kind == pb::ActorKind::Firm as i32)
        .map(|a| {
            upsert_actor(pb::Actor {
                segments: every_segment.clone(),
                ..a
            })
        })
        .collect();
    apply(&server, changes).await;

    let changning = assessment(&mut client, demo::CHANGNING).await;
    assert_ne!(
        stage(&changning),
        pb::Stage::VirtualIntegration,
        "{}",
        changning.explanation
    );
    let evidence = changning.evidence.as_ref().unwrap();
    assert!(
        evidence.place_distinctness < 0.05,
        "the parks no longer differ: {}",
        evidence.place_distinctness
    );
    let virtual_score = score(&changning, pb::Stage::VirtualIntegration);
    assert_eq!(unmet_gates(virtual_score), ["place_distinctness", "specialisation_p"]);
    assert!(patterns(&mut client).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn without_its_foreign_ties_kunshan_leaves_the_global_value_chain() {
    let (_dir, server, mut client) = start().await;
    let ids: Vec<String> = members(&server, demo::KUNSHAN)
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
    let foreign: Vec<String> = all_actors(&mut server.client().await, pb::ListActorsRequest::default())
        .await
        .into_iter()
        .filter(|a| !a.country.is_empty() && a.country != "CN")
        .map(|a| a.id)
        .collect();
    let changes: Vec<pb::Change> = all_links(&mut server.client().await, pb::ListLinksRequest::default())
        .await
        .iter()
        .filter(|l| {
            (ids.contains(&l.source) && foreign.contains(&l.target))
                || (foreign.contains(&l.source) && ids.contains(&l.target))
        })
        .map(delete_link)
        .collect();
    assert!(changes.len() > 100);
    apply(&server, changes).await;

    let kunshan = assessment(&mut client, demo::KUNSHAN).await;
    assert_ne!(stage(&kunshan), pb::Stage::GlobalValueChain, "{}", kunshan.explanation);
    let evidence = kunshan.evidence.as_ref().unwrap();
    assert_eq!(evidence.foreign_ties, 0);
    assert_eq!(evidence.foreign_capital_enterprises, 0);
    let global = score(&kunshan, pb::Stage::GlobalValueChain);
    assert_eq!(factor(global, "foreign_embedding"), 0.0);
    assert_eq!(unmet_gates(global), ["foreign_share"]);
    // Assembly alone is not a complete regional chain either.
    assert_eq!(stage(&kunshan), pb::Stage::Unclassified, "{}", kunshan.explanation);
    let regional = score(&kunshan, pb::Stage::RegionalIntegration);
    assert_eq!(unmet_gates(regional), ["completeness"]);
    assert!(kunshan
        .explanation
        .contains("GLOBAL_VALUE_CHAIN ruled out: foreign_share 0.00 is below its floor 0.30"));
    server.stop().await;
}

async fn upgrading(client: &mut Analysis, cluster: &str, from: &str, to: &str) -> pb::UpgradingReport {
    let request = pb::UpgradingRequest {
        cluster_id: cluster.into(),
        from: from.into(),
        to: to.into(),
        ..Default::default()
    };
    let mut stream = client.upgrading(request).await.unwrap().into_inner();
    let mut report = None;
    while let Some(event) = stream.message().await.unwrap() {
        if let Some(pb::upgrading_response::Event::Rows(batch)) = event.event {
            report = batch.rows.into_iter().next();
        }
    }
    report.expect("a report")
}

#[tokio::test]
async fn firms_moving_from_manufacturing_into_design_show_functional_upgrading() {
    let (_dir, server, mut client) = start().await;
    // Thirty Kunshan manufacturers moved into design and development in 2016:
    // their records say so now, their profiles say what they did until then.
    let movers: Vec<pb::Actor> = members(&server, demo::KUNSHAN)
        .await
        .into_iter()
        .filter(|a| a.id.starts_with("ks-firm-"))
        .take(30)
        .collect();
    let mut changes = Vec::new();
    for actor in movers {
        changes.push(pb::Change {
            change: Some(pb::change::Change::UpsertActorProfile(pb::ActorProfile {
                actor_id: actor.id.clone(),
                until: "2016-01-01".into(),
                industry: actor.industry.clone(),
                segments: actor.segments.clone(),
                employees: actor.employees,
                revenue: actor.revenue,
            })),
        });
        changes.push(upsert_actor(pb::Actor {
            segments: vec![pb::Segment::Design as i32, pb::Segment::ProductDevelopment as i32],
            ..actor
        }));
    }
    apply(&server, changes).await;

    let report = upgrading(&mut client, demo::KUNSHAN, "2012-01-01", "2020-01-01").await;
    let functional = report.functional.unwrap();
    assert!(functional.detected, "{functional:?}");
    assert!(functional.value_after > functional.value_before + 0.2);
    assert_eq!(functional.moved.len(), 30);
    assert_eq!(functional.moved_up, 30);
    assert!(!functional.shrinking_chain);
    let design = functional
        .segments
        .iter()
        .find(|s| s.segment == pb::Segment::Design as i32)
        .unwrap();
    assert_eq!((design.members_before, design.members_after), (0, 30));
    // The history is kept with the actor.
    let actor = server
        .client()
        .await
        .get_actor(pb::GetActorRequest {
            id: functional.moved[0].actor_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(actor.profiles.len(), 1);
    assert_eq!(actor.profiles[0].segments, [pb::Segment::Manufacturing as i32]);
    // Changchun did not move.
    let changchun = upgrading(&mut client, demo::CHANGCHUN, "2012-01-01", "2020-01-01").await;
    assert!(!changchun.functional.unwrap().detected);

    let bad = |cluster: &str, from: &str, to: &str| pb::UpgradingRequest {
        cluster_id: cluster.into(),
        from: from.into(),
        to: to.into(),
        ..Default::default()
    };
    assert_status(
        client.upgrading(bad(demo::KUNSHAN, "2020-01-01", "2012-01-01")).await,
        Code::InvalidArgument,
        "to",
    );
    assert_status(
        client.upgrading(bad(demo::KUNSHAN, "", "2012-01-01")).await,
        Code::InvalidArgument,
        "from",
    );
    assert_status(
        client.upgrading(bad("atlantis", "2010-01-01", "2012-01-01")).await,
        Code::NotFound,
        "cluster_id",
    );
    let orphan = pb::Change {
        change: Some(pb::change::Change::UpsertActorProfile(pb::ActorProfile {
            actor_id: "nobody".into(),
            until: "2016-01-01".into(),
            ..Default::default()
        })),
    };
    assert_status(
        server.client().await.apply_changes(batch(vec![orphan])).await,
        Code::FailedPrecondition,
        "changes[0].upsert_actor_profile.actor_id",
    );
    let undated = pb::Change {
        change: Some(pb::change::Change::UpsertActorProfile(pb::ActorProfile {
            actor_id: demo::FAW.into(),
            until: "soon".into(),
            ..Default::default()
        })),
    };
    assert_status(
        server.client().await.apply_changes(batch(vec![undated])).await,
        Code::InvalidArgument,
        "changes[0].upsert_actor_profile.until",
    );
    server.stop().await;
}

#[tokio::test]
async fn unrelated_clusters_loaded_beside_the_demo_move_no_verdict_or_figure() {
    let (_dir, server, mut client) = start().await;
    let before = assess(&mut client, pb::AssessStageRequest::default()).await;
    let patterns_before = patterns(&mut client).await;
    // Forty clusters of three parks, 25 firms each, a platform tied to all
    // and virtual ties between the parks: 1,000 actors with no tie to the demo.
    let mut changes = Vec::new();
    for c in 0..40 {
        let id = format!("pad-{c:02}");
        let parks: Vec<pb::Site> = (0..3)
            .map(|p| {
                site(
                    &format!("{id}-park-{p}"),
                    30.0 + 0.05 * p as f64,
                    100.0 + c as f64 * 0.5,
                )
            })
            .collect();
        changes.push(upsert_cluster(cluster(&id, parks)));
        changes.push(upsert_actor(pb::Actor {
            kind: pb::ActorKind::Platform as i32,
            ..actor(&format!("{id}-platform"), &[&id])
        }));
        for f in 0..24 {
            let firm = format!("{id}-f{f:02}");
            changes.push(upsert_actor(pb::Actor {
                site_id: format!("{id}-park-{}", f % 3),
                ..actor(&firm, &[&id])
            }));
            changes.push(upsert_link(pb::Link {
                channel: pb::Channel::Virtual as i32,
                ..link(&format!("{id}-platform"), &firm, pb::LinkKind::Platform)
            }));
            if f > 0 {
                changes.push(upsert_link(pb::Link {
                    channel: pb::Channel::Virtual as i32,
                    ..link(&format!("{id}-f{:02}", f - 1), &firm, pb::LinkKind::Cooperation)
                }));
            }
        }
    }
    apply(&server, changes).await;

    let after = assess(&mut client, pb::AssessStageRequest::default()).await;
    for demo_cluster in [demo::CHANGCHUN, demo::KUNSHAN, demo::CHANGNING, demo::ZHANGJIANG] {
        let of = |rows: &[pb::StageAssessment]| rows.iter().find(|a| a.cluster_id == demo_cluster).cloned();
        assert_eq!(of(&after), of(&before), "{demo_cluster}");
    }
    // Identical parks with one specialisation are no virtual whole, however
    // many of them; the demo's one pattern stays as it was.
    assert_eq!(patterns(&mut client).await, patterns_before);
    assert!(after
        .iter()
        .filter(|a| a.cluster_id.starts_with("pad-"))
        .all(|a| stage(a) != pb::Stage::VirtualIntegration));
    server.stop().await;
}

/// Runs the `clusternet` command and returns its standard output.
async fn clusternet(args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_clusternet"))
            .args(args)
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clusters_in_three_cities_are_one_whole_named_by_each_over_the_api_and_the_command_line() {
    use clusternet::synthetic::THREE_CITIES;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let csv = dir.path().join("three-cities");
    let csv = csv.to_str().unwrap().to_string();
    // As the README: write the network as CSV, import it through the API.
    clusternet(vec!["demo-csv".into(), "--three-cities".into(), csv.clone()]).await;
    clusternet(vec!["import".into(), "--server".into(), server.url(), csv]).await;
    let mut client = AnalysisServiceClient::new(server.channel().await);

    let found = patterns(&mut client).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    let whole = &found[0];
    let mut clusters = THREE_CITIES.to_vec();
    clusters.sort();
    assert_eq!(whole.cluster_ids, clusters);
    assert_eq!(whole.cluster_id, "", "a whole across clusters is no one cluster's");
    assert!(whole.gates.iter().all(|g| g.met));
    assert!(whole.confidence >= 0.5);
    for cluster in THREE_CITIES {
        let a = assessment(&mut client, cluster).await;
        assert_eq!(stage(&a), pb::Stage::VirtualIntegration, "{}", a.explanation);
        let named = a.pattern.as_ref().expect("the whole it is virtual through");
        assert_eq!(named.whole_id, whole.whole_id, "one id on every call");
        let relations = &a.evidence.as_ref().unwrap().whole_relations;
        let mut others: Vec<&str> = relations.iter().map(|r| r.cluster_id.as_str()).collect();
        others.sort();
        let expected: Vec<&str> = clusters.iter().copied().filter(|c| *c != cluster).collect();
        assert_eq!(others, expected);
        assert!(a.explanation.contains(&whole.whole_id), "{}", a.explanation);
    }
    // The command line shows the same whole.
    let table = clusternet(vec!["virtual".into(), "--json".into(), "--server".into(), server.url()]).await;
    assert_eq!(table.lines().count(), 1, "{table}");
    assert!(table.contains(&whole.whole_id), "{table}");
    server.stop().await;
}
