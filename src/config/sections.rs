//! The sections the binary itself owns: `[admin]`, `[cache]`, `[signals]`, `[telemetry]`.
//! Component sections (`[pg]`, `[http]`, `[incident]`) are defined by their crates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// `[admin]`: the admin HTTP server every process runs (`/metrics`, `/healthz`, `/readyz`, `/api/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address; loopback by default.
    pub listen: SocketAddr,
    /// Bearer token; required when `listen` is not a loopback address.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9930)),
            token: None,
        }
    }
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let has_token = self.token.as_deref().is_some_and(|t| !t.is_empty());
        if !self.listen.ip().is_loopback() && !has_token {
            return Err(ConfigError::invalid(
                "admin.token",
                format!(
                    "a token is required when the admin server listens on {} (not loopback); set token = \"${{VIGIL_ADMIN_TOKEN}}\"",
                    self.listen
                ),
            ));
        }
        if has_token && self.token.as_deref().map(str::len).unwrap_or(0) < 16 {
            return Err(ConfigError::invalid(
                "admin.token",
                "must be at least 16 characters",
            ));
        }
        Ok(())
    }
}

/// Where cached results live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheBackend {
    /// In-process, for a single replica (the embedded default).
    #[default]
    Memory,
    /// Redis, shared by every replica.
    Redis,
}

/// `[cache]`: the hot-read cache in front of PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub backend: CacheBackend,
    /// Redis URL (required with `backend = "redis"`).
    pub url: Option<String>,
    /// The cache rules file (hot-reloaded).
    pub rules: PathBuf,
    /// Every Redis operation gives up after this many ms (the statement then bypasses the cache).
    pub redis_timeout_ms: u64,
    /// Key prefix in Redis (replicas sharing a cache must use the same).
    pub prefix: String,
    /// In-process (L1) budget in MiB.
    pub l1_mb: u64,
    /// Results larger than this many bytes are stored lz4-compressed.
    pub compress_above: usize,
    /// No result larger than this many bytes is cached, whatever a rule says.
    pub max_entry_bytes: usize,
    /// Follow writes made outside Vigil (LISTEN; needs `vigil cache install`).
    pub listen: bool,
    /// Backend `redis`: how long a miss waits for another replica already running the same
    /// statement (it holds the key's fill lock) before running it itself; 0 turns the lock off.
    pub fill_lock_wait_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackend::Memory,
            url: None,
            rules: PathBuf::from("rules/cache.yaml"),
            redis_timeout_ms: 5,
            prefix: "vigil:cache:".into(),
            l1_mb: 64,
            compress_above: 16 << 10,
            max_entry_bytes: 8 << 20,
            listen: true,
            fill_lock_wait_ms: 250,
        }
    }
}

/// The longest `fill_lock_wait_ms` (a miss never waits longer than the in-replica single
/// flight, 10 s).
pub const MAX_FILL_LOCK_WAIT_MS: u64 = 10_000;

impl CacheConfig {
    pub fn validate(&self, base: &Path) -> Result<(), ConfigError> {
        if self.fill_lock_wait_ms > MAX_FILL_LOCK_WAIT_MS {
            return Err(ConfigError::invalid(
                "cache.fill_lock_wait_ms",
                format!("must be at most {MAX_FILL_LOCK_WAIT_MS} (0 turns the fill lock off)"),
            ));
        }
        if self.backend == CacheBackend::Redis {
            check_url(
                self.url.as_deref(),
                "cache.url",
                &["redis://", "rediss://"],
                true,
            )?;
        }
        let path = super::resolve(base, &self.rules);
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Rules {
            file: path.clone(),
            message: format!("cannot read: {e}"),
        })?;
        vigil_proxy::cache::Rules::parse(&text, &path).map_err(|e| ConfigError::Rules {
            file: path.clone(),
            message: match e {
                vigil_proxy::cache::RulesError::Invalid { message, .. } => message,
                other => other.to_string(),
            },
        })?;
        Ok(())
    }
}

/// How signals travel from producers to the incident service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalTransport {
    /// In-process channel (the all-in-one default; needs `[incident]` in the same process).
    #[default]
    Local,
    /// Redis Streams (producers `XADD`; the incident service reads with a consumer group).
    Redis,
    /// HTTP batches to the incident service's `/v1/signals`.
    Http,
}

/// `[signals]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    pub transport: SignalTransport,
    /// `redis://...` for `redis`, the incident service's base URL for `http`.
    pub url: Option<String>,
    /// Bearer token sent with HTTP batches (the incident service's admin token).
    pub token: Option<String>,
    /// Redis stream key.
    pub stream: String,
    /// Approximate cap on the stream's length (`XADD MAXLEN ~`).
    pub max_len: usize,
    /// Consumer group of the incident service.
    pub group: String,
    /// This replica's consumer name (stable across restarts); defaults to the host name.
    pub consumer: Option<String>,
    /// Producer queue size; beyond it signals are dropped and counted.
    pub queue: usize,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        SignalsConfig {
            transport: SignalTransport::Local,
            url: None,
            token: None,
            stream: "vigil:signals".into(),
            max_len: 1_000_000,
            group: "vigil-incident".into(),
            consumer: None,
            queue: 10_000,
        }
    }
}

impl SignalsConfig {
    pub fn validate(&self, incident_here: bool) -> Result<(), ConfigError> {
        match self.transport {
            SignalTransport::Local => {
                if self.url.is_some() {
                    return Err(ConfigError::invalid(
                        "signals.url",
                        "not used with transport = \"local\"; remove it or choose \"redis\" or \"http\"",
                    ));
                }
            }
            SignalTransport::Redis => check_url(
                self.url.as_deref(),
                "signals.url",
                &["redis://", "rediss://"],
                true,
            )?,
            SignalTransport::Http => {
                check_url(
                    self.url.as_deref(),
                    "signals.url",
                    &["http://", "https://"],
                    true,
                )?;
                if incident_here {
                    return Err(ConfigError::invalid(
                        "signals.transport",
                        "\"http\" sends to a remote incident service, but [incident] runs in this process; use \"local\"",
                    ));
                }
            }
        }
        if self.queue == 0 {
            return Err(ConfigError::invalid("signals.queue", "must be at least 1"));
        }
        if self.stream.is_empty() || self.group.is_empty() {
            return Err(ConfigError::invalid(
                "signals.stream",
                "stream and group names must not be empty",
            ));
        }
        Ok(())
    }

    /// The consumer name: configured, else the host name, else `vigil`.
    pub fn consumer_name(&self) -> String {
        self.consumer.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "vigil".into())
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// A `tracing` filter (`info`, `vigil_proxy=debug,info`); `RUST_LOG` overrides it.
    pub log_level: String,
    /// OTLP/HTTP endpoint for traces (`http://collector:4318`); off when unset.
    pub otlp_endpoint: Option<String>,
    /// Sentry DSN for the sidecar's own errors and panics; off when unset.
    pub sentry_dsn: Option<String>,
    /// `service.name` on traces and the Sentry environment's server name.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            otlp_endpoint: None,
            sentry_dsn: None,
            service_name: "vigil".into(),
        }
    }
}

impl TelemetryConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.otlp_endpoint.is_some() {
            check_url(
                self.otlp_endpoint.as_deref(),
                "telemetry.otlp_endpoint",
                &["http://", "https://"],
                true,
            )?;
        }
        if let Some(dsn) = &self.sentry_dsn {
            dsn.parse::<sentry::types::Dsn>().map_err(|e| {
                ConfigError::invalid("telemetry.sentry_dsn", format!("not a valid DSN: {e}"))
            })?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level).map_err(|e| {
            ConfigError::invalid("telemetry.log_level", format!("not a valid filter: {e}"))
        })?;
        Ok(())
    }
}

fn check_url(
    url: Option<&str>,
    field: &str,
    schemes: &[&str],
    required: bool,
) -> Result<(), ConfigError> {
    match url {
        None if required => Err(ConfigError::invalid(field, "is required")),
        None => Ok(()),
        Some(u) if schemes.iter().any(|s| u.starts_with(s)) && u.len() > 8 => Ok(()),
        Some(_) => Err(ConfigError::invalid(
            field,
            format!("must be a URL starting with {}", schemes.join(" or ")),
        )),
    }
}
