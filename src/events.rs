//! Events: what the protections decide, for logs, metrics and dashboards.
//!
//! Every layer can be given [`Listeners`]; each decision worth seeing (a state transition, a
//! rejection, a timeout, a fallback served) reaches every listener as a borrowed [`Event`],
//! synchronously, on the task that made the decision. With no listener installed, emitting is a
//! single branch: nothing is built, nothing is allocated.
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
use crate::fallback::FailureKind;

/// Why a call was rejected without reaching the dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The circuit breaker is open, half-open with every probe slot taken, or forced open.
    Circuit(RejectReason),
    /// The bulkhead had no free permit (and no room or time to wait).
    BulkheadFull,
}

/// A decision made by one of the protections.
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
    /// A call ran out of time; its future was dropped.
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
    },
}

/// Receives events. Implemented for every `Fn(&Event<'_>) + Send + Sync`.
pub trait Listener: Send + Sync {
    /// Called once per event, on the task that made the decision. Must not block.
    fn on_event(&self, event: &Event<'_>);
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
    list: Vec<Arc<dyn Listener>>,
}

/// A name and the listeners to tell about a layer's decisions. Cheap to clone; empty by
/// default, and then free.
#[derive(Clone, Default)]
pub struct Listeners {
    inner: Option<Arc<Inner>>,
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
    /// No listener yet; events will carry `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                name: name.into(),
                list: Vec::new(),
            })),
        }
    }

    /// The same listeners and one more.
    #[must_use]
    pub fn with(self, listener: impl Listener + 'static) -> Self {
        let (name, mut list) = match self.inner {
            Some(inner) => (inner.name.clone(), inner.list.clone()),
            None => ("default".to_owned(), Vec::new()),
        };
        list.push(Arc::new(listener));
        Self {
            inner: Some(Arc::new(Inner { name, list })),
        }
    }

    /// The same listeners under another name.
    #[must_use]
    pub fn named(self, name: impl Into<String>) -> Self {
        match self.inner {
            Some(inner) => Self {
                inner: Some(Arc::new(Inner {
                    name: name.into(),
                    list: inner.list.clone(),
                })),
            },
            None => self,
        }
    }

    /// Whether nobody listens.
    pub fn is_empty(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.list.is_empty())
    }

    /// Tells every listener about the event `make` builds from the name; `make` is not called
    /// when nobody listens. A panicking listener is caught.
    #[inline]
    pub(crate) fn emit<'s>(&'s self, make: impl FnOnce(&'s str) -> Event<'s>) {
        if let Some(inner) = &self.inner {
            if !inner.list.is_empty() {
                emit_slow(inner, make);
            }
        }
    }
}

#[cold]
fn emit_slow<'s>(inner: &'s Inner, make: impl FnOnce(&'s str) -> Event<'s>) {
    let event = make(&inner.name);
    for listener in &inner.list {
        let _ = catch_unwind(AssertUnwindSafe(|| listener.on_event(&event)));
    }
}
