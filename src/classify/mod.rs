//! Classification: what a completed call means to the protections.
//!
//! Every call that completes is classified as an [`Outcome`]: a success, a failure, or
//! ignored (it says nothing about the dependency's health). The circuit breaker counts
//! outcomes; the duration carried with them drives slow-call rules.
//!
//! A classifier sees `Result<&Response, &BoxError>`: it never consumes or stringifies the
//! error. Any `Fn(Result<&Res, &BoxError>) -> Outcome` is a classifier:
//!
//! ```
//! use palisade::classify::{Classify, Outcome};
//! use tower::BoxError;
//!
//! // A response of `Err(code)` with a code under 500 is the caller's fault, not the dependency's.
//! let classifier = |res: Result<&Result<u32, u16>, &BoxError>| match res {
//!     Ok(Ok(_)) => Outcome::success(),
//!     Ok(Err(code)) if *code < 500 => Outcome::ignored(),
//!     Ok(Err(_)) | Err(_) => Outcome::failure(),
//! };
//! assert!(classifier.classify(Ok(&Err(404))).is_ignored());
//! ```

use std::time::Duration;

use tower::BoxError;

use crate::error::{ErrorKind, error_kind};

mod body;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;

pub use body::Hooks;
#[cfg(feature = "http")]
pub(crate) use body::{End, EndRule};

/// What a call's result means for the dependency's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// The dependency did its job.
    Success,
    /// The dependency failed (error, failure response, timeout).
    Failure,
    /// Says nothing about the dependency: cancelled by the caller, rejected by palisade itself,
    /// or a result the classifier chose not to count. Ignored outcomes are not in the window.
    Ignored,
}

/// A classified call: its kind, how long it took, and any pushback the dependency asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    kind: OutcomeKind,
    duration: Duration,
    pushback: Option<Duration>,
}

impl Outcome {
    /// A successful call.
    pub const fn success() -> Self {
        Self::of(OutcomeKind::Success)
    }

    /// A failed call.
    pub const fn failure() -> Self {
        Self::of(OutcomeKind::Failure)
    }

    /// A call that does not count.
    pub const fn ignored() -> Self {
        Self::of(OutcomeKind::Ignored)
    }

    /// An outcome of the given kind, with zero duration and no pushback.
    pub const fn of(kind: OutcomeKind) -> Self {
        Self {
            kind,
            duration: Duration::ZERO,
            pushback: None,
        }
    }

    /// The same outcome, with the time the call took (set by the layers; a classifier need not).
    #[must_use]
    pub const fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// The same outcome, with a minimum time the dependency asked callers to stay away
    /// (`Retry-After`, `grpc-retry-pushback-ms`). The breaker keeps itself open at least this
    /// long when it opens, up to its configured cap.
    #[must_use]
    pub const fn with_pushback(mut self, pushback: Duration) -> Self {
        self.pushback = Some(pushback);
        self
    }

    /// The kind of outcome.
    pub const fn kind(&self) -> OutcomeKind {
        self.kind
    }

    /// How long the call took.
    pub const fn duration(&self) -> Duration {
        self.duration
    }

    /// The pushback the dependency asked for, if any.
    pub const fn pushback(&self) -> Option<Duration> {
        self.pushback
    }

    /// Whether this is a success.
    pub const fn is_success(&self) -> bool {
        matches!(self.kind, OutcomeKind::Success)
    }

    /// Whether this is a failure.
    pub const fn is_failure(&self) -> bool {
        matches!(self.kind, OutcomeKind::Failure)
    }

    /// Whether this outcome does not count.
    pub const fn is_ignored(&self) -> bool {
        matches!(self.kind, OutcomeKind::Ignored)
    }
}

/// Decides the [`Outcome`] of a completed call from its result.
///
/// Implemented for every `Fn(Result<&Res, &BoxError>) -> Outcome`. A classifier that panics
/// does not leak anything: the call is then recorded as ignored and the panic goes on to the
/// caller.
pub trait Classify<Res> {
    /// Classifies one result. Must not block; called once per completed call.
    fn classify(&self, result: Result<&Res, &BoxError>) -> Outcome;

    /// For a response whose outcome is only known when its body ends (a gRPC status in the
    /// trailers, an HTTP body that may break half-way): the [`Hooks`] of its body, where the
    /// circuit breaker leaves the call's pending outcome instead of recording `head` now.
    ///
    /// `None` (the default) records `head` at once. Return `None` too when the head already
    /// decides (a failure status, a trailers-only gRPC response, an empty body).
    fn end_of_body<'a>(&self, response: &'a mut Res, head: &Outcome) -> Option<&'a mut Hooks> {
        let _ = (response, head);
        None
    }
}

impl<F, Res> Classify<Res> for F
where
    F: Fn(Result<&Res, &BoxError>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &BoxError>) -> Outcome {
        self(result)
    }
}

/// The default classifier: every response is a success; every inner error (including a
/// timeout) is a failure; palisade's own rejections (circuit open, bulkhead full) are ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl<Res> Classify<Res> for DefaultClassifier {
    fn classify(&self, result: Result<&Res, &BoxError>) -> Outcome {
        match result {
            Ok(_) => Outcome::success(),
            Err(err) => classify_error(err),
        }
    }
}

/// The default rule for an error: palisade's own rejections, and a user callback's panic that
/// palisade caught ([`CallbackPanicked`](crate::error::CallbackPanicked)), are ignored;
/// anything else fails.
pub fn classify_error(err: &BoxError) -> Outcome {
    match error_kind(err.as_ref()) {
        ErrorKind::CallbackPanicked(_) => Outcome::ignored(),
        kind if kind.is_rejection() => Outcome::ignored(),
        _ => Outcome::failure(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{BulkheadFull, CallbackPanicked, CircuitOpen, Elapsed, ErrorKind};

    #[test]
    fn default_classifier_fails_inner_errors_and_timeouts_and_ignores_rejections() {
        let c = DefaultClassifier;
        assert!(Classify::<()>::classify(&c, Ok(&())).is_success());
        let inner: BoxError = "boom".into();
        assert!(Classify::<()>::classify(&c, Err(&inner)).is_failure());
        let timeout: BoxError = Box::new(Elapsed::new(Duration::from_secs(1)));
        assert!(Classify::<()>::classify(&c, Err(&timeout)).is_failure());
        let open: BoxError = Box::new(CircuitOpen::new(None));
        assert!(Classify::<()>::classify(&c, Err(&open)).is_ignored());
        let full: BoxError = Box::new(BulkheadFull::new(1));
        assert!(Classify::<()>::classify(&c, Err(&full)).is_ignored());
        // A callback's panic caught by an inner palisade layer is a bug, not the dependency's
        // failure: an outer breaker must not trip on it.
        let panicked: BoxError = Box::new(CallbackPanicked::new("classifier", "bug"));
        assert!(Classify::<()>::classify(&c, Err(&panicked)).is_ignored());
        assert!(matches!(error_kind(inner.as_ref()), ErrorKind::Inner(_)));
    }
}
