//! The testkit's server reads a request's body as it comes and keeps none of it (a gRPC
//! request's message, up to 4 MiB, for its echo): a test that uploads a body of any size, or
//! one that never ends, costs the server no memory for it. Its own binary, so that no other test's
//! allocations move the process's resident memory while it measures.
#![cfg(all(feature = "testkit", target_os = "linux"))]

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::testkit::FlakyServer;
use support::peak_rss_kib;

#[tokio::test]
async fn a_request_body_of_any_size_costs_the_server_no_memory() {
    let server = FlakyServer::start().await.unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    // 128 MiB, as clones of one 64 KiB chunk: the client holds no more than that chunk.
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let upload = |chunks: usize| {
        let chunk = chunk.clone();
        let frames = futures::stream::iter(
            (0..chunks).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
        );
        Request::post(format!("{}/upload", server.url()))
            .body(StreamBody::new(frames))
            .unwrap()
    };
    // A small one first: the runtime, the connection and the client's pool are made.
    let res = client.request(upload(1)).await.unwrap();
    res.into_body().collect().await.unwrap();
    let before = peak_rss_kib();
    let res = client.request(upload(2 * 1024)).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"/upload");
    // The peak: a body kept and freed by the end is seen all the same.
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "the server kept a 128 MiB request body: the process peaked {grown} KiB higher"
    );
}
