//! The timeout's rules through its tower layer, on paused time.

mod support;

use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures::poll;
use palisade::error::{ErrorKind, error_kind};
use palisade::timeout::{TimeoutConfig, TimeoutLayer};
use proptest::prelude::*;
use support::{Dependency, Failed, Reply, call, end_of_time_from};
use tokio::time::{Instant, advance};
use tower::{BoxError, Layer, Service, ServiceExt};

const TIMEOUT: Duration = Duration::from_millis(100);
const MS: Duration = Duration::from_millis(1);

fn layer(timeout: Duration) -> TimeoutLayer {
    TimeoutLayer::builder().timeout(timeout).build().unwrap()
}

/// The timeout that fired, or a panic if the error is anything else.
fn elapsed_after(err: &BoxError) -> Duration {
    match error_kind(err.as_ref()) {
        ErrorKind::TimedOut(elapsed) => elapsed.after(),
        other => panic!("expected TimedOut, got {other:?}"),
    }
}

/// A request that carries its own timeout, for the per-request function to read.
#[derive(Debug, Clone, Copy)]
struct Job {
    reply: Reply,
    timeout: Option<Duration>,
}

fn per_request_service(
    default: Duration,
    dep: &Dependency,
) -> impl Service<Job, Response = &'static str, Error = BoxError> + use<> {
    TimeoutLayer::builder()
        .timeout(default)
        .per_request(|job: &Job| job.timeout)
        .build()
        .unwrap()
        .layer(dep.clone().map_request(|job: Job| job.reply))
}

/// Calls and awaits (paused time advances by itself), returning the result and the time taken.
async fn timed<S, R>(svc: &mut S, req: R) -> (Result<S::Response, BoxError>, Duration)
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    let start = Instant::now();
    let result = call(svc, req).await;
    (result, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn fires_at_the_deadline_and_not_before() {
    let mut svc = layer(TIMEOUT).layer(Dependency::new());
    poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let mut fut = pin!(svc.call(Reply::Hang));
    assert!(poll!(fut.as_mut()).is_pending());
    advance(TIMEOUT - MS).await;
    assert!(
        poll!(fut.as_mut()).is_pending(),
        "fired before the deadline"
    );
    advance(MS).await;
    match poll!(fut.as_mut()) {
        Poll::Ready(Err(err)) => assert_eq!(elapsed_after(&err), TIMEOUT),
        other => panic!("expected Elapsed at the deadline, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn inner_future_is_dropped_at_expiry() {
    let dep = Dependency::new();
    let mut svc = layer(TIMEOUT).layer(dep.clone());
    poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let mut fut = pin!(svc.call(Reply::Hang));
    assert!(poll!(fut.as_mut()).is_pending());
    advance(TIMEOUT - MS).await;
    assert!(poll!(fut.as_mut()).is_pending());
    assert_eq!((dep.seen.dropped(), dep.seen.in_flight()), (0, 1));
    advance(MS).await;
    assert!(matches!(poll!(fut.as_mut()), Poll::Ready(Err(_))));
    // The response future is still alive: the inner one was dropped by the timeout itself.
    assert_eq!((dep.seen.dropped(), dep.seen.in_flight()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn deadline_counts_from_call_not_from_poll_ready() {
    let (mock, mut handle) = tower_test::mock::pair::<&str, &str>();
    let mut svc = layer(TIMEOUT).layer(mock);
    handle.allow(0);
    let mut ready = pin!(poll_fn(|cx| svc.poll_ready(cx)));
    assert!(poll!(ready.as_mut()).is_pending());
    // Waiting for readiness is not timed, however long it takes.
    advance(10 * TIMEOUT).await;
    assert!(poll!(ready.as_mut()).is_pending());
    handle.allow(1);
    assert!(matches!(poll!(ready.as_mut()), Poll::Ready(Ok(()))));
    let mut fut = pin!(svc.call("req"));
    assert!(poll!(fut.as_mut()).is_pending());
    advance(TIMEOUT - MS).await;
    assert!(poll!(fut.as_mut()).is_pending());
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_response("done");
    assert_eq!(fut.await.unwrap(), "done");
}

/// The deadline counts from `call`, also for a response future first polled later (the
/// timeout works its deadline out only once the call waits, from the start kept at `call`).
#[tokio::test(start_paused = true)]
async fn deadline_counts_from_call_when_the_future_is_first_polled_later() {
    let (mock, mut handle) = tower_test::mock::pair::<&str, &str>();
    let mut svc = layer(TIMEOUT).layer(mock);
    poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let mut fut = pin!(svc.call("req"));
    advance(TIMEOUT / 2).await;
    assert!(poll!(fut.as_mut()).is_pending());
    let _request = handle.next_request().await.unwrap();
    advance(TIMEOUT / 2 - MS).await;
    assert!(poll!(fut.as_mut()).is_pending());
    advance(MS).await;
    // Polled, not awaited: awaiting on paused time would move the clock on to any deadline.
    match poll!(fut.as_mut()) {
        Poll::Ready(Err(err)) => assert!(err.is::<palisade::error::Elapsed>(), "{err}"),
        other => panic!("expected the timeout at `call` + {TIMEOUT:?}, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn response_ready_at_the_deadline_wins() {
    let (mock, mut handle) = tower_test::mock::pair::<&str, &str>();
    let mut svc = layer(TIMEOUT).layer(mock);
    poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let mut fut = pin!(svc.call("req"));
    assert!(poll!(fut.as_mut()).is_pending());
    let (_, respond) = handle.next_request().await.unwrap();
    advance(TIMEOUT).await;
    // Both are ready when the future is next polled; the response is not thrown away.
    respond.send_response("just in time");
    assert_eq!(
        poll!(fut.as_mut()).map(Result::unwrap),
        Poll::Ready("just in time")
    );
}

#[tokio::test(start_paused = true)]
async fn a_shorter_per_request_timeout_wins_over_the_default() {
    let dep = Dependency::new();
    let mut svc = per_request_service(Duration::from_secs(10), &dep);
    let short = Job {
        reply: Reply::Hang,
        timeout: Some(TIMEOUT),
    };
    let (result, took) = timed(&mut svc, short).await;
    assert_eq!(elapsed_after(&result.unwrap_err()), TIMEOUT);
    assert_eq!(took, TIMEOUT);
    assert_eq!(dep.seen.dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_longer_per_request_timeout_wins_over_the_default() {
    let dep = Dependency::new();
    let mut svc = per_request_service(TIMEOUT, &dep);
    let work = Reply::Delay(Duration::from_secs(5));
    // Under the default, five seconds of work times out...
    let (result, took) = timed(
        &mut svc,
        Job {
            reply: work,
            timeout: None,
        },
    )
    .await;
    assert_eq!(elapsed_after(&result.unwrap_err()), TIMEOUT);
    assert_eq!(took, TIMEOUT);
    // ...with a longer per-request timeout it completes...
    let patient = Some(Duration::from_secs(10));
    let (result, took) = timed(
        &mut svc,
        Job {
            reply: work,
            timeout: patient,
        },
    )
    .await;
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(took, Duration::from_secs(5));
    // ...and a hang is cut at the per-request timeout, which is the one reported.
    let (result, took) = timed(
        &mut svc,
        Job {
            reply: Reply::Hang,
            timeout: patient,
        },
    )
    .await;
    assert_eq!(elapsed_after(&result.unwrap_err()), Duration::from_secs(10));
    assert_eq!(took, Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_zero_per_request_timeout_fails_at_once_without_calling_the_inner_service() {
    let dep = Dependency::new();
    let mut svc = per_request_service(Duration::from_secs(10), &dep);
    let job = Job {
        reply: Reply::Ok,
        timeout: Some(Duration::ZERO),
    };
    let (result, took) = timed(&mut svc, job).await;
    assert_eq!(elapsed_after(&result.unwrap_err()), Duration::ZERO);
    assert_eq!(took, Duration::ZERO);
    assert_eq!(dep.seen.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn duration_max_never_fires() {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let dep = Dependency::new();
    let mut svc = layer(Duration::MAX).layer(dep.clone());
    poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let mut fut = pin!(svc.call(Reply::Hang));
    assert!(poll!(fut.as_mut()).is_pending());
    advance(CENTURY).await;
    assert!(poll!(fut.as_mut()).is_pending());
    assert_eq!(dep.seen.dropped(), 0);

    // Per request too, under a short default (ten years of work: tokio caps its own sleeps,
    // the dependency's here, at about thirty).
    const DECADE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    let mut svc = per_request_service(TIMEOUT, &dep);
    let job = Job {
        reply: Reply::Delay(DECADE),
        timeout: Some(Duration::MAX),
    };
    let (result, took) = timed(&mut svc, job).await;
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(took, DECADE);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_too_far_to_represent_is_no_deadline() {
    let dep = Dependency::new();
    let mut svc = layer(Duration::from_secs(u64::MAX)).layer(dep.clone());
    let (result, took) = timed(&mut svc, Reply::Delay(Duration::from_secs(3600))).await;
    assert_eq!(result.unwrap(), "ok");
    assert_eq!(took, Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_at_the_end_of_time_is_no_deadline_and_never_panics() {
    // tokio rounds a timer's deadline up to the next millisecond, and panics if that
    // overflows: a per-request timeout (from a hostile header, say) that lands within 1 ms
    // of the largest `Instant` must not reach it.
    let dep = Dependency::new();
    for before_the_end in [Duration::ZERO, Duration::from_micros(500)] {
        // From now: the clock moves on by an hour each round.
        let after = end_of_time_from(Instant::now()) - before_the_end;
        let mut svc = per_request_service(TIMEOUT, &dep);
        poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let mut fut = pin!(svc.call(Job {
            reply: Reply::Hang,
            timeout: Some(after),
        }));
        assert!(poll!(fut.as_mut()).is_pending(), "{after:?}");
        advance(Duration::from_secs(3600)).await;
        assert!(poll!(fut.as_mut()).is_pending(), "{after:?}");
    }
}

#[test]
fn a_call_ready_at_once_makes_no_timer() {
    // No tokio runtime here: making a timer would panic. A call whose inner future is ready on
    // its first poll, or a call with no timeout, never makes one.
    let dep = Dependency::new();
    let mut svc = layer(TIMEOUT).layer(dep.clone());
    let result = futures::executor::block_on(call(&mut svc, Reply::Ok));
    assert_eq!(result.unwrap(), "ok");
    let mut svc = layer(Duration::MAX).layer(dep.clone());
    let fut = svc.call(Reply::Hang);
    assert!(futures::FutureExt::now_or_never(fut).is_none());
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_and_are_told_apart_from_timeouts() {
    let mut svc = layer(TIMEOUT).layer(Dependency::new());
    let err = call(&mut svc, Reply::Err).await.unwrap_err();
    match error_kind(err.as_ref()) {
        ErrorKind::Inner(inner) => assert_eq!(inner.downcast_ref::<Failed>(), Some(&Failed)),
        other => panic!("expected Inner, got {other:?}"),
    }
    assert!(
        err.downcast_ref::<Failed>().is_some(),
        "the inner error is not wrapped"
    );
    let err = call(&mut svc, Reply::Hang).await.unwrap_err();
    assert_eq!(elapsed_after(&err), TIMEOUT);
    assert!(!error_kind(err.as_ref()).is_rejection());
    assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
}

#[tokio::test(start_paused = true)]
async fn an_inner_error_at_the_deadline_is_reported_as_the_timeout() {
    // A client below enforcing the same deadline (tonic, with the `grpc-timeout` it was sent)
    // fails at the very instant this timeout fires, and is polled first.
    let mut svc = layer(TIMEOUT).layer(tower::service_fn(|after: Duration| async move {
        tokio::time::sleep(after).await;
        Err::<(), _>(Failed)
    }));
    let err = svc.ready().await.unwrap().call(TIMEOUT).await.unwrap_err();
    assert_eq!(elapsed_after(&err), TIMEOUT);
    // Before the deadline an inner error is the inner error.
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(TIMEOUT - MS)
        .await
        .unwrap_err();
    assert!(matches!(error_kind(err.as_ref()), ErrorKind::Inner(_)));
}

#[test]
fn zero_timeout_is_a_config_error_naming_timeout() {
    let err = TimeoutLayer::builder()
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "timeout");
    let mut config = TimeoutConfig::default();
    config.timeout = Duration::ZERO;
    assert_eq!(TimeoutLayer::new(&config).unwrap_err().field(), "timeout");
    assert_eq!(config.validate().unwrap_err().field(), "timeout");
    // The defaults and the edges are valid.
    assert_eq!(
        TimeoutLayer::builder().build().unwrap().timeout(),
        Duration::from_secs(30)
    );
    for ok in [Duration::from_nanos(1), Duration::MAX] {
        assert_eq!(layer(ok).timeout(), ok);
    }
}

use support::any_duration;

proptest! {
    /// `build()` never panics; only zero is refused; and a call under any valid timeout fires
    /// exactly when its deadline (rounded up to tokio's millisecond) has passed.
    #[test]
    fn any_timeout_builds_or_is_refused_and_never_panics(timeout in any_duration()) {
        match TimeoutLayer::builder().timeout(timeout).build() {
            Err(err) => {
                prop_assert!(timeout.is_zero());
                prop_assert_eq!(err.field(), "timeout");
            }
            Ok(layer) => {
                prop_assert!(!timeout.is_zero());
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .unwrap();
                let fired = rt.block_on(async {
                    let mut svc = layer.layer(Dependency::new());
                    let mut fut = pin!(svc.call(Reply::Hang));
                    assert!(poll!(fut.as_mut()).is_pending());
                    advance(Duration::from_secs(3600)).await;
                    match poll!(fut.as_mut()) {
                        Poll::Ready(Err(err)) => {
                            assert_eq!(elapsed_after(&err), timeout);
                            true
                        }
                        Poll::Ready(Ok(_)) => unreachable!("the inner future hangs"),
                        Poll::Pending => false,
                    }
                });
                prop_assert_eq!(fired, timeout <= Duration::from_secs(3600));
            }
        }
    }
}

#[cfg(feature = "serde")]
#[test]
fn deserialized_configuration_is_validated_the_same_way() {
    let ok: TimeoutConfig = serde_json::from_str(r#"{"timeout":"250ms"}"#).unwrap();
    assert_eq!(ok.timeout, Duration::from_millis(250));
    assert_eq!(
        TimeoutLayer::new(&ok).unwrap().timeout(),
        Duration::from_millis(250)
    );
    let default: TimeoutConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(default, TimeoutConfig::default());
    let err = serde_json::from_str::<TimeoutConfig>(r#"{"timeout":"0s"}"#).unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
    assert!(serde_json::from_str::<TimeoutConfig>(r#"{"no_such_field":1}"#).is_err());
}

/// A call given no time at all was never sent: a breaker outside ignores it, whatever its
/// classifier says (a caller whose upstream deadline ran out is not the dependency's failure).
#[tokio::test(start_paused = true)]
async fn a_zero_per_request_timeout_is_ignored_by_a_breaker_outside() {
    use palisade::circuit_breaker::{CircuitBreakerLayer, State};
    use palisade::classify::Outcome;

    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap()
        .with_classifier(|res: Result<&&'static str, &BoxError>| match res {
            Ok(_) => Outcome::success(),
            Err(_) => Outcome::failure(),
        });
    let handle = breaker.handle();
    let dep = Dependency::new();
    let mut svc = breaker.layer(per_request_service(Duration::from_secs(10), &dep));
    let job = Job {
        reply: Reply::Ok,
        timeout: Some(Duration::ZERO),
    };
    let err = svc.ready().await.unwrap().call(job).await.unwrap_err();
    assert_eq!(elapsed_after(&err), Duration::ZERO);
    let snap = handle.snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.failures),
        (State::Closed, 0, 0)
    );
    assert_eq!(dep.seen.calls(), 0);
}

/// A full bulkhead whose wait runs out on the same tick as the timeout around it stays a
/// `BulkheadFull` (local overload, ignored by a breaker), not a timeout (a failure).
#[tokio::test(start_paused = true)]
async fn a_bulkhead_rejection_at_the_timeout_stays_a_rejection() {
    use palisade::bulkhead::BulkheadLayer;
    use palisade::circuit_breaker::{CircuitBreakerLayer, State};

    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let bulkhead = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let dep = Dependency::new();
    let svc = breaker.layer(layer(Duration::from_secs(1)).layer(bulkhead.layer(dep.clone())));
    let mut holder = svc.clone();
    let mut held = pin!(call(&mut holder, Reply::Hang));
    assert!(poll!(held.as_mut()).is_pending(), "holds the only permit");
    let err = call(&mut svc.clone(), Reply::Ok).await.unwrap_err();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::BulkheadFull(_)),
        "{err}"
    );
    let snap = handle.snapshot();
    assert_eq!((snap.state, snap.failures), (State::Closed, 0));
}
