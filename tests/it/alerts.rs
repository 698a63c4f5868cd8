//! Network-change alerts over a real socket: each kind raised by a batch
//! built to raise it, with its subjects and figures, and not raised by a
//! similar batch that should not; rules; paging and filters.
//!
//! Each kind's test turns every other kind off (SetAlertRules), so "yields
//! none" means none at all.

use clusternet::{
    demo,
    service::{pb::alert_service_client::AlertServiceClient, server::ServerConfig},
};
use tonic::{transport::Channel, Code};

use crate::common::*;

pub type Alerts = AlertServiceClient<Channel>;

pub async fn alerts_client(server: &TestServer) -> Alerts {
    AlertServiceClient::new(server.channel().await)
}

/// Applies a batch; returns its revision.
pub async fn apply(server: &TestServer, changes: Vec<pb::Change>) -> u64 {
    server
        .client()
        .await
        .apply_changes(batch(changes))
        .await
        .unwrap()
        .into_inner()
        .revision
}

/// Waits until the alert engine has evaluated `revision`.
pub async fn settle(client: &mut Alerts, revision: u64) {
    for _ in 0..3000 {
        let page = client
            .list_alerts(pb::ListAlertsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if page.evaluated_revision >= revision {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("revision {revision} was not evaluated in 30 s");
}

/// Every alert from `from_sequence` on, following page tokens.
pub async fn listed(client: &mut Alerts, mut request: pb::ListAlertsRequest) -> Vec<pb::Alert> {
    let mut rows = Vec::new();
    loop {
        let page = client.list_alerts(request.clone()).await.unwrap().into_inner();
        assert!(request.page_size == 0 || page.alerts.len() <= request.page_size as usize);
        rows.extend(page.alerts);
        if page.next_page_token.is_empty() {
            return rows;
        }
        request.page_token = page.next_page_token;
    }
}

/// The sequence number of the latest alert raised.
async fn latest_sequence(client: &mut Alerts) -> u64 {
    client
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .latest_sequence
}

/// The alerts a batch raised.
async fn raised(server: &TestServer, client: &mut Alerts, changes: Vec<pb::Change>) -> Vec<pb::Alert> {
    let latest = latest_sequence(client).await;
    let revision = apply(server, changes).await;
    settle(client, revision).await;
    listed(
        client,
        pb::ListAlertsRequest {
            from_sequence: latest + 1,
            ..Default::default()
        },
    )
    .await
}

/// Turns every kind but `kind` off.
async fn only(client: &mut Alerts, kind: pb::AlertKind) {
    let others: Vec<i32> = (1..=16).filter(|k| *k != kind as i32).collect();
    client
        .set_alert_rules(pb::SetAlertRulesRequest {
            rules: Some(pb::AlertRules {
                disabled_kinds: others,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["disabled_kinds".into()],
            }),
        })
        .await
        .unwrap();
}

pub fn figure(alert: &pb::Alert, name: &str) -> (f64, f64) {
    let f = alert
        .figures
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no figure {name} in {alert:?}"));
    (f.before, f.after)
}

fn kind(alert: &pb::Alert) -> pb::AlertKind {
    pb::AlertKind::try_from(alert.kind).unwrap()
}

fn firm(id: &str, cluster: &str, industry: &str) -> pb::Change {
    upsert_actor(pb::Actor {
        industry: industry.into(),
        ..actor(id, &[cluster])
    })
}

fn tie(source: &str, target: &str, kind: pb::LinkKind) -> pb::Change {
    upsert_link(link(source, target, kind))
}

fn delete_actor(id: &str) -> pb::Change {
    pb::Change {
        change: Some(pb::change::Change::DeleteActor(pb::DeleteActor {
            id: id.into(),
            cascade: true,
        })),
    }
}

/// Three clusters of four firms: `a` and `c` in motor vehicles (C29), `b`
/// in software (J62), each a chain a1 - a2 - a3 - a4 of cooperation ties.
pub fn three_clusters() -> Vec<pb::Change> {
    let mut changes = Vec::new();
    for (c, industry) in [("a", "C2930"), ("b", "J6201"), ("c", "C2920")] {
        changes.push(upsert_cluster(cluster(c, vec![])));
        for i in 1..=4 {
            changes.push(firm(&format!("{c}{i}"), c, industry));
        }
        for i in 1..4 {
            changes.push(tie(
                &format!("{c}{i}"),
                &format!("{c}{}", i + 1),
                pb::LinkKind::Cooperation,
            ));
        }
    }
    changes
}

async fn start_with(world: Vec<pb::Change>) -> (tempfile::TempDir, TestServer, Alerts) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = alerts_client(&server).await;
    let revision = apply(&server, world).await;
    settle(&mut client, revision).await;
    (dir, server, client)
}

#[tokio::test]
async fn a_new_investment_across_clusters_is_a_cross_investment() {
    let (_dir, server, mut client) = start_with(three_clusters()).await;
    only(&mut client, pb::AlertKind::CrossInvestmentAdded).await;

    let quiet = raised(&server, &mut client, vec![tie("a1", "a3", pb::LinkKind::Investment)]).await;
    assert!(
        quiet.is_empty(),
        "an investment inside a cluster crosses nothing: {quiet:?}"
    );
    let quiet = raised(&server, &mut client, vec![tie("a1", "c1", pb::LinkKind::Supply)]).await;
    assert!(quiet.is_empty(), "a supply tie is not capital: {quiet:?}");

    let alerts = raised(&server, &mut client, vec![tie("a2", "c2", pb::LinkKind::Investment)]).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(kind(alert), pb::AlertKind::CrossInvestmentAdded);
    assert_eq!(alert.cluster_ids, ["a", "c"]);
    assert_eq!(alert.actor_ids, ["a2", "c2"]);
    assert_eq!(figure(alert, "new_links"), (0.0, 1.0));
    assert_eq!(figure(alert, "capital_ties"), (0.0, 1.0));
    assert_eq!(alert.severity, pb::Severity::Info as i32);

    let again = raised(&server, &mut client, vec![tie("a2", "c2", pb::LinkKind::Investment)]).await;
    assert!(
        again.is_empty(),
        "upserting the same link again adds nothing: {again:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_new_tie_between_industries_of_two_clusters_is_a_fusion_link() {
    let (_dir, server, mut client) = start_with(three_clusters()).await;
    only(&mut client, pb::AlertKind::FusionLinkAdded).await;

    let quiet = raised(&server, &mut client, vec![tie("a1", "c1", pb::LinkKind::Cooperation)]).await;
    assert!(quiet.is_empty(), "C2930 and C2920 are one division (29): {quiet:?}");

    let alerts = raised(&server, &mut client, vec![tie("a4", "b1", pb::LinkKind::Cooperation)]).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(kind(alert), pb::AlertKind::FusionLinkAdded);
    assert_eq!(alert.cluster_ids, ["a", "b"]);
    assert_eq!(alert.actor_ids, ["a4", "b1"]);
    assert_eq!(figure(alert, "new_links"), (0.0, 1.0));
    assert_eq!(figure(alert, "cross_industry_ties"), (0.0, 1.0));
    server.stop().await;
}

/// Batches of thousands of changes back to back are a bulk write: the
/// engine may take them in only once they pause, reading them back from the
/// change log. What they raise is what they would raise one by one: the
/// ties inside a cluster nothing, the one new tie between industries of two
/// clusters one alert.
#[tokio::test]
async fn a_bulk_write_raises_its_new_ties_once_whenever_it_is_taken_in() {
    let (_dir, server, mut client) = start_with(three_clusters()).await;
    only(&mut client, pb::AlertKind::FusionLinkAdded).await;
    let latest = latest_sequence(&mut client).await;
    let mut revision = 0;
    for part in 0..4 {
        let mut changes = Vec::new();
        for i in 0..3_000 {
            let id = format!("a-{part}-{i:04}");
            changes.push(firm(&id, "a", "C2930"));
            changes.push(tie(&id, "a1", pb::LinkKind::Supply));
        }
        if part == 2 {
            changes.push(tie("a-0-0000", "b1", pb::LinkKind::Cooperation));
        }
        revision = apply(&server, changes).await;
    }
    settle(&mut client, revision).await;
    let alerts = listed(
        &mut client,
        pb::ListAlertsRequest {
            from_sequence: latest + 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].cluster_ids, ["a", "b"]);
    assert_eq!(alerts[0].actor_ids, ["a-0-0000", "b1"]);
    assert_eq!(figure(&alerts[0], "new_links"), (0.0, 1.0));
    server.stop().await;
}

#[tokio::test]
async fn an_actor_that_loses_its_only_substitute_is_reported() {
    let mut world = three_clusters();
    // Two suppliers of one customer substitute each other; a third is added
    // to test the quiet case first.
    for s in ["s1", "s2", "s3"] {
        world.push(firm(s, "a", "C2930"));
        world.push(tie(s, "b1", pb::LinkKind::Supply));
    }
    let (_dir, server, mut client) = start_with(world).await;
    only(&mut client, pb::AlertKind::SubstituteLost).await;

    let quiet = raised(&server, &mut client, vec![delete_actor("s3")]).await;
    assert!(quiet.is_empty(), "s1 and s2 still substitute each other: {quiet:?}");

    let alerts = raised(&server, &mut client, vec![delete_actor("s2")]).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(kind(alert), pb::AlertKind::SubstituteLost);
    assert_eq!(alert.actor_ids, ["s1", "s2"], "who is left alone, then whom it lost");
    assert_eq!(alert.cluster_ids, ["a"]);
    assert_eq!(figure(alert, "substitutes"), (1.0, 0.0));
    assert!(figure(alert, "best_score").0 > 0.5);
    assert_eq!(alert.severity, pb::Severity::Critical as i32);
    server.stop().await;
}

#[tokio::test]
async fn members_shared_past_the_threshold_cross_the_overlap() {
    let (_dir, server, mut client) = start_with(three_clusters()).await;
    only(&mut client, pb::AlertKind::OverlapCrossed).await;
    let in_both = |id: &str| upsert_actor(actor(id, &["a", "c"]));

    // One shared member of 4 + 4: Jaccard 1/8 = 0.125, under 0.2.
    let quiet = raised(&server, &mut client, vec![in_both("a1")]).await;
    assert!(quiet.is_empty(), "{quiet:?}");

    // Two: 2/8 = 0.25.
    let alerts = raised(&server, &mut client, vec![in_both("a2")]).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(kind(alert), pb::AlertKind::OverlapCrossed);
    assert_eq!(alert.cluster_ids, ["a", "c"]);
    assert_eq!(figure(alert, "member_jaccard"), (0.125, 0.25));

    // Back under: it crosses down.
    let alerts = raised(&server, &mut client, vec![upsert_actor(actor("a2", &["a"]))]).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(figure(&alerts[0], "member_jaccard"), (0.25, 0.125));
    server.stop().await;
}

#[tokio::test]
async fn a_cut_between_members_fragments_the_cluster_and_a_lost_leaf_does_not() {
    let (_dir, server, mut client) = start_with(three_clusters()).await;
    only(&mut client, pb::AlertKind::ClusterFragmented).await;

    // b1 - b2 - b3 - b4 without b4: still one piece.
    let quiet = raised(&server, &mut client, vec![delete_actor("b4")]).await;
    assert!(quiet.is_empty(), "{quiet:?}");

    // a1 - a2 | a3 - a4.
    let alerts = raised(
        &server,
        &mut client,
        vec![delete_link("a2", "a3", pb::LinkKind::Cooperation)],
    )
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(kind(alert), pb::AlertKind::ClusterFragmented);
    assert_eq!(alert.cluster_ids, ["a"]);
    assert_eq!(alert.actor_ids, ["a3", "a4"], "the part cut off");
    assert_eq!(figure(alert, "components"), (1.0, 2.0));
    assert_eq!(figure(alert, "largest_component"), (4.0, 2.0));
    assert_eq!(alert.severity, pb::Severity::Warning as i32);
    server.stop().await;
}

#[tokio::test]
async fn a_new_centre_of_the_cluster_is_a_centrality_shift() {
    let mut world = vec![upsert_cluster(cluster("hub", vec![]))];
    for i in 0..=5 {
        world.push(firm(&format!("h{i}"), "hub", "C2930"));
    }
    world.push(upsert_actor(actor("outsider", &[])));
    for i in 1..=3 {
        world.push(tie(&format!("h{i}"), "h0", pb::LinkKind::Supply));
    }
    let (_dir, server, mut client) = start_with(world).await;
    only(&mut client, pb::AlertKind::CentralityShift).await;
    client
        .set_alert_rules(pb::SetAlertRulesRequest {
            rules: Some(pb::AlertRules {
                centrality_top_k: 2,
                centrality_rank_move: 1,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["centrality_top_k".into(), "centrality_rank_move".into()],
            }),
        })
        .await
        .unwrap();
    // A top-k taken with another k is not compared: evaluate once with k = 2.
    let quiet = raised(&server, &mut client, vec![tie("outsider", "h4", pb::LinkKind::Supply)]).await;
    assert!(quiet.is_empty(), "{quiet:?}");
    let quiet = raised(&server, &mut client, vec![tie("h0", "outsider", pb::LinkKind::Supply)]).await;
    assert!(
        quiet.is_empty(),
        "ties outside the cluster move no rank inside it: {quiet:?}"
    );

    // Everyone now supplies h5, h0 included.
    let changes = (0..=4)
        .map(|i| tie(&format!("h{i}"), "h5", pb::LinkKind::Supply))
        .collect();
    let alerts = raised(&server, &mut client, changes).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(kind(alert), pb::AlertKind::CentralityShift);
    assert_eq!(alert.cluster_ids, ["hub"]);
    assert!(alert.actor_ids.contains(&"h5".to_string()), "{alert:?}");
    assert_eq!(figure(alert, "rank.h5"), (0.0, 1.0), "h5 enters at the top");
    let (before, after) = figure(alert, "pagerank.h5");
    assert!(after > before);
    assert_eq!(alert.severity, pb::Severity::Warning as i32, "the leader changed");
    server.stop().await;
}

async fn changning_sites(server: &TestServer) -> pb::Cluster {
    server
        .client()
        .await
        .get_cluster(pb::GetClusterRequest {
            id: demo::CHANGNING.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap()
}

#[tokio::test]
async fn changning_parks_in_one_place_lose_virtual_integration_and_regain_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let mut client = alerts_client(&server).await;
    let original = changning_sites(&server).await;

    let quiet = raised(
        &server,
        &mut client,
        vec![upsert_actor(actor("zj-newcomer", &[demo::ZHANGJIANG]))],
    )
    .await;
    let about_changning: Vec<_> = quiet
        .iter()
        .filter(|a| a.cluster_ids.contains(&demo::CHANGNING.to_string()))
        .collect();
    assert!(about_changning.is_empty(), "Zhangjiang's newcomer: {about_changning:?}");

    let mut together = original.clone();
    let (lat, lon) = (together.sites[0].lat, together.sites[0].lon);
    for site in &mut together.sites {
        (site.lat, site.lon) = (lat, lon);
    }
    let alerts = raised(&server, &mut client, vec![upsert_cluster(together)]).await;
    let of = |alerts: &[pb::Alert], k: pb::AlertKind| -> pb::Alert {
        let found: Vec<&pb::Alert> = alerts.iter().filter(|a| kind(a) == k).collect();
        assert_eq!(found.len(), 1, "one {k:?} in {alerts:?}");
        found[0].clone()
    };
    let lost = of(&alerts, pb::AlertKind::VirtualIntegrationLost);
    assert_eq!(lost.cluster_ids, [demo::CHANGNING]);
    let (before, after) = figure(&lost, "confidence");
    assert!(before >= 0.5 && after == 0.0, "{before} -> {after}");
    assert_eq!(figure(&lost, "parts"), (3.0, 0.0));
    let stage = of(&alerts, pb::AlertKind::StageChanged);
    assert_eq!(stage.cluster_ids, [demo::CHANGNING]);
    assert_eq!(
        figure(&stage, "stage"),
        (
            pb::Stage::VirtualIntegration as i32 as f64,
            pb::Stage::RegionalIntegration as i32 as f64
        )
    );
    let (before, after) = figure(&stage, "score.VIRTUAL_INTEGRATION");
    assert!(before > after, "{before} -> {after}");
    assert_eq!(stage.severity, pb::Severity::Warning as i32);
    assert!(
        stage.message.contains("VIRTUAL_INTEGRATION to REGIONAL_INTEGRATION"),
        "{}",
        stage.message
    );

    let alerts = raised(&server, &mut client, vec![upsert_cluster(original)]).await;
    let detected = of(&alerts, pb::AlertKind::VirtualIntegrationDetected);
    assert_eq!(detected.cluster_ids, [demo::CHANGNING]);
    assert_eq!(figure(&detected, "parts"), (0.0, 3.0));
    let stage = of(&alerts, pb::AlertKind::StageChanged);
    assert_eq!(figure(&stage, "stage").1, pb::Stage::VirtualIntegration as i32 as f64);
    server.stop().await;
}

#[tokio::test]
async fn rules_are_validated_by_field_persisted_and_listing_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = alerts_client(&server).await;
    let revision = apply(&server, three_clusters()).await;
    settle(&mut client, revision).await;

    let bad = client
        .set_alert_rules(pb::SetAlertRulesRequest {
            rules: Some(pb::AlertRules {
                overlap_threshold: 1.5,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["overlap_threshold".into()],
            }),
        })
        .await;
    assert_status(bad, Code::InvalidArgument, "rules.overlap_threshold");
    let bad = client
        .set_alert_rules(pb::SetAlertRulesRequest {
            rules: Some(pb::AlertRules::default()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["threshold".into()],
            }),
        })
        .await;
    assert_status(bad, Code::InvalidArgument, "update_mask.paths[0]");
    let bad = client.set_alert_rules(pb::SetAlertRulesRequest::default()).await;
    assert_status(bad, Code::InvalidArgument, "rules");
    let bad = client
        .list_alerts(pb::ListAlertsRequest {
            kinds: vec![42],
            ..Default::default()
        })
        .await;
    assert_status(bad, Code::InvalidArgument, "kinds[0]");
    let bad = client
        .list_alerts(pb::ListAlertsRequest {
            min_severity: 9,
            ..Default::default()
        })
        .await;
    assert_status(bad, Code::InvalidArgument, "min_severity");

    let set = client
        .set_alert_rules(pb::SetAlertRulesRequest {
            rules: Some(pb::AlertRules {
                overlap_threshold: 0.1,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["overlap_threshold".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .rules
        .expect("the rules in force");
    assert_eq!(set.overlap_threshold, 0.1);
    assert_eq!(set.centrality_top_k, 10, "fields outside the mask keep their values");

    // Six investments from a to c, one batch each, each evaluated on its
    // own (batches evaluated together make one alert per pair): six alerts,
    // then one from b to c.
    for (source, target) in [
        ("a1", "c1"),
        ("a1", "c3"),
        ("a2", "c1"),
        ("a2", "c3"),
        ("a3", "c1"),
        ("a4", "c1"),
        ("b1", "c4"),
    ] {
        let revision = apply(&server, vec![tie(source, target, pb::LinkKind::Investment)]).await;
        settle(&mut client, revision).await;
    }
    let crossing = listed(
        &mut client,
        pb::ListAlertsRequest {
            kinds: vec![pb::AlertKind::CrossInvestmentAdded as i32],
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(crossing.len(), 7, "{crossing:?}");
    assert!(crossing.windows(2).all(|w| w[0].sequence < w[1].sequence));
    // A real token, its sequence forged to the largest u64, does not wrap
    // around to the first alert.
    let first_page = pb::ListAlertsRequest {
        kinds: vec![pb::AlertKind::CrossInvestmentAdded as i32],
        page_size: 2,
        ..Default::default()
    };
    let token = client
        .list_alerts(first_page.clone())
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let forged = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut bytes = engine.decode(token).unwrap();
        let key = bytes.len() - 8;
        bytes[key..].copy_from_slice(&u64::MAX.to_be_bytes());
        engine.encode(bytes)
    };
    let bad = client
        .list_alerts(pb::ListAlertsRequest {
            page_token: forged,
            ..first_page
        })
        .await;
    assert_status(
        bad,
        Code::InvalidArgument,
        "page_token: is not a token this server issued",
    );
    let about_b = listed(
        &mut client,
        pb::ListAlertsRequest {
            kinds: vec![pb::AlertKind::CrossInvestmentAdded as i32],
            cluster_ids: vec!["b".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(about_b.len(), 1);
    assert_eq!(about_b[0].actor_ids, ["b1", "c4"]);
    let severe = listed(
        &mut client,
        pb::ListAlertsRequest {
            min_severity: pb::Severity::Critical as i32,
            ..Default::default()
        },
    )
    .await;
    assert!(severe.is_empty(), "{severe:?}");

    // A restart keeps the rules and the alerts.
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let mut client = alerts_client(&server).await;
    let rules = client
        .get_alert_rules(pb::GetAlertRulesRequest {})
        .await
        .unwrap()
        .into_inner()
        .rules
        .expect("the rules in force");
    assert_eq!(rules.overlap_threshold, 0.1);
    let again = listed(
        &mut client,
        pb::ListAlertsRequest {
            kinds: vec![pb::AlertKind::CrossInvestmentAdded as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(again, crossing);
    server.stop().await;
}

/// A batch written the moment the server serves, before its alert thread
/// has run, is evaluated as a change, not folded into the starting
/// baseline: its alert is raised.
#[tokio::test]
async fn a_write_right_after_the_start_raises_its_alert() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(dir.path(), ServerConfig::default()).await;
    let revision = apply(
        &server,
        vec![upsert_link(link("faw", "ks-firm-10", pb::LinkKind::Investment))],
    )
    .await;
    let mut client = alerts_client(&server).await;
    settle(&mut client, revision).await;
    let alerts = listed(&mut client, pb::ListAlertsRequest::default()).await;
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == pb::AlertKind::CrossInvestmentAdded as i32),
        "{alerts:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clusters_tied_into_one_chain_form_a_whole_and_its_alert_names_them_all() {
    use clusternet::synthetic::{three_cities, ThreeCities, THREE_CITIES};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = alerts_client(&server).await;
    let sparse = three_cities(&ThreeCities {
        ties_per_pair: 2,
        ..ThreeCities::default()
    });
    let dense = three_cities(&ThreeCities::default());
    let more: Vec<_> = dense.iter().filter(|c| !sparse.contains(c)).cloned().collect();
    let first = server.store().apply(sparse).await.unwrap().revision;
    settle(&mut client, first).await;
    let latest = latest_sequence(&mut client).await;
    let revision = server.store().apply(more).await.unwrap().revision;
    settle(&mut client, revision).await;
    let wholes: Vec<pb::Alert> = listed(
        &mut client,
        pb::ListAlertsRequest {
            from_sequence: latest + 1,
            kinds: vec![pb::AlertKind::WholeFormed as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(wholes.len(), 1, "{wholes:?}");
    let mut clusters = THREE_CITIES.to_vec();
    clusters.sort();
    assert_eq!(wholes[0].cluster_ids, clusters);
    assert_eq!(figure(&wholes[0], "parts"), (0.0, 3.0));
    assert!(
        wholes[0].message.contains("now form the virtual whole W"),
        "{}",
        wholes[0].message
    );
    server.stop().await;
}

/// Six clusters, nested: cluster `n<i>` has one firm in each of the
/// industries C1010 .. C10<i>0, so every cluster's specialisations differ
/// and ECI is defined.
fn nested_clusters() -> Vec<pb::Change> {
    let mut changes = Vec::new();
    for c in 0..6 {
        let id = format!("n{c}");
        changes.push(upsert_cluster(cluster(&id, vec![])));
        for i in 0..=c {
            changes.push(firm(&format!("{id}-{i}"), &id, &format!("C10{}0", i + 1)));
        }
    }
    changes
}

#[tokio::test]
async fn firms_entering_a_cluster_in_a_new_industry_raise_its_specialisation_and_complexity() {
    let (_dir, server, mut client) = start_with(nested_clusters()).await;
    client
        .set_alert_rules(pb::SetAlertRulesRequest {
            rules: Some(pb::AlertRules {
                eci_shift: 0.01,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["eci_shift".into()],
            }),
        })
        .await
        .unwrap();
    // n0 (only C1010) takes on three firms in C1060, which only n5 had.
    let entering = (0..3).map(|i| firm(&format!("n0-new-{i}"), "n0", "C1060")).collect();
    let alerts = raised(&server, &mut client, entering).await;
    let of = |k: pb::AlertKind| alerts.iter().filter(|a| kind(a) == k).collect::<Vec<_>>();
    let gained = of(pb::AlertKind::SpecialisationGained);
    assert_eq!(gained.len(), 1, "{alerts:#?}");
    assert_eq!(gained[0].cluster_ids, ["n0"]);
    let (before, after) = figure(gained[0], "rca.C1060");
    assert!(before == 0.0 && after >= 1.0, "{before} -> {after}");
    assert!(gained[0].message.contains("C1060"), "{}", gained[0].message);
    let shift = of(pb::AlertKind::ComplexityShift);
    assert_eq!(shift.len(), 1, "{alerts:#?}");
    let (before, after) = figure(shift[0], "eci");
    assert!((after - before).abs() >= 0.01);
    // A tie between members changes no member: none of these.
    let quiet = raised(
        &server,
        &mut client,
        vec![tie("n0-0", "n0-new-0", pb::LinkKind::Cooperation)],
    )
    .await;
    assert!(quiet.iter().all(|a| !matches!(
        kind(a),
        pb::AlertKind::SpecialisationGained | pb::AlertKind::SpecialisationLost | pb::AlertKind::ComplexityShift
    )));
    // Rules kept the threshold.
    let rules = client
        .get_alert_rules(pb::GetAlertRulesRequest {})
        .await
        .unwrap()
        .into_inner()
        .rules
        .unwrap();
    assert_eq!(rules.eci_shift, 0.01);
    server.stop().await;
}
