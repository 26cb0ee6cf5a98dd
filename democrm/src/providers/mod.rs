//! SendGrid-, Twilio- and Stripe-compatible simulators on one axum server (the three APIs do not
//! share paths, so one base URL serves all three):
//! - `sendgrid`: `POST /v3/mail/send` (202), then a signed Event Webhook batch per recipient.
//! - `twilio`: `POST /2010-04-01/Accounts/{sid}/Messages.json` (201), then signed status callbacks.
//! - `stripe`: `POST /v1/payment_intents` (200, or 402 card_error), then a signed event.
//!
//! Control: [`Simulators::set_mode`] or `PUT /_sim/mode` (JSON [`Mode`]), `GET /_sim/mode`,
//! `GET /_sim/stats` ([`SimStats`]), `GET /_sim/sendgrid-public-key`.
//! Outcomes are drawn from a seeded ChaCha stream, so a run is reproducible for one request order.

mod sendgrid;
mod stripe;
mod twilio;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::signing::SendgridKey;

/// One of the simulated providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Sendgrid,
    Twilio,
    Stripe,
}

/// The failure mode of the simulators. `provider: None` means all three.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// Realistic low noise: ~1% email bounces, ~2% undelivered SMS, ~3% card declines.
    #[default]
    Normal,
    /// ~45% of emails hard-bounce (5.1.1).
    BounceStorm,
    /// The sending IP is on a blocklist: mail from `sender_domain` (all mail when `None`) gets
    /// `bounce` events of type `blocked` (5.7.1), some `dropped`.
    BlockedIp {
        #[serde(default)]
        sender_domain: Option<String>,
    },
    /// ~75% of SMS end `undelivered` with 30008/30003.
    CarrierOutage,
    /// ~55% of card charges are declined.
    DeclineSpike,
    /// The API answers 500/503.
    #[serde(rename = "provider_5xx")]
    Provider5xx {
        #[serde(default)]
        provider: Option<ProviderKind>,
    },
    /// The API answers after `delay_ms`.
    Slow {
        #[serde(default)]
        provider: Option<ProviderKind>,
        delay_ms: u64,
    },
    /// Calls succeed but no webhook is sent.
    LostWebhooks {
        #[serde(default)]
        provider: Option<ProviderKind>,
    },
}

fn targets(scope: &Option<ProviderKind>, kind: ProviderKind) -> bool {
    scope.is_none_or(|p| p == kind)
}

/// Where the simulators send webhooks and how they sign them.
#[derive(Clone)]
pub struct SimConfig {
    /// SendGrid Event Webhook URL (e.g. the CRM's `/webhooks/sendgrid` through Vigil).
    pub sendgrid_webhook_url: Option<String>,
    /// Stripe endpoint URL (`/webhooks/stripe`).
    pub stripe_webhook_url: Option<String>,
    /// Twilio status callback used when a request carries no `StatusCallback`.
    pub twilio_status_callback_url: Option<String>,
    /// The Account SID accepted in the Twilio path and Basic auth.
    pub twilio_account_sid: String,
    /// The Twilio auth token (Basic auth password and `X-Twilio-Signature` key).
    pub twilio_auth_token: String,
    /// The Stripe webhook endpoint secret (`whsec_...`).
    pub stripe_webhook_secret: String,
    /// A fixed SendGrid signing key (32 bytes); `None` generates one.
    pub sendgrid_key: Option<[u8; 32]>,
    /// Delay between the API answer and its webhooks.
    pub webhook_delay: Duration,
    /// The outcome stream's seed.
    pub seed: u64,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("sendgrid_webhook_url", &self.sendgrid_webhook_url)
            .field("stripe_webhook_url", &self.stripe_webhook_url)
            .field(
                "twilio_status_callback_url",
                &self.twilio_status_callback_url,
            )
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field("webhook_delay", &self.webhook_delay)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            sendgrid_webhook_url: None,
            stripe_webhook_url: None,
            twilio_status_callback_url: None,
            twilio_account_sid: "AC00000000000000000000000000demo01".into(),
            twilio_auth_token: "demo-twilio-auth-token".into(),
            stripe_webhook_secret: "whsec_demo_secret".into(),
            sendgrid_key: None,
            webhook_delay: Duration::from_millis(50),
            seed: 42,
        }
    }
}

impl SimConfig {
    /// Points the three webhooks at `{base}/webhooks/{sendgrid,twilio,stripe}`.
    pub fn with_webhook_base(mut self, base: &str) -> Self {
        let base = base.trim_end_matches('/');
        self.sendgrid_webhook_url = Some(format!("{base}/webhooks/sendgrid"));
        self.twilio_status_callback_url = Some(format!("{base}/webhooks/twilio"));
        self.stripe_webhook_url = Some(format!("{base}/webhooks/stripe"));
        self
    }
}

/// Why the simulators could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid SendGrid signing key")]
    Key(#[source] crate::signing::SignatureError),
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// Counters since start (all monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    pub api_requests: u64,
    pub api_errors_5xx: u64,
    pub emails_accepted: u64,
    pub emails_delivered: u64,
    pub emails_bounced: u64,
    pub emails_blocked: u64,
    pub emails_dropped: u64,
    pub sms_accepted: u64,
    pub sms_delivered: u64,
    pub sms_undelivered: u64,
    pub payments_succeeded: u64,
    pub payments_declined: u64,
    pub webhooks_sent: u64,
    pub webhooks_failed: u64,
    pub webhooks_lost: u64,
}

#[derive(Default)]
struct Counters {
    api_requests: AtomicU64,
    api_errors_5xx: AtomicU64,
    emails_accepted: AtomicU64,
    emails_delivered: AtomicU64,
    emails_bounced: AtomicU64,
    emails_blocked: AtomicU64,
    emails_dropped: AtomicU64,
    sms_accepted: AtomicU64,
    sms_delivered: AtomicU64,
    sms_undelivered: AtomicU64,
    payments_succeeded: AtomicU64,
    payments_declined: AtomicU64,
    webhooks_sent: AtomicU64,
    webhooks_failed: AtomicU64,
    webhooks_lost: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the current mode means for one call.
#[derive(Debug, Clone, Copy)]
struct Behavior {
    fail_5xx: bool,
    delay: Option<Duration>,
    lose_webhooks: bool,
}

pub(crate) struct Shared {
    config: SimConfig,
    webhook_urls: RwLock<(Option<String>, Option<String>, Option<String>)>,
    key: SendgridKey,
    mode: Mutex<Mode>,
    rng: Mutex<ChaCha8Rng>,
    counters: Counters,
    http: reqwest::Client,
    /// Stripe `Idempotency-Key` -> (status, body).
    idempotency: Mutex<HashMap<String, (u16, serde_json::Value)>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        self.mode.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn behavior(&self, kind: ProviderKind) -> Behavior {
        let mode = self.mode();
        Behavior {
            fail_5xx: matches!(&mode, Mode::Provider5xx { provider } if targets(provider, kind)),
            delay: match &mode {
                Mode::Slow { provider, delay_ms } if targets(provider, kind) => {
                    Some(Duration::from_millis(*delay_ms))
                }
                _ => None,
            },
            lose_webhooks: matches!(&mode, Mode::LostWebhooks { provider } if targets(provider, kind)),
        }
    }

    /// A uniform draw in `0..n`.
    fn roll(&self, n: u32) -> u32 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .random_range(0..n)
    }

    /// `len` random characters from `alphabet`.
    fn random_id(&self, alphabet: &[u8], len: usize) -> String {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
            .collect()
    }

    fn hex_id(&self, len: usize) -> String {
        self.random_id(b"0123456789abcdef", len)
    }

    fn alnum_id(&self, len: usize) -> String {
        self.random_id(
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            len,
        )
    }

    /// Applies the mode's delay; returns true when the call must fail with a 5xx.
    async fn before_answer(&self, b: Behavior) -> bool {
        inc(&self.counters.api_requests);
        if let Some(d) = b.delay {
            tokio::time::sleep(d).await;
        }
        if b.fail_5xx {
            inc(&self.counters.api_errors_5xx);
        }
        b.fail_5xx
    }

    fn error_status(&self) -> StatusCode {
        if self.roll(2) == 0 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }

    /// Sends one webhook after the configured delay, unless the mode loses it.
    fn deliver(
        self: &Arc<Self>,
        lose: bool,
        url: String,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) {
        if lose {
            inc(&self.counters.webhooks_lost);
            return;
        }
        let shared = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(shared.config.webhook_delay).await;
            shared.post_webhook(&url, &headers, body).await;
        });
    }

    async fn post_webhook(&self, url: &str, headers: &[(&'static str, String)], body: Vec<u8>) {
        let mut req = self.http.post(url).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => inc(&self.counters.webhooks_sent),
            Ok(resp) => {
                tracing::debug!(
                    status = resp.status().as_u16(),
                    "simulator webhook rejected"
                );
                inc(&self.counters.webhooks_failed);
            }
            Err(e) => {
                tracing::debug!(error = %e, "simulator webhook failed");
                inc(&self.counters.webhooks_failed);
            }
        }
    }

    fn sendgrid_url(&self) -> Option<String> {
        self.webhook_urls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    fn twilio_url(&self) -> Option<String> {
        self.webhook_urls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    fn stripe_url(&self) -> Option<String> {
        self.webhook_urls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .2
            .clone()
    }
}

/// The three simulators and their control surface. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Simulators {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Simulators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulators")
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl Simulators {
    pub fn new(config: SimConfig) -> Result<Simulators, SimError> {
        let key = match &config.sendgrid_key {
            Some(bytes) => SendgridKey::from_bytes(bytes).map_err(SimError::Key)?,
            None => SendgridKey::generate(),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(SimError::Client)?;
        let urls = (
            config.sendgrid_webhook_url.clone(),
            config.twilio_status_callback_url.clone(),
            config.stripe_webhook_url.clone(),
        );
        Ok(Simulators {
            shared: Arc::new(Shared {
                rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed)),
                config,
                webhook_urls: RwLock::new(urls),
                key,
                mode: Mutex::new(Mode::Normal),
                counters: Counters::default(),
                http,
                idempotency: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Switches the failure mode (takes effect for the next API call).
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Repoints the three webhooks at `{base}/webhooks/{sendgrid,twilio,stripe}`.
    pub fn set_webhook_base(&self, base: &str) {
        let c = SimConfig::default().with_webhook_base(base);
        *self
            .shared
            .webhook_urls
            .write()
            .unwrap_or_else(|e| e.into_inner()) = (
            c.sendgrid_webhook_url,
            c.twilio_status_callback_url,
            c.stripe_webhook_url,
        );
    }

    /// The SendGrid verification key: base64 DER SubjectPublicKeyInfo.
    pub fn sendgrid_public_key(&self) -> String {
        self.shared.key.public_key_base64()
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    pub fn stats(&self) -> SimStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            api_requests: g(&c.api_requests),
            api_errors_5xx: g(&c.api_errors_5xx),
            emails_accepted: g(&c.emails_accepted),
            emails_delivered: g(&c.emails_delivered),
            emails_bounced: g(&c.emails_bounced),
            emails_blocked: g(&c.emails_blocked),
            emails_dropped: g(&c.emails_dropped),
            sms_accepted: g(&c.sms_accepted),
            sms_delivered: g(&c.sms_delivered),
            sms_undelivered: g(&c.sms_undelivered),
            payments_succeeded: g(&c.payments_succeeded),
            payments_declined: g(&c.payments_declined),
            webhooks_sent: g(&c.webhooks_sent),
            webhooks_failed: g(&c.webhooks_failed),
            webhooks_lost: g(&c.webhooks_lost),
        }
    }

    /// The axum router (all three APIs at the root, control under `/_sim`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v3/mail/send", post(sendgrid::mail_send))
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(twilio::create_message),
            )
            .route("/v1/payment_intents", post(stripe::create_payment_intent))
            .route("/_sim/mode", get(get_mode).put(put_mode).post(put_mode))
            .route("/_sim/stats", get(get_stats))
            .route("/_sim/sendgrid-public-key", get(get_public_key))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SimError> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(SimError::Serve)
    }
}

async fn get_mode(State(sim): State<Simulators>) -> Json<Mode> {
    Json(sim.mode())
}

async fn put_mode(State(sim): State<Simulators>, Json(mode): Json<Mode>) -> Json<Mode> {
    sim.set_mode(mode.clone());
    Json(mode)
}

async fn get_stats(State(sim): State<Simulators>) -> Json<SimStats> {
    Json(sim.stats())
}

async fn get_public_key(State(sim): State<Simulators>) -> String {
    sim.sendgrid_public_key()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
