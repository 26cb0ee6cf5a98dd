//! `vigil report`: a heavy-query report from the incident store named by the config's
//! `[incident] store`, optionally merged with `pg_stat_statements` from the `[pg]` databases
//! (statements that bypass the proxy), rendered as HTML, Markdown or JSON.

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use vigil_analyzer::report::{Period, PgssRow, ReportOptions};
use vigil_incident::reports::{Format, parse_span, report_from_store};

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

/// Rows of `pg_stat_statements` of one upstream database, when the extension is installed there.
/// Vigil's own statements (plan capture, this import) are left out.
pub async fn pgss_rows(url: &str) -> anyhow::Result<Vec<PgssRow>> {
    let (client, conn) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .context("connect timed out")??;
    let task = tokio::spawn(conn);
    let installed = client
        .query_opt(
            "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'",
            &[],
        )
        .await?
        .is_some();
    let mut out = Vec::new();
    if installed {
        let rows = client
            .query(
                "SELECT d.datname, s.query, s.calls, s.total_exec_time / 1000.0, s.rows \
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
                 WHERE d.datname = current_database() AND s.query !~* '^\\s*(explain|set |reset |select hypopg|show |begin read only|rollback|deallocate)' \
                 AND s.query !~* 'pg_stat_statements|hypopg|pg_class|pg_stat_user_tables|pg_extension'",
                &[],
            )
            .await?;
        for r in rows {
            out.push(PgssRow {
                database: r.get(0),
                query: r.get(1),
                calls: u64::try_from(r.get::<_, i64>(2)).unwrap_or_default(),
                total_seconds: r.get(3),
                rows: u64::try_from(r.get::<_, i64>(4)).unwrap_or_default(),
            });
        }
    }
    drop(client);
    let _ = task.await;
    Ok(out)
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
    let mut pgss = Vec::new();
    if args.pgss
        && let Some(pg) = &config.pg
    {
        for db in &pg.databases {
            match pgss_rows(&db.url).await {
                Ok(rows) => pgss.extend(rows),
                Err(e) => eprintln!(
                    "vigil report: pg_stat_statements of database `{}` not read: {e}",
                    db.name
                ),
            }
        }
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
