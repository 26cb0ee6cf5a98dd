//! The statement hook: the one point every statement passes through, for the statistics and
//! cache work. With no hook installed (`None`) nothing is collected and nothing is allocated.
//!
//! Call points:
//! - simple protocol: [`StatementHook::on_statement`] once per statement of a Query string, when
//!   its CommandComplete/EmptyQueryResponse/ErrorResponse arrives;
//! - extended protocol: [`StatementHook::on_parse`] at each client Parse (analysis), and
//!   [`StatementHook::on_statement`] when an Execute completes (timing);
//!   [`StatementHook::on_bind`] at a client Bind, only while [`StatementHook::wants_params`]
//!   says so (one atomic load otherwise).
//!
//! Parameter values are passed only to `on_bind`, borrowed, and only while the hook asked for
//! them (a plan sample of a wanted fingerprint, the opt-in redacted sample): they may hold PII,
//! so implementations keep them in memory only and never log or publish them.

use std::time::Duration;

/// Which protocol carried the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryProtocol {
    Simple,
    Extended,
}

/// A completed statement.
#[derive(Debug, Clone)]
pub struct StatementEvent<'a> {
    pub database: &'a str,
    pub user: &'a str,
    pub sql: &'a str,
    pub protocol: QueryProtocol,
    /// From sending the statement (or the previous statement's completion) to its completion.
    pub duration: Duration,
    /// Time the client waited for a server before this statement's transaction started
    /// (reported with the first statement after a checkout, zero afterwards).
    pub pool_wait: Duration,
    /// Rows from the command tag (`SELECT 3`, `UPDATE 2`...), when it has a count.
    pub rows: Option<u64>,
    /// The command tag on success.
    pub command_tag: Option<&'a str>,
    /// The SQLSTATE on failure.
    pub sqlstate: Option<&'a str>,
    /// The statement's `vigil_analyzer::fingerprint_id`, when the proxy already computed it
    /// for this text (the hot-read cache does for simple queries); `None`: compute it.
    pub fingerprint: Option<u64>,
}

/// A statement about to be prepared (extended protocol Parse).
#[derive(Debug, Clone)]
pub struct ParseEvent<'a> {
    pub database: &'a str,
    pub user: &'a str,
    pub sql: &'a str,
    /// The client-side statement name ("" = unnamed).
    pub statement: &'a str,
}

/// A client Bind of a statement whose text is known (only while the hook wants parameters).
pub struct BindEvent<'a> {
    pub database: &'a str,
    pub user: &'a str,
    pub sql: &'a str,
    /// The Parse's declared parameter type oids (empty when none were declared or unknown).
    pub param_types: &'a [u32],
    /// The Bind body after the portal and statement names: parameter format codes, values and
    /// result format codes, verbatim.
    pub params: &'a [u8],
}

/// Implemented by the statistics/cache integrations. Called inline on the proxy's hot path:
/// implementations must be quick and must not block (hand work to a channel).
pub trait StatementHook: Send + Sync + 'static {
    fn on_parse(&self, _event: &ParseEvent<'_>) {}
    /// Cheap check before every Bind: does the hook want the next Bind's parameter values?
    fn wants_params(&self) -> bool {
        false
    }
    /// A Bind's parameters, when [`StatementHook::wants_params`] returned true.
    fn on_bind(&self, _event: &BindEvent<'_>) {}
    fn on_statement(&self, event: &StatementEvent<'_>);
}
