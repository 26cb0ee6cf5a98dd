//! The hot-read cache (memory backend) against real PostgreSQL: byte-identical replay (simple
//! and extended, text and binary, NULLs, unicode, large rows), invalidation by writes through
//! Vigil and outside it, never-cached statements, role (RLS) and search_path isolation.

#[path = "pg/harness.rs"]
mod harness;

#[path = "cache_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use vigil_proxy::cache::Backend;
use vigil_proxy::pg::protocol::buf::Frame;
use vigil_proxy::pg::protocol::{extended, simple};
use vigil_testkit::PgServer;

use harness::*;
use support::*;

const RULES: &str = "default_ttl: 60\nrules:\n  - table: items\n  - table: docs\n  - table: seqt\n";

async fn setup(sql: &str) -> (vigil_testkit::TestDb, CacheProxy) {
    let pg = PgServer::shared();
    let db = database(pg);
    let c = connect(&direct_conn_str(pg, &db.name)).await;
    c.batch_execute(sql).await.unwrap();
    let p = CacheProxy::start(config(pg, &db.name, 2), RULES, settings(Backend::Memory)).await;
    p.warm().await;
    (db, p)
}

fn bind_exec(params: &[Option<&[u8]>], result_format: i16) -> Vec<Bytes> {
    let mut f = Frame::new(b'B');
    f.cstr("").cstr("").i16(0).i16(params.len() as i16);
    for p in params {
        match p {
            Some(v) => f.i32(v.len() as i32).bytes(v),
            None => f.i32(-1),
        };
    }
    let b = f.i16(1).i16(result_format).finish();
    vec![
        b,
        extended::Execute {
            portal: "",
            max_rows: 0,
        }
        .encode(),
        extended::sync(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_replay_the_exact_bytes_of_a_miss() {
    let (_db, p) = setup(
        "CREATE TABLE items (id int PRIMARY KEY, name text, note text, price numeric, data bytea);
         INSERT INTO items VALUES (1, 'ascii', NULL, 1.50, '\\x00ff'), (2, 'ünïcødé 🚀 名前', '', NULL, NULL),
           (3, repeat('x', 300000), 'large', 3.25, decode(repeat('ab', 1000), 'hex'));",
    )
    .await;
    let mut conn = p.raw().await;
    let corpus = [
        "SELECT * FROM items ORDER BY id",
        "SELECT id, name FROM items WHERE note IS NULL",
        "SELECT name, length(name) FROM items WHERE id = 2",
        "SELECT count(*), sum(price) FROM items",
        "SELECT * FROM items WHERE id = 3",
        "SELECT id FROM items WHERE id > 100",
    ];
    for sql in corpus {
        let miss = exchange(&mut conn, &[simple::query(sql)], 1).await;
        let hit = exchange(&mut conn, &[simple::query(sql)], 1).await;
        assert_eq!(miss, hit, "simple: {sql}");
        assert!(miss.len() > 10);
    }
    let s = p.cache.status();
    assert_eq!(s.hits, corpus.len() as u64, "{s:?}");
    assert_eq!(s.misses, corpus.len() as u64);

    // Extended protocol, text and binary results, parameters (and a NULL parameter).
    let parse = extended::Parse {
        name: String::new(),
        query: "SELECT * FROM items WHERE id = $1 OR name = $2 ORDER BY id".into(),
        param_types: vec![23, 25],
    }
    .encode();
    for fmt in [0i16, 1] {
        for params in [
            vec![Some(&b"1"[..]), None],
            vec![Some(&b"3"[..]), Some("ünïcødé 🚀 名前".as_bytes())],
        ] {
            let mut frames = vec![parse.clone()];
            frames.extend(bind_exec(&params, fmt));
            let miss = exchange(&mut conn, &frames, 1).await;
            let hit = exchange(&mut conn, &frames, 1).await;
            assert_eq!(miss, hit, "extended format {fmt}");
        }
    }
    let s = p.cache.status();
    assert_eq!(s.hits, corpus.len() as u64 + 4, "{s:?}");
    // Different parameter values never share an entry.
    let mut frames = vec![parse.clone()];
    frames.extend(bind_exec(&[Some(b"2"), None], 0));
    let other = exchange(&mut conn, &frames, 1).await;
    assert!(String::from_utf8_lossy(&other).contains("ünïcødé"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_vigil_invalidate_before_they_are_acknowledged() {
    let (_db, p) = setup(
        "CREATE TABLE items (id int PRIMARY KEY, qty int);
         INSERT INTO items SELECT g, 0 FROM generate_series(1, 10) g;
         CREATE TABLE docs (id int PRIMARY KEY, item int REFERENCES items(id) ON DELETE CASCADE);
         INSERT INTO docs VALUES (1, 1), (2, 2);
         CREATE VIEW item_view AS SELECT id, qty FROM items;",
    )
    .await;
    let c = p.client().await;
    let w = p.client().await;
    let sum = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> String {
        rows.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap()
    };
    for i in 1..=5 {
        // simple protocol, extended (prepared), a view and an FK cascade target.
        assert_eq!(
            sum(c.simple_query("SELECT sum(qty) FROM items").await.unwrap()),
            format!("{}", (i - 1) * 10)
        );
        let r = c
            .query_one("SELECT sum(qty)::int FROM items WHERE id > $1", &[&0i32])
            .await
            .unwrap();
        assert_eq!(r.get::<_, i32>(0), (i - 1) * 10);
        w.execute("UPDATE items SET qty = qty + 1", &[])
            .await
            .unwrap();
        assert_eq!(
            sum(c.simple_query("SELECT sum(qty) FROM items").await.unwrap()),
            format!("{}", i * 10)
        );
        let r = c
            .query_one("SELECT sum(qty)::int FROM items WHERE id > $1", &[&0i32])
            .await
            .unwrap();
        assert_eq!(r.get::<_, i32>(0), i * 10);
    }
    // Explicit transaction: invalidated at COMMIT.
    assert_eq!(
        sum(c.simple_query("SELECT count(*) FROM docs").await.unwrap()),
        "2"
    );
    w.batch_execute("BEGIN; DELETE FROM items WHERE id = 1; COMMIT")
        .await
        .unwrap();
    assert_eq!(
        sum(c.simple_query("SELECT count(*) FROM docs").await.unwrap()),
        "1",
        "FK cascade"
    );
    assert_eq!(
        sum(c
            .simple_query("SELECT count(*) FROM item_view")
            .await
            .unwrap()),
        "9"
    );
    assert_eq!(
        sum(c
            .simple_query("SELECT count(*) FROM item_view")
            .await
            .unwrap()),
        "9"
    );
    w.execute("DELETE FROM items WHERE id = 2", &[])
        .await
        .unwrap();
    assert_eq!(
        sum(c
            .simple_query("SELECT count(*) FROM item_view")
            .await
            .unwrap()),
        "8",
        "view"
    );
    // A rolled-back write leaves the data (and at worst invalidates).
    w.batch_execute("BEGIN; DELETE FROM items; ROLLBACK")
        .await
        .unwrap();
    assert_eq!(
        sum(c
            .simple_query("SELECT count(*) FROM item_view")
            .await
            .unwrap()),
        "8"
    );
    let s = p.cache.status();
    assert!(s.hits >= 2, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_locking_and_session_dependent_statements_are_never_cached() {
    let (_db, p) = setup(
        "CREATE TABLE seqt (id serial PRIMARY KEY, v int); INSERT INTO seqt (v) VALUES (1), (2);
         CREATE SEQUENCE s;",
    )
    .await;
    let c = p.client().await;
    for sql in [
        "SELECT now(), v FROM seqt",
        "SELECT random(), v FROM seqt",
        "SELECT nextval('s'), v FROM seqt",
        "SELECT v FROM seqt FOR UPDATE",
        "SELECT clock_timestamp(), v FROM seqt",
        "SELECT current_user, v FROM seqt",
    ] {
        let a = c.simple_query(sql).await.unwrap();
        let b = c.simple_query(sql).await.unwrap();
        assert_eq!(a.len(), b.len());
    }
    let s = p.cache.status();
    assert_eq!(s.hits, 0, "{s:?}");
    assert_eq!(s.misses, 0, "{s:?}");
    for r in ["volatile_function", "session_function", "locking_clause"] {
        assert!(s.bypass.get(r).copied().unwrap_or(0) >= 2, "{r}: {s:?}");
    }
    // nextval really ran each time (two rows, two runs).
    let r = c.query_one("SELECT nextval('s')", &[]).await.unwrap();
    assert_eq!(r.get::<_, i64>(0), 5);
    // ... while a plain read of the same table is cached.
    c.simple_query("SELECT v FROM seqt ORDER BY v")
        .await
        .unwrap();
    c.simple_query("SELECT v FROM seqt ORDER BY v")
        .await
        .unwrap();
    assert_eq!(p.cache.status().hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_with_rls_and_search_paths_never_share_entries() {
    let pg = PgServer::shared();
    let db = database(pg);
    let admin = connect(&direct_conn_str(pg, &db.name)).await;
    pg.psql(
        "postgres",
        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cache_alice') THEN \
         CREATE ROLE cache_alice LOGIN PASSWORD 'pw-a'; CREATE ROLE cache_bob LOGIN PASSWORD 'pw-b'; END IF; END$$",
    )
    .unwrap();
    admin
        .batch_execute(
            "CREATE TABLE docs (owner text, body text);
             INSERT INTO docs VALUES ('cache_alice', 'alice secret'), ('cache_bob', 'bob secret');
             ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own ON docs USING (owner = current_user);
             GRANT SELECT ON docs TO cache_alice, cache_bob;
             CREATE SCHEMA a; CREATE SCHEMA b;
             CREATE TABLE a.items (v text); INSERT INTO a.items VALUES ('from a');
             CREATE TABLE b.items (v text); INSERT INTO b.items VALUES ('from b');
             GRANT USAGE ON SCHEMA a, b TO cache_alice, cache_bob;
             GRANT SELECT ON a.items, b.items TO cache_alice, cache_bob;",
        )
        .await
        .unwrap();
    let mut cfg = config(pg, &db.name, 2);
    cfg.databases[0].url = format!("postgres://127.0.0.1:{}/{}", pg.port(), db.name);
    cfg.users = vec![
        vigil_proxy::pg::UserConfig {
            name: "cache_alice".into(),
            password: Some("pw-a".into()),
            scram_secret: None,
        },
        vigil_proxy::pg::UserConfig {
            name: "cache_bob".into(),
            password: Some("pw-b".into()),
            scram_secret: None,
        },
    ];
    let p = CacheProxy::start(cfg, RULES, settings(Backend::Memory)).await;
    let alice = connect(&conn_str(p.addr, "cache_alice", "pw-a")).await;
    let bob = connect(&conn_str(p.addr, "cache_bob", "pw-b")).await;
    alice.simple_query("SELECT 1").await.unwrap();
    for _ in 0..500 {
        if p.cache.catalog_loaded("crm") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect()
    };
    for _ in 0..3 {
        assert_eq!(
            first(alice.simple_query("SELECT body FROM docs").await.unwrap()),
            ["alice secret"]
        );
        assert_eq!(
            first(bob.simple_query("SELECT body FROM docs").await.unwrap()),
            ["bob secret"]
        );
    }
    assert!(p.cache.status().hits >= 4, "{:?}", p.cache.status());
    // search_path from the startup options.
    let sa = connect(&format!(
        "{} options='-c search_path=a'",
        conn_str(p.addr, "cache_alice", "pw-a")
    ))
    .await;
    let sb = connect(&format!(
        "{} options='-c search_path=b'",
        conn_str(p.addr, "cache_alice", "pw-a")
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(
            first(sa.simple_query("SELECT v FROM items").await.unwrap()),
            ["from a"]
        );
        assert_eq!(
            first(sb.simple_query("SELECT v FROM items").await.unwrap()),
            ["from b"]
        );
    }
    // SET search_path pins the client: never served from the cache.
    alice.batch_execute("SET search_path = b").await.unwrap();
    assert_eq!(
        first(alice.simple_query("SELECT v FROM items").await.unwrap()),
        ["from b"]
    );
    assert!(p.cache.status().bypass.contains_key("pinned_session"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_writes_are_visible_within_a_second() {
    let pg = PgServer::shared();
    let (db, p) =
        setup("CREATE TABLE items (id int PRIMARY KEY, qty int); INSERT INTO items VALUES (1, 0);")
            .await;
    let direct = connect(&direct_conn_str(pg, &db.name)).await;
    direct
        .batch_execute(vigil_proxy::cache::Cache::install_sql())
        .await
        .unwrap();
    let c = p.client().await;
    let read = async |c: &tokio_postgres::Client| -> String {
        c.simple_query("SELECT qty FROM items WHERE id = 1")
            .await
            .unwrap()
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap()
    };
    for i in 1..=3 {
        assert_eq!(read(&c).await, (i - 1).to_string());
        assert_eq!(read(&c).await, (i - 1).to_string());
        direct
            .execute("UPDATE items SET qty = qty + 1", &[])
            .await
            .unwrap();
        let t = Instant::now();
        while read(&c).await != i.to_string() {
            assert!(t.elapsed() < Duration::from_secs(1), "stale after 1 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let s = p.cache.status();
    assert!(s.external_invalidations >= 3, "{s:?}");
    assert!(s.hits >= 3, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_only_size_limit_auto_mode_reload_and_flush() {
    let pg = PgServer::shared();
    let db = database(pg);
    let c = connect(&direct_conn_str(pg, &db.name)).await;
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text);
         INSERT INTO items SELECT g, repeat('n', 50) FROM generate_series(1, 100) g;",
    )
    .await
    .unwrap();
    let p = CacheProxy::start(
        config(pg, &db.name, 2),
        "rules:\n  - table: items\n    observe_only: true\n",
        settings(Backend::Memory),
    )
    .await;
    p.warm().await;
    let c = p.client().await;
    let small = "SELECT name FROM items WHERE id = 1";
    let large = "SELECT name FROM items ORDER BY id";
    for _ in 0..3 {
        c.simple_query(small).await.unwrap();
    }
    let s = p.cache.status();
    assert_eq!(s.hits, 0, "observe-only serves nothing: {s:?}");
    let fp = &s.fingerprints[0];
    assert_eq!((fp.observe_hits, fp.observe_misses), (2, 1), "{s:?}");

    // Hot reload: a size limit.
    let reload = async |yaml: &str, check: &dyn Fn(&vigil_proxy::cache::Rules) -> bool| {
        std::fs::write(p.rules.path(), yaml).unwrap();
        let t = Instant::now();
        while !check(&p.cache.rules()) {
            assert!(t.elapsed() < Duration::from_secs(5), "rules not reloaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    reload("rules:\n  - table: items\n    max_bytes: 1000\n", &|r| {
        r.rules.first().and_then(|r| r.max_bytes) == Some(1000)
    })
    .await;
    for _ in 0..2 {
        c.simple_query(small).await.unwrap();
        c.simple_query(large).await.unwrap();
    }
    let s = p.cache.status();
    assert_eq!(s.hits, 1, "{s:?}");
    assert!(
        s.bypass.get("too_large").copied().unwrap_or(0) >= 2,
        "{s:?}"
    );

    // Flush one table: the next read is a miss again.
    p.cache.flush(None, Some("items")).await.unwrap();
    c.simple_query(small).await.unwrap();
    assert_eq!(p.cache.status().hits, 1);
    c.simple_query(small).await.unwrap();
    assert_eq!(p.cache.status().hits, 2);

    // auto: no rule; cached once its database time crossed the threshold.
    reload(
        "auto:\n  enabled: true\n  min_db_time_ms: 0.000001\n",
        &|r| r.auto.enabled,
    )
    .await;
    let q = "SELECT count(*) FROM items WHERE id < 50";
    for _ in 0..3 {
        c.simple_query(q).await.unwrap();
    }
    let s = p.cache.status();
    assert_eq!(s.hits, 3, "measured, filled, hit: {s:?}");

    // The admin API: status and flush.
    use tower::ServiceExt;
    let app = p.cache.api_router();
    let r = app
        .clone()
        .oneshot(
            http::Request::get("/api/cache")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .oneshot(
            http::Request::post("/api/cache/flush?table=items")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    c.simple_query(q).await.unwrap();
    assert_eq!(p.cache.status().hits, 3, "flushed through the API");
}

/// Not a check: drives `VIGIL_COST_N` (default 2000) pgbench -S style reads through a cache that
/// has rules but none matching, for measuring the no-match path with callgrind:
/// `valgrind --tool=callgrind --toggle-collect='*cache_query*' <test binary> --ignored
/// --exact no_match_path_workload` (instructions / N = the cache's cost per statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn no_match_path_workload() {
    let n: i32 = std::env::var("VIGIL_COST_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let (_db, p) = setup(
        "CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler text);
         INSERT INTO pgbench_accounts SELECT g, 1, 0, '' FROM generate_series(1, 1000) g;",
    )
    .await;
    let c = p.client().await;
    for i in 0..n {
        let aid = i % 1000 + 1;
        c.simple_query(&format!(
            "SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"
        ))
        .await
        .unwrap();
    }
    let s = p.cache.status();
    assert_eq!(s.hits, 0, "{s:?}");
    eprintln!("{n} statements, bypass {:?}", s.bypass);
}

/// The first value of the first row of a simple query.
fn first(rows: Vec<tokio_postgres::SimpleQueryMessage>) -> String {
    rows.into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_inside_read_committed_transactions_until_the_first_write() {
    let pg = PgServer::shared();
    let db = database(pg);
    let direct = connect(&direct_conn_str(pg, &db.name)).await;
    direct
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, qty int);
             INSERT INTO items VALUES (1, 0);
             CREATE TABLE docs (id int PRIMARY KEY);
             INSERT INTO docs VALUES (1);",
        )
        .await
        .unwrap();
    let p = CacheProxy::start(
        config(pg, &db.name, 4),
        "rules:\n  - table: items\n    in_transaction: true\n  - table: docs\n",
        settings(Backend::Memory),
    )
    .await;
    p.warm().await;
    let c = p.client().await;
    let w = p.client().await;
    let q = "SELECT qty FROM items WHERE id = 1";
    let bypass = |r: &str| p.cache.status().bypass.get(r).copied().unwrap_or(0);

    // READ COMMITTED (default, and explicit): served inside the transaction, simple and extended.
    for begin in ["BEGIN", "START TRANSACTION ISOLATION LEVEL READ COMMITTED"] {
        let hits = p.cache.status().hits;
        c.batch_execute(begin).await.unwrap();
        assert_eq!(first(c.simple_query(q).await.unwrap()), "0");
        assert_eq!(first(c.simple_query(q).await.unwrap()), "0");
        let r = c
            .query_one("SELECT qty FROM items WHERE id = $1", &[&1i32])
            .await
            .unwrap();
        assert_eq!(r.get::<_, i32>(0), 0);
        c.query_one("SELECT qty FROM items WHERE id = $1", &[&1i32])
            .await
            .unwrap();
        // Read committed: another client's acknowledged write is seen by the next statement.
        w.execute("UPDATE items SET qty = qty + 1", &[])
            .await
            .unwrap();
        assert_eq!(first(c.simple_query(q).await.unwrap()), "1");
        c.batch_execute("COMMIT").await.unwrap();
        w.execute("UPDATE items SET qty = 0", &[]).await.unwrap();
        assert!(
            p.cache.status().hits >= hits + 2,
            "{begin}: {:?}",
            p.cache.status()
        );
    }

    // After a write in the transaction: its own changes, never the cached value.
    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(first(c.simple_query(q).await.unwrap()), "0");
    let before = bypass("after_write");
    c.batch_execute("UPDATE items SET qty = 42 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(first(c.simple_query(q).await.unwrap()), "42");
    let r = c
        .query_one("SELECT qty FROM items WHERE id = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>(0), 42);
    assert!(bypass("after_write") >= before + 2);
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(first(c.simple_query(q).await.unwrap()), "0");

    // REPEATABLE READ / SERIALIZABLE keep their snapshot: a newer cached value must not leak in.
    for begin in [
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "BEGIN; SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    ] {
        let before = bypass("isolation_level");
        let v = first(c.simple_query(q).await.unwrap());
        c.batch_execute(begin).await.unwrap();
        assert_eq!(first(c.simple_query(q).await.unwrap()), v);
        w.execute("UPDATE items SET qty = qty + 1", &[])
            .await
            .unwrap();
        // Another client fills the cache with the new value.
        w.simple_query(q).await.unwrap();
        w.simple_query(q).await.unwrap();
        assert_eq!(first(c.simple_query(q).await.unwrap()), v, "{begin}");
        c.batch_execute("COMMIT").await.unwrap();
        assert!(bypass("isolation_level") >= before + 2, "{begin}");
    }

    // A rule without `in_transaction`.
    c.simple_query("SELECT id FROM docs").await.unwrap();
    let before = bypass("in_transaction");
    c.batch_execute("BEGIN").await.unwrap();
    c.simple_query("SELECT id FROM docs").await.unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(bypass("in_transaction"), before + 1);

    // A database whose default isolation is not read committed: never in transactions.
    drop(p);
    direct
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET default_transaction_isolation = 'repeatable read'",
            db.name
        ))
        .await
        .unwrap();
    let p = CacheProxy::start(
        config(pg, &db.name, 4),
        "rules:\n  - table: items\n    in_transaction: true\n",
        settings(Backend::Memory),
    )
    .await;
    p.warm().await;
    let c = p.client().await;
    c.batch_execute("BEGIN").await.unwrap();
    c.simple_query(q).await.unwrap();
    c.simple_query(q).await.unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    let s = p.cache.status();
    assert_eq!(s.hits, 0, "{s:?}");
    assert!(
        s.bypass.get("isolation_level").copied().unwrap_or(0) >= 2,
        "{s:?}"
    );
}
