//! The incident store: SQLite (embedded, the default) or PostgreSQL (shared, several replicas),
//! one portable migration set, epoch-millisecond times and JSON text columns.
//!
//! - this file: [`Store::open`], migrations, reading and deleting signals.
//! - `signals`: storing signal batches (idempotent on [`Signal::id`]).
//! - [`incidents`]: incidents, timeline, notes, silences.
//! - [`outbox`]: the persistent notification outbox with leased row claiming.
//! - [`query_stats`]: per-fingerprint minute buckets, hourly roll-up and retention.
//! - [`pgss`]: `pg_stat_statements` snapshots (migration 0002) and their retention.

pub mod incidents;
pub mod outbox;
pub mod pgss;
pub mod query_stats;
mod signals;

use std::borrow::Cow;
use std::time::Duration;

use sqlx::any::{Any, AnyPoolOptions};

type AnyPool = sqlx::Pool<Any>;
/// A query on the store's pool, for helpers that bind rows.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;
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
    placeholder_groups(sqlite, rows, cols, "")
}

/// As [`placeholders`], each group followed by `constants` (literal SQL values, `, '', 0`).
pub(crate) fn placeholder_groups(
    sqlite: bool,
    rows: usize,
    cols: usize,
    constants: &str,
) -> String {
    let mut sql = String::with_capacity(rows * (cols * 5 + constants.len() + 4));
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
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
        sql.push_str(constants);
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

/// The serde name of a unit enum value (`Channel::Email` -> `email`).
pub(crate) fn enum_str<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
