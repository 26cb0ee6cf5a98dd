//! Correlation and lifecycle: active findings that share a cause merge into one incident with a
//! ranked likely layer; incidents open, get acknowledged, auto-resolve once every finding has
//! cleared (the detectors apply the recovery hysteresis) and reopen on a relapse within
//! `reopen_window_secs` instead of opening a new one. Deterministic: ids derive from the
//! correlation key and the opening minute, so replays and replicas agree.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use vigil_signal::Scope;

use crate::detect::ActiveFinding;
use crate::model::{Evidence, Finding, Incident, IncidentState, Layer, Severity, TimelineEntry};

/// Correlation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelateConfig {
    /// A resolved incident whose cause fires again within this window reopens.
    pub reopen_window_secs: u64,
    /// Application symptoms (HTTP, automation) wait this long for a cause-side finding
    /// (database, provider) to join before they open an incident of their own.
    pub app_group_wait_secs: u64,
}

impl Default for CorrelateConfig {
    fn default() -> Self {
        CorrelateConfig {
            reopen_window_secs: 3600,
            app_group_wait_secs: 180,
        }
    }
}

/// What changed about an incident on a tick or by a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Opened,
    /// New evidence or a new finding.
    Updated,
    /// Severity rose (e.g. warning -> critical).
    Escalated,
    Reopened,
    Acknowledged,
    Resolved,
}

/// One change, with the incident as it is after it and the timeline entry recording it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: ChangeKind,
    pub incident: Incident,
    pub timeline: TimelineEntry,
    /// Notification sequence of the incident: bumps on each open/reopen/escalation so dedup
    /// keys stay unique per page while a restart repeats the same value.
    pub seq: u32,
}

#[derive(Debug, Clone)]
struct Runtime {
    incident: Incident,
    active: BTreeSet<String>,
    /// Findings a person resolved the incident over: they must clear before reopening it.
    muted: BTreeSet<String>,
    timeline_seq: u32,
    seq: u32,
}

/// The correlator: owns the working set of incidents.
#[derive(Debug, Default)]
pub struct Correlator {
    cfg: CorrelateConfig,
    incidents: BTreeMap<String, Runtime>,
    /// correlation key -> latest incident id
    by_key: BTreeMap<String, String>,
    /// finding key -> first tick it was seen active (continuously)
    first_active: BTreeMap<String, i64>,
    /// finding key -> correlation key it joined, kept while the finding stays active
    assigned: BTreeMap<String, String>,
}

/// Correlation key of one finding before cross-finding joins.
fn base_key(f: &Finding) -> String {
    let lower = f.key.to_ascii_lowercase();
    match f.channel.as_str() {
        "db" => "db".into(),
        "alert" => {
            if let Some(p) = &f.provider {
                format!("provider:{p}")
            } else if ["postgres", "database", "/db"]
                .iter()
                .any(|w| lower.contains(w))
            {
                "db".into()
            } else {
                format!("alert:{}", f.key.rsplit('/').next().unwrap_or("-"))
            }
        }
        "http" | "automation" => "app".into(),
        _ => match &f.provider {
            Some(p) => format!("provider:{p}"),
            None => format!("{}:-", f.channel),
        },
    }
}

/// Failure classes a provider shows synchronously to the caller (the CRM's request fails with it).
const SYNC_CLASSES: [&str; 5] = [
    "provider_5xx",
    "timeout",
    "connection_failure",
    "rate_limited",
    "api_error",
];

fn shares(a: &[String], b: &BTreeSet<String>) -> bool {
    a.iter().any(|x| b.contains(x))
}

/// Layer scores from the findings, best first, normalized to sum to 1.
fn rank_layers(findings: &[(Finding, Scope)], key: &str) -> Vec<(Layer, f64)> {
    let mut score: BTreeMap<Layer, f64> = BTreeMap::new();
    let mut add = |l: Layer, v: f64| *score.entry(l).or_default() += v;
    // Application symptoms that joined a provider cause (the CRM's 502s while Stripe answers
    // 5xx) weigh as one, however many routes show them: they must not outvote their cause.
    let symptoms = findings
        .iter()
        .filter(|(f, _)| matches!(f.channel.as_str(), "http" | "automation"))
        .count()
        .max(1) as f64;
    for (f, scope) in findings {
        match (f.channel.as_str(), f.detector.as_str()) {
            ("db", _) => {
                add(Layer::Database, 3.0);
                add(Layer::App, 1.0);
            }
            ("alert", _) if key == "db" => add(Layer::Database, 2.0),
            ("alert", _) => add(Layer::App, 1.0),
            ("http" | "automation", _) if key.starts_with("provider:") => {
                add(Layer::App, 2.0 / symptoms);
            }
            ("http" | "automation", _) => {
                add(Layer::App, 2.0);
                if key == "db" {
                    add(Layer::Database, 2.0);
                }
            }
            (_, "missing_outcome" | "silent_source") => {
                add(Layer::Provider, 2.0);
                add(Layer::Integration, 2.0);
            }
            _ => match scope {
                Scope::Sender => {
                    add(Layer::Integration, 3.0);
                    add(Layer::Provider, 1.0);
                }
                Scope::Provider => {
                    add(Layer::Provider, 3.0);
                    add(Layer::Integration, 1.0);
                }
                Scope::Recipient => add(Layer::Provider, 0.25),
                Scope::Service => {
                    add(Layer::Integration, 2.0);
                    add(Layer::Provider, 1.0);
                }
            },
        }
    }
    let total: f64 = score.values().sum();
    let mut v: Vec<(Layer, f64)> = score
        .into_iter()
        .map(|(l, s)| (l, if total > 0.0 { s / total } else { 0.0 }))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn slug(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn minute_stamp(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y%m%d-%H%M").to_string())
        .unwrap_or_else(|| ms.to_string())
}

impl Correlator {
    pub fn new(cfg: CorrelateConfig) -> Correlator {
        Correlator {
            cfg,
            ..Correlator::default()
        }
    }

    /// Restore the working set after a restart (incidents from the store; open ones keep their
    /// ids so findings re-detected from replayed signals attach to them instead of paging anew).
    pub fn restore(&mut self, incidents: Vec<Incident>, timeline_len: impl Fn(&str) -> u32) {
        for i in incidents {
            let seq = 1 + i.evidence.reopen_count;
            self.by_key.insert(i.correlation_key.clone(), i.id.clone());
            let timeline_seq = timeline_len(&i.id);
            self.incidents.insert(
                i.id.clone(),
                Runtime {
                    active: i.evidence.findings.iter().map(|f| f.key.clone()).collect(),
                    incident: i,
                    muted: BTreeSet::new(),
                    timeline_seq,
                    seq,
                },
            );
        }
    }

    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values().map(|r| &r.incident)
    }

    pub fn get(&self, id: &str) -> Option<&Incident> {
        self.incidents.get(id).map(|r| &r.incident)
    }

    fn entry(
        rt: &mut Runtime,
        now_ms: i64,
        kind: &str,
        actor: &str,
        detail: String,
    ) -> TimelineEntry {
        rt.timeline_seq += 1;
        TimelineEntry {
            id: format!("{}-{:04}", rt.incident.id, rt.timeline_seq),
            incident_id: rt.incident.id.clone(),
            at_ms: now_ms,
            kind: kind.into(),
            actor: actor.into(),
            detail,
        }
    }

    /// Apply one tick's active findings.
    pub fn update(&mut self, now_ms: i64, active: &[ActiveFinding]) -> Vec<Change> {
        // Pass 1: base keys; collect what the database findings touch.
        let mut keyed: Vec<(String, &ActiveFinding)> =
            active.iter().map(|a| (base_key(&a.finding), a)).collect();
        // What each cause-side finding touches (routes, tables, statements), by key.
        let mut marks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (k, a) in &keyed {
            if k != "app" && !k.starts_with("alert:") {
                let m = marks.entry(k.clone()).or_default();
                m.extend(a.finding.routes.iter().cloned());
                m.extend(a.finding.tables.iter().cloned());
                m.extend(a.finding.fingerprints.iter().cloned());
            }
        }
        // First tick each finding was seen active (continuously).
        self.first_active
            .retain(|k, _| active.iter().any(|a| &a.finding.key == k));
        for a in active {
            self.first_active
                .entry(a.finding.key.clone())
                .or_insert(now_ms);
        }
        let wait = i64::try_from(self.cfg.app_group_wait_secs).unwrap_or(0) * 1000;
        // Causes that fail the CRM's own requests synchronously (the database; a provider whose
        // API errors, times out or refuses at the gateway), with when they started.
        let mut sync_causes: BTreeMap<String, i64> = BTreeMap::new();
        for (k, a) in &keyed {
            let sync_class = a
                .finding
                .class
                .as_deref()
                .is_some_and(|c| SYNC_CLASSES.contains(&c));
            let sync = a.severity > Severity::Info
                && (k == "db" || (k.starts_with("provider:") && sync_class));
            if sync {
                let t = self
                    .first_active
                    .get(&a.finding.key)
                    .copied()
                    .unwrap_or(now_ms);
                let e = sync_causes.entry(k.clone()).or_insert(t);
                *e = (*e).min(t);
            }
        }
        // Pass 2: application symptoms (HTTP 5xx, automation failures) join a cause: one on
        // whose routes, tables or statements they fail, or a synchronous cause that started
        // together with them (the CRM's 502s while Stripe answers 5xx share no route with the
        // gateway's calls, only the timing). Timing beats a long-standing shared mark.
        for (k, a) in &mut keyed {
            if let Some(sticky) = self.assigned.get(&a.finding.key) {
                // A finding stays with the incident it joined while it is active.
                k.clone_from(sticky);
            } else if k == "app" {
                let f = &a.finding;
                let started = self.first_active.get(&f.key).copied().unwrap_or(now_ms);
                let near = |t: i64| (started - t).abs() <= wait.max(60_000);
                // Candidates: causes sharing a route, table or statement with the symptom, and
                // synchronous causes that did not start after it plus the group wait.
                let mut candidates: BTreeMap<String, (bool, Option<i64>)> = BTreeMap::new();
                for (m, set) in &marks {
                    if shares(&f.routes, set)
                        || shares(&f.tables, set)
                        || shares(&f.fingerprints, set)
                    {
                        candidates.entry(m.clone()).or_default().0 = true;
                    }
                }
                for (c, t) in &sync_causes {
                    if started >= *t - wait {
                        candidates.entry(c.clone()).or_default().1 = Some(*t);
                    }
                }
                // Best first: a shared mark on a cause that started with the symptom, then a
                // synchronous cause that started with it, then any shared mark; the database
                // before providers, then the closest start.
                let joined = candidates
                    .into_iter()
                    .min_by_key(|(c, (shared, t))| {
                        let recent = t.is_some_and(near);
                        (
                            !(*shared && recent),
                            !recent,
                            !*shared,
                            c != "db",
                            t.map_or(i64::MAX, |t| (started - t).abs()),
                        )
                    })
                    .map(|(c, _)| c);
                if let Some(j) = joined {
                    *k = j;
                }
            }
        }
        self.assigned
            .retain(|f, _| keyed.iter().any(|(_, a)| &a.finding.key == f));
        let mut by_key: BTreeMap<String, Vec<&ActiveFinding>> = BTreeMap::new();
        for (k, a) in keyed {
            by_key.entry(k).or_default().push(a);
        }
        let mut changes = Vec::new();
        let mut touched = BTreeSet::new();
        for (key, findings) in by_key {
            let mut opens = findings.iter().any(|a| a.severity > Severity::Info);
            if key == "app" && !self.by_key.contains_key(&key) {
                // Give a cause a chance to show up before paging on a symptom.
                opens &= findings.iter().any(|a| {
                    self.first_active
                        .get(&a.finding.key)
                        .is_some_and(|t| now_ms - t >= wait)
                });
            }
            let existing = self.by_key.get(&key).cloned();
            let id = match existing {
                Some(id) => {
                    let rt = self
                        .incidents
                        .get_mut(&id)
                        .expect("indexed incident exists");
                    let relapse_ok = rt.incident.state != IncidentState::Resolved
                        || rt.incident.resolved_ms.is_some_and(|r| {
                            now_ms - r <= self.cfg.reopen_window_secs as i64 * 1000
                        });
                    let resolved = rt.incident.state == IncidentState::Resolved;
                    if !relapse_ok || (resolved && !opens) {
                        // Informational findings do not reopen a resolved incident.
                        if relapse_ok {
                            continue;
                        }
                        None
                    } else {
                        Some(id)
                    }
                }
                None => None,
            };
            let id = match id {
                Some(id) => id,
                None if opens => {
                    let id = format!("inc-{}-{}", minute_stamp(now_ms), slug(&key));
                    let rt = Runtime {
                        incident: Incident {
                            id: id.clone(),
                            correlation_key: key.clone(),
                            state: IncidentState::Open,
                            severity: Severity::Info,
                            title: String::new(),
                            channel: findings[0].finding.channel.clone(),
                            layer: Layer::App,
                            opened_ms: now_ms,
                            updated_ms: now_ms,
                            resolved_ms: None,
                            evidence: Evidence::default(),
                        },
                        active: BTreeSet::new(),
                        muted: BTreeSet::new(),
                        timeline_seq: 0,
                        seq: 0,
                    };
                    self.incidents.insert(id.clone(), rt);
                    self.by_key.insert(key.clone(), id.clone());
                    id
                }
                None => continue,
            };
            touched.insert(id.clone());
            for a in &findings {
                self.assigned.insert(a.finding.key.clone(), key.clone());
            }
            let rt = self.incidents.get_mut(&id).expect("incident exists");
            changes.extend(Self::apply(rt, &key, &findings, now_ms));
        }
        // Incidents with no active finding left resolve (the detectors already waited out the
        // recovery period).
        for (id, rt) in &mut self.incidents {
            if touched.contains(id) {
                continue;
            }
            rt.muted.clear();
            if rt.incident.state == IncidentState::Resolved {
                rt.active.clear();
                continue;
            }
            rt.active.clear();
            rt.incident.state = IncidentState::Resolved;
            rt.incident.resolved_ms = Some(now_ms);
            rt.incident.updated_ms = now_ms;
            let tl = Self::entry(
                rt,
                now_ms,
                "resolved",
                "vigil",
                "every finding recovered".into(),
            );
            changes.push(Change {
                kind: ChangeKind::Resolved,
                incident: rt.incident.clone(),
                timeline: tl,
                seq: rt.seq,
            });
        }
        // Bound the working set: forget resolved incidents past the reopen window.
        let horizon = now_ms - self.cfg.reopen_window_secs as i64 * 1000;
        let stale: Vec<String> = self
            .incidents
            .iter()
            .filter(|(_, r)| r.incident.resolved_ms.is_some_and(|t| t < horizon))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(rt) = self.incidents.remove(&id)
                && self.by_key.get(&rt.incident.correlation_key) == Some(&id)
            {
                self.by_key.remove(&rt.incident.correlation_key);
            }
        }
        changes
    }

    fn apply(rt: &mut Runtime, key: &str, findings: &[&ActiveFinding], now_ms: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        let keys: BTreeSet<String> = findings.iter().map(|a| a.finding.key.clone()).collect();
        let new_keys: Vec<String> = keys.difference(&rt.active).cloned().collect();
        let severity = findings
            .iter()
            .map(|a| a.severity)
            .max()
            .unwrap_or_default();
        let old_severity = rt.incident.severity;
        let was_new = rt.seq == 0;
        let muted_only = keys.iter().all(|k| rt.muted.contains(k));
        rt.muted.retain(|k| keys.contains(k));

        // Evidence: merge (active findings replace their older versions; cleared ones stay).
        let mut ev: BTreeMap<String, Finding> = rt
            .incident
            .evidence
            .findings
            .drain(..)
            .map(|f| (f.key.clone(), f))
            .collect();
        for a in findings {
            let mut f = a.finding.clone();
            if let Some(old) = ev.get(&f.key) {
                f.first_seen_ms = f.first_seen_ms.min(old.first_seen_ms);
                // Keep the numbers from the peak (most failures) so the evidence still shows
                // the spike while the finding is recovering.
                if old.k > f.k && f.detector == "rate" {
                    let last = f.last_seen_ms.max(old.last_seen_ms);
                    f = old.clone();
                    f.last_seen_ms = last;
                }
            }
            ev.insert(f.key.clone(), f);
        }
        let mut all: Vec<Finding> = ev.into_values().collect();
        all.sort_by(|a, b| {
            a.first_seen_ms
                .cmp(&b.first_seen_ms)
                .then(a.key.cmp(&b.key))
        });
        let scopes: BTreeMap<&str, Scope> = findings
            .iter()
            .map(|a| (a.finding.key.as_str(), a.scope))
            .collect();
        let with_scope: Vec<(Finding, Scope)> = all
            .iter()
            .map(|f| {
                let scope =
                    scopes
                        .get(f.key.as_str())
                        .copied()
                        .unwrap_or(match f.class.as_deref() {
                            Some("recipient") => Scope::Recipient,
                            _ => Scope::Service,
                        });
                (f.clone(), scope)
            })
            .collect();
        let layers = rank_layers(&with_scope, key);
        let mut providers: Vec<String> = all.iter().filter_map(|f| f.provider.clone()).collect();
        providers.sort();
        providers.dedup();
        rt.incident.layer = layers.first().map_or(Layer::App, |l| l.0);
        rt.incident.evidence.layers = layers;
        rt.incident.evidence.providers = providers;
        rt.incident.evidence.findings = all;
        rt.incident.severity = rt.incident.severity.max(severity);
        rt.incident.updated_ms = now_ms;
        let lead = findings
            .iter()
            .max_by(|a, b| {
                a.severity
                    .cmp(&b.severity)
                    .then(b.finding.key.cmp(&a.finding.key))
            })
            .map(|a| &a.finding);
        if let Some(f) = lead
            && (was_new || rt.incident.title.is_empty())
        {
            let what = f.class.clone().unwrap_or_else(|| f.detector.clone());
            let who = f.provider.clone().unwrap_or_else(|| key.to_string());
            rt.incident.title =
                format!("{} {what} ({who}): likely {}", f.channel, rt.incident.layer);
        }
        let why = findings
            .iter()
            .filter(|a| new_keys.contains(&a.finding.key))
            .map(|a| a.finding.summary.clone())
            .collect::<Vec<_>>()
            .join("; ");
        rt.active = keys;

        if was_new {
            rt.seq = 1;
            let tl = Self::entry(rt, now_ms, "opened", "vigil", why);
            changes.push(Change {
                kind: ChangeKind::Opened,
                incident: rt.incident.clone(),
                timeline: tl,
                seq: rt.seq,
            });
        } else if rt.incident.state == IncidentState::Resolved {
            if muted_only {
                return changes;
            }
            rt.seq += 1;
            rt.incident.state = IncidentState::Open;
            rt.incident.resolved_ms = None;
            rt.incident.evidence.reopen_count += 1;
            let tl = Self::entry(rt, now_ms, "reopened", "vigil", format!("relapse: {why}"));
            changes.push(Change {
                kind: ChangeKind::Reopened,
                incident: rt.incident.clone(),
                timeline: tl,
                seq: rt.seq,
            });
        } else if rt.incident.severity > old_severity {
            rt.seq += 1;
            let tl = Self::entry(
                rt,
                now_ms,
                "escalated",
                "vigil",
                format!("now {}: {why}", rt.incident.severity.as_str()),
            );
            changes.push(Change {
                kind: ChangeKind::Escalated,
                incident: rt.incident.clone(),
                timeline: tl,
                seq: rt.seq,
            });
        } else if !new_keys.is_empty() {
            let tl = Self::entry(rt, now_ms, "finding", "vigil", why);
            changes.push(Change {
                kind: ChangeKind::Updated,
                incident: rt.incident.clone(),
                timeline: tl,
                seq: rt.seq,
            });
        }
        changes
    }

    /// A person acknowledges an incident.
    pub fn acknowledge(&mut self, id: &str, actor: &str, now_ms: i64) -> Option<Change> {
        let rt = self.incidents.get_mut(id)?;
        if rt.incident.state != IncidentState::Open {
            return None;
        }
        rt.incident.state = IncidentState::Acknowledged;
        rt.incident.updated_ms = now_ms;
        let tl = Self::entry(rt, now_ms, "acknowledged", actor, String::new());
        Some(Change {
            kind: ChangeKind::Acknowledged,
            incident: rt.incident.clone(),
            timeline: tl,
            seq: rt.seq,
        })
    }

    /// A person resolves an incident; findings still active must clear before they can reopen it.
    pub fn resolve(&mut self, id: &str, actor: &str, now_ms: i64) -> Option<Change> {
        let rt = self.incidents.get_mut(id)?;
        if rt.incident.state == IncidentState::Resolved {
            return None;
        }
        rt.muted = std::mem::take(&mut rt.active);
        rt.incident.state = IncidentState::Resolved;
        rt.incident.resolved_ms = Some(now_ms);
        rt.incident.updated_ms = now_ms;
        let tl = Self::entry(rt, now_ms, "resolved", actor, "resolved by hand".into());
        Some(Change {
            kind: ChangeKind::Resolved,
            incident: rt.incident.clone(),
            timeline: tl,
            seq: rt.seq,
        })
    }

    /// A timeline entry for a note (the note itself is stored by the caller).
    pub fn note_entry(
        &mut self,
        id: &str,
        actor: &str,
        now_ms: i64,
        body: &str,
    ) -> Option<TimelineEntry> {
        let rt = self.incidents.get_mut(id)?;
        let short: String = body.chars().take(200).collect();
        Some(Self::entry(rt, now_ms, "note", actor, short))
    }
}
