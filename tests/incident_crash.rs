//! Issue acceptance: the incident service (`vigil run` with `[incident]`, signals through Redis
//! Streams) is killed with SIGKILL in the middle of a failure storm and restarted on the same
//! SQLite store. Local receivers stand in for Slack, PagerDuty and a signed webhook and count
//! every request.
//!
//! The kill is placed in the hardest spot for the outbox: while a page is in flight (the
//! PagerDuty receiver holds its second request unanswered), after other pages were answered
//! and marked sent, and before the storm's last signals arrive. What is asserted:
//! - every signal the producer sent is stored exactly once;
//! - each incident is paged exactly once per receiver (PagerDuty trigger by `dedup_key`, the
//!   webhook by `Idempotency-Key`, Slack by incident id in the text): answered pages, none
//!   missing, none twice; pages answered before the kill are not sent again;
//! - the only request a receiver saw twice is the one cut off by the kill, re-sent with the same
//!   key (the outbox is at-least-once: a page whose outcome the dead process never learned is
//!   sent again, and receivers de-duplicate by key as PagerDuty does with `dedup_key`);
//! - no outbox row is left pending or failed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::receivers::Receivers;
use common::{Vigil, wait_http};
use vigil_incident::Store;
use vigil_incident::model::IncidentState;
use vigil_incident::store::outbox::OutboxStats;
use vigil_signal::transport::RedisSink;
use vigil_signal::{Channel, Outcome, Scope, Signal, Source};
use vigil_testkit::{RedisServer, free_port};

const MINUTES: i64 = 8;
const PD_KEY: &str = "R0UTING-KEY-CRASH";
const HOOK_SECRET: &str = "hook-secret-crash";

/// One storm minute of one provider: 350 delivered and 150 sender-side blocks, as 80 signals.
fn minute(start_ms: i64, m: i64, provider: &str, channel: Channel) -> Vec<Signal> {
    let t0 = start_ms - (MINUTES - m) * 60_000;
    let t = |s: i64| Utc.timestamp_millis_opt(t0 + s * 1000).single().unwrap();
    let mut v = Vec::new();
    for i in 0..50 {
        v.push(
            Signal::new(Source::Webhook, channel, Outcome::Delivered)
                .with_id(format!("{provider}-ok-{m}-{i}"))
                .with_time(t(i % 60))
                .with_provider(provider)
                .with_count(7),
        );
    }
    for i in 0..30 {
        v.push(
            Signal::new(Source::Webhook, channel, Outcome::Failed)
                .with_id(format!("{provider}-blocked-{m}-{i}"))
                .with_time(t(i * 2))
                .with_provider(provider)
                .with_class("blocked")
                .with_code(if channel == Channel::Sms {
                    "30007"
                } else {
                    "5.7.1"
                })
                .with_scope(Scope::Sender)
                .with_count(5),
        );
    }
    v
}

/// Storm minutes `range` of both providers.
fn storm(start_ms: i64, range: std::ops::Range<i64>) -> Vec<Signal> {
    range
        .flat_map(|m| {
            let mut v = minute(start_ms, m, "sendgrid", Channel::Email);
            v.extend(minute(start_ms, m, "twilio", Channel::Sms));
            v
        })
        .collect()
}

async fn send(sink: &RedisSink, signals: &[Signal]) {
    for chunk in signals.chunks(40) {
        sink.send(chunk).await.unwrap();
    }
}

async fn with_store<T>(url: &str, f: impl AsyncFnOnce(&Store) -> T) -> Option<T> {
    let store = Store::open(url).await.ok()?;
    let out = f(&store).await;
    store.close().await;
    Some(out)
}

fn rules(rx: &Receivers) -> String {
    format!(
        "receivers:\n  - name: pd\n    kind: pagerduty\n    routing_key_env: VIGIL_CRASH_PD_KEY\n    url: {}\n  - name: slack\n    kind: slack\n    url_env: VIGIL_CRASH_SLACK_URL\n  - name: hook\n    kind: webhook\n    url: {}\n    secret_env: VIGIL_CRASH_HOOK_SECRET\nroutes:\n  - name: page\n    receivers: [pd, slack, hook]\n",
        rx.url("/pd"),
        rx.url("/hook"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_storm_loses_no_signal_and_no_page_and_pages_nothing_twice() {
    let rx = Receivers::start().await;
    // The second PagerDuty page is held: the process is killed while it is in flight.
    rx.hold("/pd", 2);
    let redis = RedisServer::shared();
    let stream = format!("{}incident-crash", redis.prefix());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/routes.yaml"), rules(&rx)).unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("vigil.db").display());
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

[incident.notifier]
poll_interval_ms = 100
lease_secs = 6
timeout_secs = 5
backoff_initial_secs = 1
backoff_max_secs = 2
"#,
        redis = redis.url(),
        incident = free_port(),
    );
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, config).unwrap();
    let slack_url = rx.url("/slack");
    let env = [
        ("VIGIL_CRASH_PD_KEY", PD_KEY),
        ("VIGIL_CRASH_SLACK_URL", slack_url.as_str()),
        ("VIGIL_CRASH_HOOK_SECRET", HOOK_SECRET),
    ];
    let mut vigil = Vigil::start_at(tempfile::tempdir().unwrap(), path, &env);
    wait_http(admin, "/readyz").await;

    let start = Utc::now().timestamp_millis();
    let sink = RedisSink::new(&redis.url(), &stream, 1_000_000).unwrap();
    let (a, b, c) = (
        storm(start, 0..4),
        storm(start, 4..6),
        storm(start, 6..MINUTES),
    );
    let total = (a.len() + b.len() + c.len()) as u64;

    // Phase A: half the storm; both incidents open and page. Kill while a page is in flight.
    send(&sink, &a).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rx.holding() {
        assert!(
            Instant::now() < deadline,
            "no second PagerDuty page within 60 s ({} requests so far)",
            rx.total()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    vigil.kill9();
    let answered_before: BTreeMap<String, usize> = ["/pd", "/slack", "/hook"]
        .iter()
        .flat_map(|p| rx.answered_pages(p))
        .collect();
    assert!(
        !answered_before.is_empty(),
        "pages were answered before the kill"
    );
    let stored_before = with_store(&store_url, async |s| s.count_signals().await.unwrap())
        .await
        .unwrap_or(0);

    // Phase B: the storm goes on while the service is down; restart; phase C.
    send(&sink, &b).await;
    vigil.restart(&env);
    wait_http(admin, "/readyz").await;
    send(&sink, &c).await;

    // Quiet: every signal stored, the outbox drained, no new request for 2 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut stored, mut outbox) = (0, OutboxStats::default());
    let (mut last_total, mut still_since) = (usize::MAX, Instant::now());
    loop {
        if let Some((n, o)) = with_store(&store_url, async |s| {
            (
                s.count_signals().await.unwrap_or(0),
                s.outbox_stats().await.unwrap_or_default(),
            )
        })
        .await
        {
            (stored, outbox) = (n, o);
        }
        if rx.total() != last_total {
            (last_total, still_since) = (rx.total(), Instant::now());
        }
        if stored >= total
            && outbox.sent > 0
            && outbox.pending == 0
            && still_since.elapsed() > Duration::from_secs(2)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not quiet after 90 s: stored {stored}/{total}, outbox {outbox:?}, {last_total} requests"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(vigil.terminate().success());

    // Signals: each exactly once (ids are unique, so a count equal to the total means none
    // lost and none twice).
    assert!(stored_before < total, "the kill came mid-storm");
    assert_eq!(stored, total, "every signal stored exactly once");

    // Incidents: one per provider, still open (the storm has not recovered).
    let incidents = with_store(&store_url, async |s| {
        s.list_incidents(&Default::default()).await.unwrap()
    })
    .await
    .unwrap();
    assert!(incidents.len() >= 2, "{incidents:?}");
    assert!(
        incidents
            .iter()
            .all(|i| i.state == IncidentState::Open && i.severity.as_str() == "critical"),
        "{incidents:?}"
    );
    let ids: BTreeSet<&str> = incidents.iter().map(|i| i.id.as_str()).collect();

    // Outbox: drained, nothing given up.
    assert_eq!(outbox.pending, 0);
    assert_eq!(outbox.failed, 0);

    // Pages at the receivers: exactly one answered trigger per incident and receiver.
    let pd = rx.answered_pages("/pd");
    let want_pd: BTreeMap<String, usize> =
        ids.iter().map(|id| (format!("{id}/trigger"), 1)).collect();
    assert_eq!(pd, want_pd, "PagerDuty: one trigger per incident");
    let slack = rx.answered_pages("/slack");
    let want_slack: BTreeMap<String, usize> =
        ids.iter().map(|id| (format!("{id}/FIRING"), 1)).collect();
    assert_eq!(slack, want_slack, "Slack: one FIRING line per incident");
    let hooks = rx.requests("/hook");
    let mut hook_pages = BTreeMap::new();
    for h in hooks.iter().filter(|h| h.answered) {
        let sig = h.header("x-vigil-signature").unwrap_or_default();
        assert!(vigil_incident::notify::receivers::verify(
            HOOK_SECRET.as_bytes(),
            &h.body,
            &sig
        ));
        let n = h.json();
        assert_eq!(n["event"], "trigger");
        assert_eq!(
            h.header("idempotency-key").as_deref(),
            n["dedup_key"].as_str()
        );
        *hook_pages
            .entry(n["incident_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    let want_hook: BTreeMap<String, usize> = ids.iter().map(|id| (id.to_string(), 1)).collect();
    assert_eq!(hook_pages, want_hook, "webhook: one trigger per incident");
    assert_eq!(
        outbox.sent as usize,
        pd.len() + slack.len() + hook_pages.len(),
        "every outbox row is one page at a receiver"
    );
    assert!(
        rx.requests("/pd")
            .iter()
            .all(|r| r.json()["routing_key"] == PD_KEY)
    );

    // Pages answered before the kill were not sent again.
    let answered_after: BTreeMap<String, usize> = ["/pd", "/slack", "/hook"]
        .iter()
        .flat_map(|p| rx.answered_pages(p))
        .collect();
    for key in answered_before.keys() {
        assert_eq!(answered_after.get(key), Some(&1), "{key}");
    }
    // The only repeat on the wire: the PagerDuty request cut off by the kill, re-sent with the
    // same dedup_key after the restart. Slack and the webhook saw every page once.
    let unanswered: Vec<_> = ["/pd", "/slack", "/hook"]
        .iter()
        .flat_map(|p| rx.requests(p))
        .filter(|r| !r.answered)
        .collect();
    assert_eq!(unanswered.len(), 1, "only the held request went unanswered");
    assert_eq!(unanswered[0].path, "/pd");
    let cut = unanswered[0].page_keys();
    let received = rx.received_pages("/pd");
    for (key, n) in &received {
        let expected = if cut.contains(key) { 2 } else { 1 };
        assert_eq!(*n, expected, "PagerDuty requests for {key}");
    }
    assert_eq!(rx.received_pages("/slack"), want_slack);
    assert_eq!(rx.requests("/hook").len(), ids.len());
}
