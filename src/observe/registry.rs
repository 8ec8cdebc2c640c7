//! A registry of named breakers, bulkheads and stale caches, for health and admin endpoints.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::bulkhead;
use crate::circuit_breaker::{self, State};
use crate::fallback::{CacheStats, StaleCache};
use crate::policy::PolicyLayer;

type StatsFn = Arc<dyn Fn() -> CacheStats + Send + Sync>;

#[derive(Default)]
struct Entries {
    breakers: Vec<circuit_breaker::Handle>,
    bulkheads: Vec<bulkhead::Handle>,
    caches: Vec<(String, StatsFn)>,
}

/// Where named policies (or single layers) register their handles, so that a service can list
/// every breaker, bulkhead and stale cache with its state and figures.
///
/// Cheap to clone: clones share one list. Registering under a name that is already registered
/// (for the same kind of part) replaces the older entry, so a policy rebuilt under its name
/// stays listed once. The registry holds the handles (and so keeps the breakers and bulkheads
/// alive) until [`remove`](Self::remove).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::circuit_breaker::{CircuitBreakerConfig, State};
/// use palisade::observe::Registry;
/// use palisade::policy::Policy;
///
/// let registry = Registry::new();
/// for name in ["inventory", "pricing"] {
///     let policy = Policy::builder()
///         .name(name)
///         .circuit_breaker(CircuitBreakerConfig::default())
///         .build()
///         .unwrap();
///     registry.register(&policy);
/// }
/// registry.circuit_breaker("pricing").unwrap().force_open();
///
/// let report = registry.snapshot();
/// let states: Vec<_> = report.circuit_breakers.iter().map(|b| (b.name.as_str(), b.state)).collect();
/// assert_eq!(states, [("inventory", State::Closed), ("pricing", State::ForcedOpen)]);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    entries: Arc<Mutex<Entries>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.lock();
        f.debug_struct("Registry")
            .field(
                "circuit_breakers",
                &entries
                    .breakers
                    .iter()
                    .map(|h| h.name())
                    .collect::<Vec<_>>(),
            )
            .field(
                "bulkheads",
                &entries
                    .bulkheads
                    .iter()
                    .map(|h| h.name())
                    .collect::<Vec<_>>(),
            )
            .field(
                "stale_caches",
                &entries.caches.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    ///
    /// ```
    /// use palisade::observe::Registry;
    ///
    /// let registry = Registry::new();
    /// assert!(registry.snapshot().circuit_breakers.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // No user code runs under this lock (what an entry replaced or removed holds, listeners
        // and stats closures, is dropped after it is released): a poisoned list is still
        // consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes out of `list` the entries `gone` says, under the lock, to be dropped after it.
    fn take_out<T>(list: &mut Vec<T>, gone: impl Fn(&T) -> bool) -> Vec<T> {
        let (out, kept) = std::mem::take(list).into_iter().partition(gone);
        *list = kept;
        out
    }

    /// Registers a policy's circuit breaker and bulkhead (those it has), under the policy's
    /// name; a breaker or bulkhead registered earlier under that name that the policy does not
    /// have (an older build of it) is removed. A stale cache used as the policy's fallback is
    /// registered with [`register_stale_cache`](Self::register_stale_cache) (an HTTP one with
    /// `register_http_stale_cache`, feature `http`).
    ///
    /// ```
    /// use palisade::observe::Registry;
    /// use palisade::policy::Policy;
    /// use palisade::{bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig};
    ///
    /// let registry = Registry::new();
    /// let policy = Policy::builder()
    ///     .name("inventory")
    ///     .bulkhead(BulkheadConfig::default())
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .build()
    ///     .unwrap();
    /// registry.register(&policy);
    /// registry.register(&policy); // registered again under its name: still listed once
    /// assert!(registry.circuit_breaker("inventory").is_some());
    /// assert_eq!(registry.bulkheads().len(), 1);
    /// ```
    pub fn register<R, C, A, H>(&self, policy: &PolicyLayer<R, C, A, H>) -> &Self {
        // A policy rebuilt under its name without a part it had before: the old part goes
        // (no service uses it any more, and an operator must not act on it).
        let name = policy.name();
        match policy.circuit_breaker() {
            Some(breaker) => self.register_circuit_breaker(breaker),
            None => {
                let gone = Self::take_out(&mut self.lock().breakers, |h| h.name() == name);
                drop(gone);
                self
            }
        };
        match policy.bulkhead() {
            Some(bulkhead) => self.register_bulkhead(bulkhead),
            None => {
                let gone = Self::take_out(&mut self.lock().bulkheads, |h| h.name() == name);
                drop(gone);
                self
            }
        };
        self
    }

    /// Registers a circuit breaker under its name.
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    /// use palisade::observe::Registry;
    ///
    /// // A breaker built on its own, outside any policy.
    /// let layer = CircuitBreakerLayer::builder()
    ///     .name("payments")
    ///     .build()
    ///     .unwrap();
    /// let registry = Registry::new();
    /// registry.register_circuit_breaker(layer.handle());
    /// assert_eq!(registry.snapshot().circuit_breakers[0].name, "payments");
    /// ```
    pub fn register_circuit_breaker(&self, handle: circuit_breaker::Handle) -> &Self {
        let mut entries = self.lock();
        match entries
            .breakers
            .iter_mut()
            .find(|h| h.name() == handle.name())
        {
            Some(slot) => {
                let replaced = std::mem::replace(slot, handle);
                drop(entries);
                drop(replaced);
            }
            None => entries.breakers.push(handle),
        }
        self
    }

    /// Registers a bulkhead under its name.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadLayer;
    /// use palisade::observe::Registry;
    ///
    /// let layer = BulkheadLayer::builder()
    ///     .name("payments")
    ///     .max_concurrent(4)
    ///     .build()
    ///     .unwrap();
    /// let registry = Registry::new();
    /// registry.register_bulkhead(layer.handle());
    /// assert_eq!(registry.snapshot().bulkheads[0].max_concurrent, 4);
    /// ```
    pub fn register_bulkhead(&self, handle: bulkhead::Handle) -> &Self {
        let mut entries = self.lock();
        match entries
            .bulkheads
            .iter_mut()
            .find(|h| h.name() == handle.name())
        {
            Some(slot) => {
                let replaced = std::mem::replace(slot, handle);
                drop(entries);
                drop(replaced);
            }
            None => entries.bulkheads.push(handle),
        }
        self
    }

    /// Registers a stale cache under `name` (a cache has no name of its own: use the policy's).
    ///
    /// ```
    /// use palisade::fallback::{Recover, StaleCache};
    /// use palisade::observe::Registry;
    ///
    /// let cache = StaleCache::builder(|id: &u32| Some(*id)).build().unwrap();
    /// let registry = Registry::new();
    /// registry.register_stale_cache("inventory", &cache);
    /// cache.succeeded(cache.keep(&7), &mut String::from("item 7"));
    /// let report = &registry.snapshot().stale_caches[0];
    /// assert_eq!(
    ///     (report.name.as_str(), report.stats.entries),
    ///     ("inventory", 1)
    /// );
    /// ```
    pub fn register_stale_cache<Req, Res, K>(
        &self,
        name: impl Into<String>,
        cache: &StaleCache<Req, Res, K>,
    ) -> &Self
    where
        StaleCache<Req, Res, K>: Send + Sync + 'static,
        K: std::hash::Hash + Eq + Clone,
    {
        let cache = cache.clone();
        self.register_cache_stats(name, move || cache.stats())
    }

    /// Registers an HTTP stale cache under `name` (the policy's, as for
    /// [`register_stale_cache`](Self::register_stale_cache)).
    ///
    /// ```
    /// use palisade::http::HttpStaleCache;
    /// use palisade::observe::Registry;
    ///
    /// let cache = HttpStaleCache::builder().build().unwrap();
    /// let registry = Registry::new();
    /// registry.register_http_stale_cache("catalog", &cache);
    /// let report = &registry.snapshot().stale_caches[0];
    /// assert_eq!((report.name.as_str(), report.stats.entries), ("catalog", 0));
    /// ```
    #[cfg(feature = "http")]
    pub fn register_http_stale_cache(
        &self,
        name: impl Into<String>,
        cache: &crate::http::HttpStaleCache,
    ) -> &Self {
        let cache = cache.clone();
        self.register_cache_stats(name, move || cache.stats())
    }

    /// Registers, under `name`, any cache that can report [`CacheStats`] (one of your own):
    /// the snapshot calls `stats` each time it is taken. A name registered before is replaced.
    /// A `stats` that panics leaves its cache out of that snapshot (and the panic is caught).
    ///
    /// ```
    /// use palisade::fallback::CacheStats;
    /// use palisade::observe::Registry;
    ///
    /// let registry = Registry::new();
    /// registry.register_cache_stats("sessions", CacheStats::default);
    /// assert_eq!(registry.snapshot().stale_caches[0].name, "sessions");
    ///
    /// registry.register_cache_stats("broken", || panic!("stats of a cache being torn down"));
    /// let report = registry.snapshot(); // does not panic
    /// assert_eq!(report.stale_caches.len(), 1); // "sessions" only
    /// ```
    pub fn register_cache_stats(
        &self,
        name: impl Into<String>,
        stats: impl Fn() -> CacheStats + Send + Sync + 'static,
    ) -> &Self {
        let name = name.into();
        let stats: StatsFn = Arc::new(stats);
        let mut entries = self.lock();
        match entries.caches.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => {
                let replaced = std::mem::replace(&mut slot.1, stats);
                drop(entries);
                drop(replaced);
            }
            None => entries.caches.push((name, stats)),
        }
        self
    }

    /// Forgets every part registered under `name`.
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::observe::Registry;
    /// use palisade::policy::Policy;
    ///
    /// let registry = Registry::new();
    /// let policy = Policy::builder()
    ///     .name("legacy")
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .build()
    ///     .unwrap();
    /// registry.register(&policy);
    /// registry.remove("legacy");
    /// assert!(registry.circuit_breaker("legacy").is_none());
    /// ```
    pub fn remove(&self, name: &str) {
        let mut entries = self.lock();
        let gone = (
            Self::take_out(&mut entries.breakers, |h| h.name() == name),
            Self::take_out(&mut entries.bulkheads, |h| h.name() == name),
            Self::take_out(&mut entries.caches, |(n, _)| n == name),
        );
        drop(entries);
        drop(gone);
    }

    /// The circuit breaker registered under `name`, to read or to operate (force open, reset).
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, State};
    /// use palisade::observe::Registry;
    /// use palisade::policy::Policy;
    ///
    /// let registry = Registry::new();
    /// let policy = Policy::builder()
    ///     .name("inventory")
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .build()
    ///     .unwrap();
    /// registry.register(&policy);
    /// // An admin endpoint forces the breaker open by name...
    /// registry.circuit_breaker("inventory").unwrap().force_open();
    /// // ...and the policy's services see it.
    /// assert_eq!(policy.circuit_breaker().unwrap().state(), State::ForcedOpen);
    /// assert!(registry.circuit_breaker("pricing").is_none());
    /// ```
    pub fn circuit_breaker(&self, name: &str) -> Option<circuit_breaker::Handle> {
        self.lock()
            .breakers
            .iter()
            .find(|h| h.name() == name)
            .cloned()
    }

    /// The bulkhead registered under `name`.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadConfig;
    /// use palisade::observe::Registry;
    /// use palisade::policy::Policy;
    ///
    /// let registry = Registry::new();
    /// registry.register(
    ///     &Policy::builder()
    ///         .name("inventory")
    ///         .bulkhead(BulkheadConfig::default())
    ///         .build()
    ///         .unwrap(),
    /// );
    /// assert_eq!(registry.bulkhead("inventory").unwrap().available(), 25);
    /// ```
    pub fn bulkhead(&self, name: &str) -> Option<bulkhead::Handle> {
        self.lock()
            .bulkheads
            .iter()
            .find(|h| h.name() == name)
            .cloned()
    }

    /// Every registered circuit breaker, in registration order.
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::observe::Registry;
    /// use palisade::policy::Policy;
    ///
    /// let registry = Registry::new();
    /// for name in ["inventory", "pricing"] {
    ///     registry.register(
    ///         &Policy::builder()
    ///             .name(name)
    ///             .circuit_breaker(CircuitBreakerConfig::default())
    ///             .build()
    ///             .unwrap(),
    ///     );
    /// }
    /// for breaker in registry.circuit_breakers() {
    ///     breaker.reset(); // say, after an incident
    /// }
    /// let names: Vec<_> = registry
    ///     .circuit_breakers()
    ///     .iter()
    ///     .map(|b| b.name().to_owned())
    ///     .collect();
    /// assert_eq!(names, ["inventory", "pricing"]);
    /// ```
    pub fn circuit_breakers(&self) -> Vec<circuit_breaker::Handle> {
        self.lock().breakers.clone()
    }

    /// Every registered bulkhead, in registration order.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadConfig;
    /// use palisade::observe::Registry;
    /// use palisade::policy::Policy;
    ///
    /// let registry = Registry::new();
    /// registry.register(
    ///     &Policy::builder()
    ///         .name("inventory")
    ///         .bulkhead(BulkheadConfig::default())
    ///         .build()
    ///         .unwrap(),
    /// );
    /// let in_flight: usize = registry.bulkheads().iter().map(|b| b.in_flight()).sum();
    /// assert_eq!(in_flight, 0);
    /// ```
    pub fn bulkheads(&self) -> Vec<bulkhead::Handle> {
        self.lock().bulkheads.clone()
    }

    /// The state and figures of everything registered, read now (in registration order).
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::observe::Registry;
    /// use palisade::policy::Policy;
    ///
    /// let registry = Registry::new();
    /// let policy = Policy::builder()
    ///     .name("inventory")
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .build()
    ///     .unwrap();
    /// registry.register(&policy);
    /// policy.circuit_breaker().unwrap().force_open();
    /// let report = registry.snapshot();
    /// assert_eq!(
    ///     report.circuit_breakers[0].state,
    ///     palisade::circuit_breaker::State::ForcedOpen
    /// );
    /// ```
    pub fn snapshot(&self) -> RegistrySnapshot {
        // Read outside the lock: a snapshot may end an overdue half-open trial, which tells
        // listeners, which are user code.
        let (breakers, bulkheads, caches) = {
            let entries = self.lock();
            (
                entries.breakers.clone(),
                entries.bulkheads.clone(),
                entries.caches.clone(),
            )
        };
        RegistrySnapshot {
            circuit_breakers: breakers.iter().map(BreakerReport::of).collect(),
            bulkheads: bulkheads.iter().map(BulkheadReport::of).collect(),
            // A cache's stats are user code for `register_cache_stats`: one that panics is
            // left out of the report, rather than failing every report.
            stale_caches: caches
                .into_iter()
                .filter_map(|(name, stats)| {
                    let stats = crate::error::catch_callback("cache stats", || stats()).ok()?;
                    Some(CacheReport { name, stats })
                })
                .collect(),
        }
    }
}

/// Everything a [`Registry`] holds, each part read in turn (a breaker's or bulkhead's numbers
/// are read one after another while calls go on, so two of them may be a call apart: a
/// bulkhead's `available` and `queued` may both show a waiting call for a moment, and a
/// policy registered again during a snapshot may show its new breaker beside its old
/// bulkhead). With feature `serde` it serializes to
/// JSON as:
///
/// ```json
/// {
///   "circuit_breakers": [
///     { "name": "inventory", "state": "open", "calls": 0, "failures": 0, "slow_calls": 0,
///       "failure_rate": 0.0, "slow_call_rate": 0.0, "rejected": 3, "probes_in_flight": 0,
///       "probe_successes": 0, "probe_failures": 0, "consecutive_trips": 1,
///       "retry_after_seconds": 9.5 }
///   ],
///   "bulkheads": [
///     { "name": "inventory", "max_concurrent": 25, "in_flight": 2, "available": 23,
///       "queued": 0, "max_queued": 0 }
///   ],
///   "stale_caches": [
///     { "name": "inventory", "entries": 12, "bytes": 3400, "stored": 40, "served": 3,
///       "too_large": 0 }
///   ]
/// }
/// ```
///
/// `state` is one of `closed`, `open`, `half_open`, `forced_open`, `disabled`,
/// `metrics_only`; `retry_after_seconds` is `null` unless the breaker is open.
///
/// ```
/// use palisade::circuit_breaker::CircuitBreakerConfig;
/// use palisade::observe::Registry;
/// use palisade::policy::Policy;
///
/// let registry = Registry::new();
/// registry.register(
///     &Policy::builder()
///         .name("inventory")
///         .circuit_breaker(CircuitBreakerConfig::default())
///         .build()
///         .unwrap(),
/// );
/// # #[cfg(feature = "serde")] {
/// let json = serde_json::to_value(registry.snapshot()).unwrap();
/// assert_eq!(json["circuit_breakers"][0]["state"], "closed");
/// assert_eq!(
///     json["circuit_breakers"][0]["retry_after_seconds"],
///     serde_json::Value::Null
/// );
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RegistrySnapshot {
    /// Every registered circuit breaker.
    pub circuit_breakers: Vec<BreakerReport>,
    /// Every registered bulkhead.
    pub bulkheads: Vec<BulkheadReport>,
    /// Every registered stale cache.
    pub stale_caches: Vec<CacheReport>,
}

/// One circuit breaker's state and window figures.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::circuit_breaker::CircuitBreakerConfig;
/// use palisade::observe::Registry;
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let policy = Policy::builder()
///     .name("inventory")
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .build()
///     .unwrap();
/// let registry = Registry::new();
/// registry.register(&policy);
/// for fail in [false, true, false, false] {
///     let svc = policy.layer(service_fn(move |_: ()| async move {
///         if fail {
///             Err(std::io::Error::other("down"))
///         } else {
///             Ok(())
///         }
///     }));
///     let _ = svc.oneshot(()).await;
/// }
/// let report = &registry.snapshot().circuit_breakers[0];
/// assert_eq!(
///     (report.calls, report.failures, report.failure_rate),
///     (4, 1, 0.25)
/// );
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BreakerReport {
    /// The breaker's (policy's) name.
    pub name: String,
    /// Its state (serialized as its label, `half_open`).
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::state"))]
    pub state: State,
    /// Outcomes in the window (closed, disabled and metrics-only states; 0 otherwise).
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// `failures / calls` (0 for an empty window).
    pub failure_rate: f64,
    /// `slow_calls / calls` (0 for an empty window).
    pub slow_call_rate: f64,
    /// Calls rejected since the breaker was built.
    pub rejected: u64,
    /// Probes in flight (half-open).
    pub probes_in_flight: u32,
    /// Probes that succeeded in this half-open trial.
    pub probe_successes: u32,
    /// Probes that failed in this half-open trial.
    pub probe_failures: u32,
    /// Trips without a close in between.
    pub consecutive_trips: u32,
    /// Time until the next probe is admitted (open); serialized as `retry_after_seconds`.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "retry_after_seconds", serialize_with = "ser::seconds")
    )]
    pub retry_after: Option<Duration>,
}

impl BreakerReport {
    fn of(handle: &circuit_breaker::Handle) -> Self {
        let s = handle.snapshot();
        let rate = |n: u32| {
            if s.calls == 0 {
                0.0
            } else {
                f64::from(n) / f64::from(s.calls)
            }
        };
        Self {
            name: handle.name().to_owned(),
            state: s.state,
            calls: s.calls,
            failures: s.failures,
            slow_calls: s.slow_calls,
            failure_rate: rate(s.failures),
            slow_call_rate: rate(s.slow_calls),
            rejected: s.rejected,
            probes_in_flight: s.probes_in_flight,
            probe_successes: s.probe_successes,
            probe_failures: s.probe_failures,
            consecutive_trips: s.consecutive_trips,
            retry_after: s.retry_after,
        }
    }
}

/// One bulkhead's limits and counts.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::bulkhead::BulkheadConfig;
/// use palisade::observe::Registry;
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// let policy = Policy::builder()
///     .name("inventory")
///     .bulkhead(BulkheadConfig::default())
///     .build()
///     .unwrap();
/// let registry = Registry::new();
/// registry.register(&policy);
/// let mut svc = policy.layer(service_fn(|_: ()| {
///     std::future::pending::<Result<(), std::io::Error>>()
/// }));
/// let _call = svc.ready().await.unwrap().call(());
/// let report = &registry.snapshot().bulkheads[0];
/// assert_eq!(
///     (report.in_flight, report.available, report.max_queued),
///     (1, 24, 0)
/// );
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BulkheadReport {
    /// The bulkhead's (policy's) name.
    pub name: String,
    /// The limit on calls in flight.
    pub max_concurrent: usize,
    /// Permits taken.
    pub in_flight: usize,
    /// Permits free.
    pub available: usize,
    /// Calls waiting for a permit.
    pub queued: usize,
    /// The limit on waiting calls (0: calls never wait).
    pub max_queued: usize,
}

impl BulkheadReport {
    fn of(handle: &bulkhead::Handle) -> Self {
        let in_flight = handle.in_flight();
        Self {
            name: handle.name().to_owned(),
            max_concurrent: handle.max_concurrent(),
            in_flight,
            available: handle.max_concurrent().saturating_sub(in_flight),
            queued: handle.queued(),
            max_queued: handle.max_queued(),
        }
    }
}

/// One stale cache's size and counters.
///
/// ```
/// use palisade::fallback::{CacheStats, StaleCache};
/// use palisade::observe::Registry;
///
/// let cache = StaleCache::<u32, String, u32>::builder(|id| Some(*id))
///     .build()
///     .unwrap();
/// let registry = Registry::new();
/// registry.register_stale_cache("inventory", &cache);
/// let report = &registry.snapshot().stale_caches[0];
/// assert_eq!(report.name, "inventory");
/// assert_eq!(report.stats, CacheStats::default());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CacheReport {
    /// The name it was registered under.
    pub name: String,
    /// Entries, bytes and counters (serialized inline).
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub stats: CacheStats,
}

#[cfg(feature = "serde")]
mod ser {
    use std::time::Duration;

    use serde::Serializer;

    use crate::circuit_breaker::State;

    pub(super) fn state<S: Serializer>(state: &State, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::super::label::state(*state))
    }

    pub(super) fn seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}
