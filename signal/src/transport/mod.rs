//! Carrying signals from producers to the incident service.
//!
//! - [`pump`]: drains an [`Emitter`](crate::Emitter)'s queue into a [`Sink`] in batches, with
//!   bounded retries (a sink that stays down makes the queue fill, and the emitter drops-and-counts).
//! - [`redis_streams`]: `XADD` with a `MAXLEN` cap on the producer side; a consumer group on the
//!   incident side that acknowledges only after the handler stored the batch, and reclaims entries
//!   left pending by a crashed consumer.
//! - [`http`]: batches `POST`ed to the incident service's `/v1/signals`.
//! - The in-process transport is [`Sink::Local`]: the handler (the incident service) is called
//!   directly by the pump.

pub mod http;
pub mod pump;
pub mod redis_streams;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::Signal;

pub use pump::{PumpConfig, PumpMetrics, spawn_pump};
pub use redis_streams::{RedisConsumer, RedisConsumerConfig, RedisSink};

/// An error a [`SignalHandler`] returns when it could not store a batch (the batch will be
/// delivered again).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The receiving side of every transport: stores a batch and returns `Ok` only once it is
/// durable. Must be idempotent on [`Signal::id`]: at-least-once transports deliver again after a
/// crash.
pub trait SignalHandler: Send + Sync + 'static {
    fn handle<'a>(&'a self, batch: &'a [Signal]) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// Where a producer's pump sends batches.
#[derive(Clone)]
pub enum Sink {
    /// In-process: call the incident service directly (the all-in-one default).
    Local(Arc<dyn SignalHandler>),
    /// Redis Streams (`XADD`), for producers and the incident service in different processes.
    Redis(RedisSink),
    /// HTTP batches to the incident service.
    Http(http::HttpSink),
}

impl Sink {
    /// A label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Sink::Local(_) => "local",
            Sink::Redis(_) => "redis",
            Sink::Http(_) => "http",
        }
    }

    /// Send one batch.
    pub async fn send(&self, batch: &[Signal]) -> Result<(), TransportError> {
        match self {
            Sink::Local(handler) => handler.handle(batch).await.map_err(TransportError::Handler),
            Sink::Redis(sink) => sink.send(batch).await,
            Sink::Http(sink) => sink.send(batch).await,
        }
    }
}

/// Why a batch could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("incident service answered HTTP {status}: {body}")]
    HttpStatus { status: u16, body: String },
    #[error("handler: {0}")]
    Handler(#[source] HandlerError),
    #[error("invalid transport url `{url}`: {reason}")]
    Url { url: String, reason: &'static str },
}
