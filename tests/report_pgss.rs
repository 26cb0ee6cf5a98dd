//! `pg_stat_statements` snapshots end to end, with the real `vigil` binary: pg proxy and incident
//! service in one process (SQLite store), snapshots every second. Statements run directly
//! against PostgreSQL (bypassing the proxy, as a cron job would) between two snapshots are
//! reported by `vigil report` with the period's calls, not the cumulative count from before;
//! a statement also sent through the proxy is merged with the proxy's own by normalized text;
//! a marker email used as a literal (also in a utility statement, which PostgreSQL 15 keeps
//! verbatim) is in no report format, not in the store file and not in the process's logs; a
//! database without the extension is skipped and logged once.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Vigil, obs, pg_connect as connect};
use vigil_testkit::{PgServer, free_port};

const MARKER: &str = "pgss-marker-4b1d9e@example.com";

async fn metric(admin: u16, series: &str) -> f64 {
    let text = match reqwest::get(format!("http://127.0.0.1:{admin}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    obs::sample(&text, series).unwrap_or(0.0)
}

/// Wait until `series` reaches `at_least`.
async fn wait_metric(admin: u16, series: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = metric(admin, series).await;
        if v >= at_least {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {v} (< {at_least})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `vigil report` over the last hour, run in the folder of `vigil run` (the store's path is
/// relative to it).
fn report(vigil: &Vigil, format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(vigil.dir.path())
        .args(["report", "--config"])
        .arg(&vigil.config)
        .args(["--since", "1h", "--compare", "previous", "--format", format])
        .output()
        .expect("run vigil report");
    assert!(
        out.status.success(),
        "vigil report --format {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_statements_between_snapshots_are_reported_for_the_period_without_constants() {
    let pg = PgServer::shared();
    let db = pg.create_database().unwrap();
    let plain = pg.create_database().unwrap();
    let direct = connect(&db.url).await;
    direct
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
             CREATE TABLE cron_contacts (id serial PRIMARY KEY, email text NOT NULL);
             INSERT INTO cron_contacts (email) SELECT 'user' || g || '@example.com'
               FROM generate_series(1, 2000) g;
             INSERT INTO cron_contacts (email) VALUES ('{MARKER}');"
        ))
        .await
        .unwrap();
    let nightly = format!("SELECT count(*) FROM cron_contacts WHERE email = '{MARKER}'");
    // Before Vigil runs: cumulative in pg_stat_statements, before any snapshot.
    for _ in 0..5 {
        direct.simple_query(&nightly).await.unwrap();
    }

    let (admin, pg_port, incident) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"[admin]
listen = "127.0.0.1:{admin}"
[pg]
listen = "127.0.0.1:{pg_port}"
auth_type = "trust"
pool_size = 2
[[pg.databases]]
name = "crm"
url = "postgres://postgres@127.0.0.1:{port}/{db}"
[[pg.databases]]
name = "plain"
url = "postgres://postgres@127.0.0.1:{port}/{plain}"
[queries]
bucket_secs = 1
[queries.pgss]
interval_secs = 1
max_entries = 100
[incident]
listen = "127.0.0.1:{incident}"
store = "sqlite://vigil.db"
"#,
        port = db.port,
        db = db.name,
        plain = plain.name,
    );
    let mut vigil = Vigil::start_logged(
        &config,
        "info,vigil_proxy::stats=debug,vigil_incident=debug",
    );
    common::wait_http(admin, "/metrics").await;

    let ok = "vigil_pgss_snapshots_total{database=\"crm\",result=\"ok\"}";
    // The first snapshot (the baseline) is taken; then the "cron job" runs, directly.
    wait_metric(admin, ok, 1.0).await;
    for _ in 0..7 {
        direct.simple_query(&nightly).await.unwrap();
    }
    direct
        .batch_execute(&format!(
            "COMMENT ON TABLE cron_contacts IS 'owner {MARKER}'"
        ))
        .await
        .unwrap();
    // The same statement through the proxy: the proxy's own, not "outside".
    let proxied = connect(&format!("postgres://postgres@127.0.0.1:{pg_port}/crm")).await;
    for i in 1..=3 {
        proxied
            .simple_query(&format!("SELECT id FROM cron_contacts WHERE id = {i}"))
            .await
            .unwrap();
    }
    let after = metric(admin, ok).await;
    // Two more snapshots after them (the second one is surely stored by the time the third
    // is counted), and a statistics window.
    wait_metric(admin, ok, after + 2.0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let json = report(&vigil, "json");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        r["pgss_source"]["kind"], "snapshots",
        "{}",
        r["pgss_source"]
    );
    assert!(r["pgss_source"]["snapshots"].as_u64().unwrap() >= 3);
    let stmts = r["statements"].as_array().unwrap();
    let find = |needle: &str| {
        stmts
            .iter()
            .find(|s| s["query"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no statement with {needle}: {json}"))
    };
    let cron = find("from cron_contacts where email = $");
    assert_eq!(cron["origin"], "outside_proxy");
    // 7 in the period, not the 12 since the last reset.
    assert_eq!(cron["calls"], 7, "{cron}");
    let comment = find("comment on table cron_contacts is $");
    assert_eq!(comment["origin"], "outside_proxy");
    assert_eq!(comment["calls"], 1);
    let by_id: Vec<&serde_json::Value> = stmts
        .iter()
        .filter(|s| {
            s["query"]
                .as_str()
                .unwrap()
                .contains("from cron_contacts where id = $")
        })
        .collect();
    assert_eq!(by_id.len(), 1, "merged by normalized text: {by_id:?}");
    assert_eq!(by_id[0]["origin"], "proxy");
    assert!(
        r["outside_proxy"]
            .as_array()
            .unwrap()
            .contains(&cron["fingerprint"])
    );

    let md = report(&vigil, "md");
    let html = report(&vigil, "html");
    assert!(
        md.contains("from the periodic snapshots the pg proxy stored"),
        "{md}"
    );
    assert!(html.contains("from the periodic snapshots the pg proxy stored"));
    for (name, out) in [("json", &json), ("md", &md), ("html", &html)] {
        assert!(!out.contains(MARKER), "marker in the {name} report");
        assert!(!out.contains("pgss-marker"), "marker in the {name} report");
    }
    let latest = reqwest::get(format!(
        "http://127.0.0.1:{incident}/reports/latest?format=json&since=1h"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let latest: serde_json::Value = serde_json::from_str(&latest).unwrap();
    assert_eq!(latest["pgss_source"]["kind"], "snapshots");
    assert!(!latest.to_string().contains("pgss-marker"));

    // The database without the extension: skipped every time, logged once.
    let skipped = "vigil_pgss_snapshots_total{database=\"plain\",result=\"no_extension\"}";
    assert!(metric(admin, skipped).await >= 2.0);

    // SIGTERM, then the store file (and its WAL) and the logs.
    let status = vigil.terminate();
    assert!(status.success(), "vigil run exited with {status}");
    let dir = vigil.dir.path();
    let mut files = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("vigil.db") {
            files += 1;
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
                "marker in {name}"
            );
            assert!(
                !bytes.windows(12).any(|w| w == b"pgss-marker-"),
                "marker in {name}"
            );
        }
    }
    assert!(files >= 1);
    // The store did get the snapshot entries (normalized).
    let store =
        vigil_incident::Store::open(&format!("sqlite://{}", dir.join("vigil.db").display()))
            .await
            .unwrap();
    let snaps = store
        .pgss_snapshots(Some("crm"), 0, i64::MAX)
        .await
        .unwrap();
    assert!(snaps.len() >= 3);
    assert!(
        snaps
            .iter()
            .flat_map(|s| &s.entries)
            .any(|e| e.query.starts_with("comment on table cron_contacts is $"))
    );
    store.close().await;
    let logs = vigil.log();
    assert!(
        logs.contains("pg_stat_statements snapshot"),
        "no snapshot log lines: {logs}"
    );
    assert!(!logs.contains("pgss-marker"), "marker in the logs");
    let not_installed = logs
        .lines()
        .filter(|l| l.contains("pg_stat_statements is not installed") && l.contains("plain"))
        .count();
    assert_eq!(not_installed, 1, "{logs}");
}
