//! Amazon SES notifications delivered by SNS. The SNS envelope is verified first: RSA PKCS#1 v1.5
//! over the canonical string of the envelope's fields, SHA1 for `SignatureVersion` 1 and SHA256
//! for 2, with the certificate from `SigningCertURL`, which must be HTTPS on
//! `sns.<region>.amazonaws.com` (or `.amazonaws.com.cn`). `TopicArn` must be a configured topic.
//! Fetching goes through [`CertSource`] behind a bounded [`CertCache`], so tests inject a cert.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::Value;
use vigil_signal::{Channel, Outcome, Scope};

use super::{ParseError, Provider, VerifyError, WebhookEvent, str_at};
use crate::http::gateway::classify::message_ref;
use crate::http::pii::{PiiHasher, PiiKind};

/// A boxed future, for the object-safe [`CertSource`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where signing certificates come from (HTTPS in production, a fixed map in tests).
pub trait CertSource: Send + Sync {
    /// The PEM or DER bytes of the certificate at `url` (already checked by [`cert_url_ok`]).
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, VerifyError>>;
}

/// Whether `url` is an SNS signing-certificate URL: `https://sns.<region>.amazonaws.com[.cn]/...pem`,
/// no userinfo, no port.
pub fn cert_url_ok(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return false,
    };
    let region = host
        .strip_prefix("sns.")
        .and_then(|h| {
            h.strip_suffix(".amazonaws.com")
                .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
        })
        .unwrap_or("");
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && path.ends_with(".pem")
        && !path.contains("..")
}

/// Parsed public keys by certificate URL; at most `capacity` entries (cleared when full).
pub struct CertCache {
    source: Arc<dyn CertSource>,
    capacity: usize,
    keys: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl std::fmt::Debug for CertCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertCache")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl CertCache {
    pub fn new(source: Arc<dyn CertSource>, capacity: usize) -> CertCache {
        CertCache {
            source,
            capacity: capacity.max(1),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The RSA public key (PKCS#1 DER) of the certificate at `url`, fetched once.
    pub async fn public_key(&self, url: &str, now_unix: i64) -> Result<Arc<Vec<u8>>, VerifyError> {
        if !cert_url_ok(url) {
            return Err(VerifyError::CertUrl);
        }
        if let Some(k) = self.lock().get(url) {
            return Ok(k.clone());
        }
        let raw = self.source.fetch(url).await?;
        let key = Arc::new(rsa_key_from_cert(&raw, now_unix)?);
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(url.to_string(), key.clone());
        Ok(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Vec<u8>>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Extracts the subject public key from a PEM or DER certificate valid at `now_unix`.
pub fn rsa_key_from_cert(raw: &[u8], now_unix: i64) -> Result<Vec<u8>, VerifyError> {
    let der = if raw.starts_with(b"-----") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(raw)
            .map_err(|_| VerifyError::Certificate("not a PEM certificate"))?;
        pem.contents
    } else {
        raw.to_vec()
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| VerifyError::Certificate("not an X.509 certificate"))?;
    let validity = cert.validity();
    if now_unix < validity.not_before.timestamp() || now_unix > validity.not_after.timestamp() {
        return Err(VerifyError::Certificate("outside its validity period"));
    }
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// The canonical string SNS signs for this envelope.
pub fn string_to_sign(envelope: &Value) -> Result<String, VerifyError> {
    let kind = str_at(envelope, &["Type"]).ok_or(VerifyError::Missing("Type"))?;
    let keys: &[&str] = match kind.as_ref() {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
        _ => return Err(VerifyError::Malformed("Type")),
    };
    let mut out = String::new();
    for key in keys {
        match str_at(envelope, &[key]) {
            Some(v) => {
                out.push_str(key);
                out.push('\n');
                out.push_str(&v);
                out.push('\n');
            }
            // Subject is optional on notifications; every other field is required.
            None if *key == "Subject" => {}
            None => return Err(VerifyError::Missing("SNS field")),
        }
    }
    Ok(out)
}

/// Verifies an SNS envelope against the certificate's public key and the pinned topics.
pub fn verify_with_key(
    envelope: &Value,
    rsa_public_key: &[u8],
    topics: &[String],
) -> Result<(), VerifyError> {
    let topic = str_at(envelope, &["TopicArn"]).ok_or(VerifyError::Missing("TopicArn"))?;
    if !topics.iter().any(|t| t == topic.as_ref()) {
        return Err(VerifyError::Topic);
    }
    let alg: &'static dyn aws_lc_rs::signature::VerificationAlgorithm =
        match str_at(envelope, &["SignatureVersion"]).as_deref() {
            Some("1") => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Some("2") => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            Some(_) => return Err(VerifyError::Malformed("SignatureVersion")),
            None => return Err(VerifyError::Missing("SignatureVersion")),
        };
    let sig_b64 = str_at(envelope, &["Signature"]).ok_or(VerifyError::Missing("Signature"))?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig_b64.as_bytes())
        .map_err(|_| VerifyError::Malformed("Signature"))?;
    let msg = string_to_sign(envelope)?;
    aws_lc_rs::signature::UnparsedPublicKey::new(alg, rsa_public_key)
        .verify(msg.as_bytes(), &sig)
        .map_err(|_| VerifyError::Mismatch)
}

/// Full verification: URL check, certificate (cached), signature, topic.
pub async fn verify(
    body: &[u8],
    certs: &CertCache,
    topics: &[String],
    now_unix: i64,
) -> Result<(), VerifyError> {
    let envelope: Value =
        serde_json::from_slice(body).map_err(|_| VerifyError::Malformed("SNS envelope"))?;
    let topic = str_at(&envelope, &["TopicArn"]).ok_or(VerifyError::Missing("TopicArn"))?;
    // Refuse foreign topics before fetching anything.
    if !topics.iter().any(|t| t == topic.as_ref()) {
        return Err(VerifyError::Topic);
    }
    let url = str_at(&envelope, &["SigningCertURL"])
        .or_else(|| str_at(&envelope, &["SigningCertUrl"]))
        .ok_or(VerifyError::Missing("SigningCertURL"))?;
    let key = certs.public_key(&url, now_unix).await?;
    verify_with_key(&envelope, &key, topics)
}

/// One normalized event before ids are assigned:
/// (outcome, class, code, permanent, scope, recipient address).
type Row = (
    Outcome,
    Option<String>,
    Option<String>,
    Option<bool>,
    Scope,
    Option<String>,
);

/// Parses a verified SNS envelope carrying an SES event.
pub fn parse(body: &[u8], hasher: &PiiHasher) -> Result<Vec<WebhookEvent>, ParseError> {
    let envelope: Value = serde_json::from_slice(body)?;
    if str_at(&envelope, &["Type"]).as_deref() != Some("Notification") {
        return Ok(Vec::new());
    }
    let sns_id = str_at(&envelope, &["MessageId"]).ok_or(ParseError::Missing("MessageId"))?;
    let message = str_at(&envelope, &["Message"]).ok_or(ParseError::Missing("Message"))?;
    let m: Value = serde_json::from_str(&message)?;
    let kind = str_at(&m, &["eventType"])
        .or_else(|| str_at(&m, &["notificationType"]))
        .ok_or(ParseError::Missing("eventType"))?;
    let message_id = str_at(&m, &["mail", "messageId"]).and_then(|id| message_ref(&id));
    let destinations = || -> Vec<String> {
        m.get("mail")
            .and_then(|x| x.get("destination"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let strings_at = |path: &[&str]| -> Vec<Value> {
        let mut cur = &m;
        for k in path {
            match cur.get(*k) {
                Some(v) => cur = v,
                None => return Vec::new(),
            }
        }
        cur.as_array().cloned().unwrap_or_default()
    };
    let mut rows: Vec<Row> = Vec::new();
    match kind.as_ref() {
        "Bounce" => {
            let bounce_type = str_at(&m, &["bounce", "bounceType"]);
            let permanent = bounce_type.as_deref() == Some("Permanent");
            for r in strings_at(&["bounce", "bouncedRecipients"]) {
                let code = str_at(&r, &["status"]).map(|c| c.into_owned());
                let addr = str_at(&r, &["emailAddress"]).map(|c| c.into_owned());
                rows.push((
                    Outcome::Failed,
                    Some("bounce".into()),
                    code,
                    Some(permanent),
                    Scope::Recipient,
                    addr,
                ));
            }
        }
        "Complaint" => {
            let code = str_at(&m, &["complaint", "complaintFeedbackType"]).map(|c| c.into_owned());
            for r in strings_at(&["complaint", "complainedRecipients"]) {
                let addr = str_at(&r, &["emailAddress"]).map(|c| c.into_owned());
                rows.push((
                    Outcome::Complained,
                    Some("complaint".into()),
                    code.clone(),
                    Some(true),
                    Scope::Recipient,
                    addr,
                ));
            }
        }
        "Delivery" => {
            for r in strings_at(&["delivery", "recipients"]) {
                let addr = r.as_str().map(String::from);
                rows.push((Outcome::Delivered, None, None, None, Scope::Recipient, addr));
            }
        }
        "Send" | "Reject" | "Rendering Failure" => {
            let (outcome, class, permanent, scope) = match kind.as_ref() {
                "Send" => (Outcome::Accepted, None, None, Scope::Recipient),
                "Reject" => (Outcome::Failed, Some("rejected"), Some(true), Scope::Sender),
                _ => (
                    Outcome::Failed,
                    Some("rendering_failure"),
                    Some(true),
                    Scope::Sender,
                ),
            };
            for addr in destinations() {
                rows.push((
                    outcome,
                    class.map(String::from),
                    None,
                    permanent,
                    scope,
                    Some(addr),
                ));
            }
        }
        _ => {}
    }
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, (outcome, class, code, permanent, scope, addr))| {
            let mut e = WebhookEvent::new(
                Provider::Ses,
                Channel::Email,
                outcome,
                kind.as_ref(),
                format!("{sns_id}:{i}"),
            );
            e.class = class;
            e.code = code;
            e.permanent = permanent;
            e.scope = scope;
            e.subject = addr.map(|a| hasher.hash(PiiKind::Email, &a));
            e.message_id = message_id.clone();
            e
        })
        .collect())
}
