//! A new client connection: startup packet (SSLRequest/GSSENCRequest/CancelRequest), protocol
//! negotiation, authentication, pool lookup, then the session.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::client::{AuthFailure, authenticate};
use super::auth::{Credential, scram::ScramSecret};
use super::client::ClientStream;
use super::config::AuthType;
use super::pool::AcquireError;
use super::prepared::ClientStatements;
use super::protocol::startup::{StartupPacket, negotiate_protocol_version};
use super::protocol::{Decoder, ProtocolError, RawMessage, simple, status};
use super::session::{ClientShared, Session, TRACKED};
use super::upstream::{ConnectParams, ServerConn, UpstreamUrl};
use super::{ClientIo, Inner};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

async fn read_startup<S: ClientIo + ?Sized>(
    io: &mut S,
    dec: &mut Decoder,
) -> Result<RawMessage, ProtocolError> {
    loop {
        if let Some(m) = dec.decode_startup()? {
            return Ok(m);
        }
        match io.read_buf(&mut dec.buf).await {
            Ok(0) | Err(_) => return Err(ProtocolError::malformed("startup (connection closed)")),
            Ok(_) => {}
        }
    }
}

async fn fail<S: ClientIo + ?Sized>(inner: &Inner, io: &mut S, code: &str, msg: &str) {
    inner.metrics.error(code.as_bytes());
    let _ = io.write_all(&status::fatal(code, msg)).await;
    let _ = io.flush().await;
}

/// Serve one accepted TCP connection to the end.
///
/// The handshake (TLS, startup, authentication) runs in its own boxed future, freed once the
/// client is in: an idle session's task holds only the session loop's state.
pub(crate) async fn serve(inner: Arc<Inner>, tcp: TcpStream) {
    let mut session = None;
    Box::pin(handshake(inner, tcp, &mut session)).await;
    if let Some(s) = session {
        let _ = s.run().await;
    }
}

/// Startup and login; on success the session is left in `ready`.
async fn handshake(inner: Arc<Inner>, tcp: TcpStream, ready: &mut Option<Session>) {
    let _ = tcp.set_nodelay(true);
    let mut tcp = tcp;
    let mut dec = Decoder::new(inner.config().max_message_size);
    // Phase 1 on plain TCP: SSLRequest / GSSENCRequest / CancelRequest / StartupMessage.
    loop {
        let pkt =
            match tokio::time::timeout(STARTUP_TIMEOUT, read_startup(&mut tcp, &mut dec)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    fail(
                        &inner,
                        &mut tcp,
                        "08P01",
                        &format!("invalid startup packet: {e}"),
                    )
                    .await;
                    return;
                }
                Err(_) => return,
            };
        match StartupPacket::decode(pkt.body()) {
            Err(e) => {
                fail(
                    &inner,
                    &mut tcp,
                    "08P01",
                    &format!("invalid startup packet: {e}"),
                )
                .await;
                return;
            }
            Ok(StartupPacket::SslRequest) => {
                let acceptor = inner.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
                match acceptor {
                    Some(acc) => {
                        if dec.pending() > 0 {
                            // Bytes sent before the handshake could be injected: refuse.
                            fail(
                                &inner,
                                &mut tcp,
                                "08P01",
                                "unencrypted data after SSL request",
                            )
                            .await;
                            return;
                        }
                        if tcp.write_all(b"S").await.is_err() {
                            return;
                        }
                        match acc.accept(tcp).await {
                            Ok(tls) => {
                                let mut tls = ClientStream::Tls(Box::new(tls));
                                let pkt = match tokio::time::timeout(
                                    STARTUP_TIMEOUT,
                                    read_startup(&mut tls, &mut dec),
                                )
                                .await
                                {
                                    Ok(Ok(p)) => p,
                                    _ => return,
                                };
                                match StartupPacket::decode(pkt.body()) {
                                    Ok(StartupPacket::Startup { minor, params, .. }) => {
                                        login(inner, tls, true, dec, minor, params, ready).await;
                                    }
                                    _ => {
                                        fail(&inner, &mut tls, "08P01", "invalid startup packet")
                                            .await;
                                    }
                                }
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    None => {
                        if tcp.write_all(b"N").await.is_err() {
                            return;
                        }
                    }
                }
            }
            Ok(StartupPacket::GssEncRequest) => {
                if tcp.write_all(b"N").await.is_err() {
                    return;
                }
            }
            Ok(StartupPacket::Cancel { pid, secret }) => {
                inner.cancel(pid, &secret).await;
                return;
            }
            Ok(StartupPacket::Startup { minor, params, .. }) => {
                login(
                    inner,
                    ClientStream::Tcp(tcp),
                    false,
                    dec,
                    minor,
                    params,
                    ready,
                )
                .await;
                return;
            }
        }
    }
}

async fn login(
    inner: Arc<Inner>,
    mut io: ClientStream,
    tls: bool,
    mut dec: Decoder,
    minor: u16,
    params: Vec<(String, String)>,
    ready: &mut Option<Session>,
) {
    let cfg = inner.config();
    let get = |k: &str| params.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let Some(user) = get("user").filter(|u| !u.is_empty()) else {
        fail(
            &inner,
            &mut io,
            "28000",
            "no PostgreSQL user name specified in startup packet",
        )
        .await;
        return;
    };
    let database = get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    let unsupported: Vec<String> = params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if (minor > 0 || !unsupported.is_empty())
        && io
            .write_all(&negotiate_protocol_version(0, &unsupported))
            .await
            .is_err()
    {
        return;
    }
    if inner.clients.load(Ordering::Relaxed) >= cfg.max_clients {
        fail(&inner, &mut io, "53300", "sorry, too many clients already").await;
        return;
    }
    let Some(db) = cfg.database(&database).cloned() else {
        fail(
            &inner,
            &mut io,
            "3D000",
            &format!("database \"{database}\" does not exist"),
        )
        .await;
        return;
    };
    let url = match UpstreamUrl::parse(&db.url) {
        Ok(u) => u,
        Err(_) => {
            fail(&inner, &mut io, "08006", "Vigil: invalid upstream url").await;
            return;
        }
    };
    // Credentials: configured user, else auth_query, else none.
    let configured = cfg.user(&user).cloned();
    let cred = match &configured {
        Some(u) => match (&u.password, &u.scram_secret) {
            (Some(p), _) if cfg.auth_type == AuthType::Md5 => Some(Credential::Plain(p.clone())),
            (Some(p), _) => Some(Credential::Scram(inner.scram_for(&user, p))),
            (None, Some(s)) => ScramSecret::parse(s).map(Credential::Scram),
            (None, None) => None,
        },
        None => match (&cfg.auth_query, cfg.auth_type) {
            (Some(q), t) if t != AuthType::Trust => auth_query(&inner, &url, q, &user).await,
            _ => None,
        },
    };
    match authenticate(&mut io, &mut dec, cfg.auth_type, &user, cred).await {
        Ok(()) => {}
        Err(AuthFailure::Rejected) => {
            inner.metrics.auth_failures.inc();
            fail(
                &inner,
                &mut io,
                "28P01",
                &format!("password authentication failed for user \"{user}\""),
            )
            .await;
            return;
        }
        Err(_) => return,
    }
    let server_user = url.user.clone().unwrap_or_else(|| user.clone());
    let password = url
        .password
        .clone()
        .or_else(|| configured.as_ref().and_then(|u| u.password.clone()));
    let connect = ConnectParams {
        host: url.host.clone(),
        port: url.port,
        user: server_user,
        password,
        database: url.database.clone(),
        connect_timeout: super::config::PgConfig::ms(cfg.connect_timeout),
    };
    let pool = inner.pool_for(&db, &user, connect);
    if let Err(e) = pool.warm().await {
        let (code, msg) = match &e {
            AcquireError::Timeout(_) => ("53300".to_owned(), format!("Vigil: {e}")),
            AcquireError::Upstream(u) => (
                u.sqlstate(),
                format!("Vigil: cannot reach the database server: {u}"),
            ),
        };
        fail(&inner, &mut io, &code, &msg).await;
        return;
    }
    let template = pool.template().unwrap_or_default();
    // What the client asked for, or the server default, for the tracked parameters.
    let mut wanted = Vec::new();
    for k in TRACKED {
        let v = params
            .iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
            .or_else(|| {
                template
                    .iter()
                    .find(|(x, _)| x.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            });
        if let Some(v) = v {
            wanted.push((k.to_owned(), v));
        }
    }
    // `options=-c name=value` startup settings are kept per client like the tracked ones.
    if let Some(opts) = get("options") {
        for (k, v) in parse_options(&opts) {
            match wanted.iter_mut().find(|(w, _)| w.eq_ignore_ascii_case(&k)) {
                Some(e) => e.1 = v,
                None => wanted.push((k, v)),
            }
        }
    }
    let mut out = BytesMut::new();
    for (k, v) in &template {
        if k == "extra_float_digits" {
            continue;
        }
        let v = wanted
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
            .unwrap_or(v);
        out.extend_from_slice(&status::parameter_status(k, v));
    }
    let shared = Arc::new(ClientShared::default());
    let (pid, secret) = inner.register_cancel(shared.clone());
    out.extend_from_slice(&status::backend_key_data(pid, &secret));
    out.extend_from_slice(&simple::ready_for_query(b'I'));
    if io.write_all(&out).await.is_err() || io.flush().await.is_err() {
        inner.unregister_cancel(pid);
        return;
    }
    dec.set_max(cfg.max_message_size);
    inner.clients.fetch_add(1, Ordering::Relaxed);
    inner.metrics.clients.inc();
    pool.stats.clients.fetch_add(1, Ordering::Relaxed);
    let mode = pool.mode();
    let (crd, cwr) = io.into_split();
    let session = Session {
        inner: inner.clone(),
        pool: pool.clone(),
        mode,
        database,
        user,
        crd,
        cwr,
        cin: dec,
        cout: BytesMut::new(),
        sout: BytesMut::new(),
        server: None,
        pending: Default::default(),
        statements: ClientStatements::default(),
        pinned: None,
        shared,
        wanted: pool.param_set(wanted),
        unsynced: false,
        skip_until_sync: false,
        copy_in: false,
        tx_status: b'I',
        last_wait: Duration::ZERO,
        unnamed_sql: None,
        portals: Default::default(),
        client_flush: false,
        buffered_writer: tls,
        closing: false,
        cancel_pid: pid,
        failed_names: Default::default(),
        cache: None,
    };
    *ready = Some(session);
}

/// Look a user up with `auth_query`, connected as the database url's user.
async fn auth_query(
    inner: &Inner,
    url: &UpstreamUrl,
    query: &str,
    user: &str,
) -> Option<Credential> {
    let cfg = inner.config();
    let params = ConnectParams {
        host: url.host.clone(),
        port: url.port,
        user: url.user.clone()?,
        password: url.password.clone(),
        database: url.database.clone(),
        connect_timeout: super::config::PgConfig::ms(cfg.connect_timeout),
    };
    let mut conn = ServerConn::connect(&params, 1).await.ok()?;
    let rows = conn.run_param(query, user).await.ok();
    conn.terminate().await;
    let row = rows?.into_iter().next()?;
    let passwd = row.get(1)?.clone()?;
    Credential::from_stored(&passwd)
}

/// `-c name=value`, `-cname=value` and `--name=value` settings of the `options` startup
/// parameter (backslash escapes a space). Names are limited to identifier characters.
pub(crate) fn parse_options(s: &str) -> Vec<(String, String)> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for ch in s.chars() {
        if esc {
            cur.push(ch);
            esc = false;
        } else if ch == '\\' {
            esc = true;
        } else if ch.is_whitespace() {
            if !cur.is_empty() {
                args.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(ch);
        }
    }
    if !cur.is_empty() {
        args.push(cur);
    }
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let kv = if a == "-c" {
            it.next()
        } else if let Some(r) = a.strip_prefix("--") {
            Some(r.to_owned())
        } else {
            a.strip_prefix("-c").map(str::to_owned)
        };
        let Some(kv) = kv else { continue };
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let k = k.replace('-', "_");
        if !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            out.push((k, v.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_options;

    #[test]
    fn parses_startup_options() {
        assert_eq!(
            parse_options(
                "-c statement_timeout=5s --search-path=a,b -cwork_mem=64MB -c x;drop=1 -c app=a\\ b"
            ),
            vec![
                ("statement_timeout".into(), "5s".into()),
                ("search_path".into(), "a,b".into()),
                ("work_mem".into(), "64MB".into()),
                ("app".into(), "a b".into()),
            ]
        );
    }
}
