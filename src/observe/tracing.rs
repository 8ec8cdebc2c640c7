//! `tracing` events for every decision (feature `tracing`): [`TracingListener`].
//!
//! ```
//! use palisade::circuit_breaker::CircuitBreakerConfig;
//! use palisade::observe::TracingListener;
//! use palisade::policy::Policy;
//!
//! // With a subscriber installed (tracing-subscriber's `fmt()`, say), a trip logs
//! // WARN palisade::circuit_breaker: circuit breaker opened name="inventory" cause="failure_rate" ...
//! let policy = Policy::builder()
//!     .name("inventory")
//!     .circuit_breaker(CircuitBreakerConfig::default())
//!     .listener(TracingListener::new())
//!     .build()
//!     .unwrap();
//! # let _ = policy;
//! ```
//!
//! Targets and levels are listed in [the module above](super#tracing): a transition to open is
//! a warning, each rejection, timeout or fallback is `DEBUG`, per-call bookkeeping is `TRACE`.
//! Filter with the targets (`RUST_LOG=palisade::circuit_breaker=info`). A fallback served
//! carries the message of the error it recovered from as `error`: what that error says, except
//! that a URL written as reqwest writes one (`for url (...)`) is cut down to its scheme, host
//! and port. Other clients' messages are passed as they are: if yours names a request's URL or
//! headers, filter `palisade::fallback` to `INFO` or above.

use ::tracing::{Level, event};

use crate::circuit_breaker::{State, Transition};
use crate::events::{Event, Listener, Rejection};

use super::label;

/// The target of circuit breaker events.
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// # use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
/// # /// Keeps each event's target and level.
/// # #[derive(Clone, Default)]
/// # struct Capture(Arc<Mutex<Vec<(String, tracing::Level)>>>);
/// # impl<S: tracing::Subscriber> Layer<S> for Capture {
/// #     fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
/// #         let meta = event.metadata();
/// #         self.0.lock().unwrap().push((meta.target().to_owned(), *meta.level()));
/// #     }
/// # }
/// use palisade::circuit_breaker::CircuitBreakerConfig;
/// use palisade::observe::{tracing::CIRCUIT_BREAKER, TracingListener};
/// use palisade::policy::Policy;
///
/// let capture = Capture::default();
/// let subscriber = tracing_subscriber::registry().with(capture.clone());
/// let _guard = tracing::subscriber::set_default(subscriber);
/// let policy = Policy::builder()
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .listener(TracingListener::new())
///     .build()
///     .unwrap();
/// policy.circuit_breaker().unwrap().force_open();
/// assert_eq!(
///     *capture.0.lock().unwrap(),
///     [(CIRCUIT_BREAKER.to_owned(), tracing::Level::WARN)]
/// );
/// ```
pub const CIRCUIT_BREAKER: &str = "palisade::circuit_breaker";
/// The target of bulkhead events.
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// # use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
/// # #[derive(Clone, Default)]
/// # struct Capture(Arc<Mutex<Vec<(String, tracing::Level)>>>);
/// # impl<S: tracing::Subscriber> Layer<S> for Capture {
/// #     fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
/// #         let meta = event.metadata();
/// #         self.0.lock().unwrap().push((meta.target().to_owned(), *meta.level()));
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::bulkhead::BulkheadConfig;
/// use palisade::observe::{tracing::BULKHEAD, TracingListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer as _, Service, ServiceExt};
///
/// let capture = Capture::default();
/// let subscriber = tracing_subscriber::registry().with(capture.clone());
/// let _guard = tracing::subscriber::set_default(subscriber);
/// let mut bulkhead = BulkheadConfig::default();
/// bulkhead.max_concurrent = 1;
/// let policy = Policy::builder()
///     .bulkhead(bulkhead)
///     .listener(TracingListener::new())
///     .build()
///     .unwrap();
/// let hangs = service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>());
/// let mut svc = policy.layer(hangs);
/// let _first = svc.ready().await.unwrap().call(());
/// assert!(svc.ready().await.unwrap().call(()).await.is_err());
/// let seen = capture.0.lock().unwrap().clone();
/// assert!(seen.contains(&(BULKHEAD.to_owned(), tracing::Level::DEBUG))); // the rejection
/// assert!(seen.contains(&(BULKHEAD.to_owned(), tracing::Level::TRACE))); // the permit taken
/// # }
/// ```
pub const BULKHEAD: &str = "palisade::bulkhead";
/// The target of timeout events.
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// # use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
/// # #[derive(Clone, Default)]
/// # struct Capture(Arc<Mutex<Vec<(String, tracing::Level)>>>);
/// # impl<S: tracing::Subscriber> Layer<S> for Capture {
/// #     fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
/// #         let meta = event.metadata();
/// #         self.0.lock().unwrap().push((meta.target().to_owned(), *meta.level()));
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::observe::{tracing::TIMEOUT, TracingListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer as _, ServiceExt};
///
/// let capture = Capture::default();
/// let subscriber = tracing_subscriber::registry().with(capture.clone());
/// let _guard = tracing::subscriber::set_default(subscriber);
/// let policy = Policy::builder()
///     .timeout(Duration::from_millis(100))
///     .listener(TracingListener::new())
///     .build()
///     .unwrap();
/// let svc = policy.layer(service_fn(|_: ()| {
///     std::future::pending::<Result<(), std::io::Error>>()
/// }));
/// assert!(svc.oneshot(()).await.is_err());
/// assert_eq!(
///     *capture.0.lock().unwrap(),
///     [(TIMEOUT.to_owned(), tracing::Level::DEBUG)]
/// );
/// # }
/// ```
pub const TIMEOUT: &str = "palisade::timeout";
/// The target of fallback events.
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// # use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
/// # #[derive(Clone, Default)]
/// # struct Capture(Arc<Mutex<Vec<(String, tracing::Level)>>>);
/// # impl<S: tracing::Subscriber> Layer<S> for Capture {
/// #     fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
/// #         let meta = event.metadata();
/// #         self.0.lock().unwrap().push((meta.target().to_owned(), *meta.level()));
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::fallback;
/// use palisade::observe::{tracing::FALLBACK, TracingListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer as _, ServiceExt};
///
/// let capture = Capture::default();
/// let subscriber = tracing_subscriber::registry().with(capture.clone());
/// let _guard = tracing::subscriber::set_default(subscriber);
/// let policy = Policy::builder()
///     .fallback(fallback::value("default"))
///     .listener(TracingListener::new())
///     .build()
///     .unwrap();
/// let svc = policy.layer(service_fn(|_: ()| async {
///     Err::<&str, _>(std::io::Error::other("down"))
/// }));
/// assert_eq!(svc.oneshot(()).await.unwrap(), "default");
/// assert_eq!(
///     *capture.0.lock().unwrap(),
///     [(FALLBACK.to_owned(), tracing::Level::DEBUG)]
/// );
/// # }
/// ```
pub const FALLBACK: &str = "palisade::fallback";

/// Turns events into `tracing` events. Give it to a [`Policy`](crate::policy::Policy) with
/// `.listener(TracingListener::new())`, or to a layer's `Listeners`.
///
/// Costs nothing beyond `tracing`'s own level check for the events no subscriber wants.
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// # use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
/// # /// Keeps each event's level and `name` field.
/// # #[derive(Clone, Default)]
/// # struct Capture(Arc<Mutex<Vec<String>>>);
/// # struct Fields<'a>(&'a mut String);
/// # impl tracing::field::Visit for Fields<'_> {
/// #     fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
/// #         self.0.push_str(&format!(" {}={:?}", field.name(), value));
/// #     }
/// # }
/// # impl<S: tracing::Subscriber> Layer<S> for Capture {
/// #     fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
/// #         let mut line = event.metadata().level().to_string();
/// #         event.record(&mut Fields(&mut line));
/// #         self.0.lock().unwrap().push(line);
/// #     }
/// # }
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use palisade::events::Listeners;
/// use palisade::observe::TracingListener;
///
/// let capture = Capture::default();
/// let subscriber = tracing_subscriber::registry().with(capture.clone());
/// let _guard = tracing::subscriber::set_default(subscriber);
/// // On a layer of its own (a policy takes it with `.listener(TracingListener::new())`).
/// let breaker = CircuitBreakerLayer::builder()
///     .name("payments")
///     .listeners(Listeners::new("payments").with(TracingListener::new()))
///     .build()
///     .unwrap()
///     .handle();
/// breaker.force_open();
/// let line = capture.0.lock().unwrap()[0].clone();
/// assert!(line.starts_with("WARN"), "{line}");
/// assert!(line.contains(r#"name="payments""#) && line.contains(r#"to="forced_open""#), "{line}");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingListener {
    _private: (),
}

impl TracingListener {
    /// A listener that reports to the `tracing` subscriber in force.
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::observe::TracingListener;
    /// use palisade::policy::Policy;
    ///
    /// let policy = Policy::builder()
    ///     .name("inventory")
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .listener(TracingListener::new())
    ///     .build()
    ///     .unwrap();
    /// # let _ = policy;
    /// ```
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

/// A transition at `level`, with every figure of the window that caused it.
macro_rules! transition {
    ($level:expr, $name:expr, $t:expr, $message:literal) => {{
        let t: &Transition = $t;
        event!(
            target: "palisade::circuit_breaker",
            $level,
            name = $name,
            from = label::state(t.from),
            to = label::state(t.to),
            cause = label::cause(t.cause),
            calls = t.window.calls,
            failures = t.window.failures,
            slow_calls = t.window.slow_calls,
            failure_rate = t.window.failure_rate(),
            slow_call_rate = t.window.slow_call_rate(),
            open_for_ms = t.open_for.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            generation = t.generation,
            $message
        )
    }};
}

impl Listener for TracingListener {
    fn on_event(&self, event: &Event<'_>) {
        match *event {
            Event::StateTransition { name, transition } => {
                if transition.would_trip {
                    transition!(
                        Level::WARN,
                        name,
                        transition,
                        "circuit breaker would have opened (metrics-only)"
                    );
                } else if matches!(transition.to, State::Open | State::ForcedOpen) {
                    transition!(Level::WARN, name, transition, "circuit breaker opened");
                } else {
                    transition!(
                        Level::INFO,
                        name,
                        transition,
                        "circuit breaker changed state"
                    );
                }
            }
            Event::Rejected { name, reason } => match reason {
                Rejection::Circuit(_) => event!(
                    target: "palisade::circuit_breaker",
                    Level::DEBUG,
                    name,
                    reason = label::rejection(reason),
                    "call rejected"
                ),
                Rejection::BulkheadFull => event!(
                    target: "palisade::bulkhead",
                    Level::DEBUG,
                    name,
                    reason = label::rejection(reason),
                    "call rejected"
                ),
            },
            Event::TimedOut { name, after } => event!(
                target: "palisade::timeout",
                Level::DEBUG,
                name,
                after = ?after,
                "call timed out"
            ),
            Event::FallbackServed {
                name,
                kind,
                served,
                error,
            } => event!(
                target: "palisade::fallback",
                Level::DEBUG,
                name,
                kind = kind.as_str(),
                served = served.as_str(),
                age_ms = served.age().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                error,
                "fallback served"
            ),
            Event::CallRecorded {
                name,
                outcome,
                duration,
            } => event!(
                target: "palisade::circuit_breaker",
                Level::TRACE,
                name,
                outcome = label::outcome(outcome.kind()),
                duration = duration.map(::tracing::field::debug),
                "call recorded"
            ),
            Event::BulkheadAcquired { name, in_flight } => event!(
                target: "palisade::bulkhead",
                Level::TRACE,
                name,
                in_flight,
                "permit taken"
            ),
            Event::BulkheadReleased { name, in_flight } => event!(
                target: "palisade::bulkhead",
                Level::TRACE,
                name,
                in_flight,
                "permit given back"
            ),
            Event::StaleCacheUpdated { name, entries } => event!(
                target: "palisade::fallback",
                Level::TRACE,
                name,
                entries,
                "stale cache updated"
            ),
        }
    }
}
