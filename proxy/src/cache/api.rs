//! `GET /api/cache` (counters, per-fingerprint detail) and `POST /api/cache/flush`
//! (`?table=T&database=D`, both optional).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{Cache, CacheStatus};

#[derive(Debug, Deserialize)]
struct FlushParams {
    table: Option<String>,
    database: Option<String>,
}

impl Cache {
    /// The admin API router.
    pub fn api_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/cache", get(status))
            .route("/api/cache/flush", post(flush))
            .with_state(self.clone())
    }
}

async fn status(State(c): State<Arc<Cache>>) -> Json<CacheStatus> {
    Json(c.status())
}

async fn flush(
    State(c): State<Arc<Cache>>,
    Query(p): Query<FlushParams>,
) -> (StatusCode, Json<serde_json::Value>) {
    match c.flush(p.database.as_deref(), p.table.as_deref()).await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({"flushed": true, "table": p.table, "database": p.database})),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"flushed": false, "error": e})),
        ),
    }
}
