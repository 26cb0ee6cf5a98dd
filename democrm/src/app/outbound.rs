//! Provider API clients (SendGrid mail send, Twilio messages, Stripe payment intents), speaking
//! the real wire formats to the configured base URLs.

use serde_json::{Value, json};

use super::Ctx;

/// What a provider call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted; the provider's id and the status it reported.
    Accepted { id: String, status: String },
    /// The provider answered but refused (a card decline).
    Declined { id: Option<String>, code: String },
    /// No usable answer: `http_<status>`, `timeout` or `transport`.
    Failed { code: String },
}

fn transport(e: &reqwest::Error) -> Outcome {
    Outcome::Failed {
        code: if e.is_timeout() {
            "timeout"
        } else {
            "transport"
        }
        .into(),
    }
}

fn http_failure(status: reqwest::StatusCode) -> Outcome {
    Outcome::Failed {
        code: format!("http_{}", status.as_u16()),
    }
}

/// `POST /v3/mail/send` to one recipient, tagging it with `crm_message_id`.
pub(crate) async fn send_email(
    ctx: &Ctx,
    from: &str,
    to: &str,
    subject: &str,
    text: &str,
    message_id: i64,
) -> Outcome {
    let c = &ctx.config;
    let body = json!({
        "personalizations": [{
            "to": [{"email": to}],
            "custom_args": {"crm_message_id": message_id.to_string()},
        }],
        "from": {"email": from, "name": "Vigil Demo CRM"},
        "subject": subject,
        "content": [{"type": "text/plain", "value": text}],
    });
    let resp = ctx
        .http
        .post(format!("{}/v3/mail/send", c.sendgrid_base_url))
        .bearer_auth(&c.sendgrid_api_key)
        .json(&body)
        .send()
        .await;
    match resp {
        Ok(r) if r.status().as_u16() == 202 => {
            let id = r
                .headers()
                .get("x-message-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            Outcome::Accepted {
                id,
                status: "sent".into(),
            }
        }
        Ok(r) => http_failure(r.status()),
        Err(e) => transport(&e),
    }
}

/// `POST /2010-04-01/Accounts/{sid}/Messages.json`.
pub(crate) async fn send_sms(ctx: &Ctx, to: &str, text: &str) -> Outcome {
    let c = &ctx.config;
    let mut form = vec![
        ("To", to.to_string()),
        ("From", c.twilio_from.clone()),
        ("Body", text.to_string()),
    ];
    if let Some(cb) = &c.twilio_status_callback_url {
        form.push(("StatusCallback", cb.clone()));
    }
    let resp = ctx
        .http
        .post(format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            c.twilio_base_url, c.twilio_account_sid
        ))
        .basic_auth(&c.twilio_account_sid, Some(&c.twilio_auth_token))
        .form(&form)
        .send()
        .await;
    match resp {
        Ok(r) if r.status().as_u16() == 201 => match r.json::<Value>().await {
            Ok(v) => Outcome::Accepted {
                id: v["sid"].as_str().unwrap_or_default().to_string(),
                status: v["status"].as_str().unwrap_or("queued").to_string(),
            },
            Err(e) => transport(&e),
        },
        Ok(r) => http_failure(r.status()),
        Err(e) => transport(&e),
    }
}

/// `POST /v1/payment_intents` (confirmed at once) with an `Idempotency-Key` per payment row.
pub(crate) async fn charge(
    ctx: &Ctx,
    amount_cents: i64,
    payment_id: i64,
    contact_id: i64,
    description: &str,
) -> Outcome {
    let c = &ctx.config;
    let form = [
        ("amount", amount_cents.to_string()),
        ("currency", "usd".to_string()),
        ("confirm", "true".to_string()),
        ("payment_method", "pm_card_visa".to_string()),
        ("description", description.to_string()),
        ("metadata[crm_payment_id]", payment_id.to_string()),
        ("metadata[crm_contact_id]", contact_id.to_string()),
    ];
    let resp = ctx
        .http
        .post(format!("{}/v1/payment_intents", c.stripe_base_url))
        .bearer_auth(&c.stripe_secret_key)
        .header("Idempotency-Key", format!("democrm-payment-{payment_id}"))
        .form(&form)
        .send()
        .await;
    let r = match resp {
        Ok(r) => r,
        Err(e) => return transport(&e),
    };
    let status = r.status();
    if status.as_u16() != 200 && status.as_u16() != 402 {
        return http_failure(status);
    }
    let v = match r.json::<Value>().await {
        Ok(v) => v,
        Err(e) => return transport(&e),
    };
    if status.as_u16() == 200 {
        Outcome::Accepted {
            id: v["id"].as_str().unwrap_or_default().to_string(),
            status: v["status"].as_str().unwrap_or("processing").to_string(),
        }
    } else {
        let err = &v["error"];
        Outcome::Declined {
            id: err["payment_intent"]["id"].as_str().map(str::to_string),
            code: err["decline_code"]
                .as_str()
                .or(err["code"].as_str())
                .unwrap_or("card_declined")
                .to_string(),
        }
    }
}
