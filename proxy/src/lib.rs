//! Vigil's data plane. Stateless: never fails or stalls client traffic because Redis, the incident
//! service or a store is down.
//!
//! - [`cache`]: the hot-read cache of the pg proxy (rules, eligibility, L1/Redis, invalidation).
//! - [`pg`]: the PostgreSQL wire-protocol proxy (pooling, prepared statements, statement hook).
//! - [`stats`]: per-fingerprint statement statistics, heavy-query signals, `/api/queries`.
//! - [`http`]: the HTTP proxy (reverse proxy, provider gateway, webhook taps).
pub mod cache;
pub mod http;
pub mod pg;
pub mod stats;
