//! A panic in the inner service's `call` (a per-request timeout function, a buggy client) gives
//! the breaker's admission back: the guard exists before the inner service runs, so a
//! half-open breaker does not keep that probe slot taken until `max_half_open_wait`.

use std::time::Duration;

use futures::FutureExt;
use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, State};
use tower::{Layer, Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_inner_call_gives_the_probe_slot_back() {
    let layer = CircuitBreakerLayer::builder()
        .window(SlidingWindow::Count(2))
        .minimum_calls(1)
        .permitted_probes(1)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let breaker = layer.handle();
    let mut svc = layer.layer(tower::service_fn(|panics: bool| {
        assert!(!panics, "bug in the inner service's call");
        async { Err::<(), _>(std::io::Error::other("down")) }
    }));
    svc.ready().await.unwrap().call(false).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;

    let mut probe = svc.clone();
    let panicked = std::panic::AssertUnwindSafe(async move {
        drop(probe.ready().await.unwrap().call(true));
    })
    .catch_unwind()
    .await;
    assert!(panicked.is_err());
    assert_eq!(
        breaker.snapshot().probes_in_flight,
        0,
        "the probe slot is lost"
    );
}
