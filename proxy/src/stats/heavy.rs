//! Heavy-query rules (`rules/heavy-queries.yaml`) and their evaluation per statistics window,
//! with hysteresis so a statement hovering at a threshold does not flap.
//!
//! A fingerprint turns heavy in a window (with at least `min_calls` calls) when any of:
//! p95 above `p95_ms`; its share of the window's database time above `share_of_total` (and at
//! least `min_total_ms` of time); rows per call above `rows_per_call`; p95 above
//! `p95_regression` times its own baseline (an average of earlier windows). It recovers after
//! `recover_windows` consecutive windows in which every measure is below `clear_ratio` times its
//! threshold (or it was not called).

use std::path::Path;

use serde::Deserialize;

/// The heavy-query thresholds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeavyRules {
    /// Calls a window needs before a fingerprint can be judged.
    pub min_calls: u64,
    /// p95 latency threshold, milliseconds.
    pub p95_ms: f64,
    /// Share of the window's total database time (0..1).
    pub share_of_total: f64,
    /// The share rule needs at least this much time in the window, milliseconds.
    pub min_total_ms: f64,
    /// Rows returned or affected per call.
    pub rows_per_call: f64,
    /// p95 as a multiple of the fingerprint's baseline p95 (0 turns the rule off).
    pub p95_regression: f64,
    /// Windows needed to establish a baseline before the regression rule applies.
    pub baseline_windows: u32,
    /// A heavy fingerprint clears only when every measure is below `clear_ratio` x threshold.
    pub clear_ratio: f64,
    /// Consecutive clear windows before a recovery is signalled.
    pub recover_windows: u32,
    /// Fingerprints (16 hex digits) never reported as heavy.
    pub ignore: Vec<String>,
}

impl Default for HeavyRules {
    fn default() -> Self {
        HeavyRules {
            min_calls: 5,
            p95_ms: 500.0,
            share_of_total: 0.5,
            min_total_ms: 5_000.0,
            rows_per_call: 50_000.0,
            p95_regression: 4.0,
            baseline_windows: 5,
            clear_ratio: 0.7,
            recover_windows: 3,
            ignore: Vec::new(),
        }
    }
}

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeavyRulesError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid {
        path: std::path::PathBuf,
        message: String,
    },
}

impl HeavyRules {
    /// Read and validate a rules file.
    pub fn load(path: &Path) -> Result<HeavyRules, HeavyRulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| HeavyRulesError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |message: String| HeavyRulesError::Invalid {
            path: path.to_owned(),
            message,
        };
        let rules: HeavyRules =
            serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        rules.validate().map_err(invalid)?;
        Ok(rules)
    }

    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("p95_ms", self.p95_ms),
            ("rows_per_call", self.rows_per_call),
            ("min_total_ms", self.min_total_ms),
        ];
        for (field, v) in positive {
            if v.is_nan() || v <= 0.0 {
                return Err(format!("field `{field}`: must be greater than 0"));
            }
        }
        if !(self.share_of_total > 0.0 && self.share_of_total <= 1.0) {
            return Err("field `share_of_total`: must be in (0, 1]".into());
        }
        if !(self.clear_ratio > 0.0 && self.clear_ratio <= 1.0) {
            return Err("field `clear_ratio`: must be in (0, 1]".into());
        }
        if self.p95_regression != 0.0 && self.p95_regression <= 1.0 {
            return Err("field `p95_regression`: must be 0 (off) or greater than 1".into());
        }
        if self.recover_windows == 0 {
            return Err("field `recover_windows`: must be at least 1".into());
        }
        if let Some(bad) = self
            .ignore
            .iter()
            .find(|f| vigil_analyzer::parse_id(f).is_none())
        {
            return Err(format!(
                "field `ignore`: `{bad}` is not a fingerprint (16 hex digits)"
            ));
        }
        Ok(())
    }
}

/// What one window measured for one fingerprint.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowMeasure {
    pub calls: u64,
    pub p95_ms: f64,
    pub total_ms: f64,
    pub rows: u64,
    /// Total database time of all fingerprints in the window, milliseconds.
    pub window_total_ms: f64,
}

/// Per-fingerprint detector state.
#[derive(Debug, Clone, Default)]
pub struct HeavyState {
    pub heavy: bool,
    clear_streak: u32,
    baseline_p95: f64,
    baseline_windows: u32,
    /// The reason of the last transition to heavy.
    pub reason: Option<&'static str>,
}

/// A change a window caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Heavy(&'static str),
    Recovered,
}

impl HeavyState {
    /// Judge one window; returns a transition when the state changed.
    pub fn observe(&mut self, rules: &HeavyRules, m: &WindowMeasure) -> Option<Transition> {
        let judged = m.calls >= rules.min_calls;
        let reason = if judged {
            self.breach(rules, m, 1.0)
        } else {
            None
        };
        let still = judged && self.breach(rules, m, rules.clear_ratio).is_some();
        let transition = if !self.heavy {
            reason.map(|r| {
                self.heavy = true;
                self.clear_streak = 0;
                self.reason = Some(r);
                Transition::Heavy(r)
            })
        } else if still {
            self.clear_streak = 0;
            None
        } else {
            self.clear_streak += 1;
            (self.clear_streak >= rules.recover_windows).then(|| {
                self.heavy = false;
                self.clear_streak = 0;
                Transition::Recovered
            })
        };
        // The baseline learns only from windows that were not heavy.
        if judged && !self.heavy {
            let n = self.baseline_windows.min(20) as f64;
            self.baseline_p95 = (self.baseline_p95 * n + m.p95_ms) / (n + 1.0);
            self.baseline_windows += 1;
        }
        transition
    }

    fn breach(&self, rules: &HeavyRules, m: &WindowMeasure, scale: f64) -> Option<&'static str> {
        if m.p95_ms > rules.p95_ms * scale {
            return Some("p95");
        }
        if m.window_total_ms > 0.0
            && m.total_ms >= rules.min_total_ms * scale
            && m.total_ms / m.window_total_ms > rules.share_of_total * scale
        {
            return Some("share_of_total");
        }
        if m.calls > 0 && m.rows as f64 / m.calls as f64 > rules.rows_per_call * scale {
            return Some("rows_per_call");
        }
        if rules.p95_regression > 0.0
            && self.baseline_windows >= rules.baseline_windows
            && self.baseline_p95 > 0.0
            && m.p95_ms
                > rules.p95_regression * scale.max(1.0 / rules.p95_regression) * self.baseline_p95
        {
            return Some("p95_regression");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(calls: u64, p95_ms: f64) -> WindowMeasure {
        WindowMeasure {
            calls,
            p95_ms,
            total_ms: calls as f64 * p95_ms / 2.0,
            rows: calls,
            window_total_ms: 1e9,
        }
    }

    #[test]
    fn turns_heavy_once_and_recovers_after_sustained_clear_windows() {
        let rules = HeavyRules::default();
        let mut s = HeavyState::default();
        assert_eq!(s.observe(&rules, &m(10, 100.0)), None);
        assert_eq!(
            s.observe(&rules, &m(10, 900.0)),
            Some(Transition::Heavy("p95"))
        );
        // Still heavy, and hovering just under the threshold does not clear it (hysteresis).
        assert_eq!(s.observe(&rules, &m(10, 900.0)), None);
        assert_eq!(s.observe(&rules, &m(10, 450.0)), None);
        assert_eq!(s.observe(&rules, &m(10, 450.0)), None);
        assert_eq!(s.observe(&rules, &m(10, 450.0)), None);
        assert!(s.heavy);
        // Clear windows: recovery after three.
        assert_eq!(s.observe(&rules, &m(10, 100.0)), None);
        assert_eq!(s.observe(&rules, &m(10, 100.0)), None);
        assert_eq!(
            s.observe(&rules, &m(10, 100.0)),
            Some(Transition::Recovered)
        );
        assert!(!s.heavy);
    }

    #[test]
    fn too_few_calls_are_not_judged() {
        let rules = HeavyRules::default();
        let mut s = HeavyState::default();
        assert_eq!(s.observe(&rules, &m(2, 5_000.0)), None);
    }

    #[test]
    fn share_of_database_time_and_rows_per_call() {
        let rules = HeavyRules::default();
        let mut s = HeavyState::default();
        let hog = WindowMeasure {
            calls: 100,
            p95_ms: 80.0,
            total_ms: 8_000.0,
            rows: 100,
            window_total_ms: 10_000.0,
        };
        assert_eq!(
            s.observe(&rules, &hog),
            Some(Transition::Heavy("share_of_total"))
        );
        let mut s = HeavyState::default();
        let wide = WindowMeasure {
            calls: 10,
            p95_ms: 10.0,
            total_ms: 100.0,
            rows: 1_000_000,
            window_total_ms: 10_000.0,
        };
        assert_eq!(
            s.observe(&rules, &wide),
            Some(Transition::Heavy("rows_per_call"))
        );
    }

    #[test]
    fn a_regression_against_the_own_baseline_is_heavy() {
        let rules = HeavyRules::default();
        let mut s = HeavyState::default();
        for _ in 0..6 {
            assert_eq!(s.observe(&rules, &m(50, 20.0)), None);
        }
        assert_eq!(
            s.observe(&rules, &m(50, 100.0)),
            Some(Transition::Heavy("p95_regression"))
        );
    }

    #[test]
    fn rules_files_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.yaml");
        std::fs::write(&p, "p95_ms: 250\nmin_calls: 3\n").unwrap();
        let r = HeavyRules::load(&p).unwrap();
        assert_eq!(r.p95_ms, 250.0);
        assert_eq!(r.min_calls, 3);
        std::fs::write(&p, "p95_ms: -1\n").unwrap();
        assert!(
            HeavyRules::load(&p)
                .unwrap_err()
                .to_string()
                .contains("p95_ms")
        );
        std::fs::write(&p, "p95: 3\n").unwrap();
        assert!(
            HeavyRules::load(&p)
                .unwrap_err()
                .to_string()
                .contains("p95")
        );
        std::fs::write(&p, "ignore: [nothex]\n").unwrap();
        assert!(
            HeavyRules::load(&p)
                .unwrap_err()
                .to_string()
                .contains("ignore")
        );
    }
}
