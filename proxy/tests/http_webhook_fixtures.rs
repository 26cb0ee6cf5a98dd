//! Every provider fixture parses to the outcome in its `expected.json`, and every signature vector
//! verifies (or is rejected, for the negative vectors and the tampered variants added here).

use std::path::PathBuf;

use serde_json::Value;
use vigil_proxy::http::pii::{PiiHasher, PiiKind};
use vigil_proxy::http::webhook::{
    VerifyError, WebhookEvent, mailgun, postmark, sendgrid, ses, stripe, twilio,
};
use vigil_signal::{Channel, Source};

fn dir(provider: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/providers")
        .join(provider)
}

fn read(provider: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir(provider).join(file)).unwrap_or_else(|e| panic!("{provider}/{file}: {e}"))
}

fn json(provider: &str, file: &str) -> Value {
    serde_json::from_slice(&read(provider, file)).unwrap()
}

fn hasher() -> PiiHasher {
    PiiHasher::new(b"fixture-test-key".to_vec())
}

fn parse(provider: &str, fixture: &Value, body: &[u8]) -> Vec<WebhookEvent> {
    let h = hasher();
    let is_form = fixture["content_type"].as_str() == Some("application/x-www-form-urlencoded");
    let r = match provider {
        "stripe" => stripe::parse(body, &h),
        "twilio" => twilio::parse(body, &h),
        "sendgrid" => sendgrid::parse(body, &h),
        "mailgun" => mailgun::parse(body, is_form, &h),
        "postmark" => postmark::parse(body, &h),
        "ses" => ses::parse(body, &h),
        other => panic!("no parser for {other}"),
    };
    r.unwrap_or_else(|e| panic!("{provider}/{}: {e}", fixture["file"]))
}

fn opt_str(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[test]
fn every_fixture_parses_to_its_expected_outcome() {
    let h = hasher();
    let mut checked_files = 0;
    let mut checked_events = 0;
    for provider in ["sendgrid", "mailgun", "postmark", "ses", "twilio", "stripe"] {
        let expected = json(provider, "expected.json");
        for fixture in expected["fixtures"].as_array().unwrap() {
            let file = fixture["file"].as_str().unwrap();
            let body = read(provider, file);
            let got = parse(provider, fixture, &body);
            let want = fixture["events"].as_array().unwrap();
            let ctx = format!("{provider}/{file}");
            assert_eq!(got.len(), want.len(), "{ctx}: event count");
            for (g, w) in got.iter().zip(want) {
                let signal = g.to_signal();
                let as_json: Value = serde_json::from_str(&signal.to_json()).unwrap();
                assert_eq!(as_json["channel"], w["channel"], "{ctx}: channel");
                assert_eq!(as_json["outcome"], w["outcome"], "{ctx}: outcome");
                assert_eq!(g.class, opt_str(&w["class"]), "{ctx}: class");
                assert_eq!(g.code, opt_str(&w["code"]), "{ctx}: code");
                assert_eq!(g.permanent, w["permanent"].as_bool(), "{ctx}: permanent");
                assert_eq!(
                    g.provider_event,
                    w["provider_event"].as_str().unwrap(),
                    "{ctx}"
                );
                assert_eq!(signal.source, Source::Webhook);
                assert_eq!(signal.provider.as_deref(), Some(provider));
                assert!(signal.id.starts_with(&format!("{provider}:")), "{ctx}: id");
                if let Some(recipient) = w["recipient"].as_str() {
                    let kind = match g.channel {
                        Channel::Sms => PiiKind::Phone,
                        _ => PiiKind::Email,
                    };
                    assert_eq!(g.subject, Some(h.hash(kind, recipient)), "{ctx}: subject");
                    // The raw address never reaches the signal.
                    assert!(
                        !signal.to_json().contains(recipient),
                        "{ctx}: raw PII leaked"
                    );
                } else if g.channel != Channel::Payment {
                    assert_eq!(g.subject, None, "{ctx}: subject without recipient");
                }
                // Email and SMS events name their message as the gateway saw it when the send
                // was accepted (the missing-outcome detector matches the two by this id).
                // (Mailgun's legacy `bounced` form carries no Message-Id: nothing to match.)
                let names_message = String::from_utf8_lossy(&body)
                    .to_ascii_lowercase()
                    .contains("message");
                if g.channel != Channel::Payment && names_message {
                    let id = g.message_id.as_deref();
                    let id = id.unwrap_or_else(|| panic!("{ctx}: no message id"));
                    assert_eq!(
                        signal.attrs.get("message_id").map(String::as_str),
                        Some(id),
                        "{ctx}"
                    );
                    assert!(!id.contains(['<', '>', ' ']), "{ctx}: {id}");
                    if provider == "sendgrid" {
                        assert!(!id.contains('.'), "{ctx}: sg_message_id suffix kept: {id}");
                    }
                }
                checked_events += 1;
            }
            // Deterministic ids: parsing twice gives the same ids, and they are unique per file.
            let again = parse(provider, fixture, &body);
            let ids: Vec<String> = got.iter().map(|e| e.to_signal().id).collect();
            let ids2: Vec<String> = again.iter().map(|e| e.to_signal().id).collect();
            assert_eq!(ids, ids2, "{ctx}: ids are deterministic");
            let mut dedup = ids.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), ids.len(), "{ctx}: ids unique");
            checked_files += 1;
        }
    }
    assert!(
        checked_files >= 45,
        "only {checked_files} fixture files checked"
    );
    assert!(checked_events >= 45, "only {checked_events} events checked");
}

fn tamper(body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    let i = b.len() / 2;
    b[i] ^= 0x01;
    b
}

#[test]
fn stripe_vectors_verify_and_tampering_is_rejected() {
    let vectors = json("stripe", "signature_vectors.json");
    let mut valid = 0;
    for v in vectors["vectors"].as_array().unwrap() {
        let body = match v["payload_file"].as_str() {
            Some(f) => read("stripe", f),
            None => v["payload_literal"].as_str().unwrap().as_bytes().to_vec(),
        };
        let secret = v["secret"].as_str().unwrap();
        let header = v["header"].as_str();
        let ok = stripe::verify(secret, header, &body, 0, 0).is_ok();
        assert_eq!(ok, v["expected_valid"].as_bool().unwrap(), "{}", v["name"]);
        if ok {
            valid += 1;
            let t = v["timestamp"].as_i64().unwrap();
            // The 300 s tolerance against an injected clock.
            assert!(stripe::verify(secret, header, &body, t + 299, 300).is_ok());
            assert_eq!(
                stripe::verify(secret, header, &body, t + 301, 300),
                Err(VerifyError::Stale(300))
            );
            assert_eq!(
                stripe::verify(secret, header, &tamper(&body), t, 300),
                Err(VerifyError::Mismatch)
            );
            assert_eq!(
                stripe::verify(secret, None, &body, t, 300),
                Err(VerifyError::Missing("Stripe-Signature"))
            );
        }
    }
    assert!(valid >= 9, "{valid} valid stripe vectors");
}

#[test]
fn twilio_vectors_verify_and_tampering_is_rejected() {
    let vectors = json("twilio", "request_validator_vectors.json");
    let mut n = 0;
    for v in vectors["vectors"].as_array().unwrap() {
        let (body, is_form) = match &v["params"] {
            Value::Null => (v["raw_body"].as_str().unwrap().as_bytes().to_vec(), false),
            Value::Object(m) => {
                let mut s = form_urlencoded::Serializer::new(String::new());
                for (k, val) in m {
                    s.append_pair(k, val.as_str().unwrap());
                }
                (s.finish().into_bytes(), true)
            }
            Value::Array(pairs) => {
                let mut s = form_urlencoded::Serializer::new(String::new());
                for p in pairs {
                    s.append_pair(p[0].as_str().unwrap(), p[1].as_str().unwrap());
                }
                (s.finish().into_bytes(), true)
            }
            _ => panic!("params"),
        };
        let token = v["auth_token"].as_str().unwrap();
        let url = v["url"].as_str().unwrap();
        let sig = v["x_twilio_signature"].as_str();
        let ok = twilio::verify(token, sig, url, &body, is_form).is_ok();
        assert_eq!(ok, v["expected_valid"].as_bool().unwrap(), "{}", v["name"]);
        if ok {
            assert!(twilio::verify(token, sig, url, &tamper(&body), is_form).is_err());
            let other_url = url.replace("myapp", "other");
            assert!(twilio::verify(token, sig, &other_url, &body, is_form).is_err());
        }
        n += 1;
    }
    let derived = json("twilio", "sms_status_signature_vectors.DERIVED.json");
    for v in derived["vectors"].as_array().unwrap() {
        let body = read("twilio", v["body_file"].as_str().unwrap());
        let (token, url, sig) = (
            v["auth_token"].as_str().unwrap(),
            v["url"].as_str().unwrap(),
            v["x_twilio_signature"].as_str(),
        );
        assert!(
            twilio::verify(token, sig, url, &body, true).is_ok(),
            "{}",
            v["name"]
        );
        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("30010", "30011");
        if tampered.as_bytes() != body {
            assert_eq!(
                twilio::verify(token, sig, url, tampered.as_bytes(), true),
                Err(VerifyError::Mismatch)
            );
        }
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn sendgrid_vectors_verify_and_tampering_is_rejected() {
    let vectors = json("sendgrid", "signature_vectors.json");
    let mut n = 0;
    for v in vectors["vectors"].as_array().unwrap() {
        let body = match v["payload_file"].as_str() {
            Some(f) => read("sendgrid", f),
            None => v["payload_literal"].as_str().unwrap().as_bytes().to_vec(),
        };
        let key = sendgrid::public_key(v["public_key"].as_str().unwrap()).unwrap();
        let (sig, ts) = (v["signature"].as_str(), v["timestamp"].as_str());
        let ok = sendgrid::verify(&key, sig, ts, &body, 0, 0).is_ok();
        assert_eq!(ok, v["expected_valid"].as_bool().unwrap(), "{}", v["name"]);
        if ok {
            assert_eq!(
                sendgrid::verify(&key, sig, ts, &tamper(&body), 0, 0),
                Err(VerifyError::Mismatch)
            );
            // Dropping the signed trailing CRLF breaks the signature.
            assert!(sendgrid::verify(&key, sig, ts, &body[..body.len() - 2], 0, 0).is_err());
            let t: i64 = ts.unwrap().parse().unwrap();
            assert!(sendgrid::verify(&key, sig, ts, &body, t + 10, 300).is_ok());
            assert_eq!(
                sendgrid::verify(&key, sig, ts, &body, t + 3600, 300),
                Err(VerifyError::Stale(300))
            );
        }
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn mailgun_vectors_verify_replays_and_tampering_are_rejected() {
    let vectors = json("mailgun", "signature_vectors.json");
    let expected = json("mailgun", "expected.json");
    let mut valid = 0;
    for v in vectors["vectors"].as_array().unwrap() {
        let file = v["file"].as_str().unwrap();
        let body = read("mailgun", file);
        let is_form = expected["fixtures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["file"] == file && f["content_type"].is_string());
        let fields = mailgun::signed_fields(&body, is_form).unwrap();
        assert_eq!(fields.signature, v["signature"].as_str().unwrap(), "{file}");
        assert_eq!(fields.token, v["token"].as_str().unwrap(), "{file}");
        let key = v["signing_key"].as_str().unwrap();
        let cache = mailgun::ReplayCache::new(16);
        let ok = mailgun::verify(key, &fields, &cache, 0, 0).is_ok();
        assert_eq!(ok, v["expected_valid"].as_bool().unwrap(), "{file}");
        if ok {
            valid += 1;
            assert_eq!(
                mailgun::verify(key, &fields, &cache, 0, 0),
                Err(VerifyError::Replay),
                "{file}: the same token twice"
            );
            let mut bad = fields.clone();
            bad.timestamp.push('1');
            assert_eq!(
                mailgun::verify(key, &bad, &mailgun::ReplayCache::new(4), 0, 0),
                Err(VerifyError::Mismatch)
            );
            let t: i64 = fields.timestamp.parse().unwrap();
            assert_eq!(
                mailgun::verify(key, &fields, &mailgun::ReplayCache::new(4), t + 900, 300),
                Err(VerifyError::Stale(300))
            );
        } else {
            assert!(
                cache.is_empty(),
                "a bad signature must not poison the replay cache"
            );
        }
    }
    assert_eq!(valid, 10);
}

#[test]
fn mailgun_replay_cache_is_bounded() {
    let cache = mailgun::ReplayCache::new(3);
    for t in ["a", "b", "c", "d"] {
        assert!(cache.insert(t));
    }
    assert_eq!(cache.len(), 3);
    assert!(!cache.insert("d"));
    assert!(cache.insert("a"), "the oldest token was forgotten");
}

#[test]
fn postmark_basic_auth() {
    use base64::Engine;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("vigil:s3cret")
    );
    let bad = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("vigil:s3cres")
    );
    assert!(postmark::verify("vigil:s3cret", Some(&good)).is_ok());
    assert_eq!(
        postmark::verify("vigil:s3cret", Some(&bad)),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        postmark::verify("vigil:s3cret", None),
        Err(VerifyError::Missing("Authorization"))
    );
    assert!(postmark::verify("vigil:s3cret", Some("Bearer x")).is_err());
}
