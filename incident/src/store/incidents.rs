//! Incidents, their timeline and notes, and silences.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::outbox::{OutboxEntry, enqueue_notification_on};
use super::{Store, StoreError};
use crate::model::{
    Evidence, Incident, IncidentState, Layer, Note, Severity, Silence, TimelineEntry,
};

/// Filters for [`Store::list_incidents`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentFilter {
    pub state: Option<IncidentState>,
    pub channel: Option<String>,
    pub layer: Option<Layer>,
    /// Incidents updated at or after this time.
    pub since_ms: Option<i64>,
    /// Incidents opened before this time.
    pub until_ms: Option<i64>,
    pub limit: Option<u32>,
}

const INCIDENT_COLUMNS: &str = "id, correlation_key, state, severity, title, channel, layer, opened_ms, updated_ms, resolved_ms, evidence";

fn decode_incident(r: &AnyRow) -> Result<Incident, StoreError> {
    let state: String = r.try_get(2)?;
    let severity: String = r.try_get(3)?;
    let layer: String = r.try_get(6)?;
    let evidence: String = r.try_get(10)?;
    let evidence: Evidence = serde_json::from_str(&evidence)?;
    Ok(Incident {
        id: r.try_get(0)?,
        correlation_key: r.try_get(1)?,
        state: IncidentState::parse(&state).ok_or(StoreError::Corrupt("incidents.state"))?,
        severity: Severity::parse(&severity).ok_or(StoreError::Corrupt("incidents.severity"))?,
        title: r.try_get(4)?,
        channel: r.try_get(5)?,
        layer: Layer::parse(&layer).ok_or(StoreError::Corrupt("incidents.layer"))?,
        opened_ms: r.try_get(7)?,
        updated_ms: r.try_get(8)?,
        resolved_ms: r.try_get(9)?,
        evidence,
    })
}

impl Store {
    /// Insert or replace an incident (the correlator owns its state; this persists it).
    pub async fn upsert_incident(&self, i: &Incident) -> Result<(), StoreError> {
        upsert_incident_on(self.pool(), i).await
    }

    /// Persist incident changes (each an incident row and its timeline entry) and queue their
    /// notifications (each with its `at_ms`) in one transaction: a crash or a store error leaves
    /// all of it or none, so an incident is never stored without its page, nor a page queued for
    /// an incident that was not stored. Returns how many notifications were newly queued (a dedup
    /// key already queued is skipped, so a retried batch pages once).
    pub async fn persist_changes(
        &self,
        changes: &[(&Incident, &TimelineEntry)],
        notes: &[(OutboxEntry, i64)],
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool().begin().await?;
        for (i, t) in changes {
            upsert_incident_on(&mut *tx, i).await?;
            add_timeline_on(&mut *tx, t).await?;
        }
        let mut queued = 0;
        for (e, at_ms) in notes {
            if enqueue_notification_on(&mut *tx, e, *at_ms).await? {
                queued += 1;
            }
        }
        tx.commit().await?;
        Ok(queued)
    }

    pub async fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
        ));
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode_incident).transpose()
    }

    /// Incidents matching the filter, most recently updated first.
    pub async fn list_incidents(&self, f: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        // Every filter is bound as a parameter; an unset one is passed as NULL and disables itself.
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE \
             ($1 IS NULL OR state = $1) AND ($2 IS NULL OR channel = $2) AND ($3 IS NULL OR layer = $3) \
             AND ($4 IS NULL OR updated_ms >= $4) AND ($5 IS NULL OR opened_ms < $5) \
             ORDER BY updated_ms DESC, id LIMIT $6"
        ));
        let rows = sqlx::query(sql)
            .bind(f.state.map(|s| s.as_str()))
            .bind(f.channel.as_deref())
            .bind(f.layer.map(|l| l.as_str()))
            .bind(f.since_ms)
            .bind(f.until_ms)
            .bind(i64::from(f.limit.unwrap_or(500)))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_incident).collect()
    }

    /// Incidents not resolved, plus those resolved at or after `resolved_since_ms` (the
    /// correlator's working set after a restart: a relapse may reopen them).
    pub async fn active_incidents(
        &self,
        resolved_since_ms: i64,
    ) -> Result<Vec<Incident>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state <> 'resolved' OR resolved_ms >= $1 ORDER BY opened_ms, id"
        ));
        let rows = sqlx::query(sql)
            .bind(resolved_since_ms)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_incident).collect()
    }

    pub async fn add_timeline(&self, e: &TimelineEntry) -> Result<(), StoreError> {
        add_timeline_on(self.pool(), e).await
    }

    pub async fn timeline(&self, incident_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, incident_id, at_ms, kind, actor, detail FROM incident_timeline WHERE incident_id = $1 ORDER BY at_ms, id",
        )
        .bind(incident_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TimelineEntry {
                    id: r.try_get(0)?,
                    incident_id: r.try_get(1)?,
                    at_ms: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    actor: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            })
            .collect()
    }

    pub async fn add_note(&self, n: &Note) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO incident_notes (id, incident_id, at_ms, author, body) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(n.id.as_str())
        .bind(n.incident_id.as_str())
        .bind(n.at_ms)
        .bind(n.author.as_str())
        .bind(n.body.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn notes(&self, incident_id: &str) -> Result<Vec<Note>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, incident_id, at_ms, author, body FROM incident_notes WHERE incident_id = $1 ORDER BY at_ms, id",
        )
        .bind(incident_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Note {
                    id: r.try_get(0)?,
                    incident_id: r.try_get(1)?,
                    at_ms: r.try_get(2)?,
                    author: r.try_get(3)?,
                    body: r.try_get(4)?,
                })
            })
            .collect()
    }

    pub async fn add_silence(&self, s: &Silence, created_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO silences (id, matchers, starts_ms, ends_ms, created_by, comment, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(s.id.as_str())
        .bind(serde_json::to_string(&s.matchers)?)
        .bind(s.starts_ms)
        .bind(s.ends_ms)
        .bind(s.created_by.as_str())
        .bind(s.comment.as_str())
        .bind(created_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Silences that have not ended by `now_ms`.
    pub async fn silences(&self, now_ms: i64) -> Result<Vec<Silence>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, matchers, starts_ms, ends_ms, created_by, comment FROM silences WHERE ends_ms > $1 ORDER BY starts_ms, id",
        )
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let matchers: String = r.try_get(1)?;
                Ok(Silence {
                    id: r.try_get(0)?,
                    matchers: serde_json::from_str(&matchers)?,
                    starts_ms: r.try_get(2)?,
                    ends_ms: r.try_get(3)?,
                    created_by: r.try_get(4)?,
                    comment: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Delete resolved incidents (with their timeline and notes) resolved before `before_ms`.
    pub async fn delete_resolved_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM incident_timeline WHERE incident_id IN \
             (SELECT id FROM incidents WHERE state = 'resolved' AND resolved_ms < $1)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM incident_notes WHERE incident_id IN \
             (SELECT id FROM incidents WHERE state = 'resolved' AND resolved_ms < $1)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
        let done =
            sqlx::query("DELETE FROM incidents WHERE state = 'resolved' AND resolved_ms < $1")
                .bind(before_ms)
                .execute(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM outbox WHERE state <> 'pending' AND created_ms < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// [`Store::upsert_incident`] on a pool or an open transaction.
pub(crate) async fn upsert_incident_on<'e, E>(ex: E, i: &Incident) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let evidence = serde_json::to_string(&i.evidence)?;
    sqlx::query(
        "INSERT INTO incidents (id, correlation_key, state, severity, title, channel, layer, opened_ms, \
         updated_ms, resolved_ms, evidence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO UPDATE SET correlation_key = excluded.correlation_key, state = excluded.state, \
         severity = excluded.severity, title = excluded.title, channel = excluded.channel, \
         layer = excluded.layer, updated_ms = excluded.updated_ms, resolved_ms = excluded.resolved_ms, \
         evidence = excluded.evidence",
    )
    .bind(i.id.as_str())
    .bind(i.correlation_key.as_str())
    .bind(i.state.as_str())
    .bind(i.severity.as_str())
    .bind(i.title.as_str())
    .bind(i.channel.as_str())
    .bind(i.layer.as_str())
    .bind(i.opened_ms)
    .bind(i.updated_ms)
    .bind(i.resolved_ms)
    .bind(evidence)
    .execute(ex)
    .await?;
    Ok(())
}

/// [`Store::add_timeline`] on a pool or an open transaction.
pub(crate) async fn add_timeline_on<'e, E>(ex: E, e: &TimelineEntry) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO incident_timeline (id, incident_id, at_ms, kind, actor, detail) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(e.id.as_str())
    .bind(e.incident_id.as_str())
    .bind(e.at_ms)
    .bind(e.kind.as_str())
    .bind(e.actor.as_str())
    .bind(e.detail.as_str())
    .execute(ex)
    .await?;
    Ok(())
}
