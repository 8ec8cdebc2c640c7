use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::BoxError;

use crate::classify::{Classify, Outcome};
use crate::error::{
    BoxedErrors, BreakerErrors, CallbackPanicked, CircuitOpen, catch_callback, error_kind,
};

use super::handle::Breaker;
use super::handle::{give_back, record};
use super::state::Permit;
use crate::sync::StripeRef;

/// How a call is timed for the slow-call rule.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timing {
    /// No slow-call rule: never read the clock for it.
    Off,
    /// Not suspended yet. A call that completes on its first poll waited on nothing: it is
    /// timed as zero, without reading the clock.
    Unsuspended,
    /// Suspended at this instant (its first `Pending`): the call is timed from here.
    Since(Instant),
}

/// An admitted call's permit. Dropping it unrecorded (cancellation, a panicking classifier)
/// gives the permit back as ignored.
#[derive(Debug)]
pub(crate) struct Guard {
    breaker: Arc<StripeRef<Breaker>>,
    permit: Option<Permit>,
    timing: Timing,
}

impl Guard {
    pub(crate) fn new(breaker: Arc<StripeRef<Breaker>>, permit: Permit) -> Self {
        let timing = if breaker.times_calls() {
            Timing::Unsuspended
        } else {
            Timing::Off
        };
        Self {
            breaker,
            permit: Some(permit),
            timing,
        }
    }

    /// Whether the call needs timing and is not timed yet.
    #[inline]
    pub(crate) fn untimed(&self) -> bool {
        matches!(self.timing, Timing::Unsuspended)
    }

    /// The call is suspended: start timing it if it needs timing.
    pub(crate) fn suspended(&mut self) {
        if let Timing::Unsuspended = self.timing {
            self.timing = Timing::Since(Instant::now());
        }
    }

    #[inline]
    pub(crate) fn finish(mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            let start = match self.timing {
                Timing::Since(at) => Some(at),
                Timing::Off | Timing::Unsuspended => None,
            };
            record(&self.breaker, permit, outcome, start);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            give_back(&self.breaker, permit);
        }
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](super::CircuitBreaker).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// let layer = CircuitBreakerLayer::builder().build().unwrap();
    /// let breaker = layer.handle();
    /// let mut svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
    /// let future = svc.ready().await.unwrap().call(1); // admitted; nothing recorded yet
    /// assert_eq!(breaker.snapshot().calls, 0);
    /// assert_eq!(future.await.unwrap(), 1); // the outcome is recorded as the future completes
    /// assert_eq!(breaker.snapshot().calls, 1);
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct ResponseFuture<F, C, M = BoxedErrors> {
        #[pin]
        kind: Kind<F, C>,
        errors: PhantomData<fn() -> M>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, C> {
        Called { #[pin] fut: F, guard: Option<Guard>, classifier: C },
        Rejected { error: CircuitOpen },
        // A `policy::Optional` breaker left out: the inner future, passed through.
        Bypassed { #[pin] fut: F },
    }
}

impl<F, C, M> ResponseFuture<F, C, M> {
    pub(crate) fn called(fut: F, guard: Guard, classifier: C) -> Self {
        Self {
            kind: Kind::Called {
                fut,
                guard: Some(guard),
                classifier,
            },
            errors: PhantomData,
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Rejected { error },
            errors: PhantomData,
        }
    }
}

impl<F, C> crate::policy::sealed::Bypass<F> for ResponseFuture<F, C, BoxedErrors> {
    #[inline]
    fn bypass(fut: F) -> Self {
        Self {
            kind: Kind::Bypassed { fut },
            errors: PhantomData,
        }
    }
}

impl<F, C, T, E, M> Future for ResponseFuture<F, C, M>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
    M: BreakerErrors,
{
    type Output = Result<T, M::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                fut,
                guard,
                classifier,
            } => {
                let polled = match guard.as_ref() {
                    // Not timed yet: a call waiting in a bulkhead's queue below is not timed
                    // until it is sent.
                    Some(guard) if guard.untimed() => {
                        let (polled, queued) = crate::sync::queued::watch(|| fut.poll(cx));
                        if polled.is_pending() && queued {
                            return Poll::Pending;
                        }
                        polled
                    }
                    _ => fut.poll(cx),
                };
                let result = match polled {
                    Poll::Ready(result) => result.map_err(Into::into),
                    Poll::Pending => {
                        if let Some(guard) = guard.as_mut() {
                            guard.suspended();
                        }
                        return Poll::Pending;
                    }
                };
                let mut result = result;
                if let Some(guard) = guard.take() {
                    // A rejection by a palisade layer inside (a full bulkhead, another
                    // breaker) is local, not the dependency's doing: ignored, whatever the
                    // classifier would say.
                    let outcome = if result.as_ref().is_err_and(is_rejection) {
                        Outcome::ignored()
                    } else {
                        // The classifier is user code: a panic in it is the call's typed
                        // error, and the call is recorded as ignored.
                        match catch_callback("classifier", || classifier.classify(result.as_ref()))
                        {
                            Ok(outcome) => outcome,
                            Err(panicked) => {
                                return Poll::Ready(Err(M::inner(callback_panicked(
                                    guard, panicked,
                                ))));
                            }
                        }
                    };
                    // A response whose body decides the outcome takes the guard along.
                    let hooks = match result.as_mut() {
                        Ok(res) => match catch_callback("Classify::end_of_body", || {
                            classifier.end_of_body(res, &outcome)
                        }) {
                            Ok(hooks) => hooks,
                            Err(panicked) => {
                                return Poll::Ready(Err(M::inner(callback_panicked(
                                    guard, panicked,
                                ))));
                            }
                        },
                        Err(_) => None,
                    };
                    match hooks {
                        Some(hooks) => hooks.defer(guard, outcome),
                        None => guard.finish(outcome),
                    }
                }
                Poll::Ready(result.map_err(M::inner))
            }
            KindProj::Rejected { error } => Poll::Ready(Err(M::open(*error))),
            KindProj::Bypassed { fut } => fut.poll(cx).map_err(|e| M::inner(e.into())),
        }
    }
}

#[cold]
fn is_rejection(err: &BoxError) -> bool {
    error_kind(err.as_ref()).is_rejection()
}

/// Settles the admission of a call whose classifier panicked (as ignored: the call's outcome
/// is unknown) and fails the call with the panic.
#[cold]
#[inline(never)]
fn callback_panicked(guard: Guard, panicked: CallbackPanicked) -> BoxError {
    guard.finish(Outcome::ignored());
    Box::new(panicked)
}
