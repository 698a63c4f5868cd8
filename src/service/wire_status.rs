//! Statuses that tonic makes before a handler runs, put right (see
//! [`super::status::from_decoder`]): an oversize request message is
//! RESOURCE_EXHAUSTED, not OUT_OF_RANGE; one that is not valid protobuf is
//! INVALID_ARGUMENT, not INTERNAL. Only replies that are a status alone (no
//! message sent yet) are rewritten; their status is in the headers.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{body::Body, Status};

#[derive(Clone, Default)]
pub struct WireStatusLayer;

impl<S> tower::Layer<S> for WireStatusLayer {
    type Service = WireStatus<S>;

    fn layer(&self, inner: S) -> WireStatus<S> {
        WireStatus { inner }
    }
}

#[derive(Clone)]
pub struct WireStatus<S> {
    inner: S,
}

/// The status a reply that is a status alone should carry, when tonic made
/// it; None for any other reply.
fn rewritten(response: &http::Response<Body>) -> Option<Status> {
    let status = Status::from_header_map(response.headers())?;
    super::status::from_decoder(&status)
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower::Service<http::Request<Body>> for WireStatus<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let reply = self.inner.call(request);
        Box::pin(async move {
            let response = reply.await?;
            Ok(match rewritten(&response) {
                Some(status) => status.into_http(),
                None => response,
            })
        })
    }
}
