//! Heavy-query reports end to end, in this process: `vigil run` (pg proxy with 1-second buckets
//! and plan capture, incident service storing the buckets in PostgreSQL) in front of a real
//! PostgreSQL with `pg_stat_statements` and (when installed) `hypopg`.
//!
//! 1. A workload where one statement, tagged with a sqlcommenter route, is heavy for lack of an
//!    index on `contacts.email`: the report ranks it first, names its route, carries its plan and
//!    suggests `CREATE INDEX ON contacts (email)` (confirmed with hypopg when installed). A
//!    marker email address planted in the data is in no report format, nor in the store.
//! 2. The first workload's buckets are moved 45 minutes back (as if it ran earlier; the store
//!    keeps minute buckets and the test cannot wait for minutes to pass), the index is created
//!    and the workload replayed: `--compare previous` shows the improvement, and a statement
//!    that became 30x slower (pg_sleep 1 ms -> 30 ms) is flagged as a regression. A statement run only by a client that
//!    bypasses the proxy appears as "outside proxy" (pg_stat_statements).
//! 3. The HTML report renders in headless Chromium (laptop and phone screenshots in
//!    target/test-artifacts/).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pg_connect as connect;
use vigil::report::{ReportArgs, report};
use vigil_incident::reports::Format;
use vigil_testkit::PgServer;

const MARKER: &str = "vigil-marker-7f3a9c@example.com";

/// The search by email (no index: a sequential scan) and two light statements, for `secs`.
async fn workload(proxy: &tokio_postgres::Client, secs: f64, sleep_ms: u32) {
    let start = Instant::now();
    let mut i = 0u32;
    while start.elapsed().as_secs_f64() < secs {
        let email = if i.is_multiple_of(7) {
            MARKER.to_string()
        } else {
            format!("user{}@example.com", i * 13 % 20_000)
        };
        proxy
            .simple_query(&format!(
                "SELECT id, name FROM contacts WHERE email = '{email}' /*route='%2Fcontacts%2Fsearch',controller='contacts',action='search'*/"
            ))
            .await
            .unwrap();
        for k in 0..3 {
            proxy
                .simple_query(&format!(
                    "SELECT name FROM contacts WHERE id = {}",
                    i * 3 + k + 1
                ))
                .await
                .unwrap();
        }
        if i % 4 == 1 {
            // Extended protocol: explained as a generic plan, no parameter value is kept.
            let name = format!("name {}", i * 7 % 20_000);
            proxy
                .query("SELECT id FROM contacts WHERE name = $1", &[&name])
                .await
                .unwrap();
        }
        if i.is_multiple_of(4) {
            proxy
                .simple_query(&format!(
                    "SELECT pg_sleep({}) /*route='%2Fdeals%2Fpipeline'*/",
                    f64::from(sleep_ms) / 1000.0
                ))
                .await
                .unwrap();
        }
        i += 1;
    }
}

fn args(config: &Path, since: &str, compare: Option<&str>, format: Format) -> ReportArgs {
    ReportArgs {
        config: config.to_path_buf(),
        since: since.into(),
        until: None,
        compare: compare.map(Into::into),
        format,
        pgss: true,
    }
}

fn artifacts() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Headless Chromium screenshots of an HTML report (laptop width, and phone width if asked).
fn screenshot(html: &Path, phone: bool) {
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| vigil_testkit::which(c).is_some())
    else {
        assert!(
            !ci(),
            "chromium is required in CI (apt-get install chromium)"
        );
        println!("SKIPPED screenshot: chromium is not installed (apt-get install chromium)");
        return;
    };
    let stem = html.file_stem().unwrap().to_string_lossy().into_owned();
    let sizes: &[(&str, &str)] = if phone {
        &[("laptop", "1280,1800"), ("phone", "390,1800")]
    } else {
        &[("laptop", "1280,1800")]
    };
    for (name, size) in sizes {
        let png = html.with_file_name(format!("{stem}-{name}.png"));
        let _ = std::fs::remove_file(&png);
        let out = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                &format!("--window-size={size}"),
                &format!("--screenshot={}", png.display()),
            ])
            .arg(format!("file://{}", html.display()))
            .output()
            .expect("run chromium");
        let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(
            len > 10_000,
            "no screenshot {} ({len} bytes): {}",
            png.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_ranks_the_missing_index_statement_suggests_the_index_and_shows_the_fix() {
    let pg = PgServer::shared();
    let db = pg.create_database().unwrap();
    let store_db = pg.create_database().unwrap();
    let admin = connect(&db.url).await;
    admin
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
             CREATE TABLE contacts (id serial PRIMARY KEY, email text NOT NULL, name text NOT NULL);
             INSERT INTO contacts (email, name) SELECT 'user' || g || '@example.com', 'name ' || g
               FROM generate_series(1, 40000) g;
             INSERT INTO contacts (email, name) VALUES ('{MARKER}', 'Marker Person');
             ANALYZE contacts;"
        ))
        .await
        .unwrap();
    let hypopg = admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS hypopg")
        .await
        .is_ok();
    if !hypopg {
        assert!(
            !ci(),
            "hypopg is required in CI (apt-get install postgresql-15-hypopg)"
        );
        println!("hypopg not installed: the index suggestion is checked without confirmation");
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            r#"[admin]
listen = "127.0.0.1:0"
[pg]
listen = "127.0.0.1:0"
auth_type = "trust"
pool_size = 4
[[pg.databases]]
name = "crm"
url = "postgres://postgres@127.0.0.1:{port}/{db}"
[queries]
bucket_secs = 1
[queries.plans]
enabled = true
top = 4
[incident]
listen = "127.0.0.1:0"
store = "postgres://postgres@127.0.0.1:{port}/{store}"
"#,
            port = db.port,
            db = db.name,
            store = store_db.name,
        ),
    )
    .unwrap();
    let cfg = vigil::config::Config::load(&config).expect("config");
    let running = vigil::run::start(&cfg, dir.path())
        .await
        .expect("vigil starts");
    let pg_addr = running.pg_addr.unwrap();
    let proxy = connect(&format!(
        "postgres://postgres@{}:{}/crm",
        pg_addr.ip(),
        pg_addr.port()
    ))
    .await;
    let store = connect(&store_db.url).await;

    // Phase 1: no index. Runs until the plan of the search is stored (at most 20 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        workload(&proxy, 1.0, 1).await;
        let stored = store
            .query_one(
                "SELECT count(DISTINCT fingerprint) FROM query_stats WHERE extra LIKE '%Vigil Tables%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if stored >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "no plan captured within 20 s");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let md = report(&args(&config, "10m", None, Format::Md))
        .await
        .unwrap();
    let json = report(&args(&config, "10m", None, Format::Json))
        .await
        .unwrap();
    let html = report(&args(&config, "10m", None, Format::Html))
        .await
        .unwrap();
    std::fs::write(artifacts().join("report-before-index.html"), &html).unwrap();
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = &r["top_total_time"][0];
    let s = r["statements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| &s["fingerprint"] == first)
        .unwrap();
    assert!(
        s["query"].as_str().unwrap().contains("where email = $1"),
        "heaviest: {s}\n{md}"
    );
    let routes: Vec<&str> = s["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(routes.contains(&"/contacts/search"), "{routes:?}");
    assert!(routes.contains(&"contacts#search"), "{routes:?}");
    assert!(s["plan"].is_array(), "no plan: {s}");
    let advice = s["advice"].as_array().unwrap();
    let index = advice
        .iter()
        .find(|a| a["suggestion"] == "CREATE INDEX ON contacts (email)")
        .unwrap_or_else(|| panic!("no index advice: {advice:?}"));
    if hypopg {
        let c = &index["confirmed"];
        assert!(
            c["cost_after"].as_f64().unwrap() < c["cost_before"].as_f64().unwrap(),
            "{index}"
        );
    }
    assert!(md.contains("CREATE INDEX ON contacts (email)") && html.contains("/contacts/search"));
    let by_name = r["statements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["query"].as_str().unwrap().contains("where name = $1"))
        .unwrap();
    assert!(
        by_name["advice"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["suggestion"] == "CREATE INDEX ON contacts (name)"),
        "extended-protocol statement without plan advice: {by_name}"
    );

    // Phase 2: move phase 1 back in time, create the index, replay with a 30x slower sleep.
    store
        .execute(
            "UPDATE query_stats SET bucket_ms = bucket_ms - 2700000",
            &[],
        )
        .await
        .unwrap();
    admin
        .batch_execute("CREATE INDEX ON contacts (email); ANALYZE contacts")
        .await
        .unwrap();
    // A client that bypasses the proxy (a cron job).
    for _ in 0..3 {
        admin
            .simple_query("SELECT count(*) FROM contacts WHERE name LIKE 'name 1%'")
            .await
            .unwrap();
    }
    workload(&proxy, 3.0, 30).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut outputs = Vec::new();
    for f in [Format::Json, Format::Md, Format::Html] {
        outputs.push(
            report(&args(&config, "30m", Some("previous"), f))
                .await
                .unwrap(),
        );
    }
    let r: serde_json::Value = serde_json::from_str(&outputs[0]).unwrap();
    let stmts = r["statements"].as_array().unwrap();
    let search = stmts
        .iter()
        .find(|x| x["query"].as_str().unwrap().contains("where email = $1"))
        .unwrap();
    let prev = &search["previous"];
    assert!(prev.is_object(), "no comparison: {search}");
    // Mean time per call (p95s of stored buckets are upper bounds, sensitive to a busy machine).
    let mean_now = search["mean_seconds"].as_f64().unwrap();
    let mean_before = prev["total_seconds"].as_f64().unwrap() / prev["calls"].as_f64().unwrap();
    assert!(
        mean_now * 2.0 < mean_before,
        "no improvement: {mean_before} -> {mean_now}"
    );
    let sleep = stmts
        .iter()
        .find(|x| x["query"].as_str().unwrap().contains("pg_sleep"))
        .unwrap();
    let regressed = r["regressions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["fingerprint"] == sleep["fingerprint"])
        .unwrap_or_else(|| panic!("pg_sleep not flagged: {}", r["regressions"]));
    assert!(regressed["factor"].as_f64().unwrap() >= 3.0, "{regressed}");
    assert!(
        !r["regressions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["fingerprint"] == search["fingerprint"]),
        "the improved statement is flagged"
    );
    let outside = stmts
        .iter()
        .find(|x| x["origin"] == "outside_proxy" && x["query"].as_str().unwrap().contains("like"))
        .unwrap_or_else(|| panic!("no outside-proxy statement: {}", outputs[1]));
    assert!(outside["calls"].as_u64().unwrap() >= 3);
    assert!(outputs[1].contains("outside proxy") && outputs[2].contains("outside proxy"));

    // No customer value anywhere: reports (both runs, every format) and the store.
    for out in outputs.iter().chain([&md, &json, &html]) {
        assert!(!out.contains(MARKER), "marker leaked into a report");
        assert!(!out.contains("user13@example.com"));
    }
    let dump: i64 = store
        .query_one(
            "SELECT (SELECT count(*) FROM query_stats WHERE extra LIKE '%' || $1 || '%' OR query LIKE '%' || $1 || '%') \
             + (SELECT count(*) FROM signals WHERE body LIKE '%' || $1 || '%')",
            &[&MARKER],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dump, 0, "marker leaked into the store");

    // /reports/latest from the incident service.
    let addr = running.incident_addr.unwrap();
    let body = reqwest::get(format!("http://{addr}/reports/latest?format=md&since=1h"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("# Vigil heavy-query report") && !body.contains(MARKER),
        "{body}"
    );

    let out = artifacts().join("report.html");
    std::fs::write(&out, &outputs[2]).unwrap();
    std::fs::write(artifacts().join("report.md"), &outputs[1]).unwrap();
    screenshot(&out, true);
    screenshot(&artifacts().join("report-before-index.html"), false);
    running.stop().await.unwrap();
}
