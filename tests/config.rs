//! Bad configuration is a `ConfigError` naming the field, never a panic.

mod support;

use std::time::Duration;

use palisade::circuit_breaker::{
    Backoff, CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow,
};
use proptest::prelude::*;

type Edit = fn(&mut CircuitBreakerConfig);

/// (what, the edit, the field named in the error, or None when the value is meaningful).
fn table() -> Vec<(&'static str, Edit, Option<&'static str>)> {
    vec![
        (
            "count window 0",
            |c| c.window = SlidingWindow::Count(0),
            Some("window"),
        ),
        (
            "count window above max",
            |c| c.window = SlidingWindow::Count(1_000_001),
            Some("window"),
        ),
        (
            "count window 1",
            |c| {
                c.window = SlidingWindow::Count(1);
                c.minimum_calls = 1
            },
            None,
        ),
        (
            "time window 0",
            |c| c.window = SlidingWindow::Time(Duration::ZERO),
            Some("window"),
        ),
        (
            "time window MAX",
            |c| c.window = SlidingWindow::Time(Duration::MAX),
            Some("window"),
        ),
        (
            "time window 20ms",
            |c| c.window = SlidingWindow::Time(Duration::from_millis(20)),
            None,
        ),
        (
            "minimum calls 0",
            |c| c.minimum_calls = 0,
            Some("minimum_calls"),
        ),
        (
            "minimum calls above the window",
            |c| c.minimum_calls = 101,
            Some("minimum_calls"),
        ),
        (
            "minimum calls above a time window is fine",
            |c| {
                c.window = SlidingWindow::Time(Duration::from_secs(1));
                c.minimum_calls = 5_000
            },
            None,
        ),
        (
            "failure rate NaN",
            |c| c.failure_rate = f64::NAN,
            Some("failure_rate"),
        ),
        (
            "failure rate +inf",
            |c| c.failure_rate = f64::INFINITY,
            Some("failure_rate"),
        ),
        (
            "failure rate -inf",
            |c| c.failure_rate = f64::NEG_INFINITY,
            Some("failure_rate"),
        ),
        (
            "failure rate 0",
            |c| c.failure_rate = 0.0,
            Some("failure_rate"),
        ),
        (
            "failure rate negative",
            |c| c.failure_rate = -0.5,
            Some("failure_rate"),
        ),
        (
            "failure rate above 100 %",
            |c| c.failure_rate = 1.5,
            Some("failure_rate"),
        ),
        (
            "failure rate given as a percentage",
            |c| c.failure_rate = 50.0,
            Some("failure_rate"),
        ),
        ("failure rate 100 %", |c| c.failure_rate = 1.0, None),
        (
            "slow call rate NaN",
            |c| c.slow_call_rate = f64::NAN,
            Some("slow_call_rate"),
        ),
        (
            "slow call rate 0",
            |c| c.slow_call_rate = 0.0,
            Some("slow_call_rate"),
        ),
        (
            "slow call duration 0",
            |c| c.slow_call_duration = Some(Duration::ZERO),
            Some("slow_call_duration"),
        ),
        (
            "slow call duration MAX (never slow)",
            |c| c.slow_call_duration = Some(Duration::MAX),
            None,
        ),
        (
            "consecutive failures 0",
            |c| c.consecutive_failures = Some(0),
            Some("consecutive_failures"),
        ),
        (
            "open duration 0",
            |c| c.open_duration = Duration::ZERO,
            Some("open_duration"),
        ),
        (
            "open duration MAX (open until reset)",
            |c| c.open_duration = Duration::MAX,
            None,
        ),
        (
            "backoff multiplier NaN",
            |c| {
                c.backoff = Some(Backoff {
                    multiplier: f64::NAN,
                    ..Backoff::default()
                })
            },
            Some("backoff.multiplier"),
        ),
        (
            "backoff multiplier below 1",
            |c| {
                c.backoff = Some(Backoff {
                    multiplier: 0.5,
                    ..Backoff::default()
                })
            },
            Some("backoff.multiplier"),
        ),
        (
            "backoff multiplier inf",
            |c| {
                c.backoff = Some(Backoff {
                    multiplier: f64::INFINITY,
                    ..Backoff::default()
                })
            },
            Some("backoff.multiplier"),
        ),
        (
            "backoff max below open duration",
            |c| {
                c.backoff = Some(Backoff {
                    max: Duration::from_secs(1),
                    ..Backoff::default()
                })
            },
            Some("backoff.max"),
        ),
        (
            "backoff max MAX",
            |c| {
                c.backoff = Some(Backoff {
                    max: Duration::MAX,
                    ..Backoff::default()
                })
            },
            None,
        ),
        (
            "backoff jitter 1",
            |c| {
                c.backoff = Some(Backoff {
                    jitter: 1.0,
                    ..Backoff::default()
                })
            },
            Some("backoff.jitter"),
        ),
        (
            "backoff jitter negative",
            |c| {
                c.backoff = Some(Backoff {
                    jitter: -0.1,
                    ..Backoff::default()
                })
            },
            Some("backoff.jitter"),
        ),
        (
            "max pushback 0 (ignore pushback)",
            |c| c.max_pushback = Duration::ZERO,
            None,
        ),
        ("max pushback MAX", |c| c.max_pushback = Duration::MAX, None),
        (
            "probes 0",
            |c| c.permitted_probes = 0,
            Some("permitted_probes"),
        ),
        (
            "probes above max",
            |c| c.permitted_probes = 1_001,
            Some("permitted_probes"),
        ),
        (
            "probe success rate above 1",
            |c| c.probe_success_rate = 1.01,
            Some("probe_success_rate"),
        ),
        (
            "max half-open wait 0",
            |c| c.max_half_open_wait = Duration::ZERO,
            Some("max_half_open_wait"),
        ),
        (
            "max half-open wait MAX (could stay half-open forever)",
            |c| c.max_half_open_wait = Duration::MAX,
            Some("max_half_open_wait"),
        ),
    ]
}

#[test]
fn every_bad_value_is_a_config_error_naming_its_field() {
    assert!(CircuitBreakerConfig::default().validate().is_ok());
    for (what, edit, field) in table() {
        let mut config = CircuitBreakerConfig::default();
        edit(&mut config);
        let built = palisade::circuit_breaker::Builder::from_config(config.clone()).build();
        match (built, field) {
            (Ok(_), None) => {}
            (Err(e), Some(field)) => {
                assert_eq!(e.field(), field, "{what}");
                let text = e.to_string();
                assert!(
                    text.contains(field),
                    "{what}: message names the field: {text}"
                );
            }
            (Ok(_), Some(field)) => panic!("{what}: accepted, expected an error on {field}"),
            (Err(e), None) => panic!("{what}: rejected with {e}, expected Ok"),
        }
    }
}

/// The largest durations, pushback and backoff a configuration accepts: a breaker trips,
/// rejects, and reports an open time that saturates (or none: open until reset), never one
/// wrapped round to something short; the layer does the same on a runtime.
#[tokio::test(start_paused = true)]
async fn extreme_but_meaningful_values_run_without_panicking() {
    use tower::{Layer, Service, ServiceExt};
    let mut config = CircuitBreakerConfig::default();
    config.open_duration = Duration::MAX;
    config.max_pushback = Duration::MAX;
    config.window = SlidingWindow::Count(1);
    config.minimum_calls = 1;
    config.backoff = Some(Backoff {
        multiplier: 1e300,
        max: Duration::MAX,
        jitter: 0.99,
    });
    // Open for as long as the clock can say (its nanoseconds saturate some 584 years on), or
    // for ever: never a wrapped, short time.
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let saturated = |left: Option<Duration>| left.is_none_or(|d| d >= CENTURY);

    let sm = palisade::circuit_breaker::StateMachine::new(&config).unwrap();
    let now = Duration::from_secs(3600);
    let p = sm.admit(now).unwrap();
    sm.record(
        p,
        palisade::classify::Outcome::failure().with_pushback(Duration::MAX),
        now,
    );
    let snap = sm.snapshot(now);
    assert_eq!(snap.state, palisade::circuit_breaker::State::Open);
    assert!(saturated(snap.retry_after), "{:?}", snap.retry_after);
    assert!(sm.admit(now + CENTURY).is_err());
    // A clock at its own end does not panic either.
    let _ = sm.admit(Duration::MAX);
    let _ = sm.snapshot(Duration::MAX);

    let layer = CircuitBreakerLayer::new(&config).unwrap();
    let breaker = layer.handle();
    let mut svc = layer.layer(tower::service_fn(|_: ()| async {
        Err::<(), _>(std::io::Error::other("down"))
    }));
    svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(breaker.state(), palisade::circuit_breaker::State::Open);
    let rejected = match svc.ready().await {
        Ok(svc) => svc.call(()).await.unwrap_err(),
        Err(e) => e,
    };
    match palisade::error::error_kind(rejected.as_ref()) {
        palisade::error::ErrorKind::CircuitOpen(open) => {
            // A service's rejection carries its probe time in one word, saturated at about
            // 30 years.
            let decade = CENTURY / 10;
            assert!(
                open.retry_after().is_none_or(|d| d >= decade),
                "{:?}",
                open.retry_after()
            );
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
}

use support::any_duration;

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(1.0),
        any::<f64>(),
        0.0f64..=1.0,
    ]
}

proptest! {
    #[test]
    fn build_never_panics(
        count in any::<u32>(),
        time in any_duration(),
        use_time in any::<bool>(),
        min in any::<u32>(),
        rates in (any_f64(), any_f64(), any_f64()),
        slow in prop::option::of(any_duration()),
        consecutive in prop::option::of(any::<u32>()),
        open in any_duration(),
        backoff in prop::option::of((any_f64(), any_duration(), any_f64())),
        pushback in any_duration(),
        probes in any::<u32>(),
        wait in any_duration(),
    ) {
        let mut c = CircuitBreakerConfig::default();
        c.window = if use_time { SlidingWindow::Time(time) } else { SlidingWindow::Count(count) };
        c.minimum_calls = min;
        (c.failure_rate, c.slow_call_rate, c.probe_success_rate) = rates;
        c.slow_call_duration = slow;
        c.consecutive_failures = consecutive;
        c.open_duration = open;
        c.backoff = backoff.map(|(multiplier, max, jitter)| Backoff { multiplier, max, jitter });
        c.max_pushback = pushback;
        c.permitted_probes = probes;
        c.max_half_open_wait = wait;
        if let Ok(layer) = palisade::circuit_breaker::Builder::from_config(c.clone()).build() {
            // A valid configuration also runs: trip it and probe it at extreme times.
            let sm = palisade::circuit_breaker::StateMachine::new(&c).unwrap();
            for t in [Duration::ZERO, Duration::from_secs(1), Duration::MAX] {
                for _ in 0..3 {
                    if let Ok(p) = sm.admit(t) {
                        sm.record(p, palisade::classify::Outcome::failure().with_duration(t).with_pushback(t), t);
                    }
                }
                let _ = sm.snapshot(t);
            }
            drop(layer);
        }
    }
}

#[cfg(feature = "serde")]
#[test]
fn deserialized_configuration_is_validated_the_same_way() {
    let ok: CircuitBreakerConfig = serde_json::from_str(
        r#"{"name":"payments","window":{"time":"30s"},"minimum_calls":20,"failure_rate":0.25,
            "open_duration":"5s","backoff":{"multiplier":2.0,"max":"1m","jitter":0.1}}"#,
    )
    .unwrap();
    assert_eq!(ok.window, SlidingWindow::Time(Duration::from_secs(30)));
    assert_eq!(ok.open_duration, Duration::from_secs(5));
    let err = serde_json::from_str::<CircuitBreakerConfig>(r#"{"failure_rate":1.5}"#).unwrap_err();
    assert!(err.to_string().contains("failure_rate"), "{err}");
    let err = serde_json::from_str::<CircuitBreakerConfig>(r#"{"minimum_calls":0}"#).unwrap_err();
    assert!(err.to_string().contains("minimum_calls"), "{err}");
    assert!(serde_json::from_str::<CircuitBreakerConfig>(r#"{"no_such_field":1}"#).is_err());
}

/// `T::deserialize`, called by path as a `deserialize_with` function or a hand-written impl
/// would, is the validating trait function: no public function reads a configuration's fields
/// unchecked. (Before the mirrors, serde's `remote = "Self"` derive gave each configuration an
/// inherent `deserialize` that path calls resolved to, and that accepted these values.)
#[cfg(feature = "serde")]
#[test]
fn every_deserialize_function_validates() {
    use palisade::bulkhead::BulkheadConfig;
    use palisade::policy::PolicyConfig;
    use palisade::timeout::TimeoutConfig;
    use serde::Deserialize;

    fn refused<T>(
        read: fn(
            &mut serde_json::Deserializer<serde_json::de::StrRead<'_>>,
        ) -> Result<T, serde_json::Error>,
        json: &str,
        field: &str,
    ) {
        let mut de = serde_json::Deserializer::from_str(json);
        match read(&mut de) {
            Ok(_) => panic!("{json} was accepted"),
            Err(err) => assert!(err.to_string().contains(field), "{json}: {err}"),
        }
    }
    refused(
        |d| TimeoutConfig::deserialize(d),
        r#"{"timeout":"0s"}"#,
        "timeout",
    );
    refused(
        |d| BulkheadConfig::deserialize(d),
        r#"{"max_concurrent":0}"#,
        "max_concurrent",
    );
    refused(
        |d| CircuitBreakerConfig::deserialize(d),
        r#"{"failure_rate":1.5}"#,
        "failure_rate",
    );
    refused(
        |d| PolicyConfig::deserialize(d),
        r#"{"circuit_breaker":{"failure_rate":1.5}}"#,
        "circuit_breaker.failure_rate",
    );
}
