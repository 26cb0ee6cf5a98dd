//! The persistent notification outbox: at-least-once delivery that survives restarts.
//!
//! Every notification is enqueued with a `dedup_key` (incident, event, sequence, receiver) that is
//! unique in the table, so enqueuing the same page twice (a restart re-evaluating the same
//! transition, two replicas seeing the same incident) stores it once. Senders claim due rows with
//! a lease: on PostgreSQL with `FOR UPDATE SKIP LOCKED` so concurrent replicas never claim the same
//! row; on SQLite the claiming UPDATE is serialized by the database's single writer.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Backend, Store, StoreError};

/// A notification to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: String,
    pub dedup_key: String,
    pub incident_id: String,
    /// Name of the receiver in the rules (`slack-oncall`, `pagerduty`, ...).
    pub receiver: String,
    /// The rendered notification (JSON of [`crate::notify::Notification`]).
    pub payload: String,
}

/// A row claimed for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedNotification {
    pub id: String,
    pub dedup_key: String,
    pub incident_id: String,
    pub receiver: String,
    pub payload: String,
    /// Attempts including this one.
    pub attempts: u32,
}

/// Counts by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
}

const CLAIM_PG: &str = "UPDATE outbox SET lease_owner = $1, lease_until_ms = $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_ms <= $3 \
     AND (lease_until_ms IS NULL OR lease_until_ms < $3) ORDER BY created_ms, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
     RETURNING id, dedup_key, incident_id, receiver, payload, attempts";
const CLAIM_SQLITE: &str = "UPDATE outbox SET lease_owner = $1, lease_until_ms = $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_ms <= $3 \
     AND (lease_until_ms IS NULL OR lease_until_ms < $3) ORDER BY created_ms, id LIMIT $4) \
     RETURNING id, dedup_key, incident_id, receiver, payload, attempts";

impl Store {
    /// Enqueue; returns false when a notification with the same dedup key already exists.
    pub async fn enqueue_notification(
        &self,
        e: &OutboxEntry,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        enqueue_notification_on(self.pool(), e, now_ms).await
    }

    /// Claim up to `limit` due notifications for `owner` until `now_ms + lease_ms`.
    pub async fn claim_notifications(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedNotification>, StoreError> {
        let sql = match self.backend() {
            Backend::Postgres => CLAIM_PG,
            Backend::Sqlite => CLAIM_SQLITE,
        };
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let attempts: i64 = r.try_get(5)?;
                Ok(ClaimedNotification {
                    id: r.try_get(0)?,
                    dedup_key: r.try_get(1)?,
                    incident_id: r.try_get(2)?,
                    receiver: r.try_get(3)?,
                    payload: r.try_get(4)?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Mark a claimed notification sent (only while `owner` still holds its lease).
    pub async fn mark_sent(&self, id: &str, owner: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'sent', sent_ms = $1, lease_owner = NULL, lease_until_ms = NULL \
             WHERE id = $2 AND lease_owner = $3 AND state = 'pending'",
        )
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Record a failed attempt: retry at `retry_at_ms`, or give up (`retry_at_ms = None`).
    pub async fn mark_failed(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let (state, next) = match retry_at_ms {
            Some(at) => ("pending", at),
            None => ("failed", 0),
        };
        sqlx::query(
            "UPDATE outbox SET state = $1, next_attempt_ms = $2, last_error = $3, lease_owner = NULL, \
             lease_until_ms = NULL WHERE id = $4 AND lease_owner = $5",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Put a claimed notification back untried until `at_ms` (a receiver's rate limit): the
    /// claim does not count as an attempt.
    pub async fn defer_notification(
        &self,
        id: &str,
        owner: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET next_attempt_ms = $1, attempts = attempts - 1, lease_owner = NULL, \
             lease_until_ms = NULL WHERE id = $2 AND lease_owner = $3 AND state = 'pending'",
        )
        .bind(at_ms)
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            .fetch_all(self.pool())
            .await?;
        let mut stats = OutboxStats::default();
        for r in &rows {
            let state: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            let n = u64::try_from(n).unwrap_or_default();
            match state.as_str() {
                "pending" => stats.pending = n,
                "sent" => stats.sent = n,
                "failed" => stats.failed = n,
                _ => return Err(StoreError::Corrupt("outbox.state")),
            }
        }
        Ok(stats)
    }
}

/// [`Store::enqueue_notification`] on a pool or an open transaction.
pub(crate) async fn enqueue_notification_on<'e, E>(
    ex: E,
    e: &OutboxEntry,
    now_ms: i64,
) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query(
        "INSERT INTO outbox (id, dedup_key, incident_id, receiver, payload, state, attempts, next_attempt_ms, created_ms) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(e.id.as_str())
    .bind(e.dedup_key.as_str())
    .bind(e.incident_id.as_str())
    .bind(e.receiver.as_str())
    .bind(e.payload.as_str())
    .bind(now_ms)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}
