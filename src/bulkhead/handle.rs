use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::events::{Event, Listeners, Rejection};

use super::config::BulkheadConfig;
use super::semaphore::Semaphore;

/// The state every service made by one layer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) sem: Semaphore,
    pub(crate) max_concurrent: usize,
    pub(crate) max_wait: Option<Duration>,
    max_queued: usize,
    name: String,
    listeners: Listeners,
    /// Whether anyone listens: the per-permit events cost one branch when nobody does.
    listening: bool,
}

impl Shared {
    /// Tells the listeners that a call was rejected.
    pub(crate) fn rejected(&self) {
        self.listeners.emit(|name| Event::Rejected {
            name,
            reason: Rejection::BulkheadFull,
        });
    }

    /// Tells the listeners, if any, that a permit was taken.
    #[inline]
    pub(crate) fn acquired(&self) {
        if self.listening {
            self.tell(true);
        }
    }

    /// Tells the listeners, if any, that a permit was given back.
    #[inline]
    pub(crate) fn released(&self) {
        if self.listening {
            self.tell(false);
        }
    }

    #[cold]
    #[inline(never)]
    fn tell(&self, acquired: bool) {
        let in_flight = self.in_flight();
        self.listeners.emit_inline(|name| match acquired {
            true => Event::BulkheadAcquired { name, in_flight },
            false => Event::BulkheadReleased { name, in_flight },
        });
    }

    fn in_flight(&self) -> usize {
        // At most max_concurrent, which is a usize.
        usize::try_from(self.sem.in_flight()).unwrap_or(usize::MAX)
    }

    pub(crate) fn new(config: &BulkheadConfig, listeners: Listeners) -> Result<Self, ConfigError> {
        config.validate()?;
        let max_queued = config.queue_len();
        Ok(Self {
            sem: Semaphore::new(config.max_concurrent as u64, max_queued),
            max_concurrent: config.max_concurrent,
            max_wait: config.max_wait,
            max_queued,
            name: config.name.clone(),
            listening: !listeners.is_empty(),
            listeners: listeners.named(config.name.clone()),
        })
    }
}

/// A handle on one bulkhead, shared with every service its layer made: how many calls are in
/// flight and how many wait.
///
/// Cheap to clone. The counts are read without stopping calls, so under load they are a
/// snapshot that may already be out of date.
///
/// ```
/// use palisade::bulkhead::BulkheadLayer;
///
/// let layer = BulkheadLayer::builder().max_concurrent(10).build().unwrap();
/// let bulkhead = layer.handle();
/// assert_eq!(bulkhead.in_flight(), 0);
/// assert_eq!(bulkhead.available(), 10);
/// assert_eq!(bulkhead.queued(), 0);
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.shared.name)
            .field("max_concurrent", &self.max_concurrent())
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish()
    }
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The bulkhead's name (from its configuration).
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// let layer = BulkheadLayer::builder().name("inventory").build().unwrap();
    /// assert_eq!(layer.handle().name(), "inventory");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The limit on calls in flight.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// let layer = BulkheadLayer::builder().max_concurrent(6).build().unwrap();
    /// assert_eq!(layer.handle().max_concurrent(), 6);
    /// ```
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_concurrent
    }

    /// How long a call may wait for a permit; `None` when calls are rejected at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// assert_eq!(
    ///     BulkheadLayer::builder()
    ///         .build()
    ///         .unwrap()
    ///         .handle()
    ///         .max_wait(),
    ///     None
    /// );
    /// let waits = BulkheadLayer::builder()
    ///     .max_wait(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(waits.handle().max_wait(), Some(Duration::from_millis(50)));
    /// ```
    pub fn max_wait(&self) -> Option<Duration> {
        self.shared.max_wait
    }

    /// The limit on waiting calls; 0 when calls are rejected at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::bulkhead::BulkheadLayer;
    ///
    /// assert_eq!(
    ///     BulkheadLayer::builder()
    ///         .build()
    ///         .unwrap()
    ///         .handle()
    ///         .max_queued(),
    ///     0
    /// );
    /// // With max_wait and no max_queued: as many as max_concurrent may wait.
    /// let waits = BulkheadLayer::builder()
    ///     .max_concurrent(8)
    ///     .max_wait(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(waits.handle().max_queued(), 8);
    /// ```
    pub fn max_queued(&self) -> usize {
        self.shared.max_queued
    }

    /// Permits taken: calls in flight, plus calls handed a permit and about to be sent.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::bulkhead::BulkheadLayer;
    /// use tower::{service_fn, Service, ServiceExt, Layer};
    ///
    /// let layer = BulkheadLayer::builder().max_concurrent(4).build().unwrap();
    /// let bulkhead = layer.handle();
    /// let mut svc = layer.layer(service_fn(|_: ()| {
    ///     std::future::pending::<Result<(), std::io::Error>>()
    /// }));
    /// let mut calls = Vec::new();
    /// for _ in 0..3 {
    ///     calls.push(svc.ready().await.unwrap().call(()));
    /// }
    /// assert_eq!(bulkhead.in_flight(), 3);
    /// drop(calls);
    /// assert_eq!(bulkhead.in_flight(), 0);
    /// # }
    /// ```
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Permits free: `max_concurrent - in_flight`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::bulkhead::BulkheadLayer;
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// let layer = BulkheadLayer::builder().max_concurrent(4).build().unwrap();
    /// let bulkhead = layer.handle();
    /// let mut svc = layer.layer(service_fn(|_: ()| {
    ///     std::future::pending::<Result<(), std::io::Error>>()
    /// }));
    /// let call = svc.ready().await.unwrap().call(());
    /// assert_eq!(bulkhead.available(), 3);
    /// # drop(call);
    /// # }
    /// ```
    pub fn available(&self) -> usize {
        self.max_concurrent().saturating_sub(self.in_flight())
    }

    /// Calls waiting for a permit.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use palisade::bulkhead::BulkheadLayer;
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// let layer = BulkheadLayer::builder()
    ///     .max_concurrent(1)
    ///     .max_wait(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// let bulkhead = layer.handle();
    /// let mut svc = layer.layer(service_fn(|_: ()| {
    ///     std::future::pending::<Result<(), std::io::Error>>()
    /// }));
    /// let first = svc.ready().await.unwrap().call(()); // takes the only permit
    /// let second = svc.ready().await.unwrap().call(()); // waits for it
    /// assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (1, 1));
    /// drop(second); // leaves the queue
    /// assert_eq!(bulkhead.queued(), 0);
    /// # drop(first);
    /// # }
    /// ```
    pub fn queued(&self) -> usize {
        self.shared.sem.queued()
    }
}
