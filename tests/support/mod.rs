//! Test helpers shared by the integration tests.
#![allow(dead_code)]

pub mod model;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{BoxError, Service, ServiceExt};

/// What the scripted dependency does with the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Err,
    /// Answer Ok after this long.
    Delay(Duration),
    /// Fail after this long.
    FailAfter(Duration),
    /// Never answer.
    Hang,
    /// Answer Ok after yielding once: in flight across a scheduling point, as a call that
    /// waits on the network is.
    Yield,
    /// Answer Ok with this body (a test's classifier may call it a failure response).
    Answer(&'static str),
}

/// Counters the scripted dependency keeps, so a test can prove what it experienced.
#[derive(Debug, Default)]
pub struct Seen {
    pub poll_ready: AtomicUsize,
    pub calls: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub dropped: AtomicUsize,
}

impl Seen {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    pub fn polls(&self) -> usize {
        self.poll_ready.load(Ordering::SeqCst)
    }
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

/// A dependency whose behaviour is chosen per request (`Reply`), counting what it sees.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub seen: Arc<Seen>,
}

impl Dependency {
    pub fn new() -> Self {
        Self {
            seen: Arc::new(Seen::default()),
        }
    }
}

/// Counts a call in flight; notes a drop before completion.
struct InFlight {
    seen: Arc<Seen>,
    done: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.seen.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.done {
            self.seen.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dependency failed")
    }
}

impl std::error::Error for Failed {}

impl Service<Reply> for Dependency {
    type Response = &'static str;
    type Error = Failed;
    type Future = Pin<Box<dyn Future<Output = Result<&'static str, Failed>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Failed>> {
        self.seen.poll_ready.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, reply: Reply) -> Self::Future {
        let seen = self.seen.clone();
        seen.calls.fetch_add(1, Ordering::SeqCst);
        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let guard = InFlight { seen, done: false };
        Box::pin(async move {
            let mut guard = guard; // the whole guard lives (and drops) with the future
            let result = match reply {
                Reply::Ok => Ok("ok"),
                Reply::Err => Err(Failed),
                Reply::Delay(d) => {
                    tokio::time::sleep(d).await;
                    Ok("ok")
                }
                Reply::FailAfter(d) => {
                    tokio::time::sleep(d).await;
                    Err(Failed)
                }
                Reply::Hang => std::future::pending().await,
                Reply::Yield => {
                    tokio::task::yield_now().await;
                    Ok("ok")
                }
                Reply::Answer(body) => Ok(body),
            };
            guard.done = true;
            result
        })
    }
}

/// `ready().await` then `call().await`.
pub async fn call<S, R>(svc: &mut S, req: R) -> Result<S::Response, BoxError>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    svc.ready()
        .await
        .map_err(Into::into)?
        .call(req)
        .await
        .map_err(Into::into)
}

/// Runs `fut`, returning its panic if it panicked.
pub async fn catch<F: Future>(fut: F) -> Result<F::Output, Box<dyn std::any::Any + Send>> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(fut).catch_unwind().await
}

/// A panic's message, when it is a string.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("?")
}

/// Runs `fut`, which must end (without unwinding) in the typed error for a user callback's
/// panic; returns the callback it names and the panic's message.
pub async fn caught_callback_panic<T, F>(fut: F) -> (&'static str, String)
where
    F: Future<Output = Result<T, BoxError>>,
{
    let result = catch(fut)
        .await
        .unwrap_or_else(|panic| panic!("the panic escaped: {:?}", panic_message(&*panic)));
    callback_panicked(result)
}

/// The callback and message of the `CallbackPanicked` that `result` must have failed with.
#[track_caller]
pub fn callback_panicked<T>(result: Result<T, BoxError>) -> (&'static str, String) {
    let Err(err) = result else {
        panic!("expected CallbackPanicked, got a response")
    };
    match palisade::error::error_kind(err.as_ref()) {
        palisade::error::ErrorKind::CallbackPanicked(p) => (p.callback(), p.message().to_owned()),
        other => panic!("expected CallbackPanicked, got {other:?}"),
    }
}

/// The largest `d` for which `now + d` is an `Instant` (tokio panics on a timer within 1 ms
/// of it: the end of time a deadline must never reach).
pub fn end_of_time_from(now: tokio::time::Instant) -> Duration {
    let (mut lo, mut hi) = (Duration::ZERO, Duration::MAX);
    while hi - lo > Duration::from_nanos(1) {
        let mid = lo + (hi - lo) / 2;
        if now.checked_add(mid).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Any duration a configuration might be given, with the extremes always in the mix.
pub fn any_duration() -> impl proptest::strategy::Strategy<Value = Duration> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
        (0u64..100_000).prop_map(Duration::from_secs),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// The bulkhead's and the breaker's handles of a Policy built with both.
pub fn policy_handles<R, C, A, H>(
    policy: &palisade::policy::PolicyLayer<R, C, A, H>,
) -> (
    palisade::bulkhead::Handle,
    palisade::circuit_breaker::Handle,
) {
    (
        policy.bulkhead().expect("the policy has a bulkhead"),
        policy
            .circuit_breaker()
            .expect("the policy has a circuit breaker"),
    )
}

/// This process's resident memory, in KiB (Linux).
#[cfg(target_os = "linux")]
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// The most resident memory this process has had, in KiB (Linux).
#[cfg(target_os = "linux")]
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

#[cfg(target_os = "linux")]
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
