//! Values and table generations.
//!
//! - L1: a moka cache (bytes-weighted, per-entry TTL) in every replica.
//! - L2 (backend `redis`): `{prefix}v:<key>` values with a TTL, `{prefix}g:<db>:<table>`
//!   generations (`INCR` on write), `{prefix}g:<db>:*` the database-wide generation, and
//!   `{prefix}epoch`, a random number set when absent: a Redis that restarted empty gets a new
//!   epoch, so no key built from the old generations can match again.
//! - `{prefix}l:<key>`: the fill lock of a missed key (see [`super::stampede`]).
//! - Invalidations are published on `{prefix}inval`; every replica evicts the L1 entries of
//!   those tables (entries are unreachable anyway: generations are read from Redis for each
//!   lookup, which is what makes reads after an acknowledged write correct across replicas).
//! - Circuit breaker: a Redis error or timeout makes the cache bypass for `redis_retry`, then
//!   try again. Bumps that failed are kept and retried first; until they succeed this replica
//!   serves nothing from the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::key::Key;
use super::stampede::FillLock;
use super::{Backend, CacheSettings};

/// The cache's name of a table: the last dotted part (so `public.deals` and `deals` share a
/// generation; writes to `a.t` also invalidate `b.t`, which is safe).
pub fn table_name(t: &str) -> String {
    t.rsplit('.')
        .next()
        .unwrap_or(t)
        .trim_matches('"')
        .to_owned()
}

/// A cached response.
#[derive(Debug)]
pub struct Entry {
    /// The response bytes (lz4 when `compressed`).
    pub data: Bytes,
    pub compressed: bool,
    /// Upstream time of the fill (the time a hit saves).
    pub fill_ns: u64,
    /// Tables read (for L1 eviction on invalidation messages).
    pub tables: Arc<[String]>,
    pub ttl: Duration,
    /// An observe-only marker (no data).
    pub observe: bool,
}

impl Entry {
    /// The response bytes, decompressed.
    pub fn bytes(&self) -> Option<Bytes> {
        if self.compressed {
            lz4_flex::decompress_size_prepended(&self.data)
                .ok()
                .map(Bytes::from)
        } else {
            Some(self.data.clone())
        }
    }

    fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.data.len() + 10);
        b.put_u8(u8::from(self.compressed) | (u8::from(self.observe) << 1));
        b.put_u64(self.fill_ns);
        b.extend_from_slice(&self.data);
        b.freeze()
    }

    fn decode(b: &[u8], tables: Arc<[String]>, ttl: Duration) -> Option<Entry> {
        if b.len() < 9 {
            return None;
        }
        Some(Entry {
            compressed: b[0] & 1 != 0,
            observe: b[0] & 2 != 0,
            fill_ns: u64::from_be_bytes(b[1..9].try_into().ok()?),
            data: Bytes::copy_from_slice(&b[9..]),
            tables,
            ttl,
        })
    }
}

/// Current generations for a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gens {
    pub epoch: u64,
    pub global: u64,
    pub tables: Vec<u64>,
}

/// Redis is down, slow or has unflushed bumps: bypass.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("the cache store (Redis) is unavailable")]
pub struct Unavailable;

struct PerEntryTtl;

impl moka::Expiry<Key, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(&self, _: &Key, v: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

pub(super) struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    down_until: Mutex<Option<Instant>>,
    /// Bumps that failed: (database, tables, database-wide).
    pending: Mutex<Vec<(String, Vec<String>, bool)>>,
}

pub(crate) struct Store {
    l1: moka::sync::Cache<Key, Arc<Entry>>,
    mem_gens: Mutex<HashMap<String, u64>>,
    pub(super) redis: Option<Redis>,
    pub(super) prefix: String,
    timeout: Duration,
    retry: Duration,
    pub(crate) redis_errors: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn gen_key(prefix: &str, db: &str, table: &str) -> String {
    format!("{prefix}g:{db}:{table}")
}

/// Add a bump to `pipe`: `INCR` the generations, then tell every replica to evict its L1.
pub(super) fn add_bump(
    pipe: &mut redis::Pipeline,
    prefix: &str,
    db: &str,
    tables: &[String],
    global: bool,
) {
    if global {
        pipe.cmd("INCR").arg(gen_key(prefix, db, "*")).ignore();
    }
    for t in tables {
        pipe.cmd("INCR").arg(gen_key(prefix, db, t)).ignore();
    }
    let msg = if global {
        format!("{db}\t*")
    } else {
        format!("{db}\t{}", tables.join("\t"))
    };
    pipe.cmd("PUBLISH")
        .arg(format!("{prefix}inval"))
        .arg(msg)
        .ignore();
}

fn epoch_key(prefix: &str) -> String {
    format!("{prefix}epoch")
}

/// Add what invalidates every entry of every database to `pipe`: a new epoch (no key built
/// from the old one can match again), and every replica evicts its whole L1.
pub(super) fn add_new_epoch(pipe: &mut redis::Pipeline, prefix: &str) {
    pipe.cmd("SET")
        .arg(epoch_key(prefix))
        .arg(rand::random::<u64>() >> 1)
        .ignore();
    pipe.cmd("PUBLISH")
        .arg(format!("{prefix}inval"))
        .arg("*\t*")
        .ignore();
}

impl Store {
    pub fn new(s: &CacheSettings) -> Result<Store, redis::RedisError> {
        let l1 = moka::sync::Cache::builder()
            .max_capacity(s.l1_bytes)
            .weigher(|_k: &Key, v: &Arc<Entry>| (v.data.len() + 96).min(u32::MAX as usize) as u32)
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .build();
        let redis = match &s.backend {
            Backend::Memory => None,
            Backend::Redis { url } => {
                let client = redis::Client::open(url.as_str())?;
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(200)))
                    .set_response_timeout(Some(s.redis_timeout.max(Duration::from_millis(50))))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), cfg)?;
                Some(Redis {
                    client,
                    conn,
                    down_until: Mutex::new(None),
                    pending: Mutex::new(Vec::new()),
                })
            }
        };
        Ok(Store {
            l1,
            mem_gens: Mutex::new(HashMap::new()),
            redis,
            prefix: s.prefix.clone(),
            timeout: s.redis_timeout,
            retry: s.redis_retry,
            redis_errors: AtomicU64::new(0),
        })
    }

    pub fn is_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Is the Redis circuit open (bypassing)?
    pub fn redis_down(&self) -> bool {
        self.redis.as_ref().is_some_and(|r| {
            lock(&r.down_until).is_some_and(|t| Instant::now() < t) || !lock(&r.pending).is_empty()
        })
    }

    pub fn l1_bytes(&self) -> u64 {
        self.l1.weighted_size()
    }

    pub fn l1_entries(&self) -> u64 {
        self.l1.entry_count()
    }

    pub fn clear_l1(&self) {
        self.l1.invalidate_all();
    }

    fn failed(&self, r: &Redis) {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
        *lock(&r.down_until) = Some(Instant::now() + self.retry);
    }

    /// Run one Redis pipeline within the timeout, honouring the circuit breaker.
    pub(super) async fn run<T: redis::FromRedisValue>(
        &self,
        r: &Redis,
        pipe: &redis::Pipeline,
    ) -> Result<T, Unavailable> {
        if lock(&r.down_until).is_some_and(|t| Instant::now() < t) {
            return Err(Unavailable);
        }
        let mut conn = r.conn.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            _ => {
                self.failed(r);
                Err(Unavailable)
            }
        }
    }

    /// Retry bumps that failed; Ok when none is left.
    async fn flush_pending(&self, r: &Redis) -> Result<(), Unavailable> {
        let pending: Vec<_> = std::mem::take(&mut *lock(&r.pending));
        for (i, (db, tables, global)) in pending.iter().enumerate() {
            if self.bump_redis(r, db, tables, *global).await.is_err() {
                let mut p = lock(&r.pending);
                let rest = pending[i..].to_vec();
                p.splice(0..0, rest);
                return Err(Unavailable);
            }
        }
        Ok(())
    }

    /// The current generations of `tables` (cache names) in `db`.
    pub async fn gens(&self, db: &str, tables: &[String]) -> Result<Gens, Unavailable> {
        let Some(r) = &self.redis else {
            let g = lock(&self.mem_gens);
            let get = |t: &str| g.get(&format!("{db}\0{t}")).copied().unwrap_or(0);
            return Ok(Gens {
                epoch: 0,
                global: get("*"),
                tables: tables.iter().map(|t| get(t)).collect(),
            });
        };
        if !lock(&r.pending).is_empty() {
            self.flush_pending(r).await?;
        }
        let epoch_key = epoch_key(&self.prefix);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&epoch_key)
            .arg(rand::random::<u64>() >> 1)
            .arg("NX")
            .ignore();
        let mut mget = redis::cmd("MGET");
        mget.arg(&epoch_key).arg(gen_key(&self.prefix, db, "*"));
        for t in tables {
            mget.arg(gen_key(&self.prefix, db, t));
        }
        pipe.add_command(mget);
        let (vals,): (Vec<Option<u64>>,) = self.run(r, &pipe).await?;
        if vals.len() != tables.len() + 2 {
            return Err(Unavailable);
        }
        Ok(Gens {
            epoch: vals[0].ok_or(Unavailable)?,
            global: vals[1].unwrap_or(0),
            tables: vals[2..].iter().map(|v| v.unwrap_or(0)).collect(),
        })
    }

    async fn bump_redis(
        &self,
        r: &Redis,
        db: &str,
        tables: &[String],
        global: bool,
    ) -> Result<(), Unavailable> {
        let mut pipe = redis::pipe();
        add_bump(&mut pipe, &self.prefix, db, tables, global);
        // A bump is a write's acknowledgement path: it is retried past the breaker once.
        let mut conn = r.conn.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            _ => {
                self.failed(r);
                Err(Unavailable)
            }
        }
    }

    /// Advance the generations of `tables` (and of the whole database when `global`).
    /// On Redis failure the bump is kept and retried before this replica serves again.
    pub async fn bump(&self, db: &str, tables: &[String], global: bool) -> Result<(), Unavailable> {
        let Some(r) = &self.redis else {
            self.bump_memory(db, tables, global);
            return Ok(());
        };
        self.evict_l1(db, tables, global);
        if !lock(&r.pending).is_empty() {
            lock(&r.pending).push((db.to_owned(), tables.to_vec(), global));
            return self.flush_pending(r).await;
        }
        match self.bump_redis(r, db, tables, global).await {
            Ok(()) => Ok(()),
            Err(e) => {
                lock(&r.pending).push((db.to_owned(), tables.to_vec(), global));
                Err(e)
            }
        }
    }

    /// The in-process bump (memory backend): immediate.
    pub fn bump_memory(&self, db: &str, tables: &[String], global: bool) {
        let mut g = lock(&self.mem_gens);
        if global {
            *g.entry(format!("{db}\0*")).or_insert(0) += 1;
        }
        for t in tables {
            *g.entry(format!("{db}\0{t}")).or_insert(0) += 1;
        }
    }

    fn evict_l1(&self, _db: &str, tables: &[String], global: bool) {
        if global {
            self.l1.invalidate_all();
            return;
        }
        let tables: Vec<String> = tables.to_vec();
        let _ = self
            .l1
            .invalidate_entries_if(move |_, v| v.tables.iter().any(|t| tables.contains(t)));
    }

    /// L1, then L2 (an L2 hit is copied into L1).
    pub async fn get(
        &self,
        key: &Key,
        tables: &Arc<[String]>,
    ) -> Result<Option<Arc<Entry>>, Unavailable> {
        if let Some(e) = self.l1.get(key) {
            return Ok(Some(e));
        }
        let Some(r) = &self.redis else {
            return Ok(None);
        };
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(self.value_key(key));
        pipe.cmd("PTTL").arg(self.value_key(key));
        let (v, ttl): (Option<Vec<u8>>, i64) = self.run(r, &pipe).await?;
        let Some(v) = v else { return Ok(None) };
        let ttl = Duration::from_millis(ttl.max(1) as u64);
        let Some(e) = Entry::decode(&v, tables.clone(), ttl) else {
            return Ok(None);
        };
        let e = Arc::new(e);
        self.l1.insert(*key, e.clone());
        Ok(Some(e))
    }

    pub(super) fn value_key(&self, key: &Key) -> String {
        format!("{}v:{}", self.prefix, hex::encode(key))
    }

    /// Store an entry in L1 now and in L2 in the background (never delays the client). The
    /// fill lock this replica holds for the key, if any, is released right after the value is
    /// stored (same pipeline), so a replica waiting for it finds the value.
    pub fn put(self: &Arc<Self>, key: Key, entry: Entry, lock: Option<FillLock>) {
        let entry = Arc::new(entry);
        self.l1.insert(key, entry.clone());
        if self.redis.is_none() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let Some(r) = &store.redis else { return };
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(store.value_key(&key))
                .arg(entry.encode().as_ref())
                .arg("PX")
                .arg(entry.ttl.as_millis().max(1) as u64)
                .ignore();
            if let Some(l) = &lock {
                l.add_release(&mut pipe);
            }
            if store.run::<()>(r, &pipe).await.is_ok()
                && let Some(l) = lock
            {
                l.released();
            }
        });
    }

    /// Follow the invalidation channel (Redis backend): evict L1 entries of bumped tables.
    pub fn spawn_subscriber(self: &Arc<Self>) -> Option<tokio::task::AbortHandle> {
        self.redis.as_ref()?;
        let weak = Arc::downgrade(self);
        let h = tokio::spawn(async move {
            loop {
                let client = match weak.upgrade() {
                    Some(s) => s.redis.as_ref().map(|r| r.client.clone()),
                    None => return,
                };
                let Some(client) = client else { return };
                let channel = match weak.upgrade() {
                    Some(s) => format!("{}inval", s.prefix),
                    None => return,
                };
                if let Ok(Ok(mut ps)) =
                    tokio::time::timeout(Duration::from_secs(1), client.get_async_pubsub()).await
                    && ps.subscribe(&channel).await.is_ok()
                {
                    let mut stream = ps.on_message();
                    while let Some(msg) = stream.next().await {
                        let Some(s) = weak.upgrade() else { return };
                        let payload: String = msg.get_payload().unwrap_or_default();
                        let mut parts = payload.split('\t');
                        let db = parts.next().unwrap_or("").to_owned();
                        let tables: Vec<String> = parts.map(str::to_owned).collect();
                        let global = tables.iter().any(|t| t == "*");
                        s.evict_l1(&db, &tables, global);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Some(h.abort_handle())
    }
}
