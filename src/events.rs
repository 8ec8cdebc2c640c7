//! Events: what the protections decide, for logs, metrics and dashboards.
//!
//! Every layer can be given [`Listeners`]; each decision worth seeing (a state transition, a
//! rejection, a timeout, a fallback served, a call's recorded outcome, a bulkhead permit taken
//! or given back) reaches every listener as a borrowed [`Event`], synchronously, on the task that
//! made the decision. With no listener installed, emitting is a single branch: nothing is built,
//! nothing is allocated, no clock is read.
//!
//! Ready-made listeners for the `tracing` and `metrics` facades are in [`crate::observe`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::{Arc, Mutex};
//! use palisade::circuit_breaker::CircuitBreakerLayer;
//! use palisade::events::{Event, Listeners};
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let log = seen.clone();
//! let listeners = Listeners::new("inventory").with(move |event: &Event<'_>| {
//!     log.lock().unwrap().push(format!("{event:?}"));
//! });
//! let breaker = CircuitBreakerLayer::builder().listeners(listeners).build().unwrap().handle();
//! breaker.force_open();
//! assert!(seen.lock().unwrap()[0].contains("ForcedOpen"));
//! # }
//! ```
//!
//! A listener must be quick and must not block; one that panics is caught and ignored (the
//! call it was reporting on is not affected, and nothing it held is leaked).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::circuit_breaker::{RejectReason, Transition};
use crate::classify::Outcome;
use crate::fallback::{FailureKind, Served};

/// Why a call was rejected without reaching the dependency.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use palisade::circuit_breaker::{CircuitBreakerLayer, RejectReason};
/// use palisade::events::{Event, Listeners, Rejection};
///
/// let reasons = Arc::new(Mutex::new(Vec::new()));
/// let seen = reasons.clone();
/// let listeners = Listeners::new("inventory").with(move |event: &Event<'_>| {
///     if let Event::Rejected { reason, .. } = event {
///         seen.lock().unwrap().push(*reason);
///     }
/// });
/// let breaker = CircuitBreakerLayer::builder()
///     .listeners(listeners)
///     .build()
///     .unwrap()
///     .handle();
/// breaker.force_open();
/// let _ =
///     futures::executor::block_on(breaker.call(async { Ok::<_, std::io::Error>(()) }));
/// assert_eq!(
///     *reasons.lock().unwrap(),
///     [Rejection::Circuit(RejectReason::ForcedOpen)]
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The circuit breaker is open, half-open with every probe slot taken, or forced open.
    Circuit(RejectReason),
    /// The bulkhead had no free permit (and no room or time to wait).
    BulkheadFull,
}

/// A decision made by one of the protections.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
/// use palisade::events::{Event, Listeners};
///
/// // Count the times any breaker opened.
/// let opened = Arc::new(AtomicUsize::new(0));
/// let count = opened.clone();
/// let listeners = Listeners::new("pricing").with(move |event: &Event<'_>| match event {
///     Event::StateTransition { transition, .. } if transition.to == State::ForcedOpen => {
///         count.fetch_add(1, Ordering::Relaxed);
///     }
///     _ => {} // the enum is non-exhaustive: new kinds of events may come
/// });
/// let breaker = CircuitBreakerLayer::builder()
///     .listeners(listeners)
///     .build()
///     .unwrap()
///     .handle();
/// breaker.force_open();
/// breaker.reset();
/// assert_eq!(opened.load(Ordering::Relaxed), 1);
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A circuit breaker changed state; or, in `MetricsOnly` mode, would have opened
    /// (`transition.would_trip`).
    StateTransition {
        /// The name of the breaker (or policy).
        name: &'a str,
        /// What changed, why, and the window's counts that caused it.
        transition: &'a Transition,
    },
    /// A call was rejected without reaching the dependency.
    Rejected {
        /// The name of the layer (or policy) that rejected it.
        name: &'a str,
        /// Why.
        reason: Rejection,
    },
    /// A call ran out of time; its future was dropped. From the timeout layer, or from a
    /// policy's whole-response deadline (`response_deadline`), at the head or in the body.
    TimedOut {
        /// The name of the timeout (or policy).
        name: &'a str,
        /// The timeout that fired.
        after: Duration,
    },
    /// The fallback turned a failed call into a response.
    FallbackServed {
        /// The name of the fallback (or policy).
        name: &'a str,
        /// The kind of failure it recovered.
        kind: FailureKind,
        /// How the response was made: fresh, or a stored response served stale (with its age).
        served: Served,
        /// The error recovered from, when the failure was an error: its message, then its
        /// sources' (`: ` between them), with any URL written as reqwest writes one
        /// (`for url (...)`) cut down to its scheme, host and port (its credentials, path and
        /// query are request data). `None` for a failure response (`kind` says so). Written
        /// only while someone listens.
        error: Option<&'a str>,
    },
    /// A call the circuit breaker admitted has completed, and the breaker recorded its outcome.
    ///
    /// Emitted from the one place where the breaker records outcomes, for every admitted call
    /// that ends (however its end is detected); not for calls the breaker rejected (those are
    /// [`Rejected`](Event::Rejected)) nor for cancelled ones (dropped before they ended).
    CallRecorded {
        /// The name of the breaker (or policy).
        name: &'a str,
        /// The classified outcome (its [`duration`](Outcome::duration) is the one below; for a
        /// call that completed on its first poll, zero, or the duration the classifier set).
        outcome: &'a Outcome,
        /// How long the call took, timed from its first suspension (for a future guarded by
        /// [`Handle::call`](crate::circuit_breaker::Handle::call) too). `None` for a call that
        /// completed on its first poll: it waited on nothing, and no clock was read for it.
        duration: Option<Duration>,
    },
    /// A bulkhead permit was taken (only built while someone listens).
    BulkheadAcquired {
        /// The name of the bulkhead (or policy).
        name: &'a str,
        /// Permits taken now, this one included.
        in_flight: usize,
    },
    /// A bulkhead permit was given back (only built while someone listens).
    BulkheadReleased {
        /// The name of the bulkhead (or policy).
        name: &'a str,
        /// Permits taken now, this one no longer counted.
        in_flight: usize,
    },
    /// A successful response was offered to the fallback's stale cache (stored, replaced, or
    /// refused as too large), or passed it by as one it keeps nothing for (a request with no
    /// key, such as a `POST` to the HTTP stale cache): `entries` is the cache's size either
    /// way. The HTTP stale cache keeps a response when its body has ended: it reports then, and
    /// not at all for a body that breaks.
    StaleCacheUpdated {
        /// The name of the fallback (or policy).
        name: &'a str,
        /// Responses the cache holds now.
        entries: usize,
    },
}

impl Event<'_> {
    /// The name of the layer (or policy) the event is about.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::events::Event;
    ///
    /// let event = Event::TimedOut {
    ///     name: "inventory",
    ///     after: Duration::from_millis(250),
    /// };
    /// assert_eq!(event.name(), "inventory");
    /// ```
    pub fn name(&self) -> &str {
        match *self {
            Event::StateTransition { name, .. }
            | Event::Rejected { name, .. }
            | Event::TimedOut { name, .. }
            | Event::FallbackServed { name, .. }
            | Event::CallRecorded { name, .. }
            | Event::BulkheadAcquired { name, .. }
            | Event::BulkheadReleased { name, .. }
            | Event::StaleCacheUpdated { name, .. } => name,
        }
    }
}

/// Receives events. Implemented for every `Fn(&Event<'_>) + Send + Sync`.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use palisade::events::{Event, Listener, Listeners};
///
/// /// Counts rejections; a closure would do as well, but a type can be named and shared.
/// #[derive(Default)]
/// struct RejectionCounter(AtomicU64);
///
/// impl Listener for RejectionCounter {
///     fn on_event(&self, event: &Event<'_>) {
///         if let Event::Rejected { .. } = event {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let counter = Arc::new(RejectionCounter::default());
/// let shared = counter.clone();
/// let listeners =
///     Listeners::new("inventory").with(move |e: &Event<'_>| shared.on_event(e));
/// let breaker = CircuitBreakerLayer::builder()
///     .listeners(listeners)
///     .build()
///     .unwrap()
///     .handle();
/// breaker.force_open();
/// for _ in 0..3 {
///     let _ = futures::executor::block_on(
///         breaker.call(async { Ok::<_, std::io::Error>(()) }),
///     );
/// }
/// assert_eq!(counter.0.load(Ordering::Relaxed), 3);
/// ```
pub trait Listener: Send + Sync {
    /// Called once per event, on the task that made the decision. Must not block.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use std::time::Duration;
    /// use palisade::events::{Event, Listener};
    ///
    /// let log = Mutex::new(Vec::new());
    /// let listener = |event: &Event<'_>| log.lock().unwrap().push(event.name().to_owned());
    /// listener.on_event(&Event::TimedOut {
    ///     name: "inventory",
    ///     after: Duration::from_secs(1),
    /// });
    /// assert_eq!(*log.lock().unwrap(), ["inventory"]);
    /// ```
    fn on_event(&self, event: &Event<'_>);

    /// Called when the listener is added to [`Listeners`] under a name, and again whenever the
    /// listeners are renamed (a policy names them after itself). Return a listener made for that
    /// name (one holding metric handles registered once for it, say) to receive the name's
    /// events in place of this one; `None`, the default, keeps this one.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use palisade::events::{Event, Listener, Listeners};
    ///
    /// // A listener that prepares something per name (as the metrics listener registers its
    /// // handles once per name), then hears that name's events through what it prepared.
    /// #[derive(Clone, Default)]
    /// struct Prefixed(Arc<Mutex<Vec<String>>>);
    ///
    /// struct Bound {
    ///     prefix: String,
    ///     log: Arc<Mutex<Vec<String>>>,
    /// }
    ///
    /// impl Listener for Bound {
    ///     fn on_event(&self, event: &Event<'_>) {
    ///         self.log
    ///             .lock()
    ///             .unwrap()
    ///             .push(format!("{}: {:?}", self.prefix, event));
    ///     }
    /// }
    ///
    /// impl Listener for Prefixed {
    ///     fn on_event(&self, _: &Event<'_>) {
    ///         unreachable!("always bound");
    ///     }
    ///     fn bind(&self, name: &str) -> Option<Arc<dyn Listener>> {
    ///         Some(Arc::new(Bound {
    ///             prefix: format!("[{name}]"),
    ///             log: self.0.clone(),
    ///         }))
    ///     }
    /// }
    ///
    /// let log = Prefixed::default();
    /// let listeners = Listeners::new("inventory").with(log.clone());
    /// listeners_hear(&listeners);
    /// // Renaming binds it again, to the new name (a policy names its listeners after itself).
    /// listeners_hear(&listeners.named("pricing"));
    /// assert_eq!(
    ///     *log.0.lock().unwrap(),
    ///     [
    ///         "[inventory]: TimedOut { name: \"inventory\", after: 1s }",
    ///         "[pricing]: TimedOut { name: \"pricing\", after: 1s }",
    ///     ]
    /// );
    ///
    /// // A timeout layer with these listeners tells them when a call times out.
    /// fn listeners_hear(listeners: &Listeners) {
    ///     use palisade::timeout::TimeoutLayer;
    ///     use tower::{service_fn, Layer, ServiceExt};
    ///     let layer = TimeoutLayer::builder()
    ///         .timeout(Duration::from_secs(1))
    ///         .listeners(listeners.clone())
    ///         .build()
    ///         .unwrap();
    ///     let svc = layer.layer(service_fn(|_: ()| {
    ///         std::future::pending::<Result<(), std::io::Error>>()
    ///     }));
    ///     let rt = tokio::runtime::Builder::new_current_thread()
    ///         .enable_time()
    ///         .start_paused(true)
    ///         .build()
    ///         .unwrap();
    ///     assert!(rt.block_on(svc.oneshot(())).is_err());
    /// }
    /// ```
    fn bind(&self, name: &str) -> Option<Arc<dyn Listener>> {
        let _ = name;
        None
    }
}

impl<F> Listener for F
where
    F: Fn(&Event<'_>) + Send + Sync,
{
    fn on_event(&self, event: &Event<'_>) {
        self(event)
    }
}

struct Inner {
    name: String,
    /// What each listener was given as; rebound when the name changes.
    given: Vec<Arc<dyn Listener>>,
    /// What receives the events: each given listener, or what it bound itself to for `name`.
    list: Vec<Arc<dyn Listener>>,
}

impl Inner {
    fn bound(name: String, given: Vec<Arc<dyn Listener>>) -> Self {
        let list = given
            .iter()
            .map(|l| bind(l, &name).unwrap_or_else(|| Arc::clone(l)))
            .collect();
        Self { name, given, list }
    }
}

/// `listener.bind(name)`; a panic there keeps the listener as it is.
fn bind(listener: &Arc<dyn Listener>, name: &str) -> Option<Arc<dyn Listener>> {
    catch_unwind(AssertUnwindSafe(|| listener.bind(name)))
        .ok()
        .flatten()
}

/// A name and the listeners to tell about a layer's decisions. Cheap to clone; empty by
/// default, and then free.
///
/// ```
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use palisade::events::{Event, Listeners};
///
/// let none = Listeners::default();
/// assert!(none.is_empty()); // free: layers build no event at all
///
/// let listeners =
///     Listeners::new("inventory").with(|event: &Event<'_>| println!("{event:?}"));
/// assert!(!listeners.is_empty());
/// // Clones share the listeners: one set can be given to several layers.
/// let breaker = CircuitBreakerLayer::builder()
///     .listeners(listeners.clone())
///     .build()
///     .unwrap();
/// # let _ = breaker;
/// ```
#[derive(Clone, Default)]
pub struct Listeners {
    inner: Option<Arc<Inner>>,
}

impl Listeners {
    /// No listeners, in a `const` context.
    pub(crate) const fn none() -> Self {
        Self { inner: None }
    }
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Listeners(none)"),
            Some(inner) => f
                .debug_struct("Listeners")
                .field("name", &inner.name)
                .field("count", &inner.list.len())
                .finish(),
        }
    }
}

impl Listeners {
    /// No listener yet; events will carry `name`. A layer given listeners names them after
    /// itself (its configured `name`, `default` when none was set), so give the layer the
    /// name too.
    ///
    /// ```
    /// use palisade::events::Listeners;
    ///
    /// let listeners = Listeners::new("inventory");
    /// assert_eq!(listeners.name(), Some("inventory"));
    /// assert!(listeners.is_empty());
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                name: name.into(),
                given: Vec::new(),
                list: Vec::new(),
            })),
        }
    }

    /// The same listeners and one more (bound to the name, see [`Listener::bind`]).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    /// use palisade::events::{Event, Listeners};
    ///
    /// let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    /// let (a2, b2) = (a.clone(), b.clone());
    /// let listeners = Listeners::new("inventory")
    ///     .with(move |_: &Event<'_>| {
    ///         a2.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .with(move |_: &Event<'_>| {
    ///         b2.fetch_add(1, Ordering::Relaxed);
    ///     });
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .listeners(listeners)
    ///     .build()
    ///     .unwrap()
    ///     .handle();
    /// breaker.force_open();
    /// assert_eq!(
    ///     (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)),
    ///     (1, 1)
    /// ); // both told
    /// ```
    #[must_use]
    pub fn with(self, listener: impl Listener + 'static) -> Self {
        let listener: Arc<dyn Listener> = Arc::new(listener);
        let (name, mut given, mut list) = match self.inner {
            Some(inner) => (inner.name.clone(), inner.given.clone(), inner.list.clone()),
            None => ("default".to_owned(), Vec::new(), Vec::new()),
        };
        list.push(bind(&listener, &name).unwrap_or_else(|| Arc::clone(&listener)));
        given.push(listener);
        Self {
            inner: Some(Arc::new(Inner { name, given, list })),
        }
    }

    /// The same listeners under another name (rebound to it, see [`Listener::bind`]).
    ///
    /// Listeners made with `Listeners::default()` that nobody listens to yet stay as they are
    /// (free to carry about, and to clone per call): they keep no name, so a listener added
    /// to them afterwards does not get this one. Name listeners with [`Listeners::new`], or
    /// add them before naming them; a layer names the listeners it is given after itself.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    /// use palisade::events::{Event, Listeners};
    ///
    /// let names = Arc::new(Mutex::new(Vec::new()));
    /// let seen = names.clone();
    /// let listeners = Listeners::new("draft")
    ///     .with(move |e: &Event<'_>| seen.lock().unwrap().push(e.name().to_owned()))
    ///     .named("inventory");
    /// assert_eq!(listeners.name(), Some("inventory"));
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .name("inventory")
    ///     .listeners(listeners)
    ///     .build()
    ///     .unwrap()
    ///     .handle();
    /// breaker.force_open();
    /// assert_eq!(*names.lock().unwrap(), ["inventory"]);
    /// ```
    #[must_use]
    pub fn named(self, name: impl Into<String>) -> Self {
        let name = name.into();
        match self.inner {
            Some(inner) if inner.name != name => Self {
                inner: Some(Arc::new(Inner::bound(name, inner.given.clone()))),
            },
            _ => self,
        }
    }

    /// The name events carry (`None` when no name was given and nobody listens).
    ///
    /// ```
    /// use palisade::events::{Event, Listeners};
    ///
    /// assert_eq!(Listeners::default().name(), None);
    /// assert_eq!(Listeners::new("inventory").name(), Some("inventory"));
    /// // A listener added without a name gets the name "default".
    /// let unnamed = Listeners::default().with(|_: &Event<'_>| {});
    /// assert_eq!(unnamed.name(), Some("default"));
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.inner.as_ref().map(|i| i.name.as_str())
    }

    /// As [`emit`](Self::emit), inlined: for a caller already off its hot path (behind its own
    /// "is anyone listening" flag, in a cold function).
    #[inline(always)]
    pub(crate) fn emit_inline<'s>(&'s self, make: impl FnOnce(&'s str) -> Event<'s>) {
        if let Some(inner) = &self.inner {
            tell(inner, make);
        }
    }

    /// Whether nobody listens.
    ///
    /// ```
    /// use palisade::events::{Event, Listeners};
    ///
    /// assert!(Listeners::default().is_empty());
    /// assert!(Listeners::new("inventory").is_empty()); // a name, but nobody listens
    /// assert!(
    ///     !Listeners::new("inventory")
    ///         .with(|_: &Event<'_>| {})
    ///         .is_empty()
    /// );
    /// ```
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.list.is_empty())
    }

    /// Tells every listener about the event `make` builds from the name; `make` is not called
    /// when nobody listens. A panicking listener is caught.
    #[inline]
    pub(crate) fn emit<'s>(&'s self, make: impl FnOnce(&'s str) -> Event<'s>) {
        if let Some(inner) = &self.inner
            && !inner.list.is_empty()
        {
            emit_slow(inner, make);
        }
    }
}

#[cold]
fn emit_slow<'s>(inner: &'s Inner, make: impl FnOnce(&'s str) -> Event<'s>) {
    tell(inner, make);
}

#[inline(always)]
fn tell<'s>(inner: &'s Inner, make: impl FnOnce(&'s str) -> Event<'s>) {
    let event = make(&inner.name);
    for listener in &inner.list {
        let _ = catch_unwind(AssertUnwindSafe(|| listener.on_event(&event)));
    }
}
