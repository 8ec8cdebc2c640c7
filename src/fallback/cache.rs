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
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::fallback::{Failure, Recover, Stale, StaleCache};
///
/// /// A response that can say it was served stale.
/// #[derive(Clone, Debug, PartialEq)]
/// struct Page {
///     body: String,
///     stale_for: Option<Duration>,
/// }
///
/// let cache = StaleCache::builder(|path: &&str| Some(path.to_string()))
///     .mark(|page: &mut Page, stale: Stale| page.stale_for = Some(stale.age))
///     .build()
///     .unwrap();
/// let mut fresh = Page {
///     body: "catalog".into(),
///     stale_for: None,
/// };
/// cache.succeeded(cache.keep(&"/catalog"), &mut fresh);
///
/// tokio::time::advance(Duration::from_secs(42)).await;
/// let served = cache
///     .recover(cache.keep(&"/catalog"), Failure::Error("down".into()))
///     .unwrap();
/// assert_eq!(
///     served,
///     Page {
///         body: "catalog".into(),
///         stale_for: Some(Duration::from_secs(42))
///     }
/// );
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    /// Time since the response was received from the dependency; from the HTTP stale cache,
    /// plus the `Age` it came with (an upstream cache's): what its `Age` header says, and what
    /// `max_stale` bounds.
    pub age: Duration,
}

/// What a [`StaleCache`] holds and has done.
///
/// ```
/// use palisade::fallback::{CacheStats, Failure, Recover, StaleCache};
///
/// let cache = StaleCache::builder(|id: &u32| Some(*id))
///     .size(|s: &String| s.len())
///     .max_entry_bytes(8)
///     .build()
///     .unwrap();
/// for (id, body) in [(1, "small"), (2, "far too large")] {
///     let mut response = body.to_owned();
///     cache.succeeded(cache.keep(&id), &mut response);
/// }
/// let _ = cache.recover(cache.keep(&1), Failure::Error("down".into()));
/// assert_eq!(
///     cache.stats(),
///     CacheStats {
///         entries: 1,
///         bytes: 5,
///         stored: 1,
///         served: 1,
///         too_large: 1
///     }
/// );
/// ```
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
    /// When the response's head arrived (its age counts from there).
    at: Instant,
    /// The order its head arrived in, among all the cache's: it stands against any response
    /// whose head came before (clocks can tie; this cannot).
    head: u64,
    bytes: usize,
    seq: u64,
}

/// When a response's head arrived, and in what order among the cache's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current {
    at: Instant,
    head: u64,
}

struct Store<K, Res> {
    map: HashMap<K, Entry<Res>>,
    /// Keys in insertion order; an item whose `seq` no longer matches the map is a leftover of
    /// an overwritten entry and is skipped.
    order: VecDeque<(K, u64)>,
    /// The entries' bytes, in 128 bits: two entries near `usize::MAX / 2` each (a size function
    /// and bounds set that high) would overflow a `usize` before the eviction brings it down.
    bytes: u128,
    seq: u64,
    /// Refusals (a response the cache may not keep, or one too large), each with its head's
    /// place: a response whose head came before it, and whose body ends after it, is not kept.
    /// Apart from the entries, so that they never push a response out; at most
    /// [`MAX_REFUSALS`], the oldest forgotten first.
    refusals: HashMap<K, u64>,
    refusal_order: VecDeque<(K, u64)>,
}

/// The refusals a cache remembers. Forgetting one matters only for a body whose head came
/// before it and that is still being read after this many later refusals.
const MAX_REFUSALS: usize = 1024;

/// Stale-if-error: keeps the last successful response per key and serves it, marked stale,
/// when a call for the same key fails, if it is at most `max_stale` old.
///
/// Cheap to clone: clones are handles on one cache. Bounded in entries and in bytes (the oldest entries go first); a response larger than
/// `max_entry_bytes` is passed through uncached (and the older entry for its key is dropped,
/// so the cache never serves a response older than one it refused; the last 1 024 refused keys
/// are remembered for that, outside `max_bytes`). Only responses that
/// reached [`Recover::succeeded`], that is, classified as successes, are stored.
///
/// **The key must include everything that makes responses differ per caller** (tenant,
/// credentials): a response stored under one key is only ever served under that key.
///
/// A response is served as a clone, made under the cache's lock (which every recovery and
/// every stored response of this cache takes): keep `Res` cheap to clone (`Bytes`, an `Arc`),
/// or callers recovering at once during an outage wait on each other's copies.
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
    /// The responses kept, readable without the lock (for the entries gauge).
    entries: AtomicUsize,
    /// The next head's place in [`Current::head`] order.
    heads: AtomicU64,
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
///
/// ```
/// use std::time::Duration;
/// use palisade::fallback::StaleCache;
///
/// let cache = StaleCache::builder(|req: &(String, u32)| Some(req.clone())) // (tenant, item)
///     .max_stale(Duration::from_secs(600))
///     .max_entries(1_000)
///     .max_bytes(1 << 20)
///     .max_entry_bytes(64 << 10)
///     .size(|response: &Vec<u8>| response.len())
///     .build()
///     .unwrap();
/// assert_eq!(cache.stats().entries, 0);
/// ```
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
    ///
    /// **Set [`size`](StaleCacheBuilder::size) for a response that owns heap memory** (a
    /// `String`, a `Vec`, `Bytes`, a struct holding them): `size_of` counts only its inline
    /// part (24 bytes for any `Vec<u8>`), so without it `max_entry_bytes` and `max_bytes` do
    /// not bound what such responses hold, and only `max_entries` does.
    ///
    /// ```
    /// use palisade::fallback::{Failure, Recover, StaleCache};
    ///
    /// // GET requests are cached per path; anything else is not.
    /// let cache = StaleCache::builder(|req: &(&str, &str)| match req {
    ///     ("GET", path) => Some(path.to_string()),
    ///     _ => None,
    /// })
    /// .build()
    /// .unwrap();
    /// let mut page = String::from("<html>");
    /// cache.succeeded(cache.keep(&("GET", "/")), &mut page);
    /// cache.succeeded(cache.keep(&("POST", "/")), &mut String::from("created"));
    /// assert_eq!(cache.stats().entries, 1);
    /// assert!(
    ///     cache
    ///         .recover(cache.keep(&("GET", "/")), Failure::Error("down".into()))
    ///         .is_ok()
    /// );
    /// assert!(
    ///     cache
    ///         .recover(cache.keep(&("POST", "/")), Failure::Error("down".into()))
    ///         .is_err()
    /// );
    /// ```
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
    ///
    /// ```
    /// use palisade::fallback::{Recover, StaleCache};
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id)).build().unwrap();
    /// cache.succeeded(cache.keep(&7), &mut String::from("item 7"));
    /// let stats = cache.stats();
    /// assert_eq!((stats.entries, stats.stored, stats.served), (1, 1, 0));
    /// ```
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
            bytes: usize::try_from(store.bytes).unwrap_or(usize::MAX),
            stored: self.stored.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            too_large: self.too_large.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store<K, Res>> {
        // The user code run under this lock (the key's `Hash`, `Eq`, `Clone` and `Drop`, a
        // response's `Clone` when served) changes nothing if it panics; a response is dropped
        // after the lock is released. So a poisoned store is still consistent.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `response` under `key`, unless the key holds a response or a refusal whose head
    /// came later (two calls for one key whose bodies ended out of order: the later head
    /// wins). `false` when it was not kept.
    fn insert(&self, key: K, response: Res, bytes: usize, current: Current) -> bool {
        // Responses replaced or evicted are dropped after the lock is released: dropping a
        // response runs its code, which must not leave the store half-updated if it panics.
        let mut replaced = None;
        let mut evicted = Vec::new();
        let mut guard = self.lock();
        let store = &mut *guard;
        if store.map.get(&key).is_some_and(|e| e.head > current.head)
            || store.refusals.get(&key).is_some_and(|&h| h > current.head)
        {
            drop(guard);
            drop(response);
            return false;
        }
        // A refusal older than this response stays: this response keeps out what came before
        // it only while it is kept, and it may be evicted before a body whose head came before
        // the refusal ends.
        store.seq += 1;
        let seq = store.seq;
        let entry = Entry {
            response,
            at: current.at,
            head: current.head,
            bytes,
            seq,
        };
        if let Some(old) = store.map.insert(key.clone(), entry) {
            store.bytes -= old.bytes as u128;
            replaced = Some(old);
        }
        store.bytes += bytes as u128;
        store.order.push_back((key, seq));
        while store.map.len() > self.limits.max_entries
            || store.bytes > self.limits.max_bytes as u128
        {
            let Some((k, s)) = store.order.pop_front() else {
                break;
            };
            if store.map.get(&k).is_some_and(|e| e.seq == s)
                && let Some(old) = store.map.remove(&k)
            {
                store.bytes -= old.bytes as u128;
                evicted.push(old);
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
        drop(guard);
        drop(replaced);
        drop(evicted);
        true
    }

    /// A response for `key` may not be kept: the key's response goes, unless its head came
    /// later (an older response's refusal does not undo a newer one). With `remember`, the
    /// refusal is kept too, so that a response whose head came before and which is stored
    /// later (its body read, or its copy made, meanwhile) is not kept either.
    fn refuse(&self, key: K, current: Current, remember: bool) {
        let mut guard = self.lock();
        let store = &mut *guard;
        let old = match store.map.get(&key) {
            Some(e) if e.head < current.head => store.map.remove(&key),
            _ => None,
        };
        if let Some(old) = &old {
            store.bytes -= old.bytes as u128;
        }
        if remember && store.refusals.get(&key).is_none_or(|&h| h < current.head) {
            store.refusals.insert(key.clone(), current.head);
            store.refusal_order.push_back((key, current.head));
            while store.refusals.len() > MAX_REFUSALS {
                let Some((k, h)) = store.refusal_order.pop_front() else {
                    break;
                };
                if store.refusals.get(&k) == Some(&h) {
                    store.refusals.remove(&k);
                }
            }
            // Leftovers of replaced or removed refusals.
            if store.refusal_order.len() > 2 * store.refusals.len() + 64 {
                let refusals = &store.refusals;
                store
                    .refusal_order
                    .retain(|(k, h)| refusals.get(k) == Some(h));
            }
        }
        self.entries.store(store.map.len(), Ordering::Relaxed);
        drop(guard);
        drop(old); // after the lock, as in `insert`
    }
}

impl<Req, Res, K> StaleCacheBuilder<Req, Res, K>
where
    K: Hash + Eq + Clone,
{
    /// The oldest response that may be served (`> 0`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::fallback::{Failure, Recover, StaleCache};
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id))
    ///     .max_stale(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// cache.succeeded(cache.keep(&7), &mut String::from("item 7"));
    /// let down = || Failure::Error("down".into());
    /// tokio::time::advance(Duration::from_secs(60)).await;
    /// assert!(cache.recover(cache.keep(&7), down()).is_ok()); // a minute old: still served
    /// tokio::time::advance(Duration::from_secs(1)).await;
    /// // Too old: the failure goes through.
    /// assert!(cache.recover(cache.keep(&7), down()).is_err());
    /// # }
    /// ```
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.limits.max_stale = max_stale;
        self
    }

    /// The most entries kept (`>= 1`).
    ///
    /// ```
    /// use palisade::fallback::{Failure, Recover, StaleCache};
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id))
    ///     .max_entries(2)
    ///     .build()
    ///     .unwrap();
    /// for id in 1..=3 {
    ///     cache.succeeded(cache.keep(&id), &mut format!("item {id}"));
    /// }
    /// assert_eq!(cache.stats().entries, 2);
    /// assert!(
    ///     cache
    ///         .recover(cache.keep(&1), Failure::Error("down".into()))
    ///         .is_err()
    /// ); // the oldest went
    /// assert!(
    ///     cache
    ///         .recover(cache.keep(&3), Failure::Error("down".into()))
    ///         .is_ok()
    /// );
    /// ```
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.limits.max_entries = max_entries;
        self
    }

    /// The most bytes kept, as measured by the size function (`>= max_entry_bytes`).
    ///
    /// ```
    /// use palisade::fallback::{Recover, StaleCache};
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id))
    ///     .size(|s: &String| s.len())
    ///     .max_entry_bytes(10)
    ///     .max_bytes(20)
    ///     .build()
    ///     .unwrap();
    /// for id in 1..=3 {
    ///     cache.succeeded(cache.keep(&id), &mut "ten bytes!".to_owned());
    /// }
    /// assert_eq!((cache.stats().entries, cache.stats().bytes), (2, 20));
    /// ```
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.limits.max_bytes = max_bytes;
        self
    }

    /// Larger responses are passed through uncached (`>= 1`).
    ///
    /// ```
    /// use palisade::fallback::{Recover, StaleCache};
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id))
    ///     .size(|s: &String| s.len())
    ///     .max_entry_bytes(4)
    ///     .build()
    ///     .unwrap();
    /// cache.succeeded(cache.keep(&1), &mut "tiny".to_owned());
    /// // Refused, and the older entry for the key dropped.
    /// cache.succeeded(cache.keep(&1), &mut "too big".to_owned());
    /// assert_eq!((cache.stats().entries, cache.stats().too_large), (0, 1));
    /// ```
    pub fn max_entry_bytes(mut self, max_entry_bytes: usize) -> Self {
        self.limits.max_entry_bytes = max_entry_bytes;
        self
    }

    /// How many bytes a response weighs (default `size_of::<Res>()`, which does not count
    /// what a response owns on the heap: give the length of its contents here).
    ///
    /// ```
    /// use palisade::fallback::{Recover, StaleCache};
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id))
    ///     .size(|body: &Vec<u8>| body.len())
    ///     .build()
    ///     .unwrap();
    /// cache.succeeded(cache.keep(&1), &mut vec![0; 300]);
    /// assert_eq!(cache.stats().bytes, 300);
    /// ```
    pub fn size(mut self, size: impl Fn(&Res) -> usize + Send + Sync + 'static) -> Self {
        self.size = Box::new(size);
        self
    }

    /// Marks a response served stale (for example, sets a field or an extension).
    ///
    /// ```
    /// use palisade::fallback::{Failure, Recover, StaleCache};
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id))
    ///     .mark(|body: &mut String, stale| {
    ///         body.push_str(&format!(" (as of {}s ago)", stale.age.as_secs()))
    ///     })
    ///     .build()
    ///     .unwrap();
    /// cache.succeeded(cache.keep(&1), &mut "12 in stock".to_owned());
    /// let served = cache
    ///     .recover(cache.keep(&1), Failure::Error("down".into()))
    ///     .unwrap();
    /// assert_eq!(served, "12 in stock (as of 0s ago)");
    /// ```
    pub fn mark(mut self, mark: impl Fn(&mut Res, Stale) + Send + Sync + 'static) -> Self {
        self.mark = Box::new(mark);
        self
    }

    /// Validates the bounds and builds the cache.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::fallback::StaleCache;
    ///
    /// assert!(
    ///     StaleCache::<u32, String, u32>::builder(|id| Some(*id))
    ///         .build()
    ///         .is_ok()
    /// );
    /// let err = StaleCache::<u32, String, u32>::builder(|id| Some(*id))
    ///     .max_stale(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "max_stale");
    /// ```
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
                    refusals: HashMap::new(),
                    refusal_order: VecDeque::new(),
                }),
                entries: AtomicUsize::new(0),
                heads: AtomicU64::new(0),
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
    /// The response kept for `key`, with its age, if not older than `max_stale`. Not counted
    /// as served until it is ([`count_served`](Self::count_served)): making it into a response
    /// may still fail (a `mark` that panics).
    pub(crate) fn lookup(&self, key: &K) -> Option<(Res, Duration)> {
        let store = self.inner.lock();
        store.map.get(key).and_then(|e| {
            let age = e.at.elapsed();
            (age <= self.inner.limits.max_stale).then(|| (e.response.clone(), age))
        })
    }

    /// A response looked up was served.
    pub(crate) fn count_served(&self) {
        self.inner.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps the response `copy` makes for `key`, unless the response (`bytes` long) is over
    /// the per-entry cap: then no copy is made, and the key's older entry goes too (it no
    /// longer stands for what the dependency answers).
    pub(crate) fn store(&self, key: K, copy: impl FnOnce() -> Res, bytes: usize) {
        // A refusal is remembered here too: another call's response, whose head came first,
        // may still be being copied, outside the store's lock.
        self.keep(key, copy, bytes, self.current(), true);
    }

    /// When and in what order a response's head arrived, for [`store_at`](Self::store_at),
    /// [`forget`](Self::forget) and [`too_large`](Self::too_large).
    pub(crate) fn current(&self) -> Current {
        Current {
            at: Instant::now(),
            head: self.inner.heads.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// [`store`](Self::store), for a response whose head arrived at `current` and whose body
    /// was read since: its age counts from its head, and it is not kept over a response or a
    /// refusal whose head came after it.
    #[cfg(feature = "http")]
    pub(crate) fn store_at(&self, key: K, response: Res, bytes: usize, current: Current) {
        self.keep(key, || response, bytes, current, true);
    }

    fn keep(
        &self,
        key: K,
        response: impl FnOnce() -> Res,
        bytes: usize,
        current: Current,
        remember: bool,
    ) {
        if bytes > self.inner.limits.max_entry_bytes {
            // Refused before the response is copied: a response too large to keep costs no
            // copy of its size.
            self.inner.too_large.fetch_add(1, Ordering::Relaxed);
            self.inner.refuse(key, current, remember);
            return;
        }
        if self.inner.insert(key, response(), bytes, current) {
            self.inner.stored.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A response whose head arrived at `current` for `key` may not be kept: the response kept
    /// for it, if its head came before, no longer stands for what the dependency answers, nor
    /// does a response whose head came before and whose body ends later.
    #[cfg(feature = "http")]
    pub(crate) fn forget(&self, key: K, current: Current) {
        self.inner.refuse(key, current, true);
    }

    /// A response whose head arrived at `current` for `key` was too large to keep (refused as
    /// [`forget`] refuses).
    ///
    /// [`forget`]: Self::forget
    #[cfg(feature = "http")]
    pub(crate) fn too_large(&self, key: K, current: Current) {
        self.inner.too_large.fetch_add(1, Ordering::Relaxed);
        self.inner.refuse(key, current, true);
    }

    /// How old a response may be and still be served.
    #[cfg(feature = "http")]
    pub(crate) fn max_stale(&self) -> Duration {
        self.inner.limits.max_stale
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
                self.count_served();
                Ok((response, Served::Stale(Stale { age })))
            }
            None => Err(failure),
        }
    }

    fn succeeded(&self, kept: Option<K>, response: &mut Res) {
        let Some(key) = kept else { return };
        let bytes = (self.inner.size)(response);
        self.store(key, || response.clone(), bytes);
    }

    fn cached_entries(&self) -> Option<usize> {
        Some(self.inner.entries.load(Ordering::Relaxed))
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;

    /// The last `MAX_REFUSALS` refusals are remembered, the oldest forgotten first: a body
    /// whose head came before a refusal is kept out while that refusal is remembered.
    #[tokio::test(start_paused = true)]
    async fn refusals_are_remembered_up_to_their_bound_the_oldest_forgotten_first() {
        let cache = StaleCache::builder(|k: &u32| Some(*k)).build().unwrap();
        let older = cache.current(); // a body for key 0, still being read
        cache.forget(0, cache.current());
        for key in 1..MAX_REFUSALS as u32 {
            cache.forget(key, cache.current());
        }
        // Exactly the bound: key 0's refusal is still remembered.
        cache.store_at(0, "stock: 12", 9, older);
        assert_eq!(cache.stats().entries, 0);
        // One more refusal forgets the oldest, key 0's: the older body is kept after all.
        cache.forget(MAX_REFUSALS as u32, cache.current());
        cache.store_at(0, "stock: 12", 9, older);
        assert_eq!(cache.stats().entries, 1);
        let store = cache.inner.lock();
        assert_eq!(store.refusals.len(), MAX_REFUSALS);
        assert!(store.refusal_order.len() <= 2 * MAX_REFUSALS + 64);
    }

    /// A response whose copy is still being made (its head came first) while a newer one for
    /// its key is refused as too large is not kept: the cache never serves a response older
    /// than one it refused.
    #[tokio::test(start_paused = true)]
    async fn a_response_copied_while_a_newer_one_is_refused_is_not_kept() {
        let cache = StaleCache::builder(|k: &u32| Some(*k))
            .size(|r: &&str| r.len())
            .max_entry_bytes(8)
            .build()
            .unwrap();
        let copying = cache.current(); // its number taken, its copy not made yet
        cache.store(0, || "far too large", 13); // newer, refused
        cache.keep(0, || "small", 5, copying, false); // the older copy lands
        assert!(
            cache.lookup(&0).is_none(),
            "an older response than a refused one kept"
        );
    }

    /// A refusal outlives a later response stored for its key: once that response is evicted,
    /// a body whose head came before the refusal is still kept out.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_keeps_an_older_body_out_after_a_later_response_is_evicted() {
        let cache = StaleCache::builder(|k: &u32| Some(*k))
            .max_entries(1)
            .build()
            .unwrap();
        let older = cache.current(); // a body for key 0, still being read
        cache.forget(0, cache.current()); // a later response for key 0 that may not be kept
        cache.store_at(0, "stock: 7", 8, cache.current()); // a later one still, kept
        cache.store_at(1, "price: 3", 8, cache.current()); // evicts key 0's
        assert!(cache.lookup(&0).is_none());
        cache.store_at(0, "stock: 12", 9, older);
        assert!(cache.lookup(&0).is_none(), "the refused-over body was kept");
    }
}
