//! An open breaker turns half-open when its open duration is over on any runtime, including
//! one that is never driven again. These tests run on the real clock, and must: a paused clock
//! only moves when its runtime is driven, and a runtime that is not driven is the case under
//! test. Each waits at most 10 s for a 20 ms open duration, spinning on rejected calls.

use std::time::Duration;

use palisade::circuit_breaker::{CallError, CircuitBreakerLayer, Handle, State};
use tokio::time::Instant;

/// A call that succeeds or fails, as `ok` says.
async fn outcome(ok: bool) -> Result<(), String> {
    if ok { Ok(()) } else { Err("down".to_owned()) }
}

/// A breaker that one failure opens for 20 ms, with one probe.
fn breaker() -> Handle {
    CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_millis(20))
        .permitted_probes(1)
        .build()
        .unwrap()
        .handle()
}

/// Trips a breaker of a 20 ms open duration with one failed call through `run`, then calls
/// through `run` until the breaker lets one through, which closes it; fails after 10 s of
/// rejections.
fn trip_then_wait_for_a_probe(run: impl Fn(&Handle, bool) -> Result<(), CallError<String>>) {
    let breaker = breaker();
    assert!(run(&breaker, false).is_err());
    assert_eq!(breaker.state(), State::Open);
    let start = Instant::now();
    loop {
        match run(&breaker, true) {
            Ok(()) => break,
            Err(CallError::Open(open)) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "still open 10 s into a 20 ms open duration (retry after {:?})",
                open.retry_after()
            ),
            Err(other) => panic!("{other}"),
        }
        std::thread::yield_now();
    }
    assert_eq!(breaker.state(), State::Closed);
}

/// `block_on` of a rejected call returns at once, so a current-thread runtime used that way
/// never parks, and never fires a timer: the breaker must not wait for one.
#[test]
fn a_current_thread_runtime_that_never_parks_still_lets_the_breaker_half_open() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    trip_then_wait_for_a_probe(|b, ok| rt.block_on(b.call(outcome(ok))));
}

/// A timer cannot be registered on a runtime that has shut down; the breaker must then go by
/// the clock, not wait for a timer that will never fire.
#[test]
fn a_breaker_tripped_on_a_shut_down_runtime_goes_by_the_clock() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    drop(rt);
    let _entered = handle.enter();
    trip_then_wait_for_a_probe(|b, ok| futures::executor::block_on(b.call(outcome(ok))));
}

/// On a multi-thread runtime the timer fires while its workers are idle.
#[test]
fn a_multi_thread_runtime_fires_the_open_timer() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    trip_then_wait_for_a_probe(|b, ok| rt.block_on(b.call(outcome(ok))));
}

/// On a current-thread runtime the open timer is also watched on the real (coarse) clock, in
/// case the runtime never parks. The watch only hands the decision back to tokio's clock: on a
/// paused clock that has not reached the end of the open duration the breaker stays open, however
/// much real time passes, and it half-opens when the paused clock gets there.
#[test]
#[allow(clippy::disallowed_methods)] // the real clock, to let real time pass while paused
fn an_overdue_watch_leaves_the_decision_to_a_paused_clock() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let breaker = breaker();
        assert!(breaker.call(outcome(false)).await.is_err());
        // Five times the open duration on the real clock; none on the paused one (the
        // rejected calls never suspend, so the runtime never parks to move it).
        let real = std::time::Instant::now();
        while real.elapsed() < Duration::from_millis(100) {
            assert!(
                matches!(breaker.call(outcome(true)).await, Err(CallError::Open(_))),
                "admitted {:?} of real time into a 20 ms open duration that the paused clock \
                 has not begun",
                real.elapsed()
            );
        }
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(breaker.call(outcome(true)).await.is_ok());
        assert_eq!(breaker.state(), State::Closed);
    });
}

/// A runtime built without timers refuses the open timer with a panic inside tokio, which the
/// breaker catches (the clock then decides); the panic hook still runs, so the breaker asks
/// once, not on every trip.
#[test]
fn a_runtime_without_timers_is_asked_for_one_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let refused = Arc::new(AtomicUsize::new(0));
    let seen = refused.clone();
    let previous = Arc::new(std::panic::take_hook());
    let forward = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        if info.to_string().contains("timers are disabled") {
            seen.fetch_add(1, Ordering::SeqCst);
        } else {
            forward(info);
        }
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let breaker = breaker();
    let start = Instant::now();
    let mut trips = 0;
    while trips < 3 {
        // A failure while closed trips the breaker; a failed probe opens it again.
        match rt.block_on(breaker.call(outcome(false))) {
            Err(CallError::Inner(_)) => trips += 1,
            Err(CallError::Open(_)) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "still open 10 s into a 20 ms open duration"
            ),
            other => panic!("{other:?}"),
        }
        std::thread::yield_now();
    }
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| previous(info)));
    assert_eq!(
        refused.load(Ordering::SeqCst),
        1,
        "tokio asked for a timer once"
    );
}
