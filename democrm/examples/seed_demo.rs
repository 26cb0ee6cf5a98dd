//! Seeds a throwaway PostgreSQL (vigil-testkit) at demo scale (or `tiny`) and prints the load
//! report and the plans of the heavy queries:
//! `cargo run -p vigil-democrm --example seed_demo [--release] -- [demo|tiny]`.

use std::time::Instant;

use vigil_democrm::{Scale, seed};
use vigil_testkit::PgServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scale = match std::env::args().nth(1).as_deref() {
        Some("tiny") => Scale::tiny(),
        _ => Scale::demo(),
    };
    let pg = PgServer::start_new()?;
    let db = pg.create_database()?;
    let report = seed(&db.url, scale).await?;
    println!("{scale:?}");
    for (table, rows) in &report.rows {
        println!("{table:>12} {rows:>9}");
    }
    println!(
        "load {:.2?}, keys+indexes+analyze {:.2?}, total {:.2?}",
        report.load, report.index, report.total
    );
    for sql in [
        "EXPLAIN ANALYZE SELECT count(*) FROM contacts c LEFT JOIN companies co ON co.id = c.company_id WHERE c.first_name ILIKE '%smi%' OR c.last_name ILIKE '%smi%' OR c.email ILIKE '%smi%' OR co.name ILIKE '%smi%'",
        "EXPLAIN ANALYZE SELECT kind, count(*) FROM activities WHERE occurred_at >= '2026-10-02T00:00:00+00:00' GROUP BY kind",
    ] {
        let started = Instant::now();
        let out = pg.psql(&db.name, sql)?;
        println!(
            "--- {:.2?}\n{}",
            started.elapsed(),
            out.lines().last().unwrap_or_default()
        );
    }
    Ok(())
}
