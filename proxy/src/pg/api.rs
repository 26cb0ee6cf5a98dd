//! `GET /api/pools`: per-pool clients, servers, pins and wait times as JSON; the same snapshot
//! feeds the `vigil_pg_pool_*` gauges (see [`super::metrics`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::config::PoolMode;
use super::{Inner, PgProxy};

/// One pool in `/api/pools`.
#[derive(Debug, Serialize, serde::Deserialize, Clone, PartialEq)]
pub struct PoolStatus {
    pub database: String,
    pub user: String,
    pub mode: String,
    pub pool_size: usize,
    /// Client connections logged in to this pool.
    pub clients: usize,
    /// Clients holding a server.
    pub clients_active: usize,
    /// Clients waiting for a server.
    pub clients_waiting: usize,
    pub servers_active: usize,
    pub servers_idle: usize,
    /// Transaction-mode clients pinned to their server by session state.
    pub pinned_clients: usize,
    pub transactions: u64,
    pub wait_count: u64,
    pub wait_avg_ms: f64,
    pub wait_max_ms: f64,
}

/// Snapshot of every pool, sorted by (database, user): `/api/pools` and the `vigil_pg_pool_*`
/// gauges (read at scrape time).
pub(crate) fn pool_statuses(inner: &Inner) -> Vec<PoolStatus> {
    let mut out: Vec<PoolStatus> = inner
        .pools()
        .into_iter()
        .map(|p| {
            let s = &p.stats;
            let settings = p.settings();
            let n = s.wait_count.load(Ordering::Relaxed);
            let total = s.wait_us_total.load(Ordering::Relaxed);
            PoolStatus {
                database: p.database.clone(),
                user: p.user.clone(),
                mode: match settings.mode {
                    PoolMode::Transaction => "transaction".into(),
                    PoolMode::Session => "session".into(),
                },
                pool_size: settings.size,
                clients: s.clients.load(Ordering::Relaxed),
                clients_active: s.clients_active.load(Ordering::Relaxed),
                clients_waiting: s.waiting.load(Ordering::Relaxed),
                servers_active: s.servers_active.load(Ordering::Relaxed),
                servers_idle: p.idle_count(),
                pinned_clients: s.pinned.load(Ordering::Relaxed),
                transactions: s.transactions.load(Ordering::Relaxed),
                wait_count: n,
                wait_avg_ms: if n == 0 {
                    0.0
                } else {
                    total as f64 / n as f64 / 1000.0
                },
                wait_max_ms: s.wait_us_max.load(Ordering::Relaxed) as f64 / 1000.0,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
    out
}

impl PgProxy {
    /// Snapshot of every pool.
    pub fn pools_status(&self) -> Vec<PoolStatus> {
        pool_statuses(&self.inner)
    }

    /// The admin API router (`GET /api/pools`).
    pub fn api_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/pools", get(pools))
            .with_state(self.clone())
    }
}

async fn pools(State(p): State<Arc<PgProxy>>) -> Json<Vec<PoolStatus>> {
    Json(p.pools_status())
}
