//! Redis Streams transport.
//!
//! Producer ([`RedisSink`]): one `XADD <stream> MAXLEN ~ <cap> * s <json>` per signal, pipelined per
//! batch; the connection is made lazily and dropped on error, so a producer starts and keeps
//! serving while Redis is down (its pump retries, then its queue drops-and-counts).
//!
//! Consumer ([`RedisConsumer`]): a consumer group read with `XREADGROUP`. Each batch is handed to the
//! [`SignalHandler`]; only when it returns `Ok` (stored) are the entries `XACK`ed. After a crash, the
//! restarted consumer (same name) first re-reads its own pending entries (id `0`), and every
//! consumer periodically `XAUTOCLAIM`s entries another consumer left pending longer than
//! `claim_idle`. Delivery is at-least-once; the handler de-duplicates on the signal id, so nothing
//! is stored twice. Entries that are not valid signals are acknowledged and counted (never retried
//! forever).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadReply};
use redis::{AsyncCommands, Value};
use tokio::sync::Mutex;

use super::{SignalHandler, TransportError};
use crate::Signal;

/// The stream field that holds the JSON-encoded signal.
const FIELD: &str = "s";

/// Producer side of the Redis Streams transport.
#[derive(Clone)]
pub struct RedisSink {
    client: redis::Client,
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
    stream: String,
    maxlen: usize,
    timeout: Duration,
}

impl RedisSink {
    /// Does not connect: the first send does.
    pub fn new(url: &str, stream: &str, maxlen: usize) -> Result<RedisSink, TransportError> {
        Ok(RedisSink {
            client: redis::Client::open(url)?,
            conn: Arc::default(),
            stream: stream.to_owned(),
            maxlen,
            timeout: Duration::from_secs(2),
        })
    }

    pub async fn send(&self, batch: &[Signal]) -> Result<(), TransportError> {
        let mut guard = self.conn.lock().await;
        let mut conn = match guard.as_ref() {
            Some(c) => c.clone(),
            None => {
                let c = with_timeout(self.timeout, self.client.get_multiplexed_async_connection())
                    .await?;
                *guard = Some(c.clone());
                c
            }
        };
        let mut pipe = redis::pipe();
        for s in batch {
            pipe.cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.maxlen)
                .arg("*")
                .arg(FIELD)
                .arg(s.to_json())
                .ignore();
        }
        let res: Result<(), _> = with_timeout(self.timeout, pipe.query_async(&mut conn)).await;
        if res.is_err() {
            *guard = None;
        }
        res
    }
}

async fn with_timeout<T>(
    d: Duration,
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, TransportError> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => r.map_err(TransportError::from),
        Err(_) => Err(TransportError::Redis(redis::RedisError::from(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "redis command timed out"),
        ))),
    }
}

/// Settings of the consumer side.
#[derive(Debug, Clone)]
pub struct RedisConsumerConfig {
    pub url: String,
    pub stream: String,
    pub group: String,
    /// Stable per replica: a restarted consumer re-reads its own pending entries.
    pub consumer: String,
    pub batch: usize,
    /// How long one `XREADGROUP` blocks waiting for new entries.
    pub block: Duration,
    /// Entries pending on another consumer longer than this are claimed.
    pub claim_idle: Duration,
}

impl RedisConsumerConfig {
    pub fn new(url: &str, stream: &str, group: &str, consumer: &str) -> RedisConsumerConfig {
        RedisConsumerConfig {
            url: url.to_owned(),
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            batch: 256,
            block: Duration::from_millis(500),
            claim_idle: Duration::from_secs(30),
        }
    }
}

/// Counters of the consumer: `vigil_signals_received_total`, `vigil_signals_invalid_total`,
/// `vigil_signal_store_errors_total`, `vigil_signals_reclaimed_total`.
#[derive(Clone, Debug, Default)]
pub struct ConsumerMetrics {
    pub received: Counter,
    pub invalid: Counter,
    pub store_errors: Counter,
    pub reclaimed: Counter,
    /// Consumer sessions that ended on a Redis error (then reconnected with backoff).
    pub reconnects: Counter,
}

impl ConsumerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vigil_signals_received",
            "Signals read from the Redis stream and stored",
            self.received.clone(),
        );
        registry.register(
            "vigil_signals_invalid",
            "Stream entries that were not valid signals (acknowledged and skipped)",
            self.invalid.clone(),
        );
        registry.register(
            "vigil_signal_store_errors",
            "Batches the handler failed to store (left pending, delivered again)",
            self.store_errors.clone(),
        );
        registry.register(
            "vigil_signal_consumer_reconnects",
            "Consumer sessions that ended on a Redis error and reconnected",
            self.reconnects.clone(),
        );
        registry.register(
            "vigil_signals_reclaimed",
            "Entries claimed from consumers that left them pending (crashed replicas)",
            self.reclaimed.clone(),
        );
    }
}

/// Consumer side of the Redis Streams transport.
pub struct RedisConsumer {
    config: RedisConsumerConfig,
    handler: Arc<dyn SignalHandler>,
    metrics: ConsumerMetrics,
}

enum Phase {
    /// Re-read our own pending entries (after a start or a failed store).
    OwnPending,
    /// Read new entries.
    New,
}

impl RedisConsumer {
    pub fn new(
        config: RedisConsumerConfig,
        handler: Arc<dyn SignalHandler>,
        metrics: ConsumerMetrics,
    ) -> RedisConsumer {
        RedisConsumer {
            config,
            handler,
            metrics,
        }
    }

    /// Consume until `shutdown` resolves. Redis being down is not an error: the consumer retries
    /// with backoff and resumes where the group left off.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        const FIRST_BACKOFF: Duration = Duration::from_millis(100);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = tokio::time::Instant::now();
            tokio::select! {
                _ = &mut shutdown => return,
                res = self.session() => {
                    if let Err(e) = res {
                        self.metrics.reconnects.inc();
                        tracing::warn!(error = %e, stream = %self.config.stream, "signal consumer: redis error; reconnecting");
                    }
                }
            }
            // A session that lived a while was healthy: start the backoff over.
            if started.elapsed() >= Duration::from_secs(5) {
                backoff = FIRST_BACKOFF;
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One connection's worth of consuming; returns on a Redis error.
    async fn session(&self) -> Result<(), TransportError> {
        let c = &self.config;
        let client = redis::Client::open(c.url.as_str())?;
        // A dedicated connection: XREADGROUP BLOCK would stall a shared multiplexed one.
        let mut conn = client.get_multiplexed_async_connection().await?;
        // The client's default response timeout (500 ms) would cut every blocking read short.
        conn.set_response_timeout(c.block + Duration::from_secs(2));
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&c.stream)
            .arg(&c.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(e.into());
        }
        let mut phase = Phase::OwnPending;
        let mut last_claim = tokio::time::Instant::now();
        loop {
            if last_claim.elapsed() >= c.claim_idle / 2 {
                last_claim = tokio::time::Instant::now();
                self.claim_stale(&mut conn).await?;
            }
            let (id, block) = match phase {
                Phase::OwnPending => ("0", None),
                Phase::New => (">", Some(c.block)),
            };
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP").arg(&c.group).arg(&c.consumer);
            cmd.arg("COUNT").arg(c.batch);
            if let Some(b) = block {
                cmd.arg("BLOCK").arg(b.as_millis() as u64);
            }
            cmd.arg("STREAMS").arg(&c.stream).arg(id);
            let reply: Option<StreamReadReply> = cmd.query_async(&mut conn).await?;
            let entries: Vec<StreamId> = reply
                .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                .unwrap_or_default();
            if entries.is_empty() {
                phase = Phase::New;
                continue;
            }
            match self.deliver(&mut conn, entries).await? {
                true => {}
                // The store failed: back off, then retry from our own pending entries.
                false => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    phase = Phase::OwnPending;
                }
            }
        }
    }

    /// Hand entries to the handler; `XACK` them once stored. Returns whether they were stored.
    async fn deliver(
        &self,
        conn: &mut MultiplexedConnection,
        entries: Vec<StreamId>,
    ) -> Result<bool, TransportError> {
        let mut signals = Vec::with_capacity(entries.len());
        let mut ids = Vec::with_capacity(entries.len());
        let mut invalid = Vec::new();
        for e in &entries {
            let decoded = match e.map.get(FIELD) {
                Some(Value::BulkString(raw)) => Signal::from_json(raw).ok(),
                _ => None,
            };
            match decoded {
                Some(s) => {
                    signals.push(s);
                    ids.push(e.id.clone());
                }
                None => invalid.push(e.id.clone()),
            }
        }
        if !invalid.is_empty() {
            tracing::warn!(entries = invalid.len(), stream = %self.config.stream, "skipping stream entries that are not valid signals");
            self.metrics.invalid.inc_by(invalid.len() as u64);
            let _: i64 = conn
                .xack(&self.config.stream, &self.config.group, &invalid)
                .await?;
        }
        if signals.is_empty() {
            return Ok(true);
        }
        if let Err(e) = self.handler.handle(&signals).await {
            self.metrics.store_errors.inc();
            tracing::warn!(error = %e, signals = signals.len(), "signal consumer: store failed; entries stay pending");
            return Ok(false);
        }
        self.metrics.received.inc_by(signals.len() as u64);
        let _: i64 = conn
            .xack(&self.config.stream, &self.config.group, &ids)
            .await?;
        Ok(true)
    }

    /// Take over entries other consumers left pending too long, and deliver them.
    async fn claim_stale(&self, conn: &mut MultiplexedConnection) -> Result<(), TransportError> {
        let c = &self.config;
        let mut start = "0-0".to_string();
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&c.stream)
                .arg(&c.group)
                .arg(&c.consumer)
                .arg(c.claim_idle.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(c.batch)
                .query_async(conn)
                .await?;
            let (next, entries) = parse_autoclaim(reply);
            if !entries.is_empty() {
                self.metrics.reclaimed.inc_by(entries.len() as u64);
                self.deliver(conn, entries).await?;
            }
            match next {
                Some(n) if n != "0-0" => start = n,
                _ => return Ok(()),
            }
        }
    }
}

/// `XAUTOCLAIM` answers `[next-start, [[id, [field, value, ...]], ...], [deleted...]]`.
fn parse_autoclaim(v: Value) -> (Option<String>, Vec<StreamId>) {
    let Value::Array(parts) = v else {
        return (None, Vec::new());
    };
    let mut it = parts.into_iter();
    let next = match it.next() {
        Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
        Some(Value::SimpleString(s)) => Some(s),
        _ => None,
    };
    let mut out = Vec::new();
    if let Some(Value::Array(entries)) = it.next() {
        for e in entries {
            let Value::Array(pair) = e else { continue };
            let mut p = pair.into_iter();
            let (Some(Value::BulkString(id)), Some(Value::Array(fields))) = (p.next(), p.next())
            else {
                continue;
            };
            let mut map = std::collections::HashMap::new();
            let mut f = fields.into_iter();
            while let (Some(Value::BulkString(k)), Some(val)) = (f.next(), f.next()) {
                map.insert(String::from_utf8_lossy(&k).into_owned(), val);
            }
            out.push(StreamId {
                id: String::from_utf8_lossy(&id).into_owned(),
                map,
                ..Default::default()
            });
        }
    }
    (next, out)
}
