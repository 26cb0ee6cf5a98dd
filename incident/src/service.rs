//! The incident service: ingest (store first, then detect), the clock tick that persists incident
//! changes and enqueues notifications in the outbox, manual actions, rules reload, retention, and
//! restart recovery (open incidents and the recent signal window are reloaded from the store, so
//! a restart attaches re-detected findings to the incidents it had instead of paging again).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use vigil_signal::Signal;

use crate::config::{ConfigError, IncidentConfig};
use crate::correlate::{Change, ChangeKind};
use crate::engine::{Engine, Notification};
use crate::metrics::Metrics;
use crate::model::{Incident, IncidentState, Note, Silence, TimelineEntry};
use crate::notify::Notifier;
use crate::rules::{Rules, RulesError};
use crate::store::outbox::OutboxEntry;
use crate::store::{Store, StoreError};

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("incident {0} not found")]
    NotFound(String),
    #[error("incident {id} is {state} and cannot be {action}")]
    Conflict {
        id: String,
        state: IncidentState,
        action: &'static str,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Result of [`IncidentService::ingest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct IngestReport {
    pub stored: u64,
    pub duplicates: u64,
    /// Refused: unknown schema version, empty id, zero count.
    pub invalid: u64,
}

/// Result of one tick.
#[derive(Debug, Clone, Default)]
pub struct TickReport {
    pub changes: Vec<(String, ChangeKind)>,
    pub notifications: usize,
}

struct Inner {
    config: IncidentConfig,
    store: Store,
    engine: Mutex<Engine>,
    rules: RwLock<Arc<Rules>>,
    metrics: Metrics,
    notifier: Notifier,
    /// Changes and notifications not yet persisted (a store outage during a tick).
    backlog: Mutex<Vec<(Vec<Change>, Vec<Notification>)>>,
    /// Serializes persistence so timeline order matches change order.
    persist: tokio::sync::Mutex<()>,
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct IncidentService {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl IncidentService {
    /// Validate the config, load the rules, open and migrate the store, register metrics and
    /// restore state after a restart.
    pub async fn new(
        config: IncidentConfig,
        registry: &mut Registry,
    ) -> Result<IncidentService, IncidentError> {
        config.validate()?;
        let rules = Rules::load_dir(&config.rules)?;
        let store = Store::open(&config.store).await?;
        let metrics = Metrics::new(registry);
        let notifier = Notifier::new(store.clone(), config.notifier.clone(), metrics.clone())?;
        let mut engine = Engine::new(rules.clone());
        let now = now_ms();
        // Restore: incidents still open or recently resolved, and the recent signal window.
        let reopen_ms = i64::try_from(rules.correlate.reopen_window_secs).unwrap_or(0) * 1000;
        let incidents = store.active_incidents(now - reopen_ms).await?;
        let mut timeline_len = BTreeMap::new();
        for i in &incidents {
            timeline_len.insert(i.id.clone(), store.timeline(&i.id).await?.len() as u32);
        }
        engine
            .correlator_mut()
            .restore(incidents, |id| timeline_len.get(id).copied().unwrap_or(0));
        let window_ms = i64::try_from(rules.detect.long_window_secs + 3600).unwrap_or(0) * 1000;
        for s in store.signals_between(now - window_ms, now + 60_000).await? {
            engine.observe(&s);
        }
        engine.set_silences(store.silences(now).await?);
        Ok(IncidentService {
            inner: Arc::new(Inner {
                config,
                store,
                engine: Mutex::new(engine),
                rules: RwLock::new(Arc::new(rules)),
                metrics,
                notifier,
                backlog: Mutex::new(Vec::new()),
                persist: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// One incident with its timeline and notes (the API's and the console's detail view).
    pub async fn incident_detail(
        &self,
        id: &str,
    ) -> Result<(Incident, Vec<TimelineEntry>, Vec<Note>), IncidentError> {
        let store = &self.inner.store;
        let incident = store
            .get_incident(id)
            .await?
            .ok_or_else(|| IncidentError::NotFound(id.to_owned()))?;
        let timeline = store.timeline(id).await?;
        let notes = store.notes(id).await?;
        Ok((incident, timeline, notes))
    }

    pub fn config(&self) -> &IncidentConfig {
        &self.inner.config
    }

    pub fn rules(&self) -> Arc<Rules> {
        self.inner
            .rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Store a batch, then run detection on the signals this call stored. Returns Ok only once
    /// the batch is durably stored (a Redis Streams consumer acknowledges after it).
    pub async fn ingest(&self, batch: &[Signal]) -> Result<IngestReport, IncidentError> {
        let started = Instant::now();
        let (valid, invalid): (Vec<&Signal>, Vec<&Signal>) =
            batch.iter().partition(|s| s.validate().is_ok());
        let valid: Vec<Signal> = valid.into_iter().cloned().collect();
        let (report, fresh) = self.inner.store.insert_signals_detailed(&valid).await?;
        {
            let mut engine = lock(&self.inner.engine);
            for (s, new) in valid.iter().zip(fresh) {
                if new {
                    engine.observe(s);
                }
            }
        }
        let m = &self.inner.metrics;
        m.signals_stored.inc_by(report.inserted);
        m.signals_duplicate.inc_by(report.duplicates);
        m.signals_invalid.inc_by(invalid.len() as u64);
        m.ingest_seconds.observe(started.elapsed().as_secs_f64());
        Ok(IngestReport {
            stored: report.inserted,
            duplicates: report.duplicates,
            invalid: invalid.len() as u64,
        })
    }

    async fn persist(
        &self,
        changes: Vec<Change>,
        notes: Vec<Notification>,
    ) -> Result<usize, StoreError> {
        let entries = notes
            .iter()
            .map(|n| {
                let entry = OutboxEntry {
                    id: uuid::Uuid::now_v7().to_string(),
                    dedup_key: n.dedup_key.clone(),
                    incident_id: n.incident_id.clone(),
                    receiver: n.receiver.clone(),
                    payload: serde_json::to_string(n)?,
                };
                Ok((entry, n.at_ms))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows: Vec<_> = changes.iter().map(|c| (&c.incident, &c.timeline)).collect();
        let queued = self.inner.store.persist_changes(&rows, &entries).await?;
        for c in &changes {
            self.inner.metrics.record_change(c);
        }
        Ok(queued)
    }

    async fn persist_with_backlog(
        &self,
        changes: Vec<Change>,
        notes: Vec<Notification>,
    ) -> Result<usize, IncidentError> {
        let _guard = self.inner.persist.lock().await;
        let mut pending = std::mem::take(&mut *lock(&self.inner.backlog));
        pending.push((changes, notes));
        let mut queued = 0;
        let mut iter = pending.into_iter();
        while let Some((c, n)) = iter.next() {
            match self.persist(c.clone(), n.clone()).await {
                Ok(q) => queued += q,
                Err(e) => {
                    let mut backlog = lock(&self.inner.backlog);
                    backlog.push((c, n));
                    backlog.extend(iter);
                    self.inner.metrics.tick_errors.inc();
                    return Err(e.into());
                }
            }
        }
        Ok(queued)
    }

    /// Advance detection to `now_ms`, persist changes, enqueue notifications.
    pub async fn tick(&self, now_ms: i64) -> Result<TickReport, IncidentError> {
        let (changes, notes) = lock(&self.inner.engine).tick(now_ms);
        let summary = changes
            .iter()
            .map(|c| (c.incident.id.clone(), c.kind))
            .collect();
        let queued = self.persist_with_backlog(changes, notes).await?;
        let (open, overdue) = {
            let engine = lock(&self.inner.engine);
            let open = engine
                .correlator()
                .incidents()
                .filter(|i| i.state != IncidentState::Resolved)
                .count();
            (open, engine.detector().overdue_outcomes(now_ms))
        };
        self.inner.metrics.incidents_open.set(open as i64);
        self.inner.metrics.set_missing_outcomes(&overdue);
        Ok(TickReport {
            changes: summary,
            notifications: queued,
        })
    }

    /// Send due notifications once.
    pub async fn deliver(&self, now_ms: i64) -> Result<usize, IncidentError> {
        let rules = self.rules();
        Ok(self.inner.notifier.run_once(&rules, now_ms).await?)
    }

    async fn manual(
        &self,
        id: &str,
        actor: &str,
        action: &'static str,
    ) -> Result<Incident, IncidentError> {
        let now = now_ms();
        let result = {
            let mut engine = lock(&self.inner.engine);
            let state = engine.correlator().get(id).map(|i| i.state);
            match state {
                None => None,
                Some(state) => {
                    let r = if action == "acknowledged" {
                        engine.acknowledge(id, actor, now)
                    } else {
                        engine.resolve(id, actor, now)
                    };
                    Some(r.ok_or(IncidentError::Conflict {
                        id: id.to_string(),
                        state,
                        action,
                    }))
                }
            }
        };
        match result {
            Some(r) => {
                let (change, notes) = r?;
                let incident = change.incident.clone();
                self.persist_with_backlog(vec![change], notes).await?;
                Ok(incident)
            }
            None => match self.inner.store.get_incident(id).await? {
                Some(i) => Err(IncidentError::Conflict {
                    id: id.to_string(),
                    state: i.state,
                    action,
                }),
                None => Err(IncidentError::NotFound(id.to_string())),
            },
        }
    }

    pub async fn acknowledge(&self, id: &str, actor: &str) -> Result<Incident, IncidentError> {
        self.manual(id, actor, "acknowledged").await
    }

    pub async fn resolve(&self, id: &str, actor: &str) -> Result<Incident, IncidentError> {
        self.manual(id, actor, "resolved").await
    }

    pub async fn add_note(
        &self,
        id: &str,
        author: &str,
        body: &str,
    ) -> Result<Note, IncidentError> {
        if body.trim().is_empty() || body.len() > 10_000 {
            return Err(IncidentError::Invalid(
                "note body must be 1 to 10000 bytes".into(),
            ));
        }
        if self.inner.store.get_incident(id).await?.is_none() {
            return Err(IncidentError::NotFound(id.to_string()));
        }
        let now = now_ms();
        let note = Note {
            id: uuid::Uuid::now_v7().to_string(),
            incident_id: id.to_string(),
            at_ms: now,
            author: author.to_string(),
            body: body.to_string(),
        };
        self.inner.store.add_note(&note).await?;
        let entry = lock(&self.inner.engine)
            .correlator_mut()
            .note_entry(id, author, now, body);
        let entry = entry.unwrap_or_else(|| crate::model::TimelineEntry {
            id: format!("{id}-note-{}", note.id),
            incident_id: id.to_string(),
            at_ms: now,
            kind: "note".into(),
            actor: author.to_string(),
            detail: body.chars().take(200).collect(),
        });
        self.inner.store.add_timeline(&entry).await?;
        Ok(note)
    }

    pub async fn add_silence(&self, silence: Silence) -> Result<Silence, IncidentError> {
        if silence.ends_ms <= silence.starts_ms {
            return Err(IncidentError::Invalid("ends must be after starts".into()));
        }
        let now = now_ms();
        self.inner.store.add_silence(&silence, now).await?;
        let active = self.inner.store.silences(now).await?;
        lock(&self.inner.engine).set_silences(active);
        Ok(silence)
    }

    /// Reload the rules directory; a broken file keeps the previous rules and counts an error.
    pub fn reload_rules(&self) -> Result<(), RulesError> {
        match Rules::load_dir(&self.inner.config.rules) {
            Ok(rules) => {
                lock(&self.inner.engine).set_rules(rules.clone());
                *self
                    .inner
                    .rules
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rules);
                self.inner.metrics.rules_reloads.inc();
                tracing::info!(dir = %self.inner.config.rules.display(), "rules reloaded");
                Ok(())
            }
            Err(e) => {
                self.inner.metrics.rules_errors.inc();
                tracing::error!(error = %e, "rules not reloaded; keeping the previous rules");
                Err(e)
            }
        }
    }

    /// Delete and roll up by the retention settings.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<(), IncidentError> {
        let r = &self.inner.config.retention;
        let day = 86_400_000i64;
        let s = &self.inner.store;
        s.delete_signals_before(now_ms - i64::from(r.signals_days) * day)
            .await?;
        s.delete_resolved_before(now_ms - i64::from(r.resolved_incidents_days) * day)
            .await?;
        s.rollup_query_stats(now_ms - i64::from(r.query_stats_rollup_after_hours) * 3_600_000)
            .await?;
        s.delete_query_stats_before(now_ms - i64::from(r.query_stats_days) * day)
            .await?;
        s.delete_pgss_before(now_ms - i64::from(r.pgss_days) * day)
            .await?;
        Ok(())
    }

    /// Serve the API and console on `listener` and run the background work, until `shutdown`
    /// resolves (then in-flight requests finish and the background task stops).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let background = self.spawn(async move {
            let _ = rx.changed().await;
        });
        let served = axum::serve(listener, self.api_router())
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = tx.send(true);
        let _ = background.await;
        served
    }

    /// Background work until `shutdown` resolves: ticks, outbox delivery, rules hot reload
    /// (watching the directory, debounced), hourly retention.
    pub fn spawn(
        &self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let svc = self.clone();
        tokio::spawn(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
            let _watcher = watch_rules(svc.inner.config.rules.clone(), tx);
            let mut tick = tokio::time::interval(Duration::from_secs(svc.inner.config.tick_secs));
            let mut poll = tokio::time::interval(Duration::from_millis(
                svc.inner.config.notifier.poll_interval_ms,
            ));
            let mut retention = tokio::time::interval(Duration::from_secs(3600));
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    _ = tick.tick() => {
                        if let Err(e) = svc.tick(now_ms()).await {
                            tracing::error!(error = %e, "tick failed; changes kept for the next tick");
                        }
                    }
                    _ = poll.tick() => {
                        if let Err(e) = svc.deliver(now_ms()).await {
                            tracing::error!(error = %e, "notification delivery failed");
                        }
                    }
                    _ = retention.tick() => {
                        if let Err(e) = svc.apply_retention(now_ms()).await {
                            tracing::error!(error = %e, "retention failed");
                        }
                    }
                    Some(()) = rx.recv() => {
                        // Debounce: editors write several events per save.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        while rx.try_recv().is_ok() {}
                        let _ = svc.reload_rules();
                    }
                }
            }
        })
    }
}

/// Watch the rules directory (not the files: editors replace them) and signal changes.
fn watch_rules(
    dir: PathBuf,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !ev.kind.is_access()
        {
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "rules hot reload unavailable"))
    .ok()?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(
            |e| tracing::warn!(error = %e, dir = %dir.display(), "rules directory not watched"),
        )
        .ok()?;
    Some(watcher)
}
