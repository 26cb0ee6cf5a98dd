//! Shared test harness: a seeded tiny CRM database, the simulators and the app on ephemeral
//! ports, and a webhook capture server.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use vigil_democrm::{App, AppConfig, Scale, SimConfig, Simulators, WebhookVerification, seed};
use vigil_testkit::PgServer;

pub async fn seeded_db() -> String {
    let db = PgServer::shared().create_database().expect("test database");
    seed(&db.url, Scale::tiny()).await.expect("seed");
    db.url
}

/// Stops a server when dropped.
pub struct Stop(Option<oneshot::Sender<()>>);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

fn stopper() -> (Stop, impl std::future::Future<Output = ()> + Send + 'static) {
    let (tx, rx) = oneshot::channel::<()>();
    (Stop(Some(tx)), async move {
        let _ = rx.await;
    })
}

pub async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    (l, url)
}

pub fn start_sims(listener: TcpListener, config: SimConfig) -> (Simulators, Stop) {
    let sims = Simulators::new(config).expect("simulators");
    let (stop, shutdown) = stopper();
    let s = sims.clone();
    tokio::spawn(async move { s.serve(listener, shutdown).await.expect("sims serve") });
    (sims, stop)
}

/// A running CRM wired to running simulators, with webhook verification on.
pub struct Stack {
    pub app_url: String,
    pub sims_url: String,
    pub sims: Simulators,
    pub db_url: String,
    _stops: Vec<Stop>,
}

pub async fn stack() -> Stack {
    let db_url = seeded_db().await;
    let (app_l, app_url) = listener().await;
    let (sims_l, sims_url) = listener().await;
    let sim_config = SimConfig {
        webhook_delay: Duration::from_millis(20),
        sendgrid_key: Some([9u8; 32]),
        ..SimConfig::default()
    }
    .with_webhook_base(&app_url);
    let (sims, sims_stop) = start_sims(sims_l, sim_config.clone());
    let mut config = AppConfig::new(db_url.clone(), &sims_url);
    config.pool_size = 8;
    config.twilio_status_callback_url = Some(format!("{app_url}/webhooks/twilio"));
    config.verify = WebhookVerification {
        sendgrid_public_key: Some(sims.sendgrid_public_key()),
        twilio_auth_token: Some(sim_config.twilio_auth_token.clone()),
        stripe_webhook_secret: Some(sim_config.stripe_webhook_secret.clone()),
    };
    let (app_stop, shutdown) = stopper();
    tokio::spawn(async move {
        App::serve(app_l, config, shutdown)
            .await
            .expect("app serve")
    });
    Stack {
        app_url,
        sims_url,
        sims,
        db_url,
        _stops: vec![sims_stop, app_stop],
    }
}

/// One captured webhook request.
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct Capture {
    pub requests: Arc<Mutex<Vec<Captured>>>,
}

impl Capture {
    pub fn all(&self) -> Vec<Captured> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (up to 10 s) and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Captured> {
        for _ in 0..200 {
            if self.requests.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.all()
    }
}

async fn capture_handler(
    State(cap): State<Capture>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    cap.requests.lock().unwrap().push(Captured {
        path: uri.path().to_string(),
        headers,
        body,
    });
    "ok"
}

/// A server recording every POST; returns its base URL.
pub async fn capture_server() -> (Capture, String, Stop) {
    let (l, url) = listener().await;
    let cap = Capture::default();
    let router = axum::Router::new()
        .fallback(axum::routing::post(capture_handler))
        .with_state(cap.clone());
    let (stop, shutdown) = stopper();
    tokio::spawn(async move {
        axum::serve(l, router)
            .with_graceful_shutdown(shutdown)
            .await
            .expect("capture serve")
    });
    (cap, url, stop)
}

/// Runs `sql` and returns psql's unaligned output, trimmed.
pub fn psql(db_url: &str, sql: &str) -> String {
    let db = db_url.rsplit('/').next().unwrap();
    PgServer::shared()
        .psql(db, sql)
        .expect("psql")
        .trim()
        .to_string()
}

/// Polls `sql` until it returns `expected` (up to 10 s); returns the last value.
pub async fn wait_sql(db_url: &str, sql: &str, expected: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = psql(db_url, sql);
        if last == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}
