//! Byte helpers: a frame writer that patches the length, and a bounds-checked body reader.

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolError;

/// Builds one message frame: tag (optional), length placeholder, body.
pub struct Frame {
    buf: BytesMut,
    start: usize,
}

impl Frame {
    /// A tagged message (`tag` 0 = untagged, as startup packets are).
    pub fn new(tag: u8) -> Frame {
        let mut buf = BytesMut::with_capacity(64);
        if tag != 0 {
            buf.put_u8(tag);
        }
        let start = buf.len();
        buf.put_i32(0);
        Frame { buf, start }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.put_u8(v);
        self
    }
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.buf.put_i16(v);
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.put_i32(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.put_u32(v);
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.put_slice(v);
        self
    }
    /// A NUL-terminated string.
    pub fn cstr(&mut self, v: &str) -> &mut Self {
        self.buf.put_slice(v.as_bytes());
        self.buf.put_u8(0);
        self
    }
    pub fn cbytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.put_slice(v);
        self.buf.put_u8(0);
        self
    }
    pub fn finish(&mut self) -> Bytes {
        let len = (self.buf.len() - self.start) as i32;
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_be_bytes());
        std::mem::take(&mut self.buf).freeze()
    }
}

/// Reads a message body.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, what }
    }
    fn err(&self) -> ProtocolError {
        ProtocolError::malformed(self.what)
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        let (&v, rest) = self.buf.split_first().ok_or_else(|| self.err())?;
        self.buf = rest;
        Ok(v)
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(self.err());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn i16(&mut self) -> Result<i16, ProtocolError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    pub fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(self.i32()? as u32)
    }
    /// A NUL-terminated byte string (without the NUL).
    pub fn cbytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let pos = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.err())?;
        let s = &self.buf[..pos];
        self.buf = &self.buf[pos + 1..];
        Ok(s)
    }
    /// A NUL-terminated UTF-8 string.
    pub fn cstr(&mut self) -> Result<&'a str, ProtocolError> {
        let b = self.cbytes()?;
        std::str::from_utf8(b).map_err(|_| self.err())
    }
    pub fn end(&self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err())
        }
    }
}
