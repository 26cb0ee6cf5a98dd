//! The pg proxy's differential corpus (DDL, DML, errors, types, NULLs, unicode,
//! multi-statement; simple, extended unnamed and pipelined named) run twice per case directly and
//! through Vigil with a cache rule matching every statement: every transcript, hit or miss, must
//! equal PostgreSQL's.

#[path = "pg/harness.rs"]
mod harness;

#[path = "pg/transcript.rs"]
mod transcript;

#[path = "cache_support/mod.rs"]
mod support;

use harness::*;
use transcript::run_case;
use vigil_proxy::cache::Backend;
use vigil_testkit::PgServer;

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
