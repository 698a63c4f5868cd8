//! Statuses that tonic makes before a handler runs, put right (see
//! [`crate::service::status::from_decoder`]): an oversize request message is
//! RESOURCE_EXHAUSTED, not OUT_OF_RANGE; one that is not valid protobuf is
//! INVALID_ARGUMENT, not INTERNAL. Only replies that are a status alone (no
//! message sent yet) are rewritten; their status is in the headers.

use tonic::{body::Body, Status};

pub type WireStatusLayer = tower::util::MapResponseLayer<fn(http::Response<Body>) -> http::Response<Body>>;

/// The layer that rewrites those replies.
pub fn layer() -> WireStatusLayer {
    tower::util::MapResponseLayer::new(rewritten)
}

fn rewritten(response: http::Response<Body>) -> http::Response<Body> {
    match Status::from_header_map(response.headers()).and_then(|status| crate::service::status::from_decoder(&status)) {
        Some(status) => status.into_http(),
        None => response,
    }
}
