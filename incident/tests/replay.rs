//! Golden replay scenarios: generated JSONL through `replay` with the built-in rules, each
//! producing exactly the expected incidents, layers and pages.

mod common;

use std::io::Cursor;

use common::*;
use vigil_incident::model::{IncidentState, Layer, Severity};
use vigil_incident::replay::{ReplayReport, replay};
use vigil_incident::rules::Rules;
use vigil_signal::{Channel, Outcome, Scope, Source};

fn run(st: &Stream) -> ReplayReport {
    let report = replay(Cursor::new(st.jsonl()), &Rules::builtin()).expect("replay");
    // Deterministic: a second run gives the same incidents and pages.
    let again = replay(Cursor::new(st.jsonl()), &Rules::builtin()).expect("replay");
    assert_eq!(report.incidents, again.incidents);
    assert_eq!(report.pages, again.pages);
    println!("{report}");
    report
}

/// Six hours of normal traffic on every channel as history.
fn warm_up(st: &mut Stream, rng: &mut Rng, minutes: i64) {
    for m in 0..minutes {
        email_normal(st, rng, m, 800.0);
        sms_normal(st, rng, m, 50.0);
        payments_normal(st, rng, m, 60.0);
        http_normal(st, rng, m);
        automation_normal(st, rng, m);
    }
}

#[test]
fn email_bounce_storm_from_a_blocked_sending_ip() {
    let mut rng = Rng::new(1);
    let mut st = Stream::default();
    warm_up(&mut st, &mut rng, 720);
    // 12:00: the sending IP lands on a blocklist; 35% of mail rejected for 45 minutes.
    for m in 720..840 {
        let storm = (720..765).contains(&m);
        sms_normal(&mut st, &mut rng, m, 50.0);
        payments_normal(&mut st, &mut rng, m, 60.0);
        http_normal(&mut st, &mut rng, m);
        automation_normal(&mut st, &mut rng, m);
        if !storm {
            email_normal(&mut st, &mut rng, m, 800.0);
            continue;
        }
        let n = rng.poisson(800.0 * diurnal(m));
        let blocked = n * 35 / 100;
        st.ok(
            m,
            Source::Webhook,
            Channel::Email,
            Some("sendgrid"),
            Outcome::Delivered,
            n - blocked,
        );
        for i in 0..10 {
            st.fail(
                m,
                i * 6,
                Source::Webhook,
                Channel::Email,
                Some("sendgrid"),
                "blocked",
                "5.7.1",
                Scope::Sender,
                "sender:ip-1",
                blocked / 10,
            );
        }
    }
    let r = run(&st);
    assert_eq!(r.incidents.len(), 1, "{r}");
    let i = &r.incidents[0];
    assert_eq!(i.correlation_key, "provider:sendgrid");
    assert_eq!(i.layer, Layer::Integration);
    assert_eq!(i.severity, Severity::Critical);
    assert_eq!(i.state, IncidentState::Resolved);
    let f = i
        .evidence
        .findings
        .iter()
        .find(|f| f.class.as_deref() == Some("blocked"))
        .expect("blocked finding");
    assert_eq!(f.top_codes[0].0, "5.7.1");
    assert!(f.p_value < 1e-6 && f.baseline < 0.02);
    assert_eq!(r.pages.len(), 1, "{r}");
    // Paged within three minutes of the first blocked message.
    assert!(r.pages[0].at_ms - (T0 + 720 * MIN) <= 3 * MIN);
    assert!(
        r.pages[0]
            .why
            .iter()
            .any(|w| w.contains("blocked") && w.contains("5.7.1"))
    );
}

#[test]
fn sms_carrier_outage_at_50_messages_an_hour() {
    let mut rng = Rng::new(2);
    let mut st = Stream::default();
    warm_up(&mut st, &mut rng, 1440);
    // A carrier stops delivering: 90% of SMS undelivered with a carrier-side code for 90 minutes.
    for m in 1440..1620 {
        email_normal(&mut st, &mut rng, m, 800.0);
        payments_normal(&mut st, &mut rng, m, 60.0);
        http_normal(&mut st, &mut rng, m);
        automation_normal(&mut st, &mut rng, m);
        if !(1440..1530).contains(&m) {
            sms_normal(&mut st, &mut rng, m, 50.0);
            continue;
        }
        let n = rng.poisson(50.0 / 60.0);
        for i in 0..n {
            let handset = rng.next() % 2000;
            if rng.unit() < 0.9 {
                st.fail(
                    m,
                    (i * 11 % 60) as i64,
                    Source::Webhook,
                    Channel::Sms,
                    Some("twilio"),
                    "undelivered",
                    "30008",
                    Scope::Provider,
                    &format!("h:{handset:x}"),
                    1,
                );
            } else {
                st.ok(
                    m,
                    Source::Webhook,
                    Channel::Sms,
                    Some("twilio"),
                    Outcome::Delivered,
                    1,
                );
            }
        }
    }
    let r = run(&st);
    assert_eq!(r.incidents.len(), 1, "{r}");
    let i = &r.incidents[0];
    assert_eq!(i.correlation_key, "provider:twilio");
    assert_eq!(i.layer, Layer::Provider);
    assert_eq!(i.state, IncidentState::Resolved);
    assert_eq!(r.pages.len(), 1, "{r}");
    assert!(
        r.pages[0].at_ms - (T0 + 1440 * MIN) <= 20 * MIN,
        "paged late: {r}"
    );
}

#[test]
fn payment_provider_returning_5xx() {
    let r = payment_5xx(true);
    assert!(
        r.incidents[0]
            .evidence
            .findings
            .iter()
            .any(|f| f.top_codes.iter().any(|(c, _)| c == "503"))
    );
}

/// Live shape: the gateway sees Stripe's paths, not the CRM route that called it, so nothing but
/// the timing ties the CRM's 502s to the provider outage; they still join it as a symptom.
#[test]
fn payment_5xx_without_a_shared_route_joins_the_crm_502s_to_the_provider_incident() {
    let r = payment_5xx(false);
    let i = &r.incidents[0];
    let http = i
        .evidence
        .findings
        .iter()
        .find(|f| f.channel == "http")
        .expect("http finding");
    assert!(http.routes.iter().any(|x| x == "POST /api/payments"));
    // On the timeline: opened with the provider finding or added as a finding afterwards.
    let on_timeline = r.changes.iter().filter(|(_, id, _)| id == &i.id).count();
    assert!(on_timeline >= 2, "{r}");
}

/// An SMS carrier outage (asynchronous delivery failures) does not take unrelated HTTP 5xx that
/// start at the same time: those open their own incident.
#[test]
fn an_async_delivery_outage_does_not_absorb_unrelated_http_5xx() {
    let mut rng = Rng::new(6);
    let mut st = Stream::default();
    warm_up(&mut st, &mut rng, 720);
    for m in 720..800 {
        email_normal(&mut st, &mut rng, m, 800.0);
        payments_normal(&mut st, &mut rng, m, 60.0);
        automation_normal(&mut st, &mut rng, m);
        if !(720..745).contains(&m) {
            sms_normal(&mut st, &mut rng, m, 50.0);
            http_normal(&mut st, &mut rng, m);
            continue;
        }
        let n = rng.poisson(50.0 * diurnal(m)).max(20);
        let bad = n * 7 / 10;
        st.ok(
            m,
            Source::Webhook,
            Channel::Sms,
            Some("twilio"),
            Outcome::Delivered,
            n - bad,
        );
        for i in 0..bad {
            st.fail(
                m,
                (i % 60) as i64,
                Source::Webhook,
                Channel::Sms,
                Some("twilio"),
                "undelivered",
                "30008",
                Scope::Provider,
                &format!("h:{i:x}"),
                1,
            );
        }
        st.http(
            m,
            "GET /api/contacts",
            rng.poisson(300.0 * diurnal(m)),
            0.04,
            0,
        );
        st.http(m, "POST /api/deals", 30 - 18, 0.3, 18);
    }
    let r = run(&st);
    let keys: Vec<&str> = r
        .incidents
        .iter()
        .map(|i| i.correlation_key.as_str())
        .collect();
    assert!(keys.contains(&"provider:twilio"), "{r}");
    assert!(keys.contains(&"app"), "{r}");
    let sms = r
        .incidents
        .iter()
        .find(|i| i.correlation_key == "provider:twilio")
        .unwrap();
    assert!(sms.evidence.findings.iter().all(|f| f.channel != "http"));
}

fn payment_5xx(route_on_gateway: bool) -> ReplayReport {
    let mut rng = Rng::new(3);
    let mut st = Stream::default();
    warm_up(&mut st, &mut rng, 720);
    for m in 720..800 {
        email_normal(&mut st, &mut rng, m, 800.0);
        sms_normal(&mut st, &mut rng, m, 50.0);
        automation_normal(&mut st, &mut rng, m);
        if !(720..745).contains(&m) {
            payments_normal(&mut st, &mut rng, m, 60.0);
            http_normal(&mut st, &mut rng, m);
            continue;
        }
        // Stripe answers 60% of charges with 5xx; our payment route turns them into 502s.
        let n = rng.poisson(60.0 * diurnal(m));
        let bad = n * 6 / 10;
        st.ok(
            m,
            Source::ProviderGateway,
            Channel::Payment,
            Some("stripe"),
            Outcome::Succeeded,
            n - bad,
        );
        for i in 0..bad {
            let s = st.fail(
                m,
                (i % 60) as i64,
                Source::ProviderGateway,
                Channel::Payment,
                Some("stripe"),
                "provider_5xx",
                if i % 3 == 0 { "502" } else { "503" },
                Scope::Provider,
                "stripe",
                1,
            );
            if route_on_gateway {
                s.attrs.insert("route".into(), "POST /api/payments".into());
            }
        }
        st.http(
            m,
            "GET /api/contacts",
            rng.poisson(300.0 * diurnal(m)),
            0.04,
            0,
        );
        st.http(
            m,
            "POST /api/automations/run",
            rng.poisson(40.0 * diurnal(m)),
            0.12,
            0,
        );
        st.http(m, "POST /api/payments", 30 - 18, 0.3, 18);
    }
    let r = run(&st);
    assert_eq!(r.incidents.len(), 1, "{r}");
    let i = &r.incidents[0];
    assert_eq!(i.correlation_key, "provider:stripe");
    assert_eq!(i.layer, Layer::Provider);
    assert!(
        i.evidence.findings.iter().any(|f| f.channel == "http"),
        "the 502s on the route join: {r}"
    );
    assert_eq!(r.pages.len(), 1, "{r}");
    r
}

#[test]
fn slow_query_cascading_into_automation_failures_and_http_5xx() {
    let mut rng = Rng::new(4);
    let mut st = Stream::default();
    warm_up(&mut st, &mut rng, 720);
    let fp = "9f86d081884c7d65";
    for m in 720..820 {
        email_normal(&mut st, &mut rng, m, 800.0);
        sms_normal(&mut st, &mut rng, m, 50.0);
        payments_normal(&mut st, &mut rng, m, 60.0);
        if !(720..760).contains(&m) {
            http_normal(&mut st, &mut rng, m);
            automation_normal(&mut st, &mut rng, m);
            continue;
        }
        // A statement on contacts turns slow (missing index after a deploy) ...
        st.heavy_query(m, fp, "contacts", "POST /api/automations/run", 4.5);
        // ... automation steps that run it time out (SQLSTATE 57014) from minute 2 ...
        let runs = rng.poisson(20.0 * diurnal(m));
        let failed = if m >= 722 { runs / 2 } else { 0 };
        st.ok(
            m,
            Source::App,
            Channel::Automation,
            None,
            Outcome::Succeeded,
            runs - failed,
        );
        for i in 0..failed {
            st.fail(
                m,
                (i * 3 % 60) as i64,
                Source::App,
                Channel::Automation,
                None,
                "step_failed",
                "57014",
                Scope::Service,
                "send_campaign",
                1,
            )
            .attrs
            .insert("fingerprint".into(), fp.into());
        }
        // ... and the route issuing it answers 504 from minute 4.
        let errors = if m >= 724 { 15 } else { 0 };
        st.http(
            m,
            "GET /api/contacts",
            rng.poisson(300.0 * diurnal(m)),
            0.04,
            0,
        );
        st.http(m, "POST /api/automations/run", 40 - errors, 3.0, errors);
        st.http(
            m,
            "POST /api/payments",
            rng.poisson(30.0 * diurnal(m)),
            0.3,
            0,
        );
    }
    let r = run(&st);
    assert_eq!(r.incidents.len(), 1, "{r}");
    let i = &r.incidents[0];
    assert_eq!(i.correlation_key, "db");
    assert_eq!(i.layer, Layer::Database);
    assert_eq!(i.evidence.layers[1].0, Layer::App);
    for channel in ["db", "automation", "http"] {
        assert!(
            i.evidence.findings.iter().any(|f| f.channel == channel),
            "{channel} evidence: {r}"
        );
    }
    assert!(
        i.evidence
            .findings
            .iter()
            .any(|f| f.fingerprints.iter().any(|x| x == fp))
    );
    assert!(
        i.evidence
            .findings
            .iter()
            .any(|f| f.tables.iter().any(|t| t == "contacts"))
    );
    assert_eq!(i.state, IncidentState::Resolved);
    assert_eq!(r.pages.len(), 1, "{r}");
}

#[test]
fn a_week_of_normal_traffic_with_noise_pages_nobody() {
    let mut rng = Rng::new(5);
    let mut st = Stream::default();
    for m in 0..7 * 1440 {
        email_normal(&mut st, &mut rng, m, 300.0);
        sms_normal(&mut st, &mut rng, m, 50.0);
        payments_normal(&mut st, &mut rng, m, 40.0);
        http_normal(&mut st, &mut rng, m);
        automation_normal(&mut st, &mut rng, m);
    }
    let r = run(&st);
    assert!(r.signals > 50_000);
    assert_eq!(r.pages.len(), 0, "{r}");
    assert_eq!(r.incidents.len(), 0, "{r}");
}

#[test]
fn duplicates_and_unreadable_lines_are_reported_not_fatal() {
    let mut st = Stream::default();
    let mut rng = Rng::new(6);
    for m in 0..5 {
        email_normal(&mut st, &mut rng, m, 100.0);
    }
    let mut text = st.jsonl();
    let first = text.lines().next().expect("a line").to_string();
    text.push_str(&first);
    text.push_str("\n{not json\n\n");
    let r = replay(Cursor::new(text), &Rules::builtin()).expect("replay");
    assert_eq!(r.duplicates, 1);
    assert_eq!(r.invalid.len(), 1);
    assert_eq!(r.invalid[0].0, st.signals.len() + 2);
    assert_eq!(r.signals as usize, st.signals.len());
}
