//! Notification delivery from the persistent outbox.
//!
//! - this file: [`Notifier`], which claims due outbox rows (leased, so replicas never send the
//!   same row concurrently), sends them and records the result, retrying with exponential
//!   backoff; honours `Retry-After` on 429; keeps under Slack's and PagerDuty's rate limits by
//!   deferring (never dropping) and coalesces Slack messages claimed together.
//! - [`receivers`]: Slack incoming webhooks, PagerDuty Events v2, signed generic webhooks, SMTP.

pub mod receivers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::NotifierConfig;
use crate::engine::Notification;
use crate::metrics::{Metrics, NotifyLabels};
use crate::rules::{ReceiverKind, Rules};
use crate::store::{ClaimedNotification, Store, StoreError};

/// Why one delivery failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("receiver `{0}` is not defined in the rules")]
    UnknownReceiver(String),
    #[error("environment variable `{0}` holding the receiver's secret is not set")]
    MissingSecret(String),
    #[error("request failed: {0}")]
    Http(#[source] reqwest::Error),
    #[error("receiver answered HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("stored notification is unreadable: {0}")]
    Payload(#[source] serde_json::Error),
    #[error("email could not be built: {0}")]
    Email(String),
    #[error("SMTP: {source}")]
    Smtp {
        #[source]
        source: lettre::transport::smtp::Error,
        transient: bool,
    },
}

impl SendError {
    /// Transport errors, 5xx and 429 are worth retrying; configuration and 4xx are not.
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Http(_) => true,
            SendError::Status { status, .. } => *status == 429 || *status >= 500,
            SendError::Smtp { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// Sends outbox rows.
#[derive(Debug, Clone)]
pub struct Notifier {
    store: Store,
    http: reqwest::Client,
    owner: String,
    cfg: NotifierConfig,
    metrics: Metrics,
    /// Recent send times per receiver, for rate limiting.
    sent: Arc<Mutex<HashMap<String, VecDeque<i64>>>>,
}

fn kind_label(kind: &ReceiverKind) -> &'static str {
    match kind {
        ReceiverKind::Slack { .. } => "slack",
        ReceiverKind::Pagerduty { .. } => "pagerduty",
        ReceiverKind::Webhook { .. } => "webhook",
        ReceiverKind::Smtp { .. } => "smtp",
        ReceiverKind::Log => "log",
    }
}

impl Notifier {
    pub fn new(
        store: Store,
        cfg: NotifierConfig,
        metrics: Metrics,
    ) -> Result<Notifier, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .build()?;
        let owner = cfg.replica_id.clone().unwrap_or_else(|| {
            format!(
                "vigil-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            )
        });
        Ok(Notifier {
            store,
            http,
            owner,
            cfg,
            metrics,
            sent: Arc::default(),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn backoff_ms(&self, attempts: u32) -> i64 {
        let base = self
            .cfg
            .backoff_initial_secs
            .saturating_mul(1u64 << attempts.min(20).saturating_sub(1));
        i64::try_from(base.min(self.cfg.backoff_max_secs)).unwrap_or(i64::MAX / 1000) * 1000
    }

    /// Rate limit per receiver (Slack about 1 message/s, PagerDuty about 120 events/min per
    /// key): Ok to send now, or the time the next send is allowed.
    fn admit(&self, receiver: &str, kind: &ReceiverKind, now_ms: i64) -> Result<(), i64> {
        let (max, window) = match kind {
            ReceiverKind::Slack { .. } => (1usize, 1_000i64),
            ReceiverKind::Pagerduty { .. } => (120, 60_000),
            _ => return Ok(()),
        };
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let q = sent.entry(receiver.to_string()).or_default();
        while q.front().is_some_and(|t| *t <= now_ms - window) {
            q.pop_front();
        }
        if q.len() >= max {
            return Err(q.front().copied().unwrap_or(now_ms) + window);
        }
        q.push_back(now_ms);
        Ok(())
    }

    fn count(&self, kind: &'static str, result: &'static str, n: u64) {
        self.metrics
            .notifications
            .get_or_create(&NotifyLabels { kind, result })
            .inc_by(n);
    }

    /// Claim and send what is due; returns how many notifications were delivered. Slack
    /// notifications claimed together for one receiver are coalesced into one message; a
    /// receiver over its rate limit has its rows deferred, never dropped.
    pub async fn run_once(&self, rules: &Rules, now_ms: i64) -> Result<usize, StoreError> {
        let lease = i64::try_from(self.cfg.lease_secs).unwrap_or(60) * 1000;
        let claimed = self
            .store
            .claim_notifications(&self.owner, now_ms, lease, 20)
            .await?;
        // Units of delivery: coalesced Slack batches per receiver, everything else one by one.
        let mut units: Vec<Vec<ClaimedNotification>> = Vec::new();
        let mut slack: BTreeMap<String, usize> = BTreeMap::new();
        for c in claimed {
            let is_slack = rules
                .receiver(&c.receiver)
                .is_some_and(|r| matches!(r.kind, ReceiverKind::Slack { .. }));
            if is_slack {
                if let Some(&i) = slack.get(&c.receiver) {
                    units[i].push(c);
                    continue;
                }
                slack.insert(c.receiver.clone(), units.len());
            }
            units.push(vec![c]);
        }
        let mut sent = 0;
        for unit in units {
            let first = &unit[0];
            let receiver = rules.receiver(&first.receiver);
            let kind = receiver.map_or("unknown", |r| kind_label(&r.kind));
            if let Some(r) = receiver
                && let Err(at) = self.admit(&r.name, &r.kind, now_ms)
            {
                for c in &unit {
                    self.store
                        .defer_notification(&c.id, &self.owner, at)
                        .await?;
                }
                self.count(kind, "deferred", unit.len() as u64);
                continue;
            }
            let parsed: Result<Vec<Notification>, _> = unit
                .iter()
                .map(|c| serde_json::from_str::<Notification>(&c.payload))
                .collect();
            let result = match (receiver, parsed) {
                (None, _) => Err(SendError::UnknownReceiver(first.receiver.clone())),
                (_, Err(e)) => Err(SendError::Payload(e)),
                (Some(r), Ok(ns)) => {
                    receivers::send_batch(&self.http, &r.kind, &ns, self.cfg.console_url.as_deref())
                        .await
                }
            };
            match result {
                Ok(()) => {
                    for c in &unit {
                        self.store.mark_sent(&c.id, &self.owner, now_ms).await?;
                    }
                    self.count(kind, "sent", unit.len() as u64);
                    sent += unit.len();
                }
                Err(e) => {
                    for c in &unit {
                        let retry = e.retryable() && c.attempts < self.cfg.max_attempts;
                        let delay = match &e {
                            SendError::Status {
                                retry_after: Some(d),
                                ..
                            } => i64::try_from(d.as_millis())
                                .unwrap_or(i64::MAX / 2)
                                .max(self.backoff_ms(c.attempts)),
                            _ => self.backoff_ms(c.attempts),
                        };
                        tracing::warn!(receiver = %c.receiver, incident = %c.incident_id, attempts = c.attempts, retry, error = %e, "notification failed");
                        self.store
                            .mark_failed(
                                &c.id,
                                &self.owner,
                                &e.to_string(),
                                retry.then_some(now_ms + delay),
                            )
                            .await?;
                        self.count(kind, if retry { "retry" } else { "failed" }, 1);
                    }
                }
            }
        }
        Ok(sent)
    }
}
