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
            industry: INDUSTRIES[cluster.unwrap_or(a) % INDUSTRIES.len()].into(),
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
    // A segment mix: weights over the eight segments, a few of them large.
    let draw_mix = |rng: &mut ChaCha8Rng| -> [f64; 8] { std::array::from_fn(|_| rng.gen::<f64>().powi(3)) };
    let pick = |rng: &mut ChaCha8Rng, mix: &[f64; 8]| -> Segment {
        let total: f64 = mix.iter().sum();
        let mut u = rng.gen::<f64>() * total;
        for (i, w) in mix.iter().enumerate() {
            if u < *w {
                return Segment::ALL[i];
            }
            u -= w;
        }
        Segment::ALL[7]
    };
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
