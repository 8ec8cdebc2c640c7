use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use crate::error::ConfigError;
use crate::events::Listeners;
use crate::sync::SharedRefs;

use super::config::BulkheadConfig;
use super::future::UntilResponse;
use super::handle::{Handle, Shared};
use super::service::Bulkhead;

/// Wraps services in a [`Bulkhead`]; every service it makes (and their clones) shares the
/// permits and the queue the layer was built with.
///
/// Build a separate layer for each dependency that should have its own limit. A layer takes
/// about 1.5 KiB beside its queue (a reference to the bulkhead per thread stripe, so that
/// clones called on different threads do not share one reference count).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::bulkhead::BulkheadLayer;
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// let layer = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
/// let bulkhead = layer.handle();
/// let hang = || service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>());
/// // Two services made by one layer share its one permit.
/// let (mut a, mut b) = (layer.layer(hang()), layer.layer(hang()));
/// let call = a.ready().await.unwrap().call(());
/// assert!(b.ready().await.unwrap().call(()).await.is_err()); // rejected: `a` holds the permit
/// assert_eq!(bulkhead.in_flight(), 1);
/// # drop(call);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer<H = UntilResponse> {
    shared: Arc<SharedRefs<Shared>>,
    hold: H,
}

impl BulkheadLayer {
    /// A builder starting from the defaults of [`BulkheadConfig`].
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// let layer = BulkheadLayer::builder()
    ///     .name("inventory")
    ///     .max_concurrent(10)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.handle().max_concurrent(), 10);
    /// ```
    pub fn builder() -> Builder {
        Builder {
            config: BulkheadConfig::default(),
            listeners: Listeners::default(),
        }
    }

    /// A layer from a configuration, validated.
    ///
    /// ```
    /// use palisade::bulkhead::{BulkheadConfig, BulkheadLayer};
    ///
    /// let mut config = BulkheadConfig::default();
    /// config.max_concurrent = 10;
    /// let layer = BulkheadLayer::new(&config).unwrap();
    /// assert_eq!(layer.handle().max_concurrent(), 10);
    ///
    /// config.max_concurrent = 0;
    /// assert_eq!(
    ///     BulkheadLayer::new(&config).unwrap_err().field(),
    ///     "max_concurrent"
    /// );
    /// ```
    pub fn new(config: &BulkheadConfig) -> Result<Self, ConfigError> {
        Self::with_listeners(config, Listeners::default())
    }

    fn with_listeners(config: &BulkheadConfig, listeners: Listeners) -> Result<Self, ConfigError> {
        Ok(Self {
            shared: SharedRefs::new(Arc::new(Shared::new(config, listeners)?)),
            hold: UntilResponse,
        })
    }
}

impl<H> BulkheadLayer<H> {
    /// The same bulkhead (clones share its permits), giving permits back when `hold` says:
    /// for HTTP, `palisade::http::UntilBodyEnd` holds each permit until the response body ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use palisade::bulkhead::BulkheadLayer;
    /// use palisade::http::{TrackLayer, UntilBodyEnd};
    /// use tower::{Service, ServiceBuilder, ServiceExt};
    ///
    /// let layer = BulkheadLayer::builder()
    ///     .max_concurrent(4)
    ///     .build()
    ///     .unwrap()
    ///     .hold(UntilBodyEnd);
    /// let bulkhead = layer.handle();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(layer)
    ///     .layer(TrackLayer::new()) // UntilBodyEnd needs tracked bodies
    ///     .service(tower::service_fn(|_: http::Request<()>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
    ///             "page",
    ///         ))))
    ///     }));
    /// let response = svc
    ///     .ready()
    ///     .await
    ///     .unwrap()
    ///     .call(http::Request::new(()))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(bulkhead.in_flight(), 1); // still streaming
    /// response.into_body().collect().await.unwrap();
    /// assert_eq!(bulkhead.in_flight(), 0);
    /// # }
    /// ```
    pub fn hold<H2>(self, hold: H2) -> BulkheadLayer<H2> {
        BulkheadLayer {
            shared: self.shared,
            hold,
        }
    }

    /// A handle on the bulkhead: calls in flight, waiting, permits free.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// let layer = BulkheadLayer::builder().max_concurrent(3).build().unwrap();
    /// let handle = layer.handle(); // every service the layer makes shares it
    /// assert_eq!((handle.in_flight(), handle.available()), (0, 3));
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::new(Arc::clone(self.shared.shared()))
    }
}

impl<S, H: Clone> Layer<S> for BulkheadLayer<H> {
    type Service = Bulkhead<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(inner, self.shared.clone(), self.hold.clone())
    }
}

/// Builds a [`BulkheadLayer`]; every setting is checked by [`build`](Builder::build).
///
/// ```
/// use std::time::Duration;
/// use palisade::bulkhead::BulkheadLayer;
///
/// let builder = BulkheadLayer::builder()
///     .name("inventory")
///     .max_concurrent(16)
///     .max_wait(Duration::from_millis(20))
///     .max_queued(32);
/// assert_eq!(builder.config().max_queued, Some(32));
/// let layer = builder.build().unwrap();
/// assert_eq!(layer.handle().max_queued(), 32);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    config: BulkheadConfig,
    listeners: Listeners,
}

impl Builder {
    /// Name used in events and metrics.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// let layer = BulkheadLayer::builder().name("pricing").build().unwrap();
    /// assert_eq!(layer.handle().name(), "pricing");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Calls in flight at once, across all clones (default 25).
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// assert_eq!(
    ///     BulkheadLayer::builder()
    ///         .max_concurrent(4)
    ///         .build()
    ///         .unwrap()
    ///         .handle()
    ///         .available(),
    ///     4
    /// );
    /// assert!(BulkheadLayer::builder().max_concurrent(0).build().is_err());
    /// ```
    pub fn max_concurrent(mut self, max_concurrent: usize) -> Self {
        self.config.max_concurrent = max_concurrent;
        self
    }

    /// Let a call that finds every permit taken wait this long for one, in a FIFO queue
    /// (default: reject at once).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::bulkhead::BulkheadLayer;
    /// use palisade::error::{error_kind, ErrorKind};
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// let layer = BulkheadLayer::builder()
    ///     .max_concurrent(1)
    ///     .max_wait(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// let mut svc = layer.layer(service_fn(|_: ()| {
    ///     std::future::pending::<Result<(), std::io::Error>>()
    /// }));
    /// let _first = svc.ready().await.unwrap().call(());
    /// let start = tokio::time::Instant::now();
    /// // It waits 50 ms for the permit, in vain.
    /// let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    /// assert!(matches!(
    ///     error_kind(err.as_ref()),
    ///     ErrorKind::BulkheadFull(_)
    /// ));
    /// assert_eq!(start.elapsed(), Duration::from_millis(50));
    /// # }
    /// ```
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.config.max_wait = Some(max_wait);
        self
    }

    /// How many calls may wait at once; needs [`max_wait`](Self::max_wait) (default: as many
    /// as `max_concurrent`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// let layer = BulkheadLayer::builder()
    ///     .max_wait(Duration::from_millis(50))
    ///     .max_queued(100)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.handle().max_queued(), 100);
    /// // Without max_wait no call ever waits: a queue length is a mistake.
    /// assert_eq!(
    ///     BulkheadLayer::builder()
    ///         .max_queued(100)
    ///         .build()
    ///         .unwrap_err()
    ///         .field(),
    ///     "max_queued"
    /// );
    /// ```
    pub fn max_queued(mut self, max_queued: usize) -> Self {
        self.config.max_queued = Some(max_queued);
        self
    }

    /// Starts from an existing configuration (for example one deserialized from a file).
    ///
    /// ```
    /// use palisade::bulkhead::{BulkheadConfig, Builder};
    ///
    /// let mut config = BulkheadConfig::default();
    /// config.max_concurrent = 12;
    /// let layer = Builder::from_config(config)
    ///     .name("inventory")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(
    ///     (layer.handle().name(), layer.handle().max_concurrent()),
    ///     ("inventory", 12)
    /// );
    /// ```
    pub fn from_config(config: BulkheadConfig) -> Self {
        Self {
            config,
            listeners: Listeners::default(),
        }
    }

    /// Listeners told about every rejection (events carry the bulkhead's name).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// use palisade::bulkhead::BulkheadLayer;
    /// use palisade::events::{Event, Listeners};
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// let rejected = Arc::new(Mutex::new(Vec::new()));
    /// let seen = rejected.clone();
    /// let listeners = Listeners::new("ignored").with(move |event: &Event<'_>| {
    ///     if let Event::Rejected { name, .. } = event {
    ///         seen.lock().unwrap().push(name.to_string());
    ///     }
    /// });
    /// let layer = BulkheadLayer::builder()
    ///     .name("inventory")
    ///     .max_concurrent(1)
    ///     .listeners(listeners)
    ///     .build()
    ///     .unwrap();
    /// let mut svc = layer.layer(service_fn(|_: ()| {
    ///     std::future::pending::<Result<(), std::io::Error>>()
    /// }));
    /// let _first = svc.ready().await.unwrap().call(());
    /// let _ = svc.ready().await.unwrap().call(()).await; // rejected
    /// assert_eq!(*rejected.lock().unwrap(), ["inventory"]); // events carry the bulkhead's name
    ///     
    /// # }
    /// ```
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The configuration as it stands.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// let builder = BulkheadLayer::builder().max_concurrent(7);
    /// assert_eq!(builder.config().max_concurrent, 7);
    /// assert_eq!(builder.config().max_wait, None);
    /// ```
    pub fn config(&self) -> &BulkheadConfig {
        &self.config
    }

    /// Validates the configuration and builds the layer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// assert!(BulkheadLayer::builder().max_concurrent(10).build().is_ok());
    /// let err = BulkheadLayer::builder()
    ///     .max_wait(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "max_wait");
    /// ```
    pub fn build(&self) -> Result<BulkheadLayer, ConfigError> {
        BulkheadLayer::with_listeners(&self.config, self.listeners.clone())
    }
}
