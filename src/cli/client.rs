//! The client side shared by the command line's subcommands: one connection
//! to `--server` (plain or TLS), with the bearer token on every call and
//! message limits large enough for big replies.

use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::service::pb::{
    alert_service_client::AlertServiceClient, analysis_service_client::AnalysisServiceClient,
    network_service_client::NetworkServiceClient,
};

/// Largest message a client sends or accepts: a batch of 1,000 rows can be
/// several MiB, past tonic's 4 MiB default.
pub const MESSAGE_LIMIT: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0} is not a server URL: give the scheme, e.g. http://127.0.0.1:50051")]
    NoScheme(String),
    #[error("cannot reach the server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the token holds characters a header cannot carry")]
    Token,
}

/// Puts `authorization: Bearer <token>` on every call when there is a token.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Authorized = InterceptedService<Channel, Bearer>;

/// A connection to a server.
#[derive(Clone)]
pub struct Connection {
    channel: Channel,
    bearer: Bearer,
}

impl Connection {
    /// Connects to `server` (`http://` or `https://`); `ca_pem` is the
    /// certificate authority to trust for TLS.
    pub async fn open(server: &str, token: Option<&str>, ca_pem: Option<Vec<u8>>) -> Result<Connection, ConnectError> {
        if !server.contains("://") {
            return Err(ConnectError::NoScheme(server.to_string()));
        }
        let mut endpoint = Endpoint::from_shared(server.to_string())?;
        if let Some(pem) = ca_pem {
            endpoint = endpoint.tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
        }
        let bearer = match token {
            None => Bearer(None),
            Some(token) => Bearer(Some(
                format!("Bearer {}", token.trim())
                    .parse()
                    .map_err(|_| ConnectError::Token)?,
            )),
        };
        Ok(Connection {
            channel: endpoint.connect().await?,
            bearer,
        })
    }

    pub fn network(&self) -> NetworkServiceClient<Authorized> {
        NetworkServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
            .max_encoding_message_size(MESSAGE_LIMIT)
            .max_decoding_message_size(MESSAGE_LIMIT)
    }

    pub fn analysis(&self) -> AnalysisServiceClient<Authorized> {
        AnalysisServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
            .max_encoding_message_size(MESSAGE_LIMIT)
            .max_decoding_message_size(MESSAGE_LIMIT)
    }

    pub fn alerts(&self) -> AlertServiceClient<Authorized> {
        AlertServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
            .max_encoding_message_size(MESSAGE_LIMIT)
            .max_decoding_message_size(MESSAGE_LIMIT)
    }
}
