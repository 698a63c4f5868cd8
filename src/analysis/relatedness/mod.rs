//! Relatedness and economic complexity of clusters (issue 32): which
//! industries each cluster is specialised in, how near the others are, how
//! complex each is, and where each cluster can go next and with whom.
//!
//! * this module: the cluster × industry matrix, read from the network
//!   (employees or firms of each cluster's members in each industry, at an
//!   ISIC level, as of a date), and every figure of it;
//! * [`complexity`]: the figures on a location × activity matrix, with the
//!   Growth Lab's conventions (checked against `ecomplexity` 0.5.3);
//! * [`indices`]: specialisation and concentration indices (EconGeo's);
//! * [`paths`]: a cluster's upgrade paths and the partners for each.
//!
//! Formulas and conventions: docs/relatedness.md.

pub mod complexity;
pub mod indices;
pub mod paths;

use std::collections::HashMap;

use self::{
    complexity::{Complexity, Values},
    indices::{Concentration, Specialisation},
};
use crate::{
    analysis::{relations::fusion::IndustryLevel, Cancelled, Control},
    error::Error,
    graph::GraphFilter,
    model::Id,
    network::Network,
};

/// What a cell of the matrix counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Employees of the members in the industry (a member without a head
    /// count adds nothing).
    Employees,
    /// Members in the industry.
    Firms,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MatrixConfig {
    pub level: IndustryLevel,
    pub measure: Measure,
    /// Count government offices, universities, associations and the other
    /// institutions too; by default only enterprises (FIRM, CORE_FIRM):
    /// an institution's code (public administration, education) is not an
    /// industry the cluster produces in.
    pub include_institutions: bool,
    /// M_cp = 1 when RCA_cp ≥ this (1, Balassa's).
    pub threshold: f64,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        MatrixConfig {
            level: IndustryLevel::Class,
            measure: Measure::Employees,
            include_institutions: false,
            threshold: 1.0,
        }
    }
}

/// The cluster × industry matrix and every figure of it.
#[derive(Clone, Debug)]
pub struct Relatedness {
    /// Rows: the clusters the filter wants, in id order (a cluster with no
    /// value counted has undefined figures).
    pub clusters: Vec<Id>,
    /// Columns: every industry code (at the level) of a member counted, in
    /// code order.
    pub industries: Vec<String>,
    pub values: Values,
    pub figures: Complexity,
    pub specialisation: Vec<Specialisation>,
    pub concentration: Vec<Concentration>,
}

impl Relatedness {
    pub fn cluster_index(&self, id: &Id) -> Option<usize> {
        self.clusters.binary_search(id).ok()
    }

    pub fn industry_index(&self, code: &str) -> Option<usize> {
        self.industries.binary_search_by(|i| i.as_str().cmp(code)).ok()
    }

    /// The total value of a row (cluster).
    pub fn cluster_total(&self, c: usize) -> f64 {
        (0..self.values.cols).map(|p| self.values.at(c, p)).sum()
    }

    /// The total value of a column (industry).
    pub fn industry_total(&self, p: usize) -> f64 {
        (0..self.values.rows).map(|c| self.values.at(c, p)).sum()
    }
}

/// Industries a matrix may have: the eigenvectors take O(P³) time that no
/// deadline can interrupt (about 3 s at 2,000 on 2 cores), and density and
/// COG O(C·P²).
pub const MAX_INDUSTRIES: usize = 2_000;

/// Reads the matrix the filter and `config` describe, and computes its figures.
/// Members in several clusters count in each; members the filter drops
/// (not valid at `as_of`) and members without an industry code do not count.
/// More than [`MAX_INDUSTRIES`] industries is FAILED_PRECONDITION, naming
/// `matrix.industry_level`: a coarser level answers.
pub fn relatedness(
    network: &Network,
    filter: &GraphFilter,
    config: &MatrixConfig,
    control: &Control,
) -> Result<Relatedness, Error> {
    let (clusters, industries, values) = matrix(network, filter, config, control)?;
    if industries.len() > MAX_INDUSTRIES {
        return Err(Error::precondition(
            "matrix.industry_level",
            format!(
                "the members hold {} industry codes at this level, more than the {MAX_INDUSTRIES} \
                 the complexity figures are computed for; ask for a coarser level (GROUP, DIVISION)",
                industries.len()
            ),
        ));
    }
    control.progress("figures", 0, 1);
    control.check()?;
    let figures = complexity::complexity(&values, config.threshold, &|| control.check())?;
    let specialisation = indices::specialisation(&values);
    let concentration = indices::concentration(&values);
    Ok(Relatedness {
        clusters,
        industries,
        values,
        figures,
        specialisation,
        concentration,
    })
}

/// The matrix of every cluster by ISIC class, members counted, with its
/// figures: what the alert engine compares before and after a write.
pub struct MixMatrix {
    pub clusters: Vec<Id>,
    pub industries: Vec<String>,
    pub values: Values,
    /// All figures with `eci`; otherwise RCA, M, diversity and ubiquity
    /// only ([`complexity::specialisations`]).
    pub figures: Complexity,
}

impl MixMatrix {
    pub fn cluster_index(&self, id: &Id) -> Option<usize> {
        self.clusters.binary_search(id).ok()
    }

    pub fn industry_index(&self, code: &str) -> Option<usize> {
        self.industries.binary_search_by(|i| i.as_str().cmp(code)).ok()
    }

    pub fn cluster_total(&self, c: usize) -> f64 {
        (0..self.values.cols).map(|p| self.values.at(c, p)).sum()
    }
}

/// Industries past which the alert engine leaves ECI out of a write's
/// evaluation: the eigenvectors take O(P³) at every write that moves
/// members (about 30 ms at 500 on 2 cores), where M flips need O(C·P).
pub const MAX_INDUSTRIES_FOR_ALERTS: usize = 500;

/// The matrix of every cluster by ISIC class, members counted (institutions
/// too), as the network keeps it current (`Network::mixes`): no pass over
/// the members, so the alert engine can take it at every write. Equal to
/// [`relatedness`] with `Measure::Firms` and `include_institutions`. With
/// `eci`, every figure (None past [`MAX_INDUSTRIES_FOR_ALERTS`]); without,
/// RCA and M only (None past [`MAX_INDUSTRIES`]).
pub fn of_member_mixes(network: &Network, eci: bool) -> Option<MixMatrix> {
    let clusters: Vec<Id> = network.clusters.keys().cloned().collect();
    let industries: Vec<String> = network
        .mixes
        .values()
        .flat_map(|mix| mix.industries.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .cloned()
        .collect();
    if industries.len() > if eci { MAX_INDUSTRIES_FOR_ALERTS } else { MAX_INDUSTRIES } {
        return None;
    }
    let column: HashMap<&str, usize> = industries
        .iter()
        .enumerate()
        .map(|(p, code)| (code.as_str(), p))
        .collect();
    let cols = industries.len();
    let mut values = vec![0.0; clusters.len() * cols];
    for (c, cluster) in clusters.iter().enumerate() {
        for (code, count) in network.mixes.get(cluster).map(|m| &m.industries).into_iter().flatten() {
            values[c * cols + column[code.as_str()]] = *count as f64;
        }
    }
    let values = Values {
        rows: clusters.len(),
        cols,
        values,
    };
    let figures = if eci {
        complexity::complexity(&values, 1.0, &|| Ok(())).ok()?
    } else {
        complexity::specialisations(&values, 1.0)
    };
    Some(MixMatrix {
        clusters,
        industries,
        values,
        figures,
    })
}

type Matrix = (Vec<Id>, Vec<String>, Values);

fn matrix(
    network: &Network,
    filter: &GraphFilter,
    config: &MatrixConfig,
    control: &Control,
) -> Result<Matrix, Cancelled> {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    let wanted = filter.wants_cluster();
    let clusters: Vec<Id> = network.clusters.keys().filter(|id| wanted(id)).cloned().collect();
    let done = AtomicU64::new(0);
    // Each cluster's row, keyed by the code as the network holds it (no
    // copy per member), read in parallel: on the national network the rows
    // are a million members.
    let rows: Vec<rustc_hash::FxHashMap<&str, f64>> = clusters
        .par_iter()
        .map(|cluster| {
            control.check()?;
            let mut row: rustc_hash::FxHashMap<&str, f64> = rustc_hash::FxHashMap::default();
            for ix in network.member_indexes(cluster) {
                let Some(actor) = filter.actor(network, ix) else {
                    continue;
                };
                if !config.include_institutions && !actor.kind.is_enterprise() {
                    continue;
                }
                let attributes = network.attributes_at(actor, filter.as_of);
                let Some(code) = config.level.key(attributes.industry) else {
                    continue;
                };
                let value = match config.measure {
                    Measure::Employees => attributes.employees.unwrap_or(0) as f64,
                    Measure::Firms => 1.0,
                };
                *row.entry(code).or_insert(0.0) += value;
            }
            let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
            if finished.is_multiple_of(64) {
                control.progress("matrix", finished, clusters.len() as u64);
            }
            Ok(row)
        })
        .collect::<Result<_, Cancelled>>()?;
    let industries: Vec<&str> = rows
        .iter()
        .flat_map(|row| row.keys().copied())
        .collect::<std::collections::BTreeSet<&str>>()
        .into_iter()
        .collect();
    let column: HashMap<&str, usize> = industries.iter().enumerate().map(|(p, code)| (*code, p)).collect();
    let cols = industries.len();
    let mut values = vec![0.0; clusters.len() * cols];
    for (c, row) in rows.iter().enumerate() {
        for (code, value) in row {
            values[c * cols + column[code]] = *value;
        }
    }
    let values = Values {
        rows: clusters.len(),
        cols,
        values,
    };
    Ok((
        clusters,
        industries.into_iter().map(|code| code.to_string()).collect(),
        values,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Actor, ActorKind, ActorProfile, Change, Date},
        testing::{actor, cluster, network},
    };

    fn firm(id: &str, clusters: &[&str], industry: &str, employees: u64) -> Change {
        Change::UpsertActor(Actor {
            industry: industry.into(),
            employees: Some(employees),
            ..actor(id, clusters)
        })
    }

    fn cell(rel: &Relatedness, cluster: &str, industry: &str) -> f64 {
        let c = rel.cluster_index(&Id::from(cluster)).unwrap();
        let p = rel.industry_index(industry).unwrap();
        rel.values.at(c, p)
    }

    #[test]
    fn the_matrix_counts_each_member_in_each_of_its_clusters_at_the_level_asked() {
        let network = network([
            Change::UpsertCluster(cluster("A")),
            Change::UpsertCluster(cluster("B")),
            firm("a1", &["A"], "C2910", 100),
            firm("a2", &["A", "B"], "C2930", 40),
            firm("b1", &["B"], "M7410", 7),
            Change::UpsertActor(Actor {
                kind: ActorKind::Government,
                industry: "O8411".into(),
                employees: Some(1_000),
                ..actor("gov", &["A"])
            }),
        ]);
        let control = Control::none();
        let classes = relatedness(&network, &GraphFilter::default(), &MatrixConfig::default(), &control).unwrap();
        assert_eq!(
            classes.industries,
            ["C2910", "C2930", "M7410"],
            "the office is no industry"
        );
        assert_eq!(cell(&classes, "A", "C2930"), 40.0);
        assert_eq!(
            cell(&classes, "B", "C2930"),
            40.0,
            "a member of two clusters counts in both"
        );
        let divisions = MatrixConfig {
            level: IndustryLevel::Division,
            include_institutions: true,
            measure: Measure::Firms,
            ..MatrixConfig::default()
        };
        let divisions = relatedness(&network, &GraphFilter::default(), &divisions, &control).unwrap();
        assert_eq!(divisions.industries, ["C29", "M74", "O84"]);
        assert_eq!(cell(&divisions, "A", "C29"), 2.0);
        assert_eq!(cell(&divisions, "A", "O84"), 1.0);
    }

    #[test]
    fn the_member_mixes_give_the_matrix_of_firms_institutions_included() {
        let network = crate::testing::network(crate::synthetic::generate(&crate::synthetic::SyntheticConfig {
            clusters: 12,
            actors: 1_200,
            links: 2_000,
            industries: 9,
            ..Default::default()
        }));
        let mixed = of_member_mixes(&network, true).unwrap();
        let config = MatrixConfig {
            measure: Measure::Firms,
            include_institutions: true,
            ..MatrixConfig::default()
        };
        let read = relatedness(&network, &GraphFilter::default(), &config, &Control::none()).unwrap();
        assert_eq!((&mixed.clusters, &mixed.industries), (&read.clusters, &read.industries));
        assert_eq!(mixed.values, read.values);
        assert_eq!(format!("{:?}", mixed.figures.eci), format!("{:?}", read.figures.eci));
        // Without ECI, the specialisations are the same.
        let light = of_member_mixes(&network, false).unwrap();
        assert_eq!(light.figures.mcp, read.figures.mcp);
        assert_eq!(format!("{:?}", light.figures.rca), format!("{:?}", read.figures.rca));
        assert_eq!(light.figures.diversity, read.figures.diversity);
    }

    #[test]
    fn as_of_a_date_the_matrix_reads_the_profiles_then() {
        let network = network([
            Change::UpsertCluster(cluster("A")),
            Change::UpsertCluster(cluster("B")),
            firm("a1", &["A"], "M7410", 30),
            firm("b1", &["B"], "C2910", 10),
            Change::UpsertActorProfile(ActorProfile {
                actor_id: "a1".into(),
                until: Date::from_ymd(2020, 1, 1).unwrap(),
                industry: "C2910".into(),
                segments: Default::default(),
                employees: Some(12),
                revenue: None,
            }),
        ]);
        let filter = GraphFilter {
            as_of: Some(Date::from_ymd(2019, 6, 1).unwrap()),
            ..GraphFilter::default()
        };
        let then = relatedness(&network, &filter, &MatrixConfig::default(), &Control::none()).unwrap();
        assert_eq!(then.industries, ["C2910"]);
        assert_eq!(cell(&then, "A", "C2910"), 12.0);
    }
}
