//! Rules: `rules/incident/*.yaml` (routes, receivers, severities, detector windows, per-channel
//! overrides, silences, recurring maintenance windows), merged in file-name order and validated as a whole. Loading never
//! half-applies: a broken file yields an error naming the file and field, and the caller keeps
//! the rules it had.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::correlate::CorrelateConfig;
use crate::detect::DetectConfig;
use crate::model::{Incident, Severity, incident_label};

/// Labels a route, override or silence matches on (all must equal).
pub type Matchers = BTreeMap<String, String>;

const LABELS: [&str; 5] = [
    "channel",
    "provider",
    "layer",
    "severity",
    "correlation_key",
];

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawReceiver", into = "RawReceiver")]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
}

/// Receiver types. Secrets are read from the environment variable named, never from the file.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    /// Slack incoming webhook.
    Slack { url_env: String },
    /// PagerDuty Events v2 (`url` defaults to the public endpoint).
    Pagerduty {
        routing_key_env: String,
        url: Option<String>,
    },
    /// Generic JSON webhook, HMAC-SHA256 signed (`X-Vigil-Signature: sha256=<hex>`).
    Webhook { url: String, secret_env: String },
    /// Email through an SMTP relay (lettre; rustls for `starttls` and `tls`).
    Smtp {
        host: String,
        port: u16,
        tls: SmtpTls,
        from: String,
        to: Vec<String>,
        username_env: Option<String>,
        password_env: Option<String>,
    },
    /// Only recorded (replay, tests).
    Log,
}

/// How to secure an SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required), port 587 by default.
    Starttls,
    /// TLS from the first byte, port 465 by default.
    Tls,
    /// No encryption: only for a relay on localhost.
    None,
}

/// The file form of a receiver: `kind` plus the fields that kind needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    name: String,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    routing_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_env: Option<String>,
}

impl TryFrom<RawReceiver> for Receiver {
    type Error = String;

    fn try_from(r: RawReceiver) -> Result<Self, String> {
        let need = |v: Option<String>, field: &str| {
            v.ok_or_else(|| {
                format!(
                    "receiver `{}` of kind {}: `{field}` is required",
                    r.name, r.kind
                )
            })
        };
        let extra = |present: bool, field: &str| {
            if present {
                Err(format!(
                    "receiver `{}` of kind {}: `{field}` does not apply",
                    r.name, r.kind
                ))
            } else {
                Ok(())
            }
        };
        let kind = match r.kind.as_str() {
            "slack" => {
                extra(r.url.is_some(), "url")?;
                extra(
                    r.routing_key_env.is_some() || r.secret_env.is_some(),
                    "routing_key_env/secret_env",
                )?;
                ReceiverKind::Slack {
                    url_env: need(r.url_env.clone(), "url_env")?,
                }
            }
            "pagerduty" => {
                extra(
                    r.url_env.is_some() || r.secret_env.is_some(),
                    "url_env/secret_env",
                )?;
                ReceiverKind::Pagerduty {
                    routing_key_env: need(r.routing_key_env.clone(), "routing_key_env")?,
                    url: r.url.clone(),
                }
            }
            "webhook" => {
                extra(
                    r.url_env.is_some() || r.routing_key_env.is_some(),
                    "url_env/routing_key_env",
                )?;
                ReceiverKind::Webhook {
                    url: need(r.url.clone(), "url")?,
                    secret_env: need(r.secret_env.clone(), "secret_env")?,
                }
            }
            "smtp" => {
                extra(r.url.is_some() || r.url_env.is_some(), "url/url_env")?;
                let tls = match r.tls.as_deref().unwrap_or("starttls") {
                    "starttls" => SmtpTls::Starttls,
                    "tls" => SmtpTls::Tls,
                    "none" => SmtpTls::None,
                    other => {
                        return Err(format!(
                            "receiver `{}`: tls must be starttls, tls or none, not `{other}`",
                            r.name
                        ));
                    }
                };
                if r.to.is_empty() {
                    return Err(format!(
                        "receiver `{}` of kind smtp: `to` needs at least one address",
                        r.name
                    ));
                }
                if r.username_env.is_some() != r.password_env.is_some() {
                    return Err(format!(
                        "receiver `{}` of kind smtp: `username_env` and `password_env` go together",
                        r.name
                    ));
                }
                ReceiverKind::Smtp {
                    host: need(r.host.clone(), "host")?,
                    port: r.port.unwrap_or(match tls {
                        SmtpTls::Tls => 465,
                        _ => 587,
                    }),
                    tls,
                    from: need(r.from.clone(), "from")?,
                    to: r.to.clone(),
                    username_env: r.username_env.clone(),
                    password_env: r.password_env.clone(),
                }
            }
            "log" => ReceiverKind::Log,
            other => {
                return Err(format!(
                    "receiver `{}`: kind must be slack, pagerduty, webhook, smtp or log, not `{other}`",
                    r.name
                ));
            }
        };
        Ok(Receiver { name: r.name, kind })
    }
}

impl From<Receiver> for RawReceiver {
    fn from(r: Receiver) -> RawReceiver {
        let mut raw = RawReceiver {
            name: r.name,
            kind: String::new(),
            url: None,
            url_env: None,
            routing_key_env: None,
            secret_env: None,
            host: None,
            port: None,
            tls: None,
            from: None,
            to: Vec::new(),
            username_env: None,
            password_env: None,
        };
        match r.kind {
            ReceiverKind::Slack { url_env } => {
                raw.kind = "slack".into();
                raw.url_env = Some(url_env);
            }
            ReceiverKind::Pagerduty {
                routing_key_env,
                url,
            } => {
                raw.kind = "pagerduty".into();
                raw.routing_key_env = Some(routing_key_env);
                raw.url = url;
            }
            ReceiverKind::Webhook { url, secret_env } => {
                raw.kind = "webhook".into();
                raw.url = Some(url);
                raw.secret_env = Some(secret_env);
            }
            ReceiverKind::Smtp {
                host,
                port,
                tls,
                from,
                to,
                username_env,
                password_env,
            } => {
                raw.kind = "smtp".into();
                raw.host = Some(host);
                raw.port = Some(port);
                raw.tls = Some(
                    match tls {
                        SmtpTls::Starttls => "starttls",
                        SmtpTls::Tls => "tls",
                        SmtpTls::None => "none",
                    }
                    .into(),
                );
                raw.from = Some(from);
                raw.to = to;
                raw.username_env = username_env;
                raw.password_env = password_env;
            }
            ReceiverKind::Log => raw.kind = "log".into(),
        }
        raw
    }
}

/// A route: incidents matching `match` notify `receivers`; unacknowledged after
/// `escalate_after_secs`, they also notify `escalate_to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matchers: Matchers,
    /// Lowest severity this route takes (default critical: only pages).
    #[serde(default = "critical")]
    pub min_severity: Severity,
    pub receivers: Vec<String>,
    #[serde(default)]
    pub escalate_after_secs: Option<u64>,
    #[serde(default)]
    pub escalate_to: Vec<String>,
    /// Stop at this route when it matches (default true).
    #[serde(default = "yes")]
    pub stop: bool,
}

fn critical() -> Severity {
    Severity::Critical
}

fn yes() -> bool {
    true
}

/// Detector settings for matching channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub channel: String,
    pub detect: DetectConfig,
}

/// A silence written in a rules file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSilence {
    #[serde(rename = "match")]
    pub matchers: Matchers,
    pub starts: chrono::DateTime<chrono::Utc>,
    pub ends: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub comment: String,
}

/// Changes the severity detectors give to matching findings (e.g. make `latency` on one route
/// critical, or a noisy class informational). Matches `channel`, `provider`, `class`, `detector`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityRule {
    #[serde(rename = "match")]
    pub matchers: Matchers,
    pub severity: Severity,
}

const FINDING_LABELS: [&str; 4] = ["channel", "provider", "class", "detector"];

impl SeverityRule {
    pub fn matches(&self, f: &crate::model::Finding) -> bool {
        self.matchers.iter().all(|(k, v)| {
            let have = match k.as_str() {
                "channel" => Some(f.channel.as_str()),
                "provider" => f.provider.as_deref(),
                "class" => f.class.as_deref(),
                "detector" => Some(f.detector.as_str()),
                _ => None,
            };
            have == Some(v.as_str())
        })
    }
}

/// A recurring maintenance window in a time zone (DST handled by the IANA database): matching
/// incidents do not page during it; when it ends, what is still failing pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    pub name: String,
    #[serde(rename = "match")]
    pub matchers: Matchers,
    /// IANA zone, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// Days the window starts on (`mon` .. `sun`); empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Local start time `HH:MM`.
    pub start: String,
    pub duration_mins: u32,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Maintenance {
    fn parsed(&self) -> Result<(chrono_tz::Tz, chrono::NaiveTime), (&'static str, String)> {
        let tz: chrono_tz::Tz = self
            .timezone
            .parse()
            .map_err(|_| ("timezone", format!("unknown time zone `{}`", self.timezone)))?;
        let start = chrono::NaiveTime::parse_from_str(&self.start, "%H:%M")
            .map_err(|_| ("start", format!("`{}` is not HH:MM", self.start)))?;
        if let Some(d) = self.days.iter().find(|d| !DAYS.contains(&d.as_str())) {
            return Err(("days", format!("`{d}` is not one of mon..sun")));
        }
        if self.duration_mins == 0 || self.duration_mins > 7 * 1440 {
            return Err(("duration_mins", "must be 1 to 10080".into()));
        }
        Ok((tz, start))
    }

    /// Whether the window is open at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        use chrono::{Datelike, TimeZone};
        let Ok((tz, start)) = self.parsed() else {
            return false;
        };
        let Some(now) = chrono::Utc.timestamp_millis_opt(now_ms).single() else {
            return false;
        };
        let today = now.with_timezone(&tz).date_naive();
        let span_days = u64::from(self.duration_mins).div_ceil(1440);
        (0..=span_days).any(|back| {
            let Some(day) = today.checked_sub_days(chrono::Days::new(back)) else {
                return false;
            };
            let wd = DAYS[day.weekday().num_days_from_monday() as usize];
            if !self.days.is_empty() && !self.days.iter().any(|d| d == wd) {
                return false;
            }
            // A start inside a DST gap moves to the first valid instant after it.
            let local = day.and_time(start);
            let begin = tz.from_local_datetime(&local).earliest().or_else(|| {
                tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                    .earliest()
            });
            begin.is_some_and(|b| {
                let b = b.timestamp_millis();
                now_ms >= b && now_ms < b + i64::from(self.duration_mins) * 60_000
            })
        })
    }
}

/// One rules file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesFile {
    pub detect: Option<DetectConfig>,
    pub correlate: Option<CorrelateConfig>,
    pub overrides: Vec<Override>,
    pub routes: Vec<Route>,
    pub receivers: Vec<Receiver>,
    pub silences: Vec<RuleSilence>,
    pub maintenance: Vec<Maintenance>,
    pub severities: Vec<SeverityRule>,
}

/// The merged rules.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rules {
    pub detect: DetectConfig,
    pub correlate: CorrelateConfig,
    pub overrides: Vec<Override>,
    pub routes: Vec<Route>,
    pub receivers: Vec<Receiver>,
    pub silences: Vec<RuleSilence>,
    pub maintenance: Vec<Maintenance>,
    pub severities: Vec<SeverityRule>,
}

/// Why rules could not be loaded; names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("{}: `{field}`: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        problem: String,
    },
}

impl Rules {
    /// Built-in rules: default detectors; critical incidents page the `log` receiver.
    pub fn builtin() -> Rules {
        Rules {
            routes: vec![Route {
                name: "default".into(),
                matchers: Matchers::new(),
                min_severity: Severity::Critical,
                receivers: vec!["log".into()],
                escalate_after_secs: None,
                escalate_to: Vec::new(),
                stop: true,
            }],
            receivers: vec![Receiver {
                name: "log".into(),
                kind: ReceiverKind::Log,
            }],
            ..Rules::default()
        }
    }

    /// Parse one file's text (`path` only names it in errors).
    pub fn parse_file(path: &Path, text: &str) -> Result<RulesFile, RulesError> {
        serde_saphyr::from_str(text).map_err(|e| RulesError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Load and validate every `*.yaml`/`*.yml` in `dir` (sorted by name). A missing or empty
    /// directory gives the built-in rules.
    pub fn load_dir(dir: &Path) -> Result<Rules, RulesError> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(RulesError::Read {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        };
        files.sort();
        if files.is_empty() {
            return Ok(Rules::builtin());
        }
        let mut parsed = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| RulesError::Read {
                path: path.clone(),
                source,
            })?;
            parsed.push((path.clone(), Self::parse_file(&path, &text)?));
        }
        Self::merge(parsed)
    }

    /// Merge parsed files and validate the result.
    pub fn merge(files: Vec<(PathBuf, RulesFile)>) -> Result<Rules, RulesError> {
        let mut rules = Rules::default();
        let mut detect_from: Option<PathBuf> = None;
        let mut receiver_files: BTreeMap<String, PathBuf> = BTreeMap::new();
        let invalid = |path: &Path, field: String, problem: String| RulesError::Invalid {
            path: path.to_path_buf(),
            field,
            problem,
        };
        for (path, f) in &files {
            if let Some(d) = &f.detect {
                if let Some(prev) = &detect_from {
                    return Err(invalid(
                        path,
                        "detect".into(),
                        format!("already set in {}", prev.display()),
                    ));
                }
                d.validate()
                    .map_err(|e| invalid(path, format!("detect.{}", e.field), e.problem.into()))?;
                rules.detect = d.clone();
                detect_from = Some(path.clone());
            }
            if let Some(c) = &f.correlate {
                rules.correlate = c.clone();
            }
            for (i, o) in f.overrides.iter().enumerate() {
                o.detect.validate().map_err(|e| {
                    invalid(
                        path,
                        format!("overrides[{i}].detect.{}", e.field),
                        e.problem.into(),
                    )
                })?;
            }
            for (i, r) in f.receivers.iter().enumerate() {
                if let Some(prev) = receiver_files.insert(r.name.clone(), path.clone()) {
                    return Err(invalid(
                        path,
                        format!("receivers[{i}].name"),
                        format!(
                            "receiver `{}` already defined in {}",
                            r.name,
                            prev.display()
                        ),
                    ));
                }
                if r.name.is_empty() {
                    return Err(invalid(
                        path,
                        format!("receivers[{i}].name"),
                        "must not be empty".into(),
                    ));
                }
            }
            for (i, s) in f.silences.iter().enumerate() {
                if s.ends <= s.starts {
                    return Err(invalid(
                        path,
                        format!("silences[{i}].ends"),
                        "must be after starts".into(),
                    ));
                }
                check_labels(&s.matchers).map_err(|l| {
                    invalid(
                        path,
                        format!("silences[{i}].match.{l}"),
                        "unknown label".into(),
                    )
                })?;
            }
            for (i, m) in f.maintenance.iter().enumerate() {
                m.parsed().map_err(|(field, problem)| {
                    invalid(path, format!("maintenance[{i}].{field}"), problem)
                })?;
                check_labels(&m.matchers).map_err(|l| {
                    invalid(
                        path,
                        format!("maintenance[{i}].match.{l}"),
                        "unknown label".into(),
                    )
                })?;
            }
            rules.maintenance.extend(f.maintenance.iter().cloned());
            for (i, r) in f.severities.iter().enumerate() {
                if let Some(k) = r
                    .matchers
                    .keys()
                    .find(|k| !FINDING_LABELS.contains(&k.as_str()))
                {
                    return Err(invalid(
                        path,
                        format!("severities[{i}].match.{k}"),
                        "unknown label (channel, provider, class, detector)".into(),
                    ));
                }
            }
            rules.severities.extend(f.severities.iter().cloned());
            rules.overrides.extend(f.overrides.iter().cloned());
            rules.routes.extend(f.routes.iter().cloned());
            rules.receivers.extend(f.receivers.iter().cloned());
            rules.silences.extend(f.silences.iter().cloned());
        }
        // Routes may name receivers from any file.
        for (path, f) in &files {
            for (i, r) in f.routes.iter().enumerate() {
                check_labels(&r.matchers).map_err(|l| {
                    invalid(
                        path,
                        format!("routes[{i}].match.{l}"),
                        "unknown label".into(),
                    )
                })?;
                for (j, name) in r.receivers.iter().enumerate() {
                    if !receiver_files.contains_key(name) {
                        return Err(invalid(
                            path,
                            format!("routes[{i}].receivers[{j}]"),
                            format!("no receiver named `{name}`"),
                        ));
                    }
                }
                for (j, name) in r.escalate_to.iter().enumerate() {
                    if !receiver_files.contains_key(name) {
                        return Err(invalid(
                            path,
                            format!("routes[{i}].escalate_to[{j}]"),
                            format!("no receiver named `{name}`"),
                        ));
                    }
                }
                if !r.escalate_to.is_empty() && r.escalate_after_secs.is_none() {
                    return Err(invalid(
                        path,
                        format!("routes[{i}].escalate_after_secs"),
                        "required with escalate_to".into(),
                    ));
                }
            }
        }
        Ok(rules)
    }

    /// Detector settings for a channel (its override, else the global ones).
    pub fn detect_for(&self, channel: &str) -> &DetectConfig {
        self.overrides
            .iter()
            .find(|o| o.channel == channel)
            .map_or(&self.detect, |o| &o.detect)
    }

    /// Routes an incident notifies, in order, honouring `stop`.
    pub fn routes_for(&self, incident: &Incident) -> Vec<&Route> {
        let mut out = Vec::new();
        for r in &self.routes {
            if incident.severity < r.min_severity {
                continue;
            }
            if r.matchers
                .iter()
                .all(|(k, v)| incident_label(incident, k).is_some_and(|have| have == *v))
            {
                out.push(r);
                if r.stop {
                    break;
                }
            }
        }
        out
    }

    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }

    /// Whether a rules-file silence or maintenance window mutes the incident at `now_ms`.
    pub fn silenced(&self, incident: &Incident, now_ms: i64) -> bool {
        let matches = |m: &Matchers| {
            m.iter()
                .all(|(k, v)| incident_label(incident, k).is_some_and(|have| have == *v))
        };
        if self
            .maintenance
            .iter()
            .any(|w| matches(&w.matchers) && w.active(now_ms))
        {
            return true;
        }
        self.silences.iter().any(|s| {
            now_ms >= s.starts.timestamp_millis()
                && now_ms < s.ends.timestamp_millis()
                && s.matchers
                    .iter()
                    .all(|(k, v)| incident_label(incident, k).is_some_and(|have| have == *v))
        })
    }
}

fn check_labels(m: &Matchers) -> Result<(), String> {
    match m.keys().find(|k| !LABELS.contains(&k.as_str())) {
        Some(k) => Err(k.clone()),
        None => Ok(()),
    }
}

/// Validate the rules directory (what `vigil check` calls).
pub fn check_rules(dir: &Path) -> Result<(), RulesError> {
    Rules::load_dir(dir).map(|_| ())
}
