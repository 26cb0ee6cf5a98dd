//! Periodic `pg_stat_statements` snapshots (`[queries.pgss]`, on by default): statements that
//! bypass the proxy (cron jobs, other clients) still reach the reports.
//!
//! Every `interval_secs` (and once at start) a background task reads, for each
//! `[[pg.databases]]` entry, on its own upstream connection (the database url's user, or the
//! first `[[pg.users]]` entry with a password; `SET statement_timeout` first), the heaviest
//! `max_entries` rows of `pg_stat_statements` by total execution time for that database
//! (top-level statements only; Vigil's own statements left out). Each text is normalized again
//! with the analyzer's fingerprinting (PostgreSQL 15 keeps the literal text of utility
//! statements: the constants are replaced by `$n` here, before anything leaves the process), so
//! rows merge with the proxy's own fingerprints by normalized text. One `pgss_snapshot` signal
//! per database and interval goes out through the signal emitter (bounded, drop-and-count).
//!
//! A database without the extension is skipped (one log line until it appears); a failing
//! upstream only fails its snapshot: nothing here touches the client path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Weak;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use vigil_signal::{Channel, Emitter, Outcome, PgssEntry, PgssSnapshot, Signal, Source};

use crate::pg::PgProxy;
use crate::pg::config::{DatabaseConfig, PgConfig};
use crate::pg::error::UpstreamError;
use crate::pg::upstream::{ConnectParams, ServerConn, UpstreamUrl};

/// The most rows one snapshot may keep, whatever the configuration says.
pub const MAX_ENTRIES_CAP: usize = 1000;

/// `[queries.pgss]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgssConfig {
    pub enabled: bool,
    /// Seconds between snapshots.
    pub interval_secs: u64,
    /// Rows kept per snapshot: the heaviest by total execution time (at most 1000).
    pub max_entries: usize,
    /// `statement_timeout` of the snapshot query, milliseconds.
    pub statement_timeout_ms: u64,
}

impl Default for PgssConfig {
    fn default() -> Self {
        PgssConfig {
            enabled: true,
            interval_secs: 300,
            max_entries: 500,
            statement_timeout_ms: 2000,
        }
    }
}

impl PgssConfig {
    /// The first bad field (relative to `queries.pgss`) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.interval_secs == 0 {
            return Err(("interval_secs", "must be at least 1".into()));
        }
        if self.max_entries == 0 || self.max_entries > MAX_ENTRIES_CAP {
            return Err(("max_entries", format!("must be 1 to {MAX_ENTRIES_CAP}")));
        }
        if self.statement_timeout_ms == 0 {
            return Err(("statement_timeout_ms", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// Why a snapshot was not taken (never names a statement).
#[derive(Debug, thiserror::Error)]
pub enum PgssError {
    #[error("pg_stat_statements is not installed in this database")]
    NoExtension,
    #[error(
        "no upstream user: the database url names none and no [[pg.users]] entry has a password"
    )]
    NoUser,
    #[error("invalid database url: {0}")]
    Url(#[from] crate::pg::upstream::UrlError),
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("timed out")]
    Timeout,
    #[error("unexpected value in column {0}")]
    Column(&'static str),
}

/// Vigil's own statements (this snapshot, plan capture, hypopg checks, resets) and catalog
/// reads: not the application's work.
const OWN_STATEMENTS: &str = "s.query !~* '^\\s*(explain|set |reset |select hypopg|show |begin read only|rollback|deallocate)' \
     AND s.query !~* 'pg_stat_statements|hypopg|pg_class|pg_stat_user_tables|pg_extension'";

/// Connect for snapshots: `SET statement_timeout` for the session.
pub async fn connect(params: &ConnectParams, timeout_ms: u64) -> Result<ServerConn, PgssError> {
    let mut conn = ServerConn::connect(params, 1).await?;
    conn.run(&format!(
        "SET statement_timeout = {timeout_ms}; SET application_name = 'vigil-pgss'"
    ))
    .await?;
    Ok(conn)
}

/// Re-normalize a `pg_stat_statements` text with the analyzer's fingerprinting: constants
/// become `$n` (also in utility statements, which PostgreSQL 15 keeps verbatim), so the text
/// carries no value and compares equal to the proxy's normalized text of the same statement.
pub fn renormalize(query: &str) -> String {
    vigil_analyzer::fingerprint(query).normalized
}

fn num<T: std::str::FromStr>(v: &Option<String>, col: &'static str) -> Result<T, PgssError> {
    v.as_deref()
        .and_then(|s| s.parse().ok())
        .ok_or(PgssError::Column(col))
}

/// Read one snapshot of the connection's database (`database` is the name it is published
/// under). Rows with the same `queryid` and role are added up.
pub async fn read_snapshot(
    conn: &mut ServerConn,
    database: &str,
    max_entries: usize,
) -> Result<PgssSnapshot, PgssError> {
    let installed = conn
        .run("SELECT current_setting('server_version_num') FROM pg_extension WHERE extname = 'pg_stat_statements'")
        .await?;
    let Some(version) = installed.first().and_then(|r| r.first()).cloned() else {
        return Err(PgssError::NoExtension);
    };
    let version: u32 = num(&version, "server_version_num")?;
    // PostgreSQL 13 renamed total_time; 14 added toplevel and pg_stat_statements_info.
    let total = if version >= 130_000 {
        "s.total_exec_time"
    } else {
        "s.total_time"
    };
    let toplevel = if version >= 140_000 {
        "AND s.toplevel"
    } else {
        ""
    };
    let limit = max_entries.clamp(1, MAX_ENTRIES_CAP);
    let sql = format!(
        "SELECT s.queryid::text, coalesce(r.rolname, s.userid::text), s.query, s.calls, {total} / 1000.0, s.rows \
         FROM pg_stat_statements s LEFT JOIN pg_roles r ON r.oid = s.userid \
         WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) {toplevel} \
         AND s.queryid IS NOT NULL AND {OWN_STATEMENTS} \
         ORDER BY {total} DESC LIMIT {limit}"
    );
    let rows = match conn.run(&sql).await {
        Ok(rows) => rows,
        // Installed but not in shared_preload_libraries: the view refuses to be read.
        Err(UpstreamError::Server(e)) if e.code() == "55000" => {
            return Err(PgssError::NoExtension);
        }
        Err(e) => return Err(e.into()),
    };
    let mut merged: BTreeMap<(String, String), PgssEntry> = BTreeMap::new();
    for r in &rows {
        let get = |i: usize| r.get(i).cloned().flatten();
        let queryid = get(0).ok_or(PgssError::Column("queryid"))?;
        let role = get(1).unwrap_or_default();
        let e = merged
            .entry((queryid.clone(), role.clone()))
            .or_insert_with(|| PgssEntry {
                queryid,
                role,
                query: renormalize(&get(2).unwrap_or_default()),
                ..Default::default()
            });
        e.calls += num::<u64>(&get(3), "calls")?;
        e.total_seconds += num::<f64>(&get(4), "total_exec_time")?;
        e.rows += num::<u64>(&get(5), "rows")?;
    }
    let stats_reset = if version >= 140_000 {
        let r = conn
            .run("SELECT to_char(stats_reset AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM pg_stat_statements_info")
            .await
            .unwrap_or_default();
        r.first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc))
    } else {
        None
    };
    Ok(PgssSnapshot {
        database: database.to_owned(),
        stats_reset,
        entries: merged.into_values().collect(),
    })
}

/// How the snapshot task reaches the upstream of `db`: the url's user and password, else the
/// first `[[pg.users]]` entry with a plain password.
pub fn upstream_params(pg: &PgConfig, db: &DatabaseConfig) -> Result<ConnectParams, PgssError> {
    let url = UpstreamUrl::parse(&db.url)?;
    let (user, password) = match url.user {
        Some(u) => {
            let password = url
                .password
                .or_else(|| pg.user(&u).and_then(|c| c.password.clone()));
            (u, password)
        }
        None => {
            let u = pg
                .users
                .iter()
                .find(|u| u.password.is_some())
                .ok_or(PgssError::NoUser)?;
            (u.name.clone(), u.password.clone())
        }
    };
    Ok(ConnectParams {
        host: url.host,
        port: url.port,
        user,
        password,
        database: url.database,
        connect_timeout: PgConfig::ms(pg.connect_timeout),
    })
}

type Labels = Vec<(&'static str, String)>;

/// `vigil_pgss_snapshots_total{database,result}` (result: ok, error, no_extension).
#[derive(Clone, Default)]
pub struct PgssMetrics {
    snapshots: Family<Labels, Counter>,
}

impl PgssMetrics {
    pub fn new(registry: &mut Registry) -> PgssMetrics {
        let m = PgssMetrics::default();
        registry.register(
            "vigil_pgss_snapshots",
            "pg_stat_statements snapshots attempted per database, by result (ok, error, no_extension)",
            m.snapshots.clone(),
        );
        m
    }

    fn count(&self, database: &str, result: &'static str) {
        self.snapshots
            .get_or_create(&vec![
                ("database", database.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }
}

/// The snapshot task's state: one connection per database, kept between snapshots.
struct Snapshotter {
    config: PgssConfig,
    emitter: Emitter,
    metrics: PgssMetrics,
    conns: HashMap<String, ServerConn>,
    /// Databases already logged as without the extension (logged again once it appears).
    quiet: HashSet<String>,
}

impl Snapshotter {
    async fn take(
        &mut self,
        pg: &PgConfig,
        db: &DatabaseConfig,
    ) -> Result<PgssSnapshot, PgssError> {
        let mut conn = match self.conns.remove(&db.name) {
            Some(c) => c,
            None => connect(&upstream_params(pg, db)?, self.config.statement_timeout_ms).await?,
        };
        let res = read_snapshot(&mut conn, &db.name, self.config.max_entries).await;
        if matches!(res, Ok(_) | Err(PgssError::NoExtension)) {
            self.conns.insert(db.name.clone(), conn);
        }
        res
    }

    async fn round(&mut self, pg: &PgConfig) {
        self.conns
            .retain(|name, _| pg.databases.iter().any(|d| &d.name == name));
        let budget = PgConfig::ms(pg.connect_timeout)
            + Duration::from_millis(self.config.statement_timeout_ms.saturating_mul(2))
            + Duration::from_secs(1);
        for db in &pg.databases {
            let taken = Utc::now();
            let res = match tokio::time::timeout(budget, self.take(pg, db)).await {
                Ok(r) => r,
                Err(_) => {
                    // The connection was dropped mid-query: a new one next time.
                    self.conns.remove(&db.name);
                    Err(PgssError::Timeout)
                }
            };
            match res {
                Ok(snapshot) => {
                    if self.quiet.remove(&db.name) {
                        tracing::info!(database = %db.name, "pg_stat_statements found; snapshots start");
                    }
                    self.metrics.count(&db.name, "ok");
                    tracing::debug!(database = %db.name, entries = snapshot.entries.len(), "pg_stat_statements snapshot");
                    self.emitter.emit(snapshot_signal(snapshot, taken));
                }
                Err(PgssError::NoExtension) => {
                    self.metrics.count(&db.name, "no_extension");
                    if self.quiet.insert(db.name.clone()) {
                        tracing::info!(database = %db.name, "pg_stat_statements is not installed (or not preloaded) there; no snapshots of this database");
                    }
                }
                Err(e) => {
                    self.metrics.count(&db.name, "error");
                    tracing::warn!(database = %db.name, error = %e, "pg_stat_statements snapshot failed");
                }
            }
        }
    }
}

/// The `pgss_snapshot` signal of `snapshot` taken at `taken`.
pub fn snapshot_signal(snapshot: PgssSnapshot, taken: DateTime<Utc>) -> Signal {
    Signal::new(Source::PgProxy, Channel::Db, Outcome::Succeeded)
        .with_id(format!(
            "pgss:{}:{}",
            snapshot.database,
            taken.timestamp_millis()
        ))
        .with_time(taken)
        .with_class("pgss_snapshot")
        .with_subject(snapshot.database.clone())
        .with_pgss(snapshot)
}

/// Start the snapshot task: a snapshot of every configured database at once, then every
/// `interval_secs`, reading the proxy's current configuration each time (reloads apply). Ends
/// with `shutdown` or when the proxy is gone.
pub fn spawn(
    config: PgssConfig,
    proxy: Weak<PgProxy>,
    emitter: Emitter,
    metrics: PgssMetrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(config.interval_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut s = Snapshotter {
            config,
            emitter,
            metrics,
            conns: HashMap::new(),
            quiet: HashSet::new(),
        };
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    let Some(pg) = proxy.upgrade().map(|p| p.config()) else { break };
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = s.round(&pg) => {}
                    }
                }
            }
        }
        for (_, c) in s.conns.drain() {
            c.terminate().await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renormalize_strips_constants_of_utility_statements() {
        let marker = "pgss-marker@example.com";
        // PostgreSQL 15 keeps utility statements verbatim, constants included.
        for q in [
            format!("COMMENT ON TABLE contacts IS '{marker}'"),
            format!("DO $$BEGIN PERFORM '{marker}'; END$$"),
            format!("CREATE TABLE t AS SELECT '{marker}'::text AS e"),
            format!("SELECT id FROM contacts WHERE email = '{marker}' AND id > 42"),
        ] {
            let n = renormalize(&q);
            assert!(!n.contains("marker"), "{n}");
            assert!(!n.contains("42"), "{n}");
        }
        // A pg_stat_statements text and the proxy's text of the same statement agree.
        assert_eq!(
            renormalize("SELECT id FROM contacts WHERE email = $1"),
            vigil_analyzer::fingerprint("select id from contacts where email = 'x@example.com'")
                .normalized
        );
    }

    #[test]
    fn config_bounds() {
        assert!(PgssConfig::default().validate().is_ok());
        let c = PgssConfig {
            max_entries: 1001,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "max_entries");
        let c = PgssConfig {
            interval_secs: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "interval_secs");
    }

    #[test]
    fn upstream_user_from_url_or_users() {
        let mut pg = PgConfig::default();
        let db = DatabaseConfig {
            name: "crm".into(),
            url: "postgres://127.0.0.1:5432/crm".into(),
            pool_size: None,
            pool_mode: None,
        };
        assert!(matches!(upstream_params(&pg, &db), Err(PgssError::NoUser)));
        pg.users.push(crate::pg::config::UserConfig {
            name: "app".into(),
            password: Some("pw".into()),
            scram_secret: None,
        });
        let p = upstream_params(&pg, &db).unwrap();
        assert_eq!(
            (p.user.as_str(), p.password.as_deref()),
            ("app", Some("pw"))
        );
        let db = DatabaseConfig {
            url: "postgres://owner:secret@127.0.0.1/crm_db".into(),
            ..db
        };
        let p = upstream_params(&pg, &db).unwrap();
        assert_eq!(p.user, "owner");
        assert_eq!(p.database, "crm_db");
    }
}
