//! SendGrid v3 Mail Send (`POST /v3/mail/send`, 202 + `X-Message-Id`) and the Signed Event
//! Webhook: one batch (`processed` + the outcome) per recipient, JSON array followed by CRLF.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Mode, ProviderKind, Simulators, inc, unix_now};
use crate::signing::{SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER};

const SENDING_IPS: [&str; 2] = ["167.89.101.76", "168.245.12.44"];

fn errors(status: StatusCode, message: &str, field: Option<&str>) -> Response {
    (
        status,
        Json(json!({"errors": [{"message": message, "field": field, "help": null}]})),
    )
        .into_response()
}

/// The outcome of one recipient.
enum Outcome {
    Delivered,
    Bounce,
    Blocked,
    Dropped,
}

pub(super) async fn mail_send(
    State(sim): State<Simulators>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &sim.shared;
    let behavior = shared.behavior(ProviderKind::Sendgrid);
    if shared.before_answer(behavior).await {
        let status = shared.error_status();
        return errors(status, "Internal server error", None);
    }
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    if !authorized {
        return errors(
            StatusCode::UNAUTHORIZED,
            "The provided authorization grant is invalid, expired, or revoked",
            None,
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return errors(StatusCode::BAD_REQUEST, "Bad Request", None);
    };
    let Some(from) = req.pointer("/from/email").and_then(Value::as_str) else {
        return errors(
            StatusCode::BAD_REQUEST,
            "The from object must be provided for every email send.",
            Some("from"),
        );
    };
    let Some(personalizations) = req.get("personalizations").and_then(Value::as_array) else {
        return errors(
            StatusCode::BAD_REQUEST,
            "The personalizations field is required and must have at least one personalization.",
            Some("personalizations"),
        );
    };
    let mut recipients = Vec::new();
    for p in personalizations {
        let custom = merged_custom_args(req.get("custom_args"), p.get("custom_args"));
        for to in p.get("to").and_then(Value::as_array).into_iter().flatten() {
            if let Some(email) = to.get("email").and_then(Value::as_str) {
                recipients.push((email.to_string(), custom.clone()));
            }
        }
    }
    if recipients.is_empty() {
        return errors(
            StatusCode::BAD_REQUEST,
            "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
            Some("personalizations.0.to"),
        );
    }
    let message_id = shared.alnum_id(22);
    let mode = shared.mode();
    let sender_domain = from
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    for (n, (email, custom)) in recipients.into_iter().enumerate() {
        inc(&shared.counters.emails_accepted);
        let roll = shared.roll(1000);
        let outcome = match &mode {
            Mode::BounceStorm if roll < 450 => Outcome::Bounce,
            Mode::BlockedIp { sender_domain: d }
                if d.as_deref()
                    .is_none_or(|d| d.eq_ignore_ascii_case(&sender_domain)) =>
            {
                if roll < 850 {
                    Outcome::Blocked
                } else {
                    Outcome::Dropped
                }
            }
            _ if roll < 10 => Outcome::Bounce,
            _ => Outcome::Delivered,
        };
        let counter = match outcome {
            Outcome::Delivered => &shared.counters.emails_delivered,
            Outcome::Bounce => &shared.counters.emails_bounced,
            Outcome::Blocked => &shared.counters.emails_blocked,
            Outcome::Dropped => &shared.counters.emails_dropped,
        };
        inc(counter);
        let Some(url) = shared.sendgrid_url() else {
            continue;
        };
        let events = events(&sim, &message_id, n, &email, &custom, &outcome);
        let mut body = serde_json::to_vec(&events).unwrap_or_default();
        body.extend_from_slice(b"\r\n");
        let timestamp = unix_now().to_string();
        let signature = shared.key.sign(&timestamp, &body);
        shared.deliver(
            behavior.lose_webhooks,
            url,
            vec![
                ("content-type", "application/json".to_string()),
                ("user-agent", "SendGrid Event API".to_string()),
                (SENDGRID_SIGNATURE_HEADER, signature),
                (SENDGRID_TIMESTAMP_HEADER, timestamp),
            ],
            body,
        );
    }
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(&message_id) {
        resp.headers_mut().insert("x-message-id", v);
    }
    resp
}

fn merged_custom_args(top: Option<&Value>, per: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for src in [top, per].into_iter().flatten() {
        if let Some(obj) = src.as_object() {
            for (k, v) in obj {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn events(
    sim: &Simulators,
    message_id: &str,
    n: usize,
    email: &str,
    custom: &Map<String, Value>,
    outcome: &Outcome,
) -> Value {
    let shared = &sim.shared;
    let now = unix_now();
    let sg_message_id = format!("{message_id}.filterdrecv-5bd8f5c6d8-demo-1-{n}");
    let smtp_id = format!("<{message_id}@ismtpd0001p1demo.sendgrid.net>");
    let ip = SENDING_IPS[shared.roll(2) as usize];
    let base = |event: &str, ts: i64| {
        let mut e = Map::new();
        e.insert("email".into(), json!(email));
        e.insert("timestamp".into(), json!(ts));
        e.insert("event".into(), json!(event));
        e.insert("sg_event_id".into(), json!(shared.alnum_id(22)));
        e.insert("sg_message_id".into(), json!(sg_message_id));
        e.insert("smtp-id".into(), json!(smtp_id));
        for (k, v) in custom {
            e.entry(k.clone()).or_insert_with(|| v.clone());
        }
        e
    };
    let processed = base("processed", now);
    let last = match outcome {
        Outcome::Delivered => {
            let mut e = base("delivered", now + 1);
            e.insert("response".into(), json!("250 2.0.0 OK"));
            e.insert("ip".into(), json!(ip));
            e.insert("tls".into(), json!(1));
            e
        }
        Outcome::Bounce => {
            let mut e = base("bounce", now + 1);
            e.insert("type".into(), json!("bounce"));
            e.insert("status".into(), json!("5.1.1"));
            e.insert(
                "reason".into(),
                json!("550 5.1.1 The email account that you tried to reach does not exist."),
            );
            e.insert("bounce_classification".into(), json!("Invalid Address"));
            e.insert("ip".into(), json!(ip));
            e
        }
        Outcome::Blocked => {
            let mut e = base("bounce", now + 1);
            e.insert("type".into(), json!("blocked"));
            e.insert("status".into(), json!("5.7.1"));
            e.insert(
                "reason".into(),
                json!(format!(
                    "550 5.7.1 Service unavailable; Client host [{ip}] blocked using Spamhaus"
                )),
            );
            e.insert("bounce_classification".into(), json!("Reputation"));
            e.insert("ip".into(), json!(ip));
            e
        }
        Outcome::Dropped => {
            let mut e = base("dropped", now + 1);
            e.insert("reason".into(), json!("Bounced Address"));
            e.insert("status".into(), json!("5.0.0"));
            e
        }
    };
    json!([processed, last])
}
