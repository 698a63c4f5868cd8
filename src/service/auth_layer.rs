//! Bearer tokens on every call: a tower layer in front of the gRPC routes.
//! It reads `authorization: Bearer <token>`, asks [`Tokens`] for the
//! token's role, compares it with the role the method needs, and puts the
//! role in the request's extensions so a handler can ask more of a call
//! that does more (a cascade delete inside ApplyChanges needs admin).
//! Health checks stay open, so orchestrators need no token. Tokens are
//! never logged.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{body::Body, Status};

use crate::auth::{Role, Tokens};

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

/// Checks tokens when given some; lets every call through otherwise.
#[derive(Clone)]
pub struct AuthLayer {
    tokens: Option<Arc<Tokens>>,
}

impl AuthLayer {
    pub fn new(tokens: Option<Arc<Tokens>>) -> Self {
        AuthLayer { tokens }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    tokens: Option<Arc<Tokens>>,
}

impl<S> Auth<S> {
    fn check(&self, request: &http::Request<Body>) -> Result<Option<(Role, String)>, Status> {
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

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Auth<S>
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

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match self.check(&request) {
            Ok(role) => {
                if let Some((role, name)) = role {
                    request.extensions_mut().insert(role);
                    request.extensions_mut().insert(Client(name));
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                tracing::info!(path = request.uri().path(), code = ?status.code(), "refused: {}", status.message());
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
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
