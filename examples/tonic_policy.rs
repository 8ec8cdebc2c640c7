//! `cargo run --example tonic_policy`: a tonic `Channel` behind `Policy::builder().grpc()`,
//! called through the testkit's `EchoClient`, against the testkit's flaky server on
//! `127.0.0.1`. Shows:
//!
//! * `grpc-timeout` propagation: the policy's timeout goes to the server with each call,
//!   lowering a longer deadline the caller set; a hanging server still ends the call at the
//!   timeout, as `Elapsed`;
//! * a burst of `UNAVAILABLE` sent in the trailers, after a `200` head: the gRPC policy counts
//!   every one and its breaker opens, while the same policy with a classifier that looks only
//!   at the head counts them all as successes;
//! * `palisade::error_kind(&status)` telling a rejection by the open breaker from an error of
//!   the server, both of which reach the caller as a `tonic::Status`.
//!
//! Ends by itself in about a second.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State};
use palisade::classify::grpc::GrpcClassifier;
use palisade::classify::{Outcome, classify_error};
use palisade::http::{Tracked, parse_grpc_timeout};
use palisade::policy::Policy;
use palisade::testkit::grpc::{EchoClient, EchoRequest};
use palisade::testkit::{Fault, FlakyServer, GrpcStatusIn};
use palisade::{ErrorKind, error_kind};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tower::{BoxError, Layer, ServiceBuilder};

/// The policy's timeout, sent downstream as `grpc-timeout`.
const TIMEOUT: Duration = Duration::from_millis(250);
/// How long the breaker stays open.
const OPEN: Duration = Duration::from_millis(300);

fn breaker() -> CircuitBreakerConfig {
    let mut config = CircuitBreakerConfig::default();
    config.window = SlidingWindow::Count(10);
    config.minimum_calls = 5;
    config.failure_rate = 0.5;
    config.open_duration = OPEN;
    config.permitted_probes = 1;
    config
}

/// The last `grpc-timeout` header a request carried on its way to the channel.
type Seen = Arc<Mutex<Option<HeaderValue>>>;

fn last(seen: &Seen) -> Option<HeaderValue> {
    seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

type GrpcResponse = Response<Tracked<tonic::body::Body>>;

/// Decides at the response head only: a `200` head with no `grpc-status` has no verdict there,
/// and is taken as a success. The mistake the gRPC policy does not make.
fn head_only(result: Result<&GrpcResponse, &BoxError>) -> Outcome {
    match result {
        Ok(response) => GrpcClassifier::default()
            .classify_head(response.status(), response.headers())
            .unwrap_or_else(Outcome::success),
        Err(err) => classify_error(err),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let server = FlakyServer::start().await?;
    let channel: Channel = Endpoint::from_shared(server.url())?.connect().await?;

    // What leaves for the wire: the channel, with a look at each request's grpc-timeout.
    let seen = Seen::default();
    let recorder = {
        let seen = Arc::clone(&seen);
        ServiceBuilder::new()
            .map_request(move |request: Request<tonic::body::Body>| {
                let timeout = request.headers().get("grpc-timeout").cloned();
                *seen.lock().unwrap_or_else(PoisonError::into_inner) = timeout;
                request
            })
            .service(channel.clone())
    };
    let policy = Policy::builder()
        .name("echo")
        .grpc()
        .timeout(TIMEOUT)
        .circuit_breaker(breaker())
        .build()?;
    let cb = policy.circuit_breaker().expect("a breaker");
    let mut client = EchoClient::new(policy.layer(recorder));

    println!("grpc-timeout: the policy's timeout is {TIMEOUT:?}");
    let reply = client.say(EchoRequest::new("hello")).await?;
    let sent = last(&seen).expect("a grpc-timeout was sent");
    let told = parse_grpc_timeout(sent.as_bytes()).expect("a valid grpc-timeout");
    assert!(told <= TIMEOUT);
    println!(
        "  a call without a deadline: sent with grpc-timeout: {} ({told:?}); reply {:?}",
        sent.to_str()?,
        reply.get_ref().message
    );

    let mut request = tonic::Request::new(EchoRequest::new("hello"));
    request.set_timeout(Duration::from_secs(10));
    client.say(request).await?;
    let sent = last(&seen).expect("a grpc-timeout was sent");
    let told = parse_grpc_timeout(sent.as_bytes()).expect("a valid grpc-timeout");
    assert!(told <= TIMEOUT);
    println!(
        "  a call whose caller set a 10 s deadline: lowered to grpc-timeout: {} ({told:?})",
        sent.to_str()?
    );

    server.set(Fault::hang());
    let started = Instant::now();
    let status = client.say(EchoRequest::new("hello")).await.unwrap_err();
    let took = started.elapsed();
    let ErrorKind::TimedOut(elapsed) = error_kind(&status) else {
        panic!("expected Elapsed, got {status:?}");
    };
    assert_eq!(elapsed.after(), TIMEOUT);
    println!(
        "  the server hangs: the call ends after {} ms as {elapsed} (status {:?})",
        took.as_millis(),
        status.code()
    );

    println!("UNAVAILABLE in the trailers, after a 200 head and a reply message");
    cb.reset();
    server.set(Fault::grpc_status(
        tonic::Code::Unavailable,
        "overloaded",
        GrpcStatusIn::Trailers,
    ));
    let head_only_policy = Policy::builder()
        .name("echo-head-only")
        .grpc()
        .classifier(head_only)
        .timeout(TIMEOUT)
        .circuit_breaker(breaker())
        .build()?;
    let head_only_cb = head_only_policy.circuit_breaker().expect("a breaker");
    let mut head_only_client = EchoClient::new(head_only_policy.layer(channel));
    let mut inner_status = None;
    let mut opened_after = None;
    for n in 1..=5 {
        let status = client.say(EchoRequest::new("x")).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let other = head_only_client.say(EchoRequest::new("x")).await;
        assert_eq!(other.unwrap_err().code(), tonic::Code::Unavailable);
        inner_status = Some(status);
        if opened_after.is_none() && cb.state() == State::Open {
            opened_after = Some(n);
        }
    }
    let head = head_only_cb.snapshot();
    assert_eq!(cb.state(), State::Open, "the trailers' status opens it");
    assert_eq!(
        (head.calls, head.failures, head.state),
        (5, 0, State::Closed)
    );
    println!(
        "  gRPC policy (the status read from the trailers): the breaker opened after {} \
         UNAVAILABLE calls",
        opened_after.unwrap_or(0)
    );
    println!(
        "  head-only check: {} calls, {} failures; the breaker stayed {:?} (it missed the burst)",
        head.calls, head.failures, head.state
    );

    println!("error_kind tells the two apart");
    let inner_status = inner_status.expect("a status from the server");
    let ErrorKind::Inner(_) = error_kind(&inner_status) else {
        panic!("the server's UNAVAILABLE is an inner error: {inner_status:?}");
    };
    println!(
        "  from the server: code {:?}, {:?}; error_kind: Inner (the server's own error)",
        inner_status.code(),
        inner_status.message()
    );
    let rejected = client.say(EchoRequest::new("x")).await.unwrap_err();
    let ErrorKind::CircuitOpen(open) = error_kind(&rejected) else {
        panic!("expected a rejection by the breaker: {rejected:?}");
    };
    let retry_after = open.retry_after().expect("a probe is scheduled");
    println!(
        "  from the open breaker: code {:?}; error_kind: CircuitOpen (never sent; next probe \
         in {} ms)",
        rejected.code(),
        retry_after.as_millis()
    );

    server.set(Fault::healthy());
    tokio::time::sleep(retry_after).await;
    let reply = client.say(EchoRequest::new("back")).await?;
    assert_eq!(cb.state(), State::Closed);
    println!(
        "healed: after the breaker's {} ms, the probe got {:?} and the breaker closed",
        retry_after.as_millis(),
        reply.get_ref().message
    );
    Ok(())
}
