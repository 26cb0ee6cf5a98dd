//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, v1 = HMAC-SHA256(endpoint secret,
//! `<t>.<raw body>`); valid when any v1 matches and `t` is within the tolerance of the clock.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use vigil_signal::{Channel, Outcome, Scope};

use super::event::unix_time;
use super::{ParseError, Provider, VerifyError, WebhookEvent, str_at};
use crate::http::pii::{PiiHasher, PiiKind};

pub const HEADER: &str = "stripe-signature";

/// Verifies `header` over `body`. `tolerance_secs == 0` disables the timestamp check.
pub fn verify(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let header = header.ok_or(VerifyError::Missing("Stripe-Signature"))?;
    let mut timestamp: Option<&str> = None;
    let mut v1: Vec<Vec<u8>> = Vec::new();
    for item in header.split(',') {
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        match k.trim() {
            "t" => timestamp = Some(v.trim()),
            // Unreadable v1 entries are skipped, like the official libraries do.
            "v1" => {
                if let Ok(sig) = hex::decode(v.trim()) {
                    v1.push(sig);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(VerifyError::Malformed("Stripe-Signature timestamp"))?;
    let t_num: i64 = t
        .parse()
        .map_err(|_| VerifyError::Malformed("Stripe-Signature timestamp"))?;
    if v1.is_empty() {
        return Err(VerifyError::Missing("Stripe-Signature v1"));
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .map_err(|_| VerifyError::Config("stripe secret"))?;
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let matched = v1.iter().any(|sig| mac.clone().verify_slice(sig).is_ok());
    if !matched {
        return Err(VerifyError::Mismatch);
    }
    if tolerance_secs > 0 && now_unix.abs_diff(t_num) > tolerance_secs {
        return Err(VerifyError::Stale(tolerance_secs));
    }
    Ok(())
}

/// Parses a verified event envelope.
pub fn parse(body: &[u8], hasher: &PiiHasher) -> Result<Vec<WebhookEvent>, ParseError> {
    let v: Value = serde_json::from_slice(body)?;
    let id = str_at(&v, &["id"]).ok_or(ParseError::Missing("id"))?;
    // An envelope without a type carries no outcome (the stripe-go test payload is one).
    let Some(kind) = str_at(&v, &["type"]) else {
        return Ok(Vec::new());
    };
    let obj = v
        .get("data")
        .and_then(|d| d.get("object"))
        .ok_or(ParseError::Missing("data.object"))?;
    let (outcome, class, code) = match kind.as_ref() {
        "payment_intent.payment_failed" => {
            let err = obj.get("last_payment_error").unwrap_or(&Value::Null);
            let class = str_at(err, &["code"]).or_else(|| str_at(err, &["type"]));
            let code = str_at(err, &["decline_code"]);
            (Outcome::Failed, class, code)
        }
        "charge.failed" => (
            Outcome::Failed,
            str_at(obj, &["failure_code"]),
            str_at(obj, &["outcome", "reason"]),
        ),
        "invoice.payment_failed" => (Outcome::Failed, Some("invoice_payment_failed".into()), None),
        "payment_intent.succeeded" | "charge.succeeded" | "invoice.paid" => {
            (Outcome::Succeeded, None, None)
        }
        _ => return Ok(Vec::new()),
    };
    let mut e = WebhookEvent::new(
        Provider::Stripe,
        Channel::Payment,
        outcome,
        kind.as_ref(),
        id.as_ref(),
    );
    e.class = class.map(|c| c.into_owned());
    e.code = code.map(|c| c.into_owned());
    e.time = v.get("created").and_then(Value::as_i64).and_then(unix_time);
    if outcome == Outcome::Failed {
        e.permanent = permanence(kind.as_ref(), e.class.as_deref(), e.code.as_deref(), obj);
        e.scope = match e.class.as_deref() {
            Some("api_error") | Some("rate_limit_error") | Some("processing_error") => {
                Scope::Provider
            }
            Some("authentication_error") | Some("invalid_request_error") => Scope::Sender,
            _ => Scope::Recipient,
        };
    }
    e.subject = subject(obj, hasher);
    Ok(vec![e])
}

/// Whether retrying the same card is expected to fail again.
fn permanence(kind: &str, class: Option<&str>, code: Option<&str>, obj: &Value) -> Option<bool> {
    if kind == "invoice.payment_failed" {
        // Stripe retries on its own schedule when `next_payment_attempt` is set.
        return Some(obj.get("next_payment_attempt").is_none_or(Value::is_null));
    }
    match code.or(class) {
        Some(
            "insufficient_funds"
            | "api_error"
            | "processing_error"
            | "try_again_later"
            | "rate_limit"
            | "issuer_not_available"
            | "reenter_transaction",
        ) => Some(false),
        Some(
            "expired_card"
            | "stolen_card"
            | "lost_card"
            | "pickup_card"
            | "incorrect_number"
            | "invalid_account"
            | "card_not_supported"
            | "currency_not_supported"
            | "restricted_card",
        ) => Some(true),
        _ => None,
    }
}

/// The card (fingerprint), else the customer, else the customer email, hashed.
fn subject(obj: &Value, hasher: &PiiHasher) -> Option<String> {
    let card = str_at(
        obj,
        &[
            "last_payment_error",
            "payment_method",
            "card",
            "fingerprint",
        ],
    )
    .or_else(|| str_at(obj, &["payment_method_details", "card", "fingerprint"]));
    if let Some(fp) = card {
        return Some(hasher.hash(PiiKind::Payment, &fp));
    }
    if let Some(email) = str_at(obj, &["customer_email"]) {
        return Some(hasher.hash(PiiKind::Email, &email));
    }
    str_at(obj, &["customer"]).map(|c| hasher.hash(PiiKind::Payment, &c))
}
