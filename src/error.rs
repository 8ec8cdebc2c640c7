//! Errors palisade makes, and one helper that tells a caller what happened.
//!
//! Every layer that fails a call on its own returns a [`tower::BoxError`] holding one of the
//! small leaf types below. Instead of a chain of `downcast_ref` calls, ask [`error_kind`]:
//!
//! ```
//! use palisade::error::{error_kind, CircuitOpen, ErrorKind};
//! use tower::BoxError;
//!
//! let err: BoxError = Box::new(CircuitOpen::new(None));
//! match error_kind(err.as_ref()) {
//!     ErrorKind::CircuitOpen(open) => assert_eq!(open.retry_after(), None),
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```
//!
//! `Display` of these errors never includes request data (URLs, headers, bodies).

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// A call was rejected because the circuit breaker is open (or half-open with every probe slot
/// taken, or forced open by an operator). The inner service was not called.
///
/// It carries the instant the next probe is due; [`retry_after`](Self::retry_after) is the
/// time left until then, measured when asked (so an open breaker rejects without reading the
/// clock).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use palisade::error::CircuitOpen;
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// let mut svc = ServiceBuilder::new()
///     .layer(
///         CircuitBreakerLayer::builder()
///             .consecutive_failures(1)
///             .open_duration(Duration::from_secs(30))
///             .build()
///             .unwrap(),
///     )
///     .service(service_fn(|_: ()| async {
///         Err::<(), _>(std::io::Error::other("down"))
///     }));
/// let _ = svc.ready().await.unwrap().call(()).await; // one failure opens this breaker
///
/// let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
/// let open = err
///     .downcast_ref::<CircuitOpen>()
///     .expect("rejected by the breaker");
/// assert_eq!(open.retry_after(), Some(Duration::from_secs(30)));
/// assert_eq!(
///     err.to_string(),
///     "circuit breaker is open; next probe in 30s"
/// );
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_at: Option<Instant>,
}

impl CircuitOpen {
    /// A rejection whose next probe is due at `retry_at` (`None`: no probe is scheduled, as when
    /// forced open).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::error::CircuitOpen;
    /// use tokio::time::Instant;
    ///
    /// let open = CircuitOpen::new(Some(Instant::now() + Duration::from_secs(5)));
    /// assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
    ///
    /// let forced = CircuitOpen::new(None);
    /// assert_eq!(forced.retry_after(), None);
    /// assert_eq!(forced.to_string(), "circuit breaker is forced open");
    /// # }
    /// ```
    pub const fn new(retry_at: Option<Instant>) -> Self {
        Self { retry_at }
    }

    /// When the breaker admits a probe again, on tokio's clock. `None` when forced open.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::error::CircuitOpen;
    /// use tokio::time::Instant;
    ///
    /// let at = Instant::now() + Duration::from_secs(5);
    /// assert_eq!(CircuitOpen::new(Some(at)).retry_at(), Some(at));
    /// assert_eq!(CircuitOpen::new(None).retry_at(), None);
    /// # }
    /// ```
    pub const fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// How long until the breaker admits a probe again (zero if that time has come).
    /// `None` when no probe is scheduled (the breaker was forced open by an operator).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::error::CircuitOpen;
    /// use tokio::time::Instant;
    ///
    /// let open = CircuitOpen::new(Some(Instant::now() + Duration::from_secs(5)));
    /// tokio::time::advance(Duration::from_secs(2)).await;
    /// assert_eq!(open.retry_after(), Some(Duration::from_secs(3))); // measured when asked
    /// tokio::time::advance(Duration::from_secs(10)).await;
    /// assert_eq!(open.retry_after(), Some(Duration::ZERO)); // the probe is due
    ///
    /// # }
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after() {
            Some(d) => write!(f, "circuit breaker is open; next probe in {d:?}"),
            None => f.write_str("circuit breaker is forced open"),
        }
    }
}

impl Error for CircuitOpen {}

/// A call ran out of time; the inner future was dropped.
///
/// ```
/// use std::time::Duration;
/// use palisade::error::{error_kind, Elapsed, ErrorKind};
/// use tower::BoxError;
///
/// let err: BoxError = Box::new(Elapsed::new(Duration::from_millis(250)));
/// assert_eq!(err.to_string(), "request timed out after 250ms");
/// let kind = error_kind(err.as_ref());
/// assert!(matches!(kind, ErrorKind::TimedOut(e) if e.after() == Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    after: Duration,
}

impl Elapsed {
    /// A timeout that fired `after` the call started.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::error::Elapsed;
    ///
    /// let elapsed = Elapsed::new(Duration::from_secs(2));
    /// assert_eq!(elapsed.after(), Duration::from_secs(2));
    /// ```
    pub const fn new(after: Duration) -> Self {
        Self { after }
    }

    /// The timeout that fired.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::error::Elapsed;
    ///
    /// assert_eq!(
    ///     Elapsed::new(Duration::from_millis(100)).after(),
    ///     Duration::from_millis(100)
    /// );
    /// ```
    pub const fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request timed out after {:?}", self.after)
    }
}

impl Error for Elapsed {}

/// A call was rejected because the bulkhead had no free permit (and, if queueing is on, the
/// queue was full or the wait ran out). The inner service was not called.
///
/// ```
/// use palisade::error::{error_kind, BulkheadFull, ErrorKind};
/// use tower::BoxError;
///
/// let err: BoxError = Box::new(BulkheadFull::new(25));
/// assert_eq!(err.to_string(), "bulkhead full (25 calls in flight)");
/// let kind = error_kind(err.as_ref());
/// assert!(matches!(kind, ErrorKind::BulkheadFull(full) if full.max_concurrent() == 25));
/// assert!(kind.is_rejection()); // the dependency never saw the call
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadFull {
    max_concurrent: usize,
}

impl BulkheadFull {
    /// A rejection by a bulkhead admitting `max_concurrent` calls.
    ///
    /// ```
    /// use palisade::error::BulkheadFull;
    ///
    /// assert_eq!(BulkheadFull::new(8).max_concurrent(), 8);
    /// ```
    pub const fn new(max_concurrent: usize) -> Self {
        Self { max_concurrent }
    }

    /// The limit that was reached.
    ///
    /// ```
    /// use palisade::error::BulkheadFull;
    ///
    /// let full = BulkheadFull::new(25);
    /// assert_eq!(full.max_concurrent(), 25);
    /// ```
    pub const fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bulkhead full ({} calls in flight)", self.max_concurrent)
    }
}

impl Error for BulkheadFull {}

/// A user callback palisade runs (a classifier, a [`Recover`](crate::fallback::Recover)
/// method such as a stale cache's key, size or mark function, a fallback function, a
/// per-request timeout function) panicked. palisade caught the panic, settled its own
/// accounting (the breaker records the call as ignored if it had not recorded it yet; permits
/// and probe slots are given back) and failed the call with this error instead of unwinding
/// through the caller.
///
/// A bug in a callback surfaces as this typed error on every call that reaches it: the
/// fallback layer lets it through unrecovered, and the default classifier ignores it, so a
/// buggy callback neither trips a breaker nor hides behind a fallback. Panics of the wrapped service itself are not caught: they are the
/// dependency's, and reach the caller as they would without palisade (nothing is leaked).
///
/// `Display` names the callback but not the panic's message (which may hold request data);
/// [`message`](Self::message) has it.
///
/// ```
/// use palisade::error::{error_kind, CallbackPanicked, ErrorKind};
/// use palisade::fallback::{self, Failure};
/// use tower::{service_fn, BoxError, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let buggy = fallback::from_fn(|_: Failure<u32>| -> Result<u32, Failure<u32>> {
///     panic!("fallback bug")
/// });
/// let svc = fallback::FallbackLayer::new(buggy)
///     .layer(service_fn(|()| async { Err::<u32, BoxError>("down".into()) }));
/// let err = svc.oneshot(()).await.unwrap_err();
/// match error_kind(err.as_ref()) {
///     ErrorKind::CallbackPanicked(p) => {
///         assert_eq!(p.callback(), "Recover::recover");
///         assert_eq!(p.message(), "fallback bug");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackPanicked {
    callback: &'static str,
    message: String,
}

impl CallbackPanicked {
    /// A panic of the callback named `callback`, with its message. palisade makes these; a
    /// layer of your own that catches a callback's panic can make one too, so that callers
    /// and [`error_kind`] tell it apart the same way.
    ///
    /// ```
    /// use palisade::error::{error_kind, CallbackPanicked, ErrorKind};
    /// use tower::BoxError;
    ///
    /// let err: BoxError = Box::new(CallbackPanicked::new("my key function", "no tenant"));
    /// assert!(matches!(error_kind(err.as_ref()), ErrorKind::CallbackPanicked(_)));
    /// // `Display` names the callback, never the message (which may hold request data).
    /// assert_eq!(err.to_string(), "a user callback panicked: my key function");
    /// ```
    pub fn new(callback: &'static str, message: impl Into<String>) -> Self {
        Self {
            callback,
            message: message.into(),
        }
    }

    /// Which callback panicked: `"classifier"`, `"Classify::end_of_body"`, `"Recover::keep"`,
    /// `"Recover::succeeded"`, `"Recover::recover"`, `"Hold::hooks"`,
    /// `"per-request timeout"`.
    ///
    /// ```
    /// use palisade::classify::Outcome;
    /// use palisade::circuit_breaker::{CallError, CircuitBreakerLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = CircuitBreakerLayer::builder().build().unwrap().handle();
    /// let buggy = |_: Result<&u32, &std::io::Error>| -> Outcome { panic!("bug") };
    /// match breaker.call_classified(async { Ok(7) }, buggy).await {
    ///     Err(CallError::CallbackPanicked(p)) => assert_eq!(p.callback(), "classifier"),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # }
    /// ```
    pub fn callback(&self) -> &'static str {
        self.callback
    }

    /// The panic's message, when it was a string (`"<non-string panic payload>"` otherwise).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::error::{error_kind, ErrorKind};
    /// use palisade::timeout::TimeoutLayer;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = TimeoutLayer::builder()
    ///     .timeout(Duration::from_secs(1))
    ///     .per_request(|tenant: &u32| -> Option<Duration> {
    ///         panic!("no deadline for tenant {tenant}")
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let svc = layer.layer(service_fn(|_: u32| async { Ok::<_, std::io::Error>(()) }));
    /// let err = svc.oneshot(7).await.unwrap_err();
    /// match error_kind(err.as_ref()) {
    ///     ErrorKind::CallbackPanicked(p) => {
    ///         assert_eq!(p.callback(), "per-request timeout");
    ///         assert_eq!(p.message(), "no deadline for tenant 7");
    ///     }
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # }
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CallbackPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a user callback panicked: {}", self.callback)
    }
}

impl Error for CallbackPanicked {}

/// Runs the user callback `f`, turning a panic into [`CallbackPanicked`]. The happy path costs
/// nothing but the call (unwinding is zero-cost until a panic).
#[inline]
pub(crate) fn catch_callback<T>(
    callback: &'static str,
    f: impl FnOnce() -> T,
) -> Result<T, CallbackPanicked> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|payload| panicked(callback, payload))
}

#[cold]
#[inline(never)]
fn panicked(callback: &'static str, payload: Box<dyn std::any::Any + Send>) -> CallbackPanicked {
    let message = match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "<non-string panic payload>".to_owned(),
        },
    };
    CallbackPanicked::new(callback, message)
}

/// The error of a circuit breaker service made by a layer with
/// [`typed_errors`](crate::circuit_breaker::CircuitBreakerLayer::typed_errors): the breaker's
/// rejection as a value, without the allocation a [`tower::BoxError`] costs.
///
/// An open breaker fails every call during an outage, so this is the error a shedding service
/// returns most often. The inner service's errors stay boxed, as the classifier sees them.
/// `Display` and `source` are the variant's own (the wrapper adds no text), and
/// [`error_kind`] looks inside, so a boxed `BreakerError` is told apart like any other error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use palisade::error::{error_kind, BreakerError, ErrorKind};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let layer = CircuitBreakerLayer::builder().build().unwrap().typed_errors();
/// let flaky = service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("refused")) });
/// let err = layer.layer(flaky).oneshot(()).await.unwrap_err();
/// assert!(matches!(&err, BreakerError::Inner(e) if e.to_string() == "refused"));
///
/// layer.handle().force_open();
/// let ok = service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) });
/// match layer.layer(ok).oneshot(()).await {
///     Err(BreakerError::Open(open)) => assert_eq!(open.retry_after(), None), // forced
///     other => panic!("unexpected {other:?}"),
/// }
///
/// // Boxed by the caller, it is still recognised.
/// let err = layer.layer(ok).oneshot(()).await.unwrap_err();
/// let boxed: tower::BoxError = Box::new(err);
/// assert!(matches!(error_kind(boxed.as_ref()), ErrorKind::CircuitOpen(_)));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum BreakerError {
    /// The breaker rejected the call; the inner service was neither polled nor called.
    Open(CircuitOpen),
    /// The inner service failed (its error, converted into a [`tower::BoxError`]), or a
    /// classifier panicked ([`CallbackPanicked`], boxed).
    Inner(tower::BoxError),
}

impl BreakerError {
    /// The error as a [`tower::BoxError`] holding the leaf itself ([`CircuitOpen`] or the inner
    /// error), as the breaker's default error type would have been.
    ///
    /// ```
    /// use palisade::error::{BreakerError, CircuitOpen};
    ///
    /// let boxed = BreakerError::Open(CircuitOpen::new(None)).into_boxed();
    /// assert!(boxed.downcast_ref::<CircuitOpen>().is_some());
    /// ```
    pub fn into_boxed(self) -> tower::BoxError {
        match self {
            BreakerError::Open(open) => Box::new(open),
            BreakerError::Inner(inner) => inner,
        }
    }
}

impl From<CircuitOpen> for BreakerError {
    fn from(open: CircuitOpen) -> Self {
        BreakerError::Open(open)
    }
}

impl fmt::Display for BreakerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerError::Open(open) => open.fmt(f),
            BreakerError::Inner(inner) => inner.fmt(f),
        }
    }
}

impl Error for BreakerError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            BreakerError::Open(open) => open.source(),
            BreakerError::Inner(inner) => inner.source(),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::BoxedErrors {}
    impl Sealed for super::TypedErrors {}
}

/// How a circuit breaker service reports errors: [`BoxedErrors`] (the default, as every
/// palisade layer) or [`TypedErrors`] (chosen with
/// [`typed_errors`](crate::circuit_breaker::CircuitBreakerLayer::typed_errors)). Sealed.
///
/// ```
/// use std::any::TypeId;
/// use palisade::error::{BoxedErrors, BreakerError, BreakerErrors, TypedErrors};
///
/// fn errors_are<M: BreakerErrors<Error: 'static>, E: 'static>() -> bool {
///     TypeId::of::<M::Error>() == TypeId::of::<E>()
/// }
/// assert!(errors_are::<BoxedErrors, tower::BoxError>());
/// assert!(errors_are::<TypedErrors, BreakerError>());
/// ```
pub trait BreakerErrors: sealed::Sealed {
    /// The service's error type.
    type Error;
    /// The error for a rejection.
    #[doc(hidden)]
    fn open(open: CircuitOpen) -> Self::Error;
    /// The error for an inner failure (or a caught callback panic).
    #[doc(hidden)]
    fn inner(inner: tower::BoxError) -> Self::Error;
}

/// A circuit breaker service's errors are [`tower::BoxError`]s: the default.
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
/// use palisade::classify::DefaultClassifier;
/// use palisade::error::BoxedErrors;
/// use tower::{service_fn, Layer, Service};
///
/// let svc = CircuitBreakerLayer::builder()
///     .build()
///     .unwrap()
///     .layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// let _: &CircuitBreaker<_, DefaultClassifier, BoxedErrors> = &svc;
/// fn boxes<S: Service<u32, Error = tower::BoxError>>(_: &S) {}
/// boxes(&svc);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BoxedErrors;

/// A circuit breaker service's errors are [`BreakerError`]s: its rejection is a value.
///
/// ```
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use palisade::error::BreakerError;
/// use tower::{service_fn, Layer, Service};
///
/// let svc = CircuitBreakerLayer::builder()
///     .build()
///     .unwrap()
///     .typed_errors()
///     .layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// fn typed<S: Service<u32, Error = BreakerError>>(_: &S) {}
/// typed(&svc);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TypedErrors;

impl BreakerErrors for BoxedErrors {
    type Error = tower::BoxError;
    #[inline]
    fn open(open: CircuitOpen) -> tower::BoxError {
        Box::new(open)
    }
    #[inline]
    fn inner(inner: tower::BoxError) -> tower::BoxError {
        inner
    }
}

impl BreakerErrors for TypedErrors {
    type Error = BreakerError;
    #[inline]
    fn open(open: CircuitOpen) -> BreakerError {
        BreakerError::Open(open)
    }
    #[inline]
    fn inner(inner: tower::BoxError) -> BreakerError {
        BreakerError::Inner(inner)
    }
}

/// What happened to a failed call, as told by [`error_kind`].
///
/// ```
/// use std::time::Duration;
/// use palisade::error::{error_kind, BulkheadFull, CircuitOpen, Elapsed, ErrorKind};
/// use tower::BoxError;
///
/// fn describe(err: BoxError) -> String {
///     match error_kind(err.as_ref()) {
///         ErrorKind::CircuitOpen(_) => "breaker open".to_owned(),
///         ErrorKind::BulkheadFull(full) => {
///             format!("over {} in flight", full.max_concurrent())
///         }
///         ErrorKind::TimedOut(elapsed) => {
///             format!("timed out after {:?}", elapsed.after())
///         }
///         ErrorKind::Inner(e) => format!("dependency failed: {e}"),
///         _ => "something else".to_owned(), // the enum is non-exhaustive
///     }
/// }
/// assert_eq!(describe(Box::new(CircuitOpen::new(None))), "breaker open");
/// assert_eq!(describe(Box::new(BulkheadFull::new(4))), "over 4 in flight");
/// assert_eq!(
///     describe(Box::new(Elapsed::new(Duration::from_secs(1)))),
///     "timed out after 1s"
/// );
/// assert_eq!(describe("refused".into()), "dependency failed: refused");
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ErrorKind<'a> {
    /// Rejected by an open circuit breaker.
    CircuitOpen(&'a CircuitOpen),
    /// Rejected by a full bulkhead.
    BulkheadFull(&'a BulkheadFull),
    /// Timed out.
    TimedOut(&'a Elapsed),
    /// A user callback panicked; palisade caught it.
    CallbackPanicked(&'a CallbackPanicked),
    /// The inner service failed; this is its error.
    Inner(&'a (dyn Error + 'static)),
}

impl ErrorKind<'_> {
    /// Whether palisade itself rejected the call without sending it (open breaker, full
    /// bulkhead, or a per-request timeout of zero: no time left at all). Such calls are safe
    /// to retry elsewhere: the dependency never saw them, and a circuit breaker ignores them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::error::{error_kind, BulkheadFull, CircuitOpen, Elapsed};
    ///
    /// assert!(error_kind(&CircuitOpen::new(None)).is_rejection());
    /// assert!(error_kind(&BulkheadFull::new(1)).is_rejection());
    /// // A timed-out call may have reached the dependency: not a rejection.
    /// assert!(!error_kind(&Elapsed::new(Duration::from_secs(1))).is_rejection());
    /// // One given no time at all was never sent.
    /// assert!(error_kind(&Elapsed::new(Duration::ZERO)).is_rejection());
    /// ```
    pub fn is_rejection(&self) -> bool {
        match self {
            ErrorKind::CircuitOpen(_) | ErrorKind::BulkheadFull(_) => true,
            ErrorKind::TimedOut(elapsed) => elapsed.after().is_zero(),
            _ => false,
        }
    }
}

/// Tells what happened to a call from its error, walking [`Error::source`] so that palisade's
/// errors are found even when another layer wrapped them (32 errors deep at most: a chain that
/// loops back on itself, a bug in some error type, ends there as the dependency's own error).
///
/// Pass `err.as_ref()` for a [`tower::BoxError`].
///
/// ```
/// use std::time::Duration;
/// use palisade::error::{error_kind, Elapsed, ErrorKind};
///
/// // Another layer wrapped palisade's error; `error_kind` finds it through `source()`.
/// #[derive(Debug)]
/// struct Wrapped(Elapsed);
/// impl std::fmt::Display for Wrapped {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("request failed")
///     }
/// }
/// impl std::error::Error for Wrapped {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let err: tower::BoxError = Box::new(Wrapped(Elapsed::new(Duration::from_millis(200))));
/// let kind = error_kind(err.as_ref());
/// assert!(matches!(kind, ErrorKind::TimedOut(e) if e.after() == Duration::from_millis(200)));
///
/// // One error shared by several callers (a `Clone` result, as `futures`' `Shared` needs).
/// let shared: std::sync::Arc<dyn std::error::Error + Send + Sync> =
///     std::sync::Arc::new(Elapsed::new(Duration::from_millis(200)));
/// let err: tower::BoxError = Box::new(shared);
/// assert!(matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(_)));
///
/// let other = std::io::Error::other("connection refused");
/// assert!(matches!(error_kind(&other), ErrorKind::Inner(_)));
/// ```
pub fn error_kind<'a>(err: &'a (dyn Error + 'static)) -> ErrorKind<'a> {
    let mut cur: Option<&(dyn Error + 'static)> = Some(err);
    // Deep enough for any real chain; and an end to one that loops back on itself (a bug in
    // some error type, which must not hang the call that classifies it).
    for _ in 0..MAX_SOURCES {
        let Some(e) = cur else { break };
        if let Some(open) = e.downcast_ref::<CircuitOpen>() {
            return ErrorKind::CircuitOpen(open);
        }
        if let Some(full) = e.downcast_ref::<BulkheadFull>() {
            return ErrorKind::BulkheadFull(full);
        }
        if let Some(elapsed) = e.downcast_ref::<Elapsed>() {
            return ErrorKind::TimedOut(elapsed);
        }
        if let Some(panicked) = e.downcast_ref::<CallbackPanicked>() {
            return ErrorKind::CallbackPanicked(panicked);
        }
        // A transparent wrapper: look at what it holds. `std::io::Error`'s `source` skips the
        // error it wraps (it gives that error's source), and so does a shared error's
        // (`Arc<dyn Error + Send + Sync>`, as one result shared by several callers carries
        // it), so look inside them too.
        cur = match e.downcast_ref::<BreakerError>() {
            Some(BreakerError::Open(open)) => return ErrorKind::CircuitOpen(open),
            Some(BreakerError::Inner(inner)) => Some(inner.as_ref()),
            None => {
                if let Some(wrapped) = e
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                {
                    Some(wrapped as &(dyn Error + 'static))
                } else if let Some(shared) = e.downcast_ref::<SharedError>() {
                    Some(&**shared as &(dyn Error + 'static))
                } else {
                    e.source()
                }
            }
        };
    }
    ErrorKind::Inner(err)
}

/// Whether `e` is an error palisade made (a rejection, a deadline's `Elapsed`, a caught
/// panic), which a deadline further out passes on as it is: each says more than a timeout
/// would, and a deadline's has told the listeners already.
#[cold]
pub(crate) fn palisades_own(e: &tower::BoxError) -> bool {
    let kind = error_kind(e.as_ref());
    kind.is_rejection()
        || matches!(
            kind,
            ErrorKind::TimedOut(_) | ErrorKind::CallbackPanicked(_)
        )
}

/// How many errors of a source chain [`error_kind`] looks at.
const MAX_SOURCES: usize = 32;

/// An error shared by several holders: its `source` is the shared error's own source.
type SharedError = std::sync::Arc<dyn Error + Send + Sync>;

/// A configuration value broke a rule. Returned by every `build()`; names the field.
///
/// ```
/// use palisade::circuit_breaker::CircuitBreakerLayer;
///
/// let err = CircuitBreakerLayer::builder()
///     .failure_rate(1.5)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "failure_rate");
/// assert_eq!(
///     err.to_string(),
///     "invalid configuration: `failure_rate` must be a fraction in (0, 1], got 1.5"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: Cow<'static, str>,
    rule: &'static str,
    value: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, rule: &'static str, value: impl fmt::Debug) -> Self {
        Self {
            field: Cow::Borrowed(field),
            rule,
            value: format!("{value:?}"),
        }
    }

    /// The same error for a field of a nested configuration: `circuit_breaker.failure_rate`.
    pub(crate) fn within(mut self, section: &str) -> Self {
        self.field = Cow::Owned(format!("{section}.{}", self.field));
        self
    }

    /// The field that was wrong, as named in the builder and in serialized configuration
    /// (dotted for nested configuration: `circuit_breaker.failure_rate`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::bulkhead::BulkheadConfig;
    /// use palisade::policy::Policy;
    ///
    /// // Nested configuration: the field is named with its section.
    /// let mut bulkhead = BulkheadConfig::default();
    /// bulkhead.max_concurrent = 0;
    /// let err = Policy::builder()
    ///     .timeout(Duration::from_secs(1))
    ///     .bulkhead(bulkhead)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "bulkhead.max_concurrent");
    /// ```
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The rule the value broke, in words.
    ///
    /// ```
    /// use palisade::timeout::TimeoutLayer;
    ///
    /// let err = TimeoutLayer::builder()
    ///     .timeout(std::time::Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "timeout");
    /// assert_eq!(err.rule(), "must be > 0 (use Duration::MAX for no timeout)");
    /// ```
    pub fn rule(&self) -> &'static str {
        self.rule
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: `{}` {}, got {}",
            self.field, self.rule, self.value
        )
    }
}

impl Error for ConfigError {}
