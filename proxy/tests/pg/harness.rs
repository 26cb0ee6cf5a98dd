//! Shared helpers for the pg proxy tests: a proxy in front of the testkit cluster, SCRAM roles,
//! a raw-protocol transcript client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use vigil_proxy::pg::protocol::status::ErrorFields;
use vigil_proxy::pg::protocol::{RawMessage, simple};
use vigil_proxy::pg::upstream::{ConnectParams, ServerConn};
use vigil_proxy::pg::{DatabaseConfig, PgConfig, PgProxy, StatementHook, UserConfig};
use vigil_testkit::{PgServer, TestDb};

/// Upstream role (SCRAM secret on the cluster) and its password.
pub const ROLE: &str = "vigil_app";
pub const ROLE_PW: &str = "upstream-pw";
/// The user clients log in to Vigil as.
pub const USER: &str = "app";
pub const USER_PW: &str = "client-pw";

/// Create the upstream SCRAM role once per cluster.
pub fn ensure_role(pg: &PgServer) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| create_role(pg));
}

pub fn create_role(pg: &PgServer) {
    pg.psql(
        "postgres",
        &format!(
            "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN \
             CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PW}'; END IF; END$$"
        ),
    )
    .unwrap();
}

/// A fresh database owned by the SCRAM role.
pub fn database(pg: &PgServer) -> TestDb {
    ensure_role(pg);
    let db = pg.create_database().unwrap();
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE \"{}\" OWNER TO {ROLE}", db.name),
    )
    .unwrap();
    db
}

pub fn upstream_url(pg: &PgServer, db: &str) -> String {
    format!("postgres://{ROLE}:{ROLE_PW}@127.0.0.1:{}/{db}", pg.port())
}

/// A config exposing `db` as database `crm` for user `app`.
pub fn config(pg: &PgServer, db: &str, pool_size: usize) -> PgConfig {
    PgConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        pool_size,
        pool_timeout: 10_000,
        databases: vec![DatabaseConfig {
            name: "crm".into(),
            url: upstream_url(pg, db),
            ..Default::default()
        }],
        users: vec![UserConfig {
            name: USER.into(),
            password: Some(USER_PW.into()),
            scram_secret: None,
        }],
        ..PgConfig::default()
    }
}

/// A running proxy; shuts down when dropped.
pub struct Proxy {
    pub proxy: Arc<PgProxy>,
    pub addr: SocketAddr,
    pub registry: Registry,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(cfg: PgConfig) -> Proxy {
        Self::start_with_hook(cfg, None).await
    }

    pub async fn start_with_hook(cfg: PgConfig, hook: Option<Arc<dyn StatementHook>>) -> Proxy {
        let mut registry = Registry::default();
        let proxy = PgProxy::new(cfg, &mut registry, hook).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let p = proxy.clone();
        let task = tokio::spawn(async move {
            p.run(listener, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Proxy {
            proxy,
            addr,
            registry,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={USER_PW} dbname=crm",
            self.addr.port()
        )
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.conn_str()).await
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    pub fn metrics_text(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry).unwrap();
        s
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn direct_conn_str(pg: &PgServer, db: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={ROLE} password={ROLE_PW} dbname={db}",
        pg.port()
    )
}

pub async fn connect(s: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(s, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {s}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A raw protocol connection (for transcripts), to the cluster or to Vigil.
pub async fn raw(host_port: (String, u16), user: &str, password: &str, db: &str) -> ServerConn {
    ServerConn::connect(
        &ConnectParams {
            host: host_port.0,
            port: host_port.1,
            user: user.into(),
            password: Some(password.into()),
            database: db.into(),
            connect_timeout: std::time::Duration::from_secs(5),
        },
        16,
    )
    .await
    .unwrap()
}

pub async fn read(conn: &mut ServerConn) -> RawMessage {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(m) = conn.dec.decode().unwrap() {
            return m;
        }
        let n = conn.rd.read_buf(&mut conn.dec.buf).await.unwrap();
        assert!(n > 0, "connection closed");
    }
}

/// Send raw frames and return a normalized transcript of everything up to `syncs`
/// ReadyForQuery messages.
pub async fn transcript(
    conn: &mut ServerConn,
    frames: &[bytes::Bytes],
    syncs: usize,
) -> Vec<String> {
    for f in frames {
        conn.wr.write_all(f).await.unwrap();
    }
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < syncs {
        let m = read(conn).await;
        out.push(describe(&m));
        if m.tag == b'Z' {
            seen += 1;
        }
    }
    out
}

pub fn describe(m: &RawMessage) -> String {
    match m.tag {
        b'T' => {
            let f = simple::decode_row_description(m.body()).unwrap();
            let cols: Vec<String> = f
                .iter()
                .map(|c| {
                    // Types created by the test get different OIDs in each database.
                    let oid = if c.type_oid >= 16384 {
                        "user".to_owned()
                    } else {
                        c.type_oid.to_string()
                    };
                    format!("{}:{}:{}:{}", c.name, oid, c.type_size, c.format)
                })
                .collect();
            format!("T {}", cols.join(","))
        }
        b'D' => {
            let v = simple::decode_data_row(m.body()).unwrap();
            let cols: Vec<String> = v
                .iter()
                .map(|c| match c {
                    None => "NULL".into(),
                    Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
                })
                .collect();
            format!("D {}", cols.join("|"))
        }
        b'C' => format!("C {}", simple::decode_command_complete(m.body()).unwrap()),
        b'E' | b'N' => {
            let e = ErrorFields::decode(m.body()).unwrap();
            format!(
                "{} {} {} {}",
                m.tag as char,
                e.get(b'S').unwrap_or(""),
                e.code(),
                e.message()
            )
        }
        b'Z' => format!("Z {}", m.body()[0] as char),
        b'S' => {
            let (k, _) =
                vigil_proxy::pg::protocol::status::decode_parameter_status(m.body()).unwrap();
            format!("S {k}")
        }
        t => format!("{}", t as char),
    }
}
