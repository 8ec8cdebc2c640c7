use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tower::BoxError;

use super::cache::Stale;

use crate::error::{ErrorKind, error_kind};

/// The ways a call can fail, as the fallback tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum FailureKind {
    /// Rejected by an open circuit breaker.
    CircuitOpen,
    /// Rejected by a full bulkhead.
    BulkheadFull,
    /// Timed out.
    TimedOut,
    /// The inner service failed with an error.
    InnerError,
    /// The inner service answered, but the classifier calls the response a failure.
    FailureResponse,
}

impl FailureKind {
    const fn bit(self) -> u8 {
        1 << self as u8
    }

    /// A short name for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::CircuitOpen => "circuit_open",
            FailureKind::BulkheadFull => "bulkhead_full",
            FailureKind::TimedOut => "timed_out",
            FailureKind::InnerError => "inner_error",
            FailureKind::FailureResponse => "failure_response",
        }
    }
}

/// How a fallback response was made, as [`Event::FallbackServed`](crate::events::Event)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Served {
    /// Made for this failure: a fixed value, or a function's answer.
    Fresh,
    /// A response stored earlier, served stale: this old.
    Stale(Stale),
}

impl Served {
    /// `"fresh"` or `"stale"`, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Served::Fresh => "fresh",
            Served::Stale(_) => "stale",
        }
    }

    /// The age of a stale response; `None` for a fresh one.
    pub const fn age(self) -> Option<Duration> {
        match self {
            Served::Fresh => None,
            Served::Stale(stale) => Some(stale.age),
        }
    }
}

/// A set of [`FailureKind`]s: which failures the fallback handles.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kinds(u8);

impl Kinds {
    /// Every kind (the default).
    pub const ALL: Kinds = Kinds(0b1_1111);
    /// No kind.
    pub const NONE: Kinds = Kinds(0);

    /// Just this kind.
    pub const fn only(kind: FailureKind) -> Self {
        Kinds(kind.bit())
    }

    /// This set and `kind`.
    #[must_use]
    pub const fn with(self, kind: FailureKind) -> Self {
        Kinds(self.0 | kind.bit())
    }

    /// This set without `kind`.
    #[must_use]
    pub const fn without(self, kind: FailureKind) -> Self {
        Kinds(self.0 & !kind.bit())
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: FailureKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

impl Default for Kinds {
    fn default() -> Self {
        Kinds::ALL
    }
}

impl fmt::Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FailureKind::*;
        f.debug_set()
            .entries(
                [
                    CircuitOpen,
                    BulkheadFull,
                    TimedOut,
                    InnerError,
                    FailureResponse,
                ]
                .into_iter()
                .filter(|k| self.contains(*k)),
            )
            .finish()
    }
}

/// A failed call: the error, or the response the classifier called a failure.
#[derive(Debug)]
pub enum Failure<Res> {
    /// The call failed with this error (palisade's own rejections included).
    Error(BoxError),
    /// The call answered with a failure response.
    Response(Res),
}

impl<Res> Failure<Res> {
    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        match self {
            Failure::Response(_) => FailureKind::FailureResponse,
            Failure::Error(e) => match error_kind(e.as_ref()) {
                ErrorKind::CircuitOpen(_) => FailureKind::CircuitOpen,
                ErrorKind::BulkheadFull(_) => FailureKind::BulkheadFull,
                ErrorKind::TimedOut(_) => FailureKind::TimedOut,
                _ => FailureKind::InnerError,
            },
        }
    }

    /// The failure as the call's result, unrecovered.
    pub fn into_result(self) -> Result<Res, BoxError> {
        match self {
            Failure::Error(e) => Err(e),
            Failure::Response(r) => Ok(r),
        }
    }
}

/// Decides how to recover from a failed call.
///
/// `keep` runs before the call, on the request (which the inner service then consumes), and may
/// keep what recovery will need: a cache key, an id. `recover` runs on a selected failure; it
/// returns the response to give the caller, or the failure back to let it through.
/// `succeeded` sees every response that was not a failure (a cache stores it there).
pub trait Recover<Req, Res> {
    /// What is kept of the request.
    type Kept;

    /// Keeps what recovery needs from the request.
    fn keep(&self, req: &Req) -> Self::Kept;

    /// Makes a response for a failed call, or gives the failure back.
    fn recover(&self, kept: Self::Kept, failure: Failure<Res>) -> Result<Res, Failure<Res>>;

    /// Sees a successful response, and may adjust it (the HTTP stale cache copies the body as
    /// it streams by). Does nothing by default.
    fn succeeded(&self, kept: Self::Kept, response: &mut Res) {
        let _ = (kept, response);
    }

    /// Like [`recover`](Self::recover), and also says how the response was made, for events
    /// and metrics. The fallback layer calls this one. The default calls `recover` and reports
    /// [`Served::Fresh`]; a recovery that serves stored responses overrides it.
    fn recover_served(
        &self,
        kept: Self::Kept,
        failure: Failure<Res>,
    ) -> Result<(Res, Served), Failure<Res>> {
        self.recover(kept, failure).map(|r| (r, Served::Fresh))
    }

    /// How many responses this recovery keeps, for the stale-cache gauge; `None` (the default)
    /// for a recovery that keeps none. Asked after [`succeeded`](Self::succeeded), and only
    /// while someone listens: keep it cheap.
    fn cached_entries(&self) -> Option<usize> {
        None
    }
}

/// Recovers with a clone of a fixed response. See [`value`].
#[derive(Debug)]
pub struct Value<Res>(Arc<Res>);

impl<Res> Clone for Value<Res> {
    fn clone(&self) -> Self {
        Value(Arc::clone(&self.0))
    }
}

/// Recovers with a clone of `response`, made only when a call is recovered.
pub fn value<Res: Clone>(response: Res) -> Value<Res> {
    Value(Arc::new(response))
}

impl<Req, Res: Clone> Recover<Req, Res> for Value<Res> {
    type Kept = ();

    fn keep(&self, _: &Req) {}

    fn recover(&self, _: (), _: Failure<Res>) -> Result<Res, Failure<Res>> {
        Ok(Res::clone(&self.0))
    }
}

/// Recovers with a function of the failure. See [`from_fn`].
#[derive(Debug, Clone)]
pub struct FromFn<F>(F);

/// Recovers with `f(failure)`; `f` returns the failure back (`Err`) to let it through.
pub fn from_fn<F>(f: F) -> FromFn<F> {
    FromFn(f)
}

impl<Req, Res, F> Recover<Req, Res> for FromFn<F>
where
    F: Fn(Failure<Res>) -> Result<Res, Failure<Res>>,
{
    type Kept = ();

    fn keep(&self, _: &Req) {}

    fn recover(&self, _: (), failure: Failure<Res>) -> Result<Res, Failure<Res>> {
        (self.0)(failure)
    }
}

/// Recovers with a function of what was kept of the request and the failure. See
/// [`with_request`].
pub struct WithRequest<K, F, T> {
    keep: K,
    recover: F,
    _kept: PhantomData<fn() -> T>,
}

impl<K: Clone, F: Clone, T> Clone for WithRequest<K, F, T> {
    fn clone(&self) -> Self {
        Self {
            keep: self.keep.clone(),
            recover: self.recover.clone(),
            _kept: PhantomData,
        }
    }
}

impl<K, F, T> fmt::Debug for WithRequest<K, F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithRequest").finish_non_exhaustive()
    }
}

/// Keeps `keep(&request)` before the call and recovers with `recover(kept, failure)`.
///
/// ```
/// use palisade::fallback::{with_request, Failure};
///
/// // Answer "no stock" for the product that was asked about.
/// let recover = with_request::<_, _, u32>(
///     |product: &u32| *product,
///     |product: u32, _failure: Failure<String>| -> Result<String, Failure<String>> {
///         Ok(format!("product {product}: unknown stock"))
///     },
/// );
/// # let _ = recover;
/// ```
pub fn with_request<K, F, T>(keep: K, recover: F) -> WithRequest<K, F, T> {
    WithRequest {
        keep,
        recover,
        _kept: PhantomData,
    }
}

impl<Req, Res, K, F, T> Recover<Req, Res> for WithRequest<K, F, T>
where
    K: Fn(&Req) -> T,
    F: Fn(T, Failure<Res>) -> Result<Res, Failure<Res>>,
{
    type Kept = T;

    fn keep(&self, req: &Req) -> T {
        (self.keep)(req)
    }

    fn recover(&self, kept: T, failure: Failure<Res>) -> Result<Res, Failure<Res>> {
        (self.recover)(kept, failure)
    }
}
