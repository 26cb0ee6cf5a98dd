//! Detector settings: one set of defaults that works from 50 messages an hour to 10,000 a
//! minute; rules may override them per channel.

use serde::{Deserialize, Serialize};

/// Tunables of the detectors. All times in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Long window of the rate test.
    pub long_window_secs: u64,
    /// Short confirmation window (extended back until it holds `short_min_attempts`).
    pub short_window_secs: u64,
    pub short_min_attempts: u64,
    /// Significance of the long-window test.
    pub alpha: f64,
    /// Significance of the short-window confirmation (and of "still failing").
    pub short_alpha: f64,
    /// Floor on k for service-scoped classes; sender/provider-scoped classes need half.
    pub min_failures: u64,
    /// The observed rate must exceed `ratio` times the baseline ...
    pub min_ratio: f64,
    /// ... and the baseline plus this absolute excess (halved for sender/provider classes).
    pub min_excess: f64,
    /// Prior failure rate and its weight in pseudo-attempts.
    pub prior_rate: f64,
    pub prior_weight: f64,
    /// Prior event rate per minute for counts without a denominator, and its weight in minutes.
    pub prior_events_per_minute: f64,
    pub prior_minutes: f64,
    /// Half-life of the learned baseline.
    pub baseline_half_life_secs: u64,
    /// A firing detector clears after this long without a significant short window.
    pub recovery_secs: u64,
    /// A gateway send with no delivery webhook after this long counts as a missing outcome.
    pub missing_outcome_secs: u64,
    /// A webhook source silent this long is tested against its learned rate.
    pub silent_source_secs: u64,
    /// Latency: the short-window mean must exceed this multiple of the baseline mean ...
    pub latency_ratio: f64,
    /// ... and the baseline by this many seconds, over at least `latency_min_requests`.
    pub latency_min_excess_secs: f64,
    pub latency_min_requests: u64,
    /// An event finding (heavy query, alert) stays active this long after its last firing.
    pub event_ttl_secs: u64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            long_window_secs: 1800,
            short_window_secs: 300,
            short_min_attempts: 10,
            alpha: 1e-6,
            short_alpha: 1e-3,
            min_failures: 6,
            min_ratio: 3.0,
            min_excess: 0.04,
            prior_rate: 0.01,
            prior_weight: 200.0,
            prior_events_per_minute: 0.05,
            prior_minutes: 120.0,
            baseline_half_life_secs: 86_400,
            recovery_secs: 600,
            missing_outcome_secs: 900,
            silent_source_secs: 1800,
            latency_ratio: 3.0,
            latency_min_excess_secs: 0.25,
            latency_min_requests: 20,
            event_ttl_secs: 600,
        }
    }
}

/// Why a detector setting is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("detector setting `{field}` {problem}")]
pub struct DetectConfigError {
    pub field: &'static str,
    pub problem: &'static str,
}

impl DetectConfig {
    pub fn validate(&self) -> Result<(), DetectConfigError> {
        let err = |field, problem| Err(DetectConfigError { field, problem });
        if self.long_window_secs < 60 || !self.long_window_secs.is_multiple_of(60) {
            return err(
                "long_window_secs",
                "must be a whole number of minutes, at least 60",
            );
        }
        if self.short_window_secs < 60
            || !self.short_window_secs.is_multiple_of(60)
            || self.short_window_secs > self.long_window_secs
        {
            return err(
                "short_window_secs",
                "must be whole minutes, at least 60 and at most long_window_secs",
            );
        }
        for (field, v) in [("alpha", self.alpha), ("short_alpha", self.short_alpha)] {
            if !(v > 0.0 && v < 1.0) {
                return err(field, "must be between 0 and 1");
            }
        }
        if !(self.prior_rate > 0.0 && self.prior_rate < 1.0) {
            return err("prior_rate", "must be between 0 and 1");
        }
        if self.prior_weight <= 0.0
            || self.prior_minutes <= 0.0
            || self.prior_events_per_minute <= 0.0
        {
            return err("prior_weight", "priors must be positive");
        }
        if self.min_ratio < 1.0 {
            return err("min_ratio", "must be at least 1");
        }
        if self.min_failures == 0 {
            return err("min_failures", "must be at least 1");
        }
        Ok(())
    }
}
