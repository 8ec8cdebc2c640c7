//! The full Policy and each of its parts, per call on the success path, against a bare
//! `service_fn`, tower's `Timeout` and `ConcurrencyLimit`, and tower-resilience's equivalents,
//! in one run.
//!
//! `cargo bench --bench policy` prints a table of medians and ratios at the end.
//!
//! tower-resilience's four layers compose without adapters: each wraps the inner error in its
//! own enum (`FallbackError<CircuitBreakerError<BulkheadServiceError<TimeLimiterError<_>>>>`),
//! and its fallback is told that nested error type.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use palisade::bulkhead::{BulkheadConfig, BulkheadLayer};
use palisade::circuit_breaker::CircuitBreakerConfig;
use palisade::fallback::{self, Failure, FallbackLayer};
use palisade::policy::Policy;
use palisade::timeout::TimeoutLayer;
use tower::{Layer, ServiceBuilder, service_fn};

use tower_resilience::bulkhead::{BulkheadLayer as TrBulkheadLayer, BulkheadServiceError};
use tower_resilience::circuitbreaker::{
    CircuitBreakerError, CircuitBreakerLayer as TrCircuitBreakerLayer,
};
use tower_resilience::fallback::FallbackLayer as TrFallbackLayer;
use tower_resilience::timelimiter::{TimeLimiterError, TimeLimiterLayer};

#[global_allocator]
static ALLOC: support::Counting = support::Counting;

const ONE: &str = "policy/1_task";
const TWO: &str = "policy/2_tasks";

/// The error reaching tower-resilience's fallback in its four-layer stack.
type TrStackError = CircuitBreakerError<BulkheadServiceError<TimeLimiterError<Infallible>>>;

fn main() {
    let mut c = support::configure();
    let mut allocs = Vec::new();
    let bare = service_fn(|()| async { Ok::<_, Infallible>(()) });
    let names = [
        "bare",
        "tower_timeout",
        "tower_concurrency_limit",
        "palisade_bulkhead",
        "palisade_timeout",
        "palisade_fallback",
        "palisade_fallback_fn",
        "palisade_policy",
        "palisade_policy_cloned",
        "tower_resilience_bulkhead",
        "tower_resilience_time_limiter",
        "tower_resilience_fallback",
        "tower_resilience_stack",
        "tower_resilience_stack_cloned",
    ];
    let groups = (ONE, TWO);

    support::case(&mut c, groups, &mut allocs, "bare", bare, ());
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "tower_timeout",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(bare),
        (),
    );
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "tower_concurrency_limit",
        tower::limit::ConcurrencyLimitLayer::new(100).layer(bare),
        (),
    );

    // palisade, each part alone.
    let bulkhead = BulkheadLayer::builder()
        .max_concurrent(100)
        .build()
        .unwrap();
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "palisade_bulkhead",
        bulkhead.layer(bare),
        (),
    );
    let timeout = TimeoutLayer::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "palisade_timeout",
        timeout.layer(bare),
        (),
    );
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "palisade_fallback",
        FallbackLayer::new(fallback::value(())).layer(bare),
        (),
    );

    fn recover(_: Failure<()>) -> Result<(), Failure<()>> {
        Ok(())
    }
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "palisade_fallback_fn",
        FallbackLayer::new(fallback::from_fn(recover as fn(Failure<()>) -> _)).layer(bare),
        (),
    );

    // palisade, the whole Policy: fallback -> circuit breaker -> bulkhead -> timeout.
    let mut bulkhead_config = BulkheadConfig::default();
    bulkhead_config.max_concurrent = 100;
    let policy = Policy::builder()
        .timeout(Duration::from_secs(1))
        .bulkhead(bulkhead_config)
        .circuit_breaker(CircuitBreakerConfig::default())
        .fallback(fallback::value(()))
        .build()
        .unwrap();
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "palisade_policy",
        policy.layer(bare),
        (),
    );
    // Cloned for each call, as a handler that clones its client per request calls it.
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "palisade_policy_cloned",
        support::ClonePerCall(policy.layer(bare)),
        (),
    );

    // tower-resilience, each part alone.
    let tr_bulkhead = TrBulkheadLayer::builder()
        .max_concurrent_calls(100)
        .reject_when_full()
        .build()
        .unwrap();
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "tower_resilience_bulkhead",
        tr_bulkhead.layer(bare),
        (),
    );
    let tr_time_limiter = TimeLimiterLayer::builder()
        .timeout_duration(Duration::from_secs(1))
        .build();
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "tower_resilience_time_limiter",
        tr_time_limiter.layer(bare),
        (),
    );
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "tower_resilience_fallback",
        TrFallbackLayer::<(), (), Infallible>::value(()).layer(bare),
        (),
    );

    // tower-resilience, the same four layers in the same order, outermost first.
    let tr_stack = ServiceBuilder::new()
        .layer(TrFallbackLayer::<(), (), TrStackError>::value(()))
        .layer(TrCircuitBreakerLayer::builder().build().unwrap())
        .layer(
            TrBulkheadLayer::builder()
                .max_concurrent_calls(100)
                .reject_when_full()
                .build()
                .unwrap(),
        )
        .layer(
            TimeLimiterLayer::builder()
                .timeout_duration(Duration::from_secs(1))
                .build(),
        )
        .service(bare);
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "tower_resilience_stack",
        tr_stack.clone(),
        (),
    );
    support::case(
        &mut c,
        groups,
        &mut allocs,
        "tower_resilience_stack_cloned",
        support::ClonePerCall(tr_stack.clone()),
        (),
    );

    c.final_summary();
    support::report(
        ONE,
        TWO,
        &names,
        &[
            "bare",
            "tower_timeout",
            "tower_concurrency_limit",
            "tower_resilience_stack",
        ],
        &allocs,
    );

    // The "no dearer than tower's" targets again, each case in turn with its tower
    // counterpart, so that the VM's drift over a run cannot decide them
    // (`cargo bench --bench policy -- zzz` runs only this part).
    let rt = support::runtime1();
    support::interleaved(
        support::runner(
            &rt,
            "tower_timeout",
            tower::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(bare),
            (),
        ),
        vec![support::runner(
            &rt,
            "palisade_timeout",
            timeout.layer(bare),
            (),
        )],
        41,
        50_000,
    );
    support::interleaved(
        support::runner(
            &rt,
            "tower_concurrency_limit",
            tower::limit::ConcurrencyLimitLayer::new(100).layer(bare),
            (),
        ),
        vec![support::runner(
            &rt,
            "palisade_bulkhead",
            bulkhead.layer(bare),
            (),
        )],
        41,
        50_000,
    );
    // The 1/10 target, in turn with tower-resilience's stack.
    support::interleaved(
        support::runner(&rt, "tower_resilience_stack", tr_stack, ()),
        vec![support::runner(
            &rt,
            "palisade_policy",
            policy.layer(bare),
            (),
        )],
        41,
        10_000,
    );
}
