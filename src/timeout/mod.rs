//! Timeout: fail a call that takes too long, dropping its future.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use palisade::error::{error_kind, ErrorKind};
//! use palisade::timeout::TimeoutLayer;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! let layer = TimeoutLayer::builder()
//!     .timeout(Duration::from_millis(100))
//!     .build()
//!     .expect("valid configuration");
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_: ()| async {
//!         tokio::time::sleep(Duration::from_secs(3600)).await; // a dependency that hangs
//!         Ok::<_, std::io::Error>("too late")
//!     }));
//!
//! let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//! match error_kind(err.as_ref()) {
//!     ErrorKind::TimedOut(elapsed) => assert_eq!(elapsed.after(), Duration::from_millis(100)),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # }
//! ```
//!
//! # How it times
//!
//! * The deadline counts from [`call`](tower::Service::call), not from `poll_ready`: waiting
//!   for the inner service to become ready is not timed. A bulkhead queues after `call`, so a
//!   timeout outside it counts the queue wait (and may end it first), and one inside it starts
//!   only when the permit is granted. Put the timeout innermost (inside the bulkhead and the
//!   circuit breaker), so that it times the dependency alone and a timed-out call is a failure
//!   the breaker counts.
//! * When the deadline passes, the inner future is dropped at once (not when the caller drops
//!   the response future), so whatever it holds (a connection, a permit of a layer inside this
//!   one) is released, and the call fails with [`Elapsed`](crate::error::Elapsed) (boxed), carrying the
//!   timeout that fired. Inner errors are converted into [`BoxError`](tower::BoxError)
//!   unchanged; [`error_kind`](crate::error::error_kind) tells the two apart. An inner error
//!   found at or after the deadline counts as the timeout (a client below enforcing the same
//!   deadline fails at the same instant), also one found at a first poll made late.
//! * The inner future is polled before the timer: a response that is ready when the deadline
//!   is reached is returned, not discarded.
//! * `Duration::MAX` means no timeout: no clock read, no timer. A zero timeout is a
//!   [`ConfigError`](crate::ConfigError).
//! * A per-request timeout ([`Builder::per_request`]), a function of the request such as one
//!   reading a header or an extension, overrides the default for the requests it returns
//!   `Some` for. A per-request zero fails the call at once with `Elapsed` without calling the
//!   inner service (its deadline has already passed); a per-request `Duration::MAX` means none.
//! * tokio's timer has millisecond resolution: a deadline fires at the first millisecond tick
//!   at or after it.
//! * A deadline too far away to represent is no deadline. No input makes the arithmetic panic.
//!
//! # Cost
//!
//! One clock read per call (none without a timeout). The timer is created only if the inner future is still pending
//! after its first poll, so a call that completes at once never touches the timer wheel and
//! allocates nothing; a call still pending then allocates its timer (a boxed `Sleep`), and the
//! `Elapsed` error is boxed only when a call times out.

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
#[cfg(feature = "serde")]
pub(crate) use layer::TimeoutFields;
pub use layer::{Builder, TimeoutConfig, TimeoutLayer};
pub use service::{NoPerRequest, RequestTimeout, Timeout};
