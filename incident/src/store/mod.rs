//! The incident store: SQLite (embedded, the default) or PostgreSQL (shared, several replicas),
//! one portable migration set, epoch-millisecond times and JSON text columns.
//!
//! - this file: [`Store::open`], migrations, signals (idempotent on [`Signal::id`]).
//! - [`incidents`]: incidents, timeline, notes, silences.
//! - [`outbox`]: the persistent notification outbox with leased row claiming.
//! - [`query_stats`]: per-fingerprint minute buckets, hourly roll-up and retention.
//! - [`pgss`]: `pg_stat_statements` snapshots (migration 0002) and their retention.

pub mod incidents;
pub mod outbox;
pub mod pgss;
pub mod query_stats;

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::Duration;

use sqlx::any::{Any, AnyPoolOptions};

type AnyPool = sqlx::Pool<Any>;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Row, SqlSafeStr};
use vigil_signal::Signal;

pub use incidents::IncidentFilter;
pub use outbox::{ClaimedNotification, OutboxEntry, OutboxStats};
pub use query_stats::{QueryStatsRow, Resolution};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL scheme `{0}` (expected sqlite: or postgres:)")]
    UnsupportedScheme(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored JSON could not be read or written: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored value is invalid: {0}")]
    Corrupt(&'static str),
    #[error("incident {0} not found")]
    NotFound(String),
}

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Result of [`Store::insert_signals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertReport {
    /// Signals stored by this call.
    pub inserted: u64,
    /// Signals whose id was already stored (retries, replicas, replays).
    pub duplicates: u64,
}

/// A handle to the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

fn migrator() -> Migrator {
    let init = Migration::new(
        1,
        Cow::Borrowed("init"),
        MigrationType::Simple,
        include_str!("../../migrations/0001_init.sql").into_sql_str(),
        false,
    );
    let pgss = Migration::new(
        2,
        Cow::Borrowed("pgss snapshots"),
        MigrationType::Simple,
        include_str!("../../migrations/0002_pgss_snapshots.sql").into_sql_str(),
        false,
    );
    let mut m = Migrator::with_migrations(vec![init, pgss]);
    m.dangerous_set_table_name("vigil_schema_migrations");
    m
}

/// `rows` parenthesized groups of `cols` placeholders for a multi-row `VALUES`: anonymous `?`
/// for SQLite (sqlx looks each `$N` name up in a list, quadratic in the row count), `$N` for
/// PostgreSQL.
pub(crate) fn placeholders(sqlite: bool, rows: usize, cols: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..cols {
            if col > 0 {
                sql.push_str(", ");
            }
            if sqlite {
                sql.push('?');
            } else {
                sql.push_str(&format!("${}", row * cols + col + 1));
            }
        }
        sql.push(')');
    }
    sql
}

/// Milliseconds since the epoch of a signal time.
pub(crate) fn ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

impl Store {
    /// Open (creating if needed) and migrate: `sqlite://vigil.db`, `sqlite::memory:`,
    /// `postgres://user@host/db`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let scheme = url.split(':').next().unwrap_or_default();
        let (backend, url) = match scheme {
            "sqlite" => {
                let memory = url.contains(":memory:") || url.contains("mode=memory");
                let url = if memory || url.contains("mode=") {
                    url.to_string()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                (Backend::Sqlite, url)
            }
            "postgres" | "postgresql" => (Backend::Postgres, url.to_string()),
            other => return Err(StoreError::UnsupportedScheme(other.to_string())),
        };
        let memory = backend == Backend::Sqlite && url.contains("memory");
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if memory {
            // Every connection to `sqlite::memory:` is its own database: keep exactly one forever.
            options = options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else if backend == Backend::Sqlite {
            options = options.max_connections(4);
        } else {
            options = options.max_connections(8);
        }
        let pool = options.connect(&url).await?;
        if backend == Backend::Sqlite && !memory {
            // WAL lets readers (the API) run beside the writer; it is persistent in the file.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        migrator().run(&pool).await?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Store signals, skipping ids already stored; query statistics carried by newly stored
    /// signals are merged into their minute buckets in the same transaction.
    pub async fn insert_signals(&self, signals: &[Signal]) -> Result<InsertReport, StoreError> {
        Ok(self.insert_signals_detailed(signals).await?.0)
    }

    /// As [`Store::insert_signals`], also telling for each signal whether this call stored it.
    pub async fn insert_signals_detailed(
        &self,
        signals: &[Signal],
    ) -> Result<(InsertReport, Vec<bool>), StoreError> {
        let mut report = InsertReport::default();
        let mut fresh = Vec::with_capacity(signals.len());
        if signals.is_empty() {
            return Ok((report, fresh));
        }
        let now = chrono::Utc::now().timestamp_millis();
        // The first occurrence of an id in the batch is the candidate; repeats are duplicates.
        let mut seen = HashSet::new();
        let firsts: Vec<usize> = (0..signals.len())
            .filter(|&i| seen.insert(signals[i].id.as_str()))
            .collect();
        let mut inserted: HashSet<String> = HashSet::new();
        let mut tx = self.pool.begin().await?;
        // Multi-row inserts (10 parameters a row). SQLite gets anonymous `?` placeholders: sqlx
        // binds each parameter after asking SQLite for its name, and for `$N` names that lookup
        // scans the statement's name list, quadratic in the row count (at 32 rows with `$N` it
        // was 17% of ingest's CPU time, perf on bench/incident). With `?` there are no names and
        // a chunk can be longer: fewer statements, fewer hops to sqlx's SQLite worker thread.
        // PostgreSQL: `$N`, 500 rows (fewer round trips).
        let sqlite = self.backend == Backend::Sqlite;
        let rows = if sqlite { 128 } else { 500 };
        for chunk in firsts.chunks(rows) {
            let mut sql = String::from(
                "INSERT INTO signals (id, time_ms, received_ms, source, channel, provider, outcome, class, count, body) VALUES ",
            );
            sql.push_str(&placeholders(sqlite, chunk.len(), 10));
            sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
            // Only placeholders are interpolated; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in chunk {
                let s = &signals[i];
                q = q
                    .bind(s.id.clone())
                    .bind(ms(s.time))
                    .bind(now)
                    .bind(enum_str(&s.source))
                    .bind(enum_str(&s.channel))
                    .bind(s.provider.clone())
                    .bind(enum_str(&s.outcome))
                    .bind(s.class.clone())
                    .bind(i64::try_from(s.count).unwrap_or(i64::MAX))
                    .bind(body(s)?);
            }
            for row in q.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        }
        let mut first_flags = vec![false; signals.len()];
        for &i in &firsts {
            first_flags[i] = true;
        }
        for (i, s) in signals.iter().enumerate() {
            let new = first_flags[i] && inserted.contains(&s.id);
            fresh.push(new);
            if new {
                report.inserted += 1;
                if let Some(q) = &s.query {
                    query_stats::merge_minute(&mut tx, self.backend, s, q).await?;
                }
                if let Some(p) = &s.pgss {
                    pgss::insert(&mut tx, self.backend, s, p).await?;
                }
            } else {
                report.duplicates += 1;
            }
        }
        tx.commit().await?;
        Ok((report, fresh))
    }

    /// Number of stored signals.
    pub async fn count_signals(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM signals")
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// Signals with `from_ms <= time < to_ms`, in time order (used to rebuild detector state
    /// after a restart).
    pub async fn signals_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Signal>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM signals WHERE time_ms >= $1 AND time_ms < $2 ORDER BY time_ms, id",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get(0)?;
                Ok(serde_json::from_str(&body)?)
            })
            .collect()
    }

    /// Delete signals older than `before_ms`; returns how many.
    pub async fn delete_signals_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM signals WHERE time_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Close the pool (tests that simulate a restart).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A signal's stored JSON: a `pg_stat_statements` snapshot's entries live in their own tables
/// (see [`pgss`]), not twice.
fn body(s: &Signal) -> Result<String, StoreError> {
    if s.pgss.is_none() {
        return Ok(serde_json::to_string(s)?);
    }
    let mut head = s.clone();
    if let Some(p) = head.pgss.as_mut() {
        p.entries.clear();
    }
    Ok(serde_json::to_string(&head)?)
}

/// The serde name of a unit enum value (`Channel::Email` -> `email`).
pub(crate) fn enum_str<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
