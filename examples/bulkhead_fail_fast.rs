//! `cargo run --example bulkhead_fail_fast`: a bulkhead of 4 in front of a slow dependency
//! (the testkit's flaky server on `127.0.0.1`, answering each request after 300 ms), and 16
//! callers calling at once through a hyper client behind `Policy::builder().http()`.
//!
//! * Fail fast (the default): 4 calls are in flight at the server, never more (its
//!   `max_in_flight`), and the other 12 are rejected at once with `BulkheadFull`, without
//!   reaching it. The caller learns in microseconds what it would otherwise have waited for.
//! * With `max_wait`: the other 12 queue for a permit instead, and are answered in turn, in
//!   waves of 4; the server still never has more than 4 at once.
//!
//! Ends by itself in about a second and a half.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::bulkhead::BulkheadConfig;
use palisade::error::{ErrorKind, error_kind};
use palisade::policy::Policy;
use palisade::testkit::{Fault, FlakyServer};
use tokio::sync::Barrier;
use tokio::time::Instant;
use tower::{BoxError, Layer, ServiceExt};

/// The bulkhead: calls in flight at once.
const N: usize = 4;
/// Callers calling at once.
const CALLERS: usize = 4 * N;
/// How long the server takes to answer.
const LATENCY: Duration = Duration::from_millis(300);

/// How one caller's call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Answered,
    BulkheadFull,
}

/// Runs [`CALLERS`] callers at once through a policy with `bulkhead`; how each call ended and
/// how long it took.
async fn crowd(server: &FlakyServer, bulkhead: BulkheadConfig) -> Vec<(Ended, Duration)> {
    let policy = Policy::builder()
        .name("inventory")
        .http()
        .timeout(Duration::from_secs(2))
        .bulkhead(bulkhead)
        .build()
        .expect("a valid policy");
    let client = policy.layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let start = Arc::new(Barrier::new(CALLERS));
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (client, start) = (client.clone(), Arc::clone(&start));
            let url = format!("{}/stock/{i}", server.url());
            tokio::spawn(async move {
                start.wait().await;
                let started = Instant::now();
                let result = async {
                    let request = Request::get(url).body(Empty::new())?;
                    let response = client.oneshot(request).await?;
                    response.into_body().collect().await?;
                    Ok::<_, BoxError>(())
                }
                .await;
                let ended = match result {
                    Ok(()) => Ended::Answered,
                    Err(err) => match error_kind(err.as_ref()) {
                        ErrorKind::BulkheadFull(_) => Ended::BulkheadFull,
                        _ => panic!("unexpected failure: {err:?}"),
                    },
                };
                (ended, started.elapsed())
            })
        })
        .collect();
    let mut ended = Vec::new();
    for caller in callers {
        ended.push(caller.await.expect("the caller finished"));
    }
    ended
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The longest of the durations of calls that ended as `kind`, and how many there were.
fn count(ended: &[(Ended, Duration)], kind: Ended) -> (usize, Duration) {
    let of_kind = ended.iter().filter(|(e, _)| *e == kind);
    let n = of_kind.clone().count();
    (n, of_kind.map(|(_, d)| *d).max().unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let server = FlakyServer::builder()
        .fault(Fault::healthy().latency(LATENCY))
        .start()
        .await?;
    println!(
        "a slow server (answers after {}), a bulkhead of {N}, {CALLERS} callers at once",
        ms(LATENCY)
    );

    println!("fail fast: a call finding every permit taken is rejected at once");
    let mut bulkhead = BulkheadConfig::default();
    bulkhead.max_concurrent = N;
    let ended = crowd(&server, bulkhead.clone()).await;
    let stats = server.stats();
    let (answered, slowest) = count(&ended, Ended::Answered);
    let (rejected, slowest_rejection) = count(&ended, Ended::BulkheadFull);
    println!(
        "  {answered} answered (the slowest after {}); at most {} in flight at the server",
        ms(slowest),
        stats.max_in_flight
    );
    println!(
        "  {rejected} rejected with BulkheadFull, each within {} µs, never sent (the server saw \
         {} requests)",
        slowest_rejection.as_micros(),
        stats.requests
    );
    assert_eq!((answered, rejected), (N, CALLERS - N));
    assert_eq!(stats.max_in_flight, N);
    assert_eq!(stats.requests, N as u64);
    assert!(slowest >= LATENCY);
    assert!(
        slowest_rejection < LATENCY / 3,
        "at once: {slowest_rejection:?}"
    );

    println!("with max_wait: a call finding every permit taken waits its turn (up to 2 s)");
    server.reset_max_in_flight();
    bulkhead.max_wait = Some(Duration::from_secs(2));
    bulkhead.max_queued = Some(CALLERS - N);
    let ended = crowd(&server, bulkhead).await;
    let stats = server.stats();
    let (answered, slowest) = count(&ended, Ended::Answered);
    let mut waves: Vec<u128> = ended
        .iter()
        .map(|(_, d)| (d.as_millis() + LATENCY.as_millis() / 2) / LATENCY.as_millis())
        .collect();
    waves.sort_unstable();
    let per_wave: Vec<String> = (1..=(CALLERS / N) as u128)
        .map(|w| {
            let n = waves.iter().filter(|&&x| x == w).count();
            format!("{n} after ~{} ms", w * LATENCY.as_millis())
        })
        .collect();
    println!(
        "  {answered} answered, in waves: {}; at most {} in flight at the server",
        per_wave.join(", "),
        stats.max_in_flight
    );
    assert_eq!(answered, CALLERS);
    assert_eq!(stats.max_in_flight, N);
    assert!(slowest >= LATENCY * (CALLERS / N) as u32, "{slowest:?}");
    println!(
        "  the last waited {} in all, and no call was rejected",
        ms(slowest)
    );
    Ok(())
}
