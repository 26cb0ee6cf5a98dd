//! The same store suite against SQLite (file and memory) and PostgreSQL (vigil-testkit).

mod backends;

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use vigil_incident::Store;
use vigil_incident::model::{
    Evidence, Incident, IncidentState, Layer, Note, Severity, Silence, TimelineEntry,
};
use vigil_incident::store::Resolution;
use vigil_incident::store::incidents::IncidentFilter;
use vigil_incident::store::outbox::OutboxEntry;
use vigil_signal::{Channel, Outcome, QueryStats, Signal, Source};
use vigil_testkit::PgServer;

fn at(min: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(1_790_000_000_000 + min * 60_000)
        .single()
        .expect("valid time")
}

fn sig(id: &str, min: i64) -> Signal {
    Signal::new(Source::Webhook, Channel::Email, Outcome::Failed)
        .with_id(id)
        .with_time(at(min))
        .with_provider("sendgrid")
        .with_class("blocked")
}

fn stats(fp: &str, calls: u64, total: f64, p95: f64) -> QueryStats {
    QueryStats {
        fingerprint: fp.into(),
        query: "SELECT * FROM contacts WHERE email = $1".into(),
        database: "crm".into(),
        role: "app".into(),
        calls,
        errors: 1,
        rows: calls * 2,
        total_seconds: total,
        min_seconds: 0.001,
        max_seconds: p95 * 2.0,
        p50_seconds: p95 / 2.0,
        p95_seconds: p95,
        p99_seconds: p95 * 1.5,
        pool_wait_seconds: 0.5,
        cache_hits: 3,
        cache_misses: 1,
        cache_bypasses: 0,
        cache_saved_seconds: 0.25,
        sqlstates: BTreeMap::from([("57014".to_string(), 1)]),
        tags: BTreeMap::from([("route".to_string(), "/contacts/search".to_string())]),
        kind: Some("read".into()),
        tables: vec!["contacts".into()],
        plan: None,
    }
}

fn incident(id: &str, state: IncidentState, channel: &str, layer: Layer, updated: i64) -> Incident {
    Incident {
        id: id.into(),
        correlation_key: format!("provider:{channel}"),
        state,
        severity: Severity::Critical,
        title: format!("{channel} failures"),
        channel: channel.into(),
        layer,
        opened_ms: updated - 1000,
        updated_ms: updated,
        resolved_ms: (state == IncidentState::Resolved).then_some(updated),
        evidence: Evidence {
            providers: vec!["sendgrid".into()],
            ..Evidence::default()
        },
    }
}

async fn signals_are_idempotent(store: Store) {
    let batch = vec![sig("a", 0), sig("b", 1), sig("c", 2)];
    let r = store.insert_signals(&batch).await.unwrap();
    assert_eq!((r.inserted, r.duplicates), (3, 0));
    let again = vec![sig("b", 1), sig("d", 3), sig("a", 0), sig("d", 3)];
    let (r, fresh) = store.insert_signals_detailed(&again).await.unwrap();
    assert_eq!((r.inserted, r.duplicates), (1, 3));
    assert_eq!(fresh, vec![false, true, false, false]);
    assert_eq!(store.count_signals().await.unwrap(), 4);
    // A batch larger than one multi-row statement.
    let big: Vec<Signal> = (0..1_234).map(|i| sig(&format!("big-{i}"), 10)).collect();
    let r = store.insert_signals(&big).await.unwrap();
    assert_eq!((r.inserted, r.duplicates), (1_234, 0));
    assert_eq!(store.count_signals().await.unwrap(), 1_238);
    store
        .delete_signals_before(at(5).timestamp_millis())
        .await
        .unwrap();
    let r = store.insert_signals(&big[1_000..]).await.unwrap();
    assert_eq!((r.inserted, r.duplicates), (0, 234));
    store
        .delete_signals_before(at(11).timestamp_millis())
        .await
        .unwrap();
    for s in ["a", "b", "c", "d"] {
        store
            .insert_signals(&[sig(s, s.as_bytes()[0] as i64 - 97)])
            .await
            .unwrap();
    }
    assert_eq!(store.count_signals().await.unwrap(), 4);
    let back = store
        .signals_between(at(1).timestamp_millis(), at(3).timestamp_millis())
        .await
        .unwrap();
    assert_eq!(back, vec![sig("b", 1), sig("c", 2)]);
    assert_eq!(
        store
            .delete_signals_before(at(2).timestamp_millis())
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.count_signals().await.unwrap(), 2);
}

async fn query_stats_merge_and_roll_up(store: Store) {
    // Two replicas publish the same minute; a duplicate signal id must not count twice.
    let s1 = sig("q1", 0).with_query(stats("00000000000000aa", 10, 1.0, 0.2));
    let s2 = sig("q2", 0).with_query(stats("00000000000000aa", 5, 0.5, 0.3));
    let s3 = sig("q3", 61).with_query(stats("00000000000000aa", 7, 0.7, 0.1));
    store.insert_signals(&[s1.clone(), s2]).await.unwrap();
    store.insert_signals(&[s1, s3]).await.unwrap();
    let all = store
        .query_stats_between(at(-120).timestamp_millis(), at(600).timestamp_millis())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let first = &all[0];
    assert_eq!(first.resolution, Resolution::Minute);
    assert_eq!(first.stats.calls, 15);
    assert_eq!(first.stats.errors, 2);
    assert!((first.stats.total_seconds - 1.5).abs() < 1e-9);
    assert!((first.stats.p95_seconds - 0.3).abs() < 1e-9);
    assert_eq!(first.stats.sqlstates.get("57014"), Some(&2));
    assert_eq!(
        first.stats.tags.get("route").map(String::as_str),
        Some("/contacts/search")
    );

    // Roll up everything older than minute 120: both minutes land in hourly buckets.
    let rolled = store
        .rollup_query_stats(at(180).timestamp_millis())
        .await
        .unwrap();
    assert_eq!(rolled, 2);
    let all = store
        .query_stats_between(at(-120).timestamp_millis(), at(600).timestamp_millis())
        .await
        .unwrap();
    assert!(all.iter().all(|r| r.resolution == Resolution::Hour));
    let calls: u64 = all.iter().map(|r| r.stats.calls).sum();
    assert_eq!(calls, 22);
    // Rolling up again changes nothing.
    assert_eq!(
        store
            .rollup_query_stats(at(180).timestamp_millis())
            .await
            .unwrap(),
        0
    );
    let again: u64 = store
        .query_stats_between(at(-120).timestamp_millis(), at(600).timestamp_millis())
        .await
        .unwrap()
        .iter()
        .map(|r| r.stats.calls)
        .sum();
    assert_eq!(again, 22);
    assert!(
        store
            .delete_query_stats_before(at(600).timestamp_millis())
            .await
            .unwrap()
            >= 1
    );
}

async fn incidents_timeline_notes_silences(store: Store) {
    let a = incident(
        "inc-a",
        IncidentState::Open,
        "email",
        Layer::Provider,
        10_000,
    );
    let mut b = incident(
        "inc-b",
        IncidentState::Resolved,
        "sms",
        Layer::Integration,
        20_000,
    );
    store.upsert_incident(&a).await.unwrap();
    store.upsert_incident(&b).await.unwrap();
    assert_eq!(store.get_incident("inc-a").await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_incident("nope").await.unwrap(), None);

    let open = store
        .list_incidents(&IncidentFilter {
            state: Some(IncidentState::Open),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(open, vec![a.clone()]);
    let sms = store
        .list_incidents(&IncidentFilter {
            channel: Some("sms".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].id, "inc-b");
    let by_layer = store
        .list_incidents(&IncidentFilter {
            layer: Some(Layer::Provider),
            since_ms: Some(5_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_layer.len(), 1);
    let all = store
        .list_incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec!["inc-b", "inc-a"]
    );

    b.state = IncidentState::Open;
    b.resolved_ms = None;
    b.updated_ms = 30_000;
    store.upsert_incident(&b).await.unwrap();
    assert_eq!(
        store.get_incident("inc-b").await.unwrap().unwrap().state,
        IncidentState::Open
    );
    assert_eq!(store.active_incidents(0).await.unwrap().len(), 2);

    let e = TimelineEntry {
        id: "t1".into(),
        incident_id: "inc-a".into(),
        at_ms: 10_000,
        kind: "opened".into(),
        actor: "vigil".into(),
        detail: "blocked 40 of 100".into(),
    };
    store.add_timeline(&e).await.unwrap();
    store.add_timeline(&e).await.unwrap();
    assert_eq!(store.timeline("inc-a").await.unwrap(), vec![e]);
    let n = Note {
        id: "n1".into(),
        incident_id: "inc-a".into(),
        at_ms: 11_000,
        author: "ana".into(),
        body: "looking".into(),
    };
    store.add_note(&n).await.unwrap();
    assert_eq!(store.notes("inc-a").await.unwrap(), vec![n]);

    let s = Silence {
        id: "s1".into(),
        matchers: BTreeMap::from([("channel".to_string(), "email".to_string())]),
        starts_ms: 0,
        ends_ms: 50_000,
        created_by: "ana".into(),
        comment: "maintenance".into(),
    };
    store.add_silence(&s, 1).await.unwrap();
    assert_eq!(store.silences(40_000).await.unwrap(), vec![s.clone()]);
    assert!(store.silences(50_000).await.unwrap().is_empty());
    assert!(s.mutes(&a, 10_000));
    assert!(!s.mutes(&b, 10_000));

    // Retention: resolve a, then delete resolved before a cutoff.
    let mut a2 = a.clone();
    a2.state = IncidentState::Resolved;
    a2.resolved_ms = Some(12_000);
    store.upsert_incident(&a2).await.unwrap();
    assert_eq!(store.delete_resolved_before(13_000).await.unwrap(), 1);
    assert!(store.get_incident("inc-a").await.unwrap().is_none());
    assert!(store.timeline("inc-a").await.unwrap().is_empty());
}

async fn outbox_claims_and_dedups(store: Store) {
    let e = |id: &str, key: &str| OutboxEntry {
        id: id.into(),
        dedup_key: key.into(),
        incident_id: "inc-a".into(),
        receiver: "slack".into(),
        payload: "{}".into(),
    };
    assert!(
        store
            .enqueue_notification(&e("o1", "inc-a:trigger:1:slack"), 100)
            .await
            .unwrap()
    );
    assert!(
        !store
            .enqueue_notification(&e("o2", "inc-a:trigger:1:slack"), 100)
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_notification(&e("o3", "inc-a:resolve:1:slack"), 200)
            .await
            .unwrap()
    );

    let first = store
        .claim_notifications("r1", 1_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].attempts, 1);
    // A second replica sees nothing while the lease holds.
    assert!(
        store
            .claim_notifications("r2", 2_000, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.mark_sent("o1", "r1", 2_500).await.unwrap());
    // Not the owner: no effect.
    assert!(!store.mark_sent("o3", "r2", 2_500).await.unwrap());
    store
        .mark_failed("o3", "r1", "HTTP 503", Some(5_000))
        .await
        .unwrap();
    assert!(
        store
            .claim_notifications("r2", 4_000, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retry = store
        .claim_notifications("r2", 5_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].attempts, 2);
    // The lease expires (the replica died): another one takes it over.
    let taken = store
        .claim_notifications("r3", 40_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(!store.mark_sent("o3", "r2", 41_000).await.unwrap());
    store
        .mark_failed("o3", "r3", "HTTP 400", None)
        .await
        .unwrap();
    let st = store.outbox_stats().await.unwrap();
    assert_eq!((st.pending, st.sent, st.failed), (0, 1, 1));
}

async fn concurrent_claimers_never_share_a_row(store: Store) {
    for i in 0..60 {
        let e = OutboxEntry {
            id: format!("o{i:03}"),
            dedup_key: format!("k{i}"),
            incident_id: "inc".into(),
            receiver: "webhook".into(),
            payload: "{}".into(),
        };
        store.enqueue_notification(&e, 0).await.unwrap();
    }
    let mut tasks = Vec::new();
    for r in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_notifications(&format!("r{r}"), 10, 60_000, 3)
                    .await
                    .unwrap();
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|c| c.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let len = all.len();
    all.dedup();
    assert_eq!(len, 60, "every row claimed");
    assert_eq!(all.len(), 60, "no row claimed twice");
}

backends::suite!(
    signals_are_idempotent,
    query_stats_merge_and_roll_up,
    incidents_timeline_notes_silences,
    outbox_claims_and_dedups,
    concurrent_claimers_never_share_a_row
);

#[tokio::test]
async fn sqlite_file_is_created_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigil.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.unwrap();
    store.insert_signals(&[sig("x", 0)]).await.unwrap();
    store.close().await;
    assert!(path.exists());
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.count_signals().await.unwrap(), 1);
    let r = again.insert_signals(&[sig("x", 0)]).await.unwrap();
    assert_eq!(r.duplicates, 1);
}

#[tokio::test]
async fn postgres_migrations_are_idempotent_across_replicas() {
    let db = PgServer::shared().create_database().unwrap();
    let (a, b) = tokio::join!(Store::open(&db.url), Store::open(&db.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.insert_signals(&[sig("y", 0)]).await.unwrap();
    assert_eq!(b.count_signals().await.unwrap(), 1);
}

#[tokio::test]
async fn unknown_scheme_is_refused() {
    let err = Store::open("mysql://x@localhost/db").await.unwrap_err();
    assert!(err.to_string().contains("mysql"), "{err}");
}
