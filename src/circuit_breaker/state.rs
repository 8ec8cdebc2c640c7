//! The breaker's decision core: a synchronous state machine with no tokio or tower in it.
//!
//! The state lives in one atomic word (state, generation, half-open probe counts), so the
//! common decisions are a load (closed: admit) or a compare-and-swap (half-open: reserve a
//! probe slot). Transitions are rare and happen under a mutex, which keeps their side data
//! (open-until, half-open start, trip count) consistent; the word is published last.

use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU64;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::classify::{Outcome, OutcomeKind};
use crate::error::ConfigError;
use crate::sync::{
    AtomicU32, AtomicU64, Mutex, Ordering, Padded, StripedCounter, coarse_ticks, coarse_ticks_in,
    lock, store_buffer_fence,
};

use super::config::{CircuitBreakerConfig, SlidingWindow};
use super::window::{BUCKETS, CountWindow, Recorded, TimeWindow, WindowCounts};

/// The state of a circuit breaker.
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
///
/// let breaker = CircuitBreakerLayer::builder().build().unwrap().handle();
/// assert_eq!(breaker.state(), State::Closed);
/// breaker.force_open();
/// assert_eq!(breaker.state(), State::ForcedOpen);
/// assert!(!breaker.state().admits_all());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum State {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are rejected until the open duration has passed.
    Open,
    /// A limited number of probes are admitted; their verdict closes or reopens the breaker.
    HalfOpen,
    /// Forced open by an operator: every call is rejected until reset.
    ForcedOpen,
    /// Disabled by an operator: every call is admitted and counted, the breaker never trips.
    Disabled,
    /// Every call is admitted; when the rates would trip the breaker, a would-trip transition
    /// is reported and the window starts afresh, but nothing is ever rejected.
    MetricsOnly,
}

impl State {
    const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
        State::MetricsOnly,
    ];

    /// Whether calls are admitted without limit in this state.
    ///
    /// ```
    /// use palisade::circuit_breaker::State;
    ///
    /// assert!(
    ///     State::Closed.admits_all()
    ///         && State::Disabled.admits_all()
    ///         && State::MetricsOnly.admits_all()
    /// );
    /// assert!(
    ///     !State::Open.admits_all()
    ///         && !State::HalfOpen.admits_all()
    ///         && !State::ForcedOpen.admits_all()
    /// );
    /// ```
    pub const fn admits_all(self) -> bool {
        matches!(self, State::Closed | State::Disabled | State::MetricsOnly)
    }

    /// A small number for gauges: Closed 0, Open 1, HalfOpen 2, ForcedOpen 3, Disabled 4,
    /// MetricsOnly 5.
    ///
    /// ```
    /// use palisade::circuit_breaker::State;
    ///
    /// assert_eq!(State::Closed.as_index(), 0);
    /// assert_eq!(State::HalfOpen.as_index(), 2);
    /// assert_eq!(State::MetricsOnly.as_index(), 5);
    /// ```
    pub const fn as_index(self) -> u8 {
        self as u8
    }
}

/// Current time as a duration since an origin of the caller's choosing, read lazily.
///
/// The closed path needs no clock: pass a closure (`|| clock.now()`) and it is only called when
/// a rule needs the time. A plain [`Duration`] works too.
///
/// ```
/// use std::cell::Cell;
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
/// use palisade::classify::Outcome;
///
/// let sm = StateMachine::new(&CircuitBreakerConfig::default()).unwrap();
/// // A closure is only called when a rule needs the time: a closed breaker does not.
/// let reads = Cell::new(0);
/// let clock = || {
///     reads.set(reads.get() + 1);
///     Duration::from_secs(1)
/// };
/// let permit = sm.admit(clock).unwrap();
/// sm.record(permit, Outcome::success(), clock);
/// assert_eq!(reads.get(), 0);
/// // A plain Duration is a time too.
/// let permit = sm.admit(Duration::from_secs(2)).unwrap();
/// sm.release(permit);
/// ```
pub trait Now {
    /// The current time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::Now;
    ///
    /// assert_eq!(Duration::from_secs(3).now(), Duration::from_secs(3));
    /// assert_eq!(
    ///     (|| Duration::from_millis(5)).now(),
    ///     Duration::from_millis(5)
    /// );
    /// ```
    fn now(self) -> Duration;
}

impl Now for Duration {
    fn now(self) -> Duration {
        self
    }
}

impl<F: FnOnce() -> Duration> Now for F {
    fn now(self) -> Duration {
        self()
    }
}

/// Reads the clock at most once.
struct Clock<N> {
    source: Option<N>,
    value: u64,
}

impl<N: Now> Clock<N> {
    fn new(source: N) -> Self {
        Self {
            source: Some(source),
            value: 0,
        }
    }

    fn get(&mut self) -> u64 {
        if let Some(source) = self.source.take() {
            self.value = nanos(source.now());
        }
        self.value
    }
}

#[inline]
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// An admission. Hand it back to [`StateMachine::record`] (or [`StateMachine::release`]) exactly
/// once: a half-open probe holds a slot until then.
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
/// use palisade::classify::Outcome;
///
/// let sm = StateMachine::new(&CircuitBreakerConfig::default()).unwrap();
/// let permit = sm.admit(Duration::ZERO).unwrap();
/// assert!(!permit.is_probe());
/// sm.record(permit, Outcome::success(), Duration::from_millis(3)); // hand it back, once
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit must be recorded or released, or a probe slot stays taken"]
pub struct Permit(NonZeroU64);

impl Permit {
    #[inline]
    fn new(generation: u32, probe: bool) -> Self {
        // generation | probe | 1: one aligned word, and `Option<Permit>` costs nothing more.
        Self(NonZeroU64::MIN | (u64::from(probe) << 1) | (u64::from(generation) << 2))
    }

    /// Whether this call is a half-open probe.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.consecutive_failures = Some(1);
    /// config.open_duration = Duration::from_secs(10);
    /// let sm = StateMachine::new(&config).unwrap();
    /// let permit = sm.admit(Duration::ZERO).unwrap();
    /// assert!(!permit.is_probe()); // closed
    /// sm.record(
    ///     permit,
    ///     palisade::classify::Outcome::failure(),
    ///     Duration::ZERO,
    /// ); // opens
    /// let probe = sm.admit(Duration::from_secs(10)).unwrap(); // half-open after 10 s
    /// assert!(probe.is_probe());
    /// # sm.release(probe);
    /// ```
    #[inline]
    pub fn is_probe(&self) -> bool {
        self.0.get() & 0b10 != 0
    }

    /// The generation of the state the call was admitted in.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
    /// use palisade::classify::Outcome;
    ///
    /// let sm = StateMachine::new(&CircuitBreakerConfig::default()).unwrap();
    /// let early = sm.admit(Duration::ZERO).unwrap();
    /// assert_eq!(early.generation(), 0);
    /// sm.force_open(Duration::ZERO);
    /// sm.reset(Duration::ZERO); // two transitions later...
    /// let late = sm.admit(Duration::ZERO).unwrap();
    /// assert_eq!(late.generation(), 2);
    /// // ...the early call's outcome belongs to another state and changes nothing.
    /// sm.record(early, Outcome::failure(), Duration::ZERO);
    /// assert_eq!(sm.snapshot(Duration::ZERO).failures, 0);
    /// # sm.release(late);
    /// ```
    #[inline]
    pub fn generation(&self) -> u32 {
        (self.0.get() >> 2) as u32
    }
}

/// Why a call was rejected.
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerConfig, RejectReason, StateMachine};
///
/// let sm = StateMachine::new(&CircuitBreakerConfig::default()).unwrap();
/// sm.force_open(Duration::ZERO);
/// let rejection = sm.admit(Duration::ZERO).unwrap_err();
/// assert_eq!(rejection.reason, RejectReason::ForcedOpen);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum RejectReason {
    /// The breaker is open.
    Open,
    /// The breaker is half-open and every probe slot is taken.
    HalfOpenFull,
    /// An operator forced the breaker open.
    ForcedOpen,
}

/// A rejected admission.
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerConfig, RejectReason, StateMachine};
/// use palisade::classify::Outcome;
///
/// let mut config = CircuitBreakerConfig::default();
/// config.consecutive_failures = Some(1);
/// config.open_duration = Duration::from_secs(30);
/// let sm = StateMachine::new(&config).unwrap();
/// let permit = sm.admit(Duration::ZERO).unwrap();
/// sm.record(permit, Outcome::failure(), Duration::from_secs(1)); // opens at t = 1 s
///
/// let rejection = sm.admit(Duration::from_secs(5)).unwrap_err();
/// assert_eq!(rejection.reason, RejectReason::Open);
/// assert_eq!(rejection.retry_at, Some(Duration::from_secs(31)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// When a probe can be admitted, on the caller's clock: the end of the open duration; for
    /// a full half-open breaker, the time its probes in flight would use up
    /// `max_half_open_wait` at the latest, when it closes (a probe can then be admitted) or
    /// reopens (for another open duration). `None` when forced open.
    pub retry_at: Option<Duration>,
}

impl Rejection {
    /// Time from `now` until a probe can be admitted (zero if that time has come).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{RejectReason, Rejection};
    ///
    /// let rejection = Rejection {
    ///     reason: RejectReason::Open,
    ///     retry_at: Some(Duration::from_secs(31)),
    /// };
    /// assert_eq!(
    ///     rejection.retry_after(Duration::from_secs(5)),
    ///     Some(Duration::from_secs(26))
    /// );
    /// assert_eq!(
    ///     rejection.retry_after(Duration::from_secs(40)),
    ///     Some(Duration::ZERO)
    /// );
    /// ```
    pub fn retry_after(&self, now: Duration) -> Option<Duration> {
        self.retry_at.map(|at| at.saturating_sub(now))
    }
}

/// A rejected admission as palisade's own shells keep it: one word (the reason, whether a
/// probe time is known, and that time in nanoseconds on the caller's clock, saturated at 2^60 -
/// 1, some 36 years), so that an admission's `Result` comes back in two registers. A
/// [`Rejection`] (with its `Option<Duration>`) comes back through memory, and copying it out of
/// there stalled the rejection path. Never zero, so that `Option<Refusal>` is one word too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal(NonZeroU64);

const REFUSAL_SET: NonZeroU64 = NonZeroU64::new(1 << 2).unwrap();
const REFUSAL_TIMED: u64 = 1 << 3;
const REFUSAL_AT_SHIFT: u32 = 4;

impl Refusal {
    #[inline]
    fn new(reason: RejectReason, retry_at: Option<u64>) -> Self {
        let reason = match reason {
            RejectReason::Open => 0,
            RejectReason::HalfOpenFull => 1,
            RejectReason::ForcedOpen => 2,
        };
        let timed = match retry_at {
            Some(at) => REFUSAL_TIMED | (at.min(u64::MAX >> REFUSAL_AT_SHIFT) << REFUSAL_AT_SHIFT),
            None => 0,
        };
        Self(REFUSAL_SET | reason | timed)
    }

    /// Why.
    #[inline]
    pub(crate) fn reason(self) -> RejectReason {
        match self.0.get() & 0b11 {
            0 => RejectReason::Open,
            1 => RejectReason::HalfOpenFull,
            _ => RejectReason::ForcedOpen,
        }
    }

    /// When a probe can be admitted, on the caller's clock (see [`Rejection::retry_at`]).
    #[inline]
    pub(crate) fn retry_at(self) -> Option<Duration> {
        let w = self.0.get();
        (w & REFUSAL_TIMED != 0).then(|| Duration::from_nanos(w >> REFUSAL_AT_SHIFT))
    }
}

/// What an admission's rejection is made into: palisade's services keep a one-word
/// [`Refusal`] (its probe time saturated, harmless on their clock, which counts from the
/// breaker's creation); the public [`StateMachine::admit`] gives an exact [`Rejection`], on a
/// clock whose origin the caller chose.
pub(crate) trait Reject {
    fn made(reason: RejectReason, retry_at: Option<u64>) -> Self;
}

impl Reject for Refusal {
    #[inline]
    fn made(reason: RejectReason, retry_at: Option<u64>) -> Self {
        Refusal::new(reason, retry_at)
    }
}

impl Reject for Rejection {
    #[inline]
    fn made(reason: RejectReason, retry_at: Option<u64>) -> Self {
        Rejection {
            reason,
            retry_at: retry_at.map(Duration::from_nanos),
        }
    }
}

/// What made the breaker change state.
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{Cause, CircuitBreakerConfig, State, StateMachine};
/// use palisade::classify::Outcome;
/// use std::sync::{Arc, Mutex};
///
/// let mut config = CircuitBreakerConfig::default();
/// config.consecutive_failures = Some(2);
/// let causes = Arc::new(Mutex::new(Vec::new()));
/// let seen = causes.clone();
/// let sm = StateMachine::new(&config)
///     .unwrap()
///     .with_observer(move |_, t| seen.lock().unwrap().push((t.to, t.cause)));
/// for _ in 0..2 {
///     let permit = sm.admit(Duration::ZERO).unwrap();
///     sm.record(permit, Outcome::failure(), Duration::ZERO);
/// }
/// sm.reset(Duration::ZERO);
/// assert_eq!(
///     *causes.lock().unwrap(),
///     [
///         (State::Open, Cause::ConsecutiveFailures),
///         (State::Closed, Cause::Operator),
///     ]
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Cause {
    /// The failure rate reached its threshold.
    FailureRate,
    /// The slow-call rate reached its threshold.
    SlowCallRate,
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// The open duration passed.
    OpenDurationElapsed,
    /// Enough probes succeeded.
    ProbesSucceeded,
    /// Too many probes failed.
    ProbesFailed,
    /// The half-open trial spent `max_half_open_wait` with probes in flight.
    HalfOpenTimeout,
    /// An operator asked for it.
    Operator,
}

/// A change of state (or, in `MetricsOnly`, a trip that would have happened).
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{
///     Cause, CircuitBreakerConfig, SlidingWindow, State, StateMachine,
/// };
/// use palisade::classify::Outcome;
/// use std::sync::{Arc, Mutex};
///
/// let mut config = CircuitBreakerConfig::default();
/// config.window = SlidingWindow::Count(4);
/// config.minimum_calls = 4;
/// config.open_duration = Duration::from_secs(10);
/// let trips = Arc::new(Mutex::new(Vec::new()));
/// let seen = trips.clone();
/// let sm = StateMachine::new(&config)
///     .unwrap()
///     .with_observer(move |_, t| seen.lock().unwrap().push(*t));
/// for outcome in [
///     Outcome::success(),
///     Outcome::failure(),
///     Outcome::success(),
///     Outcome::failure(),
/// ] {
///     let permit = sm.admit(Duration::from_secs(1)).unwrap();
///     sm.record(permit, outcome, Duration::from_secs(1));
/// }
/// let t = trips.lock().unwrap()[0];
/// assert_eq!(
///     (t.from, t.to, t.cause),
///     (State::Closed, State::Open, Cause::FailureRate)
/// );
/// assert_eq!((t.window.calls, t.window.failures), (4, 2));
/// assert_eq!(
///     (t.open_for, t.at, t.would_trip),
///     (Some(Duration::from_secs(10)), Duration::from_secs(1), false)
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// Generation of the state after (for a would-trip: the unchanged generation).
    pub generation: u32,
    /// State before.
    pub from: State,
    /// State after (for a would-trip: `Open`, while the breaker stays `MetricsOnly`).
    pub to: State,
    /// What caused it.
    pub cause: Cause,
    /// The window's counts that caused a trip (zero for other transitions).
    pub window: WindowCounts,
    /// For a transition to `Open`: how long it stays open.
    pub open_for: Option<Duration>,
    /// Whether this is only a would-trip report from a `MetricsOnly` breaker.
    pub would_trip: bool,
    /// When it happened, on the caller's clock.
    pub at: Duration,
}

/// What [`StateMachine::snapshot`] reads.
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerConfig, State, StateMachine};
/// use palisade::classify::Outcome;
///
/// let mut config = CircuitBreakerConfig::default();
/// config.consecutive_failures = Some(1);
/// config.open_duration = Duration::from_secs(10);
/// let sm = StateMachine::new(&config).unwrap();
/// let permit = sm.admit(Duration::ZERO).unwrap();
/// sm.record(permit, Outcome::failure(), Duration::ZERO);
/// let _ = sm.admit(Duration::from_secs(4)); // rejected
///
/// let snapshot = sm.snapshot(Duration::from_secs(4));
/// assert_eq!(snapshot.state, State::Open);
/// assert_eq!((snapshot.rejected, snapshot.consecutive_trips), (1, 1));
/// assert_eq!(snapshot.retry_after, Some(Duration::from_secs(6)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Snapshot {
    /// The state.
    pub state: State,
    /// Generation: how many transitions since creation.
    pub generation: u32,
    /// Outcomes in the window (closed, disabled and metrics-only states).
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// Calls rejected since creation. A service counts its rejection when `poll_ready` decides
    /// it; the [`Rejected`](crate::events::Event::Rejected) event comes with the `call` that
    /// follows, so a service made ready and dropped without a call counts one with no event.
    pub rejected: u64,
    /// Probes in flight (half-open).
    pub probes_in_flight: u32,
    /// Probes that succeeded in this half-open trial.
    pub probe_successes: u32,
    /// Probes that failed in this half-open trial.
    pub probe_failures: u32,
    /// Consecutive trips without a close in between (drives the backoff).
    pub consecutive_trips: u32,
    /// Time until the next probe is admitted (open).
    pub retry_after: Option<Duration>,
}

// The state word: state (3 bits) | probes in flight (10) | probe successes (10) |
// probe failures (10) | generation (31).
const STATE_MASK: u64 = 0b111;
const PROBE_BITS: u32 = 10;
const PROBE_MASK: u64 = (1 << PROBE_BITS) - 1;
const IN_FLIGHT_SHIFT: u32 = 3;
const OK_SHIFT: u32 = IN_FLIGHT_SHIFT + PROBE_BITS;
const BAD_SHIFT: u32 = OK_SHIFT + PROBE_BITS;
const GEN_SHIFT: u32 = BAD_SHIFT + PROBE_BITS;
const GEN_MASK: u64 = (1 << (64 - GEN_SHIFT)) - 1;

fn encode(state: State, generation: u32) -> u64 {
    state as u64 | ((u64::from(generation) & GEN_MASK) << GEN_SHIFT)
}

#[inline]
fn state_of(w: u64) -> State {
    State::ALL
        .get((w & STATE_MASK) as usize)
        .copied()
        .unwrap_or(State::Closed)
}

#[inline]
fn gen_of(w: u64) -> u32 {
    ((w >> GEN_SHIFT) & GEN_MASK) as u32
}

/// Whether generation `a` came after `b`: generations count up and wrap, and of two in use
/// at once neither is half the counter's range ahead.
pub(crate) fn generation_after(a: u32, b: u32) -> bool {
    let ahead = u64::from(a.wrapping_sub(b)) & GEN_MASK;
    ahead != 0 && ahead <= GEN_MASK / 2
}

fn next_gen(w: u64) -> u32 {
    ((u64::from(gen_of(w)) + 1) & GEN_MASK) as u32
}

const UNARMED: u64 = 0;
const ARMED: u64 = 1;
const FIRED: u64 = 2;

fn timer_word(generation: u32, bits: u64) -> u64 {
    (u64::from(generation) << 2) | bits
}

fn probes_of(w: u64) -> (u32, u32, u32) {
    (
        ((w >> IN_FLIGHT_SHIFT) & PROBE_MASK) as u32,
        ((w >> OK_SHIFT) & PROBE_MASK) as u32,
        ((w >> BAD_SHIFT) & PROBE_MASK) as u32,
    )
}

#[derive(Debug)]
enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    fn reset(&self, epoch: u32) {
        match self {
            Window::Count(w) => w.reset(epoch),
            Window::Time(w) => w.reset(epoch),
        }
    }

    fn counts(&self, now: u64) -> WindowCounts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now),
        }
    }
}

/// Settings in the form the hot path uses.
#[derive(Debug, Clone)]
struct Settings {
    minimum_calls: u32,
    failure_rate: f64,
    slow_nanos: Option<u64>,
    slow_call_rate: f64,
    consecutive_failures: Option<u32>,
    open_nanos: u64,
    backoff: Option<(f64, u64, f64)>,
    max_pushback: u64,
    probes: u32,
    required_successes: u32,
    max_half_open_wait: u64,
}

#[derive(Debug)]
struct Aux {
    /// Trips since the breaker last closed.
    trips: u32,
    rng: u64,
}

type Observer = Box<dyn Fn(&StateMachine, &Transition) + Send + Sync>;

/// The circuit breaker's decision core.
///
/// Thread-safe and lock-free on the admission path. Time is passed in by the caller as a
/// [`Duration`] since any fixed origin, lazily (see [`Now`]), so the machine can be driven by a
/// real clock, tokio's (pausable) clock, or a test's counter.
///
/// ```
/// use std::time::Duration;
/// use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State, StateMachine};
/// use palisade::classify::Outcome;
///
/// let mut config = CircuitBreakerConfig::default();
/// config.window = SlidingWindow::Count(4);
/// config.minimum_calls = 2;
/// let sm = StateMachine::new(&config).unwrap();
/// let t = Duration::ZERO;
/// for _ in 0..2 {
///     let permit = sm.admit(t).unwrap();
///     sm.record(permit, Outcome::failure(), t);
/// }
/// assert_eq!(sm.snapshot(t).state, State::Open);
/// assert!(sm.admit(t).is_err());
/// ```
pub struct StateMachine {
    word: Padded<AtomicU64>,
    window: Window,
    consecutive: Padded<AtomicU32>,
    rejected: StripedCounter,
    open_until: AtomicU64,
    /// 1 while the window holds failures or slow calls but fewer than `minimum_calls` (its
    /// rates could not be judged): a success that makes up the minimum can find them at their
    /// threshold, so successes are judged too until then. Set (sequentially consistent) by a
    /// record that finds the window short, which then reads the window again; read by a
    /// success after its own record: of a failure and a success racing to the minimum, one
    /// sees the other (the failure the success's record, or the success the flag).
    rate_pending: AtomicU32,
    /// `generation << 2 | UNARMED / ARMED / FIRED`: whether a timer of the shell's will report
    /// the end of the open state of that generation (see `arm_open_timer`).
    open_timer: AtomicU64,
    /// A watch on an armed timer that may never fire (a shell's timer on a current-thread
    /// runtime, which fires timers only when it parks, and may never park again: `block_on`
    /// of a rejected call returns at once, and so does every turn of a loop of them): the
    /// coarse clock's time ([`coarse_ticks`]) by which it should have fired (0: nothing
    /// watched), and its open state's generation. While one is set, each admission that finds
    /// the breaker not closed checks the coarse clock (a few nanoseconds), and once the timer
    /// is overdue treats it as fired.
    watch_until: AtomicU64,
    watch_generation: AtomicU32,
    /// While half-open: when the count of probes in flight last rose from zero (the start of
    /// the current busy spell).
    probes_since: AtomicU64,
    /// While half-open: the time of the trial's earlier busy spells (probes in flight). The
    /// trial reopens once its busy time reaches `max_half_open_wait`.
    probes_busy: AtomicU64,
    /// While half-open: the latest time a probe's admission or record read. A spell that a
    /// clockless [`release`](Self::release) ends is taken to have lasted until then.
    probes_seen: AtomicU64,
    pushback_until: AtomicU64,
    aux: Mutex<Aux>,
    settings: Settings,
    observer: Option<Observer>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("state", &state_of(self.word.load(Ordering::Relaxed)))
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl StateMachine {
    /// A closed breaker with a validated configuration.
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, State, StateMachine};
    ///
    /// let sm = StateMachine::new(&CircuitBreakerConfig::default()).unwrap();
    /// assert_eq!(sm.snapshot(std::time::Duration::ZERO).state, State::Closed);
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.permitted_probes = 0;
    /// assert_eq!(
    ///     StateMachine::new(&config).unwrap_err().field(),
    ///     "permitted_probes"
    /// );
    /// ```
    pub fn new(config: &CircuitBreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let slow = config.slow_call_duration.map(nanos);
        let window = match config.window {
            SlidingWindow::Count(n) => Window::Count(CountWindow::new(n, slow.is_some(), 0)),
            SlidingWindow::Time(d) => Window::Time(TimeWindow::new(nanos(d).div_ceil(BUCKETS), 0)),
        };
        let probes = config.permitted_probes;
        let required = ((config.probe_success_rate * f64::from(probes)) - 1e-9).ceil();
        let required_successes = (required as u32).clamp(1, probes);
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Ok(Self {
            word: Padded(AtomicU64::new(encode(State::Closed, 0))),
            window,
            consecutive: Padded(AtomicU32::new(0)),
            rejected: StripedCounter::new(),
            open_until: AtomicU64::new(0),
            rate_pending: AtomicU32::new(0),
            open_timer: AtomicU64::new(0),
            watch_until: AtomicU64::new(0),
            watch_generation: AtomicU32::new(0),
            probes_since: AtomicU64::new(0),
            probes_busy: AtomicU64::new(0),
            probes_seen: AtomicU64::new(0),
            pushback_until: AtomicU64::new(0),
            aux: Mutex::new(Aux {
                trips: 0,
                rng: seed | 1,
            }),
            settings: Settings {
                minimum_calls: config.minimum_calls,
                failure_rate: config.failure_rate,
                slow_nanos: slow,
                slow_call_rate: config.slow_call_rate,
                consecutive_failures: config.consecutive_failures,
                open_nanos: nanos(config.open_duration),
                backoff: config
                    .backoff
                    .map(|b| (b.multiplier, nanos(b.max), b.jitter)),
                max_pushback: nanos(config.max_pushback),
                probes,
                required_successes,
                max_half_open_wait: nanos(config.max_half_open_wait),
            },
            observer: None,
        })
    }

    /// Calls `observer` with every transition (after it took effect, outside any lock). A
    /// panicking observer is caught and ignored.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
    ///
    /// let transitions = Arc::new(AtomicU32::new(0));
    /// let count = transitions.clone();
    /// let sm = StateMachine::new(&CircuitBreakerConfig::default())
    ///     .unwrap()
    ///     .with_observer(move |_sm, _transition| {
    ///         count.fetch_add(1, Ordering::Relaxed);
    ///     });
    /// sm.disable(Duration::ZERO);
    /// sm.reset(Duration::ZERO);
    /// assert_eq!(transitions.load(Ordering::Relaxed), 2);
    /// ```
    pub fn with_observer(
        mut self,
        observer: impl Fn(&StateMachine, &Transition) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Whether calls must be timed: the slow-call rule needs each call's duration.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// assert!(!StateMachine::new(&config).unwrap().needs_duration());
    /// config.slow_call_duration = Some(Duration::from_secs(2));
    /// assert!(StateMachine::new(&config).unwrap().needs_duration());
    /// ```
    #[inline]
    pub fn needs_duration(&self) -> bool {
        self.settings.slow_nanos.is_some()
    }

    /// Whether [`record`](Self::record) reads the clock on every call (time-based window).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, StateMachine};
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// assert!(!StateMachine::new(&config).unwrap().needs_clock_to_record());
    /// config.window = SlidingWindow::Time(Duration::from_secs(60));
    /// assert!(StateMachine::new(&config).unwrap().needs_clock_to_record());
    /// ```
    pub fn needs_clock_to_record(&self) -> bool {
        matches!(self.window, Window::Time(_))
    }

    /// Asks to make a call. Closed: admitted without reading the clock. Open: rejected until
    /// the open duration has passed, then the breaker turns half-open. Half-open: admitted as a
    /// probe while a slot is free.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, State, StateMachine};
    /// use palisade::classify::Outcome;
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.consecutive_failures = Some(1);
    /// config.open_duration = Duration::from_secs(10);
    /// config.permitted_probes = 1;
    /// let sm = StateMachine::new(&config).unwrap();
    ///
    /// let permit = sm.admit(Duration::ZERO).unwrap();
    /// sm.record(permit, Outcome::failure(), Duration::ZERO);
    /// assert!(sm.admit(Duration::from_secs(9)).is_err()); // open
    /// let probe = sm.admit(Duration::from_secs(10)).unwrap(); // half-open: the one probe
    /// assert!(sm.admit(Duration::from_secs(10)).is_err()); // its slot is taken
    /// sm.record(probe, Outcome::success(), Duration::from_secs(11));
    /// assert_eq!(sm.snapshot(Duration::from_secs(11)).state, State::Closed);
    /// ```
    #[inline]
    pub fn admit(&self, now: impl Now) -> Result<Permit, Rejection> {
        let w = self.word.load(Ordering::Acquire);
        if w & STATE_MASK == State::Closed as u64 {
            return Ok(Permit::new(gen_of(w), false));
        }
        self.admit_slow(w, now)
    }

    /// The closed path of [`admit`](Self::admit) alone: a permit if the breaker is closed.
    /// `None` says nothing else: ask [`admit_not_closed`](Self::admit_not_closed) then.
    #[inline]
    pub(crate) fn admit_closed(&self) -> Option<Permit> {
        let w = self.word.load(Ordering::Acquire);
        (w & STATE_MASK == State::Closed as u64).then(|| Permit::new(gen_of(w), false))
    }

    /// [`admit`](Self::admit) past the closed path (which it still takes if the breaker has
    /// closed since), with the rejection in one word (palisade's shells keep it).
    #[inline(never)]
    pub(crate) fn admit_not_closed(&self, now: impl Now) -> Result<Permit, Refusal> {
        self.admit_slow(self.word.load(Ordering::Acquire), now)
    }

    /// The state word now, for a shell that remembers the state a refusal was made in
    /// ([`refuses_again`](Self::refuses_again)).
    #[inline]
    pub(crate) fn word_now(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    /// Whether a call is refused again with `refusal`, made in state word `w`, with no clock
    /// read: the breaker is still in `w`, and `w` is forced open, or open with its timer armed
    /// (and, where the timer is watched, not overdue on the coarse clock), and `refusal` is
    /// the one [`admit_slow`](Self::admit_slow) would make now (the same reason and probe
    /// time: a generation that came round again after 2^31 transitions brings its own). These
    /// are the conditions under which `admit_slow` rejects without a clock. Counts the
    /// rejection when it does; when not, the caller asks
    /// [`admit_not_closed`](Self::admit_not_closed).
    #[inline]
    pub(crate) fn refuses_again(&self, w: u64, refusal: Refusal) -> bool {
        let watched = self.watch_until.load(Ordering::Acquire);
        if watched != 0 {
            self.check_watch(watched);
        }
        if self.word.load(Ordering::Acquire) != w {
            return false;
        }
        let again = match state_of(w) {
            State::ForcedOpen => refusal == Refusal::new(RejectReason::ForcedOpen, None),
            State::Open => {
                self.open_timer.load(Ordering::Acquire) == timer_word(gen_of(w), ARMED)
                    && refusal
                        == Refusal::new(
                            RejectReason::Open,
                            Some(self.open_until.load(Ordering::Acquire)),
                        )
            }
            _ => false,
        };
        if again {
            self.rejected.add(1);
        }
        again
    }

    #[inline(never)]
    fn admit_slow<R: Reject>(&self, w: u64, now: impl Now) -> Result<Permit, R> {
        let watched = self.watch_until.load(Ordering::Acquire);
        if watched != 0 {
            self.check_watch(watched);
        }
        // The common rejections, kept out of the loop's larger frame. Open: a timer will say
        // when the open duration is over, so no clock is needed.
        match state_of(w) {
            State::Open => {
                let until = self.open_until.load(Ordering::Acquire);
                if self.open_timer.load(Ordering::Acquire) == timer_word(gen_of(w), ARMED) {
                    return Err(self.reject(RejectReason::Open, Some(until)));
                }
            }
            State::ForcedOpen => return Err(self.reject(RejectReason::ForcedOpen, None)),
            _ => {}
        }
        self.admit_loop(w, now)
    }

    #[inline(never)]
    fn admit_loop<R: Reject>(&self, mut w: u64, now: impl Now) -> Result<Permit, R> {
        let mut clock = Clock::new(now);
        let mut probed = false;
        loop {
            match state_of(w) {
                State::Closed | State::Disabled | State::MetricsOnly => {
                    return Ok(Permit::new(gen_of(w), false));
                }
                State::ForcedOpen => return Err(self.reject(RejectReason::ForcedOpen, None)),
                State::Open => {
                    let until = self.open_until.load(Ordering::Acquire);
                    if self.open_timer.load(Ordering::Acquire) == timer_word(gen_of(w), ARMED) {
                        // A timer will say when the open duration is over: no clock needed.
                        return Err(self.reject(RejectReason::Open, Some(until)));
                    }
                    let t = clock.get();
                    // Once per admission at most: at a saturated clock a trial can end the
                    // moment it starts, and the caller must get an answer, not a loop.
                    if t < until || probed {
                        return Err(self.reject(RejectReason::Open, Some(until)));
                    }
                    probed = true;
                    self.enter_half_open(w, t);
                }
                State::HalfOpen => {
                    let t = clock.get();
                    // The word again, after the clock: the spell's start stored below must be
                    // no older than the word it is stored on.
                    let fresh = self.word.load(Ordering::Acquire);
                    if fresh != w {
                        w = fresh;
                        continue;
                    }
                    self.probes_seen.fetch_max(t, Ordering::AcqRel);
                    let (in_flight, ok, bad) = probes_of(w);
                    let busy = self.busy_at(in_flight, t);
                    let wait = self.settings.max_half_open_wait;
                    if busy >= wait {
                        self.reopen_if_busy(gen_of(w), t);
                    } else {
                        if in_flight + ok + bad >= self.settings.probes {
                            // The trial ends by the time its probes in flight run out of it.
                            let by = t.saturating_add(wait - busy);
                            return Err(self.reject(RejectReason::HalfOpenFull, Some(by)));
                        }
                        if in_flight == 0 {
                            // The first probe in flight starts a busy spell. Set before the
                            // compare-and-swap, so that no reader finds this probe in flight
                            // with an older spell's start; one that loses the swap to another
                            // first probe wrote a time as good as that one's.
                            // (The latest wins: a first probe's admission delayed past
                            // another's cannot move that spell's start back.)
                            self.probes_since.fetch_max(t, Ordering::AcqRel);
                        }
                        match self.word.compare_exchange_weak(
                            w,
                            w + (1 << IN_FLIGHT_SHIFT),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => {
                                return Ok(Permit::new(gen_of(w), true));
                            }
                            Err(actual) => {
                                w = actual;
                                continue;
                            }
                        }
                    }
                }
            }
            w = self.word.load(Ordering::Acquire);
        }
    }

    fn reject<R: Reject>(&self, reason: RejectReason, retry_at: Option<u64>) -> R {
        self.rejected.add(1);
        R::made(reason, retry_at)
    }

    /// Whether `permit` was given in the state the breaker is in now (no transition, reset or
    /// override since).
    #[inline]
    pub(crate) fn holds(&self, permit: &Permit) -> bool {
        gen_of(self.word.load(Ordering::Acquire)) == permit.generation()
    }

    /// Gives a permit back without an outcome (the call was cancelled or did not count).
    ///
    /// A probe given back this way frees its slot without a clock, and nothing is judged: if
    /// it was the last in flight, its busy spell is taken to end at the latest time a probe's
    /// admission or record read (see `max_half_open_wait`), and the trial is judged at the
    /// next admission or read. To have a cancelled probe's own time counted, record it as
    /// [`Outcome::ignored`] at the current time instead, as palisade's tower layer and
    /// `Handle::call` do.
    ///
    /// [`Outcome::ignored`]: crate::classify::Outcome::ignored
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.permitted_probes = 1;
    /// let sm = StateMachine::new(&config).unwrap();
    /// sm.force_open(Duration::ZERO);
    /// sm.reset(Duration::ZERO);
    /// let permit = sm.admit(Duration::ZERO).unwrap();
    /// sm.release(permit); // the call was cancelled: nothing is counted
    /// assert_eq!(sm.snapshot(Duration::ZERO).calls, 0);
    /// ```
    #[inline]
    pub fn release(&self, permit: Permit) {
        if !permit.is_probe() {
            return; // a closed call's permit holds nothing
        }
        // A probe's slot, with no clock: nothing is judged (a verdict needs the time).
        let generation = permit.generation();
        let since = self.probes_since.load(Ordering::Acquire);
        let mut w = self.word.load(Ordering::Acquire);
        while gen_of(w) == generation && state_of(w) == State::HalfOpen {
            // Read while this probe is still in flight: no later spell can have begun, so the
            // latest time read belongs to this one.
            let seen = self.probes_seen.load(Ordering::Acquire);
            let new = w - (1 << IN_FLIGHT_SHIFT);
            match self
                .word
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if probes_of(new).0 == 0 {
                        // The spell ends here, taken to last until the latest time a probe
                        // read: so a trial whose probes are all given back this way still
                        // ends once their time adds up.
                        self.end_spell(generation, seen.saturating_sub(since));
                    }
                    return;
                }
                Err(actual) => w = actual,
            }
        }
    }

    /// Records the outcome of an admitted call. An outcome whose permit belongs to an earlier
    /// generation (the breaker changed state since the call was admitted) changes nothing;
    /// an ignored outcome only gives back a probe slot (its time in flight counting towards
    /// the trial's `max_half_open_wait`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
    /// use palisade::classify::Outcome;
    ///
    /// let sm = StateMachine::new(&CircuitBreakerConfig::default()).unwrap();
    /// for outcome in [Outcome::success(), Outcome::failure(), Outcome::ignored()] {
    ///     let permit = sm.admit(Duration::ZERO).unwrap();
    ///     sm.record(permit, outcome, Duration::ZERO);
    /// }
    /// let snapshot = sm.snapshot(Duration::ZERO);
    /// assert_eq!((snapshot.calls, snapshot.failures), (2, 1)); // the ignored one is not counted
    /// ```
    #[inline]
    pub fn record(&self, permit: Permit, outcome: Outcome, now: impl Now) {
        // The healthy path: a success, not a probe, no slow-call or consecutive rule, and no
        // failure waiting for `minimum_calls`. It raises no rate: only the window sees it (a
        // count window needs no clock), unless it is a time window's first record of a new
        // bucket (older buckets may have expired, raising the rates: judged then).
        if let (false, OutcomeKind::Success, None, None) = (
            permit.is_probe(),
            outcome.kind(),
            self.settings.slow_nanos,
            self.settings.consecutive_failures,
        ) {
            let generation = permit.generation();
            match &self.window {
                Window::Count(window) => {
                    // Only a success into a window still filling can make up the minimum;
                    // the flag is read after the record (see `rate_pending`).
                    if window.record(generation, false, false) == Recorded::Filling
                        && self.awaits_minimum()
                    {
                        self.judge_pending(generation, nanos(now.now()));
                    }
                }
                Window::Time(window) => {
                    let t = nanos(now.now());
                    if let Some(counts) = window.record(generation, t, false, false) {
                        self.judge_success(generation, counts, t);
                    } else if self.awaits_minimum() {
                        self.judge_pending(generation, t);
                    }
                }
            }
            return;
        }
        self.record_slow(permit, outcome, now);
    }

    /// Whether failures wait for `minimum_calls`, read after this thread's record (see
    /// `rate_pending`).
    #[inline]
    fn awaits_minimum(&self) -> bool {
        store_buffer_fence();
        self.rate_pending.load(Ordering::SeqCst) != 0
    }

    /// A success found counts to judge (a time window's new bucket): trips if a rate is at
    /// its threshold.
    #[cold]
    #[inline(never)]
    fn judge_success(&self, generation: u32, counts: WindowCounts, t: u64) {
        let (cause, counts) = self.rate_cause(counts, generation, || t);
        if let Some(cause) = cause {
            self.trip_if_current(generation, t, cause, counts);
        }
    }

    /// A success recorded while failures wait for `minimum_calls`: judges the window as it
    /// is now (it may have made up the minimum with their rate at its threshold). Not for an
    /// outcome from an older state: it would judge, and clear the flag of, a window it did
    /// not count in, and could not trip the breaker it finds.
    #[cold]
    #[inline(never)]
    fn judge_pending(&self, generation: u32, t: u64) {
        if gen_of(self.word.load(Ordering::Acquire)) == generation {
            self.judge_success(generation, self.window.counts(t), t);
        }
    }

    /// Whether `c`'s rates open the breaker, and which, with the counts judged; keeps
    /// `rate_pending` (see there), for `generation` only. `t` gives the time to read a time
    /// window at.
    fn rate_cause(
        &self,
        mut c: WindowCounts,
        generation: u32,
        t: impl FnOnce() -> u64,
    ) -> (Option<Cause>, WindowCounts) {
        if c.calls < self.settings.minimum_calls {
            if c.failures == 0 && c.slow_calls == 0 {
                return (None, c);
            }
            if self.rate_pending.load(Ordering::SeqCst) == 0 {
                self.rate_pending.store(1, Ordering::SeqCst);
            }
            store_buffer_fence();
            // A success that made up the minimum after `c` was read, and read the flag
            // before it was set, judged nothing: look again now that it is set. (Either this
            // read finds that success's record, or that success finds the flag.)
            c = match &self.window {
                Window::Count(w) => w.counts(),
                Window::Time(w) => w.counts(t()),
            };
            if c.calls < self.settings.minimum_calls {
                return (None, c);
            }
        }
        // A window of a later state is not this outcome's to judge, nor its flag to clear.
        if gen_of(self.word.load(Ordering::Acquire)) != generation {
            return (None, c);
        }
        if self.rate_pending.load(Ordering::Relaxed) != 0 {
            self.rate_pending.store(0, Ordering::Relaxed);
        }
        // Either rate can open the breaker, whichever kind of outcome brought it to its
        // threshold's level: a fast failure after slow successes can find the slow-call rate
        // there.
        let cause = if c.failure_rate() >= self.settings.failure_rate {
            Some(Cause::FailureRate)
        } else if self.settings.slow_nanos.is_some()
            && c.slow_call_rate() >= self.settings.slow_call_rate
        {
            Some(Cause::SlowCallRate)
        } else {
            None
        };
        (cause, c)
    }

    /// Whether `c`'s rates are at a threshold (as [`rate_cause`](Self::rate_cause) judges,
    /// without touching `rate_pending`).
    fn rates_reached(&self, c: WindowCounts) -> bool {
        c.calls >= self.settings.minimum_calls
            && (c.failure_rate() >= self.settings.failure_rate
                || (self.settings.slow_nanos.is_some()
                    && c.slow_call_rate() >= self.settings.slow_call_rate))
    }

    /// Trips the breaker for `cause` if it is still closed (or metrics-only) in `generation`.
    fn trip_if_current(&self, generation: u32, t: u64, cause: Cause, counts: WindowCounts) {
        let w = self.word.load(Ordering::Acquire);
        if gen_of(w) == generation && matches!(state_of(w), State::Closed | State::MetricsOnly) {
            self.trip(generation, t, cause, counts);
        }
    }

    #[inline(never)]
    fn record_slow(&self, permit: Permit, outcome: Outcome, now: impl Now) {
        let mut clock = Clock::new(now);
        let slow = match self.settings.slow_nanos {
            Some(limit) => nanos(outcome.duration()) >= limit,
            None => false,
        };
        let generation = permit.generation();
        if permit.is_probe() {
            self.record_probe(generation, outcome, slow, &mut clock);
            return;
        }
        let failed = match outcome.kind() {
            OutcomeKind::Ignored => return,
            OutcomeKind::Failure => true,
            OutcomeKind::Success => false,
        };
        let consecutive_rule = self.settings.consecutive_failures;
        if failed || (consecutive_rule.is_some() && self.consecutive.load(Ordering::Relaxed) != 0) {
            // Off the healthy path: make sure the outcome is not stale before it touches
            // anything but the window (which checks its own epoch).
            let w = self.word.load(Ordering::Acquire);
            if gen_of(w) != generation || !state_of(w).admits_all() {
                return;
            }
        }
        if failed && let Some(pushback) = outcome.pushback() {
            self.note_pushback(pushback, clock.get());
        }
        let consecutive_trip = match consecutive_rule {
            Some(limit) if failed => {
                self.consecutive
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1)
                    >= limit
            }
            Some(_) => {
                if self.consecutive.load(Ordering::Relaxed) != 0 {
                    self.consecutive.store(0, Ordering::Relaxed);
                }
                false
            }
            None => false,
        };
        let counts = match &self.window {
            Window::Count(w) => match w.record(generation, failed, slow) {
                Recorded::Counts(counts) => Some(counts),
                Recorded::Filling | Recorded::Nothing => None,
            },
            Window::Time(w) => w.record(generation, clock.get(), failed, slow),
        };
        // Counts come with a failure or a slow call, and with the first record of a time
        // window's new bucket (older buckets may have expired, raising the rates). A success
        // is judged too while failures wait for `minimum_calls`: it can make up the minimum
        // with their rate still at its threshold.
        // (Not for an outcome from an older state: it would judge, and clear the flag of, a
        // window it did not count in, and could not trip the breaker it finds.)
        store_buffer_fence();
        let counts = match counts {
            None if self.rate_pending.load(Ordering::SeqCst) != 0
                && gen_of(self.word.load(Ordering::Acquire)) == generation =>
            {
                Some(self.window.counts(clock.get()))
            }
            other => other,
        };
        let (cause, counts) = match counts {
            Some(c) => {
                let (cause, c) = self.rate_cause(c, generation, || clock.get());
                (cause, Some(c))
            }
            None => (None, None),
        };
        let cause = cause.or(consecutive_trip.then_some(Cause::ConsecutiveFailures));
        if let Some(cause) = cause {
            let counts = counts.unwrap_or_else(|| self.window.counts(clock.get()));
            self.trip_if_current(generation, clock.get(), cause, counts);
        }
    }

    fn note_pushback(&self, pushback: Duration, t: u64) {
        let capped = nanos(pushback).min(self.settings.max_pushback);
        if capped > 0 {
            self.pushback_until
                .fetch_max(t.saturating_add(capped), Ordering::AcqRel);
        }
    }

    fn record_probe(
        &self,
        generation: u32,
        outcome: Outcome,
        slow: bool,
        clock: &mut Clock<impl Now>,
    ) {
        let (good, bad) = match outcome.kind() {
            OutcomeKind::Success if !slow => (1u64, 0u64),
            OutcomeKind::Success | OutcomeKind::Failure => (0, 1),
            OutcomeKind::Ignored => (0, 0),
        };
        // Read while this probe is in flight: the start of its busy spell, and the time of the
        // trial's earlier spells (this one cannot end, and be added there, before its swap).
        let since = self.probes_since.load(Ordering::Acquire);
        let before = self.probes_busy.load(Ordering::Acquire);
        let mut w = self.word.load(Ordering::Acquire);
        let new = loop {
            if gen_of(w) != generation || state_of(w) != State::HalfOpen {
                return; // the trial this probe belonged to is over
            }
            let new = w - (1 << IN_FLIGHT_SHIFT) + (good << OK_SHIFT) + (bad << BAD_SHIFT);
            match self
                .word
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break new,
                Err(actual) => w = actual,
            }
        };
        let t = clock.get();
        self.probes_seen.fetch_max(t, Ordering::AcqRel);
        if outcome.is_failure()
            && let Some(pushback) = outcome.pushback()
        {
            self.note_pushback(pushback, t);
        }
        let spell = t.saturating_sub(since);
        let (in_flight, ok, failed) = probes_of(new);
        // The trial's busy time, this spell's included: however long it ran, the verdict is
        // the same whether or not an admission or a reader looked in the meantime.
        let busy = if in_flight == 0 {
            // The spell ends with this probe.
            let Some(busy) = self.end_spell(generation, spell) else {
                return;
            };
            busy
        } else {
            before.saturating_add(spell)
        };
        let s = &self.settings;
        if busy >= s.max_half_open_wait {
            // Answered (or given up on), but the trial has waited on its probes too long to
            // judge the dependency healthy by them.
            self.reopen_if_busy(generation, t);
        } else if good + bad == 0 {
            // ignored: its slot is free again, and it says nothing of the dependency
        } else if ok >= s.required_successes {
            self.close(generation, clock.get());
        } else if failed > s.probes - s.required_successes {
            self.reopen(generation, t, Cause::ProbesFailed, WindowCounts::default());
        }
    }

    /// Adds a busy spell of `spell` that just ended to the trial of generation `generation`,
    /// under the lock (so that it cannot land in a next trial's count, and a reopen judging
    /// the busy time under it finds the word and the count agree); the trial's busy time, or
    /// `None` if that trial is over.
    fn end_spell(&self, generation: u32, spell: u64) -> Option<u64> {
        let _aux = lock(&self.aux);
        if gen_of(self.word.load(Ordering::Acquire)) != generation {
            return None;
        }
        let busy = self
            .probes_busy
            .load(Ordering::Acquire)
            .saturating_add(spell);
        self.probes_busy.store(busy, Ordering::Release);
        Some(busy)
    }

    /// [`reopen`](Self::reopen) for [`Cause::HalfOpenTimeout`], if the trial's busy time up to
    /// `t` has reached `max_half_open_wait`, judged again under the lock (where a spell's end
    /// adds its time): a reader that found the time there from a spell ending as it read
    /// (counted both as ended and as running) reopens nothing.
    fn reopen_if_busy(&self, generation: u32, t: u64) {
        self.reopen_if(
            generation,
            t,
            Cause::HalfOpenTimeout,
            WindowCounts::default(),
            |w| self.busy_at(probes_of(w).0, t) >= self.settings.max_half_open_wait,
        );
    }

    /// The time the half-open trial has spent with probes in flight, up to `t`: its ended busy
    /// spells, and the current one if `in_flight` probes are.
    fn busy_at(&self, in_flight: u32, t: u64) -> u64 {
        let spell = if in_flight > 0 {
            t.saturating_sub(self.probes_since.load(Ordering::Acquire))
        } else {
            0
        };
        self.probes_busy
            .load(Ordering::Acquire)
            .saturating_add(spell)
    }

    fn notify(&self, transition: Option<Transition>) {
        if let (Some(observer), Some(t)) = (&self.observer, transition) {
            let _ = catch_unwind(AssertUnwindSafe(|| observer(self, &t)));
        }
    }

    fn enter_half_open(&self, seen: u64, t: u64) {
        let transition = {
            let _aux = lock(&self.aux);
            if self.word.load(Ordering::Acquire) != seen {
                return;
            }
            self.probes_since.store(t, Ordering::Release);
            self.probes_busy.store(0, Ordering::Release);
            self.probes_seen.store(t, Ordering::Release);
            self.word
                .store(encode(State::HalfOpen, next_gen(seen)), Ordering::Release);
            Transition {
                generation: next_gen(seen),
                from: State::Open,
                to: State::HalfOpen,
                cause: Cause::OpenDurationElapsed,
                window: WindowCounts::default(),
                open_for: None,
                would_trip: false,
                at: Duration::from_nanos(t),
            }
        };
        self.notify(Some(transition));
    }

    /// Closed (or metrics-only) → open, if still in generation `generation`.
    fn trip(&self, generation: u32, t: u64, cause: Cause, counts: WindowCounts) {
        let transition = {
            let mut aux = lock(&self.aux);
            let w = self.word.load(Ordering::Acquire);
            if gen_of(w) != generation {
                return;
            }
            match state_of(w) {
                State::Closed => {
                    aux.trips = 1;
                    Some(self.open_locked(&mut aux, w, t, cause, counts, State::Closed))
                }
                State::MetricsOnly => {
                    // Racing recorders may each have found the threshold reached by the same
                    // evidence; the first reports it and starts afresh, and the others find
                    // the evidence gone (nothing changes state to tell them apart otherwise).
                    // (The count is taken and cleared in one step: a failure counted since
                    // stays counted when the count is below its limit.)
                    let still = match cause {
                        Cause::ConsecutiveFailures => {
                            self.settings.consecutive_failures.is_some_and(|limit| {
                                self.consecutive
                                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                                        (n >= limit).then_some(0)
                                    })
                                    .is_ok()
                            })
                        }
                        _ => {
                            let reached = self.rates_reached(self.window.counts(t));
                            if reached {
                                self.consecutive.store(0, Ordering::Relaxed);
                            }
                            reached
                        }
                    };
                    if !still {
                        return;
                    }
                    // Report what would have happened, then start the window afresh so that the
                    // next report needs another full set of evidence.
                    self.window.reset(generation);
                    Some(Transition {
                        generation,
                        from: State::MetricsOnly,
                        to: State::Open,
                        cause,
                        window: counts,
                        open_for: Some(Duration::from_nanos(self.open_nanos(&mut aux, 1, t))),
                        would_trip: true,
                        at: Duration::from_nanos(t),
                    })
                }
                _ => None,
            }
        };
        self.notify(transition);
    }

    /// Half-open → open, if still in generation `generation`.
    fn reopen(&self, generation: u32, t: u64, cause: Cause, counts: WindowCounts) {
        self.reopen_if(generation, t, cause, counts, |_| true);
    }

    /// [`reopen`](Self::reopen), if `still` holds of the state word, judged under the lock.
    fn reopen_if(
        &self,
        generation: u32,
        t: u64,
        cause: Cause,
        counts: WindowCounts,
        still: impl FnOnce(u64) -> bool,
    ) {
        let transition = {
            let mut aux = lock(&self.aux);
            let w = self.word.load(Ordering::Acquire);
            if gen_of(w) != generation || state_of(w) != State::HalfOpen || !still(w) {
                return;
            }
            aux.trips = aux.trips.saturating_add(1);
            self.open_locked(&mut aux, w, t, cause, counts, State::HalfOpen)
        };
        self.notify(Some(transition));
    }

    fn open_nanos(&self, aux: &mut Aux, trips: u32, t: u64) -> u64 {
        let base = self.settings.open_nanos;
        let d = match self.settings.backoff {
            None => base,
            Some((multiplier, max, jitter)) => {
                let exp = i32::try_from(trips.saturating_sub(1)).unwrap_or(i32::MAX);
                let grown = (base as f64 * multiplier.powi(exp)).min(max as f64);
                let spread = if jitter > 0.0 {
                    // splitmix64: a uniform number in [0, 1).
                    aux.rng = aux.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = aux.rng;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    z ^= z >> 31;
                    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
                    1.0 + jitter * (2.0 * u - 1.0)
                } else {
                    1.0
                };
                // `as` saturates (and maps NaN to 0); the result is then clamped to [1, max].
                ((grown * spread) as u64).clamp(1, max.max(1))
            }
        };
        let until = t
            .saturating_add(d)
            .max(self.pushback_until.load(Ordering::Acquire));
        until - t
    }

    fn open_locked(
        &self,
        aux: &mut Aux,
        w: u64,
        t: u64,
        cause: Cause,
        counts: WindowCounts,
        from: State,
    ) -> Transition {
        let d = self.open_nanos(aux, aux.trips, t);
        let generation = next_gen(w);
        self.open_until
            .store(t.saturating_add(d), Ordering::Release);
        self.open_timer
            .store(timer_word(generation, UNARMED), Ordering::Release);
        self.word
            .store(encode(State::Open, generation), Ordering::Release);
        Transition {
            generation,
            from,
            to: State::Open,
            cause,
            window: counts,
            open_for: Some(Duration::from_nanos(d)),
            would_trip: false,
            at: Duration::from_nanos(t),
        }
    }

    fn close(&self, generation: u32, t: u64) {
        let transition = {
            let mut aux = lock(&self.aux);
            let w = self.word.load(Ordering::Acquire);
            if gen_of(w) != generation || state_of(w) != State::HalfOpen {
                return;
            }
            aux.trips = 0;
            self.enter_windowed(w, State::Closed);
            Transition {
                generation: next_gen(w),
                from: State::HalfOpen,
                to: State::Closed,
                cause: Cause::ProbesSucceeded,
                window: WindowCounts::default(),
                open_for: None,
                would_trip: false,
                at: Duration::from_nanos(t),
            }
        };
        self.notify(Some(transition));
    }

    /// Moves to a state that counts outcomes in a fresh window (under the lock).
    fn enter_windowed(&self, w: u64, to: State) {
        let generation = next_gen(w);
        self.window.reset(generation);
        self.consecutive.store(0, Ordering::Relaxed);
        self.pushback_until.store(0, Ordering::Relaxed);
        self.word.store(encode(to, generation), Ordering::Release);
    }

    fn operator(&self, to: State, now: impl Now) -> Transition {
        let t = Clock::new(now).get();
        let transition = {
            let mut aux = lock(&self.aux);
            let w = self.word.load(Ordering::Acquire);
            aux.trips = 0;
            if to.admits_all() {
                self.enter_windowed(w, to);
            } else {
                self.word.store(encode(to, next_gen(w)), Ordering::Release);
            }
            Transition {
                generation: next_gen(w),
                from: state_of(w),
                to,
                cause: Cause::Operator,
                window: WindowCounts::default(),
                open_for: None,
                would_trip: false,
                at: Duration::from_nanos(t),
            }
        };
        self.notify(Some(transition));
        transition
    }

    /// For a shell that runs timers: promises that [`open_timer_fired`](Self::open_timer_fired)
    /// will be called for `generation` once its open duration is over. Until then, admissions
    /// in that open state are rejected without reading the clock. Returns `false` (and arms
    /// nothing) if the breaker has left that open state or a timer is already armed.
    ///
    /// A timer may fire early (the clock still decides) but must not fire late: a late timer
    /// keeps the breaker open longer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
    ///
    /// use palisade::classify::Outcome;
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.consecutive_failures = Some(1);
    /// let sm = StateMachine::new(&config).unwrap();
    /// let permit = sm.admit(Duration::ZERO).unwrap();
    /// sm.record(permit, Outcome::failure(), Duration::ZERO); // opens: generation 1
    /// assert!(!sm.arm_open_timer(0)); // not the state the breaker is in
    /// assert!(sm.arm_open_timer(1)); // a shell promises to report the end of this open state
    /// assert!(!sm.arm_open_timer(1)); // once
    /// # sm.open_timer_fired(1);
    ///
    /// let other = StateMachine::new(&config).unwrap();
    /// let permit = other.admit(Duration::ZERO).unwrap();
    /// other.record(permit, Outcome::failure(), Duration::ZERO); // opens: generation 1
    /// other.reset(Duration::ZERO); // closed again
    /// assert!(!other.arm_open_timer(1)); // that open state is over
    /// ```
    pub fn arm_open_timer(&self, generation: u32) -> bool {
        let w = self.word.load(Ordering::Acquire);
        if gen_of(w) != generation || state_of(w) != State::Open {
            return false;
        }
        // (A state left between this check and the arming is harmless: no later state
        // reads this generation's timer word.)
        self.open_timer
            .compare_exchange(
                timer_word(generation, UNARMED),
                timer_word(generation, ARMED),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Watches the timer armed for `generation` on the coarse clock ([`coarse_ticks`]): once
    /// `left` has passed on it, admissions treat the timer as fired (see `watch_until`).
    pub(crate) fn watch_open_timer(&self, generation: u32, left: Duration) {
        let until = coarse_ticks().saturating_add(coarse_ticks_in(left)).max(1);
        // The generation first: a reader that sees this `until` sees its generation.
        self.watch_generation.store(generation, Ordering::Release);
        self.watch_until.store(until, Ordering::Release);
    }

    /// A watched timer that the coarse clock says is overdue is treated as fired (an early
    /// hand-over only costs clock reads until the open state ends: the clock still decides).
    #[inline]
    fn check_watch(&self, until: u64) {
        if coarse_ticks() >= until {
            self.end_watch(until);
        }
    }

    #[cold]
    #[inline(never)]
    fn end_watch(&self, until: u64) {
        // Read after `until`: a newer `until` comes with its own generation (an older `until`
        // with a newer generation only hands over early).
        let generation = self.watch_generation.load(Ordering::Acquire);
        if self
            .watch_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.open_timer_fired(generation);
        }
    }

    /// The timer armed for `generation` fired (or cannot run): admissions read the clock again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
    /// use palisade::classify::Outcome;
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.consecutive_failures = Some(1);
    /// config.open_duration = Duration::from_secs(10);
    /// let sm = StateMachine::new(&config).unwrap();
    /// let permit = sm.admit(Duration::ZERO).unwrap();
    /// let generation = permit.generation() + 1; // the open state that the failure starts
    /// sm.record(permit, Outcome::failure(), Duration::ZERO);
    ///
    /// assert!(sm.arm_open_timer(generation));
    /// // Until the timer fires, admissions are rejected without reading the clock...
    /// assert!(
    ///     sm.admit(|| -> Duration { unreachable!("no clock read") })
    ///         .is_err()
    /// );
    /// sm.open_timer_fired(generation);
    /// // ...then the clock decides again.
    /// let probe = sm.admit(Duration::from_secs(10)).unwrap();
    /// assert!(probe.is_probe());
    /// # sm.release(probe);
    /// ```
    pub fn open_timer_fired(&self, generation: u32) {
        let _ = self.open_timer.compare_exchange(
            timer_word(generation, ARMED),
            timer_word(generation, FIRED),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Rejects every call until [`reset`](Self::reset).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, RejectReason, StateMachine};
    ///
    /// let sm = StateMachine::new(&CircuitBreakerConfig::default()).unwrap();
    /// sm.force_open(Duration::ZERO);
    /// let rejection = sm.admit(Duration::from_secs(3600)).unwrap_err(); // however long it waits
    /// assert_eq!(
    ///     (rejection.reason, rejection.retry_at),
    ///     (RejectReason::ForcedOpen, None)
    /// );
    /// ```
    pub fn force_open(&self, now: impl Now) -> Transition {
        self.operator(State::ForcedOpen, now)
    }

    /// Admits every call and keeps counting, never tripping, until [`reset`](Self::reset).
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, State, StateMachine};
    /// use palisade::classify::Outcome;
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.consecutive_failures = Some(1);
    /// let sm = StateMachine::new(&config).unwrap();
    /// assert_eq!(sm.disable(Duration::ZERO).to, State::Disabled);
    /// let permit = sm.admit(Duration::ZERO).unwrap();
    /// sm.record(permit, Outcome::failure(), Duration::ZERO);
    /// assert_eq!(sm.snapshot(Duration::ZERO).state, State::Disabled); // still admits
    /// ```
    pub fn disable(&self, now: impl Now) -> Transition {
        self.operator(State::Disabled, now)
    }

    /// Admits every call; reports would-trip transitions instead of opening.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, State, StateMachine};
    /// use palisade::classify::Outcome;
    /// use std::sync::{Arc, Mutex};
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.consecutive_failures = Some(1);
    /// let reports = Arc::new(Mutex::new(Vec::new()));
    /// let seen = reports.clone();
    /// let sm = StateMachine::new(&config)
    ///     .unwrap()
    ///     .with_observer(move |_, t| seen.lock().unwrap().push(*t));
    /// sm.metrics_only(Duration::ZERO);
    /// let permit = sm.admit(Duration::ZERO).unwrap();
    /// sm.record(permit, Outcome::failure(), Duration::ZERO);
    /// let would = reports.lock().unwrap()[1];
    /// assert!(would.would_trip && would.to == State::Open);
    /// assert_eq!(sm.snapshot(Duration::ZERO).state, State::MetricsOnly);
    /// ```
    pub fn metrics_only(&self, now: impl Now) -> Transition {
        self.operator(State::MetricsOnly, now)
    }

    /// Closes the breaker with an empty window, whatever its state.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, State, StateMachine};
    ///
    /// let sm = StateMachine::new(&CircuitBreakerConfig::default()).unwrap();
    /// sm.force_open(Duration::ZERO);
    /// let transition = sm.reset(Duration::from_secs(1));
    /// assert_eq!(
    ///     (transition.from, transition.to),
    ///     (State::ForcedOpen, State::Closed)
    /// );
    /// assert!(sm.admit(Duration::from_secs(1)).is_ok());
    /// ```
    pub fn reset(&self, now: impl Now) -> Transition {
        self.operator(State::Closed, now)
    }

    /// The current state and counts. A half-open breaker whose probes have been in flight for
    /// `max_half_open_wait` is reopened first, so a reader never sees a breaker stuck
    /// half-open behind a probe that hangs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, State, StateMachine};
    /// use palisade::classify::Outcome;
    ///
    /// let mut config = CircuitBreakerConfig::default();
    /// config.consecutive_failures = Some(1);
    /// config.open_duration = Duration::from_secs(1);
    /// config.max_half_open_wait = Duration::from_secs(5);
    /// let sm = StateMachine::new(&config).unwrap();
    /// let permit = sm.admit(Duration::ZERO).unwrap();
    /// sm.record(permit, Outcome::failure(), Duration::ZERO);
    /// let probe = sm.admit(Duration::from_secs(1)).unwrap(); // half-open, and the probe hangs
    /// assert_eq!(sm.snapshot(Duration::from_secs(2)).state, State::HalfOpen);
    /// // Past max_half_open_wait, reading the state ends the trial.
    /// assert_eq!(sm.snapshot(Duration::from_secs(6)).state, State::Open);
    /// # sm.release(probe);
    /// ```
    pub fn snapshot(&self, now: impl Now) -> Snapshot {
        let t = Clock::new(now).get();
        let w = self.word.load(Ordering::Acquire);
        if state_of(w) == State::HalfOpen
            && self.busy_at(probes_of(w).0, t) >= self.settings.max_half_open_wait
        {
            self.reopen_if_busy(gen_of(w), t);
        }
        let w = self.word.load(Ordering::Acquire);
        let state = state_of(w);
        let counts = if state.admits_all() {
            self.window.counts(t)
        } else {
            WindowCounts::default()
        };
        let (probes_in_flight, probe_successes, probe_failures) = probes_of(w);
        let retry_after = match state {
            State::Open => Some(Duration::from_nanos(
                self.open_until.load(Ordering::Acquire).saturating_sub(t),
            )),
            _ => None,
        };
        Snapshot {
            state,
            generation: gen_of(w),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow_calls,
            rejected: self.rejected.sum(),
            probes_in_flight,
            probe_successes,
            probe_failures,
            consecutive_trips: lock(&self.aux).trips,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{GEN_MASK, Permit, Refusal, RejectReason, generation_after};

    #[test]
    fn the_public_admission_gives_the_exact_probe_time_on_any_clock() {
        use crate::circuit_breaker::{CircuitBreakerConfig, StateMachine};
        use crate::classify::Outcome;

        let config = CircuitBreakerConfig {
            consecutive_failures: Some(1),
            open_duration: Duration::from_secs(30),
            ..CircuitBreakerConfig::default()
        };
        let sm = StateMachine::new(&config).unwrap();
        // A caller's clock counted from 1970: past what a one-word refusal keeps exactly.
        let epoch = Duration::from_nanos(1_760_000_000_000_000_000);
        let permit = sm.admit(epoch).unwrap();
        sm.record(permit, Outcome::failure(), epoch);
        let later = epoch + Duration::from_secs(5);
        let rejection = sm.admit(later).unwrap_err();
        assert_eq!(rejection.retry_at, Some(epoch + Duration::from_secs(30)));
        assert_eq!(rejection.retry_after(later), Some(Duration::from_secs(25)));
    }

    /// Probes given back with no clock (`release`) still spend the trial's time: the spell
    /// the last of them ends is taken to last until the latest time a probe read, so a trial
    /// whose callers give up on a dependency that never answers ends.
    #[test]
    fn a_spell_ended_by_a_clockless_release_counts_until_the_latest_time_read() {
        use crate::circuit_breaker::{CircuitBreakerConfig, State, StateMachine};
        use crate::classify::Outcome;

        let config = CircuitBreakerConfig {
            consecutive_failures: Some(1),
            open_duration: Duration::from_secs(1),
            permitted_probes: 3,
            max_half_open_wait: Duration::from_secs(60),
            ..CircuitBreakerConfig::default()
        };
        let s = Duration::from_secs;
        let sm = StateMachine::new(&config).unwrap();
        let permit = sm.admit(s(0)).unwrap();
        sm.record(permit, Outcome::failure(), s(0));
        let (a, b) = (sm.admit(s(1)).unwrap(), sm.admit(s(1)).unwrap());
        sm.record(a, Outcome::ignored(), s(59)); // given up on; b is still in flight
        sm.release(b); // the last one, given back with no clock: the spell ran 1 s to 59 s
        assert_eq!(sm.snapshot(s(100)).state, State::HalfOpen, "58 s of 60");
        let c = sm.admit(s(100)).unwrap();
        sm.record(c, Outcome::ignored(), s(102)); // 2 s more: 60 s in all
        assert_eq!(sm.snapshot(s(102)).state, State::Open);
    }

    #[test]
    fn a_refusal_keeps_its_reason_and_probe_time_in_one_word() {
        // One word, so that an admission's result comes back in two registers.
        assert_eq!(size_of::<Option<Refusal>>(), 8);
        assert_eq!(size_of::<Result<Permit, Refusal>>(), 16);
        let most = u64::MAX >> 4;
        for reason in [
            RejectReason::Open,
            RejectReason::HalfOpenFull,
            RejectReason::ForcedOpen,
        ] {
            for (at, kept) in [
                (None, None),
                (Some(0), Some(0)),
                (Some(31_000_000_001), Some(31_000_000_001)),
                (Some(most), Some(most)),
                (Some(u64::MAX), Some(most)), // "open for good" saturates: some 36 years
            ] {
                let refusal = Refusal::new(reason, at);
                assert_eq!(
                    (refusal.reason(), refusal.retry_at()),
                    (reason, kept.map(Duration::from_nanos)),
                    "{reason:?} {at:?}"
                );
            }
        }
    }

    #[test]
    fn a_generation_is_after_the_ones_before_it_across_the_wrap() {
        let last = GEN_MASK as u32;
        for (a, b) in [(1, 0), (7, 3), (0, last), (2, last - 1)] {
            assert!(generation_after(a, b), "{a} after {b}");
            assert!(!generation_after(b, a), "{b} not after {a}");
        }
        assert!(!generation_after(5, 5));
    }
}
