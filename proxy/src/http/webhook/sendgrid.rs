//! SendGrid Signed Event Webhook: ECDSA P-256 / SHA-256 over the UTF-8 bytes of the
//! `X-Twilio-Email-Event-Webhook-Timestamp` value followed by the raw body; the signature header
//! carries the base64 DER signature; the key is configured as base64 DER SubjectPublicKeyInfo.

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;
use vigil_signal::{Channel, Outcome, Scope};

use super::event::{digest_id, unix_time};
use super::{ParseError, Provider, VerifyError, WebhookEvent, str_at};
use crate::http::gateway::classify::sendgrid_message_ref;
use crate::http::pii::{PiiHasher, PiiKind};

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// Decodes the configured verification key (base64 DER SubjectPublicKeyInfo).
pub fn public_key(b64_der: &str) -> Result<VerifyingKey, VerifyError> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64_der.trim())
        .map_err(|_| VerifyError::Config("sendgrid public key is not base64"))?;
    VerifyingKey::from_public_key_der(&der)
        .map_err(|_| VerifyError::Config("sendgrid public key is not a P-256 SPKI"))
}

/// Verifies the signature over timestamp + body. `tolerance_secs == 0` skips the clock check.
pub fn verify(
    key: &VerifyingKey,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let signature = signature.ok_or(VerifyError::Missing(SIGNATURE_HEADER))?;
    let timestamp = timestamp.ok_or(VerifyError::Missing(TIMESTAMP_HEADER))?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| VerifyError::Malformed(SIGNATURE_HEADER))?;
    let sig = Signature::from_der(&der).map_err(|_| VerifyError::Malformed(SIGNATURE_HEADER))?;
    let mut msg = Vec::with_capacity(timestamp.len() + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.extend_from_slice(body);
    key.verify(&msg, &sig).map_err(|_| VerifyError::Mismatch)?;
    if tolerance_secs > 0 {
        let t: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::Malformed(TIMESTAMP_HEADER))?;
        if now_unix.abs_diff(t) > tolerance_secs {
            return Err(VerifyError::Stale(tolerance_secs));
        }
    }
    Ok(())
}

/// Parses a verified body: a JSON array of events, one normalized event per element.
pub fn parse(body: &[u8], hasher: &PiiHasher) -> Result<Vec<WebhookEvent>, ParseError> {
    let v: Value = serde_json::from_slice(body)?;
    let items = v
        .as_array()
        .ok_or(ParseError::Shape("expected a JSON array"))?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(name) = str_at(item, &["event"]) else {
            return Err(ParseError::Missing("event"));
        };
        let (outcome, class, permanent) = match name.as_ref() {
            "processed" => (Outcome::Accepted, None, None),
            "delivered" => (Outcome::Delivered, None, None),
            "deferred" => (Outcome::Deferred, Some("deferred".to_string()), Some(false)),
            "bounce" => {
                let kind = str_at(item, &["type"]).map_or("bounce".to_string(), |t| t.into());
                let permanent = kind != "blocked";
                (Outcome::Failed, Some(kind), Some(permanent))
            }
            "dropped" => (Outcome::Failed, Some("dropped".to_string()), Some(true)),
            "spamreport" => (
                Outcome::Complained,
                Some("complaint".to_string()),
                Some(true),
            ),
            "unsubscribe" | "group_unsubscribe" => (
                Outcome::Unsubscribed,
                Some("unsubscribe".to_string()),
                Some(true),
            ),
            // Engagement events (open, click, group_resubscribe) are not delivery outcomes.
            _ => continue,
        };
        let id = match str_at(item, &["sg_event_id"]) {
            Some(id) => id.into_owned(),
            None => digest_id(&[item.to_string().as_bytes()]),
        };
        let mut e = WebhookEvent::new(Provider::Sendgrid, Channel::Email, outcome, name, id);
        e.class = class;
        e.permanent = permanent;
        if outcome != Outcome::Accepted && outcome != Outcome::Delivered {
            e.code = str_at(item, &["status"]).map(|c| c.into_owned());
        }
        if e.class.as_deref() == Some("blocked") {
            e.scope = Scope::Sender;
        }
        e.subject = str_at(item, &["email"]).map(|m| hasher.hash(PiiKind::Email, &m));
        e.message_id = str_at(item, &["sg_message_id"]).and_then(|m| sendgrid_message_ref(&m));
        e.time = item
            .get("timestamp")
            .and_then(Value::as_i64)
            .and_then(unix_time);
        out.push(e);
    }
    Ok(out)
}
