//! At the whole-response deadline, `Tracked` ends the body with `Elapsed`, gives the bulkhead
//! permit back, and lets go of the client's body (its connection, the request at the
//! dependency) at the same moment: a new call admitted then never makes the dependency see more
//! than `max_concurrent` in flight.
#![cfg(feature = "http")]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use palisade::bulkhead::BulkheadConfig;
use palisade::policy::Policy;
use tower::{BoxError, Layer, Service, ServiceExt};

/// Something of the client's (a body, a request in flight), counted live until dropped.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A body that never sends anything, counted live until dropped.
struct Stuck(#[allow(dead_code)] Live);

/// A policy with one permit and a response deadline of 100 ms.
fn one_permit_and_a_deadline() -> palisade::policy::PolicyLayer<
    palisade::policy::NoFallback,
    palisade::classify::http::HttpClassifier,
    palisade::http::TrackLayer,
    palisade::http::UntilBodyEnd,
> {
    let mut bulkhead = BulkheadConfig::default();
    bulkhead.max_concurrent = 1;
    Policy::builder()
        .http()
        .bulkhead(bulkhead)
        .response_deadline(Duration::from_millis(100))
        .build()
        .unwrap()
}

impl Body for Stuck {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Pending
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_past_its_deadline_is_dropped_before_its_permit_is_given_back() {
    let policy = one_permit_and_a_deadline();
    let permits = policy.bulkhead().unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let counter = live.clone();
    let mut svc = policy.layer(tower::service_fn(move |_: http::Request<()>| {
        let body = Stuck(Live::new(&counter));
        async move { Ok::<_, std::convert::Infallible>(http::Response::new(body)) }
    }));
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    let mut body = res.into_body();
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(err.is::<palisade::error::Elapsed>(), "{err:?}");
    // The call is over for palisade: its permit is back...
    assert_eq!(permits.available(), 1);
    // ...and the dependency no longer has it: the client's body was dropped with it, though
    // `body` is still held here.
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "the abandoned body still holds the request"
    );
    drop(body);
}

/// The same at the head: a deadline that passes before the response's head comes ends the
/// call with `Elapsed`, gives the permit back, and drops the client's future (the request at
/// the dependency) then, not when the caller lets go of the finished future.
#[tokio::test(start_paused = true)]
async fn a_head_past_its_deadline_is_dropped_before_its_permit_is_given_back() {
    let policy = one_permit_and_a_deadline();
    let permits = policy.bulkhead().unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let counter = live.clone();
    let mut svc = policy.layer(tower::service_fn(move |_: http::Request<()>| {
        let in_flight = Live::new(&counter);
        async move {
            let _in_flight = in_flight;
            std::future::pending::<()>().await;
            Ok::<_, std::convert::Infallible>(http::Response::new(
                http_body_util::Empty::<Bytes>::new(),
            ))
        }
    }));
    let mut call = std::pin::pin!(svc.ready().await.unwrap().call(http::Request::new(())));
    let err = call.as_mut().await.unwrap_err();
    assert!(err.is::<palisade::error::Elapsed>(), "{err:?}");
    assert_eq!(permits.available(), 1);
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "the request outlived its deadline inside the finished future"
    );
}
