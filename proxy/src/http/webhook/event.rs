//! The normalized outcome a tap extracts from one provider event.

use chrono::{DateTime, Utc};
use vigil_signal::{Channel, Outcome, Scope, Signal, Source};

use super::Provider;

/// One normalized event. `subject` is already hashed; raw addresses never get here.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    pub provider: Provider,
    pub channel: Channel,
    pub outcome: Outcome,
    pub class: Option<String>,
    pub code: Option<String>,
    pub permanent: Option<bool>,
    pub scope: Scope,
    /// Hashed recipient, phone number or card (`h:...`).
    pub subject: Option<String>,
    /// The raw event name from the payload (`bounce`, `charge.failed`, ...).
    pub provider_event: String,
    /// The provider's event id (unique per event), used for the deterministic signal id.
    pub event_id: String,
    pub time: Option<DateTime<Utc>>,
}

impl WebhookEvent {
    pub(crate) fn new(
        provider: Provider,
        channel: Channel,
        outcome: Outcome,
        provider_event: impl Into<String>,
        event_id: impl Into<String>,
    ) -> WebhookEvent {
        WebhookEvent {
            provider,
            channel,
            outcome,
            class: None,
            code: None,
            permanent: None,
            scope: Scope::Recipient,
            subject: None,
            provider_event: provider_event.into(),
            event_id: event_id.into(),
            time: None,
        }
    }

    /// The signal for this event: source Webhook, id `"<provider>:<event id>"`.
    pub fn to_signal(&self) -> Signal {
        let mut s = Signal::new(Source::Webhook, self.channel, self.outcome)
            .with_id(format!("{}:{}", self.provider.as_str(), self.event_id))
            .with_provider(self.provider.as_str())
            .with_scope(self.scope)
            .with_permanent(self.permanent)
            .with_attr("provider_event", self.provider_event.clone());
        if let Some(t) = self.time {
            s = s.with_time(t);
        }
        if let Some(c) = &self.class {
            s = s.with_class(c.clone());
        }
        if let Some(c) = &self.code {
            s = s.with_code(c.clone());
        }
        if let Some(sub) = &self.subject {
            s = s.with_subject(sub.clone());
        }
        s
    }
}

/// Hex of SHA-256 over parts, truncated: a stable id for events that carry none.
pub(crate) fn digest_id(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    format!("d{}", &hex::encode(h.finalize())[..24])
}

/// Unix seconds to a timestamp.
pub(crate) fn unix_time(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}
