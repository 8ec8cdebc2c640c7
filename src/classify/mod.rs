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
///
/// ```
/// use palisade::classify::{Outcome, OutcomeKind};
///
/// let outcome = Outcome::of(OutcomeKind::Failure);
/// assert_eq!(outcome.kind(), OutcomeKind::Failure);
/// assert!(outcome.is_failure());
/// ```
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
///
/// ```
/// use std::time::Duration;
/// use palisade::classify::{Outcome, OutcomeKind};
///
/// // A 503 that took 40 ms and asked callers to stay away for 30 s.
/// let outcome = Outcome::failure()
///     .with_duration(Duration::from_millis(40))
///     .with_pushback(Duration::from_secs(30));
/// assert_eq!(outcome.kind(), OutcomeKind::Failure);
/// assert_eq!(outcome.duration(), Duration::from_millis(40));
/// assert_eq!(outcome.pushback(), Some(Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    kind: OutcomeKind,
    duration: Duration,
    pushback: Option<Duration>,
}

impl Outcome {
    /// A successful call.
    ///
    /// ```
    /// use palisade::classify::Outcome;
    ///
    /// assert!(Outcome::success().is_success());
    /// ```
    pub const fn success() -> Self {
        Self::of(OutcomeKind::Success)
    }

    /// A failed call.
    ///
    /// ```
    /// use palisade::classify::Outcome;
    ///
    /// assert!(Outcome::failure().is_failure());
    /// ```
    pub const fn failure() -> Self {
        Self::of(OutcomeKind::Failure)
    }

    /// A call that does not count.
    ///
    /// ```
    /// use palisade::classify::Outcome;
    ///
    /// let outcome = Outcome::ignored();
    /// assert!(outcome.is_ignored() && !outcome.is_success() && !outcome.is_failure());
    /// ```
    pub const fn ignored() -> Self {
        Self::of(OutcomeKind::Ignored)
    }

    /// An outcome of the given kind, with zero duration and no pushback.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::classify::{Outcome, OutcomeKind};
    ///
    /// let outcome = Outcome::of(OutcomeKind::Success);
    /// assert_eq!(outcome, Outcome::success());
    /// assert_eq!(
    ///     (outcome.duration(), outcome.pushback()),
    ///     (Duration::ZERO, None)
    /// );
    /// ```
    pub const fn of(kind: OutcomeKind) -> Self {
        Self {
            kind,
            duration: Duration::ZERO,
            pushback: None,
        }
    }

    /// The same outcome, with the time the call took (set by the layers; a classifier need not).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::classify::Outcome;
    ///
    /// let outcome = Outcome::success().with_duration(Duration::from_millis(12));
    /// assert_eq!(outcome.duration(), Duration::from_millis(12));
    /// ```
    #[must_use]
    pub const fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// The same outcome, with a minimum time the dependency asked callers to stay away
    /// (`Retry-After`, `grpc-retry-pushback-ms`). The breaker keeps itself open at least this
    /// long when it opens, up to its configured cap.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::classify::Outcome;
    /// use tower::BoxError;
    ///
    /// // A classifier that reads a pushback from its own response type.
    /// struct Reply {
    ///     overloaded: bool,
    ///     retry_after_secs: u64,
    /// }
    /// let classify = |res: Result<&Reply, &BoxError>| match res {
    ///     Ok(r) if r.overloaded => {
    ///         Outcome::failure().with_pushback(Duration::from_secs(r.retry_after_secs))
    ///     }
    ///     Ok(_) => Outcome::success(),
    ///     Err(_) => Outcome::failure(),
    /// };
    /// let outcome = classify(Ok(&Reply {
    ///     overloaded: true,
    ///     retry_after_secs: 30,
    /// }));
    /// assert_eq!(outcome.pushback(), Some(Duration::from_secs(30)));
    /// ```
    #[must_use]
    pub const fn with_pushback(mut self, pushback: Duration) -> Self {
        self.pushback = Some(pushback);
        self
    }

    /// The kind of outcome.
    ///
    /// ```
    /// use palisade::classify::{Outcome, OutcomeKind};
    ///
    /// assert_eq!(Outcome::ignored().kind(), OutcomeKind::Ignored);
    /// ```
    pub const fn kind(&self) -> OutcomeKind {
        self.kind
    }

    /// How long the call took.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::classify::Outcome;
    ///
    /// assert_eq!(Outcome::failure().duration(), Duration::ZERO);
    /// assert_eq!(
    ///     Outcome::failure()
    ///         .with_duration(Duration::from_secs(2))
    ///         .duration(),
    ///     Duration::from_secs(2)
    /// );
    /// ```
    pub const fn duration(&self) -> Duration {
        self.duration
    }

    /// The pushback the dependency asked for, if any.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::classify::Outcome;
    ///
    /// assert_eq!(Outcome::failure().pushback(), None);
    /// assert_eq!(
    ///     Outcome::failure()
    ///         .with_pushback(Duration::from_secs(5))
    ///         .pushback(),
    ///     Some(Duration::from_secs(5))
    /// );
    /// ```
    pub const fn pushback(&self) -> Option<Duration> {
        self.pushback
    }

    /// Whether this is a success.
    ///
    /// ```
    /// use palisade::classify::Outcome;
    ///
    /// assert!(Outcome::success().is_success());
    /// assert!(!Outcome::ignored().is_success());
    /// ```
    pub const fn is_success(&self) -> bool {
        matches!(self.kind, OutcomeKind::Success)
    }

    /// Whether this is a failure.
    ///
    /// ```
    /// use palisade::classify::Outcome;
    ///
    /// assert!(Outcome::failure().is_failure());
    /// assert!(!Outcome::success().is_failure());
    /// ```
    pub const fn is_failure(&self) -> bool {
        matches!(self.kind, OutcomeKind::Failure)
    }

    /// Whether this outcome does not count.
    ///
    /// ```
    /// use palisade::classify::Outcome;
    ///
    /// assert!(Outcome::ignored().is_ignored());
    /// assert!(!Outcome::failure().is_ignored());
    /// ```
    pub const fn is_ignored(&self) -> bool {
        matches!(self.kind, OutcomeKind::Ignored)
    }
}

/// Decides the [`Outcome`] of a completed call from its result.
///
/// Implemented for every `Fn(Result<&Res, &BoxError>) -> Outcome`. A classifier that panics
/// does not leak anything: the call is then recorded as ignored (its probe slot and permits
/// come back), and fails with the panic as its typed error,
/// [`CallbackPanicked`](crate::error::CallbackPanicked).
///
/// The circuit breaker does not ask its classifier about a rejection by a palisade layer inside
/// it ([`BulkheadFull`](crate::error::BulkheadFull), or [`CircuitOpen`](crate::error::CircuitOpen)
/// from another breaker): that is local, never the dependency's failure, and always ignored.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, State};
/// use palisade::classify::{classify_error, Classify, Outcome};
/// use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
///
/// /// A response is `(status, body)`; a status of 500 or more counts against the dependency.
/// #[derive(Clone)]
/// struct ByStatus;
///
/// impl Classify<(u16, String)> for ByStatus {
///     fn classify(&self, result: Result<&(u16, String), &BoxError>) -> Outcome {
///         match result {
///             Ok((status, _)) if *status >= 500 => Outcome::failure(),
///             Ok(_) => Outcome::success(),
///             Err(err) => classify_error(err), // palisade's own rejections are ignored
///         }
///     }
/// }
///
/// let layer = CircuitBreakerLayer::builder()
///     .window(SlidingWindow::Count(4))
///     .minimum_calls(2)
///     .build()
///     .unwrap()
///     .with_classifier(ByStatus);
/// let breaker = layer.handle();
/// let mut svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|_: ()| async {
///         Ok::<_, BoxError>((503, "busy".to_owned()))
///     }));
/// for _ in 0..2 {
///     // The calls succeed (the service answered), but the breaker counts failures.
///     assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap().0, 503);
/// }
/// assert_eq!(breaker.state(), State::Open);
/// # }
/// ```
pub trait Classify<Res> {
    /// Classifies one result. Must not block; called once per completed call.
    ///
    /// ```
    /// use palisade::classify::{Classify, DefaultClassifier};
    /// use tower::BoxError;
    ///
    /// let err: BoxError = "connection reset".into();
    /// assert!(Classify::<()>::classify(&DefaultClassifier, Ok(&())).is_success());
    /// assert!(Classify::<()>::classify(&DefaultClassifier, Err(&err)).is_failure());
    /// ```
    fn classify(&self, result: Result<&Res, &BoxError>) -> Outcome;

    /// For a response whose outcome is only known when its body ends (a gRPC status in the
    /// trailers, an HTTP body that may break half-way): the [`Hooks`] of its body, where the
    /// circuit breaker leaves the call's pending outcome instead of recording `head` now.
    ///
    /// `None` (the default) records `head` at once. Return `None` too when the head already
    /// decides (a failure status, a trailers-only gRPC response, an empty body).
    ///
    /// Only palisade's `http::Tracked` body settles its hooks when it ends:
    /// return the hooks of a `Tracked` body (feature `http`), never hooks kept elsewhere, or
    /// the outcome is never recorded (dropped unsettled, the call counts as ignored).
    ///
    /// ```
    /// # #[cfg(feature = "http")] {
    /// use bytes::Bytes;
    /// use http_body_util::{Empty, Full};
    /// use palisade::classify::{http::HttpClassifier, Classify};
    /// use palisade::http::Tracked;
    ///
    /// let classifier = HttpClassifier::default();
    /// // A 200 whose body is still to come: its outcome waits for the body's end.
    /// let mut streaming =
    ///     http::Response::new(Tracked::new(Full::new(Bytes::from("catalog"))));
    /// let head = classifier.classify(Ok(&streaming));
    /// assert!(classifier.end_of_body(&mut streaming, &head).is_some());
    /// // A 200 with nothing to read: the head decides at once.
    /// let mut empty = http::Response::new(Tracked::new(Empty::<Bytes>::new()));
    /// let head = classifier.classify(Ok(&empty));
    /// assert!(classifier.end_of_body(&mut empty, &head).is_none());
    /// # }
    /// ```
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
///
/// ```
/// use palisade::classify::{Classify, DefaultClassifier};
/// use palisade::error::{BulkheadFull, CircuitOpen};
/// use tower::BoxError;
///
/// let classify = |result: Result<&&str, &BoxError>| DefaultClassifier.classify(result);
/// assert!(classify(Ok(&"any response")).is_success());
/// assert!(classify(Err(&"connection refused".into())).is_failure());
/// // palisade's own rejections say nothing about the dependency.
/// assert!(classify(Err(&(Box::new(BulkheadFull::new(4)) as BoxError))).is_ignored());
/// assert!(classify(Err(&(Box::new(CircuitOpen::new(None)) as BoxError))).is_ignored());
/// ```
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
///
/// ```
/// use std::time::Duration;
/// use palisade::classify::classify_error;
/// use palisade::error::{CircuitOpen, Elapsed};
/// use tower::BoxError;
///
/// let timeout: BoxError = Box::new(Elapsed::new(Duration::from_secs(1)));
/// assert!(classify_error(&timeout).is_failure());
/// let open: BoxError = Box::new(CircuitOpen::new(None));
/// assert!(classify_error(&open).is_ignored());
/// ```
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
