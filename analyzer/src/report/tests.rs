//! Unit tests of the report model and renderers.

use super::*;

fn b(fp: &str, q: &str, t_ms: i64, calls: u64, total: f64, p95: f64) -> Bucket {
    Bucket {
        fingerprint: fp.into(),
        query: q.into(),
        database: "crm".into(),
        role: "app".into(),
        bucket_ms: t_ms,
        calls,
        total_seconds: total,
        p95_seconds: p95,
        max_seconds: p95 * 2.0,
        rows: calls,
        ..Default::default()
    }
}

const MIN: i64 = 60_000;

#[test]
fn ranks_by_total_time_names_routes_and_flags_regressions() {
    let mut slow = b(
        "aa",
        "SELECT * FROM contacts WHERE email = $1",
        0,
        10,
        5.0,
        0.5,
    );
    slow.tags.insert("route".into(), "/contacts/search".into());
    let mut cur = vec![slow];
    // "bb" is 10x slower in the second half of the period.
    for m in 0..10 {
        let f = if m >= 5 { 10.0 } else { 1.0 };
        cur.push(b(
            "bb",
            "SELECT * FROM deals WHERE id = $1",
            m * MIN,
            100,
            0.01 * f * 100.0,
            0.01 * f,
        ));
    }
    let input = ReportInput {
        period: Some(Period {
            from_ms: 0,
            to_ms: 10 * MIN,
        }),
        current: cur,
        ..Default::default()
    };
    let r = build(&input, &ReportOptions::default());
    assert_eq!(r.top_total_time[0], "bb");
    let aa = r.statement("aa").unwrap();
    assert_eq!(aa.routes, vec!["/contacts/search"]);
    let reg = r
        .regressions
        .iter()
        .find(|g| g.fingerprint == "bb")
        .unwrap();
    assert_eq!(reg.scope, "within_period");
    assert!(reg.factor >= 9.0, "{reg:?}");
    assert!(!r.regressions.iter().any(|g| g.fingerprint == "aa"));
    assert_eq!(r.statement("bb").unwrap().trend.len(), 24);
}

#[test]
fn compare_shows_change_new_statements_and_improvements() {
    let prev = vec![b("aa", "SELECT 1", 0, 10, 5.0, 0.5)];
    let cur = vec![
        b("aa", "SELECT 1", 10 * MIN, 10, 0.05, 0.005),
        b("cc", "SELECT 2", 10 * MIN, 10, 0.5, 0.05),
    ];
    let input = ReportInput {
        period: Some(Period {
            from_ms: 10 * MIN,
            to_ms: 20 * MIN,
        }),
        compare: Some(Period {
            from_ms: 0,
            to_ms: 10 * MIN,
        }),
        current: cur,
        previous: prev,
        ..Default::default()
    };
    let r = build(&input, &ReportOptions::default());
    let aa = r.statement("aa").unwrap();
    assert_eq!(aa.previous.unwrap().total_seconds, 5.0);
    assert!(!aa.is_new);
    assert_eq!(r.new_statements, vec!["cc"]);
    assert!(r.regressions.is_empty());
    let md = markdown::render(&r);
    assert!(md.contains("-99%"), "{md}");
}

#[test]
fn pgss_rows_outside_the_proxy_are_marked_and_known_ones_merged() {
    let known = crate::fingerprint("SELECT * FROM deals WHERE id = 1");
    let input = ReportInput {
        current: vec![b(&known.hex(), &known.normalized, 0, 5, 0.1, 0.02)],
        pgss: vec![
            PgssRow {
                database: "crm".into(),
                query: "SELECT * FROM deals WHERE id = $1".into(),
                calls: 50,
                total_seconds: 1.0,
                rows: 50,
            },
            PgssRow {
                database: "crm".into(),
                query: "DELETE FROM sessions WHERE expires < now()".into(),
                calls: 3,
                total_seconds: 9.0,
                rows: 0,
            },
        ],
        ..Default::default()
    };
    let r = build(&input, &ReportOptions::default());
    assert_eq!(r.statements.len(), 2);
    let outside = &r.statements[0];
    assert_eq!(outside.origin, Origin::OutsideProxy);
    assert!(
        outside.query.starts_with("delete from sessions"),
        "{}",
        outside.query
    );
    assert!(html::render(&r).contains("outside proxy"));
}

#[test]
fn cache_candidates_are_read_only_hot_and_uncached() {
    let mut cur = vec![
        b(
            "r1",
            "SELECT name FROM companies WHERE id = $1",
            0,
            500,
            2.0,
            0.01,
        ),
        b(
            "w1",
            "UPDATE companies SET name = $1 WHERE id = $2",
            0,
            500,
            3.0,
            0.01,
        ),
        b("v1", "SELECT random() FROM companies", 0, 500, 1.0, 0.01),
    ];
    let mut cached = b(
        "c1",
        "SELECT name FROM deals WHERE id = $1",
        0,
        500,
        1.0,
        0.01,
    );
    cached.cache_hits = 400;
    cached.cache_misses = 100;
    cached.cache_saved_seconds = 4.0;
    cur.push(cached);
    let r = build(
        &ReportInput {
            current: cur,
            ..Default::default()
        },
        &ReportOptions::default(),
    );
    let c: Vec<&str> = r
        .cache
        .candidates
        .iter()
        .map(|c| c.fingerprint.as_str())
        .collect();
    assert_eq!(c, vec!["r1"]);
    assert_eq!(r.cache.hit_rate, Some(0.8));
    assert_eq!(r.cache.saved_seconds, 4.0);
}

#[test]
fn renderers_escape_and_leak_no_literals_from_plans() {
    let mut x = b(
        "aa",
        "SELECT * FROM t WHERE a = $1 AND b <> '<x>'",
        0,
        1,
        1.0,
        1.0,
    );
    x.plan = Some(r#"[{"Plan":{"Node Type":"Seq Scan","Relation Name":"t","Plan Rows":1,"Total Cost":10.0,"Filter":"(a = 'secret@example.com'::text)"},"Vigil Tables":{"t":{"rows":100000,"analyzed":true}}}]"#.into());
    let r = build(
        &ReportInput {
            current: vec![x],
            ..Default::default()
        },
        &ReportOptions::default(),
    );
    let s = r.statement("aa").unwrap();
    assert_eq!(
        s.advice[0].suggestion.as_deref(),
        Some("CREATE INDEX ON t (a)")
    );
    for out in [html::render(&r), markdown::render(&r), r.to_json()] {
        assert!(!out.contains("secret@example.com"), "{out}");
        assert!(!out.contains("<x>"));
    }
    let h = html::render(&r);
    assert!(
        h.contains("<svg")
            && !h.contains("<script")
            && !h.contains("http://")
            && !h.contains("https://")
    );
    let back: Report = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn times_render_in_utc() {
    assert_eq!(markdown::time(0), "1970-01-01 00:00");
    assert_eq!(markdown::time(1_764_288_000_000), "2025-11-28 00:00");
}

#[test]
fn outside_statements_carry_the_comparison_periods_snapshot_deltas() {
    let row = |calls, secs| PgssRow {
        database: "crm".into(),
        query: "DELETE FROM sessions WHERE expires < $1".into(),
        calls,
        total_seconds: secs,
        rows: 0,
    };
    let input = ReportInput {
        compare: Some(Period {
            from_ms: 0,
            to_ms: 10,
        }),
        pgss: vec![row(3, 9.0)],
        // The same statement, written differently, in the comparison period.
        pgss_previous: vec![PgssRow {
            query: "delete from  sessions where expires < $1".into(),
            ..row(1, 1.0)
        }],
        pgss_source: PgssSource::Snapshots { snapshots: 4 },
        ..Default::default()
    };
    let r = build(&input, &ReportOptions::default());
    let s = &r.statements[0];
    assert_eq!(s.origin, Origin::OutsideProxy);
    let p = s.previous.unwrap();
    assert_eq!((p.calls, p.total_seconds), (1, 1.0));
    assert_eq!(r.outside_proxy, vec![s.fingerprint.clone()]);
    let md = markdown::render(&r);
    assert!(md.contains("from the periodic snapshots"), "{md}");
    assert!(html::render(&r).contains("from the periodic snapshots"));
}
