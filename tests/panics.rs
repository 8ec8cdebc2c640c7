//! A panicking user callback (classifier, stale-cache key, size and mark functions, fallback,
//! listener, per-request timeout) or a panicking dependency. palisade catches a callback's
//! panic and fails that call with the typed error `CallbackPanicked`, naming the callback (a
//! listener's panic is caught and dropped); a dependency's own panic reaches the caller. In
//! every case, afterwards every bulkhead permit and every probe slot is back and the next call
//! works, closed and half-open alike.
//!
//! Paused time, the scripted dependency of `tests/support`. Related tests elsewhere:
//! `circuit_breaker::a_panicking_classifier_is_a_typed_error_and_leaks_no_probe_slot`,
//! `fallback::a_panicking_fallback_leaks_no_probe_slot_and_leaves_the_stack_usable`,
//! `observe::a_panicking_listener_leaks_no_permit_and_no_probe_slot`,
//! `policy::a_panicking_listener_breaks_nothing`,
//! `bulkhead::an_inner_service_panicking_in_call_leaks_no_permit`.

mod support;

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use palisade::bulkhead::{self, BulkheadConfig};
use palisade::circuit_breaker::{self, CircuitBreakerConfig, SlidingWindow, State};
use palisade::classify::{Outcome, classify_error};
use palisade::events::Event;
use palisade::fallback::{self, Failure, FailureKind, StaleCache};
use palisade::policy::Policy;
use support::{
    Dependency, Reply, call, callback_panicked, catch, caught_callback_panic, panic_message,
    policy_handles,
};
use tokio::time::advance;
use tower::{BoxError, Layer, Service, ServiceExt};

/// The response a buggy callback panics on.
const BOOM: &str = "boom";
/// The breaker's open duration.
const OPEN: Duration = Duration::from_secs(10);
/// The bulkhead's limit.
const MAX: usize = 2;

/// Opens after two failures (of at least two calls); one probe, which alone decides.
fn breaker_config() -> CircuitBreakerConfig {
    let mut c = CircuitBreakerConfig::default();
    c.window = SlidingWindow::Count(10);
    c.minimum_calls = 2;
    c.open_duration = OPEN;
    c.permitted_probes = 1;
    c.max_half_open_wait = Duration::from_secs(3600);
    c
}

/// [`MAX`] in flight; two more may wait 50 ms.
fn bulkhead_config() -> BulkheadConfig {
    let mut b = BulkheadConfig::default();
    b.max_concurrent = MAX;
    b.max_wait = Some(Duration::from_millis(50));
    b.max_queued = Some(2);
    b
}

/// Whether the breaker is tested closed or as a half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Closed,
    HalfOpen,
}

const BOTH: [At; 2] = [At::Closed, At::HalfOpen];

/// Runs one call on a clone of `svc` that the call owns (and drops as it unwinds), and
/// returns the panic it must have raised.
async fn panicking_call<S>(svc: &S, reply: Reply) -> Box<dyn Any + Send>
where
    S: Service<Reply> + Clone,
    S::Error: Into<BoxError>,
{
    let mut clone = svc.clone();
    match catch(async move { call(&mut clone, reply).await.map(|_| ()) }).await {
        Err(panic) => panic,
        Ok(result) => panic!("expected the callback's panic, got {:?}", result.err()),
    }
}

/// Runs one call on a clone of `svc`, which must end (without unwinding) in the typed error
/// for a callback's panic; returns the callback it names and the panic's message.
async fn caught_call<S>(svc: &S, reply: Reply) -> (&'static str, String)
where
    S: Service<Reply> + Clone,
    S::Error: Into<BoxError>,
{
    let mut clone = svc.clone();
    caught_callback_panic(async move { call(&mut clone, reply).await.map(|_| ()) }).await
}

/// Every permit free, nobody queued, no probe slot taken.
#[track_caller]
fn assert_at_rest(bulkhead: &bulkhead::Handle, breaker: &circuit_breaker::Handle) {
    assert_eq!(bulkhead.available(), bulkhead.max_concurrent(), "permits");
    assert_eq!(bulkhead.queued(), 0, "queue");
    assert_eq!(breaker.snapshot().probes_in_flight, 0, "probe slots");
}

/// Brings the breaker to `at`: closed as built, or tripped with two failures and past its
/// open duration, so that the next admission is the one probe.
async fn bring_to<S>(at: At, svc: &mut S, breaker: &circuit_breaker::Handle)
where
    S: Service<Reply>,
    S::Error: Into<BoxError>,
{
    if at == At::HalfOpen {
        for _ in 0..2 {
            let _ = call(svc, Reply::Err).await;
        }
        assert_eq!(breaker.state(), State::Open);
        advance(OPEN).await;
    }
}

/// After the panic the breaker is where it was (a panicking call is ignored: a probe leaves
/// it half-open), and the next call goes through: in half-open as the probe that closes it.
async fn assert_next_call_works<S>(at: At, svc: &mut S, breaker: &circuit_breaker::Handle)
where
    S: Service<Reply, Response = &'static str>,
    S::Error: Into<BoxError> + std::fmt::Debug,
{
    let expected = match at {
        At::Closed => State::Closed,
        At::HalfOpen => State::HalfOpen,
    };
    assert_eq!(breaker.state(), expected);
    assert_eq!(call(svc, Reply::Ok).await.unwrap(), "ok", "{at:?}");
    assert_eq!(breaker.state(), State::Closed, "{at:?}");
}

type Classifier = fn(Result<&&'static str, &BoxError>) -> Outcome;

/// Panics on the response [`BOOM`]; otherwise the default rules.
fn panicking_classifier(res: Result<&&'static str, &BoxError>) -> Outcome {
    match res {
        Ok(&BOOM) => panic!("classifier bug"),
        Ok(_) => Outcome::success(),
        Err(e) => classify_error(e),
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_is_a_typed_error_and_leaks_nothing() {
    for at in BOTH {
        let policy = Policy::builder()
            .timeout(Duration::from_millis(100))
            .bulkhead(bulkhead_config())
            .circuit_breaker(breaker_config())
            .classifier(panicking_classifier as Classifier)
            .fallback(fallback::value("fallback"))
            .build()
            .unwrap();
        let (bulkhead, breaker) = policy_handles(&policy);
        let mut svc = policy.layer(Dependency::new());
        bring_to(at, &mut svc, &breaker).await;

        let caught = caught_call(&svc, Reply::Answer(BOOM)).await;
        assert_eq!(caught, ("classifier", "classifier bug".to_owned()));
        assert_at_rest(&bulkhead, &breaker);
        if at == At::HalfOpen {
            assert_eq!(
                breaker.state(),
                State::HalfOpen,
                "the probe was ignored, not counted"
            );
        }
        assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
        assert_eq!(breaker.state(), State::Closed, "{at:?}");
        assert_at_rest(&bulkhead, &breaker);
    }
}

/// The classifier's panic, caught, fails the call; the bulkhead's permit, given back as that
/// error passes, is an event for a listener that panics too: both panics are caught, and
/// nothing is leaked.
#[tokio::test(start_paused = true)]
async fn a_listener_panicking_after_a_classifier_panic_is_caught() {
    for at in BOTH {
        let told = Arc::new(AtomicUsize::new(0));
        let count = told.clone();
        let policy = Policy::builder()
            .timeout(Duration::from_millis(100))
            .bulkhead(bulkhead_config())
            .circuit_breaker(breaker_config())
            .classifier(panicking_classifier as Classifier)
            .listener(move |event: &Event<'_>| {
                if let Event::BulkheadReleased { .. } = event {
                    count.fetch_add(1, Ordering::SeqCst);
                    panic!("listener bug");
                }
            })
            .build()
            .unwrap();
        let (bulkhead, breaker) = policy_handles(&policy);
        let mut svc = policy.layer(Dependency::new());
        bring_to(at, &mut svc, &breaker).await;
        let before = told.load(Ordering::SeqCst);

        let caught = caught_call(&svc, Reply::Answer(BOOM)).await;
        assert_eq!(caught, ("classifier", "classifier bug".to_owned()));
        assert_eq!(
            told.load(Ordering::SeqCst),
            before + 1,
            "released during the unwind"
        );
        assert_at_rest(&bulkhead, &breaker);
        assert_next_call_works(at, &mut svc, &breaker).await;
        assert_at_rest(&bulkhead, &breaker);
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fallback_is_a_typed_error_and_leaks_nothing() {
    type Recovery = fn(Failure<&'static str>) -> Result<&'static str, Failure<&'static str>>;
    fn buggy(failure: Failure<&'static str>) -> Result<&'static str, Failure<&'static str>> {
        match failure.kind() {
            FailureKind::InnerError => panic!("fallback bug"),
            _ => Ok("fallback"),
        }
    }
    // Over 50 % to open: one failure and the success after it (1 of 2) leave it closed.
    let mut breaker_config = breaker_config();
    breaker_config.failure_rate = 0.6;
    for at in BOTH {
        let policy = Policy::builder()
            .timeout(Duration::from_millis(100))
            .bulkhead(bulkhead_config())
            .circuit_breaker(breaker_config.clone())
            .fallback(fallback::from_fn(buggy as Recovery))
            .build()
            .unwrap();
        let (bulkhead, breaker) = policy_handles(&policy);
        let mut svc = policy.layer(Dependency::new());
        if at == At::HalfOpen {
            // Trip with timeouts (recovered), so that only the probe's inner error panics.
            for _ in 0..2 {
                assert_eq!(call(&mut svc, Reply::Hang).await.unwrap(), "fallback");
            }
            assert_eq!(breaker.state(), State::Open);
            advance(OPEN).await;
        }

        let caught = caught_call(&svc, Reply::Err).await;
        assert_eq!(caught, ("Recover::recover", "fallback bug".to_owned()));
        assert_at_rest(&bulkhead, &breaker);
        // The breaker counted the failure before the fallback ran: a failed probe reopens.
        match at {
            At::Closed => assert_eq!(breaker.snapshot().failures, 1),
            At::HalfOpen => {
                assert_eq!(breaker.state(), State::Open);
                advance(OPEN).await;
            }
        }
        assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
        assert_eq!(breaker.state(), State::Closed, "{at:?}");
        assert_at_rest(&bulkhead, &breaker);
    }
}

/// What each user function of a [`StaleCache`] does when it panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buggy {
    /// The key function, which runs in `call`, before the request goes anywhere.
    Key,
    /// The size function, which runs on a success, after the breaker recorded it.
    Size,
    /// The mark function, which runs on a stale response about to be served.
    Mark,
}

/// A cache keyed on the reply, whose `buggy` function panics for [`BOOM`] (the key function
/// for the request, the others for the response) while `armed`.
fn buggy_cache(
    buggy: Buggy,
    armed: &Arc<AtomicBool>,
) -> StaleCache<Reply, &'static str, &'static str> {
    let bug = {
        let armed = armed.clone();
        move |what: Buggy, boom: bool| {
            if what == buggy && boom && armed.load(Ordering::SeqCst) {
                panic!("{} bug", format!("{buggy:?}").to_lowercase());
            }
        }
    };
    let (key_bug, size_bug, mark_bug) = (bug.clone(), bug.clone(), bug);
    StaleCache::builder(move |req: &Reply| {
        key_bug(Buggy::Key, *req == Reply::Answer(BOOM));
        Some("the key")
    })
    .size(move |res: &&'static str| {
        size_bug(Buggy::Size, *res == BOOM);
        res.len()
    })
    .mark(move |res: &mut &'static str, _| mark_bug(Buggy::Mark, *res == BOOM))
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_panicking_stale_cache_function_is_a_typed_error_and_leaks_nothing() {
    for buggy in [Buggy::Key, Buggy::Size, Buggy::Mark] {
        for at in BOTH {
            let armed = Arc::new(AtomicBool::new(false));
            let cache = buggy_cache(buggy, &armed);
            let policy = Policy::builder()
                .timeout(Duration::from_millis(100))
                .bulkhead(bulkhead_config())
                .circuit_breaker(breaker_config())
                .fallback(cache.clone())
                .build()
                .unwrap();
            let (bulkhead, breaker) = policy_handles(&policy);
            let mut svc = policy.layer(Dependency::new());
            let what = format!("{buggy:?} {at:?}");
            if buggy == Buggy::Mark {
                // Keep BOOM, so that the failure below serves it (and marks it) stale.
                assert_eq!(call(&mut svc, Reply::Answer(BOOM)).await.unwrap(), BOOM);
                assert_eq!(cache.stats().entries, 1);
            }
            bring_to(at, &mut svc, &breaker).await;

            let (reply, expected) = match buggy {
                Buggy::Key => (Reply::Answer(BOOM), ("Recover::keep", "key bug")),
                Buggy::Size => (Reply::Answer(BOOM), ("Recover::succeeded", "size bug")),
                Buggy::Mark => (Reply::Err, ("Recover::recover", "mark bug")),
            };
            armed.store(true, Ordering::SeqCst);
            let caught = caught_call(&svc, reply).await;
            armed.store(false, Ordering::SeqCst);
            assert_eq!(caught, (expected.0, expected.1.to_owned()), "{what}");
            assert_at_rest(&bulkhead, &breaker);
            match (buggy, at) {
                // The probe never reached the breaker's `call`: its slot was given back.
                (Buggy::Key, At::HalfOpen) => assert_eq!(breaker.state(), State::HalfOpen),
                // The probe succeeded and was recorded before the size function ran.
                (Buggy::Size, At::HalfOpen) => assert_eq!(breaker.state(), State::Closed),
                // The probe failed and was recorded before the mark function ran.
                // The probe failed, or closed the failure made one of two: recorded before the
                // mark function ran, and the breaker opened.
                (Buggy::Mark, _) => {
                    assert_eq!(breaker.state(), State::Open);
                    advance(OPEN).await;
                }
                (_, At::Closed) => assert_eq!(breaker.state(), State::Closed),
            }
            assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok", "{what}");
            assert_eq!(breaker.state(), State::Closed, "{what}");
            assert_at_rest(&bulkhead, &breaker);
        }
    }
}

/// A key function that panics in `call` leaves the admission `poll_ready` took with the
/// service that was made ready (tower's contract: `poll_ready` reserves, `call` uses). A
/// caller that keeps that service holds the probe slot until its next call uses it; a caller
/// that drops it gives the slot back (the test above).
#[tokio::test(start_paused = true)]
async fn a_service_kept_after_a_key_function_panic_uses_its_admission_on_the_next_call() {
    let policy = Policy::builder()
        .bulkhead(bulkhead_config())
        .circuit_breaker(breaker_config())
        .fallback(buggy_cache(Buggy::Key, &Arc::new(AtomicBool::new(true))))
        .build()
        .unwrap();
    let (bulkhead, breaker) = policy_handles(&policy);
    let mut svc = policy.layer(Dependency::new());
    bring_to(At::HalfOpen, &mut svc, &breaker).await;

    // The key function panics in the fallback's `call`, which fails the call without calling
    // the layers below: their admission stays with the ready service.
    let result = svc.ready().await.unwrap().call(Reply::Answer(BOOM)).await;
    assert_eq!(
        callback_panicked(result),
        ("Recover::keep", "key bug".to_owned())
    );
    assert_eq!(
        bulkhead.available(),
        MAX,
        "the bulkhead takes permits in `call`"
    );
    assert_eq!(
        breaker.snapshot().probes_in_flight,
        1,
        "held by the ready service"
    );
    // Other callers are turned away meanwhile (the one probe slot is reserved)...
    let mut other = svc.clone();
    assert!(call(&mut other, Reply::Ok).await.is_err());
    // ...and the kept service's next call is that probe.
    assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
    assert_eq!(breaker.state(), State::Closed);
    assert_at_rest(&bulkhead, &breaker);
}

#[tokio::test(start_paused = true)]
async fn a_listener_panicking_on_every_event_is_caught_closed_and_half_open() {
    for at in BOTH {
        let policy = Policy::builder()
            .timeout(Duration::from_millis(100))
            .bulkhead(bulkhead_config())
            .circuit_breaker(breaker_config())
            .listener(|_: &Event<'_>| panic!("listener bug"))
            .build()
            .unwrap();
        let (bulkhead, breaker) = policy_handles(&policy);
        let mut svc = policy.layer(Dependency::new());
        bring_to(at, &mut svc, &breaker).await;
        // A timeout, a queued call, a rejection: each an event, each a caught panic.
        let mut holders: Vec<_> = (0..MAX + 2)
            .map(|_| {
                let mut s = svc.clone();
                Some(Box::pin(async move { call(&mut s, Reply::Hang).await }))
            })
            .collect();
        let mut ended = 0;
        for round in 0..4 {
            for h in &mut holders {
                if let Some(fut) = h
                    && let Poll::Ready(result) = futures::poll!(fut)
                {
                    assert!(result.is_err(), "timed out or rejected");
                    *h = None;
                    ended += 1;
                }
            }
            // Half-open: one probe, the three others rejected at once. Closed: all wait.
            if round == 0 {
                assert_eq!(ended, 3 * usize::from(at == At::HalfOpen), "{at:?}");
            }
            advance(Duration::from_millis(200)).await;
        }
        assert_eq!(ended, holders.len(), "all timed out or rejected");
        assert_at_rest(&bulkhead, &breaker);
        // Closed, the two timeouts trip the breaker; half-open, the probe's timeout reopens it.
        assert_eq!(breaker.state(), State::Open, "{at:?}");
        advance(OPEN).await;
        assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
        assert_eq!(breaker.state(), State::Closed);
        assert_at_rest(&bulkhead, &breaker);
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_per_request_timeout_function_is_a_typed_error_and_leaks_no_permit() {
    use palisade::policy::ServiceBuilderExt;
    use palisade::timeout::TimeoutLayer;

    let breaker_layer = circuit_breaker::Builder::from_config(breaker_config())
        .build()
        .unwrap();
    let bulkhead_layer = bulkhead::Builder::from_config(bulkhead_config())
        .build()
        .unwrap();
    let (bulkhead, breaker) = (bulkhead_layer.handle(), breaker_layer.handle());
    let timeout = TimeoutLayer::builder()
        .timeout(Duration::from_millis(100))
        .per_request(|req: &Reply| {
            if *req == Reply::Answer(BOOM) {
                panic!("per-request bug");
            }
            None
        })
        .build()
        .unwrap();
    let mut svc = tower::ServiceBuilder::new()
        .circuit_breaker(breaker_layer)
        .bulkhead(bulkhead_layer)
        .call_timeout(timeout)
        .service(Dependency::new());
    // Half-open too: this function runs in the timeout's `call`, under the breaker's, whose
    // guard exists before the inner service runs and gives the probe slot back.
    for at in BOTH {
        bring_to(at, &mut svc, &breaker).await;
        // The timeout runs under the bulkhead: the permit exists when the function panics.
        let caught = caught_call(&svc, Reply::Answer(BOOM)).await;
        assert_eq!(
            caught,
            ("per-request timeout", "per-request bug".to_owned())
        );
        assert_at_rest(&bulkhead, &breaker);
        assert_next_call_works(at, &mut svc, &breaker).await;
        assert_at_rest(&bulkhead, &breaker);
    }
}

/// A dependency whose future panics when polled (a bug in the client): the panic reaches the
/// caller through every layer, and each layer's guard gives back what it held.
#[tokio::test(start_paused = true)]
async fn a_dependency_panicking_in_its_future_leaks_nothing() {
    let dependency = Dependency::new();
    let inner = tower::service_fn(move |reply: Reply| {
        let mut dependency = dependency.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if reply == Reply::Answer(BOOM) {
                panic!("dependency bug");
            }
            dependency.call(reply).await
        }
    });
    for at in BOTH {
        let policy = Policy::builder()
            .timeout(Duration::from_millis(100))
            .bulkhead(bulkhead_config())
            .circuit_breaker(breaker_config())
            .fallback(fallback::value("fallback"))
            .build()
            .unwrap();
        let (bulkhead, breaker) = policy_handles(&policy);
        let mut svc = policy.layer(inner.clone());
        if at == At::HalfOpen {
            for _ in 0..2 {
                assert_eq!(call(&mut svc, Reply::Err).await.unwrap(), "fallback");
            }
            advance(OPEN).await;
        }
        let panic = panicking_call(&svc, Reply::Answer(BOOM)).await;
        assert_eq!(panic_message(&*panic), "dependency bug");
        assert_at_rest(&bulkhead, &breaker);
        assert_next_call_works(at, &mut svc, &breaker).await;
        assert_at_rest(&bulkhead, &breaker);
    }
}

/// The HTTP policy: the bulkhead permit (and for a deferred outcome the probe slot) rides on
/// the response body, so a callback's panic after the head arrived drops the body with the
/// response the typed error replaces, and the body gives everything back.
#[cfg(feature = "http")]
mod over_http {
    use super::*;
    use ::http::{Request, Response, StatusCode};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use palisade::http::{HttpStaleCache, Tracked};

    type Res = Response<Tracked<Full<Bytes>>>;

    /// Answers 200 with the request's path as the body; `/fail` answers 503.
    fn server() -> impl Service<
        Request<()>,
        Response = Response<Full<Bytes>>,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send {
        tower::service_fn(|req: Request<()>| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let path = req.uri().path().to_owned();
            let mut res = Response::new(Full::new(Bytes::from(path.clone())));
            if path == "/fail" {
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok(res)
        })
    }

    fn get(path: &str) -> Request<()> {
        Request::get(format!("http://dependency.local{path}"))
            .body(())
            .unwrap()
    }

    async fn fetch<S>(svc: &mut S, path: &str) -> Result<(StatusCode, Bytes), BoxError>
    where
        S: Service<Request<()>, Response = Res, Error = BoxError>,
    {
        let res = svc.ready().await?.call(get(path)).await?;
        let status = res.status();
        Ok((status, res.into_body().collect().await?.to_bytes()))
    }

    async fn bring_to_http<S>(at: At, svc: &mut S, breaker: &circuit_breaker::Handle)
    where
        S: Service<Request<()>, Response = Res, Error = BoxError>,
    {
        if at == At::HalfOpen {
            for _ in 0..2 {
                let _ = fetch(svc, "/fail").await;
            }
            assert_eq!(breaker.state(), State::Open);
            advance(OPEN).await;
        }
    }

    async fn caught_fetch<S>(svc: &S, path: &'static str) -> (&'static str, String)
    where
        S: Service<Request<()>, Response = Res, Error = BoxError> + Clone,
    {
        let mut clone = svc.clone();
        caught_callback_panic(async move { fetch(&mut clone, path).await }).await
    }

    async fn next_fetch_works<S>(svc: &mut S, breaker: &circuit_breaker::Handle)
    where
        S: Service<Request<()>, Response = Res, Error = BoxError>,
    {
        let (status, body) = fetch(svc, "/next").await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"/next"[..]));
        assert_eq!(breaker.state(), State::Closed);
    }

    /// Brings the breaker to `at`; a fetch of `/boom` must end in the typed error for the
    /// panic of the `expected` callback with the `expected` message; then nothing is held and
    /// the next fetch works.
    async fn boom_is_caught<S>(
        at: At,
        svc: &mut S,
        (bulkhead, breaker): (&bulkhead::Handle, &circuit_breaker::Handle),
        expected: (&str, &str),
    ) where
        S: Service<Request<()>, Response = Res, Error = BoxError> + Clone,
    {
        bring_to_http(at, svc, breaker).await;
        let caught = caught_fetch(svc, "/boom").await;
        assert_eq!((caught.0, caught.1.as_str()), expected);
        assert_at_rest(bulkhead, breaker);
        next_fetch_works(svc, breaker).await;
        assert_at_rest(bulkhead, breaker);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_user_key_of_the_http_stale_cache_leaks_nothing() {
        for at in BOTH {
            let cache = HttpStaleCache::builder()
                .user_key(|head| {
                    if head.uri.ends_with("/boom") {
                        panic!("user key bug");
                    }
                    Some(String::new())
                })
                .build()
                .unwrap();
            let policy = Policy::builder()
                .http()
                .timeout(Duration::from_millis(100))
                .response_deadline(Duration::from_millis(200))
                .bulkhead(bulkhead_config())
                .circuit_breaker(breaker_config())
                .fallback(cache)
                .build()
                .unwrap();
            let (bulkhead, breaker) = policy_handles(&policy);
            let mut svc = policy.layer(server());
            boom_is_caught(
                at,
                &mut svc,
                (&bulkhead, &breaker),
                ("Recover::keep", "user key bug"),
            )
            .await;
        }
    }

    /// A classifier that panics on a 200 whose body is still to come: the bulkhead permit
    /// already rides on that body, which is dropped with the response.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_classifier_on_an_http_response_leaks_nothing() {
        fn buggy(res: Result<&Res, &BoxError>) -> Outcome {
            match res {
                Ok(r) if r.headers().contains_key("x-boom") => panic!("classifier bug"),
                Ok(r) if r.status().is_server_error() => Outcome::failure(),
                Ok(_) => Outcome::success(),
                Err(e) => classify_error(e),
            }
        }
        type HttpClassifierFn = fn(Result<&Res, &BoxError>) -> Outcome;
        let boom_server = tower::service_fn(|req: Request<()>| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let path = req.uri().path().to_owned();
            let mut res = Response::new(Full::new(Bytes::from(path.clone())));
            match path.as_str() {
                "/fail" => *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE,
                "/boom" => {
                    res.headers_mut().insert("x-boom", "1".parse().unwrap());
                }
                _ => {}
            }
            Ok::<_, std::convert::Infallible>(res)
        });
        for at in BOTH {
            let policy = Policy::builder()
                .http()
                .classifier(buggy as HttpClassifierFn)
                .timeout(Duration::from_millis(100))
                .bulkhead(bulkhead_config())
                .circuit_breaker(breaker_config())
                .build()
                .unwrap();
            let (bulkhead, breaker) = policy_handles(&policy);
            let mut svc = policy.layer(boom_server);
            boom_is_caught(
                at,
                &mut svc,
                (&bulkhead, &breaker),
                ("classifier", "classifier bug"),
            )
            .await;
        }
    }

    /// The outcome of a 200 is recorded when its body ends, inside the body's `poll_frame`:
    /// a listener panicking there is caught, and the body still ends and gives back its
    /// permit and probe slot.
    #[tokio::test(start_paused = true)]
    async fn a_listener_panicking_at_the_end_of_a_body_is_caught() {
        for at in BOTH {
            let policy = Policy::builder()
                .http()
                .timeout(Duration::from_millis(100))
                .bulkhead(bulkhead_config())
                .circuit_breaker(breaker_config())
                .listener(|event: &Event<'_>| {
                    if let Event::CallRecorded { .. } = event {
                        panic!("listener bug");
                    }
                })
                .build()
                .unwrap();
            let (bulkhead, breaker) = policy_handles(&policy);
            let mut svc = policy.layer(server());
            bring_to_http(at, &mut svc, &breaker).await;
            let res = svc.ready().await.unwrap().call(get("/body")).await.unwrap();
            assert_eq!(bulkhead.in_flight(), 1, "held until the body ends");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"/body");
            assert_at_rest(&bulkhead, &breaker);
            assert_eq!(
                breaker.state(),
                State::Closed,
                "{at:?}: recorded despite the listener"
            );
            next_fetch_works(&mut svc, &breaker).await;
            assert_at_rest(&bulkhead, &breaker);
        }
    }
}

/// `Handle::call_classified` guards a plain future: its classifier's panic is the typed
/// `CallError::CallbackPanicked`, and the probe slot the call held comes back.
#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_of_handle_call_is_a_typed_error_and_leaks_no_probe_slot() {
    use palisade::circuit_breaker::{CallError, CircuitBreakerLayer};

    let ignored = Arc::new(AtomicUsize::new(0));
    let heard = ignored.clone();
    let layer = circuit_breaker::Builder::from_config(breaker_config())
        .listeners(
            palisade::events::Listeners::new("p").with(move |event: &Event<'_>| {
                if let Event::CallRecorded { outcome, .. } = event
                    && outcome.is_ignored()
                {
                    heard.fetch_add(1, Ordering::SeqCst);
                }
            }),
        )
        .build()
        .unwrap();
    let breaker = layer.handle();
    let _: &CircuitBreakerLayer = &layer;
    for _ in 0..2 {
        let r = breaker.call(async { Err::<u32, _>("down") }).await;
        assert!(matches!(r, Err(CallError::Inner("down"))));
    }
    assert_eq!(breaker.state(), State::Open);
    advance(OPEN).await;
    let result =
        catch(breaker.call_classified(async { Ok::<u32, &str>(7) }, |_| panic!("classifier bug")))
            .await
            .expect("the classifier's panic is caught");
    match result {
        Err(CallError::CallbackPanicked(p)) => {
            assert_eq!(
                (p.callback(), p.message()),
                ("classifier", "classifier bug")
            );
        }
        other => panic!("expected CallbackPanicked, got {other:?}"),
    }
    assert_eq!(breaker.snapshot().probes_in_flight, 0, "probe slot back");
    assert_eq!(breaker.state(), State::HalfOpen, "recorded as ignored");
    assert_eq!(ignored.load(Ordering::SeqCst), 1, "and heard as ignored");
    assert_eq!(breaker.call(async { Ok::<u32, &str>(7) }).await.unwrap(), 7);
    assert_eq!(breaker.state(), State::Closed);
}

/// A custom `bulkhead::Hold` that panics: the call fails with the typed error and the permit
/// it would have held comes back.
#[tokio::test(start_paused = true)]
async fn a_panicking_custom_hold_is_a_typed_error_and_leaks_no_permit() {
    #[derive(Clone)]
    struct Buggy;
    impl bulkhead::Hold<&'static str> for Buggy {
        fn hooks<'a>(
            &self,
            response: &'a mut &'static str,
        ) -> Option<&'a mut palisade::classify::Hooks> {
            if *response == BOOM {
                panic!("hold bug");
            }
            None
        }
    }
    let layer = bulkhead::Builder::from_config(bulkhead_config())
        .build()
        .unwrap()
        .hold(Buggy);
    let handle = layer.handle();
    let svc = layer.layer(Dependency::new());
    let caught = caught_call(&svc, Reply::Answer(BOOM)).await;
    assert_eq!(caught, ("Hold::hooks", "hold bug".to_owned()));
    assert_eq!(handle.available(), handle.max_concurrent(), "permit back");
    let mut svc = svc;
    assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
    assert_eq!(handle.available(), handle.max_concurrent());
}

/// A custom classifier whose `end_of_body` panics: the call fails with the typed error, is
/// recorded as ignored, and the probe slot comes back.
#[tokio::test(start_paused = true)]
async fn a_panicking_end_of_body_is_a_typed_error_and_leaks_no_probe_slot() {
    #[derive(Clone)]
    struct Buggy;
    impl palisade::classify::Classify<&'static str> for Buggy {
        fn classify(&self, result: Result<&&'static str, &BoxError>) -> Outcome {
            match result {
                Ok(_) => Outcome::success(),
                Err(e) => classify_error(e),
            }
        }
        fn end_of_body<'a>(
            &self,
            response: &'a mut &'static str,
            _: &Outcome,
        ) -> Option<&'a mut palisade::classify::Hooks> {
            if *response == BOOM {
                panic!("end of body bug");
            }
            None
        }
    }
    let layer = circuit_breaker::Builder::from_config(breaker_config())
        .build()
        .unwrap()
        .with_classifier(Buggy);
    let breaker = layer.handle();
    let mut svc = layer.layer(Dependency::new());
    for at in BOTH {
        bring_to(at, &mut svc, &breaker).await;
        let caught = caught_call(&svc, Reply::Answer(BOOM)).await;
        assert_eq!(
            caught,
            ("Classify::end_of_body", "end of body bug".to_owned())
        );
        assert_eq!(breaker.snapshot().probes_in_flight, 0, "{at:?}");
        assert_next_call_works(at, &mut svc, &breaker).await;
    }
}
