//! Lexical facts found without parsing: locking clauses (sqlparser 0.64 knows only
//! `FOR UPDATE`/`FOR SHARE`, so `FOR NO KEY UPDATE`/`FOR KEY SHARE` are rewritten before parsing),
//! the leading keyword, and a conservative fallback for statements sqlparser cannot parse.

use super::{LockStrength, SessionEffect, StatementKind};
use crate::fingerprint::lexer::{Kind, Lexer, Token};

/// Locking clauses in `sql`, and the text with `NO KEY UPDATE`/`KEY SHARE` simplified to
/// `UPDATE`/`SHARE` when they occur (so sqlparser can parse it).
pub fn locking(sql: &str) -> (Vec<LockStrength>, Option<String>) {
    let toks: Vec<Token<'_>> = Lexer::new(sql).collect();
    let word = |i: usize, w: &str| {
        toks.get(i)
            .is_some_and(|t| t.kind == Kind::Word && t.text.eq_ignore_ascii_case(w))
    };
    let mut locks = Vec::new();
    // Byte ranges to delete (the `NO KEY` / `KEY` words).
    let mut cut: Vec<(usize, usize)> = Vec::new();
    for i in 0..toks.len() {
        if !word(i, "for") {
            continue;
        }
        if word(i + 1, "update") {
            locks.push(LockStrength::Update);
        } else if word(i + 1, "share") {
            locks.push(LockStrength::Share);
        } else if word(i + 1, "no") && word(i + 2, "key") && word(i + 3, "update") {
            locks.push(LockStrength::NoKeyUpdate);
            cut.push((toks[i + 1].start, toks[i + 3].start));
        } else if word(i + 1, "key") && word(i + 2, "share") {
            locks.push(LockStrength::KeyShare);
            cut.push((toks[i + 1].start, toks[i + 2].start));
        }
    }
    let rewritten = (!cut.is_empty()).then(|| {
        let mut out = String::with_capacity(sql.len());
        let mut at = 0;
        for (s, e) in cut {
            out.push_str(&sql[at..s]);
            at = e;
        }
        out.push_str(&sql[at..]);
        out
    });
    (locks, rewritten)
}

/// The leading keyword, uppercased (`WITH` is reported as is); empty for an empty statement.
pub fn first_word(sql: &str) -> String {
    Lexer::new(sql)
        .find(|t| t.kind == Kind::Word)
        .map(|t| t.text.to_ascii_uppercase())
        .unwrap_or_default()
}

/// Session effects of a statement sqlparser could not parse, from its leading words
/// (conservative: a plain `SET` pins, `SET LOCAL` does not).
pub fn fallback_effects(sql: &str) -> (StatementKind, Vec<SessionEffect>) {
    let words: Vec<String> = Lexer::new(sql)
        .filter(|t| t.kind == Kind::Word)
        .take(6)
        .map(|t| t.text.to_ascii_lowercase())
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let effects = match w(0) {
        "set" if w(1) != "local" && w(1) != "transaction" => vec![SessionEffect::Set],
        "reset" => vec![SessionEffect::Reset],
        "listen" => vec![SessionEffect::Listen],
        "prepare" if w(1) != "transaction" => vec![SessionEffect::Prepare],
        "deallocate" => vec![SessionEffect::Deallocate],
        "discard" => vec![SessionEffect::Discard],
        "declare" if words.iter().any(|x| x == "hold") => vec![SessionEffect::CursorWithHold],
        "create"
            if matches!(w(1), "temp" | "temporary")
                || (w(1) == "local" && matches!(w(2), "temp" | "temporary")) =>
        {
            vec![SessionEffect::TempObject]
        }
        _ => Vec::new(),
    };
    (StatementKind::Unknown, effects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_rewrites_lock_strengths() {
        let (l, r) = locking("SELECT * FROM t FOR NO KEY UPDATE OF t SKIP LOCKED");
        assert_eq!(l, vec![LockStrength::NoKeyUpdate]);
        assert_eq!(
            r.as_deref(),
            Some("SELECT * FROM t FOR UPDATE OF t SKIP LOCKED")
        );
        let (l, r) = locking("select 1 from t for key share, u for update");
        assert_eq!(l, vec![LockStrength::KeyShare, LockStrength::Update]);
        assert_eq!(
            r.as_deref(),
            Some("select 1 from t for share, u for update")
        );
        let (l, r) = locking("SELECT 'for update' FROM t");
        assert!(l.is_empty() && r.is_none());
    }
}
