//! `IncidentConfig`: the `[incident]` section of vigil's TOML configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How long things are kept. Days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub signals_days: u32,
    pub resolved_incidents_days: u32,
    /// Minute query-stat buckets are rolled up to hourly ones after this age.
    pub query_stats_rollup_after_hours: u32,
    pub query_stats_days: u32,
    /// `pg_stat_statements` snapshots (class `pgss_snapshot`).
    pub pgss_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            signals_days: 14,
            resolved_incidents_days: 180,
            query_stats_rollup_after_hours: 48,
            query_stats_days: 90,
            pgss_days: 30,
        }
    }
}

/// Notification delivery settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifierConfig {
    /// How often the outbox is polled.
    pub poll_interval_ms: u64,
    /// How long a claimed notification is reserved for one replica.
    pub lease_secs: u64,
    /// Attempts before a notification is given up (marked failed).
    pub max_attempts: u32,
    pub backoff_initial_secs: u64,
    pub backoff_max_secs: u64,
    /// Per-request timeout towards a receiver.
    pub timeout_secs: u64,
    /// Name of this replica in leases; defaults to hostname-pid.
    pub replica_id: Option<String>,
    /// Base URL of the console, for links in notifications.
    pub console_url: Option<String>,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            poll_interval_ms: 1000,
            lease_secs: 60,
            max_attempts: 12,
            backoff_initial_secs: 5,
            backoff_max_secs: 600,
            timeout_secs: 10,
            replica_id: None,
            console_url: None,
        }
    }
}

/// The `[incident]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentConfig {
    /// Address of the API, console and signal intake.
    pub listen: String,
    /// Store URL: `sqlite://vigil.db`, `sqlite::memory:` or `postgres://...`.
    pub store: String,
    /// Directory of `*.yaml` rules.
    pub rules: PathBuf,
    /// Seconds between detector ticks of the background task.
    pub tick_secs: u64,
    /// Largest accepted `POST /v1/*` body.
    pub max_body_bytes: usize,
    pub retention: RetentionConfig,
    pub notifier: NotifierConfig,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            listen: "127.0.0.1:9400".into(),
            store: "sqlite://vigil.db".into(),
            rules: PathBuf::from("rules/incident"),
            tick_secs: 10,
            max_body_bytes: 8 * 1024 * 1024,
            retention: RetentionConfig::default(),
            notifier: NotifierConfig::default(),
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("[incident] {field}: {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: String,
}

impl IncidentConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, problem: &str| {
            Err(ConfigError {
                field,
                problem: problem.to_string(),
            })
        };
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return err("listen", "must be an address like 127.0.0.1:9400");
        }
        let scheme = self.store.split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return err("store", "must start with sqlite: or postgres:");
        }
        if self.tick_secs == 0 || self.tick_secs > 60 {
            return err("tick_secs", "must be 1 to 60");
        }
        if self.max_body_bytes < 1024 {
            return err("max_body_bytes", "must be at least 1024");
        }
        if self.retention.signals_days == 0 {
            return err("retention.signals_days", "must be at least 1");
        }
        if self.retention.pgss_days == 0 {
            return err("retention.pgss_days", "must be at least 1");
        }
        if self.retention.query_stats_days * 24 < self.retention.query_stats_rollup_after_hours {
            return err(
                "retention.query_stats_days",
                "must cover query_stats_rollup_after_hours",
            );
        }
        let n = &self.notifier;
        if n.poll_interval_ms == 0 || n.lease_secs == 0 || n.timeout_secs == 0 {
            return err(
                "notifier",
                "poll_interval_ms, lease_secs and timeout_secs must be positive",
            );
        }
        if n.timeout_secs >= n.lease_secs {
            return err("notifier.lease_secs", "must exceed timeout_secs");
        }
        if n.max_attempts == 0 {
            return err("notifier.max_attempts", "must be at least 1");
        }
        if n.backoff_initial_secs == 0 || n.backoff_max_secs < n.backoff_initial_secs {
            return err(
                "notifier.backoff_max_secs",
                "must be at least backoff_initial_secs (> 0)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_unknown_fields_are_refused() {
        IncidentConfig::default().validate().unwrap();
        let c: IncidentConfig =
            toml::from_str("store = \"postgres://x@y/z\"\n[retention]\nsignals_days = 3\n")
                .unwrap();
        assert_eq!(c.retention.signals_days, 3);
        assert_eq!(c.listen, "127.0.0.1:9400");
        c.validate().unwrap();
        assert!(toml::from_str::<IncidentConfig>("stroe = \"x\"").is_err());
        let bad = IncidentConfig {
            store: "mysql://x".into(),
            ..IncidentConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "store");
    }
}
