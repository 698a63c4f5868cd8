//! Analysis requests to jobs: defaults filled in, every parameter checked,
//! errors naming the field.

use std::collections::{BTreeMap, HashMap};

use crate::service::{convert, pb};
use crate::{
    analysis::{
        algo::centrality::{BetweennessConfig, Direction, EigenvectorConfig, PageRankConfig},
        algo::community::{LabelPropagationConfig, LouvainConfig},
        relatedness::{
            paths::{PathsConfig, Ranking},
            MatrixConfig, Measure as RelatednessMeasure,
        },
        relations::fusion::{FusionConfig, IndustryLevel, Pivots},
        relations::gaps::GapConfig,
        relations::overlap::{Dimension, OverlapJob, Pairs},
        relations::substitution::SubstituteConfig,
        run::{CentralityJob, CommunityAlgorithm, CommunityJob, Measure},
        stages::stage_config::StageConfig,
    },
    error::{Error, Result},
    graph::{GraphFilter, GraphSpec, Layer},
    model::{Channel, Date, Id},
    network::Network,
};

/// The most rows a caller may ask for with `top_k`.
pub const MAX_TOP_K: i32 = 1_000_000;
const MAX_ITERATIONS: i32 = 10_000;

pub fn layer(value: i32, default: Layer) -> Result<Layer> {
    match pb::Layer::try_from(value) {
        Ok(pb::Layer::Unspecified) => Ok(default),
        Ok(pb::Layer::Firm) => Ok(Layer::Firm),
        Ok(pb::Layer::Cluster) => Ok(Layer::Cluster),
        Ok(pb::Layer::Site) => Ok(Layer::Site),
        Err(_) => Err(Error::invalid("layer", format!("{value} is not a known Layer value"))),
    }
}

pub fn filter(filter: Option<pb::NetworkFilter>, network: &Network) -> Result<GraphFilter> {
    let filter = filter.unwrap_or_default();
    let link_kinds = filter
        .link_kinds
        .iter()
        .enumerate()
        .map(|(i, k)| convert::link_kind(*k, &format!("filter.link_kinds[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    let channels = filter
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| {
            convert::optional_enum(Channel::ALL, *c, &format!("filter.channels[{i}]"), "Channel")?
                .ok_or_else(|| Error::invalid(format!("filter.channels[{i}]"), "must be set to a Channel value"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut clusters = Vec::new();
    for (i, id) in filter.cluster_ids.iter().enumerate() {
        if !network.clusters.contains_key(id.as_str()) {
            return Err(Error::not_found(format!("filter.cluster_ids[{i}]"), "cluster", id));
        }
        clusters.push(Id::from(id.as_str()));
    }
    let as_of = match filter.as_of.as_str() {
        "" => None,
        text => Some(text.parse().map_err(|e: String| Error::invalid("filter.as_of", e))?),
    };
    Ok(GraphFilter {
        link_kinds,
        channels,
        clusters,
        as_of,
    })
}

fn iterations(value: i32, default: u32, field: &str) -> Result<u32> {
    match value {
        0 => Ok(default),
        v if (1..=MAX_ITERATIONS).contains(&v) => Ok(v as u32),
        v => Err(Error::invalid(field, format!("{v} is outside 1..{MAX_ITERATIONS}"))),
    }
}

fn pagerank(
    params: &pb::PageRankParams,
    layer: Layer,
    network: &Network,
) -> Result<(PageRankConfig, HashMap<Id, f64>)> {
    let defaults = PageRankConfig::default();
    let damping = match params.damping {
        0.0 => defaults.damping,
        d if d > 0.0 && d < 1.0 => d,
        d => return Err(Error::invalid("pagerank.damping", format!("{d} is outside (0, 1)"))),
    };
    let tolerance = match params.tolerance {
        0.0 => defaults.tolerance,
        t if t.is_finite() && t > 0.0 => t,
        t => {
            return Err(Error::invalid(
                "pagerank.tolerance",
                format!("{t} is not a positive number"),
            ))
        }
    };
    let max_iterations = iterations(
        params.max_iterations,
        defaults.max_iterations,
        "pagerank.max_iterations",
    )?;
    let mut personalization = HashMap::new();
    for (id, weight) in &params.personalization {
        let field = format!("pagerank.personalization[{id}]");
        if !(weight.is_finite() && *weight >= 0.0) {
            return Err(Error::invalid(field, format!("{weight} is not a non-negative number")));
        }
        let known = match layer {
            Layer::Firm => network.actors.contains_key(id.as_str()),
            Layer::Cluster => network.clusters.contains_key(id.as_str()),
            Layer::Site => network.sites.contains_key(id.as_str()),
        };
        if !known {
            return Err(Error::not_found(field, "node", id));
        }
        personalization.insert(Id::from(id.as_str()), *weight);
    }
    if !personalization.is_empty() && personalization.values().all(|w| *w == 0.0) {
        return Err(Error::invalid("pagerank.personalization", "gives every node weight 0"));
    }
    // The weights are normalised by their sum: one that overflows would make
    // every score 0.
    if !personalization.values().sum::<f64>().is_finite() {
        return Err(Error::invalid(
            "pagerank.personalization",
            "the weights sum past the largest number; scale them down",
        ));
    }
    let config = PageRankConfig {
        damping,
        tolerance,
        max_iterations,
        ..defaults
    };
    Ok((config, personalization))
}

fn graph_spec(layer: Layer, filter: GraphFilter, undirected: bool, weighted: bool) -> GraphSpec {
    GraphSpec {
        layer,
        filter,
        undirected: undirected || layer != Layer::Firm,
        weighted,
    }
}

pub fn centrality_job(request: pb::CentralityRequest, network: &Network) -> Result<CentralityJob> {
    let layer = layer(request.layer, Layer::Firm)?;
    let filter = filter(request.filter, network)?;
    let mut personalization = HashMap::new();
    let measure = match pb::CentralityMeasure::try_from(request.measure) {
        Ok(pb::CentralityMeasure::Unspecified) => {
            return Err(Error::invalid("measure", "must be set to a CentralityMeasure value"))
        }
        Err(_) => {
            return Err(Error::invalid(
                "measure",
                format!("{} is not a known CentralityMeasure value", request.measure),
            ))
        }
        Ok(pb::CentralityMeasure::Degree) => {
            let params = request.degree.unwrap_or_default();
            let direction = match pb::DegreeDirection::try_from(params.direction) {
                Ok(pb::DegreeDirection::Unspecified | pb::DegreeDirection::Total) => Direction::Total,
                Ok(pb::DegreeDirection::In) => Direction::In,
                Ok(pb::DegreeDirection::Out) => Direction::Out,
                Err(_) => {
                    return Err(Error::invalid(
                        "degree.direction",
                        format!("{} is not a known DegreeDirection value", params.direction),
                    ))
                }
            };
            Measure::Degree {
                direction,
                normalized: params.normalized,
            }
        }
        Ok(pb::CentralityMeasure::Pagerank) => {
            let (config, jump) = pagerank(&request.pagerank.unwrap_or_default(), layer, network)?;
            personalization = jump;
            Measure::PageRank(config)
        }
        Ok(pb::CentralityMeasure::Betweenness) => {
            let params = request.betweenness.unwrap_or_default();
            let samples = match params.samples {
                0 => None,
                s if s > 0 => Some(s as usize),
                s => return Err(Error::invalid("betweenness.samples", format!("{s} is negative"))),
            };
            Measure::Betweenness(BetweennessConfig {
                normalized: params.normalized.unwrap_or(true),
                weighted: request.weighted,
                samples,
                seed: params.seed,
            })
        }
        Ok(pb::CentralityMeasure::Closeness) => Measure::Closeness,
        Ok(pb::CentralityMeasure::Harmonic) => Measure::Harmonic,
        Ok(pb::CentralityMeasure::Eigenvector) => Measure::Eigenvector(EigenvectorConfig::default()),
        Ok(pb::CentralityMeasure::KCore) => Measure::KCore,
    };
    let top_k = match request.top_k {
        k if (0..=MAX_TOP_K).contains(&k) => k as usize,
        k => return Err(Error::invalid("top_k", format!("{k} is outside 0..{MAX_TOP_K}"))),
    };
    let ascending = match pb::SortOrder::try_from(request.order) {
        Ok(pb::SortOrder::Unspecified | pb::SortOrder::Descending) => false,
        Ok(pb::SortOrder::Ascending) => true,
        Err(_) => {
            return Err(Error::invalid(
                "order",
                format!("{} is not a known SortOrder value", request.order),
            ))
        }
    };
    Ok(CentralityJob {
        graph: graph_spec(layer, filter, request.undirected, request.weighted),
        measure,
        personalization,
        top_k,
        ascending,
    })
}

pub fn overlap_job(request: pb::ClusterOverlapRequest, network: &Network) -> Result<OverlapJob> {
    let known = |field: &str, id: &str| -> Result<Id> {
        if network.clusters.contains_key(id) {
            Ok(Id::from(id))
        } else {
            Err(Error::not_found(field, "cluster", id))
        }
    };
    let pairs = match (request.cluster_a.as_str(), request.cluster_b.as_str()) {
        ("", "") => Pairs::All,
        (a, "") => Pairs::Against(known("cluster_a", a)?),
        ("", _) => return Err(Error::invalid("cluster_a", "must be set when cluster_b is")),
        (a, b) => Pairs::One(known("cluster_a", a)?, known("cluster_b", b)?),
    };
    let mut dimensions = Vec::new();
    for (i, value) in request.dimensions.iter().enumerate() {
        let dimension = match pb::OverlapDimension::try_from(*value) {
            Ok(pb::OverlapDimension::Members) => Dimension::Members,
            Ok(pb::OverlapDimension::Segments) => Dimension::Segments,
            Ok(pb::OverlapDimension::Industries) => Dimension::Industries,
            Ok(pb::OverlapDimension::Partners) => Dimension::Partners,
            _ => {
                return Err(Error::invalid(
                    format!("dimensions[{i}]"),
                    format!("{value} is not an OverlapDimension value"),
                ))
            }
        };
        if !dimensions.contains(&dimension) {
            dimensions.push(dimension);
        }
    }
    if dimensions.is_empty() {
        dimensions = Dimension::ALL.to_vec();
    }
    let shared_limit = match request.shared_limit {
        0 => 10,
        n @ 1..=1000 => n as usize,
        n => return Err(Error::invalid("shared_limit", format!("{n} is outside 0..1000"))),
    };
    Ok(OverlapJob {
        pairs,
        dimensions,
        filter: filter(request.filter, network)?,
        shared_limit,
    })
}

/// Whom a Substitutes call is about.
pub enum SubstituteTarget {
    Actor(u32),
    Cluster(Id),
}

pub fn substitutes_job(
    request: &pb::SubstitutesRequest,
    network: &Network,
) -> Result<(SubstituteTarget, GraphFilter, SubstituteConfig)> {
    let target = match (request.actor_id.as_str(), request.cluster_id.as_str()) {
        ("", "") => return Err(Error::invalid("actor_id", "set actor_id or cluster_id")),
        (_, "") => SubstituteTarget::Actor(
            network
                .ix_of(&request.actor_id)
                .ok_or_else(|| Error::not_found("actor_id", "actor", &request.actor_id))?,
        ),
        ("", id) if network.clusters.contains_key(id) => SubstituteTarget::Cluster(id.into()),
        ("", id) => return Err(Error::not_found("cluster_id", "cluster", id)),
        _ => {
            return Err(Error::invalid(
                "cluster_id",
                "set either actor_id or cluster_id, not both",
            ))
        }
    };
    let defaults = SubstituteConfig::default();
    let top_k = match request.top_k {
        0 => defaults.top_k,
        k @ 1..=10_000 => k as usize,
        k => return Err(Error::invalid("top_k", format!("{k} is outside 0..10000"))),
    };
    if !(0.0..=1.0).contains(&request.min_substitute_score) {
        return Err(Error::invalid(
            "min_substitute_score",
            format!("{} is outside [0, 1]", request.min_substitute_score),
        ));
    }
    let weights = [
        ("structural_weight", request.structural_weight),
        ("segment_weight", request.segment_weight),
        ("industry_weight", request.industry_weight),
    ];
    for (field, w) in weights {
        if !(w.is_finite() && w >= 0.0) {
            return Err(Error::invalid(field, format!("{w} is not a non-negative number")));
        }
    }
    if !weights.iter().map(|(_, w)| w).sum::<f64>().is_finite() {
        return Err(Error::invalid(
            "structural_weight",
            "the three weights sum past the largest number; scale them down",
        ));
    }
    let (structural_weight, segment_weight, industry_weight) = if weights.iter().all(|(_, w)| *w == 0.0) {
        (
            defaults.structural_weight,
            defaults.segment_weight,
            defaults.industry_weight,
        )
    } else {
        (
            request.structural_weight,
            request.segment_weight,
            request.industry_weight,
        )
    };
    let shared_limit = match request.shared_limit {
        0 => defaults.shared_limit,
        n @ 1..=1000 => n as usize,
        n => return Err(Error::invalid("shared_limit", format!("{n} is outside 0..1000"))),
    };
    let config = SubstituteConfig {
        structural_weight,
        segment_weight,
        industry_weight,
        min_score: request.min_substitute_score,
        top_k,
        shared_limit,
    };
    Ok((target, filter(request.filter.clone(), network)?, config))
}

fn industry_level(value: i32, default: IndustryLevel, field: &str) -> Result<IndustryLevel> {
    match pb::IndustryLevel::try_from(value) {
        Ok(pb::IndustryLevel::Unspecified) => Ok(default),
        Ok(pb::IndustryLevel::Section) => Ok(IndustryLevel::Section),
        Ok(pb::IndustryLevel::Division) => Ok(IndustryLevel::Division),
        Ok(pb::IndustryLevel::Group) => Ok(IndustryLevel::Group),
        Ok(pb::IndustryLevel::Class) => Ok(IndustryLevel::Class),
        Err(_) => Err(Error::invalid(
            field,
            format!("{value} is not a known IndustryLevel value"),
        )),
    }
}

/// The matrix a relatedness request describes, and the filter it reads with.
pub fn relatedness_matrix(
    matrix: Option<pb::RelatednessMatrix>,
    network: &Network,
) -> Result<(GraphFilter, MatrixConfig)> {
    let matrix = matrix.unwrap_or_default();
    let filter = filter(matrix.filter, network).map_err(|e| e.within("matrix"))?;
    let defaults = MatrixConfig::default();
    let level = industry_level(matrix.industry_level, defaults.level, "matrix.industry_level")?;
    let measure = match pb::RelatednessValue::try_from(matrix.value) {
        Ok(pb::RelatednessValue::Unspecified | pb::RelatednessValue::Employees) => RelatednessMeasure::Employees,
        Ok(pb::RelatednessValue::Firms) => RelatednessMeasure::Firms,
        Err(_) => {
            return Err(Error::invalid(
                "matrix.value",
                format!("{} is not a known RelatednessValue value", matrix.value),
            ))
        }
    };
    let threshold = match matrix.rca_threshold {
        0.0 => defaults.threshold,
        t if t.is_finite() && t > 0.0 => t,
        t => {
            return Err(Error::invalid(
                "matrix.rca_threshold",
                format!("{t} is not a finite number above 0"),
            ))
        }
    };
    Ok((
        filter,
        MatrixConfig {
            level,
            measure,
            include_institutions: matrix.include_institutions,
            threshold,
        },
    ))
}

pub fn relatedness_view(value: i32) -> Result<pb::RelatednessView> {
    match pb::RelatednessView::try_from(value) {
        Ok(pb::RelatednessView::Unspecified) => Ok(pb::RelatednessView::Pairs),
        Ok(view) => Ok(view),
        Err(_) => Err(Error::invalid(
            "view",
            format!("{value} is not a known RelatednessView value"),
        )),
    }
}

pub fn min_proximity(value: f64) -> Result<f64> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(Error::invalid("min_proximity", format!("{value} is outside [0, 1]")))
    }
}

/// The upgrade paths asked for, the matrix they are read from aside.
pub fn paths_config(request: &pb::UpgradePathsRequest) -> Result<PathsConfig> {
    let ranking = match &request.ranking {
        None => Ranking::default(),
        Some(r) => {
            for (field, weight) in [
                ("ranking.density_weight", r.density_weight),
                ("ranking.cog_weight", r.cog_weight),
                ("ranking.pci_weight", r.pci_weight),
            ] {
                if !weight.is_finite() {
                    return Err(Error::invalid(field, format!("{weight} is not a finite number")));
                }
            }
            if r.density_weight == 0.0 && r.cog_weight == 0.0 && r.pci_weight == 0.0 {
                return Err(Error::invalid(
                    "ranking",
                    "every weight is 0; leave ranking unset for density alone",
                ));
            }
            Ranking {
                density: r.density_weight,
                cog: r.cog_weight,
                pci: r.pci_weight,
            }
        }
    };
    let top = match request.top {
        0 => 10,
        n if n <= MAX_TOP_K as u32 => n as usize,
        n => return Err(Error::invalid("top", format!("{n} is above {MAX_TOP_K}"))),
    };
    let partners = match request.partners {
        0 => 5,
        n if n <= 10_000 => n as usize,
        n => return Err(Error::invalid("partners", format!("{n} is above 10000"))),
    };
    Ok(PathsConfig {
        ranking,
        top,
        partners: Some(partners),
    })
}

pub fn fusion_job(request: pb::FusionLinksRequest, network: &Network) -> Result<(GraphFilter, FusionConfig)> {
    let filter = filter(request.filter, network)?;
    let defaults = FusionConfig::default();
    let level = industry_level(request.industry_level, defaults.level, "industry_level")?;
    let pivots = match (request.exact_betweenness, request.betweenness_samples) {
        (true, 0) => Pivots::Exact,
        (true, _) => {
            return Err(Error::invalid(
                "betweenness_samples",
                "leave it 0 when exact_betweenness is set",
            ))
        }
        (false, 0) => Pivots::Auto,
        (false, n) if n > 0 => Pivots::Sampled(n as usize),
        (false, n) => return Err(Error::invalid("betweenness_samples", format!("{n} is negative"))),
    };
    let since = convert::date(&request.since, "since")?;
    if request.only_new && since.is_none() {
        return Err(Error::invalid("since", "only_new needs a since date"));
    }
    let top_k = match request.top_k {
        0 => defaults.top_k,
        k @ 1..=MAX_TOP_K => k as usize,
        k => return Err(Error::invalid("top_k", format!("{k} is outside 0..{MAX_TOP_K}"))),
    };
    Ok((
        filter,
        FusionConfig {
            level,
            communities: LouvainConfig {
                resolution: resolution(request.resolution)?,
                seed: request.seed,
                ..LouvainConfig::default()
            },
            weighted: request.weighted,
            pivots,
            since,
            only_new: request.only_new,
            top_k,
            include_institutions: request.include_institutions,
        },
    ))
}

/// A cluster the request names, which must exist.
pub fn cluster_id(id: &str, network: &Network) -> Result<Id> {
    match id {
        "" => Err(Error::invalid("cluster_id", "must name a cluster")),
        id if !network.clusters.contains_key(id) => Err(Error::not_found("cluster_id", "cluster", id)),
        id => Ok(Id::from(id)),
    }
}

/// Two dates, `from` before `to`.
pub fn date_range(from: &str, to: &str) -> Result<(Date, Date)> {
    let required = |text: &str, field: &str| {
        convert::date(text, field)?.ok_or_else(|| Error::invalid(field, "must be a date (YYYY-MM-DD)"))
    };
    let (from, to) = (required(from, "from")?, required(to, "to")?);
    if to <= from {
        return Err(Error::invalid("to", format!("{to} is not after from {from}")));
    }
    Ok((from, to))
}

/// The server's stage settings with a request's overrides applied.
pub fn stage_config(base: &StageConfig, overrides: &HashMap<String, f64>) -> Result<StageConfig> {
    let overrides: BTreeMap<String, f64> = overrides.iter().map(|(k, v)| (k.clone(), *v)).collect();
    base.with_overrides(&overrides)
        .map_err(|bad| Error::invalid(format!("overrides[{}]", bad.name), bad.message))
}

/// A modularity resolution: 0 means 1.
fn resolution(value: f64) -> Result<f64> {
    match value {
        0.0 => Ok(1.0),
        r if r.is_finite() && r > 0.0 => Ok(r),
        r => Err(Error::invalid("resolution", format!("{r} is not a positive number"))),
    }
}

/// The settings Louvain and Leiden share.
fn modularity_config(request: &pb::CommunitiesRequest, resolution: f64) -> Result<LouvainConfig> {
    let defaults = LouvainConfig::default();
    Ok(LouvainConfig {
        resolution,
        seed: request.seed,
        max_levels: iterations(request.max_iterations, defaults.max_levels, "max_iterations")?,
        ..defaults
    })
}

pub fn community_job(request: pb::CommunitiesRequest, network: &Network) -> Result<CommunityJob> {
    let layer = layer(request.layer, Layer::Firm)?;
    let filter = filter(request.filter.clone(), network)?;
    let resolution = resolution(request.resolution)?;
    let algorithm = match pb::CommunityAlgorithm::try_from(request.algorithm) {
        Ok(pb::CommunityAlgorithm::Unspecified) => {
            return Err(Error::invalid("algorithm", "must be set to a CommunityAlgorithm value"))
        }
        Err(_) => {
            return Err(Error::invalid(
                "algorithm",
                format!("{} is not a known CommunityAlgorithm value", request.algorithm),
            ))
        }
        Ok(pb::CommunityAlgorithm::Louvain) => CommunityAlgorithm::Louvain(modularity_config(&request, resolution)?),
        Ok(pb::CommunityAlgorithm::Leiden) => CommunityAlgorithm::Leiden(modularity_config(&request, resolution)?),
        Ok(pb::CommunityAlgorithm::LabelPropagation) => CommunityAlgorithm::LabelPropagation(LabelPropagationConfig {
            seed: request.seed,
            max_iterations: iterations(
                request.max_iterations,
                LabelPropagationConfig::default().max_iterations,
                "max_iterations",
            )?,
        }),
        Ok(pb::CommunityAlgorithm::ConnectedComponents) => CommunityAlgorithm::ConnectedComponents,
        Ok(pb::CommunityAlgorithm::StronglyConnectedComponents) => CommunityAlgorithm::StronglyConnectedComponents,
    };
    Ok(CommunityJob {
        graph: graph_spec(layer, filter, false, request.weighted),
        algorithm,
    })
}

/// A SubstitutionGaps request in model terms: the filter and the thresholds.
pub fn gaps_job(request: pb::SubstitutionGapsRequest, network: &Network) -> Result<(GraphFilter, GapConfig)> {
    let mut config = GapConfig::default();
    match request.min_substitute_score {
        0.0 => {}
        s if s > 0.0 && s <= 1.0 => config.min_substitute_score = s,
        s => return Err(Error::invalid("min_substitute_score", format!("{s} is outside (0, 1]"))),
    }
    match request.lost_limit {
        0 => {}
        n @ 1..=1000 => config.lost_limit = n as usize,
        n => return Err(Error::invalid("lost_limit", format!("{n} is outside 0..1000"))),
    }
    Ok((filter(request.filter, network)?, config))
}

/// The cluster-to-cluster layer InterClusterNetwork draws (CLUSTER by default).
pub fn inter_cluster_layer(value: i32) -> Result<Layer> {
    match layer(value, Layer::Cluster)? {
        Layer::Firm => Err(Error::invalid("layer", "must be LAYER_CLUSTER or LAYER_SITE")),
        layer => Ok(layer),
    }
}
