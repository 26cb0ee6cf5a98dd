//! `vigil incident replay SIGNALS.jsonl`: detection and correlation over recorded signals with a
//! virtual clock (one tick per minute boundary), deterministic, reporting the incidents and the
//! pages the rules would have produced.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::BufRead;

use chrono::{TimeZone, Utc};
use vigil_signal::Signal;

use crate::correlate::ChangeKind;
use crate::detect::MINUTE_MS;
use crate::engine::{Engine, Notification, NotifyEvent};
use crate::model::Incident;
use crate::rules::Rules;

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading signals: {0}")]
    Read(#[from] std::io::Error),
}

/// What a replay produced.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Distinct signals replayed.
    pub signals: u64,
    /// Lines whose id repeated an earlier one (skipped, as the store would).
    pub duplicates: u64,
    /// Unreadable lines: (line number, reason).
    pub invalid: Vec<(usize, String)>,
    /// Every incident, in opening order, as it stood at the end.
    pub incidents: Vec<Incident>,
    /// Trigger notifications (pages), in order.
    pub pages: Vec<Notification>,
    /// All notifications (triggers, acknowledgements, resolutions).
    pub notifications: Vec<Notification>,
    /// (time, incident id, change) in order.
    pub changes: Vec<(i64, String, ChangeKind)>,
}

fn ts(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%dT%H:%MZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Replay JSONL signals through the rules.
pub fn replay<R: BufRead>(reader: R, rules: &Rules) -> Result<ReplayReport, ReplayError> {
    let mut report = ReplayReport::default();
    let mut seen = HashSet::new();
    let mut signals = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match Signal::from_json(line.as_bytes()) {
            Ok(s) => {
                if seen.insert(s.id.clone()) {
                    signals.push(s);
                } else {
                    report.duplicates += 1;
                }
            }
            Err(e) => report.invalid.push((i + 1, e.to_string())),
        }
    }
    // Stable: equal times keep file order.
    signals.sort_by_key(|s| s.time.timestamp_millis());
    report.signals = signals.len() as u64;
    let mut engine = Engine::new(rules.clone());
    let Some(first) = signals.first() else {
        return Ok(report);
    };
    let mut minute = first.time.timestamp_millis().div_euclid(MINUTE_MS);
    let mut all: BTreeMap<String, Incident> = BTreeMap::new();
    let mut record = |engine: &mut Engine, now_ms: i64, report: &mut ReplayReport| {
        let (changes, notes) = engine.tick(now_ms);
        for c in changes {
            report.changes.push((now_ms, c.incident.id.clone(), c.kind));
            all.insert(c.incident.id.clone(), c.incident);
        }
        for n in notes {
            if n.event == NotifyEvent::Trigger {
                report.pages.push(n.clone());
            }
            report.notifications.push(n);
        }
    };
    for s in &signals {
        let m = s.time.timestamp_millis().div_euclid(MINUTE_MS);
        while m > minute {
            minute += 1;
            record(&mut engine, minute * MINUTE_MS, &mut report);
        }
        engine.observe(s);
    }
    minute += 1;
    record(&mut engine, minute * MINUTE_MS, &mut report);
    for i in engine.correlator().incidents() {
        all.insert(i.id.clone(), i.clone());
    }
    let mut incidents: Vec<Incident> = all.into_values().collect();
    incidents.sort_by(|a, b| a.opened_ms.cmp(&b.opened_ms).then(a.id.cmp(&b.id)));
    report.incidents = incidents;
    Ok(report)
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replayed {} signals ({} duplicates skipped, {} unreadable lines)",
            self.signals,
            self.duplicates,
            self.invalid.len()
        )?;
        for (line, why) in &self.invalid {
            writeln!(f, "  line {line}: {why}")?;
        }
        writeln!(f, "\n{} incident(s)", self.incidents.len())?;
        for i in &self.incidents {
            let layers = i
                .evidence
                .layers
                .iter()
                .map(|(l, s)| format!("{l} {:.0}%", s * 100.0))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                f,
                "- {} [{} {}] {}\n  opened {}{}; likely layer: {layers}",
                i.id,
                i.severity.as_str(),
                i.state,
                i.title,
                ts(i.opened_ms),
                i.resolved_ms
                    .map(|r| format!(", resolved {}", ts(r)))
                    .unwrap_or_default(),
            )?;
            for e in &i.evidence.findings {
                writeln!(f, "    * {}", e.summary)?;
            }
        }
        writeln!(f, "\n{} page(s)", self.pages.len())?;
        for p in &self.pages {
            writeln!(
                f,
                "- {} -> {}: {} ({}){}",
                ts(p.at_ms),
                p.receiver,
                p.title,
                p.incident_id,
                if p.escalation { " [escalation]" } else { "" }
            )?;
            for w in &p.why {
                writeln!(f, "    why: {w}")?;
            }
        }
        Ok(())
    }
}
