//! Stampede protection: concurrent misses on one key run the statement upstream once.
//!
//! - In the replica: the first session that misses a key owns the key's flight; the others
//!   wait for it (up to `flight_wait`) and look up again.
//! - Across replicas (backend `redis`): the flight's owner tries the key's fill lock,
//!   `SET {prefix}l:<entry key> <token> NX PX <ttl>`. The entry key is versioned (it includes the
//!   generation of every table read), so a lock never spans a write. The holder runs the
//!   statement, stores the entry and, in the same pipeline, releases the lock only if it still
//!   holds its token (compare-and-delete script). A replica that finds the lock taken polls for
//!   the entry up to `fill_lock_wait`: when it appears the lookup starts again with freshly read
//!   generations (so an entry of generations a write has bumped since is never served); when
//!   the holder gave up (lock gone, no entry) it tries the lock itself; when the wait runs out
//!   it runs the statement itself (`vigil_cache_fill_wait_timeouts_total`).
//! - Any Redis error or timeout on the way: the statement bypasses the cache
//!   (`store_unavailable`), as on every other Redis failure. Only eligible reads reach this
//!   module: a write never waits for a lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::key::Key;
use super::stats::Stats;
use super::store::{Store, Unavailable};
use super::{Cache, lock};

/// Compare-and-delete: drop the lock only if it still holds our token.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Polling for another replica's fill: first pause, and the longest.
const POLL_FIRST: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(20);

/// Removes its single-flight slot when dropped (waiters then look again).
pub(crate) struct FlightGuard {
    cache: Arc<Cache>,
    key: Key,
    _tx: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        lock(&self.cache.flights).remove(&self.key);
    }
}

/// A Redis fill lock this replica holds; released when the entry is stored, or on drop (the
/// fill was abandoned: too large, an error, the client left).
pub(crate) struct FillLock {
    store: Arc<Store>,
    /// None once released.
    key: Option<String>,
    token: String,
}

impl FillLock {
    /// Add the compare-and-delete to `pipe` (after the entry's `SET`).
    pub(super) fn add_release(&self, pipe: &mut redis::Pipeline) {
        if let Some(k) = &self.key {
            pipe.cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(k)
                .arg(&self.token)
                .ignore();
        }
    }

    /// The release ran (with the entry's `SET`).
    pub(super) fn released(mut self) {
        self.key = None;
    }
}

impl Drop for FillLock {
    fn drop(&mut self) {
        if self.key.is_none() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // The lock's TTL ends it.
        };
        let mut pipe = redis::pipe();
        self.add_release(&mut pipe);
        let store = self.store.clone();
        rt.spawn(async move {
            if let Some(r) = &store.redis {
                let _ = store.run::<()>(r, &pipe).await;
            }
        });
    }
}

/// What a miss does once it owns the key's flight in this replica.
pub(crate) enum Claim {
    /// Run the statement and fill, holding the Redis fill lock when there is one.
    Fill(Option<FillLock>),
    /// Another replica stored the entry: look up again.
    Filled,
}

impl Store {
    fn lock_key(&self, key: &Key) -> String {
        format!("{}l:{}", self.prefix, hex::encode(key))
    }

    /// `SET NX PX`: did we get the lock?
    async fn try_lock(
        &self,
        lock_key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        let Some(r) = &self.redis else {
            return Ok(true);
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(lock_key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let (set,): (Option<String>,) = self.run(r, &pipe).await?;
        Ok(set.is_some())
    }

    /// Take the key's fill lock, or wait (up to `wait`) for the replica holding it to store the
    /// entry. Memory backend or `wait` zero: fill without a lock.
    pub(crate) async fn claim(
        self: &Arc<Self>,
        key: &Key,
        wait: Duration,
        ttl: Duration,
        stats: &Stats,
    ) -> Result<Claim, Unavailable> {
        let Some(r) = &self.redis else {
            return Ok(Claim::Fill(None));
        };
        if wait.is_zero() {
            return Ok(Claim::Fill(None));
        }
        let lock_key = self.lock_key(key);
        let token = format!("{:016x}", rand::random::<u64>());
        let held = |key| FillLock {
            store: self.clone(),
            key: Some(key),
            token: token.clone(),
        };
        if self.try_lock(&lock_key, &token, ttl).await? {
            return Ok(Claim::Fill(Some(held(lock_key))));
        }
        stats.fill_wait();
        let deadline = Instant::now() + wait;
        let value_key = self.value_key(key);
        let mut pause = POLL_FIRST;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                stats.fill_wait_timeout();
                return Ok(Claim::Fill(None));
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(POLL_MAX);
            let mut pipe = redis::pipe();
            pipe.cmd("EXISTS").arg(&value_key);
            pipe.cmd("EXISTS").arg(&lock_key);
            let (stored, locked): (bool, bool) = self.run(r, &pipe).await?;
            if stored {
                return Ok(Claim::Filled);
            }
            // The holder gave up without storing: try to become the one fill.
            if !locked && self.try_lock(&lock_key, &token, ttl).await? {
                return Ok(Claim::Fill(Some(held(lock_key))));
            }
        }
    }
}

/// The outcome of a miss's flight.
pub(crate) enum Flight {
    /// This session runs the statement and fills.
    Fill {
        guard: FlightGuard,
        lock: Option<FillLock>,
    },
    /// A fill finished (or the wait for it ran out): look up again.
    Again,
    /// Redis failed: bypass.
    Unavailable,
}

impl Cache {
    /// Become the one fill of `key` in this replica (and, unless `local_only`, across replicas),
    /// or wait for the fill in flight.
    pub(crate) async fn flight(self: &Arc<Self>, key: Key, local_only: bool) -> Flight {
        let owner = {
            let mut f = lock(&self.flights);
            match f.get(&key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(());
                    f.insert(key, rx);
                    Ok(tx)
                }
            }
        };
        let tx = match owner {
            Ok(tx) => tx,
            Err(mut rx) => {
                let _ = tokio::time::timeout(self.settings.flight_wait, rx.changed()).await;
                return Flight::Again;
            }
        };
        let guard = FlightGuard {
            cache: self.clone(),
            key,
            _tx: tx,
        };
        if local_only {
            return Flight::Fill { guard, lock: None };
        }
        let s = &self.settings;
        let ttl = s.flight_wait.max(s.fill_lock_wait);
        match self
            .store
            .claim(&key, s.fill_lock_wait, ttl, &self.stats)
            .await
        {
            Ok(Claim::Fill(lock)) => Flight::Fill { guard, lock },
            Ok(Claim::Filled) => Flight::Again,
            Err(Unavailable) => Flight::Unavailable,
        }
    }
}
