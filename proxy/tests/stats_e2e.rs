//! Statement statistics end to end: a workload through the pg proxy with one deliberately slow
//! statement tagged with a sqlcommenter route. `/api/queries` ranks it first by total time and names
//! its route, and exactly one `heavy_query` signal is emitted for it.

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
