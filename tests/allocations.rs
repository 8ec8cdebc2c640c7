//! Allocations per call, counted by this test binary's global allocator: palisade's closed
//! path allocates nothing, and neither does a rejection with typed errors. The default
//! rejection allocates exactly once (the boxed `CircuitOpen` a `BoxError` needs). Cloning a
//! service per call allocates nothing either.

use std::convert::Infallible;
use std::time::Duration;

use palisade::bulkhead::{BulkheadConfig, BulkheadLayer};
use palisade::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow};
use palisade::policy::Policy;
use palisade::timeout::TimeoutLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

#[path = "../benches/support/counting.rs"]
mod counting;

use counting::{Counting, allocs};

#[global_allocator]
static ALLOC: Counting = Counting;

const CALLS: u64 = 100;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Allocations per call over `CALLS` calls, after one warm-up call; `ok` says whether each
/// call must succeed (or be rejected).
fn per_call<S>(mut svc: S, ok: bool) -> u64
where
    S: Service<(), Response = ()>,
    S::Error: std::fmt::Debug,
{
    let rt = runtime();
    rt.block_on(async {
        let _ = svc.ready().await.unwrap().call(()).await;
        let before = allocs();
        for _ in 0..CALLS {
            let result = svc.ready().await.unwrap().call(()).await;
            assert_eq!(result.is_ok(), ok, "{result:?}");
        }
        let allocs = allocs() - before;
        assert_eq!(allocs % CALLS, 0, "{allocs} allocations in {CALLS} calls");
        allocs / CALLS
    })
}

/// Allocations per call over `CALLS` successful calls, each through a clone of `svc` made
/// for it and dropped after it (as handlers that clone a client per request do).
fn per_cloned_call<S>(svc: S) -> u64
where
    S: Service<(), Response = ()> + Clone,
    S::Error: std::fmt::Debug,
{
    let rt = runtime();
    rt.block_on(async {
        svc.clone().oneshot(()).await.unwrap();
        let before = allocs();
        for _ in 0..CALLS {
            svc.clone().oneshot(()).await.unwrap();
        }
        let allocs = allocs() - before;
        assert_eq!(allocs % CALLS, 0, "{allocs} allocations in {CALLS} calls");
        allocs / CALLS
    })
}

fn bare() -> impl Service<(), Response = (), Error = Infallible, Future: Send> + Clone {
    service_fn(|()| async { Ok::<_, Infallible>(()) })
}

fn tripped() -> CircuitBreakerLayer {
    let layer = CircuitBreakerLayer::builder()
        .window(SlidingWindow::Count(1))
        .minimum_calls(1)
        .build()
        .unwrap();
    let failing = service_fn(|()| async { Err::<(), _>(std::io::Error::other("down")) });
    let rt = runtime();
    let _ = rt.block_on(layer.layer(failing).oneshot(()));
    layer
}

#[test]
fn the_closed_path_allocates_nothing() {
    let count = CircuitBreakerLayer::builder().build().unwrap();
    assert_eq!(per_call(count.layer(bare()), true), 0, "count window");
    let timed = CircuitBreakerLayer::builder()
        .window(SlidingWindow::Time(Duration::from_secs(10)))
        .slow_call_duration(Duration::from_millis(100))
        .build()
        .unwrap();
    assert_eq!(
        per_call(timed.layer(bare()), true),
        0,
        "time window, slow-call rule"
    );
    let timeout = TimeoutLayer::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(per_call(timeout.layer(bare()), true), 0, "timeout");
    let bulkhead = BulkheadLayer::new(&BulkheadConfig::default()).unwrap();
    assert_eq!(per_call(bulkhead.layer(bare()), true), 0, "bulkhead");
    let policy = Policy::builder()
        .timeout(Duration::from_secs(1))
        .bulkhead(BulkheadConfig::default())
        .circuit_breaker(CircuitBreakerConfig::default())
        .build()
        .unwrap();
    assert_eq!(per_call(policy.layer(bare()), true), 0, "Policy");
}

#[test]
fn a_service_cloned_per_call_allocates_nothing() {
    let breaker = CircuitBreakerLayer::builder().build().unwrap();
    assert_eq!(per_cloned_call(breaker.layer(bare())), 0, "breaker");
    let bulkhead = BulkheadLayer::new(&BulkheadConfig::default()).unwrap();
    assert_eq!(per_cloned_call(bulkhead.layer(bare())), 0, "bulkhead");
    let policy = Policy::builder()
        .timeout(Duration::from_secs(1))
        .bulkhead(BulkheadConfig::default())
        .circuit_breaker(CircuitBreakerConfig::default())
        .fallback(palisade::fallback::value(()))
        .build()
        .unwrap();
    assert_eq!(per_cloned_call(policy.layer(bare())), 0, "Policy");
}

#[test]
fn a_rejection_allocates_once_boxed_and_never_typed() {
    let layer = tripped();
    assert_eq!(per_call(layer.layer(bare()), false), 1, "boxed CircuitOpen");
    assert_eq!(
        per_call(layer.typed_errors().layer(bare()), false),
        0,
        "typed"
    );
}
