//! Default-deny eligibility: a statement is served from the cache only when every check passes;
//! each refusal has a named reason (counted per fingerprint). Also what a write invalidates.

use std::collections::BTreeSet;

use vigil_analyzer::{Analysis, StatementKind, Volatility};

use super::meta::Catalog;
use super::store::table_name;

/// Why a statement was not served from (or stored in) the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BypassReason {
    /// No rule matches (and `auto` did not pick it).
    NoRule,
    /// Not a plain read.
    NotRead,
    /// The analyzer could not parse it.
    ParseFailed,
    /// `FOR UPDATE`/`FOR SHARE`...
    Locking,
    /// A volatile function (`random()`, `nextval()`...).
    Volatile,
    /// A clock/session-dependent function (`now()`, `current_user`...).
    SessionDependent,
    /// A function the server does not know as immutable/stable, or a non-immutable user function
    /// (it may read tables the key does not cover).
    UnsafeFunction,
    TempTable,
    SystemCatalog,
    /// Inside an explicit transaction (or a pipeline after other work) and the rule does not
    /// allow it, or the transaction is failed.
    InTransaction,
    /// Inside an explicit transaction that wrote, or ran a statement that may have (or changed
    /// session state).
    AfterWrite,
    /// Inside an explicit transaction that is (or may be) REPEATABLE READ / SERIALIZABLE.
    IsolationLevel,
    /// A simple Query string with several statements.
    MultiStatement,
    /// The client is pinned to its server (session state the key cannot see).
    PinnedSession,
    /// The server's catalog (`pg_proc`, views) is not loaded yet.
    CatalogLoading,
    /// Redis is down, slow, or has unflushed invalidations.
    StoreUnavailable,
    /// The result exceeds the rule's or the global size limit.
    TooLarge,
    /// The statement failed, was cancelled, or the response was not a plain result.
    NotCacheableResponse,
    /// An Execute with a row limit.
    RowLimit,
    /// Reads no table (nothing to save).
    NoTable,
}

impl BypassReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BypassReason::NoRule => "no_rule",
            BypassReason::NotRead => "not_read",
            BypassReason::ParseFailed => "parse_failed",
            BypassReason::Locking => "locking_clause",
            BypassReason::Volatile => "volatile_function",
            BypassReason::SessionDependent => "session_function",
            BypassReason::UnsafeFunction => "unsafe_function",
            BypassReason::TempTable => "temp_table",
            BypassReason::SystemCatalog => "system_catalog",
            BypassReason::InTransaction => "in_transaction",
            BypassReason::AfterWrite => "after_write",
            BypassReason::IsolationLevel => "isolation_level",
            BypassReason::MultiStatement => "multi_statement",
            BypassReason::PinnedSession => "pinned_session",
            BypassReason::CatalogLoading => "catalog_loading",
            BypassReason::StoreUnavailable => "store_unavailable",
            BypassReason::TooLarge => "too_large",
            BypassReason::NotCacheableResponse => "not_cacheable_response",
            BypassReason::RowLimit => "row_limit",
            BypassReason::NoTable => "no_table",
        }
    }
}

/// Is this analyzed statement safe to cache? Ok with the tables whose generations key it
/// (views expanded to their base tables).
pub fn check(a: &Analysis, cat: &Catalog) -> Result<Vec<String>, BypassReason> {
    if a.parse_failed {
        return Err(BypassReason::ParseFailed);
    }
    if a.kind != StatementKind::Read || a.statements != 1 || !a.session_effects.is_empty() {
        return Err(BypassReason::NotRead);
    }
    if !a.locking.is_empty() {
        return Err(BypassReason::Locking);
    }
    if a.temp_tables {
        return Err(BypassReason::TempTable);
    }
    if a.system_catalogs {
        return Err(BypassReason::SystemCatalog);
    }
    if a.session_dependent {
        return Err(BypassReason::SessionDependent);
    }
    if a.volatility == Volatility::Volatile || a.side_effects {
        return Err(BypassReason::Volatile);
    }
    if a.unknown_functions {
        return Err(BypassReason::UnsafeFunction);
    }
    for f in &a.functions {
        match cat.function(f) {
            Some(Volatility::Volatile) => return Err(BypassReason::Volatile),
            Some(_) if cat.user_function_unsafe(f) => return Err(BypassReason::UnsafeFunction),
            Some(_) => {}
            None if cat.loaded() => {
                // Not in pg_proc: an aggregate/keyword-like function sqlparser reports (count,
                // coalesce...) is in the analyzer's built-in list, or it does not exist.
                if vigil_analyzer::analysis::functions::traits(f, None)
                    .volatility
                    .is_none()
                {
                    return Err(BypassReason::UnsafeFunction);
                }
            }
            None => return Err(BypassReason::CatalogLoading),
        }
    }
    if a.tables_read.is_empty() {
        return Err(BypassReason::NoTable);
    }
    let mut tables = BTreeSet::new();
    for t in &a.tables_read {
        let n = table_name(t);
        if n.starts_with("pg_") {
            return Err(BypassReason::SystemCatalog);
        }
        for b in cat.expand_view(&n) {
            tables.insert(b);
        }
        tables.insert(n);
    }
    Ok(tables.into_iter().collect())
}

/// What a statement may change: tables (with FK cascade targets) and whether the whole
/// database must be invalidated (unknown statements, DDL without a known target, functions not
/// known to be read-only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteEffect {
    pub tables: Vec<String>,
    pub global: bool,
}

impl WriteEffect {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && !self.global
    }
}

pub fn write_effect(a: &Analysis, cat: &Catalog) -> WriteEffect {
    let mut e = WriteEffect::default();
    let unsafe_fn =
        a.unknown_functions || a.functions.iter().any(|f| cat.user_function_may_write(f));
    match a.kind {
        StatementKind::Read | StatementKind::Utility => {}
        StatementKind::TransactionControl | StatementKind::SessionState => {}
        StatementKind::Write | StatementKind::Ddl => {
            if a.tables_written.is_empty() {
                e.global = true;
            }
        }
        StatementKind::Unknown => e.global = true,
    }
    if a.parse_failed || unsafe_fn {
        e.global = true;
    }
    if a.kind == StatementKind::Ddl {
        // DDL can change views, functions and policies: everything may read differently.
        e.global = true;
    }
    let mut set = BTreeSet::new();
    for t in &a.tables_written {
        let n = table_name(t);
        for c in cat.cascades(&n) {
            set.insert(c);
        }
        set.insert(n);
    }
    e.tables = set.into_iter().collect();
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_analyzer::analyze;

    #[test]
    fn reads_pass_and_unsafe_statements_have_reasons() {
        let cat = Catalog::builtin_only();
        assert_eq!(
            check(
                &analyze("SELECT count(*) FROM deals WHERE stage = 'won'"),
                &cat
            ),
            Ok(vec!["deals".to_owned()])
        );
        let r = |s: &str| check(&analyze(s), &cat).unwrap_err();
        assert_eq!(r("SELECT * FROM deals FOR UPDATE"), BypassReason::Locking);
        assert_eq!(
            r("SELECT now(), id FROM deals"),
            BypassReason::SessionDependent
        );
        assert_eq!(r("SELECT random() FROM deals"), BypassReason::Volatile);
        assert_eq!(r("SELECT nextval('s')"), BypassReason::Volatile);
        assert_eq!(r("UPDATE deals SET x = 1"), BypassReason::NotRead);
        assert_eq!(r("SELECT * FROM pg_class"), BypassReason::SystemCatalog);
    }

    #[test]
    fn writes_name_their_tables() {
        let cat = Catalog::builtin_only();
        let w = write_effect(&analyze("UPDATE public.deals SET x = 1"), &cat);
        assert_eq!(w.tables, vec!["deals".to_owned()]);
        assert!(!w.global);
        assert!(write_effect(&analyze("CREATE TABLE x (a int)"), &cat).global);
        assert!(write_effect(&analyze("SELECT 1"), &cat).is_empty());
        let w = write_effect(
            &analyze("WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d"),
            &cat,
        );
        assert_eq!(w.tables, vec!["a".to_owned()]);
    }
}
