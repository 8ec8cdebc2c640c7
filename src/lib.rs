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
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

/// `serde::Deserialize` for a configuration that derives `serde(remote = "Self")`: deserialize the
/// fields, then run the same `validate()` as `build()`.
macro_rules! validated_deserialize {
    ($config:ty) => {
        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $config {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let config = <$config>::deserialize(d)?;
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
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// The inner service, consuming the wrapper.
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
