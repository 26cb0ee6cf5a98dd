//! Twilio: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, full URL + each form parameter
//! name and value, sorted)). JSON bodies carry `bodySHA256=<hex>` in the URL instead, which is
//! then the whole string to sign. Like the official validators, the URL is also tried with the
//! port removed and with the scheme's default port added.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use vigil_signal::{Channel, Outcome, Scope};

use super::{ParseError, Provider, VerifyError, WebhookEvent, ct_eq};
use crate::http::gateway::classify::message_ref;
use crate::http::pii::{PiiHasher, PiiKind};
use base64::Engine;

pub const HEADER: &str = "x-twilio-signature";

/// Verifies a request. `url` is the full URL Twilio requested (scheme, host, path, query).
pub fn verify(
    auth_token: &str,
    header: Option<&str>,
    url: &str,
    body: &[u8],
    is_form: bool,
) -> Result<(), VerifyError> {
    let header = header.ok_or(VerifyError::Missing("X-Twilio-Signature"))?;
    let expected = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|_| VerifyError::Malformed("X-Twilio-Signature"))?;
    let body_sha = query_param(url, "bodySHA256");
    let params = match (&body_sha, is_form) {
        (Some(_), _) | (None, false) => String::new(),
        (None, true) => sorted_params(body),
    };
    if let Some(want) = &body_sha {
        let got = hex::encode(Sha256::digest(body));
        if !ct_eq(got.as_bytes(), want.to_ascii_lowercase().as_bytes()) {
            return Err(VerifyError::Mismatch);
        }
    }
    for candidate in url_variants(url) {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
            .map_err(|_| VerifyError::Config("twilio auth token"))?;
        mac.update(candidate.as_bytes());
        mac.update(params.as_bytes());
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

/// Names and values concatenated, sorted by name then value, exact duplicates removed.
fn sorted_params(body: &[u8]) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs.into_iter().map(|(k, v)| k + &v).collect()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The URL as given, without its port, and with the scheme's default port.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let host = if let Some(end) = hostport.find(']') {
        &hostport[..=end]
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => h,
            _ => hostport,
        }
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let stripped = format!("{scheme}://{userinfo}{host}{tail}");
    let with_port = format!("{scheme}://{userinfo}{host}:{default_port}{tail}");
    for v in [stripped, with_port] {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Parses a verified SMS status callback (form body).
pub fn parse(body: &[u8], hasher: &PiiHasher) -> Result<Vec<WebhookEvent>, ParseError> {
    let mut status = None;
    let mut error_code = None;
    let mut to = None;
    let mut sid = None;
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "MessageStatus" => status = Some(v.into_owned()),
            "SmsStatus" if status.is_none() => status = Some(v.into_owned()),
            "ErrorCode" if !v.is_empty() => error_code = Some(v.into_owned()),
            "To" => to = Some(v.into_owned()),
            "MessageSid" => sid = Some(v.into_owned()),
            "SmsSid" if sid.is_none() => sid = Some(v.into_owned()),
            _ => {}
        }
    }
    let status = status.ok_or(ParseError::Missing("MessageStatus"))?;
    let sid = sid.ok_or(ParseError::Missing("MessageSid"))?;
    let outcome = match status.as_str() {
        "delivered" | "read" => Outcome::Delivered,
        "failed" | "undelivered" => Outcome::Failed,
        "queued" | "sending" | "sent" | "accepted" | "scheduled" => Outcome::Accepted,
        _ => return Ok(Vec::new()),
    };
    let mut e = WebhookEvent::new(
        Provider::Twilio,
        Channel::Sms,
        outcome,
        status.clone(),
        format!("{sid}:{status}"),
    );
    if outcome == Outcome::Failed {
        e.class = Some(status.clone());
        let (permanent, scope) = error_meaning(error_code.as_deref());
        e.permanent = permanent;
        e.scope = scope;
        e.code = error_code;
    }
    e.subject = to.map(|t| hasher.hash(PiiKind::Phone, &t));
    e.message_id = message_ref(&sid);
    Ok(vec![e])
}

/// Permanence and scope of a Twilio messaging error code (Twilio error dictionary).
fn error_meaning(code: Option<&str>) -> (Option<bool>, Scope) {
    match code {
        // Price exceeds max price; unregistered 10DLC number; unverified toll-free: our config.
        Some("30010" | "30034" | "30032") => (Some(true), Scope::Sender),
        // Carrier filtering of our sender: may clear, but it is about us.
        Some("30007") => (Some(false), Scope::Sender),
        // Queue overflow, account suspended.
        Some("30001" | "30002") => (Some(false), Scope::Provider),
        // Unknown error: the carrier did not take the message. It says nothing about the handset
        // and is how a carrier outage shows up in bulk, so it counts against the provider side.
        Some("30008") => (Some(false), Scope::Provider),
        // Unreachable handset (off, out of coverage).
        Some("30003") => (Some(false), Scope::Recipient),
        // Unknown destination, landline, or opted-out recipient.
        Some("30005" | "30006" | "21610") => (Some(true), Scope::Recipient),
        _ => (None, Scope::Recipient),
    }
}
