//! Statuses that tonic makes before a handler runs, put right: a request
//! message over `max_message_bytes` is refused by tonic's decoder with
//! OUT_OF_RANGE, where the gRPC convention (and every other limit here) is
//! RESOURCE_EXHAUSTED. Only replies that are a status alone (no message
//! sent yet) are rewritten; their status is in the headers.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{body::Body, Code, Status};

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

/// The status tonic's decoder gives an oversize message, made
/// RESOURCE_EXHAUSTED; None for any other reply.
fn oversize(response: &http::Response<Body>) -> Option<Status> {
    let status = Status::from_header_map(response.headers())?;
    (status.code() == Code::OutOfRange && status.message().contains("message length too large")).then(|| {
        Status::resource_exhausted(format!(
            "the request message is too large ({}); send smaller batches",
            status
                .message()
                .trim_start_matches("Error, decoded message length too large: ")
        ))
    })
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
            Ok(match oversize(&response) {
                Some(status) => status.into_http(),
                None => response,
            })
        })
    }
}
