//! Bearer tokens on every call: a [`Gate`] in front of the gRPC routes.
//! It reads `authorization: Bearer <token>`, asks [`Tokens`] for the
//! token's role, compares it with the role the method needs, and puts the
//! role in the request's extensions so a handler can ask more of a call
//! that does more (a cascade delete inside ApplyChanges needs admin).
//! Health checks stay open, so orchestrators need no token. Tokens are
//! never logged.
//!
//! Failed authentications are counted per peer address: past
//! [`MAX_FAILURES`] within [`FAILURE_WINDOW`], the address's calls that
//! need a token are refused with RESOURCE_EXHAUSTED until the window ends,
//! so tokens cannot be guessed at line rate. Each failure is logged with
//! its peer and counted in the metrics.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::{
    body::Body,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
    Status,
};

use super::gate::{Gate, Verdict};
use crate::{
    auth::{Role, Tokens},
    service::metrics::Metrics,
};

/// Failed authentications one address may make within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 20;
/// The window failures are counted in, and the time an address that made
/// too many waits.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);
/// Addresses remembered at most; past it, those whose window ended go.
const ADDRESSES_KEPT: usize = 10_000;

/// Failed authentications by peer address: when the address's window
/// began, and how many failed in it.
#[derive(Default)]
struct Failures(Mutex<HashMap<IpAddr, (Instant, u32)>>);

impl Failures {
    /// Whether `peer` made too many failures in its current window.
    fn throttled(&self, peer: IpAddr) -> bool {
        let failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(&peer)
            .is_some_and(|(began, count)| *count >= MAX_FAILURES && began.elapsed() < FAILURE_WINDOW)
    }

    fn failed(&self, peer: IpAddr) {
        let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= ADDRESSES_KEPT && !failures.contains_key(&peer) {
            failures.retain(|_, (began, _)| began.elapsed() < FAILURE_WINDOW);
            // Still full of live windows (failures from very many
            // addresses at once): this one is not tracked, so the map
            // stays bounded.
            if failures.len() >= ADDRESSES_KEPT {
                return;
            }
        }
        let entry = failures.entry(peer).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// The peer address of a call, from what the listener recorded.
fn peer_of(request: &http::Request<Body>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

/// The role a method needs, by its path; None for what is open to all:
/// health checks (orchestrators carry no token) and reflection (the schema,
/// which the proto files publish anyway; grpcurl needs it to call anything).
pub fn required_role(path: &str) -> Option<Role> {
    match path {
        p if p.starts_with("/grpc.health.v1.Health/") || p.starts_with("/grpc.reflection.") => None,
        "/clusternet.v1.NetworkService/ApplyChanges" | "/clusternet.v1.NetworkService/ImportChanges" => {
            Some(Role::Writer)
        }
        "/clusternet.v1.AlertService/SetAlertRules" => Some(Role::Admin),
        _ => Some(Role::Reader),
    }
}

/// The caller's role when the server checks tokens; a handler that finds
/// none runs without them (every call allowed).
pub fn caller_role<T>(request: &tonic::Request<T>) -> Option<Role> {
    request.extensions().get::<Role>().copied()
}

/// Checks tokens when given some; lets every call through otherwise. A
/// [`Gate`] in front of the routes.
#[derive(Clone)]
pub struct Auth {
    tokens: Option<Arc<Tokens>>,
    failures: Arc<Failures>,
    metrics: Arc<Metrics>,
}

impl Auth {
    pub fn new(tokens: Option<Arc<Tokens>>, metrics: Arc<Metrics>) -> Self {
        Auth {
            tokens,
            failures: Arc::default(),
            metrics,
        }
    }
}

impl Auth {
    /// The caller's role and token name (None without tokens, or for a
    /// method open to all).
    fn caller(&self, request: &http::Request<Body>) -> Result<Option<(Role, String)>, Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let path = request.uri().path();
        let Some(needed) = required_role(path) else {
            return Ok(None);
        };
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| unauthenticated("missing token: send the header 'authorization: Bearer <token>'"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("the authorization header is not 'Bearer <token>'"))?;
        let (role, name) = tokens
            .who(token.trim())
            .ok_or_else(|| unauthenticated("unknown token"))?;
        if role < needed {
            let method = path.rsplit('/').next().unwrap_or(path);
            return Err(crate::Error::PermissionDenied {
                field: "authorization".into(),
                message: format!("a {role} token may not call {method}: it needs {needed}"),
            }
            .into());
        }
        Ok(Some((role, name)))
    }
}

/// Who a call comes from, for the fair shares of analyses and watches: the
/// name of its token, put in the request by the auth layer.
#[derive(Clone, Debug)]
pub struct Client(pub String);

/// The client of a call: its token's name, or without tokens its peer
/// address (every connection from one address is one client).
pub fn client_of<T>(request: &tonic::Request<T>) -> String {
    if let Some(Client(name)) = request.extensions().get::<Client>() {
        return format!("token {name}");
    }
    match request.remote_addr() {
        Some(address) => format!("address {}", address.ip()),
        None => "unknown".into(),
    }
}

fn unauthenticated(message: &str) -> Status {
    crate::Error::Unauthenticated {
        message: message.into(),
    }
    .into()
}

impl Gate for Auth {
    fn check(&self, request: &mut http::Request<Body>) -> Verdict {
        let peer = peer_of(request);
        let needs_token = self.tokens.is_some() && required_role(request.uri().path()).is_some();
        if needs_token && peer.is_some_and(|p| self.failures.throttled(p.ip())) {
            self.metrics.auth_failure("throttled");
            return Verdict::Refuse(crate::service::status::busy(format!(
                "more than {MAX_FAILURES} failed authentications from this address within {} s; wait and retry \
                 with a valid token",
                FAILURE_WINDOW.as_secs()
            )));
        }
        match self.caller(request) {
            Ok(role) => {
                if let Some((role, name)) = role {
                    request.extensions_mut().insert(role);
                    request.extensions_mut().insert(Client(name));
                }
                Verdict::Pass
            }
            Err(status) => {
                if status.code() == tonic::Code::Unauthenticated {
                    self.metrics.auth_failure("unauthenticated");
                    if let Some(peer) = peer {
                        self.failures.failed(peer.ip());
                    }
                }
                tracing::info!(path = request.uri().path(), ?peer, code = ?status.code(), "refused: {}", status.message());
                Verdict::Refuse(status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_needs_the_role_the_issue_gives_it() {
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            required_role("/clusternet.v1.NetworkService/ListActors"),
            Some(Role::Reader)
        );
        assert_eq!(
            required_role("/clusternet.v1.AnalysisService/Centrality"),
            Some(Role::Reader)
        );
        assert_eq!(
            required_role("/clusternet.v1.NetworkService/ImportChanges"),
            Some(Role::Writer)
        );
        assert_eq!(
            required_role("/clusternet.v1.AlertService/SetAlertRules"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            None
        );
    }
}
