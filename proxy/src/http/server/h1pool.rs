//! Plain-HTTP/1.1 connections to the CRM upstreams, pooled per authority.
//!
//! The generic client ([`super::client`], hyper-util's legacy client) spawns a task per request
//! to wait until a connection can take the next request before it pools it again. This pool
//! gives a connection back when the response body has been read to its end (the point where
//! the connection is about to be ready) and waits for readiness at checkout instead: per request
//! only the connection's own task runs besides the serving one. Connections are reused newest
//! first; idle ones expire after `idle` (checked at checkout and by [`H1Pool::purge`]).
//! HTTPS upstreams and provider calls keep using the generic client.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::body::ProxyBody;

/// Idle connections kept per authority.
const MAX_IDLE_PER_HOST: usize = 256;

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made (nothing reached the upstream).
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The exchange failed after the connection was made.
    #[error("upstream exchange: {0}")]
    Http(#[from] hyper::Error),
}

struct Idle {
    tx: SendRequest<ProxyBody>,
    since: Instant,
}

/// The pool. Cheap to share (`Arc`).
pub struct H1Pool {
    idle: Mutex<HashMap<Authority, Vec<Idle>>>,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool")
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl H1Pool {
    pub fn new(idle_timeout: Duration, connect_timeout: Duration) -> H1Pool {
        H1Pool {
            idle: Mutex::new(HashMap::new()),
            idle_timeout,
            connect_timeout,
        }
    }

    /// Idle connections currently pooled for `authority`.
    pub fn idle_count(&self, authority: &Authority) -> usize {
        self.lock().get(authority).map_or(0, Vec::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Authority, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops idle connections older than the idle timeout (or closed).
    pub fn purge(&self) {
        let timeout = self.idle_timeout;
        let mut idle = self.lock();
        for list in idle.values_mut() {
            list.retain(|c| c.since.elapsed() < timeout && !c.tx.is_closed());
        }
        idle.retain(|_, list| !list.is_empty());
    }

    fn checkout(&self, authority: &Authority) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.lock();
        let list = idle.get_mut(authority)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < self.idle_timeout && !c.tx.is_closed() {
                return Some(c.tx);
            }
        }
        None
    }

    fn checkin(&self, authority: Authority, tx: SendRequest<ProxyBody>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.lock();
        let list = idle.entry(authority).or_default();
        if list.len() >= MAX_IDLE_PER_HOST {
            // The oldest goes.
            list.remove(0);
        }
        list.push(Idle {
            tx,
            since: Instant::now(),
        });
    }

    async fn connect(&self, authority: &Authority) -> Result<SendRequest<ProxyBody>, SendError> {
        let stream = super::fast::pool::connect_tcp(authority, self.connect_timeout)
            .await
            .map_err(SendError::Connect)?;
        let (tx, conn) = http1::Builder::new()
            .handshake::<_, ProxyBody>(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }

    /// Sends `req` (origin-form URI, `Host` set) to `authority` on a pooled or new connection.
    /// A pooled connection found closed before the request was written is replaced.
    pub async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        loop {
            let (mut tx, reused) = match self.checkout(authority) {
                Some(tx) => (tx, true),
                None => (self.connect(authority).await?, false),
            };
            if tx.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(SendError::Connect(io::ErrorKind::ConnectionAborted.into()));
            }
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let upgrade = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
                    let (parts, body) = resp.into_parts();
                    let mut body = PooledBody {
                        inner: body,
                        back: (!upgrade).then(|| (self.clone(), authority.clone(), tx)),
                    };
                    body.give_back_if_done();
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    // Not written: the pooled connection was closing; try another.
                    Some(r) if reused => req = r,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }
}

/// The upstream response body; gives the connection back to the pool at its end.
pub struct PooledBody {
    inner: Incoming,
    back: Option<(Arc<H1Pool>, Authority, SendRequest<ProxyBody>)>,
}

impl PooledBody {
    fn give_back_if_done(&mut self) {
        if self.inner.is_end_stream()
            && let Some((pool, authority, tx)) = self.back.take()
        {
            pool.checkin(authority, tx);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => {
                if let Some((pool, authority, tx)) = self.back.take() {
                    pool.checkin(authority, tx);
                }
            }
            Poll::Ready(Some(Ok(_))) => self.give_back_if_done(),
            // A failed body leaves the connection unusable.
            Poll::Ready(Some(Err(_))) => self.back = None,
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
