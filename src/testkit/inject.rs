//! A tower layer that injects seeded failures and latency in front of any service.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{BoxError, Layer, Service};

use crate::error::ConfigError;
use crate::testkit::rng::{self, SharedRng};

/// The failure a [`FaultInjection`] service injects: the inner service was not called.
///
/// It is an inner error as far as palisade is concerned
/// ([`ErrorKind::Inner`](crate::error::ErrorKind::Inner)): a circuit breaker around the
/// injecting layer counts it as a failure, as it would a failure of the dependency.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::error::{error_kind, ErrorKind};
/// use palisade::testkit::{FaultInjectionLayer, InjectedFault};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let layer = FaultInjectionLayer::builder()
///     .error_rate(1.0)
///     .build()
///     .unwrap();
/// let svc = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
/// let err = svc.oneshot(()).await.unwrap_err();
/// assert!(err.is::<InjectedFault>());
/// assert!(matches!(error_kind(err.as_ref()), ErrorKind::Inner(_))); // a failure, to a breaker
///     
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InjectedFault;

impl InjectedFault {
    /// The injected failure.
    ///
    /// ```
    /// use palisade::testkit::InjectedFault;
    ///
    /// assert_eq!(InjectedFault::new().to_string(), "injected fault");
    /// ```
    pub const fn new() -> Self {
        Self
    }
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected fault")
    }
}

impl Error for InjectedFault {}

/// Wraps services in a [`FaultInjection`]. Build one with [`FaultInjectionLayer::builder`].
///
/// Every service made by one layer (and every clone of them) draws from one random sequence.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, State};
/// use palisade::testkit::FaultInjectionLayer;
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// // A breaker tested against a dependency that fails 60 % of calls, without a socket.
/// let breaker = CircuitBreakerLayer::builder()
///     .window(SlidingWindow::Count(20))
///     .minimum_calls(10)
///     .build()
///     .unwrap();
/// let handle = breaker.handle();
/// let mut svc = ServiceBuilder::new()
///     .layer(breaker)
///     .layer(
///         FaultInjectionLayer::builder()
///             .seed(1)
///             .error_rate(0.6)
///             .latency(Duration::from_millis(5))
///             .build()
///             .unwrap(),
///     )
///     .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
/// let mut calls = 0;
/// while handle.state() == State::Closed && calls < 100 {
///     let _ = svc.ready().await.unwrap().call(()).await;
///     calls += 1;
/// }
/// assert_eq!(handle.state(), State::Open);
/// assert!(calls >= 10); // once the window held its minimum of 10 calls
///
/// # }
/// ```
#[derive(Clone)]
pub struct FaultInjectionLayer {
    error_rate: f64,
    latency: (Duration, Duration),
    rng: Arc<SharedRng>,
}

impl fmt::Debug for FaultInjectionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjectionLayer")
            .field("error_rate", &self.error_rate)
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl FaultInjectionLayer {
    /// A builder: no failures, no latency, seed 0.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::testkit::FaultInjectionLayer;
    ///
    /// let layer = FaultInjectionLayer::builder().build().unwrap(); // injects nothing
    /// assert_eq!(
    ///     (layer.error_rate(), layer.latency_range()),
    ///     (0.0, (Duration::ZERO, Duration::ZERO))
    /// );
    /// ```
    pub fn builder() -> FaultInjectionBuilder {
        FaultInjectionBuilder::default()
    }

    /// The probability that a call fails with [`InjectedFault`].
    ///
    /// ```
    /// use palisade::testkit::FaultInjectionLayer;
    ///
    /// assert_eq!(
    ///     FaultInjectionLayer::builder()
    ///         .error_rate(0.25)
    ///         .build()
    ///         .unwrap()
    ///         .error_rate(),
    ///     0.25
    /// );
    /// ```
    pub fn error_rate(&self) -> f64 {
        self.error_rate
    }

    /// The range latency is drawn from (`(d, d)` for a fixed latency).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::testkit::FaultInjectionLayer;
    ///
    /// let ms = Duration::from_millis;
    /// let layer = FaultInjectionLayer::builder()
    ///     .latency_between(ms(10), ms(50))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.latency_range(), (ms(10), ms(50)));
    /// ```
    pub fn latency_range(&self) -> (Duration, Duration) {
        self.latency
    }
}

impl<S> Layer<S> for FaultInjectionLayer {
    type Service = FaultInjection<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultInjection {
            inner,
            error_rate: self.error_rate,
            latency: self.latency,
            rng: Arc::clone(&self.rng),
        }
    }
}

/// Builds a [`FaultInjectionLayer`]; [`build`](Self::build) checks every setting.
///
/// ```
/// use std::time::Duration;
/// use palisade::testkit::FaultInjectionLayer;
///
/// let layer = FaultInjectionLayer::builder()
///     .seed(42)
///     .error_rate(0.1)
///     .latency_between(Duration::from_millis(1), Duration::from_millis(20))
///     .build()
///     .unwrap();
/// assert_eq!(layer.error_rate(), 0.1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct FaultInjectionBuilder {
    seed: u64,
    error_rate: f64,
    latency: (Duration, Duration),
}

impl FaultInjectionBuilder {
    /// The seed of the random sequence (default 0): the same seed and the same order of calls
    /// give the same failures and latencies.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::testkit::FaultInjectionLayer;
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// // The same seed gives the same failures, run after run.
    /// async fn failures(seed: u64) -> Vec<bool> {
    ///     let layer = FaultInjectionLayer::builder()
    ///         .seed(seed)
    ///         .error_rate(0.5)
    ///         .build()
    ///         .unwrap();
    ///     let mut svc =
    ///         layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    ///     let mut failed = Vec::new();
    ///     for _ in 0..16 {
    ///         failed.push(svc.ready().await.unwrap().call(()).await.is_err());
    ///     }
    ///     failed
    /// }
    /// assert_eq!(failures(7).await, failures(7).await);
    /// assert_ne!(failures(7).await, failures(8).await);
    /// # }
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The probability that a call fails with [`InjectedFault`] without reaching the inner
    /// service, within `0.0..=1.0` (default 0).
    ///
    /// ```
    /// use palisade::testkit::FaultInjectionLayer;
    ///
    /// assert!(
    ///     FaultInjectionLayer::builder()
    ///         .error_rate(1.0)
    ///         .build()
    ///         .is_ok()
    /// ); // every call fails
    /// assert_eq!(
    ///     FaultInjectionLayer::builder()
    ///         .error_rate(f64::NAN)
    ///         .build()
    ///         .unwrap_err()
    ///         .field(),
    ///     "error_rate"
    /// );
    /// ```
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// A fixed latency before each call reaches the inner service (or fails).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::testkit::FaultInjectionLayer;
    /// use tokio::time::Instant;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// let layer = FaultInjectionLayer::builder()
    ///     .latency(Duration::from_millis(300))
    ///     .build()
    ///     .unwrap();
    /// let svc = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    /// let start = Instant::now();
    /// svc.oneshot(()).await.unwrap();
    /// assert_eq!(start.elapsed(), Duration::from_millis(300)); // paused time: exactly
    ///
    /// # }
    /// ```
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = (latency, latency);
        self
    }

    /// A latency drawn uniformly from `min..=max` before each call reaches the inner service
    /// (or fails). `min` must not exceed `max`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::testkit::FaultInjectionLayer;
    /// use tokio::time::Instant;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// let ms = Duration::from_millis;
    /// let layer = FaultInjectionLayer::builder()
    ///     .latency_between(ms(10), ms(50))
    ///     .build()
    ///     .unwrap();
    /// let svc = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    /// for _ in 0..10 {
    ///     let start = Instant::now();
    ///     svc.clone().oneshot(()).await.unwrap();
    ///     assert!((ms(10)..=ms(50)).contains(&start.elapsed()));
    /// }
    /// assert!(
    ///     FaultInjectionLayer::builder()
    ///         .latency_between(ms(50), ms(10))
    ///         .build()
    ///         .is_err()
    /// );
    /// # }
    /// ```
    pub fn latency_between(mut self, min: Duration, max: Duration) -> Self {
        self.latency = (min, max);
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `error_rate` (not within `0.0..=1.0`, or NaN) or `latency`
    /// (minimum above maximum).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::testkit::FaultInjectionLayer;
    ///
    /// assert!(
    ///     FaultInjectionLayer::builder()
    ///         .error_rate(0.5)
    ///         .build()
    ///         .is_ok()
    /// );
    /// let err = FaultInjectionLayer::builder()
    ///     .latency_between(Duration::from_secs(2), Duration::from_secs(1))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "latency");
    /// ```
    pub fn build(&self) -> Result<FaultInjectionLayer, ConfigError> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(ConfigError::new(
                "error_rate",
                "must be within 0.0..=1.0",
                self.error_rate,
            ));
        }
        if self.latency.0 > self.latency.1 {
            return Err(ConfigError::new(
                "latency",
                "minimum must not exceed maximum",
                self.latency,
            ));
        }
        Ok(FaultInjectionLayer {
            error_rate: self.error_rate,
            latency: self.latency,
            rng: Arc::new(SharedRng::new(self.seed)),
        })
    }
}

/// A service that fails some calls with [`InjectedFault`] and delays others, as a seeded
/// random sequence decides, before they reach the inner service. Made by
/// [`FaultInjectionLayer`].
///
/// Each call draws its latency and whether it fails; it waits out the latency (a tokio
/// sleep, so paused time controls it), then either fails with [`InjectedFault`] (boxed)
/// without calling the inner service, or calls it. Inner errors are converted into
/// [`BoxError`] unchanged.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::testkit::{FaultInjectionLayer, InjectedFault};
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// let layer = FaultInjectionLayer::builder()
///     .seed(7)
///     .error_rate(0.5)
///     .latency(Duration::from_millis(20))
///     .build()
///     .expect("valid configuration");
/// let mut svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) }));
///
/// let start = tokio::time::Instant::now();
/// let mut failed = 0;
/// for n in 0..100 {
///     match svc.ready().await.unwrap().call(n).await {
///         Ok(doubled) => assert_eq!(doubled, n * 2),
///         Err(err) => {
///             assert!(err.is::<InjectedFault>());
///             failed += 1;
///         }
///     }
/// }
/// assert!((30..=70).contains(&failed), "{failed} of 100 failed");
/// assert_eq!(start.elapsed(), Duration::from_millis(2000));
/// # }
/// ```
///
/// A configuration that cannot work is refused, naming the field:
///
/// ```
/// use palisade::testkit::FaultInjectionLayer;
///
/// let err = FaultInjectionLayer::builder().error_rate(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "error_rate");
/// ```
///
/// # Readiness
///
/// `poll_ready` forwards to the inner service. A call that will fail with [`InjectedFault`]
/// does not use the readiness it was given, which is kept for the next call.
///
/// # Clone
///
/// Clones share the random sequence of the layer that made them (one atomic word, one
/// `fetch_add` per call): concurrent calls through any clone draw consecutive numbers of one
/// sequence, so a given seed and order of calls always gives the same faults. The inner
/// service is cloned.
///
/// # Panics
///
/// A call with a latency makes its tokio timer in [`call`](Service::call), which panics
/// outside a tokio runtime or in one without the time driver, as `tokio::time::sleep` does.
/// A call with no latency needs no runtime.
///
/// # Cancellation
///
/// Dropping the response future during the latency drops the request, and the inner service
/// never sees it. With a latency, the instance of the inner service that was made ready is
/// moved into the response future (a clone takes its place), so `S` must be `Clone`.
#[derive(Clone)]
pub struct FaultInjection<S> {
    inner: S,
    error_rate: f64,
    latency: (Duration, Duration),
    rng: Arc<SharedRng>,
}

impl<S: fmt::Debug> fmt::Debug for FaultInjection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjection")
            .field("inner", &self.inner)
            .field("error_rate", &self.error_rate)
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl<S> FaultInjection<S> {
    inner_accessors!();
}

impl<S, Req> Service<Req> for FaultInjection<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = FaultInjectionFuture<S::Future, S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// # Panics
    ///
    /// With a latency, outside a tokio runtime with the time driver: the latency's timer is
    /// made here.
    fn call(&mut self, req: Req) -> Self::Future {
        let draw = self.rng.next_pair();
        let latency = rng::between(draw.first, self.latency.0, self.latency.1);
        let fail = rng::chance(draw.second, self.error_rate);
        let state = match (latency.is_zero(), fail) {
            (true, true) => State::Failed,
            (true, false) => State::Calling {
                future: self.inner.call(req),
            },
            (false, fail) => {
                let call = if fail {
                    None
                } else {
                    let fresh = self.inner.clone();
                    Some((mem::replace(&mut self.inner, fresh), req))
                };
                State::Delayed {
                    delayed: Box::pin(Delayed {
                        sleep: tokio::time::sleep(latency),
                        call,
                    }),
                }
            }
        };
        FaultInjectionFuture { state }
    }
}

pin_project! {
    /// The latency of a call, and what happens after it (`None`: fail).
    struct Delayed<S, Req> {
        #[pin]
        sleep: Sleep,
        call: Option<(S, Req)>,
    }
}

pin_project! {
    /// Response future of [`FaultInjection`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use palisade::testkit::FaultInjectionLayer;
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// let calls = Arc::new(AtomicUsize::new(0));
    /// let count = calls.clone();
    /// let layer = FaultInjectionLayer::builder().latency(Duration::from_secs(1)).build().unwrap();
    /// let mut svc = layer.layer(service_fn(move |_: ()| {
    ///     count.fetch_add(1, Ordering::SeqCst);
    ///     async { Ok::<_, std::io::Error>(()) }
    /// }));
    /// let future = svc.ready().await.unwrap().call(()); // waiting out its latency
    /// drop(future); // dropped during the latency: the inner service never sees the request
    /// assert_eq!(calls.load(Ordering::SeqCst), 0);
    /// # }
    /// ```
    pub struct FaultInjectionFuture<F, S, Req> {
        #[pin]
        state: State<F, S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, Req> {
        Delayed { delayed: Pin<Box<Delayed<S, Req>>> },
        Calling { #[pin] future: F },
        Failed,
    }
}

impl<F, S, Req> fmt::Debug for FaultInjectionFuture<F, S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Delayed { .. } => "delayed",
            State::Calling { .. } => "calling",
            State::Failed => "failed",
        };
        f.debug_struct("FaultInjectionFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, S, Req, T, E> Future for FaultInjectionFuture<F, S, Req>
where
    F: Future<Output = Result<T, E>>,
    S: Service<Req, Response = T, Error = E, Future = F>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Delayed { delayed } => {
                    let delayed = delayed.as_mut().project();
                    std::task::ready!(delayed.sleep.poll(cx));
                    match delayed.call.take() {
                        Some((mut svc, req)) => {
                            let future = svc.call(req);
                            this.state.set(State::Calling { future });
                        }
                        None => this.state.set(State::Failed),
                    }
                }
                StateProj::Calling { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                StateProj::Failed => return Poll::Ready(Err(Box::new(InjectedFault))),
            }
        }
    }
}
