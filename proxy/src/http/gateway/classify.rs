//! Outcome classification for the CRM's outbound provider calls: from (status, headers, body) or
//! a transport failure to a [`GatewayOutcome`], including the provider-specific error codes
//! (Stripe `error.type`/`code`/`decline_code`, Twilio `code`, SendGrid `errors[]`).

use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;
use vigil_signal::{Channel, Outcome, Scope, Signal, Source};

/// The coarse class of one provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayClass {
    Success,
    ClientError,
    RateLimited,
    Provider5xx,
    Timeout,
    ConnectFailure,
}

impl GatewayClass {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayClass::Success => "success",
            GatewayClass::ClientError => "client_error",
            GatewayClass::RateLimited => "rate_limited",
            GatewayClass::Provider5xx => "provider_5xx",
            GatewayClass::Timeout => "timeout",
            GatewayClass::ConnectFailure => "connection_failure",
        }
    }
}

/// A transport-level failure (no response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    Timeout,
    Connect,
}

/// The classified outcome of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayOutcome {
    pub class: GatewayClass,
    pub status: Option<u16>,
    /// Provider error class (Stripe `error.code` or `error.type`, e.g. `card_declined`).
    pub provider_class: Option<String>,
    /// Most specific provider code (Stripe `decline_code`, Twilio `code`, SendGrid error field).
    pub code: Option<String>,
    pub retry_after: Option<Duration>,
    pub permanent: Option<bool>,
    pub scope: Scope,
    /// The provider's id for an accepted message ([`message_id`]), so the incident service can
    /// tell which sends never got a delivery webhook.
    pub message_id: Option<String>,
}

impl GatewayOutcome {
    fn new(class: GatewayClass, status: Option<u16>, scope: Scope) -> GatewayOutcome {
        GatewayOutcome {
            class,
            status,
            provider_class: None,
            code: None,
            retry_after: None,
            permanent: None,
            scope,
            message_id: None,
        }
    }

    /// The signal for this call (source ProviderGateway).
    pub fn to_signal(&self, provider: &str, channel: Channel) -> Signal {
        let outcome = match (self.class, channel) {
            (GatewayClass::Success, Channel::Payment) => Outcome::Succeeded,
            (GatewayClass::Success, _) => Outcome::Accepted,
            _ => Outcome::Failed,
        };
        let mut s = Signal::new(Source::ProviderGateway, channel, outcome)
            .with_provider(provider)
            .with_scope(self.scope)
            .with_permanent(self.permanent)
            .with_attr("gateway_class", self.class.as_str());
        if outcome == Outcome::Failed {
            s = s.with_class(
                self.provider_class
                    .clone()
                    .unwrap_or_else(|| self.class.as_str().to_string()),
            );
        }
        if let Some(code) = &self.code {
            s = s.with_code(code.clone());
        } else if let Some(st) = self.status.filter(|_| outcome == Outcome::Failed) {
            s = s.with_code(st.to_string());
        }
        if let Some(st) = self.status {
            s = s.with_attr("status", st.to_string());
        }
        if let Some(ra) = self.retry_after {
            s = s.with_attr("retry_after_secs", ra.as_secs().to_string());
        }
        if let Some(id) = self
            .message_id
            .as_ref()
            .filter(|_| outcome == Outcome::Accepted)
        {
            s = s.with_attr("message_id", id.clone());
        }
        s
    }
}

/// Whether an accepted response of `provider` carries its message id in the body (the gateway
/// then reads a small success body; SendGrid puts it in a header).
pub fn message_id_in_body(provider: &str) -> bool {
    matches!(provider, "twilio" | "postmark" | "mailgun" | "ses")
}

/// The message id of an accepted send: SendGrid's `X-Message-Id` header, Twilio's `sid`,
/// Postmark's `MessageID`, Mailgun's `id`, SES's `MessageId`. Normalized with [`message_ref`] so
/// it equals what the provider's delivery webhooks carry. Stripe answers synchronously: none.
pub fn message_id(provider: &str, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let raw = match provider {
        "sendgrid" => headers.get("x-message-id")?.to_str().ok()?.to_string(),
        "twilio" | "postmark" | "mailgun" | "ses" => {
            let v: Value = serde_json::from_slice(body).ok()?;
            let key = match provider {
                "twilio" => "sid",
                "postmark" => "MessageID",
                "mailgun" => "id",
                _ => "MessageId",
            };
            v.get(key)?.as_str()?.to_string()
        }
        _ => return None,
    };
    message_ref(&raw)
}

/// A provider message id as both sides carry it: angle brackets and whitespace trimmed (Mailgun
/// sends `<id>`, its webhooks `id`), SendGrid's `sg_message_id` suffix after the first `.` dropped
/// (its webhooks append the filter host to the `X-Message-Id`). `None` when empty or longer than
/// 256 bytes (not an id).
pub fn message_ref(raw: &str) -> Option<String> {
    let id = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty() && id.len() <= 256).then(|| id.to_string())
}

/// SendGrid's webhook `sg_message_id` (`<X-Message-Id>.<filter host>...`) as a [`message_ref`].
pub fn sendgrid_message_ref(sg_message_id: &str) -> Option<String> {
    message_ref(sg_message_id.split('.').next().unwrap_or_default())
}

/// Classifies a call that got no response.
pub fn classify_failure(failure: TransportFailure) -> GatewayOutcome {
    let class = match failure {
        TransportFailure::Timeout => GatewayClass::Timeout,
        TransportFailure::Connect => GatewayClass::ConnectFailure,
    };
    let mut o = GatewayOutcome::new(class, None, Scope::Provider);
    o.permanent = Some(false);
    o
}

/// Classifies a response. `body` may be empty or truncated (only error bodies are read).
pub fn classify_response(
    provider: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> GatewayOutcome {
    let mut o = match status {
        200..=399 => {
            return GatewayOutcome::new(GatewayClass::Success, Some(status), Scope::Provider);
        }
        429 => {
            let mut o =
                GatewayOutcome::new(GatewayClass::RateLimited, Some(status), Scope::Provider);
            o.retry_after = retry_after(headers, now);
            o.permanent = Some(false);
            o
        }
        500..=599 => {
            let mut o =
                GatewayOutcome::new(GatewayClass::Provider5xx, Some(status), Scope::Provider);
            o.permanent = Some(false);
            o
        }
        401 | 403 => {
            let mut o = GatewayOutcome::new(GatewayClass::ClientError, Some(status), Scope::Sender);
            o.permanent = Some(true);
            o
        }
        _ => {
            let mut o =
                GatewayOutcome::new(GatewayClass::ClientError, Some(status), Scope::Service);
            o.permanent = Some(true);
            o
        }
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return o;
    };
    match provider {
        "stripe" => stripe_details(&mut o, &v),
        "twilio" => twilio_details(&mut o, &v),
        "sendgrid" => sendgrid_details(&mut o, &v),
        _ => {}
    }
    o
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for k in path {
        cur = cur.get(*k)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn stripe_details(o: &mut GatewayOutcome, v: &Value) {
    let Some(err) = v.get("error") else {
        return;
    };
    let kind = s(err, &["type"]);
    o.provider_class = s(err, &["code"]).or_else(|| kind.clone());
    o.code = s(err, &["decline_code"]).or_else(|| s(err, &["code"]));
    match kind.as_deref() {
        Some("card_error") => {
            o.scope = Scope::Recipient;
            o.permanent = match o.code.as_deref() {
                Some("insufficient_funds" | "try_again_later" | "processing_error") => Some(false),
                Some("generic_decline" | "card_declined") => None,
                _ => Some(true),
            };
        }
        Some("api_error") => {
            o.scope = Scope::Provider;
            o.permanent = Some(false);
        }
        Some("authentication_error") => o.scope = Scope::Sender,
        Some("idempotency_error") | Some("invalid_request_error") => o.scope = Scope::Service,
        _ => {}
    }
}

fn twilio_details(o: &mut GatewayOutcome, v: &Value) {
    let Some(code) = s(v, &["code"]) else {
        return;
    };
    o.scope = match code.as_str() {
        // Invalid or unreachable 'To', unsubscribed recipient, landline.
        "21211" | "21614" | "21610" | "21408" => Scope::Recipient,
        // Authentication, unverified or unregistered sender.
        "20003" | "21606" | "21608" | "21659" | "30034" => Scope::Sender,
        _ => o.scope,
    };
    o.provider_class = Some("twilio_error".to_string());
    o.code = Some(code);
}

fn sendgrid_details(o: &mut GatewayOutcome, v: &Value) {
    let Some(errors) = v.get("errors").and_then(Value::as_array) else {
        return;
    };
    o.provider_class = Some("sendgrid_error".to_string());
    // The field name is low-cardinality; messages may quote addresses and are never copied.
    let mut fields: Vec<String> = errors
        .iter()
        .filter_map(|e| s(e, &["field"]))
        .filter(|f| f.len() <= 64)
        .collect();
    fields.sort();
    fields.dedup();
    if !fields.is_empty() {
        o.code = Some(fields.join(","));
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - now;
    Some(Duration::from_secs(delta.num_seconds().max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_445_412_480, 0).unwrap()
    }

    #[test]
    fn status_classes_and_retry_after() {
        let h = HeaderMap::new();
        assert_eq!(
            classify_response("x", 200, &h, b"", now()).class,
            GatewayClass::Success
        );
        assert_eq!(
            classify_response("x", 503, &h, b"", now()).class,
            GatewayClass::Provider5xx
        );
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:30 GMT".parse().unwrap(),
        );
        let o = classify_response("x", 429, &h, b"", now());
        assert_eq!(o.class, GatewayClass::RateLimited);
        assert_eq!(o.retry_after, Some(Duration::from_secs(30)));
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(7)));
    }

    #[test]
    fn provider_error_bodies() {
        let h = HeaderMap::new();
        let body = br#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}"#;
        let o = classify_response("stripe", 402, &h, body, now());
        assert_eq!(o.provider_class.as_deref(), Some("card_declined"));
        assert_eq!(o.code.as_deref(), Some("insufficient_funds"));
        assert_eq!((o.scope, o.permanent), (Scope::Recipient, Some(false)));
        let o = classify_response(
            "twilio",
            400,
            &h,
            br#"{"code":21211,"message":"The 'To' number +1555 is not valid.","status":400}"#,
            now(),
        );
        assert_eq!(
            (o.code.as_deref(), o.scope),
            (Some("21211"), Scope::Recipient)
        );
        let o = classify_response(
            "sendgrid",
            400,
            &h,
            br#"{"errors":[{"message":"bad a@b.c","field":"personalizations.0.to.0.email"}]}"#,
            now(),
        );
        assert_eq!(o.code.as_deref(), Some("personalizations.0.to.0.email"));
        let sig = o.to_signal("sendgrid", Channel::Email).to_json();
        assert!(!sig.contains("a@b.c"));
    }

    #[test]
    fn message_ids_match_between_sends_and_webhooks() {
        let mut h = HeaderMap::new();
        h.insert("x-message-id", "LRzXl_NHStOGhQ4kofSm_A".parse().unwrap());
        let sent = message_id("sendgrid", &h, b"").unwrap();
        assert_eq!(
            sendgrid_message_ref(
                "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
            ),
            Some(sent)
        );
        let none = HeaderMap::new();
        assert_eq!(
            message_id("twilio", &none, br#"{"sid":"SM123","status":"queued"}"#).as_deref(),
            Some("SM123")
        );
        assert_eq!(
            message_id(
                "mailgun",
                &none,
                br#"{"id":"<2016.1@example.org>","message":"Queued"}"#
            )
            .as_deref(),
            Some("2016.1@example.org")
        );
        assert_eq!(message_id("stripe", &none, br#"{"id":"pi_1"}"#), None);
        assert_eq!(message_id("twilio", &none, b"not json"), None);
        let accepted = classify_response("sendgrid", 202, &h, b"", chrono::Utc::now());
        let mut o = accepted.clone();
        o.message_id = message_id("sendgrid", &h, b"");
        let s = o.to_signal("sendgrid", Channel::Email);
        assert_eq!(
            s.attrs.get("message_id").map(String::as_str),
            Some("LRzXl_NHStOGhQ4kofSm_A")
        );
        assert!(
            !accepted
                .to_signal("sendgrid", Channel::Email)
                .attrs
                .contains_key("message_id")
        );
    }
}
