//! Per-fingerprint statement statistics, heavy-query signals and their export: the pg proxy's
//! [`StatementHook`] implementation.
//!
//! - [`sketch`]: mergeable quantile sketch (p50/p95/p99 within 1%).
//! - [`table`]: the bounded, sharded per-(fingerprint, database, role) table.
//! - [`heavy`]: `rules/heavy-queries.yaml` and the per-window detector with hysteresis.
//! - [`otel`]: OpenTelemetry DB client spans per statement (when tracing is on).
//! - [`api`]: `/api/queries`, `/api/queries/{fingerprint}` and the top-K Prometheus collector.
//! - [`plans`]: `EXPLAIN` capture for the heaviest reads (`[queries.plans]`, off by default),
//!   published with the buckets for reports.
//! - [`pgss`]: periodic `pg_stat_statements` snapshots of the upstream databases
//!   (`[queries.pgss]`), for statements that bypass the proxy.
//!
//! Hot path: one lexer pass per simple-protocol statement (`fingerprint_id`, no allocation); for
//! the extended protocol the fingerprint is computed at Parse and found again by the statement
//! text's hash. No clock is read per statement (`last_seen` uses a coarse clock ticked every
//! second by the window task) and one logarithm feeds both sketches. Normalization and deep analysis (sqlparser) run once per new fingerprint. Every
//! `bucket_secs` a window task publishes each fingerprint's window as a `QueryStats` signal (the
//! incident service keeps them for reports), judges it against the heavy rules and emits
//! `heavy_query` firing/resolved signals. Parameter values are seen only through
//! [`StatementHook::on_bind`], while [`StatementHook::wants_params`] (one atomic load per Bind)
//! asks for them: with plan capture on, one statement text (with its bound values for the
//! extended protocol) of each wanted fingerprint is held in memory until it is explained; with
//! `parameter_sample = "redacted"` (opt-in) one Bind per fingerprint and window is kept as shapes
//! only ([`params`]), shown by `/api/queries/{fingerprint}` and never published.

pub mod api;
pub mod heavy;
pub mod otel;
pub mod params;
pub mod pgss;
pub mod plans;
pub mod sketch;
pub mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use vigil_analyzer::{AnalysisCache, Tags};
use vigil_signal::{
    Channel, Emitter, Outcome, QueryStats as QueryStatsSignal, Scope, Signal, Source,
};

use crate::pg::hook::{BindEvent, ParseEvent, QueryProtocol, StatementEvent, StatementHook};
use heavy::{HeavyRules, Transition, WindowMeasure};
use table::{Record, Table};

/// `[queries]`: statement statistics and heavy-query detection (on when `[pg]` runs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryStatsConfig {
    pub enabled: bool,
    /// Fingerprints kept (per database and role); the least called are evicted beyond it.
    pub max_fingerprints: usize,
    /// Fingerprints exported as Prometheus series (by total time).
    pub top_k: usize,
    /// Length of a statistics window, seconds (published as one bucket, judged for heaviness).
    pub bucket_secs: u64,
    /// The heavy-query rules file (hot-reloaded); built-in defaults when unset.
    pub heavy_rules: Option<PathBuf>,
    /// `[queries.plans]`: EXPLAIN capture for the heaviest reads.
    pub plans: plans::PlanConfig,
    /// `[queries.pgss]`: periodic `pg_stat_statements` snapshots.
    pub pgss: pgss::PgssConfig,
    /// `"off"` (default: parameter values are never kept) or `"redacted"` (one recent sample per
    /// fingerprint, each value reduced to its shape, shown by `/api/queries/{fingerprint}`).
    pub parameter_sample: params::ParameterSample,
}

impl Default for QueryStatsConfig {
    fn default() -> Self {
        QueryStatsConfig {
            enabled: true,
            max_fingerprints: 5_000,
            top_k: 20,
            bucket_secs: 60,
            heavy_rules: None,
            plans: plans::PlanConfig::default(),
            pgss: pgss::PgssConfig::default(),
            parameter_sample: params::ParameterSample::Off,
        }
    }
}

/// The statistics hook and its state.
pub struct QueryStats {
    table: Table,
    analyses: AnalysisCache,
    /// Statement text hash -> fingerprint, for extended-protocol executions (bounded).
    by_text: Mutex<table::U64Map<u64>>,
    rules: RwLock<Arc<HeavyRules>>,
    emitter: Emitter,
    config: QueryStatsConfig,
    heavy_signals: prometheus_client::metrics::counter::Counter,
    plans: Arc<plans::Plans>,
    param_samples: params::ParamSampler,
}

const TEXT_CACHE_MAX: usize = 20_000;

fn text_hash(sql: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x7465_7874).hash_one(sql)
}

/// sqlcommenter tags, only when the statement ends with a comment (cheap check first).
fn trailing_tags(sql: &str) -> Option<Tags> {
    let t = sql.trim_end().trim_end_matches(';').trim_end();
    if !t.ends_with("*/") {
        return None;
    }
    let start = t.rfind("/*")?;
    Tags::parse(&t[start + 2..t.len() - 2]).filter(|t| !t.is_empty())
}

impl QueryStats {
    pub fn new(
        config: QueryStatsConfig,
        rules: HeavyRules,
        emitter: Emitter,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Arc<QueryStats> {
        let stats = Arc::new(QueryStats {
            table: Table::new(config.max_fingerprints),
            analyses: AnalysisCache::new(config.max_fingerprints.max(1000)),
            by_text: Mutex::new(table::U64Map::default()),
            rules: RwLock::new(Arc::new(rules)),
            emitter,
            heavy_signals: Default::default(),
            plans: plans::Plans::new(config.plans.clone()),
            param_samples: params::ParamSampler::new(
                config.parameter_sample,
                config.max_fingerprints,
            ),
            config,
        });
        registry.register(
            "vigil_heavy_query_transitions",
            "heavy_query signals emitted (fingerprints turning heavy or recovering)",
            stats.heavy_signals.clone(),
        );
        registry.register_collector(Box::new(api::TopK(stats.clone())));
        stats
    }

    /// Load the configured rules file (or the defaults).
    pub fn load_rules(config: &QueryStatsConfig) -> Result<HeavyRules, heavy::HeavyRulesError> {
        match &config.heavy_rules {
            Some(p) => HeavyRules::load(p),
            None => Ok(HeavyRules::default()),
        }
    }

    pub fn rules(&self) -> Arc<HeavyRules> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_rules(&self, rules: HeavyRules) {
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The redacted parameter sample of `(fingerprint, database, role)`, when one was taken
    /// (`parameter_sample = "redacted"` only).
    pub fn parameter_sample(&self, fp: u64, database: &str, role: &str) -> Option<Vec<String>> {
        self.param_samples.get(table::key(fp, database, role))
    }

    /// How plan capture reaches the upstream of `(database, user)` (the pg proxy's pools).
    pub fn set_plan_connector(&self, c: plans::Connector) {
        self.plans.set_connector(c);
    }

    fn fingerprint_for(&self, sql: &str, protocol: QueryProtocol) -> u64 {
        if protocol == QueryProtocol::Extended {
            let h = text_hash(sql);
            if let Some(fp) = self
                .by_text
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&h)
            {
                return *fp;
            }
            let fp = vigil_analyzer::fingerprint_id(sql);
            let mut m = self.by_text.lock().unwrap_or_else(|p| p.into_inner());
            if m.len() >= TEXT_CACHE_MAX {
                m.clear();
            }
            m.insert(h, fp);
            fp
        } else {
            vigil_analyzer::fingerprint_id(sql)
        }
    }

    /// Spawn the window task: rotate every `bucket_secs`, publish, judge; and reload the rules
    /// file when it changes.
    pub fn spawn_windows(
        self: &Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            let period = Duration::from_secs(me.config.bucket_secs.max(1));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            let mut mtime = me.rules_mtime();
            let mut clock = tokio::time::interval(Duration::from_secs(1));
            clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut shutdown => {
                        me.rotate(period);
                        return;
                    }
                    _ = clock.tick() => me.table.tick(),
                    _ = tick.tick() => {
                        me.rotate(period);
                        let now = me.rules_mtime();
                        if now != mtime {
                            mtime = now;
                            me.reload_rules();
                        }
                    }
                }
            }
        })
    }

    fn rules_mtime(&self) -> Option<std::time::SystemTime> {
        let p = self.config.heavy_rules.as_ref()?;
        std::fs::metadata(p).and_then(|m| m.modified()).ok()
    }

    fn reload_rules(&self) {
        match Self::load_rules(&self.config) {
            Ok(r) => {
                tracing::info!("heavy-query rules reloaded");
                self.set_rules(r);
            }
            Err(e) => {
                tracing::error!(error = %e, "heavy-query rules not reloaded; keeping the previous rules")
            }
        }
    }

    /// Close the current window: publish every fingerprint's bucket, judge heaviness, reset.
    pub fn rotate(&self, period: Duration) {
        self.param_samples.rotate();
        let rules = self.rules();
        let end = Utc::now();
        let start = end - chrono::Duration::from_std(period).unwrap_or_default();
        let mut window_total = 0.0;
        self.table.for_each(|e| window_total += e.window.total);
        let window_total_ms = window_total * 1000.0;
        let mut out = Vec::new();
        let mut db_outcomes: BTreeMap<(String, Option<String>), u64> = BTreeMap::new();
        let mut plan_candidates = Vec::new();
        self.table.for_each_mut(|e| {
            let w = std::mem::take(&mut e.window);
            let measure = WindowMeasure {
                calls: w.calls,
                p95_ms: w.sketch.quantile(0.95) * 1000.0,
                total_ms: w.total * 1000.0,
                rows: w.rows,
                window_total_ms,
            };
            let hex = vigil_analyzer::format_id(e.fingerprint);
            let ignored = rules.ignore.contains(&hex);
            let transition = if ignored { None } else { e.heavy.observe(&rules, &measure) };
            if w.calls == 0 && transition.is_none() {
                return;
            }
            let bucket = QueryStatsSignal {
                fingerprint: hex.clone(),
                query: e.normalized.clone(),
                database: e.database.clone(),
                role: e.role.clone(),
                calls: w.calls,
                errors: w.errors,
                rows: w.rows,
                total_seconds: w.total,
                min_seconds: w.min,
                max_seconds: w.max,
                p50_seconds: w.sketch.quantile(0.5),
                p95_seconds: w.sketch.quantile(0.95),
                p99_seconds: w.sketch.quantile(0.99),
                pool_wait_seconds: w.pool_wait,
                cache_hits: w.cache_hits,
                cache_misses: w.cache_misses,
                cache_bypasses: w.cache_bypasses,
                cache_saved_seconds: w.cache_saved,
                sqlstates: w.sqlstates.clone(),
                tags: e.tag_map(),
                kind: Some(e.analysis.kind.as_str().to_owned()),
                tables: e
                    .analysis
                    .tables_read
                    .iter()
                    .chain(&e.analysis.tables_written)
                    .cloned()
                    .collect(),
                plan: self.plans.take_ready(e.fingerprint, &e.database, &e.role),
            };
            if self.plans.enabled() {
                plan_candidates.push(plans::Candidate {
                    fingerprint: e.fingerprint,
                    total_seconds: w.total,
                    read: e.analysis.kind == vigil_analyzer::StatementKind::Read
                        && e.analysis.locking.is_empty()
                        && !e.analysis.parse_failed,
                });
            }
            if w.calls > 0 {
                *db_outcomes.entry((e.database.clone(), None)).or_insert(0) += w.calls - w.errors;
                for (code, n) in &w.sqlstates {
                    *db_outcomes
                        .entry((e.database.clone(), Some(code.clone())))
                        .or_insert(0) += n;
                }
                out.push(
                    Signal::new(Source::PgProxy, Channel::Db, Outcome::Succeeded)
                        .with_id(format!("qs:{hex}:{}:{}:{}", e.database, e.role, start.timestamp()))
                        .with_time(start)
                        .with_window(period.as_secs() as u32)
                        .with_class("query_stats")
                        .with_subject(hex.clone())
                        .with_count(w.calls.max(1))
                        .with_query(bucket.clone()),
                );
            }
            if let Some(t) = transition {
                let (outcome, reason) = match t {
                    Transition::Heavy(r) => (Outcome::Firing, r),
                    Transition::Recovered => (Outcome::Resolved, "recovered"),
                };
                let mut s = Signal::new(Source::PgProxy, Channel::Db, outcome)
                    .with_id(format!("heavy:{hex}:{}:{}:{}", e.database, e.role, end.timestamp()))
                    .with_time(end)
                    .with_class("heavy_query")
                    .with_scope(Scope::Service)
                    .with_subject(hex.clone())
                    .with_attr("fingerprint", hex.clone())
                    .with_attr("database", e.database.clone())
                    .with_attr("reason", reason)
                    .with_attr("p95_ms", format!("{:.1}", measure.p95_ms))
                    .with_attr("calls", w.calls.to_string())
                    .with_query(bucket);
                if let Some(route) = e.routes.iter().next() {
                    s = s.with_attr("route", route.clone());
                }
                if !e.analysis.tables_read.is_empty() || !e.analysis.tables_written.is_empty() {
                    let tables: Vec<&str> = e
                        .analysis
                        .tables_read
                        .iter()
                        .chain(&e.analysis.tables_written)
                        .map(String::as_str)
                        .collect();
                    s = s.with_attr("tables", tables.join(","));
                }
                if let Some(tp) = &e.traceparent {
                    s = s.with_attr("traceparent", tp.clone());
                }
                self.heavy_signals.inc();
                tracing::info!(fingerprint = %hex, database = %e.database, reason, heavy = matches!(t, Transition::Heavy(_)), "heavy-query state changed");
                out.push(s);
            }
        });
        for ((database, sqlstate), n) in db_outcomes {
            if n == 0 {
                continue;
            }
            let s = match &sqlstate {
                None => Signal::new(Source::PgProxy, Channel::Db, Outcome::Succeeded),
                Some(code) => Signal::new(Source::PgProxy, Channel::Db, Outcome::Failed)
                    .with_class(sqlstate_class(code))
                    .with_code(code.clone()),
            };
            out.push(
                s.with_id(format!(
                    "db:{database}:{}:{}",
                    sqlstate.as_deref().unwrap_or("ok"),
                    start.timestamp()
                ))
                .with_time(start)
                .with_window(period.as_secs() as u32)
                .with_subject(database)
                .with_count(n),
            );
        }
        for s in out {
            self.emitter.emit(s);
        }
        self.plans.after_window(plan_candidates);
    }
}

/// A coarse error class for detection (`query_canceled`, `connection_exception`, ...).
fn sqlstate_class(code: &str) -> &'static str {
    match code.get(..2).unwrap_or("") {
        "08" => "connection_exception",
        "23" => "integrity_constraint_violation",
        "40" => "transaction_rollback",
        "42" => "syntax_error_or_access_rule_violation",
        "53" => "insufficient_resources",
        "57" => "operator_intervention",
        "58" => "system_error",
        "XX" => "internal_error",
        _ => "db_error",
    }
}

impl StatementHook for QueryStats {
    fn on_parse(&self, event: &ParseEvent<'_>) {
        // The expensive part happens here, once per statement text, not per execution.
        let fp = self.fingerprint_for(event.sql, QueryProtocol::Extended);
        self.analyses.get_or_analyze(fp, event.sql);
    }

    fn wants_params(&self) -> bool {
        self.plans.wants_bind() || self.param_samples.wants()
    }

    fn on_bind(&self, event: &BindEvent<'_>) {
        let fp = self.fingerprint_for(event.sql, QueryProtocol::Extended);
        self.plans
            .observe_bound(fp, event.database, event.user, event.sql, || {
                params::BoundParams::decode(event.params, event.param_types)
            });
        let key = table::key(fp, event.database, event.user);
        self.param_samples
            .observe(key, self.table.len(), event.params, event.param_types);
    }

    fn on_statement(&self, event: &StatementEvent<'_>) {
        let fp = match event.fingerprint {
            Some(fp) => fp,
            None => self.fingerprint_for(event.sql, event.protocol),
        };
        let key = table::key(fp, event.database, event.user);
        self.plans
            .observe(fp, event.database, event.user, event.sql, event.protocol);
        let record = Record {
            fingerprint: fp,
            database: event.database,
            role: event.user,
            seconds: event.duration.as_secs_f64(),
            rows: event.rows,
            pool_wait: event.pool_wait.as_secs_f64(),
            sqlstate: event.sqlstate,
            tags: trailing_tags(event.sql),
        };
        self.table.record(key, record, || {
            let f = vigil_analyzer::fingerprint(event.sql);
            (f.normalized, self.analyses.get_or_analyze(fp, event.sql))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_sqlcommenter_tags_are_found_cheaply() {
        let t = trailing_tags("SELECT 1 /*application='crm',route='%2Fcontacts'*/;").unwrap();
        assert_eq!(t.route.as_deref(), Some("/contacts"));
        assert!(trailing_tags("SELECT 1").is_none());
        assert!(trailing_tags("SELECT /*x*/ 1").is_none());
    }

    #[test]
    fn sqlstate_classes() {
        assert_eq!(sqlstate_class("57014"), "operator_intervention");
        assert_eq!(sqlstate_class("23505"), "integrity_constraint_violation");
        assert_eq!(sqlstate_class("P0001"), "db_error");
    }
}
