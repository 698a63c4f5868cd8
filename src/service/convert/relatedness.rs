//! Relatedness results as messages: undefined figures (NaN in the domain)
//! are absent fields.

use crate::{
    analysis::relatedness::{paths::UpgradePath, Relatedness},
    service::pb,
};

/// A figure as an optional field: absent when undefined.
pub fn defined(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

fn count(x: f64) -> Option<u32> {
    (!x.is_nan()).then_some(x as u32)
}

/// Every (cluster, industry) pair, cluster by cluster.
pub fn pairs(rel: &Relatedness) -> impl Iterator<Item = pb::RelatednessRow> + '_ {
    let f = &rel.figures;
    let k = f.cols;
    (0..f.rows).flat_map(move |c| {
        (0..k).map(move |p| pb::RelatednessRow {
            cluster_id: rel.clusters[c].to_string(),
            industry: rel.industries[p].clone(),
            value: rel.values.at(c, p),
            rca: defined(f.rca[c * k + p]),
            mcp: f.mcp[c * k + p],
            density: defined(f.density[c * k + p]),
            cog: defined(f.cog[c * k + p]),
            pci: defined(f.pci[p]),
            eci: defined(f.eci[c]),
            coi: defined(f.coi[c]),
        })
    })
}

pub fn cluster(rel: &Relatedness, c: usize) -> pb::ClusterComplexity {
    let (f, s) = (&rel.figures, &rel.specialisation[c]);
    pb::ClusterComplexity {
        cluster_id: rel.clusters[c].to_string(),
        total: rel.cluster_total(c),
        diversity: count(f.diversity[c]),
        eci: defined(f.eci[c]),
        coi: defined(f.coi[c]),
        krugman: defined(s.krugman),
        herfindahl: defined(s.herfindahl),
        entropy: defined(s.entropy),
    }
}

pub fn industry(rel: &Relatedness, p: usize) -> pb::IndustryComplexity {
    let (f, c) = (&rel.figures, &rel.concentration[p]);
    pb::IndustryComplexity {
        industry: rel.industries[p].clone(),
        total: rel.industry_total(p),
        ubiquity: count(f.ubiquity[p]),
        pci: defined(f.pci[p]),
        hoover: defined(c.hoover),
        locational_gini: defined(c.locational_gini),
    }
}

/// Every pair of industries with a proximity of at least `min` (and above
/// 0), industry_a < industry_b.
pub fn proximities(rel: &Relatedness, min: f64) -> impl Iterator<Item = pb::IndustryProximity> + '_ {
    let k = rel.figures.cols;
    (0..k).flat_map(move |a| {
        (a + 1..k).filter_map(move |b| {
            let phi = rel.figures.proximity[a * k + b];
            (!phi.is_nan() && phi > 0.0 && phi >= min).then(|| pb::IndustryProximity {
                industry_a: rel.industries[a].clone(),
                industry_b: rel.industries[b].clone(),
                proximity: phi,
            })
        })
    })
}

pub fn summary(rel: &Relatedness, analysis: pb::AnalysisSummary) -> pb::RelatednessSummary {
    pb::RelatednessSummary {
        analysis: Some(analysis),
        clusters: rel.clusters.len() as u32,
        industries: rel.industries.len() as u32,
        clusters_without_value: (0..rel.clusters.len()).filter(|&c| rel.cluster_total(c) <= 0.0).count() as u32,
        complexity_defined: rel.figures.eci.iter().any(|e| !e.is_nan()),
    }
}

pub fn path(path: &UpgradePath) -> pb::UpgradePath {
    pb::UpgradePath {
        industry: path.industry.clone(),
        density: defined(path.density),
        cog: defined(path.cog),
        pci: defined(path.pci),
        score: defined(path.score),
        partners: path
            .partners
            .iter()
            .map(|partner| pb::UpgradePartner {
                cluster_id: partner.cluster.to_string(),
                rca: partner.rca,
                firm_links: partner.ties.firm_links,
                supplies_you: partner.ties.supplies_you,
                cluster_links: partner.ties.cluster_links,
            })
            .collect(),
        holders: path.holders as u32,
    }
}
