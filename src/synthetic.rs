//! Generated networks of any size, for benchmarks and load tests, and
//! small districts of parks for testing the stage analyses (`districts`).
//!
//! Actors are split evenly over clusters (a tenth stay outside any cluster,
//! as global actors). Most links stay inside a cluster; the rest cross. Link
//! targets are drawn with a skew (index = ⌊n·u³⌋ for uniform u), so in-degree
//! follows a power law P(k) ∝ k^-2.5: a few hubs, many small firms, the
//! scale-free shape of real supply networks.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{
    Actor, ActorKind, Change, Channel, Cluster, Id, Link, LinkKey, LinkKind, Segment, SegmentSet, Site, Validity,
};

#[derive(Clone, Debug)]
pub struct SyntheticConfig {
    pub clusters: usize,
    pub actors: usize,
    /// Distinct links to generate.
    pub links: usize,
    /// Share of links whose ends are in the same cluster.
    pub local_share: f64,
    /// Sites (parks) per cluster, each a few km apart; members are spread
    /// over them. With more than one, the second actor of each cluster is an
    /// information platform (kind PLATFORM), as in a virtual cluster.
    pub sites_per_cluster: usize,
    /// 0: every member of cluster c is in one industry, the c-th of eight.
    /// n > 0: members draw from n industry classes (`industry_code`), each
    /// cluster around a home industry of its own over a width of its own,
    /// so neighbouring classes co-locate (a product space with structure)
    /// and clusters differ in diversity.
    pub industries: usize,
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            clusters: 1_000,
            actors: 100_000,
            links: 1_000_000,
            local_share: 0.8,
            sites_per_cluster: 1,
            industries: 0,
            seed: 7,
        }
    }
}

const INDUSTRIES: [&str; 8] = ["C2910", "C2930", "C2610", "C2620", "M7410", "J6201", "M7310", "C1410"];

/// A Barabási–Albert graph: a clique of `per_node + 1` nodes, then each new
/// node u tied to `per_node` distinct earlier nodes picked by degree; edges
/// as (u, earlier node). The graph of the side-by-side benchmarks with
/// igraph (which reads the same edge list).
pub fn barabasi_albert(nodes: usize, per_node: usize, seed: u64) -> Vec<(u32, u32)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut edges = Vec::with_capacity(nodes * per_node);
    // Every edge end, so a uniform pick from it is a pick by degree.
    let mut ends: Vec<u32> = Vec::with_capacity(2 * nodes * per_node);
    for u in 0..=per_node as u32 {
        for v in 0..u {
            edges.push((u, v));
            ends.extend([u, v]);
        }
    }
    let mut targets = Vec::with_capacity(per_node);
    for u in (per_node + 1) as u32..nodes as u32 {
        targets.clear();
        while targets.len() < per_node {
            let v = ends[rng.gen_range(0..ends.len())];
            if !targets.contains(&v) {
                targets.push(v);
            }
        }
        for &v in &targets {
            edges.push((u, v));
            ends.extend([u, v]);
        }
    }
    edges
}

pub fn actor_id(index: usize) -> Id {
    Id::from(format!("actor-{index:07}"))
}

pub fn cluster_id(index: usize) -> Id {
    Id::from(format!("cluster-{index:04}"))
}

/// The whole network as changes, in dependency order.
/// The i-th of the generated industry classes: ISIC-shaped codes, five
/// classes to a division from C10 on (C1010, C1020, … C1050, C1110, …).
pub fn industry_code(i: usize) -> String {
    format!("C{}{}0", 10 + i / 5, 1 + i % 5)
}

pub fn generate(config: &SyntheticConfig) -> Vec<Change> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let clusters = config.clusters.max(1);
    let mut changes = Vec::with_capacity(clusters + config.actors + config.links);
    let sites_per_cluster = config.sites_per_cluster.max(1);
    let site_id = |c: usize, s: usize| {
        if s == 0 {
            Id::from(format!("site-{c:04}"))
        } else {
            Id::from(format!("site-{c:04}-{s}"))
        }
    };
    for c in 0..clusters {
        let (lat, lon) = (rng.gen_range(20.0..45.0), rng.gen_range(100.0..125.0));
        changes.push(Change::UpsertCluster(Cluster {
            id: cluster_id(c),
            name: format!("Cluster {c}"),
            region: format!("Region {}", c % 30),
            country: Some("CN".parse().expect("valid")),
            industry: INDUSTRIES[c % INDUSTRIES.len()].into(),
            sites: (0..sites_per_cluster)
                .map(|s| Site {
                    id: site_id(c, s),
                    name: format!("Park {c}.{s}"),
                    // About 5 km apart.
                    lat: lat + 0.045 * s as f64,
                    lon,
                })
                .collect(),
        }));
    }
    // Each cluster's home industry and width, for `industries` > 0 (drawn
    // only then: the networks of 0 stay what they were, seed for seed).
    let mix: Vec<(usize, usize)> = (0..clusters)
        .filter(|_| config.industries > 0)
        .map(|_| {
            let n = config.industries;
            (rng.gen_range(0..n), 1 + rng.gen_range(0..n.div_ceil(4)))
        })
        .collect();
    // Actors [0, clustered) are in clusters, in contiguous blocks; the rest are global.
    let clustered = config.actors * 9 / 10;
    let block = (clustered / clusters).max(1);
    let cluster_of = |actor: usize| (actor < clustered).then(|| (actor / block).min(clusters - 1));
    for a in 0..config.actors {
        let cluster = cluster_of(a);
        let segments: SegmentSet = (0..rng.gen_range(1..=3))
            .map(|_| Segment::ALL[rng.gen_range(0..Segment::ALL.len())])
            .collect();
        changes.push(Change::UpsertActor(Actor {
            id: actor_id(a),
            name: format!("Firm {a}"),
            kind: match a % block {
                0 => ActorKind::CoreFirm,
                1 if sites_per_cluster > 1 => ActorKind::Platform,
                _ => ActorKind::Firm,
            },
            industry: match (cluster, config.industries) {
                (Some(c), n) if n > 0 => {
                    let (home, width) = mix[c];
                    // Nearer the home industry more often.
                    let offset = (width as f64 * rng.gen::<f64>().powi(2)) as usize;
                    industry_code((home + offset) % n)
                }
                _ => INDUSTRIES[cluster.unwrap_or(a) % INDUSTRIES.len()].into(),
            },
            segments,
            cluster_ids: cluster.map(cluster_id).into_iter().collect(),
            site_id: cluster.map(|c| site_id(c, a % sites_per_cluster)),
            country: Some(if cluster.is_some() { "CN" } else { "DE" }.parse().expect("valid")),
            employees: Some(rng.gen_range(5..5_000)),
            revenue: None,
            validity: Validity::default(),
        }));
    }
    let mut seen: HashSet<LinkKey> = HashSet::with_capacity(config.links);
    let skewed = |rng: &mut ChaCha8Rng, n: usize| ((n as f64) * rng.gen::<f64>().powi(3)) as usize % n.max(1);
    while seen.len() < config.links {
        let source = rng.gen_range(0..config.actors);
        let target = match cluster_of(source) {
            Some(c) if rng.gen_bool(config.local_share) => {
                let start = c * block;
                let size = if c == clusters - 1 { clustered - start } else { block };
                start + skewed(&mut rng, size)
            }
            _ => skewed(&mut rng, config.actors),
        };
        if source == target {
            continue;
        }
        let kind = match rng.gen_range(0..20) {
            0..=11 => LinkKind::Supply,
            12..=15 => LinkKind::Cooperation,
            16 => LinkKind::Investment,
            17 => LinkKind::Ownership,
            18 => LinkKind::Platform,
            _ => LinkKind::Informal,
        };
        let channel = if kind == LinkKind::Platform || rng.gen_bool(0.1) {
            Channel::Virtual
        } else {
            Channel::Physical
        };
        let link = Link {
            source: actor_id(source),
            target: actor_id(target),
            kind,
            channel,
            weight: rng.gen_range(1..10) as f64,
            validity: Validity::default(),
        };
        let Ok(link) = link.validated() else { continue };
        if seen.insert(link.key()) {
            changes.push(Change::UpsertLink(link));
        }
    }
    changes
}

/// Small clusters of parks, for testing and calibrating the stage analyses
/// on networks no one tuned them on. With `specialised` off and
/// `between_parks` None this is the null model of virtual integration:
/// members dealt to parks at random, their segments drawn from one
/// cluster-wide mix, ties drawn among members regardless of park, a share
/// online, and a platform tied to random members. Nothing in it is a
/// virtual whole; whatever looks like one is chance.
#[derive(Clone, Debug)]
pub struct Districts {
    /// Prefix of every id, so several generated networks can share a store.
    pub prefix: String,
    pub clusters: usize,
    pub members: std::ops::RangeInclusive<usize>,
    /// Parks per cluster, each about 5 km from the next.
    pub parks: std::ops::RangeInclusive<usize>,
    /// Mean ties per member inside its cluster.
    pub degree: f64,
    /// None: a tie's ends are drawn regardless of park; Some(s): a share s
    /// of ties join two different parks, the rest stay inside one.
    pub between_parks: Option<f64>,
    /// Share of ties over the VIRTUAL channel.
    pub online_share: f64,
    /// Share of members tied to the cluster's platform (none when 0).
    pub platform_reach: f64,
    /// Each park draws its segments from a mix of its own, not the cluster's.
    pub specialised: bool,
    /// Mean ties per member to actors abroad.
    pub foreign_degree: f64,
    pub seed: u64,
}

impl Default for Districts {
    fn default() -> Self {
        Districts {
            prefix: "d".into(),
            clusters: 10,
            members: 10..=60,
            parks: 1..=4,
            degree: 4.0,
            between_parks: None,
            online_share: 0.35,
            platform_reach: 0.5,
            specialised: false,
            foreign_degree: 0.3,
            seed: 1,
        }
    }
}

/// The null models of the stage calibration and tests: `count` networks of
/// eight clusters with two to four parks each, of several sizes, densities,
/// online shares and platform reaches, parks drawn at random, no
/// specialisation.
pub fn null_models(count: u64) -> impl Iterator<Item = Districts> {
    use rand::seq::SliceRandom;
    (0..count).map(|seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sizes = [5..=15, 10..=40, 20..=80, 40..=150];
        Districts {
            prefix: format!("null{seed}"),
            clusters: 8,
            members: sizes.choose(&mut rng).cloned().unwrap_or(10..=40),
            parks: 2..=4,
            degree: [2.0, 4.0, 8.0].choose(&mut rng).copied().unwrap_or(4.0),
            online_share: [0.1, 0.35, 0.6].choose(&mut rng).copied().unwrap_or(0.35),
            platform_reach: [0.3, 0.6, 0.9].choose(&mut rng).copied().unwrap_or(0.6),
            seed,
            ..Districts::default()
        }
    })
}

/// The built cases of the calibration: `count` networks of eight clusters
/// with what the null models lack: each park draws its segments from a mix
/// of its own, 40% of ties join two parks, half are online, and a platform
/// is tied to 80% of members.
pub fn specialised_districts(count: u64) -> impl Iterator<Item = Districts> {
    (0..count).map(|seed| Districts {
        prefix: format!("built{seed}"),
        clusters: 8,
        members: 20..=80,
        parks: 2..=3,
        between_parks: Some(0.4),
        online_share: 0.5,
        platform_reach: 0.8,
        specialised: true,
        seed: 10_000 + seed,
        ..Districts::default()
    })
}

/// A segment mix: weights over the eight segments, a few of them large.
fn draw_mix(rng: &mut ChaCha8Rng) -> [f64; 8] {
    std::array::from_fn(|_| rng.gen::<f64>().powi(3))
}

/// A segment drawn with the weights of `mix`.
fn pick(rng: &mut ChaCha8Rng, mix: &[f64; 8]) -> Segment {
    let total: f64 = mix.iter().sum();
    let mut u = rng.gen::<f64>() * total;
    for (i, w) in mix.iter().enumerate() {
        if u < *w {
            return Segment::ALL[i];
        }
        u -= w;
    }
    Segment::ALL[7]
}

/// The clusters of `config` as changes, in dependency order.
pub fn districts(config: &Districts) -> Vec<Change> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let p = &config.prefix;
    let mut changes = Vec::new();
    let mut links: Vec<Link> = Vec::new();
    let abroad: Vec<Id> = (0..20).map(|i| Id::from(format!("{p}-abroad-{i}"))).collect();
    for (i, id) in abroad.iter().enumerate() {
        changes.push(Change::UpsertActor(Actor {
            id: id.clone(),
            name: format!("Buyer {i}"),
            kind: ActorKind::Firm,
            industry: INDUSTRIES[i % INDUSTRIES.len()].into(),
            segments: [Segment::Sales].into_iter().collect(),
            cluster_ids: Vec::new(),
            site_id: None,
            country: Some("DE".parse().expect("valid")),
            employees: None,
            revenue: None,
            validity: Validity::default(),
        }));
    }
    for c in 0..config.clusters {
        let cluster = Id::from(format!("{p}-cluster-{c:03}"));
        let parks = rng.gen_range(config.parks.clone()).max(1);
        let (lat, lon) = (rng.gen_range(20.0..45.0), rng.gen_range(100.0..125.0));
        let site = |s: usize| Id::from(format!("{p}-cluster-{c:03}-park-{s}"));
        changes.push(Change::UpsertCluster(Cluster {
            id: cluster.clone(),
            name: format!("District {c}"),
            region: format!("Region {}", c % 7),
            country: Some("CN".parse().expect("valid")),
            industry: INDUSTRIES[c % INDUSTRIES.len()].into(),
            sites: (0..parks)
                .map(|s| Site {
                    id: site(s),
                    name: format!("Park {s}"),
                    lat: lat + 0.045 * s as f64,
                    lon,
                })
                .collect(),
        }));
        let cluster_mix = draw_mix(&mut rng);
        let park_mixes: Vec<[f64; 8]> = (0..parks).map(|_| draw_mix(&mut rng)).collect();
        let n = rng.gen_range(config.members.clone()).max(2);
        let park_of: Vec<usize> = (0..n).map(|_| rng.gen_range(0..parks)).collect();
        let member = |i: usize| Id::from(format!("{p}-c{c:03}-m{i:03}"));
        for (i, &park) in park_of.iter().enumerate() {
            let mix = if config.specialised {
                &park_mixes[park]
            } else {
                &cluster_mix
            };
            let segments: SegmentSet = (0..rng.gen_range(1..=2)).map(|_| pick(&mut rng, mix)).collect();
            changes.push(Change::UpsertActor(Actor {
                id: member(i),
                name: format!("Firm {c}.{i}"),
                kind: ActorKind::Firm,
                industry: INDUSTRIES[c % INDUSTRIES.len()].into(),
                segments,
                cluster_ids: vec![cluster.clone()],
                site_id: Some(site(park)),
                country: Some("CN".parse().expect("valid")),
                employees: Some(rng.gen_range(5..500)),
                revenue: None,
                validity: Validity::default(),
            }));
        }
        let channel = |rng: &mut ChaCha8Rng| {
            if rng.gen_bool(config.online_share) {
                Channel::Virtual
            } else {
                Channel::Physical
            }
        };
        let ties = (config.degree * n as f64 / 2.0).round() as usize;
        for _ in 0..ties {
            let a = rng.gen_range(0..n);
            let b = match config.between_parks {
                Some(share) if parks > 1 => {
                    let across = rng.gen_bool(share);
                    let candidates: Vec<usize> = (0..n)
                        .filter(|&b| b != a && (park_of[b] != park_of[a]) == across)
                        .collect();
                    if candidates.is_empty() {
                        continue;
                    }
                    candidates[rng.gen_range(0..candidates.len())]
                }
                _ => rng.gen_range(0..n),
            };
            let kind = if rng.gen_bool(0.5) {
                LinkKind::Supply
            } else {
                LinkKind::Cooperation
            };
            links.push(Link {
                source: member(a),
                target: member(b),
                kind,
                channel: channel(&mut rng),
                weight: 1.0,
                validity: Validity::default(),
            });
        }
        for i in 0..n {
            if rng.gen_bool((config.foreign_degree).min(1.0)) {
                links.push(Link {
                    source: member(i),
                    target: abroad[rng.gen_range(0..abroad.len())].clone(),
                    kind: LinkKind::Supply,
                    channel: channel(&mut rng),
                    weight: 1.0,
                    validity: Validity::default(),
                });
            }
        }
        if config.platform_reach > 0.0 {
            let platform = Id::from(format!("{p}-c{c:03}-platform"));
            changes.push(Change::UpsertActor(Actor {
                id: platform.clone(),
                name: format!("Platform {c}"),
                kind: ActorKind::Platform,
                industry: "J6312".into(),
                segments: SegmentSet::default(),
                cluster_ids: vec![cluster.clone()],
                site_id: Some(site(0)),
                country: Some("CN".parse().expect("valid")),
                employees: None,
                revenue: None,
                validity: Validity::default(),
            }));
            for i in 0..n {
                if rng.gen_bool(config.platform_reach.min(1.0)) {
                    links.push(Link {
                        source: platform.clone(),
                        target: member(i),
                        kind: LinkKind::Platform,
                        channel: Channel::Virtual,
                        weight: 1.0,
                        validity: Validity::default(),
                    });
                }
            }
        }
    }
    let mut seen: HashSet<LinkKey> = HashSet::new();
    for link in links {
        let Ok(link) = link.validated() else { continue };
        if seen.insert(link.key()) {
            changes.push(Change::UpsertLink(link));
        }
    }
    changes
}

/// Clusters of one site each in several cities, for testing and
/// calibrating the wholes across clusters on networks no one tuned them on.
/// Every cluster's members tie inside it; a share of each member's ties go
/// to members of other clusters; a national platform is tied to members
/// everywhere, a regional one to members of the clusters of each region.
/// With `own_mixes` off, every cluster draws its segments from one national
/// mix (the null model of specialisation); with `cross_share` small, the
/// clusters barely tie to each other (the null model of interaction).
/// `wholes` builds what the null models lack: groups of `whole_size`
/// clusters, each with a mix of its own, tied to each other at `whole_share`
/// of their ties, half online, joined by a platform of their own.
#[derive(Clone, Debug)]
pub struct Regions {
    pub prefix: String,
    pub clusters: usize,
    pub members: std::ops::RangeInclusive<usize>,
    /// Mean ties per member inside its cluster.
    pub degree: f64,
    /// Ties to members of other clusters, as a share of a member's ties.
    pub cross_share: f64,
    pub online_share: f64,
    /// Share of members tied to the national platform (and to their
    /// region's platform).
    pub platform_reach: f64,
    pub own_mixes: bool,
    /// Ties across go to one partner cluster (0 with 1, 2 with 3, ...)
    /// rather than to random ones: pairs that interact as one, the near
    /// miss that only specialisation tells from a whole.
    pub paired: bool,
    /// Built wholes: how many, and of how many clusters each.
    pub wholes: usize,
    pub whole_size: usize,
    pub whole_share: f64,
    pub seed: u64,
}

impl Default for Regions {
    fn default() -> Self {
        Regions {
            prefix: "r".into(),
            clusters: 12,
            members: 10..=60,
            degree: 4.0,
            cross_share: 0.1,
            online_share: 0.35,
            platform_reach: 0.5,
            own_mixes: false,
            paired: false,
            wholes: 0,
            whole_size: 3,
            whole_share: 0.4,
            seed: 1,
        }
    }
}

/// The null models of wholes across clusters: `count` networks of 8 to 24
/// single-site clusters sharing a national and regional platforms, of
/// several sizes, densities and online shares; either one national segment
/// mix with many random ties between clusters, or a mix of each cluster's
/// own with few.
pub fn regional_null_models(count: u64) -> impl Iterator<Item = Regions> {
    use rand::seq::SliceRandom;
    (0..count).map(|seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(50_000 + seed);
        // Three families, a third each: own mixes with few random ties
        // across, one mix with many, one mix with pairs tied as one.
        let family = seed % 3;
        let own_mixes = family == 0;
        let sizes = [5..=15, 10..=40, 20..=80, 40..=150];
        Regions {
            prefix: format!("rnull{seed}"),
            clusters: rng.gen_range(8..=24),
            members: sizes.choose(&mut rng).cloned().unwrap_or(10..=40),
            degree: [2.0, 4.0, 8.0].choose(&mut rng).copied().unwrap_or(4.0),
            cross_share: if own_mixes {
                [0.02, 0.05, 0.1].choose(&mut rng).copied().unwrap_or(0.05)
            } else {
                [0.1, 0.3, 0.5].choose(&mut rng).copied().unwrap_or(0.3)
            },
            paired: family == 2,
            online_share: [0.1, 0.35, 0.6].choose(&mut rng).copied().unwrap_or(0.35),
            platform_reach: [0.3, 0.6, 0.9].choose(&mut rng).copied().unwrap_or(0.6),
            own_mixes,
            seed,
            ..Regions::default()
        }
    })
}

/// The built cases: `count` networks of 12 clusters, one whole of two to
/// four clusters among them, the rest padding as in the null models.
pub fn regional_wholes(count: u64) -> impl Iterator<Item = Regions> {
    (0..count).map(|seed| Regions {
        prefix: format!("rbuilt{seed}"),
        clusters: 12,
        members: 20..=60,
        wholes: 1,
        whole_size: 2 + (seed % 3) as usize,
        whole_share: 0.4,
        online_share: 0.5,
        seed: 90_000 + seed,
        ..Regions::default()
    })
}

/// The clusters of `config` as changes, in dependency order. Clusters
/// 0..whole_size form the first built whole, the next whole_size the
/// second, and so on.
pub fn regions(config: &Regions) -> Vec<Change> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let p = &config.prefix;
    let mut changes = Vec::new();
    let mut links: Vec<Link> = Vec::new();
    let national_mix = draw_mix(&mut rng);
    let channel = |rng: &mut ChaCha8Rng, share: f64| {
        if rng.gen_bool(share) {
            Channel::Virtual
        } else {
            Channel::Physical
        }
    };
    let regions = 3usize;
    let platform = |name: &str| Id::from(format!("{p}-platform-{name}"));
    let mut platforms = vec![platform("national")];
    platforms.extend((0..regions).map(|r| platform(&format!("region-{r}"))));
    platforms.extend((0..config.wholes).map(|w| platform(&format!("whole-{w}"))));
    for id in &platforms {
        changes.push(Change::UpsertActor(Actor {
            id: id.clone(),
            name: id.to_string(),
            kind: ActorKind::Platform,
            industry: "J6312".into(),
            segments: SegmentSet::default(),
            cluster_ids: Vec::new(),
            site_id: None,
            country: Some("CN".parse().expect("valid")),
            employees: None,
            revenue: None,
            validity: Validity::default(),
        }));
    }
    let in_whole = |c: usize| (c < config.wholes * config.whole_size).then(|| c / config.whole_size.max(1));
    let mut members: Vec<Vec<Id>> = Vec::new();
    for c in 0..config.clusters {
        let cluster = Id::from(format!("{p}-cluster-{c:03}"));
        let site = Id::from(format!("{p}-cluster-{c:03}-site"));
        // Cities at least tens of km apart: every cluster is its own place.
        let (lat, lon) = (20.0 + 0.3 * (c / 60) as f64, 95.0 + 0.5 * (c % 60) as f64);
        changes.push(Change::UpsertCluster(Cluster {
            id: cluster.clone(),
            name: format!("Cluster {c}"),
            region: format!("Region {}", c % regions),
            country: Some("CN".parse().expect("valid")),
            industry: INDUSTRIES[c % INDUSTRIES.len()].into(),
            sites: vec![Site {
                id: site.clone(),
                name: format!("City {c}"),
                lat,
                lon,
            }],
        }));
        let own = config.own_mixes || in_whole(c).is_some();
        let mix = if own { draw_mix(&mut rng) } else { national_mix };
        let n = rng.gen_range(config.members.clone()).max(2);
        let ids: Vec<Id> = (0..n).map(|i| Id::from(format!("{p}-c{c:03}-m{i:03}"))).collect();
        for (i, id) in ids.iter().enumerate() {
            let segments: SegmentSet = (0..rng.gen_range(1..=2)).map(|_| pick(&mut rng, &mix)).collect();
            changes.push(Change::UpsertActor(Actor {
                id: id.clone(),
                name: format!("Firm {c}.{i}"),
                kind: ActorKind::Firm,
                industry: INDUSTRIES[c % INDUSTRIES.len()].into(),
                segments,
                cluster_ids: vec![cluster.clone()],
                site_id: Some(site.clone()),
                country: Some("CN".parse().expect("valid")),
                employees: Some(rng.gen_range(5..500)),
                revenue: None,
                validity: Validity::default(),
            }));
            let mut joins = vec![0, 1 + c % regions];
            joins.extend(in_whole(c).map(|w| 1 + regions + w));
            for (j, &k) in joins.iter().enumerate() {
                let reach = if j == 2 { 0.8 } else { config.platform_reach };
                if rng.gen_bool(reach.min(1.0)) {
                    links.push(Link {
                        source: platforms[k].clone(),
                        target: id.clone(),
                        kind: LinkKind::Platform,
                        channel: Channel::Virtual,
                        weight: 1.0,
                        validity: Validity::default(),
                    });
                }
            }
        }
        members.push(ids);
    }
    let clusters = members.len();
    for c in 0..clusters {
        let n = members[c].len();
        let ties = (config.degree * n as f64 / 2.0).round() as usize;
        let whole = in_whole(c);
        let cross = if whole.is_some() {
            config.whole_share
        } else {
            config.cross_share
        };
        for _ in 0..ties {
            let a = members[c][rng.gen_range(0..n)].clone();
            let other = if clusters > 1 && rng.gen_bool(cross) {
                // A whole's ties across go to the whole's other clusters;
                // the rest go anywhere.
                match whole {
                    Some(w) => {
                        let size = config.whole_size;
                        let first = w * size;
                        let o = first + rng.gen_range(0..size - 1);
                        if o >= c {
                            o + 1
                        } else {
                            o
                        }
                    }
                    None if config.paired && (c ^ 1) < clusters => c ^ 1,
                    None => {
                        let o = rng.gen_range(0..clusters - 1);
                        if o >= c {
                            o + 1
                        } else {
                            o
                        }
                    }
                }
            } else {
                c
            };
            let b = members[other][rng.gen_range(0..members[other].len())].clone();
            let online = if other != c && whole.is_some() {
                0.5
            } else {
                config.online_share
            };
            links.push(Link {
                source: a,
                target: b,
                kind: if rng.gen_bool(0.5) {
                    LinkKind::Supply
                } else {
                    LinkKind::Cooperation
                },
                channel: channel(&mut rng, online),
                weight: 1.0,
                validity: Validity::default(),
            });
        }
    }
    let mut seen: HashSet<LinkKey> = HashSet::new();
    for link in links {
        let Ok(link) = link.validated() else { continue };
        if link.source != link.target && seen.insert(link.key()) {
            changes.push(Change::UpsertLink(link));
        }
    }
    changes
}

/// The article's third stage at the scale of a region, as the issue's user
/// tried it: a Shanghai design cluster, a Hangzhou product-development and
/// marketing cluster and a Suzhou manufacturing, sales and after-sales
/// cluster, `members` firms each, tied by a shared information platform,
/// PLATFORM cluster links and `ties_per_pair` ties between each two
/// clusters, `online_share` of them online. With `one_mix` every cluster
/// draws from all six segments alike.
#[derive(Clone, Debug)]
pub struct ThreeCities {
    pub members: usize,
    pub ties_per_pair: usize,
    pub online_share: f64,
    pub one_mix: bool,
    /// The clusters' `country`; None leaves it to their sites' coordinates.
    pub country: Option<&'static str>,
    /// The same firms as one cluster (`THREE_CITIES_AS_ONE`) with three
    /// sites, the PLATFORM links between the sites.
    pub one_cluster: bool,
    /// A fourth cluster, in Ningbo (consumption, recycling and sales), tied
    /// to each of the three by this many ties (online as the rest) and to
    /// the platform: with as many as the others it is a fourth part.
    pub ningbo_ties: Option<usize>,
    pub seed: u64,
}

impl Default for ThreeCities {
    fn default() -> Self {
        ThreeCities {
            members: 25,
            ties_per_pair: 40,
            online_share: 0.6,
            one_mix: false,
            country: Some("CN"),
            one_cluster: false,
            ningbo_ties: None,
            seed: 3,
        }
    }
}

/// The three clusters' ids: Shanghai, Hangzhou, Suzhou.
pub const THREE_CITIES: [&str; 3] = ["shanghai-design", "hangzhou-development", "suzhou-manufacturing"];
/// The cluster of `ThreeCities::ningbo_ties`.
pub const NINGBO: &str = "ningbo-recycling";
/// The cluster of `ThreeCities::one_cluster`.
pub const THREE_CITIES_AS_ONE: &str = "yangtze-delta";
/// The information platform they share.
pub const THREE_CITIES_PLATFORM: &str = "yrd-info-platform";

pub fn three_cities(config: &ThreeCities) -> Vec<Change> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut cities = vec![
        ("Shanghai", 31.23, 121.47, vec![Segment::Design]),
        (
            "Hangzhou",
            30.27,
            120.15,
            vec![Segment::ProductDevelopment, Segment::Marketing],
        ),
        (
            "Suzhou",
            31.30,
            120.58,
            vec![Segment::Manufacturing, Segment::Sales, Segment::AfterSalesService],
        ),
    ];
    let all: Vec<Segment> = cities.iter().flat_map(|c| c.3.clone()).collect();
    let mut names: Vec<&str> = THREE_CITIES.to_vec();
    if config.ningbo_ties.is_some() {
        cities.push((
            "Ningbo",
            29.87,
            121.54,
            vec![Segment::Consumption, Segment::Recycling, Segment::Sales],
        ));
        names.push(NINGBO);
    }
    let country = config.country.map(|c| c.parse().expect("valid"));
    let mut changes = vec![Change::UpsertActor(Actor {
        id: THREE_CITIES_PLATFORM.into(),
        name: "Yangtze River Delta information platform".into(),
        kind: ActorKind::Platform,
        industry: "J6312".into(),
        segments: SegmentSet::default(),
        cluster_ids: Vec::new(),
        site_id: None,
        country,
        employees: None,
        revenue: None,
        validity: Validity::default(),
    })];
    let mut links = Vec::new();
    let member = |c: usize, i: usize| Id::from(format!("{}-{i:02}", names[c]));
    let online = |rng: &mut ChaCha8Rng| {
        if rng.gen_bool(config.online_share) {
            Channel::Virtual
        } else {
            Channel::Physical
        }
    };
    let site_of = |c: usize| Id::from(format!("{}-site", names[c]));
    let cluster_of = |c: usize| {
        Id::from(if config.one_cluster {
            THREE_CITIES_AS_ONE
        } else {
            names[c]
        })
    };
    let cluster = |id: Id, name: String, sites: Vec<Site>| {
        Change::UpsertCluster(Cluster {
            id,
            name,
            region: "Yangtze River Delta".into(),
            country,
            industry: "C2930".into(),
            sites,
        })
    };
    let sites: Vec<Site> = cities
        .iter()
        .enumerate()
        .map(|(c, (city, lat, lon, _))| Site {
            id: site_of(c),
            name: (*city).into(),
            lat: *lat,
            lon: *lon,
        })
        .collect();
    if config.one_cluster {
        changes.push(cluster(
            THREE_CITIES_AS_ONE.into(),
            "Yangtze River Delta cluster".into(),
            sites,
        ));
    } else {
        for (c, site) in sites.into_iter().enumerate() {
            changes.push(cluster(names[c].into(), format!("{} cluster", site.name), vec![site]));
        }
    }
    for (c, (city, _, _, segments)) in cities.iter().enumerate() {
        let site = site_of(c);
        let choices = if config.one_mix { &all } else { segments };
        for i in 0..config.members {
            changes.push(Change::UpsertActor(Actor {
                id: member(c, i),
                name: format!("{city} firm {i}"),
                kind: ActorKind::Firm,
                industry: ["C2930", "M7410", "G4530", "E3830"][c].into(),
                segments: [choices[rng.gen_range(0..choices.len())]].into_iter().collect(),
                cluster_ids: vec![cluster_of(c)],
                site_id: Some(site.clone()),
                country,
                employees: Some(rng.gen_range(10..300)),
                revenue: None,
                validity: Validity::default(),
            }));
            // Three ties inside per member, on average.
            for _ in 0..2 {
                let j = rng.gen_range(0..config.members);
                links.push((member(c, i), member(c, j), LinkKind::Supply, Channel::Physical));
            }
            if rng.gen_bool(0.6) {
                links.push((
                    THREE_CITIES_PLATFORM.into(),
                    member(c, i),
                    LinkKind::Platform,
                    Channel::Virtual,
                ));
            }
        }
    }
    let mut pairs: Vec<(usize, usize, usize)> = [(0, 1), (1, 2), (0, 2)]
        .map(|(a, b)| (a, b, config.ties_per_pair))
        .to_vec();
    if let Some(ties) = config.ningbo_ties {
        pairs.extend((0..3).map(|c| (c, 3, ties)));
    }
    for (a, b, ties) in pairs {
        for _ in 0..ties {
            let (i, j) = (rng.gen_range(0..config.members), rng.gen_range(0..config.members));
            let channel = online(&mut rng);
            links.push((member(a, i), member(b, j), LinkKind::Cooperation, channel));
        }
    }
    let mut seen: HashSet<LinkKey> = HashSet::new();
    for (source, target, kind, channel) in links {
        let link = Link {
            source,
            target,
            kind,
            channel,
            weight: 1.0,
            validity: Validity::default(),
        };
        let Ok(link) = link.validated() else { continue };
        if link.source != link.target && seen.insert(link.key()) {
            changes.push(Change::UpsertLink(link));
        }
    }
    // Between the clusters, or between the sites of the one cluster.
    let end = |c: usize| {
        if config.one_cluster {
            site_of(c)
        } else {
            Id::from(names[c])
        }
    };
    for (a, b) in [(0, 1), (1, 2)] {
        changes.push(Change::UpsertClusterLink(crate::model::ClusterLink {
            source: end(a),
            target: end(b),
            kind: crate::model::ClusterLinkKind::Platform,
            channel: Channel::Virtual,
            weight: 1.0,
        }));
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Network;

    #[test]
    fn a_generated_network_is_valid_and_has_the_requested_size() {
        let config = SyntheticConfig {
            clusters: 10,
            actors: 1_000,
            links: 5_000,
            ..SyntheticConfig::default()
        };
        let changes: Vec<Change> = generate(&config).into_iter().map(|c| c.validated().unwrap()).collect();
        let mut network = Network::default();
        network.apply(&changes).unwrap();
        assert_eq!(network.clusters.len(), 10);
        assert_eq!(network.actors.len(), 1_000);
        assert_eq!(network.links.len(), 5_000);
    }
}
