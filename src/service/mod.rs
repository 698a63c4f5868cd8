//! The gRPC layer: generated code, proto <-> model conversion (`convert`),
//! the mapping of core errors to statuses (`status`), the handlers
//! (`api`), how calls run (`runtime`), what stands in front of the routes
//! (`layers`), and the server wiring (`server`).

pub mod api;
pub mod convert;
pub mod layers;
pub mod metrics;
pub mod runtime;
pub mod server;
mod status;

/// Code generated from `proto/clusternet/v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("clusternet.v1");

    /// The descriptor set served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("clusternet_descriptor");
}

pub use api::{encode_alert, AlertApi, AnalysisApi, NetworkApi};
