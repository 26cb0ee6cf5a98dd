//! The signal contract between Vigil's producers (proxies, webhook taps, the CRM) and the incident
//! service, and the transports that carry it.
//!
//! - [`schema`]: the versioned [`Signal`] record.
//! - [`emit`]: the producer handle [`Emitter`] (bounded, drop-and-count, never blocks).
//! - [`transport`]: the pump (queue to sink), Redis Streams producer and consumer group, HTTP
//!   batches, and the in-process sink; [`transport::SignalHandler`] is what the incident service
//!   implements.
pub mod emit;
pub mod schema;
pub mod transport;

pub use emit::{Emitter, EmitterStats};
pub use schema::{
    Channel, DecodeError, Latency, Outcome, PgssEntry, PgssSnapshot, QueryStats, SCHEMA_VERSION,
    Scope, Signal, Source,
};
