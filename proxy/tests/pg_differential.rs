//! Differential test: a corpus of SQL cases (DDL, DML, errors, types, NULLs, unicode,
//! multi-statement) runs directly against PostgreSQL and through Vigil, in the simple protocol,
//! the extended protocol with the unnamed statement, and pipelined named statements; column
//! names, types, rows, command tags, notices and SQLSTATEs must be identical.

#[path = "pg/harness.rs"]
mod harness;

#[path = "pg/transcript.rs"]
mod transcript;

use harness::*;
use transcript::run_case;
use vigil_testkit::PgServer;

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
