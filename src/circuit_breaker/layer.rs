use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use crate::classify::DefaultClassifier;
use crate::error::ConfigError;
use crate::events::Listeners;

use super::config::{Backoff, CircuitBreakerConfig, SlidingWindow};
use super::handle::{Breaker, Handle};
use super::service::CircuitBreaker;

/// Wraps services in a [`CircuitBreaker`]; every service it makes (and their clones) shares the
/// one breaker the layer was built with.
///
/// Build a separate layer for each dependency that should have its own breaker (per host,
/// per method).
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    breaker: Arc<Breaker>,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A builder starting from the defaults of [`CircuitBreakerConfig`].
    pub fn builder() -> Builder {
        Builder {
            config: CircuitBreakerConfig::default(),
            listeners: Listeners::default(),
        }
    }

    /// A layer from a configuration, validated.
    pub fn new(config: &CircuitBreakerConfig) -> Result<Self, ConfigError> {
        Self::with_listeners(config, Listeners::default())
    }

    fn with_listeners(
        config: &CircuitBreakerConfig,
        listeners: Listeners,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            breaker: Breaker::new(config, listeners)?,
            classifier: DefaultClassifier,
        })
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// The same breaker with another classifier (see [`crate::classify`]).
    pub fn with_classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// A handle on the breaker: read its state, force it open, reset it, guard plain futures.
    pub fn handle(&self) -> Handle {
        Handle::new(self.breaker.clone())
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}

/// Builds a [`CircuitBreakerLayer`]; every setting is checked by [`build`](Builder::build).
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
        name: impl Into<String> => name (Into::into);
        /// The sliding window (default: the last 100 calls).
        window: SlidingWindow => window;
        /// Outcomes needed in the window before a rate can trip (default 100).
        minimum_calls: u32 => minimum_calls;
        /// Failure rate that trips the breaker, a fraction in (0, 1] (default 0.5).
        failure_rate: f64 => failure_rate;
        /// Calls at least this long are slow (default: no slow-call rule).
        slow_call_duration: Duration => slow_call_duration (Some);
        /// Slow-call rate that trips the breaker, a fraction in (0, 1] (default 1.0).
        slow_call_rate: f64 => slow_call_rate;
        /// Trip after this many failures in a row (default: off).
        consecutive_failures: u32 => consecutive_failures (Some);
        /// How long the breaker stays open before probing (default 60 s).
        open_duration: Duration => open_duration;
        /// Grow the open duration per consecutive trip (default: fixed).
        backoff: Backoff => backoff (Some);
        /// Cap on pushback from the dependency (default 5 min; zero ignores pushback).
        max_pushback: Duration => max_pushback;
        /// Probes admitted while half-open (default 10).
        permitted_probes: u32 => permitted_probes;
        /// Share of probes that must succeed to close (default 0.5).
        probe_success_rate: f64 => probe_success_rate;
        /// Longest half-open trial before the breaker reopens (default 60 s).
        max_half_open_wait: Duration => max_half_open_wait;
    }

    /// Starts from an existing configuration (for example one deserialized from a file).
    pub fn from_config(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            listeners: Listeners::default(),
        }
    }

    /// Listeners told about every transition and rejection (events carry the breaker's name).
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The configuration as it stands.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// Validates the configuration and builds the layer.
    pub fn build(&self) -> Result<CircuitBreakerLayer, ConfigError> {
        CircuitBreakerLayer::with_listeners(&self.config, self.listeners.clone())
    }
}
