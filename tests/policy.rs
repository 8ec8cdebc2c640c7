//! The whole Policy: for each kind of failure, what the caller gets and what each part counts.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State};
use palisade::classify::Outcome;
use palisade::error::{ErrorKind, error_kind};
use palisade::events::Event;
use palisade::fallback::{self, Failure, FailureKind, Kinds};
use palisade::policy::{Policy, PolicyConfig};
use support::{Dependency, Reply, call};
use tower::{BoxError, Layer, ServiceExt};

fn breaker_config() -> CircuitBreakerConfig {
    let mut c = CircuitBreakerConfig::default();
    c.window = SlidingWindow::Count(10);
    c.minimum_calls = 3;
    c.open_duration = Duration::from_secs(10);
    c.permitted_probes = 1;
    c
}

fn bulkhead_config(max: usize) -> BulkheadConfig {
    let mut b = BulkheadConfig::default();
    b.max_concurrent = max;
    b
}

/// Recovers with "fallback:<kind>" so the test sees which kind was recovered.
fn recover(failure: Failure<&'static str>) -> Result<&'static str, Failure<&'static str>> {
    Ok(match failure.kind() {
        FailureKind::CircuitOpen => "fallback:circuit_open",
        FailureKind::BulkheadFull => "fallback:bulkhead_full",
        FailureKind::TimedOut => "fallback:timed_out",
        FailureKind::InnerError => "fallback:inner_error",
        FailureKind::FailureResponse => "fallback:failure_response",
    })
}

type Recovery = fn(Failure<&'static str>) -> Result<&'static str, Failure<&'static str>>;

/// "ok" succeeds; anything else the dependency answers is a failure response.
fn classify(res: Result<&&'static str, &BoxError>) -> Outcome {
    match res {
        Ok(&"ok") => Outcome::success(),
        Ok(_) => Outcome::failure(),
        Err(e) => palisade::classify::classify_error(e),
    }
}

type Classifier = fn(Result<&&'static str, &BoxError>) -> Outcome;

/// Collects events as short strings: what happened, in order.
fn collector() -> (
    Arc<Mutex<Vec<String>>>,
    impl Fn(&Event<'_>) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let listener = move |event: &Event<'_>| {
        let line = match event {
            Event::StateTransition { name, transition } => {
                format!("{name}: {:?} -> {:?}", transition.from, transition.to)
            }
            Event::Rejected { name, reason } => format!("{name}: rejected {reason:?}"),
            Event::TimedOut { name, after } => format!("{name}: timed out after {after:?}"),
            Event::FallbackServed { name, kind, .. } => {
                format!("{name}: fallback {}", kind.as_str())
            }
            // Per-call bookkeeping (tests/observe.rs checks it): not decisions this test follows.
            Event::CallRecorded { .. }
            | Event::BulkheadAcquired { .. }
            | Event::BulkheadReleased { .. }
            | Event::StaleCacheUpdated { .. } => return,
            other => format!("{other:?}"),
        };
        log.lock().unwrap().push(line);
    };
    (seen, listener)
}

#[tokio::test(start_paused = true)]
async fn each_kind_of_failure_gives_the_documented_result_counts_and_events() {
    let (events, listener) = collector();
    // Judged from 4 calls: the third, a success, leaves 2 failures of 3 unjudged.
    let mut judged_from_four = breaker_config();
    judged_from_four.minimum_calls = 4;
    let policy = Policy::builder()
        .listener(listener)
        .name("inventory")
        .timeout(Duration::from_millis(100))
        .bulkhead(bulkhead_config(1))
        .circuit_breaker(judged_from_four)
        .classifier(classify as Classifier)
        .fallback(fallback::from_fn(recover as Recovery))
        .build()
        .unwrap();
    let breaker = policy.circuit_breaker().unwrap();
    let bulkhead = policy.bulkhead().unwrap();
    assert_eq!(breaker.name(), "inventory");
    let dep = Dependency::new();
    let svc = policy.layer(dep.clone());

    // Inner error: recovered; the breaker counts one failure.
    assert_eq!(
        call(&mut svc.clone(), Reply::Err).await.unwrap(),
        "fallback:inner_error"
    );
    assert_eq!(
        (breaker.snapshot().calls, breaker.snapshot().failures),
        (1, 1)
    );

    // Hang: the timeout fires at 100 ms, the permit comes back, the breaker counts a failure.
    let start = tokio::time::Instant::now();
    assert_eq!(
        call(&mut svc.clone(), Reply::Hang).await.unwrap(),
        "fallback:timed_out"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(bulkhead.available(), 1);
    assert_eq!(
        (breaker.snapshot().calls, breaker.snapshot().failures),
        (2, 2)
    );

    // Full bulkhead: one call holds the only permit; the next is rejected and recovered, and the
    // breaker ignores it (local overload, not a sick dependency).
    let mut holder = svc.clone();
    let mut held =
        Box::pin(async move { call(&mut holder, Reply::Delay(Duration::from_millis(50))).await });
    assert!(futures::poll!(&mut held).is_pending());
    assert_eq!(bulkhead.in_flight(), 1);
    assert_eq!(
        call(&mut svc.clone(), Reply::Ok).await.unwrap(),
        "fallback:bulkhead_full"
    );
    assert_eq!(held.await.unwrap(), "ok");
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (3, 2),
        "the rejection was not counted"
    );

    // Failure response ("503"): counted as a failure and recovered. 3 of 4 failed: open.
    assert_eq!(dep.seen.calls(), 3);
    assert_eq!(
        call(&mut svc.clone(), Reply::Answer("503")).await.unwrap(),
        "fallback:failure_response"
    );
    assert_eq!(breaker.state(), State::Open);

    // Open breaker: rejected without touching the bulkhead or the dependency, and recovered.
    let calls = dep.seen.calls();
    assert_eq!(
        call(&mut svc.clone(), Reply::Ok).await.unwrap(),
        "fallback:circuit_open"
    );
    assert_eq!(dep.seen.calls(), calls);
    assert_eq!(bulkhead.in_flight(), 0);
    assert_eq!(breaker.snapshot().rejected, 1);
    assert_eq!(bulkhead.available(), 1, "no permit lost along the way");

    assert_eq!(
        *events.lock().unwrap(),
        [
            "inventory: fallback inner_error",
            "inventory: timed out after 100ms",
            "inventory: fallback timed_out",
            "inventory: rejected BulkheadFull",
            "inventory: fallback bulkhead_full",
            "inventory: Closed -> Open",
            "inventory: fallback failure_response",
            "inventory: rejected Circuit(Open)",
            "inventory: fallback circuit_open",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_listener_breaks_nothing() {
    let policy = Policy::builder()
        .bulkhead(bulkhead_config(1))
        .circuit_breaker(breaker_config())
        .listener(|_: &Event<'_>| panic!("listener bug"))
        .fallback(fallback::value("fallback"))
        .build()
        .unwrap();
    let breaker = policy.circuit_breaker().unwrap();
    let bulkhead = policy.bulkhead().unwrap();
    let mut svc = policy.layer(Dependency::new());
    for _ in 0..3 {
        assert_eq!(call(&mut svc, Reply::Err).await.unwrap(), "fallback");
    }
    assert_eq!(
        breaker.state(),
        State::Open,
        "the transition happened despite the listener"
    );
    assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "fallback");
    assert_eq!(bulkhead.available(), 1);
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_fallback_the_caller_sees_typed_errors() {
    let policy = Policy::builder()
        .timeout(Duration::from_millis(100))
        .bulkhead(bulkhead_config(1))
        .circuit_breaker(breaker_config())
        .build()
        .unwrap();
    let mut svc = policy.layer(Dependency::new());
    let err = call(&mut svc, Reply::Hang).await.unwrap_err();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(e) if e.after() == Duration::from_millis(100))
    );
    let err = call(&mut svc, Reply::Err).await.unwrap_err();
    assert!(matches!(error_kind(err.as_ref()), ErrorKind::Inner(_)));
    let _ = call(&mut svc, Reply::Err).await;
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert!(matches!(
        error_kind(err.as_ref()),
        ErrorKind::CircuitOpen(_)
    ));
}

/// DESIGN.md: a full bulkhead is local overload, never a failure of the dependency, even under
/// a classifier that fails every error.
#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_never_trips_the_breaker_whatever_the_classifier() {
    let every_error_fails: Classifier = |res| match res {
        Ok(_) => Outcome::success(),
        Err(_) => Outcome::failure(),
    };
    let policy = Policy::builder()
        .bulkhead(bulkhead_config(1))
        .circuit_breaker(breaker_config())
        .classifier(every_error_fails)
        .build()
        .unwrap();
    let breaker = policy.circuit_breaker().unwrap();
    let svc = policy.layer(Dependency::new());
    let mut holder = svc.clone();
    let mut held = Box::pin(call(&mut holder, Reply::Hang));
    assert!(
        futures::poll!(held.as_mut()).is_pending(),
        "holds the permit"
    );
    for _ in 0..5 {
        let err = call(&mut svc.clone(), Reply::Ok).await.unwrap_err();
        assert!(matches!(
            error_kind(err.as_ref()),
            ErrorKind::BulkheadFull(_)
        ));
    }
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.failures),
        (State::Closed, 0, 0)
    );
    drop(held);
}

/// Two calls at once through `wrap(dependency)`, where each takes 80 ms at the dependency.
async fn two_calls_of_80_ms<S>(wrap: impl FnOnce(Eighty) -> S)
where
    S: tower::Service<(), Response = &'static str, Error = BoxError> + Clone,
{
    let svc = wrap(tower::service_fn(|()| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(80)).await;
            Ok::<_, BoxError>("ok")
        })
    }));
    let (a, b) = tokio::join!(svc.clone().oneshot(()), svc.clone().oneshot(()));
    assert_eq!((a.unwrap(), b.unwrap()), ("ok", "ok"));
}

type Eighty = tower::util::ServiceFn<
    fn(
        (),
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<&'static str, BoxError>> + Send>,
    >,
>;

/// A call's time queued in the bulkhead is local overload, not the dependency's slowness: the
/// slow-call rule times a call from when it is sent.
#[tokio::test(start_paused = true)]
async fn time_queued_in_the_bulkhead_is_not_a_slow_call() {
    let mut breaker = breaker_config();
    breaker.minimum_calls = 2;
    breaker.slow_call_duration = Some(Duration::from_millis(100));
    breaker.slow_call_rate = 0.5;
    let mut bulkhead = bulkhead_config(1);
    bulkhead.max_wait = Some(Duration::from_secs(1));
    let policy = Policy::builder()
        .bulkhead(bulkhead)
        .circuit_breaker(breaker)
        .build()
        .unwrap();
    let handle = policy.circuit_breaker().unwrap();
    // Each call takes 80 ms at the dependency; the second waits 80 ms for the first's permit.
    two_calls_of_80_ms(|dependency| policy.layer(dependency)).await;
    let snap = handle.snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.slow_calls),
        (State::Closed, 2, 0),
        "neither call took 100 ms at the dependency"
    );
    // A call slow at the dependency is still slow.
    let slow = policy.layer(tower::service_fn(|()| async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok::<_, BoxError>("ok")
    }));
    slow.oneshot(()).await.unwrap();
    assert_eq!(handle.snapshot().slow_calls, 1);
}

/// A shared bulkhead stacked under the Policy's own (a global limit over several policies'
/// clients) queues a call the Policy's bulkhead has let through: that wait is local too.
#[tokio::test(start_paused = true)]
async fn time_queued_in_a_bulkhead_stacked_below_is_not_a_slow_call() {
    use palisade::bulkhead::BulkheadLayer;

    let mut breaker = breaker_config();
    breaker.minimum_calls = 10; // no trip: the window keeps the count
    breaker.slow_call_duration = Some(Duration::from_millis(100));
    breaker.slow_call_rate = 1.0;
    let policy = Policy::builder()
        .bulkhead(bulkhead_config(8))
        .circuit_breaker(breaker)
        .build()
        .unwrap();
    let handle = policy.circuit_breaker().unwrap();
    let shared = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    // Each call takes 80 ms at the dependency; the second waits 80 ms in the shared queue.
    two_calls_of_80_ms(|dependency| policy.layer(shared.layer(dependency))).await;
    let snap = handle.snapshot();
    assert_eq!(
        (snap.calls, snap.slow_calls),
        (2, 0),
        "neither call took 100 ms at the dependency"
    );
}

/// A breaker around a future that sends one call and queues another (a hedge, a race)
/// times it from the call sent: the queued one does not stop the clock.
#[tokio::test(start_paused = true)]
async fn a_call_sent_beside_a_queued_one_is_timed() {
    use palisade::bulkhead::BulkheadLayer;
    use palisade::circuit_breaker::CircuitBreakerLayer;

    let bulkhead = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap()
        .layer(tower::service_fn(|()| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, BoxError>("ok")
        }));
    let breaker = CircuitBreakerLayer::builder()
        .minimum_calls(10) // no trip: the window keeps the count
        .slow_call_duration(Duration::from_secs(1))
        .slow_call_rate(1.0)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let racing = breaker.layer(tower::service_fn(move |()| {
        let (a, b) = (bulkhead.clone(), bulkhead.clone());
        async move {
            let first = futures::future::select(Box::pin(a.oneshot(())), Box::pin(b.oneshot(())));
            first.await.factor_first().0
        }
    }));
    assert_eq!(racing.oneshot(()).await.unwrap(), "ok");
    assert_eq!(
        handle.snapshot().slow_calls,
        1,
        "5 s at the dependency is slow"
    );
}

#[tokio::test(start_paused = true)]
async fn fallback_kinds_limit_what_is_recovered() {
    let policy = Policy::builder()
        .circuit_breaker(breaker_config())
        .fallback(fallback::value("cached"))
        .fallback_kinds(Kinds::only(FailureKind::CircuitOpen))
        .build()
        .unwrap();
    let mut svc = policy.layer(Dependency::new());
    for _ in 0..3 {
        assert!(
            call(&mut svc, Reply::Err).await.is_err(),
            "inner errors are not recovered"
        );
    }
    assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "cached");
}

#[tokio::test]
async fn every_part_is_optional() {
    let policy = Policy::builder().build().unwrap();
    assert!(policy.circuit_breaker().is_none() && policy.bulkhead().is_none());
    let svc = policy.layer(Dependency::new());
    assert_eq!(svc.oneshot(Reply::Ok).await.unwrap(), "ok");
}

/// A part left out hands the rest's call through untouched (`policy::Bypass`): no timer, no
/// permit, no admission, no recovery, and the inner error as it was.
#[tokio::test(start_paused = true)]
async fn parts_left_out_pass_calls_through_untouched() {
    let hour = Duration::from_secs(3600);
    let dep = Dependency::new();
    let svc = Policy::builder().build().unwrap().layer(dep.clone());
    let calls = (0..100).map(|_| svc.clone().oneshot(Reply::Delay(hour)));
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|a| matches!(a, Ok("ok"))), "{answers:?}");
    assert_eq!((dep.seen.max_in_flight(), dep.seen.dropped()), (100, 0));
    let err = svc.clone().oneshot(Reply::Err).await.unwrap_err();
    assert!(matches!(error_kind(err.as_ref()), ErrorKind::Inner(_)));
    assert_eq!(
        err.downcast_ref::<support::Failed>(),
        Some(&support::Failed)
    );

    // A breaker alone counts the inner errors that come up through the bulkhead and timeout
    // left out below it, and one left out above passes its rejection on.
    let policy = Policy::builder()
        .circuit_breaker(breaker_config())
        .build()
        .unwrap();
    let breaker = policy.circuit_breaker().unwrap().clone();
    let mut svc = policy.layer(Dependency::new());
    for _ in 0..3 {
        let err = call(&mut svc, Reply::Err).await.unwrap_err();
        assert!(err.is::<support::Failed>(), "{err}");
    }
    assert_eq!(breaker.state(), State::Open);
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::CircuitOpen(_)),
        "{err}"
    );

    // A timeout alone: its `Elapsed` passes through the three parts left out above it.
    let mut svc = Policy::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(Dependency::new());
    let err = call(&mut svc, Reply::Hang).await.unwrap_err();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(_)),
        "{err}"
    );
}

#[test]
fn bad_configuration_names_the_section_and_field() {
    let mut breaker = breaker_config();
    breaker.failure_rate = f64::NAN;
    let err = Policy::builder()
        .circuit_breaker(breaker)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit_breaker.failure_rate");
    let err = Policy::builder()
        .bulkhead(bulkhead_config(0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_concurrent");
    let err = Policy::builder()
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "timeout.timeout");
    let err = Policy::builder().name("").build().unwrap_err();
    assert_eq!(err.field(), "name");
    let mut config = PolicyConfig::default();
    config.timeout = None;
    assert!(Policy::builder().config(config).build().is_ok());
}

#[cfg(feature = "serde")]
#[test]
fn a_policy_reads_from_configuration() {
    let config: PolicyConfig = serde_json::from_str(
        r#"{"name":"inventory","timeout":{"timeout":"250ms"},"bulkhead":{"max_concurrent":32},
            "circuit_breaker":{"window":{"count":50},"minimum_calls":20,"open_duration":"10s"}}"#,
    )
    .unwrap();
    let policy = Policy::builder().config(config).build().unwrap();
    assert_eq!(policy.bulkhead().unwrap().max_concurrent(), 32);
    assert_eq!(policy.circuit_breaker().unwrap().name(), "inventory");
    let err =
        serde_json::from_str::<PolicyConfig>(r#"{"bulkhead":{"max_concurrent":0}}"#).unwrap_err();
    assert!(err.to_string().contains("max_concurrent"), "{err}");
}

/// The TOML shown in the `policy` module docs, verbatim.
#[cfg(feature = "serde")]
const DOCUMENTED_TOML: &str = r#"
name = "inventory"

[timeout]
timeout = "250ms"

[bulkhead]
max_concurrent = 32

[circuit_breaker]
window = { count = 50 }
minimum_calls = 20
failure_rate = 0.5
open_duration = "10s"
"#;

#[cfg(feature = "serde")]
#[test]
fn the_documented_toml_configuration_builds_a_policy() {
    let docs = include_str!("../src/policy.rs");
    let shown: String = docs
        .lines()
        .skip_while(|l| !l.starts_with("//! ```toml"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| l.trim_start_matches("//!").trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        shown.trim(),
        DOCUMENTED_TOML.trim(),
        "the docs and this test agree"
    );
    let config: PolicyConfig = toml::from_str(DOCUMENTED_TOML).unwrap();
    let policy = Policy::builder().config(config).build().unwrap();
    assert_eq!(policy.name(), "inventory");
    assert_eq!(policy.bulkhead().unwrap().max_concurrent(), 32);
    let bad = DOCUMENTED_TOML.replace("failure_rate = 0.5", "failure_rate = 50.0");
    let err = toml::from_str::<PolicyConfig>(&bad).unwrap_err();
    assert!(err.to_string().contains("failure_rate"), "{err}");
}

mod never_panics {

    use palisade::bulkhead::BulkheadConfig;
    use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow};
    use palisade::fallback::StaleCache;
    use palisade::policy::{Policy, PolicyConfig};
    use proptest::prelude::*;

    use super::support::any_duration;

    proptest! {
        #[test]
        fn policy_build_never_panics(
            name in ".{0,8}",
            timeout in prop::option::of(any_duration()),
            bulkhead in prop::option::of((any::<usize>(), prop::option::of(any_duration()), prop::option::of(any::<usize>()))),
            breaker in prop::option::of((any::<u32>(), any::<u32>(), any::<f64>(), any_duration())),
        ) {
            let mut config = PolicyConfig::default();
            config.name = name;
            let mut builder = Policy::builder();
            if let Some(t) = timeout {
                builder = builder.timeout(t);
            }
            if let Some((max, wait, queued)) = bulkhead {
                let mut b = BulkheadConfig::default();
                b.max_concurrent = max;
                b.max_wait = wait;
                b.max_queued = queued;
                config.bulkhead = Some(b);
            }
            if let Some((window, min, rate, open)) = breaker {
                let mut c = CircuitBreakerConfig::default();
                c.window = SlidingWindow::Count(window);
                c.minimum_calls = min;
                c.failure_rate = rate;
                c.open_duration = open;
                config.circuit_breaker = Some(c);
            }
            let timeout = builder.build().map(|p| p.name().to_owned());
            let _ = timeout;
            match Policy::builder().config(config.clone()).build() {
                Ok(_) => prop_assert!(config.validate().is_ok()),
                Err(e) => {
                    prop_assert!(config.validate().is_err());
                    let section = e.field().split('.').next().unwrap_or_default().to_owned();
                    prop_assert!(["name", "bulkhead", "circuit_breaker"].contains(&section.as_str()), "{}", e);
                }
            }
        }

        #[test]
        fn stale_cache_build_never_panics(
            stale in any_duration(),
            entries in any::<usize>(),
            bytes in any::<usize>(),
            entry in any::<usize>(),
        ) {
            let built = StaleCache::<u8, u8, u8>::builder(|k: &u8| Some(*k))
                .max_stale(stale)
                .max_entries(entries)
                .max_bytes(bytes)
                .max_entry_bytes(entry)
                .build();
            prop_assert_eq!(
                built.is_ok(),
                !stale.is_zero() && entries > 0 && entry > 0 && bytes >= entry
            );
        }
    }
}

/// Each of `ServiceBuilderExt`'s layers is there, in order: the breaker records, the bulkhead
/// holds its permit, the inner timeout (10 ms, not the outer 1 s) cuts a hang, and the
/// fallback recovers it.
#[tokio::test(start_paused = true)]
async fn the_service_builder_extension_stacks_each_layer() {
    use palisade::policy::ServiceBuilderExt;
    use palisade::{bulkhead::BulkheadLayer, circuit_breaker::CircuitBreakerLayer};
    use palisade::{fallback::FallbackLayer, timeout::TimeoutLayer};
    let timeout = |ms| {
        TimeoutLayer::builder()
            .timeout(Duration::from_millis(ms))
            .build()
            .unwrap()
    };
    let breaker = CircuitBreakerLayer::builder().build().unwrap();
    let cb = breaker.handle();
    let bulkhead = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    let permits = bulkhead.handle();
    // tower's `timeout` feature (on in these tests) shadows `.timeout(..)`: call it by path.
    let builder =
        <_ as ServiceBuilderExt<_>>::timeout(tower::ServiceBuilder::new(), timeout(1_000));
    let mut svc = builder
        .fallback(FallbackLayer::new(fallback::value("fallback")))
        .circuit_breaker(breaker)
        .bulkhead(bulkhead)
        .call_timeout(timeout(10))
        .service(Dependency::new());
    assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
    assert_eq!(cb.snapshot().calls, 1, "the breaker saw the call");
    let mut other = svc.clone();
    let in_flight = call(&mut other, Reply::Delay(Duration::from_millis(5)));
    let looked = async {
        tokio::task::yield_now().await;
        permits.available()
    };
    let (answer, available) = tokio::join!(in_flight, looked);
    assert_eq!(available, 0, "a call in flight holds the permit");
    assert_eq!(answer.unwrap(), "ok");
    assert_eq!(permits.available(), 1);
    let start = tokio::time::Instant::now();
    assert_eq!(call(&mut svc, Reply::Hang).await.unwrap(), "fallback");
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(10),
        "cut by the inner timeout"
    );
    assert_eq!(
        cb.snapshot().failures,
        1,
        "the timeout is the breaker's failure"
    );
}

/// `.config(..)` replaces the whole configuration: after settings made by hand it would lose
/// them, so `build()` says so; before them, they adjust it.
#[test]
fn a_config_given_after_settings_by_hand_is_a_config_error_and_before_them_is_adjusted() {
    let mut config = PolicyConfig::default();
    config.name = "from-file".to_owned();
    config.bulkhead = Some(bulkhead_config(4));
    let err = Policy::builder()
        .name("inventory")
        .timeout(Duration::from_millis(250))
        .config(config.clone())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "config");
    let policy = Policy::builder()
        .config(config.clone())
        .name("inventory")
        .timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    assert_eq!(policy.name(), "inventory");
    assert_eq!(policy.bulkhead().unwrap().max_concurrent(), 4);
    // One configuration after another replaces it, as asked: nothing set by hand is lost.
    let policy = Policy::builder()
        .config(PolicyConfig::default())
        .config(config)
        .build()
        .unwrap();
    assert_eq!(policy.name(), "from-file");
}
