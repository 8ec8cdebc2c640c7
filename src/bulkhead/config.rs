//! Bulkhead configuration, its defaults and its validation.

use std::time::Duration;

use crate::error::ConfigError;

/// The largest `max_concurrent`: `536_870_911`, tokio's `Semaphore::MAX_PERMITS` on a 32-bit
/// target (and below it on a 64-bit one), so a limit means the same on every platform.
///
/// ```
/// use palisade::bulkhead::{BulkheadLayer, MAX_CONCURRENT};
///
/// assert!(
///     BulkheadLayer::builder()
///         .max_concurrent(MAX_CONCURRENT)
///         .build()
///         .is_ok()
/// );
/// let err = BulkheadLayer::builder()
///     .max_concurrent(MAX_CONCURRENT + 1)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "max_concurrent");
/// ```
pub const MAX_CONCURRENT: usize = (u32::MAX >> 3) as usize;
/// The largest `max_queued`. Each waiter costs a few dozen bytes in the queue plus its
/// (boxed) request; a longer queue only makes callers wait longer for an answer they could
/// have had at once.
///
/// ```
/// use std::time::Duration;
/// use palisade::bulkhead::{BulkheadLayer, MAX_QUEUED};
///
/// let queue = |n| {
///     BulkheadLayer::builder()
///         .max_wait(Duration::from_millis(50))
///         .max_queued(n)
///         .build()
/// };
/// assert!(queue(MAX_QUEUED).is_ok());
/// assert_eq!(queue(MAX_QUEUED + 1).unwrap_err().field(), "max_queued");
/// ```
pub const MAX_QUEUED: usize = 65_536;
/// The longest `max_wait`.
///
/// ```
/// use std::time::Duration;
/// use palisade::bulkhead::{BulkheadLayer, MAX_WAIT};
///
/// assert!(BulkheadLayer::builder().max_wait(MAX_WAIT).build().is_ok());
/// let err = BulkheadLayer::builder()
///     .max_wait(MAX_WAIT + Duration::from_secs(1))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "max_wait");
/// ```
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Every setting of a bulkhead. Build one with [`BulkheadLayer::builder`] (or deserialize it,
/// feature `serde`) and check it with [`validate`](Self::validate).
///
/// The defaults follow resilience4j's: 25 calls in flight, and a call that finds them all
/// taken is rejected at once. Setting `max_wait` turns on a FIFO queue: a call waits up to
/// `max_wait` for a permit, behind at most `max_queued` others.
///
/// With feature `serde`, durations are written the `humantime` way:
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use palisade::bulkhead::BulkheadConfig;
///
/// let config: BulkheadConfig = serde_json::from_str(
///     r#"{ "max_concurrent": 10, "max_wait": "50ms", "max_queued": 20 }"#,
/// ).unwrap();
/// assert_eq!(config.max_queued, Some(20));
/// assert!(serde_json::from_str::<BulkheadConfig>(r#"{ "max_concurrent": 0 }"#).is_err());
/// # }
/// ```
///
/// [`BulkheadLayer::builder`]: super::BulkheadLayer::builder
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// Name used in events and metrics. Default `"default"`.
    pub name: String,
    /// Calls in flight at once, across every clone of the services the layer makes
    /// (`1..=`[`MAX_CONCURRENT`]). Default 25.
    pub max_concurrent: usize,
    /// How long a call may wait for a permit when all are taken (`0 < wait <=` [`MAX_WAIT`]).
    /// `None` (the default) rejects such a call at once.
    pub max_wait: Option<Duration>,
    /// How many calls may wait at once (`1..=`[`MAX_QUEUED`]); only with `max_wait`. A call
    /// that finds the queue full is rejected at once. `None` (the default): as many as
    /// `max_concurrent` (at most [`MAX_QUEUED`]).
    pub max_queued: Option<usize>,
}

/// The fields of a [`BulkheadConfig`], read unchecked (see `validated_deserialize!`).
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(
    remote = "BulkheadConfig",
    default = "BulkheadConfig::default",
    deny_unknown_fields
)]
pub(crate) struct BulkheadFields {
    name: String,
    max_concurrent: usize,
    #[serde(with = "humantime_serde")]
    max_wait: Option<Duration>,
    max_queued: Option<usize>,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            max_concurrent: 25,
            max_wait: None,
            max_queued: None,
        }
    }
}

validated_deserialize!(BulkheadConfig, BulkheadFields);

impl BulkheadConfig {
    /// Checks every field; the error names the first one that is wrong.
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadConfig;
    ///
    /// let mut config = BulkheadConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.max_queued = Some(10); // queueing needs a max_wait
    /// assert_eq!(config.validate().unwrap_err().field(), "max_queued");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent == 0 || self.max_concurrent > MAX_CONCURRENT {
            return Err(ConfigError::new(
                "max_concurrent",
                "must be in 1..=536870911",
                self.max_concurrent,
            ));
        }
        match self.max_wait {
            Some(wait) if wait.is_zero() => {
                return Err(ConfigError::new(
                    "max_wait",
                    "must be > 0 (leave it unset to reject at once)",
                    wait,
                ));
            }
            Some(wait) if wait > MAX_WAIT => {
                return Err(ConfigError::new("max_wait", "must be at most 24h", wait));
            }
            _ => {}
        }
        match self.max_queued {
            Some(n) if self.max_wait.is_none() => {
                return Err(ConfigError::new(
                    "max_queued",
                    "needs max_wait (without it no call ever waits)",
                    n,
                ));
            }
            Some(n) if n == 0 || n > MAX_QUEUED => {
                return Err(ConfigError::new(
                    "max_queued",
                    "must be in 1..=65536 (leave max_wait unset to reject at once)",
                    n,
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The queue bound in force: 0 when calls never wait.
    pub(crate) fn queue_len(&self) -> usize {
        match (self.max_wait, self.max_queued) {
            (None, _) => 0,
            (Some(_), Some(n)) => n,
            (Some(_), None) => self.max_concurrent.min(MAX_QUEUED),
        }
    }
}
