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
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(remote = "Self", default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// How long a call may take, counted from `call` (`> 0`; `Duration::MAX` means no
    /// timeout). Default 30 s, as Polly's.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub timeout: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
        }
    }
}

validated_deserialize!(TimeoutConfig);

impl TimeoutConfig {
    /// Checks every field; the error names the first one that is wrong.
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
    pub fn builder() -> Builder {
        Builder {
            config: TimeoutConfig::default(),
            per_request: NoPerRequest,
            listeners: Listeners::default(),
        }
    }

    /// A layer from a configuration, validated.
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
    pub fn with_per_request<F2>(self, per_request: F2) -> TimeoutLayer<F2> {
        TimeoutLayer {
            timeout: self.timeout,
            per_request,
            listeners: self.listeners,
        }
    }

    /// The same layer, telling `listeners` about every timeout.
    #[must_use]
    pub fn with_listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The default timeout (`Duration::MAX`: none).
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
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// A per-request timeout: any `Fn(&Req) -> Option<Duration>` (or a
    /// [`RequestTimeout`](super::RequestTimeout) of your own) whose `Some` overrides the
    /// default for that request. Name the request type in a closure's argument:
    /// `.per_request(|req: &MyRequest| req.deadline)`.
    pub fn per_request<F2>(self, per_request: F2) -> Builder<F2> {
        Builder {
            config: self.config,
            per_request,
            listeners: self.listeners,
        }
    }

    /// Listeners told about every timeout.
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The configuration as it stands.
    pub fn config(&self) -> &TimeoutConfig {
        &self.config
    }

    /// Validates the configuration and builds the layer.
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
