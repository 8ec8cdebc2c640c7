use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{BoxError, Service};

use crate::error::catch_callback;
use crate::events::Listeners;

use super::future::ResponseFuture;

/// A per-request timeout: a function of the request whose `Some(timeout)` overrides the
/// layer's default for that request (for example one read from a header or an extension).
///
/// Any `Fn(&Req) -> Option<Duration>` is one; so is a type of your own that implements this
/// trait (which can then be named, say in a struct field).
///
/// `Some(Duration::ZERO)` fails the call at once with [`Elapsed`](crate::error::Elapsed)
/// without calling the inner service; `Some(Duration::MAX)` means no timeout for that request;
/// `None` keeps the default.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::timeout::{RequestTimeout, TimeoutLayer};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// struct Query {
///     interactive: bool,
/// }
///
/// /// Interactive queries get 100 ms; batch queries the layer's default. A named type can be
/// /// kept in a struct field, where a closure's type could not be written.
/// #[derive(Clone)]
/// struct ByPriority;
///
/// impl RequestTimeout<Query> for ByPriority {
///     fn timeout(&self, query: &Query) -> Option<Duration> {
///         query.interactive.then_some(Duration::from_millis(100))
///     }
/// }
///
/// let layer = TimeoutLayer::builder()
///     .timeout(Duration::from_secs(5))
///     .per_request(ByPriority)
///     .build()
///     .unwrap();
/// let svc = layer.layer(service_fn(|_: Query| async {
///     tokio::time::sleep(Duration::from_secs(1)).await;
///     Ok::<_, std::io::Error>("rows")
/// }));
/// assert!(
///     svc.clone()
///         .oneshot(Query { interactive: true })
///         .await
///         .is_err()
/// );
/// assert_eq!(
///     svc.oneshot(Query { interactive: false }).await.unwrap(),
///     "rows"
/// );
/// # }
/// ```
pub trait RequestTimeout<Req> {
    /// The timeout for this request, or `None` for the layer's default. Called once per call,
    /// before the inner service sees the request; must not block.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::timeout::RequestTimeout;
    ///
    /// let from_request = |budget_ms: &u64| Some(Duration::from_millis(*budget_ms));
    /// assert_eq!(from_request.timeout(&250), Some(Duration::from_millis(250)));
    /// ```
    fn timeout(&self, req: &Req) -> Option<Duration>;
}

impl<F, Req> RequestTimeout<Req> for F
where
    F: Fn(&Req) -> Option<Duration>,
{
    #[inline]
    fn timeout(&self, req: &Req) -> Option<Duration> {
        self(req)
    }
}

/// No per-request timeout: every request gets the layer's default. The default for
/// [`TimeoutLayer`](super::TimeoutLayer); costs nothing.
///
/// ```
/// use std::time::Duration;
/// use palisade::timeout::{NoPerRequest, RequestTimeout};
///
/// assert_eq!(
///     RequestTimeout::<&str>::timeout(&NoPerRequest, &"any request"),
///     None
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoPerRequest;

impl<Req> RequestTimeout<Req> for NoPerRequest {
    #[inline]
    fn timeout(&self, _req: &Req) -> Option<Duration> {
        None
    }
}

/// A service whose calls fail with [`Elapsed`] when they take too long. Made by
/// [`TimeoutLayer`].
///
/// # Errors
///
/// Fails with [`Elapsed`] (boxed), carrying the timeout that fired (the per-request one if it
/// applied), once the deadline passes; inner errors are converted into [`BoxError`]
/// unchanged. Use [`error_kind`](crate::error::error_kind) to tell them apart. An inner error
/// found at or after the deadline is reported as [`Elapsed`] (a client below enforcing the
/// same deadline, tonic's with the `grpc-timeout` sent, fails at the instant this timeout
/// fires), also one found at a first poll made after the deadline: a response future held
/// unpolled past its deadline that then fails at once reports the timeout.
///
/// # Readiness
///
/// `poll_ready` forwards to the inner service, unchanged and untimed: the deadline counts from
/// `call`. Waiting for a busy dependency to become ready is bounded elsewhere (a bulkhead's own
/// `max_wait` covers queueing).
///
/// # Clone
///
/// Clones share nothing: each has a clone of the inner service, the default timeout and the
/// per-request function (which should therefore be cheap to clone).
///
/// # Cancellation
///
/// Dropping the response future drops the inner future with it. On expiry the inner future
/// is dropped at once, before the error is returned, so that whatever it holds is released
/// when the call is abandoned rather than when the caller gets round to dropping the response
/// future.
///
/// # Runtime
///
/// The timer is a [`tokio::time::Sleep`]: a call that is still pending after its first poll
/// needs a tokio runtime with time enabled, as every tokio timer does. A call that completes
/// on its first poll, or that has no timeout, makes no timer.
///
/// # Example
///
/// A per-request timeout read from the request overrides the default:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::timeout::TimeoutLayer;
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// struct Query {
///     work: Duration,
///     deadline: Option<Duration>,
/// }
///
/// let layer = TimeoutLayer::builder()
///     .timeout(Duration::from_secs(1))
///     .per_request(|q: &Query| q.deadline)
///     .build()
///     .unwrap();
/// let mut svc = layer.layer(service_fn(|q: Query| async move {
///     tokio::time::sleep(q.work).await;
///     Ok::<_, std::io::Error>("rows")
/// }));
///
/// // Two seconds of work fails under the default, succeeds with a longer per-request timeout.
/// let slow = || Query { work: Duration::from_secs(2), deadline: None };
/// assert!(svc.ready().await.unwrap().call(slow()).await.is_err());
/// let patient = Query { deadline: Some(Duration::from_secs(5)), ..slow() };
/// assert_eq!(svc.ready().await.unwrap().call(patient).await.unwrap(), "rows");
/// # }
/// ```
///
/// [`Elapsed`]: crate::error::Elapsed
/// [`TimeoutLayer`]: super::TimeoutLayer
#[derive(Clone)]
pub struct Timeout<S, F = NoPerRequest> {
    inner: S,
    timeout: Duration,
    per_request: F,
    listeners: Listeners,
}

impl<S: fmt::Debug, F> fmt::Debug for Timeout<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("per_request", &std::any::type_name::<F>())
            .finish()
    }
}

impl<S, F> Timeout<S, F> {
    pub(crate) fn new(inner: S, timeout: Duration, per_request: F, listeners: Listeners) -> Self {
        Self {
            inner,
            timeout,
            per_request,
            listeners,
        }
    }

    /// The timeout used when no per-request one applies (`Duration::MAX` means none).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::timeout::TimeoutLayer;
    /// use tower::{service_fn, Layer};
    ///
    /// let layer = TimeoutLayer::builder()
    ///     .timeout(Duration::from_secs(2))
    ///     .build()
    ///     .unwrap();
    /// let svc = layer.layer(service_fn(
    ///     |x: u32| async move { Ok::<_, std::io::Error>(x) },
    /// ));
    /// assert_eq!(svc.timeout(), Duration::from_secs(2));
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    inner_accessors!();
}

impl<S, F, Req> Service<Req> for Timeout<S, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: RequestTimeout<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The per-request function is user code: a panic in it fails the call, unsent.
        let after = match catch_callback("per-request timeout", || self.per_request.timeout(&req)) {
            Ok(after) => after.unwrap_or(self.timeout),
            Err(panicked) => return ResponseFuture::panicked(panicked, self.listeners.clone()),
        };
        if after.is_zero() {
            // Only a per-request timeout can be zero: its deadline has passed already.
            return ResponseFuture::elapsed(after, self.listeners.clone());
        }
        let start = if after == Duration::MAX {
            None
        } else {
            // Read before calling the inner service, which may work before returning its future.
            Some(Instant::now())
        };
        ResponseFuture::new(self.inner.call(req), start, after, self.listeners.clone())
    }
}
