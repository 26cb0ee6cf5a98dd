//! `vigil demo` (the README's first command) end to end against the real processes: one run of
//! every scenario (`--scenario all --small`), each opening (or joining) its expected incident with
//! the expected likely layer within its slot and no other incident of any severity, none at all
//! outside the scenarios; the process exits cleanly and leaves no folder behind (its own, nor
//! PostgreSQL's or Redis's).

use std::process::{Command, Stdio};

use vigil::demo::Scenario;

fn demo_dirs() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vigil-demo-"))
        .collect()
}

/// Seconds per scenario (the demo's minimum slot).
const SLOT_SECS: u64 = 25;

#[test]
fn every_demo_scenario_opens_its_incident_with_the_right_layer_and_nothing_else() {
    let before = demo_dirs();
    let duration = (SLOT_SECS * Scenario::ALL.len() as u64).to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "demo",
            "--small",
            "--scenario",
            "all",
            "--duration",
            &duration,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vigil demo");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("console:  http://127.0.0.1:"), "{text}");
    // Redis backs the cache when redis-server is installed (CI installs it), memory otherwise.
    let backend = if vigil_testkit::which("redis-server").is_some() {
        "cache backend: redis (throwaway redis-server on 127.0.0.1:"
    } else {
        "cache backend: memory (redis-server not found)"
    };
    assert!(text.contains(backend), "{text}");
    let summary = text
        .split("== summary")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    for sc in Scenario::ALL {
        let line = summary
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", sc.name())))
            .unwrap_or_else(|| panic!("no summary line for {}:\n{text}", sc.name()));
        let expected = format!(
            "(likely layer: {}) as expected, after ",
            sc.expected_layer().as_str()
        );
        assert!(line.contains(&expected), "{}: {line}\n{text}", sc.name());
        let after: f64 = line
            .split(", after ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no time in {line}"));
        assert!(
            after <= SLOT_SECS as f64,
            "{}: {after} s is past the target\n{text}",
            sc.name()
        );
        // Nothing else at all, any severity (issue 10).
        assert!(
            line.ends_with(" 0 other incidents (0 critical)"),
            "{}: {line}\n{text}",
            sc.name()
        );
    }
    assert!(
        summary.contains("incidents outside scenarios: 0 (0 critical)"),
        "{text}"
    );
    let new: Vec<String> = demo_dirs()
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert!(new.is_empty(), "the demo left {new:?} behind");
    for (what, prefix) in [
        ("PostgreSQL", "vigil-test-pg"),
        ("Redis", "vigil-test-redis"),
    ] {
        let dir = format!("{prefix}-{pid}-");
        let left = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&dir));
        assert!(!left, "the demo left its {what} folder behind");
    }
}
