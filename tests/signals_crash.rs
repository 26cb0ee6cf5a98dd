//! Issue acceptance: signals sent through Redis Streams by one process are stored by an
//! incident-side consumer (`vigil run` with `[incident]` and `transport = "redis"`) that is killed
//! with SIGKILL and restarted in between: nothing lost, nothing stored twice, nothing left pending.

mod common;

use std::time::Duration;

use common::{Vigil, wait_http};
use vigil_incident::Store;
use vigil_signal::transport::RedisSink;
use vigil_signal::{Channel, Outcome, Signal, Source};
use vigil_testkit::{RedisServer, free_port};

fn batch(from: usize, n: usize) -> Vec<Signal> {
    (from..from + n)
        .map(|i| {
            Signal::new(Source::Webhook, Channel::Email, Outcome::Delivered)
                .with_id(format!("crash-test-{i}"))
                .with_provider("sendgrid")
        })
        .collect()
}

async fn stored(url: &str) -> u64 {
    match Store::open(url).await {
        Ok(store) => {
            let n = store.count_signals().await.unwrap_or(0);
            store.close().await;
            n
        }
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_consumer_loses_nothing_and_stores_nothing_twice() {
    const TOTAL: usize = 3_000;
    let redis = RedisServer::shared();
    let stream = format!("{}signals", redis.prefix());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let db = dir.path().join("vigil.db");
    let store_url = format!("sqlite://{}", db.display());
    let admin = free_port();
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[signals]
transport = "redis"
url = "{redis}"
stream = "{stream}"
consumer = "incident-a"

[incident]
listen = "127.0.0.1:{incident}"
store = "{store_url}"
rules = "rules"
tick_secs = 1
"#,
        redis = redis.url(),
        incident = free_port(),
    );
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, config).unwrap();
    let mut vigil = Vigil::start_at(tempfile::tempdir().unwrap(), path, &[]);
    // The test's temp dir holds the config; relative paths resolve against it.
    wait_http(admin, "/readyz").await;

    let sink = RedisSink::new(&redis.url(), &stream, 1_000_000).unwrap();
    let mut sent = 0;
    while sent < TOTAL / 3 {
        sink.send(&batch(sent, 100)).await.unwrap();
        sent += 100;
    }
    // Let the consumer get going, then kill it mid-stream while more arrive.
    tokio::time::sleep(Duration::from_millis(150)).await;
    vigil.kill9();
    while sent < 2 * TOTAL / 3 {
        sink.send(&batch(sent, 100)).await.unwrap();
        sent += 100;
    }
    let before_restart = stored(&store_url).await;
    assert!(before_restart < TOTAL as u64);
    vigil.restart(&[]);
    wait_http(admin, "/readyz").await;
    while sent < TOTAL {
        sink.send(&batch(sent, 100)).await.unwrap();
        sent += 100;
    }

    let mut n = 0;
    for _ in 0..300 {
        n = stored(&store_url).await;
        if n >= TOTAL as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(n, TOTAL as u64, "every signal stored exactly once");

    // Everything acknowledged: nothing pending in the group.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut pending = i64::MAX;
    for _ in 0..50 {
        let v: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg("vigil-incident")
            .query_async(&mut conn)
            .await
            .unwrap();
        if let redis::Value::Array(parts) = v
            && let Some(redis::Value::Int(p)) = parts.first()
        {
            pending = *p;
        }
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 0);
    assert!(vigil.terminate().success());
}
