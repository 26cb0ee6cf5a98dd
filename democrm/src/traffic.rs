//! A traffic generator for the CRM: requests at a fixed rate (a seeded mix of browse, search,
//! contact detail, deals, dashboard, campaign sends and automation triggers), at most
//! `concurrency` in flight (a tick finding none free is counted as skipped), with live counters.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::seed::Scale;

/// The kinds of request, in [`Mix`] order.
pub const KINDS: [&str; 7] = [
    "browse",
    "search",
    "detail",
    "deals",
    "dashboard",
    "campaign",
    "automation",
];

/// Relative weights of the request kinds (0 disables one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub browse: u32,
    pub search: u32,
    pub detail: u32,
    pub deals: u32,
    pub dashboard: u32,
    pub campaign: u32,
    pub automation: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            browse: 25,
            search: 5,
            detail: 35,
            deals: 10,
            dashboard: 2,
            campaign: 2,
            automation: 21,
        }
    }
}

impl Mix {
    fn weights(&self) -> [u32; 7] {
        [
            self.browse,
            self.search,
            self.detail,
            self.deals,
            self.dashboard,
            self.campaign,
            self.automation,
        ]
    }
}

/// What to drive and how hard.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// The CRM's base URL (Vigil's http proxy in the demo).
    pub base_url: String,
    pub rate_per_sec: f64,
    pub concurrency: usize,
    pub mix: Mix,
    pub seed: u64,
    /// The seeded data's scale (id ranges of contacts, campaigns, automations).
    pub scale: Scale,
    /// Recipients per campaign send.
    pub campaign_batch: u32,
    pub timeout: Duration,
}

impl TrafficConfig {
    pub fn new(base_url: impl Into<String>, scale: Scale) -> TrafficConfig {
        TrafficConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            rate_per_sec: 20.0,
            concurrency: 16,
            mix: Mix::default(),
            seed: 7,
            scale,
            campaign_batch: 5,
            timeout: Duration::from_secs(15),
        }
    }
}

/// Why the generator could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("rate must be positive and finite, concurrency at least 1, and some weight non-zero")]
    Config,
}

#[derive(Default)]
struct KindCounters {
    sent: AtomicU64,
    ok: AtomicU64,
    http_errors: AtomicU64,
    transport_errors: AtomicU64,
}

#[derive(Default)]
struct Inner {
    kinds: [KindCounters; 7],
    skipped: AtomicU64,
}

/// Live counters of a running generator (cheap to clone).
#[derive(Clone)]
pub struct TrafficCounters {
    inner: Arc<Inner>,
    started: Instant,
}

impl std::fmt::Debug for TrafficCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrafficCounters")
            .field("report", &self.snapshot())
            .finish()
    }
}

/// Counts of one request kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KindReport {
    pub kind: &'static str,
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Non-2xx answers.
    pub http_errors: u64,
    /// No answer (connect error, timeout).
    pub transport_errors: u64,
}

/// Counts so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrafficReport {
    pub kinds: Vec<KindReport>,
    /// Ticks dropped because `concurrency` requests were already in flight.
    pub skipped: u64,
    pub elapsed: Duration,
}

impl TrafficReport {
    pub fn sent(&self) -> u64 {
        self.kinds.iter().map(|k| k.sent).sum()
    }
    pub fn ok(&self) -> u64 {
        self.kinds.iter().map(|k| k.ok).sum()
    }
    pub fn errors(&self) -> u64 {
        self.kinds
            .iter()
            .map(|k| k.http_errors + k.transport_errors)
            .sum()
    }
    pub fn kind(&self, kind: &str) -> Option<&KindReport> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

impl TrafficCounters {
    pub fn snapshot(&self) -> TrafficReport {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TrafficReport {
            kinds: KINDS
                .iter()
                .zip(&self.inner.kinds)
                .map(|(kind, c)| KindReport {
                    kind,
                    sent: g(&c.sent),
                    ok: g(&c.ok),
                    http_errors: g(&c.http_errors),
                    transport_errors: g(&c.transport_errors),
                })
                .collect(),
            skipped: g(&self.inner.skipped),
            elapsed: self.started.elapsed(),
        }
    }
}

/// The generator.
pub struct Traffic {
    config: TrafficConfig,
    client: reqwest::Client,
    counters: TrafficCounters,
}

const SEARCH_TERMS: [&str; 12] = [
    "smi", "garc", "john", "lee", "example", "blue", "ngu", "sarah", "harbor", "nan", "ravi",
    "summit",
];

impl Traffic {
    pub fn new(config: TrafficConfig) -> Result<Traffic, TrafficError> {
        if !(config.rate_per_sec.is_finite() && config.rate_per_sec > 0.0)
            || config.concurrency == 0
            || config.mix.weights().iter().all(|w| *w == 0)
        {
            return Err(TrafficError::Config);
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(TrafficError::Client)?;
        Ok(Traffic {
            config,
            client,
            counters: TrafficCounters {
                inner: Arc::new(Inner::default()),
                started: Instant::now(),
            },
        })
    }

    pub fn counters(&self) -> TrafficCounters {
        self.counters.clone()
    }

    /// Drives the CRM until `shutdown` completes, then waits for in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> TrafficReport {
        let cfg = &self.config;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let weights = cfg.mix.weights();
        let total: u32 = weights.iter().sum();
        let permits = Arc::new(Semaphore::new(cfg.concurrency));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.rate_per_sec));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            let mut roll = rng.random_range(0..total);
            let mut kind = 0;
            for (i, w) in weights.iter().enumerate() {
                if roll < *w {
                    kind = i;
                    break;
                }
                roll -= w;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                self.counters.inner.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let request = self.build(kind, &mut rng);
            let counters = self.counters.inner.clone();
            tokio::spawn(async move {
                let c = &counters.kinds[kind];
                c.sent.fetch_add(1, Ordering::Relaxed);
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        c.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        let _ = r.bytes().await;
                        c.http_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        c.transport_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(permit);
            });
        }
        let _ = permits.acquire_many(cfg.concurrency as u32).await;
        self.counters.snapshot()
    }

    fn build(&self, kind: usize, rng: &mut ChaCha8Rng) -> reqwest::RequestBuilder {
        let cfg = &self.config;
        let base = &cfg.base_url;
        let contact = rng.random_range(1..=cfg.scale.contacts.max(1));
        match KINDS[kind] {
            "browse" => {
                let offset = rng.random_range(0..20u32) * 50;
                self.client
                    .get(format!("{base}/contacts?limit=50&offset={offset}"))
            }
            "search" => {
                let term = SEARCH_TERMS[rng.random_range(0..SEARCH_TERMS.len())];
                self.client
                    .get(format!("{base}/contacts?q={term}&limit=25"))
            }
            "detail" => self.client.get(format!("{base}/contacts/{contact}")),
            "deals" => {
                let stage = ["qualification", "proposal", "negotiation", "won", "lost"]
                    [rng.random_range(0..5)];
                self.client
                    .get(format!("{base}/deals?stage={stage}&limit=25"))
            }
            "dashboard" => self.client.get(format!("{base}/dashboard")),
            "campaign" => {
                let id = rng.random_range(1..=cfg.scale.campaigns.max(1));
                self.client
                    .post(format!("{base}/campaigns/{id}/send"))
                    .json(&json!({"limit": cfg.campaign_batch}))
            }
            _ => {
                let id = rng.random_range(1..=cfg.scale.automations.max(1));
                self.client
                    .post(format!("{base}/automations/{id}/trigger"))
                    .json(&json!({"contact_id": contact}))
            }
        }
    }
}
