use std::fmt;
use std::time::Duration;

use tower::Layer;

use crate::error::ConfigError;
use crate::events::Listeners;

use super::service::{NoPerRequest, Timeout};

/// Every setting of a timeout. Build one with [`TimeoutLayer::builder`] (or deserialize it,
/// feature `serde`, durations written as `"250ms"` or `"2s"`) and check it with
/// [`validate`](Self::validate).
///
/// The per-request timeout is a function, so it is not part of the configuration; give it to
/// [`Builder::per_request`].
///
/// ```
/// use std::time::Duration;
/// use palisade::timeout::{TimeoutConfig, TimeoutLayer};
///
/// let mut config = TimeoutConfig::default();
/// assert_eq!(config.timeout, Duration::from_secs(30));
/// config.timeout = Duration::from_millis(250);
/// let layer = TimeoutLayer::new(&config).unwrap();
/// assert_eq!(layer.timeout(), Duration::from_millis(250));
///
/// # #[cfg(feature = "serde")] {
/// let from_json: TimeoutConfig =
///     serde_json::from_str(r#"{ "timeout": "250ms" }"#).unwrap();
/// assert_eq!(from_json, config);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// How long a call may take, counted from `call` (`> 0`; `Duration::MAX` means no
    /// timeout). Default 30 s, as Polly's.
    pub timeout: Duration,
}

/// The fields of a [`TimeoutConfig`], read unchecked (see `validated_deserialize!`).
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(
    remote = "TimeoutConfig",
    default = "TimeoutConfig::default",
    deny_unknown_fields
)]
pub(crate) struct TimeoutFields {
    #[serde(with = "humantime_serde")]
    timeout: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
        }
    }
}

validated_deserialize!(TimeoutConfig, TimeoutFields);

impl TimeoutConfig {
    /// Checks every field; the error names the first one that is wrong.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::timeout::TimeoutConfig;
    ///
    /// let mut config = TimeoutConfig::default();
    /// config.timeout = Duration::MAX; // no timeout: valid
    /// assert!(config.validate().is_ok());
    /// config.timeout = Duration::ZERO;
    /// assert_eq!(config.validate().unwrap_err().field(), "timeout");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "timeout",
                "must be > 0 (use Duration::MAX for no timeout)",
                self.timeout,
            ));
        }
        Ok(())
    }
}

/// Wraps services in a [`Timeout`]. Cheap to clone; the services it makes share nothing.
///
/// `F` is the per-request timeout ([`RequestTimeout`](super::RequestTimeout)); the default,
/// [`NoPerRequest`], gives every request the layer's timeout at no cost.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::timeout::TimeoutLayer;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let layer = TimeoutLayer::builder()
///     .timeout(Duration::from_millis(100))
///     .build()
///     .unwrap();
/// let quick = layer.layer(service_fn(|_: ()| async {
///     Ok::<_, std::io::Error>("fast")
/// }));
/// let hangs = layer.layer(service_fn(|_: ()| {
///     std::future::pending::<Result<&str, std::io::Error>>()
/// }));
/// assert_eq!(quick.oneshot(()).await.unwrap(), "fast");
/// assert!(hangs.oneshot(()).await.is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct TimeoutLayer<F = NoPerRequest> {
    timeout: Duration,
    per_request: F,
    listeners: Listeners,
}

impl<F> fmt::Debug for TimeoutLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("timeout", &self.timeout)
            .field("per_request", &std::any::type_name::<F>())
            .finish()
    }
}

impl TimeoutLayer {
    /// A builder starting from the defaults of [`TimeoutConfig`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::timeout::TimeoutLayer;
    ///
    /// let layer = TimeoutLayer::builder()
    ///     .timeout(Duration::from_secs(2))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.timeout(), Duration::from_secs(2));
    /// ```
    pub fn builder() -> Builder {
        Builder {
            config: TimeoutConfig::default(),
            per_request: NoPerRequest,
            listeners: Listeners::default(),
        }
    }

    /// A layer from a configuration, validated.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::timeout::{TimeoutConfig, TimeoutLayer};
    ///
    /// let layer = TimeoutLayer::new(&TimeoutConfig::default()).unwrap();
    /// assert_eq!(layer.timeout(), Duration::from_secs(30));
    /// ```
    pub fn new(config: &TimeoutConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            timeout: config.timeout,
            per_request: NoPerRequest,
            listeners: Listeners::default(),
        })
    }
}

impl<F> TimeoutLayer<F> {
    /// The same layer with another per-request timeout (see
    /// [`RequestTimeout`](super::RequestTimeout)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::timeout::{TimeoutConfig, TimeoutLayer};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// // Requests carry an optional budget of their own.
    /// let layer = TimeoutLayer::new(&TimeoutConfig::default())
    ///     .unwrap()
    ///     .with_per_request(|budget: &Option<Duration>| *budget);
    /// let svc = layer.layer(service_fn(|_: Option<Duration>| async {
    ///     tokio::time::sleep(Duration::from_secs(1)).await;
    ///     Ok::<_, std::io::Error>(())
    /// }));
    /// assert!(svc.clone().oneshot(None).await.is_ok()); // the default, 30 s
    /// assert!(svc.oneshot(Some(Duration::from_millis(10))).await.is_err());
    /// # }
    /// ```
    pub fn with_per_request<F2>(self, per_request: F2) -> TimeoutLayer<F2> {
        TimeoutLayer {
            timeout: self.timeout,
            per_request,
            listeners: self.listeners,
        }
    }

    /// The same layer, telling `listeners` about every timeout.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use palisade::events::{Event, Listeners};
    /// use palisade::timeout::{TimeoutConfig, TimeoutLayer};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// let fired = Arc::new(Mutex::new(Vec::new()));
    /// let seen = fired.clone();
    /// let listeners = Listeners::new("inventory").with(move |event: &Event<'_>| {
    ///     if let Event::TimedOut { after, .. } = event {
    ///         seen.lock().unwrap().push(*after);
    ///     }
    /// });
    /// let mut config = TimeoutConfig::default();
    /// config.timeout = Duration::from_millis(100);
    /// let layer = TimeoutLayer::new(&config)
    ///     .unwrap()
    ///     .with_listeners(listeners);
    /// let svc = layer.layer(service_fn(|_: ()| {
    ///     std::future::pending::<Result<(), std::io::Error>>()
    /// }));
    /// assert!(svc.oneshot(()).await.is_err());
    /// assert_eq!(*fired.lock().unwrap(), [Duration::from_millis(100)]);
    /// # }
    /// ```
    #[must_use]
    pub fn with_listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The timeout used when no per-request one applies (`Duration::MAX` means none).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::timeout::TimeoutLayer;
    ///
    /// let layer = TimeoutLayer::builder()
    ///     .timeout(Duration::MAX)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.timeout(), Duration::MAX); // no timeout at all
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, F: Clone> Layer<S> for TimeoutLayer<F> {
    type Service = Timeout<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(
            inner,
            self.timeout,
            self.per_request.clone(),
            self.listeners.clone(),
        )
    }
}

/// Builds a [`TimeoutLayer`]; every setting is checked by [`build`](Builder::build).
///
/// ```
/// use std::time::Duration;
/// use palisade::timeout::TimeoutLayer;
///
/// let builder = TimeoutLayer::builder().timeout(Duration::from_millis(500));
/// assert_eq!(builder.config().timeout, Duration::from_millis(500));
/// let layer = builder
///     .per_request(|deadline: &Option<Duration>| *deadline)
///     .build()
///     .unwrap();
/// assert_eq!(layer.timeout(), Duration::from_millis(500));
/// ```
#[derive(Clone)]
pub struct Builder<F = NoPerRequest> {
    config: TimeoutConfig,
    per_request: F,
    listeners: Listeners,
}

impl<F> fmt::Debug for Builder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("per_request", &std::any::type_name::<F>())
            .finish()
    }
}

impl Builder {
    /// Starts from an existing configuration (for example one deserialized from a file).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::timeout::{Builder, TimeoutConfig};
    ///
    /// let mut config = TimeoutConfig::default();
    /// config.timeout = Duration::from_secs(2);
    /// let layer = Builder::from_config(config).build().unwrap();
    /// assert_eq!(layer.timeout(), Duration::from_secs(2));
    /// ```
    pub fn from_config(config: TimeoutConfig) -> Self {
        Self {
            config,
            per_request: NoPerRequest,
            listeners: Listeners::default(),
        }
    }
}

impl<F> Builder<F> {
    /// How long a call may take, counted from `call` (default 30 s; `Duration::MAX`: no
    /// timeout; zero is an error).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::timeout::TimeoutLayer;
    ///
    /// assert!(
    ///     TimeoutLayer::builder()
    ///         .timeout(Duration::from_millis(250))
    ///         .build()
    ///         .is_ok()
    /// );
    /// assert!(
    ///     TimeoutLayer::builder()
    ///         .timeout(Duration::MAX)
    ///         .build()
    ///         .is_ok()
    /// ); // none
    /// assert!(
    ///     TimeoutLayer::builder()
    ///         .timeout(Duration::ZERO)
    ///         .build()
    ///         .is_err()
    /// );
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// A per-request timeout: any `Fn(&Req) -> Option<Duration>` (or a
    /// [`RequestTimeout`](super::RequestTimeout) of your own) whose `Some` overrides the
    /// default for that request. Name the request type in a closure's argument:
    /// `.per_request(|req: &MyRequest| req.deadline)`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::timeout::TimeoutLayer;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// // The deadline comes with the request, in a header.
    /// let layer = TimeoutLayer::builder()
    ///     .timeout(Duration::from_secs(10))
    ///     .per_request(|req: &http::Request<()>| {
    ///         let ms = req
    ///             .headers()
    ///             .get("x-timeout-ms")?
    ///             .to_str()
    ///             .ok()?
    ///             .parse()
    ///             .ok()?;
    ///         Some(Duration::from_millis(ms))
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let svc = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     tokio::time::sleep(Duration::from_secs(1)).await;
    ///     Ok::<_, std::io::Error>("done")
    /// }));
    /// let hurried = http::Request::builder()
    ///     .header("x-timeout-ms", "50")
    ///     .body(())
    ///     .unwrap();
    /// assert!(svc.clone().oneshot(hurried).await.is_err());
    /// assert_eq!(svc.oneshot(http::Request::new(())).await.unwrap(), "done");
    /// # }
    /// ```
    pub fn per_request<F2>(self, per_request: F2) -> Builder<F2> {
        Builder {
            config: self.config,
            per_request,
            listeners: self.listeners,
        }
    }

    /// Listeners told about every timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::events::{Event, Listeners};
    /// use palisade::timeout::TimeoutLayer;
    ///
    /// let listeners = Listeners::new("inventory").with(|event: &Event<'_>| {
    ///     if let Event::TimedOut { name, after } = event {
    ///         eprintln!("{name}: a call timed out after {after:?}");
    ///     }
    /// });
    /// let layer = TimeoutLayer::builder()
    ///     .timeout(Duration::from_secs(1))
    ///     .listeners(listeners)
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The configuration as it stands.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::timeout::TimeoutLayer;
    ///
    /// assert_eq!(
    ///     TimeoutLayer::builder().config().timeout,
    ///     Duration::from_secs(30)
    /// ); // the default
    /// ```
    pub fn config(&self) -> &TimeoutConfig {
        &self.config
    }

    /// Validates the configuration and builds the layer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::timeout::TimeoutLayer;
    ///
    /// let layer = TimeoutLayer::builder()
    ///     .timeout(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.timeout(), Duration::from_secs(1));
    /// let err = TimeoutLayer::builder()
    ///     .timeout(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "timeout");
    /// ```
    pub fn build(&self) -> Result<TimeoutLayer<F>, ConfigError>
    where
        F: Clone,
    {
        self.config.validate()?;
        Ok(TimeoutLayer {
            timeout: self.config.timeout,
            per_request: self.per_request.clone(),
            listeners: self.listeners.clone(),
        })
    }
}
