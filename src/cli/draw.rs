//! `clusternet draw`: a picture of one cluster's firm network, or of the
//! inter-cluster map, as SVG.

use std::path::PathBuf;

use clap::Args;

use super::{export::fetch, ClientArgs};
use crate::{
    draw::{firm_svg, map_svg, ColourBy, FirmDrawing, SizeBy},
    service::pb,
};

#[derive(Args, Debug)]
pub struct DrawArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The SVG file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Draw this cluster's firm network.
    #[arg(long, conflicts_with = "map", required_unless_present = "map")]
    pub cluster: Option<String>,
    /// Draw the inter-cluster map: sites by latitude and longitude, coloured
    /// by their cluster's stage.
    #[arg(long)]
    pub map: bool,
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
