//! Generated networks of any size, for benchmarks and load tests.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Network;

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
