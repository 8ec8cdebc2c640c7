//! # palisade
//!
//! Make a synchronous remote call safe to depend on. palisade gives a client the protections
//! that Netflix described and *Microservices Patterns* (chapter 3) teaches, each as a
//! composable [`tower`] layer that wraps any `tower::Service`: a hyper client, a
//! `reqwest::Client`, a tonic `Channel`, or your own.
//!
//! * [`timeout`]: fail a call that takes too long, dropping its future so that what it holds is
//!   released.
//! * [`bulkhead`]: limit the calls outstanding to one dependency, so a slow one cannot take
//!   every connection, thread or task of the caller.
//! * [`circuit_breaker`]: stop calling a dependency that is failing, probe it, resume when it
//!   heals.
//! * [`fallback`]: recover from a failure with a value, a function of the request, or the last
//!   good response (stale-if-error).
//!
//! * `http` (features `http`, `grpc`, `reqwest`): body-aware outcomes and permits for hyper,
//!   tonic and reqwest clients, `Retry-After` and gRPC pushback, whole-response deadlines,
//!   `grpc-timeout`, and a stale-if-error cache for HTTP.
//! * `testkit` (feature `testkit`): flaky HTTP/gRPC servers, a TCP fault proxy and fault
//!   injection, for your own tests.
//!
//! * [`events`]: what they decide (transitions, rejections, timeouts, fallbacks), for listeners.
//! * [`observe`]: `tracing` and `metrics` listeners (features `tracing`, `metrics`), and a
//!   [`Registry`](observe::Registry) of breakers and bulkheads for health and admin endpoints.
//! * [`policy`]: all of them in the recommended order, from one validated configuration.
//!
//! Every layer classifies outcomes the same way ([`classify`]) and fails with small typed
//! errors that [`error::error_kind`] tells apart.
//!
//! ## Quick start
//!
//! The recommended stack around a dependency that hangs: the caller waits 250 ms, not forever,
//! and gets the fallback's answer; without a fallback, [`error_kind`] tells it why the call
//! failed.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use palisade::policy::Policy;
//! use palisade::{bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig, fallback};
//! use palisade::{error_kind, ErrorKind};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! // Any tower::Service: a hyper client, a reqwest::Client, a tonic Channel, or this one.
//! let hangs =
//!     service_fn(|_item: u32| std::future::pending::<Result<String, std::io::Error>>());
//!
//! let policy = Policy::builder()
//!     .name("inventory")
//!     .timeout(Duration::from_millis(250))
//!     .bulkhead(BulkheadConfig::default())
//!     .circuit_breaker(CircuitBreakerConfig::default());
//! let with_fallback = policy
//!     .clone()
//!     .fallback(fallback::value("stock unknown".to_owned()));
//!
//! let start = tokio::time::Instant::now();
//! let client = with_fallback.build().expect("a valid policy").layer(hangs);
//! assert_eq!(client.oneshot(7).await.unwrap(), "stock unknown");
//! assert_eq!(start.elapsed(), Duration::from_millis(250));
//!
//! let client = policy.build().expect("a valid policy").layer(hangs);
//! let err = client.oneshot(7).await.unwrap_err();
//! assert!(matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(_)));
//! # }
//! ```
//!
//! ## The demo
//!
//! `cargo run --example demo` drives a bare client and a protected one against the same
//! flaky server through five phases (healthy, failing, hanging, slow, recovering). The chart
//! of one run, the latency of both clients and their calls per second by outcome with the
//! breaker's state as bands, is `docs/demo.svg` in the repository; regenerate it with
//! `cargo run --release --example demo -- --plot docs/demo.svg`.
//!
//! ## Why each protection
//!
//! A remote call can fail in ways a local one cannot: the dependency is down, overloaded, slow,
//! or answers and then stops half-way. Without protection, the caller waits with it, and its
//! own callers wait on it: one sick service takes down the ones that call it.
//!
//! * **Timeouts** bound how long a caller waits. Without them a hanging dependency holds a
//!   connection, a task and a request's memory for as long as it likes.
//! * **A bulkhead** bounds how many calls to one dependency are outstanding, so a slow one
//!   cannot use up every connection or task; past the limit, calls fail at once (or wait a
//!   bounded time in a bounded queue).
//! * **A circuit breaker** notices that a dependency is failing (a failure rate, or slow calls,
//!   over a window of calls) and stops calling it for a while: callers fail in nanoseconds
//!   instead of waiting for a timeout, and the dependency gets room to recover. Then a few
//!   probes decide whether it has.
//! * **A fallback** turns a failure into something the caller can use: a default value, a
//!   cached response (stale-if-error), or a partial result.
//!
//! ## The recommended order, and why
//!
//! `caller -> Fallback -> CircuitBreaker -> Bulkhead -> Timeout -> client`. The timeout is
//! innermost, so a call that runs out of time is a failure the breaker counts, and its permit
//! comes back the moment it is abandoned. The bulkhead is inside the breaker, so an open
//! breaker rejects without touching a permit, and a full bulkhead (local overload, not a sick
//! dependency) is *ignored* by the breaker. The fallback is outermost, so it sees every kind of
//! failure and chooses per kind. [`policy::Policy`] builds this order from one configuration.
//!
//! ## How failures are counted
//!
//! Each completed call is a success, a failure or ignored ([`classify::Outcome`]). By default
//! any error from the client (a timeout included) is a failure and palisade's own rejections are
//! ignored; a call whose future is dropped is ignored. For HTTP, 5xx (but 501 and 505), 429 and
//! 408 are failures; for gRPC, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`,
//! `INTERNAL`, `UNKNOWN` and `DATA_LOSS`, read from the trailers when they are there. A
//! failure status is counted at the head; a streamed response whose head is a success is
//! settled when its body ends (for HTTP, at the last byte of a known length, or at the head
//! for a length of 0 that is not a gRPC reply).
//!
//! ## Wrapping hyper, reqwest and tonic
//!
//! * hyper (or any `Service<http::Request<_>, Response = http::Response<_>>`):
//!   `Policy::builder().http()...build()?.layer(client)`;
//! * `reqwest::Client`: `Policy::builder().reqwest()`, reqwest's own types in and out;
//! * a tonic `Channel`: `Policy::builder().grpc()`, then the generated client over the policy's
//!   service (`MyClient::new(policy.layer(channel))`).
//!
//! The README's tables list every setting with its default; `examples/` has one runnable
//! program per client and pattern.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

/// `serde::Deserialize` for a configuration: read its fields through `$fields`, a private mirror
/// deriving `serde(remote = "$config")`, then run the same `validate()` as `build()`.
///
/// The mirror is private so that the only public way to read a configuration validates it (a
/// `remote = "Self"` derive on the public type would give it a public, unchecked inherent
/// `deserialize`). serde's derive builds the public struct from the mirror's fields, so a
/// field added to one and not the other does not compile.
macro_rules! validated_deserialize {
    ($config:ty, $fields:ty) => {
        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $config {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let config = <$fields>::deserialize(d)?;
                config.validate().map_err(serde::de::Error::custom)?;
                Ok(config)
            }
        }
    };
}

/// `get_ref`, `get_mut` and `into_inner` for a service wrapper whose inner service is the
/// field `inner: S`.
macro_rules! inner_accessors {
    () => {
        /// The inner service.
        ///
        /// ```
        /// use std::time::Duration;
        /// use palisade::timeout::TimeoutLayer;
        /// use tower::Layer;
        ///
        /// // Shown on a `Timeout`; every palisade service wrapper has the same three accessors.
        /// let layer = TimeoutLayer::builder()
        ///     .timeout(Duration::from_secs(1))
        ///     .build()
        ///     .unwrap();
        /// let svc = layer.layer(String::from("the client"));
        /// assert_eq!(svc.get_ref(), "the client");
        /// ```
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        ///
        /// ```
        /// use std::time::Duration;
        /// use palisade::timeout::TimeoutLayer;
        /// use tower::Layer;
        ///
        /// // Shown on a `Timeout`; every palisade service wrapper has the same three accessors.
        /// let layer = TimeoutLayer::builder()
        ///     .timeout(Duration::from_secs(1))
        ///     .build()
        ///     .unwrap();
        /// let mut svc = layer.layer(vec!["first"]);
        /// svc.get_mut().push("second");
        /// assert_eq!(svc.get_ref().len(), 2);
        /// ```
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// The inner service, consuming the wrapper.
        ///
        /// ```
        /// use std::time::Duration;
        /// use palisade::timeout::TimeoutLayer;
        /// use tower::Layer;
        ///
        /// // Shown on a `Timeout`; every palisade service wrapper has the same three accessors.
        /// let layer = TimeoutLayer::builder()
        ///     .timeout(Duration::from_secs(1))
        ///     .build()
        ///     .unwrap();
        /// let svc = layer.layer(String::from("the client"));
        /// let client: String = svc.into_inner();
        /// assert_eq!(client, "the client");
        /// ```
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub mod bulkhead;
pub mod circuit_breaker;
pub mod classify;
pub mod error;
pub mod events;
pub mod fallback;
#[cfg(feature = "http")]
pub mod http;
pub mod observe;
pub mod policy;
mod sync;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod timeout;

pub use error::{ConfigError, ErrorKind, error_kind};
