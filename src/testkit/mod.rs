//! Test tools: a flaky server, a TCP fault proxy and a fault-injection layer (feature `testkit`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use palisade::testkit::{Fault, FlakyServer};
//!
//! let server = FlakyServer::start().await?;
//! let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
//! let uri: hyper::Uri = format!("{}/orders", server.url()).parse()?;
//! assert_eq!(client.get(uri.clone()).await?.status(), 200);
//!
//! server.set(Fault::error_rate(503, 1.0)); // every request fails from now on
//! assert_eq!(client.get(uri).await?.status(), 503);
//! assert_eq!(server.stats().requests, 2);
//! # Ok(())
//! # }
//! ```
//!
//! * [`FlakyServer`]: HTTP/1.1, HTTP/2 and gRPC on one loopback port, answering as its
//!   [`Fault`] says (latency, error rates, hangs, resets, slow bodies, `Retry-After`, gRPC
//!   statuses in the head or the trailers), and counting what it experienced (requests,
//!   in flight, connections). Also a standalone program: `cargo run --example flaky_server
//!   --features testkit -- --help`.
//! * [`FaultProxy`]: a TCP proxy in front of any address that passes through, refuses,
//!   blackholes, delays, resets or throttles connections.
//! * [`FaultInjectionLayer`]: a tower layer that fails and delays calls to any service from a
//!   seeded random sequence, for tests that need no socket (and can run on paused time).
//! * [`grpc`]: the server's gRPC service and a client for it over a real tonic transport.
//!
//! Everything binds `127.0.0.1` only. The server and the proxy run in tokio tasks, which stop
//! in the background when they are dropped; their `shutdown().await` returns once their port
//! and sockets are closed. Do not combine them with paused time: real sockets and a paused
//! clock make timeouts fire before the network has had a chance.

pub mod grpc;
mod inject;
mod proxy;
mod rng;
mod server;

/// How long sending `bytes` takes at `bytes_per_sec` (non-zero).
pub(crate) fn time_for(bytes: u64, bytes_per_sec: u64) -> std::time::Duration {
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(bytes_per_sec.max(1));
    std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Resolves once `stop` holds `true` (or its sender is gone).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

pub use inject::{
    FaultInjection, FaultInjectionBuilder, FaultInjectionFuture, FaultInjectionLayer, InjectedFault,
};
pub use proxy::{FaultProxy, ProxyMode, ProxyStats};
pub use server::{Fault, FlakyServer, FlakyServerBuilder, GrpcStatusIn, Reply, ServerStats};
