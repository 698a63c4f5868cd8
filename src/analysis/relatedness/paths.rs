//! Upgrade paths: for one cluster, the industries it is not specialised in,
//! ranked by how near they are (density) and what they would add (COG,
//! PCI), and for each the clusters already specialised in it, those tied to
//! this cluster first, with the ties that join them. It reads "move into X;
//! Y and Z hold it, and Y already supplies you".

use std::collections::HashMap;

use super::Relatedness;
use crate::{
    analysis::{Cancelled, Control},
    graph::GraphFilter,
    model::{ClusterLinkKind, Id, LinkKind},
    network::Network,
};

/// The score an industry is ranked by: a weighted sum of its density, COG
/// and PCI for the cluster. Density alone by default (the principle of
/// relatedness: a cluster enters the industries near what it has).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ranking {
    pub density: f64,
    pub cog: f64,
    pub pci: f64,
}

impl Default for Ranking {
    fn default() -> Self {
        Ranking {
            density: 1.0,
            cog: 0.0,
            pci: 0.0,
        }
    }
}

impl Ranking {
    /// The score of figures; NaN when a weighted figure is undefined.
    pub fn score(&self, density: f64, cog: f64, pci: f64) -> f64 {
        let term = |weight: f64, value: f64| if weight == 0.0 { 0.0 } else { weight * value };
        term(self.density, density) + term(self.cog, cog) + term(self.pci, pci)
    }
}

/// What joins this cluster to a partner, counted over the links the filter keeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ties {
    /// Firm links between a member of each (any kind, either way).
    pub firm_links: u64,
    /// Of those, SUPPLY links from the partner's member to this cluster's.
    pub supplies_you: u64,
    /// Explicit cluster links between the two (a SUPPLY cluster link from
    /// the partner also counts in `supplies_you`).
    pub cluster_links: u64,
}

impl Ties {
    pub fn any(&self) -> bool {
        self.firm_links > 0 || self.cluster_links > 0
    }
}

/// A cluster specialised in the industry of a path.
#[derive(Clone, Debug, PartialEq)]
pub struct Partner {
    pub cluster: Id,
    pub rca: f64,
    pub ties: Ties,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UpgradePath {
    pub industry: String,
    pub density: f64,
    pub cog: f64,
    pub pci: f64,
    pub score: f64,
    /// Tied partners first (most supply, then most links), then the others
    /// by RCA; at most `partners` of them.
    pub partners: Vec<Partner>,
    /// Clusters specialised in the industry, listed or not.
    pub holders: usize,
}

pub struct PathsConfig {
    pub ranking: Ranking,
    /// Paths listed, best first (0: all).
    pub top: usize,
    /// Partners listed per path (0: all; None: none, and their ties are
    /// not read).
    pub partners: Option<usize>,
}

/// The upgrade paths of the cluster at row `c` of `relatedness`: every
/// industry with a value somewhere that it is not specialised in, best
/// score first (undefined scores last; ties by density, then code).
/// Reading the cluster's ties checks `control` (a cluster of hubs has
/// millions of links).
pub fn upgrade_paths(
    network: &Network,
    filter: &GraphFilter,
    relatedness: &Relatedness,
    c: usize,
    config: &PathsConfig,
    control: &Control,
) -> Result<Vec<UpgradePath>, Cancelled> {
    let figures = &relatedness.figures;
    let k = figures.cols;
    let mut paths: Vec<UpgradePath> = (0..k)
        .filter(|&p| !figures.mcp[c * k + p] && !figures.ubiquity[p].is_nan())
        .map(|p| {
            let (density, cog, pci) = (figures.density[c * k + p], figures.cog[c * k + p], figures.pci[p]);
            UpgradePath {
                industry: relatedness.industries[p].clone(),
                density,
                cog,
                pci,
                score: config.ranking.score(density, cog, pci),
                partners: Vec::new(),
                holders: 0,
            }
        })
        .collect();
    paths.sort_by(|a, b| {
        a.score
            .is_nan()
            .cmp(&b.score.is_nan())
            .then(b.score.total_cmp(&a.score))
            .then(b.density.total_cmp(&a.density))
            .then(a.industry.cmp(&b.industry))
    });
    if config.top > 0 {
        paths.truncate(config.top);
    }
    let Some(listed) = config.partners else {
        return Ok(paths);
    };
    if paths.is_empty() {
        return Ok(paths);
    }
    let ties = ties_of(network, filter, &relatedness.clusters[c], control)?;
    for path in &mut paths {
        let Some(p) = relatedness.industry_index(&path.industry) else {
            continue;
        };
        let mut partners: Vec<Partner> = (0..figures.rows)
            .filter(|&other| other != c && figures.mcp[other * k + p])
            .map(|other| {
                let cluster = relatedness.clusters[other].clone();
                Partner {
                    ties: ties.get(&cluster).cloned().unwrap_or_default(),
                    rca: figures.rca[other * k + p],
                    cluster,
                }
            })
            .collect();
        path.holders = partners.len();
        partners.sort_by(|a, b| {
            b.ties
                .any()
                .cmp(&a.ties.any())
                .then(b.ties.supplies_you.cmp(&a.ties.supplies_you))
                .then((b.ties.firm_links + b.ties.cluster_links).cmp(&(a.ties.firm_links + a.ties.cluster_links)))
                .then(b.rca.total_cmp(&a.rca))
                .then(a.cluster.cmp(&b.cluster))
        });
        if listed > 0 {
            partners.truncate(listed);
        }
        path.partners = partners;
    }
    Ok(paths)
}

/// Members whose links are read between two checks of the control.
const MEMBERS_PER_CHECK: usize = 256;

/// The ties between `cluster` and every other cluster: its members' links
/// the filter keeps (each link once, counted for each other cluster its far
/// end is in) and the explicit cluster links.
fn ties_of(
    network: &Network,
    filter: &GraphFilter,
    cluster: &Id,
    control: &Control,
) -> Result<HashMap<Id, Ties>, Cancelled> {
    let mut ties: HashMap<Id, Ties> = HashMap::new();
    for (read, ix) in network.member_indexes(cluster).enumerate() {
        if read % MEMBERS_PER_CHECK == 0 {
            control.check()?;
        }
        if filter.actor(network, ix).is_none() {
            continue;
        }
        let outward = network
            .out_links_with_data(ix)
            .map(|(key, data)| (key.target, key.kind, data, false));
        let inward = network
            .in_links_with_data(ix)
            .map(|(key, data)| (key.source, key.kind, data, true));
        for (other, kind, data, into_us) in outward.chain(inward) {
            if !filter.keeps_link(kind, data) {
                continue;
            }
            let Some(actor) = filter.actor(network, other) else {
                continue;
            };
            if actor.cluster_ids.contains(cluster) {
                continue;
            }
            for partner in &actor.cluster_ids {
                let entry = ties.entry(partner.clone()).or_default();
                entry.firm_links += 1;
                if into_us && kind == LinkKind::Supply {
                    entry.supplies_you += 1;
                }
            }
        }
    }
    for link in network.cluster_links.values() {
        if !filter.channels.is_empty() && !filter.channels.contains(&link.channel) {
            continue;
        }
        let lift = |end: &Id| network.sites.get(end).cloned().unwrap_or_else(|| end.clone());
        let (source, target) = (lift(&link.source), lift(&link.target));
        let partner = if &source == cluster {
            target.clone()
        } else if &target == cluster {
            source.clone()
        } else {
            continue;
        };
        if &partner == cluster {
            continue;
        }
        let entry = ties.entry(partner).or_default();
        entry.cluster_links += 1;
        if link.kind == ClusterLinkKind::Supply && &target == cluster {
            entry.supplies_you += 1;
        }
    }
    Ok(ties)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::{
            relatedness::{relatedness, MatrixConfig, Measure},
            Control,
        },
        model::{Actor, Change},
        testing::{actor, cluster, link, network},
    };

    /// Clusters H1..H4 hold A, B and X together; K1..K4 hold C and D; T
    /// holds A and B but not X. H1 supplies T; H2 has no tie to it.
    fn built_case() -> Network {
        let mut changes = Vec::new();
        let firm = |changes: &mut Vec<Change>, id: String, cluster: &str, industry: &str| {
            changes.push(Change::UpsertActor(Actor {
                industry: industry.into(),
                ..actor(&id, &[cluster])
            }));
        };
        for c in ["H1", "H2", "H3", "H4", "K1", "K2", "K3", "K4", "T"] {
            changes.push(Change::UpsertCluster(cluster(c)));
        }
        for h in ["H1", "H2", "H3", "H4"] {
            for industry in ["A", "B", "X"] {
                firm(&mut changes, format!("{h}-{industry}"), h, industry);
            }
        }
        for k in ["K1", "K2", "K3", "K4"] {
            for industry in ["C", "D"] {
                firm(&mut changes, format!("{k}-{industry}"), k, industry);
            }
        }
        for industry in ["A", "B"] {
            firm(&mut changes, format!("T-{industry}"), "T", industry);
        }
        changes.push(Change::UpsertLink(link("H1-X", "T-A", LinkKind::Supply)));
        changes.push(Change::UpsertLink(link("H2-A", "K1-C", LinkKind::Supply)));
        network(changes)
    }

    fn paths_of(network: &Network, cluster: &str, ranking: Ranking) -> Vec<UpgradePath> {
        let filter = GraphFilter::default();
        let config = MatrixConfig {
            measure: Measure::Firms,
            ..MatrixConfig::default()
        };
        let rel = relatedness(network, &filter, &config, &Control::none()).unwrap();
        let c = rel.cluster_index(&Id::from(cluster)).unwrap();
        let paths = PathsConfig {
            ranking,
            top: 0,
            partners: Some(0),
        };
        upgrade_paths(network, &filter, &rel, c, &paths, &Control::none()).unwrap()
    }

    #[test]
    fn the_industry_whose_neighbours_a_cluster_holds_comes_first_with_the_tied_partner_named_first() {
        let network = built_case();
        let paths = paths_of(&network, "T", Ranking::default());
        let first = &paths[0];
        assert_eq!(first.industry, "X", "{paths:#?}");
        assert!(first.density > paths[1].density);
        assert_eq!(first.holders, 4);
        let partner = &first.partners[0];
        assert_eq!(partner.cluster, Id::from("H1"));
        assert_eq!(
            partner.ties,
            Ties {
                firm_links: 1,
                supplies_you: 1,
                cluster_links: 0
            }
        );
        assert!(first.partners[1..].iter().all(|p| !p.ties.any()), "the untied follow");
        // Industries T holds are no path.
        assert!(paths.iter().all(|p| p.industry != "A" && p.industry != "B"));
    }

    #[test]
    fn reading_the_partners_ties_stops_when_the_call_is_cancelled() {
        let network = built_case();
        let filter = GraphFilter::default();
        let config = MatrixConfig {
            measure: Measure::Firms,
            ..MatrixConfig::default()
        };
        let rel = relatedness(&network, &filter, &config, &Control::none()).unwrap();
        let c = rel.cluster_index(&Id::from("T")).unwrap();
        let cancelled = std::sync::atomic::AtomicBool::new(true);
        let control = Control::new(&cancelled, &|_, _, _| {}, std::time::Duration::from_secs(1));
        let paths = PathsConfig {
            ranking: Ranking::default(),
            top: 0,
            partners: Some(0),
        };
        assert!(upgrade_paths(&network, &filter, &rel, c, &paths, &control).is_err());
        let no_partners = PathsConfig {
            partners: None,
            ..paths
        };
        assert!(
            upgrade_paths(&network, &filter, &rel, c, &no_partners, &control).is_ok(),
            "no ties read"
        );
    }

    #[test]
    fn the_ranking_formula_is_the_caller_s() {
        let network = built_case();
        let by_pci = paths_of(
            &network,
            "T",
            Ranking {
                density: 0.0,
                cog: 0.0,
                pci: 1.0,
            },
        );
        for pair in by_pci.windows(2) {
            assert!(pair[0].pci >= pair[1].pci || pair[1].pci.is_nan(), "{by_pci:#?}");
        }
        for path in &by_pci {
            assert!(path.score == path.pci || path.pci.is_nan());
        }
    }
}
