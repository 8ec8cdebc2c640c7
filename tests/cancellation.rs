//! Cancellation at any await point, as a property: callers go through the whole `Policy`
//! (timeout, queueing bulkhead, breaker), are polled a random number of times while time moves
//! by random amounts, and are dropped at random; then, at rest, every bulkhead permit is free,
//! nobody is queued, no probe slot is taken, and the breaker recorded exactly the calls that
//! ended (each once), whatever was dropped where.
//!
//! Two dependencies: the scripted `Dependency` of `tests/support` (answers, errors, delays,
//! hangs), and with feature `http` an HTTP one whose response bodies stream in timed chunks and
//! may break, so that callers also drop bodies mid-stream while they hold a permit (and, for a
//! `200`, the call's pending outcome and its probe slot).
//!
//! Paused time, driven by hand: `futures::poll!` and `tokio::time::advance`, never a sleep.
//! Each case builds its own runtime. The cases cover a closed breaker and a half-open one (the
//! callers are then its probes), with and without a queue. `tests/bulkhead.rs::
//! dropping_the_caller_at_every_await_point_returns_every_permit` walks the bulkhead's await
//! points one by one; this test mixes them with the other layers' at random.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade::bulkhead::{self, BulkheadConfig};
use palisade::circuit_breaker::{self, CircuitBreakerConfig, SlidingWindow, State};
use palisade::error::{ErrorKind, error_kind};
use palisade::events::{Event, Rejection};
use palisade::policy::PolicyBuilder;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use support::{Dependency, Reply, call, policy_handles};
use tokio::time::advance;
use tower::{BoxError, Layer};

/// The timeout on each call (its head, for HTTP).
const TIMEOUT: Duration = Duration::from_millis(100);
/// The whole-response deadline of the HTTP policy.
const DEADLINE: Duration = Duration::from_millis(300);
/// How long a queued call waits for a permit.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// The bulkhead's limit.
const MAX: usize = 2;
/// The breaker's open duration.
const OPEN: Duration = Duration::from_secs(1);
/// Probes admitted while half-open.
const PROBES: u32 = 2;
/// Failures that trip the breaker (its minimum of calls, all failed).
const TRIP: usize = 4;

fn breaker() -> CircuitBreakerConfig {
    let mut c = CircuitBreakerConfig::default();
    c.window = SlidingWindow::Count(6);
    c.minimum_calls = TRIP as u32;
    c.failure_rate = 0.5;
    c.open_duration = OPEN;
    c.permitted_probes = PROBES;
    c.probe_success_rate = 0.5;
    // Far beyond any case: a probe slot that leaks must show, not be swept by a reopen.
    c.max_half_open_wait = Duration::from_secs(3600);
    c
}

fn bulkhead(queue: bool) -> BulkheadConfig {
    let mut b = BulkheadConfig::default();
    b.max_concurrent = MAX;
    if queue {
        b.max_wait = Some(MAX_WAIT);
        b.max_queued = Some(2);
    }
    b
}

/// What the breaker told its listeners: outcomes recorded, and calls it rejected.
#[derive(Debug, Default)]
struct Told {
    recorded: AtomicUsize,
    rejected: AtomicUsize,
}

/// What the callers saw: calls that ended in a way the breaker records (an answer, an error,
/// a timeout, a full bulkhead, a body's end or break), and calls the breaker rejected.
#[derive(Debug, Default)]
struct Saw {
    recorded: AtomicUsize,
    rejected: AtomicUsize,
}

impl Saw {
    /// Notes how a call ended with an error.
    fn error(&self, err: &BoxError) {
        match error_kind(err.as_ref()) {
            ErrorKind::CircuitOpen(_) => self.rejected.fetch_add(1, Ordering::SeqCst),
            _ => self.recorded.fetch_add(1, Ordering::SeqCst),
        };
    }

    fn recorded(&self) {
        self.recorded.fetch_add(1, Ordering::SeqCst);
    }
}

/// A policy builder with the case's parts and a listener counting into `told`.
fn with_parts<R, C, A, H>(
    builder: PolicyBuilder<R, C, A, H>,
    queue: bool,
    told: &Arc<Told>,
) -> PolicyBuilder<R, C, A, H> {
    let told = told.clone();
    builder
        .timeout(TIMEOUT)
        .bulkhead(bulkhead(queue))
        .circuit_breaker(breaker())
        .listener(move |event: &Event<'_>| match event {
            Event::CallRecorded { .. } => {
                told.recorded.fetch_add(1, Ordering::SeqCst);
            }
            Event::Rejected {
                reason: Rejection::Circuit(_),
                ..
            } => {
                told.rejected.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        })
}

/// What one caller does.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// Makes one call (and reads the body to its end, for HTTP).
    Call(Script),
    /// Makes a service ready (a probe slot, half-open) and holds it without calling.
    ReadyOnly,
}

/// What the dependency does with one call.
#[derive(Debug, Clone, Copy)]
struct Script {
    /// 0 answers, 1 fails (HTTP: 503), 2 answers after `head`, 3 hangs.
    kind: u8,
    head: Duration,
    /// HTTP: data chunks of the body (at least one), each after `gap`.
    chunks: u8,
    gap: Duration,
    /// HTTP: the body breaks after its chunks instead of ending.
    breaks: bool,
}

/// One step of the schedule.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Polls caller `i` (modulo their number) once.
    Poll(usize),
    /// Polls every caller once.
    PollAll,
    /// Moves time on.
    Advance(Duration),
    /// Drops caller `i` wherever it is.
    Drop(usize),
}

#[derive(Debug, Clone)]
struct Case {
    half_open: bool,
    queue: bool,
    callers: Vec<Caller>,
    ops: Vec<Op>,
    /// At the end, run the remaining callers to completion (else drop them).
    complete: bool,
}

fn ms(range: std::ops::Range<u64>) -> impl Strategy<Value = Duration> {
    range.prop_map(Duration::from_millis)
}

fn script() -> impl Strategy<Value = Script> {
    (0u8..4, ms(0..200), 1u8..4, ms(0..150), any::<bool>()).prop_map(
        |(kind, head, chunks, gap, breaks)| Script {
            kind,
            head,
            chunks,
            gap,
            breaks,
        },
    )
}

fn caller() -> impl Strategy<Value = Caller> {
    prop_oneof![
        8 => script().prop_map(Caller::Call),
        1 => Just(Caller::ReadyOnly),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..8).prop_map(Op::Poll),
        2 => Just(Op::PollAll),
        4 => ms(0..160).prop_map(Op::Advance),
        2 => (0usize..8).prop_map(Op::Drop),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(caller(), 1..7),
        prop::collection::vec(op(), 0..40),
        any::<bool>(),
    )
        .prop_map(|(half_open, queue, callers, ops, complete)| Case {
            half_open,
            queue,
            callers,
            ops,
            complete,
        })
}

type Fut = Pin<Box<dyn Future<Output = ()>>>;

/// What the driver checks, and how to read the dependency's side.
struct Watch<'a> {
    bulkhead: bulkhead::Handle,
    breaker: circuit_breaker::Handle,
    told: &'a Told,
    saw: &'a Saw,
    /// Calls the dependency has in flight now (from `call` to the end of the response).
    in_flight: &'a dyn Fn() -> usize,
    /// The most it ever had.
    max_in_flight: &'a dyn Fn() -> usize,
}

/// Runs the schedule over `callers` (made with their kinds in `ready_only`), then checks the
/// invariants at rest.
async fn drive(
    case: &Case,
    mut callers: Vec<Option<Fut>>,
    ready_only: &[bool],
    watch: &Watch<'_>,
) -> Result<(), TestCaseError> {
    let n = callers.len();
    let told_before = (
        watch.told.recorded.load(Ordering::SeqCst),
        watch.told.rejected.load(Ordering::SeqCst),
    );
    // The generation of the first half-open trial: while it lasts, the dependency sees at most
    // the permitted probes.
    let mut trial = None;
    for op in &case.ops {
        match *op {
            Op::Poll(i) => poll(&mut callers[i % n]),
            Op::PollAll => callers.iter_mut().for_each(poll),
            Op::Advance(d) => advance(d).await,
            Op::Drop(i) => callers[i % n] = None,
        }
        let snap = watch.breaker.snapshot();
        prop_assert!(snap.probes_in_flight <= PROBES);
        prop_assert!(
            (watch.in_flight)() <= MAX,
            "the dependency had more than max_concurrent in flight"
        );
        if case.half_open && snap.state == State::HalfOpen {
            let first = *trial.get_or_insert(snap.generation);
            if first == snap.generation {
                prop_assert!(
                    (watch.in_flight)() <= PROBES as usize,
                    "more calls than probes reached the dependency while half-open"
                );
            }
        }
    }
    if case.complete {
        // Callers that only hold a ready service never end: drop them. The others must end
        // (their timeout, deadline and max_wait bound them) within a few seconds.
        for (caller, &ready_only) in callers.iter_mut().zip(ready_only) {
            if ready_only {
                *caller = None;
            }
        }
        for _ in 0..400 {
            callers.iter_mut().for_each(poll);
            if callers.iter().all(Option::is_none) {
                break;
            }
            advance(Duration::from_millis(10)).await;
        }
        prop_assert!(
            callers.iter().all(Option::is_none),
            "every call ends: {} still running after 4 s",
            callers.iter().filter(|c| c.is_some()).count()
        );
    }
    drop(callers);

    // At rest: nothing held, nothing lost.
    prop_assert_eq!(watch.bulkhead.available(), MAX, "permits");
    prop_assert_eq!(watch.bulkhead.queued(), 0, "queue");
    let snap = watch.breaker.snapshot();
    prop_assert_eq!(snap.probes_in_flight, 0, "probe slots: {:?}", snap);
    prop_assert_eq!(
        (watch.in_flight)(),
        0,
        "the dependency's calls were dropped"
    );
    prop_assert!((watch.max_in_flight)() <= MAX);
    // Exactly once: every call that ended was recorded once (or rejected), and no dropped
    // call was recorded.
    let told = (
        watch.told.recorded.load(Ordering::SeqCst) - told_before.0,
        watch.told.rejected.load(Ordering::SeqCst) - told_before.1,
    );
    let saw = (
        watch.saw.recorded.load(Ordering::SeqCst),
        watch.saw.rejected.load(Ordering::SeqCst),
    );
    prop_assert_eq!(
        told,
        saw,
        "(recorded, rejected) by the breaker vs. by the callers"
    );
    Ok(())
}

fn poll(caller: &mut Option<Fut>) {
    if let Some(fut) = caller {
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        if fut.as_mut().poll(&mut cx).is_ready() {
            *caller = None;
        }
    }
}

/// After a case: if the breaker is open, its open time passes; then a good call goes through.
async fn next_call_is_admitted(breaker: &circuit_breaker::Handle) {
    if breaker.state() == State::Open {
        advance(OPEN).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 500,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn dropping_callers_anywhere_leaves_every_permit_and_probe_slot_free(case in case()) {
        runtime().block_on(bare(&case))?;
    }
}

async fn bare(case: &Case) -> Result<(), TestCaseError> {
    let told = Arc::new(Told::default());
    let saw = Arc::new(Saw::default());
    let policy = with_parts(palisade::policy::Policy::builder(), case.queue, &told)
        .build()
        .unwrap();
    let (bulkhead, breaker) = policy_handles(&policy);
    let dep = Dependency::new();
    let mut svc = policy.layer(dep.clone());
    if case.half_open {
        for _ in 0..TRIP {
            call(&mut svc, Reply::Err).await.unwrap_err();
        }
        prop_assert_eq!(breaker.state(), State::Open);
        advance(OPEN).await;
    }
    let callers: Vec<Option<Fut>> = case
        .callers
        .iter()
        .map(|caller| {
            let mut svc = svc.clone();
            let saw = saw.clone();
            let fut: Fut = match *caller {
                Caller::ReadyOnly => Box::pin(async move {
                    let _ = tower::ServiceExt::<Reply>::ready(&mut svc).await;
                    std::future::pending::<()>().await;
                }),
                Caller::Call(script) => Box::pin(async move {
                    let reply = match script.kind {
                        0 => Reply::Ok,
                        1 => Reply::Err,
                        2 => Reply::Delay(script.head),
                        _ => Reply::Hang,
                    };
                    match call(&mut svc, reply).await {
                        Ok(_) => saw.recorded(),
                        Err(err) => saw.error(&err),
                    }
                }),
            };
            Some(fut)
        })
        .collect();
    let ready_only: Vec<bool> = case
        .callers
        .iter()
        .map(|c| matches!(c, Caller::ReadyOnly))
        .collect();
    let seen = dep.seen.clone();
    let seen_max = dep.seen.clone();
    let watch = Watch {
        bulkhead: bulkhead.clone(),
        breaker: breaker.clone(),
        told: &told,
        saw: &saw,
        in_flight: &move || seen.in_flight(),
        max_in_flight: &move || seen_max.max_in_flight(),
    };
    drive(case, callers, &ready_only, &watch).await?;

    // Still usable: a good call is admitted (as a probe, if the breaker is half-open or has
    // just served its open time) and answers.
    next_call_is_admitted(&breaker).await;
    prop_assert_eq!(call(&mut svc, Reply::Ok).await.unwrap(), "ok");
    prop_assert_eq!(bulkhead.available(), MAX);
    prop_assert_eq!(breaker.snapshot().probes_in_flight, 0);
    Ok(())
}

#[cfg(feature = "http")]
mod over_http {
    use super::*;

    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use ::http::{Request, Response, StatusCode};
    use bytes::Bytes;
    use http_body::{Body, Frame};
    use http_body_util::BodyExt;
    use palisade::policy::Policy;
    use tokio::time::Sleep;
    use tower::{Service, ServiceExt};

    /// Counts the dependency's calls in flight: from `call` until the response body ends or
    /// is dropped (or the response future is dropped).
    #[derive(Debug, Default)]
    struct Live {
        now: AtomicUsize,
        max: AtomicUsize,
    }

    struct Held(Arc<Live>);

    impl Held {
        fn new(live: &Arc<Live>) -> Self {
            let now = live.now.fetch_add(1, Ordering::SeqCst) + 1;
            live.max.fetch_max(now, Ordering::SeqCst);
            Self(live.clone())
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            self.0.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A body of `chunks` one-byte chunks, each after `gap`, then an end (or a break). It
    /// lets go of its `Held` as it returns its last frame, before the layers above it settle.
    struct Chunks {
        left: u8,
        gap: Duration,
        breaks: bool,
        sleep: Option<Pin<Box<Sleep>>>,
        held: Option<Held>,
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if self.held.is_none() {
                return Poll::Ready(None);
            }
            let gap = self.gap;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            std::task::ready!(sleep.as_mut().poll(cx));
            self.sleep = None;
            if self.left == 0 {
                // Only a breaking body gets here: a clean one ended with its last chunk.
                self.held = None;
                return Poll::Ready(Some(Err("connection reset".into())));
            }
            self.left -= 1;
            if self.is_end_stream() {
                self.held = None;
            }
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }

        fn is_end_stream(&self) -> bool {
            self.held.is_none() || (self.left == 0 && !self.breaks)
        }
    }

    /// Answers each request as its body (the script) says.
    fn dependency(
        live: &Arc<Live>,
    ) -> impl Service<
        Request<Script>,
        Response = Response<Chunks>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static {
        let live = live.clone();
        tower::service_fn(move |req: Request<Script>| {
            let held = Held::new(&live);
            let script = *req.body();
            async move {
                let head = match script.kind {
                    2 => script.head,
                    3 => Duration::from_secs(3600),
                    _ => Duration::ZERO,
                };
                tokio::time::sleep(head).await;
                let mut res = Response::new(Chunks {
                    left: script.chunks.max(1),
                    gap: script.gap,
                    breaks: script.breaks,
                    sleep: None,
                    held: Some(held),
                });
                if script.kind == 1 {
                    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                Ok(res)
            }
        })
    }

    fn failing() -> Script {
        Script {
            kind: 1,
            head: Duration::ZERO,
            chunks: 1,
            gap: Duration::ZERO,
            breaks: false,
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn dropping_callers_and_bodies_anywhere_leaves_every_permit_and_probe_slot_free(case in case()) {
            runtime().block_on(over_http(&case))?;
        }
    }

    async fn over_http(case: &Case) -> Result<(), TestCaseError> {
        let told = Arc::new(Told::default());
        let saw = Arc::new(Saw::default());
        let policy = with_parts(Policy::builder().http(), case.queue, &told)
            .response_deadline(DEADLINE)
            .build()
            .unwrap();
        let (bulkhead, breaker) = policy_handles(&policy);
        let live = Arc::new(Live::default());
        let mut svc = policy.layer(dependency(&live));
        if case.half_open {
            for _ in 0..TRIP {
                let res = svc
                    .ready()
                    .await
                    .unwrap()
                    .call(Request::new(failing()))
                    .await;
                let res = res.unwrap();
                prop_assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
                res.into_body().collect().await.unwrap();
            }
            prop_assert_eq!(breaker.state(), State::Open);
            advance(OPEN).await;
        }
        let callers: Vec<Option<Fut>> = case
            .callers
            .iter()
            .map(|caller| {
                let mut svc = svc.clone();
                let saw = saw.clone();
                let fut: Fut = match *caller {
                    Caller::ReadyOnly => Box::pin(async move {
                        let _ = ServiceExt::<Request<Script>>::ready(&mut svc).await;
                        std::future::pending::<()>().await;
                    }),
                    Caller::Call(script) => Box::pin(async move {
                        let res = match svc.ready().await {
                            Ok(svc) => svc.call(Request::new(script)).await,
                            Err(err) => Err(err),
                        };
                        let res = match res {
                            Ok(res) => res,
                            Err(err) => return saw.error(&err),
                        };
                        // A failure status is recorded at the head; a success when the body
                        // ends (or breaks, a failure).
                        let recorded_at_head = res.status().is_server_error();
                        if recorded_at_head {
                            saw.recorded();
                        }
                        // Read to the end, or to the error that ends it.
                        let mut body = res.into_body();
                        while let Some(Ok(_)) = body.frame().await {}
                        if !recorded_at_head {
                            saw.recorded();
                        }
                    }),
                };
                Some(fut)
            })
            .collect();
        let ready_only: Vec<bool> = case
            .callers
            .iter()
            .map(|c| matches!(c, Caller::ReadyOnly))
            .collect();
        let (now, max) = (live.clone(), live.clone());
        let watch = Watch {
            bulkhead: bulkhead.clone(),
            breaker: breaker.clone(),
            told: &told,
            saw: &saw,
            in_flight: &move || now.now.load(Ordering::SeqCst),
            max_in_flight: &move || max.max.load(Ordering::SeqCst),
        };
        drive(case, callers, &ready_only, &watch).await?;

        next_call_is_admitted(&breaker).await;
        let ok = Script {
            kind: 0,
            ..failing()
        };
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(ok))
            .await
            .unwrap();
        prop_assert_eq!(res.status(), StatusCode::OK);
        prop_assert_eq!(res.into_body().collect().await.unwrap().to_bytes().len(), 1);
        prop_assert_eq!(bulkhead.available(), MAX);
        prop_assert_eq!(breaker.snapshot().probes_in_flight, 0);
        Ok(())
    }
}
