//! A subcommand per analysis: each builds its request from flags, and says
//! which part of the stream becomes rows and with which columns; `drive`
//! does the rest (progress bar, printing, the summary line on stderr).

use clap::{Args, Subcommand};
use tonic::Streaming;

use super::{
    output::{written, Cell, OutputArgs, Printer, Progress, Record},
    server_error, ClientArgs, FilterArgs, LayerArg,
};
use crate::service::pb;

/// What one message of an analysis stream is to the command line.
enum Part {
    Progress(pb::Progress),
    Rows(Vec<Record>),
    Summary(String),
    Skip,
}

fn summary_line(s: &pb::AnalysisSummary) -> String {
    let elapsed = s
        .elapsed
        .as_ref()
        .map_or(0.0, |d| d.seconds as f64 + d.nanos as f64 / 1e9);
    format!(
        "revision {}: {} nodes, {} edges; {} rows in {:.2} s{}",
        s.revision,
        s.nodes,
        s.edges,
        s.rows,
        elapsed,
        if s.iterations > 0 {
            format!(
                "; {} iterations{}",
                s.iterations,
                if s.converged { "" } else { ", not converged" }
            )
        } else {
            String::new()
        }
    )
}

/// The closing line of each kind of summary.
trait Closing {
    fn line(&self) -> String;
}

impl Closing for pb::AnalysisSummary {
    fn line(&self) -> String {
        summary_line(self)
    }
}

impl Closing for pb::CommunitiesSummary {
    fn line(&self) -> String {
        let rest = self.analysis.as_ref().map(summary_line).unwrap_or_default();
        format!(
            "{} communities, modularity {:.4}; {rest}",
            self.communities, self.modularity
        )
    }
}

impl Closing for pb::FusionLinksSummary {
    fn line(&self) -> String {
        self.analysis.as_ref().map(summary_line).unwrap_or_default()
    }
}

impl Closing for pb::RelatednessSummary {
    fn line(&self) -> String {
        let rest = self.analysis.as_ref().map(summary_line).unwrap_or_default();
        format!(
            "{} clusters x {} industries ({} without value){}; {rest}",
            self.clusters,
            self.industries,
            self.clusters_without_value,
            if self.complexity_defined {
                ""
            } else {
                "; ECI and PCI undefined (docs/relatedness.md)"
            }
        )
    }
}

impl Closing for pb::UpgradePathsSummary {
    fn line(&self) -> String {
        let eci = self
            .cluster
            .as_ref()
            .and_then(|c| c.eci)
            .map_or("undefined".to_string(), |e| format!("{e:.4}"));
        let rest = self.matrix.as_ref().map(Closing::line).unwrap_or_default();
        format!("{} industries to enter; ECI {eci}; {rest}", self.candidates)
    }
}

impl Closing for pb::CoreFirmsSummary {
    fn line(&self) -> String {
        let rest = self.analysis.as_ref().map(summary_line).unwrap_or_default();
        format!("{} members; {rest}", self.members)
    }
}

fn rows<T>(items: Vec<T>, row: impl Fn(T) -> Record) -> Part {
    Part::Rows(items.into_iter().map(row).collect())
}

/// Splits a stream message: progress and summary as every analysis sends
/// them, and the given batch patterns as rows; anything else skipped.
macro_rules! split {
    ($event:ident, $message:expr, { $($batch:pat $(if $guard:expr)? => $rows:expr),+ $(,)? }) => {
        match $message.event {
            Some($event::Progress(p)) => Part::Progress(p),
            Some($event::Summary(s)) => Part::Summary(s.line()),
            $(Some($batch) $(if $guard)? => $rows,)+
            #[allow(unreachable_patterns)]
            _ => Part::Skip,
        }
    };
}

/// Reads a stream to its end: rows to stdout, progress and the summary to
/// stderr.
async fn drive<R>(
    call: Result<tonic::Response<Streaming<R>>, tonic::Status>,
    output: OutputArgs,
    split: impl Fn(R) -> Part,
) -> Result<(), String> {
    let mut stream = call.map_err(|s| server_error(&s))?.into_inner();
    let progress = Progress::new();
    let mut printer = Printer::new(output.style());
    let mut summary = None;
    let outcome = loop {
        match stream.message().await {
            Ok(Some(message)) => match split(message) {
                Part::Progress(p) => progress.update(&p),
                Part::Rows(rows) => {
                    for row in rows {
                        printer.row(row).or_else(written)?;
                    }
                }
                Part::Summary(s) => summary = Some(s),
                Part::Skip => {}
            },
            Ok(None) => break Ok(()),
            Err(status) => break Err(server_error(&status)),
        }
    };
    progress.done();
    outcome?;
    printer.finish().or_else(written)?;
    if let Some(summary) = summary {
        eprintln!("{summary}");
    }
    Ok(())
}

/// The analyses, one subcommand each.
#[derive(Subcommand, Debug)]
pub enum AnalysisCommand {
    /// A centrality measure of every node, best first.
    Centrality(CentralityArgs),
    /// Communities (Louvain, Leiden, label propagation, components).
    Communities(CommunitiesArgs),
    /// The network between clusters or sites: its edges (or --nodes).
    InterCluster(InterClusterArgs),
    /// What pairs of clusters share (members, segments, industries, partners).
    Overlap(OverlapArgs),
    /// Ties crossing cluster borders, per pair (or --by-cluster: per cluster).
    Crossings(CrossingsArgs),
    /// Who could replace an actor, or a cluster.
    Substitutes(SubstitutesArgs),
    /// Single points of failure: actors without a substitute whose loss cuts supply.
    Gaps(GapsArgs),
    /// Cross-industry ties bridging communities (or --pairs: per cluster pair).
    Fusion(FusionArgs),
    /// The integration stage of each cluster, with its three scores.
    Stage(StageArgs),
    /// Places forming one virtual whole, like the Changning parks.
    Virtual(VirtualArgs),
    /// A cluster's core firms and their supporting systems.
    CoreFirms(CoreFirmsArgs),
    /// Functional, chain, product and process upgrading between two dates.
    Upgrading(UpgradingArgs),
    /// The cluster x industry matrix: RCA, density, COG, PCI, ECI, COI per
    /// pair (or --clusters, --industries, --space).
    Relatedness(RelatednessArgs),
    /// Where a cluster can go next: industries nearest first, and who holds them.
    UpgradePaths(UpgradePathsArgs),
}

/// What every analysis subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MeasureArg {
    Degree,
    Pagerank,
    Betweenness,
    Closeness,
    Harmonic,
    Eigenvector,
    KCore,
}

#[derive(Args, Debug)]
pub struct CentralityArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, value_enum)]
    measure: MeasureArg,
    #[arg(long, value_enum, default_value_t = LayerArg::Firm)]
    layer: LayerArg,
    /// Rows to print, best first (0: all).
    #[arg(long, default_value_t = 20)]
    top: i32,
    /// Use link weights.
    #[arg(long)]
    weighted: bool,
    /// Follow every link both ways.
    #[arg(long)]
    undirected: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AlgorithmArg {
    Louvain,
    Leiden,
    LabelPropagation,
    Connected,
    StronglyConnected,
}

#[derive(Args, Debug)]
pub struct CommunitiesArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Louvain)]
    algorithm: AlgorithmArg,
    #[arg(long, value_enum, default_value_t = LayerArg::Firm)]
    layer: LayerArg,
    /// γ: above 1 favours smaller communities (0: the default, 1).
    #[arg(long, default_value_t = 0.0)]
    resolution: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    weighted: bool,
}

#[derive(Args, Debug)]
pub struct InterClusterArgs {
    #[command(flatten)]
    common: Common,
    /// cluster or site.
    #[arg(long, value_enum, default_value_t = LayerArg::Cluster)]
    layer: LayerArg,
    /// Print the nodes (with coordinates) instead of the edges.
    #[arg(long)]
    nodes: bool,
}

#[derive(Args, Debug)]
pub struct OverlapArgs {
    #[command(flatten)]
    common: Common,
    /// One pair: the first cluster (with --b); all pairs when absent.
    #[arg(long, requires = "b")]
    a: Option<String>,
    #[arg(long, requires = "a")]
    b: Option<String>,
}

#[derive(Args, Debug)]
pub struct CrossingsArgs {
    #[command(flatten)]
    common: Common,
    /// Print each cluster's cross-investment index instead of the pairs.
    #[arg(long)]
    by_cluster: bool,
}

#[derive(Args, Debug)]
pub struct SubstitutesArgs {
    #[command(flatten)]
    common: Common,
    /// The actor to replace.
    #[arg(long, conflicts_with = "of_cluster", required_unless_present = "of_cluster")]
    actor: Option<String>,
    /// The cluster to replace (another cluster that could take its place).
    #[arg(long = "of-cluster")]
    of_cluster: Option<String>,
    #[arg(long, default_value_t = 10)]
    top: i32,
}

#[derive(Args, Debug)]
pub struct GapsArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
pub struct FusionArgs {
    #[command(flatten)]
    common: Common,
    /// Print the fusion index of each cluster pair instead of the links.
    #[arg(long)]
    pairs: bool,
    #[arg(long, default_value_t = 20)]
    top: i32,
}

#[derive(Args, Debug)]
pub struct StageArgs {
    #[command(flatten)]
    common: Common,
    /// Add the explanation of each verdict.
    #[arg(long)]
    explain: bool,
}

#[derive(Args, Debug)]
pub struct VirtualArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
pub struct CoreFirmsArgs {
    #[command(flatten)]
    common: Common,
    /// The cluster whose core firms to find.
    #[arg(long = "of")]
    cluster: String,
}

#[derive(Args, Debug)]
pub struct UpgradingArgs {
    #[command(flatten)]
    common: Common,
    /// The cluster.
    #[arg(long = "of")]
    cluster: String,
    /// YYYY-MM-DD.
    #[arg(long)]
    from: String,
    /// YYYY-MM-DD.
    #[arg(long)]
    to: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LevelArg {
    Section,
    Division,
    Group,
    Class,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ValueArg {
    Employees,
    Firms,
}

/// Which cluster x industry matrix.
#[derive(Args, Debug, Clone)]
pub struct MatrixArgs {
    /// The ISIC level industries are compared at.
    #[arg(long, value_enum, default_value_t = LevelArg::Class)]
    level: LevelArg,
    /// What a cell counts.
    #[arg(long, value_enum, default_value_t = ValueArg::Employees)]
    value: ValueArg,
    /// Count institutions (government, universities, ...) too.
    #[arg(long)]
    include_institutions: bool,
    /// Specialised when RCA is at least this.
    #[arg(long, default_value_t = 1.0)]
    rca_threshold: f64,
}

impl MatrixArgs {
    fn to_pb(&self, filter: pb::NetworkFilter) -> pb::RelatednessMatrix {
        pb::RelatednessMatrix {
            filter: Some(filter),
            industry_level: match self.level {
                LevelArg::Section => pb::IndustryLevel::Section,
                LevelArg::Division => pb::IndustryLevel::Division,
                LevelArg::Group => pb::IndustryLevel::Group,
                LevelArg::Class => pb::IndustryLevel::Class,
            } as i32,
            value: match self.value {
                ValueArg::Employees => pb::RelatednessValue::Employees,
                ValueArg::Firms => pb::RelatednessValue::Firms,
            } as i32,
            include_institutions: self.include_institutions,
            rca_threshold: self.rca_threshold,
        }
    }
}

#[derive(Args, Debug)]
pub struct RelatednessArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    matrix: MatrixArgs,
    /// One row per cluster: ECI, COI, diversity, specialisation indices.
    #[arg(long = "clusters", conflicts_with_all = ["per_industry", "space"])]
    per_cluster: bool,
    /// One row per industry: PCI, ubiquity, concentration indices.
    #[arg(long = "industries", conflicts_with = "space")]
    per_industry: bool,
    /// The industry space: the proximity of every pair of industries.
    #[arg(long)]
    space: bool,
    /// With --space, only pairs at least this near.
    #[arg(long, default_value_t = 0.0, requires = "space")]
    min_proximity: f64,
}

#[derive(Args, Debug)]
pub struct UpgradePathsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    matrix: MatrixArgs,
    /// The cluster that would move.
    #[arg(long)]
    cluster: String,
    /// The clusters of the matrix (all when absent); repeat or separate with commas.
    #[arg(long, value_delimiter = ',')]
    among: Vec<String>,
    /// Ties counted between partners: only links of these kinds.
    #[arg(long = "link-kind", value_delimiter = ',')]
    link_kinds: Vec<String>,
    /// Members and their industries on this date (YYYY-MM-DD).
    #[arg(long)]
    as_of: Option<String>,
    /// Paths listed, best first.
    #[arg(long, default_value_t = 10)]
    top: u32,
    /// Partners listed per path.
    #[arg(long, default_value_t = 5)]
    partners: u32,
    /// Rank by this weight of density ...
    #[arg(long)]
    density_weight: Option<f64>,
    /// ... plus this weight of COG ...
    #[arg(long)]
    cog_weight: Option<f64>,
    /// ... plus this weight of PCI (any given: the others default to 0).
    #[arg(long)]
    pci_weight: Option<f64>,
}

fn stage_name(value: i32) -> String {
    pb::Stage::try_from(value)
        .map_or("?", |s| s.as_str_name())
        .trim_start_matches("STAGE_")
        .to_string()
}

fn dimension_name(value: i32) -> &'static str {
    match pb::OverlapDimension::try_from(value) {
        Ok(pb::OverlapDimension::Members) => "members",
        Ok(pb::OverlapDimension::Segments) => "segments",
        Ok(pb::OverlapDimension::Industries) => "industries",
        Ok(pb::OverlapDimension::Partners) => "partners",
        _ => "other",
    }
}

impl AnalysisCommand {
    pub async fn run(self) -> Result<(), String> {
        match self {
            AnalysisCommand::Centrality(a) => centrality(a).await,
            AnalysisCommand::Communities(a) => communities(a).await,
            AnalysisCommand::InterCluster(a) => inter_cluster(a).await,
            AnalysisCommand::Overlap(a) => overlap(a).await,
            AnalysisCommand::Crossings(a) => crossings(a).await,
            AnalysisCommand::Substitutes(a) => substitutes(a).await,
            AnalysisCommand::Gaps(a) => gaps(a).await,
            AnalysisCommand::Fusion(a) => fusion(a).await,
            AnalysisCommand::Stage(a) => stage(a).await,
            AnalysisCommand::Virtual(a) => virtual_integration(a).await,
            AnalysisCommand::CoreFirms(a) => core_firms(a).await,
            AnalysisCommand::Upgrading(a) => upgrading(a).await,
            AnalysisCommand::Relatedness(a) => relatedness(a).await,
            AnalysisCommand::UpgradePaths(a) => upgrade_paths(a).await,
        }
    }
}

async fn centrality(a: CentralityArgs) -> Result<(), String> {
    let measure = match a.measure {
        MeasureArg::Degree => pb::CentralityMeasure::Degree,
        MeasureArg::Pagerank => pb::CentralityMeasure::Pagerank,
        MeasureArg::Betweenness => pb::CentralityMeasure::Betweenness,
        MeasureArg::Closeness => pb::CentralityMeasure::Closeness,
        MeasureArg::Harmonic => pb::CentralityMeasure::Harmonic,
        MeasureArg::Eigenvector => pb::CentralityMeasure::Eigenvector,
        MeasureArg::KCore => pb::CentralityMeasure::KCore,
    };
    let request = pb::CentralityRequest {
        layer: a.layer.to_pb() as i32,
        filter: Some(a.common.filter.to_pb()),
        measure: measure as i32,
        undirected: a.undirected,
        weighted: a.weighted,
        top_k: a.top,
        ..Default::default()
    };
    let stream = a.common.client.analysis().await?.centrality(request).await;
    use pb::centrality_response::Event;
    drive(stream, a.common.output, |m| {
        split!(Event, m, {
            Event::Rows(b) => rows(b.rows, |r| vec![
                ("rank", r.rank.into()),
                ("node_id", r.node_id.into()),
                ("name", r.name.into()),
                ("value", r.value.into()),
            ]),
        })
    })
    .await
}

async fn communities(a: CommunitiesArgs) -> Result<(), String> {
    let algorithm = match a.algorithm {
        AlgorithmArg::Louvain => pb::CommunityAlgorithm::Louvain,
        AlgorithmArg::Leiden => pb::CommunityAlgorithm::Leiden,
        AlgorithmArg::LabelPropagation => pb::CommunityAlgorithm::LabelPropagation,
        AlgorithmArg::Connected => pb::CommunityAlgorithm::ConnectedComponents,
        AlgorithmArg::StronglyConnected => pb::CommunityAlgorithm::StronglyConnectedComponents,
    };
    let request = pb::CommunitiesRequest {
        layer: a.layer.to_pb() as i32,
        filter: Some(a.common.filter.to_pb()),
        algorithm: algorithm as i32,
        weighted: a.weighted,
        resolution: a.resolution,
        seed: a.seed,
        ..Default::default()
    };
    let stream = a.common.client.analysis().await?.communities(request).await;
    use pb::communities_response::Event;
    drive(stream, a.common.output, |m| {
        split!(Event, m, {
            Event::Rows(b) => rows(b.rows, |r| vec![
                ("community", r.community.into()),
                ("node_id", r.node_id.into()),
                ("name", r.name.into()),
            ]),
        })
    })
    .await
}

fn cluster_link_kinds(links: &[pb::ExplicitClusterLink]) -> Cell {
    let kinds: Vec<&str> = links
        .iter()
        .map(|l| {
            pb::ClusterLinkKind::try_from(l.kind)
                .map_or("?", |k| k.as_str_name())
                .trim_start_matches("CLUSTER_LINK_KIND_")
        })
        .collect();
    Cell::list(&kinds)
}

async fn inter_cluster(a: InterClusterArgs) -> Result<(), String> {
    let request = pb::InterClusterNetworkRequest {
        layer: a.layer.to_pb() as i32,
        filter: Some(a.common.filter.to_pb()),
    };
    let stream = a.common.client.analysis().await?.inter_cluster_network(request).await;
    use pb::inter_cluster_network_response::Event;
    let nodes = a.nodes;
    drive(stream, a.common.output, move |m| {
        split!(Event, m, {
            Event::Nodes(b) if nodes => rows(b.nodes, |n| vec![
                ("id", n.id.into()),
                ("name", n.name.into()),
                ("cluster_id", n.cluster_id.into()),
                ("actors", n.actors.into()),
                ("lat", n.lat.into()),
                ("lon", n.lon.into()),
            ]),
            Event::Edges(b) if !nodes => rows(b.edges, |e| vec![
                ("source", e.source.into()),
                ("target", e.target.into()),
                ("firm_links", e.firm_link_count.into()),
                ("cluster_links", cluster_link_kinds(&e.cluster_links)),
                ("total_weight", e.total_weight.into()),
            ]),
        })
    })
    .await
}

async fn overlap(a: OverlapArgs) -> Result<(), String> {
    let request = pb::ClusterOverlapRequest {
        cluster_a: a.a.unwrap_or_default(),
        cluster_b: a.b.unwrap_or_default(),
        filter: Some(a.common.filter.to_pb()),
        ..Default::default()
    };
    let stream = a.common.client.analysis().await?.cluster_overlap(request).await;
    use pb::cluster_overlap_response::Event;
    drive(stream, a.common.output, |m| {
        split!(Event, m, {
            Event::Rows(b) => rows(b.rows, |r| {
                let mut row: Record = vec![("cluster_a", r.cluster_a.into()), ("cluster_b", r.cluster_b.into())];
                // The Jaccard similarity of each dimension.
                row.extend(r.dimensions.iter().map(|d| (dimension_name(d.dimension), d.jaccard.into())));
                row
            }),
        })
    })
    .await
}

async fn crossings(a: CrossingsArgs) -> Result<(), String> {
    let request = pb::CrossingsRequest {
        filter: Some(a.common.filter.to_pb()),
    };
    let stream = a.common.client.analysis().await?.crossings(request).await;
    use pb::crossings_response::Event;
    let by_cluster = a.by_cluster;
    drive(stream, a.common.output, move |m| {
        split!(Event, m, {
            Event::Rows(b) if !by_cluster => rows(b.rows, |r| vec![
                ("cluster_a", r.cluster_a.into()),
                ("cluster_b", r.cluster_b.into()),
                ("ties", r.by_kind.iter().map(|k| k.count).sum::<u64>().into()),
                ("capital_a_to_b", r.capital_a_to_b.map(|t| t.count).into()),
                ("capital_b_to_a", r.capital_b_to_a.map(|t| t.count).into()),
                ("mutual", r.mutual.into()),
                ("reciprocity", r.reciprocity.into()),
                ("capital_share", r.capital_share.into()),
            ]),
            Event::Clusters(b) if by_cluster => rows(b.clusters, |c| vec![
                ("cluster_id", c.cluster_id.into()),
                ("crossing_ties", c.crossing_ties.into()),
                ("capital_ties", c.capital_ties.into()),
                ("crossing_capital_ties", c.crossing_capital_ties.into()),
                ("cross_investment_index", c.cross_investment_index.into()),
            ]),
        })
    })
    .await
}

async fn substitutes(a: SubstitutesArgs) -> Result<(), String> {
    let request = pb::SubstitutesRequest {
        actor_id: a.actor.unwrap_or_default(),
        cluster_id: a.of_cluster.unwrap_or_default(),
        filter: Some(a.common.filter.to_pb()),
        top_k: a.top,
        ..Default::default()
    };
    let stream = a.common.client.analysis().await?.substitutes(request).await;
    use pb::substitutes_response::Event;
    drive(stream, a.common.output, |m| {
        split!(Event, m, {
            Event::Rows(b) => rows(b.rows, |r| vec![
                ("rank", r.rank.into()),
                ("id", if r.cluster_id.is_empty() { r.actor_id } else { r.cluster_id }.into()),
                ("name", r.name.into()),
                ("score", r.score.into()),
                ("structural", r.structural.into()),
                ("segments", r.segments.into()),
                ("industry", r.industry.into()),
                ("shared_neighbors", r.shared_neighbor_count.into()),
            ]),
        })
    })
    .await
}

async fn gaps(a: GapsArgs) -> Result<(), String> {
    let request = pb::SubstitutionGapsRequest {
        filter: Some(a.common.filter.to_pb()),
        ..Default::default()
    };
    let stream = a.common.client.analysis().await?.substitution_gaps(request).await;
    use pb::substitution_gaps_response::Event;
    drive(stream, a.common.output, |m| {
        split!(Event, m, {
            Event::Rows(b) => rows(b.rows, |r| vec![
                ("actor_id", r.actor_id.into()),
                ("name", r.name.into()),
                ("downstream_lost", r.downstream_lost.into()),
                ("articulation_point", r.articulation_point.into()),
                ("best_substitute", r.best_substitute_id.into()),
                ("best_score", r.best_substitute_score.into()),
            ]),
        })
    })
    .await
}

fn link_end(end: Option<pb::FusionLinkEnd>) -> Cell {
    end.map(|e| format!("{} ({})", e.actor_id, e.industry)).into()
}

fn link_kind(kind: i32) -> Cell {
    pb::LinkKind::try_from(kind)
        .map_or("?", |k| k.as_str_name())
        .trim_start_matches("LINK_KIND_")
        .into()
}

async fn fusion(a: FusionArgs) -> Result<(), String> {
    let request = pb::FusionLinksRequest {
        filter: Some(a.common.filter.to_pb()),
        top_k: a.top,
        ..Default::default()
    };
    let stream = a.common.client.analysis().await?.fusion_links(request).await;
    use pb::fusion_links_response::Event;
    let pairs = a.pairs;
    drive(stream, a.common.output, move |m| {
        split!(Event, m, {
            Event::Rows(b) if !pairs => rows(b.rows, |r| vec![
                ("rank", r.rank.into()),
                ("source", link_end(r.source)),
                ("target", link_end(r.target)),
                ("kind", link_kind(r.kind)),
                ("betweenness", r.betweenness.into()),
                ("new", r.new.into()),
            ]),
            Event::Pairs(b) if pairs => rows(b.pairs, |p| vec![
                ("cluster_a", p.cluster_a.into()),
                ("cluster_b", p.cluster_b.into()),
                ("ties", p.ties.into()),
                ("cross_industry_ties", p.cross_industry_ties.into()),
                ("fusion_index", p.fusion_index.into()),
                ("fusion_links", p.fusion_links.into()),
            ]),
        })
    })
    .await
}

async fn stage(a: StageArgs) -> Result<(), String> {
    let request = pb::AssessStageRequest {
        filter: Some(a.common.filter.to_pb()),
        ..Default::default()
    };
    let stream = a.common.client.analysis().await?.assess_stage(request).await;
    use pb::assess_stage_response::Event;
    let explain = a.explain;
    drive(stream, a.common.output, move |m| {
        split!(Event, m, {
            Event::Rows(b) => rows(b.rows, |r| {
                let score = |stage: pb::Stage| -> Cell {
                    r.scores.iter().find(|s| s.stage == stage as i32).map(|s| s.score).into()
                };
                let mut row: Record = vec![
                    ("cluster_id", r.cluster_id.clone().into()),
                    ("name", r.name.clone().into()),
                    ("stage", stage_name(r.stage).into()),
                    ("regional", score(pb::Stage::RegionalIntegration)),
                    ("global", score(pb::Stage::GlobalValueChain)),
                    ("virtual", score(pb::Stage::VirtualIntegration)),
                    // The whole it is virtual through, with the clusters of a whole across clusters.
                    ("whole_id", r.pattern.as_ref().map(|p| p.whole_id.clone()).into()),
                    ("whole_clusters", r.pattern.as_ref().map(|p| Cell::list(&p.cluster_ids)).unwrap_or(Cell::Empty)),
                ];
                if explain {
                    row.push(("explanation", r.explanation.clone().into()));
                }
                row
            }),
        })
    })
    .await
}

async fn virtual_integration(a: VirtualArgs) -> Result<(), String> {
    let request = pb::DetectVirtualIntegrationRequest {
        filter: Some(a.common.filter.to_pb()),
        ..Default::default()
    };
    let stream = a
        .common
        .client
        .analysis()
        .await?
        .detect_virtual_integration(request)
        .await;
    use pb::detect_virtual_integration_response::Event;
    drive(stream, a.common.output, |m| {
        split!(Event, m, {
            Event::Rows(b) => rows(b.rows, |p| {
                let places: Vec<&str> = p.parts.iter().map(|x| x.place_id.as_str()).collect();
                let platforms: Vec<&str> = p.platforms.iter().map(|x| x.actor_id.as_str()).collect();
                vec![
                    ("whole_id", p.whole_id.clone().into()),
                    ("cluster_ids", Cell::list(&p.cluster_ids)),
                    ("places", Cell::list(&places)),
                    ("platforms", Cell::list(&platforms)),
                    ("interaction_ratio", p.interaction_ratio.into()),
                    ("distinctness", p.distinctness.into()),
                    ("specialisation_p", p.specialisation_p.into()),
                    ("confidence", p.confidence.into()),
                ]
            }),
        })
    })
    .await
}

async fn core_firms(a: CoreFirmsArgs) -> Result<(), String> {
    let request = pb::CoreFirmsRequest {
        cluster_id: a.cluster,
        filter: Some(a.common.filter.to_pb()),
        ..Default::default()
    };
    let stream = a.common.client.analysis().await?.core_firms(request).await;
    use pb::core_firms_response::Event;
    drive(stream, a.common.output, |m| {
        split!(Event, m, {
            Event::Rows(b) => rows(b.rows, |c| vec![
                ("actor_id", c.actor_id.into()),
                ("name", c.name.into()),
                ("reach", c.reach.into()),
                ("upstream", c.upstream.into()),
                ("downstream", c.downstream.into()),
                ("systems", (c.systems.len() as u64).into()),
            ]),
        })
    })
    .await
}

async fn upgrading(a: UpgradingArgs) -> Result<(), String> {
    let request = pb::UpgradingRequest {
        cluster_id: a.cluster,
        from: a.from,
        to: a.to,
        filter: Some(a.common.filter.to_pb()),
        ..Default::default()
    };
    let stream = a.common.client.analysis().await?.upgrading(request).await;
    use pb::upgrading_response::Event;
    drive(stream, a.common.output, |m| {
        split!(Event, m, {
            Event::Rows(b) => rows(b.rows, |u| vec![
                ("cluster_id", u.cluster_id.into()),
                ("from", u.from.into()),
                ("to", u.to.into()),
                ("members_before", u.members_before.into()),
                ("members_after", u.members_after.into()),
                ("functional", u.functional.map(|x| x.detected).into()),
                ("chain", u.chain.map(|x| x.detected).into()),
                ("product", u.product.map(|x| x.detected).into()),
                ("process", u.process.map(|x| x.detected).into()),
            ]),
        })
    })
    .await
}

async fn relatedness(a: RelatednessArgs) -> Result<(), String> {
    let matrix = Some(a.matrix.to_pb(a.common.filter.to_pb()));
    let mut client = a.common.client.analysis().await?;
    if a.space {
        let request = pb::IndustrySpaceRequest {
            matrix,
            min_proximity: a.min_proximity,
        };
        use pb::industry_space_response::Event;
        return drive(client.industry_space(request).await, a.common.output, |m| {
            split!(Event, m, {
                Event::Rows(b) => rows(b.rows, |r| vec![
                    ("industry_a", r.industry_a.into()),
                    ("industry_b", r.industry_b.into()),
                    ("proximity", r.proximity.into()),
                ]),
            })
        })
        .await;
    }
    let view = if a.per_cluster {
        pb::RelatednessView::Clusters
    } else if a.per_industry {
        pb::RelatednessView::Industries
    } else {
        pb::RelatednessView::Pairs
    };
    let request = pb::RelatednessRequest {
        matrix,
        view: view as i32,
    };
    use pb::relatedness_response::Event;
    drive(client.relatedness(request).await, a.common.output, |m| {
        split!(Event, m, {
            Event::Pairs(b) => rows(b.rows, |r| vec![
                ("cluster_id", r.cluster_id.into()),
                ("industry", r.industry.into()),
                ("value", r.value.into()),
                ("rca", r.rca.into()),
                ("mcp", r.mcp.into()),
                ("density", r.density.into()),
                ("cog", r.cog.into()),
                ("pci", r.pci.into()),
                ("eci", r.eci.into()),
                ("coi", r.coi.into()),
            ]),
            Event::Clusters(b) => rows(b.rows, |r| vec![
                ("cluster_id", r.cluster_id.into()),
                ("total", r.total.into()),
                ("diversity", r.diversity.into()),
                ("eci", r.eci.into()),
                ("coi", r.coi.into()),
                ("krugman", r.krugman.into()),
                ("herfindahl", r.herfindahl.into()),
                ("entropy", r.entropy.into()),
            ]),
            Event::Industries(b) => rows(b.rows, |r| vec![
                ("industry", r.industry.into()),
                ("total", r.total.into()),
                ("ubiquity", r.ubiquity.into()),
                ("pci", r.pci.into()),
                ("hoover", r.hoover.into()),
                ("locational_gini", r.locational_gini.into()),
            ]),
        })
    })
    .await
}

async fn upgrade_paths(a: UpgradePathsArgs) -> Result<(), String> {
    let mut link_kinds = Vec::with_capacity(a.link_kinds.len());
    for kind in &a.link_kinds {
        let kind: crate::model::LinkKind = kind.parse().map_err(|e| format!("--link-kind: {e}"))?;
        link_kinds.push(super::wire(crate::model::LinkKind::ALL, kind));
    }
    let filter = pb::NetworkFilter {
        cluster_ids: a.among.clone(),
        link_kinds,
        as_of: a.as_of.clone().unwrap_or_default(),
        ..Default::default()
    };
    let ranking =
        (a.density_weight.is_some() || a.cog_weight.is_some() || a.pci_weight.is_some()).then(|| pb::UpgradeRanking {
            density_weight: a.density_weight.unwrap_or(0.0),
            cog_weight: a.cog_weight.unwrap_or(0.0),
            pci_weight: a.pci_weight.unwrap_or(0.0),
        });
    let request = pb::UpgradePathsRequest {
        cluster_id: a.cluster,
        matrix: Some(a.matrix.to_pb(filter)),
        top: a.top,
        partners: a.partners,
        ranking,
    };
    let stream = a.client.analysis().await?.upgrade_paths(request).await;
    use pb::upgrade_paths_response::Event;
    drive(stream, a.output, |m| {
        split!(Event, m, {
            Event::Rows(b) => rows(b.rows, |path| {
                let named = |partner: &pb::UpgradePartner| {
                    let mut name = partner.cluster_id.clone();
                    if partner.supplies_you > 0 {
                        name.push_str(&format!(" (supplies you: {})", partner.supplies_you));
                    } else if partner.firm_links + partner.cluster_links > 0 {
                        name.push_str(&format!(" (tied: {})", partner.firm_links + partner.cluster_links));
                    }
                    name
                };
                let partners: Vec<String> = path.partners.iter().map(named).collect();
                vec![
                    ("industry", path.industry.into()),
                    ("density", path.density.into()),
                    ("cog", path.cog.into()),
                    ("pci", path.pci.into()),
                    ("score", path.score.into()),
                    ("holders", path.holders.into()),
                    ("partners", Cell::list(&partners)),
                ]
            }),
        })
    })
    .await
}
