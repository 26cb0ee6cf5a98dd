//! Vigil's SQL understanding, a pure library (no I/O, no async) for the pg proxy's hot path.
//!
//! - [`fingerprint`]: one-pass lexer -> normalized text + stable 64-bit fingerprint
//!   ([`fingerprint()`], allocation-free [`fingerprint_id`]), and [`split_statements`]
//!   for multi-statement simple queries.
//! - [`sqlcommenter`]: the trailing `/*route='..',...*/` comment parsed into [`Tags`].
//! - [`analysis`]: deep analysis with sqlparser ([`analyze()`]): statement kind, tables read and
//!   written, functions and their volatility, locking clauses, temp tables, system catalogs,
//!   session effects (for connection pinning); unparsable statements flagged and classified
//!   conservatively.
//! - [`cache`]: [`AnalysisCache`], bounded and thread-safe, so analysis runs once per fingerprint.
//! - [`report`]: heavy-query reports (model, HTML/Markdown/JSON renderers) and plan advice.
//!
//! Typical hot-path use in the proxy:
//! ```
//! use vigil_analyzer::{AnalysisCache, fingerprint_id, split_statements};
//! let cache = AnalysisCache::new(10_000);
//! for stmt in split_statements("SELECT * FROM deals WHERE id = 7; UPDATE deals SET stage = 'won' WHERE id = 7") {
//!     let id = fingerprint_id(stmt);
//!     let analysis = cache.get_or_analyze(id, stmt);
//!     assert!(!analysis.parse_failed);
//! }
//! ```

pub mod analysis;
pub mod cache;
pub mod fingerprint;
pub mod report;
pub mod sqlcommenter;

pub use analysis::{
    Analysis, AnalyzeError, FunctionVolatility, LockStrength, SessionEffect, StatementKind,
    Volatility, analyze, analyze_with, try_analyze, try_analyze_with,
};
pub use cache::{AnalysisCache, CacheStats};
pub use fingerprint::split::split_statements;
pub use fingerprint::{Fingerprint, fingerprint, fingerprint_id, format_id, parse_id};
pub use sqlcommenter::Tags;
