use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::BoxError;

use crate::classify::Outcome;
use crate::error::{CallbackPanicked, CircuitOpen, ConfigError, catch_callback};
use crate::events::{self, Event, Listeners};

use super::config::CircuitBreakerConfig;
use super::future::Timing;
use super::state::{
    Now, Permit, Refusal, Snapshot, State, StateMachine, Transition, generation_after,
};

/// The state machine, tied to tokio's clock and timers.
#[derive(Debug)]
pub(crate) struct Breaker {
    pub(crate) machine: StateMachine,
    origin: Instant,
    name: String,
    pub(crate) listeners: Listeners,
    /// Whether calls are timed: for the slow-call rule, or for listeners' durations.
    timed: bool,
    /// Whether anyone listens: recording an outcome costs one branch when nobody does.
    listening: bool,
    /// The timer that ends the current open state, so that rejections need no clock read,
    /// with the generation of that state.
    open_timer: std::sync::Mutex<Option<(u32, Pin<Box<Sleep>>)>>,
    /// tokio refused a timer once (a runtime built without `enable_time`, or one shut down):
    /// the breaker asks no more, so the panic hook runs once, not once per trip, and the clock
    /// decides from then on.
    timers_refused: AtomicBool,
}

/// Wakes the breaker when its open duration is over.
struct OpenTimerWake {
    breaker: Weak<Breaker>,
    generation: u32,
}

impl Wake for OpenTimerWake {
    fn wake(self: Arc<Self>) {
        if let Some(breaker) = self.breaker.upgrade() {
            breaker.machine.open_timer_fired(self.generation);
        }
    }
}

impl Breaker {
    pub(crate) fn new(
        config: &CircuitBreakerConfig,
        listeners: Listeners,
    ) -> Result<Arc<Self>, ConfigError> {
        let machine = StateMachine::new(config)?;
        let machine_times = machine.needs_duration();
        let listeners = listeners.named(config.name.clone());
        Ok(Arc::new_cyclic(|weak: &Weak<Breaker>| {
            let weak = weak.clone();
            let told = listeners.clone();
            Breaker {
                machine: machine.with_observer(move |_, t| {
                    told.emit(|name| Event::StateTransition {
                        name,
                        transition: t,
                    });
                    if t.to == State::Open
                        && !t.would_trip
                        && let Some(breaker) = weak.upgrade()
                    {
                        breaker.arm_open_timer(&weak, t);
                    }
                }),
                origin: Instant::now(),
                name: config.name.clone(),
                timed: machine_times || !listeners.is_empty(),
                listening: !listeners.is_empty(),
                listeners,
                open_timer: std::sync::Mutex::new(None),
                timers_refused: AtomicBool::new(false),
            }
        }))
    }

    /// Asks the breaker to admit a call: the state machine decides, on tokio's clock.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Permit, Refusal> {
        match self.machine.admit_closed() {
            Some(permit) => Ok(permit),
            None => self.machine.admit_not_closed(self.clock()),
        }
    }

    /// Whether admitted calls must be timed: the slow-call rule needs durations, and so do
    /// listeners (for [`Event::CallRecorded`]).
    #[inline]
    pub(crate) fn times_calls(&self) -> bool {
        self.timed
    }

    /// Tells the listeners, if any, about a recorded outcome.
    #[inline]
    fn recorded(&self, outcome: Outcome, timed: bool) {
        if self.listening {
            self.tell_recorded(outcome, timed);
        }
    }

    #[cold]
    #[inline(never)]
    fn tell_recorded(&self, outcome: Outcome, timed: bool) {
        self.listeners.emit_inline(|name| Event::CallRecorded {
            name,
            outcome: &outcome,
            duration: timed.then(|| outcome.duration()),
        });
    }

    /// Tells the listeners about a rejection.
    pub(crate) fn rejected(&self, rejection: &Refusal) {
        self.listeners.emit(|name| Event::Rejected {
            name,
            reason: events::Rejection::Circuit(rejection.reason()),
        });
    }

    /// Arms a tokio timer for the end of the open state `t` entered (a millisecond early:
    /// tokio rounds timers up, and an early timer only hands the decision back to the clock).
    /// Outside a tokio runtime with timers, nothing is armed and rejections read the clock.
    fn arm_open_timer(&self, weak: &Weak<Breaker>, t: &Transition) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // A current-thread runtime turns its timers only when it parks, and it may never park
        // again: `block_on` of a call the breaker rejects returns at once, and so does every
        // turn of a loop whose calls are all rejected. Its timer is watched on the coarse
        // clock (see `StateMachine::watch_open_timer`). It is still armed: a paused clock
        // moves only when its runtime is driven, and then the timer fires.
        let watched = runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread;
        // Arming on a runtime built without timers panics inside tokio (caught below). Under
        // `panic = "abort"` that would end the process, and a current-thread runtime, which
        // needs no timer to reject cheaply here, is left to the clock.
        if (watched && cfg!(panic = "abort")) || self.timers_refused.load(Ordering::Relaxed) {
            return;
        }
        let Some(until) = t
            .open_for
            .and_then(|d| t.at.checked_add(d))
            .and_then(|d| self.origin.checked_add(d))
        else {
            return; // "open forever": nothing to time
        };
        let fire_at = until.checked_sub(Duration::from_millis(1)).unwrap_or(until);
        if !self.machine.arm_open_timer(t.generation) {
            return;
        }
        let waker = Waker::from(Arc::new(OpenTimerWake {
            breaker: weak.clone(),
            generation: t.generation,
        }));
        // A runtime built without `enable_time` panics as the timer is made, and one whose
        // timers have shut down panics as it is first polled (registered): either way the
        // promise is taken back and the clock decides.
        let registered = catch_unwind(AssertUnwindSafe(|| {
            let mut sleep = Box::pin(tokio::time::sleep_until(fire_at));
            let pending = sleep
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending();
            pending.then_some(sleep)
        }));
        let Ok(Some(sleep)) = registered else {
            if registered.is_err() {
                self.timers_refused.store(true, Ordering::Relaxed);
            }
            self.machine.open_timer_fired(t.generation);
            return;
        };
        let mut slot = self
            .open_timer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Replacing an older open state's timer drops (deregisters) it. A thread late with the
        // timer of an older state must not replace a newer one's: that state would then wait
        // for a timer that no longer exists. Nor its watch, set here under the same lock: the
        // newer state would go unwatched.
        if slot
            .as_ref()
            .is_none_or(|(generation, _)| !generation_after(*generation, t.generation))
        {
            *slot = Some((t.generation, sleep));
            if watched {
                self.machine.watch_open_timer(
                    t.generation,
                    until.saturating_duration_since(Instant::now()),
                );
            }
        }
    }

    /// A lazy reading of tokio's clock, as a duration since the breaker was built.
    pub(crate) fn clock(&self) -> impl Now + '_ {
        move || Instant::now().saturating_duration_since(self.origin)
    }

    pub(crate) fn since_origin(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }

    /// The error for a rejection.
    pub(crate) fn open_error(&self, rejection: &Refusal) -> CircuitOpen {
        CircuitOpen::new(
            rejection
                .retry_at()
                .and_then(|at| self.origin.checked_add(at)),
        )
    }
}

/// A handle on one circuit breaker, shared with every service its layer made.
///
/// Cheap to clone. Reads state and counts, and lets an operator force the breaker open,
/// disable it, put it in metrics-only mode or reset it. It can also guard a plain future, for
/// code that does not use tower:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::circuit_breaker::{CallError, CircuitBreakerLayer};
///
/// let breaker = CircuitBreakerLayer::builder().build().unwrap().handle();
/// let answer: Result<u32, CallError<std::io::Error>> = breaker.call(async { Ok(42) }).await;
/// assert_eq!(answer.unwrap(), 42);
///
/// breaker.force_open();
/// let rejected = breaker.call(async { Ok::<_, std::io::Error>(42) }).await;
/// assert!(matches!(rejected, Err(CallError::Open(_))));
/// # }
/// ```
#[derive(Clone)]
pub struct Handle {
    breaker: Arc<Breaker>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.breaker.name)
            .field("state", &self.state())
            .finish()
    }
}

/// The error of a future guarded by [`Handle::call`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use palisade::circuit_breaker::{CallError, CircuitBreakerLayer};
///
/// let breaker = CircuitBreakerLayer::builder().build().unwrap().handle();
/// let refused = async { Err::<(), _>(std::io::Error::other("refused")) };
/// let err = breaker.call(refused).await.unwrap_err();
/// assert!(matches!(&err, CallError::Inner(e) if e.to_string() == "refused"));
///
/// breaker.force_open();
/// let err = breaker.call(async { Ok::<_, std::io::Error>(()) }).await.unwrap_err();
/// assert!(matches!(err, CallError::Open(_))); // the future was never polled
/// assert_eq!(err.to_string(), "call rejected by the circuit breaker");
/// // Why, in its source (where `error_kind` finds the `CircuitOpen`, boxed or not):
/// let why = std::error::Error::source(&err).unwrap();
/// assert_eq!(why.to_string(), "circuit breaker is forced open");
/// # }
/// ```
#[derive(Debug)]
pub enum CallError<E> {
    /// The breaker rejected the call; the future was not polled.
    Open(CircuitOpen),
    /// The future failed.
    Inner(E),
    /// The classifier panicked on the future's result; the call was recorded as ignored and
    /// the result dropped.
    CallbackPanicked(CallbackPanicked),
}

/// The dependency's error reads as itself (transparent); palisade's own say what happened to
/// the call, their details in the source.
impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Open(_) => f.write_str("call rejected by the circuit breaker"),
            CallError::Inner(e) => e.fmt(f),
            CallError::CallbackPanicked(_) => {
                f.write_str("call failed: a callback palisade ran panicked")
            }
        }
    }
}

/// For the dependency's error, the source is that error's own (transparent, like its
/// `Display`, so that a chain printed by error reporters does not say the same thing twice);
/// for palisade's own, the source is that error: [`error_kind`](crate::error::error_kind)
/// finds a `CircuitOpen` or `CallbackPanicked` inside a boxed `CallError`, so that a breaker
/// further out ignores them as it ignores them unboxed. To box one, prefer
/// [`into_boxed`](CallError::into_boxed): `Box::new(CallError::Inner(io_error))` hides a
/// palisade error the `io::Error` wraps (its `source` skips it), `into_boxed` does not.
impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Open(e) => Some(e),
            CallError::Inner(e) => e.source(),
            CallError::CallbackPanicked(e) => Some(e),
        }
    }
}

impl<E: Into<BoxError>> CallError<E> {
    /// The held error as a `tower::BoxError` (for `E = BoxError` too, where `CallError` is
    /// not itself an `Error`): palisade's own errors stay findable with
    /// [`error_kind`](crate::error::error_kind).
    ///
    /// ```
    /// use palisade::circuit_breaker::CallError;
    /// use palisade::error::{error_kind, CircuitOpen, ErrorKind};
    /// use tower::BoxError;
    ///
    /// let err: CallError<BoxError> = CallError::Open(CircuitOpen::new(None));
    /// let boxed = err.into_boxed();
    /// assert!(matches!(error_kind(boxed.as_ref()), ErrorKind::CircuitOpen(_)));
    /// ```
    pub fn into_boxed(self) -> BoxError {
        match self {
            CallError::Open(e) => Box::new(e),
            CallError::Inner(e) => e.into(),
            CallError::CallbackPanicked(e) => Box::new(e),
        }
    }
}

/// Gives a permit back as ignored if the call never finished (dropped, or a classifier
/// panicked).
struct Held<'a> {
    breaker: &'a Breaker,
    permit: Option<Permit>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            give_back(self.breaker, permit);
        }
    }
}

/// Gives back the permit of a call that ended with no outcome (cancelled, or its classifier
/// panicked): ignored. A probe's is given back with the time, which counts its time in flight
/// towards the trial's `max_half_open_wait` (probes given up on against a dependency that
/// never answers end the trial too).
pub(crate) fn give_back(breaker: &Breaker, permit: Permit) {
    if permit.is_probe() {
        breaker
            .machine
            .record(permit, Outcome::ignored(), breaker.clock());
    } else {
        breaker.machine.release(permit);
    }
}

impl Handle {
    pub(crate) fn new(breaker: Arc<Breaker>) -> Self {
        Self { breaker }
    }

    /// The breaker's name (from its configuration).
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    ///
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .name("inventory")
    ///     .build()
    ///     .unwrap()
    ///     .handle();
    /// assert_eq!(breaker.name(), "inventory");
    /// ```
    pub fn name(&self) -> &str {
        &self.breaker.name
    }

    /// The current state.
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
    ///
    /// let breaker = CircuitBreakerLayer::builder().build().unwrap().handle();
    /// assert_eq!(breaker.state(), State::Closed);
    /// breaker.force_open();
    /// assert_eq!(breaker.state(), State::ForcedOpen);
    /// ```
    pub fn state(&self) -> State {
        self.snapshot().state
    }

    /// State and counts: window calls, failures, slow calls, rejections, probes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
    ///
    /// let breaker = CircuitBreakerLayer::builder().build().unwrap().handle();
    /// let _ = breaker.call(async { Ok::<_, std::io::Error>(()) }).await;
    /// let _ = breaker
    ///     .call(async { Err::<(), _>(std::io::Error::other("down")) })
    ///     .await;
    /// let snapshot = breaker.snapshot();
    /// assert_eq!(
    ///     (snapshot.state, snapshot.calls, snapshot.failures),
    ///     (State::Closed, 2, 1)
    /// );
    /// # }
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        self.breaker.machine.snapshot(self.breaker.clock())
    }

    /// Rejects every call until [`reset`](Self::reset).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::{Cause, CallError, CircuitBreakerLayer, State};
    ///
    /// let breaker = CircuitBreakerLayer::builder().build().unwrap().handle();
    /// let transition = breaker.force_open();
    /// assert_eq!((transition.from, transition.to), (State::Closed, State::ForcedOpen));
    /// assert_eq!(transition.cause, Cause::Operator);
    /// let rejected = breaker.call(async { Ok::<_, std::io::Error>(()) }).await;
    /// assert!(matches!(rejected, Err(CallError::Open(open)) if open.retry_after().is_none()));
    /// # }
    /// ```
    pub fn force_open(&self) -> Transition {
        self.breaker.machine.force_open(self.breaker.clock())
    }

    /// Admits every call and keeps counting, never tripping, until [`reset`](Self::reset).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
    ///
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .consecutive_failures(1)
    ///     .build()
    ///     .unwrap()
    ///     .handle();
    /// breaker.disable();
    /// for _ in 0..3 {
    ///     let _ = breaker
    ///         .call(async { Err::<(), _>(std::io::Error::other("down")) })
    ///         .await;
    /// }
    /// let snapshot = breaker.snapshot();
    /// // Counted, never tripped.
    /// assert_eq!((snapshot.state, snapshot.failures), (State::Disabled, 3));
    /// # }
    /// ```
    pub fn disable(&self) -> Transition {
        self.breaker.machine.disable(self.breaker.clock())
    }

    /// Admits every call and reports would-trip transitions instead of opening.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
    /// use palisade::events::{Event, Listeners};
    ///
    /// let would_trip = Arc::new(Mutex::new(0));
    /// let count = would_trip.clone();
    /// let listeners = Listeners::new("inventory").with(move |event: &Event<'_>| {
    ///     if let Event::StateTransition { transition, .. } = event {
    ///         if transition.would_trip {
    ///             *count.lock().unwrap() += 1;
    ///         }
    ///     }
    /// });
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .consecutive_failures(1)
    ///     .listeners(listeners)
    ///     .build()
    ///     .unwrap()
    ///     .handle();
    /// breaker.metrics_only(); // try the configuration out in production, rejecting nothing
    /// let result = breaker
    ///     .call(async { Err::<(), _>(std::io::Error::other("down")) })
    ///     .await;
    /// assert!(result.is_err());
    /// assert_eq!(breaker.state(), State::MetricsOnly);
    /// assert_eq!(*would_trip.lock().unwrap(), 1);
    /// # }
    /// ```
    pub fn metrics_only(&self) -> Transition {
        self.breaker.machine.metrics_only(self.breaker.clock())
    }

    /// Closes the breaker with an empty window, whatever its state.
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerLayer, State};
    ///
    /// let breaker = CircuitBreakerLayer::builder().build().unwrap().handle();
    /// breaker.force_open();
    /// let transition = breaker.reset();
    /// assert_eq!(
    ///     (transition.from, transition.to),
    ///     (State::ForcedOpen, State::Closed)
    /// );
    /// assert_eq!(breaker.snapshot().calls, 0); // with an empty window
    /// ```
    pub fn reset(&self) -> Transition {
        self.breaker.machine.reset(self.breaker.clock())
    }

    /// Runs `fut` if the breaker admits it; `Ok` is a success and `Err` a failure.
    ///
    /// Every `Err` counts, even a rejection by palisade inside `fut` (a full bulkhead, another
    /// breaker's `CallError::Open`), since `E` cannot be looked into here: when `fut` may fail
    /// that way, use [`call_classified`](Self::call_classified) with
    /// [`classify_error`](crate::classify::classify_error), which ignores them. Slow-call timing
    /// counts from `fut`'s first suspension, including any time it waits in a bulkhead's queue.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::{CallError, CircuitBreakerLayer, SlidingWindow, State};
    ///
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .window(SlidingWindow::Count(4))
    ///     .minimum_calls(2)
    ///     .build()
    ///     .unwrap()
    ///     .handle();
    /// async fn lookup(id: u32) -> Result<String, std::io::Error> {
    ///     Err(std::io::Error::other(format!(
    ///         "no route to the store of {id}"
    ///     )))
    /// }
    /// for id in 0..2 {
    ///     assert!(matches!(
    ///         breaker.call(lookup(id)).await,
    ///         Err(CallError::Inner(_))
    ///     ));
    /// }
    /// assert_eq!(breaker.state(), State::Open);
    /// assert!(matches!(
    ///     breaker.call(lookup(2)).await,
    ///     Err(CallError::Open(_))
    /// ));
    /// # }
    /// ```
    pub async fn call<F, T, E>(&self, fut: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_classified(fut, |res: Result<&T, &E>| match res {
            Ok(_) => Outcome::success(),
            Err(_) => Outcome::failure(),
        })
        .await
    }

    /// Runs `fut` if the breaker admits it, classifying its result with `classify`. A panic in
    /// `classify` is caught: the call is recorded as ignored and fails with
    /// [`CallError::CallbackPanicked`]. A panic of `fut` itself reaches the caller (the permit is
    /// given back as it unwinds).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use palisade::circuit_breaker::CircuitBreakerLayer;
    /// use palisade::classify::Outcome;
    ///
    /// #[derive(Debug)]
    /// enum LookupError {
    ///     NotFound,
    ///     Unavailable,
    /// }
    ///
    /// let breaker = CircuitBreakerLayer::builder().build().unwrap().handle();
    /// // "Not found" is an answer, not a failure of the dependency.
    /// let classify = |res: Result<&String, &LookupError>| match res {
    ///     Ok(_) | Err(LookupError::NotFound) => Outcome::success(),
    ///     Err(LookupError::Unavailable) => Outcome::failure(),
    /// };
    /// let _ = breaker
    ///     .call_classified(async { Err::<String, _>(LookupError::NotFound) }, classify)
    ///     .await;
    /// let _ = breaker
    ///     .call_classified(
    ///         async { Err::<String, _>(LookupError::Unavailable) },
    ///         classify,
    ///     )
    ///     .await;
    /// let snapshot = breaker.snapshot();
    /// assert_eq!((snapshot.calls, snapshot.failures), (2, 1));
    /// # }
    /// ```
    pub async fn call_classified<F, T, E, K>(&self, fut: F, classify: K) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
        K: Fn(Result<&T, &E>) -> Outcome,
    {
        let breaker = &*self.breaker;
        let permit = breaker.admit().map_err(|r| {
            breaker.rejected(&r);
            CallError::Open(breaker.open_error(&r))
        })?;
        let mut held = Held {
            breaker,
            permit: Some(permit),
        };
        // Timed from the first suspension, as on the tower path: a call that completes on its
        // first poll waited on nothing, and is timed as zero.
        let mut timing = if breaker.times_calls() {
            Timing::Unsuspended
        } else {
            Timing::Off
        };
        let mut fut = std::pin::pin!(fut);
        let result = std::future::poll_fn(|cx| {
            let polled = fut.as_mut().poll(cx);
            if polled.is_pending() && matches!(timing, Timing::Unsuspended) {
                timing = Timing::Since(Instant::now());
            }
            polled
        })
        .await;
        let start = match timing {
            Timing::Since(at) => Some(at),
            Timing::Off | Timing::Unsuspended => None,
        };
        let (outcome, panicked) = match catch_callback("classifier", || classify(result.as_ref())) {
            Ok(outcome) => (outcome, None),
            // Recorded as ignored (and heard as such by listeners), as on the tower path.
            Err(panicked) => (Outcome::ignored(), Some(panicked)),
        };
        if let Some(permit) = held.permit.take() {
            record(breaker, permit, outcome, start);
        }
        match panicked {
            Some(panicked) => Err(CallError::CallbackPanicked(panicked)),
            None => result.map_err(CallError::Inner),
        }
    }
}

/// Records an outcome, timing it when the breaker times calls. Every admitted call that ends
/// is recorded here, whoever detects its end, so this is where listeners hear of it
/// ([`Event::CallRecorded`], before any transition the outcome causes).
#[inline]
pub(crate) fn record(breaker: &Breaker, permit: Permit, outcome: Outcome, start: Option<Instant>) {
    match start {
        Some(start) => {
            let end = Instant::now();
            let outcome = outcome.with_duration(end.saturating_duration_since(start));
            breaker.recorded(outcome, true);
            breaker
                .machine
                .record(permit, outcome, breaker.since_origin(end));
        }
        None => {
            breaker.recorded(outcome, false);
            breaker.machine.record(permit, outcome, breaker.clock());
        }
    }
}
