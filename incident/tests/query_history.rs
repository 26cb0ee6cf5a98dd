//! Query-stat history for reports, on SQLite: a captured plan survives storage, duplicates and
//! the hourly roll-up, and `report_from_store` builds a report (with comparison) from the buckets.

use chrono::{TimeZone, Utc};
use vigil_analyzer::report::{Period, ReportOptions};
use vigil_incident::Store;
use vigil_incident::reports::{PgssRows, report_from_store};
use vigil_signal::{Channel, Outcome, QueryStats, Signal, Source};

/// Minute-aligned.
const T0: i64 = 1_790_000_040_000;
const MIN: i64 = 60_000;

fn signal(id: &str, min: i64, calls: u64, total: f64, plan: Option<&str>) -> Signal {
    let q = QueryStats {
        fingerprint: "00000000000000ab".into(),
        query: "SELECT * FROM contacts WHERE email = $1".into(),
        database: "crm".into(),
        role: "app".into(),
        calls,
        total_seconds: total,
        p95_seconds: total / calls as f64,
        kind: Some("read".into()),
        tables: vec!["contacts".into()],
        tags: [("route".to_string(), "/contacts/search".to_string())].into(),
        plan: plan.map(Into::into),
        ..QueryStats::default()
    };
    Signal::new(Source::PgProxy, Channel::Db, Outcome::Succeeded)
        .with_id(id)
        .with_time(Utc.timestamp_millis_opt(T0 + min * MIN).single().unwrap())
        .with_window(60)
        .with_query(q)
}

const PLAN: &str = r#"[{"Plan":{"Node Type":"Seq Scan","Relation Name":"contacts","Plan Rows":1,"Total Cost":900.0,"Filter":"(email = ?::text)"},"Vigil Tables":{"contacts":{"rows":50000,"analyzed":true}}}]"#;

#[tokio::test]
async fn plans_survive_storage_duplicates_and_rollup_and_reports_compare_periods() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("h.db").display()))
        .await
        .unwrap();
    // Period 1 (minutes 0-1): slow, with a plan; the duplicate id must not count twice.
    let first = signal("a", 0, 10, 5.0, Some(PLAN));
    store
        .insert_signals(&[first.clone(), signal("b", 1, 10, 5.0, None)])
        .await
        .unwrap();
    store.insert_signals(&[first]).await.unwrap();
    // Period 2 (minutes 120-121): fast.
    store
        .insert_signals(&[
            signal("c", 120, 10, 0.05, None),
            signal("d", 121, 10, 0.05, None),
        ])
        .await
        .unwrap();
    let rows = store.query_stats_between(T0, T0 + 60 * MIN).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.stats.calls).sum::<u64>(),
        20,
        "{rows:?}"
    );
    assert_eq!(rows[0].stats.plan.as_deref(), Some(PLAN));

    // Roll period 1 up to an hour bucket: the plan is kept.
    store.rollup_query_stats(T0 + 90 * MIN).await.unwrap();
    let rows = store
        .query_stats_between(T0 - 60 * MIN, T0 + 60 * MIN)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].stats.calls, 20);
    assert_eq!(rows[0].stats.plan.as_deref(), Some(PLAN));

    // The hour bucket starts at or before T0: the comparison period starts an hour earlier.
    let hour = T0.div_euclid(3_600_000) * 3_600_000;
    let current = Period {
        from_ms: T0 + 120 * MIN,
        to_ms: T0 + 240 * MIN,
    };
    let compare = Period {
        from_ms: hour,
        to_ms: hour + 120 * MIN,
    };
    let r = report_from_store(
        &store,
        current,
        Some(compare),
        PgssRows::default(),
        &ReportOptions::default(),
    )
    .await
    .unwrap();
    let s = &r.statements[0];
    assert_eq!(s.calls, 20);
    assert_eq!(s.previous.unwrap().calls, 20);
    assert!(s.total_seconds < s.previous.unwrap().total_seconds / 10.0);
    assert_eq!(s.routes, vec!["/contacts/search"]);
    assert!(r.regressions.is_empty());
    // The slow period on its own carries the plan and the index advice.
    let r = report_from_store(
        &store,
        compare,
        None,
        PgssRows::default(),
        &ReportOptions::default(),
    )
    .await
    .unwrap();
    let advice = &r.statements[0].advice;
    assert_eq!(
        advice[0].suggestion.as_deref(),
        Some("CREATE INDEX ON contacts (email)")
    );
}
