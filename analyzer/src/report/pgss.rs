//! `pg_stat_statements` snapshots to per-period rows: the counters are cumulative since the
//! extension's last reset, so a period's numbers are the sum of the increases between
//! consecutive snapshots of the same database (a counter that went down was reset: its new
//! value is the increase). The baseline is the last snapshot at or before the period's start
//! (or the first inside the period when there is none).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{Period, PgssRow};

/// Where the report's `pg_stat_statements` rows come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PgssSource {
    /// None were used.
    #[default]
    None,
    /// Deltas between the periodic snapshots the pg proxy took (limited to the period).
    Snapshots { snapshots: usize },
    /// Read once when the report was made (no snapshots stored): cumulative since the last
    /// reset, not limited to the period.
    AtReportTime,
}

/// The sentence the rendered report uses for `source` (plain text, no markup).
pub fn describe(source: PgssSource) -> &'static str {
    match source {
        PgssSource::Snapshots { .. } => {
            "the increase over the period, from the periodic snapshots the pg proxy stored."
        }
        PgssSource::AtReportTime | PgssSource::None => {
            "no snapshots are stored for the period, so these were read when the report was made: cumulative since the extension's last reset, not limited to the period."
        }
    }
}

/// One row of a snapshot (cumulative counters).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PgssCounter {
    /// Identity within the database (`queryid` and role).
    pub key: String,
    pub query: String,
    pub calls: u64,
    pub total_seconds: f64,
    pub rows: u64,
}

/// One stored snapshot of one database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PgssSnapshot {
    pub database: String,
    pub taken_ms: i64,
    pub entries: Vec<PgssCounter>,
}

/// The period's rows from `snapshots` (any order, any databases) and how many snapshots
/// contributed (0 when none bound the period).
pub fn deltas(snapshots: &[PgssSnapshot], period: Period) -> (Vec<PgssRow>, usize) {
    let mut by_db: BTreeMap<&str, Vec<&PgssSnapshot>> = BTreeMap::new();
    for s in snapshots {
        by_db.entry(&s.database).or_default().push(s);
    }
    let mut out: BTreeMap<(String, String), PgssRow> = BTreeMap::new();
    let mut used = 0;
    for (db, mut list) in by_db {
        list.sort_by_key(|s| s.taken_ms);
        let base = list
            .iter()
            .rposition(|s| s.taken_ms <= period.from_ms)
            .or_else(|| list.iter().position(|s| s.taken_ms < period.to_ms));
        let Some(base) = base else { continue };
        let in_period: Vec<&PgssSnapshot> = list[base..]
            .iter()
            .copied()
            .take_while(|s| s.taken_ms < period.to_ms)
            .collect();
        if in_period.len() < 2 {
            continue;
        }
        used += in_period.len();
        // The last counter seen of each key: a row that left the capped top list for a while
        // and came back is measured from where it was, not counted whole again.
        let mut last: HashMap<&str, &PgssCounter> = in_period[0]
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e))
            .collect();
        for snap in &in_period[1..] {
            for cur in &snap.entries {
                let (calls, secs, rows) = match last.get(cur.key.as_str()) {
                    Some(p) if cur.calls >= p.calls => (
                        cur.calls - p.calls,
                        (cur.total_seconds - p.total_seconds).max(0.0),
                        cur.rows.saturating_sub(p.rows),
                    ),
                    // New since the baseline, or reset in between.
                    _ => (cur.calls, cur.total_seconds, cur.rows),
                };
                if calls == 0 {
                    continue;
                }
                let r = out
                    .entry((db.to_string(), cur.key.clone()))
                    .or_insert_with(|| PgssRow {
                        database: db.to_string(),
                        query: cur.query.clone(),
                        ..Default::default()
                    });
                r.calls += calls;
                r.total_seconds += secs;
                r.rows += rows;
            }
            for cur in &snap.entries {
                last.insert(cur.key.as_str(), cur);
            }
        }
    }
    (out.into_values().collect(), used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(t: i64, rows: &[(&str, u64, f64)]) -> PgssSnapshot {
        PgssSnapshot {
            database: "crm".into(),
            taken_ms: t,
            entries: rows
                .iter()
                .map(|(k, c, s)| PgssCounter {
                    key: (*k).into(),
                    query: format!("SELECT {k}"),
                    calls: *c,
                    total_seconds: *s,
                    rows: *c,
                })
                .collect(),
        }
    }

    #[test]
    fn period_deltas_with_a_reset_and_a_new_row() {
        let snaps = vec![
            snap(0, &[("a", 100, 10.0)]),
            snap(1000, &[("a", 110, 11.0)]),
            // Reset between 1000 and 2000: a restarts at 5; b is new.
            snap(2000, &[("a", 5, 0.5), ("b", 2, 0.2)]),
            snap(3000, &[("a", 7, 0.7), ("b", 2, 0.2)]),
            // After the period.
            snap(9000, &[("a", 900, 90.0)]),
        ];
        let (rows, used) = deltas(
            &snaps,
            Period {
                from_ms: 500,
                to_ms: 5000,
            },
        );
        assert_eq!(used, 4);
        let a = rows.iter().find(|r| r.query == "SELECT a").unwrap();
        // 110-100 + 5 (reset) + 2
        assert_eq!(a.calls, 17);
        assert!((a.total_seconds - 1.7).abs() < 1e-9);
        let b = rows.iter().find(|r| r.query == "SELECT b").unwrap();
        assert_eq!(b.calls, 2);
        // A row missing from one snapshot (out of the capped top list) is measured from the
        // last time it was seen, not counted whole again.
        let gap = vec![
            snap(0, &[("a", 100, 10.0), ("c", 40, 4.0)]),
            snap(1000, &[("a", 101, 10.1)]),
            snap(2000, &[("a", 102, 10.2), ("c", 43, 4.3)]),
        ];
        let (rows, _) = deltas(
            &gap,
            Period {
                from_ms: 0,
                to_ms: 5000,
            },
        );
        let c = rows.iter().find(|r| r.query == "SELECT c").unwrap();
        assert_eq!(c.calls, 3);
        // One snapshot alone gives no delta.
        let (rows, used) = deltas(
            &snaps[..1],
            Period {
                from_ms: 0,
                to_ms: 10,
            },
        );
        assert!(rows.is_empty() && used == 0);
    }
}
