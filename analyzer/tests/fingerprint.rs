//! Unit tests for the fingerprint: every constant kind, lists, casts, keywords, comments, tags.

use vigil_analyzer::{fingerprint, fingerprint_id};

fn norm(sql: &str) -> String {
    let fp = fingerprint(sql);
    assert_eq!(
        fp.id,
        fingerprint_id(sql),
        "fast path disagrees for {sql:?}"
    );
    fp.normalized
}

fn same(a: &str, b: &str) {
    assert_eq!(
        fingerprint_id(a),
        fingerprint_id(b),
        "expected the same fingerprint:\n  {a}\n  -> {}\n  {b}\n  -> {}",
        norm(a),
        norm(b)
    );
}

fn differ(a: &str, b: &str) {
    assert_ne!(
        fingerprint_id(a),
        fingerprint_id(b),
        "expected different fingerprints:\n  {a}\n  -> {}\n  {b}\n  -> {}",
        norm(a),
        norm(b)
    );
}

#[test]
fn numbers_are_constants() {
    assert_eq!(
        norm("SELECT 1, 1.5, .5, 1e5, 2.5E-3, 0x1F, 1_000 FROM t"),
        "select $1, $2, $3, $4, $5, $6, $7 from t"
    );
    same(
        "SELECT * FROM t WHERE a = 1",
        "SELECT * FROM t WHERE a = 99999",
    );
}

#[test]
fn negative_numbers_fold_like_postgres() {
    assert_eq!(
        norm("SELECT * FROM t WHERE a = -1"),
        "select * from t where a = $1"
    );
    same(
        "SELECT * FROM t WHERE a = -1",
        "SELECT * FROM t WHERE a = 1",
    );
    same(
        "SELECT * FROM t WHERE a IN (-1, 2)",
        "SELECT * FROM t WHERE a IN (3)",
    );
    same("SELECT -5, x FROM t", "SELECT 5, x FROM t");
    // Binary minus stays an operator.
    assert_eq!(norm("SELECT a - 1 FROM t"), "select a - $1 from t");
    assert_eq!(norm("SELECT a-1 FROM t"), "select a - $1 from t");
    assert_eq!(norm("SELECT (a) -1 FROM t"), "select (a) - $1 from t");
    differ("SELECT a - 1 FROM t", "SELECT a + 1 FROM t");
}

#[test]
fn strings_of_every_kind_are_constants() {
    assert_eq!(norm("SELECT 'it''s'"), "select $1");
    assert_eq!(norm(r"SELECT E'a\'b\\', e'x'"), "select $1, $2");
    assert_eq!(norm("SELECT $$a'b;$$, $fn$ body $$ $fn$"), "select $1, $2");
    assert_eq!(
        norm("SELECT U&'d\\0061t\\+000061' UESCAPE '\\'"),
        "select $1"
    );
    assert_eq!(norm("SELECT B'1010', X'1F', N'nat'"), "select $1, $2, $3");
    assert_eq!(norm("SELECT 'a'\n   'b'"), "select $1");
    same(
        "SELECT * FROM t WHERE s = 'x'",
        "SELECT * FROM t WHERE s = E'y\\n'",
    );
    same(
        "SELECT * FROM t WHERE s = 'x'",
        "SELECT * FROM t WHERE s = $q$y$q$",
    );
}

#[test]
fn booleans_and_nulls() {
    assert_eq!(
        norm(
            "SELECT * FROM t WHERE a = TRUE AND b = false AND c IS NULL AND d IS NOT TRUE AND e IS NOT NULL"
        ),
        "select * from t where a = $1 and b = $2 and c is null and d is not true and e is not null"
    );
    same(
        "UPDATE t SET a = NULL WHERE id = 1",
        "UPDATE t SET a = 'x' WHERE id = 2",
    );
    differ(
        "SELECT * FROM t WHERE c IS NULL",
        "SELECT * FROM t WHERE c IS NOT NULL",
    );
    differ(
        "SELECT * FROM t WHERE c IS TRUE",
        "SELECT * FROM t WHERE c IS FALSE",
    );
    assert_eq!(
        norm("SELECT * FROM t WHERE a IS DISTINCT FROM NULL"),
        "select * from t where a is distinct from $1"
    );
}

#[test]
fn casts_are_kept_and_type_modifiers_stay_literal() {
    assert_eq!(
        norm("SELECT 'x'::text, '1'::int"),
        "select $1::text, $2::int"
    );
    differ("SELECT 'x'::text", "SELECT 'x'::varchar");
    assert_eq!(
        norm("SELECT a::numeric(10, 2) + 3 FROM t"),
        "select a::numeric(10, 2) + $1 from t"
    );
    differ(
        "SELECT a::numeric(10,2) FROM t",
        "SELECT a::numeric(12,2) FROM t",
    );
    assert_eq!(
        norm("SELECT a::character varying(20), b::int[] FROM t WHERE c = ANY('{1,2}'::int[])"),
        "select a::character varying(20), b::int[] from t where c = any($1::int[])"
    );
    assert_eq!(
        norm("SELECT x::text, (1 + 2) FROM t"),
        "select x::text, ($1 + $2) from t"
    );
    assert_eq!(
        norm("SELECT DATE '2024-01-01', interval '1 day'"),
        "select date $1, interval $2"
    );
}

#[test]
fn params_are_kept_and_constants_numbered_after_them() {
    assert_eq!(
        norm("SELECT * FROM t WHERE a = $1 AND b = 5 AND c = $2"),
        "select * from t where a = $1 and b = $3 and c = $2"
    );
    differ(
        "SELECT * FROM t WHERE a = $1",
        "SELECT * FROM t WHERE a = 1",
    );
}

#[test]
fn ordinals_in_order_and_group_by_are_not_constants() {
    assert_eq!(
        norm("SELECT a, count(*) FROM t GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"),
        "select a, count(*) from t group by 1 order by 2 desc, 1 limit $1"
    );
    differ(
        "SELECT a, b FROM t ORDER BY 1",
        "SELECT a, b FROM t ORDER BY 2",
    );
    // Inside a window, ORDER BY 1 is a constant expression (PostgreSQL applies SQL99 rules).
    assert_eq!(
        norm("SELECT row_number() OVER (ORDER BY 1) FROM t ORDER BY 1"),
        "select row_number() over (order by $1) from t order by 1"
    );
}

#[test]
fn in_lists_collapse() {
    assert_eq!(
        norm("SELECT * FROM t WHERE id IN (1, 2, 3)"),
        "select * from t where id in ($1 /*, ... */)"
    );
    assert_eq!(
        norm("SELECT * FROM t WHERE id IN (7)"),
        "select * from t where id in ($1)"
    );
    same(
        "SELECT * FROM t WHERE id IN (1)",
        "SELECT * FROM t WHERE id IN (1, 2, 3, 4, 5, 6, 7)",
    );
    same(
        "SELECT * FROM t WHERE id IN ('a', 'b')",
        "SELECT * FROM t WHERE id IN ('c')",
    );
    same(
        "SELECT * FROM t WHERE id IN ($1, $2, $3) AND x = $4",
        "SELECT * FROM t WHERE id IN ($1) AND x = $2",
    );
    same(
        "SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4), (5, 6)) AND c = 1",
        "SELECT * FROM t WHERE (a, b) IN ((1, 2)) AND c = 1",
    );
    // Not a constant list: no collapse, structure kept.
    differ(
        "SELECT * FROM t WHERE id IN (1, 2)",
        "SELECT * FROM t WHERE id IN (1, a)",
    );
    assert_eq!(
        norm("SELECT * FROM t WHERE id IN (1, 2, a)"),
        "select * from t where id in ($1, $2, a)"
    );
    assert_eq!(
        norm("SELECT * FROM t WHERE id IN (a, 1, 2)"),
        "select * from t where id in (a, $1, $2)"
    );
    differ(
        "SELECT * FROM t WHERE id IN (SELECT a FROM u)",
        "SELECT * FROM t WHERE id IN (SELECT b FROM u)",
    );
    same(
        "SELECT * FROM t WHERE id NOT IN (1,2) AND b IN (3)",
        "SELECT * FROM t WHERE id NOT IN (1) AND b IN (3,4,5)",
    );
}

#[test]
fn arrays_collapse() {
    assert_eq!(
        norm("SELECT * FROM t WHERE id = ANY(ARRAY[1, 2, 3])"),
        "select * from t where id = any(array[$1 /*, ... */])"
    );
    same(
        "SELECT * FROM t WHERE id = ANY(ARRAY[1])",
        "SELECT * FROM t WHERE id = ANY(ARRAY[1,2,3,4])",
    );
    same("SELECT ARRAY[[1,2],[3,4]]", "SELECT ARRAY[[5,6]]");
    differ(
        "SELECT * FROM t WHERE id = ANY(ARRAY[1])",
        "SELECT * FROM t WHERE id = ALL(ARRAY[1])",
    );
}

#[test]
fn multi_row_values_collapse() {
    assert_eq!(
        norm("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z') RETURNING id"),
        "insert into t (a, b) values ($1, $2) /*, ... */ returning id"
    );
    same(
        "INSERT INTO t (a, b) VALUES (1, 'x')",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')",
    );
    differ(
        "INSERT INTO t (a, b) VALUES (1, 'x')",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (3, now())",
    );
    same(
        "INSERT INTO t (a, b) VALUES (1, now()), (2, now())",
        "INSERT INTO t (a, b) VALUES (5, now())",
    );
    same(
        "INSERT INTO t VALUES ($1, $2), ($3, $4) ON CONFLICT (a) DO NOTHING",
        "INSERT INTO t VALUES ($1, $2) ON CONFLICT (a) DO NOTHING",
    );
    differ(
        "INSERT INTO t (a, b) VALUES (1, 2)",
        "INSERT INTO t (a, b) VALUES (1, DEFAULT)",
    );
    assert_eq!(
        norm("INSERT INTO t VALUES (1, now()), (2, 3)"),
        "insert into t values ($1, now()), ($2, $3)"
    );
    assert_eq!(
        norm("SELECT * FROM (VALUES (1), (2)) v(x)"),
        "select * from (values ($1) /*, ... */) v(x)"
    );
}

#[test]
fn whitespace_case_and_comments_fold() {
    same(
        "SELECT a FROM t WHERE b = 1",
        "  select\n\tA  from T\r\n where   B=1 ; ",
    );
    same(
        "SELECT a FROM t WHERE b = 1",
        "/* leading */ SELECT a -- x\n FROM t /* y */ WHERE b = 1",
    );
    same(
        "SELECT a FROM t WHERE b = 1",
        "SELECT a FROM t WHERE b = 1 /*route='%2Fx',action='show'*/",
    );
    assert_eq!(norm("SELECT a != b FROM t"), "select a <> b from t");
    same("SELECT a != b FROM t", "SELECT a <> b FROM t");
}

#[test]
fn quoted_identifiers_are_exact() {
    assert_eq!(
        norm("SELECT \"Name\" FROM \"Contacts\""),
        "select \"Name\" from \"Contacts\""
    );
    differ("SELECT \"Name\" FROM t", "SELECT \"name\" FROM t");
    differ("SELECT \"Name\" FROM t", "SELECT Name FROM t");
}

#[test]
fn structure_changes_the_fingerprint() {
    differ("SELECT a FROM t WHERE b = 1", "SELECT a FROM u WHERE b = 1");
    differ("SELECT a FROM t WHERE b = 1", "SELECT c FROM t WHERE b = 1");
    differ("SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b > 1");
    differ(
        "SELECT a FROM t WHERE b = 1",
        "SELECT a FROM t WHERE b = 1 ORDER BY a",
    );
    differ("SELECT a FROM t", "SELECT a FROM t FOR UPDATE");
    differ("SELECT ab FROM t", "SELECT a b FROM t");
}

#[test]
fn invalid_sql_still_gets_a_fingerprint() {
    let a = fingerprint("SELECT 'unterminated");
    let b = fingerprint("SELECT 'other unterminated");
    assert_eq!(a.id, b.id);
    assert_eq!(a.normalized, "select $1");
    assert_ne!(
        fingerprint_id("SELEC FROM WHERE ((("),
        fingerprint_id("SELEC FROM WHERE ((")
    );
    let _ = fingerprint("\u{0}\u{1} $ \\ { } é ü 漢字 \"unterminated");
}

#[test]
fn trailing_semicolons_are_ignored_but_inner_ones_count() {
    same("SELECT 1", "SELECT 1;;");
    differ("SELECT 1", "SELECT 1; SELECT 2");
}

#[test]
fn sqlcommenter_tags_come_with_the_fingerprint() {
    let fp = fingerprint(
        "SELECT * FROM deals WHERE id = 7 /*action='show',controller='deals',route='%2Fdeals%2F%3Aid',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/;",
    );
    assert_eq!(fp.normalized, "select * from deals where id = $1");
    assert_eq!(fp.tags.route.as_deref(), Some("/deals/:id"));
    assert_eq!(fp.tags.controller.as_deref(), Some("deals"));
    assert_eq!(fp.tags.action.as_deref(), Some("show"));
    assert!(
        fp.tags
            .traceparent
            .as_deref()
            .unwrap()
            .starts_with("00-4bf92f")
    );
    // A comment in the middle is not sqlcommenter.
    assert!(fingerprint("SELECT /*route='x'*/ 1").tags.is_empty());
    assert_eq!(
        vigil_analyzer::fingerprint::tags("SELECT 1 /*route='%2Fy'*/")
            .route
            .as_deref(),
        Some("/y")
    );
}

#[test]
fn hex_round_trips() {
    let fp = fingerprint("SELECT 1");
    assert_eq!(vigil_analyzer::parse_id(&fp.hex()), Some(fp.id));
    assert_eq!(fp.hex().len(), 16);
}

#[test]
fn wide_rows_and_long_lists_collapse() {
    let cols: Vec<String> = (0..60).map(|i| format!("c{i}")).collect();
    let row = |k: usize| {
        format!(
            "({})",
            (0..60)
                .map(|i| (i * k).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let one = format!("INSERT INTO wide ({}) VALUES {}", cols.join(", "), row(1));
    let many = format!(
        "INSERT INTO wide ({}) VALUES {}",
        cols.join(", "),
        (1..50).map(row).collect::<Vec<_>>().join(", ")
    );
    same(&one, &many);
    assert!(norm(&many).ends_with("$60) /*, ... */"));
    let long_in = |n: usize| {
        format!(
            "SELECT * FROM t WHERE id IN ({})",
            (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        )
    };
    same(&long_in(2), &long_in(10_000));
}

#[test]
fn nested_lists_collapse() {
    same(
        "SELECT * FROM contacts WHERE id IN (SELECT contact_id FROM deals WHERE stage IN ('won', 'lost'))",
        "SELECT * FROM contacts WHERE id IN (SELECT contact_id FROM deals WHERE stage IN ('won'))",
    );
    same(
        "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = ANY(ARRAY[1, 2, 3])) AND d IN (1, 2)",
        "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = ANY(ARRAY[4])) AND d IN (5)",
    );
    differ(
        "SELECT * FROM contacts WHERE id IN (SELECT contact_id FROM deals WHERE stage IN ('won'))",
        "SELECT * FROM contacts WHERE id IN (SELECT contact_id FROM deals WHERE kind IN ('won'))",
    );
}
