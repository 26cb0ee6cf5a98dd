//! A small lexical check for statements that leave session state behind, so a transaction-mode
//! client that runs them is pinned to its server connection for the rest of its session.
//! (The analyzer crate will provide a parser-based check later.)

/// Why a client was pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinReason {
    Set,
    SetConfig,
    Listen,
    AdvisoryLock,
    TempTable,
    WithHoldCursor,
    Prepare,
}

impl PinReason {
    pub const ALL: [PinReason; 7] = [
        PinReason::Set,
        PinReason::SetConfig,
        PinReason::Listen,
        PinReason::AdvisoryLock,
        PinReason::TempTable,
        PinReason::WithHoldCursor,
        PinReason::Prepare,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            PinReason::Set => "set",
            PinReason::SetConfig => "set_config",
            PinReason::Listen => "listen",
            PinReason::AdvisoryLock => "advisory_lock",
            PinReason::TempTable => "temp_table",
            PinReason::WithHoldCursor => "with_hold_cursor",
            PinReason::Prepare => "prepare",
        }
    }
}

/// Split SQL into statements at top-level semicolons, skipping comments and quoted text.
/// Returns byte ranges of non-empty statements (trimmed).
pub fn split_statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut depth = 0i32;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut nest = 1;
                i += 2;
                while i < b.len() && nest > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        nest += 1;
                        i += 1;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        nest -= 1;
                        i += 1;
                    }
                    i += 1;
                }
                continue;
            }
            b'$' => {
                // Dollar quoting: $tag$ ... $tag$
                let rest = &sql[i + 1..];
                if let Some(end) = rest.find('$') {
                    let tag = &rest[..end];
                    if tag.chars().all(|c| c.is_alphanumeric() || c == '_')
                        && !tag.starts_with(|c: char| c.is_ascii_digit())
                    {
                        let delim = format!("${tag}$");
                        let body_start = i + 1 + end + 1;
                        if let Some(close) = sql[body_start..].find(&delim) {
                            i = body_start + close + delim.len();
                            continue;
                        }
                        i = b.len();
                        continue;
                    }
                }
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b';' if depth <= 0 => {
                let s = sql[start..i].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let s = sql[start.min(sql.len())..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

/// Lowercased words of a statement with comments and string literals blanked out.
fn normalized(stmt: &str) -> String {
    let b = stmt.as_bytes();
    let mut out = String::with_capacity(stmt.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                out.push_str(" '' ");
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push(' ');
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
                out.push(' ');
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 => {
                out.push((c as char).to_ascii_lowercase());
            }
            b'(' | b')' | b',' => {
                out.push(' ');
                out.push(b[i] as char);
                out.push(' ');
            }
            _ => out.push(' '),
        }
        i += 1;
    }
    out
}

/// The session state a statement (or a multi-statement string) leaves behind, if any.
pub fn session_state(sql: &str) -> Option<PinReason> {
    let lower_raw = sql.to_ascii_lowercase();
    // Fast exit for the common case.
    const HINTS: [&str; 8] = [
        "set",
        "listen",
        "advisory",
        "temp",
        "hold",
        "prepare",
        "set_config",
        "declare",
    ];
    if !HINTS.iter().any(|h| lower_raw.contains(h)) {
        return None;
    }
    for stmt in split_statements(sql) {
        let n = normalized(stmt);
        let words: Vec<&str> = n.split_whitespace().collect();
        if let Some(r) = classify(&words) {
            return Some(r);
        }
    }
    None
}

fn classify(w: &[&str]) -> Option<PinReason> {
    let first = *w.first()?;
    match first {
        "set" => {
            let second = w.get(1).copied().unwrap_or("");
            match second {
                "local" | "transaction" => {}
                "session" if w.get(2) == Some(&"characteristics") => return Some(PinReason::Set),
                _ => return Some(PinReason::Set),
            }
        }
        "listen" => return Some(PinReason::Listen),
        "prepare" if w.get(1) != Some(&"transaction") => return Some(PinReason::Prepare),
        "declare" if w.windows(2).any(|p| p == ["with", "hold"]) => {
            return Some(PinReason::WithHoldCursor);
        }
        "create" => {
            let mut i = 1;
            if w.get(i) == Some(&"or") {
                i += 2;
            }
            if w.get(i) == Some(&"global") || w.get(i) == Some(&"local") {
                i += 1;
            }
            if matches!(w.get(i), Some(&"temp") | Some(&"temporary")) {
                return Some(PinReason::TempTable);
            }
        }
        _ => {}
    }
    // Function calls anywhere in the statement.
    for (i, word) in w.iter().enumerate() {
        match *word {
            "pg_advisory_lock"
            | "pg_advisory_lock_shared"
            | "pg_try_advisory_lock"
            | "pg_try_advisory_lock_shared" => return Some(PinReason::AdvisoryLock),
            "set_config" if w.get(i + 1) == Some(&"(") => {
                // set_config(name, value, is_local): pinned unless is_local is true.
                let mut depth = 0;
                let mut args = 0;
                let mut last = "";
                for x in &w[i + 1..] {
                    match *x {
                        "(" => depth += 1,
                        ")" => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        "," if depth == 1 => args += 1,
                        t => last = t,
                    }
                }
                if args < 2 || last != "true" {
                    return Some(PinReason::SetConfig);
                }
            }
            _ => {}
        }
    }
    None
}

/// `DEALLOCATE [PREPARE] name | ALL` as a simple query: `Some(None)` for ALL, `Some(Some(name))`.
pub fn deallocate(sql: &str) -> Option<Option<String>> {
    let stmts = split_statements(sql);
    if stmts.len() != 1 {
        return None;
    }
    let mut words = stmts[0].split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("deallocate") {
        return None;
    }
    let mut name = words.next()?;
    if name.eq_ignore_ascii_case("prepare") {
        name = words.next()?;
    }
    if words.next().is_some() {
        return None;
    }
    if name.eq_ignore_ascii_case("all") {
        Some(None)
    } else if let Some(q) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(Some(q.replace("\"\"", "\"")))
    } else {
        Some(Some(name.to_lowercase()))
    }
}

/// Whether a simple query is `DISCARD ALL`.
pub fn is_discard_all(sql: &str) -> bool {
    let n = normalized(sql);
    let w: Vec<&str> = n.split_whitespace().collect();
    w == ["discard", "all"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(
            split_statements("select 1; select ';' ; -- x;\n select $$a;b$$;"),
            vec!["select 1", "select ';'", "-- x;\n select $$a;b$$"]
        );
        assert_eq!(split_statements("  ;; "), Vec::<&str>::new());
        assert_eq!(
            split_statements("select 1 /* ; */"),
            vec!["select 1 /* ; */"]
        );
    }

    #[test]
    fn detects_session_state() {
        use PinReason::*;
        let cases: &[(&str, Option<PinReason>)] = &[
            ("SET search_path TO x", Some(Set)),
            ("set statement_timeout = 5", Some(Set)),
            ("SET LOCAL search_path TO x", None),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", None),
            ("select set_config('a.b', 'x', false)", Some(SetConfig)),
            ("select set_config('a.b', 'x', true)", None),
            ("LISTEN ch", Some(Listen)),
            ("select pg_advisory_lock(1)", Some(AdvisoryLock)),
            ("select pg_advisory_xact_lock(1)", None),
            ("CREATE TEMP TABLE t (a int)", Some(TempTable)),
            ("create temporary table t as select 1", Some(TempTable)),
            ("create table t (a int)", None),
            (
                "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                Some(WithHoldCursor),
            ),
            ("DECLARE c CURSOR FOR SELECT 1", None),
            ("PREPARE p AS SELECT 1", Some(Prepare)),
            ("select 'SET x' as settings", None),
            ("select 1; set search_path to public", Some(Set)),
            ("update t set a = 1", None),
            ("-- set x\nselect 1", None),
        ];
        for (sql, want) in cases {
            assert_eq!(session_state(sql), *want, "{sql}");
        }
    }

    #[test]
    fn parses_deallocate() {
        assert_eq!(deallocate("DEALLOCATE ALL"), Some(None));
        assert_eq!(
            deallocate("deallocate prepare S1;"),
            Some(Some("s1".into()))
        );
        assert_eq!(deallocate("DEALLOCATE \"S1\""), Some(Some("S1".into())));
        assert_eq!(deallocate("select 1"), None);
        assert!(is_discard_all("DISCARD ALL;"));
        assert!(!is_discard_all("DISCARD PLANS"));
    }
}
