use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use crate::error::ConfigError;
use crate::events::Listeners;

use super::config::BulkheadConfig;
use super::future::UntilResponse;
use super::handle::{Handle, Shared};
use super::service::Bulkhead;

/// Wraps services in a [`Bulkhead`]; every service it makes (and their clones) shares the
/// permits and the queue the layer was built with.
///
/// Build a separate layer for each dependency that should have its own limit.
#[derive(Debug, Clone)]
pub struct BulkheadLayer<H = UntilResponse> {
    shared: Arc<Shared>,
    hold: H,
}

impl BulkheadLayer {
    /// A builder starting from the defaults of [`BulkheadConfig`].
    pub fn builder() -> Builder {
        Builder {
            config: BulkheadConfig::default(),
            listeners: Listeners::default(),
        }
    }

    /// A layer from a configuration, validated.
    pub fn new(config: &BulkheadConfig) -> Result<Self, ConfigError> {
        Self::with_listeners(config, Listeners::default())
    }

    fn with_listeners(config: &BulkheadConfig, listeners: Listeners) -> Result<Self, ConfigError> {
        Ok(Self {
            shared: Arc::new(Shared::new(config, listeners)?),
            hold: UntilResponse,
        })
    }
}

impl<H> BulkheadLayer<H> {
    /// The same bulkhead (clones share its permits), giving permits back when `hold` says:
    /// for HTTP, `palisade::http::UntilBodyEnd` holds each permit until the response body ends.
    pub fn hold<H2>(self, hold: H2) -> BulkheadLayer<H2> {
        BulkheadLayer {
            shared: self.shared,
            hold,
        }
    }

    /// A handle on the bulkhead: calls in flight, waiting, permits free.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

impl<S, H: Clone> Layer<S> for BulkheadLayer<H> {
    type Service = Bulkhead<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(inner, self.shared.clone(), self.hold.clone())
    }
}

/// Builds a [`BulkheadLayer`]; every setting is checked by [`build`](Builder::build).
#[derive(Debug, Clone)]
pub struct Builder {
    config: BulkheadConfig,
    listeners: Listeners,
}

impl Builder {
    /// Name used in events and metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Calls in flight at once, across all clones (default 25).
    pub fn max_concurrent(mut self, max_concurrent: usize) -> Self {
        self.config.max_concurrent = max_concurrent;
        self
    }

    /// Let a call that finds every permit taken wait this long for one, in a FIFO queue
    /// (default: reject at once).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.config.max_wait = Some(max_wait);
        self
    }

    /// How many calls may wait at once; needs [`max_wait`](Self::max_wait) (default: as many
    /// as `max_concurrent`).
    pub fn max_queued(mut self, max_queued: usize) -> Self {
        self.config.max_queued = Some(max_queued);
        self
    }

    /// Starts from an existing configuration (for example one deserialized from a file).
    pub fn from_config(config: BulkheadConfig) -> Self {
        Self {
            config,
            listeners: Listeners::default(),
        }
    }

    /// Listeners told about every rejection (events carry the bulkhead's name).
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The configuration as it stands.
    pub fn config(&self) -> &BulkheadConfig {
        &self.config
    }

    /// Validates the configuration and builds the layer.
    pub fn build(&self) -> Result<BulkheadLayer, ConfigError> {
        BulkheadLayer::with_listeners(&self.config, self.listeners.clone())
    }
}
