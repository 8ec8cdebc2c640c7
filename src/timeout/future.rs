use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower::BoxError;

use crate::error::{CallbackPanicked, Elapsed};
use crate::events::{Event, Listeners};

pin_project! {
    /// Response future of [`Timeout`](super::Timeout).
    ///
    /// Fails with [`Elapsed`] (boxed) once the deadline passes, after dropping the inner
    /// future.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use palisade::error::Elapsed;
    /// use palisade::timeout::TimeoutLayer;
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// // The inner future holds a resource; the timeout drops it the moment the deadline passes.
    /// let resource = Arc::new(());
    /// let held = resource.clone();
    /// let layer = TimeoutLayer::builder().timeout(Duration::from_millis(100)).build().unwrap();
    /// let mut svc = layer.layer(service_fn(move |_: ()| {
    ///     let held = held.clone();
    ///     async move {
    ///         tokio::time::sleep(Duration::from_secs(60)).await;
    ///         drop(held);
    ///         Ok::<_, std::io::Error>(())
    ///     }
    /// }));
    /// let future = svc.ready().await.unwrap().call(());
    /// assert_eq!(Arc::strong_count(&resource), 3); // the service's copy and the future's
    /// let err = future.await.unwrap_err();
    /// assert!(err.is::<Elapsed>());
    /// assert_eq!(Arc::strong_count(&resource), 2); // the future's copy is gone
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Inner<F>,
        #[pin]
        timer: Timer,
        after: Duration,
        listeners: Listeners,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<F> {
        Running { #[pin] fut: F },
        // The deadline passed; the inner future has been dropped (or never made, when the
        // timer is `Panicked`).
        Expired,
    }
}

pin_project! {
    #[project = TimerProj]
    #[derive(Debug)]
    enum Timer {
        // No timeout: never fires.
        Off,
        // Timed from `start`, with no timer made yet: the inner future has not been pending.
        // The deadline (`start + after`) is worked out only then, or on the error path: a
        // call answered at its first poll pays for the clock read alone.
        Armed { start: Instant },
        // Boxed: a `Sleep` is over 100 bytes, and every layer outside moves this future by
        // value; only calls still pending after their first poll pay for the box.
        Sleeping { sleep: Pin<Box<Sleep>> },
        // The per-request timeout function panicked: the call was never made. Kept here, as a
        // box beside the one above, so that this rare case makes no future larger.
        Panicked { panicked: Box<CallbackPanicked> },
    }
}

impl<F> ResponseFuture<F> {
    /// A call made at `start` that runs for `after` (`None`: forever; so does a deadline too
    /// far to represent); `after` is also the timeout reported.
    pub(crate) fn new(
        fut: F,
        start: Option<Instant>,
        after: Duration,
        listeners: Listeners,
    ) -> Self {
        Self {
            inner: Inner::Running { fut },
            timer: match start {
                Some(start) => Timer::Armed { start },
                None => Timer::Off,
            },
            after,
            listeners,
        }
    }

    /// A call never made because the per-request timeout function panicked.
    pub(crate) fn panicked(panicked: CallbackPanicked, listeners: Listeners) -> Self {
        Self {
            inner: Inner::Expired,
            timer: Timer::Panicked {
                panicked: Box::new(panicked),
            },
            after: Duration::ZERO,
            listeners,
        }
    }

    /// A call whose deadline passed before it was made.
    pub(crate) fn elapsed(after: Duration, listeners: Listeners) -> Self {
        Self {
            inner: Inner::Expired,
            timer: Timer::Off,
            after,
            listeners,
        }
    }
}

impl<F> crate::policy::sealed::Bypass<F> for ResponseFuture<F> {
    /// No deadline (as with no timeout at all) and nobody to tell.
    #[inline]
    fn bypass(fut: F) -> Self {
        Self::new(fut, None, Duration::MAX, Listeners::none())
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.inner.as_mut().project() {
            InnerProj::Running { fut } => {
                if let Poll::Ready(result) = fut.poll(cx) {
                    let result = result.map_err(Into::into);
                    // An error at or after the deadline is this timeout's doing, even when a
                    // timer below fired first (tonic's, enforcing the `grpc-timeout` sent);
                    // unless it is palisade's own: an `Elapsed` from a deadline below (a
                    // whole-response deadline, which has told the listeners already), a
                    // rejection (a full bulkhead whose wait ran out on the same tick) or a
                    // caught panic, each of which says more than a timeout would.
                    if let Err(e) = &result
                        && this.timer.is_past(*this.after)
                        && !crate::error::palisades_own(e)
                    {
                        this.inner.set(Inner::Expired);
                        return Poll::Ready(Err(timed_out(*this.after, this.listeners)));
                    }
                    return Poll::Ready(result);
                }
            }
            InnerProj::Expired => {
                if let TimerProj::Panicked { panicked } = this.timer.as_mut().project() {
                    return Poll::Ready(Err(panicked.clone()));
                }
                return Poll::Ready(Err(timed_out(*this.after, this.listeners)));
            }
        }
        loop {
            match this.timer.as_mut().project() {
                // (`Panicked` comes with `Inner::Expired`, handled above.)
                TimerProj::Off | TimerProj::Panicked { .. } => return Poll::Pending,
                TimerProj::Armed { start } => {
                    // First time pending: only now register a timer. Too far to represent is
                    // no deadline.
                    match crate::sync::timer_deadline(*start, *this.after) {
                        Some(deadline) => {
                            let sleep = Box::pin(sleep_until(deadline));
                            this.timer.set(Timer::Sleeping { sleep });
                        }
                        None => this.timer.set(Timer::Off),
                    }
                }
                TimerProj::Sleeping { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    // Drop the inner future now, not when the caller drops this one.
                    this.inner.set(Inner::Expired);
                    return Poll::Ready(Err(timed_out(*this.after, this.listeners)));
                }
            }
        }
    }
}

impl Timer {
    /// Whether the deadline, `after` from the start, has passed (reads the clock; for the
    /// error path only).
    fn is_past(&self, after: Duration) -> bool {
        match self {
            Timer::Off | Timer::Panicked { .. } => false,
            Timer::Armed { start } => crate::sync::timer_deadline(*start, after)
                .is_some_and(|deadline| deadline <= Instant::now()),
            Timer::Sleeping { sleep } => sleep.deadline() <= Instant::now(),
        }
    }
}

/// The error for a call that ran out of time, told to the listeners.
fn timed_out(after: Duration, listeners: &Listeners) -> BoxError {
    listeners.emit(|name| Event::TimedOut { name, after });
    Box::new(Elapsed::new(after))
}
