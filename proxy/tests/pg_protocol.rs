//! The pg proxy against real PostgreSQL with tokio-postgres: prepared statements under heavy
//! transaction pooling, pipelining, binary results, COPY, cancel, LISTEN/NOTIFY, session-state
//! isolation.

#[path = "pg/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt, TryStreamExt};

use harness::*;
use vigil_testkit::PgServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simple_and_extended_queries() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 2)).await;
    let c = p.client().await;
    let rows = c
        .simple_query("SELECT 1 AS a; SELECT 'x' AS b")
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        6,
        "two row descriptions, two rows, two command completes"
    );
    let r = c.query_one("SELECT $1::int + 1", &[&41i32]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 42);
    let who = c.query_one("SELECT current_user::text", &[]).await.unwrap();
    assert_eq!(who.get::<_, String>(0), ROLE);
    let err = c.simple_query("SELECT * FROM nope").await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P01");
    // Still usable after an error, in both protocols.
    let err = c.query("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22012");
    let r = c.query_one("SELECT 2", &[]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_clients_prepared_statements_on_pool_of_two() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 2)).await;
    let setup = p.client().await;
    setup
        .batch_execute("CREATE TABLE acc (id int PRIMARY KEY, n bigint NOT NULL); INSERT INTO acc SELECT g, 0 FROM generate_series(1, 10) g")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let cs = p.conn_str();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&cs).await;
            let upd = c
                .prepare("UPDATE acc SET n = n + 1 WHERE id = $1")
                .await
                .unwrap();
            let sel = c.prepare("SELECT n FROM acc WHERE id = $1").await.unwrap();
            for j in 0..60 {
                let id = (i + j) % 10 + 1;
                let tx = c.transaction().await.unwrap();
                tx.execute(&upd, &[&id]).await.unwrap();
                let n: i64 = tx.query_one(&sel, &[&id]).await.unwrap().get(0);
                assert!(n >= 1);
                tx.commit().await.unwrap();
                // Autocommit statements too, on whichever server comes up.
                let _: i64 = c.query_one(&sel, &[&id]).await.unwrap().get(0);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total: i64 = setup
        .query_one("SELECT sum(n)::bigint FROM acc", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 50 * 60);
    let servers: i64 = connect(&direct_conn_str(pg, &db.name))
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
            &[&db.name, &ROLE],
        )
        .await
        .unwrap()
        .get(0);
    assert!(servers <= 3, "pool of 2 (+1 direct), saw {servers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_queries() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 2)).await;
    let c = p.client().await;
    let s = c.prepare("SELECT $1::int * 2").await.unwrap();
    // tokio-postgres pipelines concurrent queries on one connection.
    let futs: Vec<_> = (0..200i32)
        .map(|i| {
            let c = &c;
            let s = &s;
            async move { c.query_one(s, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
        })
        .collect();
    let got: Vec<i32> = futures::future::join_all(futs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..200).map(|i| i * 2).collect::<Vec<_>>());
    // An error inside a pipeline fails only its own query.
    let (a, b, d) = tokio::join!(
        c.query_one("SELECT 1", &[]),
        c.query_one("SELECT 1/0", &[]),
        c.query_one("SELECT 3", &[])
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(b.unwrap_err().code().unwrap().code(), "22012");
    assert_eq!(d.unwrap().get::<_, i32>(0), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_results_and_types() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 2)).await;
    let c = p.client().await;
    let r = c
        .query_one(
            "SELECT 1.5::float8, 123456789012::int8, 'ünïcødé ✓'::text, NULL::int, true, '\\x00ff'::bytea, ARRAY[1,2,3]",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, f64>(0), 1.5);
    assert_eq!(r.get::<_, i64>(1), 123456789012);
    assert_eq!(r.get::<_, String>(2), "ünïcødé ✓");
    assert_eq!(r.get::<_, Option<i32>>(3), None);
    assert!(r.get::<_, bool>(4));
    assert_eq!(r.get::<_, Vec<u8>>(5), vec![0u8, 255]);
    assert_eq!(r.get::<_, Vec<i32>>(6), vec![1, 2, 3]);
    // A large value streams through (bigger than the proxy's buffers).
    let big: String = c
        .query_one("SELECT repeat('x', 5000000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 5_000_000);
}

async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> Vec<u8> {
    let stream = c
        .copy_out(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let chunks: Vec<bytes::Bytes> = stream
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    chunks.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_in_and_out_100k_rows_identical_to_direct() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 2)).await;
    let direct = connect(&direct_conn_str(pg, &db.name)).await;
    direct
        .batch_execute("CREATE TABLE src AS SELECT g AS id, md5(g::text) AS h, CASE WHEN g % 7 = 0 THEN NULL ELSE 'ü' || g END AS u FROM generate_series(1, 100000) g; CREATE TABLE dst (LIKE src)")
        .await
        .unwrap();
    let c = p.client().await;
    let direct_out = copy_out(&direct, "COPY src TO STDOUT").await;
    let proxy_out = copy_out(&c, "COPY src TO STDOUT").await;
    assert_eq!(direct_out.len(), proxy_out.len());
    assert!(
        direct_out == proxy_out,
        "COPY TO through Vigil differs from direct"
    );
    // COPY IN through Vigil, then compare with the source.
    let sink = c.copy_in("COPY dst FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    for chunk in proxy_out.chunks(64 * 1024) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 100_000);
    let back = copy_out(&direct, "COPY dst TO STDOUT").await;
    assert!(
        back == direct_out,
        "COPY FROM through Vigil changed the data"
    );
    // COPY in binary format too.
    let bin_direct = copy_out(&direct, "COPY src TO STDOUT (FORMAT binary)").await;
    let bin_proxy = copy_out(&c, "COPY src TO STDOUT (FORMAT binary)").await;
    assert!(bin_direct == bin_proxy);
    // A failed COPY IN leaves the client usable.
    let sink = c.copy_in("COPY dst FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"not-a-number\tx\tx\n"))
        .await
        .unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22P02");
    assert_eq!(
        c.query_one("SELECT 5", &[])
            .await
            .unwrap_or_else(|e| panic!("after failed COPY: {e:?}"))
            .get::<_, i32>(0),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_reaches_the_right_query_only() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 2)).await;
    let a = p.client().await;
    let b = p.client().await;
    let token = a.cancel_token();
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let r = a.simple_query("SELECT pg_sleep(10)").await;
        (r, started.elapsed())
    });
    let other = tokio::spawn(async move { b.query_one("SELECT pg_sleep(1.5), 7", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (r, elapsed) = slow.await.unwrap();
    assert_eq!(r.unwrap_err().code().unwrap().code(), "57014");
    assert!(elapsed < Duration::from_secs(5), "cancel took {elapsed:?}");
    let r = other.await.unwrap().unwrap();
    assert_eq!(r.get::<_, i32>(1), 7);
    // A stale cancel (client idle, its server back in the pool and in use by another client)
    // must not cancel that other client's query.
    let a2 = p.client().await;
    let stale = a2.cancel_token();
    a2.simple_query("SELECT 1").await.unwrap();
    let c = p.client().await;
    let busy = tokio::spawn(async move { c.query_one("SELECT pg_sleep(1), 9", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stale.cancel_query(tokio_postgres::NoTls).await.unwrap();
    assert_eq!(busy.await.unwrap().unwrap().get::<_, i32>(1), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listen_notify_delivered() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 2)).await;
    let (client, mut conn) = tokio_postgres::connect(&p.conn_str(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    client.batch_execute("LISTEN jobs").await.unwrap();
    let other = p.client().await;
    other.batch_execute("NOTIFY jobs, 'hello'").await.unwrap();
    other
        .execute("SELECT pg_notify('jobs', $1)", &[&"world"])
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, ("jobs".into(), "hello".into()));
    assert_eq!(second, ("jobs".into(), "world".into()));
    let status = p.proxy.pools_status();
    assert_eq!(status[0].pinned_clients, 1);
    assert!(
        p.metrics_text()
            .contains("vigil_pg_pinned_clients_total{reason=\"listen\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_search_path_never_leaks() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 2)).await;
    let a = p.client().await;
    a.batch_execute("CREATE SCHEMA other; CREATE TABLE other.t (v text); INSERT INTO other.t VALUES ('other'); CREATE TABLE public.t (v text); INSERT INTO public.t VALUES ('public')")
        .await
        .unwrap();
    a.batch_execute("SET search_path TO other").await.unwrap();
    assert_eq!(
        a.query_one("SELECT v FROM t", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "other"
    );
    // Many other clients churn through the remaining server; none sees the setting.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let cs = p.conn_str();
        tasks.push(tokio::spawn(async move {
            let c = connect(&cs).await;
            for _ in 0..20 {
                let v: String = c.query_one("SELECT v FROM t", &[]).await.unwrap().get(0);
                assert_eq!(v, "public");
                let sp: String = c.query_one("SHOW search_path", &[]).await.unwrap().get(0);
                assert_eq!(sp, "\"$user\", public");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        a.query_one("SELECT v FROM t", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "other"
    );
    drop(a);
    // After the pinned client leaves, its server is reset before reuse.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let c = p.client().await;
        let sp: String = c.query_one("SHOW search_path", &[]).await.unwrap().get(0);
        assert_eq!(sp, "\"$user\", public");
    }
}

mod lifecycle {
    use super::*;
    use bytes::Bytes;
    use vigil_proxy::pg::protocol::buf::Frame;
    use vigil_proxy::pg::protocol::extended::{Execute, Parse, Target, flush, sync};
    use vigil_proxy::pg::protocol::simple::query;

    fn parse(name: &str, sql: &str) -> Bytes {
        Parse {
            name: name.into(),
            query: sql.into(),
            param_types: vec![],
        }
        .encode()
    }
    fn bind(stmt: &str) -> Bytes {
        Frame::new(b'B')
            .cstr("")
            .cstr(stmt)
            .i16(0)
            .i16(0)
            .i16(0)
            .finish()
    }
    fn exec() -> Bytes {
        Execute {
            portal: "",
            max_rows: 0,
        }
        .encode()
    }
    fn close(name: &str) -> Bytes {
        Target { kind: b'S', name }.encode(b'C')
    }

    /// Steps of (frames, ReadyForQuery count).
    fn script() -> Vec<(Vec<Bytes>, usize)> {
        let mut steps = vec![
            (
                vec![
                    parse("a", "SELECT 1 AS one"),
                    parse("b", "SELECT 2 AS two"),
                    sync(),
                ],
                1,
            ),
            (vec![bind("a"), exec(), bind("b"), exec(), sync()], 1),
            // Close, then reuse the name for other SQL.
            (vec![close("a"), sync()], 1),
            (vec![bind("a"), exec(), sync()], 1),
            (
                vec![parse("a", "SELECT 'again' AS a"), bind("a"), exec(), sync()],
                1,
            ),
            // Duplicate names, unknown names, closing unknown names.
            (vec![close("never"), sync()], 1),
            (
                vec![
                    parse("b", "SELECT 3"),
                    bind("b"),
                    exec(),
                    sync(),
                    bind("b"),
                    exec(),
                    sync(),
                ],
                2,
            ),
            (
                vec![
                    Target {
                        kind: b'S',
                        name: "nope",
                    }
                    .encode(b'D'),
                    sync(),
                ],
                1,
            ),
            // Errors mid-pipeline skip to Sync; the next batch works.
            (
                vec![
                    parse("c", "SELECT 1/0"),
                    bind("c"),
                    exec(),
                    bind("b"),
                    exec(),
                    sync(),
                ],
                1,
            ),
            (
                vec![bind("c"), exec(), sync(), bind("b"), exec(), sync()],
                2,
            ),
            (
                vec![
                    parse("bad", "SELEC"),
                    bind("bad"),
                    exec(),
                    sync(),
                    bind("bad"),
                    exec(),
                    sync(),
                ],
                2,
            ),
            // DEALLOCATE and DISCARD ALL forget protocol-level statements.
            (vec![query("DEALLOCATE b")], 1),
            (vec![bind("b"), exec(), sync()], 1),
            (
                vec![parse("d", "SELECT 4"), sync(), query("DEALLOCATE ALL")],
                2,
            ),
            (vec![bind("d"), exec(), sync()], 1),
            (
                vec![parse("e", "SELECT 5"), sync(), query("DISCARD ALL")],
                2,
            ),
            (vec![bind("e"), exec(), sync()], 1),
            // Flush answers at once, before any Sync.
            (vec![parse("f", "SELECT 6"), flush()], 0),
            (vec![bind("f"), exec(), sync()], 1),
        ];
        // Many statements on a server that keeps only a few (eviction), executed round-robin.
        for round in 0..3 {
            let mut frames = Vec::new();
            for i in 0..12 {
                if round == 0 {
                    frames.push(parse(&format!("m{i}"), &format!("SELECT {i} AS n{i}")));
                }
                frames.push(bind(&format!("m{i}")));
                frames.push(exec());
            }
            frames.push(sync());
            steps.push((frames, 1));
        }
        steps
    }

    async fn run(conn: &mut vigil_proxy::pg::upstream::ServerConn) -> Vec<String> {
        let mut out = Vec::new();
        for (frames, syncs) in script() {
            if syncs == 0 {
                // Flush: read exactly the ParseComplete.
                for f in &frames {
                    conn.wr.write_all(f).await.unwrap();
                }
                let m = tokio::time::timeout(Duration::from_secs(5), read(conn))
                    .await
                    .expect("Flush must be answered without Sync");
                out.push(describe(&m));
            } else {
                out.extend(transcript(conn, &frames, syncs).await);
            }
            out.push("--".into());
        }
        out
    }

    use tokio::io::AsyncWriteExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn prepared_statement_lifecycle_matches_postgres() {
        let pg = PgServer::shared();
        let db = database(pg);
        let mut cfg = config(pg, &db.name, 2);
        cfg.max_prepared_statements = 3;
        let p = Proxy::start(cfg).await;
        let mut direct = raw(("127.0.0.1".into(), pg.port()), ROLE, ROLE_PW, &db.name).await;
        let mut proxied = raw(("127.0.0.1".into(), p.addr.port()), USER, USER_PW, "crm").await;
        // Another client churns the pool so statements must be re-prepared on other servers.
        let cs = p.conn_str();
        let noise = tokio::spawn(async move {
            let c = connect(&cs).await;
            loop {
                if c.query("SELECT $1::int", &[&1i32]).await.is_err() {
                    break;
                }
            }
        });
        let a = run(&mut direct).await;
        let b = run(&mut proxied).await;
        noise.abort();
        assert!(
            a.iter().any(|l| l.contains("26000")),
            "script must exercise missing statements"
        );
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            assert_eq!(x, y, "line {i}\ndirect: {a:?}\nvigil:  {b:?}");
        }
        assert_eq!(a.len(), b.len());
    }
}

mod copy_extended {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use vigil_proxy::pg::protocol::buf::Frame;
    use vigil_proxy::pg::protocol::copy::{copy_data, copy_done};
    use vigil_proxy::pg::protocol::extended::{Execute, Parse, sync};

    async fn start_copy(conn: &mut vigil_proxy::pg::upstream::ServerConn) {
        let frames = [
            Parse {
                name: String::new(),
                query: "COPY cx FROM STDIN".into(),
                param_types: vec![],
            }
            .encode(),
            Frame::new(b'B')
                .cstr("")
                .cstr("")
                .i16(0)
                .i16(0)
                .i16(0)
                .finish(),
            Execute {
                portal: "",
                max_rows: 0,
            }
            .encode(),
            sync(),
        ];
        for f in frames {
            conn.wr.write_all(&f).await.unwrap();
        }
        assert_eq!(
            describe(
                &tokio::time::timeout(Duration::from_secs(5), read(conn))
                    .await
                    .expect("start_copy read")
            ),
            "1"
        );
        assert_eq!(
            describe(
                &tokio::time::timeout(Duration::from_secs(5), read(conn))
                    .await
                    .expect("start_copy read")
            ),
            "2"
        );
        assert_eq!(
            describe(
                &tokio::time::timeout(Duration::from_secs(5), read(conn))
                    .await
                    .expect("start_copy read")
            ),
            "G"
        );
    }

    /// A server is never handed to another client between the end of an extended-protocol
    /// COPY (or its failure) and the client's Sync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn server_held_until_sync_after_copy() {
        let pg = PgServer::shared();
        let db = database(pg);
        let mut cfg = config(pg, &db.name, 1);
        cfg.pool_timeout = 300;
        let p = Proxy::start(cfg).await;
        let other = p.client().await;
        other
            .batch_execute("CREATE TABLE cx (v int)")
            .await
            .unwrap();
        let mut a = raw(("127.0.0.1".into(), p.addr.port()), USER, USER_PW, "crm").await;
        // Failure mid-COPY: the server waits for a Sync.
        start_copy(&mut a).await;
        a.wr.write_all(&copy_data(b"oops\n")).await.unwrap();
        let e = describe(
            &tokio::time::timeout(Duration::from_secs(5), read(&mut a))
                .await
                .expect("a read"),
        );
        assert!(e.starts_with("E ERROR 22P02"), "{e}");
        let busy = other.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(busy.code().unwrap().code(), "53300");
        a.wr.write_all(&copy_done()).await.unwrap();
        a.wr.write_all(&sync()).await.unwrap();
        assert_eq!(
            describe(
                &tokio::time::timeout(Duration::from_secs(5), read(&mut a))
                    .await
                    .expect("a read")
            ),
            "Z I"
        );
        other.simple_query("SELECT 1").await.unwrap();
        // Success: rows are committed only at the client's Sync.
        start_copy(&mut a).await;
        a.wr.write_all(&copy_data(b"1\n2\n")).await.unwrap();
        a.wr.write_all(&copy_done()).await.unwrap();
        // PostgreSQL sends CommandComplete at Flush (or Sync).
        a.wr.write_all(&vigil_proxy::pg::protocol::extended::flush())
            .await
            .unwrap();
        assert_eq!(
            describe(
                &tokio::time::timeout(Duration::from_secs(5), read(&mut a))
                    .await
                    .expect("a read")
            ),
            "C COPY 2"
        );
        let busy = other.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(busy.code().unwrap().code(), "53300");
        a.wr.write_all(&sync()).await.unwrap();
        assert_eq!(
            describe(
                &tokio::time::timeout(Duration::from_secs(5), read(&mut a))
                    .await
                    .expect("a read")
            ),
            "Z I"
        );
        let n: i64 = other
            .query_one("SELECT count(*) FROM cx", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
    }
}
