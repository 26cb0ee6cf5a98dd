//! Per-fingerprint statistics history for reports: one-minute buckets as the pg proxies publish
//! them (merged across replicas), rolled up to hourly buckets after a configurable age.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::any::Any;
use sqlx::{Row, Transaction};
use vigil_signal::{QueryStats, Signal};

use super::{AnyQuery, Backend, Store, StoreError, placeholder_groups};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// Bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
        }
    }
}

/// Extra, rarely filtered fields kept as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Extra {
    #[serde(default)]
    sqlstates: BTreeMap<String, u64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    tables: Vec<String>,
    /// The latest captured plan (literals already stripped by the proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plan: Option<String>,
}

/// One stored bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryStatsRow {
    pub resolution: Resolution,
    pub bucket_ms: i64,
    pub stats: QueryStats,
}

fn u(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Merge `b` into `a` (same fingerprint/database/role): sums add, extremes widen, percentiles
/// take the larger value (a conservative upper bound; the true merged percentile is not
/// recoverable from summaries).
fn merge(a: &mut QueryStats, b: &QueryStats) {
    let first = a.calls == 0 && a.errors == 0;
    a.calls += b.calls;
    a.errors += b.errors;
    a.rows += b.rows;
    a.total_seconds += b.total_seconds;
    a.min_seconds = if first {
        b.min_seconds
    } else {
        a.min_seconds.min(b.min_seconds)
    };
    a.max_seconds = a.max_seconds.max(b.max_seconds);
    a.p50_seconds = a.p50_seconds.max(b.p50_seconds);
    a.p95_seconds = a.p95_seconds.max(b.p95_seconds);
    a.p99_seconds = a.p99_seconds.max(b.p99_seconds);
    a.pool_wait_seconds += b.pool_wait_seconds;
    a.cache_hits += b.cache_hits;
    a.cache_misses += b.cache_misses;
    a.cache_bypasses += b.cache_bypasses;
    a.cache_saved_seconds += b.cache_saved_seconds;
    for (k, v) in &b.sqlstates {
        *a.sqlstates.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &b.tags {
        a.tags.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if a.kind.is_none() {
        a.kind.clone_from(&b.kind);
    }
    for t in &b.tables {
        if !a.tables.contains(t) {
            a.tables.push(t.clone());
        }
    }
    if a.query.is_empty() {
        a.query.clone_from(&b.query);
    }
    if b.plan.is_some() {
        a.plan.clone_from(&b.plan);
    }
}

const SELECT_BUCKETS: &str = "SELECT fingerprint, database_name, role_name, query, calls, errors, row_count, total_seconds, \
     min_seconds, max_seconds, p50_seconds, p95_seconds, p99_seconds, pool_wait_seconds, cache_hits, \
     cache_misses, cache_bypasses, cache_saved_seconds, extra, resolution, bucket_ms FROM query_stats";

fn decode(r: &sqlx::any::AnyRow) -> Result<QueryStatsRow, StoreError> {
    let g = |i: usize| -> Result<u64, StoreError> {
        let v: i64 = r.try_get(i)?;
        Ok(u64::try_from(v).unwrap_or_default())
    };
    let extra: String = r.try_get(18)?;
    let extra: Extra = serde_json::from_str(&extra)?;
    let resolution: String = r.try_get(19)?;
    let resolution = match resolution.as_str() {
        "minute" => Resolution::Minute,
        "hour" => Resolution::Hour,
        _ => return Err(StoreError::Corrupt("query_stats.resolution")),
    };
    Ok(QueryStatsRow {
        resolution,
        bucket_ms: r.try_get(20)?,
        stats: QueryStats {
            fingerprint: r.try_get(0)?,
            database: r.try_get(1)?,
            role: r.try_get(2)?,
            query: r.try_get(3)?,
            calls: g(4)?,
            errors: g(5)?,
            rows: g(6)?,
            total_seconds: r.try_get(7)?,
            min_seconds: r.try_get(8)?,
            max_seconds: r.try_get(9)?,
            p50_seconds: r.try_get(10)?,
            p95_seconds: r.try_get(11)?,
            p99_seconds: r.try_get(12)?,
            pool_wait_seconds: r.try_get(13)?,
            cache_hits: g(14)?,
            cache_misses: g(15)?,
            cache_bypasses: g(16)?,
            cache_saved_seconds: r.try_get(17)?,
            sqlstates: extra.sqlstates,
            tags: extra.tags,
            kind: extra.kind,
            tables: extra.tables,
            plan: extra.plan,
        },
    })
}

/// A bucket's key: fingerprint, database, role, bucket start.
type BucketKey = (String, String, String, i64);

/// Buckets per statement (21 parameters a row for the upsert).
const BUCKET_ROWS: usize = 100;

const UPSERT_TAIL: &str = " ON CONFLICT (fingerprint, database_name, role_name, resolution, bucket_ms) DO UPDATE SET \
     query = excluded.query, calls = excluded.calls, errors = excluded.errors, row_count = excluded.row_count, \
     total_seconds = excluded.total_seconds, min_seconds = excluded.min_seconds, \
     max_seconds = excluded.max_seconds, p50_seconds = excluded.p50_seconds, \
     p95_seconds = excluded.p95_seconds, p99_seconds = excluded.p99_seconds, \
     pool_wait_seconds = excluded.pool_wait_seconds, cache_hits = excluded.cache_hits, \
     cache_misses = excluded.cache_misses, cache_bypasses = excluded.cache_bypasses, \
     cache_saved_seconds = excluded.cache_saved_seconds, extra = excluded.extra";

const COLUMNS: &str = "(fingerprint, database_name, role_name, resolution, bucket_ms, query, calls, \
     errors, row_count, total_seconds, min_seconds, max_seconds, p50_seconds, p95_seconds, p99_seconds, \
     pool_wait_seconds, cache_hits, cache_misses, cache_bypasses, cache_saved_seconds, extra)";

/// Bind the 5 key columns (fingerprint, database, role, resolution, bucket) of each bucket.
fn bind_keys<'q>(
    mut q: AnyQuery<'q>,
    chunk: &[(&'q BucketKey, &QueryStats)],
    resolution: Resolution,
) -> AnyQuery<'q> {
    for ((fp, db, role, bucket), _) in chunk {
        q = q.bind(fp.as_str()).bind(db.as_str()).bind(role.as_str());
        q = q.bind(resolution.as_str()).bind(*bucket);
    }
    q
}

/// Merge summed statistics into their `resolution` buckets (read-modify-write inside `tx`),
/// with three statements per [`BUCKET_ROWS`] buckets: empty rows are inserted first (`DO
/// NOTHING`) so that concurrent writers (several replicas on PostgreSQL) serialize on the row
/// locks that `SELECT ... FOR UPDATE` then takes in key order instead of losing an update; the
/// merged rows are written back with one multi-row upsert.
async fn merge_buckets(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    resolution: Resolution,
    items: &BTreeMap<BucketKey, QueryStats>,
) -> Result<(), StoreError> {
    let sqlite = backend == Backend::Sqlite;
    let entries: Vec<(&BucketKey, &QueryStats)> = items.iter().collect();
    for chunk in entries.chunks(BUCKET_ROWS) {
        let mut sql = format!("INSERT INTO query_stats {COLUMNS} VALUES ");
        sql.push_str(&placeholder_groups(
            sqlite,
            chunk.len(),
            5,
            ", '', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '{}'",
        ));
        sql.push_str(
            " ON CONFLICT (fingerprint, database_name, role_name, resolution, bucket_ms) DO NOTHING",
        );
        // Only placeholders are interpolated; every value is bound.
        bind_keys(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk, resolution)
            .execute(&mut **tx)
            .await?;

        let mut sql = format!(
            "{SELECT_BUCKETS} WHERE (fingerprint, database_name, role_name, resolution, bucket_ms) IN (VALUES "
        );
        sql.push_str(&placeholder_groups(sqlite, chunk.len(), 5, ""));
        sql.push_str(") ORDER BY fingerprint, database_name, role_name, bucket_ms");
        if !sqlite {
            sql.push_str(" FOR UPDATE");
        }
        let q = bind_keys(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk, resolution);
        let mut stored: BTreeMap<BucketKey, QueryStats> = BTreeMap::new();
        for row in q.fetch_all(&mut **tx).await? {
            let row = decode(&row)?;
            let key = (
                row.stats.fingerprint.clone(),
                row.stats.database.clone(),
                row.stats.role.clone(),
                row.bucket_ms,
            );
            stored.insert(key, row.stats);
        }

        let mut sql = format!("INSERT INTO query_stats {COLUMNS} VALUES ");
        sql.push_str(&placeholder_groups(sqlite, chunk.len(), 21, ""));
        sql.push_str(UPSERT_TAIL);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (key, add) in chunk {
            let mut merged = stored.remove(*key).unwrap_or_default();
            merge(&mut merged, add);
            let extra = serde_json::to_string(&Extra {
                sqlstates: merged.sqlstates,
                tags: merged.tags,
                kind: merged.kind,
                tables: merged.tables,
                plan: merged.plan,
            })?;
            q = q
                .bind(key.0.as_str())
                .bind(key.1.as_str())
                .bind(key.2.as_str())
                .bind(resolution.as_str())
                .bind(key.3)
                .bind(merged.query)
                .bind(u(merged.calls))
                .bind(u(merged.errors))
                .bind(u(merged.rows))
                .bind(merged.total_seconds)
                .bind(merged.min_seconds)
                .bind(merged.max_seconds)
                .bind(merged.p50_seconds)
                .bind(merged.p95_seconds)
                .bind(merged.p99_seconds)
                .bind(merged.pool_wait_seconds)
                .bind(u(merged.cache_hits))
                .bind(u(merged.cache_misses))
                .bind(u(merged.cache_bypasses))
                .bind(merged.cache_saved_seconds)
                .bind(extra);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Merge the statistics of newly stored signals into their minute buckets (inside the insert
/// transaction, so a signal id is counted exactly once). Signals are summed per bucket first,
/// so a batch costs the same few statements however many statistics it carries.
pub(super) async fn merge_minutes(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    stats: &[(&Signal, &QueryStats)],
) -> Result<(), StoreError> {
    if stats.is_empty() {
        return Ok(());
    }
    let mut buckets: BTreeMap<BucketKey, QueryStats> = BTreeMap::new();
    for (signal, q) in stats {
        let bucket = signal.time.timestamp_millis().div_euclid(MINUTE_MS) * MINUTE_MS;
        let key = (
            q.fingerprint.clone(),
            q.database.clone(),
            q.role.clone(),
            bucket,
        );
        merge(buckets.entry(key).or_default(), q);
    }
    merge_buckets(tx, backend, Resolution::Minute, &buckets).await
}

impl Store {
    /// Buckets with `from_ms <= bucket < to_ms`, both resolutions, ordered by fingerprint and time.
    pub async fn query_stats_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<QueryStatsRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT fingerprint, database_name, role_name, query, calls, errors, row_count, total_seconds, \
             min_seconds, max_seconds, p50_seconds, p95_seconds, p99_seconds, pool_wait_seconds, cache_hits, \
             cache_misses, cache_bypasses, cache_saved_seconds, extra, resolution, bucket_ms FROM query_stats \
             WHERE bucket_ms >= $1 AND bucket_ms < $2 ORDER BY fingerprint, database_name, role_name, bucket_ms, resolution",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    /// Roll minute buckets older than `before_ms` up into hourly buckets and delete them, in one
    /// transaction. Returns the number of minute buckets rolled up.
    pub async fn rollup_query_stats(&self, before_ms: i64) -> Result<u64, StoreError> {
        let cutoff = before_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let sqlite = self.backend() == Backend::Sqlite;
        // SQLite: the write lock up front (a deferred transaction that reads first could not
        // upgrade past a concurrent writer). PostgreSQL: lock the minute rows read, so a late
        // signal merged into one of them waits and lands in a bucket that is still there.
        let mut tx = if sqlite {
            self.pool().begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.pool().begin().await?
        };
        let lock = if sqlite { "" } else { " FOR UPDATE" };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_BUCKETS} WHERE resolution = 'minute' AND bucket_ms < $1 \
             ORDER BY fingerprint, database_name, role_name, bucket_ms{lock}"
        )))
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let mut hours: BTreeMap<BucketKey, QueryStats> = BTreeMap::new();
        for r in &rows {
            let row = decode(r)?;
            let hour = row.bucket_ms.div_euclid(HOUR_MS) * HOUR_MS;
            let key = (
                row.stats.fingerprint.clone(),
                row.stats.database.clone(),
                row.stats.role.clone(),
                hour,
            );
            merge(hours.entry(key).or_default(), &row.stats);
        }
        merge_buckets(&mut tx, self.backend(), Resolution::Hour, &hours).await?;
        sqlx::query("DELETE FROM query_stats WHERE resolution = 'minute' AND bucket_ms < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Delete hourly buckets older than `before_ms`.
    pub async fn delete_query_stats_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM query_stats WHERE bucket_ms < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
