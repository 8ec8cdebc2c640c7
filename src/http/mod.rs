//! HTTP and gRPC: body-aware outcomes and permits, deadlines, pushback (feature `http`).
//!
//! An HTTP call is not over when its head arrives: the body may still break, and a gRPC status
//! usually comes in the trailers. [`TrackLayer`], put innermost on the client, wraps each
//! response body in [`Tracked`]; the layers above hand it what must last until the body ends:
//!
//! * the circuit breaker, with [`HttpClassifier`](crate::classify::http::HttpClassifier) or
//!   [`GrpcClassifier`](crate::classify::grpc::GrpcClassifier), its pending outcome (and the
//!   half-open probe slot it may hold), for a head the classifier calls a success (a failure
//!   status is recorded at the head);
//! * the bulkhead, with [`UntilBodyEnd`], its permit.
//!
//! The body settles them at its end (success, or the trailers' gRPC status; for HTTP, the last
//! byte of a known length is the end, and the head is, for a length of 0 that is not a gRPC
//! reply), on a body error (failure) or when dropped unfinished (ignored).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use palisade::bulkhead::BulkheadLayer;
//! use palisade::circuit_breaker::CircuitBreakerLayer;
//! use palisade::classify::http::HttpClassifier;
//! use palisade::http::{TrackLayer, UntilBodyEnd};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! // Any `Service<http::Request<_>, Response = http::Response<_>>`: a hyper client, tonic's
//! // `Channel`, or this stand-in.
//! let client = tower::service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("hello"))))
//! });
//! let bulkhead = BulkheadLayer::builder().max_concurrent(8).build().unwrap().hold(UntilBodyEnd);
//! let permits = bulkhead.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::builder().build().unwrap().with_classifier(HttpClassifier::default()))
//!     .layer(bulkhead)
//!     .layer(TrackLayer::new().deadline(Duration::from_secs(10)).unwrap())
//!     .service(client);
//!
//! let res = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//! assert_eq!(permits.in_flight(), 1); // held until the body ends
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, "hello");
//! assert_eq!(permits.in_flight(), 0);
//! # }
//! ```

mod body;
mod cache;
mod headers;
#[cfg(feature = "reqwest")]
pub mod reqwest;
mod track;

use http::Response;
use http_body::Body;

pub use body::Tracked;
pub(crate) use body::hooks_if_streaming;
pub use cache::{CacheKey, CachedResponse, HttpStaleCache, HttpStaleCacheBuilder, RequestHead};
pub use headers::{
    format_grpc_timeout, parse_grpc_pushback, parse_grpc_timeout, parse_retry_after,
};
pub use track::{ResponseFuture, Track, TrackLayer};

#[cfg(feature = "grpc")]
pub(crate) use headers::parse_grpc_status;

use crate::bulkhead::Hold;
use crate::classify::Hooks;

/// Holds each bulkhead permit until the response body ends (or fails, or is dropped), so a
/// slowly streamed response counts against the limit for as long as it occupies the
/// dependency. Needs [`TrackLayer`] below the bulkhead. See
/// [`BulkheadLayer::hold`](crate::bulkhead::BulkheadLayer::hold).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use palisade::bulkhead::BulkheadLayer;
/// use palisade::http::{TrackLayer, UntilBodyEnd};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// let bulkhead = BulkheadLayer::builder()
///     .max_concurrent(1)
///     .build()
///     .unwrap()
///     .hold(UntilBodyEnd);
/// let mut svc = ServiceBuilder::new()
///     .layer(bulkhead)
///     .layer(TrackLayer::new())
///     .service(tower::service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
///             "a large report",
///         ))))
///     }));
///
/// let report = svc
///     .ready()
///     .await
///     .unwrap()
///     .call(http::Request::new(()))
///     .await
///     .unwrap();
/// // The body is still to be read: the one permit is taken, and another call is turned away.
/// assert!(
///     svc.ready()
///         .await
///         .unwrap()
///         .call(http::Request::new(()))
///         .await
///         .is_err()
/// );
/// report.into_body().collect().await.unwrap();
/// assert!(
///     svc.ready()
///         .await
///         .unwrap()
///         .call(http::Request::new(()))
///         .await
///         .is_ok()
/// );
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct UntilBodyEnd;

impl<B: Body> Hold<Response<Tracked<B>>> for UntilBodyEnd {
    fn hooks<'a>(&self, response: &'a mut Response<Tracked<B>>) -> Option<&'a mut Hooks> {
        hooks_if_streaming(response)
    }
}

/// Whether a response is a gRPC reply, whose status may come in trailers after its body, even
/// an empty one: its `content-type` is `application/grpc`, alone or with a `+` suffix or
/// parameters, in any case (not gRPC-web's, whose status is in its body).
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= GRPC.len()
            && v[..GRPC.len()].eq_ignore_ascii_case(GRPC)
            && matches!(v.get(GRPC.len()), None | Some(b'+' | b';' | b' '))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_grpc_reply_is_told_by_its_content_type_not_grpc_webs() {
        let is_grpc = |content_type: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            super::is_grpc(&headers)
        };
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc(yes), "{yes}");
        }
        for no in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/json",
        ] {
            assert!(!is_grpc(no), "{no}");
        }
        assert!(!super::is_grpc(&http::HeaderMap::new()));
    }
}
