//! Faults: PostgreSQL restarted under load, wrong passwords, malformed and oversized messages,
//! clients vanishing mid-transaction, an exhausted pool.

#[path = "pg/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_testkit::PgServer;

async fn read_error(s: &mut tokio::net::TcpStream) -> (String, bool) {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .is_ok();
    assert_eq!(
        buf.first(),
        Some(&b'E'),
        "expected an ErrorResponse, got {buf:?}"
    );
    let e = vigil_proxy::pg::protocol::status::ErrorFields::decode(&buf[5..]).unwrap();
    (e.code().to_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_mid_load() {
    let pg = PgServer::start_new().unwrap();
    create_role(&pg);
    let db = pg.create_database().unwrap();
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE \"{}\" OWNER TO {ROLE}", db.name),
    )
    .unwrap();
    let mut cfg = config(&pg, &db.name, 4);
    cfg.pool_timeout = 2_000;
    cfg.connect_timeout = 1_000;
    let p = Proxy::start(cfg).await;
    let setup = p.client().await;
    setup
        .batch_execute("CREATE TABLE t (id serial, v int)")
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    let successes: Vec<_> = (0..8)
        .map(|_| std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0)))
        .collect();
    for counter in successes.clone() {
        let cs = p.conn_str();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let c = connect(&cs).await;
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Never hangs: every query answers (error or not) well within the timeout.
                match tokio::time::timeout(
                    Duration::from_secs(15),
                    c.execute("INSERT INTO t (v) VALUES (1)", &[]),
                )
                .await
                {
                    Ok(Ok(_)) => {
                        ok += 1;
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        failed.push(
                            e.code()
                                .map(|c| c.code().to_owned())
                                .unwrap_or_else(|| e.to_string()),
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(_) => panic!("query hung through an upstream restart"),
                }
            }
            (ok, failed, c)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start().unwrap();
    let back = Instant::now();
    // A fresh transaction succeeds soon after PostgreSQL is back, without restarting Vigil.
    let c = p.client().await;
    loop {
        match c.execute("INSERT INTO t (v) VALUES (2)", &[]).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    back.elapsed() < Duration::from_secs(2),
                    "still failing 2 s after restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Every worker gets through again (liveness, generous bound).
    let marks: Vec<u32> = successes
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while successes
        .iter()
        .zip(&marks)
        .any(|(c, m)| c.load(std::sync::atomic::Ordering::Relaxed) <= *m)
    {
        assert!(Instant::now() < deadline, "a worker never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let (ok, failed, c) = w.await.unwrap();
        assert!(ok > 0);
        for code in &failed {
            assert!(
                code.starts_with("08") || code == "57P01" || code == "57P03",
                "unexpected error during restart: {code}"
            );
        }
        // The same client connections keep working.
        c.execute("INSERT INTO t (v) VALUES (3)", &[])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_password_gets_28p01() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 2)).await;
    for cs in [
        format!(
            "host=127.0.0.1 port={} user={USER} password=wrong dbname=crm",
            p.addr.port()
        ),
        format!(
            "host=127.0.0.1 port={} user=nobody password=x dbname=crm",
            p.addr.port()
        ),
    ] {
        let err = tokio_postgres::connect(&cs, tokio_postgres::NoTls)
            .await
            .err()
            .unwrap();
        assert_eq!(err.code().unwrap().code(), "28P01", "{err}");
    }
    assert!(p.metrics_text().contains("vigil_pg_auth_failures_total 2"));
    // No server connection was opened for the failed logins.
    assert!(p.proxy.pools_status().is_empty());
    // The right password still works.
    p.client().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_startup_and_oversized_messages_close_only_that_client() {
    let pg = PgServer::shared();
    let db = database(pg);
    let mut cfg = config(pg, &db.name, 2);
    cfg.max_message_size = 4096;
    let p = Proxy::start(cfg).await;
    let healthy = p.client().await;
    // Garbage length.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4])
        .await
        .unwrap();
    let (code, closed) = read_error(&mut s).await;
    assert_eq!((code.as_str(), closed), ("08P01", true));
    // Unsupported protocol version.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0, 2, 0, 0]).await.unwrap();
    let (code, _) = read_error(&mut s).await;
    assert_eq!(code, "08P01");
    // Startup parameters without their terminator.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 13, 0, 3, 0, 0, b'u', b's', b'e', b'r', 0])
        .await
        .unwrap();
    let (code, _) = read_error(&mut s).await;
    assert_eq!(code, "08P01");
    // An oversized query from a logged-in client.
    let (victim, conn) = tokio_postgres::connect(&p.conn_str(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let big = format!("SELECT '{}'", "x".repeat(10_000));
    let err = victim.simple_query(&big).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("08P01"), "{err}");
    let _ = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .unwrap();
    assert!(victim.is_closed());
    // Everyone else is fine.
    let r = healthy.query_one("SELECT 1 + 1", &[]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 2);
    // GSSENCRequest is declined with 'N', then a normal startup works on the same socket.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 4, 210, 22, 48]).await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"N");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_vanishing_mid_transaction_is_rolled_back() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 1)).await;
    let setup = p.client().await;
    setup
        .batch_execute(
            "CREATE TABLE acct (id int PRIMARY KEY, v int); INSERT INTO acct VALUES (1, 10)",
        )
        .await
        .unwrap();
    drop(setup);
    {
        let (c, conn) = tokio_postgres::connect(&p.conn_str(), tokio_postgres::NoTls)
            .await
            .unwrap();
        let h = tokio::spawn(conn);
        c.batch_execute("BEGIN; UPDATE acct SET v = 99 WHERE id = 1")
            .await
            .unwrap();
        // Vanish without COMMIT or Terminate.
        h.abort();
        drop(c);
    }
    // With a pool of one, this client can only run once the server is back, rolled back.
    let c = p.client().await;
    let v: i32 = c
        .query_one("SELECT v FROM acct WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 10);
    c.execute("UPDATE acct SET v = 11 WHERE id = 1", &[])
        .await
        .unwrap();
    let st = &p.proxy.pools_status()[0];
    assert!(st.servers_active + st.servers_idle <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_timeout_is_53300_not_a_hang() {
    let pg = PgServer::shared();
    let db = database(pg);
    let mut cfg = config(pg, &db.name, 1);
    cfg.pool_timeout = 300;
    let p = Proxy::start(cfg).await;
    let holder = p.client().await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let waiter = p.client().await;
    let err = waiter.simple_query("SELECT 2").await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "53300");
    let msg = err.as_db_error().unwrap().message();
    assert!(
        msg.contains("pool_size 1") && msg.contains("300 ms"),
        "{msg}"
    );
    let err = waiter.query("SELECT $1::int", &[&1i32]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "53300");
    holder.batch_execute("COMMIT").await.unwrap();
    // The waiter's connection is still good.
    let r = waiter.query_one("SELECT $1::int", &[&5i32]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 5);
    assert!(p.metrics_text().contains("vigil_pg_pool_timeouts_total 2"));
    assert!(
        p.metrics_text()
            .contains("vigil_pg_errors_total{class=\"53\"} 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_down_at_login_is_08006() {
    let pg = PgServer::shared();
    let mut cfg = config(pg, "whatever", 1);
    let port = vigil_testkit::free_port();
    cfg.databases[0].url = format!("postgres://{ROLE}:{ROLE_PW}@127.0.0.1:{port}/x");
    let p = Proxy::start(cfg).await;
    let err = tokio_postgres::connect(&p.conn_str(), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code().unwrap().code(), "08006", "{err}");
    let err = tokio_postgres::connect(
        &p.conn_str().replace("dbname=crm", "dbname=nope"),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.code().unwrap().code(), "3D000", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn newer_protocol_minor_and_pq_options_are_negotiated_down() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 1)).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let startup = vigil_proxy::pg::protocol::startup::StartupPacket::Startup {
        major: 3,
        minor: 2,
        params: vec![
            ("user".into(), USER.into()),
            ("database".into(), "crm".into()),
            ("_pq_.future_option".into(), "1".into()),
        ],
    };
    s.write_all(&startup.encode()).await.unwrap();
    let mut dec = vigil_proxy::pg::protocol::Decoder::new(1 << 20);
    let mut next = async || loop {
        if let Some(m) = dec.decode().unwrap() {
            return m;
        }
        assert!(s.read_buf(&mut dec.buf).await.unwrap() > 0);
    };
    let v = next().await;
    assert_eq!(v.tag, b'v');
    let (minor, opts) = vigil_proxy::pg::protocol::startup::decode_negotiate(v.body()).unwrap();
    assert_eq!((minor, opts), (0, vec!["_pq_.future_option".to_owned()]));
    assert_eq!(next().await.tag, b'R', "authentication follows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_clients_and_idle_server_upkeep() {
    let pg = PgServer::shared();
    let db = database(pg);
    let mut cfg = config(pg, &db.name, 3);
    cfg.max_clients = 2;
    cfg.min_idle = 2;
    cfg.server_idle_timeout = 60_000;
    let p = Proxy::start(cfg).await;
    let a = p.client().await;
    let _b = p.client().await;
    let e = tokio_postgres::connect(&p.conn_str(), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code().unwrap().code(), "53300");
    // min_idle servers are opened in the background.
    let mut idle = 0;
    for _ in 0..50 {
        idle = p.proxy.pools_status()[0].servers_idle;
        if idle >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(idle, 2);
    a.simple_query("SELECT 1").await.unwrap();
    // A server killed while idle in the pool is noticed and replaced, not handed out.
    let d = connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        pg.port()
    ))
    .await;
    d.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
        &[&db.name, &ROLE],
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        a.simple_query("SELECT 1").await.unwrap();
    }
}
