//! Mailgun: signature = hex HMAC-SHA256(webhook signing key, timestamp + token). Webhooks 2.0 put
//! the three values in the top-level `signature` object; legacy form posts carry them as fields.
//! Each token is accepted once (bounded replay cache).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use chrono::DateTime;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use vigil_signal::{Channel, Outcome, Scope};

use super::event::digest_id;
use super::{ParseError, Provider, VerifyError, WebhookEvent, str_at};
use crate::http::gateway::classify::message_ref;
use crate::http::pii::{PiiHasher, PiiKind};

/// The signed values, wherever the body carried them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFields {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
}

/// Finds the signature fields in a JSON (webhooks 2.0) or form (legacy) body.
pub fn signed_fields(body: &[u8], is_form: bool) -> Result<SignedFields, VerifyError> {
    let (mut timestamp, mut token, mut signature) = (None, None, None);
    if is_form {
        for (k, v) in form_urlencoded::parse(body) {
            match k.as_ref() {
                "timestamp" => timestamp = Some(v.into_owned()),
                "token" => token = Some(v.into_owned()),
                "signature" => signature = Some(v.into_owned()),
                _ => {}
            }
        }
    } else {
        let v: Value =
            serde_json::from_slice(body).map_err(|_| VerifyError::Malformed("JSON body"))?;
        let sig = v.get("signature").unwrap_or(&Value::Null);
        timestamp = str_at(sig, &["timestamp"]).map(|s| s.into_owned());
        token = str_at(sig, &["token"]).map(|s| s.into_owned());
        signature = str_at(sig, &["signature"]).map(|s| s.into_owned());
    }
    Ok(SignedFields {
        timestamp: timestamp.ok_or(VerifyError::Missing("mailgun timestamp"))?,
        token: token.ok_or(VerifyError::Missing("mailgun token"))?,
        signature: signature.ok_or(VerifyError::Missing("mailgun signature"))?,
    })
}

/// Tokens seen recently; the oldest is forgotten when `capacity` is reached.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity: capacity.max(1),
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Records `token`; false when it was already there.
    pub fn insert(&self, token: &str) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if set.contains(token) {
            return false;
        }
        if order.len() >= self.capacity
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        set.insert(token.to_string());
        order.push_back(token.to_string());
        true
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Verifies the fields; the token is recorded only when the signature is good.
pub fn verify(
    signing_key: &str,
    fields: &SignedFields,
    replay: &ReplayCache,
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let expected =
        hex::decode(fields.signature.trim()).map_err(|_| VerifyError::Malformed("signature"))?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(signing_key.as_bytes())
        .map_err(|_| VerifyError::Config("mailgun signing key"))?;
    mac.update(fields.timestamp.as_bytes());
    mac.update(fields.token.as_bytes());
    mac.verify_slice(&expected)
        .map_err(|_| VerifyError::Mismatch)?;
    if tolerance_secs > 0 {
        let t: i64 = fields
            .timestamp
            .parse()
            .map_err(|_| VerifyError::Malformed("timestamp"))?;
        if now_unix.abs_diff(t) > tolerance_secs {
            return Err(VerifyError::Stale(tolerance_secs));
        }
    }
    if !replay.insert(&fields.token) {
        return Err(VerifyError::Replay);
    }
    Ok(())
}

/// Parses a verified body (JSON webhooks 2.0, or a legacy form post).
pub fn parse(
    body: &[u8],
    is_form: bool,
    hasher: &PiiHasher,
) -> Result<Vec<WebhookEvent>, ParseError> {
    if is_form {
        return parse_legacy(body, hasher);
    }
    let v: Value = serde_json::from_slice(body)?;
    let d = v
        .get("event-data")
        .ok_or(ParseError::Missing("event-data"))?;
    let name = str_at(d, &["event"]).ok_or(ParseError::Missing("event-data.event"))?;
    let id = match str_at(d, &["id"]) {
        Some(id) => id.into_owned(),
        None => digest_id(&[d.to_string().as_bytes()]),
    };
    let severity = str_at(d, &["severity"]);
    let reason = str_at(d, &["reason"]).map(|r| r.into_owned());
    let (outcome, class, permanent, scope) = match name.as_ref() {
        "accepted" => (Outcome::Accepted, None, None, Scope::Recipient),
        "delivered" => (Outcome::Delivered, None, None, Scope::Recipient),
        "failed" if severity.as_deref() == Some("temporary") => {
            (Outcome::Deferred, reason, Some(false), Scope::Recipient)
        }
        "failed" => {
            let scope = match reason.as_deref() {
                Some("espblock") => Scope::Sender,
                _ => Scope::Recipient,
            };
            (Outcome::Failed, reason, Some(true), scope)
        }
        "rejected" => (
            Outcome::Failed,
            Some("rejected".into()),
            Some(true),
            Scope::Sender,
        ),
        "complained" => (
            Outcome::Complained,
            Some("complaint".into()),
            Some(true),
            Scope::Recipient,
        ),
        "unsubscribed" => (
            Outcome::Unsubscribed,
            Some("unsubscribe".into()),
            Some(true),
            Scope::Recipient,
        ),
        _ => return Ok(Vec::new()),
    };
    let mut e = WebhookEvent::new(
        Provider::Mailgun,
        Channel::Email,
        outcome,
        name.as_ref(),
        id,
    );
    e.class = class;
    e.permanent = permanent;
    e.scope = scope;
    if name == "failed" {
        e.code = str_at(d, &["delivery-status", "code"]).map(|c| c.into_owned());
    }
    e.subject = str_at(d, &["recipient"]).map(|r| hasher.hash(PiiKind::Email, &r));
    e.message_id = str_at(d, &["message", "headers", "message-id"]).and_then(|m| message_ref(&m));
    e.time = d
        .get("timestamp")
        .and_then(Value::as_f64)
        .and_then(|t| DateTime::from_timestamp(t as i64, 0));
    Ok(vec![e])
}

fn parse_legacy(body: &[u8], hasher: &PiiHasher) -> Result<Vec<WebhookEvent>, ParseError> {
    let mut fields = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        fields
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    let name = fields.get("event").ok_or(ParseError::Missing("event"))?;
    let (outcome, class, permanent) = match name.as_str() {
        "delivered" => (Outcome::Delivered, None, None),
        "bounced" => (Outcome::Failed, Some("bounce"), Some(true)),
        "dropped" => (Outcome::Failed, Some("dropped"), Some(true)),
        "complained" => (Outcome::Complained, Some("complaint"), Some(true)),
        "unsubscribed" => (Outcome::Unsubscribed, Some("unsubscribe"), Some(true)),
        _ => return Ok(Vec::new()),
    };
    let token = fields.get("token").map_or("", String::as_str);
    let id = digest_id(&[name.as_bytes(), token.as_bytes()]);
    let mut e = WebhookEvent::new(Provider::Mailgun, Channel::Email, outcome, name.clone(), id);
    e.class = class.map(str::to_string);
    e.permanent = permanent;
    if outcome == Outcome::Failed {
        e.code = fields.get("code").cloned();
    }
    e.message_id = fields.get("Message-Id").and_then(|m| message_ref(m));
    e.subject = fields
        .get("recipient")
        .map(|r| hasher.hash(PiiKind::Email, r));
    e.time = fields
        .get("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|t| DateTime::from_timestamp(t, 0));
    Ok(vec![e])
}
