//! Status and asynchronous messages: ErrorResponse/NoticeResponse, ParameterStatus,
//! BackendKeyData, NotificationResponse, Terminate.

use bytes::Bytes;

use super::ProtocolError;
use super::buf::{Frame, Reader};

/// The fields of an ErrorResponse or NoticeResponse (code, value), in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    pub fields: Vec<(u8, String)>,
}

impl ErrorFields {
    /// A proxy-generated error: severity, SQLSTATE and message.
    pub fn new(severity: &str, code: &str, message: &str) -> ErrorFields {
        ErrorFields {
            fields: vec![
                (b'S', severity.to_owned()),
                (b'V', severity.to_owned()),
                (b'C', code.to_owned()),
                (b'M', message.to_owned()),
            ],
        }
    }
    pub fn get(&self, code: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }
    /// The SQLSTATE ('C').
    pub fn code(&self) -> &str {
        self.get(b'C').unwrap_or("XX000")
    }
    pub fn message(&self) -> &str {
        self.get(b'M').unwrap_or("")
    }
    /// Encode as ErrorResponse ('E') or NoticeResponse ('N').
    pub fn encode(&self, tag: u8) -> Bytes {
        let mut f = Frame::new(tag);
        for (c, v) in &self.fields {
            f.u8(*c).cstr(v);
        }
        f.u8(0).finish()
    }
    pub fn decode(body: &[u8]) -> Result<ErrorFields, ProtocolError> {
        let mut r = Reader::new(body, "ErrorResponse");
        let mut fields = Vec::new();
        loop {
            let c = r.u8()?;
            if c == 0 {
                break;
            }
            fields.push((c, String::from_utf8_lossy(r.cbytes()?).into_owned()));
        }
        r.end()?;
        Ok(ErrorFields { fields })
    }
}

/// Only the SQLSTATE of an ErrorResponse body, without allocating the rest.
pub fn error_code(body: &[u8]) -> Option<[u8; 5]> {
    let mut r = Reader::new(body, "ErrorResponse");
    loop {
        let c = r.u8().ok()?;
        if c == 0 {
            return None;
        }
        let v = r.cbytes().ok()?;
        if c == b'C' && v.len() == 5 {
            return Some([v[0], v[1], v[2], v[3], v[4]]);
        }
    }
}

/// A FATAL ErrorResponse frame.
pub fn fatal(code: &str, message: &str) -> Bytes {
    ErrorFields::new("FATAL", code, message).encode(b'E')
}

/// An ERROR ErrorResponse frame.
pub fn error(code: &str, message: &str) -> Bytes {
    ErrorFields::new("ERROR", code, message).encode(b'E')
}

pub fn parameter_status(name: &str, value: &str) -> Bytes {
    Frame::new(b'S').cstr(name).cstr(value).finish()
}

pub fn decode_parameter_status(body: &[u8]) -> Result<(String, String), ProtocolError> {
    let mut r = Reader::new(body, "ParameterStatus");
    let k = r.cstr()?.to_owned();
    let v = r.cstr()?.to_owned();
    r.end()?;
    Ok((k, v))
}

pub fn backend_key_data(pid: i32, secret: &[u8]) -> Bytes {
    Frame::new(b'K').i32(pid).bytes(secret).finish()
}

pub fn decode_backend_key_data(body: &[u8]) -> Result<(i32, Vec<u8>), ProtocolError> {
    let mut r = Reader::new(body, "BackendKeyData");
    let pid = r.i32()?;
    let secret = r.rest().to_vec();
    if secret.is_empty() {
        return Err(ProtocolError::malformed("BackendKeyData"));
    }
    Ok((pid, secret))
}

pub fn notification(pid: i32, channel: &str, payload: &str) -> Bytes {
    Frame::new(b'A')
        .i32(pid)
        .cstr(channel)
        .cstr(payload)
        .finish()
}

pub fn decode_notification(body: &[u8]) -> Result<(i32, String, String), ProtocolError> {
    let mut r = Reader::new(body, "NotificationResponse");
    let pid = r.i32()?;
    let ch = r.cstr()?.to_owned();
    let p = r.cstr()?.to_owned();
    r.end()?;
    Ok((pid, ch, p))
}

pub fn terminate() -> Bytes {
    Frame::new(b'X').finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_roundtrip_and_code() {
        let e = ErrorFields::new("ERROR", "42P01", "relation \"x\" does not exist");
        let f = e.encode(b'E');
        let d = ErrorFields::decode(&f[5..]).unwrap();
        assert_eq!(d, e);
        assert_eq!(d.code(), "42P01");
        assert_eq!(error_code(&f[5..]), Some(*b"42P01"));
        let n = e.encode(b'N');
        assert_eq!(n[0], b'N');
        assert_eq!(fatal("28P01", "x")[0], b'E');
    }

    #[test]
    fn status_roundtrips() {
        let s = parameter_status("TimeZone", "UTC");
        assert_eq!(
            decode_parameter_status(&s[5..]).unwrap(),
            ("TimeZone".into(), "UTC".into())
        );
        let k = backend_key_data(7, &[1, 2, 3, 4]);
        assert_eq!(
            decode_backend_key_data(&k[5..]).unwrap(),
            (7, vec![1, 2, 3, 4])
        );
        let a = notification(9, "ch", "hello");
        assert_eq!(
            decode_notification(&a[5..]).unwrap(),
            (9, "ch".into(), "hello".into())
        );
        assert_eq!(&terminate()[..], &[b'X', 0, 0, 0, 4]);
    }
}
