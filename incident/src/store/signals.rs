//! Storing signal batches: idempotent on [`Signal::id`], query statistics merged into their
//! minute buckets and `pg_stat_statements` snapshots stored in the same transaction.
//!
//! The SQLite path is shaped by how sqlx drives SQLite: every statement, and every row a
//! statement returns, is a hand-off between the caller's task and the connection's worker
//! thread (a channel send and a wake-up each). A batch therefore costs a fixed handful of
//! statements whatever its size: the transaction starts with `BEGIN IMMEDIATE` (the write lock
//! up front, so no other writer can store an id between the check and the insert), one `SELECT`
//! finds the ids already stored (normally none, so no rows cross), one multi-row `INSERT` stores
//! the rest without `RETURNING`, and the query statistics of the whole batch are merged with
//! three statements (see [`query_stats`]). PostgreSQL (several replicas may race on an id) keeps
//! `INSERT ... ON CONFLICT DO NOTHING RETURNING id`, whose rows arrive in one network response.

use std::collections::HashSet;

use sqlx::Row;
use vigil_signal::Signal;

use super::{
    AnyQuery, Backend, InsertReport, Store, StoreError, enum_str, ms, pgss, placeholders,
    query_stats,
};

/// Rows per multi-row `INSERT` (10 parameters a row; SQLite allows 32,766, PostgreSQL 65,535).
const SQLITE_ROWS: usize = 256;
const POSTGRES_ROWS: usize = 500;
/// Ids per `SELECT ... WHERE id IN (...)` existence check.
const CHECK_IDS: usize = 500;

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

/// `INSERT INTO signals ... VALUES` for `rows` rows, with `tail` appended.
fn insert_sql(sqlite: bool, rows: usize, tail: &str) -> String {
    let mut sql = String::from(
        "INSERT INTO signals (id, time_ms, received_ms, source, channel, provider, outcome, class, count, body) VALUES ",
    );
    sql.push_str(&placeholders(sqlite, rows, 10));
    sql.push_str(tail);
    sql
}

impl Store {
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
        if signals.is_empty() {
            return Ok((report, Vec::new()));
        }
        let now = chrono::Utc::now().timestamp_millis();
        // The first occurrence of an id in the batch is the candidate; repeats are duplicates.
        let mut seen = HashSet::with_capacity(signals.len());
        let firsts: Vec<usize> = (0..signals.len())
            .filter(|&i| seen.insert(signals[i].id.as_str()))
            .collect();
        let sqlite = self.backend == Backend::Sqlite;
        let mut fresh = vec![false; signals.len()];
        let mut tx = if sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.pool.begin().await?
        };
        if sqlite {
            // Holding the write lock: what is not stored now is stored by this transaction.
            let mut stored: HashSet<String> = HashSet::new();
            for chunk in firsts.chunks(CHECK_IDS) {
                let mut sql = String::from("SELECT id FROM signals WHERE id IN (");
                for k in 0..chunk.len() {
                    sql.push_str(if k == 0 { "?" } else { ", ?" });
                }
                sql.push(')');
                // Only placeholders are interpolated; every value is bound.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for &i in chunk {
                    q = q.bind(signals[i].id.as_str());
                }
                for row in q.fetch_all(&mut *tx).await? {
                    stored.insert(row.try_get::<String, _>(0)?);
                }
            }
            let new: Vec<usize> = firsts
                .into_iter()
                .filter(|&i| !stored.contains(&signals[i].id))
                .collect();
            for chunk in new.chunks(SQLITE_ROWS) {
                let sql = insert_sql(true, chunk.len(), "");
                let q = bind_rows(sqlx::query(sqlx::AssertSqlSafe(sql)), signals, chunk, now)?;
                let done = q.execute(&mut *tx).await?;
                if done.rows_affected() != chunk.len() as u64 {
                    return Err(StoreError::Corrupt(
                        "signals: rows stored differ from rows checked under the write lock",
                    ));
                }
            }
            for i in new {
                fresh[i] = true;
            }
        } else {
            // Rows in id order: two replicas storing overlapping batches take the unique
            // index's locks in the same order, so they wait for each other instead of
            // deadlocking.
            let mut ordered = firsts.clone();
            ordered.sort_unstable_by(|&a, &b| signals[a].id.cmp(&signals[b].id));
            let mut inserted: HashSet<String> = HashSet::new();
            for chunk in ordered.chunks(POSTGRES_ROWS) {
                let sql = insert_sql(
                    false,
                    chunk.len(),
                    " ON CONFLICT (id) DO NOTHING RETURNING id",
                );
                let q = bind_rows(sqlx::query(sqlx::AssertSqlSafe(sql)), signals, chunk, now)?;
                for row in q.fetch_all(&mut *tx).await? {
                    inserted.insert(row.try_get::<String, _>(0)?);
                }
            }
            for i in firsts {
                fresh[i] = inserted.contains(&signals[i].id);
            }
        }
        let mut stats = Vec::new();
        for (s, &new) in signals.iter().zip(&fresh) {
            if !new {
                report.duplicates += 1;
                continue;
            }
            report.inserted += 1;
            if let Some(q) = &s.query {
                stats.push((s, &**q));
            }
            if let Some(p) = &s.pgss {
                pgss::insert(&mut tx, self.backend, s, p).await?;
            }
        }
        query_stats::merge_minutes(&mut tx, self.backend, &stats).await?;
        tx.commit().await?;
        Ok((report, fresh))
    }
}

/// Bind the 10 columns of each signal of `rows`.
fn bind_rows<'q>(
    mut q: AnyQuery<'q>,
    signals: &'q [Signal],
    rows: &[usize],
    now: i64,
) -> Result<AnyQuery<'q>, StoreError> {
    for &i in rows {
        let s = &signals[i];
        q = q
            .bind(s.id.as_str())
            .bind(ms(s.time))
            .bind(now)
            .bind(enum_str(&s.source))
            .bind(enum_str(&s.channel))
            .bind(s.provider.as_deref())
            .bind(enum_str(&s.outcome))
            .bind(s.class.as_deref())
            .bind(i64::try_from(s.count).unwrap_or(i64::MAX))
            .bind(body(s)?);
    }
    Ok(q)
}
