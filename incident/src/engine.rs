//! The engine: detector + correlator + rules, turning signals and clock ticks into incident
//! changes and the notifications they cause (routing, silences, escalation). Pure and
//! deterministic; the service persists what it returns, replay prints it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vigil_signal::Signal;

use crate::correlate::{Change, ChangeKind, Correlator};
use crate::detect::Detector;
use crate::model::{Incident, IncidentState, Severity, Silence};
use crate::rules::Rules;

/// What a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    Trigger,
    Acknowledge,
    Resolve,
}

/// One notification to one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub receiver: String,
    /// Unique per page: a restart or a second replica producing it again stores it once.
    pub dedup_key: String,
    pub event: NotifyEvent,
    pub incident_id: String,
    pub seq: u32,
    pub severity: Severity,
    pub title: String,
    pub layer: String,
    pub channel: String,
    pub at_ms: i64,
    /// Why now: the findings' explanations (k of n, baseline, windows, top codes).
    pub why: Vec<String>,
    /// Escalation because nobody acknowledged in time.
    #[serde(default)]
    pub escalation: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct Engine {
    rules: Rules,
    detector: Detector,
    correlator: Correlator,
    silences: Vec<Silence>,
    /// Incidents whose trigger a silence held back: id -> seq.
    held: BTreeMap<String, u32>,
    escalated: BTreeSet<String>,
}

fn why(incident: &Incident) -> Vec<String> {
    incident
        .evidence
        .findings
        .iter()
        .map(|f| {
            let codes = f
                .top_codes
                .iter()
                .map(|(c, n)| format!("{c}x{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            if codes.is_empty() {
                f.summary.clone()
            } else {
                format!("{} [top codes: {codes}]", f.summary)
            }
        })
        .collect()
}

impl Engine {
    pub fn new(rules: Rules) -> Engine {
        let mut detector = Detector::new(rules.detect.clone());
        detector.set_overrides(
            rules
                .overrides
                .iter()
                .map(|o| (o.channel.clone(), o.detect.clone()))
                .collect(),
        );
        Engine {
            correlator: Correlator::new(rules.correlate.clone()),
            detector,
            rules,
            silences: Vec::new(),
            held: BTreeMap::new(),
            escalated: BTreeSet::new(),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Swap in reloaded rules; learned baselines and incidents are kept.
    pub fn set_rules(&mut self, rules: Rules) {
        self.detector.set_config(rules.detect.clone());
        self.detector.set_overrides(
            rules
                .overrides
                .iter()
                .map(|o| (o.channel.clone(), o.detect.clone()))
                .collect(),
        );
        self.rules = rules;
    }

    /// Silences created through the API.
    pub fn set_silences(&mut self, silences: Vec<Silence>) {
        self.silences = silences;
    }

    /// The detector (read-only: metrics read its pending outcomes).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    pub fn correlator(&self) -> &Correlator {
        &self.correlator
    }

    pub fn correlator_mut(&mut self) -> &mut Correlator {
        &mut self.correlator
    }

    pub fn observe(&mut self, s: &Signal) {
        self.detector.observe(s);
    }

    fn muted(&self, incident: &Incident, now_ms: i64) -> bool {
        self.rules.silenced(incident, now_ms)
            || self.silences.iter().any(|s| s.mutes(incident, now_ms))
    }

    /// Advance the clock: changes and the notifications they cause.
    pub fn tick(&mut self, now_ms: i64) -> (Vec<Change>, Vec<Notification>) {
        let mut active = self.detector.tick(now_ms);
        for a in &mut active {
            if let Some(r) = self.rules.severities.iter().find(|r| r.matches(&a.finding)) {
                a.severity = r.severity;
            }
        }
        let changes = self.correlator.update(now_ms, &active);
        let mut out = Vec::new();
        for c in &changes {
            out.extend(self.notifications(c, now_ms));
        }
        // A silence ended: page what is still failing.
        let held: Vec<(String, u32)> = self.held.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (id, seq) in held {
            let Some(i) = self.correlator.get(&id).cloned() else {
                self.held.remove(&id);
                continue;
            };
            let failing = active.iter().any(|a| {
                a.failing_now && i.evidence.findings.iter().any(|f| f.key == a.finding.key)
            });
            if i.state == IncidentState::Resolved {
                self.held.remove(&id);
            } else if !self.muted(&i, now_ms) && failing {
                self.held.remove(&id);
                out.extend(self.route(&i, NotifyEvent::Trigger, seq, now_ms, false));
            }
        }
        // Escalation: unacknowledged past a route's deadline.
        let open: Vec<Incident> = self
            .correlator
            .incidents()
            .filter(|i| i.state == IncidentState::Open)
            .cloned()
            .collect();
        for i in open {
            if self.muted(&i, now_ms) {
                continue;
            }
            for r in self.rules.routes_for(&i) {
                let Some(after) = r.escalate_after_secs else {
                    continue;
                };
                if now_ms - i.opened_ms < i64::try_from(after).unwrap_or(i64::MAX / 1000) * 1000 {
                    continue;
                }
                for name in &r.escalate_to {
                    let key = format!("{}:escalate:{}:{name}", i.id, i.evidence.reopen_count + 1);
                    if self.escalated.insert(key.clone()) {
                        let seq = i.evidence.reopen_count + 1;
                        out.push(self.make(
                            &i,
                            name,
                            key,
                            (NotifyEvent::Trigger, seq),
                            now_ms,
                            true,
                        ));
                    }
                }
            }
        }
        (changes, out)
    }

    fn make(
        &self,
        i: &Incident,
        receiver: &str,
        dedup_key: String,
        (event, seq): (NotifyEvent, u32),
        now_ms: i64,
        escalation: bool,
    ) -> Notification {
        Notification {
            receiver: receiver.to_string(),
            dedup_key,
            event,
            incident_id: i.id.clone(),
            seq,
            severity: i.severity,
            title: i.title.clone(),
            layer: i.layer.as_str().to_string(),
            channel: i.channel.clone(),
            at_ms: now_ms,
            why: why(i),
            escalation,
        }
    }

    fn route(
        &self,
        i: &Incident,
        event: NotifyEvent,
        seq: u32,
        now_ms: i64,
        escalation: bool,
    ) -> Vec<Notification> {
        let tag = match event {
            NotifyEvent::Trigger => "trigger",
            NotifyEvent::Acknowledge => "ack",
            NotifyEvent::Resolve => "resolve",
        };
        let mut names: Vec<&String> = Vec::new();
        for r in self.rules.routes_for(i) {
            for n in &r.receivers {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        names
            .into_iter()
            .map(|name| {
                let key = format!("{}:{tag}:{seq}:{name}", i.id);
                self.make(i, name, key, (event, seq), now_ms, escalation)
            })
            .collect()
    }

    /// Notifications one change causes.
    pub fn notifications(&mut self, c: &Change, now_ms: i64) -> Vec<Notification> {
        let i = &c.incident;
        match c.kind {
            ChangeKind::Opened | ChangeKind::Reopened | ChangeKind::Escalated => {
                if self.muted(i, now_ms) {
                    if !self.rules.routes_for(i).is_empty() {
                        self.held.insert(i.id.clone(), c.seq);
                    }
                    return Vec::new();
                }
                self.route(i, NotifyEvent::Trigger, c.seq, now_ms, false)
            }
            ChangeKind::Acknowledged => {
                self.route(i, NotifyEvent::Acknowledge, c.seq, now_ms, false)
            }
            ChangeKind::Resolved => {
                if self.held.remove(&i.id).is_some() {
                    return Vec::new();
                }
                self.route(i, NotifyEvent::Resolve, c.seq, now_ms, false)
            }
            ChangeKind::Updated => Vec::new(),
        }
    }

    /// A person acknowledges.
    pub fn acknowledge(
        &mut self,
        id: &str,
        actor: &str,
        now_ms: i64,
    ) -> Option<(Change, Vec<Notification>)> {
        let c = self.correlator.acknowledge(id, actor, now_ms)?;
        let n = self.notifications(&c, now_ms);
        Some((c, n))
    }

    /// A person resolves.
    pub fn resolve(
        &mut self,
        id: &str,
        actor: &str,
        now_ms: i64,
    ) -> Option<(Change, Vec<Notification>)> {
        let c = self.correlator.resolve(id, actor, now_ms)?;
        let n = self.notifications(&c, now_ms);
        Some((c, n))
    }
}
