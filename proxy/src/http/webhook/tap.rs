//! [`WebhookTap`]: the verifier and parser configured for one webhook path.

use std::sync::Arc;

use http::HeaderMap;
use p256::ecdsa::VerifyingKey;

use super::mailgun::ReplayCache;
use super::ses::CertCache;
use super::{
    Provider, TapError, VerifyError, WebhookEvent, mailgun, postmark, sendgrid, ses, stripe, twilio,
};
use crate::http::pii::PiiHasher;

/// What a tap needs to verify one provider's webhooks.
#[derive(Clone)]
pub struct TapSettings {
    pub provider: Provider,
    /// Stripe endpoint secret, Twilio auth token, SendGrid public key (base64 DER), Mailgun
    /// signing key, Postmark `user:password`; unused for SES.
    pub secret: String,
    /// SES: the SNS topic ARNs accepted.
    pub topic_arns: Vec<String>,
    /// Timestamp tolerance in seconds (Stripe, SendGrid, Mailgun); 0 disables it.
    pub tolerance_secs: u64,
    /// Mailgun: how many tokens the replay cache remembers.
    pub replay_capacity: usize,
}

impl std::fmt::Debug for TapSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapSettings")
            .field("provider", &self.provider)
            .field("secret", &"<redacted>")
            .field("topic_arns", &self.topic_arns)
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

/// One inbound webhook as the tap sees it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub headers: &'a HeaderMap,
    /// The raw body bytes, exactly as received.
    pub body: &'a [u8],
    /// The full URL the provider called (scheme, host, path and query), for Twilio.
    pub url: &'a str,
    /// The current time (injected for tests).
    pub now_unix: i64,
}

impl WebhookRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_form(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
    }
}

/// Verifies and parses one provider's webhooks.
pub struct WebhookTap {
    settings: TapSettings,
    hasher: PiiHasher,
    sendgrid_key: Option<VerifyingKey>,
    replay: ReplayCache,
    certs: Option<Arc<CertCache>>,
}

impl std::fmt::Debug for WebhookTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTap")
            .field("settings", &self.settings)
            .finish()
    }
}

impl WebhookTap {
    /// Checks the settings (key formats, required fields). SES needs a certificate cache.
    pub fn new(
        settings: TapSettings,
        hasher: PiiHasher,
        certs: Option<Arc<CertCache>>,
    ) -> Result<WebhookTap, VerifyError> {
        let sendgrid_key = match settings.provider {
            Provider::Sendgrid => Some(sendgrid::public_key(&settings.secret)?),
            _ => None,
        };
        match settings.provider {
            Provider::Ses if settings.topic_arns.is_empty() => {
                return Err(VerifyError::Config("ses needs at least one topic ARN"));
            }
            Provider::Ses if certs.is_none() => {
                return Err(VerifyError::Config("ses needs a certificate source"));
            }
            Provider::Ses | Provider::Sendgrid => {}
            _ if settings.secret.is_empty() => {
                return Err(VerifyError::Config("secret is empty"));
            }
            _ => {}
        }
        Ok(WebhookTap {
            replay: ReplayCache::new(settings.replay_capacity),
            settings,
            hasher,
            sendgrid_key,
            certs,
        })
    }

    pub fn provider(&self) -> Provider {
        self.settings.provider
    }

    /// Verifies the signature over the raw body.
    pub async fn verify(&self, req: &WebhookRequest<'_>) -> Result<(), VerifyError> {
        let s = &self.settings;
        match s.provider {
            Provider::Stripe => stripe::verify(
                &s.secret,
                req.header(stripe::HEADER),
                req.body,
                req.now_unix,
                s.tolerance_secs,
            ),
            Provider::Twilio => twilio::verify(
                &s.secret,
                req.header(twilio::HEADER),
                req.url,
                req.body,
                req.is_form(),
            ),
            Provider::Sendgrid => {
                let key = self
                    .sendgrid_key
                    .as_ref()
                    .ok_or(VerifyError::Config("sendgrid key"))?;
                sendgrid::verify(
                    key,
                    req.header(sendgrid::SIGNATURE_HEADER),
                    req.header(sendgrid::TIMESTAMP_HEADER),
                    req.body,
                    req.now_unix,
                    s.tolerance_secs,
                )
            }
            Provider::Mailgun => {
                let fields = mailgun::signed_fields(req.body, req.is_form())?;
                mailgun::verify(
                    &s.secret,
                    &fields,
                    &self.replay,
                    req.now_unix,
                    s.tolerance_secs,
                )
            }
            Provider::Postmark => postmark::verify(&s.secret, req.header("authorization")),
            Provider::Ses => {
                let certs = self
                    .certs
                    .as_ref()
                    .ok_or(VerifyError::Config("ses certs"))?;
                ses::verify(req.body, certs, &s.topic_arns, req.now_unix).await
            }
        }
    }

    /// Parses a body that was verified.
    pub fn parse(&self, req: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, TapError> {
        let h = &self.hasher;
        let events = match self.settings.provider {
            Provider::Stripe => stripe::parse(req.body, h)?,
            Provider::Twilio => twilio::parse(req.body, h)?,
            Provider::Sendgrid => sendgrid::parse(req.body, h)?,
            Provider::Mailgun => mailgun::parse(req.body, req.is_form(), h)?,
            Provider::Postmark => postmark::parse(req.body, h)?,
            Provider::Ses => ses::parse(req.body, h)?,
        };
        Ok(events)
    }

    /// Verifies, then parses.
    pub async fn process(&self, req: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, TapError> {
        self.verify(req).await?;
        self.parse(req)
    }
}
