//! Lifecycle through the engine: relapse reopens, escalation when nobody acknowledges,
//! silences hold pages until they end, manual resolution.

mod common;

use chrono::{TimeZone, Utc};
use common::*;
use vigil_incident::correlate::ChangeKind;
use vigil_incident::engine::{Engine, Notification, NotifyEvent};
use vigil_incident::model::IncidentState;
use vigil_incident::rules::{Receiver, ReceiverKind, Route, RuleSilence, Rules};
use vigil_signal::{Channel, Outcome, Scope, Source};

fn rules(escalate: bool) -> Rules {
    let log = |n: &str| Receiver {
        name: n.into(),
        kind: ReceiverKind::Log,
    };
    Rules {
        routes: vec![Route {
            name: "page".into(),
            matchers: [("channel".to_string(), "email".to_string())]
                .into_iter()
                .collect(),
            min_severity: vigil_incident::model::Severity::Critical,
            receivers: vec!["oncall".into()],
            escalate_after_secs: escalate.then_some(600),
            escalate_to: if escalate {
                vec!["leads".into()]
            } else {
                vec![]
            },
            stop: true,
        }],
        receivers: vec![log("oncall"), log("leads")],
        ..Rules::default()
    }
}

/// Email minute: storm or normal.
fn email(st: &mut Stream, rng: &mut Rng, m: i64, storm: bool) {
    if !storm {
        email_normal(st, rng, m, 800.0);
        return;
    }
    st.ok(
        m,
        Source::Webhook,
        Channel::Email,
        Some("sendgrid"),
        Outcome::Delivered,
        500,
    );
    st.fail(
        m,
        3,
        Source::Webhook,
        Channel::Email,
        Some("sendgrid"),
        "blocked",
        "5.7.1",
        Scope::Sender,
        "ip",
        250,
    );
}

struct Run {
    engine: Engine,
    notes: Vec<Notification>,
    changes: Vec<(i64, String, ChangeKind)>,
}

/// Drive the engine minute by minute over `plan(m) -> storm?`, calling `hook` after each tick.
fn drive(
    rules: Rules,
    minutes: std::ops::Range<i64>,
    plan: impl Fn(i64) -> bool,
    mut hook: impl FnMut(&mut Engine, i64),
) -> Run {
    let mut engine = Engine::new(rules);
    let mut rng = Rng::new(9);
    let mut run = Run {
        engine: Engine::new(Rules::builtin()),
        notes: vec![],
        changes: vec![],
    };
    for m in minutes {
        let mut st = Stream::default();
        email(&mut st, &mut rng, m, plan(m));
        for s in &st.signals {
            engine.observe(s);
        }
        let now = T0 + (m + 1) * MIN;
        let (changes, notes) = engine.tick(now);
        run.changes
            .extend(changes.into_iter().map(|c| (m, c.incident.id, c.kind)));
        run.notes.extend(notes);
        hook(&mut engine, now);
    }
    run.engine = engine;
    run
}

#[test]
fn relapse_within_the_window_reopens_the_same_incident() {
    let run = drive(
        rules(false),
        0..480,
        |m| (300..320).contains(&m) || (345..360).contains(&m),
        |_, _| {},
    );
    let kinds: Vec<ChangeKind> = run
        .changes
        .iter()
        .map(|c| c.2)
        .filter(|k| *k != ChangeKind::Updated)
        .collect();
    assert_eq!(
        kinds,
        vec![
            ChangeKind::Opened,
            ChangeKind::Resolved,
            ChangeKind::Reopened,
            ChangeKind::Resolved
        ]
    );
    let ids: std::collections::BTreeSet<&String> = run.changes.iter().map(|c| &c.1).collect();
    assert_eq!(ids.len(), 1, "one incident");
    let triggers: Vec<&Notification> = run
        .notes
        .iter()
        .filter(|n| n.event == NotifyEvent::Trigger)
        .collect();
    assert_eq!(triggers.len(), 2);
    assert_ne!(triggers[0].dedup_key, triggers[1].dedup_key);
    assert_eq!(
        run.notes
            .iter()
            .filter(|n| n.event == NotifyEvent::Resolve)
            .count(),
        2
    );
    // Resolution waited for the hysteresis: not before 10 minutes after the storm ended.
    let resolved_at = run
        .changes
        .iter()
        .find(|c| c.2 == ChangeKind::Resolved)
        .unwrap()
        .0;
    assert!(resolved_at >= 329, "{resolved_at}");
    // A relapse after the reopen window opens a new incident.
    let run = drive(
        rules(false),
        0..560,
        |m| (300..320).contains(&m) || (460..475).contains(&m),
        |_, _| {},
    );
    let opened = run
        .changes
        .iter()
        .filter(|c| c.2 == ChangeKind::Opened)
        .count();
    assert_eq!(opened, 2);
}

#[test]
fn unacknowledged_incidents_escalate_once_and_acknowledged_ones_do_not() {
    let run = drive(rules(true), 0..360, |m| (300..340).contains(&m), |_, _| {});
    let esc: Vec<&Notification> = run.notes.iter().filter(|n| n.escalation).collect();
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0].receiver, "leads");
    assert!(esc[0].at_ms - (T0 + 301 * MIN) >= 600_000);

    let run = drive(
        rules(true),
        0..360,
        |m| (300..340).contains(&m),
        |engine, now| {
            let open: Vec<String> = engine
                .correlator()
                .incidents()
                .filter(|i| i.state == IncidentState::Open)
                .map(|i| i.id.clone())
                .collect();
            for id in open {
                let (c, n) = engine.acknowledge(&id, "ana", now).unwrap();
                assert_eq!(c.incident.state, IncidentState::Acknowledged);
                assert_eq!(n.len(), 1);
                assert_eq!(n[0].event, NotifyEvent::Acknowledge);
            }
        },
    );
    assert!(run.notes.iter().all(|n| !n.escalation));
}

#[test]
fn a_silence_holds_the_page_until_it_ends_if_still_failing() {
    let mut r = rules(false);
    r.silences.push(RuleSilence {
        matchers: [("provider".to_string(), "sendgrid".to_string())]
            .into_iter()
            .collect(),
        starts: Utc.timestamp_millis_opt(T0 + 290 * MIN).unwrap(),
        ends: Utc.timestamp_millis_opt(T0 + 310 * MIN).unwrap(),
        comment: "IP warm-up".into(),
    });
    let run = drive(r.clone(), 0..380, |m| (300..330).contains(&m), |_, _| {});
    let triggers: Vec<&Notification> = run
        .notes
        .iter()
        .filter(|n| n.event == NotifyEvent::Trigger)
        .collect();
    assert_eq!(triggers.len(), 1);
    assert_eq!(
        triggers[0].at_ms,
        T0 + 310 * MIN,
        "paged when the silence ended"
    );
    // Over before the silence ends: no page at all, and no resolve notification either.
    let run = drive(r, 0..380, |m| (300..303).contains(&m), |_, _| {});
    assert!(run.changes.iter().any(|c| c.2 == ChangeKind::Opened));
    assert!(run.notes.is_empty(), "{:?}", run.notes);
}

#[test]
fn manual_resolution_holds_until_the_findings_clear() {
    let mut resolved = false;
    let run = drive(
        rules(false),
        0..350,
        |m| (300..330).contains(&m),
        |engine, now| {
            let open: Vec<String> = engine
                .correlator()
                .incidents()
                .filter(|i| i.state == IncidentState::Open)
                .map(|i| i.id.clone())
                .collect();
            if !resolved && let Some(id) = open.first() {
                engine.resolve(id, "ana", now).unwrap();
                resolved = true;
            }
        },
    );
    // Resolved by hand while still failing: it does not reopen for the same findings.
    assert_eq!(
        run.changes
            .iter()
            .filter(|c| c.2 == ChangeKind::Reopened)
            .count(),
        0
    );
    assert_eq!(
        run.notes
            .iter()
            .filter(|n| n.event == NotifyEvent::Trigger)
            .count(),
        1
    );
    let i = run.engine.correlator().incidents().next().unwrap();
    assert_eq!(i.state, IncidentState::Resolved);
}

#[test]
fn severity_rules_downgrade_a_class_so_it_does_not_page() {
    let mut r = rules(false);
    r.severities.push(vigil_incident::rules::SeverityRule {
        matchers: [("class".to_string(), "blocked".to_string())]
            .into_iter()
            .collect(),
        severity: vigil_incident::model::Severity::Warning,
    });
    let run = drive(r, 0..340, |m| (300..320).contains(&m), |_, _| {});
    assert!(
        run.changes.iter().any(|c| c.2 == ChangeKind::Opened),
        "still an incident"
    );
    assert!(run.notes.is_empty(), "but no page: {:?}", run.notes);
}
