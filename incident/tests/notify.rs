//! Notification delivery against local receivers: Slack, PagerDuty Events v2 and signed
//! webhooks; retries with backoff on 5xx, Retry-After on 429, no retry on 4xx.

mod common;

use common::receiver::LocalReceiver;
use prometheus_client::registry::Registry;
use vigil_incident::Store;
use vigil_incident::config::NotifierConfig;
use vigil_incident::engine::{Notification, NotifyEvent};
use vigil_incident::metrics::Metrics;
use vigil_incident::model::Severity;
use vigil_incident::notify::Notifier;
use vigil_incident::rules::{Receiver, ReceiverKind, Rules};
use vigil_incident::store::outbox::OutboxEntry;

fn note(id: &str, receiver: &str, event: NotifyEvent) -> OutboxEntry {
    let n = Notification {
        receiver: receiver.into(),
        dedup_key: format!("{id}:{event:?}:1:{receiver}"),
        event,
        incident_id: id.into(),
        seq: 1,
        severity: Severity::Critical,
        title: "email blocked (sendgrid): likely integration".into(),
        layer: "integration".into(),
        channel: "email".into(),
        at_ms: 0,
        why: vec!["150 of 500 email sendgrid failed with blocked [top codes: 5.7.1x150]".into()],
        escalation: false,
    };
    OutboxEntry {
        id: format!("{id}-{receiver}-{event:?}"),
        dedup_key: n.dedup_key.clone(),
        incident_id: id.into(),
        receiver: receiver.into(),
        payload: serde_json::to_string(&n).unwrap(),
    }
}

#[tokio::test]
async fn receivers_retries_and_rate_limits() {
    let slack = LocalReceiver::start(1, 503).await;
    let pd = LocalReceiver::start(1, 429).await;
    let rejecting = LocalReceiver::start(100, 400).await;
    // SAFETY: the only test in this binary; set before anything reads the environment.
    unsafe {
        std::env::set_var("VIGIL_NOTIFY_TEST_SLACK", slack.url("/services/T/B/X"));
        std::env::set_var("VIGIL_NOTIFY_TEST_PD", "key-1");
    }
    let rules = Rules {
        receivers: vec![
            Receiver {
                name: "slack".into(),
                kind: ReceiverKind::Slack {
                    url_env: "VIGIL_NOTIFY_TEST_SLACK".into(),
                },
            },
            Receiver {
                name: "pd".into(),
                kind: ReceiverKind::Pagerduty {
                    routing_key_env: "VIGIL_NOTIFY_TEST_PD".into(),
                    url: Some(pd.url("/v2/enqueue")),
                },
            },
            Receiver {
                name: "bad-hook".into(),
                kind: ReceiverKind::Webhook {
                    url: rejecting.url("/hook"),
                    secret_env: "VIGIL_NOTIFY_TEST_PD".into(),
                },
            },
            Receiver {
                name: "needs-secret".into(),
                kind: ReceiverKind::Slack {
                    url_env: "VIGIL_NOTIFY_TEST_UNSET".into(),
                },
            },
        ],
        ..Rules::default()
    };
    let store = Store::open("sqlite::memory:").await.unwrap();
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let cfg = NotifierConfig {
        backoff_initial_secs: 5,
        ..NotifierConfig::default()
    };
    let notifier = Notifier::new(store.clone(), cfg, metrics).unwrap();
    for e in [
        note("inc-1", "slack", NotifyEvent::Trigger),
        note("inc-1", "pd", NotifyEvent::Trigger),
        note("inc-1", "bad-hook", NotifyEvent::Trigger),
        note("inc-1", "needs-secret", NotifyEvent::Trigger),
        note("inc-1", "nobody", NotifyEvent::Trigger),
    ] {
        assert!(store.enqueue_notification(&e, 0).await.unwrap());
    }
    // First pass: slack 503 (retry in 5 s), pd 429 (Retry-After 30 s), bad-hook 400 (given up),
    // missing secret and unknown receiver (given up).
    assert_eq!(notifier.run_once(&rules, 1_000).await.unwrap(), 0);
    let st = store.outbox_stats().await.unwrap();
    assert_eq!((st.pending, st.failed), (2, 3));
    // Before the backoff nothing is due.
    assert_eq!(notifier.run_once(&rules, 5_000).await.unwrap(), 0);
    // After 5 s slack goes; PagerDuty waits for its Retry-After.
    assert_eq!(notifier.run_once(&rules, 6_500).await.unwrap(), 1);
    assert_eq!(notifier.run_once(&rules, 20_000).await.unwrap(), 0);
    assert_eq!(notifier.run_once(&rules, 31_500).await.unwrap(), 1);
    let st = store.outbox_stats().await.unwrap();
    assert_eq!((st.pending, st.sent, st.failed), (0, 2, 3));

    let s = slack.hits("/services/T/B/X");
    assert_eq!(s.len(), 1);
    let text = s[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("[FIRING] email blocked") && text.contains("5.7.1x150"),
        "{text}"
    );
    let p = pd.hits("/v2/enqueue");
    assert_eq!(p.len(), 1);
    let body = p[0].json();
    assert_eq!(body["routing_key"], "key-1");
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["dedup_key"], "inc-1");
    assert_eq!(body["payload"]["source"], "vigil");
    assert!(rejecting.hits("/hook").is_empty());

    // Coalescing and Slack's rate limit: three updates claimed together go out as one message;
    // two more within the same second wait (deferred, not dropped, not counted as attempts).
    for i in 0..3 {
        store
            .enqueue_notification(
                &note(&format!("inc-c{i}"), "slack", NotifyEvent::Trigger),
                100_000,
            )
            .await
            .unwrap();
    }
    assert_eq!(notifier.run_once(&rules, 100_000).await.unwrap(), 3);
    let s = slack.hits("/services/T/B/X");
    assert_eq!(s.len(), 2);
    let text = s[1].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("3 incident updates:")
            && text.contains("inc-c0")
            && text.contains("inc-c2"),
        "{text}"
    );
    for i in 3..5 {
        store
            .enqueue_notification(
                &note(&format!("inc-c{i}"), "slack", NotifyEvent::Trigger),
                100_200,
            )
            .await
            .unwrap();
    }
    assert_eq!(notifier.run_once(&rules, 100_500).await.unwrap(), 0);
    assert_eq!(notifier.run_once(&rules, 100_800).await.unwrap(), 0);
    assert_eq!(notifier.run_once(&rules, 101_000).await.unwrap(), 2);
    assert_eq!(slack.hits("/services/T/B/X").len(), 3);
    let st = store.outbox_stats().await.unwrap();
    assert_eq!((st.pending, st.sent, st.failed), (0, 7, 3));

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    assert!(
        out.contains("vigil_incident_notifications_total{kind=\"slack\",result=\"deferred\"} 2"),
        "{out}"
    );
    assert!(
        out.contains("vigil_incident_notifications_total{kind=\"slack\",result=\"retry\"} 1"),
        "{out}"
    );
    assert!(
        out.contains("vigil_incident_notifications_total{kind=\"webhook\",result=\"failed\"} 1"),
        "{out}"
    );
}

/// A minimal SMTP sink: accepts every message and keeps (envelope, data).
async fn smtp_sink() -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<(Vec<String>, String)>>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut envelope = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await.unwrap();
                    } else if upper.starts_with("MAIL FROM") || upper.starts_with("RCPT TO") {
                        envelope.push(line.clone());
                        w.write_all(b"250 OK\r\n").await.unwrap();
                    } else if upper == "DATA" {
                        w.write_all(b"354 go ahead\r\n").await.unwrap();
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push_str(&l);
                            data.push('\n');
                        }
                        store
                            .lock()
                            .unwrap()
                            .push((std::mem::take(&mut envelope), data));
                        w.write_all(b"250 queued\r\n").await.unwrap();
                    } else if upper == "QUIT" {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    } else {
                        w.write_all(b"250 OK\r\n").await.unwrap();
                    }
                }
            });
        }
    });
    (port, got)
}

#[tokio::test]
async fn email_goes_out_over_smtp() {
    let (port, got) = smtp_sink().await;
    let rules = Rules {
        receivers: vec![Receiver {
            name: "mail".into(),
            kind: ReceiverKind::Smtp {
                host: "127.0.0.1".into(),
                port,
                tls: vigil_incident::rules::SmtpTls::None,
                from: "vigil@ops.example".into(),
                to: vec!["oncall@ops.example".into(), "leads@ops.example".into()],
                username_env: None,
                password_env: None,
            },
        }],
        ..Rules::default()
    };
    let store = Store::open("sqlite::memory:").await.unwrap();
    let notifier = Notifier::new(
        store.clone(),
        NotifierConfig::default(),
        Metrics::new(&mut Registry::default()),
    )
    .unwrap();
    store
        .enqueue_notification(&note("inc-9", "mail", NotifyEvent::Trigger), 0)
        .await
        .unwrap();
    assert_eq!(notifier.run_once(&rules, 1_000).await.unwrap(), 1);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (envelope, data) = &got[0];
    assert!(envelope.iter().any(|l| l.contains("<oncall@ops.example>")));
    assert!(envelope.iter().any(|l| l.contains("<leads@ops.example>")));
    assert!(data.contains("Subject: [FIRING] email blocked"), "{data}");
    let body = data.replace("=\n", "");
    assert!(body.contains("5.7.1x150"), "{data}");
}

#[test]
fn smtp_receivers_validate_in_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        "receivers:\n  - name: mail\n    kind: smtp\n    host: smtp.example.org\n    from: vigil@example.org\n    to: [oncall@example.org]\n    username_env: SMTP_USER\n    password_env: SMTP_PASS\n",
    )
    .unwrap();
    let r = Rules::load_dir(dir.path()).unwrap();
    assert!(matches!(
        &r.receiver("mail").unwrap().kind,
        ReceiverKind::Smtp { port: 587, .. }
    ));
    std::fs::write(
        dir.path().join("m.yaml"),
        "receivers:\n  - name: mail\n    kind: smtp\n    host: h\n    from: a@b.c\n    to: []\n",
    )
    .unwrap();
    let msg = Rules::load_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("m.yaml") && msg.contains("`to`"), "{msg}");
}
