//! A `reqwest::Client` behind the Policy, against the testkit's flaky server over loopback:
//! real sockets, real time, bounded waits; a breaker's open time is let pass on tokio's clock
//! (paused, advanced, resumed) rather than waited out.
#![cfg(all(feature = "reqwest", feature = "testkit"))]

use std::time::Duration;

use tokio::time::Instant;

use palisade::bulkhead::BulkheadConfig;
use palisade::circuit_breaker::{CircuitBreakerConfig, SlidingWindow, State};
use palisade::error::{ErrorKind, error_kind};
use palisade::fallback::Stale;
use palisade::http::HttpStaleCache;
use palisade::policy::Policy;
use palisade::testkit::{Fault, FlakyServer};
use tower::{BoxError, Layer, Service, ServiceExt};

fn breaker() -> CircuitBreakerConfig {
    let mut config = CircuitBreakerConfig::default();
    config.window = SlidingWindow::Count(10);
    config.minimum_calls = 5;
    config.failure_rate = 0.5;
    config.open_duration = Duration::from_millis(300);
    config.permitted_probes = 1;
    config.max_pushback = Duration::from_secs(10);
    config
}

fn bulkhead(max: usize) -> BulkheadConfig {
    let mut config = BulkheadConfig::default();
    config.max_concurrent = max;
    config
}

/// A client for the servers on loopback: with no proxy, whatever `HTTP_PROXY` says.
fn loopback() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn get(server: &FlakyServer, path: &str) -> reqwest::Request {
    let url = format!("{}{path}", server.url()).parse().unwrap();
    reqwest::Request::new(reqwest::Method::GET, url)
}

async fn send<S>(svc: &mut S, req: reqwest::Request) -> Result<reqwest::Response, BoxError>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

#[tokio::test]
async fn error_burst_opens_the_breaker_the_server_sees_only_probes_and_healing_closes_it() {
    let server = FlakyServer::start().await.unwrap();
    let policy = Policy::builder()
        .reqwest()
        .timeout(Duration::from_secs(2))
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(loopback());

    server.set(Fault::status(503));
    for _ in 0..5 {
        let res = send(&mut svc, get(&server, "/a")).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    assert_eq!(cb.state(), State::Open);

    let before = server.stats().requests;
    let mut rejected = 0;
    for _ in 0..20 {
        if let Err(err) = send(&mut svc, get(&server, "/a")).await {
            assert!(matches!(
                error_kind(err.as_ref()),
                ErrorKind::CircuitOpen(_)
            ));
            rejected += 1;
        }
    }
    let probes = server.stats().requests - before;
    assert!(
        probes <= 1,
        "the server saw {probes} calls while the breaker was open"
    );
    assert!(rejected >= 19);

    server.set(Fault::healthy());
    // The breaker says when it admits a probe; that is the rule, so exactly that much time
    // passes (on tokio's clock, at once).
    let retry_after = cb
        .snapshot()
        .retry_after
        .expect("open, with a time to retry");
    assert!(retry_after <= Duration::from_millis(300));
    tokio::time::pause();
    tokio::time::advance(retry_after).await;
    tokio::time::resume();
    let res = send(&mut svc, get(&server, "/a")).await.unwrap();
    assert_eq!(
        res.url().path(),
        "/a",
        "the caller's response keeps its URL"
    );
    res.bytes().await.unwrap();
    assert_eq!(cb.state(), State::Closed, "one good probe closes it");
}

#[tokio::test]
async fn hanging_server_times_out_within_the_deadline_and_sees_the_call_abandoned() {
    let server = FlakyServer::start().await.unwrap();
    server.set(Fault::hang());
    let timeout = Duration::from_millis(300);
    let policy = Policy::builder()
        .reqwest()
        .timeout(timeout)
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let mut svc = policy.layer(loopback());
    let started = Instant::now();
    let err = send(&mut svc, get(&server, "/hang")).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error_kind(err.as_ref()), ErrorKind::TimedOut(_)),
        "{err}"
    );
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(1),
        "{took:?}"
    );
    let stats = server
        .wait_for(Duration::from_secs(5), |s| s.in_flight == 0)
        .await
        .expect("the server sees the call abandoned");
    assert_eq!(stats.requests, 1);
    assert_eq!(policy.circuit_breaker().unwrap().snapshot().failures, 1);
}

#[tokio::test]
async fn reset_mid_body_is_a_typed_error_and_a_failure() {
    let server = FlakyServer::start().await.unwrap();
    server.set(Fault::reset_after(10));
    let policy = Policy::builder()
        .reqwest()
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(loopback());
    let res = send(&mut svc, get(&server, "/reset")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(cb.snapshot().calls, 0, "not settled before the body ends");
    assert!(res.bytes().await.is_err());
    let snap = cb.snapshot();
    assert_eq!((snap.calls, snap.failures), (1, 1));
}

#[tokio::test]
async fn slow_body_past_the_response_deadline_is_an_error_never_a_truncated_success() {
    let server = FlakyServer::start().await.unwrap();
    server.set(Fault::slow_body(10_000, 2_000));
    let policy = Policy::builder()
        .reqwest()
        .response_deadline(Duration::from_millis(400))
        .circuit_breaker(breaker())
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(loopback());
    let res = send(&mut svc, get(&server, "/slow")).await.unwrap();
    let err = res.bytes().await.unwrap_err();
    // reqwest wraps the body's error: palisade's Elapsed is in its source chain.
    assert!(
        matches!(error_kind(&err), ErrorKind::TimedOut(_)),
        "{err:?}"
    );
    assert_eq!(cb.snapshot().failures, 1);
}

#[tokio::test]
async fn bulkhead_holds_permits_until_each_body_ends() {
    let server = FlakyServer::start().await.unwrap();
    server.set(Fault::slow_body(600, 3_000));
    let max = 2;
    let mut config = bulkhead(max);
    config.max_wait = Some(Duration::from_secs(10));
    config.max_queued = Some(64);
    let policy = Policy::builder()
        .reqwest()
        .bulkhead(config)
        .build()
        .unwrap();
    let permits = policy.bulkhead().unwrap();
    let svc = policy.layer(loopback());
    let mut tasks = Vec::new();
    for _ in 0..4 * max {
        let mut svc = svc.clone();
        let req = get(&server, "/stream");
        tasks.push(tokio::spawn(async move {
            let res = send(&mut svc, req).await.unwrap();
            res.bytes().await.unwrap().len()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 600);
    }
    let stats = server.stats();
    assert_eq!(stats.requests, 4 * max as u64);
    assert!(
        stats.max_in_flight <= max,
        "max in flight {}",
        stats.max_in_flight
    );
    assert_eq!(permits.in_flight(), 0);
}

#[tokio::test]
async fn retry_after_keeps_the_breaker_open_and_a_huge_value_is_capped() {
    let server = FlakyServer::start().await.unwrap();
    let mut config = breaker();
    config.minimum_calls = 1;
    let policy = Policy::builder()
        .reqwest()
        .circuit_breaker(config)
        .build()
        .unwrap();
    let cb = policy.circuit_breaker().unwrap();
    let mut svc = policy.layer(loopback());

    server.set(Fault::retry_after(503, "2"));
    send(&mut svc, get(&server, "/")).await.unwrap();
    assert_eq!(cb.state(), State::Open);
    let left = cb.snapshot().retry_after.unwrap();
    assert!(left > Duration::from_millis(1800), "{left:?}");

    cb.reset();
    server.set(Fault::retry_after(429, "99999999999"));
    send(&mut svc, get(&server, "/")).await.unwrap();
    let left = cb.snapshot().retry_after.unwrap();
    assert!(
        left <= Duration::from_secs(10) && left > Duration::from_secs(9),
        "{left:?}"
    );
}

#[tokio::test]
async fn stale_cache_serves_a_cached_get_with_its_age_but_not_to_another_tenant() {
    let server = FlakyServer::start().await.unwrap();
    let cache = HttpStaleCache::builder()
        .user_key(|head| Some(head.headers.get("x-tenant")?.to_str().ok()?.to_owned()))
        .build()
        .unwrap();
    let policy = Policy::builder()
        .reqwest()
        .fallback(cache.clone())
        .build()
        .unwrap();
    let mut svc = policy.layer(loopback());
    let request = |tenant: &str| {
        let mut req = get(&server, "/orders/1");
        req.headers_mut()
            .insert("x-tenant", tenant.parse().unwrap());
        req
    };

    let fresh = send(&mut svc, request("a")).await.unwrap();
    let body = fresh.bytes().await.unwrap();
    assert_eq!(cache.stats().entries, 1);

    server.set(Fault::status(503));
    let stale = send(&mut svc, request("a")).await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(
        stale.url().path(),
        "/orders/1",
        "the URL is served with the response"
    );
    assert!(stale.headers().contains_key("age"));
    assert!(stale.extensions().get::<Stale>().is_some());
    assert_eq!(stale.bytes().await.unwrap(), body);

    let other = send(&mut svc, request("b")).await.unwrap();
    assert_eq!(other.status(), 503);
}

type Tracked = http::Response<palisade::http::Tracked<reqwest::Body>>;

/// A fallback that answers "n/a".
#[allow(clippy::result_large_err)] // the fallback's `Failure` holds a response, as its type says
fn answer_n_a(
    _: palisade::fallback::Failure<Tracked>,
) -> Result<Tracked, palisade::fallback::Failure<Tracked>> {
    Ok(http::Response::new(palisade::http::Tracked::new(
        reqwest::Body::from("n/a"),
    )))
}

/// A response the fallback makes (the breaker open) carries the request's URL, as the
/// client's own would, not reqwest's placeholder.
#[tokio::test]
async fn a_fallback_response_keeps_the_requests_url() {
    let server = FlakyServer::start().await.unwrap();
    let policy = Policy::builder()
        .reqwest()
        .circuit_breaker(breaker())
        .fallback(palisade::fallback::from_fn(answer_n_a))
        .build()
        .unwrap();
    policy.circuit_breaker().unwrap().force_open();
    let mut client = policy.layer(loopback());
    let req = get(&server, "/orders?page=2");
    let url = req.url().clone();
    let res = send(&mut client, req).await.unwrap();
    assert_eq!(res.url(), &url);
    assert_eq!(res.text().await.unwrap(), "n/a");
    assert_eq!(server.stats().requests, 0, "answered by the fallback");
}

/// A port on which every connection is closed as soon as it is accepted: a request to it
/// fails with a `reqwest::Error` that names its URL.
async fn closing_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    port
}

/// The request data in the URLs below, none of which may be told.
const SECRETS: [&str; 6] = ["alice", "hunter2", "accounts", "token", "s3cret", "frag"];

fn secret_url(port: u16) -> String {
    format!("http://alice:hunter2@127.0.0.1:{port}/accounts/42?token=s3cret#frag")
}

/// The messages told to a listener.
type Told = std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>;

/// A listener that keeps the message of each error a fallback recovered from.
fn teller() -> (
    impl Fn(&palisade::events::Event<'_>) + Send + Sync + 'static,
    Told,
) {
    let told = Told::default();
    let seen = told.clone();
    let listener = move |event: &palisade::events::Event<'_>| {
        if let palisade::events::Event::FallbackServed { error, .. } = event {
            seen.lock().unwrap().push(error.map(str::to_owned));
        }
    };
    (listener, told)
}

/// A Policy whose fallback answers every failure, and the messages of the errors it recovered
/// from, as told to its listeners.
fn telling_policy() -> (
    palisade::policy::PolicyBuilder<palisade::fallback::Value<&'static str>>,
    Told,
) {
    let (listener, told) = teller();
    let builder = Policy::builder()
        .fallback(palisade::fallback::value("n/a"))
        .listener(listener);
    (builder, told)
}

fn assert_cut(told: &[Option<String>], port: u16) {
    let [Some(message)] = told else {
        panic!("one recovered error told: {told:?}");
    };
    assert!(
        message.contains(&format!("http://127.0.0.1:{port}/...")),
        "{message}"
    );
    for secret in SECRETS {
        assert!(!message.contains(secret), "{secret:?} in {message:?}");
    }
}

/// The message of the error a fallback recovered from, told to listeners (and logged by the
/// tracing listener), names reqwest's URL by its scheme, host and port only: the credentials,
/// path and query in it are request data.
#[tokio::test]
async fn a_recovered_reqwest_errors_message_leaves_out_the_urls_request_data() {
    let port = closing_port().await;
    let (listener, told) = teller();
    let policy = Policy::builder()
        .reqwest()
        .fallback(palisade::fallback::from_fn(answer_n_a))
        .listener(listener)
        .build()
        .unwrap();
    let mut client = policy.layer(loopback());
    let req = reqwest::Request::new(reqwest::Method::GET, secret_url(port).parse().unwrap());
    let res = send(&mut client, req).await.unwrap();
    assert_eq!(res.text().await.unwrap(), "n/a");
    assert_cut(&told.lock().unwrap(), port);
}

/// The same when a client of the user's own wraps reqwest's error: in an `io::Error` (which
/// shows its message but skips it as a source), twice, in an error that quotes it, or in one
/// that is transparent (its message and source are reqwest's: reqwest's error is not in the
/// chain).
#[tokio::test]
async fn a_wrapped_reqwest_errors_url_is_cut_too() {
    #[derive(Debug)]
    struct FetchFailed(reqwest::Error);
    impl std::fmt::Display for FetchFailed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "fetch failed: {}", self.0)
        }
    }
    impl std::error::Error for FetchFailed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    /// As `#[error(transparent)]` makes it: the message and the source are the inner error's.
    #[derive(Debug)]
    struct Transparent(reqwest::Error);
    impl std::fmt::Display for Transparent {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }
    impl std::error::Error for Transparent {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            std::error::Error::source(&self.0)
        }
    }
    let port = closing_port().await;
    let wraps: [fn(reqwest::Error) -> BoxError; 4] = [
        |e| Box::new(std::io::Error::other(e)),
        |e| Box::new(std::io::Error::other(std::io::Error::other(e))),
        |e| Box::new(FetchFailed(e)),
        |e| Box::new(Transparent(e)),
    ];
    for wrap in wraps {
        let (builder, told) = telling_policy();
        let svc =
            builder
                .build()
                .unwrap()
                .layer(tower::service_fn(move |url: String| async move {
                    let err = loopback().get(url).send().await.unwrap_err();
                    Err::<&'static str, _>(wrap(err))
                }));
        assert_eq!(svc.oneshot(secret_url(port)).await.unwrap(), "n/a");
        assert_cut(&told.lock().unwrap(), port);
    }
}
