//! Observability: the events every decision emits, the `tracing` and `metrics` listeners, the
//! registry, and listeners that panic. All on paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State};
use palisade::classify::OutcomeKind;
use palisade::events::{Event, Listener, Rejection};
use palisade::fallback::{self, FailureKind, Served, StaleCache};
use palisade::observe::Registry;
use palisade::policy::{Policy, PolicyLayer};
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

/// What the dependency does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// `Ok` after 10 ms.
    Ok,
    /// `Err` after 20 ms.
    Fail,
    /// `Ok` after 1 s (past every timeout here).
    Slow,
    /// Never answers.
    Hang,
}

#[derive(Debug, Clone, Copy)]
struct Req {
    key: u32,
    reply: Reply,
}

/// Keys below 9 are cached by the stale caches of these tests; 9 is never cached.
const UNCACHED: u32 = 9;

fn req(key: u32, reply: Reply) -> Req {
    Req { key, reply }
}

type Dep = tower::util::ServiceFn<
    fn(Req) -> std::pin::Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>,
>;

fn dependency() -> Dep {
    fn answer(
        req: Req,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>> {
        Box::pin(async move {
            match req.reply {
                Reply::Ok => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok(format!("item {}", req.key))
                }
                Reply::Fail => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err("down".into())
                }
                Reply::Slow => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(format!("item {}", req.key))
                }
                Reply::Hang => std::future::pending().await,
            }
        })
    }
    service_fn(answer as fn(Req) -> _)
}

type Cache = StaleCache<Req, String, u32>;

fn cache() -> Cache {
    StaleCache::builder(|r: &Req| (r.key < UNCACHED).then_some(r.key))
        .max_stale(Duration::from_secs(60))
        .size(|s: &String| s.len())
        .build()
        .unwrap()
}

fn breaker(window: u32, minimum_calls: u32) -> CircuitBreakerConfig {
    let mut c = CircuitBreakerConfig::default();
    c.window = SlidingWindow::Count(window);
    c.minimum_calls = minimum_calls;
    c.failure_rate = 0.5;
    c.open_duration = Duration::from_secs(10);
    c.permitted_probes = 1;
    c
}

fn bulkhead(max: usize) -> BulkheadConfig {
    let mut b = BulkheadConfig::default();
    b.max_concurrent = max;
    b
}

/// The whole stack: timeout 100 ms, a bulkhead of 1, a breaker tripping at 50 % over
/// `minimum_calls`, and a stale cache as the fallback.
fn full_policy(
    name: &str,
    minimum_calls: u32,
    listener: impl Listener + 'static,
) -> PolicyLayer<Cache> {
    Policy::builder()
        .name(name)
        .timeout(Duration::from_millis(100))
        .bulkhead(bulkhead(1))
        .circuit_breaker(breaker(10, minimum_calls))
        .fallback(cache())
        .listener(listener)
        .build()
        .unwrap()
}

async fn call<S>(svc: &mut S, req: Req) -> Result<String, BoxError>
where
    S: Service<Req, Response = String, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

/// Collects every event, owned.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

impl Collect {
    fn listener(&self) -> impl Fn(&Event<'_>) + Send + Sync + 'static {
        let log = self.0.clone();
        move |event: &Event<'_>| log.lock().unwrap().push(describe(event))
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// One line per event, with every figure a test may check.
fn describe(event: &Event<'_>) -> String {
    let name = event.name();
    match *event {
        Event::StateTransition { transition: t, .. } => format!(
            "{name}: {:?} -> {:?} ({:?}, calls {}, failures {}, would_trip {})",
            t.from, t.to, t.cause, t.window.calls, t.window.failures, t.would_trip
        ),
        Event::Rejected { reason, .. } => format!("{name}: rejected {reason:?}"),
        Event::TimedOut { after, .. } => format!("{name}: timed out after {after:?}"),
        Event::FallbackServed { kind, served, .. } => match served {
            Served::Fresh => format!("{name}: fallback {} fresh", kind.as_str()),
            Served::Stale(stale) => {
                format!("{name}: fallback {} stale {:?}", kind.as_str(), stale.age)
            }
            _ => format!("{name}: fallback {} ?", kind.as_str()),
        },
        Event::CallRecorded {
            outcome, duration, ..
        } => match duration {
            Some(d) => format!("{name}: call {:?} {d:?}", outcome.kind()),
            None => format!("{name}: call {:?} untimed", outcome.kind()),
        },
        Event::BulkheadAcquired { in_flight, .. } => format!("{name}: acquired, {in_flight}"),
        Event::BulkheadReleased { in_flight, .. } => format!("{name}: released, {in_flight}"),
        Event::StaleCacheUpdated { entries, .. } => format!("{name}: cache {entries}"),
        _ => format!("{name}: {event:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn every_decision_is_an_event_with_its_figures() {
    let events = Collect::default();
    let policy = full_policy("inventory", 3, events.listener());
    let mut svc = policy.layer(dependency());

    assert_eq!(call(&mut svc, req(1, Reply::Ok)).await.unwrap(), "item 1");
    assert_eq!(
        events.take(),
        [
            "inventory: acquired, 1",
            "inventory: released, 0",
            "inventory: call Success 10ms",
            "inventory: cache 1",
        ]
    );

    // A timeout: a failure the breaker counts; key 9 is not cached, so no fallback.
    assert!(call(&mut svc, req(UNCACHED, Reply::Slow)).await.is_err());
    assert_eq!(
        events.take(),
        [
            "inventory: acquired, 1",
            "inventory: timed out after 100ms",
            "inventory: released, 0",
            "inventory: call Failure 100ms",
        ]
    );

    // Bulkhead full: rejected, and recorded by the breaker as ignored.
    let hanging = svc.ready().await.unwrap().call(req(UNCACHED, Reply::Hang));
    assert!(call(&mut svc, req(UNCACHED, Reply::Ok)).await.is_err());
    drop(hanging); // cancelled: gives its permit back, records no outcome
    assert_eq!(
        events.take(),
        [
            "inventory: acquired, 1",
            "inventory: rejected BulkheadFull",
            "inventory: call Ignored untimed",
            "inventory: released, 0",
        ]
    );

    // A failure that trips the breaker (2 of 3): the transition carries the window's figures,
    // and the fallback serves the cached response, stale, with its age.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(call(&mut svc, req(1, Reply::Fail)).await.unwrap(), "item 1");
    assert_eq!(
        events.take(),
        [
            "inventory: acquired, 1",
            "inventory: released, 0",
            "inventory: call Failure 20ms",
            "inventory: Closed -> Open (FailureRate, calls 3, failures 2, would_trip false)",
            "inventory: fallback inner_error stale 5.12s",
        ]
    );

    // Open: rejected without a permit or a recorded call; served stale again.
    assert_eq!(call(&mut svc, req(1, Reply::Ok)).await.unwrap(), "item 1");
    assert_eq!(
        events.take(),
        [
            "inventory: rejected Circuit(Open)",
            "inventory: fallback circuit_open stale 5.12s",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_fallback_value_is_served_fresh() {
    let events = Collect::default();
    let policy = Policy::builder()
        .name("pricing")
        .fallback(fallback::value("0.00".to_owned()))
        .listener(events.listener())
        .build()
        .unwrap();
    let mut svc = policy.layer(dependency());
    assert_eq!(call(&mut svc, req(1, Reply::Fail)).await.unwrap(), "0.00");
    // No breaker, no bulkhead: no call or permit events; no cache: no cache event.
    assert_eq!(events.take(), ["pricing: fallback inner_error fresh"]);
    assert_eq!(call(&mut svc, req(1, Reply::Ok)).await.unwrap(), "item 1");
    assert!(events.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn metrics_only_reports_would_trip_with_its_window_and_never_rejects() {
    let events = Collect::default();
    let policy = Policy::builder()
        .name("search")
        .circuit_breaker(breaker(4, 2))
        .listener(events.listener())
        .build()
        .unwrap();
    policy.circuit_breaker().unwrap().metrics_only();
    let mut svc = policy.layer(dependency());
    for _ in 0..3 {
        assert!(call(&mut svc, req(1, Reply::Fail)).await.is_err());
    }
    let transitions: Vec<_> = events
        .take()
        .into_iter()
        .filter(|e| e.contains("->"))
        .collect();
    assert_eq!(
        transitions,
        [
            "search: Closed -> MetricsOnly (Operator, calls 0, failures 0, would_trip false)",
            "search: MetricsOnly -> Open (FailureRate, calls 2, failures 2, would_trip true)",
        ]
    );
    assert_eq!(
        policy.circuit_breaker().unwrap().state(),
        State::MetricsOnly
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_and_forced_open_rejections_are_events() {
    let events = Collect::default();
    let policy = Policy::builder()
        .name("probe")
        .circuit_breaker(breaker(2, 2))
        .listener(events.listener())
        .build()
        .unwrap();
    let breaker = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(dependency());
    for _ in 0..2 {
        assert!(call(&mut svc, req(1, Reply::Fail)).await.is_err());
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    let probe = svc.ready().await.unwrap().call(req(1, Reply::Hang));
    assert!(call(&mut svc, req(1, Reply::Ok)).await.is_err());
    drop(probe);
    breaker.force_open();
    assert!(call(&mut svc, req(1, Reply::Ok)).await.is_err());
    let decisions: Vec<_> = events
        .take()
        .into_iter()
        .filter(|e| !e.contains(": call "))
        .collect();
    assert_eq!(
        decisions,
        [
            "probe: Closed -> Open (FailureRate, calls 2, failures 2, would_trip false)",
            "probe: Open -> HalfOpen (OpenDurationElapsed, calls 0, failures 0, would_trip false)",
            "probe: rejected Circuit(HalfOpenFull)",
            "probe: HalfOpen -> ForcedOpen (Operator, calls 0, failures 0, would_trip false)",
            "probe: rejected Circuit(ForcedOpen)",
        ]
    );
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_listener_leaks_no_permit_and_no_probe_slot() {
    struct Bad;
    impl Listener for Bad {
        fn on_event(&self, _: &Event<'_>) {
            panic!("listener bug");
        }
        fn bind(&self, _: &str) -> Option<Arc<dyn Listener>> {
            panic!("bind bug");
        }
    }
    let policy = Policy::builder()
        .name("fragile")
        .timeout(Duration::from_millis(100))
        .bulkhead(bulkhead(2))
        .circuit_breaker(breaker(2, 2))
        .fallback(cache())
        .listener(Bad)
        .listener(|_: &Event<'_>| panic!("another listener bug"))
        .build()
        .unwrap();
    let breaker = policy.circuit_breaker().unwrap();
    let bulkhead = policy.bulkhead().unwrap();
    let mut svc = policy.layer(dependency());

    assert_eq!(call(&mut svc, req(1, Reply::Ok)).await.unwrap(), "item 1");
    assert!(call(&mut svc, req(UNCACHED, Reply::Slow)).await.is_err()); // timeout: trips
    assert!(call(&mut svc, req(UNCACHED, Reply::Fail)).await.is_err()); // rejected
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(call(&mut svc, req(1, Reply::Ok)).await.unwrap(), "item 1"); // stale
    assert_eq!(bulkhead.available(), 2);

    // Half-open: the one probe slot is taken by a call that is then dropped.
    tokio::time::advance(Duration::from_secs(10)).await;
    let probe = svc.ready().await.unwrap().call(req(UNCACHED, Reply::Hang));
    assert_eq!(breaker.snapshot().probes_in_flight, 1);
    assert_eq!(bulkhead.in_flight(), 1);
    assert!(call(&mut svc, req(UNCACHED, Reply::Ok)).await.is_err()); // half-open full
    drop(probe);
    assert_eq!(
        breaker.snapshot().probes_in_flight,
        0,
        "probe slot given back"
    );
    assert_eq!(bulkhead.available(), 2, "every permit given back");

    // And the breaker still works: a good probe closes it.
    assert_eq!(call(&mut svc, req(2, Reply::Ok)).await.unwrap(), "item 2");
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(bulkhead.available(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_registry_lists_every_breaker_and_bulkhead_with_state_and_figures() {
    let registry = Registry::new();
    let inventory = full_policy("inventory", 10, |_: &Event<'_>| {});
    let pricing = Policy::builder()
        .name("pricing")
        .circuit_breaker(breaker(2, 2))
        .build()
        .unwrap();
    registry.register(&inventory).register(&pricing);
    registry.register_stale_cache("inventory", inventory.fallback().unwrap());

    let mut inv = inventory.layer(dependency());
    assert!(call(&mut inv, req(1, Reply::Ok)).await.is_ok());
    assert!(call(&mut inv, req(UNCACHED, Reply::Fail)).await.is_err());
    let _held = inv.ready().await.unwrap().call(req(UNCACHED, Reply::Hang));
    let mut pri = pricing.layer(dependency());
    for _ in 0..2 {
        assert!(call(&mut pri, req(1, Reply::Fail)).await.is_err());
    }
    assert!(call(&mut pri, req(1, Reply::Ok)).await.is_err()); // rejected

    let report = registry.snapshot();
    let breakers: Vec<_> = report
        .circuit_breakers
        .iter()
        .map(|b| (b.name.as_str(), b.state, b.calls, b.failures, b.rejected))
        .collect();
    assert_eq!(
        breakers,
        [
            ("inventory", State::Closed, 2, 1, 0),
            ("pricing", State::Open, 0, 0, 1),
        ]
    );
    assert_eq!(report.circuit_breakers[0].failure_rate, 0.5);
    assert_eq!(report.circuit_breakers[0].retry_after, None);
    assert_eq!(
        report.circuit_breakers[1].retry_after,
        Some(Duration::from_secs(10))
    );
    let bulkheads: Vec<_> = report
        .bulkheads
        .iter()
        .map(|b| (b.name.as_str(), b.max_concurrent, b.in_flight, b.available))
        .collect();
    assert_eq!(bulkheads, [("inventory", 1, 1, 0)]);
    assert_eq!(report.stale_caches.len(), 1);
    assert_eq!(report.stale_caches[0].stats.entries, 1);

    // Operate through the registry; re-registering a name replaces it; removing forgets it.
    registry.circuit_breaker("inventory").unwrap().force_open();
    assert_eq!(
        inventory.circuit_breaker().unwrap().state(),
        State::ForcedOpen
    );
    let rebuilt = Policy::builder()
        .name("pricing")
        .circuit_breaker(breaker(2, 2))
        .build()
        .unwrap();
    registry.register(&rebuilt);
    assert_eq!(registry.circuit_breakers().len(), 2);
    assert_eq!(
        registry.circuit_breaker("pricing").unwrap().state(),
        State::Closed
    );
    registry.remove("inventory");
    assert_eq!(registry.snapshot().circuit_breakers.len(), 1);
    assert!(registry.snapshot().bulkheads.is_empty());
    assert!(registry.snapshot().stale_caches.is_empty());

    // Rebuilt without a part it had: the old part is gone, not left for an operator to act on.
    let with_both = Policy::builder()
        .name("orders")
        .bulkhead(BulkheadConfig::default())
        .circuit_breaker(breaker(2, 2))
        .build()
        .unwrap();
    registry.register(&with_both);
    let breaker_only = Policy::builder()
        .name("orders")
        .circuit_breaker(breaker(2, 2))
        .build()
        .unwrap();
    registry.register(&breaker_only);
    assert!(registry.bulkhead("orders").is_none());
    let bulkhead_only = Policy::builder()
        .name("orders")
        .bulkhead(BulkheadConfig::default())
        .build()
        .unwrap();
    registry.register(&bulkhead_only);
    assert!(registry.circuit_breaker("orders").is_none());
    assert!(registry.bulkhead("orders").is_some());
}

#[cfg(feature = "serde")]
#[tokio::test(start_paused = true)]
async fn the_registry_snapshot_serializes_to_the_documented_json() {
    let registry = Registry::new();
    let inventory = full_policy("inventory", 10, |_: &Event<'_>| {});
    let pricing = Policy::builder()
        .name("pricing")
        .circuit_breaker(breaker(2, 2))
        .build()
        .unwrap();
    registry.register(&inventory).register(&pricing);
    registry.register_stale_cache("inventory", inventory.fallback().unwrap());
    let mut inv = inventory.layer(dependency());
    assert!(call(&mut inv, req(1, Reply::Ok)).await.is_ok());
    let mut pri = pricing.layer(dependency());
    for _ in 0..2 {
        assert!(call(&mut pri, req(1, Reply::Fail)).await.is_err());
    }
    tokio::time::advance(Duration::from_millis(2500)).await;

    let json = serde_json::to_value(registry.snapshot()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "circuit_breakers": [
                {
                    "name": "inventory", "state": "closed", "calls": 1, "failures": 0,
                    "slow_calls": 0, "failure_rate": 0.0, "slow_call_rate": 0.0, "rejected": 0,
                    "probes_in_flight": 0, "probe_successes": 0, "probe_failures": 0,
                    "consecutive_trips": 0, "retry_after_seconds": null
                },
                {
                    "name": "pricing", "state": "open", "calls": 0, "failures": 0,
                    "slow_calls": 0, "failure_rate": 0.0, "slow_call_rate": 0.0, "rejected": 0,
                    "probes_in_flight": 0, "probe_successes": 0, "probe_failures": 0,
                    "consecutive_trips": 1, "retry_after_seconds": 7.5
                }
            ],
            "bulkheads": [
                {
                    "name": "inventory", "max_concurrent": 1, "in_flight": 0, "available": 1,
                    "queued": 0, "max_queued": 0
                }
            ],
            "stale_caches": [
                {
                    "name": "inventory", "entries": 1, "bytes": 6, "stored": 1, "served": 0,
                    "too_large": 0
                }
            ]
        })
    );
}

#[cfg(feature = "metrics")]
mod metrics_series {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use palisade::circuit_breaker::{Cause, Transition, WindowCounts};
    use palisade::observe::MetricsListener;

    use super::*;

    /// Every series of a snapshot, as `name{label=value,...}` (labels sorted).
    #[derive(Debug, Default)]
    struct Series {
        counters: BTreeMap<String, u64>,
        gauges: BTreeMap<String, f64>,
        histograms: BTreeMap<String, Vec<f64>>,
    }

    impl Series {
        /// Reads (and, as the debugging recorder does, resets) every series; counters and
        /// histograms add up to what earlier reads saw.
        fn read(&mut self, snapshotter: &Snapshotter) {
            for (key, _, _, value) in snapshotter.snapshot().into_vec() {
                let key = key.key();
                let mut labels: Vec<_> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                let id = format!("{}{{{}}}", key.name(), labels.join(","));
                match value {
                    DebugValue::Counter(n) => *self.counters.entry(id).or_default() += n,
                    DebugValue::Gauge(g) => {
                        self.gauges.insert(id, g.into_inner());
                    }
                    DebugValue::Histogram(h) => self
                        .histograms
                        .entry(id)
                        .or_default()
                        .extend(h.into_iter().map(|v| v.into_inner())),
                }
            }
        }
    }

    fn secs(ms: u64) -> f64 {
        Duration::from_millis(ms).as_secs_f64()
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_series_moves_as_documented_for_a_scripted_sequence() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let policy = full_policy("inventory", 6, MetricsListener::new());
        let mut svc = policy.layer(dependency());

        // N = 3 successes, each 10 ms, each cached under its own key.
        for key in 1..=3 {
            assert!(call(&mut svc, req(key, Reply::Ok)).await.is_ok());
        }
        // A timeout (a failure, 100 ms; key 9 is never cached, so no fallback).
        assert!(call(&mut svc, req(UNCACHED, Reply::Slow)).await.is_err());
        // Bulkhead full: a rejection, recorded by the breaker as ignored.
        let hanging = svc.ready().await.unwrap().call(req(UNCACHED, Reply::Hang));
        assert!(call(&mut svc, req(UNCACHED, Reply::Ok)).await.is_err());
        drop(hanging);
        // M = 2 failures (20 ms each) 5 s later trip the breaker (3 of 6); the fallback serves
        // key 1's response, stored at 10 ms, stale.
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..2 {
            assert_eq!(call(&mut svc, req(1, Reply::Fail)).await.unwrap(), "item 1");
        }
        assert_eq!(policy.circuit_breaker().unwrap().state(), State::Open);
        // K = 3 rejections while open (uncached: no fallback).
        for _ in 0..3 {
            assert!(call(&mut svc, req(UNCACHED, Reply::Ok)).await.is_err());
        }

        let mut s = Series::default();
        s.read(&snapshotter);
        let counters: Vec<_> = s.counters.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            counters,
            [
                ("palisade_calls_total{name=inventory,outcome=failure}", 3),
                ("palisade_calls_total{name=inventory,outcome=ignored}", 1),
                ("palisade_calls_total{name=inventory,outcome=success}", 3),
                (
                    "palisade_circuit_transitions_total{from=closed,name=inventory,to=open}",
                    1
                ),
                (
                    "palisade_fallbacks_total{kind=inner_error,name=inventory}",
                    2
                ),
                (
                    "palisade_rejections_total{name=inventory,reason=bulkhead_full}",
                    1
                ),
                ("palisade_rejections_total{name=inventory,reason=open}", 3),
                ("palisade_timeouts_total{name=inventory}", 1),
            ]
        );
        let gauges: Vec<_> = s.gauges.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            gauges,
            [
                ("palisade_bulkhead_in_flight{name=inventory}", 0.0),
                ("palisade_circuit_state{name=inventory}", 1.0),
                ("palisade_stale_cache_entries{name=inventory}", 3.0),
            ]
        );
        let histograms: Vec<_> = s.histograms.keys().map(String::as_str).collect();
        assert_eq!(
            histograms,
            [
                "palisade_call_duration_seconds{name=inventory,outcome=failure}",
                "palisade_call_duration_seconds{name=inventory,outcome=success}",
                "palisade_fallback_stale_age_seconds{name=inventory}",
            ]
        );
        let h = |k: &str| s.histograms[k].clone();
        assert_close(
            &h("palisade_call_duration_seconds{name=inventory,outcome=success}"),
            &[secs(10), secs(10), secs(10)],
        );
        assert_close(
            &h("palisade_call_duration_seconds{name=inventory,outcome=failure}"),
            &[secs(100), secs(20), secs(20)],
        );
        // The bulkhead's rejection was ready on its first poll: counted, not timed.
        // Stored at 10 ms; served at 5 s + 150 ms and 5 s + 170 ms.
        assert_close(
            &h("palisade_fallback_stale_age_seconds{name=inventory}"),
            &[secs(5140), secs(5160)],
        );
    }

    /// Two breakers of one name, sharing listeners (a global breaker and a Policy's, or a
    /// Policy rebuilt): generations are counted per breaker, so the second one's transitions
    /// are shown, not taken for late ones of the first.
    #[tokio::test(start_paused = true)]
    async fn two_breakers_of_one_name_both_move_the_state_gauge() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let listeners = palisade::events::Listeners::new("shared").with(MetricsListener::new());
        let build = || {
            palisade::circuit_breaker::CircuitBreakerLayer::builder()
                .name("shared")
                .listeners(listeners.clone())
                .build()
                .unwrap()
                .handle()
        };
        let (first, second) = (build(), build());
        let mut s = Series::default();
        let mut state = || {
            s.read(&snapshotter);
            s.gauges["palisade_circuit_state{name=shared}"]
        };
        first.force_open();
        first.reset();
        first.force_open();
        assert_eq!(state(), 3.0);
        tokio::time::advance(Duration::from_secs(2)).await;
        second.disable(); // its generation 1, behind the first's 3
        assert_eq!(state(), 4.0, "the second breaker's transition is shown");
    }

    #[tokio::test(start_paused = true)]
    async fn the_state_gauge_follows_every_state_and_override() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let policy = Policy::builder()
            .name("probe")
            .circuit_breaker(breaker(2, 2))
            .listener(MetricsListener::new())
            .build()
            .unwrap();
        let breaker = policy.circuit_breaker().unwrap();
        let mut svc = policy.layer(dependency());
        let mut s = Series::default();
        let state = |s: &mut Series| {
            s.read(&snapshotter);
            s.gauges["palisade_circuit_state{name=probe}"]
        };

        assert!(call(&mut svc, req(1, Reply::Ok)).await.is_ok());
        assert_eq!(state(&mut s), 0.0, "closed, shown from the first call");
        assert!(call(&mut svc, req(1, Reply::Fail)).await.is_err()); // 1 of 2: trips
        assert_eq!(state(&mut s), 1.0, "open");
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = svc.ready().await.unwrap().call(req(1, Reply::Hang));
        assert_eq!(state(&mut s), 2.0, "half-open");
        assert!(call(&mut svc, req(1, Reply::Ok)).await.is_err()); // half-open full
        drop(probe);
        breaker.force_open();
        assert_eq!(state(&mut s), 3.0, "forced open");
        assert!(call(&mut svc, req(1, Reply::Ok)).await.is_err()); // forced open
        breaker.disable();
        assert_eq!(state(&mut s), 4.0, "disabled");
        breaker.metrics_only();
        for _ in 0..2 {
            assert!(call(&mut svc, req(1, Reply::Fail)).await.is_err());
        }
        assert_eq!(state(&mut s), 5.0, "metrics-only, also after a would-trip");
        assert_eq!(
            s.counters["palisade_circuit_would_trips_total{name=probe}"],
            1
        );
        breaker.reset();
        assert_eq!(state(&mut s), 0.0, "closed again");

        let rejections: Vec<_> = s
            .counters
            .iter()
            .filter(|(k, _)| k.starts_with("palisade_rejections_total"))
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            rejections,
            [
                (
                    "palisade_rejections_total{name=probe,reason=forced_open}",
                    1
                ),
                (
                    "palisade_rejections_total{name=probe,reason=half_open_full}",
                    1
                ),
            ]
        );
        let transitions: Vec<_> = s
            .counters
            .iter()
            .filter(|(k, _)| k.starts_with("palisade_circuit_transitions_total"))
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            transitions,
            [
                (
                    "palisade_circuit_transitions_total{from=closed,name=probe,to=open}",
                    1
                ),
                (
                    "palisade_circuit_transitions_total{from=disabled,name=probe,to=metrics_only}",
                    1
                ),
                (
                    "palisade_circuit_transitions_total{from=forced_open,name=probe,to=disabled}",
                    1
                ),
                (
                    "palisade_circuit_transitions_total{from=half_open,name=probe,to=forced_open}",
                    1
                ),
                (
                    "palisade_circuit_transitions_total{from=metrics_only,name=probe,to=closed}",
                    1
                ),
                (
                    "palisade_circuit_transitions_total{from=open,name=probe,to=half_open}",
                    1
                ),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_policy_without_a_breaker_has_no_call_series() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let policy = Policy::builder()
            .name("plain")
            .bulkhead(bulkhead(4))
            .listener(MetricsListener::new())
            .build()
            .unwrap();
        let mut svc = policy.layer(dependency());
        assert!(call(&mut svc, req(1, Reply::Ok)).await.is_ok());
        let mut s = Series::default();
        s.read(&snapshotter);
        assert!(s.counters.is_empty(), "{s:?}");
        assert!(s.histograms.is_empty(), "{s:?}");
        assert_eq!(
            s.gauges.keys().collect::<Vec<_>>(),
            ["palisade_bulkhead_in_flight{name=plain}"]
        );
    }

    /// A recorder that counts registrations, in front of a debugging recorder.
    struct CountingRecorder {
        inner: DebuggingRecorder,
        registrations: AtomicUsize,
    }

    impl Recorder for CountingRecorder {
        fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
            self.inner.describe_counter(key, unit, description)
        }
        fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
            self.inner.describe_gauge(key, unit, description)
        }
        fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
            self.inner.describe_histogram(key, unit, description)
        }
        fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
            self.registrations.fetch_add(1, Ordering::SeqCst);
            self.inner.register_counter(key, metadata)
        }
        fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
            self.registrations.fetch_add(1, Ordering::SeqCst);
            self.inner.register_gauge(key, metadata)
        }
        fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
            self.registrations.fetch_add(1, Ordering::SeqCst);
            self.inner.register_histogram(key, metadata)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn handles_are_registered_once_per_policy_not_per_call() {
        let recorder = CountingRecorder {
            inner: DebuggingRecorder::new(),
            registrations: AtomicUsize::new(0),
        };
        let snapshotter = recorder.inner.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let policy = full_policy("inventory", 10, MetricsListener::new());
        let mut svc = policy.layer(dependency());
        assert!(call(&mut svc, req(1, Reply::Ok)).await.is_ok());
        // calls_total, call_duration_seconds, circuit_state, bulkhead_in_flight,
        // stale_cache_entries.
        assert_eq!(recorder.registrations.load(Ordering::SeqCst), 5);
        for _ in 0..100 {
            assert!(call(&mut svc, req(1, Reply::Ok)).await.is_ok());
        }
        assert_eq!(recorder.registrations.load(Ordering::SeqCst), 5);
        let mut s = Series::default();
        s.read(&snapshotter);
        assert_eq!(
            s.counters["palisade_calls_total{name=inventory,outcome=success}"],
            101
        );
    }

    /// Transitions reach listeners after the breaker's lock is released, so a trip can be told
    /// after the operator's `force_open` that followed it: the gauge keeps the later state.
    #[test]
    fn a_transition_told_late_does_not_undo_a_later_one() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let listener = MetricsListener::new().bind("race").unwrap();
        let tell = |generation: u32, from: State, to: State| {
            let transition = Transition {
                generation,
                from,
                to,
                cause: Cause::Operator,
                window: WindowCounts::default(),
                open_for: None,
                would_trip: false,
                at: Duration::ZERO,
            };
            listener.on_event(&Event::StateTransition {
                name: "race",
                transition: &transition,
            });
        };
        let mut s = Series::default();
        let state = |s: &mut Series| {
            s.read(&snapshotter);
            s.gauges["palisade_circuit_state{name=race}"]
        };

        // Generations are 31 bits and wrap: 0 comes after 2^31 - 1.
        let last = (1 << 31) - 1;
        tell(last - 1, State::Open, State::ForcedOpen);
        tell(last - 2, State::Closed, State::Open); // the trip, told late
        assert_eq!(state(&mut s), 3.0, "forced open");
        tell(0, State::Open, State::Disabled);
        tell(last, State::ForcedOpen, State::Closed); // told late, across the wrap
        assert_eq!(state(&mut s), 4.0, "disabled");
        tell(1, State::Disabled, State::Closed);
        assert_eq!(state(&mut s), 0.0, "closed, later again");
        // Every transition is counted, in order or not.
        let transitions: u64 = s
            .counters
            .iter()
            .filter(|(k, _)| k.starts_with("palisade_circuit_transitions_total"))
            .map(|(_, v)| *v)
            .sum();
        assert_eq!(transitions, 5);
    }

    /// The same race through a breaker: the tripping thread is held inside its listeners while
    /// the operator forces the breaker open, then told to go on.
    #[test]
    fn a_trip_told_after_a_later_force_open_leaves_the_gauge_forced_open() {
        use std::sync::mpsc;

        use palisade::circuit_breaker::CircuitBreakerLayer;
        use palisade::events::Listeners;

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let (tripping, tripped) = mpsc::channel::<()>();
        let (go_on, wait) = mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let hold = move |event: &Event<'_>| {
            if let Event::StateTransition { transition, .. } = event
                && transition.to == State::Open
            {
                tripping.send(()).unwrap();
                wait.lock().unwrap().recv().unwrap();
            }
        };
        let listeners = Listeners::new("race")
            .with(hold)
            .with(MetricsListener::new());
        let breaker = CircuitBreakerLayer::builder()
            .name("race")
            .consecutive_failures(1)
            .listeners(listeners)
            .build()
            .unwrap()
            .handle();

        std::thread::scope(|scope| {
            let failing = scope.spawn(|| {
                let _local = metrics::set_default_local_recorder(&recorder);
                let fails = async { Err::<(), _>(std::io::Error::other("down")) };
                futures::executor::block_on(breaker.call(fails)).unwrap_err();
            });
            tripped.recv().unwrap(); // the trip is made, and not yet told to the metrics
            breaker.force_open();
            go_on.send(()).unwrap();
            failing.join().unwrap();
        });

        assert_eq!(breaker.state(), State::ForcedOpen);
        let mut s = Series::default();
        s.read(&snapshotter);
        assert_eq!(s.gauges["palisade_circuit_state{name=race}"], 3.0);
    }

    /// Permit events are built after the permit count changes, so two releases can be told
    /// with each other's counts: the gauge counts acquires and releases instead.
    #[test]
    fn the_in_flight_gauge_is_zero_after_releases_told_out_of_order() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let listener = MetricsListener::new().bind("pool").unwrap();
        let name = "pool";
        for event in [
            Event::BulkheadAcquired { name, in_flight: 1 },
            Event::BulkheadAcquired { name, in_flight: 2 },
            Event::BulkheadReleased { name, in_flight: 0 },
            Event::BulkheadReleased { name, in_flight: 1 },
        ] {
            listener.on_event(&event);
        }
        let mut s = Series::default();
        s.read(&snapshotter);
        assert_eq!(s.gauges["palisade_bulkhead_in_flight{name=pool}"], 0.0);
    }

    /// Many calls on many threads through a bulkhead with a queue, some of them dropped while
    /// they wait or run, and rounds of calls that all end at once: at rest the gauge is zero,
    /// as the bulkhead is.
    #[test]
    fn the_in_flight_gauge_is_zero_at_rest_after_concurrent_calls() {
        use futures::FutureExt;
        use tokio::sync::Barrier;

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let mut config = bulkhead(4);
        config.max_wait = Some(Duration::from_secs(3600));
        config.max_queued = Some(64);
        // A listener before the metrics one widens the gap between a permit event's count
        // and the metrics listener hearing it (a `tracing` listener writing a line, say).
        let slow = |event: &Event<'_>| {
            if let Event::BulkheadReleased { .. } = event {
                std::thread::yield_now();
            }
        };
        let policy = Policy::builder()
            .name("pool")
            .bulkhead(config)
            .listener(slow)
            .listener(MetricsListener::new())
            .build()
            .unwrap();
        let bulkhead = policy.bulkhead().unwrap();
        // A call with a barrier ends when the barrier's other calls reach it.
        let svc = policy.layer(service_fn(
            |(n, end): (u32, Option<Arc<Barrier>>)| async move {
                match end {
                    Some(barrier) => {
                        barrier.wait().await;
                    }
                    None => {
                        for _ in 0..n % 4 {
                            tokio::task::yield_now().await;
                        }
                    }
                }
                Ok::<_, BoxError>(n)
            },
        ));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .unwrap();
        let mut s = Series::default();
        let mut at_rest = |what: &str| {
            assert_eq!(bulkhead.in_flight(), 0);
            s.read(&snapshotter);
            assert_eq!(
                s.gauges["palisade_bulkhead_in_flight{name=pool}"], 0.0,
                "{what}"
            );
        };
        // The gauge's handle is registered here, on the thread that has the recorder.
        rt.block_on(svc.clone().oneshot((0, None))).unwrap();
        at_rest("one call");

        rt.block_on(async {
            let tasks: Vec<_> = (0..8u32)
                .map(|task| {
                    let mut svc = svc.clone();
                    tokio::spawn(async move {
                        for n in 0..200u32 {
                            let call = svc.ready().await.unwrap().call((task + n, None));
                            if n % 5 == 0 {
                                // Polled once and dropped: cancelled while it waits or runs.
                                drop(call.now_or_never());
                            } else {
                                call.await.unwrap();
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        at_rest("queued and cancelled calls");

        for round in 0..500 {
            rt.block_on(async {
                let barrier = Arc::new(Barrier::new(4));
                let tasks: Vec<_> = (0..4u32)
                    .map(|n| tokio::spawn(svc.clone().oneshot((n, Some(barrier.clone())))))
                    .collect();
                for task in tasks {
                    task.await.unwrap().unwrap();
                }
            });
            at_rest(&format!("round {round} of calls ending at once"));
        }
    }

    /// Used through a closure (as the `events` docs show), the listener is never bound: it
    /// keeps nothing between events, and must not guess the state from a call.
    #[tokio::test(start_paused = true)]
    async fn an_unbound_listener_leaves_the_state_gauge_to_transitions() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let metrics = MetricsListener::new();
        let policy = Policy::builder()
            .name("unbound")
            .circuit_breaker(breaker(2, 2))
            .listener(move |e: &Event<'_>| metrics.on_event(e))
            .build()
            .unwrap();
        let breaker = policy.circuit_breaker().unwrap();
        let mut svc = policy.layer(dependency());
        let mut s = Series::default();
        let state = |s: &mut Series| {
            s.read(&snapshotter);
            s.gauges["palisade_circuit_state{name=unbound}"]
        };

        breaker.disable();
        assert!(call(&mut svc, req(1, Reply::Ok)).await.is_ok());
        assert_eq!(state(&mut s), 4.0, "disabled, after a call");
        breaker.metrics_only();
        assert!(call(&mut svc, req(1, Reply::Ok)).await.is_ok());
        assert_eq!(state(&mut s), 5.0, "metrics-only, after a call");
        assert_eq!(
            s.counters["palisade_calls_total{name=unbound,outcome=success}"],
            2
        );
    }
}

#[cfg(feature = "tracing")]
mod tracing_events {
    use std::collections::BTreeMap;

    use palisade::observe::TracingListener;
    use tracing::field::{Field, Visit};
    use tracing::{Level, Subscriber};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;

    #[derive(Debug, Clone)]
    struct Captured {
        target: String,
        level: Level,
        fields: BTreeMap<String, String>,
    }

    impl Captured {
        fn message(&self) -> &str {
            self.fields.get("message").map_or("", String::as_str)
        }
        fn field(&self, name: &str) -> &str {
            self.fields.get(name).map_or("<none>", String::as_str)
        }
    }

    struct Fields(BTreeMap<String, String>);

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Captured>>>);

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut fields = Fields(BTreeMap::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(Captured {
                target: event.metadata().target().to_owned(),
                level: *event.metadata().level(),
                fields: fields.0,
            });
        }
    }

    #[tokio::test(start_paused = true)]
    async fn events_go_to_the_documented_targets_and_levels_with_the_name() {
        let capture = Capture::default();
        let _default =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
        let policy = full_policy("inventory", 3, TracingListener::new());
        let mut svc = policy.layer(dependency());

        assert!(call(&mut svc, req(1, Reply::Ok)).await.is_ok());
        let hanging = svc.ready().await.unwrap().call(req(UNCACHED, Reply::Hang));
        assert!(call(&mut svc, req(UNCACHED, Reply::Ok)).await.is_err()); // bulkhead full
        drop(hanging);
        assert!(call(&mut svc, req(UNCACHED, Reply::Slow)).await.is_err()); // timeout
        assert!(call(&mut svc, req(1, Reply::Fail)).await.is_ok()); // trips; served stale
        assert!(call(&mut svc, req(1, Reply::Ok)).await.is_ok()); // rejected; served stale
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(call(&mut svc, req(2, Reply::Ok)).await.is_ok()); // half-open, then closed

        let events = capture.0.lock().unwrap().clone();
        let find = |target: &str, message: &str| -> Vec<&Captured> {
            events
                .iter()
                .filter(|e| e.target == target && e.message() == message)
                .collect()
        };
        for e in &events {
            assert_eq!(e.field("name"), "inventory", "{e:?}");
            assert!(e.target.starts_with("palisade::"), "{e:?}");
        }

        let opened = find("palisade::circuit_breaker", "circuit breaker opened");
        assert_eq!(opened.len(), 1);
        let opened = opened[0];
        assert_eq!(opened.level, Level::WARN);
        assert_eq!(
            (
                opened.field("from"),
                opened.field("to"),
                opened.field("cause"),
                opened.field("calls"),
                opened.field("failures"),
            ),
            ("closed", "open", "failure_rate", "3", "2")
        );
        assert_eq!(opened.field("open_for_ms"), "10000");

        let changed = find("palisade::circuit_breaker", "circuit breaker changed state");
        let changed: Vec<_> = changed
            .iter()
            .map(|e| (e.level, e.field("from"), e.field("to")))
            .collect();
        assert_eq!(
            changed,
            [
                (Level::INFO, "open", "half_open"),
                (Level::INFO, "half_open", "closed"),
            ]
        );

        let rejected_circuit = find("palisade::circuit_breaker", "call rejected");
        assert_eq!(rejected_circuit.len(), 1);
        assert_eq!(rejected_circuit[0].level, Level::DEBUG);
        assert_eq!(rejected_circuit[0].field("reason"), "open");
        let rejected_bulkhead = find("palisade::bulkhead", "call rejected");
        assert_eq!(rejected_bulkhead.len(), 1);
        assert_eq!(rejected_bulkhead[0].level, Level::DEBUG);
        assert_eq!(rejected_bulkhead[0].field("reason"), "bulkhead_full");

        let timed_out = find("palisade::timeout", "call timed out");
        assert_eq!(timed_out.len(), 1);
        assert_eq!(timed_out[0].level, Level::DEBUG);
        assert_eq!(timed_out[0].field("after"), "100ms");

        let served: Vec<_> = find("palisade::fallback", "fallback served")
            .iter()
            .map(|e| {
                (
                    e.level,
                    e.field("kind"),
                    e.field("served"),
                    e.field("age_ms"),
                    e.field("error"),
                )
            })
            .collect();
        assert_eq!(
            served,
            [
                (Level::DEBUG, "inner_error", "stale", "120", "down"),
                (
                    Level::DEBUG,
                    "circuit_open",
                    "stale",
                    "120",
                    "circuit breaker is open; next probe in 10s"
                ),
            ]
        );

        let recorded = find("palisade::circuit_breaker", "call recorded");
        assert!(recorded.iter().all(|e| e.level == Level::TRACE));
        let outcomes: Vec<_> = recorded.iter().map(|e| e.field("outcome")).collect();
        assert_eq!(
            outcomes,
            ["success", "ignored", "failure", "failure", "success"]
        );
        let permits = find("palisade::bulkhead", "permit taken");
        assert!(!permits.is_empty());
        assert!(permits.iter().all(|e| e.level == Level::TRACE));
        assert!(
            find("palisade::fallback", "stale cache updated")
                .iter()
                .all(|e| e.level == Level::TRACE)
        );
        // Only transitions to open are warnings.
        let warnings: Vec<_> = events
            .iter()
            .filter(|e| e.level == Level::WARN)
            .map(Captured::message)
            .collect();
        assert_eq!(warnings, ["circuit breaker opened"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_would_trip_is_a_warning() {
        let capture = Capture::default();
        let _default =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
        let policy = Policy::builder()
            .name("search")
            .circuit_breaker(breaker(2, 2))
            .listener(TracingListener::new())
            .build()
            .unwrap();
        policy.circuit_breaker().unwrap().metrics_only();
        let mut svc = policy.layer(dependency());
        for _ in 0..2 {
            assert!(call(&mut svc, req(1, Reply::Fail)).await.is_err());
        }
        let events = capture.0.lock().unwrap().clone();
        let warnings: Vec<_> = events
            .iter()
            .filter(|e| e.level == Level::WARN)
            .map(|e| (e.message(), e.field("name"), e.field("failures")))
            .collect();
        assert_eq!(
            warnings,
            [(
                "circuit breaker would have opened (metrics-only)",
                "search",
                "2"
            )]
        );
    }
}

#[test]
fn outcome_and_rejection_labels_are_the_documented_ones() {
    use palisade::circuit_breaker::RejectReason;
    use palisade::observe::label;
    assert_eq!(label::outcome(OutcomeKind::Success), "success");
    assert_eq!(label::outcome(OutcomeKind::Failure), "failure");
    assert_eq!(label::outcome(OutcomeKind::Ignored), "ignored");
    assert_eq!(
        label::rejection(Rejection::Circuit(RejectReason::Open)),
        "open"
    );
    assert_eq!(
        label::rejection(Rejection::Circuit(RejectReason::HalfOpenFull)),
        "half_open_full"
    );
    assert_eq!(
        label::rejection(Rejection::Circuit(RejectReason::ForcedOpen)),
        "forced_open"
    );
    assert_eq!(label::rejection(Rejection::BulkheadFull), "bulkhead_full");
    assert_eq!(label::state(State::HalfOpen), "half_open");
    assert_eq!(FailureKind::CircuitOpen.as_str(), "circuit_open");
}

/// What the registry drops (a breaker removed, or replaced by a rebuilt policy's) is dropped
/// after its lock is released: a listener whose `Drop` reads the registry does not deadlock.
#[test]
fn what_the_registry_lets_go_is_dropped_outside_its_lock() {
    struct ReadsOnDrop(Registry);
    impl Listener for ReadsOnDrop {
        fn on_event(&self, _: &Event<'_>) {}
    }
    impl Drop for ReadsOnDrop {
        fn drop(&mut self) {
            let _ = self.0.snapshot();
        }
    }

    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let registry = Registry::new();
        let build = || {
            Policy::builder()
                .name("inventory")
                .circuit_breaker(CircuitBreakerConfig::default())
                .listener(ReadsOnDrop(registry.clone()))
                .build()
                .unwrap()
        };
        registry.register(&build()); // the policy is dropped: the registry holds its breaker
        registry.register(&build()); // replaced: the first breaker and its listener go
        registry.remove("inventory"); // removed: the second goes
        done.send(registry.snapshot().circuit_breakers.len())
            .unwrap();
    });
    let left = finished
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the registry deadlocked on a listener's drop");
    assert_eq!(left, 0);
}
