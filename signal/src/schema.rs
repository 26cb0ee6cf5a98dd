//! The versioned signal record: the only contract between producers and the incident service.
//!
//! A [`Signal`] is either one event (a verified webhook, an application event) or a pre-aggregated
//! count over a short window (the proxies report successes as counts, not one record per message).
//! Minor additions are backwards compatible: consumers ignore unknown fields. A change that alters
//! the meaning of an existing field bumps [`SCHEMA_VERSION`], and consumers refuse versions they do
//! not know rather than misread them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The schema version this crate writes and the highest it reads.
pub const SCHEMA_VERSION: u16 = 1;

/// Where a signal was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The reverse proxy in front of the CRM (per-route outcomes and latency).
    HttpIngress,
    /// The gateway for the CRM's outbound provider calls.
    ProviderGateway,
    /// A verified provider webhook read by a tap.
    Webhook,
    /// The PostgreSQL proxy (statement outcomes, heavy queries, statistics buckets).
    PgProxy,
    /// The CRM's own events (`POST /v1/events`).
    App,
    /// A Prometheus alert received through the Alertmanager webhook.
    Alertmanager,
}

/// The business channel a signal belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Payment,
    Http,
    Db,
    Automation,
    Alert,
}

/// What happened. The vocabulary follows the provider fixtures' normalized outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Taken by the provider or server, not final (SendGrid `processed`, a gateway 2xx on send).
    Accepted,
    /// The receiving side accepted it (a delivered email or SMS).
    Delivered,
    /// A payment, request or statement that succeeded.
    Succeeded,
    /// A temporary failure the provider itself will retry.
    Deferred,
    /// Terminal failure for this message, attempt, request or statement.
    Failed,
    /// A spam complaint.
    Complained,
    /// The recipient opted out.
    Unsubscribed,
    /// The provider suppressed the address, not tied to one attempt.
    Suppressed,
    /// A condition started (an alert firing, a statement turning heavy).
    Firing,
    /// A condition ended.
    Resolved,
}

impl Outcome {
    /// Whether this outcome counts as a failure for detection.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::Firing)
    }

    /// Whether this outcome counts as an attempt (the denominator of a failure rate).
    pub fn is_attempt(self) -> bool {
        matches!(
            self,
            Outcome::Accepted | Outcome::Delivered | Outcome::Succeeded | Outcome::Failed
        )
    }
}

/// Who a failure is about: one recipient (never pages on its own), or the sender/provider/service
/// as a whole (weighs more in detection).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One mailbox, handset or card: a dead mailbox, an unreachable handset, insufficient funds.
    Recipient,
    /// Our sending identity: a blocked IP, DMARC, carrier filtering of our sender.
    Sender,
    /// The provider as a whole: its 5xx, its `api_error`, timeouts to it.
    Provider,
    /// Our own service: a route, a statement, a job.
    #[default]
    Service,
}

/// Latency over the signal's window, in seconds, for route and gateway signals.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Sum of durations of the `count` requests, in seconds.
    pub sum_seconds: f64,
    /// Maximum duration seen.
    pub max_seconds: f64,
    /// 95th percentile over the window.
    pub p95_seconds: f64,
}

/// One minute (or other window) of statistics for one statement fingerprint, as the pg proxy
/// publishes them so the incident service keeps history for reports. Never holds parameter values.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QueryStats {
    /// 64-bit fingerprint, as 16 lowercase hex digits.
    pub fingerprint: String,
    /// Normalized statement text (constants replaced by `$n`).
    pub query: String,
    pub database: String,
    pub role: String,
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_seconds: f64,
    pub min_seconds: f64,
    pub max_seconds: f64,
    pub p50_seconds: f64,
    pub p95_seconds: f64,
    pub p99_seconds: f64,
    /// Time spent waiting for a pooled server connection.
    pub pool_wait_seconds: f64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bypasses: u64,
    /// Estimated database time the cache saved.
    pub cache_saved_seconds: f64,
    /// Errors by SQLSTATE.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sqlstates: BTreeMap<String, u64>,
    /// sqlcommenter tags seen with the statement (route, controller, action, application).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Statement kind from the analyzer (read, write, ddl, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Tables the statement reads and writes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// A captured `EXPLAIN (FORMAT JSON)` plan with every literal replaced by `?` (heaviest read
    /// statements only, see the proxy's `stats::plans`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// One `pg_stat_statements` row of a [`PgssSnapshot`]: counters cumulative since the
/// extension's last reset (consumers compute deltas between snapshots; a counter going down is a
/// reset). Never holds parameter values: the text is normalized again by the producer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PgssEntry {
    /// `queryid` (decimal).
    pub queryid: String,
    /// The role that ran it.
    pub role: String,
    /// Normalized statement text (constants as `$n`).
    pub query: String,
    pub calls: u64,
    pub total_seconds: f64,
    pub rows: u64,
}

/// A snapshot of `pg_stat_statements` for one upstream database, taken by the pg proxy every
/// `[queries.pgss] interval_secs` (class `pgss_snapshot`; the signal's `time` is when it was
/// taken). Added in schema v1 as an optional field: older consumers ignore it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PgssSnapshot {
    pub database: String,
    /// `pg_stat_statements_info.stats_reset` when known (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_reset: Option<DateTime<Utc>>,
    /// Rows kept (the heaviest by total time when the producer caps them).
    #[serde(default)]
    pub entries: Vec<PgssEntry>,
}

/// One signal record. Build it with [`Signal::new`] and the `with_*` setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u16,
    /// Unique id; consumers are idempotent on it. Producers that see a provider event id use
    /// a deterministic id (`"sendgrid:<sg_event_id>"`) so replicas and retries de-duplicate.
    pub id: String,
    /// Event time, or the start of the aggregation window.
    pub time: DateTime<Utc>,
    /// Length of the aggregation window in seconds; 0 for a single event.
    #[serde(default)]
    pub window_secs: u32,
    pub source: Source,
    pub channel: Channel,
    /// Provider name (`sendgrid`, `twilio`, `stripe`, ...) where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub outcome: Outcome,
    /// Normalized failure class (`bounce`, `blocked`, `carrier_filter`, `provider_5xx`,
    /// `timeout`, `heavy_query`, ...); `None` for successes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The most specific provider or server code (SMTP status, Twilio `ErrorCode`, Stripe decline
    /// code, HTTP status, SQLSTATE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub scope: Scope,
    /// Whether retrying the same thing is expected to fail again; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permanent: Option<bool>,
    /// What the signal is about, for de-duplication: a hashed recipient or card, a route
    /// template, a statement fingerprint. Never a raw email address or phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// How many events this record stands for (pre-aggregated counts); at least 1.
    #[serde(default = "one")]
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<Box<QueryStats>>,
    /// A `pg_stat_statements` snapshot (class `pgss_snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgss: Option<Box<PgssSnapshot>>,
    /// Free-form, low-cardinality attributes (route, fingerprint, trace id, message id hash).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
}

fn one() -> u64 {
    1
}

impl Signal {
    /// A single event now, with a fresh time-ordered id.
    pub fn new(source: Source, channel: Channel, outcome: Outcome) -> Signal {
        Signal {
            v: SCHEMA_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            time: Utc::now(),
            window_secs: 0,
            source,
            channel,
            provider: None,
            outcome,
            class: None,
            code: None,
            scope: Scope::default(),
            permanent: None,
            subject: None,
            count: 1,
            latency: None,
            query: None,
            pgss: None,
            attrs: BTreeMap::new(),
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
    pub fn with_time(mut self, time: DateTime<Utc>) -> Self {
        self.time = time;
        self
    }
    pub fn with_window(mut self, secs: u32) -> Self {
        self.window_secs = secs;
        self
    }
    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }
    pub fn with_class(mut self, class: impl Into<String>) -> Self {
        self.class = Some(class.into());
        self
    }
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }
    pub fn with_permanent(mut self, permanent: Option<bool>) -> Self {
        self.permanent = permanent;
        self
    }
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
    pub fn with_count(mut self, count: u64) -> Self {
        self.count = count;
        self
    }
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = Some(latency);
        self
    }
    pub fn with_query(mut self, stats: QueryStats) -> Self {
        self.query = Some(Box::new(stats));
        self
    }
    pub fn with_pgss(mut self, snapshot: PgssSnapshot) -> Self {
        self.pgss = Some(Box::new(snapshot));
        self
    }
    pub fn with_attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attrs.insert(key.into(), value.into());
        self
    }

    /// Encode as one line of JSON (the wire form on every transport).
    pub fn to_json(&self) -> String {
        // Serializing this type cannot fail: every field is a plain value or a string-keyed map.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decode and check the version.
    pub fn from_json(raw: &[u8]) -> Result<Signal, DecodeError> {
        let signal: Signal = serde_json::from_slice(raw).map_err(DecodeError::Json)?;
        signal.validate()?;
        Ok(signal)
    }

    /// Checks a consumer makes before storing: known version, non-empty id, positive count.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.v == 0 || self.v > SCHEMA_VERSION {
            return Err(DecodeError::Version(self.v));
        }
        if self.id.is_empty() || self.id.len() > 200 {
            return Err(DecodeError::Invalid("id must be 1 to 200 bytes"));
        }
        if self.count == 0 {
            return Err(DecodeError::Invalid("count must be at least 1"));
        }
        Ok(())
    }
}

/// Why a signal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("signal is not valid JSON for schema v{SCHEMA_VERSION}: {0}")]
    Json(#[source] serde_json::Error),
    #[error("signal schema version {0} is not supported (this build reads 1..={SCHEMA_VERSION})")]
    Version(u16),
    #[error("invalid signal: {0}")]
    Invalid(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let s = Signal::new(Source::Webhook, Channel::Email, Outcome::Failed)
            .with_provider("sendgrid")
            .with_class("bounce")
            .with_code("5.1.1")
            .with_scope(Scope::Recipient)
            .with_permanent(Some(true))
            .with_subject("h:1234")
            .with_attr("route", "/webhooks/sendgrid");
        let back = Signal::from_json(s.to_json().as_bytes()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn defaults_fill_optional_fields_and_unknown_fields_are_ignored() {
        let raw = br#"{"v":1,"id":"a","time":"2026-11-27T10:00:00Z","source":"app",
            "channel":"automation","outcome":"failed","future_field":42}"#;
        let s = Signal::from_json(raw).unwrap();
        assert_eq!(s.count, 1);
        assert_eq!(s.scope, Scope::Service);
        assert_eq!(s.window_secs, 0);
    }

    #[test]
    fn pgss_snapshots_round_trip_and_stay_optional() {
        let s = Signal::new(Source::PgProxy, Channel::Db, Outcome::Succeeded)
            .with_class("pgss_snapshot")
            .with_pgss(PgssSnapshot {
                database: "crm".into(),
                stats_reset: None,
                entries: vec![PgssEntry {
                    queryid: "-42".into(),
                    role: "app".into(),
                    query: "SELECT $1".into(),
                    calls: 3,
                    total_seconds: 0.5,
                    rows: 3,
                }],
            });
        let json = s.to_json();
        assert!(!json.contains("stats_reset"));
        assert_eq!(Signal::from_json(json.as_bytes()).unwrap(), s);
        // A v1 record without the field (older producers) still reads.
        let old = br#"{"v":1,"id":"a","time":"2026-11-27T10:00:00Z","source":"pg_proxy","channel":"db","outcome":"succeeded"}"#;
        assert!(Signal::from_json(old).unwrap().pgss.is_none());
        let plain = Signal::new(Source::App, Channel::Db, Outcome::Failed).to_json();
        assert!(!plain.contains("pgss"));
    }

    #[test]
    fn refuses_unknown_versions_and_bad_records() {
        let newer = br#"{"v":2,"id":"a","time":"2026-11-27T10:00:00Z","source":"app","channel":"db","outcome":"failed"}"#;
        assert!(matches!(
            Signal::from_json(newer),
            Err(DecodeError::Version(2))
        ));
        let zero = br#"{"v":1,"id":"a","time":"2026-11-27T10:00:00Z","source":"app","channel":"db","outcome":"failed","count":0}"#;
        assert!(matches!(
            Signal::from_json(zero),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            Signal::from_json(b"{not json"),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn failure_and_attempt_accounting() {
        assert!(Outcome::Failed.is_failure() && Outcome::Failed.is_attempt());
        assert!(!Outcome::Deferred.is_failure() && !Outcome::Deferred.is_attempt());
        assert!(Outcome::Delivered.is_attempt() && !Outcome::Delivered.is_failure());
    }
}
