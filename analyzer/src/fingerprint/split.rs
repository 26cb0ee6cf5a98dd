//! Splitting a simple-query string into statements at top-level `;`, respecting quotes,
//! dollar quotes, comments and `BEGIN ATOMIC ... END` function bodies (via the [`Lexer`]).

use super::lexer::{Kind, Lexer};

/// Splits a multi-statement simple-query string into its statements, in order.
///
/// Each statement is a trimmed slice of `sql` without its terminating `;`, keeping its comments
/// (so a trailing sqlcommenter comment stays with its statement). Empty statements (`;;`, only
/// comments) are skipped. `;` inside strings, quoted identifiers, dollar-quoted bodies, comments
/// and SQL-standard `BEGIN ATOMIC ... END` bodies do not split. Never allocates beyond the `Vec`.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut has_token = false;
    // `BEGIN ATOMIC` nesting, and `CASE ... END` inside it.
    let mut atomic = 0u32;
    let mut case_depth = 0u32;
    let mut prev_begin = false;
    for t in Lexer::new(sql) {
        if t.kind == Kind::Punct && t.text == ";" {
            if atomic == 0 {
                if has_token {
                    push(&mut out, &sql[start..t.start]);
                }
                start = t.start + 1;
                has_token = false;
            }
            prev_begin = false;
            continue;
        }
        has_token = true;
        if t.kind == Kind::Word {
            let w = t.text;
            if prev_begin && w.eq_ignore_ascii_case("atomic") {
                atomic += 1;
            } else if atomic > 0 && w.eq_ignore_ascii_case("case") {
                case_depth += 1;
            } else if atomic > 0 && w.eq_ignore_ascii_case("end") {
                if case_depth > 0 {
                    case_depth -= 1;
                } else {
                    atomic -= 1;
                }
            }
            prev_begin = w.eq_ignore_ascii_case("begin");
        } else {
            prev_begin = false;
        }
    }
    if has_token {
        push(&mut out, &sql[start..]);
    }
    out
}

fn push<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    // PostgreSQL's whitespace (`\x0b` included, unlike `char::is_ascii_whitespace`).
    let s = s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'));
    if !s.is_empty() {
        out.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons() {
        assert_eq!(
            split_statements("SELECT 1; select 'a;b' ;\n INSERT INTO t VALUES ($$x;y$$);"),
            vec!["SELECT 1", "select 'a;b'", "INSERT INTO t VALUES ($$x;y$$)"]
        );
    }

    #[test]
    fn keeps_comments_and_skips_empty_statements() {
        assert_eq!(
            split_statements(
                ";; -- only a comment;\n;SELECT \"a;\" /* ; */ FROM t /*route='x'*/;  ;"
            ),
            vec!["SELECT \"a;\" /* ; */ FROM t /*route='x'*/"]
        );
        assert!(split_statements("  ; -- c\n ;").is_empty());
        assert_eq!(
            split_statements("select E'\\';' , 2"),
            vec!["select E'\\';' , 2"]
        );
    }

    #[test]
    fn begin_atomic_bodies_do_not_split() {
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; SELECT 3";
        let parts = split_statements(sql);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].ends_with("SELECT 2; END"));
        assert_eq!(parts[1], "SELECT 3");
    }

    #[test]
    fn transaction_blocks_split() {
        assert_eq!(
            split_statements("BEGIN; UPDATE t SET a = 1; COMMIT"),
            vec!["BEGIN", "UPDATE t SET a = 1", "COMMIT"]
        );
    }
}
