//! The demo CRM: an axum app over PostgreSQL (a deadpool of tokio-postgres connections,
//! prepared statements, every statement tagged `/*application='democrm',route='...'*/`).
//!
//! - `read`: contacts list/search (`ILIKE`, heavy), contact detail, deals, dashboard (heavy).
//! - `actions`: campaign sends and automation triggers, calling the providers.
//! - `outbound`: the SendGrid / Twilio / Stripe API clients.
//! - `webhooks`: SendGrid / Twilio / Stripe webhook receivers (optionally verifying signatures).
//!
//! Routes: `GET /healthz`, `GET /contacts?q=&limit=&offset=`, `GET /contacts/{id}`,
//! `GET /deals?stage=&limit=`, `GET /dashboard`, `POST /campaigns/{id}/send` (`{"limit": n}`),
//! `POST /automations/{id}/trigger` (`{"contact_id": n}`), `POST /webhooks/sendgrid`,
//! `POST /webhooks/twilio`, `POST /webhooks/stripe`.

mod actions;
mod outbound;
mod read;
mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::json;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::sqlc;

/// Which webhook signatures the CRM checks (`None`: accept unsigned).
#[derive(Clone, Default)]
pub struct WebhookVerification {
    /// SendGrid verification key, base64 DER (from [`crate::Simulators::sendgrid_public_key`]).
    pub sendgrid_public_key: Option<String>,
    /// Twilio auth token; checked against [`AppConfig::twilio_status_callback_url`].
    pub twilio_auth_token: Option<String>,
    /// Stripe endpoint secret (`whsec_...`).
    pub stripe_webhook_secret: Option<String>,
}

impl std::fmt::Debug for WebhookVerification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerification")
            .field("sendgrid", &self.sendgrid_public_key.is_some())
            .field("twilio", &self.twilio_auth_token.is_some())
            .field("stripe", &self.stripe_webhook_secret.is_some())
            .finish()
    }
}

/// How the CRM reaches its database and providers.
#[derive(Clone)]
pub struct AppConfig {
    /// PostgreSQL URL (Vigil's pg proxy in the demo).
    pub database_url: String,
    /// Pool size (connections).
    pub pool_size: usize,
    /// SendGrid API base (`http://127.0.0.1:8080/_provider/sendgrid` through Vigil).
    pub sendgrid_base_url: String,
    /// Twilio API base.
    pub twilio_base_url: String,
    /// Stripe API base.
    pub stripe_base_url: String,
    pub sendgrid_api_key: String,
    pub twilio_account_sid: String,
    pub twilio_auth_token: String,
    /// The SMS sender number.
    pub twilio_from: String,
    pub stripe_secret_key: String,
    /// The public URL of `/webhooks/twilio` sent as `StatusCallback` (through Vigil's reverse
    /// proxy); `None` leaves it to the provider's default.
    pub twilio_status_callback_url: Option<String>,
    pub verify: WebhookVerification,
    /// Timeout of one provider API call.
    pub provider_timeout: Duration,
    /// Recipients per campaign send when the request does not say.
    pub campaign_batch: u32,
    /// Concurrent provider calls within one campaign send.
    pub campaign_concurrency: usize,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("pool_size", &self.pool_size)
            .field("sendgrid_base_url", &self.sendgrid_base_url)
            .field("twilio_base_url", &self.twilio_base_url)
            .field("stripe_base_url", &self.stripe_base_url)
            .field(
                "twilio_status_callback_url",
                &self.twilio_status_callback_url,
            )
            .field("verify", &self.verify)
            .finish_non_exhaustive()
    }
}

impl AppConfig {
    /// A config whose three provider base URLs are `providers_base` (the simulators serve all
    /// three APIs on one address) and whose credentials match [`crate::SimConfig::default`].
    pub fn new(database_url: impl Into<String>, providers_base: &str) -> AppConfig {
        let base = providers_base.trim_end_matches('/').to_string();
        let sim = crate::SimConfig::default();
        AppConfig {
            database_url: database_url.into(),
            pool_size: 16,
            sendgrid_base_url: base.clone(),
            twilio_base_url: base.clone(),
            stripe_base_url: base,
            sendgrid_api_key: "SG.demo-key".into(),
            twilio_account_sid: sim.twilio_account_sid,
            twilio_auth_token: sim.twilio_auth_token,
            twilio_from: "+15550100000".into(),
            stripe_secret_key: "sk_test_demo".into(),
            twilio_status_callback_url: None,
            verify: WebhookVerification::default(),
            provider_timeout: Duration::from_secs(10),
            campaign_batch: 20,
            campaign_concurrency: 4,
        }
    }

    /// Routes provider calls through Vigil's gateway: `{vigil}/_provider/{sendgrid,twilio,stripe}`.
    pub fn with_gateway(mut self, vigil_base: &str) -> AppConfig {
        let base = vigil_base.trim_end_matches('/');
        self.sendgrid_base_url = format!("{base}/_provider/sendgrid");
        self.twilio_base_url = format!("{base}/_provider/twilio");
        self.stripe_base_url = format!("{base}/_provider/stripe");
        self
    }
}

/// Why the CRM could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid database URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("building the connection pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// Why one request failed (mapped to an HTTP answer).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("unauthorized webhook: {0}")]
    Unauthorized(#[from] crate::signing::SignatureError),
}

impl IntoResponse for RouteError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            RouteError::Db(e) => {
                // Only the SQLSTATE: server messages can quote parameter values.
                let code = e.code().map(|c| c.code().to_string());
                tracing::warn!(
                    sqlstate = code.as_deref().unwrap_or("none"),
                    "democrm database error"
                );
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "database error", "sqlstate": code}),
                )
            }
            RouteError::Pool(e) => {
                tracing::warn!(error = %e, "democrm pool error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "database unavailable"}),
                )
            }
            RouteError::NotFound => (StatusCode::NOT_FOUND, json!({"error": "not found"})),
            RouteError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({"error": m})),
            RouteError::Unauthorized(e) => (
                StatusCode::UNAUTHORIZED,
                json!({"error": format!("signature: {e}")}),
            ),
        };
        (status, Json(body)).into_response()
    }
}

pub(crate) struct Ctx {
    pub(crate) config: AppConfig,
    pub(crate) pool: Pool,
    pub(crate) http: reqwest::Client,
}

pub(crate) type Shared = State<Arc<Ctx>>;

impl Ctx {
    /// Runs one tagged, prepared (cached) statement and returns its rows.
    pub(crate) async fn query(
        &self,
        route: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, RouteError> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&sqlc::tag(sql, route)).await?;
        Ok(client.query(&stmt, params).await?)
    }

    /// Runs one tagged, prepared statement and returns the affected row count.
    pub(crate) async fn execute(
        &self,
        route: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, RouteError> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&sqlc::tag(sql, route)).await?;
        Ok(client.execute(&stmt, params).await?)
    }
}

/// The CRM application.
#[derive(Debug, Clone, Copy)]
pub struct App;

impl App {
    /// The router with its pool (connections open lazily).
    pub fn router(config: AppConfig) -> Result<Router, AppError> {
        let pg: tokio_postgres::Config = config.database_url.parse().map_err(AppError::Url)?;
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()?;
        let http = reqwest::Client::builder()
            .timeout(config.provider_timeout)
            .build()
            .map_err(AppError::Client)?;
        let ctx = Arc::new(Ctx { config, pool, http });
        Ok(Router::new()
            .route("/healthz", get(healthz))
            .route("/contacts", get(read::contacts))
            .route("/contacts/{id}", get(read::contact))
            .route("/deals", get(read::deals))
            .route("/dashboard", get(read::dashboard))
            .route("/campaigns/{id}/send", post(actions::campaign_send))
            .route(
                "/automations/{id}/trigger",
                post(actions::automation_trigger),
            )
            .route("/webhooks/sendgrid", post(webhooks::sendgrid))
            .route("/webhooks/twilio", post(webhooks::twilio))
            .route("/webhooks/stripe", post(webhooks::stripe))
            .with_state(ctx))
    }

    /// Serves the CRM on `listener` until `shutdown` completes.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        config: AppConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let router = Self::router(config)?;
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(AppError::Serve)
    }
}

async fn healthz(State(ctx): Shared) -> Result<Json<serde_json::Value>, RouteError> {
    ctx.query("/healthz", "SELECT 1", &[]).await?;
    Ok(Json(json!({"status": "ok"})))
}
