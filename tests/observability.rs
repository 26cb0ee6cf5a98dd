//! Static checks of the observability and deployment files: alert rules with `promtool` (check
//! and unit tests), every alert unit-tested and linked to a runbook section, dashboard structure,
//! the PromQL tokenizer the live metric-name check relies on, and the Kubernetes manifests
//! against the Kubernetes schemas (`kubernetes-validate --strict`, no cluster). The live checks
//! against a running Vigil and a real Prometheus are in `observability_live.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::obs::{self, metric_names};
use serde_json::Value;

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let Some(promtool) = obs::tool("promtool", "prometheus") else {
        return;
    };
    let root = obs::root();
    let rules: Vec<String> = obs::files("rules/prometheus", &[".yml"])
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert!(!rules.is_empty(), "no rules/prometheus/*.yml");
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    let (ok, out) = obs::run(&promtool, &args, &root);
    assert!(ok, "promtool check rules:\n{out}");

    let tests: Vec<String> = obs::files("rules/prometheus/tests", &[".yml"])
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert!(!tests.is_empty(), "no rules/prometheus/tests/*.yml");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let (ok, out) = obs::run(&promtool, &args, &root);
    assert!(ok, "promtool test rules:\n{out}");
    println!(
        "promtool: {} rule files, {} test files ok",
        rules.len(),
        tests.len()
    );
}

/// Every alert has unit tests that see it firing and not firing, and a `runbook_url` whose
/// anchor is a heading of docs/runbook.md.
#[test]
fn every_alert_is_unit_tested_both_ways_and_has_a_runbook_section() {
    let runbook = std::fs::read_to_string(obs::root().join("docs/runbook.md")).unwrap();
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    // alert -> (seen firing, seen not firing)
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for p in obs::files("rules/prometheus/tests", &[".yml"]) {
        let v: Value = serde_saphyr::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        for t in v["tests"].as_array().unwrap() {
            for a in t["alert_rule_test"].as_array().into_iter().flatten() {
                let e = seen
                    .entry(a["alertname"].as_str().unwrap().into())
                    .or_default();
                if a["exp_alerts"].as_array().is_some_and(|x| !x.is_empty()) {
                    e.0 = true;
                } else {
                    e.1 = true;
                }
            }
        }
    }
    let mut alerts = 0;
    for p in obs::files("rules/prometheus", &[".yml"]) {
        let v: Value = serde_saphyr::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        for g in v["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                let Some(name) = r["alert"].as_str() else {
                    continue;
                };
                alerts += 1;
                assert_eq!(
                    seen.get(name),
                    Some(&(true, true)),
                    "{name}: needs a promtool test that fires it and one that does not"
                );
                let url = r["annotations"]["runbook_url"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: no runbook_url"));
                let anchor = url
                    .split_once("docs/runbook.md#")
                    .unwrap_or_else(|| {
                        panic!("{name}: runbook_url must point at docs/runbook.md#...")
                    })
                    .1;
                assert!(
                    anchors.contains(anchor),
                    "{name}: docs/runbook.md has no section #{anchor}"
                );
                assert!(r["labels"]["severity"].is_string(), "{name}: no severity");
            }
        }
    }
    assert!(alerts >= 5, "only {alerts} alerts");
}

#[test]
fn dashboards_are_structurally_valid() {
    let dashboards = obs::dashboards();
    let names: BTreeSet<&str> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "overview.json",
        "database.json",
        "channels.json",
        "http.json",
        "incidents.json",
    ] {
        assert!(names.contains(want), "dashboards/{want} is missing");
    }
    let mut uids = BTreeSet::new();
    for (name, d) in &dashboards {
        assert!(
            d["schemaVersion"].as_u64().unwrap_or(0) >= 39,
            "{name}: schemaVersion"
        );
        assert!(
            uids.insert(d["uid"].as_str().expect("uid").to_owned()),
            "{name}: duplicate uid"
        );
        assert!(d["title"].is_string(), "{name}: title");
        let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no templating"))
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        assert_eq!(
            vars.get("datasource").map(|v| &v["type"]),
            Some(&Value::from("datasource")),
            "{name}: needs a `datasource` variable of type datasource"
        );
        assert_eq!(vars["datasource"]["query"], "prometheus", "{name}");
        for v in ["instance", "database"] {
            assert!(
                vars.contains_key(v),
                "{name}: template variable `{v}` missing"
            );
        }
        // Series labelled by database (statement statistics, per-pool gauges) follow the
        // `database` variable on the Database dashboard.
        let by_database = |expr: &str| {
            metric_names(expr).iter().any(|m| {
                (m.starts_with("vigil_query_") && m != "vigil_query_fingerprints")
                    || [
                        "vigil_pg_pool_size",
                        "vigil_pg_pool_clients",
                        "vigil_pg_pool_clients_active",
                        "vigil_pg_pool_clients_waiting",
                        "vigil_pg_pool_servers_active",
                        "vigil_pg_pool_servers_idle",
                        "vigil_pg_pool_pinned_clients",
                    ]
                    .contains(&m.as_str())
            })
        };
        let mut ids = BTreeSet::new();
        for p in obs::panels(d) {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: panel without id"));
            assert!(ids.insert(id), "{name}: duplicate panel id {id}");
            assert!(p["gridPos"]["w"].is_u64(), "{name} panel {id}: gridPos");
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{name} panel {id}: datasource must be the ${{datasource}} variable"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name} panel {id}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name} panel {id}");
                let expr = t["expr"].as_str().unwrap();
                assert!(
                    expr.contains("instance=~\"$instance\""),
                    "{name} panel {id}: query does not filter on $instance: {expr}"
                );
                if name == "database.json" && by_database(expr) {
                    assert!(
                        expr.contains("database=~\"$database\""),
                        "{name} panel {id}: query does not filter on $database: {expr}"
                    );
                }
            }
        }
        // No hard-coded hosts or instances anywhere in the file.
        let text = d.to_string();
        for bad in [
            "localhost",
            "127.0.0.1",
            ":9930",
            "instance=\\\"",
            "\"uid\":\"prometheus\"",
        ] {
            assert!(!text.contains(bad), "{name}: hard-coded `{bad}`");
        }
    }
}

#[test]
fn promql_tokenizer_finds_metric_names_only() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (job, instance) (rate(vigil_a_total{instance=~"$instance", x="y(z)"}[$__rate_interval]))"#
        ),
        ["vigil_a_total"]
    );
    assert_eq!(
        names("histogram_quantile(0.95, sum by (le) (rate(h_seconds_bucket[5m]))) > 0.1"),
        ["h_seconds_bucket"]
    );
    assert_eq!(
        names("a / on (x) group_left (y) b or c unless d and bool e offset 5m"),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(names("sum(x) without (inst) > 1e3"), ["x"]);
    assert_eq!(
        names(r#"topk(10, max by (fingerprint) (q{database=~"$database"}))"#),
        ["q"]
    );
    assert_eq!(names("up{job=~\"vigil.*\"} == 0"), ["up"]);
    // Not a metric: functions, label names, strings, template variables.
    assert!(names(r#"vector(1) + label_replace(m, "dst", "$1", "src", "(.*)")"#) == ["m"]);
    assert!(names("time() - $custom").is_empty());
}

#[test]
fn every_query_is_filtered_and_parseable_by_the_tokenizer() {
    let qs = obs::panel_queries();
    assert!(qs.len() >= 40, "only {} panel queries", qs.len());
    for q in &qs {
        assert!(
            !metric_names(&q.expr).is_empty(),
            "{} panel {} `{}`: no metric in {}",
            q.dashboard,
            q.panel_id,
            q.title,
            q.expr
        );
    }
    for (alert, expr) in obs::rule_exprs() {
        assert!(
            !metric_names(&expr).is_empty(),
            "{alert}: no metric in {expr}"
        );
    }
}

/// The manifests validate against the Kubernetes OpenAPI schemas in strict mode, and a
/// misspelled field is rejected (so the check can fail).
#[test]
fn kubernetes_manifests_match_the_schemas() {
    let Some(validate) = obs::tool("kubernetes-validate", "pip: kubernetes-validate") else {
        return;
    };
    let root = obs::root();
    let manifests: Vec<String> = obs::files("deploy/kubernetes", &[".yaml"])
        .into_iter()
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(manifests.len() >= 4, "{manifests:?}");
    let mut args = vec!["--strict", "--no-warn", "--quiet"];
    args.extend(manifests.iter().map(String::as_str));
    let (ok, out) = obs::run(&validate, &args, &root);
    assert!(ok, "kubernetes-validate:\n{out}");

    // Negative: the same Deployment with `replicas` misspelled, and with a wrong type.
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(root.join("deploy/kubernetes/incident.yaml")).unwrap();
    for (what, from, to) in [
        ("misspelled field", "replicas:", "replica:"),
        (
            "wrong type",
            "containerPort: 9400",
            "containerPort: \"nine\"",
        ),
    ] {
        assert!(good.contains(from), "incident.yaml has no `{from}`");
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, good.replacen(from, to, 1)).unwrap();
        let (ok, out) = obs::run(
            &validate,
            &["--strict", "--no-warn", bad.to_str().unwrap()],
            &root,
        );
        assert!(!ok, "kubernetes-validate accepted a {what}:\n{out}");
    }
}

/// Kustomize cannot read files outside deploy/kubernetes: its copies of the rules must match.
#[test]
fn kubernetes_rule_copies_match_the_repository_rules() {
    let root = obs::root();
    for (copy, orig) in [
        (
            "deploy/kubernetes/files/prometheus-rules.yml",
            "rules/prometheus/vigil.yml",
        ),
        (
            "deploy/kubernetes/files/heavy-queries.yaml",
            "rules/heavy-queries.yaml",
        ),
        (
            "deploy/kubernetes/files/incident/00-detection.yaml",
            "rules/incident/00-detection.yaml",
        ),
        (
            "deploy/kubernetes/files/incident/10-routes.yaml",
            "rules/incident/10-routes.yaml",
        ),
        (
            "deploy/kubernetes/files/incident/90-silences.yaml",
            "rules/incident/90-silences.yaml",
        ),
    ] {
        let a = std::fs::read(root.join(copy)).unwrap_or_else(|e| panic!("{copy}: {e}"));
        let b = std::fs::read(root.join(orig)).unwrap();
        assert!(a == b, "{copy} differs from {orig}: copy it again");
    }
}

/// Docker is not available in CI (nor on the build machine, which cannot pull images): the
/// compose stack is validated, not run. Services present, every bind-mounted path exists,
/// Prometheus's config passes `promtool check config` and its rule glob and Grafana's dashboard
/// folder resolve through the mounts to the repository's rules and dashboards, the admin token
/// Prometheus sends is the one Vigil gets, and Vigil's config passes `vigil check` in the
/// container's layout (its mounts rebuilt as symlinks, the compose secrets as environment).
#[test]
fn compose_stack_is_consistent() {
    let root = obs::root();
    let dir = root.join("deploy/compose");
    let text = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    let v: Value = serde_saphyr::from_str(&text).expect("docker-compose.yml is YAML");
    let services = v["services"].as_object().expect("services");
    for s in ["vigil", "crm", "postgres", "redis", "prometheus", "grafana"] {
        assert!(services.contains_key(s), "compose service `{s}` missing");
    }
    for (name, s) in services {
        for m in s["volumes"].as_array().into_iter().flatten() {
            let src = m.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                assert!(
                    dir.join(src).exists(),
                    "service {name}: {src} does not exist"
                );
            }
        }
    }
    let token = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("VIGIL_ADMIN_TOKEN: "))
        .expect("VIGIL_ADMIN_TOKEN in compose");
    let prom = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    assert!(
        prom.contains(&format!("credentials: {token}")),
        "prometheus.yml must send the admin token {token}"
    );
    let Some(promtool) = obs::tool("promtool", "prometheus") else {
        return;
    };
    let (ok, out) = obs::run(&promtool, &["check", "config", "prometheus.yml"], &dir);
    assert!(ok, "promtool check config:\n{out}");
}

/// Host path of `container_path` in a compose service, through its bind mounts.
fn compose_host_path(
    dir: &std::path::Path,
    service: &Value,
    container_path: &str,
) -> Option<std::path::PathBuf> {
    service["volumes"]
        .as_array()?
        .iter()
        .filter_map(|m| {
            let mut parts = m.as_str()?.split(':');
            let (src, target) = (parts.next()?, parts.next()?);
            let rest = container_path.strip_prefix(target)?;
            (src.starts_with('.') && (rest.is_empty() || rest.starts_with('/')))
                .then(|| dir.join(src).join(rest.trim_start_matches('/')))
        })
        .next()
}

#[test]
fn compose_mounts_resolve_and_vigil_config_passes_check() {
    let dir = obs::root().join("deploy/compose");
    let v: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap())
            .unwrap();
    let services = &v["services"];
    // Prometheus loads every rule file of the repository.
    let prom: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("prometheus.yml")).unwrap())
            .unwrap();
    for glob in prom["rule_files"].as_array().unwrap() {
        let glob = glob.as_str().unwrap();
        let folder = glob.rsplit_once('/').unwrap().0;
        let host = compose_host_path(&dir, &services["prometheus"], folder)
            .unwrap_or_else(|| panic!("prometheus: {folder} is not mounted"));
        let n = std::fs::read_dir(&host)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "yml"))
            .count();
        assert!(n >= 1, "{glob} -> {}: no rule files", host.display());
    }
    // Grafana's dashboard provider reads the repository's dashboards.
    let prov: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(
            obs::root().join("deploy/grafana/provisioning/dashboards/vigil.yml"),
        )
        .unwrap(),
    )
    .unwrap();
    let path = prov["providers"][0]["options"]["path"].as_str().unwrap();
    let host = compose_host_path(&dir, &services["grafana"], path)
        .unwrap_or_else(|| panic!("grafana: {path} is not mounted"));
    assert!(host.join("database.json").exists(), "{}", host.display());
    assert!(
        compose_host_path(
            &dir,
            &services["grafana"],
            "/etc/grafana/provisioning/dashboards"
        )
        .is_some_and(|p| p.join("vigil.yml").exists())
    );

    // Vigil: rebuild the container's file layout and run `vigil check` there.
    let vigil = &services["vigil"];
    let workdir = vigil["working_dir"].as_str().expect("vigil working_dir");
    let config = vigil["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("vigil --config")
        .to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for m in vigil["volumes"].as_array().unwrap() {
        let mut parts = m.as_str().unwrap().split(':');
        let (src, target) = (parts.next().unwrap(), parts.next().unwrap());
        let link = root.join(target.trim_start_matches('/'));
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(dir.join(src).canonicalize().unwrap(), &link).unwrap();
    }
    let cwd = root.join(workdir.trim_start_matches('/'));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.arg("check")
        .arg("--config")
        .arg(root.join(config.trim_start_matches('/')))
        .current_dir(&cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, val) in vigil["environment"].as_object().expect("vigil environment") {
        if k != "<<" {
            cmd.env(k, val.as_str().unwrap());
        }
    }
    for (k, val) in v["x-secrets"].as_object().expect("x-secrets") {
        cmd.env(k, val.as_str().unwrap());
    }
    let out = cmd.output().expect("run vigil check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "vigil check in the compose layout:\n{text}"
    );
    assert!(text.contains("configuration ok"), "{text}");

    // Negative: without the heavy-queries mount the same check fails (so the check can fail).
    std::fs::remove_file(cwd.join("rules/heavy-queries.yaml")).unwrap();
    let out = cmd.output().expect("run vigil check");
    assert!(
        !out.status.success(),
        "vigil check passed without the rules mount"
    );
}
