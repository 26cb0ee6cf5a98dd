//! Running the incident service inside `vigil run`: its store, background work (ticks, outbox,
//! rules hot reload, retention), its HTTP server (API, signal intake, console) on
//! `[incident] listen`, and the Redis Streams consumer when `[signals] transport = "redis"`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use futures::FutureExt;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_incident::{IncidentConfig, IncidentService};
use vigil_signal::Signal;
use vigil_signal::transport::{HandlerError, SignalHandler};

use crate::config::SignalsConfig;

/// Stores signals through the incident service: `Ok` only once they are durable.
struct Ingest(IncidentService);

impl SignalHandler for Ingest {
    fn handle<'a>(&'a self, batch: &'a [Signal]) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            self.0
                .ingest(batch)
                .await
                .map(|_| ())
                .map_err(|e| Box::new(e) as HandlerError)
        }
        .boxed()
    }
}

/// A running incident service.
#[derive(Clone)]
pub struct IncidentHandle {
    pub service: IncidentService,
    addr: SocketAddr,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl IncidentHandle {
    /// The in-process sink for the local transport.
    pub fn sink(&self) -> Arc<dyn SignalHandler> {
        Arc::new(Ingest(self.service.clone()))
    }

    /// The bound address of the API, intake and console.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }

    pub fn ready(&self) -> bool {
        true
    }

    /// Wait for the background tasks (after the shutdown token was cancelled).
    pub async fn stop(self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        self.service.store().close().await;
    }
}

/// Open the store, start background work, the HTTP server and (for Redis) the consumer.
pub async fn start(
    cfg: &IncidentConfig,
    base: &Path,
    signals: &SignalsConfig,
    admin_token: Option<String>,
    registry: &mut Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<IncidentHandle> {
    let mut cfg = cfg.clone();
    cfg.rules = crate::config::resolve(base, &cfg.rules);
    let listen: SocketAddr = cfg
        .listen
        .parse()
        .with_context(|| format!("incident.listen: `{}` is not an address", cfg.listen))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("incident.listen: cannot bind {listen}"))?;
    let addr = listener.local_addr()?;
    let service = IncidentService::new(cfg, registry)
        .await
        .context("[incident]: cannot start")?;
    let mut tasks = vec![service.spawn(shutdown.clone().cancelled_owned())];
    // Off loopback, the API needs the admin token like the admin server does.
    let token = if listen.ip().is_loopback() {
        None
    } else {
        admin_token
    };
    let router = crate::admin::guard(service.api_router(), token);
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = crate::admin::serve(listener, router, stop.cancelled_owned()).await {
            tracing::error!(error = %e, "incident server failed");
        }
    }));
    if let Some(consumer) =
        crate::signals::consumer(signals, Arc::new(Ingest(service.clone())), registry)
    {
        tasks.push(tokio::spawn(
            consumer.run(shutdown.clone().cancelled_owned()),
        ));
    }
    Ok(IncidentHandle {
        service,
        addr,
        tasks: Arc::new(std::sync::Mutex::new(tasks)),
    })
}
