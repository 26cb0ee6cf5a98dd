//! `vigil check`: accepts the shipped example configs, rejects bad ones with exit 2 and a message
//! naming the file, the field and what is wrong.

use std::path::Path;
use std::process::Command;

fn check(path: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.arg("check").arg("--config").arg(path);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.env_remove("VIGIL_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vigil check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn write(dir: &tempfile::TempDir, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, body).unwrap();
    p
}

const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("VIGIL_ADMIN_TOKEN", "example-token-0123456789"),
    ("CRM_DB_PASSWORD", "example"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_example"),
    ("TWILIO_AUTH_TOKEN", "example"),
    ("MAILGUN_SIGNING_KEY", "example"),
    (
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEJEwq4pL6hIoyGJqIFEVIL5I8HlQDE8a70pAld+USxvmvlgeqH7rUw7EpqVNDyFXEe6gSjezW4181hwfv22BB+Q==",
    ),
    ("SLACK_WEBHOOK_URL", "http://127.0.0.1:1/slack"),
    ("PAGERDUTY_ROUTING_KEY", "example"),
];

#[test]
fn every_shipped_example_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for dir in [
        "deploy/examples",
        "deploy/compose",
        "deploy/systemd",
        "deploy/kubernetes",
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                let (code, text) = check(&p, EXAMPLE_ENV);
                assert_eq!(code, 0, "{}: {text}", p.display());
                assert!(text.contains("configuration ok"), "{text}");
                seen += 1;
            }
        }
    }
    assert!(seen >= 1, "no example configs found");
}

#[test]
fn an_empty_config_is_valid_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "empty.toml", "");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("components: none"), "{text}");
}

#[test]
fn unknown_keys_are_rejected_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "v.toml",
        "[admin]\nlisten = \"127.0.0.1:9930\"\nlisten_port = 1\n",
    );
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("v.toml"), "{text}");
    assert!(text.contains("listen_port"), "{text}");
    assert!(text.contains("unknown field"), "{text}");

    let p = write(&dir, "w.toml", "[nonsense]\nx = 1\n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("nonsense"), "{text}");
}

#[test]
fn a_bad_address_is_rejected_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "v.toml", "[admin]\nlisten = \"localhost:99999\"\n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("field `admin.listen`"), "{text}");
    assert!(text.contains("invalid socket address"), "{text}");
}

#[test]
fn a_missing_env_var_is_rejected_with_the_field_and_variable_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "v.toml",
        "[admin]\nlisten = \"0.0.0.0:9930\"\ntoken = \"${VIGIL_ADMIN_TOKEN}\"\n",
    );
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("field `admin.token`: environment variable `VIGIL_ADMIN_TOKEN` is not set"),
        "{text}"
    );
    let (code, text) = check(&p, &[("VIGIL_ADMIN_TOKEN", "a-long-enough-token-123")]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_public_admin_address_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "v.toml", "[admin]\nlisten = \"0.0.0.0:9930\"\n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("admin.token"), "{text}");
}

#[test]
fn component_sections_are_validated_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "v.toml", "[pg]\npool_size = 0\n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("field `pg.pool_size`"), "{text}");
    let p = write(&dir, "w.toml", "[http]\nupstream = [\"ftp://x\"]\n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("field `http.upstream"), "{text}");
    let p = write(&dir, "x.toml", "[incident]\nstore = \"mysql://x\"\n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("field `incident.store`"), "{text}");
    write(&dir, "cache.yaml", "rules: []\n");
    let p = write(
        &dir,
        "y.toml",
        "[cache]\nrules = \"cache.yaml\"\nfill_lock_wait_ms = 60000\n",
    );
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("field `cache.fill_lock_wait_ms`"), "{text}");
    let p = write(
        &dir,
        "z.toml",
        "[cache]\nrules = \"cache.yaml\"\nfill_lock_wait_ms = 0\n",
    );
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 0, "{text}");
    // pg_stat_statements snapshots: at most 1000 rows; retention at least a day.
    let p = write(&dir, "py.toml", "[queries.pgss]\nmax_entries = 1001\n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("field `queries.pgss.max_entries`"), "{text}");
    let p = write(&dir, "pz.toml", "[queries.pgss]\ninterval_sec = 60\n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("interval_sec"), "{text}");
    let p = write(
        &dir,
        "r.toml",
        "[incident]\nstore = \"sqlite::memory:\"\n[incident.retention]\npgss_days = 0\n",
    );
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("field `incident.retention.pgss_days`"),
        "{text}"
    );
}

#[test]
fn a_broken_rules_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("heavy.yaml");
    std::fs::write(&rules, "p95_ms: [not a number]\n").unwrap();
    let p = write(
        &dir,
        "v.toml",
        &format!("[queries]\nheavy_rules = \"{}\"\n", rules.display()),
    );
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("rules file") && text.contains("heavy.yaml"),
        "{text}"
    );

    std::fs::create_dir(dir.path().join("incident")).unwrap();
    std::fs::write(dir.path().join("incident/bad.yaml"), "routes: 12\n").unwrap();
    let p = write(
        &dir,
        "w.toml",
        &format!(
            "[incident]\nrules = \"{}\"\nstore = \"sqlite::memory:\"\n",
            dir.path().join("incident").display()
        ),
    );
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("bad.yaml"), "{text}");
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "v.toml", "[admin]\nlisten = \n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("invalid TOML"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn transport_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "v.toml", "[signals]\ntransport = \"redis\"\n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("field `signals.url`: is required"), "{text}");
    let p = write(&dir, "w.toml", "[signals]\ntransport = \"kafka\"\n");
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("signals.transport"), "{text}");
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let (code, text) = check(Path::new("/nonexistent/vigil.toml"), &[]);
    assert_eq!(code, 2);
    assert!(
        text.contains("/nonexistent/vigil.toml: cannot read"),
        "{text}"
    );
}

#[test]
fn help_lists_the_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["run", "check"] {
        assert!(text.contains(sub), "{text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("vigil "));
}
