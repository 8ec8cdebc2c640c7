//! The recommended policy over real loopback sockets, with real clients: a hyper client
//! (`.http()`) and a tonic `Channel` (`.grpc()`) in front of the testkit's flaky server and
//! fault proxy. The same rules as `tests/http.rs`, which scripts bodies in-process on paused
//! time, checked here against what a real server and a real client do.
//!
//! No paused time (real sockets; `tokio::time::Instant` is the real clock here), and no
//! sleeping in the hope that something has happened: the tests wait on the server's counters
//! (`wait_for`), drive bounded loops of calls, and while a breaker is open wait exactly the
//! time its rejection says is left. Run alone: `cargo test --all-features --test loopback`.
#![cfg(all(feature = "grpc", feature = "testkit"))]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State};
use palisade::classify::grpc::GrpcClassifier;
use palisade::classify::{Outcome, classify_error};
use palisade::http::Tracked;
use palisade::policy::Policy;
use palisade::testkit::grpc::{EchoClient, EchoRequest};
use palisade::testkit::{Fault, FaultProxy, FlakyServer, GrpcStatusIn, ProxyMode};
use palisade::{ErrorKind, error_kind};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tower::{BoxError, Layer, Service, ServiceExt};

/// How long any one step may take before the test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(5);
/// The policies' timeout.
const TIMEOUT: Duration = Duration::from_millis(300);
/// How much later than its timeout a timed-out call may end.
const MARGIN: Duration = Duration::from_secs(1);
/// The breakers' open duration.
const OPEN: Duration = Duration::from_millis(400);
/// The breakers' cap on pushback.
const MAX_PUSHBACK: Duration = Duration::from_secs(10);
/// Failures that trip a breaker of [`breaker`]: its `minimum_calls`, all failed.
const TRIP: u64 = 5;
/// The bulkheads' limit.
const N: usize = 2;

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {LIMIT:?}"))
}

/// A count window of 10, tripping at a failure rate of 0.5 over at least 5 calls, open for
/// [`OPEN`], one probe.
fn breaker() -> CircuitBreakerConfig {
    let mut config = CircuitBreakerConfig::default();
    config.window = SlidingWindow::Count(10);
    config.minimum_calls = 5;
    config.failure_rate = 0.5;
    config.open_duration = OPEN;
    config.permitted_probes = 1;
    config.max_pushback = MAX_PUSHBACK;
    config
}

/// At most [`N`] calls in flight; the others are rejected at once.
fn bulkhead() -> BulkheadConfig {
    let mut config = BulkheadConfig::default();
    config.max_concurrent = N;
    config
}

/// At most [`N`] calls in flight; up to `4N` others wait their turn.
fn queued_bulkhead() -> BulkheadConfig {
    let mut config = bulkhead();
    config.max_wait = Some(LIMIT);
    config.max_queued = Some(4 * N);
    config
}

/// What the caller saw of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Success,
    Failure,
    Rejected,
}

/// The calls a test made, as its caller saw them.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    successes: u64,
    failures: u64,
    rejections: u64,
}

impl Tally {
    fn add(&mut self, seen: Seen) -> Seen {
        self.sent += 1;
        match seen {
            Seen::Success => self.successes += 1,
            Seen::Failure => self.failures += 1,
            Seen::Rejected => self.rejections += 1,
        }
        seen
    }

    /// Every call sent is a success, a failure or a rejection; the server saw exactly the
    /// calls that were not rejected, and the breaker counted exactly the rejections.
    fn conserved(&self, server: &FlakyServer, breaker: &palisade::circuit_breaker::Handle) {
        assert_eq!(
            self.sent,
            self.successes + self.failures + self.rejections,
            "{self:?}"
        );
        assert_eq!(
            server.stats().requests,
            self.successes + self.failures,
            "the server saw every admitted call and no rejected one: {self:?}"
        );
        assert_eq!(breaker.snapshot().rejected, self.rejections, "{self:?}");
    }
}

/// How the caller sees an error: palisade's rejections, or a failure.
fn seen_error(err: &(dyn std::error::Error + 'static)) -> Seen {
    if error_kind(err).is_rejection() {
        Seen::Rejected
    } else {
        Seen::Failure
    }
}

/// After a rejection by an open breaker, lets the time pass until the breaker said it would
/// admit a probe.
async fn wait_out(err: &(dyn std::error::Error + 'static)) {
    let ErrorKind::CircuitOpen(open) = error_kind(err) else {
        panic!("not an open breaker: {err:?}");
    };
    let left = open.retry_after().expect("a probe is scheduled");
    skip(left.max(Duration::from_millis(1))).await;
}

/// Lets `d` pass on tokio's clock at once (paused, advanced, resumed): a breaker's open time
/// goes by without the test waiting it out on the wall clock (paused-time tests check the
/// rule itself; here the sockets are real, so the clock runs again at once).
async fn skip(d: Duration) {
    tokio::time::pause();
    tokio::time::advance(d).await;
    tokio::time::resume();
}

// ---------------------------------------------------------------------------------------------
// hyper

type HyperClient = Client<HttpConnector, Empty<Bytes>>;
type HttpResponse = Response<Tracked<Incoming>>;

fn hyper_client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `url` through `svc` and read the whole body.
async fn fetch<S>(svc: &mut S, url: &str) -> Result<(StatusCode, Bytes), BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = HttpResponse, Error = BoxError>,
{
    let request = Request::get(url).body(Empty::new()).unwrap();
    let response = svc.ready().await?.call(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn seen_http(result: &Result<(StatusCode, Bytes), BoxError>) -> Seen {
    match result {
        Ok((status, _)) if status.is_server_error() => Seen::Failure,
        Ok(_) => Seen::Success,
        Err(err) => seen_error(err.as_ref()),
    }
}

#[tokio::test]
async fn hyper_error_burst_opens_the_breaker_which_sheds_load_then_closes_once_healed() {
    let server = FlakyServer::builder()
        .fault(Fault::status(503))
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .http()
        .timeout(TIMEOUT)
        .bulkhead(bulkhead())
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(hyper_client());
    let url = format!("{}/burst", server.url());
    let mut tally = Tally::default();

    // The burst: every call fails; the breaker opens once it has its minimum of calls.
    for _ in 0..10 {
        let result = within("burst", fetch(&mut svc, &url)).await;
        assert_eq!(tally.add(seen_http(&result)), Seen::Failure, "{result:?}");
        if cb.state() == State::Open {
            break;
        }
    }
    assert_eq!(cb.state(), State::Open);
    assert_eq!(tally.failures, TRIP, "opens at the minimum of calls");

    // Open: calls are rejected, and the server sees none of them.
    let before = server.stats().requests;
    for _ in 0..20 {
        let result = within("open", fetch(&mut svc, &url)).await;
        assert_eq!(tally.add(seen_http(&result)), Seen::Rejected, "{result:?}");
        let err = result.unwrap_err();
        let ErrorKind::CircuitOpen(open) = error_kind(err.as_ref()) else {
            panic!("{err:?}");
        };
        assert!(open.retry_after().unwrap() <= OPEN);
    }
    assert_eq!(server.stats().requests, before, "not even a probe yet");

    // Healed: once the open duration has passed, a probe succeeds and closes the breaker.
    server.set(Fault::healthy());
    let closed = within("closing", async {
        for _ in 0..10 {
            match fetch(&mut svc, &url).await {
                Ok(answer) => {
                    assert_eq!(tally.add(seen_http(&Ok(answer))), Seen::Success);
                    return cb.state() == State::Closed;
                }
                Err(err) => {
                    assert_eq!(tally.add(seen_error(err.as_ref())), Seen::Rejected);
                    wait_out(err.as_ref()).await;
                }
            }
        }
        false
    })
    .await;
    assert!(
        closed,
        "one successful probe closes it: {:?}",
        cb.snapshot()
    );
    let result = fetch(&mut svc, &url).await;
    assert_eq!(tally.add(seen_http(&result)), Seen::Success);
    tally.conserved(&server, &cb);
}

#[tokio::test]
async fn hyper_hanging_server_times_out_with_elapsed_and_the_connection_is_closed() {
    let server = FlakyServer::builder()
        .fault(Fault::hang())
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .http()
        .timeout(TIMEOUT)
        .bulkhead(bulkhead())
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut svc = policy.layer(hyper_client());

    let start = Instant::now();
    let err = within("hang", fetch(&mut svc, &server.url()))
        .await
        .unwrap_err();
    let took = start.elapsed();
    match error_kind(err.as_ref()) {
        ErrorKind::TimedOut(elapsed) => assert_eq!(elapsed.after(), TIMEOUT),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        (TIMEOUT..TIMEOUT + MARGIN).contains(&took),
        "timed out after {took:?}"
    );
    let snap = cb.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (1, 1),
        "a timeout is a failure"
    );
    assert_eq!(permits.in_flight(), 0);
    // HTTP/1.1: abandoning the request closes its connection.
    let stats = server
        .wait_for(LIMIT, |s| s.in_flight == 0 && s.connections_open == 0)
        .await
        .expect("the server saw the connection closed");
    assert_eq!((stats.requests, stats.connections_accepted), (1, 1));
}

#[tokio::test]
async fn hyper_reset_mid_body_is_a_typed_body_error_and_a_breaker_failure() {
    let server = FlakyServer::builder()
        .fault(Fault::reset_after(100))
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .http()
        .timeout(TIMEOUT)
        .bulkhead(bulkhead())
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut svc = policy.layer(hyper_client());

    let request = Request::get(server.url()).body(Empty::new()).unwrap();
    let response = within("head", svc.ready().await.unwrap().call(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the head arrives");
    assert_eq!(permits.in_flight(), 1, "held while the body streams");
    assert_eq!(cb.snapshot().calls, 0, "not decided at the head");
    let err = within("body", response.into_body().collect())
        .await
        .expect_err("the body breaks, it does not end");
    assert!(
        err.downcast_ref::<hyper::Error>().is_some(),
        "hyper's own error, not {err:?}"
    );
    assert!(matches!(error_kind(err.as_ref()), ErrorKind::Inner(_)));
    let snap = cb.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (1, 1),
        "a broken body is a failure"
    );
    assert_eq!(permits.in_flight(), 0);
    server
        .wait_for(LIMIT, |s| s.in_flight == 0 && s.connections_open == 0)
        .await
        .expect("the server aborted the connection");
}

#[tokio::test]
async fn hyper_response_deadline_ends_a_slow_body_timed_out_never_a_truncated_success() {
    // 100 kB at 20 kB/s: five seconds of body, against a deadline of 300 ms.
    let server = FlakyServer::builder()
        .fault(Fault::slow_body(100_000, 20_000))
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .http()
        .timeout(Duration::from_secs(2))
        .response_deadline(TIMEOUT)
        .bulkhead(bulkhead())
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut svc = policy.layer(hyper_client());

    let start = Instant::now();
    let request = Request::get(server.url()).body(Empty::new()).unwrap();
    let response = within("head", svc.ready().await.unwrap().call(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0;
    let err = within("body", async {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => received += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(err)) => return err,
                None => panic!("a truncated success: the body ended after {received} bytes"),
            }
        }
    })
    .await;
    let took = start.elapsed();
    match error_kind(err.as_ref()) {
        ErrorKind::TimedOut(elapsed) => assert_eq!(elapsed.after(), TIMEOUT),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(received > 0 && received < 100_000, "{received} bytes");
    assert!(
        (TIMEOUT..TIMEOUT + MARGIN).contains(&took),
        "ended after {took:?}"
    );
    assert!(body.frame().await.is_none(), "nothing after the error");
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 1));
    assert_eq!(permits.in_flight(), 0);
    drop(body);
    server
        .wait_for(LIMIT, |s| s.in_flight == 0)
        .await
        .expect("the server stopped sending");
}

/// Runs `4N` callers at once, each making one call and reading its whole body.
async fn hyper_crowd<S, B>(svc: &S, url: &str) -> Vec<usize>
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let callers: Vec<_> = (0..4 * N)
        .map(|_| {
            let svc = svc.clone();
            let url = url.to_owned();
            tokio::spawn(async move {
                let request = Request::get(url).body(Empty::new()).unwrap();
                let response = svc.oneshot(request).await.map_err(Into::into).unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let body = response.into_body().collect().await.map_err(Into::into);
                body.unwrap().to_bytes().len()
            })
        })
        .collect();
    let mut sizes = Vec::new();
    for caller in callers {
        sizes.push(within("caller", caller).await.unwrap());
    }
    sizes
}

#[tokio::test]
async fn hyper_bulkhead_bounds_the_servers_concurrency_until_each_body_ends() {
    let server = FlakyServer::builder()
        .fault(Fault::healthy().latency(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .http()
        .timeout(Duration::from_secs(2))
        .bulkhead(queued_bulkhead())
        .build()
        .unwrap();
    let permits = policy.bulkhead().unwrap();
    let svc = policy.layer(hyper_client());

    // Slow heads.
    hyper_crowd(&svc, &server.url()).await;
    let stats = server.stats();
    assert_eq!(stats.requests, 4 * N as u64);
    assert_eq!(stats.max_in_flight, N, "at most N, and the crowd reached N");

    // Fast heads, bodies streamed slowly (2 kB at 10 kB/s): the permit lasts the body.
    server.set(Fault::slow_body(2_000, 10_000));
    server.reset_max_in_flight();
    let sizes = hyper_crowd(&svc, &server.url()).await;
    assert!(sizes.iter().all(|&n| n == 2_000), "{sizes:?}");
    assert_eq!(server.stats().max_in_flight, N, "still at most N");
    assert_eq!(permits.in_flight(), 0);

    // The counterfactual: a bulkhead that lets go at the head lets the bodies pile up.
    let bare = Policy::builder()
        .timeout(Duration::from_secs(2))
        .bulkhead(queued_bulkhead())
        .build()
        .unwrap()
        .layer(hyper_client());
    server.reset_max_in_flight();
    hyper_crowd(&bare, &server.url()).await;
    let max = server.stats().max_in_flight;
    assert!(
        max > N,
        "released at the head, {max} bodies streamed at once"
    );
}

#[tokio::test]
async fn hyper_retry_after_keeps_the_breaker_open_and_a_hostile_value_is_capped() {
    let server = FlakyServer::builder()
        .fault(Fault::retry_after(503, "2"))
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .http()
        .timeout(TIMEOUT)
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(hyper_client());
    let url = server.url();

    let trip = async |svc: &mut _| {
        for _ in 0..TRIP {
            let (status, _) = within("503", fetch(svc, &url)).await.unwrap();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(cb.state(), State::Open);
        cb.snapshot().retry_after.unwrap()
    };

    let retry_after = trip(&mut svc).await;
    assert!(
        retry_after >= Duration::from_millis(1_900) && retry_after <= Duration::from_secs(2),
        "Retry-After: 2 keeps it open 2 s, not {OPEN:?}: {retry_after:?}"
    );
    // Past the open duration, still open.
    skip(Duration::from_secs(1)).await;
    let requests = server.stats().requests;
    let err = fetch(&mut svc, &url).await.unwrap_err();
    assert!(matches!(
        error_kind(err.as_ref()),
        ErrorKind::CircuitOpen(_)
    ));
    assert_eq!(server.stats().requests, requests);

    cb.reset();
    server.set(Fault::retry_after(503, "99999999999"));
    let retry_after = trip(&mut svc).await;
    assert!(
        retry_after <= MAX_PUSHBACK && retry_after >= MAX_PUSHBACK - Duration::from_millis(100),
        "capped at {MAX_PUSHBACK:?}, not ignored: {retry_after:?}"
    );
}

#[tokio::test]
async fn hyper_proxy_refusing_connections_opens_the_breaker_and_a_blackhole_times_out() {
    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let build = || {
        Policy::builder()
            .http()
            .timeout(TIMEOUT)
            .bulkhead(bulkhead())
            .circuit_breaker(breaker())
            .build()
            .unwrap()
    };

    proxy.set(ProxyMode::Refuse);
    let policy = build();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(hyper_client());
    for _ in 0..TRIP {
        let err = within("refused", fetch(&mut svc, &proxy.url()))
            .await
            .unwrap_err();
        assert!(
            matches!(error_kind(err.as_ref()), ErrorKind::Inner(_)),
            "{err:?}"
        );
    }
    assert_eq!(cb.state(), State::Open, "{:?}", cb.snapshot());
    let err = fetch(&mut svc, &proxy.url()).await.unwrap_err();
    assert!(matches!(
        error_kind(err.as_ref()),
        ErrorKind::CircuitOpen(_)
    ));
    assert_eq!(proxy.stats().connections_accepted, TRIP, "not one more");
    assert_eq!(server.stats().connections_accepted, 0);

    proxy.set(ProxyMode::Blackhole);
    let policy = build();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(hyper_client());
    let start = Instant::now();
    let err = within("blackholed", fetch(&mut svc, &proxy.url()))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(_)),
        "{err:?}"
    );
    assert!((TIMEOUT..TIMEOUT + MARGIN).contains(&took), "{took:?}");
    assert_eq!(cb.snapshot().failures, 1);
    proxy
        .wait_for(LIMIT, |s| s.connections_open == 0)
        .await
        .expect("the abandoned connection was closed");
}

// ---------------------------------------------------------------------------------------------
// tonic

async fn channel(url: String) -> Channel {
    let endpoint = Endpoint::from_shared(url).unwrap();
    within("connect", endpoint.connect()).await.unwrap()
}

fn seen_grpc<T>(result: &Result<T, tonic::Status>) -> Seen {
    match result {
        Ok(_) => Seen::Success,
        Err(status) => seen_error(status),
    }
}

#[tokio::test]
async fn grpc_unavailable_burst_opens_the_breaker_which_sheds_load_then_closes_once_healed() {
    for placement in [GrpcStatusIn::TrailersOnly, GrpcStatusIn::Trailers] {
        let server = FlakyServer::builder()
            .fault(Fault::grpc_status(
                tonic::Code::Unavailable,
                "down",
                placement,
            ))
            .start()
            .await
            .unwrap();
        let policy = Policy::builder()
            .grpc()
            .timeout(TIMEOUT)
            .bulkhead(bulkhead())
            .circuit_breaker(breaker())
            .build()
            .unwrap();
        let cb = policy.circuit_breaker().unwrap();
        let mut client = EchoClient::new(policy.layer(channel(server.url()).await));
        let mut tally = Tally::default();

        for _ in 0..10 {
            let result = within("burst", client.say(EchoRequest::new("x"))).await;
            assert_eq!(
                tally.add(seen_grpc(&result)),
                Seen::Failure,
                "{placement:?}"
            );
            assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
            if cb.state() == State::Open {
                break;
            }
        }
        assert_eq!(cb.state(), State::Open, "{placement:?}");
        assert_eq!(tally.failures, TRIP, "{placement:?}");

        let before = server.stats().requests;
        for _ in 0..20 {
            let result = within("open", client.say(EchoRequest::new("x"))).await;
            assert_eq!(
                tally.add(seen_grpc(&result)),
                Seen::Rejected,
                "{placement:?}"
            );
        }
        assert_eq!(server.stats().requests, before, "{placement:?}");

        server.set(Fault::healthy());
        let closed = within("closing", async {
            for _ in 0..10 {
                match client.say(EchoRequest::new("x")).await {
                    Ok(reply) => {
                        assert_eq!(reply.into_inner().message, "x");
                        tally.add(Seen::Success);
                        return cb.state() == State::Closed;
                    }
                    Err(status) => {
                        assert_eq!(tally.add(seen_error(&status)), Seen::Rejected);
                        wait_out(&status).await;
                    }
                }
            }
            false
        })
        .await;
        assert!(closed, "{placement:?}: {:?}", cb.snapshot());
        tally.conserved(&server, &cb);
    }
}

#[tokio::test]
async fn grpc_hanging_server_times_out_with_elapsed_and_the_stream_is_reset() {
    let server = FlakyServer::builder()
        .fault(Fault::hang())
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .grpc()
        .timeout(TIMEOUT)
        .bulkhead(bulkhead())
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut client = EchoClient::new(policy.layer(channel(server.url()).await));

    let start = Instant::now();
    let status = within("hang", client.say(EchoRequest::new("x")))
        .await
        .unwrap_err();
    let took = start.elapsed();
    match error_kind(&status) {
        ErrorKind::TimedOut(elapsed) => assert_eq!(elapsed.after(), TIMEOUT),
        other => panic!("expected a timeout, got {other:?} from {status:?}"),
    }
    assert!((TIMEOUT..TIMEOUT + MARGIN).contains(&took), "{took:?}");
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 1));
    assert_eq!(permits.in_flight(), 0);
    // HTTP/2: the stream is reset; the connection stays open for the next call.
    let stats = server
        .wait_for(LIMIT, |s| s.requests == 1 && s.in_flight == 0)
        .await
        .expect("the server saw the stream reset");
    assert_eq!((stats.connections_accepted, stats.connections_open), (1, 1));
    server.set(Fault::healthy());
    within("healthy", client.say(EchoRequest::new("again")))
        .await
        .unwrap();
    assert_eq!(
        server.stats().connections_accepted,
        1,
        "the same connection"
    );
}

#[tokio::test]
async fn grpc_timeout_sent_downstream_still_fails_the_call_as_elapsed() {
    let server = FlakyServer::builder()
        .fault(Fault::hang())
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .grpc()
        .timeout(TIMEOUT)
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut client = EchoClient::new(policy.layer(channel(server.url()).await));

    // tonic's `Channel` enforces the `grpc-timeout` the policy sends with a timer of its own
    // that ends in the same millisecond as palisade's, and often first; palisade still reports
    // the call as its own timeout, every time.
    for n in 1..=4 {
        let start = Instant::now();
        let status = within("hang", client.say(EchoRequest::new("x")))
            .await
            .unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(error_kind(&status), ErrorKind::TimedOut(_)),
            "{status:?}"
        );
        assert!((TIMEOUT..TIMEOUT + MARGIN).contains(&took), "{took:?}");
        let snap = cb.snapshot();
        assert_eq!(snap.failures, n);
    }
    server
        .wait_for(LIMIT, |s| s.requests == 4 && s.in_flight == 0)
        .await
        .expect("the server saw the streams reset");
}

#[tokio::test]
async fn grpc_reset_mid_body_is_a_status_error_and_a_breaker_failure() {
    let server = FlakyServer::builder()
        .fault(Fault::reset_after(3))
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .grpc()
        .timeout(TIMEOUT)
        .bulkhead(bulkhead())
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut client = EchoClient::new(policy.layer(channel(server.url()).await));

    let status = within("reset", client.say(EchoRequest::new("x")))
        .await
        .unwrap_err();
    assert_ne!(status.code(), tonic::Code::Ok);
    assert!(
        matches!(error_kind(&status), ErrorKind::Inner(_)),
        "{status:?}"
    );
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 1), "{status:?}");
    assert_eq!(permits.in_flight(), 0);
    server
        .wait_for(LIMIT, |s| s.requests == 1 && s.in_flight == 0)
        .await
        .unwrap();
}

#[tokio::test]
async fn grpc_response_deadline_ends_a_slow_reply_timed_out() {
    let server = FlakyServer::builder()
        .fault(Fault::slow_body(100_000, 20_000))
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .grpc()
        .timeout(Duration::from_secs(2))
        .response_deadline(TIMEOUT)
        .bulkhead(bulkhead())
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut client = EchoClient::new(policy.layer(channel(server.url()).await));

    let start = Instant::now();
    let status = within("slow", client.say(EchoRequest::new("x")))
        .await
        .expect_err("no reply within the deadline");
    let took = start.elapsed();
    match error_kind(&status) {
        ErrorKind::TimedOut(elapsed) => assert_eq!(elapsed.after(), TIMEOUT),
        other => panic!("expected a timeout, got {other:?} from {status:?}"),
    }
    assert!((TIMEOUT..TIMEOUT + MARGIN).contains(&took), "{took:?}");
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 1));
    assert_eq!(permits.in_flight(), 0);
    server
        .wait_for(LIMIT, |s| s.in_flight == 0)
        .await
        .expect("the stream was reset");
}

type GrpcResponse = Response<Tracked<tonic::body::Body>>;

#[tokio::test]
async fn grpc_error_status_in_trailers_is_a_failure_that_a_head_only_check_calls_a_success() {
    let server = FlakyServer::builder()
        .fault(Fault::grpc_status(
            tonic::Code::Unavailable,
            "late news",
            GrpcStatusIn::Trailers,
        ))
        .start()
        .await
        .unwrap();

    // The gRPC policy: the trailers decide.
    let policy = Policy::builder()
        .grpc()
        .timeout(TIMEOUT)
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut client = EchoClient::new(policy.layer(channel(server.url()).await));
    let status = within("say", client.say(EchoRequest::new("x")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let snap = cb.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (1, 1),
        "UNAVAILABLE in trailers"
    );

    // A classifier that looks only at the head: a 200 with no grpc-status, so no verdict,
    // taken as a success.
    let undecided = Arc::new(AtomicUsize::new(0));
    let head_only = {
        let undecided = Arc::clone(&undecided);
        move |result: Result<&GrpcResponse, &BoxError>| match result {
            Ok(response) => GrpcClassifier::default()
                .classify_head(response.status(), response.headers())
                .unwrap_or_else(|| {
                    undecided.fetch_add(1, Ordering::SeqCst);
                    Outcome::success()
                }),
            Err(err) => classify_error(err),
        }
    };
    let policy = Policy::builder()
        .grpc()
        .classifier(head_only)
        .timeout(TIMEOUT)
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut client = EchoClient::new(policy.layer(channel(server.url()).await));
    let status = within("say", client.say(EchoRequest::new("x")))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "the caller sees it"
    );
    assert_eq!(
        undecided.load(Ordering::SeqCst),
        1,
        "the head had no status"
    );
    let snap = cb.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (1, 0),
        "the head-only check counted a success"
    );
}

/// Runs `4N` callers at once, each making one call.
async fn grpc_crowd<T>(client: &EchoClient<T>) -> Vec<usize>
where
    EchoClient<T>: Clone + Send + 'static,
    T: tonic::client::GrpcService<tonic::body::Body> + Send,
    T::Error: Into<BoxError>,
    T::Future: Send,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    let callers: Vec<_> = (0..4 * N)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let reply = client.say(EchoRequest::new("x")).await.unwrap();
                reply.into_inner().message.len()
            })
        })
        .collect();
    let mut sizes = Vec::new();
    for caller in callers {
        sizes.push(within("caller", caller).await.unwrap());
    }
    sizes
}

#[tokio::test]
async fn grpc_bulkhead_bounds_the_servers_concurrency_until_each_reply_ends() {
    let server = FlakyServer::builder()
        .fault(Fault::healthy().latency(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let policy = Policy::builder()
        .grpc()
        .timeout(Duration::from_secs(2))
        .bulkhead(queued_bulkhead())
        .build()
        .unwrap();
    let permits = policy.bulkhead().unwrap();
    let client = EchoClient::new(policy.layer(channel(server.url()).await));

    grpc_crowd(&client).await;
    let stats = server.stats();
    assert_eq!(stats.requests, 4 * N as u64);
    assert_eq!(stats.max_in_flight, N);

    server.set(Fault::slow_body(2_000, 10_000));
    server.reset_max_in_flight();
    let sizes = grpc_crowd(&client).await;
    assert!(sizes.iter().all(|&n| n >= 2_000), "{sizes:?}");
    assert_eq!(server.stats().max_in_flight, N, "still at most N");
    assert_eq!(permits.in_flight(), 0);
}

#[tokio::test]
async fn grpc_pushback_keeps_the_breaker_open_and_a_hostile_value_is_capped() {
    let server = FlakyServer::start().await.unwrap();
    let policy = Policy::builder()
        .grpc()
        .timeout(TIMEOUT)
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut client = EchoClient::new(policy.layer(channel(server.url()).await));

    for (placement, pushback_ms, low, high) in [
        (
            GrpcStatusIn::TrailersOnly,
            "2000",
            Duration::from_millis(1_900),
            Duration::from_secs(2),
        ),
        (
            GrpcStatusIn::Trailers,
            "2000",
            Duration::from_millis(1_900),
            Duration::from_secs(2),
        ),
        (
            GrpcStatusIn::Trailers,
            "99999999999999",
            MAX_PUSHBACK - Duration::from_millis(100),
            MAX_PUSHBACK,
        ),
    ] {
        cb.reset();
        server.set(
            Fault::grpc_status(tonic::Code::Unavailable, "busy", placement)
                .pushback_ms(pushback_ms),
        );
        for _ in 0..TRIP {
            let status = within("say", client.say(EchoRequest::new("x")))
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unavailable);
        }
        assert_eq!(cb.state(), State::Open);
        let retry_after = cb.snapshot().retry_after.unwrap();
        assert!(
            (low..=high).contains(&retry_after),
            "{placement:?} {pushback_ms}: {retry_after:?}"
        );
    }
}

#[tokio::test]
async fn grpc_proxy_refusing_connections_opens_the_breaker_and_a_blackhole_times_out() {
    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let build = || {
        Policy::builder()
            .grpc()
            .timeout(TIMEOUT)
            .bulkhead(bulkhead())
            .circuit_breaker(breaker())
            .build()
            .unwrap()
    };
    let lazy = || Endpoint::from_shared(proxy.url()).unwrap().connect_lazy();

    proxy.set(ProxyMode::Refuse);
    let policy = build();
    let cb = policy.circuit_breaker().unwrap();
    let mut client = EchoClient::new(policy.layer(lazy()));
    for _ in 0..TRIP {
        let status = within("refused", client.say(EchoRequest::new("x")))
            .await
            .unwrap_err();
        assert!(
            matches!(error_kind(&status), ErrorKind::Inner(_)),
            "{status:?}"
        );
    }
    assert_eq!(cb.state(), State::Open, "{:?}", cb.snapshot());
    let status = client.say(EchoRequest::new("x")).await.unwrap_err();
    assert!(matches!(error_kind(&status), ErrorKind::CircuitOpen(_)));
    assert_eq!(server.stats().connections_accepted, 0);

    proxy.set(ProxyMode::Blackhole);
    let policy = build();
    let cb = policy.circuit_breaker().unwrap();
    let mut client = EchoClient::new(policy.layer(lazy()));
    let start = Instant::now();
    let status = within("blackholed", client.say(EchoRequest::new("x")))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(error_kind(&status), ErrorKind::TimedOut(_)),
        "{status:?}"
    );
    assert!((TIMEOUT..TIMEOUT + MARGIN).contains(&took), "{took:?}");
    assert_eq!(cb.snapshot().failures, 1);
}
