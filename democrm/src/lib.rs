//! A sample CRM and provider simulators for `vigil demo` and Vigil's end-to-end tests.
//! Not part of the sidecar.
//!
//! - [`seed`]: deterministic CRM data (companies, contacts, deals, activities, campaigns,
//!   automations, messages, payments) loaded into PostgreSQL with COPY; indexes after loading.
//! - [`app`]: the CRM itself, an axum app over PostgreSQL whose SQL carries sqlcommenter route
//!   tags, calling SendGrid/Twilio/Stripe-compatible APIs and receiving their webhooks.
//! - [`providers`]: SendGrid-, Twilio- and Stripe-compatible simulators that answer like the
//!   real APIs and send signed webhooks back, with failure modes switched at runtime.
//! - [`traffic`]: a traffic generator driving the CRM's routes at a configurable rate.
//! - [`signing`]: the three providers' webhook signature schemes (sign and verify).
//! - [`sqlc`]: sqlcommenter tags.

pub mod app;
pub mod providers;
pub mod seed;
pub mod signing;
pub mod sqlc;
pub mod traffic;

pub use app::{App, AppConfig, AppError, WebhookVerification};
pub use providers::{Mode, ProviderKind, SimConfig, SimError, SimStats, Simulators};
pub use seed::{Scale, SeedError, SeedReport, seed};
pub use traffic::{
    KindReport, Mix, Traffic, TrafficConfig, TrafficCounters, TrafficError, TrafficReport,
};
