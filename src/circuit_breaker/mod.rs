//! Circuit breaker: stop calling a dependency that is failing, probe it, resume when it heals.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, State};
//! use palisade::error::{error_kind, ErrorKind};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! let layer = CircuitBreakerLayer::builder()
//!     .window(SlidingWindow::Count(10))
//!     .minimum_calls(4)
//!     .failure_rate(0.5)
//!     .open_duration(Duration::from_secs(30))
//!     .build()
//!     .expect("valid configuration");
//! let breaker = layer.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("down")) }));
//!
//! for _ in 0..4 {
//!     let _ = svc.ready().await.unwrap().call(()).await;
//! }
//! assert_eq!(breaker.state(), State::Open);
//! let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//! assert!(matches!(error_kind(err.as_ref()), ErrorKind::CircuitOpen(_)));
//! # }
//! ```
//!
//! # How it counts
//!
//! * **Closed**: every call is admitted. Each completed call is classified (see
//!   [`crate::classify`]) and its outcome goes into a sliding window, the last N calls or the
//!   last N seconds. When a failure or a slow call is recorded and the window holds at least
//!   `minimum_calls` outcomes, the breaker opens if the failure rate reaches `failure_rate` or
//!   the slow-call rate reaches `slow_call_rate` (both are checked, whichever kind of outcome
//!   was recorded). A success is checked only when it can complete a trip: while the window
//!   holds failures or slow calls short of `minimum_calls` (three failures then a success, at
//!   `minimum_calls` 4 and `failure_rate` 0.5, open it), and with a time window's first record
//!   of each new bucket (older outcomes may have expired). With `consecutive_failures` set, that many
//!   failures in a row also open it. Ignored outcomes (cancelled calls, palisade's own
//!   rejections) are not counted.
//! * **Open**: calls fail at once with [`CircuitOpen`](crate::error::CircuitOpen), carrying the
//!   time until the next probe, without touching the inner service (boxed in a
//!   [`tower::BoxError`]; a layer's [`typed_errors`](CircuitBreakerLayer::typed_errors) makes it
//!   a [`BreakerError::Open`](crate::error::BreakerError::Open) value instead, with no
//!   allocation). The open duration is
//!   `open_duration`, grown per consecutive trip by `backoff`, and at least the pushback the
//!   dependency asked for (`Retry-After`), capped by `max_pushback`.
//! * **Half-open**: after the open duration the next caller finds the breaker half-open. At most
//!   `permitted_probes` calls are admitted as probes, reserved at admission; every other call is
//!   rejected at once. A probe that is cancelled or ignored gives its slot back (through
//!   the layer or [`Handle::call`], its time in flight still counts, as below). The breaker
//!   closes (with an empty window) once `probe_success_rate` of the probes have succeeded, and
//!   reopens as soon as that can no longer happen, or once the trial has spent
//!   `max_half_open_wait` with probes in flight (overlapping probes count once; a probe that
//!   hangs, or probes given up on one after another, use it up). Time with no probe in flight
//!   does not count: a rarely called dependency that is healthy again, whose probes answer at
//!   once, still closes the breaker. A slow probe counts as a failed probe.
//! * Every admitted call carries the generation of the state it was admitted in; its outcome
//!   is dropped if the breaker has changed state since.
//! * Operators can force the breaker open, disable it (admit all, still count) or put it in
//!   metrics-only mode (admit all, report would-trip transitions) through a [`Handle`].
//!
//! The decision core, [`StateMachine`], is a synchronous, lock-free state machine usable on its
//! own; [`CircuitBreaker`] is a thin tower shell over it and [`Handle::call`] guards a plain
//! future.

mod config;
mod future;
mod handle;
mod layer;
mod service;
mod state;
mod window;

#[cfg(feature = "serde")]
pub(crate) use config::CircuitBreakerFields;
pub use config::{
    Backoff, CircuitBreakerConfig, MAX_HALF_OPEN_WAIT, MAX_PROBES, MAX_WINDOW_CALLS,
    MAX_WINDOW_TIME, MIN_WINDOW_TIME, SlidingWindow,
};
pub(crate) use future::Guard;
pub use future::ResponseFuture;
pub use handle::{CallError, Handle};
pub use layer::{Builder, CircuitBreakerLayer};
pub use service::CircuitBreaker;
#[cfg_attr(not(feature = "metrics"), allow(unused_imports))]
pub(crate) use state::generation_after;
pub use state::{
    Cause, Now, Permit, RejectReason, Rejection, Snapshot, State, StateMachine, Transition,
};
pub use window::WindowCounts;
