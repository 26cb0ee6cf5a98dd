//! Webhook taps on the data path: the webhook is forwarded to the CRM byte-identical, the CRM's
//! response comes back unchanged, verified events become de-duplicated signals, and unverified
//! ones are forwarded all the same but only counted by reason.

mod http_support;

use std::time::Duration;

use http_support::{Proxy, Upstream, config, counter_value, fixture};
use serde_json::Value;
use sha2::{Digest, Sha256};
use vigil_proxy::http::config::WebhookRoute;
use vigil_proxy::http::webhook::Provider;
use vigil_signal::{Outcome, Scope, Source};

fn route(path: &str, provider: Provider, secret: &str) -> WebhookRoute {
    WebhookRoute {
        path: path.into(),
        provider,
        secret: secret.into(),
        topic_arns: Vec::new(),
        tolerance_secs: 0,
        public_url: None,
    }
}

fn vectors(file: &str) -> Value {
    serde_json::from_slice(&fixture(file)).unwrap()
}

async fn start(up: &Upstream) -> Proxy {
    let mut cfg = config(&[up]);
    let sg = vectors("sendgrid/signature_vectors.json");
    let mut twilio = route("/webhooks/twilio/status", Provider::Twilio, "12345");
    twilio.public_url = Some("https://example.com".into());
    cfg.webhooks = vec![
        route("/webhooks/stripe", Provider::Stripe, "whsec_test_secret"),
        route(
            "/webhooks/sendgrid",
            Provider::Sendgrid,
            sg["vectors"][1]["public_key"].as_str().unwrap(),
        ),
        twilio,
        route(
            "/webhooks/mailgun",
            Provider::Mailgun,
            "TEST_WEBHOOK_SIGNING_KEY",
        ),
        route("/webhooks/postmark", Provider::Postmark, "hook:pw"),
    ];
    cfg.limits.max_webhook_body_bytes = 64 * 1024;
    cfg.pii_hash_key = Some("test-key".into());
    Proxy::start(cfg).await
}

/// Posts `body` and checks the CRM saw exactly these bytes and its answer came back unchanged.
async fn post_forwarded(
    proxy: &Proxy,
    up: &Upstream,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) {
    let mut req = reqwest::Client::new()
        .post(proxy.url(path))
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 202, "{path}");
    assert_eq!(resp.headers()["x-crm"], "handled");
    assert_eq!(resp.headers()["set-cookie"], "crm=1; Path=/");
    let sha = hex::encode(Sha256::digest(body));
    assert_eq!(resp.text().await.unwrap(), format!("crm-ack:{sha}"));
    let seen = up.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.path_and_query, path);
    assert_eq!(last.body.as_ref(), body, "{path}: forwarded byte-identical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_webhooks_are_forwarded_unchanged_and_become_signals() {
    let up = Upstream::start("crm").await;
    let mut proxy = start(&up).await;

    // Stripe: a signed event file, exact bytes.
    let sv = vectors("stripe/signature_vectors.json");
    let v = sv["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "event_payment_intent.payment_failed.insufficient_funds.json")
        .unwrap();
    let body = fixture(&format!("stripe/{}", v["payload_file"].as_str().unwrap()));
    let header = v["header"].as_str().unwrap();
    post_forwarded(
        &proxy,
        &up,
        "/webhooks/stripe",
        &body,
        &[
            ("stripe-signature", header),
            ("content-type", "application/json"),
        ],
    )
    .await;
    let s = proxy.next_signal().await.expect("stripe signal");
    assert_eq!(s.source, Source::Webhook);
    assert!(s.id.starts_with("stripe:evt_"), "{}", s.id);
    assert_eq!(
        (s.outcome, s.class.as_deref()),
        (Outcome::Failed, Some("card_declined"))
    );
    assert_eq!(s.code.as_deref(), Some("insufficient_funds"));
    assert_eq!(s.scope, Scope::Recipient);

    // The same event again: forwarded again, but no second signal.
    post_forwarded(
        &proxy,
        &up,
        "/webhooks/stripe",
        &body,
        &[("stripe-signature", header)],
    )
    .await;

    // SendGrid: the CRLF-terminated signed body, two events.
    let sg = vectors("sendgrid/signature_vectors.json");
    let sgv = &sg["vectors"][1];
    let body = fixture("sendgrid/signed_multi_processed_blocked.raw.txt");
    post_forwarded(
        &proxy,
        &up,
        "/webhooks/sendgrid",
        &body,
        &[
            (
                "x-twilio-email-event-webhook-signature",
                sgv["signature"].as_str().unwrap(),
            ),
            (
                "x-twilio-email-event-webhook-timestamp",
                sgv["timestamp"].as_str().unwrap(),
            ),
        ],
    )
    .await;
    let a = proxy.next_signal().await.expect("sendgrid 1");
    let b = proxy.next_signal().await.expect("sendgrid 2");
    assert_eq!((a.outcome, b.outcome), (Outcome::Accepted, Outcome::Failed));
    assert_eq!(b.class.as_deref(), Some("blocked"));
    assert_eq!(b.scope, Scope::Sender);
    assert!(!a.to_json().contains("gmail.com"), "recipient is hashed");

    // Twilio: form body, signature over the public URL.
    let tv = vectors("twilio/sms_status_signature_vectors.DERIVED.json");
    let t = &tv["vectors"][1];
    let body = fixture("twilio/sms_status_failed_30010.txt");
    post_forwarded(
        &proxy,
        &up,
        "/webhooks/twilio/status",
        &body,
        &[
            (
                "x-twilio-signature",
                t["x_twilio_signature"].as_str().unwrap(),
            ),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
    )
    .await;
    let s = proxy.next_signal().await.expect("twilio signal");
    assert_eq!(s.id, "twilio:SMyyy:failed");
    assert_eq!(
        (s.code.as_deref(), s.permanent),
        (Some("30010"), Some(true))
    );

    // Mailgun (JSON, signature inside) and Postmark (basic auth).
    post_forwarded(
        &proxy,
        &up,
        "/webhooks/mailgun",
        &fixture("mailgun/failed_permanent_bounce.json"),
        &[("content-type", "application/json")],
    )
    .await;
    let s = proxy.next_signal().await.expect("mailgun signal");
    assert_eq!(
        (s.class.as_deref(), s.code.as_deref()),
        (Some("bounce"), Some("550"))
    );
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("hook:pw")
    );
    post_forwarded(
        &proxy,
        &up,
        "/webhooks/postmark",
        &fixture("postmark/bounce_hard.json"),
        &[("authorization", &auth)],
    )
    .await;
    let s = proxy.next_signal().await.expect("postmark signal");
    assert_eq!(s.code.as_deref(), Some("HardBounce"));

    // No duplicate stripe signal was emitted in between.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), proxy.signals.recv())
            .await
            .is_err()
    );
    let m = proxy.metrics();
    assert_eq!(
        counter_value(
            &m,
            "vigil_webhook_requests_total{provider=\"stripe\",result=\"verified\"}"
        ),
        2.0
    );
    assert_eq!(
        counter_value(
            &m,
            "vigil_webhook_events_total{provider=\"stripe\",result=\"failed\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_webhooks_are_forwarded_but_not_counted() {
    let up = Upstream::start("crm").await;
    let mut proxy = start(&up).await;
    let body = fixture("stripe/event_payment_intent.succeeded.json");
    let forged = "t=1721954102,v1=0000000000000000000000000000000000000000000000000000000000000000";
    post_forwarded(
        &proxy,
        &up,
        "/webhooks/stripe",
        &body,
        &[("stripe-signature", forged)],
    )
    .await;
    post_forwarded(&proxy, &up, "/webhooks/stripe", &body, &[]).await;
    let tampered = fixture("twilio/sms_status_delivered.txt");
    post_forwarded(
        &proxy,
        &up,
        "/webhooks/twilio/status",
        &tampered,
        &[("x-twilio-signature", "U4IfYL5GaHn2Ejn3F+4HxwNWopw=")],
    )
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), proxy.signals.recv())
            .await
            .is_err(),
        "no signal from unverified webhooks"
    );
    let m = proxy.metrics();
    for (labels, n) in [
        ("{provider=\"stripe\",result=\"bad_signature\"}", 1.0),
        ("{provider=\"stripe\",result=\"missing_signature\"}", 1.0),
        ("{provider=\"twilio\",result=\"bad_signature\"}", 1.0),
    ] {
        assert_eq!(
            counter_value(&m, &format!("vigil_webhook_requests_total{labels}")),
            n,
            "{labels}\n{m}"
        );
    }
    // Oversized webhook bodies are refused before anything is forwarded.
    let before = up.seen().len();
    let r = reqwest::Client::new()
        .post(proxy.url("/webhooks/stripe"))
        .body(vec![b'x'; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(up.seen().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_fail_over_when_a_crm_instance_refuses_connections() {
    let up = Upstream::start("crm").await;
    let down = http_support::closed_port().await;
    let mut cfg = config(&[&up]);
    cfg.upstream.insert(0, format!("http://{down}"));
    cfg.webhooks = vec![route("/webhooks/stripe", Provider::Stripe, "whsec_x")];
    let proxy = Proxy::start(cfg).await;
    let body = fixture("stripe/event_payment_intent.succeeded.json");
    for _ in 0..4 {
        post_forwarded(&proxy, &up, "/webhooks/stripe", &body, &[]).await;
    }
    assert_eq!(up.seen().len(), 4);
}
