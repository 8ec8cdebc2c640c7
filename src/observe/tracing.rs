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
//! Filter with the targets (`RUST_LOG=palisade::circuit_breaker=info`).

use ::tracing::{Level, event};

use crate::circuit_breaker::{State, Transition};
use crate::events::{Event, Listener, Rejection};

use super::label;

/// The target of circuit breaker events.
pub const CIRCUIT_BREAKER: &str = "palisade::circuit_breaker";
/// The target of bulkhead events.
pub const BULKHEAD: &str = "palisade::bulkhead";
/// The target of timeout events.
pub const TIMEOUT: &str = "palisade::timeout";
/// The target of fallback events.
pub const FALLBACK: &str = "palisade::fallback";

/// Turns events into `tracing` events. Give it to a [`Policy`](crate::policy::Policy) with
/// `.listener(TracingListener::new())`, or to a layer's `Listeners`.
///
/// Costs nothing beyond `tracing`'s own level check for the events no subscriber wants.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingListener {
    _private: (),
}

impl TracingListener {
    /// A listener that reports to the `tracing` subscriber in force.
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
            Event::FallbackServed { name, kind, served } => event!(
                target: "palisade::fallback",
                Level::DEBUG,
                name,
                kind = kind.as_str(),
                served = served.as_str(),
                age_ms = served.age().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
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
