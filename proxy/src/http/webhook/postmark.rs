//! Postmark: no payload signature; webhooks are authenticated with HTTP basic auth credentials
//! configured in the webhook URL. The configured secret is `user:password`.

use base64::Engine;
use serde_json::Value;
use vigil_signal::{Channel, Outcome, Scope};

use super::event::digest_id;
use super::{ParseError, Provider, VerifyError, WebhookEvent, ct_eq, str_at};
use crate::http::gateway::classify::message_ref;
use crate::http::pii::{PiiHasher, PiiKind};

/// Checks `Authorization: Basic ...` against `user:password` in constant time.
pub fn verify(credentials: &str, authorization: Option<&str>) -> Result<(), VerifyError> {
    let header = authorization.ok_or(VerifyError::Missing("Authorization"))?;
    let (scheme, value) = header
        .trim()
        .split_once(' ')
        .ok_or(VerifyError::Malformed("Authorization"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(VerifyError::Malformed("Authorization scheme"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| VerifyError::Malformed("Authorization"))?;
    if ct_eq(&decoded, credentials.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Parses one verified Postmark webhook (one record per request).
pub fn parse(body: &[u8], hasher: &PiiHasher) -> Result<Vec<WebhookEvent>, ParseError> {
    let v: Value = serde_json::from_slice(body)?;
    let record = str_at(&v, &["RecordType"]).ok_or(ParseError::Missing("RecordType"))?;
    let kind = str_at(&v, &["Type"]);
    let (outcome, class, code, permanent, scope) = match record.as_ref() {
        "Bounce" if kind.as_deref() == Some("Unsubscribe") => (
            Outcome::Unsubscribed,
            "unsubscribe",
            kind.clone(),
            Some(true),
            Scope::Recipient,
        ),
        "Bounce" => {
            let permanent = match kind.as_deref() {
                Some(
                    "SoftBounce"
                    | "Transient"
                    | "DnsError"
                    | "AutoResponder"
                    | "ChallengeVerification"
                    | "SMTPApiError",
                ) => Some(false),
                Some("Unknown") | None => None,
                Some(_) => Some(true),
            };
            let scope = match kind.as_deref() {
                Some("Blocked" | "SpamNotification" | "VirusNotification") => Scope::Sender,
                _ => Scope::Recipient,
            };
            (Outcome::Failed, "bounce", kind.clone(), permanent, scope)
        }
        "SpamComplaint" => (
            Outcome::Complained,
            "complaint",
            kind.clone().or(Some("SpamComplaint".into())),
            Some(true),
            Scope::Recipient,
        ),
        "Delivery" => {
            let mut e = event(&v, &record, Outcome::Delivered, hasher);
            e.permanent = None;
            return Ok(vec![e]);
        }
        "SubscriptionChange" => {
            if v.get("SuppressSending").and_then(Value::as_bool) != Some(true) {
                return Ok(Vec::new());
            }
            let reason = str_at(&v, &["SuppressionReason"]);
            let (outcome, class) = match reason.as_deref() {
                Some("ManualSuppression") => (Outcome::Unsubscribed, "unsubscribe"),
                Some("SpamComplaint") => (Outcome::Suppressed, "complaint"),
                _ => (Outcome::Suppressed, "bounce"),
            };
            (outcome, class, reason, Some(true), Scope::Recipient)
        }
        _ => return Ok(Vec::new()),
    };
    let mut e = event(&v, &record, outcome, hasher);
    e.class = Some(class.to_string());
    e.code = code.map(|c| c.into_owned());
    e.permanent = permanent;
    e.scope = scope;
    Ok(vec![e])
}

fn event(v: &Value, record: &str, outcome: Outcome, hasher: &PiiHasher) -> WebhookEvent {
    let id = str_at(v, &["ID"])
        .or_else(|| str_at(v, &["MessageID"]))
        .map_or_else(
            || digest_id(&[v.to_string().as_bytes()]),
            |s| s.into_owned(),
        );
    let mut e = WebhookEvent::new(
        Provider::Postmark,
        Channel::Email,
        outcome,
        record,
        format!("{record}:{id}"),
    );
    e.subject = str_at(v, &["Email"])
        .or_else(|| str_at(v, &["Recipient"]))
        .map(|r| hasher.hash(PiiKind::Email, &r));
    e.message_id = str_at(v, &["MessageID"]).and_then(|m| message_ref(&m));
    e
}
