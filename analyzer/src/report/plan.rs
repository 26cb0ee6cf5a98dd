//! Query plans for reports: constant stripping (a plan's `Filter`/`Index Cond` strings carry the
//! literal values of the sampled parameters) and advice derived from `EXPLAIN (FORMAT JSON)`.
//!
//! The plan JSON is PostgreSQL's own output, optionally extended by the capturer with two keys on
//! the top object: `"Vigil Tables"` (`{table: {"rows": reltuples, "analyzed": bool}}`) and
//! `"Vigil Hypothetical"` (`[{"index": "...", "cost_before": x, "cost_after": y}]`, hypopg).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Replace every literal in an expression string with `?`: single-quoted strings (with `''`
/// escapes, and an optional `E`/`B`/`X`/`U&` prefix) and numbers that are not part of an
/// identifier or a `$n` placeholder. Double-quoted identifiers are kept exactly.
pub fn strip_literals(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            let start = i;
            i += 1;
            while i < b.len() {
                if b[i] == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            out.push_str(&s[start..i]);
        } else if c == b'\'' {
            // A string prefix (E'..', B'..', X'..', U&'..') was already copied: drop it.
            for p in ["U&", "E", "e", "B", "b", "X", "x"] {
                if out.ends_with(p) {
                    let before = out.len() - p.len();
                    let prev = out.as_bytes().get(before.wrapping_sub(1)).copied();
                    if before == 0 || !prev.is_some_and(ident) {
                        out.truncate(before);
                    }
                    break;
                }
            }
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            out.push('?');
        } else if c.is_ascii_digit() && (i == 0 || !ident(b[i - 1])) {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                if (b[i] == b'e' || b[i] == b'E') && matches!(b.get(i + 1), Some(b'+' | b'-')) {
                    i += 1;
                }
                i += 1;
            }
            out.push('?');
        } else {
            let ch = s[i..].chars().next().unwrap_or('?');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Strip literals from every string in a plan (keys are kept; numbers are estimates, not
/// customer data, and are kept).
pub fn sanitize_plan_value(v: &mut Value) {
    match v {
        Value::String(s) => *s = strip_literals(s),
        Value::Array(a) => a.iter_mut().for_each(sanitize_plan_value),
        Value::Object(o) => o.values_mut().for_each(sanitize_plan_value),
        _ => {}
    }
}

/// [`sanitize_plan_value`] on JSON text; `None` when it is not JSON.
pub fn sanitize_plan(json: &str) -> Option<String> {
    let mut v: Value = serde_json::from_str(json).ok()?;
    sanitize_plan_value(&mut v);
    serde_json::to_string(&v).ok()
}

/// What kind of problem a piece of advice addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdviceKind {
    /// A sequential scan of a large table keeping few of its rows.
    SeqScanFilter,
    /// A sort that probably spills to disk (larger than `work_mem`).
    SortSpill,
    /// A sort of a table scan that an index on the sort key could serve in order.
    SortIndex,
    /// A nested loop over many outer rows.
    NestedLoop,
    /// A table without planner statistics (never analyzed).
    MissingStatistics,
}

/// A hypopg check of a suggested index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HypoCheck {
    pub index: String,
    pub cost_before: f64,
    pub cost_after: f64,
}

/// One piece of advice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    pub kind: AdviceKind,
    pub table: Option<String>,
    pub columns: Vec<String>,
    /// What was seen, in one sentence.
    pub message: String,
    /// The suggested statement (`CREATE INDEX ON t (col)`, `ANALYZE t`).
    pub suggestion: Option<String>,
    /// The hypopg confirmation, when the capturer could run one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<HypoCheck>,
}

/// Thresholds of [`advise`].
#[derive(Debug, Clone, Copy)]
pub struct AdviceOptions {
    /// A scan is "large" from this many table rows.
    pub large_table_rows: f64,
    /// A filter is "selective" when it keeps at most this fraction of the table.
    pub selective_fraction: f64,
    /// Nested loops are flagged from this many outer rows.
    pub nested_loop_rows: f64,
    /// `work_mem` in bytes, for the spill estimate.
    pub work_mem_bytes: f64,
}

impl Default for AdviceOptions {
    fn default() -> Self {
        AdviceOptions {
            large_table_rows: 5_000.0,
            selective_fraction: 0.05,
            nested_loop_rows: 10_000.0,
            work_mem_bytes: 4.0 * 1024.0 * 1024.0,
        }
    }
}

/// The index suggestion text for a table and its columns.
pub fn index_statement(table: &str, columns: &[String]) -> String {
    format!("CREATE INDEX ON {table} ({})", columns.join(", "))
}

/// Columns compared in an expression (`((email)::text = ?)`, `(a.id > $1)`), in order of
/// appearance, without duplicates, only the ones that could be served by a btree index
/// (`=`, `<`, `<=`, `>`, `>=`, `~~` prefix, `IN`/`ANY`).
pub fn filter_columns(expr: &str) -> Vec<String> {
    let mut cols = Vec::new();
    let ops = [" = ", " < ", " <= ", " > ", " >= ", " ~~ ", " = ANY "];
    let mut pos = 0;
    while pos < expr.len() {
        let next = ops
            .iter()
            .filter_map(|op| expr[pos..].find(op).map(|i| (pos + i, op.len())))
            .min_by_key(|(i, _)| *i);
        let Some((at, len)) = next else { break };
        if let Some(col) = left_column(&expr[..at])
            && !cols.contains(&col)
        {
            cols.push(col);
        }
        pos = at + len;
    }
    cols
}

/// The column just before an operator: skips closing parentheses and `::type` casts.
fn left_column(left: &str) -> Option<String> {
    let mut t = left.trim_end();
    loop {
        // Drop a trailing cast `::text`, `::character varying`.
        if let Some(i) = t.rfind("::") {
            let tail = &t[i + 2..];
            if tail
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '"')
            {
                t = t[..i].trim_end();
                continue;
            }
        }
        if let Some(s) = t.strip_suffix(')') {
            t = s.trim_end();
            continue;
        }
        break;
    }
    let start = t
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '"'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &t[start..];
    let word = word.rsplit('.').next().unwrap_or(word);
    let valid = !word.is_empty()
        && !word.starts_with('$')
        && !word.starts_with('?')
        && !word.chars().next().is_some_and(|c| c.is_ascii_digit());
    valid.then(|| word.to_string())
}

struct Walk<'a> {
    opts: &'a AdviceOptions,
    tables: &'a serde_json::Map<String, Value>,
    out: Vec<Advice>,
}

fn f(node: &Value, key: &str) -> f64 {
    node.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn s<'v>(node: &'v Value, key: &str) -> Option<&'v str> {
    node.get(key).and_then(Value::as_str)
}

impl Walk<'_> {
    fn table_rows(&self, table: &str) -> Option<f64> {
        self.tables
            .get(table)
            .and_then(|t| t.get("rows"))
            .and_then(Value::as_f64)
            .filter(|r| *r >= 0.0)
    }

    fn node(&mut self, n: &Value, parent: Option<&Value>) {
        let kind = s(n, "Node Type").unwrap_or("");
        let rel = s(n, "Relation Name");
        match kind {
            "Seq Scan" | "Parallel Seq Scan" => {
                if let (Some(table), Some(filter)) = (rel, s(n, "Filter")) {
                    let est_rows =
                        f(n, "Plan Rows").max(1.0) * (1.0 + f(n, "Workers Planned").max(0.0));
                    let total = self.table_rows(table);
                    let large = total.is_some_and(|t| t >= self.opts.large_table_rows);
                    let selective =
                        total.is_some_and(|t| est_rows <= t * self.opts.selective_fraction);
                    let cols = filter_columns(filter);
                    if large && selective && !cols.is_empty() {
                        let t = total.unwrap_or_default();
                        self.out.push(Advice {
                            kind: AdviceKind::SeqScanFilter,
                            table: Some(table.to_string()),
                            message: format!(
                                "sequential scan of {table} (~{t:.0} rows) keeps ~{est_rows:.0} rows under filter {filter}"
                            ),
                            suggestion: Some(index_statement(table, &cols)),
                            columns: cols,
                            confirmed: None,
                        });
                    }
                }
            }
            "Sort" => {
                let bytes = f(n, "Plan Rows") * f(n, "Plan Width").max(1.0);
                if bytes > self.opts.work_mem_bytes {
                    self.out.push(Advice {
                        kind: AdviceKind::SortSpill,
                        table: None,
                        columns: vec![],
                        message: format!(
                            "sort of ~{:.0} rows (~{:.1} MiB) is larger than work_mem and likely spills to disk",
                            f(n, "Plan Rows"),
                            bytes / 1048576.0
                        ),
                        suggestion: None,
                        confirmed: None,
                    });
                }
                let child = n
                    .get("Plans")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first());
                let limited = parent.is_some_and(|p| s(p, "Node Type") == Some("Limit"));
                if let Some(c) = child
                    && limited
                    && matches!(s(c, "Node Type"), Some("Seq Scan"))
                    && let Some(table) = s(c, "Relation Name")
                    && self
                        .table_rows(table)
                        .is_some_and(|t| t >= self.opts.large_table_rows)
                {
                    let keys: Vec<String> = n
                        .get("Sort Key")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .filter_map(|k| {
                                    let k = k.trim_end_matches(" DESC").trim();
                                    left_column(k).filter(|c| {
                                        c.len() == k.rsplit('.').next().unwrap_or(k).len()
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        self.out.push(Advice {
                            kind: AdviceKind::SortIndex,
                            table: Some(table.to_string()),
                            message: format!(
                                "top-N sort over a full scan of {table}; an index on the sort key returns rows in order"
                            ),
                            suggestion: Some(index_statement(table, &keys)),
                            columns: keys,
                            confirmed: None,
                        });
                    }
                }
            }
            "Nested Loop" => {
                let outer = n
                    .get("Plans")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .map(|c| f(c, "Plan Rows"))
                    .unwrap_or_default();
                if outer >= self.opts.nested_loop_rows {
                    self.out.push(Advice {
                        kind: AdviceKind::NestedLoop,
                        table: None,
                        columns: vec![],
                        message: format!(
                            "nested loop over ~{outer:.0} outer rows; check the join columns are indexed and statistics are current"
                        ),
                        suggestion: None,
                        confirmed: None,
                    });
                }
            }
            _ => {}
        }
        if let Some(children) = n.get("Plans").and_then(Value::as_array) {
            for c in children {
                self.node(c, Some(n));
            }
        }
    }
}

/// Advice from an `EXPLAIN (FORMAT JSON)` document (the array PostgreSQL prints, or its first
/// element). Hypothetical-index checks found in the document are attached to the matching index
/// suggestion. Unknown or malformed input gives no advice.
pub fn advise(plan_json: &str, opts: &AdviceOptions) -> Vec<Advice> {
    let Ok(v) = serde_json::from_str::<Value>(plan_json) else {
        return vec![];
    };
    let top = match &v {
        Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    let empty = serde_json::Map::new();
    let tables = top
        .get("Vigil Tables")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut w = Walk {
        opts,
        tables,
        out: vec![],
    };
    if let Some(plan) = top.get("Plan") {
        w.node(plan, None);
    }
    let mut out = w.out;
    for (name, t) in tables {
        if t.get("analyzed").and_then(Value::as_bool) == Some(false) {
            out.push(Advice {
                kind: AdviceKind::MissingStatistics,
                table: Some(name.clone()),
                columns: vec![],
                message: format!(
                    "{name} has never been analyzed; the planner is guessing its size"
                ),
                suggestion: Some(format!("ANALYZE {name}")),
                confirmed: None,
            });
        }
    }
    let checks: Vec<HypoCheck> = top
        .get("Vigil Hypothetical")
        .cloned()
        .and_then(|h| serde_json::from_value(h).ok())
        .unwrap_or_default();
    for a in &mut out {
        if let Some(sug) = &a.suggestion {
            // Confirmed only when the hypothetical index lowers the plan's cost.
            a.confirmed = checks
                .iter()
                .find(|c| &c.index == sug && c.cost_after < c.cost_before)
                .cloned();
        }
    }
    out
}

/// Total cost of the plan's top node.
pub fn plan_cost(plan_json: &str) -> Option<f64> {
    let v: Value = serde_json::from_str(plan_json).ok()?;
    let top = match &v {
        Value::Array(a) => a.first()?,
        other => other,
    };
    top.get("Plan")?.get("Total Cost")?.as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_stripped_identifiers_kept() {
        assert_eq!(
            strip_literals("((email)::text = 'marker@example.com'::text)"),
            "((email)::text = ?::text)"
        );
        assert_eq!(
            strip_literals("(id = 42) AND (t1.x > -3.5e+2)"),
            "(id = ?) AND (t1.x > -?)"
        );
        assert_eq!(strip_literals("(\"Na'me\" = E'it''s')"), "(\"Na'me\" = ?)");
        assert_eq!(
            strip_literals("(a = $1) OR (b2 = $12)"),
            "(a = $1) OR (b2 = $12)"
        );
        assert_eq!(
            strip_literals("(x = ANY ('{1,2}'::integer[]))"),
            "(x = ANY (?::integer[]))"
        );
    }

    #[test]
    fn filter_columns_are_found() {
        assert_eq!(filter_columns("((email)::text = ?::text)"), vec!["email"]);
        assert_eq!(
            filter_columns("((c.owner_id = $1) AND (c.stage > ?))"),
            vec!["owner_id", "stage"]
        );
        assert!(filter_columns("(? = ?)").is_empty());
    }

    const SEQ: &str = r#"[{"Plan":{"Node Type":"Seq Scan","Relation Name":"contacts","Alias":"contacts",
        "Startup Cost":0.0,"Total Cost":2041.0,"Plan Rows":1,"Plan Width":64,
        "Filter":"((email)::text = 'marker@example.com'::text)"},
        "Vigil Tables":{"contacts":{"rows":100000,"analyzed":true},"deals":{"rows":-1,"analyzed":false}},
        "Vigil Hypothetical":[{"index":"CREATE INDEX ON contacts (email)","cost_before":2041.0,"cost_after":8.3}]}]"#;

    #[test]
    fn seq_scan_under_selective_filter_suggests_an_index_confirmed_by_hypopg() {
        let a = advise(SEQ, &AdviceOptions::default());
        let seq = a
            .iter()
            .find(|a| a.kind == AdviceKind::SeqScanFilter)
            .unwrap();
        assert_eq!(
            seq.suggestion.as_deref(),
            Some("CREATE INDEX ON contacts (email)")
        );
        assert_eq!(seq.confirmed.as_ref().unwrap().cost_after, 8.3);
        assert!(a.iter().any(
            |a| a.kind == AdviceKind::MissingStatistics && a.table.as_deref() == Some("deals")
        ));
        let clean = sanitize_plan(SEQ).unwrap();
        assert!(!clean.contains("marker"), "{clean}");
        assert_eq!(plan_cost(SEQ), Some(2041.0));
    }

    #[test]
    fn small_tables_and_unselective_filters_get_no_index_advice() {
        let small = SEQ.replace("\"rows\":100000", "\"rows\":100");
        assert!(
            !advise(&small, &AdviceOptions::default())
                .iter()
                .any(|a| a.kind == AdviceKind::SeqScanFilter)
        );
        let wide = SEQ.replace("\"Plan Rows\":1,", "\"Plan Rows\":90000,");
        assert!(
            !advise(&wide, &AdviceOptions::default())
                .iter()
                .any(|a| a.kind == AdviceKind::SeqScanFilter)
        );
    }

    #[test]
    fn sorts_and_nested_loops() {
        let plan = r#"{"Plan":{"Node Type":"Limit","Plans":[{"Node Type":"Sort","Plan Rows":200000,
            "Plan Width":100,"Sort Key":["created_at DESC"],"Plans":[{"Node Type":"Seq Scan",
            "Relation Name":"activities","Plan Rows":200000}]}]},
            "Vigil Tables":{"activities":{"rows":200000,"analyzed":true}}}"#;
        let a = advise(plan, &AdviceOptions::default());
        assert!(a.iter().any(|a| a.kind == AdviceKind::SortSpill));
        let si = a.iter().find(|a| a.kind == AdviceKind::SortIndex).unwrap();
        assert_eq!(
            si.suggestion.as_deref(),
            Some("CREATE INDEX ON activities (created_at)")
        );
        let nl = r#"{"Plan":{"Node Type":"Nested Loop","Plans":[{"Node Type":"Seq Scan","Plan Rows":50000},
            {"Node Type":"Index Scan","Plan Rows":1}]}}"#;
        assert!(
            advise(nl, &AdviceOptions::default())
                .iter()
                .any(|a| a.kind == AdviceKind::NestedLoop)
        );
        assert!(advise("not json", &AdviceOptions::default()).is_empty());
    }
}
