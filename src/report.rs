//! `vigil report`: a heavy-query report from the incident store named by the config's
//! `[incident] store`, merged with `pg_stat_statements` (statements that bypass the proxy): the
//! deltas of the snapshots the pg proxy stored for the period, or, when none are stored, the
//! `[pg]` databases read at report time (unless `--no-pgss`); rendered as HTML, Markdown or
//! JSON.

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use vigil_analyzer::report::{Period, PgssRow, PgssSource, ReportOptions};
use vigil_incident::reports::{Format, PgssRows, parse_span, report_from_store};

use crate::config::Config;

/// What `vigil report` was asked for.
#[derive(Debug, Clone)]
pub struct ReportArgs {
    pub config: PathBuf,
    /// How far back the period starts (`7d`), from `until`.
    pub since: String,
    /// End of the period: a time (`2026-11-28T10:00:00Z`, `2026-11-28`) or a span ago (`1d`).
    pub until: Option<String>,
    /// `previous` (the period before, same length) or the start of the comparison period.
    pub compare: Option<String>,
    pub format: Format,
    /// Read `pg_stat_statements` at report time when no snapshots are stored for the period.
    pub pgss: bool,
}

/// A time argument: RFC 3339, a date (midnight UTC) or a span before `now`.
pub fn parse_time(s: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).context("date")?.and_utc();
        return Ok(t.timestamp_millis());
    }
    if let Some(span) = parse_span(s) {
        return Ok(now - span);
    }
    bail!("`{s}`: expected a time (2026-11-28T10:00:00Z), a date (2026-11-28) or a span ago (1d)")
}

/// The period and comparison period of the arguments.
pub fn periods(args: &ReportArgs, now: i64) -> anyhow::Result<(Period, Option<Period>)> {
    let span = parse_span(&args.since).with_context(|| {
        format!(
            "--since `{}`: expected a span like 7d, 24h or 30m",
            args.since
        )
    })?;
    let to = match &args.until {
        Some(u) => parse_time(u, now).context("--until")?,
        None => now,
    };
    let period = Period {
        from_ms: to - span,
        to_ms: to,
    };
    let compare = match args.compare.as_deref() {
        None => None,
        Some("previous") => Some(Period {
            from_ms: to - 2 * span,
            to_ms: to - span,
        }),
        Some(t) => {
            let from = parse_time(t, now).context("--compare")?;
            Some(Period {
                from_ms: from,
                to_ms: from + span,
            })
        }
    };
    Ok((period, compare))
}

/// `pg_stat_statements` of every `[pg.databases]` entry, read now (when no snapshots are stored
/// for the period): the same read, normalization and limits as the pg proxy's snapshots, with
/// cumulative counters.
async fn pgss_at_report_time(config: &Config) -> Vec<PgssRow> {
    use vigil_proxy::stats::pgss;
    let mut out = Vec::new();
    let Some(pg) = &config.pg else { return out };
    let limits = &config.queries.pgss;
    for db in &pg.databases {
        let read = async {
            let params = pgss::upstream_params(pg, db)?;
            let mut conn = pgss::connect(&params, limits.statement_timeout_ms).await?;
            let snap = pgss::read_snapshot(&mut conn, &db.name, limits.max_entries).await;
            conn.terminate().await;
            snap
        };
        match read.await {
            Ok(snap) => out.extend(snap.entries.into_iter().map(|e| PgssRow {
                database: db.name.clone(),
                query: e.query,
                calls: e.calls,
                total_seconds: e.total_seconds,
                rows: e.rows,
            })),
            Err(pgss::PgssError::NoExtension) => {}
            Err(e) => eprintln!(
                "vigil report: pg_stat_statements of database `{}` not read: {e}",
                db.name
            ),
        }
    }
    out
}

/// Build and render the report.
pub async fn report(args: &ReportArgs) -> anyhow::Result<String> {
    let config = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let incident = config
        .incident
        .as_ref()
        .context("the configuration has no [incident] section (the store to read)")?;
    let store = vigil_incident::Store::open(&incident.store)
        .await
        .with_context(|| "cannot open the [incident] store")?;
    let now = Utc::now().timestamp_millis();
    let (period, compare) = periods(args, now)?;
    let mut pgss = PgssRows::stored(&store, period, compare)
        .await
        .context("reading the stored pg_stat_statements snapshots")?;
    if pgss.source == PgssSource::None && args.pgss {
        pgss = PgssRows::at_report_time(pgss_at_report_time(&config).await);
    }
    let r = report_from_store(&store, period, compare, pgss, &ReportOptions::default())
        .await
        .context("reading the store")?;
    store.close().await;
    Ok(args.format.render(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(since: &str, until: Option<&str>, compare: Option<&str>) -> ReportArgs {
        ReportArgs {
            config: PathBuf::new(),
            since: since.into(),
            until: until.map(Into::into),
            compare: compare.map(Into::into),
            format: Format::Md,
            pgss: false,
        }
    }

    #[test]
    fn periods_from_arguments() {
        let now = 1_000 * 86_400_000;
        let (p, c) = periods(&args("7d", None, Some("previous")), now).unwrap();
        assert_eq!((p.from_ms, p.to_ms), (now - 7 * 86_400_000, now));
        assert_eq!(c.unwrap().to_ms, p.from_ms);
        let (p, c) = periods(&args("1d", Some("1970-01-03"), Some("1970-01-01")), now).unwrap();
        assert_eq!((p.from_ms, p.to_ms), (86_400_000, 2 * 86_400_000));
        assert_eq!(
            c.unwrap(),
            Period {
                from_ms: 0,
                to_ms: 86_400_000
            }
        );
        assert!(periods(&args("seven", None, None), now).is_err());
        assert!(periods(&args("7d", Some("yesterday"), None), now).is_err());
    }
}
