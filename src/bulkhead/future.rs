use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{BoxError, Service};

use crate::classify::Hooks;
use crate::error::{BulkheadFull, catch_callback};

use super::handle::Shared;
use super::semaphore::Ticket;
use crate::sync::StripeRef;

/// When a call's permit comes back: with the response (the default, [`UntilResponse`]), or, for
/// a response whose body streams, when the body ends (`palisade::http::UntilBodyEnd`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::bulkhead::{BulkheadLayer, Hold};
/// use palisade::classify::Hooks;
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// /// A response that keeps its call's permit for as long as it lives (a lease on a scarce
/// /// resource of the dependency, say).
/// struct Lease {
///     id: u32,
///     hooks: Hooks,
/// }
///
/// #[derive(Clone)]
/// struct WhileLeased;
///
/// impl Hold<Lease> for WhileLeased {
///     fn hooks<'a>(&self, lease: &'a mut Lease) -> Option<&'a mut Hooks> {
///         Some(&mut lease.hooks)
///     }
/// }
///
/// let layer = BulkheadLayer::builder()
///     .max_concurrent(2)
///     .build()
///     .unwrap()
///     .hold(WhileLeased);
/// let bulkhead = layer.handle();
/// let mut svc =
///     ServiceBuilder::new()
///         .layer(layer)
///         .service(service_fn(|id: u32| async move {
///             Ok::<_, std::io::Error>(Lease {
///                 id,
///                 hooks: Hooks::default(),
///             })
///         }));
///
/// let lease = svc.ready().await.unwrap().call(7).await.unwrap();
/// assert_eq!((lease.id, bulkhead.in_flight()), (7, 1)); // the call is over, the permit held
/// drop(lease);
/// assert_eq!(bulkhead.in_flight(), 0);
/// # }
/// ```
pub trait Hold<Res> {
    /// The hooks of `response`'s body, to hold the permit until the body ends; `None` gives it
    /// back now.
    ///
    /// ```
    /// use palisade::bulkhead::{Hold, UntilResponse};
    ///
    /// // The default gives the permit back with the response: it hands no hooks.
    /// let mut response = "catalog";
    /// assert!(UntilResponse.hooks(&mut response).is_none());
    /// ```
    fn hooks<'a>(&self, response: &'a mut Res) -> Option<&'a mut Hooks>;
}

/// The permit comes back as soon as the response (or error) does.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::bulkhead::BulkheadLayer;
/// use tower::{service_fn, ServiceExt, Layer};
///
/// let layer = BulkheadLayer::builder().max_concurrent(1).build().unwrap(); // UntilResponse
/// let bulkhead = layer.handle();
/// let svc = layer.layer(service_fn(|_: ()| async {
///     Ok::<_, std::io::Error>(vec![0u8; 1024])
/// }));
/// let response = svc.oneshot(()).await.unwrap();
/// assert_eq!(bulkhead.in_flight(), 0); // the permit came back with the response
///     
/// # drop(response);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct UntilResponse;

impl<Res> Hold<Res> for UntilResponse {
    #[inline]
    fn hooks<'a>(&self, _: &'a mut Res) -> Option<&'a mut Hooks> {
        None
    }
}

/// A permit taken. Dropping it gives it back (to the first waiter, if any).
pub(crate) struct Permit {
    shared: Arc<StripeRef<Shared>>,
}

impl Permit {
    /// Wraps a permit the caller has just taken from `shared`'s semaphore.
    #[inline]
    pub(crate) fn taken(shared: Arc<StripeRef<Shared>>) -> Self {
        shared.acquired();
        Self { shared }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let shared: &Shared = &self.shared;
        shared.sem.release();
        shared.released();
    }
}

/// A place in the queue. Dropping it leaves the queue, giving back a permit handed to it
/// meanwhile.
pub(crate) struct Queued {
    shared: Arc<StripeRef<Shared>>,
    ticket: Option<Ticket>,
}

impl Queued {
    pub(crate) fn new(shared: Arc<StripeRef<Shared>>, ticket: Ticket) -> Self {
        Self {
            shared,
            ticket: Some(ticket),
        }
    }

    /// `Ready(Some(permit))` once a permit has been handed over (`Ready(None)` if this place
    /// was already given up).
    fn poll(&mut self, waker: &Waker) -> Poll<Option<Permit>> {
        let Some(ticket) = self.ticket else {
            return Poll::Ready(None);
        };
        std::task::ready!(self.shared.sem.poll_ticket(ticket, waker));
        self.ticket = None;
        Poll::Ready(Some(Permit::taken(self.shared.clone())))
    }

    /// Gives up this place; a permit handed over just before is returned rather than lost.
    fn cancel(&mut self) -> Option<Permit> {
        let ticket = self.ticket.take()?;
        self.shared
            .sem
            .cancel(ticket)
            .then(|| Permit::taken(self.shared.clone()))
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        // The permit, if one was handed over, is released as it drops.
        drop(self.cancel());
    }
}

pin_project! {
    /// A call waiting for a permit: the instance of the inner service that was made ready, the
    /// request, and the end of its wait.
    pub(crate) struct Waiting<S, Req> {
        #[pin]
        sleep: Sleep,
        queued: Queued,
        svc: Option<S>,
        req: Option<Req>,
    }
}

impl<S, Req> Waiting<S, Req> {
    pub(crate) fn new(sleep: Sleep, queued: Queued, svc: S, req: Req) -> Self {
        Self {
            sleep,
            queued,
            svc: Some(svc),
            req: Some(req),
        }
    }

    /// Tells the listeners that this call's wait ran out.
    fn rejected(&self) {
        self.queued.shared.rejected();
    }

    /// `Ready(Some(..))` with a permit, the service and the request once the call may go;
    /// `Ready(None)` when the wait ran out.
    fn poll_permit(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<(Permit, S, Req)>> {
        let this = self.project();
        let permit = if this.sleep.poll(cx).is_ready() {
            // The wait is over, unless a permit was handed over at the same instant: then the
            // call goes ahead with it.
            this.queued.cancel()
        } else {
            std::task::ready!(this.queued.poll(cx.waker()))
        };
        Poll::Ready(match (permit, this.svc.take(), this.req.take()) {
            (Some(permit), Some(svc), Some(req)) => Some((permit, svc, req)),
            _ => None,
        })
    }
}

pin_project! {
    /// Response future of [`Bulkhead`](super::Bulkhead).
    ///
    /// Holds the call's permit (or its place in the queue) and gives it back when the call
    /// completes or the future is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::bulkhead::BulkheadLayer;
    /// use tower::{service_fn, Service, ServiceExt, Layer};
    ///
    /// let layer = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    /// let bulkhead = layer.handle();
    /// let hangs = service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>());
    /// let mut svc = layer.layer(hangs);
    ///
    /// let future = svc.ready().await.unwrap().call(()); // a ResponseFuture holding the permit
    /// assert_eq!(bulkhead.in_flight(), 1);
    /// drop(future); // cancelled: the permit comes back
    /// assert_eq!(bulkhead.in_flight(), 0);
    /// # }
    /// ```
    pub struct ResponseFuture<F, S, Req, H = UntilResponse> {
        #[pin]
        kind: Kind<F, S, Req>,
        max_concurrent: usize,
        hold: H,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, S, Req> {
        Called { #[pin] fut: F, permit: Option<Permit> },
        Waiting { waiting: Pin<Box<Waiting<S, Req>>> },
        Rejected,
        // A `policy::Optional` bulkhead left out: the inner future, passed through.
        Bypassed { #[pin] fut: F },
    }
}

impl<F, S, Req, H> ResponseFuture<F, S, Req, H> {
    pub(crate) fn called(fut: F, permit: Permit, max_concurrent: usize, hold: H) -> Self {
        Self {
            kind: Kind::Called {
                fut,
                permit: Some(permit),
            },
            max_concurrent,
            hold,
        }
    }

    pub(crate) fn waiting(waiting: Waiting<S, Req>, max_concurrent: usize, hold: H) -> Self {
        Self {
            kind: Kind::Waiting {
                waiting: Box::pin(waiting),
            },
            max_concurrent,
            hold,
        }
    }

    pub(crate) fn rejected(max_concurrent: usize, hold: H) -> Self {
        Self {
            kind: Kind::Rejected,
            max_concurrent,
            hold,
        }
    }
}

impl<F, S, Req, H: Default> crate::policy::sealed::Bypass<F> for ResponseFuture<F, S, Req, H> {
    #[inline]
    fn bypass(fut: F) -> Self {
        Self {
            kind: Kind::Bypassed { fut },
            max_concurrent: 0,
            hold: H::default(),
        }
    }
}

impl<F, S, Req, H> fmt::Debug for ResponseFuture<F, S, Req, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Called { .. } => "called",
            Kind::Waiting { .. } => "waiting",
            Kind::Rejected => "rejected",
            Kind::Bypassed { .. } => "bypassed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, S, Req, H, T, E> Future for ResponseFuture<F, S, Req, H>
where
    F: Future<Output = Result<T, E>>,
    S: Service<Req, Response = T, Error = E, Future = F>,
    E: Into<BoxError>,
    H: Hold<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                KindProj::Called { fut, permit } => {
                    let (polled, queued_below) = crate::sync::queued::watch(|| fut.poll(cx));
                    let Poll::Ready(mut result) = polled else {
                        // In flight: a breaker outside times it (see `sync::queued`); unless a
                        // bulkhead below (a shared one, stacked under this) still queues it.
                        if !queued_below {
                            crate::sync::queued::mark(crate::sync::queued::SENT);
                        }
                        return Poll::Pending;
                    };
                    if let Some(permit) = permit.take() {
                        // Back now (not when the future is dropped), or when the body ends.
                        if let Ok(r) = result.as_mut() {
                            match catch_callback("Hold::hooks", || this.hold.hooks(r)) {
                                Ok(Some(hooks)) => hooks.hold(permit),
                                Ok(None) => {}
                                // A custom `Hold` panicked: the permit is back as `permit`
                                // drops, and the call fails with the panic.
                                Err(panicked) => return Poll::Ready(Err(panicked.into())),
                            }
                        }
                    }
                    return Poll::Ready(result.map_err(Into::into));
                }
                KindProj::Waiting { waiting } => match waiting.as_mut().poll_permit(cx) {
                    Poll::Pending => {
                        // A breaker outside does not time the wait as the dependency's.
                        crate::sync::queued::mark(crate::sync::queued::QUEUED);
                        return Poll::Pending;
                    }
                    Poll::Ready(Some((permit, mut svc, req))) => {
                        // The permit is held (and released by unwinding) before the inner
                        // service runs any code.
                        let fut = svc.call(req);
                        this.kind.set(Kind::Called {
                            fut,
                            permit: Some(permit),
                        });
                    }
                    Poll::Ready(None) => {
                        waiting.rejected();
                        this.kind.set(Kind::Rejected);
                    }
                },
                KindProj::Rejected => {
                    return Poll::Ready(Err(Box::new(BulkheadFull::new(*this.max_concurrent))));
                }
                KindProj::Bypassed { fut } => return fut.poll(cx).map_err(Into::into),
            }
        }
    }
}
