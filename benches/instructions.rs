//! Instruction counts, for comparisons this noisy VM cannot make with wall-clock time.
//!
//! Runs 1 000 000 calls through one case, named on the command line, in a current-thread
//! runtime. Count the instructions with callgrind and compare two cases:
//!
//! ```text
//! cargo bench --bench instructions --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/instructions-* bulkhead
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/instructions-* tower_concurrency_limit
//! ```
//!
//! `cargo bench --bench instructions` alone runs every case once, quickly (a smoke test). The
//! `breaker_metrics` case needs `--features metrics`.

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use palisade::bulkhead::{BulkheadConfig, BulkheadLayer};
use palisade::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow};
use palisade::events::{Event, Listeners};
use palisade::policy::{Policy, PolicyLayer};
use palisade::timeout::TimeoutLayer;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_resilience::bulkhead::{BulkheadLayer as TrBulkheadLayer, BulkheadServiceError};
use tower_resilience::circuitbreaker::{
    CircuitBreakerError, CircuitBreakerLayer as TrCircuitBreakerLayer,
};
use tower_resilience::fallback::FallbackLayer as TrFallbackLayer;
use tower_resilience::timelimiter::{TimeLimiterError, TimeLimiterLayer};

/// The error reaching tower-resilience's fallback in its four-layer stack.
type TrStackError = CircuitBreakerError<BulkheadServiceError<TimeLimiterError<Infallible>>>;

const CALLS: u64 = 1_000_000;

async fn drive<S: Service<()>>(mut svc: S, calls: u64) {
    for _ in 0..calls {
        if let Ok(ready) = svc.ready().await {
            let _ = black_box(ready.call(()).await.is_ok());
        }
    }
}

/// Each call through a clone of `svc` made for it, as handlers that clone a client per request
/// do.
async fn drive_cloned<S: Service<()> + Clone>(svc: S, calls: u64) {
    for _ in 0..calls {
        let _ = black_box(svc.clone().oneshot(()).await.is_ok());
    }
}

/// Calls that fail (an open breaker's rejections).
async fn drive_rejected<S: Service<()>>(mut svc: S, calls: u64) {
    for _ in 0..calls {
        if let Ok(ready) = svc.ready().await {
            let _ = black_box(ready.call(()).await.is_err());
        }
    }
}

/// The Policy's four layers, each with its defaults, the timeout at `timeout`.
fn four_layers(timeout: Duration) -> PolicyLayer<palisade::fallback::Value<()>> {
    Policy::builder()
        .timeout(timeout)
        .bulkhead(BulkheadConfig::default())
        .circuit_breaker(CircuitBreakerConfig::default())
        .fallback(palisade::fallback::value(()))
        .build()
        .unwrap()
}

fn run(case: &str, calls: u64) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare = service_fn(|()| async { Ok::<_, Infallible>(()) });
    let second = Duration::from_secs(1);
    rt.block_on(async {
        match case {
            "bare" => drive(bare, calls).await,
            "bulkhead" => {
                let layer = BulkheadLayer::builder()
                    .max_concurrent(100)
                    .build()
                    .unwrap();
                drive(layer.layer(bare), calls).await
            }
            "tower_concurrency_limit" => {
                drive(
                    tower::limit::ConcurrencyLimitLayer::new(100).layer(bare),
                    calls,
                )
                .await
            }
            "timeout" => {
                let layer = TimeoutLayer::builder().timeout(second).build().unwrap();
                drive(layer.layer(bare), calls).await
            }
            "tower_timeout" => {
                drive(tower::timeout::TimeoutLayer::new(second).layer(bare), calls).await
            }
            "breaker_closed" => {
                let layer = CircuitBreakerLayer::builder().build().unwrap();
                drive(layer.layer(bare), calls).await
            }
            "breaker_noop_listener" => {
                let listeners = Listeners::new("inventory").with(|_: &Event<'_>| {});
                let layer = CircuitBreakerLayer::builder()
                    .listeners(listeners)
                    .build()
                    .unwrap();
                drive(layer.layer(bare), calls).await
            }
            "breaker_time_window" => {
                let layer = CircuitBreakerLayer::builder()
                    .window(SlidingWindow::Time(Duration::from_secs(10)))
                    .build()
                    .unwrap();
                drive(layer.layer(bare), calls).await
            }
            "breaker_open" => {
                let layer = CircuitBreakerLayer::builder().build().unwrap();
                layer.handle().force_open();
                drive_rejected(layer.layer(bare), calls).await
            }
            "breaker_tripped"
            | "breaker_tripped_typed"
            | "breaker_tripped_typed_current_thread" => {
                // Tripped by a failure, as in `benches/circuit_breaker.rs`. A timer is armed
                // for the end of the open state, and rejections read no clock until it fires; on
                // a current-thread runtime (this one) each rejection also reads the coarse clock,
                // in case the runtime never parks to fire the timer.
                let layer = CircuitBreakerLayer::builder()
                    .window(SlidingWindow::Count(1))
                    .minimum_calls(1)
                    .open_duration(Duration::from_secs(3600))
                    .build()
                    .unwrap();
                let failing = layer.layer(service_fn(|()| async {
                    Err::<(), _>(std::io::Error::other("down"))
                }));
                let timers = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                if case.ends_with("current_thread") {
                    let _ = failing.oneshot(()).await;
                } else {
                    let _ = timers.spawn(failing.oneshot(())).await.unwrap();
                }
                if case.starts_with("breaker_tripped_typed") {
                    drive_rejected(layer.typed_errors().layer(bare), calls).await;
                } else {
                    drive_rejected(layer.layer(bare), calls).await;
                }
                timers.shutdown_background();
            }
            "policy" => {
                let policy = Policy::builder()
                    .timeout(second)
                    .bulkhead(BulkheadConfig::default())
                    .circuit_breaker(CircuitBreakerConfig::default())
                    .build()
                    .unwrap();
                drive(policy.layer(bare), calls).await
            }
            "policy_with_fallback" => drive(four_layers(second).layer(bare), calls).await,
            "policy_after_a_wait" => {
                // The four layers, after one call that waited (as a real call does): what a
                // service pays once its thread has seen a call pend.
                let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
                let inner = service_fn(move |()| {
                    let wait = first.swap(false, std::sync::atomic::Ordering::Relaxed);
                    async move {
                        if wait {
                            tokio::task::yield_now().await;
                        }
                        Ok::<_, Infallible>(())
                    }
                });
                drive(four_layers(second).layer(inner), calls).await
            }
            "policy_cloned_per_call" => drive_cloned(four_layers(second).layer(bare), calls).await,
            "stack_by_hand" => {
                // The Policy's four layers stacked with `ServiceBuilder`: what the Policy's
                // glue (a part that may be left out) costs on top of its parts.
                let stack = ServiceBuilder::new()
                    .layer(palisade::fallback::FallbackLayer::new(
                        palisade::fallback::value(()),
                    ))
                    .layer(CircuitBreakerLayer::builder().build().unwrap())
                    .layer(BulkheadLayer::builder().build().unwrap())
                    .layer(TimeoutLayer::builder().timeout(second).build().unwrap())
                    .service(bare);
                drive(stack, calls).await
            }
            "fallback" => {
                let layer = palisade::fallback::FallbackLayer::new(palisade::fallback::value(()));
                drive(layer.layer(bare), calls).await
            }
            "tower_resilience_breaker" => {
                let layer = TrCircuitBreakerLayer::builder().build().unwrap();
                drive(layer.layer(bare), calls).await
            }
            "tower_resilience_open" => {
                // Open for an hour: 30 s (the default) can pass under callgrind.
                let svc = TrCircuitBreakerLayer::builder()
                    .wait_duration_in_open(Duration::from_secs(3600))
                    .build()
                    .unwrap()
                    .layer(bare);
                svc.force_open().await;
                drive_rejected(svc, calls).await
            }
            "tower_resilience_stack" | "tower_resilience_stack_cloned_per_call" => {
                let stack = ServiceBuilder::new()
                    .layer(TrFallbackLayer::<(), (), TrStackError>::value(()))
                    .layer(TrCircuitBreakerLayer::builder().build().unwrap())
                    .layer(
                        TrBulkheadLayer::builder()
                            .max_concurrent_calls(100)
                            .reject_when_full()
                            .build()
                            .unwrap(),
                    )
                    .layer(TimeLimiterLayer::builder().timeout_duration(second).build())
                    .service(bare);
                if case.ends_with("_cloned_per_call") {
                    drive_cloned(stack, calls).await
                } else {
                    drive(stack, calls).await
                }
            }
            "failsafe_breaker" => {
                use failsafe::futures::CircuitBreaker;
                let fs = failsafe::Config::new().build();
                drive(
                    service_fn(move |()| fs.call(async { Ok::<_, Infallible>(()) })),
                    calls,
                )
                .await
            }
            "bare_flaky" => drive(support::flaky(), calls).await,
            "breaker_closed_flaky" => {
                let layer = CircuitBreakerLayer::builder().build().unwrap();
                drive(layer.layer(support::flaky()), calls).await
            }
            "tower_resilience_breaker_flaky" => {
                let layer = TrCircuitBreakerLayer::builder().build().unwrap();
                drive(layer.layer(support::flaky()), calls).await
            }
            "recloser_breaker" => {
                let rc = recloser::AsyncRecloser::from(recloser::Recloser::custom().build());
                let svc = service_fn(move |()| rc.call(async { Ok::<_, Infallible>(()) }));
                drive(svc, calls).await
            }
            #[cfg(feature = "metrics")]
            "breaker_metrics" => {
                // A Prometheus recorder, as a service would install it (its upkeep is not run:
                // 1 000 000 samples stay in memory).
                let _ = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
                let listeners =
                    Listeners::new("inventory").with(palisade::observe::MetricsListener::new());
                let layer = CircuitBreakerLayer::builder()
                    .listeners(listeners)
                    .build()
                    .unwrap();
                drive(layer.layer(bare), calls).await
            }
            _ => return false,
        }
        true
    })
}

fn main() {
    let cases = [
        "bare",
        "bulkhead",
        "tower_concurrency_limit",
        "timeout",
        "tower_timeout",
        "breaker_closed",
        "breaker_noop_listener",
        "breaker_time_window",
        "breaker_open",
        "breaker_tripped",
        "breaker_tripped_typed",
        "breaker_tripped_typed_current_thread",
        "policy",
        "policy_with_fallback",
        "policy_after_a_wait",
        "policy_cloned_per_call",
        "stack_by_hand",
        "fallback",
        "tower_resilience_breaker",
        "tower_resilience_open",
        "tower_resilience_stack",
        "tower_resilience_stack_cloned_per_call",
        "failsafe_breaker",
        "recloser_breaker",
        "bare_flaky",
        "breaker_closed_flaky",
        "tower_resilience_breaker_flaky",
        #[cfg(feature = "metrics")]
        "breaker_metrics",
    ];
    match std::env::args().nth(1).filter(|a| !a.starts_with('-')) {
        Some(case) => assert!(run(&case, CALLS), "unknown case {case}; one of {cases:?}"),
        None => {
            for case in cases {
                assert!(run(case, 1_000));
            }
        }
    }
}
