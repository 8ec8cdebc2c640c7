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
//!
//! Reading validates the whole configuration as `build()` does, and a bad field is named with
//! its section: `` invalid configuration: `circuit_breaker.failure_rate` must be a fraction in
//! (0, 1], got 1.5 ``. Read through a format crate (`toml::from_str`, `serde_json::from_str`)
//! or the trait, `PolicyConfig::deserialize`: every way in validates (the fields are read by
//! private mirrors, so no public function reads them unchecked).

use std::task::{Context, Poll};
use std::time::Duration;

use tower::{BoxError, Layer, Service, ServiceBuilder, layer::util::Stack};

use crate::bulkhead::{self, Bulkhead, BulkheadConfig, BulkheadLayer, UntilResponse};
use crate::circuit_breaker::{self, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
use crate::classify::DefaultClassifier;
use crate::error::ConfigError;
use crate::events::{Listener, Listeners};
use crate::fallback::{Failure, Fallback, FallbackLayer, Kinds, Recover};
use crate::timeout::{Timeout, TimeoutConfig, TimeoutLayer};

/// The serializable part of a [`Policy`]: a name and each protection, all optional.
///
/// ```
/// use std::time::Duration;
/// use palisade::policy::{Policy, PolicyConfig};
///
/// # #[cfg(feature = "serde")] {
/// let config: PolicyConfig = toml::from_str(
///     r#"
///     name = "inventory"
///
///     [timeout]
///     timeout = "250ms"
///
///     [circuit_breaker]
///     window = { count = 50 }
///     minimum_calls = 20
/// "#,
/// )
/// .unwrap();
/// assert_eq!(
///     config.timeout.as_ref().unwrap().timeout,
///     Duration::from_millis(250)
/// );
/// assert!(config.bulkhead.is_none()); // every part is optional
/// let policy = Policy::builder().config(config).build().unwrap();
/// assert_eq!(policy.name(), "inventory");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Name given to every part, for events and metrics. Default `"default"`. It replaces a
    /// `name` set in a section (`[circuit_breaker] name = ..`): one policy, one name.
    pub name: String,
    /// The timeout, if any.
    pub timeout: Option<TimeoutConfig>,
    /// The bulkhead, if any.
    pub bulkhead: Option<BulkheadConfig>,
    /// The circuit breaker, if any.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
}

/// The fields of a [`PolicyConfig`], read unchecked (see `validated_deserialize!`).
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(
    remote = "PolicyConfig",
    default = "PolicyConfig::default",
    deny_unknown_fields
)]
pub(crate) struct PolicyFields {
    name: String,
    #[serde(deserialize_with = "unchecked::section")]
    timeout: Option<TimeoutConfig>,
    #[serde(deserialize_with = "unchecked::section")]
    bulkhead: Option<BulkheadConfig>,
    #[serde(deserialize_with = "unchecked::section")]
    circuit_breaker: Option<CircuitBreakerConfig>,
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

validated_deserialize!(PolicyConfig, PolicyFields);

/// The sections of a [`PolicyConfig`] are read unchecked, by their private mirrors, so that
/// its own `validate()` checks them and names a bad field with its section
/// (`circuit_breaker.failure_rate`), as `build()` does; read alone, each section checks itself.
#[cfg(feature = "serde")]
mod unchecked {
    use serde::{Deserialize, Deserializer};

    use crate::bulkhead::BulkheadFields;
    use crate::circuit_breaker::CircuitBreakerFields;
    use crate::timeout::TimeoutFields;

    pub(super) fn section<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        Unchecked<T>: Deserialize<'de>,
    {
        Ok(Option::<Unchecked<T>>::deserialize(d)?.map(|u| u.0))
    }

    pub(super) struct Unchecked<T>(T);

    macro_rules! unchecked {
        ($($config:ty => $fields:ty),*) => {$(
            impl<'de> Deserialize<'de> for Unchecked<$config> {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    <$fields>::deserialize(d).map(Unchecked)
                }
            }
        )*};
    }
    unchecked!(
        super::TimeoutConfig => TimeoutFields,
        super::BulkheadConfig => BulkheadFields,
        super::CircuitBreakerConfig => CircuitBreakerFields
    );
}

impl PolicyConfig {
    /// Checks every part; the error names the field with its section
    /// (`circuit_breaker.failure_rate`).
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::policy::PolicyConfig;
    ///
    /// let mut breaker = CircuitBreakerConfig::default();
    /// breaker.failure_rate = 1.5;
    /// let mut config = PolicyConfig::default();
    /// config.circuit_breaker = Some(breaker);
    /// assert_eq!(
    ///     config.validate().unwrap_err().field(),
    ///     "circuit_breaker.failure_rate"
    /// );
    /// ```
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
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::policy::Policy;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// // A policy built without `.fallback(..)` lets every failure through.
/// let policy = Policy::builder().build().unwrap(); // a PolicyLayer<NoFallback, ..>
/// assert!(policy.fallback().is_none()); // no recovery: every failure goes through
/// let svc = policy.layer(service_fn(|_: ()| async {
///     Err::<(), _>(std::io::Error::other("down"))
/// }));
/// assert_eq!(svc.oneshot(()).await.unwrap_err().to_string(), "down");
/// # }
/// ```
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
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::policy::Policy;
/// use palisade::{bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig, fallback};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let policy = Policy::builder()
///     .name("recommendations")
///     .timeout(Duration::from_millis(200))
///     .bulkhead(BulkheadConfig::default())
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .fallback(fallback::value(Vec::<u32>::new()))
///     .build()
///     .unwrap();
/// let svc = policy.layer(service_fn(|user: u32| async move {
///     Ok::<_, std::io::Error>(vec![user, 7])
/// }));
/// assert_eq!(svc.oneshot(1).await.unwrap(), [1, 7]);
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Policy;

impl Policy {
    /// A builder with nothing in it yet.
    ///
    /// ```
    /// use palisade::policy::Policy;
    ///
    /// // Nothing in it: a pass-through.
    /// let policy = Policy::builder().name("inventory").build().unwrap();
    /// assert!(policy.circuit_breaker().is_none() && policy.bulkhead().is_none());
    /// ```
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            config: PolicyConfig::default(),
            fallback: None,
            kinds: Kinds::ALL,
            classifier: DefaultClassifier,
            listeners: Listeners::default(),
            adapter: Bare,
            hold: UntilResponse,
            classifier_set: false,
            classifier_replaced: false,
            response_deadline: None,
            set_by_hand: false,
            config_replaced: false,
        }
    }
}

/// What a policy puts right on the client, under its timeout, and around the whole stack:
/// nothing ([`Bare`]); for HTTP and gRPC a [`TrackLayer`](crate::http::TrackLayer) on the
/// client; for reqwest a conversion to `http` types on the client and back around the stack.
///
/// ```
/// use palisade::policy::{Adapter, Bare, PolicyConfig};
///
/// // `Bare` wraps nothing; the HTTP, gRPC and reqwest adapters are made by the builder's
/// // `.http()`, `.grpc()` and `.reqwest()`.
/// let adapter: Bare = Bare.finish(&PolicyConfig::default()).unwrap();
/// let stack = adapter.outer("the stack");
/// assert_eq!(stack, "the stack");
/// ```
pub trait Adapter: Clone {
    /// What wraps the whole stack.
    type Outer<S>;

    /// The adapter, completed from the policy's configuration.
    ///
    /// ```
    /// use palisade::policy::{Adapter, PolicyConfig};
    /// use palisade::http::reqwest::ReqwestAdapter;
    ///
    /// // The reqwest adapter checks its settings against the whole configuration.
    /// let adapter = ReqwestAdapter::default();
    /// assert!(adapter.finish(&PolicyConfig::default()).is_ok());
    /// ```
    fn finish(&self, config: &PolicyConfig) -> Result<Self, ConfigError>;

    /// Wraps the whole stack.
    ///
    /// ```
    /// use palisade::policy::{Adapter, Bare};
    ///
    /// assert_eq!(Bare.outer(42), 42); // Bare's `Outer<S>` is `S` itself
    /// ```
    fn outer<S>(&self, stack: S) -> Self::Outer<S>;

    /// The adapter, telling `listeners` of what it does itself (a whole-response deadline
    /// ending a call is an [`Event::TimedOut`](crate::events::Event::TimedOut)). The default
    /// keeps none.
    ///
    /// ```
    /// use palisade::events::Listeners;
    /// use palisade::policy::{Adapter, Bare};
    ///
    /// let adapter: Bare = Bare.with_listeners(&Listeners::new("orders"));
    /// # let _ = adapter;
    /// ```
    fn with_listeners(&self, listeners: &Listeners) -> Self {
        let _ = listeners;
        self.clone()
    }
}

/// No adapter: the policy wraps the client as it is.
///
/// ```
/// use palisade::policy::Bare;
/// use tower::Layer;
///
/// assert_eq!(Bare.layer("client"), "client");
/// ```
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
///
/// ```
/// use std::time::Duration;
/// use palisade::policy::Policy;
/// use palisade::{bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig};
///
/// let builder = Policy::builder()
///     .name("inventory")
///     .timeout(Duration::from_millis(250))
///     .bulkhead(BulkheadConfig::default())
///     .circuit_breaker(CircuitBreakerConfig::default());
/// let policy = builder.build().unwrap();
/// assert_eq!(policy.bulkhead().unwrap().name(), "inventory"); // every part named after the policy
/// ```
#[derive(Debug, Clone)]
pub struct PolicyBuilder<R = NoFallback, C = DefaultClassifier, A = Bare, H = UntilResponse> {
    config: PolicyConfig,
    fallback: Option<R>,
    kinds: Kinds,
    classifier: C,
    listeners: Listeners,
    adapter: A,
    hold: H,
    /// Whether the classifier is one set by [`classifier`](Self::classifier), and whether
    /// `.http()`, `.grpc()` or `.reqwest()` then replaced it (a [`ConfigError`] at build).
    classifier_set: bool,
    classifier_replaced: bool,
    /// The whole-response deadline set with `.response_deadline(..)`, kept here too so that
    /// `.http()`, `.grpc()` or `.reqwest()` called after it carries it to their adapter.
    response_deadline: Option<Duration>,
    /// Whether a part was set by hand (`name`, `timeout`, `bulkhead`, `circuit_breaker`), and
    /// whether [`config`](Self::config) then replaced it (a [`ConfigError`] at build).
    set_by_hand: bool,
    config_replaced: bool,
}

impl<R, C, A, H> PolicyBuilder<R, C, A, H> {
    /// Starts from a configuration (for example one deserialized from a file). It replaces the
    /// whole configuration, so it comes first: after `.name()`, `.timeout()`, `.bulkhead()` or
    /// `.circuit_breaker()`, whose settings it would lose, `build()` is a [`ConfigError`] on
    /// `config`. Set by hand after it, they change what it gave.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadConfig;
    /// use palisade::policy::{Policy, PolicyConfig};
    ///
    /// let mut config = PolicyConfig::default();
    /// config.name = "inventory".to_owned();
    /// config.bulkhead = Some(BulkheadConfig::default());
    /// let policy = Policy::builder().config(config).build().unwrap();
    /// assert_eq!(policy.bulkhead().unwrap().max_concurrent(), 25);
    /// ```
    pub fn config(mut self, config: PolicyConfig) -> Self {
        self.config = config;
        self.config_replaced |= self.set_by_hand;
        self.set_by_hand = false;
        self
    }

    /// Name for every part.
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::policy::Policy;
    ///
    /// let mut breaker = CircuitBreakerConfig::default();
    /// breaker.name = "ignored".to_owned(); // the policy's name wins
    /// let policy = Policy::builder()
    ///     .name("inventory")
    ///     .circuit_breaker(breaker)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.circuit_breaker().unwrap().name(), "inventory");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self.set_by_hand = true;
        self
    }

    /// A timeout of `timeout` per call.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::error::{error_kind, ErrorKind};
    /// use palisade::policy::Policy;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// let policy = Policy::builder()
    ///     .timeout(Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// let svc = policy.layer(service_fn(|_: ()| {
    ///     std::future::pending::<Result<(), std::io::Error>>()
    /// }));
    /// let err = svc.oneshot(()).await.unwrap_err();
    /// assert!(matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(_)));
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(TimeoutConfig {
            timeout,
            ..TimeoutConfig::default()
        });
        self.set_by_hand = true;
        self
    }

    /// A bulkhead.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadConfig;
    /// use palisade::policy::Policy;
    ///
    /// let mut bulkhead = BulkheadConfig::default();
    /// bulkhead.max_concurrent = 8;
    /// let policy = Policy::builder().bulkhead(bulkhead).build().unwrap();
    /// assert_eq!(policy.bulkhead().unwrap().available(), 8);
    /// ```
    pub fn bulkhead(mut self, config: BulkheadConfig) -> Self {
        self.config.bulkhead = Some(config);
        self.set_by_hand = true;
        self
    }

    /// A circuit breaker.
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, State};
    /// use palisade::policy::Policy;
    ///
    /// let policy = Policy::builder()
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.circuit_breaker().unwrap().state(), State::Closed);
    /// ```
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.config.circuit_breaker = Some(config);
        self.set_by_hand = true;
        self
    }

    /// A fallback, recovering the failures selected by [`fallback_kinds`](Self::fallback_kinds).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::fallback;
    /// use palisade::policy::Policy;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// let policy = Policy::builder()
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .fallback(fallback::value("unknown"))
    ///     .build()
    ///     .unwrap();
    /// let breaker = policy.circuit_breaker().unwrap();
    /// let svc = policy.layer(service_fn(|_: ()| async {
    ///     Err::<&str, _>(std::io::Error::other("down"))
    /// }));
    /// assert_eq!(svc.oneshot(()).await.unwrap(), "unknown");
    /// assert_eq!(breaker.snapshot().failures, 1); // recovered, but still counted
    ///
    /// # }
    /// ```
    pub fn fallback<R2>(self, recover: R2) -> PolicyBuilder<R2, C, A, H> {
        PolicyBuilder {
            config: self.config,
            fallback: Some(recover),
            kinds: self.kinds,
            classifier: self.classifier,
            listeners: self.listeners,
            adapter: self.adapter,
            hold: self.hold,
            classifier_set: self.classifier_set,
            classifier_replaced: self.classifier_replaced,
            response_deadline: self.response_deadline,
            set_by_hand: self.set_by_hand,
            config_replaced: self.config_replaced,
        }
    }

    /// Which failures the fallback recovers (default: all).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::fallback::{self, FailureKind, Kinds};
    /// use palisade::policy::Policy;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// // Answer for the dependency only while the breaker is open; let its own errors through.
    /// let policy = Policy::builder()
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .fallback(fallback::value("unknown"))
    ///     .fallback_kinds(Kinds::only(FailureKind::CircuitOpen))
    ///     .build()
    ///     .unwrap();
    /// let breaker = policy.circuit_breaker().unwrap();
    /// let svc = policy.layer(service_fn(|_: ()| async {
    ///     Err::<&str, _>(std::io::Error::other("down"))
    /// }));
    /// assert!(svc.clone().oneshot(()).await.is_err());
    /// breaker.force_open();
    /// assert_eq!(svc.oneshot(()).await.unwrap(), "unknown");
    /// # }
    /// ```
    pub fn fallback_kinds(mut self, kinds: Kinds) -> Self {
        self.kinds = kinds;
        self
    }

    /// The classifier for the breaker and the fallback. With [`http`](Self::http),
    /// [`grpc`](Self::grpc) or `reqwest`, set it after them: they set their own, and one set
    /// before them makes `build()` fail with a [`ConfigError`] on field `classifier` rather
    /// than be silently replaced.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::classify::{classify_error, Outcome};
    /// use palisade::fallback;
    /// use palisade::policy::Policy;
    /// use tower::{service_fn, BoxError, Layer, ServiceExt};
    ///
    /// // One classifier for the breaker and the fallback: an `Err` payload is a failure.
    /// let policy = Policy::builder()
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .fallback(fallback::value(Ok::<u32, String>(0)))
    ///     .classifier(|res: Result<&Result<u32, String>, &BoxError>| match res {
    ///         Ok(Ok(_)) => Outcome::success(),
    ///         Ok(Err(_)) => Outcome::failure(),
    ///         Err(err) => classify_error(err),
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let breaker = policy.circuit_breaker().unwrap();
    /// let svc = policy.layer(service_fn(|_: ()| async {
    ///     Ok::<_, BoxError>(Err::<u32, _>("overloaded".to_owned()))
    /// }));
    /// assert_eq!(svc.oneshot(()).await.unwrap(), Ok(0)); // the failure response was recovered
    /// assert_eq!(breaker.snapshot().failures, 1);
    /// # }
    /// ```
    pub fn classifier<C2>(self, classifier: C2) -> PolicyBuilder<R, C2, A, H> {
        PolicyBuilder {
            config: self.config,
            fallback: self.fallback,
            kinds: self.kinds,
            classifier,
            listeners: self.listeners,
            adapter: self.adapter,
            hold: self.hold,
            // A classifier set after `.http()` and the like is the one used: one replaced
            // before does not matter any more.
            classifier_set: true,
            classifier_replaced: false,
            response_deadline: self.response_deadline,
            set_by_hand: self.set_by_hand,
            config_replaced: self.config_replaced,
        }
    }

    /// For HTTP clients (`Service<http::Request<_>, Response = http::Response<_>>`: hyper,
    /// or anything speaking `http` types): classifies with
    /// [`HttpClassifier`](crate::classify::http::HttpClassifier), tracks each response body
    /// ([`TrackLayer`](crate::http::TrackLayer)) so that a body that breaks is a failure, and
    /// holds the bulkhead permit until the body ends. The responses' bodies become
    /// [`Tracked`](crate::http::Tracked).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::policy::Policy;
    /// use palisade::testkit::{Fault, FlakyServer};
    /// use tower::{Layer, ServiceExt};
    ///
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::status(503))
    ///     .start()
    ///     .await?;
    /// let policy = Policy::builder()
    ///     .http()
    ///     .timeout(Duration::from_secs(1))
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .build()?;
    /// let breaker = policy.circuit_breaker().unwrap();
    /// let client =
    ///     policy.layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    /// let response = client
    ///     .oneshot(http::Request::get(server.url()).body(Empty::new())?)
    ///     .await?;
    /// assert_eq!(response.status(), 503); // passed on to the caller...
    /// response.into_body().collect().await?;
    /// assert_eq!(breaker.snapshot().failures, 1); // ...and counted as a failure
    ///
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "http")]
    pub fn http(
        self,
    ) -> PolicyBuilder<
        R,
        crate::classify::http::HttpClassifier,
        crate::http::TrackLayer,
        crate::http::UntilBodyEnd,
    > {
        // A response deadline set before, on another adapter, goes with the new one.
        let adapter = crate::http::TrackLayer::new().response_deadline(self.response_deadline);
        self.adapt(crate::classify::http::HttpClassifier::default(), adapter)
    }

    /// For gRPC clients (a tonic `Channel`, or any `Service<http::Request<_>>` speaking gRPC):
    /// as [`http`](Self::http), classifying with
    /// [`GrpcClassifier`](crate::classify::grpc::GrpcClassifier) (the status in the head or the
    /// trailers), and sending the timeout downstream as `grpc-timeout` (the response deadline
    /// instead, when one is set: it bounds the whole call, and a stream's body may outlast the
    /// head's timeout; a response deadline of `Duration::MAX`, none, sends nothing).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::policy::Policy;
    /// use palisade::testkit::grpc::{EchoClient, EchoRequest};
    /// use palisade::testkit::{Fault, FlakyServer, GrpcStatusIn};
    /// use tower::Layer;
    ///
    /// let server = FlakyServer::start().await?;
    /// let channel = tonic::transport::Endpoint::from_shared(server.url())?
    ///     .connect()
    ///     .await?;
    /// let policy = Policy::builder()
    ///     .grpc()
    ///     .timeout(Duration::from_secs(1)) // also sent to the server as grpc-timeout
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .build()?;
    /// let breaker = policy.circuit_breaker().unwrap();
    /// let mut client = EchoClient::new(policy.layer(channel));
    ///
    /// assert_eq!(
    ///     client.say(EchoRequest::new("hi")).await?.get_ref().message,
    ///     "hi"
    /// );
    /// // UNAVAILABLE in the trailers, after a 200 head: a failure.
    /// server.set(Fault::grpc_status(
    ///     tonic::Code::Unavailable,
    ///     "busy",
    ///     GrpcStatusIn::Trailers,
    /// ));
    /// assert_eq!(
    ///     client.say(EchoRequest::new("hi")).await.unwrap_err().code(),
    ///     tonic::Code::Unavailable
    /// );
    /// let snapshot = breaker.snapshot();
    /// assert_eq!((snapshot.calls, snapshot.failures), (2, 1));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "grpc")]
    pub fn grpc(
        self,
    ) -> PolicyBuilder<
        R,
        crate::classify::grpc::GrpcClassifier,
        crate::http::TrackLayer,
        crate::http::UntilBodyEnd,
    > {
        let adapter = crate::http::TrackLayer::new()
            .propagating_grpc_timeout()
            .response_deadline(self.response_deadline);
        self.adapt(crate::classify::grpc::GrpcClassifier::default(), adapter)
    }

    /// For a `reqwest::Client`: as [`http`](Self::http), converting each response to
    /// `http::Response<Tracked<reqwest::Body>>` on the client and back to a `reqwest::Response`
    /// around the stack, so the caller keeps reqwest's types while the body is tracked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::policy::Policy;
    /// use palisade::testkit::{Fault, FlakyServer};
    /// use tower::{Layer, ServiceExt};
    ///
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::status(503))
    ///     .start()
    ///     .await?;
    /// let policy = Policy::builder()
    ///     .reqwest()
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .build()?;
    /// let breaker = policy.circuit_breaker().unwrap();
    /// let client = policy.layer(reqwest::Client::builder().no_proxy().build()?);
    /// let req = reqwest::Request::new(
    ///     reqwest::Method::GET,
    ///     format!("{}/items", server.url()).parse()?,
    /// );
    /// let res: reqwest::Response = client.oneshot(req).await?;
    /// assert_eq!(res.status(), 503);
    /// res.bytes().await?; // the 503 was counted at its head: only a success waits for the body
    /// assert_eq!(breaker.snapshot().failures, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "reqwest")]
    pub fn reqwest(
        self,
    ) -> PolicyBuilder<
        R,
        crate::classify::http::HttpClassifier,
        crate::http::reqwest::ReqwestAdapter,
        crate::http::UntilBodyEnd,
    > {
        let adapter = crate::http::reqwest::ReqwestAdapter::default()
            .response_deadline(self.response_deadline);
        self.adapt(crate::classify::http::HttpClassifier::default(), adapter)
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
            classifier_set: false,
            classifier_replaced: self.classifier_replaced || self.classifier_set,
            response_deadline: self.response_deadline,
            set_by_hand: self.set_by_hand,
            config_replaced: self.config_replaced,
        }
    }

    /// A listener told about every part's decisions; events carry the policy's name.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::events::Event;
    /// use palisade::policy::Policy;
    ///
    /// let names = Arc::new(Mutex::new(Vec::new()));
    /// let seen = names.clone();
    /// let policy = Policy::builder()
    ///     .name("inventory")
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .listener(move |event: &Event<'_>| {
    ///         seen.lock().unwrap().push(event.name().to_owned())
    ///     })
    ///     .build()
    ///     .unwrap();
    /// policy.circuit_breaker().unwrap().force_open();
    /// assert_eq!(*names.lock().unwrap(), ["inventory"]);
    /// ```
    pub fn listener(mut self, listener: impl Listener + 'static) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }

    /// Validates everything and builds the layer. The error names the field with its section.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::policy::Policy;
    ///
    /// assert!(
    ///     Policy::builder()
    ///         .timeout(Duration::from_secs(1))
    ///         .build()
    ///         .is_ok()
    /// );
    /// let err = Policy::builder()
    ///     .timeout(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "timeout.timeout"); // the field, with its section
    /// assert_eq!(
    ///     Policy::builder().name("").build().unwrap_err().field(),
    ///     "name"
    /// );
    /// ```
    pub fn build(self) -> Result<PolicyLayer<R, C, A, H>, ConfigError>
    where
        C: Clone,
        A: Adapter,
    {
        if self.config_replaced {
            return Err(ConfigError::new(
                "config",
                "must come before .name(), .timeout(), .bulkhead() and .circuit_breaker() (it \
                 replaces the whole configuration, and would lose them)",
                "a configuration given after them",
            ));
        }
        if self.classifier_replaced {
            return Err(ConfigError::new(
                "classifier",
                "must be set after .http(), .grpc() or .reqwest() (they set their own, which \
                 would replace it)",
                "a classifier set before them",
            ));
        }
        self.config.validate()?;
        let name = &self.config.name;
        let listeners = self.listeners.named(name.clone());
        let adapter = self
            .adapter
            .finish(&self.config)?
            .with_listeners(&listeners);
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, StreamBody};
    /// use palisade::error::{error_kind, ErrorKind};
    /// use palisade::policy::Policy;
    /// use tower::{Layer, ServiceExt};
    ///
    /// let policy = Policy::builder()
    ///     .http()
    ///     .timeout(Duration::from_millis(200)) // for the head
    ///     .response_deadline(Duration::from_secs(2)) // for head and body
    ///     .build()
    ///     .unwrap();
    /// let client = policy.layer(tower::service_fn(|_: http::Request<()>| async {
    ///     let trickle =
    ///         futures::stream::pending::<Result<http_body::Frame<Bytes>, std::io::Error>>();
    ///     Ok::<_, std::io::Error>(http::Response::new(StreamBody::new(trickle)))
    /// }));
    /// let response = client.oneshot(http::Request::new(())).await.unwrap();
    /// let err = response.into_body().collect().await.unwrap_err();
    /// assert!(matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(_)));
    /// assert!(
    ///     Policy::builder()
    ///         .http()
    ///         .response_deadline(Duration::ZERO)
    ///         .build()
    ///         .is_err()
    /// );
    /// # }
    /// ```
    pub fn response_deadline(mut self, deadline: Duration) -> Self {
        self.adapter = self.adapter.response_deadline(Some(deadline));
        self.response_deadline = Some(deadline);
        self
    }
}

#[cfg(feature = "reqwest")]
impl<R, C> PolicyBuilder<R, C, crate::http::reqwest::ReqwestAdapter, crate::http::UntilBodyEnd> {
    /// A deadline for the whole response, head and body: a body still streaming at the
    /// deadline ends with an error, never as a truncated success.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// use std::time::Duration;
    /// use palisade::policy::Policy;
    /// use palisade::testkit::{Fault, FlakyServer};
    /// use tower::{Layer, ServiceExt};
    ///
    /// // 1000 bytes at 100 bytes a second would take 10 s; the deadline ends it at 300 ms.
    /// let server = FlakyServer::builder()
    ///     .fault(Fault::slow_body(1000, 100))
    ///     .start()
    ///     .await?;
    /// let policy = Policy::builder()
    ///     .reqwest()
    ///     .response_deadline(Duration::from_millis(300))
    ///     .build()?;
    /// let client = policy.layer(reqwest::Client::builder().no_proxy().build()?);
    /// let req = reqwest::Request::new(reqwest::Method::GET, server.url().parse()?);
    /// let res = client.oneshot(req).await?;
    /// assert!(res.bytes().await.is_err()); // an error, never a truncated success
    /// let err = Policy::builder()
    ///     .reqwest()
    ///     .response_deadline(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "response.deadline");
    /// # Ok(())
    /// # }
    /// ```
    pub fn response_deadline(mut self, deadline: Duration) -> Self {
        self.adapter = self.adapter.response_deadline(Some(deadline));
        self.response_deadline = Some(deadline);
        self
    }
}

/// The recommended stack as one layer. Made by [`PolicyBuilder::build`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::policy::Policy;
/// use palisade::{bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let policy = Policy::builder()
///     .name("inventory")
///     .bulkhead(BulkheadConfig::default())
///     .circuit_breaker(CircuitBreakerConfig::default())
///     .build()
///     .unwrap();
/// // Services made by one policy layer share its breaker and its bulkhead.
/// let a = policy.layer(service_fn(
///     |x: u32| async move { Ok::<_, std::io::Error>(x) },
/// ));
/// let b = policy.layer(service_fn(|x: u32| async move {
///     Ok::<_, std::io::Error>(x + 1)
/// }));
/// assert_eq!(
///     (a.oneshot(1).await.unwrap(), b.oneshot(1).await.unwrap()),
///     (1, 2)
/// );
/// assert_eq!(policy.circuit_breaker().unwrap().snapshot().calls, 2);
/// # }
/// ```
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
    ///
    /// ```
    /// use palisade::policy::Policy;
    ///
    /// assert_eq!(
    ///     Policy::builder().name("inventory").build().unwrap().name(),
    ///     "inventory"
    /// );
    /// assert_eq!(Policy::builder().build().unwrap().name(), "default");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle on the circuit breaker, if there is one.
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, State};
    /// use palisade::policy::Policy;
    ///
    /// let policy = Policy::builder()
    ///     .circuit_breaker(CircuitBreakerConfig::default())
    ///     .build()
    ///     .unwrap();
    /// let breaker = policy.circuit_breaker().unwrap();
    /// breaker.force_open(); // an operator takes the dependency out of service
    /// assert_eq!(breaker.state(), State::ForcedOpen);
    /// assert!(
    ///     Policy::builder()
    ///         .build()
    ///         .unwrap()
    ///         .circuit_breaker()
    ///         .is_none()
    /// );
    /// ```
    pub fn circuit_breaker(&self) -> Option<circuit_breaker::Handle> {
        self.circuit_breaker
            .as_ref()
            .map(CircuitBreakerLayer::handle)
    }

    /// A handle on the bulkhead, if there is one.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadConfig;
    /// use palisade::policy::Policy;
    ///
    /// let policy = Policy::builder()
    ///     .bulkhead(BulkheadConfig::default())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(policy.bulkhead().unwrap().in_flight(), 0);
    /// assert!(Policy::builder().build().unwrap().bulkhead().is_none());
    /// ```
    pub fn bulkhead(&self) -> Option<bulkhead::Handle> {
        self.bulkhead.as_ref().map(BulkheadLayer::handle)
    }

    /// The fallback's recovery (for example a stale cache, to read its stats), if any.
    ///
    /// ```
    /// use palisade::fallback::StaleCache;
    /// use palisade::policy::Policy;
    ///
    /// let cache = StaleCache::<u32, String, u32>::builder(|id| Some(*id))
    ///     .build()
    ///     .unwrap();
    /// let policy = Policy::builder().fallback(cache).build().unwrap();
    /// assert_eq!(policy.fallback().unwrap().stats().entries, 0);
    /// ```
    pub fn fallback(&self) -> Option<&R> {
        self.fallback.as_ref().map(FallbackLayer::recover)
    }
}

/// `S` with an optional timeout.
///
/// ```
/// use std::time::Duration;
/// use palisade::policy::{Optional, Timed};
/// use palisade::timeout::TimeoutLayer;
/// use tower::Layer;
///
/// let client = "the client";
/// let with: Timed<&str> = Optional::On(
///     TimeoutLayer::builder()
///         .timeout(Duration::from_secs(1))
///         .build()
///         .unwrap()
///         .layer(client),
/// );
/// let without: Timed<&str> = Optional::Off(client);
/// assert!(matches!(&with, Optional::On(timeout) if timeout.timeout() == Duration::from_secs(1)));
/// assert!(matches!(without, Optional::Off("the client")));
/// ```
pub type Timed<S> = Optional<Timeout<S>, S>;
/// `S` with an optional timeout and bulkhead.
///
/// ```
/// use palisade::bulkhead::BulkheadLayer;
/// use palisade::policy::{Limited, Optional};
/// use tower::Layer;
///
/// // A bulkhead over a client without a timeout.
/// let bulkhead = BulkheadLayer::builder().build().unwrap();
/// let limited: Limited<&str> = Optional::On(bulkhead.layer(Optional::Off("the client")));
/// assert!(matches!(limited, Optional::On(ref b) if b.handle().max_concurrent() == 25));
/// ```
pub type Limited<S, H = UntilResponse> = Optional<Bulkhead<Timed<S>, H>, Timed<S>>;
/// `S` with an optional timeout, bulkhead and circuit breaker.
///
/// ```
/// use palisade::classify::DefaultClassifier;
/// use palisade::policy::{Guarded, Optional};
///
/// // Neither breaker, bulkhead nor timeout: the client itself, three times `Off`.
/// let bare: Guarded<&str, DefaultClassifier> =
///     Optional::Off(Optional::Off(Optional::Off("the client")));
/// assert!(matches!(bare, Optional::Off(Optional::Off(Optional::Off("the client")))));
/// ```
pub type Guarded<S, C, H = UntilResponse> =
    Optional<CircuitBreaker<Limited<S, H>, C>, Limited<S, H>>;
/// The service a [`PolicyLayer`] makes; `S` is the client under the adapter.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::policy::{Policy, PolicyService};
/// use tower::{service_fn, util::ServiceFn, Layer, ServiceExt};
///
/// // The service type can be named, to keep it in a struct.
/// type Echo = ServiceFn<fn(u32) -> std::future::Ready<Result<u32, std::io::Error>>>;
/// struct Client {
///     inner: PolicyService<Echo>,
/// }
/// let echo: Echo = service_fn(|x| std::future::ready(Ok(x)));
/// let client = Client {
///     inner: Policy::builder().build().unwrap().layer(echo),
/// };
/// assert_eq!(client.inner.oneshot(7).await.unwrap(), 7);
/// # }
/// ```
pub type PolicyService<S, R = NoFallback, C = DefaultClassifier, H = UntilResponse> =
    Optional<Fallback<Guarded<S, C, H>, R, C>, Guarded<S, C, H>>;

/// A part of the stack that is there (`On`, wrapping the rest) or not (`Off`), as configured
/// at run time.
///
/// Both arms answer with the `On` layer's response future: a part left out hands the rest's
/// future to it to pass through untouched ([`Bypass`]), so a call through a part that is there
/// goes through one layer's future, not a layer's inside an either-or one. `Optional` takes
/// palisade's layers (those with boxed errors) as `On`; for two services of your own, one or the
/// other, use tower's `util::Either` (both arms with one error type: `map_err` them to
/// [`BoxError`] first).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::policy::Optional;
/// use palisade::timeout::TimeoutLayer;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let client = service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
/// // Both arms have one type, so a part can be there or not, as configured at run time.
/// let part = move |timeout: Option<Duration>| match timeout {
///     Some(after) => Optional::On(
///         TimeoutLayer::builder().timeout(after).build().unwrap().layer(client),
///     ),
///     None => Optional::Off(client),
/// };
/// assert_eq!(part(Some(Duration::from_secs(1))).oneshot(21).await.unwrap(), 21);
/// assert_eq!(part(None).oneshot(21).await.unwrap(), 21);
/// # }
/// ```
#[derive(Debug, Clone)]
pub enum Optional<On, Off> {
    /// The part is configured.
    On(On),
    /// The part is left out.
    Off(Off),
}

impl<On, Off, Req> Service<Req> for Optional<On, Off>
where
    On: Service<Req, Error = BoxError>,
    On::Future: Bypass<Off::Future>,
    Off: Service<Req, Response = On::Response>,
    Off::Error: Into<BoxError>,
{
    type Response = On::Response;
    type Error = BoxError;
    type Future = On::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Optional::On(s) => s.poll_ready(cx),
            Optional::Off(s) => s.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Optional::On(s) => s.call(req),
            Optional::Off(s) => <On::Future as sealed::Bypass<Off::Future>>::bypass(s.call(req)),
        }
    }
}

/// A palisade layer's response future that can also carry, untouched, the response future of
/// the service it wraps: what an [`Optional`] part left out answers with. Its errors are boxed
/// on the way through, and nothing else happens to the call: no timer, no permit, no
/// admission, no fallback, no event.
///
/// Implemented by the response futures of [`Timeout`](crate::timeout::ResponseFuture),
/// [`Bulkhead`](crate::bulkhead::ResponseFuture) (with a `Hold` that has a default),
/// [`CircuitBreaker`](crate::circuit_breaker::ResponseFuture) (with boxed errors) and
/// [`Fallback`](crate::fallback::ResponseFuture); sealed: it cannot be implemented outside
/// palisade.
///
/// ```
/// use palisade::policy::Bypass;
///
/// fn passes_through<F, B: Bypass<F>>() {}
/// type Inner = std::future::Ready<Result<u32, std::io::Error>>;
/// passes_through::<Inner, palisade::timeout::ResponseFuture<Inner>>();
/// ```
pub trait Bypass<F>: sealed::Bypass<F> {}

impl<F, T: sealed::Bypass<F>> Bypass<F> for T {}

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

pub(crate) mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}

    /// [`Bypass`](super::Bypass)'s method, in a trait that cannot be implemented outside
    /// palisade.
    pub trait Bypass<F> {
        /// This future, passing `fut` through.
        fn bypass(fut: F) -> Self;
    }
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    /// use palisade::policy::ServiceBuilderExt;
    /// use tower::{service_fn, ServiceBuilder, ServiceExt};
    ///
    /// let layer = CircuitBreakerLayer::builder().build().unwrap();
    /// let breaker = layer.handle();
    /// let svc = ServiceBuilder::new()
    ///     .circuit_breaker(layer)
    ///     .service(service_fn(
    ///         |x: u32| async move { Ok::<_, std::io::Error>(x) },
    ///     ));
    /// assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    /// assert_eq!(breaker.snapshot().calls, 1);
    ///
    /// // A breaker with typed errors stacks the same way.
    /// let typed = CircuitBreakerLayer::builder().build().unwrap().typed_errors();
    /// typed.handle().force_open();
    /// let svc = ServiceBuilder::new()
    ///     .circuit_breaker(typed)
    ///     .service(service_fn(
    ///         |x: u32| async move { Ok::<_, std::io::Error>(x) },
    ///     ));
    /// let err = svc.oneshot(1).await.unwrap_err();
    /// assert!(matches!(err, palisade::error::BreakerError::Open(_)));
    /// # }
    /// ```
    fn circuit_breaker<C, M>(
        self,
        layer: CircuitBreakerLayer<C, M>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C, M>, L>>;
    /// Adds a bulkhead.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::bulkhead::BulkheadLayer;
    /// use palisade::policy::ServiceBuilderExt;
    /// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
    ///
    /// let layer = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .bulkhead(layer)
    ///     .service(service_fn(|_: ()| {
    ///         std::future::pending::<Result<(), std::io::Error>>()
    ///     }));
    /// let _first = svc.ready().await.unwrap().call(());
    /// assert!(svc.ready().await.unwrap().call(()).await.is_err()); // full
    ///
    /// # }
    /// ```
    fn bulkhead<H>(self, layer: BulkheadLayer<H>) -> ServiceBuilder<Stack<BulkheadLayer<H>, L>>;
    /// Adds a timeout. With tower's own `timeout` feature on, `ServiceBuilder` has an inherent
    /// `timeout(Duration)` that takes precedence (passing a `TimeoutLayer` to it does not
    /// compile): use [`call_timeout`](Self::call_timeout) then.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::policy::ServiceBuilderExt;
    /// use palisade::timeout::TimeoutLayer;
    /// use tower::{service_fn, ServiceBuilder, ServiceExt};
    ///
    /// let layer = TimeoutLayer::builder()
    ///     .timeout(Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// // With tower's `timeout` feature on (as here), name the trait to reach this method.
    /// let svc = ServiceBuilderExt::timeout(ServiceBuilder::new(), layer).service(service_fn(
    ///     |_: ()| std::future::pending::<Result<(), std::io::Error>>(),
    /// ));
    /// assert!(svc.oneshot(()).await.is_err());
    /// # }
    /// ```
    fn timeout<F>(self, layer: TimeoutLayer<F>) -> ServiceBuilder<Stack<TimeoutLayer<F>, L>>;
    /// Adds a timeout; the same as [`timeout`](Self::timeout), under a name that tower's
    /// `ServiceBuilder::timeout` cannot shadow.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::policy::ServiceBuilderExt;
    /// use palisade::timeout::TimeoutLayer;
    /// use tower::{service_fn, ServiceBuilder, ServiceExt};
    ///
    /// let svc = ServiceBuilder::new()
    ///     .call_timeout(
    ///         TimeoutLayer::builder()
    ///             .timeout(Duration::from_millis(100))
    ///             .build()
    ///             .unwrap(),
    ///     )
    ///     .service(service_fn(|_: ()| {
    ///         std::future::pending::<Result<(), std::io::Error>>()
    ///     }));
    /// assert!(svc.oneshot(()).await.is_err());
    /// # }
    /// ```
    fn call_timeout<F>(self, layer: TimeoutLayer<F>) -> ServiceBuilder<Stack<TimeoutLayer<F>, L>>;
    /// Adds a fallback.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::fallback::{self, FallbackLayer};
    /// use palisade::policy::ServiceBuilderExt;
    /// use tower::{service_fn, ServiceBuilder, ServiceExt};
    ///
    /// let svc = ServiceBuilder::new()
    ///     .fallback(FallbackLayer::new(fallback::value(0)))
    ///     .service(service_fn(|_: ()| async {
    ///         Err::<i32, _>(std::io::Error::other("down"))
    ///     }));
    /// assert_eq!(svc.oneshot(()).await.unwrap(), 0);
    /// # }
    /// ```
    fn fallback<R, C>(
        self,
        layer: FallbackLayer<R, C>,
    ) -> ServiceBuilder<Stack<FallbackLayer<R, C>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn circuit_breaker<C, M>(
        self,
        layer: CircuitBreakerLayer<C, M>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C, M>, L>> {
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
