//! Server -> client: responses are matched against the queue of what the proxy sent
//! ([`Pending`]), swallowed when the proxy asked for them itself, forwarded otherwise, with
//! proxy-made responses emitted at their place in the stream.

use std::time::{Duration, Instant};

use super::config::PoolMode;
use super::hook::{QueryProtocol, StatementEvent};
use super::protocol::status::{self, ErrorFields};
use super::protocol::{Msg, Next, simple};
use super::session::{Pending, Session};

impl Session {
    /// Handle every complete message buffered from the server, in place: the read buffer is
    /// taken from the connection, its messages are borrowed one after the other, and it is
    /// advanced once at the end.
    pub fn on_server_data(&mut self) {
        let Some(srv) = self.server.as_mut() else {
            return;
        };
        let buf = srv.conn().dec.take();
        let mut off = 0;
        let partial = loop {
            let Some(srv) = self.server.as_mut() else {
                // The server is gone (its buffered bytes with it).
                return;
            };
            match srv.conn().dec.next_len(&buf[off..]) {
                Ok(Next::Complete(n)) => {
                    let m = Msg {
                        tag: buf[off],
                        frame: &buf[off..off + n],
                    };
                    off += n;
                    if !self.on_server_message(m) {
                        return;
                    }
                }
                Ok(Next::Partial(n)) => break n,
                Err(_) => {
                    self.server_lost(None);
                    return;
                }
            }
        };
        if let Some(srv) = self.server.as_mut() {
            srv.conn().dec.put_back(buf, off, partial);
        }
    }

    fn forward(&mut self, m: &Msg<'_>) {
        self.cout.extend_from_slice(m.frame);
    }

    /// Returns false when the server is gone.
    fn on_server_message(&mut self, m: Msg<'_>) -> bool {
        self.drain_synth();
        let internal = matches!(self.pending.front(), Some(Pending::Internal));
        match m.tag {
            b'N' | b'A' => {
                if !internal {
                    self.forward(&m);
                }
                return true;
            }
            b'S' => {
                if !internal {
                    if let Ok((k, v)) = status::decode_parameter_status(m.body())
                        && let Some(s) = self.server.as_mut()
                    {
                        s.conn().note_param(k, v);
                    }
                    self.forward(&m);
                }
                return true;
            }
            _ => {}
        }
        if m.tag == b'E' {
            return self.on_server_error(m);
        }
        if m.tag == b'Z'
            && matches!(
                self.pending.front(),
                Some(
                    Pending::Parse { .. }
                        | Pending::Bind
                        | Pending::Describe
                        | Pending::Execute { .. }
                        | Pending::Close { .. }
                )
            )
        {
            // Messages sent after an error and before Sync were skipped by the server.
            while let Some(p) = self.pending.pop_front() {
                match p {
                    Pending::Sync => break,
                    Pending::Parse {
                        server_name,
                        client_name,
                        ..
                    } => self.parse_failed(server_name, client_name),
                    _ => {}
                }
            }
            self.set_status(&m);
            self.forward(&m);
            self.drain_synth();
            return true;
        }
        let Some(front) = self.pending.front_mut() else {
            // Nothing expected: a stray message (never forwarded mid-stream to another client).
            return true;
        };
        match front {
            Pending::Internal => {
                if m.tag == b'Z' {
                    self.pending.pop_front();
                }
            }
            Pending::Query { hook } => {
                if let Some(h) = hook.as_mut()
                    && let Some(f) = h.fill.as_mut()
                    && m.tag != b'Z'
                {
                    f.push(&m);
                    if m.tag == b'C'
                        && let Some(f) = h.fill.take()
                    {
                        f.finish();
                    }
                }
                match m.tag {
                    b'C' | b'I' => {
                        self.inner.metrics.statements.inc();
                        if let Some(h) = hook.as_mut() {
                            let tag = if m.tag == b'C' {
                                simple::decode_command_complete(m.body()).ok()
                            } else {
                                None
                            };
                            let h = &mut **h;
                            let now = Instant::now();
                            let sql = h.statements.get(h.next).map(String::as_str).unwrap_or("");
                            if let Some(hk) = &self.inner.hook {
                                hk.on_statement(&StatementEvent {
                                    database: &self.database,
                                    user: &self.user,
                                    sql,
                                    protocol: QueryProtocol::Simple,
                                    duration: now - h.last,
                                    pool_wait: std::mem::take(&mut self.last_wait),
                                    rows: tag.and_then(simple::rows_from_tag),
                                    command_tag: tag,
                                    sqlstate: None,
                                    fingerprint: h.fps.get(h.next).copied(),
                                });
                            }
                            h.next += 1;
                            h.last = now;
                        }
                        if m.tag == b'C' {
                            self.copy_in = false;
                            self.after_command(&m);
                            self.cache_complete();
                        }
                    }
                    b'G' => self.copy_in = true,
                    b'Z' => {
                        self.set_status(&m);
                        self.pending.pop_front();
                    }
                    _ => {}
                }
                self.forward(&m);
            }
            Pending::FunctionCall => {
                if m.tag == b'Z' {
                    self.set_status(&m);
                    self.pending.pop_front();
                }
                self.forward(&m);
            }
            Pending::Parse {
                hidden,
                server_name,
                ..
            } => {
                let hidden = *hidden;
                if m.tag == b'1' {
                    if let Some(n) = server_name.take() {
                        self.pool.statement_parsed(&n);
                    }
                    self.pending.pop_front();
                }
                if !(hidden && m.tag == b'1') {
                    self.forward(&m);
                }
            }
            Pending::Bind => {
                if m.tag == b'2' {
                    self.pending.pop_front();
                }
                self.forward(&m);
            }
            Pending::Describe => {
                if m.tag == b'T' || m.tag == b'n' {
                    self.pending.pop_front();
                }
                self.forward(&m);
            }
            Pending::Execute { hook } => {
                if let Some(h) = hook.as_mut()
                    && let Some(f) = h.fill.as_mut()
                {
                    f.push(&m);
                    if m.tag == b'C'
                        && let Some(f) = h.fill.take()
                    {
                        f.finish();
                    }
                }
                match m.tag {
                    b'C' | b'I' | b's' => {
                        if m.tag != b's' {
                            self.inner.metrics.statements.inc();
                        }
                        let hook = hook.take();
                        let tag = (m.tag == b'C')
                            .then(|| simple::decode_command_complete(m.body()).ok())
                            .flatten();
                        if let (Some(h), Some(hk)) = (hook, &self.inner.hook) {
                            hk.on_statement(&StatementEvent {
                                database: &self.database,
                                user: &self.user,
                                sql: &h.sql,
                                protocol: QueryProtocol::Extended,
                                duration: h.started.elapsed(),
                                pool_wait: std::mem::take(&mut self.last_wait),
                                rows: tag.and_then(simple::rows_from_tag),
                                command_tag: tag,
                                sqlstate: None,
                                fingerprint: None,
                            });
                        }
                        self.pending.pop_front();
                        if m.tag == b'C' {
                            self.copy_in = false;
                            self.after_command(&m);
                            self.cache_complete();
                        }
                    }
                    b'G' => {
                        self.copy_in = true;
                        // The server ignores Syncs until the COPY ends: only a Sync sent after
                        // it closes the implicit transaction.
                        self.unsynced = true;
                        // Syncs the client sent after this Execute and before ending the COPY
                        // are ignored by the server: expect no ReadyForQuery for them.
                        let mut i = 1;
                        while i < self.pending.len() {
                            match self.pending[i] {
                                Pending::Sync => {
                                    self.pending.remove(i);
                                }
                                Pending::CopyBoundary => {
                                    self.pending.remove(i);
                                    break;
                                }
                                _ => i += 1,
                            }
                        }
                    }
                    _ => {}
                }
                self.forward(&m);
            }
            Pending::Close { hidden } => {
                let hidden = *hidden;
                if m.tag == b'3' {
                    self.pending.pop_front();
                }
                if !(hidden && m.tag == b'3') {
                    self.forward(&m);
                }
            }
            Pending::Sync => {
                if m.tag == b'Z' {
                    self.set_status(&m);
                    self.pending.pop_front();
                }
                self.forward(&m);
            }
            Pending::Synth(_) | Pending::CopyBoundary => unreachable!("drained above"),
        }
        self.drain_synth();
        true
    }

    fn set_status(&mut self, m: &Msg<'_>) {
        if let Ok(s) = simple::decode_ready_for_query(m.body()) {
            self.tx_status = s;
            self.cache_ready(s);
        }
    }

    /// Statements that reset prepared statements on the server.
    fn after_command(&mut self, m: &Msg<'_>) {
        // Most tags are neither: compared as bytes, before decoding.
        const RESETS: [&[u8]; 2] = [b"DISCARD ALL\0", b"DEALLOCATE ALL\0"];
        if !RESETS.contains(&m.body()) {
            return;
        }
        let Ok(tag) = simple::decode_command_complete(m.body()) else {
            return;
        };
        if tag == "DISCARD ALL" || tag == "DEALLOCATE ALL" {
            self.statements.clear();
            if let Some(s) = self.server.as_mut() {
                if tag == "DISCARD ALL" {
                    s.conn().settings_reset();
                } else {
                    s.conn().statements.clear();
                }
            }
        }
    }

    fn on_server_error(&mut self, m: Msg<'_>) -> bool {
        let fields = ErrorFields::decode(m.body()).unwrap_or_default();
        let code = fields.code().to_owned();
        self.inner.metrics.error(code.as_bytes());
        let fatal = matches!(fields.get(b'S'), Some("FATAL") | Some("PANIC"));
        let internal = matches!(self.pending.front(), Some(Pending::Internal));
        if fatal {
            // The server is about to close. A transaction-mode client keeps its session: it sees
            // an ERROR (the transaction is lost) and can go on with another server.
            let stateless = self.mode == PoolMode::Transaction && self.pinned.is_none();
            let waiting = self
                .pending
                .iter()
                .any(|p| !matches!(p, Pending::Synth(_) | Pending::CopyBoundary));
            if stateless && !waiting {
                // Nothing of this client's was running: it need not hear about it at all.
            } else if stateless {
                let mut f = fields.clone();
                for (c, v) in f.fields.iter_mut() {
                    if *c == b'S' || *c == b'V' {
                        *v = "ERROR".into();
                    }
                }
                self.cout.extend_from_slice(&f.encode(b'E'));
            } else {
                self.forward(&m);
            }
            self.server_lost(Some(()));
            return false;
        }
        if internal {
            // A failed parameter sync: the client still gets its own answers.
            return true;
        }
        let Some(front) = self.pending.front_mut() else {
            self.forward(&m);
            return true;
        };
        match front {
            Pending::Query { hook } => {
                if let (Some(h), Some(hk)) = (hook.as_mut(), &self.inner.hook) {
                    let sql = h.statements.get(h.next).map(String::as_str).unwrap_or("");
                    hk.on_statement(&StatementEvent {
                        database: &self.database,
                        user: &self.user,
                        sql,
                        protocol: QueryProtocol::Simple,
                        duration: h.last.elapsed(),
                        pool_wait: Duration::ZERO,
                        rows: None,
                        command_tag: None,
                        sqlstate: Some(&code),
                        fingerprint: h.fps.get(h.next).copied(),
                    });
                    h.next = h.statements.len();
                }
                self.copy_in = false;
                self.forward(&m);
            }
            Pending::FunctionCall | Pending::Sync => self.forward(&m),
            _ => {
                // Extended protocol: the server skips everything up to Sync.
                if let Some(Pending::Execute { hook: Some(h) }) = self.pending.front()
                    && let Some(hk) = &self.inner.hook
                {
                    hk.on_statement(&StatementEvent {
                        database: &self.database,
                        user: &self.user,
                        sql: &h.sql,
                        protocol: QueryProtocol::Extended,
                        duration: h.started.elapsed(),
                        pool_wait: Duration::ZERO,
                        rows: None,
                        command_tag: None,
                        sqlstate: Some(&code),
                        fingerprint: None,
                    });
                }
                self.copy_in = false;
                if code == "26000" && fields.message().contains("vigil_s_") {
                    // "prepared statement \"vigil_s_...\" does not exist": use the client's name.
                    let mut f = fields.clone();
                    for (c, v) in f.fields.iter_mut() {
                        if *c == b'M' {
                            for (server, client) in &self.failed_names {
                                *v = v.replace(&**server, client);
                            }
                        }
                    }
                    self.cout.extend_from_slice(&f.encode(b'E'));
                } else {
                    self.forward(&m);
                }
                // Until the client's Sync arrives the server discards messages: it is not
                // reusable before then.
                if !self.pending.iter().any(|p| matches!(p, Pending::Sync)) {
                    self.unsynced = true;
                    // What the client sends before its Sync is discarded by the server too: it
                    // must not be answered by the proxy (a Close) nor change the client's state.
                    self.skip_until_sync = true;
                }
                while let Some(p) = self.pending.front() {
                    if matches!(p, Pending::Sync) {
                        break;
                    }
                    if let Some(Pending::Parse {
                        server_name,
                        client_name,
                        ..
                    }) = self.pending.pop_front()
                    {
                        self.parse_failed(server_name, client_name);
                    }
                }
            }
        }
        true
    }
}
