//! Fast statement fingerprints: a one-pass lexer over PostgreSQL SQL, no AST.
//!
//! - [`lexer`]: borrowed tokens, never fails (invalid SQL still gets a fingerprint).
//! - [`normalize`]: constants -> `$n`, list collapsing (`IN (...)`, `ARRAY[...]`, multi-row `VALUES`).
//! - [`sink`]: the stable 64-bit hash (documented there) and the normalized text.
//! - [`split`]: multi-statement simple-query strings -> statements.
//!
//! Two statements share a fingerprint when they differ only in constants, whitespace, comments,
//! keyword/identifier case (unquoted identifiers are case-insensitive in PostgreSQL) or the
//! length of constant lists; tables, columns, operators, clauses, casts and quoted identifiers
//! count. Grouping follows pg_stat_statements (PostgreSQL 18, which squashes constant lists).
//!
//! The 64-bit id is stable across runs, machines and platforms: its algorithm is specified in
//! [`sink`] and pinned by a unit test; changing it is a breaking change for stored statistics.

pub mod lexer;
pub mod normalize;
pub mod sink;
pub mod split;

use crate::sqlcommenter::Tags;
use lexer::Lexer;
use sink::{HashSink, TextSink};

/// A statement's fingerprint, normalized text and sqlcommenter tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The stable 64-bit fingerprint (same value as [`fingerprint_id`]).
    pub id: u64,
    /// Normalized text: constants as `$n` (numbered after the statement's own `$n` parameters),
    /// keywords and unquoted identifiers lowercased, comments dropped, whitespace folded,
    /// collapsed lists shown as `/*, ... */`. Contains no constant values.
    pub normalized: String,
    /// Tags from a trailing sqlcommenter comment (empty when there is none).
    pub tags: Tags,
}

impl Fingerprint {
    /// The id as 16 lowercase hex digits (the form used in APIs and signals).
    pub fn hex(&self) -> String {
        format_id(self.id)
    }
}

/// Formats a fingerprint id as 16 lowercase hex digits.
pub fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Parses the 16-hex-digit form back into an id.
pub fn parse_id(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// The fingerprint id only: the hot-path variant, which never allocates.
pub fn fingerprint_id(sql: &str) -> u64 {
    let mut h = HashSink::default();
    normalize::normalize(sql, &mut h);
    h.finish()
}

/// Fingerprint id, normalized text and sqlcommenter tags of one statement.
///
/// A multi-statement string gets one fingerprint over all its statements; use
/// [`split::split_statements`] first for per-statement fingerprints.
pub fn fingerprint(sql: &str) -> Fingerprint {
    let capacity = sql.len().min(4096);
    let mut sink = TextSink::new(capacity, 1);
    let mut lx = normalize::normalize(sql, &mut sink);
    if sink.max_param > 0 && sink.numbered_constants() {
        // Constants are numbered after the statement's own `$n` parameters, which are known only
        // now: normalize again (only statements with both parameters and constants).
        sink = TextSink::new(capacity, sink.max_param + 1);
        lx = normalize::normalize(sql, &mut sink);
    }
    let tags = lx
        .trailing_comment()
        .and_then(Tags::parse)
        .unwrap_or_default();
    Fingerprint {
        id: sink.hash.finish(),
        normalized: sink.into_text(),
        tags,
    }
}

/// Only the sqlcommenter tags of a statement (cheap: one lexer pass, no normalization).
pub fn tags(sql: &str) -> Tags {
    let mut lx = Lexer::new(sql);
    for _ in lx.by_ref() {}
    lx.trailing_comment()
        .and_then(Tags::parse)
        .unwrap_or_default()
}
