//! Fallback: recover from a failed call with a response of your choosing.
//!
//! When a dependency is unavailable, *Microservices Patterns* lists the ways to recover: return
//! an error, a fallback value, a cached response, or a partial result. [`FallbackLayer`] turns
//! the failures you select into a response made by a [`Recover`] implementation:
//!
//! * [`value`]: a fixed response;
//! * [`from_fn`]: a function of the failure;
//! * [`with_request`]: a function of what was kept of the request and the failure;
//! * [`StaleCache`]: the last good response for the same key, if it is fresh enough
//!   (stale-if-error).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use palisade::fallback::{self, FallbackLayer};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(FallbackLayer::new(fallback::value("recommendations unavailable")))
//!     .service(service_fn(|_: ()| async { Err::<&str, _>(std::io::Error::other("down")) }));
//! let answer = svc.ready().await.unwrap().call(()).await.unwrap();
//! assert_eq!(answer, "recommendations unavailable");
//! # }
//! ```
//!
//! The fallback is the outermost layer of the recommended stack: it sees every way a call can
//! fail (inner error, failure response, timeout, full bulkhead, open breaker) and decides per
//! kind ([`Kinds`]). It never replaces a success, and it never hides a failure from the layers
//! inside it: the circuit breaker has already counted the failure when the fallback runs.
//!
//! # Partial results
//!
//! An aggregating call (an API gateway's `getOrderDetails` calling orders, kitchen and
//! delivery) protects each dependency with its own stack, runs them concurrently, and returns
//! what it could get: give each optional part a fallback of `None` (or a stale cached value)
//! and only the essential part none.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use palisade::fallback::{self, FallbackLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let orders = service_fn(|id: u32| async move { Ok::<_, std::io::Error>(Some(format!("order {id}"))) });
//! let delivery = ServiceBuilder::new()
//!     .layer(FallbackLayer::new(fallback::value(None))) // optional part: degrade to None
//!     .service(service_fn(|_: u32| async { Err::<Option<String>, _>(std::io::Error::other("down")) }));
//! let (order, delivery) = tokio::join!(orders.oneshot(7), delivery.oneshot(7));
//! assert_eq!(order.unwrap().as_deref(), Some("order 7"));
//! assert_eq!(delivery.unwrap(), None); // the order details come back without delivery info
//! # }
//! ```

mod cache;
mod layer;
mod recover;

pub use cache::{CacheStats, Stale, StaleCache, StaleCacheBuilder};
pub use layer::{Fallback, FallbackLayer, ResponseFuture};
pub use recover::{
    Failure, FailureKind, FromFn, Kinds, Recover, Served, Value, WithRequest, from_fn, value,
    with_request,
};
