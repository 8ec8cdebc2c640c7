//! HTTP and gRPC over scripted in-process services (paused time): body-aware outcomes and
//! permits, the whole-response deadline, pushback, `grpc-timeout`, and the header parsers.
#![cfg(feature = "grpc")]

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use palisade::bulkhead::{BulkheadConfig, BulkheadLayer};
use palisade::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow, State};
use palisade::classify::grpc::{Code, GrpcClassifier};
use palisade::classify::http::HttpClassifier;
use palisade::classify::{Classify, Outcome};
use palisade::error::{ErrorKind, error_kind};
use palisade::http::{TrackLayer, UntilBodyEnd};
use palisade::http::{
    Tracked, format_grpc_timeout, parse_grpc_pushback, parse_grpc_timeout, parse_retry_after,
};
use palisade::policy::{NoFallback, Policy, PolicyLayer};
use proptest::prelude::*;
use tokio::sync::mpsc;
use tower::util::BoxCloneService;
use tower::{BoxError, Layer, Service, ServiceExt};

/// A response body fed from a channel, frame by frame, so a test decides when it ends.
struct Pipe {
    rx: mpsc::UnboundedReceiver<Result<Frame<Bytes>, BoxError>>,
}

impl Body for Pipe {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

type Feed = mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>;

/// What the scripted dependency answers: a head, and a body the test feeds.
#[derive(Clone, Default)]
struct Script {
    heads: Arc<Mutex<Vec<(StatusCode, HeaderMap)>>>,
    feeds: Arc<Mutex<Vec<Option<Feed>>>>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Script {
    fn answer(&self, status: u16, headers: &[(&'static str, &str)]) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        self.heads
            .lock()
            .unwrap()
            .push((StatusCode::from_u16(status).unwrap(), map));
    }

    /// The feed of the `n`th body served (taken: dropping it ends that body).
    fn feed(&self, n: usize) -> Feed {
        self.feeds.lock().unwrap()[n]
            .take()
            .expect("each feed is taken once")
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<()>,
        Response = Response<Pipe>,
        Error = Infallible,
        Future = impl std::future::Future<Output = Result<Response<Pipe>, Infallible>> + Send,
    > + Clone
    + Send {
        let script = self.clone();
        tower::service_fn(move |req: Request<()>| {
            let script = script.clone();
            async move {
                script.seen.lock().unwrap().push(req.headers().clone());
                let (status, headers) = {
                    let mut heads = script.heads.lock().unwrap();
                    if heads.is_empty() {
                        (StatusCode::OK, HeaderMap::new())
                    } else {
                        heads.remove(0)
                    }
                };
                let (tx, rx) = mpsc::unbounded_channel();
                script.feeds.lock().unwrap().push(Some(tx));
                let mut res = Response::new(Pipe { rx });
                *res.status_mut() = status;
                *res.headers_mut() = headers;
                Ok::<_, Infallible>(res)
            }
        })
    }
}

fn data(text: &'static str) -> Result<Frame<Bytes>, BoxError> {
    Ok(Frame::data(Bytes::from(text)))
}

fn trailers(pairs: &[(&'static str, &str)]) -> Result<Frame<Bytes>, BoxError> {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    Ok(Frame::trailers(map))
}

fn breaker(minimum_calls: u32) -> CircuitBreakerConfig {
    let mut config = CircuitBreakerConfig::default();
    config.window = SlidingWindow::Count(minimum_calls.max(10));
    config.minimum_calls = minimum_calls;
    config.failure_rate = 0.5;
    config.open_duration = Duration::from_secs(10);
    config.permitted_probes = 1;
    config
}

fn bulkhead(max: usize) -> BulkheadConfig {
    let mut config = BulkheadConfig::default();
    config.max_concurrent = max;
    config
}

async fn call<S>(svc: &mut S) -> Result<S::Response, BoxError>
where
    S: Service<Request<()>, Error = BoxError>,
{
    svc.ready().await?.call(Request::new(())).await
}

async fn read_all<B>(body: B) -> Result<Bytes, BoxError>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    Ok(body.collect().await?.to_bytes())
}

/// Calls, sends the `n`th body served as one frame and ends it, and reads it whole.
async fn whole<S, B>(
    script: &Script,
    svc: &mut S,
    n: usize,
    body: &'static str,
) -> Result<Bytes, BoxError>
where
    S: Service<Request<()>, Response = Response<B>, Error = BoxError>,
    B: Body<Data = Bytes, Error = BoxError>,
{
    let res = call(svc).await?;
    let feed = script.feed(n);
    feed.send(data(body)).unwrap();
    drop(feed);
    read_all(res.into_body()).await
}

#[tokio::test(start_paused = true)]
async fn http_outcome_waits_for_the_body_and_the_permit_is_held_until_then() {
    let script = Script::default();
    let policy = Policy::builder()
        .http()
        .circuit_breaker(breaker(100))
        .bulkhead(bulkhead(4))
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut svc = policy.layer(script.service());

    let res = call(&mut svc).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        permits.in_flight(),
        1,
        "the permit is held while the body streams"
    );
    assert_eq!(
        cb.snapshot().calls,
        0,
        "nothing is recorded before the body ends"
    );

    let feed = script.feed(0);
    feed.send(data("hel")).unwrap();
    feed.send(data("lo")).unwrap();
    drop(feed);
    assert_eq!(read_all(res.into_body()).await.unwrap(), "hello");
    assert_eq!(permits.in_flight(), 0);
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn http_body_error_is_a_failure_and_a_dropped_body_is_ignored() {
    let script = Script::default();
    let policy = Policy::builder()
        .http()
        .circuit_breaker(breaker(100))
        .bulkhead(bulkhead(4))
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut svc = policy.layer(script.service());

    // Reset mid-body: a typed error to the reader, a failure to the breaker.
    let res = call(&mut svc).await.unwrap();
    let feed = script.feed(0);
    feed.send(data("partial")).unwrap();
    feed.send(Err("connection reset".into())).unwrap();
    assert!(read_all(res.into_body()).await.is_err());
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 1));
    assert_eq!(permits.in_flight(), 0);

    // Dropped unread: says nothing about the dependency.
    let res = call(&mut svc).await.unwrap();
    assert_eq!(permits.in_flight(), 1);
    drop(res);
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 1));
    assert_eq!(permits.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn failure_status_is_recorded_at_the_head_and_a_success_status_is_not() {
    let script = Script::default();
    let policy = Policy::builder()
        .http()
        .circuit_breaker(breaker(100))
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(script.service());
    for status in [500, 502, 503, 504, 429, 408] {
        script.answer(status, &[]);
        let res = call(&mut svc).await.unwrap();
        assert_eq!(res.status().as_u16(), status);
    }
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (6, 6));
    for status in [501, 505, 404, 400, 200, 201, 302] {
        script.answer(status, &[]);
        let res = call(&mut svc).await.unwrap();
        let last = script.feeds.lock().unwrap().len() - 1;
        drop(script.feed(last));
        read_all(res.into_body()).await.unwrap();
    }
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (13, 6));
}

/// An HTTP Policy with a 2 s whole-response deadline, a breaker and a bulkhead of one.
fn two_second_deadline() -> PolicyLayer<NoFallback, HttpClassifier, TrackLayer, UntilBodyEnd> {
    Policy::builder()
        .http()
        .response_deadline(Duration::from_secs(2))
        .circuit_breaker(breaker(100))
        .bulkhead(bulkhead(1))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn whole_response_deadline_ends_a_slow_body_with_an_error_never_a_truncated_success() {
    let script = Script::default();
    let policy = two_second_deadline();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut svc = policy.layer(script.service());

    let res = call(&mut svc).await.unwrap();
    let feed = script.feed(0);
    feed.send(data("first bytes")).unwrap();
    let started = tokio::time::Instant::now();
    let err = read_all(res.into_body()).await.unwrap_err();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(_)),
        "{err}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 1));
    assert_eq!(permits.in_flight(), 0);
    drop(feed);
}

#[tokio::test(start_paused = true)]
async fn a_response_deadline_too_far_to_represent_is_no_deadline() {
    let script = Script::default();
    let policy = Policy::builder()
        .http()
        .response_deadline(Duration::from_secs(u64::MAX))
        .build()
        .unwrap();
    let mut svc = policy.layer(script.service());
    let res = call(&mut svc).await.unwrap();
    // The body is read while it is still pending, so the deadline is consulted.
    let reader = tokio::spawn(read_all(res.into_body()));
    tokio::task::yield_now().await;
    let feed = script.feed(0);
    feed.send(data("ok")).unwrap();
    drop(feed);
    assert_eq!(reader.await.unwrap().unwrap(), "ok");
}

#[tokio::test(start_paused = true)]
async fn retry_after_keeps_the_breaker_open_and_a_hostile_value_is_capped() {
    let script = Script::default();
    let mut config = breaker(1);
    config.open_duration = Duration::from_secs(1);
    config.max_pushback = Duration::from_secs(600);
    let policy = Policy::builder()
        .http()
        .circuit_breaker(config)
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(script.service());

    script.answer(503, &[("retry-after", "120")]);
    call(&mut svc).await.unwrap();
    assert_eq!(cb.state(), State::Open);
    assert_eq!(cb.snapshot().retry_after, Some(Duration::from_secs(120)));

    cb.reset();
    script.answer(429, &[("retry-after", "99999999999999999999")]);
    call(&mut svc).await.unwrap();
    // The classifier's cap (5 minutes) applies before the breaker's (10 minutes).
    assert_eq!(cb.snapshot().retry_after, Some(Duration::from_secs(300)));
}

#[tokio::test(start_paused = true)]
async fn half_open_probe_slot_is_held_until_the_body_ends() {
    let script = Script::default();
    let mut config = breaker(1);
    config.open_duration = Duration::from_secs(1);
    let policy = Policy::builder()
        .http()
        .circuit_breaker(config)
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(script.service());
    script.answer(500, &[]);
    call(&mut svc).await.unwrap();
    assert_eq!(cb.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;

    let probe = call(&mut svc).await.unwrap();
    assert_eq!(cb.state(), State::HalfOpen);
    let err = call(&mut svc).await.unwrap_err();
    assert!(matches!(
        error_kind(err.as_ref()),
        ErrorKind::CircuitOpen(_)
    ));
    drop(script.feed(1));
    read_all(probe.into_body()).await.unwrap();
    assert_eq!(cb.state(), State::Closed);
}

/// The breaker reads a `grpc-status` as the caller's client (tonic) does: `00`, ` 0`, `016`
/// and the like are `UNKNOWN` for tonic, so they must not be a success (or another code) for
/// the breaker. Every short value over digits, spaces and signs is judged as the code tonic
/// reads in it, written plainly.
#[test]
fn grpc_status_is_read_as_tonic_reads_it() {
    let alphabet: &[u8] = b"0123456789 +-\t";
    let mut values: Vec<Vec<u8>> = Vec::new();
    for &a in alphabet {
        values.push(vec![a]);
        for &b in alphabet {
            values.push(vec![a, b]);
            for &c in b"016 " {
                values.push(vec![a, b, c]);
            }
        }
    }
    let classifier = GrpcClassifier::default();
    let judged = |value: HeaderValue| {
        let mut head = HeaderMap::new();
        head.insert("grpc-status", value);
        let code = tonic::Status::from_header_map(&head).map(|status| status.code());
        let outcome = classifier.classify_head(StatusCode::OK, &head).unwrap();
        (code, outcome)
    };
    let mut checked = 0;
    for value in values {
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        let (code, outcome) = judged(value.clone());
        let code = code.expect("tonic reads a status");
        let plain = HeaderValue::from_str(&(code as i32).to_string()).unwrap();
        let (_, expected) = judged(plain);
        assert_eq!(
            (outcome.is_success(), outcome.is_failure()),
            (expected.is_success(), expected.is_failure()),
            "grpc-status {value:?}: tonic reads {code:?}"
        );
        checked += 1;
    }
    assert!(checked > 900, "{checked}");
    let mut head = HeaderMap::new();
    head.insert("grpc-status", HeaderValue::from_static("00"));
    assert!(
        classifier
            .classify_head(StatusCode::OK, &head)
            .unwrap()
            .is_failure()
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_status_in_trailers_is_counted_and_a_head_only_check_would_miss_it() {
    let script = Script::default();
    let policy = Policy::builder()
        .grpc()
        .circuit_breaker(breaker(100))
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(script.service());

    script.answer(200, &[("content-type", "application/grpc")]);
    let res = call(&mut svc).await.unwrap();
    // The head alone does not decide: a 200 with no grpc-status (a check of the head only
    // would have called it a success).
    assert_eq!(
        GrpcClassifier::default().classify_head(res.status(), res.headers()),
        None
    );
    let feed = script.feed(0);
    feed.send(data("\0\0\0\0\0")).unwrap();
    feed.send(trailers(&[("grpc-status", "14"), ("grpc-message", "down")]))
        .unwrap();
    drop(feed);
    read_all(res.into_body()).await.unwrap();
    let snap = cb.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (1, 1),
        "UNAVAILABLE in trailers fails"
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_outcomes_for_each_way_a_status_arrives() {
    let script = Script::default();
    let policy = Policy::builder()
        .grpc()
        .circuit_breaker(breaker(100))
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(script.service());
    let counts = |cb: &palisade::circuit_breaker::Handle| {
        let s = cb.snapshot();
        (s.calls, s.failures)
    };

    // Trailers-only: decided at the head.
    script.answer(200, &[("grpc-status", "14")]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(counts(&cb), (1, 1));
    drop(res);

    // OK in trailers.
    let res = call(&mut svc).await.unwrap();
    let feed = script.feed(1);
    feed.send(trailers(&[("grpc-status", "0")])).unwrap();
    read_all(res.into_body()).await.unwrap();
    assert_eq!(counts(&cb), (2, 1));

    // A body that ends with no grpc-status: a failure, never a silent success.
    let res = call(&mut svc).await.unwrap();
    drop(script.feed(2));
    read_all(res.into_body()).await.unwrap();
    assert_eq!(counts(&cb), (3, 2));

    // CANCELLED is ignored; NOT_FOUND is the caller's problem, a success.
    let res = call(&mut svc).await.unwrap();
    script
        .feed(3)
        .send(trailers(&[("grpc-status", "1")]))
        .unwrap();
    read_all(res.into_body()).await.unwrap();
    assert_eq!(counts(&cb), (3, 2));
    let res = call(&mut svc).await.unwrap();
    script
        .feed(4)
        .send(trailers(&[("grpc-status", "5")]))
        .unwrap();
    read_all(res.into_body()).await.unwrap();
    assert_eq!(counts(&cb), (4, 2));

    // A malformed status is UNKNOWN (a failure); an HTTP 503 head is UNAVAILABLE.
    let res = call(&mut svc).await.unwrap();
    script
        .feed(5)
        .send(trailers(&[("grpc-status", "boom")]))
        .unwrap();
    read_all(res.into_body()).await.unwrap();
    assert_eq!(counts(&cb), (5, 3));
    script.answer(503, &[]);
    drop(call(&mut svc).await.unwrap());
    assert_eq!(counts(&cb), (6, 4));
}

#[tokio::test(start_paused = true)]
async fn grpc_pushback_in_trailers_keeps_the_breaker_open() {
    let script = Script::default();
    let mut config = breaker(1);
    config.open_duration = Duration::from_secs(1);
    let policy = Policy::builder()
        .grpc()
        .circuit_breaker(config)
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(script.service());
    let res = call(&mut svc).await.unwrap();
    script
        .feed(0)
        .send(trailers(&[
            ("grpc-status", "8"),
            ("grpc-retry-pushback-ms", "45000"),
        ]))
        .unwrap();
    read_all(res.into_body()).await.unwrap();
    assert_eq!(cb.state(), State::Open);
    assert_eq!(cb.snapshot().retry_after, Some(Duration::from_secs(45)));
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_is_sent_and_lowers_a_larger_callers_value_but_keeps_a_smaller_one() {
    let script = Script::default();
    let policy = Policy::builder()
        .grpc()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let mut svc = policy.layer(script.service());
    let mut send = async |callers: Option<&'static str>| {
        let mut req = Request::new(());
        if let Some(v) = callers {
            req.headers_mut()
                .insert("grpc-timeout", HeaderValue::from_static(v));
        }
        drop(svc.ready().await.unwrap().call(req).await.unwrap());
        let seen = script.seen.lock().unwrap();
        let last = seen.last().unwrap();
        last.get("grpc-timeout")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(send(None).await, "1500000u");
    assert_eq!(send(Some("10S")).await, "1500000u");
    assert_eq!(send(Some("20m")).await, "20m");
}

/// With a response deadline, the server is told the deadline (the whole call's), not the
/// head's timeout: a stream it sends may last until the deadline.
#[tokio::test(start_paused = true)]
async fn grpc_timeout_is_the_response_deadline_when_there_is_one() {
    for (timeout, deadline, sent) in [
        (Some(1), 10, Some("10000000u")),
        (None, 3, Some("3000000u")),
        (Some(5), 2, Some("2000000u")),
        // No deadline for the whole response: a stream read for as long as it lasts, so the
        // server is not told to stop at the head's timeout.
        (Some(1), u64::MAX, None),
    ] {
        let script = Script::default();
        let deadline = match deadline {
            u64::MAX => Duration::MAX,
            secs => Duration::from_secs(secs),
        };
        let mut builder = Policy::builder().grpc().response_deadline(deadline);
        if let Some(timeout) = timeout {
            builder = builder.timeout(Duration::from_secs(timeout));
        }
        let mut svc = builder.build().unwrap().layer(script.service());
        drop(call(&mut svc).await.unwrap());
        let seen = script.seen.lock().unwrap();
        assert_eq!(
            seen[0].get("grpc-timeout").map(|v| v.to_str().unwrap()),
            sent,
            "{timeout:?} {deadline:?}"
        );
    }
}

#[test]
fn classifiers_reject_out_of_range_settings_naming_the_field() {
    let err = HttpClassifier::builder()
        .failure(1000u16)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "failure");
    let err = HttpClassifier::builder()
        .success(42u16)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "success");
    let err = GrpcClassifier::builder()
        .failure(Code(17))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "failure");
    let err = GrpcClassifier::builder().ignore(-1).build().unwrap_err();
    assert_eq!(err.field(), "ignore");
    let err = Policy::builder()
        .http()
        .response_deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "response.deadline");
    let c = HttpClassifier::builder().failure(418u16).build().unwrap();
    assert!(c.is_failure(StatusCode::IM_A_TEAPOT));
}

#[test]
fn retry_after_forms() {
    let cap = Duration::from_secs(300);
    let date = Some(&b"Sun, 06 Nov 1994 08:49:37 GMT"[..]);
    assert_eq!(
        parse_retry_after(b" 2 ", None, cap),
        Some(Duration::from_secs(2))
    );
    assert_eq!(parse_retry_after(b"0", None, cap), Some(Duration::ZERO));
    assert_eq!(parse_retry_after(b"301", None, cap), Some(cap));
    assert_eq!(parse_retry_after(b"-5", None, cap), None);
    assert_eq!(parse_retry_after(b"1.5", None, cap), None);
    assert_eq!(parse_retry_after(b"", None, cap), None);
    // The three HTTP-date formats, measured from the Date header.
    for later in [
        &b"Sun, 06 Nov 1994 08:51:37 GMT"[..],
        b"Sunday, 06-Nov-94 08:51:37 GMT",
        b"Sun Nov  6 08:51:37 1994",
    ] {
        assert_eq!(
            parse_retry_after(later, date, cap),
            Some(Duration::from_secs(120))
        );
    }
    assert_eq!(
        parse_retry_after(b"Sun, 06 Nov 1994 08:00:00 GMT", date, cap),
        Some(Duration::ZERO),
        "a date in the past is now"
    );
    assert_eq!(
        parse_retry_after(b"Fri, 31 Dec 9999 23:59:59 GMT", date, cap),
        Some(cap),
        "a far date is capped, not absent"
    );
    assert_eq!(
        parse_retry_after(b"Sun, 06 Nov 1994 08:51:37 GMT", None, cap),
        None
    );
}

#[test]
fn grpc_timeout_round_trips_rounded_up_within_eight_digits() {
    assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_grpc_timeout(b"2M"), Some(Duration::from_secs(120)));
    assert_eq!(
        parse_grpc_timeout(b"99999999n"),
        Some(Duration::from_nanos(99_999_999))
    );
    for bad in [
        &b""[..],
        b"S",
        b"10",
        b"10s",
        b"-1S",
        b"123456789m",
        b"1.5S",
        b"\xff",
    ] {
        assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
    }
    assert_eq!(format_grpc_timeout(Duration::MAX), "99999999H");
    assert_eq!(format_grpc_timeout(Duration::ZERO), "0n");
    assert_eq!(parse_grpc_pushback(b"", Duration::MAX), None);
}

proptest! {
    #[test]
    fn header_parsers_never_panic_and_respect_the_cap(bytes in proptest::collection::vec(any::<u8>(), 0..40), cap_ms in 0u64..1_000_000) {
        let cap = Duration::from_millis(cap_ms);
        if let Some(d) = parse_retry_after(&bytes, Some(&bytes), cap) {
            prop_assert!(d <= cap);
        }
        if let Some(d) = parse_grpc_pushback(&bytes, cap) {
            prop_assert!(d <= cap);
        }
        let _ = parse_grpc_timeout(&bytes);
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after", value.clone());
            headers.insert("date", value.clone());
            headers.insert("grpc-status", value.clone());
            headers.insert("grpc-retry-pushback-ms", value);
            let _ = HttpClassifier::default().classify_head(StatusCode::SERVICE_UNAVAILABLE, &headers);
            let _ = GrpcClassifier::default().classify_head(StatusCode::OK, &headers);
        }
    }

    #[test]
    fn grpc_timeout_format_is_short_rounded_up_and_parses_back(nanos in any::<u64>(), secs in any::<u64>()) {
        for d in [Duration::from_nanos(nanos), Duration::new(secs, (nanos % 1_000_000_000) as u32)] {
            let text = format_grpc_timeout(d);
            prop_assert!(text.len() <= 9, "{}", text);
            let back = parse_grpc_timeout(text.as_bytes()).unwrap();
            prop_assert!(back >= d || text == "99999999H", "{:?} -> {} -> {:?}", d, text, back);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_deadline_at_the_end_of_time_is_no_deadline_and_never_panics() {
    // tokio panics on a timer within 1 ms of the largest `Instant` (it rounds up): such a
    // deadline is none, as one too far to represent is.
    for before_the_end in [Duration::ZERO, Duration::from_micros(500)] {
        // From now: the clock moves on by an hour each round.
        let after = support::end_of_time_from(tokio::time::Instant::now()) - before_the_end;
        let hangs = tower::service_fn(|_: Request<()>| {
            std::future::pending::<Result<Response<http_body_util::Empty<Bytes>>, BoxError>>()
        });
        let svc = TrackLayer::new().deadline(after).unwrap().layer(hangs);
        let mut call = std::pin::pin!(svc.oneshot(Request::new(())));
        assert!(futures::poll!(call.as_mut()).is_pending(), "{after:?}");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(futures::poll!(call.as_mut()).is_pending(), "{after:?}");
    }
}

/// `.grpc()` (or `.http()`, `.reqwest()`) after `.response_deadline(..)` starts a new adapter:
/// the deadline goes with it, and still ends a body that never finishes.
#[tokio::test(start_paused = true)]
async fn a_response_deadline_set_before_grpc_or_http_is_kept() {
    let deadline = Duration::from_millis(300);
    let grpc = Policy::builder()
        .http()
        .response_deadline(deadline)
        .grpc()
        .build()
        .unwrap();
    ends_a_stalled_body_at(grpc, deadline).await;
    let http = Policy::builder()
        .grpc()
        .response_deadline(deadline)
        .http()
        .build()
        .unwrap();
    ends_a_stalled_body_at(http, deadline).await;
}

/// A body that never finishes, through `policy`, ends in `TimedOut` at `deadline`.
async fn ends_a_stalled_body_at<L>(policy: L, deadline: Duration)
where
    L: Layer<BoxCloneService<Request<()>, Response<StalledBody>, std::io::Error>>,
    L::Service: Service<Request<()>, Response = Response<Tracked<StalledBody>>, Error = BoxError>,
{
    let stalled = BoxCloneService::new(tower::service_fn(|_: Request<()>| async {
        let frames = futures::stream::pending::<Result<Frame<Bytes>, std::io::Error>>();
        Ok::<_, std::io::Error>(Response::new(http_body_util::StreamBody::new(frames)))
    }));
    let started = tokio::time::Instant::now();
    let response = policy
        .layer(stalled)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    // Bounded, so that a lost deadline fails here rather than hanging the test.
    let body = tokio::time::timeout(deadline * 10, response.into_body().collect());
    let err = body.await.expect("the deadline ends the body").unwrap_err();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(e) if e.after() == deadline),
        "{err}"
    );
    assert_eq!(started.elapsed(), deadline);
}

type StalledBody =
    http_body_util::StreamBody<futures::stream::Pending<Result<Frame<Bytes>, std::io::Error>>>;

#[test]
fn grpc_max_pushback_is_kept_to_the_whole_millisecond() {
    let pushback = |cap: Duration, asked: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("14"));
        headers.insert("grpc-retry-pushback-ms", HeaderValue::from_static(asked));
        GrpcClassifier::builder()
            .max_pushback(cap)
            .build()
            .unwrap()
            .classify_head(StatusCode::OK, &headers)
            .unwrap()
            .pushback()
    };
    let asked = "5000";
    assert_eq!(
        pushback(Duration::from_secs(1), asked),
        Some(Duration::from_secs(1))
    );
    // Rounded up to the header's unit: only a cap of zero turns pushback off.
    assert_eq!(
        pushback(Duration::from_micros(1_500), asked),
        Some(Duration::from_millis(2))
    );
    assert_eq!(
        pushback(Duration::from_nanos(1), asked),
        Some(Duration::from_millis(1))
    );
    assert_eq!(pushback(Duration::ZERO, asked), None);
    // A cap past 32 bits of milliseconds (49 days) is that much: a hostile header still gets
    // a bounded pushback, which the breaker caps again with its own `max_pushback`.
    assert_eq!(
        pushback(Duration::MAX, "18446744073709551616"),
        Some(Duration::from_millis(u32::MAX.into()))
    );
}

#[test]
fn default_http_classifier_on_a_tracked_response() {
    let c = HttpClassifier::default();
    let res = Response::builder()
        .status(503)
        .body(Tracked::new(http_body_util::Empty::<Bytes>::new()))
        .unwrap();
    assert!(c.classify(Ok(&res)).is_failure());
    let err: BoxError = "refused".into();
    assert!(
        Classify::<Response<Tracked<http_body_util::Empty<Bytes>>>>::classify(&c, Err(&err))
            .is_failure()
    );
}

fn tenant_request(tenant: &str) -> Request<()> {
    Request::builder()
        .uri("http://inventory.local/items/7")
        .header("x-tenant", tenant)
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn stale_cache_serves_the_last_good_body_with_its_age_and_only_to_the_same_tenant() {
    use palisade::fallback::{FailureKind, Kinds, Stale};
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder()
        .max_entry_bytes(64)
        .max_bytes(1024)
        .user_key(|head| Some(head.headers.get("x-tenant")?.to_str().ok()?.to_owned()))
        .build()
        .unwrap();
    let policy = Policy::builder()
        .http()
        .fallback(cache.clone())
        .fallback_kinds(Kinds::only(FailureKind::FailureResponse).with(FailureKind::InnerError))
        .build()
        .unwrap();
    // An operator's view of the same cache.
    let registry = palisade::observe::Registry::new();
    registry.register_http_stale_cache("inventory", &cache);
    let mut svc = policy.layer(script.service());
    let mut send = async |req: Request<()>| svc.ready().await.unwrap().call(req).await;

    // A good response, read to its end, is kept.
    let res = send(tenant_request("a")).await.unwrap();
    let feed = script.feed(0);
    feed.send(data("stock: 12")).unwrap();
    drop(feed);
    assert_eq!(read_all(res.into_body()).await.unwrap(), "stock: 12");
    assert_eq!(cache.stats().entries, 1);

    // The dependency fails 30 s later: tenant a gets the kept body, marked with its age.
    tokio::time::advance(Duration::from_secs(30)).await;
    script.answer(503, &[]);
    let res = send(tenant_request("a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["age"], "30");
    assert_eq!(
        res.extensions().get::<Stale>().unwrap().age,
        Duration::from_secs(30)
    );
    assert_eq!(read_all(res.into_body()).await.unwrap(), "stock: 12");

    // Tenant b never had a good response: it gets the failure.
    script.answer(503, &[]);
    let res = send(tenant_request("b")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(cache.stats().served, 1);
    let report = &registry.snapshot().stale_caches[0];
    assert_eq!(
        (
            report.name.as_str(),
            report.stats.entries,
            report.stats.served
        ),
        ("inventory", 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn stale_cache_keeps_neither_a_broken_body_nor_one_over_the_cap() {
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder()
        .max_entry_bytes(100)
        .max_bytes(1000)
        .build()
        .unwrap();
    let mut svc = behind_stale_cache(&script, &cache);
    let mut send = async || svc.ready().await.unwrap().call(tenant_request("a")).await;

    // Broken half-way: the caller sees the error, nothing is kept.
    let res = send().await.unwrap();
    let feed = script.feed(0);
    feed.send(data("half")).unwrap();
    feed.send(Err("reset".into())).unwrap();
    assert!(read_all(res.into_body()).await.is_err());
    assert_eq!(cache.stats().entries, 0);

    // Over the cap: passed through whole, uncached.
    let res = send().await.unwrap();
    let feed = script.feed(1);
    let big: &'static str = Box::leak("x".repeat(200).into_boxed_str());
    feed.send(data(big)).unwrap();
    drop(feed);
    assert_eq!(read_all(res.into_body()).await.unwrap().len(), 200);
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.too_large), (0, 1));

    // Small and whole: kept.
    let res = send().await.unwrap();
    let feed = script.feed(2);
    feed.send(data("ok")).unwrap();
    drop(feed);
    read_all(res.into_body()).await.unwrap();
    assert_eq!(cache.stats().entries, 1);
}

#[tokio::test(start_paused = true)]
async fn whole_response_deadline_ends_a_body_whose_frames_are_ready_but_read_too_late() {
    use palisade::error::Elapsed;

    let script = Script::default();
    let policy = two_second_deadline();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut svc = policy.layer(script.service());

    // A fast server: every frame is there before the caller reads any.
    let mut res = call(&mut svc).await.unwrap();
    let feed = script.feed(0);
    for _ in 0..3 {
        feed.send(data("chunk")).unwrap();
    }
    let first = res.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "chunk");

    // A slow reader: the next frame is ready, but the deadline has passed.
    tokio::time::advance(Duration::from_secs(3)).await;
    let err = res.body_mut().frame().await.unwrap().unwrap_err();
    assert!(err.downcast_ref::<Elapsed>().is_some(), "{err}");
    assert!(res.body_mut().frame().await.is_none(), "the body has ended");
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 1));
    assert_eq!(permits.in_flight(), 0);
    drop(feed);

    // The same for trailers ready in time and read after the deadline: they are the end the
    // deadline waits for (a gRPC reply's status), so not a success.
    let mut res = call(&mut svc).await.unwrap();
    let feed = script.feed(1);
    feed.send(data("chunk")).unwrap();
    feed.send(trailers(&[("x-checksum", "1")])).unwrap();
    let first = res.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "chunk");
    tokio::time::advance(Duration::from_secs(3)).await;
    let err = res.body_mut().frame().await.unwrap().unwrap_err();
    assert!(err.downcast_ref::<Elapsed>().is_some(), "{err}");
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (2, 2));
    assert_eq!(permits.in_flight(), 0);
}

/// The `Age` served is the upstream one plus the age here; a hostile upstream value (too
/// large to add to) saturates, and makes the response too old to serve rather than a panic.
#[tokio::test(start_paused = true)]
async fn stale_cache_adds_the_upstream_age_and_saturates_a_hostile_one() {
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder().build().unwrap();
    let mut svc = behind_stale_cache(&script, &cache);

    script.answer(200, &[("age", "100")]);
    whole(&script, &mut svc, 0, "kept").await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    script.answer(503, &[]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["age"], "130");
    assert_eq!(read_all(res.into_body()).await.unwrap(), "kept");

    let max = u64::MAX.to_string();
    script.answer(200, &[("age", &max)]);
    whole(&script, &mut svc, 2, "ancient").await.unwrap();
    assert_eq!(cache.stats().entries, 1);
    script.answer(503, &[]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn stale_cache_keeps_no_response_classified_as_ignored() {
    use palisade::http::HttpStaleCache;

    type Res = Response<Tracked<Pipe>>;
    // A 404 says nothing about the dependency: ignored, neither success nor failure.
    let classifier = |res: Result<&Res, &BoxError>| match res {
        Ok(r) if r.status() == StatusCode::NOT_FOUND => Outcome::ignored(),
        other => HttpClassifier::default().classify(other),
    };
    let script = Script::default();
    let cache = HttpStaleCache::builder().build().unwrap();
    let policy = Policy::builder()
        .http()
        .classifier(classifier)
        .circuit_breaker(breaker(100))
        .fallback(cache.clone())
        .build()
        .unwrap();
    let mut svc = policy.layer(script.service());

    script.answer(404, &[]);
    whole(&script, &mut svc, 0, "no such item").await.unwrap();
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.stored), (0, 0));

    // The dependency fails: there is no last good response to serve.
    script.answer(503, &[]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn grpc_stale_cache_keeps_only_a_body_whose_trailers_say_ok() {
    use palisade::http::HttpStaleCache;

    // No breaker: the fallback alone decides what the trailers mean.
    let script = Script::default();
    let cache = HttpStaleCache::builder().build().unwrap();
    let policy = Policy::builder()
        .grpc()
        .fallback(cache.clone())
        .build()
        .unwrap();
    let mut svc = policy.layer(script.service());
    let mut answer = async |n: usize, status: &'static str| {
        script.answer(200, &[("content-type", "application/grpc")]);
        let res = call(&mut svc).await.unwrap();
        let feed = script.feed(n);
        feed.send(data("\0\0\0\0\0")).unwrap();
        feed.send(trailers(&[("grpc-status", status)])).unwrap();
        drop(feed);
        read_all(res.into_body()).await.unwrap();
    };

    // CANCELLED is ignored and UNAVAILABLE a failure: neither is a last good response.
    answer(0, "1").await;
    answer(1, "14").await;
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.stored), (0, 0));
    answer(2, "0").await;
    assert_eq!(cache.stats().entries, 1);

    // Served stale, the reply ends as it did, with its status in the trailers.
    script.answer(200, &[("grpc-status", "14")]);
    let res = call(&mut svc).await.unwrap();
    let stale = res.into_body().collect().await.unwrap();
    assert_eq!(stale.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(stale.to_bytes(), "\0\0\0\0\0");
    assert_eq!(cache.stats().served, 1);
}

/// Layers stacked by hand around a Policy over one body (a global bulkhead and breaker around a
/// per-dependency Policy): each breaker's outcome and each bulkhead's permit waits for the
/// body's end, not only the outermost one's.
#[tokio::test(start_paused = true)]
async fn two_bulkheads_and_two_breakers_over_one_body_all_wait_for_its_end() {
    let script = Script::default();
    let outer_breaker = CircuitBreakerLayer::new(&breaker(100))
        .unwrap()
        .with_classifier(HttpClassifier::default());
    let outer_bulkhead = BulkheadLayer::new(&bulkhead(10))
        .unwrap()
        .hold(UntilBodyEnd);
    let (ob, op) = (outer_breaker.handle(), outer_bulkhead.handle());
    let policy = Policy::builder()
        .http()
        .circuit_breaker(breaker(100))
        .bulkhead(bulkhead(10))
        .build()
        .unwrap();
    let (ib, ip) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let mut svc = tower::ServiceBuilder::new()
        .layer(outer_breaker)
        .layer(outer_bulkhead)
        .service(policy.layer(script.service()));

    // A body that breaks half-way: both breakers count a failure, at its end.
    let res = call(&mut svc).await.unwrap();
    assert_eq!(
        (op.in_flight(), ip.in_flight()),
        (1, 1),
        "both permits held"
    );
    assert_eq!((ob.snapshot().calls, ib.snapshot().calls), (0, 0));
    let feed = script.feed(0);
    feed.send(data("par")).unwrap();
    feed.send(Err("connection reset".into())).unwrap();
    assert!(read_all(res.into_body()).await.is_err());
    assert_eq!(
        (op.in_flight(), ip.in_flight()),
        (0, 0),
        "both permits back"
    );
    for snap in [ob.snapshot(), ib.snapshot()] {
        assert_eq!((snap.calls, snap.failures), (1, 1), "{snap:?}");
    }

    // A body dropped half-way: both permits come back and neither breaker counts it.
    let res = call(&mut svc).await.unwrap();
    assert_eq!((op.in_flight(), ip.in_flight()), (1, 1));
    drop(res);
    assert_eq!((op.in_flight(), ip.in_flight()), (0, 0));
    assert_eq!((ob.snapshot().calls, ib.snapshot().calls), (1, 1));

    // A body that ends cleanly: one success each.
    let res = call(&mut svc).await.unwrap();
    let feed = script.feed(2);
    feed.send(data("ok")).unwrap();
    drop(feed);
    assert_eq!(read_all(res.into_body()).await.unwrap(), "ok");
    assert_eq!((op.in_flight(), ip.in_flight()), (0, 0));
    for snap in [ob.snapshot(), ib.snapshot()] {
        assert_eq!((snap.calls, snap.failures), (2, 1), "{snap:?}");
    }
}

/// The stale cache's size is reported when a response is kept, at the end of its body, not
/// when the head goes by (the gauge would stay one behind).
#[tokio::test(start_paused = true)]
async fn the_stale_cache_reports_its_size_once_a_body_is_kept() {
    use palisade::events::Event;
    use palisade::http::HttpStaleCache;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let heard = seen.clone();
    let script = Script::default();
    let policy = Policy::builder()
        .http()
        .fallback(HttpStaleCache::builder().build().unwrap())
        .listener(move |event: &Event<'_>| {
            if let Event::StaleCacheUpdated { entries, .. } = event {
                heard.lock().unwrap().push(*entries);
            }
        })
        .build()
        .unwrap();
    let mut svc = policy.layer(script.service());

    let res = call(&mut svc).await.unwrap();
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing kept before the body ends"
    );
    let feed = script.feed(0);
    feed.send(data("kept")).unwrap();
    drop(feed);
    read_all(res.into_body()).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [1]);

    // A body that breaks is not kept: nothing to report.
    let res = call(&mut svc).await.unwrap();
    script.feed(1).send(Err("reset".into())).unwrap();
    assert!(read_all(res.into_body()).await.is_err());
    assert_eq!(*seen.lock().unwrap(), [1]);
}

/// A whole-response deadline that ends a call is a timeout the listeners hear of, once: at the
/// head, in the body, and when the Policy's own timeout runs out at the same instant.
#[tokio::test(start_paused = true)]
async fn a_response_deadline_that_ends_a_call_is_heard_as_one_timeout() {
    use palisade::events::Event;

    let two = Duration::from_secs(2);
    for (hang_head, timeout) in [(true, None), (true, Some(two)), (false, None)] {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let hear = heard.clone();
        let mut builder =
            Policy::builder()
                .http()
                .response_deadline(two)
                .listener(move |event: &Event<'_>| {
                    if let Event::TimedOut { after, .. } = event {
                        hear.lock().unwrap().push(*after);
                    }
                });
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        let policy = builder.build().unwrap();
        let script = Script::default();
        let err = if hang_head {
            let hanging = tower::service_fn(|_: Request<()>| {
                std::future::pending::<Result<Response<Pipe>, Infallible>>()
            });
            policy
                .layer(hanging)
                .oneshot(Request::new(()))
                .await
                .unwrap_err()
        } else {
            let res = call(&mut policy.layer(script.service())).await.unwrap();
            read_all(res.into_body()).await.unwrap_err()
        };
        let case = format!("head {hang_head}, timeout {timeout:?}");
        assert!(
            matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(_)),
            "{case}: {err}"
        );
        assert_eq!(*heard.lock().unwrap(), [two], "{case}");
    }
}

/// A body whose end is known only after its last frame (END_STREAM arriving on its own): the
/// tracked body does not report its end until it has recorded the outcome, so a caller that
/// stops polling at `is_end_stream` (as hyper does) does not leave the call unrecorded.
#[tokio::test(start_paused = true)]
async fn a_tracked_body_reports_its_end_only_once_the_outcome_is_recorded() {
    use std::sync::atomic::{AtomicBool, Ordering};

    struct EndsLater {
        sent: bool,
        end: Arc<AtomicBool>,
    }
    impl Body for EndsLater {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if !self.sent {
                self.sent = true;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from("all")))))
            } else if self.end.load(Ordering::SeqCst) {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        }
        fn is_end_stream(&self) -> bool {
            self.sent && self.end.load(Ordering::SeqCst)
        }
    }

    let end = Arc::new(AtomicBool::new(false));
    let ends = end.clone();
    let policy = Policy::builder()
        .http()
        .circuit_breaker(breaker(100))
        .bulkhead(bulkhead(1))
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let svc = policy.layer(tower::service_fn(move |_: Request<()>| {
        let end = ends.clone();
        async move { Ok::<_, Infallible>(Response::new(EndsLater { sent: false, end })) }
    }));
    let mut body = svc.oneshot(Request::new(())).await.unwrap().into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "all"
    );
    end.store(true, Ordering::SeqCst); // END_STREAM arrives after the last frame
    assert!(!body.is_end_stream(), "the outcome waits: not the end yet");
    assert!(body.frame().await.is_none());
    assert!(body.is_end_stream());
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 0));
    assert_eq!(permits.in_flight(), 0);
}

/// A body of known length (its size hint counts down) whose END_STREAM comes on its own after
/// the last data, as hyper's HTTP/2 body with a `Content-Length` may send it; then what
/// `after` says. (Its `Pending` registers no waker: the tests never wait on it.)
struct KnownLength {
    left: Vec<Bytes>,
    after: After,
}

enum After {
    /// END_STREAM not here yet.
    Pending,
    /// Trailers, then the end.
    Trailers(Option<HeaderMap>),
    /// An error, as `http_body_util::Limited` fails the read past its limit after reporting
    /// none left.
    Fail,
}

impl Body for KnownLength {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.left.pop() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match &mut self.after {
            After::Pending => Poll::Pending,
            After::Trailers(trailers) => {
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            After::Fail => Poll::Ready(Some(Err("length limit reached".into()))),
        }
    }
    fn is_end_stream(&self) -> bool {
        false
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left.iter().map(|b| b.len() as u64).sum())
    }
}

/// The body of a response `KnownLength` answers, read until its size hint says none is left.
async fn read_to_its_length<B>(body: &mut B) -> Vec<u8>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut read = Vec::new();
    while body.size_hint().exact() != Some(0) {
        read.extend_from_slice(&body.frame().await.unwrap().unwrap().into_data().unwrap());
    }
    read
}

/// A caller that stops once a body's known length is read and drops the body (hyper's HTTP/1
/// server writing a known length, as a proxy does) does not leave the call unrecorded, its
/// permit held until the drop; a gRPC reply's outcome still waits for its trailers, and so
/// does every outcome on a body that a gRPC classifier also watches.
#[tokio::test(start_paused = true)]
async fn a_body_read_to_its_known_length_and_dropped_is_recorded() {
    let known = |after: fn() -> After| {
        tower::service_fn(move |_: Request<()>| async move {
            let left = vec![Bytes::from("two"), Bytes::from("one ")];
            let mut res = Response::new(KnownLength {
                left,
                after: after(),
            });
            res.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            Ok::<_, Infallible>(res)
        })
    };
    let policy = Policy::builder()
        .http()
        .circuit_breaker(breaker(100))
        .bulkhead(bulkhead(1))
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let svc = policy.layer(known(|| After::Pending));
    let mut body = svc.oneshot(Request::new(())).await.unwrap().into_body();
    assert_eq!(body.size_hint().exact(), Some(7));
    assert_eq!(permits.in_flight(), 1, "held while the body streams");
    assert_eq!(read_to_its_length(&mut body).await, b"one two");
    // Every byte promised has come: the call is a success, and its permit is back.
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 0));
    assert_eq!(permits.in_flight(), 0);
    drop(body);
    assert_eq!(cb.snapshot().calls, 1);

    // gRPC: the status is in the trailers, after the last byte of a known length.
    let unavailable = || {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("14"));
        After::Trailers(Some(trailers))
    };
    let policy = Policy::builder()
        .grpc()
        .circuit_breaker(breaker(100))
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut body = policy
        .layer(known(unavailable))
        .oneshot(Request::new(()))
        .await
        .unwrap()
        .into_body();
    read_to_its_length(&mut body).await;
    assert_eq!(cb.snapshot().calls, 0, "the outcome waits for the trailers");
    assert!(body.frame().await.unwrap().unwrap().is_trailers());
    let snap = cb.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (1, 1),
        "UNAVAILABLE in trailers"
    );

    // An HTTP breaker under a gRPC one: both wait for the trailers.
    let policy = Policy::builder()
        .http()
        .circuit_breaker(breaker(100))
        .build()
        .unwrap();
    let inner = policy.circuit_breaker().unwrap();
    let outer_layer = opens_at_once(GrpcClassifier::default());
    let outer = outer_layer.handle();
    let mut body = outer_layer
        .layer(policy.layer(known(unavailable)))
        .oneshot(Request::new(()))
        .await
        .unwrap()
        .into_body();
    read_to_its_length(&mut body).await;
    assert_eq!(
        (inner.snapshot().calls, outer.snapshot().calls),
        (0, 0),
        "both wait for the trailers"
    );
    assert!(body.frame().await.unwrap().unwrap().is_trailers());
    // The outer breaker opens at its first failure, UNAVAILABLE; the inner one, by status,
    // counts a success.
    assert_eq!(outer.state(), State::Open);
    let snap = inner.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 0));
}

/// A response whose length hint says its body is empty (`Content-Length: 0`, its END_STREAM
/// still to come in a frame of its own) is settled at its head: a caller writing that length
/// never polls the body.
#[tokio::test(start_paused = true)]
async fn a_body_known_to_be_empty_is_settled_at_its_head() {
    let policy = Policy::builder()
        .http()
        .circuit_breaker(breaker(100))
        .bulkhead(bulkhead(1))
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let svc = policy.layer(tower::service_fn(|_: Request<()>| async {
        let body = KnownLength {
            left: Vec::new(),
            after: After::Pending,
        };
        Ok::<_, Infallible>(Response::new(body))
    }));
    let body = svc.oneshot(Request::new(())).await.unwrap().into_body();
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 0));
    assert_eq!(permits.in_flight(), 0);
    drop(body);
    assert_eq!(cb.snapshot().calls, 1);

    // A gRPC reply's status may come in trailers after an empty body: its permit (taken
    // inside the gRPC breaker, before it reads the head), and the outcome of an HTTP breaker
    // over it, wait for them.
    let policy = Policy::builder()
        .grpc()
        .circuit_breaker(breaker(100))
        .bulkhead(bulkhead(1))
        .build()
        .unwrap();
    let (cb, permits) = (
        policy.circuit_breaker().unwrap(),
        policy.bulkhead().unwrap(),
    );
    let http_breaker = CircuitBreakerLayer::builder()
        .build()
        .unwrap()
        .with_classifier(HttpClassifier::default());
    let http_outer = http_breaker.handle();
    let svc = http_breaker.layer(policy.layer(tower::service_fn(|_: Request<()>| async {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("14"));
        let mut res = Response::new(KnownLength {
            left: Vec::new(),
            after: After::Trailers(Some(trailers)),
        });
        res.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        Ok::<_, Infallible>(res)
    })));
    let mut body = svc.oneshot(Request::new(())).await.unwrap().into_body();
    assert_eq!(permits.in_flight(), 1, "held until the trailers");
    assert_eq!((cb.snapshot().calls, http_outer.snapshot().calls), (0, 0));
    assert!(body.frame().await.unwrap().unwrap().is_trailers());
    assert_eq!(permits.in_flight(), 0);
    assert_eq!(cb.snapshot().failures, 1, "UNAVAILABLE in trailers");
    assert_eq!(http_outer.snapshot().calls, 1);
}

/// A stale cache keeps a body only at its own end, not at the last byte its length hint
/// promised: a body whose hint was wrong (`http_body_util::Limited` at its limit) and whose
/// next read fails is not kept, truncated, to be served later as whole.
#[tokio::test(start_paused = true)]
async fn a_body_failing_after_its_known_length_is_not_kept_by_the_stale_cache() {
    use palisade::http::HttpStaleCache;

    let cache = HttpStaleCache::builder().build().unwrap();
    let policy = Policy::builder()
        .http()
        .bulkhead(bulkhead(1))
        .fallback(cache.clone())
        .build()
        .unwrap();
    let permits = policy.bulkhead().unwrap();
    let svc = policy.layer(tower::service_fn(|_: Request<()>| async {
        let body = KnownLength {
            left: vec![Bytes::from("truncated")],
            after: After::Fail,
        };
        Ok::<_, Infallible>(Response::new(body))
    }));
    let mut body = svc.oneshot(Request::new(())).await.unwrap().into_body();
    assert_eq!(permits.in_flight(), 1, "held while the body streams");
    assert_eq!(read_to_its_length(&mut body).await, b"truncated");
    assert_eq!(permits.in_flight(), 0);
    assert!(body.frame().await.unwrap().is_err());
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.stored), (0, 0));
}

/// A body served from the stale cache ends at its last byte (its length is certain): a
/// breaker outside the fallback records it at once, as a caller writing a known length stops
/// polling there.
#[tokio::test(start_paused = true)]
async fn a_replayed_body_ends_at_its_last_byte() {
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder().build().unwrap();
    let outer_layer = CircuitBreakerLayer::builder()
        .build()
        .unwrap()
        .with_classifier(HttpClassifier::default());
    let outer = outer_layer.handle();
    let mut svc = outer_layer.layer(behind_stale_cache(&script, &cache));
    whole(&script, &mut svc, 0, "abc").await.unwrap();
    assert_eq!(outer.snapshot().calls, 1);
    script.answer(503, &[]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "served stale");
    let mut body = res.into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "abc"
    );
    assert!(body.is_end_stream());
    assert_eq!(outer.snapshot().calls, 2, "recorded at the last byte");
}

/// A gRPC classifier for which `PERMISSION_DENIED` is a failure.
fn strict() -> GrpcClassifier {
    GrpcClassifier::builder()
        .failure(Code::PERMISSION_DENIED)
        .build()
        .unwrap()
}

/// A breaker that opens at the first failure, by `classifier`.
fn opens_at_once(classifier: GrpcClassifier) -> CircuitBreakerLayer<GrpcClassifier> {
    CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap()
        .with_classifier(classifier)
}

/// The `n`th call: a gRPC reply whose trailers say `status`, read to its end.
async fn grpc_reply<S, B>(script: &Script, svc: &mut S, n: usize, status: &str)
where
    S: Service<Request<()>, Response = Response<B>, Error = BoxError>,
    B: Body<Data = Bytes, Error = BoxError>,
{
    script.answer(200, &[("content-type", "application/grpc")]);
    let res = call(svc).await.unwrap();
    let feed = script.feed(n);
    feed.send(data("\0\0\0\0\0")).unwrap();
    feed.send(trailers(&[("grpc-status", status)])).unwrap();
    drop(feed);
    read_all(res.into_body()).await.unwrap();
}

/// Layers over one body with different gRPC classifiers: the breaker's pending outcome is
/// judged by its own classifier's rule, not by that of a fallback further out.
#[tokio::test(start_paused = true)]
async fn a_fallback_further_out_does_not_change_the_rule_a_breaker_is_judged_by() {
    use palisade::fallback::FallbackLayer;
    let script = Script::default();
    let breaker = opens_at_once(strict());
    let handle = breaker.handle();
    let mut svc = tower::ServiceBuilder::new()
        .layer(
            FallbackLayer::new(palisade::http::HttpStaleCache::builder().build().unwrap())
                .with_classifier(GrpcClassifier::default()),
        )
        .layer(breaker)
        .layer(TrackLayer::new())
        .service(script.service());

    grpc_reply(&script, &mut svc, 0, "7").await; // PERMISSION_DENIED
    // PERMISSION_DENIED is a failure to this breaker: one is enough to open it.
    assert_eq!(handle.state(), State::Open);
    assert_eq!(handle.snapshot().consecutive_trips, 1);
}

/// Two breakers over one body with different gRPC classifiers (a global breaker around a
/// per-method one): each judges the trailers by its own classifier's rule.
#[tokio::test(start_paused = true)]
async fn two_breakers_over_one_body_each_judge_the_trailers_by_their_own_rule() {
    let script = Script::default();
    let strict = opens_at_once(strict());
    let global = opens_at_once(GrpcClassifier::default());
    let (inner, outer) = (strict.handle(), global.handle());
    let mut svc = tower::ServiceBuilder::new()
        .layer(global)
        .layer(strict)
        .layer(TrackLayer::new())
        .service(script.service());

    grpc_reply(&script, &mut svc, 0, "7").await; // PERMISSION_DENIED
    assert_eq!(inner.state(), State::Open, "a failure to the inner breaker");
    assert_eq!(outer.state(), State::Closed);
    let snap = outer.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (1, 0),
        "a success to the global one"
    );
}

/// A stale cache over a breaker with another classifier keeps a copy by its own classifier's
/// rule: an HTTP breaker counts a gRPC `UNAVAILABLE` in the trailers as a success (it reads
/// the head), and the gRPC fallback's cache still does not keep that reply.
#[tokio::test(start_paused = true)]
async fn a_stale_cache_keeps_a_copy_by_its_own_classifiers_rule() {
    use palisade::fallback::FallbackLayer;
    use palisade::http::HttpStaleCache;
    let script = Script::default();
    let cache = HttpStaleCache::builder().build().unwrap();
    let breaker = CircuitBreakerLayer::new(&breaker(100))
        .unwrap()
        .with_classifier(HttpClassifier::default());
    let handle = breaker.handle();
    let mut svc = tower::ServiceBuilder::new()
        .layer(FallbackLayer::new(cache.clone()).with_classifier(GrpcClassifier::default()))
        .layer(breaker)
        .layer(TrackLayer::new())
        .service(script.service());

    grpc_reply(&script, &mut svc, 0, "14").await; // UNAVAILABLE
    assert_eq!(cache.stats().entries, 0, "not a good reply to the fallback");
    grpc_reply(&script, &mut svc, 1, "0").await;
    assert_eq!(cache.stats().entries, 1);
    let snap = handle.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (2, 0),
        "the head is what the breaker reads"
    );
}

/// An HTTP breaker outside a gRPC one over the same body judges by the head, as its
/// classifier says, not by the inner breaker's trailer rule.
#[tokio::test(start_paused = true)]
async fn an_http_breaker_outside_a_grpc_one_judges_the_head() {
    let script = Script::default();
    let outer = CircuitBreakerLayer::new(&breaker(100))
        .unwrap()
        .with_classifier(HttpClassifier::default());
    let inner = opens_at_once(strict());
    let (outer_handle, inner_handle) = (outer.handle(), inner.handle());
    let mut svc = tower::ServiceBuilder::new()
        .layer(outer)
        .layer(inner)
        .layer(TrackLayer::new())
        .service(script.service());
    grpc_reply(&script, &mut svc, 0, "7").await; // PERMISSION_DENIED
    assert_eq!(inner_handle.state(), State::Open);
    let snap = outer_handle.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 0));
}

/// A stale response replayed by one cache and kept by another further out is kept whole, not
/// as an empty body.
#[tokio::test(start_paused = true)]
async fn a_replayed_stale_body_kept_by_a_cache_further_out_is_kept_whole() {
    use palisade::fallback::FallbackLayer;
    use palisade::http::HttpStaleCache;
    let script = Script::default();
    let near = HttpStaleCache::builder()
        .max_stale(Duration::from_secs(60))
        .build()
        .unwrap();
    let far = HttpStaleCache::builder().build().unwrap();
    let mut svc = tower::ServiceBuilder::new()
        .layer(FallbackLayer::new(far.clone()).with_classifier(HttpClassifier::default()))
        .service(behind_stale_cache(&script, &near));
    // The near cache keeps a response through a client of its own, so that the far one has
    // nothing yet.
    let mut near_only = behind_stale_cache(&script, &near);
    whole(&script, &mut near_only, 0, "stock: 12")
        .await
        .unwrap();
    assert_eq!(near.stats().entries, 1);
    // The dependency fails: the near cache replays, and the far one keeps the replay.
    script.answer(503, &[]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(read_all(res.into_body()).await.unwrap(), "stock: 12");
    assert_eq!(far.stats().entries, 1);
    // Past the near cache's `max_stale`, only the far one can answer: with the whole body.
    tokio::time::advance(Duration::from_secs(120)).await;
    script.answer(503, &[]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(read_all(res.into_body()).await.unwrap(), "stock: 12");
}

/// Two stale caches stacked over one call (the Policy's, and one further out by hand): one
/// body read to its end is kept by both, each with its own copy; the outer one's copy does not
/// take the place of the inner one's.
#[tokio::test(start_paused = true)]
async fn stacked_stale_caches_each_keep_the_body_they_both_watched() {
    use palisade::fallback::FallbackLayer;
    use palisade::http::HttpStaleCache;
    let script = Script::default();
    let near = HttpStaleCache::builder().build().unwrap();
    // Room for "abc" under its key ("GET /": 4 bytes), not for "stock: 12".
    let far = HttpStaleCache::builder()
        .max_entry_bytes(8)
        .build()
        .unwrap();
    let mut svc = tower::ServiceBuilder::new()
        .layer(FallbackLayer::new(far.clone()).with_classifier(HttpClassifier::default()))
        .service(behind_stale_cache(&script, &near));
    whole(&script, &mut svc, 0, "abc").await.unwrap();
    assert_eq!((near.stats().entries, far.stats().entries), (1, 1));
    // A body too large for the far cache's copy still fills the near one's.
    whole(&script, &mut svc, 1, "stock: 12").await.unwrap();
    assert_eq!(
        far.stats().entries,
        0,
        "the far cache's older entry is dropped"
    );
    script.answer(503, &[]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(read_all(res.into_body()).await.unwrap(), "stock: 12");
    assert_eq!((near.stats().served, far.stats().served), (1, 0));
}

/// `.http()` sets its own classifier: one set before it would be silently lost, so that is a
/// `ConfigError` naming `classifier`; set after it, the classifier is used.
#[tokio::test(start_paused = true)]
async fn a_classifier_set_before_http_is_a_config_error_and_after_it_is_used() {
    let conflicts = || HttpClassifier::builder().failure(409u16).build().unwrap();
    let err = Policy::builder()
        .circuit_breaker(breaker(1))
        .classifier(conflicts())
        .http()
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "classifier");
    assert!(err.to_string().contains(".http()"), "{err}");
    let err = Policy::builder()
        .classifier(conflicts())
        .grpc()
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "classifier");
    // Set again after `.http()`, it is the one used: nothing is lost.
    assert!(
        Policy::builder()
            .classifier(conflicts())
            .http()
            .classifier(conflicts())
            .build()
            .is_ok()
    );

    let script = Script::default();
    let policy = Policy::builder()
        .circuit_breaker(breaker(100))
        .http()
        .classifier(conflicts())
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(script.service());
    script.answer(409, &[]);
    let res = call(&mut svc).await.unwrap();
    drop(script.feed(0));
    read_all(res.into_body()).await.unwrap();
    assert_eq!(
        cb.snapshot().failures,
        1,
        "409 is a failure to this classifier"
    );
}

/// The stale cache keeps only responses it may serve to another request with the same key:
/// not a partial response nor one to a request's `Range` or conditional headers (206, 416,
/// 304, 412), nothing that sets a cookie, nothing marked `no-store` or `private`, nothing that
/// varies on everything, and no answer to a request carrying credentials when no user key
/// keeps users apart.
#[tokio::test(start_paused = true)]
async fn stale_cache_keeps_only_responses_it_may_share() {
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder().build().unwrap();
    let mut svc = behind_stale_cache(&script, &cache);
    let item = || {
        Request::get("http://inventory.local/items/7")
            .body(())
            .unwrap()
    };
    // The dependency answers `status` with `headers` and the body "abc"; the caller reads
    // the response it gets (from the dependency, or stale) and sees its status.
    let mut n = 0;
    let mut answer = async |status: u16, headers: &[(&'static str, &str)], req| {
        script.answer(status, headers);
        let res = call_with(&mut svc, req).await.unwrap();
        let feed = script.feed(n);
        n += 1;
        let _ = feed.send(data("abc")); // unread when the response is a stale one
        drop(feed);
        let seen = res.status().as_u16();
        read_all(res.into_body()).await.unwrap();
        seen
    };

    // A 206 is not kept, and leaves the 200 before it.
    answer(200, &[], item()).await;
    answer(206, &[("content-range", "bytes 0-2/9")], item()).await;
    assert_eq!(answer(503, &[], item()).await, 200);
    // Nor do the answers to a request's `Range` or conditional headers (not in the key): a
    // 304 served to a caller who sent no `If-None-Match` would be an empty answer.
    for status in [304, 412, 416] {
        answer(status, &[("etag", "\"v1\"")], item()).await;
        assert_eq!(answer(503, &[], item()).await, 200, "after a {status}");
    }
    // Unless it forbids sharing: a 304 marked `no-store` updates the stored response's
    // headers (RFC 9111, 4.3.4), so the older entry goes.
    answer(304, &[("cache-control", "no-store")], item()).await;
    assert_eq!(cache.stats().entries, 0);
    // A response that may not be shared is not kept, and drops the one before it.
    for headers in [
        &[("set-cookie", "sid=alice")][..],
        &[("cache-control", "max-age=60, Private")],
        &[("cache-control", "no-store")],
        &[("cache-control", "must-revalidate")],
        &[("cache-control", "no-cache")],
        &[("cache-control", "public, s-maxage=60")],
        &[("vary", "accept, *")],
    ] {
        answer(200, &[], item()).await;
        assert_eq!(cache.stats().entries, 1, "a good response kept first");
        answer(200, headers, item()).await;
        assert_eq!(cache.stats().entries, 0, "{headers:?}");
    }
    let mut with_credentials = item();
    with_credentials
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("Bearer alice"));
    answer(200, &[], with_credentials).await;
    assert_eq!(cache.stats().entries, 0, "an answer to alice's credentials");

    answer(
        200,
        &[("cache-control", "max-age=60"), ("vary", "accept")],
        item(),
    )
    .await;
    assert_eq!(cache.stats().entries, 1);
    assert_eq!(answer(503, &[], item()).await, 200);
    assert_eq!(
        cache.stats().served,
        5,
        "after the 206, the 304, 412 and 416, and here"
    );
}

/// The script's service behind `.http()`, with `cache` as the fallback.
fn behind_stale_cache(
    script: &Script,
    cache: &palisade::http::HttpStaleCache,
) -> impl Service<Request<()>, Response = Response<Tracked<Pipe>>, Error = BoxError> {
    Policy::builder()
        .http()
        .fallback(cache.clone())
        .build()
        .unwrap()
        .layer(script.service())
}

async fn call_with<S>(svc: &mut S, req: Request<()>) -> Result<S::Response, BoxError>
where
    S: Service<Request<()>, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

/// An entry's weight counts its key's (method, URI, user key): a cache of long URIs stays
/// within `max_bytes`.
#[tokio::test(start_paused = true)]
async fn a_stale_cache_entry_weighs_its_key_too() {
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder().build().unwrap();
    let mut svc = behind_stale_cache(&script, &cache);
    let uri = format!("/{}", "q".repeat(1_000));
    let res = call_with(&mut svc, Request::get(uri.as_str()).body(()).unwrap())
        .await
        .unwrap();
    let feed = script.feed(0);
    feed.send(data("abc")).unwrap();
    drop(feed);
    read_all(res.into_body()).await.unwrap();
    let stats = cache.stats();
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.bytes, "GET".len() + uri.len() + "abc".len());
}

/// A kept response's age counts from its head, and an upstream cache's `Age` counts towards
/// `max_stale`: a response already older than that is never served.
#[tokio::test(start_paused = true)]
async fn stale_cache_ages_count_from_the_head_and_include_the_upstream_age() {
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder()
        .max_stale(Duration::from_secs(300))
        .build()
        .unwrap();
    let mut svc = behind_stale_cache(&script, &cache);
    let get = |path: &str| Request::get(path).body(()).unwrap();

    // A body that takes 120 s to read; the dependency fails 90 s after it ended.
    let res = call_with(&mut svc, get("/slow")).await.unwrap();
    let feed = script.feed(0);
    feed.send(data("stock")).unwrap();
    tokio::time::advance(Duration::from_secs(120)).await;
    drop(feed);
    read_all(res.into_body()).await.unwrap();
    tokio::time::advance(Duration::from_secs(90)).await;
    script.answer(503, &[]);
    let res = call_with(&mut svc, get("/slow")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["age"], "210");

    // An upstream cache says it is already an hour old: over `max_stale` from the start.
    script.answer(200, &[("age", "3600")]);
    let res = call_with(&mut svc, get("/old")).await.unwrap();
    drop(script.feed(2));
    read_all(res.into_body()).await.unwrap();
    assert_eq!(cache.stats().entries, 2);
    script.answer(503, &[]);
    let res = call_with(&mut svc, get("/old")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(cache.stats().served, 1);

    // One an upstream cache had kept for 100 s, served 10 s later: 110 s old, in its `Age`
    // and in the `Stale` it carries (which the stale-age metric is made from).
    script.answer(200, &[("age", "100")]);
    let res = call_with(&mut svc, get("/aged")).await.unwrap();
    drop(script.feed(4));
    read_all(res.into_body()).await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    script.answer(503, &[]);
    let res = call_with(&mut svc, get("/aged")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["age"], "110");
    let stale = res.extensions().get::<palisade::fallback::Stale>().copied();
    assert_eq!(stale.map(|s| s.age), Some(Duration::from_secs(110)));
}

/// The bodies a stale cache copies at once hold at most `max_bytes` between them: a copy
/// that would go over is given up (the body still reaches its caller, uncached), and every
/// copy's bytes come back to the budget when it ends.
#[tokio::test(start_paused = true)]
async fn stale_cache_copies_in_flight_share_the_byte_budget() {
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder()
        .max_entry_bytes(100)
        .max_bytes(150)
        .build()
        .unwrap();
    let mut svc = behind_stale_cache(&script, &cache);
    let get = |path: &str| Request::get(path).body(()).unwrap();
    let sixty = "012345678901234567890123456789012345678901234567890123456789";

    // Three bodies of 60 bytes read at once: the third copy would make 180.
    let mut bodies = Vec::new();
    for (n, path) in ["/1", "/2", "/3"].into_iter().enumerate() {
        let mut body = call_with(&mut svc, get(path)).await.unwrap().into_body();
        let feed = script.feed(n);
        feed.send(data(sixty)).unwrap();
        body.frame().await.unwrap().unwrap();
        bodies.push((body, feed));
    }
    for (body, feed) in bodies {
        drop(feed);
        assert_eq!(read_all(body).await.unwrap(), "", "the rest of each body");
    }
    assert_eq!(cache.stats().entries, 2);
    let mut served = Vec::new();
    for path in ["/1", "/2", "/3"] {
        script.answer(503, &[]);
        served.push(
            call_with(&mut svc, get(path))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(served, [200, 200, 503], "the third was not copied");

    // The budget is whole again: a body of 90 bytes is copied and kept.
    let res = call_with(&mut svc, get("/4")).await.unwrap();
    let feed = script.feed(6);
    feed.send(data(&sixty[..45])).unwrap();
    feed.send(data(&sixty[..45])).unwrap();
    drop(feed);
    read_all(res.into_body()).await.unwrap();
    script.answer(503, &[]);
    let res = call_with(&mut svc, get("/4")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// Two calls for one key whose bodies end out of order: the cache keeps the later head's
/// response, not the one that happened to finish last.
#[tokio::test(start_paused = true)]
async fn stale_cache_keeps_the_later_response_when_bodies_end_out_of_order() {
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder().build().unwrap();
    let mut svc = behind_stale_cache(&script, &cache);
    let older = call(&mut svc).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    let newer = call(&mut svc).await.unwrap();
    let (slow, fast) = (script.feed(0), script.feed(1));
    fast.send(data("stock: 11")).unwrap();
    drop(fast);
    read_all(newer.into_body()).await.unwrap();
    slow.send(data("stock: 12")).unwrap();
    drop(slow);
    read_all(older.into_body()).await.unwrap();
    script.answer(503, &[]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(read_all(res.into_body()).await.unwrap(), "stock: 11");
    assert_eq!(
        cache.stats().stored,
        1,
        "the older one was not kept over it"
    );
}

/// Refusals are ordered by when their heads arrived, not by the clock (a paused or coarse one
/// ties), and are remembered apart from the entries: one for a key never kept pushes no
/// response out.
#[tokio::test(start_paused = true)]
async fn stale_cache_refusals_follow_head_order_and_push_no_response_out() {
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder().max_entries(1).build().unwrap();
    let mut svc = behind_stale_cache(&script, &cache);
    let get = |path: &str| Request::get(path).body(()).unwrap();
    // The only entry the cache may hold.
    let kept = call_with(&mut svc, get("/kept")).await.unwrap();
    drop(script.feed(0));
    read_all(kept.into_body()).await.unwrap();
    assert_eq!(cache.stats().entries, 1);
    // On the same instant: an older response still streaming, then a `no-store` one.
    let older = call_with(&mut svc, get("/item")).await.unwrap();
    script.answer(200, &[("cache-control", "no-store")]);
    let refused = call_with(&mut svc, get("/item")).await.unwrap();
    drop(script.feed(2));
    read_all(refused.into_body()).await.unwrap();
    assert_eq!(cache.stats().entries, 1, "a refusal pushes no response out");
    let slow = script.feed(1);
    slow.send(data("stock: 12")).unwrap();
    drop(slow);
    read_all(older.into_body()).await.unwrap();
    assert_eq!(cache.stats().stored, 1, "older than a refusal: not kept");
    script.answer(503, &[]);
    let res = call_with(&mut svc, get("/item")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    script.answer(503, &[]);
    let res = call_with(&mut svc, get("/kept")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "still kept");
}

/// A refusal is as current as its response's head: a response the cache may not keep
/// (`no-store`) keeps out an older one whose body ends after it, and an older body that grows
/// too large does not drop a newer response kept meanwhile.
#[tokio::test(start_paused = true)]
async fn stale_cache_refusals_count_from_their_heads_too() {
    use palisade::http::HttpStaleCache;

    let script = Script::default();
    let cache = HttpStaleCache::builder()
        .max_entry_bytes(600)
        .build()
        .unwrap();
    let mut svc = behind_stale_cache(&script, &cache);
    // An older response still streaming, then a newer `no-store` one.
    let older = call(&mut svc).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    script.answer(200, &[("cache-control", "no-store")]);
    let refused = call(&mut svc).await.unwrap();
    drop(script.feed(1));
    read_all(refused.into_body()).await.unwrap();
    let slow = script.feed(0);
    slow.send(data("stock: 12")).unwrap();
    drop(slow);
    read_all(older.into_body()).await.unwrap();
    script.answer(503, &[]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "older than a refusal"
    );
    assert_eq!(cache.stats().entries, 0);

    // An older body that outgrows the cap, after a newer response was kept.
    let older = call(&mut svc).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    let newer = call(&mut svc).await.unwrap();
    let fast = script.feed(4);
    fast.send(data("stock: 11")).unwrap();
    drop(fast);
    read_all(newer.into_body()).await.unwrap();
    assert_eq!(cache.stats().entries, 1);
    let slow = script.feed(3);
    slow.send(Ok(Frame::data(Bytes::from(vec![b'x'; 700]))))
        .unwrap();
    drop(slow);
    read_all(older.into_body()).await.unwrap();
    assert_eq!(cache.stats().too_large, 1);
    script.answer(503, &[]);
    let res = call(&mut svc).await.unwrap();
    assert_eq!(read_all(res.into_body()).await.unwrap(), "stock: 11");
}

/// A body with nothing to send, whose end comes once `ended` is set.
struct EndsLater(Arc<std::sync::atomic::AtomicBool>);

impl Body for EndsLater {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The gRPC classifier, which lets the body end right after it has classified the head (as a
/// connection on another thread can end it then).
#[derive(Clone)]
struct EndsAfterClassifying(GrpcClassifier, Arc<std::sync::atomic::AtomicBool>);

impl Classify<Response<Tracked<EndsLater>>> for EndsAfterClassifying {
    fn classify(&self, result: Result<&Response<Tracked<EndsLater>>, &BoxError>) -> Outcome {
        let outcome = self.0.classify(result);
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        outcome
    }

    fn end_of_body<'a>(
        &self,
        response: &'a mut Response<Tracked<EndsLater>>,
        head: &Outcome,
    ) -> Option<&'a mut palisade::classify::Hooks> {
        self.0.end_of_body(response, head)
    }
}

/// A client whose reply (a 200 with no `grpc-status`, no trailers) has its body end once
/// `ended` is set.
fn ending_while_classified(
    ended: &Arc<std::sync::atomic::AtomicBool>,
) -> impl Service<Request<()>, Response = Response<EndsLater>, Error = Infallible, Future: Send> + Clone
{
    let ended = ended.clone();
    tower::service_fn(move |_: Request<()>| {
        ended.store(false, std::sync::atomic::Ordering::SeqCst);
        let body = EndsLater(ended.clone());
        async move { Ok::<_, Infallible>(Response::new(body)) }
    })
}

/// A gRPC reply (a 200 with no `grpc-status` in its head) whose body ends, with no trailers,
/// between the classifier's reading of the head and the breaker's asking whether the body
/// decides: a failure, as for a body that had ended before, never the head's provisional
/// success.
#[tokio::test(start_paused = true)]
async fn a_grpc_reply_ending_without_trailers_while_classified_is_a_failure() {
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let policy = Policy::builder()
        .grpc()
        .circuit_breaker(breaker(100))
        .classifier(EndsAfterClassifying(
            GrpcClassifier::default(),
            ended.clone(),
        ))
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let res = policy
        .layer(ending_while_classified(&ended))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    let _ = res.into_body().collect().await;
    let snap = cb.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (1, 1),
        "no trailers: a failure"
    );
}

/// The same reply with no breaker, only a stale cache: the cache's copy waits for the body's
/// end too, and keeps nothing (a reply with no status is no good reply to serve later).
#[tokio::test(start_paused = true)]
async fn a_grpc_reply_ending_without_trailers_while_classified_is_not_kept() {
    use palisade::http::HttpStaleCache;
    use palisade::policy::PolicyConfig;
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cache = HttpStaleCache::builder()
        .methods([http::Method::GET])
        .build()
        .unwrap();
    let mut config = PolicyConfig::default();
    config.circuit_breaker = None;
    let policy = Policy::builder()
        .config(config)
        .grpc()
        .fallback(cache.clone())
        .classifier(EndsAfterClassifying(
            GrpcClassifier::default(),
            ended.clone(),
        ))
        .build()
        .unwrap();
    let res = policy
        .layer(ending_while_classified(&ended))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    let _ = res.into_body().collect().await;
    assert_eq!(cache.stats().entries, 0, "a reply with no status kept");
}

/// A gRPC policy with a whole-response deadline and no shorter timeout sends the deadline as
/// `grpc-timeout`, and a client that enforces it (tonic's channel does) fails the call on the
/// deadline's own tick, before the response's head: that is the deadline's `Elapsed`, told to
/// the listeners once, not the client's error.
#[tokio::test(start_paused = true)]
async fn a_client_enforcing_the_deadline_it_was_sent_ends_the_call_as_the_deadlines_timeout() {
    let deadline = Duration::from_millis(100);
    let (timeouts, policy) = deadline_policy(deadline);
    let svc = policy.layer(tower::service_fn(|req: Request<()>| async move {
        let sent = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| parse_grpc_timeout(v.as_bytes()))
            .expect("the deadline is sent");
        tokio::time::sleep(sent).await;
        Err::<Response<Pipe>, _>(std::io::Error::other("timeout expired"))
    }));
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(e) if e.after() == deadline),
        "{err:?}"
    );
    assert_eq!(timeouts.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A gRPC policy with a whole-response deadline, and how many `TimedOut` events it told.
fn deadline_policy(
    deadline: Duration,
) -> (
    Arc<std::sync::atomic::AtomicUsize>,
    PolicyLayer<NoFallback, GrpcClassifier, palisade::http::TrackLayer, UntilBodyEnd>,
) {
    let timeouts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = timeouts.clone();
    let policy = Policy::builder()
        .grpc()
        .response_deadline(deadline)
        .listener(move |event: &palisade::events::Event| {
            if matches!(event, palisade::events::Event::TimedOut { .. }) {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    (timeouts, policy)
}

/// The same in the body: the stream reset at the deadline (a client or a server enforcing
/// the `grpc-timeout` it was sent) is the deadline's `Elapsed`, told once.
#[tokio::test(start_paused = true)]
async fn a_body_broken_at_its_deadline_ends_as_the_deadlines_timeout() {
    let deadline = Duration::from_millis(100);
    let (timeouts, policy) = deadline_policy(deadline);
    let script = Script::default();
    let mut svc = policy.layer(script.service());
    script.answer(200, &[("content-type", "application/grpc")]);
    let res = call(&mut svc).await.unwrap();
    tokio::time::advance(deadline).await;
    script
        .feed(0)
        .send(Err("stream reset: CANCEL".into()))
        .unwrap();
    let err = read_all(res.into_body()).await.unwrap_err();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(e) if e.after() == deadline),
        "{err:?}"
    );
    assert_eq!(timeouts.load(std::sync::atomic::Ordering::SeqCst), 1);
}
