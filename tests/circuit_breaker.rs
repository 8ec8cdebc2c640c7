//! The circuit breaker's timing and admission rules through its tower layer, on paused time.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use palisade::circuit_breaker::{Backoff, CircuitBreakerLayer, Handle, SlidingWindow, State};
use palisade::classify::{DefaultClassifier, Outcome};
use palisade::error::{BreakerError, ErrorKind, error_kind};
use support::{Dependency, Reply, call};
use tokio::time::{Instant, advance};
use tower::{BoxError, Layer, Service, ServiceExt};

const OPEN: Duration = Duration::from_secs(10);

fn layer() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .window(SlidingWindow::Count(10))
        .minimum_calls(5)
        .failure_rate(0.5)
        .open_duration(OPEN)
        .permitted_probes(2)
        .probe_success_rate(1.0)
        .max_half_open_wait(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn retry_after(err: &BoxError) -> Option<Duration> {
    match error_kind(err.as_ref()) {
        ErrorKind::CircuitOpen(open) => open.retry_after(),
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
}

fn is_open_rejection(err: &BoxError) -> bool {
    matches!(error_kind(err.as_ref()), ErrorKind::CircuitOpen(_))
}

async fn trip(svc: &mut (impl Service<Reply, Error = BoxError> + Send), breaker: &Handle) {
    for _ in 0..5 {
        let _ = call(svc, Reply::Err).await;
    }
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn no_trip_before_minimum_calls() {
    let layer = layer();
    let breaker = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    for _ in 0..4 {
        assert!(call(&mut svc, Reply::Err).await.is_err());
    }
    // 4 failures out of 4 is a 100 % failure rate, but under `minimum_calls`.
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().failures, 4);
    assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
    assert_eq!(dep.seen.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn trips_when_the_failure_rate_reaches_the_threshold() {
    let layer = layer();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    // 3 successes then failures: 2 of 5 is 40 %, 3 of 6 is 50 % = the threshold.
    for _ in 0..3 {
        call(&mut svc, Reply::Ok).await.unwrap();
    }
    call(&mut svc, Reply::Err).await.unwrap_err();
    call(&mut svc, Reply::Err).await.unwrap_err();
    assert_eq!(breaker.state(), State::Closed);
    call(&mut svc, Reply::Err).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(retry_after(&err), Some(OPEN));
}

#[tokio::test(start_paused = true)]
async fn open_for_exactly_the_open_duration_then_exactly_the_permitted_probes() {
    let layer = layer();
    let breaker = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    trip(&mut svc, &breaker).await;
    let calls_at_trip = dep.seen.calls();

    advance(OPEN - Duration::from_millis(1)).await;
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(retry_after(&err), Some(Duration::from_millis(1)));
    assert_eq!(
        dep.seen.calls(),
        calls_at_trip,
        "open breaker must not call the dependency"
    );

    advance(Duration::from_millis(1)).await;
    // Two probes that hang, admitted; everyone else rejected with the time left in the trial.
    let mut probes = Vec::new();
    for _ in 0..2 {
        let mut s = svc.clone();
        probes.push(tokio::spawn(async move {
            call(&mut s, Reply::Delay(Duration::from_secs(5))).await
        }));
    }
    tokio::task::yield_now().await;
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.snapshot().probes_in_flight, 2);
    for _ in 0..5 {
        let err = call(&mut svc, Reply::Ok).await.unwrap_err();
        assert_eq!(retry_after(&err), Some(Duration::from_secs(30)));
    }
    assert_eq!(dep.seen.calls(), calls_at_trip + 2);
    // Both probes succeed: closed, with an empty window.
    for p in probes {
        p.await.unwrap().unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().calls, 0);
}

/// Opens at 50 % of 5 calls or more for `OPEN`, then twice as long after each failed trial,
/// up to `max`; one probe.
fn doubling_up_to(max: Duration) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .window(SlidingWindow::Count(10))
        .minimum_calls(5)
        .open_duration(OPEN)
        .backoff(Backoff {
            multiplier: 2.0,
            max,
            jitter: 0.0,
        })
        .permitted_probes(1)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_failing_verdict_reopens_with_the_grown_duration() {
    let layer = doubling_up_to(Duration::from_secs(25));
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    trip(&mut svc, &breaker).await;
    advance(OPEN).await;
    call(&mut svc, Reply::Err).await.unwrap_err(); // the probe fails
    assert_eq!(breaker.state(), State::Open);
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(retry_after(&err), Some(OPEN * 2));
    advance(OPEN * 2).await;
    call(&mut svc, Reply::Err).await.unwrap_err();
    // 40 s would exceed the cap of 25 s.
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(retry_after(&err), Some(Duration::from_secs(25)));
    assert_eq!(breaker.snapshot().consecutive_trips, 3);
    advance(Duration::from_secs(25)).await;
    call(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().consecutive_trips, 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back() {
    let layer = layer();
    let breaker = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    trip(&mut svc, &breaker).await;
    advance(OPEN).await;
    // Take both probe slots with calls that hang, then drop one of them mid-flight.
    let mut first = svc.clone();
    let mut first = Box::pin(async move { call(&mut first, Reply::Hang).await });
    assert!((&mut first).now_or_never().is_none());
    let mut second = svc.clone();
    let second = tokio::spawn(async move { call(&mut second, Reply::Hang).await });
    tokio::task::yield_now().await;
    assert_eq!(breaker.snapshot().probes_in_flight, 2);
    assert!(is_open_rejection(
        &call(&mut svc, Reply::Ok).await.unwrap_err()
    ));
    drop(first);
    assert_eq!(dep.seen.dropped(), 1);
    assert_eq!(breaker.snapshot().probes_in_flight, 1);
    // The freed slot admits a new probe.
    call(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.snapshot().probe_successes, 1);
    second.abort();
    let _ = second.await;
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_service_made_ready_and_dropped_gives_its_probe_slot_back() {
    let layer = layer();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    trip(&mut svc, &breaker).await;
    advance(OPEN).await;
    let mut ready = svc.clone();
    ready.ready().await.unwrap(); // takes a probe slot
    assert_eq!(breaker.snapshot().probes_in_flight, 1);
    drop(ready);
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_probe_hanging_past_max_half_open_wait_reopens() {
    let layer = layer();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    trip(&mut svc, &breaker).await;
    advance(OPEN).await;
    let mut s1 = svc.clone();
    let mut s2 = svc.clone();
    let _h1 = tokio::spawn(async move { call(&mut s1, Reply::Hang).await });
    let _h2 = tokio::spawn(async move { call(&mut s2, Reply::Hang).await });
    tokio::task::yield_now().await;
    assert_eq!(breaker.state(), State::HalfOpen);
    advance(Duration::from_secs(30) - Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), State::HalfOpen);
    advance(Duration::from_millis(1)).await;
    // Nobody completed, yet the breaker is not stuck half-open.
    assert_eq!(breaker.state(), State::Open);
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(retry_after(&err), Some(OPEN));
}

/// A dependency that is healthy again but called rarely: its probes come one at a time, far
/// apart, and each answers at once. The trial lasts longer than `max_half_open_wait`, yet no
/// probe ever took long: the breaker closes once enough of them succeed, rather than reopening
/// every time the wait runs out (which would keep a low-traffic service open for good).
#[tokio::test(start_paused = true)]
async fn probes_spaced_further_apart_than_max_half_open_wait_still_close_the_breaker() {
    let layer = CircuitBreakerLayer::builder()
        .window(SlidingWindow::Count(10))
        .minimum_calls(5)
        .failure_rate(0.5)
        .open_duration(OPEN)
        .permitted_probes(4)
        .probe_success_rate(1.0)
        .max_half_open_wait(Duration::from_secs(30))
        .build()
        .unwrap();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    trip(&mut svc, &breaker).await;
    advance(OPEN).await;
    let trips = breaker.snapshot().generation;
    for probe in 0..4 {
        call(&mut svc, Reply::Ok).await.unwrap();
        if probe < 3 {
            assert_eq!(breaker.state(), State::HalfOpen, "after probe {probe}");
            // A health check reading the state between probes ends nothing either.
            advance(Duration::from_secs(25)).await;
            assert_eq!(
                breaker.state(),
                State::HalfOpen,
                "before probe {}",
                probe + 1
            );
        }
    }
    assert_eq!(breaker.state(), State::Closed);
    // Open -> half-open -> closed: no reopen came between.
    assert_eq!(breaker.snapshot().generation, trips + 2);
}

/// A probe its caller gives up on (drops) gives its slot back, unless it had been in flight for
/// `max_half_open_wait`: then it took that long, and the breaker reopens, rather than letting
/// caller after caller hang in a dependency that never answers.
#[tokio::test(start_paused = true)]
async fn a_probe_given_up_on_after_max_half_open_wait_reopens_and_before_it_does_not() {
    let layer = layer();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    trip(&mut svc, &breaker).await;
    advance(OPEN).await;
    let early = tokio::time::timeout(Duration::from_secs(5), call(&mut svc, Reply::Hang)).await;
    assert!(early.is_err(), "given up on");
    let snap = breaker.snapshot();
    assert_eq!((snap.state, snap.probes_in_flight), (State::HalfOpen, 0));
    let late = tokio::time::timeout(Duration::from_secs(30), call(&mut svc, Reply::Hang)).await;
    assert!(late.is_err(), "given up on");
    let snap = breaker.snapshot();
    assert_eq!((snap.state, snap.probes_in_flight), (State::Open, 0));
}

/// A dependency that never answers, and callers that give up on it sooner than
/// `max_half_open_wait`: each probe given up on frees its slot, but the trial's time with
/// probes in flight adds up, and once it reaches the wait the breaker reopens, rather than
/// letting caller after caller hang there for good.
#[tokio::test(start_paused = true)]
async fn probes_given_up_on_early_add_up_to_max_half_open_wait_and_reopen() {
    let layer = layer();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    trip(&mut svc, &breaker).await;
    advance(OPEN).await;
    for given_up in 1..=6 {
        let hung = tokio::time::timeout(Duration::from_secs(5), call(&mut svc, Reply::Hang));
        assert!(hung.await.is_err());
        // A pause between callers is not time waited on a probe.
        advance(Duration::from_secs(60)).await;
        let expected = if given_up < 6 {
            State::HalfOpen
        } else {
            State::Open
        };
        assert_eq!(breaker.state(), expected, "after {given_up} given up on");
    }
}

/// Overlapping probes keep the trial busy: 40 s with probes in flight, against a 30 s
/// `max_half_open_wait`, reopens the breaker when the last one answers, though each answered
/// in under 30 s, and whether or not anything read the state meanwhile.
#[tokio::test(start_paused = true)]
async fn overlapping_probes_busy_past_max_half_open_wait_reopen_without_a_reader() {
    let layer = layer();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    trip(&mut svc, &breaker).await;
    advance(OPEN).await;
    let (mut a, mut b) = (svc.clone(), svc.clone());
    let first =
        tokio::spawn(async move { call(&mut a, Reply::Delay(Duration::from_secs(25))).await });
    advance(Duration::from_secs(20)).await;
    let second =
        tokio::spawn(async move { call(&mut b, Reply::Delay(Duration::from_secs(20))).await });
    advance(Duration::from_secs(20)).await;
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(breaker.state(), State::Open);
}

/// A probe that answers, but only after `max_half_open_wait`, reopens the breaker even when
/// no other call or reader noticed it taking that long: its success is too late to judge the
/// dependency healthy by.
#[tokio::test(start_paused = true)]
async fn a_probe_succeeding_after_max_half_open_wait_reopens() {
    let layer = layer();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    trip(&mut svc, &breaker).await;
    advance(OPEN).await;
    call(&mut svc, Reply::Delay(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(breaker.state(), State::Open);
    // A probe that answers just in time counts as a success.
    advance(OPEN).await;
    call(&mut svc, Reply::Delay(Duration::from_secs(29)))
        .await
        .unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.snapshot().probe_successes, 1);
}

/// Calls admitted while the breaker was closed that fail late, one while it is open and one
/// after it has closed again, change nothing: no longer open, no failure in the new window.
#[tokio::test(start_paused = true)]
async fn a_call_admitted_closed_that_fails_after_the_trip_does_not_extend_open() {
    let layer = layer();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    let late = |after: Duration| {
        let mut slow = svc.clone();
        tokio::spawn(async move { call(&mut slow, Reply::FailAfter(after)).await })
    };
    let while_open = late(Duration::from_secs(3));
    let once_closed = late(Duration::from_secs(15));
    tokio::task::yield_now().await; // both admitted, closed
    trip(&mut svc, &breaker).await;
    let generation = breaker.snapshot().generation;
    advance(Duration::from_secs(3)).await;
    while_open.await.unwrap().unwrap_err();
    // The old call's failure changed nothing: same state, same generation, same deadline.
    let snap = breaker.snapshot();
    assert_eq!((snap.state, snap.generation), (State::Open, generation));
    assert_eq!(snap.retry_after, Some(OPEN - Duration::from_secs(3)));

    // Closed again by two probes; then the other old call fails.
    advance(Duration::from_secs(7)).await;
    call(&mut svc, Reply::Ok).await.unwrap();
    call(&mut svc, Reply::Ok).await.unwrap();
    let closed = breaker.snapshot();
    assert_eq!(closed.state, State::Closed);
    advance(Duration::from_secs(5)).await;
    once_closed.await.unwrap().unwrap_err();
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.state, snap.generation, snap.calls, snap.failures),
        (State::Closed, closed.generation, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_gap_longer_than_the_window_forgets_old_outcomes() {
    let layer = CircuitBreakerLayer::builder()
        .window(SlidingWindow::Time(Duration::from_secs(10)))
        .minimum_calls(4)
        .build()
        .unwrap();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    for _ in 0..3 {
        call(&mut svc, Reply::Err).await.unwrap_err();
    }
    assert_eq!(breaker.snapshot().failures, 3);
    advance(Duration::from_secs(11)).await;
    assert_eq!(breaker.snapshot().calls, 0);
    // One more failure: with the old three forgotten, 1 call is under minimum_calls.
    call(&mut svc, Reply::Err).await.unwrap_err();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().failures, 1);
    // A very long gap (the bucket tags wrap around) forgets as well.
    for _ in 0..2 {
        call(&mut svc, Reply::Err).await.unwrap_err();
    }
    advance(Duration::from_millis(500) * 65_536 * 20).await;
    call(&mut svc, Reply::Err).await.unwrap_err();
    assert_eq!(breaker.snapshot().failures, 1);
    assert_eq!(breaker.state(), State::Closed);
}

/// An inner service that is never ready and counts how often it is asked.
#[derive(Clone, Default)]
struct NeverReady(Arc<AtomicUsize>);

impl Service<()> for NeverReady {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }

    fn call(&mut self, _: ()) -> Self::Future {
        panic!("an open breaker must not call the inner service");
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_reports_ready_without_polling_the_inner_service() {
    let layer = layer();
    let breaker = layer.handle();
    breaker.force_open();
    let inner = NeverReady::default();
    let mut svc = layer.layer(inner.clone());
    for _ in 0..3 {
        let ready = std::future::poll_fn(|cx| svc.poll_ready(cx)).await;
        assert!(
            ready.is_ok(),
            "poll_ready of an open breaker is Ok, not Err"
        );
        let err = svc.call(()).await.unwrap_err();
        assert!(is_open_rejection(&err));
        assert_eq!(
            retry_after(&err),
            None,
            "forced open: no probe is scheduled"
        );
    }
    assert_eq!(inner.0.load(Ordering::SeqCst), 0);
    assert_eq!(breaker.snapshot().rejected, 3);
}

/// An admission held while the inner service was not ready lapses when the breaker opens:
/// the call is rejected, not sent to the dependency through an open breaker.
#[tokio::test(start_paused = true)]
async fn an_admission_kept_while_the_inner_service_was_not_ready_lapses_when_the_breaker_opens() {
    let layer = layer();
    let breaker = layer.handle();
    let inner = NeverReady::default();
    let mut svc = layer.layer(inner.clone());
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(
        svc.poll_ready(&mut cx).is_pending(),
        "admitted, inner not ready"
    );
    breaker.force_open();
    assert!(
        matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))),
        "now rejected: ready without asking the inner service"
    );
    let err = svc.call(()).await.unwrap_err(); // `NeverReady::call` would panic
    assert!(is_open_rejection(&err));
    assert_eq!(inner.0.load(Ordering::SeqCst), 1);
    assert_eq!(breaker.snapshot().rejected, 1);
}

/// A service made ready while the breaker is closed and called after it opened (it waited in
/// a bulkhead's queue outside, say) is rejected, not sent through the open breaker.
#[tokio::test(start_paused = true)]
async fn a_service_made_ready_then_called_after_the_breaker_opens_is_rejected() {
    let layer = layer();
    let breaker = layer.handle();
    let dependency = Dependency::new();
    let mut svc = layer.layer(dependency.clone());
    svc.ready().await.unwrap(); // admitted, closed
    breaker.force_open();
    let err = svc.call(Reply::Ok).await.unwrap_err();
    assert!(is_open_rejection(&err));
    assert_eq!(dependency.seen.calls(), 0, "never sent");
    let snap = breaker.snapshot();
    assert_eq!((snap.rejected, snap.calls), (1, 0));
}

/// Reads the dependency's "Retry-After" from a thread-local the test sets.
fn pushback_classifier(res: Result<&&'static str, &BoxError>) -> Outcome {
    match res {
        Ok(_) => Outcome::success(),
        Err(_) => Outcome::failure().with_pushback(PUSHBACK.with(|p| p.get())),
    }
}

type Classifier = fn(Result<&&'static str, &BoxError>) -> Outcome;

fn pushback_layer() -> (CircuitBreakerLayer<Classifier>, Handle) {
    let layer = CircuitBreakerLayer::builder()
        .window(SlidingWindow::Count(4))
        .minimum_calls(2)
        .open_duration(Duration::from_secs(5))
        .max_pushback(Duration::from_secs(600))
        .build()
        .unwrap();
    let handle = layer.handle();
    (
        layer.with_classifier(pushback_classifier as Classifier),
        handle,
    )
}

thread_local! {
    static PUSHBACK: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

#[tokio::test(start_paused = true)]
async fn pushback_keeps_the_breaker_open_as_long_as_asked_and_is_capped() {
    let (layer, breaker) = pushback_layer();
    let mut svc = layer.layer(Dependency::new());
    PUSHBACK.with(|p| p.set(Duration::from_secs(120)));
    call(&mut svc, Reply::Err).await.unwrap_err();
    call(&mut svc, Reply::Err).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(retry_after(&err), Some(Duration::from_secs(120)));
    advance(Duration::from_secs(119)).await;
    assert!(is_open_rejection(
        &call(&mut svc, Reply::Ok).await.unwrap_err()
    ));
    advance(Duration::from_secs(1)).await;
    call(&mut svc, Reply::Ok).await.unwrap(); // probe admitted after exactly 120 s

    // A hostile 10^12 s is clamped to max_pushback (600 s), never read as "no pushback".
    breaker.reset();
    PUSHBACK.with(|p| p.set(Duration::from_secs(1_000_000_000_000)));
    let start = Instant::now();
    call(&mut svc, Reply::Err).await.unwrap_err();
    call(&mut svc, Reply::Err).await.unwrap_err();
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(retry_after(&err), Some(Duration::from_secs(600)));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_is_a_typed_error_and_leaks_no_probe_slot() {
    fn buggy(res: Result<&&'static str, &BoxError>) -> Outcome {
        if res.is_ok() {
            panic!("classifier bug");
        }
        Outcome::failure()
    }
    let layer = layer().with_classifier(buggy as Classifier);
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    trip(&mut svc, &breaker).await;
    advance(OPEN).await;
    for _ in 0..3 {
        let mut s = svc.clone();
        let caught = support::caught_callback_panic(async move { call(&mut s, Reply::Ok).await });
        assert_eq!(caught.await, ("classifier", "classifier bug".to_owned()));
        assert_eq!(breaker.snapshot().probes_in_flight, 0);
    }
    // Each probe was recorded as ignored: still half-open, and the next probe decides.
    assert_eq!(breaker.state(), State::HalfOpen);
    call(&mut svc, Reply::Err).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn typed_errors_give_the_rejection_as_a_value() {
    let layer = layer().typed_errors();
    let breaker = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    for _ in 0..5 {
        match svc.ready().await.unwrap().call(Reply::Err).await {
            Err(BreakerError::Inner(e)) => assert!(e.is::<support::Failed>()),
            other => panic!("expected the dependency's error, got {other:?}"),
        }
    }
    assert_eq!(breaker.state(), State::Open);
    advance(Duration::from_secs(4)).await;
    match svc.ready().await.unwrap().call(Reply::Ok).await {
        Err(BreakerError::Open(open)) => {
            assert_eq!(open.retry_after(), Some(OPEN - Duration::from_secs(4)));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Boxed by the caller, the rejection is still told apart.
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Reply::Ok)
        .await
        .unwrap_err();
    let err: BoxError = Box::new(err);
    assert_eq!(retry_after(&err), Some(OPEN - Duration::from_secs(4)));
    assert_eq!((dep.seen.calls(), breaker.snapshot().rejected), (5, 2));
    // The same breaker rules: after the open duration, probes close it, from spawned tasks
    // (a typed service's futures are `Send`).
    advance(OPEN).await;
    for _ in 0..2 {
        let mut svc = svc.clone();
        let probe = tokio::spawn(async move { svc.ready().await?.call(Reply::Ok).await });
        assert_eq!(probe.await.unwrap().unwrap(), "ok");
    }
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn typed_errors_carry_a_classifier_panic_as_an_inner_error() {
    fn buggy(_: Result<&&'static str, &BoxError>) -> Outcome {
        panic!("classifier bug");
    }
    let layer = layer().with_classifier(buggy as Classifier).typed_errors();
    let breaker = layer.handle();
    let svc = layer.layer(Dependency::new());
    let result = support::catch(svc.oneshot(Reply::Ok)).await.unwrap();
    let (callback, message) = support::callback_panicked(result.map_err(BreakerError::into_boxed));
    assert_eq!(
        (callback, message.as_str()),
        ("classifier", "classifier bug")
    );
    assert_eq!(breaker.snapshot().calls, 0, "recorded as ignored");
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker_and_handle_call_guards_plain_futures() {
    let layer = layer();
    let breaker = layer.handle();
    let svc = layer.layer(Dependency::new());
    for _ in 0..5 {
        let mut clone = svc.clone();
        call(&mut clone, Reply::Err).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
    let polled = Arc::new(AtomicUsize::new(0));
    let p = polled.clone();
    let r = breaker
        .call(async move {
            p.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        })
        .await;
    assert!(matches!(
        r,
        Err(palisade::circuit_breaker::CallError::Open(_))
    ));
    assert_eq!(
        polled.load(Ordering::SeqCst),
        0,
        "rejected future is never polled"
    );
    breaker.reset();
    assert_eq!(
        breaker
            .call(async { Ok::<_, std::io::Error>(7) })
            .await
            .unwrap(),
        7
    );
    assert_eq!(breaker.snapshot().calls, 1);
    let _ = DefaultClassifier;
}

#[tokio::test(start_paused = true)]
async fn operator_overrides() {
    let layer = layer();
    let breaker = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    breaker.disable();
    for _ in 0..10 {
        call(&mut svc, Reply::Err).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Disabled);
    assert_eq!(breaker.snapshot().failures, 10, "disabled still records");
    assert_eq!(dep.seen.calls(), 10);

    breaker.metrics_only();
    for _ in 0..10 {
        call(&mut svc, Reply::Err).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::MetricsOnly);
    assert_eq!(dep.seen.calls(), 20, "metrics-only never rejects");
    // Each would-trip starts the window afresh: 10 failures = 2 would-trips, window empty.
    assert_eq!(breaker.snapshot().calls, 0);

    breaker.force_open();
    call(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(dep.seen.calls(), 20);
    breaker.reset();
    call(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_the_breaker_at_the_slow_call_rate() {
    let layer = CircuitBreakerLayer::builder()
        .window(SlidingWindow::Count(4))
        .minimum_calls(4)
        .slow_call_duration(Duration::from_secs(1))
        .slow_call_rate(0.5)
        .build()
        .unwrap();
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    // Fast (ready at once, or under a second) and slow (a second or more) successes.
    call(&mut svc, Reply::Ok).await.unwrap();
    call(&mut svc, Reply::Delay(Duration::from_millis(999)))
        .await
        .unwrap();
    call(&mut svc, Reply::Delay(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(breaker.snapshot().slow_calls, 1);
    assert_eq!(breaker.state(), State::Closed);
    // The second slow call of four: a 50 % slow-call rate opens the breaker.
    call(&mut svc, Reply::Delay(Duration::from_secs(3)))
        .await
        .unwrap();
    assert_eq!(breaker.state(), State::Open);
}

/// A failure checks the slow-call rate too: slow successes followed by a fast failure open the
/// breaker when it is the slow-call rate that reached its threshold.
#[test]
fn a_failure_finds_the_slow_call_rate_at_its_threshold() {
    use palisade::circuit_breaker::{CircuitBreakerConfig, StateMachine};
    for (window, at) in [
        (SlidingWindow::Count(4), Duration::ZERO),
        (
            SlidingWindow::Time(Duration::from_secs(10)),
            Duration::from_secs(1),
        ),
    ] {
        let mut config = CircuitBreakerConfig::default();
        config.window = window;
        config.minimum_calls = 4;
        config.failure_rate = 0.5;
        config.slow_call_rate = 0.5;
        config.slow_call_duration = Some(Duration::from_millis(100));
        let sm = StateMachine::new(&config).unwrap();
        let slow = Duration::from_millis(150);
        let fast = Duration::from_millis(1);
        for outcome in [
            Outcome::success().with_duration(slow),
            Outcome::success().with_duration(slow),
            Outcome::success().with_duration(fast),
        ] {
            let permit = sm.admit(at).unwrap();
            sm.record(permit, outcome, at);
        }
        assert_eq!(sm.snapshot(at).state, State::Closed, "{window:?}");
        // 1 failure in 4 (25 %), 2 slow in 4 (50 %): the slow-call rate opens it.
        let permit = sm.admit(at).unwrap();
        sm.record(permit, Outcome::failure().with_duration(fast), at);
        assert_eq!(sm.snapshot(at).state, State::Open, "{window:?}");
    }
}

/// `CallError::Inner` is transparent: an error reporter walking its sources says the
/// dependency's message once, not twice; `Open` and `CallbackPanicked` say what happened, then
/// why, and are found boxed; and palisade's errors are found inside a `std::io::Error`, whose
/// own `source` skips the error it wraps.
#[test]
fn call_errors_read_once_in_a_chain_and_are_found_inside_io_errors() {
    use palisade::circuit_breaker::CallError;
    use palisade::error::CircuitOpen;

    // The dependency's error reads once; palisade's own say what happened, then why, and
    // `error_kind` finds them inside a boxed `CallError` (a breaker further out ignores them).
    let chain = |err: &dyn std::error::Error| {
        let mut chain = vec![err.to_string()];
        let mut cur = err.source();
        while let Some(e) = cur {
            chain.push(e.to_string());
            cur = e.source();
        }
        chain
    };
    let inner: CallError<std::io::Error> = CallError::Inner(std::io::Error::other("refused"));
    assert_eq!(chain(&inner), ["refused"]);
    let open: CallError<std::io::Error> = CallError::Open(CircuitOpen::new(None));
    let open_chain = chain(&open);
    assert_eq!(open_chain.len(), 2, "{open_chain:?}");
    assert_ne!(open_chain[0], open_chain[1]);
    let boxed: BoxError = Box::new(open);
    assert!(matches!(
        error_kind(boxed.as_ref()),
        ErrorKind::CircuitOpen(_)
    ));
    assert!(palisade::classify::classify_error(&boxed).is_ignored());
    let panicked: CallError<std::io::Error> = CallError::CallbackPanicked(
        palisade::error::CallbackPanicked::new("classifier", "a bug"),
    );
    assert_eq!(chain(&panicked).len(), 2);
    let boxed: BoxError = Box::new(panicked);
    assert!(matches!(
        error_kind(boxed.as_ref()),
        ErrorKind::CallbackPanicked(_)
    ));

    let io = std::io::Error::other(CircuitOpen::new(None));
    assert!(matches!(error_kind(&io), ErrorKind::CircuitOpen(_)));
    let io = std::io::Error::other(palisade::error::BulkheadFull::new(4));
    assert!(error_kind(&io).is_rejection());
}

/// A service refuses the calls of one open state alike without asking the state machine
/// again; each new state (a reopening, a forced open, a reset) is asked afresh, and every
/// refusal is counted.
#[tokio::test(start_paused = true)]
async fn repeated_rejections_follow_each_new_state_and_are_all_counted() {
    let layer = doubling_up_to(Duration::from_secs(60));
    let breaker = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    trip(&mut svc, &breaker).await;
    for left in [OPEN, OPEN - Duration::from_secs(4)] {
        let err = call(&mut svc, Reply::Ok).await.unwrap_err();
        assert_eq!(retry_after(&err), Some(left));
        advance(Duration::from_secs(4)).await;
    }
    advance(OPEN).await; // the timer fires: the next call is the probe
    call(&mut svc, Reply::Err).await.unwrap_err(); // which fails: open again, for twice as long
    for _ in 0..2 {
        let err = call(&mut svc, Reply::Ok).await.unwrap_err();
        assert_eq!(
            retry_after(&err),
            Some(OPEN * 2),
            "the new open state's time"
        );
    }
    breaker.force_open();
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(retry_after(&err), None, "forced open: no probe time");
    breaker.reset();
    assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
    assert_eq!(dep.seen.calls(), 5 + 1 + 1);
    assert_eq!(breaker.snapshot().rejected, 5);
}

/// `Handle::call` times a call from its first suspension, as the layer does: a future that
/// completes on its first poll waited on nothing, however long that poll took.
#[tokio::test(start_paused = true)]
async fn handle_call_times_a_call_from_its_first_suspension() {
    let breaker = CircuitBreakerLayer::builder()
        .window(SlidingWindow::Count(1))
        .minimum_calls(1)
        .slow_call_duration(Duration::from_secs(1))
        .slow_call_rate(1.0)
        .build()
        .unwrap()
        .handle();
    // A first poll that takes 20 s of the paused clock, then completes.
    let busy_first_poll = std::future::poll_fn(|cx| {
        let mut advance = std::pin::pin!(advance(Duration::from_secs(20)));
        let _ = advance.as_mut().poll(cx); // moves the clock, then yields (ignored)
        Poll::Ready(Ok::<_, std::io::Error>(()))
    });
    let before = Instant::now();
    breaker.call(busy_first_poll).await.unwrap();
    assert_eq!(before.elapsed(), Duration::from_secs(20));
    assert_eq!(breaker.snapshot().slow_calls, 0);
    assert_eq!(breaker.state(), State::Closed);
    // A call suspended for 20 s is slow: the breaker opens.
    breaker
        .call(async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            Ok::<_, std::io::Error>(())
        })
        .await
        .unwrap();
    assert_eq!(breaker.state(), State::Open);
}

/// A success that makes up `minimum_calls` behind failures is judged: 9 failures of 10 trip
/// the breaker, whichever kind of call came tenth. And in a time window, a success after the
/// older successes expired finds the failures' rate at its threshold.
#[test]
fn a_success_that_makes_up_the_minimum_or_follows_an_expiry_is_judged() {
    use palisade::circuit_breaker::StateMachine;
    let mut config = palisade::circuit_breaker::CircuitBreakerConfig::default();
    config.window = SlidingWindow::Count(10);
    config.minimum_calls = 10;
    config.failure_rate = 0.5;
    let sm = StateMachine::new(&config).unwrap();
    // Not at the breaker's origin: the trip's time is the success's.
    let t = Duration::from_secs(100);
    for _ in 0..9 {
        let p = sm.admit(t).unwrap();
        sm.record(p, Outcome::failure(), t);
    }
    assert_eq!(
        sm.snapshot(t).state,
        State::Closed,
        "9 calls: not judged yet"
    );
    let p = sm.admit(t).unwrap();
    sm.record(p, Outcome::success(), t);
    let snapshot = sm.snapshot(t);
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.retry_after, Some(config.open_duration));
    assert!(
        sm.admit(t + Duration::from_secs(1)).is_err(),
        "open from the trip"
    );

    // 20 s window of 1 s buckets: 10 successes, then 4 failures 10 s later (4 of 14: below
    // 50 %); 15 s on, the successes have expired and the next success finds 4 of 5 failed.
    config.window = SlidingWindow::Time(Duration::from_secs(20));
    config.minimum_calls = 5;
    let sm = StateMachine::new(&config).unwrap();
    let at = Duration::from_secs;
    for _ in 0..10 {
        let p = sm.admit(at(0)).unwrap();
        sm.record(p, Outcome::success(), at(0));
    }
    for _ in 0..4 {
        let p = sm.admit(at(10)).unwrap();
        sm.record(p, Outcome::failure(), at(10));
    }
    assert_eq!(sm.snapshot(at(10)).state, State::Closed);
    let p = sm.admit(at(25)).unwrap();
    sm.record(p, Outcome::success(), at(25));
    assert_eq!(sm.snapshot(at(25)).state, State::Open);
}

/// A time-window bucket that has counted 65 535 calls keeps counting (its counts halved, each
/// standing for twice as many calls, and later calls sampled): a burst of failures later in
/// the same bucket still opens the breaker, at the rate of all the calls, not of a sample that
/// stopped or of the latest calls alone.
#[test]
fn a_full_time_bucket_still_sees_a_burst_of_failures() {
    use palisade::circuit_breaker::StateMachine;
    let mut config = palisade::circuit_breaker::CircuitBreakerConfig::default();
    config.window = SlidingWindow::Time(Duration::from_secs(20));
    config.minimum_calls = 100;
    config.failure_rate = 0.5;
    // Failures at `burst` after `successes` at 0, until the breaker opens: how many it took.
    let failures_to_open = |successes: u32, burst: Duration| {
        // Each call at its own nanosecond, as on a running clock (a scaled bucket samples by
        // the time of the call).
        let sm = StateMachine::new(&config).unwrap();
        for i in 0..successes {
            let at = Duration::from_nanos(u64::from(i));
            let p = sm.admit(at).unwrap();
            sm.record(p, Outcome::success(), at);
        }
        let mut failures = 0u32;
        while sm.snapshot(burst).state == State::Closed && failures < 400_000 {
            let at = burst + Duration::from_nanos(u64::from(failures));
            let p = sm.admit(at).unwrap();
            sm.record(p, Outcome::failure(), at);
            failures += 1;
        }
        failures
    };
    // In the same 1 s bucket: 50 % is reached at about 65 535 failures.
    let same = failures_to_open(65_535, Duration::from_millis(500));
    assert!(
        (55_000..80_000).contains(&same),
        "opened after {same} failures"
    );
    // In the next bucket, after 100 000 successes: at about 100 000 failures, not when the
    // busy bucket's sample is outweighed (34 000 with halving alone, 65 535 when it stopped).
    let next = failures_to_open(100_000, Duration::from_secs(1));
    assert!(
        (85_000..120_000).contains(&next),
        "opened after {next} failures"
    );
}
