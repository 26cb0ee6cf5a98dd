//! The request-smuggling gate: a transparent I/O wrapper in front of hyper's HTTP/1 parser that
//! re-parses every request head strictly and tracks body framing to find the next head.
//!
//! A request that is ambiguous or malformed (repeated or invalid `Content-Length`,
//! `Transfer-Encoding` with `Content-Length`, any coding other than exactly `chunked`, missing or
//! repeated `Host`, bare LF, oversize heads, bad chunk framing) never reaches hyper: the gate hands
//! hyper a synthetic request for an unguessable reject path instead, then end-of-stream, so the
//! service answers with the right status, closes the connection, and nothing after the bad bytes
//! is ever parsed as a request. Bad chunk framing mid-body fails the read instead (the upstream
//! request is aborted). HTTP/2 prior-knowledge connections and upgraded connections pass through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(super) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest chunk-size line (size and extensions) accepted.
pub(super) const MAX_CHUNK_LINE: usize = 4096;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Header slots parsed on the stack; larger `max_headers` limits use the heap.
pub(super) const STACK_HEADERS: usize = 64;

/// Why a request was refused, and the status it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    BadRequest(&'static str),
    HeadersTooLarge,
    BodyTooLarge,
    NotImplemented,
}

impl Reject {
    pub fn status(self) -> u16 {
        match self {
            Reject::BadRequest(_) => 400,
            Reject::HeadersTooLarge => 431,
            Reject::BodyTooLarge => 413,
            Reject::NotImplemented => 501,
        }
    }

    /// Bounded metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::BadRequest(r) => r,
            Reject::HeadersTooLarge => "headers_too_large",
            Reject::BodyTooLarge => "body_too_large",
            Reject::NotImplemented => "unsupported_transfer_coding",
        }
    }

    fn code(self) -> u8 {
        match self {
            Reject::BadRequest(r) => REASONS.iter().position(|x| *x == r).unwrap_or(0) as u8,
            Reject::HeadersTooLarge => 200,
            Reject::BodyTooLarge => 201,
            Reject::NotImplemented => 202,
        }
    }

    /// Decodes the code carried in the reject path.
    pub fn from_code(code: u8) -> Reject {
        match code {
            200 => Reject::HeadersTooLarge,
            201 => Reject::BodyTooLarge,
            202 => Reject::NotImplemented,
            n => Reject::BadRequest(REASONS.get(n as usize).copied().unwrap_or("malformed")),
        }
    }
}

const REASONS: &[&str] = &[
    "malformed",
    "bare_lf",
    "content_length_repeated",
    "content_length_invalid",
    "te_with_content_length",
    "te_repeated",
    "te_in_http10",
    "host_missing",
    "host_repeated",
    "host_invalid",
    "target_invalid",
    "header_invalid",
    "chunk_invalid",
];

/// Limits the gate enforces.
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
    /// From the first byte of a request head to its end (slow-header clients are cut off).
    pub header_read: std::time::Duration,
    /// Between requests on a kept-alive connection.
    pub idle: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Idle,
    Head,
}

#[derive(Debug)]
enum State {
    /// Before the first bytes: HTTP/1 or the HTTP/2 preface?
    Detect,
    Head,
    Body(u64),
    Chunk(ChunkState),
    /// Upgraded or HTTP/2: bytes pass unchecked.
    Passthrough,
    /// Rejected: deliver the synthetic request, then end-of-stream.
    Rejected,
    /// Bad framing mid-body: the next read fails.
    Failed,
    /// A head or idle timeout expired: end of stream.
    TimedOut,
}

#[derive(Debug, Clone, Copy)]
enum ChunkState {
    Size,
    Data(u64),
    DataCr,
    DataLf,
    Trailers,
}

/// The wrapper. `reject_prefix` is the secret path prefix the service recognises.
pub struct Gate<S> {
    inner: S,
    limits: GateLimits,
    reject_prefix: String,
    state: State,
    /// Bytes read from the socket, not yet checked.
    pending: BytesMut,
    /// Checked bytes for hyper.
    ready: BytesMut,
    /// Whether the next chunk-size line is the first of the body (for the body limit).
    chunked_total: u64,
    after_body: AfterBody,
    timer: Option<(Waiting, Pin<Box<tokio::time::Sleep>>)>,
    /// The socket read buffer, allocated (and zeroed) once per connection.
    scratch: Box<[u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterBody {
    Head,
    Passthrough,
}

impl<S> Gate<S> {
    pub fn new(inner: S, limits: GateLimits, reject_prefix: String) -> Gate<S> {
        Gate {
            inner,
            limits,
            reject_prefix,
            state: State::Detect,
            pending: BytesMut::with_capacity(8192),
            ready: BytesMut::with_capacity(8192),
            chunked_total: 0,
            after_body: AfterBody::Head,
            timer: None,
            scratch: Box::default(),
        }
    }

    /// Like [`Gate::new`], for a connection whose first `read` bytes were already taken from
    /// the socket (by the HTTP/1.1 fast path, which hands the rest of the connection over).
    pub fn with_buffered(
        inner: S,
        limits: GateLimits,
        reject_prefix: String,
        read: BytesMut,
    ) -> Gate<S> {
        let mut g = Gate::new(inner, limits, reject_prefix);
        g.pending = read;
        g.process();
        g
    }

    fn reject(&mut self, why: Reject) {
        self.ready.extend_from_slice(
            format!(
                "GET {}{} HTTP/1.1\r\nhost: vigil\r\nconnection: close\r\n\r\n",
                self.reject_prefix,
                why.code()
            )
            .as_bytes(),
        );
        self.pending.clear();
        self.state = State::Rejected;
    }

    fn end_body(&mut self) {
        self.state = match self.after_body {
            AfterBody::Head => State::Head,
            AfterBody::Passthrough => State::Passthrough,
        };
    }

    /// Moves checked bytes from `pending` to `ready` as far as the state machine allows.
    fn process(&mut self) {
        loop {
            match self.state {
                State::Detect => {
                    let n = self.pending.len().min(H2_PREFACE.len());
                    if self.pending[..n] != H2_PREFACE[..n] {
                        self.state = State::Head;
                    } else if n == H2_PREFACE.len() {
                        self.state = State::Passthrough;
                    } else {
                        return;
                    }
                }
                State::Passthrough => {
                    let all = self.pending.split();
                    self.ready.unsplit(all);
                    return;
                }
                State::Rejected | State::Failed | State::TimedOut => {
                    self.pending.clear();
                    return;
                }
                State::Head => {
                    // Empty lines before a request line are allowed (RFC 9112 2.2).
                    while self.pending.starts_with(b"\r\n") {
                        self.pending.advance(2);
                    }
                    let Some(end) = find_head_end(&self.pending) else {
                        if self.pending.len() > self.limits.max_header_bytes {
                            self.reject(Reject::HeadersTooLarge);
                        }
                        return;
                    };
                    if end > self.limits.max_header_bytes {
                        self.reject(Reject::HeadersTooLarge);
                        return;
                    }
                    let head = self.pending.split_to(end);
                    match check_head(&head, &self.limits) {
                        Ok(framing) => {
                            self.ready.unsplit(head);
                            self.after_body = if framing.upgrade {
                                AfterBody::Passthrough
                            } else {
                                AfterBody::Head
                            };
                            match framing.body {
                                BodyFraming::None => self.end_body(),
                                BodyFraming::Length(n) => self.state = State::Body(n),
                                BodyFraming::Chunked => {
                                    self.chunked_total = 0;
                                    self.state = State::Chunk(ChunkState::Size);
                                }
                            }
                        }
                        Err(why) => {
                            self.reject(why);
                            return;
                        }
                    }
                }
                State::Body(remaining) => {
                    if self.pending.is_empty() {
                        return;
                    }
                    let n = (remaining.min(self.pending.len() as u64)) as usize;
                    let part = self.pending.split_to(n);
                    self.ready.unsplit(part);
                    let left = remaining - n as u64;
                    if left == 0 {
                        self.end_body();
                    } else {
                        self.state = State::Body(left);
                        return;
                    }
                }
                State::Chunk(cs) => {
                    if !self.step_chunk(cs) {
                        return;
                    }
                }
            }
        }
    }

    /// One step of chunked framing; false when more bytes are needed or the state is final.
    fn step_chunk(&mut self, cs: ChunkState) -> bool {
        match cs {
            ChunkState::Size => {
                let Some(lf) = self.pending.iter().position(|b| *b == b'\n') else {
                    if self.pending.len() > MAX_CHUNK_LINE {
                        self.state = State::Failed;
                    }
                    return false;
                };
                let line = &self.pending[..=lf];
                match parse_chunk_size(line) {
                    Some(size) => {
                        self.chunked_total = self.chunked_total.saturating_add(size);
                        if self.chunked_total > self.limits.max_body_bytes {
                            self.state = State::Failed;
                            return false;
                        }
                        let line = self.pending.split_to(lf + 1);
                        self.ready.unsplit(line);
                        self.state = State::Chunk(if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        });
                        true
                    }
                    None => {
                        self.state = State::Failed;
                        false
                    }
                }
            }
            ChunkState::Data(remaining) => {
                if self.pending.is_empty() {
                    return false;
                }
                let n = (remaining.min(self.pending.len() as u64)) as usize;
                let part = self.pending.split_to(n);
                self.ready.unsplit(part);
                let left = remaining - n as u64;
                self.state = State::Chunk(if left == 0 {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data(left)
                });
                left == 0
            }
            ChunkState::DataCr | ChunkState::DataLf => {
                let Some(&b) = self.pending.first() else {
                    return false;
                };
                let want = if matches!(cs, ChunkState::DataCr) {
                    b'\r'
                } else {
                    b'\n'
                };
                if b != want {
                    self.state = State::Failed;
                    return false;
                }
                let one = self.pending.split_to(1);
                self.ready.unsplit(one);
                self.state = State::Chunk(if matches!(cs, ChunkState::DataCr) {
                    ChunkState::DataLf
                } else {
                    ChunkState::Size
                });
                true
            }
            ChunkState::Trailers => {
                // Trailer lines until an empty line; each must end in CRLF.
                let Some(lf) = self.pending.iter().position(|b| *b == b'\n') else {
                    if self.pending.len() > self.limits.max_header_bytes {
                        self.state = State::Failed;
                    }
                    return false;
                };
                if lf == 0 || self.pending[lf - 1] != b'\r' {
                    self.state = State::Failed;
                    return false;
                }
                let line = self.pending.split_to(lf + 1);
                let empty = line.len() == 2;
                if !empty && (line[0] == b' ' || line[0] == b'\t' || !line.contains(&b':')) {
                    self.state = State::Failed;
                    return false;
                }
                self.ready.unsplit(line);
                if empty {
                    self.end_body();
                }
                true
            }
        }
    }
}

/// Index just past the blank line ending a head (`\r\n\r\n`); a bare LF anywhere is found too.
pub(super) fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|b| *b == b'\n') {
        let lf = i + p;
        // A bare LF ends the search: the head is checked (and refused) as it stands.
        if lf == 0 || buf[lf - 1] != b'\r' {
            return Some(lf + 1);
        }
        if lf >= 3 && &buf[lf - 3..=lf] == b"\r\n\r\n" {
            return Some(lf + 1);
        }
        i = lf + 1;
    }
    None
}

/// `1*HEXDIG [ chunk-ext ] CRLF`, at most 15 hex digits.
pub(super) fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"\r\n")?;
    let digits_end = body
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(body.len());
    if digits_end == 0 || digits_end > 15 {
        return None;
    }
    let rest = &body[digits_end..];
    if !rest.is_empty() {
        // Extensions: `;name[=value]`, no control characters.
        if rest[0] != b';' || rest.iter().any(|b| *b < 0x20 && *b != b'\t' || *b == 0x7f) {
            return None;
        }
    }
    let s = std::str::from_utf8(&body[..digits_end]).ok()?;
    u64::from_str_radix(s, 16).ok()
}

pub(super) enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

pub(super) struct Framing {
    pub(super) body: BodyFraming,
    pub(super) upgrade: bool,
}

/// Strict checks on one request head (which ends with the blank line).
fn check_head(head: &[u8], limits: &GateLimits) -> Result<Framing, Reject> {
    check_line_endings(head)?;
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap = Vec::new();
    let storage: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
        &mut heap
    };
    let mut req = httparse::Request::new(storage);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Reject::BadRequest("malformed")),
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeadersTooLarge),
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Err(Reject::BadRequest("header_invalid"));
        }
        Err(_) => return Err(Reject::BadRequest("malformed")),
    }
    check_request(&req, limits)
}

/// Every line of a head ends in CRLF: no bare LF, no stray CR.
pub(super) fn check_line_endings(head: &[u8]) -> Result<(), Reject> {
    if head.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') || head.first() == Some(&b'\n') {
        return Err(Reject::BadRequest("bare_lf"));
    }
    if head.contains(&b'\r') && head.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n') {
        return Err(Reject::BadRequest("malformed"));
    }
    Ok(())
}

/// Strict checks on a parsed request head: target form, `Host`, and one unambiguous body
/// framing within the limits.
pub(super) fn check_request(
    req: &httparse::Request<'_, '_>,
    limits: &GateLimits,
) -> Result<Framing, Reject> {
    let version = req.version.unwrap_or(1);
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let target_ok = target.starts_with('/')
        || (method == "OPTIONS" && target == "*")
        || target.starts_with("http://")
        || target.starts_with("https://");
    if !target_ok || target.contains('#') {
        return Err(Reject::BadRequest("target_invalid"));
    }
    let mut cl: Vec<&[u8]> = Vec::new();
    let mut te: Vec<&[u8]> = Vec::new();
    let mut host: Vec<&[u8]> = Vec::new();
    let (mut upgrade, mut conn_upgrade) = (false, false);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            cl.push(h.value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te.push(h.value);
        } else if name.eq_ignore_ascii_case("host") {
            host.push(h.value);
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        } else if name.eq_ignore_ascii_case("connection") {
            conn_upgrade |= h
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        }
    }
    match host.len() {
        0 if version == 1 => return Err(Reject::BadRequest("host_missing")),
        0 => {}
        1 => {
            let h = host[0].trim_ascii();
            let ok = h.iter().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
            });
            if !ok {
                return Err(Reject::BadRequest("host_invalid"));
            }
        }
        _ => return Err(Reject::BadRequest("host_repeated")),
    }
    let body = if !te.is_empty() {
        if !cl.is_empty() {
            return Err(Reject::BadRequest("te_with_content_length"));
        }
        if version == 0 {
            return Err(Reject::BadRequest("te_in_http10"));
        }
        if te.len() > 1 {
            return Err(Reject::BadRequest("te_repeated"));
        }
        let v = te[0].trim_ascii();
        if v.eq_ignore_ascii_case(b"chunked") {
            BodyFraming::Chunked
        } else if v.contains(&b',') || v.contains(&b' ') || v.contains(&b'\t') {
            return Err(Reject::BadRequest("te_repeated"));
        } else if matches!(
            v.to_ascii_lowercase().as_slice(),
            b"gzip" | b"deflate" | b"compress" | b"identity" | b"br"
        ) {
            return Err(Reject::NotImplemented);
        } else {
            return Err(Reject::BadRequest("malformed"));
        }
    } else if !cl.is_empty() {
        if cl.len() > 1 {
            return Err(Reject::BadRequest("content_length_repeated"));
        }
        let v = cl[0];
        if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
            return Err(Reject::BadRequest("content_length_invalid"));
        }
        let n: u64 = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Reject::BadRequest("content_length_invalid"))?;
        if n > limits.max_body_bytes {
            return Err(Reject::BodyTooLarge);
        }
        if n == 0 {
            BodyFraming::None
        } else {
            BodyFraming::Length(n)
        }
    } else {
        BodyFraming::None
    };
    Ok(Framing {
        body,
        upgrade: upgrade && conn_upgrade && method == "GET",
    })
}

impl<S> Gate<S> {
    /// Arms the idle timer while waiting for a request and the head timer once its first byte
    /// arrived; true when the armed one has expired.
    fn head_timer_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let waiting = match self.state {
            State::Detect | State::Head if self.pending.is_empty() => Waiting::Idle,
            State::Detect | State::Head => Waiting::Head,
            _ => {
                self.timer = None;
                return false;
            }
        };
        if self.timer.as_ref().is_none_or(|(w, _)| *w != waiting) {
            let d = match waiting {
                Waiting::Idle => self.limits.idle,
                Waiting::Head => self.limits.header_read,
            };
            self.timer = Some((waiting, Box::pin(tokio::time::sleep(d))));
        }
        self.timer
            .as_mut()
            .is_some_and(|(_, t)| t.as_mut().poll(cx).is_ready())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Gate<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            match this.state {
                // End of stream after the synthetic request.
                State::Rejected | State::TimedOut => return Poll::Ready(Ok(())),
                State::Failed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "invalid chunked framing",
                    )));
                }
                _ => {}
            }
            if this.head_timer_expired(cx) {
                this.state = State::TimedOut;
                this.pending.clear();
                return Poll::Ready(Ok(()));
            }
            if this.scratch.is_empty() {
                this.scratch = vec![0u8; READ_CHUNK].into_boxed_slice();
            }
            let mut rb = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let filled = rb.filled();
                    if filled.is_empty() {
                        // Peer closed: hand over what is left unchecked only if it is a
                        // partial head (hyper reports it as incomplete), then EOF.
                        return Poll::Ready(Ok(()));
                    }
                    this.pending.extend_from_slice(filled);
                    this.process();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gate<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GateLimits {
        GateLimits {
            max_header_bytes: 1024,
            max_headers: 8,
            max_body_bytes: 100,
            header_read: std::time::Duration::from_secs(1),
            idle: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a\r\n"), Some(26));
        assert_eq!(parse_chunk_size(b"0;name=value\r\n"), Some(0));
        for bad in [
            &b"\r\n"[..],
            b" 5\r\n",
            b"5 \r\n",
            b"-5\r\n",
            b"0x5\r\n",
            b"5\n",
            b"1234567890abcdef\r\n",
            b"5;a\x00\r\n",
        ] {
            assert_eq!(parse_chunk_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn head_end_and_bare_lf() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nX"),
            Some(27)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nHost"), Some(15));
    }

    #[test]
    fn heads() {
        let ok = |h: &[u8]| check_head(h, &limits()).is_ok();
        assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(ok(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ok(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(ok(
            b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
        ));
        assert_eq!(
            check_head(
                b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n",
                &limits()
            )
            .err(),
            Some(Reject::BodyTooLarge)
        );
        let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(
            check_head(head.as_bytes(), &limits()).err(),
            Some(Reject::HeadersTooLarge)
        );
        for code in 0..REASONS.len() as u8 {
            assert_eq!(
                Reject::from_code(Reject::from_code(code).code()).reason(),
                REASONS[code as usize]
            );
        }
    }
}
