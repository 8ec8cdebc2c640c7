//! Observability: `tracing` events, `metrics` series, and a registry of every breaker and bulkhead.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use palisade::observe::Registry;
//! use palisade::policy::Policy;
//! use palisade::{bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig};
//!
//! let inventory = Policy::builder()
//!     .name("inventory")
//!     .bulkhead(BulkheadConfig::default())
//!     .circuit_breaker(CircuitBreakerConfig::default())
//!     .build()
//!     .unwrap();
//! let registry = Registry::new();
//! registry.register(&inventory);
//!
//! let report = registry.snapshot();
//! assert_eq!(report.circuit_breakers[0].name, "inventory");
//! assert_eq!(report.bulkheads[0].available, 25);
//! # }
//! ```
//!
//! Everything here is built on [`crate::events`]: a listener is given to a layer (or to a
//! [`Policy`](crate::policy::Policy), which hands it to every part under the policy's name) and
//! hears each decision as a borrowed [`Event`](crate::events::Event). With no listener installed a
//! layer builds no event and reads no extra clock: the cost is one branch.
//!
//! * [`TracingListener`] (feature `tracing`): one `tracing` event per decision.
//! * [`MetricsListener`] (feature `metrics`): counters, gauges and histograms through the
//!   `metrics` facade, for any recorder (Prometheus, StatsD, ...).
//! * [`Registry`]: the breakers and bulkheads of named policies, for a health or admin endpoint
//!   ([`RegistrySnapshot`] is `serde::Serialize` with feature `serde`).
//!
//! ```
//! # #[cfg(all(feature = "tracing", feature = "metrics"))] {
//! use palisade::observe::{MetricsListener, TracingListener};
//! use palisade::policy::Policy;
//! use palisade::circuit_breaker::CircuitBreakerConfig;
//!
//! let policy = Policy::builder()
//!     .name("inventory")
//!     .circuit_breaker(CircuitBreakerConfig::default())
//!     .listener(TracingListener::new())
//!     .listener(MetricsListener::new())
//!     .build()
//!     .unwrap();
//! # let _ = policy;
//! # }
//! ```
//!
//! # Metrics
//!
//! Every series has a `name` label: the policy's name (or the layer's, for a layer built on its
//! own). Handles are registered with the recorder in force the first time a series moves, once
//! per policy and layer, never per call; build policies before or after installing the recorder,
//! as you like, but **install it before the first call through them**: a series that moved
//! while no recorder was installed keeps the no-op handle it got then (the `metrics` crate
//! offers no way to tell a no-op handle from a live one). A series outlives the policy that
//! moved it: a policy dropped, or rebuilt under another name, leaves its gauges at their last
//! values (a `palisade_circuit_state` of 1 for a breaker dropped open), which the recorder
//! keeps exporting; rebuilt under the same name, it takes them over.
//!
//! **Do not let the exporter expire idle series** (`metrics-exporter-prometheus`'s
//! `idle_timeout`, for one). Because palisade keeps each handle, a series the exporter drops
//! while it is idle is never exported again, even once it moves: a `palisade_circuit_state` or
//! `palisade_rejections_total{reason="open"}` idle while the breaker stayed closed would be
//! missing through the next incident, and the calls counters after a quiet night. This is how
//! handles and idle expiry interact in the `metrics` crate (metrics-rs/metrics#314); palisade
//! cannot tell an expired handle from a live one.
//!
//! | metric | type | labels | what moves it |
//! | --- | --- | --- | --- |
//! | `palisade_calls_total` | counter | `name`, `outcome` | a call the breaker admitted ended: `outcome` is `success`, `failure` or `ignored` (a full bulkhead inside the breaker is `ignored`) |
//! | `palisade_call_duration_seconds` | histogram (seconds) | `name`, `outcome` | the same calls' durations, timed from their first suspension; a call ready on its first poll (it waited on nothing, and no clock was read for it) is counted in `palisade_calls_total` only |
//! | `palisade_rejections_total` | counter | `name`, `reason` | a call rejected without reaching the dependency: `reason` is `open`, `half_open_full`, `forced_open` or `bulkhead_full` |
//! | `palisade_circuit_state` | gauge | `name` | the breaker's state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled, 5 metrics-only (set at each transition, unless a later one was already shown, and at the first call if no transition came before it) |
//! | `palisade_circuit_transitions_total` | counter | `name`, `from`, `to` | a state change (`closed`, `open`, `half_open`, `forced_open`, `disabled`, `metrics_only`), and each operator call (`reset`, `force_open`, `disable`, `metrics_only`), counted even when it leaves the state as it was (`from` = `to`: a `reset` of a closed breaker still empties its window) |
//! | `palisade_circuit_would_trips_total` | counter | `name` | a `MetricsOnly` breaker would have opened |
//! | `palisade_timeouts_total` | counter | `name` | a call ran out of time |
//! | `palisade_bulkhead_in_flight` | gauge | `name` | bulkhead permits taken: up one at every acquire, down one at every release |
//! | `palisade_fallbacks_total` | counter | `name`, `kind` | the fallback answered a failure: `kind` is `circuit_open`, `bulkhead_full`, `timed_out`, `inner_error` or `failure_response` |
//! | `palisade_fallback_stale_age_seconds` | histogram (seconds) | `name` | the age of each stale response a stale cache served (for HTTP, with the upstream `Age` it came with, as its `Age` header and `max_stale` count it) |
//! | `palisade_stale_cache_entries` | gauge | `name` | responses a stale cache holds, set after each successful call it sees |
//!
//! Call series come from the circuit breaker, the one place that records every admitted call's
//! outcome: **a policy without a breaker has no `palisade_calls_total` or
//! `palisade_call_duration_seconds`**. Calls the breaker rejects are in
//! `palisade_rejections_total`, not in `palisade_calls_total`; a call cancelled (its future
//! dropped) is in neither.
//!
//! # Tracing
//!
//! | target | level | events |
//! | --- | --- | --- |
//! | `palisade::circuit_breaker` | `WARN` | opened (tripped, reopened after probes, forced open); would have opened (`MetricsOnly`) |
//! | `palisade::circuit_breaker` | `INFO` | every other transition: half-open, closed, disabled, metrics-only |
//! | `palisade::circuit_breaker` | `DEBUG` | a call rejected |
//! | `palisade::circuit_breaker` | `TRACE` | a call's outcome recorded |
//! | `palisade::bulkhead` | `DEBUG` | a call rejected (bulkhead full) |
//! | `palisade::bulkhead` | `TRACE` | a permit taken or given back |
//! | `palisade::timeout` | `DEBUG` | a call timed out |
//! | `palisade::fallback` | `DEBUG` | a fallback served (fresh, or stale with its age) |
//! | `palisade::fallback` | `TRACE` | the stale cache's size after a success |
//!
//! Every event has the field `name` (the policy's name); transitions also carry `from`, `to`,
//! `cause` and the window's figures that caused them (`calls`, `failures`, `slow_calls`,
//! `failure_rate`, `slow_call_rate`) and `open_for_ms`.

#[cfg(feature = "metrics")]
pub mod metrics;
mod registry;
#[cfg(feature = "tracing")]
pub mod tracing;

#[cfg(feature = "metrics")]
pub use self::metrics::MetricsListener;
#[cfg(feature = "tracing")]
pub use self::tracing::TracingListener;
pub use registry::{BreakerReport, BulkheadReport, CacheReport, Registry, RegistrySnapshot};

/// The strings palisade uses for label values and log fields.
///
/// ```
/// use palisade::circuit_breaker::State;
/// use palisade::observe::label;
///
/// // The same words in every log line, metric label and admin page.
/// assert_eq!(label::state(State::HalfOpen), "half_open");
/// ```
pub mod label {
    use crate::circuit_breaker::{Cause, RejectReason, State};
    use crate::classify::OutcomeKind;
    use crate::events::Rejection;

    /// `closed`, `open`, `half_open`, `forced_open`, `disabled` or `metrics_only`.
    ///
    /// ```
    /// use palisade::circuit_breaker::State;
    /// use palisade::observe::label;
    ///
    /// assert_eq!(label::state(State::ForcedOpen), "forced_open");
    /// assert_eq!(label::state(State::MetricsOnly), "metrics_only");
    /// ```
    pub const fn state(state: State) -> &'static str {
        match state {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// `success`, `failure` or `ignored`.
    ///
    /// ```
    /// use palisade::classify::Outcome;
    /// use palisade::observe::label;
    ///
    /// assert_eq!(label::outcome(Outcome::failure().kind()), "failure");
    /// ```
    pub const fn outcome(kind: OutcomeKind) -> &'static str {
        match kind {
            OutcomeKind::Success => "success",
            OutcomeKind::Failure => "failure",
            OutcomeKind::Ignored => "ignored",
        }
    }

    /// `open`, `half_open_full`, `forced_open` or `bulkhead_full`.
    ///
    /// ```
    /// use palisade::circuit_breaker::RejectReason;
    /// use palisade::events::Rejection;
    /// use palisade::observe::label;
    ///
    /// assert_eq!(
    ///     label::rejection(Rejection::Circuit(RejectReason::HalfOpenFull)),
    ///     "half_open_full"
    /// );
    /// assert_eq!(label::rejection(Rejection::BulkheadFull), "bulkhead_full");
    /// ```
    pub const fn rejection(rejection: Rejection) -> &'static str {
        match rejection {
            Rejection::Circuit(RejectReason::Open) => "open",
            Rejection::Circuit(RejectReason::HalfOpenFull) => "half_open_full",
            Rejection::Circuit(RejectReason::ForcedOpen) => "forced_open",
            Rejection::BulkheadFull => "bulkhead_full",
        }
    }

    /// `failure_rate`, `slow_call_rate`, `consecutive_failures`, `open_duration_elapsed`,
    /// `probes_succeeded`, `probes_failed`, `half_open_timeout` or `operator`.
    ///
    /// ```
    /// use palisade::circuit_breaker::Cause;
    /// use palisade::observe::label;
    ///
    /// assert_eq!(label::cause(Cause::FailureRate), "failure_rate");
    /// assert_eq!(label::cause(Cause::HalfOpenTimeout), "half_open_timeout");
    /// ```
    pub const fn cause(cause: Cause) -> &'static str {
        match cause {
            Cause::FailureRate => "failure_rate",
            Cause::SlowCallRate => "slow_call_rate",
            Cause::ConsecutiveFailures => "consecutive_failures",
            Cause::OpenDurationElapsed => "open_duration_elapsed",
            Cause::ProbesSucceeded => "probes_succeeded",
            Cause::ProbesFailed => "probes_failed",
            Cause::HalfOpenTimeout => "half_open_timeout",
            Cause::Operator => "operator",
        }
    }
}
