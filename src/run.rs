//! `vigil run`: start every component the configuration enables, in one process, and stop them
//! gracefully on SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::{signals, telemetry};

/// Run until SIGTERM/SIGINT.
pub async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(&config.telemetry)?;
    let shutdown = CancellationToken::new();
    let mut registry = Registry::default();
    registry.register(
        "vigil_build",
        "Vigil build information",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );

    let producer = signals::producer(&config.signals, None, &mut registry)
        .context("[signals]: cannot set up the transport")?;

    let admin_listener = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("admin.listen: cannot bind {}", config.admin.listen))?;
    let router = Admin {
        registry,
        ready: Vec::new(),
        api: axum::Router::new(),
        token: config.admin.token.clone(),
        components: config.components(),
    }
    .into_router();
    tracing::info!(
        config = %path.display(),
        admin = %config.admin.listen,
        components = ?config.components(),
        "vigil started"
    );
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        router,
        shutdown.clone().cancelled_owned(),
    ));

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    drop(producer.emitter);
    if let Some(pump) = producer.pump {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), pump).await;
    }
    admin_task.await??;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
