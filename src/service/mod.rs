//! The gRPC layer: generated code, proto <-> model conversion, the mapping of
//! core errors to statuses, the service handlers and the server wiring.

pub mod admission;
mod alert_api;
mod analysis_api;
mod analysis_params;
pub mod auth_layer;
mod change_feed;
pub mod connections;
pub mod convert;
mod feed;
pub mod graphs;
pub mod metrics;
pub mod min_revision;
mod network_api;
mod paging;
pub mod server;
mod status;
mod streaming;
mod wire_status;

/// Code generated from `proto/clusternet/v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("clusternet.v1");

    /// The descriptor set served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("clusternet_descriptor");
}

pub use alert_api::{encode_alert, AlertApi};
pub use analysis_api::AnalysisApi;
pub use network_api::NetworkApi;
