//! `reqwest::Client` behind palisade (feature `reqwest`).
//!
//! `reqwest::Client` is a `Service<reqwest::Request>`. A policy built with
//! [`PolicyBuilder::reqwest`](crate::policy::PolicyBuilder::reqwest) converts each response to
//! `http::Response<Tracked<reqwest::Body>>` right on the client (so the body is tracked like
//! any other HTTP body), and back to a `reqwest::Response`, URL included, around the whole
//! stack: the caller sends and receives reqwest's own types.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! use palisade::{policy::Policy, bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig};
//! use tower::{Layer, Service, ServiceExt};
//! # let server = palisade::testkit::FlakyServer::start().await?;
//! # let inventory = server.url(); // a loopback stand-in for "http://inventory.internal"
//!
//! let policy = Policy::builder()
//!     .name("inventory")
//!     .reqwest()                                   // reqwest types in and out, bodies tracked
//!     .timeout(std::time::Duration::from_millis(500))
//!     .bulkhead(BulkheadConfig::default())         // 25 in flight, then rejected at once
//!     .circuit_breaker(CircuitBreakerConfig::default())
//!     .build()?;                                   // a ConfigError names any wrong field
//! let mut client = policy.layer(reqwest::Client::builder().no_proxy().build()?);
//! let req = reqwest::Request::new(reqwest::Method::GET, format!("{inventory}/items/7").parse()?);
//! let res: reqwest::Response = client.ready().await?.call(req).await?;
//! assert_eq!(res.url().path(), "/items/7");
//! assert_eq!(res.text().await?, "/items/7"); // the body is tracked inside
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

use super::body::{Deadline, Tracked};
use crate::error::ConfigError;
use crate::events::Listeners;
use crate::policy::{Adapter, PolicyConfig};

impl<B> From<Tracked<B>> for reqwest::Body
where
    B: http_body::Body + Send + Sync + 'static,
    B::Data: From<bytes::Bytes> + Into<bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    fn from(body: Tracked<B>) -> Self {
        reqwest::Body::wrap(body)
    }
}

/// The reqwest adapter of a policy: [`ReqwestTrack`] on the client, [`IntoReqwest`] around the
/// stack. Made by [`PolicyBuilder::reqwest`](crate::policy::PolicyBuilder::reqwest).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// use palisade::http::reqwest::ReqwestAdapter;
/// use palisade::policy::{Adapter, PolicyConfig};
/// use palisade::testkit::FlakyServer;
/// use tower::{Layer, Service, ServiceExt};
///
/// // By hand, what `Policy::builder().reqwest()` does around its stack.
/// let server = FlakyServer::start().await?;
/// let adapter = ReqwestAdapter::default().finish(&PolicyConfig::default())?;
/// let mut client = adapter.outer(adapter.layer(reqwest::Client::builder().no_proxy().build()?));
/// let req = reqwest::Request::new(
///     reqwest::Method::GET,
///     format!("{}/ping", server.url()).parse()?,
/// );
/// let res: reqwest::Response = client.ready().await?.call(req).await?;
/// assert_eq!(res.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ReqwestAdapter {
    deadline: Option<Duration>,
    /// Told when the deadline ends a call (a policy's listeners).
    listeners: Listeners,
}

impl ReqwestAdapter {
    pub(crate) fn response_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }
}

impl Adapter for ReqwestAdapter {
    type Outer<S> = IntoReqwest<S>;

    fn finish(&self, _: &PolicyConfig) -> Result<Self, ConfigError> {
        if let Some(deadline) = self.deadline
            && deadline.is_zero()
        {
            return Err(
                ConfigError::new("deadline", "must be more than zero", deadline).within("response"),
            );
        }
        Ok(self.clone())
    }

    fn outer<S>(&self, stack: S) -> IntoReqwest<S> {
        IntoReqwest { inner: stack }
    }

    fn with_listeners(&self, listeners: &Listeners) -> Self {
        Self {
            listeners: listeners.clone(),
            ..self.clone()
        }
    }
}

impl<S> Layer<S> for ReqwestAdapter {
    type Service = ReqwestTrack<S>;

    fn layer(&self, inner: S) -> ReqwestTrack<S> {
        ReqwestTrack {
            inner,
            deadline: self.deadline.filter(|d| *d != Duration::MAX),
            listeners: self.listeners.clone(),
        }
    }
}

/// Converts a `reqwest::Client`'s responses to `http::Response<Tracked<reqwest::Body>>`, with
/// an optional whole-response deadline (see [`TrackLayer`](super::TrackLayer)).
///
/// # Readiness
/// Ready when the client is.
///
/// # Clone
/// Clones share nothing but the client.
///
/// # Cancellation
/// Dropping the future drops the client's.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// use palisade::http::reqwest::ReqwestAdapter;
/// use palisade::http::Tracked;
/// use palisade::testkit::FlakyServer;
/// use tower::{Layer, ServiceExt};
///
/// let server = FlakyServer::start().await?;
/// let track = ReqwestAdapter::default().layer(reqwest::Client::builder().no_proxy().build()?); // a ReqwestTrack
/// let req = reqwest::Request::new(
///     reqwest::Method::GET,
///     format!("{}/items", server.url()).parse()?,
/// );
/// let res: http::Response<Tracked<reqwest::Body>> = track.oneshot(req).await?;
/// assert_eq!(res.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ReqwestTrack<S> {
    inner: S,
    deadline: Option<Duration>,
    listeners: Listeners,
}

impl<S> ReqwestTrack<S> {
    inner_accessors!();
}

impl<S> Service<reqwest::Request> for ReqwestTrack<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response>,
    S::Error: Into<BoxError>,
{
    type Response = Response<Tracked<reqwest::Body>>;
    type Error = BoxError;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: reqwest::Request) -> Self::Future {
        let deadline = self
            .deadline
            .and_then(|d| Deadline::new(Instant::now(), d, &self.listeners));
        TrackFuture {
            fut: Some(self.inner.call(req)),
            deadline,
        }
    }
}

pin_project! {
    /// Response future of [`ReqwestTrack`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// use std::time::Duration;
    /// use palisade::http::reqwest::ReqwestAdapter;
    /// use palisade::testkit::{Fault, FlakyServer};
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// let server = FlakyServer::start().await?;
    /// server.set(Fault::healthy().latency(Duration::from_millis(20)));
    /// let mut track = ReqwestAdapter::default().layer(reqwest::Client::builder().no_proxy().build()?);
    /// let url = format!("{}/slowish", server.url()).parse()?;
    /// let req = reqwest::Request::new(reqwest::Method::GET, url);
    /// let future = track.ready().await?.call(req); // a TrackFuture: resolves with the head
    /// assert_eq!(future.await?.status(), 200);
    /// # Ok(())
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct TrackFuture<F> {
        // `None` once the deadline ended the call.
        #[pin]
        fut: Option<F>,
        deadline: Option<Deadline>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<reqwest::Response, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Tracked<reqwest::Body>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Deadline::poll_head(this.fut, this.deadline, cx).map_ok(|(res, deadline)| {
            let url = ResponseUrl(res.url().clone());
            let (mut parts, body) = Response::<reqwest::Body>::from(res).into_parts();
            url.set(&mut parts.extensions);
            Response::from_parts(parts, Tracked::with_deadline(body, deadline))
        })
    }
}

/// The URL of a response, in an extension palisade can read (reqwest's own is private): the
/// stale cache keeps it with the response and serves it back.
#[derive(Debug, Clone)]
pub(crate) struct ResponseUrl(reqwest::Url);

impl ResponseUrl {
    /// The length of the URL, for the stale cache's byte count.
    pub(crate) fn len(&self) -> usize {
        self.0.as_str().len()
    }

    /// Puts the URL on `extensions`, both where `reqwest::Response::from` looks for it and
    /// where palisade does.
    pub(crate) fn set(self, extensions: &mut http::Extensions) {
        // reqwest keeps the URL in a private extension; its builder can set it.
        use reqwest::ResponseBuilderExt;
        if let Ok(carrier) = http::Response::builder().url(self.0.clone()).body(()) {
            extensions.extend(carrier.into_parts().0.extensions);
        }
        extensions.insert(self);
    }
}

/// Turns the stack's `http::Response<Tracked<reqwest::Body>>` back into a `reqwest::Response`
/// (with its URL), the type a reqwest caller expects. The body stays tracked inside.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// use palisade::policy::Policy;
/// use palisade::testkit::FlakyServer;
/// use tower::{Layer, ServiceExt};
///
/// let server = FlakyServer::start().await?;
/// // The outermost service of a reqwest policy is an IntoReqwest: reqwest's types in and out.
/// let client = Policy::builder()
///     .reqwest()
///     .build()?
///     .layer(reqwest::Client::builder().no_proxy().build()?);
/// let url: reqwest::Url = format!("{}/items/7?view=full", server.url()).parse()?;
/// let res: reqwest::Response = client
///     .oneshot(reqwest::Request::new(reqwest::Method::GET, url.clone()))
///     .await?;
/// assert_eq!(res.url(), &url); // kept through the stack
///     
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct IntoReqwest<S> {
    inner: S,
}

impl<S> IntoReqwest<S> {
    inner_accessors!();
}

impl<S> Service<reqwest::Request> for IntoReqwest<S>
where
    S: Service<reqwest::Request, Response = Response<Tracked<reqwest::Body>>>,
    S::Error: Into<BoxError>,
{
    type Response = reqwest::Response;
    type Error = BoxError;
    type Future = IntoReqwestFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: reqwest::Request) -> Self::Future {
        // For a response made inside the stack without one (a fallback's): reqwest would give
        // it a placeholder.
        let url = req.url().clone();
        IntoReqwestFuture {
            fut: self.inner.call(req),
            url: Some(url),
        }
    }
}

pin_project! {
    /// Response future of [`IntoReqwest`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// use palisade::policy::Policy;
    /// use palisade::testkit::FlakyServer;
    /// use tower::{Layer, Service, ServiceExt};
    ///
    /// let server = FlakyServer::start().await?;
    /// let mut client = Policy::builder().reqwest().build()?.layer(reqwest::Client::builder().no_proxy().build()?);
    /// let url = format!("{}/orders", server.url()).parse()?;
    /// let req = reqwest::Request::new(reqwest::Method::GET, url);
    /// let future = client.ready().await?.call(req); // an IntoReqwestFuture
    /// let res: reqwest::Response = future.await?;
    /// assert_eq!(res.text().await?, "/orders");
    /// # Ok(())
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct IntoReqwestFuture<F> {
        #[pin]
        fut: F,
        url: Option<reqwest::Url>,
    }
}

impl<F, E> Future for IntoReqwestFuture<F>
where
    F: Future<Output = Result<Response<Tracked<reqwest::Body>>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<reqwest::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.fut.poll(cx)).map_err(Into::into)?;
        if res.extensions().get::<ResponseUrl>().is_none()
            && let Some(url) = this.url.take()
        {
            // Made inside the stack (a fallback's response): the request's URL. (A URL such a
            // response set with `reqwest::ResponseBuilderExt::url` is replaced: reqwest keeps
            // it where palisade cannot see it.)
            ResponseUrl(url).set(res.extensions_mut());
        }
        Poll::Ready(Ok(reqwest::Response::from(res)))
    }
}
