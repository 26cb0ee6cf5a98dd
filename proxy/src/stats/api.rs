//! Export of the statistics: `GET /api/queries?sort=total_time|p95|calls|errors&limit=N`,
//! `GET /api/queries/{fingerprint}`, and Prometheus series for the top K fingerprints only.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Unit;
use serde::{Deserialize, Serialize};

use super::QueryStats;
use super::table::Entry;

/// One fingerprint as the API shows it. Never holds parameter values.
#[derive(Debug, Clone, Serialize)]
pub struct QueryRow {
    pub fingerprint: String,
    pub database: String,
    pub role: String,
    pub query: String,
    pub kind: String,
    pub tables_read: Vec<String>,
    pub tables_written: Vec<String>,
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_time_ms: f64,
    pub mean_time_ms: f64,
    pub min_time_ms: f64,
    pub max_time_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub pool_wait_ms: f64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bypasses: u64,
    pub sqlstates: std::collections::BTreeMap<String, u64>,
    pub routes: Vec<String>,
    pub controllers: Vec<String>,
    pub actions: Vec<String>,
    pub applications: Vec<String>,
    pub traceparent: Option<String>,
    pub heavy: bool,
    pub first_seen: chrono::DateTime<chrono::Utc>,
    pub last_seen: chrono::DateTime<chrono::Utc>,
    /// The redacted parameter sample (`parameter_sample = "redacted"`; shapes only, never values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_sample: Option<Vec<String>>,
}

impl QueryRow {
    fn from_entry(e: &Entry) -> QueryRow {
        let c = &e.all;
        QueryRow {
            fingerprint: vigil_analyzer::format_id(e.fingerprint),
            database: e.database.clone(),
            role: e.role.clone(),
            query: e.normalized.clone(),
            kind: e.analysis.kind.as_str().to_owned(),
            tables_read: e.analysis.tables_read.clone(),
            tables_written: e.analysis.tables_written.clone(),
            calls: c.calls,
            errors: c.errors,
            rows: c.rows,
            total_time_ms: c.total * 1000.0,
            mean_time_ms: if c.calls > 0 {
                c.total * 1000.0 / c.calls as f64
            } else {
                0.0
            },
            min_time_ms: c.min * 1000.0,
            max_time_ms: c.max * 1000.0,
            p50_ms: c.sketch.quantile(0.5) * 1000.0,
            p95_ms: c.sketch.quantile(0.95) * 1000.0,
            p99_ms: c.sketch.quantile(0.99) * 1000.0,
            pool_wait_ms: c.pool_wait * 1000.0,
            cache_hits: c.cache_hits,
            cache_misses: c.cache_misses,
            cache_bypasses: c.cache_bypasses,
            sqlstates: c.sqlstates.clone(),
            routes: e.routes.iter().cloned().collect(),
            controllers: e.controllers.iter().cloned().collect(),
            actions: e.actions.iter().cloned().collect(),
            applications: e.applications.iter().cloned().collect(),
            traceparent: e.traceparent.clone(),
            heavy: e.heavy.heavy,
            first_seen: e.first_seen,
            last_seen: e.last_seen,
            parameter_sample: None,
        }
    }
}

/// `sort=` of `/api/queries`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    #[default]
    TotalTime,
    P95,
    Calls,
    Errors,
    Rows,
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    sort: SortBy,
    limit: Option<usize>,
    database: Option<String>,
}

impl QueryStats {
    /// Every fingerprint, sorted descending by `sort`.
    pub fn snapshot(&self, sort: SortBy) -> Vec<QueryRow> {
        let mut rows = Vec::with_capacity(self.table.len());
        self.table.for_each(|e| rows.push(QueryRow::from_entry(e)));
        let key = |r: &QueryRow| match sort {
            SortBy::TotalTime => r.total_time_ms,
            SortBy::P95 => r.p95_ms,
            SortBy::Calls => r.calls as f64,
            SortBy::Errors => r.errors as f64,
            SortBy::Rows => r.rows as f64,
        };
        rows.sort_by(|a, b| key(b).total_cmp(&key(a)));
        rows
    }

    /// `/api/queries` and `/api/queries/{fingerprint}`.
    pub fn api_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/queries", get(list))
            .route("/api/queries/{fingerprint}", get(one))
            .with_state(self.clone())
    }
}

async fn list(State(stats): State<Arc<QueryStats>>, Query(q): Query<ListQuery>) -> Response {
    let mut rows = stats.snapshot(q.sort);
    if let Some(db) = &q.database {
        rows.retain(|r| &r.database == db);
    }
    rows.truncate(q.limit.unwrap_or(50).min(1000));
    axum::Json(serde_json::json!({
        "fingerprints": stats.table.len(),
        "evicted": stats.table.evicted(),
        "queries": rows,
    }))
    .into_response()
}

async fn one(State(stats): State<Arc<QueryStats>>, Path(fp): Path<String>) -> Response {
    let Some(id) = vigil_analyzer::parse_id(&fp) else {
        return (
            StatusCode::BAD_REQUEST,
            "a fingerprint is 16 hexadecimal digits\n",
        )
            .into_response();
    };
    let mut rows = Vec::new();
    stats.table.for_each(|e| {
        if e.fingerprint == id {
            let mut r = QueryRow::from_entry(e);
            r.parameter_sample = stats.parameter_sample(id, &e.database, &e.role);
            rows.push(r);
        }
    });
    if rows.is_empty() {
        return (StatusCode::NOT_FOUND, "no such fingerprint\n").into_response();
    }
    axum::Json(serde_json::json!({ "fingerprint": fp, "by_database_role": rows })).into_response()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FpLabels {
    fingerprint: String,
    database: String,
}

/// Prometheus series for the top K fingerprints by total time (bounded cardinality).
#[derive(Debug)]
pub(crate) struct TopK(pub Arc<QueryStats>);

impl std::fmt::Debug for QueryStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStats")
            .field("fingerprints", &self.table.len())
            .finish()
    }
}

impl Collector for TopK {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        let calls = Family::<FpLabels, Counter>::default();
        let seconds = Family::<FpLabels, Counter<f64>>::default();
        let errors = Family::<FpLabels, Counter>::default();
        let p95 = Family::<FpLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for r in stats
            .snapshot(SortBy::TotalTime)
            .into_iter()
            .take(stats.config.top_k)
        {
            let l = FpLabels {
                fingerprint: r.fingerprint,
                database: r.database,
            };
            calls.get_or_create(&l).inc_by(r.calls);
            seconds.get_or_create(&l).inc_by(r.total_time_ms / 1000.0);
            errors.get_or_create(&l).inc_by(r.errors);
            p95.get_or_create(&l).set(r.p95_ms / 1000.0);
        }
        calls.encode(encoder.encode_descriptor(
            "vigil_query_calls",
            "Calls of the top-K statement fingerprints by total time",
            None,
            calls.metric_type(),
        )?)?;
        seconds.encode(encoder.encode_descriptor(
            "vigil_query_duration",
            "Total execution time of the top-K statement fingerprints",
            Some(&Unit::Seconds),
            seconds.metric_type(),
        )?)?;
        errors.encode(encoder.encode_descriptor(
            "vigil_query_errors",
            "Errors of the top-K statement fingerprints",
            None,
            errors.metric_type(),
        )?)?;
        p95.encode(encoder.encode_descriptor(
            "vigil_query_p95",
            "p95 execution time since start of the top-K statement fingerprints",
            Some(&Unit::Seconds),
            p95.metric_type(),
        )?)?;
        let tracked = Gauge::<i64>::default();
        tracked.set(stats.table.len() as i64);
        tracked.encode(encoder.encode_descriptor(
            "vigil_query_fingerprints",
            "Statement fingerprints currently tracked",
            None,
            tracked.metric_type(),
        )?)?;
        Ok(())
    }
}
