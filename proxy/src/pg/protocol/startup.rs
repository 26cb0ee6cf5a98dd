//! Startup-phase packets (untagged) and NegotiateProtocolVersion.

use bytes::Bytes;

use super::ProtocolError;
use super::buf::{Frame, Reader};

pub const SSL_REQUEST: i32 = 80877103;
pub const GSSENC_REQUEST: i32 = 80877104;
pub const CANCEL_REQUEST: i32 = 80877102;
/// Protocol 3.0.
pub const PROTOCOL_3_0: i32 = 196608;

/// What a client opens with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Startup {
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    },
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        secret: Vec<u8>,
    },
}

impl StartupPacket {
    /// Decode an untagged packet body (after the length).
    pub fn decode(body: &[u8]) -> Result<StartupPacket, ProtocolError> {
        let mut r = Reader::new(body, "startup");
        let code = r.i32()?;
        match code {
            SSL_REQUEST => {
                r.end()?;
                Ok(StartupPacket::SslRequest)
            }
            GSSENC_REQUEST => {
                r.end()?;
                Ok(StartupPacket::GssEncRequest)
            }
            CANCEL_REQUEST => {
                let pid = r.i32()?;
                let secret = r.rest().to_vec();
                if secret.is_empty() || secret.len() > 256 {
                    return Err(ProtocolError::malformed("CancelRequest"));
                }
                Ok(StartupPacket::Cancel { pid, secret })
            }
            _ => {
                let major = (code >> 16) as u16;
                let minor = (code & 0xffff) as u16;
                if major != 3 {
                    return Err(ProtocolError::malformed("startup (unsupported protocol)"));
                }
                let mut params = Vec::new();
                loop {
                    let k = r.cstr()?;
                    if k.is_empty() {
                        break;
                    }
                    let v = r.cstr()?;
                    params.push((k.to_owned(), v.to_owned()));
                }
                r.end()?;
                Ok(StartupPacket::Startup {
                    major,
                    minor,
                    params,
                })
            }
        }
    }

    /// Encode as a complete packet (with length).
    pub fn encode(&self) -> Bytes {
        let mut f = Frame::new(0);
        match self {
            StartupPacket::SslRequest => f.i32(SSL_REQUEST),
            StartupPacket::GssEncRequest => f.i32(GSSENC_REQUEST),
            StartupPacket::Cancel { pid, secret } => f.i32(CANCEL_REQUEST).i32(*pid).bytes(secret),
            StartupPacket::Startup {
                major,
                minor,
                params,
            } => {
                f.i32(((*major as i32) << 16) | *minor as i32);
                for (k, v) in params {
                    f.cstr(k).cstr(v);
                }
                f.u8(0)
            }
        };
        f.finish()
    }
}

/// NegotiateProtocolVersion ('v'): newest supported minor version and unrecognized options.
pub fn negotiate_protocol_version(newest_minor: i32, unsupported: &[String]) -> Bytes {
    let mut f = Frame::new(b'v');
    f.i32(newest_minor).i32(unsupported.len() as i32);
    for o in unsupported {
        f.cstr(o);
    }
    f.finish()
}

/// Decode a NegotiateProtocolVersion body.
pub fn decode_negotiate(body: &[u8]) -> Result<(i32, Vec<String>), ProtocolError> {
    let mut r = Reader::new(body, "NegotiateProtocolVersion");
    let minor = r.i32()?;
    let n = r.i32()?;
    let mut opts = Vec::new();
    for _ in 0..n.max(0) {
        opts.push(r.cstr()?.to_owned());
    }
    r.end()?;
    Ok((minor, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(p: StartupPacket) {
        let bytes = p.encode();
        let len = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        assert_eq!(len, bytes.len());
        assert_eq!(StartupPacket::decode(&bytes[4..]).unwrap(), p);
    }

    #[test]
    fn startup_roundtrips() {
        roundtrip(StartupPacket::SslRequest);
        roundtrip(StartupPacket::GssEncRequest);
        roundtrip(StartupPacket::Cancel {
            pid: 42,
            secret: vec![1, 2, 3, 4],
        });
        roundtrip(StartupPacket::Startup {
            major: 3,
            minor: 0,
            params: vec![
                ("user".into(), "app".into()),
                ("database".into(), "crm".into()),
                ("_pq_.x".into(), "1".into()),
            ],
        });
    }

    #[test]
    fn negotiate_roundtrip() {
        let f = negotiate_protocol_version(0, &["_pq_.a".into()]);
        assert_eq!(f[0], b'v');
        assert_eq!(
            decode_negotiate(&f[5..]).unwrap(),
            (0, vec!["_pq_.a".into()])
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(StartupPacket::decode(&[0, 1, 0, 0, b'u']).is_err());
        assert!(StartupPacket::decode(&[0, 9, 0, 0]).is_err());
    }
}
