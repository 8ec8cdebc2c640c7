//! `cargo run --example reqwest_circuit_breaker`: a `reqwest::Client` behind
//! `Policy::builder().reqwest()` with a circuit breaker, against the testkit's flaky server on
//! `127.0.0.1`. The server has an error burst (every request gets a `503`): the breaker opens,
//! rejects calls at once without sending them while it is open, and once the server has healed
//! and the breaker's `retry_after` has passed, one probe closes it. Ends by itself in about a
//! second.
//!
//! The caller keeps reqwest's own types: it sends a `reqwest::Request` and gets a
//! `reqwest::Response` back; after a success head, the breaker watches the body to its end.

use std::time::Duration;

use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State};
use palisade::error::{ErrorKind, error_kind};
use palisade::events::Event;
use palisade::policy::Policy;
use palisade::testkit::{Fault, FlakyServer};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

/// How long the breaker stays open before it admits a probe.
const OPEN: Duration = Duration::from_millis(500);

/// Sends one GET through the protected client and reads the whole body: the breaker records a
/// failure status (the `503`s) at its head, and a success when its body ends.
async fn get<S>(client: &mut S, url: &str) -> Result<(reqwest::StatusCode, String), BoxError>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = BoxError>,
{
    let request = reqwest::Request::new(reqwest::Method::GET, url.parse()?);
    let response = client.ready().await?.call(request).await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let server = FlakyServer::start().await?;
    let url = format!("{}/orders/42", server.url());

    // Opens when half of the last 10 calls failed, once it has seen at least 5; stays open
    // 500 ms, then lets one probe through.
    let mut breaker = CircuitBreakerConfig::default();
    breaker.window = SlidingWindow::Count(10);
    breaker.minimum_calls = 5;
    breaker.failure_rate = 0.5;
    breaker.open_duration = OPEN;
    breaker.permitted_probes = 1;
    let policy = Policy::builder()
        .name("orders")
        .reqwest()
        .timeout(Duration::from_secs(1))
        .circuit_breaker(breaker)
        .listener(|event: &Event<'_>| {
            if let Event::StateTransition { transition: t, .. } = event {
                println!("    breaker: {:?} -> {:?} ({:?})", t.from, t.to, t.cause);
            }
        })
        .build()?;
    let cb = policy.circuit_breaker().expect("a breaker");
    // The flaky server is on loopback: no proxy, whatever `HTTP_PROXY` says.
    let mut client = policy.layer(reqwest::Client::builder().no_proxy().build()?);

    println!("healthy: the server answers every request");
    for _ in 0..5 {
        let (status, body) = get(&mut client, &url).await?;
        assert_eq!(status, 200);
        println!("  {status} {body}");
    }

    println!("error burst: every request gets a 503");
    server.set(Fault::status(503));
    let mut failed = 0;
    while cb.state() == State::Closed && failed < 10 {
        let (status, _) = get(&mut client, &url).await?;
        assert_eq!(status, 503);
        failed += 1;
        println!("  {status}");
    }
    assert_eq!(cb.state(), State::Open, "the burst opens the breaker");
    println!("the breaker opened after {failed} failures (5 of its last 10 calls)");

    println!("open: calls are rejected without being sent");
    let sent = server.stats().requests;
    let started = Instant::now();
    let mut rejected = 0;
    for _ in 0..20 {
        let err = get(&mut client, &url).await.expect_err("rejected");
        let ErrorKind::CircuitOpen(open) = error_kind(err.as_ref()) else {
            panic!("not a rejection by the breaker: {err:?}");
        };
        if rejected == 0 {
            println!("  first rejection: {open}");
        }
        rejected += 1;
    }
    let took = started.elapsed();
    let reached = server.stats().requests - sent;
    assert_eq!(reached, 0, "no call reached the server while open");
    assert!(
        took < Duration::from_millis(100),
        "rejected at once: {took:?}"
    );
    println!(
        "{rejected} calls rejected in {:.2} ms in all; the server saw {reached} of them",
        took.as_secs_f64() * 1e3
    );

    println!("the server heals");
    server.set(Fault::healthy());
    // The breaker says when it admits a probe: wait exactly that long, no more, no less.
    let retry_after = cb
        .snapshot()
        .retry_after
        .expect("open, with a probe scheduled");
    assert!(retry_after <= OPEN);
    println!(
        "  the breaker admits a probe in {} ms; waiting exactly that",
        retry_after.as_millis()
    );
    tokio::time::sleep(retry_after).await;
    let (status, body) = get(&mut client, &url).await?;
    assert_eq!(status, 200);
    println!("  probe: {status} {body}");
    assert_eq!(cb.state(), State::Closed, "one good probe closes it");
    for _ in 0..3 {
        let (status, _) = get(&mut client, &url).await?;
        assert_eq!(status, 200);
    }
    println!(
        "the breaker closed; calls flow again ({} requests reached the server in all)",
        server.stats().requests
    );
    Ok(())
}
