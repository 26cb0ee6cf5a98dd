//! The pg proxy's differential corpus (DDL, DML, errors, types, NULLs, unicode,
//! multi-statement; simple, extended unnamed and pipelined named) run twice per case directly and
//! through Vigil with a cache rule matching every statement: every transcript, hit or miss, must
//! equal PostgreSQL's.

#[path = "pg/harness.rs"]
mod harness;

#[path = "cache_support/mod.rs"]
mod support;

use bytes::Bytes;
use harness::*;
use vigil_proxy::cache::Backend;
use vigil_proxy::pg::pinning::split_statements;
use vigil_proxy::pg::protocol::buf::Frame;
use vigil_proxy::pg::protocol::extended::{Execute, Parse, Target, sync};
use vigil_proxy::pg::protocol::simple;
use vigil_proxy::pg::upstream::ServerConn;
use vigil_testkit::PgServer;

fn bind(portal: &str, stmt: &str) -> Bytes {
    Frame::new(b'B')
        .cstr(portal)
        .cstr(stmt)
        .i16(0)
        .i16(0)
        .i16(0)
        .finish()
}

fn parse(name: &str, sql: &str) -> Bytes {
    Parse {
        name: name.into(),
        query: sql.into(),
        param_types: vec![],
    }
    .encode()
}

async fn run_case(conn: &mut ServerConn, i: usize, sql: &str) -> Vec<String> {
    let mut out = vec!["-- simple".to_owned()];
    out.extend(transcript(conn, &[simple::query(sql)], 1).await);
    if split_statements(sql).len() == 1 {
        out.push("-- extended unnamed".into());
        let frames = [
            parse("", sql),
            bind("", ""),
            Target {
                kind: b'P',
                name: "",
            }
            .encode(b'D'),
            Execute {
                portal: "",
                max_rows: 0,
            }
            .encode(),
            sync(),
        ];
        out.extend(transcript(conn, &frames, 1).await);
        out.push("-- extended named, pipelined".into());
        let name = format!("case_{i}");
        let frames = [
            parse(&name, sql),
            Target {
                kind: b'S',
                name: &name,
            }
            .encode(b'D'),
            sync(),
            bind("", &name),
            Execute {
                portal: "",
                max_rows: 0,
            }
            .encode(),
            Target {
                kind: b'S',
                name: &name,
            }
            .encode(b'C'),
            sync(),
        ];
        out.extend(transcript(conn, &frames, 2).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_identical_direct_and_through_the_cache() {
    let corpus = include_str!("pg/corpus.sql");
    let cases: Vec<&str> = corpus.lines().filter(|l| !l.trim().is_empty()).collect();
    let pg = PgServer::shared();
    let direct_db = database(pg);
    let proxied_db = database(pg);
    let p = support::CacheProxy::start(
        config(pg, &proxied_db.name, 2),
        "rules:\n  - pattern: \"*\"\n",
        support::settings(Backend::Memory),
    )
    .await;
    p.warm().await;
    let mut direct = raw(
        ("127.0.0.1".into(), pg.port()),
        ROLE,
        ROLE_PW,
        &direct_db.name,
    )
    .await;
    let mut proxied = raw(("127.0.0.1".into(), p.addr.port()), USER, USER_PW, "crm").await;
    let mut mismatches = Vec::new();
    for (i, sql) in cases.iter().enumerate() {
        // Reads run twice (the second run is served from the cache when eligible).
        let read = ["select", "values", "table", "with"]
            .iter()
            .any(|k| sql.trim_start().to_ascii_lowercase().starts_with(k));
        for round in 0..if read { 2 } else { 1 } {
            let a = run_case(&mut direct, i + 1000 * round, sql).await;
            let b = run_case(&mut proxied, i + 1000 * round, sql).await;
            if a != b {
                mismatches.push(format!(
                    "case {i} round {round}: {sql}\n direct: {a:?}\n vigil:  {b:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    let s = p.cache.status();
    assert!(s.hits >= 20, "the corpus should hit the cache: {s:?}");
}
