//! Operations: `/api/pools`, metrics, the statement hook, reload, graceful shutdown, session
//! mode reset, every client and upstream authentication method, TLS.

#[path = "pg/harness.rs"]
mod harness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_proxy::pg::api::PoolStatus;
use vigil_proxy::pg::auth::scram::ScramSecret;
use vigil_proxy::pg::{
    AuthType, PoolMode, QueryProtocol, StatementEvent, StatementHook, TlsConfig, UserConfig,
};
use vigil_testkit::PgServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_pools_and_metrics() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 3)).await;
    let a = p.client().await;
    let b = p.client().await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    b.batch_execute("SET application_name = 'pinned'")
        .await
        .unwrap();
    b.simple_query("SELECT 1/0").await.unwrap_err();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = p.proxy.api_router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let pools: Vec<PoolStatus> = reqwest::get(format!("http://{addr}/api/pools"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pools.len(), 1);
    let st = &pools[0];
    assert_eq!(
        (st.database.as_str(), st.user.as_str(), st.mode.as_str()),
        ("crm", USER, "transaction")
    );
    assert_eq!(st.pool_size, 3);
    assert_eq!(st.clients, 2);
    assert_eq!(st.clients_active, 2, "one in a transaction, one pinned");
    assert_eq!(st.pinned_clients, 1);
    assert_eq!(st.servers_active, 2);
    assert_eq!(st.clients_waiting, 0);
    assert!(st.wait_count >= 2);
    a.batch_execute("COMMIT").await.unwrap();
    let m = p.metrics_text();
    for needle in [
        "vigil_pg_client_connections_total 2",
        "vigil_pg_clients 2",
        "vigil_pg_errors_total{class=\"22\"} 1",
        "vigil_pg_pinned_clients_total{reason=\"set\"} 1",
        "vigil_pg_pool_wait_seconds_bucket{le=\"0.0001\"}",
        "vigil_pg_server_connections_total",
        "vigil_pg_transactions_total",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
}

/// (sql, protocol, rows, command tag, sqlstate)
type Seen = (
    String,
    QueryProtocol,
    Option<u64>,
    Option<String>,
    Option<String>,
);

#[derive(Default)]
struct Recorder(Mutex<Vec<Seen>>, Mutex<Vec<String>>);

impl StatementHook for Recorder {
    fn on_parse(&self, e: &vigil_proxy::pg::ParseEvent<'_>) {
        self.1.lock().unwrap().push(e.sql.to_owned());
    }
    fn on_statement(&self, e: &StatementEvent<'_>) {
        assert_eq!((e.database, e.user), ("crm", USER));
        self.0.lock().unwrap().push((
            e.sql.to_owned(),
            e.protocol,
            e.rows,
            e.command_tag.map(str::to_owned),
            e.sqlstate.map(str::to_owned),
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statement_hook_sees_every_statement() {
    let pg = PgServer::shared();
    let db = database(pg);
    let rec = Arc::new(Recorder::default());
    let p = Proxy::start_with_hook(config(pg, &db.name, 2), Some(rec.clone())).await;
    let c = p.client().await;
    c.batch_execute("CREATE TABLE h (v int); INSERT INTO h VALUES (1), (2); SELECT * FROM h")
        .await
        .unwrap();
    c.simple_query("SELECT * FROM nope").await.unwrap_err();
    let n = c
        .execute("UPDATE h SET v = v + $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(n, 2);
    let ev = rec.0.lock().unwrap().clone();
    let simple: Vec<_> = ev.iter().filter(|e| e.1 == QueryProtocol::Simple).collect();
    assert_eq!(simple[0].0, "CREATE TABLE h (v int)");
    assert_eq!(simple[1].0, "INSERT INTO h VALUES (1), (2)");
    assert_eq!(
        (simple[1].2, simple[1].3.as_deref()),
        (Some(2), Some("INSERT 0 2"))
    );
    assert_eq!(
        (simple[2].0.as_str(), simple[2].2),
        ("SELECT * FROM h", Some(2))
    );
    assert_eq!(
        (simple[3].0.as_str(), simple[3].4.as_deref()),
        ("SELECT * FROM nope", Some("42P01"))
    );
    let ext: Vec<_> = ev
        .iter()
        .filter(|e| e.1 == QueryProtocol::Extended)
        .collect();
    assert_eq!(ext.len(), 1);
    assert_eq!(
        (ext[0].0.as_str(), ext[0].2),
        ("UPDATE h SET v = v + $1", Some(2))
    );
    assert!(
        rec.1
            .lock()
            .unwrap()
            .contains(&"UPDATE h SET v = v + $1".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_grows_the_pool_without_dropping_clients() {
    let pg = PgServer::shared();
    let db = database(pg);
    let mut cfg = config(pg, &db.name, 1);
    cfg.pool_timeout = 500;
    let p = Proxy::start(cfg.clone()).await;
    let a = p.client().await;
    let b = p.client().await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    assert_eq!(
        b.simple_query("SELECT 1")
            .await
            .unwrap_err()
            .code()
            .unwrap()
            .code(),
        "53300"
    );
    cfg.pool_size = 2;
    p.proxy.reload(cfg.clone()).unwrap();
    b.batch_execute("BEGIN; SELECT 1").await.unwrap();
    a.batch_execute("COMMIT").await.unwrap();
    b.batch_execute("COMMIT").await.unwrap();
    assert_eq!(p.proxy.pools_status()[0].pool_size, 2);
    // Shrinking back: two transactions can no longer run at once.
    cfg.pool_size = 1;
    p.proxy.reload(cfg.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    assert_eq!(
        b.simple_query("SELECT 1")
            .await
            .unwrap_err()
            .code()
            .unwrap()
            .code(),
        "53300"
    );
    a.batch_execute("COMMIT").await.unwrap();
    b.simple_query("SELECT 1").await.unwrap();
    // A bad config is refused and the running one kept.
    cfg.pool_size = 0;
    assert!(
        p.proxy
            .reload(cfg)
            .unwrap_err()
            .to_string()
            .contains("pool_size")
    );
    assert_eq!(p.proxy.config().pool_size, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_lets_transactions_finish() {
    let pg = PgServer::shared();
    let db = database(pg);
    let mut p = Proxy::start(config(pg, &db.name, 2)).await;
    let c = p.client().await;
    c.batch_execute("CREATE TABLE g (v int); BEGIN; INSERT INTO g VALUES (1)")
        .await
        .unwrap();
    let idle = p.client().await;
    let stop = p.stop.take().unwrap();
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!p.proxy.ready());
    assert!(
        tokio::net::TcpStream::connect(p.addr).await.is_err(),
        "still accepting"
    );
    // The open transaction can still finish.
    c.batch_execute("INSERT INTO g VALUES (2); COMMIT")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), p.task.take().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(idle.simple_query("SELECT 1").await.is_err());
    let d = connect(&direct_conn_str(pg, &db.name)).await;
    let n: i64 = d
        .query_one("SELECT count(*) FROM g", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_mode_resets_servers_between_clients() {
    let pg = PgServer::shared();
    let db = database(pg);
    let mut cfg = config(pg, &db.name, 1);
    cfg.databases[0].pool_mode = Some(PoolMode::Session);
    let p = Proxy::start(cfg).await;
    let a = p.client().await;
    a.batch_execute("SET search_path TO pg_catalog; PREPARE q AS SELECT 1")
        .await
        .unwrap();
    let pid: i32 = a
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = p.client().await;
    let pid2: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid, pid2, "the server was reused");
    let sp: String = b.query_one("SHOW search_path", &[]).await.unwrap().get(0);
    assert_eq!(sp, "\"$user\", public");
    b.batch_execute("PREPARE q AS SELECT 2").await.unwrap();
    assert_eq!(p.proxy.pools_status()[0].mode, "session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_auth_methods() {
    let pg = PgServer::shared();
    let db = database(pg);
    // SCRAM secret in the config.
    let mut cfg = config(pg, &db.name, 1);
    cfg.users = vec![UserConfig {
        name: USER.into(),
        password: None,
        scram_secret: Some(ScramSecret::from_password("from-secret").encode()),
    }];
    let p = Proxy::start(cfg.clone()).await;
    let ok = format!(
        "host=127.0.0.1 port={} user={USER} password=from-secret dbname=crm",
        p.addr.port()
    );
    connect(&ok).await.simple_query("SELECT 1").await.unwrap();
    let bad = ok.replace("from-secret", "nope");
    let e = tokio_postgres::connect(&bad, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code().unwrap().code(), "28P01");
    // md5.
    let mut cfg = config(pg, &db.name, 1);
    cfg.auth_type = AuthType::Md5;
    let p = Proxy::start(cfg).await;
    p.client().await.simple_query("SELECT 1").await.unwrap();
    let e = tokio_postgres::connect(&p.conn_str().replace(USER_PW, "bad"), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code().unwrap().code(), "28P01");
    // trust.
    let mut cfg = config(pg, &db.name, 1);
    cfg.auth_type = AuthType::Trust;
    let p = Proxy::start(cfg).await;
    connect(&p.conn_str().replace(USER_PW, "anything"))
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
    // auth_query: the user is looked up upstream (as the url's user) and verified against its
    // SCRAM secret; nothing about the user in Vigil's config.
    let mut cfg = config(pg, &db.name, 1);
    cfg.users.clear();
    cfg.databases[0].url = pg.url(&db.name);
    cfg.auth_query =
        Some("SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1".into());
    let p = Proxy::start(cfg).await;
    let cs = format!(
        "host=127.0.0.1 port={} user={ROLE} password={ROLE_PW} dbname=crm",
        p.addr.port()
    );
    connect(&cs).await.simple_query("SELECT 1").await.unwrap();
    let e = tokio_postgres::connect(&cs.replace(ROLE_PW, "wrong"), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code().unwrap().code(), "28P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_auth_methods() {
    let pg = PgServer::shared();
    let db = database(pg);
    pg.psql(
        "postgres",
        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vigil_clear') THEN \
         CREATE ROLE vigil_clear LOGIN PASSWORD 'clear-pw' IN ROLE vigil_password; END IF; \
         IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vigil_md5') THEN \
         SET LOCAL password_encryption = 'md5'; CREATE ROLE vigil_md5 LOGIN PASSWORD 'md5-pw'; END IF; END$$",
    )
    .unwrap();
    for (url, who) in [
        (
            format!(
                "postgres://vigil_clear:clear-pw@127.0.0.1:{}/{}",
                pg.port(),
                db.name
            ),
            "vigil_clear",
        ),
        (
            format!(
                "postgres://vigil_md5:md5-pw@127.0.0.1:{}/{}",
                pg.port(),
                db.name
            ),
            "vigil_md5",
        ),
        (pg.url(&db.name), "postgres"),
        (upstream_url(pg, &db.name), ROLE),
    ] {
        let mut cfg = config(pg, &db.name, 1);
        cfg.databases[0].url = url;
        let p = Proxy::start(cfg).await;
        let c = p.client().await;
        let u: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(u, who);
    }
    // Wrong upstream password: the client is told, nothing hangs.
    let mut cfg = config(pg, &db.name, 1);
    cfg.databases[0].url = format!(
        "postgres://{ROLE}:wrong@127.0.0.1:{}/{}",
        pg.port(),
        db.name
    );
    let p = Proxy::start(cfg).await;
    let e = tokio_postgres::connect(&p.conn_str(), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code().unwrap().code(), "28P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_when_configured() {
    let pg = PgServer::shared();
    let db = database(pg);
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("vigil-pg-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let mut cfg = config(pg, &db.name, 1);
    cfg.tls = Some(TlsConfig {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    });
    let p = Proxy::start(cfg).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tcp = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    tcp.write_all(&vigil_proxy::pg::protocol::startup::StartupPacket::SslRequest.encode())
        .await
        .unwrap();
    let mut b = [0u8; 1];
    tcp.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"S");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let startup = vigil_proxy::pg::protocol::startup::StartupPacket::Startup {
        major: 3,
        minor: 0,
        params: vec![
            ("user".into(), USER.into()),
            ("database".into(), "crm".into()),
        ],
    };
    tls.write_all(&startup.encode()).await.unwrap();
    let mut hdr = [0u8; 9];
    tls.read_exact(&mut hdr).await.unwrap();
    assert_eq!(hdr[0], b'R');
    assert_eq!(
        i32::from_be_bytes([hdr[5], hdr[6], hdr[7], hdr[8]]),
        10,
        "AuthenticationSASL over TLS"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn startup_options_apply_per_client_on_shared_servers() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 1)).await;
    let with = connect(&format!(
        "{} options='-c statement_timeout=1234 -c search_path=pg_catalog'",
        p.conn_str()
    ))
    .await;
    let without = p.client().await;
    for _ in 0..3 {
        let t: String = with
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(t, "1234ms");
        let sp: String = with
            .query_one("SHOW search_path", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sp, "pg_catalog");
        let t: String = without
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(t, "0");
        let sp: String = without
            .query_one("SHOW search_path", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sp, "\"$user\", public");
    }
    // Both shared one server, and neither was pinned.
    let st = &p.proxy.pools_status()[0];
    assert_eq!(st.pinned_clients, 0);
    assert!(st.servers_active + st.servers_idle <= 1);
}
