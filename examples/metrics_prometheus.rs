//! `cargo run --example metrics_prometheus --features metrics`: palisade's metrics exported with
//! `metrics-exporter-prometheus` while a flaky dependency flips between healthy and failing.
//! Prints what a Prometheus scrape would return, while the breaker is open and at the end.
//! Ends by itself in about two seconds.
//!
//! The dependency is an in-process service; a real service would serve `handle.render()` on its
//! `/metrics` endpoint (or let the exporter's own HTTP listener do it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow};
use palisade::fallback::StaleCache;
use palisade::observe::MetricsListener;
use palisade::policy::Policy;
use tokio::time::{Instant, sleep};
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

/// Answers in 2 ms when healthy; fails after 5 ms (or, one call in four, hangs past the
/// timeout) when failing.
fn dependency(
    healthy: Arc<AtomicBool>,
) -> impl Service<u32, Response = String, Error = BoxError, Future: Send> + Clone {
    service_fn(move |item: u32| {
        let healthy = healthy.load(Ordering::Relaxed);
        async move {
            if healthy {
                sleep(Duration::from_millis(2)).await;
                Ok(format!("stock of item {item}: 12"))
            } else if item % 4 == 0 {
                sleep(Duration::from_secs(1)).await;
                Ok(format!("stock of item {item}: 12"))
            } else {
                sleep(Duration::from_millis(5)).await;
                Err(BoxError::from("inventory service unavailable"))
            }
        }
    })
}

/// The `palisade_*` lines of a scrape.
fn scrape(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle
        .render()
        .lines()
        .filter(|l| l.contains("palisade_"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &[0.001, 0.005, 0.025, 0.1, 1.0, 10.0],
        )?
        .install_recorder()?;

    let mut breaker = CircuitBreakerConfig::default();
    breaker.window = SlidingWindow::Count(20);
    breaker.minimum_calls = 10;
    breaker.open_duration = Duration::from_millis(250);
    breaker.permitted_probes = 2;
    let mut bulkhead = BulkheadConfig::default();
    bulkhead.max_concurrent = 8;
    let cache = StaleCache::builder(|item: &u32| Some(*item % 8))
        .max_stale(Duration::from_secs(60))
        .size(|s: &String| s.len())
        .build()?;
    let policy = Policy::builder()
        .name("inventory")
        .timeout(Duration::from_millis(50))
        .bulkhead(bulkhead)
        .circuit_breaker(breaker)
        .fallback(cache)
        .listener(MetricsListener::new())
        .build()?;

    let healthy = Arc::new(AtomicBool::new(true));
    let client = policy.layer(dependency(healthy.clone()));
    let phases = [
        ("healthy", true, 400),
        ("failing", false, 600),
        ("healthy again", true, 700),
    ];
    let mut item = 0u32;
    for (name, up, millis) in phases {
        println!("--- phase: dependency {name} for {millis} ms");
        healthy.store(up, Ordering::Relaxed);
        let end = Instant::now() + Duration::from_millis(millis);
        while Instant::now() < end {
            // Four calls at a time, every 5 ms or so.
            let calls = (0..4).map(|_| {
                item += 1;
                client.clone().oneshot(item)
            });
            let _ = futures::future::join_all(calls).await;
            sleep(Duration::from_millis(5)).await;
        }
        if let Some(breaker) = policy.circuit_breaker() {
            println!("breaker: {:?}", breaker.state());
        }
        if !up {
            println!("--- scrape while failing:\n{}\n", scrape(&handle));
        }
    }
    println!("--- scrape at the end:\n{}", scrape(&handle));
    Ok(())
}
