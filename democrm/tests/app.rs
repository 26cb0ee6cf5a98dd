//! The CRM serves every route against a tiny seeded database, calls the simulators, and records
//! their (verified) webhooks; every statement carries its sqlcommenter route tag.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use vigil_democrm::{Mode, ProviderKind, Scale, Traffic, TrafficConfig};

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let r = http.post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_read_the_seeded_data() {
    let s = common::stack().await;
    let http = reqwest::Client::new();
    let base = &s.app_url;

    assert_eq!(
        get(&http, &format!("{base}/healthz")).await,
        (200, json!({"status": "ok"}))
    );

    let (st, list) = get(&http, &format!("{base}/contacts?limit=10&offset=5")).await;
    assert_eq!(st, 200);
    let contacts = list["contacts"].as_array().unwrap();
    assert_eq!(contacts.len(), 10);
    assert_eq!(contacts[0]["id"], 6);

    let (st, found) = get(&http, &format!("{base}/contacts?q=SMITH&limit=200")).await;
    assert_eq!(st, 200);
    let hits = found["contacts"].as_array().unwrap();
    assert!(!hits.is_empty());
    let expected = common::psql(
        &s.db_url,
        "SELECT count(*) FROM contacts c JOIN companies co ON co.id = c.company_id \
         WHERE c.first_name ILIKE '%smith%' OR c.last_name ILIKE '%smith%' OR c.email ILIKE '%smith%' OR co.name ILIKE '%smith%'",
    );
    assert_eq!(found["total"].to_string(), expected);
    for h in hits {
        let text = format!(
            "{} {} {} {}",
            h["first_name"], h["last_name"], h["email"], h["company"]
        );
        assert!(text.to_lowercase().contains("smith"), "{text}");
    }
    let (st, none) = get(&http, &format!("{base}/contacts?q=%25_nomatch")).await;
    assert_eq!(st, 200);
    assert_eq!(none["total"], 0);

    let (st, detail) = get(&http, &format!("{base}/contacts/1")).await;
    assert_eq!(st, 200);
    assert_eq!(detail["contact"]["id"], 1);
    assert!(
        detail["contact"]["email"]
            .as_str()
            .unwrap()
            .ends_with("@example.com")
    );
    let acts = common::psql(
        &s.db_url,
        "SELECT least(count(*), 20) FROM activities WHERE contact_id = 1",
    );
    assert_eq!(
        detail["activities"].as_array().unwrap().len().to_string(),
        acts
    );
    assert_eq!(get(&http, &format!("{base}/contacts/999999")).await.0, 404);

    let (st, deals) = get(&http, &format!("{base}/deals?stage=won&limit=20")).await;
    assert_eq!(st, 200);
    let deals = deals["deals"].as_array().unwrap();
    assert!(!deals.is_empty());
    assert!(deals.iter().all(|d| d["stage"] == "won"));

    let (st, dash) = get(&http, &format!("{base}/dashboard")).await;
    assert_eq!(st, 200);
    let deal_total: i64 = dash["pipeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["deals"].as_i64().unwrap())
        .sum();
    assert_eq!(deal_total as u64, Scale::tiny().deals);
    let act_total: i64 = dash["activity_by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_i64().unwrap())
        .sum();
    let since = dash["activity_since"].as_str().unwrap();
    let expected = common::psql(
        &s.db_url,
        &format!("SELECT count(*) FROM activities WHERE occurred_at >= '{since}'"),
    );
    assert_eq!(act_total.to_string(), expected);
    assert!(act_total > 0);

    // Every statement is tagged with its route (keys sorted, values URL-encoded).
    common::psql(
        &s.db_url,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
    );
    for route in [
        "%2Fcontacts",
        "%2Fcontacts%2F%7Bid%7D",
        "%2Fdeals",
        "%2Fdashboard",
        "%2Fhealthz",
    ] {
        let n = common::psql(
            &s.db_url,
            &format!(
                "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%/*application=''democrm'',route=''{route}''*/'"
            ),
        );
        assert_ne!(n, "0", "no statement tagged {route}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_and_charges_record_provider_webhooks() {
    let s = common::stack().await;
    let http = reqwest::Client::new();
    let base = &s.app_url;
    let db = &s.db_url;

    // Campaign send: one SendGrid call per recipient, then signed events settle each message.
    let (st, sent) = post(
        &http,
        &format!("{base}/campaigns/1/send"),
        json!({"limit": 5}),
    )
    .await;
    assert_eq!(st, 200, "{sent}");
    assert_eq!(sent["attempted"], 5);
    assert_eq!(sent["accepted"], 5);
    let settled = common::wait_sql(
        db,
        "SELECT count(*) FROM messages WHERE campaign_id = 1 AND id > 500 AND status IN ('delivered', 'bounced')",
        "5",
    )
    .await;
    assert_eq!(settled, "5");
    assert_eq!(
        common::psql(
            db,
            "SELECT count(*) FROM messages WHERE campaign_id = 1 AND id > 500 AND provider_message_id IS NULL"
        ),
        "0"
    );
    assert_eq!(
        common::psql(db, "SELECT status FROM campaigns WHERE id = 1"),
        "sent"
    );

    // Automations: 1 = send_email, 2 = send_sms, 3 = charge_card.
    let (st, email) = post(
        &http,
        &format!("{base}/automations/1/trigger"),
        json!({"contact_id": 7}),
    )
    .await;
    assert_eq!(st, 200, "{email}");
    assert_eq!(email["action"], "send_email");
    let (st, sms) = post(
        &http,
        &format!("{base}/automations/2/trigger"),
        json!({"contact_id": 7}),
    )
    .await;
    assert_eq!(st, 200, "{sms}");
    assert_eq!(sms["action"], "send_sms");
    let sms_id = sms["record_id"].as_i64().unwrap();
    let sms_status = common::wait_sql(
        db,
        &format!("SELECT status IN ('delivered', 'undelivered') FROM messages WHERE id = {sms_id}"),
        "t",
    )
    .await;
    assert_eq!(sms_status, "t", "the Twilio callback settles the SMS");
    let (st, pay) = post(
        &http,
        &format!("{base}/automations/3/trigger"),
        json!({"contact_id": 7}),
    )
    .await;
    assert_eq!(st, 200, "{pay}");
    assert_eq!(pay["action"], "charge_card");
    let pay_id = pay["record_id"].as_i64().unwrap();
    let pay_row = common::wait_sql(
        db,
        &format!("SELECT status IN ('succeeded', 'failed') AND provider_payment_id LIKE 'pi_%' FROM payments WHERE id = {pay_id}"),
        "t",
    )
    .await;
    assert_eq!(pay_row, "t");
    assert_eq!(
        post(
            &http,
            &format!("{base}/automations/999/trigger"),
            json!({"contact_id": 7})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        post(
            &http,
            &format!("{base}/automations/1/trigger"),
            json!({"nope": 1})
        )
        .await
        .0,
        400
    );

    // A decline spike shows up as failed payments with decline codes.
    s.sims.set_mode(Mode::DeclineSpike);
    let mut declined = 0;
    for i in 0..20 {
        let (st, r) = post(
            &http,
            &format!("{base}/automations/3/trigger"),
            json!({"contact_id": 10 + i}),
        )
        .await;
        assert_eq!(st, 200);
        if r["outcome"] == "declined" {
            declined += 1;
            assert!(r["decline_code"].is_string());
        }
    }
    assert!(declined >= 5, "{declined}");

    // Provider 5xx: the CRM answers 502 and records the failure.
    s.sims.set_mode(Mode::Provider5xx {
        provider: Some(ProviderKind::Stripe),
    });
    let (st, failed) = post(
        &http,
        &format!("{base}/automations/3/trigger"),
        json!({"contact_id": 8}),
    )
    .await;
    assert_eq!(st, 502);
    assert!(matches!(
        failed["error_code"].as_str(),
        Some("http_500" | "http_503")
    ));
    let id = failed["record_id"].as_i64().unwrap();
    assert_eq!(
        common::psql(db, &format!("SELECT status FROM payments WHERE id = {id}")),
        "error"
    );
    // Email still works while Stripe is down.
    assert_eq!(
        post(
            &http,
            &format!("{base}/automations/4/trigger"),
            json!({"contact_id": 8})
        )
        .await
        .0,
        200
    );

    // Carrier outage: SMS end undelivered with carrier error codes.
    s.sims.set_mode(Mode::CarrierOutage);
    let mut ids = Vec::new();
    for i in 0..10 {
        let (st, r) = post(
            &http,
            &format!("{base}/automations/2/trigger"),
            json!({"contact_id": 20 + i}),
        )
        .await;
        assert_eq!(st, 200);
        ids.push(r["record_id"].as_i64().unwrap().to_string());
    }
    let list = ids.join(",");
    common::wait_sql(
        db,
        &format!("SELECT count(*) FROM messages WHERE id IN ({list}) AND status IN ('delivered', 'undelivered')"),
        "10",
    )
    .await;
    let undelivered = common::psql(
        db,
        &format!(
            "SELECT count(*) FROM messages WHERE id IN ({list}) AND status = 'undelivered' AND error_code IN ('30008', '30003')"
        ),
    );
    assert!(undelivered.parse::<u32>().unwrap() >= 4, "{undelivered}");

    // Unsigned or wrongly signed webhooks are refused.
    let r = http
        .post(format!("{base}/webhooks/stripe"))
        .header("Stripe-Signature", "t=1,v1=00")
        .body(r#"{"type":"payment_intent.succeeded","data":{"object":{"id":"pi_x"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/webhooks/sendgrid"))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/webhooks/twilio"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", "bm9wZQ==")
        .body("MessageSid=SM1&MessageStatus=delivered")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    common::psql(db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    for route in [
        "%2Fcampaigns%2F%7Bid%7D%2Fsend",
        "%2Fautomations%2F%7Bid%7D%2Ftrigger",
        "%2Fwebhooks%2Fsendgrid",
        "%2Fwebhooks%2Ftwilio",
        "%2Fwebhooks%2Fstripe",
    ] {
        let n = common::psql(
            db,
            &format!(
                "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%/*application=''democrm'',route=''{route}''*/'"
            ),
        );
        assert_ne!(n, "0", "no statement tagged {route}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_generator_drives_every_route() {
    let s = common::stack().await;
    let mut config = TrafficConfig::new(&s.app_url, Scale::tiny());
    config.rate_per_sec = 40.0;
    config.concurrency = 8;
    config.mix.campaign = 5;
    config.mix.dashboard = 5;
    let traffic = Traffic::new(config).unwrap();
    let counters = traffic.counters();
    let report = traffic
        .run(async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let snap = counters.snapshot();
                // Stop once every kind has been sent at least once (or after many requests).
                if snap.kinds.iter().all(|k| k.sent > 0) || snap.sent() > 2_000 {
                    break;
                }
            }
        })
        .await;
    assert!(report.kinds.iter().all(|k| k.sent > 0), "{report:?}");
    assert_eq!(report.errors(), 0, "{report:?}");
    assert_eq!(report.ok(), report.sent());
    assert!(
        report.kind("automation").unwrap().ok > 0 && report.kind("search").unwrap().ok > 0,
        "{report:?}"
    );
}
