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
    if let Some(one) = single_plain(sql) {
        let mut out = Vec::with_capacity(1);
        push(&mut out, one);
        return out;
    }
    split_lexed(sql)
}

/// The common case without the lexer: a string with nothing that could hide a `;` (no quotes,
/// dollar signs or comments) and at most one `;`, followed only by whitespace. Returns the text
/// before that `;` (or the whole string), which is what the lexer would split out.
fn single_plain(sql: &str) -> Option<&str> {
    let b = sql.as_bytes();
    let mut semi = None;
    for (i, &c) in b.iter().enumerate() {
        // One table load per ordinary byte.
        if !SPECIAL[c as usize] {
            continue;
        }
        match c {
            b'\'' | b'"' | b'$' => return None,
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            b';' if semi.is_some() => return None,
            b';' => semi = Some(i),
            _ => {}
        }
    }
    match semi {
        None => Some(sql),
        Some(i) if b[i + 1..].iter().all(|&c| is_pg_space(c)) => Some(&sql[..i]),
        Some(_) => None,
    }
}

/// The bytes [`single_plain`] looks at.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    let set = b"'\"$-/;";
    while i < set.len() {
        t[set[i] as usize] = true;
        i += 1;
    }
    t
};

/// PostgreSQL's whitespace (`\x0b` included, unlike `char::is_ascii_whitespace`).
fn is_pg_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn split_lexed(sql: &str) -> Vec<&str> {
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
    let s = s.trim_matches(|c: char| c.is_ascii() && is_pg_space(c as u8));
    if !s.is_empty() {
        out.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_fast_path_splits_as_the_lexer_does() {
        // Every string over an alphabet of the characters that matter (quotes, dollar signs,
        // comment starts, semicolons, whitespace, words), up to 5 symbols long.
        const PARTS: [&str; 14] = [
            ";", "'", "\"", "$$", "$1", "--", "/*", "*/", "-", "/", " ", "\n", "select 1", "x",
        ];
        let mut fast = 0;
        let mut idx = [0usize; 5];
        for len in 0..=5usize {
            let combos = PARTS.len().pow(len as u32);
            for n in 0..combos {
                let mut k = n;
                for slot in idx.iter_mut().take(len) {
                    *slot = k % PARTS.len();
                    k /= PARTS.len();
                }
                let sql: String = idx[..len].iter().map(|&i| PARTS[i]).collect();
                if single_plain(&sql).is_some() {
                    fast += 1;
                }
                assert_eq!(split_statements(&sql), split_lexed(&sql), "{sql:?}");
            }
        }
        assert!(fast > 1_000, "the fast path was taken {fast} times");
    }

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
