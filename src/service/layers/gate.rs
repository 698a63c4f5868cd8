//! One tower layer for every check made before a call reaches its handler:
//! a [`Gate`] looks at the request and lets it through (perhaps adding to
//! its extensions), refuses it with a status, or makes it wait for
//! something first. The token check and the min-revision wait are gates;
//! the layer around them is written once here.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{body::Body, Status};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a gate says of one call.
pub enum Verdict {
    /// On to the handler.
    Pass,
    /// Answered with this status; the handler never runs.
    Refuse(Status),
    /// On to the handler once this resolves to `Ok`, else answered with its
    /// status.
    After(BoxFuture<Result<(), Status>>),
}

/// A check made before a call reaches its handler.
pub trait Gate: Clone + Send + Sync + 'static {
    fn check(&self, request: &mut http::Request<Body>) -> Verdict;
}

/// The layer putting `G` in front of the routes.
#[derive(Clone)]
pub struct GateLayer<G>(pub G);

impl<S, G: Gate> tower::Layer<S> for GateLayer<G> {
    type Service = Gated<S, G>;

    fn layer(&self, inner: S) -> Gated<S, G> {
        Gated {
            inner,
            gate: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gated<S, G> {
    inner: S,
    gate: G,
}

impl<S, G> tower::Service<http::Request<Body>> for Gated<S, G>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    G: Gate,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match self.gate.check(&mut request) {
            Verdict::Pass => Box::pin(self.inner.call(request)),
            Verdict::Refuse(status) => {
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
            Verdict::After(wait) => {
                // The service that was made ready is the one to call (tower's rule).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move {
                    match wait.await {
                        Ok(()) => inner.call(request).await,
                        Err(status) => Ok(status.into_http()),
                    }
                })
            }
        }
    }
}
