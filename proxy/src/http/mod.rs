//! The HTTP proxy: reverse proxy for the CRM, provider gateway for its outbound calls, and
//! verified webhook taps. Plain HTTP/1.1 requests for the CRM upstreams take an nginx-style fast
//! path (`server::fast`); everything else runs on hyper 1.x behind the smuggling gate.
//!
//! - [`config`]: the `[http]` section ([`HttpConfig`]) and its validation.
//! - [`server`]: [`HttpProxy`] (listener, fast path, smuggling gate, reverse proxy, taps and
//!   gateway on the data path, metrics, OTLP span export, access log, `/api/http`).
//! - [`webhook`]: signature verification and payload parsing per provider (pure, no I/O except the
//!   SNS certificate fetch behind a trait).
//! - [`gateway`]: outcome classification of provider responses.
//! - [`pii`]: keyed hashing of emails, phone numbers and cards.
//! - [`error`]: the [`HttpError`] type.
pub mod config;
pub mod error;
pub mod gateway;
pub mod pii;
pub mod server;
pub mod webhook;

pub use config::HttpConfig;
pub use error::HttpError;
pub use server::HttpProxy;
