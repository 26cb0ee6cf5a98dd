//! Differential test: a corpus of SQL cases (DDL, DML, errors, types, NULLs, unicode,
//! multi-statement) runs directly against PostgreSQL and through Vigil, in the simple protocol,
//! the extended protocol with the unnamed statement, and pipelined named statements; column
//! names, types, rows, command tags, notices and SQLSTATEs must be identical.

#[path = "pg/harness.rs"]
mod harness;

use bytes::Bytes;
use harness::*;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corpus_identical_direct_and_through_vigil() {
    let corpus = include_str!("pg/corpus.sql");
    let cases: Vec<&str> = corpus.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(cases.len() >= 100, "corpus has {} cases", cases.len());
    let pg = PgServer::shared();
    let direct_db = database(pg);
    let proxied_db = database(pg);
    let p = Proxy::start(config(pg, &proxied_db.name, 2)).await;
    let mut direct = raw(
        ("127.0.0.1".into(), pg.port()),
        ROLE,
        ROLE_PW,
        &direct_db.name,
    )
    .await;
    let mut proxied = raw(("127.0.0.1".into(), p.addr.port()), USER, USER_PW, "crm").await;
    // Another client keeps the pool busy so the proxied session hops between servers.
    let noise = {
        let cs = p.conn_str();
        tokio::spawn(async move {
            let c = connect(&cs).await;
            for _ in 0..2000 {
                if c.simple_query("SELECT 1").await.is_err() {
                    break;
                }
            }
        })
    };
    let mut errors = 0;
    let mut mismatches = Vec::new();
    for (i, sql) in cases.iter().enumerate() {
        let a = run_case(&mut direct, i, sql).await;
        let b = run_case(&mut proxied, i, sql).await;
        errors += a.iter().filter(|l| l.starts_with("E ")).count();
        if a != b {
            mismatches.push(format!("case {i}: {sql}\n direct: {a:?}\n vigil:  {b:?}"));
        }
    }
    noise.abort();
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(
        errors >= 20,
        "the corpus should exercise errors, saw {errors}"
    );
}
