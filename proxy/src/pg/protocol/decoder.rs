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
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let tag = self.buf[0];
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as i64;
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
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let frame = self.buf.split_to(total).freeze();
        Ok(Some(RawMessage { tag, frame }))
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
