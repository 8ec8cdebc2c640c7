//! What listening costs on the breaker's closed path, in one run, as ratios: no listener, an
//! empty set of listeners, a no-op listener, the `tracing` listener with no subscriber, and the
//! `metrics` listener on a real recorder (metrics-exporter-prometheus, with its upkeep running).
//!
//! `cargo bench --bench observe --features metrics,tracing` prints a table of medians and ratios
//! at the end.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::events::{Event, Listeners};
use palisade::observe::{MetricsListener, TracingListener};
use tower::{Layer, service_fn};

#[global_allocator]
static ALLOC: support::Counting = support::Counting;

const ONE: &str = "observe/1_task";
const TWO: &str = "observe/2_tasks";

fn breaker(listeners: Listeners) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .name("inventory")
        .listeners(listeners)
        .build()
        .unwrap()
}

fn main() {
    // A real recorder, as a service would install it; its upkeep drains the histograms, as the
    // exporter's own upkeep task would.
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &[0.001, 0.005, 0.025, 0.1, 1.0, 10.0],
        )
        .unwrap()
        .install_recorder()
        .unwrap();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(50));
            handle.run_upkeep();
        }
    });

    let mut c = support::configure();
    let mut allocs = Vec::new();
    let bare = service_fn(|()| async { Ok::<_, Infallible>(()) });
    let pending = service_fn(|()| async {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(())
    });
    let names = [
        "bare",
        "breaker",
        "breaker_empty_listeners",
        "breaker_noop_listener",
        "breaker_tracing_no_subscriber",
        "breaker_metrics",
        "pending_bare",
        "pending_breaker",
        "pending_breaker_metrics",
    ];
    let cases = [
        ("breaker", Listeners::default()),
        ("breaker_empty_listeners", Listeners::new("inventory")),
        (
            "breaker_noop_listener",
            Listeners::new("inventory").with(|_: &Event<'_>| {}),
        ),
        (
            "breaker_tracing_no_subscriber",
            Listeners::new("inventory").with(TracingListener::new()),
        ),
        (
            "breaker_metrics",
            Listeners::new("inventory").with(MetricsListener::new()),
        ),
    ];
    support::case(&mut c, (ONE, TWO), &mut allocs, "bare", bare, ());
    for (name, listeners) in cases {
        support::case(
            &mut c,
            (ONE, TWO),
            &mut allocs,
            name,
            breaker(listeners).layer(bare),
            (),
        );
    }
    // An inner future that is pending once, as every real call is: with a listener the breaker
    // times it (two clock reads) for the duration histogram.
    support::case(&mut c, (ONE, TWO), &mut allocs, "pending_bare", pending, ());
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "pending_breaker",
        breaker(Listeners::default()).layer(pending),
        (),
    );
    support::case(
        &mut c,
        (ONE, TWO),
        &mut allocs,
        "pending_breaker_metrics",
        breaker(Listeners::new("inventory").with(MetricsListener::new())).layer(pending),
        (),
    );
    c.final_summary();
    support::report(
        ONE,
        TWO,
        &names,
        &["bare", "breaker", "pending_breaker"],
        &allocs,
    );
}
