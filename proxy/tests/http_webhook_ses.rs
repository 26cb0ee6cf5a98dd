//! SNS signature verification for SES events, with a locally generated signing certificate served
//! by an injected [`CertSource`] (there is no internet here, and no public SNS vectors exist).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use serde_json::Value;
use vigil_proxy::http::pii::PiiHasher;
use vigil_proxy::http::webhook::ses::{self, BoxFuture, CertCache, CertSource};
use vigil_proxy::http::webhook::tap::TapSettings;
use vigil_proxy::http::webhook::{Provider, TapError, VerifyError, WebhookRequest, WebhookTap};

const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";
const TOPIC: &str = "arn:aws:sns:us-east-1:1234567890:SES_Events";

struct MapSource {
    certs: HashMap<String, Vec<u8>>,
    fetches: AtomicUsize,
}

impl CertSource for MapSource {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, VerifyError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let r = self
            .certs
            .get(url)
            .cloned()
            .ok_or(VerifyError::Certificate("not found"));
        Box::pin(async move { r })
    }
}

struct Signer {
    key: rcgen::KeyPair,
    cert_pem: String,
}

fn signer() -> Signer {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Signer {
        cert_pem: cert.pem(),
        key,
    }
}

impl Signer {
    fn sign_v2(&self, msg: &[u8]) -> Vec<u8> {
        let kp = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&self.key.serialize_der()).unwrap();
        let mut sig = vec![0u8; kp.public_modulus_len()];
        kp.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            msg,
            &mut sig,
        )
        .unwrap();
        sig
    }

    fn sign_envelope(&self, envelope: &mut Value, version: &str) {
        envelope["SignatureVersion"] = Value::String(version.into());
        envelope["SigningCertURL"] = Value::String(CERT_URL.into());
        let msg = ses::string_to_sign(envelope).unwrap();
        assert_eq!(version, "2", "version 1 vectors come from fixtures/sns_v1");
        let sig = self.sign_v2(msg.as_bytes());
        envelope["Signature"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(sig));
    }
}

fn fixture(file: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/providers/ses/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn tap(source: Arc<MapSource>) -> WebhookTap {
    let settings = TapSettings {
        provider: Provider::Ses,
        secret: String::new(),
        topic_arns: vec![TOPIC.to_string()],
        tolerance_secs: 0,
        replay_capacity: 16,
    };
    let certs = Arc::new(CertCache::new(source, 8));
    WebhookTap::new(settings, PiiHasher::new(b"k".to_vec()), Some(certs)).unwrap()
}

async fn run(tap: &WebhookTap, envelope: &Value) -> Result<usize, TapError> {
    let body = serde_json::to_vec(envelope).unwrap();
    let headers = http::HeaderMap::new();
    let req = WebhookRequest {
        headers: &headers,
        body: &body,
        url: "https://crm.example.com/webhooks/ses",
        now_unix: chrono::Utc::now().timestamp(),
    };
    tap.process(&req).await.map(|events| events.len())
}

#[tokio::test]
async fn sns_signature_version_2_verifies_and_forgeries_are_rejected() {
    let s = signer();
    let source = Arc::new(MapSource {
        certs: HashMap::from([(CERT_URL.to_string(), s.cert_pem.clone().into_bytes())]),
        fetches: AtomicUsize::new(0),
    });
    let tap = tap(source.clone());

    let mut v2 = fixture("sns_bounce_permanent.json");
    s.sign_envelope(&mut v2, "2");
    assert_eq!(run(&tap, &v2).await.unwrap(), 1);

    let mut second = fixture("sns_bounce_permanent_two_recipients.json");
    second["TopicArn"] = Value::String(TOPIC.into());
    s.sign_envelope(&mut second, "2");
    assert_eq!(run(&tap, &second).await.unwrap(), 2);
    assert_eq!(
        source.fetches.load(Ordering::SeqCst),
        1,
        "certificate cached"
    );

    // Tampered message: the signature no longer matches.
    let mut tampered = v2.clone();
    tampered["Message"] = Value::String(
        tampered["Message"]
            .as_str()
            .unwrap()
            .replace("Permanent", "Transient"),
    );
    assert!(matches!(
        run(&tap, &tampered).await,
        Err(TapError::Verify(VerifyError::Mismatch))
    ));

    // A version 2 signature claimed as version 1.
    let mut wrong_version = v2.clone();
    wrong_version["SignatureVersion"] = Value::String("1".into());
    assert!(matches!(
        run(&tap, &wrong_version).await,
        Err(TapError::Verify(VerifyError::Mismatch))
    ));

    // A topic that is not pinned is refused before any fetch.
    let mut other_topic = fixture("sns_delivery.json");
    other_topic["TopicArn"] = Value::String("arn:aws:sns:us-east-1:666:attacker".into());
    s.sign_envelope(&mut other_topic, "2");
    assert!(matches!(
        run(&tap, &other_topic).await,
        Err(TapError::Verify(VerifyError::Topic))
    ));

    // Certificate URLs off SNS or off HTTPS are never fetched.
    for url in [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
    ] {
        let mut env = v2.clone();
        env["SigningCertURL"] = Value::String(url.into());
        assert!(
            matches!(
                run(&tap, &env).await,
                Err(TapError::Verify(VerifyError::CertUrl))
            ),
            "{url}"
        );
    }
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);

    // The fixture as published (placeholder signature) does not verify.
    let mut placeholder = fixture("sns_bounce_permanent.json");
    placeholder["SigningCertURL"] = Value::String(CERT_URL.into());
    assert!(run(&tap, &placeholder).await.is_err());
}

#[tokio::test]
async fn expired_signing_certificate_is_refused() {
    let s = signer();
    let der = x509_der(&s.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let after = cert.validity().not_after.timestamp() + 1;
    assert!(matches!(
        ses::rsa_key_from_cert(s.cert_pem.as_bytes(), after),
        Err(VerifyError::Certificate(_))
    ));
    assert!(ses::rsa_key_from_cert(s.cert_pem.as_bytes(), after - 2).is_ok());
}

fn x509_der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

/// SignatureVersion 1 (SHA1withRSA): a vector generated once with openssl (fixtures/sns_v1).
#[tokio::test]
async fn sns_signature_version_1_vector() {
    let dir = format!("{}/tests/fixtures/sns_v1", env!("CARGO_MANIFEST_DIR"));
    let cert = std::fs::read(format!("{dir}/signing_cert.pem")).unwrap();
    let envelope: Value = serde_json::from_slice(
        &std::fs::read(format!("{dir}/envelope_signature_v1.json")).unwrap(),
    )
    .unwrap();
    let source = Arc::new(MapSource {
        certs: HashMap::from([(CERT_URL.to_string(), cert)]),
        fetches: AtomicUsize::new(0),
    });
    let tap = tap(source);
    assert_eq!(run(&tap, &envelope).await.unwrap(), 2);
    let mut as_v2 = envelope.clone();
    as_v2["SignatureVersion"] = Value::String("2".into());
    assert!(matches!(
        run(&tap, &as_v2).await,
        Err(TapError::Verify(VerifyError::Mismatch))
    ));
    let mut tampered = envelope.clone();
    tampered["Timestamp"] = Value::String("2018-03-26T17:59:59.675Z".into());
    assert!(matches!(
        run(&tap, &tampered).await,
        Err(TapError::Verify(VerifyError::Mismatch))
    ));
    let mut unknown = envelope;
    unknown["SignatureVersion"] = Value::String("3".into());
    assert!(matches!(
        run(&tap, &unknown).await,
        Err(TapError::Verify(VerifyError::Malformed(_)))
    ));
}
