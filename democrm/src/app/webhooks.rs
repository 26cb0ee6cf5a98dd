//! Webhook receivers: SendGrid events, Twilio status callbacks, Stripe events. Signatures are
//! checked when [`super::WebhookVerification`] holds the secret. Delivery status lands in
//! `messages` / `payments`. A Twilio callback can overtake the API answer that tells the CRM
//! the message SID, so an unknown SID is retried briefly before giving up.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{RouteError, Shared};
use crate::signing::{
    self, SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER, STRIPE_SIGNATURE_HEADER,
    TWILIO_SIGNATURE_HEADER,
};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// SendGrid event -> (message status, error code); `None` for events that change nothing.
fn sendgrid_status(e: &Value) -> Option<(&'static str, Option<String>)> {
    let code = e["status"].as_str().map(str::to_string);
    match e["event"].as_str()? {
        "delivered" => Some(("delivered", None)),
        "deferred" => Some(("deferred", None)),
        "bounce" if e["type"].as_str() == Some("blocked") => Some(("blocked", code)),
        "bounce" => Some(("bounced", code)),
        "dropped" => Some(("dropped", code)),
        "spamreport" => Some(("complained", None)),
        _ => None,
    }
}

pub(crate) async fn sendgrid(
    State(ctx): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, RouteError> {
    const ROUTE: &str = "/webhooks/sendgrid";
    if let Some(key) = &ctx.config.verify.sendgrid_public_key {
        signing::sendgrid_verify(
            key,
            header(&headers, SENDGRID_SIGNATURE_HEADER),
            header(&headers, SENDGRID_TIMESTAMP_HEADER),
            &body,
        )?;
    }
    let events: Vec<Value> = serde_json::from_slice(&body)
        .map_err(|_| RouteError::BadRequest("expected a JSON array"))?;
    let mut updated = 0u64;
    for e in &events {
        let Some((status, code)) = sendgrid_status(e) else {
            continue;
        };
        let crm_id = match &e["crm_message_id"] {
            Value::String(s) => s.parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        updated += match crm_id {
            Some(id) => {
                ctx.execute(
                    ROUTE,
                    "UPDATE messages SET status = $2, error_code = $3, updated_at = now() \
                     WHERE id = $1 AND channel = 'email'",
                    &[&id, &status, &code],
                )
                .await?
            }
            None => {
                let sg = e["sg_message_id"].as_str().unwrap_or_default();
                let pid = sg.split('.').next().unwrap_or_default();
                ctx.execute(
                    ROUTE,
                    "UPDATE messages SET status = $2, error_code = $3, updated_at = now() \
                     WHERE provider_message_id = $1 AND channel = 'email'",
                    &[&pid, &status, &code],
                )
                .await?
            }
        };
    }
    Ok(Json(json!({"received": events.len(), "updated": updated})))
}

pub(crate) async fn twilio(
    State(ctx): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, RouteError> {
    const ROUTE: &str = "/webhooks/twilio";
    if let (Some(token), Some(url)) = (
        &ctx.config.verify.twilio_auth_token,
        &ctx.config.twilio_status_callback_url,
    ) {
        signing::twilio_verify(token, url, &body, header(&headers, TWILIO_SIGNATURE_HEADER))?;
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| RouteError::BadRequest("expected a form body"))?;
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let sid = get("MessageSid").ok_or(RouteError::BadRequest("MessageSid missing"))?;
    let status = get("MessageStatus").ok_or(RouteError::BadRequest("MessageStatus missing"))?;
    let code = get("ErrorCode");
    let mut updated = 0;
    for attempt in 0..5 {
        updated = ctx
            .execute(
                ROUTE,
                "UPDATE messages SET status = CASE WHEN $2 = 'sent' AND status NOT IN ('queued', 'sent') \
                 THEN status ELSE $2 END, error_code = coalesce($3, error_code), updated_at = now() \
                 WHERE provider_message_id = $1 AND channel = 'sms'",
                &[&sid, &status, &code],
            )
            .await?;
        if updated > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    Ok(Json(json!({"updated": updated})))
}

pub(crate) async fn stripe(
    State(ctx): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, RouteError> {
    const ROUTE: &str = "/webhooks/stripe";
    if let Some(secret) = &ctx.config.verify.stripe_webhook_secret {
        signing::stripe_verify(secret, header(&headers, STRIPE_SIGNATURE_HEADER), &body)?;
    }
    let event: Value =
        serde_json::from_slice(&body).map_err(|_| RouteError::BadRequest("expected JSON"))?;
    let object = &event["data"]["object"];
    let (status, code) = match event["type"].as_str() {
        Some("payment_intent.succeeded") => ("succeeded", None),
        Some("payment_intent.payment_failed") => {
            let err = &object["last_payment_error"];
            let code = err["decline_code"]
                .as_str()
                .or(err["code"].as_str())
                .or(err["type"].as_str())
                .map(str::to_string);
            ("failed", code)
        }
        _ => return Ok(Json(json!({"received": true, "updated": 0}))),
    };
    let pi = object["id"].as_str().unwrap_or_default().to_string();
    let crm_id = object["metadata"]["crm_payment_id"]
        .as_str()
        .and_then(|s| s.parse::<i64>().ok());
    let updated = match crm_id {
        Some(id) => {
            ctx.execute(
                ROUTE,
                "UPDATE payments SET status = $2, decline_code = $3, provider_payment_id = $4, \
                 updated_at = now() WHERE id = $1",
                &[&id, &status, &code, &pi],
            )
            .await?
        }
        None => {
            ctx.execute(
                ROUTE,
                "UPDATE payments SET status = $2, decline_code = $3, updated_at = now() \
                 WHERE provider_payment_id = $1",
                &[&pi, &status, &code],
            )
            .await?
        }
    };
    Ok(Json(json!({"received": true, "updated": updated})))
}
