//! Stampede protection across replicas: two Vigil instances sharing one Redis, many clients
//! missing the same key at once. `pg_stat_statements` on the throwaway cluster counts how often
//! the statement really ran upstream. The clients use the simple protocol: with the extended one
//! a hit still binds the statement upstream (a portal `pg_stat_statements` counts as a call
//! without running it).

#[path = "pg/harness.rs"]
mod harness;

#[path = "cache_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use vigil_proxy::cache::{Backend, CacheSettings};
use vigil_testkit::{PgServer, RedisServer, TestDb};

use harness::*;
use support::*;

const RULES: &str = "rules:\n  - table: stampede\n    ttl: 600\n";

/// The slow statement: `slow_v` sleeps `secs` per row (one row). Immutable, as the cache
/// requires of user functions (a stable one is refused with `unsafe_function`).
fn slow_sql(secs: f64) -> String {
    format!("SELECT slow_v(v, {secs:.1}) FROM stampede WHERE k = 1")
}

/// A database with the table, the slow function and `pg_stat_statements`.
async fn slow_db(pg: &PgServer) -> TestDb {
    let db = database(pg);
    pg.psql(
        &db.name,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
    )
    .unwrap();
    let c = connect(&direct_conn_str(pg, &db.name)).await;
    c.batch_execute(
        "CREATE TABLE stampede (k int PRIMARY KEY, v int NOT NULL);
         INSERT INTO stampede VALUES (1, 42), (2, 7);
         CREATE FUNCTION slow_v(x int, secs float8) RETURNS int
           LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN PERFORM pg_sleep(secs); RETURN x; END $$;",
    )
    .await
    .unwrap();
    db
}

/// How often the slow statement ran (top level) in `db`, per `pg_stat_statements`.
fn upstream_calls(pg: &PgServer, db: &str) -> u64 {
    let out = pg
        .psql(
            db,
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s \
             JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = current_database() AND s.toplevel \
             AND s.query LIKE 'SELECT slow_v(v, %'",
        )
        .unwrap();
    out.trim().parse().unwrap()
}

/// `timeout_ms`: the Redis timeout, generous where a slow answer on a loaded machine would
/// make a replica bypass (and run the statement) instead of waiting.
fn redis_settings(url: String, prefix: &str, wait_ms: u64, timeout_ms: u64) -> CacheSettings {
    let mut s = settings(Backend::Redis { url });
    s.prefix = prefix.to_owned();
    s.fill_lock_wait = Duration::from_millis(wait_ms);
    s.redis_timeout = Duration::from_millis(timeout_ms);
    s
}

/// Two instances on `db`, warmed (catalog loaded).
async fn two_instances(pg: &PgServer, db: &str, s: CacheSettings) -> (CacheProxy, CacheProxy) {
    let a = CacheProxy::start(config(pg, db, 4), RULES, s.clone()).await;
    let b = CacheProxy::start(config(pg, db, 4), RULES, s).await;
    a.warm().await;
    b.warm().await;
    (a, b)
}

/// The value of the first row of `sql` (simple protocol).
async fn value(c: &tokio_postgres::Client, sql: &str) -> Result<i32, tokio_postgres::Error> {
    let rows = c.simple_query(sql).await?;
    Ok(rows
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .expect("no row"))
}

/// Run `sql` on a new connection to `conn`; the value of the single row.
async fn read(conn: String, sql: String) -> Result<i32, tokio_postgres::Error> {
    value(&connect(&conn).await, &sql).await
}

/// A fresh database and two instances on the shared Redis (own prefix); waiters wait
/// `wait_ms` for the other replica's fill.
async fn on_shared_redis(wait_ms: u64) -> (&'static PgServer, TestDb, CacheProxy, CacheProxy) {
    let pg = PgServer::shared();
    let redis = RedisServer::shared();
    let db = slow_db(pg).await;
    let s = redis_settings(redis.url(), &redis.prefix(), wait_ms, 1_000);
    let (a, b) = two_instances(pg, &db.name, s).await;
    (pg, db, a, b)
}

/// Issue `sql` on every client at once: each one's value and latency (panics on a client
/// error).
async fn all_at_once(clients: Vec<tokio_postgres::Client>, sql: &str) -> Vec<(i32, Duration)> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let sql = sql.to_owned();
            tokio::spawn(async move {
                let t = Instant::now();
                let v = value(&c, &sql).await?;
                Ok::<_, tokio_postgres::Error>((v, t.elapsed()))
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap().expect("a client saw an error"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_on_two_instances_run_upstream_once() {
    let (pg, db, a, b) = on_shared_redis(5_000).await;
    assert_eq!(upstream_calls(pg, &db.name), 0);
    // Connect everyone first, then issue the statement at once.
    let mut clients = Vec::new();
    for i in 0..16 {
        let p = if i % 2 == 0 { &a } else { &b };
        clients.push(p.client().await);
    }
    let sql = slow_sql(0.3);
    let started = Instant::now();
    for (v, _) in all_at_once(clients, &sql).await {
        assert_eq!(v, 42);
    }
    let elapsed = started.elapsed();
    assert_eq!(
        upstream_calls(pg, &db.name),
        1,
        "the statement ran upstream more than once: {:?} {:?}",
        a.cache.status(),
        b.cache.status()
    );
    let (sa, sb) = (a.cache.status(), b.cache.status());
    // One fill; every other read was a hit (after waiting here or in the other replica).
    assert_eq!(sa.misses + sb.misses, 1, "{sa:?} {sb:?}");
    assert_eq!(sa.hits + sb.hits, 15, "{sa:?} {sb:?}");
    assert_eq!(sa.fill_waits + sb.fill_waits, 1, "{sa:?} {sb:?}");
    assert_eq!(sa.fill_wait_timeouts + sb.fill_wait_timeouts, 0);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // The metrics are exported.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &a.registry).unwrap();
    assert!(text.contains("vigil_cache_fill_waits_total"), "{text}");
    assert!(
        text.contains("vigil_cache_fill_wait_timeouts_total"),
        "{text}"
    );
    // Still one upstream run: later reads are plain hits.
    let again = read(b.conn_str(), sql.clone()).await.unwrap();
    assert_eq!(again, 42);
    assert_eq!(upstream_calls(pg, &db.name), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiter_runs_the_statement_itself_when_the_holder_is_too_slow() {
    // Waiters give up after 100 ms; the holder needs 1.5 s.
    let (pg, db, a, b) = on_shared_redis(100).await;
    let sql = slow_sql(1.5);
    let holder = tokio::spawn(read(a.conn_str(), sql.clone()));
    // Wait until A's fill is running upstream (it took the lock before going upstream).
    let direct = connect(&direct_conn_str(pg, &db.name)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE state = 'active' AND query LIKE 'SELECT slow_v(v, %'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the holder never ran upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    assert_eq!(read(b.conn_str(), sql.clone()).await.unwrap(), 42);
    let waited = t.elapsed();
    assert_eq!(holder.await.unwrap().unwrap(), 42);
    assert_eq!(upstream_calls(pg, &db.name), 2, "the waiter did not run it");
    let (sa, sb) = (a.cache.status(), b.cache.status());
    assert_eq!(sb.fill_waits, 1, "{sb:?}");
    assert_eq!(sb.fill_wait_timeouts, 1, "{sb:?}");
    assert_eq!(sa.fill_waits + sa.fill_wait_timeouts, 0, "{sa:?}");
    assert_eq!((sa.misses, sb.misses), (1, 1));
    // B waited about 100 ms, then ran it (1.5 s): it did not wait for A.
    assert!(waited >= Duration::from_millis(1_500), "{waited:?}");
    assert!(
        holder_free(&a, &b, &sql).await,
        "the entry was not served afterwards"
    );
}

/// After both fills, a read on either instance is a hit.
async fn holder_free(a: &CacheProxy, b: &CacheProxy, sql: &str) -> bool {
    let before = a.cache.status().hits + b.cache.status().hits;
    for p in [a, b] {
        if read(p.conn_str(), sql.to_owned()).await.unwrap() != 42 {
            return false;
        }
    }
    a.cache.status().hits + b.cache.status().hits == before + 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_stopped_every_client_is_answered_without_waiting_for_a_lock() {
    let pg = PgServer::shared();
    let redis = RedisServer::start_new().unwrap();
    let db = slow_db(pg).await;
    let (a, b) = two_instances(
        pg,
        &db.name,
        redis_settings(redis.url(), "down:", 5_000, 200),
    )
    .await;
    redis.stop();
    let mut clients = Vec::new();
    for i in 0..8 {
        let p = if i % 2 == 0 { &a } else { &b };
        clients.push(p.client().await);
    }
    for (v, took) in all_at_once(clients, &slow_sql(0.3)).await {
        assert_eq!(v, 42);
        // The statement's own 0.3 s plus at most a Redis timeout (200 ms here), never the
        // 5 s fill-lock wait.
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    // Every client ran it (no cache, no lock), and nobody waited for a lock.
    assert_eq!(upstream_calls(pg, &db.name), 8);
    let (sa, sb) = (a.cache.status(), b.cache.status());
    assert_eq!(sa.fill_waits + sb.fill_waits, 0, "{sa:?} {sb:?}");
    assert_eq!(sa.hits + sb.hits, 0);
    let unavailable = |s: &vigil_proxy::cache::CacheStatus| {
        s.bypass.get("store_unavailable").copied().unwrap_or(0)
    };
    assert_eq!(unavailable(&sa) + unavailable(&sb), 8, "{sa:?} {sb:?}");
}
