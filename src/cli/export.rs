//! `clusternet export`: one ExportNetwork call, written in a file format.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{check_parent, server_error, ClientArgs, FilterArgs, LayerArg};
use crate::{
    export::{
        formats::{write, Format},
        table::Table,
        ResultKind, Selection,
    },
    graph::Layer,
    import,
    service::{
        convert::export::{gather, result_kind_to_pb},
        pb,
    },
};

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The file format (csv writes a directory of the import format).
    #[arg(long, value_enum)]
    pub format: Format,
    /// The file to write (a directory for csv).
    #[arg(long)]
    pub out: PathBuf,
    /// The layer: actors and links, clusters, or sites.
    #[arg(long, value_enum, default_value_t = LayerArg::Firm)]
    pub layer: LayerArg,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Analysis results to add as node attributes.
    #[arg(long = "with", value_delimiter = ',', value_enum)]
    pub with: Vec<WithArg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WithArg {
    Pagerank,
    Community,
    Stage,
    /// ECI and COI of the node's cluster.
    Complexity,
}

impl WithArg {
    fn kind(self) -> ResultKind {
        match self {
            WithArg::Pagerank => ResultKind::PageRank,
            WithArg::Community => ResultKind::Community,
            WithArg::Stage => ResultKind::Stage,
            WithArg::Complexity => ResultKind::Complexity,
        }
    }
}

/// Checks where the output goes before asking the server for anything.
fn check_out(out: &Path, format: Format, layer: LayerArg) -> Result<(), String> {
    if format == Format::Csv {
        if layer != LayerArg::Firm {
            return Err("error: --format csv writes the whole firm network; use it with --layer firm".into());
        }
        return check_parent(out);
    }
    super::check_file_out(out)
}

pub async fn run(args: ExportArgs) -> Result<(), String> {
    check_out(&args.out, args.format, args.layer)?;
    let connection = args.client.connect().await?;
    let request = pb::ExportNetworkRequest {
        layer: args.layer.to_pb() as i32,
        filter: Some(args.filter.to_pb()),
        results: args.with.iter().map(|w| result_kind_to_pb(w.kind()) as i32).collect(),
    };
    let (selection, summary) = fetch(&connection, request).await?;
    let layer = match args.layer {
        LayerArg::Firm => Layer::Firm,
        LayerArg::Cluster => Layer::Cluster,
        LayerArg::Site => Layer::Site,
    };
    let cannot = |e: std::io::Error| format!("error: cannot write {}: {e}", args.out.display());
    if args.format == Format::Csv {
        import::write_dir(&args.out, &selection.changes()).map_err(cannot)?;
    } else {
        let mut out = BufWriter::new(File::create(&args.out).map_err(cannot)?);
        write(&Table::of(&selection, layer), args.format, &mut out).map_err(cannot)?;
        out.flush().map_err(cannot)?;
    }
    eprintln!(
        "wrote {} nodes and {} edges of revision {} to {}",
        summary.nodes,
        summary.edges,
        summary.revision,
        args.out.display()
    );
    Ok(())
}

/// Runs one ExportNetwork call and gathers its parts, with a spinner on
/// stderr (when it is a terminal) counting what has arrived.
pub async fn fetch(
    connection: &crate::cli::client::Connection,
    request: pb::ExportNetworkRequest,
) -> Result<(Selection, pb::AnalysisSummary), String> {
    let progress = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut stream = connection
        .analysis()
        .export_network(request)
        .await
        .map_err(|s| server_error(&s))?
        .into_inner();
    let mut selection = Selection::default();
    let mut summary = None;
    while let Some(message) = stream.message().await.map_err(|s| server_error(&s))? {
        let Some(event) = message.event else { continue };
        if let Some(last) = gather(&mut selection, event).map_err(|e| format!("error: the server sent {e}"))? {
            summary = Some(last);
        }
        progress.set_message(format!(
            "{} actors, {} links, {} clusters received",
            selection.actors.len(),
            selection.links.len(),
            selection.clusters.len()
        ));
    }
    progress.finish_and_clear();
    let summary = summary.ok_or("error: the export stream ended without its summary")?;
    Ok((selection, summary))
}
