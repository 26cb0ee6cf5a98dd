//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{sid}/Messages.json` (form body,
//! Basic auth `sid:token`), 201 with the message resource, then signed status callbacks
//! (`sent`, then `delivered` / `undelivered` with `ErrorCode`) to `StatusCallback`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use super::{Mode, ProviderKind, Simulators, inc};
use crate::signing::{TWILIO_SIGNATURE_HEADER, twilio_sign};

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn valid_e164(n: &str) -> bool {
    n.len() > 8 && n.len() <= 16 && n.starts_with('+') && n[1..].bytes().all(|b| b.is_ascii_digit())
}

pub(super) async fn create_message(
    State(sim): State<Simulators>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &sim.shared;
    let behavior = shared.behavior(ProviderKind::Twilio);
    if shared.before_answer(behavior).await {
        let status = shared.error_status();
        return error(status, 20500, "An internal server error has occurred");
    }
    let config = &shared.config;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            config.twilio_account_sid, config.twilio_auth_token
        ))
    );
    let auth_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    if !auth_ok || sid != config.twilio_account_sid {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            21619,
            "A text message body is required",
        );
    };
    let Some(to) = param(&params, "To") else {
        return error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    };
    if !valid_e164(to) {
        return error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    let from = param(&params, "From").or(param(&params, "MessagingServiceSid"));
    let Some(from) = from else {
        return error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' phone number is required.",
        );
    };
    let Some(text) = param(&params, "Body") else {
        return error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    };
    inc(&shared.counters.sms_accepted);
    let message_sid = format!("SM{}", shared.hex_id(32));
    let roll = shared.roll(1000);
    let failure = match shared.mode() {
        Mode::CarrierOutage if roll < 750 => Some(if roll < 450 { "30008" } else { "30003" }),
        _ if roll < 20 => Some(if roll < 12 { "30003" } else { "30005" }),
        _ => None,
    };
    inc(if failure.is_some() {
        &shared.counters.sms_undelivered
    } else {
        &shared.counters.sms_delivered
    });
    let callback = param(&params, "StatusCallback")
        .map(str::to_string)
        .or_else(|| shared.twilio_url());
    if let Some(url) = callback {
        let common = vec![
            ("AccountSid".to_string(), config.twilio_account_sid.clone()),
            ("ApiVersion".to_string(), "2010-04-01".to_string()),
            ("From".to_string(), from.to_string()),
            ("MessageSid".to_string(), message_sid.clone()),
            ("SmsSid".to_string(), message_sid.clone()),
            ("To".to_string(), to.to_string()),
        ];
        let final_status = if failure.is_some() {
            "undelivered"
        } else {
            "delivered"
        };
        let mut bodies = Vec::new();
        for status in ["sent", final_status] {
            let mut p = common.clone();
            p.push(("MessageStatus".into(), status.into()));
            p.push(("SmsStatus".into(), status.into()));
            if status == "undelivered"
                && let Some(code) = failure
            {
                p.push(("ErrorCode".into(), code.into()));
            }
            let signature = twilio_sign(&config.twilio_auth_token, &url, &p);
            let body = serde_urlencoded::to_string(&p).unwrap_or_default();
            bodies.push((signature, body));
        }
        if behavior.lose_webhooks {
            inc(&shared.counters.webhooks_lost);
        } else {
            let shared = shared.clone();
            tokio::spawn(async move {
                for (signature, body) in bodies {
                    tokio::time::sleep(shared.config.webhook_delay).await;
                    let headers = [
                        (
                            "content-type",
                            "application/x-www-form-urlencoded".to_string(),
                        ),
                        ("user-agent", "TwilioProxy/1.1".to_string()),
                        (TWILIO_SIGNATURE_HEADER, signature),
                    ];
                    shared.post_webhook(&url, &headers, body.into_bytes()).await;
                }
            });
        }
    }
    let now = chrono::Utc::now().to_rfc2822();
    (
        StatusCode::CREATED,
        Json(json!({
            "account_sid": config.twilio_account_sid,
            "api_version": "2010-04-01",
            "body": text,
            "date_created": now,
            "date_sent": null,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": from,
            "messaging_service_sid": param(&params, "MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": null,
            "price_unit": "USD",
            "sid": message_sid,
            "status": "queued",
            "to": to,
            "uri": format!("/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json"),
        })),
    )
        .into_response()
}
