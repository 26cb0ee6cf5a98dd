//! Webhook signature schemes of the three simulated providers, used by the simulators (sign)
//! and the CRM (verify):
//! - SendGrid Signed Event Webhook: ECDSA P-256 / SHA-256 over `timestamp + body`, base64 DER
//!   signature; the public key is shared as base64 DER SubjectPublicKeyInfo.
//! - Twilio `X-Twilio-Signature`: base64 HMAC-SHA1 (auth token) over the URL followed by the
//!   form parameters sorted by name, each as `name + value`.
//! - Stripe `Stripe-Signature: t=<unix>,v1=<hex>`: HMAC-SHA256 (endpoint secret) over `t.body`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};

pub const SENDGRID_SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
pub const SENDGRID_TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";
pub const TWILIO_SIGNATURE_HEADER: &str = "X-Twilio-Signature";
pub const STRIPE_SIGNATURE_HEADER: &str = "Stripe-Signature";

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature header missing")]
    Missing,
    #[error("signature header malformed")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("signing key invalid")]
    Key,
}

/// A SendGrid event-webhook signing key pair.
#[derive(Clone)]
pub struct SendgridKey {
    key: SigningKey,
}

impl std::fmt::Debug for SendgridKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendgridKey").finish_non_exhaustive()
    }
}

impl SendgridKey {
    /// A key from 32 secret bytes (a valid P-256 scalar).
    pub fn from_bytes(secret: &[u8; 32]) -> Result<Self, SignatureError> {
        SigningKey::from_slice(secret)
            .map(|key| SendgridKey { key })
            .map_err(|_| SignatureError::Key)
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        loop {
            let bytes: [u8; 32] = rand::random();
            if let Ok(k) = Self::from_bytes(&bytes) {
                return k;
            }
        }
    }

    /// The public key as base64 DER SubjectPublicKeyInfo (what SendGrid shows in its console).
    pub fn public_key_base64(&self) -> String {
        let der = self
            .key
            .verifying_key()
            .to_public_key_der()
            .expect("a P-256 public key always encodes");
        STANDARD.encode(der.as_bytes())
    }

    /// The base64 DER signature over `timestamp + body`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut msg = Vec::with_capacity(timestamp.len() + body.len());
        msg.extend_from_slice(timestamp.as_bytes());
        msg.extend_from_slice(body);
        let sig: Signature = self.key.sign(&msg);
        STANDARD.encode(sig.to_der().as_bytes())
    }
}

/// Verifies a SendGrid signature with a base64 DER public key.
pub fn sendgrid_verify(
    public_key_b64: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let der = STANDARD
        .decode(public_key_b64.trim())
        .map_err(|_| SignatureError::Key)?;
    let key = VerifyingKey::from_public_key_der(&der).map_err(|_| SignatureError::Key)?;
    let signature = signature.ok_or(SignatureError::Missing)?;
    let timestamp = timestamp.ok_or(SignatureError::Missing)?;
    let sig_der = STANDARD
        .decode(signature.trim())
        .map_err(|_| SignatureError::Malformed)?;
    let sig = Signature::from_der(&sig_der).map_err(|_| SignatureError::Malformed)?;
    let mut msg = Vec::with_capacity(timestamp.len() + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.extend_from_slice(body);
    key.verify(&msg, &sig).map_err(|_| SignatureError::Mismatch)
}

/// The `X-Twilio-Signature` value for a form POST to `url`.
pub fn twilio_sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<sha1::Sha1>>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Verifies `X-Twilio-Signature` for a form body posted to `url`.
pub fn twilio_verify(
    auth_token: &str,
    url: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?;
    let params: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| SignatureError::Malformed)?;
    let expected = twilio_sign(auth_token, url, &params);
    if constant_time_eq(expected.as_bytes(), signature.trim().as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The `Stripe-Signature` value for `body` signed at `timestamp`.
pub fn stripe_sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<sha2::Sha256>>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Verifies a `Stripe-Signature` header (any `v1` entry may match); no clock tolerance check.
pub fn stripe_verify(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.to_string()),
            Some(("v1", v)) => v1.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed);
    }
    for candidate in v1 {
        let mut mac =
            <Hmac<sha2::Sha256>>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(body);
        if mac.verify_slice(&candidate).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let key = SendgridKey::from_bytes(&[7u8; 32]).unwrap();
        let sig = key.sign("1700000000", b"[]\r\n");
        let pk = key.public_key_base64();
        assert_eq!(
            sendgrid_verify(&pk, Some(&sig), Some("1700000000"), b"[]\r\n"),
            Ok(())
        );
        assert_eq!(
            sendgrid_verify(&pk, Some(&sig), Some("1700000001"), b"[]\r\n"),
            Err(SignatureError::Mismatch)
        );
        let header = stripe_sign("whsec_x", 12, b"{}");
        assert_eq!(stripe_verify("whsec_x", Some(&header), b"{}"), Ok(()));
        assert_eq!(
            stripe_verify("whsec_y", Some(&header), b"{}"),
            Err(SignatureError::Mismatch)
        );
    }

    /// sendgrid-nodejs `eventwebhook.spec.js` single-event vector (MIT).
    #[test]
    fn sendgrid_verifies_the_upstream_vector() {
        let pk = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
        let sig = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
        let body = concat!(
            r#"[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address","sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA","#,
            r#""sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","#,
            r#""smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]"#,
            "\r\n"
        );
        assert_eq!(
            sendgrid_verify(pk, Some(sig), Some("1600112502"), body.as_bytes()),
            Ok(())
        );
        assert_eq!(
            sendgrid_verify(
                pk,
                Some(sig),
                Some("1600112502"),
                &body.as_bytes()[..body.len() - 2]
            ),
            Err(SignatureError::Mismatch)
        );
    }

    /// stripe-go `webhook/client_test.go` payload and secret, vector computed in the fixtures.
    #[test]
    fn stripe_matches_the_fixture_vector() {
        let body = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\",\n  \"api_version\": \"2026-07-29.dahlia\"\n}";
        let header =
            "t=1492774577,v1=6b987ef32c7675b4032e2663c14af13d9418658b800d773ce1941a25ae3ad425";
        assert_eq!(
            stripe_sign("whsec_test_secret", 1492774577, body.as_bytes()),
            header
        );
        assert_eq!(
            stripe_verify("whsec_test_secret", Some(header), body.as_bytes()),
            Ok(())
        );
    }

    #[test]
    fn twilio_matches_the_fixture_vector() {
        let body = "RawDlrDoneDate=2303072155&SmsSid=SMxxx&SmsStatus=delivered&MessageStatus=delivered&To=%2B17031111&MessageSid=SMyyy&AccountSid=ACzzz&From=%2B13364432222&ApiVersion=2010-04-01";
        let url = "https://example.com/webhooks/twilio/status";
        assert_eq!(
            twilio_verify(
                "12345",
                url,
                body.as_bytes(),
                Some("RbMViuYHCsIvDtnUY/fyiUQpjmA=")
            ),
            Ok(())
        );
    }
}
