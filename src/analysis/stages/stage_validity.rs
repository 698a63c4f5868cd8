//! The stage verdicts checked on networks no one tuned them on: random null
//! models, near misses, clusters padded with unrelated data, and each demo
//! cluster loaded alone. The figures the calibration in docs/stages.md
//! quotes come from the same generators (`cargo bench --bench analysis --
//! calibration`).

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::analysis::{
    stages::stage::{Assessment, Stage},
    stages::virtual_integration::Pattern,
};
use crate::{
    demo,
    graph::GraphFilter,
    model::{
        Actor, ActorKind, Change, Channel, Cluster, ClusterLink, ClusterLinkKind, Id, Link, LinkKind, Segment, Site,
    },
    network::Network,
    synthetic::{districts, null_models, specialised_districts, Districts},
    testing::{self, assess_all, detect_all, network},
};

fn only(cluster: &str) -> GraphFilter {
    GraphFilter {
        clusters: vec![cluster.into()],
        ..GraphFilter::default()
    }
}

fn assessment(network: &Network, cluster: &str) -> Assessment {
    let mut found = assess_all(network, &only(cluster));
    assert_eq!(found.len(), 1);
    found.remove(0)
}

fn patterns_of(network: &Network, cluster: &str) -> Vec<Pattern> {
    detect_all(network, &GraphFilter::default())
        .into_iter()
        .filter(|p| p.single_cluster().is_some_and(|c| &**c == cluster))
        .collect()
}

fn gate(a: &Assessment, stage: Stage, name: &str) -> (f64, bool) {
    let score = a.scores.iter().find(|s| s.stage == stage).unwrap();
    let g = score.gates.iter().find(|g| g.name == name).unwrap();
    (g.value, g.met)
}

#[test]
fn random_networks_with_random_parks_are_rarely_virtual() {
    let (mut multi_place, mut judged_virtual, mut networks, mut with_patterns) = (0, 0, 0, 0);
    for model in null_models(60) {
        let network = network(districts(&model));
        for a in assess_all(&network, &GraphFilter::default()) {
            if a.evidence.places.len() >= 2 {
                multi_place += 1;
                judged_virtual += usize::from(a.stage == Stage::VirtualIntegration);
            }
        }
        networks += 1;
        with_patterns += usize::from(!detect_all(&network, &GraphFilter::default()).is_empty());
    }
    assert!(multi_place >= 300, "{multi_place} multi-place clusters");
    assert!(
        judged_virtual * 20 <= multi_place,
        "{judged_virtual} of {multi_place} random clusters judged VIRTUAL"
    );
    assert!(
        with_patterns * 20 <= networks,
        "patterns in {with_patterns} of {networks} random networks"
    );
}

#[test]
fn specialised_interacting_parks_joined_by_a_platform_are_found() {
    // The calibration's built cases: each park its own segments, 40% of
    // ties between parks, half of them online, a platform.
    let (mut clusters, mut virtual_ones) = (0, 0);
    for model in specialised_districts(3) {
        let network = network(districts(&model));
        let assessments = assess_all(&network, &GraphFilter::default());
        clusters += assessments.len();
        virtual_ones += assessments
            .iter()
            .filter(|a| a.stage == Stage::VirtualIntegration)
            .count();
    }
    // Some miss a gate: small parks whose specialisation cannot be told
    // from chance, or mixes that do not reach final customers.
    assert!(virtual_ones * 10 >= clusters * 6, "{virtual_ones} of {clusters} found");
}
#[test]
fn the_interaction_figure_grows_with_the_share_of_ties_between_places() {
    let mean_ratio = |share: f64| {
        let model = Districts {
            prefix: "mix".into(),
            clusters: 6,
            members: 80..=80,
            parks: 2..=2,
            degree: 8.0,
            between_parks: Some(share),
            specialised: true,
            ..Districts::default()
        };
        let network = network(districts(&model));
        let all = assess_all(&network, &GraphFilter::default());
        all.iter().map(|a| a.evidence.place_interaction).sum::<f64>() / all.len() as f64
    };
    let ratios: Vec<f64> = [0.02, 0.1, 0.25, 0.4, 0.5].into_iter().map(mean_ratio).collect();
    assert!(ratios.windows(2).all(|w| w[0] < w[1]), "{ratios:?}");
    // Half of the ties between two parks of equal volume is what chance gives.
    assert!((ratios[4] - 1.0).abs() < 0.1, "{ratios:?}");
}

/// Two parks of 30 firms with 100 ties inside each and `between` ties
/// between them, joined by a platform and a metro line, each park with its
/// own segments, beside 1,000 unrelated actors.
fn two_parks(between: usize) -> Network {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut changes = districts(&Districts {
        prefix: "pad".into(),
        clusters: 25,
        members: 40..=40,
        ..Districts::default()
    });
    let site = |id: &str, lat: f64| Site {
        id: id.into(),
        name: id.into(),
        lat,
        lon: 121.4,
    };
    changes.push(Change::UpsertCluster(Cluster {
        country: "CN".parse().ok(),
        sites: vec![site("east", 31.20), site("west", 31.25)],
        ..testing::cluster("parks")
    }));
    let firm = |park: &str, i: usize| format!("{park}-{i:02}");
    for (park, segments) in [
        ("east", [Segment::Design, Segment::ProductDevelopment]),
        ("west", [Segment::Marketing, Segment::Sales]),
    ] {
        for i in 0..30 {
            changes.push(Change::UpsertActor(Actor {
                site_id: Some(park.into()),
                segments: segments.into_iter().collect(),
                country: "CN".parse().ok(),
                ..testing::actor(&firm(park, i), &["parks"])
            }));
        }
    }
    changes.push(Change::UpsertActor(Actor {
        kind: ActorKind::Platform,
        ..testing::actor("platform", &[])
    }));
    let mut links = Vec::new();
    for park in ["east", "west"] {
        for i in 0..30 {
            links.push(Link {
                channel: Channel::Virtual,
                ..testing::link("platform", &firm(park, i), LinkKind::Platform)
            });
        }
        while links
            .iter()
            .filter(|l| l.source.starts_with(park) && l.target.starts_with(park))
            .count()
            < 100
        {
            let (a, b) = (rng.gen_range(0..30), rng.gen_range(0..30));
            let Ok(l) = testing::link(&firm(park, a), &firm(park, b), LinkKind::Cooperation).validated() else {
                continue;
            };
            if a != b && !links.iter().any(|k: &Link| k.key() == l.key()) {
                links.push(l);
            }
        }
    }
    let mut crossing = 0;
    while crossing < between {
        let (a, b) = (rng.gen_range(0..30), rng.gen_range(0..30));
        let l = Link {
            channel: Channel::Virtual,
            ..testing::link(&firm("east", a), &firm("west", b), LinkKind::Cooperation)
        };
        if !links.iter().any(|k| k.key() == l.key()) {
            links.push(l);
            crossing += 1;
        }
    }
    changes.extend(links.into_iter().map(Change::UpsertLink));
    changes.push(Change::UpsertClusterLink(ClusterLink {
        source: "east".into(),
        target: "west".into(),
        kind: ClusterLinkKind::Transport,
        channel: Channel::Physical,
        weight: 1.0,
    }));
    network(changes)
}

#[test]
fn a_few_ties_between_parks_among_many_inside_do_not_make_a_virtual_whole() {
    let network = two_parks(2);
    let parks = assessment(&network, "parks");
    assert_ne!(parks.stage, Stage::VirtualIntegration, "{}", parks.explanation());
    let (ratio, met) = gate(&parks, Stage::VirtualIntegration, "place_interaction");
    assert!(!met && ratio < 0.05, "{ratio}");
    assert!(
        parks.explanation().contains("place_interaction"),
        "{}",
        parks.explanation()
    );
    assert!(patterns_of(&network, "parks").is_empty());

    // The same parks trading as much between as inside are one whole:
    // 100 of 300 ties between two parks of equal volume, 2/3 of chance.
    let network = two_parks(100);
    let parks = assessment(&network, "parks");
    assert_eq!(parks.stage, Stage::VirtualIntegration, "{}", parks.explanation());
    let (ratio, _) = gate(&parks, Stage::VirtualIntegration, "place_interaction");
    assert!((ratio - 2.0 / 3.0).abs() < 1e-9, "{ratio}");
    assert_eq!(patterns_of(&network, "parks").first(), parks.pattern.as_ref());
}

#[test]
fn parks_without_a_platform_or_with_one_industry_are_no_virtual_whole_and_say_why() {
    let mut network = two_parks(100);
    network
        .apply(&[Change::DeleteActor {
            id: "platform".into(),
            cascade: true,
        }])
        .unwrap();
    let parks = assessment(&network, "parks");
    assert_ne!(parks.stage, Stage::VirtualIntegration);
    assert_eq!(gate(&parks, Stage::VirtualIntegration, "joined"), (0.0, false));
    assert!(parks.explanation().contains("joined 0.00 is below its floor 1.00"));
    assert!(patterns_of(&network, "parks").is_empty(), "the two RPCs agree");
}

fn padded(cluster_seed: u64, specialised: bool, before: usize, after: usize, pad_seed: u64) -> Vec<Change> {
    let pad = |prefix: &str, clusters: usize, seed: u64| {
        districts(&Districts {
            prefix: prefix.into(),
            clusters,
            seed,
            ..Districts::default()
        })
    };
    let own = districts(&Districts {
        prefix: "own".into(),
        clusters: 1,
        members: 20..=60,
        parks: 1..=3,
        between_parks: specialised.then_some(0.4),
        specialised,
        seed: cluster_seed,
        ..Districts::default()
    });
    let mut changes = pad("before", before, pad_seed);
    changes.extend(own);
    changes.extend(pad("after", after, pad_seed + 1));
    changes
}

const OWN: &str = "own-cluster-000";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Unrelated actors and clusters, stored before and after the cluster
    /// (so its actors get other indexes), change nothing about it.
    #[test]
    fn unrelated_clusters_change_none_of_a_clusters_figures(
        cluster_seed in 0u64..1_000,
        specialised in any::<bool>(),
        before in 0usize..6,
        after in 1usize..6,
        pad_seed in 0u64..1_000,
    ) {
        let alone = network(padded(cluster_seed, specialised, 0, 0, pad_seed));
        let with_others = network(padded(cluster_seed, specialised, before, after, pad_seed));
        prop_assert_eq!(assessment(&alone, OWN), assessment(&with_others, OWN));
        let all = assess_all(&with_others, &GraphFilter::default());
        prop_assert_eq!(Some(&assessment(&alone, OWN)), all.iter().find(|a| &*a.cluster == OWN));
        prop_assert_eq!(patterns_of(&alone, OWN), patterns_of(&with_others, OWN));
    }

    /// Assessing some clusters (as the alert engine does, reading only their
    /// members and those of the clusters they are tied to) gives each the
    /// same assessment as assessing them all, on networks whose clusters
    /// share members and ties.
    #[test]
    fn assessing_some_clusters_gives_each_what_assessing_all_gives(
        changes in testing::arbitrary_clustered_network(false),
        which in prop::collection::vec(0usize..3, 1..3),
    ) {
        let network = network(changes);
        let all = assess_all(&network, &GraphFilter::default());
        let named: Vec<Id> = which.iter().map(|&i| Id::from(["A", "B", "C"][i])).collect();
        let some = assess_all(&network, &GraphFilter { clusters: named.clone(), ..GraphFilter::default() });
        prop_assert!(!some.is_empty());
        for assessment in &some {
            prop_assert!(named.contains(&assessment.cluster));
            prop_assert_eq!(Some(assessment), all.iter().find(|a| a.cluster == assessment.cluster));
        }
    }

    /// Links read once for all the figures (as the alert engine reads a
    /// round's clusters), for every actor or only some, change no
    /// assessment and no pattern.
    #[test]
    fn figures_from_links_read_once_equal_figures_read_from_the_network(
        changes in testing::arbitrary_clustered_network(false),
        which in prop::collection::vec(0usize..3, 1..3),
        read_every in 1usize..4,
    ) {
        use crate::{
            analysis::{stages::{stage::assess_with, stage_config::StageConfig, virtual_integration::detect_with, StageContext}, Control},
            network::ties::Ties,
        };
        let network = network(changes);
        let named: Vec<Id> = which.iter().map(|&i| Id::from(["A", "B", "C"][i])).collect();
        let filter = GraphFilter { clusters: named, ..GraphFilter::default() };
        let ties = Ties::read(&network, (0..network.actor_at.len() as u32).step_by(read_every));
        let config = StageConfig::default();
        let control = Control::none();
        let ctx = StageContext { network: &network, filter: &filter, config: &config, control: &control };
        let read_once = assess_with(ctx, Some(&ties)).unwrap();
        prop_assert_eq!(read_once, assess_all(&network, &filter));
        let read_once = detect_with(ctx, Some(&ties)).unwrap();
        prop_assert_eq!(read_once, testing::detect_all(&network, &filter));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Assessed and searched for patterns from one reading of its places,
    /// each cluster of parks (among unrelated ones) gets the assessment
    /// `assess` gives and the patterns `detect` finds in it alone.
    #[test]
    fn assessing_and_detecting_together_equals_each_alone(
        cluster_seed in 0u64..1_000,
        before in 0usize..4,
        after in 0usize..4,
        pad_seed in 0u64..1_000,
        read_every in 1usize..4,
    ) {
        let network = network(padded(cluster_seed, true, before, after, pad_seed));
        every_cluster_assessed_and_detected_as_alone(&network, read_every);
    }
}

fn every_cluster_assessed_and_detected_as_alone(network: &Network, read_every: usize) -> usize {
    use crate::{
        analysis::{
            stages::{stage::assess_and_detect_with, stage_config::StageConfig, StageContext},
            Control,
        },
        network::ties::Ties,
    };
    let ties = Ties::read(network, (0..network.actor_at.len() as u32).step_by(read_every));
    let every = GraphFilter {
        clusters: network.clusters.keys().cloned().collect(),
        ..GraphFilter::default()
    };
    let (config, control) = (StageConfig::default(), Control::none());
    let ctx = StageContext {
        network,
        filter: &every,
        config: &config,
        control: &control,
    };
    let together = assess_and_detect_with(ctx, Some(&ties)).unwrap();
    assert_eq!(together.len(), network.clusters.len());
    let mut patterns = 0;
    for (assessment, found) in together {
        assert_eq!(assessment, self::assessment(network, &assessment.cluster));
        assert_eq!(
            found,
            patterns_of(network, &assessment.cluster),
            "{}",
            assessment.cluster
        );
        patterns += found.len();
    }
    patterns
}

#[test]
fn the_demo_clusters_assessed_and_detected_together_are_as_alone() {
    let demo = network(demo::demo_changes());
    for read_every in [1, 2] {
        let patterns = every_cluster_assessed_and_detected_as_alone(&demo, read_every);
        assert!(
            patterns > 0,
            "the demo has virtual clusters, so the comparison compares patterns"
        );
    }
}

/// One demo cluster with its members, their links and the actors at the
/// other ends (stripped of their own clusters, which are not loaded).
fn demo_cluster_alone(cluster: &str) -> Network {
    let full = network(demo::demo_changes());
    let members: std::collections::HashSet<Id> = full
        .actors
        .values()
        .filter(|a| a.cluster_ids.iter().any(|c| &**c == cluster))
        .map(|a| a.id.clone())
        .collect();
    let changes = demo::demo_changes();
    let links: Vec<&Link> = changes
        .iter()
        .filter_map(|c| match c {
            Change::UpsertLink(l) if members.contains(&l.source) || members.contains(&l.target) => Some(l),
            _ => None,
        })
        .collect();
    let partners: std::collections::HashSet<&Id> = links.iter().flat_map(|l| [&l.source, &l.target]).collect();
    let site_ids: Vec<Id> = full
        .clusters
        .get(&Id::from(cluster))
        .unwrap()
        .sites
        .iter()
        .map(|s| s.id.clone())
        .collect();
    let mut kept = Vec::new();
    for change in &changes {
        match change {
            Change::UpsertCluster(c) if &*c.id == cluster => kept.push(change.clone()),
            Change::UpsertActor(a) if members.contains(&a.id) => kept.push(Change::UpsertActor(Actor {
                cluster_ids: vec![cluster.into()],
                ..a.clone()
            })),
            Change::UpsertActor(a) if partners.contains(&a.id) => kept.push(Change::UpsertActor(Actor {
                cluster_ids: Vec::new(),
                site_id: None,
                ..a.clone()
            })),
            Change::UpsertLink(l) if members.contains(&l.source) || members.contains(&l.target) => {
                kept.push(change.clone())
            }
            Change::UpsertClusterLink(l) if site_ids.contains(&l.source) && site_ids.contains(&l.target) => {
                kept.push(change.clone())
            }
            Change::UpsertActorProfile(p) if members.contains(&p.actor_id) || partners.contains(&p.actor_id) => {
                kept.push(change.clone())
            }
            _ => {}
        }
    }
    network(kept)
}

#[test]
fn each_demo_cluster_loaded_alone_with_its_partners_keeps_its_verdict_and_scores() {
    let full = network(demo::demo_changes());
    for cluster in [demo::CHANGCHUN, demo::KUNSHAN, demo::CHANGNING, demo::ZHANGJIANG] {
        let together = assessment(&full, cluster);
        let alone = assessment(&demo_cluster_alone(cluster), cluster);
        assert_eq!(alone.stage, together.stage, "{cluster}: {}", alone.explanation());
        assert_eq!(alone.scores, together.scores, "{cluster}");
        assert_eq!(alone.pattern, together.pattern, "{cluster}");
    }
}

#[test]
fn home_country_is_where_the_cluster_is_not_where_its_members_are_registered() {
    // A Jiangsu cluster whose members are mostly registered in Taiwan, all
    // of whose partners are Chinese: no tie is foreign.
    let mut changes = vec![Change::UpsertCluster(Cluster {
        country: "CN".parse().ok(),
        ..testing::cluster("kunshan")
    })];
    for i in 0..10 {
        changes.push(Change::UpsertActor(Actor {
            country: Some(if i < 6 { "TW" } else { "CN" }.parse().unwrap()),
            segments: [Segment::Manufacturing].into_iter().collect(),
            ..testing::actor(&format!("m{i}"), &["kunshan"])
        }));
        changes.push(Change::UpsertActor(Actor {
            country: "CN".parse().ok(),
            ..testing::actor(&format!("p{i}"), &[])
        }));
        changes.push(Change::UpsertLink(testing::link(
            &format!("m{i}"),
            &format!("p{i}"),
            LinkKind::Supply,
        )));
    }
    // A partner of unknown country is unknown, not foreign.
    changes.push(Change::UpsertActor(testing::actor("nowhere", &[])));
    changes.push(Change::UpsertLink(testing::link("m0", "nowhere", LinkKind::Supply)));
    let a = assessment(&network(changes), "kunshan");
    assert_eq!(a.evidence.home, crate::geo::HomeCountry::Given("CN".parse().unwrap()));
    assert_eq!((a.evidence.foreign_ties, a.evidence.unknown_country_ties), (0, 1));
    assert_eq!(a.evidence.domestic_external_ties, 10);
    assert_ne!(a.stage, Stage::GlobalValueChain, "{}", a.explanation());
    assert_eq!(gate(&a, Stage::GlobalValueChain, "foreign_share"), (0.0, false));
}

#[test]
fn a_cluster_without_a_country_cannot_be_judged_global_and_says_so() {
    let changes = vec![
        Change::UpsertCluster(testing::cluster("somewhere")),
        Change::UpsertActor(testing::actor("m", &["somewhere"])),
        Change::UpsertActor(Actor {
            country: "DE".parse().ok(),
            ..testing::actor("buyer", &[])
        }),
        Change::UpsertLink(testing::link("m", "buyer", LinkKind::Supply)),
    ];
    let a = assessment(&network(changes), "somewhere");
    assert_eq!((a.evidence.foreign_ties, a.evidence.unknown_country_ties), (0, 1));
    assert_eq!(gate(&a, Stage::GlobalValueChain, "home_country"), (0.0, false));
}

/// Issue 30's second case: a cluster with no `country` whose one site is at
/// 31.30 N, 120.58 E (Suzhou), 40 Chinese members trading with 32 foreign
/// manufacturers and distributors; `second_site` adds a site in Osaka.
fn suzhou_without_a_country(second_site: bool) -> Vec<Change> {
    let mut sites = vec![Site {
        id: "suzhou".into(),
        name: "Suzhou".into(),
        lat: 31.30,
        lon: 120.58,
    }];
    if second_site {
        sites.push(Site {
            id: "osaka".into(),
            name: "Osaka".into(),
            lat: 34.69,
            lon: 135.50,
        });
    }
    let mut changes = vec![Change::UpsertCluster(Cluster {
        sites,
        ..testing::cluster("sz")
    })];
    for i in 0..40 {
        changes.push(Change::UpsertActor(Actor {
            country: "CN".parse().ok(),
            site_id: Some("suzhou".into()),
            segments: [[Segment::Design, Segment::Marketing, Segment::AfterSalesService][i % 3]]
                .into_iter()
                .collect(),
            ..testing::actor(&format!("m{i}"), &["sz"])
        }));
        if i > 0 {
            changes.push(Change::UpsertLink(testing::link(
                &format!("m{}", i - 1),
                &format!("m{i}"),
                LinkKind::Supply,
            )));
        }
    }
    for j in 0..32 {
        changes.push(Change::UpsertActor(Actor {
            country: ["DE", "JP", "US", "KR"][j % 4].parse().ok(),
            ..testing::actor(&format!("f{j}"), &[])
        }));
        changes.push(Change::UpsertLink(testing::link(
            &format!("m{}", j % 40),
            &format!("f{j}"),
            LinkKind::Supply,
        )));
        changes.push(Change::UpsertLink(testing::link(
            &format!("f{j}"),
            &format!("m{}", (j + 7) % 40),
            LinkKind::Supply,
        )));
    }
    changes
}

#[test]
fn a_cluster_without_a_country_takes_it_from_where_its_sites_lie() {
    use crate::geo::HomeCountry;
    let a = assessment(&network(suzhou_without_a_country(false)), "sz");
    assert_eq!(a.evidence.home, HomeCountry::FromSites("CN".parse().unwrap()));
    assert_eq!(gate(&a, Stage::GlobalValueChain, "home_country"), (1.0, true));
    assert_eq!(a.evidence.foreign_ties, 64);
    assert_eq!(a.stage, Stage::GlobalValueChain, "{}", a.explanation());
    // Sites in two countries leave it unknown, and the evidence says why.
    let a = assessment(&network(suzhou_without_a_country(true)), "sz");
    assert_eq!(a.evidence.home, HomeCountry::Unknown("sites in CN and JP".into()));
    assert_eq!(gate(&a, Stage::GlobalValueChain, "home_country"), (0.0, false));
    assert_eq!(a.evidence.foreign_ties, 0);
}

#[test]
fn an_empty_cluster_scores_nothing_and_is_unclassified() {
    let a = assessment(&network([Change::UpsertCluster(testing::cluster("empty"))]), "empty");
    assert_eq!(a.stage, Stage::Unclassified);
    assert!(a.scores.iter().all(|s| s.score == 0.0), "{:?}", a.scores);
    assert!(
        a.explanation().contains("ties 0.00 is below its floor 1.00"),
        "{}",
        a.explanation()
    );
}

#[test]
fn the_explanation_names_every_stage_that_passed_and_why_the_verdict_wins() {
    let a = assessment(&network(demo::demo_changes()), demo::CHANGNING);
    let text = a.explanation();
    assert!(text.starts_with("VIRTUAL_INTEGRATION"), "{text}");
    assert!(text.contains("also passed: REGIONAL_INTEGRATION"), "{text}");
    assert!(text.contains("GLOBAL_VALUE_CHAIN ruled out: foreign_share"), "{text}");
}

// Wholes across clusters: the three cities of issue 30, regional null
// models, built wholes among padding, and invariance to unrelated data and
// to the order of storage.

mod across_clusters {
    use super::*;
    use crate::synthetic::{
        regional_null_models, regional_wholes, regions, three_cities, Regions, ThreeCities, THREE_CITIES,
    };

    /// (clusters judged VIRTUAL, clusters, networks with a whole across clusters).
    fn judged(models: impl Iterator<Item = Regions>) -> (usize, usize, usize, usize) {
        let (mut virtual_ones, mut clusters, mut with_wholes, mut networks) = (0, 0, 0, 0);
        for model in models {
            let network = network(regions(&model));
            let assessments = assess_all(&network, &GraphFilter::default());
            clusters += assessments.len();
            virtual_ones += assessments
                .iter()
                .filter(|a| a.stage == Stage::VirtualIntegration)
                .count();
            let wholes = detect_all(&network, &GraphFilter::default());
            with_wholes += usize::from(wholes.iter().any(|p| p.clusters.len() >= 2));
            networks += 1;
        }
        (virtual_ones, clusters, with_wholes, networks)
    }

    #[test]
    fn single_site_clusters_sharing_platforms_with_random_ties_are_rarely_wholes() {
        let (virtual_ones, clusters, with_wholes, networks) = judged(regional_null_models(40));
        assert!(clusters >= 400, "{clusters} clusters");
        assert!(
            virtual_ones * 20 <= clusters,
            "{virtual_ones} of {clusters} null-model clusters judged VIRTUAL"
        );
        assert!(
            with_wholes * 20 <= networks,
            "wholes in {with_wholes} of {networks} null-model networks"
        );
    }

    #[test]
    fn built_multi_city_wholes_among_unrelated_clusters_are_found_with_their_clusters() {
        let mut found = 0;
        let models: Vec<Regions> = regional_wholes(12).collect();
        for model in &models {
            let network = network(regions(model));
            let built: Vec<Id> = (0..model.whole_size)
                .map(|c| Id::from(format!("{}-cluster-{c:03}", model.prefix)))
                .collect();
            let wholes = detect_all(&network, &GraphFilter::default());
            let across: Vec<&Pattern> = wholes.iter().filter(|p| p.clusters.len() >= 2).collect();
            // Whatever is found is the built whole or part of it: padding
            // never joins it.
            for whole in &across {
                assert!(
                    whole.clusters.iter().all(|c| built.contains(c)),
                    "{:?} is not within {built:?}",
                    whole.clusters
                );
            }
            found += usize::from(across.iter().any(|w| w.clusters == built));
        }
        assert!(
            found * 4 >= models.len() * 3,
            "{found} of {} built wholes found",
            models.len()
        );
    }

    /// The three cities beside `before` and `after` regions of unrelated
    /// clusters, with `order` shuffling the clusters, actors and links of
    /// the batch (each kind among its own, so references still resolve).
    fn cities_padded(before: usize, after: usize, pad_seed: u64, order: Option<u64>) -> Vec<Change> {
        let pad = |prefix: &str, clusters: usize, seed: u64| {
            regions(&Regions {
                prefix: prefix.into(),
                clusters,
                own_mixes: seed.is_multiple_of(2),
                cross_share: 0.3,
                seed,
                ..Regions::default()
            })
        };
        let mut changes = if before > 0 {
            pad("before", before, pad_seed)
        } else {
            Vec::new()
        };
        changes.extend(three_cities(&ThreeCities::default()));
        if after > 0 {
            changes.extend(pad("after", after, pad_seed + 1));
        }
        if let Some(seed) = order {
            use rand::seq::SliceRandom;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let rank = |c: &Change| match c {
                Change::UpsertCluster(_) => 0,
                Change::UpsertActor(_) => 1,
                _ => 2,
            };
            changes.shuffle(&mut rng);
            changes.sort_by_key(rank);
        }
        changes
    }

    fn whole_of(network: &Network) -> Pattern {
        let wholes = detect_all(network, &GraphFilter::default());
        let mut of_cities = wholes.into_iter().filter(|p| p.spans(&THREE_CITIES[0].into()));
        of_cities.next().expect("the three cities form a whole")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Unrelated clusters and actors, stored before and after, and any
        /// order of storage change none of the whole's figures, exactly, nor
        /// any of its clusters' assessments.
        #[test]
        fn unrelated_clusters_and_storage_order_change_none_of_a_wholes_figures(
            before in 0usize..8,
            after in 0usize..8,
            pad_seed in 0u64..1_000,
            order in prop::option::of(0u64..1_000),
        ) {
            let alone = network(cities_padded(0, 0, pad_seed, None));
            let padded = network(cities_padded(before, after, pad_seed, order));
            prop_assert_eq!(whole_of(&alone), whole_of(&padded));
            for cluster in THREE_CITIES {
                prop_assert_eq!(assessment(&alone, cluster), assessment(&padded, cluster));
            }
        }
    }

    #[test]
    fn the_three_cities_are_virtual_and_the_near_misses_say_why() {
        let whole = network(three_cities(&ThreeCities::default()));
        for cluster in THREE_CITIES {
            let a = assessment(&whole, cluster);
            assert_eq!(a.stage, Stage::VirtualIntegration, "{}", a.explanation());
            let pattern = a.pattern.as_ref().unwrap();
            assert_eq!(pattern.clusters.len(), 3);
            assert!(pattern.id.starts_with('W'));
        }
        // Barely tied: each stays UNCLASSIFIED with its one place.
        let sparse = network(three_cities(&ThreeCities {
            ties_per_pair: 2,
            ..ThreeCities::default()
        }));
        for cluster in THREE_CITIES {
            let a = assessment(&sparse, cluster);
            assert_ne!(a.stage, Stage::VirtualIntegration);
            assert!(a.pattern.is_none());
            assert!(
                a.explanation().contains("places 1.00 is below its floor 2.00"),
                "{}",
                a.explanation()
            );
        }
    }
}
