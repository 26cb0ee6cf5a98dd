//! Rules files: the shipped examples load; errors name the file and the field.

use std::path::Path;

use vigil_incident::rules::{ReceiverKind, Rules};
use vigil_incident::{RulesError, check_rules};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn shipped_rules_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/incident");
    check_rules(&dir).unwrap();
    let rules = Rules::load_dir(&dir).unwrap();
    assert_eq!(rules.routes.len(), 2);
    assert!(matches!(
        rules.receiver("pagerduty-oncall").unwrap().kind,
        ReceiverKind::Pagerduty { .. }
    ));
    assert_eq!(rules.detect_for("sms").missing_outcome_secs, 1800);
    assert_eq!(rules.detect_for("email").missing_outcome_secs, 900);
    assert_eq!(rules.silences.len(), 1);
    assert_eq!(rules.maintenance.len(), 1);
}

#[test]
fn empty_dir_gives_builtin_rules() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Rules::load_dir(dir.path()).unwrap(), Rules::builtin());
    assert_eq!(
        Rules::load_dir(&dir.path().join("missing")).unwrap(),
        Rules::builtin()
    );
}

#[test]
fn errors_name_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        "routes:\n  - name: r\n    receivers: [nobody]\n",
    );
    let err = check_rules(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("a.yaml") && msg.contains("routes[0].receivers[0]") && msg.contains("nobody"),
        "{msg}"
    );

    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    write(dir.path(), "b.yaml", "detect:\n  long_window_secs: 90\n");
    let msg = check_rules(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("b.yaml") && msg.contains("detect.long_window_secs"),
        "{msg}"
    );

    write(dir.path(), "b.yaml", "routez: []\n");
    let err = check_rules(dir.path()).unwrap_err();
    assert!(matches!(err, RulesError::Parse { .. }));
    let msg = err.to_string();
    assert!(msg.contains("b.yaml") && msg.contains("routez"), "{msg}");

    write(
        dir.path(),
        "b.yaml",
        "silences:\n  - match: {colour: red}\n    starts: 2026-01-01T00:00:00Z\n    ends: 2026-01-02T00:00:00Z\n",
    );
    let msg = check_rules(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("silences[0].match.colour"), "{msg}");

    write(
        dir.path(),
        "b.yaml",
        "receivers:\n  - name: x\n    kind: log\n",
    );
    write(
        dir.path(),
        "c.yaml",
        "receivers:\n  - name: x\n    kind: log\n",
    );
    let msg = check_rules(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("c.yaml") && msg.contains("already defined in") && msg.contains("b.yaml"),
        "{msg}"
    );
}

#[test]
fn receivers_need_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "r.yaml",
        "receivers:\n  - name: hook\n    kind: webhook\n    url: http://127.0.0.1:1/x\n",
    );
    let msg = check_rules(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("r.yaml") && msg.contains("secret_env"),
        "{msg}"
    );
    write(
        dir.path(),
        "r.yaml",
        "receivers:\n  - name: hook\n    kind: carrier_pigeon\n",
    );
    let msg = check_rules(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("carrier_pigeon"), "{msg}");
}

#[test]
fn maintenance_windows_follow_the_time_zone() {
    use chrono::{TimeZone, Utc};
    use vigil_incident::rules::Maintenance;
    let w = Maintenance {
        name: "backup".into(),
        matchers: Default::default(),
        timezone: "Europe/Berlin".into(),
        days: vec!["sun".into()],
        start: "03:00".into(),
        duration_mins: 60,
    };
    let at = |y, mo, d, h, mi| {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp_millis()
    };
    // Winter (UTC+1): Sunday 2026-01-11 03:00 Berlin = 02:00 UTC.
    assert!(!w.active(at(2026, 1, 11, 1, 59)));
    assert!(w.active(at(2026, 1, 11, 2, 0)));
    assert!(w.active(at(2026, 1, 11, 2, 59)));
    assert!(!w.active(at(2026, 1, 11, 3, 0)));
    // Summer (UTC+2): Sunday 2026-07-12 03:00 Berlin = 01:00 UTC.
    assert!(w.active(at(2026, 7, 12, 1, 30)));
    assert!(!w.active(at(2026, 7, 12, 2, 30)));
    // Not on Mondays.
    assert!(!w.active(at(2026, 7, 13, 1, 30)));
    // A window crossing midnight counts from the day it started.
    let late = Maintenance {
        days: vec!["sat".into()],
        start: "23:30".into(),
        ..w.clone()
    };
    assert!(late.active(at(2026, 7, 11, 22, 0))); // Sun 00:00 Berlin, started Sat 23:30
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "m.yaml",
        "maintenance:\n  - name: x\n    match: {}\n    timezone: Mars/Olympus\n    start: \"03:00\"\n    duration_mins: 5\n",
    );
    let msg = check_rules(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("m.yaml") && msg.contains("maintenance[0].timezone"),
        "{msg}"
    );
}
