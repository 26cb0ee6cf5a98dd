//! The hot-read cache with Redis shared by two Vigil instances: a randomized concurrency test
//! checked against a model, and Redis stopped and restarted under load.

#[path = "pg/harness.rs"]
mod harness;

#[path = "cache_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vigil_proxy::cache::Backend;
use vigil_testkit::{PgServer, RedisServer};

use harness::*;
use support::*;

const RULES: &str = "rules:\n  - table: kv\n    ttl: 600\n    in_transaction: true\n";
const KEYS: usize = 4;

/// What the model knows per key: the highest value whose write was acknowledged, and the
/// number of writes started (values are 0..=started).
struct Model {
    acked: Vec<AtomicI64>,
    started: Vec<AtomicI64>,
    violations: AtomicU64,
    reads: AtomicU64,
    tx_reads: AtomicU64,
}

async fn value(
    c: &tokio_postgres::Client,
    k: usize,
    extended: bool,
) -> Result<i64, tokio_postgres::Error> {
    if extended {
        let r = c
            .query_one("SELECT v FROM kv WHERE k = $1", &[&(k as i32)])
            .await?;
        Ok(r.get(0))
    } else {
        let rows = c
            .simple_query(&format!("SELECT v FROM kv WHERE k = {k}"))
            .await?;
        Ok(rows
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
                _ => None,
            })
            .unwrap())
    }
}

async fn kv_db(pg: &PgServer) -> vigil_testkit::TestDb {
    let db = database(pg);
    let c = connect(&direct_conn_str(pg, &db.name)).await;
    c.batch_execute(&format!(
        "CREATE TABLE kv (k int PRIMARY KEY, v bigint NOT NULL);
         INSERT INTO kv SELECT g, 0 FROM generate_series(0, {}) g;",
        KEYS - 1
    ))
    .await
    .unwrap();
    db
}

fn redis_settings(redis: &RedisServer, prefix: &str) -> vigil_proxy::cache::CacheSettings {
    let mut s = settings(Backend::Redis { url: redis.url() });
    s.prefix = prefix.to_owned();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_sharing_redis_never_serve_stale_rows() {
    let secs: u64 = std::env::var("VIGIL_CACHE_MODEL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let pg = PgServer::shared();
    let redis = RedisServer::shared();
    let db = kv_db(pg).await;
    let prefix = redis.prefix();
    let a = CacheProxy::start(
        config(pg, &db.name, 4),
        RULES,
        redis_settings(redis, &prefix),
    )
    .await;
    let b = CacheProxy::start(
        config(pg, &db.name, 4),
        RULES,
        redis_settings(redis, &prefix),
    )
    .await;
    a.warm().await;
    b.warm().await;
    let model = Arc::new(Model {
        acked: (0..KEYS).map(|_| AtomicI64::new(0)).collect(),
        started: (0..KEYS).map(|_| AtomicI64::new(0)).collect(),
        violations: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        tx_reads: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let addrs = [a.addr, b.addr];
    for w in 0..2 {
        let (model, stop) = (model.clone(), stop.clone());
        let c = connect(&conn_str(addrs[w % 2], USER, USER_PW)).await;
        tasks.push(tokio::spawn(async move {
            let mut n = w as u64;
            while !stop.load(Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = (n >> 33) as usize % KEYS;
                model.started[k].fetch_add(1, Ordering::SeqCst);
                let r = if n & 1 == 0 {
                    c.query_one(
                        "UPDATE kv SET v = v + 1 WHERE k = $1 RETURNING v",
                        &[&(k as i32)],
                    )
                    .await
                    .map(|r| r.get::<_, i64>(0))
                } else {
                    // Simple protocol, explicit transaction.
                    c.simple_query(&format!(
                        "BEGIN; UPDATE kv SET v = v + 1 WHERE k = {k} RETURNING v; COMMIT"
                    ))
                    .await
                    .map(|rows| {
                        rows.into_iter()
                            .find_map(|m| match m {
                                tokio_postgres::SimpleQueryMessage::Row(r) => {
                                    r.get(0).map(|v| v.parse().unwrap())
                                }
                                _ => None,
                            })
                            .unwrap()
                    })
                };
                let v = r.expect("write failed");
                model.acked[k].fetch_max(v, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis((n >> 40) % 20)).await;
            }
        }));
    }
    for r in 0..6 {
        let (model, stop) = (model.clone(), stop.clone());
        let c = connect(&conn_str(addrs[r % 2], USER, USER_PW)).await;
        tasks.push(tokio::spawn(async move {
            let mut n = 100 + r as u64;
            while !stop.load(Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = (n >> 33) as usize % KEYS;
                // Some reads inside explicit (READ COMMITTED) transactions, a few after a read.
                let tx = n & 12 == 0;
                if tx {
                    c.batch_execute("BEGIN").await.expect("begin failed");
                    if n & 16 == 0 {
                        value(&c, (k + 1) % KEYS, false).await.expect("read failed");
                    }
                }
                let floor = model.acked[k].load(Ordering::SeqCst);
                let v = value(&c, k, n & 2 == 0).await.expect("read failed");
                let ceiling = model.started[k].load(Ordering::SeqCst);
                if tx {
                    c.batch_execute("COMMIT").await.expect("commit failed");
                    model.tx_reads.fetch_add(1, Ordering::Relaxed);
                }
                model.reads.fetch_add(1, Ordering::Relaxed);
                if v < floor || v > ceiling {
                    eprintln!(
                        "violation: key {k} read {v}, acknowledged {floor}, started {ceiling}"
                    );
                    model.violations.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let (sa, sb) = (a.cache.status(), b.cache.status());
    let reads = model.reads.load(Ordering::Relaxed);
    let tx_reads = model.tx_reads.load(Ordering::Relaxed);
    eprintln!(
        "reads {reads} ({tx_reads} in transactions), hits {} + {}, misses {} + {}, redis errors {} + {}",
        sa.hits, sb.hits, sa.misses, sb.misses, sa.redis_errors, sb.redis_errors
    );
    assert!(tx_reads > 100, "{tx_reads} reads in transactions");
    assert_eq!(model.violations.load(Ordering::Relaxed), 0);
    assert!(reads > 1000, "{reads} reads");
    assert!(sa.hits > 100 && sb.hits > 100, "{sa:?} {sb:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_and_restarted_under_load() {
    let pg = PgServer::shared();
    let redis = RedisServer::start_new().unwrap();
    let db = kv_db(pg).await;
    let p = CacheProxy::start(
        config(pg, &db.name, 4),
        RULES,
        redis_settings(&redis, "fault:"),
    )
    .await;
    p.warm().await;
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for r in 0..4 {
        let (stop, errors, acked) = (stop.clone(), errors.clone(), acked.clone());
        let c = p.client().await;
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let floor = acked.load(Ordering::SeqCst);
                match value(&c, 0, (i + r).is_multiple_of(2)).await {
                    Ok(v) if v >= floor => {}
                    Ok(v) => panic!("stale read {v} < {floor}"),
                    Err(e) => {
                        eprintln!("client error: {e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    {
        let (stop, errors, acked) = (stop.clone(), errors.clone(), acked.clone());
        let c = p.client().await;
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c
                    .query_one("UPDATE kv SET v = v + 1 WHERE k = 0 RETURNING v", &[])
                    .await
                {
                    Ok(r) => {
                        acked.fetch_max(r.get::<_, i64>(0), Ordering::SeqCst);
                    }
                    Err(e) => {
                        eprintln!("write error: {e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = p.cache.status().hits;
    assert!(before > 50, "hits before the fault: {before}");
    redis.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = p.cache.status();
    assert!(
        !during.store_available || during.redis_errors > 0,
        "{during:?}"
    );
    redis.start().unwrap();
    // Hit rate recovers on its own.
    let t = Instant::now();
    let restarted = p.cache.status().hits;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if p.cache.status().hits > restarted + 50 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "hits did not recover: {:?}",
            p.cache.status()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0, "client errors");
    let s = p.cache.status();
    assert!(
        s.bypass.get("store_unavailable").copied().unwrap_or(0) > 0,
        "{s:?}"
    );
}
