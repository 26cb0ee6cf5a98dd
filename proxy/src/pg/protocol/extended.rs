//! The extended query family: Parse, Bind, Describe, Execute, Close, Sync, Flush and
//! ParseComplete/BindComplete/CloseComplete/NoData/PortalSuspended/ParameterDescription.
//!
//! Bind is decoded only as far as its portal and statement names; the rest (formats, parameter
//! values) is kept as raw bytes and never inspected, so parameter values cannot leak anywhere.

use bytes::Bytes;

use super::ProtocolError;
use super::buf::{Frame, Reader};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    pub name: String,
    pub query: String,
    pub param_types: Vec<u32>,
}

impl Parse {
    pub fn encode(&self) -> Bytes {
        let mut f = Frame::new(b'P');
        f.cstr(&self.name)
            .cstr(&self.query)
            .i16(self.param_types.len() as i16);
        for t in &self.param_types {
            f.u32(*t);
        }
        f.finish()
    }
    pub fn decode(body: &[u8]) -> Result<Parse, ProtocolError> {
        let mut r = Reader::new(body, "Parse");
        let name = r.cstr()?.to_owned();
        let query = r.cstr()?.to_owned();
        let n = r.i16()?;
        let mut param_types = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n.max(0) {
            param_types.push(r.u32()?);
        }
        r.end()?;
        Ok(Parse {
            name,
            query,
            param_types,
        })
    }
}

/// Bind with the parameters kept opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// Formats, values and result formats, verbatim.
    pub rest: &'a [u8],
}

impl<'a> Bind<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Bind<'a>, ProtocolError> {
        let mut r = Reader::new(body, "Bind");
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        Ok(Bind {
            portal,
            statement,
            rest: r.rest(),
        })
    }
    /// Encode with another statement name (the frame-builder form; the proxy appends with
    /// [`Bind::write_with_statement`], which the tests check against this).
    #[cfg(test)]
    pub fn encode_with_statement(&self, statement: &str) -> Bytes {
        Frame::new(b'B')
            .cstr(self.portal)
            .cstr(statement)
            .bytes(self.rest)
            .finish()
    }
    /// The Bind with another statement name, appended to `out` (no frame of its own).
    pub fn write_with_statement(&self, statement: &str, out: &mut bytes::BytesMut) {
        let len = 4 + self.portal.len() + 1 + statement.len() + 1 + self.rest.len();
        out.reserve(1 + len);
        out.extend_from_slice(b"B");
        out.extend_from_slice(&(len as i32).to_be_bytes());
        out.extend_from_slice(self.portal.as_bytes());
        out.extend_from_slice(&[0]);
        out.extend_from_slice(statement.as_bytes());
        out.extend_from_slice(&[0]);
        out.extend_from_slice(self.rest);
    }
}

/// Describe ('D') or Close ('C'): target kind `S` (statement) or `P` (portal) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: u8,
    pub name: &'a str,
}

impl<'a> Target<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Target<'a>, ProtocolError> {
        let mut r = Reader::new(body, "Describe/Close");
        let kind = r.u8()?;
        if kind != b'S' && kind != b'P' {
            return Err(ProtocolError::malformed("Describe/Close"));
        }
        let name = r.cstr()?;
        r.end()?;
        Ok(Target { kind, name })
    }
    pub fn encode(&self, tag: u8) -> Bytes {
        Frame::new(tag).u8(self.kind).cstr(self.name).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a str,
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Execute<'a>, ProtocolError> {
        let mut r = Reader::new(body, "Execute");
        let portal = r.cstr()?;
        let max_rows = r.i32()?;
        r.end()?;
        Ok(Execute { portal, max_rows })
    }
    pub fn encode(&self) -> Bytes {
        Frame::new(b'E')
            .cstr(self.portal)
            .i32(self.max_rows)
            .finish()
    }
}

pub fn sync() -> Bytes {
    Frame::new(b'S').finish()
}
pub fn flush() -> Bytes {
    Frame::new(b'H').finish()
}
pub fn parse_complete() -> Bytes {
    Frame::new(b'1').finish()
}
pub fn bind_complete() -> Bytes {
    Frame::new(b'2').finish()
}
pub fn close_complete() -> Bytes {
    Frame::new(b'3').finish()
}
pub fn no_data() -> Bytes {
    Frame::new(b'n').finish()
}
pub fn portal_suspended() -> Bytes {
    Frame::new(b's').finish()
}
pub fn parameter_description(types: &[u32]) -> Bytes {
    let mut f = Frame::new(b't');
    f.i16(types.len() as i16);
    for t in types {
        f.u32(*t);
    }
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_roundtrip() {
        let p = Parse {
            name: "s1".into(),
            query: "SELECT $1::int".into(),
            param_types: vec![23],
        };
        let f = p.encode();
        assert_eq!(f[0], b'P');
        assert_eq!(Parse::decode(&f[5..]).unwrap(), p);
    }

    #[test]
    fn bind_roundtrip_keeps_params() {
        let raw = Frame::new(b'B')
            .cstr("p")
            .cstr("s1")
            .i16(0)
            .i16(1)
            .i32(1)
            .bytes(b"7")
            .i16(0)
            .finish();
        let b = Bind::decode(&raw[5..]).unwrap();
        assert_eq!((b.portal, b.statement), ("p", "s1"));
        assert_eq!(b.encode_with_statement("s1"), raw);
        let renamed = b.encode_with_statement("vigil_s1");
        let b2 = Bind::decode(&renamed[5..]).unwrap();
        assert_eq!(b2.statement, "vigil_s1");
        assert_eq!(b2.rest, b.rest);
        let mut out = bytes::BytesMut::from(&b"x"[..]);
        b.write_with_statement("vigil_s1", &mut out);
        assert_eq!(&out[1..], &renamed[..], "appended in place, same bytes");
    }

    #[test]
    fn describe_close_execute_roundtrip() {
        let t = Target {
            kind: b'S',
            name: "s1",
        };
        let f = t.encode(b'D');
        assert_eq!(Target::decode(&f[5..]).unwrap(), t);
        assert!(Target::decode(b"Xs\0").is_err());
        let e = Execute {
            portal: "",
            max_rows: 10,
        };
        assert_eq!(Execute::decode(&e.encode()[5..]).unwrap(), e);
        for (m, tag) in [
            (sync(), b'S'),
            (flush(), b'H'),
            (parse_complete(), b'1'),
            (bind_complete(), b'2'),
            (close_complete(), b'3'),
            (no_data(), b'n'),
            (portal_suspended(), b's'),
        ] {
            assert_eq!(&m[..], &[tag, 0, 0, 0, 4]);
        }
        let pd = parameter_description(&[23, 25]);
        assert_eq!(&pd[5..], &[0, 2, 0, 0, 0, 23, 0, 0, 0, 25]);
    }
}
