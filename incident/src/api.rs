//! HTTP API: signal intake (`/v1/signals`, `/v1/alertmanager`, `/v1/events`), the incident REST
//! API (`/api/incidents`, acknowledge, resolve, notes, silences) and the console routes.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use vigil_signal::{Channel, Outcome, SCHEMA_VERSION, Scope, Signal, Source};

use crate::model::{IncidentState, Layer, Silence};
use crate::service::{IncidentError, IncidentService};
use crate::store::incidents::IncidentFilter;

impl IntoResponse for IncidentError {
    fn into_response(self) -> Response {
        let status = match &self {
            IncidentError::NotFound(_) => StatusCode::NOT_FOUND,
            IncidentError::Conflict { .. } => StatusCode::CONFLICT,
            IncidentError::Invalid(_) => StatusCode::BAD_REQUEST,
            IncidentError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (status, axum::Json(json!({ "error": self.to_string() }))).into_response()
    }
}

fn bad(msg: impl std::fmt::Display) -> IncidentError {
    IncidentError::Invalid(msg.to_string())
}

/// Who did it: `X-Vigil-User`, else a default (bounded length).
pub(crate) fn actor(headers: &HeaderMap, default: &str) -> String {
    headers
        .get("x-vigil-user")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect::<String>())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

impl IncidentService {
    /// The router for the API, signal intake and console.
    pub fn api_router(&self) -> Router {
        Router::new()
            .route("/v1/signals", post(post_signals))
            .route("/v1/alertmanager", post(post_alertmanager))
            .route("/v1/events", post(post_events))
            .route("/api/incidents", get(list_incidents))
            .route("/api/incidents/{id}", get(get_incident))
            .route("/api/incidents/{id}/acknowledge", post(ack))
            .route("/api/incidents/{id}/resolve", post(resolve))
            .route("/api/incidents/{id}/notes", post(note))
            .route("/api/silences", post(silence).get(list_silences))
            .merge(crate::console::routes())
            .merge(crate::reports::routes())
            .layer(DefaultBodyLimit::max(self.config().max_body_bytes))
            .with_state(self.clone())
    }
}

async fn post_signals(
    State(svc): State<IncidentService>,
    body: Bytes,
) -> Result<Response, IncidentError> {
    let batch: Vec<Signal> = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("expected a JSON array of signals: {e}")))?;
    let report = svc.ingest(&batch).await?;
    Ok(axum::Json(report).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AmAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    starts_at: DateTime<chrono::FixedOffset>,
    #[serde(default)]
    ends_at: Option<DateTime<chrono::FixedOffset>>,
    #[serde(default)]
    fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AmWebhook {
    #[serde(default)]
    version: Option<String>,
    alerts: Vec<AmAlert>,
}

/// Alertmanager webhook v4 -> signals (one per alert; ids stable across repeats).
pub fn alertmanager_signals(raw: &[u8]) -> Result<Vec<Signal>, IncidentError> {
    let hook: AmWebhook = serde_json::from_slice(raw)
        .map_err(|e| bad(format!("not an Alertmanager webhook: {e}")))?;
    if hook.version.as_deref().is_some_and(|v| v != "4") {
        return Err(bad("only Alertmanager webhook version 4 is supported"));
    }
    let mut out = Vec::new();
    for a in hook.alerts {
        let name = a
            .labels
            .get("alertname")
            .cloned()
            .unwrap_or_else(|| "alert".into());
        let fingerprint = a.fingerprint.clone().unwrap_or_else(|| {
            use sha2::Digest;
            let labels = serde_json::to_string(&a.labels).unwrap_or_default();
            hex::encode(&sha2::Sha256::digest(labels.as_bytes())[..8])
        });
        let resolved = a.status == "resolved";
        let time = match (resolved, a.ends_at) {
            (true, Some(end)) if end.timestamp() > 0 => end.with_timezone(&Utc),
            _ => a.starts_at.with_timezone(&Utc),
        };
        let outcome = if resolved {
            Outcome::Resolved
        } else {
            Outcome::Firing
        };
        let mut s = Signal::new(Source::Alertmanager, Channel::Alert, outcome)
            .with_id(format!(
                "am:{fingerprint}:{}:{}",
                a.status,
                a.starts_at.timestamp_millis()
            ))
            .with_time(time)
            .with_class(name.chars().take(100).collect::<String>())
            .with_scope(Scope::Service)
            .with_attr("alertname", name.chars().take(100).collect::<String>());
        if let Some(sev) = a.labels.get("severity") {
            let sev = match sev.as_str() {
                "critical" | "page" => "critical",
                "info" | "none" => "info",
                _ => "warning",
            };
            s = s.with_attr("severity", sev);
        }
        if let Some(p) = a.labels.get("provider") {
            s = s.with_provider(p.chars().take(50).collect::<String>());
        }
        out.push(s);
    }
    Ok(out)
}

async fn post_alertmanager(
    State(svc): State<IncidentService>,
    body: Bytes,
) -> Result<Response, IncidentError> {
    let signals = alertmanager_signals(&body)?;
    let report = svc.ingest(&signals).await?;
    Ok(axum::Json(report).into_response())
}

/// An event from the CRM itself (`POST /v1/events`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEvent {
    /// The CRM's event id (idempotency).
    pub id: String,
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    /// What happened: `automation_step_failed`, `job_crashed`, `automation_step_succeeded`, ...
    pub kind: String,
    /// `failed` or `succeeded`.
    pub status: String,
    /// The automation or job name.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub count: Option<u64>,
}

/// CRM events -> signals.
pub fn app_signals(raw: &[u8]) -> Result<Vec<Signal>, IncidentError> {
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let events: Vec<AppEvent> = match value {
        serde_json::Value::Array(_) => serde_json::from_value(value),
        _ => serde_json::from_value(value).map(|e| vec![e]),
    }
    .map_err(|e| bad(format!("invalid event: {e}")))?;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let outcome = match e.status.as_str() {
            "failed" => Outcome::Failed,
            "succeeded" => Outcome::Succeeded,
            other => {
                return Err(bad(format!(
                    "event {}: status must be failed or succeeded, not {other:?}",
                    e.id
                )));
            }
        };
        if e.id.is_empty() || e.id.len() > 190 {
            return Err(bad("event id must be 1 to 190 bytes"));
        }
        let mut s = Signal::new(Source::App, Channel::Automation, outcome)
            .with_id(format!("app:{}", e.id))
            .with_time(e.time.unwrap_or_else(Utc::now))
            .with_count(e.count.unwrap_or(1).max(1));
        s.v = SCHEMA_VERSION;
        if outcome == Outcome::Failed {
            s = s.with_class(e.kind.chars().take(64).collect::<String>());
        }
        if let Some(n) = e.name {
            s = s.with_subject(n.chars().take(100).collect::<String>());
        }
        if let Some(c) = e.code {
            s = s.with_code(c.chars().take(32).collect::<String>());
        }
        if let Some(r) = e.route {
            s = s.with_attr("route", r.chars().take(200).collect::<String>());
        }
        if let Some(f) = e.fingerprint {
            s = s.with_attr("fingerprint", f.chars().take(32).collect::<String>());
        }
        if !e.tables.is_empty() {
            s = s.with_attr("tables", e.tables.join(","));
        }
        if let Some(t) = e.trace_id {
            s = s.with_attr("trace_id", t.chars().take(64).collect::<String>());
        }
        out.push(s);
    }
    Ok(out)
}

async fn post_events(
    State(svc): State<IncidentService>,
    body: Bytes,
) -> Result<Response, IncidentError> {
    let signals = app_signals(&body)?;
    let report = svc.ingest(&signals).await?;
    Ok(axum::Json(report).into_response())
}

/// Query string of `GET /api/incidents`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub state: Option<String>,
    pub channel: Option<String>,
    pub layer: Option<String>,
    /// RFC 3339: incidents updated at or after.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339: incidents opened before.
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

pub(crate) fn filter_of(q: &ListQuery) -> Result<IncidentFilter, IncidentError> {
    Ok(IncidentFilter {
        state: q
            .state
            .as_deref()
            .map(|s| {
                IncidentState::parse(s)
                    .ok_or_else(|| bad("state must be open, acknowledged or resolved"))
            })
            .transpose()?,
        channel: q.channel.clone(),
        layer: q
            .layer
            .as_deref()
            .map(|s| {
                Layer::parse(s)
                    .ok_or_else(|| bad("layer must be provider, integration, database or app"))
            })
            .transpose()?,
        since_ms: q.since.map(|t| t.timestamp_millis()),
        until_ms: q.until.map(|t| t.timestamp_millis()),
        limit: Some(q.limit.unwrap_or(100).min(1000)),
    })
}

async fn list_incidents(
    State(svc): State<IncidentService>,
    Query(q): Query<ListQuery>,
) -> Result<Response, IncidentError> {
    let list = svc.store().list_incidents(&filter_of(&q)?).await?;
    Ok(axum::Json(list).into_response())
}

async fn get_incident(
    State(svc): State<IncidentService>,
    Path(id): Path<String>,
) -> Result<Response, IncidentError> {
    let (incident, timeline, notes) = svc.incident_detail(&id).await?;
    Ok(
        axum::Json(json!({ "incident": incident, "timeline": timeline, "notes": notes }))
            .into_response(),
    )
}

async fn ack(
    State(svc): State<IncidentService>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, IncidentError> {
    let i = svc.acknowledge(&id, &actor(&headers, "api")).await?;
    Ok(axum::Json(i).into_response())
}

async fn resolve(
    State(svc): State<IncidentService>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, IncidentError> {
    let i = svc.resolve(&id, &actor(&headers, "api")).await?;
    Ok(axum::Json(i).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    body: String,
    #[serde(default)]
    author: Option<String>,
}

async fn note(
    State(svc): State<IncidentService>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IncidentError> {
    let n: NoteBody = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("expected {{\"body\": ...}}: {e}")))?;
    let author = n.author.unwrap_or_else(|| actor(&headers, "api"));
    let note = svc.add_note(&id, &author, &n.body).await?;
    Ok((StatusCode::CREATED, axum::Json(note)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    #[serde(rename = "match")]
    matchers: BTreeMap<String, String>,
    #[serde(default)]
    starts: Option<DateTime<Utc>>,
    ends: DateTime<Utc>,
    #[serde(default)]
    comment: String,
}

async fn silence(
    State(svc): State<IncidentService>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IncidentError> {
    let b: SilenceBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid silence: {e}")))?;
    if b.matchers.is_empty() {
        return Err(bad("a silence needs at least one matcher"));
    }
    let s = Silence {
        id: uuid::Uuid::now_v7().to_string(),
        matchers: b.matchers,
        starts_ms: b.starts.unwrap_or_else(Utc::now).timestamp_millis(),
        ends_ms: b.ends.timestamp_millis(),
        created_by: actor(&headers, "api"),
        comment: b.comment.chars().take(1000).collect(),
    };
    let s = svc.add_silence(s).await?;
    Ok((StatusCode::CREATED, axum::Json(s)).into_response())
}

async fn list_silences(State(svc): State<IncidentService>) -> Result<Response, IncidentError> {
    let list = svc.store().silences(Utc::now().timestamp_millis()).await?;
    Ok(axum::Json(list).into_response())
}
