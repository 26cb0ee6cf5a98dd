//! Prometheus metrics of the pg proxy (all prefixed `vigil_pg_`; labels are bounded: SQLSTATE
//! class is two characters, pin reason and pool mode are fixed enums, the per-pool gauges carry
//! the `database` and `user` of a pool, bounded by the configured databases and users).
//!
//! The per-pool gauges (`vigil_pg_pool_*`) are read at scrape time from the same snapshot as
//! `/api/pools` ([`PoolCollector`]): nothing on the statement path updates them.

use std::sync::{Arc, OnceLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Pool wait histogram buckets, in seconds.
pub const WAIT_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// The proxy whose pools the collector reads; set once the proxy exists.
pub(crate) type PoolSource = Arc<OnceLock<Weak<super::Inner>>>;

#[derive(Clone)]
pub struct Metrics {
    pub client_connections: Counter,
    pub clients: Gauge,
    pub server_connections: Counter,
    pub server_connect_errors: Counter,
    pub transactions: Counter,
    pub statements: Counter,
    pub pool_wait: Histogram,
    pub pool_timeouts: Counter,
    pub errors: Family<Labels, Counter>,
    pub pins: Family<Labels, Counter>,
    pub cancels: Counter,
    pub auth_failures: Counter,
    pub(crate) pool_source: PoolSource,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            client_connections: Counter::default(),
            clients: Gauge::default(),
            server_connections: Counter::default(),
            server_connect_errors: Counter::default(),
            transactions: Counter::default(),
            statements: Counter::default(),
            pool_wait: Histogram::new(WAIT_BUCKETS),
            pool_timeouts: Counter::default(),
            errors: Family::default(),
            pins: Family::default(),
            cancels: Counter::default(),
            auth_failures: Counter::default(),
            pool_source: PoolSource::default(),
        };
        let r = registry;
        r.register(
            "vigil_pg_client_connections",
            "Client connections accepted",
            m.client_connections.clone(),
        );
        r.register(
            "vigil_pg_clients",
            "Client connections open",
            m.clients.clone(),
        );
        r.register(
            "vigil_pg_server_connections",
            "Server connections opened upstream",
            m.server_connections.clone(),
        );
        r.register(
            "vigil_pg_server_connect_errors",
            "Failed upstream connection attempts",
            m.server_connect_errors.clone(),
        );
        r.register(
            "vigil_pg_transactions",
            "Transactions (server checkouts in transaction mode) completed",
            m.transactions.clone(),
        );
        r.register(
            "vigil_pg_statements",
            "Statements completed (CommandComplete)",
            m.statements.clone(),
        );
        r.register(
            "vigil_pg_pool_wait_seconds",
            "Time clients waited for a server connection",
            m.pool_wait.clone(),
        );
        r.register(
            "vigil_pg_pool_timeouts",
            "Clients failed with 53300 after waiting for a server",
            m.pool_timeouts.clone(),
        );
        r.register(
            "vigil_pg_errors",
            "Errors sent to clients, by SQLSTATE class",
            m.errors.clone(),
        );
        r.register(
            "vigil_pg_pinned_clients",
            "Transaction-mode clients pinned to a server, by reason",
            m.pins.clone(),
        );
        r.register(
            "vigil_pg_cancels",
            "Cancel requests forwarded",
            m.cancels.clone(),
        );
        r.register(
            "vigil_pg_auth_failures",
            "Client authentication failures",
            m.auth_failures.clone(),
        );
        r.register_collector(Box::new(PoolCollector {
            source: m.pool_source.clone(),
        }));
        m
    }

    /// Point the per-pool collector at the proxy (called once, when the proxy is built).
    pub(crate) fn attach_pools(&self, inner: &Arc<super::Inner>) {
        let _ = self.pool_source.set(Arc::downgrade(inner));
    }

    /// Count an error by SQLSTATE class (first two characters).
    pub fn error(&self, sqlstate: &[u8]) {
        let class = if sqlstate.len() >= 2 && sqlstate[..2].iter().all(u8::is_ascii_alphanumeric) {
            String::from_utf8_lossy(&sqlstate[..2]).into_owned()
        } else {
            "XX".into()
        };
        self.errors.get_or_create(&vec![("class", class)]).inc();
    }

    pub fn pin(&self, reason: super::pinning::PinReason) {
        self.pins
            .get_or_create(&vec![("reason", reason.as_str().to_owned())])
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    database: String,
    user: String,
}

/// Per-pool gauges, computed from [`super::api::pool_statuses`] on each scrape.
struct PoolCollector {
    source: PoolSource,
}

impl std::fmt::Debug for PoolCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolCollector").finish_non_exhaustive()
    }
}

/// The per-pool gauges: name, help, value.
type PoolGauge = (
    &'static str,
    &'static str,
    fn(&super::api::PoolStatus) -> usize,
);

const POOL_GAUGES: [PoolGauge; 7] = [
    (
        "vigil_pg_pool_size",
        "Configured server connections of the pool (pool_size)",
        |p| p.pool_size,
    ),
    (
        "vigil_pg_pool_clients",
        "Client connections logged in to the pool",
        |p| p.clients,
    ),
    (
        "vigil_pg_pool_clients_active",
        "Clients holding a server connection now",
        |p| p.clients_active,
    ),
    (
        "vigil_pg_pool_clients_waiting",
        "Clients waiting for a server connection now",
        |p| p.clients_waiting,
    ),
    (
        "vigil_pg_pool_servers_active",
        "Server connections checked out by a client now",
        |p| p.servers_active,
    ),
    (
        "vigil_pg_pool_servers_idle",
        "Server connections idle in the pool now",
        |p| p.servers_idle,
    ),
    (
        "vigil_pg_pool_pinned_clients",
        "Transaction-mode clients pinned to their server by session state now",
        |p| p.pinned_clients,
    ),
];

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(inner) = self.source.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let pools = super::api::pool_statuses(&inner);
        for (name, help, value) in POOL_GAUGES {
            let family = Family::<PoolLabels, Gauge>::default();
            for p in &pools {
                family
                    .get_or_create(&PoolLabels {
                        database: p.database.clone(),
                        user: p.user.clone(),
                    })
                    .set(i64::try_from(value(p)).unwrap_or(i64::MAX));
            }
            let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
            family.encode(metric)?;
        }
        Ok(())
    }
}
