//! Metrics through the `metrics` facade (feature `metrics`): [`MetricsListener`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use palisade::circuit_breaker::CircuitBreakerConfig;
//! use palisade::observe::MetricsListener;
//! use palisade::policy::Policy;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! // Install a recorder (metrics-exporter-prometheus, for one) before or after this.
//! let policy = Policy::builder()
//!     .name("inventory")
//!     .circuit_breaker(CircuitBreakerConfig::default())
//!     .listener(MetricsListener::new())
//!     .build()
//!     .unwrap();
//! let svc = policy.layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
//! // palisade_calls_total{name="inventory",outcome="success"} 1
//! assert_eq!(svc.oneshot(7).await.unwrap(), 7);
//! # }
//! ```
//!
//! The series, their labels and units are listed in [the module above](super#metrics).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::circuit_breaker::{RejectReason, State};
use crate::classify::OutcomeKind;
use crate::events::{Event, Listener, Rejection};
use crate::fallback::FailureKind;

use super::label;

/// `palisade_calls_total`.
pub const CALLS_TOTAL: &str = "palisade_calls_total";
/// `palisade_call_duration_seconds`.
pub const CALL_DURATION_SECONDS: &str = "palisade_call_duration_seconds";
/// `palisade_rejections_total`.
pub const REJECTIONS_TOTAL: &str = "palisade_rejections_total";
/// `palisade_circuit_state`.
pub const CIRCUIT_STATE: &str = "palisade_circuit_state";
/// `palisade_circuit_transitions_total`.
pub const CIRCUIT_TRANSITIONS_TOTAL: &str = "palisade_circuit_transitions_total";
/// `palisade_circuit_would_trips_total`.
pub const CIRCUIT_WOULD_TRIPS_TOTAL: &str = "palisade_circuit_would_trips_total";
/// `palisade_timeouts_total`.
pub const TIMEOUTS_TOTAL: &str = "palisade_timeouts_total";
/// `palisade_bulkhead_in_flight`.
pub const BULKHEAD_IN_FLIGHT: &str = "palisade_bulkhead_in_flight";
/// `palisade_fallbacks_total`.
pub const FALLBACKS_TOTAL: &str = "palisade_fallbacks_total";
/// `palisade_fallback_stale_age_seconds`.
pub const FALLBACK_STALE_AGE_SECONDS: &str = "palisade_fallback_stale_age_seconds";
/// `palisade_stale_cache_entries`.
pub const STALE_CACHE_ENTRIES: &str = "palisade_stale_cache_entries";

/// Turns events into `metrics` series. Give it to a [`Policy`](crate::policy::Policy) with
/// `.listener(MetricsListener::new())`, or to a layer's `Listeners`.
///
/// When it is added under a name (see [`Listener::bind`]) it makes a listener for that name,
/// which registers each series' handle the first time the series moves and keeps it: per call
/// the cost is the handles' own (an atomic add for a counter, a sample for a histogram), never
/// a registration. Used directly through [`on_event`](Listener::on_event), unbound, it
/// registers on every event: always let [`Listeners`](crate::events::Listeners) bind it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsListener {
    _private: (),
}

impl MetricsListener {
    /// A listener that reports to the `metrics` recorder in force.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl Listener for MetricsListener {
    fn on_event(&self, event: &Event<'_>) {
        Series::new(event.name()).on_event(event);
    }

    fn bind(&self, name: &str) -> Option<Arc<dyn Listener>> {
        Some(Arc::new(Series::new(name)))
    }
}

/// The series of one name, registered as they first move.
struct Series {
    name: String,
    described: OnceLock<()>,
    calls: [OnceLock<Counter>; 3],
    durations: [OnceLock<Histogram>; 3],
    rejections: [OnceLock<Counter>; 4],
    state: OnceLock<Gauge>,
    would_trips: OnceLock<Counter>,
    timeouts: OnceLock<Counter>,
    in_flight: OnceLock<Gauge>,
    fallbacks: [OnceLock<Counter>; 5],
    stale_age: OnceLock<Histogram>,
    stale_entries: OnceLock<Gauge>,
}

const OUTCOMES: [OutcomeKind; 3] = [
    OutcomeKind::Success,
    OutcomeKind::Failure,
    OutcomeKind::Ignored,
];

const REJECTIONS: [Rejection; 4] = [
    Rejection::Circuit(RejectReason::Open),
    Rejection::Circuit(RejectReason::HalfOpenFull),
    Rejection::Circuit(RejectReason::ForcedOpen),
    Rejection::BulkheadFull,
];

const KINDS: [FailureKind; 5] = [
    FailureKind::CircuitOpen,
    FailureKind::BulkheadFull,
    FailureKind::TimedOut,
    FailureKind::InnerError,
    FailureKind::FailureResponse,
];

fn outcome_index(kind: OutcomeKind) -> usize {
    match kind {
        OutcomeKind::Success => 0,
        OutcomeKind::Failure => 1,
        OutcomeKind::Ignored => 2,
    }
}

fn rejection_index(rejection: Rejection) -> usize {
    match rejection {
        Rejection::Circuit(RejectReason::Open) => 0,
        Rejection::Circuit(RejectReason::HalfOpenFull) => 1,
        Rejection::Circuit(RejectReason::ForcedOpen) => 2,
        Rejection::BulkheadFull => 3,
    }
}

fn kind_index(kind: FailureKind) -> usize {
    match kind {
        FailureKind::CircuitOpen => 0,
        FailureKind::BulkheadFull => 1,
        FailureKind::TimedOut => 2,
        FailureKind::InnerError => 3,
        FailureKind::FailureResponse => 4,
    }
}

fn state_value(state: State) -> f64 {
    f64::from(state.as_index())
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn count(n: usize) -> f64 {
    n as f64
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Describes every series (units and help text) to the recorder in force.
fn describe() {
    metrics::describe_counter!(
        CALLS_TOTAL,
        Unit::Count,
        "Calls admitted by the circuit breaker that ended, by outcome."
    );
    metrics::describe_histogram!(
        CALL_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of calls admitted by the circuit breaker that suspended, timed from their first suspension."
    );
    metrics::describe_counter!(
        REJECTIONS_TOTAL,
        Unit::Count,
        "Calls rejected without reaching the dependency, by reason."
    );
    metrics::describe_gauge!(
        CIRCUIT_STATE,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled, 5 metrics-only."
    );
    metrics::describe_counter!(
        CIRCUIT_TRANSITIONS_TOTAL,
        Unit::Count,
        "Circuit breaker state changes."
    );
    metrics::describe_counter!(
        CIRCUIT_WOULD_TRIPS_TOTAL,
        Unit::Count,
        "Times a metrics-only circuit breaker would have opened."
    );
    metrics::describe_counter!(TIMEOUTS_TOTAL, Unit::Count, "Calls that timed out.");
    metrics::describe_gauge!(BULKHEAD_IN_FLIGHT, Unit::Count, "Bulkhead permits taken.");
    metrics::describe_counter!(
        FALLBACKS_TOTAL,
        Unit::Count,
        "Failures answered by the fallback, by kind of failure."
    );
    metrics::describe_histogram!(
        FALLBACK_STALE_AGE_SECONDS,
        Unit::Seconds,
        "Age of the stale responses served by the fallback's stale cache."
    );
    metrics::describe_gauge!(
        STALE_CACHE_ENTRIES,
        Unit::Count,
        "Responses held by the fallback's stale cache."
    );
}

impl Series {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            described: OnceLock::new(),
            calls: Default::default(),
            durations: Default::default(),
            rejections: Default::default(),
            state: OnceLock::new(),
            would_trips: OnceLock::new(),
            timeouts: OnceLock::new(),
            in_flight: OnceLock::new(),
            fallbacks: Default::default(),
            stale_age: OnceLock::new(),
            stale_entries: OnceLock::new(),
        }
    }

    fn described(&self) {
        self.described.get_or_init(describe);
    }

    fn counter<'c>(
        &self,
        cell: &'c OnceLock<Counter>,
        make: impl FnOnce(String) -> Counter,
    ) -> &'c Counter {
        cell.get_or_init(|| {
            self.described();
            make(self.name.clone())
        })
    }

    fn on_event(&self, event: &Event<'_>) {
        match *event {
            Event::CallRecorded {
                outcome, duration, ..
            } => {
                let i = outcome_index(outcome.kind());
                let label = label::outcome(OUTCOMES[i]);
                self.calls[i]
                    .get_or_init(|| {
                        self.described();
                        metrics::counter!(CALLS_TOTAL, "name" => self.name.clone(), "outcome" => label)
                    })
                    .increment(1);
                // A call ready on its first poll was not timed: no made-up zero.
                if let Some(duration) = duration {
                    self.durations[i]
                        .get_or_init(|| {
                            self.described();
                            metrics::histogram!(CALL_DURATION_SECONDS, "name" => self.name.clone(), "outcome" => label)
                        })
                        .record(seconds(duration));
                }
                // A breaker that has not changed state yet is closed: show it from its first call.
                self.state.get_or_init(|| {
                    let gauge = metrics::gauge!(CIRCUIT_STATE, "name" => self.name.clone());
                    gauge.set(state_value(State::Closed));
                    gauge
                });
            }
            Event::StateTransition { transition, .. } => {
                if transition.would_trip {
                    self.counter(
                        &self.would_trips,
                        |name| metrics::counter!(CIRCUIT_WOULD_TRIPS_TOTAL, "name" => name),
                    )
                    .increment(1);
                    return;
                }
                self.described();
                self.state
                    .get_or_init(|| metrics::gauge!(CIRCUIT_STATE, "name" => self.name.clone()))
                    .set(state_value(transition.to));
                // Transitions are rare: this series is registered as it moves.
                metrics::counter!(
                    CIRCUIT_TRANSITIONS_TOTAL,
                    "name" => self.name.clone(),
                    "from" => label::state(transition.from),
                    "to" => label::state(transition.to),
                )
                .increment(1);
            }
            Event::Rejected { reason, .. } => {
                let i = rejection_index(reason);
                let label = label::rejection(REJECTIONS[i]);
                self.counter(
                    &self.rejections[i],
                    |name| metrics::counter!(REJECTIONS_TOTAL, "name" => name, "reason" => label),
                )
                .increment(1);
            }
            Event::TimedOut { .. } => {
                self.counter(
                    &self.timeouts,
                    |name| metrics::counter!(TIMEOUTS_TOTAL, "name" => name),
                )
                .increment(1);
            }
            Event::FallbackServed { kind, served, .. } => {
                let i = kind_index(kind);
                let label = KINDS[i].as_str();
                self.counter(
                    &self.fallbacks[i],
                    |name| metrics::counter!(FALLBACKS_TOTAL, "name" => name, "kind" => label),
                )
                .increment(1);
                if let Some(age) = served.age() {
                    self.stale_age
                        .get_or_init(|| {
                            self.described();
                            metrics::histogram!(FALLBACK_STALE_AGE_SECONDS, "name" => self.name.clone())
                        })
                        .record(seconds(age));
                }
            }
            Event::BulkheadAcquired { in_flight, .. }
            | Event::BulkheadReleased { in_flight, .. } => {
                self.in_flight
                    .get_or_init(|| {
                        self.described();
                        metrics::gauge!(BULKHEAD_IN_FLIGHT, "name" => self.name.clone())
                    })
                    .set(count(in_flight));
            }
            Event::StaleCacheUpdated { entries, .. } => {
                self.stale_entries
                    .get_or_init(|| {
                        self.described();
                        metrics::gauge!(STALE_CACHE_ENTRIES, "name" => self.name.clone())
                    })
                    .set(count(entries));
            }
        }
    }
}

impl Listener for Series {
    fn on_event(&self, event: &Event<'_>) {
        Series::on_event(self, event);
    }
}
