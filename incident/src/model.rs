//! The incident records shared by detection, correlation, the store, the API and notifiers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Incident lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Acknowledged,
    Resolved,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Acknowledged => "acknowledged",
            IncidentState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<IncidentState> {
        match s {
            "open" => Some(IncidentState::Open),
            "acknowledged" => Some(IncidentState::Acknowledged),
            "resolved" => Some(IncidentState::Resolved),
            _ => None,
        }
    }
}

impl fmt::Display for IncidentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the cause most likely sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The external provider (SendGrid, Twilio, Stripe, a carrier).
    Provider,
    /// Our use of the provider: credentials, sender identity, request shape.
    Integration,
    /// Our database.
    Database,
    /// Our application code or infrastructure.
    App,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Provider => "provider",
            Layer::Integration => "integration",
            Layer::Database => "database",
            Layer::App => "app",
        }
    }

    pub fn parse(s: &str) -> Option<Layer> {
        match s {
            "provider" => Some(Layer::Provider),
            "integration" => Some(Layer::Integration),
            "database" => Some(Layer::Database),
            "app" => Some(Layer::App),
            _ => None,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an incident is; routes page on `Critical` by default.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// One detector finding attached to an incident: why it fired, with numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Detector key, e.g. `email/sendgrid/blocked` or `http/route:/api/pay/5xx`.
    pub key: String,
    /// Which detector produced it (`rate`, `latency`, `missing_outcome`, `silent_source`, `event`).
    pub detector: String,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Failures (k) and attempts (n) in the long window.
    pub k: u64,
    pub n: u64,
    /// Learned baseline failure rate.
    pub baseline: f64,
    /// Binomial upper-tail p-value of k given n and the baseline (long window).
    pub p_value: f64,
    /// The same test on the short confirmation window.
    pub short_k: u64,
    pub short_n: u64,
    pub short_p_value: f64,
    pub long_window_secs: u64,
    pub short_window_secs: u64,
    /// Most frequent codes with their counts.
    #[serde(default)]
    pub top_codes: Vec<(String, u64)>,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub fingerprints: Vec<String>,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub trace_ids: Vec<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Human explanation ("why now").
    pub summary: String,
}

/// Everything an incident carries as evidence.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    pub findings: Vec<Finding>,
    /// Likely layers, best first, with a score in 0..=1.
    pub layers: Vec<(Layer, f64)>,
    /// Providers involved.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Number of pages (trigger notifications) produced, for display.
    #[serde(default)]
    pub reopen_count: u32,
}

/// One incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    /// What groups findings into this incident (e.g. `provider:twilio` or `db`).
    pub correlation_key: String,
    pub state: IncidentState,
    pub severity: Severity,
    pub title: String,
    pub channel: String,
    pub layer: Layer,
    pub opened_ms: i64,
    pub updated_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_ms: Option<i64>,
    pub evidence: Evidence,
}

/// One entry in an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub id: String,
    pub incident_id: String,
    pub at_ms: i64,
    /// `opened`, `finding`, `acknowledged`, `resolved`, `reopened`, `note`, `escalated`, `paged`.
    pub kind: String,
    /// `vigil` for automatic changes, otherwise the user.
    pub actor: String,
    pub detail: String,
}

/// A note written by a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub incident_id: String,
    pub at_ms: i64,
    pub author: String,
    pub body: String,
}

/// A silence: matching incidents do not page while it is active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// Label matchers, all of which must equal (`channel`, `provider`, `layer`, `severity`,
    /// `correlation_key`).
    pub matchers: BTreeMap<String, String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    /// Whether the silence is active at `now_ms` and matches `incident`.
    pub fn mutes(&self, incident: &Incident, now_ms: i64) -> bool {
        if now_ms < self.starts_ms || now_ms >= self.ends_ms {
            return false;
        }
        self.matchers
            .iter()
            .all(|(k, v)| incident_label(incident, k).is_some_and(|have| have == *v))
    }
}

/// The value of a routing/silencing label for an incident.
pub fn incident_label(incident: &Incident, label: &str) -> Option<String> {
    match label {
        "channel" => Some(incident.channel.clone()),
        "layer" => Some(incident.layer.as_str().to_string()),
        "severity" => Some(incident.severity.as_str().to_string()),
        "correlation_key" => Some(incident.correlation_key.clone()),
        "provider" => incident.evidence.providers.first().cloned(),
        _ => None,
    }
}
