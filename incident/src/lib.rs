//! Vigil's control plane: the incident service.
//!
//! Signals flow in through [`service::IncidentService::ingest`] (the lead's transports and the
//! HTTP intake in [`api`]), are stored first ([`store`]), then feed the detectors ([`detect`]);
//! each clock tick correlates active findings into incidents ([`correlate`]) and the [`engine`]
//! turns incident changes into notifications, which the persistent outbox delivers ([`notify`]).
//!
//! - [`model`]: incidents, findings, evidence, timeline, notes, silences.
//! - [`store`]: SQLite/PostgreSQL persistence (signals, incidents, outbox, query statistics).
//! - [`detect`]: binomial/Poisson rate tests with learned baselines, latency, missing outcomes,
//!   silent sources, events (heavy queries, alerts).
//! - [`correlate`]: incidents, likely layer, lifecycle (open, acknowledged, resolved, reopened).
//! - [`engine`]: detector + correlator + rules -> changes and notifications (pure).
//! - [`replay`]: `vigil incident replay` as a library function.
//! - [`rules`]: `rules/incident/*.yaml`, [`rules::check_rules`] for `vigil check`.
//! - [`config`]: [`IncidentConfig`], the `[incident]` TOML section.
//! - [`service`]: [`IncidentService`] (ingest, tick, manual actions, hot reload, retention).
//! - [`api`] and [`console`]: the HTTP API and the server-rendered console.
//! - [`reports`]: heavy-query reports from the stored buckets, `GET /reports/latest`.
//! - [`notify`]: outbox delivery to Slack, PagerDuty Events v2 and signed webhooks.
//! - [`metrics`]: `vigil_incident_*` metrics.

pub mod api;
pub mod config;
pub mod console;
pub mod correlate;
pub mod detect;
pub mod engine;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod replay;
pub mod reports;
pub mod rules;
pub mod service;
pub mod store;

pub use config::IncidentConfig;
pub use replay::{ReplayReport, replay};
pub use rules::{Rules, RulesError, check_rules};
pub use service::{IncidentError, IncidentService, IngestReport};
pub use store::{InsertReport, Store, StoreError};
