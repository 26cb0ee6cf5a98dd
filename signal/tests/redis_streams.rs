//! The Redis Streams transport against a real Redis: at-least-once delivery, acknowledgement only
//! after the handler stored a batch, and recovery of entries a crashed consumer left pending.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;
use vigil_signal::transport::redis_streams::ConsumerMetrics;
use vigil_signal::transport::{
    HandlerError, RedisConsumer, RedisConsumerConfig, RedisSink, SignalHandler,
};
use vigil_signal::{Channel, Outcome, Signal, Source};
use vigil_testkit::RedisServer;

/// An idempotent store: a set of ids, plus a count of deliveries (which may repeat).
#[derive(Default)]
struct SetStore {
    ids: Mutex<HashSet<String>>,
    deliveries: Mutex<usize>,
    /// When set, the handler hangs forever on its next batch (a consumer that crashes before
    /// acknowledging).
    hang: Mutex<bool>,
    hung: Notify,
}

impl SignalHandler for SetStore {
    fn handle<'a>(&'a self, batch: &'a [Signal]) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            if *self.hang.lock().unwrap() {
                self.hung.notify_one();
                futures::future::pending::<()>().await;
            }
            *self.deliveries.lock().unwrap() += batch.len();
            let mut ids = self.ids.lock().unwrap();
            for s in batch {
                ids.insert(s.id.clone());
            }
            Ok(())
        }
        .boxed()
    }
}

fn signals(n: usize, tag: &str) -> Vec<Signal> {
    (0..n)
        .map(|i| {
            Signal::new(Source::Webhook, Channel::Email, Outcome::Delivered)
                .with_id(format!("{tag}-{i}"))
                .with_provider("sendgrid")
        })
        .collect()
}

async fn wait_for(store: &SetStore, n: usize) {
    for _ in 0..500 {
        if store.ids.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "only {} of {n} signals stored",
        store.ids.lock().unwrap().len()
    );
}

fn config(redis: &RedisServer, stream: &str, consumer: &str) -> RedisConsumerConfig {
    let mut c = RedisConsumerConfig::new(&redis.url(), stream, "incident", consumer);
    c.block = Duration::from_millis(100);
    c.batch = 50;
    c
}

#[tokio::test]
async fn a_consumer_that_dies_before_acking_gets_its_entries_again_on_restart() {
    let redis = RedisServer::shared();
    let stream = format!("{}signals", redis.prefix());
    let sink = RedisSink::new(&redis.url(), &stream, 100_000).unwrap();
    let store = Arc::new(SetStore::default());

    // The consumer takes the first batch, then "crashes" inside the handler.
    *store.hang.lock().unwrap() = true;
    let first = RedisConsumer::new(
        config(redis, &stream, "replica-a"),
        store.clone(),
        ConsumerMetrics::default(),
    );
    let task = tokio::spawn(first.run(futures::future::pending()));
    sink.send(&signals(120, "a")).await.unwrap();
    store.hung.notified().await;
    task.abort();
    let _ = task.await;
    assert!(store.ids.lock().unwrap().is_empty());

    // Restarted under the same name: its pending entries come first, then the rest.
    *store.hang.lock().unwrap() = false;
    let metrics = ConsumerMetrics::default();
    let second = RedisConsumer::new(
        config(redis, &stream, "replica-a"),
        store.clone(),
        metrics.clone(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(second.run(async {
        let _ = stop_rx.await;
    }));
    sink.send(&signals(30, "b")).await.unwrap();
    wait_for(&store, 150).await;
    let _ = stop_tx.send(());
    task.await.unwrap();

    assert_eq!(store.ids.lock().unwrap().len(), 150);
    assert_eq!(metrics.received.get(), 150);
    // Nothing left pending: every stored entry was acknowledged.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("incident")
        .query_async(&mut conn)
        .await
        .unwrap();
    let redis::Value::Array(parts) = pending else {
        panic!("unexpected XPENDING reply {pending:?}")
    };
    assert_eq!(parts[0], redis::Value::Int(0));
}

#[tokio::test]
async fn entries_left_pending_by_a_dead_replica_are_claimed_by_another() {
    let redis = RedisServer::shared();
    let stream = format!("{}signals", redis.prefix());
    let sink = RedisSink::new(&redis.url(), &stream, 100_000).unwrap();
    let store = Arc::new(SetStore::default());
    *store.hang.lock().unwrap() = true;
    let dead = RedisConsumer::new(
        config(redis, &stream, "replica-dead"),
        store.clone(),
        ConsumerMetrics::default(),
    );
    let task = tokio::spawn(dead.run(futures::future::pending()));
    sink.send(&signals(40, "c")).await.unwrap();
    store.hung.notified().await;
    task.abort();
    let _ = task.await;
    *store.hang.lock().unwrap() = false;

    let mut cfg = config(redis, &stream, "replica-live");
    cfg.claim_idle = Duration::from_millis(200);
    let metrics = ConsumerMetrics::default();
    let live = RedisConsumer::new(cfg, store.clone(), metrics.clone());
    let task = tokio::spawn(live.run(futures::future::pending()));
    wait_for(&store, 40).await;
    task.abort();
    assert!(
        metrics.reclaimed.get() >= 40,
        "reclaimed {}",
        metrics.reclaimed.get()
    );
}

#[tokio::test]
async fn invalid_entries_are_acknowledged_and_counted_not_retried_forever() {
    let redis = RedisServer::shared();
    let stream = format!("{}signals", redis.prefix());
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("s")
        .arg("{not a signal")
        .query_async(&mut conn)
        .await
        .unwrap();
    let sink = RedisSink::new(&redis.url(), &stream, 1000).unwrap();
    sink.send(&signals(3, "d")).await.unwrap();
    let store = Arc::new(SetStore::default());
    let metrics = ConsumerMetrics::default();
    let consumer = RedisConsumer::new(config(redis, &stream, "r"), store.clone(), metrics.clone());
    let task = tokio::spawn(consumer.run(futures::future::pending()));
    wait_for(&store, 3).await;
    task.abort();
    assert_eq!(metrics.invalid.get(), 1);
}

#[tokio::test]
async fn producer_and_consumer_ride_out_a_redis_restart() {
    let redis = RedisServer::start_new().unwrap();
    let stream = "signals";
    let sink = RedisSink::new(&redis.url(), stream, 1000).unwrap();
    let store = Arc::new(SetStore::default());
    let consumer = RedisConsumer::new(
        config(&redis, stream, "r"),
        store.clone(),
        ConsumerMetrics::default(),
    );
    let task = tokio::spawn(consumer.run(futures::future::pending()));
    sink.send(&signals(5, "before")).await.unwrap();
    wait_for(&store, 5).await;

    redis.stop();
    assert!(sink.send(&signals(1, "down")).await.is_err());
    redis.start().unwrap();
    // The sink reconnects on its own; the consumer re-creates its group (Redis kept nothing).
    let mut sent = false;
    for _ in 0..100 {
        if sink.send(&signals(5, "after")).await.is_ok() {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent, "sink never reconnected");
    wait_for(&store, 10).await;
    task.abort();
}

#[tokio::test]
async fn an_idle_consumer_keeps_its_connection_through_long_blocking_reads() {
    let redis = RedisServer::shared();
    let stream = format!("{}idle", redis.prefix());
    let sink = RedisSink::new(&redis.url(), &stream, 100_000).unwrap();
    let store = Arc::new(SetStore::default());
    let metrics = ConsumerMetrics::default();
    let mut cfg = config(redis, &stream, "replica-idle");
    // Longer than the Redis client's default 500 ms response timeout.
    cfg.block = Duration::from_millis(1_500);
    let consumer = RedisConsumer::new(cfg, store.clone(), metrics.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(async {
        let _ = stop_rx.await;
    }));

    // Several blocking reads return empty while nothing is produced.
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    sink.send(&signals(5, "idle")).await.unwrap();
    wait_for(&store, 5).await;
    let _ = stop_tx.send(());
    task.await.unwrap();

    assert_eq!(
        metrics.reconnects.get(),
        0,
        "an empty blocking read must not end the session"
    );
    assert_eq!(metrics.received.get(), 5);
}
