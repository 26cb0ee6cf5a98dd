//! The server-rendered console: no JavaScript, no build step. Read-only pages work with plain
//! links; acknowledge/resolve/note are HTML forms that redirect back (POST-redirect-GET).

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{TimeZone, Utc};
use serde::Deserialize;

use crate::api::actor;
use crate::model::{Incident, IncidentState};
use crate::service::{IncidentError, IncidentService};
use crate::store::incidents::IncidentFilter;

pub(crate) fn routes() -> Router<IncidentService> {
    Router::new()
        .route("/", get(index))
        .route("/console", get(index))
        .route("/console/incidents/{id}", get(detail))
        .route("/console/incidents/{id}/acknowledge", post(ack))
        .route("/console/incidents/{id}/resolve", post(resolve))
        .route("/console/incidents/{id}/notes", post(note))
}

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ts(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:70rem;color:#222}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}\
.critical{color:#b00020;font-weight:600}.warning{color:#a05a00}.state{font-variant:small-caps}\
form{display:inline}button{margin-right:.3rem}code{font-size:.9em}";

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    ))
}

fn buttons(i: &Incident) -> String {
    let id = esc(&i.id);
    let mut b = String::new();
    if i.state == IncidentState::Open {
        b.push_str(&format!(
            "<form method=\"post\" action=\"/console/incidents/{id}/acknowledge\"><button type=\"submit\">Acknowledge</button></form>"
        ));
    }
    if i.state != IncidentState::Resolved {
        b.push_str(&format!(
            "<form method=\"post\" action=\"/console/incidents/{id}/resolve\"><button type=\"submit\">Resolve</button></form>"
        ));
    }
    b
}

fn row(i: &Incident) -> String {
    format!(
        "<tr id=\"incident-{id}\"><td><a href=\"/console/incidents/{id}\">{title}</a></td><td class=\"{sev}\">{sev}</td>\
         <td class=\"state\" data-state=\"{state}\">{state}</td><td>{layer}</td><td>{channel}</td><td>{opened}</td><td>{buttons}</td></tr>",
        id = esc(&i.id),
        title = esc(&i.title),
        sev = i.severity.as_str(),
        state = i.state.as_str(),
        layer = i.layer.as_str(),
        channel = esc(&i.channel),
        opened = ts(i.opened_ms),
        buttons = buttons(i),
    )
}

async fn index(State(svc): State<IncidentService>) -> Result<Response, IncidentError> {
    let all = svc
        .store()
        .list_incidents(&IncidentFilter {
            limit: Some(200),
            ..IncidentFilter::default()
        })
        .await?;
    let (active, resolved): (Vec<&Incident>, Vec<&Incident>) =
        all.iter().partition(|i| i.state != IncidentState::Resolved);
    let head = "<tr><th>Incident</th><th>Severity</th><th>State</th><th>Likely layer</th><th>Channel</th><th>Opened</th><th></th></tr>";
    let mut body = format!(
        "<h1>Vigil incidents</h1><h2>Open and acknowledged ({})</h2>",
        active.len()
    );
    if active.is_empty() {
        body.push_str("<p>Nothing is failing.</p>");
    } else {
        body.push_str(&format!(
            "<table id=\"active\">{head}{}</table>",
            active.iter().map(|i| row(i)).collect::<String>()
        ));
    }
    body.push_str(&format!(
        "<h2>Recently resolved</h2><table id=\"resolved\">{head}{}</table>",
        resolved.iter().take(50).map(|i| row(i)).collect::<String>()
    ));
    Ok(page("Vigil incidents", &body).into_response())
}

async fn detail(
    State(svc): State<IncidentService>,
    Path(id): Path<String>,
) -> Result<Response, IncidentError> {
    let (i, timeline, notes) = svc.incident_detail(&id).await?;
    let mut b = format!(
        "<p><a href=\"/console\">&larr; all incidents</a></p><h1>{}</h1><p><span class=\"{sev}\">{sev}</span> · <span class=\"state\" id=\"state\">{}</span> · opened {}{}</p>{}",
        esc(&i.title),
        i.state.as_str(),
        ts(i.opened_ms),
        i.resolved_ms
            .map(|r| format!(" · resolved {}", ts(r)))
            .unwrap_or_default(),
        buttons(&i),
        sev = i.severity.as_str(),
    );
    b.push_str("<h2>Likely layer</h2><ol>");
    for (l, s) in &i.evidence.layers {
        b.push_str(&format!("<li>{} ({:.0}%)</li>", l.as_str(), s * 100.0));
    }
    b.push_str("</ol><h2>Evidence</h2><table><tr><th>Finding</th><th>k of n</th><th>Baseline</th><th>p-value</th><th>Top codes</th><th>Routes / statements</th><th>First / last seen</th></tr>");
    for f in &i.evidence.findings {
        let codes = f
            .top_codes
            .iter()
            .map(|(c, n)| format!("{}&times;{n}", esc(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let places = f
            .routes
            .iter()
            .chain(&f.fingerprints)
            .chain(&f.tables)
            .map(|r| esc(r))
            .collect::<Vec<_>>()
            .join("<br>");
        b.push_str(&format!(
            "<tr><td>{}</td><td>{} of {}</td><td>{:.3}%</td><td>{:.1e}</td><td>{codes}</td><td>{places}</td><td>{}<br>{}</td></tr>",
            esc(&f.summary),
            f.k,
            f.n,
            f.baseline * 100.0,
            f.p_value,
            ts(f.first_seen_ms),
            ts(f.last_seen_ms)
        ));
    }
    b.push_str("</table><h2>Timeline</h2><ul id=\"timeline\">");
    for e in &timeline {
        b.push_str(&format!(
            "<li>{} · <b>{}</b> by {} {}</li>",
            ts(e.at_ms),
            esc(&e.kind),
            esc(&e.actor),
            esc(&e.detail)
        ));
    }
    b.push_str("</ul><h2>Notes</h2><ul>");
    for n in &notes {
        b.push_str(&format!(
            "<li>{} · {}: {}</li>",
            ts(n.at_ms),
            esc(&n.author),
            esc(&n.body)
        ));
    }
    b.push_str(&format!(
        "</ul><form method=\"post\" action=\"/console/incidents/{}/notes\"><textarea name=\"body\" rows=\"3\" cols=\"60\" required></textarea><br><button type=\"submit\">Add note</button></form>",
        esc(&i.id)
    ));
    Ok(page(&i.title, &b).into_response())
}

async fn ack(
    State(svc): State<IncidentService>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, IncidentError> {
    match svc.acknowledge(&id, &actor(&headers, "console")).await {
        Ok(_) | Err(IncidentError::Conflict { .. }) => Ok(Redirect::to("/console").into_response()),
        Err(e) => Err(e),
    }
}

async fn resolve(
    State(svc): State<IncidentService>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, IncidentError> {
    match svc.resolve(&id, &actor(&headers, "console")).await {
        Ok(_) | Err(IncidentError::Conflict { .. }) => Ok(Redirect::to("/console").into_response()),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Deserialize)]
struct NoteForm {
    body: String,
}

async fn note(
    State(svc): State<IncidentService>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<NoteForm>,
) -> Result<Response, IncidentError> {
    svc.add_note(&id, &actor(&headers, "console"), &f.body)
        .await?;
    Ok(Redirect::to(&format!("/console/incidents/{}", urlencode(&id))).into_response())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
