//! `cargo run --example metrics_prometheus --features metrics`: palisade's metrics exported with
//! `metrics-exporter-prometheus` while the testkit's flaky HTTP server flips between healthy and
//! failing. Prints what a Prometheus scrape would return, while the breaker is open and at the
//! end. Ends by itself in about two seconds.
//!
//! A real service would serve `handle.render()` on its `/metrics` endpoint (or let the
//! exporter's own HTTP listener do it).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow};
use palisade::http::HttpStaleCache;
use palisade::observe::MetricsListener;
use palisade::policy::Policy;
use palisade::testkit::{Fault, FlakyServer, Reply};
use tokio::time::{Instant, sleep};
use tower::{BoxError, Layer, ServiceExt};

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

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
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
    let cache = HttpStaleCache::builder()
        .max_stale(Duration::from_secs(60))
        .build()?;
    let policy = Policy::builder()
        .name("inventory")
        .http()
        .timeout(Duration::from_millis(50))
        .bulkhead(bulkhead)
        .circuit_breaker(breaker)
        .fallback(cache)
        .listener(MetricsListener::new())
        .build()?;

    // The dependency: a flaky HTTP server on 127.0.0.1, answering in 1 to 3 ms when healthy;
    // when failing, 503 for most calls and a hang (past the timeout) for one in five.
    let server = FlakyServer::start().await?;
    let healthy = || Fault::healthy().latency_between(ms(1), ms(3));
    let failing = || Fault::status(503).sometimes(0.2, Reply::Hang);
    let client = policy.layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let phases = [
        ("healthy", healthy(), 400),
        ("failing", failing(), 600),
        ("healthy again", healthy(), 700),
    ];
    let mut item = 0u32;
    for (name, fault, millis) in phases {
        println!("--- phase: dependency {name} for {millis} ms");
        let up = name != "failing";
        server.set(fault);
        let end = Instant::now() + Duration::from_millis(millis);
        while Instant::now() < end {
            // Four calls at a time, every 5 ms or so, over 8 items (so the cache has something).
            let calls = (0..4).map(|_| {
                item += 1;
                let uri = format!("{}/items/{}", server.url(), item % 8);
                let client = client.clone();
                async move {
                    let req = http::Request::get(uri).body(Empty::<Bytes>::new())?;
                    let res = client.oneshot(req).await?;
                    res.into_body().collect().await?;
                    Ok::<_, BoxError>(())
                }
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
