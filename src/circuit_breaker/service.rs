use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{BoxError, Service};

use crate::classify::{Classify, DefaultClassifier};
use crate::error::{BoxedErrors, BreakerErrors, CircuitOpen};

use super::future::{Guard, ResponseFuture};
use super::handle::{Breaker, Handle};
use super::state::{Permit, Refusal};
use crate::sync::{CloneRef, SharedRefs};

/// The decision taken in `poll_ready`, kept for the next `call`. Gives an unused permit back
/// when dropped.
#[derive(Debug)]
struct Slot {
    breaker: CloneRef<Breaker>,
    permit: Option<Permit>,
    rejection: Option<Refusal>,
    /// The error of the last rejection, by the rejection it was made for: an open state
    /// rejects every call alike, and working out its next probe's `Instant` again for each was
    /// a quarter of a typed rejection's time.
    told: Option<(Refusal, CircuitOpen)>,
    /// The last refusal and the state word it was made in: while the breaker stays in that
    /// state, open with its timer armed or forced open, every call is refused alike, without
    /// asking the state machine again.
    refused: Option<(u64, Refusal)>,
}

impl Slot {
    fn admit(&mut self) {
        if self.permit.is_none() && self.rejection.is_none() {
            // The closed path on its own (one load), the rest out of line, so that the
            // closed path pays for no larger frame.
            match self.breaker.machine.admit_closed() {
                Some(permit) => self.permit = Some(permit),
                None => self.admit_not_closed(),
            }
        }
    }

    #[inline(never)]
    fn admit_not_closed(&mut self) {
        let machine = &self.breaker.machine;
        if let Some((w, refusal)) = self.refused
            && machine.refuses_again(w, refusal)
        {
            self.rejection = Some(refusal);
            return;
        }
        // Read before the machine decides: if it decides in a later state, the refusal is
        // not reused (a state word comes back only when its generation wraps, and then
        // `refuses_again` still checks the refusal against the state's own).
        let w = machine.word_now();
        match machine.admit_not_closed(self.breaker.clock()) {
            Ok(permit) => self.permit = Some(permit),
            Err(refusal) => {
                self.rejection = Some(refusal);
                self.refused = Some((w, refusal));
            }
        }
    }

    /// An admission kept since an earlier `poll_ready` (the inner service was not ready then,
    /// or the made-ready service waited, such as in a bulkhead's queue outside) is asked for
    /// again if the breaker has changed state since, so that a call admitted while closed does
    /// not go ahead once the breaker is open or forced open. One load when nothing changed.
    fn admit_again(&mut self) {
        if let Some(permit) = &self.permit
            && !self.breaker.machine.holds(permit)
        {
            self.lapse();
        }
        self.admit();
    }

    /// A kept admission from a state the breaker has left is given back (out of line: rare).
    #[cold]
    #[inline(never)]
    fn lapse(&mut self) {
        self.clear();
    }

    /// Tells the listeners about `rejection`, and makes its error (out of line, so that the
    /// closed path's `call` stays small enough to inline).
    #[inline(never)]
    fn rejected(&mut self, rejection: Refusal) -> CircuitOpen {
        self.breaker.rejected(&rejection);
        match self.told {
            Some((told, error)) if told == rejection => error,
            _ => {
                let error = self.breaker.open_error(&rejection);
                self.told = Some((rejection, error));
                error
            }
        }
    }

    fn clear(&mut self) {
        self.rejection = None;
        if let Some(permit) = self.permit.take() {
            super::handle::give_back(&self.breaker, permit);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A service guarded by a circuit breaker. Made by [`CircuitBreakerLayer`].
///
/// # Errors
///
/// Fails with [`CircuitOpen`] (boxed) when the breaker rejects the call; inner errors are
/// converted into [`BoxError`] unchanged. With `M` = [`TypedErrors`] (a layer's
/// [`typed_errors`]) the error is a [`BreakerError`]: the rejection is [`BreakerError::Open`],
/// a value that costs no allocation, and inner errors are [`BreakerError::Inner`].
///
/// # Readiness
///
/// `poll_ready` asks the breaker first. If the call is rejected, it reports ready *without*
/// polling the inner service, and `call` fails at once: an open breaker never touches the
/// dependency, and tower's "an `Err` from `poll_ready` means discard this service" rule is kept.
/// If admitted, the admission (a probe slot when half-open) is held until `call`, and given
/// back if the service is dropped first. Each later `poll_ready`, and `call`, checks that the
/// breaker is still in the state that admitted the call; if it has opened (or been forced
/// open, or reset) since, the admission is given back and asked for again, so a service made
/// ready and called later (after waiting in a bulkhead's queue outside, say) is not sent
/// through an open breaker. A rejection decided by `poll_ready` stands for the `call` that
/// follows, even if the breaker has closed in between.
///
/// # Clone
///
/// Clones share the breaker, and cloning allocates nothing (a service may be cloned per
/// request); each has its own copy of the classifier (which is also cloned into every
/// response future, so keep classifiers cheap to clone). A clone does not inherit an admission
/// taken by `poll_ready` on the original; it must be made ready itself.
///
/// # Cancellation
///
/// A response future dropped before it completes counts nothing: a cancelled call is
/// ignored, and gives back its probe slot (a probe's time in flight still counts towards the
/// half-open trial's `max_half_open_wait`).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// let layer = CircuitBreakerLayer::builder()
///     .minimum_calls(5)
///     .window(palisade::circuit_breaker::SlidingWindow::Count(10))
///     .build()
///     .unwrap();
/// let breaker = layer.handle();
/// let mut svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x * 2) }));
/// assert_eq!(svc.ready().await.unwrap().call(21).await.unwrap(), 42);
/// assert_eq!(breaker.snapshot().calls, 1);
/// # }
/// ```
///
/// [`CircuitBreakerLayer`]: super::CircuitBreakerLayer
/// [`CircuitOpen`]: crate::error::CircuitOpen
/// [`BreakerError`]: crate::error::BreakerError
/// [`TypedErrors`]: crate::error::TypedErrors
/// [`BreakerError::Open`]: crate::error::BreakerError::Open
/// [`BreakerError::Inner`]: crate::error::BreakerError::Inner
/// [`typed_errors`]: super::CircuitBreakerLayer::typed_errors
#[derive(Debug)]
pub struct CircuitBreaker<S, C = DefaultClassifier, M = BoxedErrors> {
    inner: S,
    classifier: C,
    slot: Slot,
    errors: PhantomData<fn() -> M>,
}

impl<S: Clone, C: Clone, M> Clone for CircuitBreaker<S, C, M> {
    fn clone(&self) -> Self {
        Self::with(
            self.inner.clone(),
            self.slot.breaker.clone(),
            self.classifier.clone(),
        )
    }
}

impl<S, C, M> CircuitBreaker<S, C, M> {
    pub(crate) fn new(inner: S, breaker: Arc<SharedRefs<Breaker>>, classifier: C) -> Self {
        Self::with(inner, CloneRef::new(breaker), classifier)
    }

    fn with(inner: S, breaker: CloneRef<Breaker>, classifier: C) -> Self {
        Self {
            inner,
            classifier,
            slot: Slot {
                breaker,
                permit: None,
                rejection: None,
                told: None,
                refused: None,
            },
            errors: PhantomData,
        }
    }

    /// A handle on the breaker.
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    /// use tower::{service_fn, Layer};
    ///
    /// let layer = CircuitBreakerLayer::builder()
    ///     .name("inventory")
    ///     .build()
    ///     .unwrap();
    /// let svc = layer.layer(service_fn(
    ///     |x: u32| async move { Ok::<_, std::io::Error>(x) },
    /// ));
    /// assert_eq!(svc.handle().name(), "inventory"); // the same breaker as layer.handle()
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::new(Arc::clone(self.slot.breaker.shared()))
    }

    inner_accessors!();
}

impl<S, C, M, Req> Service<Req> for CircuitBreaker<S, C, M>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
    M: BreakerErrors,
{
    type Response = S::Response;
    type Error = M::Error;
    type Future = ResponseFuture<S::Future, C, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.slot.admit_again();
        if self.slot.rejection.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                self.slot.clear(); // gives the permit back
                Poll::Ready(Err(M::inner(e.into())))
            }
            other => other.map_err(|e| M::inner(e.into())),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // Without `poll_ready` first (a broken contract) the breaker still decides; an
        // admission from a state the breaker has left since does not count.
        self.slot.admit_again();
        if let Some(rejection) = self.slot.rejection.take() {
            return ResponseFuture::rejected(self.slot.rejected(rejection));
        }
        match self.slot.permit.take() {
            Some(permit) => {
                // The guard exists before the inner service runs: a panic in its `call` gives
                // the permit (a probe slot, when half-open) back as the guard unwinds.
                let guard = Guard::new(self.slot.breaker.take(), permit);
                ResponseFuture::called(self.inner.call(req), guard, self.classifier.clone())
            }
            None => ResponseFuture::rejected(CircuitOpen::new(None)),
        }
    }
}
