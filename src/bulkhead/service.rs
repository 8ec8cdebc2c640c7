use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{BoxError, Service};

use super::future::{Hold, Permit, Queued, ResponseFuture, UntilResponse, Waiting};
use super::handle::{Handle, Shared};
use super::semaphore::Enqueued;
use crate::sync::{CloneRef, SharedRefs};

/// A service that lets at most `max_concurrent` calls be in flight at once. Made by
/// [`BulkheadLayer`].
///
/// # Errors
///
/// Fails with [`BulkheadFull`] (boxed) when no permit is free and the call may not wait (or
/// the queue is full, or its wait ran out); the inner service is then not called. Inner errors
/// are converted into [`BoxError`] unchanged. A custom [`Hold`](super::Hold) that panics fails
/// the call with [`CallbackPanicked`](crate::error::CallbackPanicked) (and gives the permit
/// back).
///
/// # Readiness
///
/// `poll_ready` is the inner service's: the bulkhead takes no permit there, so a service that
/// is made ready and then kept (in a ready cache, say) holds nothing that other clones need.
/// The permit is taken in `call`, before the inner service is called:
///
/// * if one is free (and nobody waits for one), the inner service is called at once;
/// * otherwise, without `max_wait`, the call fails at once;
/// * with `max_wait`, the call joins a FIFO queue (or fails at once if `max_queued` calls
///   already wait). The instance of the inner service that `poll_ready` made ready moves into
///   the response future (a clone takes its place, which is why `S: Clone`), which calls it
///   when a permit is handed over, or fails when `max_wait` runs out. A call keeps its place
///   until its task sees the wait run out: a permit handed over before then (after the timer
///   fired, but before the task ran) is used, not lost, so under load a call may go out a
///   little after `max_wait`.
///
/// While calls wait, new calls queue behind them rather than overtake them. A call that
/// waits arms a tokio timer for its `max_wait` (so, as with tower's `Timeout`, it must be made
/// inside a tokio runtime with time enabled); a call that does not wait reads no clock. Only a
/// call that finds the bulkhead full waits: with `max_wait`, a bulkhead called outside a tokio
/// runtime works until it is first full, and then panics in `call`.
///
/// # Clone
///
/// Clones share the permits and the queue, and cloning allocates nothing (a service may be
/// cloned per request); each has its own copy of the inner service.
///
/// # Cancellation
///
/// Dropping the response future gives back whatever it holds, at every point: its place in the
/// queue, a permit handed to it but not yet used, or the permit of the call in flight (the
/// inner future is dropped with it). The permit also comes back as soon as the call completes,
/// even if the future is kept, and if the inner service panics in `call`.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::bulkhead::BulkheadLayer;
/// use palisade::error::{error_kind, ErrorKind};
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// let layer = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
/// let bulkhead = layer.handle();
/// let mut svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x * 2) }));
///
/// let first = svc.ready().await.unwrap().call(21); // holds the only permit
/// assert_eq!(bulkhead.in_flight(), 1);
/// let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
/// assert!(matches!(error_kind(err.as_ref()), ErrorKind::BulkheadFull(_)));
///
/// assert_eq!(first.await.unwrap(), 42);
/// assert_eq!(bulkhead.available(), 1);
/// # }
/// ```
///
/// [`BulkheadLayer`]: super::BulkheadLayer
/// [`BulkheadFull`]: crate::error::BulkheadFull
#[derive(Debug)]
pub struct Bulkhead<S, H = UntilResponse> {
    inner: S,
    shared: CloneRef<Shared>,
    hold: H,
}

impl<S: Clone, H: Clone> Clone for Bulkhead<S, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            hold: self.hold.clone(),
        }
    }
}

impl<S, H> Bulkhead<S, H> {
    pub(crate) fn new(inner: S, shared: Arc<SharedRefs<Shared>>, hold: H) -> Self {
        Self {
            inner,
            shared: CloneRef::new(shared),
            hold,
        }
    }

    /// A handle on the bulkhead.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadLayer;
    /// use tower::{service_fn, Layer};
    ///
    /// let layer = BulkheadLayer::builder().name("inventory").build().unwrap();
    /// let svc = layer.layer(service_fn(
    ///     |x: u32| async move { Ok::<_, std::io::Error>(x) },
    /// ));
    /// assert_eq!(svc.handle().name(), "inventory"); // the same bulkhead as layer.handle()
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::new(Arc::clone(self.shared.shared()))
    }

    inner_accessors!();
}

impl<S: Clone, H: Clone> Bulkhead<S, H> {
    /// The inner service, called with a permit just taken.
    #[inline]
    fn send<Req>(&mut self, req: Req) -> ResponseFuture<S::Future, S, Req, H>
    where
        S: Service<Req>,
    {
        // The guard exists before the inner service runs: a panic in `call` releases it.
        let permit = Permit::taken(self.shared.take());
        ResponseFuture::called(
            self.inner.call(req),
            permit,
            self.shared.max_concurrent,
            self.hold.clone(),
        )
    }

    /// Every permit taken: wait for one, or fail.
    #[cold]
    fn call_full<Req>(&mut self, req: Req) -> ResponseFuture<S::Future, S, Req, H>
    where
        S: Service<Req>,
    {
        let max = self.shared.max_concurrent;
        let Some(max_wait) = self.shared.max_wait else {
            self.shared.rejected();
            return ResponseFuture::rejected(max, self.hold.clone());
        };
        match self.shared.sem.enqueue() {
            Enqueued::Acquired => self.send(req),
            Enqueued::Full => {
                self.shared.rejected();
                ResponseFuture::rejected(max, self.hold.clone())
            }
            Enqueued::Queued(ticket) => {
                let queued = Queued::new(self.shared.take(), ticket);
                // (tokio's `sleep` saturates a deadline too far to represent.)
                let sleep = tokio::time::sleep(max_wait);
                // The instance made ready goes with the request; a clone takes its place.
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                ResponseFuture::waiting(
                    Waiting::new(sleep, queued, ready, req),
                    max,
                    self.hold.clone(),
                )
            }
        }
    }
}

impl<S, H, Req> Service<Req> for Bulkhead<S, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    H: Hold<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, Req, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if self.shared.sem.try_acquire() {
            self.send(req)
        } else {
            self.call_full(req)
        }
    }
}
