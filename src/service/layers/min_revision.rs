//! Reading one's own writes on any replica: a call may carry the metadata
//! `clusternet-min-revision: R` (the revision an ApplyChanges reply gave),
//! and it waits until this node has applied R, bounded by the call's
//! deadline (`grpc-timeout`) or [`MAX_WAIT`] without one. On a single
//! server every acknowledged revision is already applied, so it never
//! waits there.

use std::{sync::Arc, time::Duration};

use tonic::{body::Body, Status};

use super::gate::{Gate, Verdict};
use crate::store::Store;

pub const HEADER: &str = "clusternet-min-revision";

/// How long a call without a deadline waits for its revision.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Waits for the revision a call asks for: a [`Gate`] in front of the
/// routes.
#[derive(Clone)]
pub struct MinRevision {
    store: Arc<Store>,
}

impl MinRevision {
    pub fn new(store: Arc<Store>) -> Self {
        MinRevision { store }
    }
}

/// The revision a call asks for, if any. Health and reflection ignore it:
/// grpcurl sends `-H` headers with its reflection calls too.
fn wanted(request: &http::Request<Body>) -> Result<Option<u64>, Status> {
    let path = request.uri().path();
    if path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.") {
        return Ok(None);
    }
    let Some(value) = request.headers().get(HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            crate::Error::invalid(
                HEADER,
                "must be a revision: a whole number, as a write's reply gives it",
            )
            .into()
        })
}

/// The call's deadline from `grpc-timeout`, if it has one.
fn deadline(request: &http::Request<Body>) -> Option<Duration> {
    crate::service::runtime::streaming::grpc_timeout(request.headers().get("grpc-timeout")?.to_str().ok()?)
}

impl Gate for MinRevision {
    fn check(&self, request: &mut http::Request<Body>) -> Verdict {
        let wanted = match wanted(request) {
            Ok(Some(revision)) if self.store.snapshot().revision < revision => revision,
            Ok(_) => return Verdict::Pass,
            Err(status) => return Verdict::Refuse(status),
        };
        let store = self.store.clone();
        // Answer a little before the caller's deadline, so that it gets the
        // revision reached rather than its own bare timeout.
        let wait = match deadline(request) {
            Some(deadline) => deadline.saturating_sub((deadline / 10).min(Duration::from_millis(50))),
            None => MAX_WAIT,
        }
        .min(MAX_WAIT);
        Verdict::After(Box::pin(async move {
            if tokio::time::timeout(wait, store.reached(wanted)).await.is_err() {
                return Err(crate::Error::DeadlineExceeded {
                    message: format!(
                        "{HEADER}: this node has applied revision {}, not yet {wanted}, within the call's deadline",
                        store.snapshot().revision
                    ),
                }
                .into());
            }
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn health_and_reflection_ignore_the_header_as_grpcurl_sends_it_to_them_too() {
        let request = |path: &str, value: &str| {
            http::Request::builder()
                .uri(path)
                .header(super::HEADER, value)
                .body(tonic::body::Body::empty())
                .unwrap()
        };
        let reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
        assert_eq!(super::wanted(&request(reflection, "x")).ok(), Some(None));
        assert_eq!(
            super::wanted(&request("/grpc.health.v1.Health/Check", "7")).ok(),
            Some(None)
        );
        let read = "/clusternet.v1.NetworkService/ListClusters";
        assert_eq!(super::wanted(&request(read, " 7 ")).ok(), Some(Some(7)));
        assert!(super::wanted(&request(read, "-1")).is_err());
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        let with = |timeout: &str| {
            let request = http::Request::builder()
                .header("grpc-timeout", timeout)
                .body(tonic::body::Body::empty())
                .unwrap();
            super::deadline(&request)
        };
        assert_eq!(with("3S"), Some(std::time::Duration::from_secs(3)));
        assert_eq!(with("250m"), Some(std::time::Duration::from_millis(250)));
        assert_eq!(with("2M"), Some(std::time::Duration::from_secs(120)));
        assert_eq!(with("7x"), None);
        assert_eq!(with(""), None);
    }
}
