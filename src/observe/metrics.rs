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
//! // Install a recorder (metrics-exporter-prometheus, for one) before or after this, but
//! // before the first call: a series that moved with no recorder keeps a no-op handle.
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

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::circuit_breaker::{RejectReason, State, Transition, generation_after};
use crate::classify::OutcomeKind;
use crate::events::{Event, Listener, Rejection};
use crate::fallback::FailureKind;

use super::label;

/// How late a breaker's transition can reach the listener after a later one (they are told
/// after the breaker's lock is released): an older one told within this is not shown.
const LATE_DELIVERY: Duration = Duration::from_secs(1);

/// `palisade_calls_total`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
/// use palisade::circuit_breaker::CircuitBreakerConfig;
/// use palisade::observe::{metrics::CALLS_TOTAL, MetricsListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let policy = Policy::builder()
///     .name("inventory")
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// let svc = policy.layer(service_fn(
///     |x: u32| async move { Ok::<_, std::io::Error>(x) },
/// ));
/// svc.oneshot(1).await.unwrap();
///
/// let calls: Vec<_> = snapshotter
///     .snapshot()
///     .into_vec()
///     .into_iter()
///     .filter(|(key, ..)| key.key().name() == CALLS_TOTAL)
///     .map(|(key, _, _, value)| {
///         let labels: Vec<_> = key
///             .key()
///             .labels()
///             .map(|l| format!("{}={}", l.key(), l.value()))
///             .collect();
///         (labels, value)
///     })
///     .collect();
/// assert_eq!(
///     calls,
///     [(
///         vec!["name=inventory".to_owned(), "outcome=success".to_owned()],
///         DebugValue::Counter(1)
///     )]
/// );
/// # }
/// ```
pub const CALLS_TOTAL: &str = "palisade_calls_total";
/// `palisade_call_duration_seconds`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
/// use palisade::circuit_breaker::CircuitBreakerConfig;
/// use palisade::observe::{metrics::CALL_DURATION_SECONDS, MetricsListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let policy = Policy::builder()
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// let svc = policy.layer(service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_millis(250)).await;
///     Ok::<_, std::io::Error>(())
/// }));
/// svc.oneshot(()).await.unwrap();
/// let durations: Vec<_> = snapshotter.snapshot().into_vec().into_iter()
///     .filter(|(key, ..)| key.key().name() == CALL_DURATION_SECONDS)
///     .map(|(.., value)| value)
///     .collect();
/// let [DebugValue::Histogram(samples)] = &durations[..] else { panic!("{durations:?}") };
/// assert_eq!(samples.iter().map(|s| s.into_inner()).collect::<Vec<_>>(), [0.25]);
/// # }
/// ```
pub const CALL_DURATION_SECONDS: &str = "palisade_call_duration_seconds";
/// `palisade_rejections_total`.
///
/// ```
/// # use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
/// # /// The series named `name`: their labels (`key=value`) and values.
/// # fn series(snapshotter: &Snapshotter, name: &str) -> Vec<(Vec<String>, DebugValue)> {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .map(|(key, _, _, value)| {
/// #             let labels = key.key().labels().map(|l| format!("{}={}", l.key(), l.value()));
/// #             (labels.collect(), value)
/// #         })
/// #         .collect()
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::circuit_breaker::CircuitBreakerConfig;
/// use palisade::observe::{metrics::REJECTIONS_TOTAL, MetricsListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let recorder = DebuggingRecorder::new();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let policy = Policy::builder()
///     .name("inventory")
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// policy.circuit_breaker().unwrap().force_open();
/// let svc = policy.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
/// assert!(svc.oneshot(()).await.is_err());
/// assert_eq!(
///     series(&recorder.snapshotter(), REJECTIONS_TOTAL),
///     [(
///         vec!["name=inventory".to_owned(), "reason=forced_open".to_owned()],
///         DebugValue::Counter(1),
///     )],
/// );
/// # }
/// ```
pub const REJECTIONS_TOTAL: &str = "palisade_rejections_total";
/// `palisade_circuit_state`.
///
/// ```
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
/// use palisade::circuit_breaker::{CircuitBreakerConfig, State};
/// use palisade::observe::{metrics::CIRCUIT_STATE, MetricsListener};
/// use palisade::policy::Policy;
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let policy = Policy::builder()
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// policy.circuit_breaker().unwrap().force_open();
/// let state = snapshotter
///     .snapshot()
///     .into_vec()
///     .into_iter()
///     .find(|(key, ..)| key.key().name() == CIRCUIT_STATE)
///     .map(|(.., value)| value);
/// assert_eq!(
///     state,
///     Some(DebugValue::Gauge(
///         f64::from(State::ForcedOpen.as_index()).into()
///     ))
/// );
/// ```
pub const CIRCUIT_STATE: &str = "palisade_circuit_state";
/// `palisade_circuit_transitions_total`.
///
/// ```
/// # use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
/// # /// The series named `name`: their labels (`key=value`) and values.
/// # fn series(snapshotter: &Snapshotter, name: &str) -> Vec<(Vec<String>, DebugValue)> {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .map(|(key, _, _, value)| {
/// #             let labels = key.key().labels().map(|l| format!("{}={}", l.key(), l.value()));
/// #             (labels.collect(), value)
/// #         })
/// #         .collect()
/// # }
/// use palisade::circuit_breaker::CircuitBreakerConfig;
/// use palisade::observe::{metrics::CIRCUIT_TRANSITIONS_TOTAL, MetricsListener};
/// use palisade::policy::Policy;
///
/// let recorder = DebuggingRecorder::new();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let policy = Policy::builder()
///     .name("inventory")
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// policy.circuit_breaker().unwrap().force_open();
/// let labels = ["from=closed", "name=inventory", "to=forced_open"].map(str::to_owned).to_vec();
/// let mut got = series(&recorder.snapshotter(), CIRCUIT_TRANSITIONS_TOTAL);
/// got.iter_mut().for_each(|(l, _)| l.sort());
/// assert_eq!(got, [(labels, DebugValue::Counter(1))]);
/// ```
pub const CIRCUIT_TRANSITIONS_TOTAL: &str = "palisade_circuit_transitions_total";
/// `palisade_circuit_would_trips_total`.
///
/// ```
/// # use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
/// # /// The series named `name`: their labels (`key=value`) and values.
/// # fn series(snapshotter: &Snapshotter, name: &str) -> Vec<(Vec<String>, DebugValue)> {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .map(|(key, _, _, value)| {
/// #             let labels = key.key().labels().map(|l| format!("{}={}", l.key(), l.value()));
/// #             (labels.collect(), value)
/// #         })
/// #         .collect()
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::circuit_breaker::CircuitBreakerConfig;
/// use palisade::observe::{metrics::CIRCUIT_WOULD_TRIPS_TOTAL, MetricsListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let recorder = DebuggingRecorder::new();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let mut breaker = CircuitBreakerConfig::default();
/// breaker.consecutive_failures = Some(1);
/// let policy = Policy::builder()
///     .name("inventory")
///     .circuit_breaker(breaker)
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// policy.circuit_breaker().unwrap().metrics_only(); // trying the settings out
/// let down = service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("down")) });
/// let svc = policy.layer(down);
/// assert!(svc.oneshot(()).await.is_err()); // would have opened the breaker
/// assert_eq!(
///     series(&recorder.snapshotter(), CIRCUIT_WOULD_TRIPS_TOTAL),
///     [(vec!["name=inventory".to_owned()], DebugValue::Counter(1))],
/// );
/// # }
/// ```
pub const CIRCUIT_WOULD_TRIPS_TOTAL: &str = "palisade_circuit_would_trips_total";
/// `palisade_timeouts_total`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
/// use palisade::observe::{metrics::TIMEOUTS_TOTAL, MetricsListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let policy = Policy::builder()
///     .timeout(Duration::from_millis(100))
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// let svc = policy.layer(service_fn(|_: ()| {
///     std::future::pending::<Result<(), std::io::Error>>()
/// }));
/// assert!(svc.oneshot(()).await.is_err());
/// let timeouts = snapshotter
///     .snapshot()
///     .into_vec()
///     .into_iter()
///     .find(|(key, ..)| key.key().name() == TIMEOUTS_TOTAL)
///     .map(|(.., value)| value);
/// assert_eq!(timeouts, Some(DebugValue::Counter(1)));
/// # }
/// ```
pub const TIMEOUTS_TOTAL: &str = "palisade_timeouts_total";
/// `palisade_bulkhead_in_flight`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
/// use palisade::bulkhead::BulkheadConfig;
/// use palisade::observe::{metrics::BULKHEAD_IN_FLIGHT, MetricsListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let policy = Policy::builder()
///     .bulkhead(BulkheadConfig::default())
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// let mut svc = policy.layer(service_fn(|_: ()| {
///     std::future::pending::<Result<(), std::io::Error>>()
/// }));
/// let _calls = [
///     svc.ready().await.unwrap().call(()),
///     svc.ready().await.unwrap().call(()),
/// ];
/// let in_flight = snapshotter
///     .snapshot()
///     .into_vec()
///     .into_iter()
///     .find(|(key, ..)| key.key().name() == BULKHEAD_IN_FLIGHT)
///     .map(|(.., value)| value);
/// assert_eq!(in_flight, Some(DebugValue::Gauge(2.0.into())));
/// # }
/// ```
pub const BULKHEAD_IN_FLIGHT: &str = "palisade_bulkhead_in_flight";
/// `palisade_fallbacks_total`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
/// use palisade::fallback;
/// use palisade::observe::{metrics::FALLBACKS_TOTAL, MetricsListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let policy = Policy::builder()
///     .fallback(fallback::value(0))
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// let svc = policy.layer(service_fn(|_: ()| async {
///     Err::<i32, _>(std::io::Error::other("down"))
/// }));
/// assert_eq!(svc.oneshot(()).await.unwrap(), 0);
/// let (key, .., value) = snapshotter
///     .snapshot()
///     .into_vec()
///     .into_iter()
///     .find(|(key, ..)| key.key().name() == FALLBACKS_TOTAL)
///     .unwrap();
/// assert!(
///     key.key()
///         .labels()
///         .any(|l| l.key() == "kind" && l.value() == "inner_error")
/// );
/// assert_eq!(value, DebugValue::Counter(1));
/// # }
/// ```
pub const FALLBACKS_TOTAL: &str = "palisade_fallbacks_total";
/// `palisade_fallback_stale_age_seconds`.
///
/// ```
/// # use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
/// # /// The series named `name`: their labels (`key=value`) and values.
/// # fn series(snapshotter: &Snapshotter, name: &str) -> Vec<(Vec<String>, DebugValue)> {
/// #     snapshotter.snapshot().into_vec().into_iter()
/// #         .filter(|(key, ..)| key.key().name() == name)
/// #         .map(|(key, _, _, value)| {
/// #             let labels = key.key().labels().map(|l| format!("{}={}", l.key(), l.value()));
/// #             (labels.collect(), value)
/// #         })
/// #         .collect()
/// # }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::fallback::StaleCache;
/// use palisade::observe::{metrics::FALLBACK_STALE_AGE_SECONDS, MetricsListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let recorder = DebuggingRecorder::new();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let cache = StaleCache::builder(|id: &u32| Some(*id)).build().unwrap();
/// let policy = Policy::builder()
///     .fallback(cache)
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
/// let flag = up.clone();
/// let svc = policy.layer(service_fn(move |id: u32| {
///     let up = flag.load(std::sync::atomic::Ordering::SeqCst);
///     async move {
///         match up {
///             true => Ok(format!("item {id}")),
///             false => Err(std::io::Error::other("down")),
///         }
///     }
/// }));
/// svc.clone().oneshot(7).await.unwrap();
/// up.store(false, std::sync::atomic::Ordering::SeqCst);
/// tokio::time::advance(Duration::from_secs(30)).await;
/// assert_eq!(svc.oneshot(7).await.unwrap(), "item 7"); // served stale, 30 s old
/// let ages = series(&recorder.snapshotter(), FALLBACK_STALE_AGE_SECONDS);
/// let [(_, DebugValue::Histogram(samples))] = &ages[..] else { panic!("{ages:?}") };
/// assert_eq!(samples.iter().map(|s| s.into_inner()).collect::<Vec<_>>(), [30.0]);
/// # }
/// ```
pub const FALLBACK_STALE_AGE_SECONDS: &str = "palisade_fallback_stale_age_seconds";
/// `palisade_stale_cache_entries`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
/// use palisade::fallback::StaleCache;
/// use palisade::observe::{metrics::STALE_CACHE_ENTRIES, MetricsListener};
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// let cache = StaleCache::builder(|id: &u32| Some(*id)).build().unwrap();
/// let policy = Policy::builder()
///     .fallback(cache)
///     .listener(MetricsListener::new())
///     .build()
///     .unwrap();
/// let svc = policy.layer(service_fn(|id: u32| async move {
///     Ok::<_, std::io::Error>(format!("item {id}"))
/// }));
/// for id in [1, 2, 2] {
///     svc.clone().oneshot(id).await.unwrap();
/// }
/// let entries = snapshotter
///     .snapshot()
///     .into_vec()
///     .into_iter()
///     .find(|(key, ..)| key.key().name() == STALE_CACHE_ENTRIES)
///     .map(|(.., value)| value);
/// assert_eq!(entries, Some(DebugValue::Gauge(2.0.into())));
/// # }
/// ```
pub const STALE_CACHE_ENTRIES: &str = "palisade_stale_cache_entries";

/// Turns events into `metrics` series. Give it to a [`Policy`](crate::policy::Policy) with
/// `.listener(MetricsListener::new())`, or to a layer's `Listeners`.
///
/// When it is added under a name (see [`Listener::bind`]) it makes a listener for that name,
/// which registers each series' handle the first time the series moves and keeps it: per call
/// the cost is the handles' own (an atomic add for a counter, a sample for a histogram), never
/// a registration. Used directly through [`on_event`](Listener::on_event), unbound, it
/// registers on every event and keeps nothing between events: the state gauge moves only at
/// transitions (not at a breaker's first call), in the order they are told rather than the
/// order they happened. Always let [`Listeners`](crate::events::Listeners) bind it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use metrics_util::debugging::DebuggingRecorder;
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use palisade::events::Listeners;
/// use palisade::observe::MetricsListener;
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let _recorder = metrics::set_default_local_recorder(&recorder);
/// // On a layer built on its own: the series carry the listeners' name.
/// let breaker = CircuitBreakerLayer::builder()
///     .name("payments")
///     .listeners(Listeners::new("payments").with(MetricsListener::new()))
///     .build()
///     .unwrap()
///     .handle();
/// breaker.force_open();
/// let names: Vec<String> = snapshotter
///     .snapshot()
///     .into_vec()
///     .into_iter()
///     .flat_map(|(key, ..)| {
///         key.key()
///             .labels()
///             .map(|l| format!("{}={}", l.key(), l.value()))
///             .collect::<Vec<_>>()
///     })
///     .collect();
/// assert!(
///     names.iter().all(|label| label != "name=default")
///         && names.contains(&"name=payments".to_owned())
/// );
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsListener {
    _private: (),
}

impl MetricsListener {
    /// A listener that reports to the `metrics` recorder in force.
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::observe::MetricsListener;
    /// use palisade::policy::Policy;
    ///
    /// const LISTENER: MetricsListener = MetricsListener::new(); // a const: usable in statics
    /// let policy = Policy::builder()
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .listener(LISTENER)
    ///     .build()
    ///     .unwrap();
    /// # let _ = policy;
    /// ```
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl Listener for MetricsListener {
    fn on_event(&self, event: &Event<'_>) {
        Series::new(event.name(), false).on_event(event);
    }

    fn bind(&self, name: &str) -> Option<Arc<dyn Listener>> {
        Some(Arc::new(Series::new(name, true)))
    }
}

/// The series of one name, registered as they first move.
struct Series {
    name: String,
    /// Whether this series hears every event of its name (bound), rather than one event only.
    bound: bool,
    described: OnceLock<()>,
    calls: [OnceLock<Counter>; 3],
    durations: [OnceLock<Histogram>; 3],
    rejections: [OnceLock<Counter>; 4],
    state: OnceLock<Gauge>,
    /// The generation of the transition `state` shows, once it shows one, and when. A breaker
    /// tells its transitions after releasing its lock, so one can arrive after a later one: the
    /// gauge keeps the later.
    shown: Mutex<Option<(u32, Instant)>>,
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
    fn new(name: &str, bound: bool) -> Self {
        Self {
            name: name.to_owned(),
            bound,
            described: OnceLock::new(),
            calls: Default::default(),
            durations: Default::default(),
            rejections: Default::default(),
            state: OnceLock::new(),
            shown: Mutex::new(None),
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

    fn state_gauge(&self) -> &Gauge {
        self.state.get_or_init(|| {
            self.described();
            metrics::gauge!(CIRCUIT_STATE, "name" => self.name.clone())
        })
    }

    fn shown(&self) -> std::sync::MutexGuard<'_, Option<(u32, Instant)>> {
        // Nothing under this lock is left half-updated by a panic.
        self.shown.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A breaker that has not changed state yet is closed: shows it from its first call.
    #[cold]
    fn show_closed(&self) {
        let shown = self.shown();
        if shown.is_none() {
            self.state_gauge().set(state_value(State::Closed));
        }
    }

    /// Shows the state `transition` entered, unless the gauge shows a later one.
    fn show(&self, transition: &Transition) {
        let mut shown = self.shown();
        let now = Instant::now();
        // An older generation told soon after a newer one is a late delivery; one told later
        // is another breaker of the same name (generations are counted per breaker), or a
        // breaker rebuilt: shown, so that a shared name cannot freeze the gauge.
        let show = shown.is_none_or(|(generation, at)| {
            generation_after(transition.generation, generation)
                || now.saturating_duration_since(at) >= LATE_DELIVERY
        });
        if show {
            *shown = Some((transition.generation, now));
            self.state_gauge().set(state_value(transition.to));
        }
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

    fn in_flight(&self) -> &Gauge {
        self.in_flight.get_or_init(|| {
            self.described();
            metrics::gauge!(BULKHEAD_IN_FLIGHT, "name" => self.name.clone())
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
                // Only a bound series knows that no transition came before this call (unbound,
                // the breaker may be disabled, metrics-only or half-open).
                if self.bound && self.state.get().is_none() {
                    self.show_closed();
                }
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
                self.show(transition);
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
            // Each permit's acquire and release are told once each; the events' counts are
            // read as the permit moves, so two told at once can carry each other's: count the
            // moves, not the counts.
            Event::BulkheadAcquired { .. } => self.in_flight().increment(1.0),
            Event::BulkheadReleased { .. } => self.in_flight().decrement(1.0),
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
