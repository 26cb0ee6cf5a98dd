//! Idle upstream TCP connections of the fast path, per authority, reused newest first. A
//! connection goes back only after a response whose framing ended cleanly with nothing read
//! past it; at checkout one non-blocking read drops connections the upstream has closed (or
//! sent stray bytes on) while they sat idle.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::Authority;
use tokio::net::TcpStream;

/// Idle connections kept per authority.
const MAX_IDLE_PER_HOST: usize = 256;

/// Idle connections by authority text; foldhash (randomly seeded) over the bytes, where
/// `Authority`'s own `Hash` feeds SipHash one lowercased byte at a time.
type IdleMap = HashMap<Box<str>, Vec<(TcpStream, Instant)>, foldhash::fast::RandomState>;

/// The pool.
#[derive(Debug)]
pub struct RawPool {
    idle: Mutex<IdleMap>,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl RawPool {
    pub fn new(idle_timeout: Duration, connect_timeout: Duration) -> RawPool {
        RawPool {
            idle: Mutex::new(IdleMap::default()),
            idle_timeout,
            connect_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdleMap> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Idle connections pooled for `authority`.
    pub fn idle_count(&self, authority: &Authority) -> usize {
        self.lock().get(authority.as_str()).map_or(0, Vec::len)
    }

    /// Drops connections idle for longer than the idle timeout.
    pub fn purge(&self) {
        let timeout = self.idle_timeout;
        let mut idle = self.lock();
        for list in idle.values_mut() {
            list.retain(|(_, since)| since.elapsed() < timeout);
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// A live idle connection to `authority`, if one is pooled.
    pub fn checkout(&self, authority: &Authority) -> Option<TcpStream> {
        loop {
            let (stream, since) = {
                let mut idle = self.lock();
                idle.get_mut(authority.as_str())?.pop()?
            };
            if since.elapsed() >= self.idle_timeout {
                continue;
            }
            // Nothing may be readable on an idle connection: end-of-stream or stray bytes
            // mean the upstream is done with it.
            match stream.try_read(&mut [0u8; 1]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(stream),
                _ => continue,
            }
        }
    }

    /// Returns a connection whose last exchange ended cleanly.
    pub fn checkin(&self, authority: &Authority, stream: TcpStream) {
        let mut idle = self.lock();
        let list = match idle.get_mut(authority.as_str()) {
            Some(l) => l,
            None => idle.entry(authority.as_str().into()).or_default(),
        };
        if list.len() >= MAX_IDLE_PER_HOST {
            // The oldest goes.
            list.remove(0);
        }
        list.push((stream, Instant::now()));
    }

    /// A new connection to `authority` within the connect timeout.
    pub async fn connect(&self, authority: &Authority) -> io::Result<TcpStream> {
        connect_tcp(authority, self.connect_timeout).await
    }
}

/// A new TCP connection to `authority` (every resolved address tried in turn) within `timeout`,
/// with `TCP_NODELAY`.
pub async fn connect_tcp(authority: &Authority, timeout: Duration) -> io::Result<TcpStream> {
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let connect = async {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in tokio::net::lookup_host((host, port)).await? {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
