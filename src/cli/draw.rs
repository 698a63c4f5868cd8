//! `clusternet draw`: a picture of one cluster's firm network, of the
//! inter-cluster map, or of the industry space, as SVG.

use std::path::PathBuf;

use clap::Args;

use super::{client::Connection, export::fetch, ClientArgs};
use crate::{
    draw::{
        firm_svg, map_svg,
        space::{space_svg, Industry, SpaceDrawing},
        ColourBy, FirmDrawing, SizeBy,
    },
    service::pb,
};

#[derive(Args, Debug)]
pub struct DrawArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The SVG file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Draw this cluster's firm network (with --space: ring its industries).
    #[arg(long, conflicts_with = "map", required_unless_present_any = ["map", "space"])]
    pub cluster: Option<String>,
    /// Draw the inter-cluster map: sites by latitude and longitude, coloured
    /// by their cluster's stage.
    #[arg(long, conflicts_with = "space")]
    pub map: bool,
    /// Draw the industry space: industries sized by employees, coloured by
    /// PCI, joined by their proximity (docs/relatedness.md).
    #[arg(long)]
    pub space: bool,
    /// With --space, draw ties at least this near beside the spanning tree.
    #[arg(long, default_value_t = 0.5, requires = "space")]
    pub min_proximity: f64,
    /// Node size (firm network).
    #[arg(long, value_enum, default_value_t = SizeBy::Degree)]
    pub size_by: SizeBy,
    /// Node colour (firm network).
    #[arg(long, value_enum, default_value_t = ColourBy::Segment)]
    pub colour_by: ColourBy,
    /// Nodes drawn at most, the largest first (firm network).
    #[arg(long, default_value_t = 300)]
    pub max_nodes: usize,
    /// Nodes labelled, the largest first (firm network).
    #[arg(long, default_value_t = 15)]
    pub labels: usize,
}

pub async fn run(args: DrawArgs) -> Result<(), String> {
    super::check_file_out(&args.out)?;
    let connection = args.client.connect().await?;
    let svg = match &args.cluster {
        _ if args.space => space(&connection, &args).await?,
        Some(cluster) => {
            let request = pb::ExportNetworkRequest {
                layer: pb::Layer::Firm as i32,
                filter: Some(pb::NetworkFilter {
                    cluster_ids: vec![cluster.clone()],
                    ..Default::default()
                }),
                results: vec![pb::NodeResult::Pagerank as i32, pb::NodeResult::Community as i32],
            };
            let (selection, _) = fetch(&connection, request).await?;
            let name = selection
                .clusters
                .iter()
                .find(|c| &*c.id == cluster)
                .map(|c| c.name.clone())
                .ok_or_else(|| format!("error: there is no cluster '{cluster}'"))?;
            firm_svg(
                &selection,
                &FirmDrawing {
                    title: format!("{name}: firm network"),
                    size_by: args.size_by,
                    colour_by: args.colour_by,
                    max_nodes: args.max_nodes.max(1),
                    labels: args.labels,
                },
            )
        }
        None => {
            let request = pb::ExportNetworkRequest {
                layer: pb::Layer::Site as i32,
                filter: None,
                results: vec![pb::NodeResult::Stage as i32],
            };
            let (selection, _) = fetch(&connection, request).await?;
            map_svg(&selection, "Clusters and their sites, by integration stage")
        }
    };
    std::fs::write(&args.out, svg).map_err(|e| format!("error: cannot write {}: {e}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// The industry space: the industries with their totals and PCI, the
/// proximities, and (with --cluster) the industries the cluster is
/// specialised in.
async fn space(connection: &Connection, args: &DrawArgs) -> Result<String, String> {
    let mut client = connection.analysis();
    let rows = |view: pb::RelatednessView| pb::RelatednessRequest {
        view: view as i32,
        ..Default::default()
    };
    let mut industries = Vec::new();
    let mut held = std::collections::BTreeSet::new();
    let mut stream = client
        .relatedness(rows(pb::RelatednessView::Industries))
        .await
        .map_err(|s| super::server_error(&s))?
        .into_inner();
    while let Some(message) = stream.message().await.map_err(|s| super::server_error(&s))? {
        if let Some(pb::relatedness_response::Event::Industries(batch)) = message.event {
            industries.extend(batch.rows.into_iter().map(|r| Industry {
                code: r.industry,
                total: r.total,
                pci: r.pci,
            }));
        }
    }
    if let Some(cluster) = &args.cluster {
        let mut stream = client
            .relatedness(pb::RelatednessRequest {
                matrix: Some(pb::RelatednessMatrix {
                    filter: None,
                    ..Default::default()
                }),
                ..rows(pb::RelatednessView::Pairs)
            })
            .await
            .map_err(|s| super::server_error(&s))?
            .into_inner();
        let mut known = false;
        while let Some(message) = stream.message().await.map_err(|s| super::server_error(&s))? {
            if let Some(pb::relatedness_response::Event::Pairs(batch)) = message.event {
                for row in batch.rows.into_iter().filter(|r| &r.cluster_id == cluster) {
                    known = true;
                    if row.mcp {
                        held.insert(row.industry);
                    }
                }
            }
        }
        if !known {
            return Err(format!(
                "error: there is no cluster '{cluster}' with members in an industry"
            ));
        }
    }
    let index: std::collections::HashMap<&str, usize> = industries
        .iter()
        .enumerate()
        .map(|(i, r)| (r.code.as_str(), i))
        .collect();
    let mut ties = Vec::new();
    let mut stream = client
        .industry_space(pb::IndustrySpaceRequest::default())
        .await
        .map_err(|s| super::server_error(&s))?
        .into_inner();
    while let Some(message) = stream.message().await.map_err(|s| super::server_error(&s))? {
        if let Some(pb::industry_space_response::Event::Rows(batch)) = message.event {
            for row in batch.rows {
                if let (Some(&a), Some(&b)) = (index.get(row.industry_a.as_str()), index.get(row.industry_b.as_str())) {
                    ties.push((a, b, row.proximity));
                }
            }
        }
    }
    Ok(space_svg(
        &industries,
        &ties,
        &SpaceDrawing {
            title: "The industry space".into(),
            min_proximity: args.min_proximity,
            held: args.cluster.clone().map(|c| (c, held)),
            labels: args.labels,
        },
    ))
}
