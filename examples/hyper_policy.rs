//! `cargo run --example hyper_policy`: a hyper-util legacy client behind
//! `Policy::builder().http()` with a timeout, a bulkhead, a circuit breaker and a deadline for
//! the whole response, against the testkit's flaky server on `127.0.0.1`. Shows the two ways a
//! slow dependency holds a caller up, and what ends each:
//!
//! * a server that never answers: the call ends at the timeout (300 ms) with `Elapsed`;
//! * a server that answers at once but streams its body slowly: the head arrives within the
//!   timeout, and the body ends at the response deadline (800 ms) with `Elapsed`, never as a
//!   truncated success; the bulkhead's permit is held until then.
//!
//! Ends by itself in about a second and a half.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow};
use palisade::error::{ErrorKind, error_kind};
use palisade::http::Tracked;
use palisade::policy::Policy;
use palisade::testkit::{Fault, FlakyServer};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

/// Time for the response head, from the call.
const TIMEOUT: Duration = Duration::from_millis(300);
/// Time for the whole response, head and body, from the call.
const DEADLINE: Duration = Duration::from_millis(800);
/// How much later than its limit a call may end on a busy machine.
const MARGIN: Duration = Duration::from_millis(500);

type Protected = Response<Tracked<Incoming>>;

async fn call<S>(client: &mut S, url: &str) -> Result<Protected, BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = Protected, Error = BoxError>,
{
    let request = Request::get(url).body(Empty::new())?;
    client.ready().await?.call(request).await
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let server = FlakyServer::start().await?;
    let url = format!("{}/catalog/7", server.url());

    let mut bulkhead = BulkheadConfig::default();
    bulkhead.max_concurrent = 4;
    let mut breaker = CircuitBreakerConfig::default();
    breaker.window = SlidingWindow::Count(10);
    breaker.minimum_calls = 5;
    let policy = Policy::builder()
        .name("catalog")
        .http()
        .timeout(TIMEOUT)
        .response_deadline(DEADLINE)
        .bulkhead(bulkhead)
        .circuit_breaker(breaker)
        .build()?;
    let (cb, permits) = (
        policy.circuit_breaker().expect("a breaker"),
        policy.bulkhead().expect("a bulkhead"),
    );
    let mut client =
        policy.layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    println!(
        "policy: timeout {}, response deadline {}, bulkhead of 4, circuit breaker",
        ms(TIMEOUT),
        ms(DEADLINE)
    );

    println!("healthy:");
    let started = Instant::now();
    let response = call(&mut client, &url).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    assert_eq!(status, 200);
    println!(
        "  {status} {:?} in {}",
        String::from_utf8_lossy(&body),
        ms(started.elapsed())
    );

    println!("hanging: the server reads the request and never answers");
    server.set(Fault::hang());
    let started = Instant::now();
    let err = call(&mut client, &url).await.expect_err("no answer");
    let took = started.elapsed();
    let ErrorKind::TimedOut(elapsed) = error_kind(err.as_ref()) else {
        panic!("expected Elapsed, got {err:?}");
    };
    assert_eq!(elapsed.after(), TIMEOUT);
    assert!((TIMEOUT..TIMEOUT + MARGIN).contains(&took), "{took:?}");
    println!("  Elapsed after {}: {err}", ms(took));
    server
        .wait_for(Duration::from_secs(5), |s| s.in_flight == 0)
        .await
        .expect("the server sees the request abandoned");
    assert_eq!(permits.in_flight(), 0);
    println!(
        "  the server saw the request abandoned; bulkhead permits taken: {}",
        permits.in_flight()
    );

    println!("slow body: 100 kB at 20 kB/s (5 s), the head at once");
    server.set(Fault::slow_body(100_000, 20_000));
    let started = Instant::now();
    let response = call(&mut client, &url).await?;
    println!(
        "  head: {} after {}; bulkhead permits taken while the body streams: {}",
        response.status(),
        ms(started.elapsed()),
        permits.in_flight()
    );
    assert_eq!(permits.in_flight(), 1, "held until the body ends");
    let mut body = response.into_body();
    let mut received = 0;
    let err = loop {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(err)) => break err,
            None => panic!("a truncated success: the body ended after {received} bytes"),
        }
    };
    let took = started.elapsed();
    let ErrorKind::TimedOut(elapsed) = error_kind(err.as_ref()) else {
        panic!("expected Elapsed, got {err:?}");
    };
    assert_eq!(elapsed.after(), DEADLINE);
    assert!((DEADLINE..DEADLINE + MARGIN).contains(&took), "{took:?}");
    assert!(received < 100_000);
    assert_eq!(permits.in_flight(), 0);
    println!(
        "  body: Elapsed after {} with {received} of 100000 bytes read: {err}",
        ms(took)
    );
    println!("  bulkhead permits taken now: {}", permits.in_flight());

    let snapshot = cb.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (3, 2));
    println!(
        "the breaker counted {} calls, {} failed (the hang and the slow body); it is {:?}",
        snapshot.calls, snapshot.failures, snapshot.state
    );
    Ok(())
}
