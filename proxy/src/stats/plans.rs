//! Plan capture for the heaviest read statements (`[queries.plans]`, off by default).
//!
//! After each statistics window the top `top` read fingerprints by total time (without a plan
//! younger than `refresh_secs`) become *wanted*; the next execution of a wanted fingerprint
//! leaves one sample in memory (simple protocol: the statement as sent, constants included;
//! extended protocol: the text with `$n` and the bound parameter values of that one Bind, taken
//! through [`crate::pg::hook::StatementHook::on_bind`] with their format codes and the Parse's
//! declared types). After the following window a background task, on its own short-lived
//! upstream connection as the same role, runs `EXPLAIN (FORMAT JSON)` in a `READ ONLY`
//! transaction with `SET LOCAL statement_timeout`, never `ANALYZE`. An extended-protocol sample
//! is explained with the extended protocol too (Parse of `EXPLAIN (FORMAT JSON) <text>`, Bind
//! of the same values in the same formats), so the plan is the custom plan for real values, as
//! the application's execution got it. It adds table sizes and whether they were ever analyzed,
//! checks index suggestions with `hypopg` when that extension is installed, strips every literal
//! from the plan (the values show up as literals in `Filter`/`Index Cond`) and drops the sample,
//! values included. Values are never logged (a sample has no `Debug`). The plan is published
//! once, in the fingerprint's next bucket.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use super::params::BoundParams;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use vigil_analyzer::report::plan::{plan_cost, sanitize_plan_value};
use vigil_analyzer::report::{AdviceOptions, advise};

use crate::pg::hook::QueryProtocol;
use crate::pg::upstream::{ConnectParams, ServerConn};

/// `[queries.plans]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    pub enabled: bool,
    /// Fingerprints explained per window (the heaviest reads by total time).
    pub top: usize,
    /// A fingerprint's plan is captured again after this many seconds.
    pub refresh_secs: u64,
    /// `statement_timeout` of the EXPLAIN, milliseconds.
    pub statement_timeout_ms: u64,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            enabled: false,
            top: 3,
            refresh_secs: 3600,
            statement_timeout_ms: 2000,
        }
    }
}

/// How the capturer reaches the upstream of `(database, user)`.
pub type Connector = Arc<dyn Fn(&str, &str) -> Option<ConnectParams> + Send + Sync>;

struct Sample {
    sql: String,
    database: String,
    user: String,
    protocol: QueryProtocol,
    /// The bound values of an extended-protocol sample (memory only, dropped after the EXPLAIN).
    params: Option<BoundParams>,
}

/// A window's statement, as [`Plans::after_window`] sees it.
pub struct Candidate {
    pub fingerprint: u64,
    pub total_seconds: f64,
    pub read: bool,
}

/// Why a capture failed (logged without the statement).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("upstream: {0}")]
    Upstream(#[from] crate::pg::error::UpstreamError),
    #[error("no plan in the EXPLAIN output")]
    NoPlan,
    #[error("the statement is not a single statement")]
    NotSingle,
}

/// Plan capture state.
pub struct Plans {
    config: PlanConfig,
    wanted: RwLock<HashSet<u64>>,
    samples: Mutex<HashMap<u64, Sample>>,
    captured: Mutex<HashMap<u64, Instant>>,
    ready: Mutex<HashMap<(u64, String, String), String>>,
    connector: RwLock<Option<Connector>>,
    busy: Arc<AtomicBool>,
    /// Some fingerprint is wanted (the hot path's one check before handing over a Bind).
    any_wanted: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Plans {
    pub fn new(config: PlanConfig) -> Arc<Plans> {
        Arc::new(Plans {
            config,
            wanted: RwLock::new(HashSet::new()),
            samples: Mutex::new(HashMap::new()),
            captured: Mutex::new(HashMap::new()),
            ready: Mutex::new(HashMap::new()),
            connector: RwLock::new(None),
            busy: Arc::new(AtomicBool::new(false)),
            any_wanted: AtomicBool::new(false),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn set_connector(&self, c: Connector) {
        *self.connector.write().unwrap_or_else(|p| p.into_inner()) = Some(c);
    }

    /// Hot path (one atomic load): does a Bind's values matter now?
    pub fn wants_bind(&self) -> bool {
        self.config.enabled && self.any_wanted.load(Ordering::Relaxed)
    }

    /// Remove `fp` from the wanted set; true when it was wanted.
    fn unwant(&self, fp: u64) -> bool {
        if !self
            .wanted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&fp)
        {
            return false;
        }
        let mut w = self.wanted.write().unwrap_or_else(|p| p.into_inner());
        let was = w.remove(&fp);
        if w.is_empty() {
            self.any_wanted.store(false, Ordering::Relaxed);
        }
        was
    }

    /// Hot path: keep one sample of a wanted fingerprint (simple protocol; extended-protocol
    /// samples come with their values through [`Plans::observe_bound`]).
    pub fn observe(&self, fp: u64, database: &str, user: &str, sql: &str, protocol: QueryProtocol) {
        if !self.config.enabled || protocol == QueryProtocol::Extended || !self.unwant(fp) {
            return;
        }
        lock(&self.samples).entry(fp).or_insert_with(|| Sample {
            sql: sql.to_owned(),
            database: database.to_owned(),
            user: user.to_owned(),
            protocol,
            params: None,
        });
    }

    /// A Bind of a wanted fingerprint: keep its text and values (memory only) for the EXPLAIN.
    pub fn observe_bound(
        &self,
        fp: u64,
        database: &str,
        user: &str,
        sql: &str,
        params: impl FnOnce() -> Option<BoundParams>,
    ) {
        if !self.config.enabled || !self.unwant(fp) {
            return;
        }
        let params = params();
        lock(&self.samples).entry(fp).or_insert_with(|| Sample {
            sql: sql.to_owned(),
            database: database.to_owned(),
            user: user.to_owned(),
            protocol: QueryProtocol::Extended,
            params,
        });
    }

    /// The plan to publish with this fingerprint's bucket, once.
    pub fn take_ready(&self, fp: u64, database: &str, user: &str) -> Option<String> {
        let mut r = lock(&self.ready);
        if r.is_empty() {
            return None;
        }
        r.remove(&(fp, database.to_owned(), user.to_owned()))
    }

    /// After a window: choose the wanted fingerprints and explain the samples collected.
    pub fn after_window(self: &Arc<Self>, mut candidates: Vec<Candidate>) {
        if !self.config.enabled {
            return;
        }
        let refresh = Duration::from_secs(self.config.refresh_secs);
        candidates.retain(|c| c.read && c.total_seconds > 0.0);
        candidates.sort_by(|a, b| b.total_seconds.total_cmp(&a.total_seconds));
        {
            let captured = lock(&self.captured);
            let samples = lock(&self.samples);
            let mut wanted = self.wanted.write().unwrap_or_else(|p| p.into_inner());
            wanted.clear();
            for c in candidates.iter().take(self.config.top) {
                let fresh = captured
                    .get(&c.fingerprint)
                    .is_some_and(|t| t.elapsed() < refresh);
                if !fresh && !samples.contains_key(&c.fingerprint) {
                    wanted.insert(c.fingerprint);
                }
            }
            self.any_wanted.store(!wanted.is_empty(), Ordering::Relaxed);
        }
        let Some(connector) = self
            .connector
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        if lock(&self.samples).is_empty() || self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.busy.store(false, Ordering::Release);
            return;
        };
        let samples: Vec<(u64, Sample)> = lock(&self.samples).drain().collect();
        let me = self.clone();
        handle.spawn(async move {
            for (fp, sample) in samples {
                let Some(params) = connector(&sample.database, &sample.user) else {
                    continue;
                };
                let hex = vigil_analyzer::format_id(fp);
                match capture(&params, &sample, me.config.statement_timeout_ms).await {
                    Ok(plan) => {
                        lock(&me.captured).insert(fp, Instant::now());
                        lock(&me.ready).insert((fp, sample.database, sample.user), plan);
                        tracing::debug!(fingerprint = %hex, "plan captured");
                    }
                    Err(e) => {
                        // Do not retry at once; the error names no statement text.
                        lock(&me.captured).insert(fp, Instant::now());
                        tracing::warn!(fingerprint = %hex, error = %e, "plan not captured");
                    }
                }
            }
            let mut c = lock(&me.captured);
            if c.len() > 10_000 {
                c.retain(|_, t| t.elapsed() < refresh);
            }
            drop(c);
            me.busy.store(false, Ordering::Release);
        });
    }
}

/// The highest `$n` of a statement text (outside quotes).
fn param_count(sql: &str) -> usize {
    let b = sql.as_bytes();
    let (mut i, mut max, mut quote) = (0, 0, None);
    while i < b.len() {
        match (quote, b[i]) {
            (None, q @ (b'\'' | b'"')) => quote = Some(q),
            (Some(q), c) if c == q => quote = None,
            (None, b'$') => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if let Ok(n) = sql[start..j].parse::<usize>() {
                    max = max.max(n);
                }
                i = j.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    max
}

async fn explain(
    conn: &mut ServerConn,
    sample: &Sample,
    timeout_ms: u64,
) -> Result<String, CaptureError> {
    let sql = sample.sql.trim().trim_end_matches(';');
    if sql.contains(';') {
        return Err(CaptureError::NotSingle);
    }
    if let Some(params) = &sample.params {
        return explain_bound(conn, sql, params, timeout_ms).await;
    }
    let body = match sample.protocol {
        QueryProtocol::Simple => format!("EXPLAIN (FORMAT JSON) {sql}\n"),
        QueryProtocol::Extended => {
            let n = param_count(sql);
            let args = if n == 0 {
                String::new()
            } else {
                format!("({})", vec!["NULL"; n].join(", "))
            };
            format!(
                "SET LOCAL plan_cache_mode = force_generic_plan; PREPARE vigil_plan AS {sql}\n; EXPLAIN (FORMAT JSON) EXECUTE vigil_plan{args}"
            )
        }
    };
    let q = format!("BEGIN READ ONLY; SET LOCAL statement_timeout = {timeout_ms}; {body}");
    let res = conn.run(&q).await;
    let _ = conn.run("ROLLBACK; DEALLOCATE ALL").await;
    let rows = res?;
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
        .ok_or(CaptureError::NoPlan)
}

/// EXPLAIN with the extended protocol and the sample's own bound values (a custom plan).
async fn explain_bound(
    conn: &mut ServerConn,
    sql: &str,
    params: &BoundParams,
    timeout_ms: u64,
) -> Result<String, CaptureError> {
    conn.run(&format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = {timeout_ms}; \
         SET LOCAL plan_cache_mode = force_custom_plan"
    ))
    .await?;
    let res = bound_query(conn, &format!("EXPLAIN (FORMAT JSON) {sql}\n"), params).await;
    let _ = conn.run("ROLLBACK").await;
    res?.ok_or(CaptureError::NoPlan)
}

/// Parse/Bind/Execute/Sync of one statement with `params`; the first column of the first row.
async fn bound_query(
    conn: &mut ServerConn,
    sql: &str,
    params: &BoundParams,
) -> Result<Option<String>, crate::pg::error::UpstreamError> {
    use crate::pg::error::UpstreamError;
    use crate::pg::protocol::buf::Frame;
    use crate::pg::protocol::{extended, simple, status};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = bytes::BytesMut::new();
    out.extend_from_slice(
        &extended::Parse {
            name: String::new(),
            query: sql.to_owned(),
            param_types: params.types.clone(),
        }
        .encode(),
    );
    let mut bind = Frame::new(b'B');
    bind.cstr("").cstr("").i16(params.formats.len() as i16);
    for f in &params.formats {
        bind.i16(*f);
    }
    bind.i16(params.values.len() as i16);
    for v in &params.values {
        match v {
            Some(v) => bind.i32(v.len() as i32).bytes(v),
            None => bind.i32(-1),
        };
    }
    bind.i16(0);
    out.extend_from_slice(&bind.finish());
    out.extend_from_slice(
        &extended::Execute {
            portal: "",
            max_rows: 0,
        }
        .encode(),
    );
    out.extend_from_slice(&extended::sync());
    conn.wr.write_all(&out).await?;
    let (mut first, mut err) = (None, None);
    loop {
        let m = loop {
            if let Some(m) = conn.dec.decode()? {
                break m;
            }
            if conn.rd.read_buf(&mut conn.dec.buf).await? == 0 {
                return Err(UpstreamError::Closed);
            }
        };
        match m.tag {
            b'D' if first.is_none() => {
                first = simple::decode_data_row(m.body())?
                    .into_iter()
                    .next()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
            }
            b'E' if err.is_none() => err = Some(status::ErrorFields::decode(m.body())?),
            b'Z' => break,
            _ => {}
        }
    }
    match err {
        Some(e) => Err(UpstreamError::Server(e)),
        None => Ok(first),
    }
}

fn relations(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("Relation Name")
                && !out.contains(r)
            {
                out.push(r.clone());
            }
            o.values().for_each(|x| relations(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| relations(x, out)),
        _ => {}
    }
}

fn pg_text_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// Explain one sample and return the plan with table facts and hypopg checks, literals stripped.
async fn capture(
    params: &ConnectParams,
    sample: &Sample,
    timeout_ms: u64,
) -> Result<String, CaptureError> {
    let mut conn = ServerConn::connect(params, 0).await?;
    let result = capture_on(&mut conn, sample, timeout_ms).await;
    conn.terminate().await;
    result
}

async fn capture_on(
    conn: &mut ServerConn,
    sample: &Sample,
    timeout_ms: u64,
) -> Result<String, CaptureError> {
    let text = explain(conn, sample, timeout_ms).await?;
    let mut doc: Value = serde_json::from_str(&text).map_err(|_| CaptureError::NoPlan)?;
    let mut rels = Vec::new();
    relations(&doc, &mut rels);
    let mut tables = serde_json::Map::new();
    if !rels.is_empty() {
        let rows = conn
            .run_param(
                "SELECT c.relname, c.reltuples::float8, \
                 (s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL) \
                 FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
                 WHERE c.relkind IN ('r', 'p', 'm') AND c.relname = ANY($1::text[])",
                &pg_text_array(&rels),
            )
            .await?;
        for r in rows {
            let name = r.first().cloned().flatten().unwrap_or_default();
            let n: f64 = r
                .get(1)
                .cloned()
                .flatten()
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0);
            let analyzed = r.get(2).cloned().flatten().as_deref() == Some("t");
            tables.insert(name, json!({ "rows": n, "analyzed": analyzed }));
        }
    }
    let Some(top) = doc.as_array_mut().and_then(|a| a.first_mut()) else {
        return Err(CaptureError::NoPlan);
    };
    if let Some(o) = top.as_object_mut() {
        o.insert("Vigil Tables".into(), Value::Object(tables));
    }
    let with_tables = doc.to_string();
    let hypopg = conn
        .run("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'")
        .await
        .map(|r| !r.is_empty())
        .unwrap_or(false);
    let mut checks = Vec::new();
    if hypopg {
        let before = plan_cost(&with_tables).unwrap_or_default();
        let suggestions: Vec<String> = advise(&with_tables, &AdviceOptions::default())
            .into_iter()
            .filter_map(|a| a.suggestion)
            .filter(|s| s.starts_with("CREATE INDEX"))
            .collect();
        for s in suggestions {
            if conn
                .run_param("SELECT indexrelid FROM hypopg_create_index($1)", &s)
                .await
                .is_err()
            {
                continue;
            }
            let after = explain(conn, sample, timeout_ms)
                .await
                .ok()
                .and_then(|p| plan_cost(&p));
            let _ = conn.run("SELECT hypopg_reset()").await;
            if let Some(after) = after {
                checks.push(json!({ "index": s, "cost_before": before, "cost_after": after }));
            }
        }
    }
    if hypopg
        && let Some(o) = doc
            .as_array_mut()
            .and_then(|a| a.first_mut())
            .and_then(Value::as_object_mut)
    {
        o.insert("Vigil Hypothetical".into(), Value::Array(checks));
    }
    sanitize_plan_value(&mut doc);
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_counted_outside_quotes() {
        assert_eq!(param_count("SELECT * FROM t WHERE a = $1 AND b = $12"), 12);
        assert_eq!(param_count("SELECT '$9' FROM t"), 0);
        assert_eq!(
            pg_text_array(&["a".into(), "b\"c".into()]),
            "{\"a\",\"b\\\"c\"}"
        );
    }

    #[test]
    fn only_wanted_fingerprints_are_sampled_once() {
        let p = Plans::new(PlanConfig {
            enabled: true,
            ..Default::default()
        });
        p.observe(1, "db", "u", "SELECT 1", QueryProtocol::Simple);
        assert!(lock(&p.samples).is_empty());
        p.after_window(vec![
            Candidate {
                fingerprint: 1,
                total_seconds: 2.0,
                read: true,
            },
            Candidate {
                fingerprint: 2,
                total_seconds: 9.0,
                read: false,
            },
        ]);
        assert!(p.wanted.read().unwrap().contains(&1));
        assert!(!p.wanted.read().unwrap().contains(&2));
        p.observe(1, "db", "u", "SELECT 1", QueryProtocol::Simple);
        p.observe(1, "db", "u", "SELECT 2", QueryProtocol::Simple);
        assert_eq!(lock(&p.samples)[&1].sql, "SELECT 1");
        assert!(p.wanted.read().unwrap().is_empty());
    }
}
