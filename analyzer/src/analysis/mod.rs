//! Deep analysis of a statement with sqlparser (PostgreSQL dialect), meant to run once per
//! fingerprint (see [`crate::cache`]).
//!
//! - [`functions`]: volatility of functions (built-in list + caller-supplied [`FunctionVolatility`]).
//! - [`lexical`]: locking clauses and a fallback for statements sqlparser cannot parse.
//! - `walk` (private): the AST walk (tables read/written, functions, session effects, kind).
//!
//! A statement sqlparser cannot parse gets [`StatementKind::Unknown`] and
//! [`Analysis::parse_failed`]: never cacheable, treated as a possible write.

pub mod functions;
pub mod lexical;
mod walk;

pub use functions::{FunctionVolatility, Volatility};

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

/// What a statement does, for routing, caching and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// Reads only (`SELECT`, `VALUES`, `TABLE`, `COPY ... TO`, `DECLARE` cursor, `FETCH`).
    Read,
    /// Modifies rows (`INSERT`, `UPDATE`, `DELETE`, `MERGE`, `COPY ... FROM`, `TRUNCATE`,
    /// `SELECT INTO`, data-modifying CTEs, `CALL`, `NOTIFY`).
    Write,
    /// Changes the schema or privileges (`CREATE`, `ALTER`, `DROP`, `GRANT`, `COMMENT`, ...).
    Ddl,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `SET TRANSACTION`, ...
    TransactionControl,
    /// Changes session state (`SET`, `RESET`, `DISCARD`, `LISTEN`, `PREPARE`, `DEALLOCATE`).
    SessionState,
    /// Everything else (`EXPLAIN`, `SHOW`, `VACUUM`, `ANALYZE`, `LOCK`, `CLOSE`, empty).
    Utility,
    /// Could not be parsed, or cannot be known (`EXECUTE` of a prepared statement): a possible write.
    Unknown,
}

impl StatementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Read => "read",
            StatementKind::Write => "write",
            StatementKind::Ddl => "ddl",
            StatementKind::TransactionControl => "transaction",
            StatementKind::SessionState => "session",
            StatementKind::Utility => "utility",
            StatementKind::Unknown => "unknown",
        }
    }
}

/// Row-locking clause strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockStrength {
    /// `FOR UPDATE`
    Update,
    /// `FOR NO KEY UPDATE`
    NoKeyUpdate,
    /// `FOR SHARE`
    Share,
    /// `FOR KEY SHARE`
    KeyShare,
}

/// Effects on the server session that outlive the transaction: the pg proxy must pin the
/// client to its server connection (or replay/undo them) when it sees these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEffect {
    /// `SET` / `SET SESSION` / `SET ROLE` / `SET SESSION AUTHORIZATION` (not `SET LOCAL`).
    Set,
    /// `RESET`.
    Reset,
    /// `set_config(name, value, false)` (or a non-literal `is_local`).
    SetConfig,
    /// `LISTEN`.
    Listen,
    /// Session-level `pg_advisory_lock*` / `pg_try_advisory_lock*` (not `_xact_`).
    AdvisoryLock,
    /// Session-level `pg_advisory_unlock*`.
    AdvisoryUnlock,
    /// `CREATE TEMP TABLE/VIEW/SEQUENCE`, `SELECT ... INTO TEMP`.
    TempObject,
    /// `DECLARE ... WITH HOLD`.
    CursorWithHold,
    /// `PREPARE` (SQL-level prepared statement).
    Prepare,
    /// `DEALLOCATE`.
    Deallocate,
    /// `DISCARD`.
    Discard,
}

/// The result of deep analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub kind: StatementKind,
    /// Operation name for telemetry (`SELECT`, `INSERT`, `CREATE TABLE`, ...).
    pub operation: String,
    /// Number of statements parsed (a simple query may hold several).
    pub statements: usize,
    /// Tables (and views) read, as written in the SQL: unquoted parts lowercased, quoted kept.
    pub tables_read: Vec<String>,
    /// Tables written (DML targets, incl. data-modifying CTEs; DDL targets).
    pub tables_written: Vec<String>,
    /// Functions called (lowercase, without schema), in order of appearance.
    pub functions: Vec<String>,
    /// The most volatile known function volatility.
    pub volatility: Volatility,
    /// Some function's volatility is unknown (neither built-in nor in the caller's table).
    pub unknown_functions: bool,
    /// Some function depends on the session (user, settings, backend) or the clock (`now()`).
    pub session_dependent: bool,
    /// Some function has side effects (`nextval`, `setval`, advisory locks, `set_config`, ...).
    pub side_effects: bool,
    /// Row-locking clauses (`FOR UPDATE`, ...).
    pub locking: Vec<LockStrength>,
    /// Temporary tables are created or referenced (`pg_temp.*`).
    pub temp_tables: bool,
    /// System catalogs are referenced (`pg_catalog.*`, `information_schema.*`, `pg_*`).
    pub system_catalogs: bool,
    /// Session-state effects relevant to connection pinning.
    pub session_effects: Vec<SessionEffect>,
    /// sqlparser could not parse the statement (classified conservatively).
    pub parse_failed: bool,
}

impl Analysis {
    /// Could this statement modify data or schema (or is that unknown)?
    pub fn may_write(&self) -> bool {
        matches!(
            self.kind,
            StatementKind::Write | StatementKind::Ddl | StatementKind::Unknown
        ) || self.side_effects
            || self.parse_failed
    }

    /// May a result of this statement be served from a cache? Only plain reads with no
    /// locking, no volatile/session/clock-dependent or unknown functions, no catalogs, no temp
    /// tables and no session effects.
    pub fn is_cacheable(&self) -> bool {
        self.kind == StatementKind::Read
            && !self.parse_failed
            && self.locking.is_empty()
            && self.volatility != Volatility::Volatile
            && !self.session_dependent
            && !self.side_effects
            && !self.unknown_functions
            && !self.temp_tables
            && !self.system_catalogs
            && self.session_effects.is_empty()
    }

    /// A low-cardinality summary for telemetry (OpenTelemetry `db.query.summary`): the
    /// operation and its main table, e.g. `SELECT contacts`, `INSERT deals`, `BEGIN`.
    pub fn summary(&self) -> String {
        let table = self.tables_written.first().or(self.tables_read.first());
        match table {
            Some(t) if !self.operation.is_empty() => format!("{} {t}", self.operation),
            _ => self.operation.clone(),
        }
    }

    /// Does this statement require pinning the client to its server session?
    pub fn pins_session(&self) -> bool {
        self.session_effects.iter().any(|e| {
            !matches!(
                e,
                SessionEffect::Deallocate | SessionEffect::Discard | SessionEffect::AdvisoryUnlock
            )
        })
    }
}

/// Why [`try_analyze`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("sqlparser could not parse the statement: {0}")]
    Parse(#[from] ParserError),
}

/// Deep analysis with the built-in function list; never fails (see [`Analysis::parse_failed`]).
pub fn analyze(sql: &str) -> Analysis {
    analyze_with(sql, None)
}

/// Deep analysis, consulting `lookup` for function volatility first.
pub fn analyze_with(sql: &str, lookup: Option<&FunctionVolatility>) -> Analysis {
    match try_analyze_with(sql, lookup) {
        Ok(a) => a,
        Err(_) => {
            let (locking, _) = lexical::locking(sql);
            let (kind, session_effects) = lexical::fallback_effects(sql);
            Analysis {
                kind,
                operation: lexical::first_word(sql),
                statements: 1,
                tables_read: Vec::new(),
                tables_written: Vec::new(),
                functions: Vec::new(),
                volatility: Volatility::Volatile,
                unknown_functions: true,
                session_dependent: true,
                side_effects: false,
                locking,
                temp_tables: false,
                system_catalogs: false,
                session_effects,
                parse_failed: true,
            }
        }
    }
}

/// Deep analysis that reports a parse failure as an error.
pub fn try_analyze(sql: &str) -> Result<Analysis, AnalyzeError> {
    try_analyze_with(sql, None)
}

/// [`try_analyze`] with a caller-supplied volatility table.
pub fn try_analyze_with(
    sql: &str,
    lookup: Option<&FunctionVolatility>,
) -> Result<Analysis, AnalyzeError> {
    let (locking, rewritten) = lexical::locking(sql);
    let text = rewritten.as_deref().unwrap_or(sql);
    let stmts = Parser::parse_sql(&PostgreSqlDialect {}, text)?;
    let mut a = walk::analyze_statements(&stmts, lookup);
    a.locking = locking;
    if a.operation.is_empty() {
        a.operation = lexical::first_word(sql);
    }
    Ok(a)
}
