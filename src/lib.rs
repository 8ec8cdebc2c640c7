//! # palisade
//!
//! Make a synchronous remote call safe to depend on. palisade gives a client the protections
//! that Netflix described and *Microservices Patterns* (chapter 3) teaches, each as a
//! composable [`tower`] layer that wraps any `tower::Service`: a hyper client, a
//! `reqwest::Client`, a tonic `Channel`, or your own.
//!
//! * [`circuit_breaker`]: stop calling a dependency that is failing, probe it, resume when it
//!   heals.
//!
//! Every layer classifies outcomes the same way ([`classify`]) and fails with small typed
//! errors that [`error::error_kind`] tells apart.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod circuit_breaker;
pub mod classify;
pub mod error;
mod sync;

pub use error::{ConfigError, ErrorKind, error_kind};
