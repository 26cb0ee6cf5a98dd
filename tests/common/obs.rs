//! Observability test helpers: the PromQL expressions of `dashboards/*.json` and
//! `rules/prometheus/*.yml`, a small PromQL tokenizer that pulls metric names out of them, and
//! the `promtool` / `prometheus` binaries (skipped with a reason when missing, unless `CI=true`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files in `dir` (relative to the root) whose name ends with one of `exts`, sorted.
pub fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            p.is_file() && exts.iter().any(|x| name.ends_with(x))
        })
        .collect();
    out.sort();
    out
}

/// One dashboard panel query.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel_id: u64,
    pub title: String,
    pub ref_id: String,
    pub expr: String,
}

fn walk_panels<'a>(panels: &'a [Value], out: &mut Vec<&'a Value>) {
    for p in panels {
        out.push(p);
        if let Some(inner) = p.get("panels").and_then(Value::as_array) {
            walk_panels(inner, out);
        }
    }
}

/// Every panel of a dashboard, rows' nested panels included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    if let Some(ps) = dashboard.get("panels").and_then(Value::as_array) {
        walk_panels(ps, &mut out);
    }
    out
}

/// Every dashboard as (file name, parsed JSON).
pub fn dashboards() -> Vec<(String, Value)> {
    files("dashboards", &[".json"])
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not valid JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect()
}

/// Every panel query of every dashboard.
pub fn panel_queries() -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for (name, d) in dashboards() {
        for p in panels(&d) {
            for t in p
                .get("targets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(expr) = t.get("expr").and_then(Value::as_str) {
                    out.push(PanelQuery {
                        dashboard: name.clone(),
                        panel_id: p["id"].as_u64().unwrap_or(0),
                        title: p["title"].as_str().unwrap_or("").to_owned(),
                        ref_id: t["refId"].as_str().unwrap_or("").to_owned(),
                        expr: expr.to_owned(),
                    });
                }
            }
        }
    }
    out
}

/// The PromQL inside the dashboards' template variables (`label_values(SELECTOR, label)`: the
/// selector part).
pub fn variable_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, d) in dashboards() {
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let q = match &v["query"] {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("query")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                _ => continue,
            };
            if v["type"] != "query" {
                continue;
            }
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .and_then(|s| s.rsplit_once(','))
                .map(|(sel, _label)| sel.trim().to_owned())
                .unwrap_or(q);
            out.push((format!("{name} variable {}", v["name"]), inner));
        }
    }
    out
}

/// Every alert/record expression of `rules/prometheus/*.yml` as (alert name, expr).
pub fn rule_exprs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in files("rules/prometheus", &[".yml", ".yaml"]) {
        let text = std::fs::read_to_string(&p).unwrap();
        let v: Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", p.display()));
        for g in v["groups"].as_array().expect("groups") {
            for r in g["rules"].as_array().expect("rules") {
                let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
                out.push((
                    name.to_owned(),
                    r["expr"].as_str().expect("expr").to_owned(),
                ));
            }
        }
    }
    out
}

const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
];

/// Keywords whose parenthesized argument is a list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Metric names a PromQL expression selects: identifiers that are not functions or aggregations
/// (followed by `(`), keywords, label names (inside `{}` or `by (...)`), strings, durations
/// (inside `[]`) or numbers.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let mut skip_label_list = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                while i < b.len() && b[i] != close {
                    if b[i] == b'"' {
                        i += 1;
                        while i < b.len() && b[i] != b'"' {
                            if b[i] == b'\\' {
                                i += 1;
                            }
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            b'(' if skip_label_list => {
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
                i += 1;
                skip_label_list = false;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            _ if c.is_ascii_digit() || c == b'.' => {
                // Numbers, including 1e3 and 0x1f: consume alphanumerics.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' || c == b'$' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_:$".contains(&b[i])) {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let lower = word.to_ascii_lowercase();
                skip_label_list = false;
                if LABEL_LISTS.contains(&lower.as_str()) {
                    skip_label_list = true;
                } else if word.starts_with('$')
                    || KEYWORDS.contains(&lower.as_str())
                    || (j < b.len() && b[j] == b'(')
                {
                    // a template variable, keyword, function or aggregation
                } else {
                    out.insert(word.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Sample names in a Prometheus text exposition (`name{...} value` and `name value` lines).
pub fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Names Prometheus itself adds to every target.
pub const SYNTHETIC: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// A system binary by name: `Some(path)`, or `None` after printing why the caller skips. With
/// `CI=true` a missing binary is a failure.
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "{name} is missing and CI=true: install the Debian package `{package}` (.ci/run does)"
        );
        eprintln!("SKIPPED: {name} not found (apt-get install -y {package})");
    }
    found
}

/// Run a binary; returns (success, stdout + stderr).
pub fn run(bin: &Path, args: &[&str], dir: &Path) -> (bool, String) {
    let out = std::process::Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The value of one exported sample (`name{labels} value` or `name value`), if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Whether a query result holds at least one finite value.
pub fn has_data(result: &Value) -> bool {
    result.as_array().into_iter().flatten().any(|s| {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    })
}
