//! Receiver protocols: Slack incoming webhook, PagerDuty Events v2, HMAC-signed JSON webhook,
//! email over SMTP.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::SendError;
use crate::engine::{Notification, NotifyEvent};
use crate::rules::{ReceiverKind, SmtpTls};

/// PagerDuty's public Events v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

fn secret(env: &str) -> Result<String, SendError> {
    std::env::var(env).map_err(|_| SendError::MissingSecret(env.to_string()))
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Constant-time check of a `sha256=<hex>` signature (for receivers written in Rust).
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(raw) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&raw).is_ok()
}

fn text(n: &Notification, console: Option<&str>) -> String {
    let head = match (n.event, n.escalation) {
        (NotifyEvent::Trigger, true) => "ESCALATED (not acknowledged)",
        (NotifyEvent::Trigger, false) => "FIRING",
        (NotifyEvent::Acknowledge, _) => "ACKNOWLEDGED",
        (NotifyEvent::Resolve, _) => "RESOLVED",
    };
    let mut t = format!(
        "[{head}] {} - {} (likely layer: {}, incident {})",
        n.title,
        n.severity.as_str(),
        n.layer,
        n.incident_id
    );
    if n.event == NotifyEvent::Trigger {
        for w in n.why.iter().take(5) {
            t.push_str("\n- ");
            t.push_str(w);
        }
    }
    if let Some(base) = console {
        t.push_str(&format!(
            "\n{}/console/incidents/{}",
            base.trim_end_matches('/'),
            n.incident_id
        ));
    }
    t
}

async fn post(req: reqwest::RequestBuilder) -> Result<(), SendError> {
    // Without the URL: a Slack webhook URL is a secret and errors reach logs and the outbox.
    let resp = req
        .send()
        .await
        .map_err(|e| SendError::Http(e.without_url()))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Err(SendError::Status {
        status: status.as_u16(),
        retry_after,
    })
}

/// Deliver several notifications to one receiver: Slack gets them as one coalesced message,
/// other receivers one request each (stopping at the first failure).
pub async fn send_batch(
    client: &reqwest::Client,
    kind: &ReceiverKind,
    ns: &[Notification],
    console: Option<&str>,
) -> Result<(), SendError> {
    if let (ReceiverKind::Slack { url_env }, true) = (kind, ns.len() > 1) {
        let url = secret(url_env)?;
        let mut t = format!("{} incident updates:", ns.len());
        for n in ns {
            t.push_str("\n\n");
            t.push_str(&text(n, console));
        }
        return post(client.post(url).json(&json!({ "text": t }))).await;
    }
    for n in ns {
        send(client, kind, n, console).await?;
    }
    Ok(())
}

/// Deliver one notification.
pub async fn send(
    client: &reqwest::Client,
    kind: &ReceiverKind,
    n: &Notification,
    console: Option<&str>,
) -> Result<(), SendError> {
    match kind {
        ReceiverKind::Log => {
            tracing::info!(incident = %n.incident_id, event = ?n.event, title = %n.title, "notification");
            Ok(())
        }
        ReceiverKind::Slack { url_env } => {
            let url = secret(url_env)?;
            let body = json!({ "text": text(n, console) });
            post(client.post(url).json(&body)).await
        }
        ReceiverKind::Pagerduty {
            routing_key_env,
            url,
        } => {
            let key = secret(routing_key_env)?;
            let action = match n.event {
                NotifyEvent::Trigger => "trigger",
                NotifyEvent::Acknowledge => "acknowledge",
                NotifyEvent::Resolve => "resolve",
            };
            let severity = match n.severity {
                crate::model::Severity::Critical => "critical",
                crate::model::Severity::Warning => "warning",
                crate::model::Severity::Info => "info",
            };
            let mut body = json!({
                "routing_key": key,
                "event_action": action,
                "dedup_key": n.incident_id,
            });
            if n.event == NotifyEvent::Trigger {
                body["payload"] = json!({
                    "summary": n.title.chars().take(1000).collect::<String>(),
                    "source": "vigil",
                    "severity": severity,
                    "component": n.channel,
                    "group": n.layer,
                    "custom_details": { "why": n.why, "escalation": n.escalation },
                });
            }
            let url = url.clone().unwrap_or_else(|| PAGERDUTY_URL.to_string());
            post(client.post(url).json(&body)).await
        }
        ReceiverKind::Smtp {
            host,
            port,
            tls,
            from,
            to,
            username_env,
            password_env,
        } => {
            send_email(
                n,
                console,
                (host, *port, *tls),
                from,
                to,
                username_env.as_deref().zip(password_env.as_deref()),
            )
            .await
        }
        ReceiverKind::Webhook { url, secret_env } => {
            let key = secret(secret_env)?;
            let body = serde_json::to_vec(n).map_err(SendError::Payload)?;
            let sig = sign(key.as_bytes(), &body);
            let req = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Vigil-Signature", sig)
                .header("Idempotency-Key", n.dedup_key.as_str())
                .body(body);
            post(req).await
        }
    }
}

async fn send_email(
    n: &Notification,
    console: Option<&str>,
    (host, port, tls): (&str, u16, SmtpTls),
    from: &str,
    to: &[String],
    auth: Option<(&str, &str)>,
) -> Result<(), SendError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let email_err = |e: &dyn std::fmt::Display| SendError::Email(e.to_string());
    let mut builder = Message::builder()
        .from(from.parse().map_err(|e| email_err(&e))?)
        .subject(text(n, None).lines().next().unwrap_or_default().to_string());
    for addr in to {
        builder = builder.to(addr.parse().map_err(|e| email_err(&e))?);
    }
    let message = builder
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(text(n, console))
        .map_err(|e| email_err(&e))?;
    let smtp_err = |e: lettre::transport::smtp::Error| SendError::Smtp {
        transient: e.is_transient() || e.is_timeout() || (!e.is_permanent() && !e.is_client()),
        source: e,
    };
    let mut transport = match tls {
        SmtpTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(smtp_err)?
        }
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(smtp_err)?,
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
    }
    .port(port)
    .timeout(Some(Duration::from_secs(10)));
    if let Some((user_env, pass_env)) = auth {
        transport = transport.credentials(Credentials::new(secret(user_env)?, secret(pass_env)?));
    }
    transport.build().send(message).await.map_err(smtp_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let s = sign(b"k", b"{\"a\":1}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert!(verify(b"k", b"{\"a\":1}", &s));
        assert!(!verify(b"k", b"{\"a\":2}", &s));
        assert!(!verify(b"other", b"{\"a\":1}", &s));
        // RFC 4231 test case 2.
        let tc2 = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            tc2,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
