//! Error types.

use super::protocol::ProtocolError;
use super::protocol::status::ErrorFields;

/// Errors of the pg proxy.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid configuration: {0}")]
    Config(#[from] super::config::PgConfigError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("tls: {0}")]
    Tls(String),
}

/// Why an upstream server connection could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out connecting upstream")]
    Timeout,
    #[error("upstream i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("upstream closed the connection")]
    Closed,
    #[error("upstream error {}: {}", .0.code(), .0.message())]
    Server(ErrorFields),
    #[error("upstream authentication: {0}")]
    Auth(String),
    #[error("upstream recently unreachable, retrying shortly")]
    Backoff,
}

impl UpstreamError {
    /// The SQLSTATE a client should see for this failure.
    pub fn sqlstate(&self) -> String {
        match self {
            UpstreamError::Server(e) => e.code().to_owned(),
            UpstreamError::Auth(_) => "08004".into(),
            _ => "08006".into(),
        }
    }
}
