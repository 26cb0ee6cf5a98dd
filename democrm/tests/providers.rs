//! The simulators answer like the real APIs, sign their webhooks (checked here independently:
//! HMAC recomputed, ECDSA verified with the published key), and their failure modes change
//! the outcomes.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::{Value, json};
use vigil_democrm::{Mode, ProviderKind, SimConfig, Simulators};

use common::{Capture, Captured};

const SID: &str = "AC00000000000000000000000000demo01";
const TOKEN: &str = "demo-twilio-auth-token";
const WHSEC: &str = "whsec_demo_secret";

async fn sims_with_capture() -> (Simulators, String, Capture, Vec<common::Stop>) {
    let (cap, cap_url, cap_stop) = common::capture_server().await;
    let (l, url) = common::listener().await;
    let config = SimConfig {
        webhook_delay: Duration::from_millis(10),
        ..SimConfig::default()
    }
    .with_webhook_base(&cap_url);
    let (sims, stop) = common::start_sims(l, config);
    (sims, url, cap, vec![cap_stop, stop])
}

fn header(c: &Captured, name: &str) -> String {
    c.headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
        .to_string()
}

fn verify_sendgrid(public_key_b64: &str, c: &Captured) {
    let key = VerifyingKey::from_public_key_der(&STANDARD.decode(public_key_b64).unwrap())
        .expect("SPKI public key");
    let sig = Signature::from_der(
        &STANDARD
            .decode(header(c, "x-twilio-email-event-webhook-signature"))
            .unwrap(),
    )
    .expect("DER signature");
    let mut msg = header(c, "x-twilio-email-event-webhook-timestamp").into_bytes();
    msg.extend_from_slice(&c.body);
    key.verify(&msg, &sig).expect("SendGrid signature verifies");
    assert!(c.body.ends_with(b"\r\n"), "SendGrid bodies end in CRLF");
}

fn verify_twilio(url: &str, c: &Captured) {
    let mut params: Vec<(String, String)> = serde_urlencoded::from_bytes(&c.body).unwrap();
    params.sort();
    let mut data = url.to_string();
    for (k, v) in &params {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = <Hmac<sha1::Sha1>>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(header(c, "x-twilio-signature"), expected);
}

fn verify_stripe(c: &Captured) {
    let h = header(c, "stripe-signature");
    let t = h.split(',').find_map(|p| p.strip_prefix("t=")).unwrap();
    let v1 = h.split(',').find_map(|p| p.strip_prefix("v1=")).unwrap();
    let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(WHSEC.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&c.body);
    assert_eq!(hex::encode(mac.finalize().into_bytes()), v1);
}

async fn send_email(
    http: &reqwest::Client,
    url: &str,
    from: &str,
    to: &[String],
) -> reqwest::Response {
    let to: Vec<Value> = to.iter().map(|e| json!({"email": e})).collect();
    http.post(format!("{url}/v3/mail/send"))
        .bearer_auth("SG.test")
        .json(&json!({
            "personalizations": [{"to": to, "custom_args": {"crm_message_id": "77"}}],
            "from": {"email": from},
            "subject": "hi",
            "content": [{"type": "text/plain", "value": "hello"}],
        }))
        .send()
        .await
        .unwrap()
}

async fn send_sms(http: &reqwest::Client, url: &str, callback: Option<&str>) -> reqwest::Response {
    let mut form = vec![
        ("To", "+15550001111"),
        ("From", "+15550100000"),
        ("Body", "hi"),
    ];
    if let Some(cb) = callback {
        form.push(("StatusCallback", cb));
    }
    http.post(format!("{url}/2010-04-01/Accounts/{SID}/Messages.json"))
        .basic_auth(SID, Some(TOKEN))
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn charge(
    http: &reqwest::Client,
    url: &str,
    pm: &str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = http
        .post(format!("{url}/v1/payment_intents"))
        .bearer_auth("sk_test_x")
        .form(&[
            ("amount", "4900"),
            ("currency", "usd"),
            ("confirm", "true"),
            ("payment_method", pm),
            ("metadata[crm_payment_id]", "5"),
        ]);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

fn emails(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@example.com")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apis_answer_and_webhooks_verify() {
    let (sims, url, cap, _stops) = sims_with_capture().await;
    let http = reqwest::Client::new();
    let pk = sims.sendgrid_public_key();
    assert!(
        pk.starts_with("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"),
        "{pk}"
    );
    let served_pk = http
        .get(format!("{url}/_sim/sendgrid-public-key"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served_pk, pk);

    // SendGrid: 202 + X-Message-Id, then one signed batch per recipient.
    let resp = send_email(&http, &url, "news@campaigns.example.com", &emails(2)).await;
    assert_eq!(resp.status(), 202);
    let msg_id = resp.headers()["x-message-id"].to_str().unwrap().to_string();
    assert_eq!(msg_id.len(), 22);
    let unauth = http
        .post(format!("{url}/v3/mail/send"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    let got = cap.wait_for(2).await;
    let sg: Vec<&Captured> = got
        .iter()
        .filter(|c| c.path == "/webhooks/sendgrid")
        .collect();
    assert_eq!(sg.len(), 2);
    for c in &sg {
        verify_sendgrid(&pk, c);
        let events: Vec<Value> = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(events[0]["event"], "processed");
        assert_eq!(events[0]["crm_message_id"], "77");
        assert!(
            events[0]["sg_message_id"]
                .as_str()
                .unwrap()
                .starts_with(&msg_id)
        );
        assert!(matches!(
            events[1]["event"].as_str(),
            Some("delivered" | "bounce")
        ));
    }
    // A tampered body no longer verifies.
    let mut tampered = sg[0].clone();
    let mut body = tampered.body.to_vec();
    body[3] ^= 1;
    tampered.body = body.into();
    let result = std::panic::catch_unwind(|| verify_sendgrid(&pk, &tampered));
    assert!(result.is_err());

    // Twilio: 201 message resource, then `sent` and a final status, signed over the callback URL.
    let (cb_cap, cb_url, _cb_stop) = common::capture_server().await;
    let callback = format!("{cb_url}/sms-status?src=test");
    let resp = send_sms(&http, &url, Some(&callback)).await;
    assert_eq!(resp.status(), 201);
    let m: Value = resp.json().await.unwrap();
    let sms_sid = m["sid"].as_str().unwrap().to_string();
    assert!(sms_sid.starts_with("SM") && sms_sid.len() == 34);
    assert_eq!(m["status"], "queued");
    assert_eq!(m["account_sid"], SID);
    let callbacks = cb_cap.wait_for(2).await;
    assert_eq!(callbacks.len(), 2);
    let mut statuses = Vec::new();
    for c in &callbacks {
        verify_twilio(&callback, c);
        let p: Vec<(String, String)> = serde_urlencoded::from_bytes(&c.body).unwrap();
        let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("MessageSid").as_deref(), Some(sms_sid.as_str()));
        statuses.push(get("MessageStatus").unwrap());
    }
    assert_eq!(statuses[0], "sent");
    assert!(matches!(statuses[1].as_str(), "delivered" | "undelivered"));
    let bad_auth = http
        .post(format!("{url}/2010-04-01/Accounts/{SID}/Messages.json"))
        .basic_auth(SID, Some("wrong"))
        .form(&[
            ("To", "+15550001111"),
            ("From", "+15550100000"),
            ("Body", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_auth.status(), 401);
    assert_eq!(bad_auth.json::<Value>().await.unwrap()["code"], 20003);
    let bad_to = http
        .post(format!("{url}/2010-04-01/Accounts/{SID}/Messages.json"))
        .basic_auth(SID, Some(TOKEN))
        .form(&[("To", "12"), ("From", "+15550100000"), ("Body", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_to.status(), 400);
    assert_eq!(bad_to.json::<Value>().await.unwrap()["code"], 21211);

    // Stripe: a declining test card gives 402 card_error and a signed payment_failed event.
    let before = cap.all().len();
    let resp = charge(&http, &url, "pm_card_chargeDeclined", None).await;
    assert_eq!(resp.status(), 402);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "card_error");
    assert_eq!(e["error"]["code"], "card_declined");
    assert!(e["error"]["decline_code"].is_string());
    let pi_id = e["error"]["payment_intent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = cap.wait_for(before + 1).await;
    let ev = got.iter().rfind(|c| c.path == "/webhooks/stripe").unwrap();
    verify_stripe(ev);
    let event: Value = serde_json::from_slice(&ev.body).unwrap();
    assert_eq!(event["type"], "payment_intent.payment_failed");
    assert_eq!(event["data"]["object"]["id"], pi_id.as_str());
    assert_eq!(event["data"]["object"]["metadata"]["crm_payment_id"], "5");

    // Idempotency-Key replays the first answer.
    let first = charge(&http, &url, "pm_card_visa", Some("k1")).await;
    let first_status = first.status();
    let first_body: Value = first.json().await.unwrap();
    let again = charge(&http, &url, "pm_card_visa", Some("k1")).await;
    assert_eq!(again.status(), first_status);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    if first_status == 200 {
        assert_eq!(first_body["status"], "succeeded");
        assert_eq!(first_body["amount_received"], 4900);
    }
    let missing = http
        .post(format!("{url}/v1/payment_intents"))
        .bearer_auth("sk_test_x")
        .form(&[("currency", "usd")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "parameter_missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_modes_change_outcomes() {
    let (sims, url, cap, _stops) = sims_with_capture().await;
    let http = reqwest::Client::new();

    // Email: normal noise vs bounce storm vs a blocked, sender-scoped IP.
    let s0 = sims.stats();
    assert_eq!(
        send_email(&http, &url, "notify@app.example.com", &emails(200))
            .await
            .status(),
        202
    );
    let s1 = sims.stats();
    assert_eq!(s1.emails_accepted - s0.emails_accepted, 200);
    assert!(s1.emails_bounced - s0.emails_bounced <= 10, "{s1:?}");
    assert_eq!(s1.emails_blocked, 0);

    sims.set_mode(Mode::BounceStorm);
    send_email(&http, &url, "notify@app.example.com", &emails(200)).await;
    let s2 = sims.stats();
    assert!(s2.emails_bounced - s1.emails_bounced >= 50, "{s2:?}");

    sims.set_mode(Mode::BlockedIp {
        sender_domain: Some("campaigns.example.com".into()),
    });
    send_email(&http, &url, "news@campaigns.example.com", &emails(50)).await;
    let s3 = sims.stats();
    let blocked = (s3.emails_blocked - s2.emails_blocked) + (s3.emails_dropped - s2.emails_dropped);
    assert_eq!(blocked, 50);
    assert!(s3.emails_blocked - s2.emails_blocked > 0);
    send_email(&http, &url, "notify@app.example.com", &emails(50)).await;
    let s4 = sims.stats();
    assert_eq!(
        s4.emails_blocked, s3.emails_blocked,
        "other senders are not blocked"
    );
    assert_eq!(s4.emails_dropped, s3.emails_dropped);

    // SMS: normal vs carrier outage (undelivered 30008/30003 in bulk).
    sims.set_mode(Mode::Normal);
    for _ in 0..100 {
        assert_eq!(send_sms(&http, &url, None).await.status(), 201);
    }
    let s5 = sims.stats();
    assert!(s5.sms_undelivered - s4.sms_undelivered <= 10, "{s5:?}");
    sims.set_mode(Mode::CarrierOutage);
    for _ in 0..100 {
        send_sms(&http, &url, None).await;
    }
    let s6 = sims.stats();
    assert!(s6.sms_undelivered - s5.sms_undelivered >= 50, "{s6:?}");
    let codes: Vec<String> = cap
        .wait_for(1)
        .await
        .iter()
        .filter(|c| c.path == "/webhooks/twilio")
        .filter_map(|c| {
            let p: Vec<(String, String)> = serde_urlencoded::from_bytes(&c.body).ok()?;
            p.into_iter()
                .find(|(k, _)| k == "ErrorCode")
                .map(|(_, v)| v)
        })
        .collect();
    assert!(codes.iter().any(|c| c == "30008"), "{codes:?}");

    // Cards: normal noise vs decline spike.
    sims.set_mode(Mode::Normal);
    for _ in 0..100 {
        let st = charge(&http, &url, "pm_card_visa", None).await.status();
        assert!(st == 200 || st == 402);
    }
    let s7 = sims.stats();
    assert!(s7.payments_declined - s6.payments_declined <= 10, "{s7:?}");
    sims.set_mode(Mode::DeclineSpike);
    for _ in 0..100 {
        charge(&http, &url, "pm_card_visa", None).await;
    }
    let s8 = sims.stats();
    assert!(s8.payments_declined - s7.payments_declined >= 35, "{s8:?}");

    // Provider 5xx, scoped to Stripe, switched through the HTTP control endpoint.
    let put = http
        .put(format!("{url}/_sim/mode"))
        .json(&json!({"mode": "provider_5xx", "provider": "stripe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(
        sims.mode(),
        Mode::Provider5xx {
            provider: Some(ProviderKind::Stripe)
        }
    );
    let got: Value = http
        .get(format!("{url}/_sim/mode"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, json!({"mode": "provider_5xx", "provider": "stripe"}));
    let resp = charge(&http, &url, "pm_card_visa", Some("during-outage")).await;
    assert!(matches!(resp.status().as_u16(), 500 | 503));
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "api_error"
    );
    assert_eq!(
        send_email(&http, &url, "a@app.example.com", &emails(1))
            .await
            .status(),
        202
    );
    // 5xx answers are not stored under the idempotency key.
    sims.set_mode(Mode::Normal);
    let retry = charge(&http, &url, "pm_card_visa", Some("during-outage")).await;
    assert!(matches!(retry.status().as_u16(), 200 | 402));
    assert!(retry.headers().get("idempotent-replayed").is_none());

    // Slow responses: a client with a short timeout gives up.
    sims.set_mode(Mode::Slow {
        provider: Some(ProviderKind::Twilio),
        delay_ms: 3_000,
    });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = impatient
        .post(format!("{url}/2010-04-01/Accounts/{SID}/Messages.json"))
        .basic_auth(SID, Some(TOKEN))
        .form(&[
            ("To", "+15550001111"),
            ("From", "+15550100000"),
            ("Body", "x"),
        ])
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());

    // Lost webhooks: the call succeeds, its webhook never comes; the next one (normal) does.
    sims.set_mode(Mode::LostWebhooks { provider: None });
    let lost_before = sims.stats().webhooks_lost;
    let lost = send_email(
        &http,
        &url,
        "a@app.example.com",
        &[String::from("lost@example.com")],
    )
    .await;
    assert_eq!(lost.status(), 202);
    let lost_id = lost.headers()["x-message-id"].to_str().unwrap().to_string();
    assert_eq!(sims.stats().webhooks_lost, lost_before + 1);
    sims.set_mode(Mode::Normal);
    let kept = send_email(
        &http,
        &url,
        "a@app.example.com",
        &[String::from("kept@example.com")],
    )
    .await;
    let kept_id = kept.headers()["x-message-id"].to_str().unwrap().to_string();
    let mut seen_kept = false;
    for _ in 0..100 {
        let all = cap.all();
        let bodies: Vec<String> = all
            .iter()
            .filter(|c| c.path == "/webhooks/sendgrid")
            .map(|c| String::from_utf8_lossy(&c.body).into_owned())
            .collect();
        assert!(!bodies.iter().any(|b| b.contains(&lost_id)));
        if bodies.iter().any(|b| b.contains(&kept_id)) {
            seen_kept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_kept);
}
