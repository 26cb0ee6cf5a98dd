//! The `vigil` binary's library: everything between the command line and the component crates.
//!
//! - [`cache_cmd`]: `vigil cache flush|install` and the `[cache]` -> proxy settings.
//! - [`cli`]: the command-line interface (`run`, `check`, ...).
//! - [`config`]: the TOML configuration, `${ENV}` interpolation, validation.
//! - [`admin`]: the admin HTTP server (`/metrics`, `/healthz`, `/readyz`, `/api/`).
//! - [`telemetry`]: logs, OpenTelemetry traces, Sentry.
//! - [`demo`]: `vigil demo`, the whole story in one command.
//! - [`incident`]: the incident service inside `vigil run` (server, consumer, background work).
//! - [`signals`]: the signal transport chosen by `[signals]`, producer and consumer side.
//! - [`replay`]: `vigil incident replay`.
//! - [`report`]: `vigil report`, the heavy-query report from the incident store.
//! - [`run`]: `vigil run`: starts every component the config enables in one process.
pub mod admin;
pub mod cache_cmd;
pub mod cli;
pub mod config;
pub mod demo;
pub mod incident;
pub mod replay;
pub mod report;
pub mod run;
pub mod signals;
pub mod telemetry;
