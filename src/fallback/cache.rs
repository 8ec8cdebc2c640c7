use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;

use super::recover::{Failure, Recover, Served};

/// Marks a response served from the stale cache: how old it was. The HTTP integration puts
/// it in the response's extensions (and an `Age` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    /// Time since the response was received from the dependency.
    pub age: Duration,
}

/// What a [`StaleCache`] holds and has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CacheStats {
    /// Entries held.
    pub entries: usize,
    /// Bytes held (as measured by the size function).
    pub bytes: usize,
    /// Responses stored since creation.
    pub stored: u64,
    /// Stale responses served since creation.
    pub served: u64,
    /// Responses passed through uncached because they were over the per-entry cap.
    pub too_large: u64,
}

type KeyFn<Req, K> = Box<dyn Fn(&Req) -> Option<K> + Send + Sync>;
type MarkFn<Res> = Box<dyn Fn(&mut Res, Stale) + Send + Sync>;
type SizeFn<Res> = Box<dyn Fn(&Res) -> usize + Send + Sync>;

struct Entry<Res> {
    response: Res,
    at: Instant,
    bytes: usize,
    seq: u64,
}

struct Store<K, Res> {
    map: HashMap<K, Entry<Res>>,
    /// Keys in insertion order; an item whose `seq` no longer matches the map is a leftover of
    /// an overwritten entry and is skipped.
    order: VecDeque<(K, u64)>,
    bytes: usize,
    seq: u64,
}

/// Stale-if-error: keeps the last successful response per key and serves it, marked stale,
/// when a call for the same key fails, if it is at most `max_stale` old.
///
/// Cheap to clone: clones are handles on one cache. Bounded in entries and in bytes (the oldest entries go first); a response larger than
/// `max_entry_bytes` is passed through uncached (and the older entry for its key is dropped,
/// so the cache never serves a response older than one it refused). Only responses that
/// reached [`Recover::succeeded`], that is, classified as successes, are stored.
///
/// **The key must include everything that makes responses differ per caller** (tenant,
/// credentials): a response stored under one key is only ever served under that key.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::fallback::{FallbackLayer, StaleCache};
/// use tower::{Layer, Service, ServiceExt};
///
/// // Requests are (tenant, item); responses are Strings.
/// let cache = StaleCache::builder(|req: &(u32, u32)| Some(*req))
///     .max_stale(Duration::from_secs(60))
///     .size(|s: &String| s.len())
///     .build()
///     .unwrap();
/// let layer = FallbackLayer::new(cache);
/// let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
/// let flag = up.clone();
/// let mut svc = layer.layer(tower::service_fn(move |(t, i): (u32, u32)| {
///     let up = flag.load(std::sync::atomic::Ordering::SeqCst);
///     async move {
///         if up { Ok(format!("tenant {t} item {i}")) } else { Err(std::io::Error::other("down")) }
///     }
/// }));
/// assert_eq!(svc.ready().await.unwrap().call((1, 7)).await.unwrap(), "tenant 1 item 7");
/// up.store(false, std::sync::atomic::Ordering::SeqCst);
/// // Served from the cache while the dependency is down...
/// assert_eq!(svc.ready().await.unwrap().call((1, 7)).await.unwrap(), "tenant 1 item 7");
/// // ...but never under another key.
/// assert!(svc.ready().await.unwrap().call((2, 7)).await.is_err());
/// # }
/// ```
pub struct StaleCache<Req, Res, K> {
    inner: Arc<CacheInner<Req, Res, K>>,
}

impl<Req, Res, K> Clone for StaleCache<Req, Res, K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<Req, Res, K> fmt::Debug for StaleCache<Req, Res, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

struct CacheInner<Req, Res, K> {
    key: KeyFn<Req, K>,
    mark: MarkFn<Res>,
    size: SizeFn<Res>,
    limits: Limits,
    store: Mutex<Store<K, Res>>,
    /// `store.map.len()`, readable without the lock (for the entries gauge).
    entries: AtomicUsize,
    stored: AtomicU64,
    served: AtomicU64,
    too_large: AtomicU64,
}

impl<Req, Res, K> fmt::Debug for CacheInner<Req, Res, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleCache")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The bounds of a cache, shared by the builder and the cache it builds.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_stale: Duration,
    max_entries: usize,
    max_bytes: usize,
    max_entry_bytes: usize,
}

/// Builds a [`StaleCache`].
pub struct StaleCacheBuilder<Req, Res, K> {
    key: KeyFn<Req, K>,
    mark: MarkFn<Res>,
    size: SizeFn<Res>,
    limits: Limits,
}

impl<Req, Res, K> fmt::Debug for StaleCacheBuilder<Req, Res, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleCacheBuilder")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<Req, Res, K> StaleCache<Req, Res, K>
where
    K: Hash + Eq + Clone,
{
    /// A builder. `key` says under which key a request's response is stored and looked up;
    /// `None` means "do not cache this request". Defaults: `max_stale` 5 minutes, 10 000
    /// entries, 64 MiB, 1 MiB per entry, size = `size_of::<Res>()`, no stale mark.
    pub fn builder(
        key: impl Fn(&Req) -> Option<K> + Send + Sync + 'static,
    ) -> StaleCacheBuilder<Req, Res, K> {
        StaleCacheBuilder {
            key: Box::new(key),
            mark: Box::new(|_, _| {}),
            size: Box::new(|_| std::mem::size_of::<Res>()),
            limits: Limits {
                max_stale: Duration::from_secs(300),
                max_entries: 10_000,
                max_bytes: 64 << 20,
                max_entry_bytes: 1 << 20,
            },
        }
    }

    /// Entries, bytes and counters.
    pub fn stats(&self) -> CacheStats {
        self.inner.stats()
    }
}

impl<Req, Res, K> CacheInner<Req, Res, K>
where
    K: Hash + Eq + Clone,
{
    fn stats(&self) -> CacheStats {
        let store = self.lock();
        CacheStats {
            entries: store.map.len(),
            bytes: store.bytes,
            stored: self.stored.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            too_large: self.too_large.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store<K, Res>> {
        // No user code runs under this lock, so a poisoned store is still consistent.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, key: K, response: Res, bytes: usize) {
        let mut store = self.lock();
        let store = &mut *store;
        store.seq += 1;
        let seq = store.seq;
        let entry = Entry {
            response,
            at: Instant::now(),
            bytes,
            seq,
        };
        if let Some(old) = store.map.insert(key.clone(), entry) {
            store.bytes -= old.bytes;
        }
        store.bytes += bytes;
        store.order.push_back((key, seq));
        while store.map.len() > self.limits.max_entries || store.bytes > self.limits.max_bytes {
            let Some((k, s)) = store.order.pop_front() else {
                break;
            };
            if store.map.get(&k).is_some_and(|e| e.seq == s) {
                if let Some(old) = store.map.remove(&k) {
                    store.bytes -= old.bytes;
                }
            }
        }
        // Leftovers of overwritten entries: keep the order queue proportional to the map.
        if store.order.len() > 2 * store.map.len() + 64 {
            let map = &store.map;
            store
                .order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
        self.entries.store(store.map.len(), Ordering::Relaxed);
    }

    fn remove(&self, key: &K) {
        let mut store = self.lock();
        if let Some(old) = store.map.remove(key) {
            store.bytes -= old.bytes;
        }
        self.entries.store(store.map.len(), Ordering::Relaxed);
    }
}

impl<Req, Res, K> StaleCacheBuilder<Req, Res, K>
where
    K: Hash + Eq + Clone,
{
    /// The oldest response that may be served (`> 0`).
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.limits.max_stale = max_stale;
        self
    }

    /// The most entries kept (`>= 1`).
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.limits.max_entries = max_entries;
        self
    }

    /// The most bytes kept, as measured by the size function (`>= max_entry_bytes`).
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.limits.max_bytes = max_bytes;
        self
    }

    /// Larger responses are passed through uncached (`>= 1`).
    pub fn max_entry_bytes(mut self, max_entry_bytes: usize) -> Self {
        self.limits.max_entry_bytes = max_entry_bytes;
        self
    }

    /// How many bytes a response weighs.
    pub fn size(mut self, size: impl Fn(&Res) -> usize + Send + Sync + 'static) -> Self {
        self.size = Box::new(size);
        self
    }

    /// Marks a response served stale (for example, sets a field or an extension).
    pub fn mark(mut self, mark: impl Fn(&mut Res, Stale) + Send + Sync + 'static) -> Self {
        self.mark = Box::new(mark);
        self
    }

    /// Validates the bounds and builds the cache.
    pub fn build(self) -> Result<StaleCache<Req, Res, K>, ConfigError> {
        if self.limits.max_stale.is_zero() {
            return Err(ConfigError::new(
                "max_stale",
                "must be > 0",
                self.limits.max_stale,
            ));
        }
        if self.limits.max_entries == 0 {
            return Err(ConfigError::new("max_entries", "must be at least 1", 0));
        }
        if self.limits.max_entry_bytes == 0 {
            return Err(ConfigError::new("max_entry_bytes", "must be at least 1", 0));
        }
        if self.limits.max_bytes < self.limits.max_entry_bytes {
            return Err(ConfigError::new(
                "max_bytes",
                "must be at least max_entry_bytes",
                self.limits.max_bytes,
            ));
        }
        Ok(StaleCache {
            inner: Arc::new(CacheInner {
                key: self.key,
                mark: self.mark,
                size: self.size,
                limits: self.limits,
                store: Mutex::new(Store {
                    map: HashMap::new(),
                    order: VecDeque::new(),
                    bytes: 0,
                    seq: 0,
                }),
                entries: AtomicUsize::new(0),
                stored: AtomicU64::new(0),
                served: AtomicU64::new(0),
                too_large: AtomicU64::new(0),
            }),
        })
    }
}

impl<Req, Res, K> StaleCache<Req, Res, K>
where
    Res: Clone,
    K: Hash + Eq + Clone,
{
    /// The response kept for `key`, with its age, if not older than `max_stale`; counted as
    /// served.
    pub(crate) fn lookup(&self, key: &K) -> Option<(Res, Duration)> {
        let found = {
            let store = self.inner.lock();
            store.map.get(key).and_then(|e| {
                let age = e.at.elapsed();
                (age <= self.inner.limits.max_stale).then(|| (e.response.clone(), age))
            })
        };
        if found.is_some() {
            self.inner.served.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keeps `response` for `key`, unless it is over the per-entry cap: then the key's older
    /// entry goes too (it no longer stands for what the dependency answers).
    pub(crate) fn store(&self, key: K, response: Res, bytes: usize) {
        if bytes > self.inner.limits.max_entry_bytes {
            self.too_large(&key);
            return;
        }
        self.inner.insert(key, response, bytes);
        self.inner.stored.fetch_add(1, Ordering::Relaxed);
    }

    /// A response for `key` was too large to keep.
    pub(crate) fn too_large(&self, key: &K) {
        self.inner.too_large.fetch_add(1, Ordering::Relaxed);
        self.inner.remove(key);
    }

    /// The per-entry cap in bytes.
    #[cfg(feature = "http")]
    pub(crate) fn max_entry_bytes(&self) -> usize {
        self.inner.limits.max_entry_bytes
    }
}

impl<Req, Res, K> Recover<Req, Res> for StaleCache<Req, Res, K>
where
    Res: Clone,
    K: Hash + Eq + Clone,
{
    type Kept = Option<K>;

    fn keep(&self, req: &Req) -> Option<K> {
        (self.inner.key)(req)
    }

    fn recover(&self, kept: Option<K>, failure: Failure<Res>) -> Result<Res, Failure<Res>> {
        self.recover_served(kept, failure)
            .map(|(response, _)| response)
    }

    fn recover_served(
        &self,
        kept: Option<K>,
        failure: Failure<Res>,
    ) -> Result<(Res, Served), Failure<Res>> {
        let Some(key) = kept else {
            return Err(failure);
        };
        match self.lookup(&key) {
            Some((mut response, age)) => {
                (self.inner.mark)(&mut response, Stale { age });
                Ok((response, Served::Stale(Stale { age })))
            }
            None => Err(failure),
        }
    }

    fn succeeded(&self, kept: Option<K>, response: &mut Res) {
        let Some(key) = kept else { return };
        let bytes = (self.inner.size)(response);
        self.store(key, response.clone(), bytes);
    }

    fn cached_entries(&self) -> Option<usize> {
        Some(self.inner.entries.load(Ordering::Relaxed))
    }
}
