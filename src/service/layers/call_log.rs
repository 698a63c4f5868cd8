//! The access log and the per-call metrics: one line and one observation
//! per call, taken in front of the routes. It watches the reply's body to
//! its end (the code of a streaming call is in its trailers), so unlike the
//! gates ([`super::gate`]) it wraps what comes back rather than deciding
//! whether the call goes on.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http_body::Frame;
use tonic::{body::Body, transport::server::TcpConnectInfo, Code, Status};

use crate::service::metrics::Metrics;

/// One call under way: what its access-log line and metrics need.
struct Call {
    metrics: Arc<Metrics>,
    /// The path called, cut to 200 bytes for the log.
    method: String,
    /// The method's metric label (bounded: "unknown" for paths not served).
    label: String,
    peer: Option<SocketAddr>,
    started: Instant,
    request_bytes: Arc<std::sync::atomic::AtomicU64>,
    response_bytes: u64,
}

impl Call {
    fn end(&self, code: Code) {
        self.metrics.call_ended(
            &self.label,
            code,
            self.started.elapsed(),
            self.request_bytes.load(std::sync::atomic::Ordering::Relaxed),
            self.response_bytes,
        );
        tracing::info!(
            target: "clusternet::access",
            method = %self.method,
            peer = %self.peer.map_or_else(|| "-".to_string(), |p| p.to_string()),
            code = ?code,
            duration_us = self.started.elapsed().as_micros() as u64,
            request_bytes = self.request_bytes.load(std::sync::atomic::Ordering::Relaxed),
            response_bytes = self.response_bytes,
            "call"
        );
    }
}

#[derive(Clone)]
pub struct CallLogLayer {
    metrics: Arc<Metrics>,
}

impl CallLogLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        CallLogLayer { metrics }
    }
}

impl<S> tower::Layer<S> for CallLogLayer {
    type Service = CallLog<S>;

    fn layer(&self, inner: S) -> CallLog<S> {
        CallLog {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CallLog<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower::Service<http::Request<Body>> for CallLog<S>
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
        let request_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let call = Call {
            metrics: self.metrics.clone(),
            method: crate::service::status::capped_to(request.uri().path().trim_start_matches('/').to_string(), 200),
            label: self.metrics.method_label(request.uri().path()),
            peer: request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr),
            started: Instant::now(),
            request_bytes: request_bytes.clone(),
            response_bytes: 0,
        };
        let request = request.map(|body| {
            Body::new(Counting {
                inner: body,
                bytes: request_bytes,
            })
        });
        let reply = self.inner.call(request);
        Box::pin(async move {
            let response = reply.await?;
            // A reply that is a status alone carries it in its headers.
            let code = Status::from_header_map(response.headers()).map(|s| s.code());
            Ok(response.map(|body| {
                Body::new(Observed {
                    inner: body,
                    call: Some(call),
                    code,
                })
            }))
        })
    }
}

/// A request body that counts its bytes.
struct Counting {
    inner: Body,
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl http_body::Body for Counting {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes
                    .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that ends the call's record when its last frame (the
/// trailers with the status) is sent, or when it is dropped unfinished (the
/// client went away: CANCELLED).
struct Observed {
    inner: Body,
    call: Option<Call>,
    code: Option<Code>,
}

impl Observed {
    fn finish(&mut self, fallback: Code) {
        if let Some(call) = self.call.take() {
            call.end(self.code.unwrap_or(fallback));
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if let Some(call) = &mut self.call {
                        call.response_bytes += len;
                    }
                }
                if let Some(trailers) = frame.trailers_ref() {
                    self.code = Status::from_header_map(trailers).map(|s| s.code()).or(self.code);
                    self.finish(Code::Ok);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                self.code = Some(status.code());
                self.finish(Code::Unknown);
            }
            Poll::Ready(None) => self.finish(Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}
