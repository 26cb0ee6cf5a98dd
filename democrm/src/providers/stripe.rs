//! Stripe PaymentIntents: `POST /v1/payment_intents` (form body, `Bearer sk_...`), confirmed
//! at once: 200 with the PaymentIntent, or 402 `card_error` with a `decline_code`; then a signed
//! `payment_intent.succeeded` / `payment_intent.payment_failed` event. `Idempotency-Key` replays
//! the first answer (5xx answers are not stored, as with Stripe).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Mode, ProviderKind, Simulators, inc, unix_now};
use crate::signing::{STRIPE_SIGNATURE_HEADER, stripe_sign};

const API_VERSION: &str = "2026-07-29.dahlia";
/// Stored idempotent answers are forgotten past this many keys.
const MAX_IDEMPOTENCY_KEYS: usize = 50_000;

fn error(status: StatusCode, kind: &str, message: &str, extra: Map<String, Value>) -> Response {
    let mut err = Map::new();
    err.insert("type".into(), json!(kind));
    err.insert("message".into(), json!(message));
    err.extend(extra);
    (status, Json(json!({ "error": err }))).into_response()
}

fn decline_message(code: &str) -> &'static str {
    match code {
        "insufficient_funds" => "Your card has insufficient funds.",
        _ => "Your card was declined.",
    }
}

pub(super) async fn create_payment_intent(
    State(sim): State<Simulators>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &sim.shared;
    let behavior = shared.behavior(ProviderKind::Stripe);
    if shared.before_answer(behavior).await {
        let status = shared.error_status();
        return error(
            status,
            "api_error",
            "An unknown error occurred while processing your request.",
            Map::new(),
        );
    }
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer sk_"));
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided.",
            Map::new(),
        );
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(key) = &idempotency_key {
        let cache = shared.idempotency.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((status, body)) = cache.get(key) {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            let mut resp = (status, Json(body.clone())).into_response();
            resp.headers_mut().insert(
                "idempotent-replayed",
                "true".parse().expect("static header"),
            );
            return resp;
        }
    }
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Invalid request body.",
            Map::new(),
        );
    };
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(amount) = get("amount").and_then(|a| a.parse::<u64>().ok()) else {
        let mut extra = Map::new();
        extra.insert("code".into(), json!("parameter_missing"));
        extra.insert("param".into(), json!("amount"));
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Missing required param: amount.",
            extra,
        );
    };
    let currency = get("currency").unwrap_or("usd").to_ascii_lowercase();
    let payment_method = get("payment_method").unwrap_or("pm_card_visa").to_string();
    let confirm = get("confirm") == Some("true");
    let mut metadata = Map::new();
    for (k, v) in &params {
        if let Some(name) = k
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        {
            metadata.insert(name.to_string(), json!(v));
        }
    }
    let pi_id = format!("pi_{}", shared.alnum_id(24));
    let charge_id = format!("ch_{}", shared.alnum_id(24));
    let roll = shared.roll(1000);
    let declined = confirm
        && (payment_method.starts_with("pm_card_chargeDeclined")
            || match shared.mode() {
                Mode::DeclineSpike => roll < 550,
                _ => roll < 30,
            });
    let decline_code = ["insufficient_funds", "generic_decline", "do_not_honor"]
        [(shared.roll(10) as usize).min(9) / 4];
    let status = match (confirm, declined) {
        (false, _) => "requires_confirmation",
        (true, false) => "succeeded",
        (true, true) => "requires_payment_method",
    };
    let created = unix_now();
    let mut pi = json!({
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": if status == "succeeded" { amount } else { 0 },
        "capture_method": "automatic",
        "client_secret": format!("{pi_id}_secret_{}", shared.alnum_id(24)),
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": get("customer"),
        "description": get("description"),
        "last_payment_error": null,
        "latest_charge": if confirm { json!(charge_id) } else { Value::Null },
        "livemode": false,
        "metadata": metadata,
        "payment_method": payment_method,
        "payment_method_types": ["card"],
        "status": status,
    });
    let (http_status, answer, event_type) = if declined {
        inc(&shared.counters.payments_declined);
        let last_error = json!({
            "type": "card_error",
            "code": "card_declined",
            "decline_code": decline_code,
            "message": decline_message(decline_code),
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "charge": charge_id,
        });
        pi["last_payment_error"] = last_error.clone();
        let mut err = last_error.as_object().cloned().unwrap_or_default();
        err.insert("payment_intent".into(), pi.clone());
        (
            StatusCode::PAYMENT_REQUIRED,
            json!({ "error": err }),
            Some("payment_intent.payment_failed"),
        )
    } else {
        if confirm {
            inc(&shared.counters.payments_succeeded);
        }
        (
            StatusCode::OK,
            pi.clone(),
            confirm.then_some("payment_intent.succeeded"),
        )
    };
    if let Some(key) = &idempotency_key {
        let mut cache = shared.idempotency.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_IDEMPOTENCY_KEYS {
            cache.clear();
        }
        cache.insert(key.clone(), (http_status.as_u16(), answer.clone()));
    }
    if let (Some(event_type), Some(url)) = (event_type, shared.stripe_url()) {
        let event = json!({
            "id": format!("evt_{}", shared.alnum_id(24)),
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": { "object": pi },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": format!("req_{}", shared.alnum_id(14)), "idempotency_key": idempotency_key },
            "type": event_type,
        });
        let body = serde_json::to_vec_pretty(&event).unwrap_or_default();
        let signature = stripe_sign(&shared.config.stripe_webhook_secret, unix_now(), &body);
        shared.deliver(
            behavior.lose_webhooks,
            url,
            vec![
                (
                    "content-type",
                    "application/json; charset=utf-8".to_string(),
                ),
                (
                    "user-agent",
                    "Stripe/1.0 (+https://stripe.com/docs/webhooks)".to_string(),
                ),
                (STRIPE_SIGNATURE_HEADER, signature),
            ],
            body,
        );
    }
    (http_status, Json(answer)).into_response()
}
