//! Real clients through Vigil: a scripted psql session with output identical to a direct run,
//! and pgbench in every query mode with zero failed transactions.

#[path = "pg/harness.rs"]
mod harness;

use std::process::Command;

use harness::*;
use vigil_testkit::PgServer;

fn psql_script(pg: &PgServer, port: u16, user: &str, password: &str, db: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pg/session.sql");
    let out = Command::new(pg.bin_dir().join("psql"))
        .env("PGPASSWORD", password)
        .env("PGAPPNAME", "vigil-test")
        .env("PGCLIENTENCODING", "UTF8")
        .args([
            "-X",
            "-a",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            db,
            "-f",
            script,
        ])
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    // psql writes errors to stderr; keep both, each in order.
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_session_identical_to_direct() {
    let pg = PgServer::shared();
    let direct_db = database(pg);
    let proxied_db = database(pg);
    let p = Proxy::start(config(pg, &proxied_db.name, 4)).await;
    let port = p.addr.port();
    let direct = tokio::task::spawn_blocking({
        let name = direct_db.name.clone();
        move || {
            psql_script(
                PgServer::shared(),
                PgServer::shared().port(),
                ROLE,
                ROLE_PW,
                &name,
            )
        }
    })
    .await
    .unwrap();
    let proxied = tokio::task::spawn_blocking(move || {
        psql_script(PgServer::shared(), port, USER, USER_PW, "crm")
    })
    .await
    .unwrap();
    assert!(direct.contains("done"), "{direct}");
    assert!(direct.contains("division by zero"), "{direct}");
    assert!(direct.contains("hello 42"), "{direct}");
    if direct != proxied {
        let d: Vec<&str> = direct.lines().collect();
        let v: Vec<&str> = proxied.lines().collect();
        for (i, (a, b)) in d.iter().zip(v.iter()).enumerate() {
            if a != b {
                panic!(
                    "first difference at line {i}:\n direct: {a}\n vigil:  {b}\n\nfull vigil output:\n{proxied}"
                );
            }
        }
        panic!(
            "outputs differ in length: {} vs {}\n{proxied}",
            d.len(),
            v.len()
        );
    }
}

fn pgbench(pg: &PgServer, port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new(pg.bin_dir().join("pgbench"))
        .env("PGPASSWORD", USER_PW)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER])
        .args(args)
        .arg("crm")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn failed_transactions(out: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.starts_with("number of failed transactions:"))
        .and_then(|l| l.split(':').nth(1)?.split_whitespace().next()?.parse().ok())
}

fn processed(out: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.starts_with("number of transactions actually processed:"))
        .and_then(|l| {
            l.split(':')
                .nth(1)?
                .split_whitespace()
                .next()?
                .split('/')
                .next()?
                .parse()
                .ok()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbench_all_modes_transaction_pool_of_four() {
    let pg = PgServer::shared();
    let db = database(pg);
    let p = Proxy::start(config(pg, &db.name, 4)).await;
    let port = p.addr.port();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        pgbench(PgServer::shared(), port, &["-i", "-s", "1", "-q"])
    })
    .await
    .unwrap();
    assert!(ok, "pgbench -i failed:\n{out}");
    for mode in ["simple", "extended", "prepared"] {
        let (ok, out) = tokio::task::spawn_blocking(move || {
            pgbench(
                PgServer::shared(),
                port,
                &["-M", mode, "-c", "16", "-j", "2", "-T", "10", "-n"],
            )
        })
        .await
        .unwrap();
        assert!(ok, "pgbench -M {mode} failed:\n{out}");
        assert_eq!(failed_transactions(&out), Some(0), "-M {mode}:\n{out}");
        assert!(processed(&out).unwrap_or(0) > 0, "-M {mode}:\n{out}");
        assert!(!out.contains("ERROR"), "-M {mode}:\n{out}");
    }
    let status = p.proxy.pools_status();
    assert_eq!(status[0].pool_size, 4);
    assert!(status[0].servers_active + status[0].servers_idle <= 4);
}
