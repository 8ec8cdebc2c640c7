//! Circuit breaker cost per call, against a bare `service_fn`, tower's `Timeout`,
//! tower-resilience's breaker, failsafe's and recloser's, in one run.
//!
//! `cargo bench --bench circuit_breaker` prints a table of medians and ratios at the end.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow};
use tower::{Layer, ServiceExt, service_fn};

#[global_allocator]
static ALLOC: support::Counting = support::Counting;

const ONE: &str = "circuit_breaker/1_task";
const TWO: &str = "circuit_breaker/2_tasks";

fn main() {
    let mut c = support::configure();
    let mut allocs = Vec::new();
    // A multi-thread runtime, as under `#[tokio::main]`: the breaker's open timer runs there.
    let tripping_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tripping_current_thread = support::runtime1();
    let bare = service_fn(|()| async { Ok::<_, Infallible>(()) });
    let names = [
        "bare",
        "tower_timeout",
        "palisade_closed_count",
        "palisade_closed_slow_rule",
        "palisade_closed_time_window",
        "palisade_open",
        "palisade_open_typed",
        "palisade_open_typed_current_thread",
        "tower_resilience_closed",
        "tower_resilience_open",
        "failsafe_closed",
        "failsafe_open",
        "recloser_closed",
        "recloser_open",
        "bare_flaky",
        "palisade_closed_flaky",
        "tower_resilience_closed_flaky",
        "failsafe_closed_flaky",
        "recloser_closed_flaky",
        "pending_bare",
        "pending_tower_timeout",
        "pending_palisade_closed_count",
        "pending_palisade_closed_slow_rule",
        "pending_palisade_timeout",
        "pending_palisade_policy",
    ];
    {
        support::case(&mut c, (ONE, TWO), &mut allocs, "bare", bare, ());
        let tower_timeout = tower::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(bare);
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "tower_timeout",
            tower_timeout.clone(),
            (),
        );
        let closed = CircuitBreakerLayer::builder().build().unwrap();
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "palisade_closed_count",
            closed.layer(bare),
            (),
        );
        let slow = CircuitBreakerLayer::builder()
            .slow_call_duration(Duration::from_secs(1))
            .build()
            .unwrap();
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "palisade_closed_slow_rule",
            slow.layer(bare),
            (),
        );
        let timed = CircuitBreakerLayer::builder()
            .window(SlidingWindow::Time(Duration::from_secs(10)))
            .build()
            .unwrap();
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "palisade_closed_time_window",
            timed.layer(bare),
            (),
        );
        // A tripped breaker (not forced), on a multi-thread runtime that lives as long as the
        // bench: the breaker arms a timer there for the end of the open state, and rejects
        // without reading the clock until it fires.
        let tripped = tripped_on(&tripping_runtime);
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "palisade_open",
            tripped.layer(bare),
            (),
        );
        // The same breaker with typed errors: the rejection is a value, not a boxed error.
        let tripped_typed = tripped.clone().typed_errors();
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "palisade_open_typed",
            tripped_typed.layer(bare),
            (),
        );

        // Tripped on a current-thread runtime that lives as long as the bench, as under
        // `#[tokio::main(flavor = "current_thread")]`. Such a runtime may never fire a timer
        // (it turns its timers only when it parks): the timer is armed, and each rejection
        // checks the coarse clock in case it is overdue.
        let tripped_here = tripped_on(&tripping_current_thread).typed_errors();
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "palisade_open_typed_current_thread",
            tripped_here.layer(bare),
            (),
        );

        let tr = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
            .build()
            .unwrap();
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "tower_resilience_closed",
            tr.layer(bare),
            (),
        );
        // Open for an hour: the default 30 s would close it before the interleaved part below.
        let tr_open = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
            .wait_duration_in_open(Duration::from_secs(3600))
            .build()
            .unwrap()
            .layer(bare);
        support::runtime1().block_on(tr_open.force_open());
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "tower_resilience_open",
            tr_open.clone(),
            (),
        );

        // failsafe and recloser guard futures rather than services: each is called from a
        // `service_fn`, as the bare case is.
        let fs = failsafe::Config::new().build();
        let fs_closed = {
            let fs = fs.clone();
            service_fn(move |()| {
                use failsafe::futures::CircuitBreaker;
                fs.call(async { Ok::<_, Infallible>(()) })
            })
        };
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "failsafe_closed",
            fs_closed,
            (),
        );
        // Open for an hour (the default reopens after 5-60 s, then the case measures the
        // closed path).
        let fs_tripped = failsafe::Config::new()
            .failure_policy(failsafe::failure_policy::consecutive_failures(
                5,
                failsafe::backoff::constant(Duration::from_secs(3600)),
            ))
            .build();
        support::runtime1().block_on(async {
            use failsafe::futures::CircuitBreaker;
            for _ in 0..10 {
                let _ = fs_tripped
                    .call(async { Err::<(), _>(std::io::Error::other("down")) })
                    .await;
            }
        });
        let fs_open = service_fn(move |()| {
            use failsafe::futures::CircuitBreaker;
            fs_tripped.call(async { Ok::<_, Infallible>(()) })
        });
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "failsafe_open",
            fs_open,
            (),
        );
        let rc = recloser::AsyncRecloser::from(recloser::Recloser::custom().build());
        // `call` takes its own reference to the breaker: no clone of ours on top.
        let rc_closed = service_fn(move |()| rc.call(async { Ok::<_, Infallible>(()) }));
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "recloser_closed",
            rc_closed,
            (),
        );
        let rc_tripped = recloser::AsyncRecloser::from(
            recloser::Recloser::custom()
                .closed_len(10)
                .open_wait(Duration::from_secs(3600))
                .build(),
        );
        support::runtime1().block_on(async {
            for _ in 0..20 {
                let _ = rc_tripped
                    .call(async { Err::<(), _>(std::io::Error::other("down")) })
                    .await;
            }
        });
        let rc_open = service_fn(move |()| rc_tripped.call(async { Ok::<_, Infallible>(()) }));
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "recloser_open",
            rc_open,
            (),
        );

        // Closed, over a dependency that fails one call in 50: each breaker's window holds
        // failures, as a real one does (the cases above keep nothing but successes, which
        // lets palisade's window skip its write).
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "bare_flaky",
            support::flaky(),
            (),
        );
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "palisade_closed_flaky",
            closed.layer(support::flaky()),
            (),
        );
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "tower_resilience_closed_flaky",
            tr.layer(support::flaky()),
            (),
        );
        let fs_flaky = failsafe::Config::new().build();
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "failsafe_closed_flaky",
            service_fn(move |()| {
                use failsafe::futures::CircuitBreaker;
                fs_flaky.call(std::future::ready(support::flaky_result()))
            }),
            (),
        );
        let rc_flaky = recloser::AsyncRecloser::from(recloser::Recloser::custom().build());
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            "recloser_closed_flaky",
            service_fn(move |()| rc_flaky.call(std::future::ready(support::flaky_result()))),
            (),
        );

        // The targets again, each case in turn with tower's Timeout, so that the VM's drift
        // over a run (criterion measures one case after another) cannot decide them.
        let rt = support::runtime1();
        support::interleaved(
            support::runner(&rt, "tower_timeout", tower_timeout, ()),
            vec![
                support::runner(&rt, "palisade_closed_count", closed.layer(bare), ()),
                support::runner(&rt, "palisade_closed_slow_rule", slow.layer(bare), ()),
                support::runner(&rt, "palisade_closed_time_window", timed.layer(bare), ()),
                support::runner(&rt, "palisade_open", tripped.layer(bare), ()),
                support::runner(&rt, "palisade_open_typed", tripped_typed.layer(bare), ()),
                support::runner(
                    &rt,
                    "palisade_open_typed_current_thread",
                    tripped_here.layer(bare),
                    (),
                ),
                support::runner(&rt, "tower_resilience_open", tr_open, ()),
            ],
            41,
            50_000,
        );
        // And against tower-resilience's breaker, over both dependencies.
        support::interleaved(
            support::runner(&rt, "tower_resilience_closed", tr.layer(bare), ()),
            vec![support::runner(
                &rt,
                "palisade_closed_count",
                closed.layer(bare),
                (),
            )],
            41,
            10_000,
        );
        support::interleaved(
            support::runner(
                &rt,
                "tower_resilience_closed_flaky",
                tr.layer(support::flaky()),
                (),
            ),
            vec![support::runner(
                &rt,
                "palisade_closed_flaky",
                closed.layer(support::flaky()),
                (),
            )],
            41,
            10_000,
        );
    }
    // The same with an inner future that is pending once (as any real network call is): the
    // slow-call rule then reads the clock twice, and tower's Timeout arms its timer.
    let pending = service_fn(|()| async {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(())
    });
    support::case(&mut c, (ONE, TWO), &mut allocs, "pending_bare", pending, ());
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "pending_tower_timeout",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(pending),
        (),
    );
    let closed = CircuitBreakerLayer::builder().build().unwrap();
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "pending_palisade_closed_count",
        closed.layer(pending),
        (),
    );
    let slow = CircuitBreakerLayer::builder()
        .slow_call_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "pending_palisade_closed_slow_rule",
        slow.layer(pending),
        (),
    );
    // palisade's timeout and the whole Policy (as in the policy bench) on a call that waits:
    // the timeout's timer is armed, and boxed (one allocation per call).
    let timeout = palisade::timeout::TimeoutLayer::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "pending_palisade_timeout",
        timeout.layer(pending),
        (),
    );
    let mut bulkhead = palisade::bulkhead::BulkheadConfig::default();
    bulkhead.max_concurrent = 100;
    let policy = palisade::policy::Policy::builder()
        .timeout(Duration::from_secs(1))
        .bulkhead(bulkhead)
        .circuit_breaker(palisade::circuit_breaker::CircuitBreakerConfig::default())
        .fallback(palisade::fallback::value(()))
        .build()
        .unwrap();
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "pending_palisade_policy",
        policy.layer(pending),
        (),
    );
    c.final_summary();
    drop(tripping_runtime);
    support::report(
        ONE,
        TWO,
        &names,
        &[
            "bare",
            "tower_timeout",
            "tower_resilience_closed",
            "pending_tower_timeout",
        ],
        &allocs,
    );
}

/// A breaker that opens at one failure, for an hour, tripped by a failing call on `runtime`.
fn tripped_on(runtime: &tokio::runtime::Runtime) -> CircuitBreakerLayer {
    let layer = CircuitBreakerLayer::builder()
        .window(SlidingWindow::Count(1))
        .minimum_calls(1)
        .open_duration(Duration::from_secs(3600))
        .build()
        .unwrap();
    let failing = service_fn(|()| async { Err::<(), _>(std::io::Error::other("down")) });
    runtime.block_on(async {
        let _ = layer.layer(failing).oneshot(()).await;
    });
    layer
}
