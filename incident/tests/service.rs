//! The service end to end: ingest -> store -> detect -> incident -> outbox -> local receivers,
//! restart without losing or repeating pages, replicas on PostgreSQL, hot reload, HTTP API and
//! console.

mod common;

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::receiver::LocalReceiver;
use prometheus_client::registry::Registry;
use vigil_incident::model::IncidentState;
use vigil_incident::notify::receivers::verify;
use vigil_incident::{IncidentConfig, IncidentService};
use vigil_signal::{Channel, Outcome, Scope, Signal, Source};
use vigil_testkit::PgServer;

const HOOK_SECRET: &str = "hook-secret-for-tests";
const PD_KEY: &str = "R0UTINGKEY";

fn ensure_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before any test of this binary reads the environment (every test
        // calls ensure_env first and Once blocks them until it is done).
        unsafe {
            std::env::set_var("VIGIL_TEST_HOOK_SECRET", HOOK_SECRET);
            std::env::set_var("VIGIL_TEST_PD_KEY", PD_KEY);
        }
    });
}

fn rules_yaml(rx: &LocalReceiver) -> String {
    format!(
        "receivers:\n  - name: hook\n    kind: webhook\n    url: {}\n    secret_env: VIGIL_TEST_HOOK_SECRET\n  - name: pd\n    kind: pagerduty\n    routing_key_env: VIGIL_TEST_PD_KEY\n    url: {}\nroutes:\n  - name: page\n    receivers: [pd, hook]\n",
        rx.url("/hook"),
        rx.url("/pd")
    )
}

fn config(dir: &Path, store: &str) -> IncidentConfig {
    IncidentConfig {
        store: store.to_string(),
        rules: dir.join("rules"),
        ..IncidentConfig::default()
    }
}

/// The current minute, so stored signals fall inside the restart window.
fn base() -> i64 {
    Utc::now().timestamp_millis().div_euclid(60_000) * 60_000
}

fn minute(base: i64, m: i64, provider: &str, delivered: u64, blocked: u64) -> Vec<Signal> {
    let t = |s: i64| {
        Utc.timestamp_millis_opt(base + m * 60_000 + s * 1000)
            .single()
            .unwrap()
    };
    let mut v = vec![
        Signal::new(Source::Webhook, Channel::Email, Outcome::Delivered)
            .with_id(format!("{provider}-ok-{m}"))
            .with_time(t(0))
            .with_window(60)
            .with_provider(provider)
            .with_count(delivered),
        Signal::new(Source::Webhook, Channel::Email, Outcome::Failed)
            .with_id(format!("{provider}-bounce-{m}"))
            .with_time(t(10))
            .with_provider(provider)
            .with_class("bounce")
            .with_scope(Scope::Recipient)
            .with_subject(format!("h:{m}")),
    ];
    for i in 0..blocked.div_ceil(25) {
        v.push(
            Signal::new(Source::Webhook, Channel::Email, Outcome::Failed)
                .with_id(format!("{provider}-blocked-{m}-{i}"))
                .with_time(t(i as i64))
                .with_provider(provider)
                .with_class("blocked")
                .with_code("5.7.1")
                .with_scope(Scope::Sender)
                .with_count(25),
        );
    }
    v
}

async fn run_minutes(
    svc: &IncidentService,
    base: i64,
    range: std::ops::Range<i64>,
    provider: &str,
    storm: bool,
) {
    for m in range {
        let (ok, bad) = if storm { (350, 150) } else { (500, 0) };
        svc.ingest(&minute(base, m, provider, ok, bad))
            .await
            .unwrap();
        svc.tick(base + (m + 1) * 60_000).await.unwrap();
    }
}

#[tokio::test]
async fn storm_pages_once_across_a_restart_and_resolves() {
    ensure_env();
    let rx = LocalReceiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/routes.yaml"), rules_yaml(&rx)).unwrap();
    let store = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let b = base();

    let svc = IncidentService::new(config(dir.path(), &store), &mut Registry::default())
        .await
        .unwrap();
    run_minutes(&svc, b, -150..-20, "sendgrid", false).await;
    assert!(
        svc.store()
            .list_incidents(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    run_minutes(&svc, b, -20..-15, "sendgrid", true).await;
    let incidents = svc
        .store()
        .list_incidents(&Default::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    let id = incidents[0].id.clone();
    assert_eq!(svc.deliver(b).await.unwrap(), 2);
    // The process dies here (the last batch was not acknowledged to its transport).
    let last = minute(b, -16, "sendgrid", 350, 150);
    drop(svc);

    let svc = IncidentService::new(config(dir.path(), &store), &mut Registry::default())
        .await
        .unwrap();
    let again = svc.ingest(&last).await.unwrap();
    assert_eq!((again.stored, again.duplicates), (0, last.len() as u64));
    run_minutes(&svc, b, -15..-10, "sendgrid", true).await;
    assert_eq!(
        svc.deliver(b).await.unwrap(),
        0,
        "no page sent twice after the restart"
    );
    let incidents = svc
        .store()
        .list_incidents(&Default::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].id, id);
    assert_eq!(incidents[0].state, IncidentState::Open);

    // Recovery: resolves after the hysteresis, PagerDuty gets the resolve for the same key.
    run_minutes(&svc, b, -10..10, "sendgrid", false).await;
    let i = svc.store().get_incident(&id).await.unwrap().unwrap();
    assert_eq!(i.state, IncidentState::Resolved);
    assert_eq!(svc.deliver(b + 10 * 60_000).await.unwrap(), 2);

    let pd = rx.hits("/pd");
    let actions: Vec<String> = pd
        .iter()
        .map(|h| h.json()["event_action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, vec!["trigger", "resolve"]);
    assert!(
        pd.iter()
            .all(|h| h.json()["dedup_key"] == id.as_str() && h.json()["routing_key"] == PD_KEY)
    );
    let trigger = pd[0].json();
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert!(
        trigger["payload"]["custom_details"]["why"][0]
            .as_str()
            .unwrap()
            .contains("blocked")
    );
    let hooks = rx.hits("/hook");
    assert_eq!(hooks.len(), 2);
    for h in &hooks {
        let sig = h
            .headers
            .get("x-vigil-signature")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(verify(HOOK_SECRET.as_bytes(), &h.body, sig));
    }
    let timeline = svc.store().timeline(&id).await.unwrap();
    let kinds: Vec<&str> = timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"opened"));
    assert_eq!(kinds.last(), Some(&"resolved"));
}

#[tokio::test]
async fn replicas_on_postgres_never_send_the_same_page_twice() {
    ensure_env();
    let rx = LocalReceiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/routes.yaml"), rules_yaml(&rx)).unwrap();
    let db = PgServer::shared().create_database().unwrap();
    let a = IncidentService::new(config(dir.path(), &db.url), &mut Registry::default())
        .await
        .unwrap();
    let b = IncidentService::new(config(dir.path(), &db.url), &mut Registry::default())
        .await
        .unwrap();
    let t = base();
    // Both replicas detect the same storms (each sees the whole stream, as after a consumer
    // group rebalance) and both enqueue the same pages.
    for (svc, tag) in [(&a, "a"), (&b, "b")] {
        for p in ["sendgrid", "postmark", "mailgun"] {
            for m in -120..-20 {
                let mut batch = minute(t, m, p, 500, 0);
                batch
                    .iter_mut()
                    .for_each(|s| s.id = format!("{tag}-{}", s.id));
                svc.ingest(&batch).await.unwrap();
            }
            for m in -20..-14 {
                let mut batch = minute(t, m, p, 350, 150);
                batch
                    .iter_mut()
                    .for_each(|s| s.id = format!("{tag}-{}", s.id));
                svc.ingest(&batch).await.unwrap();
            }
        }
        for m in -119..-13 {
            svc.tick(t + m * 60_000).await.unwrap();
        }
    }
    let stats = a.store().outbox_stats().await.unwrap();
    assert_eq!(
        stats.pending, 6,
        "3 incidents x 2 receivers, stored once although both enqueued"
    );
    let (x, y) = tokio::join!(
        async {
            let mut n = 0;
            for _ in 0..5 {
                n += a.deliver(t).await.unwrap();
            }
            n
        },
        async {
            let mut n = 0;
            for _ in 0..5 {
                n += b.deliver(t).await.unwrap();
            }
            n
        }
    );
    assert_eq!(x + y, 6);
    let mut keys: Vec<String> = rx
        .hits("/hook")
        .iter()
        .map(|h| h.json()["dedup_key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!((n, keys.len()), (3, 3));
    assert_eq!(rx.hits("/pd").len(), 3);
}

fn metric(registry: &Registry, name: &str) -> f64 {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn broken_rules_file_changes_nothing_but_a_metric() {
    ensure_env();
    let rx = LocalReceiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("routes.yaml"), rules_yaml(&rx)).unwrap();
    let mut registry = Registry::default();
    let svc = IncidentService::new(config(dir.path(), "sqlite::memory:"), &mut registry)
        .await
        .unwrap();
    let before = svc.rules();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = svc.spawn(async move {
        let _ = stop_rx.await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(
        rules_dir.join("routes.yaml"),
        "routes: [\n  - name: broken\n",
    )
    .unwrap();
    let mut waited = 0;
    while metric(&registry, "vigil_incident_rules_errors_total") < 1.0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(metric(&registry, "vigil_incident_rules_errors_total"), 1.0);
    assert_eq!(*svc.rules(), *before, "previous rules kept");
    // A valid edit is picked up.
    let fixed = rules_yaml(&rx).replace("receivers: [pd, hook]", "receivers: [hook]");
    std::fs::write(rules_dir.join("routes.yaml"), fixed).unwrap();
    waited = 0;
    while metric(&registry, "vigil_incident_rules_reloads_total") < 1.0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(svc.rules().routes[0].receivers, vec!["hook".to_string()]);
    let _ = stop_tx.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn serve_accepts_signals_and_stops_on_shutdown() {
    ensure_env();
    let dir = tempfile::tempdir().unwrap();
    let svc = IncidentService::new(
        config(dir.path(), "sqlite::memory:"),
        &mut Registry::default(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/signals", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let svc = svc.clone();
        tokio::spawn(async move {
            svc.serve(listener, async move {
                let _ = stop_rx.await;
            })
            .await
        })
    };
    let batch = minute(base(), 0, "sendgrid", 10, 0);
    let r: serde_json::Value = reqwest::Client::new()
        .post(&url)
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["stored"], 2);
    assert_eq!(svc.store().count_signals().await.unwrap(), 2);
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_store_outage_during_a_tick_loses_no_incident_and_no_page() {
    ensure_env();
    let rx = LocalReceiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/routes.yaml"), rules_yaml(&rx)).unwrap();
    let pg = PgServer::start_new().unwrap();
    let db = pg.create_database().unwrap();
    let svc = IncidentService::new(config(dir.path(), &db.url), &mut Registry::default())
        .await
        .unwrap();
    let t = base();
    for m in -120..-20 {
        svc.ingest(&minute(t, m, "sendgrid", 500, 0)).await.unwrap();
        svc.tick(t + (m + 1) * 60_000).await.unwrap();
    }
    for m in -20..-17 {
        svc.ingest(&minute(t, m, "sendgrid", 350, 150))
            .await
            .unwrap();
    }
    pg.stop();
    // The tick that opens the incident cannot store it: it fails and keeps the changes.
    assert!(svc.tick(t - 16 * 60_000).await.is_err());
    pg.start().unwrap();
    let mut ok = false;
    for _ in 0..20 {
        if svc.tick(t - 15 * 60_000).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ok, "ticks succeed again once the store is back");
    let incidents = svc
        .store()
        .list_incidents(&Default::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(
        svc.store().timeline(&incidents[0].id).await.unwrap()[0].kind,
        "opened"
    );
    assert_eq!(svc.deliver(t).await.unwrap(), 2);
    assert_eq!(rx.hits("/pd").len(), 1);
}
