//! Statement statistics end to end: a workload through the pg proxy with one deliberately slow
//! statement tagged with a sqlcommenter route. `/api/queries` ranks it first by total time and names
//! its route, and exactly one `heavy_query` signal is emitted for it. Plan capture of an
//! extended-protocol statement explains the custom plan of the sampled bound values (a skewed
//! column: index for the rare value) and the values appear in no signal, API, metric or report;
//! the opt-in redacted parameter sample shows shapes only.

#[path = "pg/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use harness::{Proxy, config, database};
use prometheus_client::registry::Registry;
use tower::ServiceExt;
use vigil_proxy::stats::heavy::HeavyRules;
use vigil_proxy::stats::params::ParameterSample;
use vigil_proxy::stats::{QueryStats, QueryStatsConfig};
use vigil_signal::{Emitter, Outcome};
use vigil_testkit::PgServer;

async fn get_json(router: &axum::Router, uri: &str) -> serde_json::Value {
    let resp = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{uri}");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tagged_statement_ranks_first_names_its_route_and_signals_heavy_once() {
    let pg = PgServer::shared();
    let db = database(pg);
    let (emitter, mut signals) = Emitter::channel(10_000);
    let rules = HeavyRules {
        p95_ms: 150.0,
        min_calls: 3,
        ..HeavyRules::default()
    };
    let mut registry = Registry::default();
    let stats = QueryStats::new(QueryStatsConfig::default(), rules, emitter, &mut registry);
    let proxy = Proxy::start_with_hook(config(pg, &db.name, 4), Some(stats.clone())).await;
    let client = proxy.client().await;
    client
        .batch_execute("CREATE TABLE contacts (id int PRIMARY KEY, email text)")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO contacts SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 500) g")
        .await
        .unwrap();

    // Two windows: the fast workload plus the slow statement, twice. Heavy must fire once.
    for _window in 0..2 {
        for i in 0..40 {
            client
                .query(
                    "SELECT email FROM contacts WHERE id = $1 /*route='%2Fcontacts%2F%3Aid'*/",
                    &[&(i % 500 + 1)],
                )
                .await
                .unwrap();
            client
                .simple_query(&format!("SELECT count(*) FROM contacts WHERE id > {i}"))
                .await
                .unwrap();
        }
        for _ in 0..4 {
            client
                .simple_query("SELECT pg_sleep(0.2), count(*) FROM contacts /*application='crm',route='%2Freports%2Fslow'*/")
                .await
                .unwrap();
        }
        stats.rotate(Duration::from_secs(60));
    }

    let router = stats.api_router();
    let body = get_json(&router, "/api/queries?sort=total_time&limit=5").await;
    let first = &body["queries"][0];
    assert!(
        first["query"].as_str().unwrap().contains("pg_sleep"),
        "{body:#}"
    );
    assert_eq!(first["routes"], serde_json::json!(["/reports/slow"]));
    assert_eq!(first["calls"], 8);
    assert!(first["p95_ms"].as_f64().unwrap() >= 190.0, "{first:#}");
    assert_eq!(first["heavy"], true);
    // No constant reaches the normalized text.
    assert!(
        !first["query"].as_str().unwrap().contains("0.2"),
        "{first:#}"
    );
    // Differently-constant simple queries share one fingerprint.
    let by_calls = get_json(&router, "/api/queries?sort=calls").await;
    let counts: Vec<u64> = by_calls["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["calls"].as_u64().unwrap())
        .collect();
    assert!(counts.contains(&80), "{by_calls:#}");

    let fp = first["fingerprint"].as_str().unwrap().to_owned();
    let one = get_json(&router, &format!("/api/queries/{fp}")).await;
    assert_eq!(one["by_database_role"][0]["database"], "crm");

    let mut heavy = Vec::new();
    let mut buckets = 0;
    while let Ok(s) = signals.try_recv() {
        if s.class.as_deref() == Some("heavy_query") {
            heavy.push(s);
        } else if s.class.as_deref() == Some("query_stats") {
            buckets += 1;
            let q = s.query.as_ref().unwrap();
            assert!(!q.query.contains("example.com"));
        }
    }
    assert_eq!(heavy.len(), 1, "{heavy:#?}");
    assert_eq!(heavy[0].outcome, Outcome::Firing);
    assert_eq!(heavy[0].attrs["fingerprint"], fp);
    assert_eq!(heavy[0].attrs["route"], "/reports/slow");
    assert!(buckets >= 6, "{buckets} buckets");

    // The top-K collector exports it.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(&format!(
            "vigil_query_calls_total{{fingerprint=\"{fp}\",database=\"crm\"}} 8"
        )),
        "{text}"
    );
    drop(client);
    let _ = Arc::strong_count(&stats);
}

/// A table where the generic plan (`email = $1`, two distinct values: half the table) is a
/// sequential scan and the custom plan for the rare value is an index scan.
async fn skewed_table(client: &tokio_postgres::Client, marker: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE orders (id serial PRIMARY KEY, email text, phone text, card text, note text);
             INSERT INTO orders (email, note) SELECT 'bulk@example.com', repeat('x', 50) FROM generate_series(1, 20000);
             INSERT INTO orders (email, note) SELECT '{marker}', 'y' FROM generate_series(1, 5);
             CREATE INDEX orders_email ON orders (email);
             ANALYZE orders;"
        ))
        .await
        .unwrap();
}

fn plans_config() -> QueryStatsConfig {
    let mut c = QueryStatsConfig::default();
    c.plans.enabled = true;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_plans_use_the_sampled_values_and_never_show_them() {
    let pg = PgServer::shared();
    let db = database(pg);
    let (emitter, mut signals) = Emitter::channel(100_000);
    let mut registry = Registry::default();
    let stats = QueryStats::new(
        plans_config(),
        HeavyRules::default(),
        emitter,
        &mut registry,
    );
    let proxy = Proxy::start_with_hook(config(pg, &db.name, 4), Some(stats.clone())).await;
    let p = Arc::downgrade(&proxy.proxy);
    stats.set_plan_connector(Arc::new(move |db: &str, user: &str| {
        p.upgrade()?.connect_params(db, user)
    }));
    let client = proxy.client().await;
    let marker = "plan-marker-5c1e@example.org";
    skewed_table(&client, marker).await;
    let stmt = client
        .prepare("SELECT id, note FROM orders WHERE email = $1")
        .await
        .unwrap();

    let mut plan = None;
    for _ in 0..40 {
        for _ in 0..3 {
            let rows = client.query(&stmt, &[&marker]).await.unwrap();
            assert_eq!(rows.len(), 5);
        }
        stats.rotate(Duration::from_secs(60));
        while let Ok(s) = signals.try_recv() {
            let json = s.to_json();
            assert!(!json.contains(marker), "a signal carries the value: {json}");
            if let Some(q) = &s.query
                && q.query.contains("orders")
                && q.plan.is_some()
            {
                plan = q.plan.clone();
            }
        }
        if plan.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let plan = plan.expect("a plan was captured");
    // The custom plan for the rare value uses the index; the generic plan would scan the table.
    assert!(plan.contains("orders_email"), "{plan}");
    assert!(!plan.contains("\"Seq Scan\""), "{plan}");
    assert!(!plan.contains(marker) && !plan.contains("5c1e"), "{plan}");

    // No report format shows the value (the plan is rendered in all three).
    let bucket = vigil_analyzer::report::Bucket {
        fingerprint: "00000000000000aa".into(),
        query: "SELECT id, note FROM orders WHERE email = $1".into(),
        database: "crm".into(),
        role: "app".into(),
        calls: 3,
        total_seconds: 1.0,
        plan: Some(plan),
        ..Default::default()
    };
    let report = vigil_analyzer::report::build(
        &vigil_analyzer::report::ReportInput {
            current: vec![bucket],
            ..Default::default()
        },
        &vigil_analyzer::report::ReportOptions::default(),
    );
    assert!(report.statements[0].plan.is_some());
    for text in [
        vigil_analyzer::report::html::render(&report),
        vigil_analyzer::report::markdown::render(&report),
        report.to_json(),
    ] {
        assert!(!text.contains(marker) && !text.contains("5c1e"));
    }
    let body = get_json(&stats.api_router(), "/api/queries").await;
    assert!(!body.to_string().contains(marker));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(!text.contains(marker));
}

async fn sample_workload(sample: ParameterSample) -> (serde_json::Value, String, Vec<String>) {
    let pg = PgServer::shared();
    let db = database(pg);
    let (emitter, mut signals) = Emitter::channel(100_000);
    let mut registry = Registry::default();
    let cfg = QueryStatsConfig {
        parameter_sample: sample,
        ..QueryStatsConfig::default()
    };
    let stats = QueryStats::new(cfg, HeavyRules::default(), emitter, &mut registry);
    let proxy = Proxy::start_with_hook(config(pg, &db.name, 4), Some(stats.clone())).await;
    let client = proxy.client().await;
    skewed_table(&client, "someone@example.org").await;
    client
        .query(
            "SELECT id FROM orders WHERE email = $1 OR phone = $2 OR card = $3 OR note = $4 OR id = $5",
            &[
                &"jane.doe+vip@example.net",
                &"+44 20 7946 0958",
                &"4242 4242 4242 4242",
                &"hello world!",
                &None::<i32>,
            ],
        )
        .await
        .unwrap();
    let router = stats.api_router();
    let list = get_json(&router, "/api/queries").await;
    let fp = list["queries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| {
            let t = q["query"].as_str().unwrap().to_lowercase();
            t.contains("phone") && t.starts_with("select")
        })
        .unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = get_json(&router, &format!("/api/queries/{fp}")).await;
    stats.rotate(Duration::from_secs(60));
    let mut out = vec![list.to_string()];
    while let Ok(s) = signals.try_recv() {
        out.push(s.to_json());
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    out.push(text);
    (one, fp, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_parameter_samples_show_shapes_only_and_are_off_by_default() {
    let raw = [
        "jane.doe+vip",
        "example.net",
        "7946 0958",
        "4242 4242",
        "hello world",
    ];
    let (one, _, published) = sample_workload(ParameterSample::Redacted).await;
    let row = &one["by_database_role"][0];
    assert_eq!(
        row["parameter_sample"],
        serde_json::json!(["<email>", "<phone>", "<card>", "<text:12>", "<null>"]),
        "{one:#}"
    );
    for text in published.iter().chain([&one.to_string()]) {
        for v in raw {
            assert!(!text.contains(v), "{v} leaked: {text}");
        }
    }

    let (one, _, _) = sample_workload(ParameterSample::Off).await;
    assert!(
        one["by_database_role"][0].get("parameter_sample").is_none(),
        "{one:#}"
    );
}
