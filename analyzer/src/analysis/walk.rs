//! The AST walk: one sqlparser `Visitor` pass collects relations, CTE names, functions and
//! every (nested) statement's write targets and session effects; then
//! `tables_read = relations - CTE names - table functions - one occurrence of each target`.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, Expr, FromTable, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    ObjectName, ObjectType, Query, Select, Set, Statement, TableFactor, TableObject, Value, Visit,
    Visitor,
};

use super::functions::{self, FunctionVolatility, Volatility};
use super::{Analysis, SessionEffect, StatementKind};

fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

/// `schema.table` with unquoted parts lowercased and quoted parts kept exact.
fn name(n: &ObjectName) -> String {
    let mut out = String::new();
    for (i, p) in n.0.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match p.as_ident() {
            Some(id) => out.push_str(&ident(id)),
            None => out.push_str(&p.to_string()),
        }
    }
    out
}

/// The function name without schema, lowercased.
fn func_name(n: &ObjectName) -> String {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(ident)
        .unwrap_or_else(|| n.to_string().to_ascii_lowercase())
}

fn expr_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident(i)),
        Expr::CompoundIdentifier(parts) => {
            Some(parts.iter().map(ident).collect::<Vec<_>>().join("."))
        }
        _ => None,
    }
}

fn is_catalog(n: &str) -> bool {
    let first = n.split('.').next().unwrap_or(n);
    let last = n.rsplit('.').next().unwrap_or(n);
    first == "pg_catalog" || first == "information_schema" || last.starts_with("pg_")
}

#[derive(Default)]
struct Walker<'l> {
    lookup: Option<&'l FunctionVolatility>,
    relations: Vec<String>,
    func_relations: Vec<String>,
    ctes: Vec<String>,
    written: Vec<String>,
    functions: Vec<String>,
    volatility: Volatility,
    unknown_functions: bool,
    session_dependent: bool,
    side_effects: bool,
    effects: Vec<SessionEffect>,
    temp_names: Vec<String>,
    temp: bool,
    /// A nested statement or `SELECT INTO` writes.
    nested_write: bool,
    depth: usize,
}

impl Walker<'_> {
    fn effect(&mut self, e: SessionEffect) {
        if !self.effects.contains(&e) {
            self.effects.push(e);
        }
    }

    fn write(&mut self, n: &ObjectName) {
        self.written.push(name(n));
    }

    fn call(&mut self, fname: &str, args: Option<&[FunctionArg]>) {
        let t = functions::traits(fname, self.lookup);
        match t.volatility {
            Some(v) => self.volatility = self.volatility.max(v),
            None => self.unknown_functions = true,
        }
        self.session_dependent |= t.session_dependent;
        self.side_effects |= t.side_effects;
        if functions::is_session_advisory_lock(fname) {
            self.effect(SessionEffect::AdvisoryLock);
        } else if functions::is_session_advisory_unlock(fname) {
            self.effect(SessionEffect::AdvisoryUnlock);
        } else if fname == "set_config" {
            // set_config(name, value, is_local): only is_local = true is transaction-scoped.
            let local = args.and_then(|a| a.get(2)).is_some_and(|a| {
                matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))
                    if v.value == Value::Boolean(true))
            });
            if !local {
                self.effect(SessionEffect::SetConfig);
            }
        }
        if !self.functions.iter().any(|f| f == fname) {
            self.functions.push(fname.to_owned());
        }
    }

    /// Write targets and session effects of one statement (top-level or nested).
    fn statement(&mut self, s: &Statement) {
        let nested = self.depth > 0;
        self.depth += 1;
        match s {
            Statement::Insert(i) => {
                if let TableObject::TableName(n) = &i.table {
                    self.write(n);
                }
                self.nested_write |= nested;
            }
            Statement::Update(u) => {
                if let TableFactor::Table { name: n, .. } = &u.table.relation {
                    self.write(n);
                }
                self.nested_write |= nested;
            }
            Statement::Delete(d) => {
                let (FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t)) = &d.from;
                for twj in t {
                    if let TableFactor::Table { name: n, .. } = &twj.relation {
                        self.write(n);
                    }
                }
                self.nested_write |= nested;
            }
            Statement::Merge(m) => {
                if let TableFactor::Table { name: n, .. } = &m.table {
                    self.write(n);
                }
                self.nested_write |= nested;
            }
            Statement::Copy {
                source: CopySource::Table { table_name, .. },
                to,
                ..
            } => {
                if *to {
                    self.relations.push(name(table_name));
                } else {
                    self.write(table_name);
                }
            }
            Statement::Truncate(t) => {
                for target in &t.table_names {
                    self.write(&target.name);
                }
            }
            Statement::CreateTable(c) => {
                self.write(&c.name);
                if c.temporary {
                    self.temp = true;
                    self.temp_names.push(name(&c.name));
                    self.effect(SessionEffect::TempObject);
                }
            }
            Statement::CreateView(v) => {
                self.write(&v.name);
                if v.temporary {
                    self.temp = true;
                    self.effect(SessionEffect::TempObject);
                }
            }
            Statement::CreateSequence {
                temporary: true, ..
            } => {
                self.temp = true;
                self.effect(SessionEffect::TempObject);
            }
            Statement::CreateIndex(c) => self.write(&c.table_name),
            Statement::AlterTable(a) => self.write(&a.name),
            Statement::RefreshMaterializedView(r) => self.write(&r.name),
            Statement::Drop {
                object_type, names, ..
            } => {
                if matches!(
                    object_type,
                    ObjectType::Table | ObjectType::View | ObjectType::MaterializedView
                ) {
                    for n in names {
                        self.write(n);
                    }
                }
            }
            Statement::Set(set) => match set {
                Set::SingleAssignment { scope, .. } => {
                    if !matches!(scope, Some(sqlparser::ast::ContextModifier::Local)) {
                        self.effect(SessionEffect::Set);
                    }
                }
                Set::SetRole {
                    context_modifier, ..
                } => {
                    if !matches!(
                        context_modifier,
                        Some(sqlparser::ast::ContextModifier::Local)
                    ) {
                        self.effect(SessionEffect::Set);
                    }
                }
                Set::SetTimeZone { local, .. } => {
                    if !local {
                        self.effect(SessionEffect::Set);
                    }
                }
                Set::SetTransaction { session, .. } => {
                    if *session {
                        self.effect(SessionEffect::Set);
                    }
                }
                _ => self.effect(SessionEffect::Set),
            },
            Statement::Vacuum(v) => {
                if let Some(n) = &v.table_name {
                    self.relations.push(name(n));
                }
            }
            Statement::Reset(_) => self.effect(SessionEffect::Reset),
            Statement::Discard { .. } => self.effect(SessionEffect::Discard),
            Statement::LISTEN { .. } => self.effect(SessionEffect::Listen),
            Statement::Prepare { .. } => self.effect(SessionEffect::Prepare),
            Statement::Deallocate { .. } => self.effect(SessionEffect::Deallocate),
            Statement::Declare { stmts, .. } if stmts.iter().any(|d| d.hold == Some(true)) => {
                self.effect(SessionEffect::CursorWithHold);
            }
            _ => {}
        }
    }
}

impl Visitor for Walker<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        self.relations.push(name(r));
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            TableFactor::Table {
                name: n,
                args: Some(_),
                ..
            } => {
                self.func_relations.push(name(n));
                self.call(&func_name(n), None);
            }
            TableFactor::Function { name: n, args, .. } => self.call(&func_name(n), Some(args)),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.ctes.push(ident(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if let Some(into) = &s.into {
            self.nested_write = true;
            if let Some(n) = into.targets.first().and_then(expr_name) {
                self.written.push(n.clone());
                if into.temporary {
                    self.temp_names.push(n);
                }
            }
            if into.temporary {
                self.temp = true;
                self.effect(SessionEffect::TempObject);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            let args = match &f.args {
                FunctionArguments::List(l) => Some(l.args.as_slice()),
                _ => None,
            };
            self.call(&func_name(&f.name), args);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        self.statement(s);
        ControlFlow::Continue(())
    }
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

fn remove_one(v: &mut Vec<String>, s: &str) {
    if let Some(i) = v.iter().position(|x| x == s) {
        v.remove(i);
    }
}

fn kind_of(s: &Statement) -> (StatementKind, String) {
    use StatementKind::*;
    let k = match s {
        Statement::Query(_) => (Read, "SELECT"),
        Statement::Insert(_) => (Write, "INSERT"),
        Statement::Update(_) => (Write, "UPDATE"),
        Statement::Delete(_) => (Write, "DELETE"),
        Statement::Merge(_) => (Write, "MERGE"),
        Statement::Truncate(_) => (Write, "TRUNCATE"),
        Statement::Copy { to: true, .. } => (Read, "COPY"),
        Statement::Copy { .. } => (Write, "COPY"),
        Statement::Call(_) => (Write, "CALL"),
        Statement::NOTIFY { .. } => (Write, "NOTIFY"),
        Statement::StartTransaction { .. } => (TransactionControl, "BEGIN"),
        Statement::Commit { .. } => (TransactionControl, "COMMIT"),
        Statement::Rollback { .. } => (TransactionControl, "ROLLBACK"),
        Statement::Savepoint { .. } => (TransactionControl, "SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => (TransactionControl, "RELEASE"),
        Statement::Set(Set::SetTransaction { session: false, .. }) => (TransactionControl, "SET"),
        Statement::Set(_) => (SessionState, "SET"),
        Statement::Reset(_) => (SessionState, "RESET"),
        Statement::Discard { .. } => (SessionState, "DISCARD"),
        Statement::LISTEN { .. } => (SessionState, "LISTEN"),
        Statement::UNLISTEN { .. } => (SessionState, "UNLISTEN"),
        Statement::Prepare { .. } => (SessionState, "PREPARE"),
        Statement::Deallocate { .. } => (SessionState, "DEALLOCATE"),
        Statement::Declare { .. } => (Read, "DECLARE"),
        Statement::Fetch { .. } => (Read, "FETCH"),
        Statement::Close { .. } => (Utility, "CLOSE"),
        Statement::Execute { .. } => (Unknown, "EXECUTE"),
        Statement::Explain {
            analyze, statement, ..
        } => {
            if *analyze {
                return (kind_of(statement).0, "EXPLAIN".into());
            }
            (Utility, "EXPLAIN")
        }
        Statement::ExplainTable { .. } => (Utility, "EXPLAIN"),
        Statement::Lock(_) => (Utility, "LOCK"),
        Statement::Vacuum(_) => (Utility, "VACUUM"),
        Statement::Analyze(_) => (Utility, "ANALYZE"),
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. } => (Utility, "SHOW"),
        Statement::CreateTable(_) => (Ddl, "CREATE TABLE"),
        Statement::CreateView(v) if v.materialized => (Ddl, "CREATE MATERIALIZED VIEW"),
        Statement::CreateView(_) => (Ddl, "CREATE VIEW"),
        Statement::CreateIndex(_) => (Ddl, "CREATE INDEX"),
        Statement::AlterTable(_) => (Ddl, "ALTER TABLE"),
        Statement::Drop { .. } => (Ddl, "DROP"),
        Statement::RefreshMaterializedView(_) => (Ddl, "REFRESH MATERIALIZED VIEW"),
        Statement::Grant(_) | Statement::GrantRole(_) => (Ddl, "GRANT"),
        Statement::Revoke(_) | Statement::RevokeRole(_) => (Ddl, "REVOKE"),
        Statement::Comment { .. } => (Ddl, "COMMENT"),
        other => {
            let text = other.to_string();
            let first = text
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let kind = match first.as_str() {
                "CREATE" | "ALTER" | "DROP" | "RENAME" => Ddl,
                _ => Utility,
            };
            return (kind, first);
        }
    };
    (k.0, k.1.to_owned())
}

/// Merges per-statement kinds: the most consequential wins.
fn rank(k: StatementKind) -> u8 {
    match k {
        StatementKind::Unknown => 6,
        StatementKind::Ddl => 5,
        StatementKind::Write => 4,
        StatementKind::SessionState => 3,
        StatementKind::TransactionControl => 2,
        StatementKind::Read => 1,
        StatementKind::Utility => 0,
    }
}

pub(super) fn analyze_statements(
    stmts: &[Statement],
    lookup: Option<&FunctionVolatility>,
) -> Analysis {
    let mut kind = StatementKind::Utility;
    let mut operation = String::new();
    let mut w = Walker {
        lookup,
        ..Walker::default()
    };
    for (i, s) in stmts.iter().enumerate() {
        w.depth = 0;
        w.nested_write = false;
        let _ = s.visit(&mut w);
        let (mut k, op) = kind_of(s);
        if w.nested_write && matches!(k, StatementKind::Read | StatementKind::Utility) {
            // Data-modifying CTE, SELECT INTO, or EXPLAIN ANALYZE of a write.
            let explain_plain = matches!(s, Statement::Explain { analyze: false, .. });
            if !explain_plain {
                k = StatementKind::Write;
            }
        }
        if i == 0 || rank(k) > rank(kind) {
            kind = k;
        }
        if i == 0 {
            operation = op;
        }
    }
    let explain_only = stmts
        .iter()
        .all(|s| matches!(s, Statement::Explain { analyze: false, .. }));

    let mut read = Vec::new();
    let mut relations = std::mem::take(&mut w.relations);
    for f in &w.func_relations {
        remove_one(&mut relations, f);
    }
    for t in &w.written {
        remove_one(&mut relations, t);
    }
    for r in relations {
        if !r.contains('.') && w.ctes.contains(&r) {
            continue;
        }
        push_unique(&mut read, r);
    }
    let mut written = Vec::new();
    for t in std::mem::take(&mut w.written) {
        push_unique(&mut written, t);
    }
    if explain_only {
        // Plain EXPLAIN does not execute: what it names is only read (planned).
        for t in written.drain(..) {
            push_unique(&mut read, t);
        }
    }
    let all = read.iter().chain(written.iter());
    let system_catalogs = all.clone().any(|t| is_catalog(t));
    let temp = w.temp
        || all.clone().any(|t| t.starts_with("pg_temp."))
        || read.iter().any(|t| w.temp_names.contains(t));
    Analysis {
        kind,
        operation,
        statements: stmts.len(),
        tables_read: read,
        tables_written: written,
        functions: w.functions,
        volatility: w.volatility,
        unknown_functions: w.unknown_functions,
        session_dependent: w.session_dependent,
        side_effects: w.side_effects,
        locking: Vec::new(),
        temp_tables: temp,
        system_catalogs,
        session_effects: w.effects,
        parse_failed: false,
    }
}
