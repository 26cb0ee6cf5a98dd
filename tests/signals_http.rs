//! The HTTP signal transport: a producer's batches reach a running incident service's
//! `/v1/signals` and are stored once, even when the same batch is sent twice.

mod common;

use std::time::Duration;

use common::{Vigil, wait_http};
use vigil_incident::Store;
use vigil_signal::transport::http::HttpSink;
use vigil_signal::{Channel, Outcome, Signal, Source};
use vigil_testkit::free_port;

#[tokio::test]
async fn batches_posted_to_the_incident_service_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let db = dir.path().join("vigil.db");
    let (admin, incident) = (free_port(), free_port());
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[incident]\nlisten = \"127.0.0.1:{incident}\"\nstore = \"sqlite://{}\"\nrules = \"rules\"\n",
        db.display()
    );
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, config).unwrap();
    let mut vigil = Vigil::start_at(tempfile::tempdir().unwrap(), path, &[]);
    wait_http(admin, "/readyz").await;

    let sink = HttpSink::new(&format!("http://127.0.0.1:{incident}"), None).unwrap();
    let batch: Vec<Signal> = (0..50)
        .map(|i| {
            Signal::new(Source::ProviderGateway, Channel::Sms, Outcome::Accepted)
                .with_id(format!("http-{i}"))
                .with_provider("twilio")
        })
        .collect();
    sink.send(&batch).await.unwrap();
    sink.send(&batch).await.unwrap();

    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut n = 0;
    for _ in 0..50 {
        n = store.count_signals().await.unwrap();
        if n >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(n, 50);
    store.close().await;

    // A bad batch is refused with a clear status, not stored.
    let bad = HttpSink::new(&format!("http://127.0.0.1:{incident}/v1/nope"), None).unwrap();
    assert!(bad.send(&batch).await.is_err());
    assert!(vigil.terminate().success());
}
