//! Stored `pg_stat_statements` snapshots, against SQLite and PostgreSQL (vigil-testkit): round
//! trip through `insert_signals`, the baseline before a period, duplicate signal ids, texts
//! normalized again on the way in, retention, and the report's period deltas.

mod backends;

use chrono::{TimeZone, Utc};
use vigil_analyzer::report::Period;
use vigil_incident::Store;
use vigil_incident::reports::{PgssRows, report_from_store};
use vigil_signal::{Channel, Outcome, PgssEntry, PgssSnapshot, Signal, Source};

const T0: i64 = 1_790_000_000_000;
const MIN: i64 = 60_000;

fn entry(queryid: &str, query: &str, calls: u64, secs: f64) -> PgssEntry {
    PgssEntry {
        queryid: queryid.into(),
        role: "cron".into(),
        query: query.into(),
        calls,
        total_seconds: secs,
        rows: calls,
    }
}

fn snapshot(database: &str, min: i64, entries: Vec<PgssEntry>) -> Signal {
    let t = Utc.timestamp_millis_opt(T0 + min * MIN).single().unwrap();
    Signal::new(Source::PgProxy, Channel::Db, Outcome::Succeeded)
        .with_id(format!("pgss:{database}:{}", t.timestamp_millis()))
        .with_time(t)
        .with_class("pgss_snapshot")
        .with_pgss(PgssSnapshot {
            database: database.into(),
            stats_reset: None,
            entries,
        })
}

const PURGE: &str = "DELETE FROM sessions WHERE expires < $1";

async fn round_trip_baseline_and_duplicates(store: Store) {
    let batch = vec![
        snapshot("crm", 0, vec![entry("1", PURGE, 100, 10.0)]),
        snapshot("crm", 10, vec![entry("1", PURGE, 110, 11.0)]),
        snapshot(
            "crm",
            20,
            vec![
                entry("1", PURGE, 130, 13.0),
                // A utility statement as PostgreSQL 15 keeps it: its constant verbatim.
                entry(
                    "2",
                    "COMMENT ON TABLE contacts IS 'marker-pgss@example.com'",
                    1,
                    0.1,
                ),
            ],
        ),
        snapshot("other", 20, vec![entry("9", "SELECT 1", 5, 0.5)]),
    ];
    let r = store.insert_signals(&batch).await.unwrap();
    assert_eq!((r.inserted, r.duplicates), (4, 0));
    // The same ids again (a retry, a replayed stream): nothing is stored twice.
    let r = store.insert_signals(&batch).await.unwrap();
    assert_eq!((r.inserted, r.duplicates), (0, 4));
    assert_eq!(store.count_pgss_snapshots().await.unwrap(), 4);

    // From minute 5 to 25: the baseline is minute 0's snapshot (the last at or before 5).
    let snaps = store
        .pgss_snapshots(Some("crm"), T0 + 5 * MIN, T0 + 25 * MIN)
        .await
        .unwrap();
    let times: Vec<i64> = snaps.iter().map(|s| (s.taken_ms - T0) / MIN).collect();
    assert_eq!(times, vec![0, 10, 20]);
    assert!(snaps.iter().all(|s| s.database == "crm"));
    let last = &snaps[2];
    assert_eq!(last.entries.len(), 2);
    let purge = last.entries.iter().find(|e| e.key == "1/cron").unwrap();
    assert_eq!((purge.calls, purge.rows), (130, 130));
    assert!((purge.total_seconds - 13.0).abs() < 1e-9);
    assert_eq!(purge.query, vigil_analyzer::fingerprint(PURGE).normalized);
    let comment = last.entries.iter().find(|e| e.key == "2/cron").unwrap();
    assert!(!comment.query.contains("marker"), "{}", comment.query);
    assert!(comment.query.starts_with("comment on table contacts is $"));
    // Exactly at the period start is the baseline; all databases when none is named.
    let snaps = store
        .pgss_snapshots(None, T0 + 10 * MIN, T0 + 25 * MIN)
        .await
        .unwrap();
    let mut seen: Vec<(String, i64)> = snaps
        .iter()
        .map(|s| (s.database.clone(), (s.taken_ms - T0) / MIN))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("crm".to_string(), 10),
            ("crm".to_string(), 20),
            ("other".to_string(), 20)
        ]
    );

    // The report over minutes 5..25 counts the increase since the baseline (30 calls), not
    // the 130 since the reset; the comparison period (before minute 5) has one snapshot only.
    let period = Period {
        from_ms: T0 + 5 * MIN,
        to_ms: T0 + 25 * MIN,
    };
    let pgss = PgssRows::stored(&store, period, None).await.unwrap();
    let r = report_from_store(&store, period, None, pgss, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        r.pgss_source,
        vigil_analyzer::report::PgssSource::Snapshots { snapshots: 3 }
    );
    let s = r
        .statements
        .iter()
        .find(|s| s.query.starts_with("delete from sessions"))
        .unwrap();
    assert_eq!(s.calls, 30);
    assert!((s.total_seconds - 3.0).abs() < 1e-9);
    let json = r.to_json();
    assert!(!json.contains("marker-pgss"), "{json}");
    // A period with no snapshots at all: the source says so.
    let empty = Period {
        from_ms: T0 - 100 * MIN,
        to_ms: T0 - 50 * MIN,
    };
    let none = PgssRows::stored(&store, empty, None).await.unwrap();
    assert_eq!(none.source, vigil_analyzer::report::PgssSource::None);
}

async fn retention_removes_old_snapshots(store: Store) {
    let batch = vec![
        snapshot("crm", 0, vec![entry("1", PURGE, 1, 0.1)]),
        snapshot("crm", 60, vec![entry("1", PURGE, 2, 0.2)]),
        snapshot(
            "crm",
            120,
            vec![entry("3", "SELECT count(*) FROM deals", 1, 0.1)],
        ),
    ];
    store.insert_signals(&batch).await.unwrap();
    let removed = store.delete_pgss_before(T0 + 90 * MIN).await.unwrap();
    assert_eq!(removed, 2);
    assert_eq!(store.count_pgss_snapshots().await.unwrap(), 1);
    let snaps = store
        .pgss_snapshots(None, T0 - MIN, T0 + 200 * MIN)
        .await
        .unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].entries[0].key, "3/cron");
    // The purge's text is no longer referenced: gone too.
    let n = store
        .pgss_snapshots(None, T0 + 119 * MIN, T0 + 121 * MIN)
        .await
        .unwrap()
        .iter()
        .flat_map(|s| &s.entries)
        .filter(|e| e.query.contains("sessions"))
        .count();
    assert_eq!(n, 0);
    // Signals are kept for less time than snapshots: a snapshot whose signal row is gone and
    // whose id comes again (a replayed stream) is still not stored twice.
    store.delete_signals_before(T0 + 200 * MIN).await.unwrap();
    let r = store.insert_signals(&batch[2..]).await.unwrap();
    assert_eq!(r.inserted, 1);
    assert_eq!(store.count_pgss_snapshots().await.unwrap(), 1);
    let snaps = store
        .pgss_snapshots(None, T0 - MIN, T0 + 200 * MIN)
        .await
        .unwrap();
    assert_eq!(snaps[0].entries.len(), 1);
}

backends::suite!(
    round_trip_baseline_and_duplicates,
    retention_removes_old_snapshots
);

#[tokio::test]
async fn many_entries_in_one_snapshot() {
    // More rows than one multi-row INSERT chunk, on both backends.
    for store in [backends::sqlite_memory().await, backends::postgres().await] {
        let entries: Vec<PgssEntry> = (0..1000)
            .map(|i| entry(&i.to_string(), &format!("SELECT * FROM t{i}"), i, 0.1))
            .collect();
        store
            .insert_signals(&[snapshot("crm", 0, entries)])
            .await
            .unwrap();
        let snaps = store
            .pgss_snapshots(Some("crm"), T0, T0 + MIN)
            .await
            .unwrap();
        assert_eq!(snaps[0].entries.len(), 1000);
    }
}

#[tokio::test]
async fn the_service_stores_snapshots_and_its_retention_task_applies_pgss_days() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = vigil_incident::IncidentConfig {
        store: "sqlite::memory:".into(),
        rules: dir.path().join("rules"),
        ..Default::default()
    };
    config.retention.pgss_days = 1;
    let svc = vigil_incident::IncidentService::new(
        config,
        &mut prometheus_client::registry::Registry::default(),
    )
    .await
    .unwrap();
    let day = 24 * 60;
    let batch = vec![
        snapshot("crm", 0, vec![entry("1", PURGE, 1, 0.1)]),
        snapshot("crm", day + 60, vec![entry("1", PURGE, 2, 0.2)]),
    ];
    let r = svc.ingest(&batch).await.unwrap();
    assert_eq!(r.stored, 2);
    assert_eq!(svc.store().count_pgss_snapshots().await.unwrap(), 2);
    // Two days after the first: only the one younger than pgss_days is kept.
    svc.apply_retention(T0 + 2 * day * MIN).await.unwrap();
    assert_eq!(svc.store().count_pgss_snapshots().await.unwrap(), 1);
}
