use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use crate::classify::Outcome;
use crate::error::{CircuitOpen, ConfigError};

use super::config::CircuitBreakerConfig;
use super::state::{Now, Permit, Snapshot, State, StateMachine, Transition};

/// The state machine, tied to tokio's clock.
#[derive(Debug)]
pub(crate) struct Breaker {
    pub(crate) machine: StateMachine,
    origin: Instant,
    name: String,
}

impl Breaker {
    pub(crate) fn new(config: &CircuitBreakerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            machine: StateMachine::new(config)?,
            origin: Instant::now(),
            name: config.name.clone(),
        })
    }

    /// A lazy reading of tokio's clock, as a duration since the breaker was built.
    pub(crate) fn clock(&self) -> impl Now + '_ {
        move || Instant::now().saturating_duration_since(self.origin)
    }

    pub(crate) fn since_origin(&self, at: Instant) -> std::time::Duration {
        at.saturating_duration_since(self.origin)
    }
}

/// One service clone's reference to the shared breaker. Each clone has its own, so the
/// reference count every response future bumps is not one cache line written by all tasks.
#[derive(Debug)]
pub(crate) struct CloneRef(pub(crate) Arc<Breaker>);

impl std::ops::Deref for CloneRef {
    type Target = Breaker;

    fn deref(&self) -> &Breaker {
        &self.0
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
#[derive(Debug)]
pub enum CallError<E> {
    /// The breaker rejected the call; the future was not polled.
    Open(CircuitOpen),
    /// The future failed.
    Inner(E),
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Open(e) => e.fmt(f),
            CallError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Open(e) => Some(e),
            CallError::Inner(e) => Some(e),
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
            self.breaker.machine.release(permit);
        }
    }
}

impl Handle {
    pub(crate) fn new(breaker: Arc<Breaker>) -> Self {
        Self { breaker }
    }

    /// The breaker's name (from its configuration).
    pub fn name(&self) -> &str {
        &self.breaker.name
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.snapshot().state
    }

    /// State and counts: window calls, failures, slow calls, rejections, probes.
    pub fn snapshot(&self) -> Snapshot {
        self.breaker.machine.snapshot(self.breaker.clock())
    }

    /// Rejects every call until [`reset`](Self::reset).
    pub fn force_open(&self) -> Transition {
        self.breaker.machine.force_open(self.breaker.clock())
    }

    /// Admits every call and keeps counting, never tripping, until [`reset`](Self::reset).
    pub fn disable(&self) -> Transition {
        self.breaker.machine.disable(self.breaker.clock())
    }

    /// Admits every call and reports would-trip transitions instead of opening.
    pub fn metrics_only(&self) -> Transition {
        self.breaker.machine.metrics_only(self.breaker.clock())
    }

    /// Closes the breaker with an empty window, whatever its state.
    pub fn reset(&self) -> Transition {
        self.breaker.machine.reset(self.breaker.clock())
    }

    /// Runs `fut` if the breaker admits it; `Ok` is a success and `Err` a failure.
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

    /// Runs `fut` if the breaker admits it, classifying its result with `classify`.
    pub async fn call_classified<F, T, E, K>(&self, fut: F, classify: K) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
        K: Fn(Result<&T, &E>) -> Outcome,
    {
        let breaker = &*self.breaker;
        let permit = breaker
            .machine
            .admit(breaker.clock())
            .map_err(|r| CallError::Open(CircuitOpen::new(r.retry_after)))?;
        let mut held = Held {
            breaker,
            permit: Some(permit),
        };
        let start = breaker.machine.needs_duration().then(Instant::now);
        let result = fut.await;
        let outcome = classify(result.as_ref());
        if let Some(permit) = held.permit.take() {
            record(breaker, permit, outcome, start);
        }
        result.map_err(CallError::Inner)
    }
}

/// Records an outcome, timing it when the breaker needs durations.
pub(crate) fn record(breaker: &Breaker, permit: Permit, outcome: Outcome, start: Option<Instant>) {
    match start {
        Some(start) => {
            let end = Instant::now();
            let outcome = outcome.with_duration(end.saturating_duration_since(start));
            breaker
                .machine
                .record(permit, outcome, breaker.since_origin(end));
        }
        None => breaker.machine.record(permit, outcome, breaker.clock()),
    }
}
