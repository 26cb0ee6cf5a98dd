//! Authentication request messages (backend 'R') and the client's answers (frontend 'p').

use bytes::Bytes;

use super::ProtocolError;
use super::buf::{Frame, Reader};

/// Backend 'R' messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    Ok,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    Sasl {
        mechanisms: Vec<String>,
    },
    SaslContinue(Vec<u8>),
    SaslFinal(Vec<u8>),
    /// Methods the proxy does not speak (Kerberos, GSS, SSPI).
    Other(i32),
}

impl Authentication {
    pub fn encode(&self) -> Bytes {
        let mut f = Frame::new(b'R');
        match self {
            Authentication::Ok => f.i32(0),
            Authentication::CleartextPassword => f.i32(3),
            Authentication::Md5Password { salt } => f.i32(5).bytes(salt),
            Authentication::Sasl { mechanisms } => {
                f.i32(10);
                for m in mechanisms {
                    f.cstr(m);
                }
                f.u8(0)
            }
            Authentication::SaslContinue(d) => f.i32(11).bytes(d),
            Authentication::SaslFinal(d) => f.i32(12).bytes(d),
            Authentication::Other(c) => f.i32(*c),
        };
        f.finish()
    }

    pub fn decode(body: &[u8]) -> Result<Authentication, ProtocolError> {
        let mut r = Reader::new(body, "Authentication");
        Ok(match r.i32()? {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => {
                let s = r.take(4)?;
                Authentication::Md5Password {
                    salt: [s[0], s[1], s[2], s[3]],
                }
            }
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m.to_owned());
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue(r.rest().to_vec()),
            12 => Authentication::SaslFinal(r.rest().to_vec()),
            c => Authentication::Other(c),
        })
    }
}

/// Frontend 'p' PasswordMessage (cleartext or md5 hash, NUL-terminated).
pub fn password(pw: &[u8]) -> Bytes {
    Frame::new(b'p').cbytes(pw).finish()
}

pub fn decode_password(body: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut r = Reader::new(body, "PasswordMessage");
    let p = r.cbytes()?.to_vec();
    r.end()?;
    Ok(p)
}

/// Frontend 'p' SASLInitialResponse.
pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Bytes {
    Frame::new(b'p')
        .cstr(mechanism)
        .i32(data.len() as i32)
        .bytes(data)
        .finish()
}

pub fn decode_sasl_initial_response(body: &[u8]) -> Result<(String, Vec<u8>), ProtocolError> {
    let mut r = Reader::new(body, "SASLInitialResponse");
    let mech = r.cstr()?.to_owned();
    let len = r.i32()?;
    let data = if len < 0 {
        Vec::new()
    } else {
        r.take(len as usize)?.to_vec()
    };
    r.end()?;
    Ok((mech, data))
}

/// Frontend 'p' SASLResponse.
pub fn sasl_response(data: &[u8]) -> Bytes {
    Frame::new(b'p').bytes(data).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_roundtrips() {
        for a in [
            Authentication::Ok,
            Authentication::CleartextPassword,
            Authentication::Md5Password { salt: [1, 2, 3, 4] },
            Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256".into()],
            },
            Authentication::SaslContinue(b"r=abc".to_vec()),
            Authentication::SaslFinal(b"v=xyz".to_vec()),
            Authentication::Other(7),
        ] {
            let f = a.encode();
            assert_eq!(f[0], b'R');
            assert_eq!(Authentication::decode(&f[5..]).unwrap(), a);
        }
    }

    #[test]
    fn password_roundtrips() {
        let f = password(b"md5abc");
        assert_eq!(decode_password(&f[5..]).unwrap(), b"md5abc");
        let f = sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x");
        assert_eq!(
            decode_sasl_initial_response(&f[5..]).unwrap(),
            ("SCRAM-SHA-256".into(), b"n,,n=,r=x".to_vec())
        );
        let f = sasl_response(b"c=biws");
        assert_eq!(&f[5..], b"c=biws");
    }
}
