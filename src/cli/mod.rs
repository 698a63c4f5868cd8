//! The command line's client subcommands: the arguments they share (where
//! the server is, which part of the network) and one module per command.
//! Each returns `Err(message)` for `main` to print; a message from a server
//! error carries the gRPC status.

pub mod analyses;
pub mod client;
pub mod draw;
pub mod export;
pub mod import_client;
pub mod output;
pub mod reads;

use std::path::PathBuf;

use clap::Args;

use crate::{
    cli::client::{Authorized, Connection},
    model::{Channel, LinkKind},
    service::{
        convert::wire,
        pb::{self, analysis_service_client::AnalysisServiceClient},
    },
};

/// Where the server is and how to reach it.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// The server's URL, with its scheme (http:// or https://).
    #[arg(long, env = "CLUSTERNET_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Bearer token for a server that checks them.
    #[arg(long, env = "CLUSTERNET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed an https server's certificate.
    #[arg(long, env = "CLUSTERNET_CA")]
    pub ca: Option<PathBuf>,
}

impl ClientArgs {
    /// A client of the AnalysisService on a new connection.
    pub async fn analysis(&self) -> Result<AnalysisServiceClient<Authorized>, String> {
        Ok(self.connect().await?.analysis())
    }

    pub async fn connect(&self) -> Result<Connection, String> {
        let ca = match &self.ca {
            Some(path) => Some(std::fs::read(path).map_err(|e| format!("error: cannot read {}: {e}", path.display()))?),
            None => None,
        };
        Connection::open(&self.server, self.token.as_deref(), ca)
            .await
            .map_err(|e| format!("error: {e}"))
    }
}

/// The network layer a command reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LayerArg {
    Firm,
    Cluster,
    Site,
}

impl LayerArg {
    pub fn to_pb(self) -> pb::Layer {
        match self {
            LayerArg::Firm => pb::Layer::Firm,
            LayerArg::Cluster => pb::Layer::Cluster,
            LayerArg::Site => pb::Layer::Site,
        }
    }
}

/// Which part of the network a command sees, as the analyses' filter.
#[derive(Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Only these clusters (FIRM: actors in them); repeat or separate with commas.
    #[arg(long = "cluster", value_delimiter = ',')]
    pub clusters: Vec<String>,
    /// Only links of these kinds (SUPPLY, INVESTMENT, ...).
    #[arg(long = "link-kind", value_delimiter = ',', value_parser = parse_link_kind)]
    pub link_kinds: Vec<LinkKind>,
    /// Only links over these channels (PHYSICAL, VIRTUAL).
    #[arg(long = "channel", value_delimiter = ',', value_parser = parse_channel)]
    pub channels: Vec<Channel>,
    /// Only actors and links valid on this date (YYYY-MM-DD).
    #[arg(long)]
    pub as_of: Option<String>,
}

fn parse_link_kind(text: &str) -> Result<LinkKind, String> {
    text.parse()
}

fn parse_channel(text: &str) -> Result<Channel, String> {
    text.parse()
}

impl FilterArgs {
    pub fn to_pb(&self) -> pb::NetworkFilter {
        pb::NetworkFilter {
            link_kinds: self.link_kinds.iter().map(|k| wire(LinkKind::ALL, *k)).collect(),
            channels: self.channels.iter().map(|c| wire(Channel::ALL, *c)).collect(),
            cluster_ids: self.clusters.clone(),
            as_of: self.as_of.clone().unwrap_or_default(),
        }
    }
}

/// Checks that a file can be written at `out`: its directory exists and it
/// is not itself a directory (so a slip is named before any call is made).
pub fn check_file_out(out: &std::path::Path) -> Result<(), String> {
    check_parent(out)?;
    if out.is_dir() {
        return Err(format!("error: {} is a directory; give a file name", out.display()));
    }
    Ok(())
}

/// Checks that the directory `out` goes into exists.
pub fn check_parent(out: &std::path::Path) -> Result<(), String> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!("error: the directory {} does not exist", parent.display()));
    }
    Ok(())
}

/// A failed call, as the command line reports it: the status code and the
/// server's message.
pub fn server_error(status: &tonic::Status) -> String {
    format!("error: the server answered {:?}: {}", status.code(), status.message())
}
