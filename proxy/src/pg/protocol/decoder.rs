//! Incremental framing: bytes go in as they arrive, whole messages come out. "Incomplete" is the
//! normal state (`Ok(None)`); a length outside `4..=max` is an error and the connection is closed.

use bytes::{Buf, Bytes, BytesMut};

use super::ProtocolError;

/// One complete message as received: `frame` holds the tag (if any), length and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The type byte; 0 for untagged startup-phase packets.
    pub tag: u8,
    pub frame: Bytes,
}

impl RawMessage {
    /// The body after the tag and length.
    pub fn body(&self) -> &[u8] {
        let hdr = if self.tag == 0 { 4 } else { 5 };
        &self.frame[hdr..]
    }
    /// Wrap an encoded tagged frame.
    pub fn from_frame(frame: Bytes) -> RawMessage {
        RawMessage {
            tag: frame[0],
            frame,
        }
    }
}

/// One complete tagged message borrowed from a read buffer: the session handles messages in
/// place and advances the buffer once per read, with no per-message allocation or refcount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    pub tag: u8,
    /// Tag, length and body.
    pub frame: &'a [u8],
}

impl<'a> Msg<'a> {
    /// The body after the tag and length.
    pub fn body(&self) -> &'a [u8] {
        &self.frame[5..]
    }
}

impl RawMessage {
    /// Borrow as a [`Msg`] (tagged messages only).
    pub fn as_msg(&self) -> Msg<'_> {
        Msg {
            tag: self.tag,
            frame: &self.frame,
        }
    }
}

/// What [`Decoder::next_len`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A whole message of this many bytes.
    Complete(usize),
    /// More bytes are needed; the message will be this long (0: header incomplete).
    Partial(usize),
}

/// Frame decoder with a size limit.
#[derive(Debug)]
pub struct Decoder {
    pub buf: BytesMut,
    max: usize,
}

impl Decoder {
    pub fn new(max: usize) -> Decoder {
        Decoder {
            buf: BytesMut::with_capacity(4096),
            max,
        }
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Next tagged message, `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self) -> Result<Option<RawMessage>, ProtocolError> {
        match self.next_len(&self.buf)? {
            Next::Complete(total) => {
                let tag = self.buf[0];
                let frame = self.buf.split_to(total).freeze();
                Ok(Some(RawMessage { tag, frame }))
            }
            Next::Partial(total) => {
                self.buf.reserve(total.saturating_sub(self.buf.len()));
                Ok(None)
            }
        }
    }

    /// The size of the tagged message at the start of `buf` (a buffer taken out of this
    /// decoder, see [`Decoder::take`]): complete, or how large it will be once complete (0 while
    /// its header is incomplete).
    #[inline]
    pub fn next_len(&self, buf: &[u8]) -> Result<Next, ProtocolError> {
        let Some(hdr) = buf.get(..5) else {
            return Ok(Next::Partial(0));
        };
        let len = i32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as i64;
        if len < 4 {
            return Err(ProtocolError::BadLength(len));
        }
        let total = len as usize + 1;
        if total > self.max {
            return Err(ProtocolError::TooLarge {
                len: total,
                max: self.max,
            });
        }
        Ok(if buf.len() < total {
            Next::Partial(total)
        } else {
            Next::Complete(total)
        })
    }

    /// Take the buffered bytes to handle them in place ([`Decoder::next_len`], [`Msg`]); give
    /// them back with [`Decoder::put_back`].
    pub fn take(&mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }

    /// Return a taken buffer with its first `consumed` bytes handled; room is reserved for a
    /// message whose header said it is `partial` bytes long.
    pub fn put_back(&mut self, mut buf: BytesMut, consumed: usize, partial: usize) {
        buf.advance(consumed);
        if partial > buf.len() {
            buf.reserve(partial - buf.len());
        }
        self.buf = buf;
    }

    /// Next untagged startup-phase packet (StartupMessage, SSLRequest, GSSENCRequest,
    /// CancelRequest). Startup packets are limited to 10000 bytes as PostgreSQL does.
    pub fn decode_startup(&mut self) -> Result<Option<RawMessage>, ProtocolError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as i64;
        if !(8..=10_000).contains(&len) {
            return Err(ProtocolError::BadLength(len));
        }
        let total = len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let frame = self.buf.split_to(total).freeze();
        Ok(Some(RawMessage { tag: 0, frame }))
    }

    /// Bytes buffered but not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.remaining()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_then_complete() {
        let mut d = Decoder::new(1024);
        d.buf.extend_from_slice(&[b'Q', 0, 0, 0, 8, b'a']);
        assert_eq!(d.decode().unwrap(), None);
        d.buf.extend_from_slice(&[b'b', b'c', 0, b'S']);
        let m = d.decode().unwrap().unwrap();
        assert_eq!(m.tag, b'Q');
        assert_eq!(m.body(), b"abc\0");
        assert_eq!(d.decode().unwrap(), None);
        assert_eq!(d.pending(), 1);
    }

    #[test]
    fn borrowed_messages_in_place() {
        let mut d = Decoder::new(1024);
        d.buf
            .extend_from_slice(&[b'1', 0, 0, 0, 4, b'D', 0, 0, 0, 6, 7, 8, b'C', 0, 0]);
        let buf = d.take();
        assert!(d.buf.is_empty());
        let mut off = 0;
        let mut seen = Vec::new();
        let partial = loop {
            match d.next_len(&buf[off..]).unwrap() {
                Next::Complete(n) => {
                    let m = Msg {
                        tag: buf[off],
                        frame: &buf[off..off + n],
                    };
                    seen.push((m.tag, m.body().to_vec()));
                    off += n;
                }
                Next::Partial(n) => break n,
            }
        };
        assert_eq!(seen, vec![(b'1', vec![]), (b'D', vec![7, 8])]);
        assert_eq!(partial, 0, "the third header is incomplete");
        d.put_back(buf, off, partial);
        assert_eq!(&d.buf[..], &[b'C', 0, 0]);
        d.buf.extend_from_slice(&[0, 9, b'x']);
        let buf = d.take();
        assert_eq!(d.next_len(&buf).unwrap(), Next::Partial(10));
        d.put_back(buf, 0, 10);
        assert!(d.buf.capacity() >= 10);
        d.buf.extend_from_slice(b"abcd");
        let m = d.decode().unwrap().unwrap();
        assert_eq!(m.as_msg().body(), b"xabcd");
        assert_eq!(
            d.next_len(&[b'Q', 0, 0, 0, 2]),
            Err(ProtocolError::BadLength(2))
        );
    }

    #[test]
    fn oversized_and_bad_length() {
        let mut d = Decoder::new(16);
        d.buf.extend_from_slice(&[b'Q', 0, 0, 1, 0]);
        assert!(matches!(d.decode(), Err(ProtocolError::TooLarge { .. })));
        let mut d = Decoder::new(16);
        d.buf.extend_from_slice(&[b'Q', 0, 0, 0, 3]);
        assert_eq!(d.decode(), Err(ProtocolError::BadLength(3)));
        let mut d = Decoder::new(16);
        d.buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert!(d.decode_startup().is_err());
    }
}
