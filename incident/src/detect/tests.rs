//! Unit tests of the detector on synthetic minute-by-minute traffic.

use chrono::{TimeZone, Utc};
use vigil_signal::{Channel, Outcome, Scope, Signal, Source};

use super::*;

const T0: i64 = 1_790_000_000_000;

fn at(min: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(T0 + min * MINUTE_MS)
        .single()
        .expect("time")
}

fn ok(min: i64, channel: Channel, provider: &str, count: u64) -> Signal {
    Signal::new(Source::Webhook, channel, Outcome::Delivered)
        .with_id(format!("ok-{provider}-{min}"))
        .with_time(at(min))
        .with_window(60)
        .with_provider(provider)
        .with_count(count)
}

fn fail(min: i64, i: u64, channel: Channel, provider: &str, class: &str, scope: Scope) -> Signal {
    Signal::new(Source::Webhook, channel, Outcome::Failed)
        .with_id(format!("f-{provider}-{min}-{i}"))
        .with_time(at(min) + chrono::Duration::seconds((i % 60) as i64))
        .with_provider(provider)
        .with_class(class)
        .with_code("30008")
        .with_scope(scope)
        .with_subject(format!("h:{i}"))
}

/// Feed `minutes` of traffic from `gen`, ticking each minute; return the minute of the first
/// critical finding.
fn run(
    d: &mut Detector,
    range: std::ops::Range<i64>,
    mut make: impl FnMut(i64) -> Vec<Signal>,
) -> Option<i64> {
    let mut first = None;
    for m in range {
        for s in make(m) {
            d.observe(&s);
        }
        let active = d.tick(T0 + (m + 1) * MINUTE_MS);
        if first.is_none() && active.iter().any(|f| f.severity == Severity::Critical) {
            first = Some(m);
        }
    }
    first
}

#[test]
fn high_volume_spike_fires_fast_and_noise_does_not() {
    let mut d = Detector::new(DetectConfig::default());
    // 10,000 emails a minute with 0.1% provider-scoped noise for a day: no finding.
    let quiet = run(&mut d, 0..1440, |m| {
        let mut v = vec![ok(m, Channel::Email, "sendgrid", 9_990)];
        for i in 0..10 {
            v.push(fail(
                m,
                i,
                Channel::Email,
                "sendgrid",
                "blocked",
                Scope::Sender,
            ));
        }
        v
    });
    assert_eq!(quiet, None);
    // Then 20% blocked: fires in the first evaluated minute.
    let spike = run(&mut d, 1440..1450, |m| {
        let mut v = vec![ok(m, Channel::Email, "sendgrid", 8_000)];
        v.push(fail(m, 0, Channel::Email, "sendgrid", "blocked", Scope::Sender).with_count(2_000));
        v
    });
    assert_eq!(spike, Some(1440));
}

#[test]
fn low_volume_outage_fires_and_recovers_with_hysteresis() {
    let mut d = Detector::new(DetectConfig::default());
    // 50 SMS an hour: one a minute-ish (5 of every 6 minutes), 2% recipient-scoped failures.
    let normal = |m: i64| {
        let mut v = Vec::new();
        if m % 6 != 0 {
            v.push(ok(m, Channel::Sms, "twilio", 1));
        }
        if m % 50 == 0 {
            v.push(fail(
                m,
                m as u64,
                Channel::Sms,
                "twilio",
                "undelivered",
                Scope::Recipient,
            ));
        }
        v
    };
    assert_eq!(run(&mut d, 0..2880, normal), None);
    // Carrier outage: every message fails with a provider-scoped code.
    let outage = run(&mut d, 2880..2920, |m| {
        if m % 6 != 0 {
            vec![fail(
                m,
                m as u64,
                Channel::Sms,
                "twilio",
                "undelivered",
                Scope::Provider,
            )]
        } else {
            vec![]
        }
    });
    let fired = outage.expect("outage detected");
    assert!(fired - 2880 <= 10, "detected after {} min", fired - 2880);
    // Recovery: the finding clears only after recovery_secs of good traffic.
    let mut cleared_at = None;
    for m in 2920..2980 {
        for s in normal(m) {
            d.observe(&s);
        }
        let active = d.tick(T0 + (m + 1) * MINUTE_MS);
        if cleared_at.is_none() && !active.iter().any(|f| f.severity == Severity::Critical) {
            cleared_at = Some(m);
        }
    }
    let cleared = cleared_at.expect("cleared");
    assert!(
        cleared >= 2920 + 9,
        "hysteresis holds at least recovery_secs: {cleared}"
    );
}

#[test]
fn recipient_failures_are_deduplicated_and_never_critical() {
    let mut d = Detector::new(DetectConfig::default());
    let r = run(&mut d, 0..120, |m| {
        let mut v = vec![ok(m, Channel::Email, "sendgrid", 100)];
        // The same dead mailbox retried 50 times a minute.
        for i in 0..50 {
            v.push(
                fail(m, i, Channel::Email, "sendgrid", "bounce", Scope::Recipient)
                    .with_subject("h:dead"),
            );
        }
        v
    });
    assert_eq!(r, None);
    let active = d.tick(T0 + 121 * MINUTE_MS);
    assert!(
        active.is_empty(),
        "one recipient is not an anomaly: {active:?}"
    );
}

#[test]
fn poisson_counts_without_denominator_and_events() {
    let mut d = Detector::new(DetectConfig::default());
    let app_fail = |m: i64, i: u64| {
        Signal::new(Source::App, Channel::Automation, Outcome::Failed)
            .with_id(format!("a-{m}-{i}"))
            .with_time(at(m))
            .with_class("step_failed")
            .with_subject("send_campaign")
    };
    assert_eq!(
        run(&mut d, 0..600, |m| if m % 120 == 0 {
            vec![app_fail(m, 0)]
        } else {
            vec![]
        }),
        None
    );
    let burst = run(&mut d, 600..610, |m| {
        (0..5).map(|i| app_fail(m, i)).collect()
    });
    assert!(burst.is_some());

    let alert = Signal::new(Source::Alertmanager, Channel::Alert, Outcome::Firing)
        .with_id("am-1")
        .with_time(at(700))
        .with_class("alert")
        .with_attr("alertname", "PostgresDown")
        .with_attr("severity", "critical");
    d.observe(&alert);
    let active = d.tick(T0 + 701 * MINUTE_MS);
    assert!(
        active.iter().any(
            |f| f.finding.key == "alert/alert/PostgresDown" && f.severity == Severity::Critical
        )
    );
    let resolved = Signal {
        outcome: Outcome::Resolved,
        id: "am-2".into(),
        ..alert
    };
    d.observe(&resolved);
    let active = d.tick(T0 + 702 * MINUTE_MS);
    assert!(!active.iter().any(|f| f.finding.detector == "event"));
}

#[test]
fn missing_outcomes_and_silent_sources() {
    let mut d = Detector::new(DetectConfig::default());
    let send = |m: i64, i: u64| {
        Signal::new(Source::ProviderGateway, Channel::Email, Outcome::Accepted)
            .with_id(format!("s-{m}-{i}"))
            .with_time(at(m))
            .with_provider("postmark")
            .with_attr("message_id", format!("m{m}-{i}"))
    };
    let delivered = |m: i64, i: u64| {
        Signal::new(Source::Webhook, Channel::Email, Outcome::Delivered)
            .with_id(format!("d-{m}-{i}"))
            .with_time(at(m) + chrono::Duration::seconds(20))
            .with_provider("postmark")
            .with_attr("message_id", format!("m{m}-{i}"))
    };
    let healthy = |m: i64| {
        (0..5)
            .flat_map(|i| [send(m, i), delivered(m, i)])
            .collect::<Vec<_>>()
    };
    assert_eq!(run(&mut d, 0..300, healthy), None);
    // Webhooks stop arriving while sends go on.
    let mut missing_at = None;
    let mut silent_at = None;
    for m in 300..400 {
        for i in 0..5 {
            d.observe(&send(m, i));
        }
        let active = d.tick(T0 + (m + 1) * MINUTE_MS);
        if missing_at.is_none()
            && active
                .iter()
                .any(|f| f.finding.detector == "missing_outcome")
        {
            missing_at = Some(m);
        }
        if silent_at.is_none() && active.iter().any(|f| f.finding.detector == "silent_source") {
            silent_at = Some(m);
        }
    }
    let missing = missing_at.expect("missing outcomes detected");
    assert!((315..=330).contains(&missing), "{missing}");
    let silent = silent_at.expect("silent source detected");
    assert!((328..=340).contains(&silent), "{silent}");
}

#[test]
fn a_live_tick_inside_a_minute_sees_that_minute() {
    let mut d = Detector::new(DetectConfig::default());
    assert_eq!(
        run(&mut d, 0..600, |m| vec![ok(
            m,
            Channel::Email,
            "sendgrid",
            5_000
        )]),
        None
    );
    // 20 seconds into minute 600 a provider starts failing: the tick at +30 s pages.
    for i in 0..10 {
        d.observe(
            &fail(
                600,
                i,
                Channel::Email,
                "sendgrid",
                "provider_5xx",
                Scope::Provider,
            )
            .with_count(100),
        );
    }
    d.observe(&ok(600, Channel::Email, "sendgrid", 1_000));
    let active = d.tick(T0 + 600 * MINUTE_MS + 30_000);
    assert!(
        active.iter().any(|f| f.severity == Severity::Critical),
        "{active:?}"
    );
}

#[test]
fn only_a_delivery_outcome_settles_a_send() {
    let mut d = Detector::new(DetectConfig::default());
    let event = |outcome: Outcome, id: &str| {
        Signal::new(Source::Webhook, Channel::Email, outcome)
            .with_id(format!("{id}-{outcome:?}"))
            .with_time(at(1))
            .with_provider("sendgrid")
            .with_attr("message_id", id)
    };
    for id in ["a", "b", "c"] {
        d.observe(
            &Signal::new(Source::ProviderGateway, Channel::Email, Outcome::Accepted)
                .with_id(format!("send-{id}"))
                .with_time(at(0))
                .with_provider("sendgrid")
                .with_attr("message_id", id),
        );
        // SendGrid's "processed" and "deferred" come first and say nothing about delivery.
        d.observe(&event(Outcome::Accepted, id));
        d.observe(&event(Outcome::Deferred, id));
    }
    d.observe(&event(Outcome::Delivered, "a"));
    d.observe(&event(Outcome::Failed, "b"));
    let overdue = d.overdue_outcomes(T0 + 60 * MINUTE_MS);
    assert_eq!(
        overdue,
        vec![("email".to_string(), "sendgrid".to_string(), 1)]
    );
}
