//! Heavy-query reports from the store: stored query-stat buckets turned into the analyzer's report
//! input ([`report_from_store`]), and `GET /reports/latest` (HTML; `?format=md|json`, `?since=7d`),
//! the last period against the one before it, with `pg_stat_statements` deltas from the stored
//! snapshots ([`PgssRows::stored`]).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use vigil_analyzer::report::{self, Bucket, Period, PgssRow, Report, ReportInput, ReportOptions};

use crate::service::IncidentService;
use crate::store::{QueryStatsRow, Store, StoreError};

/// A stored bucket as the report library reads it.
pub fn to_bucket(row: &QueryStatsRow) -> Bucket {
    let q = &row.stats;
    Bucket {
        fingerprint: q.fingerprint.clone(),
        query: q.query.clone(),
        database: q.database.clone(),
        role: q.role.clone(),
        bucket_ms: row.bucket_ms,
        calls: q.calls,
        errors: q.errors,
        rows: q.rows,
        total_seconds: q.total_seconds,
        max_seconds: q.max_seconds,
        p95_seconds: q.p95_seconds,
        pool_wait_seconds: q.pool_wait_seconds,
        cache_hits: q.cache_hits,
        cache_misses: q.cache_misses,
        cache_bypasses: q.cache_bypasses,
        cache_saved_seconds: q.cache_saved_seconds,
        tags: q.tags.clone(),
        kind: q.kind.clone(),
        tables: q.tables.clone(),
        plan: q.plan.clone(),
    }
}

/// The report's `pg_stat_statements` rows and where they come from.
#[derive(Debug, Clone, Default)]
pub struct PgssRows {
    pub current: Vec<PgssRow>,
    /// The comparison period's (stored snapshots only).
    pub previous: Vec<PgssRow>,
    pub source: report::PgssSource,
}

impl PgssRows {
    /// Deltas between the stored snapshots over `period` (and `compare`); the source is
    /// `None` when fewer than two snapshots of any database bound the period.
    pub async fn stored(
        store: &Store,
        period: Period,
        compare: Option<Period>,
    ) -> Result<PgssRows, StoreError> {
        let load = |p: Period| async move {
            let snapshots = store.pgss_snapshots(None, p.from_ms, p.to_ms).await?;
            Ok::<_, StoreError>(report::pgss::deltas(&snapshots, p))
        };
        let (current, used) = load(period).await?;
        if used == 0 {
            return Ok(PgssRows::default());
        }
        let previous = match compare {
            Some(c) => load(c).await?.0,
            None => vec![],
        };
        Ok(PgssRows {
            current,
            previous,
            source: report::PgssSource::Snapshots { snapshots: used },
        })
    }

    /// Rows read once at report time (cumulative since the extension's last reset).
    pub fn at_report_time(rows: Vec<PgssRow>) -> PgssRows {
        PgssRows {
            source: if rows.is_empty() {
                report::PgssSource::None
            } else {
                report::PgssSource::AtReportTime
            },
            current: rows,
            previous: vec![],
        }
    }
}

/// Build a report for `period` (and `compare`) from the stored buckets and `pgss`.
pub async fn report_from_store(
    store: &Store,
    period: Period,
    compare: Option<Period>,
    pgss: PgssRows,
    opts: &ReportOptions,
) -> Result<Report, StoreError> {
    let load = |p: Period| async move {
        let rows = store.query_stats_between(p.from_ms, p.to_ms).await?;
        Ok::<_, StoreError>(rows.iter().map(to_bucket).collect::<Vec<_>>())
    };
    let current = load(period).await?;
    let previous = match compare {
        Some(c) => load(c).await?,
        None => vec![],
    };
    let input = ReportInput {
        period: Some(period),
        compare,
        current,
        previous,
        pgss: pgss.current,
        pgss_previous: pgss.previous,
        pgss_source: pgss.source,
        generated_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    Ok(report::build(&input, opts))
}

/// `7d`, `24h`, `90m`, `30s` as milliseconds.
pub fn parse_span(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms).filter(|v| *v > 0)
}

/// Output format of a rendered report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Html,
    Md,
    Json,
}

impl Format {
    pub fn render(self, r: &Report) -> String {
        match self {
            Format::Html => report::html::render(r),
            Format::Md => report::markdown::render(r),
            Format::Json => r.to_json(),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Md => "text/markdown; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

#[derive(Debug, Deserialize)]
struct LatestQuery {
    #[serde(default)]
    format: Format,
    since: Option<String>,
}

async fn latest(State(svc): State<IncidentService>, Query(q): Query<LatestQuery>) -> Response {
    let span = match q.since.as_deref().map(parse_span) {
        None => 7 * 86_400_000,
        Some(Some(v)) => v,
        Some(None) => {
            return (
                StatusCode::BAD_REQUEST,
                "since: expected a span like 7d, 24h or 30m",
            )
                .into_response();
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    let period = Period {
        from_ms: now - span,
        to_ms: now,
    };
    let compare = Period {
        from_ms: now - 2 * span,
        to_ms: now - span,
    };
    let built = async {
        let pgss = PgssRows::stored(svc.store(), period, Some(compare)).await?;
        report_from_store(
            svc.store(),
            period,
            Some(compare),
            pgss,
            &ReportOptions::default(),
        )
        .await
    };
    match built.await {
        Ok(r) => (
            [(header::CONTENT_TYPE, q.format.content_type())],
            q.format.render(&r),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "report failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store could not be read",
            )
                .into_response()
        }
    }
}

/// `GET /reports/latest`.
pub fn routes() -> Router<IncidentService> {
    Router::new().route("/reports/latest", get(latest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(parse_span("7d"), Some(7 * 86_400_000));
        assert_eq!(parse_span("90m"), Some(90 * 60_000));
        assert_eq!(parse_span("2w"), Some(14 * 86_400_000));
        assert_eq!(parse_span("0h"), None);
        assert_eq!(parse_span("7"), None);
        assert_eq!(parse_span("d"), None);
    }
}
