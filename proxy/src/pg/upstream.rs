//! Connections from Vigil to PostgreSQL: url parsing, startup, authentication (SCRAM, md5,
//! cleartext, trust), and small internal queries (health check, reset, auth_query).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::auth::{md5, scram};
use super::error::UpstreamError;
use super::prepared::ServerStatements;
use super::protocol::auth::{self as pauth, Authentication};
use super::protocol::startup::StartupPacket;
use super::protocol::status::{self, ErrorFields};
use super::protocol::{Decoder, RawMessage, simple};

/// A parsed `postgres://` url.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: String,
}

impl std::fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user.as_deref().unwrap_or(""),
            self.host,
            self.port,
            self.database
        )
    }
}

/// Why a url was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("must start with postgres:// or postgresql://")]
    Scheme,
    #[error("missing host")]
    Host,
    #[error("invalid port")]
    Port,
    #[error("missing database name")]
    Database,
    #[error("invalid percent-encoding")]
    Encoding,
}

fn pct_decode(s: &str) -> Result<String, UrlError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3).ok_or(UrlError::Encoding)?;
            out.push(u8::from_str_radix(h, 16).map_err(|_| UrlError::Encoding)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::Encoding)
}

impl UpstreamUrl {
    pub fn parse(url: &str) -> Result<UpstreamUrl, UrlError> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or(UrlError::Scheme)?;
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let (authority, path) = rest.split_once('/').ok_or(UrlError::Database)?;
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((n, p)) => (Some(pct_decode(n)?), Some(pct_decode(p)?)),
                None => (Some(pct_decode(u)?), None),
            },
        };
        let user = user.filter(|u| !u.is_empty());
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or(UrlError::Host)?;
            (h.to_owned(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::Host);
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| UrlError::Port)?,
            None => 5432,
        };
        let database = pct_decode(path)?;
        if database.is_empty() {
            return Err(UrlError::Database);
        }
        Ok(UpstreamUrl {
            host,
            port,
            user,
            password,
            database,
        })
    }
}

/// Credentials and target for one server connection.
#[derive(Clone)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub connect_timeout: Duration,
}

/// An authenticated server connection.
pub struct ServerConn {
    pub rd: OwnedReadHalf,
    pub wr: OwnedWriteHalf,
    pub dec: Decoder,
    pub addr: SocketAddr,
    /// ParameterStatus values as last reported (plus values Vigil set).
    pub params: Vec<(String, String)>,
    pub backend_pid: i32,
    pub backend_secret: std::sync::Arc<[u8]>,
    pub created: Instant,
    pub last_used: Instant,
    /// Statements prepared on this connection by Vigil.
    pub statements: ServerStatements,
    /// Session state may have been changed (needs `DISCARD ALL` before reuse).
    pub dirty: bool,
    /// Parameters Vigil SET on this connection for some client (RESET for clients that did
    /// not ask for them).
    pub vigil_set: Vec<String>,
    /// Parameters as reported at connect (what `RESET ALL`/`DISCARD ALL` return to).
    pub initial_params: Vec<(String, String)>,
    /// The client parameter set this connection was last aligned with (see
    /// `Session::attach`), while `params` has not changed since: a client with an equal set
    /// needs no comparison. Cleared by every change of `params` other than the alignment.
    pub aligned_for: Option<std::sync::Arc<[(String, String)]>>,
}

async fn read_msg<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    dec: &mut Decoder,
) -> Result<RawMessage, UpstreamError> {
    loop {
        if let Some(m) = dec.decode()? {
            return Ok(m);
        }
        if stream.read_buf(&mut dec.buf).await? == 0 {
            return Err(UpstreamError::Closed);
        }
    }
}

impl ServerConn {
    /// Connect and authenticate, within the connect timeout.
    pub async fn connect(
        p: &ConnectParams,
        max_statements: usize,
    ) -> Result<ServerConn, UpstreamError> {
        match tokio::time::timeout(p.connect_timeout, Self::connect_inner(p, max_statements)).await
        {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    async fn connect_inner(
        p: &ConnectParams,
        max_statements: usize,
    ) -> Result<ServerConn, UpstreamError> {
        let target = format!("{}:{}", p.host, p.port);
        let mut stream =
            TcpStream::connect(&target)
                .await
                .map_err(|source| UpstreamError::Connect {
                    addr: target.clone(),
                    source,
                })?;
        stream.set_nodelay(true)?;
        let addr = stream.peer_addr()?;
        let startup = StartupPacket::Startup {
            major: 3,
            minor: 0,
            params: vec![
                ("user".into(), p.user.clone()),
                ("database".into(), p.database.clone()),
            ],
        };
        stream.write_all(&startup.encode()).await?;
        let mut dec = Decoder::new(1 << 30);
        let mut scram_client: Option<scram::ScramClient> = None;
        let mut params = Vec::new();
        let mut key = (0, Vec::new());
        loop {
            let m = read_msg(&mut stream, &mut dec).await?;
            match m.tag {
                b'R' => {
                    let reply: Option<Bytes> = match Authentication::decode(m.body())? {
                        Authentication::Ok => None,
                        Authentication::CleartextPassword => {
                            Some(pauth::password(need_password(p)?.as_bytes()))
                        }
                        Authentication::Md5Password { salt } => {
                            let r = md5::response(&p.user, need_password(p)?, &salt);
                            Some(pauth::password(r.as_bytes()))
                        }
                        Authentication::Sasl { mechanisms } => {
                            if !mechanisms.iter().any(|m| m == scram::MECHANISM) {
                                return Err(UpstreamError::Auth(
                                    "server offers no SCRAM-SHA-256".into(),
                                ));
                            }
                            let (c, first) = scram::ScramClient::new(need_password(p)?);
                            scram_client = Some(c);
                            Some(pauth::sasl_initial_response(
                                scram::MECHANISM,
                                first.as_bytes(),
                            ))
                        }
                        Authentication::SaslContinue(data) => {
                            let c = scram_client
                                .as_mut()
                                .ok_or_else(|| UpstreamError::Auth("unexpected SASL".into()))?;
                            let fin = c
                                .step(&data)
                                .map_err(|e| UpstreamError::Auth(e.to_string()))?;
                            Some(pauth::sasl_response(fin.as_bytes()))
                        }
                        Authentication::SaslFinal(data) => {
                            let c = scram_client
                                .as_ref()
                                .ok_or_else(|| UpstreamError::Auth("unexpected SASL".into()))?;
                            c.finish(&data)
                                .map_err(|e| UpstreamError::Auth(e.to_string()))?;
                            None
                        }
                        Authentication::Other(code) => {
                            return Err(UpstreamError::Auth(format!(
                                "unsupported authentication method {code}"
                            )));
                        }
                    };
                    if let Some(r) = reply {
                        stream.write_all(&r).await?;
                    }
                }
                b'S' => {
                    let (k, v) = status::decode_parameter_status(m.body())?;
                    set_param(&mut params, k, v);
                }
                b'K' => key = status::decode_backend_key_data(m.body())?,
                b'E' => return Err(UpstreamError::Server(ErrorFields::decode(m.body())?)),
                b'N' | b'v' => {}
                b'Z' => break,
                t => return Err(super::protocol::ProtocolError::Unexpected(t).into()),
            }
        }
        set_param(&mut params, "extra_float_digits".into(), "1".into());
        let now = Instant::now();
        let (rd, wr) = stream.into_split();
        Ok(ServerConn {
            rd,
            wr,
            dec,
            addr,
            params: params.clone(),
            backend_pid: key.0,
            backend_secret: key.1.into(),
            created: now,
            last_used: now,
            statements: ServerStatements::new(max_statements),
            dirty: false,
            vigil_set: Vec::new(),
            initial_params: params,
            aligned_for: None,
        })
    }

    /// After `DISCARD ALL`: every setting is back to its connect-time value.
    pub fn settings_reset(&mut self) {
        self.params = self.initial_params.clone();
        self.aligned_for = None;
        self.vigil_set.clear();
        self.statements.clear();
    }

    /// A ParameterStatus from the server: record it (the alignment must be checked again).
    pub fn note_param(&mut self, k: String, v: String) {
        set_param(&mut self.params, k, v);
        self.aligned_for = None;
    }

    /// Current value of a parameter (case-insensitive name).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Run an internal simple query to completion; returns data rows of the last result, or the
    /// first error. Only for idle connections (nothing else in flight).
    pub async fn run(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
        self.wr.write_all(&simple::query(sql)).await?;
        self.collect().await
    }

    /// Run a one-parameter query with the extended protocol (text format).
    pub async fn run_param(
        &mut self,
        sql: &str,
        param: &str,
    ) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
        use super::protocol::buf::Frame;
        use super::protocol::extended;
        let mut out = bytes::BytesMut::new();
        out.extend_from_slice(
            &extended::Parse {
                name: String::new(),
                query: sql.to_owned(),
                param_types: vec![],
            }
            .encode(),
        );
        out.extend_from_slice(
            &Frame::new(b'B')
                .cstr("")
                .cstr("")
                .i16(0)
                .i16(1)
                .i32(param.len() as i32)
                .bytes(param.as_bytes())
                .i16(0)
                .finish(),
        );
        out.extend_from_slice(
            &extended::Execute {
                portal: "",
                max_rows: 0,
            }
            .encode(),
        );
        out.extend_from_slice(&extended::sync());
        self.wr.write_all(&out).await?;
        self.collect().await
    }

    async fn collect(&mut self) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
        let mut rows = Vec::new();
        let mut err = None;
        loop {
            let m = read_msg(&mut self.rd, &mut self.dec).await?;
            match m.tag {
                b'T' => rows.clear(),
                b'D' => rows.push(
                    simple::decode_data_row(m.body())?
                        .into_iter()
                        .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
                        .collect(),
                ),
                b'E' if err.is_none() => err = Some(ErrorFields::decode(m.body())?),
                b'S' => {
                    let (k, v) = status::decode_parameter_status(m.body())?;
                    self.note_param(k, v);
                }
                b'Z' => break,
                _ => {}
            }
        }
        self.last_used = Instant::now();
        match err {
            Some(e) => Err(UpstreamError::Server(e)),
            None => Ok(rows),
        }
    }

    /// The cheap health check: an empty query.
    pub async fn check(&mut self) -> bool {
        self.run("").await.is_ok()
    }

    /// Tell the server we are leaving (best effort).
    pub async fn terminate(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_millis(100),
            self.wr.write_all(&status::terminate()),
        )
        .await;
    }
}

fn need_password(p: &ConnectParams) -> Result<&str, UpstreamError> {
    p.password.as_deref().ok_or_else(|| {
        UpstreamError::Auth(format!(
            "server asks a password for {:?} and none is configured",
            p.user
        ))
    })
}

pub(crate) fn set_param(params: &mut Vec<(String, String)>, k: String, v: String) {
    if let Some(e) = params.iter_mut().find(|(x, _)| x.eq_ignore_ascii_case(&k)) {
        e.1 = v;
    } else {
        params.push((k, v));
    }
}

/// Send a CancelRequest for a server backend.
pub async fn send_cancel(addr: SocketAddr, pid: i32, secret: &[u8]) -> std::io::Result<()> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let pkt = StartupPacket::Cancel {
        pid,
        secret: secret.to_vec(),
    }
    .encode();
    s.write_all(&pkt).await?;
    // PostgreSQL closes the connection once it has handled the request.
    let mut b = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u =
            UpstreamUrl::parse("postgres://app:p%40ss@db.local:5433/crm?sslmode=disable").unwrap();
        assert_eq!(u.host, "db.local");
        assert_eq!(u.port, 5433);
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.database, "crm");
        let u = UpstreamUrl::parse("postgresql://[::1]/x").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.user), ("::1", 5432, None));
        assert_eq!(UpstreamUrl::parse("mysql://x/y"), Err(UrlError::Scheme));
        assert_eq!(
            UpstreamUrl::parse("postgres://h:1/"),
            Err(UrlError::Database)
        );
        assert_eq!(UpstreamUrl::parse("postgres://h:x/d"), Err(UrlError::Port));
        assert!(
            !format!(
                "{:?}",
                UpstreamUrl::parse("postgres://a:secret@h/d").unwrap()
            )
            .contains("secret")
        );
    }
}
