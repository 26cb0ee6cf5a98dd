//! Detection: pure and deterministic, driven by a virtual clock passed in.
//!
//! - [`stats`]: exact binomial and Poisson upper tails in log space.
//! - [`config`]: [`DetectConfig`], the tunables (defaults need no per-channel thresholds).
//! - [`series`]: per-group minute buckets and the per-class rate test with a learned baseline.
//! - this file: [`Detector`], which routes signals to series, runs the rate, latency,
//!   missing-outcome, silent-source and event detectors on each tick and reports active findings.

pub mod config;
pub mod series;
pub mod stats;

use std::collections::BTreeMap;

use vigil_signal::{Channel, Outcome, Scope, Signal, Source};

pub use config::{DetectConfig, DetectConfigError};
use series::{ClassSeries, Group, Pending};

use crate::model::{Finding, Severity};

pub(crate) const MINUTE_MS: i64 = 60_000;
/// Bound on tracked `channel/target` groups.
const MAX_GROUPS: usize = 5_000;
/// Bound on gateway sends awaiting an outcome, per group.
const MAX_PENDING_IDS: usize = 500_000;

/// An active finding with the severity the detector gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveFinding {
    pub finding: Finding,
    pub severity: Severity,
    /// Scope of the failures (recipient-scoped findings never open an incident alone).
    pub scope: Scope,
    /// Whether the condition holds at this tick, as opposed to the detector waiting out its
    /// recovery period (used to re-evaluate held pages when a silence ends).
    pub failing_now: bool,
}

/// A condition reported by an event (Alertmanager alert, heavy query, application event).
#[derive(Debug, Clone)]
struct EventState {
    finding: Finding,
    severity: Severity,
    scope: Scope,
    last_ms: i64,
    resolved: bool,
}

/// The detector set. Feed it signals with [`Detector::observe`] and advance the clock with
/// [`Detector::tick`].
#[derive(Debug)]
pub struct Detector {
    cfg: DetectConfig,
    overrides: BTreeMap<String, DetectConfig>,
    groups: BTreeMap<String, Group>,
    events: BTreeMap<String, EventState>,
    /// Gateway sends awaiting a delivery outcome, by group, message id -> send time.
    pending: BTreeMap<String, Pending>,
}

/// Group key (`channel/target`) and target of a signal.
fn group_of(s: &Signal) -> (String, String) {
    let channel = crate::store::enum_str(&s.channel);
    let target = s
        .provider
        .clone()
        .or_else(|| s.attrs.get("route").cloned())
        .or_else(|| s.attrs.get("database").cloned())
        .or_else(|| match s.channel {
            Channel::Http => s.subject.clone(),
            _ => None,
        })
        .unwrap_or_else(|| "-".to_string());
    (format!("{channel}/{target}"), target)
}

impl Detector {
    pub fn new(cfg: DetectConfig) -> Detector {
        Detector {
            cfg,
            overrides: BTreeMap::new(),
            groups: BTreeMap::new(),
            events: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// Replace the settings (rules reload); learned state is kept.
    pub fn set_config(&mut self, cfg: DetectConfig) {
        self.cfg = cfg;
    }

    /// Per-channel settings (rules `overrides`).
    pub fn set_overrides(&mut self, overrides: BTreeMap<String, DetectConfig>) {
        self.overrides = overrides;
    }

    /// Number of tracked groups (bounded by channels x providers/routes).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Gateway sends still without a delivery outcome past `missing_outcome_secs`, per group:
    /// `(channel, target, count)`. Read for the `vigil_incident_missing_outcomes` gauge.
    pub fn overdue_outcomes(&self, now_ms: i64) -> Vec<(String, String, u64)> {
        self.pending
            .iter()
            .map(|(key, p)| {
                let (channel, target) = key.split_once('/').unwrap_or((key.as_str(), "-"));
                let cfg = self.overrides.get(channel).unwrap_or(&self.cfg);
                let grace = i64::try_from(cfg.missing_outcome_secs).unwrap_or(i64::MAX / 1000);
                let hi = now_ms - grace * 1000;
                let n = p.ids.values().filter(|t| **t < hi).count() as u64;
                (channel.to_string(), target.to_string(), n)
            })
            .collect()
    }

    /// Account one signal.
    pub fn observe(&mut self, s: &Signal) {
        // pg_stat_statements snapshots are report input, not events or attempts.
        if s.pgss.is_some() {
            return;
        }
        let t = s.time.timestamp_millis();
        match s.outcome {
            Outcome::Firing | Outcome::Resolved => {
                self.observe_event(s, t);
                return;
            }
            _ => {}
        }
        let (mut key, mut target) = group_of(s);
        let channel = crate::store::enum_str(&s.channel);
        if self.groups.len() >= MAX_GROUPS && !self.groups.contains_key(&key) {
            // Unbounded targets (raw paths instead of route templates) share one group.
            target = "other".to_string();
            key = format!("{channel}/other");
        }
        let group = self
            .groups
            .entry(key.clone())
            .or_insert_with(|| Group::new(&channel, s.provider.clone(), &target));
        let minute = t.div_euclid(MINUTE_MS);
        let b = group.bucket(minute);
        if matches!(
            s.outcome,
            Outcome::Delivered | Outcome::Succeeded | Outcome::Failed
        ) {
            b.n += s.count;
        }
        if s.source == Source::Webhook {
            b.webhooks += s.count;
        }
        if let Some(l) = &s.latency {
            b.lat_count += s.count;
            b.lat_sum += l.sum_seconds;
            b.lat_p95 = b.lat_p95.max(l.p95_seconds);
        }
        // Missing-outcome bookkeeping by message id.
        if let Some(id) = s.attrs.get("message_id") {
            if s.source == Source::ProviderGateway && s.outcome == Outcome::Accepted {
                let p = self.pending.entry(key.clone()).or_default();
                if p.ids.len() < MAX_PENDING_IDS {
                    p.ids.insert(id.clone(), t);
                }
                *p.sent.entry(minute).or_default() += 1;
            } else if s.source == Source::Webhook
                // "processed", "queued", "deferred" say nothing about delivery yet.
                && !matches!(s.outcome, Outcome::Accepted | Outcome::Deferred)
                && let Some(p) = self.pending.get_mut(&key)
            {
                p.ids.remove(id);
            }
        }
        if s.outcome == Outcome::Failed {
            let class = if s.scope == Scope::Recipient {
                "recipient".to_string()
            } else {
                s.class.clone().unwrap_or_else(|| "unknown".to_string())
            };
            let hist_n = group.hist_n;
            let series = group
                .classes
                .entry(class.clone())
                .or_insert_with(|| ClassSeries::new(&class, s.scope, hist_n));
            series.add_failure(minute, s);
        }
    }

    fn observe_event(&mut self, s: &Signal, t: i64) {
        let name = s
            .attrs
            .get("alertname")
            .cloned()
            .or_else(|| s.query.as_ref().map(|q| q.fingerprint.clone()))
            .or_else(|| s.subject.clone())
            .unwrap_or_else(|| "-".to_string());
        let class = s.class.clone().unwrap_or_else(|| "event".to_string());
        let channel = crate::store::enum_str(&s.channel);
        let key = format!("{channel}/{class}/{name}");
        if s.outcome == Outcome::Resolved {
            if let Some(e) = self.events.get_mut(&key) {
                e.resolved = true;
                e.last_ms = t;
            }
            return;
        }
        let severity = match s.attrs.get("severity").map(String::as_str) {
            Some("critical" | "page") => Severity::Critical,
            Some("info" | "none") => Severity::Info,
            _ => Severity::Warning,
        };
        let e = self
            .events
            .entry(key.clone())
            .or_insert_with(|| EventState {
                finding: Finding {
                    key: key.clone(),
                    detector: "event".into(),
                    channel: channel.clone(),
                    provider: s.provider.clone(),
                    class: Some(class.clone()),
                    k: 0,
                    n: 0,
                    baseline: 0.0,
                    p_value: 1.0,
                    short_k: 0,
                    short_n: 0,
                    short_p_value: 1.0,
                    long_window_secs: 0,
                    short_window_secs: 0,
                    top_codes: Vec::new(),
                    routes: Vec::new(),
                    fingerprints: Vec::new(),
                    tables: Vec::new(),
                    trace_ids: Vec::new(),
                    first_seen_ms: t,
                    last_seen_ms: t,
                    summary: String::new(),
                },
                severity,
                scope: s.scope,
                last_ms: t,
                resolved: false,
            });
        if e.resolved {
            e.finding.first_seen_ms = t;
            e.finding.k = 0;
        }
        e.resolved = false;
        e.severity = e.severity.max(severity);
        e.last_ms = e.last_ms.max(t);
        let f = &mut e.finding;
        f.k += s.count;
        f.last_seen_ms = f.last_seen_ms.max(t);
        series::push_unique(&mut f.routes, s.attrs.get("route"), 10);
        series::push_unique(&mut f.trace_ids, s.attrs.get("trace_id"), 10);
        if let Some(code) = &s.code {
            series::bump_code(&mut f.top_codes, code);
        }
        if let Some(q) = &s.query {
            series::push_unique(&mut f.fingerprints, Some(&q.fingerprint), 10);
            for t in &q.tables {
                series::push_unique(&mut f.tables, Some(t), 20);
            }
            series::push_unique(&mut f.routes, q.tags.get("route"), 10);
        }
        if let Some(fp) = s.attrs.get("fingerprint") {
            series::push_unique(&mut f.fingerprints, Some(fp), 10);
        }
        for t in s
            .attrs
            .get("tables")
            .map(|v| v.split(','))
            .into_iter()
            .flatten()
        {
            series::push_unique(&mut f.tables, Some(&t.trim().to_string()), 20);
        }
        f.summary = match s.channel {
            Channel::Alert => format!("alert {name} firing ({} notifications)", f.k),
            _ => format!("{class} {name} reported {} times", f.k),
        };
    }

    /// Advance the virtual clock to `now_ms`: evaluate every detector over the minutes up to
    /// `now_ms` and return the findings active now, ordered by key.
    pub fn tick(&mut self, now_ms: i64) -> Vec<ActiveFinding> {
        // Windows end at `now`: between minute boundaries the current, partial minute counts,
        // so a live service pages within a tick of a spike rather than after the minute closes.
        let now_min = (now_ms + MINUTE_MS - 1).div_euclid(MINUTE_MS);
        let mut out = Vec::new();
        for (key, group) in &mut self.groups {
            let cfg = self.overrides.get(group.channel()).unwrap_or(&self.cfg);
            group.fold_history(now_min, cfg);
            group.evaluate(key, now_min, now_ms, cfg, &mut out);
            if let Some(f) = group.silent_source(key, now_min, cfg) {
                out.push(f);
            }
            if let Some(p) = self.pending.get_mut(key)
                && let Some(f) = group.missing_outcomes(key, p, now_ms, cfg)
            {
                out.push(f);
            }
        }
        let cfg = &self.cfg;
        let ttl = i64::try_from(cfg.event_ttl_secs).unwrap_or(i64::MAX) * 1000;
        self.events.retain(|_, e| {
            !(e.resolved || now_ms - e.last_ms > ttl) || now_ms - e.last_ms <= ttl * 6
        });
        for e in self.events.values() {
            // Alertmanager repeats firing alerts only every repeat_interval: an alert stays
            // active until its resolution arrives (bounded by a day).
            let alive = if e.finding.channel == "alert" {
                now_ms - e.last_ms <= 86_400_000
            } else {
                now_ms - e.last_ms <= ttl
            };
            if !e.resolved && alive {
                out.push(ActiveFinding {
                    finding: e.finding.clone(),
                    severity: e.severity,
                    scope: e.scope,
                    failing_now: true,
                });
            }
        }
        out.sort_by(|a, b| a.finding.key.cmp(&b.finding.key));
        out
    }
}

#[cfg(test)]
mod tests;
