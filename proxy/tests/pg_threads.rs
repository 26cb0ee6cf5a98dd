//! `[pg] threads`: the proxy on dedicated single-threaded runtimes, two SO_REUSEPORT listeners on
//! one port, sharing the pools and the cancel registry; graceful stop of every thread.

#[path = "pg/harness.rs"]
mod harness;

use std::time::Duration;

use harness::*;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use vigil_proxy::pg::PgProxy;
use vigil_testkit::PgServer;

fn reuseport_listeners(n: usize) -> Vec<std::net::TcpListener> {
    let mut out: Vec<std::net::TcpListener> = Vec::new();
    for _ in 0..n {
        let addr = match out.first() {
            Some(l) => l.local_addr().unwrap(),
            None => "127.0.0.1:0".parse().unwrap(),
        };
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.set_reuseaddr(true).unwrap();
        s.set_reuseport(true).unwrap();
        s.bind(addr).unwrap();
        out.push(s.listen(128).unwrap().into_std().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_threads_share_pools_cancels_and_stop_together() {
    let pg = PgServer::shared();
    let db = database(pg);
    let mut cfg = config(pg, &db.name, 4);
    cfg.threads = 2;
    let mut registry = Registry::default();
    let proxy = PgProxy::new(cfg, &mut registry, None).unwrap();
    let listeners = reuseport_listeners(2);
    let addr = listeners[0].local_addr().unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let done = proxy
        .run_threads(listeners, move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        })
        .unwrap();
    let done = tokio::spawn(done);
    let conn_str = format!(
        "host=127.0.0.1 port={} user={USER} password={USER_PW} dbname=crm",
        addr.port()
    );

    // Many clients (spread by the kernel over both listeners), more than the pool: every
    // transaction sees its own writes and the pool never exceeds its size.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let c = conn_str.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(&c).await;
            for j in 0..20 {
                client.batch_execute("BEGIN").await.unwrap();
                let r = client
                    .query_one("SELECT $1::int * 1000 + $2::int", &[&i, &j])
                    .await
                    .unwrap();
                assert_eq!(r.get::<_, i32>(0), i * 1000 + j);
                client.batch_execute("COMMIT").await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let servers: i64 = {
        let c = connect(&conn_str).await;
        c.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = $1",
            &[&ROLE],
        )
        .await
        .unwrap()
        .get(0)
    };
    assert!(servers <= 4, "pool_size 4, {servers} server connections");

    // Cancels reach the right server whichever listener accepted the CancelRequest.
    for _ in 0..4 {
        let client = connect(&conn_str).await;
        let token = client.cancel_token();
        let slow = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        let err = tokio::time::timeout(Duration::from_secs(10), slow)
            .await
            .expect("the cancel was not delivered")
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
        );
    }

    // A graceful stop ends every thread: the listeners close and the proxy says not ready.
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), done)
        .await
        .expect("the pg threads did not stop")
        .unwrap()
        .unwrap();
    assert!(!proxy.ready());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
