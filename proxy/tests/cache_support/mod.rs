//! Helpers for the cache tests: a Vigil pg proxy with a cache in front of the testkit cluster,
//! a raw-protocol client that returns the exact bytes of a response.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use vigil_proxy::cache::{Backend, Cache, CacheSettings};
use vigil_proxy::pg::upstream::ServerConn;
use vigil_proxy::pg::{PgConfig, PgProxy};

use crate::harness;

/// A proxy with a cache; stops when dropped.
pub struct CacheProxy {
    pub proxy: Arc<PgProxy>,
    pub cache: Arc<Cache>,
    pub addr: SocketAddr,
    pub registry: Registry,
    pub rules: tempfile::NamedTempFile,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for CacheProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn settings(backend: Backend) -> CacheSettings {
    CacheSettings {
        backend,
        redis_timeout: std::time::Duration::from_millis(50),
        ..CacheSettings::default()
    }
}

impl CacheProxy {
    pub async fn start(cfg: PgConfig, rules_yaml: &str, mut settings: CacheSettings) -> CacheProxy {
        let rules = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::fs::write(rules.path(), rules_yaml).unwrap();
        settings.rules_path = Some(rules.path().to_owned());
        let mut registry = Registry::default();
        let cache = Cache::new(settings, &mut registry).unwrap();
        let proxy = PgProxy::with_cache(cfg, &mut registry, None, Some(cache.clone())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let p = proxy.clone();
        tokio::spawn(async move {
            let _ = p
                .run(listener, async move {
                    let _ = rx.await;
                })
                .await;
        });
        CacheProxy {
            proxy,
            cache,
            addr,
            registry,
            rules,
            stop: Some(tx),
        }
    }

    pub fn conn_str(&self) -> String {
        conn_str(self.addr, harness::USER, harness::USER_PW)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        harness::connect(&self.conn_str()).await
    }

    pub async fn raw(&self) -> ServerConn {
        harness::raw(
            ("127.0.0.1".into(), self.addr.port()),
            harness::USER,
            harness::USER_PW,
            "crm",
        )
        .await
    }

    /// Wait until the catalog of `crm` is loaded (the first statement triggers it).
    pub async fn warm(&self) {
        let c = self.client().await;
        c.simple_query("SELECT 1").await.unwrap();
        // Patient: under valgrind or on a loaded machine the first load takes seconds.
        for _ in 0..3000 {
            if self.cache.catalog_loaded("crm") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("catalog never loaded");
    }
}

pub fn conn_str(addr: SocketAddr, user: &str, pw: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} password={pw} dbname=crm",
        addr.port()
    )
}

/// Send frames; return the exact bytes received up to and including the `syncs`-th
/// ReadyForQuery, with ParameterStatus/Notice messages left out.
pub async fn exchange(conn: &mut ServerConn, frames: &[Bytes], syncs: usize) -> Bytes {
    for f in frames {
        conn.wr.write_all(f).await.unwrap();
    }
    let mut out = BytesMut::new();
    let mut seen = 0;
    while seen < syncs {
        let m = harness::read(conn).await;
        if matches!(m.tag, b'S' | b'N') {
            continue;
        }
        out.extend_from_slice(&m.frame);
        if m.tag == b'Z' {
            seen += 1;
        }
    }
    out.freeze()
}
