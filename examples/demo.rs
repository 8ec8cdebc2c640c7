//! `cargo run --example demo`: a flaky dependency called by a bare client and by a client behind
//! a circuit breaker, side by side, through four phases. Ends by itself in about ten seconds.
//!
//! The dependency here is an in-process service with simulated latency; the HTTP version with
//! an embedded flaky server comes with palisade's testkit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use palisade::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, State};
use palisade::error::{ErrorKind, error_kind};
use tokio::time::{Instant, sleep};
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

const HEALTHY: u8 = 0;
const FAILING: u8 = 1;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    dependency_calls: AtomicU64,
}

impl Tally {
    fn line(&self) -> String {
        format!(
            "ok {:>4}  failed {:>4}  rejected {:>4}",
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }

    fn count(&self, result: &Result<&'static str, BoxError>) {
        let counter = match result {
            Ok(_) => &self.ok,
            Err(e) if matches!(error_kind(e.as_ref()), ErrorKind::CircuitOpen(_)) => &self.rejected,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A dependency that answers in 5 ms when healthy and fails after 200 ms when failing.
fn dependency(
    mode: Arc<AtomicU8>,
    tally: Arc<Tally>,
) -> impl Service<(), Response = &'static str, Error = BoxError, Future: Send> + Clone {
    service_fn(move |()| {
        let mode = mode.load(Ordering::Relaxed);
        tally.dependency_calls.fetch_add(1, Ordering::Relaxed);
        async move {
            if mode == HEALTHY {
                sleep(Duration::from_millis(5)).await;
                Ok("ok")
            } else {
                sleep(Duration::from_millis(200)).await;
                Err::<&'static str, BoxError>("503 Service Unavailable".into())
            }
        }
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let bare_tally = Arc::new(Tally::default());
    let protected_tally = Arc::new(Tally::default());

    let layer = CircuitBreakerLayer::builder()
        .name("inventory")
        .window(SlidingWindow::Count(20))
        .minimum_calls(10)
        .failure_rate(0.5)
        .open_duration(Duration::from_secs(1))
        .permitted_probes(2)
        .build()?;
    let breaker = layer.handle();
    let bare = dependency(mode.clone(), bare_tally.clone());
    let protected = layer.layer(dependency(mode.clone(), protected_tally.clone()));

    // Eight callers per client, each calling in a loop.
    let stop = Instant::now() + Duration::from_secs(10);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (mut b, bt) = (bare.clone(), bare_tally.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let r = b.ready().await.unwrap().call(()).await;
                bt.count(&r);
                sleep(Duration::from_millis(20)).await;
            }
        }));
        let (mut p, pt) = (protected.clone(), protected_tally.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let r = match p.ready().await {
                    Ok(svc) => svc.call(()).await,
                    Err(e) => Err(e),
                };
                pt.count(&r);
                sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    let phases = [
        ("healthy", HEALTHY, 2),
        ("failing", FAILING, 4),
        ("recovering", HEALTHY, 4),
    ];
    let mut elapsed = 0;
    for (name, m, secs) in phases {
        mode.store(m, Ordering::Relaxed);
        println!("\n-- phase: {name} ({secs} s)");
        for _ in 0..secs {
            sleep(Duration::from_secs(1)).await;
            elapsed += 1;
            let s = breaker.snapshot();
            println!(
                "t={elapsed:>2}s  bare [{}]  protected [{}]  breaker {:?} ({} of {} failed)",
                bare_tally.line(),
                protected_tally.line(),
                s.state,
                s.failures,
                s.calls,
            );
        }
    }
    for t in tasks {
        t.await?;
    }
    let bare_calls = bare_tally.dependency_calls.load(Ordering::Relaxed);
    let protected_calls = protected_tally.dependency_calls.load(Ordering::Relaxed);
    println!("\nSummary");
    println!(
        "  bare client:      {} ; dependency saw {bare_calls} calls",
        bare_tally.line()
    );
    println!(
        "  protected client: {} ; dependency saw {protected_calls} calls",
        protected_tally.line()
    );
    println!(
        "  while the dependency failed, the breaker answered {} calls at once instead of \
         waiting 200 ms for each error, and spared the dependency {} calls.",
        protected_tally.rejected.load(Ordering::Relaxed),
        bare_calls.saturating_sub(protected_calls),
    );
    println!("  final breaker state: {:?}", breaker.state());
    assert_eq!(
        breaker.state(),
        State::Closed,
        "the breaker closes once the dependency heals"
    );
    Ok(())
}
