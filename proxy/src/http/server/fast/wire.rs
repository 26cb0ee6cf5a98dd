//! HTTP/1.1 wire work of the fast path: the request head sent upstream and the response head
//! sent to the client are written straight from the parsed heads (hop-by-hop headers and the
//! ones `Connection` names dropped, `X-Forwarded-*`, `Via` and `traceparent` added), and the
//! upstream response's framing is decided strictly (one framing or none: a response with two
//! is sanitized, an ambiguous one refused).

use std::io::Write as _;

use super::super::gate::{MAX_CHUNK_LINE, parse_chunk_size};
use super::super::headers::HOP_BY_HOP;

/// Most header names one `Connection` header list is read for; longer lists send the request
/// to the general path.
pub const MAX_CONNECTION_TOKENS: usize = 8;

/// The tokens of a head's `Connection` headers (lowercase comparison is done by the users).
#[derive(Default)]
pub struct ConnectionTokens<'a> {
    names: [&'a [u8]; MAX_CONNECTION_TOKENS],
    len: usize,
    pub close: bool,
    pub keep_alive: bool,
}

impl<'a> ConnectionTokens<'a> {
    /// Reads the `Connection` headers of `headers`; `None` when there are too many tokens.
    pub fn read(headers: &[httparse::Header<'a>]) -> Option<ConnectionTokens<'a>> {
        let mut t = ConnectionTokens::default();
        for h in headers {
            if !h.name.eq_ignore_ascii_case("connection") {
                continue;
            }
            for tok in h.value.split(|b| *b == b',') {
                let tok = tok.trim_ascii();
                if tok.is_empty() {
                    continue;
                }
                if tok.eq_ignore_ascii_case(b"close") {
                    t.close = true;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                    t.keep_alive = true;
                }
                if t.len == MAX_CONNECTION_TOKENS {
                    return None;
                }
                t.names[t.len] = tok;
                t.len += 1;
            }
        }
        Some(t)
    }

    fn names(&self, name: &str) -> bool {
        self.names[..self.len]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Whether a header of this name is hop-by-hop here.
    pub fn drops(&self, name: &str) -> bool {
        HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) || self.names(name)
    }
}

/// What the request head sent upstream is made from.
pub struct RequestHead<'a, 'h> {
    pub method: &'a str,
    pub target: &'a str,
    pub headers: &'h [httparse::Header<'a>],
    pub connection: &'h ConnectionTokens<'a>,
    /// The client's address, as text.
    pub peer: &'a str,
    pub trusted: bool,
    pub traceparent: [u8; 55],
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the upstream request head into `out`: the request line in HTTP/1.1, every end-to-end
/// header as received, `X-Forwarded-For` (inbound values kept only from a trusted peer), `-Proto`
/// and `-Host` (kept from a trusted peer, else set), `Via` and this proxy's `traceparent`.
pub fn write_request_head(out: &mut Vec<u8>, r: &RequestHead<'_, '_>) {
    out.extend_from_slice(r.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(r.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host: Option<&[u8]> = None;
    let (mut xfp, mut xfh) = (false, false);
    for h in r.headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = Some(h.value.trim_ascii());
        } else if name.eq_ignore_ascii_case("x-forwarded-for")
            || name.eq_ignore_ascii_case("traceparent")
            || r.connection.drops(name)
        {
            continue;
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            if !r.trusted {
                continue;
            }
            xfp = true;
        } else if name.eq_ignore_ascii_case("x-forwarded-host") {
            if !r.trusted {
                continue;
            }
            xfh = true;
        }
        header(out, name.as_bytes(), h.value);
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if r.trusted {
        for h in r.headers {
            if h.name.eq_ignore_ascii_case("x-forwarded-for")
                && !h.value.is_empty()
                && h.value
                    .iter()
                    .all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
            {
                out.extend_from_slice(h.value);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(r.peer.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !xfp {
        header(out, b"x-forwarded-proto", b"http");
    }
    if !xfh && let Some(h) = host {
        header(out, b"x-forwarded-host", h);
    }
    header(out, b"via", b"1.1 vigil");
    header(out, b"traceparent", &r.traceparent);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
fn push_num(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    push_num(out, n);
    out.extend_from_slice(b"\r\n");
}

/// How the upstream response's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A parsed upstream response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes of the head in the read buffer.
    pub len: usize,
    pub body: BodyKind,
    /// The upstream connection may be reused after the body.
    pub reusable: bool,
}

/// An upstream response the fast path refuses to forward (answered 502).
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed response head: {0}")]
    Parse(httparse::Error),
    #[error("response head too large")]
    TooLarge,
    #[error("ambiguous response framing")]
    Framing,
    #[error("unrequested protocol switch")]
    Switch,
}

/// Response heads larger than this are refused.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const RESPONSE_HEADERS: usize = 100;

/// Parses the response head at the start of `buf`; `Ok(None)` when incomplete. 1xx interim
/// responses are returned too (the caller skips them). When `out` is given the client's head
/// is written into it: `close` adds `Connection: close` (also added when the body runs until
/// the upstream closes).
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    close: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, ResponseError> {
    let mut storage =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut storage,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(ResponseError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(e) => return Err(ResponseError::Parse(e)),
    };
    let status = resp.code.unwrap_or(0);
    if status == 101 {
        return Err(ResponseError::Switch);
    }
    if (100..200).contains(&status) {
        return Ok(Some(ResponseHead {
            status,
            len,
            body: BodyKind::None,
            reusable: true,
        }));
    }
    let conn = ConnectionTokens::read(resp.headers).ok_or(ResponseError::Framing)?;
    let (mut te, mut te_count) = (None::<&[u8]>, 0);
    let mut length: Option<u64> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = Some(h.value.trim_ascii());
            te_count += 1;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(ResponseError::Framing);
            }
            let n: u64 = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(ResponseError::Framing)?;
            // Repeated values must agree.
            if length.is_some_and(|l| l != n) {
                return Err(ResponseError::Framing);
            }
            length = Some(n);
        }
    }
    let chunked = match te {
        None => false,
        Some(v) if te_count == 1 && v.eq_ignore_ascii_case(b"chunked") => true,
        Some(_) => return Err(ResponseError::Framing),
    };
    let no_body = head_request || status == 204 || status == 304;
    let body = if no_body {
        BodyKind::None
    } else if chunked {
        BodyKind::Chunked
    } else if let Some(n) = length {
        BodyKind::Length(n)
    } else {
        BodyKind::UntilClose
    };
    let http11 = resp.version == Some(1);
    let reusable = http11 && !conn.close && body != BodyKind::UntilClose;
    out.extend_from_slice(b"HTTP/1.1 ");
    push_num(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") || conn.drops(name) {
            continue;
        }
        header(out, name.as_bytes(), h.value);
    }
    match body {
        BodyKind::Length(n) => content_length(out, n),
        BodyKind::Chunked => header(out, b"transfer-encoding", b"chunked"),
        // A HEAD or 304 answer's length describes the body it does not carry; 204 has none.
        BodyKind::None if !chunked && status != 204 => {
            if let Some(n) = length {
                content_length(out, n);
            }
        }
        BodyKind::None | BodyKind::UntilClose => {}
    }
    header(out, b"via", b"1.1 vigil");
    if close || body == BodyKind::UntilClose {
        header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(ResponseHead {
        status,
        len,
        body,
        reusable,
    }))
}

/// Follows chunked framing over a byte stream to find where the body ends.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    Cr,
    Lf,
    Trailer,
}

/// Chunked framing the fast path will not forward.
#[derive(Debug, thiserror::Error)]
#[error("invalid chunked framing")]
pub struct ChunkError;

impl Chunked {
    /// Feeds the next bytes; `Some(n)` when the body ends after `buf[..n]`.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Option<usize>, ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(p) = buf[i..].iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(&buf[i..]);
                        if self.line.len() > MAX_CHUNK_LINE {
                            return Err(ChunkError);
                        }
                        return Ok(None);
                    };
                    self.line.extend_from_slice(&buf[i..=i + p]);
                    i += p + 1;
                    let line = std::mem::take(&mut self.line);
                    if matches!(self.state, ChunkState::Size) {
                        let size = parse_chunk_size(&line).ok_or(ChunkError)?;
                        self.state = if size == 0 {
                            ChunkState::Trailer
                        } else {
                            ChunkState::Data(size)
                        };
                    } else if line.as_slice() == b"\r\n" {
                        return Ok(Some(i));
                    } else if !line.ends_with(b"\r\n")
                        || matches!(line[0], b' ' | b'\t')
                        || !line.contains(&b':')
                    {
                        return Err(ChunkError);
                    }
                    self.line = line;
                    self.line.clear();
                }
                ChunkState::Data(n) => {
                    let k = n.min((buf.len() - i) as u64);
                    i += k as usize;
                    self.state = if k == n {
                        ChunkState::Cr
                    } else {
                        ChunkState::Data(n - k)
                    };
                }
                ChunkState::Cr | ChunkState::Lf => {
                    let want = if matches!(self.state, ChunkState::Cr) {
                        b'\r'
                    } else {
                        b'\n'
                    };
                    if buf[i] != want {
                        return Err(ChunkError);
                    }
                    i += 1;
                    self.state = if want == b'\r' {
                        ChunkState::Lf
                    } else {
                        ChunkState::Size
                    };
                }
            }
        }
        Ok(None)
    }
}

/// The plain-text error answer (same body as the general path's).
pub fn write_error(out: &mut Vec<u8>, status: http::StatusCode, close: bool) {
    let reason = status.canonical_reason().unwrap_or("");
    let body_len = 3 + 1 + reason.len() + 1;
    let _ = write!(
        out,
        "HTTP/1.1 {} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {body_len}\r\nvia: 1.1 vigil\r\n",
        status.as_u16()
    );
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let _ = write!(out, "\r\n{} {reason}\n", status.as_u16());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 200, 65536, u64::MAX] {
            let mut out = Vec::new();
            push_num(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn chunked_bodies_end_where_their_framing_says() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        // Any split of the stream finds the same end.
        for cut in 0..body.len() {
            let mut c = Chunked::default();
            let end = match c.feed(&body[..cut]).unwrap() {
                Some(n) => n,
                None => cut + c.feed(&body[cut..]).unwrap().unwrap(),
            };
            assert_eq!(end, body.len() - 4, "cut at {cut}");
        }
        for bad in [&b"5\r\nhelloXX"[..], b"zz\r\n", b"0\r\n bad\r\n\r\n"] {
            assert!(Chunked::default().feed(bad).is_err(), "{bad:?}");
        }
    }

    fn head(
        raw: &[u8],
        head_request: bool,
    ) -> (Result<Option<ResponseHead>, ResponseError>, String) {
        let mut out = Vec::new();
        let r = parse_response(raw, head_request, false, &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_framing_is_strict() {
        let (r, out) = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nKeep-Alive: x\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\n\r\n",
            false,
        );
        let r = r.unwrap().unwrap();
        assert_eq!(r.body, BodyKind::Chunked);
        assert!(!r.reusable);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nX-Kept: 2\r\ntransfer-encoding: chunked\r\nvia: 1.1 vigil\r\n\r\n"
        );
        let (r, out) = head(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true);
        assert_eq!(r.unwrap().unwrap().body, BodyKind::None);
        assert!(out.contains("content-length: 7\r\n"), "{out}");
        let (r, out) = head(b"HTTP/1.0 200 OK\r\n\r\n", false);
        let r = r.unwrap().unwrap();
        assert_eq!(r.body, BodyKind::UntilClose);
        assert!(out.contains("connection: close\r\n"));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(
                head(bad, false).0.is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(head(b"HTTP/1.1 200 OK\r\nX: y", false).0.unwrap().is_none());
    }

    #[test]
    fn request_heads_are_rewritten() {
        let raw = b"POST /a?b=1 HTTP/1.1\r\nHost: crm.local\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\ntraceparent: 00-x\r\nContent-Length: 2\r\n\r\n";
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut hs);
        req.parse(raw).unwrap();
        let conn = ConnectionTokens::read(req.headers).unwrap();
        assert!(conn.keep_alive && !conn.close);
        for trusted in [false, true] {
            let mut out = Vec::new();
            write_request_head(
                &mut out,
                &RequestHead {
                    method: req.method.unwrap(),
                    target: req.path.unwrap(),
                    headers: req.headers,
                    connection: &conn,
                    peer: "10.0.0.9",
                    trusted,
                    traceparent: [b'0'; 55],
                },
            );
            let out = String::from_utf8(out).unwrap();
            assert!(
                out.starts_with("POST /a?b=1 HTTP/1.1\r\nHost: crm.local\r\n"),
                "{out}"
            );
            for gone in ["X-Hop", "TE:", "Connection", "00-x"] {
                assert!(!out.contains(gone), "{gone} in {out}");
            }
            assert!(out.contains("Content-Length: 2\r\n"));
            assert!(out.contains("x-forwarded-host: crm.local\r\n"));
            assert!(out.contains("via: 1.1 vigil\r\n"));
            if trusted {
                assert!(
                    out.contains("x-forwarded-for: 1.1.1.1, 10.0.0.9\r\n"),
                    "{out}"
                );
                assert!(out.contains("X-Forwarded-Proto: https\r\n"));
                assert!(!out.contains("x-forwarded-proto: http\r\n"));
            } else {
                assert!(out.contains("x-forwarded-for: 10.0.0.9\r\n"), "{out}");
                assert!(!out.contains("https"));
                assert!(out.contains("x-forwarded-proto: http\r\n"));
            }
            assert!(out.ends_with("\r\n\r\n"));
        }
    }
}
