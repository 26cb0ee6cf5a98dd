//! One client session after login: the event loop that moves bytes both ways without blocking
//! either direction (bounded buffers give backpressure), attaches a server from the pool when
//! the client needs one and releases it when the transaction ends (transaction mode) or at
//! disconnect (session mode, pinned clients).
//!
//! Request/response bookkeeping lives in [`super::frontend`] (client messages) and
//! [`super::backend`] (server messages).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use foldhash::HashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

use super::Inner;
use super::client::{ClientReader, ClientWriter};
use super::config::PoolMode;
use super::pinning::PinReason;
use super::pool::{AcquireError, Pool, PooledServer};
use super::prepared::ClientStatements;
use super::protocol::{Decoder, simple, status};
use super::upstream::set_param;

/// Above this many buffered bytes towards one side, stop reading from the other.
pub(crate) const HIGH_WATER: usize = 256 * 1024;

/// Parameters kept in line between a client and whichever server it is given.
pub(crate) const TRACKED: [&str; 8] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "application_name",
    "extra_float_digits",
    "search_path",
];

/// What the proxy expects from the server, in order, for what it sent (or swallowed).
pub(crate) enum Pending {
    /// A response the proxy produces itself, emitted once everything before it was answered.
    Synth(Bytes),
    Parse {
        server_name: Option<Arc<str>>,
        /// The client's name for it (forgotten again if the Parse fails).
        client_name: Option<String>,
        hidden: bool,
    },
    Bind,
    Describe,
    Execute {
        /// Inline (no allocation per Execute): it is no larger than the Parse variant.
        hook: Option<ExecHook>,
    },
    Close {
        hidden: bool,
    },
    Sync,
    Query {
        hook: Option<Box<SimpleHook>>,
    },
    FunctionCall,
    /// An internal query (parameter sync): everything up to ReadyForQuery is swallowed.
    Internal,
    /// The client ended a COPY (CopyDone/CopyFail) before the server said it started one:
    /// Syncs sent before this point were sent in copy mode (the server ignores them).
    CopyBoundary,
}

pub(crate) struct ExecHook {
    pub sql: Arc<str>,
    pub started: Instant,
    /// The cache capturing this response (see `crate::cache::flow`).
    pub fill: Option<Box<crate::cache::flow::Fill>>,
}

pub(crate) struct SimpleHook {
    pub statements: Vec<String>,
    /// `fingerprint_id` of each of `statements` when the cache computed them (else empty).
    pub fps: Vec<u64>,
    pub next: usize,
    pub last: Instant,
    pub fill: Option<Box<crate::cache::flow::Fill>>,
}

/// Where the cancel for this client goes while it holds a server.
#[derive(Clone)]
pub(crate) struct CancelTarget {
    pub addr: std::net::SocketAddr,
    pub pid: i32,
    pub secret: Arc<[u8]>,
}

/// What a client's session shares with the cancel path: the server it is attached to.
///
/// A CancelRequest must never reach a server after it was handed to another client, so while a
/// cancel is being sent the session waits before it attaches or releases a server. The session
/// side is an uncontended std mutex per checkout and checkin; only a session that meets a
/// cancel in flight waits (on `cancel_done`).
#[derive(Default)]
pub(crate) struct ClientShared {
    attached: std::sync::Mutex<Attached>,
    cancel_done: tokio::sync::Notify,
}

#[derive(Default)]
struct Attached {
    target: Option<CancelTarget>,
    /// Cancels being sent to `target`.
    cancelling: u32,
}

/// A cancel in flight (see [`ClientShared::begin_cancel`]); ends when dropped.
pub(crate) struct CancelInFlight<'a> {
    shared: &'a ClientShared,
    pub target: CancelTarget,
}

impl Drop for CancelInFlight<'_> {
    fn drop(&mut self) {
        self.shared.lock().cancelling -= 1;
        self.shared.cancel_done.notify_waiters();
    }
}

impl ClientShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Attached> {
        self.attached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set (or clear) the server this client is attached to, once no cancel is in flight.
    pub async fn attach(&self, target: Option<CancelTarget>) {
        let mut target = Some(target);
        loop {
            {
                let mut a = self.lock();
                if a.cancelling == 0 {
                    a.target = target.take().flatten();
                    return;
                }
            }
            let done = self.cancel_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.lock().cancelling == 0 {
                continue;
            }
            done.await;
        }
    }

    /// Clear the attachment unless a cancel is in flight (then the next attach replaces it).
    pub fn detach_now(&self) {
        let mut a = self.lock();
        if a.cancelling == 0 {
            a.target = None;
        }
    }

    /// The server to cancel, held attached to this client until the result is dropped.
    pub fn begin_cancel(&self) -> Option<CancelInFlight<'_>> {
        let mut a = self.lock();
        let target = a.target.clone()?;
        a.cancelling += 1;
        Some(CancelInFlight {
            shared: self,
            target,
        })
    }
}

pub(crate) struct Session {
    pub inner: Arc<Inner>,
    pub pool: Arc<Pool>,
    pub mode: PoolMode,
    pub database: String,
    pub user: String,
    pub crd: ClientReader,
    pub cwr: ClientWriter,
    pub cin: Decoder,
    pub cout: BytesMut,
    pub sout: BytesMut,
    pub server: Option<PooledServer>,
    pub pending: VecDeque<Pending>,
    pub statements: ClientStatements,
    pub pinned: Option<PinReason>,
    pub shared: Arc<ClientShared>,
    pub wanted: Arc<[(String, String)]>,
    /// Extended-protocol messages forwarded since the last Sync.
    pub unsynced: bool,
    /// After a failure the proxy reported itself, drop extended messages until Sync.
    pub skip_until_sync: bool,
    pub copy_in: bool,
    pub tx_status: u8,
    pub last_wait: Duration,
    pub unnamed_sql: Option<Arc<str>>,
    pub portals: HashMap<String, Arc<str>>,
    pub client_flush: bool,
    /// The client transport buffers writes (TLS) and needs explicit flushes.
    pub buffered_writer: bool,
    pub closing: bool,
    pub cancel_pid: i32,
    /// Server-side names of statements whose Parse failed -> client names.
    pub failed_names: HashMap<Arc<str>, String>,
    /// Hot-read cache state (created at first use when the proxy has a cache).
    pub cache: Option<Box<crate::cache::flow::SessionCache>>,
}

async fn read_opt(s: Option<(&mut OwnedReadHalf, &mut BytesMut)>) -> std::io::Result<usize> {
    match s {
        Some((rd, buf)) => rd.read_buf(buf).await,
        None => std::future::pending().await,
    }
}

/// Write from one contiguous buffer with `write` (a `send` on a TCP socket): `write_buf` takes
/// the vectored path, a `writev` per write, which costs the kernel more for a single slice.
async fn write_contiguous<W: tokio::io::AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    let n = w.write(&buf[..]).await?;
    bytes::Buf::advance(buf, n);
    Ok(n)
}

async fn write_opt(s: Option<&mut OwnedWriteHalf>, buf: &mut BytesMut) -> std::io::Result<usize> {
    match s {
        Some(wr) => write_contiguous(wr, buf).await,
        None => std::future::pending().await,
    }
}

/// Keep room for a decent read (BytesMut would otherwise offer 64-byte chunks once full).
/// Buffers grown by a large message are given back once empty.
fn read_space(b: &mut BytesMut) {
    if b.is_empty() && b.capacity() > 64 * 1024 {
        *b = BytesMut::with_capacity(4096);
    } else if b.capacity() - b.len() < 2048 {
        b.reserve(8 * 1024);
    }
}

/// Read from the client. With nothing buffered the read goes through a stack buffer and the
/// bytes are copied into an exact-size heap buffer, so an idle client holds no read buffer.
async fn client_read(r: &mut ClientReader, buf: &mut BytesMut) -> std::io::Result<usize> {
    if !buf.is_empty() {
        // The rest of a message: read in place.
        return r.read_buf(buf).await;
    }
    std::future::poll_fn(|cx| {
        let mut tmp = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
        let mut rb = tokio::io::ReadBuf::uninit(&mut tmp);
        std::task::ready!(std::pin::Pin::new(&mut *r).poll_read(cx, &mut rb))?;
        buf.extend_from_slice(rb.filled());
        std::task::Poll::Ready(Ok(rb.filled().len()))
    })
    .await
}

/// Give an empty buffer's memory back: a client between transactions holds no read buffer and
/// no large write buffers (small ones are kept: reallocating them per transaction costs more).
fn release_empty(b: &mut BytesMut, keep: usize) {
    if b.is_empty() && b.capacity() > keep {
        *b = BytesMut::new();
    }
}

async fn client_write(w: &mut ClientWriter, buf: &mut BytesMut) -> Event {
    if buf.is_empty() {
        Event::ClientFlushed(w.flush().await)
    } else {
        Event::ClientWrote(write_contiguous(w, buf).await)
    }
}

/// Resolves once the proxy shuts down (or the shutdown sender is gone).
///
/// The session loop polls it on every turn, and each poll of a registered watch waiter takes
/// the channel's shared lock. This polls the waiter only when the value changed or the task's
/// waker is not the one the waiter holds: otherwise the waiter's registration is still the one
/// that will wake this task.
struct ShutdownSignal {
    /// A second receiver, for the lock-free version check.
    seen: watch::Receiver<bool>,
    wait: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The waker the waiter was last polled with.
    waker: Option<Waker>,
}

impl ShutdownSignal {
    fn new(tx: &watch::Sender<bool>) -> ShutdownSignal {
        let mut rx = tx.subscribe();
        ShutdownSignal {
            seen: rx.clone(),
            wait: Box::pin(async move {
                let _ = rx.wait_for(|down| *down).await;
            }),
            waker: None,
        }
    }
}

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let registered = this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        // `Err`: the sender is gone, which the waiter reports as done.
        if registered && !this.seen.has_changed().unwrap_or(true) {
            return Poll::Pending;
        }
        this.seen.mark_unchanged();
        this.waker = Some(cx.waker().clone());
        this.wait.as_mut().poll(cx)
    }
}

enum Event {
    ClientRead(std::io::Result<usize>),
    ServerRead(std::io::Result<usize>),
    ClientWrote(std::io::Result<usize>),
    ServerWrote(std::io::Result<usize>),
    ClientFlushed(std::io::Result<()>),
    Shutdown,
}

/// Why a session ended (for logs).
#[derive(Debug)]
pub(crate) enum End {
    ClientGone,
    Terminated,
    Fatal,
}

impl Session {
    pub async fn run(mut self) -> End {
        // One shutdown future for the whole session (registered with the watch channel once),
        // not a new `changed()` per loop turn: that registered and unregistered a waiter
        // several times per transaction.
        let mut shutdown = ShutdownSignal::new(&self.inner.shutdown);
        let mut shutting_down = false;
        let end = loop {
            if self.cache.is_some() {
                self.cache_after_server().await;
            }
            if self.server.is_some() && self.releasable() {
                self.release().await;
            }
            if self.closing && self.cout.is_empty() {
                break End::Fatal;
            }
            if shutting_down && self.server.is_none() && self.pending.is_empty() {
                self.cout.extend_from_slice(&status::fatal(
                    "57P01",
                    "terminating connection: Vigil is shutting down",
                ));
                let _ = self.cwr.write_all(&self.cout).await;
                let _ = self.cwr.flush().await;
                break End::Terminated;
            }
            let read_client =
                !self.closing && self.sout.len() < HIGH_WATER && self.cout.len() < HIGH_WATER;
            let holding = self.cache_holding();
            let read_server = self.server.is_some() && (self.cout.len() < HIGH_WATER || holding);
            let has_server = self.server.is_some();
            if self.cin.buf.is_empty() {
                release_empty(&mut self.cin.buf, 0);
            } else {
                read_space(&mut self.cin.buf);
            }
            if self.server.is_none() {
                release_empty(&mut self.cout, 2048);
                release_empty(&mut self.sout, 2048);
            }
            if let Some(c) = self.server.as_mut().and_then(|s| s.conn.as_deref_mut()) {
                read_space(&mut c.dec.buf);
            }
            let ev = {
                let (srv_r, srv_w) = match self.server.as_mut().and_then(|s| s.conn.as_deref_mut())
                {
                    Some(c) => {
                        let super::upstream::ServerConn { rd, wr, dec, .. } = c;
                        (Some((rd, &mut dec.buf)), Some(wr))
                    }
                    None => (None, None),
                };
                tokio::select! {
                    biased;
                    _ = &mut shutdown, if !shutting_down => Event::Shutdown,
                    ev = client_write(&mut self.cwr, &mut self.cout), if (!self.cout.is_empty() || self.client_flush) && !holding => ev,
                    r = write_opt(srv_w, &mut self.sout), if has_server && !self.sout.is_empty() => Event::ServerWrote(r),
                    r = read_opt(srv_r), if read_server => Event::ServerRead(r),
                    r = client_read(&mut self.crd, &mut self.cin.buf), if read_client => Event::ClientRead(r),
                }
            };
            match ev {
                Event::Shutdown => shutting_down = true,
                Event::ClientWrote(Ok(_)) => self.client_flush = self.buffered_writer,
                Event::ClientFlushed(Ok(())) => self.client_flush = false,
                Event::ClientWrote(Err(_)) | Event::ClientFlushed(Err(_)) => break End::ClientGone,
                Event::ClientRead(Ok(0)) | Event::ClientRead(Err(_)) => break End::ClientGone,
                Event::ClientRead(Ok(_)) => match self.on_client_data().await {
                    Ok(true) => self.eager_server_write(),
                    Ok(false) => break End::Terminated,
                    Err(()) => self.closing = true,
                },
                Event::ServerWrote(Ok(_)) => {}
                Event::ServerRead(Ok(n)) if n > 0 => {
                    self.on_server_data();
                    self.eager_client_write();
                }
                Event::ServerWrote(Err(_)) | Event::ServerRead(_) => self.server_lost(None),
            }
        };
        self.cleanup().await;
        end
    }

    /// Send what was just queued for the server without another turn of the event loop (and
    /// its select over every source): the socket almost always has room. Anything left (the
    /// socket is full, or failed) is written by the loop as before, which also reports errors.
    fn eager_server_write(&mut self) {
        if self.sout.is_empty() {
            return;
        }
        if let Some(c) = self.server.as_mut().and_then(|s| s.conn.as_deref_mut())
            && let Ok(n) = c.wr.try_write(&self.sout)
        {
            bytes::Buf::advance(&mut self.sout, n);
        }
    }

    /// [`Session::eager_server_write`] towards a plain TCP client. TLS clients go through the
    /// loop, and so does output the hot-read cache holds back or that waits for a bump: the
    /// loop bumps what a write invalidated before the client may see its commit.
    fn eager_client_write(&mut self) {
        if self.cout.is_empty() || !self.cache_lets_output_out() {
            return;
        }
        if let ClientWriter::Tcp(w) = &mut self.cwr
            && let Ok(n) = w.try_write(&self.cout)
        {
            bytes::Buf::advance(&mut self.cout, n);
        }
    }

    /// The server may go back to the pool: nothing in flight, not in a transaction.
    fn releasable(&self) -> bool {
        self.mode == PoolMode::Transaction
            && self.pinned.is_none()
            && self.pending.is_empty()
            && !self.unsynced
            && !self.copy_in
            && self.tx_status == b'I'
            && self.sout.is_empty()
    }

    async fn release(&mut self) {
        let Some(srv) = self.server.take() else {
            return;
        };
        self.shared.attach(None).await;
        self.inner.metrics.transactions.inc();
        self.pool.stats.transactions.fetch_add(1, Ordering::Relaxed);
        self.pool
            .stats
            .clients_active
            .fetch_sub(1, Ordering::Relaxed);
        self.pool.checkin(srv);
    }

    /// Make sure a server is attached. On failure the client has been sent an error.
    pub async fn ensure_server(&mut self) -> Result<(), AcquireError> {
        if self.server.is_some() {
            return Ok(());
        }
        let (mut srv, wait) = self.pool.acquire().await?;
        self.last_wait = wait;
        {
            let c = srv.conn();
            self.shared
                .attach(Some(CancelTarget {
                    addr: c.addr,
                    pid: c.backend_pid,
                    secret: c.backend_secret.clone(),
                }))
                .await;
        }
        self.pool
            .stats
            .clients_active
            .fetch_add(1, Ordering::Relaxed);
        // Align tracked parameters with what this client expects (nothing to compare when the
        // connection was last aligned with an equal set and nothing changed since).
        let mut sets = String::new();
        let c = srv.conn();
        let aligned = c
            .aligned_for
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(a, &self.wanted) || **a == *self.wanted);
        if !aligned {
            let wanted = &self.wanted;
            c.vigil_set.retain(|k| {
                if wanted.iter().any(|(w, _)| w.eq_ignore_ascii_case(k)) {
                    return true;
                }
                sets.push_str(&format!("RESET {k};"));
                false
            });
            for k in sets.split(';').filter_map(|s| s.strip_prefix("RESET ")) {
                c.params.retain(|(p, _)| !p.eq_ignore_ascii_case(k));
            }
            for (k, v) in wanted.iter() {
                if c.param(k) != Some(v.as_str()) {
                    // E'' quoting is safe whatever standard_conforming_strings says.
                    let lit = v.replace('\\', "\\\\").replace('\'', "''");
                    sets.push_str(&format!("SET {k} TO E'{lit}';"));
                    set_param(&mut c.params, k.clone(), v.clone());
                    if !c.vigil_set.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                        c.vigil_set.push(k.clone());
                    }
                }
            }
            c.aligned_for = Some(self.wanted.clone());
        }
        if !sets.is_empty() {
            self.sout.extend_from_slice(&simple::query(&sets));
            self.pending.push_back(Pending::Internal);
        }
        self.tx_status = b'I';
        self.server = Some(srv);
        Ok(())
    }

    /// Report an acquire failure to the client in place of the response it expects.
    pub fn acquire_failed(&mut self, e: &AcquireError, extended: bool) {
        let (code, msg) = match e {
            AcquireError::Timeout(d) => (
                "53300".to_owned(),
                format!(
                    "Vigil: no server connection for database \"{}\" user \"{}\" became free within {} ms (pool_size {})",
                    self.database,
                    self.user,
                    d.as_millis(),
                    self.pool.settings().size
                ),
            ),
            AcquireError::Upstream(u) => (
                u.sqlstate(),
                format!("Vigil: cannot reach the database server: {u}"),
            ),
        };
        self.inner.metrics.error(code.as_bytes());
        self.push_synth(status::error(&code, &msg));
        if extended {
            self.skip_until_sync = true;
        } else {
            self.push_synth(simple::ready_for_query(b'I'));
        }
    }

    /// Queue a proxy-made response; emitted in order.
    pub fn push_synth(&mut self, b: Bytes) {
        self.pending.push_back(Pending::Synth(b));
        self.drain_synth();
    }

    /// Emit leading synthesized responses (called around every server message: the common
    /// case, nothing to emit, is one inlined check).
    #[inline]
    pub fn drain_synth(&mut self) {
        if matches!(
            self.pending.front(),
            Some(Pending::Synth(_) | Pending::CopyBoundary)
        ) {
            self.drain_synth_slow();
        }
    }

    #[cold]
    fn drain_synth_slow(&mut self) {
        loop {
            match self.pending.front() {
                Some(Pending::Synth(_)) => {
                    if let Some(Pending::Synth(b)) = self.pending.pop_front() {
                        self.cout.extend_from_slice(&b);
                    }
                }
                Some(Pending::CopyBoundary) => {
                    self.pending.pop_front();
                }
                _ => break,
            }
        }
    }

    /// A Parse the server rejected (or skipped after an error): the statement does not exist.
    pub fn parse_failed(&mut self, server_name: Option<Arc<str>>, client_name: Option<String>) {
        let Some(n) = server_name else { return };
        if let Some(s) = self.server.as_mut() {
            s.conn().statements.remove(&n);
        }
        if let Some(c) = client_name {
            if self.statements.get(&c).is_some_and(|d| d.server_name == n) {
                self.statements.remove(&c);
            }
            // Messages already sent after it still use the server-side name; errors about them
            // are reported with the client's name.
            if self.failed_names.len() > 64 {
                self.failed_names.clear();
            }
            self.failed_names.insert(n, c);
        }
    }

    pub fn pin(&mut self, reason: PinReason) {
        if self.mode == PoolMode::Transaction && self.pinned.is_none() {
            self.pinned = Some(reason);
            self.inner.metrics.pin(reason);
            self.pool.stats.pinned.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(s) = self.server.as_mut() {
            s.conn().dirty = true;
        }
    }

    /// The server connection broke (or sent a FATAL error and closed).
    pub fn server_lost(&mut self, fatal_sent: Option<()>) {
        let Some(srv) = self.server.take() else {
            return;
        };
        drop(srv);
        self.pool
            .stats
            .clients_active
            .fetch_sub(1, Ordering::Relaxed);
        self.shared.detach_now();
        self.sout.clear();
        self.copy_in = false;
        let stateful = self.mode == PoolMode::Session || self.pinned.is_some();
        if stateful {
            if fatal_sent.is_none() {
                self.inner.metrics.error(b"08006");
                self.cout.extend_from_slice(&status::fatal(
                    "08006",
                    "Vigil: server connection lost; session state is gone",
                ));
            }
            self.pending.clear();
            self.closing = true;
            return;
        }
        let had_work = self
            .pending
            .iter()
            .any(|p| !matches!(p, Pending::Synth(_) | Pending::CopyBoundary));
        if had_work && fatal_sent.is_none() {
            self.inner.metrics.error(b"08006");
            self.cout.extend_from_slice(&status::error(
                "08006",
                "Vigil: server connection lost during the transaction; it was not committed",
            ));
        }
        let mut rfq = 0;
        for p in self.pending.drain(..) {
            if matches!(
                p,
                Pending::Sync | Pending::Query { .. } | Pending::FunctionCall
            ) {
                rfq += 1;
            }
        }
        for _ in 0..rfq {
            self.cout.extend_from_slice(&simple::ready_for_query(b'I'));
        }
        if self.unsynced {
            self.unsynced = false;
            self.skip_until_sync = true;
        }
        self.tx_status = b'I';
    }

    /// Client gone (or session over): roll back and return the server, or close it.
    async fn cleanup(&mut self) {
        self.inner.unregister_client(self);
        self.cache_cleanup();
        if let Some(mut srv) = self.server.take() {
            self.shared.attach(None).await;
            self.pool
                .stats
                .clients_active
                .fetch_sub(1, Ordering::Relaxed);
            let clean =
                self.pending.is_empty() && !self.copy_in && !self.unsynced && self.sout.is_empty();
            let needs_reset =
                self.mode == PoolMode::Session || self.pinned.is_some() || srv.conn_ref().dirty;
            let ok = clean && {
                let c = srv.conn();
                let mut sql = String::new();
                if self.tx_status != b'I' {
                    sql.push_str("ROLLBACK;");
                }
                if needs_reset {
                    sql.push_str("DISCARD ALL;");
                }
                if sql.is_empty() {
                    true
                } else {
                    match tokio::time::timeout(Duration::from_secs(5), c.run(&sql)).await {
                        Ok(Ok(_)) => {
                            if needs_reset {
                                c.settings_reset();
                            }
                            c.dirty = false;
                            true
                        }
                        _ => false,
                    }
                }
            };
            if ok {
                self.pool.checkin(srv);
            }
        }
        if self.pinned.is_some() {
            self.pool.stats.pinned.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use tokio::sync::watch;

    use super::ShutdownSignal;

    fn poll(f: &mut std::pin::Pin<&mut ShutdownSignal>) -> Poll<()> {
        f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    fn target(pid: i32) -> super::CancelTarget {
        super::CancelTarget {
            addr: "127.0.0.1:5432".parse().unwrap(),
            pid,
            secret: std::sync::Arc::from(&[1u8, 2, 3, 4][..]),
        }
    }

    #[test]
    fn pending_entries_stay_small() {
        // The queue holds one per message in flight; an inline ExecHook must not grow it.
        assert!(std::mem::size_of::<super::Pending>() <= 48);
    }

    #[test]
    fn a_server_is_not_released_while_a_cancel_for_it_is_sent() {
        let shared = super::ClientShared::default();
        assert!(shared.begin_cancel().is_none(), "nothing attached");
        let mut attach = pin!(shared.attach(Some(target(7))));
        let cx = &mut Context::from_waker(Waker::noop());
        assert_eq!(attach.as_mut().poll(cx), Poll::Ready(()));

        let c = shared.begin_cancel().expect("attached");
        assert_eq!(c.target.pid, 7);
        // Releasing (or attaching another server) waits for the cancel to be sent.
        let mut release = pin!(shared.attach(None));
        assert_eq!(release.as_mut().poll(cx), Poll::Pending);
        shared.detach_now();
        assert_eq!(release.as_mut().poll(cx), Poll::Pending, "still cancelling");
        drop(c);
        assert_eq!(release.as_mut().poll(cx), Poll::Ready(()));
        assert!(shared.begin_cancel().is_none(), "released");

        // Without a cancel in flight, detach_now clears at once.
        let mut attach = pin!(shared.attach(Some(target(8))));
        assert_eq!(attach.as_mut().poll(cx), Poll::Ready(()));
        shared.detach_now();
        assert!(shared.begin_cancel().is_none());
    }

    #[test]
    fn shutdown_signal_fires_on_true_and_on_a_dropped_sender() {
        let (tx, _) = watch::channel(false);
        let mut s = pin!(ShutdownSignal::new(&tx));
        assert_eq!(poll(&mut s), Poll::Pending);
        assert_eq!(poll(&mut s), Poll::Pending, "nothing changed");
        tx.send_replace(false);
        assert_eq!(poll(&mut s), Poll::Pending, "changed, still up");
        tx.send_replace(true);
        assert_eq!(poll(&mut s), Poll::Ready(()));

        let (tx, _) = watch::channel(false);
        let mut s = pin!(ShutdownSignal::new(&tx));
        assert_eq!(poll(&mut s), Poll::Pending);
        drop(tx);
        assert_eq!(poll(&mut s), Poll::Ready(()));

        let (tx, _) = watch::channel(true);
        let mut s = pin!(ShutdownSignal::new(&tx));
        assert_eq!(poll(&mut s), Poll::Ready(()), "already down");
    }
}
