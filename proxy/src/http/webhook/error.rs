//! Why a webhook was not counted as an outcome. Each variant has a bounded `reason()` used as a
//! metric label and in the log line; none carries payload content.

/// The signature or credential did not check out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp outside the {0} s tolerance")]
    Stale(u64),
    #[error("token already seen (replay)")]
    Replay,
    #[error("signing certificate URL is not an SNS HTTPS URL")]
    CertUrl,
    #[error("TopicArn is not the configured topic")]
    Topic,
    #[error("signing certificate unavailable: {0}")]
    Certificate(&'static str),
    #[error("webhook secret is not configured correctly: {0}")]
    Config(&'static str),
}

impl VerifyError {
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Missing(_) => "missing_signature",
            VerifyError::Malformed(_) => "malformed_signature",
            VerifyError::Mismatch => "bad_signature",
            VerifyError::Stale(_) => "stale_timestamp",
            VerifyError::Replay => "replay",
            VerifyError::CertUrl => "bad_cert_url",
            VerifyError::Topic => "topic_not_allowed",
            VerifyError::Certificate(_) => "certificate",
            VerifyError::Config(_) => "config",
        }
    }
}

/// The verified payload could not be read as the provider's event format.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("unexpected shape: {0}")]
    Shape(&'static str),
}

impl ParseError {
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Json(_) => "invalid_json",
            ParseError::Missing(_) => "missing_field",
            ParseError::Shape(_) => "unexpected_shape",
        }
    }
}

/// Either step failed.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("unverified webhook: {0}")]
    Verify(#[from] VerifyError),
    #[error("unparseable webhook: {0}")]
    Parse(#[from] ParseError),
}

impl TapError {
    pub fn reason(&self) -> &'static str {
        match self {
            TapError::Verify(e) => e.reason(),
            TapError::Parse(e) => e.reason(),
        }
    }
}
