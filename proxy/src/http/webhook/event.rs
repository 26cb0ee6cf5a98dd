//! The normalized outcome a tap extracts from one provider event.

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;
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
    /// The provider's id of the message this event is about, as the gateway saw it when the
    /// send was accepted (see `gateway::classify::message_ref`).
    pub message_id: Option<String>,
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
            message_id: None,
        }
    }

    /// Webhook lag: `received` minus the provider's event timestamp, in seconds, clamped to 0
    /// (provider clocks run ahead); `None` when the payload carries no timestamp.
    pub fn lag_seconds(&self, received: DateTime<Utc>) -> Option<f64> {
        let t = self.time?;
        let ms = (received - t).num_milliseconds().max(0);
        Some(ms as f64 / 1000.0)
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
        if let Some(id) = &self.message_id {
            s = s.with_attr("message_id", id.clone());
        }
        s
    }
}

/// Labels of `vigil_webhook_event_lag_seconds` (bounded: the tap's provider).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub provider: &'static str,
}

/// Buckets of `vigil_webhook_event_lag_seconds`, in seconds (0.5 s ... 1 h: providers batch
/// events and retry failed deliveries for hours).
pub const LAG_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// A histogram with [`LAG_BUCKETS`] (the constructor of the lag family).
pub fn lag_histogram() -> Histogram {
    Histogram::new(LAG_BUCKETS)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_receive_time_minus_event_time_clamped_at_zero() {
        let mut e = WebhookEvent::new(
            Provider::Stripe,
            Channel::Payment,
            Outcome::Succeeded,
            "charge.succeeded",
            "evt_1",
        );
        let now = unix_time(1_700_000_100).unwrap();
        assert_eq!(e.lag_seconds(now), None, "no timestamp, no lag");
        e.time = unix_time(1_700_000_000);
        assert_eq!(e.lag_seconds(now), Some(100.0));
        e.time = unix_time(1_700_000_160);
        assert_eq!(e.lag_seconds(now), Some(0.0), "clock skew clamps to 0");
    }
}
