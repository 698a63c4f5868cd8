//! The handlers of the three gRPC services: each request's fields checked
//! and turned into the core's calls, their results into replies.

mod alerts;
mod analysis;
mod analysis_params;
mod change_feed;
mod network;
mod paging;

pub use alerts::{encode_alert, AlertApi};
pub use analysis::AnalysisApi;
pub use network::NetworkApi;
