use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use crate::classify::DefaultClassifier;
use crate::error::{BoxedErrors, ConfigError, TypedErrors};
use crate::events::Listeners;
use crate::sync::SharedRefs;

use super::config::{Backoff, CircuitBreakerConfig, SlidingWindow};
use super::handle::{Breaker, Handle};
use super::service::CircuitBreaker;

/// Wraps services in a [`CircuitBreaker`]; every service it makes (and their clones) shares the
/// one breaker the layer was built with.
///
/// Build a separate layer for each dependency that should have its own breaker (per host,
/// per method). A layer takes about 1.5 KiB beside its window (a reference to the breaker per
/// thread stripe, so that clones called on different threads do not share one reference
/// count).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// // One breaker per dependency; services made by one layer share it.
/// let inventory = CircuitBreakerLayer::builder()
///     .name("inventory")
///     .build()
///     .unwrap();
/// let pricing = CircuitBreakerLayer::builder()
///     .name("pricing")
///     .build()
///     .unwrap();
/// let echo = || service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
/// let (mut a, mut b) = (inventory.layer(echo()), inventory.layer(echo()));
/// let mut c = pricing.layer(echo());
///
/// inventory.handle().force_open();
/// assert!(a.ready().await.unwrap().call(1).await.is_err());
/// assert!(b.ready().await.unwrap().call(1).await.is_err()); // same breaker
/// assert_eq!(c.ready().await.unwrap().call(1).await.unwrap(), 1); // another breaker
/// assert_eq!(pricing.handle().state(), State::Closed);
/// # }
/// ```
#[derive(Debug)]
pub struct CircuitBreakerLayer<C = DefaultClassifier, M = BoxedErrors> {
    breaker: Arc<SharedRefs<Breaker>>,
    classifier: C,
    errors: PhantomData<fn() -> M>,
}

impl<C: Clone, M> Clone for CircuitBreakerLayer<C, M> {
    fn clone(&self) -> Self {
        Self {
            breaker: Arc::clone(&self.breaker),
            classifier: self.classifier.clone(),
            errors: PhantomData,
        }
    }
}

impl CircuitBreakerLayer {
    /// A builder starting from the defaults of [`CircuitBreakerConfig`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow};
    ///
    /// let layer = CircuitBreakerLayer::builder()
    ///     .name("inventory")
    ///     .window(SlidingWindow::Count(50))
    ///     .minimum_calls(20)
    ///     .open_duration(Duration::from_secs(10))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.handle().name(), "inventory");
    /// ```
    pub fn builder() -> Builder {
        Builder {
            config: CircuitBreakerConfig::default(),
            listeners: Listeners::default(),
        }
    }

    /// A layer from a configuration, validated.
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.name = "inventory".to_owned();
    /// let layer = CircuitBreakerLayer::new(&config).unwrap();
    /// assert_eq!(layer.handle().name(), "inventory");
    ///
    /// config.minimum_calls = 0;
    /// assert_eq!(
    ///     CircuitBreakerLayer::new(&config).unwrap_err().field(),
    ///     "minimum_calls"
    /// );
    /// ```
    pub fn new(config: &CircuitBreakerConfig) -> Result<Self, ConfigError> {
        Self::with_listeners(config, Listeners::default())
    }

    fn with_listeners(
        config: &CircuitBreakerConfig,
        listeners: Listeners,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            breaker: SharedRefs::new(Breaker::new(config, listeners)?),
            classifier: DefaultClassifier,
            errors: PhantomData,
        })
    }
}

impl<C, M> CircuitBreakerLayer<C, M> {
    /// The same breaker with another classifier (see [`crate::classify`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    /// use palisade::classify::Outcome;
    /// use tower::{service_fn, BoxError, Layer, ServiceExt};
    ///
    /// // Responses are HTTP-like status codes; 5xx counts against the dependency.
    /// let layer = CircuitBreakerLayer::builder()
    ///     .build()
    ///     .unwrap()
    ///     .with_classifier(|res: Result<&u16, &BoxError>| match res {
    ///         Ok(status) if *status < 500 => Outcome::success(),
    ///         _ => Outcome::failure(),
    ///     });
    /// let breaker = layer.handle();
    /// let svc = layer.layer(service_fn(|_: ()| async { Ok::<u16, BoxError>(503) }));
    /// assert_eq!(svc.oneshot(()).await.unwrap(), 503);
    /// assert_eq!(breaker.snapshot().failures, 1);
    /// # }
    /// ```
    pub fn with_classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2, M> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
            errors: PhantomData,
        }
    }

    /// The same breaker, whose services fail with a [`BreakerError`] instead of a
    /// [`tower::BoxError`]: a rejection is then [`BreakerError::Open`], a value, where the default
    /// boxes a [`CircuitOpen`](crate::error::CircuitOpen) (one allocation per rejection). For
    /// a service that sheds many calls while its dependency is down, or code that would
    /// rather `match` than downcast. Inner errors stay boxed, in [`BreakerError::Inner`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    /// use palisade::error::BreakerError;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// let layer = CircuitBreakerLayer::builder().build().unwrap().typed_errors();
    /// layer.handle().force_open();
    /// let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
    /// let err: BreakerError = svc.oneshot(1).await.unwrap_err();
    /// assert!(matches!(err, BreakerError::Open(_)));
    /// # }
    /// ```
    ///
    /// [`BreakerError`]: crate::error::BreakerError
    /// [`BreakerError::Open`]: crate::error::BreakerError::Open
    /// [`BreakerError::Inner`]: crate::error::BreakerError::Inner
    pub fn typed_errors(self) -> CircuitBreakerLayer<C, TypedErrors> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier: self.classifier,
            errors: PhantomData,
        }
    }

    /// A handle on the breaker: read its state, force it open, reset it, guard plain futures.
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
    ///
    /// let layer = CircuitBreakerLayer::builder().build().unwrap();
    /// let handle = layer.handle();
    /// handle.force_open(); // for every service the layer made or will make
    /// assert_eq!(layer.handle().state(), State::ForcedOpen);
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::new(Arc::clone(self.breaker.shared()))
    }
}

impl<S, C: Clone, M> Layer<S> for CircuitBreakerLayer<C, M> {
    type Service = CircuitBreaker<S, C, M>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}

/// Builds a [`CircuitBreakerLayer`]; every setting is checked by [`build`](Builder::build).
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow};
///
/// let builder = CircuitBreakerLayer::builder()
///     .window(SlidingWindow::Time(Duration::from_secs(30)))
///     .minimum_calls(20)
///     .failure_rate(0.25);
/// assert_eq!(builder.config().failure_rate, 0.25);
/// assert!(builder.build().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    config: CircuitBreakerConfig,
    listeners: Listeners,
}

macro_rules! setters {
    ($( $(#[$m:meta])* $name:ident: $ty:ty => $field:ident $(($wrap:path))?; )*) => {
        $(
            $(#[$m])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$field = $($wrap)?(value);
                self
            }
        )*
    };
}

impl Builder {
    setters! {
        /// Name used in events and metrics.
        ///
        /// ```
        /// use palisade::circuit_breaker::CircuitBreakerLayer;
        ///
        /// let layer = CircuitBreakerLayer::builder().name("inventory").build().unwrap();
        /// assert_eq!(layer.handle().name(), "inventory");
        /// ```
        name: impl Into<String> => name (Into::into);
        /// The sliding window (default: the last 100 calls).
        ///
        /// ```
        /// use std::time::Duration;
        /// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow};
        ///
        /// let window = SlidingWindow::Time(Duration::from_secs(60));
        /// let builder = CircuitBreakerLayer::builder().window(window);
        /// assert_eq!(builder.config().window, SlidingWindow::Time(Duration::from_secs(60)));
        /// ```
        window: SlidingWindow => window;
        /// Outcomes needed in the window before a rate can trip (default 100).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() {
        /// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, State};
        ///
        /// let breaker = CircuitBreakerLayer::builder()
        ///     .window(SlidingWindow::Count(10))
        ///     .minimum_calls(3)
        ///     .build()
        ///     .unwrap()
        ///     .handle();
        /// let fail = || breaker.call(async { Err::<(), _>(std::io::Error::other("down")) });
        /// let _ = fail().await;
        /// let _ = fail().await;
        /// assert_eq!(breaker.state(), State::Closed); // 100 % failures, but only 2 calls
        /// let _ = fail().await;
        /// assert_eq!(breaker.state(), State::Open);
        /// # }
        /// ```
        minimum_calls: u32 => minimum_calls;
        /// Failure rate that trips the breaker, a fraction in (0, 1] (default 0.5).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() {
        /// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, State};
        ///
        /// let breaker = CircuitBreakerLayer::builder()
        ///     .window(SlidingWindow::Count(4))
        ///     .minimum_calls(4)
        ///     .failure_rate(0.75)
        ///     .build()
        ///     .unwrap()
        ///     .handle();
        /// let _ = breaker.call(async { Ok::<_, std::io::Error>(()) }).await;
        /// for _ in 0..2 {
        ///     let _ = breaker.call(async { Err::<(), _>(std::io::Error::other("down")) }).await;
        /// }
        /// let _ = breaker.call(async { Ok::<_, std::io::Error>(()) }).await;
        /// assert_eq!(breaker.state(), State::Closed); // 50 % < 75 %
        /// let _ = breaker.call(async { Err::<(), _>(std::io::Error::other("down")) }).await;
        /// assert_eq!(breaker.state(), State::Open); // 3 of the last 4: 75 %
        /// # }
        /// ```
        failure_rate: f64 => failure_rate;
        /// Calls at least this long are slow (default: no slow-call rule).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// use std::time::Duration;
        /// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, State};
        ///
        /// let breaker = CircuitBreakerLayer::builder()
        ///     .window(SlidingWindow::Count(4))
        ///     .minimum_calls(2)
        ///     .slow_call_duration(Duration::from_millis(500))
        ///     .slow_call_rate(1.0)
        ///     .build()
        ///     .unwrap()
        ///     .handle();
        /// for _ in 0..2 {
        ///     // Succeeds, but takes a second: slow.
        ///     let slow = async {
        ///         tokio::time::sleep(Duration::from_secs(1)).await;
        ///         Ok::<_, std::io::Error>(())
        ///     };
        ///     assert!(breaker.call(slow).await.is_ok());
        /// }
        /// assert_eq!(breaker.state(), State::Open);
        /// # }
        /// ```
        slow_call_duration: Duration => slow_call_duration (Some);
        /// Slow-call rate that trips the breaker, a fraction in (0, 1] (default 1.0).
        ///
        /// ```
        /// use std::time::Duration;
        /// use palisade::circuit_breaker::CircuitBreakerLayer;
        ///
        /// let builder = CircuitBreakerLayer::builder()
        ///     .slow_call_duration(Duration::from_secs(2))
        ///     .slow_call_rate(0.8); // open when 80 % of the window took 2 s or more
        /// assert!(builder.build().is_ok());
        /// assert!(CircuitBreakerLayer::builder().slow_call_rate(0.0).build().is_err());
        /// ```
        slow_call_rate: f64 => slow_call_rate;
        /// Trip after this many failures in a row (default: off).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() {
        /// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
        ///
        /// let layer = CircuitBreakerLayer::builder().consecutive_failures(3).build().unwrap();
        /// let breaker = layer.handle();
        /// let fail = || breaker.call(async { Err::<(), _>(std::io::Error::other("down")) });
        /// let _ = fail().await;
        /// let _ = fail().await;
        /// let _ = breaker.call(async { Ok::<_, std::io::Error>(()) }).await; // the run is broken
        /// let _ = fail().await;
        /// let _ = fail().await;
        /// assert_eq!(breaker.state(), State::Closed);
        /// let _ = fail().await;
        /// assert_eq!(breaker.state(), State::Open); // three in a row
        /// # }
        /// ```
        consecutive_failures: u32 => consecutive_failures (Some);
        /// How long the breaker stays open before probing (default 60 s).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// use std::time::Duration;
        /// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
        ///
        /// let breaker = CircuitBreakerLayer::builder()
        ///     .consecutive_failures(1)
        ///     .open_duration(Duration::from_secs(5))
        ///     .permitted_probes(1)
        ///     .build()
        ///     .unwrap()
        ///     .handle();
        /// let _ = breaker.call(async { Err::<(), _>(std::io::Error::other("down")) }).await;
        /// assert_eq!(breaker.snapshot().retry_after, Some(Duration::from_secs(5)));
        /// tokio::time::advance(Duration::from_secs(5)).await;
        /// // The next call is admitted as a probe; it succeeds, and the breaker closes.
        /// assert!(breaker.call(async { Ok::<_, std::io::Error>(()) }).await.is_ok());
        /// assert_eq!(breaker.state(), State::Closed);
        /// # }
        /// ```
        open_duration: Duration => open_duration;
        /// Grow the open duration per consecutive trip (default: fixed).
        ///
        /// ```
        /// use std::time::Duration;
        /// use palisade::circuit_breaker::{Backoff, CircuitBreakerLayer};
        ///
        /// let builder = CircuitBreakerLayer::builder()
        ///     .open_duration(Duration::from_secs(10))
        ///     .backoff(Backoff::default()); // x2 per trip, up to 5 minutes, ±20 %
        /// assert!(builder.build().is_ok());
        /// // The cap must not be below the open duration.
        /// let too_short = Backoff { max: Duration::from_secs(5), ..Backoff::default() };
        /// let bad = builder.backoff(too_short);
        /// assert_eq!(bad.build().unwrap_err().field(), "backoff.max");
        /// ```
        backoff: Backoff => backoff (Some);
        /// Cap on pushback from the dependency (default 5 min; zero ignores pushback).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// use std::time::Duration;
        /// use palisade::circuit_breaker::CircuitBreakerLayer;
        /// use palisade::classify::Outcome;
        ///
        /// let breaker = CircuitBreakerLayer::builder()
        ///     .consecutive_failures(1)
        ///     .open_duration(Duration::from_secs(5))
        ///     .max_pushback(Duration::from_secs(60))
        ///     .build()
        ///     .unwrap()
        ///     .handle();
        /// // The dependency asks for an hour off (say, `Retry-After: 3600` on a 503): it gets the
        /// // cap.
        /// let hour = Duration::from_secs(3600);
        /// let overloaded = |_: Result<&(), &std::io::Error>| {
        ///     Outcome::failure().with_pushback(hour)
        /// };
        /// let _ = breaker.call_classified(async { Ok(()) }, overloaded).await;
        /// assert_eq!(breaker.snapshot().retry_after, Some(Duration::from_secs(60)));
        /// # }
        /// ```
        max_pushback: Duration => max_pushback;
        /// Probes admitted while half-open (default 10).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// use std::time::Duration;
        /// use palisade::circuit_breaker::{CallError, CircuitBreakerLayer};
        ///
        /// let breaker = CircuitBreakerLayer::builder()
        ///     .consecutive_failures(1)
        ///     .open_duration(Duration::from_secs(1))
        ///     .permitted_probes(1)
        ///     .build()
        ///     .unwrap()
        ///     .handle();
        /// let _ = breaker.call(async { Err::<(), _>(std::io::Error::other("down")) }).await;
        /// tokio::time::advance(Duration::from_secs(1)).await;
        ///
        /// // One probe in flight takes the only slot; another call is rejected at once.
        /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        /// let probe = breaker.call(async { rx.await.map_err(std::io::Error::other) });
        /// let other = breaker.call(async { Ok::<_, std::io::Error>(()) });
        /// let (probe, other) = tokio::join!(probe, async {
        ///     let other = other.await;
        ///     tx.send(()).unwrap(); // the probe ends after the other call was turned away
        ///     other
        /// });
        /// assert!(probe.is_ok());
        /// assert!(matches!(other, Err(CallError::Open(_))));
        /// # }
        /// ```
        permitted_probes: u32 => permitted_probes;
        /// Share of probes that must succeed to close (default 0.5).
        ///
        /// ```
        /// use palisade::circuit_breaker::CircuitBreakerLayer;
        ///
        /// // Close only when all 5 probes succeed.
        /// let builder = CircuitBreakerLayer::builder()
        ///     .permitted_probes(5)
        ///     .probe_success_rate(1.0);
        /// assert!(builder.build().is_ok());
        /// assert!(CircuitBreakerLayer::builder().probe_success_rate(1.5).build().is_err());
        /// ```
        probe_success_rate: f64 => probe_success_rate;
        /// Longest a half-open trial may spend with probes in flight before the breaker
        /// reopens; time with none in flight does not count (default 60 s).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// use std::time::Duration;
        /// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
        ///
        /// let breaker = CircuitBreakerLayer::builder()
        ///     .consecutive_failures(1)
        ///     .open_duration(Duration::from_secs(1))
        ///     .max_half_open_wait(Duration::from_secs(10))
        ///     .build()
        ///     .unwrap()
        ///     .handle();
        /// let _ = breaker.call(async { Err::<(), _>(std::io::Error::other("down")) }).await;
        /// tokio::time::advance(Duration::from_secs(1)).await;
        ///
        /// // A probe that hangs, given up on after 11 s: it took longer than 10 s, and the
        /// // breaker reopens.
        /// let hanging = breaker.call(std::future::pending::<Result<(), std::io::Error>>());
        /// let _ = tokio::time::timeout(Duration::from_secs(11), hanging).await;
        /// assert_eq!(breaker.state(), State::Open);
        /// # }
        /// ```
        max_half_open_wait: Duration => max_half_open_wait;
    }

    /// Starts from an existing configuration (for example one deserialized from a file).
    ///
    /// ```
    /// use palisade::circuit_breaker::{Builder, CircuitBreakerConfig};
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.minimum_calls = 20;
    /// let builder = Builder::from_config(config).name("inventory");
    /// assert_eq!(builder.config().minimum_calls, 20);
    /// assert_eq!(builder.build().unwrap().handle().name(), "inventory");
    /// ```
    pub fn from_config(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            listeners: Listeners::default(),
        }
    }

    /// Listeners told about every transition and rejection (events carry the breaker's name).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
    /// use palisade::events::{Event, Listeners};
    ///
    /// let states = Arc::new(Mutex::new(Vec::new()));
    /// let seen = states.clone();
    /// let listeners = Listeners::default().with(move |event: &Event<'_>| {
    ///     if let Event::StateTransition { name, transition } = event {
    ///         seen.lock().unwrap().push((name.to_string(), transition.to));
    ///     }
    /// });
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .name("inventory")
    ///     .listeners(listeners)
    ///     .build()
    ///     .unwrap()
    ///     .handle();
    /// breaker.force_open();
    /// assert_eq!(
    ///     *states.lock().unwrap(),
    ///     [("inventory".to_owned(), State::ForcedOpen)]
    /// );
    /// ```
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The configuration as it stands.
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow};
    ///
    /// let builder = CircuitBreakerLayer::builder();
    /// assert_eq!(builder.config().window, SlidingWindow::Count(100)); // the defaults
    /// assert_eq!(builder.config().minimum_calls, 100);
    /// ```
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// Validates the configuration and builds the layer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    ///
    /// assert!(CircuitBreakerLayer::builder().build().is_ok());
    /// let err = CircuitBreakerLayer::builder()
    ///     .open_duration(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "open_duration");
    /// ```
    pub fn build(&self) -> Result<CircuitBreakerLayer, ConfigError> {
        CircuitBreakerLayer::with_listeners(&self.config, self.listeners.clone())
    }
}
