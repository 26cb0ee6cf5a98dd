//! Markdown rendering of a [`Report`]: headline numbers, top tables, regressions, new
//! statements, cache, advice. Made for pasting into a planning document.

use std::fmt::Write;

use super::{Origin, Report, Statement};

/// Seconds as a short human duration.
pub fn dur(s: f64) -> String {
    // Sums of nothing are -0.0; durations are never negative.
    let s = s.max(0.0) + 0.0;
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.2} ms", s * 1000.0)
    }
}

/// A change factor as text (`2.3x`, `-45%`).
pub fn change(before: f64, after: f64) -> String {
    if before <= 0.0 {
        return if after > 0.0 { "new" } else { "–" }.into();
    }
    let r = after / before;
    if r >= 2.0 {
        format!("{r:.1}x")
    } else {
        format!("{:+.0}%", (r - 1.0) * 100.0)
    }
}

/// UTC time of epoch milliseconds, `YYYY-MM-DD HH:MM`.
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn short(q: &str, n: usize) -> String {
    let q: String = q.split_whitespace().collect::<Vec<_>>().join(" ");
    if q.chars().count() > n {
        let cut: String = q.chars().take(n).collect();
        format!("{cut}…")
    } else {
        q
    }
}

fn table(out: &mut String, r: &Report, title: &str, fps: &[String]) {
    if fps.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n### {title}\n");
    let _ = writeln!(
        out,
        "| # | statement | total | share | calls | p95 | rows | errors | routes | change |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for (i, fp) in fps.iter().enumerate() {
        let Some(s) = r.statement(fp) else { continue };
        let _ = writeln!(
            out,
            "| {} | `{}`{} | {} | {:.0}% | {} | {} | {} | {} | {} | {} |",
            i + 1,
            cell(&short(&s.query, 90)),
            if s.origin == Origin::OutsideProxy {
                " (outside proxy)"
            } else {
                ""
            },
            dur(s.total_seconds),
            s.share * 100.0,
            s.calls,
            if s.origin == Origin::Proxy {
                dur(s.p95_seconds)
            } else {
                "–".into()
            },
            s.rows,
            s.errors,
            cell(&s.routes.join(", ")),
            change_cell(s, r.compare.is_some()),
        );
    }
}

fn change_cell(s: &Statement, compare: bool) -> String {
    match (&s.previous, compare) {
        (Some(p), _) => format!(
            "total {}, p95 {}",
            change(p.total_seconds, s.total_seconds),
            change(p.p95_seconds, s.p95_seconds)
        ),
        (None, true) if s.origin == Origin::Proxy => "new".into(),
        _ => "–".into(),
    }
}

/// Render as Markdown.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Vigil heavy-query report\n\nPeriod: {} – {} UTC",
        time(r.period.from_ms),
        time(r.period.to_ms)
    );
    if let Some(c) = r.compare {
        let _ = writeln!(
            out,
            "Compared with: {} – {} UTC",
            time(c.from_ms),
            time(c.to_ms)
        );
    }
    let t = &r.totals;
    let _ = writeln!(
        out,
        "\n- Database time through the proxy: **{}** in {} calls ({} statements, {} errors)\n- Time lost waiting for a pooled connection: **{}**",
        dur(t.total_seconds),
        t.calls,
        t.statements,
        t.errors,
        dur(t.pool_wait_seconds)
    );
    if let Some(c) = &r.compare_totals {
        let _ = writeln!(
            out,
            "- Against the comparison period: database time {}, calls {}",
            change(c.total_seconds, t.total_seconds),
            change(c.calls as f64, t.calls as f64)
        );
    }
    let _ = writeln!(out, "\n## Top statements");
    table(&mut out, r, "By total time", &r.top_total_time);
    table(&mut out, r, "By p95 latency", &r.top_p95);
    table(&mut out, r, "By calls", &r.top_calls);
    table(&mut out, r, "By rows", &r.top_rows);
    table(&mut out, r, "By errors", &r.top_errors);
    table(
        &mut out,
        r,
        "By time waiting for a pooled connection",
        &r.top_pool_wait,
    );
    if !r.outside_proxy.is_empty() {
        let _ = writeln!(
            out,
            "\n## Outside the proxy\n\nFrom `pg_stat_statements` (cron jobs, other clients): {}",
            super::pgss::describe(r.pgss_source)
        );
        table(&mut out, r, "By total time", &r.outside_proxy);
    }

    let _ = writeln!(out, "\n## Regressions\n");
    if r.regressions.is_empty() {
        let _ = writeln!(out, "None beyond the threshold.");
    }
    for g in &r.regressions {
        let q = r
            .statement(&g.fingerprint)
            .map(|s| short(&s.query, 90))
            .unwrap_or_default();
        let what = if g.scope == "compare" {
            "against the comparison period"
        } else {
            "second half of the period against the first"
        };
        let _ = writeln!(
            out,
            "- `{}` ({}): {} {} → {} (**{:.1}x**, {what})",
            cell(&q),
            g.fingerprint,
            g.metric,
            dur(g.before),
            dur(g.after),
            g.factor
        );
    }
    if r.compare.is_some() {
        let _ = writeln!(out, "\n## New statements\n");
        if r.new_statements.is_empty() {
            let _ = writeln!(out, "None.");
        }
        for fp in &r.new_statements {
            if let Some(s) = r.statement(fp) {
                let _ = writeln!(
                    out,
                    "- `{}`: {} in {} calls",
                    cell(&short(&s.query, 90)),
                    dur(s.total_seconds),
                    s.calls
                );
            }
        }
    }
    let c = &r.cache;
    let _ = writeln!(out, "\n## Cache\n");
    match c.hit_rate {
        Some(h) => {
            let _ = writeln!(
                out,
                "- Hit rate {:.0}% ({} hits, {} misses), database time saved {}",
                h * 100.0,
                c.hits,
                c.misses,
                dur(c.saved_seconds)
            );
        }
        None => {
            let _ = writeln!(out, "- No cached statements in this period.");
        }
    }
    for k in &c.candidates {
        if let Some(s) = r.statement(&k.fingerprint) {
            let _ = writeln!(
                out,
                "- Candidate: `{}`: {} calls, would save up to {}",
                cell(&short(&s.query, 90)),
                k.calls,
                dur(k.saved_up_to_seconds)
            );
        }
    }
    let _ = writeln!(out, "\n## Advice\n");
    let mut any = false;
    for s in &r.statements {
        for a in &s.advice {
            any = true;
            let confirmed = a
                .confirmed
                .as_ref()
                .map(|h| format!(" (hypopg: cost {:.0} → {:.0})", h.cost_before, h.cost_after))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- `{}`: {}{}{}",
                cell(&short(&s.query, 70)),
                cell(&a.message),
                a.suggestion
                    .as_ref()
                    .map(|x| format!(" → `{x}`"))
                    .unwrap_or_default(),
                confirmed
            );
        }
    }
    if !any {
        let _ = writeln!(
            out,
            "No plan-based advice (plans are captured for the heaviest read statements)."
        );
    }
    out
}
