//! HTML rendering of a [`Report`]: one self-contained file, inline CSS, inline SVG sparklines and
//! share bars, no JavaScript, no external assets; a fluid single column that reads on a phone.
//! Every text from the data is escaped.

use std::fmt::Write;

use super::markdown::{change, dur, time};
use super::{Origin, Report, Statement};

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// An inline SVG sparkline of `values` (scaled to its maximum).
pub fn sparkline(values: &[f64]) -> String {
    let (w, h) = (120.0, 24.0);
    let max = values.iter().cloned().fold(0.0_f64, f64::max);
    if values.len() < 2 || max <= 0.0 {
        return format!(
            "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"no trend\"></svg>"
        );
    }
    let step = w / (values.len() - 1) as f64;
    let pts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 2.0 - v / max * (h - 4.0)
            )
        })
        .collect();
    format!(
        "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"trend\"><polyline fill=\"none\" stroke=\"#2563eb\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        pts.join(" ")
    )
}

/// An inline SVG bar for a share 0..1.
pub fn bar(share: f64) -> String {
    let w = (share.clamp(0.0, 1.0) * 100.0).max(0.5);
    format!(
        "<svg class=\"bar\" width=\"100\" height=\"10\" viewBox=\"0 0 100 10\" role=\"img\" aria-label=\"{:.0}%\"><rect width=\"100\" height=\"10\" fill=\"#e5e7eb\"/><rect width=\"{w:.1}\" height=\"10\" fill=\"#dc2626\"/></svg>",
        share * 100.0
    )
}

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#111827;background:#f9fafb}\
main{max-width:1100px;margin:0 auto;padding:16px}h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #e5e7eb}\
.kpis{display:flex;flex-wrap:wrap;gap:8px}.kpi{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px;flex:1 1 140px}\
.kpi b{display:block;font-size:1.3em}.wrap{overflow-x:auto}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{border-bottom:1px solid #e5e7eb;padding:6px;text-align:left;vertical-align:top}th{background:#f3f4f6;font-weight:600}\
code{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;word-break:break-word}.muted{color:#6b7280}.up{color:#b91c1c;font-weight:600}\
.down{color:#15803d;font-weight:600}.tag{display:inline-block;background:#eef2ff;border-radius:4px;padding:0 4px;margin:1px;font-size:12px}\
details{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:8px;margin:8px 0}summary{cursor:pointer}\
pre{white-space:pre-wrap;word-break:break-word;font-size:12px;max-height:320px;overflow:auto;background:#f3f4f6;padding:6px}\
@media (max-width:640px){main{padding:8px}th,td{padding:4px;font-size:12px}.hide-s{display:none}}";

fn change_html(s: &Statement, compare: bool) -> String {
    match (&s.previous, compare) {
        (Some(p), _) => {
            let c = |b: f64, a: f64| {
                let class = if b > 0.0 && a >= b * 1.2 {
                    "up"
                } else if a < b * 0.8 {
                    "down"
                } else {
                    "muted"
                };
                format!("<span class=\"{class}\">{}</span>", esc(&change(b, a)))
            };
            format!(
                "total {}<br>p95 {}",
                c(p.total_seconds, s.total_seconds),
                c(p.p95_seconds, s.p95_seconds)
            )
        }
        (None, true) if s.origin == Origin::Proxy => "<span class=\"tag\">new</span>".into(),
        _ => "<span class=\"muted\">–</span>".into(),
    }
}

fn table(out: &mut String, r: &Report, title: &str, fps: &[String]) {
    if fps.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<h3>{}</h3><div class=\"wrap\"><table><tr><th>#</th><th>statement</th><th>total</th><th class=\"hide-s\">share</th><th>calls</th><th>p95</th><th class=\"hide-s\">rows</th><th class=\"hide-s\">errors</th><th class=\"hide-s\">trend</th><th>change</th></tr>",
        esc(title)
    );
    for (i, fp) in fps.iter().enumerate() {
        let Some(s) = r.statement(fp) else { continue };
        let routes: String = s
            .routes
            .iter()
            .map(|x| format!("<span class=\"tag\">{}</span>", esc(x)))
            .collect();
        let outside = if s.origin == Origin::OutsideProxy {
            " <span class=\"tag\">outside proxy</span>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code>{outside}<br>{routes}</td><td>{}</td><td class=\"hide-s\">{} {:.0}%</td><td>{}</td><td>{}</td><td class=\"hide-s\">{}</td><td class=\"hide-s\">{}</td><td class=\"hide-s\">{}</td><td>{}</td></tr>",
            i + 1,
            esc(&s.query),
            esc(&dur(s.total_seconds)),
            bar(s.share),
            s.share * 100.0,
            s.calls,
            if s.origin == Origin::Proxy {
                esc(&dur(s.p95_seconds))
            } else {
                "–".into()
            },
            s.rows,
            s.errors,
            sparkline(&s.trend),
            change_html(s, r.compare.is_some()),
        );
    }
    out.push_str("</table></div>");
}

/// Render as one self-contained HTML document.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Vigil heavy-query report</title><style>{CSS}</style></head><body><main><h1>Vigil heavy-query report</h1><p class=\"muted\">{} – {} UTC",
        esc(&time(r.period.from_ms)),
        esc(&time(r.period.to_ms))
    );
    if let Some(c) = r.compare {
        let _ = write!(
            o,
            " · compared with {} – {} UTC",
            esc(&time(c.from_ms)),
            esc(&time(c.to_ms))
        );
    }
    o.push_str("</p><div class=\"kpis\">");
    let t = &r.totals;
    let kpi = |o: &mut String, label: &str, v: String| {
        let _ = write!(
            o,
            "<div class=\"kpi\"><span class=\"muted\">{}</span><b>{}</b></div>",
            esc(label),
            esc(&v)
        );
    };
    kpi(&mut o, "database time", dur(t.total_seconds));
    kpi(&mut o, "calls", t.calls.to_string());
    kpi(&mut o, "statements", t.statements.to_string());
    kpi(&mut o, "errors", t.errors.to_string());
    kpi(&mut o, "pool wait", dur(t.pool_wait_seconds));
    if let Some(h) = r.cache.hit_rate {
        kpi(&mut o, "cache hit rate", format!("{:.0}%", h * 100.0));
    }
    if let Some(c) = &r.compare_totals {
        kpi(
            &mut o,
            "time vs compare",
            change(c.total_seconds, t.total_seconds),
        );
    }
    o.push_str("</div><h2>Top statements</h2>");
    table(&mut o, r, "By total time", &r.top_total_time);
    table(&mut o, r, "By p95 latency", &r.top_p95);
    table(&mut o, r, "By calls", &r.top_calls);
    table(&mut o, r, "By rows", &r.top_rows);
    table(&mut o, r, "By errors", &r.top_errors);
    table(
        &mut o,
        r,
        "By time waiting for a pooled connection",
        &r.top_pool_wait,
    );
    if !r.outside_proxy.is_empty() {
        o.push_str("<h2>Outside the proxy</h2><p class=\"muted\">From pg_stat_statements (cron jobs, other clients): ");
        o.push_str(super::pgss::describe(r.pgss_source));
        o.push_str("</p>");
        table(&mut o, r, "By total time", &r.outside_proxy);
    }

    o.push_str("<h2>Regressions</h2>");
    if r.regressions.is_empty() {
        o.push_str("<p class=\"muted\">None beyond the threshold.</p>");
    } else {
        o.push_str("<div class=\"wrap\"><table><tr><th>statement</th><th>metric</th><th>before</th><th>after</th><th>factor</th><th class=\"hide-s\">scope</th></tr>");
        for g in &r.regressions {
            let q = r
                .statement(&g.fingerprint)
                .map(|s| s.query.clone())
                .unwrap_or_default();
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"up\">{:.1}x</td><td class=\"hide-s\">{}</td></tr>",
                esc(&q),
                esc(&g.metric),
                esc(&dur(g.before)),
                esc(&dur(g.after)),
                g.factor,
                esc(if g.scope == "compare" {
                    "vs comparison period"
                } else {
                    "second half vs first"
                })
            );
        }
        o.push_str("</table></div>");
    }
    if r.compare.is_some() {
        o.push_str("<h2>New statements</h2>");
        if r.new_statements.is_empty() {
            o.push_str("<p class=\"muted\">None.</p>");
        } else {
            table(
                &mut o,
                r,
                "Not seen in the comparison period",
                &r.new_statements,
            );
        }
    }
    let c = &r.cache;
    o.push_str("<h2>Cache</h2>");
    match c.hit_rate {
        Some(h) => {
            let _ = write!(
                o,
                "<p>Hit rate <b>{:.0}%</b> ({} hits, {} misses); database time saved <b>{}</b>.</p>",
                h * 100.0,
                c.hits,
                c.misses,
                esc(&dur(c.saved_seconds))
            );
        }
        None => o.push_str("<p class=\"muted\">No cached statements in this period.</p>"),
    }
    if !c.candidates.is_empty() {
        o.push_str("<div class=\"wrap\"><table><tr><th>cache candidate (read-only, no volatile functions, hot, not cached)</th><th>calls</th><th>would save up to</th></tr>");
        for k in &c.candidates {
            let q = r
                .statement(&k.fingerprint)
                .map(|s| s.query.clone())
                .unwrap_or_default();
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&q),
                k.calls,
                esc(&dur(k.saved_up_to_seconds))
            );
        }
        o.push_str("</table></div>");
    }
    o.push_str("<h2>Plans and advice</h2>");
    let mut any = false;
    for s in &r.statements {
        if s.plan.is_none() && s.advice.is_empty() {
            continue;
        }
        any = true;
        let _ = write!(
            o,
            "<details open><summary><code>{}</code></summary><ul>",
            esc(&s.query)
        );
        for a in &s.advice {
            let _ = write!(o, "<li>{}", esc(&a.message));
            if let Some(x) = &a.suggestion {
                let _ = write!(o, " → <code>{}</code>", esc(x));
            }
            if let Some(h) = &a.confirmed {
                let _ = write!(
                    o,
                    " <span class=\"down\">confirmed with hypopg: cost {:.0} → {:.0}</span>",
                    h.cost_before, h.cost_after
                );
            }
            o.push_str("</li>");
        }
        if s.advice.is_empty() {
            o.push_str("<li class=\"muted\">no advice from this plan</li>");
        }
        o.push_str("</ul>");
        if let Some(p) = &s.plan {
            let text = serde_json::to_string_pretty(p).unwrap_or_default();
            let _ = write!(
                o,
                "<details><summary>plan (literals removed)</summary><pre>{}</pre></details>",
                esc(&text)
            );
        }
        o.push_str("</details>");
    }
    if !any {
        o.push_str("<p class=\"muted\">No plans captured in this period (plans are captured for the heaviest read statements).</p>");
    }
    let _ = write!(
        o,
        "<p class=\"muted\">Generated {} UTC by Vigil. Statement texts are normalized: constants and parameter values are never stored.</p></main></body></html>",
        esc(&time(r.generated_at_ms))
    );
    o
}
