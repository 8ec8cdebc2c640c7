//! The testkit against real clients over loopback sockets: each fault of the flaky server and
//! each mode of the proxy does what it says, and the counters show what the server saw.
//! No paused time here (real sockets); the fault-injection layer, which needs no socket, is
//! tested on paused time at the end.
#![cfg(feature = "testkit")]

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade::testkit::grpc::{EchoClient, EchoReply, EchoRequest, SAY_PATH};
use palisade::testkit::{
    Fault, FaultInjectionLayer, FaultProxy, FlakyServer, GrpcStatusIn, InjectedFault, ProxyMode,
    Reply,
};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

/// How long any one step may take before the test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(5);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn http1() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn http2() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {LIMIT:?}"))
}

fn uri(base: &str, path: &str) -> hyper::Uri {
    format!("{base}{path}").parse().unwrap()
}

/// GET and read the whole body: the status, the headers and the body or its error.
async fn get(
    client: &HttpClient,
    uri: hyper::Uri,
) -> (StatusCode, HeaderMap, Result<Bytes, hyper::Error>) {
    let response = within("GET", client.get(uri)).await.expect("response head");
    let (parts, body) = response.into_parts();
    let body = within("body", body.collect()).await.map(|c| c.to_bytes());
    (parts.status, parts.headers, body)
}

async fn status(client: &HttpClient, uri: hyper::Uri) -> u16 {
    get(client, uri).await.0.as_u16()
}

/// A single-threaded runtime that polls the test's own future again after every task it runs
/// (tokio's default is after 61 of them), so that a call returning before the tasks it has
/// aborted are gone is caught: their sockets are still open when the test looks.
fn eager_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .event_interval(1)
        .build()
        .unwrap()
}

/// What became of the peer of `stream`, read without yielding to the runtime (so without
/// letting any task run): `Ok(0)` for a close, an error for a reset, and `WouldBlock` (after
/// a short wait for the loopback to deliver) while it is still open.
fn read_now(stream: TcpStream) -> io::Result<usize> {
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    io::Read::read(&mut &stream, &mut [0; 16])
}

#[tokio::test]
async fn healthy_answers_200_with_the_path_over_http1_and_http2() {
    let server = FlakyServer::start().await.unwrap();
    for client in [http1(), http2()] {
        let (status, headers, body) = get(&client, uri(&server.url(), "/orders/7")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(body.unwrap(), "/orders/7");
    }
    let stats = server.stats();
    assert_eq!(
        (stats.requests, stats.http_requests, stats.grpc_requests),
        (2, 2, 0)
    );
    assert_eq!(stats.connections_accepted, 2);
}

#[tokio::test]
async fn error_rate_one_always_fails_and_zero_never() {
    let server = FlakyServer::start().await.unwrap();
    let client = http1();
    server.set(Fault::error_rate(503, 1.0));
    for _ in 0..20 {
        assert_eq!(status(&client, uri(&server.url(), "/")).await, 503);
    }
    server.set(Fault::error_rate(500, 0.0));
    for _ in 0..20 {
        assert_eq!(status(&client, uri(&server.url(), "/")).await, 200);
    }
    server.set(Fault::status(429));
    assert_eq!(status(&client, uri(&server.url(), "/")).await, 429);
}

#[tokio::test]
async fn an_informational_status_is_sent_as_500() {
    // A 1xx cannot end a response: hyper would send a bare 101 over HTTP/1.1 and an interim
    // head over HTTP/2, with no final status.
    let server = FlakyServer::start().await.unwrap();
    for code in [100, 101, 103, 199] {
        for client in [http1(), http2()] {
            server.set(Fault::status(code));
            assert_eq!(
                status(&client, uri(&server.url(), "/")).await,
                500,
                "{code}"
            );
            server.set(Fault::retry_after(code, "5"));
            let (status, headers, _) = get(&client, uri(&server.url(), "/")).await;
            assert_eq!(status.as_u16(), 500, "{code}");
            assert_eq!(headers["retry-after"], "5");
        }
    }
}

#[tokio::test]
async fn a_seeded_error_rate_repeats_its_sequence() {
    async fn run(server: &FlakyServer, client: &HttpClient) -> Vec<u16> {
        let mut seen = Vec::new();
        for _ in 0..40 {
            seen.push(status(client, uri(&server.url(), "/")).await);
        }
        seen
    }
    let fault = Fault::error_rate(503, 0.5).seed(1234);
    let client = http1();
    let server = FlakyServer::builder()
        .fault(fault.clone())
        .start()
        .await
        .unwrap();
    let first = run(&server, &client).await;
    server.set(fault.clone()); // starts the sequence again
    let again = run(&server, &client).await;
    let other = FlakyServer::builder()
        .fault(fault.clone())
        .start()
        .await
        .unwrap();
    let elsewhere = run(&other, &client).await;
    server.set(fault.seed(4321));
    let reseeded = run(&server, &client).await;

    assert_eq!(first, again);
    assert_eq!(first, elsewhere);
    assert_ne!(first, reseeded);
    let failures = first.iter().filter(|&&s| s == 503).count();
    assert!(
        (8..=32).contains(&failures),
        "{failures} of 40 failed: {first:?}"
    );
    assert!(first.iter().all(|&s| s == 200 || s == 503));
}

#[tokio::test]
async fn latency_delays_the_head_by_at_least_its_length() {
    let server = FlakyServer::start().await.unwrap();
    let client = http1();
    server.set(Fault::healthy().latency(Duration::from_millis(150)));
    let start = Instant::now();
    assert_eq!(status(&client, uri(&server.url(), "/")).await, 200);
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );

    server.set(
        Fault::healthy().latency_between(Duration::from_millis(20), Duration::from_millis(60)),
    );
    for _ in 0..3 {
        let start = Instant::now();
        assert_eq!(status(&client, uri(&server.url(), "/")).await, 200);
        assert!(
            start.elapsed() >= Duration::from_millis(20),
            "{:?}",
            start.elapsed()
        );
    }
}

#[tokio::test]
async fn hang_never_answers_and_the_server_sees_the_connection_close() {
    let server = FlakyServer::builder()
        .fault(Fault::hang())
        .start()
        .await
        .unwrap();
    let client = http1();
    let call = tokio::time::timeout(
        Duration::from_millis(200),
        client.get(uri(&server.url(), "/slow")),
    )
    .await;
    assert!(call.is_err(), "a hanging server answered: {call:?}");
    let stats = server
        .wait_for(LIMIT, |s| s.connections_open == 0 && s.in_flight == 0)
        .await
        .expect("the server saw the client's connection close");
    assert_eq!((stats.requests, stats.connections_accepted), (1, 1));
}

#[tokio::test]
async fn hang_over_http2_ends_when_the_client_cancels_the_stream() {
    let server = FlakyServer::builder()
        .fault(Fault::hang())
        .start()
        .await
        .unwrap();
    let client = http2();
    let call = tokio::time::timeout(
        Duration::from_millis(200),
        client.get(uri(&server.url(), "/slow")),
    )
    .await;
    assert!(call.is_err());
    server
        .wait_for(LIMIT, |s| s.requests == 1 && s.in_flight == 0)
        .await
        .expect("the server saw the stream reset");
    // The connection is still there, and serves the next request once the fault is gone.
    server.set(Fault::healthy());
    assert_eq!(status(&client, uri(&server.url(), "/")).await, 200);
    assert_eq!(server.stats().connections_accepted, 1);
}

#[tokio::test]
async fn reset_mid_response_is_a_body_error_for_the_client() {
    let server = FlakyServer::builder()
        .fault(Fault::reset_after(100))
        .start()
        .await
        .unwrap();
    for client in [http1(), http2()] {
        let (status, _, body) = get(&client, uri(&server.url(), "/")).await;
        assert_eq!(status, StatusCode::OK, "the head arrives");
        let err = body.expect_err("the body must fail, not end cleanly");
        assert!(!err.to_string().is_empty());
    }
    server
        .wait_for(LIMIT, |s| s.connections_open == 0 && s.in_flight == 0)
        .await
        .expect("both connections were aborted");
}

#[tokio::test]
async fn slow_body_takes_about_its_size_over_its_rate_and_counts_in_flight() {
    let server = FlakyServer::builder()
        .fault(Fault::slow_body(3_000, 10_000))
        .start()
        .await
        .unwrap();
    let client = http1();
    let start = Instant::now();
    let response = within("head", client.get(uri(&server.url(), "/")))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-length"], "3000");
    assert_eq!(
        server.stats().in_flight,
        1,
        "in flight while the body streams"
    );
    let body = within("body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    let took = start.elapsed();
    assert_eq!(body.len(), 3_000);
    assert!(
        took >= Duration::from_millis(290),
        "3000 B at 10 kB/s took {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "3000 B at 10 kB/s took {took:?}"
    );
    server
        .wait_for(LIMIT, |s| s.in_flight == 0)
        .await
        .expect("done once the body is sent");
}

/// Reads at least `bytes` of `body`'s data, all of it filler, then drops the body.
async fn read_filler(mut body: hyper::body::Incoming, bytes: usize) {
    let mut read = 0;
    while read < bytes {
        let frame = within("a frame", body.frame())
            .await
            .expect("more of the body")
            .expect("data, not an error");
        if let Some(data) = frame.data_ref() {
            assert!(data.iter().all(|&b| b == b'x'), "filler");
            read += data.len();
        }
    }
}

#[tokio::test]
async fn a_body_of_any_size_is_made_as_it_is_sent() {
    // No machine holds usize::MAX bytes: they are sent as they are made, or not at all. Each
    // response is dropped after its head or a few MiB, which the server sees.
    let server = FlakyServer::start().await.unwrap();
    for client in [http1(), http2()] {
        // A length past i64::MAX, which clients cannot read, goes unsaid.
        for (bytes, length) in [(usize::MAX, None), (1 << 40, Some("1099511627776"))] {
            server.set(Fault::slow_body(bytes, 0));
            let response = within("head", client.get(uri(&server.url(), "/")))
                .await
                .expect("the head, and never the body");
            assert_eq!(response.status(), StatusCode::OK);
            let declared = response.headers().get("content-length");
            assert_eq!(declared.map(|v| v.to_str().unwrap()), length);
            drop(response);
            server
                .wait_for(LIMIT, |s| s.in_flight == 0)
                .await
                .expect("the dropped response ended the request");
        }

        for fault in [
            Fault::reset_after(usize::MAX),
            Fault::slow_body(usize::MAX, u64::MAX),
        ] {
            server.set(fault.clone());
            let response = within("head", client.get(uri(&server.url(), "/")))
                .await
                .expect("response head");
            assert_eq!(response.status(), StatusCode::OK, "{fault:?}");
            read_filler(response.into_body(), 4 << 20).await;
            server
                .wait_for(LIMIT, |s| s.in_flight == 0)
                .await
                .expect("the dropped response ended the request");
        }
    }

    // gRPC alike: the message's frame says the longest length it can, then the filler follows.
    for version in [Version::HTTP_11, Version::HTTP_2] {
        server.set(Fault::slow_body(usize::MAX, 0));
        let response = raw_grpc_response(&server, version).await;
        assert_eq!(response.headers()["content-type"], "application/grpc");
        drop(response);
        server
            .wait_for(LIMIT, |s| s.in_flight == 0)
            .await
            .expect("the dropped response ended the request");

        server.set(Fault::reset_after(usize::MAX));
        let mut body = raw_grpc_response(&server, version).await.into_body();
        let mut start = Vec::new();
        while start.len() < 6 {
            let frame = within("a frame", body.frame()).await.unwrap().unwrap();
            start.extend_from_slice(frame.data_ref().expect("data"));
        }
        assert_eq!(start[..6], [0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0A]);
        drop(body);
        server
            .wait_for(LIMIT, |s| s.in_flight == 0)
            .await
            .expect("the dropped response ended the request");
    }
}

#[tokio::test]
async fn a_slow_grpc_body_is_one_message_of_filler_then_an_ok_status() {
    let server = FlakyServer::builder()
        .fault(Fault::slow_body(300, 1_000_000))
        .start()
        .await
        .unwrap();
    let expected = EchoReply {
        message: "x".repeat(300),
    };
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let (head, body, trailers) = raw_grpc(&server, version).await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(body[0], 0, "uncompressed");
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap());
        assert_eq!(len as usize, body.len() - 5, "one whole message");
        assert_eq!(EchoReply::decode(&body[5..]).unwrap(), expected);
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    }
    let reply = within("say", grpc_client(&server).await.say(EchoRequest::new("x")))
        .await
        .unwrap();
    assert_eq!(reply.into_inner(), expected);
}

#[tokio::test]
async fn retry_after_passes_through_verbatim() {
    let server = FlakyServer::start().await.unwrap();
    let client = http1();
    for (code, value) in [
        (503, "120"),
        (429, "Wed, 21 Oct 2015 07:28:00 GMT"),
        (503, "-1"),
        (429, "99999999999999999999999"),
        (503, "1.5e3"),
        (503, "soon, maybe"),
    ] {
        server.set(Fault::retry_after(code, value));
        let (status, headers, _) = get(&client, uri(&server.url(), "/")).await;
        assert_eq!(status.as_u16(), code);
        assert_eq!(headers["retry-after"], value);
    }
    // Bytes a header cannot hold are left out rather than failing the response.
    server.set(Fault::retry_after(503, "12\r\n0"));
    let (_, headers, _) = get(&client, uri(&server.url(), "/")).await;
    assert_eq!(headers["retry-after"], "120");
}

#[tokio::test]
async fn max_in_flight_counts_concurrent_requests() {
    let server = FlakyServer::builder()
        .fault(Fault::hang())
        .start()
        .await
        .unwrap();
    let client = http2();
    let calls: Vec<_> = (0..5)
        .map(|_| tokio::spawn(client.get(uri(&server.url(), "/"))))
        .collect();
    let stats = server
        .wait_for(LIMIT, |s| s.in_flight == 5)
        .await
        .expect("five requests in flight");
    assert_eq!(stats.max_in_flight, 5);
    for call in &calls {
        call.abort();
    }
    let stats = server.wait_for(LIMIT, |s| s.in_flight == 0).await.unwrap();
    assert_eq!(stats.max_in_flight, 5);
    server.reset_max_in_flight();
    assert_eq!(server.stats().max_in_flight, 0);
    server.set(Fault::healthy());
    assert_eq!(status(&client, uri(&server.url(), "/")).await, 200);
    assert_eq!(server.stats().max_in_flight, 1);
}

/// Rounds of a race the multi-threaded tests below repeat: the window is short, and every
/// round is one more chance for it to show.
const RACE_ROUNDS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_seen_in_flight_keeps_its_fault_when_another_is_set() {
    // The pattern of the docs: wait until the request has arrived, then change the fault. The
    // request must still hang; the shutdown then resets it, where an answer under the new
    // fault would arrive whole.
    for round in 0..RACE_ROUNDS {
        let server = FlakyServer::builder()
            .fault(Fault::hang())
            .start()
            .await
            .unwrap();
        let call = tokio::spawn(http1().get(uri(&server.url(), "/")));
        server.wait_for(LIMIT, |s| s.in_flight == 1).await.unwrap();
        server.set(Fault::healthy());
        within("shutdown", server.shutdown()).await;
        let answer = within("the call", call).await.unwrap();
        assert!(
            answer.is_err(),
            "round {round}: answered under the fault set after it was seen: {answer:?}"
        );
    }
}

#[tokio::test]
async fn shutdown_resets_hanging_requests_and_stops_accepting() {
    let server = FlakyServer::builder()
        .fault(Fault::hang())
        .start()
        .await
        .unwrap();
    let addr = server.addr();
    let client = http1();
    let call = tokio::spawn(client.get(uri(&server.url(), "/")));
    server.wait_for(LIMIT, |s| s.in_flight == 1).await.unwrap();
    within("shutdown", server.shutdown()).await;
    let answer = within("the hanging call", call).await.unwrap();
    assert!(answer.is_err(), "a reset, not an answer: {answer:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[test]
fn shutdown_resets_what_is_still_open_after_the_grace_and_returns_once_it_is_closed() {
    eager_runtime().block_on(async {
        let server = FlakyServer::builder()
            .fault(Fault::healthy().latency(Duration::from_secs(60)))
            .start()
            .await
            .unwrap();
        let mut conn = TcpStream::connect(server.addr()).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        server.wait_for(LIMIT, |s| s.in_flight == 1).await.unwrap();
        within("shutdown", server.shutdown()).await; // after its grace of a second
        let read = read_now(conn);
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset),
            "reset, and already when shutdown returned"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// gRPC

async fn grpc_client(server: &FlakyServer) -> EchoClient<tonic::transport::Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(server.url()).unwrap();
    EchoClient::new(within("connect", endpoint.connect()).await.unwrap())
}

/// A gRPC call over a bare hyper connection of this HTTP version: the response head, and the
/// body's data and trailers.
async fn raw_grpc(
    server: &FlakyServer,
    version: Version,
) -> (http::response::Parts, Bytes, Option<HeaderMap>) {
    let (parts, body) = raw_grpc_response(server, version).await.into_parts();
    let collected = within("raw body", body.collect()).await.unwrap();
    let trailers = collected.trailers().cloned();
    (parts, collected.to_bytes(), trailers)
}

/// A gRPC call over a bare hyper connection of this HTTP version, its body still to be read.
async fn raw_grpc_response(
    server: &FlakyServer,
    version: Version,
) -> http::Response<hyper::body::Incoming> {
    let tcp = TokioIo::new(TcpStream::connect(server.addr()).await.unwrap());
    let message = EchoRequest::new("raw").encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let request = Request::post(format!("{}{SAY_PATH}", server.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(frame)))
        .unwrap();
    let response = if version == Version::HTTP_2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), tcp)
            .await
            .unwrap();
        tokio::spawn(conn);
        within("raw gRPC", send.send_request(request)).await
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        within("raw gRPC", send.send_request(request)).await
    };
    let response = response.unwrap();
    assert_eq!(response.version(), version);
    response
}

#[tokio::test]
async fn grpc_healthy_echoes_through_a_tonic_channel_with_palisade_layers() {
    let server = FlakyServer::start().await.unwrap();
    let endpoint = tonic::transport::Endpoint::from_shared(server.url()).unwrap();
    let channel = within("connect", endpoint.connect()).await.unwrap();
    let timeout = palisade::timeout::TimeoutLayer::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut client = EchoClient::new(ServiceBuilder::new().layer(timeout).service(channel));
    let reply = within("say", client.say(EchoRequest::new("hello")))
        .await
        .unwrap();
    assert_eq!(
        reply.into_inner(),
        EchoReply {
            message: "hello".into()
        }
    );
    let stats = server.stats();
    assert_eq!(
        (stats.requests, stats.grpc_requests, stats.http_requests),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_palisade_timeout_under_the_echo_client_is_found_in_the_status() {
    let server = FlakyServer::builder()
        .fault(Fault::hang())
        .start()
        .await
        .unwrap();
    let endpoint = tonic::transport::Endpoint::from_shared(server.url()).unwrap();
    let channel = within("connect", endpoint.connect()).await.unwrap();
    let timeout = palisade::timeout::TimeoutLayer::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut client = EchoClient::new(ServiceBuilder::new().layer(timeout).service(channel));
    let status = within("say", client.say(EchoRequest::new("x")))
        .await
        .unwrap_err();
    match palisade::error_kind(&status) {
        palisade::ErrorKind::TimedOut(elapsed) => {
            assert_eq!(elapsed.after(), Duration::from_millis(100));
        }
        other => panic!("expected a timeout, got {other:?} from {status:?}"),
    }
    server
        .wait_for(LIMIT, |s| s.requests == 1 && s.in_flight == 0)
        .await
        .expect("the server saw the call abandoned");
}

#[tokio::test]
async fn grpc_trailers_only_status_arrives_in_the_head() {
    let server = FlakyServer::builder()
        .fault(
            Fault::grpc_status(
                tonic::Code::Unavailable,
                "down for maintenance",
                GrpcStatusIn::TrailersOnly,
            )
            .pushback_ms("250"),
        )
        .start()
        .await
        .unwrap();
    let status = within("say", grpc_client(&server).await.say(EchoRequest::new("x")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "down for maintenance");
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "250"
    );

    let (head, body, trailers) = raw_grpc(&server, Version::HTTP_2).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-type"], "application/grpc");
    assert_eq!(head.headers["grpc-status"], "14");
    assert_eq!(head.headers["grpc-message"], "down for maintenance");
    assert_eq!(head.headers["grpc-retry-pushback-ms"], "250");
    assert!(body.is_empty(), "trailers-only: no body");
    assert!(trailers.is_none(), "trailers-only: no trailers");
}

#[tokio::test]
async fn grpc_status_in_trailers_arrives_after_a_message() {
    let server = FlakyServer::builder()
        .fault(
            Fault::grpc_status(
                tonic::Code::ResourceExhausted,
                "quota: 100% used",
                GrpcStatusIn::Trailers,
            )
            .pushback_ms("not a number"),
        )
        .start()
        .await
        .unwrap();
    let status = within("say", grpc_client(&server).await.say(EchoRequest::new("x")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "quota: 100% used");

    let (head, body, trailers) = raw_grpc(&server, Version::HTTP_2).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.headers.get("grpc-status").is_none(), "not in the head");
    assert!(!body.is_empty(), "one message before the status");
    let trailers = trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "8");
    assert_eq!(trailers["grpc-message"], "quota: 100%25 used");
    assert_eq!(trailers["grpc-retry-pushback-ms"], "not a number");
}

#[tokio::test]
async fn grpc_trailers_reach_an_http1_client() {
    let server = FlakyServer::builder()
        .fault(
            Fault::grpc_status(
                tonic::Code::ResourceExhausted,
                "quota",
                GrpcStatusIn::Trailers,
            )
            .pushback_ms("250"),
        )
        .start()
        .await
        .unwrap();
    let (head, body, trailers) = raw_grpc(&server, Version::HTTP_11).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.headers.get("grpc-status").is_none(), "not in the head");
    assert!(!body.is_empty(), "one message before the status");
    let trailers = trailers.expect("trailers over HTTP/1.1");
    assert_eq!(trailers["grpc-status"], "8");
    assert_eq!(trailers["grpc-message"], "quota");
    assert_eq!(trailers["grpc-retry-pushback-ms"], "250");

    server.set(Fault::healthy());
    let (_, body, trailers) = raw_grpc(&server, Version::HTTP_11).await;
    assert!(!body.is_empty());
    assert_eq!(
        trailers.expect("trailers over HTTP/1.1")["grpc-status"],
        "0"
    );
}

#[tokio::test]
async fn grpc_body_can_end_with_no_status() {
    let server = FlakyServer::builder()
        .fault(Fault::grpc_no_status())
        .start()
        .await
        .unwrap();
    let (head, body, trailers) = raw_grpc(&server, Version::HTTP_2).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.headers.get("grpc-status").is_none());
    assert!(!body.is_empty());
    assert!(trailers.is_none_or(|t| t.get("grpc-status").is_none()));
    // tonic 0.14 takes a 200 whose body ends without a grpc-status as OK (it returns the
    // message): telling that apart is the classifier's job, not the client's.
    let reply = within("say", grpc_client(&server).await.say(EchoRequest::new("x"))).await;
    assert!(reply.is_ok(), "{reply:?}");
}

#[tokio::test]
async fn grpc_requests_see_http_faults_as_a_proxy_would_send_them() {
    let server = FlakyServer::builder()
        .fault(Fault::status(503))
        .start()
        .await
        .unwrap();
    let mut client = grpc_client(&server).await;
    let status = within("say", client.say(EchoRequest::new("x")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);

    server.set(Fault::reset_after(3));
    let status = within("say", client.say(EchoRequest::new("x")))
        .await
        .unwrap_err();
    assert_ne!(status.code(), tonic::Code::Ok);

    server.set(Fault::healthy().sometimes(1.0, Reply::Hang));
    let call = tokio::time::timeout(
        Duration::from_millis(200),
        client.say(EchoRequest::new("x")),
    )
    .await;
    assert!(call.is_err(), "hangs");
    server.wait_for(LIMIT, |s| s.in_flight == 0).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The proxy

#[tokio::test]
async fn proxy_passes_through() {
    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let (status, _, body) = get(&http1(), uri(&proxy.url(), "/via-proxy")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap(), "/via-proxy");
    let (_, _, body) = get(&http2(), uri(&proxy.url(), "/h2")).await;
    assert_eq!(body.unwrap(), "/h2");
    assert_eq!(proxy.stats().connections_accepted, 2);
}

#[tokio::test]
async fn proxy_refuse_resets_the_connection() {
    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    proxy.set(ProxyMode::Refuse);
    let err = within("GET", http1().get(uri(&proxy.url(), "/")))
        .await
        .unwrap_err();
    assert!(
        err.is_connect() || std::error::Error::source(&err).is_some(),
        "{err:?}"
    );
    proxy
        .wait_for(LIMIT, |s| {
            s.connections_accepted >= 1 && s.connections_open == 0
        })
        .await
        .unwrap();
    assert_eq!(server.stats().requests, 0);
}

#[tokio::test]
async fn proxy_blackhole_swallows_requests_and_never_answers() {
    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    proxy.set(ProxyMode::Blackhole);
    let call = tokio::time::timeout(
        Duration::from_millis(200),
        http1().get(uri(&proxy.url(), "/")),
    )
    .await;
    assert!(call.is_err(), "blackholed, yet answered: {call:?}");
    let stats = proxy.stats();
    assert!(stats.bytes_from_clients > 0, "the request was read");
    assert_eq!(stats.bytes_from_upstream, 0);
    assert_eq!(server.stats().connections_accepted, 0, "never forwarded");
    proxy
        .wait_for(LIMIT, |s| s.connections_open == 0)
        .await
        .expect("closed once the client gave up");
}

#[tokio::test]
async fn proxy_throttle_of_zero_forwards_nothing_and_closes_when_the_client_does() {
    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    proxy.set(ProxyMode::Throttle { bytes_per_sec: 0 });
    let call = tokio::time::timeout(
        Duration::from_millis(200),
        http1().get(uri(&proxy.url(), "/")),
    )
    .await;
    assert!(
        call.is_err(),
        "nothing goes through, yet answered: {call:?}"
    );
    let stats = proxy.stats();
    assert!(stats.bytes_from_clients > 0, "the request was read");
    assert_eq!(stats.bytes_from_upstream, 0);
    assert_eq!(server.stats().requests, 0, "never forwarded");
    // The client gave up: the connection closes, on both sides of the proxy.
    proxy
        .wait_for(LIMIT, |s| s.connections_open == 0)
        .await
        .expect("closed once the client gave up");
    server
        .wait_for(LIMIT, |s| s.connections_open == 0)
        .await
        .expect("and upstream too");
}

#[tokio::test]
async fn proxy_reset_after_bytes_cuts_the_response() {
    let server = FlakyServer::builder()
        .fault(Fault::slow_body(10_000, 100_000_000))
        .start()
        .await
        .unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    proxy.set(ProxyMode::ResetAfter { bytes: 200 });
    let client = http1();
    let outcome = within("GET", async {
        let response = client.get(uri(&proxy.url(), "/")).await?;
        response
            .into_body()
            .collect()
            .await
            .map(|_| ())
            .map_err(Into::into)
    })
    .await;
    let err: Box<dyn std::error::Error + Send + Sync> = outcome.expect_err("cut after 200 bytes");
    assert!(!err.to_string().is_empty());
    proxy
        .wait_for(LIMIT, |s| s.connections_open == 0)
        .await
        .unwrap();
    assert!(proxy.stats().bytes_from_upstream >= 200);
}

#[tokio::test]
async fn proxy_throttle_slows_the_transfer() {
    let server = FlakyServer::builder()
        .fault(Fault::slow_body(4_000, 100_000_000))
        .start()
        .await
        .unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    proxy.set(ProxyMode::Throttle {
        bytes_per_sec: 20_000,
    });
    let start = Instant::now();
    let (status, _, body) = get(&http1(), uri(&proxy.url(), "/")).await;
    let took = start.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap().len(), 4_000);
    assert!(
        took >= Duration::from_millis(190),
        "4000 B at 20 kB/s took {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "4000 B at 20 kB/s took {took:?}"
    );
}

#[tokio::test]
async fn proxy_delay_holds_new_connections() {
    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    proxy.set(ProxyMode::delay(Duration::from_millis(200)));
    let start = Instant::now();
    assert_eq!(status(&http1(), uri(&proxy.url(), "/")).await, 200);
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );

    proxy.set(ProxyMode::Delay {
        connect: Duration::ZERO,
        per_chunk: Duration::from_millis(100),
    });
    let start = Instant::now();
    assert_eq!(status(&http1(), uri(&proxy.url(), "/")).await, 200);
    // At least one chunk each way.
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn proxy_can_reset_its_open_connections() {
    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0; 1024];
    let n = within("response", conn.read(&mut buf)).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    proxy.reset_open_connections();
    let read = within("read after reset", conn.read(&mut buf)).await;
    assert!(
        read.is_err() || read.is_ok_and(|n| n == 0),
        "the connection was cut"
    );
    proxy
        .wait_for(LIMIT, |s| s.connections_open == 0)
        .await
        .unwrap();
}

#[tokio::test]
async fn proxy_reset_reaches_a_connection_counted_open_before_its_task_has_run() {
    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let addr = proxy.addr();
    // The doc example's pattern, in a task: on this single-threaded runtime the count of the
    // new connection wakes it before the connection's own task has first run.
    let resetter = tokio::spawn(async move {
        proxy
            .wait_for(LIMIT, |s| s.connections_open == 1)
            .await
            .unwrap();
        proxy.reset_open_connections();
        proxy
    });
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let _proxy = within("the reset", resetter).await.unwrap();
    let read = tokio::time::timeout(LIMIT, conn.read(&mut [0; 16])).await;
    assert!(
        matches!(read, Ok(Err(_) | Ok(0))),
        "the connection was not cut: {read:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_connection_seen_open_keeps_its_mode_when_another_is_set() {
    let server = FlakyServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let get = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    for round in 0..RACE_ROUNDS {
        proxy.set(ProxyMode::PassThrough);
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy
            .wait_for(LIMIT, |s| s.connections_open == 1)
            .await
            .unwrap();
        proxy.set(ProxyMode::Refuse);
        // Passed through, as when it was accepted; refused, the connection would be reset.
        let exchange = async {
            conn.write_all(get).await?;
            let mut response = Vec::new();
            conn.read_to_end(&mut response).await?;
            Ok::<_, io::Error>(response)
        };
        let response = within("the exchange", exchange).await;
        assert!(
            response
                .as_ref()
                .is_ok_and(|r| r.starts_with(b"HTTP/1.1 200")),
            "round {round}: the mode set after the connection was seen open applied: {response:?}"
        );
        drop(conn);
        proxy
            .wait_for(LIMIT, |s| s.connections_open == 0)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn proxy_reset_resets_the_upstream_side_too() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(upstream.local_addr().unwrap())
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.write_all(b"x").await.unwrap();
    let (mut server_side, _) = within("accept", upstream.accept()).await.unwrap();
    let mut buf = [0; 16];
    assert_eq!(
        within("the byte", server_side.read(&mut buf))
            .await
            .unwrap(),
        1
    );
    proxy.reset_open_connections();
    let read = within("read after reset", server_side.read(&mut buf)).await;
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionReset),
        "a reset, not a close"
    );
}

#[tokio::test]
async fn proxy_throttle_gives_no_credit_for_time_the_connection_sat_idle() {
    // 400 ms of upstream latency, then about 3100 B (head and body) at 10 kB/s: the transfer
    // after the wait still takes about 310 ms.
    let server = FlakyServer::builder()
        .fault(Fault::slow_body(3_000, 100_000_000).latency(Duration::from_millis(400)))
        .start()
        .await
        .unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    proxy.set(ProxyMode::Throttle {
        bytes_per_sec: 10_000,
    });
    let start = Instant::now();
    let (status, _, body) = get(&http1(), uri(&proxy.url(), "/")).await;
    let took = start.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap().len(), 3_000);
    assert!(
        took >= Duration::from_millis(400 + 270),
        "400 ms idle, then 3000 B at 10 kB/s, took {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "400 ms idle, then 3000 B at 10 kB/s, took {took:?}"
    );
}

#[test]
fn proxy_shutdown_returns_once_its_connections_are_closed() {
    eager_runtime().block_on(async {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy::start(upstream.local_addr().unwrap())
            .await
            .unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(b"x").await.unwrap();
        let (mut server_side, _) = within("accept", upstream.accept()).await.unwrap();
        let read = within("the byte", server_side.read(&mut [0; 16])).await;
        assert_eq!(read.unwrap(), 1);
        within("shutdown", proxy.shutdown()).await;
        for (side, stream) in [("upstream", server_side), ("client", client)] {
            let read = read_now(stream);
            assert!(
                read.as_ref().is_ok_and(|&n| n == 0)
                    || read
                        .as_ref()
                        .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
                "the {side} side is closed when shutdown returns: {read:?}"
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The fault-injection layer (no sockets: paused time)

fn doubler() -> impl Service<u32, Response = u32, Error = std::io::Error, Future: Send> + Clone {
    tower::service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) })
}

#[tokio::test(start_paused = true)]
async fn injection_rate_one_always_fails_zero_never() {
    let always = FaultInjectionLayer::builder()
        .error_rate(1.0)
        .build()
        .unwrap();
    let never = FaultInjectionLayer::builder()
        .error_rate(0.0)
        .build()
        .unwrap();
    let mut failing = ServiceBuilder::new().layer(always).service(doubler());
    let mut passing = ServiceBuilder::new().layer(never).service(doubler());
    for n in 0..100 {
        let err = failing.ready().await.unwrap().call(n).await.unwrap_err();
        assert!(err.is::<InjectedFault>());
        assert_eq!(passing.ready().await.unwrap().call(n).await.unwrap(), n * 2);
    }
}

#[tokio::test(start_paused = true)]
async fn injection_is_seeded_and_shared_by_clones() {
    async fn outcomes(layer: &FaultInjectionLayer) -> Vec<bool> {
        let svc = ServiceBuilder::new()
            .layer(layer.clone())
            .service(doubler());
        let mut out = Vec::new();
        for n in 0..64 {
            // Alternate between two clones: they draw from one sequence.
            let mut clone = svc.clone();
            out.push(clone.ready().await.unwrap().call(n).await.is_ok());
        }
        out
    }
    let build = |seed| {
        FaultInjectionLayer::builder()
            .seed(seed)
            .error_rate(0.5)
            .build()
            .unwrap()
    };
    let a = outcomes(&build(99)).await;
    assert_eq!(a, outcomes(&build(99)).await);
    assert_ne!(a, outcomes(&build(100)).await);
    let failures = a.iter().filter(|ok| !**ok).count();
    assert!((16..=48).contains(&failures), "{failures} of 64");
}

#[tokio::test(start_paused = true)]
async fn injected_latency_runs_on_tokio_time_before_the_inner_call() {
    let layer = FaultInjectionLayer::builder()
        .latency_between(Duration::from_millis(100), Duration::from_millis(300))
        .seed(5)
        .build()
        .unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = {
        let calls = calls.clone();
        tower::service_fn(move |n: u32| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, std::io::Error>(n) }
        })
    };
    let mut svc = ServiceBuilder::new().layer(layer).service(counted);
    for n in 0..10 {
        let start = Instant::now();
        assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
        let took = start.elapsed();
        assert!(
            (Duration::from_millis(100)..=Duration::from_millis(301)).contains(&took),
            "{took:?}"
        );
    }
    // Dropped during its latency: the inner service never sees the request.
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    let pending = svc.ready().await.unwrap().call(99);
    let cut = tokio::time::timeout(Duration::from_millis(50), pending).await;
    assert!(cut.is_err());
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), before);
}

#[test]
fn injection_builder_rejects_what_cannot_work() {
    for rate in [f64::NAN, -0.1, 1.0001, f64::INFINITY] {
        let err = FaultInjectionLayer::builder()
            .error_rate(rate)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "error_rate", "{rate}");
    }
    let err = FaultInjectionLayer::builder()
        .latency_between(Duration::from_secs(2), Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "latency");
    assert!(
        FaultInjectionLayer::builder()
            .latency(Duration::MAX)
            .error_rate(1.0)
            .build()
            .is_ok()
    );
}
