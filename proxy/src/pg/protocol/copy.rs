//! The COPY family. The proxy only forwards these, but it must know them to never release a
//! server mid-COPY.

use bytes::Bytes;

use super::ProtocolError;
use super::buf::{Frame, Reader};

pub fn copy_data(data: &[u8]) -> Bytes {
    Frame::new(b'd').bytes(data).finish()
}
pub fn copy_done() -> Bytes {
    Frame::new(b'c').finish()
}
pub fn copy_fail(reason: &str) -> Bytes {
    Frame::new(b'f').cstr(reason).finish()
}
pub fn decode_copy_fail(body: &[u8]) -> Result<&str, ProtocolError> {
    let mut r = Reader::new(body, "CopyFail");
    let s = r.cstr()?;
    r.end()?;
    Ok(s)
}

/// CopyInResponse ('G'), CopyOutResponse ('H') and CopyBothResponse ('W').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResponse {
    pub tag: u8,
    pub format: u8,
    pub column_formats: Vec<i16>,
}

impl CopyResponse {
    pub fn encode(&self) -> Bytes {
        let mut f = Frame::new(self.tag);
        f.u8(self.format).i16(self.column_formats.len() as i16);
        for c in &self.column_formats {
            f.i16(*c);
        }
        f.finish()
    }
    pub fn decode(tag: u8, body: &[u8]) -> Result<CopyResponse, ProtocolError> {
        let mut r = Reader::new(body, "CopyResponse");
        let format = r.u8()?;
        let n = r.i16()?;
        let mut column_formats = Vec::new();
        for _ in 0..n.max(0) {
            column_formats.push(r.i16()?);
        }
        r.end()?;
        Ok(CopyResponse {
            tag,
            format,
            column_formats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_roundtrips() {
        let d = copy_data(b"1\tx\n");
        assert_eq!(&d[5..], b"1\tx\n");
        assert_eq!(&copy_done()[..], &[b'c', 0, 0, 0, 4]);
        assert_eq!(decode_copy_fail(&copy_fail("boom")[5..]).unwrap(), "boom");
        let r = CopyResponse {
            tag: b'G',
            format: 0,
            column_formats: vec![0, 0],
        };
        assert_eq!(CopyResponse::decode(b'G', &r.encode()[5..]).unwrap(), r);
    }
}
