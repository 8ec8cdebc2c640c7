//! Circuit breaker configuration, its defaults and its validation.

use std::time::Duration;

use crate::error::ConfigError;

use super::window::BUCKETS;

/// The largest count-based window.
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, MAX_WINDOW_CALLS};
///
/// let window = |n| {
///     CircuitBreakerLayer::builder()
///         .window(SlidingWindow::Count(n))
///         .build()
/// };
/// assert!(window(MAX_WINDOW_CALLS).is_ok());
/// assert_eq!(window(MAX_WINDOW_CALLS + 1).unwrap_err().field(), "window");
/// ```
pub const MAX_WINDOW_CALLS: u32 = 1_000_000;
/// The largest number of half-open probes.
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreakerLayer, MAX_PROBES};
///
/// assert!(
///     CircuitBreakerLayer::builder()
///         .permitted_probes(MAX_PROBES)
///         .build()
///         .is_ok()
/// );
/// let err = CircuitBreakerLayer::builder()
///     .permitted_probes(MAX_PROBES + 1)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "permitted_probes");
/// ```
pub const MAX_PROBES: u32 = 1_000;
/// The shortest time-based window (one bucket per millisecond).
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, MIN_WINDOW_TIME};
///
/// assert_eq!(MIN_WINDOW_TIME, Duration::from_millis(20));
/// let window = |d| {
///     CircuitBreakerLayer::builder()
///         .window(SlidingWindow::Time(d))
///         .build()
/// };
/// assert!(window(MIN_WINDOW_TIME).is_ok());
/// assert!(window(Duration::from_millis(19)).is_err());
/// ```
pub const MIN_WINDOW_TIME: Duration = Duration::from_millis(BUCKETS);
/// The longest time-based window.
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, MAX_WINDOW_TIME};
///
/// let window = |d| {
///     CircuitBreakerLayer::builder()
///         .window(SlidingWindow::Time(d))
///         .build()
/// };
/// assert!(window(MAX_WINDOW_TIME).is_ok());
/// assert!(window(MAX_WINDOW_TIME + Duration::from_secs(1)).is_err());
/// ```
pub const MAX_WINDOW_TIME: Duration = Duration::from_secs(24 * 3600);
/// The longest `max_half_open_wait`: a half-open breaker must not wait on its probes for long.
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerLayer, MAX_HALF_OPEN_WAIT};
///
/// let wait = |d| CircuitBreakerLayer::builder().max_half_open_wait(d).build();
/// assert!(wait(MAX_HALF_OPEN_WAIT).is_ok());
/// assert_eq!(
///     wait(Duration::MAX).unwrap_err().field(),
///     "max_half_open_wait"
/// );
/// ```
pub const MAX_HALF_OPEN_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Which outcomes the failure and slow-call rates are computed over.
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow};
///
/// // The last 50 calls...
/// let by_count = CircuitBreakerLayer::builder()
///     .window(SlidingWindow::Count(50))
///     .minimum_calls(20);
/// // ...or the calls of the last 30 seconds, however many.
/// let by_time =
///     CircuitBreakerLayer::builder().window(SlidingWindow::Time(Duration::from_secs(30)));
/// assert!(by_count.build().is_ok() && by_time.build().is_ok());
/// // minimum_calls above a count window could never be reached.
/// let never = CircuitBreakerLayer::builder()
///     .window(SlidingWindow::Count(10))
///     .minimum_calls(20);
/// assert_eq!(never.build().unwrap_err().field(), "minimum_calls");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum SlidingWindow {
    /// The last N recorded outcomes (`1..=1_000_000`).
    Count(u32),
    /// The outcomes recorded in the last period (`20 ms..=24 h`), kept in 20 buckets of a
    /// twentieth of the period each.
    Time(#[cfg_attr(feature = "serde", serde(with = "humantime_serde"))] Duration),
}

/// How the open duration grows with each consecutive trip (a probe that fails reopens the
/// breaker for longer), so that a dependency that stays down is probed less and less often.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use palisade::circuit_breaker::{Backoff, CircuitBreakerLayer};
///
/// let breaker = CircuitBreakerLayer::builder()
///     .consecutive_failures(1)
///     .permitted_probes(1)
///     .open_duration(Duration::from_secs(10))
///     .backoff(Backoff {
///         multiplier: 2.0,
///         max: Duration::from_secs(60),
///         jitter: 0.0,
///     })
///     .build()
///     .unwrap()
///     .handle();
/// let fail = || breaker.call(async { Err::<(), _>(std::io::Error::other("down")) });
///
/// let _ = fail().await; // opens for 10 s
/// assert_eq!(
///     breaker.snapshot().retry_after,
///     Some(Duration::from_secs(10))
/// );
/// tokio::time::advance(Duration::from_secs(10)).await;
/// let _ = fail().await; // the probe fails: reopens for 20 s
/// assert_eq!(
///     breaker.snapshot().retry_after,
///     Some(Duration::from_secs(20))
/// );
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Backoff {
    /// Factor applied per consecutive trip (`>= 1`, finite). Default 2.
    pub multiplier: f64,
    /// The longest open duration (`>= open_duration`). Default 5 minutes.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max: Duration,
    /// Random spread, as a fraction of the duration: 0.2 means ±20 % (`0..1`). Default 0.2.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            multiplier: 2.0,
            max: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

/// Every setting of a circuit breaker. Build one with [`CircuitBreakerLayer::builder`]
/// (or deserialize it, feature `serde`) and check it with [`validate`](Self::validate).
///
/// The defaults follow resilience4j's, except that the slow-call rule is off (it costs two clock
/// reads per suspended call) and a half-open trial's time with probes in flight is bounded.
///
/// [`CircuitBreakerLayer::builder`]: super::CircuitBreakerLayer::builder
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow};
///
/// let mut config = CircuitBreakerConfig::default(); // non-exhaustive: start from the defaults
/// config.window = SlidingWindow::Count(50);
/// config.minimum_calls = 20;
/// config.open_duration = Duration::from_secs(10);
/// let layer = CircuitBreakerLayer::new(&config).unwrap();
/// # let _ = layer;
///
/// // With feature `serde`, from a file (durations as "10s"):
/// # #[cfg(feature = "serde")] {
/// let from_toml: CircuitBreakerConfig = toml::from_str(
///     r#"
///     window = { count = 50 }
///     minimum_calls = 20
///     open_duration = "10s"
/// "#,
/// )
/// .unwrap();
/// assert_eq!(from_toml, config);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// Name used in events and metrics. Default `"default"`.
    pub name: String,
    /// The sliding window. Default: the last 100 calls.
    pub window: SlidingWindow,
    /// Outcomes needed in the window before a rate can trip the breaker (`>= 1`, and at most the
    /// window size for a count-based window). Default 100.
    pub minimum_calls: u32,
    /// Failure rate at or above which the breaker opens (`0 < rate <= 1`). Default 0.5.
    pub failure_rate: f64,
    /// Calls taking at least this long are slow. `None` (the default) turns the rule off.
    /// Through the tower layer a call is timed from its first suspension (`Pending`) to its
    /// completion; a call that completes on its first poll waited on nothing and is timed as
    /// zero without reading the clock.
    pub slow_call_duration: Option<Duration>,
    /// Slow-call rate at or above which the breaker opens (`0 < rate <= 1`). Default 1.0.
    pub slow_call_rate: f64,
    /// Open after this many failures in a row, whatever the rates (`>= 1`). Default `None`.
    pub consecutive_failures: Option<u32>,
    /// How long the breaker stays open before probing (`> 0`). Default 60 s.
    pub open_duration: Duration,
    /// Growth of the open duration per consecutive trip. Default `None` (fixed).
    pub backoff: Option<Backoff>,
    /// Cap on the pushback a dependency can ask for (`Retry-After`, `grpc-retry-pushback-ms`);
    /// zero ignores pushback. Default 5 minutes.
    pub max_pushback: Duration,
    /// Calls admitted as probes while half-open (`1..=1000`). Default 10.
    pub permitted_probes: u32,
    /// Share of probes that must succeed (fast) to close the breaker (`0 < rate <= 1`).
    /// Default 0.5.
    pub probe_success_rate: f64,
    /// The longest a half-open trial may spend with probes in flight (overlapping probes
    /// count once); once it has, the breaker reopens (`0 < wait <= 24 h`). Time with no probe
    /// in flight does not count: probes that each answer at once may be spread over a longer
    /// trial (a rarely called dependency's), and still close the breaker. A probe slot taken
    /// by `poll_ready` is in flight until its call ends or the slot is dropped: a service kept
    /// ready for long between calls (as tower's `ReadyCache` keeps its endpoints) spends the
    /// trial's time so, and a rarely called one behind it may reopen trial after trial.
    /// Default 60 s.
    pub max_half_open_wait: Duration,
}

/// The fields of a [`CircuitBreakerConfig`], read unchecked (see `validated_deserialize!`).
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(
    remote = "CircuitBreakerConfig",
    default = "CircuitBreakerConfig::default",
    deny_unknown_fields
)]
pub(crate) struct CircuitBreakerFields {
    name: String,
    window: SlidingWindow,
    minimum_calls: u32,
    failure_rate: f64,
    #[serde(with = "humantime_serde")]
    slow_call_duration: Option<Duration>,
    slow_call_rate: f64,
    consecutive_failures: Option<u32>,
    #[serde(with = "humantime_serde")]
    open_duration: Duration,
    backoff: Option<Backoff>,
    #[serde(with = "humantime_serde")]
    max_pushback: Duration,
    permitted_probes: u32,
    probe_success_rate: f64,
    #[serde(with = "humantime_serde")]
    max_half_open_wait: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            window: SlidingWindow::Count(100),
            minimum_calls: 100,
            failure_rate: 0.5,
            slow_call_duration: None,
            slow_call_rate: 1.0,
            consecutive_failures: None,
            open_duration: Duration::from_secs(60),
            backoff: None,
            max_pushback: Duration::from_secs(300),
            permitted_probes: 10,
            probe_success_rate: 0.5,
            max_half_open_wait: Duration::from_secs(60),
        }
    }
}

validated_deserialize!(CircuitBreakerConfig, CircuitBreakerFields);

fn rate(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::new(field, "must be a fraction in (0, 1]", v))
    }
}

impl CircuitBreakerConfig {
    /// Checks every field; the error names the first one that is wrong.
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.failure_rate = f64::NAN;
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(
    ///     (err.field(), err.rule()),
    ///     ("failure_rate", "must be a fraction in (0, 1]")
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.window {
            SlidingWindow::Count(n) if n == 0 || n > MAX_WINDOW_CALLS => {
                return Err(ConfigError::new(
                    "window",
                    "count must be in 1..=1000000",
                    n,
                ));
            }
            SlidingWindow::Time(d) if !(MIN_WINDOW_TIME..=MAX_WINDOW_TIME).contains(&d) => {
                return Err(ConfigError::new(
                    "window",
                    "time must be between 20ms and 24h",
                    d,
                ));
            }
            _ => {}
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::new("minimum_calls", "must be at least 1", 0));
        }
        if let SlidingWindow::Count(n) = self.window
            && self.minimum_calls > n
        {
            return Err(ConfigError::new(
                "minimum_calls",
                "must not exceed the count-based window (the breaker could never trip)",
                self.minimum_calls,
            ));
        }
        rate("failure_rate", self.failure_rate)?;
        rate("slow_call_rate", self.slow_call_rate)?;
        rate("probe_success_rate", self.probe_success_rate)?;
        if self.slow_call_duration == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "slow_call_duration",
                "must be > 0 (use None to turn the rule off)",
                Duration::ZERO,
            ));
        }
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                "consecutive_failures",
                "must be at least 1 (use None to turn the rule off)",
                0,
            ));
        }
        if self.open_duration.is_zero() {
            return Err(ConfigError::new(
                "open_duration",
                "must be > 0",
                Duration::ZERO,
            ));
        }
        if let Some(b) = self.backoff {
            if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
                return Err(ConfigError::new(
                    "backoff.multiplier",
                    "must be finite and >= 1",
                    b.multiplier,
                ));
            }
            if b.max < self.open_duration {
                return Err(ConfigError::new(
                    "backoff.max",
                    "must be >= open_duration",
                    b.max,
                ));
            }
            if !(b.jitter.is_finite() && (0.0..1.0).contains(&b.jitter)) {
                return Err(ConfigError::new(
                    "backoff.jitter",
                    "must be a fraction in [0, 1)",
                    b.jitter,
                ));
            }
        }
        if self.permitted_probes == 0 || self.permitted_probes > MAX_PROBES {
            return Err(ConfigError::new(
                "permitted_probes",
                "must be in 1..=1000",
                self.permitted_probes,
            ));
        }
        if self.max_half_open_wait.is_zero() || self.max_half_open_wait > MAX_HALF_OPEN_WAIT {
            return Err(ConfigError::new(
                "max_half_open_wait",
                "must be > 0 and at most 24h",
                self.max_half_open_wait,
            ));
        }
        Ok(())
    }
}
