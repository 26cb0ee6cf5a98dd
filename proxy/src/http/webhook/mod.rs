//! Webhook taps: verify a provider's signature over the raw body, then parse the verified payload
//! into normalized delivery or payment outcomes.
//!
//! - [`stripe`], [`twilio`], [`sendgrid`], [`mailgun`], [`ses`] (Amazon SES via SNS), [`postmark`]:
//!   one file per provider, each with `verify` (exactly the provider's scheme) and `parse`.
//! - [`event`]: the normalized [`WebhookEvent`] and its conversion into a `vigil_signal::Signal`.
//! - [`tap`]: [`WebhookTap`], the configured verifier + parser for one webhook path.
//! - [`error`]: [`VerifyError`] and [`ParseError`], each with a bounded `reason()` for metrics.
//!
//! Every comparison of a signature or credential is constant-time.

pub mod error;
pub mod event;
pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;
pub mod stripe;
pub mod tap;
pub mod twilio;

pub use error::{ParseError, TapError, VerifyError};
pub use event::WebhookEvent;
pub use tap::{WebhookRequest, WebhookTap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A provider whose webhooks Vigil can verify and parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Stripe,
    Twilio,
    Sendgrid,
    Mailgun,
    Ses,
    Postmark,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Twilio => "twilio",
            Provider::Sendgrid => "sendgrid",
            Provider::Mailgun => "mailgun",
            Provider::Ses => "ses",
            Provider::Postmark => "postmark",
        }
    }
}

/// Reads a string at a JSON path (`None` when absent, null or not a string/number).
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<std::borrow::Cow<'a, str>> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    match cur {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Constant-time equality for secrets of public length.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
