//! Heavy-query reports, a pure library: stored per-fingerprint buckets for a period (and a
//! comparison period), captured plans and `pg_stat_statements` rows in; a [`Report`] out; then
//! rendered as one self-contained HTML file, Markdown or JSON.
//!
//! - this file: the input ([`ReportInput`], [`Bucket`], [`PgssRow`]), the model ([`Report`]) and
//!   [`build`].
//! - [`plan`]: constant stripping for plans and [`plan::advise`] (index, sort, nested-loop and
//!   statistics advice from `EXPLAIN (FORMAT JSON)`).
//! - [`html`]: inline CSS and SVG (sparklines, bars), no JavaScript, readable on a phone.
//! - [`markdown`]: tables for pasting into a document; JSON is `serde_json` of [`Report`].
//! - [`pgss`]: per-period rows from stored `pg_stat_statements` snapshots (deltas, resets).
//!
//! Nothing here sees parameter values: buckets hold normalized text, plans are stripped of
//! literals before they are stored, and [`build`] strips them again.

pub mod html;
pub mod markdown;
pub mod pgss;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use pgss::PgssSource;
pub use plan::{
    Advice, AdviceKind, AdviceOptions, HypoCheck, advise, sanitize_plan, strip_literals,
};

/// A half-open time range, epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Period {
    pub fn len_ms(&self) -> i64 {
        (self.to_ms - self.from_ms).max(1)
    }
}

/// One stored statistics bucket (a minute or an hour) of one fingerprint, database and role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub fingerprint: String,
    pub query: String,
    pub database: String,
    pub role: String,
    pub bucket_ms: i64,
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_seconds: f64,
    pub max_seconds: f64,
    pub p95_seconds: f64,
    pub pool_wait_seconds: f64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bypasses: u64,
    pub cache_saved_seconds: f64,
    pub tags: BTreeMap<String, String>,
    pub kind: Option<String>,
    pub tables: Vec<String>,
    /// A captured plan (`EXPLAIN (FORMAT JSON)`, literals stripped), when there is one.
    pub plan: Option<String>,
}

/// One `pg_stat_statements` row (cumulative since its last reset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PgssRow {
    pub database: String,
    pub query: String,
    pub calls: u64,
    pub total_seconds: f64,
    pub rows: u64,
}

/// Everything [`build`] needs.
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    pub period: Option<Period>,
    pub compare: Option<Period>,
    pub current: Vec<Bucket>,
    pub previous: Vec<Bucket>,
    pub pgss: Vec<PgssRow>,
    /// `pg_stat_statements` rows of the comparison period (stored snapshots only).
    pub pgss_previous: Vec<PgssRow>,
    /// Where `pgss` comes from (the report says it).
    pub pgss_source: PgssSource,
    pub generated_at_ms: i64,
}

/// Knobs of [`build`].
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Rows in each "top" list.
    pub top: usize,
    /// A statement regressed when its p95 or total time grew by at least this factor.
    pub regression_factor: f64,
    /// ... and by at least this many seconds of total time (ignores noise).
    pub regression_min_seconds: f64,
    /// Points of each sparkline.
    pub trend_points: usize,
    /// A cache candidate needs at least this many calls in the period.
    pub cache_min_calls: u64,
    pub advice: AdviceOptions,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            top: 10,
            regression_factor: 2.0,
            regression_min_seconds: 0.05,
            trend_points: 24,
            cache_min_calls: 100,
            advice: AdviceOptions::default(),
        }
    }
}

/// Where a statement's numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Vigil's pg proxy (per-minute history).
    Proxy,
    /// Only `pg_stat_statements` saw it (cron jobs, other clients): deltas over the period from
    /// stored snapshots, or cumulative numbers when read at report time (see [`PgssSource`]).
    OutsideProxy,
}

/// The same statement in the comparison period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Previous {
    pub calls: u64,
    pub total_seconds: f64,
    pub p95_seconds: f64,
}

/// One statement (fingerprint) over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub fingerprint: String,
    pub query: String,
    pub origin: Origin,
    pub databases: Vec<String>,
    pub kind: Option<String>,
    pub tables: Vec<String>,
    /// sqlcommenter routes (and controllers/actions as `controller#action`) that issue it.
    pub routes: Vec<String>,
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_seconds: f64,
    pub mean_seconds: f64,
    /// Calls-weighted 95th percentile of the buckets' p95 values.
    pub p95_seconds: f64,
    pub max_seconds: f64,
    pub pool_wait_seconds: f64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bypasses: u64,
    pub cache_saved_seconds: f64,
    /// Share of all statements' database time in the period, 0..1.
    pub share: f64,
    /// Total seconds per equal slice of the period (the sparkline).
    pub trend: Vec<f64>,
    pub previous: Option<Previous>,
    /// Not seen in the comparison period.
    pub is_new: bool,
    /// The latest captured plan (JSON, literals stripped).
    pub plan: Option<serde_json::Value>,
    pub advice: Vec<Advice>,
}

/// What regressed and by how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    pub fingerprint: String,
    /// `p95` or `total_time`.
    pub metric: String,
    /// `compare` (against the comparison period) or `within_period` (second half vs first).
    pub scope: String,
    pub before: f64,
    pub after: f64,
    pub factor: f64,
}

/// A statement the cache could serve but does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheCandidate {
    pub fingerprint: String,
    pub calls: u64,
    pub total_seconds: f64,
    /// Database time a cache would save at most (every call served from the cache).
    pub saved_up_to_seconds: f64,
}

/// Cache effectiveness over the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheSummary {
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub hit_rate: Option<f64>,
    pub saved_seconds: f64,
    pub candidates: Vec<CacheCandidate>,
}

/// Period totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub statements: usize,
    pub calls: u64,
    pub errors: u64,
    pub total_seconds: f64,
    pub pool_wait_seconds: f64,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub generated_at_ms: i64,
    pub period: Period,
    pub compare: Option<Period>,
    pub totals: Totals,
    pub compare_totals: Option<Totals>,
    /// Every statement, heaviest total time first.
    pub statements: Vec<Statement>,
    /// Fingerprints of the top lists.
    pub top_total_time: Vec<String>,
    pub top_p95: Vec<String>,
    pub top_calls: Vec<String>,
    pub top_rows: Vec<String>,
    pub top_errors: Vec<String>,
    pub new_statements: Vec<String>,
    pub regressions: Vec<Regression>,
    /// Statements that waited longest for a pooled connection.
    pub top_pool_wait: Vec<String>,
    /// Heaviest statements only `pg_stat_statements` saw (see `pgss_source` for their period).
    pub outside_proxy: Vec<String>,
    /// Where the `pg_stat_statements` numbers come from.
    #[serde(default)]
    pub pgss_source: PgssSource,
    pub cache: CacheSummary,
}

impl Report {
    pub fn statement(&self, fingerprint: &str) -> Option<&Statement> {
        self.statements
            .iter()
            .find(|s| s.fingerprint == fingerprint)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}

#[derive(Default)]
struct Acc {
    query: String,
    databases: BTreeSet<String>,
    kind: Option<String>,
    tables: BTreeSet<String>,
    routes: BTreeSet<String>,
    calls: u64,
    errors: u64,
    rows: u64,
    total: f64,
    max: f64,
    pool_wait: f64,
    hits: u64,
    misses: u64,
    bypasses: u64,
    saved: f64,
    /// (p95, calls) per bucket.
    p95s: Vec<(f64, u64)>,
    plan: Option<(i64, String)>,
    buckets: Vec<(i64, f64, f64, u64)>,
}

fn weighted_p95(v: &mut [(f64, u64)]) -> f64 {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = v.iter().map(|x| x.1.max(1)).sum();
    let target = (total as f64 * 0.95).ceil() as u64;
    let mut seen = 0;
    for (p, n) in v.iter() {
        seen += n.max(&1);
        if seen >= target {
            return *p;
        }
    }
    v.last().map_or(0.0, |x| x.0)
}

fn accumulate(buckets: &[Bucket]) -> BTreeMap<String, Acc> {
    let mut m: BTreeMap<String, Acc> = BTreeMap::new();
    for b in buckets {
        let a = m.entry(b.fingerprint.clone()).or_default();
        if a.query.is_empty() {
            a.query = strip_literals_if_any(&b.query);
        }
        a.databases.insert(b.database.clone());
        if a.kind.is_none() {
            a.kind.clone_from(&b.kind);
        }
        a.tables.extend(b.tables.iter().cloned());
        if let Some(r) = b.tags.get("route") {
            a.routes.insert(r.clone());
        }
        match (b.tags.get("controller"), b.tags.get("action")) {
            (Some(c), Some(x)) => {
                a.routes.insert(format!("{c}#{x}"));
            }
            (Some(c), None) => {
                a.routes.insert(c.clone());
            }
            _ => {}
        }
        a.calls += b.calls;
        a.errors += b.errors;
        a.rows += b.rows;
        a.total += b.total_seconds;
        a.max = a.max.max(b.max_seconds);
        a.pool_wait += b.pool_wait_seconds;
        a.hits += b.cache_hits;
        a.misses += b.cache_misses;
        a.bypasses += b.cache_bypasses;
        a.saved += b.cache_saved_seconds;
        if b.calls > 0 {
            a.p95s.push((b.p95_seconds, b.calls));
        }
        if let Some(p) = &b.plan
            && a.plan.as_ref().is_none_or(|(t, _)| *t <= b.bucket_ms)
        {
            a.plan = Some((b.bucket_ms, p.clone()));
        }
        a.buckets
            .push((b.bucket_ms, b.total_seconds, b.p95_seconds, b.calls));
    }
    m
}

/// Normalized text should hold no literals; strip any that slipped in (defence in depth).
fn strip_literals_if_any(q: &str) -> String {
    if q.contains('\'') {
        strip_literals(q)
    } else {
        q.to_string()
    }
}

fn totals(acc: &BTreeMap<String, Acc>) -> Totals {
    Totals {
        statements: acc.len(),
        calls: acc.values().map(|a| a.calls).sum(),
        errors: acc.values().map(|a| a.errors).sum(),
        total_seconds: acc.values().map(|a| a.total).sum(),
        pool_wait_seconds: acc.values().map(|a| a.pool_wait).sum(),
    }
}

fn top_by(statements: &[Statement], n: usize, key: impl Fn(&Statement) -> f64) -> Vec<String> {
    let mut v: Vec<&Statement> = statements.iter().filter(|s| key(s) > 0.0).collect();
    v.sort_by(|a, b| {
        key(b)
            .total_cmp(&key(a))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    v.into_iter()
        .take(n)
        .map(|s| s.fingerprint.clone())
        .collect()
}

/// Build the report. The period defaults to the span of the current buckets.
pub fn build(input: &ReportInput, opts: &ReportOptions) -> Report {
    let period = input.period.unwrap_or_else(|| {
        let from = input.current.iter().map(|b| b.bucket_ms).min().unwrap_or(0);
        let to = input.current.iter().map(|b| b.bucket_ms).max().unwrap_or(0) + 60_000;
        Period {
            from_ms: from,
            to_ms: to,
        }
    });
    let cur = accumulate(&input.current);
    let prev = accumulate(&input.previous);
    let tot = totals(&cur);
    let compare_totals = input.compare.map(|_| totals(&prev));
    let points = opts.trend_points.max(2);
    let slot = |t: i64| -> usize {
        let i = ((t - period.from_ms) as f64 / period.len_ms() as f64 * points as f64).floor();
        (i.max(0.0) as usize).min(points - 1)
    };
    let mid = period.from_ms + period.len_ms() / 2;
    let mut statements = Vec::new();
    let mut regressions = Vec::new();
    for (fp, mut a) in cur {
        let mut trend = vec![0.0; points];
        for (t, total, _, _) in &a.buckets {
            trend[slot(*t)] += total;
        }
        let p95 = weighted_p95(&mut a.p95s);
        let previous = prev.get(&fp).map(|p| Previous {
            calls: p.calls,
            total_seconds: p.total,
            p95_seconds: weighted_p95(&mut p.p95s.clone()),
        });
        if let Some(p) = &previous {
            push_regression(
                &mut regressions,
                opts,
                &fp,
                "compare",
                p.p95_seconds,
                p95,
                p.total_seconds,
                a.total,
            );
        }
        // Within the period: second half against the first.
        let (mut h1, mut h2) = (Vec::new(), Vec::new());
        let (mut t1, mut t2) = (0.0, 0.0);
        for (t, total, p, n) in &a.buckets {
            if *n == 0 {
                continue;
            }
            if *t < mid {
                h1.push((*p, *n));
                t1 += total;
            } else {
                h2.push((*p, *n));
                t2 += total;
            }
        }
        if !h1.is_empty() && !h2.is_empty() {
            let (p1, p2) = (weighted_p95(&mut h1), weighted_p95(&mut h2));
            push_regression(&mut regressions, opts, &fp, "within_period", p1, p2, t1, t2);
        }
        let plan_text = a
            .plan
            .as_ref()
            .map(|(_, p)| sanitize_plan(p).unwrap_or_default());
        let advice = plan_text
            .as_deref()
            .map(|p| advise(p, &opts.advice))
            .unwrap_or_default();
        let plan = plan_text.and_then(|p| serde_json::from_str(&p).ok());
        statements.push(Statement {
            is_new: input.compare.is_some() && previous.is_none(),
            fingerprint: fp,
            query: a.query,
            origin: Origin::Proxy,
            databases: a.databases.into_iter().collect(),
            kind: a.kind,
            tables: a.tables.into_iter().collect(),
            routes: a.routes.into_iter().collect(),
            calls: a.calls,
            errors: a.errors,
            rows: a.rows,
            mean_seconds: if a.calls > 0 {
                a.total / a.calls as f64
            } else {
                0.0
            },
            total_seconds: a.total,
            p95_seconds: p95,
            max_seconds: a.max,
            pool_wait_seconds: a.pool_wait,
            cache_hits: a.hits,
            cache_misses: a.misses,
            cache_bypasses: a.bypasses,
            cache_saved_seconds: a.saved,
            share: if tot.total_seconds > 0.0 {
                a.total / tot.total_seconds
            } else {
                0.0
            },
            trend,
            previous,
            plan,
            advice,
        });
    }
    merge_pgss(&mut statements, &input.pgss, &input.pgss_previous);
    statements.sort_by(|a, b| {
        b.total_seconds
            .total_cmp(&a.total_seconds)
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    let n = opts.top;
    let proxy: Vec<Statement> = statements
        .iter()
        .filter(|s| s.origin == Origin::Proxy)
        .cloned()
        .collect();
    let cache = cache_summary(&proxy, opts);
    Report {
        generated_at_ms: input.generated_at_ms,
        period,
        compare: input.compare,
        compare_totals,
        top_total_time: top_by(&proxy, n, |s| s.total_seconds),
        top_p95: top_by(&proxy, n, |s| s.p95_seconds),
        top_calls: top_by(&proxy, n, |s| s.calls as f64),
        top_rows: top_by(&proxy, n, |s| s.rows as f64),
        top_errors: top_by(&proxy, n, |s| s.errors as f64),
        top_pool_wait: top_by(&proxy, n, |s| s.pool_wait_seconds),
        pgss_source: input.pgss_source,
        outside_proxy: {
            let outside: Vec<Statement> = statements
                .iter()
                .filter(|s| s.origin == Origin::OutsideProxy)
                .cloned()
                .collect();
            top_by(&outside, n, |s| s.total_seconds)
        },
        new_statements: statements
            .iter()
            .filter(|s| s.is_new)
            .map(|s| s.fingerprint.clone())
            .collect(),
        regressions,
        totals: tot,
        statements,
        cache,
    }
}

#[allow(clippy::too_many_arguments)]
fn push_regression(
    out: &mut Vec<Regression>,
    opts: &ReportOptions,
    fp: &str,
    scope: &str,
    p95_before: f64,
    p95_after: f64,
    total_before: f64,
    total_after: f64,
) {
    let grew = |b: f64, a: f64| b > 0.0 && a >= b * opts.regression_factor;
    let enough = total_after - total_before >= opts.regression_min_seconds
        || (scope == "within_period" && total_after >= opts.regression_min_seconds);
    if grew(p95_before, p95_after) && enough {
        out.push(Regression {
            fingerprint: fp.to_string(),
            metric: "p95".into(),
            scope: scope.into(),
            before: p95_before,
            after: p95_after,
            factor: p95_after / p95_before,
        });
    } else if scope == "compare" && grew(total_before, total_after) && enough {
        out.push(Regression {
            fingerprint: fp.to_string(),
            metric: "total_time".into(),
            scope: scope.into(),
            before: total_before,
            after: total_after,
            factor: total_after / total_before,
        });
    }
}

/// Add `pg_stat_statements` rows: a row whose normalized text fingerprints like a statement the
/// proxy saw is dropped (the proxy's history is finer); the others become `outside_proxy`
/// statements (period deltas from snapshots, or cumulative numbers read at report time), with
/// their numbers in the comparison period when `previous` has them.
fn merge_pgss(statements: &mut Vec<Statement>, rows: &[PgssRow], previous: &[PgssRow]) {
    let mut outside: BTreeMap<String, Statement> = BTreeMap::new();
    // pg_stat_statements shows constants as `$n`, like Vigil's normalized text: compare texts
    // (fingerprints differ between a constant and a parameter, as queryids do).
    let norm = |q: &str| crate::fingerprint(q).normalized;
    let known: BTreeSet<String> = statements.iter().map(|s| norm(&s.query)).collect();
    for r in rows {
        let f = crate::fingerprint(&r.query);
        if known.contains(&f.normalized) {
            continue;
        }
        let fp = f.hex();
        let e = outside.entry(fp.clone()).or_insert_with(|| Statement {
            fingerprint: fp,
            query: strip_literals_if_any(&f.normalized),
            origin: Origin::OutsideProxy,
            databases: vec![],
            kind: None,
            tables: vec![],
            routes: vec![],
            calls: 0,
            errors: 0,
            rows: 0,
            total_seconds: 0.0,
            mean_seconds: 0.0,
            p95_seconds: 0.0,
            max_seconds: 0.0,
            pool_wait_seconds: 0.0,
            cache_hits: 0,
            cache_misses: 0,
            cache_bypasses: 0,
            cache_saved_seconds: 0.0,
            share: 0.0,
            trend: vec![],
            previous: None,
            is_new: false,
            plan: None,
            advice: vec![],
        });
        if !e.databases.contains(&r.database) {
            e.databases.push(r.database.clone());
        }
        e.calls += r.calls;
        e.rows += r.rows;
        e.total_seconds += r.total_seconds;
    }
    let mut before: BTreeMap<String, Previous> = BTreeMap::new();
    for r in previous {
        let p = before
            .entry(crate::fingerprint(&r.query).hex())
            .or_insert(Previous {
                calls: 0,
                total_seconds: 0.0,
                p95_seconds: 0.0,
            });
        p.calls += r.calls;
        p.total_seconds += r.total_seconds;
    }
    for (fp, mut s) in outside {
        s.previous = before.get(&fp).copied();
        s.mean_seconds = if s.calls > 0 {
            s.total_seconds / s.calls as f64
        } else {
            0.0
        };
        let a = crate::analyze(&s.query);
        s.kind = Some(a.kind.as_str().to_string());
        s.tables = a
            .tables_read
            .iter()
            .chain(&a.tables_written)
            .cloned()
            .collect();
        statements.push(s);
    }
    // Shares are of the proxy's time: outside rows are not part of the total.
}

fn cache_summary(statements: &[Statement], opts: &ReportOptions) -> CacheSummary {
    let hits: u64 = statements.iter().map(|s| s.cache_hits).sum();
    let misses: u64 = statements.iter().map(|s| s.cache_misses).sum();
    let mut candidates: Vec<CacheCandidate> = statements
        .iter()
        .filter(|s| s.calls >= opts.cache_min_calls && s.cache_hits == 0 && s.cache_misses == 0)
        .filter(|s| crate::analyze(&s.query).is_cacheable())
        .map(|s| CacheCandidate {
            fingerprint: s.fingerprint.clone(),
            calls: s.calls,
            total_seconds: s.total_seconds,
            saved_up_to_seconds: s.total_seconds,
        })
        .collect();
    candidates.sort_by(|a, b| b.total_seconds.total_cmp(&a.total_seconds));
    candidates.truncate(opts.top);
    CacheSummary {
        hits,
        misses,
        bypasses: statements.iter().map(|s| s.cache_bypasses).sum(),
        hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        saved_seconds: statements.iter().map(|s| s.cache_saved_seconds).sum(),
        candidates,
    }
}

#[cfg(test)]
mod tests;
