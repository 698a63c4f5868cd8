//! NetworkService: writes, reads, paging, neighbourhoods and bad input.

use std::collections::BTreeSet;

use clusternet::store::StoreConfig;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn every_entity_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let changning = cluster(
        "changning",
        vec![site("east", 31.2197, 121.4174), site("west", 31.1979, 121.3378)],
    );
    let mut full = actor("studio", &["changning"]);
    full.kind = pb::ActorKind::Platform as i32;
    full.segments = vec![pb::Segment::Design as i32, pb::Segment::Marketing as i32];
    full.site_id = "east".into();
    full.employees = Some(42);
    full.revenue = Some(12.5);
    full.valid_from = "2010-03-01".into();
    full.valid_to = "2030-12-31".into();
    let mut platform_link = link("studio", "agency", pb::LinkKind::Platform);
    platform_link.channel = pb::Channel::Virtual as i32;
    platform_link.weight = 2.5;
    platform_link.valid_from = "2012-01-01".into();
    let metro = pb::ClusterLink {
        source: "east".into(),
        target: "west".into(),
        kind: pb::ClusterLinkKind::Transport as i32,
        channel: pb::Channel::Physical as i32,
        weight: 3.0,
    };
    let reply = client
        .apply_changes(batch(vec![
            upsert_cluster(changning.clone()),
            upsert_actor(full.clone()),
            upsert_actor(actor("agency", &[])),
            upsert_link(platform_link.clone()),
            upsert_cluster_link(metro.clone()),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.revision, 1);
    let counts = reply.counts.unwrap();
    assert_eq!(
        (
            counts.clusters_upserted,
            counts.actors_upserted,
            counts.links_upserted,
            counts.cluster_links_upserted
        ),
        (1, 2, 1, 1)
    );

    let got = client
        .get_cluster(pb::GetClusterRequest { id: "changning".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.cluster.unwrap(), got.revision), (changning, 1));
    let got = client
        .get_actor(pb::GetActorRequest { id: "studio".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.actor.unwrap(), full);
    let links = client
        .list_links(pb::ListLinksRequest::default())
        .await
        .unwrap()
        .into_inner();
    // PLATFORM links are undirected: stored with the smaller id first.
    let mut stored = platform_link.clone();
    (stored.source, stored.target) = ("agency".into(), "studio".into());
    assert_eq!(links.links, vec![stored]);
    let cluster_links = client
        .list_cluster_links(pb::ListClusterLinksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cluster_links.cluster_links, vec![metro]);

    // Deletes, addressed by key (either endpoint order for undirected kinds).
    let reply = client
        .apply_changes(batch(vec![
            change(pb::change::Change::DeleteLink(pb::LinkKey {
                source: "studio".into(),
                target: "agency".into(),
                kind: pb::LinkKind::Platform as i32,
            })),
            change(pb::change::Change::DeleteClusterLink(pb::ClusterLinkKey {
                source: "east".into(),
                target: "west".into(),
                kind: pb::ClusterLinkKind::Transport as i32,
            })),
            change(pb::change::Change::DeleteActor(pb::DeleteActor {
                id: "studio".into(),
                cascade: false,
            })),
            change(pb::change::Change::DeleteCluster(pb::DeleteCluster {
                id: "changning".into(),
                cascade: false,
            })),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.revision, 2);
    assert_status(
        client.get_actor(pb::GetActorRequest { id: "studio".into() }).await,
        Code::NotFound,
        "studio",
    );
    assert_status(
        client
            .get_cluster(pb::GetClusterRequest { id: "changning".into() })
            .await,
        Code::NotFound,
        "changning",
    );
    server.stop().await;
}

fn change(change: pb::change::Change) -> pb::Change {
    pb::Change { change: Some(change) }
}

#[tokio::test]
async fn a_batch_with_one_bad_item_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    client
        .apply_changes(batch(vec![upsert_actor(actor("kept", &[]))]))
        .await
        .unwrap();
    let mut bad = link("new-1", "new-2", pb::LinkKind::Supply);
    bad.weight = -1.0;
    let result = client
        .apply_changes(batch(vec![
            upsert_actor(actor("new-1", &[])),
            upsert_actor(actor("new-2", &[])),
            change(pb::change::Change::DeleteActor(pb::DeleteActor {
                id: "kept".into(),
                cascade: true,
            })),
            upsert_link(bad),
        ]))
        .await;
    assert_status(result, Code::InvalidArgument, "changes[3].upsert_link.weight");
    for id in ["new-1", "new-2"] {
        assert_status(
            client.get_actor(pb::GetActorRequest { id: id.into() }).await,
            Code::NotFound,
            id,
        );
    }
    let kept = client
        .get_actor(pb::GetActorRequest { id: "kept".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.revision, 1, "the failed batch made no revision");
    server.stop().await;
}

#[tokio::test]
async fn paging_visits_every_row_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let mut changes = vec![
        upsert_cluster(cluster("even", vec![])),
        upsert_cluster(cluster("odd", vec![])),
    ];
    for n in 0..250 {
        let home = if n % 2 == 0 { "even" } else { "odd" };
        changes.push(upsert_actor(actor(&format!("a{n:03}"), &[home])));
        if n > 0 {
            changes.push(upsert_link(link(
                &format!("a{:03}", n - 1),
                &format!("a{n:03}"),
                pb::LinkKind::Supply,
            )));
        }
    }
    // a000 also has out-links to a200..a219 and in-links from a100..a129, so
    // its own listing crosses from out-links to in-links mid-page.
    for n in 100..130 {
        changes.push(upsert_link(link(&format!("a{n:03}"), "a000", pb::LinkKind::Investment)));
    }
    for n in 200..220 {
        changes.push(upsert_link(link("a000", &format!("a{n:03}"), pb::LinkKind::Ownership)));
    }
    client.apply_changes(batch(changes)).await.unwrap();

    let around_hub = all_links(
        &mut client,
        pb::ListLinksRequest {
            page_size: 4,
            actor_id: "a000".into(),
            ..Default::default()
        },
    )
    .await;
    let distinct: BTreeSet<_> = around_hub.iter().map(|l| (&l.source, &l.target, l.kind)).collect();
    assert!(around_hub.iter().all(|l| l.source == "a000" || l.target == "a000"));
    assert_eq!((around_hub.len(), distinct.len()), (1 + 30 + 20, 1 + 30 + 20));

    let everyone = all_actors(
        &mut client,
        pb::ListActorsRequest {
            page_size: 7,
            ..Default::default()
        },
    )
    .await;
    let ids: Vec<String> = everyone.into_iter().map(|a| a.id).collect();
    let expected: Vec<String> = (0..250).map(|n| format!("a{n:03}")).collect();
    assert_eq!(ids, expected, "every actor once, in id order");

    let odd = all_actors(
        &mut client,
        pb::ListActorsRequest {
            page_size: 10,
            cluster_id: "odd".into(),
            ..Default::default()
        },
    )
    .await;
    let distinct: BTreeSet<_> = odd.iter().map(|a| &a.id).collect();
    assert_eq!((odd.len(), distinct.len()), (125, 125));

    let links = all_links(
        &mut client,
        pb::ListLinksRequest {
            page_size: 13,
            ..Default::default()
        },
    )
    .await;
    let distinct: BTreeSet<_> = links.iter().map(|l| (&l.source, &l.target, l.kind)).collect();
    assert_eq!((links.len(), distinct.len()), (249 + 30 + 20, 249 + 30 + 20));
    server.stop().await;
}

#[tokio::test]
async fn the_neighborhood_holds_actors_within_depth_and_the_links_among_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    // a -> b -> c -> d supply chain, and an informal tie a - e.
    let mut changes: Vec<pb::Change> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|id| upsert_actor(actor(id, &[])))
        .collect();
    for (s, t) in [("a", "b"), ("b", "c"), ("c", "d")] {
        changes.push(upsert_link(link(s, t, pb::LinkKind::Supply)));
    }
    changes.push(upsert_link(link("a", "e", pb::LinkKind::Informal)));
    client.apply_changes(batch(changes)).await.unwrap();

    let near = client
        .get_neighborhood(pb::GetNeighborhoodRequest {
            actor_id: "b".into(),
            depth: 2,
            kinds: vec![pb::LinkKind::Supply as i32],
            max_actors: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = near.actors.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["b", "a", "c", "d"]);
    assert_eq!(near.hops, [0, 1, 1, 2]);
    assert_eq!(near.links.len(), 3, "the informal tie is not followed");
    assert!(!near.truncated);

    let capped = client
        .get_neighborhood(pb::GetNeighborhoodRequest {
            actor_id: "a".into(),
            depth: 3,
            kinds: vec![],
            max_actors: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capped.actors.len(), 2);
    assert!(capped.truncated);
    server.stop().await;
}

#[tokio::test]
async fn each_bad_input_gets_its_status_and_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        max_batch_changes: 50,
        ..StoreConfig::default()
    };
    let server = TestServer::start_with(dir.path(), config).await;
    let mut client = server.client().await;
    client
        .apply_changes(batch(vec![
            upsert_cluster(cluster("c", vec![site("park", 31.0, 121.0)])),
            upsert_actor(actor("a", &["c"])),
            upsert_actor(actor("b", &["c"])),
            upsert_link(link("a", "b", pb::LinkKind::Supply)),
        ]))
        .await
        .unwrap();

    let one = |c: pb::Change| batch(vec![c]);
    let with_link = |edit: fn(&mut pb::Link)| {
        let mut l = link("a", "b", pb::LinkKind::Cooperation);
        edit(&mut l);
        batch(vec![upsert_link(l)])
    };
    let cases: Vec<(&str, pb::ApplyChangesRequest, Code, &str)> = vec![
        (
            "empty id",
            one(upsert_actor(actor("", &[]))),
            Code::InvalidArgument,
            "changes[0].upsert_actor.id",
        ),
        (
            "zero weight",
            with_link(|l| l.weight = 0.0),
            Code::InvalidArgument,
            "changes[0].upsert_link.weight",
        ),
        (
            "NaN weight",
            with_link(|l| l.weight = f64::NAN),
            Code::InvalidArgument,
            "changes[0].upsert_link.weight",
        ),
        (
            "latitude out of range",
            one(upsert_cluster(cluster("d", vec![site("p2", 91.0, 0.0)]))),
            Code::InvalidArgument,
            "changes[0].upsert_cluster.sites[0].lat",
        ),
        (
            "longitude out of range",
            one(upsert_cluster(cluster("d", vec![site("p2", 0.0, -180.5)]))),
            Code::InvalidArgument,
            "changes[0].upsert_cluster.sites[0].lon",
        ),
        (
            "valid_to before valid_from",
            with_link(|l| {
                l.valid_from = "2020-01-01".into();
                l.valid_to = "2019-12-31".into();
            }),
            Code::InvalidArgument,
            "changes[0].upsert_link.valid_to",
        ),
        (
            "malformed date",
            with_link(|l| l.valid_from = "2020-02-30".into()),
            Code::InvalidArgument,
            "changes[0].upsert_link.valid_from",
        ),
        (
            "unknown enum value",
            with_link(|l| l.kind = 99),
            Code::InvalidArgument,
            "changes[0].upsert_link.kind",
        ),
        (
            "unset enum value",
            with_link(|l| l.channel = 0),
            Code::InvalidArgument,
            "changes[0].upsert_link.channel",
        ),
        (
            "self-loop",
            with_link(|l| l.target = "a".into()),
            Code::InvalidArgument,
            "changes[0].upsert_link.target",
        ),
        (
            "empty change",
            batch(vec![pb::Change { change: None }]),
            Code::InvalidArgument,
            "changes[0]",
        ),
        (
            "link to an actor that does not exist",
            one(upsert_link(link("a", "ghost", pb::LinkKind::Supply))),
            Code::FailedPrecondition,
            "changes[0].upsert_link.target",
        ),
        (
            "actor in a cluster that does not exist",
            one(upsert_actor(actor("x", &["nowhere"]))),
            Code::FailedPrecondition,
            "changes[0].upsert_actor.cluster_ids[0]",
        ),
        (
            "deleting an actor that has links",
            one(change(pb::change::Change::DeleteActor(pb::DeleteActor {
                id: "a".into(),
                cascade: false,
            }))),
            Code::FailedPrecondition,
            "changes[0].delete_actor.cascade",
        ),
        (
            "deleting a cluster that has members",
            one(change(pb::change::Change::DeleteCluster(pb::DeleteCluster {
                id: "c".into(),
                cascade: false,
            }))),
            Code::FailedPrecondition,
            "changes[0].delete_cluster.cascade",
        ),
        (
            "deleting an unknown actor",
            one(change(pb::change::Change::DeleteActor(pb::DeleteActor {
                id: "ghost".into(),
                cascade: true,
            }))),
            Code::NotFound,
            "changes[0].delete_actor.id",
        ),
        (
            "a batch with no changes",
            batch(vec![]),
            Code::InvalidArgument,
            "changes: the batch is empty",
        ),
        (
            "a name over 1,024 bytes",
            one(upsert_actor(pb::Actor {
                name: "n".repeat(1_025),
                ..actor("long", &[])
            })),
            Code::InvalidArgument,
            "changes[0].upsert_actor.name: is 1025 bytes long; at most 1024 allowed",
        ),
        (
            "a site name over 1,024 bytes",
            one(upsert_cluster(cluster(
                "c2",
                vec![pb::Site {
                    name: "s".repeat(2_000),
                    ..site("s1", 31.0, 121.0)
                }],
            ))),
            Code::InvalidArgument,
            "changes[0].upsert_cluster.sites[0].name",
        ),
        (
            "more than 1,000 sites",
            one(upsert_cluster(cluster(
                "c3",
                (0..1_001).map(|i| site(&format!("s{i}"), 31.0, 121.0)).collect(),
            ))),
            Code::InvalidArgument,
            "changes[0].upsert_cluster.sites: has 1001 entries; at most 1000 allowed",
        ),
        (
            "a site listed twice among a thousand",
            one(upsert_cluster(cluster(
                "c4",
                (0..1_000)
                    .map(|i| site(&format!("s{}", i.min(998)), 31.0, 121.0))
                    .collect(),
            ))),
            Code::InvalidArgument,
            "changes[0].upsert_cluster.sites[999].id: site 's998' is listed twice",
        ),
        (
            "more than 256 clusters for one actor",
            one(upsert_actor(actor(
                "many",
                &(0..257)
                    .map(|i| format!("k{i}"))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ))),
            Code::InvalidArgument,
            "changes[0].upsert_actor.cluster_ids: has 257 entries",
        ),
        (
            "batch over the configured size",
            batch((0..51).map(|n| upsert_actor(actor(&format!("n{n}"), &[]))).collect()),
            Code::ResourceExhausted,
            "changes",
        ),
    ];
    for (what, request, code, field) in cases {
        let status = client.apply_changes(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {}", status.message());
        assert!(
            status.message().contains(field),
            "{what}: '{}' should name {field}",
            status.message()
        );
    }

    assert_status(
        client.get_actor(pb::GetActorRequest { id: "ghost".into() }).await,
        Code::NotFound,
        "ghost",
    );
    assert_status(
        client.get_cluster(pb::GetClusterRequest { id: String::new() }).await,
        Code::InvalidArgument,
        "id",
    );
    // An error never carries a long input back whole.
    let long_id = "x".repeat(100_000);
    for status in [
        client
            .get_actor(pb::GetActorRequest { id: long_id.clone() })
            .await
            .expect_err("no such actor"),
        client
            .get_neighborhood(pb::GetNeighborhoodRequest {
                actor_id: long_id.clone(),
                depth: 1,
                ..Default::default()
            })
            .await
            .expect_err("no such actor"),
    ] {
        assert!(status.message().len() <= 1_100, "{} bytes", status.message().len());
    }
    assert_status(
        client
            .list_actors(pb::ListActorsRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_size",
    );
    assert_status(
        client
            .list_links(pb::ListLinksRequest {
                page_size: 5000,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_size",
    );
    assert_status(
        client
            .list_clusters(pb::ListClustersRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_status(
        client
            .list_actors(pb::ListActorsRequest {
                cluster_id: "nowhere".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "cluster_id",
    );
    assert_status(
        client
            .list_actors(pb::ListActorsRequest {
                kind: 42,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "kind",
    );
    assert_status(
        client
            .get_neighborhood(pb::GetNeighborhoodRequest {
                actor_id: "a".into(),
                depth: 4,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "depth",
    );
    // Nothing above was written.
    let actors = client
        .list_actors(pb::ListActorsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(actors.revision, 1);
    assert_eq!(actors.actors.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_batches_get_distinct_increasing_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut tasks = Vec::new();
    for n in 0..20 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            client
                .apply_changes(batch(vec![upsert_actor(actor(&format!("w{n}"), &[]))]))
                .await
                .unwrap()
                .into_inner()
                .revision
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.push(task.await.unwrap());
    }
    revisions.sort();
    assert_eq!(revisions, (1..=20).collect::<Vec<u64>>());
    assert_eq!(server.store().snapshot().network.actors.len(), 20);
    server.stop().await;
}

#[tokio::test]
async fn an_oversize_message_is_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let config = clusternet::service::server::ServerConfig {
        max_message_bytes: 1 << 20,
        ..Default::default()
    };
    let server = TestServer::start_configured(dir.path(), Default::default(), config).await;
    let mut client = server.client().await;
    let big: Vec<pb::Change> = (0..3_000)
        .map(|i| {
            upsert_actor(pb::Actor {
                name: "n".repeat(1_000),
                ..actor(&format!("a{i}"), &[])
            })
        })
        .collect();
    let status = client.apply_changes(batch(big)).await.expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{}", status.message());
    assert!(
        status.message().contains("the limit is: 1048576 bytes"),
        "{}",
        status.message()
    );
    // Nothing was written, and a message within the limit still goes through.
    client
        .apply_changes(batch(vec![upsert_actor(actor("small", &[]))]))
        .await
        .unwrap();
    server.stop().await;
}
