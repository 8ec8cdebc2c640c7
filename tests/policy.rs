//! The whole Policy: for each kind of failure, what the caller gets and what each part counts.

mod support;

use std::time::Duration;

use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State};
use palisade::classify::Outcome;
use palisade::error::{ErrorKind, error_kind};
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

#[tokio::test(start_paused = true)]
async fn each_kind_of_failure_gives_the_documented_result_and_counts() {
    let policy = Policy::builder()
        .name("inventory")
        .timeout(Duration::from_millis(100))
        .bulkhead(bulkhead_config(1))
        .circuit_breaker(breaker_config())
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
