//! The incident service's metrics, registered once on the registry passed in. Lifecycle counters
//! and the time-to-acknowledge histogram are recorded when a change is persisted
//! ([`Metrics::record_change`]); the missing-outcome gauge is refreshed on each tick from the
//! detector ([`Metrics::set_missing_outcomes`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::correlate::{Change, ChangeKind};

/// Labels of notification outcomes (bounded: receiver kind x result).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct NotifyLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

/// Labels of the missing-outcome gauge (bounded: channels x configured providers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub channel: String,
    pub provider: String,
}

/// Time-to-acknowledge buckets, in seconds (10 s ... 4 h).
pub const ACK_BUCKETS: [f64; 12] = [
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 14400.0,
];

/// All metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub signals_stored: Counter,
    pub signals_duplicate: Counter,
    pub signals_invalid: Counter,
    pub incidents_opened: Counter,
    pub incidents_open: Gauge,
    pub notifications: Family<NotifyLabels, Counter>,
    pub rules_reloads: Counter,
    pub rules_errors: Counter,
    pub ingest_seconds: Histogram,
    pub tick_errors: Counter,
    pub incidents_acknowledged: Counter,
    pub incidents_resolved: Counter,
    pub time_to_acknowledge: Histogram,
    pub missing_outcomes: Family<OutcomeLabels, Gauge>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            signals_stored: Counter::default(),
            signals_duplicate: Counter::default(),
            signals_invalid: Counter::default(),
            incidents_opened: Counter::default(),
            incidents_open: Gauge::default(),
            notifications: Family::default(),
            rules_reloads: Counter::default(),
            rules_errors: Counter::default(),
            ingest_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            tick_errors: Counter::default(),
            incidents_acknowledged: Counter::default(),
            incidents_resolved: Counter::default(),
            time_to_acknowledge: Histogram::new(ACK_BUCKETS),
            missing_outcomes: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("vigil_incident");
        r.register(
            "signals_stored",
            "Signals stored by the incident service",
            m.signals_stored.clone(),
        );
        r.register(
            "signals_duplicate",
            "Signals skipped because their id was already stored",
            m.signals_duplicate.clone(),
        );
        r.register(
            "signals_invalid",
            "Signals refused as unreadable or of an unknown version",
            m.signals_invalid.clone(),
        );
        r.register(
            "incidents_opened",
            "Incidents opened",
            m.incidents_opened.clone(),
        );
        r.register(
            "incidents_open",
            "Incidents open or acknowledged",
            m.incidents_open.clone(),
        );
        r.register(
            "notifications",
            "Notification attempts by receiver kind and result",
            m.notifications.clone(),
        );
        r.register(
            "rules_reloads",
            "Successful rules reloads",
            m.rules_reloads.clone(),
        );
        r.register(
            "rules_errors",
            "Rules reloads refused because a file is broken",
            m.rules_errors.clone(),
        );
        r.register_with_unit(
            "ingest_duration",
            "Time to store and detect one ingested batch",
            prometheus_client::registry::Unit::Seconds,
            m.ingest_seconds.clone(),
        );
        r.register(
            "tick_errors",
            "Detector ticks whose results could not be stored",
            m.tick_errors.clone(),
        );
        r.register(
            "incidents_acknowledged",
            "Incidents acknowledged by a person (API or console)",
            m.incidents_acknowledged.clone(),
        );
        r.register(
            "incidents_resolved",
            "Incidents resolved, automatically or by a person",
            m.incidents_resolved.clone(),
        );
        r.register_with_unit(
            "time_to_acknowledge",
            "Time from an incident opening to its acknowledgement",
            prometheus_client::registry::Unit::Seconds,
            m.time_to_acknowledge.clone(),
        );
        r.register(
            "missing_outcomes",
            "Gateway sends with no delivery outcome after missing_outcome_secs, by channel and provider",
            m.missing_outcomes.clone(),
        );
        m
    }

    /// Count a persisted incident change: opened, acknowledged (with its time to acknowledge),
    /// resolved.
    pub fn record_change(&self, c: &Change) {
        match c.kind {
            ChangeKind::Opened => {
                self.incidents_opened.inc();
            }
            ChangeKind::Acknowledged => {
                self.incidents_acknowledged.inc();
                let secs = (c.timeline.at_ms - c.incident.opened_ms).max(0) as f64 / 1000.0;
                self.time_to_acknowledge.observe(secs);
            }
            ChangeKind::Resolved => {
                self.incidents_resolved.inc();
            }
            ChangeKind::Updated | ChangeKind::Escalated | ChangeKind::Reopened => {}
        }
    }

    /// Replace the missing-outcome gauge with the detector's current counts `(channel,
    /// provider, overdue)`; groups no longer tracked disappear.
    pub fn set_missing_outcomes(&self, overdue: &[(String, String, u64)]) {
        self.missing_outcomes.clear();
        for (channel, provider, n) in overdue {
            self.missing_outcomes
                .get_or_create(&OutcomeLabels {
                    channel: channel.clone(),
                    provider: provider.clone(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn text(r: &Registry) -> String {
        let mut out = String::new();
        encode(&mut out, r).unwrap();
        out
    }

    #[test]
    fn missing_outcomes_gauge_is_replaced_on_each_update() {
        let mut r = Registry::default();
        let m = Metrics::new(&mut r);
        m.set_missing_outcomes(&[
            ("email".into(), "sendgrid".into(), 3),
            ("sms".into(), "twilio".into(), 0),
        ]);
        let t = text(&r);
        assert!(
            t.contains(
                "vigil_incident_missing_outcomes{channel=\"email\",provider=\"sendgrid\"} 3"
            ),
            "{t}"
        );
        m.set_missing_outcomes(&[("sms".into(), "twilio".into(), 1)]);
        let t = text(&r);
        assert!(!t.contains("provider=\"sendgrid\""), "{t}");
        assert!(
            t.contains("vigil_incident_missing_outcomes{channel=\"sms\",provider=\"twilio\"} 1"),
            "{t}"
        );
    }
}
