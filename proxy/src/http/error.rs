//! Errors of the HTTP proxy's construction and run loop.

use super::config::ConfigError;
use super::webhook::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("http.webhooks[{index}]: {source}")]
    Webhook {
        index: usize,
        #[source]
        source: VerifyError,
    },
    #[error("http certificate file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS client setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("http.{0} cannot change on reload; restart to apply it")]
    RestartRequired(&'static str),
    #[error("accepting connections: {0}")]
    Accept(#[source] std::io::Error),
    #[error("starting the http threads: {0}")]
    Threads(#[source] std::io::Error),
}
