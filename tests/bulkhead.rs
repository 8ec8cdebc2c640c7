//! The bulkhead's admission, queueing and permit-return rules through its tower layer, on
//! paused time (and, for the hand-off races, on real threads).

mod support;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use futures::FutureExt;
use palisade::bulkhead::{
    Bulkhead, BulkheadConfig, BulkheadLayer, Handle, MAX_CONCURRENT, MAX_QUEUED, MAX_WAIT,
};
use palisade::error::{ErrorKind, error_kind};
use proptest::prelude::*;
use support::{Dependency, Reply, call};
use tokio::time::{Instant, advance};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

const MS: Duration = Duration::from_millis(1);

fn fail_fast(max: usize) -> BulkheadLayer {
    BulkheadLayer::builder()
        .max_concurrent(max)
        .build()
        .unwrap()
}

fn queueing(max: usize, wait: Duration, queued: usize) -> BulkheadLayer {
    BulkheadLayer::builder()
        .max_concurrent(max)
        .max_wait(wait)
        .max_queued(queued)
        .build()
        .unwrap()
}

fn is_full(err: &BoxError) -> bool {
    matches!(error_kind(err.as_ref()), ErrorKind::BulkheadFull(_))
}

#[track_caller]
fn assert_at_rest(bulkhead: &Handle) {
    assert_eq!(
        (
            bulkhead.available(),
            bulkhead.in_flight(),
            bulkhead.queued()
        ),
        (bulkhead.max_concurrent(), 0, 0),
        "at rest every permit is back and nobody waits"
    );
}

/// `ready().await` then `call()`, without awaiting the response.
async fn start(
    svc: &mut Bulkhead<Dependency>,
    reply: Reply,
) -> impl Future<Output = Result<&'static str, BoxError>> + Unpin + Send + use<> {
    svc.ready().await.unwrap().call(reply)
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_rejects_at_once_with_bulkhead_full() {
    let layer = fail_fast(2);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    let a = start(&mut svc, Reply::Hang).await;
    let b = start(&mut svc, Reply::Hang).await;
    assert_eq!((bulkhead.in_flight(), bulkhead.available()), (2, 0));

    let started = Instant::now();
    let err = call(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "rejected at once");
    let kind = error_kind(err.as_ref());
    match kind {
        ErrorKind::BulkheadFull(full) => assert_eq!(full.max_concurrent(), 2),
        other => panic!("expected BulkheadFull, got {other:?}"),
    }
    assert!(kind.is_rejection());
    assert!(
        err.downcast_ref::<palisade::error::BulkheadFull>()
            .is_some()
    );
    assert_eq!(
        dep.seen.calls(),
        2,
        "the rejected call never reached the dependency"
    );

    drop((a, b));
    assert_at_rest(&bulkhead);
    assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_limit_and_separate_layers_do_not() {
    let layer = fail_fast(1);
    let dep = Dependency::new();
    let mut a = layer.layer(dep.clone());
    let mut b = a.clone();
    let mut c = layer.layer(dep.clone());
    let held = start(&mut a, Reply::Hang).await;
    assert!(is_full(&call(&mut b, Reply::Ok).await.unwrap_err()));
    assert!(is_full(&call(&mut c, Reply::Ok).await.unwrap_err()));
    assert_eq!(b.handle().in_flight(), 1);

    let mut other = fail_fast(1).layer(dep.clone());
    assert_eq!(call(&mut other, Reply::Ok).await.unwrap(), "ok");
    drop(held);
    assert_at_rest(&layer.handle());
}

#[tokio::test(start_paused = true)]
async fn a_service_made_ready_but_not_called_holds_no_permit() {
    for layer in [fail_fast(1), queueing(1, 10 * MS, 1)] {
        let bulkhead = layer.handle();
        let dep = Dependency::new();
        let mut idle = layer.layer(dep.clone());
        let mut busy = idle.clone();
        idle.ready().await.unwrap();
        assert_at_rest(&bulkhead);
        // Another clone gets the only permit, at once, while `idle` stays ready.
        let started = Instant::now();
        assert_eq!(call(&mut busy, Reply::Ok).await.unwrap(), "ok");
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(call(&mut idle, Reply::Ok).await.unwrap(), "ok");
        assert_at_rest(&bulkhead);
    }
}

/// Where the caller gives up on a call that had to wait behind another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropAt {
    /// Made ready, never called.
    ReadyNotCalled,
    /// Called and queued, never polled.
    QueuedUnpolled,
    /// Queued, polled once (its waker registered).
    Queued,
    /// The holder finished and handed its permit over; the waiter was not polled since.
    Granted,
    /// Sent to the dependency, its response pending.
    InFlight,
    /// Completed, the future kept.
    Completed,
}

#[tokio::test(start_paused = true)]
async fn dropping_the_caller_at_every_await_point_returns_every_permit() {
    use DropAt::*;
    for point in [
        ReadyNotCalled,
        QueuedUnpolled,
        Queued,
        Granted,
        InFlight,
        Completed,
    ] {
        let layer = queueing(1, 100 * MS, 2);
        let bulkhead = layer.handle();
        let dep = Dependency::new();
        let mut svc = layer.layer(dep.clone());
        let mut holder = start(&mut svc, Reply::Delay(4 * MS)).await;
        assert!(futures::poll!(&mut holder).is_pending());

        let mut waiter_svc = svc.clone();
        waiter_svc.ready().await.unwrap();
        if point == ReadyNotCalled {
            drop(waiter_svc);
            assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (1, 0));
        } else {
            let mut waiter = waiter_svc.call(Reply::Delay(4 * MS));
            assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (1, 1));
            if point == QueuedUnpolled {
                drop(waiter);
            } else {
                assert!(futures::poll!(&mut waiter).is_pending());
                if point == Queued {
                    drop(waiter);
                } else {
                    advance(4 * MS).await;
                    assert_eq!((&mut holder).await.unwrap(), "ok");
                    // Handed over: still one permit taken, nobody queued, not yet sent.
                    assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (1, 0));
                    assert_eq!(dep.seen.calls(), 1);
                    if point == Granted {
                        drop(waiter);
                    } else {
                        assert!(futures::poll!(&mut waiter).is_pending());
                        assert_eq!(dep.seen.calls(), 2);
                        assert_eq!(bulkhead.in_flight(), 1);
                        if point == InFlight {
                            drop(waiter);
                            assert_eq!(dep.seen.dropped(), 1, "the inner future was dropped");
                        } else {
                            advance(4 * MS).await;
                            assert_eq!((&mut waiter).await.unwrap(), "ok");
                            // Back on completion, though the future is still alive.
                            assert_at_rest(&bulkhead);
                            drop(waiter);
                        }
                    }
                }
            }
        }
        drop(holder);
        assert_at_rest(&bulkhead);
        // Nothing stale is left: the next caller gets a permit at once, and nothing queues.
        let started = Instant::now();
        assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok", "{point:?}");
        assert_eq!(started.elapsed(), Duration::ZERO, "{point:?}");
        assert_at_rest(&bulkhead);
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_holder_mid_flight_hands_its_permit_to_the_waiter() {
    let layer = queueing(1, 100 * MS, 2);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    let holder = start(&mut svc, Reply::Hang).await;
    let waiter = start(&mut svc, Reply::Ok).await;
    drop(holder);
    assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (1, 0));
    let started = Instant::now();
    assert_eq!(waiter.await.unwrap(), "ok");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_at_rest(&bulkhead);
}

#[tokio::test(start_paused = true)]
async fn an_outer_timeout_frees_a_queued_or_running_call() {
    let layer = queueing(1, 100 * MS, 2);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    let holder = start(&mut svc, Reply::Hang).await;
    let waiter = start(&mut svc, Reply::Ok).await;
    assert!(tokio::time::timeout(5 * MS, waiter).await.is_err());
    assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (1, 0));
    assert!(tokio::time::timeout(5 * MS, holder).await.is_err());
    assert_at_rest(&bulkhead);
    assert_eq!(dep.seen.dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_or_timed_out_call_returns_its_permit() {
    let layer = fail_fast(1);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .timeout(5 * MS)
        .service(dep.clone());
    let err = call(&mut svc, Reply::Err).await.unwrap_err();
    assert!(matches!(error_kind(err.as_ref()), ErrorKind::Inner(_)));
    assert_at_rest(&bulkhead);

    let started = Instant::now();
    let err = call(&mut svc, Reply::Hang).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>());
    assert_eq!(started.elapsed(), 5 * MS);
    assert_eq!(dep.seen.dropped(), 1);
    assert_at_rest(&bulkhead);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_rejected_at_max_wait_and_not_before() {
    let layer = queueing(1, 10 * MS, 2);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    let holder = start(&mut svc, Reply::Hang).await;
    let mut waiter = start(&mut svc, Reply::Ok).await;
    assert!(futures::poll!(&mut waiter).is_pending());
    advance(10 * MS - Duration::from_nanos(1)).await;
    assert!(futures::poll!(&mut waiter).is_pending());
    assert_eq!(bulkhead.queued(), 1);
    advance(Duration::from_nanos(1)).await;
    match futures::poll!(&mut waiter) {
        std::task::Poll::Ready(Err(e)) => assert!(is_full(&e), "{e}"),
        other => panic!("expected BulkheadFull at max_wait, got {other:?}"),
    }
    assert_eq!(bulkhead.queued(), 0);
    assert_eq!(
        dep.seen.calls(),
        1,
        "a waiter that gave up never reached the dependency"
    );
    drop(holder);
    assert_at_rest(&bulkhead);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gets_the_permit_as_soon_as_it_frees() {
    let layer = queueing(1, 10 * MS, 2);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    let holder = tokio::spawn(start(&mut svc, Reply::Delay(3 * MS)).await);
    let started = Instant::now();
    assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
    assert_eq!(started.elapsed(), 3 * MS);
    holder.await.unwrap().unwrap();
    assert_at_rest(&bulkhead);
}

/// The tokio-semaphore hand-off pitfall: a permit handed to a waiter at the instant its wait
/// runs out must be used or given back, never lost. The holder finishes around the waiters'
/// deadline, on either side and exactly on it, with the tasks polled in both orders.
#[tokio::test(start_paused = true)]
async fn a_waiter_expiring_as_a_permit_frees_loses_no_permit() {
    let wait = 10 * MS;
    let mut outcomes = std::collections::BTreeSet::new();
    for offset in -2i64..=2 {
        for holder_first in [true, false] {
            for waiters in 1..=3 {
                let layer = queueing(1, wait, 4);
                let bulkhead = layer.handle();
                let dep = Dependency::new();
                let mut svc = layer.layer(dep.clone());
                let hold = Duration::from_millis((10 + offset) as u64);
                let holder = start(&mut svc, Reply::Delay(hold)).await;
                let mut queued = Vec::new();
                for _ in 0..waiters {
                    queued.push(start(&mut svc, Reply::Ok).await);
                }
                assert_eq!(bulkhead.queued(), waiters);
                // Spawn order is first-poll order, hence timer order at the shared instant.
                let (holder, tasks) = if holder_first {
                    let holder = tokio::spawn(holder);
                    (
                        holder,
                        queued.into_iter().map(tokio::spawn).collect::<Vec<_>>(),
                    )
                } else {
                    let tasks = queued.into_iter().map(tokio::spawn).collect::<Vec<_>>();
                    (tokio::spawn(holder), tasks)
                };
                assert_eq!(holder.await.unwrap().unwrap(), "ok");
                for task in tasks {
                    let served = match task.await.unwrap() {
                        Ok(_) => true,
                        Err(e) => {
                            assert!(is_full(&e), "{e}");
                            false
                        }
                    };
                    outcomes.insert((offset, served));
                }
                assert_at_rest(&bulkhead);
                let started = Instant::now();
                assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
                assert_eq!(started.elapsed(), Duration::ZERO);
            }
        }
    }
    // A release before the deadline serves the waiters; one after it finds them gone; exactly
    // at the deadline both happen, depending on who is polled first: the race was run.
    let expected: std::collections::BTreeSet<_> = [
        (-2, true),
        (-1, true),
        (0, true),
        (0, false),
        (1, false),
        (2, false),
    ]
    .into_iter()
    .collect();
    assert_eq!(outcomes, expected);
}

/// Real threads: the holder's release and the waiter giving up (dropped) race, thousands of
/// times; whichever wins, the permit is back and the queue empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_racing_a_waiter_giving_up_loses_no_permit_across_threads() {
    let layer = queueing(1, MAX_WAIT, 4);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    for i in 0..2_000 {
        let holder = start(&mut svc, Reply::Hang).await;
        let mut waiter = start(&mut svc, Reply::Ok).await;
        if i % 2 == 0 {
            // Half the time with a waker registered, so the release also wakes someone.
            assert!(futures::poll!(&mut waiter).is_pending());
        }
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                drop(holder);
            });
            s.spawn(|| {
                barrier.wait();
                drop(waiter);
            });
        });
        assert_at_rest(&bulkhead);
    }
}

/// Real threads: a release racing a waiter that is being polled always ends with the waiter
/// served at once (the permit is free either way, so losing it or the wake-up would show; a
/// lost wake-up would leave the waiter asleep until `max_wait`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_racing_a_polled_waiter_always_serves_it_across_threads() {
    let max_wait = Duration::from_secs(2);
    let layer = queueing(1, max_wait, 4);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    let rt = tokio::runtime::Handle::current();
    for _ in 0..2_000 {
        let holder = start(&mut svc, Reply::Hang).await;
        let waiter = start(&mut svc, Reply::Ok).await;
        let barrier = Barrier::new(2);
        let served = std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                drop(holder);
            });
            s.spawn(|| {
                let _rt = rt.enter();
                barrier.wait();
                let started = Instant::now();
                (futures::executor::block_on(waiter), started.elapsed())
            })
            .join()
            .unwrap()
        });
        assert_eq!(served.0.unwrap(), "ok");
        assert!(served.1 < max_wait, "served only when its wait ran out");
        assert_at_rest(&bulkhead);
    }
}

#[tokio::test(start_paused = true)]
async fn the_queue_never_exceeds_max_queued() {
    let layer = queueing(1, 10 * MS, 2);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    let holder = start(&mut svc, Reply::Hang).await;
    let w1 = start(&mut svc, Reply::Ok).await;
    let w2 = start(&mut svc, Reply::Ok).await;
    assert_eq!(bulkhead.queued(), 2);
    for _ in 0..5 {
        let mut extra = start(&mut svc, Reply::Ok).await;
        match futures::poll!(&mut extra) {
            std::task::Poll::Ready(Err(e)) => assert!(is_full(&e)),
            other => panic!("expected an immediate BulkheadFull, got {other:?}"),
        }
        assert_eq!(bulkhead.queued(), 2);
    }
    assert_eq!(dep.seen.calls(), 1);
    // A waiter that leaves makes room for exactly one more.
    drop(w1);
    let w3 = start(&mut svc, Reply::Ok).await;
    assert_eq!(bulkhead.queued(), 2);
    assert!(is_full(&call(&mut svc, Reply::Ok).await.unwrap_err()));
    drop((holder, w2, w3));
    assert_at_rest(&bulkhead);
}

#[tokio::test(start_paused = true)]
async fn many_concurrent_callers_never_queue_more_than_max_queued() {
    let layer = queueing(2, 5 * MS, 3);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let svc = layer.layer(dep.clone());
    let max_queued_seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let mut svc = svc.clone();
            let bulkhead = bulkhead.clone();
            let seen = max_queued_seen.clone();
            tokio::spawn(async move {
                let (mut served, mut rejected) = (0, 0);
                for j in 0..30 {
                    let reply = Reply::Delay(Duration::from_millis(1 + (i + j) % 4));
                    let fut = start(&mut svc, reply).await;
                    seen.fetch_max(bulkhead.queued(), std::sync::atomic::Ordering::SeqCst);
                    match fut.await {
                        Ok(_) => served += 1,
                        Err(e) if is_full(&e) => rejected += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (served, rejected)
            })
        })
        .collect();
    let (mut served, mut rejected) = (0, 0);
    for t in tasks {
        let (s, r) = t.await.unwrap();
        served += s;
        rejected += r;
    }
    assert_eq!(served + rejected, 600);
    assert!(
        served > 0 && rejected > 0,
        "{served} served, {rejected} rejected"
    );
    assert_eq!(max_queued_seen.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(dep.seen.max_in_flight(), 2);
    assert_eq!(dep.seen.calls(), served);
    assert_at_rest(&bulkhead);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order_and_newcomers_do_not_overtake() {
    let layer = queueing(1, 100 * MS, 8);
    let bulkhead = layer.handle();
    let dep = Dependency::new();
    let mut svc = layer.layer(dep.clone());
    let holder = start(&mut svc, Reply::Hang).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // Queued in order 0..4, but spawned (first polled) in reverse.
    let mut futs = Vec::new();
    for i in 0..4 {
        futs.push((i, start(&mut svc, Reply::Delay(MS)).await));
    }
    for (i, fut) in futs.into_iter().rev() {
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            fut.await.unwrap();
            order.lock().unwrap().push(i);
        }));
    }
    tokio::task::yield_now().await;
    drop(holder); // its permit goes to waiter 0, not to a newcomer
    assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (1, 3));
    let newcomer = start(&mut svc, Reply::Ok).await;
    assert_eq!(
        bulkhead.queued(),
        4,
        "the newcomer queues behind the waiters"
    );
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(newcomer.await.unwrap(), "ok");
    assert_at_rest(&bulkhead);
}

async fn hammer(layer: BulkheadLayer, callers: u64, calls: u64) -> Dependency {
    let dep = Dependency::new();
    let svc = layer.layer(dep.clone());
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                for j in 0..calls {
                    let reply = Reply::Delay(Duration::from_millis((i * 7 + j * 3) % 5));
                    match call(&mut svc, reply).await {
                        Ok(_) => {}
                        Err(e) => assert!(is_full(&e), "{e}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    dep
}

#[tokio::test(start_paused = true)]
async fn four_times_max_concurrent_callers_never_put_more_than_max_concurrent_in_flight() {
    for layer in [fail_fast(4), queueing(4, 3 * MS, 16)] {
        let bulkhead = layer.handle();
        let dep = hammer(layer, 16, 50).await;
        assert_eq!(
            dep.seen.max_in_flight(),
            4,
            "the limit was reached and never exceeded"
        );
        assert_at_rest(&bulkhead);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_times_max_concurrent_callers_on_two_threads_never_exceed_the_limit() {
    for layer in [fail_fast(2), queueing(2, Duration::from_secs(5), 8)] {
        let bulkhead = layer.handle();
        let dep = Dependency::new();
        let svc = layer.layer(dep.clone());
        // Each call yields once at the dependency, so calls of several tasks are in flight
        // at once on each thread: without the limit, up to 8.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let mut svc = svc.clone();
                tokio::spawn(async move {
                    let (mut served, mut refused) = (0, 0);
                    for _ in 0..2_000 {
                        match call(&mut svc, Reply::Yield).await {
                            Ok(_) => served += 1,
                            Err(e) => {
                                assert!(is_full(&e), "{e}");
                                refused += 1;
                            }
                        }
                    }
                    (served, refused)
                })
            })
            .collect();
        let (mut served, mut refused) = (0, 0);
        for t in tasks {
            let (s, r) = t.await.unwrap();
            served += s;
            refused += r;
        }
        assert_eq!(served + refused, 16_000);
        assert_eq!(
            dep.seen.calls(),
            served,
            "every call served reached the dependency"
        );
        assert_eq!(
            dep.seen.max_in_flight(),
            2,
            "the limit was reached and never exceeded"
        );
        assert_at_rest(&bulkhead);
    }
}

#[derive(Clone)]
struct Panics;

impl Service<()> for Panics {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        panic!("the inner service panicked in call")
    }
}

#[tokio::test(start_paused = true)]
async fn an_inner_service_panicking_in_call_leaks_no_permit() {
    let layer = queueing(1, 10 * MS, 2);
    let bulkhead = layer.handle();
    let mut svc = layer.layer(Panics);
    // On the fast path, in `call`.
    svc.ready().await.unwrap();
    assert!(std::panic::catch_unwind(AssertUnwindSafe(|| svc.call(()))).is_err());
    assert_at_rest(&bulkhead);

    // After waiting, in the response future's poll.
    let dep = Dependency::new();
    let mut holder_svc = layer.layer(dep);
    let holder = start(&mut holder_svc, Reply::Hang).await;
    svc.ready().await.unwrap();
    let waiter = svc.call(());
    drop(holder);
    assert!(AssertUnwindSafe(waiter).catch_unwind().await.is_err());
    assert_at_rest(&bulkhead);
}

#[tokio::test(start_paused = true)]
async fn the_wrapper_gives_access_to_the_inner_service() {
    let dep = Dependency::new();
    let mut svc = fail_fast(1).layer(dep.clone());
    assert!(Arc::ptr_eq(&svc.get_ref().seen, &dep.seen));
    assert!(Arc::ptr_eq(&svc.get_mut().seen, &dep.seen));
    assert_eq!(svc.handle().max_concurrent(), 1);
    assert!(Arc::ptr_eq(&svc.into_inner().seen, &dep.seen));
}

type Edit = fn(&mut BulkheadConfig);

/// (what, the edit, the field named in the error, or None when the value is fine).
fn table() -> Vec<(&'static str, Edit, Option<&'static str>)> {
    vec![
        ("defaults", |_| {}, None),
        (
            "max concurrent 0",
            |c| c.max_concurrent = 0,
            Some("max_concurrent"),
        ),
        ("max concurrent 1", |c| c.max_concurrent = 1, None),
        (
            "max concurrent at the cap",
            |c| c.max_concurrent = MAX_CONCURRENT,
            None,
        ),
        (
            "max concurrent above the cap",
            |c| c.max_concurrent = MAX_CONCURRENT + 1,
            Some("max_concurrent"),
        ),
        (
            "max concurrent usize::MAX",
            |c| c.max_concurrent = usize::MAX,
            Some("max_concurrent"),
        ),
        (
            "max wait 0",
            |c| c.max_wait = Some(Duration::ZERO),
            Some("max_wait"),
        ),
        (
            "max wait 1ns",
            |c| c.max_wait = Some(Duration::from_nanos(1)),
            None,
        ),
        ("max wait at the cap", |c| c.max_wait = Some(MAX_WAIT), None),
        (
            "max wait above the cap",
            |c| c.max_wait = Some(MAX_WAIT + Duration::from_nanos(1)),
            Some("max_wait"),
        ),
        (
            "max wait Duration::MAX",
            |c| c.max_wait = Some(Duration::MAX),
            Some("max_wait"),
        ),
        (
            "max queued without max wait",
            |c| c.max_queued = Some(10),
            Some("max_queued"),
        ),
        (
            "max queued 0",
            |c| {
                c.max_wait = Some(MS);
                c.max_queued = Some(0)
            },
            Some("max_queued"),
        ),
        (
            "max queued 1",
            |c| {
                c.max_wait = Some(MS);
                c.max_queued = Some(1)
            },
            None,
        ),
        (
            "max queued at the cap",
            |c| {
                c.max_wait = Some(MS);
                c.max_queued = Some(MAX_QUEUED)
            },
            None,
        ),
        (
            "max queued above the cap",
            |c| {
                c.max_wait = Some(MS);
                c.max_queued = Some(MAX_QUEUED + 1)
            },
            Some("max_queued"),
        ),
        (
            "max queued usize::MAX",
            |c| {
                c.max_wait = Some(MS);
                c.max_queued = Some(usize::MAX)
            },
            Some("max_queued"),
        ),
        (
            "max wait with the default queue, at the largest limit",
            |c| {
                c.max_concurrent = MAX_CONCURRENT;
                c.max_wait = Some(MS)
            },
            None,
        ),
        ("empty name", |c| c.name = String::new(), None),
    ]
}

#[test]
fn bad_configuration_is_a_config_error_naming_the_field() {
    for (what, edit, field) in table() {
        let mut config = BulkheadConfig::default();
        edit(&mut config);
        let built = palisade::bulkhead::Builder::from_config(config.clone()).build();
        match (field, built) {
            (None, Ok(layer)) => {
                assert_eq!(
                    layer.handle().max_concurrent(),
                    config.max_concurrent,
                    "{what}"
                );
            }
            (Some(field), Err(err)) => {
                assert_eq!(err.field(), field, "{what}: {err}");
                assert!(err.to_string().contains(field), "{what}: {err}");
                assert_eq!(config.validate().unwrap_err(), err, "{what}");
            }
            (expected, got) => panic!("{what}: expected error on {expected:?}, got {got:?}"),
        }
    }
    // The builder's setters reach the same checks.
    let err = BulkheadLayer::builder()
        .max_concurrent(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
    let err = BulkheadLayer::builder()
        .max_wait(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_wait");
    let err = BulkheadLayer::builder().max_queued(3).build().unwrap_err();
    assert_eq!(err.field(), "max_queued");
    let layer = BulkheadLayer::builder()
        .name("payments")
        .max_concurrent(7)
        .max_wait(MS)
        .build()
        .unwrap();
    let handle = layer.handle();
    assert_eq!(
        (
            handle.name(),
            handle.max_concurrent(),
            handle.max_wait(),
            handle.max_queued()
        ),
        ("payments", 7, Some(MS), 7),
        "without max_queued the queue holds max_concurrent waiters"
    );
    let handle = BulkheadLayer::builder().build().unwrap().handle();
    assert_eq!(
        (
            handle.max_concurrent(),
            handle.max_wait(),
            handle.max_queued()
        ),
        (25, None, 0)
    );
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(MAX_WAIT),
        any::<u64>().prop_map(Duration::from_nanos),
        (any::<u64>(), 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn any_count() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(MAX_CONCURRENT),
        Just(MAX_CONCURRENT + 1),
        Just(MAX_QUEUED),
        Just(usize::MAX),
        0..1_000usize,
        any::<usize>(),
    ]
}

proptest! {
    #[test]
    fn build_never_panics(
        max_concurrent in any_count(),
        max_wait in prop::option::of(any_duration()),
        max_queued in prop::option::of(any_count()),
    ) {
        let mut c = BulkheadConfig::default();
        c.max_concurrent = max_concurrent;
        c.max_wait = max_wait;
        c.max_queued = max_queued;
        match palisade::bulkhead::Builder::from_config(c.clone()).build() {
            Ok(layer) => {
                prop_assert!(c.validate().is_ok());
                // A valid configuration also runs.
                let handle = layer.handle();
                let mut svc = layer.layer(Dependency::new());
                let answer = futures::executor::block_on(call(&mut svc, Reply::Ok));
                prop_assert_eq!(answer.unwrap(), "ok");
                prop_assert_eq!(handle.available(), max_concurrent);
                prop_assert!(handle.max_queued() <= MAX_QUEUED);
            }
            Err(err) => {
                prop_assert!(["max_concurrent", "max_wait", "max_queued"].contains(&err.field()));
                prop_assert_eq!(c.validate().unwrap_err(), err);
            }
        }
    }
}

#[cfg(feature = "serde")]
#[test]
fn configuration_deserializes_with_the_same_validation() {
    let ok: BulkheadConfig = serde_json::from_str(
        r#"{"name":"db","max_concurrent":8,"max_wait":"250ms","max_queued":16}"#,
    )
    .unwrap();
    assert_eq!(ok.name, "db");
    assert_eq!(ok.max_concurrent, 8);
    assert_eq!(ok.max_wait, Some(Duration::from_millis(250)));
    assert_eq!(ok.max_queued, Some(16));
    let default: BulkheadConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(default, BulkheadConfig::default());
    for (json, field) in [
        (r#"{"max_concurrent":0}"#, "max_concurrent"),
        (r#"{"max_wait":"0s"}"#, "max_wait"),
        (r#"{"max_wait":"2days"}"#, "max_wait"),
        (r#"{"max_queued":4}"#, "max_queued"),
        (r#"{"max_wait":"1s","max_queued":0}"#, "max_queued"),
    ] {
        let err = serde_json::from_str::<BulkheadConfig>(json).unwrap_err();
        assert!(err.to_string().contains(field), "{json}: {err}");
    }
    assert!(serde_json::from_str::<BulkheadConfig>(r#"{"no_such_field":1}"#).is_err());
}
