//! Concurrent writers on one store (several ingest paths of one service, or several replicas on
//! PostgreSQL): every signal id is stored and counted exactly once, and query statistics merged
//! into shared buckets lose no update. SQLite runs on a file (a pool of connections), PostgreSQL
//! on a throwaway server from vigil-testkit.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use vigil_incident::Store;
use vigil_incident::store::Resolution;
use vigil_signal::{Channel, Outcome, QueryStats, Signal, Source};
use vigil_testkit::PgServer;

const SIGNALS: usize = 240;
const WRITERS: usize = 4;
const BATCH: usize = 40;

fn at_ms(min: i64) -> i64 {
    1_790_000_000_000 + min * 60_000
}

fn signal(i: usize, fingerprints: usize) -> Signal {
    let fp = format!("{:016x}", i % fingerprints);
    Signal::new(Source::PgProxy, Channel::Db, Outcome::Succeeded)
        .with_id(format!("sig-{i:04}"))
        .with_time(Utc.timestamp_millis_opt(at_ms((i % 2) as i64)).unwrap())
        .with_class("query_stats")
        .with_query(QueryStats {
            fingerprint: fp,
            query: "SELECT * FROM contacts WHERE id = $1".into(),
            database: "crm".into(),
            role: "app".into(),
            calls: i as u64 + 1,
            rows: 1,
            total_seconds: 0.001,
            min_seconds: 0.001,
            max_seconds: 0.001,
            tables: vec!["contacts".into()],
            ..QueryStats::default()
        })
}

/// Expected calls per (fingerprint, minute bucket).
fn expected(signals: &[Signal]) -> BTreeMap<(String, i64), u64> {
    let mut want = BTreeMap::new();
    for s in signals {
        let q = s.query.as_ref().unwrap();
        let bucket = s.time.timestamp_millis().div_euclid(60_000) * 60_000;
        *want.entry((q.fingerprint.clone(), bucket)).or_default() += q.calls;
    }
    want
}

async fn stored(store: &Store) -> BTreeMap<(String, i64), u64> {
    store
        .query_stats_between(at_ms(-10), at_ms(10))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(r.resolution, Resolution::Minute);
            ((r.stats.fingerprint, r.bucket_ms), r.stats.calls)
        })
        .collect()
}

/// WRITERS tasks each store every signal, in batches, each in its own order (forward,
/// backward, rotated): overlapping batches race on the same ids and the same buckets.
async fn concurrent_writers_count_each_signal_once(store: Store) {
    let signals: Vec<Signal> = (0..SIGNALS).map(|i| signal(i, 3)).collect();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let mut mine = signals.clone();
        if w % 2 == 1 {
            mine.reverse();
        }
        mine.rotate_left(w * 17);
        tasks.push(tokio::spawn(async move {
            let (mut inserted, mut duplicates) = (0, 0);
            for batch in mine.chunks(BATCH) {
                let r = store.insert_signals(batch).await.unwrap();
                inserted += r.inserted;
                duplicates += r.duplicates;
            }
            (inserted, duplicates)
        }));
    }
    let (mut inserted, mut duplicates) = (0, 0);
    for t in tasks {
        let (i, d) = t.await.unwrap();
        inserted += i;
        duplicates += d;
    }
    assert_eq!(
        inserted, SIGNALS as u64,
        "each id stored by exactly one writer"
    );
    assert_eq!(duplicates, (SIGNALS * (WRITERS - 1)) as u64);
    assert_eq!(store.count_signals().await.unwrap(), SIGNALS as u64);
    assert_eq!(
        stored(&store).await,
        expected(&signals),
        "no lost or doubled merge"
    );
}

/// One batch touching more buckets than one statement carries, then a second batch adding to
/// all of them, then a roll-up into hourly buckets.
async fn wide_batches_merge_every_bucket(store: Store) {
    let first: Vec<Signal> = (0..300).map(|i| signal(i, 300)).collect();
    let r = store.insert_signals(&first).await.unwrap();
    assert_eq!(r.inserted, 300);
    assert_eq!(stored(&store).await, expected(&first));
    let second: Vec<Signal> = (300..600).map(|i| signal(i, 300)).collect();
    store.insert_signals(&second).await.unwrap();
    let all: Vec<Signal> = first.into_iter().chain(second).collect();
    let want = expected(&all);
    assert_eq!(
        want.len(),
        300,
        "i and i + 300 share a fingerprint and a minute"
    );
    assert_eq!(stored(&store).await, want);
    let rolled = store.rollup_query_stats(at_ms(120)).await.unwrap();
    assert_eq!(rolled, want.len() as u64);
    let hours = store
        .query_stats_between(at_ms(-120), at_ms(120))
        .await
        .unwrap();
    assert!(hours.iter().all(|r| r.resolution == Resolution::Hour));
    let total: u64 = hours.iter().map(|r| r.stats.calls).sum();
    assert_eq!(total, (1..=600).sum::<u64>());
}

async fn sqlite_file() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let store = Store::open(&url).await.unwrap();
    (dir, store)
}

async fn postgres() -> Store {
    let db = PgServer::shared().create_database().unwrap();
    Store::open(&db.url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_writers_count_each_signal_once() {
    let (_dir, store) = sqlite_file().await;
    concurrent_writers_count_each_signal_once(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_writers_count_each_signal_once() {
    concurrent_writers_count_each_signal_once(postgres().await).await;
}

#[tokio::test]
async fn sqlite_wide_batches_merge_every_bucket() {
    let (_dir, store) = sqlite_file().await;
    wide_batches_merge_every_bucket(store).await;
}

#[tokio::test]
async fn postgres_wide_batches_merge_every_bucket() {
    wide_batches_merge_every_bucket(postgres().await).await;
}
