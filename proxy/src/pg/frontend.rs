//! Client -> server: each client message is forwarded, rewritten (prepared statement names) or
//! answered by the proxy, and the response it expects is queued in order ([`Pending`]).

use std::sync::Arc;
use std::time::Instant;

use super::hook::{BindEvent, ParseEvent, StatementHook};
use super::pinning::{self, PinReason};
use super::prepared::StatementDef;
use super::protocol::extended::{self, Bind, Execute, Parse, Target};
use super::protocol::{Msg, Next, simple, status};
use super::session::{ExecHook, Pending, Session, SimpleHook};
use crate::cache::flow::Outcome;

impl Session {
    /// Handle every complete message buffered from the client, in place (the read buffer is
    /// taken, its messages borrowed, and it is advanced once at the end). `Ok(false)`: client
    /// said goodbye; `Err(())`: protocol violation (a FATAL error is queued).
    pub async fn on_client_data(&mut self) -> Result<bool, ()> {
        let buf = self.cin.take();
        let mut off = 0;
        let (r, partial) = loop {
            match self.cin.next_len(&buf[off..]) {
                Ok(Next::Complete(n)) => {
                    let m = Msg {
                        tag: buf[off],
                        frame: &buf[off..off + n],
                    };
                    off += n;
                    match self.on_client_message(m).await {
                        Ok(true) => {}
                        other => break (other, 0),
                    }
                }
                Ok(Next::Partial(n)) => break (Ok(true), n),
                Err(e) => {
                    self.protocol_violation(&e.to_string());
                    break (Err(()), 0);
                }
            }
        };
        self.cin.put_back(buf, off, partial);
        r
    }

    fn protocol_violation(&mut self, detail: &str) {
        self.inner.metrics.error(b"08P01");
        self.cout.extend_from_slice(&status::fatal(
            "08P01",
            &format!("invalid message: {detail}"),
        ));
    }

    async fn on_client_message(&mut self, m: Msg<'_>) -> Result<bool, ()> {
        if self.skip_until_sync {
            match m.tag {
                b'S' => {
                    self.skip_until_sync = false;
                    if self.server.is_none() {
                        self.push_synth(simple::ready_for_query(b'I'));
                        return Ok(true);
                    }
                }
                b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => return Ok(true),
                _ => self.skip_until_sync = false,
            }
        }
        let r = match m.tag {
            b'Q' => self.on_query(m).await,
            b'P' => self.on_parse(m).await,
            b'B' => self.on_bind(m).await,
            b'D' => self.on_describe(m).await,
            b'E' => self.on_execute(m).await,
            b'C' => self.on_close(m).await,
            b'S' => {
                if self.server.is_none() {
                    self.push_synth(simple::ready_for_query(self.tx_status));
                } else if self.copy_in {
                    // Ignored by the server in copy-in mode.
                    self.sout.extend_from_slice(m.frame);
                } else {
                    self.sout.extend_from_slice(m.frame);
                    self.pending.push_back(Pending::Sync);
                    self.unsynced = false;
                    self.cache_sync();
                }
                Ok(())
            }
            b'H' => {
                if self.server.is_some() {
                    self.sout.extend_from_slice(m.frame);
                }
                Ok(())
            }
            b'F' => {
                self.cache_function_call();
                if self.attach(false).await {
                    self.sout.extend_from_slice(m.frame);
                    self.pending.push_back(Pending::FunctionCall);
                }
                Ok(())
            }
            b'd' | b'c' | b'f' => {
                if self.server.is_some() {
                    self.sout.extend_from_slice(m.frame);
                    if m.tag != b'd' {
                        if self.copy_in {
                            self.copy_in = false;
                        } else {
                            self.pending.push_back(Pending::CopyBoundary);
                        }
                    }
                }
                Ok(())
            }
            b'X' => return Ok(false),
            t => Err(format!("unexpected message type '{}'", char::from(t))),
        };
        match r {
            Ok(()) => Ok(true),
            Err(detail) => {
                self.protocol_violation(&detail);
                Err(())
            }
        }
    }

    /// Attach a server; on failure report it (as an extended-protocol failure or a simple one).
    async fn attach(&mut self, extended: bool) -> bool {
        match self.ensure_server().await {
            Ok(()) => true,
            Err(e) => {
                self.acquire_failed(&e, extended);
                false
            }
        }
    }

    async fn on_query(&mut self, m: Msg<'_>) -> Result<(), String> {
        let body = simple::decode_query(m.body()).map_err(|e| e.to_string())?;
        let sql = String::from_utf8_lossy(body);
        // DEALLOCATE of a protocol-level statement the proxy renamed: answer it here.
        if self.pending.is_empty()
            && let Some(target) = pinning::deallocate(&sql)
        {
            match target {
                Some(name) if self.statements.remove(&name) => {
                    self.push_synth(simple::command_complete("DEALLOCATE"));
                    self.push_synth(simple::ready_for_query(self.tx_status));
                    return Ok(());
                }
                None if self.pinned.is_none()
                    && self.mode == super::config::PoolMode::Transaction =>
                {
                    self.statements.clear();
                    self.push_synth(simple::command_complete("DEALLOCATE ALL"));
                    self.push_synth(simple::ready_for_query(self.tx_status));
                    return Ok(());
                }
                _ => {}
            }
        }
        // Split once for the cache and the statistics hook (`fps` lines up with it).
        let stmts = if self.inner.cache.is_some() || self.inner.hook.is_some() {
            vigil_analyzer::split_statements(&sql)
        } else {
            Vec::new()
        };
        let mut fps = Vec::new();
        let fill = match self.cache_query(&stmts, &mut fps).await {
            Outcome::Hit(b) => {
                self.push_synth(b);
                return Ok(());
            }
            Outcome::Fill(f) => Some(f),
            Outcome::Pass => None,
        };
        if !self.attach(false).await {
            return Ok(());
        }
        if let Some(reason) = pinning::session_state(&sql) {
            self.pin(reason);
        }
        let hook = (self.inner.hook.is_some() || fill.is_some()).then(|| {
            Box::new(SimpleHook {
                statements: stmts.iter().map(|s| (*s).to_owned()).collect(),
                fps,
                next: 0,
                last: Instant::now(),
                fill,
            })
        });
        self.sout.extend_from_slice(m.frame);
        self.pending.push_back(Pending::Query { hook });
        Ok(())
    }

    async fn on_parse(&mut self, m: Msg<'_>) -> Result<(), String> {
        let parse = Parse::decode(m.body()).map_err(|e| e.to_string())?;
        self.cache_parse(&parse);
        if let Some(h) = &self.inner.hook {
            h.on_parse(&ParseEvent {
                database: &self.database,
                user: &self.user,
                sql: &parse.query,
                statement: &parse.name,
            });
        }
        if !parse.name.is_empty() && self.statements.get(&parse.name).is_some() {
            // As PostgreSQL: the name is taken; the rest of the pipeline up to Sync is skipped.
            self.inner.metrics.error(b"42P05");
            self.push_synth(status::error(
                "42P05",
                &format!("prepared statement \"{}\" already exists", parse.name),
            ));
            self.skip_until_sync = true;
            return Ok(());
        }
        if !parse.name.is_empty() && self.server.is_none() {
            // A statement known to parse is prepared when first used: no server needed now
            // (a client preparing outside a transaction never waits for the pool).
            let def = Arc::new(StatementDef::new(&parse));
            if self.pool.statement_known(&def.server_name)
                && pinning::session_state(&parse.query).is_none()
            {
                self.statements.insert(parse.name, def);
                self.push_synth(extended::parse_complete());
                return Ok(());
            }
        }
        if !self.attach(true).await {
            return Ok(());
        }
        if let Some(reason) = pinning::session_state(&parse.query) {
            self.pin(reason);
        }
        self.unsynced = true;
        if parse.name.is_empty() {
            if self.inner.hook.is_some() {
                self.unnamed_sql = Some(parse.query.as_str().into());
            }
            self.sout.extend_from_slice(m.frame);
            self.pending.push_back(Pending::Parse {
                server_name: None,
                client_name: None,
                hidden: false,
            });
            return Ok(());
        }
        let def = Arc::new(StatementDef::new(&parse));
        self.statements.insert(parse.name.clone(), def.clone());
        let conn = self.server.as_mut().expect("attached").conn();
        if conn.statements.touch(&def.server_name) {
            self.push_synth(extended::parse_complete());
        } else {
            self.prepare_on_server(&def, Some(parse.name));
        }
        Ok(())
    }

    /// Send the renamed Parse (closing an evicted statement first).
    /// `client_name` is None for a Parse the proxy injects itself (its answer is swallowed).
    fn prepare_on_server(&mut self, def: &StatementDef, client_name: Option<String>) {
        let conn = self.server.as_mut().expect("attached").conn();
        if let Some(evicted) = conn.statements.insert(def.server_name.clone()) {
            self.sout.extend_from_slice(
                &Target {
                    kind: b'S',
                    name: &evicted,
                }
                .encode(b'C'),
            );
            self.pending.push_back(Pending::Close { hidden: true });
        }
        self.sout.extend_from_slice(&def.parse_frame);
        self.pending.push_back(Pending::Parse {
            server_name: Some(def.server_name.clone()),
            hidden: client_name.is_none(),
            client_name,
        });
    }

    /// The server-side name for a client statement, preparing it on this server if needed.
    fn server_statement(&mut self, client_name: &str) -> Option<Arc<str>> {
        let def = self.statements.get(client_name)?.clone();
        self.ensure_on_server(&def);
        Some(def.server_name.clone())
    }

    /// Prepare a client statement on the attached server unless it already is.
    fn ensure_on_server(&mut self, def: &StatementDef) {
        let conn = self.server.as_mut().expect("attached").conn();
        if !conn.statements.touch(&def.server_name) {
            self.prepare_on_server(def, None);
        }
    }

    async fn on_bind(&mut self, m: Msg<'_>) -> Result<(), String> {
        if !self.attach(true).await {
            return Ok(());
        }
        self.unsynced = true;
        let bind = Bind::decode(m.body()).map_err(|e| e.to_string())?;
        self.cache_bind(&bind);
        // One lookup of a named statement serves the hook and the rename.
        let def = if bind.statement.is_empty() {
            None
        } else {
            self.statements.get(bind.statement).cloned()
        };
        if self.inner.hook.is_some() {
            let sql = match &def {
                None if bind.statement.is_empty() => self.unnamed_sql.clone(),
                d => d.as_ref().map(|d| d.query.clone()),
            };
            if let Some(sql) = sql {
                if let Some(h) = &self.inner.hook
                    && h.wants_params()
                {
                    self.bind_to_hook(h.as_ref(), &bind, &sql);
                }
                self.portals.insert(bind.portal.to_owned(), sql);
            }
        }
        match def {
            Some(def) => {
                self.ensure_on_server(&def);
                bind.write_with_statement(&def.server_name, &mut self.sout);
            }
            None => self.sout.extend_from_slice(m.frame),
        }
        self.pending.push_back(Pending::Bind);
        Ok(())
    }

    /// Hand a Bind's parameters to the statement hook (only when it asked for them).
    fn bind_to_hook(&self, h: &dyn StatementHook, bind: &Bind<'_>, sql: &str) {
        let types = self
            .statements
            .get(bind.statement)
            .filter(|_| !bind.statement.is_empty())
            .and_then(|d| Parse::decode(d.parse_frame.get(5..)?).ok())
            .map(|p| p.param_types)
            .unwrap_or_default();
        h.on_bind(&BindEvent {
            database: &self.database,
            user: &self.user,
            sql,
            param_types: &types,
            params: bind.rest,
        });
    }

    async fn on_describe(&mut self, m: Msg<'_>) -> Result<(), String> {
        if !self.attach(true).await {
            return Ok(());
        }
        self.unsynced = true;
        let t = Target::decode(m.body()).map_err(|e| e.to_string())?;
        let renamed = (t.kind == b'S' && !t.name.is_empty())
            .then(|| self.server_statement(t.name))
            .flatten();
        match renamed {
            Some(n) => self.sout.extend_from_slice(
                &Target {
                    kind: b'S',
                    name: &n,
                }
                .encode(b'D'),
            ),
            None => self.sout.extend_from_slice(m.frame),
        }
        self.pending.push_back(Pending::Describe);
        Ok(())
    }

    async fn on_execute(&mut self, m: Msg<'_>) -> Result<(), String> {
        if !self.attach(true).await {
            return Ok(());
        }
        self.unsynced = true;
        let fill = if self.inner.cache.is_some() {
            let e = Execute::decode(m.body()).map_err(|e| e.to_string())?;
            match self.cache_execute(e.portal, e.max_rows).await {
                Outcome::Hit(b) => {
                    self.push_synth(b);
                    return Ok(());
                }
                Outcome::Fill(f) => Some(f),
                Outcome::Pass => None,
            }
        } else {
            None
        };
        let hook = if self.inner.hook.is_some() {
            let e = Execute::decode(m.body()).map_err(|e| e.to_string())?;
            self.portals.get(e.portal).map(|sql| ExecHook {
                sql: sql.clone(),
                started: Instant::now(),
                fill: None,
            })
        } else {
            None
        };
        let hook = match (hook, fill) {
            (Some(mut h), fill) => {
                h.fill = fill;
                Some(h)
            }
            (None, Some(fill)) => Some(ExecHook {
                sql: "".into(),
                started: Instant::now(),
                fill: Some(fill),
            }),
            (None, None) => None,
        };
        self.sout.extend_from_slice(m.frame);
        self.pending.push_back(Pending::Execute { hook });
        Ok(())
    }

    async fn on_close(&mut self, m: Msg<'_>) -> Result<(), String> {
        let t = Target::decode(m.body()).map_err(|e| e.to_string())?;
        if t.kind == b'S' && !t.name.is_empty() && self.statements.get(t.name).is_some() {
            // Server-side statements are shared; only the client's name goes away.
            self.statements.remove(t.name);
            self.push_synth(extended::close_complete());
            return Ok(());
        }
        if self.server.is_none() {
            // Without a server nothing is open (portals die with the transaction, unnamed
            // statements with the server); closing what does not exist is not an error.
            self.push_synth(extended::close_complete());
            return Ok(());
        }
        if !self.attach(true).await {
            return Ok(());
        }
        self.unsynced = true;
        if t.kind == b'P' {
            self.portals.remove(t.name);
        }
        self.sout.extend_from_slice(m.frame);
        self.pending.push_back(Pending::Close { hidden: false });
        Ok(())
    }
}

impl PinReason {
    /// For the API.
    pub fn label(self) -> &'static str {
        self.as_str()
    }
}
