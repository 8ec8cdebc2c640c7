//! The recommended stack from one validated configuration.
//!
//! ```text
//! caller -> Fallback -> CircuitBreaker -> Bulkhead -> Timeout -> client
//! ```
//!
//! * **Timeout innermost**: a call that runs out of time is a failure the breaker counts, and
//!   its bulkhead permit is released the moment it is abandoned.
//! * **Bulkhead inside the breaker**: an open breaker rejects without touching a permit, and a
//!   full bulkhead (local overload, not a sick dependency) is *ignored* by the breaker.
//! * **Fallback outermost**: it sees every way a call can fail and decides per kind.
//!
//! Every part is optional. The same classifier decides for the breaker and the fallback.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use palisade::policy::Policy;
//! use palisade::{bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig};
//! use palisade::{fallback, timeout::TimeoutConfig};
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! let policy = Policy::builder()
//!     .name("inventory")
//!     .timeout(Duration::from_millis(250))
//!     .bulkhead(BulkheadConfig::default())
//!     .circuit_breaker(CircuitBreakerConfig::default())
//!     .fallback(fallback::value("unknown"))
//!     .build()
//!     .expect("valid policy");
//! let mut client = policy.layer(service_fn(|_: ()| async {
//!     Err::<&str, _>(std::io::Error::other("down"))
//! }));
//! assert_eq!(client.ready().await.unwrap().call(()).await.unwrap(), "unknown");
//! # }
//! ```
//!
//! With feature `serde`, a [`PolicyConfig`] reads from a file; for example, in TOML:
//!
//! ```toml
//! name = "inventory"
//!
//! [timeout]
//! timeout = "250ms"
//!
//! [bulkhead]
//! max_concurrent = 32
//!
//! [circuit_breaker]
//! window = { count = 50 }
//! minimum_calls = 20
//! failure_rate = 0.5
//! open_duration = "10s"
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::{BoxError, Layer, Service, ServiceBuilder, layer::util::Stack};

use crate::bulkhead::{self, Bulkhead, BulkheadConfig, BulkheadLayer, UntilResponse};
use crate::circuit_breaker::{self, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
use crate::classify::DefaultClassifier;
use crate::error::ConfigError;
use crate::events::{Listener, Listeners};
use crate::fallback::{Failure, Fallback, FallbackLayer, Kinds, Recover};
use crate::timeout::{Timeout, TimeoutConfig, TimeoutLayer};

/// The serializable part of a [`Policy`]: a name and each protection, all optional.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(remote = "Self", default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Name given to every part, for events and metrics. Default `"default"`.
    pub name: String,
    /// The timeout, if any.
    pub timeout: Option<TimeoutConfig>,
    /// The bulkhead, if any.
    pub bulkhead: Option<BulkheadConfig>,
    /// The circuit breaker, if any.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            timeout: None,
            bulkhead: None,
            circuit_breaker: None,
        }
    }
}

validated_deserialize!(PolicyConfig);

impl PolicyConfig {
    /// Checks every part; the error names the field with its section
    /// (`circuit_breaker.failure_rate`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty", ""));
        }
        if let Some(t) = &self.timeout {
            t.validate().map_err(|e| e.within("timeout"))?;
        }
        if let Some(b) = &self.bulkhead {
            b.validate().map_err(|e| e.within("bulkhead"))?;
        }
        if let Some(c) = &self.circuit_breaker {
            c.validate().map_err(|e| e.within("circuit_breaker"))?;
        }
        Ok(())
    }
}

/// The recovery of a policy without a fallback: every failure goes through.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFallback;

impl<Req, Res> Recover<Req, Res> for NoFallback {
    type Kept = ();

    fn keep(&self, _: &Req) {}

    fn recover(&self, _: (), failure: Failure<Res>) -> Result<Res, Failure<Res>> {
        Err(failure)
    }
}

/// Entry point: [`Policy::builder`].
#[derive(Debug, Clone, Copy)]
pub struct Policy;

impl Policy {
    /// A builder with nothing in it yet.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            config: PolicyConfig::default(),
            fallback: None,
            kinds: Kinds::ALL,
            classifier: DefaultClassifier,
            listeners: Listeners::default(),
            adapter: Bare,
            hold: UntilResponse,
        }
    }
}

/// What a policy puts right on the client, under its timeout, and around the whole stack:
/// nothing ([`Bare`]); for HTTP and gRPC a [`TrackLayer`](crate::http::TrackLayer) on the
/// client; for reqwest a conversion to `http` types on the client and back around the stack.
pub trait Adapter: Clone {
    /// What wraps the whole stack.
    type Outer<S>;

    /// The adapter, completed from the policy's configuration.
    fn finish(&self, config: &PolicyConfig) -> Result<Self, ConfigError>;

    /// Wraps the whole stack.
    fn outer<S>(&self, stack: S) -> Self::Outer<S>;
}

/// No adapter: the policy wraps the client as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bare;

impl<S> Layer<S> for Bare {
    type Service = S;

    fn layer(&self, inner: S) -> S {
        inner
    }
}

impl Adapter for Bare {
    type Outer<S> = S;

    fn finish(&self, _: &PolicyConfig) -> Result<Self, ConfigError> {
        Ok(*self)
    }

    fn outer<S>(&self, stack: S) -> S {
        stack
    }
}

/// Builds a [`PolicyLayer`].
#[derive(Debug, Clone)]
pub struct PolicyBuilder<R = NoFallback, C = DefaultClassifier, A = Bare, H = UntilResponse> {
    config: PolicyConfig,
    fallback: Option<R>,
    kinds: Kinds,
    classifier: C,
    listeners: Listeners,
    adapter: A,
    hold: H,
}

impl<R, C, A, H> PolicyBuilder<R, C, A, H> {
    /// Starts from a configuration (for example one deserialized from a file).
    pub fn config(mut self, config: PolicyConfig) -> Self {
        self.config = config;
        self
    }

    /// Name for every part.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// A timeout of `timeout` per call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(TimeoutConfig {
            timeout,
            ..TimeoutConfig::default()
        });
        self
    }

    /// A bulkhead.
    pub fn bulkhead(mut self, config: BulkheadConfig) -> Self {
        self.config.bulkhead = Some(config);
        self
    }

    /// A circuit breaker.
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.config.circuit_breaker = Some(config);
        self
    }

    /// A fallback, recovering the failures selected by [`fallback_kinds`](Self::fallback_kinds).
    pub fn fallback<R2>(self, recover: R2) -> PolicyBuilder<R2, C, A, H> {
        PolicyBuilder {
            config: self.config,
            fallback: Some(recover),
            kinds: self.kinds,
            classifier: self.classifier,
            listeners: self.listeners,
            adapter: self.adapter,
            hold: self.hold,
        }
    }

    /// Which failures the fallback recovers (default: all).
    pub fn fallback_kinds(mut self, kinds: Kinds) -> Self {
        self.kinds = kinds;
        self
    }

    /// The classifier for the breaker and the fallback.
    pub fn classifier<C2>(self, classifier: C2) -> PolicyBuilder<R, C2, A, H> {
        PolicyBuilder {
            config: self.config,
            fallback: self.fallback,
            kinds: self.kinds,
            classifier,
            listeners: self.listeners,
            adapter: self.adapter,
            hold: self.hold,
        }
    }

    /// For HTTP clients (`Service<http::Request<_>, Response = http::Response<_>>`: hyper,
    /// or anything speaking `http` types): classifies with
    /// [`HttpClassifier`](crate::classify::http::HttpClassifier), tracks each response body
    /// ([`TrackLayer`](crate::http::TrackLayer)) so that a body that breaks is a failure, and
    /// holds the bulkhead permit until the body ends. The responses' bodies become
    /// [`Tracked`](crate::http::Tracked).
    #[cfg(feature = "http")]
    pub fn http(
        self,
    ) -> PolicyBuilder<
        R,
        crate::classify::http::HttpClassifier,
        crate::http::TrackLayer,
        crate::http::UntilBodyEnd,
    > {
        self.adapt(
            crate::classify::http::HttpClassifier::default(),
            crate::http::TrackLayer::new(),
        )
    }

    /// For gRPC clients (a tonic `Channel`, or any `Service<http::Request<_>>` speaking gRPC):
    /// as [`http`](Self::http), classifying with
    /// [`GrpcClassifier`](crate::classify::grpc::GrpcClassifier) (the status in the head or the
    /// trailers), and sending the timeout downstream as `grpc-timeout`.
    #[cfg(feature = "grpc")]
    pub fn grpc(
        self,
    ) -> PolicyBuilder<
        R,
        crate::classify::grpc::GrpcClassifier,
        crate::http::TrackLayer,
        crate::http::UntilBodyEnd,
    > {
        self.adapt(
            crate::classify::grpc::GrpcClassifier::default(),
            crate::http::TrackLayer::new().propagating_grpc_timeout(),
        )
    }

    /// For a `reqwest::Client`: as [`http`](Self::http), converting each response to
    /// `http::Response<Tracked<reqwest::Body>>` on the client and back to a `reqwest::Response`
    /// around the stack, so the caller keeps reqwest's types while the body is tracked.
    #[cfg(feature = "reqwest")]
    pub fn reqwest(
        self,
    ) -> PolicyBuilder<
        R,
        crate::classify::http::HttpClassifier,
        crate::http::reqwest::ReqwestAdapter,
        crate::http::UntilBodyEnd,
    > {
        self.adapt(
            crate::classify::http::HttpClassifier::default(),
            crate::http::reqwest::ReqwestAdapter::default(),
        )
    }

    #[cfg(feature = "http")]
    fn adapt<C2, A2>(
        self,
        classifier: C2,
        adapter: A2,
    ) -> PolicyBuilder<R, C2, A2, crate::http::UntilBodyEnd> {
        PolicyBuilder {
            config: self.config,
            fallback: self.fallback,
            kinds: self.kinds,
            classifier,
            listeners: self.listeners,
            adapter,
            hold: crate::http::UntilBodyEnd,
        }
    }

    /// A listener told about every part's decisions; events carry the policy's name.
    pub fn listener(mut self, listener: impl Listener + 'static) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }

    /// Validates everything and builds the layer. The error names the field with its section.
    pub fn build(self) -> Result<PolicyLayer<R, C, A, H>, ConfigError>
    where
        C: Clone,
        A: Adapter,
    {
        self.config.validate()?;
        let adapter = self.adapter.finish(&self.config)?;
        let name = &self.config.name;
        let listeners = self.listeners.named(name.clone());
        let timeout = match &self.config.timeout {
            Some(t) => Some(
                TimeoutLayer::new(t)
                    .map_err(|e| e.within("timeout"))?
                    .with_listeners(listeners.clone()),
            ),
            None => None,
        };
        let bulkhead = match &self.config.bulkhead {
            Some(b) => {
                let mut b = b.clone();
                b.name.clone_from(name);
                let built = bulkhead::Builder::from_config(b)
                    .listeners(listeners.clone())
                    .build();
                Some(built.map_err(|e| e.within("bulkhead"))?.hold(self.hold))
            }
            None => None,
        };
        let circuit_breaker = match &self.config.circuit_breaker {
            Some(c) => {
                let mut c = c.clone();
                c.name.clone_from(name);
                let built = circuit_breaker::Builder::from_config(c)
                    .listeners(listeners.clone())
                    .build();
                Some(
                    built
                        .map_err(|e| e.within("circuit_breaker"))?
                        .with_classifier(self.classifier.clone()),
                )
            }
            None => None,
        };
        let fallback = self.fallback.map(|r| {
            FallbackLayer::new(r)
                .kinds(self.kinds)
                .with_classifier(self.classifier.clone())
                .listeners(listeners.clone())
        });
        Ok(PolicyLayer {
            name: self.config.name,
            fallback,
            circuit_breaker,
            bulkhead,
            timeout,
            adapter,
        })
    }
}

#[cfg(feature = "http")]
impl<R, C> PolicyBuilder<R, C, crate::http::TrackLayer, crate::http::UntilBodyEnd> {
    /// A deadline for the whole response, head and body (HTTP and gRPC policies): a body still
    /// streaming at the deadline ends with an error, never as a truncated success. See
    /// [`TrackLayer::deadline`](crate::http::TrackLayer::deadline).
    pub fn response_deadline(mut self, deadline: Duration) -> Self {
        self.adapter = self.adapter.response_deadline(deadline);
        self
    }
}

#[cfg(feature = "reqwest")]
impl<R, C> PolicyBuilder<R, C, crate::http::reqwest::ReqwestAdapter, crate::http::UntilBodyEnd> {
    /// A deadline for the whole response, head and body: a body still streaming at the
    /// deadline ends with an error, never as a truncated success.
    pub fn response_deadline(mut self, deadline: Duration) -> Self {
        self.adapter = self.adapter.response_deadline(deadline);
        self
    }
}

/// The recommended stack as one layer. Made by [`PolicyBuilder::build`].
#[derive(Debug, Clone)]
pub struct PolicyLayer<R = NoFallback, C = DefaultClassifier, A = Bare, H = UntilResponse> {
    name: String,
    fallback: Option<FallbackLayer<R, C>>,
    circuit_breaker: Option<CircuitBreakerLayer<C>>,
    bulkhead: Option<BulkheadLayer<H>>,
    timeout: Option<TimeoutLayer>,
    adapter: A,
}

impl<R, C, A, H> PolicyLayer<R, C, A, H> {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle on the circuit breaker, if there is one.
    pub fn circuit_breaker(&self) -> Option<circuit_breaker::Handle> {
        self.circuit_breaker
            .as_ref()
            .map(CircuitBreakerLayer::handle)
    }

    /// A handle on the bulkhead, if there is one.
    pub fn bulkhead(&self) -> Option<bulkhead::Handle> {
        self.bulkhead.as_ref().map(BulkheadLayer::handle)
    }

    /// The fallback's recovery (for example a stale cache, to read its stats), if any.
    pub fn fallback(&self) -> Option<&R> {
        self.fallback.as_ref().map(FallbackLayer::recover)
    }
}

/// `S` with an optional timeout.
pub type Timed<S> = Optional<Timeout<S>, S>;
/// `S` with an optional timeout and bulkhead.
pub type Limited<S, H = UntilResponse> = Optional<Bulkhead<Timed<S>, H>, Timed<S>>;
/// `S` with an optional timeout, bulkhead and circuit breaker.
pub type Guarded<S, C, H = UntilResponse> =
    Optional<CircuitBreaker<Limited<S, H>, C>, Limited<S, H>>;
/// The service a [`PolicyLayer`] makes; `S` is the client under the adapter.
pub type PolicyService<S, R = NoFallback, C = DefaultClassifier, H = UntilResponse> =
    Optional<Fallback<Guarded<S, C, H>, R, C>, Guarded<S, C, H>>;

/// A part of the stack that is there (`On`, wrapping the rest) or not (`Off`). Errors of both
/// become [`BoxError`].
#[derive(Debug, Clone)]
pub enum Optional<On, Off> {
    /// The part is configured.
    On(On),
    /// The part is left out.
    Off(Off),
}

impl<On, Off, Req> Service<Req> for Optional<On, Off>
where
    On: Service<Req>,
    On::Error: Into<BoxError>,
    Off: Service<Req, Response = On::Response>,
    Off::Error: Into<BoxError>,
{
    type Response = On::Response;
    type Error = BoxError;
    type Future = OptionalFuture<On::Future, Off::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Optional::On(s) => s.poll_ready(cx).map_err(Into::into),
            Optional::Off(s) => s.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Optional::On(s) => OptionalFuture {
                kind: Branch::On { fut: s.call(req) },
            },
            Optional::Off(s) => OptionalFuture {
                kind: Branch::Off { fut: s.call(req) },
            },
        }
    }
}

pin_project! {
    /// Response future of [`Optional`].
    #[derive(Debug)]
    pub struct OptionalFuture<On, Off> {
        #[pin]
        kind: Branch<On, Off>,
    }
}

pin_project! {
    #[project = BranchProj]
    #[derive(Debug)]
    enum Branch<On, Off> {
        On { #[pin] fut: On },
        Off { #[pin] fut: Off },
    }
}

impl<On, Off, T, E1, E2> Future for OptionalFuture<On, Off>
where
    On: Future<Output = Result<T, E1>>,
    Off: Future<Output = Result<T, E2>>,
    E1: Into<BoxError>,
    E2: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            BranchProj::On { fut } => fut.poll(cx).map_err(Into::into),
            BranchProj::Off { fut } => fut.poll(cx).map_err(Into::into),
        }
    }
}

impl<S, R: Clone, C: Clone, A: Layer<S> + Adapter, H: Clone> Layer<S> for PolicyLayer<R, C, A, H> {
    type Service = A::Outer<PolicyService<A::Service, R, C, H>>;

    fn layer(&self, inner: S) -> Self::Service {
        let timed = wrap(&self.timeout, self.adapter.layer(inner));
        let limited = wrap(&self.bulkhead, timed);
        let guarded = wrap(&self.circuit_breaker, limited);
        self.adapter.outer(wrap(&self.fallback, guarded))
    }
}

fn wrap<L: Layer<S>, S>(layer: &Option<L>, inner: S) -> Optional<L::Service, S> {
    match layer {
        Some(layer) => Optional::On(layer.layer(inner)),
        None => Optional::Off(inner),
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// palisade's layers as [`ServiceBuilder`] methods, for stacking by hand. Each layer's docs say
/// what it counts and returns, so any order is predictable; [`Policy`] gives the recommended one.
///
/// ```
/// use std::time::Duration;
/// use palisade::policy::ServiceBuilderExt;
/// use palisade::{circuit_breaker::CircuitBreakerLayer, timeout::TimeoutLayer};
/// use tower::{service_fn, ServiceBuilder};
///
/// let svc = ServiceBuilder::new()
///     .circuit_breaker(CircuitBreakerLayer::builder().build().unwrap())
///     .call_timeout(TimeoutLayer::builder().timeout(Duration::from_secs(1)).build().unwrap())
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// # let _ = svc;
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds a circuit breaker.
    fn circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>>;
    /// Adds a bulkhead.
    fn bulkhead<H>(self, layer: BulkheadLayer<H>) -> ServiceBuilder<Stack<BulkheadLayer<H>, L>>;
    /// Adds a timeout. With tower's own `timeout` feature on, `ServiceBuilder` has an inherent
    /// `timeout(Duration)` that takes precedence (passing a `TimeoutLayer` to it does not
    /// compile): use [`call_timeout`](Self::call_timeout) then.
    fn timeout<F>(self, layer: TimeoutLayer<F>) -> ServiceBuilder<Stack<TimeoutLayer<F>, L>>;
    /// Adds a timeout; the same as [`timeout`](Self::timeout), under a name that tower's
    /// `ServiceBuilder::timeout` cannot shadow.
    fn call_timeout<F>(self, layer: TimeoutLayer<F>) -> ServiceBuilder<Stack<TimeoutLayer<F>, L>>;
    /// Adds a fallback.
    fn fallback<R, C>(
        self,
        layer: FallbackLayer<R, C>,
    ) -> ServiceBuilder<Stack<FallbackLayer<R, C>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>> {
        self.layer(layer)
    }

    fn bulkhead<H>(self, layer: BulkheadLayer<H>) -> ServiceBuilder<Stack<BulkheadLayer<H>, L>> {
        self.layer(layer)
    }

    fn timeout<F>(self, layer: TimeoutLayer<F>) -> ServiceBuilder<Stack<TimeoutLayer<F>, L>> {
        self.layer(layer)
    }

    fn call_timeout<F>(self, layer: TimeoutLayer<F>) -> ServiceBuilder<Stack<TimeoutLayer<F>, L>> {
        self.layer(layer)
    }

    fn fallback<R, C>(
        self,
        layer: FallbackLayer<R, C>,
    ) -> ServiceBuilder<Stack<FallbackLayer<R, C>, L>> {
        self.layer(layer)
    }
}
