//! Stored `pg_stat_statements` snapshots (signals of class `pgss_snapshot`): one row per
//! snapshot, one per entry, and each normalized text once per fingerprint. Reports read them
//! back as the analyzer's [`PgssSnapshot`]s (deltas per period in
//! `vigil_analyzer::report::pgss`).

use std::collections::{BTreeMap, HashMap};

use sqlx::any::Any;
use sqlx::{Row, Transaction};
use vigil_analyzer::report::pgss::{PgssCounter, PgssSnapshot};
use vigil_signal::{PgssSnapshot as PgssSignal, Signal};

use super::{Backend, Store, StoreError, ms, placeholders};

fn u(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Store a newly stored signal's snapshot (inside the signal insert's transaction). A snapshot
/// id already stored is left alone.
pub(super) async fn insert(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    signal: &Signal,
    snap: &PgssSignal,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "INSERT INTO pgss_snapshots (id, database_name, taken_ms, stats_reset_ms, entry_count) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(signal.id.as_str())
    .bind(snap.database.as_str())
    .bind(ms(signal.time))
    .bind(snap.stats_reset.map(ms))
    .bind(i64::try_from(snap.entries.len()).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 || snap.entries.is_empty() {
        return Ok(());
    }
    // Normalized again here (a producer over HTTP may be older or foreign): no constant is
    // stored even if one slipped through.
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    let mut rows: BTreeMap<(&str, &str), (String, u64, f64, u64)> = BTreeMap::new();
    for e in &snap.entries {
        let f = vigil_analyzer::fingerprint(&e.query);
        let fp = f.hex();
        texts.entry(fp.clone()).or_insert(f.normalized);
        let r = rows
            .entry((e.queryid.as_str(), e.role.as_str()))
            .or_insert((fp, 0, 0.0, 0));
        r.1 += e.calls;
        r.2 += e.total_seconds;
        r.3 += e.rows;
    }
    let sqlite = backend == Backend::Sqlite;
    let texts: Vec<(String, String)> = texts.into_iter().collect();
    for chunk in texts.chunks(200) {
        let sql = format!(
            "INSERT INTO pgss_queries (fingerprint, query) VALUES {} ON CONFLICT (fingerprint) DO NOTHING",
            placeholders(sqlite, chunk.len(), 2)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (fp, text) in chunk {
            q = q.bind(fp.as_str()).bind(text.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    let rows: Vec<_> = rows.into_iter().collect();
    for chunk in rows.chunks(100) {
        let sql = format!(
            "INSERT INTO pgss_entries (snapshot_id, queryid, role_name, fingerprint, calls, total_seconds, row_count) VALUES {}",
            placeholders(sqlite, chunk.len(), 7)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((queryid, role), (fp, calls, secs, n)) in chunk {
            q = q
                .bind(signal.id.as_str())
                .bind(*queryid)
                .bind(*role)
                .bind(fp.as_str())
                .bind(u(*calls))
                .bind(*secs)
                .bind(u(*n));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

const ENTRIES: &str = "SELECT s.id, e.queryid, e.role_name, q.query, e.calls, e.total_seconds, e.row_count \
     FROM pgss_snapshots s JOIN pgss_entries e ON e.snapshot_id = s.id \
     JOIN pgss_queries q ON q.fingerprint = e.fingerprint";

impl Store {
    /// Snapshots for a report over `from_ms..until_ms`: per database (all, or `database`), the
    /// last one taken at or before `from_ms` (the baseline) and every one taken after it and
    /// before `until_ms`, each with its entries.
    pub async fn pgss_snapshots(
        &self,
        database: Option<&str>,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<PgssSnapshot>, StoreError> {
        // Headers: the baselines, then the snapshots inside the range.
        let heads = sqlx::query(
            "SELECT id, database_name, taken_ms FROM pgss_snapshots s \
             WHERE ($1 = '' OR s.database_name = $1) AND ((s.taken_ms > $2 AND s.taken_ms < $3) \
             OR s.taken_ms = (SELECT MAX(b.taken_ms) FROM pgss_snapshots b \
                              WHERE b.database_name = s.database_name AND b.taken_ms <= $2)) \
             ORDER BY s.database_name, s.taken_ms, s.id",
        )
        .bind(database.unwrap_or(""))
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<PgssSnapshot> = Vec::with_capacity(heads.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut baselines = Vec::new();
        for h in &heads {
            let id: String = h.try_get(0)?;
            let taken_ms: i64 = h.try_get(2)?;
            if taken_ms <= from_ms {
                baselines.push(id.clone());
            }
            index.insert(id, out.len());
            out.push(PgssSnapshot {
                database: h.try_get(1)?,
                taken_ms,
                entries: vec![],
            });
        }
        let mut fill = |rows: Vec<sqlx::any::AnyRow>| -> Result<(), StoreError> {
            for r in rows {
                let id: String = r.try_get(0)?;
                let Some(&i) = index.get(&id) else { continue };
                let g = |i: usize| -> Result<u64, StoreError> {
                    Ok(u64::try_from(r.try_get::<i64, _>(i)?).unwrap_or_default())
                };
                let queryid: String = r.try_get(1)?;
                let role: String = r.try_get(2)?;
                out[i].entries.push(PgssCounter {
                    key: format!("{queryid}/{role}"),
                    query: r.try_get(3)?,
                    calls: g(4)?,
                    total_seconds: r.try_get(5)?,
                    rows: g(6)?,
                });
            }
            Ok(())
        };
        let inside = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ENTRIES} WHERE ($1 = '' OR s.database_name = $1) AND s.taken_ms > $2 AND s.taken_ms < $3"
        )))
        .bind(database.unwrap_or(""))
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(self.pool())
        .await?;
        fill(inside)?;
        for id in baselines {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{ENTRIES} WHERE s.id = $1")))
                .bind(id)
                .fetch_all(self.pool())
                .await?;
            fill(rows)?;
        }
        Ok(out)
    }

    /// Number of stored snapshots (all databases).
    pub async fn count_pgss_snapshots(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM pgss_snapshots")
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or_default())
    }

    /// Delete snapshots taken before `before_ms`, their entries and the texts no entry uses any
    /// more; returns how many snapshots.
    pub async fn delete_pgss_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM pgss_entries WHERE snapshot_id IN \
             (SELECT id FROM pgss_snapshots WHERE taken_ms < $1)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM pgss_snapshots WHERE taken_ms < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM pgss_queries WHERE NOT EXISTS \
             (SELECT 1 FROM pgss_entries e WHERE e.fingerprint = pgss_queries.fingerprint)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
