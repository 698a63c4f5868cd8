//! Places: where a cluster's members physically are. A place is one site of
//! a cluster, or several of its sites closer to each other than a distance
//! (co-located parks are one place, not parts of a virtual whole). A cluster
//! without sites is one place holding all its members.

use std::collections::HashMap;

use petgraph::unionfind::UnionFind;

use crate::{
    graph::GraphFilter,
    model::{Cluster, Id, Site},
    network::{Ix, Network},
};

/// Mean Earth radius, km.
const EARTH_RADIUS_KM: f64 = 6371.0;

#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    /// The site id, the site ids joined by '+', or the cluster id.
    pub id: Id,
    pub cluster: Id,
    pub sites: Vec<Id>,
    /// Members at this place that the filter keeps.
    pub members: Vec<Ix>,
}

/// Great-circle distance between two sites (haversine).
pub fn distance_km(a: &Site, b: &Site) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The places of the clusters in the filter (all when it names none), in
/// cluster order. The work is that of the clusters named: the alert engine
/// asks for one cluster at a time, for thousands of clusters in a round.
pub fn places(network: &Network, filter: &GraphFilter, colocation_km: f64) -> Vec<Place> {
    let mut out = Vec::new();
    // The named clusters are looked up, not searched for: AssessStage asks
    // for one cluster's places at a time.
    let clusters: Vec<&Cluster> = if filter.clusters.is_empty() {
        network.clusters.values().map(|c| &**c).collect()
    } else {
        let mut named: Vec<&Cluster> = filter
            .clusters
            .iter()
            .filter_map(|id| network.clusters.get(id))
            .map(|c| &**c)
            .collect();
        named.sort_by(|a, b| a.id.cmp(&b.id));
        named.dedup_by(|a, b| a.id == b.id);
        named
    };
    for cluster in clusters {
        let members: Vec<Ix> = network
            .member_indexes(&cluster.id)
            .filter(|ix| filter.actor(network, *ix).is_some())
            .collect();
        let first = out.len();
        if cluster.sites.is_empty() {
            out.push(Place {
                id: cluster.id.clone(),
                cluster: cluster.id.clone(),
                sites: Vec::new(),
                members,
            });
        } else {
            // Union the sites closer than colocation_km (a handful per cluster).
            let n = cluster.sites.len();
            let mut group: UnionFind<usize> = UnionFind::new(n);
            for i in 0..n {
                for j in i + 1..n {
                    if distance_km(&cluster.sites[i], &cluster.sites[j]) < colocation_km {
                        group.union(i, j);
                    }
                }
            }
            let mut index_of_group: HashMap<usize, usize> = HashMap::new();
            let mut place_of_site: HashMap<&Id, usize> = HashMap::new();
            for (i, site) in cluster.sites.iter().enumerate() {
                let place = *index_of_group.entry(group.find_mut(i)).or_insert_with(|| {
                    out.push(Place {
                        id: Id::default(),
                        cluster: cluster.id.clone(),
                        sites: Vec::new(),
                        members: Vec::new(),
                    });
                    out.len() - 1
                });
                out[place].sites.push(site.id.clone());
                place_of_site.insert(&site.id, place);
            }
            for place in &mut out[first..] {
                let names: Vec<&str> = place.sites.iter().map(|s| &**s).collect();
                place.id = Id::from(names.join("+"));
            }
            for ix in members {
                let site = network.actor(ix).and_then(|a| a.site_id.as_ref());
                if let Some(&place) = site.and_then(|s| place_of_site.get(s)) {
                    out[place].members.push(ix);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::site;

    #[test]
    fn distance_between_two_changning_parks_by_hand() {
        // 0.0088° of latitude and 0.0178° of longitude at 31.2° N:
        // 0.0088 · 111.19 = 0.978 km north, 0.0178 · 111.19 · cos 31.2° = 1.693 km
        // east; √(0.978² + 1.693²) = 1.955 km.
        let d = distance_km(&site("east", 31.2197, 121.4174), &site("central", 31.2109, 121.3996));
        assert!((d - 1.955).abs() < 0.01, "{d}");
    }
}
