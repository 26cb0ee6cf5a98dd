//! The admin HTTP server every Vigil process runs: `/metrics` (Prometheus), `/healthz`,
//! `/readyz` (ready only when every enabled component is), and the base of `/api/`, where
//! components mount their routers.
//!
//! Loopback by default. When a token is configured, every route but the two health probes needs
//! `Authorization: Bearer <token>` (401 otherwise); the config refuses a non-loopback address
//! without a token. The probes stay open so orchestrators can call them; they reveal nothing.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// A named readiness check of one component.
pub type ReadyCheck = (&'static str, Arc<dyn Fn() -> bool + Send + Sync>);

struct AdminState {
    registry: Registry,
    ready: Vec<ReadyCheck>,
    components: Vec<&'static str>,
}

/// What the admin server serves.
pub struct Admin {
    pub registry: Registry,
    pub ready: Vec<ReadyCheck>,
    /// Component routers, already nested at their paths (e.g. `/api/pools`).
    pub api: Router,
    pub token: Option<String>,
    pub components: Vec<&'static str>,
}

impl Admin {
    /// Build the router.
    pub fn into_router(self) -> Router {
        let state = Arc::new(AdminState {
            registry: self.registry,
            ready: self.ready,
            components: self.components,
        });
        let guarded = Router::new()
            .route("/metrics", get(metrics))
            .route("/api", get(api_index))
            .route("/api/", get(api_index))
            .with_state(state.clone())
            .merge(self.api);
        let guarded = guard(guarded, self.token);
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(state)
            .merge(guarded)
    }
}

/// Require `Authorization: Bearer <token>` on every route of `router` when a token is set.
pub fn guard(router: Router, token: Option<String>) -> Router {
    match token {
        Some(token) if !token.is_empty() => {
            let token = Arc::new(token);
            router.layer(middleware::from_fn(move |req, next| {
                require_token(token.clone(), req, next)
            }))
        }
        _ => router,
    }
}

/// Serve `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn require_token(token: Arc<String>, req: Request, next: Next) -> Response {
    if bearer_matches(req.headers(), &token) {
        next.run(req).await
    } else {
        let mut resp = (StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"vigil\""),
        );
        resp
    }
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let mut body = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        tracing::error!(error = %e, "encoding metrics failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    // The body is OpenMetrics text; Prometheus asks for it, older scrapers get the 0.0.4 type
    // (whose parsers read `# EOF` and `# UNIT` as comments).
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let ctype = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let not_ready: Vec<&str> = state
        .ready
        .iter()
        .filter(|(_, check)| !check())
        .map(|(name, _)| *name)
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", not_ready.join(", ")),
        )
            .into_response()
    }
}

async fn api_index(State(state): State<Arc<AdminState>>) -> Response {
    axum::Json(serde_json::json!({
        "service": "vigil",
        "version": env!("CARGO_PKG_VERSION"),
        "components": state.components,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_check_is_exact() {
        let mut h = HeaderMap::new();
        assert!(!bearer_matches(&h, "abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(bearer_matches(&h, "abc"));
        assert!(!bearer_matches(&h, "abcd"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(!bearer_matches(&h, "abc"));
    }
}
