use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

use super::body::{Deadline, Tracked};
use crate::error::ConfigError;
use crate::events::Listeners;

/// Wraps each response body in [`Tracked`], so that the layers above it can hold the call's
/// outcome and permit until the body ends. Put it innermost, right on the client; the
/// [`Policy`](crate::policy::Policy) does so when built with `.http()` or `.grpc()`.
///
/// Optionally:
/// * a whole-response deadline ([`deadline`](Self::deadline)), counted from `call`, covering
///   the head and the body: a body still streaming at the deadline ends with
///   [`Elapsed`](crate::error::Elapsed), never as a truncated success;
/// * `grpc-timeout` propagation ([`grpc_timeout`](Self::grpc_timeout)): the time left is sent
///   to the server (at most 8 digits, rounded up), lowering any larger value the caller set.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use palisade::http::TrackLayer;
///
/// let layer = TrackLayer::new().deadline(Duration::from_secs(5)).unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrackLayer {
    deadline: Option<Duration>,
    grpc_timeout: Option<Duration>,
    /// Set by a gRPC policy: `grpc_timeout` comes from the policy's response deadline, or else
    /// its timeout, at build time.
    from_policy_timeout: bool,
    /// Set by a policy: a deadline checked at build time.
    policy_deadline: Option<Duration>,
    /// Told when the deadline ends a call (a policy's listeners).
    listeners: Listeners,
}

impl TrackLayer {
    /// Tracks bodies; no deadline, no `grpc-timeout`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use palisade::http::{TrackLayer, Tracked};
    /// use tower::{Layer, ServiceExt};
    ///
    /// let client = TrackLayer::new().layer(tower::service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(Full::new(Bytes::from("hello"))))
    /// }));
    /// let response: http::Response<Tracked<Full<Bytes>>> =
    ///     client.oneshot(http::Request::new(())).await.unwrap();
    /// assert!(response.body().get_ref().is_some());
    /// # }
    /// ```
    pub const fn new() -> Self {
        Self {
            deadline: None,
            grpc_timeout: None,
            from_policy_timeout: false,
            policy_deadline: None,
            listeners: Listeners::none(),
        }
    }

    /// The same layer, telling `listeners` when the whole-response [`deadline`](Self::deadline)
    /// ends a call ([`Event::TimedOut`](crate::events::Event::TimedOut)), as a timeout layer
    /// tells of its own: for a stack built by hand (a `Policy` gives its listeners itself).
    /// A timeout layer outside passes the deadline's error on without telling again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use http_body_util::Empty;
    /// use palisade::events::{Event, Listeners};
    /// use palisade::http::TrackLayer;
    /// use tower::{Layer, ServiceExt};
    ///
    /// let fired = Arc::new(Mutex::new(Vec::new()));
    /// let seen = fired.clone();
    /// let listeners = Listeners::new("inventory").with(move |event: &Event<'_>| {
    ///     if let Event::TimedOut { after, .. } = event {
    ///         seen.lock().unwrap().push(*after);
    ///     }
    /// });
    /// let layer = TrackLayer::new()
    ///     .deadline(Duration::from_secs(1))
    ///     .unwrap()
    ///     .listeners(listeners);
    /// let client = layer.layer(tower::service_fn(|_: http::Request<()>| {
    ///     std::future::pending::<Result<http::Response<Empty<bytes::Bytes>>, std::io::Error>>()
    /// }));
    /// assert!(client.oneshot(http::Request::new(())).await.is_err());
    /// assert_eq!(*fired.lock().unwrap(), [Duration::from_secs(1)]);
    /// # }
    /// ```
    #[must_use]
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    #[cfg(feature = "grpc")]
    pub(crate) fn propagating_grpc_timeout(mut self) -> Self {
        self.from_policy_timeout = true;
        self
    }

    pub(crate) fn response_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.policy_deadline = deadline;
        self
    }

    /// A deadline for the whole response, head and body, counted from `call`.
    /// `Duration::MAX` means none; zero is a [`ConfigError`] on field `deadline`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use palisade::error::Elapsed;
    /// use palisade::http::TrackLayer;
    /// use tower::{Layer, ServiceExt};
    ///
    /// let slow_head = tower::service_fn(|_: http::Request<()>| async {
    ///     tokio::time::sleep(Duration::from_secs(2)).await;
    ///     Ok::<_, std::io::Error>(http::Response::new(Full::new(Bytes::from("late"))))
    /// });
    /// let client = TrackLayer::new()
    ///     .deadline(Duration::from_secs(1))
    ///     .unwrap()
    ///     .layer(slow_head);
    /// let err = client.oneshot(http::Request::new(())).await.unwrap_err();
    /// assert!(err.is::<Elapsed>());
    /// assert_eq!(
    ///     TrackLayer::new()
    ///         .deadline(Duration::ZERO)
    ///         .unwrap_err()
    ///         .field(),
    ///     "deadline"
    /// );
    /// # }
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Result<Self, ConfigError> {
        if deadline.is_zero() {
            return Err(ConfigError::new(
                "deadline",
                "must be more than zero",
                deadline,
            ));
        }
        self.deadline = (deadline != Duration::MAX).then_some(deadline);
        Ok(self)
    }

    /// Sends `grpc-timeout` with each request: `timeout` (the call's deadline), or the
    /// caller's own `grpc-timeout` when that is lower. `Duration::MAX` sends nothing; zero is a
    /// [`ConfigError`] on field `grpc_timeout`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use palisade::http::TrackLayer;
    /// use tower::{Layer, ServiceExt};
    ///
    /// // A server that answers with the grpc-timeout it was sent.
    /// let server = tower::service_fn(|req: http::Request<()>| async move {
    ///     let sent = req
    ///         .headers()
    ///         .get("grpc-timeout")
    ///         .map(|v| v.to_str().unwrap().to_owned());
    ///     Ok::<_, std::io::Error>(http::Response::new(Full::new(Bytes::from(
    ///         sent.unwrap_or_default(),
    ///     ))))
    /// });
    /// let client = TrackLayer::new()
    ///     .grpc_timeout(Duration::from_millis(250))
    ///     .unwrap()
    ///     .layer(server);
    /// let sent = |req| {
    ///     let client = client.clone();
    ///     async move {
    ///         client
    ///             .oneshot(req)
    ///             .await
    ///             .unwrap()
    ///             .into_body()
    ///             .collect()
    ///             .await
    ///             .unwrap()
    ///             .to_bytes()
    ///     }
    /// };
    /// assert_eq!(sent(http::Request::new(())).await, "250000u");
    /// // A caller asking for less keeps its own.
    /// let hurried = http::Request::builder()
    ///     .header("grpc-timeout", "100m")
    ///     .body(())
    ///     .unwrap();
    /// assert_eq!(sent(hurried).await, "100m");
    /// # }
    /// ```
    pub fn grpc_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new(
                "grpc_timeout",
                "must be more than zero",
                timeout,
            ));
        }
        self.grpc_timeout = (timeout != Duration::MAX).then_some(timeout);
        Ok(self)
    }
}

impl crate::policy::Adapter for TrackLayer {
    type Outer<S> = S;

    fn outer<S>(&self, stack: S) -> S {
        stack
    }

    fn with_listeners(&self, listeners: &Listeners) -> Self {
        Self {
            listeners: listeners.clone(),
            ..self.clone()
        }
    }

    fn finish(&self, config: &crate::policy::PolicyConfig) -> Result<Self, ConfigError> {
        let mut layer = self.clone();
        if let Some(deadline) = self.policy_deadline {
            layer = layer.deadline(deadline).map_err(|e| e.within("response"))?;
        }
        if self.from_policy_timeout {
            // The server is told how long the client waits for the whole call: the response
            // deadline when one is set (a stream's body may outlast the head's timeout, and
            // the deadline bounds the head too; `Duration::MAX` is none, and then nothing is
            // sent), else the timeout.
            let whole = if self.policy_deadline.is_some() {
                layer.deadline
            } else {
                config.timeout.as_ref().map(|t| t.timeout)
            };
            if let Some(whole) = whole {
                layer = layer.grpc_timeout(whole)?;
            }
        }
        Ok(layer)
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`TrackLayer`].
///
/// # Readiness
/// Ready when the inner service is.
///
/// # Clone
/// Clones share nothing.
///
/// # Cancellation
/// Dropping the future drops the inner future; a dropped [`Tracked`] body gives back what it
/// holds.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, StreamBody};
/// use palisade::circuit_breaker::CircuitBreakerLayer;
/// use palisade::classify::http::HttpClassifier;
/// use palisade::http::TrackLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// let layer = CircuitBreakerLayer::builder()
///     .build()
///     .unwrap()
///     .with_classifier(HttpClassifier::default());
/// let breaker = layer.handle();
/// let mut svc = ServiceBuilder::new()
///     .layer(layer)
///     .layer(TrackLayer::new()) // makes the `Track` service around the client
///     .service(tower::service_fn(|_: http::Request<()>| async {
///         // A 200 whose body breaks half-way.
///         let frames = futures::stream::iter([
///             Ok(http_body::Frame::data(Bytes::from("first half"))),
///             Err(std::io::Error::other("connection reset")),
///         ]);
///         Ok::<_, std::io::Error>(http::Response::new(StreamBody::new(frames)))
///     }));
/// let response = svc
///     .ready()
///     .await
///     .unwrap()
///     .call(http::Request::new(()))
///     .await
///     .unwrap();
/// assert_eq!(response.status(), 200);
/// assert!(response.into_body().collect().await.is_err());
/// assert_eq!(breaker.snapshot().failures, 1); // a failure, though its head said 200
///
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
    layer: TrackLayer,
}

impl<S> Track<S> {
    inner_accessors!();
}

/// The name of gRPC's timeout header.
const GRPC_TIMEOUT: &str = "grpc-timeout";

impl<S, ReqB, ResB> Service<Request<ReqB>> for Track<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<Tracked<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        if let Some(timeout) = self.layer.grpc_timeout {
            lower_grpc_timeout(req.headers_mut(), timeout);
        }
        let deadline = self
            .layer
            .deadline
            .and_then(|after| Deadline::new(Instant::now(), after, &self.layer.listeners));
        ResponseFuture {
            fut: Some(self.inner.call(req)),
            deadline,
        }
    }
}

/// Sets `grpc-timeout` to `timeout`, unless the caller asked for less.
fn lower_grpc_timeout(headers: &mut http::HeaderMap, timeout: Duration) {
    let callers = headers
        .get(GRPC_TIMEOUT)
        .and_then(|v| super::parse_grpc_timeout(v.as_bytes()));
    if callers.is_some_and(|c| c <= timeout) {
        return;
    }
    let value = super::format_grpc_timeout(timeout);
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(GRPC_TIMEOUT, value);
    }
}

pin_project! {
    /// Response future of [`Track`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, StreamBody};
    /// use palisade::http::TrackLayer;
    /// use tokio::time::Instant;
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// let mut client = TrackLayer::new().deadline(Duration::from_secs(1)).unwrap().layer(
    ///     tower::service_fn(|_: http::Request<()>| async {
    ///         tokio::time::sleep(Duration::from_millis(300)).await;
    ///         type Frames = Result<http_body::Frame<Bytes>, std::io::Error>;
    ///         let stalled = futures::stream::pending::<Frames>();
    ///         Ok::<_, std::io::Error>(http::Response::new(StreamBody::new(stalled)))
    ///     }),
    /// );
    /// let start = Instant::now();
    /// let future = client.ready().await.unwrap().call(http::Request::new(()));
    /// let response = future.await.unwrap(); // the head, 300 ms in
    /// assert_eq!(start.elapsed(), Duration::from_millis(300));
    /// // What is left of the deadline goes with the body, which fails when it has passed.
    /// assert!(response.into_body().collect().await.is_err());
    /// assert_eq!(start.elapsed(), Duration::from_secs(1));
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        // `None` once the deadline ended the call.
        #[pin]
        fut: Option<F>,
        deadline: Option<Deadline>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Tracked<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Deadline::poll_head(this.fut, this.deadline, cx)
            .map_ok(|(res, deadline)| res.map(|body| Tracked::with_deadline(body, deadline)))
    }
}
