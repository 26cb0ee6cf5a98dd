//! The HTTP/1.1 fast path for plain-TCP connections to the CRM upstreams, in the style of nginx:
//! the connection's own task reads a request head, checks it with the smuggling gate's strict
//! rules, writes the rewritten head (and body) to a pooled upstream TCP connection, reads the
//! response head, and relays the body by its framing, with fixed buffers. No second task, no
//! header map, no per-request body boxing.
//!
//! Anything else goes to the general path (hyper, behind the [`super::gate`]) for the rest of
//! the connection, with the bytes already read: the HTTP/2 preface, HTTP/1.0, `Upgrade`,
//! `Expect`, chunked request bodies, absolute-form targets, webhook taps, provider routes,
//! HTTPS upstreams, and every request the gate would refuse (it then refuses it, the same way).
//! The handover happens before anything of that request was sent anywhere.
//!
//! - [`wire`]: head rewriting and response framing.
//! - [`pool`]: idle upstream connections.

pub mod pool;
pub mod wire;

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use self::wire::{BodyKind, Chunked, ConnectionTokens, RequestHead, ResponseHead};
use super::forward::{Failure, end_client_span, is_idempotent_name};
use super::gate::{self, BodyFraming, GateLimits, STACK_HEADERS};
use super::metrics::method_label_name;
use super::trace::RequestTrace;
use super::upstream::Instance;
use super::{HttpProxy, Live};

/// Socket reads take up to this much at a time.
const READ_BUF: usize = 16 * 1024;

/// How the fast path left a connection.
pub enum Outcome {
    /// Closed (by either side, a timeout, or shutdown).
    Closed,
    /// The rest of the connection needs the general path; these bytes were read from the
    /// socket and not served yet.
    Handover(BytesMut),
}

enum Next {
    KeepAlive,
    Close,
    Handover,
}

/// One client connection's buffers.
struct Conn<'a> {
    stream: &'a mut TcpStream,
    /// Idle upstream connections of this connection's thread.
    pool: &'a pool::RawPool,
    peer: SocketAddr,
    /// `peer`'s address as text (for `X-Forwarded-For`), formatted once.
    peer_text: String,
    /// Bytes from the client not yet handled.
    buf: BytesMut,
    /// Bytes from the upstream not yet relayed.
    ubuf: BytesMut,
    /// The request head (and known body) for the upstream; kept for a retry.
    out: Vec<u8>,
    /// The response head (and first body bytes) for the client.
    rout: Vec<u8>,
}

/// What a request head says, once it is known to suit the fast path.
struct Request {
    method: &'static str,
    route: Arc<str>,
    /// Body bytes still to read from the client after the ones copied into `out`.
    body_left: u64,
    head_request: bool,
    idempotent: bool,
    close: bool,
    trace: RequestTrace,
}

impl HttpProxy {
    /// Serves a plain-TCP connection until it closes or needs the general path; `thread` is
    /// the serving thread (its upstream connections stay on it).
    pub(super) async fn serve_fast(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        limits: GateLimits,
        stop: &mut watch::Receiver<bool>,
        thread: usize,
    ) -> Outcome {
        let mut c = Conn {
            stream,
            pool: &self.raw[thread.min(self.raw.len() - 1)],
            peer,
            peer_text: peer.ip().to_string(),
            buf: BytesMut::with_capacity(READ_BUF),
            ubuf: BytesMut::new(),
            out: Vec::with_capacity(1024),
            rout: Vec::with_capacity(1024),
        };
        let mut first = true;
        loop {
            let mut started: Option<tokio::time::Instant> = None;
            let end = loop {
                // Empty lines before a request line are allowed (RFC 9112 2.2).
                while c.buf.starts_with(b"\r\n") {
                    c.buf.advance(2);
                }
                let n = c.buf.len().min(4);
                if first && n > 0 && b"PRI "[..n] == c.buf[..n] {
                    if n == 4 {
                        return Outcome::Handover(c.buf);
                    }
                } else if let Some(end) = gate::find_head_end(&c.buf) {
                    break end;
                } else if c.buf.len() > limits.max_header_bytes {
                    return Outcome::Handover(c.buf);
                }
                let idle = c.buf.is_empty();
                if idle && *stop.borrow() {
                    return Outcome::Closed;
                }
                let deadline = if idle {
                    tokio::time::Instant::now() + limits.idle
                } else {
                    *started.get_or_insert_with(tokio::time::Instant::now) + limits.header_read
                };
                c.buf.reserve(READ_BUF);
                tokio::select! {
                    biased;
                    r = c.stream.read_buf(&mut c.buf) => match r {
                        Ok(0) | Err(_) => return Outcome::Closed,
                        Ok(_) => {}
                    },
                    _ = tokio::time::sleep_until(deadline) => return Outcome::Closed,
                    _ = stop.changed(), if idle => return Outcome::Closed,
                }
            };
            first = false;
            match self.fast_request(&mut c, end, &limits, stop).await {
                Next::KeepAlive => {}
                Next::Close => return Outcome::Closed,
                Next::Handover => return Outcome::Handover(c.buf),
            }
        }
    }

    /// Reads the head at `c.buf[..end]`: `None` when it needs the general path, else the
    /// request with its upstream head (and the body bytes already read) in `c.out`.
    fn fast_head(
        &self,
        c: &mut Conn<'_>,
        end: usize,
        live: &Live,
        limits: &GateLimits,
        stop: bool,
    ) -> Option<Request> {
        if end > limits.max_header_bytes {
            return None;
        }
        let head = &c.buf[..end];
        gate::check_line_endings(head).ok()?;
        // Header slots left uninitialised: zeroing 64 of them cost more than the parse.
        let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
        let slots = &mut storage[..limits.max_headers.min(STACK_HEADERS)];
        let mut req = httparse::Request::new(&mut []);
        let parsed = req.parse_with_uninit_headers(head, slots);
        if !matches!(parsed, Ok(httparse::Status::Complete(_))) || req.version != Some(1) {
            return None;
        }
        let framing = gate::check_request(&req, limits).ok()?;
        let body_len = match framing.body {
            BodyFraming::None => 0,
            BodyFraming::Length(n) => n,
            BodyFraming::Chunked => return None,
        };
        let target = req.path?;
        if !target.starts_with('/') || !live.all_plain_http {
            return None;
        }
        let path = target.split('?').next().unwrap_or(target);
        if path.starts_with(self.reject_prefix.as_str())
            || live.taps.contains_key(path)
            || live.provider_for(path).is_some()
        {
            return None;
        }
        let mut traceparent = None;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("upgrade") || h.name.eq_ignore_ascii_case("expect") {
                return None;
            }
            if h.name.eq_ignore_ascii_case("traceparent") {
                traceparent = std::str::from_utf8(h.value).ok();
            }
        }
        let connection = ConnectionTokens::read(req.headers)?;
        let method_name = req.method?;
        let method = method_label_name(method_name);
        let trusted = Self::trusted(live, c.peer.ip());
        let route = self.routes.template(path);
        let trace = self.start_trace(trusted.then_some(traceparent).flatten());
        c.out.clear();
        wire::write_request_head(
            &mut c.out,
            &RequestHead {
                method: method_name,
                target,
                headers: req.headers,
                connection: &connection,
                peer: &c.peer_text,
                trusted,
                traceparent: trace.ids.header_bytes(),
            },
        );
        // The parsed head borrows `c.buf`; the request owns what it needs from it.
        let mut r = Request {
            method,
            route,
            body_left: body_len,
            head_request: method_name == "HEAD",
            idempotent: is_idempotent_name(method_name),
            close: connection.close || stop,
            trace,
        };
        c.buf.advance(end);
        let have = (c.buf.len() as u64).min(r.body_left) as usize;
        c.out.extend_from_slice(&c.buf[..have]);
        c.buf.advance(have);
        r.body_left -= have as u64;
        Some(r)
    }

    /// One request: forwarded with retries where safe, the response relayed.
    async fn fast_request(
        &self,
        c: &mut Conn<'_>,
        end: usize,
        limits: &GateLimits,
        stop: &watch::Receiver<bool>,
    ) -> Next {
        let start = Instant::now();
        let live = self.live();
        let Some(mut req) = self.fast_head(c, end, &live, limits, *stop.borrow()) else {
            return Next::Handover;
        };
        let t = &live.cfg.timeouts;
        let deadline = start + t.total();
        // Only a body already read whole can be sent again.
        let buffered = req.body_left == 0;
        let attempts = if buffered { 1 + live.cfg.retries } else { 1 };
        let mut tried = Vec::new();
        let mut last = Failure::Unavailable;
        for attempt in 0..attempts {
            let Some(i) = live.pool.pick(&tried) else {
                break;
            };
            tried.push(i);
            if !self.budget_attempt(attempt) {
                break;
            }
            let inst = live.pool.get(i);
            // The first attempt's budget starts with the request (no clock read).
            let until = if attempt == 0 {
                start + t.per_try().min(t.total())
            } else {
                let now = Instant::now();
                now + t.per_try().min(deadline.saturating_duration_since(now))
            };
            let span = req.trace.client(attempt);
            let in_flight = live.pool.begin(i);
            let sent =
                tokio::time::timeout_at(until.into(), self.fast_exchange(c, inst, &mut req)).await;
            drop(in_flight);
            let status = match &sent {
                Ok(Ok((_, h))) => Some(h.status),
                _ => None,
            };
            end_client_span(&req.trace, span, inst, status);
            match sent {
                Ok(Ok((up, head))) => {
                    self.note_success(&live, i);
                    let status = head.status;
                    let relayed = self.relay(c, up, head, inst).await;
                    self.finish_request(&live, req.method, &req.route, status, start, &req.trace);
                    return if relayed && !req.close && !*stop.borrow() {
                        Next::KeepAlive
                    } else {
                        Next::Close
                    };
                }
                Ok(Err(ExchangeFailure::Connect)) => {
                    last = Failure::Connect;
                    self.count_error("connect");
                    self.note_failure(&live, i);
                }
                Ok(Err(ExchangeFailure::ClientGone)) => {
                    self.finish_request(&live, req.method, &req.route, 400, start, &req.trace);
                    return Next::Close;
                }
                Ok(Err(_)) => {
                    last = Failure::Io;
                    self.count_error("io");
                    if !(req.idempotent && buffered) {
                        break;
                    }
                }
                Err(_) => {
                    last = Failure::Timeout;
                    self.count_error("timeout");
                    self.note_failure(&live, i);
                    // Slow upstreams are not retried: that would only add load.
                    break;
                }
            }
            if Instant::now() >= deadline {
                last = Failure::Timeout;
                break;
            }
        }
        // Body bytes still on the socket would be read as the next request: close instead.
        let close = req.close || req.body_left > 0 || *stop.borrow();
        let status = last.status();
        c.rout.clear();
        wire::write_error(&mut c.rout, status, close);
        let written = c.stream.write_all(&c.rout).await.is_ok();
        self.finish_request(
            &live,
            req.method,
            &req.route,
            status.as_u16(),
            start,
            &req.trace,
        );
        if written && !close {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Sends the request (head, known body, then the rest of the body from the client) and
    /// reads the response head.
    async fn fast_exchange(
        &self,
        c: &mut Conn<'_>,
        inst: &Instance,
        req: &mut Request,
    ) -> Result<(TcpStream, ResponseHead), ExchangeFailure> {
        let mut up = match c.pool.checkout(&inst.authority) {
            Some(s) => s,
            None => c
                .pool
                .connect(&inst.authority)
                .await
                .map_err(|_| ExchangeFailure::Connect)?,
        };
        up.write_all(&c.out)
            .await
            .map_err(|_| ExchangeFailure::Io)?;
        while req.body_left > 0 {
            if c.buf.is_empty() {
                c.buf.reserve(READ_BUF);
                match c.stream.read_buf(&mut c.buf).await {
                    Ok(0) | Err(_) => return Err(ExchangeFailure::ClientGone),
                    Ok(_) => {}
                }
            }
            let n = (c.buf.len() as u64).min(req.body_left) as usize;
            up.write_all(&c.buf[..n])
                .await
                .map_err(|_| ExchangeFailure::Io)?;
            c.buf.advance(n);
            req.body_left -= n as u64;
        }
        c.ubuf.clear();
        loop {
            c.rout.clear();
            match wire::parse_response(&c.ubuf, req.head_request, req.close, &mut c.rout) {
                Ok(Some(h)) if (100..200).contains(&h.status) => {
                    // Interim responses (100, 103) are not relayed.
                    c.ubuf.advance(h.len);
                    continue;
                }
                Ok(Some(h)) => return Ok((up, h)),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, upstream = %inst.authority, "upstream response refused");
                    return Err(ExchangeFailure::Io);
                }
            }
            c.ubuf.reserve(READ_BUF);
            match up.read_buf(&mut c.ubuf).await {
                Ok(0) | Err(_) => return Err(ExchangeFailure::Io),
                Ok(_) => {}
            }
        }
    }

    /// Relays the response (head already in `c.rout`) to the client; the upstream connection
    /// goes back to the pool when its framing ended cleanly. False when the client connection
    /// must close (write failed, body cut short, or a body delimited by the upstream's close).
    async fn relay(
        &self,
        c: &mut Conn<'_>,
        mut up: TcpStream,
        head: ResponseHead,
        inst: &Instance,
    ) -> bool {
        c.ubuf.advance(head.len);
        let mut keep = true;
        match head.body {
            BodyKind::None => {
                if c.stream.write_all(&c.rout).await.is_err() {
                    return false;
                }
            }
            BodyKind::Length(n) => {
                let have = (c.ubuf.len() as u64).min(n) as usize;
                c.rout.extend_from_slice(&c.ubuf[..have]);
                c.ubuf.advance(have);
                if c.stream.write_all(&c.rout).await.is_err() {
                    return false;
                }
                let mut left = n - have as u64;
                while left > 0 {
                    c.ubuf.clear();
                    c.ubuf.reserve(READ_BUF);
                    match up.read_buf(&mut c.ubuf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(_) => {}
                    }
                    let k = (c.ubuf.len() as u64).min(left) as usize;
                    if c.stream.write_all(&c.ubuf[..k]).await.is_err() {
                        return false;
                    }
                    c.ubuf.advance(k);
                    left -= k as u64;
                }
            }
            BodyKind::Chunked => {
                let mut framing = Chunked::default();
                loop {
                    let Ok(end) = framing.feed(&c.ubuf) else {
                        return false;
                    };
                    let n = end.unwrap_or(c.ubuf.len());
                    c.rout.extend_from_slice(&c.ubuf[..n]);
                    c.ubuf.advance(n);
                    if c.stream.write_all(&c.rout).await.is_err() {
                        return false;
                    }
                    c.rout.clear();
                    if end.is_some() {
                        break;
                    }
                    c.ubuf.clear();
                    c.ubuf.reserve(READ_BUF);
                    match up.read_buf(&mut c.ubuf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(_) => {}
                    }
                }
            }
            BodyKind::UntilClose => {
                keep = false;
                c.rout.extend_from_slice(&c.ubuf);
                c.ubuf.clear();
                loop {
                    if c.stream.write_all(&c.rout).await.is_err() {
                        return false;
                    }
                    c.rout.clear();
                    c.ubuf.clear();
                    c.ubuf.reserve(READ_BUF);
                    match up.read_buf(&mut c.ubuf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            c.rout.extend_from_slice(&c.ubuf);
                        }
                    }
                }
            }
        }
        // Bytes past the response's end: the connection is out of step; never reuse it.
        if head.reusable && c.ubuf.is_empty() {
            c.pool.checkin(&inst.authority, up);
        }
        keep
    }
}

/// How a fast-path exchange failed before a response head arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExchangeFailure {
    /// No connection (nothing reached the upstream).
    Connect,
    /// The exchange broke after the connection was made, or the response was refused.
    Io,
    /// The client went away before its body was read whole.
    ClientGone,
}
