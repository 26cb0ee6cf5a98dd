//! The incident service's metrics, registered once on the registry passed in.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of notification outcomes (bounded: receiver kind x result).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct NotifyLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

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
        m
    }
}
