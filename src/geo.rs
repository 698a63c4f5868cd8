//! Where a cluster is: the country its sites lie in, from offline country
//! boundaries (the `country-boundaries` crate's OpenStreetMap data, © OpenStreetMap
//! contributors, ODbL, compiled into the binary; no I/O).
//!
//! A cluster's own `country` always wins. Without one, a cluster whose
//! sites all lie in one country is in that country; sites in two countries,
//! or at sea, leave it unknown, and [`HomeCountry::Unknown`] says why.

use std::sync::OnceLock;

use country_boundaries::{CountryBoundaries, LatLon, BOUNDARIES_ODBL_360X180};

use crate::model::{Cluster, Country};

/// A cluster's home country and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HomeCountry {
    /// The cluster's own `country`.
    Given(Country),
    /// Every site of the cluster lies in this country.
    FromSites(Country),
    /// Neither: why, in words ("no country and no sites", "sites in CN and JP").
    Unknown(String),
}

impl Default for HomeCountry {
    fn default() -> Self {
        HomeCountry::Unknown("no country and no sites".into())
    }
}

impl HomeCountry {
    pub fn country(&self) -> Option<Country> {
        match self {
            HomeCountry::Given(c) | HomeCountry::FromSites(c) => Some(*c),
            HomeCountry::Unknown(_) => None,
        }
    }
}

/// The boundaries, read once (about 20 ms) on first use.
fn boundaries() -> Option<&'static CountryBoundaries> {
    static BOUNDARIES: OnceLock<Option<CountryBoundaries>> = OnceLock::new();
    BOUNDARIES
        .get_or_init(|| CountryBoundaries::from_reader(BOUNDARIES_ODBL_360X180).ok())
        .as_ref()
}

/// The country a point lies in: the first two-letter (ISO 3166-1) id among
/// the areas containing it, smallest first (so Hong Kong is HK, not CN).
pub fn country_at(lat: f64, lon: f64) -> Option<Country> {
    let point = LatLon::new(lat, lon).ok()?;
    boundaries()?
        .ids(point)
        .into_iter()
        .filter(|id| id.len() == 2)
        .find_map(|id| id.parse().ok())
}

/// The cluster's home country: its own, else the one all its sites lie in.
pub fn home_country(cluster: &Cluster) -> HomeCountry {
    if let Some(country) = cluster.country {
        return HomeCountry::Given(country);
    }
    if cluster.sites.is_empty() {
        return HomeCountry::Unknown("no country and no sites".into());
    }
    let mut found: Vec<Country> = Vec::new();
    for site in &cluster.sites {
        match country_at(site.lat, site.lon) {
            Some(country) => {
                if !found.contains(&country) {
                    found.push(country);
                }
            }
            None => {
                return HomeCountry::Unknown(format!(
                    "site {} at {:.2}, {:.2} lies in no country",
                    site.id, site.lat, site.lon
                ))
            }
        }
    }
    match found.as_slice() {
        [one] => HomeCountry::FromSites(*one),
        many => {
            let names: Vec<&str> = many.iter().map(|c| c.as_str()).collect();
            HomeCountry::Unknown(format!("sites in {}", names.join(" and ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cluster, site as at};

    #[test]
    fn a_cluster_without_a_country_takes_the_one_its_sites_lie_in() {
        let suzhou = Cluster {
            sites: vec![at("suzhou", 31.30, 120.58), at("kunshan", 31.39, 120.98)],
            ..cluster("s")
        };
        assert_eq!(home_country(&suzhou), HomeCountry::FromSites("CN".parse().unwrap()));
    }

    #[test]
    fn sites_in_two_countries_leave_it_unknown_and_say_why() {
        let split = Cluster {
            sites: vec![at("shenzhen", 22.54, 114.06), at("osaka", 34.69, 135.50)],
            ..cluster("s")
        };
        assert_eq!(home_country(&split), HomeCountry::Unknown("sites in CN and JP".into()));
        let at_sea = Cluster {
            sites: vec![at("pacific", -30.0, -130.0)],
            ..cluster("s")
        };
        let why = home_country(&at_sea);
        assert!(
            matches!(&why, HomeCountry::Unknown(why) if why.contains("lies in no country")),
            "{why:?}"
        );
        assert_eq!(
            home_country(&cluster("s")),
            HomeCountry::Unknown("no country and no sites".into())
        );
    }

    #[test]
    fn an_explicit_country_always_wins() {
        let given = Cluster {
            country: Some("DE".parse().unwrap()),
            sites: vec![at("suzhou", 31.30, 120.58)],
            ..cluster("s")
        };
        assert_eq!(home_country(&given), HomeCountry::Given("DE".parse().unwrap()));
    }
}
