//! `vigil demo` (the README's first command) runs on this machine: a scenario opens its incident
//! with the expected likely layer, the process exits cleanly and leaves no folder behind.

use std::process::{Command, Stdio};

fn demo_dirs() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vigil-demo-"))
        .collect()
}

#[test]
fn the_demo_opens_the_bounce_storm_incident_and_cleans_up() {
    let before = demo_dirs();
    let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "demo",
            "--small",
            "--scenario",
            "bounce-storm",
            "--duration",
            "40",
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
    assert!(
        text.contains("[incident OPENED] email blocked (sendgrid)"),
        "{text}"
    );
    assert!(
        text.contains("(likely layer: integration) as expected"),
        "{text}"
    );
    assert!(text.contains("console:  http://127.0.0.1:"), "{text}");
    let new: Vec<String> = demo_dirs()
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert!(new.is_empty(), "the demo left {new:?} behind");
    let pg_dir = format!("vigil-test-pg-{pid}-");
    let left_pg = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&pg_dir));
    assert!(!left_pg, "the demo left its PostgreSQL folder behind");
}
